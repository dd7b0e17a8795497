//! API tokens (random, stored as SHA-256 hashes) and secrets at rest (XChaCha20-Poly1305 with
//! a key file in the data directory, mode 0600).

use anyhow::{Context as _, Result, bail};
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).expect("the operating system provides randomness");
    b
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    hex::decode(s).ok()
}

/// A new API token: 32 random bytes, hex.
pub(crate) fn new_token() -> String {
    offshoot_control::users::new_token()
}

pub(crate) fn hash_token(token: &str) -> String {
    offshoot_control::users::hash_token(token)
}

/// Writes a file readable by its owner only.
pub(crate) fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("write `{}`", path.display()))?;
    f.write_all(contents).with_context(|| format!("write `{}`", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).with_context(|| format!("restrict `{}`", path.display()))?;
    Ok(())
}

/// The key that encrypts secrets at rest, and a key derived from it that fingerprints secret
/// values (to tell that one changed without showing it).
pub(crate) struct SecretKey(XChaCha20Poly1305, [u8; 32]);

impl SecretKey {
    /// Loads `path`, creating a new random key the first time.
    pub(crate) fn load_or_create(path: &Path) -> Result<SecretKey> {
        if !path.exists() {
            write_private(path, hex(&random_bytes::<32>()).as_bytes())?;
        }
        let text = std::fs::read_to_string(path).with_context(|| format!("read the secret key `{}`", path.display()))?;
        let bytes =
            unhex(text.trim()).filter(|b| b.len() == 32).with_context(|| format!("`{}` is not a 32-byte hex key", path.display()))?;
        let cipher = XChaCha20Poly1305::new_from_slice(&bytes).context("load the secret key")?;
        let mut h = Sha256::new();
        h.update(b"offshoot fingerprints\0");
        h.update(&bytes);
        Ok(SecretKey(cipher, h.finalize().into()))
    }

    /// A keyed fingerprint of `data` (HMAC-SHA-256, 12 bytes, hex): the same data, the same
    /// fingerprint; nothing about the data without the key.
    pub(crate) fn fingerprint(&self, data: &[u8]) -> String {
        use hmac::{Hmac, Mac};
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.1).unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(data);
        hex(&mac.finalize().into_bytes()[..12])
    }

    /// `v1:<nonce>:<ciphertext>`, hex; the associated data binds it to its app/service/key.
    pub(crate) fn encrypt(&self, plaintext: &str, context: &str) -> Result<String> {
        let nonce = random_bytes::<24>();
        let payload = chacha20poly1305::aead::Payload { msg: plaintext.as_bytes(), aad: context.as_bytes() };
        let ct = self.0.encrypt(XNonce::from_slice(&nonce), payload).map_err(|_| anyhow::anyhow!("encryption failed"))?;
        Ok(format!("v1:{}:{}", hex(&nonce), hex(&ct)))
    }

    pub(crate) fn decrypt(&self, stored: &str, context: &str) -> Result<String> {
        let mut parts = stored.split(':');
        let (Some("v1"), Some(nonce), Some(ct), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            bail!("unknown secret format");
        };
        let nonce = unhex(nonce).filter(|n| n.len() == 24).context("bad nonce")?;
        let ct = unhex(ct).context("bad ciphertext")?;
        let payload = chacha20poly1305::aead::Payload { msg: &ct, aad: context.as_bytes() };
        let pt =
            self.0.decrypt(XNonce::from_slice(&nonce), payload).map_err(|_| anyhow::anyhow!("a secret does not decrypt with this key"))?;
        String::from_utf8(pt).context("a secret is not UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_round_trip_and_are_bound_to_their_context() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("offshoot-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let key = SecretKey::load_or_create(&dir.join("key"))?;
        let mode = std::fs::metadata(dir.join("key"))?.permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let c = key.encrypt("hunter2", "shop/api/TOKEN")?;
        assert!(!c.contains("hunter2"));
        assert_eq!(key.decrypt(&c, "shop/api/TOKEN")?, "hunter2");
        assert!(key.decrypt(&c, "shop/web/TOKEN").is_err(), "moved to another key: refused");
        let again = SecretKey::load_or_create(&dir.join("key"))?;
        assert_eq!(again.decrypt(&c, "shop/api/TOKEN")?, "hunter2", "the key persists");
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert_eq!(hash_token(&a).len(), 64);
        assert_ne!(hash_token(&a), a);
    }
}
