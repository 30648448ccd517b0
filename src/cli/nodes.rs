//! `crowbar nodes list|show|create|update|delete|alive|available|bmc|power`.

use reqwest::Method;
use serde::Serialize;
use serde_json::json;

use super::client::{Client, ClientArgs, Column, PageArgs, fields, filters, path};

#[derive(Debug, clap::Subcommand)]
pub enum NodesCommand {
    /// List nodes.
    List {
        /// Only the nodes of this deployment.
        #[arg(long)]
        deployment: Option<String>,
        /// Only alive (true) or dead (false) nodes.
        #[arg(long)]
        alive: Option<bool>,
        /// Only available (true) or reserved (false) nodes.
        #[arg(long)]
        available: Option<bool>,
        #[command(flatten)]
        page: PageArgs,
        /// Only nodes whose ids follow this one (the last id of the previous page).
        #[arg(long)]
        after: Option<i64>,
    },
    /// Show one node.
    Show {
        /// The node's name or id.
        node: String,
    },
    /// Create a node; prints its token, which is shown only this once.
    Create(NewNode),
    /// Change a node's description, deployment, bootenv or address.
    Update(NodeUpdate),
    /// Delete a node and its noderoles.
    Delete {
        /// The node's name or id.
        node: String,
    },
    /// Mark a node alive (true) or dead (false).
    Alive(Flag),
    /// Make a node available (true) to the annealer, or reserve it (false).
    Available(Flag),
    /// The node's BMC: enroll, show, remove, accept a changed certificate.
    #[command(subcommand)]
    Bmc(BmcCommand),
    /// The node's power, through its BMC: `crowbar nodes power NODE on|off|force-off|cycle|
    /// pxe-once|status`, or `crowbar nodes power ACTION --all|--deployment D` for many.
    /// Waits until the operations end (confirmed by the BMC), showing progress.
    Power(super::power::PowerArgs),
}

#[derive(Debug, clap::Subcommand)]
pub enum BmcCommand {
    /// Enroll the node's BMC or replace its settings; reads the password from the first
    /// line of stdin, e.g. `crowbar nodes bmc set n1 --address 10.0.0.5 --username crowbar
    /// < password-file`.
    Set(BmcSettings),
    /// Show the node's BMC (never its password).
    Show {
        /// The node's name or id.
        node: String,
    },
    /// Remove the node's BMC and its credentials.
    Remove {
        /// The node's name or id.
        node: String,
    },
    /// Accept a changed BMC certificate: the next contact pins what the BMC presents.
    AcceptCert {
        /// The node's name or id.
        node: String,
    },
}

/// The body of `PUT /api/v2/nodes/{node}/bmc` (the password from stdin).
#[derive(Debug, clap::Args, Serialize)]
pub struct BmcSettings {
    /// The node's name or id.
    #[serde(skip)]
    node: String,
    /// redfish or ipmi (IPMI 2.0 over LAN, through ipmitool).
    #[arg(long, default_value = "redfish")]
    driver: String,
    /// The BMC's host name or IP address.
    #[arg(long)]
    address: String,
    /// Its port (Redfish: HTTPS, default 443; IPMI: UDP, default 623).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
    /// The Redfish system's id, when the BMC has several (not for IPMI).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<String>,
    /// The BMC account crowbar uses.
    #[arg(long)]
    username: String,
}

/// The body of `POST /api/v2/nodes`, straight from the command line.
#[derive(Debug, clap::Args, Serialize)]
pub struct NewNode {
    /// The node's name, usually its FQDN.
    name: String,
    /// An admin node.
    #[arg(long)]
    admin: bool,
    /// Its boot MAC address.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    mac: Option<String>,
    #[command(flatten)]
    #[serde(flatten)]
    fields: NodeFields,
}

/// The body of `PUT /api/v2/nodes/{node}`: only the fields given change.
#[derive(Debug, clap::Args, Serialize)]
pub struct NodeUpdate {
    /// The node's name or id.
    #[serde(skip)]
    node: String,
    /// Why, for the node's history.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[command(flatten)]
    #[serde(flatten)]
    fields: NodeFields,
}

/// The fields a node is created with and that can change later; only those given are sent.
#[derive(Debug, clap::Args, Serialize)]
pub struct NodeFields {
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    /// Its deployment (new nodes: system).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    deployment: Option<String>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    bootenv: Option<String>,
    /// Its IP address, where the daemon reaches it.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    address: Option<String>,
}

