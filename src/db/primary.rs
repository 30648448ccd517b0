//! Several database hosts: a URL that lists the members of a replicated PostgreSQL
//! (`postgres://h1:5432,h2:5432/crowbar?target_session_attrs=read-write`, as libpq writes
//! it; Patroni's members, for one). crowbar writes, so it uses the member that accepts
//! writes, and follows it through a failover or a switchover:
//!
//! - every new connection is checked (`pg_is_in_recovery()`): one that reached a standby is
//!   closed, and the pool tries again (its own backoff, within its acquire timeout);
//! - a watcher checks the member in use every [`CHECK_EVERY`] on a session of its own; when
//!   that member is gone or has become a standby, it asks every member until one accepts
//!   writes and points the pool's new connections there. Connections to the old member die
//!   with it (a demoted PostgreSQL always restarts), so nothing keeps writing to it.
//!
//! Listeners (`LISTEN`) and worker leases take their sessions from the pool, so they follow
//! too. Nothing here decides who is primary: that is the failover manager's job.

use std::{
    str::FromStr,
    time::{Duration, Instant},
};

use sqlx::{Connection, PgConnection, PgPool, postgres::PgConnectOptions};

use super::describe;

/// How often the watcher asks the member in use whether it still accepts writes.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);
/// How long the watcher waits between rounds of asking every member for the new primary.
const HUNT_EVERY: Duration = Duration::from_millis(200);
/// How long one member may take to answer, unless the URL says (`connect_timeout`, seconds).
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// What `--database-url` names: one server, or the members of a replicated one.
#[derive(Debug, Clone)]
pub struct Target {
    /// In the URL's order; never empty.
    pub members: Vec<PgConnectOptions>,
    /// Only a member that accepts writes will do (several hosts, or
    /// `target_session_attrs=read-write` / `primary`).
    pub wants_primary: bool,
    /// How long one member may take to answer a check.
    pub connect_timeout: Duration,
}

/// What a member answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Primary,
    Standby,
    /// No answer, or an error (its text: no password is in it).
    Unreachable(String),
}

