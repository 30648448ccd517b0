//! A crowbar installation on real namespace nodes: a test database, a rig of sshd nodes that
//! authorize a fresh daemon key, a barclamp directory of script roles (`rig`), and — once
//! started — the annealer, runner and prober running in-process with the script jig.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use crowbar::{
    access::{AccessSettings, NodeAccess},
    annealer::{AnnealerSettings, Engine},
    db::{
        events::Actor,
        nodes::{self, NewNode},
    },
    hooks::Hooks,
    jig::{JigRegistry, ScriptJig},
    probe::{ProbeSettings, Prober},
    ssh::ClientKey,
};
use serde_json::Value;
use sqlx::PgPool;
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

use super::{
    db::test_db,
    nodes::{NODE_STATE_MOUNT, NodeRig},
    world,
};

/// The test barclamp: a three-level chain, an independent role, a failing role with a
/// child, and a role that echoes hostile data.
pub const RIG_BARCLAMP: &str = r#"
barclamp: {name: rig, parent: core, description: "script roles for tests on namespace nodes"}
roles:
  - name: rig-server
    jig: script
    timeout: 60
    template: {rig: {state: /var/lib/node-state, server_sleep: 0}}
    attribs:
      - {name: rig-server-address, map: rig/server/address, description: "the server's name, from its wall"}
  - name: rig-client
    jig: script
    flags: [implicit]
    requires: [rig-server]
    wants-attribs: [rig-server-address]
    timeout: 60
    template: {rig: {state: /var/lib/node-state}}
  - name: rig-app
    jig: script
    requires: [rig-client]
    timeout: 60
    template: {rig: {state: /var/lib/node-state}}
  - name: rig-solo
    jig: script
    timeout: 60
    template: {rig: {state: /var/lib/node-state, solo_sleep: 0}}
  - name: rig-fail
    jig: script
    timeout: 60
    template: {rig: {state: /var/lib/node-state}}
  - name: rig-fail-child
    jig: script
    requires: [rig-fail]
    timeout: 60
    template: {rig: {state: /var/lib/node-state}}
  - name: rig-hostile
    jig: script
    timeout: 60
    template: {rig: {state: /var/lib/node-state}, hostile: {}}
"#;

/// Appends `<ns-timestamp> <role> <run dir> [extra]` to the node's `order` file.
const LOG_LINE: &str = r#"state=$(read_attribute rig/state)
printf '%s %s %s %s\n' "$(date +%s%N)" "$CROWBAR_ROLE" "$CROWBAR_DIR" "${extra:-}" >>"$state/order"
"#;

/// The scripts of the `rig` roles: (role, file, body).
pub fn rig_scripts() -> Vec<(&'static str, &'static str, String)> {
    vec![
        (
            "rig-server",
            "10-serve.sh",
            format!(
                "sleep \"$(read_attribute rig/server_sleep 0)\"\n{LOG_LINE}write_attribute rig/server/address \"$(hostname)\"\necho \"server up on $(hostname)\"\n"
            ),
        ),
        (
            "rig-client",
            "10-client.sh",
            format!(
                "extra=$(read_attribute rig/server/address)\n{LOG_LINE}write_attribute rig/client/server \"$extra\"\n"
            ),
        ),
        ("rig-app", "10-app.sh", LOG_LINE.to_string()),
        (
            "rig-app",
            "20-app-second.sh",
            "extra=second\n".to_string() + LOG_LINE + "write_attribute --json rig/app/ok true\n",
        ),
        (
            "rig-solo",
            "10-solo.sh",
            format!("sleep \"$(read_attribute rig/solo_sleep 0)\"\n{LOG_LINE}"),
        ),
        (
            "rig-fail",
            "10-fail.sh",
            "echo boom on stdout\necho boom on stderr >&2\nexit 3\necho never\n".to_string(),
        ),
        ("rig-fail-child", "10-child.sh", LOG_LINE.to_string()),
        (
            "rig-hostile",
            "10-hostile.sh",
            r#"state=$(read_attribute rig/state)
while IFS= read -r key; do
    value=$(read_attribute "hostile/$key")
    printf '%s\n' "$value" >>"$state/values"
    write_attribute "echo/$key" "$value"
done < <(get_keys hostile)
echo "echoed $(get_keys hostile | wc -l) values"
"#
            .to_string(),
        ),
    ]
}

