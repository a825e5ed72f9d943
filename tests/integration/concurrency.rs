//! Issue 16, item 2: `concurrency = N`. One process runs up to N jobs at once (an async
//! plugin, a command), each with its own worker loop, stats slot and timeout; the scoreboard
//! has a row per slot and autoscaling counts slots. Jobs come from the `gearman` CLI, against
//! gearmand and the built-in server.

use crate::common::console::Console;
use crate::common::host::Host;
use crate::common::{self, free_port, poll_until, submit_lines, wait_for_status};
use std::process::Output;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(30);

/// Runs `count` foreground jobs of `function` at once, each from its own `gearman` CLI.
fn run_at_once(port: u16, function: &str, workloads: &[&str]) -> Option<Vec<Output>> {
    common::gearman_cli()?;
    let clients: Vec<_> = workloads
        .iter()
        .map(|w| {
            let (port, function, w) = (port.to_string(), function.to_string(), w.to_string());
            std::thread::spawn(move || {
                common::gearman_cli()
                    .unwrap()
                    .args(["-h", "127.0.0.1", "-p", &port, "-f", &function, &w])
                    .output()
                    .unwrap()
            })
        })
        .collect();
    Some(clients.into_iter().map(|c| c.join().unwrap()).collect())
}

fn said(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

both_servers! {
    async fn one_process_runs_as_many_jobs_at_once_as_its_concurrency(server) {
        let console = free_port();
        let host = Host::start(
            &[server.addr().to_string()],
            "interval = 0",
            &format!(
                "[console]\nlisten = \"127.0.0.1:{console}\"\n\
                 [[jobs]]\nname = \"nap\"\nworker = \"sleep\"\nconcurrency = 10\n\
                 [[jobs]]\nname = \"cmd\"\ncommand = [\"sh\", \"-c\", \"sleep 0.5; cat\"]\nconcurrency = 4\n"
            ),
        );
        let nap = host.wait_workers("nap", 1, LIMIT);
        host.wait_workers("cmd", 1, LIMIT);
        // Ten at once in one process, twenty in two waves.
        let started = Instant::now();
        let Some(outs) = run_at_once(server.port, "nap", &["600"; 20]) else {
            return;
        };
        let took = started.elapsed();
        for out in &outs {
            assert_eq!(said(out).trim(), "slept 600", "{out:?}");
        }
        assert!(took < Duration::from_secs(4), "20 jobs of 0.6 s took {took:?}: not 10 at once");
        assert_eq!(host.workers("nap"), nap, "one process did it");

        // The scoreboard has a row for each of the process's slots.
        let mut c = Console::connect(console);
        let rows = c.lines("scoreboard");
        let of_nap = rows.iter().filter(|r| r.contains(&nap[0].to_string())).count();
        assert_eq!(of_nap, 10, "{rows:?}");

        // A command runs four at once too.
        let started = Instant::now();
        let Some(outs) = run_at_once(server.port, "cmd", &["a", "b", "c", "d", "e", "f", "g", "h"])
        else {
            return;
        };
        let took = started.elapsed();
        let mut results: Vec<String> = outs.iter().map(|o| said(o).trim().to_string()).collect();
        results.sort();
        assert_eq!(results, ["a", "b", "c", "d", "e", "f", "g", "h"]);
        assert!(took < Duration::from_millis(2500), "8 commands of 0.5 s took {took:?}");
    }
}

both_servers! {
    async fn each_job_has_its_own_timeout(server) {
        let host = Host::start(
            &[server.addr().to_string()],
            "interval = 0",
            "[[jobs]]\nname = \"nap\"\nworker = \"sleep\"\nconcurrency = 4\ntimeout = 1\n",
        );
        let first = host.wait_workers("nap", 1, LIMIT);
        let Some(outs) = run_at_once(server.port, "nap", &["300", "5000", "300", "700"]) else {
            return;
        };
        let results: Vec<String> = outs.iter().map(said).collect();
        assert_eq!(results[0].trim(), "slept 300");
        assert_eq!(results[2].trim(), "slept 300");
        assert_eq!(results[3].trim(), "slept 700");
        assert!(results[1].contains("timeout: the job ran longer than 1s"), "{}", results[1]);
        // The process that timed out a job is replaced once the others are done.
        assert!(poll_until(LIMIT, || {
            let now = host.workers("nap");
            now.len() == 1 && now != first
        }));
    }
}

both_servers! {
    async fn autoscaling_counts_slots_not_processes(server) {
        let host = Host::start(
            &[server.addr().to_string()],
            "interval = 1",
            "[[jobs]]\nname = \"nap\"\nworker = \"sleep\"\nconcurrency = 5\nmin_processes = 1\nmax_processes = 4\n",
        );
        host.wait_workers("nap", 1, LIMIT);
        // Twelve long jobs: one process takes five, seven wait: two more processes, not seven
        // (nor the four allowed).
        if !submit_lines(server.port, "nap", &[], &vec!["4000".to_string(); 12]) {
            return;
        }
        let mut most = 0;
        let deadline = Instant::now() + Duration::from_millis(3500);
        while Instant::now() < deadline {
            most = most.max(host.workers("nap").len());
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(most, 3, "12 jobs, 5 at once per process");
        assert!(
            wait_for_status(&server.addr(), "nap", |r| r.running == 12).await
                || wait_for_status(&server.addr(), "nap", |r| r.total == 0).await,
            "every job ran at once"
        );
    }
}

// Found trying issue 16: a process that stops on its own (here max_jobs; a job past its
// timeout and max_lifetime do the same) while other jobs of its still run took no new job,
// yet counted as capacity, so nothing replaced it until its last job ended: jobs waited
// seconds with room under max_processes.
both_servers! {
    async fn a_process_that_stops_on_its_own_is_replaced_while_it_finishes(server) {
        let host = Host::start(
            &[server.addr().to_string()],
            "interval = 1",
            "[[jobs]]\nname = \"nap\"\nworker = \"sleep\"\nconcurrency = 4\nmax_jobs = 1\nmin_processes = 1\nmax_processes = 2\n",
        );
        let first = host.wait_workers("nap", 1, LIMIT);
        let port = server.port;
        // A long job, and a short one whose end makes the process stop (max_jobs = 1).
        let long = std::thread::spawn(move || run_at_once(port, "nap", &["4000"]));
        if run_at_once(port, "nap", &["100"]).is_none() {
            return;
        }
        let started = Instant::now();
        let Some(outs) = run_at_once(port, "nap", &["100", "100", "100"]) else {
            return;
        };
        let took = started.elapsed();
        for out in &outs {
            assert_eq!(said(out).trim(), "slept 100");
        }
        assert!(
            took < Duration::from_millis(2500),
            "short jobs waited {took:?} for the stopping process's long job"
        );
        assert!(
            crate::common::host::alive(first[0]),
            "the stopping process was still finishing its long job"
        );
        let long = long.join().unwrap().unwrap();
        assert_eq!(said(&long[0]).trim(), "slept 4000");
    }
}
