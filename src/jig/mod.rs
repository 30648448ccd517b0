//! Jigs: the ways work gets done on a node. Each is a small implementation of [`Jig`];
//! the runner looks them up by name in a [`JigRegistry`].

pub mod ansible;
mod noop;
mod script;
mod sim;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use futures::future::BoxFuture;
use serde_json::Value;

pub use ansible::{AnsibleJig, AnsibleSettings};
pub use noop::NoopJig;
pub use script::{LIBRARY as SCRIPT_LIBRARY, RUNNER as SCRIPT_RUNNER, ScriptJig};
pub use sim::SimJig;

/// One run handed to a jig: the frozen input data, who it is for, and what the claim
/// already read about it (a jig never goes back to the database for its run).
#[derive(Debug, Clone)]
pub struct JigJob {
    pub run_id: i64,
    pub node_id: i64,
    pub node: String,
    pub role: String,
    /// The barclamp that ships the role, and the directory its content came from.
    pub barclamp: String,
    pub barclamp_source: String,
    /// The run's time limit; the runner enforces it, a jig may end its own work just before.
    pub timeout: Duration,
    pub input: Value,
}

/// What a jig reports back.
#[derive(Debug, Clone, PartialEq)]
pub struct JigOutput {
    pub success: bool,
    /// Data returned to the noderole's wall; `None` keeps the old wall.
    pub wall: Option<Value>,
    /// Output for the runlog.
    pub log: String,
}

impl JigOutput {
    pub fn ok(wall: Option<Value>, log: impl Into<String>) -> Self {
        Self {
            success: true,
            wall,
            log: log.into(),
        }
    }
    pub fn failed(log: impl Into<String>) -> Self {
        Self {
            success: false,
            wall: None,
            log: log.into(),
        }
    }
}

pub trait Jig: Send + Sync {
    fn name(&self) -> &'static str;
    /// Does the work. Timeouts are the runner's business; a jig just runs.
    fn run<'a>(&'a self, job: &'a JigJob) -> BoxFuture<'a, JigOutput>;
}

/// The jigs a daemon can execute, by name.
#[derive(Clone, Default)]
pub struct JigRegistry {
    jigs: BTreeMap<&'static str, Arc<dyn Jig>>,
}

impl JigRegistry {
    /// The jigs every daemon has.
    pub fn builtin() -> Self {
        Self::default().with(NoopJig).with(SimJig)
    }

    pub fn with(mut self, jig: impl Jig + 'static) -> Self {
        self.jigs.insert(jig.name(), Arc::new(jig));
        self
    }

    pub fn get(&self, name: &str) -> Option<Arc<dyn Jig>> {
        self.jigs.get(name).cloned()
    }

    pub fn names(&self) -> Vec<String> {
        self.jigs.keys().map(|k| k.to_string()).collect()
    }
}
