//! Who may see and change what through the UI, over plain HTTP (no browser): every page
//! but /login redirects to it without a session; logins by token and by password; session
//! cookie flags; CSRF on changes; the event stream with the session cookie.

use reqwest::{StatusCode, header};

use crate::support::{
    app::ADMIN_TOKEN,
    ui_site::{PASSWORD, USER, UiSite},
};

pub(super) fn client() -> reqwest::Client {
    crate::support::client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The `name=value` of the Set-Cookie header for `name`, with its attributes.
fn set_cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_string)
}

fn cookie_value(set_cookie: &str) -> String {
    set_cookie
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_string()
}

/// Logs in with the form's fields, to go back to `/nodes`; returns the response to the POST.
pub(super) async fn login(site: &UiSite, fields: &[(&str, &str)]) -> reqwest::Response {
    login_to(site, "/nodes", fields).await
}

/// Logs in with the form's fields and `next`; returns the response to the POST.
async fn login_to(site: &UiSite, next: &str, fields: &[(&str, &str)]) -> reqwest::Response {
    let http = client();
    let page = http
        .get(format!("{}/login", site.url()))
        .send()
        .await
        .unwrap();
    let login_cookie = set_cookie(&page, "crowbar_login").expect("the login form's cookie");
    assert!(login_cookie.contains("HttpOnly") && login_cookie.contains("SameSite=Strict"));
    let value = cookie_value(&login_cookie);
    let mut form: Vec<(&str, &str)> = vec![("login_csrf", &value), ("next", next)];
    form.extend_from_slice(fields);
    http.post(format!("{}/login", site.url()))
        .header(header::COOKIE, format!("crowbar_login={value}"))
        .form(&form)
        .send()
        .await
        .unwrap()
}

/// A logged-in session: its cookie header value and its CSRF token (read from a page).
pub(super) async fn session(site: &UiSite, fields: &[(&str, &str)]) -> (String, String) {
    let response = login(site, fields).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[header::LOCATION], "/nodes");
    let session = set_cookie(&response, "crowbar_session").expect("a session cookie");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(session.contains(flag), "{session} lacks {flag}");
    }
    let cookie = format!("crowbar_session={}", cookie_value(&session));
    let page = client()
        .get(format!("{}/nodes", site.url()))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    let csrf = html
        .split("data-csrf=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the page carries its CSRF token")
        .to_string();
    (cookie, csrf)
}

