//! Power of a node through its enrolled BMC: the settings from the database, the password
//! opened with this daemon's vault, the certificate pinned on first contact, and each read
//! recorded on the BMC's row (its state, or why there is none).

use std::sync::Arc;

use sqlx::PgPool;

use super::{
    BmcError, BmcTimeouts, BootDevice, PowerAction, PowerState,
    confirm::{self, Polling},
    driver::{Driver, Privilege},
    ipmi::{Ipmi, IpmiBmc},
    pinning::Fingerprint,
    redfish::{Redfish, RedfishBmc},
    vault::{Vault, VaultError},
};
use crate::{
    db::{self, events::Actor, keys::Key, power_ops::ClaimedOp},
    domain::bmc::{PowerOperation, authority},
    provisioner::bootenvs::DISCOVERY,
};

/// IPMI's port (RMCP+, UDP) when none is set.
pub const IPMI_PORT: u16 = 623;

/// Why a node's power could not be read or changed.
#[derive(Debug, thiserror::Error)]
pub enum PowerError {
    #[error(transparent)]
    Db(#[from] db::Error),
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error(transparent)]
    Bmc(#[from] BmcError),
}

/// Power control of nodes: what the daemon holds to reach their BMCs.
pub struct PowerControl {
    pool: PgPool,
    vault: Arc<Vault>,
    timeouts: BmcTimeouts,
}

impl std::fmt::Debug for PowerControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PowerControl")
            .field("vault", &self.vault)
            .field("timeouts", &self.timeouts)
            .finish()
    }
}

impl PowerControl {
    pub fn new(pool: PgPool, vault: Arc<Vault>, timeouts: BmcTimeouts) -> PowerControl {
        PowerControl {
            pool,
            vault,
            timeouts,
        }
    }

    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    /// A driver for the node's BMC.
    async fn driver(&self, bmc: &db::bmcs::Bmc) -> Result<Driver, PowerError> {
        let mut conn = self.pool.acquire().await.map_err(db::Error::from)?;
        let sealed = db::bmcs::sealed_password(&mut conn, bmc.node_id)
            .await?
            .ok_or_else(|| db::Error::not_found("BMC of node", &bmc.node))?;
        let port = bmc.port.and_then(|p| u16::try_from(p).ok());
        let password = self.vault.open(&sealed)?;
        if bmc.driver == "ipmi" {
            return Ok(Driver::Ipmi(Ipmi::new(
                IpmiBmc {
                    host: bmc.address.clone(),
                    port: port.unwrap_or(IPMI_PORT),
                    username: bmc.username.clone(),
                    password,
                },
                self.timeouts,
            )));
        }
        Ok(Driver::Redfish(Redfish::new(
            RedfishBmc {
                address: authority(&bmc.address, port),
                username: bmc.username.clone(),
                password,
                system: bmc.system.clone(),
                pinned: bmc.cert_fingerprint.as_deref().and_then(Fingerprint::parse),
            },
            self.timeouts,
        )?))
    }

    /// The node's BMC and a driver for it.
    async fn connect(
        &self,
        node_id: i64,
        node: &str,
    ) -> Result<(db::bmcs::Bmc, Driver), PowerError> {
        let mut conn = self.pool.acquire().await.map_err(db::Error::from)?;
        let bmc = db::bmcs::require(&mut conn, node_id, node).await?;
        drop(conn);
        let driver = self.driver(&bmc).await?;
        Ok((bmc, driver))
    }

    /// After talking to the BMC: pins the certificate it presented when none was pinned
    /// (unless it was refused as changed).
    async fn pin_first_contact(
        &self,
        bmc: &db::bmcs::Bmc,
        driver: &Driver,
        failure: Option<&BmcError>,
    ) -> Result<(), PowerError> {
        if bmc.cert_fingerprint.is_none()
            && let Some(presented) = driver.presented_certificate()
            && !matches!(failure, Some(BmcError::CertificateChanged { .. }))
        {
            let mut conn = self.pool.acquire().await.map_err(db::Error::from)?;
            db::bmcs::pin_certificate(&mut conn, bmc.node_id, &presented.to_string()).await?;
        }
        Ok(())
    }

    /// Reads the node's power state from its BMC and records it (or why it could not be
    /// read); pins the certificate on first contact. Returns the BMC as recorded.
    pub async fn read(&self, node_id: i64, node: &str) -> Result<db::bmcs::Bmc, PowerError> {
        let (bmc, driver) = self.connect(node_id, node).await?;
        let read = driver.power_state().await;
        self.pin_first_contact(&bmc, &driver, read.as_ref().err())
            .await?;
        let mut conn = self.pool.acquire().await.map_err(db::Error::from)?;
        match &read {
            Ok(state) => db::bmcs::record_power(&mut conn, node_id, Some(state.name()), "").await?,
            Err(e) => db::bmcs::record_power(&mut conn, node_id, None, &e.to_string()).await?,
        }
        read?;
        Ok(db::bmcs::require(&mut conn, node_id, node).await?)
    }

