//! An IPMI BMC for tests: pyghmi's IPMI 2.0 server (`.venv/`, `scripts/python-tools`) with
//! the machine of `ipmi_bmc.py` behind it (power applies `delay` after it is asked for; a
//! reset goes off, then on) and its user table, on a loopback UDP port (or an address and
//! port of the test's choosing), its password from a file.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use tempfile::TempDir;

use super::python;

pub const USER: &str = "crowbar";
pub const PASSWORD: &str = "ipmi-secret-93ab";

pub struct IpmiEmulator {
    pub address: std::net::Ipv4Addr,
    pub port: u16,
    pub user: String,
    password: String,
    dir: TempDir,
    child: Child,
}

impl IpmiEmulator {
    /// On a free loopback port, with [`USER`] and [`PASSWORD`].
    pub async fn start() -> IpmiEmulator {
        let port = super::free_port();
        IpmiEmulator::start_at(std::net::Ipv4Addr::LOCALHOST, port, USER, PASSWORD).await
    }

    /// On `address`:`port` (what `lan print` reports), its factory admin `user`.
    pub async fn start_at(
        address: std::net::Ipv4Addr,
        port: u16,
        user: &str,
        password: &str,
    ) -> IpmiEmulator {
        let dir = tempfile::tempdir().unwrap();
        let password_file = dir.path().join("password");
        std::fs::write(&password_file, format!("{password}\n")).unwrap();
        let log = std::fs::File::create(dir.path().join("bmc.log")).unwrap();
        let child = Command::new(python::tool("python"))
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/it/support/ipmi_bmc.py"
            ))
            .args([
                "--address",
                &address.to_string(),
                "--port",
                &port.to_string(),
                "--user",
                user,
                "--delay",
                "1.5",
            ])
            .arg("--password-file")
            .arg(&password_file)
            .arg("--users-file")
            .arg(dir.path().join("users.json"))
            .env("PYTHONUNBUFFERED", "1")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let emulator = IpmiEmulator {
            address,
            port,
            user: user.to_string(),
            password: password.to_string(),
            dir,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !emulator.answers() {
            assert!(
                Instant::now() < deadline,
                "the IPMI emulator did not answer: {}",
                emulator.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        emulator
    }

    /// Whether ipmitool gets a power status from it.
    fn answers(&self) -> bool {
        Command::new("ipmitool")
            .args([
                "-I",
                "lanplus",
                "-H",
                &self.address.to_string(),
                "-p",
                &self.port.to_string(),
            ])
            .args([
                "-U", &self.user, "-E", "-N", "1", "-R", "1", "chassis", "power", "status",
            ])
            .env("IPMI_PASSWORD", &self.password)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// The file holding the factory admin's password.
    pub fn password_file(&self) -> PathBuf {
        self.dir.path().join("password")
    }

    /// Its user table by slot ("3": {name, password, enabled, ipmi, privilege, ...}), as
    /// ipmitool's commands left it.
    pub fn users(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.dir.path().join("users.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    /// What it logged: `power on`, `power off`, `bootdev ...` as they happened.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("bmc.log")
    }
}

impl Drop for IpmiEmulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
