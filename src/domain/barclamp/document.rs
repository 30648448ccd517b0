//! The barclamp document as written (YAML, or the same document as JSON), its parser, and
//! its normalized form and content hash.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Barclamp, Problem, Subject};

/// A barclamp file as written. Unknown keys are refused at every level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BarclampDoc {
    pub barclamp: BarclampMeta,
    #[serde(default)]
    pub jigs: Vec<JigDoc>,
    #[serde(default)]
    pub roles: Vec<RoleDoc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BarclampMeta {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JigDoc {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_role: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleDoc {
    pub name: String,
    pub jig: String,
    #[serde(default)]
    pub description: String,
    /// Words, checked against [`super::Flag`] by validation so that every unknown flag is
    /// reported together with its role.
    #[serde(default)]
    pub flags: Vec<String>,
    #[serde(default)]
    pub requires: Vec<String>,
    #[serde(default)]
    pub provides: Vec<String>,
    #[serde(default)]
    pub conflicts: Vec<String>,
    #[serde(default, rename = "wants-attribs", alias = "wants_attribs")]
    pub wants_attribs: Vec<String>,
    /// Seconds a run may take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
    /// The role's default data; must be a mapping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<serde_json::Value>,
    #[serde(default)]
    pub attribs: Vec<AttribDoc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttribDoc {
    pub name: String,
    pub map: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<serde_json::Value>,
    #[serde(default)]
    pub description: String,
}

/// Parses a barclamp document. Text that is a JSON object is read as JSON; anything else as
/// YAML. The error names `source`, the line and column, and the role when the mistake is
/// inside one.
pub fn parse(source: &str, text: &str) -> Result<BarclampDoc, Problem> {
    if text.trim().is_empty() {
        return Err(Problem::new(
            source,
            Subject::Document,
            "the document is empty",
        ));
    }
    if text.trim_start().starts_with('{') {
        match serde_json::from_str::<BarclampDoc>(text) {
            Ok(doc) => return Ok(doc),
            // A YAML flow mapping also starts with `{`: only valid JSON is judged as JSON.
            Err(e) if e.is_syntax() || e.is_eof() => {}
            Err(e) => {
                let message = e.to_string();
                let mark = format!(" at line {} column {}", e.line(), e.column());
                let reason = format!(
                    "line {} column {}: {}",
                    e.line(),
                    e.column(),
                    message.strip_suffix(&mark).unwrap_or(&message)
                );
                let role = serde_json::from_str::<serde_json::Value>(text)
                    .ok()
                    .and_then(|v| role_named_in(&v, &e.to_string()));
                return Err(problem_in(source, role, reason));
            }
        }
    }
    serde_yaml_ng::from_str::<BarclampDoc>(text).map_err(|e| {
        let reason = match e.location() {
            Some(at) => format!("line {} column {}: {}", at.line(), at.column(), bare(&e)),
            None => e.to_string(),
        };
        let role = match serde_yaml_ng::from_str::<serde_json::Value>(text) {
            Ok(v) => role_named_in(&v, &e.to_string()),
            Err(_) => e
                .location()
                .and_then(|at| role_before_line(text, at.line())),
        };
        problem_in(source, role, reason)
    })
}

fn problem_in(source: &str, role: Option<String>, reason: String) -> Problem {
    match role {
        Some(role) => Problem::new(source, Subject::Role(role), reason),
        None => Problem::new(source, Subject::Document, reason),
    }
}

/// The YAML error message without the location it reports separately, and without the
/// `roles[N]` path prefix (the role is named instead).
fn bare(e: &serde_yaml_ng::Error) -> String {
    let mut text = e.to_string();
    if let Some(at) = e.location() {
        let mark = format!(" at line {} column {}", at.line(), at.column());
        if let Some(i) = text.find(&mark) {
            text.replace_range(i..i + mark.len(), "");
        }
    }
    without_role_path(&text).to_owned()
}

/// `roles[2]: unknown field` → `unknown field`; `roles[2].attribs[0]: x` → `attribs[0]: x`.
fn without_role_path(message: &str) -> &str {
    let Some(rest) = message.strip_prefix("roles[") else {
        return message;
    };
    let Some(close) = rest.find(']') else {
        return message;
    };
    let rest = &rest[close + 1..];
    rest.strip_prefix(": ")
        .or_else(|| rest.strip_prefix('.'))
        .unwrap_or(message)
}

/// For a structural error inside `roles[N]` (serde_yaml_ng prefixes the path), the name of
/// that role, read from the same text parsed loosely.
fn role_named_in(value: &serde_json::Value, message: &str) -> Option<String> {
    let rest = message.strip_prefix("roles[")?;
    let index: usize = rest[..rest.find(']')?].parse().ok()?;
    value
        .get("roles")?
        .get(index)?
        .get("name")?
        .as_str()
        .map(str::to_owned)
}

/// For a syntax error at `line` (1-based) inside the `roles:` list, the name of the role item
/// that starts last before it: the `- name: X` (or `- {name: X`) at the list's own
/// indentation, so that attrib items further in are not mistaken for roles.
fn role_before_line(text: &str, line: usize) -> Option<String> {
    let lines: Vec<&str> = text.lines().take(line).collect();
    let start = lines.iter().rposition(|l| l.starts_with("roles:"))?;
    let mut found: Option<(usize, String)> = None;
    for l in &lines[start + 1..] {
        let indent = l.len() - l.trim_start().len();
        let Some(item) = l.trim_start().strip_prefix("- ") else {
            continue;
        };
        let item = item.trim_start().trim_start_matches('{').trim_start();
        let Some(name) = item.strip_prefix("name:") else {
            continue;
        };
        let name: String = name
            .trim_start()
            .chars()
            .take_while(|c| !matches!(c, ',' | '}' | '#') && !c.is_whitespace())
            .collect();
        let name = name.trim_matches(['"', '\'']).to_owned();
        match &found {
            Some((outer, _)) if indent > *outer => {}
            _ if name.is_empty() => {}
            _ => found = Some((indent, name)),
        }
    }
    found.map(|(_, name)| name)
}

/// Prefix of the hashed bytes: bump it when normalization changes, so that every stored
/// barclamp is rewritten once.
const NORMAL_FORM: &str = "crowbar-barclamp-v1\n";

/// The normalized document of a validated barclamp: the same format as written, with
/// defaults filled in, flags in canonical order and lists without repeats.
pub(super) fn normalized(barclamp: &Barclamp) -> serde_json::Value {
    let doc = BarclampDoc {
        barclamp: BarclampMeta {
            name: barclamp.name.clone(),
            parent: barclamp.parent.clone(),
            description: barclamp.description.clone(),
        },
        jigs: barclamp
            .jigs
            .iter()
            .map(|j| JigDoc {
                name: j.name.clone(),
                description: j.description.clone(),
                client_role: j.client_role.clone(),
            })
            .collect(),
        roles: barclamp
            .roles
            .iter()
            .map(|r| RoleDoc {
                name: r.name.clone(),
                jig: r.jig.clone(),
                description: r.description.clone(),
                flags: r.flags.iter().map(|f| f.as_str().to_owned()).collect(),
                requires: r.requires.clone(),
                provides: r.provides.clone(),
                conflicts: r.conflicts.clone(),
                wants_attribs: r.wants_attribs.clone(),
                timeout: r.timeout_secs.map(i64::from),
                template: Some(serde_json::Value::Object(r.template.clone())),
                attribs: r
                    .attribs
                    .iter()
                    .map(|a| AttribDoc {
                        name: a.name.clone(),
                        map: a.map.clone(),
                        default: a.default.clone(),
                        description: a.description.clone(),
                    })
                    .collect(),
            })
            .collect(),
    };
    serde_json::to_value(doc).unwrap_or(serde_json::Value::Null)
}

/// SHA-256 (hex) of the canonical JSON of `document`: object keys sorted at every level, no
/// insignificant whitespace. Key order and formatting of the source do not matter.
pub(super) fn content_hash(document: &serde_json::Value) -> String {
    let mut text = String::from(NORMAL_FORM);
    canonical(document, &mut text);
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn canonical(value: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                canonical(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEST_YAML: &str = r#"
barclamp: {name: test, parent: core, description: "simulation roles"}
jigs:
  - {name: test, description: "simulates work"}
roles:
  - name: test-client
    jig: test
    flags: [implicit]
    requires: [test-server, test-library]
    wants-attribs: []
    timeout: 300
    template: {test: {delay: 0}}
    attribs:
      - {name: test-client-delay, map: test/delay, default: 0, description: "seconds"}
"#;

    #[test]
    fn yaml_document_parses() {
        let doc = parse("test.yml", TEST_YAML).unwrap();
        assert_eq!(doc.barclamp.name, "test");
        assert_eq!(doc.barclamp.parent.as_deref(), Some("core"));
        let role = &doc.roles[0];
        assert_eq!(role.requires, ["test-server", "test-library"]);
        assert_eq!(role.timeout, Some(300));
        assert_eq!(role.attribs[0].map, "test/delay");
        assert_eq!(
            role.template,
            Some(serde_json::json!({"test": {"delay": 0}}))
        );
    }

    #[test]
    fn the_same_document_as_json_parses_the_same() {
        let yaml = parse("test.yml", TEST_YAML).unwrap();
        let json_text = serde_json::to_string_pretty(&yaml).unwrap();
        assert!(json_text.contains("wants-attribs"));
        assert_eq!(parse("api", &json_text).unwrap(), yaml);
    }

    #[test]
    fn yaml_flow_mapping_is_not_mistaken_for_json() {
        let doc = parse("x.yml", "{barclamp: {name: x}, roles: []}").unwrap();
        assert_eq!(doc.barclamp.name, "x");
    }

    #[test]
    fn syntax_errors_give_line_and_column() {
        let err = parse("bad.yml", "barclamp:\n  name: x\n roles: [\n").unwrap_err();
        assert_eq!(err.source, "bad.yml");
        assert_eq!(err.subject, Subject::Document);
        assert_eq!(
            err.reason.matches("line 3 column").count(),
            1,
            "{}",
            err.reason
        );

        let err = parse(
            "bad.json",
            "{\"barclamp\": {\"name\": \"x\"},\n \"roles\": [1,]}",
        )
        .unwrap_err();
        assert!(err.reason.contains("line 2"), "{}", err.reason);
    }

    #[test]
    fn unknown_keys_are_refused_and_name_the_role() {
        let text = "barclamp: {name: x}\nroles:\n  - {name: a, jig: noop}\n  - {name: b, jig: noop, flagz: []}\n";
        let err = parse("x.yml", text).unwrap_err();
        assert_eq!(err.role(), Some("b"), "{err}");
        assert!(
            err.reason.contains("unknown field `flagz`"),
            "{}",
            err.reason
        );
        assert!(err.reason.contains("line 4"), "{}", err.reason);

        let json =
            r#"{"barclamp": {"name": "x"}, "roles": [{"name": "a", "jig": "noop", "flagz": []}]}"#;
        let err = parse("api", json).unwrap_err();
        assert!(
            err.reason.contains("unknown field `flagz`"),
            "{}",
            err.reason
        );

        let err = parse("x.yml", "barclamp: {name: x, colour: red}\n").unwrap_err();
        assert!(
            err.reason.contains("unknown field `colour`"),
            "{}",
            err.reason
        );
    }

    #[test]
    fn syntax_errors_inside_a_role_name_it() {
        let text = "barclamp: {name: x}\nroles:\n  - name: a\n    jig: noop\n    attribs:\n      - {name: a-x, map: a/x}\n  - name: b\n    jig: noop\n    requires: [a\n    flags: []\n";
        let err = parse("x.yml", text).unwrap_err();
        assert_eq!(err.role(), Some("b"), "{err}");
        assert!(err.to_string().starts_with("x.yml: role b: line "), "{err}");

        let text = "barclamp: {name: x}\nroles:\n  - name: a\n    jig: noop\n    attribs:\n      - {name: a-x, map: a/x}\n    template: {a: [}\n";
        let err = parse("x.yml", text).unwrap_err();
        assert_eq!(err.role(), Some("a"), "{err}");

        let err = parse("x.yml", "barclamp: {name: x\nroles: []\n").unwrap_err();
        assert_eq!(err.subject, Subject::Document, "{err}");
        assert_eq!(err.reason.matches("line 2 column").count(), 1, "{err}");

        let text = "barclamp: {name: x}\nroles:\n  - name: a\n    jig: noop\n    attribs:\n      - {name: a-x, map: a/x, colour: red}\n";
        let err = parse("x.yml", text).unwrap_err();
        assert_eq!(err.role(), Some("a"), "{err}");
        assert!(
            err.reason.contains(": attribs[0]: unknown field `colour`"),
            "{err}"
        );
    }

    #[test]
    fn empty_documents_are_refused() {
        assert!(parse("e.yml", "  \n").unwrap_err().reason.contains("empty"));
    }

    #[test]
    fn canonical_form_ignores_key_order() {
        let a = serde_json::json!({"b": 1, "a": {"y": [1, 2], "x": "s"}});
        let b: serde_json::Value =
            serde_json::from_str(r#"{"a": {"x": "s", "y": [1, 2]}, "b": 1}"#).unwrap();
        assert_eq!(content_hash(&a), content_hash(&b));
        assert_ne!(content_hash(&a), content_hash(&serde_json::json!({"b": 2})));
        let mut s = String::new();
        canonical(&a, &mut s);
        assert_eq!(s, r#"{"a":{"x":"s","y":[1,2]},"b":1}"#);
    }
}
