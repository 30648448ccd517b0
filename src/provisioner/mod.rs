//! The metal part (SEMANTICS.md §10–11): boot environments and boot scripts, machine
//! discovery, the DHCP and DNS databases kept in dnsmasq, and the OS-install handshake.
//! Address arithmetic is in `domain::ipam`, its SQL in `db::networks`.

pub mod bootenvs;
pub mod discovery;
pub mod dnsmasq;
pub mod error;
pub mod install;

use std::{net::SocketAddr, num::NonZeroU32, path::PathBuf, sync::Arc};

pub use bootenvs::{BootTarget, BootUrls, Bootenv, BootenvError, Bootenvs, canonical_mac};
pub use error::{Error, PidFileProblem};

/// Settings of the provisioner (flags and `CROWBAR_*` variables).
#[derive(Debug, Clone, clap::Args)]
pub struct ProvisionerSettings {
    /// The URL nodes reach crowbar at (boot scripts, reports, discovery); default: the
    /// listen address.
    #[arg(long, env = "CROWBAR_PROVISIONER_URL")]
    pub provisioner_url: Option<String>,
    /// Where kernels, initrds and installer trees are served; default:
    /// <provisioner-url>/files.
    #[arg(long, env = "CROWBAR_BOOT_FILES_URL")]
    pub boot_files_url: Option<String>,
    /// DNS domain of discovered nodes (named d<mac>.<domain>).
    #[arg(long, env = "CROWBAR_DOMAIN", default_value = "crowbar.internal")]
    pub domain: String,
    /// Most discovered machines waiting for an admin at once (nodes `/discover` made that
    /// no admin accepted, whatever their bootenv); beyond it `/discover` refuses new
    /// machines with 429 until an admin accepts or removes some.
    #[arg(long, env = "CROWBAR_DISCOVERY_LIMIT", default_value_t = 1000)]
    pub discovery_limit: i64,
    /// Most `POST /discover` requests per minute from one source address (an IPv6 /64),
    /// in bursts of as many; beyond it 429 with Retry-After.
    #[arg(long, env = "CROWBAR_DISCOVER_RATE", default_value_t = NonZeroU32::new(30).unwrap())]
    pub discover_rate: NonZeroU32,
    /// Most `GET /boot/{mac}` requests per minute from one source address (an IPv6 /64),
    /// in bursts of as many; beyond it 429 with Retry-After.
    #[arg(long, env = "CROWBAR_BOOT_RATE", default_value_t = NonZeroU32::new(120).unwrap())]
    pub boot_rate: NonZeroU32,
    /// Most source addresses the rate limits of `/discover` and `/boot` follow at once (each
    /// costs about a hundred bytes); when that many used their quota within the last
    /// minute, requests of other sources are refused too.
    #[arg(long, env = "CROWBAR_RATE_LIMIT_SOURCES", default_value_t = 4096)]
    pub rate_limit_sources: usize,
    /// Directory of the files crowbar writes for dnsmasq (`dhcp-hosts`, `hosts`) and of
    /// dnsmasq's pid file (`dnsmasq.pid`); default: <data-dir>/dnsmasq.
    #[arg(long, env = "CROWBAR_DNSMASQ_DIR")]
    pub dnsmasq_dir: Option<PathBuf>,
    /// The command the OS-install role runs on a node over SSH to reboot it.
    #[arg(
        long,
        env = "CROWBAR_REBOOT_COMMAND",
        default_value = "systemctl reboot || reboot"
    )]
    pub reboot_command: String,
}

impl Default for ProvisionerSettings {
    fn default() -> Self {
        crate::settings::from_flag_defaults()
    }
}

/// What the provisioner's HTTP side and jobs share.
#[derive(Debug, Clone)]
pub struct Provisioner {
    pub bootenvs: Bootenvs,
    pub urls: BootUrls,
    pub domain: String,
    pub discovery_limit: i64,
    /// Per-source rate limits of `/discover` and `/boot/{mac}` (requests per minute).
    pub discover_rate: NonZeroU32,
    pub boot_rate: NonZeroU32,
    pub rate_limit_sources: usize,
}

impl Provisioner {
    /// The shipped bootenvs with URLs from `settings`, defaulting to `listen`.
    pub fn new(
        settings: &ProvisionerSettings,
        listen: SocketAddr,
    ) -> Result<Arc<Provisioner>, BootenvError> {
        let provisioner_url = settings
            .provisioner_url
            .clone()
            .unwrap_or_else(|| format!("http://{listen}"))
            .trim_end_matches('/')
            .to_string();
        let files_url = settings
            .boot_files_url
            .clone()
            .unwrap_or_else(|| format!("{provisioner_url}/files"))
            .trim_end_matches('/')
            .to_string();
        Ok(Arc::new(Provisioner {
            bootenvs: Bootenvs::shipped()?,
            urls: BootUrls {
                provisioner_url,
                files_url,
            },
            domain: settings.domain.trim_matches('.').to_ascii_lowercase(),
            discovery_limit: settings.discovery_limit,
            discover_rate: settings.discover_rate,
            boot_rate: settings.boot_rate,
            rate_limit_sources: settings.rate_limit_sources,
        }))
    }

    /// The boot script for the machine with `mac`: its node's bootenv, or discovery.
    pub fn boot_script(
        &self,
        mac: &str,
        node: Option<(&str, &str)>,
    ) -> Result<String, BootenvError> {
        let (bootenv, name) = match node {
            Some((name, bootenv)) => (bootenv, Some(name.to_string())),
            None => (bootenvs::DISCOVERY, None),
        };
        let target = BootTarget {
            node: name,
            mac: mac.to_string(),
        };
        self.bootenvs.render(bootenv, &target, &self.urls)
    }
}
