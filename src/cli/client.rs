//! The REST client the CLI's resource commands share: where the daemon is, how a request is
//! sent, how a refusal becomes an error that says what to do next, and how answers print.
//!
//! The convention of every verb: the thing it acts on is a positional argument
//! (`deployments apply DEPLOYMENT FILE`, `converge [DEPLOYMENT]`); filters of a list verb
//! (`nodes list --deployment D`) and options of a verb whose object is something else
//! (`node-roles bind NODE ROLE --deployment D`) are flags. Where an object used to be a
//! flag, the flag stays as an alias, and giving both is wrong usage.

use std::{fmt, path::PathBuf};

use anyhow::Context;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::Serialize;
use serde_json::Value;

use crate::secret::Secret;

/// Where the daemon is and how to authenticate, for every client command. The flags are
/// global: they may come before or after the verb.
#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    /// The daemon's URL.
    #[arg(
        long,
        env = "CROWBAR_URL",
        default_value = "http://127.0.0.1:3000",
        global = true
    )]
    pub url: String,
    /// A bearer token. Default: the admin token in ./var/admin.token (where `crowbar serve`
    /// keeps it with its default data directory).
    #[arg(long, env = "CROWBAR_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<Secret>,
    /// Print JSON (for scripts) instead of readable text.
    #[arg(long, global = true)]
    pub json: bool,
}

/// A resource's verbs with the connection flags they all take.
#[derive(Debug, clap::Args)]
pub struct Resource<C: clap::Subcommand> {
    #[command(subcommand)]
    pub command: C,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `--limit` and `--offset` of a list verb, passed on as the API's paging parameters.
#[derive(Debug, Clone, clap::Args)]
pub struct PageArgs {
    /// At most this many (the daemon's default is 100, its maximum 1000).
    #[arg(long)]
    pub limit: Option<i64>,
    /// Skip this many first.
    #[arg(long)]
    pub offset: Option<i64>,
}

/// Query parameters: only the filters that were given.
pub type Query = Vec<(&'static str, String)>;

impl PageArgs {
    pub fn query(&self) -> Query {
        filters([
            ("limit", self.limit.map(|l| l.to_string())),
            ("offset", self.offset.map(|o| o.to_string())),
        ])
    }
}

/// The given filters, named after the API's query parameters.
pub fn filters<const N: usize>(pairs: [(&'static str, Option<String>); N]) -> Query {
    pairs
        .into_iter()
        .filter_map(|(name, value)| value.map(|v| (name, v)))
        .collect()
}

/// The daemon refused a request: its code and message, and what to do about it.
#[derive(Debug)]
pub struct Refused {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}, HTTP {})",
            self.message,
            self.code,
            self.status.as_u16()
        )
    }
}

impl std::error::Error for Refused {}

