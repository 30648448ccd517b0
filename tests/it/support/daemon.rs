//! A real `crowbar serve` process per test.
//!
//! [`Daemon::start`] runs the built binary with a fresh data directory (or a given one), on
//! `127.0.0.1:0`, learns the bound address from the daemon's own "ready" log line and waits
//! until `/readyz` answers 200. stdout and stderr go to files the test can read at any time.
//! [`Daemon::stop`] signals and waits with a deadline; dropping a running daemon kills it
//! and waits until no process of its data directory is left.
//!
//! ```ignore
//! let mut daemon = Daemon::start(DaemonOptions::default().arg("--log-format").arg("json")).await;
//! assert_eq!(daemon.get("/readyz").await.status(), 200);
//! assert!(daemon.stop().await.success());
//! ```

// Part of the API is there for the tests of later features (API, CLI, annealer).
#![allow(dead_code)]

use std::{
    fs,
    net::SocketAddr,
    os::unix::{fs::PermissionsExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use tempfile::TempDir;

/// How long [`Daemon::start`] waits for readiness unless told otherwise. Generous: a cold
/// start runs initdb, and the tests run in parallel on small machines.
pub const READY_TIMEOUT: Duration = Duration::from_secs(90);
/// How long [`Daemon::stop`] waits for the process to exit.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long teardown waits for the processes of a killed daemon's data directory to go.
const TEARDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// The line a daemon logs once it serves; its URL (`http://` or `https://`) follows.
const READY_MARK: &str = "crowbar is ready on ";

/// How to start a daemon. `Default` is zero configuration on a fresh data directory.
#[derive(Debug, Clone, Default)]
pub struct DaemonOptions {
    /// The data directory, e.g. one a stopped daemon used; `None`: a fresh one that the
    /// [`Daemon`] deletes when dropped.
    pub data_dir: Option<PathBuf>,
    /// The `--listen` value; `None`: `127.0.0.1:0`.
    pub listen: Option<String>,
    /// More arguments after `serve --data-dir D --listen L`.
    pub args: Vec<String>,
    /// More environment. The daemon never sees the test's own `CROWBAR_*`, `RUST_LOG` or
    /// `DATABASE_URL`; `RUST_BACKTRACE=1` is set so that any panic would show.
    pub env: Vec<(String, String)>,
    /// How long [`Daemon::start`] waits for `/readyz`; `None`: [`READY_TIMEOUT`].
    pub ready_timeout: Option<Duration>,
    /// Run the way the README's `scripts/run` does: in this directory (a checkout), with
    /// no `--data-dir`, so the data directory is `<dir>/var`. Overrides `data_dir`.
    pub checkout: Option<PathBuf>,
    /// The PEM certificate the daemon serves HTTPS with (see [`DaemonOptions::tls`]): the
    /// test's client trusts it and speaks HTTPS.
    pub tls_cert_pem: Option<String>,
    /// Another crowbar binary (an older build, for upgrades); `None`: this build's.
    pub program: Option<PathBuf>,
}

impl DaemonOptions {
    /// One of several daemons sharing the database at `url`: the global run cap `cap`, a
    /// 1 s sweep, and the admin token `token`.
    pub fn sharing(url: &str, token: &str, cap: i64) -> Self {
        DaemonOptions::default()
            .arg("--run-cap")
            .arg(cap.to_string())
            .arg("--sweep-interval")
            .arg("1s")
            .env("CROWBAR_DATABASE_URL", url)
            .env("CROWBAR_ADMIN_TOKEN", token)
    }
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }
    pub fn listen(mut self, addr: impl Into<String>) -> Self {
        self.listen = Some(addr.into());
        self
    }
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }
    /// Runs `binary` instead of this build's crowbar.
    pub fn program(mut self, binary: impl Into<PathBuf>) -> Self {
        self.program = Some(binary.into());
        self
    }
    pub fn checkout(mut self, dir: impl Into<PathBuf>) -> Self {
        self.checkout = Some(dir.into());
        self
    }
    /// Serve HTTPS with these PEM files (`--tls-cert`, `--tls-key`); the daemon's client
    /// trusts the certificate.
    pub fn tls(mut self, cert: &Path, key: &Path) -> Self {
        self.tls_cert_pem = Some(fs::read_to_string(cert).expect("read the certificate"));
        self.arg("--tls-cert")
            .arg(cert.display().to_string())
            .arg("--tls-key")
            .arg(key.display().to_string())
    }
}

/// A temporary directory for a daemon's data that the unprivileged `postgres` user can
/// reach (tempfile makes 0700 directories). The data directory is `<tmp>/data`.
pub struct DataDir {
    _tmp: TempDir,
    path: PathBuf,
}

