//! Logins under pressure, against a real daemon: concurrent password checks take turns
//! (bounded threads and memory), repeated failures are refused with 429 and `Retry-After`
//! until the lockout ends, and unknown users fail exactly like wrong passwords.

use std::time::{Duration, Instant};

use reqwest::{StatusCode, header};
use serde_json::json;

use super::access::client;
use crate::support::{
    daemon::{Daemon, DaemonOptions},
    ui_site::{PASSWORD, USER, UiSite},
};

const TOKEN: &str = "logins-test-token-0123456789";

/// A login form fetched once; its double-submit cookie is good for many posts.
struct LoginForm {
    http: reqwest::Client,
    url: String,
    csrf: String,
}

impl LoginForm {
    async fn open(url: &str) -> LoginForm {
        let http = client();
        let page = http.get(format!("{url}/login")).send().await.unwrap();
        let csrf = page
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| v.strip_prefix("crowbar_login="))
            .and_then(|v| v.split(';').next())
            .expect("the login form's cookie")
            .to_string();
        LoginForm {
            http,
            url: url.to_string(),
            csrf,
        }
    }

    async fn post(&self, user: &str, password: &str) -> reqwest::Response {
        self.request(user, password).send().await.unwrap()
    }

    fn request(&self, user: &str, password: &str) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}/login", self.url))
            .header(header::COOKIE, format!("crowbar_login={}", self.csrf))
            .form(&[
                ("login_csrf", self.csrf.as_str()),
                ("user", user),
                ("password", password),
            ])
    }
}

