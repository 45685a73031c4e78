//! Amounts: u128 base units (18 decimals). JSON carries them as decimal strings, because
//! JSON numbers lose precision above 2^53.

use serde::{Deserialize, Deserializer, Serializer};

/// Base units of the native token; 10^18 base units make one VRT.
pub type Amount = u128;

/// Base units in one whole token.
pub const ONE_TOKEN: Amount = 1_000_000_000_000_000_000;

pub fn serialize<S: Serializer>(v: &Amount, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&v.to_string())
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Amount, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Str(String),
        Num(u64),
    }
    match Repr::deserialize(d)? {
        Repr::Str(s) => s.parse().map_err(|_| {
            serde::de::Error::custom(format!("amount {s:?} is not a base-unit integer"))
        }),
        Repr::Num(n) => Ok(n.into()),
    }
}
