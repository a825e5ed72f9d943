//! `wordcount`: JSON in `{"text": "..."}`, JSON out `{"words": N, "lines": N}`.

use crate::plugin::{JobContext, Json, WorkError, Worker};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub struct WordCount;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Text {
    pub text: String,
}

#[derive(Serialize)]
pub struct Counts {
    pub words: usize,
    pub lines: usize,
}

#[async_trait]
impl Worker for WordCount {
    type Input = Json<Text>;
    type Output = Json<Counts>;

    async fn run(
        &self,
        _job: &JobContext,
        Json(input): Json<Text>,
    ) -> Result<Json<Counts>, WorkError> {
        Ok(Json(Counts {
            words: input.text.split_whitespace().count(),
            lines: input.text.lines().count(),
        }))
    }
}
