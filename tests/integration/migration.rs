//! Issue 18's "done when": a GearmanManager setup, as a team has it (an ini file and a
//! `worker_dir` of procedural and class PHP files, `auto_update = 1`), brought over with
//! `geardriver import gearman-manager` and run unchanged: the `gearman` CLI and PHP's client
//! get the right results through gearmand and the built-in server, and an edited file gives
//! the new result without a restart of the host.

use crate::common;

use crate::interop::{Library, Mode, task};
use common::host::Host;
use common::poll_until;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(20);
const RUNNER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/workers/php/gearman-manager-runner.php"
);

/// GearmanManager's two kinds of worker file, as its examples write them.
const HELLO: &str = r#"<?php
function hello($job, &$log) {
    $log[] = "greeting " . $job->workload();
    return "hello, " . $job->workload();
}
"#;
const SHOUT: &str = r#"<?php
class Shout {
    private $count = 0;
    public function run($job, &$log) {
        $this->count++;
        return strtoupper($job->workload()) . "!";
    }
}
"#;

/// The `gearman` CLI's answer to one job (it must succeed), or `None` (with a notice)
/// without the CLI.
fn gearman(port: u16, function: &str, payload: &str) -> Option<String> {
    let (code, stdout, stderr, _) = crate::interop::gearman(port, function, &[], payload)?;
    assert_eq!(code, Some(0), "{stderr}");
    Some(stdout.trim_end().to_string())
}

both_servers! {
    async fn a_gearman_manager_fleet_comes_over_with_import_and_follows_an_edit(server) {
        if !crate::gearman_manager::php_gearman_available() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let workers = dir.path().join("workers");
        std::fs::create_dir(&workers).unwrap();
        std::fs::write(workers.join("hello.php"), HELLO).unwrap();
        std::fs::write(workers.join("Shout.php"), SHOUT).unwrap();
        let log = dir.path().join("host.log");
        std::fs::write(
            dir.path().join("gm.ini"),
            format!(
                "; GearmanManager's config, as a team keeps it\n\
                 [GearmanManager]\nworker_dir=./workers\ncount=1\nauto_update=1\n\
                 host=127.0.0.1:{}\nlog_file={}\nmax_runs_per_worker=50\n\n\
                 [Shout]\ndedicated_count=1\n",
                server.port,
                log.display()
            ),
        )
        .unwrap();

        // import prints the config; check-config takes it.
        // Run where GearmanManager ran: its relative worker_dir is taken from there.
        let ini = dir.path().join("gm.ini");
        let out = common::import::import_gearman_manager(dir.path(), &ini, &["--runner", RUNNER]);
        assert_eq!(out.code, Some(0), "{}", out.stderr);
        let config = dir.path().join("config.toml");
        std::fs::write(&config, &out.stdout).unwrap();
        let checked = common::import::check_config(&config);
        let table = &checked.stdout;
        assert_eq!(checked.code, Some(0), "{}", checked.stderr);
        assert!(table.contains("Shout") && table.contains("hello"), "{table}");
        assert!(table.contains(&format!("{} (*.php, watched): Shout, hello", workers.display())), "{table}");

        // The host, with its console and HTTP endpoint off beside other tests.
        let host = Host::start_with_env(
            dir,
            config,
            &[("GEARDRIVER__CONSOLE__LISTEN", ""), ("GEARDRIVER__HTTP__LISTEN", "")],
        );
        for function in ["hello", "Shout"] {
            assert!(
                common::wait_for_status(&server.addr(), function, |s| s.available_workers >= 1).await,
                "{function} did not register\n{}\n{}",
                host.log(),
                host.stderr()
            );
        }
        let port = server.port;
        if let Some(said) = gearman(port, "hello", "world") {
            assert_eq!(said, "hello, world");
        }
        host.wait_log("STDERR: hello (H:", LIMIT);
        for mode in [Mode::Do, Mode::Set] {
            Library::Php
                .run(port, mode, false, &[task("Shout", "migrate"), task("hello", "php")])
                .finished()
                .completed(0, "MIGRATE!")
                .completed(1, "hello, php");
        }

        // A deploy edits a file: the new code answers, the host never restarted.
        let host_pid = host.pid();
        let hello_file = host.dir.path().join("workers/hello.php");
        let edited = HELLO.replace("\"hello, \"", "\"hello again, \"");
        std::fs::write(hello_file.with_extension("new"), edited).unwrap();
        std::fs::rename(hello_file.with_extension("new"), &hello_file).unwrap();
        host.wait_log("code changed; replacing its processes", LIMIT);
        let answered = poll_until(LIMIT, || {
            gearman(port, "hello", "world").is_none_or(|said| said == "hello again, world")
        });
        assert!(answered, "{}", host.log());
        Library::Php
            .run(port, Mode::Do, false, &[task("hello", "php")])
            .finished()
            .completed(0, "hello again, php");
        assert_eq!(host.pid(), host_pid);
        assert!(common::host::alive(host_pid));
    }
}
