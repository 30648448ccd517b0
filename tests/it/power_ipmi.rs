//! The IPMI driver through the real `ipmitool` against pyghmi's IPMI 2.0 server: every
//! operation, confirmed by polling; a wrong password or a BMC that does not answer fails
//! after bounded tries with the BMC named; through a daemon, a cycle as a queued operation,
//! with the password in no process's command line and in no environment but ipmitool's
//! own while it runs.

use std::time::{Duration, Instant};

use crowbar::{
    power::{
        BmcError, BmcTimeouts, BootDevice, PowerAction, PowerState,
        confirm::{self, Polling},
        ipmi::{Ipmi, IpmiBmc},
    },
    secret::Secret,
};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::{
    daemon::{Daemon, DaemonOptions, DataDir},
    db::test_db,
    ipmi::{IpmiEmulator, PASSWORD, USER},
    world::node,
};

fn quick() -> BmcTimeouts {
    BmcTimeouts {
        connect: Duration::from_secs(1),
        read: Duration::from_secs(5),
        attempts: 2,
        backoff: Duration::from_millis(200),
    }
}

fn driver(port: u16, password: &str) -> Ipmi {
    Ipmi::new(
        IpmiBmc {
            host: "127.0.0.1".into(),
            port,
            username: USER.into(),
            password: Secret::new(password),
        },
        quick(),
    )
}

fn polling() -> Polling {
    Polling {
        within: Duration::from_secs(30),
        every: Duration::from_millis(300),
        unseen_off: Duration::from_secs(5),
    }
}

#[tokio::test]
async fn ipmi_power_and_boot_are_changed_through_ipmitool_and_confirmed() {
    let bmc = IpmiEmulator::start().await;
    let ipmi = driver(bmc.port, PASSWORD);
    assert_eq!(ipmi.power_state().await.unwrap(), PowerState::Off);
    let read = || ipmi.power_state();

    ipmi.power(PowerAction::On, PowerState::Off).await.unwrap();
    confirm::reached(read, PowerState::On, polling(), "b")
        .await
        .unwrap();
    ipmi.boot_from(BootDevice::Pxe, true).await.unwrap();
    assert!(bmc.log().contains("bootdev network"), "{}", bmc.log());
    ipmi.power(PowerAction::Cycle, PowerState::On)
        .await
        .unwrap();
    confirm::restarted(read, polling(), "b").await.unwrap();
    ipmi.power(PowerAction::Off, PowerState::On).await.unwrap();
    confirm::reached(read, PowerState::Off, polling(), "b")
        .await
        .unwrap();
    ipmi.power(PowerAction::On, PowerState::Off).await.unwrap();
    confirm::reached(read, PowerState::On, polling(), "b")
        .await
        .unwrap();
    ipmi.power(PowerAction::ForceOff, PowerState::On)
        .await
        .unwrap();
    confirm::reached(read, PowerState::Off, polling(), "b")
        .await
        .unwrap();
    let log = bmc.log();
    assert_eq!(
        log.lines()
            .filter(|l| l.starts_with("power "))
            .collect::<Vec<_>>(),
        [
            "power on",
            "power off",
            "power on",
            "power off",
            "power on",
            "power off"
        ],
        "{log}"
    );
    assert_eq!(ipmi.inventory().await.unwrap().macs, Vec::<String>::new());
}

#[tokio::test]
async fn a_wrong_password_and_a_silent_bmc_fail_after_bounded_tries_naming_the_bmc() {
    let bmc = IpmiEmulator::start().await;
    let started = Instant::now();
    let wrong = driver(bmc.port, "not-the-password")
        .power_state()
        .await
        .unwrap_err();
    assert!(matches!(wrong, BmcError::Transient(_)), "{wrong}");
    let text = wrong.to_string();
    assert!(
        text.starts_with(&format!(
            "BMC 127.0.0.1:{}: no IPMI session for user crowbar",
            bmc.port
        )),
        "{text}"
    );
    assert!(text.contains("(tried 2 times)"), "{text}");
    assert!(!text.contains("not-the-password"));
    // nothing listens on this port at all
    let silent = driver(crate::support::free_port(), PASSWORD)
        .power_state()
        .await
        .unwrap_err();
    assert!(silent.is_transient(), "{silent}");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "bounded: {:?}",
        started.elapsed()
    );
}