pub struct Site {
    pub pool: PgPool,
    pub rig: NodeRig,
    pub access: Arc<NodeAccess>,
    pub probe: ProbeSettings,
    pub key: ClientKey,
    /// The barclamp directory (`rig.yml`, `rig/roles/<role>/*`).
    pub barclamps: PathBuf,
    pub shutdown: CancellationToken,
    /// The nodes' own API tokens, in rig order.
    pub tokens: Vec<String>,
    engine: Option<Engine>,
    _dirs: Vec<TempDir>,
}

/// How a test site reaches and probes its nodes.
#[derive(Debug, Clone)]
pub struct SiteSettings {
    pub access: AccessSettings,
    pub probe: ProbeSettings,
}

/// Settings for tests: fast timeouts, with scheduled probes every `interval` (0: off).
pub fn site_settings(interval: Duration) -> SiteSettings {
    SiteSettings {
        access: AccessSettings {
            // Short enough that a dead node is seen within seconds, long enough that a
            // live one still answers on a machine busy with the whole test suite (two
            // attempts of 400 ms were once missed there).
            ping_timeout: Duration::from_secs(1),
            ping_attempts: 3,
            ssh_connect_timeout: Duration::from_secs(3),
            ssh_auth_timeout: Duration::from_secs(5),
            ssh_command_timeout: Duration::from_secs(20),
            ..AccessSettings::default()
        },
        probe: ProbeSettings {
            probe_interval: interval,
            ..ProbeSettings::default()
        },
    }
}

impl Site {
    /// A database with the shipped and `rig` barclamps, `n` rig nodes registered with their
    /// addresses (not alive yet: the first probe finds them).
    pub async fn new(n: usize, settings: SiteSettings) -> Site {
        let mut site = Site::unregistered(n, settings).await;
        for node in site.rig.nodes() {
            let mut conn = site.pool.acquire().await.unwrap();
            let (_, token) = nodes::create(
                &mut conn,
                &NewNode {
                    name: node.name().to_string(),
                    address: Some(node.addr().to_string()),
                    ..Default::default()
                },
                &Actor::token("test"),
            )
            .await
            .expect("create node");
            site.tokens.push(token);
        }
        site
    }

    /// Like [`Site::new`], but crowbar knows none of the rig's machines yet (for discovery).
    pub async fn unregistered(n: usize, settings: SiteSettings) -> Site {
        let db = test_db().await;
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(24)
            .connect(db.url.expose())
            .await
            .expect("connect to the test database");
        world::load_barclamps(&pool).await;
        let keys = tempfile::tempdir().unwrap();
        let key = ClientKey::load_or_create(&keys.path().join("ssh")).unwrap();
        let public = key.public_openssh();
        let rig = tokio::task::spawn_blocking(move || NodeRig::start(n, &public))
            .await
            .unwrap();

        let dir = tempfile::tempdir().unwrap();
        let barclamps = dir.path().to_path_buf();
        std::fs::write(barclamps.join("rig.yml"), RIG_BARCLAMP).unwrap();
        for (role, file, body) in rig_scripts() {
            write_script(&barclamps, role, file, &body);
        }
        crowbar::barclamps::import_dir(&pool, &barclamps)
            .await
            .expect("the rig barclamp imports");
        let access = NodeAccess::new(pool.clone(), key.clone(), settings.access);
        Site {
            pool,
            rig,
            access,
            probe: settings.probe,
            key,
            barclamps,
            shutdown: CancellationToken::new(),
            tokens: Vec::new(),
            engine: None,
            _dirs: vec![keys, dir],
        }
    }

