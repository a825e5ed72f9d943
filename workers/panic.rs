//! `panic`: panics with the workload as its message. A fixture for what clients see of a
//! plugin that panics (the job fails with `panic: …`; the process keeps serving).

use crate::plugin::{JobContext, WorkError, Worker};
use async_trait::async_trait;

pub struct Panic;

#[async_trait]
impl Worker for Panic {
    type Input = String;
    type Output = String;

    async fn run(&self, _job: &JobContext, input: String) -> Result<String, WorkError> {
        panic!("{input}")
    }
}
