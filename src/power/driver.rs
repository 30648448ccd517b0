//! One BMC, whichever protocol it speaks: what power control asks of a driver, dispatched
//! to Redfish or IPMI.

use super::{
    BmcError, BootDevice, Inventory, PowerAction, PowerState, ipmi::Ipmi, pinning::Fingerprint,
    redfish::Redfish,
};

/// What a BMC says crowbar's account may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Privilege {
    /// It may change the power: how that is known.
    MayReset(String),
    /// The BMC does not say.
    Unreported,
}

pub enum Driver {
    Redfish(Redfish),
    Ipmi(Ipmi),
}

impl Driver {
    /// The BMC as errors name it.
    pub fn address(&self) -> String {
        match self {
            Driver::Redfish(d) => d.address().to_string(),
            Driver::Ipmi(d) => d.address(),
        }
    }

    /// The certificate the BMC presented (Redfish; IPMI has none).
    pub fn presented_certificate(&self) -> Option<Fingerprint> {
        match self {
            Driver::Redfish(d) => d.presented_certificate(),
            Driver::Ipmi(_) => None,
        }
    }

    pub async fn power_state(&self) -> Result<PowerState, BmcError> {
        match self {
            Driver::Redfish(d) => d.power_state().await,
            Driver::Ipmi(d) => d.power_state().await,
        }
    }

    pub async fn power(&self, action: PowerAction, current: PowerState) -> Result<(), BmcError> {
        match self {
            Driver::Redfish(d) => d.power(action, current).await,
            Driver::Ipmi(d) => d.power(action, current).await,
        }
    }

    pub async fn boot_from(&self, device: BootDevice, once: bool) -> Result<(), BmcError> {
        match self {
            Driver::Redfish(d) => d.boot_from(device, once).await,
            Driver::Ipmi(d) => d.boot_from(device, once).await,
        }
    }

    /// Whether crowbar's account may change the power; an account that may not is a
    /// terminal error saying what it lacks.
    pub async fn privilege(&self) -> Result<Privilege, BmcError> {
        match self {
            Driver::Redfish(d) => d.privilege().await,
            // every ipmitool session asks for the operator privilege, which chassis control
            // needs: that the session was granted is the answer
            Driver::Ipmi(_) => Ok(Privilege::MayReset("an IPMI operator session".into())),
        }
    }

    pub async fn inventory(&self) -> Result<Inventory, BmcError> {
        match self {
            Driver::Redfish(d) => d.inventory().await,
            Driver::Ipmi(d) => d.inventory().await,
        }
    }
}
