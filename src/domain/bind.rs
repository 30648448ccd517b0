//! Binding a role to a node builds the noderole graph (SEMANTICS.md §3).
//!
//! [`plan_bind`] is pure: the database layer loads a [`BindWorld`] (the catalog and the
//! noderoles that could serve as parents), asks for a [`BindPlan`], and writes it in the
//! same transaction — or writes nothing when binding is refused.

use std::collections::HashMap;

use super::role_catalog::{RoleCatalog, RoleInfo};

/// An existing noderole that binding may reuse as a parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingNodeRole {
    pub id: i64,
    pub role: String,
    pub node_id: i64,
    pub deployment_id: i64,
    pub cohort: i32,
}

/// What the database holds that binding role R to node N in deployment D depends on.
#[derive(Debug, Clone, Default)]
pub struct BindWorld {
    pub catalog: RoleCatalog,
    pub node_id: i64,
    /// D, then its parent, and so on up to `system`.
    pub deployment_chain: Vec<i64>,
    /// Noderoles on N (any deployment) and noderoles in the chain's deployments whose
    /// roles R may want. Order does not matter.
    pub noderoles: Vec<ExistingNodeRole>,
    /// Children of existing noderoles of cluster roles (for adoption by a new peer).
    pub cluster_children: HashMap<i64, Vec<i64>>,
}

/// A noderole in a plan: one that exists, or the n-th one the plan creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeRoleRef {
    Existing(i64),
    New(usize),
}

/// A noderole the plan creates on N in D (always PROPOSED, §3.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewNodeRole {
    pub role_id: i64,
    pub role: String,
    pub cohort: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BindPlan {
    /// Parents before children; the bound role is last.
    pub create: Vec<NewNodeRole>,
    /// parent -> child
    pub edges: Vec<(NodeRoleRef, NodeRoleRef)>,
    /// Existing noderoles that gained a parent (their cohorts may need raising).
    pub adopted: Vec<i64>,
}

