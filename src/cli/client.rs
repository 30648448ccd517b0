//! The REST client the CLI's resource commands share.

use std::path::PathBuf;

use anyhow::{Context, bail};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::Value;

use crate::config::Secret;

/// Where the daemon is and how to authenticate, for every client command.
#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    /// The daemon's URL.
    #[arg(long, env = "CROWBAR_URL", default_value = "http://127.0.0.1:3000")]
    pub url: String,
    /// A bearer token. Default: the admin token in ./var/admin.token (where `crowbar serve`
    /// keeps it with its default data directory).
    #[arg(long, env = "CROWBAR_TOKEN", hide_env_values = true)]
    pub token: Option<Secret>,
    /// Print JSON (for scripts) instead of readable text.
    #[arg(long)]
    pub json: bool,
}

/// A client of one daemon.
pub struct Client {
    http: reqwest::Client,
    url: String,
    token: Secret,
    pub json: bool,
}

impl Client {
    pub fn new(args: &ClientArgs) -> anyhow::Result<Client> {
        let token = match &args.token {
            Some(token) => token.clone(),
            None => {
                let path = PathBuf::from("var/admin.token");
                let text = std::fs::read_to_string(&path).with_context(|| {
                    format!(
                        "no token: pass --token (or set CROWBAR_TOKEN), or run this where \
                         `crowbar serve` keeps {}",
                        path.display()
                    )
                })?;
                Secret::new(text.trim())
            }
        };
        Ok(Client {
            http: reqwest::Client::new(),
            url: args.url.trim_end_matches('/').to_string(),
            token,
            json: args.json,
        })
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(self.token.expose())
    }

    /// Sends a request; a non-2xx answer becomes an error carrying the API's message.
    pub async fn send(&self, request: RequestBuilder) -> anyhow::Result<(StatusCode, Value)> {
        let response = request.send().await.with_context(|| {
            format!(
                "cannot reach crowbar at {} (is it running? pass --url)",
                self.url
            )
        })?;
        let status = response.status();
        let text = response
            .text()
            .await
            .context("reading the daemon's answer")?;
        let body: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if !status.is_success() {
            let message = body["error"]["message"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| body.to_string());
            let code = body["error"]["code"].as_str().unwrap_or("error");
            bail!("{message} ({code}, HTTP {})", status.as_u16());
        }
        Ok((status, body))
    }

    /// Prints `body` as JSON, or with `human` when not asked for JSON.
    pub fn print(&self, body: &Value, human: impl FnOnce(&Value) -> String) {
        if self.json {
            println!("{}", serde_json::to_string_pretty(body).unwrap_or_default());
        } else {
            print!("{}", human(body));
        }
    }
}

/// A plain text table: a header and rows, columns padded to their widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = widths[i]))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(header.iter().map(|h| h.to_uppercase()).collect());
    for row in rows {
        out.push_str(&line(row.clone()));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn tables_pad_columns() {
        let t = super::table(
            &["name", "roles"],
            &[
                vec!["core".into(), "4".into()],
                vec!["test".into(), "9".into()],
            ],
        );
        assert_eq!(t, "NAME  ROLES\ncore  4\ntest  9\n");
    }
}
