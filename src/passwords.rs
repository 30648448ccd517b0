//! Password hashing for web UI users: argon2id with a random salt, stored as a PHC string.
//!
//! One hash takes about 19 MiB and tens of milliseconds of a core, on purpose. So hashing
//! runs on the blocking pool and only a bounded number of hashes run at once
//! (`--password-checks`, default the cores), whoever asks: logins and new passwords take a
//! [`Slot`] first and hold it until their hash is done, even when the request that asked
//! was cancelled meanwhile. A flood of logins then waits for turns instead of taking the
//! daemon's memory and threads.
//!
//! A login for a user that does not exist checks its password against [`DUMMY_PHC`], a
//! hash with the same parameters, so that it takes as long as a wrong password.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use argon2::{
    Argon2,
    password_hash::{PasswordHasher, PasswordVerifier},
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Shortest password accepted for a user.
pub const MIN_LENGTH: usize = 8;

/// What an unknown user's password is checked against: argon2id with the parameters
/// `Argon2::default()` hashes with (a test keeps them equal), a random salt, and a hash of
/// no password anybody knows.
pub const DUMMY_PHC: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHlzYWx0eXNhbHR5cw$w0dLrwbh1rKT4y1SO1ALnhfEB2nXbVTt4/3uTm4qoD8";

/// Allocations from this size on get pages of their own that go back to the system when
/// freed (see [`return_freed_hash_memory`]).
const OWN_PAGES_FROM: usize = 4 << 20;

/// Makes the memory of finished hashes go back to the system. glibc's malloc serves a
/// large allocation with pages of its own only until the first such one is freed; then it
/// raises that threshold and later ones come from its heaps, where freed memory stays with
/// the process: 120 logins taking turns two at a time left a daemon at 670 MB instead of
/// 70 MB. A fixed threshold keeps each hash's 19 MiB in pages that are returned at once.
/// Called once at start, before the daemon's threads allocate.
pub fn return_freed_hash_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let threshold = libc::c_int::try_from(OWN_PAGES_FROM).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt only sets a tunable of the allocator; it takes the allocator's
        // own lock
        if unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, threshold) } != 1 {
            tracing::warn!("cannot set the allocator's mmap threshold; hashes' memory may stay");
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("a password needs at least {MIN_LENGTH} characters")]
    TooShort,
    #[error("cannot hash the password: {0}")]
    Hash(String),
}

/// The daemon's password hashing, at most so many at once.
#[derive(Debug, Clone)]
pub struct Passwords {
    slots: Arc<Semaphore>,
    running: Arc<Running>,
}

/// How many hashes run now, and the most that ever ran at once (`/metrics`).
#[derive(Debug, Default)]
struct Running {
    now: AtomicUsize,
    most: AtomicUsize,
}

/// A turn to hash one password; the hash holds it until it is done.
#[derive(Debug)]
pub struct Slot {
    /// Released when dropped, after the hash.
    _permit: OwnedSemaphorePermit,
}

/// One password hash at a time per core: more only queue for the CPU and hold their memory.
pub fn default_password_checks() -> u32 {
    std::thread::available_parallelism()
        .map_or(2, |n| u32::try_from(n.get()).unwrap_or(u32::MAX))
        .max(1)
}

impl Default for Passwords {
    /// As many at once as the settings' default (`--password-checks`).
    fn default() -> Self {
        Passwords::new(default_password_checks())
    }
}

impl Passwords {
    /// Hashing with at most `at_once` hashes running at a time (at least one).
    pub fn new(at_once: u32) -> Self {
        let at_once = usize::try_from(at_once).unwrap_or(usize::MAX).max(1);
        Passwords {
            slots: Arc::new(Semaphore::new(at_once)),
            running: Arc::default(),
        }
    }

    /// Waits for a turn to hash.
    pub async fn slot(&self) -> Result<Slot, PasswordError> {
        self.slots
            .clone()
            .acquire_owned()
            .await
            .map(|permit| Slot { _permit: permit })
            .map_err(|_| PasswordError::Hash("password hashing has stopped".into()))
    }

    /// How many hashes run now.
    pub fn running(&self) -> usize {
        self.running.now.load(Ordering::Relaxed)
    }

    /// The most hashes that ran at once so far.
    pub fn most_at_once(&self) -> usize {
        self.running.most.load(Ordering::Relaxed)
    }

