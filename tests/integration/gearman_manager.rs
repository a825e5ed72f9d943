//! GearmanManager's PHP workers, unchanged, under geardriver (issue 18, item 3):
//! `workers/php/gearman-manager-runner.php` serves procedural and class worker files as a
//! `program`, through gearmand and the built-in server, to clients nobody here wrote (the
//! `gearman` CLI and PHP's pecl GearmanClient, driven by `tests/interop/client.php`).

use crate::common;
use crate::interop::{Library, Mode, gearman, task};

use common::console::Console;
use common::host::{Host, alive, config_dir};
use common::{JobServer, ServerKind, free_port, gearmand_required, poll_until};
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(20);

/// The message of `Sum`'s exception for the workload `nope`.
const NOT_A_LIST: &str = "InvalidArgumentException: not a list of numbers: nope";

const RUNNER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/workers/php/gearman-manager-runner.php"
);

/// Worker files as GearmanManager's README and examples write them: a function or a class
/// named after the file.
const FILES: &[(&str, &str)] = &[
    // GearmanManager's lib/pecl-workers/reverse_string.php, as it is.
    (
        "reverse_string.php",
        r#"<?php

function reverse_string($job, &$log) {

    $workload = $job->workload();

    $result = strrev($workload);

    $log[] = "Success";

    return $result;

}

?>"#,
    ),
    // After its lib/pecl-worker-classes/Sum.php; it counts its objects and runs, and refuses
    // what is not a list.
    (
        "Sum.php",
        r#"<?php

class Sum {

    private static $objects = 0;

    private $runs = 0;

    public function __construct() {
        self::$objects++;
    }

    public function run($job, &$log) {
        $this->runs++;
        $numbers = json_decode($job->workload(), true);
        if (!is_array($numbers)) {
            throw new InvalidArgumentException("not a list of numbers: " . $job->workload());
        }
        $sum = array_sum($numbers);
        $log[] = "Answer: " . $sum;
        $log[] = "objects " . self::$objects . ", runs " . $this->runs;
        return $sum;
    }

}
"#,
    ),
    // GearmanManager's lib/pecl-worker-classes/Avg.php, without its one-second naps.
    (
        "Avg.php",
        r#"<?php

class Avg {

    private $cache = array();

    public function run($job, &$log) {

        $workload = $job->workload();

        if(empty($this->cache[$workload])){

            $dat = json_decode($workload, true);

            $sum = 0;

            foreach($dat as $d){
                $sum+=$d;
            }

            $avg = $sum / count($dat);

            $this->cache[$workload] = $avg + 0;

        } else {

            $avg = $this->cache[$workload] + 0;

        }

        $log[] = "Answer: ".$avg;

        return $avg;

    }

}

?>"#,
    ),
    (
        "kaboom.php",
        r#"<?php
function kaboom($job, &$log) {
    $log[] = "about to throw";
    throw new RuntimeException("kaboom: " . $job->workload());
}
"#,
    ),
    // Busy for the workload's milliseconds. (Not one sleep(): a signal cuts it short, under
    // GearmanManager as here, since both handle SIGTERM, and the tests send one.)
    (
        "nap.php",
        r#"<?php
function nap($job, &$log) {
    $ms = (int)$job->workload();
    $until = microtime(true) + $ms / 1000;
    while (microtime(true) < $until) {
        usleep(10000);
    }
    $log[] = "napped $ms";
    return "napped $ms";
}
"#,
    ),
    (
        "bad_syntax.php",
        "<?php\nfunction bad_syntax($job, &$log) { return 1 +; }\n",
    ),
    (
        "wrong_name.php",
        "<?php\nfunction other_name($job, &$log) { return 1; }\n",
    ),
];

