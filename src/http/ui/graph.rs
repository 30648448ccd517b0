//! `/deployments/{name}/graph`: the deployment's noderole graph as SVG, one column per
//! cohort (dependencies point left to right), each noderole colored and labelled by state;
//! the page script recolors them as events arrive.

use std::collections::{BTreeMap, HashMap};

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, State};

use super::{Pages, error::UiError, layout::Layout, session::Session};
use crate::{
    db::{
        self,
        deployments::{GraphEdge, GraphNodeRole},
        keys::Key,
    },
    http::state::AppState,
};

pub const BOX_W: i64 = 190;
pub const BOX_H: i64 = 54;
const GAP_X: i64 = 70;
const GAP_Y: i64 = 18;
const MARGIN: i64 = 10;

pub fn router() -> Pages {
    Pages::new().get("/deployments/{name}/graph", page)
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
    drawing: Drawing,
    box_w: i64,
    box_h: i64,
}

async fn page(
    State(state): State<AppState>,
    session: Session,
    Path(name): Path<String>,
) -> Result<Page, UiError> {
    let layout = Layout::new(&state, &session, "deployments").await?;
    let mut conn = state.pool.acquire().await?;
    let graph = db::deployments::graph(&mut conn, &Key::parse(&name)).await?;
    Ok(Page {
        layout,
        name: graph.deployment,
        drawing: draw(graph.deployment_id, graph.node_roles, &graph.edges),
        box_w: BOX_W,
        box_h: BOX_H,
    })
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
