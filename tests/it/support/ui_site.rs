//! A whole crowbar in-process for web UI tests: a fresh database with the shipped
//! barclamps, the admin token and a password user, the HTTP server on a port of its own,
//! and the annealer running the simulated `test` jig.

use std::time::Duration;

use crowbar::{
    annealer::{AnnealerSettings, Engine},
    http::AppState,
    jig::JigRegistry,
};
use sqlx::PgPool;

use super::{app::admin_db, browser::Browser, sse::Served};

/// The password user every site has.
pub const USER: &str = "alice";
pub const PASSWORD: &str = "correct horse battery";

/// A barclamp `site` whose one role, `site-flaky` on the `test` jig, fails while `fail`.
pub fn flaky_barclamp(fail: bool) -> String {
    format!(
        "barclamp: {{name: site, parent: test, description: site roles}}
roles:
  - name: site-flaky
    jig: test
    description: fails until its template is fixed
    template:
      test: {{fail: {fail}}}
"
    )
}

pub struct UiSite {
    pub pool: PgPool,
    pub served: Served,
    engine: Engine,
}

impl UiSite {
    pub async fn start() -> UiSite {
        let db = admin_db().await;
        let hash = crowbar::passwords::Passwords::new(1)
            .hash(PASSWORD)
            .await
            .unwrap();
        let mut conn = db.pool.acquire().await.unwrap();
        crowbar::db::users::create(&mut conn, USER, &hash, crowbar::domain::policy::Role::Admin)
            .await
            .unwrap();
        drop(conn);
        let state = AppState::new(db.pool.clone());
        let hooks = state.hooks.clone();
        let power = state.power.clone();
        let served = Served::start(state).await;
        // power operations are carried out, as by a daemon (no sweep: pages show what was read)
        crowbar::power::worker::PowerWorker {
            pool: db.pool.clone(),
            control: power,
            settings: Default::default(),
            shutdown_grace: Duration::from_secs(5),
        }
        .start(served.shutdown.clone());
        let engine = Engine::start(
            db.pool.clone(),
            &AnnealerSettings::default(),
            JigRegistry::builtin(),
            hooks,
            Duration::from_secs(5),
            served.shutdown.clone(),
        );
        UiSite {
            pool: db.pool,
            served,
            engine,
        }
    }

    pub fn url(&self) -> &str {
        &self.served.url
    }

    /// Logs `browser` in through the login form with the password user.
    pub async fn login(&self, browser: &Browser) {
        browser.goto("/login").await;
        browser.find("#user").await.send_keys(USER).await.unwrap();
        browser
            .find("#password")
            .await
            .send_keys(PASSWORD)
            .await
            .unwrap();
        browser.click("#login").await;
        browser
            .wait_until("the overview after logging in", "location.pathname === '/'")
            .await;
    }

    /// Imports a barclamp (YAML) through the API, as an admin.
    pub async fn import(&self, yaml: &str) {
        let response = self
            .api(reqwest::Method::POST, "/api/v2/barclamps")
            .header("content-type", "application/yaml")
            .body(yaml.to_string())
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{}",
            response.text().await.unwrap()
        );
    }

    /// A request to the site's API with the admin token.
    pub fn api(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        super::client_builder()
            .build()
            .unwrap()
            .request(method, format!("{}{path}", self.url()))
            .bearer_auth(super::app::ADMIN_TOKEN)
    }

    /// The JSON the API answers to `GET path` (any status: `/api/v2/anneal` answers 409
    /// while something failed).
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        self.api(reqwest::Method::GET, path)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Waits until no noderole is TODO or in TRANSITION (at most a minute).
    pub async fn settled(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let busy: i64 =
                sqlx::query_scalar("SELECT count(*) FROM noderoles WHERE state IN (1, 2)")
                    .fetch_one(&self.pool)
                    .await
                    .unwrap();
            if busy == 0 {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{busy} noderoles still to run"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn stop(self) {
        self.served.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(20), self.engine.tracker.wait()).await;
        let _ = tokio::time::timeout(Duration::from_secs(20), self.served.server).await;
    }
}
