//! `geardriver worker`: one worker process serving functions on every given job server until
//! SIGTERM/SIGINT, then finishing the job in hand.

use super::{Outcome, WorkerArgs};
use crate::gearman::worker::{
    self, Ability, AssignedJob, JobFailure, JobHandler, WorkUpdates, WorkerConfig,
};
use async_trait::async_trait;
use bytes::Bytes;
use std::collections::HashMap;
use tokio_util::sync::CancellationToken;

/// The plugins this build knows.
#[derive(Clone, Copy, Debug)]
enum Builtin {
    Echo,
    Reverse,
}

struct Builtins {
    by_function: HashMap<Bytes, Builtin>,
}

#[async_trait]
impl JobHandler for Builtins {
    async fn handle(&self, job: AssignedJob, _updates: WorkUpdates) -> Result<Bytes, JobFailure> {
        match self.by_function.get(&job.function) {
            Some(Builtin::Echo) => Ok(job.data),
            Some(Builtin::Reverse) => match std::str::from_utf8(&job.data) {
                Ok(text) => Ok(Bytes::from(text.chars().rev().collect::<String>())),
                Err(e) => Err(JobFailure::Exception(Bytes::from(format!(
                    "reverse: input is not UTF-8: {e}"
                )))),
            },
            None => Err(JobFailure::Exception(Bytes::from(
                "no plugin for this function",
            ))),
        }
    }
}

pub fn run(args: WorkerArgs) -> Outcome {
    let mut by_function = HashMap::new();
    for spec in &args.functions {
        let (function, plugin) = spec.split_once('=').unwrap_or((spec, spec));
        let builtin = match plugin {
            "echo" => Builtin::Echo,
            "reverse" => Builtin::Reverse,
            other => {
                return Outcome::Usage(format!(
                    "unknown plugin {other:?} for function {function:?}"
                ));
            }
        };
        by_function.insert(Bytes::from(function.to_string()), builtin);
    }
    let abilities = by_function.keys().cloned().map(Ability::new).collect();
    let mut config = WorkerConfig::new(args.servers, abilities);
    config.client_id = args.client_id.map(Bytes::from);
    let handler = Builtins { by_function };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return Outcome::Failed(format!("cannot start the async runtime: {e}")),
    };
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            wait_for_stop_signal().await;
            stop.cancel();
        });
        worker::run(&config, &handler, &shutdown).await;
    });
    Outcome::Success
}

async fn wait_for_stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => std::future::pending::<()>().await,
    }
}
