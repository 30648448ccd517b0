//! `crowbar serve --demo`: a small deployment that converges by itself, so a newcomer sees
//! the grid, the graph and the annealer at work within a minute of the first command.
//!
//! Three simulated nodes (`test` jig roles, no machines needed) in a deployment `demo`:
//! a server, two clients and a client of a client, each run taking a second or two so the
//! states can be watched changing. Seeding is skipped when `demo` exists already.

use serde_json::json;

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

/// The demo's nodes and what each runs: (node, role, seconds each of its runs takes).
const BINDINGS: [(&str, &str, u64); 4] = [
    ("demo-1.example.com", "test-server", 2),
    ("demo-2.example.com", "test-client", 2),
    ("demo-3.example.com", "test-client", 1),
    ("demo-3.example.com", "test-client-client", 2),
];

/// Creates and commits the demo deployment unless it exists; returns whether it did.
pub async fn seed(state: &AppState) -> Result<bool, ApiError> {
    let actor = Actor("demo".into());
    let deployment = Key::Name(DEPLOYMENT.into());
    let mut tx = state.pool.begin().await?;
    if db::deployments::get(&mut tx, &deployment).await.is_ok() {
        return Ok(false);
    }
    db::deployments::create(
        &mut tx,
        DEPLOYMENT,
        "A simulated deployment that converges by itself (crowbar serve --demo)",
        None,
        &actor,
    )
    .await?;
    let mut nodes: Vec<&str> = BINDINGS.iter().map(|(node, _, _)| *node).collect();
    nodes.dedup();
    for name in nodes {
        db::nodes::create(
            &mut tx,
            &NewNode {
                name: name.into(),
                description: "a simulated demo node".into(),
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
            &Key::Name(name.into()),
            &alive,
            &actor,
            "demo node",
        )
        .await?;
    }
    for (node, role, seconds) in BINDINGS {
        actions::bind_in(
            &mut tx,
            state,
            &actor,
            &Key::Name(node.into()),
            &Key::Name(role.into()),
            Some(&deployment),
            Some(&json!({"test": {"delay": seconds}})),
        )
        .await?;
    }
    actions::commit_deployment_in(&mut tx, state, &actor, &deployment).await?;
    tx.commit().await?;
    Ok(true)
}
