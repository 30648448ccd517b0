//! `crowbar deployments list|show|create|delete|commit|propose|recall|plan|apply`.

use std::{io::Read, path::PathBuf};

use anyhow::Context;
use reqwest::Method;
use serde::Serialize;
use serde_json::{Value, json};

use super::client::{Client, ClientArgs, PageArgs, path};

#[derive(Debug, clap::Subcommand)]
pub enum DeploymentsCommand {
    /// List deployments.
    List {
        #[command(flatten)]
        page: PageArgs,
    },
    /// Show one deployment.
    Show {
        /// The deployment's name or id.
        deployment: String,
    },
    /// Create a deployment; it starts proposed.
    Create(NewDeployment),
    /// Delete a deployment (it must have no nodes or noderoles left).
    Delete {
        /// The deployment's name or id.
        deployment: String,
    },
    /// Commit the deployment's proposal, recording a snapshot.
    Commit {
        /// The deployment's name or id.
        deployment: String,
    },
    /// Make the deployment proposed again, to change it.
    Propose {
        /// The deployment's name or id.
        deployment: String,
    },
    /// Make an older snapshot the deployment's proposal; commit it to apply.
    Recall {
        /// The deployment's name or id.
        deployment: String,
        /// The snapshot's sequence number.
        snapshot: i32,
    },
    /// What committing would do, changing nothing: the current proposal, or a
    /// desired-state document.
    Plan {
        /// The deployment's name or id.
        deployment: String,
        /// A desired-state document (JSON; `-` reads standard input).
        file: Option<PathBuf>,
    },
    /// Apply a desired-state document (API.md) to a deployment: commit it as a new
    /// snapshot, or with `"commit": false` make it the proposal.
    #[command(
        allow_missing_positional = true,
        override_usage = "crowbar deployments apply [OPTIONS] DEPLOYMENT FILE\n       \
                          crowbar deployments apply [OPTIONS] --deployment DEPLOYMENT FILE"
    )]
    Apply {
        /// The deployment the document describes (name or id).
        #[arg(
            value_name = "DEPLOYMENT",
            required_unless_present = "deployment_flag",
            conflicts_with = "deployment_flag"
        )]
        deployment: Option<String>,
        /// The desired-state document (JSON; `-` reads standard input).
        file: PathBuf,
        /// The same as DEPLOYMENT, as a flag (the older form, still accepted).
        #[arg(
            id = "deployment_flag",
            long = "deployment",
            short = 'd',
            value_name = "DEPLOYMENT"
        )]
        deployment_flag: Option<String>,
    },
}

/// The body of `POST /api/v2/deployments`.
#[derive(Debug, clap::Args, Serialize)]
pub struct NewDeployment {
    /// The deployment's name.
    name: String,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    /// The parent deployment (default: system).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    parent: Option<String>,
}

pub async fn run(command: DeploymentsCommand, args: &ClientArgs) -> anyhow::Result<()> {
    let client = Client::new(args)?;
    match command {
        DeploymentsCommand::List { page } => {
            client
                .list(
                    "/api/v2/deployments",
                    &page.query(),
                    &[
                        ("id", "/id"),
                        ("name", "/name"),
                        ("state", "/state"),
                        ("parent", "/parent"),
                        ("snapshot", "/snapshot"),
                        ("description", "/description"),
                    ],
                )
                .await
        }
        DeploymentsCommand::Show { deployment } => {
            client.show(&path(&["deployments", &deployment])).await
        }
        DeploymentsCommand::Create(new) => {
            let body = client
                .write(Method::POST, "/api/v2/deployments", &new)
                .await?;
            client.print(&body, |d| {
                format!(
                    "deployment {} created (proposed)\n",
                    d["name"].as_str().unwrap_or_default()
                )
            });
            Ok(())
        }
        DeploymentsCommand::Delete { deployment } => {
            client
                .delete("deployment", &["deployments", &deployment])
                .await
        }
        DeploymentsCommand::Commit { deployment } => {
            let body = client
                .call(Method::PUT, &path(&["deployments", &deployment, "commit"]))
                .await?;
            client.print(&body, committed);
            Ok(())
        }
        DeploymentsCommand::Propose { deployment } => {
            let body = client
                .call(Method::PUT, &path(&["deployments", &deployment, "propose"]))
                .await?;
            client.print(&body, |d| {
                format!(
                    "deployment {} is proposed; change it, then commit it\n",
                    d["name"].as_str().unwrap_or_default()
                )
            });
            Ok(())
        }
        DeploymentsCommand::Recall {
            deployment,
            snapshot,
        } => {
            let body = client
                .write(
                    Method::PUT,
                    &path(&["deployments", &deployment, "recall"]),
                    &json!({ "snapshot": snapshot }),
                )
                .await?;
            client.print(&body, |b| {
                format!(
                    "snapshot {snapshot} is the proposal of {deployment}; commit it to apply\n{}",
                    plan(&b["plan"])
                )
            });
            Ok(())
        }
        DeploymentsCommand::Plan { deployment, file } => {
            let route = path(&["deployments", &deployment, "plan"]);
            let body = match file {
                Some(file) => {
                    client
                        .write(Method::POST, &route, &document(&file)?)
                        .await?
                }
                None => client.call(Method::GET, &route).await?,
            };
            client.print(&body, plan);
            Ok(())
        }
        DeploymentsCommand::Apply {
            deployment,
            file,
            deployment_flag,
        } => {
            // clap has checked that exactly one of them was given
            let deployment = deployment.or(deployment_flag).unwrap_or_default();
            let doc = document(&file)?;
            let body = client
                .write(
                    Method::POST,
                    &path(&["deployments", &deployment, "snapshots"]),
                    &doc,
                )
                .await
                .with_context(|| format!("{} was not applied", file.display()))?;
            client.print(&body, |b| applied(&deployment, b));
            Ok(())
        }
    }
}

