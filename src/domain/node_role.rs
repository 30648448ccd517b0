//! What may be done to a single noderole (SEMANTICS.md §4, §5, §9): editing its data,
//! committing or proposing it, retrying it, deleting it, and proposing or redeploying its
//! node. Pure decisions: `db` reads the states they need under its locks, asks here, and
//! answers a [`Refusal`] with a 409. Ripples through the graph are set-based and stay in
//! `db::ripple`.

use serde_json::{Value, json};

use super::{
    reason::Other,
    state::NodeRoleState::{self, Active, Blocked, Error, Proposed, Todo, Transition},
};

/// Why a change is not allowed now: a stable code, a message for people, and details for
/// programs (`null` when there is nothing to add).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    pub code: &'static str,
    pub message: String,
    pub details: Value,
}

impl Refusal {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Refusal {
            code,
            message: message.into(),
            details: Value::Null,
        }
    }

    fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }
}

/// A noderole's data changes only while it or its deployment is PROPOSED (§4): what jigs
/// see changes only through a commit.
pub fn may_edit_data(state: NodeRoleState, deployment_proposed: bool) -> Result<(), Refusal> {
    if state == Proposed || deployment_proposed {
        return Ok(());
    }
    Err(Refusal::new(
        "not_proposed",
        "data can change only while the noderole or its deployment is proposed; propose the deployment first",
    ))
}

/// Only a proposal can be committed.
pub fn may_commit(id: i64, state: NodeRoleState) -> Result<(), Refusal> {
    if state == Proposed {
        return Ok(());
    }
    Err(Refusal::new(
        "not_proposed",
        format!("noderole {id} is {state}; only a proposed noderole can be committed"),
    )
    .with_details(json!({ "state": state.code(), "status": state.name() })))
}

/// Any noderole but one running now can go back to PROPOSED.
pub fn may_propose(id: i64, state: NodeRoleState) -> Result<(), Refusal> {
    if state != Transition {
        return Ok(());
    }
    Err(Refusal::new(
        "busy",
        format!("noderole {id} is running now; wait for it to finish"),
    )
    .with_details(json!({ "busy": [id] })))
}

/// A node's noderoles are proposed or redeployed together only while none of them runs:
/// `noderoles` are all of the node's, by id.
pub fn node_idle(noderoles: &[(i64, NodeRoleState)]) -> Result<(), Refusal> {
    let busy: Vec<i64> = noderoles
        .iter()
        .filter(|(_, state)| *state == Transition)
        .map(|(id, _)| *id)
        .collect();
    let Some(first) = busy.first() else {
        return Ok(());
    };
    Err(Refusal::new(
        "busy",
        format!("the node is running noderole {first}; wait for it to finish"),
    )
    .with_details(json!({ "busy": busy })))
}

/// What an allowed retry does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// The noderole is TODO already: nothing changes.
    Unneeded,
    /// The noderole goes back to TODO.
    Run,
}

/// Retry (§5): ERROR, ACTIVE or BLOCKED go back to TODO when every parent is ACTIVE.
/// `waiting_on` are the parents that are not, first by (cohort, id); a retry waits for
/// them, so they are retried first. A running or proposed noderole is not retried.
pub fn may_retry(state: NodeRoleState, waiting_on: &[Other]) -> Result<Retry, Refusal> {
    match state {
        Todo => return Ok(Retry::Unneeded),
        Transition => {
            return Err(Refusal::new(
                "busy",
                "the noderole is running now; wait for it to finish",
            ));
        }
        Proposed => {
            return Err(Refusal::new(
                "not_committed",
                "the noderole is proposed; commit it first",
            ));
        }
        Error | Active | Blocked => {}
    }
    let Some(parent) = waiting_on.first() else {
        return Ok(Retry::Run);
    };
    Err(Refusal::new(
        "parent_not_active",
        format!(
            "cannot retry: parent {} on {} (noderole {}) is {}; retry it first",
            parent.role, parent.node, parent.id, parent.state
        ),
    )
    .with_details(json!({ "parents": waiting_on.iter().map(|p| p.id).collect::<Vec<_>>() })))
}

/// A descendant of a noderole someone wants to delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descendant {
    pub id: i64,
    pub node_id: i64,
    pub state: NodeRoleState,
    pub run_count: i32,
    pub role: String,
    pub node: String,
}

