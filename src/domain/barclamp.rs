//! Barclamps: the document format (SEMANTICS.md §1), its validation against what the
//! database already holds, and the plan of what an import changes. Pure: no SQL, no files.
//!
//! The flow is `document::parse` (text → [`BarclampDoc`]) then [`plan`] (documents + the
//! [`StoredContent`] of stored jigs, roles and attribs → an [`ImportPlan`] of validated
//! [`Barclamp`]s), collecting every [`Problem`] instead of stopping at the first.

mod build;
mod checks;
mod cycles;
mod document;
mod import;
mod stored;
mod world;

use std::{collections::BTreeSet, fmt, str::FromStr};

use serde::{Deserialize, Serialize};

pub use build::check_file_name;
pub use document::{AttribDoc, BarclampDoc, BarclampMeta, JigDoc, RoleDoc, parse};
pub use import::{
    Change, ImportPlan, PlannedBarclamp, Removed, RemovedItem, RoleInUse, SourcedDoc, plan,
};
pub use stored::{StoredAttrib, StoredBarclamp, StoredContent, StoredJig, StoredRole};

/// A role flag (SEMANTICS.md §1 and §3). Any other word in `flags` is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Flag {
    /// A parent of this role must live on the same node as its child.
    Implicit,
    /// Bound to the first admin node at bootstrap.
    Bootstrap,
    /// Bound to every newly discovered node.
    Discovery,
    /// Children depend on every noderole of this role in the deployment.
    Cluster,
    /// Runs once: after its first success the jig is skipped.
    Destructive,
    /// Cannot be bound; exists to be required or provided.
    Abstract,
    /// Marks a point in a node's life (e.g. "OS installed").
    Milestone,
    /// Manages the node's power.
    Powersave,
    /// Provides a service to other nodes.
    Service,
}

impl Flag {
    pub const ALL: [Flag; 9] = [
        Flag::Implicit,
        Flag::Bootstrap,
        Flag::Discovery,
        Flag::Cluster,
        Flag::Destructive,
        Flag::Abstract,
        Flag::Milestone,
        Flag::Powersave,
        Flag::Service,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Flag::Implicit => "implicit",
            Flag::Bootstrap => "bootstrap",
            Flag::Discovery => "discovery",
            Flag::Cluster => "cluster",
            Flag::Destructive => "destructive",
            Flag::Abstract => "abstract",
            Flag::Milestone => "milestone",
            Flag::Powersave => "powersave",
            Flag::Service => "service",
        }
    }
}

impl FromStr for Flag {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Flag::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| {
                let known: Vec<&str> = Flag::ALL.iter().map(|f| f.as_str()).collect();
                format!("unknown flag `{s}` (known flags: {})", known.join(" "))
            })
    }
}

impl fmt::Display for Flag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The set of flags of a role.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flags(BTreeSet<Flag>);

impl Flags {
    pub fn has(&self, flag: Flag) -> bool {
        self.0.contains(&flag)
    }
    pub fn iter(&self) -> impl Iterator<Item = Flag> + '_ {
        self.0.iter().copied()
    }
}

impl FromIterator<Flag> for Flags {
    fn from_iter<I: IntoIterator<Item = Flag>>(iter: I) -> Self {
        Flags(iter.into_iter().collect())
    }
}

/// True for the names of barclamps, jigs, roles and attribs: `[a-z0-9][a-z0-9_-]*`.
pub fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// True for attrib maps: slash-separated keys such as `test/delay`, each key made of
/// `[A-Za-z0-9_-]`.
pub fn is_valid_map(map: &str) -> bool {
    !map.is_empty()
        && map.split('/').all(|key| {
            !key.is_empty()
                && key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        })
}

/// A validated barclamp, ready to be stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Barclamp {
    pub name: String,
    pub parent: Option<String>,
    pub description: String,
    /// Where it came from: a file path, `shipped:barclamps/<name>.yml`, or `api`.
    pub source: String,
    pub jigs: Vec<Jig>,
    pub roles: Vec<Role>,
    /// The normalized document (defaults filled in, flags in canonical order).
    pub document: serde_json::Value,
    /// SHA-256 (hex) of the canonical form of `document`.
    pub content_hash: String,
}

