//! Why a noderole is not ACTIVE (SEMANTICS.md §5, "Why is it not running?").
//!
//! The database gathers [`Facts`] about a noderole; [`reason`] decides, in the order an
//! admin would check, what stops it.

use serde_json::{Map, Value, json};

use super::state::NodeRoleState;

/// A noderole that something else refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Other {
    pub id: i64,
    pub role: String,
    pub node: String,
    pub state: NodeRoleState,
}

/// What is known about one noderole when explaining it (borrowed from the rows read).
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    pub state: NodeRoleState,
    pub runlog: &'a str,
    pub deployment: &'a str,
    pub deployment_proposed: bool,
    pub node: &'a str,
    pub node_alive: bool,
    pub node_available: bool,
    pub jig: &'a str,
    pub jig_active: bool,
    /// The first parent (by cohort, id) that is not ACTIVE.
    pub waiting_on: Option<Other>,
    /// Another noderole on the node in ERROR.
    pub frozen_by: Option<Other>,
    /// The noderole the node's queued or running run belongs to, if not this one.
    pub busy_with: Option<Other>,
    /// This noderole's own run: (id, running?).
    pub own_run: Option<(i64, bool)>,
    pub running: i64,
    pub cap: i64,
}

/// A machine-readable reason: `code`, a human `message`, and details.
#[derive(Debug, Clone, PartialEq)]
pub struct Reason {
    pub code: &'static str,
    pub message: String,
    pub details: Value,
}

impl Reason {
    fn new(code: &'static str, message: String, details: Value) -> Self {
        Self {
            code,
            message,
            details,
        }
    }

    /// `{code, message, ...details}`.
    pub fn into_json(self) -> Value {
        let mut fields = match self.details {
            Value::Object(details) => details,
            _ => Map::new(),
        };
        fields.insert("code".into(), self.code.into());
        fields.insert("message".into(), self.message.into());
        Value::Object(fields)
    }
}

fn other_json(o: &Other) -> Value {
    json!({"id": o.id, "role": o.role, "node": o.node, "state": o.state.name()})
}

/// Why the noderole is not ACTIVE; `None` when it is.
pub fn reason(f: &Facts<'_>) -> Option<Reason> {
    use NodeRoleState::*;
    let r = match f.state {
        Active => return None,
        Error => Reason::new(
            "failed",
            format!(
                "the last run failed: {}",
                f.runlog
                    .lines()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("no output")
            ),
            json!({}),
        ),
        Transition => Reason::new(
            "running",
            "a run is executing".into(),
            json!({"run": f.own_run.map(|r| r.0)}),
        ),
        Proposed if f.deployment_proposed => Reason::new(
            "deployment_proposed",
            format!("deployment {} is proposed; commit it", f.deployment),
            json!({"deployment": f.deployment}),
        ),
        Proposed => Reason::new(
            "proposed",
            "the noderole is proposed; commit it".into(),
            json!({}),
        ),
        Blocked => match &f.waiting_on {
            Some(parent) => Reason::new(
                "waiting_on_parent",
                format!(
                    "waiting on {} on {} ({})",
                    parent.role,
                    parent.node,
                    parent.state.name()
                ),
                json!({ "parent": other_json(parent) }),
            ),
            None => Reason::new(
                "waiting_for_pass",
                "every parent is active; the next pass unblocks it".into(),
                json!({}),
            ),
        },
        Todo => {
            if f.deployment_proposed {
                Reason::new(
                    "deployment_proposed",
                    format!("deployment {} is proposed; commit it", f.deployment),
                    json!({"deployment": f.deployment}),
                )
            } else if !f.node_alive {
                Reason::new("node_dead", format!("node {} is dead", f.node), json!({}))
            } else if !f.node_available {
                Reason::new(
                    "node_unavailable",
                    format!("node {} is not available (reserved by an admin)", f.node),
                    json!({}),
                )
            } else if !f.jig_active {
                Reason::new(
                    "jig_inactive",
                    format!("jig {} is inactive", f.jig),
                    json!({"jig": f.jig}),
                )
            } else if let Some(err) = &f.frozen_by {
                Reason::new(
                    "node_frozen",
                    format!("node {} is frozen by the error in {}", f.node, err.role),
                    json!({ "noderole": other_json(err) }),
                )
            } else if let Some(busy) = &f.busy_with {
                Reason::new(
                    "node_busy",
                    format!("node {} is busy with {}", f.node, busy.role),
                    json!({ "noderole": other_json(busy) }),
                )
            } else if let Some((run, _)) = f.own_run {
                if f.running >= f.cap {
                    Reason::new(
                        "cap_reached",
                        format!(
                            "queued: {} runs are executing, the cap is {}",
                            f.running, f.cap
                        ),
                        json!({"run": run, "running": f.running, "cap": f.cap}),
                    )
                } else {
                    Reason::new(
                        "queued",
                        "queued; starting soon".into(),
                        json!({"run": run}),
                    )
                }
            } else {
                Reason::new(
                    "waiting_for_pass",
                    "runnable; the next annealer pass queues it".into(),
                    json!({}),
                )
            }
        }
    };
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(state: NodeRoleState) -> Facts<'static> {
        Facts {
            state,
            runlog: "",
            deployment: "web",
            deployment_proposed: false,
            node: "n1",
            node_alive: true,
            node_available: true,
            jig: "test",
            jig_active: true,
            waiting_on: None,
            frozen_by: None,
            busy_with: None,
            own_run: None,
            running: 0,
            cap: 10,
        }
    }

    #[test]
    fn active_needs_no_reason() {
        assert_eq!(reason(&facts(NodeRoleState::Active)), None);
    }

    #[test]
    fn todo_reasons_in_the_order_an_admin_checks() {
        let mut f = facts(NodeRoleState::Todo);
        assert_eq!(reason(&f).unwrap().code, "waiting_for_pass");
        f.own_run = Some((7, false));
        assert_eq!(reason(&f).unwrap().code, "queued");
        f.running = 10;
        assert_eq!(reason(&f).unwrap().code, "cap_reached");
        f.busy_with = Some(Other {
            id: 3,
            role: "test-admin".into(),
            node: "n1".into(),
            state: NodeRoleState::Transition,
        });
        assert_eq!(reason(&f).unwrap().code, "node_busy");
        f.frozen_by = Some(Other {
            id: 4,
            role: "test-fails".into(),
            node: "n1".into(),
            state: NodeRoleState::Error,
        });
        assert_eq!(reason(&f).unwrap().code, "node_frozen");
        f.jig_active = false;
        assert_eq!(reason(&f).unwrap().code, "jig_inactive");
        f.node_available = false;
        assert_eq!(reason(&f).unwrap().code, "node_unavailable");
        f.node_alive = false;
        assert_eq!(reason(&f).unwrap().code, "node_dead");
        f.deployment_proposed = true;
        assert_eq!(reason(&f).unwrap().code, "deployment_proposed");
    }

    #[test]
    fn blocked_names_the_parent_and_error_quotes_the_log() {
        let mut f = facts(NodeRoleState::Blocked);
        f.waiting_on = Some(Other {
            id: 9,
            role: "test-server".into(),
            node: "n2".into(),
            state: NodeRoleState::Error,
        });
        let r = reason(&f).unwrap();
        assert_eq!(r.code, "waiting_on_parent");
        assert_eq!(r.into_json()["parent"]["role"], "test-server");
        let mut f = facts(NodeRoleState::Error);
        f.runlog = "\nboom: disk full\nmore";
        assert_eq!(
            reason(&f).unwrap().message,
            "the last run failed: boom: disk full"
        );
    }
}
