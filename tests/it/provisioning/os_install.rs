//! The OS-install handshake on real parts: namespace machines discover themselves, get
//! annealed, and are installed by `provisioner-os-install` while dnsmasq serves their DHCP
//! data. A machine's "reboot" is its sshd going down and up; its reports go through its
//! node token over HTTP with the shipped report script; it checks, at every boot, that the
//! provisioner's data was already what the handshake promises.

use std::{path::Path, time::Duration};

use axum::http::StatusCode;
use crowbar::{
    hooks::Hooks,
    provisioner::{
        Provisioner, ProvisionerSettings,
        dnsmasq::{self, DnsmasqJig},
        install::OsInstallJig,
    },
};
use serde_json::{Value, json};

use crate::support::{
    app::TestApp,
    bmc::{PASSWORD as BMC_PASSWORD, RedfishEmulator, USER as BMC_USER},
    nodes::{NODE_STATE_MOUNT, RigNode, RigNodeExt},
    site::{Site, converged, finished, site_settings, wait_for},
};

const ROUNDS: usize = 20;
const OS: &str = "ubuntu-22.04-install";
const LIMIT: Duration = Duration::from_secs(60);

/// What a machine saw that the handshake should have made impossible.
type Violations = Vec<String>;

struct World {
    site: Site,
    app: TestApp,
    url: String,
    http: reqwest::Client,
    dnsmasq_dir: tempfile::TempDir,
}

