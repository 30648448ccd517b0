//! `crowbar nodes power`: reads a node's power state, or queues power operations on one
//! node or many and follows them until the BMCs confirm the change (a line on stderr each
//! time the tally moves), ending with one line per node and a failure exit status when any
//! operation failed.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use super::client::{Client, path, table};

#[derive(Debug, clap::Args)]
pub struct PowerArgs {
    /// NODE ACTION, or ACTION alone with --all or --deployment. ACTION: on, off (graceful),
    /// force-off, cycle, pxe-once (boot from the network once, then cycle), discover (a
    /// machine that is off: powered on into discovery, it registers as this node), check (the
    /// credentials and what the account may do) or status (read the power state now).
    #[arg(num_args = 1..=2, value_names = ["NODE", "ACTION"], required = true)]
    pub words: Vec<String>,
    /// Every node with a BMC.
    #[arg(long, conflicts_with = "deployment")]
    pub all: bool,
    /// The nodes of this deployment that have a BMC.
    #[arg(long)]
    pub deployment: Option<String>,
    /// Cycle machines whose power state is unknown anyway.
    #[arg(long)]
    pub force: bool,
    /// Print the queued operations and return at once.
    #[arg(long)]
    pub no_wait: bool,
    /// The longest to wait for the operations to end.
    #[arg(long, default_value = "10m", value_parser = crate::units::parse_duration)]
    pub timeout: std::time::Duration,
}

/// How often operations under way are looked at.
const POLL: Duration = Duration::from_secs(1);

pub async fn run(client: &Client, args: PowerArgs) -> anyhow::Result<()> {
    let many = args.all || args.deployment.is_some();
    let (node, action) = match (args.words.as_slice(), many) {
        ([action], true) => (None, action.as_str()),
        ([node, action], false) => (Some(node.as_str()), action.as_str()),
        ([_], false) => anyhow::bail!(
            "say which node and what to do (crowbar nodes power NODE cycle), or use --all or --deployment"
        ),
        _ => anyhow::bail!(
            "with --all or --deployment, give only the action (crowbar nodes power cycle --all)"
        ),
    };
    if action == "status" {
        let Some(node) = node else {
            anyhow::bail!(
                "status reads one node's power (crowbar nodes power NODE status); `crowbar nodes list` shows every node's"
            );
        };
        let power = client
            .get(&path(&["nodes", node, "power"]), &Default::default())
            .await?;
        client.print(&power, |p| {
            format!(
                "{}: {}\n",
                p["node"].as_str().unwrap_or_default(),
                p["state"].as_str().unwrap_or_default()
            )
        });
        return Ok(());
    }
    if crate::domain::bmc::PowerOperation::parse(action).is_none() {
        anyhow::bail!(
            "`{action}` is not a power action: on, off, force-off, cycle, pxe-once, discover, check or status"
        );
    }
    let ops: Vec<Value> = match node {
        Some(node) => vec![
            client
                .write(
                    Method::POST,
                    &path(&["nodes", node, "power"]),
                    &json!({ "action": action, "force": args.force }),
                )
                .await?,
        ],
        None => {
            let mut body = json!({ "action": action, "force": args.force });
            match &args.deployment {
                Some(deployment) => body["deployment"] = json!(deployment),
                None => body["all"] = json!(true),
            }
            let answer = client
                .write(Method::POST, &path(&["power_ops"]), &body)
                .await?;
            answer["operations"].as_array().cloned().unwrap_or_default()
        }
    };
    let ops = if args.no_wait {
        ops
    } else {
        follow(client, ops, action, args.timeout).await?
    };
    let failed = ops.iter().filter(|op| op["state"] == "failed").count();
    let unfinished = ops
        .iter()
        .filter(|op| op["state"] == "queued" || op["state"] == "running")
        .count();
    let answer = json!({ "operations": ops });
    client.print(&answer, |_| {
        let rows: Vec<Vec<String>> = ops
            .iter()
            .map(|op| {
                ["node", "action", "state", "reason"]
                    .iter()
                    .map(|k| op[*k].as_str().unwrap_or_default().to_string())
                    .chain([op["id"].to_string()])
                    .collect()
            })
            .collect();
        table(&["NODE", "ACTION", "STATE", "REASON", "OPERATION"], &rows)
    });
    if failed > 0 {
        anyhow::bail!(
            "{failed} of {} power operations failed (the reasons are above)",
            ops.len()
        );
    }
    if unfinished > 0 && !args.no_wait {
        anyhow::bail!(
            "{unfinished} of {} power operations had not ended after {}s; follow them with crowbar nodes show NODE",
            ops.len(),
            args.timeout.as_secs()
        );
    }
    Ok(())
}

/// Polls the operations until each has ended or `timeout` passed; their last states.
pub(super) async fn follow(
    client: &Client,
    mut ops: Vec<Value>,
    action: &str,
    timeout: Duration,
) -> anyhow::Result<Vec<Value>> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut told = String::new();
    loop {
        let ended = |op: &Value| op["state"] == "done" || op["state"] == "failed";
        let tally = tally(&ops);
        if tally != told {
            eprintln!("power {action}: {tally}");
            told = tally;
        }
        if ops.iter().all(ended) || tokio::time::Instant::now() >= deadline {
            return Ok(ops);
        }
        tokio::time::sleep(POLL).await;
        for op in ops.iter_mut().filter(|op| !ended(op)) {
            let id = op["id"].to_string();
            *op = client
                .get(&path(&["power_ops", &id]), &Default::default())
                .await?;
        }
    }
}

/// "3 done, 1 failed, 2 running, 44 queued" (the states there are).
fn tally(ops: &[Value]) -> String {
    let parts: Vec<String> = ["done", "failed", "running", "queued"]
        .iter()
        .filter_map(|state| {
            let n = ops.iter().filter(|op| op["state"] == *state).count();
            (n > 0).then(|| format!("{n} {state}"))
        })
        .collect();
    format!("{} of {}", parts.join(", "), ops.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tally_names_only_the_states_there_are() {
        let ops = vec![
            json!({"state": "done"}),
            json!({"state": "queued"}),
            json!({"state": "done"}),
        ];
        assert_eq!(tally(&ops), "2 done, 1 queued of 3");
    }
}
