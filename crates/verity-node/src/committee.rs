//! The validator committee: ed25519 identities plus BLS12-381 threshold shares, dealt once at
//! genesis by `verity genesis` / `verity devnet` (a trusted dealer; a DKG is the upgrade path).

use std::num::NonZeroU32;

use bytes::Bytes;
use commonware_codec::{Decode, DecodeExt, Encode};
use commonware_cryptography::{
    bls12381::{
        dkg::feldman_desmedt::deal,
        primitives::{
            group::Share,
            sharing::{Mode, ModeVersion, Sharing},
            variant::MinPk,
        },
    },
    ed25519, Signer as _,
};
use commonware_math::algebra::Random;
use commonware_utils::{ordered::Set, N3f1};
use rand_core::CryptoRng;

use crate::app::Scheme;

/// Largest committee a genesis file may name.
pub const MAX_VALIDATORS: u32 = 128;

#[derive(Debug, thiserror::Error)]
pub enum CommitteeError {
    #[error("committee must have 1 to {MAX_VALIDATORS} validators")]
    Size,
    #[error("{what} is not valid hex")]
    Hex { what: &'static str },
    #[error("{what} does not decode: {reason}")]
    Decode { what: &'static str, reason: String },
    #[error("this share does not belong to the committee's public polynomial")]
    ShareMismatch,
}

/// Consensus signing namespace: binds every vote and certificate to one chain id.
pub fn namespace(chain_id: &str) -> Vec<u8> {
    format!("verity/{chain_id}/consensus/v1").into_bytes()
}

/// Identities, the public polynomial and each validator's share, in committee order.
pub type Dealt = (Vec<ed25519::PrivateKey>, Sharing<MinPk>, Vec<Share>);

/// Fresh identities and threshold shares for `n` validators, in committee order.
pub fn deal_committee(rng: &mut impl CryptoRng, n: u32) -> Result<Dealt, CommitteeError> {
    if n == 0 || n > MAX_VALIDATORS {
        return Err(CommitteeError::Size);
    }
    let mut keys: Vec<ed25519::PrivateKey> = (0..n)
        .map(|_| <ed25519::PrivateKey as Random>::random(&mut *rng))
        .collect();
    keys.sort_by_key(|k| k.public_key());
    let participants = Set::from_iter_dedup(keys.iter().map(|k| k.public_key()));
    let (output, shares) = deal::<MinPk, _, N3f1>(&mut *rng, Mode::NonZeroCounter, participants)
        .map_err(|e| CommitteeError::Decode {
            what: "dealing",
            reason: e.to_string(),
        })?;
    let shares = keys
        .iter()
        .map(|k| {
            shares
                .get_value(&k.public_key())
                .expect("every participant was dealt a share")
                .clone()
        })
        .collect();
    Ok((keys, output.public().clone(), shares))
}

pub fn participants(keys: &[ed25519::PublicKey]) -> Set<ed25519::PublicKey> {
    Set::from_iter_dedup(keys.iter().cloned())
}

/// A signing scheme for one validator; fails if the share is not from this committee.
pub fn signer(
    chain_id: &str,
    keys: &[ed25519::PublicKey],
    sharing: Sharing<MinPk>,
    share: Share,
) -> Result<Scheme, CommitteeError> {
    Scheme::signer(&namespace(chain_id), participants(keys), sharing, share)
        .ok_or(CommitteeError::ShareMismatch)
}

pub fn encode_hex(value: &impl Encode) -> String {
    hex::encode(value.encode())
}

fn hex_bytes(s: &str, what: &'static str) -> Result<Bytes, CommitteeError> {
    hex::decode(s.trim().trim_start_matches("0x"))
        .map(Bytes::from)
        .map_err(|_| CommitteeError::Hex { what })
}

pub fn decode_sharing(s: &str, validators: usize) -> Result<Sharing<MinPk>, CommitteeError> {
    let n = NonZeroU32::new(validators as u32).ok_or(CommitteeError::Size)?;
    Sharing::<MinPk>::decode_cfg(
        hex_bytes(s, "threshold polynomial")?,
        &(n, ModeVersion::v0()),
    )
    .map_err(|e| CommitteeError::Decode {
        what: "threshold polynomial",
        reason: e.to_string(),
    })
}

pub fn decode_share(s: &str) -> Result<Share, CommitteeError> {
    Share::decode(hex_bytes(s, "threshold share")?).map_err(|e| CommitteeError::Decode {
        what: "threshold share",
        reason: e.to_string(),
    })
}

pub fn decode_public_key(s: &str) -> Result<ed25519::PublicKey, CommitteeError> {
    ed25519::PublicKey::decode(hex_bytes(s, "validator public key")?).map_err(|e| {
        CommitteeError::Decode {
            what: "validator public key",
            reason: e.to_string(),
        }
    })
}

pub fn decode_private_key(s: &str) -> Result<ed25519::PrivateKey, CommitteeError> {
    ed25519::PrivateKey::decode(hex_bytes(s, "validator key")?).map_err(|_| {
        CommitteeError::Decode {
            what: "validator key",
            reason: "not a 32-byte ed25519 secret".into(),
        }
    })
}
