//! Encryption of contributed data, as LazAI's SDK and GnuPG understand it.
//!
//! - The password is the contributor's EIP-191 `personal_sign` signature over a fixed message
//!   ([`PASSWORD_MESSAGE`] unless overridden): 65 bytes r ‖ s ‖ v (v = 27 or 28), lowercase hex
//!   without `0x`. Only the account key can make it, and the same key makes it again.
//! - The data is an OpenPGP message encrypted to that password: a version 4 SKESK (iterated and
//!   salted S2K, SHA-256) and a SEIPD v1 packet with AES-256, ASCII-armored. GnuPG 2.2 opens it
//!   with `gpg --decrypt`, and it opens `gpg --symmetric --cipher-algo AES256 --armor` output.
//! - For a verifier, the password is RSA-encrypted to the verifier's key and hex-encoded: PKCS#1
//!   v1.5 when we wrap it (as LazAI's Python SDK does); unwrapping also takes OAEP with SHA-1
//!   (LazAI's Node SDK).

use pgp::composed::{ArmorOptions, Message, MessageBuilder};
use pgp::crypto::hash::HashAlgorithm;
use pgp::crypto::sym::SymmetricKeyAlgorithm;
use pgp::types::{Password, StringToKey};
use rand_core::OsRng;
use rsa::pkcs1::{DecodeRsaPrivateKey as _, DecodeRsaPublicKey as _};
use rsa::pkcs8::{DecodePrivateKey as _, DecodePublicKey as _};
use rsa::{Oaep, Pkcs1v15Encrypt, RsaPrivateKey, RsaPublicKey};
use thiserror::Error;
use verity_types::{keccak256, AccountKey};

/// The message a contributor signs to derive the data password (LazAI's default).
pub const PASSWORD_MESSAGE: &str = "Sign to retrieve your encryption key";

/// GnuPG's default S2K count byte (65,011,712 octets hashed).
const S2K_COUNT: u8 = 0xff;

