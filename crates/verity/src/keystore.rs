//! Account keys encrypted at rest: Web3 Secret Storage v3, the keystore format geth, MetaMask
//! exports and `eth_account` write and read.
//!
//! The key is AES-128-CTR encrypted under the first 16 bytes of a key derived from the
//! passphrase (scrypt, or PBKDF2-HMAC-SHA256 in files others wrote); the MAC is
//! keccak256(derived key bytes 16..32 ‖ ciphertext), so a wrong passphrase is told from a
//! damaged file before anything is decrypted.

use aes::cipher::{KeyIvInit, StreamCipher};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use verity_types::{keccak256, AccountKey};

type Aes128Ctr = ctr::Ctr128BE<aes::Aes128>;

/// scrypt cost geth writes (2^18, 8, 1): about a second and 256 MiB to open.
pub const STANDARD_SCRYPT: ScryptCost = ScryptCost {
    log_n: 18,
    r: 8,
    p: 1,
};

/// The most work a keystore we open may ask for: scrypt N ≤ 2^20 with r·p ≤ 64, PBKDF2 ≤
/// 10^7 rounds. A file asking for more is refused rather than run for minutes.
const MAX_LOG_N: u8 = 20;
const MAX_R_TIMES_P: u32 = 64;
const MAX_PBKDF2_ROUNDS: u32 = 10_000_000;

#[derive(Debug, Clone, Copy)]
pub struct ScryptCost {
    pub log_n: u8,
    pub r: u32,
    pub p: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    #[error("wrong passphrase (the keystore's MAC does not match)")]
    WrongPassphrase,
    #[error("not a version 3 keystore: {0}")]
    Malformed(String),
    #[error("unsupported keystore {what} {value:?} (supported: {supported})")]
    Unsupported {
        what: &'static str,
        value: String,
        supported: &'static str,
    },
    #[error("the keystore asks for more work than we run ({0})")]
    TooCostly(String),
    #[error("the keystore's address {stated} is not its key's, {actual}")]
    AddressMismatch { stated: String, actual: String },
}

