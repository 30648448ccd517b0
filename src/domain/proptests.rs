//! Property tests of the role graph rules and the binding planner (SEMANTICS.md §3) over
//! random catalogs: acyclic ones built so that every role wants only earlier roles, and
//! free-form ones that may contain cycles.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use proptest::prelude::*;

use super::{
    bind::{BindError, BindPlan, BindWorld, ExistingNodeRole, NodeRoleRef, plan_bind},
    role_catalog::{RoleCatalog, RoleInfo},
};

const NODE: i64 = 1;
const SYSTEM: i64 = 1;
const DEPLOYMENT: i64 = 2;
const SERVICES: [&str; 3] = ["s0", "s1", "s2"];

/// The random choices one role is built from; indexes are taken modulo what is available.
#[derive(Debug, Clone)]
struct RawRole {
    /// 0..=6 the `test` jig, 7..=8 the `agent` jig (client role `r0`), 9 the inactive `off`.
    jig: u8,
    implicit: bool,
    cluster: bool,
    is_abstract: bool,
    requires: Vec<u8>,
    provides: Vec<u8>,
    conflicts: Vec<u8>,
    wants_attribs: Vec<u8>,
}

fn raw_role() -> impl Strategy<Value = RawRole> {
    (
        0u8..10,
        prop::bool::weighted(0.4),
        prop::bool::weighted(0.25),
        prop::bool::weighted(0.08),
        prop::collection::vec(any::<u8>(), 0..3),
        prop::collection::vec(any::<u8>(), 0..2),
        prop::collection::vec(any::<u8>(), 0..2),
        prop::collection::vec(any::<u8>(), 0..2),
    )
        .prop_map(
            |(jig, implicit, cluster, is_abstract, requires, provides, conflicts, wants)| {
                RawRole {
                    jig,
                    implicit,
                    cluster,
                    is_abstract,
                    requires,
                    provides,
                    // conflicts are rarer than requires
                    conflicts: conflicts.into_iter().filter(|c| c % 3 == 0).collect(),
                    wants_attribs: wants,
                }
            },
        )
}

fn role_name(i: usize) -> String {
    format!("r{i}")
}

fn base_role(i: usize, raw: &RawRole) -> RoleInfo {
    let (jig, jig_active, client) = match raw.jig {
        7 | 8 if i > 0 => ("agent", true, Some(role_name(0))),
        9 => ("off", false, None),
        _ => ("test", true, None),
    };
    RoleInfo {
        id: i as i64 + 1,
        name: role_name(i),
        jig: jig.into(),
        jig_active,
        jig_client_role: client,
        implicit: raw.implicit,
        cluster: raw.cluster,
        is_abstract: raw.is_abstract,
        destructive: false,
        requires: vec![],
        provides: vec![],
        conflicts: vec![],
        wants_attribs: vec![],
    }
}

/// Attrib `a<j>` belongs to role `r<j>`.
fn attrib_owners(n: usize) -> HashMap<String, String> {
    (0..n).map(|j| (format!("a{j}"), role_name(j))).collect()
}

fn push_unique(list: &mut Vec<String>, name: String) {
    if !list.contains(&name) {
        list.push(name);
    }
}

/// An acyclic catalog: role `i` wants only names whose every candidate is an earlier role.
/// A name, once wanted, is never provided by a later role.
fn dag_catalog(raws: &[RawRole]) -> RoleCatalog {
    let n = raws.len();
    // `r0` may be the `agent` jig's client role: nobody may provide it.
    let mut wanted: BTreeSet<String> = BTreeSet::from([role_name(0)]);
    let mut roles = Vec::with_capacity(n);
    for (i, raw) in raws.iter().enumerate() {
        let mut role = base_role(i, raw);
        let pool: Vec<String> = SERVICES
            .iter()
            .map(|s| s.to_string())
            .chain((0..i).map(role_name))
            .collect();
        for p in &raw.provides {
            let name = pool[*p as usize % pool.len()].clone();
            if !wanted.contains(&name) {
                push_unique(&mut role.provides, name);
            }
        }
        for r in &raw.requires {
            // mostly earlier roles; now and then a service, which may have no provider
            let name = if r % 8 == 0 {
                SERVICES[*r as usize % SERVICES.len()].to_string()
            } else if i > 0 {
                role_name(*r as usize % i)
            } else {
                continue;
            };
            if !role.provides.contains(&name) {
                wanted.insert(name.clone());
                push_unique(&mut role.requires, name);
            }
        }
        for c in &raw.conflicts {
            let all: Vec<String> = SERVICES
                .iter()
                .map(|s| s.to_string())
                .chain((0..n).map(role_name))
                .collect();
            push_unique(&mut role.conflicts, all[*c as usize % all.len()].clone());
        }
        if i > 0 {
            for a in &raw.wants_attribs {
                let j = *a as usize % i;
                if !role.provides.contains(&role_name(j)) {
                    wanted.insert(role_name(j));
                    push_unique(&mut role.wants_attribs, format!("a{j}"));
                }
            }
        }
        roles.push(role);
    }
    RoleCatalog::new(roles, attrib_owners(n))
}

