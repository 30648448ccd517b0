//! `crowbar migrate`: applies pending migrations; `--check` says what applying them would
//! do during a rolling upgrade and changes nothing (docs/operations.md).

use std::process::ExitCode;

use anyhow::Context;

use super::serve::Database;
use crate::{
    config::Settings,
    db::{self, daemons, schema},
    telemetry,
};

#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    /// Change nothing: list the pending migrations, whether each keeps older builds working
    /// (expand) or leaves them behind (contract), and the daemons a contract step would
    /// leave behind. Exits 1 when applying now would be refused.
    #[arg(long)]
    pub check: bool,
    #[command(flatten)]
    pub settings: Settings,
}

pub async fn run(args: MigrateArgs) -> anyhow::Result<ExitCode> {
    telemetry::init(args.settings.log_format);
    let settings = args
        .settings
        .with_absolute_paths()
        .context("cannot resolve the configured paths against the working directory")?;
    let database = Database::open(&settings).await?;
    let result = if args.check {
        check(&database.pool).await
    } else {
        db::migrate(&database.pool).await.map(|()| {
            println!("migrations applied (schema {})", schema::newest_known());
            ExitCode::SUCCESS
        })
    };
    database.close(settings.shutdown_grace).await;
    Ok(result?)
}

/// Prints the plan; exit 1 when it cannot be carried out now.
async fn check(pool: &sqlx::PgPool) -> db::Result<ExitCode> {
    let mut conn = pool.acquire().await?;
    let applied = schema::applied_migrations(&mut conn)
        .await?
        .unwrap_or_default();
    let known = schema::newest_known();
    let at = applied.iter().map(|m| m.version).max().unwrap_or(0);
    let serving = if schema::has_daemons_table(&mut conn).await? {
        daemons::serving(&mut conn).await?
    } else {
        Vec::new()
    };
    let oldest = schema::oldest_serving(&mut conn).await?;
    let plan = Plan {
        at,
        known,
        oldest_serving: oldest,
        pending: schema::pending(&applied),
        serving,
    };
    let (text, ok) = plan.describe();
    print!("{text}");
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// What `--check` found.
struct Plan {
    /// The newest migration applied.
    at: i64,
    /// The newest this build carries.
    known: i64,
    oldest_serving: Option<i64>,
    pending: Vec<schema::Pending>,
    serving: Vec<daemons::Daemon>,
}

impl Plan {
    /// The report, and whether `crowbar migrate` (or a daemon's start) would go ahead.
    fn describe(&self) -> (String, bool) {
        let mut out = format!("database schema: {}; this build: {}\n", self.at, self.known);
        if let Some(oldest) = self.oldest_serving {
            out.push_str(&format!(
                "builds that may serve it: schema {oldest} and newer\n"
            ));
        }
        if self.serving.is_empty() {
            out.push_str("daemons serving it: none seen in the last minute\n");
        } else {
            out.push_str("daemons serving it:\n");
            for d in &self.serving {
                out.push_str(&format!(
                    "  {} crowbar {} (schema {}), seen {} s ago\n",
                    d.name, d.version, d.schema_version, d.seen_secs_ago
                ));
            }
        }
        if self.at > self.known {
            let allowed = self.oldest_serving.is_some_and(|o| o <= self.known);
            out.push_str(&if allowed {
                "a newer build migrated this database; this build may still serve it: nothing to apply\n".to_string()
            } else {
                "a newer build migrated this database and this build may not serve it: run the newer crowbar\n".to_string()
            });
            return (out, allowed);
        }
        if self.pending.is_empty() {
            out.push_str("nothing to apply: up to date\n");
            return (out, true);
        }
        out.push_str("would apply:\n");
        let mut ok = true;
        for p in &self.pending {
            match p.raises_to {
                None => out.push_str(&format!(
                    "  {} {}: expand (builds already serving keep working)\n",
                    p.version, p.description
                )),
                Some(raise) => {
                    let behind: Vec<&daemons::Daemon> = self
                        .serving
                        .iter()
                        .filter(|d| d.schema_version < raise)
                        .collect();
                    out.push_str(&format!(
                        "  {} {}: contract (builds older than schema {raise} may no longer serve)\n",
                        p.version, p.description
                    ));
                    for d in &behind {
                        out.push_str(&format!(
                            "    refused while {} runs crowbar {} (schema {}): upgrade or stop it first\n",
                            d.name, d.version, d.schema_version
                        ));
                    }
                    ok &= behind.is_empty();
                }
            }
        }
        (out, ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn daemon(name: &str, schema_version: i64) -> daemons::Daemon {
        daemons::Daemon {
            name: name.into(),
            version: "0.1.0".into(),
            schema_version,
            seen_secs_ago: 3,
        }
    }

    fn pending(version: i64, raises_to: Option<i64>) -> schema::Pending {
        schema::Pending {
            version,
            description: format!("step {version}"),
            raises_to,
        }
    }

    #[test]
    fn an_expand_step_goes_ahead_with_older_daemons_serving() {
        let plan = Plan {
            at: 21,
            known: 22,
            oldest_serving: Some(1),
            pending: vec![pending(22, None)],
            serving: vec![daemon("old", 21)],
        };
        let (text, ok) = plan.describe();
        assert!(ok, "{text}");
        assert!(text.contains("22 step 22: expand"), "{text}");
        assert!(text.contains("old crowbar 0.1.0 (schema 21)"), "{text}");
    }

    #[test]
    fn a_contract_step_waits_for_the_daemons_it_leaves_behind() {
        let plan = Plan {
            at: 22,
            known: 23,
            oldest_serving: Some(1),
            pending: vec![pending(23, Some(22))],
            serving: vec![daemon("old", 21), daemon("new", 23)],
        };
        let (text, ok) = plan.describe();
        assert!(!ok, "{text}");
        assert!(text.contains("refused while old runs"), "{text}");
        assert!(!text.contains("refused while new runs"), "{text}");
    }

    #[test]
    fn a_newer_schema_is_served_only_when_it_allows_this_build() {
        let newer = |oldest| Plan {
            at: 24,
            known: 22,
            oldest_serving: Some(oldest),
            pending: vec![],
            serving: vec![],
        };
        assert!(newer(20).describe().1);
        let (text, ok) = newer(23).describe();
        assert!(!ok);
        assert!(text.contains("run the newer crowbar"), "{text}");
    }
}
