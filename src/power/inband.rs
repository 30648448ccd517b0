//! The `bmc` jig of the provisioner's `bmc` role: crowbar's own user on a node's local BMC,
//! set up from inside the machine as MAAS does while commissioning, so that nobody types
//! BMC credentials for a fleet (docs/power.md, "crowbar's own BMC user").
//!
//! Over the node's pinned SSH connection it runs ipmitool through the machine's own IPMI
//! device (`ipmitool -I open`: `/dev/ipmi0` of the kernel's `ipmi_si` and `ipmi_devintf`,
//! where no password is asked): it reads the BMC's LAN address (`lan print`) and its user
//! table (`user list`), then, in the slot that bears crowbar's user name already or else
//! the first free one from 3 up (1 is the anonymous user, 2 the vendor's admin), sets the
//! name, a password crowbar generates, operator privilege (enough to change the power and
//! the boot device, not to manage users) with IPMI messaging on the LAN channel, and
//! enables the user. The password travels only on ipmitool's stdin (`exec /dev/stdin`):
//! never on a command line, in a file on the node, in the run's data, wall or log. Then
//! the BMC is enrolled as if an admin had (driver `ipmi`, that address, that user, the
//! password sealed) and the enrolment's `check`, over the network as that user, decides
//! the run.
//!
//! What the node prints is hostile: bounded (`--ssh-output-limit`), parsed strictly; the
//! address must be a usable unicast IPv4 address that is no other node's BMC.
//!
//! Idempotent: a BMC enrolled with crowbar's user at that address whose check passes is
//! left as it is, password included. A BMC enrolled otherwise (an admin's choice) is left
//! alone. A machine without an IPMI device succeeds with `bmc/local: false` on its wall.

use std::{net::Ipv4Addr, sync::Arc, time::Duration};

use futures::future::BoxFuture;
use rand::distr::{Alphanumeric, SampleString};
use serde_json::{Value, json};
use sqlx::PgPool;

use super::node::PowerControl;
use crate::{
    access::{AccessError, NodeAccess, NodeRef},
    db::{self, bmcs::NewBmc, events::Actor},
    domain::data::get_path,
    jig::{Jig, JigJob, JigOutput},
    provisioner::bootenvs::canonical_mac,
    secret::Secret,
    ssh::{ExecOutput, ExitStatus, Session, SshError},
};

/// Who the node's history and the power operations name.
pub const ACTOR: &str = "jig:bmc";
/// crowbar's user on the BMC when `bmc/username` is not set.
pub const DEFAULT_USERNAME: &str = "crowbar";
/// IPMI 2.0's longest password; letters and digits only, so it stays one word for
/// `ipmitool exec`.
const PASSWORD_LEN: usize = 20;
/// The user slots crowbar may take: 1 is the anonymous user, 2 the vendor's admin.
const FIRST_SLOT: u8 = 3;
/// The longest any one ipmitool call may take on the node.
const CALL_LIMIT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("{0}")]
    Unreachable(String),
    #[error(transparent)]
    Db(#[from] db::Error),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("bmc/username must be 1 to 16 letters, digits, '.', '_' or '-' (it is {0})")]
    BadUsername(Value),
    #[error("bmc/channel must be a channel number from 1 to 11 (it is {0})")]
    BadChannel(Value),
    #[error(
        "ipmitool is not installed on {0}: the bmc role runs it on the machine (package ipmitool)"
    )]
    NoIpmitool(String),
    #[error("`ipmitool {what}` on {node} failed ({status}): {output}")]
    Ipmitool {
        node: String,
        what: &'static str,
        status: String,
        output: String,
    },
    #[error(
        "the BMC of {node} has no usable LAN address ({found}); give its LAN port one (DHCP, \
         or `ipmitool lan set`) and run the role again"
    )]
    NoAddress { node: String, found: String },
    #[error("the BMC of {node} reports {address}, which is the BMC of node {owner} already")]
    AddressTaken {
        node: String,
        address: Ipv4Addr,
        owner: String,
    },
    #[error(
        "the BMC of {node} has no free user slot (users {FIRST_SLOT} to {last} all have names); \
         free one, or set bmc/username to one of them for crowbar to take it over"
    )]
    NoFreeSlot { node: String, last: u8 },
    #[error("the BMC of {node} took crowbar's user, but its check as {username} failed: {reason}")]
    CheckFailed {
        node: String,
        username: String,
        reason: String,
    },
}

