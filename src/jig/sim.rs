//! The simulation jig, registered as `test` (SEMANTICS.md §1): no remote work. It takes
//! `test.delay` seconds, fails when `test.fail` is true, and returns
//! `{"test": {"ran": true, "node": .., "role": ..}}`. Demos, benchmarks and tests use it to
//! exercise the annealer without nodes.

use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::json;

use super::{Jig, JigJob, JigOutput};
use crate::domain::data::get_path;

pub struct SimJig;

impl Jig for SimJig {
    fn name(&self) -> &'static str {
        "test"
    }

    fn run<'a>(&'a self, job: &'a JigJob) -> BoxFuture<'a, JigOutput> {
        Box::pin(async move {
            let delay = get_path(&job.input, "test/delay")
                .and_then(|v| v.as_f64())
                .unwrap_or(0.0)
                .max(0.0);
            let fail = get_path(&job.input, "test/fail")
                .and_then(|v| v.as_bool())
                .unwrap_or(false);
            if delay > 0.0 {
                tokio::time::sleep(Duration::from_secs_f64(delay.min(86_400.0))).await;
            }
            if fail {
                return JigOutput::failed(format!(
                    "test jig: {} on {} failed as asked (test.fail = true)",
                    job.role, job.node
                ));
            }
            JigOutput::ok(
                Some(json!({"test": {"ran": true, "node": job.node, "role": job.role}})),
                format!(
                    "test jig: {} on {} ran (delay {delay}s)",
                    job.role, job.node
                ),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(input: serde_json::Value) -> JigJob {
        JigJob {
            run_id: 1,
            node_id: 1,
            node: "n1.example.com".into(),
            role: "test-server".into(),
            barclamp: "test".into(),
            barclamp_source: String::new(),
            timeout: Duration::from_secs(60),
            input,
        }
    }

    #[tokio::test]
    async fn succeeds_with_the_documented_wall() {
        let out = SimJig.run(&job(json!({}))).await;
        assert!(out.success);
        assert_eq!(
            out.wall,
            Some(json!({"test": {"ran": true, "node": "n1.example.com", "role": "test-server"}}))
        );
    }

    #[tokio::test]
    async fn fails_when_asked() {
        let out = SimJig.run(&job(json!({"test": {"fail": true}}))).await;
        assert!(!out.success);
        assert!(out.log.contains("failed as asked"));
    }

    #[tokio::test(start_paused = true)]
    async fn takes_its_delay() {
        let start = tokio::time::Instant::now();
        SimJig.run(&job(json!({"test": {"delay": 3}}))).await;
        assert!(start.elapsed() >= Duration::from_secs(3));
    }
}