/// A desired-state document from a file (or standard input for `-`), checked to be JSON.
fn document(file: &PathBuf) -> anyhow::Result<Value> {
    let text = if file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the document from standard input")?;
        text
    } else {
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?
    };
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not a JSON document", file.display()))
}

/// What a commit did.
fn committed(body: &Value) -> String {
    let name = body["deployment"]["name"].as_str().unwrap_or_default();
    let seq = &body["snapshot"]["seq"];
    let changed = body["changed"].as_array().map_or(0, Vec::len);
    if body["recorded"] == true {
        format!("deployment {name} committed: snapshot {seq}, {changed} noderoles changed\n")
    } else {
        format!(
            "deployment {name} committed: same as snapshot {seq}, nothing recorded, {changed} \
             noderoles changed\n"
        )
    }
}

/// What applying a document did.
fn applied(deployment: &str, body: &Value) -> String {
    let head = match (body["committed"] == true, body["changed"] == true) {
        (true, true) => format!(
            "deployment {deployment}: snapshot {} committed\n",
            body["snapshot"]
        ),
        (true, false) => format!(
            "deployment {deployment}: unchanged (same as snapshot {}); nothing re-runs\n",
            body["snapshot"]
        ),
        (false, _) => format!("deployment {deployment}: proposed, not committed\n"),
    };
    head + &plan(&body["plan"])
}

/// A plan: what is created, removed and re-run, in which waves, and which nodes hold it up.
fn plan(plan: &Value) -> String {
    let noderoles = |list: &Value| -> Vec<String> {
        list.as_array()
            .into_iter()
            .flatten()
            .map(|nr| {
                format!(
                    "{}/{}",
                    nr["node"].as_str().unwrap_or_default(),
                    nr["role"].as_str().unwrap_or_default()
                )
            })
            .collect()
    };
    let joined = |list: &Value| {
        let names = noderoles(list);
        if names.is_empty() {
            "-".to_string()
        } else {
            names.join(", ")
        }
    };
    let mut out = format!(
        "create: {}\nremove: {}\nrerun:  {}\n",
        joined(&plan["create"]),
        joined(&plan["remove"]),
        joined(&plan["rerun"])
    );
    for (i, wave) in plan["waves"].as_array().into_iter().flatten().enumerate() {
        out.push_str(&format!("wave {}: {}\n", i + 1, joined(wave)));
    }
    for held in plan["held"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "held: {} ({}): {}\n",
            held["node"].as_str().unwrap_or_default(),
            held["reason"].as_str().unwrap_or_default(),
            held["message"].as_str().unwrap_or_default()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use clap::{Parser, error::ErrorKind};

    use super::*;

    #[derive(Debug, Parser)]
    struct Deployments {
        #[command(subcommand)]
        command: DeploymentsCommand,
    }

    /// The deployment and file `deployments apply ARGS` means.
    fn apply(args: &[&str]) -> Result<(String, String), ErrorKind> {
        let argv = ["deployments", "apply"]
            .into_iter()
            .chain(args.iter().copied());
        match Deployments::try_parse_from(argv)
            .map_err(|e| e.kind())?
            .command
        {
            DeploymentsCommand::Apply {
                deployment,
                file,
                deployment_flag,
            } => Ok((
                deployment.or(deployment_flag).unwrap(),
                file.display().to_string(),
            )),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn apply_takes_the_deployment_first_or_as_the_older_flag() {
        let web = Ok(("web".to_string(), "d.json".to_string()));
        assert_eq!(apply(&["web", "d.json"]), web);
        assert_eq!(apply(&["d.json", "--deployment", "web"]), web);
        assert_eq!(apply(&["d.json", "-d", "web"]), web);
        assert_eq!(apply(&["-d", "web", "d.json"]), web);
        assert_eq!(apply(&["web", "-"]), Ok(("web".into(), "-".into())));
        assert_eq!(apply(&["-", "-d", "web"]), Ok(("web".into(), "-".into())));
    }

    #[test]
    fn apply_refuses_a_missing_or_doubled_deployment() {
        assert_eq!(apply(&["d.json"]), Err(ErrorKind::MissingRequiredArgument));
        assert_eq!(apply(&[]), Err(ErrorKind::MissingRequiredArgument));
        assert_eq!(
            apply(&["web", "d.json", "-d", "web"]),
            Err(ErrorKind::ArgumentConflict)
        );
        assert_eq!(
            apply(&["web", "d.json", "--deployment", "db"]),
            Err(ErrorKind::ArgumentConflict)
        );
        assert_eq!(
            apply(&["web", "d.json", "x"]),
            Err(ErrorKind::UnknownArgument)
        );
    }

    #[test]
    fn plans_list_noderoles_by_wave() {
        let body = json!({
            "create": [{"id": 1, "node": "n1", "role": "a"}, {"id": 2, "node": "n2", "role": "b"}],
            "remove": [], "rerun": [],
            "waves": [[{"id": 1, "node": "n1", "role": "a"}], [{"id": 2, "node": "n2", "role": "b"}]],
            "held": [{"node": "n2", "reason": "dead", "message": "node n2 is dead"}],
        });
        assert_eq!(
            plan(&body),
            "create: n1/a, n2/b\nremove: -\nrerun:  -\nwave 1: n1/a\nwave 2: n2/b\n\
             held: n2 (dead): node n2 is dead\n"
        );
    }
}