impl BindPlan {
    /// Index of the noderole that was asked for.
    pub fn target(&self) -> usize {
        self.create.len() - 1
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BindError {
    #[error("no role named `{0}`")]
    UnknownRole(String),
    #[error("role `{role}` is abstract: bind a role that provides it instead")]
    AbstractRole { role: String },
    #[error("role `{role}` is already bound to this node")]
    AlreadyBound { role: String },
    #[error("role `{role}` requires `{wanted}`, which no role provides{}", hint(.providers))]
    Unresolved {
        role: String,
        wanted: String,
        providers: Vec<String>,
    },
    #[error("role `{role}` conflicts with `{other}` on this node")]
    Conflict { role: String, other: String },
    #[error("role `{role}` uses jig `{jig}`, which is inactive")]
    JigInactive { role: String, jig: String },
    #[error("binding would create a dependency cycle: {}", .cycle.join(" -> "))]
    Cycle { cycle: Vec<String> },
}

fn hint(providers: &[String]) -> String {
    if providers.is_empty() {
        String::new()
    } else {
        format!(
            " here yet (bind one of {} first)",
            providers
                .iter()
                .map(|p| format!("`{p}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

impl BindError {
    /// The roles involved, for the API's error details.
    pub fn roles(&self) -> Vec<String> {
        match self {
            BindError::UnknownRole(r)
            | BindError::AbstractRole { role: r }
            | BindError::AlreadyBound { role: r } => vec![r.clone()],
            BindError::Unresolved { role, wanted, .. } => vec![role.clone(), wanted.clone()],
            BindError::Conflict { role, other } => vec![role.clone(), other.clone()],
            BindError::JigInactive { role, .. } => vec![role.clone()],
            BindError::Cycle { cycle } => cycle.clone(),
        }
    }
}

/// Plans binding `role` to the world's node in the first deployment of its chain.
pub fn plan_bind(world: &BindWorld, role: &str) -> Result<BindPlan, BindError> {
    let info = world
        .catalog
        .role(role)
        .ok_or_else(|| BindError::UnknownRole(role.to_string()))?;
    if let Some(cycle) = world.catalog.cycle_from(role) {
        return Err(BindError::Cycle { cycle });
    }
    if world
        .noderoles
        .iter()
        .any(|nr| nr.node_id == world.node_id && nr.role == role)
    {
        return Err(BindError::AlreadyBound {
            role: role.to_string(),
        });
    }
    let mut planner = Planner {
        world,
        plan: BindPlan::default(),
        created_by_role: HashMap::new(),
    };
    planner.create(info)?;
    Ok(planner.plan)
}

struct Planner<'w> {
    world: &'w BindWorld,
    plan: BindPlan,
    created_by_role: HashMap<String, usize>,
}

impl<'w> Planner<'w> {
    fn cohort_of(&self, r: NodeRoleRef) -> i32 {
        match r {
            NodeRoleRef::New(i) => self.plan.create[i].cohort,
            NodeRoleRef::Existing(id) => self
                .world
                .noderoles
                .iter()
                .find(|nr| nr.id == id)
                .map_or(0, |nr| nr.cohort),
        }
    }

    /// Creates a noderole of `role` on N, after resolving (and creating) its parents.
    fn create(&mut self, role: &'w RoleInfo) -> Result<NodeRoleRef, BindError> {
        if role.is_abstract {
            return Err(BindError::AbstractRole {
                role: role.name.clone(),
            });
        }
        if !role.jig_active {
            return Err(BindError::JigInactive {
                role: role.name.clone(),
                jig: role.jig.clone(),
            });
        }
        self.check_conflicts(role)?;
        let mut parents: Vec<NodeRoleRef> = Vec::new();
        for wanted in self.world.catalog.wanted_parents(role) {
            for parent in self.resolve(role, &wanted)? {
                if !parents.contains(&parent) {
                    parents.push(parent);
                }
            }
        }
        // Again with the ancestors this plan just created: they land on N too.
        self.check_conflicts(role)?;
        let cohort = parents
            .iter()
            .map(|&p| self.cohort_of(p) + 1)
            .max()
            .unwrap_or(0);
        let index = self.plan.create.len();
        self.plan.create.push(NewNodeRole {
            role_id: role.id,
            role: role.name.clone(),
            cohort,
        });
        self.created_by_role.insert(role.name.clone(), index);
        let me = NodeRoleRef::New(index);
        for parent in parents {
            self.plan.edges.push((parent, me));
        }
        if role.cluster {
            self.adopt_peer_children(role, me);
        }
        Ok(me)
    }

    /// The parent noderoles that fill `wanted` for a child of role `child` on N (§3.2–3.3).
    fn resolve(&mut self, child: &RoleInfo, wanted: &str) -> Result<Vec<NodeRoleRef>, BindError> {
        let world = self.world;
        let node = world.node_id;
        // 1. on N: an existing noderole, or one this plan already created
        if let Some((name, &i)) = self.created_by_role.iter().find(|(name, _)| {
            world
                .catalog
                .role(name)
                .is_some_and(|r| r.satisfies(wanted))
        }) {
            let role = world.catalog.role(name).expect("created roles exist");
            return Ok(self.with_peers_in_d(NodeRoleRef::New(i), role));
        }
        let satisfies = |nr: &ExistingNodeRole| {
            world
                .catalog
                .role(&nr.role)
                .is_some_and(|r| r.satisfies(wanted))
        };
        let mut on_node: Vec<&ExistingNodeRole> = world
            .noderoles
            .iter()
            .filter(|nr| nr.node_id == node && satisfies(nr))
            .collect();
        on_node.sort_by_key(|nr| nr.id);
        if let Some(found) = on_node.first() {
            return Ok(self.with_cluster_peers(found));
        }
        let wanted_role = world.catalog.role(wanted);
        // 2. not implicit: anywhere in D, then up the tree
        if !wanted_role.is_some_and(|r| r.implicit) {
            for deployment in &world.deployment_chain {
                let mut found: Vec<&ExistingNodeRole> = world
                    .noderoles
                    .iter()
                    .filter(|nr| nr.deployment_id == *deployment && satisfies(nr))
                    .collect();
                found.sort_by_key(|nr| nr.id);
                if let Some(first) = found.first() {
                    return Ok(self.with_cluster_peers(first));
                }
            }
        }
        // 3. create it on N
        match wanted_role {
            Some(role) if !role.is_abstract => {
                let created = self.create(role)?;
                Ok(self.with_peers_in_d(created, role))
            }
            _ => Err(BindError::Unresolved {
                role: child.name.clone(),
                wanted: wanted.to_string(),
                providers: world
                    .catalog
                    .candidates(wanted)
                    .into_iter()
                    .filter(|r| !r.is_abstract)
                    .map(|r| r.name.clone())
                    .collect(),
            }),
        }
    }

    /// A found parent of a cluster role brings every peer of its role in its deployment.
    fn with_cluster_peers(&self, found: &ExistingNodeRole) -> Vec<NodeRoleRef> {
        let is_cluster = self
            .world
            .catalog
            .role(&found.role)
            .is_some_and(|r| r.cluster);
        if !is_cluster {
            return vec![NodeRoleRef::Existing(found.id)];
        }
        let mut peers: Vec<i64> = self
            .world
            .noderoles
            .iter()
            .filter(|nr| nr.role == found.role && nr.deployment_id == found.deployment_id)
            .map(|nr| nr.id)
            .collect();
        peers.sort();
        peers.into_iter().map(NodeRoleRef::Existing).collect()
    }

    /// A parent this plan creates in D brings, for a cluster role, its peers already in D.
    fn with_peers_in_d(&self, created: NodeRoleRef, role: &RoleInfo) -> Vec<NodeRoleRef> {
        let mut refs = vec![created];
        if role.cluster {
            let deployment = self.world.deployment_chain.first().copied();
            let mut peers: Vec<i64> = self
                .world
                .noderoles
                .iter()
                .filter(|nr| nr.role == role.name && Some(nr.deployment_id) == deployment)
                .map(|nr| nr.id)
                .collect();
            peers.sort();
            refs.extend(peers.into_iter().map(NodeRoleRef::Existing));
        }
        refs
    }

    /// A new noderole of a cluster role becomes a parent of its peers' children (§3.3).
    fn adopt_peer_children(&mut self, role: &RoleInfo, me: NodeRoleRef) {
        let deployment = self.world.deployment_chain.first().copied();
        let mut children: Vec<i64> = self
            .world
            .noderoles
            .iter()
            .filter(|nr| nr.role == role.name && Some(nr.deployment_id) == deployment)
            .flat_map(|peer| {
                self.world
                    .cluster_children
                    .get(&peer.id)
                    .cloned()
                    .unwrap_or_default()
            })
            .collect();
        children.sort();
        children.dedup();
        for child in children {
            self.plan.edges.push((me, NodeRoleRef::Existing(child)));
            self.plan.adopted.push(child);
        }
    }

    fn check_conflicts(&self, role: &RoleInfo) -> Result<(), BindError> {
        let catalog = &self.world.catalog;
        let on_node = self
            .world
            .noderoles
            .iter()
            .filter(|nr| nr.node_id == self.world.node_id)
            .map(|nr| nr.role.as_str())
            .chain(self.plan.create.iter().map(|c| c.role.as_str()));
        for other in on_node {
            if let Some(other_info) = catalog.role(other)
                && other_info.name != role.name
                && catalog.conflict(role, other_info)
            {
                return Err(BindError::Conflict {
                    role: role.name.clone(),
                    other: other.to_string(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::domain::role_catalog::fixtures::role;

    const N1: i64 = 1;
    const N2: i64 = 2;
    const SYSTEM: i64 = 1;
    const D: i64 = 2;

    /// The shipped `test` barclamp's shape.
    fn catalog() -> RoleCatalog {
        let mut library = role(3, "test-library", &[]);
        library.implicit = true;
        let mut client = role(4, "test-client", &["test-server", "test-library"]);
        client.implicit = true;
        let mut cluster = role(6, "test-cluster", &[]);
        cluster.cluster = true;
        RoleCatalog::new(
            [
                role(1, "test-admin", &[]),
                role(2, "test-server", &["test-admin"]),
                library,
                client,
                role(5, "test-client-client", &["test-client"]),
                cluster,
                role(7, "test-cluster-user", &["test-cluster"]),
            ],
            HashMap::new(),
        )
    }

    fn world(noderoles: Vec<ExistingNodeRole>) -> BindWorld {
        BindWorld {
            catalog: catalog(),
            node_id: N1,
            deployment_chain: vec![D, SYSTEM],
            noderoles,
            cluster_children: HashMap::new(),
        }
    }

    fn existing(
        id: i64,
        role: &str,
        node_id: i64,
        deployment_id: i64,
        cohort: i32,
    ) -> ExistingNodeRole {
        ExistingNodeRole {
            id,
            role: role.into(),
            node_id,
            deployment_id,
            cohort,
        }
    }

    fn roles(plan: &BindPlan) -> Vec<(&str, i32)> {
        plan.create
            .iter()
            .map(|c| (c.role.as_str(), c.cohort))
            .collect()
    }

    #[test]
    fn binding_on_an_empty_node_creates_the_whole_ancestry_in_order() {
        let plan = plan_bind(&world(vec![]), "test-client-client").unwrap();
        assert_eq!(
            roles(&plan),
            vec![
                ("test-admin", 0),
                ("test-server", 1),
                ("test-library", 0),
                ("test-client", 2),
                ("test-client-client", 3),
            ]
        );
        assert_eq!(plan.target(), 4);
        assert!(
            plan.edges
                .contains(&(NodeRoleRef::New(1), NodeRoleRef::New(3)))
        );
        assert!(
            plan.edges
                .contains(&(NodeRoleRef::New(2), NodeRoleRef::New(3)))
        );
    }

    #[test]
    fn non_implicit_parents_are_shared_up_the_tree_implicit_ones_are_local() {
        // a server on N2 in the system deployment, a library on N2 too
        let w = world(vec![
            existing(10, "test-admin", N2, SYSTEM, 0),
            existing(11, "test-server", N2, SYSTEM, 1),
            existing(12, "test-library", N2, SYSTEM, 0),
        ]);
        let plan = plan_bind(&w, "test-client").unwrap();
        assert_eq!(roles(&plan), vec![("test-library", 0), ("test-client", 2)]);
        assert!(
            plan.edges
                .contains(&(NodeRoleRef::Existing(11), NodeRoleRef::New(1)))
        );
        assert!(
            plan.edges
                .contains(&(NodeRoleRef::New(0), NodeRoleRef::New(1)))
        );
    }

    #[test]
    fn sibling_deployments_are_not_searched() {
        const SIBLING: i64 = 3;
        let w = world(vec![existing(10, "test-admin", N2, SIBLING, 0)]);
        let plan = plan_bind(&w, "test-server").unwrap();
        assert_eq!(roles(&plan), vec![("test-admin", 0), ("test-server", 1)]);
    }

    #[test]
    fn cluster_parents_bring_every_peer_and_new_peers_adopt_children() {
        let mut w = world(vec![
            existing(20, "test-cluster", N2, D, 0),
            existing(21, "test-cluster", 3, D, 0),
            existing(22, "test-cluster-user", N2, D, 1),
        ]);
        w.cluster_children = HashMap::from([(20, vec![22]), (21, vec![22])]);
        let plan = plan_bind(&w, "test-cluster-user").unwrap();
        assert_eq!(roles(&plan), vec![("test-cluster-user", 1)]);
        assert!(
            plan.edges
                .contains(&(NodeRoleRef::Existing(20), NodeRoleRef::New(0)))
        );
        assert!(
            plan.edges
                .contains(&(NodeRoleRef::Existing(21), NodeRoleRef::New(0)))
        );

        let plan = plan_bind(&w, "test-cluster").unwrap();
        assert_eq!(
            plan.edges,
            vec![(NodeRoleRef::New(0), NodeRoleRef::Existing(22))]
        );
        assert_eq!(plan.adopted, vec![22]);
    }

    #[test]
    fn a_role_conflicting_with_a_parent_it_would_create_is_refused() {
        let mut lib = role(1, "lib", &[]);
        lib.implicit = true;
        let mut app = role(2, "app", &["lib"]);
        app.conflicts = vec!["lib".into()];
        let w = BindWorld {
            catalog: RoleCatalog::new([lib, app], HashMap::new()),
            ..world(vec![])
        };
        assert_eq!(
            plan_bind(&w, "app"),
            Err(BindError::Conflict {
                role: "app".into(),
                other: "lib".into()
            })
        );
    }

    #[test]
    fn a_cluster_parent_created_on_the_node_brings_its_peers() {
        let mut c = catalog();
        let mut local = role(8, "local-cluster", &[]);
        local.cluster = true;
        local.implicit = true;
        c = RoleCatalog::new(
            c.roles()
                .cloned()
                .chain([local, role(9, "local-user", &["local-cluster"])]),
            HashMap::new(),
        );
        let w = BindWorld {
            catalog: c,
            ..world(vec![existing(40, "local-cluster", N2, D, 0)])
        };
        let plan = plan_bind(&w, "local-user").unwrap();
        assert_eq!(roles(&plan), vec![("local-cluster", 0), ("local-user", 1)]);
        assert!(
            plan.edges
                .contains(&(NodeRoleRef::New(0), NodeRoleRef::New(1)))
        );
        assert!(
            plan.edges
                .contains(&(NodeRoleRef::Existing(40), NodeRoleRef::New(1)))
        );
    }

    #[test]
    fn refusals_name_the_roles() {
        let w = world(vec![existing(1, "test-admin", N1, D, 0)]);
        assert_eq!(
            plan_bind(&w, "test-admin"),
            Err(BindError::AlreadyBound {
                role: "test-admin".into()
            })
        );
        assert_eq!(
            plan_bind(&w, "nope"),
            Err(BindError::UnknownRole("nope".into()))
        );

        let mut c = catalog();
        let mut a = role(20, "abstract-db", &[]);
        a.is_abstract = true;
        let mut pg = role(21, "postgres", &[]);
        pg.provides = vec!["abstract-db".into()];
        let mut mysql = role(22, "mysql", &[]);
        mysql.provides = vec!["abstract-db".into()];
        let mut off = role(23, "off", &[]);
        off.jig_active = false;
        let app = role(24, "app", &["abstract-db"]);
        c = RoleCatalog::new(
            c.roles().cloned().chain([a, pg, mysql, off, app]),
            HashMap::new(),
        );
        let w = BindWorld {
            catalog: c,
            ..world(vec![existing(30, "postgres", N1, D, 0)])
        };
        assert!(matches!(
            plan_bind(&w, "abstract-db"),
            Err(BindError::AbstractRole { .. })
        ));
        assert!(matches!(
            plan_bind(&w, "off"),
            Err(BindError::JigInactive { .. })
        ));
        assert_eq!(
            plan_bind(&w, "mysql"),
            Err(BindError::Conflict {
                role: "mysql".into(),
                other: "postgres".into()
            })
        );
        // the provider on the node fills the abstract require
        let plan = plan_bind(&w, "app").unwrap();
        assert_eq!(
            plan.edges,
            vec![(NodeRoleRef::Existing(30), NodeRoleRef::New(0))]
        );
        // without a provider bound, the require is unresolved and the providers are named
        let w = BindWorld {
            noderoles: vec![],
            ..w
        };
        let err = plan_bind(&w, "app").unwrap_err();
        assert!(err.to_string().contains("`mysql`, `postgres`"), "{err}");
    }
}
