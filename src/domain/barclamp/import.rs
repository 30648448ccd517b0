//! Importing barclamps: a batch of documents validated against the [`StoredContent`], and
//! the resulting [`ImportPlan`].
//!
//! A batch replaces what its barclamps held before: the world after the import is the
//! catalog without the entries owned by the batch's barclamps, plus the batch. Every check
//! runs against that world, so documents of one batch may refer to each other in any order,
//! and a role may move between two barclamps imported together.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use petgraph::{algo::tarjan_scc, graph::DiGraph, graph::NodeIndex};

use super::{
    Barclamp, BarclampDoc, Problem, Problems, StoredContent, Subject,
    build::build,
    checks::{check_outside_users, check_ownership, check_parents, check_references},
    cycles::check_cycles,
    world::{Batch, World},
};

/// A parsed document and where it came from.
#[derive(Debug, Clone)]
pub struct SourcedDoc {
    pub source: String,
    pub doc: BarclampDoc,
}

/// What an import does to one barclamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Created,
    Updated,
    /// The stored content hash is the same: nothing is written.
    Unchanged,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Change::Created => "created",
            Change::Updated => "updated",
            Change::Unchanged => "unchanged",
        })
    }
}

#[derive(Debug, Clone)]
pub struct PlannedBarclamp {
    pub barclamp: Barclamp,
    pub change: Change,
}

/// A stored jig, role or attrib that the import deletes, and the barclamp that dropped it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovedItem {
    pub name: String,
    pub barclamp: String,
    pub source: String,
}

#[derive(Debug, Clone, Default)]
pub struct Removed {
    pub jigs: Vec<RemovedItem>,
    pub roles: Vec<RemovedItem>,
    pub attribs: Vec<RemovedItem>,
}

/// A validated import: its barclamps in dependency order (parents and the barclamps whose
/// jigs, roles and attribs they use come first), and what it deletes.
#[derive(Debug, Clone)]
pub struct ImportPlan {
    pub barclamps: Vec<PlannedBarclamp>,
    pub removed: Removed,
}

impl ImportPlan {
    /// (jigs, roles, attribs) the import deletes from barclamp `name`.
    pub fn removed_from(&self, name: &str) -> (usize, usize, usize) {
        let count = |items: &[RemovedItem]| items.iter().filter(|i| i.barclamp == name).count();
        (
            count(&self.removed.jigs),
            count(&self.removed.roles),
            count(&self.removed.attribs),
        )
    }
}

/// A role an import would delete while noderoles or deployment roles still use it: the
/// import is refused (only the database can count the users, at write time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleInUse {
    pub role: String,
    pub barclamp: String,
    /// Where the barclamp that drops the role was read from.
    pub source: String,
    pub noderoles: i64,
    pub deployment_roles: i64,
}

impl std::fmt::Display for RoleInUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: role {}: cannot remove it from barclamp {}: still used by {} noderole(s) and \
             {} deployment role(s); unbind it first",
            self.source, self.role, self.barclamp, self.noderoles, self.deployment_roles
        )
    }
}

/// Validates `docs` as one batch against `catalog` and plans the import. Every problem found
/// is reported, each naming its file, its role (or jig, or barclamp) and the reason.
pub fn plan(docs: &[SourcedDoc], catalog: &StoredContent) -> Result<ImportPlan, Problems> {
    let mut problems = Vec::new();
    let built: Vec<Barclamp> = docs.iter().map(|d| build(d, &mut problems)).collect();
    let batch = Batch::new(&built, &mut problems);
    let world = World::new(catalog, &built, &batch);

    check_ownership(catalog, &built, &batch, &mut problems);
    check_parents(catalog, &built, &batch, &mut problems);
    check_references(&built, &world, &mut problems);
    check_outside_users(catalog, &built, &batch, &world, &mut problems);
    check_cycles(&world, &mut problems);

    sort_problems(docs, &mut problems);
    if let Some(problems) = Problems::from_vec(problems) {
        return Err(problems);
    }

    let removed = removed(catalog, &built, &batch);
    let barclamps = dependency_order(&built, &world)
        .into_iter()
        .map(|barclamp| {
            let change = match catalog.barclamps.get(&barclamp.name) {
                None => Change::Created,
                Some(stored) if stored.content_hash == barclamp.content_hash => Change::Unchanged,
                Some(_) => Change::Updated,
            };
            PlannedBarclamp { barclamp, change }
        })
        .collect();
    Ok(ImportPlan { barclamps, removed })
}

