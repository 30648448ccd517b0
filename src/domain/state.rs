//! Noderole states (SEMANTICS.md §2).

use serde::{Deserialize, Serialize};

/// The state of a noderole; the integer codes are the Crowbar 2 ones and are stored as-is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeRoleState {
    Error,
    Active,
    Todo,
    Transition,
    Blocked,
    Proposed,
}

impl NodeRoleState {
    pub const ALL: [NodeRoleState; 6] = [
        Self::Error,
        Self::Active,
        Self::Todo,
        Self::Transition,
        Self::Blocked,
        Self::Proposed,
    ];

    pub fn code(self) -> i16 {
        match self {
            Self::Error => -1,
            Self::Active => 0,
            Self::Todo => 1,
            Self::Transition => 2,
            Self::Blocked => 3,
            Self::Proposed => 4,
        }
    }

    pub fn from_code(code: i16) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.code() == code)
    }

    /// The lower-case name the API returns as `status`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Active => "active",
            Self::Todo => "todo",
            Self::Transition => "transition",
            Self::Blocked => "blocked",
            Self::Proposed => "proposed",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|s| s.name().eq_ignore_ascii_case(name))
    }
}

impl std::fmt::Display for NodeRoleState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_names_round_trip() {
        for s in NodeRoleState::ALL {
            assert_eq!(NodeRoleState::from_code(s.code()), Some(s));
            assert_eq!(NodeRoleState::from_name(s.name()), Some(s));
        }
        assert_eq!(NodeRoleState::Error.code(), -1);
        assert_eq!(NodeRoleState::Proposed.code(), 4);
        assert_eq!(NodeRoleState::from_code(5), None);
    }
}