/// Whether php-cli with pecl gearman and pcntl is here; `false` (after a notice) when it is
/// not, and a failure in CI.
pub(crate) fn php_gearman_available() -> bool {
    let ok = Command::new("php")
        .args([
            "-r",
            "exit(class_exists('GearmanWorker') && function_exists('pcntl_async_signals') ? 0 : 1);",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        if gearmand_required() {
            panic!(
                "php-cli with pecl gearman is required in CI (apt-get install php-cli php-gearman)"
            );
        }
        common::notice(
            "php-cli with pecl gearman not found; skipping this test (apt-get install php-cli php-gearman)",
        );
    }
    ok
}

/// A directory holding [`FILES`].
fn worker_files() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, text) in FILES {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

/// A `[[jobs]]` entry running the runner on `file` in `dir`.
fn job(name: &str, dir: &Path, file: &str, extra: &str) -> String {
    format!(
        "[[jobs]]\nname = \"{name}\"\nprogram = [\"php\", \"{RUNNER}\", \"{}\"]\n{extra}\n",
        dir.join(file).display()
    )
}

/// A host on `server` with its console on a free port, serving `jobs`; every one of
/// `functions` registered with the job server (by one process).
async fn host(server: &JobServer, jobs: &str, functions: &[&str]) -> (Host, u16) {
    let console = free_port();
    let (dir, config) = config_dir(
        &[server.addr().to_string()],
        "interval = 0",
        &format!("[console]\nlisten = \"127.0.0.1:{console}\"\n{jobs}"),
    );
    let host = Host::start_with(dir, config);
    for function in functions {
        assert!(
            common::wait_for_status(&server.addr(), function, |s| s.available_workers == 1).await,
            "{function} did not register\n{}",
            host.log()
        );
    }
    host.wait_listening(console, LIMIT);
    (host, console)
}

/// Waits (bounded) for a line of the host's log that holds every one of `parts`.
fn wait_log_line(host: &Host, parts: &[&str]) {
    let found = poll_until(LIMIT, || {
        host.log()
            .lines()
            .any(|line| parts.iter().all(|p| line.contains(p)))
    });
    assert!(found, "no log line with {parts:?}\n{}", host.log());
}

both_servers! {
    async fn procedural_and_class_files_serve_foreign_clients_and_log_what_they_append(server) {
        if !php_gearman_available() {
            return;
        }
        let files = worker_files();
        let (host, _) = host(
            &server,
            &(job("reverse_string", files.path(), "reverse_string.php", "")
                + &job("Sum", files.path(), "Sum.php", "")),
            &["reverse_string", "Sum"],
        )
        .await;
        let processes = (host.workers("reverse_string"), host.workers("Sum"));
        let port = server.port;
        if let Some((code, stdout, stderr, _)) = gearman(port, "reverse_string", &[], "stressed") {
            assert_eq!((code, stdout.as_str()), (Some(0), "desserts"), "{stderr}");
        }
        if let Some((code, stdout, stderr, _)) = gearman(port, "Sum", &[], "[1,2,3]") {
            assert_eq!((code, stdout.as_str()), (Some(0), "6"), "{stderr}");
        }
        // (PHP's GearmanClient comes with the GearmanWorker the runner needs.)
        let tasks = [task("reverse_string", "drawer"), task("Sum", "[4, 5.5]")];
        for mode in [Mode::Do, Mode::Set] {
            Library::Php
                .run(port, mode, false, &tasks)
                .finished()
                .completed(0, "reward")
                .completed(1, "9.5");
        }
        // What the functions appended to $log, one host log line each, named by function.
        wait_log_line(&host, &["[reverse_string] STDERR: reverse_string (H:", "): Success"]);
        wait_log_line(&host, &["[Sum] STDERR: Sum (H:", "): Answer: 6"]);
        // One object per process, made at the first job and kept: its third run.
        if common::gearman_cli().is_some() {
            wait_log_line(&host, &["[Sum] STDERR: Sum (H:", "): objects 1, runs 3"]);
        }
        assert_eq!((host.workers("reverse_string"), host.workers("Sum")), processes);
    }
}

// A GearmanManager worker_dir, unchanged, as a worker directory: its files in one process
// group (GearmanManager's `count` workers, which do every job), one runner serving them all,
// and one taken out into a process of its own (a `dedicated_only` function).
both_servers! {
    async fn a_worker_directory_of_php_files_runs_unchanged_in_one_runner(server) {
        if !php_gearman_available() {
            return;
        }
        let files = tempfile::tempdir().unwrap();
        for (name, text) in FILES {
            if ["reverse_string.php", "Sum.php", "Avg.php", "kaboom.php"].contains(name) {
                std::fs::write(files.path().join(name), text).unwrap();
            }
        }
        let jobs = format!(
            "[[worker_dirs]]\npath = \"{}\"\nfiles = \"*.php\"\nprefix = \"site_\"\n\
             group = \"all\"\nprogram = [\"php\", \"{RUNNER}\", \"{{file}}\"]\n\
             [[jobs]]\nname = \"site_kaboom\"\ngroup = \"\"\n",
            files.path().display()
        );
        // The prefix names the Gearman functions; the PHP functions keep their files' names.
        let (host, _) = host(
            &server,
            &jobs,
            &["site_reverse_string", "site_Sum", "site_Avg", "site_kaboom"],
        )
        .await;
        let all = host.wait_workers("all", 1, LIMIT)[0];
        let dedicated = host.wait_workers("site_kaboom", 1, LIMIT)[0];
        let port = server.port;
        if let Some((code, stdout, stderr, _)) = gearman(port, "site_reverse_string", &[], "live") {
            assert_eq!((code, stdout.as_str()), (Some(0), "evil"), "{stderr}");
        }
        let tasks = [
            task("site_Sum", "[1,2]"),
            task("site_Avg", "[1,2]"),
            task("site_reverse_string", "drawer"),
            task("site_kaboom", "x"),
        ];
        for mode in [Mode::Do, Mode::Set] {
            let run = Library::Php.run(port, mode, false, &tasks);
            let warning = Library::Php
                .reports_warnings(mode)
                .then_some("RuntimeException: kaboom: x");
            run.finished()
                .completed(0, "3")
                .completed(1, "1.5")
                .completed(2, "reward")
                .failed(3, warning, Duration::from_secs(3));
        }
        // Each function's $log under its Gearman name, from the group's one process.
        wait_log_line(&host, &[&format!("({all}) [all] STDERR: site_Sum (H:"), "): Answer: 3"]);
        wait_log_line(&host, &[&format!("({all}) [all] STDERR: site_Avg (H:"), "): Answer: 1.5"]);
        let kaboom = format!("({dedicated}) [site_kaboom] STDERR: site_kaboom (H:");
        wait_log_line(&host, &[&kaboom, "): about to throw"]);
        assert_eq!(host.workers("all"), [all]);
        assert_eq!(host.workers("site_kaboom"), [dedicated]);
    }
}

// GearmanManager lets an exception kill the worker process, and pecl sends WORK_EXCEPTION,
// on which gearmand leaves the clients that did not ask for exceptions waiting forever (seen
// with GearmanManager 2.x, pecl gearman 2.1.0, gearmand 1.1.20). The runner fails the job as
// geardriver does every failure (WORK_WARNING with the message, then WORK_FAIL).
both_servers! {
    async fn an_exception_fails_its_job_for_every_client_and_the_process_keeps_serving(server) {
        if !php_gearman_available() {
            return;
        }
        let files = worker_files();
        let (host, console) = host(
            &server,
            &(job("kaboom", files.path(), "kaboom.php", "")
                + &job("Sum", files.path(), "Sum.php", "")),
            &["kaboom", "Sum"],
        )
        .await;
        let processes = (host.workers("kaboom"), host.workers("Sum"));
        let port = server.port;
        if let Some((code, _, stderr, took)) = gearman(port, "kaboom", &[], "cli") {
            assert!(code.is_some(), "the gearman CLI hung: {stderr}");
            assert_ne!(code, Some(0), "{stderr}");
            assert!(stderr.contains("RuntimeException: kaboom: cli"), "{stderr}");
            assert!(took < Duration::from_secs(5), "{took:?}");
        }
        let tasks = [task("kaboom", "php"), task("Sum", "nope"), task("Sum", "[1]")];
        for mode in [Mode::Do, Mode::Set] {
            for exceptions in [false, true] {
                let run = Library::Php.run(port, mode, exceptions, &tasks);
                run.finished();
                let warnings = Library::Php.reports_warnings(mode);
                let within = Duration::from_secs(3);
                run.failed(0, warnings.then_some("RuntimeException: kaboom: php"), within)
                    .failed(1, warnings.then_some(NOT_A_LIST), within)
                    .completed(2, "1");
            }
        }
        // The same processes served it all.
        assert_eq!((host.workers("kaboom"), host.workers("Sum")), processes);
        // $log is still logged, then the failure with where it was thrown.
        wait_log_line(&host, &["[kaboom] STDERR: kaboom (H:", "): about to throw"]);
        wait_log_line(&host, &[
            "[kaboom] STDERR: kaboom (H:",
            "): failed: RuntimeException: kaboom: ",
            "kaboom.php:4",
        ]);
        // The status line made it the job's last error.
        let mut console = Console::connect(console);
        let shown = console.cmd("show kaboom");
        assert!(shown.contains("ERROR: RuntimeException: kaboom: "), "{shown}");
    }
}

both_servers! {
    async fn max_jobs_recycles_the_php_process(server) {
        if !php_gearman_available() {
            return;
        }
        let files = worker_files();
        let (host, console) = host(
            &server,
            &job("reverse_string", files.path(), "reverse_string.php", "max_jobs = 2"),
            &["reverse_string"],
        )
        .await;
        let mut console = Console::connect(console);
        let first = host.workers("reverse_string")[0];
        let shown = console.lines("show reverse_string");
        assert_eq!(shown.get(1), Some(&first.to_string()), "{shown:?}");
        let client = geardriver::gearman::Client::new(
            vec![server.addr()],
            geardriver::gearman::ClientOptions::default(),
        )
        .unwrap();
        for word in ["ab", "cd"] {
            let reversed: String = word.chars().rev().collect();
            let outcome = common::outcome(&client, "reverse_string", word).await;
            assert_eq!(outcome, common::complete(&reversed));
        }
        // After its second job the process exits 0 and a new one takes its place.
        host.wait_log(&format!("({first}) [reverse_string] Exited with status 0"), LIMIT);
        let second = host.wait_workers("reverse_string", 1, LIMIT)[0];
        assert_ne!(second, first);
        assert!(!alive(first));
        assert!(poll_until(LIMIT, || {
            console.lines("show reverse_string").get(1) == Some(&second.to_string())
        }));
        assert_eq!(common::outcome(&client, "reverse_string", "ef").await, common::complete("fe"));
        let shown = console.cmd("show reverse_string");
        assert!(!shown.contains("FAILED"), "a recycle is no crash: {shown}");
    }
}

both_servers! {
    async fn sigterm_lets_a_busy_runner_finish_its_job_and_an_idle_one_exit_at_once(server) {
        if !php_gearman_available() {
            return;
        }
        let Some(_) = common::gearman_cli() else {
            return;
        };
        let files = worker_files();
        let nap = job("nap", files.path(), "nap.php", "");
        let (host, console) = host(&server, &nap, &["nap"]).await;
        let mut console = Console::connect(console);
        let busy = host.workers("nap")[0];
        let port = server.port;
        let client = std::thread::spawn(move || gearman(port, "nap", &[], "2000"));
        // Busy by its own word (the `busy nap` status line), then stopped.
        let state_of = |console: &mut Console, pid: u32| {
            console.lines("scoreboard").iter().find_map(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                (f[0] == pid.to_string()).then(|| f[2].to_string())
            })
        };
        assert!(
            poll_until(LIMIT, || state_of(&mut console, busy).as_deref() == Some("B")),
            "{:?}",
            console.lines("scoreboard")
        );
        assert_eq!(console.lines(&format!("kill {busy}")), ["OK"]);
        let (code, stdout, stderr, took) = common::blocking(|| client.join().unwrap()).unwrap();
        assert_eq!((code, stdout.as_str()), (Some(0), "napped 2000"), "{stderr}");
        assert!(took >= Duration::from_millis(2000), "{took:?}");
        // That process ran it to the end (not one that took it over), then exited 0.
        wait_log_line(&host, &[&format!("({busy}) [nap] STDERR: nap (H:"), "): napped 2000"]);
        host.wait_log(&format!("({busy}) [nap] Exited with status 0"), LIMIT);
        // The replacement, idle, goes within a second of its SIGTERM.
        let idle = host.wait_workers("nap", 1, LIMIT)[0];
        assert_ne!(idle, busy);
        assert!(common::wait_for_status(&server.addr(), "nap", |s| s.available_workers == 1).await);
        assert!(poll_until(LIMIT, || state_of(&mut console, idle).as_deref() == Some("_")));
        let asked = Instant::now();
        assert_eq!(console.lines(&format!("kill {idle}")), ["OK"]);
        assert!(poll_until(LIMIT, || !alive(idle)));
        assert!(asked.elapsed() < Duration::from_secs(2), "{:?}", asked.elapsed());
        host.wait_log(&format!("({idle}) [nap] Exited with status 0"), LIMIT);
    }
}

