//! config.toml validation: each kind of mistake gives a message naming the key and the job;
//! `geardriver check-config` prints the job table or `PATH: message` and exits 2.

use crate::common;

use geardriver::config::{Config, LogTarget, WorkerKind};
use geardriver::plugin::Registry;
use std::path::Path;
use std::time::Duration;

fn load(text: &str) -> Result<Config, String> {
    Config::from_toml(text, Path::new("test.toml"), &Registry::with_builtins())
        .map_err(|e| e.to_string())
}

fn error(text: &str) -> String {
    load(text).expect_err("the config should be refused")
}

#[test]
fn defaults_are_applied() {
    let config = load("[[jobs]]\nname = \"r\"\nworker = \"reverse\"\n").unwrap();
    let job = &config.jobs[0];
    assert_eq!(
        (
            job.limits.min_processes,
            job.limits.max_processes,
            job.limits.min_spare
        ),
        (1, 1, 0)
    );
    assert_eq!(job.limits.max_idle_time, Duration::from_secs(30));
    assert_eq!((job.decode.as_str(), job.encode.as_str()), ("raw", "raw"));
    assert_eq!(job.timeout, None);
    assert_eq!(job.worker, WorkerKind::Plugin("reverse".into()));
    assert_eq!(config.driver.job_servers[0].to_string(), "127.0.0.1:4730");
    assert_eq!(config.driver.interval, Some(Duration::from_secs(5)));
    assert_eq!(config.driver.logfile, LogTarget::Stderr);
    assert_eq!(
        config.console.listen.unwrap().to_string(),
        "127.0.0.1:47300"
    );
    assert!(!config.server.enabled);
    // max defaults to max(min, 1); interval 0 turns autoscaling off.
    let config = load(
        "[driver]\ninterval = 0\n[[jobs]]\nname = \"r\"\nworker = \"reverse\"\nmin_processes = 3\n",
    )
    .unwrap();
    assert_eq!(config.jobs[0].limits.max_processes, 3);
    assert_eq!(config.driver.interval, None);
    let config = load("[[jobs]]\nname = \"r\"\nworker = \"reverse\"\nmin_processes = 0\n").unwrap();
    assert_eq!(config.jobs[0].limits.max_processes, 1);
}

#[test]
fn the_repos_config_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml");
    let config = Config::load(&path, &Registry::with_builtins()).expect("config.toml is valid");
    assert!(!config.jobs.is_empty());
    // Background jobs are kept across restarts by default, next to the config (issue 14).
    assert_eq!(
        config.server.queue.as_deref(),
        Some(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("queue.sqlite")
                .as_path()
        )
    );
    // The queue's files are not for git: the file, SQLite's, and the server's log of changes.
    let files = [
        "queue.sqlite",
        "queue.sqlite-wal",
        "queue.sqlite-shm",
        "queue.sqlite-log.0",
        "queue.sqlite-log.12",
    ];
    let checked = std::process::Command::new("git")
        .arg("check-ignore")
        .args(files)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output();
    match checked {
        Ok(out) if out.status.code() != Some(128) => {
            let ignored = String::from_utf8_lossy(&out.stdout);
            for file in files {
                assert!(
                    ignored.lines().any(|l| l == file),
                    "{file} is not in .gitignore: {ignored}"
                );
            }
        }
        _ => eprintln!("NOTICE: not a git checkout (or no git); .gitignore not checked"),
    }
}