pub struct InbandJig {
    pool: PgPool,
    access: Arc<NodeAccess>,
    power: Arc<PowerControl>,
}

impl InbandJig {
    pub fn new(pool: PgPool, access: Arc<NodeAccess>, power: Arc<PowerControl>) -> Self {
        Self {
            pool,
            access,
            power,
        }
    }
}

impl Jig for InbandJig {
    fn name(&self) -> &'static str {
        "bmc"
    }

    fn run<'a>(&'a self, job: &'a JigJob) -> BoxFuture<'a, JigOutput> {
        Box::pin(async move {
            match self.enroll(job).await {
                Ok((wall, log)) => JigOutput::ok(Some(wall), log),
                Err(e) => JigOutput::failed(format!("bmc jig: {e}")),
            }
        })
    }
}

/// What the role's data asks for.
struct Wanted {
    username: String,
    channel: u8,
}

fn wanted(input: &Value) -> Result<Wanted, Error> {
    let username = match get_path(input, "bmc/username") {
        None | Some(Value::Null) => DEFAULT_USERNAME.to_string(),
        Some(Value::String(name)) if valid_username(name) => name.clone(),
        Some(other) => return Err(Error::BadUsername(other.clone())),
    };
    let channel = match get_path(input, "bmc/channel") {
        None | Some(Value::Null) => 1,
        Some(value) => value
            .as_u64()
            .filter(|c| (1..=11).contains(c))
            .ok_or_else(|| Error::BadChannel(value.clone()))? as u8,
    };
    Ok(Wanted { username, channel })
}

/// A user name that is one word for `ipmitool exec` and fits IPMI's 16 bytes.
fn valid_username(name: &str) -> bool {
    (1..=16).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

/// What `lan print` says of the BMC's network side.
#[derive(Debug, PartialEq)]
struct Lan {
    address: String,
    mac: Option<String>,
}

fn parse_lan(output: &str) -> Lan {
    let mut lan = Lan {
        address: String::new(),
        mac: None,
    };
    for line in output.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        match key.trim() {
            "IP Address" => lan.address = value.trim().to_string(),
            "MAC Address" => lan.mac = canonical_mac(value.trim()),
            _ => {}
        }
    }
    lan
}

/// An address crowbar can reach a BMC at: unicast, not this machine's own, not a link's.
fn usable(address: &str) -> Option<Ipv4Addr> {
    let ip: Ipv4Addr = address.parse().ok()?;
    (!ip.is_unspecified()
        && !ip.is_loopback()
        && !ip.is_multicast()
        && !ip.is_broadcast()
        && !ip.is_link_local())
    .then_some(ip)
}

/// The slots of `user list`: (id, name; empty when unnamed).
fn parse_users(output: &str) -> Vec<(u8, String)> {
    output
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let id = words.next()?.parse::<u8>().ok()?;
            let name = match words.next() {
                Some("true" | "false") | None => "",
                Some(name) => name,
            };
            Some((id, name.to_string()))
        })
        .collect()
}

/// The slot for crowbar's user: the one that has its name, else the first free one.
fn slot_for(users: &[(u8, String)], username: &str) -> Option<u8> {
    users
        .iter()
        .find(|(_, name)| name == username)
        .or_else(|| {
            users
                .iter()
                .find(|(id, name)| *id >= FIRST_SLOT && name.is_empty())
        })
        .map(|(id, _)| *id)
}

