//! The figures operators ask for, in the console: `scoreboard` gives each process's memory,
//! CPU share, the handle of the job it holds and for how long; `show JOB extended` the same
//! per pid; `status extended` each job's queue. Gearman::Driver's own `status` and `show`
//! stay exactly as they were (console.rs checks them).

use crate::common;

use common::console::Console;
use common::host::Host;
use common::{free_port, poll_until};
use geardriver::gearman::{Client, ClientOptions, JobRequest};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(15);

both_servers! {
    async fn the_console_shows_memory_cpu_and_the_job_in_hand(server) {
        let port = free_port();
        let host = Host::start(
            &[server.addr().to_string()],
            "interval = 0.3",
            &format!(
                "[console]\nlisten = \"127.0.0.1:{port}\"\n\
                 [[jobs]]\nname = \"nap\"\nworker = \"sleep\"\nmin_processes = 1\nmax_processes = 1\n"
            ),
        );
        let pid = host.wait_workers("nap", 1, LIMIT)[0];
        assert!(poll_until(LIMIT, || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()));
        let mut console = Console::connect(port);
        // Idle: memory and CPU once sampled (every second), no job.
        let mut row = Vec::new();
        assert!(
            common::blocking(|| poll_until(LIMIT, || {
                row = console.lines("scoreboard");
                row.len() == 1 && row[0].split_whitespace().nth(5).is_some_and(|r| r.ends_with('M'))
                    && row[0].split_whitespace().nth(6).is_some_and(|c| c.ends_with('%'))
            })),
            "{row:?}"
        );
        let fields: Vec<String> = row[0].split_whitespace().map(String::from).collect();
        assert_eq!(fields[0], pid.to_string());
        assert_eq!((fields[1].as_str(), fields[2].as_str()), ("nap", "_"));
        assert_eq!(&fields[7..], ["-", "-"], "{row:?}");
        let rss: f64 = fields[5].trim_end_matches('M').parse().unwrap();
        assert!(rss > 1.0 && rss < 500.0, "{rss}");

        // Busy with a 3 s job, and two more waiting: the handle, for how long, the queue.
        let client = std::sync::Arc::new(Client::new(vec![server.addr()], ClientOptions::default()).unwrap());
        let runs: Vec<_> = (0..3)
            .map(|_| {
                let client = client.clone();
                tokio::spawn(async move { client.run(JobRequest::new("nap", "3000")).await })
            })
            .collect();
        let mut shown = Vec::new();
        assert!(
            common::blocking(|| poll_until(LIMIT, || {
                shown = console.lines("scoreboard");
                shown.len() == 1 && shown[0].split_whitespace().nth(2) == Some("B")
                    && shown[0].split_whitespace().nth(7).is_some_and(|h| h.starts_with("H:"))
                    && shown[0].ends_with("s")
                    && !shown[0].ends_with(" 0s")
            })),
            "{shown:?}"
        );
        let handle = shown[0].split_whitespace().nth(7).unwrap().to_string();
        let extended = console.lines("show nap extended");
        assert!(extended[0].starts_with("nap  1  1  1  "), "{extended:?}");
        assert!(
            extended[1].starts_with(&format!("{pid}  rss "))
                && extended[1].contains(&format!("  busy nap {handle} for ")),
            "{extended:?}"
        );
        assert_eq!(console.lines("show nap")[1], pid.to_string(), "plain show: pids only");
        let mut status = Vec::new();
        assert!(
            common::blocking(|| poll_until(LIMIT, || {
                status = console.lines("status extended");
                // name min max current queued running …
                let f: Vec<&str> = status[0].split_whitespace().collect();
                f[..6] == ["nap", "1", "1", "1", "2", "1"]
            })),
            "{status:?}"
        );
        let plain = console.lines("status");
        assert_eq!(plain[0].split_whitespace().nth(4).map(|t| t.len()), Some(19), "lastrun follows current: {plain:?}");
        for run in runs {
            run.await.unwrap().unwrap();
        }
    }
}
