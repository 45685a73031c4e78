//! Ethereum-style accounts: secp256k1 keys and 20-byte addresses, so keys users already hold work.

use std::fmt;
use std::str::FromStr;

use k256::ecdsa::{RecoveryId, Signature, SigningKey, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha3::{Digest, Keccak256};
use thiserror::Error;

/// A 20-byte account address: the last 20 bytes of keccak256 of the uncompressed public key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Address(pub [u8; 20]);

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AddressParseError {
    #[error("an address is 0x followed by 40 hex digits, got {0} characters")]
    Length(usize),
    #[error("an address must be hex: {0}")]
    Hex(String),
}

impl Address {
    pub fn from_public_key(key: &VerifyingKey) -> Self {
        let point = key.to_encoded_point(false);
        let digest = keccak256(&point.as_bytes()[1..]);
        let mut out = [0u8; 20];
        out.copy_from_slice(&digest[12..]);
        Address(out)
    }

    /// EIP-55 mixed-case checksum form, as wallets show it.
    pub fn to_checksum(&self) -> String {
        let lower = hex::encode(self.0);
        let digest = keccak256(lower.as_bytes());
        let mut out = String::with_capacity(42);
        out.push_str("0x");
        for (i, c) in lower.chars().enumerate() {
            let nibble = (digest[i / 2] >> if i % 2 == 0 { 4 } else { 0 }) & 0x0f;
            out.push(if c.is_ascii_alphabetic() && nibble >= 8 {
                c.to_ascii_uppercase()
            } else {
                c
            });
        }
        out
    }
}

pub fn keccak256(bytes: &[u8]) -> [u8; 32] {
    Keccak256::digest(bytes).into()
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_checksum())
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({})", self.to_checksum())
    }
}

impl FromStr for Address {
    type Err = AddressParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits = s.strip_prefix("0x").unwrap_or(s);
        if digits.len() != 40 {
            return Err(AddressParseError::Length(s.len()));
        }
        let mut out = [0u8; 20];
        hex::decode_to_slice(digits, &mut out)
            .map_err(|e| AddressParseError::Hex(e.to_string()))?;
        Ok(Address(out))
    }
}

impl Serialize for Address {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_checksum())
    }
}

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A secp256k1 account key. Debug output never shows the secret.
#[derive(Clone)]
pub struct AccountKey {
    key: SigningKey,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeyError {
    #[error("a secret key is 32 bytes (64 hex digits)")]
    Length,
    #[error("not a valid secp256k1 secret key")]
    Invalid,
}

impl AccountKey {
    pub fn generate() -> Self {
        Self {
            key: SigningKey::random(&mut rand_core::OsRng),
        }
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        if bytes.len() != 32 {
            return Err(KeyError::Length);
        }
        SigningKey::from_slice(bytes)
            .map(|key| Self { key })
            .map_err(|_| KeyError::Invalid)
    }

    /// Parses 64 hex digits, with or without `0x`.
    pub fn from_hex(s: &str) -> Result<Self, KeyError> {
        let digits = s.trim().strip_prefix("0x").unwrap_or(s.trim());
        let bytes = hex::decode(digits).map_err(|_| KeyError::Length)?;
        Self::from_bytes(&bytes)
    }

    /// The secret as hex, for writing a key file. Handle with care.
    pub fn secret_hex(&self) -> String {
        hex::encode(self.key.to_bytes())
    }

    pub fn address(&self) -> Address {
        Address::from_public_key(self.key.verifying_key())
    }

    /// Signs a 32-byte digest; returns r ‖ s ‖ v with low s and v ∈ {0, 1}.
    pub fn sign_digest(&self, digest: &[u8; 32]) -> [u8; 65] {
        let (sig, recid) = self
            .key
            .sign_prehash_recoverable(digest)
            .expect("signing a 32-byte digest with a valid key cannot fail");
        let mut out = [0u8; 65];
        out[..64].copy_from_slice(&sig.to_bytes());
        out[64] = recid.to_byte();
        out
    }
}

impl fmt::Debug for AccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AccountKey({})", self.address())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum SignatureError {
    #[error("signature is not a valid secp256k1 signature")]
    Malformed,
    #[error("signature has a high s value; only the canonical low-s form is accepted")]
    HighS,
    #[error("recovery id must be 0 or 1")]
    RecoveryId,
    #[error("no public key recovers from this signature")]
    Unrecoverable,
}

/// Recovers the signer's address from a 65-byte r ‖ s ‖ v signature over `digest`.
pub fn recover_signer(digest: &[u8; 32], signature: &[u8; 65]) -> Result<Address, SignatureError> {
    let sig = Signature::from_slice(&signature[..64]).map_err(|_| SignatureError::Malformed)?;
    if sig.normalize_s().is_some() {
        return Err(SignatureError::HighS);
    }
    let recid = RecoveryId::from_byte(signature[64])
        .filter(|id| !id.is_x_reduced())
        .ok_or(SignatureError::RecoveryId)?;
    let key = VerifyingKey::recover_from_prehash(digest, &sig, recid)
        .map_err(|_| SignatureError::Unrecoverable)?;
    Ok(Address::from_public_key(&key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_key_gives_known_address() {
        // The well-known first Hardhat/Anvil development account.
        let key = AccountKey::from_hex(
            "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
        )
        .unwrap();
        assert_eq!(
            key.address().to_string(),
            "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
        );
    }

    #[test]
    fn sign_then_recover() {
        let key = AccountKey::generate();
        let digest = keccak256(b"message");
        let sig = key.sign_digest(&digest);
        assert_eq!(recover_signer(&digest, &sig).unwrap(), key.address());
        let mut other = digest;
        other[0] ^= 1;
        assert_ne!(recover_signer(&other, &sig).ok(), Some(key.address()));
    }

    #[test]
    fn address_parse_rejects_bad_input() {
        assert!("0x1234".parse::<Address>().is_err());
        assert!("0xzz39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
            .parse::<Address>()
            .is_err());
        let a: Address = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266"
            .parse()
            .unwrap();
        assert_eq!(a.to_string(), "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266");
    }
}
