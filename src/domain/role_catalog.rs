//! The roles a binding can use, and the role-level dependency rules (SEMANTICS.md §3).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque, hash_map::Entry};

use petgraph::{algo::tarjan_scc, graph::DiGraph};

/// What binding needs to know about a role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleInfo {
    pub id: i64,
    pub name: String,
    pub jig: String,
    pub jig_active: bool,
    /// A role every role on this jig requires.
    pub jig_client_role: Option<String>,
    pub implicit: bool,
    pub cluster: bool,
    pub is_abstract: bool,
    pub destructive: bool,
    pub requires: Vec<String>,
    pub provides: Vec<String>,
    pub conflicts: Vec<String>,
    pub wants_attribs: Vec<String>,
}

impl RoleInfo {
    /// A role satisfies a wanted name when it is that role or provides it.
    pub fn satisfies(&self, wanted: &str) -> bool {
        self.name == wanted || self.provides.iter().any(|p| p == wanted)
    }
}

/// Every role, by name, plus which role owns each attrib.
#[derive(Debug, Clone, Default)]
pub struct RoleCatalog {
    roles: BTreeMap<String, RoleInfo>,
    attrib_owners: HashMap<String, String>,
}

impl RoleCatalog {
    pub fn new(
        roles: impl IntoIterator<Item = RoleInfo>,
        attrib_owners: HashMap<String, String>,
    ) -> Self {
        Self {
            roles: roles.into_iter().map(|r| (r.name.clone(), r)).collect(),
            attrib_owners,
        }
    }

    pub fn role(&self, name: &str) -> Option<&RoleInfo> {
        self.roles.get(name)
    }

    pub fn roles(&self) -> impl Iterator<Item = &RoleInfo> {
        self.roles.values()
    }

    /// The names R wants as parents: its requires, its jig's client role, and the owners
    /// of the attribs it wants (§3.1). A role never wants itself.
    pub fn wanted_parents(&self, role: &RoleInfo) -> Vec<String> {
        let mut wanted: Vec<String> = Vec::new();
        let mut push = |name: &str| {
            if name != role.name && !wanted.iter().any(|w| w == name) {
                wanted.push(name.to_string());
            }
        };
        role.requires.iter().for_each(|r| push(r));
        if let Some(client) = &role.jig_client_role {
            push(client);
        }
        for attrib in &role.wants_attribs {
            if let Some(owner) = self.attrib_owners.get(attrib) {
                push(owner);
            }
        }
        wanted
    }

    /// Roles that can fill a wanted name: the role of that name and every provider of it.
    pub fn candidates(&self, wanted: &str) -> Vec<&RoleInfo> {
        self.roles
            .values()
            .filter(|r| r.satisfies(wanted))
            .collect()
    }

