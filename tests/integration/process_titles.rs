//! Process titles: `ps` (that is, /proc/PID/cmdline) shows each worker process's pool, state
//! and for how long, for plugin workers and for a program's keeper; `top`'s name (comm) too.

use crate::common;

use common::host::Host;
use common::poll_until;
use geardriver::gearman::{Client, ClientOptions, JobRequest};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(15);

fn cmdline(pid: u32) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    String::from_utf8_lossy(&raw)
        .trim_end_matches('\0')
        .replace('\0', " ")
}

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ps_shows_each_process_job_and_state() {
    let server = common::JobServer::start(common::ServerKind::Builtin).expect("built-in server");
    let mut jobs = String::from(
        "[[jobs]]\nname = \"nap\"\nworker = \"sleep\"\nmin_processes = 1\nmax_processes = 1\n\
         [[jobs]]\nname = \"mail\"\nworker = \"echo\"\ngroup = \"notify\"\nmin_processes = 1\nmax_processes = 1\n\
         [[jobs]]\nname = \"sms\"\nworker = \"sleep\"\ngroup = \"notify\"\n",
    );
    let perl = common::perl_gearman_available();
    if perl {
        jobs.push_str(
            "[[jobs]]\nname = \"slow\"\nprogram = [\"perl\", \"tests/programs/sleeper.pl\"]\n\
             env = { STATUS_LINES = \"1\" }\nmin_processes = 1\nmax_processes = 1\n",
        );
    }
    let host = Host::start(&[server.addr().to_string()], "interval = 0", &jobs);
    let nap = host.wait_workers("nap", 1, LIMIT)[0];
    let notify = host.wait_workers("notify", 1, LIMIT)[0];
    let title = |pid: u32, prefix: &'static str| {
        let mut last = String::new();
        let ok = poll_until(LIMIT, || {
            last = cmdline(pid);
            last.starts_with(prefix) && last.ends_with("s]")
        });
        assert!(
            ok,
            "pid {pid}: wanted {prefix:?}…, ps shows {last:?}\n{}",
            host.log()
        );
        last
    };
    title(nap, "geardriver: nap [idle ");
    title(notify, "geardriver: notify [idle ");
    assert_eq!(comm(nap), "gd:nap");
    assert_eq!(comm(notify), "gd:notify");

    // Busy, with the group's job named, and for how long.
    let client =
        std::sync::Arc::new(Client::new(vec![server.addr()], ClientOptions::default()).unwrap());
    let runs: Vec<_> = [("nap", "3000"), ("sms", "3000")]
        .into_iter()
        .map(|(function, payload)| {
            let client = client.clone();
            tokio::spawn(async move { client.run(JobRequest::new(function, payload)).await })
        })
        .collect();
    common::blocking(|| {
        title(nap, "geardriver: nap [busy ");
        title(notify, "geardriver: notify [busy sms ");
        // The time counts up.
        let ok = poll_until(Duration::from_secs(3), || {
            let shown = cmdline(nap);
            shown.starts_with("geardriver: nap [busy ") && !shown.contains("busy 0s")
        });
        assert!(ok, "{}", cmdline(nap));
    });
    let mut outcomes = Vec::new();
    for run in runs {
        outcomes.push(run.await.unwrap());
    }
    let (a, b) = (&outcomes[0], &outcomes[1]);
    assert!(a.is_ok() && b.is_ok(), "{a:?} {b:?}");
    title(nap, "geardriver: nap [idle ");

    if perl {
        let slow = host.wait_workers("slow", 1, LIMIT)[0];
        title(slow, "geardriver: slow [idle ");
    } else {
        common::notice(
            "Perl's Gearman::Worker is missing: the program worker's title is not checked",
        );
    }
}