// The runner's side of the program contract, without a host: one process serving several
// files (two classes, an object each), FILE number i as the i-th of GEARDRIVER_FUNCTIONS,
// its status lines, and GEARDRIVER_MAX_JOBS.
both_servers! {
    async fn one_runner_serves_several_files_in_the_order_of_geardriver_functions(server) {
        if !php_gearman_available() {
            return;
        }
        let files = worker_files();
        let stderr = files.path().join("runner.stderr");
        let mut runner = common::ChildGuard(
            Command::new("php")
                .arg(RUNNER)
                .arg(files.path().join("reverse_string.php"))
                .arg(files.path().join("Sum.php"))
                .arg(files.path().join("Avg.php"))
                .env("GEARDRIVER_JOB_SERVERS", server.addr().to_string())
                .env("GEARDRIVER_FUNCTIONS", "gm_reverse,gm_sum,gm_avg")
                .env("GEARDRIVER_JOB", "the_pool")
                .env("GEARDRIVER_MAX_JOBS", "5")
                // Its status lines on its stdout, to read them here.
                .env("GEARDRIVER_STATUS_FD", "1")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(std::fs::File::create(&stderr).unwrap())
                .spawn()
                .expect("run php"),
        );
        for function in ["gm_reverse", "gm_sum", "gm_avg"] {
            let addr = server.addr();
            assert!(common::wait_for_status(&addr, function, |s| s.available_workers == 1).await);
        }
        let client = geardriver::gearman::Client::new(
            vec![server.addr()],
            geardriver::gearman::ClientOptions::default(),
        )
        .unwrap();
        assert_eq!(common::outcome(&client, "gm_reverse", "abc").await, common::complete("cba"));
        assert_eq!(common::outcome(&client, "gm_sum", "[2,3]").await, common::complete("5"));
        assert_eq!(common::outcome(&client, "gm_avg", "[2,3]").await, common::complete("2.5"));
        assert_eq!(common::outcome(&client, "gm_avg", "[2,3]").await, common::complete("2.5"));
        assert_eq!(
            common::outcome(&client, "gm_sum", "nope").await,
            geardriver::gearman::JobOutcome::failed_with(NOT_A_LIST)
        );
        // Five jobs: it exits 0 by itself.
        let mut status = None;
        assert!(poll_until(LIMIT, || {
            status = runner.0.try_wait().unwrap();
            status.is_some()
        }));
        assert_eq!(status.unwrap().code(), Some(0));
        let mut lines = String::new();
        runner.0.stdout.take().unwrap().read_to_string(&mut lines).unwrap();
        assert_eq!(
            lines.lines().collect::<Vec<_>>(),
            [
                "idle",
                "busy gm_reverse",
                "done",
                "busy gm_sum",
                "done",
                "busy gm_avg",
                "done",
                "busy gm_avg",
                "done",
                "busy gm_sum",
                "failed InvalidArgumentException: not a list of numbers: nope",
            ]
        );
        let log = std::fs::read_to_string(&stderr).unwrap();
        let serving = "gearman-manager-runner: serving gm_reverse, gm_sum, gm_avg";
        assert!(log.contains(serving), "{log}");
        for (function, answer) in [("gm_sum", "5"), ("gm_avg", "2.5")] {
            let (start, end) = (format!("{function} (H:"), format!("): Answer: {answer}"));
            assert!(log.lines().any(|l| l.starts_with(&start) && l.ends_with(&end)), "{log}");
        }
    }
}

