//! The data a jig receives (SEMANTICS.md §8), computed for many noderoles at once.
//!
//! Layers, later wins: role template → deployment-role committed data → noderole sysdata →
//! noderole committed data. A noderole sees its own layers on top of those of its ancestors
//! on the same node (lowest cohort first), plus node facts under `crowbar` (the node's
//! name, admin address, MAC, hints, quirks and its IPAM addresses), plus — from
//! noderoles on other nodes — only the attribs its role wants, placed at each attrib's path.

use std::collections::HashMap;

use serde_json::{Value, json};
use sqlx::PgConnection;

use super::{error::Result, fragments::ADDRESS_CIDR};
use crate::domain::data::{content_hash, deep_merge, get_path, set_path};

/// Input data and its hash, per noderole id.
pub async fn compute(
    conn: &mut PgConnection,
    ids: &[i64],
) -> Result<HashMap<i64, (Value, String)>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    // Driven by the ids, whatever the statistics say: each step of the walk looks up the
    // parents of the rows it has by index (a per-row subquery; `OFFSET 0` keeps PostgreSQL
    // from turning it into a join). As a join planned with a call's own values, the walk
    // could hash every edge of the graph on each call, a cost that grows with the fleet
    // (47 ms a call at 10,000 × 10, for a few hundred rows, seen in a plan made by hand).
    // The walk carries each noderole's own layers from the row it visits, rather than
    // looking every ancestor up again afterwards (a quarter of the statement's time).
    let layers: Vec<(i64, i64, Value, Value, Value, Value)> = sqlx::query_as(
        "WITH RECURSIVE a(target, id, node_id, role_id, deployment_id, cohort, sysdata, committed_data) AS (
             SELECT id, id, node_id, role_id, deployment_id, cohort, sysdata, committed_data
               FROM noderoles WHERE id = ANY($1)
             UNION
             SELECT a.target, up.id, a.node_id, up.role_id, up.deployment_id, up.cohort,
                    up.sysdata, up.committed_data
               FROM a
               CROSS JOIN LATERAL (
                   SELECT p.id, p.role_id, p.deployment_id, p.cohort, p.sysdata, p.committed_data
                     FROM noderole_edges e JOIN noderoles p ON p.id = e.parent_id
                    WHERE e.child_id = a.id AND p.node_id = a.node_id
                   OFFSET 0) up)
         SELECT a.target, a.id, r.template, coalesce(dr.committed_data, '{}'::jsonb),
                a.sysdata, a.committed_data
           FROM a JOIN roles r ON r.id = a.role_id
           LEFT JOIN deployment_roles dr ON dr.deployment_id = a.deployment_id AND dr.role_id = a.role_id
          ORDER BY a.target, a.cohort, a.id",
    )
    .bind(ids)
    .fetch_all(&mut *conn)
    .await?;
    // The node is looked up per noderole (as a join, a plan could hash every node of the
    // fleet per call).
    let facts: Vec<(i64, Value)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT nr.id, jsonb_build_object(
                    'node', jsonb_build_object('id', n.id, 'name', n.name, 'address', host(n.address),
                                               'admin', n.admin, 'mac', n.mac::text,
                                               'hints', n.hints, 'quirks', to_jsonb(n.quirks),
                                               'addresses', (
        SELECT coalesce(jsonb_agg(jsonb_build_object(
                   'network', nw.name,
                   'address', {ADDRESS_CIDR},
                   'router', CASE WHEN family(nw.router) = a.family THEN host(nw.router) END)
                 ORDER BY nw.id, a.family), '[]'::jsonb)
          FROM network_allocations a JOIN networks nw ON nw.id = a.network_id
         WHERE a.node_id = n.id)),
                    'noderole', jsonb_build_object('id', nr.id, 'role', r.name, 'deployment', d.name))
           FROM noderoles nr
           CROSS JOIN LATERAL (SELECT * FROM nodes n WHERE n.id = nr.node_id OFFSET 0) n
           JOIN roles r ON r.id = nr.role_id
           JOIN deployments d ON d.id = nr.deployment_id
          WHERE nr.id = ANY($1)"
    )))
    .bind(ids)
    .fetch_all(&mut *conn)
    .await?;
    // Attribs wanted from parents (any node): the parent's wall over its committed data.
    // Most roles want none; asking first keeps the join below off the common path.
    let any_wanted: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM noderoles nr JOIN roles r ON r.id = nr.role_id
                         WHERE nr.id = ANY($1) AND r.wants_attribs <> '{}')",
    )
    .bind(ids)
    .fetch_one(&mut *conn)
    .await?;
    let wanted: Vec<(i64, String, Option<Value>, Value, Value)> = if !any_wanted {
        Vec::new()
    } else {
        sqlx::query_as(
            "SELECT c.id, a.map, a.default_value, p.committed_data, p.wall
           FROM noderoles c JOIN roles cr ON cr.id = c.role_id
           JOIN attribs a ON a.name = ANY(cr.wants_attribs)
           JOIN noderole_edges e ON e.child_id = c.id
           JOIN noderoles p ON p.id = e.parent_id AND p.role_id = a.role_id
          WHERE c.id = ANY($1)
          ORDER BY c.id, a.name, p.id DESC",
        )
        .bind(ids)
        .fetch_all(&mut *conn)
        .await?
    };

    let mut inputs: HashMap<i64, Value> = HashMap::with_capacity(ids.len());
    for (target, _, template, deployment_data, sysdata, committed) in &layers {
        let input = inputs.entry(*target).or_insert_with(|| json!({}));
        for layer in [template, deployment_data, sysdata, committed] {
            deep_merge(input, layer);
        }
    }
    for (id, map, default, committed, wall) in wanted {
        let mut source = committed;
        deep_merge(&mut source, &wall);
        let value = get_path(&source, &map).cloned().or(default);
        if let (Some(value), Some(input)) = (value, inputs.get_mut(&id)) {
            set_path(input, &map, value);
        }
    }
    // The facts join whatever the layers put under `crowbar` (e.g. `crowbar/access` of
    // crowbar-access) instead of replacing it; the facts themselves win.
    for (id, crowbar) in facts {
        if let Some(input) = inputs.get_mut(&id) {
            deep_merge(input, &json!({ "crowbar": crowbar }));
        }
    }
    Ok(inputs
        .into_iter()
        .map(|(id, input)| {
            let hash = content_hash(&input);
            (id, (input, hash))
        })
        .collect())
}