    /// `role` and every role it can pull in as an ancestor, by name.
    pub fn closure(&self, role: &str) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut pending = vec![role.to_string()];
        while let Some(name) = pending.pop() {
            let Some(info) = self.roles.get(&name) else {
                continue;
            };
            if !seen.insert(name) {
                continue;
            }
            for wanted in self.wanted_parents(info) {
                pending.extend(self.candidates(&wanted).into_iter().map(|r| r.name.clone()));
            }
        }
        seen
    }

    /// Whether two roles may not share a node: either lists the other in `conflicts`, one
    /// provides the other, or both provide the same name.
    pub fn conflict(&self, a: &RoleInfo, b: &RoleInfo) -> bool {
        a.conflicts.iter().any(|c| b.satisfies(c))
            || b.conflicts.iter().any(|c| a.satisfies(c))
            || a.provides.contains(&b.name)
            || b.provides.contains(&a.name)
            || a.provides.iter().any(|p| b.provides.contains(p))
    }

    /// A dependency cycle among the roles `role` can pull in, named in order and closed
    /// (`a -> b -> a`), if there is one.
    pub fn cycle_from(&self, role: &str) -> Option<Vec<String>> {
        let mut graph = DiGraph::<&str, ()>::new();
        let mut index = HashMap::new();
        let mut pending = vec![role.to_string()];
        let mut seen = BTreeSet::new();
        while let Some(name) = pending.pop() {
            if !seen.insert(name.clone()) {
                continue;
            }
            let Some(info) = self.roles.get(&name) else {
                continue;
            };
            let from = *index
                .entry(info.name.as_str())
                .or_insert_with(|| graph.add_node(info.name.as_str()));
            for wanted in self.wanted_parents(info) {
                for parent in self.candidates(&wanted) {
                    let to = *index
                        .entry(parent.name.as_str())
                        .or_insert_with(|| graph.add_node(parent.name.as_str()));
                    // edge child -> parent: "wants"
                    graph.update_edge(from, to, ());
                    pending.push(parent.name.clone());
                }
            }
        }
        let scc = tarjan_scc(&graph)
            .into_iter()
            .find(|c| c.len() > 1 || c.iter().any(|&n| graph.contains_edge(n, n)))?;
        // The shortest way from the component's smallest name back to itself, trying names
        // in order: a closed cycle, the same on every call.
        let members: BTreeSet<_> = scc.iter().copied().collect();
        let start = *scc.iter().min_by_key(|&&n| graph[n])?;
        let mut came_from = HashMap::new();
        let mut queue = VecDeque::from([start]);
        let last = 'search: loop {
            let current = queue.pop_front()?;
            let mut next: Vec<_> = graph
                .neighbors(current)
                .filter(|n| members.contains(n))
                .collect();
            next.sort_by_key(|&n| graph[n]);
            next.dedup();
            for n in next {
                if n == start {
                    break 'search current;
                }
                if let Entry::Vacant(entry) = came_from.entry(n) {
                    entry.insert(current);
                    queue.push_back(n);
                }
            }
        };
        let mut path = vec![last];
        while let Some(&previous) = came_from.get(path.last()?) {
            path.push(previous);
        }
        let mut cycle: Vec<String> = vec![graph[start].to_string()];
        cycle.extend(
            path.iter()
                .rev()
                .filter(|&&n| n != start)
                .map(|&n| graph[n].to_string()),
        );
        cycle.push(graph[start].to_string());
        Some(cycle)
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;

    /// A role on an active `test` jig with the given requires.
    pub fn role(id: i64, name: &str, requires: &[&str]) -> RoleInfo {
        RoleInfo {
            id,
            name: name.into(),
            jig: "test".into(),
            jig_active: true,
            jig_client_role: None,
            implicit: false,
            cluster: false,
            is_abstract: false,
            destructive: false,
            requires: requires.iter().map(|s| s.to_string()).collect(),
            provides: vec![],
            conflicts: vec![],
            wants_attribs: vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{fixtures::role, *};

    #[test]
    fn wanted_parents_include_client_role_and_attrib_owners() {
        let mut r = role(1, "web", &["db"]);
        r.jig_client_role = Some("agent".into());
        r.wants_attribs = vec!["db-port".into()];
        let catalog = RoleCatalog::new(
            [r.clone(), role(2, "db", &[]), role(3, "cache", &[])],
            HashMap::from([("db-port".into(), "cache".into())]),
        );
        assert_eq!(catalog.wanted_parents(&r), vec!["db", "agent", "cache"]);
    }

    #[test]
    fn conflicts_cover_lists_and_provides() {
        let mut a = role(1, "a", &[]);
        let mut b = role(2, "b", &[]);
        let catalog = RoleCatalog::default();
        assert!(!catalog.conflict(&a, &b));
        a.conflicts = vec!["b".into()];
        assert!(catalog.conflict(&a, &b) && catalog.conflict(&b, &a));
        a.conflicts.clear();
        a.provides = vec!["sql".into()];
        b.provides = vec!["sql".into()];
        assert!(catalog.conflict(&a, &b));
        b.provides = vec!["a".into()];
        assert!(catalog.conflict(&a, &b));
    }

    #[test]
    fn cycles_are_named_through_providers() {
        let mut provider = role(3, "c", &["a"]);
        provider.provides = vec!["svc".into()];
        let catalog = RoleCatalog::new(
            [
                role(1, "a", &["b"]),
                role(2, "b", &["svc"]),
                provider,
                role(4, "d", &["a"]),
            ],
            HashMap::new(),
        );
        assert_eq!(
            catalog.cycle_from("d"),
            Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
        );
        let acyclic = RoleCatalog::new([role(1, "a", &["b"]), role(2, "b", &[])], HashMap::new());
        assert_eq!(acyclic.cycle_from("a"), None);
    }

    #[test]
    fn a_cycle_entered_through_a_side_loop_is_still_named_closed() {
        // a -> b, b -> {c, d}, c -> b, d -> a: walking by smallest name from `a` reaches
        // `c`, whose only way on is back to `b`, not to `a`.
        let catalog = RoleCatalog::new(
            [
                role(1, "a", &["b"]),
                role(2, "b", &["c", "d"]),
                role(3, "c", &["b"]),
                role(4, "d", &["a"]),
            ],
            HashMap::new(),
        );
        assert_eq!(
            catalog.cycle_from("a"),
            Some(vec!["a".into(), "b".into(), "d".into(), "a".into()])
        );
        let mut selfish = role(5, "e", &[]);
        selfish.provides = vec!["svc".into()];
        selfish.requires = vec!["svc".into()];
        let catalog = RoleCatalog::new([selfish], HashMap::new());
        assert_eq!(catalog.cycle_from("e"), Some(vec!["e".into(), "e".into()]));
    }
}
