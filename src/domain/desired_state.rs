//! Desired-state documents (SEMANTICS.md §4): what a script sends for a deployment and how
//! it is checked, and the waves (by dependency) in which the noderoles a plan would run go.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// A deployment's desired state as scripts send it (API.md "Desired-state documents").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Document {
    /// The snapshot sequence the script started from; `null` before the first.
    #[serde(default, deserialize_with = "super::number::whole_or_null")]
    pub base: Option<i32>,
    #[serde(default)]
    #[schema(schema_with = role_entries)]
    pub roles: BTreeMap<String, RoleEntry>,
    #[serde(default)]
    pub bindings: Vec<Binding>,
    /// Commit (default) or leave the result as the deployment's proposal.
    #[serde(default = "yes")]
    pub commit: bool,
}

/// Role names (keys without a NUL, like every string) to their entries.
fn role_entries() -> utoipa::openapi::schema::Schema {
    use utoipa::{
        PartialSchema,
        openapi::schema::{ObjectBuilder, Type},
    };
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property_names(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some("^[^\\u0000]*$")),
        ))
        .additional_properties(Some(RoleEntry::schema()))
        .into()
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleEntry {
    #[serde(default)]
    #[schema(schema_with = super::data::object_or_null_schema)]
    pub data: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Binding {
    pub node: String,
    pub role: String,
    #[serde(default)]
    #[schema(schema_with = super::data::object_or_null_schema)]
    pub data: Option<Value>,
}

impl Document {
    /// The snapshot content this document describes, in the canonical form snapshots use
    /// (absent data is `{}`, bindings sorted by node then role).
    pub fn content(&self) -> Value {
        let roles: serde_json::Map<String, Value> = self
            .roles
            .iter()
            .map(|(name, entry)| {
                (
                    name.clone(),
                    json!({"data": entry.data.clone().unwrap_or_else(|| json!({}))}),
                )
            })
            .collect();
        let mut bindings: Vec<&Binding> = self.bindings.iter().collect();
        bindings.sort_by(|a, b| (&a.node, &a.role).cmp(&(&b.node, &b.role)));
        let bindings: Vec<Value> = bindings
            .into_iter()
            .map(|b| {
                json!({"node": b.node, "role": b.role,
                       "data": b.data.clone().unwrap_or_else(|| json!({}))})
            })
            .collect();
        json!({"roles": roles, "bindings": bindings})
    }

    /// A document that recreates a snapshot's content.
    pub fn from_content(content: &Value, base: Option<i32>, commit: bool) -> Option<Document> {
        let mut doc: Document = serde_json::from_value(json!({
            "roles": content.get("roles")?,
            "bindings": content.get("bindings")?,
        }))
        .ok()?;
        doc.base = base;
        doc.commit = commit;
        Some(doc)
    }

    /// Problems a script can fix: duplicate bindings, non-object data.
    pub fn validate(&self) -> Result<(), String> {
        let mut seen = HashSet::new();
        for b in &self.bindings {
            if !seen.insert((&b.node, &b.role)) {
                return Err(format!("{} is bound to {} twice", b.role, b.node));
            }
            if b.data.as_ref().is_some_and(|d| !d.is_object()) {
                return Err(format!(
                    "data of {} on {} must be an object",
                    b.role, b.node
                ));
            }
        }
        for (name, entry) in &self.roles {
            if entry.data.as_ref().is_some_and(|d| !d.is_object()) {
                return Err(format!("data of role {name} must be an object"));
            }
        }
        Ok(())
    }
}

/// Groups `to_run` into waves by dependency: a noderole is in the wave after the latest wave
/// of its parents that also run. `parents` maps a noderole to its parents (any).
pub fn waves(to_run: &[i64], parents: &HashMap<i64, Vec<i64>>) -> Vec<Vec<i64>> {
    let set: HashSet<i64> = to_run.iter().copied().collect();
    let mut level: HashMap<i64, usize> = HashMap::new();
    fn depth(
        id: i64,
        set: &HashSet<i64>,
        parents: &HashMap<i64, Vec<i64>>,
        level: &mut HashMap<i64, usize>,
        guard: usize,
    ) -> usize {
        if let Some(&l) = level.get(&id) {
            return l;
        }
        let l = if guard > set.len() {
            0 // a cycle cannot be bound; stay total anyway
        } else {
            parents
                .get(&id)
                .into_iter()
                .flatten()
                .filter(|p| set.contains(p))
                .map(|&p| depth(p, set, parents, level, guard + 1) + 1)
                .max()
                .unwrap_or(0)
        };
        level.insert(id, l);
        l
    }
    let mut out: Vec<Vec<i64>> = Vec::new();
    let mut sorted = to_run.to_vec();
    sorted.sort_unstable();
    for id in sorted {
        let l = depth(id, &set, parents, &mut level, 0);
        if out.len() <= l {
            out.resize(l + 1, Vec::new());
        }
        out[l].push(id);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waves_follow_dependencies_within_the_set() {
        // 1 -> 2 -> 3, 4 independent, 5 has an ACTIVE parent (9) outside the set
        let parents = HashMap::from([(2, vec![1]), (3, vec![2]), (5, vec![9])]);
        assert_eq!(
            waves(&[3, 1, 2, 4, 5], &parents),
            vec![vec![1, 4, 5], vec![2], vec![3]]
        );
        assert!(waves(&[], &parents).is_empty());
    }

    #[test]
    fn content_is_canonical() {
        let doc: Document = serde_json::from_value(json!({
            "base": 3,
            "roles": {"test-server": {"data": {}}, "test-client": {}},
            "bindings": [{"node": "n2", "role": "b"}, {"node": "n1", "role": "a", "data": {"x": 1}}]
        }))
        .unwrap();
        assert!(doc.commit);
        assert_eq!(
            doc.content(),
            json!({"roles": {"test-client": {"data": {}}, "test-server": {"data": {}}},
                   "bindings": [{"node": "n1", "role": "a", "data": {"x": 1}},
                                {"node": "n2", "role": "b", "data": {}}]})
        );
        let back = Document::from_content(&doc.content(), Some(4), false).unwrap();
        assert_eq!(back.content(), doc.content());
        assert_eq!(back.base, Some(4));
    }

    #[test]
    fn duplicates_and_bad_data_are_refused() {
        let doc: Document = serde_json::from_value(json!({
            "bindings": [{"node": "n1", "role": "a"}, {"node": "n1", "role": "a"}]
        }))
        .unwrap();
        assert!(doc.validate().is_err());
        let doc: Document =
            serde_json::from_value(json!({"bindings": [{"node": "n1", "role": "a", "data": 3}]}))
                .unwrap();
        assert!(doc.validate().is_err());
        assert!(serde_json::from_value::<Document>(json!({"bogus": 1})).is_err());
    }
}