/// A worker file the runner cannot serve ends it with a message naming the file, which the
/// host logs (and backs off from).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_file_that_cannot_serve_is_named_in_the_host_log() {
    if !php_gearman_available() {
        return;
    }
    let server = JobServer::start(ServerKind::Builtin).expect("built-in server");
    let files = worker_files();
    let dir = files.path();
    let jobs = job("bad_syntax", dir, "bad_syntax.php", "")
        + &job("wrong_name", dir, "wrong_name.php", "")
        + &job("missing", dir, "missing.php", "");
    let host = Host::start(&[server.addr().to_string()], "interval = 0", &jobs);
    let path = |file: &str| dir.join(file).display().to_string();
    for (job, message) in [
        (
            "bad_syntax",
            format!("{}: ParseError: syntax error", path("bad_syntax.php")),
        ),
        (
            "wrong_name",
            format!(
                "{} defines neither a function wrong_name($job, &$log) nor a class wrong_name",
                path("wrong_name.php")
            ),
        ),
        (
            "missing",
            format!("{}: no such readable file", path("missing.php")),
        ),
    ] {
        host.wait_log(
            &format!("[{job}] STDERR: gearman-manager-runner: {message}"),
            LIMIT,
        );
        host.wait_log(&format!("[{job}] Exited with status 1"), LIMIT);
    }
}

