//! The OpenAPI schemas of what requests carry (names, addresses, MACs, data objects, known
//! bootenvs), shared by the route modules through `#[schema(schema_with = ...)]`.
//!
//! Each one declares exactly what the daemon accepts, no more and no less: the patterns are
//! those of the database's CHECK constraints (named next to each) or of the parser the
//! handler runs, so a client that follows the document is never refused for the shape of a
//! value, and the fuzz test (tests/it/api/fuzz.rs) holds the daemon to it.

use utoipa::openapi::{
    RefOr,
    schema::{AnyOfBuilder, ArrayBuilder, ObjectBuilder, Schema, SchemaFormat, Type},
};

use crate::{domain::state::NodeRoleState, provisioner::Bootenvs};

/// `nodes_name_check`: a lower-case host name or FQDN.
pub const NODE_NAME: &str =
    r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$";
/// `deployments_name_check`.
pub const DEPLOYMENT_NAME: &str = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$";
/// `api_tokens_name_check`.
pub const TOKEN_NAME: &str = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$";
/// `networks_name_check` and `network_ranges_name_check`.
pub const NETWORK_NAME: &str = r"^[a-z0-9][a-z0-9_-]*$";
/// The users table's check (and `db::users::valid_name`).
pub const USER_NAME: &str = r"^[a-z0-9][a-z0-9._-]{0,63}$";
/// What `provisioner::canonical_mac` reads: six pairs of hex digits joined by `:` or `-`.
pub const MAC: &str = r"^[0-9A-Fa-f]{2}([:-][0-9A-Fa-f]{2}){5}$";
/// The shortest password `passwords::hash` takes.
pub const PASSWORD_MIN: usize = 8;

fn string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

fn named(pattern: &str, max_length: Option<usize>, description: &str) -> ObjectBuilder {
    string()
        .pattern(Some(pattern))
        .min_length(Some(1))
        .max_length(max_length)
        .description(Some(description))
}

/// The same schema, or `null` (for optional fields whose `null` means "none").
fn or_null(schema: impl Into<RefOr<Schema>>) -> Schema {
    AnyOfBuilder::new()
        .item(schema)
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .into()
}

pub fn node_name() -> Schema {
    named(NODE_NAME, Some(253), "a lower-case host name or FQDN").into()
}

pub fn deployment_name() -> Schema {
    named(
        DEPLOYMENT_NAME,
        None,
        "letters, digits, '_', '-' and '.', starting with a letter or digit",
    )
    .into()
}

pub fn deployment_name_or_null() -> Schema {
    or_null(deployment_name())
}

/// Up to 10,000 nodes by name (or id), or `null`.
pub fn node_names_or_null() -> Schema {
    or_null(
        ArrayBuilder::new()
            .items(RefOr::T(node_name()))
            .min_items(Some(1))
            .max_items(Some(10_000)),
    )
}

pub fn token_name() -> Schema {
    named(
        TOKEN_NAME,
        Some(64),
        "1 to 64 letters, digits, '_', '.', '@' and '-', starting with a letter or digit",
    )
    .into()
}

pub fn network_name() -> Schema {
    named(
        NETWORK_NAME,
        None,
        "lower-case letters, digits, '_' and '-', starting with a letter or digit",
    )
    .into()
}

pub fn user_name() -> Schema {
    named(
        USER_NAME,
        Some(64),
        "1 to 64 lower-case letters, digits, '.', '_' and '-', starting with a letter or digit",
    )
    .into()
}

pub fn password() -> Schema {
    string()
        .min_length(Some(PASSWORD_MIN))
        .description(Some(format!("at least {PASSWORD_MIN} characters")))
        .into()
}

fn mac_schema() -> ObjectBuilder {
    string()
        .pattern(Some(MAC))
        .description(Some("a MAC address, e.g. 52:54:00:12:34:56"))
}

pub fn mac_or_null() -> Schema {
    or_null(mac_schema())
}

/// An IPv4 or IPv6 address, without a prefix length (what `IpAddr` parses).
fn ip_schema() -> Schema {
    AnyOfBuilder::new()
        .item(string().format(Some(SchemaFormat::Custom("ipv4".into()))))
        .item(string().format(Some(SchemaFormat::Custom("ipv6".into()))))
        .description(Some("an IPv4 or IPv6 address, e.g. 198.51.100.10"))
        .into()
}

pub fn ip_address() -> Schema {
    ip_schema()
}

pub fn ip_address_or_null() -> Schema {
    or_null(ip_schema())
}

/// A bootenv defined in `bootenvs/` (they ship inside the binary, so the list is fixed).
fn bootenv_schema() -> ObjectBuilder {
    let names: Vec<String> = Bootenvs::shipped()
        .map(|b| b.all().map(|b| b.name.clone()).collect())
        .unwrap_or_default();
    string()
        .enum_values(Some(names))
        .description(Some("a bootenv defined in bootenvs/"))
}

pub fn bootenv_or_null() -> Schema {
    or_null(bootenv_schema())
}

pub use crate::domain::data::{
    object_or_null_schema as object_or_null, object_schema as object, value_schema as value,
};

/// A noderole state by name, in any case, or by code, as `node_roles::parse_state` reads it.
pub fn noderole_state() -> Schema {
    // `todo` in any case is `[tT][oO][dD][oO]`
    let any_case = |name: &str| -> String {
        name.chars()
            .map(|c| format!("[{}{}]", c.to_ascii_lowercase(), c.to_ascii_uppercase()))
            .collect()
    };
    let names = NodeRoleState::ALL.iter().map(|s| any_case(s.name()));
    let codes = NodeRoleState::ALL.iter().map(|s| s.code().to_string());
    let choices: Vec<String> = names.chain(codes).collect();
    string()
        .pattern(Some(format!("^({})$", choices.join("|"))))
        .description(Some(
            "a state name (`error`, `active`, `todo`, `transition`, `blocked`, `proposed`, in any case) or its code (-1 to 4)",
        ))
        .into()
}

/// An IPv4 subnet in CIDR notation (what `ipnet::Ipv4Net` parses).
pub const IPV4_CIDR: &str = r"^((25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])/([0-9]|[12][0-9]|3[0-2])$";

pub fn ipv4_subnet_or_null() -> Schema {
    or_null(
        string()
            .pattern(Some(IPV4_CIDR))
            .description(Some("an IPv4 subnet, e.g. 198.51.100.0/24")),
    )
}

/// A BMC's address (`domain::bmc::ADDRESS`).
pub fn bmc_address() -> Schema {
    named(
        crate::domain::bmc::ADDRESS,
        Some(253),
        "a host name or IP address, without scheme, port or path",
    )
    .into()
}

/// The user crowbar is to a BMC (`domain::bmc::USERNAME`).
pub fn bmc_username() -> Schema {
    named(
        crate::domain::bmc::USERNAME,
        Some(64),
        "printable ASCII, no spaces",
    )
    .into()
}

/// A BMC password (`domain::bmc::PASSWORD`): written, never read back.
pub fn bmc_password() -> Schema {
    named(
        crate::domain::bmc::PASSWORD,
        Some(128),
        "stored sealed; never returned",
    )
    .write_only(true)
    .into()
}

/// A Redfish system's id or path, or null (`domain::bmc::SYSTEM`).
pub fn bmc_system_or_null() -> Schema {
    or_null(named(
        crate::domain::bmc::SYSTEM,
        Some(255),
        "the Redfish system's id or path; null: the BMC's only system",
    ))
}

/// A TCP port, or null (the driver's default).
pub fn port_or_null() -> Schema {
    or_null(
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(1))
            .maximum(Some(65535)),
    )
}
