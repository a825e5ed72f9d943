//! `exit`: ends its own process abruptly in the middle of the job, without a result, so the
//! job server hands the job to another process. A fixture for crash handling.

use crate::plugin::{JobContext, WorkError, Worker};
use async_trait::async_trait;
use bytes::Bytes;

/// The exit status of a process ended by the `exit` worker.
pub const EXIT_STATUS: i32 = 3;

pub struct Exit;

#[async_trait]
impl Worker for Exit {
    type Input = Bytes;
    type Output = Bytes;

    async fn run(&self, _job: &JobContext, _input: Bytes) -> Result<Bytes, WorkError> {
        std::process::exit(EXIT_STATUS)
    }
}
