//! The one error of the database layer, in terms a caller (HTTP, CLI, the barclamp import)
//! can act on: a refusal says what was wrong in crowbar's words, with a stable code; any
//! other failure is its cause. Every public function of `db` returns [`Result`].
//!
//! Constraint violations are turned into refusals here, by constraint name, in one table
//! ([`Error::from_constraint`]; the barclamp import's own in [`Error::from_import`]).

use crate::domain::{barclamp::RoleInUse, node_role::Refusal};

/// The result of every database operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong in a database operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{kind} `{key}` not found")]
    NotFound { kind: &'static str, key: String },
    /// The change conflicts with the current state (HTTP 409).
    #[error("{message}")]
    Conflict {
        code: &'static str,
        message: String,
        details: serde_json::Value,
    },
    /// The request itself is invalid (HTTP 422).
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    /// A barclamp import would delete roles that noderoles or deployment roles still use.
    #[error("{}", list(.0))]
    RolesInUse(Vec<RoleInUse>),
    /// A constraint refused a barclamp import's write (a concurrent writer got there
    /// first); named by the constraint, not by the message text.
    #[error("{meaning} (constraint {constraint})")]
    Constraint {
        constraint: String,
        meaning: &'static str,
    },
    /// No connection to the server. `target` names it without user or password.
    #[error("cannot reach PostgreSQL at {target}: {source}")]
    Connect {
        target: String,
        #[source]
        source: sqlx::Error,
    },
    /// No member of a replicated database accepts writes now (a failover under way, or
    /// none is primary); names what each member answered.
    #[error("{0}")]
    Unavailable(String),
    /// This build may not serve or migrate the database as it stands (a rolling upgrade's
    /// rule was hit); says what to do.
    #[error("{0}")]
    Upgrade(String),
    #[error("applying database migrations failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(transparent)]
    Sql(#[from] sqlx::Error),
}

fn list(items: &[RoleInUse]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

impl Error {
    pub fn not_found(kind: &'static str, key: impl ToString) -> Self {
        Error::NotFound {
            kind,
            key: key.to_string(),
        }
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Error::Conflict {
            code,
            message: message.into(),
            details: serde_json::Value::Null,
        }
    }

    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Error::Invalid {
            code,
            message: message.into(),
        }
    }

    /// Turns constraint violations into conflicts or validation errors by constraint name,
    /// and values PostgreSQL refuses into validation errors, always in crowbar's words.
    pub fn from_constraint(e: sqlx::Error) -> Self {
        let Some(db) = e.as_database_error() else {
            return Error::Sql(e);
        };
        let constraint = db.constraint().unwrap_or_default().to_string();
        let message = match constraint.as_str() {
            "nodes_name_unique" => "a node with that name exists already",
            "nodes_mac_unique" => "a node with that MAC address exists already",
            "nodes_address_unique" => "another node has that address already",
            "deployments_name_unique" => "a deployment with that name exists already",
            "noderoles_role_once_per_node" => "that role is already bound to that node",
            "deployment_roles_once" => "that role is already in that deployment",
            "snapshots_seq_unique" => "another commit of this deployment won the race; retry",
            "deployments_system_undeletable" => "the system deployment cannot be deleted",
            "api_tokens_name_unique" => "a token with that name exists already",
            "users_name_unique" => "a user with that name exists already",
            "networks_name_unique" => "a network with that name exists already",
            "network_ranges_name_unique" => "two ranges of the network have that name",
            "network_allocations_address_unique" => "that address is allocated already",
            "network_allocations_one_per_family" => {
                "the node has an address of that family on that network already"
            }
            "nodes_name_check" => {
                return Error::invalid(
                    "invalid_name",
                    "node names are lower-case host names or FQDNs (letters, digits, '-', '.')",
                );
            }
            "api_tokens_name_check" => {
                return Error::invalid(
                    "invalid_name",
                    "token names are 1 to 64 letters, digits, '_', '.', '@' and '-', starting with a letter or digit",
                );
            }
            "networks_name_check" | "network_ranges_name_check" => {
                return Error::invalid(
                    "invalid_name",
                    "network and range names are lower-case letters, digits, '_' and '-'",
                );
            }
            "deployments_name_check" => {
                return Error::invalid(
                    "invalid_name",
                    "deployment names start with a letter or digit and use letters, digits, '_', '-', '.'",
                );
            }
            "deployments_not_own_parent" => {
                return Error::invalid("invalid", "a deployment cannot be its own parent");
            }
            "network_ranges_bounds" => {
                return Error::invalid(
                    "invalid_range",
                    "a range's first and last addresses are single addresses of one family, first not after last",
                );
            }
            _ if constraint.ends_with("_data_check") => {
                return Error::invalid("invalid_data", "data must be a JSON object");
            }
            _ => {
                let sqlstate = db.code().unwrap_or_default().to_string();
                return match db.kind() {
                    // a rule of the schema that the daemon's own checks should have caught
                    // first: say what kind of thing was wrong, log which rule it was
                    sqlx::error::ErrorKind::CheckViolation => {
                        tracing::warn!(%constraint, error = %e, "a request broke a check of the schema");
                        Error::invalid("invalid", "a value is not allowed there")
                    }
                    // data exceptions (class 22): a value PostgreSQL cannot take
                    _ if sqlstate.starts_with("22") => {
                        tracing::warn!(%sqlstate, error = %e, "a request carried a value the database refused");
                        Error::invalid("invalid_value", data_exception(&sqlstate))
                    }
                    _ => Error::Sql(e),
                };
            }
        };
        Error::conflict("conflict", message)
    }

    /// A failed write of a barclamp import: a constraint that only a concurrent writer can
    /// have broken (the import checked everything else first) becomes [`Error::Constraint`],
    /// anything else stays what it is.
    pub fn from_import(e: sqlx::Error) -> Self {
        let constraint = e
            .as_database_error()
            .and_then(|db| db.constraint())
            .map(str::to_owned);
        let meaning = constraint.as_deref().and_then(|name| match name {
            "noderoles_role_id_fkey" => Some("a role this import removes is bound to a node"),
            "deployment_roles_role_id_fkey" => {
                Some("a role this import removes is used by a deployment")
            }
            "roles_jig_id_fkey" => Some("a jig this import removes is used by a role"),
            "barclamps_name_unique"
            | "jigs_name_unique"
            | "roles_name_unique"
            | "attribs_name_unique" => {
                Some("a name this import declares was taken by a concurrent writer")
            }
            _ => None,
        });
        match (constraint, meaning) {
            (Some(constraint), Some(meaning)) => Error::Constraint {
                constraint,
                meaning,
            },
            _ => Error::Sql(e),
        }
    }
}

/// A rule of `domain` said no: a conflict with the current state, in the rule's words.
impl From<Refusal> for Error {
    fn from(refusal: Refusal) -> Self {
        Error::Conflict {
            code: refusal.code,
            message: refusal.message,
            details: refusal.details,
        }
    }
}

/// A data exception in crowbar's words (PostgreSQL's own text names its types and
/// internals, and never reaches a client).
fn data_exception(sqlstate: &str) -> &'static str {
    match sqlstate {
        "22P02" => "a value is not of the expected kind (an IP address, a MAC address, a number)",
        "22003" => "a number is out of range",
        "22001" => "a value is too long",
        "22021" | "22P05" => "text may not contain the NUL character (\\u0000)",
        _ => "a value is not acceptable",
    }
}

/// Whether a failed transaction may simply be run again (deadlock, serialization failure).
pub fn is_retryable(e: &Error) -> bool {
    let Error::Sql(e) = e else {
        return false;
    };
    e.as_database_error()
        .and_then(|db| db.code())
        .is_some_and(|code| code == "40P01" || code == "40001")
}

/// Whether `e` means the database is away for now (its server shut down or restarted, the
/// connection dropped, a failover under way, the session reached a standby) rather than that
/// the statement was wrong: what a failover looks like to a client. Worth waiting for.
pub fn is_unavailable(e: &Error) -> bool {
    match e {
        Error::Connect { .. } | Error::Unavailable(_) => true,
        Error::Sql(e) => sql_unavailable(e),
        _ => false,
    }
}

fn sql_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // connection exceptions; admin, crash and starting-up shutdowns; a write on a
            // member that has become a standby
            code.starts_with("08") || matches!(code.as_ref(), "57P01" | "57P02" | "57P03" | "25006")
        }),
        _ => false,
    }
}
