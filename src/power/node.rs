//! Power of a node through its enrolled BMC: the settings from the database, the password
//! opened with this daemon's vault, the certificate pinned on first contact, and each read
//! recorded on the BMC's row (its state, or why there is none).

use std::sync::Arc;

use sqlx::PgPool;

use super::{
    BmcError, BmcTimeouts,
    pinning::Fingerprint,
    redfish::{Redfish, RedfishBmc},
    vault::{Vault, VaultError},
};
use crate::{db, domain::bmc::authority};

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
    async fn driver(&self, bmc: &db::bmcs::Bmc) -> Result<Redfish, PowerError> {
        let mut conn = self.pool.acquire().await.map_err(db::Error::from)?;
        let sealed = db::bmcs::sealed_password(&mut conn, bmc.node_id)
            .await?
            .ok_or_else(|| db::Error::not_found("BMC of node", &bmc.node))?;
        let port = bmc.port.and_then(|p| u16::try_from(p).ok());
        Ok(Redfish::new(
            RedfishBmc {
                address: authority(&bmc.address, port),
                username: bmc.username.clone(),
                password: self.vault.open(&sealed)?,
                system: bmc.system.clone(),
                pinned: bmc.cert_fingerprint.as_deref().and_then(Fingerprint::parse),
            },
            self.timeouts,
        )?)
    }

    /// Reads the node's power state from its BMC and records it (or why it could not be
    /// read); pins the certificate on first contact. Returns the BMC as recorded.
    pub async fn read(&self, node_id: i64, node: &str) -> Result<db::bmcs::Bmc, PowerError> {
        let mut conn = self.pool.acquire().await.map_err(db::Error::from)?;
        let bmc = db::bmcs::require(&mut conn, node_id, node).await?;
        drop(conn);
        let driver = self.driver(&bmc).await?;
        let read = driver.power_state().await;
        let mut conn = self.pool.acquire().await.map_err(db::Error::from)?;
        if bmc.cert_fingerprint.is_none()
            && let Some(presented) = driver.presented_certificate()
            && !matches!(read, Err(BmcError::CertificateChanged { .. }))
        {
            db::bmcs::pin_certificate(&mut conn, node_id, &presented.to_string()).await?;
        }
        match &read {
            Ok(state) => db::bmcs::record_power(&mut conn, node_id, Some(state.name()), "").await?,
            Err(e) => db::bmcs::record_power(&mut conn, node_id, None, &e.to_string()).await?,
        }
        read?;
        Ok(db::bmcs::require(&mut conn, node_id, node).await?)
    }
}
