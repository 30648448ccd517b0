//! Desired-state documents, plans and recall (SEMANTICS.md §4).
//!
//! A plan is computed by doing the real thing inside a transaction and rolling it back, so
//! the plan and the commit can never disagree.

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use serde_json::{Value, json};
use sqlx::{PgConnection, PgPool};

use super::{
    deployments::{self, CommitOutcome},
    error::{Error, Result},
    events::Actor,
    node_roles,
};
use crate::domain::{
    data::content_hash,
    desired_state::{Document, waves},
    key::Key,
    state::NodeRoleState,
};

/// A noderole as a plan names it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct PlannedNodeRole {
    pub id: i64,
    pub node: String,
    pub role: String,
}

/// A node that would not run now, and why.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Held {
    pub node: String,
    /// dead | unavailable | busy | error
    pub reason: &'static str,
    pub message: String,
}

/// What a commit would do.
#[derive(Debug, Clone, Serialize, Default, utoipa::ToSchema)]
pub struct Plan {
    pub create: Vec<PlannedNodeRole>,
    pub remove: Vec<PlannedNodeRole>,
    pub rerun: Vec<PlannedNodeRole>,
    /// The noderoles that would run, in waves the annealer would follow.
    pub waves: Vec<Vec<PlannedNodeRole>>,
    /// Nodes with work in the plan that could not run it now.
    pub held: Vec<Held>,
}

/// What applying a document did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Applied {
    pub plan: Plan,
    /// False when the document equals the latest snapshot: nothing changed.
    pub changed: bool,
    pub committed: bool,
    pub snapshot: Option<i32>,
    pub content_hash: Option<String>,
}

#[derive(sqlx::FromRow, Clone)]
struct Row {
    id: i64,
    node: String,
    role: String,
    state: i16,
}

async fn noderoles_of(conn: &mut PgConnection, deployment: i64) -> Result<Vec<Row>> {
    Ok(sqlx::query_as(
        "SELECT nr.id, n.name AS node, r.name AS role, nr.state FROM noderoles nr
           JOIN nodes n ON n.id = nr.node_id JOIN roles r ON r.id = nr.role_id
          WHERE nr.deployment_id = $1 ORDER BY nr.id",
    )
    .bind(deployment)
    .fetch_all(conn)
    .await?)
}

fn named(r: &Row) -> PlannedNodeRole {
    PlannedNodeRole {
        id: r.id,
        node: r.node.clone(),
        role: r.role.clone(),
    }
}

