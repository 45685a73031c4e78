//! The block consensus orders: a parent link, a height, the proposer's timestamp and raw
//! transactions. Transactions stay opaque bytes here; the state machine decodes them.

use bytes::{BufMut, Bytes};
use commonware_codec::{
    Buf, Encode, EncodeSize, Error as CodecError, RangeCfg, Read, ReadExt, Write,
};
use commonware_consensus::simplex::scheme::bls12381_threshold::vrf;
use commonware_consensus::{types::Height, Heightable};
use commonware_cryptography::{bls12381::primitives::variant::MinPk, sha256::Digest, Digestible};
use sha2::{Digest as _, Sha256};
use verity_types::MAX_TX_BYTES;

/// Most transactions one block may carry.
pub const MAX_BLOCK_TXS: usize = 4_000;
/// Most transaction bytes one block may carry.
pub const MAX_BLOCK_BYTES: usize = 8 * 1024 * 1024;

/// Domain tag of block digests.
const BLOCK_DOMAIN: &[u8] = b"verity/block/v3";
/// Domain tag of the draw seed.
const SEED_DOMAIN: &[u8] = b"verity/seed/v2";

/// The seed of one consensus view: the committee's threshold-VRF signature over the round.
pub type Seed = vrf::Seed<MinPk>;

/// A state root the proposer had executed when it built the block: validators compare it with
/// their own, so a validator whose execution diverged stops instead of forking silently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Committed {
    pub height: u64,
    pub root: verity_types::Hash,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    pub parent: Digest,
    pub height: u64,
    /// Unix milliseconds as the proposer saw them; strictly above the parent's.
    pub timestamp_ms: u64,
    /// The seed of the parent's view, from the parent's notarization; none only on the child of
    /// genesis. Draws made while executing this block use it (see `docs/protocol.md`).
    pub parent_seed: Option<Seed>,
    /// The ed25519 identity of the validator that proposed it: validators accept a block only
    /// from its view's leader, so the state can count who proposed (zeros on genesis).
    pub proposer: [u8; 32],
    pub committed: Committed,
    pub txs: Vec<Bytes>,
    digest: Digest,
}

impl Block {
    pub fn new(
        parent: Digest,
        height: u64,
        timestamp_ms: u64,
        parent_seed: Option<Seed>,
        proposer: [u8; 32],
        committed: Committed,
        txs: Vec<Bytes>,
    ) -> Self {
        let digest = Self::compute_digest(
            &parent,
            height,
            timestamp_ms,
            &parent_seed,
            &proposer,
            &committed,
            &txs,
        );
        Self {
            parent,
            height,
            timestamp_ms,
            parent_seed,
            proposer,
            committed,
            txs,
            digest,
        }
    }

    /// The block every chain starts from: derived from the genesis hash, so two chains with
    /// different genesis files never share a block.
    pub fn genesis(genesis_hash: &verity_types::Hash, genesis_time_ms: u64) -> Self {
        let parent = Digest::from(genesis_hash.0);
        let committed = Committed {
            height: 0,
            root: verity_types::Hash::ZERO,
        };
        Self::new(
            parent,
            0,
            genesis_time_ms,
            None,
            [0; 32],
            committed,
            Vec::new(),
        )
    }

    /// H(domain ‖ parent ‖ height ‖ timestamp ‖ seed flag ‖ seed ‖ proposer ‖ committed height ‖
    /// root ‖ count ‖ H(tx) for each tx).
    fn compute_digest(
        parent: &Digest,
        height: u64,
        timestamp_ms: u64,
        parent_seed: &Option<Seed>,
        proposer: &[u8; 32],
        committed: &Committed,
        txs: &[Bytes],
    ) -> Digest {
        let mut hasher = Sha256::new();
        hasher.update(BLOCK_DOMAIN);
        hasher.update(parent.as_ref());
        hasher.update(height.to_le_bytes());
        hasher.update(timestamp_ms.to_le_bytes());
        hasher.update(parent_seed.encode());
        hasher.update(proposer);
        hasher.update(committed.height.to_le_bytes());
        hasher.update(committed.root.0);
        hasher.update((txs.len() as u64).to_le_bytes());
        for tx in txs {
            hasher.update(verity_types::sha256(tx).0);
        }
        Digest::from(<[u8; 32]>::from(hasher.finalize()))
    }

    /// The seed draws in this block use: H(domain ‖ encoded parent seed), or for the child of
    /// genesis H(domain ‖ genesis digest).
    pub fn draw_seed(&self) -> verity_types::Hash {
        let material = match &self.parent_seed {
            Some(seed) => seed.encode().to_vec(),
            None => self.parent.as_ref().to_vec(),
        };
        verity_types::sha256(&[SEED_DOMAIN, &material].concat())
    }
}

pub fn to_hash(digest: &Digest) -> verity_types::Hash {
    verity_types::Hash(
        digest
            .as_ref()
            .try_into()
            .expect("sha256 digest is 32 bytes"),
    )
}

impl Write for Block {
    fn write(&self, buf: &mut impl BufMut) {
        self.parent.write(buf);
        self.height.write(buf);
        self.timestamp_ms.write(buf);
        self.parent_seed.write(buf);
        self.proposer.write(buf);
        self.committed.height.write(buf);
        self.committed.root.0.write(buf);
        self.txs.write(buf);
    }
}

