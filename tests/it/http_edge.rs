//! The HTTP edge of a real daemon (docs/operations.md "The HTTP edge"): slow and idle
//! connections are closed, connections over the cap are refused, every response carries the
//! security headers, and TLS serves HTTPS with a `Secure` session cookie.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use reqwest::header;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::support::{
    app::ADMIN_TOKEN,
    daemon::{Daemon, DaemonOptions, https_client_builder, run_crowbar},
    db::test_db,
};

/// Reads from `stream` until the server closes it; panics if it does not within `limit`.
/// Returns what was read and how long it took.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (String, Duration) {
    let started = Instant::now();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at((started + limit).into(), stream.read(&mut buf)).await {
            Err(_) => panic!(
                "the server kept the connection open for {limit:?}; it sent: {}",
                String::from_utf8_lossy(&seen)
            ),
            Ok(Ok(0) | Err(_)) => {
                return (String::from_utf8_lossy(&seen).into(), started.elapsed());
            }
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

/// Sends a GET of `path` (with `headers`, each line ending in CRLF) on `stream` and reads
/// one answer's head; returns its status line, or `None` when the server closed the
/// connection instead.
async fn get_on(stream: &mut TcpStream, path: &str, headers: &str) -> Option<String> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: crowbar\r\n{headers}\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return None;
    }
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(10);
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        let read = tokio::time::timeout_at(deadline.into(), stream.read(&mut buf))
            .await
            .expect("an answer or a close within 10 s");
        match read {
            Ok(0) | Err(_) => return None,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&seen).into_owned();
    Some(text.lines().next().unwrap_or_default().to_owned())
}