both_servers! {
    async fn a_jobs_timeout_fails_it_and_the_runner_keeps_serving(server) {
        if !php_gearman_available() {
            return;
        }
        let files = worker_files();
        let (host, _console) = host(
            &server,
            &job("nap", files.path(), "nap.php", "timeout = 1"),
            &["nap"],
        )
        .await;
        let worker = host.workers("nap")[0];
        let client = geardriver::gearman::Client::new(
            vec![server.addr()],
            geardriver::gearman::ClientOptions::default(),
        )
        .unwrap();
        // GEARDRIVER_TIMEOUTS reaches the runner, whose alarm fails the job in the worker
        // code: the client hears at about 1 s, not after the 5 s nap.
        let started = std::time::Instant::now();
        let outcome = common::outcome(&client, "nap", "5000").await;
        assert_eq!(
            outcome.failure_message().map(|m| String::from_utf8_lossy(m).to_string()),
            Some("RuntimeException: timeout: the job ran longer than 1s".to_string()),
            "{outcome:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
        // A job within its timeout runs; the same process serves it.
        assert_eq!(common::outcome(&client, "nap", "10").await, common::complete("napped 10"));
        assert_eq!(host.workers("nap"), [worker]);
        wait_log_line(&host, &["[nap]", "timeout: the job ran longer than 1s"]);
    }
}

/// Writes PHP worker files into a new temp dir.
fn php_files(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

// Found by a new user's trial: one file that could not load ended the runner of a whole
// group (every function of GearmanManager's `count` workers went down), and a worker file
// named like one of the runner's own functions (report.php) could not load at all.
both_servers! {
    async fn one_bad_file_in_a_group_leaves_the_others_serving(server) {
        if !php_gearman_available() {
            return;
        }
        let files = php_files(&[
            ("report.php", "<?php\nfunction report($job, &$log) { return 'report ' . $job->workload(); }\n"),
            ("env.php", "<?php\nclass env { function run($job, &$log) { return 'env ' . $job->workload(); } }\n"),
            ("broken.php", "<?php\nfunction broken($job, &$log) { return 1 +; }\n"),
            ("twice.php", "<?php\nfunction strlen($x) { return 0; }\nfunction twice($job, &$log) { return 'no'; }\n"),
            ("empty.php", "<?php\n// nothing here\n"),
            // Output while loading is no failure (found by a second trial): a blank line
            // after the closing tag, a byte-order mark.
            ("legacy.php", "<?php\nfunction legacy($job, &$log) { return 'legacy'; }\n?>\n\n"),
            ("bom.php", "\u{feff}<?php\nfunction bom($job, &$log) { return 'bom'; }\n"),
        ]);
        let jobs = format!(
            "[[worker_dirs]]\npath = \"{}\"\nfiles = \"*.php\"\ngroup = \"all\"\n\
             program = [\"php\", \"{RUNNER}\", \"{{file}}\"]\n",
            files.path().display()
        );
        let (host, console) = host(&server, &jobs, &["report", "env", "legacy", "bom"]).await;
        let process = host.wait_workers("all", 1, LIMIT)[0];
        for (function, payload, want) in [
            ("report", "x", "report x"),
            ("env", "y", "env y"),
            ("legacy", "z", "legacy"),
            ("bom", "z", "bom"),
        ] {
            if let Some((code, stdout, stderr, _)) = gearman(server.port, function, &[], payload) {
                assert_eq!((code, stdout.as_str()), (Some(0), want), "{stderr}\n{}", host.log());
            }
        }
        for (file, why) in [
            ("broken.php", "it throws when loaded"),
            ("twice.php", "PHP cannot load it (a fatal error, above)"),
            ("empty.php", "it defines neither a function empty($job, &$log) nor a class empty"),
        ] {
            let path = files.path().join(file).display().to_string();
            wait_log_line(&host, &[&format!("gearman-manager-runner: {path}: not served"), why]);
        }
        wait_log_line(&host, &["gearman-manager-runner: serving bom, env, legacy, report"]);
        // A file left out is its function's last error in `status` (the slot keeps one: of
        // several at once, the last), not only a log line.
        let mut console = Console::connect(console);
        let shown = poll_until(LIMIT, || {
            console.lines("status").iter().any(|l| {
                l.starts_with("twice ") && l.contains("ERROR: not served: twice.php: PHP cannot load it")
            })
        });
        assert!(shown, "{:?}", console.lines("status"));
        assert_eq!(host.workers("all"), [process], "{}", host.log());
    }
}

// Found by the trial: a PHP fatal error or exit() in the middle of a job ended the process
// with nothing said of why. pecl sends WORK_EXCEPTION first ("Unable to add worker
// function"), which gearmand gives only to clients that asked for exceptions (as ours
// does); the runner logs the reason and makes it the job's last error.
both_servers! {
    async fn a_fatal_error_or_exit_in_a_job_is_named_in_the_log_and_the_status(server) {
        if !php_gearman_available() {
            return;
        }
        let files = php_files(&[
            ("hog.php", "<?php\nfunction hog($job, &$log) {\n    ini_set('memory_limit', '16M');\n    $a = [];\n    while (true) { $a[] = str_repeat('x', 1 << 20); }\n}\n"),
            ("quits.php", "<?php\nfunction quits($job, &$log) { exit(3); }\n"),
        ]);
        let jobs = job("hog", files.path(), "hog.php", "") + &job("quits", files.path(), "quits.php", "");
        let (host, console) = host(&server, &jobs, &["hog", "quits"]).await;
        let mut console = Console::connect(console);
        for (function, message) in [
            ("hog", "PHP Fatal error: Allowed memory size of 16777216 bytes exhausted"),
            ("quits", "the worker code called exit() during the job"),
        ] {
            let client = geardriver::gearman::Client::new(vec![server.addr()], Default::default()).unwrap();
            let outcome = common::outcome(&client, function, "y").await;
            assert!(outcome.failure_message().is_some(), "{function}: {outcome:?}");
            wait_log_line(&host, &[&format!("[{function}] STDERR: {function} (H:"), "failed: ", message]);
            let shown = poll_until(LIMIT, || {
                console.lines("status").iter().any(|l| l.starts_with(function) && l.contains(&format!("ERROR: {message}")))
            });
            assert!(shown, "{function}: {:?}", console.lines("status"));
        }
    }
}

// Found by the trial: a stop cut a sleep() in the worker code short (the SIGTERM handler
// interrupted it), so "the job in hand finishes" did not hold for jobs that wait.
both_servers! {
    async fn a_stop_lets_a_sleeping_job_sleep_its_full_time(server) {
        if !php_gearman_available() {
            return;
        }
        let files = php_files(&[(
            "sleeper.php",
            "<?php\nfunction sleeper($job, &$log) {\n    \\GearDriver\\Runner\\state('Z');\n    $t = microtime(true);\n    sleep(2);\n    return sprintf('%.1f', microtime(true) - $t);\n}\n",
        )]);
        let (host, console) = host(&server, &job("sleeper", files.path(), "sleeper.php", ""), &["sleeper"]).await;
        let mut console = Console::connect(console);
        let keeper = host.workers("sleeper")[0];
        let client = geardriver::gearman::Client::new(vec![server.addr()], Default::default()).unwrap();
        let running = tokio::spawn(async move { common::outcome(&client, "sleeper", "x").await });
        // The worker code's own scoreboard state shows while it sleeps.
        let shows = poll_until(LIMIT, || {
            console.lines("scoreboard").iter().any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() > 2 && f[0] == keeper.to_string() && f[2] == "Z"
            })
        });
        assert!(shows, "{:?}", console.lines("scoreboard"));
        assert_eq!(console.cmd(&format!("kill {keeper}")), "OK\r\n.\r\n");
        let outcome = running.await.unwrap();
        let geardriver::gearman::JobOutcome::Complete(data) = &outcome else {
            panic!("{outcome:?}");
        };
        let slept: f64 = String::from_utf8_lossy(data).parse().unwrap();
        assert!(slept >= 1.9, "the sleep was cut short: {slept} s");
        host.wait_log(&format!("({keeper}) [sleeper] Exited with status 0"), LIMIT);
    }
}
