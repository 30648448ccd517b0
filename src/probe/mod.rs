//! The scheduled aliveness probe (SEMANTICS.md §6): every node with an address, every
//! interval, checked through [`NodeAccess::check`] (ping, then SSH against the pinned host
//! key). A failed check marks the node dead (the death ripple), a successful one marks a
//! dead node alive again; both are recorded in the node's history with who and why. The
//! script jig checks its node before each run the same way.

use std::{net::IpAddr, sync::Arc, time::Duration};

use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::{
    access::{AccessError, NodeAccess, NodeRef},
    db,
    telemetry::metrics,
    units::parse_duration,
};

/// When and how widely the prober checks nodes.
#[derive(Debug, Clone, clap::Args)]
pub struct ProbeSettings {
    /// How often every node with an address is probed (ping + SSH); 0 turns scheduled
    /// probes off (runs still check their node first).
    #[arg(long, env = "CROWBAR_PROBE_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub probe_interval: Duration,
    /// Nodes probed at once.
    #[arg(long, env = "CROWBAR_PROBE_CONCURRENCY", default_value_t = 64)]
    pub probe_concurrency: usize,
}

impl Default for ProbeSettings {
    fn default() -> Self {
        crate::settings::from_flag_defaults()
    }
}

/// Who the node history names for changes the prober makes.
pub const PROBE_ACTOR: &str = "probe";

/// What one probe of one node found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeOutcome {
    pub node_id: i64,
    pub name: String,
    /// The node answered ping and SSH.
    pub alive: bool,
    /// Why not, when it did not.
    pub reason: Option<String>,
    /// The node's `alive` flag was changed.
    pub changed: bool,
}

/// Probes every node with an address on a schedule; see the module documentation.
pub struct Prober {
    pub access: Arc<NodeAccess>,
    pub settings: ProbeSettings,
}

impl Prober {
    /// Probes until `shutdown`; returns at once when the probe interval is 0.
    pub async fn run(self, shutdown: CancellationToken) {
        let interval = self.settings.probe_interval;
        if interval.is_zero() {
            tracing::info!("scheduled node probes are off");
            return;
        }
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                result = self.round() => {
                    if let Err(e) = result {
                        tracing::warn!(error = %e, "probing nodes failed; trying again next time");
                    }
                }
            }
        }
    }

    /// One round: probes every node with an address, concurrently (bounded), applying the
    /// results; closes idle connections.
    pub async fn round(&self) -> db::Result<Vec<ProbeOutcome>> {
        let nodes = db::aliveness::probe_targets(self.access.pool()).await?;
        let concurrency = self.settings.probe_concurrency.max(1);
        let outcomes: Vec<db::Result<Option<ProbeOutcome>>> =
            futures::stream::iter(nodes.into_iter().filter_map(|node| {
                let addr: IpAddr = node.address.parse().ok()?;
                let target = NodeRef {
                    id: node.id,
                    name: node.name,
                    addr,
                };
                Some((target, node.alive))
            }))
            .map(|(node, alive)| self.probe(node, alive))
            .buffer_unordered(concurrency)
            .collect()
            .await;
        self.access.evict_idle();
        let mut done = Vec::new();
        for outcome in outcomes {
            if let Some(outcome) = outcome? {
                done.push(outcome);
            }
        }
        Ok(done)
    }

    #[tracing::instrument(skip_all, fields(node = %node.name, node_id = node.id))]
    async fn probe(&self, node: NodeRef, was_alive: bool) -> db::Result<Option<ProbeOutcome>> {
        // A probe never takes longer than ping + connect + auth, whatever happens.
        let settings = self.access.settings();
        let limit = settings.ping_timeout * u32::from(settings.ping_attempts.max(1))
            + settings.ssh_connect_timeout
            + settings.ssh_auth_timeout
            + Duration::from_secs(5);
        let checked = tokio::time::timeout(limit, self.access.check(&node)).await;
        let result = match checked {
            Ok(result) => result,
            Err(_) => Err(AccessError::Ping(format!(
                "the probe of {} did not finish within {limit:?}",
                node.addr
            ))),
        };
        let outcome = match result {
            Ok(()) => {
                metrics::probe("alive");
                let changed = if was_alive {
                    false
                } else {
                    self.access
                        .mark_alive(node.id, PROBE_ACTOR, "answers ping and SSH")
                        .await?
                };
                ProbeOutcome {
                    node_id: node.id,
                    name: node.name,
                    alive: true,
                    reason: None,
                    changed,
                }
            }
            Err(e) if !e.node_is_dead() => {
                metrics::probe("error");
                tracing::warn!(node = %node.name, error = %e, "cannot probe node");
                return Ok(None);
            }
            Err(e) => {
                metrics::probe("dead");
                let reason = e.reason();
                let changed = if was_alive {
                    self.access.mark_dead(node.id, PROBE_ACTOR, &reason).await?
                } else {
                    false
                };
                tracing::debug!(node = %node.name, %reason, changed, "node does not answer");
                ProbeOutcome {
                    node_id: node.id,
                    name: node.name,
                    alive: false,
                    reason: Some(reason),
                    changed,
                }
            }
        };
        Ok(Some(outcome))
    }
}