/// Deleting (§9): a noderole goes, with its descendants, when it has none, when all of them
/// are on its own node (`node_id`), or when all of them are PROPOSED and never ran.
/// Otherwise the refusal names the descendants on other nodes.
pub fn may_delete(node_id: i64, descendants: &[Descendant]) -> Result<(), Refusal> {
    let same_node = descendants.iter().all(|d| d.node_id == node_id);
    let never_ran = descendants
        .iter()
        .all(|d| d.state == Proposed && d.run_count == 0);
    if same_node || never_ran {
        return Ok(());
    }
    let elsewhere: Vec<&Descendant> = descendants
        .iter()
        .filter(|d| d.node_id != node_id)
        .collect();
    let names: Vec<String> = elsewhere
        .iter()
        .map(|d| format!("{} on {}", d.role, d.node))
        .collect();
    let children: Vec<Value> = elsewhere
        .iter()
        .map(|d| json!({"id": d.id, "role": d.role, "node": d.node}))
        .collect();
    Err(Refusal::new(
        "has_children",
        format!(
            "cannot delete: other nodes depend on it: {}",
            names.join(", ")
        ),
    )
    .with_details(json!({ "children": children })))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [NodeRoleState; 6] = NodeRoleState::ALL;

    fn parent(id: i64, state: NodeRoleState) -> Other {
        Other {
            id,
            role: format!("role-{id}"),
            node: "n1".into(),
            state,
        }
    }

    fn descendant(id: i64, node_id: i64, state: NodeRoleState, run_count: i32) -> Descendant {
        Descendant {
            id,
            node_id,
            state,
            run_count,
            role: format!("role-{id}"),
            node: format!("n{node_id}"),
        }
    }

    /// `result` is a refusal with exactly this code, message and details.
    #[track_caller]
    fn assert_refused<T: std::fmt::Debug>(
        result: Result<T, Refusal>,
        code: &str,
        message: &str,
        details: Value,
    ) {
        let refusal = result.unwrap_err();
        assert_eq!(refusal.code, code);
        assert_eq!(refusal.message, message);
        assert_eq!(refusal.details, details);
    }

    #[test]
    fn data_is_edited_only_while_the_noderole_or_its_deployment_is_proposed() {
        for state in ALL {
            assert_eq!(may_edit_data(state, true), Ok(()), "{state}");
        }
        assert_eq!(may_edit_data(Proposed, false), Ok(()));
        for state in ALL.into_iter().filter(|s| *s != Proposed) {
            assert_refused(
                may_edit_data(state, false),
                "not_proposed",
                "data can change only while the noderole or its deployment is proposed; propose the deployment first",
                Value::Null,
            );
        }
    }

    #[test]
    fn only_a_proposal_is_committed() {
        assert_eq!(may_commit(7, Proposed), Ok(()));
        for state in ALL.into_iter().filter(|s| *s != Proposed) {
            assert_refused(
                may_commit(7, state),
                "not_proposed",
                &format!("noderole 7 is {state}; only a proposed noderole can be committed"),
                json!({"state": state.code(), "status": state.name()}),
            );
        }
    }

    #[test]
    fn anything_but_a_running_noderole_is_proposed() {
        for state in ALL.into_iter().filter(|s| *s != Transition) {
            assert_eq!(may_propose(7, state), Ok(()), "{state}");
        }
        assert_refused(
            may_propose(7, Transition),
            "busy",
            "noderole 7 is running now; wait for it to finish",
            json!({"busy": [7]}),
        );
    }

    #[test]
    fn a_node_is_reworked_only_while_nothing_on_it_runs() {
        assert_eq!(node_idle(&[]), Ok(()));
        assert_eq!(node_idle(&[(1, Active), (2, Error), (3, Proposed)]), Ok(()));
        assert_refused(
            node_idle(&[(1, Active), (2, Transition), (5, Transition)]),
            "busy",
            "the node is running noderole 2; wait for it to finish",
            json!({"busy": [2, 5]}),
        );
    }

    #[test]
    fn a_todo_noderole_needs_no_retry_whatever_its_parents() {
        assert_eq!(may_retry(Todo, &[]), Ok(Retry::Unneeded));
        assert_eq!(may_retry(Todo, &[parent(1, Error)]), Ok(Retry::Unneeded));
    }

    #[test]
    fn running_and_proposed_noderoles_are_not_retried() {
        assert_refused(
            may_retry(Transition, &[]),
            "busy",
            "the noderole is running now; wait for it to finish",
            Value::Null,
        );
        assert_refused(
            may_retry(Proposed, &[]),
            "not_committed",
            "the noderole is proposed; commit it first",
            Value::Null,
        );
    }

    #[test]
    fn error_active_and_blocked_noderoles_are_retried_once_their_parents_are_active() {
        for state in [Error, Active, Blocked] {
            assert_eq!(may_retry(state, &[]), Ok(Retry::Run), "{state}");
            assert_refused(
                may_retry(state, &[parent(3, Blocked), parent(4, Error)]),
                "parent_not_active",
                "cannot retry: parent role-3 on n1 (noderole 3) is blocked; retry it first",
                json!({"parents": [3, 4]}),
            );
        }
    }

    #[test]
    fn a_noderole_without_descendants_or_with_all_on_its_node_is_deleted() {
        assert_eq!(may_delete(1, &[]), Ok(()));
        let on_node = [descendant(2, 1, Active, 3), descendant(3, 1, Error, 1)];
        assert_eq!(may_delete(1, &on_node), Ok(()));
    }

    #[test]
    fn descendants_elsewhere_that_never_ran_go_with_it() {
        let proposed = [descendant(2, 2, Proposed, 0), descendant(3, 1, Proposed, 0)];
        assert_eq!(may_delete(1, &proposed), Ok(()));
    }

    #[test]
    fn descendants_elsewhere_that_ran_or_were_committed_refuse_the_delete() {
        for blocking in [
            descendant(2, 2, Proposed, 1),
            descendant(2, 2, Active, 1),
            descendant(2, 2, Todo, 0),
        ] {
            let descendants = [
                descendant(3, 1, Active, 1),
                blocking,
                descendant(4, 3, Proposed, 0),
            ];
            assert_refused(
                may_delete(1, &descendants),
                "has_children",
                "cannot delete: other nodes depend on it: role-2 on n2, role-4 on n3",
                json!({"children": [
                    {"id": 2, "role": "role-2", "node": "n2"},
                    {"id": 4, "role": "role-4", "node": "n3"},
                ]}),
            );
        }
    }
}