impl DataDir {
    pub fn new() -> DataDir {
        let tmp = tempfile::Builder::new()
            .prefix("crowbar-it-")
            .tempdir()
            .expect("create a temporary directory");
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755))
            .expect("open up the temporary directory");
        let path = tmp.path().join("data");
        DataDir { _tmp: tmp, path }
    }

    /// `<tmp>/data`; crowbar creates it.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Default for DataDir {
    fn default() -> Self {
        DataDir::new()
    }
}

/// A running (or exited) `crowbar serve`.
pub struct Daemon {
    child: Child,
    status: Option<ExitStatus>,
    addr: Option<SocketAddr>,
    scheme: &'static str,
    data_dir: PathBuf,
    logs: TempDir,
    client: reqwest::Client,
    /// Dropped last: the data directory must outlive the processes using it.
    _owned_data: Option<DataDir>,
}

impl Daemon {
    /// Starts a daemon and waits until it is ready; panics with its stderr if it is not.
    pub async fn start(options: DaemonOptions) -> Daemon {
        let timeout = options.ready_timeout.unwrap_or(READY_TIMEOUT);
        let mut daemon = Daemon::spawn(options);
        if let Err(why) = daemon.wait_ready(timeout).await {
            panic!(
                "crowbar did not become ready: {why}\n--- stderr ---\n{}",
                daemon.stderr()
            );
        }
        daemon
    }

    /// Starts the process and returns at once (for daemons expected to fail).
    pub fn spawn(options: DaemonOptions) -> Daemon {
        let (data_dir, owned) = match (&options.checkout, options.data_dir) {
            (Some(checkout), _) => (checkout.join("var"), None),
            (None, Some(dir)) => (dir, None),
            (None, None) => {
                let owned = DataDir::new();
                (owned.path().to_path_buf(), Some(owned))
            }
        };
        let logs = tempfile::Builder::new()
            .prefix("crowbar-it-logs-")
            .tempdir()
            .expect("create a log directory");
        let mut cmd = match &options.program {
            Some(binary) => command(binary, &options.env),
            None => crowbar_command(&options.env),
        };
        cmd.arg("serve");
        match &options.checkout {
            Some(checkout) => cmd.current_dir(checkout),
            None => cmd.arg("--data-dir").arg(&data_dir),
        };
        cmd.arg("--listen")
            .arg(options.listen.as_deref().unwrap_or("127.0.0.1:0"))
            .args(&options.args)
            .stdout(log_file(&logs, "stdout"))
            .stderr(log_file(&logs, "stderr"));
        let child = cmd.spawn().expect("spawn crowbar");
        let (scheme, client) = match &options.tls_cert_pem {
            Some(pem) => ("https", https_client(pem, Duration::from_secs(30))),
            None => ("http", http_client(Duration::from_secs(30))),
        };
        Daemon {
            child,
            status: None,
            addr: None,
            scheme,
            data_dir,
            logs,
            client,
            _owned_data: owned,
        }
    }