impl Target {
    /// Reads a URL; the error never quotes it (it may hold a password).
    pub fn parse(url: &str) -> Result<Target, String> {
        let Some((scheme, rest)) = url.split_once("://") else {
            return single(url);
        };
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((user, hosts)) => (format!("{user}@"), hosts),
            None => (String::new(), authority),
        };
        let (path, query) = tail.split_once('?').unwrap_or((tail, ""));
        let mut wants_primary = None;
        let mut connect_timeout = DEFAULT_CONNECT_TIMEOUT;
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "target_session_attrs" => {
                    wants_primary = Some(match value {
                        "read-write" | "primary" => true,
                        "any" => false,
                        other => {
                            return Err(format!(
                                "target_session_attrs={other} is not supported: crowbar writes, so use \
                                 read-write (the default with several hosts) or any"
                            ));
                        }
                    })
                }
                "connect_timeout" => {
                    let seconds: u64 = value.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
                        format!("connect_timeout={value} is not a whole number of seconds above 0")
                    })?;
                    connect_timeout = Duration::from_secs(seconds);
                }
                _ => kept.push(pair),
            }
        }
        let query = if kept.is_empty() {
            String::new()
        } else {
            format!("?{}", kept.join("&"))
        };
        let hosts: Vec<&str> = hosts.split(',').collect();
        if hosts.len() > 1 && hosts.iter().any(|h| h.is_empty()) {
            return Err("the database URL lists an empty host (two commas in a row?)".into());
        }
        let members = hosts
            .iter()
            .map(|host| parse_one(&format!("{scheme}://{userinfo}{host}{path}{query}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Target {
            wants_primary: wants_primary.unwrap_or(members.len() > 1),
            members,
            connect_timeout,
        })
    }

    /// Where the members are (`h1:5432, h2:5432`): never the user or password.
    pub fn describe(&self) -> String {
        self.members
            .iter()
            .map(describe)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Asks every member at once what it is, in the URL's order.
    pub async fn ask_all(&self) -> Vec<Answer> {
        futures::future::join_all(
            self.members
                .iter()
                .map(|member| ask(member, self.connect_timeout)),
        )
        .await
    }

    /// The member to use: the one that accepts writes (`prefer` when several claim to, as
    /// for a moment they may), or the first when any will do. `None` with every answer
    /// when no member will do now.
    pub async fn find(
        &self,
        prefer: Option<&PgConnectOptions>,
    ) -> Result<PgConnectOptions, Vec<Answer>> {
        if !self.wants_primary && self.members.len() == 1 {
            return Ok(self.members[0].clone());
        }
        let answers = self.ask_all().await;
        let usable = |answer: &Answer| match answer {
            Answer::Primary => true,
            Answer::Standby => !self.wants_primary,
            Answer::Unreachable(_) => false,
        };
        let preferred = prefer.map(describe);
        let mut found = None;
        for (member, answer) in self.members.iter().zip(&answers) {
            if !usable(answer) {
                continue;
            }
            if found.is_none() || preferred.as_deref() == Some(describe(member).as_str()) {
                found = Some(member.clone());
            }
        }
        found.ok_or(answers)
    }

    /// The members with what each answered, for a message: `h1:5432 (standby), h2:5432
    /// (unreachable: ...)`.
    pub fn explain(&self, answers: &[Answer]) -> String {
        self.members
            .iter()
            .zip(answers)
            .map(|(member, answer)| {
                let what = match answer {
                    Answer::Primary => "accepts writes".to_string(),
                    Answer::Standby => "a standby: read-only".to_string(),
                    Answer::Unreachable(why) => format!("unreachable: {why}"),
                };
                format!("{} ({what})", describe(member))
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn single(url: &str) -> Result<Target, String> {
    Ok(Target {
        members: vec![parse_one(url)?],
        wants_primary: false,
        connect_timeout: DEFAULT_CONNECT_TIMEOUT,
    })
}

fn parse_one(url: &str) -> Result<PgConnectOptions, String> {
    let options = PgConnectOptions::from_str(url)
        .map_err(|e| format!("the database URL is not usable: {e}"))?;
    Ok(without_jit(options))
}

/// Sessions without PostgreSQL's JIT compiler, unless the URL's `options` set `jit`.
///
/// JIT compiles a statement whose estimated cost passes `jit_above_cost`, and the walks up
/// the noderole graph are estimated far above it (PostgreSQL guesses a recursive query's
/// rows) while they take milliseconds. Each pooled connection plans its first executions
/// of a statement afresh, so every new connection compiled them again: about a second per
/// statement (measured: 15 ms of work after 923 ms of compiling), a third of the server's
/// time with three daemons on one database. crowbar's statements are all short.
fn without_jit(options: PgConnectOptions) -> PgConnectOptions {
    if options.get_options().is_some_and(sets_jit) {
        return options;
    }
    options.options([("jit", "off")])
}

/// Whether server options (`-c jit=on`, `-cjit=on`, `--jit=on`) set `jit` itself; its
/// cost thresholds (`jit_above_cost`, ...) are not `jit`.
fn sets_jit(options: &str) -> bool {
    options.split_whitespace().any(|word| {
        let setting = word.strip_prefix("-c").unwrap_or(word);
        let setting = setting.strip_prefix("--").unwrap_or(setting);
        setting.starts_with("jit=")
    })
}

/// Whether the session on `conn` may write: `false` on a standby.
pub async fn accepts_writes(conn: &mut PgConnection) -> sqlx::Result<bool> {
    let standby: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
        .fetch_one(conn)
        .await?;
    Ok(!standby)
}

/// Refuses a new pool connection that reached a standby (the pool then tries again).
pub async fn refuse_standby(conn: &mut PgConnection) -> sqlx::Result<()> {
    if accepts_writes(conn).await? {
        Ok(())
    } else {
        Err(sqlx::Error::Configuration(
            "this PostgreSQL is a standby (read-only); waiting for the primary".into(),
        ))
    }
}

async fn ask(member: &PgConnectOptions, timeout: Duration) -> Answer {
    let asked = tokio::time::timeout(timeout, async {
        let mut conn = PgConnection::connect_with(member).await?;
        let writes = accepts_writes(&mut conn).await;
        let _ = conn.close().await;
        writes
    })
    .await;
    match asked {
        Ok(Ok(true)) => Answer::Primary,
        Ok(Ok(false)) => Answer::Standby,
        Ok(Err(e)) => Answer::Unreachable(e.to_string()),
        Err(_) => Answer::Unreachable(format!("no answer within {timeout:?}")),
    }
}

/// Follows the primary for `pool` until the pool is closed (see the module's comment).
pub async fn follow(pool: PgPool, target: Target) {
    let mut monitor: Option<PgConnection> = None;
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if pool.is_closed() {
            return;
        }
        let current = (*pool.connect_options()).clone();
        if still_primary(&mut monitor, &current, target.connect_timeout).await {
            continue;
        }
        monitor = None;
        let lost = Instant::now();
        tracing::warn!(
            member = %describe(&current),
            "the database member in use no longer accepts writes; looking for the primary among {}",
            target.describe()
        );
        let mut said = Instant::now();
        loop {
            if pool.is_closed() {
                return;
            }
            match target.find(Some(&current)).await {
                Ok(primary) => {
                    let moved = describe(&primary) != describe(&current);
                    tracing::warn!(
                        member = %describe(&primary),
                        after_ms = lost.elapsed().as_millis() as u64,
                        "{}",
                        if moved {
                            "following the new database primary"
                        } else {
                            "the database member in use accepts writes again"
                        }
                    );
                    pool.set_connect_options(primary);
                    break;
                }
                Err(answers) if said.elapsed() >= Duration::from_secs(10) => {
                    tracing::warn!(
                        waited_s = lost.elapsed().as_secs(),
                        "still no database member accepts writes: {}",
                        target.explain(&answers)
                    );
                    said = Instant::now();
                }
                Err(_) => {}
            }
            tokio::time::sleep(HUNT_EVERY).await;
        }
    }
}

/// Asks the member in use on the watcher's own session (made again when it broke); a
/// member that does not answer within `timeout` counts as gone.
async fn still_primary(
    monitor: &mut Option<PgConnection>,
    current: &PgConnectOptions,
    timeout: Duration,
) -> bool {
    let checked = tokio::time::timeout(timeout, async {
        if monitor.is_none() {
            *monitor = Some(PgConnection::connect_with(current).await?);
        }
        accepts_writes(monitor.as_mut().expect("just made")).await
    })
    .await;
    match checked {
        Ok(Ok(writes)) => writes,
        _ => {
            *monitor = None;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_run_without_jit_unless_the_url_asks_for_it() {
        let plain = Target::parse("postgres://crowbar@db/crowbar?sslmode=disable").unwrap();
        assert_eq!(plain.members[0].get_options(), Some("-c jit=off"));
        let several = Target::parse("postgres://crowbar@db1,db2/crowbar").unwrap();
        for member in &several.members {
            assert_eq!(member.get_options(), Some("-c jit=off"));
        }
        let other = Target::parse("postgres:///crowbar?options=-c%20work_mem%3D8MB").unwrap();
        assert_eq!(
            other.members[0].get_options(),
            Some("-c work_mem=8MB -c jit=off")
        );
        let asked = Target::parse("postgres:///crowbar?options=-c%20jit%3Don").unwrap();
        assert_eq!(asked.members[0].get_options(), Some("-c jit=on"));
        assert!(sets_jit("-cjit=on") && sets_jit("--jit=on"));
        let threshold =
            Target::parse("postgres:///crowbar?options=-c%20jit_above_cost%3D0").unwrap();
        assert_eq!(
            threshold.members[0].get_options(),
            Some("-c jit_above_cost=0 -c jit=off")
        );
    }

    #[test]
    fn several_hosts_become_members_that_must_accept_writes() {
        let target = Target::parse(
            "postgres://crowbar:s3cret@10.0.0.1:5433,db2,[fd00::3]:5434/crowbar?sslmode=disable&connect_timeout=3",
        )
        .unwrap();
        assert!(target.wants_primary);
        assert_eq!(target.connect_timeout, Duration::from_secs(3));
        assert_eq!(target.describe(), "10.0.0.1:5433, db2:5432, [fd00::3]:5434");
        for member in &target.members {
            assert_eq!(member.get_username(), "crowbar");
            assert_eq!(member.get_database(), Some("crowbar"));
        }
    }

    #[test]
    fn one_host_is_used_as_it_is_unless_asked_for_a_primary() {
        let plain = Target::parse("postgres://u:p@db/crowbar").unwrap();
        assert!(!plain.wants_primary);
        assert_eq!(plain.members.len(), 1);
        let primary =
            Target::parse("postgresql://u@db:6432/crowbar?target_session_attrs=read-write")
                .unwrap();
        assert!(primary.wants_primary);
        assert_eq!(primary.describe(), "db:6432");
        let any = Target::parse("postgres://u@a,b/crowbar?target_session_attrs=any").unwrap();
        assert!(!any.wants_primary);
    }

    #[test]
    fn bad_urls_are_refused_without_quoting_the_password() {
        for url in [
            "postgres://u:hunter2@a,,b/crowbar",
            "postgres://u:hunter2@a,b/crowbar?target_session_attrs=standby",
            "postgres://u:hunter2@a,b/crowbar?connect_timeout=soon",
            "postgres://u:hunter2@a:notaport,b/crowbar",
        ] {
            let error = Target::parse(url).unwrap_err();
            assert!(!error.contains("hunter2"), "{error}");
        }
    }
}
