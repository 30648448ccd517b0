//! Who may do what: the roles callers have, the actions routes take, and the one table
//! that decides every request from the two (docs/access.md).
//!
//! Roles are nested: a viewer reads everything (no read answers with a secret: tokens and
//! passwords are write-only), an operator also runs the fleet (nodes, deployments,
//! bindings, commits, retries, networks), an admin also manages who may do what and what
//! the daemon runs (users, tokens, barclamps, jigs, settings). Node tokens are not a role:
//! a node may read and update itself only ([`Action::node_may`]).
//!
//! The HTTP edge names the action of each of its routes; the action's name is also what
//! the audit trail records.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

/// What a user or token may do, least first: every role may do what the ones before it may.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
#[schema(as = AccessRole)]
pub enum Role {
    Viewer,
    Operator,
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Operator, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    /// The narrower of two roles: what a token of a user may do is at most what the user may.
    pub fn narrowest(self, other: Option<Role>) -> Role {
        other.map_or(self, |other| self.min(other))
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a role; the roles are admin, operator and viewer")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(text: &str) -> Result<Role, UnknownRole> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == text)
            .ok_or_else(|| UnknownRole(text.to_string()))
    }
}

impl TryFrom<String> for Role {
    type Error = UnknownRole;

    fn try_from(text: String) -> Result<Role, UnknownRole> {
        text.parse()
    }
}

/// Everything a request can do. Reads are one action; every change has its own, named in
/// the audit trail as `<kind>.<verb>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Any read: pages, lists, objects, the event stream.
    Read,
    NodeCreate,
    NodeUpdate,
    NodeDelete,
    NodeCommit,
    NodePropose,
    NodeRedeploy,
    NodeRotateToken,
    NodeForgetHostKey,
    NodeBmcSet,
    NodeBmcRemove,
    NodeBmcAcceptCertificate,
    NodePower,
    DeploymentCreate,
    DeploymentUpdate,
    DeploymentDelete,
    DeploymentCommit,
    DeploymentPropose,
    DeploymentRecall,
    /// Computing a plan for a document without applying it: a read that needs a body.
    DeploymentPlan,
    DeploymentApply,
    DeploymentRoleCreate,
    DeploymentRoleUpdate,
    NodeRoleBind,
    NodeRoleUnbind,
    NodeRoleUpdate,
    NodeRoleCommit,
    NodeRolePropose,
    NodeRoleRetry,
    AttribSet,
    NetworkCreate,
    NetworkDelete,
    AddressAllocate,
    BarclampImport,
    JigUpdate,
    Setup,
    TokenCreate,
    TokenRevoke,
    UserCreate,
    UserUpdate,
    UserDelete,
}

/// One row of the policy table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// The least role that may take the action.
    pub least: Role,
    /// The action's name in the audit trail; `None`: it changes nothing and is not recorded.
    pub audit: Option<&'static str>,
}

const fn rule(least: Role, audit: &'static str) -> Rule {
    Rule {
        least,
        audit: Some(audit),
    }
}

impl Action {
    /// The policy table.
    pub const fn rule(self) -> Rule {
        use Action::*;
        use Role::*;
        match self {
            Read | DeploymentPlan => Rule {
                least: Viewer,
                audit: None,
            },
            NodeCreate => rule(Operator, "node.create"),
            NodeUpdate => rule(Operator, "node.update"),
            NodeDelete => rule(Operator, "node.delete"),
            NodeCommit => rule(Operator, "node.commit"),
            NodePropose => rule(Operator, "node.propose"),
            NodeRedeploy => rule(Operator, "node.redeploy"),
            NodeRotateToken => rule(Operator, "node.rotate_token"),
            NodeForgetHostKey => rule(Operator, "node.forget_host_key"),
            NodeBmcSet => rule(Operator, "node.bmc_set"),
            NodeBmcRemove => rule(Operator, "node.bmc_remove"),
            NodeBmcAcceptCertificate => rule(Operator, "node.bmc_accept_certificate"),
            NodePower => rule(Operator, "node.power"),
            DeploymentCreate => rule(Operator, "deployment.create"),
            DeploymentUpdate => rule(Operator, "deployment.update"),
            DeploymentDelete => rule(Operator, "deployment.delete"),
            DeploymentCommit => rule(Operator, "deployment.commit"),
            DeploymentPropose => rule(Operator, "deployment.propose"),
            DeploymentRecall => rule(Operator, "deployment.recall"),
            DeploymentApply => rule(Operator, "deployment.apply"),
            DeploymentRoleCreate => rule(Operator, "deployment_role.create"),
            DeploymentRoleUpdate => rule(Operator, "deployment_role.update"),
            NodeRoleBind => rule(Operator, "noderole.bind"),
            NodeRoleUnbind => rule(Operator, "noderole.unbind"),
            NodeRoleUpdate => rule(Operator, "noderole.update"),
            NodeRoleCommit => rule(Operator, "noderole.commit"),
            NodeRolePropose => rule(Operator, "noderole.propose"),
            NodeRoleRetry => rule(Operator, "noderole.retry"),
            AttribSet => rule(Operator, "attrib.set"),
            NetworkCreate => rule(Operator, "network.create"),
            NetworkDelete => rule(Operator, "network.delete"),
            AddressAllocate => rule(Operator, "network.allocate"),
            BarclampImport => rule(Admin, "barclamp.import"),
            JigUpdate => rule(Admin, "jig.update"),
            Setup => rule(Admin, "settings.setup"),
            TokenCreate => rule(Admin, "token.create"),
            TokenRevoke => rule(Admin, "token.revoke"),
            UserCreate => rule(Admin, "user.create"),
            UserUpdate => rule(Admin, "user.update"),
            UserDelete => rule(Admin, "user.delete"),
        }
    }

    /// Whether a caller with `role` may take this action.
    pub fn allows(self, role: Role) -> bool {
        role >= self.rule().least
    }

    /// Whether a node's own token may take this action (on itself: the HTTP edge checks
    /// the node is the caller).
    pub fn node_may(self) -> bool {
        matches!(self, Action::Read | Action::NodeUpdate)
    }

    /// The name the audit trail records, for actions that change something.
    pub fn audit_name(self) -> Option<&'static str> {
        self.rule().audit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_nested_and_parse() {
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert!("root".parse::<Role>().is_err());
        assert_eq!(Role::Admin.narrowest(Some(Role::Viewer)), Role::Viewer);
        assert_eq!(Role::Viewer.narrowest(Some(Role::Admin)), Role::Viewer);
        assert_eq!(Role::Operator.narrowest(None), Role::Operator);
    }

    #[test]
    fn viewers_only_read_operators_run_the_fleet_admins_manage_access() {
        assert!(Action::Read.allows(Role::Viewer));
        assert!(!Action::NodeUpdate.allows(Role::Viewer));
        assert!(Action::DeploymentCommit.allows(Role::Operator));
        assert!(Action::NodeRoleRetry.allows(Role::Operator));
        for admin_only in [
            Action::UserCreate,
            Action::TokenCreate,
            Action::BarclampImport,
            Action::Setup,
            Action::JigUpdate,
        ] {
            assert!(!admin_only.allows(Role::Operator), "{admin_only:?}");
            assert!(admin_only.allows(Role::Admin), "{admin_only:?}");
        }
        assert!(Action::NodeUpdate.node_may() && !Action::NodeDelete.node_may());
    }
}