    /// Carries out a claimed power operation and confirms its effect by polling; returns
    /// what it did, in words. The state it leaves is recorded on the BMC; the moment the
    /// BMC accepts the change is recorded on the operation (taken back after that, the
    /// operation only confirms: a cycle is not cycled twice).
    pub async fn apply(&self, op: &ClaimedOp, polling: Polling) -> Result<String, PowerError> {
        let operation = PowerOperation::parse(&op.action).ok_or_else(|| {
            BmcError::Terminal(format!("`{}` is not a power operation", op.action))
        })?;
        let (bmc, driver) = self.connect(op.node_id, &op.node).await?;
        let started = tokio::time::Instant::now();
        let result = self.perform(&driver, op, operation, polling).await;
        let failure = match &result {
            Err(PowerError::Bmc(e)) => Some(e),
            _ => None,
        };
        self.pin_first_contact(&bmc, &driver, failure).await?;
        let state = result?;
        let mut conn = self.pool.acquire().await.map_err(db::Error::from)?;
        db::bmcs::record_power(&mut conn, op.node_id, Some(state.name()), "").await?;
        drop(conn);
        if operation == PowerOperation::Check {
            return Ok(self.checked(&driver, state).await?);
        }
        Ok(format!(
            "{}, confirmed by the BMC after {:.1} s",
            state.name(),
            started.elapsed().as_secs_f64()
        ))
    }

    /// A check's findings after the credentials worked: what the BMC tells of the machine,
    /// and whether crowbar's account may change its power (refused: the check fails).
    async fn checked(&self, driver: &Driver, state: PowerState) -> Result<String, BmcError> {
        let mut found = vec![format!(
            "the credentials work; the machine is {}",
            state.name()
        )];
        match driver.inventory().await {
            Ok(inventory) => {
                if let Some(serial) = inventory.serial {
                    found.push(format!("serial {serial}"));
                }
                if !inventory.macs.is_empty() {
                    found.push(format!("MACs {}", inventory.macs.join(", ")));
                }
            }
            Err(e) => found.push(format!("no inventory ({e})")),
        }
        found.push(match driver.privilege().await? {
            Privilege::MayReset(how) => format!("it may change the power ({how})"),
            Privilege::Unreported => {
                "the BMC does not say what the account may do; a power operation will tell".into()
            }
        });
        Ok(found.join("; "))
    }

    /// Discovery of a machine that is off, before it is powered on: the node waits for the
    /// machine with its MAC (the one it has, or the first the BMC reports) to register, and
    /// boots into discovery.
    async fn await_machine(&self, driver: &Driver, op: &ClaimedOp) -> Result<(), PowerError> {
        let mut conn = self.pool.acquire().await.map_err(db::Error::from)?;
        let node = db::nodes::get(&mut conn, &Key::Id(op.node_id)).await?;
        drop(conn);
        let mac = match node.mac {
            Some(mac) => mac,
            None => driver.inventory().await?.macs.into_iter().next().ok_or_else(|| {
                BmcError::Terminal(format!(
                    "BMC {}: reports no MAC of the machine; set the node's MAC (crowbar nodes update {} --mac ...) and ask again",
                    driver.address(),
                    node.name
                ))
            })?,
        };
        let mut tx = self.pool.begin().await.map_err(db::Error::from)?;
        db::nodes::await_machine(&mut tx, op.node_id, &mac, DISCOVERY, &Actor("power".into()))
            .await?;
        tx.commit().await.map_err(db::Error::from)?;
        Ok(())
    }

    /// The operation's steps; the power state it leaves, confirmed.
    async fn perform(
        &self,
        driver: &Driver,
        op: &ClaimedOp,
        operation: PowerOperation,
        polling: Polling,
    ) -> Result<PowerState, PowerError> {
        let address = driver.address();
        let read = || driver.power_state();
        let Some(desired) = operation.desired() else {
            // a check: the credentials work when two reads agree (a refusal is terminal)
            return Ok(confirm::settled(read, polling.every).await?);
        };
        let wanted = if desired == "off" {
            PowerState::Off
        } else {
            PowerState::On
        };
        if op.sent {
            // taken back after the BMC accepted the change: wait for it to apply; only a
            // change that never shows is asked for again
            match confirm::reached(read, wanted, polling, &address).await {
                Ok(()) => return Ok(wanted),
                Err(e) if !e.is_transient() => return Err(e.into()),
                Err(e) => tracing::info!(node = %op.node, error = %e, "asking again"),
            }
        }
        let current = confirm::settled(read, polling.every).await?;
        let action = match operation {
            PowerOperation::On => PowerAction::On,
            PowerOperation::Off => PowerAction::Off,
            PowerOperation::ForceOff => PowerAction::ForceOff,
            _ => PowerAction::Cycle,
        };
        let cycles = action == PowerAction::Cycle;
        if !cycles && current == wanted {
            return Ok(current);
        }
        if cycles && current == PowerState::Unknown && !op.force {
            return Err(BmcError::Terminal(format!(
                "BMC {address}: the power state is unknown, and a cycle goes ahead only when forced (force: true; --force)"
            ))
            .into());
        }
        if operation == PowerOperation::Discover {
            self.await_machine(driver, op).await?;
        }
        if operation.boots_from_network() {
            driver.boot_from(BootDevice::Pxe, true).await?;
        }
        driver.power(action, current).await?;
        db::power_ops::mark_sent(&self.pool, op.id).await?;
        if cycles && current == PowerState::On {
            confirm::restarted(read, polling, &address).await?;
        } else {
            confirm::reached(read, wanted, polling, &address).await?;
        }
        Ok(wanted)
    }
}
