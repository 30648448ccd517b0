//! The names a batch declares, and the world once it is applied: the catalog without the
//! entries of the batch's barclamps, plus the batch.

use std::collections::BTreeMap;

use super::{Barclamp, Problem, StoredContent, Subject};

/// The names a batch declares, with the first barclamp (index into `built`) declaring each.
pub(super) struct Batch<'a> {
    pub(super) barclamps: BTreeMap<&'a str, usize>,
    pub(super) jigs: BTreeMap<&'a str, usize>,
    pub(super) roles: BTreeMap<&'a str, usize>,
    pub(super) attribs: BTreeMap<&'a str, usize>,
}

impl<'a> Batch<'a> {
    pub(super) fn new(built: &'a [Barclamp], problems: &mut Vec<Problem>) -> Self {
        let mut batch = Batch {
            barclamps: BTreeMap::new(),
            jigs: BTreeMap::new(),
            roles: BTreeMap::new(),
            attribs: BTreeMap::new(),
        };
        for (i, b) in built.iter().enumerate() {
            if let Some(&first) = batch.barclamps.get(b.name.as_str()) {
                problems.push(Problem::new(
                    &b.source,
                    Subject::Barclamp(b.name.clone()),
                    format!(
                        "barclamp {} is also defined by {}",
                        b.name, built[first].source
                    ),
                ));
                continue;
            }
            batch.barclamps.insert(&b.name, i);
            for jig in &b.jigs {
                if let Some(&first) = batch.jigs.get(jig.name.as_str()) {
                    problems.push(Problem::new(
                        &b.source,
                        Subject::Jig(jig.name.clone()),
                        format!("also declared by barclamp {}", built[first].name),
                    ));
                } else {
                    batch.jigs.insert(&jig.name, i);
                }
            }
            for role in &b.roles {
                if let Some(&first) = batch.roles.get(role.name.as_str()) {
                    problems.push(Problem::new(
                        &b.source,
                        Subject::Role(role.name.clone()),
                        format!("also declared by barclamp {}", built[first].name),
                    ));
                } else {
                    batch.roles.insert(&role.name, i);
                }
                for attrib in &role.attribs {
                    if let Some(&first) = batch.attribs.get(attrib.name.as_str()) {
                        problems.push(Problem::new(
                            &b.source,
                            Subject::Role(role.name.clone()),
                            format!(
                                "attrib {} is also declared by barclamp {}",
                                attrib.name, built[first].name
                            ),
                        ));
                    } else {
                        batch.attribs.insert(&attrib.name, i);
                    }
                }
            }
        }
        batch
    }

    pub(super) fn replaces(&self, barclamp: &str) -> bool {
        self.barclamps.contains_key(barclamp)
    }
}

pub(super) struct WorldJig<'a> {
    pub(super) owner: &'a str,
    pub(super) client_role: Option<&'a str>,
    /// The batch file declaring it; `None` for stored jigs the import keeps.
    pub(super) source: Option<&'a str>,
}

pub(super) struct WorldRole<'a> {
    pub(super) owner: &'a str,
    pub(super) jig: &'a str,
    pub(super) requires: &'a [String],
    pub(super) wants_attribs: &'a [String],
    pub(super) source: Option<&'a str>,
}

/// Everything that exists once the import is applied.
pub(super) struct World<'a> {
    pub(super) jigs: BTreeMap<&'a str, WorldJig<'a>>,
    pub(super) roles: BTreeMap<&'a str, WorldRole<'a>>,
    /// attrib → the role owning it (if any)
    pub(super) attribs: BTreeMap<&'a str, Option<&'a str>>,
    /// provided name → roles providing it
    pub(super) providers: BTreeMap<&'a str, Vec<&'a str>>,
}

impl<'a> World<'a> {
    pub(super) fn new(
        catalog: &'a StoredContent,
        built: &'a [Barclamp],
        batch: &Batch<'a>,
    ) -> Self {
        let mut world = World {
            jigs: BTreeMap::new(),
            roles: BTreeMap::new(),
            attribs: BTreeMap::new(),
            providers: BTreeMap::new(),
        };
        for (name, jig) in &catalog.jigs {
            if !batch.replaces(&jig.barclamp) {
                world.jigs.insert(
                    name,
                    WorldJig {
                        owner: &jig.barclamp,
                        client_role: jig.client_role.as_deref(),
                        source: None,
                    },
                );
            }
        }
        for (name, role) in &catalog.roles {
            if !batch.replaces(&role.barclamp) {
                world.roles.insert(
                    name,
                    WorldRole {
                        owner: &role.barclamp,
                        jig: &role.jig,
                        requires: &role.requires,
                        wants_attribs: &role.wants_attribs,
                        source: None,
                    },
                );
                for provided in &role.provides {
                    world.providers.entry(provided).or_default().push(name);
                }
            }
        }
        for (name, attrib) in &catalog.attribs {
            if !batch.replaces(&attrib.barclamp) {
                world.attribs.insert(name, attrib.role.as_deref());
            }
        }
        for (i, b) in built.iter().enumerate() {
            if batch.barclamps.get(b.name.as_str()) != Some(&i) {
                continue; // a second definition of a barclamp: already reported
            }
            for jig in &b.jigs {
                world.jigs.entry(&jig.name).or_insert(WorldJig {
                    owner: &b.name,
                    client_role: jig.client_role.as_deref(),
                    source: Some(&b.source),
                });
            }
            for role in &b.roles {
                if world.roles.contains_key(role.name.as_str()) {
                    continue;
                }
                world.roles.insert(
                    &role.name,
                    WorldRole {
                        owner: &b.name,
                        jig: &role.jig,
                        requires: &role.requires,
                        wants_attribs: &role.wants_attribs,
                        source: Some(&b.source),
                    },
                );
                for provided in &role.provides {
                    world
                        .providers
                        .entry(provided)
                        .or_default()
                        .push(&role.name);
                }
                for attrib in &role.attribs {
                    world
                        .attribs
                        .entry(&attrib.name)
                        .or_insert(Some(&role.name));
                }
            }
        }
        world
    }

    /// The roles that satisfy a require of `name`: the role itself and its providers.
    pub(super) fn resolve(&self, name: &str) -> Vec<&'a str> {
        let mut found: Vec<&'a str> = Vec::new();
        if let Some((&role, _)) = self.roles.get_key_value(name) {
            found.push(role);
        }
        if let Some(providers) = self.providers.get(name) {
            found.extend(providers.iter().copied().filter(|p| *p != name));
        }
        found
    }

    /// Every parent a role wants (SEMANTICS.md §3): its requires, its jig's client role and
    /// the owners of the attribs it wants; each with the name it was asked for.
    pub(super) fn wanted_parents(&self, role_name: &str, role: &WorldRole<'a>) -> Vec<&'a str> {
        let mut wanted: Vec<&'a str> = role.requires.iter().map(String::as_str).collect();
        if let Some(client) = self.jigs.get(role.jig).and_then(|j| j.client_role)
            && client != role_name
        {
            wanted.push(client);
        }
        for attrib in role.wants_attribs {
            if let Some(Some(owner)) = self.attribs.get(attrib.as_str())
                && *owner != role_name
            {
                wanted.push(owner);
            }
        }
        wanted
    }
}
