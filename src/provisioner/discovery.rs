//! Discovery (SEMANTICS.md §10): a machine crowbar does not know boots sledgehammer, which
//! registers it. The machine becomes a node named from its MAC, bound to
//! `crowbar-managed-node` and committed, so the annealer takes it over once it reports
//! alive.
//!
//! Registration is idempotent per MAC (the database keeps MACs unique): a machine that
//! reboots before it left discovery registers again and gets a fresh token for the same
//! node; a machine that already left discovery (its bootenv is no longer sledgehammer) is
//! refused, so knowing a MAC is not enough to take over a managed node's token.

use serde::Serialize;
use sqlx::PgPool;

use super::bootenvs::DISCOVERY;
use crate::{
    db::{
        error::StoreError,
        events::Actor,
        keys::Key,
        locks::{self, Lock},
        noderoles,
        nodes::{self, NewNode, Node},
    },
    hooks::{Hooks, Veto},
};

/// The role every discovered node gets.
pub const MANAGED_NODE_ROLE: &str = "crowbar-managed-node";

/// A registered machine: its node and the node's new token.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Discovered {
    #[serde(flatten)]
    pub node: Node,
    /// The node's token, shown only here.
    pub token: String,
    /// False when the MAC was known already (a rebooted, still undiscovered machine).
    pub created: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Veto(#[from] Veto),
    /// As many machines as the limit are in discovery already.
    #[error(
        "{limit} machines are in discovery already (the limit, --discovery-limit): this one \
         registers on a later try, once some report alive and leave discovery; remove nodes \
         of machines that will not come back, or raise the limit"
    )]
    Full { limit: i64 },
}

impl From<sqlx::Error> for DiscoveryError {
    fn from(e: sqlx::Error) -> Self {
        DiscoveryError::Store(e.into())
    }
}

/// The name of an undiscovered machine: `d<mac with dashes>.<domain>`.
pub fn node_name(mac: &str, domain: &str) -> String {
    format!("d{}.{domain}", mac.replace(':', "-"))
}

/// Registers the machine with `mac` (canonical form) and, optionally, the address it booted
/// with. A new machine is refused while `limit` nodes are in discovery.
pub async fn discover(
    pool: &PgPool,
    hooks: &Hooks,
    domain: &str,
    limit: i64,
    mac: &str,
    address: Option<String>,
) -> Result<Discovered, DiscoveryError> {
    let actor = Actor(format!("discovery:{mac}"));
    // Two registrations of one MAC at once: the loser's insert hits the MAC's unique
    // constraint and its second round finds the winner's node.
    for _round in 0..2 {
        let mut tx = pool.begin().await?;
        if let Some(id) = nodes::lock_by_mac(&mut tx, mac).await? {
            let node = nodes::get(&mut tx, &Key::Id(id)).await?;
            if node.bootenv != DISCOVERY {
                return Err(StoreError::conflict(
                    "already_discovered",
                    format!(
                        "{mac} is node `{}`, which left discovery (bootenv `{}`); an admin can \
                         set its bootenv back to `{DISCOVERY}` to let it register again",
                        node.name, node.bootenv
                    ),
                )
                .into());
            }
            let token = nodes::rotate_token(&mut tx, id, &actor, "registered again").await?;
            let node = match address {
                Some(address) if node.address.as_deref() != Some(address.as_str()) => {
                    let update = nodes::NodeUpdate {
                        address: Some(Some(address)),
                        ..Default::default()
                    };
                    nodes::update(&mut tx, &Key::Id(id), &update, &actor, "registered again")
                        .await?
                }
                _ => node,
            };
            tx.commit().await?;
            return Ok(Discovered {
                node,
                token,
                created: false,
            });
        }
        // racing registrations of new machines must not pass the limit together
        locks::hold(&mut tx, Lock::Discovery).await?;
        if nodes::count_in_bootenv(&mut tx, DISCOVERY).await? >= limit {
            return Err(DiscoveryError::Full { limit });
        }
        let new = NewNode {
            name: node_name(mac, domain),
            address: address.clone(),
            mac: Some(mac.to_string()),
            description: "discovered".into(),
            ..Default::default()
        };
        let (node, token) = match nodes::create(&mut tx, &new, &actor).await {
            Ok(created) => created,
            Err(StoreError::Conflict { .. }) => continue, // lost a race for this MAC
            Err(e) => return Err(e.into()),
        };
        let key = Key::Id(node.id);
        let bound = noderoles::bind(&mut tx, &key, MANAGED_NODE_ROLE, None, None, &actor).await?;
        hooks.check_bind(&mut tx, &bound).await?;
        noderoles::commit_node(&mut tx, &key, &actor).await?;
        let node = nodes::get(&mut tx, &key).await?;
        tx.commit().await?;
        return Ok(Discovered {
            node,
            token,
            created: true,
        });
    }
    Err(StoreError::conflict(
        "conflict",
        format!("{mac} is being registered by another request; try again"),
    )
    .into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undiscovered_machines_are_named_from_their_mac() {
        assert_eq!(
            node_name("52:54:00:ab:cd:ef", "crowbar.internal"),
            "d52-54-00-ab-cd-ef.crowbar.internal"
        );
    }
}