/// A catalog whose requires and provides point anywhere: it may contain cycles.
fn free_catalog(raws: &[RawRole]) -> RoleCatalog {
    let n = raws.len();
    let pool: Vec<String> = SERVICES
        .iter()
        .map(|s| s.to_string())
        .chain((0..n).map(role_name))
        .collect();
    let roles = raws.iter().enumerate().map(|(i, raw)| {
        let mut role = base_role(i, raw);
        for p in &raw.provides {
            push_unique(&mut role.provides, pool[*p as usize % pool.len()].clone());
        }
        for r in &raw.requires {
            push_unique(&mut role.requires, pool[*r as usize % pool.len()].clone());
        }
        for a in &raw.wants_attribs {
            push_unique(&mut role.wants_attribs, format!("a{}", *a as usize % n));
        }
        role
    });
    RoleCatalog::new(roles, attrib_owners(n))
}

/// Role-level "wants" edges: `a -> b` when `b` can fill a name `a` wants.
fn wants_graph(catalog: &RoleCatalog) -> BTreeMap<String, BTreeSet<String>> {
    catalog
        .roles()
        .map(|role| {
            let parents = catalog
                .wanted_parents(role)
                .iter()
                .flat_map(|w| catalog.candidates(w))
                .map(|r| r.name.clone())
                .collect();
            (role.name.clone(), parents)
        })
        .collect()
}

/// Whether a cycle is reachable from `start` (depth-first search with colours).
fn reaches_cycle(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> bool {
    fn visit<'g>(
        graph: &'g BTreeMap<String, BTreeSet<String>>,
        node: &'g str,
        colour: &mut HashMap<&'g str, bool>,
    ) -> bool {
        match colour.get(node) {
            Some(true) => return true, // on the stack: a back edge
            Some(false) => return false,
            None => {}
        }
        colour.insert(node, true);
        let found = graph
            .get(node)
            .into_iter()
            .flatten()
            .any(|next| visit(graph, next, colour));
        colour.insert(node, false);
        found
    }
    visit(graph, start, &mut HashMap::new())
}

/// Random noderoles: (role index, node 1..=3, deployment 1..=3, cohort).
type RawExisting = Vec<(u8, u8, u8, u8)>;

fn raw_existing() -> impl Strategy<Value = (RawExisting, Vec<u8>)> {
    (
        prop::collection::vec(
            (
                any::<u8>(),
                prop_oneof![1 => Just(NODE as u8), 3 => 2u8..=3],
                1u8..=3,
                0u8..4,
            ),
            0..6,
        ),
        prop::collection::vec(any::<u8>(), 0..8),
    )
}

fn world(catalog: RoleCatalog, raw: &RawExisting, children: &[u8]) -> BindWorld {
    let n = catalog.roles().count();
    let mut seen = BTreeSet::new();
    let noderoles: Vec<ExistingNodeRole> = raw
        .iter()
        .filter(|(r, node, ..)| seen.insert((*r as usize % n, *node)))
        .enumerate()
        .map(|(k, (r, node, d, cohort))| ExistingNodeRole {
            id: 100 + k as i64,
            role: role_name(*r as usize % n),
            node_id: *node as i64,
            deployment_id: *d as i64,
            cohort: *cohort as i32,
        })
        .collect();
    let mut cluster_children: HashMap<i64, Vec<i64>> = HashMap::new();
    if !noderoles.is_empty() {
        for pair in children.chunks(2) {
            let parent = &noderoles[pair[0] as usize % noderoles.len()];
            let child = &noderoles[*pair.get(1).unwrap_or(&0) as usize % noderoles.len()];
            let is_cluster = catalog.role(&parent.role).is_some_and(|r| r.cluster);
            if is_cluster && parent.id != child.id {
                cluster_children
                    .entry(parent.id)
                    .or_default()
                    .push(child.id);
            }
        }
    }
    BindWorld {
        catalog,
        node_id: NODE,
        deployment_chain: vec![DEPLOYMENT, SYSTEM],
        noderoles,
        cluster_children,
    }
}

