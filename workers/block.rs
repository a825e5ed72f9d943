//! `block`: the workload is a number of milliseconds; blocks its thread that long without
//! yielding (as a synchronous library call or a CPU-bound loop does) and returns
//! `blocked N`. A fixture for timeouts of jobs that cannot be interrupted.

use crate::plugin::{JobContext, WorkError, Worker};
use async_trait::async_trait;
use std::time::Duration;

pub struct Block;

#[async_trait]
impl Worker for Block {
    type Input = String;
    type Output = String;

    async fn run(&self, _job: &JobContext, input: String) -> Result<String, WorkError> {
        let millis = super::sleep::millis("block", &input)?;
        std::thread::sleep(Duration::from_millis(millis));
        Ok(format!("blocked {millis}"))
    }
}