/// The commands that make `slot` crowbar's user, for `ipmitool exec`.
fn setup_commands(slot: u8, wanted: &Wanted, password: &Secret) -> String {
    let (user, channel) = (&wanted.username, wanted.channel);
    format!(
        "user set name {slot} {user}\n\
         user set password {slot} {password} {PASSWORD_LEN}\n\
         channel setaccess {channel} {slot} callin=on ipmi=on link=on privilege=3\n\
         user enable {slot}\n",
        password = password.expose()
    )
}

impl InbandJig {
    #[tracing::instrument(skip_all, fields(run = job.run_id, node = %job.node))]
    async fn enroll(&self, job: &JigJob) -> Result<(Value, String), Error> {
        let wanted = wanted(&job.input)?;
        let Some(addr) = get_path(&job.input, "crowbar/node/address")
            .and_then(Value::as_str)
            .and_then(|a| a.parse().ok())
        else {
            return Err(Error::Unreachable(format!(
                "node {} has no address to reach it by",
                job.node
            )));
        };
        let node = NodeRef {
            id: job.node_id,
            name: job.node.clone(),
            addr,
        };
        let session = match self.access.reach(&node).await {
            Ok(session) => session,
            Err(e) => return Err(self.unreachable(&node, job, e, "before the run").await),
        };
        let channel = wanted.channel;
        // `channel` is a number checked above: data, not code, on this command line
        let lan = self
            .ipmitool(
                &node,
                job,
                &session,
                "lan print",
                &format!(
                    "command -v ipmitool >/dev/null 2>&1 || exit 127; \
                     exec ipmitool -I open lan print {channel}"
                ),
                None,
            )
            .await;
        let lan = match lan {
            Ok(out) => parse_lan(&out),
            Err(Error::Ipmitool { output, .. }) if no_device(&output) => {
                return Ok((
                    json!({"bmc": {"local": false}}),
                    format!("{} has no IPMI device: no local BMC to enroll", job.node),
                ));
            }
            Err(e) => return Err(e),
        };
        let address = usable(&lan.address).ok_or_else(|| Error::NoAddress {
            node: job.node.clone(),
            found: if lan.address.is_empty() {
                "none".into()
            } else {
                lan.address.clone()
            },
        })?;
        let wall = |slot: Option<u8>, ours: bool| {
            json!({"bmc": {
                "local": true, "address": address.to_string(), "mac": lan.mac,
                "username": ours.then_some(&wanted.username), "user_id": slot, "crowbar_user": ours,
            }})
        };

        let mut log = vec![format!("local BMC at {address} (channel {channel})")];
        let mut conn = self.pool.acquire().await?;
        let enrolled = db::bmcs::get(&mut conn, job.node_id).await?;
        drop(conn);
        if let Some(bmc) = enrolled {
            let ours = bmc.driver == "ipmi"
                && bmc.address == address.to_string()
                && bmc.port.is_none()
                && bmc.username == wanted.username;
            if !ours {
                log.push(format!(
                    "the node's BMC is enrolled already ({} at {} as {}): left as it is; \
                     remove it (crowbar nodes bmc remove) for this role to enroll its own user",
                    bmc.driver, bmc.address, bmc.username
                ));
                return Ok((wall(None, false), log.join("\n")));
            }
            match self.check(job, None).await? {
                None => {
                    log.push(format!(
                        "crowbar's user {} works already: nothing changed",
                        wanted.username
                    ));
                    return Ok((wall(None, true), log.join("\n")));
                }
                Some(reason) => log.push(format!(
                    "crowbar's user {} does not work ({reason}): setting it up again",
                    wanted.username
                )),
            }
        }
        let mut conn = self.pool.acquire().await?;
        if let Some(owner) =
            db::bmcs::owner_of(&mut conn, "ipmi", &address.to_string(), job.node_id).await?
        {
            return Err(Error::AddressTaken {
                node: job.node.clone(),
                address,
                owner,
            });
        }
        drop(conn);

        let users = self
            .ipmitool(
                &node,
                job,
                &session,
                "user list",
                &format!("exec ipmitool -I open user list {channel}"),
                None,
            )
            .await?;
        let users = parse_users(&users);
        let slot = slot_for(&users, &wanted.username).ok_or_else(|| Error::NoFreeSlot {
            node: job.node.clone(),
            last: users.iter().map(|(id, _)| *id).max().unwrap_or(0),
        })?;
        let password = Secret::new(Alphanumeric.sample_string(&mut rand::rng(), PASSWORD_LEN));
        let commands = setup_commands(slot, &wanted, &password);
        let set_up = self
            .ipmitool(
                &node,
                job,
                &session,
                "exec",
                "exec ipmitool -I open exec /dev/stdin",
                Some(commands.as_bytes()),
            )
            .await;
        set_up.map_err(|e| scrub(e, &password))?;
        log.push(format!(
            "user {slot} on the BMC is now {} (operator, IPMI messaging on channel {channel}) \
             with a new password",
            wanted.username
        ));

        let new = NewBmc {
            driver: "ipmi".into(),
            address: address.to_string(),
            port: None,
            system: None,
            username: wanted.username.clone(),
            password_sealed: self.power.vault().seal(&password),
        };
        if let Some(reason) = self.check(job, Some(&new)).await? {
            return Err(Error::CheckFailed {
                node: job.node.clone(),
                username: wanted.username,
                reason,
            });
        }
        log.push(format!(
            "enrolled: ipmi at {address} as {}; its check passed",
            wanted.username
        ));
        Ok((wall(Some(slot), true), log.join("\n")))
    }

