//! A real headless Chromium, driven over WebDriver: Debian's `chromedriver` started per
//! test on a free loopback port, spoken to with fantoccini. Every browser gets a fresh
//! profile directory; its console log is read through chromedriver's log endpoint, and
//! screenshots are saved under `target/ui-screenshots/`.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use fantoccini::{
    Client, ClientBuilder, Locator,
    actions::{InputSource, MOUSE_BUTTON_LEFT, MouseActions, PointerAction},
    elements::Element,
    wd::{WebDriverCompatibleCommand, WindowHandle},
};
use serde_json::{Value, json};
use tempfile::TempDir;

/// How long waits for the page wait before failing the test.
pub const DEADLINE: Duration = Duration::from_secs(30);

pub struct Browser {
    pub client: Client,
    pub base: String,
    driver: Child,
    _profile: TempDir,
}

fn chromium() -> &'static str {
    // the real binary; /usr/bin/chromium is a wrapper script
    if Path::new("/usr/lib/chromium/chromium").exists() {
        "/usr/lib/chromium/chromium"
    } else {
        "/usr/bin/chromium"
    }
}

/// Where screenshots go: `target/ui-screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ui-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl Browser {
    /// Starts chromedriver and a headless Chromium, with pages of `base` (a URL) in reach.
    pub async fn start(base: &str) -> Browser {
        let port = super::free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver runs (apt-get install chromium-driver)");
        let deadline = Instant::now() + DEADLINE;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium(),
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--window-size=1400,1000",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a WebDriver session with Chromium");
        Browser {
            client,
            base: base.trim_end_matches('/').to_string(),
            driver,
            _profile: profile,
        }
    }

    pub async fn goto(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap();
    }

    /// The path (and query) of the current page.
    pub async fn path(&self) -> String {
        let url = self.client.current_url().await.unwrap();
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        }
    }

    pub async fn find(&self, css: &str) -> Element {
        self.client
            .wait()
            .at_most(DEADLINE)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no `{css}` on {}: {e}", self.path_now()))
    }

    /// Does `act` to the element `css` (waiting for it to appear; found again when a live
    /// reload replaced it on the way: a stale element takes no action, so none is done
    /// twice). `what` names the action in a failure.
    async fn on_fresh<F, Fut>(&self, css: &str, what: &str, act: F)
    where
        F: Fn(Element) -> Fut,
        Fut: std::future::Future<Output = Result<(), fantoccini::error::CmdError>>,
    {
        for _ in 0..5 {
            match act(self.find(css).await).await {
                Ok(()) => return,
                Err(e) if e.to_string().contains("stale element") => continue,
                Err(e) => panic!("{what} {css}: {e}"),
            }
        }
        panic!("{what} {css}: it kept being replaced");
    }

    /// Clicks the element `css`, found again when a live reload replaced it on the way.
    pub async fn click(&self, css: &str) {
        self.on_fresh(css, "clicking", |e| async move { e.click().await })
            .await;
    }

    /// Sends `keys` to the element `css`, found again when replaced on the way.
    pub async fn press(&self, css: &str, keys: &str) {
        self.on_fresh(css, "sending keys to", |e| async move {
            e.send_keys(keys).await
        })
        .await;
    }

    /// Checks the checkbox `css` (a second click would uncheck it: this looks before each
    /// try, so an element replaced by a live reload mid-click is not toggled twice).
    pub async fn check(&self, css: &str) {
        let checked = format!("!!(document.querySelector({}) || {{}}).checked", json!(css));
        for _ in 0..5 {
            if self.eval(&checked).await == Value::Bool(true) {
                return;
            }
            match self.find(css).await.click().await {
                Ok(()) => {}
                Err(e) if e.to_string().contains("stale element") => {}
                Err(e) => panic!("checking {css}: {e}"),
            }
        }
        assert_eq!(
            self.eval(&checked).await,
            Value::Bool(true),
            "{css} stays unchecked"
        );
    }

    /// Chooses `value` in the select element `css`, found again when replaced on the way.
    pub async fn select(&self, css: &str, value: &str) {
        self.on_fresh(css, &format!("choosing {value} in"), |e| async move {
            e.select_by_value(value).await
        })
        .await;
    }

    fn path_now(&self) -> String {
        "the page".into()
    }

    /// Runs `script` (a JS expression) in the page.
    pub async fn eval(&self, script: &str) -> Value {
        self.client
            .execute(&format!("return ({script});"), vec![])
            .await
            .unwrap_or_else(|e| panic!("`{script}` failed: {e}"))
    }

    /// Polls the JS expression `condition` until it is true; fails after [`DEADLINE`],
    /// saying `what` was awaited.
    pub async fn wait_until(&self, what: &str, condition: &str) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if self.eval(condition).await == Value::Bool(true) {
                return;
            }
            if Instant::now() > deadline {
                let body = self.eval("document.body.innerText").await;
                panic!("timed out waiting for {what} ({condition}); the page says:\n{body}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The text of the first element matching `css`, or "" when there is none.
    pub async fn text(&self, css: &str) -> String {
        let css = serde_json::to_string(css).unwrap();
        self.eval(&format!(
            "(document.querySelector({css}) || {{innerText: ''}}).innerText.trim()"
        ))
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    /// Drags the element `from` (CSS) onto the element `to` with real pointer events. The
    /// elements are looked up again when a live reload replaced them on the way (a reload
    /// can follow the page's own change by a moment).
    pub async fn drag_css(&self, from: &str, to: &str) {
        for _ in 0..5 {
            let (source, target) = (self.find(from).await, self.find(to).await);
            match self.try_drag(&source, &target).await {
                Ok(()) => return,
                Err(e) if e.to_string().contains("stale element") => {
                    let _ = self.client.release_actions().await;
                }
                Err(e) => panic!("dragging {from} onto {to}: {e}"),
            }
        }
        panic!("dragging {from} onto {to}: the elements kept being replaced");
    }

    /// Drags `from` onto `to` with real pointer events: press, move in steps, release.
    pub async fn drag(&self, from: &Element, to: &Element) {
        self.try_drag(from, to).await.unwrap();
    }

    async fn try_drag(
        &self,
        from: &Element,
        to: &Element,
    ) -> Result<(), fantoccini::error::CmdError> {
        let mouse = MouseActions::new("mouse".into())
            .then(PointerAction::MoveToElement {
                element: from.clone(),
                duration: None,
                x: 0.0,
                y: 0.0,
            })
            .then(PointerAction::Down {
                button: MOUSE_BUTTON_LEFT,
            })
            .then(PointerAction::MoveBy {
                duration: Some(Duration::from_millis(100)),
                x: 5.0,
                y: 5.0,
            })
            .then(PointerAction::MoveBy {
                duration: Some(Duration::from_millis(100)),
                x: 10.0,
                y: 10.0,
            })
            .then(PointerAction::MoveToElement {
                element: to.clone(),
                duration: Some(Duration::from_millis(300)),
                x: 0.0,
                y: 0.0,
            })
            .then(PointerAction::MoveToElement {
                element: to.clone(),
                duration: Some(Duration::from_millis(100)),
                x: 2.0,
                y: 2.0,
            })
            .then(PointerAction::Up {
                button: MOUSE_BUTTON_LEFT,
            });
        self.client.perform_actions(mouse).await?;
        self.client.release_actions().await
    }

    /// Opens `path` in a new window of this browser and makes it the current one.
    pub async fn open_window(&self, path: &str) -> WindowHandle {
        let window = self.client.new_window(false).await.unwrap().handle;
        self.switch_to(&window).await;
        self.goto(path).await;
        window
    }

    /// Makes `window` the one later calls act on.
    pub async fn switch_to(&self, window: &WindowHandle) {
        self.client.switch_to_window(window.clone()).await.unwrap();
    }

    /// The current window.
    pub async fn window(&self) -> WindowHandle {
        self.client.window().await.unwrap()
    }

    /// Saves a screenshot as `target/ui-screenshots/<name>.png`.
    pub async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(screenshot_dir().join(format!("{name}.png")), png).unwrap();
    }

    /// The browser console's errors since the last call (each read empties the log).
    pub async fn console_errors(&self) -> Vec<String> {
        let entries = self.client.issue_cmd(BrowserLog).await.unwrap();
        entries
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["level"] == "SEVERE")
            .map(|e| e["message"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// The accessibility problems axe-core finds in the page as it is now (WCAG 2.1 A and
    /// AA, and axe's best practices: landmarks, labels, headings), as
    /// (impact, "rule: help @ first places").
    pub async fn accessibility(&self) -> Vec<(String, String)> {
        if self.eval("typeof window.axe === 'undefined'").await == Value::Bool(true) {
            let axe = std::fs::read_to_string(super::python::share("axe.min.js")).unwrap();
            self.client.execute(&axe, vec![]).await.unwrap();
        }
        let found = self
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 axe.run(document, {runOnly: {type: 'tag',
                     values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']},
                   resultTypes: ['violations']})
                   .then(r => done(r.violations.map(v => [v.impact,
                     v.id + ': ' + v.help + ' @ ' +
                     v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(', ')])))
                   .catch(e => done([['error', String(e)]]));",
                vec![],
            )
            .await
            .unwrap();
        serde_json::from_value(found).unwrap()
    }

    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // chromedriver takes its Chromium with it
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// chromedriver's log endpoint (`goog:loggingPrefs` selects what it keeps).
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(json!({"type": "browser"}).to_string()),
        )
    }
}