/// What binding should create, written as a plain depth-first walk of §3.2 with the
/// refusals of §3 checked over the final set: `Ok(roles created, parents first)`, or
/// `Err(())` when the binding must be refused.
fn expected_creations(world: &BindWorld, role: &str) -> Result<Vec<String>, ()> {
    let catalog = &world.catalog;
    let on_node: Vec<&str> = world
        .noderoles
        .iter()
        .filter(|nr| nr.node_id == world.node_id)
        .map(|nr| nr.role.as_str())
        .collect();
    if on_node.contains(&role) {
        return Err(());
    }
    fn walk(world: &BindWorld, on_node: &[&str], role: &str, created: &mut Vec<String>) -> bool {
        let catalog = &world.catalog;
        let Some(info) = catalog.role(role) else {
            return false;
        };
        if info.is_abstract || !info.jig_active {
            return false;
        }
        for wanted in catalog.wanted_parents(info) {
            let fills = |name: &str| catalog.role(name).is_some_and(|r| r.satisfies(&wanted));
            if created.iter().any(|c| fills(c)) || on_node.iter().any(|r| fills(r)) {
                continue;
            }
            let implicit = catalog.role(&wanted).is_some_and(|r| r.implicit);
            let shared = world
                .noderoles
                .iter()
                .any(|nr| world.deployment_chain.contains(&nr.deployment_id) && fills(&nr.role));
            if !implicit && shared {
                continue;
            }
            if !walk(world, on_node, &wanted, created) {
                return false;
            }
        }
        created.push(role.to_string());
        true
    }
    let mut created = Vec::new();
    if !walk(world, &on_node, role, &mut created) {
        return Err(());
    }
    let info = |name: &str| catalog.role(name).expect("created roles exist");
    for (i, new) in created.iter().enumerate() {
        let others = on_node
            .iter()
            .copied()
            .chain(created[..i].iter().map(String::as_str));
        for other in others {
            if other != new && catalog.conflict(info(new), info(other)) {
                return Err(());
            }
        }
    }
    Ok(created)
}

fn describe(world: &BindWorld) -> String {
    let roles: Vec<String> = world
        .catalog
        .roles()
        .map(|r| {
            format!(
                "{}{}{}{}{} jig={} requires={:?} provides={:?} conflicts={:?} attribs={:?}",
                r.name,
                if r.implicit { " implicit" } else { "" },
                if r.cluster { " cluster" } else { "" },
                if r.is_abstract { " abstract" } else { "" },
                if r.jig_active { "" } else { " inactive" },
                r.jig,
                r.requires,
                r.provides,
                r.conflicts,
                r.wants_attribs
            )
        })
        .collect();
    let noderoles: Vec<String> = world
        .noderoles
        .iter()
        .map(|nr| {
            format!(
                "#{} {} node={} dep={} cohort={}",
                nr.id, nr.role, nr.node_id, nr.deployment_id, nr.cohort
            )
        })
        .collect();
    format!(
        "roles:\n  {}\nnoderoles:\n  {}\ncluster children: {:?}",
        roles.join("\n  "),
        noderoles.join("\n  "),
        world.cluster_children
    )
}

