//! The OS-install handshake (SEMANTICS.md §10, docs/provisioning.md): the `os-install` jig
//! of `provisioner-os-install` drives a node from its current system into an installer and
//! back to its installed disk, one explicit step at a time:
//!
//! 1. `requested`: the node's bootenv becomes the install bootenv (one transaction with the
//!    install's row: a node is installed once, ever);
//! 2. the jig waits until dnsmasq serves the node's current reservation (the DHCP database
//!    ran after the bootenv change) and `/boot/<mac>` renders the installer — only then is
//!    the node rebooted (`rebooting`);
//! 3. the installer reports `bootenv=local` with the node's token; the jig waits until the
//!    DHCP data is current again and `/boot/<mac>` renders the local disk, then confirms
//!    (`installed`) — the installer polls `GET /api/v2/nodes/<node>/install` and reboots
//!    only after this confirmation;
//! 4. the installed system reports `alive=true`: the install is `done`, the run succeeds
//!    and the annealer resumes with the node's other roles.
//!
//! Every step is recorded in `os_installs` before the next begins, so a run that is lost
//! (daemon restart) resumes where it was, and a run of a node whose install is `done` just
//! succeeds: os-install never runs twice.

use std::{net::IpAddr, sync::Arc, time::Duration};

use futures::future::BoxFuture;
use serde_json::{Value, json};
use sqlx::PgPool;

use super::{Bootenvs, Error, Provisioner, bootenvs::LOCAL};
use crate::{
    access::{NodeAccess, NodeRef},
    db::{
        self,
        events::Actor,
        installs::{self, BootFacts},
        keys::Key,
        nodes::{self, NodeUpdate},
    },
    domain::data::get_path,
    jig::{Jig, JigJob, JigOutput},
};

/// Whether a node's own token may change its bootenv from `current` to `wanted`. Only
/// one change is the node's to make: its installer's report that the disk is ready
/// (`local`, step 3) while the node boots an installer, which only an admin (or the
/// os-install role an admin bound) can have chosen. Every other bootenv change is an
/// admin's: a node that picked its own bootenv could, for one, boot an installer at will.
pub fn node_may_set_bootenv(bootenvs: &Bootenvs, current: &str, wanted: &str) -> bool {
    wanted == current || (wanted == LOCAL && bootenvs.get(current).is_some_and(|b| b.installs()))
}

/// Who the node's history names for the bootenv change.
pub const ACTOR: &str = "jig:os-install";
/// How often the jig looks at the handshake's conditions.
const POLL: Duration = Duration::from_millis(100);

pub struct OsInstallJig {
    pool: PgPool,
    access: Arc<NodeAccess>,
    provisioner: Arc<Provisioner>,
    reboot_command: String,
}

impl OsInstallJig {
    pub fn new(
        pool: PgPool,
        access: Arc<NodeAccess>,
        provisioner: Arc<Provisioner>,
        reboot_command: String,
    ) -> Self {
        Self {
            pool,
            access,
            provisioner,
            reboot_command,
        }
    }
}

impl Jig for OsInstallJig {
    fn name(&self) -> &'static str {
        "os-install"
    }

    fn run<'a>(&'a self, job: &'a JigJob) -> BoxFuture<'a, JigOutput> {
        Box::pin(async move {
            match self.install(job).await {
                Ok((wall, log)) => JigOutput::ok(Some(wall), log),
                Err(e) => JigOutput::failed(format!("os-install: {e}")),
            }
        })
    }
}

type Step<T> = Result<T, Error>;

impl OsInstallJig {
    #[tracing::instrument(skip_all, fields(run = job.run_id, node = %job.node))]
    async fn install(&self, job: &JigJob) -> Step<(Value, String)> {
        let target = get_path(&job.input, "provisioner/os")
            .and_then(Value::as_str)
            .ok_or(Error::NoInstallBootenv)?;
        match self.provisioner.bootenvs.get(target) {
            Some(bootenv) if bootenv.installs() => {}
            _ => return Err(Error::NotAnInstallBootenv(target.to_string())),
        }
        let mut log = Vec::new();
        loop {
            let mut conn = self.pool.acquire().await?;
            let install = installs::get(&mut conn, job.node_id).await?;
            drop(conn);
            let Some(install) = install else {
                self.request(job, target).await?;
                log.push(format!("bootenv set to {target}"));
                continue;
            };
            match install.state.as_str() {
                "requested" => {
                    let facts = self.wait_boot_data(job.node_id, &install.bootenv).await?;
                    self.reboot(job, &facts).await?;
                    installs::advance(&self.pool, job.node_id, "requested", "rebooting").await?;
                    log.push(
                        "DHCP and boot script confirmed; node rebooted into the installer".into(),
                    );
                }
                "rebooting" => {
                    self.wait_boot_data(job.node_id, LOCAL).await?;
                    installs::advance(&self.pool, job.node_id, "rebooting", "installed").await?;
                    log.push("installer reported bootenv=local; confirmed".into());
                }
                "installed" => {
                    let after = install.confirmed_after_event.unwrap_or(0);
                    self.wait(|pool| async move {
                        installs::booted_since(&pool, job.node_id, after).await
                    })
                    .await?;
                    installs::advance(&self.pool, job.node_id, "installed", "done").await?;
                    log.push("the installed system reported alive".into());
                }
                "done" => {
                    if log.is_empty() {
                        log.push(format!(
                            "{} was installed already; not again",
                            install.bootenv
                        ));
                    }
                    let wall = json!({"provisioner": {"installed": install.bootenv}});
                    return Ok((wall, log.join("\n")));
                }
                other => return Err(Error::UnknownInstallState(other.to_string())),
            }
        }
    }

