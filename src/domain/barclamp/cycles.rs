//! The role graph must stay acyclic; a cycle is named in full.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use petgraph::{algo::tarjan_scc, graph::DiGraph, graph::NodeIndex};

use super::{Problem, Subject, world::World};

/// The role graph (child → wanted parent) must stay acyclic. Each cycle is reported once,
/// starting at its first role declared in the batch.
pub(super) fn check_cycles(world: &World, problems: &mut Vec<Problem>) {
    let mut graph: DiGraph<&str, ()> = DiGraph::new();
    let index: BTreeMap<&str, NodeIndex> = world
        .roles
        .keys()
        .map(|&name| (name, graph.add_node(name)))
        .collect();
    for (&name, role) in &world.roles {
        for wanted in world.wanted_parents(name, role) {
            for parent in world.resolve(wanted) {
                graph.update_edge(index[name], index[parent], ());
            }
        }
    }
    for scc in tarjan_scc(&graph) {
        let cyclic = scc.len() > 1 || graph.contains_edge(scc[0], scc[0]);
        if !cyclic {
            continue;
        }
        let members: BTreeSet<NodeIndex> = scc.iter().copied().collect();
        // Start at the batch role with the smallest name; a cycle made only of stored roles
        // is not this import's doing.
        let Some((start, source)) = scc
            .iter()
            .filter_map(|&n| world.roles[graph[n]].source.map(|s| (n, s)))
            .min_by_key(|(n, _)| graph[*n])
        else {
            continue;
        };
        let cycle = shortest_cycle(&graph, start, &members);
        let names: Vec<&str> = cycle.iter().map(|&n| graph[n]).collect();
        problems.push(Problem::new(
            source,
            Subject::Role(graph[start].to_owned()),
            format!("require cycle: {}", names.join(" -> ")),
        ));
    }
}

/// A shortest path `start -> ... -> start` inside one strongly connected component.
fn shortest_cycle(
    graph: &DiGraph<&str, ()>,
    start: NodeIndex,
    members: &BTreeSet<NodeIndex>,
) -> Vec<NodeIndex> {
    let mut came_from: HashMap<NodeIndex, NodeIndex> = HashMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(at) = queue.pop_front() {
        let mut next: Vec<NodeIndex> = graph.neighbors(at).collect();
        next.sort_by_key(|n| graph[*n]);
        for n in next {
            if n == start {
                let mut path = vec![at];
                let mut back = at;
                while back != start {
                    back = came_from[&back];
                    path.push(back);
                }
                path.reverse();
                path.push(start);
                return path;
            }
            if members.contains(&n) && !came_from.contains_key(&n) {
                came_from.insert(n, at);
                queue.push_back(n);
            }
        }
    }
    vec![start, start]
}
