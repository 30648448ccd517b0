//! The jig simulated fleets run on: exactly the simulation jig ([`SimJig`], `test.delay`,
//! `test.fail`), registered under a name of its own.
//!
//! Why not `test` itself: a daemon queues and claims every run whose jig it has, in every
//! deployment. Under its own name the simulator's annealer runs only simulated work, even
//! against a database a daemon uses too, and that daemon (which has no `simulate` jig)
//! never runs the simulation's work.

use futures::future::BoxFuture;

use super::fleet::JIG;
use crate::jig::{Jig, JigJob, JigOutput, JigRegistry, SimJig};

pub struct SimulateJig;

impl Jig for SimulateJig {
    fn name(&self) -> &'static str {
        JIG
    }

    fn run<'a>(&'a self, job: &'a JigJob) -> BoxFuture<'a, JigOutput> {
        SimJig.run(job)
    }
}

/// The only jig the simulator's annealer runs.
pub fn registry() -> JigRegistry {
    JigRegistry::default().with(SimulateJig)
}