/// The JSON document.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Keystore {
    /// The account's address, lowercase hex without 0x (as geth writes it); optional on read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    pub crypto: Crypto,
    #[serde(default)]
    pub id: String,
    pub version: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Crypto {
    pub cipher: String,
    pub cipherparams: CipherParams,
    pub ciphertext: String,
    pub kdf: String,
    pub kdfparams: serde_json::Value,
    pub mac: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CipherParams {
    pub iv: String,
}

#[derive(Deserialize)]
struct ScryptParams {
    dklen: usize,
    n: u64,
    r: u32,
    p: u32,
    salt: String,
}

#[derive(Deserialize)]
struct Pbkdf2Params {
    dklen: usize,
    c: u32,
    prf: String,
    salt: String,
}

fn unhex(what: &str, s: &str) -> Result<Vec<u8>, KeystoreError> {
    hex::decode(s.trim_start_matches("0x"))
        .map_err(|_| KeystoreError::Malformed(format!("{what} is not hex")))
}

impl Keystore {
    /// Parses a keystore document.
    pub fn parse(text: &[u8]) -> Result<Self, KeystoreError> {
        let keystore: Keystore =
            serde_json::from_slice(text).map_err(|e| KeystoreError::Malformed(e.to_string()))?;
        if keystore.version != 3 {
            return Err(KeystoreError::Unsupported {
                what: "version",
                value: keystore.version.to_string(),
                supported: "3",
            });
        }
        Ok(keystore)
    }

    /// The address the file states, if it states one: readable without the passphrase.
    pub fn stated_address(&self) -> Option<String> {
        self.address
            .as_ref()
            .map(|a| format!("0x{}", a.trim_start_matches("0x").to_lowercase()))
    }

    /// Encrypts `key` under `passphrase`.
    pub fn encrypt(key: &AccountKey, passphrase: &[u8], cost: ScryptCost) -> Self {
        let mut salt = [0u8; 32];
        let mut iv = [0u8; 16];
        let mut id = [0u8; 16];
        OsRng.fill_bytes(&mut salt);
        OsRng.fill_bytes(&mut iv);
        OsRng.fill_bytes(&mut id);
        let derived = scrypt_key(passphrase, &salt, cost, 32).expect("our own costs are valid");
        let mut ciphertext = hex::decode(key.secret_hex()).expect("a secret is hex");
        Aes128Ctr::new(derived[..16].into(), &iv.into()).apply_keystream(&mut ciphertext);
        let mac = keccak256(&[&derived[16..32], &ciphertext[..]].concat());
        // A random (version 4) UUID.
        id[6] = (id[6] & 0x0f) | 0x40;
        id[8] = (id[8] & 0x3f) | 0x80;
        let id = hex::encode(id);
        Keystore {
            address: Some(hex::encode(key.address().0)),
            crypto: Crypto {
                cipher: "aes-128-ctr".into(),
                cipherparams: CipherParams {
                    iv: hex::encode(iv),
                },
                ciphertext: hex::encode(&ciphertext),
                kdf: "scrypt".into(),
                kdfparams: serde_json::json!({
                    "dklen": 32,
                    "n": 1u64 << cost.log_n,
                    "r": cost.r,
                    "p": cost.p,
                    "salt": hex::encode(salt),
                }),
                mac: hex::encode(mac),
            },
            id: format!(
                "{}-{}-{}-{}-{}",
                &id[..8],
                &id[8..12],
                &id[12..16],
                &id[16..20],
                &id[20..]
            ),
            version: 3,
        }
    }

    /// Decrypts the key with `passphrase`.
    pub fn decrypt(&self, passphrase: &[u8]) -> Result<AccountKey, KeystoreError> {
        let crypto = &self.crypto;
        if crypto.cipher != "aes-128-ctr" {
            return Err(KeystoreError::Unsupported {
                what: "cipher",
                value: crypto.cipher.clone(),
                supported: "aes-128-ctr",
            });
        }
        let malformed = |e: serde_json::Error| KeystoreError::Malformed(e.to_string());
        let derived = match crypto.kdf.as_str() {
            "scrypt" => {
                let p: ScryptParams =
                    serde_json::from_value(crypto.kdfparams.clone()).map_err(malformed)?;
                if !p.n.is_power_of_two() || p.n < 2 {
                    return Err(KeystoreError::Malformed(format!(
                        "scrypt n = {} is not a power of two",
                        p.n
                    )));
                }
                let cost = ScryptCost {
                    log_n: p.n.trailing_zeros() as u8,
                    r: p.r,
                    p: p.p,
                };
                if cost.log_n > MAX_LOG_N || p.r.saturating_mul(p.p) > MAX_R_TIMES_P {
                    return Err(KeystoreError::TooCostly(format!(
                        "scrypt n = {}, r = {}, p = {}",
                        p.n, p.r, p.p
                    )));
                }
                scrypt_key(passphrase, &unhex("the salt", &p.salt)?, cost, p.dklen)?
            }
            "pbkdf2" => {
                let p: Pbkdf2Params =
                    serde_json::from_value(crypto.kdfparams.clone()).map_err(malformed)?;
                if p.prf != "hmac-sha256" {
                    return Err(KeystoreError::Unsupported {
                        what: "pbkdf2 prf",
                        value: p.prf,
                        supported: "hmac-sha256",
                    });
                }
                if p.c > MAX_PBKDF2_ROUNDS {
                    return Err(KeystoreError::TooCostly(format!("pbkdf2 c = {}", p.c)));
                }
                if p.dklen < 32 {
                    return Err(KeystoreError::Malformed("dklen below 32".into()));
                }
                let mut derived = vec![0u8; p.dklen];
                pbkdf2::pbkdf2_hmac::<sha2::Sha256>(
                    passphrase,
                    &unhex("the salt", &p.salt)?,
                    p.c,
                    &mut derived,
                );
                derived
            }
            other => {
                return Err(KeystoreError::Unsupported {
                    what: "kdf",
                    value: other.into(),
                    supported: "scrypt, pbkdf2",
                })
            }
        };
        let mut secret = unhex("the ciphertext", &crypto.ciphertext)?;
        let mac = keccak256(&[&derived[16..32], &secret[..]].concat());
        if hex::encode(mac) != crypto.mac.trim_start_matches("0x").to_lowercase() {
            return Err(KeystoreError::WrongPassphrase);
        }
        let iv: [u8; 16] = unhex("the iv", &crypto.cipherparams.iv)?
            .try_into()
            .map_err(|_| KeystoreError::Malformed("the iv is not 16 bytes".into()))?;
        Aes128Ctr::new(derived[..16].into(), &iv.into()).apply_keystream(&mut secret);
        let key = AccountKey::from_bytes(&secret)
            .map_err(|e| KeystoreError::Malformed(format!("the decrypted key: {e}")))?;
        if let Some(stated) = self.stated_address() {
            let actual = format!("0x{}", hex::encode(key.address().0));
            if stated != actual {
                return Err(KeystoreError::AddressMismatch { stated, actual });
            }
        }
        Ok(key)
    }
}

fn scrypt_key(
    passphrase: &[u8],
    salt: &[u8],
    cost: ScryptCost,
    dklen: usize,
) -> Result<Vec<u8>, KeystoreError> {
    if dklen < 32 {
        return Err(KeystoreError::Malformed("dklen below 32".into()));
    }
    let params = scrypt::Params::new(cost.log_n, cost.r, cost.p)
        .map_err(|e| KeystoreError::Malformed(format!("scrypt parameters: {e}")))?;
    let mut derived = vec![0u8; dklen];
    scrypt::scrypt(passphrase, salt, &params, &mut derived)
        .map_err(|e| KeystoreError::Malformed(format!("scrypt: {e}")))?;
    Ok(derived)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cheap enough for tests; the format is the same.
    const LIGHT: ScryptCost = ScryptCost {
        log_n: 10,
        r: 8,
        p: 1,
    };

    #[test]
    fn a_key_round_trips_and_a_wrong_passphrase_is_named() {
        let key = AccountKey::generate();
        let keystore = Keystore::encrypt(&key, b"correct horse", LIGHT);
        let text = serde_json::to_vec(&keystore).unwrap();
        let parsed = Keystore::parse(&text).unwrap();
        assert_eq!(
            parsed.decrypt(b"correct horse").unwrap().address(),
            key.address()
        );
        assert!(matches!(
            parsed.decrypt(b"battery staple"),
            Err(KeystoreError::WrongPassphrase)
        ));
        assert_eq!(
            parsed.stated_address().unwrap(),
            format!("0x{}", hex::encode(key.address().0))
        );
    }

    /// The test vector of the Web3 Secret Storage definition (PBKDF2 and scrypt), passphrase
    /// "testpassword", key 7a28b5ba…0d.
    #[test]
    fn the_specifications_vectors_open() {
        let expected = "7a28b5ba57c53603b0b07b56bba752f7784bf506fa95edc395f5cf6c7514fe9d";
        let pbkdf2 = r#"{"crypto":{"cipher":"aes-128-ctr","cipherparams":{"iv":"6087dab2f9fdbbfaddc31a909735c1e6"},"ciphertext":"5318b4d5bcd28de64ee5559e671353e16f075ecae9f99c7a79a38af5f869aa46","kdf":"pbkdf2","kdfparams":{"c":262144,"dklen":32,"prf":"hmac-sha256","salt":"ae3cd4e7013836a3df6bd7241b12db061dbe2c6785853cce422d148a624ce0bd"},"mac":"517ead924a9d0dc3124507e3393d175ce3ff7c1e96529c6c555ce9e51205e9b2"},"id":"3198bc9c-6672-5ab3-d995-4942343ae5b6","version":3}"#;
        let scrypt = r#"{"crypto":{"cipher":"aes-128-ctr","cipherparams":{"iv":"83dbcc02d8ccb40e466191a123791e0e"},"ciphertext":"d172bf743a674da9cdad04534d56926ef8358534d458fffccd4e6ad2fbde479c","kdf":"scrypt","kdfparams":{"dklen":32,"n":262144,"p":8,"r":1,"salt":"ab0c7876052600dd703518d6fc3fe8984592145b591fc8fb5c6d43190334ba19"},"mac":"2103ac29920d71da29f15d75b4a16dbe95cfd7ff8faea1056c33131d846e3097"},"id":"3198bc9c-6672-5ab3-d995-4942343ae5b6","version":3}"#;
        for text in [pbkdf2, scrypt] {
            let key = Keystore::parse(text.as_bytes())
                .unwrap()
                .decrypt(b"testpassword")
                .unwrap();
            assert_eq!(key.secret_hex().trim_start_matches("0x"), expected);
        }
    }

    #[test]
    fn bad_files_are_refused_with_the_reason() {
        let key = AccountKey::generate();
        let good = serde_json::to_value(Keystore::encrypt(&key, b"pw", LIGHT)).unwrap();
        let with = |path: &[&str], value: serde_json::Value| {
            let mut doc = good.clone();
            let mut at = &mut doc;
            for p in &path[..path.len() - 1] {
                at = &mut at[*p];
            }
            at[path[path.len() - 1]] = value;
            Keystore::parse(doc.to_string().as_bytes()).and_then(|k| k.decrypt(b"pw"))
        };
        let error = |r: Result<AccountKey, KeystoreError>| r.err().unwrap().to_string();
        assert!(error(with(&["version"], 2.into())).contains("version"));
        assert!(error(with(&["crypto", "cipher"], "aes-256-gcm".into())).contains("cipher"));
        assert!(error(with(&["crypto", "kdf"], "argon2".into())).contains("kdf"));
        assert!(
            error(with(&["crypto", "kdfparams", "n"], (1u64 << 24).into())).contains("more work")
        );
        assert!(error(with(&["crypto", "kdfparams", "n"], 1000.into())).contains("power of two"));
        assert!(error(with(&["crypto", "ciphertext"], "zz".into())).contains("not hex"));
        assert!(error(with(&["address"], "00".repeat(20).into())).contains("not its key's"));
        assert!(Keystore::parse(b"not json").is_err());
    }
}
