//! The scheduled aliveness probe (SEMANTICS.md §6): every node with an address, every
//! interval, checked through [`NodeAccess::check`] (ping, then SSH against the pinned host
//! key). A failed check marks the node dead (the death ripple), a successful one marks a
//! dead node alive again; both are recorded in the node's history with who and why. The
//! script jig checks its node before each run the same way.

use std::{sync::Arc, time::Duration};

use futures::StreamExt;
use sqlx::postgres::PgListener;
use tokio::{sync::Semaphore, task::JoinSet};
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
    /// Probes until `shutdown`: every node each interval, and a node at once when it is
    /// created with or given an address, or reports itself alive ([`db::events::CHANNEL_PROBE`]).
    /// Returns at once when the probe interval is 0 (probes are off, on change too).
    pub async fn run(self, shutdown: CancellationToken) {
        let interval = self.settings.probe_interval;
        if interval.is_zero() {
            tracing::info!("scheduled node probes are off");
            return;
        }
        let prober = Arc::new(self);
        // probes asked for on change run beside the rounds, as many at once as a round's
        let asked_slots = Arc::new(Semaphore::new(prober.settings.probe_concurrency.max(1)));
        let mut asked = JoinSet::new();
        let mut requests = ProbeRequests::default();
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        result = prober.round() => {
                            if let Err(e) = result {
                                tracing::warn!(error = %e, "probing nodes failed; trying again next time");
                            }
                        }
                    }
                    requests.reconnect(prober.access.pool()).await;
                }
                Some(node_id) = requests.next() => {
                    let (prober, slots) = (prober.clone(), asked_slots.clone());
                    asked.spawn(async move {
                        let Ok(_slot) = slots.acquire_owned().await else { return };
                        if let Err(e) = prober.probe_now(node_id).await {
                            tracing::warn!(node_id, error = %e, "probing a changed node failed");
                        }
                    });
                }
                Some(_) = asked.join_next(), if !asked.is_empty() => {}
            }
        }
    }

    /// Probes one node now (when it still has an address).
    pub async fn probe_now(&self, node_id: i64) -> db::Result<Option<ProbeOutcome>> {
        let Some(node) = db::aliveness::probe_target(self.access.pool(), node_id).await? else {
            return Ok(None);
        };
        let Some(target) = node_ref(&node) else {
            return Ok(None);
        };
        self.probe(target, node.alive).await
    }

    /// One round: probes every node with an address, concurrently (bounded), applying the
    /// results; closes idle connections.
    pub async fn round(&self) -> db::Result<Vec<ProbeOutcome>> {
        let nodes = db::aliveness::probe_targets(self.access.pool()).await?;
        let concurrency = self.settings.probe_concurrency.max(1);
        let outcomes: Vec<db::Result<Option<ProbeOutcome>>> = futures::stream::iter(targets(nodes))
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

/// The targets with an address that parses, with whether each is alive now.
fn targets(nodes: Vec<db::aliveness::ProbeTarget>) -> Vec<(NodeRef, bool)> {
    nodes
        .iter()
        .filter_map(|node| Some((node_ref(node)?, node.alive)))
        .collect()
}

/// Where a probe target is reached; `None` when its address does not parse.
fn node_ref(node: &db::aliveness::ProbeTarget) -> Option<NodeRef> {
    Some(NodeRef {
        id: node.id,
        name: node.name.clone(),
        addr: node.address.parse().ok()?,
    })
}

/// The node ids asked for on [`db::events::CHANNEL_PROBE`]. Losing the connection loses
/// only the speed-up: the next round probes every node anyway, and reconnects.
#[derive(Default)]
struct ProbeRequests {
    listener: Option<PgListener>,
}

impl ProbeRequests {
    async fn reconnect(&mut self, pool: &sqlx::PgPool) {
        if self.listener.is_some() {
            return;
        }
        let listener = match PgListener::connect_with(pool).await {
            Ok(mut listener) => match listener.listen(db::events::CHANNEL_PROBE).await {
                Ok(()) => Some(listener),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot LISTEN for probe requests");
                    None
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "cannot LISTEN for probe requests");
                None
            }
        };
        self.listener = listener;
    }

    /// The next node asked for; pending forever while not connected.
    async fn next(&mut self) -> Option<i64> {
        let Some(listener) = self.listener.as_mut() else {
            return std::future::pending().await;
        };
        match listener.recv().await {
            Ok(notification) => notification.payload().parse().ok(),
            Err(e) => {
                tracing::warn!(error = %e, "probe requests: connection lost; the next round reconnects");
                self.listener = None;
                None
            }
        }
    }
}