#[tokio::test]
async fn pages_redirect_to_login_without_a_session() {
    let site = UiSite::start().await;
    let http = client();
    for path in [
        "/",
        "/deployments",
        "/deployments/system",
        "/deployments/system/graph",
        "/nodes",
        "/nodes/n1",
        "/annealer",
        "/node_roles/1",
        "/setup",
    ] {
        let response = http
            .get(format!("{}{path}", site.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{path}");
        let location = response.headers()[header::LOCATION].to_str().unwrap();
        assert!(location.starts_with("/login?next=/"), "{path} → {location}");
    }
    // a forged or expired cookie is no session either
    let response = http
        .get(format!("{}/nodes", site.url()))
        .header(header::COOKIE, "crowbar_session=forged")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    // changes without a session: 401, and htmx is sent to the login page
    let response = http
        .post(format!("{}/deployments", site.url()))
        .form(&[("name", "web")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()["hx-redirect"], "/login");
    // the login page itself and the assets are open
    for path in [
        "/login",
        "/assets/ui.js",
        "/assets/vendor/htmx-2.0.11.min.js",
    ] {
        let response = http
            .get(format!("{}{path}", site.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
    site.stop().await;
}

#[tokio::test]
async fn logins_by_password_or_token_and_wrong_ones_refused() {
    let site = UiSite::start().await;
    let refused = login(&site, &[("user", USER), ("password", "wrong password")]).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert!(set_cookie(&refused, "crowbar_session").is_none());
    let refused = login(&site, &[("token", "not-the-token")]).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert!(set_cookie(&refused, "crowbar_session").is_none());

    // a login form posted without its own cookie (another site's form) is refused
    let response = client()
        .post(format!("{}/login", site.url()))
        .form(&[("login_csrf", "guess"), ("token", ADMIN_TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(set_cookie(&response, "crowbar_session").is_none());

    session(&site, &[("user", USER), ("password", PASSWORD)]).await;
    session(&site, &[("token", ADMIN_TOKEN)]).await;
    let sessions: i64 = sqlx::query_scalar("SELECT count(*) FROM ui_sessions")
        .fetch_one(&site.pool)
        .await
        .unwrap();
    assert_eq!(sessions, 2);
    // sessions are stored hashed: no cookie value is in the table
    let stored: Vec<String> = sqlx::query_scalar("SELECT token_hash FROM ui_sessions")
        .fetch_all(&site.pool)
        .await
        .unwrap();
    assert!(stored.iter().all(|h| h.len() == 64));
    site.stop().await;
}

#[tokio::test]
async fn logins_go_back_only_to_plain_paths_of_this_site() {
    let site = UiSite::start().await;
    // the login page keeps only a plain path of this site in its form
    let page = client()
        .get(format!("{}/login?next=/%09/evil.example", site.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"name="next" value="/">"#), "{html}");
    // browsers drop tabs and newlines and read a backslash as a slash: each of these would
    // lead to //evil.example, so the login goes to / instead
    for hostile in [
        "/\t/evil.example",
        "/\n/evil.example",
        "/\\evil.example",
        "//evil.example",
        "https://evil.example",
    ] {
        let response = login_to(&site, hostile, &[("user", USER), ("password", PASSWORD)]).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{hostile:?}");
        assert_eq!(response.headers()[header::LOCATION], "/", "{hostile:?}");
    }
    let response = login_to(&site, "/nodes?x=1", &[("token", ADMIN_TOKEN)]).await;
    assert_eq!(response.headers()[header::LOCATION], "/nodes?x=1");
    site.stop().await;
}

#[tokio::test]
async fn changes_need_the_csrf_token_and_name_the_user() {
    let site = UiSite::start().await;
    let (cookie, csrf) = session(&site, &[("user", USER), ("password", PASSWORD)]).await;
    let http = client();
    let create = |token: Option<&str>| {
        let mut request = http
            .post(format!("{}/deployments", site.url()))
            .header(header::COOKIE, &cookie)
            .form(&[("name", "web")]);
        if let Some(token) = token {
            request = request.header("x-csrf-token", token);
        }
        request.send()
    };
    for token in [None, Some("0".repeat(64).as_str())] {
        let response = create(token).await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert!(response.text().await.unwrap().contains("CSRF"));
    }
    let count = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM deployments WHERE name = 'web'")
            .fetch_one(&site.pool)
            .await
            .unwrap()
    };
    assert_eq!(count().await, 0, "a refused change changes nothing");

    let response = create(Some(&csrf)).await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(response.headers()["hx-redirect"], "/deployments/web");
    assert_eq!(count().await, 1);
    let actor: String = sqlx::query_scalar(
        "SELECT actor FROM events WHERE type = 'deployment.created' ORDER BY id DESC LIMIT 1",
    )
    .fetch_one(&site.pool)
    .await
    .unwrap();
    assert_eq!(actor, "user:alice");

    // bad input gets its message and changes nothing
    let response = create(Some(&csrf)).await.unwrap();
    assert_eq!(response.status(), StatusCode::CONFLICT);
    assert!(response.text().await.unwrap().contains("exists already"));

    // unknown objects are a page saying so
    let response = http
        .get(format!("{}/deployments/nope", site.url()))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("deployment `nope` not found")
    );

    // the session cookie opens the event stream (a read), never an API change
    let stream = http
        .get(format!("{}/api/v2/events", site.url()))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    assert_eq!(stream.headers()[header::CONTENT_TYPE], "text/event-stream");
    drop(stream);
    let response = http
        .post(format!("{}/api/v2/deployments", site.url()))
        .header(header::COOKIE, &cookie)
        .json(&serde_json::json!({"name": "api"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    // logging out ends the session
    let response = http
        .post(format!("{}/logout", site.url()))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let response = http
        .get(format!("{}/nodes", site.url()))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    site.stop().await;
}

/// The audit records of `action`, oldest first: (actor, object, source).
async fn audited(site: &UiSite, action: &str) -> Vec<(String, Option<String>, Option<String>)> {
    sqlx::query_as("SELECT actor, object, host(source) FROM audit WHERE action = $1 ORDER BY id")
        .bind(action)
        .fetch_all(&site.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn logins_logouts_and_refused_ones_are_audited() {
    let site = UiSite::start().await;
    // a wrong password: refused, recorded with the name claimed and where it came from
    let refused = login(&site, &[("user", USER), ("password", "not the password")]).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let refusals = audited(&site, "request.refused").await;
    assert_eq!(
        refusals,
        [(
            format!("user:{USER}"),
            Some("/login".to_string()),
            Some("127.0.0.1".to_string())
        )]
    );
    // a change without a session: refused, recorded as anonymous
    let response = client()
        .post(format!("{}/deployments", site.url()))
        .form(&[("name", "web")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let refusals = audited(&site, "request.refused").await;
    assert_eq!(refusals[1].0, "anonymous");
    assert_eq!(refusals[1].1.as_deref(), Some("/deployments"));
    // a login and a logout
    let (cookie, csrf) = session(&site, &[("user", USER), ("password", PASSWORD)]).await;
    assert_eq!(
        audited(&site, "session.login").await,
        [(
            format!("user:{USER}"),
            Some(USER.to_string()),
            Some("127.0.0.1".to_string())
        )]
    );
    let response = client()
        .post(format!("{}/logout", site.url()))
        .header(header::COOKIE, &cookie)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    assert_eq!(audited(&site, "session.logout").await.len(), 1);
    // logging out of a session that ended records nothing more
    client()
        .post(format!("{}/logout", site.url()))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(audited(&site, "session.logout").await.len(), 1);
    site.stop().await;
}
