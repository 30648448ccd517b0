//! `crowbar serve --demo`: a small deployment that converges by itself, so a newcomer sees
//! the grid, the graph and the annealer at work within a minute of the first command.
//!
//! Two variants, chosen at start ([`nodes`]): run as root on a machine with `ip`, `unshare`
//! and sshd, the demo starts three namespace nodes ([`crate::node_rig`]) and binds the `demo`
//! barclamp's script roles to them, which really run over SSH; otherwise three simulated
//! nodes run the `test` jig's roles. Either way each run takes a second or two, so the states
//! can be watched changing. Seeding is skipped when the deployment `demo` exists already
//! (its nodes are pointed at the new namespace nodes when those run).

pub mod nodes;

use serde_json::{Value, json};

use crate::{
    db::{
        self,
        events::Actor,
        keys::Key,
        nodes::{NewNode, NodeUpdate},
    },
    http::{ApiError, AppState, actions},
};

/// The demo deployment's name.
pub const DEPLOYMENT: &str = "demo";

/// The demo's node names; the namespace nodes' hostnames too.
pub const NODES: [&str; 3] = [
    "demo-1.example.com",
    "demo-2.example.com",
    "demo-3.example.com",
];

/// The simulated demo: (node, role, seconds each of its runs takes).
const SIMULATED: [(&str, &str, u64); 4] = [
    ("demo-1.example.com", "test-server", 2),
    ("demo-2.example.com", "test-client", 2),
    ("demo-3.example.com", "test-client", 1),
    ("demo-3.example.com", "test-client-client", 2),
];

/// The namespace demo: (node, role of the `demo` barclamp, seconds each of its runs takes).
const SCRIPTED: [(&str, &str, u64); 4] = [
    ("demo-1.example.com", "demo-database", 2),
    ("demo-2.example.com", "demo-app", 2),
    ("demo-3.example.com", "demo-app", 1),
    ("demo-3.example.com", "demo-web", 2),
];

fn actor() -> Actor {
    Actor("demo".into())
}

/// Creates and commits the simulated demo deployment unless it exists; returns whether it
/// did.
pub async fn seed(state: &AppState) -> Result<bool, ApiError> {
    let nodes = NODES.map(|name| (name, None));
    let bindings =
        SIMULATED.map(|(node, role, delay)| (node, role, json!({"test": {"delay": delay}})));
    seed_with(state, "a simulated demo node", &nodes, &bindings).await
}

/// A namespace node of the demo, as the daemon must know it.
#[derive(Debug, Clone)]
pub struct NamespaceNode {
    /// Its address on the rig's bridge.
    pub address: String,
    /// Its sshd's host key, an OpenSSH public key line.
    pub host_key: String,
}

/// Creates and commits the demo deployment on namespace nodes (one per [`NODES`] entry)
/// unless it exists; when it does, points its nodes at the new addresses. Either way the
/// nodes' host keys are pinned to the ones the rig generated: the demo trusts nothing on
/// first use. Returns whether it seeded.
pub async fn seed_namespace_nodes(
    state: &AppState,
    namespace_nodes: &[NamespaceNode; 3],
) -> Result<bool, ApiError> {
    let nodes: Vec<(&str, Option<String>)> = NODES
        .iter()
        .zip(namespace_nodes)
        .map(|(name, node)| (*name, Some(node.address.clone())))
        .collect();
    let bindings =
        SCRIPTED.map(|(node, role, delay)| (node, role, json!({"demo": {"delay": delay}})));
    let seeded = seed_with(state, "a namespace node of the demo", &nodes, &bindings).await?;
    let mut tx = state.pool.begin().await?;
    for (name, node) in NODES.iter().zip(namespace_nodes) {
        let key = Key::Name((*name).into());
        let Ok(existing) = db::nodes::get(&mut tx, &key).await else {
            continue;
        };
        if !seeded {
            let update = NodeUpdate {
                address: Some(Some(node.address.clone())),
                alive: Some(true),
                ..Default::default()
            };
            db::nodes::update(&mut tx, &key, &update, &actor(), "demo node restarted").await?;
        }
        db::host_keys::clear(&mut tx, &key, &actor()).await?;
        let fingerprint = crate::ssh::PublicKey::from_openssh(&node.host_key)
            .map(|key| crate::ssh::fingerprint(&key))
            .map_err(|e| ApiError::internal(format!("a demo node's host key: {e}")))?;
        db::host_keys::pin_first(&mut tx, existing.id, &node.host_key, &fingerprint, &actor())
            .await?;
    }
    tx.commit().await?;
    Ok(seeded)
}

/// The one way both variants seed: nodes (name, address), marked alive, in a new deployment
/// `demo`, roles bound with their data, committed.
async fn seed_with(
    state: &AppState,
    description: &str,
    nodes: &[(&str, Option<String>)],
    bindings: &[(&str, &str, Value)],
) -> Result<bool, ApiError> {
    let actor = actor();
    let deployment = Key::Name(DEPLOYMENT.into());
    let mut tx = state.pool.begin().await?;
    if db::deployments::get(&mut tx, &deployment).await.is_ok() {
        return Ok(false);
    }
    db::deployments::create(
        &mut tx,
        DEPLOYMENT,
        "A demo deployment that converges by itself (crowbar serve --demo)",
        None,
        &actor,
    )
    .await?;
    for (name, address) in nodes {
        db::nodes::create(
            &mut tx,
            &NewNode {
                name: (*name).into(),
                address: address.clone(),
                description: description.into(),
                deployment: Some(deployment.clone()),
                ..Default::default()
            },
            &actor,
        )
        .await?;
        let alive = NodeUpdate {
            alive: Some(true),
            ..Default::default()
        };
        db::nodes::update(
            &mut tx,
            &Key::Name((*name).into()),
            &alive,
            &actor,
            "demo node",
        )
        .await?;
    }
    for (node, role, data) in bindings {
        actions::bind_in(
            &mut tx,
            state,
            &actor,
            &Key::Name((*node).into()),
            &Key::Name((*role).into()),
            Some(&deployment),
            Some(data),
        )
        .await?;
    }
    actions::commit_deployment_in(&mut tx, state, &actor, &deployment).await?;
    tx.commit().await?;
    Ok(true)
}
