//! `crowbar anneal`: the convergence status now, and the reading of it that `converge`
//! repeats.

use std::collections::BTreeMap;

use reqwest::Method;
use serde::Serialize;
use serde_json::Value;

use super::client::{Client, ClientArgs, Query, filters};

#[derive(Debug, clap::Args)]
#[command(override_usage = "crowbar anneal [OPTIONS] [DEPLOYMENT]")]
pub struct AnnealArgs {
    #[command(flatten)]
    pub scope: Scope,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// The deployment `anneal` and `converge` are about: the object, so a positional argument;
/// `--deployment` is the older spelling, still accepted, and giving both is wrong usage.
#[derive(Debug, Clone, clap::Args)]
pub struct Scope {
    /// Only this deployment's noderoles (name or id); default: all of them.
    #[arg(value_name = "DEPLOYMENT", conflicts_with = "deployment_flag")]
    deployment: Option<String>,
    /// The same as DEPLOYMENT, as a flag (the older form, still accepted).
    #[arg(id = "deployment_flag", long = "deployment", value_name = "DEPLOYMENT")]
    deployment_flag: Option<String>,
}

impl Scope {
    /// The deployment, however it was given; `None` for all of them.
    pub fn deployment(&self) -> Option<&str> {
        self.deployment
            .as_deref()
            .or(self.deployment_flag.as_deref())
    }
}

pub async fn run(args: AnnealArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.client)?;
    let now = Convergence::read(&client, args.scope.deployment()).await?;
    client.print(&serde_json::to_value(&now)?, |_| now.summary());
    Ok(())
}

/// States in the order people read them; any others follow.
const STATE_ORDER: [&str; 5] = ["active", "todo", "transition", "blocked", "error"];

/// How many failing or waiting noderoles are fetched (and listed in JSON).
const FETCHED: usize = 100;
/// How many of them the readable summary lists by name.
const LISTED: usize = 10;

/// `/api/v2/anneal` with the noderoles behind it: those that failed and, when nothing is
/// running, why the others wait.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Convergence {
    /// failed | working | scheduled | blocked | finished
    pub status: String,
    /// Committed noderoles by state.
    pub counts: BTreeMap<String, i64>,
    /// The noderoles in error, each with the first line of its error.
    pub failing: Vec<Stuck>,
    /// When nothing runs and it is not finished: the waiting noderoles and why.
    pub waiting: Vec<Stuck>,
}

/// A noderole that is not getting anywhere, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stuck {
    pub id: i64,
    pub node: String,
    pub role: String,
    pub message: String,
}

impl Convergence {
    pub async fn read(client: &Client, deployment: Option<&str>) -> anyhow::Result<Convergence> {
        let scope = filters([("deployment", deployment.map(str::to_string))]);
        let answer = client
            .exchange(client.request(Method::GET, "/api/v2/anneal").query(&scope))
            .await?;
        // a failed convergence is a 409 that still carries the status
        let Some(status) = answer.body["status"].as_str().map(str::to_string) else {
            return Err(answer.refused().into());
        };
        let counts: BTreeMap<String, i64> =
            serde_json::from_value(answer.body["counts"].clone()).unwrap_or_default();
        let count = |state: &str| counts.get(state).copied().unwrap_or(0);
        let failing = if count("error") > 0 {
            stuck(client, &scope, "error").await?
        } else {
            Vec::new()
        };
        let mut waiting = Vec::new();
        if count("transition") == 0 && !matches!(status.as_str(), "finished" | "failed") {
            for state in ["todo", "blocked"] {
                if count(state) > 0 {
                    waiting.extend(stuck(client, &scope, state).await?);
                }
            }
        }
        Ok(Convergence {
            status,
            counts,
            failing,
            waiting,
        })
    }

    pub fn finished(&self) -> bool {
        self.status == "finished"
    }

    pub fn failed(&self) -> bool {
        self.status == "failed"
    }

    /// `working: active 3, todo 2, transition 1, blocked 0, error 0`
    pub fn counts_line(&self) -> String {
        let mut names: Vec<&str> = STATE_ORDER.to_vec();
        names.extend(
            self.counts
                .keys()
                .map(String::as_str)
                .filter(|k| !STATE_ORDER.contains(k)),
        );
        let counts: Vec<String> = names
            .iter()
            .map(|name| format!("{name} {}", self.counts.get(*name).copied().unwrap_or(0)))
            .collect();
        format!("{}: {}", self.status, counts.join(", "))
    }

