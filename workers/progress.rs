//! `progress`: reports on itself while it runs, then returns its workload: WORK_STATUS 1/2,
//! WORK_DATA `data`, WORK_WARNING `warning`, WORK_STATUS 2/2, then the result. A fixture for
//! what clients see of a job in progress.

use crate::plugin::{JobContext, WorkError, Worker};
use async_trait::async_trait;
use bytes::Bytes;

pub struct Progress;

#[async_trait]
impl Worker for Progress {
    type Input = Bytes;
    type Output = Bytes;

    async fn run(&self, job: &JobContext, input: Bytes) -> Result<Bytes, WorkError> {
        job.status(1, 2);
        job.data("data");
        job.warning("warning");
        job.status(2, 2);
        Ok(input)
    }
}