async fn daemon_with(args: &[&str]) -> (Daemon, crate::support::db::TestDb) {
    let test = test_db().await;
    let mut options = DaemonOptions::default()
        .env("CROWBAR_DATABASE_URL", test.url.expose())
        .env("CROWBAR_ADMIN_TOKEN", ADMIN_TOKEN);
    for arg in args {
        options = options.arg(*arg);
    }
    (Daemon::start(options).await, test)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_sent_slowly_is_cut_off() {
    let (daemon, _db) = daemon_with(&["--http-header-timeout", "1s"]).await;
    let mut slow = TcpStream::connect(daemon.addr()).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: crowbar\r\n")
        .await
        .unwrap();
    // one more header line every 400 ms, never the blank line that ends the head
    let (mut reader, mut writer) = slow.into_split();
    let drip = tokio::spawn(async move {
        for i in 0..25 {
            tokio::time::sleep(Duration::from_millis(400)).await;
            let line = format!("X-Slow-{i}: still coming\r\n");
            if writer.write_all(line.as_bytes()).await.is_err() {
                return i;
            }
        }
        25
    });
    let started = Instant::now();
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let read = tokio::time::timeout(Duration::from_secs(8), reader.read(&mut buf))
            .await
            .expect("the server closes a connection whose head takes too long");
        match read {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    let took = started.elapsed();
    let seen = String::from_utf8_lossy(&seen);
    assert!(
        !seen.contains("200 OK"),
        "the slow request was answered: {seen}"
    );
    assert!(took < Duration::from_secs(4), "closed only after {took:?}");
    drip.abort();
    // a request sent at once is still served (on a new connection: the header timeout also
    // closes a kept-alive connection idle for a second, such as the one the harness's
    // client used to see the daemon start, and reusing it could race that close)
    let fresh = crate::support::client_builder().build().unwrap();
    let reply = fresh
        .get(format!("{}/healthz", daemon.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_connection_is_closed_but_a_quiet_event_stream_is_not() {
    let idle = Duration::from_secs(1);
    let (daemon, _db) = daemon_with(&["--http-idle-timeout", "1s"]).await;

    // a body that never arrives: without the idle timeout only the 60 s request
    // timeout would end it
    let mut stalled = TcpStream::connect(daemon.addr()).await.unwrap();
    let head = format!(
        "POST /api/v2/deployments HTTP/1.1\r\nHost: crowbar\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"name\":"
    );
    stalled.write_all(head.as_bytes()).await.unwrap();
    let (seen, took) = read_until_closed(&mut stalled, Duration::from_secs(10)).await;
    assert!(!seen.contains("201"), "{seen}");
    assert!(took < idle * 4, "closed only after {took:?}");

    // Connections are not reused here: with a 1 s idle timeout, a pooled connection (the
    // harness's readiness poll) may be closed by the server just as it is picked.
    let client = crate::support::client_builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    // an event stream with nothing to say sends keep-alive comments within the timeout
    let mut stream = client
        .get(format!("{}/api/v2/events", daemon.url()))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let open_until = Instant::now() + idle * 4;
    let mut comments = 0;
    while Instant::now() < open_until {
        match tokio::time::timeout_at(open_until.into(), stream.chunk()).await {
            Err(_) => break,
            Ok(Ok(Some(chunk))) => {
                comments += String::from_utf8_lossy(&chunk)
                    .lines()
                    .filter(|line| line.starts_with(':'))
                    .count();
            }
            Ok(other) => panic!("the event stream ended after {idle:?} idle: {other:?}"),
        }
    }
    assert!(
        comments >= 3,
        "{comments} keep-alive comments in {:?}",
        idle * 4
    );
    // and it still delivers events
    let created = client
        .post(format!("{}/api/v2/deployments", daemon.url()))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({"name": "after-quiet"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201, "{}", created.text().await.unwrap());
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut text = String::new();
    while !text.contains("after-quiet") {
        let chunk = tokio::time::timeout_at(deadline.into(), stream.chunk())
            .await
            .expect("the event of the new deployment")
            .unwrap()
            .expect("the stream stays open");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_are_closed_unanswered() {
    let cap = 4;
    // a short header timeout lets go of the connection the harness polled readiness on
    let (daemon, _db) = daemon_with(&[
        "--http-max-connections",
        &cap.to_string(),
        "--http-header-timeout",
        "1s",
    ])
    .await;
    let auth = format!("Authorization: Bearer {ADMIN_TOKEN}\r\n");
    // Event streams hold their connections, as the UI's pages do. Until the readiness
    // connection is gone, one of them is refused: retry until `cap` are open.
    let mut held = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while held.len() < cap {
        let mut stream = TcpStream::connect(daemon.addr()).await.unwrap();
        match get_on(&mut stream, "/api/v2/events", &auth).await {
            Some(status) => {
                assert!(status.contains("200"), "{status}");
                held.push(stream);
            }
            None => assert!(Instant::now() < deadline, "only {} served", held.len()),
        }
    }
    // every slot taken: the next connection is closed at once, unanswered
    for _ in 0..3 {
        let mut over = TcpStream::connect(daemon.addr()).await.unwrap();
        let started = Instant::now();
        assert_eq!(get_on(&mut over, "/healthz", "").await, None);
        assert!(started.elapsed() < Duration::from_secs(2));
    }
    // one stream ends: a new connection is served again
    drop(held.pop());
    let served = poll_served(&daemon, "/healthz").await;
    assert!(served.contains("200"), "{served}");
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    let metrics = loop {
        let url = format!("{}/metrics", daemon.url());
        if let Ok(reply) = daemon.client().get(url).send().await {
            break reply.text().await.unwrap();
        }
        assert!(Instant::now() < deadline, "no slot freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let refused: f64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("crowbar_http_connections_refused_total "))
        .expect("the refusals are counted")
        .trim()
        .parse()
        .unwrap();
    assert!(refused >= 3.0, "{refused}");
}

/// The status line of GET `path` on a new connection, once the server serves one (a slot
/// frees when the server has seen a connection close); fails after 10 s.
async fn poll_served(daemon: &Daemon, path: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut stream = TcpStream::connect(daemon.addr()).await.unwrap();
        if let Some(status) = get_on(&mut stream, path, "").await {
            return status;
        }
        assert!(Instant::now() < deadline, "no connection served");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The four headers, as every response must carry them.
fn assert_security_headers(what: &str, response: &reqwest::Response) {
    let headers = response.headers();
    let csp = headers
        .get(header::CONTENT_SECURITY_POLICY)
        .unwrap_or_else(|| panic!("{what}: no content security policy"))
        .to_str()
        .unwrap();
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{what}: `{csp}` lacks {directive}");
    }
    assert!(!csp.contains("unsafe"), "{what}: {csp}");
    for (name, value) in [
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
    ] {
        assert_eq!(
            headers.get(&name).map(|v| v.to_str().unwrap()),
            Some(value),
            "{what}: {name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_response_carries_the_security_headers() {
    let (daemon, _db) = daemon_with(&[]).await;
    let http = crate::support::client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let url = daemon.url();
    let cases: Vec<(&str, reqwest::RequestBuilder, u16)> = vec![
        ("health", http.get(format!("{url}/healthz")), 200),
        ("metrics", http.get(format!("{url}/metrics")), 200),
        ("openapi", http.get(format!("{url}/api/openapi.json")), 200),
        (
            "api",
            http.get(format!("{url}/api/v2/nodes"))
                .bearer_auth(ADMIN_TOKEN),
            200,
        ),
        ("api refused", http.get(format!("{url}/api/v2/nodes")), 401),
        (
            "event stream",
            http.get(format!("{url}/api/v2/events"))
                .bearer_auth(ADMIN_TOKEN),
            200,
        ),
        ("ui page", http.get(format!("{url}/login")), 200),
        ("ui redirect", http.get(format!("{url}/nodes")), 303),
        ("asset", http.get(format!("{url}/assets/ui.js")), 200),
        (
            "missing asset",
            http.get(format!("{url}/assets/nope.js")),
            404,
        ),
        (
            "boot script",
            http.get(format!("{url}/boot/52:54:00:12:34:56")),
            200,
        ),
        (
            "unknown route",
            http.get(format!("{url}/no/such/route")),
            404,
        ),
        ("wrong method", http.delete(format!("{url}/healthz")), 405),
    ];
    for (what, request, status) in cases {
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{what}");
        assert_security_headers(what, &response);
    }
    // over plain HTTP, with no https:// public URL, the session cookie cannot be Secure
    let session = login(&http, &url).await;
    assert!(!session.contains("Secure"), "{session}");
}

/// Logs in with the admin token through the login form; returns the session's Set-Cookie.
async fn login(http: &reqwest::Client, url: &str) -> String {
    let page = http.get(format!("{url}/login")).send().await.unwrap();
    let login_cookie = page.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_owned();
    let value = login_cookie
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("crowbar_login=")
        .to_owned();
    let response = http
        .post(format!("{url}/login"))
        .header(header::COOKIE, format!("crowbar_login={value}"))
        .form(&[("login_csrf", value.as_str()), ("token", ADMIN_TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_security_headers("login", &response);
    response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with("crowbar_session="))
        .expect("a session cookie")
}

/// A self-signed certificate for 127.0.0.1 and localhost, and its key, as PEM files.
fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let made =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let cert = dir.join("crowbar.crt");
    let key = dir.join("crowbar.key");
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    (cert, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_https_with_a_secure_session_cookie() {
    let files = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(files.path());
    let test = test_db().await;
    // readiness is polled over HTTPS, trusting only this certificate
    let daemon = Daemon::start(
        DaemonOptions::default()
            .env("CROWBAR_DATABASE_URL", test.url.expose())
            .env("CROWBAR_ADMIN_TOKEN", ADMIN_TOKEN)
            .tls(&cert, &key),
    )
    .await;
    let url = daemon.url();
    assert!(url.starts_with("https://"), "{url}");
    assert!(daemon.stderr().contains("crowbar is ready on https://"));
    for probe in ["/healthz", "/readyz"] {
        let response = daemon.get(probe).await;
        assert_eq!(response.status(), 200, "{probe}");
        assert_security_headers(probe, &response);
    }

    // machines are sent to the address over HTTPS too
    let script = daemon
        .get("/boot/52:54:00:12:34:56")
        .await
        .text()
        .await
        .unwrap();
    assert!(script.contains(&format!("crowbar.url={url}")), "{script}");

    let pem = std::fs::read_to_string(&cert).unwrap();
    let https = https_client_builder(&pem)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let session = login(&https, &url).await;
    assert!(session.contains("; Secure"), "{session}");

    // the client commands speak HTTPS too, trusting the certificate through SSL_CERT_FILE
    let cert_file = cert.display().to_string();
    let listed = run_crowbar(
        &[
            "nodes",
            "list",
            "--json",
            "--url",
            &url,
            "--token",
            ADMIN_TOKEN,
        ],
        &[("SSL_CERT_FILE", &cert_file)],
        Duration::from_secs(30),
    )
    .await;
    assert!(listed.status.success(), "{}", listed.stderr);
    assert!(
        listed.stdout.trim_start().starts_with('['),
        "{}",
        listed.stdout
    );
    let untrusting = run_crowbar(
        &["nodes", "list", "--url", &url, "--token", ADMIN_TOKEN],
        &[],
        Duration::from_secs(30),
    )
    .await;
    assert!(!untrusting.status.success(), "{}", untrusting.stdout);

    // plain HTTP to the TLS port gets no answer
    let plain = format!("http://{}/healthz", daemon.addr());
    let answer = crate::support::client_builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
        .get(&plain)
        .send()
        .await;
    assert!(answer.is_err(), "plain HTTP was answered: {answer:?}");
    // and a client that does not trust the certificate is refused
    let untrusted = https_client_builder(&self_signed_elsewhere())
        .build()
        .unwrap()
        .get(format!("{url}/healthz"))
        .send()
        .await;
    assert!(untrusted.is_err(), "{untrusted:?}");
}

/// Another self-signed certificate, as PEM.
fn self_signed_elsewhere() -> String {
    rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()])
        .unwrap()
        .cert
        .pem()
}

#[tokio::test]
async fn unusable_tls_settings_stop_the_start_with_what_to_do() {
    let files = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(files.path());
    let missing = files.path().join("missing.pem");
    let (cert, key, missing) = (
        cert.display().to_string(),
        key.display().to_string(),
        missing.display().to_string(),
    );
    let data = files.path().join("data").display().to_string();
    let timeout = Duration::from_secs(30);
    let serve = |extra: Vec<&str>| {
        let mut args = vec!["serve", "--data-dir", &data, "--listen", "127.0.0.1:0"];
        args.extend(extra);
        args.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (serve(vec!["--tls-cert", &cert]), "--tls-key"),
        (serve(vec!["--tls-key", &key]), "--tls-cert"),
        (
            serve(vec!["--tls-cert", &missing, "--tls-key", &key]),
            "cannot read the TLS certificate",
        ),
        (
            serve(vec!["--tls-cert", &key, "--tls-key", &key]),
            "holds no PEM certificate",
        ),
        (
            serve(vec!["--tls-cert", &cert, "--tls-key", &cert]),
            "holds no PEM private key",
        ),
    ];
    for (args, expected) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let outcome = run_crowbar(&args, &[], timeout).await;
        assert!(!outcome.status.success(), "{args:?} started");
        assert!(
            outcome.stderr.contains(expected),
            "{args:?}: expected `{expected}` in:\n{}",
            outcome.stderr
        );
        assert!(!outcome.stderr.contains("panicked"), "{}", outcome.stderr);
    }
    // nothing was started: no data directory
    assert!(!files.path().join("data").exists());
}
