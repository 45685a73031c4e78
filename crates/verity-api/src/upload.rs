//! Who may store a blob on a validator: an upload carries an account's signature over the
//! content hash, the chain id and a recent height, so that the node can charge the upload to a
//! funded account's quota before it reads a byte of the body, and a captured header is useless
//! for other content, on another chain, or once its height is stale.

use sha2::{Digest, Sha256};
use thiserror::Error;
use verity_types::{recover_signer, AccountKey, Address, Hash};

/// The request header that carries an [`UploadAuth`].
pub const UPLOAD_HEADER: &str = "x-verity-upload";

/// Domain tag of upload signatures.
pub const UPLOAD_DOMAIN: &[u8] = b"verity/blob-upload/v1";

/// `content hash ‖ height ‖ signature`, as `0x<64 hex>:<height>:<130 hex>` in the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadAuth {
    pub content: Hash,
    /// A height the signer saw finalized; the node accepts it for a window of blocks.
    pub height: u64,
    pub signature: [u8; 65],
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UploadAuthError {
    #[error("the {UPLOAD_HEADER} header is `<content hash>:<height>:<signature hex>`")]
    Format,
    #[error("the upload signature does not verify: {0}")]
    Signature(#[from] verity_types::SignatureError),
}

impl UploadAuth {
    fn digest(chain_id: &str, content: &Hash, height: u64) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(UPLOAD_DOMAIN);
        h.update((chain_id.len() as u32).to_be_bytes());
        h.update(chain_id.as_bytes());
        h.update(height.to_be_bytes());
        h.update(content.0);
        h.finalize().into()
    }

    pub fn sign(key: &AccountKey, chain_id: &str, content: Hash, height: u64) -> Self {
        let signature = key.sign_digest(&Self::digest(chain_id, &content, height));
        Self {
            content,
            height,
            signature,
        }
    }

    /// The account that signed this for `chain_id`.
    pub fn signer(&self, chain_id: &str) -> Result<Address, UploadAuthError> {
        let digest = Self::digest(chain_id, &self.content, self.height);
        Ok(recover_signer(&digest, &self.signature)?)
    }

    pub fn to_header(&self) -> String {
        format!(
            "{}:{}:{}",
            self.content,
            self.height,
            hex::encode(self.signature)
        )
    }

    pub fn parse(header: &str) -> Result<Self, UploadAuthError> {
        let mut parts = header.trim().split(':');
        let (Some(content), Some(height), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(UploadAuthError::Format);
        };
        let content = content.parse().map_err(|_| UploadAuthError::Format)?;
        let height = height.parse().map_err(|_| UploadAuthError::Format)?;
        let mut sig = [0u8; 65];
        hex::decode_to_slice(signature.trim_start_matches("0x"), &mut sig)
            .map_err(|_| UploadAuthError::Format)?;
        Ok(Self {
            content,
            height,
            signature: sig,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_round_trips_and_binds_chain_content_and_height() {
        let key = AccountKey::generate();
        let content = verity_types::sha256(b"blob");
        let auth = UploadAuth::sign(&key, "verity-a", content, 7);
        let parsed = UploadAuth::parse(&auth.to_header()).unwrap();
        assert_eq!(parsed, auth);
        assert_eq!(parsed.signer("verity-a").unwrap(), key.address());
        // Another chain, other content or another height recover some other account.
        assert_ne!(parsed.signer("verity-b").ok(), Some(key.address()));
        let other = UploadAuth {
            content: verity_types::sha256(b"other"),
            ..auth.clone()
        };
        assert_ne!(other.signer("verity-a").ok(), Some(key.address()));
        let later = UploadAuth { height: 8, ..auth };
        assert_ne!(later.signer("verity-a").ok(), Some(key.address()));
    }

    #[test]
    fn malformed_headers_are_refused() {
        for bad in [
            "",
            "a:b:c",
            "0x00:1:00",
            &format!("{}:x:{}", Hash::ZERO, "00".repeat(65)),
        ] {
            assert_eq!(
                UploadAuth::parse(bad),
                Err(UploadAuthError::Format),
                "{bad}"
            );
        }
    }
}