#[test]
fn each_kind_of_mistake_names_the_key_and_the_job() {
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "unknown key in a job",
            "[[jobs]]\nname = \"resize\"\nworker = \"echo\"\nmin_proceses = 2\n",
            &["min_proceses", "jobs[0]", "\"resize\""],
        ),
        (
            "unknown key in a section",
            "[driver]\nintreval = 5\n",
            &["intreval", "driver"],
        ),
        ("unknown section", "[drivers]\ninterval = 5\n", &["drivers"]),
        (
            "min above max",
            "[[jobs]]\nname = \"resize\"\nworker = \"echo\"\nmin_processes = 3\nmax_processes = 2\n",
            &[
                "jobs[0] \"resize\"",
                "max_processes (2) must be >= min_processes (3)",
            ],
        ),
        (
            "duplicate names",
            "[[jobs]]\nname = \"a\"\nworker = \"echo\"\n[[jobs]]\nname = \"a\"\nworker = \"reverse\"\n",
            &["jobs[1]", "duplicate job name \"a\""],
        ),
        (
            "no worker",
            "[[jobs]]\nname = \"lazy\"\n",
            &[
                "jobs[0] \"lazy\"",
                "needs one of worker, command or program",
            ],
        ),
        (
            "two workers",
            "[[jobs]]\nname = \"both\"\nworker = \"echo\"\ncommand = [\"cat\"]\n",
            &["jobs[0] \"both\"", "only one of worker, command or program"],
        ),
        (
            "unknown plugin",
            "[[jobs]]\nname = \"x\"\nworker = \"nosuch\"\n",
            &[
                "jobs[0] \"x\"",
                "worker = \"nosuch\"",
                "not a registered plugin",
                "reverse",
            ],
        ),
        (
            "unknown codec",
            "[[jobs]]\nname = \"x\"\nworker = \"echo\"\ndecode = \"yaml\"\n",
            &[
                "jobs[0] \"x\"",
                "decode = \"yaml\"",
                "not a known codec",
                "json",
            ],
        ),
        (
            "missing name",
            "[[jobs]]\nworker = \"echo\"\n",
            &["jobs[0]", "name is required"],
        ),
        (
            "empty command",
            "[[jobs]]\nname = \"c\"\ncommand = []\n",
            &["jobs[0] \"c\"", "command is empty"],
        ),
        (
            "negative count",
            "[[jobs]]\nname = \"n\"\nworker = \"echo\"\nmin_processes = -1\n",
            &["min_processes", "jobs[0]", "\"n\""],
        ),
        (
            "wrong type",
            "[driver]\ninterval = \"five\"\n",
            &["driver.interval", "five"],
        ),
        (
            "negative duration",
            "[[jobs]]\nname = \"t\"\nworker = \"echo\"\ntimeout = -2\n",
            &["jobs[0] \"t\": timeout", ">= 0"],
        ),
        (
            "bad job server",
            "[driver]\njob_servers = [\"host:99999\"]\n",
            &["driver.job_servers", "host:99999"],
        ),
        (
            "empty job servers",
            "[driver]\njob_servers = []\n",
            &["driver.job_servers is empty"],
        ),
        (
            "console off loopback without a secret",
            "[console]\nlisten = \"0.0.0.0:47300\"\n",
            &["console.listen", "console.secret is required"],
        ),
        (
            "bad console address",
            "[console]\nlisten = \"nowhere\"\n",
            &["console.listen", "IP:PORT"],
        ),
        (
            "bad log level",
            "[driver]\nloglevel = \"loud!\"\n",
            &["driver.loglevel", "loud!"],
        ),
        (
            "min_spare above max",
            "[[jobs]]\nname = \"s\"\nworker = \"echo\"\nmax_processes = 2\nmin_spare = 3\n",
            &[
                "jobs[0] \"s\"",
                "min_spare (3) cannot exceed max_processes (2)",
            ],
        ),
        (
            "more processes than a host runs",
            "[[jobs]]\nname = \"a\"\nworker = \"echo\"\nmax_processes = 3000\n[[jobs]]\nname = \"b\"\nworker = \"echo\"\nmax_processes = 1097\n",
            &[
                "max_processes add up to 4097",
                "more than the 4096 processes one host can run",
            ],
        ),
        (
            "group members disagree",
            "[[jobs]]\nname = \"a\"\nworker = \"echo\"\ngroup = \"g\"\nmax_processes = 3\n[[jobs]]\nname = \"b\"\nworker = \"reverse\"\ngroup = \"g\"\nmax_processes = 4\n",
            &[
                "jobs[1] \"b\"",
                "max_processes = 4 differs from 3",
                "group \"g\"",
            ],
        ),
        (
            "max_spare below min_spare",
            "[[jobs]]\nname = \"s\"\nworker = \"echo\"\nmax_processes = 4\nmin_spare = 2\nmax_spare = 1\n",
            &[
                "jobs[0] \"s\"",
                "max_spare (1) must be between min_spare (2) and max_processes (4)",
            ],
        ),
        (
            "max_spare above max_processes",
            "[[jobs]]\nname = \"s\"\nworker = \"echo\"\nmax_processes = 4\nmax_spare = 5\n",
            &["max_spare (5) must be between min_spare (0) and max_processes (4)"],
        ),
        (
            "group members disagree on concurrency",
            "[[jobs]]\nname = \"a\"\nworker = \"sleep\"\ngroup = \"g\"\nconcurrency = 10\n[[jobs]]\nname = \"b\"\nworker = \"sleep\"\ngroup = \"g\"\nconcurrency = 5\n",
            &[
                "jobs[1] \"b\"",
                "concurrency = 5 differs from 10",
                "group \"g\"",
            ],
        ),
        (
            "group members disagree on max_memory",
            "[[jobs]]\nname = \"a\"\nworker = \"echo\"\ngroup = \"g\"\nmax_memory = \"1G\"\n[[jobs]]\nname = \"b\"\nworker = \"echo\"\ngroup = \"g\"\nmax_memory = \"5M\"\n",
            &["jobs[1] \"b\"", "max_memory = 5M differs from 1G"],
        ),
        (
            "a program in a group",
            "[[jobs]]\nname = \"a\"\nworker = \"echo\"\ngroup = \"g\"\n[[jobs]]\nname = \"p\"\nprogram = [\"x\"]\ngroup = \"g\"\n",
            &["jobs[1] \"p\"", "program cannot share group \"g\""],
        ),
        (
            "codec on a program",
            "[[jobs]]\nname = \"p\"\nprogram = [\"x\"]\ndecode = \"json\"\n",
            &["jobs[0] \"p\"", "decode does not apply to a program"],
        ),
        (
            "no concurrency",
            "[[jobs]]\nname = \"c\"\nworker = \"sleep\"\nconcurrency = 0\n",
            &[
                "jobs[0] \"c\"",
                "concurrency = 0",
                "up to 1000 jobs per process",
            ],
        ),
        (
            "too much concurrency",
            "[[jobs]]\nname = \"c\"\nworker = \"sleep\"\nconcurrency = 5000\n",
            &["jobs[0] \"c\"", "concurrency = 5000"],
        ),
        (
            "concurrency times max_processes past the host's slots",
            "[[jobs]]\nname = \"c\"\nworker = \"sleep\"\nconcurrency = 1000\nmax_processes = 5\n",
            &["add up to 5000", "a process with concurrency N counts N"],
        ),
        (
            "concurrency or prefetch on a program",
            "[[jobs]]\nname = \"p\"\nprogram = [\"x\"]\nconcurrency = 4\n",
            &["jobs[0] \"p\"", "concurrency does not apply to a program"],
        ),
        (
            "prefetch not a boolean",
            "[[jobs]]\nname = \"e\"\nworker = \"echo\"\nprefetch = \"maybe\"\n",
            &["maybe", "boolean", "prefetch", "job \"e\""],
        ),
        (
            "a group named like another job",
            "[[jobs]]\nname = \"a\"\nworker = \"echo\"\n[[jobs]]\nname = \"b\"\nworker = \"echo\"\ngroup = \"a\"\n",
            &["group \"a\" has the name of job \"a\""],
        ),
        (
            "a power-loss-proof queue with no queue",
            "[server]\nqueue = \"\"\nqueue_sync = \"full\"\n",
            &["server.queue_sync = \"full\"", "server.queue names no file"],
        ),
        (
            "syntax error keeps the line",
            "[driver\ninterval = 5\n",
            &["line 1", "test.toml"],
        ),
    ];
    for (what, text, needles) in cases {
        let message = error(text);
        assert!(message.starts_with("test.toml: "), "{what}: {message}");
        for needle in *needles {
            assert!(
                message.contains(needle),
                "{what}: {message:?} should mention {needle:?}"
            );
        }
    }
}

