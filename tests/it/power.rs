//! The Redfish driver against a real Redfish emulator (sushy-tools) over HTTPS: reading and
//! changing power, confirmed by polling; the boot override and the system's MACs; wrong
//! credentials named at once; a changed certificate refusing everything; a hung BMC timing
//! out after bounded tries without holding up another; one answering HTTP 500 tried again a
//! bounded number of times, then named.

use std::time::{Duration, Instant};

use crowbar::{
    power::{
        BmcError, BmcTimeouts, BootDevice, PowerAction, PowerState,
        pinning::Fingerprint,
        redfish::{Redfish, RedfishBmc},
    },
    secret::Secret,
};

use crate::support::bmc::{PASSWORD, RedfishEmulator, USER};

fn bmc(emulator: &RedfishEmulator, password: &str) -> RedfishBmc {
    RedfishBmc {
        address: emulator.address(),
        username: USER.into(),
        password: Secret::new(password),
        system: None,
        pinned: None,
    }
}

/// The emulator's BMC with the right password and `pinned` as its certificate.
fn pinned_to(emulator: &RedfishEmulator, pinned: Option<Fingerprint>) -> Redfish {
    Redfish::new(
        RedfishBmc {
            pinned,
            ..bmc(emulator, PASSWORD)
        },
        BmcTimeouts::default(),
    )
    .unwrap()
}

/// A BMC that accepts connections and never answers: its address, and the task holding
/// them (dropped with the test).
async fn hung_bmc() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let holding = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (address, holding)
}

/// The emulator applies a change 1 to 11 s after accepting it.
const APPLIED: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(500);

#[tokio::test]
async fn redfish_power_and_boot_are_changed_and_confirmed_by_polling() {
    let emulator = RedfishEmulator::start(1).await;
    let first = Redfish::new(bmc(&emulator, PASSWORD), BmcTimeouts::default()).unwrap();
    assert_eq!(first.power_state().await.unwrap(), PowerState::Off);
    let pinned = first.presented_certificate().expect("first contact pins");

    let bmc = pinned_to(&emulator, Some(pinned));
    let inventory = bmc.inventory().await.unwrap();
    assert_eq!(inventory.macs, vec![emulator.systems[0].mac.clone()]);

    bmc.boot_from(BootDevice::Pxe, true).await.unwrap();
    let (target, _) = bmc.boot_override().await.unwrap();
    assert_eq!(target, "Pxe");

    bmc.power(PowerAction::On, PowerState::Off).await.unwrap();
    bmc.confirm(PowerState::On, APPLIED, POLL).await.unwrap();
    assert_eq!(bmc.power_state().await.unwrap(), PowerState::On);
    bmc.power(PowerAction::ForceOff, PowerState::On)
        .await
        .unwrap();
    bmc.confirm(PowerState::Off, APPLIED, POLL).await.unwrap();
    // a confirmation that cannot come says what it saw
    let stuck = bmc
        .confirm(PowerState::On, Duration::from_secs(1), POLL)
        .await
        .unwrap_err();
    assert!(stuck.to_string().contains("still off"), "{stuck}");
}

#[tokio::test]
async fn wrong_credentials_fail_at_once_naming_the_bmc_and_the_user() {
    let emulator = RedfishEmulator::start(1).await;
    let bmc = Redfish::new(bmc(&emulator, "not-the-password"), BmcTimeouts::default()).unwrap();
    let started = Instant::now();
    let e = bmc.power_state().await.unwrap_err();
    assert_eq!(
        e,
        BmcError::Terminal(format!(
            "BMC {}: HTTP 401 for user {USER}",
            emulator.address()
        ))
    );
    // terminal: not tried again (the back-off alone would take a second)
    assert!(started.elapsed() < Duration::from_secs(1));
    let shown = format!("{e} {e:?}");
    assert!(!shown.contains("not-the-password"), "{shown}");
}

