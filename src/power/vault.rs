//! BMC credentials at rest: sealed with AES-256-GCM under a key kept in the data directory
//! (`<data-dir>/bmc.key`, 32 random bytes, mode 0600), so the database — its dumps, its
//! replicas, whoever may read it — holds no BMC password in the clear. Every daemon that
//! shares the database needs the same key file. A sealed value names its key (the key's
//! fingerprint), so a daemon with another key says so instead of failing obscurely.

use std::{
    fs::{self, OpenOptions},
    io::{ErrorKind, Write},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use aes_gcm::{
    Aes256Gcm, Nonce,
    aead::{Aead, KeyInit},
};
use sha2::{Digest, Sha256};

use crate::secret::Secret;

/// The key file's name in the data directory.
pub const KEY_FILE: &str = "bmc.key";
const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;
/// Bytes of the key's fingerprint stored with each sealed value.
const KEY_ID_LEN: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("BMC key {path}: {detail}")]
    Key { path: PathBuf, detail: String },
    #[error(
        "this BMC credential was sealed with another key (key {sealed_with}; this daemon's is {ours}): copy bmc.key from the data directory of the daemon that enrolled the BMC, or enroll it again"
    )]
    OtherKey { sealed_with: String, ours: String },
    #[error("a sealed BMC credential is damaged")]
    Damaged,
}

/// Seals and opens BMC credentials.
pub struct Vault {
    cipher: Aes256Gcm,
    id: [u8; KEY_ID_LEN],
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Vault(key {})", hex::encode(self.id))
    }
}

impl Vault {
    fn from_key(key: &[u8; KEY_LEN]) -> Vault {
        let digest = Sha256::digest(key);
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&digest[..KEY_ID_LEN]);
        Vault {
            cipher: Aes256Gcm::new_from_slice(key).expect("a 32-byte key"),
            id,
        }
    }

    /// A vault with a key of its own that lives as long as the process (tests, and a
    /// daemon without a data directory).
    pub fn ephemeral() -> Vault {
        Vault::from_key(&rand::random())
    }

    /// Loads `<dir>/bmc.key`, creating it (mode 0600, its directory 0700) if there is none.
    /// Two processes creating it at once end up with the same key; a key others may read
    /// is refused.
    pub fn load_or_create(dir: &Path) -> Result<Vault, VaultError> {
        let path = dir.join(KEY_FILE);
        let key_err = |detail: String| VaultError::Key {
            path: path.clone(),
            detail,
        };
        crate::private_files::create_dir(dir)
            .map_err(|e| key_err(format!("cannot create directory: {e}")))?;
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(mut file) => {
                let key: [u8; KEY_LEN] = rand::random();
                file.write_all(&key)
                    .and_then(|()| file.sync_all())
                    .map_err(|e| key_err(format!("cannot write: {e}")))?;
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(key_err(format!("cannot create: {e}"))),
        }
        crate::private_files::check_file(&path, "key").map_err(key_err)?;
        let bytes = fs::read(&path).map_err(|e| key_err(e.to_string()))?;
        let key: [u8; KEY_LEN] = bytes.as_slice().try_into().map_err(|_| {
            key_err(format!(
                "{} bytes, not {KEY_LEN} (a key being written? try again)",
                bytes.len()
            ))
        })?;
        Ok(Vault::from_key(&key))
    }

    /// `secret` sealed: key id, nonce, ciphertext with its tag.
    pub fn seal(&self, secret: &Secret) -> Vec<u8> {
        let nonce_bytes: [u8; NONCE_LEN] = rand::random();
        let nonce = Nonce::try_from(&nonce_bytes[..]).expect("a 12-byte nonce");
        let sealed = self
            .cipher
            .encrypt(&nonce, secret.expose().as_bytes())
            .expect("AES-GCM seals any length a credential has");
        [&self.id[..], &nonce_bytes[..], &sealed[..]].concat()
    }

    /// What [`Vault::seal`] sealed.
    pub fn open(&self, sealed: &[u8]) -> Result<Secret, VaultError> {
        if sealed.len() < KEY_ID_LEN + NONCE_LEN {
            return Err(VaultError::Damaged);
        }
        let (id, rest) = sealed.split_at(KEY_ID_LEN);
        if id != self.id {
            return Err(VaultError::OtherKey {
                sealed_with: hex::encode(id),
                ours: hex::encode(self.id),
            });
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_from(nonce).map_err(|_| VaultError::Damaged)?;
        let plain = self
            .cipher
            .decrypt(&nonce, ciphertext)
            .map_err(|_| VaultError::Damaged)?;
        String::from_utf8(plain)
            .map(Secret::new)
            .map_err(|_| VaultError::Damaged)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_sealed_secret_opens_with_its_key_only() {
        let dir = tempfile::tempdir().unwrap();
        let vault = Vault::load_or_create(dir.path()).unwrap();
        let sealed = vault.seal(&Secret::new("calvin"));
        assert!(
            !sealed.windows(6).any(|w| w == b"calvin"),
            "no clear text in the sealed value"
        );
        assert_eq!(vault.open(&sealed).unwrap().expose(), "calvin");
        assert_ne!(
            sealed,
            vault.seal(&Secret::new("calvin")),
            "a nonce per seal"
        );

        // the same file, the same key; another key says which
        let again = Vault::load_or_create(dir.path()).unwrap();
        assert_eq!(again.open(&sealed).unwrap().expose(), "calvin");
        let other = Vault::ephemeral();
        assert!(matches!(
            other.open(&sealed),
            Err(VaultError::OtherKey { .. })
        ));

        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(matches!(vault.open(&tampered), Err(VaultError::Damaged)));
        assert!(matches!(
            vault.open(&sealed[..10]),
            Err(VaultError::Damaged)
        ));
    }

    #[test]
    fn the_key_file_is_private_and_a_readable_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        Vault::load_or_create(dir.path()).unwrap();
        let path = dir.path().join(KEY_FILE);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(fs::read(&path).unwrap().len(), KEY_LEN);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let refused = Vault::load_or_create(dir.path()).unwrap_err().to_string();
        assert!(refused.contains("too open"), "{refused}");
    }
}