impl EncodeSize for Block {
    fn encode_size(&self) -> usize {
        self.parent.encode_size()
            + self.height.encode_size()
            + self.timestamp_ms.encode_size()
            + self.parent_seed.encode_size()
            + 32
            + 8
            + 32
            + self.txs.encode_size()
    }
}

fn txs_cfg() -> (RangeCfg<usize>, RangeCfg<usize>) {
    (
        RangeCfg::from(0..=MAX_BLOCK_TXS),
        RangeCfg::from(1..=MAX_TX_BYTES),
    )
}

impl Read for Block {
    type Cfg = ();

    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        let parent = Digest::read(buf)?;
        let height = u64::read(buf)?;
        let timestamp_ms = u64::read(buf)?;
        let parent_seed = Option::<Seed>::read(buf)?;
        let proposer = <[u8; 32]>::read(buf)?;
        let committed = Committed {
            height: u64::read(buf)?,
            root: verity_types::Hash(<[u8; 32]>::read(buf)?),
        };
        let txs = Vec::<Bytes>::read_cfg(buf, &txs_cfg())?;
        if txs.iter().map(Bytes::len).sum::<usize>() > MAX_BLOCK_BYTES {
            return Err(CodecError::Invalid(
                "block",
                "transactions exceed the block size limit",
            ));
        }
        Ok(Self::new(
            parent,
            height,
            timestamp_ms,
            parent_seed,
            proposer,
            committed,
            txs,
        ))
    }
}

impl Digestible for Block {
    type Digest = Digest;

    fn digest(&self) -> Digest {
        self.digest
    }
}

impl Heightable for Block {
    fn height(&self) -> Height {
        Height::new(self.height)
    }
}

impl commonware_consensus::Block for Block {
    fn parent(&self) -> Digest {
        self.parent
    }
}

impl commonware_consensus::BoundedBlock for Block {
    fn max_encode_size(_: &()) -> usize {
        // Digest, two u64s, the optional seed, the committed root, the count varint, each tx's
        // length varint, and the bytes.
        32 + 8 + 8 + 1 + 256 + 8 + 32 + 5 + MAX_BLOCK_TXS * 5 + MAX_BLOCK_BYTES
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use commonware_codec::DecodeExt;

    fn plain(parent: Digest, height: u64, timestamp_ms: u64, txs: Vec<Bytes>) -> Block {
        let committed = Committed {
            height: 0,
            root: verity_types::Hash::ZERO,
        };
        Block::new(parent, height, timestamp_ms, None, [0; 32], committed, txs)
    }

    #[test]
    fn digest_commits_to_the_state_root() {
        let a = plain(Digest::from([1u8; 32]), 2, 2, vec![]);
        let other = Committed {
            height: 1,
            root: verity_types::Hash([9; 32]),
        };
        let b = Block::new(a.parent, 2, 2, None, [0; 32], other, vec![]);
        assert_ne!(a.digest(), b.digest());
        assert_eq!(Block::decode(b.encode()).unwrap().committed, other);
    }

    #[test]
    fn the_digest_binds_the_proposer() {
        let committed = Committed {
            height: 0,
            root: verity_types::Hash::ZERO,
        };
        let by = |proposer| {
            Block::new(
                Digest::from([1u8; 32]),
                1,
                1,
                None,
                proposer,
                committed,
                vec![],
            )
        };
        assert_ne!(by([1; 32]).digest(), by([2; 32]).digest());
        assert_eq!(
            Block::decode(by([7; 32]).encode()).unwrap().proposer,
            [7; 32]
        );
    }

    #[test]
    fn round_trip_keeps_digest() {
        let block = plain(
            Digest::from([1u8; 32]),
            7,
            1_000,
            vec![Bytes::from_static(b"tx-a"), Bytes::from_static(b"tx-b")],
        );
        let bytes = block.encode();
        assert_eq!(bytes.len(), block.encode_size());
        let back = Block::decode(bytes).unwrap();
        assert_eq!(back, block);
        assert_eq!(back.digest(), block.digest());
    }

    #[test]
    fn rejects_malformed_and_empty_transactions() {
        let block = plain(Digest::from([1u8; 32]), 1, 1, vec![Bytes::new()]);
        assert!(Block::decode(block.encode()).is_err());
        let good = plain(Digest::from([1u8; 32]), 1, 1, vec![]).encode();
        assert!(Block::decode(Bytes::copy_from_slice(&good[..good.len() - 1])).is_err());
    }

    #[test]
    fn digest_commits_to_every_field() {
        let base = plain(
            Digest::from([1u8; 32]),
            1,
            1,
            vec![Bytes::from_static(b"x")],
        );
        let other = [
            plain(
                Digest::from([2u8; 32]),
                1,
                1,
                vec![Bytes::from_static(b"x")],
            ),
            plain(
                Digest::from([1u8; 32]),
                2,
                1,
                vec![Bytes::from_static(b"x")],
            ),
            plain(
                Digest::from([1u8; 32]),
                1,
                2,
                vec![Bytes::from_static(b"x")],
            ),
            plain(
                Digest::from([1u8; 32]),
                1,
                1,
                vec![Bytes::from_static(b"y")],
            ),
        ];
        for o in other {
            assert_ne!(o.digest(), base.digest());
        }
    }
}
