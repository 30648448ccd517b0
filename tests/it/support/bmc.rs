//! A Redfish BMC for tests: sushy-tools' emulator (`.venv/bin/sushy-emulator`, installed by
//! `scripts/python-tools`) with its `fake` systems driver — no libvirt; power changes apply
//! a few seconds after they are asked for, as on real BMCs — served over HTTPS on a loopback
//! port with a fresh self-signed certificate and HTTP basic authentication.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use tempfile::TempDir;

use super::python;

/// The emulator's user and password.
pub const USER: &str = "crowbar";
pub const PASSWORD: &str = "bmc-secret-7b1f";

/// A fake system the emulator serves.
pub struct FakeSystem {
    pub uuid: String,
    pub mac: String,
}

pub struct RedfishEmulator {
    pub port: u16,
    pub systems: Vec<FakeSystem>,
    /// Where the emulator PUTs a system (JSON) on each of its power changes, if anywhere.
    notify: Option<String>,
    dir: TempDir,
    child: Child,
}

impl RedfishEmulator {
    /// An emulator serving `n` fake systems, all powered off.
    pub async fn start(n: usize) -> RedfishEmulator {
        let systems = (0..n)
            .map(|i| format!("52:54:00:00:{:02x}:{:02x}", i / 256, i % 256))
            .collect();
        RedfishEmulator::start_with(systems, None).await
    }

    /// An emulator serving a fake system per MAC, all powered off, telling `notify` (a URL)
    /// of every power change of each.
    pub async fn start_with(macs: Vec<String>, notify: Option<String>) -> RedfishEmulator {
        let dir = tempfile::tempdir().unwrap();
        let systems = macs
            .into_iter()
            .enumerate()
            .map(|(i, mac)| FakeSystem {
                uuid: format!("00000000-0000-4000-8000-{i:012}"),
                mac,
            })
            .collect();
        // the password file: bcrypt, made with the bcrypt the emulator itself uses
        let hashed = Command::new(python::tool("python"))
            .args([
                "-c",
                "import bcrypt, sys; print(bcrypt.hashpw(sys.argv[1].encode(), bcrypt.gensalt(4)).decode())",
                PASSWORD,
            ])
            .output()
            .unwrap();
        assert!(hashed.status.success(), "{hashed:?}");
        let line = format!(
            "{USER}:{}",
            String::from_utf8(hashed.stdout).unwrap().trim()
        );
        std::fs::write(dir.path().join("htpasswd"), line + "\n").unwrap();
        let mut emulator = RedfishEmulator {
            port: super::free_port(),
            systems,
            notify,
            child: Command::new("true").spawn().unwrap(),
            dir,
        };
        emulator.launch().await;
        emulator
    }

    /// `127.0.0.1:<port>`, as a BMC's address.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stops the emulator and starts it again on the same port with a new certificate (a
    /// replaced BMC certificate, or an impostor).
    pub async fn restart_with_new_certificate(&mut self) {
        self.stop();
        self.launch().await;
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    async fn launch(&mut self) {
        let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
        let cert = self.dir.path().join("bmc.crt");
        let key = self.dir.path().join("bmc.key");
        std::fs::write(&cert, made.cert.pem()).unwrap();
        std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
        let systems: Vec<String> = self
            .systems
            .iter()
            .enumerate()
            .map(|(i, s)| {
                format!(
                    "{{'uuid': '{}', 'name': 'fake{i}', 'power_state': 'Off', 'external_notifier': {}, 'nics': [{{'mac': '{}', 'ip': '192.168.200.{}'}}]}}",
                    s.uuid,
                    if self.notify.is_some() { "True" } else { "False" },
                    s.mac,
                    i % 250 + 1
                )
            })
            .collect();
        let config = self.dir.path().join("emulator.conf");
        std::fs::write(
            &config,
            format!(
                "SUSHY_EMULATOR_LISTEN_IP = '127.0.0.1'\n\
                 SUSHY_EMULATOR_LISTEN_PORT = {port}\n\
                 SUSHY_EMULATOR_SSL_CERT = '{cert}'\n\
                 SUSHY_EMULATOR_SSL_KEY = '{key}'\n\
                 SUSHY_EMULATOR_AUTH_FILE = '{auth}'\n\
                 SUSHY_EMULATOR_FAKE_DRIVER = True\n\
                 SUSHY_EMULATOR_FAKE_SYSTEMS = [{systems}]\n\
                 EXTERNAL_NOTIFICATION_URL = '{notify}'\n",
                port = self.port,
                cert = cert.display(),
                key = key.display(),
                auth = self.dir.path().join("htpasswd").display(),
                systems = systems.join(", "),
                notify = self.notify.as_deref().unwrap_or("http://127.0.0.1:9"),
            ),
        )
        .unwrap();
        let log = std::fs::File::create(self.dir.path().join("emulator.log")).unwrap();
        self.child = Command::new(python::tool("sushy-emulator"))
            .arg("--config")
            .arg(&config)
            // the fake driver keeps its systems in $TMPDIR/sushy-emulator: one of its own,
            // kept across a restart
            .env("TMPDIR", self.dir.path())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the Redfish emulator exited ({status}): {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "the Redfish emulator did not listen: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// What the emulator logged (each request, and errors).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("emulator.log")
    }
}

impl Drop for RedfishEmulator {
    fn drop(&mut self) {
        self.stop();
    }
}