    /// Step 1: the install's row and the node's bootenv, in one transaction.
    async fn request(&self, job: &JigJob, target: &str) -> Step<()> {
        let mut tx = self.pool.begin().await?;
        if installs::start(&mut tx, job.node_id, target).await? {
            let update = NodeUpdate {
                bootenv: Some(target.to_string()),
                ..Default::default()
            };
            nodes::update(
                &mut tx,
                &Key::Id(job.node_id),
                &update,
                &Actor(ACTOR.into()),
                &format!("installing {target}"),
            )
            .await
            .map_err(Error::NodeUpdate)?;
        }
        Ok(tx.commit().await?)
    }

    /// Waits until the node's bootenv is `bootenv`, dnsmasq serves its current reservation,
    /// and its boot script renders that bootenv.
    async fn wait_boot_data(&self, node_id: i64, bootenv: &str) -> Step<BootFacts> {
        self.wait(|pool| async move {
            let facts = installs::boot_facts(&pool, node_id).await?;
            Ok(facts.bootenv == bootenv && installs::dhcp_current(&pool, node_id).await?)
        })
        .await?;
        let facts = installs::boot_facts(&self.pool, node_id).await?;
        let mac = facts.mac.as_deref().ok_or_else(|| Error::NoMac {
            node: facts.name.clone(),
        })?;
        let script = self
            .provisioner
            .boot_script(mac, Some((&facts.name, &facts.bootenv)))?;
        let marker = format!("crowbar: {bootenv} for");
        if !script.contains(&marker) {
            return Err(Error::WrongBootScript {
                mac: mac.to_string(),
                bootenv: bootenv.to_string(),
                script,
            });
        }
        Ok(facts)
    }

    /// Waits for the power operation that boots the node from the network: done (the
    /// machine is on again, confirmed by its BMC), or failed with the BMC's reason. The
    /// power worker carries it out, one operation per BMC; the run's timeout bounds the
    /// wait.
    async fn power_cycled(&self, job: &JigJob, op: i64, node: &str) -> Step<()> {
        loop {
            let mut conn = self.pool.acquire().await?;
            let now = db::power_ops::get(&mut conn, op).await?;
            drop(conn);
            match now.state.as_str() {
                "done" => {
                    // the node went down: its cached connection is of no use any more
                    self.access.forget(job.node_id);
                    return Ok(());
                }
                "failed" => {
                    return Err(Error::PowerFailed {
                        node: node.to_string(),
                        reason: now.reason,
                    });
                }
                _ => tokio::time::sleep(POLL).await,
            }
        }
    }

    /// Polls `check` until it holds. The run's timeout bounds the wait.
    async fn wait<F, Fut>(&self, check: F) -> Step<()>
    where
        F: Fn(PgPool) -> Fut,
        Fut: std::future::Future<Output = db::Result<bool>>,
    {
        loop {
            if check(self.pool.clone()).await? {
                return Ok(());
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Step 2's reboot: through the node's BMC when it has one (next boot from the network,
    /// once, then a power cycle: a machine that is off is powered on), else the operator's
    /// reboot command over SSH, detached so that the connection dropping under it is no
    /// failure.
    async fn reboot(&self, job: &JigJob, facts: &BootFacts) -> Step<()> {
        let mut tx = self.pool.begin().await?;
        if db::bmcs::get(&mut tx, job.node_id).await?.is_some() {
            let (op, _) = db::power_ops::request(
                &mut tx,
                job.node_id,
                "pxe-once",
                false,
                &Actor(ACTOR.into()),
            )
            .await?;
            tx.commit().await?;
            return self.power_cycled(job, op.id, &facts.name).await;
        }
        drop(tx);
        let addr: IpAddr = facts
            .address
            .as_deref()
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| Error::NoAddress {
                node: facts.name.clone(),
            })?;
        let node = NodeRef {
            id: job.node_id,
            name: facts.name.clone(),
            addr,
        };
        let session = self
            .access
            .session(&node)
            .await
            .map_err(|e| Error::Unreachable {
                node: facts.name.clone(),
                source: Box::new(e),
            })?;
        let command = format!("({}) </dev/null >/dev/null 2>&1 &", self.reboot_command);
        let out = session
            .exec_with_timeout(&command, None, Duration::from_secs(30))
            .await
            .map_err(|e| Error::Reboot {
                node: facts.name.clone(),
                source: Box::new(e),
            })?;
        // the node goes down: its cached connection is of no use any more
        self.access.forget(job.node_id);
        if out.success() {
            Ok(())
        } else {
            Err(Error::RebootFailed {
                node: facts.name.clone(),
                stderr: out.stderr_lossy().to_string(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_sets_only_the_installers_report() {
        let envs = Bootenvs::shipped().unwrap();
        let may = |current, wanted| node_may_set_bootenv(&envs, current, wanted);
        assert!(may("ubuntu-22.04-install", LOCAL));
        assert!(may("rocky-9-install", LOCAL));
        // the same bootenv again changes nothing
        assert!(may("sledgehammer", "sledgehammer"));
        assert!(may(LOCAL, LOCAL));
        // out of discovery, into an installer, back to discovery: an admin's to decide
        assert!(!may("sledgehammer", LOCAL));
        assert!(!may("sledgehammer", "ubuntu-22.04-install"));
        assert!(!may(LOCAL, "rocky-9-install"));
        assert!(!may(LOCAL, "sledgehammer"));
        assert!(!may("ubuntu-22.04-install", "sledgehammer"));
        assert!(!may("ubuntu-22.04-install", "rocky-9-install"));
    }
}
