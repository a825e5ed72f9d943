//! A benchmark helper: COUNT sequential foreground jobs (after WARMUP more) through one
//! client connection, each timed from submit to result; prints the latency distribution as
//! one JSON line. `scripts/bench_latency.py` runs it against each worker and server.
//!
//! Usage: rt_latency HOST:PORT FUNCTION COUNT [WARMUP]

use geardriver::gearman::{Client, ClientOptions, JobOutcome, JobRequest};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: rt_latency HOST:PORT FUNCTION COUNT [WARMUP]");
        std::process::exit(2);
    }
    let server = args[1].parse().expect("HOST:PORT");
    let function = args[2].clone();
    let count: usize = args[3].parse().expect("COUNT");
    let warmup: usize = args.get(4).map_or(200, |w| w.parse().expect("WARMUP"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = Client::new(vec![server], ClientOptions { exceptions: false, ..Default::default() }).unwrap();
        let mut micros = Vec::with_capacity(count);
        let started = Instant::now();
        for i in 0..warmup + count {
            let at = Instant::now();
            let outcome = client.run(JobRequest::new(function.clone(), format!("rt-{i}"))).await.expect("job ran");
            assert!(matches!(outcome, JobOutcome::Complete(_)), "{outcome:?}");
            if i >= warmup {
                micros.push(at.elapsed().as_secs_f64() * 1e6);
            }
        }
        let total = started.elapsed().as_secs_f64();
        micros.sort_by(f64::total_cmp);
        let at = |q: f64| micros[((micros.len() as f64 * q) as usize).min(micros.len() - 1)];
        println!(
            "{{\"count\": {count}, \"p50_us\": {:.1}, \"p90_us\": {:.1}, \"p99_us\": {:.1}, \"max_us\": {:.1}, \"jobs_per_s\": {:.0}}}",
            at(0.5),
            at(0.9),
            at(0.99),
            micros[micros.len() - 1],
            (warmup + count) as f64 / total
        );
    });
}