/// Makes the deployment's proposal equal `doc` (roles, bindings, data). Requires nothing of
/// the base: callers check it. Returns nothing; the deployment is left PROPOSED (unless it is
/// `system`, which has no proposed state).
async fn write_proposal(
    conn: &mut PgConnection,
    deployment: i64,
    doc: &Document,
    actor: &Actor,
) -> Result<()> {
    doc.validate()
        .map_err(|m| Error::invalid("invalid_document", m))?;
    sqlx::query("UPDATE deployments SET state = 'proposed' WHERE id = $1 AND NOT system")
        .bind(deployment)
        .execute(&mut *conn)
        .await?;
    // deployment roles
    let mut role_names: Vec<&String> = doc.roles.keys().collect();
    role_names.extend(doc.bindings.iter().map(|b| &b.role));
    let known: Vec<String> = sqlx::query_scalar("SELECT name FROM roles WHERE name = ANY($1)")
        .bind(role_names.iter().map(|s| s.as_str()).collect::<Vec<_>>())
        .fetch_all(&mut *conn)
        .await?;
    if let Some(unknown) = role_names.iter().find(|r| !known.contains(r)) {
        // an unknown object referenced in a body is a 404, as everywhere (docs/api.md)
        return Err(Error::not_found("role", unknown));
    }
    let names: Vec<&str> = doc.roles.keys().map(|s| s.as_str()).collect();
    let data: Vec<Value> = doc
        .roles
        .values()
        .map(|e| e.data.clone().unwrap_or_else(|| json!({})))
        .collect();
    sqlx::query(
        "DELETE FROM deployment_roles dr USING roles r
          WHERE dr.role_id = r.id AND dr.deployment_id = $1 AND NOT (r.name = ANY($2))",
    )
    .bind(deployment)
    .bind(&names)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO deployment_roles (deployment_id, role_id, proposed_data)
         SELECT $1, r.id, u.data FROM unnest($2::text[], $3::jsonb[]) AS u(name, data)
           JOIN roles r ON r.name = u.name
         ON CONFLICT (deployment_id, role_id) DO UPDATE SET proposed_data = EXCLUDED.proposed_data",
    )
    .bind(deployment)
    .bind(&names)
    .bind(&data)
    .execute(&mut *conn)
    .await?;

    // bindings: remove the explicit ones the document dropped, then add or update the rest
    let wanted: HashSet<(&str, &str)> = doc
        .bindings
        .iter()
        .map(|b| (b.node.as_str(), b.role.as_str()))
        .collect();
    let explicit: Vec<(i64, String, String)> = sqlx::query_as(
        "SELECT nr.id, n.name, r.name FROM noderoles nr JOIN nodes n ON n.id = nr.node_id
           JOIN roles r ON r.id = nr.role_id WHERE nr.deployment_id = $1 AND nr.explicit
          ORDER BY nr.cohort DESC, nr.id DESC",
    )
    .bind(deployment)
    .fetch_all(&mut *conn)
    .await?;
    for (id, node, role) in &explicit {
        if wanted.contains(&(node.as_str(), role.as_str())) {
            continue;
        }
        let still_there: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM noderoles WHERE id = $1)")
                .bind(id)
                .fetch_one(&mut *conn)
                .await?;
        if still_there {
            node_roles::delete(conn, *id, actor).await?;
        }
    }
    let deployment_key = Key::Id(deployment);
    for binding in &doc.bindings {
        let data = binding.data.clone().unwrap_or_else(|| json!({}));
        let existing: Option<i64> = sqlx::query_scalar(
            "SELECT nr.id FROM noderoles nr JOIN nodes n ON n.id = nr.node_id
               JOIN roles r ON r.id = nr.role_id
              WHERE n.name = $1 AND r.name = $2 AND nr.deployment_id = $3",
        )
        .bind(&binding.node)
        .bind(&binding.role)
        .bind(deployment)
        .fetch_optional(&mut *conn)
        .await?;
        match existing {
            Some(id) => {
                sqlx::query(
                    "UPDATE noderoles SET proposed_data = $2, explicit = true WHERE id = $1",
                )
                .bind(id)
                .bind(&data)
                .execute(&mut *conn)
                .await?;
            }
            None => {
                node_roles::bind(
                    conn,
                    &Key::Name(binding.node.clone()),
                    &binding.role,
                    Some(&deployment_key),
                    Some(&data),
                    actor,
                )
                .await?;
            }
        }
    }
    Ok(())
}