/// Every structural promise of a successful plan (§3.2–3.5).
fn check_plan(world: &BindWorld, role: &str, plan: &BindPlan) -> Result<(), String> {
    let catalog = &world.catalog;
    let existing = |id: i64| {
        world
            .noderoles
            .iter()
            .find(|nr| nr.id == id)
            .ok_or(format!("edge names unknown noderole {id}"))
    };
    let role_of = |r: NodeRoleRef| -> Result<String, String> {
        Ok(match r {
            NodeRoleRef::New(i) => plan.create.get(i).ok_or("bad index")?.role.clone(),
            NodeRoleRef::Existing(id) => existing(id)?.role.clone(),
        })
    };
    let on_node = |r: NodeRoleRef| -> Result<bool, String> {
        Ok(match r {
            NodeRoleRef::New(_) => true,
            NodeRoleRef::Existing(id) => existing(id)?.node_id == world.node_id,
        })
    };
    let cohort_of = |r: NodeRoleRef| -> Result<i32, String> {
        Ok(match r {
            NodeRoleRef::New(i) => plan.create[i].cohort,
            NodeRoleRef::Existing(id) => existing(id)?.cohort,
        })
    };
    let target = plan.create.last().ok_or("a plan creates the bound role")?;
    if target.role != role {
        return Err(format!("the bound role is not last: {:?}", plan.create));
    }
    let edges: std::collections::HashSet<(NodeRoleRef, NodeRoleRef)> =
        plan.edges.iter().copied().collect();
    if edges.len() != plan.edges.len() {
        return Err(format!("duplicate edges: {:?}", plan.edges));
    }
    // no duplicate role on the node
    let mut on_n: BTreeSet<&str> = world
        .noderoles
        .iter()
        .filter(|nr| nr.node_id == world.node_id)
        .map(|nr| nr.role.as_str())
        .collect();
    for new in &plan.create {
        if !on_n.insert(new.role.as_str()) {
            return Err(format!("{} would be on the node twice", new.role));
        }
        let info = catalog.role(&new.role).ok_or("created an unknown role")?;
        if info.is_abstract || !info.jig_active {
            return Err(format!("created abstract or inactive {}", new.role));
        }
        if catalog.role(&new.role).map(|r| r.id) != Some(new.role_id) {
            return Err(format!("wrong role id for {}", new.role));
        }
    }
    // no two conflicting roles share the node
    let names: Vec<&str> = on_n.iter().copied().collect();
    for new in &plan.create {
        for other in &names {
            let (a, b) = (catalog.role(&new.role), catalog.role(other));
            if let (Some(a), Some(b)) = (a, b)
                && a.name != b.name
                && catalog.conflict(a, b)
            {
                return Err(format!("{} and {} conflict on the node", a.name, b.name));
            }
        }
    }
    for (p, c) in &plan.edges {
        match (p, c) {
            // parents before children
            (NodeRoleRef::New(i), NodeRoleRef::New(j)) if i >= j => {
                return Err(format!("parent #{i} comes after child #{j}"));
            }
            (_, NodeRoleRef::Existing(child)) => {
                // only a new cluster peer adopts existing children
                let NodeRoleRef::New(i) = p else {
                    return Err("an edge between existing noderoles".into());
                };
                let peer_role = &plan.create[*i].role;
                let adoptable = world.noderoles.iter().any(|peer| {
                    &peer.role == peer_role
                        && peer.deployment_id == DEPLOYMENT
                        && world
                            .cluster_children
                            .get(&peer.id)
                            .is_some_and(|c| c.contains(child))
                });
                if !adoptable || !plan.adopted.contains(child) {
                    return Err(format!("#{i} adopts {child}, not a child of its peers"));
                }
            }
            _ => {}
        }
    }
    for (j, new) in plan.create.iter().enumerate() {
        let me = NodeRoleRef::New(j);
        let parents: Vec<NodeRoleRef> = plan
            .edges
            .iter()
            .filter(|(_, c)| *c == me)
            .map(|(p, _)| *p)
            .collect();
        // cohort = 1 + max(parent cohorts), 0 without parents
        let mut cohort = 0;
        for p in &parents {
            cohort = cohort.max(cohort_of(*p)? + 1);
        }
        if new.cohort != cohort {
            return Err(format!(
                "{} has cohort {}, want {cohort}",
                new.role, new.cohort
            ));
        }
        let info = catalog.role(&new.role).expect("checked above");
        for wanted in catalog.wanted_parents(info) {
            let fills = |name: &str| catalog.role(name).is_some_and(|r| r.satisfies(&wanted));
            let mut filling = Vec::new();
            for p in &parents {
                if fills(&role_of(*p)?) {
                    filling.push(*p);
                }
            }
            if filling.is_empty() {
                return Err(format!("{} wants {wanted}: no parent fills it", new.role));
            }
            // a cluster parent brings all its peers: those in its deployment (D for one
            // this plan creates)
            for p in &filling {
                let (role, deployment) = match p {
                    NodeRoleRef::Existing(id) => {
                        let found = existing(*id)?;
                        (found.role.clone(), found.deployment_id)
                    }
                    NodeRoleRef::New(i) => (plan.create[*i].role.clone(), DEPLOYMENT),
                };
                if catalog.role(&role).is_some_and(|r| r.cluster) {
                    for peer in world
                        .noderoles
                        .iter()
                        .filter(|nr| nr.role == role && nr.deployment_id == deployment)
                    {
                        if !parents.contains(&NodeRoleRef::Existing(peer.id)) {
                            return Err(format!(
                                "{} has cluster parent {role} but not its peer {}",
                                new.role, peer.id
                            ));
                        }
                    }
                }
            }
            let implicit = catalog.role(&wanted).is_some_and(|r| r.implicit);
            // (a provider this plan creates for a later want of the same role may land on
            // the node after this want was resolved elsewhere: §3.2 goes want by want)
            let any_on_node = world
                .noderoles
                .iter()
                .any(|nr| nr.node_id == world.node_id && fills(&nr.role));
            let mut local = false;
            for p in &filling {
                local |= on_node(*p)?;
            }
            if (implicit || any_on_node) && !local {
                return Err(format!(
                    "{} wants {wanted}: its parent must be on the node",
                    new.role
                ));
            }
            if !local {
                // shared from the nearest deployment of the chain that has one
                let depth_of = |d: i64| world.deployment_chain.iter().position(|c| *c == d);
                let nearest = world
                    .noderoles
                    .iter()
                    .filter(|nr| fills(&nr.role))
                    .filter_map(|nr| depth_of(nr.deployment_id))
                    .min();
                let mut used = None::<usize>;
                for p in &filling {
                    let NodeRoleRef::Existing(id) = p else {
                        continue;
                    };
                    let found = existing(*id)?;
                    let depth = depth_of(found.deployment_id)
                        .ok_or(format!("{} found outside the chain", found.id))?;
                    used = Some(used.map_or(depth, |u| u.min(depth)));
                }
                if used != nearest {
                    return Err(format!(
                        "{wanted} was taken from chain depth {used:?}, nearest is {nearest:?}"
                    ));
                }
            }
        }
    }
    Ok(())
}

