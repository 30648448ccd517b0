//! `crowbar users list|add NAME [--role R]|role NAME ROLE|password NAME|delete NAME`
//! (passwords are read from stdin): the people who log in, and what each may do.

use anyhow::Context;
use reqwest::Method;
use serde_json::json;

use super::client::{Client, ClientArgs, Query, path};

#[derive(Debug, clap::Subcommand)]
pub enum UsersCommand {
    /// List the web UI's users.
    List,
    /// Add a web UI user; reads the password from the first line of stdin, e.g.
    /// `crowbar users add alice < password-file`.
    Add {
        /// The user name (lower-case letters, digits, '.', '_', '-').
        name: String,
        /// admin, operator or viewer (default: admin).
        #[arg(long)]
        role: Option<String>,
    },
    /// Give a user another role; its sessions and tokens follow at once.
    Role {
        /// The user's name or id.
        name: String,
        /// admin, operator or viewer.
        role: String,
    },
    /// Give a user a new password, read from the first line of stdin like `add`; the
    /// user's UI sessions end.
    Password {
        /// The user's name or id.
        name: String,
    },
    /// Delete a user; its UI sessions end.
    Delete {
        /// The user's name or id.
        name: String,
    },
}

pub async fn run(command: UsersCommand, args: &ClientArgs) -> anyhow::Result<()> {
    let client = Client::new(args)?;
    match command {
        UsersCommand::List => {
            let query: Query = vec![("limit", "1000".into())];
            client
                .list(
                    "/api/v2/users",
                    &query,
                    &[
                        ("name", "/name"),
                        ("role", "/role"),
                        ("created", "/created_at"),
                    ],
                )
                .await
        }
        UsersCommand::Add { name, role } => {
            let password = super::client::secret_from_stdin(&format!("crowbar users add {name}"))?;
            let mut user = json!({"name": name, "password": password});
            if let Some(role) = role {
                user["role"] = role.into();
            }
            let body = client
                .send(client.request(Method::POST, "/api/v2/users").json(&user))
                .await
                .with_context(|| format!("user {name} was not added"))?;
            client.print(&body, |u| {
                format!(
                    "user {} added ({})\n",
                    u["name"].as_str().unwrap_or_default(),
                    u["role"].as_str().unwrap_or_default()
                )
            });
            Ok(())
        }
        UsersCommand::Role { name, role } => {
            let body = client
                .write(
                    Method::PUT,
                    &path(&["users", &name]),
                    &json!({ "role": role }),
                )
                .await
                .with_context(|| format!("the role of {name} was not changed"))?;
            client.print(&body, |u| {
                format!(
                    "user {} is now {}\n",
                    u["name"].as_str().unwrap_or_default(),
                    u["role"].as_str().unwrap_or_default()
                )
            });
            Ok(())
        }
        UsersCommand::Password { name } => {
            let password =
                super::client::secret_from_stdin(&format!("crowbar users password {name}"))?;
            client
                .write(
                    Method::PUT,
                    &path(&["users", &name, "password"]),
                    &json!({ "password": password }),
                )
                .await
                .with_context(|| format!("the password of {name} was not changed"))?;
            client.print(&json!({ "password_changed": name }), |_| {
                format!("password of user {name} changed; its sessions ended\n")
            });
            Ok(())
        }
        UsersCommand::Delete { name } => client.delete("user", &["users", &name]).await,
    }
}