#[derive(Debug, Error)]
pub enum EnvelopeError {
    #[error("not an OpenPGP message: {0}")]
    NotOpenPgp(String),
    #[error("the password does not open this message (or it is not password-encrypted)")]
    WrongPassword,
    #[error("the message is damaged: {0}")]
    Damaged(String),
    #[error("encrypting: {0}")]
    Encrypt(String),
    #[error("not an RSA {what} key in PEM (PKCS#1 or PKCS#8/SPKI)")]
    NotRsaKey { what: &'static str },
    #[error("the wrapped password is not hex")]
    WrappedNotHex,
    #[error("the wrapped password does not open with this key (PKCS#1 v1.5 or OAEP-SHA1)")]
    Unwrap,
    #[error("the unwrapped password is not text")]
    PasswordNotText,
}

/// The contributor's data password: `personal_sign(message)` by `key`, as lowercase hex.
pub fn password(key: &AccountKey, message: &str) -> String {
    let mut signature = key.sign_digest(&personal_message_digest(message.as_bytes()));
    signature[64] += 27;
    hex::encode(signature)
}

/// EIP-191 version 0x45: keccak256("\x19Ethereum Signed Message:\n" ‖ len ‖ message).
fn personal_message_digest(message: &[u8]) -> [u8; 32] {
    let mut prefixed = format!("\x19Ethereum Signed Message:\n{}", message.len()).into_bytes();
    prefixed.extend_from_slice(message);
    keccak256(&prefixed)
}

/// `plaintext` as an armored OpenPGP message that `password` opens.
pub fn encrypt(plaintext: &[u8], password: &str) -> Result<String, EnvelopeError> {
    let mut builder = MessageBuilder::from_bytes("", plaintext.to_vec())
        .seipd_v1(OsRng, SymmetricKeyAlgorithm::AES256);
    builder
        .encrypt_with_password(
            StringToKey::new_iterated(OsRng, HashAlgorithm::Sha256, S2K_COUNT),
            &Password::from(password),
        )
        .map_err(|e| EnvelopeError::Encrypt(e.to_string()))?;
    builder
        .to_armored_string(OsRng, ArmorOptions::default())
        .map_err(|e| EnvelopeError::Encrypt(e.to_string()))
}

/// Opens an OpenPGP message (armored or binary) encrypted to `password`.
pub fn decrypt(message: &[u8], password: &str) -> Result<Vec<u8>, EnvelopeError> {
    let parsed = if message.trim_ascii_start().starts_with(b"-----BEGIN PGP") {
        Message::from_armor(message).map(|(m, _)| m)
    } else {
        Message::from_bytes(message)
    }
    .map_err(|e| EnvelopeError::NotOpenPgp(e.to_string()))?;
    let mut opened = parsed
        .decrypt_with_password(&Password::from(password))
        .map_err(|_| EnvelopeError::WrongPassword)?;
    if opened.is_compressed() {
        opened = opened
            .decompress()
            .map_err(|e| EnvelopeError::Damaged(e.to_string()))?;
    }
    opened
        .as_data_vec()
        .map_err(|e| EnvelopeError::Damaged(e.to_string()))
}

/// The password RSA-encrypted (PKCS#1 v1.5) to a verifier's public key (PEM), as hex.
pub fn wrap_password(password: &str, public_key_pem: &str) -> Result<String, EnvelopeError> {
    let key = RsaPublicKey::from_public_key_pem(public_key_pem)
        .or_else(|_| RsaPublicKey::from_pkcs1_pem(public_key_pem))
        .map_err(|_| EnvelopeError::NotRsaKey { what: "public" })?;
    let wrapped = key
        .encrypt(&mut OsRng, Pkcs1v15Encrypt, password.as_bytes())
        .map_err(|e| EnvelopeError::Encrypt(e.to_string()))?;
    Ok(hex::encode(wrapped))
}

/// The password wrapped (PKCS#1 v1.5) to a verifier's public key as the chain holds it (DER,
/// SPKI), as hex.
pub fn wrap_password_der(password: &str, public_key_der: &[u8]) -> Result<String, EnvelopeError> {
    let key = RsaPublicKey::from_public_key_der(public_key_der)
        .map_err(|_| EnvelopeError::NotRsaKey { what: "public" })?;
    let wrapped = key
        .encrypt(&mut OsRng, Pkcs1v15Encrypt, password.as_bytes())
        .map_err(|e| EnvelopeError::Encrypt(e.to_string()))?;
    Ok(hex::encode(wrapped))
}

/// Opens a wrapped password with the verifier's private key (PEM).
pub fn unwrap_password(wrapped_hex: &str, private_key_pem: &str) -> Result<String, EnvelopeError> {
    VerifierKey::from_pem(private_key_pem)?.unwrap_password(wrapped_hex)
}

/// A data verifier's RSA key: contributors wrap their passwords to its public half.
pub struct VerifierKey {
    key: RsaPrivateKey,
}

/// Bits of a new verifier key.
pub const VERIFIER_KEY_BITS: usize = 2048;

impl VerifierKey {
    pub fn generate() -> Result<Self, EnvelopeError> {
        RsaPrivateKey::new(&mut OsRng, VERIFIER_KEY_BITS)
            .map(|key| Self { key })
            .map_err(|e| EnvelopeError::Encrypt(e.to_string()))
    }

    /// Reads a PKCS#8 or PKCS#1 PEM private key.
    pub fn from_pem(pem: &str) -> Result<Self, EnvelopeError> {
        RsaPrivateKey::from_pkcs8_pem(pem)
            .or_else(|_| RsaPrivateKey::from_pkcs1_pem(pem))
            .map(|key| Self { key })
            .map_err(|_| EnvelopeError::NotRsaKey { what: "private" })
    }

    /// PKCS#8 PEM, for a key file (mode 0600).
    pub fn to_pem(&self) -> Result<String, EnvelopeError> {
        use rsa::pkcs8::EncodePrivateKey as _;
        self.key
            .to_pkcs8_pem(rsa::pkcs8::LineEnding::LF)
            .map(|pem| pem.to_string())
            .map_err(|e| EnvelopeError::Encrypt(e.to_string()))
    }

    /// The public key as DER (SPKI): what the chain records.
    pub fn public_der(&self) -> Vec<u8> {
        use rsa::pkcs8::EncodePublicKey as _;
        self.key
            .to_public_key()
            .to_public_key_der()
            .expect("an RSA public key encodes")
            .into_vec()
    }

