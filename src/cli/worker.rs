//! The hidden modes the host starts processes with: `worker` (one worker process serving a
//! pool, spec in the environment, or functions given as flags for manual use) and `launch`
//! (arms the parent-death signal, then execs a program that speaks Gearman itself).

use super::{LaunchArgs, Outcome, WorkerArgs};
use crate::plugin::Registry;
use crate::worker_process::{self, FunctionSpec, Runner, WorkerSpec};
use std::os::unix::process::CommandExt;

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
    })
}

pub fn launch(args: LaunchArgs) -> Outcome {
    // The parent-death signal survives exec, so the program stops when the host dies.
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM);
    if nix::unistd::getppid().as_raw() as u32 != args.parent_pid {
        return Outcome::Failed("the host that started this program is gone".into());
    }
    let error = std::process::Command::new(&args.argv[0])
        .args(&args.argv[1..])
        .exec();
    Outcome::Failed(format!("cannot run {:?}: {error}", args.argv[0]))
}
