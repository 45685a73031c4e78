//! Content ids, the embedded blob store, and the encryption of contributed data
//! (ARCHITECTURE.md, crate map).
//!
//! Task inputs, outputs and model files are named by CIDv1 with the raw codec and a sha2-256
//! multihash: the id Kubo gives `ipfs add --cid-version 1 --raw-leaves` for a single block.

pub mod envelope;
pub mod ipfs;
pub mod quality;
mod store;
pub mod unixfs;

pub use store::{BlobError, BlobStore, StoredBlob};

use cid::Cid;
use thiserror::Error;
use verity_types::Hash;

/// Multicodec of raw bytes.
const RAW: u64 = 0x55;
/// Multicodec of sha2-256.
const SHA2_256: u64 = 0x12;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum CidError {
    #[error("not a CID: {0}")]
    Parse(String),
    #[error("only CIDv1 with the raw codec and a sha2-256 digest is stored here; got {0}")]
    Unsupported(String),
}

/// The CIDv1 (raw, sha2-256) of data whose SHA-256 is `hash`, in base32 (`bafkrei…`).
pub fn cid_of(hash: &Hash) -> String {
    let digest =
        cid::multihash::Multihash::<64>::wrap(SHA2_256, &hash.0).expect("32 bytes fit in 64");
    Cid::new_v1(RAW, digest).to_string()
}

/// Parses a CID string and returns the SHA-256 it names.
pub fn parse_cid(text: &str) -> Result<Hash, CidError> {
    let cid = Cid::try_from(text.trim()).map_err(|e| CidError::Parse(e.to_string()))?;
    let hash = cid.hash();
    if cid.version() != cid::Version::V1
        || cid.codec() != RAW
        || hash.code() != SHA2_256
        || hash.size() != 32
    {
        return Err(CidError::Unsupported(text.trim().to_string()));
    }
    Ok(Hash(hash.digest().try_into().expect("size checked")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use verity_types::sha256;

    #[test]
    fn matches_kubo_for_a_raw_block() {
        // `echo -n hello | ipfs add --cid-version 1 --raw-leaves -Q`
        assert_eq!(
            cid_of(&sha256(b"hello")),
            "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq"
        );
    }

    #[test]
    fn parse_round_trips_and_rejects_others() {
        let h = sha256(b"verity");
        assert_eq!(parse_cid(&cid_of(&h)).unwrap(), h);
        assert!(matches!(parse_cid("not a cid"), Err(CidError::Parse(_))));
        // A CIDv0 (dag-pb) is a valid CID but not one of ours.
        assert!(matches!(
            parse_cid("QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"),
            Err(CidError::Unsupported(_))
        ));
    }
}