    /// Enrolls `new` (if given) and checks the node's BMC through a `check` operation:
    /// `None` when it passed, else why not.
    async fn check(&self, job: &JigJob, new: Option<&NewBmc>) -> Result<Option<String>, Error> {
        let actor = Actor(ACTOR.into());
        let mut tx = self.pool.begin().await?;
        let op = match new {
            Some(new) => {
                db::bmcs::enroll(&mut tx, job.node_id, &job.node, new, &actor)
                    .await?
                    .1
            }
            None => {
                db::power_ops::request(&mut tx, job.node_id, "check", false, &actor)
                    .await?
                    .0
            }
        };
        tx.commit().await?;
        let op = super::ended(&self.pool, op.id).await?;
        Ok((op.state != "done").then_some(op.reason))
    }

    /// Runs one ipmitool `command` on the node: its stdout, or why it failed.
    async fn ipmitool(
        &self,
        node: &NodeRef,
        job: &JigJob,
        session: &Session,
        what: &'static str,
        command: &str,
        stdin: Option<&[u8]>,
    ) -> Result<String, Error> {
        let limit = CALL_LIMIT.min(job.timeout);
        let out: ExecOutput = match session.exec_with_timeout(command, stdin, limit).await {
            Ok(out) => out,
            Err(e @ (SshError::OutputTooLarge { .. } | SshError::CommandTimeout { .. })) => {
                return Err(Error::Ipmitool {
                    node: job.node.clone(),
                    what,
                    status: "stopped".into(),
                    output: e.to_string(),
                });
            }
            Err(e) => {
                return Err(self
                    .unreachable(node, job, AccessError::Ssh(e), "during the run")
                    .await);
            }
        };
        match &out.status {
            ExitStatus::Code(0) => Ok(out.stdout_lossy()),
            ExitStatus::Code(127) if what == "lan print" => {
                Err(Error::NoIpmitool(job.node.clone()))
            }
            status => Err(Error::Ipmitool {
                node: job.node.clone(),
                what,
                status: match status {
                    ExitStatus::Code(code) => format!("exit status {code}"),
                    ExitStatus::Signal { name, .. } => format!("signal {name}"),
                },
                output: format!("{}{}", out.stdout_lossy(), out.stderr_lossy())
                    .trim()
                    .to_string(),
            }),
        }
    }

    async fn unreachable(&self, node: &NodeRef, job: &JigJob, e: AccessError, when: &str) -> Error {
        Error::Unreachable(
            self.access
                .unreachable(node, ACTOR, &job.role, e, when)
                .await,
        )
    }
}

/// ipmitool's words for a machine without an IPMI device (or its driver).
fn no_device(output: &str) -> bool {
    output.contains("Could not open device")
}

