//! `/deployments/{name}/graph`: the deployment's noderole graph as SVG, one column per
//! cohort (dependencies point left to right), each noderole colored and labelled by state;
//! the page script recolors them as events arrive.
//!
//! A deployment with more than [`DETAIL_MAX`] noderoles is drawn as a summary instead: one
//! box per role with its noderoles counted by state (reloaded as events arrive), and the
//! roles it waits on; a role's box expands it (`?role=`) into its noderoles, at most
//! [`DETAIL_MAX`] of them, with their parents and children.

use std::collections::{BTreeMap, HashMap};

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, Query, State};
use serde::Deserialize;

use super::{Pages, error::UiError, layout::Layout, session::Session};
use crate::{
    db::{
        self,
        deployments::{GraphEdge, GraphNodeRole, RoleTally},
        keys::Key,
    },
    http::state::AppState,
};

pub const BOX_W: i64 = 190;
pub const BOX_H: i64 = 54;
const GAP_X: i64 = 70;
const GAP_Y: i64 = 18;
const MARGIN: i64 = 10;

/// Most noderoles drawn one by one.
pub const DETAIL_MAX: i64 = 300;
/// A role's box in the summary.
const ROLE_W: i64 = 240;
const ROLE_H: i64 = 74;
/// The state bar inside a role's box.
const BAR_W: i64 = ROLE_W - 16;

pub fn router() -> Pages {
    Pages::new()
        .get("/deployments/{name}/graph", page)
        .get("/deployments/{name}/graph/summary", summary_only)
}