/// Applies a desired-state document: checks the base is the latest snapshot (else 409
/// `stale_base`, nothing changed), writes it as the proposal, and commits it unless
/// `commit: false`. A document equal to the latest snapshot changes nothing at all.
#[tracing::instrument(skip_all, fields(deployment = %key))]
pub async fn apply(
    conn: &mut PgConnection,
    key: &Key,
    doc: &Document,
    actor: &Actor,
) -> Result<Applied> {
    let deployment: i64 = deployments::lock_id(conn, key).await?;
    let latest = deployments::latest_snapshot(conn, deployment).await?;
    let latest_seq = latest.as_ref().map(|s| s.seq);
    if doc.base != latest_seq {
        return Err(Error::Conflict {
            code: "stale_base",
            message: format!(
                "the document is based on snapshot {} but the latest is {}; fetch it and rebase",
                doc.base.map_or("none".to_string(), |b| b.to_string()),
                latest_seq.map_or("none".to_string(), |b| b.to_string()),
            ),
            details: json!({"base": doc.base, "latest": latest_seq}),
        });
    }
    let state: String = sqlx::query_scalar("SELECT state FROM deployments WHERE id = $1")
        .bind(deployment)
        .fetch_one(&mut *conn)
        .await?;
    let hash = content_hash(&doc.content());
    if doc.commit && state == "committed" && latest.as_ref().is_some_and(|l| l.content_hash == hash)
    {
        return Ok(Applied {
            plan: Plan::default(),
            changed: false,
            committed: true,
            snapshot: latest_seq,
            content_hash: Some(hash),
        });
    }
    let before = noderoles_of(conn, deployment).await?;
    write_proposal(conn, deployment, doc, actor).await?;
    let outcome = if doc.commit {
        Some(deployments::commit(conn, &Key::Id(deployment), actor).await?)
    } else {
        None
    };
    let plan = match &outcome {
        Some(_) => describe(conn, deployment, &before).await?,
        // a proposal: say what committing it would do, without doing it
        None => plan_in_savepoint(conn, deployment, &before, actor).await?,
    };
    Ok(Applied {
        plan,
        changed: true,
        committed: outcome.is_some(),
        snapshot: outcome
            .as_ref()
            .and_then(|o: &CommitOutcome| o.snapshot.as_ref().map(|s| s.seq)),
        content_hash: outcome
            .as_ref()
            .and_then(|o| o.snapshot.as_ref().map(|s| s.content_hash.clone())),
    })
}

/// What committing the deployment's current proposal would do. Changes nothing.
pub async fn plan(pool: &PgPool, key: &Key, actor: &Actor) -> Result<Plan> {
    let mut tx = pool.begin().await?;
    let deployment = deployments::lock_id(&mut tx, key).await?;
    let before = noderoles_of(&mut tx, deployment).await?;
    deployments::commit(&mut tx, &Key::Id(deployment), actor).await?;
    let plan = describe(&mut tx, deployment, &before).await?;
    tx.rollback().await?;
    Ok(plan)
}

/// What applying `doc` would do. Changes nothing.
pub async fn plan_document(
    pool: &PgPool,
    key: &Key,
    doc: &Document,
    actor: &Actor,
) -> Result<Plan> {
    let mut tx = pool.begin().await?;
    let mut doc = doc.clone();
    doc.commit = true;
    let deployment = deployments::lock_id(&mut tx, key).await?;
    let before = noderoles_of(&mut tx, deployment).await?;
    write_proposal(&mut tx, deployment, &doc, actor).await?;
    deployments::commit(&mut tx, &Key::Id(deployment), actor).await?;
    let plan = describe(&mut tx, deployment, &before).await?;
    tx.rollback().await?;
    Ok(plan)
}

async fn plan_in_savepoint(
    conn: &mut PgConnection,
    deployment: i64,
    before: &[Row],
    actor: &Actor,
) -> Result<Plan> {
    sqlx::query("SAVEPOINT crowbar_plan")
        .execute(&mut *conn)
        .await?;
    deployments::commit(conn, &Key::Id(deployment), actor).await?;
    let plan = describe(conn, deployment, before).await?;
    sqlx::query("ROLLBACK TO SAVEPOINT crowbar_plan")
        .execute(&mut *conn)
        .await?;
    Ok(plan)
}

