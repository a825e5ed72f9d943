//! `sleep`: the workload is a number of milliseconds; sleeps that long and returns
//! `slept N`.

use crate::plugin::{JobContext, WorkError, Worker};
use async_trait::async_trait;
use std::time::Duration;

pub struct Sleep;

#[async_trait]
impl Worker for Sleep {
    type Input = String;
    type Output = String;

    async fn run(&self, _job: &JobContext, input: String) -> Result<String, WorkError> {
        let millis: u64 = input.trim().parse().map_err(|_| {
            WorkError::new(format!(
                "sleep: the workload must be a number of milliseconds, got {input:?}"
            ))
        })?;
        tokio::time::sleep(Duration::from_millis(millis)).await;
        Ok(format!("slept {millis}"))
    }
}
