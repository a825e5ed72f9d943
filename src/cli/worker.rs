//! The hidden modes the host starts processes with: `worker` (one worker process serving a
//! pool, spec in the environment, or functions given as flags for manual use) and `launch`
//! (keeps a program that speaks Gearman itself: see [`crate::keeper`]).

use super::{LaunchArgs, Outcome, WorkerArgs};
use crate::keeper::{self, KeeperSpec};
use crate::plugin::Registry;
use crate::worker_process::StatsSlot;
use crate::worker_process::{self, FunctionSpec, Runner, WorkerSpec};
use std::time::Duration;

pub fn run(args: WorkerArgs, registry: &Registry) -> Outcome {
    crate::logging::init_worker();
    let spec = match worker_process::spec_from_env() {
        Some(Ok(spec)) => spec,
        Some(Err(e)) => return Outcome::Usage(e.to_string()),
        None => match spec_from_flags(args) {
            Ok(spec) => spec,
            Err(message) => return Outcome::Usage(message),
        },
    };
    match worker_process::run(spec, registry) {
        Ok(()) => Outcome::Success,
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

fn spec_from_flags(args: WorkerArgs) -> Result<WorkerSpec, String> {
    if args.servers.is_empty() || args.functions.is_empty() {
        return Err("worker: give --server and --function (the host passes a spec instead)".into());
    }
    let functions = args
        .functions
        .iter()
        .map(|f| {
            let (name, plugin) = f.split_once('=').unwrap_or((f, f));
            FunctionSpec {
                name: name.to_string(),
                run: Runner::Plugin(plugin.to_string()),
                decode: "raw".into(),
                encode: "raw".into(),
                timeout_ms: None,
                prefetch: !args.no_prefetch,
                env: Default::default(),
            }
        })
        .collect();
    Ok(WorkerSpec {
        pool: args.pool.unwrap_or_else(|| "manual".into()),
        servers: args.servers.iter().map(ToString::to_string).collect(),
        functions,
        client_id: args
            .client_id
            .unwrap_or_else(|| format!("geardriver-worker:{}", std::process::id())),
        stats: None,
        max_jobs: None,
        max_lifetime_ms: None,
        parent_pid: None,
        shutdown_timeout_ms: 0,
        concurrency: args.concurrency.max(1),
    })
}

pub fn launch(args: LaunchArgs) -> Outcome {
    crate::logging::init_worker();
    let spec = KeeperSpec {
        host_pid: args.parent_pid,
        functions: args.functions,
        stats: args.stats_fd.zip(args.slot).map(|(fd, slot)| StatsSlot {
            fd,
            slot,
            more: Vec::new(),
        }),
        shutdown_timeout: Duration::from_millis(args.shutdown_timeout_ms),
        max_lifetime: args.max_lifetime_ms.map(Duration::from_millis),
        argv: args.argv,
    };
    match keeper::run(spec) {
        Ok(status) => keeper::exit_like(status),
        Err(message) => Outcome::Failed(message),
    }
}
