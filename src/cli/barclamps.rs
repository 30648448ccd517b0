//! `crowbar barclamps list|import FILE`.

use std::path::PathBuf;

use anyhow::Context;
use reqwest::Method;

use super::client::{Client, ClientArgs, table};

#[derive(Debug, clap::Subcommand)]
pub enum BarclampsCommand {
    /// List the barclamps the daemon has loaded.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Import (or update) a barclamp from its YAML file; nothing changes if it is invalid.
    Import {
        /// The barclamp file (`<name>.yml`).
        file: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
    },
}

pub async fn run(command: BarclampsCommand) -> anyhow::Result<()> {
    match command {
        BarclampsCommand::List { client } => {
            let client = Client::new(&client)?;
            let (_, body) = client
                .send(client.request(Method::GET, "/api/v2/barclamps?limit=1000"))
                .await?;
            client.print(&body, |body| {
                let rows: Vec<Vec<String>> = body
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|b| {
                        vec![
                            b["name"].as_str().unwrap_or_default().to_string(),
                            b["parent"].as_str().unwrap_or("-").to_string(),
                            b["source"].as_str().unwrap_or_default().to_string(),
                        ]
                    })
                    .collect();
                table(&["name", "parent", "source"], &rows)
            });
        }
        BarclampsCommand::Import { file, client } => {
            let client = Client::new(&client)?;
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let (_, body) = client
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
        }
    }
    Ok(())
}
