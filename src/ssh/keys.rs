//! crowbar's own SSH identity: one ed25519 key pair kept in a directory.

use std::{
    fmt,
    fs::{self, OpenOptions},
    io::{ErrorKind, Write},
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::Arc,
};

use rand::TryRngCore;
use russh::keys::{
    HashAlg, PrivateKey, PublicKey,
    ssh_key::{LineEnding, private::Ed25519Keypair},
};

use super::SshError;

const PRIVATE_FILE: &str = "id_ed25519";
const PUBLIC_FILE: &str = "id_ed25519.pub";

/// The key crowbar authenticates to nodes with.
///
/// `Debug` shows the fingerprint and the file, never key material.
#[derive(Clone)]
pub struct ClientKey {
    private: Arc<PrivateKey>,
    path: PathBuf,
}

impl ClientKey {
    /// Loads `<dir>/id_ed25519`, creating the key pair first if there is none.
    ///
    /// A new key is written in OpenSSH format with mode 0600 (its directory is created with
    /// mode 0700), and its public half to `<dir>/id_ed25519.pub` as
    /// `ssh-ed25519 AAAA... crowbar@<hostname>`. Two processes creating the key at the same
    /// time end up with the same key. An existing private key that others may read is
    /// refused, like OpenSSH does.
    pub fn load_or_create(dir: &Path) -> Result<ClientKey, SshError> {
        let path = dir.join(PRIVATE_FILE);
        let key_err = |detail: String| SshError::Key {
            path: path.clone(),
            detail,
        };
        crate::private_files::create_dir(dir)
            .map_err(|e| key_err(format!("cannot create directory: {e}")))?;
        let private = match Self::load(&path)? {
            Some(key) => key,
            None => Self::create(dir, &path)?,
        };
        let key = ClientKey {
            private: Arc::new(private),
            path,
        };
        key.ensure_public_file(dir)?;
        Ok(key)
    }

    /// The public key as one `authorized_keys` line: `ssh-ed25519 AAAA... crowbar@host`.
    pub fn public_openssh(&self) -> String {
        self.private
            .public_key()
            .to_openssh()
            .expect("an ed25519 public key always encodes")
    }

    pub fn public_key(&self) -> &PublicKey {
        self.private.public_key()
    }

    /// `SHA256:...`, as `ssh-keygen -l` prints it.
    pub fn fingerprint(&self) -> String {
        fingerprint(self.public_key())
    }

    /// Where the private key is stored.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn private(&self) -> Arc<PrivateKey> {
        self.private.clone()
    }

    fn load(path: &Path) -> Result<Option<PrivateKey>, SshError> {
        let key_err = |detail: String| SshError::Key {
            path: path.to_path_buf(),
            detail,
        };
        let meta = match fs::metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(key_err(e.to_string())),
        };
        crate::private_files::check_mode(meta.permissions().mode(), "private key")
            .map_err(key_err)?;
        let text = fs::read_to_string(path).map_err(|e| key_err(e.to_string()))?;
        let key = PrivateKey::from_openssh(text.as_bytes())
            .map_err(|e| key_err(format!("not an OpenSSH private key: {e}")))?;
        if key.is_encrypted() {
            return Err(key_err("the key is passphrase-protected".into()));
        }
        Ok(Some(key))
    }

    fn create(dir: &Path, path: &Path) -> Result<PrivateKey, SshError> {
        let key_err = |detail: String| SshError::Key {
            path: path.to_path_buf(),
            detail,
        };
        let mut seed = [0u8; 32];
        rand::rngs::OsRng
            .try_fill_bytes(&mut seed)
            .map_err(|e| key_err(format!("no randomness from the OS: {e}")))?;
        let mut key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
        seed.fill(0);
        key.set_comment(format!("crowbar@{}", hostname()));
        let pem = key
            .to_openssh(LineEnding::LF)
            .map_err(|e| key_err(format!("cannot encode: {e}")))?;
        // Write a private temporary file, then link it into place: the key appears complete
        // or not at all, and a concurrent creator's key wins without being overwritten.
        let tmp = dir.join(temp_name(PRIVATE_FILE));
        write_new(&tmp, pem.as_bytes(), 0o600).map_err(|e| key_err(e.to_string()))?;
        let linked = fs::hard_link(&tmp, path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(key),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                Self::load(path)?.ok_or_else(|| key_err("disappeared while being created".into()))
            }
            Err(e) => Err(key_err(e.to_string())),
        }
    }

    /// (Re)writes the public key file if it is missing or does not match the private key.
    fn ensure_public_file(&self, dir: &Path) -> Result<(), SshError> {
        let pub_path = dir.join(PUBLIC_FILE);
        let line = format!("{}\n", self.public_openssh());
        if fs::read_to_string(&pub_path).is_ok_and(|existing| existing == line) {
            return Ok(());
        }
        let tmp = dir.join(temp_name(PUBLIC_FILE));
        write_new(&tmp, line.as_bytes(), 0o644)
            .and_then(|()| fs::rename(&tmp, &pub_path))
            .map_err(|e| SshError::Key {
                path: pub_path,
                detail: e.to_string(),
            })
    }
}

impl fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientKey")
            .field("fingerprint", &self.fingerprint())
            .field("path", &self.path)
            .finish()
    }
}

