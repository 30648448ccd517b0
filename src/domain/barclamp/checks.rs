//! Checks of a batch against the world it makes: ownership, parents, references, and what
//! stored roles still use.

use super::{
    Barclamp, Problem, StoredContent, Subject, is_valid_name,
    world::{Batch, World},
};

/// A name in the batch that the catalog holds for a barclamp outside the batch.
pub(super) fn check_ownership(
    catalog: &StoredContent,
    built: &[Barclamp],
    batch: &Batch,
    problems: &mut Vec<Problem>,
) {
    let foreign = |owner: &str| !batch.replaces(owner);
    for b in built {
        for jig in &b.jigs {
            if let Some(stored) = catalog.jigs.get(&jig.name)
                && foreign(&stored.barclamp)
            {
                problems.push(Problem::new(
                    &b.source,
                    Subject::Jig(jig.name.clone()),
                    format!(
                        "jig {} already belongs to barclamp {}",
                        jig.name, stored.barclamp
                    ),
                ));
            }
        }
        for role in &b.roles {
            if let Some(stored) = catalog.roles.get(&role.name)
                && foreign(&stored.barclamp)
            {
                problems.push(Problem::new(
                    &b.source,
                    Subject::Role(role.name.clone()),
                    format!(
                        "role {} already belongs to barclamp {}",
                        role.name, stored.barclamp
                    ),
                ));
            }
            for attrib in &role.attribs {
                if let Some(stored) = catalog.attribs.get(&attrib.name)
                    && foreign(&stored.barclamp)
                {
                    problems.push(Problem::new(
                        &b.source,
                        Subject::Role(role.name.clone()),
                        format!(
                            "attrib {} already belongs to barclamp {}",
                            attrib.name, stored.barclamp
                        ),
                    ));
                }
            }
        }
    }
}

/// Parents must exist (in the batch or stored) and must not form a cycle.
pub(super) fn check_parents(
    catalog: &StoredContent,
    built: &[Barclamp],
    batch: &Batch,
    problems: &mut Vec<Problem>,
) {
    let parent_of = |name: &str| -> Option<&str> {
        match batch.barclamps.get(name) {
            Some(&i) => built[i].parent.as_deref(),
            None => catalog.barclamps.get(name)?.parent.as_deref(),
        }
    };
    for (&name, &i) in &batch.barclamps {
        let b = &built[i];
        let Some(parent) = b.parent.as_deref() else {
            continue;
        };
        if parent == name {
            continue; // reported by `build`
        }
        if !batch.replaces(parent) && !catalog.barclamps.contains_key(parent) {
            problems.push(Problem::new(
                &b.source,
                Subject::Barclamp(name.to_owned()),
                format!(
                    "parent barclamp {parent} is unknown (not in this import nor already loaded)"
                ),
            ));
            continue;
        }
        // Walk up; a cycle is reported once, by its smallest member.
        let mut chain = vec![name];
        let mut at = parent;
        while chain.len() <= batch.barclamps.len() + catalog.barclamps.len() {
            if at == name {
                if chain.iter().all(|member| *member >= name) {
                    chain.push(name);
                    problems.push(Problem::new(
                        &b.source,
                        Subject::Barclamp(name.to_owned()),
                        format!("parent cycle: {}", chain.join(" -> ")),
                    ));
                }
                break;
            }
            chain.push(at);
            match parent_of(at) {
                Some(next) => at = next,
                None => break,
            }
        }
    }
}

/// Every jig, role and attrib the batch names must exist once the import is applied.
pub(super) fn check_references(built: &[Barclamp], world: &World, problems: &mut Vec<Problem>) {
    for b in built {
        for jig in &b.jigs {
            if let Some(client) = &jig.client_role
                && world.resolve(client).is_empty()
            {
                problems.push(Problem::new(
                    &b.source,
                    Subject::Jig(jig.name.clone()),
                    format!(
                        "client_role {client} is unknown (no role has this name or provides it)"
                    ),
                ));
            }
        }
        for role in &b.roles {
            let subject = || Subject::Role(role.name.clone());
            if is_valid_name(&role.jig) && !world.jigs.contains_key(role.jig.as_str()) {
                problems.push(Problem::new(
                    &b.source,
                    subject(),
                    format!(
                        "unknown jig {} (not declared in this document nor already loaded)",
                        role.jig
                    ),
                ));
            }
            for required in &role.requires {
                if world.resolve(required).is_empty() {
                    problems.push(Problem::new(
                        &b.source,
                        subject(),
                        format!(
                            "requires unknown role {required} (no role in this document or \
                             already loaded has this name or provides it)"
                        ),
                    ));
                }
            }
            for attrib in &role.wants_attribs {
                if !world.attribs.contains_key(attrib.as_str()) {
                    problems.push(Problem::new(
                        &b.source,
                        subject(),
                        format!("wants unknown attrib {attrib}"),
                    ));
                }
            }
        }
    }
}

/// Stored jigs and roles the import keeps must not lose what they use.
pub(super) fn check_outside_users(
    catalog: &StoredContent,
    built: &[Barclamp],
    batch: &Batch,
    world: &World,
    problems: &mut Vec<Problem>,
) {
    // The source of `owner` when it is a barclamp of the batch (whose entries it replaces).
    let dropped_by = |owner: &str| -> Option<&str> {
        batch
            .barclamps
            .get(owner)
            .map(|&i| built[i].source.as_str())
    };
    // The batch barclamp that stored (and now drops) role or provided name `name`.
    let role_dropper = |name: &str| -> Option<&str> {
        if let Some(stored) = catalog.roles.get(name) {
            return dropped_by(&stored.barclamp);
        }
        catalog
            .roles
            .values()
            .filter(|r| r.provides.iter().any(|p| p == name))
            .find_map(|r| dropped_by(&r.barclamp))
    };
    let mut report = |dropper: Option<&str>, subject: Subject, reason: String| {
        if let Some(source) = dropper {
            problems.push(Problem::new(source, subject, reason));
        }
    };

    for (&name, role) in &world.roles {
        if role.source.is_some() {
            continue;
        }
        if !world.jigs.contains_key(role.jig) {
            let dropper = catalog
                .jigs
                .get(role.jig)
                .and_then(|j| dropped_by(&j.barclamp));
            report(
                dropper,
                Subject::Jig(role.jig.to_owned()),
                format!(
                    "cannot remove jig {}: role {name} of barclamp {} uses it",
                    role.jig, role.owner
                ),
            );
        }
        for required in role.requires {
            if world.resolve(required).is_empty() {
                report(
                    role_dropper(required),
                    Subject::Role(required.clone()),
                    format!(
                        "cannot remove role {required}: role {name} of barclamp {} requires it",
                        role.owner
                    ),
                );
            }
        }
        for attrib in role.wants_attribs {
            if !world.attribs.contains_key(attrib.as_str())
                && let Some(stored) = catalog.attribs.get(attrib.as_str())
            {
                report(
                    dropped_by(&stored.barclamp),
                    Subject::Role(stored.role.clone().unwrap_or_else(|| attrib.clone())),
                    format!(
                        "cannot remove attrib {attrib}: role {name} of barclamp {} wants it",
                        role.owner
                    ),
                );
            }
        }
    }
    for (&name, jig) in &world.jigs {
        if jig.source.is_none()
            && let Some(client) = jig.client_role
            && world.resolve(client).is_empty()
        {
            report(
                role_dropper(client),
                Subject::Role(client.to_owned()),
                format!(
                    "cannot remove role {client}: it is the client role of jig {name} of barclamp {}",
                    jig.owner
                ),
            );
        }
    }
}
