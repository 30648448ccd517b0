//! The `noop` jig: does nothing and succeeds.

use futures::future::BoxFuture;

use super::{Jig, JigJob, JigOutput};

pub struct NoopJig;

impl Jig for NoopJig {
    fn name(&self) -> &'static str {
        "noop"
    }

    fn run<'a>(&'a self, _job: &'a JigJob) -> BoxFuture<'a, JigOutput> {
        Box::pin(async { JigOutput::ok(None, "") })
    }
}