impl Refused {
    fn from_answer(status: StatusCode, body: &Value, path: &str) -> Refused {
        let message = body["error"]["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| body.to_string());
        let code = body["error"]["code"]
            .as_str()
            .unwrap_or("error")
            .to_string();
        Refused {
            status,
            code,
            message,
            hint: hint(status, path),
        }
    }
}

/// What to do next after a refusal of `status` for the API path `path`.
fn hint(status: StatusCode, path: &str) -> Option<String> {
    let command = cli_resource(path);
    let hint = match status.as_u16() {
        401 => "pass a valid token with --token or CROWBAR_TOKEN (the admin token is in \
                <data-dir>/admin.token)"
            .to_string(),
        403 => "this token may not do that; use an admin token".to_string(),
        404 => format!("nothing was changed; see what exists with `crowbar {command} list`"),
        409 => format!(
            "nothing was changed; the current state does not allow this (see `crowbar \
             {command} show ...` and `crowbar anneal`)"
        ),
        400 | 413 | 415 | 422 => {
            format!("nothing was changed; correct the input (see `crowbar {command} --help`)")
        }
        500.. => "the daemon failed to answer; its log says why".to_string(),
        _ => return None,
    };
    Some(hint)
}

/// The CLI resource of an API path: `/api/v2/node_roles/3` → `node-roles`.
fn cli_resource(path: &str) -> String {
    let rest = path.trim_start_matches("/api/v2/");
    if rest.contains("/node_roles") {
        return "node-roles".into();
    }
    let resource = rest.split(['/', '?']).next().unwrap_or_default();
    match resource {
        "anneal" | "" => "deployments".into(),
        other => other.replace('_', "-"),
    }
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
        // `--url https://...` trusts the system's CAs, or SSL_CERT_FILE's
        crate::tls::install_default_provider();
        let http = reqwest::Client::builder()
            // shorter than the daemon keeps an idle connection (--http-header-timeout, 10 s
            // by default), so a poll never picks one the daemon is closing
            .pool_idle_timeout(std::time::Duration::from_secs(5))
            .build()
            .context("cannot set up the HTTP client")?;
        Ok(Client {
            http,
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

    /// Sends a request and returns the answer whatever its status; fails only when there
    /// is no answer.
    pub async fn exchange(&self, request: RequestBuilder) -> anyhow::Result<Answer> {
        Answer::read(self.connect(request).await?).await
    }

    /// Sends a request and returns the response to read as a stream; a non-2xx answer
    /// becomes a [`Refused`] error.
    pub async fn open(&self, request: RequestBuilder) -> anyhow::Result<reqwest::Response> {
        let response = self.connect(request).await?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(Answer::read(response).await?.refused().into())
        }
    }

    async fn connect(&self, request: RequestBuilder) -> anyhow::Result<reqwest::Response> {
        request.send().await.with_context(|| {
            format!(
                "cannot reach crowbar at {} (is it running? pass --url or set CROWBAR_URL)",
                self.url
            )
        })
    }

    /// Sends a request; a non-2xx answer becomes a [`Refused`] error.
    pub async fn send(&self, request: RequestBuilder) -> anyhow::Result<Value> {
        self.exchange(request).await?.accepted()
    }

    pub async fn get(&self, path: &str, query: &Query) -> anyhow::Result<Value> {
        self.send(self.request(Method::GET, path).query(query))
            .await
    }

    /// `method path` with a JSON body.
    pub async fn write(
        &self,
        method: Method,
        path: &str,
        body: &impl Serialize,
    ) -> anyhow::Result<Value> {
        self.send(self.request(method, path).json(body)).await
    }

    /// `method path` with no body.
    pub async fn call(&self, method: Method, path: &str) -> anyhow::Result<Value> {
        self.send(self.request(method, path)).await
    }

    /// GETs a list and prints it as a table of `columns`, or as JSON.
    pub async fn list(&self, path: &str, query: &Query, columns: &[Column]) -> anyhow::Result<()> {
        let body = self.get(path, query).await?;
        self.print(&body, |body| list_table(body, columns));
        Ok(())
    }

    /// GETs one object and prints its fields, or it as JSON.
    pub async fn show(&self, path: &str) -> anyhow::Result<()> {
        let body = self.get(path, &Query::new()).await?;
        self.print(&body, fields);
        Ok(())
    }

    /// DELETEs the object at `segments` (which answers with no body) and says so:
    /// `<kind> <name> deleted`, or `{"deleted": <name>}`.
    pub async fn delete(&self, kind: &str, segments: &[&str]) -> anyhow::Result<()> {
        self.call(Method::DELETE, &path(segments)).await?;
        let name = segments.last().copied().unwrap_or_default();
        self.print(&serde_json::json!({ "deleted": name }), |_| {
            format!("{kind} {name} deleted\n")
        });
        Ok(())
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

/// A daemon's answer.
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
    path: String,
}

impl Answer {
    async fn read(response: reqwest::Response) -> anyhow::Result<Answer> {
        let status = response.status();
        let path = response.url().path().to_string();
        let text = response
            .text()
            .await
            .context("reading the daemon's answer")?;
        let body: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Ok(Answer { status, body, path })
    }

    /// The body of a 2xx answer; anything else is [`Refused`].
    pub fn accepted(self) -> anyhow::Result<Value> {
        if self.status.is_success() {
            Ok(self.body)
        } else {
            Err(self.refused().into())
        }
    }

    pub fn refused(&self) -> Refused {
        Refused::from_answer(self.status, &self.body, &self.path)
    }
}

/// `/api/v2/...` with each path segment escaped, so that names never change the route.
pub fn path(segments: &[&str]) -> String {
    let mut path = String::from("/api/v2");
    for segment in segments {
        path.push('/');
        path.push_str(&escape(segment));
    }
    path
}

/// Every byte but letters, digits and `-_.~` is escaped in a path segment.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn escape(segment: &str) -> String {
    percent_encoding::utf8_percent_encode(segment, SEGMENT).to_string()
}

/// A table column: its header and the JSON pointer of its cell in each object.
pub type Column = (&'static str, &'static str);

/// The objects of a JSON array as a table of `columns`.
pub fn list_table(body: &Value, columns: &[Column]) -> String {
    let header: Vec<&str> = columns.iter().map(|(h, _)| *h).collect();
    let rows: Vec<Vec<String>> = body
        .as_array()
        .into_iter()
        .flatten()
        .map(|item| {
            columns
                .iter()
                .map(|(_, pointer)| cell(item.pointer(pointer)))
                .collect()
        })
        .collect();
    table(&header, &rows)
}

/// A value as a table cell: strings as they are, absent or null as `-`, lists joined by
/// commas, anything else as compact JSON.
pub fn cell(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) if s.is_empty() => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) if items.is_empty() => "-".into(),
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => items
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(","),
        Some(other) => other.to_string(),
    }
}

