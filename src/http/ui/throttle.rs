//! Backing off failed logins (docs/operations.md, "Logins, sessions and tokens").
//!
//! Failures are counted per source address and per user name typed. Once a source or a name
//! has `--login-max-failures` failures, logins from it (or for it) are refused with 429 for
//! `--login-lockout` after its latest failure, twice as long after each further failure, up
//! to `--login-failure-window`; a key with no failure for that window is forgotten. Refused
//! attempts check no password and count nothing, so a locked-out attacker costs nothing and
//! learns nothing. A successful login clears its user name's failures, not its source's (an
//! attacker with one account of its own could otherwise reset its address's count).
//!
//! The state is per daemon and bounded: at most `--login-tracked` sources and as many
//! names; when full, forgotten keys go first, then the one whose latest failure is oldest.
//! Rate limiters such as `governor` count requests, not failures, and cannot lock out for
//! longer after more failures, so this is a small map of its own.

use std::{
    collections::HashMap,
    hash::Hash,
    net::IpAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::units::parse_duration;

/// Settings of logins: password hashing and the backoff of failed logins.
#[derive(Debug, Clone, clap::Args)]
pub struct LoginSettings {
    /// Most password hashes computed at once (logins, new passwords); more wait for a turn.
    /// Each takes about 19 MiB and a core for tens of milliseconds. Default: the cores.
    #[arg(long, env = "CROWBAR_PASSWORD_CHECKS", default_value_t = crate::passwords::default_password_checks(),
          value_parser = clap::value_parser!(u32).range(1..))]
    pub password_checks: u32,
    /// Failed logins from one source address, or for one user name, before further logins
    /// from it or for it are refused for a while (429).
    #[arg(long, env = "CROWBAR_LOGIN_MAX_FAILURES", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub login_max_failures: u32,
    /// How long the first lockout lasts; it doubles with each further failure.
    #[arg(long, env = "CROWBAR_LOGIN_LOCKOUT", default_value = "1m", value_parser = parse_duration)]
    pub login_lockout: Duration,
    /// How long failures are remembered after the latest one; also the longest lockout.
    #[arg(long, env = "CROWBAR_LOGIN_FAILURE_WINDOW", default_value = "15m", value_parser = parse_duration)]
    pub login_failure_window: Duration,
    /// Most source addresses, and most user names, whose failures are remembered.
    #[arg(long, env = "CROWBAR_LOGIN_TRACKED", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub login_tracked: u32,
}

impl Default for LoginSettings {
    fn default() -> Self {
        crate::settings::from_flag_defaults()
    }
}

/// The failures of one key.
#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    latest: Instant,
}

/// The rules, apart from the maps.
#[derive(Debug, Clone, Copy)]
struct Policy {
    max_failures: u32,
    lockout: Duration,
    window: Duration,
}

impl Policy {
    /// Until when `failures` keep their key locked, if they do.
    fn locked_until(&self, failures: &Failures) -> Option<Instant> {
        let beyond = failures.count.checked_sub(self.max_failures)?;
        let longest = self.window.max(self.lockout);
        let lock = self
            .lockout
            .checked_mul(2u32.saturating_pow(beyond.min(31)))
            .map_or(longest, |lock| lock.min(longest));
        Some(failures.latest + lock)
    }

    fn forgotten(&self, failures: &Failures, now: Instant) -> bool {
        now.saturating_duration_since(failures.latest) >= self.window.max(self.lockout)
    }
}

/// Failures by key, at most `capacity` keys.
#[derive(Debug)]
struct Tracker<K> {
    entries: HashMap<K, Failures>,
    capacity: usize,
}

impl<K: Eq + Hash + Clone> Tracker<K> {
    fn new(capacity: usize) -> Self {
        Tracker {
            entries: HashMap::new(),
            capacity,
        }
    }

    fn locked_until(&self, policy: &Policy, key: &K, now: Instant) -> Option<Instant> {
        let failures = self.entries.get(key)?;
        policy.locked_until(failures).filter(|until| *until > now)
    }

    fn fail(&mut self, policy: &Policy, key: &K, now: Instant) {
        if let Some(failures) = self.entries.get_mut(key) {
            if policy.forgotten(failures, now) {
                failures.count = 0;
            }
            failures.count = failures.count.saturating_add(1);
            failures.latest = now;
            return;
        }
        if self.entries.len() >= self.capacity {
            self.entries.retain(|_, f| !policy.forgotten(f, now));
        }
        if self.entries.len() >= self.capacity
            && let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, f)| f.latest)
                .map(|(k, _)| k.clone())
        {
            self.entries.remove(&oldest);
        }
        self.entries.insert(
            key.clone(),
            Failures {
                count: 1,
                latest: now,
            },
        );
    }

    fn clear(&mut self, key: &K) {
        self.entries.remove(key);
    }
}

