use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256 as Hasher};

/// A 32-byte SHA-256 digest: model ids, tensor hashes, trace and weights roots.
///
/// Displayed and serialized as lower-case hex with a `0x` prefix.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    pub const ZERO: Hash = Hash([0; 32]);

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        format!("0x{}", hex::encode(self.0))
    }
}

/// SHA-256 of one byte string.
pub fn sha256(bytes: &[u8]) -> Hash {
    Hash(Hasher::digest(bytes).into())
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HashParseError {
    #[error("a hash is 64 hex digits (optionally prefixed by 0x); got {0} digits")]
    Length(usize),
    #[error("a hash must be hexadecimal: {0}")]
    Hex(#[from] hex::FromHexError),
}

impl FromStr for Hash {
    type Err = HashParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits = s.strip_prefix("0x").unwrap_or(s);
        if digits.len() != 64 {
            return Err(HashParseError::Length(digits.len()));
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(digits, &mut out)?;
        Ok(Hash(out))
    }
}

impl Serialize for Hash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Hash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_matches_the_standard_vector() {
        assert_eq!(
            sha256(b"abc").to_hex(),
            "0xba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn hex_round_trips_with_and_without_prefix() {
        let h = sha256(b"verity");
        assert_eq!(h.to_hex().parse::<Hash>().unwrap(), h);
        assert_eq!(h.to_hex()[2..].parse::<Hash>().unwrap(), h);
    }

    #[test]
    fn malformed_hex_is_rejected_with_a_reason() {
        assert_eq!("0x12".parse::<Hash>(), Err(HashParseError::Length(2)));
        let err = "zz".repeat(32).parse::<Hash>().unwrap_err();
        assert!(matches!(err, HashParseError::Hex(_)));
    }
}
