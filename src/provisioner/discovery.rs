//! Discovery (SEMANTICS.md §10): a machine crowbar does not know boots sledgehammer, which
//! registers it. The machine becomes a node named from its MAC, bound to
//! `crowbar-managed-node` and committed, so the annealer takes it over once it reports
//! alive.
//!
//! The caller is unauthenticated, so what it can do is narrow (docs/provisioning.md):
//! - a new MAC makes a node marked `discovered`, while fewer than the limit of such nodes
//!   exist, at an address (if any) that is a host of a configured network and no other
//!   node's: crowbar will SSH there as root, so the caller must not choose just anywhere;
//! - a MAC whose node is still `discovered` (no admin accepted it) gets a fresh token for
//!   it, as a machine that rebooted and lost its token with its RAM; nothing else changes,
//!   the address included;
//! - a MAC whose node waits for its machine (an admin enrolled the node's BMC and asked it to
//!   `discover`: the BMC reported the MAC and powered the machine on into discovery)
//!   registers as that node, once: its address, a token, the managed role;
//! - any other known MAC is refused: knowing a MAC is not enough to take over a node.

use std::net::IpAddr;

use serde::Serialize;
use sqlx::{PgConnection, PgPool};

use crate::{
    db::{
        self,
        events::Actor,
        keys::Key,
        locks::{self, Lock},
        networks, node_roles,
        nodes::{self, NewNode, Node},
    },
    domain::ipam,
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
    /// False when the MAC was known already (a rebooted machine no admin accepted yet).
    pub created: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error(transparent)]
    Store(#[from] db::Error),
    #[error(transparent)]
    Veto(#[from] Veto),
    /// As many machines as the limit are in discovery already.
    #[error(
        "{limit} discovered machines wait for an admin already (the limit, --discovery-limit): \
         this one registers on a later try, once an admin accepts or removes some; or raise \
         the limit"
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
/// with. A new machine is refused while `limit` discovered nodes wait for an admin.
pub async fn discover(
    pool: &PgPool,
    hooks: &Hooks,
    domain: &str,
    limit: i64,
    mac: &str,
    address: Option<IpAddr>,
) -> Result<Discovered, DiscoveryError> {
    let actor = Actor(format!("discovery:{mac}"));
    // Two registrations of one MAC at once: the loser finds the winner's node once it holds
    // the discovery lock (or its insert hits the MAC's unique constraint), and its second
    // round registers again.
    for _round in 0..2 {
        let mut tx = pool.begin().await?;
        if let Some(id) = nodes::lock_by_mac(&mut tx, mac).await? {
            let node = nodes::get(&mut tx, &Key::Id(id)).await?;
            if node.awaiting_machine {
                return arrived(tx, hooks, node, address, &actor).await;
            }
            if !node.discovered {
                return Err(db::Error::conflict(
                    "already_discovered",
                    format!(
                        "{mac} is node `{}`, which an admin created or accepted: it does not \
                         register again; an admin who wants the machine to register anew \
                         deletes the node",
                        node.name
                    ),
                )
                .into());
            }
            // a new token only: the address stays the one the node registered with
            let token = nodes::rotate_token(&mut tx, id, &actor, "registered again").await?;
            tx.commit().await?;
            return Ok(Discovered {
                node,
                token,
                created: false,
            });
        }
        // racing registrations of new machines must not pass the limit, nor take one
        // address, together
        locks::hold(&mut tx, Lock::Discovery).await?;
        if nodes::lock_by_mac(&mut tx, mac).await?.is_some() {
            continue; // registered by another request while this one waited
        }
        if nodes::count_discovered(&mut tx).await? >= limit {
            return Err(DiscoveryError::Full { limit });
        }
        if let Some(address) = address {
            check_address(&mut tx, address).await?;
        }
        let new = NewNode {
            name: node_name(mac, domain),
            address: address.map(|a| a.to_string()),
            mac: Some(mac.to_string()),
            description: "discovered".into(),
            discovered: true,
            ..Default::default()
        };
        let (node, token) = match nodes::create(&mut tx, &new, &actor).await {
            Ok(created) => created,
            Err(db::Error::Conflict { .. }) => continue, // lost a race for this MAC
            Err(e) => return Err(e.into()),
        };
        let key = Key::Id(node.id);
        let bound = node_roles::bind(&mut tx, &key, MANAGED_NODE_ROLE, None, None, &actor).await?;
        hooks.check_bind(&mut tx, &bound).await?;
        node_roles::commit_node(&mut tx, &key, &actor).await?;
        let node = nodes::get(&mut tx, &key).await?;
        tx.commit().await?;
        return Ok(Discovered {
            node,
            token,
            created: true,
        });
    }
    Err(db::Error::conflict(
        "conflict",
        format!("{mac} is being registered by another request; try again"),
    )
    .into())
}

/// The machine an admin's node waits for (its BMC powered it on into discovery) registers
/// as that node, once: the address it booted with (checked as any discovered machine's), a
/// token, and the managed role, committed like a new machine's.
async fn arrived(
    mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
    hooks: &Hooks,
    node: Node,
    address: Option<IpAddr>,
    actor: &Actor,
) -> Result<Discovered, DiscoveryError> {
    if let Some(address) = address
        && node.address.as_deref() != Some(address.to_string().as_str())
    {
        check_address(&mut tx, address).await?;
    }
    let address = address.map(|a| a.to_string());
    nodes::machine_arrived(&mut tx, node.id, address.as_deref(), actor).await?;
    let token = nodes::rotate_token(&mut tx, node.id, actor, "its machine registered").await?;
    let key = Key::Id(node.id);
    let bound = node_roles::bind(&mut tx, &key, MANAGED_NODE_ROLE, None, None, actor).await?;
    hooks.check_bind(&mut tx, &bound).await?;
    node_roles::commit_node(&mut tx, &key, actor).await?;
    let node = nodes::get(&mut tx, &key).await?;
    tx.commit().await?;
    Ok(Discovered {
        node,
        token,
        created: false,
    })
}

/// A discovered machine's address must be a host of a configured network and not another
/// node's (the database also refuses two nodes on one address).
async fn check_address(conn: &mut PgConnection, address: IpAddr) -> db::Result<()> {
    let spans = networks::spans(conn).await?;
    if !ipam::is_host_address(address) || !spans.iter().any(|s| s.holds(address)) {
        return Err(db::Error::invalid(
            "address_not_allowed",
            format!(
                "{address} is not a host address of any network crowbar provisions \
                 (GET /api/v2/networks): discovered machines register with their address on \
                 one of them"
            ),
        ));
    }
    if let Some(holder) = nodes::holder_of_address(conn, &address.to_string()).await? {
        return Err(db::Error::invalid(
            "address_taken",
            format!("{address} is the address of node `{holder}` already"),
        ));
    }
    Ok(())
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