/// Who a login attempt is: where it comes from (when known) and the user name it names.
#[derive(Debug, Clone, Copy, Default)]
pub struct Attempt<'a> {
    pub source: Option<IpAddr>,
    pub user: Option<&'a str>,
}

impl Attempt<'_> {
    /// The source as counted: an IPv4 address, or the /64 of an IPv6 one (one host usually
    /// has a whole /64 to pick addresses from).
    fn source_key(&self) -> Option<IpAddr> {
        match self.source? {
            IpAddr::V4(v4) => Some(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Some(IpAddr::V4(v4)),
                None => {
                    let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                    Some(IpAddr::V6(prefix.into()))
                }
            },
        }
    }

    /// The user name as counted; names no user can have are not kept (they could be long,
    /// and locking them out protects nobody).
    fn user_key(&self) -> Option<String> {
        self.user
            .filter(|name| crate::db::users::valid_name(name))
            .map(str::to_string)
    }
}

/// The failed logins a daemon remembers.
#[derive(Debug)]
pub struct LoginThrottle {
    policy: Policy,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    sources: Tracker<IpAddr>,
    users: Tracker<String>,
}

impl LoginThrottle {
    pub fn new(settings: &LoginSettings) -> Self {
        let capacity = usize::try_from(settings.login_tracked).unwrap_or(usize::MAX);
        LoginThrottle {
            policy: Policy {
                max_failures: settings.login_max_failures,
                lockout: settings.login_lockout,
                window: settings.login_failure_window,
            },
            state: Mutex::new(State {
                sources: Tracker::new(capacity),
                users: Tracker::new(capacity),
            }),
        }
    }

    /// How long `attempt` must wait before it is checked at all; `None`: check it now.
    pub fn wait(&self, attempt: &Attempt) -> Option<Duration> {
        self.wait_at(attempt, Instant::now())
    }

    /// Counts a failed login.
    pub fn failed(&self, attempt: &Attempt) {
        self.failed_at(attempt, Instant::now());
    }

    /// A successful login: its user name starts afresh.
    pub fn succeeded(&self, attempt: &Attempt) {
        if let Some(user) = attempt.user_key() {
            self.state().users.clear(&user);
        }
    }

    fn wait_at(&self, attempt: &Attempt, now: Instant) -> Option<Duration> {
        let state = self.state();
        let source = attempt
            .source_key()
            .and_then(|key| state.sources.locked_until(&self.policy, &key, now));
        let user = attempt
            .user_key()
            .and_then(|key| state.users.locked_until(&self.policy, &key, now));
        source.max(user).map(|until| until - now)
    }

