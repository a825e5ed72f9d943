//! `reverse`: reverses UTF-8 text, character by character.

use crate::plugin::{JobContext, WorkError, Worker};
use async_trait::async_trait;

pub struct Reverse;

#[async_trait]
impl Worker for Reverse {
    type Input = String;
    type Output = String;

    async fn run(&self, _job: &JobContext, input: String) -> Result<String, WorkError> {
        Ok(input.chars().rev().collect())
    }
}
