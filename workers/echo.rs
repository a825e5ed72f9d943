//! `echo`: returns its decoded input, re-encoded. With `decode = encode = "json"` invalid
//! JSON fails the job (the codec's parse error).

use crate::plugin::{JobContext, Payload, WorkError, Worker};
use async_trait::async_trait;

pub struct Echo;

#[async_trait]
impl Worker for Echo {
    type Input = Payload;
    type Output = Payload;

    async fn run(&self, _job: &JobContext, input: Payload) -> Result<Payload, WorkError> {
        Ok(input)
    }
}