    fn failed_at(&self, attempt: &Attempt, now: Instant) {
        let mut state = self.state();
        if let Some(key) = attempt.source_key() {
            state.sources.fail(&self.policy, &key, now);
        }
        if let Some(key) = attempt.user_key() {
            state.users.fail(&self.policy, &key, now);
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // the maps stay consistent whatever panicked while holding them
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn throttle(
        max_failures: u32,
        lockout: Duration,
        window: Duration,
        tracked: u32,
    ) -> LoginThrottle {
        LoginThrottle::new(&LoginSettings {
            password_checks: 1,
            login_max_failures: max_failures,
            login_lockout: lockout,
            login_failure_window: window,
            login_tracked: tracked,
        })
    }

    fn from(source: &str, user: Option<&'static str>) -> Attempt<'static> {
        Attempt {
            source: Some(source.parse().unwrap()),
            user,
        }
    }

    #[test]
    fn defaults_are_documented() {
        let s = LoginSettings::default();
        assert_eq!(s.login_max_failures, 5);
        assert_eq!(s.login_lockout, 60 * S);
        assert_eq!(s.login_failure_window, 900 * S);
        assert_eq!(s.login_tracked, 10_000);
        assert!(s.password_checks >= 1);
    }

    #[test]
    fn a_source_is_locked_after_its_failures_for_longer_each_time() {
        let t = throttle(3, 10 * S, 60 * S, 100);
        let now = Instant::now();
        let a = from("198.51.100.7", None);
        for i in 0..3 {
            assert_eq!(t.wait_at(&a, now), None, "failure {i}");
            t.failed_at(&a, now);
        }
        assert_eq!(t.wait_at(&a, now), Some(10 * S));
        assert_eq!(t.wait_at(&a, now + 4 * S), Some(6 * S));
        // other sources are not touched
        assert_eq!(t.wait_at(&from("198.51.100.8", None), now), None);
        // after the lockout, one more failure locks for twice as long, then four times...
        let later = now + 10 * S;
        assert_eq!(t.wait_at(&a, later), None);
        t.failed_at(&a, later);
        assert_eq!(t.wait_at(&a, later), Some(20 * S));
        let later = later + 20 * S;
        t.failed_at(&a, later);
        assert_eq!(t.wait_at(&a, later), Some(40 * S));
        // ...up to the window
        let later = later + 40 * S;
        t.failed_at(&a, later);
        assert_eq!(t.wait_at(&a, later), Some(60 * S));
        // a window without failures forgets them all
        let later = later + 60 * S;
        assert_eq!(t.wait_at(&a, later), None);
        t.failed_at(&a, later);
        assert_eq!(t.wait_at(&a, later), None);
    }

    #[test]
    fn a_user_name_is_locked_whatever_the_source_and_a_success_clears_it() {
        let t = throttle(2, 10 * S, 60 * S, 100);
        let now = Instant::now();
        t.failed_at(&from("198.51.100.1", Some("alice")), now);
        t.failed_at(&from("198.51.100.2", Some("alice")), now);
        assert_eq!(
            t.wait_at(&from("198.51.100.3", Some("alice")), now),
            Some(10 * S)
        );
        assert_eq!(t.wait_at(&from("198.51.100.3", Some("bob")), now), None);
        // a name no user can have is not kept; its source still counts
        let odd = from("198.51.100.4", Some("Not A User"));
        t.failed_at(&odd, now);
        t.failed_at(&odd, now);
        assert_eq!(
            t.wait_at(&from("198.51.100.5", Some("Not A User")), now),
            None
        );
        assert_eq!(t.wait_at(&odd, now), Some(10 * S));
        // no source known (no address): only the name counts
        let nowhere = Attempt {
            source: None,
            user: Some("alice"),
        };
        assert_eq!(t.wait_at(&nowhere, now), Some(10 * S));
        t.succeeded(&nowhere);
        assert_eq!(t.wait_at(&nowhere, now), None);
        // the sources keep their failures
        assert_eq!(t.wait_at(&from("198.51.100.4", None), now), Some(10 * S));
    }

    #[test]
    fn ipv6_sources_count_by_their_64() {
        let t = throttle(2, 10 * S, 60 * S, 100);
        let now = Instant::now();
        t.failed_at(&from("fd00:1:2:3::1", None), now);
        t.failed_at(&from("fd00:1:2:3:ffff::2", None), now);
        assert_eq!(t.wait_at(&from("fd00:1:2:3::9", None), now), Some(10 * S));
        assert_eq!(t.wait_at(&from("fd00:1:2:4::1", None), now), None);
        // an IPv4 client on a dual-stack socket is its IPv4 address
        t.failed_at(&from("::ffff:198.51.100.9", None), now);
        t.failed_at(&from("198.51.100.9", None), now);
        assert_eq!(t.wait_at(&from("198.51.100.9", None), now), Some(10 * S));
    }

    #[test]
    fn the_maps_stay_bounded_forgetting_the_oldest() {
        let t = throttle(1, 10 * S, 60 * S, 3);
        let now = Instant::now();
        for (i, source) in ["198.51.100.1", "198.51.100.2", "198.51.100.3"]
            .iter()
            .enumerate()
        {
            t.failed_at(&from(source, None), now + u32::try_from(i).unwrap() * S);
        }
        t.failed_at(&from("198.51.100.4", None), now + 3 * S);
        let state = t.state();
        assert_eq!(state.sources.entries.len(), 3);
        assert!(
            !state
                .sources
                .entries
                .contains_key(&"198.51.100.1".parse().unwrap())
        );
        drop(state);
        // forgotten keys go before live ones
        let later = now + 62 * S;
        t.failed_at(&from("198.51.100.2", None), later);
        t.failed_at(&from("198.51.100.5", None), later);
        let state = t.state();
        assert_eq!(state.sources.entries.len(), 3);
        for kept in ["198.51.100.2", "198.51.100.4", "198.51.100.5"] {
            assert!(
                state.sources.entries.contains_key(&kept.parse().unwrap()),
                "{kept}"
            );
        }
    }
}
