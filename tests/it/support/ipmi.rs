//! An IPMI BMC for tests: pyghmi's IPMI 2.0 server (`.venv/`, `scripts/python-tools`) with
//! the machine of `ipmi_bmc.py` behind it (power applies `delay` after it is asked for; a
//! reset goes off, then on), on a loopback UDP port, its password from a file.

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
    pub port: u16,
    dir: TempDir,
    child: Child,
}

impl IpmiEmulator {
    pub async fn start() -> IpmiEmulator {
        let dir = tempfile::tempdir().unwrap();
        let password = dir.path().join("password");
        std::fs::write(&password, format!("{PASSWORD}\n")).unwrap();
        let port = super::free_port();
        let log = std::fs::File::create(dir.path().join("bmc.log")).unwrap();
        let child = Command::new(python::tool("python"))
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/it/support/ipmi_bmc.py"
            ))
            .args([
                "--port",
                &port.to_string(),
                "--user",
                USER,
                "--delay",
                "1.5",
            ])
            .arg("--password-file")
            .arg(&password)
            .env("PYTHONUNBUFFERED", "1")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let emulator = IpmiEmulator { port, dir, child };
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
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
            ])
            .args([
                "-U", USER, "-E", "-N", "1", "-R", "1", "chassis", "power", "status",
            ])
            .env("IPMI_PASSWORD", PASSWORD)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
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