/// A refusal names roles that really are abstract, inactive, conflicting or unresolved.
fn check_refusal(world: &BindWorld, error: &BindError) -> Result<(), String> {
    let catalog = &world.catalog;
    match error {
        BindError::AbstractRole { role } => catalog
            .role(role)
            .filter(|r| r.is_abstract)
            .map(|_| ())
            .ok_or(format!("{role} is not abstract")),
        BindError::JigInactive { role, .. } => catalog
            .role(role)
            .filter(|r| !r.jig_active)
            .map(|_| ())
            .ok_or(format!("{role}'s jig is active")),
        BindError::Conflict { role, other } => match (catalog.role(role), catalog.role(other)) {
            (Some(a), Some(b)) if catalog.conflict(a, b) => Ok(()),
            _ => Err(format!("{role} does not conflict with {other}")),
        },
        BindError::Unresolved { wanted, .. } => {
            let fills = |name: &str| catalog.role(name).is_some_and(|r| r.satisfies(wanted));
            let creatable = catalog.role(wanted).is_some_and(|r| !r.is_abstract);
            let on_node = world
                .noderoles
                .iter()
                .any(|nr| nr.node_id == world.node_id && fills(&nr.role));
            if creatable || on_node {
                Err(format!("{wanted} could be resolved"))
            } else {
                Ok(())
            }
        }
        BindError::AlreadyBound { .. } => Ok(()),
        other => Err(format!("unexpected refusal of an acyclic catalog: {other}")),
    }
}

