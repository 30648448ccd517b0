//! `crowbar tokens list|create NAME [--role R] [--expires 30d]|revoke NAME`: API tokens,
//! each with a role (at most the caller's) and an optional expiry.

use anyhow::Context;
use reqwest::Method;
use serde_json::json;

use super::client::{Client, ClientArgs, Query, path};

#[derive(Debug, clap::Subcommand)]
pub enum TokensCommand {
    /// List API tokens (never the tokens themselves): name, role, owner, expiry.
    List,
    /// Make a token; it is printed once, here. It belongs to you and can do at most what
    /// you can.
    Create {
        /// What the audit trail calls changes made with it, e.g. `ci-pipeline`.
        name: String,
        /// admin, operator or viewer; default: your own role.
        #[arg(long)]
        role: Option<String>,
        /// How long it works, in days or hours (`30d`, `12h`); default: until revoked.
        #[arg(long, value_name = "DURATION")]
        expires: Option<String>,
    },
    /// Revoke a token: it stops working at once, with the UI sessions opened with it.
    Revoke {
        /// The token's name or id.
        name: String,
    },
}

pub async fn run(command: TokensCommand, args: &ClientArgs) -> anyhow::Result<()> {
    let client = Client::new(args)?;
    match command {
        TokensCommand::List => {
            let query: Query = vec![("limit", "1000".into())];
            client
                .list(
                    "/api/v2/tokens",
                    &query,
                    &[
                        ("name", "/name"),
                        ("role", "/role"),
                        ("user", "/user"),
                        ("expires", "/expires_at"),
                        ("revoked", "/revoked_at"),
                    ],
                )
                .await
        }
        TokensCommand::Create {
            name,
            role,
            expires,
        } => {
            let body = client
                .send(client.request(Method::POST, "/api/v2/tokens").json(&json!({
                    "name": name,
                    "role": role,
                    "expires_in": expires,
                })))
                .await
                .with_context(|| format!("token {name} was not made"))?;
            client.print(&body, |t| {
                let expiry = t["expires_at"]
                    .as_str()
                    .map_or("never expires".to_string(), |at| format!("expires {at}"));
                format!(
                    "token {} ({}, {expiry}); it is shown only now:\n{}\n",
                    t["name"].as_str().unwrap_or_default(),
                    t["role"].as_str().unwrap_or_default(),
                    t["token"].as_str().unwrap_or_default(),
                )
            });
            Ok(())
        }
        TokensCommand::Revoke { name } => {
            client
                .call(Method::DELETE, &path(&["tokens", &name]))
                .await
                .with_context(|| format!("token {name} was not revoked"))?;
            client.print(&json!({ "revoked": name }), |_| {
                format!("token {name} revoked\n")
            });
            Ok(())
        }
    }
}
