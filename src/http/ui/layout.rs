//! What every page's frame shows: who is logged in, the CSRF token htmx sends, and which
//! section is current; plus small display helpers the templates share.

use super::{error::UiError, session::Session};
use crate::{
    db,
    domain::policy::{Action, Role},
    http::state::AppState,
};

pub struct Layout {
    pub actor: String,
    /// The session's role, shown next to who is logged in.
    pub role: Role,
    /// May run the fleet (operator or admin): pages show their buttons.
    pub operate: bool,
    /// May manage access and settings (admin).
    pub administer: bool,
    pub csrf: String,
    /// The navigation entry to mark as current.
    pub section: &'static str,
    /// The last event numbered before the page read its data: the page script follows the
    /// event stream from there, so no change between rendering and connecting is missed.
    pub events_after: i64,
}

impl Layout {
    /// Call before reading the page's data (see `events_after`).
    pub async fn new(
        state: &AppState,
        session: &Session,
        section: &'static str,
    ) -> Result<Layout, UiError> {
        Ok(Layout {
            actor: session.actor.0.clone(),
            role: session.role,
            operate: session.may(Action::NodeUpdate),
            administer: session.may(Action::UserCreate),
            csrf: session.csrf.clone(),
            section,
            events_after: db::events::last_seq(&state.pool).await?,
        })
    }

    /// The `hx-headers` attribute value: htmx sends the CSRF token with every request.
    pub fn hx_headers(&self) -> String {
        serde_json::json!({ (super::csrf::HEADER): self.csrf }).to_string()
    }
}

/// A node's alive/available state as one word pair, used for its badge text and class.
pub fn node_condition(alive: bool, available: bool) -> (&'static str, &'static str) {
    match (alive, available) {
        (true, true) => ("alive-available", "alive, available"),
        (true, false) => ("alive-reserved", "alive, reserved"),
        (false, true) => ("dead", "dead"),
        (false, false) => ("dead-reserved", "dead, reserved"),
    }
}

/// JSON for people: pretty-printed.
pub fn pretty(value: &serde_json::Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_four_node_conditions_are_distinct() {
        let all: std::collections::HashSet<_> =
            [(true, true), (true, false), (false, true), (false, false)]
                .into_iter()
                .map(|(a, v)| node_condition(a, v).0)
                .collect();
        assert_eq!(all.len(), 4);
    }
}
