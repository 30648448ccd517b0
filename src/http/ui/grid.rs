//! The deployment grid: nodes as rows, roles as columns ordered by cohort (the order the
//! annealer runs them in), a noderole in each cell where a role is bound to a node.

use std::collections::{BTreeMap, HashMap};

use super::view::NrView;

pub struct Column {
    pub role: String,
    /// The lowest cohort of its noderoles here; `None` while it has none.
    pub cohort: Option<i32>,
}

pub struct Row {
    pub node: String,
    /// One per column: the noderole of that role on this node, if bound.
    pub cells: Vec<Option<NrView>>,
}

pub struct Grid {
    pub columns: Vec<Column>,
    pub rows: Vec<Row>,
}

/// Lays out the grid: rows are the deployment's nodes plus any node with a noderole here
/// (in the order given, then by name); columns are the listed roles plus every bound role,
/// by cohort, roles without noderoles last, ties by name.
pub fn layout(nodes: &[String], listed_roles: &[String], noderoles: Vec<NrView>) -> Grid {
    let mut cohorts: BTreeMap<String, Option<i32>> =
        listed_roles.iter().map(|r| (r.clone(), None)).collect();
    for nr in &noderoles {
        let cohort = cohorts.entry(nr.role.clone()).or_insert(None);
        *cohort = Some(cohort.map_or(nr.cohort, |c| c.min(nr.cohort)));
    }
    let mut columns: Vec<Column> = cohorts
        .into_iter()
        .map(|(role, cohort)| Column { role, cohort })
        .collect();
    columns.sort_by(|a, b| {
        (a.cohort.is_none(), a.cohort, &a.role).cmp(&(b.cohort.is_none(), b.cohort, &b.role))
    });
    let index: HashMap<&str, usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| (c.role.as_str(), i))
        .collect();

    let mut row_names: Vec<String> = nodes.to_vec();
    let mut extra: Vec<String> = noderoles
        .iter()
        .map(|nr| nr.node.clone())
        .filter(|n| !nodes.contains(n))
        .collect();
    extra.sort();
    extra.dedup();
    row_names.extend(extra);
    let mut rows: Vec<Row> = row_names
        .into_iter()
        .map(|node| Row {
            node,
            cells: (0..columns.len()).map(|_| None).collect(),
        })
        .collect();
    let row_of: HashMap<String, usize> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| (r.node.clone(), i))
        .collect();
    for nr in noderoles {
        let (r, c) = (row_of[&nr.node], index[nr.role.as_str()]);
        rows[r].cells[c] = Some(nr);
    }
    Grid { columns, rows }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nr(id: i64, node: &str, role: &str, cohort: i32) -> NrView {
        NrView {
            id,
            node: node.into(),
            role: role.into(),
            deployment: "d".into(),
            status: "proposed".into(),
            cohort,
            run_count: 0,
            runlog: String::new(),
            reason: String::new(),
        }
    }

    #[test]
    fn columns_follow_cohorts_and_cells_their_noderoles() {
        let grid = layout(
            &["n1".into(), "n2".into()],
            &["zeta".into(), "client".into()],
            vec![
                nr(1, "n1", "client", 2),
                nr(2, "n1", "server", 1),
                nr(3, "n3", "server", 1),
            ],
        );
        let roles: Vec<_> = grid.columns.iter().map(|c| c.role.as_str()).collect();
        assert_eq!(roles, ["server", "client", "zeta"]);
        assert_eq!(grid.columns[2].cohort, None);
        let nodes: Vec<_> = grid.rows.iter().map(|r| r.node.as_str()).collect();
        assert_eq!(
            nodes,
            ["n1", "n2", "n3"],
            "bound nodes of other deployments show too"
        );
        let ids = |row: &Row| -> Vec<Option<i64>> {
            row.cells
                .iter()
                .map(|c| c.as_ref().map(|nr| nr.id))
                .collect()
        };
        assert_eq!(ids(&grid.rows[0]), [Some(2), Some(1), None]);
        assert_eq!(ids(&grid.rows[1]), [None, None, None]);
        assert_eq!(ids(&grid.rows[2]), [Some(3), None, None]);
    }
}
