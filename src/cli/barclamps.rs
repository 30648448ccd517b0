//! `crowbar barclamps list|import FILE`.

use std::path::PathBuf;

use anyhow::Context;
use reqwest::Method;

use super::client::{Client, ClientArgs, Query};

#[derive(Debug, clap::Subcommand)]
pub enum BarclampsCommand {
    /// List the barclamps the daemon has loaded.
    List,
    /// Import (or update) a barclamp from its YAML file; nothing changes if it is invalid.
    Import {
        /// The barclamp file (`<name>.yml`).
        file: PathBuf,
    },
}

pub async fn run(command: BarclampsCommand, args: &ClientArgs) -> anyhow::Result<()> {
    let client = Client::new(args)?;
    match command {
        BarclampsCommand::List => {
            let query: Query = vec![("limit", "1000".into())];
            client
                .list(
                    "/api/v2/barclamps",
                    &query,
                    &[
                        ("name", "/name"),
                        ("parent", "/parent"),
                        ("source", "/source"),
                    ],
                )
                .await
        }
        BarclampsCommand::Import { file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let body = client
                .send(
                    client
                        .request(Method::POST, "/api/v2/barclamps")
                        .header(reqwest::header::CONTENT_TYPE, "application/yaml")
                        .body(text),
                )
                .await
                .with_context(|| format!("{} was not imported", file.display()))?;
            client.print(&body, |b| {
                format!(
                    "barclamp {}: {} ({} jigs, {} roles, {} attribs)\n",
                    b["barclamp"].as_str().unwrap_or_default(),
                    b["status"].as_str().unwrap_or_default(),
                    b["jigs"],
                    b["roles"],
                    b["attribs"]
                )
            });
            Ok(())
        }
    }
}