// Issue 12, finding 1: `max_lifetime = 1.8e19` overflowed the splay and killed the supervisor
// (a headless host); `timeout = 1e16` wrapped negative and every job was killed at once.
#[test]
fn durations_beyond_what_the_code_can_represent_are_refused() {
    for (key, place) in [
        ("max_lifetime = 1.8e19", "jobs[0] \"x\": max_lifetime"),
        ("timeout = 1e16", "jobs[0] \"x\": timeout"),
        ("max_idle_time = 2592001", "jobs[0] \"x\": max_idle_time"),
    ] {
        let message = error(&format!(
            "[[jobs]]\nname = \"x\"\nworker = \"echo\"\n{key}\n"
        ));
        assert!(message.contains(place), "{key}: {message}");
        assert!(message.contains("30 days"), "{key}: {message}");
    }
    let message = error("[driver]\nshutdown_timeout = 1e300\n");
    assert!(message.contains("driver.shutdown_timeout"), "{message}");
    let message = error("[driver]\nrestart_delay = 1e300\n");
    assert!(message.contains("driver.restart_delay"), "{message}");
    let message = error("[driver]\ninterval = 0.0001\n");
    assert!(
        message.contains("driver.interval = 0.0001 is below 0.1 s"),
        "{message}"
    );
    let message = error("[driver]\nrestart_delay = 0\n");
    assert!(
        message.contains("driver.restart_delay must be more than 0 s"),
        "{message}"
    );
    // The longest accepted.
    let config =
        load("[[jobs]]\nname = \"x\"\nworker = \"echo\"\nmax_lifetime = 2592000\n").unwrap();
    assert_eq!(
        config.jobs[0].limits.max_lifetime,
        Some(Duration::from_secs(2_592_000))
    );
}