/// One object's fields, one `name: value` line each, values aligned.
pub fn fields(body: &Value) -> String {
    let Some(object) = body.as_object() else {
        return format!("{}\n", cell(Some(body)));
    };
    let width = object.keys().map(String::len).max().unwrap_or(0) + 1;
    object
        .iter()
        .map(|(name, value)| format!("{:<width$} {}\n", format!("{name}:"), cell(Some(value))))
        .collect()
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

/// The first line of stdin, without its line ending: passwords never go on the command
/// line, where the process list and the shell history would show them. `command` is the
/// command to show in the hint when stdin is empty.
pub fn secret_from_stdin(command: &str) -> anyhow::Result<String> {
    use std::io::BufRead;
    let mut secret = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut secret)
        .map_err(|e| anyhow::anyhow!("cannot read the password from stdin: {e}"))?;
    let secret = secret.trim_end_matches(['\r', '\n']);
    if secret.is_empty() {
        anyhow::bail!("no password on stdin: pipe it in, e.g. `{command} < file`");
    }
    Ok(secret.to_string())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn tables_pad_columns() {
        let t = table(
            &["name", "roles"],
            &[
                vec!["core".into(), "4".into()],
                vec!["test".into(), "9".into()],
            ],
        );
        assert_eq!(t, "NAME  ROLES\ncore  4\ntest  9\n");
    }

    #[test]
    fn list_tables_pick_fields_by_pointer() {
        let body = json!([
            {"id": 1, "name": "n1", "reason": null, "flags": ["a", "b"]},
            {"id": 22, "name": "n2", "reason": {"message": "node n2 is dead"}, "flags": []},
        ]);
        let t = list_table(
            &body,
            &[
                ("id", "/id"),
                ("name", "/name"),
                ("flags", "/flags"),
                ("reason", "/reason/message"),
            ],
        );
        assert_eq!(
            t,
            "ID  NAME  FLAGS  REASON\n1   n1    a,b    -\n22  n2    -      node n2 is dead\n"
        );
    }

    #[test]
    fn fields_align_values() {
        let f = fields(&json!({"id": 3, "name": "web", "parent": null}));
        assert_eq!(f, "id:     3\nname:   web\nparent: -\n");
    }

    #[test]
    fn paths_escape_names() {
        assert_eq!(
            path(&["nodes", "n1.example.com"]),
            "/api/v2/nodes/n1.example.com"
        );
        assert_eq!(path(&["nodes", "a/b c"]), "/api/v2/nodes/a%2Fb%20c");
    }

    #[test]
    fn refusals_say_what_to_do_next() {
        let body = json!({"error": {"code": "not_found", "message": "node `x` not found"}});
        let refused = Refused::from_answer(StatusCode::NOT_FOUND, &body, "/api/v2/nodes/x");
        assert_eq!(
            refused.to_string(),
            "node `x` not found (not_found, HTTP 404)"
        );
        assert_eq!(
            refused.hint.as_deref(),
            Some("nothing was changed; see what exists with `crowbar nodes list`")
        );
        assert_eq!(cli_resource("/api/v2/node_roles/4/retry"), "node-roles");
        assert_eq!(cli_resource("/api/v2/nodes/n1/node_roles/r"), "node-roles");
        assert_eq!(cli_resource("/api/v2/deployments/web/plan"), "deployments");
    }
}
