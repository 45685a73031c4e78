//! Hugging Face `tokenizer.json` files (byte-level BPE of GPT-2, SmolLM2, Llama 3, Qwen2 …),
//! through the `tokenizers` crate: the same ids as the Python package.

use std::path::Path;

/// Why a tokenizer could not be loaded or used.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0} is not a Hugging Face tokenizer.json: {1}")]
    Parse(String, String),
    #[error("encoding the prompt: {0}")]
    Encode(String),
    #[error("decoding token ids: {0}")]
    Decode(String),
}

/// A loaded tokenizer.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
}

impl Tokenizer {
    pub fn from_file(path: &Path) -> Result<Tokenizer, TokenizerError> {
        let bytes = std::fs::read(path).map_err(|source| TokenizerError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Tokenizer::from_bytes(&bytes, &path.display().to_string())
    }

    /// Parses the JSON of a `tokenizer.json`; `name` says where it came from in errors.
    pub fn from_bytes(bytes: &[u8], name: &str) -> Result<Tokenizer, TokenizerError> {
        let parse = |reason: String| TokenizerError::Parse(name.to_string(), reason);
        let inner = guard(|| tokenizers::Tokenizer::from_bytes(bytes))
            .map_err(parse)?
            .map_err(|e| parse(e.to_string()))?;
        Ok(Tokenizer { inner })
    }

    /// The ids of `text`, without special tokens added around it (a prompt is continued, not
    /// framed).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        let encoding = guard(|| self.inner.encode(text, false))
            .map_err(TokenizerError::Encode)?
            .map_err(|e| TokenizerError::Encode(e.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// The text of `ids`, special tokens included.
    pub fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        guard(|| self.inner.decode(ids, false))
            .map_err(TokenizerError::Decode)?
            .map_err(|e| TokenizerError::Decode(e.to_string()))
    }

    /// Ids the tokenizer can produce: its vocabulary with added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The token an id stands for, as the vocabulary spells it.
    pub fn token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }
}

/// Runs a call into the `tokenizers` crate, turning a panic into an error: it panics on some
/// malformed files (0.23.2: `decoders/mod.rs:90`, an `expect` on a decoder that does not parse,
/// found by our fuzz target), and a tokenizer file comes from whoever registered the model.
fn guard<T>(call: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(call)).map_err(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".into());
        format!("the tokenizers library failed on it ({message})")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_files_are_errors_not_panics() {
        for bytes in [&b""[..], b"{", b"[]", b"{\"model\": 3}", b"\xff\xfe"] {
            assert!(Tokenizer::from_bytes(bytes, "t.json").is_err(), "{bytes:?}");
        }
        // The fuzz target's find: a decoder the tokenizers crate panics on instead of refusing.
        let found = include_bytes!("../tests/vectors/tokenizer_bad_decoder.json");
        let err = Tokenizer::from_bytes(found, "t.json")
            .err()
            .expect("refused");
        assert!(
            err.to_string()
                .contains("the tokenizers library failed on it"),
            "{err}"
        );
    }
}