#[test]
fn log_format_is_text_or_json() {
    let message = error("[driver]\nlog_format = \"xml\"\n");
    assert!(
        message.contains("driver.log_format = \"xml\" is not \"text\" or \"json\""),
        "{message}"
    );
    assert_eq!(
        load("[driver]\nlog_format = \"json\"\n")
            .unwrap()
            .driver
            .log_format,
        geardriver::config::LogFormat::Json
    );
}

// Issue 12, finding 10: a job server address that cannot be connected to was accepted.
#[test]
fn a_job_server_address_with_a_space_is_refused() {
    let message = error("[driver]\njob_servers = [\"x y\"]\n");
    assert!(message.contains("driver.job_servers"), "{message}");
    assert!(message.contains("\"x y\""), "{message}");
}

#[test]
fn groups_share_process_settings() {
    let config = load(
        "[[jobs]]\nname = \"a\"\nworker = \"echo\"\ngroup = \"g\"\nmin_processes = 2\n\
         [[jobs]]\nname = \"b\"\nworker = \"reverse\"\ngroup = \"g\"\nmax_processes = 5\n\
         [[jobs]]\nname = \"c\"\nworker = \"sleep\"\n",
    )
    .unwrap();
    let pools = config.pools();
    assert_eq!(pools.len(), 2);
    let g = pools.iter().find(|p| p.name == "g").unwrap();
    assert_eq!(
        g.jobs.iter().map(|j| j.name.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert_eq!((g.limits.min_processes, g.limits.max_processes), (2, 5));
    let b = config.job("b").unwrap();
    assert_eq!(
        (b.limits.min_processes, b.limits.max_processes),
        (2, 5),
        "members see the group's values"
    );
    let c = pools.iter().find(|p| p.name == "c").unwrap();
    assert_eq!((c.limits.min_processes, c.limits.max_processes), (1, 1));

    // A group's processes count once toward the host's limit of 4096.
    load(
        "[[jobs]]\nname = \"a\"\nworker = \"echo\"\ngroup = \"g\"\nmax_processes = 4000\n\
         [[jobs]]\nname = \"b\"\nworker = \"reverse\"\ngroup = \"g\"\n",
    )
    .expect("one pool of 4000");
}

#[test]
fn environment_overrides_apply() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        "[driver]\ninterval = 7\n[[jobs]]\nname = \"r\"\nworker = \"reverse\"\n",
    )
    .unwrap();
    let out = common::geardriver()
        .args(["check-config", "--config"])
        .arg(&path)
        .env("GEARDRIVER__DRIVER__INTERVAL", "1")
        .env("GEARDRIVER__DRIVER__JOB_SERVERS", "10.0.0.1:4731,10.0.0.2")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("interval         1s"), "{stdout}");
    assert!(
        stdout.contains("job_servers      10.0.0.1:4731, 10.0.0.2:4730"),
        "{stdout}"
    );
    // The path itself can come from the environment too.
    let out = common::geardriver()
        .arg("check-config")
        .env("GEARDRIVER_CONFIG", &path)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("interval         7s"),
        "{out:?}"
    );
}