/// A role placed on the summary canvas, with its state bar's segments.
pub struct RoleBox {
    pub tally: RoleTally,
    pub x: i64,
    pub y: i64,
    /// (state, x, width) of each non-empty state, in state order, within the bar.
    pub segments: Vec<(&'static str, i64, i64)>,
}

pub struct Summary {
    pub width: i64,
    pub height: i64,
    pub boxes: Vec<RoleBox>,
    pub lines: Vec<Line>,
}

/// Lays the summary out like the graph: roles in columns by their lowest cohort.
pub fn summarize(roles: Vec<RoleTally>, edges: &[(i64, i64)]) -> Summary {
    let mut columns: BTreeMap<i32, Vec<RoleTally>> = BTreeMap::new();
    for role in roles {
        columns.entry(role.cohort).or_default().push(role);
    }
    let mut boxes = Vec::new();
    let mut tallest = 0;
    for (column, (_, members)) in columns.into_iter().enumerate() {
        tallest = tallest.max(members.len() as i64);
        for (row, tally) in members.into_iter().enumerate() {
            let total = tally.total().max(1);
            let mut segments = Vec::new();
            let mut x = 0;
            for (state, n) in [
                ("error", tally.error),
                ("active", tally.active),
                ("todo", tally.todo),
                ("transition", tally.transition),
                ("blocked", tally.blocked),
                ("proposed", tally.proposed),
            ] {
                if n > 0 {
                    // every non-empty state at least a sliver wide
                    let w = (n * BAR_W / total).max(2);
                    segments.push((state, x, w));
                    x += w;
                }
            }
            boxes.push(RoleBox {
                x: MARGIN + column as i64 * (ROLE_W + GAP_X),
                y: MARGIN + row as i64 * (ROLE_H + GAP_Y),
                tally,
                segments,
            });
        }
    }
    let at: HashMap<i64, (i64, i64)> = boxes
        .iter()
        .map(|b| (b.tally.role_id, (b.x, b.y)))
        .collect();
    let lines = edges
        .iter()
        .filter_map(|(parent, child)| {
            let (px, py) = at.get(parent)?;
            let (cx, cy) = at.get(child)?;
            (px < cx).then_some(Line {
                x1: px + ROLE_W,
                y1: py + ROLE_H / 2,
                x2: *cx,
                y2: cy + ROLE_H / 2,
            })
        })
        .collect();
    let width = boxes.iter().map(|b| b.x + ROLE_W).max().unwrap_or(0) + MARGIN;
    let height = MARGIN * 2 + tallest * (ROLE_H + GAP_Y);
    Summary {
        width,
        height,
        boxes,
        lines,
    }
}

/// A noderole placed on the canvas (top-left corner).
pub struct Placed {
    pub nr: GraphNodeRole,
    pub x: i64,
    pub y: i64,
    /// Whether it belongs to another deployment (a shared parent or an outside child).
    pub foreign: bool,
}

/// An edge from the right side of the parent to the left side of the child.
pub struct Line {
    pub x1: i64,
    pub y1: i64,
    pub x2: i64,
    pub y2: i64,
}

pub struct Drawing {
    pub width: i64,
    pub height: i64,
    pub boxes: Vec<Placed>,
    pub lines: Vec<Line>,
}

/// Lays the graph out: cohorts as columns left to right, noderoles stacked in each.
pub fn draw(deployment_id: i64, node_roles: Vec<GraphNodeRole>, edges: &[GraphEdge]) -> Drawing {
    let mut columns: BTreeMap<i32, Vec<GraphNodeRole>> = BTreeMap::new();
    for nr in node_roles {
        columns.entry(nr.cohort).or_default().push(nr);
    }
    let mut boxes = Vec::new();
    let mut tallest = 0;
    for (column, (_, members)) in columns.into_iter().enumerate() {
        tallest = tallest.max(members.len() as i64);
        for (row, nr) in members.into_iter().enumerate() {
            boxes.push(Placed {
                foreign: nr.deployment_id != deployment_id,
                x: MARGIN + column as i64 * (BOX_W + GAP_X),
                y: MARGIN + row as i64 * (BOX_H + GAP_Y),
                nr,
            });
        }
    }
    let at: HashMap<i64, (i64, i64)> = boxes.iter().map(|b| (b.nr.id, (b.x, b.y))).collect();
    let lines = edges
        .iter()
        .filter_map(|e| {
            let (px, py) = at.get(&e.parent)?;
            let (cx, cy) = at.get(&e.child)?;
            Some(Line {
                x1: px + BOX_W,
                y1: py + BOX_H / 2,
                x2: *cx,
                y2: cy + BOX_H / 2,
            })
        })
        .collect();
    let width = boxes.iter().map(|b| b.x + BOX_W).max().unwrap_or(0) + MARGIN;
    let height = MARGIN * 2 + tallest * (BOX_H + GAP_Y);
    Drawing {
        width,
        height,
        boxes,
        lines,
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "graph.html")]
struct Page {
    layout: Layout,
    name: String,
    /// The noderoles one by one, or ...
    drawing: Option<Drawing>,
    /// ... the summary by role, rendered.
    summary_html: Option<String>,
    /// The role expanded, and how many of its noderoles there are.
    role: Option<(String, i64)>,
    box_w: i64,
    box_h: i64,
}

#[derive(Template, WebTemplate)]
#[template(path = "graph_summary.html")]
struct SummaryFragment {
    name: String,
    summary: Summary,
    role_w: i64,
    role_h: i64,
    bar_w: i64,
}

#[derive(Debug, Default, Deserialize)]
struct GraphQuery {
    /// Expand this role into its noderoles.
    role: Option<String>,
}

async fn summary_fragment(state: &AppState, name: &str) -> Result<SummaryFragment, UiError> {
    let mut conn = state.pool.acquire().await?;
    let graph = db::deployments::role_graph(&mut conn, &Key::parse(name)).await?;
    Ok(SummaryFragment {
        name: graph.deployment,
        summary: summarize(graph.roles, &graph.edges),
        role_w: ROLE_W,
        role_h: ROLE_H,
        bar_w: BAR_W,
    })
}

async fn summary_only(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<SummaryFragment, UiError> {
    summary_fragment(&state, &name).await
}

async fn page(
    State(state): State<AppState>,
    session: Session,
    Path(name): Path<String>,
    Query(q): Query<GraphQuery>,
) -> Result<Page, UiError> {
    let layout = Layout::new(&state, &session, "deployments").await?;
    let mut conn = state.pool.acquire().await?;
    let key = Key::parse(&name);
    let deployment = db::deployments::get(&mut conn, &key).await?;
    let mut page = Page {
        layout,
        name: deployment.name.clone(),
        drawing: None,
        summary_html: None,
        role: None,
        box_w: BOX_W,
        box_h: BOX_H,
    };
    if let Some(role) = q.role {
        let graph = db::deployments::role_subgraph(&mut conn, &key, &role, DETAIL_MAX).await?;
        let of_role = db::deployments::role_count(&mut conn, deployment.id, &role).await?;
        page.drawing = Some(draw(graph.deployment_id, graph.node_roles, &graph.edges));
        page.role = Some((role, of_role));
    } else if db::deployments::noderole_count(&mut conn, deployment.id).await? > DETAIL_MAX {
        drop(conn);
        let summary = summary_fragment(&state, &deployment.name).await?;
        page.summary_html = Some(
            summary
                .render()
                .map_err(crate::http::error::ApiError::internal)?,
        );
    } else {
        let graph = db::deployments::graph(&mut conn, &key).await?;
        page.drawing = Some(draw(graph.deployment_id, graph.node_roles, &graph.edges));
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nr(id: i64, cohort: i32, deployment_id: i64) -> GraphNodeRole {
        GraphNodeRole {
            id,
            node: "n1".into(),
            node_id: 1,
            role: format!("r{id}"),
            role_id: id,
            deployment: "d".into(),
            deployment_id,
            state: 4,
            status: "proposed".into(),
            cohort,
        }
    }

    #[test]
    fn cohorts_are_columns_and_edges_point_right() {
        let drawing = draw(
            1,
            vec![nr(1, 0, 2), nr(2, 1, 1), nr(3, 1, 1)],
            &[
                GraphEdge {
                    parent: 1,
                    child: 2,
                },
                GraphEdge {
                    parent: 1,
                    child: 3,
                },
            ],
        );
        let pos: HashMap<i64, (i64, i64)> = drawing
            .boxes
            .iter()
            .map(|b| (b.nr.id, (b.x, b.y)))
            .collect();
        assert!(pos[&1].0 < pos[&2].0, "parents left of children");
        assert_eq!(pos[&2].0, pos[&3].0, "one column per cohort");
        assert_ne!(pos[&2].1, pos[&3].1, "stacked, not overlapping");
        assert!(drawing.boxes.iter().find(|b| b.nr.id == 1).unwrap().foreign);
        assert_eq!(drawing.lines.len(), 2);
        assert!(drawing.lines.iter().all(|l| l.x1 < l.x2));
        assert!(drawing.width >= pos[&3].0 + BOX_W);
        assert!(drawing.height >= pos[&3].1 + BOX_H);
    }
}
