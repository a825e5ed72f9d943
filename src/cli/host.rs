//! `geardriver run`: load the config, set up the log, run the host until it is stopped.

use super::Outcome;
use crate::config::Config;
use crate::plugin::Registry;
use std::path::PathBuf;

pub fn run(path: Option<PathBuf>, registry: Registry) -> Outcome {
    let path = Config::resolve_path(path.as_deref());
    let config = match Config::load(&path, &registry) {
        Ok(config) => config,
        Err(e) => return Outcome::Usage(e.to_string()),
    };
    if let Err(e) = crate::logging::init_host(
        &config.driver.logfile,
        &config.driver.loglevel,
        config.driver.log_format,
    ) {
        return Outcome::Usage(format!("{}: {e}", path.display()));
    }
    // One thread: the host's work is light I/O, and the thread that starts worker processes
    // must outlive them for their parent-death signal to mean the host died.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return Outcome::Failed(format!("cannot start the async runtime: {e}")),
    };
    let outcome = runtime.block_on(crate::host::run(config, registry));
    let outcome = match outcome {
        Ok(()) => Outcome::Success,
        Err(e @ crate::host::HostError::PartEnded { .. }) => {
            tracing::error!(error = %e, "stopped");
            Outcome::Failed(e.to_string())
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            Outcome::Failed(e.to_string())
        }
    };
    crate::logging::flush(std::time::Duration::from_secs(2));
    outcome
}