/// Files in the order given; within a file, the barclamp first, then jigs and roles in the
/// order the document declares them (stable: each one's problems stay in check order).
fn sort_problems(docs: &[SourcedDoc], problems: &mut [Problem]) {
    let mut file: HashMap<&str, usize> = HashMap::new();
    let mut place: HashMap<(&str, &Subject), usize> = HashMap::new();
    let mut subjects: Vec<(&str, Subject)> = Vec::new();
    for (i, d) in docs.iter().enumerate().rev() {
        file.insert(d.source.as_str(), i);
    }
    for d in docs {
        subjects.extend(
            d.doc
                .jigs
                .iter()
                .map(|j| (d.source.as_str(), Subject::Jig(j.name.clone()))),
        );
        subjects.extend(
            d.doc
                .roles
                .iter()
                .map(|r| (d.source.as_str(), Subject::Role(r.name.clone()))),
        );
    }
    for (i, (source, subject)) in subjects.iter().enumerate().rev() {
        place.insert((source, subject), i + 1);
    }
    problems.sort_by_key(|p| {
        let rank = match p.subject {
            Subject::Document | Subject::Barclamp(_) => 0,
            _ => place
                .get(&(p.source.as_str(), &p.subject))
                .copied()
                .unwrap_or(usize::MAX),
        };
        (
            file.get(p.source.as_str()).copied().unwrap_or(usize::MAX),
            rank,
        )
    });
}

/// Stored entries of the batch's barclamps that no document of the batch declares any more.
fn removed(catalog: &StoredContent, built: &[Barclamp], batch: &Batch) -> Removed {
    let source_of = |owner: &str| -> String {
        batch
            .barclamps
            .get(owner)
            .map(|&i| built[i].source.clone())
            .unwrap_or_default()
    };
    let item = |name: &str, owner: &str| RemovedItem {
        name: name.to_owned(),
        barclamp: owner.to_owned(),
        source: source_of(owner),
    };
    Removed {
        jigs: catalog
            .jigs
            .iter()
            .filter(|(n, j)| batch.replaces(&j.barclamp) && !batch.jigs.contains_key(n.as_str()))
            .map(|(n, j)| item(n, &j.barclamp))
            .collect(),
        roles: catalog
            .roles
            .iter()
            .filter(|(n, r)| batch.replaces(&r.barclamp) && !batch.roles.contains_key(n.as_str()))
            .map(|(n, r)| item(n, &r.barclamp))
            .collect(),
        attribs: catalog
            .attribs
            .iter()
            .filter(|(n, a)| batch.replaces(&a.barclamp) && !batch.attribs.contains_key(n.as_str()))
            .map(|(n, a)| item(n, &a.barclamp))
            .collect(),
    }
}

/// The batch's barclamps with every barclamp after its parent and after the barclamps whose
/// jigs, roles and attribs it uses; ties (and mutual use) in name order.
fn dependency_order(built: &[Barclamp], world: &World) -> Vec<Barclamp> {
    let mut sorted: Vec<&Barclamp> = built.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut graph: DiGraph<usize, ()> = DiGraph::new();
    let nodes: BTreeMap<&str, NodeIndex> = sorted
        .iter()
        .enumerate()
        .map(|(i, b)| (b.name.as_str(), graph.add_node(i)))
        .collect();
    // Edges point from a barclamp to what it depends on, so that tarjan_scc (which yields
    // components in reverse topological order) lists dependencies first.
    for b in &sorted {
        let from = nodes[b.name.as_str()];
        let mut uses: BTreeSet<&str> = BTreeSet::new();
        uses.extend(b.parent.as_deref());
        for role in &b.roles {
            uses.extend(world.jigs.get(role.jig.as_str()).map(|j| j.owner));
            for required in &role.requires {
                for r in world.resolve(required) {
                    uses.insert(world.roles[r].owner);
                }
            }
        }
        for owner in uses {
            if let Some(&to) = nodes.get(owner)
                && to != from
            {
                graph.update_edge(from, to, ());
            }
        }
    }
    let mut ordered = Vec::with_capacity(built.len());
    for mut scc in tarjan_scc(&graph) {
        scc.sort_by_key(|n| graph[*n]);
        ordered.extend(scc.into_iter().map(|n| sorted[graph[n]].clone()));
    }
    ordered
}

#[cfg(test)]
mod tests;
