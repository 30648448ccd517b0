//! Checks of one document on its own, turning it into a [`Barclamp`].

use std::collections::BTreeSet;

use super::{
    Attrib, Barclamp, BarclampDoc, Flag, Flags, Jig, Problem, Role, SourcedDoc, Subject,
    document::{content_hash, normalized},
    is_valid_map, is_valid_name,
};

/// A file `<stem>.yml` must hold barclamp `<stem>`, so a directory cannot hide one barclamp
/// under another's name.
pub fn check_file_name(source: &str, stem: &str, doc: &BarclampDoc) -> Option<Problem> {
    (doc.barclamp.name != stem).then(|| {
        Problem::new(
            source,
            Subject::Barclamp(doc.barclamp.name.clone()),
            format!(
                "the file must be named after its barclamp ({}.yml, not {stem}.yml)",
                doc.barclamp.name
            ),
        )
    })
}

/// Checks one document on its own and turns it into a [`Barclamp`].
pub(super) fn build(sourced: &SourcedDoc, problems: &mut Vec<Problem>) -> Barclamp {
    let source = sourced.source.as_str();
    let doc = &sourced.doc;
    let name = doc.barclamp.name.clone();
    let mut report = |subject: Subject, reason: String| {
        problems.push(Problem::new(source, subject, reason));
    };

    if !is_valid_name(&name) {
        report(
            Subject::Barclamp(name.clone()),
            bad_name("barclamp name", &name),
        );
    }
    if let Some(parent) = &doc.barclamp.parent {
        if !is_valid_name(parent) {
            report(Subject::Barclamp(name.clone()), bad_name("parent", parent));
        } else if *parent == name {
            report(
                Subject::Barclamp(name.clone()),
                "a barclamp cannot be its own parent".into(),
            );
        }
    }

    let mut jigs = Vec::new();
    let mut jig_names = BTreeSet::new();
    for jig in &doc.jigs {
        let subject = || Subject::Jig(jig.name.clone());
        if !is_valid_name(&jig.name) {
            report(subject(), bad_name("jig name", &jig.name));
        }
        if !jig_names.insert(jig.name.as_str()) {
            report(subject(), "declared twice in this document".into());
            continue;
        }
        if let Some(client) = &jig.client_role
            && !is_valid_name(client)
        {
            report(subject(), bad_name("client_role", client));
        }
        jigs.push(Jig {
            name: jig.name.clone(),
            description: jig.description.clone(),
            client_role: jig.client_role.clone(),
        });
    }

    let mut roles = Vec::new();
    let mut role_names = BTreeSet::new();
    let mut attrib_names = BTreeSet::new();
    for role in &doc.roles {
        let subject = || Subject::Role(role.name.clone());
        if !is_valid_name(&role.name) {
            report(subject(), bad_name("role name", &role.name));
        }
        if !role_names.insert(role.name.as_str()) {
            report(subject(), "declared twice in this document".into());
            continue;
        }
        if !is_valid_name(&role.jig) {
            report(subject(), bad_name("jig", &role.jig));
        }
        let mut flags = Vec::new();
        for word in &role.flags {
            match word.parse::<Flag>() {
                Ok(flag) => flags.push(flag),
                Err(reason) => report(subject(), reason),
            }
        }
        let mut names = |what: &str, list: &[String]| -> Vec<String> {
            let mut seen = BTreeSet::new();
            let mut kept = Vec::new();
            for item in list {
                if !is_valid_name(item) {
                    report(subject(), bad_name(what, item));
                } else if seen.insert(item.as_str()) {
                    kept.push(item.clone());
                }
            }
            kept
        };
        let requires = names("required role", &role.requires);
        let provides = names("provided name", &role.provides);
        let conflicts = names("conflicting role", &role.conflicts);
        let wants_attribs = names("wanted attrib", &role.wants_attribs);

        let timeout_secs = match role.timeout {
            None => None,
            Some(t) if t > 0 && t <= i64::from(i32::MAX) => i32::try_from(t).ok(),
            Some(t) => {
                report(
                    subject(),
                    format!("timeout must be a positive number of seconds, not {t}"),
                );
                None
            }
        };
        let template = match &role.template {
            None => serde_json::Map::new(),
            Some(serde_json::Value::Object(map)) => map.clone(),
            Some(other) => {
                report(
                    subject(),
                    format!("template must be a mapping, not {}", json_kind(other)),
                );
                serde_json::Map::new()
            }
        };

        let mut attribs = Vec::new();
        for attrib in &role.attribs {
            if !is_valid_name(&attrib.name) {
                report(subject(), bad_name("attrib name", &attrib.name));
            }
            if !attrib_names.insert(attrib.name.as_str()) {
                report(
                    subject(),
                    format!("attrib {} is declared twice in this document", attrib.name),
                );
                continue;
            }
            if !is_valid_map(&attrib.map) {
                report(
                    subject(),
                    format!(
                        "attrib {}: map `{}` is not a slash-separated path of keys \
                         (like test/delay)",
                        attrib.name, attrib.map
                    ),
                );
            }
            attribs.push(Attrib {
                name: attrib.name.clone(),
                map: attrib.map.clone(),
                default: attrib.default.clone(),
                description: attrib.description.clone(),
            });
        }

        roles.push(Role {
            name: role.name.clone(),
            jig: role.jig.clone(),
            description: role.description.clone(),
            flags: flags.into_iter().collect::<Flags>(),
            requires,
            provides,
            conflicts,
            wants_attribs,
            timeout_secs,
            template,
            attribs,
        });
    }

    let mut barclamp = Barclamp {
        name,
        parent: doc.barclamp.parent.clone(),
        description: doc.barclamp.description.clone(),
        source: source.to_owned(),
        jigs,
        roles,
        document: serde_json::Value::Null,
        content_hash: String::new(),
    };
    barclamp.document = normalized(&barclamp);
    barclamp.content_hash = content_hash(&barclamp.document);
    barclamp
}

fn bad_name(what: &str, name: &str) -> String {
    format!(
        "{what} `{name}` is not a valid name (lower-case letters, digits, `-` and `_`, starting with a letter or digit)"
    )
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "a mapping",
    }
}
