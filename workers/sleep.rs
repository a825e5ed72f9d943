//! `sleep`: the workload is a number of milliseconds; sleeps that long and returns
//! `slept N`.

use crate::plugin::{JobContext, WorkError, Worker};
use async_trait::async_trait;
use std::time::Duration;

pub struct Sleep;

/// The workload of `sleep` and `block`: a number of milliseconds.
pub(super) fn millis(worker: &str, input: &str) -> Result<u64, WorkError> {
    input.trim().parse().map_err(|_| {
        WorkError::new(format!(
            "{worker}: the workload must be a number of milliseconds, got {input:?}"
        ))
    })
}

#[async_trait]
impl Worker for Sleep {
    type Input = String;
    type Output = String;

    async fn run(&self, _job: &JobContext, input: String) -> Result<String, WorkError> {
        let millis = millis("sleep", &input)?;
        tokio::time::sleep(Duration::from_millis(millis)).await;
        Ok(format!("slept {millis}"))
    }
}