    /// Waits until the daemon has logged its address and `/readyz` answers 200.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait() {
                return Err(format!("crowbar exited with {status}"));
            }
            if self.addr.is_none() {
                self.addr = ready_address(&self.stderr());
            }
            if let Some(addr) = self.addr
                && let Ok(response) = self
                    .client
                    .get(format!("{}://{addr}/readyz", self.scheme))
                    .send()
                    .await
                && response.status() == 200
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("not ready after {timeout:?}"));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// `http://<bound address>`, or `https://` when serving TLS.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr())
    }

    /// The address the daemon reported; panics before it did.
    pub fn addr(&self) -> SocketAddr {
        self.addr
            .expect("the daemon has not reported its address yet")
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The URL of the private cluster's `crowbar` database (over its Unix socket).
    pub fn postgres_url(&self) -> String {
        private_postgres_url(&self.data_dir)
    }

    /// The pid in the private cluster's `postmaster.pid`, if there is one.
    pub fn postmaster_pid(&self) -> Option<i32> {
        postmaster_pid(&self.data_dir)
    }

    /// A client for requests of one's own (30 s timeout, no proxy).
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// `GET <url><path>`; panics when there is no response.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.url()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// `method path` with `token` as bearer and an optional JSON body: the status and the
    /// answer (JSON, or the text as a JSON string).
    pub async fn call(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (reqwest::StatusCode, serde_json::Value) {
        let mut request = self
            .client
            .request(method.clone(), format!("{}{path}", self.url()))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let body = if text.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
        };
        (status, body)
    }

    pub fn stdout(&self) -> String {
        fs::read_to_string(self.logs.path().join("stdout")).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        fs::read_to_string(self.logs.path().join("stderr")).unwrap_or_default()
    }

    pub fn signal(&self, signal: Signal) {
        if self.status.is_none() {
            kill(Pid::from_raw(self.pid()), signal).expect("signal crowbar");
        }
    }

    /// The exit status once the process has exited (reaping it).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("wait for crowbar");
        }
        self.status
    }

    /// Waits up to `timeout` for the process to exit.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM, then waits for the exit; see [`Daemon::stop_with`].
    pub async fn stop(&mut self) -> ExitStatus {
        self.stop_with(Signal::SIGTERM).await
    }

    /// Sends `signal` and waits up to [`STOP_TIMEOUT`] for the exit; panics (after killing
    /// the process) when it does not exit in time.
    pub async fn stop_with(&mut self, signal: Signal) -> ExitStatus {
        self.signal(signal);
        match self.wait_exit(STOP_TIMEOUT).await {
            Some(status) => status,
            None => {
                self.kill();
                panic!(
                    "crowbar did not exit within {STOP_TIMEOUT:?} of {signal}\n--- stderr ---\n{}",
                    self.stderr()
                );
            }
        }
    }

    /// SIGKILL and reap, like a crash. Its PostgreSQL is left to stop by itself.
    pub fn kill(&mut self) -> ExitStatus {
        if let Some(status) = self.try_wait() {
            return status;
        }
        let _ = self.child.kill();
        let status = self.child.wait().expect("wait for crowbar");
        self.status = Some(status);
        status
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.try_wait().is_some() {
            return;
        }
        self.kill();
        let deadline = Instant::now() + TEARDOWN_TIMEOUT;
        while !processes_in(&self.data_dir).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// What a finished one-shot `crowbar` command printed.
#[derive(Debug)]
pub struct Outcome {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `crowbar <args>` to completion (same environment rules as [`DaemonOptions::env`]);
/// panics when it takes longer than `timeout`.
pub async fn run_crowbar(args: &[&str], env: &[(&str, &str)], timeout: Duration) -> Outcome {
    run_crowbar_with_input(args, env, "", timeout).await
}

/// [`run_crowbar`] with `input` on its standard input.
pub async fn run_crowbar_with_input(
    args: &[&str],
    env: &[(&str, &str)],
    input: &str,
    timeout: Duration,
) -> Outcome {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut cmd = crowbar_command(&env);
    // not the checkout: a developer's ./var (admin token, data) must not leak into tests
    cmd.args(args).current_dir(std::env::temp_dir());
    output(cmd, input, timeout, &format!("crowbar {args:?}")).await
}

/// Starts `crowbar <args>` with its stdout piped, for reading its output as it comes; the
/// process is killed when the child is dropped.
pub fn spawn_crowbar(args: &[&str], env: &[(&str, &str)]) -> tokio::process::Child {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut cmd = crowbar_command(&env);
    cmd.args(args)
        .current_dir(std::env::temp_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.kill_on_drop(true);
    cmd.spawn().expect("spawn crowbar")
}

/// Runs `script` with `bash -euo pipefail` in `dir` to completion, with the built `crowbar`
/// first on `PATH` (same environment rules as [`DaemonOptions::env`]); panics when it takes
/// longer than `timeout`.
pub async fn run_script(
    script: &str,
    dir: &Path,
    env: &[(&str, &str)],
    timeout: Duration,
) -> Outcome {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_crowbar"))
        .parent()
        .expect("the binary's directory");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    env.push(("PATH".into(), path));
    let mut cmd = command(Path::new("bash"), &env);
    cmd.args(["-euo", "pipefail", "-c", script])
        .current_dir(dir);
    output(cmd, "", timeout, "the script").await
}

async fn output(cmd: Command, input: &str, timeout: Duration, what: &str) -> Outcome {
    use tokio::io::AsyncWriteExt;
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.kill_on_drop(true)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let run = async {
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("run {what}: {e}"));
        let mut stdin = child.stdin.take().expect("piped stdin");
        stdin
            .write_all(input.as_bytes())
            .await
            .expect("write stdin");
        drop(stdin);
        child
            .wait_with_output()
            .await
            .unwrap_or_else(|e| panic!("run {what}: {e}"))
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(output) => Outcome {
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        },
        Err(_) => panic!("{what} did not finish within {timeout:?}"),
    }
}

/// The URL of the `crowbar` database of the private cluster under `data_dir`.
pub fn private_postgres_url(data_dir: &Path) -> String {
    format!(
        "postgres:///crowbar?host={}&user=crowbar",
        data_dir.join("postgres/run").display()
    )
}

/// The pid in `<data_dir>/postgres/postmaster.pid`, if there is one.
pub fn postmaster_pid(data_dir: &Path) -> Option<i32> {
    fs::read_to_string(data_dir.join("postgres/postmaster.pid"))
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

/// A live process, as /proc shows it.
#[derive(Debug, Clone)]
pub struct Proc {
    pub pid: i32,
    pub comm: String,
    pub cmdline: String,
}

/// Every live process whose command line mentions `dir` or whose working directory is
/// inside it: a daemon, its postmaster (`-D <dir>/postgres`) and the postmaster's children
/// (which retitle themselves but stay in the data directory). Zombies do not count.
pub fn processes_in(dir: &Path) -> Vec<Proc> {
    let needle = dir.to_string_lossy().into_owned();
    let me = std::process::id() as i32;
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter_map(|pid| {
            let base = PathBuf::from(format!("/proc/{pid}"));
            let cmdline = fs::read(base.join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            let in_dir = fs::read_link(base.join("cwd")).is_ok_and(|cwd| cwd.starts_with(dir));
            if !(cmdline.contains(&needle) || in_dir) {
                return None;
            }
            let comm = fs::read_to_string(base.join("comm")).ok()?;
            Some(Proc {
                pid,
                comm: comm.trim().to_owned(),
                cmdline: cmdline.trim().to_owned(),
            })
        })
        .collect()
}

/// Polls until no process of `dir` is left; returns the stragglers after `timeout`.
pub async fn wait_until_gone(dir: &Path, timeout: Duration) -> Result<(), Vec<Proc>> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = processes_in(dir);
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(left);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The address in the daemon's "ready" log line (text or JSON format).
fn ready_address(log: &str) -> Option<SocketAddr> {
    let start = log.find(READY_MARK)? + READY_MARK.len();
    let url = &log[start..];
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))?;
    let end = rest
        .find(|c: char| c.is_whitespace() || c == '"')
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

fn crowbar_command(env: &[(String, String)]) -> Command {
    command(Path::new(env!("CARGO_BIN_EXE_crowbar")), env)
}

/// `program` with the environment rules of [`DaemonOptions::env`], dying with its spawner.
fn command(program: &Path, env: &[(String, String)]) -> Command {
    let mut cmd = Command::new(program);
    for (key, _) in std::env::vars_os() {
        let name = key.to_string_lossy();
        if name.starts_with("CROWBAR_") || name == "RUST_LOG" || name == "DATABASE_URL" {
            cmd.env_remove(&key);
        }
    }
    cmd.env("RUST_BACKTRACE", "1")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null());
    // If the test run itself dies (Ctrl-C, a crash), its daemons shut down rather than
    // linger. The signal comes when the spawning *thread* ends: test threads outlive
    // their daemons, but don't spawn from short-lived threads (e.g. spawn_blocking).
    // SAFETY: prctl is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

fn log_file(logs: &TempDir, name: &str) -> fs::File {
    fs::File::create(logs.path().join(name)).expect("create a log file")
}

/// A plain-HTTP client that ignores proxy settings.
pub fn http_client(timeout: Duration) -> reqwest::Client {
    crate::support::client_builder()
        .timeout(timeout)
        // The daemon closes a connection idle between requests after its header timeout
        // (10 s by default); a client that keeps idle connections longer may pick one just
        // as the daemon closes it.
        .pool_idle_timeout(Duration::from_secs(5))
        .build()
        .expect("build an HTTP client")
}

/// A client that speaks HTTPS to servers with the PEM certificate `pem` (and only those),
/// ignoring proxy settings.
pub fn https_client(pem: &str, timeout: Duration) -> reqwest::Client {
    https_client_builder(pem)
        .timeout(timeout)
        .build()
        .expect("build an HTTPS client")
}

/// The builder of [`https_client`], for clients with more settings of their own.
pub fn https_client_builder(pem: &str) -> reqwest::ClientBuilder {
    use tokio_rustls::rustls::{
        self, ClientConfig, RootCertStore,
        pki_types::{CertificateDer, pem::PemObject},
    };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        roots.add(cert.expect("a PEM certificate")).unwrap();
    }
    let tls = ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    crate::support::client_builder().tls_backend_preconfigured(tls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ready_line_gives_the_address_in_both_formats() {
        let text = "2026-01-01T00:00:00Z  INFO crowbar is ready on http://127.0.0.1:4312 listen=127.0.0.1:4312\n";
        assert_eq!(ready_address(text), Some("127.0.0.1:4312".parse().unwrap()));
        let json = r#"{"level":"INFO","message":"crowbar is ready on http://[::1]:80","listen":"[::1]:80"}"#;
        assert_eq!(ready_address(json), Some("[::1]:80".parse().unwrap()));
        let tls = "INFO crowbar is ready on https://127.0.0.1:4312 listen=127.0.0.1:4312\n";
        assert_eq!(ready_address(tls), Some("127.0.0.1:4312".parse().unwrap()));
        assert_eq!(ready_address("starting\n"), None);
    }
}
