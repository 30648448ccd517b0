//! `crowbar audit`: who changed what, when and from where, newest first.

use chrono::{DateTime, Utc};

use super::client::{Client, ClientArgs, Query};

#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// Only this actor, e.g. `user:alice`, `token:ci`, `node:n1`.
    #[arg(long)]
    actor: Option<String>,
    /// Only objects of this kind: node, deployment, noderole, user, token, network, ...
    #[arg(long)]
    kind: Option<String>,
    /// Only this object, by id or name.
    #[arg(long)]
    object: Option<String>,
    /// Only this action, e.g. `deployment.commit`, `request.refused`.
    #[arg(long)]
    action: Option<String>,
    /// Only records this recent (`1h`, `7d`) or since this time (RFC 3339).
    #[arg(long, value_name = "AGE|TIME", value_parser = parse_time)]
    since: Option<DateTime<Utc>>,
    /// Only records older than this (`1h`, `7d`) or before this time (RFC 3339).
    #[arg(long, value_name = "AGE|TIME", value_parser = parse_time)]
    until: Option<DateTime<Utc>>,
    /// At most this many (the daemon's default is 100, its maximum 1000).
    #[arg(long)]
    limit: Option<u32>,
    /// The records older than this id (the last id of the previous page).
    #[arg(long)]
    after: Option<i64>,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// A time given as an age before now (`30m`, `7d`) or as RFC 3339.
fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    let age = crate::units::parse_duration(text)
        .map_err(|_| format!("`{text}` is neither an age (30m, 7d) nor an RFC 3339 time"))?;
    let age = chrono::Duration::from_std(age).map_err(|e| e.to_string())?;
    Ok(Utc::now() - age)
}

pub async fn run(args: AuditArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.client)?;
    let mut query: Query = Vec::new();
    for (key, value) in [
        ("actor", args.actor),
        ("kind", args.kind),
        ("object", args.object),
        ("action", args.action),
        ("since", args.since.map(|t| t.to_rfc3339())),
        ("until", args.until.map(|t| t.to_rfc3339())),
        ("limit", args.limit.map(|l| l.to_string())),
        ("after", args.after.map(|a| a.to_string())),
    ] {
        if let Some(value) = value {
            query.push((key, value));
        }
    }
    client
        .list(
            "/api/v2/audit",
            &query,
            &[
                ("id", "/id"),
                ("at", "/at"),
                ("actor", "/actor"),
                ("action", "/action"),
                ("kind", "/kind"),
                ("object", "/object"),
                ("source", "/source"),
                ("summary", "/summary"),
            ],
        )
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_ages_or_rfc3339() {
        let at = parse_time("2026-01-02T03:04:05Z").unwrap();
        assert_eq!(at.to_rfc3339(), "2026-01-02T03:04:05+00:00");
        let hour_ago = parse_time("1h").unwrap();
        let age = Utc::now() - hour_ago;
        assert!(age >= chrono::Duration::minutes(59) && age <= chrono::Duration::minutes(61));
        assert!(parse_time("yesterday").is_err());
    }
}