/// `alive` or `available` of one node.
#[derive(Debug, clap::Args)]
pub struct Flag {
    /// The node's name or id.
    node: String,
    /// true or false.
    #[arg(action = clap::ArgAction::Set)]
    value: bool,
    /// Why, for the node's history.
    #[arg(long)]
    reason: Option<String>,
}

const COLUMNS: &[Column] = &[
    ("id", "/id"),
    ("name", "/name"),
    ("deployment", "/deployment"),
    ("state", "/state"),
    ("alive", "/alive"),
    ("available", "/available"),
    ("address", "/address"),
];

pub async fn run(command: NodesCommand, args: &ClientArgs) -> anyhow::Result<()> {
    let client = Client::new(args)?;
    match command {
        NodesCommand::List {
            deployment,
            alive,
            available,
            page,
            after,
        } => {
            let mut query = filters([
                ("deployment", deployment),
                ("alive", alive.map(|a| a.to_string())),
                ("available", available.map(|a| a.to_string())),
                ("after", after.map(|a| a.to_string())),
            ]);
            query.extend(page.query());
            client.list("/api/v2/nodes", &query, COLUMNS).await
        }
        NodesCommand::Show { node } => client.show(&path(&["nodes", &node])).await,
        NodesCommand::Create(new) => {
            let body = client.write(Method::POST, "/api/v2/nodes", &new).await?;
            client.print(&body, |b| {
                format!(
                    "node {} created (id {})\ntoken (shown only now): {}\n",
                    b["name"].as_str().unwrap_or_default(),
                    b["id"],
                    b["token"].as_str().unwrap_or_default()
                )
            });
            Ok(())
        }
        NodesCommand::Update(update) => {
            let body = client
                .write(Method::PUT, &path(&["nodes", &update.node]), &update)
                .await?;
            client.print(&body, fields);
            Ok(())
        }
        NodesCommand::Delete { node } => client.delete("node", &["nodes", &node]).await,
        NodesCommand::Alive(flag) => set_flag(&client, "alive", flag).await,
        NodesCommand::Available(flag) => set_flag(&client, "available", flag).await,
        NodesCommand::Bmc(command) => bmc(&client, command).await,
        NodesCommand::Power(args) => super::power::run(&client, args).await,
    }
}

async fn bmc(client: &Client, command: BmcCommand) -> anyhow::Result<()> {
    match command {
        BmcCommand::Set(settings) => {
            let password = super::client::secret_from_stdin(&format!(
                "crowbar nodes bmc set {} --address {} --username {}",
                settings.node, settings.address, settings.username
            ))?;
            let mut body = serde_json::to_value(&settings)?;
            body["password"] = json!(password);
            let bmc = client
                .write(Method::PUT, &path(&["nodes", &settings.node, "bmc"]), &body)
                .await?;
            client.print(&bmc, fields);
            // the check queued with it: do the credentials work, may the account reset?
            let check = super::power::follow(
                client,
                vec![bmc["check"].clone()],
                "check",
                std::time::Duration::from_secs(120),
            )
            .await?
            .remove(0);
            let reason = check["reason"].as_str().unwrap_or_default();
            match check["state"].as_str() {
                Some("done") => {
                    eprintln!("checked: {reason}");
                    Ok(())
                }
                Some("failed") => anyhow::bail!(
                    "enrolled, but the check failed: {reason}; fix the BMC's settings and enroll again"
                ),
                _ => anyhow::bail!(
                    "enrolled; the check had not ended after 120 s (crowbar nodes show {} shows it when it does)",
                    settings.node
                ),
            }
        }
        BmcCommand::Show { node } => client.show(&path(&["nodes", &node, "bmc"])).await,
        BmcCommand::Remove { node } => client.delete("BMC", &["nodes", &node, "bmc"]).await,
        BmcCommand::AcceptCert { node } => {
            let bmc = client
                .call(Method::DELETE, &path(&["nodes", &node, "bmc", "cert"]))
                .await?;
            client.print(&bmc, |b| {
                format!(
                    "node {}: the BMC's next certificate will be pinned\n",
                    b["node"].as_str().unwrap_or_default()
                )
            });
            Ok(())
        }
    }
}

async fn set_flag(client: &Client, name: &str, flag: Flag) -> anyhow::Result<()> {
    let mut body = json!({ name: flag.value });
    if let Some(reason) = flag.reason {
        body["reason"] = json!(reason);
    }
    let node = client
        .write(Method::PUT, &path(&["nodes", &flag.node]), &body)
        .await?;
    client.print(&node, |n| {
        format!(
            "node {}: {name} {}\n",
            n["name"].as_str().unwrap_or_default(),
            n[name]
        )
    });
    Ok(())
}
