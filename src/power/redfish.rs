//! The Redfish driver: a machine's BMC over HTTPS (its certificate pinned, see
//! [`super::pinning`]), with HTTP basic authentication, separate connect and read timeouts,
//! and answers read as little as needed (`PowerState`, the reset action, the boot override,
//! the serial number and the MACs of the system's Ethernet interfaces).

use std::{sync::Arc, time::Duration};

use serde_json::{Value, json};

use super::{
    BmcError, BmcTimeouts, BootDevice, Inventory, PowerAction, PowerState,
    confirm::{self, Polling},
    driver::Privilege,
    pinning::{self, Fingerprint, PinnedCertificate},
    with_retries,
};
use crate::secret::Secret;

/// Where a BMC is and who crowbar is to it.
#[derive(Debug, Clone)]
pub struct RedfishBmc {
    /// Host name or address, with `:port` when not 443.
    pub address: String,
    pub username: String,
    pub password: Secret,
    /// The system's id (`/redfish/v1/Systems/<id>`); `None`: the BMC's only system.
    pub system: Option<String>,
    /// The certificate pinned on first contact.
    pub pinned: Option<Fingerprint>,
}

/// A connection to one BMC.
pub struct Redfish {
    bmc: RedfishBmc,
    http: reqwest::Client,
    pin: Arc<PinnedCertificate>,
    timeouts: BmcTimeouts,
    /// The system's path, found once (a poll reads the system, not the list again).
    system: tokio::sync::OnceCell<String>,
}

/// Most of a BMC's answer read (a Redfish resource is a few KB).
const MAX_ANSWER: usize = 1 << 20;

