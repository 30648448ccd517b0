//! The HTTP edge of a real daemon (docs/operations.md "The HTTP edge"): every response
//! carries the security headers.

use reqwest::header;

use crate::support::{
    app::ADMIN_TOKEN,
    daemon::{Daemon, DaemonOptions},
    db::test_db,
};

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
    let http = reqwest::Client::builder()
        .no_proxy()
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