/// The SHA256 fingerprint of a public key, `SHA256:<base64 without padding>`.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// A hidden name next to `file`, unique to this call.
fn temp_name(file: &str) -> String {
    format!(
        ".{file}.{}.{:08x}.tmp",
        std::process::id(),
        rand::random::<u32>()
    )
}

fn write_new(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn creates_then_loads_the_same_key() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("keys");
        let first = ClientKey::load_or_create(&dir).unwrap();
        let second = ClientKey::load_or_create(&dir).unwrap();
        assert_eq!(first.public_openssh(), second.public_openssh());
        assert_eq!(first.fingerprint(), second.fingerprint());
        assert_eq!(first.path(), dir.join("id_ed25519"));
    }

    #[test]
    fn files_have_openssh_format_and_private_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("nested/keys");
        let key = ClientKey::load_or_create(&dir).unwrap();

        assert_eq!(mode(&dir), 0o700);
        let private = dir.join("id_ed25519");
        assert_eq!(mode(&private), 0o600);
        let pem = fs::read_to_string(&private).unwrap();
        assert!(
            pem.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----\n"),
            "{pem:.40}"
        );

        let public = fs::read_to_string(dir.join("id_ed25519.pub")).unwrap();
        let fields: Vec<&str> = public.trim_end().split(' ').collect();
        assert_eq!(fields.len(), 3, "{public}");
        assert_eq!(fields[0], "ssh-ed25519");
        assert!(fields[1].starts_with("AAAA"));
        assert_eq!(fields[2], format!("crowbar@{}", hostname()));
        assert_eq!(public.trim_end(), key.public_openssh());
        // ssh's own parser agrees.
        assert_eq!(
            &PublicKey::from_openssh(&public).unwrap().key_data(),
            &key.public_key().key_data()
        );
    }

    #[test]
    fn openssh_reads_the_private_key() {
        let tmp = tempfile::tempdir().unwrap();
        let key = ClientKey::load_or_create(tmp.path()).unwrap();
        let out = std::process::Command::new("ssh-keygen")
            .arg("-y")
            .arg("-f")
            .arg(key.path())
            .output()
            .expect("ssh-keygen (openssh-client) is needed by the tests");
        assert!(out.status.success(), "{out:?}");
        let derived = String::from_utf8(out.stdout).unwrap();
        let derived = PublicKey::from_openssh(derived.trim()).unwrap();
        assert_eq!(derived.key_data(), key.public_key().key_data());
    }

    #[test]
    fn concurrent_creators_end_up_with_one_key() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("keys");
        let keys: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| ClientKey::load_or_create(&dir).unwrap().public_openssh()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(keys.windows(2).all(|w| w[0] == w[1]), "{keys:?}");
        let leftovers: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn a_missing_public_file_is_rewritten_from_the_private_key() {
        let tmp = tempfile::tempdir().unwrap();
        let key = ClientKey::load_or_create(tmp.path()).unwrap();
        fs::remove_file(tmp.path().join("id_ed25519.pub")).unwrap();
        let again = ClientKey::load_or_create(tmp.path()).unwrap();
        assert_eq!(key.public_openssh(), again.public_openssh());
        let public = fs::read_to_string(tmp.path().join("id_ed25519.pub")).unwrap();
        assert_eq!(public.trim_end(), key.public_openssh());
    }

    #[test]
    fn a_readable_private_key_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        ClientKey::load_or_create(tmp.path()).unwrap();
        let private = tmp.path().join("id_ed25519");
        fs::set_permissions(&private, fs::Permissions::from_mode(0o644)).unwrap();
        let err = ClientKey::load_or_create(tmp.path()).unwrap_err();
        assert!(matches!(err, SshError::Key { .. }), "{err}");
        assert!(err.to_string().contains("too open"), "{err}");
    }

    #[test]
    fn garbage_is_reported_with_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        write_new(&tmp.path().join("id_ed25519"), b"not a key", 0o600).unwrap();
        let err = ClientKey::load_or_create(tmp.path()).unwrap_err();
        assert!(err.to_string().contains("id_ed25519"), "{err}");
    }

    #[test]
    fn debug_shows_no_key_material() {
        let tmp = tempfile::tempdir().unwrap();
        let key = ClientKey::load_or_create(tmp.path()).unwrap();
        let debug = format!("{key:?}");
        let pem = fs::read_to_string(tmp.path().join("id_ed25519")).unwrap();
        let secret_body: Vec<&str> = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        for line in secret_body {
            assert!(!debug.contains(line), "Debug leaks key material: {debug}");
        }
        let public_b64 = key.public_openssh().split(' ').nth(1).unwrap().to_string();
        assert!(!debug.contains(&public_b64));
        assert!(debug.contains(&key.fingerprint()), "{debug}");
    }

    #[test]
    fn fingerprint_is_openssh_sha256_form() {
        // Fingerprint of this key as printed by `ssh-keygen -lf`.
        let key = PublicKey::from_openssh(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIKQDon7DBltbjZH+hxj71vAOB9ziHwqNfWK5WB9pab5 test",
        )
        .unwrap();
        assert_eq!(
            fingerprint(&key),
            "SHA256:uRvjRhrwrueQXn6z1Yc7Q/aHgiIQ3G3eVAOT4OTO6Y4"
        );
    }
}
