//! `state`: the workload is `LETTER MILLISECONDS`; shows LETTER as its scoreboard state
//! ([`JobContext::set_state`]) for that long, then returns `state LETTER`. A letter the
//! scoreboard refuses fails the job with the reason. A fixture for custom states.

use crate::plugin::{JobContext, WorkError, Worker};
use async_trait::async_trait;
use std::time::Duration;

pub struct State;

#[async_trait]
impl Worker for State {
    type Input = String;
    type Output = String;

    async fn run(&self, job: &JobContext, input: String) -> Result<String, WorkError> {
        let mut chars = input.chars();
        let letter = chars
            .next()
            .ok_or_else(|| WorkError::new("state: the workload is LETTER MILLISECONDS"))?;
        let millis = super::sleep::millis("state", chars.as_str())?;
        job.set_state(letter)
            .map_err(|e| WorkError::new(format!("state: {e}")))?;
        tokio::time::sleep(Duration::from_millis(millis)).await;
        Ok(format!("state {letter}"))
    }
}
