//! `fail`: always fails; the message is `fail: ` followed by the workload.

use crate::plugin::{JobContext, WorkError, Worker};
use async_trait::async_trait;
use bytes::Bytes;

pub struct Fail;

#[async_trait]
impl Worker for Fail {
    type Input = Bytes;
    type Output = Bytes;

    async fn run(&self, _job: &JobContext, input: Bytes) -> Result<Bytes, WorkError> {
        Err(WorkError::new(format!(
            "fail: {}",
            String::from_utf8_lossy(&input)
        )))
    }
}
