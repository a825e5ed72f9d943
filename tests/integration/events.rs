//! `[driver] on_event`: the command hears of crashes, of a job the driver gives up on and of
//! its recovery, with the details in its environment, and never holds the host up.

use crate::common;

use common::host::Host;
use common::poll_until;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(20);

#[test]
fn on_event_hears_of_crashes_failures_and_recoveries() {
    let server = common::JobServer::start(common::ServerKind::Builtin).expect("built-in server");
    // The command appends one line per event to a file beside the config, says something on
    // stdout (logged), and sleeps: a slow command must not hold up the host.
    let on_event = r#"on_event = ["sh", "-c", "echo \"$GEARDRIVER_EVENT|$GEARDRIVER_EVENT_JOB|$GEARDRIVER_EVENT_PID|$GEARDRIVER_EVENT_STATUS|$GEARDRIVER_EVENT_REASON|${GEARDRIVER__CONSOLE__SECRET:-no secret}\" >> events.txt; echo told $GEARDRIVER_EVENT; sleep 2"]"#;
    let (dir, config) = common::host::config_dir(
        &[server.addr().to_string()],
        &format!("restart_delay = 0.05\n{on_event}"),
        "[[jobs]]\nname = \"crashy\"\nprogram = [\"sh\", \"-c\", \"exit 9\"]\n\
         [[jobs]]\nname = \"reverse\"\nworker = \"reverse\"\nmin_processes = 1\n",
    );
    let events = dir.path().join("events.txt");
    let host = Host::start_with_env(dir, config, &[("GEARDRIVER__CONSOLE__SECRET", "hush")]);
    let read = || std::fs::read_to_string(&events).unwrap_or_default();
    host.wait_log("giving up on this job", LIMIT);
    assert!(
        poll_until(LIMIT, || read().contains("job_failed|crashy|")),
        "{}\n{}",
        read(),
        host.log()
    );
    let text = read();
    let crashes: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("process_crashed|crashy|"))
        .collect();
    assert_eq!(crashes.len(), 5, "one per death: {text}");
    assert!(
        crashes[0].contains("|exited with status 9|"),
        "{}",
        crashes[0]
    );
    let failed = text.lines().find(|l| l.starts_with("job_failed|")).unwrap();
    assert!(failed.contains("5 processes in a row died"), "{failed}");
    assert!(
        !text.contains("hush"),
        "the console's secret stays the host's: {text}"
    );
    assert!(text.lines().all(|l| l.ends_with("|no secret")), "{text}");
    host.wait_log("[on_event] STDOUT: told job_failed", LIMIT);

    // A process killed from outside is a crash too.
    let reverse = host.wait_workers("reverse", 1, LIMIT)[0];
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(reverse as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let line =
        format!("process_crashed|reverse|{reverse}|exited with status 137 (killed by SIGKILL)|");
    assert!(poll_until(LIMIT, || read().contains(&line)), "{}", read());
    host.wait_workers("reverse", 1, LIMIT);

    // A reload retries the failed job: it recovers.
    host.signal(nix::sys::signal::Signal::SIGHUP);
    assert!(
        poll_until(LIMIT, || read().contains("job_recovered|crashy|")),
        "{}",
        read()
    );
}

#[test]
fn a_bad_on_event_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let (_, stderr) = common::refused_start(dir.path(), "[driver]\non_event = [\"\"]\n");
    assert!(stderr.contains("driver.on_event"), "{stderr}");
    // A command that cannot run is logged; the host runs on.
    let server = common::JobServer::start(common::ServerKind::Builtin).expect("built-in server");
    let host = Host::start(
        &[server.addr().to_string()],
        "restart_delay = 0.05\non_event = [\"/nonexistent/notify\"]",
        "[[jobs]]\nname = \"crashy\"\nprogram = [\"sh\", \"-c\", \"exit 3\"]\nmin_processes = 1\n",
    );
    host.wait_log("on_event: cannot run the command", LIMIT);
    host.wait_log("giving up on this job", LIMIT);
    assert!(common::host::alive(host.pid()));
}

/// Found by a trial: commands still running when the host stopped lived on, re-parented to
/// init, with whatever they started.
#[test]
fn a_command_still_running_when_the_host_stops_goes_with_it() {
    let server = common::JobServer::start(common::ServerKind::Builtin).expect("built-in server");
    let (dir, config) = common::host::config_dir(
        &[server.addr().to_string()],
        "restart_delay = 0.05\non_event = [\"sh\", \"-c\", \"echo $$ >> pids; sleep 100 & echo $! >> pids; wait\"]",
        "[[jobs]]\nname = \"reverse\"\nworker = \"reverse\"\nmin_processes = 1\n",
    );
    let pids = dir.path().join("pids");
    let mut host = Host::start_with(dir, config);
    let worker = host.wait_workers("reverse", 1, LIMIT)[0];
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(worker as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let read = || -> Vec<u32> {
        std::fs::read_to_string(&pids)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    };
    assert!(poll_until(LIMIT, || read().len() == 2), "{:?}", read());
    let started = read();
    assert!(started.iter().all(|&p| common::host::alive(p)));
    host.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(host.wait_exit(LIMIT).success());
    assert!(
        poll_until(LIMIT, || started.iter().all(|&p| !common::host::alive(p))),
        "still running after the host: {started:?}"
    );
}