impl Barclamp {
    pub fn attrib_count(&self) -> usize {
        self.roles.iter().map(|r| r.attribs.len()).sum()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Jig {
    pub name: String,
    pub description: String,
    /// A role every role on this jig requires (SEMANTICS.md §3).
    pub client_role: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Role {
    pub name: String,
    pub jig: String,
    pub description: String,
    pub flags: Flags,
    pub requires: Vec<String>,
    pub provides: Vec<String>,
    pub conflicts: Vec<String>,
    pub wants_attribs: Vec<String>,
    pub timeout_secs: Option<i32>,
    pub template: serde_json::Map<String, serde_json::Value>,
    pub attribs: Vec<Attrib>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Attrib {
    pub name: String,
    /// Slash-separated path inside the role's data, e.g. `test/delay`.
    pub map: String,
    pub default: Option<serde_json::Value>,
    pub description: String,
}

/// What a problem is about. Serializes as `{"kind": "role", "name": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "kind", content = "name", rename_all = "lowercase")]
pub enum Subject {
    /// The file as a whole (syntax, structure).
    Document,
    Barclamp(String),
    Jig(String),
    Role(String),
}

/// One reason a barclamp is refused: which file, what in it, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub source: String,
    pub subject: Subject,
    pub reason: String,
}

impl Problem {
    pub fn new(source: &str, subject: Subject, reason: impl Into<String>) -> Self {
        Problem {
            source: source.to_owned(),
            subject,
            reason: reason.into(),
        }
    }

    /// The role the problem is about, if it is about a role.
    pub fn role(&self) -> Option<&str> {
        match &self.subject {
            Subject::Role(name) => Some(name),
            _ => None,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.subject {
            Subject::Document => write!(f, "{}: {}", self.source, self.reason),
            Subject::Barclamp(name) => {
                write!(f, "{}: barclamp {name}: {}", self.source, self.reason)
            }
            Subject::Jig(name) => write!(f, "{}: jig {name}: {}", self.source, self.reason),
            Subject::Role(name) => write!(f, "{}: role {name}: {}", self.source, self.reason),
        }
    }
}

/// Every problem found in one import; never empty. Serializes as a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problems(Vec<Problem>);

impl Problems {
    /// `None` when there is nothing to report.
    pub fn from_vec(problems: Vec<Problem>) -> Option<Self> {
        (!problems.is_empty()).then_some(Problems(problems))
    }
    pub fn one(problem: Problem) -> Self {
        Problems(vec![problem])
    }
    pub fn as_slice(&self) -> &[Problem] {
        &self.0
    }
    pub fn into_vec(self) -> Vec<Problem> {
        self.0
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_slice() {
            [one] => write!(f, "barclamp refused: {one}"),
            many => {
                write!(f, "barclamps refused ({} problems):", many.len())?;
                for p in many {
                    write!(f, "\n  {p}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for Problems {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_lower_case_words() {
        for ok in ["core", "test-client", "a", "0day", "x_y-z9"] {
            assert!(is_valid_name(ok), "{ok}");
        }
        for bad in ["", "Core", "-a", "_a", "a b", "a.b", "a/b", "é"] {
            assert!(!is_valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn maps_are_slash_separated_keys() {
        for ok in ["test/delay", "a", "crowbar/access/keys", "A_b-1/c"] {
            assert!(is_valid_map(ok), "{ok}");
        }
        for bad in ["", "/a", "a/", "a//b", "a.b", "a b/c", "a/b/"] {
            assert!(!is_valid_map(bad), "{bad}");
        }
    }

    #[test]
    fn flags_parse_by_exact_name() {
        for f in Flag::ALL {
            assert_eq!(f.as_str().parse::<Flag>(), Ok(f));
        }
        let err = "Implicit".parse::<Flag>().unwrap_err();
        assert!(err.contains("unknown flag `Implicit`"), "{err}");
    }

    #[test]
    fn one_problem_reads_as_one_line() {
        let p = Problem::new("x.yml", Subject::Role("r".into()), "bad");
        assert_eq!(p.to_string(), "x.yml: role r: bad");
        let all = Problems::from_vec(vec![p.clone()]).unwrap();
        assert_eq!(all.to_string(), "barclamp refused: x.yml: role r: bad");
        assert_eq!(
            serde_json::to_value(&all).unwrap(),
            serde_json::json!([{"source": "x.yml", "subject": {"kind": "role", "name": "r"}, "reason": "bad"}])
        );
        let two = Problems::from_vec(vec![p.clone(), p]).unwrap();
        assert!(
            two.to_string()
                .starts_with("barclamps refused (2 problems):\n  x.yml")
        );
        assert!(Problems::from_vec(vec![]).is_none());
    }
}
