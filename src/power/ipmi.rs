//! The IPMI driver: IPMI 2.0 over LAN (`lanplus`) through `ipmitool`, the standard client.
//! The password reaches ipmitool in its own environment only (`-E` reads `IPMI_PASSWORD`;
//! `/proc/<pid>/environ` is readable by its owner alone), never on its command line. Each
//! call has ipmitool's own per-request timeout (the connect timeout) and a deadline for the
//! whole process (connect + read), and what it prints is read bounded.

use std::{process::Stdio, time::Duration};

use tokio::io::AsyncReadExt;

use super::{BmcError, BmcTimeouts, BootDevice, Inventory, PowerAction, PowerState, with_retries};
use crate::secret::Secret;

/// Where an IPMI BMC is and who crowbar is to it.
#[derive(Debug, Clone)]
pub struct IpmiBmc {
    /// Host name or address.
    pub host: String,
    /// UDP port; 623 by default.
    pub port: u16,
    pub username: String,
    pub password: Secret,
}

pub struct Ipmi {
    bmc: IpmiBmc,
    timeouts: BmcTimeouts,
}

/// Most of ipmitool's output read (a `fru print` is a few KB).
const MAX_OUTPUT: u64 = 64 * 1024;

impl Ipmi {
    pub fn new(bmc: IpmiBmc, timeouts: BmcTimeouts) -> Ipmi {
        Ipmi { bmc, timeouts }
    }

    /// `host:port` as errors name it.
    pub fn address(&self) -> String {
        crate::domain::bmc::authority(&self.bmc.host, Some(self.bmc.port))
    }

    /// One ipmitool run with `args` after the session's options; its standard output.
    async fn run(&self, args: &[&str]) -> Result<String, BmcError> {
        let address = self.address();
        let per_request = self.timeouts.connect.as_secs().max(1).to_string();
        let mut child = tokio::process::Command::new("ipmitool")
            .args(["-I", "lanplus", "-H", &self.bmc.host])
            .args(["-p", &self.bmc.port.to_string()])
            .args(["-U", &self.bmc.username, "-E"])
            // chassis control needs the operator privilege; asking for it at session start
            // refuses an account that lacks it at once, with ipmitool's reason
            .args(["-L", "OPERATOR"])
            .args(["-N", &per_request, "-R", "1"])
            .args(args)
            .env("IPMI_PASSWORD", self.bmc.password.expose())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                BmcError::Terminal(format!(
                    "BMC {address}: cannot run ipmitool ({e}); install it (Debian package ipmitool)"
                ))
            })?;
        let mut stdout = child.stdout.take().expect("piped");
        let mut stderr = child.stderr.take().expect("piped");
        let deadline: Duration = self.timeouts.connect + self.timeouts.read;
        let finished = tokio::time::timeout(deadline, async {
            let mut out = Vec::new();
            let mut err = Vec::new();
            let mut stdout = (&mut stdout).take(MAX_OUTPUT);
            let mut stderr = (&mut stderr).take(MAX_OUTPUT);
            let (read_out, read_err) =
                tokio::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err));
            read_out.and(read_err)?;
            let status = child.wait().await?;
            Ok::<_, std::io::Error>((status, out, err))
        })
        .await;
        let (status, out, err) = match finished {
            Err(_) => {
                return Err(BmcError::Transient(format!(
                    "BMC {address}: timed out: ipmitool did not finish within {}s",
                    deadline.as_secs()
                )));
            }
            Ok(Err(e)) => return Err(BmcError::Transient(format!("BMC {address}: ipmitool: {e}"))),
            Ok(Ok(done)) => done,
        };
        let out = String::from_utf8_lossy(&out).into_owned();
        if status.success() {
            return Ok(out);
        }
        // ipmitool tells some failures on stdout ("Device not present (Invalid command)")
        let said = format!("{}\n{out}", String::from_utf8_lossy(&err));
        Err(classify(&address, &self.bmc.username, &said))
    }

    async fn run_retrying(&self, args: &[&str]) -> Result<String, BmcError> {
        with_retries(&self.timeouts, || self.run(args)).await
    }

    pub async fn power_state(&self) -> Result<PowerState, BmcError> {
        let out = self.run_retrying(&["chassis", "power", "status"]).await?;
        Ok(parse_power(&out))
    }

    /// Asks for `action` (not waiting for it to apply).
    pub async fn power(&self, action: PowerAction, current: PowerState) -> Result<(), BmcError> {
        let verb = match (action, current) {
            (PowerAction::On, _) => "on",
            (PowerAction::Off, _) => "soft",
            (PowerAction::ForceOff, _) => "off",
            (PowerAction::Cycle, PowerState::Off) => "on",
            (PowerAction::Cycle, _) => "reset",
        };
        self.run_retrying(&["chassis", "power", verb])
            .await
            .map(|_| ())
    }

    /// Sets where the machine boots next: once, or from now on.
    pub async fn boot_from(&self, device: BootDevice, once: bool) -> Result<(), BmcError> {
        let device = match device {
            BootDevice::Pxe => "pxe",
            BootDevice::Disk => "disk",
        };
        let mut args = vec!["chassis", "bootdev", device];
        if !once {
            args.push("options=persistent");
        }
        self.run_retrying(&args).await.map(|_| ())
    }

    /// The serial number from the FRU, where the BMC has one; IPMI has no standard list of
    /// the system's MACs.
    pub async fn inventory(&self) -> Result<Inventory, BmcError> {
        let out = match self.run_retrying(&["fru", "print", "0"]).await {
            Ok(out) => out,
            // many BMCs (and emulators) keep no FRU: no serial, not a failure
            Err(BmcError::Terminal(_)) => String::new(),
            Err(e) => return Err(e),
        };
        let serial = out
            .lines()
            .filter_map(|line| line.split_once(':'))
            .find(|(key, _)| key.trim() == "Product Serial" || key.trim() == "Board Serial")
            .map(|(_, value)| value.trim().to_string())
            .filter(|s| !s.is_empty());
        Ok(Inventory {
            serial,
            macs: Vec::new(),
        })
    }
}

