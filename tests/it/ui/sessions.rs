//! UI sessions end with what opened them: revoking a token ends the sessions it opened,
//! deleting a user or giving it a new password ends the user's sessions, and a refused
//! change ends nothing.

use std::path::Path;

use reqwest::{StatusCode, header};
use serde_json::json;

use super::access::{client, login, session};
use crate::support::{
    app::ADMIN_TOKEN,
    ui_site::{PASSWORD, USER, UiSite},
};

/// Whether the session with this cookie still opens a page (else: sent to log in).
async fn alive(site: &UiSite, cookie: &str) -> bool {
    let response = client()
        .get(format!("{}/nodes", site.url()))
        .header(header::COOKIE, cookie)
        .send()
        .await
        .unwrap();
    match response.status() {
        StatusCode::OK => true,
        StatusCode::SEE_OTHER => false,
        other => panic!("unexpected {other} for /nodes"),
    }
}

/// A change in the UI (creating a deployment) with the session and its CSRF token.
async fn create_deployment(site: &UiSite, cookie: &str, csrf: &str, name: &str) -> StatusCode {
    client()
        .post(format!("{}/deployments", site.url()))
        .header(header::COOKIE, cookie)
        .header("x-csrf-token", csrf)
        .form(&[("name", name)])
        .send()
        .await
        .unwrap()
        .status()
}

/// An admin API call with the built-in token.
fn api(site: &UiSite, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
    client()
        .request(method, format!("{}{path}", site.url()))
        .bearer_auth(ADMIN_TOKEN)
}

async fn sessions(site: &UiSite) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM ui_sessions")
        .fetch_one(&site.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn revoking_a_token_ends_the_sessions_it_opened() {
    let site = UiSite::start().await;
    let made = api(&site, reqwest::Method::POST, "/api/v2/tokens")
        .json(&json!({"name": "ops"}))
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), StatusCode::CREATED);
    let token = made.json::<serde_json::Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let (cookie, csrf) = session(&site, &[("token", &token)]).await;
    let (other, _) = session(&site, &[("user", USER), ("password", PASSWORD)]).await;
    assert_eq!(
        create_deployment(&site, &cookie, &csrf, "before").await,
        StatusCode::NO_CONTENT
    );

    // streams opened before the revocation: the session's and the token's own
    let open_stream = |credential: (header::HeaderName, String)| {
        let url = format!("{}/api/v2/events", site.url());
        async move {
            let stream = client()
                .get(url)
                .header(credential.0, credential.1)
                .send()
                .await
                .unwrap();
            assert_eq!(stream.status(), StatusCode::OK);
            stream
        }
    };
    let session_stream = open_stream((header::COOKIE, cookie.clone())).await;
    let token_stream = open_stream((header::AUTHORIZATION, format!("Bearer {token}"))).await;

    let revoked = api(&site, reqwest::Method::DELETE, "/api/v2/tokens/ops")
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::OK);
    // they end within the streams' recheck interval (5 s)
    for (what, stream) in [("session", session_stream), ("token", token_stream)] {
        let ended = tokio::time::timeout(std::time::Duration::from_secs(20), stream.bytes()).await;
        assert!(
            ended.is_ok(),
            "the {what}'s stream still runs after the revocation"
        );
    }
    // the session can neither read nor write any more, and is gone from the table
    assert!(!alive(&site, &cookie).await);
    assert_eq!(
        create_deployment(&site, &cookie, &csrf, "after").await,
        StatusCode::UNAUTHORIZED
    );
    let stream = client()
        .get(format!("{}/api/v2/events", site.url()))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::UNAUTHORIZED);
    let made_after: i64 =
        sqlx::query_scalar("SELECT count(*) FROM deployments WHERE name = 'after'")
            .fetch_one(&site.pool)
            .await
            .unwrap();
    assert_eq!(made_after, 0);
    // sessions of others stay; the revoked token cannot open a new one
    assert!(alive(&site, &other).await);
    assert_eq!(sessions(&site).await, 1);
    let refused = login(&site, &[("token", &token)]).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);

    // the built-in admin token replaced at a start ends its sessions too
    let (admin, _) = session(&site, &[("token", ADMIN_TOKEN)]).await;
    assert!(alive(&site, &admin).await);
    crowbar::admin_token::ensure_admin_token(
        &site.pool,
        Path::new("/nonexistent"),
        Some(&crowbar::secret::Secret::new(
            "a-new-admin-token-0123456789",
        )),
    )
    .await
    .unwrap();
    assert!(!alive(&site, &admin).await);
    assert!(alive(&site, &other).await);
    site.stop().await;
}

#[tokio::test]
async fn a_new_password_or_deleting_the_user_ends_its_sessions() {
    let site = UiSite::start().await;
    let (first, _) = session(&site, &[("user", USER), ("password", PASSWORD)]).await;
    let (second, _) = session(&site, &[("user", USER), ("password", PASSWORD)]).await;
    let (admin, _) = session(&site, &[("token", ADMIN_TOKEN)]).await;
    let set_password = |user: &'static str, body: serde_json::Value| {
        let site = &site;
        async move {
            api(
                site,
                reqwest::Method::PUT,
                &format!("/api/v2/users/{user}/password"),
            )
            .json(&body)
            .send()
            .await
            .unwrap()
        }
    };

    // refused changes end nothing
    let short = set_password(USER, json!({"password": "short"})).await;
    assert_eq!(short.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: serde_json::Value = short.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_password");
    let unknown = set_password("bob", json!({"password": "long enough now"})).await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let extra = set_password(
        USER,
        json!({"password": "long enough now", "role": "admin"}),
    )
    .await;
    assert_eq!(extra.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(alive(&site, &first).await && alive(&site, &second).await);

    // a new password: every session of the user ends, the old password stops working
    let changed = set_password(USER, json!({"password": "a brand new password"})).await;
    assert_eq!(changed.status(), StatusCode::NO_CONTENT);
    assert!(!alive(&site, &first).await);
    assert!(!alive(&site, &second).await);
    assert!(alive(&site, &admin).await);
    let refused = login(&site, &[("user", USER), ("password", PASSWORD)]).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let (third, _) = session(
        &site,
        &[("user", USER), ("password", "a brand new password")],
    )
    .await;

    // deleting the user ends its sessions and its logins; by id or name, once
    let id: i64 = sqlx::query_scalar("SELECT id FROM users WHERE name = $1")
        .bind(USER)
        .fetch_one(&site.pool)
        .await
        .unwrap();
    let deleted = api(
        &site,
        reqwest::Method::DELETE,
        &format!("/api/v2/users/{id}"),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert!(!alive(&site, &third).await);
    assert!(alive(&site, &admin).await);
    assert_eq!(sessions(&site).await, 1);
    let refused = login(
        &site,
        &[("user", USER), ("password", "a brand new password")],
    )
    .await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let again = api(&site, reqwest::Method::DELETE, "/api/v2/users/alice")
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_FOUND);
    let body: serde_json::Value = again.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
    site.stop().await;
}
