//! Daemon settings: one struct, a default for every key, flags and `CROWBAR_*` variables.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use crate::{secret::Secret, telemetry::LogFormat, units::parse_duration};

/// The daemon's database pool when not told otherwise (`--db-pool-size`): twice the cores
/// plus four (two are held by the event and annealer listeners), 8 to 32. More connections
/// than the machine can run at once only make them wait on each other: with 16 busy
/// backends on 2 cores, the daemon's own threads got a small share of the CPU and API
/// latency at p99 doubled (BENCHMARKS.md).
pub fn default_db_pool_size() -> u32 {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    u32::try_from(2 * cores + 4)
        .unwrap_or(u32::MAX)
        .clamp(8, 32)
}

/// Settings of `crowbar serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    /// Address to serve the API, UI, boot files and events on.
    #[arg(long, env = "CROWBAR_LISTEN", default_value = "127.0.0.1:3000")]
    pub listen: SocketAddr,

    /// PostgreSQL to use (postgres://...). Without it crowbar runs its own private
    /// PostgreSQL under the data directory.
    #[arg(long, env = "CROWBAR_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<Secret>,

    /// Where crowbar keeps its state (private PostgreSQL, keys, admin token).
    #[arg(long, env = "CROWBAR_DATA_DIR", default_value = "./var")]
    pub data_dir: PathBuf,

    /// Directory of the PostgreSQL server binaries (`postgres`, `initdb`) for the private
    /// PostgreSQL, e.g. /usr/lib/postgresql/16/bin. When given, only this directory is used;
    /// otherwise pg_config, /usr/lib/postgresql/*/bin (newest first) and PATH are searched.
    #[arg(long, env = "CROWBAR_POSTGRES_BIN_DIR")]
    pub postgres_bin_dir: Option<PathBuf>,

    /// Extra directories of barclamps (<name>.yml plus <name>/roles/<role>/ scripts),
    /// loaded after the shipped ones.
    #[arg(
        long = "barclamp-dir",
        env = "CROWBAR_BARCLAMP_DIRS",
        value_delimiter = ':'
    )]
    pub barclamp_dirs: Vec<PathBuf>,

    /// Bearer token of the built-in admin. Generated into <data-dir>/admin.token when absent.
    #[arg(long, env = "CROWBAR_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<Secret>,

    /// Log format.
    #[arg(long, env = "CROWBAR_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// Connections in the database pool.
    #[arg(long, env = "CROWBAR_DB_POOL_SIZE", default_value_t = default_db_pool_size())]
    pub db_pool_size: u32,

    /// How long shutdown waits for in-flight requests (and then for database connections)
    /// before giving up on them.
    #[arg(long, env = "CROWBAR_SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,

    /// How long events (the audit trail, node histories and the event stream's replay) are
    /// kept; older ones are deleted by a periodic sweep.
    #[arg(long, env = "CROWBAR_EVENT_RETENTION", default_value = "7d", value_parser = parse_duration)]
    pub event_retention: Duration,

    /// How long the audit trail (who changed what, and refused requests) is kept; older
    /// records are deleted in batches by the same sweep.
    #[arg(long, env = "CROWBAR_AUDIT_RETENTION", default_value = "365d", value_parser = parse_duration)]
    pub audit_retention: Duration,

    /// Most refused requests (401, 403) one daemon records in the audit trail a minute; the
    /// next record says how many more there were.
    #[arg(long, env = "CROWBAR_AUDIT_REFUSALS_PER_MINUTE", default_value_t = std::num::NonZeroU32::new(crate::http::audit::DEFAULT_REFUSALS_PER_MINUTE).expect("not zero"))]
    pub audit_refusals_per_minute: std::num::NonZeroU32,

    /// Seed a demo deployment that converges by itself (skipped when a deployment `demo`
    /// exists), on three namespace nodes with sshd when run as root, on simulated nodes
    /// otherwise; watch it at /deployments/demo.
    #[arg(long, env = "CROWBAR_DEMO")]
    pub demo: bool,

    /// Serving HTTP: timeouts, the connection cap, TLS.
    #[command(flatten)]
    pub server: crate::http::server::ServerSettings,

    /// The annealer and the run queue.
    #[command(flatten)]
    pub annealer: crate::annealer::AnnealerSettings,

    /// Reaching nodes: ping and SSH limits.
    #[command(flatten)]
    pub access: crate::access::AccessSettings,

    /// The scheduled aliveness probes.
    #[command(flatten)]
    pub probe: crate::probe::ProbeSettings,

    /// The power sweep of BMCs and the power operations.
    #[command(flatten)]
    pub power: crate::power::PowerSettings,

    /// The ansible jig: ansible-playbook and how runs are batched.
    #[command(flatten)]
    pub ansible: crate::jig::AnsibleSettings,

    /// Boot environments, discovery, DHCP/DNS and OS installs.
    #[command(flatten)]
    pub provisioner: crate::provisioner::ProvisionerSettings,

    /// Password hashing and the backoff of failed UI logins.
    #[command(flatten)]
    pub logins: crate::http::ui::throttle::LoginSettings,
}

impl Settings {
    /// Settings with every default, for tests and embedding.
    pub fn defaults() -> Self {
        crate::settings::from_flag_defaults()
    }
}

impl Settings {
    /// The same settings with every path made absolute (against the working directory):
    /// paths are handed to other programs (sshd, PostgreSQL, dnsmasq), which may resolve
    /// them elsewhere or not at all.
    pub fn with_absolute_paths(mut self) -> std::io::Result<Self> {
        use std::path::absolute;
        self.data_dir = absolute(&self.data_dir)?;
        if let Some(dir) = &self.postgres_bin_dir {
            self.postgres_bin_dir = Some(absolute(dir)?);
        }
        for file in [&mut self.server.tls_cert, &mut self.server.tls_key]
            .into_iter()
            .flatten()
        {
            *file = absolute(&*file)?;
        }
        if let Some(dir) = &self.provisioner.dnsmasq_dir {
            self.provisioner.dnsmasq_dir = Some(absolute(dir)?);
        }
        for dir in &mut self.barclamp_dirs {
            *dir = absolute(&*dir)?;
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_zero_configuration() {
        let s = Settings::defaults();
        assert_eq!(s.listen.to_string(), "127.0.0.1:3000");
        assert!(s.database_url.is_none());
        assert_eq!(s.data_dir, PathBuf::from("./var"));
        assert!(s.postgres_bin_dir.is_none());
        assert_eq!(s.shutdown_grace, Duration::from_secs(10));
        assert!(s.server.tls_cert.is_none() && !s.server.https_to_browsers());
    }

    #[test]
    fn paths_become_absolute() {
        let mut s = Settings::defaults();
        s.barclamp_dirs = vec![PathBuf::from("more/barclamps")];
        s.provisioner.dnsmasq_dir = Some(PathBuf::from("dns"));
        let s = s.with_absolute_paths().unwrap();
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(s.data_dir, cwd.join("var"));
        assert_eq!(s.barclamp_dirs, vec![cwd.join("more/barclamps")]);
        assert_eq!(s.provisioner.dnsmasq_dir, Some(cwd.join("dns")));
        assert!(s.postgres_bin_dir.is_none());
    }
}