/// A daemon with the admin token [`TOKEN`], `args` and the password user [`USER`].
async fn daemon_with_user(args: &[&str]) -> Daemon {
    let mut options = DaemonOptions::default().env("CROWBAR_ADMIN_TOKEN", TOKEN);
    for arg in args {
        options = options.arg(*arg);
    }
    let daemon = Daemon::start(options).await;
    let created = client()
        .post(format!("{}/api/v2/users", daemon.url()))
        .bearer_auth(TOKEN)
        .json(&json!({"name": USER, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    daemon
}

/// The value of the sample `series` (labels exactly as printed) in the daemon's /metrics.
async fn metric(daemon: &Daemon, series: &str) -> Option<f64> {
    let text = daemon.get("/metrics").await.text().await.unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| value.trim().parse().expect("a number"))
}

/// `Threads` and `VmRSS` (KiB) of a process, and its peak RSS (`VmHWM`, KiB).
fn threads_and_memory(pid: i32) -> (u64, u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{name} in /proc/{pid}/status"))
    };
    (field("Threads:"), field("VmRSS:"), field("VmHWM:"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_wrong_logins_take_turns_at_hashing() {
    const ATTEMPTS: usize = 100;
    const AT_ONCE: usize = 2;
    // a lockout out of reach: every attempt is checked, so each one hashes
    let daemon = daemon_with_user(&[
        "--password-checks",
        &AT_ONCE.to_string(),
        "--login-max-failures",
        "1000000",
    ])
    .await;
    let (threads_before, rss_before, _) = threads_and_memory(daemon.pid());
    let form = LoginForm::open(&daemon.url()).await;
    let started = Instant::now();
    let attempts: Vec<_> = (0..ATTEMPTS)
        .map(|i| {
            // known and unknown users alike
            let user = if i % 2 == 0 { USER } else { "mallory" };
            let request = form.request(user, "not the password").send();
            tokio::spawn(async move { request.await.unwrap().status() })
        })
        .collect();
    let mut most_threads = threads_before;
    let sampling = async {
        loop {
            let (threads, _, _) = threads_and_memory(daemon.pid());
            most_threads = most_threads.max(threads);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let answers = async {
        let mut statuses = Vec::new();
        for attempt in attempts {
            statuses.push(attempt.await.unwrap());
        }
        statuses
    };
    let statuses = tokio::select! {
        statuses = answers => statuses,
        () = sampling => unreachable!(),
    };
    let elapsed = started.elapsed();
    assert!(
        statuses.iter().all(|s| *s == StatusCode::UNAUTHORIZED),
        "{statuses:?}"
    );
    let (threads_after, rss_after, rss_peak) = threads_and_memory(daemon.pid());
    println!(
        "{ATTEMPTS} concurrent wrong logins, {AT_ONCE} hashes at once: {elapsed:.1?}; \
         threads {threads_before} before, at most {most_threads} during, {threads_after} after; \
         RSS {rss_before} KiB before, {rss_after} KiB after, peak {rss_peak} KiB"
    );

    let most = metric(&daemon, "crowbar_password_checks_in_flight_max")
        .await
        .expect("the most password checks at once are reported");
    assert!(
        (1.0..=AT_ONCE as f64).contains(&most),
        "{most} password checks ran at once"
    );
    assert_eq!(
        metric(&daemon, "crowbar_password_checks_in_flight").await,
        Some(0.0)
    );
    assert_eq!(
        metric(&daemon, "crowbar_logins_total{outcome=\"refused\"}").await,
        Some(ATTEMPTS as f64)
    );
    // unbounded, each attempt took a blocking thread and ~19 MiB of its own; bounded but
    // kept by the allocator, the memory of finished hashes stayed with the daemon
    assert!(most_threads < 64, "{most_threads} threads");
    assert!(rss_peak < 256 * 1024, "peak RSS {rss_peak} KiB");
    assert!(
        rss_after < rss_before + 64 * 1024,
        "RSS {rss_before} KiB before, {rss_after} KiB after"
    );
}

#[tokio::test]
async fn repeated_failures_are_refused_until_the_lockout_ends() {
    let daemon = daemon_with_user(&["--login-max-failures", "3", "--login-lockout", "2s"]).await;
    let form = LoginForm::open(&daemon.url()).await;
    for _ in 0..3 {
        let refused = form.post(USER, "not the password").await;
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    }
    // now even the right password is refused unchecked, for the user and from this address
    for (user, password) in [(USER, PASSWORD), ("mallory", "anything at all")] {
        let locked = form.post(user, password).await;
        assert_eq!(locked.status(), StatusCode::TOO_MANY_REQUESTS, "{user}");
        let retry_after: u64 = locked.headers()[header::RETRY_AFTER]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=2).contains(&retry_after), "Retry-After: {retry_after}");
        assert!(
            locked
                .headers()
                .get_all(header::SET_COOKIE)
                .iter()
                .all(|c| !c.to_str().unwrap().starts_with("crowbar_session=")),
            "no session"
        );
        let page = locked.text().await.unwrap();
        assert!(page.contains("too many failed logins"), "{page}");
    }
    assert!(
        metric(&daemon, "crowbar_logins_total{outcome=\"locked\"}")
            .await
            .is_some_and(|n| n >= 2.0)
    );

    // once the lockout is over, the right password works (the refused attempts did not
    // count as failures)
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let response = form.post(USER, PASSWORD).await;
        if response.status() != StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(response.status(), StatusCode::SEE_OTHER);
            break;
        }
        assert!(Instant::now() < deadline, "still locked out");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn unknown_users_fail_like_wrong_passwords() {
    let site = UiSite::start().await;
    let form = LoginForm::open(site.url()).await;
    // the same answer but for the form's fresh double-submit token
    let answer = |response: reqwest::Response| async move {
        let status = response.status();
        let cookies: Vec<String> = response
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|c| c.to_str().unwrap().split_once('=').unwrap().0.to_string())
            .collect();
        let body = response.text().await.unwrap();
        let (before, rest) = body.split_once(r#"name="login_csrf" value=""#).unwrap();
        let after = rest.split_once('"').unwrap().1;
        (status, cookies, format!("{before}{after}"))
    };
    let wrong = answer(form.post(USER, "not the password").await).await;
    let unknown = answer(form.post("mallory", "not the password").await).await;
    assert_eq!(wrong.0, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong, unknown);
    assert!(
        wrong
            .2
            .contains("wrong token, or wrong user name or password")
    );
    site.stop().await;
}