/// The error without the password in it, should ipmitool have echoed a line of its input.
fn scrub(error: Error, password: &Secret) -> Error {
    match error {
        Error::Ipmitool {
            node,
            what,
            status,
            output,
        } => Error::Ipmitool {
            node,
            what,
            status,
            output: output.replace(password.expose(), "********"),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lan_print_gives_the_address_and_mac() {
        let out = "Set in Progress         : Set Complete\n\
                   IP Address Source       : Static Address\n\
                   IP Address              : 10.0.0.5\n\
                   Subnet Mask             : 255.255.255.0\n\
                   MAC Address             : 52:54:00:AB:CD:EF\n";
        assert_eq!(
            parse_lan(out),
            Lan {
                address: "10.0.0.5".into(),
                mac: Some("52:54:00:ab:cd:ef".into())
            }
        );
        let junk = parse_lan("IP Address : 10.0.0.5; rm -rf /\nMAC Address : nope\n");
        assert_eq!(junk.mac, None);
        assert_eq!(usable(&junk.address), None);
    }

    #[test]
    fn only_unicast_addresses_of_other_machines_are_usable() {
        assert_eq!(usable("10.0.0.5"), Some(Ipv4Addr::new(10, 0, 0, 5)));
        for bad in [
            "0.0.0.0",
            "127.0.0.1",
            "169.254.0.9",
            "224.0.0.1",
            "255.255.255.255",
            "",
            "10.0.0.5:623",
            "::1",
        ] {
            assert_eq!(usable(bad), None, "{bad}");
        }
    }

    #[test]
    fn crowbar_takes_its_own_slot_or_the_first_free_one_from_three() {
        let out = "ID  Name\t     Callin  Link Auth\tIPMI Msg   Channel Priv Limit\n\
                   1                    false   false      false      NO ACCESS\n\
                   2   admin            true    true       true       ADMINISTRATOR\n\
                   3   ops              true    true       true       OPERATOR\n\
                   4                    false   false      false      NO ACCESS\n\
                   5   crowbar          true    true       true       OPERATOR\n";
        let users = parse_users(out);
        assert_eq!(users.len(), 5);
        assert_eq!(slot_for(&users, "crowbar"), Some(5));
        assert_eq!(slot_for(&users, "other"), Some(4));
        let full = vec![(1, String::new()), (2, "admin".into()), (3, "ops".into())];
        assert_eq!(slot_for(&full, "crowbar"), None);
    }

    #[test]
    fn role_data_is_checked() {
        let ok = wanted(&json!({})).unwrap();
        assert_eq!((ok.username.as_str(), ok.channel), (DEFAULT_USERNAME, 1));
        let set = wanted(&json!({"bmc": {"username": "fleet-7", "channel": 2}})).unwrap();
        assert_eq!((set.username.as_str(), set.channel), ("fleet-7", 2));
        for bad in [
            json!({"bmc": {"username": "two words"}}),
            json!({"bmc": {"username": "a\nuser set password 2 x"}}),
            json!({"bmc": {"username": "seventeen-chars-x"}}),
            json!({"bmc": {"username": 5}}),
            json!({"bmc": {"channel": 0}}),
            json!({"bmc": {"channel": 12}}),
            json!({"bmc": {"channel": "1; reboot"}}),
        ] {
            assert!(wanted(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_password_is_one_word_of_twenty_and_never_in_an_error() {
        let password = Secret::new("Abcdefghij0123456789");
        let wanted = wanted(&json!({})).unwrap();
        let commands = setup_commands(3, &wanted, &password);
        assert!(commands.contains("user set password 3 Abcdefghij0123456789 20\n"));
        let e = scrub(
            Error::Ipmitool {
                node: "n".into(),
                what: "exec",
                status: "exit status 1".into(),
                output: "Invalid command: Abcdefghij0123456789".into(),
            },
            &password,
        );
        assert!(!e.to_string().contains("Abcdefghij"), "{e}");
    }
}
