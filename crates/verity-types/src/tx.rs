//! Signed transactions: canonical encoding, signing digest, hash.
//!
//! Encoding of a signed transaction (all integers little-endian):
//! `version u8 (=1) ‖ chain_id (u32 len ‖ utf8) ‖ nonce u64 ‖ fee u128 ‖ action ‖ signature [65]`.
//! The signature is secp256k1 r ‖ s ‖ v over keccak256(`TX_DOMAIN` ‖ body), where body is the
//! encoding without the signature, so it binds the domain tag and the chain id.

use serde::{Deserialize, Serialize};

use crate::address::{keccak256, recover_signer, AccountKey, Address, SignatureError};
use crate::codec::{DecodeError, Reader, Writer};
use crate::{sha256, Amount, Hash};

/// Domain tag for transaction signatures: a signature for anything else never verifies here.
pub const TX_DOMAIN: &[u8] = b"verity/tx/v1";
/// Largest encoded transaction accepted anywhere.
pub const MAX_TX_BYTES: usize = 4096;
/// Longest chain id.
pub const MAX_CHAIN_ID_LEN: usize = 64;

const TX_VERSION: u8 = 1;

/// What a transaction does. Each module adds its own variants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Action {
    /// Move `amount` base units from the signer to `to`.
    Transfer {
        to: Address,
        #[serde(with = "crate::amount")]
        amount: Amount,
    },
}

impl Action {
    fn encode(&self, w: &mut Writer) {
        match self {
            Action::Transfer { to, amount } => {
                w.u8(0).fixed(&to.0).u128(*amount);
            }
        }
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8("action tag")? {
            0 => Ok(Action::Transfer {
                to: Address(r.array("transfer recipient")?),
                amount: r.u128("transfer amount")?,
            }),
            tag => Err(DecodeError::UnknownTag {
                what: "action",
                tag,
            }),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Action::Transfer { .. } => "transfer",
        }
    }
}

/// The signed part of a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxBody {
    pub chain_id: String,
    pub nonce: u64,
    #[serde(with = "crate::amount")]
    pub fee: Amount,
    pub action: Action,
}

impl TxBody {
    fn encode_into(&self, w: &mut Writer) {
        w.u8(TX_VERSION)
            .str(&self.chain_id)
            .u64(self.nonce)
            .u128(self.fee);
        self.action.encode(w);
    }

    /// The digest the sender signs: keccak256(domain tag ‖ body).
    pub fn signing_digest(&self) -> [u8; 32] {
        let mut w = Writer::new();
        w.fixed(TX_DOMAIN);
        self.encode_into(&mut w);
        keccak256(&w.finish())
    }

    pub fn sign(self, key: &AccountKey) -> SignedTx {
        let signature = key.sign_digest(&self.signing_digest());
        SignedTx {
            body: self,
            signature,
        }
    }
}

/// A transaction with its sender's signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedTx {
    pub body: TxBody,
    pub signature: [u8; 65],
}

impl SignedTx {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.body.encode_into(&mut w);
        w.fixed(&self.signature);
        w.finish()
    }

    /// Decodes one transaction; rejects oversize input, unknown versions and trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_TX_BYTES {
            return Err(DecodeError::TooLong {
                what: "transaction",
                len: bytes.len(),
                limit: MAX_TX_BYTES,
            });
        }
        let mut r = Reader::new(bytes);
        let version = r.u8("transaction version")?;
        if version != TX_VERSION {
            return Err(DecodeError::UnknownTag {
                what: "transaction version",
                tag: version,
            });
        }
        let chain_id = r.string("chain id", MAX_CHAIN_ID_LEN)?;
        let nonce = r.u64("nonce")?;
        let fee = r.u128("fee")?;
        let action = Action::decode(&mut r)?;
        let signature = r.array("signature")?;
        r.finish()?;
        Ok(SignedTx {
            body: TxBody {
                chain_id,
                nonce,
                fee,
                action,
            },
            signature,
        })
    }

    /// SHA-256 of the encoded transaction: its id everywhere.
    pub fn hash(&self) -> Hash {
        sha256(&self.encode())
    }

    /// The address whose key signed this transaction.
    pub fn sender(&self) -> Result<Address, SignatureError> {
        recover_signer(&self.body.signing_digest(), &self.signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn transfer(chain_id: &str, nonce: u64) -> TxBody {
        TxBody {
            chain_id: chain_id.into(),
            nonce,
            fee: 10,
            action: Action::Transfer {
                to: Address([7; 20]),
                amount: 1_000,
            },
        }
    }

    #[test]
    fn round_trip_and_sender() {
        let key = AccountKey::generate();
        let tx = transfer("verity-test", 3).sign(&key);
        let bytes = tx.encode();
        let back = SignedTx::decode(&bytes).unwrap();
        assert_eq!(back, tx);
        assert_eq!(back.sender().unwrap(), key.address());
        assert_eq!(back.hash(), sha256(&bytes));
    }

    #[test]
    fn chain_id_is_signed() {
        let key = AccountKey::generate();
        let mut tx = transfer("verity-a", 0).sign(&key);
        tx.body.chain_id = "verity-b".into();
        assert_ne!(tx.sender().ok(), Some(key.address()));
    }

    #[test]
    fn rejects_malformed() {
        let key = AccountKey::generate();
        let bytes = transfer("c", 0).sign(&key).encode();
        assert!(SignedTx::decode(&bytes[..bytes.len() - 1]).is_err());
        let mut extra = bytes.clone();
        extra.push(1);
        assert_eq!(SignedTx::decode(&extra), Err(DecodeError::TrailingBytes(1)));
        let mut bad_version = bytes.clone();
        bad_version[0] = 9;
        assert!(SignedTx::decode(&bad_version).is_err());
        assert!(SignedTx::decode(&vec![0u8; MAX_TX_BYTES + 1]).is_err());
    }

    proptest! {
        #[test]
        fn decode_never_panics_and_is_canonical(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(tx) = SignedTx::decode(&bytes) {
                prop_assert_eq!(tx.encode(), bytes);
            }
        }
    }
}