    /// `crowbar-access` keeps the hostname it writes in the node's state directory
    /// (system-wide deployment-role data), where the test reads it from this machine's
    /// side. (The node's /etc is its own overlay, so writing /etc/hostname would be safe
    /// too.)
    pub async fn keep_hostname_files_in_node_state(&self) {
        sqlx::query(
            "INSERT INTO deployment_roles (deployment_id, role_id, proposed_data, committed_data)
             SELECT d.id, r.id, $1, $1 FROM deployments d, roles r
              WHERE d.system AND r.name = 'crowbar-access'",
        )
        .bind(serde_json::json!({"crowbar": {"access": {
            "hostname_file": format!("{NODE_STATE_MOUNT}/hostname")
        }}}))
        .execute(&self.pool)
        .await
        .expect("deployment-role data for crowbar-access");
    }

    pub fn prober(&self) -> Prober {
        Prober {
            access: self.access.clone(),
            settings: self.probe.clone(),
        }
    }

    /// Starts annealer, runner (with the script jig) and the scheduled prober.
    pub fn start(&mut self) {
        self.start_with(|jigs| jigs, Hooks::default());
    }

    /// [`Site::start`] with more jigs (added to the builtin and script jigs) and hooks.
    pub fn start_with(&mut self, jigs: impl FnOnce(JigRegistry) -> JigRegistry, hooks: Hooks) {
        let settings = AnnealerSettings {
            sweep_interval: Duration::from_secs(1),
            run_timeout: Duration::from_secs(60),
            ..AnnealerSettings::default()
        };
        let engine = Engine::start(
            self.pool.clone(),
            &settings,
            jigs(JigRegistry::builtin().with(ScriptJig::new(self.access.clone()))),
            hooks,
            Duration::from_secs(5),
            self.shutdown.clone(),
        );
        engine.tracker.reopen();
        engine
            .tracker
            .spawn(self.prober().run(self.shutdown.clone()));
        engine.tracker.close();
        self.engine = Some(engine);
    }

