//! `crowbar node-roles list|show|bind|retry|delete`.

use anyhow::bail;
use reqwest::Method;
use serde::Serialize;
use serde_json::Value;

use super::client::{
    Client, ClientArgs, Column, PageArgs, Query, fields, filters, list_table, path,
};

#[derive(Debug, clap::Subcommand)]
pub enum NodeRolesCommand {
    /// List noderoles.
    List {
        /// Only noderoles in this state (error, active, todo, transition, blocked, proposed).
        #[arg(long)]
        state: Option<String>,
        /// Only this deployment's noderoles.
        #[arg(long)]
        deployment: Option<String>,
        /// Only this node's noderoles.
        #[arg(long)]
        node: Option<String>,
        /// Only noderoles of this role.
        #[arg(long)]
        role: Option<String>,
        #[command(flatten)]
        page: PageArgs,
        /// Only noderoles whose ids follow this one (the last id of the previous page).
        #[arg(long)]
        after: Option<i64>,
    },
    /// Show one noderole, with its data, run log and why it is not active.
    Show(Target),
    /// Bind a role to a node (creating the parents it needs).
    Bind(Binding),
    /// Run a noderole again (after an error, or to re-apply it).
    Retry(Target),
    /// Delete a noderole (and the children that depend on it).
    Delete(Target),
}

/// A noderole: its id, or its node and role (`NODE ROLE` or `NODE/ROLE`).
#[derive(Debug, clap::Args)]
pub struct Target {
    /// The noderole's id, or its node and role.
    #[arg(required = true, num_args = 1..=2, value_name = "ID | NODE ROLE")]
    key: Vec<String>,
}

/// The body of `POST /api/v2/node_roles`.
#[derive(Debug, clap::Args, Serialize)]
pub struct Binding {
    /// The node's name or id.
    node: String,
    /// The role's name or id.
    role: String,
    /// The deployment (default: the node's).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    deployment: Option<String>,
    /// The noderole's data, a JSON object.
    #[arg(long, value_parser = json_object)]
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Value>,
}

fn json_object(text: &str) -> Result<Value, String> {
    match serde_json::from_str(text) {
        Ok(value @ Value::Object(_)) => Ok(value),
        Ok(_) => Err("the data must be a JSON object".into()),
        Err(e) => Err(format!("not JSON: {e}")),
    }
}

const COLUMNS: &[Column] = &[
    ("id", "/id"),
    ("node", "/node"),
    ("role", "/role"),
    ("deployment", "/deployment"),
    ("status", "/status"),
    ("reason", "/reason/message"),
];

pub async fn run(command: NodeRolesCommand, args: &ClientArgs) -> anyhow::Result<()> {
    let client = Client::new(args)?;
    match command {
        NodeRolesCommand::List {
            state,
            deployment,
            node,
            role,
            page,
            after,
        } => {
            let mut query = filters([
                ("state", state),
                ("deployment", deployment),
                ("node", node),
                ("role", role),
                ("after", after.map(|a| a.to_string())),
            ]);
            query.extend(page.query());
            client.list("/api/v2/node_roles", &query, COLUMNS).await
        }
        NodeRolesCommand::Show(target) => {
            let id = resolve(&client, &target).await?;
            client.show(&path(&["node_roles", &id])).await
        }
        NodeRolesCommand::Bind(binding) => {
            let body = client
                .write(Method::POST, "/api/v2/node_roles", &binding)
                .await?;
            client.print(&body, |b| {
                let mut rows = vec![b.clone()];
                rows.extend(b["created"].as_array().into_iter().flatten().cloned());
                list_table(&Value::Array(rows), COLUMNS)
            });
            Ok(())
        }
        NodeRolesCommand::Retry(target) => {
            let id = resolve(&client, &target).await?;
            let body = client
                .call(Method::PUT, &path(&["node_roles", &id, "retry"]))
                .await?;
            client.print(&body, fields);
            Ok(())
        }
        NodeRolesCommand::Delete(target) => {
            let id = resolve(&client, &target).await?;
            let body = client
                .call(Method::DELETE, &path(&["node_roles", &id]))
                .await?;
            client.print(&body, |b| {
                let ids: Vec<String> = b["deleted"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(Value::to_string)
                    .collect();
                format!("deleted noderoles {}\n", ids.join(", "))
            });
            Ok(())
        }
    }
}

/// How a target names its noderole.
#[derive(Debug, PartialEq)]
enum Key<'a> {
    Id(&'a str),
    Pair(&'a str, &'a str),
}

fn key(target: &Target) -> anyhow::Result<Key<'_>> {
    match target.key.as_slice() {
        [id] if id.parse::<i64>().is_ok() => Ok(Key::Id(id)),
        [pair] => match pair.split_once('/') {
            Some((node, role)) if !node.is_empty() && !role.is_empty() => Ok(Key::Pair(node, role)),
            _ => bail!(
                "`{pair}` names no noderole: give its id, or its node and role (`NODE ROLE` \
                 or `NODE/ROLE`)"
            ),
        },
        [node, role] => Ok(Key::Pair(node, role)),
        _ => bail!("give a noderole's id, or its node and role"),
    }
}

/// The noderole's id, looked up by node and role when not given.
async fn resolve(client: &Client, target: &Target) -> anyhow::Result<String> {
    match key(target)? {
        Key::Id(id) => Ok(id.to_string()),
        Key::Pair(node, role) => {
            let noderole = client
                .get(&path(&["nodes", node, "node_roles", role]), &Query::new())
                .await?;
            Ok(noderole["id"].to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(parts: &[&str]) -> Target {
        Target {
            key: parts.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn targets_are_ids_or_node_role_pairs() {
        assert_eq!(key(&target(&["12"])).unwrap(), Key::Id("12"));
        assert_eq!(
            key(&target(&["n1/test-server"])).unwrap(),
            Key::Pair("n1", "test-server")
        );
        assert_eq!(
            key(&target(&["n1", "test-server"])).unwrap(),
            Key::Pair("n1", "test-server")
        );
        assert!(key(&target(&["n1"])).is_err());
        assert!(key(&target(&["n1/"])).is_err());
    }
}
