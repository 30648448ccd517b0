//! `crowbar users add NAME` (the password is read from stdin) and `crowbar users list`.

use std::io::BufRead;

use anyhow::{Context, bail};
use reqwest::Method;
use serde_json::json;

use super::client::{Client, ClientArgs, table};

#[derive(Debug, clap::Subcommand)]
pub enum UsersCommand {
    /// List the web UI's users.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Add a web UI user; reads the password from the first line of stdin, e.g.
    /// `crowbar users add alice < password-file`.
    Add {
        /// The user name (lower-case letters, digits, '.', '_', '-').
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

pub async fn run(command: UsersCommand) -> anyhow::Result<()> {
    match command {
        UsersCommand::List { client } => {
            let client = Client::new(&client)?;
            let (_, body) = client
                .send(client.request(Method::GET, "/api/v2/users"))
                .await?;
            client.print(&body, |body| {
                let rows: Vec<Vec<String>> = body
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|u| {
                        vec![
                            u["name"].as_str().unwrap_or_default().to_string(),
                            u["created_at"].as_str().unwrap_or_default().to_string(),
                        ]
                    })
                    .collect();
                table(&["name", "created"], &rows)
            });
        }
        UsersCommand::Add { name, client } => {
            let client = Client::new(&client)?;
            let mut password = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut password)
                .context("cannot read the password from stdin")?;
            let password = password.trim_end_matches(['\r', '\n']);
            if password.is_empty() {
                bail!("no password on stdin: pipe it in, e.g. `crowbar users add {name} < file`");
            }
            let (_, body) = client
                .send(
                    client
                        .request(Method::POST, "/api/v2/users")
                        .json(&json!({"name": name, "password": password})),
                )
                .await
                .with_context(|| format!("user {name} was not added"))?;
            client.print(&body, |u| {
                format!("user {} added\n", u["name"].as_str().unwrap_or_default())
            });
        }
    }
    Ok(())
}
