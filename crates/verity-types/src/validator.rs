//! Validator identities: the ed25519 key a validator signs consensus messages with, and the
//! proof that whoever bonds stake for it holds that key.
//!
//! A bond names an identity, the account that bonds (and is paid and slashed) and the address
//! other validators reach it at. The identity's key signs
//! `BOND_DOMAIN ‖ u32 len ‖ chain id ‖ identity ‖ account ‖ u32 len ‖ p2p address`,
//! so one account cannot bond another's identity, nor move it to an address its owner did not
//! sign, nor replay the proof on another chain.

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::address::Address;

/// Domain tag of bond proofs.
pub const BOND_DOMAIN: &[u8] = b"verity/validator-bond/v1";
/// Longest p2p address a bond may name (`host:port`).
pub const MAX_P2P_ADDRESS_LEN: usize = 128;

/// A validator's consensus identity: an ed25519 public key.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[schema(value_type = String, example = "5b0c…(64 hex digits)")]
pub struct ValidatorIdentity(#[serde(with = "crate::serde_hex::array")] pub [u8; 32]);

impl fmt::Display for ValidatorIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for ValidatorIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ValidatorIdentity({self})")
    }
}

impl FromStr for ValidatorIdentity {
    type Err = BondProofError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = hex::decode(s.trim().trim_start_matches("0x"))
            .map_err(|_| BondProofError::IdentityHex)?;
        Ok(Self(
            bytes.try_into().map_err(|_| BondProofError::IdentityHex)?,
        ))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BondProofError {
    #[error("a validator identity is 32 bytes of hex (an ed25519 public key)")]
    IdentityHex,
    #[error("the validator identity is not a valid ed25519 public key")]
    IdentityKey,
    #[error("the bond proof is not the identity's signature over this chain, account and address")]
    Signature,
    #[error(
        "the p2p address must be host:port, 3 to {MAX_P2P_ADDRESS_LEN} printable ASCII characters"
    )]
    Address,
}

/// Checks that `p2p` looks like `host:port`: what peers dial.
pub fn check_p2p_address(p2p: &str) -> Result<(), BondProofError> {
    let printable = p2p.bytes().all(|b| b.is_ascii_graphic());
    let port = p2p
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if (3..=MAX_P2P_ADDRESS_LEN).contains(&p2p.len()) && printable && port {
        Ok(())
    } else {
        Err(BondProofError::Address)
    }
}

/// The bytes a bond proof signs.
pub fn bond_message(
    chain_id: &str,
    identity: &ValidatorIdentity,
    account: &Address,
    p2p: &str,
) -> Vec<u8> {
    let mut message = BOND_DOMAIN.to_vec();
    message.extend_from_slice(&(chain_id.len() as u32).to_le_bytes());
    message.extend_from_slice(chain_id.as_bytes());
    message.extend_from_slice(&identity.0);
    message.extend_from_slice(&account.0);
    message.extend_from_slice(&(p2p.len() as u32).to_le_bytes());
    message.extend_from_slice(p2p.as_bytes());
    message
}

/// The identity of the ed25519 key whose 32-byte seed is `secret`, and its proof for a bond.
pub fn sign_bond(
    secret: &[u8; 32],
    chain_id: &str,
    account: &Address,
    p2p: &str,
) -> (ValidatorIdentity, [u8; 64]) {
    let key = SigningKey::from_bytes(secret);
    let identity = ValidatorIdentity(key.verifying_key().to_bytes());
    let proof = key.sign(&bond_message(chain_id, &identity, account, p2p));
    (identity, proof.to_bytes())
}

/// Checks a bond's proof and address.
pub fn verify_bond(
    chain_id: &str,
    identity: &ValidatorIdentity,
    account: &Address,
    p2p: &str,
    proof: &[u8; 64],
) -> Result<(), BondProofError> {
    check_p2p_address(p2p)?;
    let key = VerifyingKey::from_bytes(&identity.0).map_err(|_| BondProofError::IdentityKey)?;
    key.verify_strict(
        &bond_message(chain_id, identity, account, p2p),
        &Signature::from_bytes(proof),
    )
    .map_err(|_| BondProofError::Signature)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: Address = Address([1; 20]);

    #[test]
    fn a_proof_binds_the_chain_the_account_and_the_address() {
        let (identity, proof) = sign_bond(&[7; 32], "verity-test", &ALICE, "10.0.0.1:7000");
        assert_eq!(
            verify_bond("verity-test", &identity, &ALICE, "10.0.0.1:7000", &proof),
            Ok(())
        );
        for (chain, account, p2p) in [
            ("verity-other", ALICE, "10.0.0.1:7000"),
            ("verity-test", Address([2; 20]), "10.0.0.1:7000"),
            ("verity-test", ALICE, "10.0.0.2:7000"),
        ] {
            assert_eq!(
                verify_bond(chain, &identity, &account, p2p, &proof),
                Err(BondProofError::Signature)
            );
        }
        let (other, _) = sign_bond(&[8; 32], "verity-test", &ALICE, "10.0.0.1:7000");
        assert_eq!(
            verify_bond("verity-test", &other, &ALICE, "10.0.0.1:7000", &proof),
            Err(BondProofError::Signature)
        );
    }

    #[test]
    fn addresses_must_be_host_and_port() {
        for good in ["127.0.0.1:1", "node-3.example.org:30303", "[::1]:9000"] {
            assert_eq!(check_p2p_address(good), Ok(()), "{good}");
        }
        for bad in ["", "host", ":80", "host:0", "host:99999", "a b:80", "h:x"] {
            assert_eq!(
                check_p2p_address(bad),
                Err(BondProofError::Address),
                "{bad}"
            );
        }
        assert!(check_p2p_address(&format!("{}:1", "h".repeat(MAX_P2P_ADDRESS_LEN))).is_err());
    }

    #[test]
    fn identities_parse_from_hex_only_at_32_bytes() {
        let identity = ValidatorIdentity([0xab; 32]);
        assert_eq!(identity.to_string().parse(), Ok(identity));
        assert_eq!(
            "abcd".parse::<ValidatorIdentity>(),
            Err(BondProofError::IdentityHex)
        );
        assert_eq!(
            "zz".repeat(32).parse::<ValidatorIdentity>(),
            Err(BondProofError::IdentityHex)
        );
    }
}
