//! A user's own worker host: implement `Worker`, register it, and call geardriver's entry
//! point. The result is a complete host — `run`, `check-config`, `submit`, `admin`, `ctl` —
//! whose worker processes (this same binary, started again) know the new plugin.

use async_trait::async_trait;
use geardriver::{JobContext, Json, Registry, WorkError, Worker};
use serde::{Deserialize, Serialize};

/// `{"name": "Ada"}` in, `{"greeting": "hello, Ada"}` out.
struct Greet;

#[derive(Deserialize)]
struct Person {
    name: String,
}

#[derive(Serialize)]
struct Greeting {
    greeting: String,
}

#[async_trait]
impl Worker for Greet {
    type Input = Json<Person>;
    type Output = Json<Greeting>;

    async fn run(
        &self,
        job: &JobContext,
        Json(person): Json<Person>,
    ) -> Result<Json<Greeting>, WorkError> {
        if person.name.trim().is_empty() {
            return Err(WorkError::new("greet: the name is empty"));
        }
        job.status(1, 1);
        Ok(Json(Greeting {
            greeting: format!("hello, {}", person.name),
        }))
    }
}

fn main() -> std::process::ExitCode {
    geardriver::cli::main_with(Registry::with_builtins().register("greet", Greet))
}