impl Redfish {
    pub fn new(bmc: RedfishBmc, timeouts: BmcTimeouts) -> Result<Redfish, BmcError> {
        let pin = PinnedCertificate::new(bmc.pinned);
        let tls = pin
            .client_config()
            .map_err(|e| BmcError::Terminal(format!("BMC {}: TLS setup: {e}", bmc.address)))?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .connect_timeout(timeouts.connect)
            .read_timeout(timeouts.read)
            .timeout(timeouts.connect + timeouts.read)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| BmcError::Terminal(format!("BMC {}: {e}", bmc.address)))?;
        Ok(Redfish {
            bmc,
            http,
            pin,
            timeouts,
            system: tokio::sync::OnceCell::new(),
        })
    }

    /// The certificate the BMC presented last (to pin after first contact).
    pub fn presented_certificate(&self) -> Option<Fingerprint> {
        self.pin.presented()
    }

    fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.bmc.address)
    }

    /// One request, its failure told apart: transient, terminal or a changed certificate.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, BmcError> {
        let address = &self.bmc.address;
        let mut request = self
            .http
            .request(method.clone(), self.url(path))
            .basic_auth(&self.bmc.username, Some(self.bmc.password.expose()))
            .header("accept", "application/json");
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| self.failed(&e))?;
        let status = response.status();
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(BmcError::Terminal(format!(
                "BMC {address}: HTTP {} for user {}",
                status.as_u16(),
                self.bmc.username
            )));
        }
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(BmcError::Transient(format!(
                "BMC {address}: HTTP {} on {method} {path}",
                status.as_u16()
            )));
        }
        if !status.is_success() {
            return Err(BmcError::Terminal(format!(
                "BMC {address}: HTTP {} on {method} {path} (not supported by this BMC?)",
                status.as_u16()
            )));
        }
        let bytes = response.bytes().await.map_err(|e| self.failed(&e))?;
        if bytes.len() > MAX_ANSWER {
            return Err(BmcError::Terminal(format!(
                "BMC {address}: an answer of {} bytes to {method} {path} (at most {MAX_ANSWER})",
                bytes.len()
            )));
        }
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|e| {
            BmcError::Terminal(format!(
                "BMC {address}: {method} {path} answered no JSON: {e}"
            ))
        })
    }

    /// What a request that got no answer means.
    fn failed(&self, e: &reqwest::Error) -> BmcError {
        let address = &self.bmc.address;
        if chain_mentions(e, pinning::CHANGED) {
            return BmcError::CertificateChanged {
                address: address.clone(),
                pinned: self.bmc.pinned.map(|p| p.to_string()).unwrap_or_default(),
                presented: self
                    .pin
                    .presented()
                    .map(|p| p.to_string())
                    .unwrap_or_default(),
            };
        }
        let what = if e.is_timeout() {
            "timed out"
        } else if e.is_connect() {
            "cannot connect"
        } else {
            "no answer"
        };
        BmcError::Transient(format!("BMC {address}: {what}: {}", root_cause(e)))
    }

    /// One request, tried again on transient failures.
    async fn call_retrying(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, BmcError> {
        with_retries(&self.timeouts, || self.call(method.clone(), path, body)).await
    }

    /// The system's path: the one configured, or the BMC's only one (asked once).
    pub async fn system_path(&self) -> Result<String, BmcError> {
        self.system
            .get_or_try_init(|| self.find_system())
            .await
            .cloned()
    }

    async fn find_system(&self) -> Result<String, BmcError> {
        if let Some(id) = &self.bmc.system {
            return Ok(if id.starts_with('/') {
                id.clone()
            } else {
                format!("/redfish/v1/Systems/{id}")
            });
        }
        let systems = self
            .call_retrying(reqwest::Method::GET, "/redfish/v1/Systems", None)
            .await?;
        let members: Vec<&str> = systems["Members"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["@odata.id"].as_str())
            .collect();
        match members.as_slice() {
            [one] => Ok(one.to_string()),
            [] => Err(BmcError::Terminal(format!(
                "BMC {}: no system under /redfish/v1/Systems",
                self.bmc.address
            ))),
            many => Err(BmcError::Terminal(format!(
                "BMC {}: {} systems; say which one (its id): {}",
                self.bmc.address,
                many.len(),
                many.join(", ")
            ))),
        }
    }

    /// The power state, read once.
    pub async fn power_state(&self) -> Result<PowerState, BmcError> {
        let system = self.system_path().await?;
        let answer = self
            .call_retrying(reqwest::Method::GET, &system, None)
            .await?;
        Ok(match answer["PowerState"].as_str() {
            Some("On") => PowerState::On,
            Some("Off") => PowerState::Off,
            _ => PowerState::Unknown,
        })
    }

    /// Asks for `action` (not waiting for it to apply: see [`Redfish::confirm`]).
    pub async fn power(&self, action: PowerAction, current: PowerState) -> Result<(), BmcError> {
        let reset = match (action, current) {
            (PowerAction::On, _) => "On",
            (PowerAction::Off, _) => "GracefulShutdown",
            (PowerAction::ForceOff, _) => "ForceOff",
            // a machine that is off is "cycled" by powering it on
            (PowerAction::Cycle, PowerState::Off) => "On",
            (PowerAction::Cycle, _) => "ForceRestart",
        };
        let system = self.system_path().await?;
        self.call_retrying(
            reqwest::Method::POST,
            &format!("{system}/Actions/ComputerSystem.Reset"),
            Some(&json!({ "ResetType": reset })),
        )
        .await
        .map(|_| ())
    }

    /// Sets where the machine boots next: once, or from now on.
    pub async fn boot_from(&self, device: BootDevice, once: bool) -> Result<(), BmcError> {
        let target = match device {
            BootDevice::Pxe => "Pxe",
            BootDevice::Disk => "Hdd",
        };
        let enabled = if once { "Once" } else { "Continuous" };
        let system = self.system_path().await?;
        self.call_retrying(
            reqwest::Method::PATCH,
            &system,
            Some(&json!({"Boot": {"BootSourceOverrideTarget": target, "BootSourceOverrideEnabled": enabled}})),
        )
        .await
        .map(|_| ())
    }

    /// Where the machine boots next, as the BMC reports it: (target, enabled).
    pub async fn boot_override(&self) -> Result<(String, String), BmcError> {
        let system = self.system_path().await?;
        let answer = self
            .call_retrying(reqwest::Method::GET, &system, None)
            .await?;
        let text = |key: &str| answer["Boot"][key].as_str().unwrap_or_default().to_string();
        Ok((
            text("BootSourceOverrideTarget"),
            text("BootSourceOverrideEnabled"),
        ))
    }

    /// The system's serial number and the MACs of its Ethernet interfaces.
    pub async fn inventory(&self) -> Result<Inventory, BmcError> {
        let system = self.system_path().await?;
        let answer = self
            .call_retrying(reqwest::Method::GET, &system, None)
            .await?;
        let serial = answer["SerialNumber"].as_str().map(str::to_string);
        let mut macs = Vec::new();
        if let Some(nics) = answer["EthernetInterfaces"]["@odata.id"].as_str() {
            let list = self.call_retrying(reqwest::Method::GET, nics, None).await?;
            for member in list["Members"].as_array().into_iter().flatten().take(64) {
                let Some(path) = member["@odata.id"].as_str() else {
                    continue;
                };
                let nic = self.call_retrying(reqwest::Method::GET, path, None).await?;
                if let Some(mac) = nic["MACAddress"].as_str() {
                    macs.push(mac.to_ascii_lowercase());
                }
            }
        }
        Ok(Inventory { serial, macs })
    }

    /// Polls the power state every `every` until two reads in a row say `wanted`, or
    /// `within` has passed (see [`super::confirm`]).
    pub async fn confirm(
        &self,
        wanted: PowerState,
        within: Duration,
        every: Duration,
    ) -> Result<(), BmcError> {
        let polling = Polling {
            within,
            every,
            ..Polling::default()
        };
        confirm::reached(|| self.power_state(), wanted, polling, &self.bmc.address).await
    }

    pub fn address(&self) -> &str {
        &self.bmc.address
    }

    /// Whether crowbar's account may reset the system: its role in the BMC's account
    /// service (`Administrator` and `Operator` may; another role may when it holds the
    /// `ConfigureComponents` privilege, which `ComputerSystem.Reset` needs). A BMC without
    /// an account service does not say.
    pub async fn privilege(&self) -> Result<Privilege, BmcError> {
        let accounts = match self
            .call_retrying(
                reqwest::Method::GET,
                "/redfish/v1/AccountService/Accounts",
                None,
            )
            .await
        {
            Ok(accounts) => accounts,
            Err(BmcError::Terminal(_)) => return Ok(Privilege::Unreported),
            Err(e) => return Err(e),
        };
        for member in accounts["Members"]
            .as_array()
            .into_iter()
            .flatten()
            .take(64)
        {
            let Some(path) = member["@odata.id"].as_str() else {
                continue;
            };
            let account = self.call_retrying(reqwest::Method::GET, path, None).await?;
            if account["UserName"].as_str() != Some(self.bmc.username.as_str()) {
                continue;
            }
            let role = account["RoleId"].as_str().unwrap_or_default().to_string();
            if role == "Administrator" || role == "Operator" {
                return Ok(Privilege::MayReset(format!("role {role}")));
            }
            let privileges = match self
                .call_retrying(
                    reqwest::Method::GET,
                    &format!("/redfish/v1/AccountService/Roles/{role}"),
                    None,
                )
                .await
            {
                Ok(found) => found["AssignedPrivileges"].clone(),
                Err(BmcError::Terminal(_)) => serde_json::Value::Null,
                Err(e) => return Err(e),
            };
            let may = privileges
                .as_array()
                .into_iter()
                .flatten()
                .any(|p| p.as_str() == Some("ConfigureComponents"));
            return if may {
                Ok(Privilege::MayReset(format!(
                    "role {role}, ConfigureComponents"
                )))
            } else {
                Err(BmcError::Terminal(format!(
                    "BMC {}: user {} has role {role}, which may not reset the machine; give it the Operator role",
                    self.bmc.address, self.bmc.username
                )))
            };
        }
        Ok(Privilege::Unreported)
    }
}

/// Whether any error in `e`'s chain says `text`.
fn chain_mentions(e: &(dyn std::error::Error + 'static), text: &str) -> bool {
    let mut next = Some(e);
    while let Some(err) = next {
        if err.to_string().contains(text) {
            return true;
        }
        next = err.source();
    }
    false
}

/// The innermost error's message (reqwest's own says little: "error sending request").
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut err = e;
    while let Some(source) = err.source() {
        err = source;
    }
    err.to_string()
}