/// Compares the deployment's noderoles now (after a commit in this transaction) with
/// `before`, and orders what would run.
async fn describe(conn: &mut PgConnection, deployment: i64, before: &[Row]) -> Result<Plan> {
    let after = noderoles_of(conn, deployment).await?;
    let before_by_id: HashMap<i64, &Row> = before.iter().map(|r| (r.id, r)).collect();
    let after_ids: HashSet<i64> = after.iter().map(|r| r.id).collect();
    let active = NodeRoleState::Active.code();
    let waiting = [NodeRoleState::Todo.code(), NodeRoleState::Blocked.code()];
    let create: Vec<PlannedNodeRole> = after
        .iter()
        .filter(|r| !before_by_id.contains_key(&r.id))
        .map(named)
        .collect();
    let remove: Vec<PlannedNodeRole> = before
        .iter()
        .filter(|r| !after_ids.contains(&r.id))
        .map(named)
        .collect();
    let rerun: Vec<PlannedNodeRole> = after
        .iter()
        .filter(|r| {
            before_by_id
                .get(&r.id)
                .is_some_and(|b| b.state == active && waiting.contains(&r.state))
        })
        .map(named)
        .collect();
    let to_run: Vec<&Row> = after
        .iter()
        .filter(|r| waiting.contains(&r.state))
        .collect();
    let ids: Vec<i64> = to_run.iter().map(|r| r.id).collect();
    let edges: Vec<(i64, i64)> =
        sqlx::query_as("SELECT child_id, parent_id FROM noderole_edges WHERE child_id = ANY($1)")
            .bind(&ids)
            .fetch_all(&mut *conn)
            .await?;
    let mut parents: HashMap<i64, Vec<i64>> = HashMap::new();
    for (child, parent) in edges {
        parents.entry(child).or_default().push(parent);
    }
    let by_id: HashMap<i64, &Row> = to_run.iter().map(|r| (r.id, *r)).collect();
    let waves = waves(&ids, &parents)
        .into_iter()
        .map(|wave| wave.iter().map(|id| named(by_id[id])).collect())
        .collect();
    let nodes: Vec<String> = {
        let mut n: Vec<String> = to_run.iter().map(|r| r.node.clone()).collect();
        n.sort();
        n.dedup();
        n
    };
    #[derive(sqlx::FromRow)]
    struct NodeCondition {
        node: String,
        alive: bool,
        available: bool,
        error: Option<String>,
        busy: Option<String>,
    }
    let held_rows: Vec<NodeCondition> = sqlx::query_as(
        "SELECT n.name AS node, n.alive, n.available,
                (SELECT r.name FROM noderoles o JOIN roles r ON r.id = o.role_id
                  WHERE o.node_id = n.id AND o.state = -1 ORDER BY o.id LIMIT 1) AS error,
                (SELECT r.name FROM runs ru JOIN noderoles o ON o.id = ru.noderole_id
                   JOIN roles r ON r.id = o.role_id WHERE ru.node_id = n.id AND ru.state = 'running' LIMIT 1) AS busy
           FROM nodes n WHERE n.name = ANY($1) ORDER BY n.name",
    )
    .bind(&nodes)
    .fetch_all(&mut *conn)
    .await?;
    let held = held_rows
        .into_iter()
        .filter_map(
            |NodeCondition {
                 node,
                 alive,
                 available,
                 error,
                 busy,
             }| {
                let (reason, message) = if !alive {
                    ("dead", format!("{node} is dead"))
                } else if !available {
                    ("unavailable", format!("{node} is not available"))
                } else if let Some(role) = error {
                    ("error", format!("{node} is frozen by the error in {role}"))
                } else if let Some(role) = busy {
                    ("busy", format!("{node} is busy running {role}"))
                } else {
                    return None;
                };
                Some(Held {
                    node,
                    reason,
                    message,
                })
            },
        )
        .collect();
    Ok(Plan {
        create,
        remove,
        rerun,
        waves,
        held,
    })
}

/// Recall (§4): makes the deployment's proposal equal an older snapshot. Committing it is
/// an ordinary commit.
#[tracing::instrument(skip_all, fields(deployment = %key, snapshot = seq))]
pub async fn recall(
    conn: &mut PgConnection,
    key: &Key,
    seq: i32,
    actor: &Actor,
) -> Result<Applied> {
    let snapshot = deployments::snapshot(conn, key, seq).await?;
    let deployment = deployments::lock_id(conn, key).await?;
    let latest = deployments::latest_snapshot(conn, deployment)
        .await?
        .map(|s| s.seq);
    let doc = Document::from_content(&snapshot.content, latest, false).ok_or_else(|| {
        Error::invalid(
            "bad_snapshot",
            format!("snapshot {seq} cannot be read back"),
        )
    })?;
    apply(conn, &Key::Id(deployment), &doc, actor).await
}