#[tokio::test]
async fn a_changed_certificate_refuses_every_operation_until_accepted() {
    let mut emulator = RedfishEmulator::start(1).await;
    let first = Redfish::new(bmc(&emulator, PASSWORD), BmcTimeouts::default()).unwrap();
    first.power_state().await.unwrap();
    let pinned = first.presented_certificate().unwrap();

    emulator.restart_with_new_certificate().await;
    let bmc = pinned_to(&emulator, Some(pinned));
    for refused in [
        bmc.power_state().await.map(|_| ()),
        bmc.power(PowerAction::On, PowerState::Off).await,
        bmc.boot_from(BootDevice::Pxe, true).await,
    ] {
        match refused {
            Err(BmcError::CertificateChanged {
                address,
                pinned: was,
                presented,
            }) => {
                assert_eq!(address, emulator.address());
                assert_eq!(was, pinned.to_string());
                assert_ne!(presented, was);
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
    // the restarted emulator's log (it logs each request it answers) has none
    assert!(
        !emulator.log().contains("/redfish"),
        "a request reached the BMC with the changed certificate: {}",
        emulator.log()
    );
    // accepted: the new certificate pinned, operations go through again
    let accepted = pinned_to(&emulator, bmc.presented_certificate());
    assert_eq!(accepted.power_state().await.unwrap(), PowerState::Off);
    assert!(
        emulator.log().contains("GET /redfish"),
        "{}",
        emulator.log()
    );
}

#[tokio::test]
async fn a_hung_bmc_times_out_after_bounded_tries_without_holding_up_another() {
    let emulator = RedfishEmulator::start(1).await;
    let (hung, _accepting) = hung_bmc().await;
    let hung_address = hung.to_string();
    let timeouts = BmcTimeouts {
        connect: Duration::from_secs(1),
        read: Duration::from_secs(1),
        attempts: 2,
        backoff: Duration::from_millis(100),
    };
    let stuck = Redfish::new(
        RedfishBmc {
            address: hung_address.clone(),
            ..bmc(&emulator, PASSWORD)
        },
        timeouts,
    )
    .unwrap();
    let fine = Redfish::new(bmc(&emulator, PASSWORD), timeouts).unwrap();
    let started = Instant::now();
    let (stuck_result, fine_result) = tokio::join!(
        async {
            let r = stuck.power_state().await;
            (r, started.elapsed())
        },
        async {
            let r = fine.power_state().await;
            (r, started.elapsed())
        }
    );
    assert_eq!(fine_result.0.unwrap(), PowerState::Off);
    let (e, took) = (stuck_result.0.unwrap_err(), stuck_result.1);
    assert!(e.is_transient(), "{e}");
    let text = e.to_string();
    assert!(
        text.starts_with(&format!("BMC {hung_address}: timed out"))
            && text.ends_with("(tried 2 times)"),
        "{text}"
    );
    assert!(
        fine_result.1 < took,
        "the answering BMC waited for the hung one"
    );
    assert!(took < Duration::from_secs(10), "bounded: {took:?}");
}

#[tokio::test]
async fn the_sweep_reads_every_bmc_and_a_hung_one_costs_only_itself() {
    let emulator = RedfishEmulator::start(3).await;
    let db = crate::support::db::test_db().await;
    let vault = std::sync::Arc::new(crowbar::power::vault::Vault::ephemeral());
    let (hung, _accepting) = hung_bmc().await;
    let hung_port = hung.port();
    let enroll = |name: String, port: u16, system: Option<String>| {
        let (pool, vault) = (db.pool.clone(), vault.clone());
        async move {
            let id = crate::support::world::node(&pool, &name, true).await;
            let mut conn = pool.acquire().await.unwrap();
            crowbar::db::bmcs::set(
                &mut conn,
                id,
                &crowbar::db::bmcs::NewBmc {
                    driver: "redfish".into(),
                    address: "127.0.0.1".into(),
                    port: Some(i32::from(port)),
                    system,
                    username: USER.into(),
                    password_sealed: vault.seal(&Secret::new(PASSWORD)),
                },
            )
            .await
            .unwrap();
        }
    };
    for (i, system) in emulator.systems.iter().enumerate() {
        enroll(format!("n{i}"), emulator.port, Some(system.uuid.clone())).await;
    }
    enroll("stuck".into(), hung_port, None).await;

    let control = crowbar::power::node::PowerControl::new(
        db.pool.clone(),
        vault,
        BmcTimeouts {
            connect: Duration::from_secs(1),
            read: Duration::from_secs(1),
            attempts: 2,
            backoff: Duration::from_millis(100),
        },
    );
    let started = Instant::now();
    let report = crowbar::power::sweep::sweep_once(&control, &db.pool, 4)
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(
        report,
        crowbar::power::sweep::SweepReport { read: 3, failed: 1 }
    );
    // the hung BMC's two tries of a second, not four BMCs one after another
    assert!(took < Duration::from_secs(8), "{took:?}");
    let recorded: Vec<(String, Option<String>, String)> = sqlx::query_as(
        "SELECT n.name, b.power, b.power_reason FROM node_bmcs b JOIN nodes n ON n.id = b.node_id
          ORDER BY n.name",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    for (name, power, reason) in &recorded {
        if name == "stuck" {
            assert_eq!(power.as_deref(), Some("unknown"));
            assert!(reason.contains("timed out"), "{reason}");
        } else {
            assert_eq!(
                (power.as_deref(), reason.as_str()),
                (Some("off"), ""),
                "{name}"
            );
        }
    }
    assert_eq!(recorded.len(), 4);
}

#[tokio::test]
async fn one_session_at_a_time_holds_the_sweep_lock_and_ending_it_frees_the_lock() {
    use crowbar::db::locks::{Lock, release_session, try_hold_session};
    let db = crate::support::db::test_db().await;
    let mut first = db.pool.acquire().await.unwrap().detach();
    let mut second = db.pool.acquire().await.unwrap();
    assert!(
        try_hold_session(&mut first, Lock::PowerSweep)
            .await
            .unwrap()
    );
    assert!(
        !try_hold_session(&mut second, Lock::PowerSweep)
            .await
            .unwrap()
    );
    release_session(&mut first, Lock::PowerSweep).await.unwrap();
    assert!(
        try_hold_session(&mut second, Lock::PowerSweep)
            .await
            .unwrap()
    );
    release_session(&mut second, Lock::PowerSweep)
        .await
        .unwrap();
    // a daemon that dies holding it: its session ends, the lock with it
    assert!(
        try_hold_session(&mut first, Lock::PowerSweep)
            .await
            .unwrap()
    );
    sqlx::Connection::close(first).await.unwrap();
    let mut taken = false;
    for _ in 0..50 {
        if try_hold_session(&mut second, Lock::PowerSweep)
            .await
            .unwrap()
        {
            taken = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(taken, "the lock outlived its session");
}

/// A BMC that speaks HTTPS and answers every request with HTTP 500 (a BMC whose web service
/// broke): its address and how many requests it got.
async fn failing_bmc() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
    tokio::task::JoinHandle<()>,
) {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls::{
        self,
        pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer},
    };
    crowbar::tls::install_default_provider();
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(made.cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.signing_key.serialize_der())),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = requests.clone();
    let serving = tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let counted = counted.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(socket).await else {
                    return;
                };
                let mut head = vec![0u8; 8192];
                if tls.read(&mut head).await.unwrap_or(0) > 0 {
                    counted.fetch_add(1, Ordering::SeqCst);
                    let _ = tls
                        .write_all(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                        .await;
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    (address, requests, serving)
}

#[tokio::test]
async fn a_bmc_answering_500_is_tried_again_a_bounded_number_of_times_then_named() {
    let (address, requests, _serving) = failing_bmc().await;
    let timeouts = BmcTimeouts {
        backoff: Duration::from_millis(100),
        ..BmcTimeouts::default()
    };
    let broken = Redfish::new(
        RedfishBmc {
            address: address.to_string(),
            username: USER.into(),
            password: Secret::new(PASSWORD),
            system: Some("1".into()),
            pinned: None,
        },
        timeouts,
    )
    .unwrap();
    let e = broken.power_state().await.unwrap_err();
    assert!(e.is_transient(), "{e}");
    assert_eq!(
        e.to_string(),
        format!("BMC {address}: HTTP 500 on GET /redfish/v1/Systems/1 (tried 3 times)")
    );
    assert_eq!(
        requests.load(std::sync::atomic::Ordering::SeqCst),
        3,
        "bounded: as many requests as tries"
    );
    assert!(!e.to_string().contains(PASSWORD));
}
