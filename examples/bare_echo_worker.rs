//! A benchmark baseline, not an example to follow: the protocol's worker loop with a handler
//! that returns the workload as it is, without the plugin layer a worker process adds
//! (codecs, begin/end hooks, panic capture, the stats slot). `scripts/bench_codec.py` drains
//! the same jobs with this and with `geardriver worker` to measure what that layer costs.
//!
//! Usage: bare_echo_worker HOST:PORT FUNCTION

use bytes::Bytes;
use geardriver::gearman::worker::{
    self, Ability, AssignedJob, JobFailure, JobHandler, WorkUpdates, WorkerConfig,
};
use tokio_util::sync::CancellationToken;

struct Echo;

impl JobHandler for Echo {
    async fn handle(&self, job: AssignedJob, _updates: WorkUpdates) -> Result<Bytes, JobFailure> {
        Ok(job.data)
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(server), Some(function)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: bare_echo_worker HOST:PORT FUNCTION");
        std::process::exit(2);
    };
    let server = server.parse().expect("HOST:PORT");
    let config = WorkerConfig::new(vec![server], vec![Ability::new(function.clone())]);
    let shutdown = CancellationToken::new();
    geardriver::worker_process::stop_on_signals(shutdown.clone()).expect("signals");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .expect("runtime");
    runtime.block_on(worker::run(&config, &Echo, &shutdown));
}