/// "Chassis Power is on" → On.
fn parse_power(out: &str) -> PowerState {
    match out.trim().rsplit(' ').next() {
        Some("on") => PowerState::On,
        Some("off") => PowerState::Off,
        _ => PowerState::Unknown,
    }
}

/// What ipmitool's complaint means: credentials and privileges are terminal, no session at
/// all is transient (a BMC that does not answer looks the same as one that silently drops
/// a wrong password: both are tried again, then named together).
fn classify(address: &str, username: &str, output: &str) -> BmcError {
    let said = output
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    let lower = said.to_ascii_lowercase();
    let denied = [
        "unauthorized name",
        "rakp",
        "invalid user",
        "password",
        "privilege level",
        "insufficient privilege",
    ];
    if denied.iter().any(|d| lower.contains(d)) {
        return BmcError::Terminal(format!(
            "BMC {address}: IPMI refused user {username} (wrong password, or not an operator): {said}"
        ));
    }
    if lower.contains("unable to establish") || lower.contains("timeout") || said.is_empty() {
        return BmcError::Transient(format!(
            "BMC {address}: no IPMI session for user {username} (the BMC does not answer, or drops a wrong password): {said}"
        ));
    }
    if lower.contains("invalid command") || lower.contains("not supported") {
        return BmcError::Terminal(format!("BMC {address}: not supported by this BMC: {said}"));
    }
    BmcError::Transient(format!("BMC {address}: ipmitool: {said}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_status_is_read_from_ipmitools_words() {
        assert_eq!(parse_power("Chassis Power is on\n"), PowerState::On);
        assert_eq!(parse_power("Chassis Power is off"), PowerState::Off);
        assert_eq!(
            parse_power("Chassis Power is in limbo"),
            PowerState::Unknown
        );
    }

    #[test]
    fn refusals_are_terminal_and_silence_is_transient() {
        let e = classify(
            "10.0.0.5:623",
            "crowbar",
            "Error in open session response message : invalid authentication algorithm\nRAKP 2 HMAC is invalid",
        );
        assert!(!e.is_transient(), "{e}");
        assert!(
            e.to_string()
                .starts_with("BMC 10.0.0.5:623: IPMI refused user crowbar")
        );
        let e = classify(
            "h:623",
            "u",
            "Error: Unable to establish IPMI v2 / RMCP+ session\n",
        );
        assert!(e.is_transient(), "{e}");
        assert!(!classify("h:623", "u", "IPMI command failed: Invalid command").is_transient());
    }
}