impl World {
    async fn boot_script(&self, mac: &str) -> String {
        self.http
            .get(format!("{}/boot/{mac}", self.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    async fn install_state(&self, name: &str, token: &str) -> Option<String> {
        let reply = self
            .http
            .get(format!("{}/api/v2/nodes/{name}/install", self.url))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        if reply.status() != StatusCode::OK {
            return None;
        }
        let body: Value = reply.json().await.unwrap();
        body["state"].as_str().map(str::to_string)
    }

    fn reserved(&self, node: &RigNode, address: &str) -> bool {
        let hosts = std::fs::read_to_string(self.dnsmasq_dir.path().join(dnsmasq::DHCP_HOSTS_FILE))
            .unwrap_or_default();
        hosts
            .lines()
            .any(|l| l.starts_with(&format!("{},{address},", node.mac())))
    }

    async fn report(&self, i: usize, name: &str, token: &str, what: &str) {
        let (ok, log) = finished(self.site.report(i, name, token, &self.url, what)).await;
        assert!(ok, "report {what} of {name}: {log}");
    }

    /// The machine's side of the install, from the reboot (its reboot command, or its BMC's
    /// network boot and power cycle when `bmc`) to the installed boot.
    async fn play_install(&self, i: usize, name: &str, token: &str, bmc: bool) -> Violations {
        let node = self.site.rig.node(i);
        let (mac, address) = (node.mac(), node.addr().to_string());
        let request = node.state_dir().join("reboot");
        let mut seen = Violations::new();
        if bmc {
            wait_for(
                LIMIT,
                "the BMC boots the machine from the network",
                || async { self.bmc_cycled(name).await },
            )
            .await;
        } else {
            wait_for(LIMIT, "the provisioner reboots the machine", || async {
                request.exists()
            })
            .await;
            std::fs::remove_file(&request).unwrap();
        }
        // rebooted now: DHCP and the boot script must already say "install"
        if !self.reserved(node, &address) {
            seen.push(format!(
                "{name} rebooted before dnsmasq served its reservation"
            ));
        }
        let script = self.boot_script(&mac).await;
        if !script.contains(&format!("crowbar: {OS} for {name}")) {
            seen.push(format!("{name} rebooted into something else:\n{script}"));
        }
        tokio::task::block_in_place(|| node.kill_sshd());
        self.report(i, name, token, "shutdown").await;
        // the installer runs, reports the local disk, and waits for the confirmation
        self.report(i, name, token, "bootenv local").await;
        wait_for(LIMIT, "the provisioner confirms the install", || async {
            self.install_state(name, token).await.as_deref() == Some("installed")
        })
        .await;
        let script = self.boot_script(&mac).await;
        if !script.contains(&format!("crowbar: local for {name}")) {
            seen.push(format!(
                "{name} was confirmed before its boot script was local:\n{script}"
            ));
        }
        if !self.reserved(node, &address) {
            seen.push(format!("{name} was confirmed without its reservation"));
        }
        // the final reboot: the installed system comes up and says so
        tokio::task::block_in_place(|| node.start_sshd().expect("start sshd"));
        self.report(i, name, token, "boot").await;
        seen
    }
}

impl World {
    /// Whether the node's BMC was asked to boot it from the network and confirmed it on.
    async fn bmc_cycled(&self, name: &str) -> bool {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM power_ops o JOIN nodes n ON n.id = o.node_id
                             WHERE n.name = $1 AND o.action = 'pxe-once' AND o.state = 'done')",
        )
        .bind(name)
        .fetch_one(&self.site.pool)
        .await
        .unwrap()
    }
}

async fn noderole(pool: &sqlx::PgPool, node: &str, role: &str) -> (i16, i32) {
    sqlx::query_as(
        "SELECT nr.state, nr.run_count FROM noderoles nr JOIN nodes n ON n.id = nr.node_id
           JOIN roles r ON r.id = nr.role_id WHERE n.name = $1 AND r.name = $2",
    )
    .bind(node)
    .bind(role)
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn setup(machines: usize) -> World {
    let mut site = Site::unregistered(machines, site_settings(Duration::ZERO)).await;
    site.keep_hostname_files_in_node_state().await;
    let dnsmasq_dir = tempfile::tempdir().unwrap();
    for file in [dnsmasq::DHCP_HOSTS_FILE, dnsmasq::HOSTS_FILE] {
        std::fs::write(dnsmasq_dir.path().join(file), "").unwrap();
    }
    let config = super::dnsmasq::dnsmasq_config(&site.rig, dnsmasq_dir.path());
    site.rig
        .start_dnsmasq(&config, &dnsmasq_dir.path().join(dnsmasq::PID_FILE));

    let gateway = site.rig.gateway();
    let listener = tokio::net::TcpListener::bind((gateway, 0)).await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = TestApp::on(site.pool.clone(), None).await;
    tokio::spawn(axum::serve(listener, app.router()).into_future());

    let settings = ProvisionerSettings {
        provisioner_url: Some(url.clone()),
        reboot_command: format!("touch {NODE_STATE_MOUNT}/reboot"),
        ..ProvisionerSettings::default()
    };
    let provisioner = Provisioner::new(&settings, "127.0.0.1:3000".parse().unwrap()).unwrap();
    let (pool, access, dir) = (
        site.pool.clone(),
        site.access.clone(),
        dnsmasq_dir.path().to_path_buf(),
    );
    site.start_with(
        move |jigs| {
            jigs.with(DnsmasqJig::new(pool.clone(), dir, dnsmasq::DEFAULT_SETTLE))
                .with(OsInstallJig::new(
                    pool,
                    access,
                    provisioner,
                    settings.reboot_command.clone(),
                ))
        },
        Hooks::default()
            .with(dnsmasq::DatabaseHooks::dhcp())
            .with(dnsmasq::DatabaseHooks::dns()),
    );
    // the DHCP and DNS databases on the admin node; machines register on the rig's subnet
    super::databases_on_admin_node(&app).await;
    let (base, _) = site.rig.subnet();
    super::admin_network(&app, &format!("{base}/26")).await;
    World {
        site,
        app,
        url,
        http: crate::support::client_builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap(),
        dnsmasq_dir,
    }
}

/// A machine registering at `/discover` with its MAC and address: the answer.
async fn discover(world: &World, i: usize) -> Value {
    let node = world.site.rig.node(i);
    world
        .http
        .post(format!("{}/discover", world.url))
        .json(&json!({"mac": node.mac(), "address": node.addr().to_string()}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// One machine from discovery to its installed system; returns its name and token.
async fn install_one(world: &World, i: usize) -> (String, String) {
    let discovered = discover(world, i).await;
    let name = discovered["name"].as_str().unwrap().to_string();
    let token = discovered["token"].as_str().unwrap().to_string();
    world.report(i, &name, &token, "boot").await;
    managed(world, &name).await;
    install(world, i, &name, &token, false).await;
    (name, token)
}

async fn managed(world: &World, name: &str) {
    wait_for(LIMIT, "the machine is managed", || async {
        noderole(&world.site.pool, name, "crowbar-managed-node")
            .await
            .0
            == 0
    })
    .await;
}

/// Machine `i`, node `name`, installed by `provisioner-os-install` (rebooted through its
/// BMC when `bmc`), the handshake checked from the machine's side.
async fn install(world: &World, i: usize, name: &str, token: &str, bmc: bool) {
    world
        .app
        .bind(name, "provisioner-os-install", "system")
        .await;
    world
        .app
        .put(&format!("/api/v2/nodes/{name}/commit"))
        .send()
        .await
        .status(StatusCode::OK);
    let violations = world.play_install(i, name, token, bmc).await;
    assert!(violations.is_empty(), "round {i}: {violations:#?}");
    wait_for(
        LIMIT,
        "the install finishes and the node converges",
        || async {
            noderole(&world.site.pool, name, "provisioner-os-install").await == (0, 1)
                && converged(&world.site.pool).await
        },
    )
    .await;
    let (bootenv, state): (String, String) = sqlx::query_as(
        "SELECT n.bootenv, i.state FROM nodes n JOIN os_installs i ON i.node_id = n.id WHERE n.name = $1",
    )
    .bind(name)
    .fetch_one(&world.site.pool)
    .await
    .unwrap();
    assert_eq!((bootenv.as_str(), state.as_str()), ("local", "done"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_os_install_handshake_converges_twenty_times_in_a_row() {
    let mut world = setup(ROUNDS).await;
    let started = std::time::Instant::now();
    let mut installed = Vec::new();
    for i in 1..=ROUNDS {
        installed.push(install_one(&world, i).await);
    }
    assert_eq!(installed.len(), ROUNDS);
    eprintln!("{ROUNDS} installs in a row took {:?}", started.elapsed());

    // os-install never runs twice: machine 1 reboots again; its install is skipped
    let (name, token) = installed.swap_remove(0);
    world.report(1, &name, &token, "boot").await;
    wait_for(LIMIT, "machine 1 converges again", || async {
        noderole(&world.site.pool, &name, "provisioner-os-install").await == (0, 2)
            && converged(&world.site.pool).await
    })
    .await;
    let outcomes: Vec<String> = sqlx::query_scalar(
        "SELECT rr.outcome FROM run_records rr JOIN roles r ON r.id = rr.role_id
           JOIN nodes n ON n.id = rr.node_id
          WHERE r.name = 'provisioner-os-install' AND n.name = $1 ORDER BY rr.id",
    )
    .bind(&name)
    .fetch_all(&world.site.pool)
    .await
    .unwrap();
    assert_eq!(outcomes, ["succeeded", "skipped"]);
    assert!(!Path::new(&world.site.rig.node(1).state_dir().join("reboot")).exists());
    world.site.stop().await;
}

/// The emulator's word that a system's power change applied and it is on: the machine
/// boots. Its uuid goes to the channel.
async fn boots_listener() -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let app = axum::Router::new().fallback(move |axum::Json(system): axum::Json<Value>| {
        let tx = tx.clone();
        async move {
            if system["power_state"] == "On" && system["pending_power"].is_null() {
                let _ = tx.send(system["uuid"].as_str().unwrap_or_default().to_string());
            }
            StatusCode::NO_CONTENT
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(axum::serve(listener, app).into_future());
    (url, rx)
}

/// The next boot of `system` the emulator told of (bounded wait).
async fn next_boot(boots: &mut tokio::sync::mpsc::UnboundedReceiver<String>, system: &str) {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let uuid = tokio::time::timeout_at(deadline, boots.recv())
            .await
            .unwrap_or_else(|_| panic!("{system} did not boot within {LIMIT:?}"))
            .expect("the listener runs");
        if uuid == system {
            return;
        }
    }
}

/// From a rack that is off to installed nodes, ten machines in a row: an admin makes each
/// node and enrolls its BMC (nothing else: no MAC, no address); `discover` reads the MAC from
/// the BMC, sets the next boot to the network and powers the machine on; the emulator tells
/// the rig the machine booted; it boots what `/boot/<mac>` says (discovery) and registers,
/// becoming the admin's node; `provisioner-os-install` then reboots it through the BMC into
/// the installer (a network boot once and a confirmed power cycle, no reboot command over
/// SSH) and the handshake completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn powered_off_machines_are_discovered_and_installed_through_their_bmcs_ten_times() {
    const MACHINES: usize = 10;
    let mut world = setup(MACHINES).await;
    let (notify, mut boots) = boots_listener().await;
    let macs = (1..=MACHINES)
        .map(|i| world.site.rig.node(i).mac())
        .collect();
    let emulator = RedfishEmulator::start_with(macs, Some(notify)).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let worker = crowbar::power::worker::PowerWorker {
        pool: world.site.pool.clone(),
        control: world.app.power.clone(),
        settings: Default::default(),
        shutdown_grace: Duration::from_secs(5),
    }
    .start(stop.clone());
    let started = std::time::Instant::now();
    for i in 1..=MACHINES {
        let machine = world.site.rig.node(i);
        let mac = machine.mac();
        let system = emulator.systems[i - 1].uuid.clone();
        // the machine is off
        tokio::task::block_in_place(|| machine.kill_sshd());
        let name = format!("rack-a{i}.example.com");
        world
            .app
            .post("/api/v2/nodes")
            .json(json!({ "name": name }))
            .send()
            .await
            .status(StatusCode::CREATED);
        world
            .app
            .put(&format!("/api/v2/nodes/{name}/bmc"))
            .json(json!({
                "driver": "redfish", "address": "127.0.0.1", "port": emulator.port,
                "system": system, "username": BMC_USER, "password": BMC_PASSWORD,
            }))
            .send()
            .await
            .status(StatusCode::OK);
        let op = world
            .app
            .post(&format!("/api/v2/nodes/{name}/power"))
            .json(json!({"action": "discover"}))
            .send()
            .await
            .status(StatusCode::ACCEPTED);
        assert_eq!(op.body["action"], "discover");

        // powered on: it boots from the network into what its boot script says
        next_boot(&mut boots, &system).await;
        let script = world.boot_script(&mac).await;
        let node = world
            .app
            .get(&format!("/api/v2/nodes/{name}"))
            .send()
            .await
            .status(StatusCode::OK);
        assert!(script.contains("crowbar: sledgehammer for "), "{script}");
        assert_eq!(node.body["awaiting_machine"], true, "{}", node.body);
        assert_eq!(node.body["mac"], mac.as_str(), "the MAC the BMC reported");
        tokio::task::block_in_place(|| machine.start_sshd().expect("start sshd"));
        let discovered = discover(&world, i).await;
        let token = discovered["token"].as_str().unwrap().to_string();
        world.report(i, &name, &token, "boot").await;
        managed(&world, &name).await;
        // a second registration with its MAC is refused: the node is the admin's
        let again = discover(&world, i).await;
        assert_eq!(again["error"]["code"], "already_discovered", "{again}");

        // installed through its BMC
        install(&world, i, &name, &token, true).await;
        let ops: Vec<(String, String)> = sqlx::query_as(
            "SELECT o.action, o.actor FROM power_ops o JOIN nodes n ON n.id = o.node_id
              WHERE n.name = $1 AND o.state = 'done' ORDER BY o.id",
        )
        .bind(&name)
        .fetch_all(&world.site.pool)
        .await
        .unwrap();
        assert_eq!(
            ops,
            [
                ("check".to_string(), "token:admin".to_string()),
                ("discover".to_string(), "token:admin".to_string()),
                ("pxe-once".to_string(), "jig:os-install".to_string())
            ]
        );
        assert!(
            !machine.state_dir().join("reboot").exists(),
            "no reboot command over SSH"
        );
    }
    eprintln!(
        "{MACHINES} machines from off to installed took {:?}",
        started.elapsed()
    );
    stop.cancel();
    let _ = worker.await;
    world.site.stop().await;
}