/// Every process's command line, and the environment of every process but ipmitool's,
/// checked for `secret`; returns how many ipmitool processes were seen.
fn scan_processes(secret: &str, leaks: &mut Vec<String>) -> usize {
    let mut ipmitools = 0;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if !path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        {
            continue;
        }
        let read_cmdline = || {
            let cmdline = std::fs::read(path.join("cmdline")).unwrap_or_default();
            String::from_utf8_lossy(&cmdline).replace('\0', " ")
        };
        let cmdline = read_cmdline();
        if cmdline.contains(secret) {
            leaks.push(format!("command line of {}: {cmdline}", path.display()));
        }
        let is_ipmitool = cmdline.starts_with("ipmitool ");
        ipmitools += usize::from(is_ipmitool);
        let environ = std::fs::read(path.join("environ")).unwrap_or_default();
        if !is_ipmitool && String::from_utf8_lossy(&environ).contains(secret) {
            // A process caught starting has no command line yet, and may be ipmitool by
            // the time its environment is read: only its own environment holds the password.
            let now = read_cmdline();
            if !now.starts_with("ipmitool ") {
                leaks.push(format!(
                    "environment of {} ({cmdline} / {now})",
                    path.display()
                ));
            }
        }
    }
    ipmitools
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_cycles_an_ipmi_machine_without_the_password_showing_anywhere() {
    const TOKEN: &str = "power-ipmi-test-token";
    let bmc = IpmiEmulator::start().await;
    let test = test_db().await;
    let data = DataDir::new();
    let daemon = Daemon::start(
        DaemonOptions::default()
            .data_dir(data.path())
            .env("CROWBAR_DATABASE_URL", test.url.expose())
            .env("CROWBAR_ADMIN_TOKEN", TOKEN),
    )
    .await;
    node(&test.pool, "i1", false).await;
    let (status, enrolled) = daemon
        .call(
            TOKEN,
            Method::PUT,
            "/api/v2/nodes/i1/bmc",
            Some(
                json!({"driver": "ipmi", "address": "127.0.0.1", "port": bmc.port,
                        "username": USER, "password": PASSWORD}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{enrolled}");
    assert_eq!(enrolled["driver"], "ipmi");
    let (status, refused) = daemon
        .call(
            TOKEN,
            Method::PUT,
            "/api/v2/nodes/i1/bmc",
            Some(
                json!({"driver": "ipmi", "address": "127.0.0.1", "system": "1",
                        "username": USER, "password": PASSWORD}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");

    let (status, op) = daemon
        .call(
            TOKEN,
            Method::POST,
            "/api/v2/nodes/i1/power",
            Some(json!({"action": "cycle"})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{op}");
    let mut leaks = Vec::new();
    let mut seen = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    let done = loop {
        seen += scan_processes(PASSWORD, &mut leaks);
        let (_, now) = daemon
            .call(
                TOKEN,
                Method::GET,
                &format!("/api/v2/power_ops/{}", op["id"]),
                None,
            )
            .await;
        if now["state"] == "done" || now["state"] == "failed" {
            break now;
        }
        assert!(Instant::now() < deadline, "{now}");
    };
    assert_eq!(done["state"], "done", "{done}");
    assert!(seen > 0, "the scan saw ipmitool run at least once");
    assert_eq!(leaks, Vec::<String>::new());
    let (_, power) = daemon
        .call(TOKEN, Method::GET, "/api/v2/nodes/i1/power", None)
        .await;
    assert_eq!(power["state"], "on", "{power}");
    for (what, text) in [("stdout", daemon.stdout()), ("stderr", daemon.stderr())] {
        assert!(
            !text.contains(PASSWORD),
            "the password is in the daemon's {what}"
        );
    }
}
