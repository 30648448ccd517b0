//! A daemon's HTTP server in-process on `127.0.0.1:0` with a shutdown token the test holds,
//! and a minimal Server-Sent Events reader over reqwest.

use std::time::Duration;

use crowbar::http::AppState;
use serde_json::Value;
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use super::app::ADMIN_TOKEN;

/// `crowbar::app::run` on a port of its own.
pub struct Served {
    pub url: String,
    pub shutdown: CancellationToken,
    pub server: JoinHandle<anyhow::Result<()>>,
    pub client: reqwest::Client,
}

impl Served {
    pub async fn start(state: AppState) -> Served {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(crowbar::app::run(state, listener, shutdown.clone()));
        Served {
            url,
            shutdown,
            server,
            client: crate::support::client_builder().build().unwrap(),
        }
    }

    /// Opens `GET <path>` as the admin, with `Last-Event-ID` when given; asserts a 200.
    pub async fn stream(&self, path: &str, last_event_id: Option<&str>) -> SseStream {
        let response = self.open(path, last_event_id, Some(ADMIN_TOKEN)).await;
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
        assert_eq!(
            response.headers()["content-type"],
            "text/event-stream",
            "an event stream"
        );
        SseStream::new(response)
    }

    pub async fn open(
        &self,
        path: &str,
        last_event_id: Option<&str>,
        token: Option<&str>,
    ) -> reqwest::Response {
        let mut request = self.client.get(format!("{}{path}", self.url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        request.send().await.unwrap()
    }
}

/// One event as received.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: Value,
}

impl SseEvent {
    /// The id as a number.
    pub fn seq(&self) -> i64 {
        self.id.as_deref().unwrap().parse().unwrap()
    }
}

pub struct SseStream {
    response: reqwest::Response,
    buffer: String,
    ended: bool,
}

impl SseStream {
    /// Reads the events of an answer to `GET /api/v2/events` (any server).
    pub fn new(response: reqwest::Response) -> SseStream {
        SseStream {
            response,
            buffer: String::new(),
            ended: false,
        }
    }

    /// Whether the server ended the stream (or the connection broke).
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// The next event (comments skipped); `None` when the stream ended, panics after
    /// `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Option<SseEvent> {
        tokio::time::timeout(timeout, self.next_event())
            .await
            .unwrap_or_else(|_| panic!("no event within {timeout:?}"))
    }

    /// The next event, or `None` when none arrives within `wait` (or the stream ended).
    pub async fn maybe_next(&mut self, wait: Duration) -> Option<SseEvent> {
        tokio::time::timeout(wait, self.next_event())
            .await
            .ok()
            .flatten()
    }

    /// `n` events, panicking when they do not arrive within `timeout` each.
    pub async fn take(&mut self, n: usize, timeout: Duration) -> Vec<SseEvent> {
        let mut events = Vec::new();
        for _ in 0..n {
            events.push(
                self.next(timeout)
                    .await
                    .unwrap_or_else(|| panic!("the stream ended after {events:?}")),
            );
        }
        events
    }

    async fn next_event(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if let Some(event) = parse(&block) {
                    return Some(event);
                }
                continue;
            }
            match self.response.chunk().await {
                Ok(Some(bytes)) => self.buffer.push_str(&String::from_utf8_lossy(&bytes)),
                Ok(None) | Err(_) => {
                    self.ended = true;
                    return None;
                }
            }
        }
    }
}

fn parse(block: &str) -> Option<SseEvent> {
    let mut id = None;
    let mut event = None;
    let mut data = String::new();
    for line in block.lines() {
        if line.starts_with(':') || line.is_empty() {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "id" => id = Some(value.to_string()),
            "event" => event = Some(value.to_string()),
            "data" => {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(value);
            }
            _ => {}
        }
    }
    if id.is_none() && event.is_none() && data.is_empty() {
        return None; // a comment (keep-alive)
    }
    Some(SseEvent {
        id,
        event,
        data: serde_json::from_str(&data).unwrap_or(Value::String(data)),
    })
}