proptest! {
    // Failures print their minimal input; regressions are kept as named tests below.
    #![proptest_config(ProptestConfig {
        // PROPTEST_CASES runs more (or fewer) cases for a deeper search
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(1024),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn plans_over_acyclic_catalogs_keep_every_promise(
        raws in prop::collection::vec(raw_role(), 1..9),
        (existing, children) in raw_existing(),
        target in any::<u8>(),
    ) {
        let catalog = dag_catalog(&raws);
        let world = world(catalog, &existing, &children);
        let role = role_name(target as usize % raws.len());
        let ctx = describe(&world);
        prop_assert_eq!(world.catalog.cycle_from(&role), None, "{}", ctx);
        let planned = plan_bind(&world, &role);
        prop_assert_eq!(&planned, &plan_bind(&world, &role), "plans are deterministic");
        let expected = expected_creations(&world, &role);
        match (&planned, &expected) {
            (Ok(plan), Ok(roles)) => {
                let created: Vec<&str> = plan.create.iter().map(|c| c.role.as_str()).collect();
                prop_assert_eq!(created, roles.iter().map(String::as_str).collect::<Vec<_>>(),
                    "binding {} creates other roles than §3.2 says\n{}", role, ctx);
                if let Err(e) = check_plan(&world, &role, plan) {
                    prop_assert!(false, "binding {}: {}\nplan: {:?}\n{}", role, e, plan, ctx);
                }
            }
            (Err(error), Err(())) => {
                if let Err(e) = check_refusal(&world, error) {
                    prop_assert!(false, "binding {}: {} ({})\n{}", role, e, error, ctx);
                }
            }
            (Ok(plan), Err(())) => prop_assert!(false,
                "binding {} must be refused but was planned: {:?}\n{}", role, plan, ctx),
            (Err(error), Ok(roles)) => prop_assert!(false,
                "binding {} was refused ({}) but should create {:?}\n{}", role, error, roles, ctx),
        }
    }

    #[test]
    fn cycles_are_found_exactly_when_reachable_and_named_closed(
        raws in prop::collection::vec(raw_role(), 1..7),
        target in any::<u8>(),
    ) {
        let catalog = free_catalog(&raws);
        let graph = wants_graph(&catalog);
        let role = role_name(target as usize % raws.len());
        let ctx = describe(&world(catalog.clone(), &vec![], &[]));
        let cycle = catalog.cycle_from(&role);
        prop_assert_eq!(cycle.is_some(), reaches_cycle(&graph, &role),
            "cycle_from({}) = {:?}\n{}", role, cycle, ctx);
        if let Some(cycle) = cycle {
            prop_assert!(cycle.len() >= 2, "{:?}", cycle);
            prop_assert_eq!(cycle.first(), cycle.last(), "the cycle does not close: {:?}\n{}", cycle, ctx);
            let members: BTreeSet<&String> = cycle[1..].iter().collect();
            prop_assert_eq!(members.len(), cycle.len() - 1, "a name repeats: {:?}", cycle);
            for pair in cycle.windows(2) {
                prop_assert!(graph[&pair[0]].contains(&pair[1]),
                    "{} does not want {} in {:?}\n{}", pair[0], pair[1], cycle, ctx);
            }
            let closure = catalog.closure(&role);
            prop_assert!(closure.contains(&cycle[0]), "{:?} is not reachable from {}", cycle, role);
            let world = world(catalog, &vec![], &[]);
            prop_assert_eq!(plan_bind(&world, &role), Err(BindError::Cycle { cycle }));
        }
    }
}

/// The generator reaches every outcome the properties talk about: plans that create and
/// adopt, and each kind of refusal. (`--nocapture` prints the spread.)
#[test]
fn generator_covers_every_outcome() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::default();
    let strategy = (
        prop::collection::vec(raw_role(), 1..9),
        raw_existing(),
        any::<u8>(),
    );
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..5000 {
        let (raws, (existing, children), target) =
            strategy.new_tree(&mut runner).unwrap().current();
        let world = world(dag_catalog(&raws), &existing, &children);
        let role = role_name(target as usize % raws.len());
        let key = match plan_bind(&world, &role) {
            Ok(plan) => format!(
                "ok creates {} edges {} adopted {}",
                plan.create.len().min(4),
                plan.edges.len().min(4),
                plan.adopted.len().min(1)
            ),
            Err(BindError::Unresolved { wanted, .. }) => format!("Unresolved {}", &wanted[..1]),
            Err(e) => format!("{e:?}")
                .split([' ', '('])
                .next()
                .unwrap()
                .to_string(),
        };
        *counts.entry(key).or_default() += 1;
    }
    eprintln!("{counts:#?}");
    let seen = |prefix: &str| counts.keys().any(|k| k.starts_with(prefix));
    for outcome in [
        "ok",
        "AbstractRole",
        "JigInactive",
        "Conflict",
        "Unresolved",
    ] {
        assert!(
            seen(outcome),
            "the generator never produced {outcome}: {counts:#?}"
        );
    }
    assert!(
        counts
            .iter()
            .filter(|(k, _)| k.starts_with("ok"))
            .map(|(_, n)| n)
            .sum::<usize>()
            > 500,
        "most cases should plan something: {counts:#?}"
    );
}