    /// The PHC string (`$argon2id$v=19$...`) of `password`, hashed in its turn.
    pub async fn hash(&self, password: &str) -> Result<String, PasswordError> {
        if password.chars().count() < MIN_LENGTH {
            return Err(PasswordError::TooShort);
        }
        let slot = self.slot().await?;
        let password = password.to_owned();
        self.run(slot, move || {
            Argon2::default()
                .hash_password(password.as_bytes())
                .map(|hash| hash.to_string())
                .map_err(|e| PasswordError::Hash(e.to_string()))
        })
        .await
        .map_err(|e| PasswordError::Hash(e.to_string()))?
    }

    /// Whether `password` matches the stored PHC string, in the turn `slot`. `None` (no
    /// such user) checks against [`DUMMY_PHC`] and is false, as slowly as a wrong password.
    /// A malformed hash matches nothing.
    pub async fn verify(&self, slot: Slot, password: &str, phc: Option<&str>) -> bool {
        let known = phc.is_some();
        let (password, phc) = (password.to_owned(), phc.unwrap_or(DUMMY_PHC).to_owned());
        let matches = self
            .run(slot, move || {
                Argon2::default()
                    .verify_password(password.as_bytes(), phc.as_str())
                    .is_ok()
            })
            .await;
        known && matches.unwrap_or(false)
    }

    /// Runs `work` on the blocking pool, holding `slot` (and counting it) until it is done.
    async fn run<T: Send + 'static>(
        &self,
        slot: Slot,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, tokio::task::JoinError> {
        let running = self.running.clone();
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            // counted where the work runs: what this measures is what the slots bound
            let now = running.now.fetch_add(1, Ordering::Relaxed) + 1;
            running.most.fetch_max(now, Ordering::Relaxed);
            let result = work();
            running.now.fetch_sub(1, Ordering::Relaxed);
            result
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::PasswordHash;

    #[tokio::test]
    async fn a_hash_verifies_only_its_password() {
        let passwords = Passwords::new(2);
        let phc = passwords.hash("correct horse").await.unwrap();
        assert!(phc.starts_with("$argon2id$"), "{phc}");
        let check = |password: &'static str, phc: Option<String>| {
            let passwords = passwords.clone();
            async move {
                let slot = passwords.slot().await.unwrap();
                passwords.verify(slot, password, phc.as_deref()).await
            }
        };
        assert!(check("correct horse", Some(phc.clone())).await);
        assert!(!check("correct horsf", Some(phc.clone())).await);
        assert!(!check("correct horse", Some("not a hash".into())).await);
        // salted: the same password hashes differently each time
        assert_ne!(phc, passwords.hash("correct horse").await.unwrap());
    }

    #[tokio::test]
    async fn short_passwords_are_refused() {
        assert!(matches!(
            Passwords::new(1).hash("short").await,
            Err(PasswordError::TooShort)
        ));
    }

    #[test]
    fn the_dummy_hash_costs_what_a_real_one_costs() {
        let dummy = PasswordHash::new(DUMMY_PHC).unwrap();
        let real = Argon2::default()
            .hash_password(b"some password")
            .unwrap()
            .to_string();
        let real = PasswordHash::new(&real).unwrap();
        assert_eq!(dummy.algorithm, real.algorithm);
        assert_eq!(dummy.version, real.version);
        assert_eq!(dummy.params, real.params);
        assert_eq!(
            dummy.hash.map(|h| h.len()),
            real.hash.map(|h| h.len()),
            "same output length"
        );
    }

    #[tokio::test]
    async fn unknown_users_run_the_dummy_check_and_never_match() {
        let passwords = Passwords::new(1);
        for password in ["", "correct horse", "saltysaltysaltys"] {
            let slot = passwords.slot().await.unwrap();
            assert!(!passwords.verify(slot, password, None).await);
        }
        // the dummy check ran (it is counted like any other)
        assert_eq!(passwords.most_at_once(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn no_more_hashes_run_at_once_than_there_are_slots() {
        let passwords = Passwords::new(2);
        let checks: Vec<_> = (0..8)
            .map(|_| {
                let passwords = passwords.clone();
                tokio::spawn(async move {
                    let slot = passwords.slot().await.unwrap();
                    passwords.verify(slot, "wrong", Some(DUMMY_PHC)).await
                })
            })
            .collect();
        for check in checks {
            assert!(!check.await.unwrap());
        }
        let most = passwords.most_at_once();
        assert!((1..=2).contains(&most), "{most} at once");
        assert_eq!(passwords.running(), 0);
    }
}