    /// Opens a wrapped password. OAEP-SHA1 is tried first: its padding check cannot pass by
    /// chance, where PKCS#1 v1.5's can for a few ciphertexts in 2^16.
    pub fn unwrap_password(&self, wrapped_hex: &str) -> Result<String, EnvelopeError> {
        let wrapped = hex::decode(wrapped_hex.trim().trim_start_matches("0x"))
            .map_err(|_| EnvelopeError::WrappedNotHex)?;
        let plain = self
            .key
            .decrypt(Oaep::new::<sha1::Sha1>(), &wrapped)
            .or_else(|_| self.key.decrypt(Pkcs1v15Encrypt, &wrapped))
            .map_err(|_| EnvelopeError::Unwrap)?;
        String::from_utf8(plain).map_err(|_| EnvelopeError::PasswordNotText)
    }
}

impl std::fmt::Debug for VerifierKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VerifierKey(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// eth_account 0.13's `sign_message(encode_defunct(text=PASSWORD_MESSAGE))` for this key
    /// (the key of web3.py's documentation examples).
    const KEY: &str = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";
    const ETH_ACCOUNT_PASSWORD: &str = "4abea94a3c28fd54b856a257bbf412bd1f52f1fff4dbeff58d46e199801517d5799378b2d46261e8afd78dd0f685b34ce372976cf84a88c20310f6134808955f1b";

    #[test]
    fn the_password_is_eth_accounts_personal_sign() {
        let key = AccountKey::from_hex(KEY).unwrap();
        assert_eq!(
            key.address().to_string(),
            "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23"
        );
        assert_eq!(password(&key, PASSWORD_MESSAGE), ETH_ACCOUNT_PASSWORD);
        assert_ne!(password(&key, "another message"), ETH_ACCOUNT_PASSWORD);
    }

    #[test]
    fn a_message_opens_with_its_password_only() {
        let data = b"id,label\n1,cat\n2,dog\n";
        let armored = encrypt(data, ETH_ACCOUNT_PASSWORD).unwrap();
        assert!(armored.starts_with("-----BEGIN PGP MESSAGE-----"));
        assert_eq!(
            decrypt(armored.as_bytes(), ETH_ACCOUNT_PASSWORD).unwrap(),
            data
        );
        assert!(matches!(
            decrypt(armored.as_bytes(), "another password"),
            Err(EnvelopeError::WrongPassword)
        ));
        assert!(matches!(
            decrypt(b"id,label\n", ETH_ACCOUNT_PASSWORD),
            Err(EnvelopeError::NotOpenPgp(_))
        ));
        let mut damaged = armored.into_bytes();
        let at = damaged.len() / 2;
        damaged[at] = if damaged[at] == b'A' { b'B' } else { b'A' };
        assert!(decrypt(&damaged, ETH_ACCOUNT_PASSWORD).is_err());
    }

    #[test]
    fn a_wrapped_password_opens_with_the_private_key_only() {
        let private = RsaPrivateKey::new(&mut OsRng, 2048).unwrap();
        let other = RsaPrivateKey::new(&mut OsRng, 2048).unwrap();
        use rsa::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _, LineEnding};
        let public_pem = private
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap();
        let private_pem = private.to_pkcs8_pem(LineEnding::LF).unwrap();
        let other_pem = other.to_pkcs8_pem(LineEnding::LF).unwrap();
        let wrapped = wrap_password(ETH_ACCOUNT_PASSWORD, &public_pem).unwrap();
        assert_eq!(
            unwrap_password(&wrapped, &private_pem).unwrap(),
            ETH_ACCOUNT_PASSWORD
        );
        assert!(matches!(
            unwrap_password(&wrapped, &other_pem),
            Err(EnvelopeError::Unwrap)
        ));
        // OAEP with SHA-1, as LazAI's Node SDK wraps it.
        let oaep = private
            .to_public_key()
            .encrypt(&mut OsRng, Oaep::new::<sha1::Sha1>(), b"secret")
            .unwrap();
        assert_eq!(
            unwrap_password(&hex::encode(oaep), &private_pem).unwrap(),
            "secret"
        );
        assert!(matches!(
            unwrap_password("zz", &private_pem),
            Err(EnvelopeError::WrappedNotHex)
        ));
        assert!(matches!(
            wrap_password("x", "not a key"),
            Err(EnvelopeError::NotRsaKey { .. })
        ));
    }

    #[test]
    fn a_verifier_key_survives_its_file_and_opens_what_is_wrapped_to_its_der() {
        let key = VerifierKey::generate().unwrap();
        let again = VerifierKey::from_pem(&key.to_pem().unwrap()).unwrap();
        assert_eq!(again.public_der(), key.public_der());
        let wrapped = wrap_password_der(ETH_ACCOUNT_PASSWORD, &key.public_der()).unwrap();
        assert_eq!(
            again.unwrap_password(&wrapped).unwrap(),
            ETH_ACCOUNT_PASSWORD
        );
        assert!(matches!(
            wrap_password_der("x", b"not DER"),
            Err(EnvelopeError::NotRsaKey { .. })
        ));
        assert_eq!(
            format!("{key:?}"),
            "VerifierKey(..)",
            "no key material in logs"
        );
    }
}