    /// Stops everything started and waits for it (bounded).
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(engine) = self.engine.take() {
            let _ = tokio::time::timeout(Duration::from_secs(20), engine.tracker.wait()).await;
        }
    }

    /// The rig node's name.
    pub fn name(&self, i: usize) -> String {
        self.rig.node(i).name().to_string()
    }

    /// Lines of the node's `order` file: (timestamp ns, role, run dir, extra).
    pub fn order(&self, i: usize) -> Vec<(u128, String, String, String)> {
        let text =
            std::fs::read_to_string(self.rig.node(i).state_dir().join("order")).unwrap_or_default();
        text.lines()
            .map(|line| {
                let mut f = line.splitn(4, ' ');
                (
                    f.next().unwrap().parse().unwrap(),
                    f.next().unwrap_or_default().to_string(),
                    f.next().unwrap_or_default().to_string(),
                    f.next().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    pub fn write_script(&self, role: &str, file: &str, body: &str) {
        write_script(&self.barclamps, role, file, body);
    }

    /// `alive` of the node.
    pub async fn alive(&self, i: usize) -> bool {
        sqlx::query_scalar("SELECT alive FROM nodes WHERE name = $1")
            .bind(self.name(i))
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    /// (actor, reason, changes) of the node's `node.updated` events, oldest first.
    pub async fn history(&self, i: usize) -> Vec<(String, String, Value)> {
        sqlx::query_as(
            "SELECT e.actor, e.reason, e.data->'changes' FROM events e JOIN nodes n ON n.id = e.node_id
              WHERE n.name = $1 AND e.type = 'node.updated' ORDER BY e.id",
        )
        .bind(self.name(i))
        .fetch_all(&self.pool)
        .await
        .unwrap()
    }

    /// Runs the shipped node-side report script inside rig node `i`'s network namespace.
    pub fn report(
        &self,
        i: usize,
        node_name: &str,
        token: &str,
        url: &str,
        what: &str,
    ) -> tokio::process::Child {
        let dir = self.barclamps.join(format!("report-{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        let token_file = dir.join("node.token");
        std::fs::write(&token_file, token).unwrap();
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("jigs/node/crowbar-node-report");
        tokio::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                self.rig.node(i).netns(),
                "env",
                "-i",
                "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
            ])
            .arg(format!("CROWBAR_URL={url}"))
            .arg(format!("CROWBAR_NODE={node_name}"))
            .arg(format!("CROWBAR_TOKEN_FILE={}", token_file.display()))
            .arg("CROWBAR_NODE_ENV=/nonexistent")
            .arg("CROWBAR_REPORT_RETRY_DELAY=0.2")
            .arg("CROWBAR_REPORT_TIMEOUT=30")
            .arg("bash")
            .arg(script)
            .args(what.split_whitespace())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("run the report script")
    }

    /// (started, finished) of the succeeded runs of `role` on the node named `node`, oldest
    /// first.
    pub async fn run_times(
        &self,
        node: &str,
        role: &str,
    ) -> Vec<(chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>)> {
        sqlx::query_as(
            "SELECT rr.started_at, rr.finished_at FROM run_records rr
               JOIN roles r ON r.id = rr.role_id JOIN nodes n ON n.id = rr.node_id
              WHERE rr.outcome = 'succeeded' AND r.name = $1 AND n.name = $2 ORDER BY rr.id",
        )
        .bind(role)
        .bind(node)
        .fetch_all(&self.pool)
        .await
        .unwrap()
    }

    /// Every noderole as (node, role, state, runlog): what a test shows when it gives up.
    pub async fn noderoles(&self) -> Vec<(String, String, i16, String)> {
        sqlx::query_as(
            "SELECT n.name, r.name, nr.state, nr.runlog FROM noderoles nr
               JOIN nodes n ON n.id = nr.node_id JOIN roles r ON r.id = nr.role_id ORDER BY nr.id",
        )
        .fetch_all(&self.pool)
        .await
        .unwrap()
    }

    /// Pins another key than rig node `i` presents (as after a reinstall), made in `dir`.
    pub async fn pin_another_host_key(&self, i: usize, dir: &Path) -> String {
        let other = crowbar::ssh::ClientKey::load_or_create(&dir.join("other"))
            .unwrap()
            .public_openssh();
        sqlx::query("UPDATE nodes SET host_key = $2 WHERE name = $1")
            .bind(self.name(i))
            .bind(&other)
            .execute(&self.pool)
            .await
            .unwrap();
        other
    }

    pub async fn noderole(&self, i: usize, role: &str) -> (i16, i32, String, Value) {
        sqlx::query_as(
            "SELECT nr.state, nr.run_count, nr.runlog, nr.wall FROM noderoles nr
               JOIN nodes n ON n.id = nr.node_id JOIN roles r ON r.id = nr.role_id
              WHERE n.name = $1 AND r.name = $2",
        )
        .bind(self.name(i))
        .bind(role)
        .fetch_one(&self.pool)
        .await
        .unwrap()
    }
}

/// Waits (bounded) for a report script; returns whether it succeeded and what it said.
pub async fn finished(child: tokio::process::Child) -> (bool, String) {
    let out = tokio::time::timeout(Duration::from_secs(40), child.wait_with_output())
        .await
        .expect("the report script finishes")
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

impl Drop for Site {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn write_script(barclamps: &Path, role: &str, file: &str, body: &str) {
    let dir = barclamps.join("rig/roles").join(role);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(file), format!("#!/usr/bin/env bash\n{body}")).unwrap();
}

/// Polls `check` every 100 ms until it holds; panics after `limit` with `what`.
pub async fn wait_for<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether every committed noderole is ACTIVE.
pub async fn converged(pool: &PgPool) -> bool {
    let not_active: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM noderoles nr JOIN deployments d ON d.id = nr.deployment_id
          WHERE d.state = 'committed' AND nr.state <> 0",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    not_active == 0
}

pub const STATE_MOUNT: &str = NODE_STATE_MOUNT;