#[test]
fn check_config_prints_the_table_or_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "[[jobs]]\nname = \"resize\"\nworker = \"echo\"\nmax_processes = 3\n",
    )
    .unwrap();
    let out = common::geardriver()
        .args(["check-config", "--config"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("resize"), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("resize ") && l.contains(" 3 ")),
        "{stdout}"
    );

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[[jobs]]\nname = \"resize\"\nworker = \"echo\"\nmin_processes = 5\nmax_processes = 2\n",
    )
    .unwrap();
    let out = common::geardriver()
        .args(["check-config", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}: jobs[0] \"resize\"", bad.display())),
        "{stderr}"
    );

    let out = common::geardriver()
        .args(["check-config", "--config", "/nonexistent/geardriver.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/nonexistent/geardriver.toml: no such file")
    );
}

// Found trying issue 12: `check-config` said nothing of settings that load but do nothing
// (`stats_dir` since the memfd; a built-in job server that no job server entry names).
#[test]
fn check_config_notes_settings_that_do_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        "[driver]\njob_servers = [\"127.0.0.1:4730\"]\nstats_dir = \"/dev/shm\"\n\
         [server]\nenabled = true\nlisten = \"127.0.0.1:4731\"\n\
         [[jobs]]\nname = \"e\"\nworker = \"echo\"\n",
    )
    .unwrap();
    let out = common::geardriver()
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("note: stats_dir = \"/dev/shm\" is ignored"),
        "{stderr}"
    );
    assert!(
        stderr.contains("note: the built-in job server listens on 127.0.0.1:4731, but job_servers does not name it"),
        "{stderr}"
    );
    // The repository's own config gets no note.
    let out = common::geardriver()
        .args(["check-config", "--config", "config.toml"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}

// Issue 13: job entries can be overridden from the environment, as `[driver]` keys can.
#[test]
fn job_entries_take_overrides_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        "[console]\nlisten = \"\"\n[[jobs]]\nname = \"resize\"\nworker = \"echo\"\nmax_processes = 2\n",
    )
    .unwrap();
    let check = |vars: &[(&str, &str)]| {
        let out = common::geardriver()
            .args(["check-config", "--config"])
            .arg(&path)
            .envs(vars.iter().copied())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stdout, stderr) = check(&[
        ("GEARDRIVER_JOB__RESIZE__MAX_PROCESSES", "8"),
        ("GEARDRIVER_JOB__resize__timeout", "2.5"),
        ("GEARDRIVER_JOB__RESIZE__CONCURRENCY", "3"),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let row: Vec<&str> = stdout
        .lines()
        .find(|l| l.starts_with("resize "))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!((row[2], row[5], row[8]), ("8", "3", "2.5s"), "{stdout}");
    for (vars, expected) in [
        (
            [("GEARDRIVER_JOB__NOPE__MAX_PROCESSES", "8")],
            "GEARDRIVER_JOB__NOPE__MAX_PROCESSES: no job is named \"NOPE\"",
        ),
        (
            [("GEARDRIVER_JOB__RESIZE__MAX_PROCESSES", "lots")],
            "GEARDRIVER_JOB__RESIZE__MAX_PROCESSES = \"lots\" is not a whole number",
        ),
        (
            [("GEARDRIVER_JOB__RESIZE__WORKER", "reverse")],
            "GEARDRIVER_JOB__RESIZE__WORKER: worker cannot be set from the environment",
        ),
        (
            [("GEARDRIVER_JOB__RESIZE__MIN_PROCESSES", "5")],
            "jobs[0] \"resize\": max_processes (2) must be >= min_processes (5)",
        ),
    ] {
        let (code, _, stderr) = check(&vars);
        assert_eq!(code, Some(2), "{vars:?}");
        assert!(stderr.contains(expected), "{vars:?}: {stderr}");
    }
}

// Issue 13: errors in a job entry's shape name the job, from the key the config crate reports
// (not from its message text); the kind of error is typed.
#[test]
fn shape_errors_name_their_job_and_kind() {
    let text = "[[jobs]]\nname = \"ok\"\nworker = \"echo\"\n\
                [[jobs]]\nname = \"x\"\nworker = \"echo\"\nmax_processes = \"lots\"\n";
    let err = Config::from_toml(text, Path::new("test.toml"), &Registry::with_builtins())
        .expect_err("refused");
    assert!(
        matches!(&err, geardriver::config::ConfigError::Shape { job: Some(j), .. } if j == "x"),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.starts_with("test.toml: invalid type: string \"lots\""),
        "{message}"
    );
    assert!(
        message.contains("jobs[1]") && message.ends_with("(job \"x\")"),
        "{message}"
    );
    let err = Config::from_toml(
        "[driver\n",
        Path::new("test.toml"),
        &Registry::with_builtins(),
    )
    .expect_err("refused");
    assert!(
        matches!(
            &err,
            geardriver::config::ConfigError::Shape { job: None, .. }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("line 1, column 8"), "{err}");
    let err = Config::load(Path::new("/nonexistent.toml"), &Registry::with_builtins())
        .expect_err("refused");
    assert!(matches!(
        err,
        geardriver::config::ConfigError::NoFile { .. }
    ));
    assert_eq!(err.path(), Path::new("/nonexistent.toml"));
}

// Found by a new user's trial: `geardriver check-config | head -1` panicked ("failed
// printing to stdout: Broken pipe") with a backtrace and exit 101.
#[test]
fn a_reader_that_goes_away_ends_check_config_quietly() {
    // Whether the reader is gone before the command writes is a race (another test's child
    // may hold the pipe a moment): tried until it is, and never a panic.
    let mut broken = 0;
    for _ in 0..20 {
        let mut child = common::geardriver()
            .args(["check-config", "--config"])
            .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{stderr}");
        match out.status.code() {
            Some(141) => broken += 1,
            Some(0) => {}
            other => panic!("exit {other:?}: {stderr}"),
        }
    }
    assert!(broken > 0, "the reader was never gone first");
}

// Found by a new user's trial: an imported config whose runner path or PHP binary does not
// exist here passed check-config silently, and the host then crash-looped.
#[test]
fn check_config_notes_programs_and_files_that_are_not_here() {
    let (_dir, config) = common::host::config_dir(
        &["127.0.0.1:4730".into()],
        "",
        "[[jobs]]\nname = \"a\"\nprogram = [\"php-not-installed\", \"/opt/nope/runner.php\"]\n\
         [[jobs]]\nname = \"b\"\ncommand = [\"/nope/bin/worker\"]\n\
         [[jobs]]\nname = \"c\"\ncommand = [\"sh\", \"-c\", \"cat\"]\n\
         [[jobs]]\nname = \"w\"\ncommand = [\"sh\", \"-c\", \"cd /srv/app && exec php x.php\"]\nwatch = true\n",
    );
    let out = common::import::check_config(&config);
    let stderr = &out.stderr;
    assert_eq!(out.code, Some(0), "notes, not errors: {stderr}");
    for note in [
        "note: job \"a\": its program \"php-not-installed\" is in no directory of PATH here",
        "note: job \"a\": its command line names /opt/nope/runner.php, which does not exist here",
        "note: job \"b\": its program /nope/bin/worker does not exist here",
        "note: job \"w\": watch = true, but its command line names no file that exists here",
    ] {
        assert!(stderr.contains(note), "{note}\n{stderr}");
    }
    assert!(!stderr.contains("job \"c\""), "{stderr}");
}
