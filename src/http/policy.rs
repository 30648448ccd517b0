//! The action of every route that needs a caller, API and UI alike: with the caller's role
//! it decides the request through [`crate::domain::policy`]. A route missing here is
//! refused for everyone (fail closed); a test walks every route of both routers and finds
//! it here.

use std::{collections::HashMap, sync::LazyLock};

use axum::http::Method;

use crate::domain::policy::Action::{self, *};

/// (method, route as declared, action). `GET` routes are reads unless listed otherwise.
const ROUTES: &[(&str, &str, Action)] = &[
    // REST API
    ("POST", "/api/v2/nodes", NodeCreate),
    ("PUT", "/api/v2/nodes/{node}", NodeUpdate),
    ("PATCH", "/api/v2/nodes/{node}", NodeUpdate),
    ("DELETE", "/api/v2/nodes/{node}", NodeDelete),
    ("PUT", "/api/v2/nodes/{node}/commit", NodeCommit),
    ("PUT", "/api/v2/nodes/{node}/propose", NodePropose),
    ("PUT", "/api/v2/nodes/{node}/redeploy", NodeRedeploy),
    ("PUT", "/api/v2/nodes/{node}/token", NodeRotateToken),
    ("DELETE", "/api/v2/nodes/{node}/host_key", NodeForgetHostKey),
    ("PUT", "/api/v2/nodes/{node}/bmc", NodeBmcSet),
    ("DELETE", "/api/v2/nodes/{node}/bmc", NodeBmcRemove),
    (
        "DELETE",
        "/api/v2/nodes/{node}/bmc/cert",
        NodeBmcAcceptCertificate,
    ),
    ("POST", "/api/v2/nodes/{node}/power", NodePower),
    ("POST", "/api/v2/power_ops", NodePower),
    ("PUT", "/api/v2/nodes/{node}/attribs/{attrib}", AttribSet),
    ("POST", "/api/v2/deployments", DeploymentCreate),
    ("PUT", "/api/v2/deployments/{deployment}", DeploymentUpdate),
    (
        "PATCH",
        "/api/v2/deployments/{deployment}",
        DeploymentUpdate,
    ),
    (
        "DELETE",
        "/api/v2/deployments/{deployment}",
        DeploymentDelete,
    ),
    (
        "PUT",
        "/api/v2/deployments/{deployment}/commit",
        DeploymentCommit,
    ),
    (
        "PUT",
        "/api/v2/deployments/{deployment}/propose",
        DeploymentPropose,
    ),
    (
        "PUT",
        "/api/v2/deployments/{deployment}/recall",
        DeploymentRecall,
    ),
    (
        "POST",
        "/api/v2/deployments/{deployment}/plan",
        DeploymentPlan,
    ),
    (
        "POST",
        "/api/v2/deployments/{deployment}/snapshots",
        DeploymentApply,
    ),
    (
        "PUT",
        "/api/v2/deployments/{deployment}/attribs/{attrib}",
        AttribSet,
    ),
    ("POST", "/api/v2/deployment_roles", DeploymentRoleCreate),
    ("PUT", "/api/v2/deployment_roles/{id}", DeploymentRoleUpdate),
    ("POST", "/api/v2/node_roles", NodeRoleBind),
    ("PUT", "/api/v2/node_roles/{id}", NodeRoleUpdate),
    ("PATCH", "/api/v2/node_roles/{id}", NodeRoleUpdate),
    ("DELETE", "/api/v2/node_roles/{id}", NodeRoleUnbind),
    ("PUT", "/api/v2/node_roles/{id}/commit", NodeRoleCommit),
    ("PUT", "/api/v2/node_roles/{id}/propose", NodeRolePropose),
    ("PUT", "/api/v2/node_roles/{id}/retry", NodeRoleRetry),
    ("PUT", "/api/v2/node_roles/{id}/attribs/{attrib}", AttribSet),
    ("POST", "/api/v2/networks", NetworkCreate),
    ("DELETE", "/api/v2/networks/{network}", NetworkDelete),
    (
        "POST",
        "/api/v2/networks/{network}/allocations",
        AddressAllocate,
    ),
    ("POST", "/api/v2/barclamps", BarclampImport),
    ("PUT", "/api/v2/jigs/{jig}", JigUpdate),
    ("PATCH", "/api/v2/jigs/{jig}", JigUpdate),
    ("POST", "/api/v2/tokens", TokenCreate),
    ("DELETE", "/api/v2/tokens/{token}", TokenRevoke),
    ("POST", "/api/v2/users", UserCreate),
    ("PUT", "/api/v2/users/{user}", UserUpdate),
    ("PUT", "/api/v2/users/{user}/password", UserUpdate),
    ("DELETE", "/api/v2/users/{user}", UserDelete),
    // web UI
    ("POST", "/deployments", DeploymentCreate),
    ("POST", "/deployments/{name}/bind", NodeRoleBind),
    ("POST", "/deployments/{name}/unbind", NodeRoleUnbind),
    ("POST", "/deployments/{name}/roles", DeploymentRoleCreate),
    ("POST", "/deployments/{name}/nodes", NodeUpdate),
    ("POST", "/deployments/{name}/propose", DeploymentPropose),
    ("POST", "/deployments/{name}/commit", DeploymentCommit),
    ("POST", "/deployments/{name}/recall", DeploymentRecall),
    ("POST", "/nodes/bulk", NodeUpdate),
    ("POST", "/nodes/{name}/available", NodeUpdate),
    ("POST", "/nodes/{name}/power", NodePower),
    ("POST", "/annealer/retry_all", NodeRoleRetry),
    ("POST", "/node_roles/{id}/retry", NodeRoleRetry),
    ("POST", "/setup", Setup),
];

static TABLE: LazyLock<HashMap<(Method, &'static str), Action>> = LazyLock::new(|| {
    ROUTES
        .iter()
        .map(|&(method, route, action)| {
            let method = Method::from_bytes(method.as_bytes()).expect("a method name");
            ((method, route), action)
        })
        .collect()
});

/// The action of `method` on the route declared as `route` (axum's `MatchedPath`); `None`
/// for a change route missing from the table. Every `GET` and `HEAD` is a read.
pub fn action_of(method: &Method, route: &str) -> Option<Action> {
    if method == Method::GET || method == Method::HEAD {
        return Some(Action::Read);
    }
    TABLE.get(&(method.clone(), route)).copied()
}

/// The route `request` matched, as declared (its path when none matched): what the table
/// and the audit trail know it by.
pub fn route_of(request: &axum::extract::Request) -> String {
    request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(
            || request.uri().path().to_string(),
            |m| m.as_str().to_string(),
        )
}

/// Every change route of the table, for tests that walk the routers.
pub fn change_routes() -> impl Iterator<Item = (&'static str, &'static str, Action)> {
    ROUTES.iter().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_listed_once() {
        assert_eq!(
            TABLE.len(),
            ROUTES.len(),
            "a (method, route) is listed twice"
        );
        assert_eq!(
            action_of(&Method::GET, "/anything"),
            Some(Action::Read),
            "reads need no entry"
        );
        assert_eq!(action_of(&Method::POST, "/not/a/route"), None);
    }
}
