//! Noderoles as pages show them: state name and label, and the reason as one sentence.

use serde_json::Value;

use crate::{
    db::node_roles::{NodeRole, NodeRoleFilter},
    http::{actions::WithReason, error::ApiError, state::AppState},
};

#[derive(Debug, Clone)]
pub struct NrView {
    pub id: i64,
    pub node: String,
    pub role: String,
    pub deployment: String,
    /// `error`, `active`, ... (the CSS class suffix)
    pub status: String,
    pub cohort: i32,
    pub run_count: i32,
    pub runlog: String,
    /// Why it is not running, or empty.
    pub reason: String,
}

impl NrView {
    pub fn label(&self) -> String {
        self.status.to_ascii_uppercase()
    }

    /// Whether the UI offers to remove it from the proposal.
    pub fn removable(&self) -> bool {
        self.status == "proposed"
    }
}

impl From<WithReason<NodeRole>> for NrView {
    fn from(w: WithReason<NodeRole>) -> Self {
        let nr = w.noderole;
        NrView {
            id: nr.id,
            node: nr.node,
            role: nr.role,
            deployment: nr.deployment,
            status: nr.status,
            cohort: nr.cohort,
            run_count: nr.run_count,
            runlog: nr.runlog,
            reason: reason_text(w.reason.as_ref()),
        }
    }
}

/// The reason's message (or its code when it has none); empty when there is no reason.
pub fn reason_text(reason: Option<&Value>) -> String {
    let Some(reason) = reason else {
        return String::new();
    };
    reason["message"]
        .as_str()
        .or_else(|| reason["code"].as_str())
        .unwrap_or_default()
        .to_string()
}

/// The noderoles `filter` selects with their reasons, as views.
pub async fn noderoles(state: &AppState, filter: &NodeRoleFilter) -> Result<Vec<NrView>, ApiError> {
    Ok(crate::http::actions::noderole_page(state, filter)
        .await?
        .into_iter()
        .map(NrView::from)
        .collect())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn reasons_read_as_their_message() {
        assert_eq!(reason_text(None), "");
        assert_eq!(
            reason_text(Some(&json!({"code": "dead", "message": "node n1 is dead"}))),
            "node n1 is dead"
        );
        assert_eq!(reason_text(Some(&json!({"code": "dead"}))), "dead");
    }
}