    /// The failing and waiting noderoles, one indented line each (at most [`LISTED`] of
    /// each kind).
    pub fn stuck_lines(&self) -> String {
        let mut out = String::new();
        for (label, list, total) in [
            ("failed", &self.failing, self.count("error")),
            (
                "waiting",
                &self.waiting,
                self.count("todo") + self.count("blocked"),
            ),
        ] {
            for s in list.iter().take(LISTED) {
                out.push_str(&format!(
                    "  {label}: {}/{}: {}\n",
                    s.node, s.role, s.message
                ));
            }
            let more = total - list.len().min(LISTED) as i64;
            if !list.is_empty() && more > 0 {
                out.push_str(&format!("  ... and {more} more {label}\n"));
            }
        }
        out
    }

    /// The counts line, then the failing and waiting noderoles.
    pub fn summary(&self) -> String {
        format!("{}\n{}", self.counts_line(), self.stuck_lines())
    }

    fn count(&self, state: &str) -> i64 {
        self.counts.get(state).copied().unwrap_or(0)
    }
}

/// The noderoles in `state` (within `scope`), each with the first line of its reason.
async fn stuck(client: &Client, scope: &Query, state: &str) -> anyhow::Result<Vec<Stuck>> {
    let mut query = scope.clone();
    query.push(("state", state.to_string()));
    query.push(("limit", FETCHED.to_string()));
    let list = client.get("/api/v2/node_roles", &query).await?;
    Ok(list
        .as_array()
        .into_iter()
        .flatten()
        .map(|nr| Stuck {
            id: nr["id"].as_i64().unwrap_or_default(),
            node: text(&nr["node"]),
            role: text(&nr["role"]),
            message: text(&nr["reason"]["message"])
                .lines()
                .next()
                .unwrap_or(state)
                .to_string(),
        })
        .collect())
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_string()
}

#[cfg(test)]
pub mod tests {
    use super::*;

    pub fn convergence(status: &str, counts: &[(&str, i64)]) -> Convergence {
        Convergence {
            status: status.into(),
            counts: counts.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            failing: Vec::new(),
            waiting: Vec::new(),
        }
    }

    pub fn stuck(node: &str, role: &str, message: &str) -> Stuck {
        Stuck {
            id: 1,
            node: node.into(),
            role: role.into(),
            message: message.into(),
        }
    }

    #[derive(Debug, clap::Parser)]
    struct Anneal {
        #[command(flatten)]
        scope: Scope,
    }

    fn scope(args: &[&str]) -> Result<Option<String>, clap::error::ErrorKind> {
        use clap::Parser;
        Anneal::try_parse_from(std::iter::once("anneal").chain(args.iter().copied()))
            .map(|a| a.scope.deployment().map(str::to_string))
            .map_err(|e| e.kind())
    }

    #[test]
    fn the_deployment_is_positional_or_the_older_flag_but_not_both() {
        assert_eq!(scope(&[]), Ok(None));
        assert_eq!(scope(&["web"]), Ok(Some("web".into())));
        assert_eq!(scope(&["--deployment", "web"]), Ok(Some("web".into())));
        assert_eq!(
            scope(&["web", "--deployment", "web"]),
            Err(clap::error::ErrorKind::ArgumentConflict)
        );
        assert_eq!(
            scope(&["web", "db"]),
            Err(clap::error::ErrorKind::UnknownArgument)
        );
    }

    #[test]
    fn counts_read_in_state_order() {
        let c = convergence("working", &[("error", 0), ("active", 3), ("todo", 1)]);
        assert_eq!(
            c.counts_line(),
            "working: active 3, todo 1, transition 0, blocked 0, error 0"
        );
    }

    #[test]
    fn summaries_name_the_stuck_noderoles_and_count_the_rest() {
        let mut c = convergence("failed", &[("error", 12), ("todo", 1)]);
        c.failing = (0..12)
            .map(|i| stuck(&format!("n{i}"), "test-fails", "the last run failed: boom"))
            .collect();
        c.waiting = vec![stuck("n20", "test-server", "node n20 is dead")];
        let lines = c.stuck_lines();
        assert!(lines.starts_with("  failed: n0/test-fails: the last run failed: boom\n"));
        assert_eq!(lines.matches("  failed: ").count(), 10);
        assert!(lines.contains("  ... and 2 more failed\n"), "{lines}");
        assert!(lines.ends_with("  waiting: n20/test-server: node n20 is dead\n"));
    }
}
