//! What the database already holds (barclamps, jigs, roles, attribs), as far as validating
//! a barclamp import needs it: the [`StoredContent`] an import is checked against.

use std::collections::BTreeMap;

/// What the database already holds, as far as validation needs it. Keyed by name.
#[derive(Debug, Clone, Default)]
pub struct StoredContent {
    pub barclamps: BTreeMap<String, StoredBarclamp>,
    pub jigs: BTreeMap<String, StoredJig>,
    pub roles: BTreeMap<String, StoredRole>,
    pub attribs: BTreeMap<String, StoredAttrib>,
}

#[derive(Debug, Clone)]
pub struct StoredBarclamp {
    pub parent: Option<String>,
    pub content_hash: String,
}

#[derive(Debug, Clone)]
pub struct StoredJig {
    pub barclamp: String,
    pub client_role: Option<String>,
}

#[derive(Debug, Clone)]
pub struct StoredRole {
    pub barclamp: String,
    pub jig: String,
    pub requires: Vec<String>,
    pub provides: Vec<String>,
    pub wants_attribs: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct StoredAttrib {
    pub barclamp: String,
    pub role: Option<String>,
}
