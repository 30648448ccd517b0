//! `/setup`: the first-start wizard. While there is no admin node it asks for the admin
//! node's name and address and the admin network, creates the network and the node in the
//! system deployment, binds `crowbar-admin-node` to it and commits the system deployment —
//! all in one transaction ([`actions::set_up_admin_node`]).

use std::net::IpAddr;

use askama::Template;
use askama_web::WebTemplate;
use axum::{Form, extract::State, response::Response};
use serde::Deserialize;

use super::{Pages, error::UiError, layout::Layout, session::Session};
use crate::{
    db::{self, nodes::NodeFilter, paging::Window},
    http::{
        actions::{self, AdminNetwork},
        state::AppState,
    },
};

pub fn router() -> Pages {
    Pages::new().get("/setup", page).post("/setup", finish)
}

pub async fn has_admin_node(state: &AppState) -> Result<bool, UiError> {
    let admins = db::nodes::list(
        &state.pool,
        &NodeFilter {
            admin: Some(true),
            window: Window::first(1),
            ..Default::default()
        },
    )
    .await?;
    Ok(!admins.is_empty())
}

#[derive(Template, WebTemplate)]
#[template(path = "setup.html")]
struct Page {
    layout: Layout,
    done: bool,
}

async fn page(State(state): State<AppState>, session: Session) -> Result<Page, UiError> {
    let layout = Layout::new(&state, &session, "overview").await?;
    Ok(Page {
        layout,
        done: has_admin_node(&state).await?,
    })
}

/// The wizard's form: the admin node and the admin network.
#[derive(Debug, Deserialize)]
pub struct SetupForm {
    pub node_name: String,
    pub node_address: String,
    pub network_name: String,
    pub range_first: String,
    pub range_last: String,
    #[serde(default)]
    pub router: String,
}

/// Checks the network fields: a name, a range of one address family in order, an
/// optional router address of that family.
pub fn parse_network(form: &SetupForm) -> Result<AdminNetwork, String> {
    let name = form.network_name.trim();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_".contains(c))
    {
        return Err("the network name is lower-case letters, digits, '-' and '_'".into());
    }
    let ip = |what: &str, text: &str| -> Result<IpAddr, String> {
        text.trim()
            .parse()
            .map_err(|_| format!("{what} `{}` is not an IP address", text.trim()))
    };
    let first = ip("the range's first address", &form.range_first)?;
    let last = ip("the range's last address", &form.range_last)?;
    if first.is_ipv4() != last.is_ipv4() {
        return Err("the range's first and last addresses are of different families".into());
    }
    if first > last {
        return Err("the range's first address comes after its last".into());
    }
    let router = match form.router.trim() {
        "" => None,
        text => {
            let router = ip("the router", text)?;
            if router.is_ipv4() != first.is_ipv4() {
                return Err("the router's address family differs from the range's".into());
            }
            Some(router)
        }
    };
    Ok(AdminNetwork {
        name: name.to_string(),
        first,
        last,
        router,
    })
}

async fn finish(
    State(state): State<AppState>,
    session: Session,
    Form(form): Form<SetupForm>,
) -> Result<Response, UiError> {
    if has_admin_node(&state).await? {
        return Err(UiError::new(
            axum::http::StatusCode::CONFLICT,
            "this crowbar has an admin node already",
        ));
    }
    let network = parse_network(&form).map_err(UiError::invalid)?;
    let address: IpAddr = form.node_address.trim().parse().map_err(|_| {
        UiError::invalid(format!(
            "the admin node's address `{}` is not an IP address",
            form.node_address.trim()
        ))
    })?;
    actions::set_up_admin_node(
        &state,
        &session.acting,
        form.node_name.trim(),
        address,
        &network,
    )
    .await?;
    Ok(super::deployments::redirect_htmx("/deployments/system"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(first: &str, last: &str, router: &str) -> SetupForm {
        SetupForm {
            node_name: "admin.example.com".into(),
            node_address: "198.51.100.2".into(),
            network_name: "admin".into(),
            range_first: first.into(),
            range_last: last.into(),
            router: router.into(),
        }
    }

    #[test]
    fn networks_are_checked() {
        let ok = parse_network(&form("198.51.100.10", "198.51.100.200", "198.51.100.1")).unwrap();
        assert_eq!(ok.router, Some("198.51.100.1".parse().unwrap()));
        assert!(
            parse_network(&form("198.51.100.10", "198.51.100.200", ""))
                .unwrap()
                .router
                .is_none()
        );
        assert!(parse_network(&form("198.51.100.200", "198.51.100.10", "")).is_err());
        assert!(parse_network(&form("198.51.100.10", "fd00::1", "")).is_err());
        assert!(parse_network(&form("198.51.100.10", "198.51.100.20", "fd00::1")).is_err());
        assert!(parse_network(&form("x", "198.51.100.20", "")).is_err());
        let mut bad_name = form("198.51.100.10", "198.51.100.20", "");
        bad_name.network_name = "Admin Net".into();
        assert!(parse_network(&bad_name).is_err());
    }
}
