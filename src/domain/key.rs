//! Addressing objects by numeric id or by name (API.md: "by id or by name").
//!
//! A leaf of its own: the HTTP edge parses keys, and every db module looks rows up by them.

/// `42` addresses by id, anything else by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    Id(i64),
    Name(String),
}

impl Key {
    pub fn parse(text: &str) -> Key {
        match text.parse::<i64>() {
            Ok(id) => Key::Id(id),
            Err(_) => Key::Name(text.to_string()),
        }
    }

    /// Binds as (`id`, `name`) for `WHERE id = $1 OR name = $2`-style lookups.
    pub fn parts(&self) -> (Option<i64>, Option<&str>) {
        match self {
            Key::Id(id) => (Some(*id), None),
            Key::Name(name) => (None, Some(name.as_str())),
        }
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Key::Id(id) => write!(f, "{id}"),
            Key::Name(name) => f.write_str(name),
        }
    }
}

impl From<i64> for Key {
    fn from(id: i64) -> Self {
        Key::Id(id)
    }
}

impl From<&str> for Key {
    fn from(text: &str) -> Self {
        Key::parse(text)
    }
}
