//! `geardriver import gearman-manager FILE.ini` (issue 18, item 4): ini files and worker
//! directories written here, imported by the built binary, and the output checked by
//! `geardriver check-config` (which must accept it) and its job table; the notes on stderr
//! for what is not carried over; the errors for ini files that cannot be imported; and the
//! ini reader against PHP's own `parse_ini_file`.

use crate::common;

use common::import::{check_config, import_gearman_manager, job_table, worker_files};
use std::collections::BTreeMap;
use std::path::Path;

/// GearmanManager's etc/config-advanced.ini (brianlmoon/GearmanManager), verbatim.
const CONFIG_ADVANCED_INI: &str = include_str!("../programs/gearman-manager/config-advanced.ini");

/// The user workers may be given here: nobody as root (which can switch to it), else the
/// user the tests run as.
fn a_user() -> String {
    let me = nix::unistd::Uid::effective();
    match me.is_root() {
        true => "nobody".into(),
        false => nix::unistd::User::from_uid(me)
            .ok()
            .flatten()
            .map_or_else(|| me.to_string(), |u| u.name),
    }
}

/// Imports `ini` (run in `dir`), writes the config to `dir/elsewhere/config.toml` (its
/// paths must not depend on where it lives), checks it and returns check-config's stdout
/// and the import's stderr.
fn import_and_check(dir: &Path, ini: &str, args: &[&str]) -> (String, String) {
    let ini_path = dir.join("gm.ini");
    std::fs::write(&ini_path, ini).unwrap();
    let imported = import_gearman_manager(dir, &ini_path, args);
    assert_eq!(imported.code, Some(0), "{}", imported.stderr);
    let config = dir.join("elsewhere/config.toml");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    std::fs::write(&config, &imported.stdout).unwrap();
    let checked = check_config(&config);
    assert_eq!(
        checked.code,
        Some(0),
        "check-config refused the import:\n{}\n{}",
        checked.stderr,
        imported.stdout
    );
    (checked.stdout, imported.stderr)
}

/// (min, max, group) per job.
fn pools(stdout: &str) -> BTreeMap<String, (String, String, String)> {
    job_table(stdout)
        .into_iter()
        .map(|(name, row)| {
            (
                name,
                (row["min"].clone(), row["max"].clone(), row["group"].clone()),
            )
        })
        .collect()
}

fn pool(min: u32, max: u32, group: &str) -> (String, String, String) {
    (min.to_string(), max.to_string(), group.to_string())
}

#[test]
fn gearman_managers_own_advanced_example_runs_the_same_fleet() {
    let dir = tempfile::tempdir().unwrap();
    worker_files(
        dir.path(),
        &[
            "pecl-workers/fetch_url.php",
            "pecl-workers/reverse_string.php",
            "pecl-worker-classes/Avg.php",
            "pecl-worker-classes/Sum.php",
        ],
    );
    let (stdout, stderr) = import_and_check(dir.path(), CONFIG_ADVANCED_INI, &[]);
    // count = 10 and dedicated_count = 1 give every function one process of its own (so the
    // shared ten have no function left); Sum is dedicated_only with 5; fetch_url's count of
    // 15 is 5 of its own. Each may grow into the 10 it no longer shares.
    assert_eq!(
        pools(&stdout),
        BTreeMap::from([
            ("Avg".into(), pool(1, 11, "-")),
            ("Sum".into(), pool(5, 5, "-")),
            ("fetch_url".into(), pool(5, 15, "-")),
            ("reverse_string".into(), pool(1, 11, "-")),
        ])
    );
    let table = job_table(&stdout);
    for row in table.values() {
        // max_worker_lifetime = 3600 with GearmanManager's splay of 600.
        assert_eq!(row["lifetime"], "3714s");
        // auto_update = 1.
        assert!(row["worker"].ends_with("(watched)"), "{}", row["worker"]);
        assert!(
            row["worker"].contains("gearman-manager-runner.php"),
            "{}",
            row["worker"]
        );
    }
    let pecl = dir.path().join("pecl-workers").display().to_string();
    assert!(table["fetch_url"]["worker"].contains(&format!("{pecl}/fetch_url.php")));
    // graceful_shutdown_wait_time = 60.
    assert!(stdout.contains("shutdown_timeout 60s"), "{stdout}");
    // timeout = 300, and [fetch_url]'s 30.
    let timeouts: Vec<(&str, &str)> = table
        .iter()
        .map(|(name, row)| (name.as_str(), row["timeout"].as_str()))
        .collect();
    assert_eq!(
        timeouts,
        [
            ("Avg", "300s"),
            ("Sum", "300s"),
            ("fetch_url", "30s"),
            ("reverse_string", "300s")
        ]
    );
    // Nothing to note: every key of it is carried over.
    assert_eq!(stderr, "");
}

#[test]
fn every_mapped_key_reaches_the_config() {
    let dir = tempfile::tempdir().unwrap();
    worker_files(
        dir.path(),
        &[
            "w/a.php",
            "w/b.php",
            "w/c.php",
            "w/skipped.php",
            "w/not_included.php",
            "abs/d.php",
        ],
    );
    let user = a_user();
    let abs = dir.path().join("abs").display().to_string();
    let ini = format!(
        "[GearmanManager]\n\
         worker_dir = w,{abs}\n\
         include = a,b,c,d,skipped\n\
         exclude = skipped\n\
         count = 3\n\
         max_worker_lifetime = 100\n\
         worker_restart_splay = 50\n\
         max_runs_per_worker = 250\n\
         auto_update = 0\n\
         host = 10.0.0.1, [::1]:4731\n\
         prefix = gm_\n\
         user = {user}\n\
         log_file = log/gm.log\n\
         pid_file = run/gm.pid\n\
         graceful_shutdown_wait_time = 9\n\
         timeout = 20\n\
         [a]\n\
         timeout = 0\n\
         [b]\n\
         count = 5\n\
         timeout = 7\n\
         [c]\n\
         dedicated_count = 2\n\
         dedicated_only = yes\n"
    );
    let (stdout, _) = import_and_check(dir.path(), &ini, &[]);
    // count = 3: a group of every job; b wants 5, 2 of them its own, so it leaves the group
    // with 2 and may grow to 5; c is dedicated_only with 2.
    assert_eq!(
        pools(&stdout),
        BTreeMap::from([
            ("a".into(), pool(3, 3, "all")),
            ("b".into(), pool(2, 5, "-")),
            ("c".into(), pool(2, 2, "-")),
            ("d".into(), pool(3, 3, "all")),
        ])
    );
    let table = job_table(&stdout);
    for row in table.values() {
        // max_runs_per_worker, and 100 + 0..50 s as (2 * 100 + 50) / 2.1 + a tenth.
        assert_eq!(
            (row["max_jobs"].as_str(), row["lifetime"].as_str()),
            ("250", "119s")
        );
        let worker = &row["worker"];
        assert!(worker.contains(" --prefix=gm_ "), "{worker}");
        assert!(worker.ends_with(&format!("(as {user})")), "{worker}");
        assert!(!worker.contains("watched"), "{worker}");
    }
    // timeout = 20, [b]'s 7, and [a]'s 0 (none), which clears the global one.
    let timeouts: Vec<&str> = table.values().map(|r| r["timeout"].as_str()).collect();
    assert_eq!(timeouts, ["-", "7s", "20s", "20s"]);
    let base = dir.path().display().to_string();
    assert!(table["a"]["worker"].contains(&format!("{base}/w/a.php")));
    assert!(table["d"]["worker"].contains(&format!("{abs}/d.php")));
    for line in [
        "job_servers      10.0.0.1:4730, [::1]:4731".to_string(),
        "shutdown_timeout 9s".to_string(),
        format!("logfile          {base}/log/gm.log"),
        format!("pidfile          {base}/run/gm.pid"),
    ] {
        assert!(stdout.contains(&line), "{line:?} in\n{stdout}");
    }
    // auto_update = 1 watches the directories.
    let (stdout, _) = import_and_check(
        dir.path(),
        "[GearmanManager]\nworker_dir = w\nauto_update = 1\n",
        &[],
    );
    assert!(stdout.contains("(*.php, watched)"), "{stdout}");
    let table = job_table(&stdout);
    assert_eq!(table.len(), 5);
    for row in table.values() {
        assert_eq!((row["min"].as_str(), row["max"].as_str()), ("1", "1"));
        // GearmanManager's 3600 + 0..600 s.
        assert_eq!(row["lifetime"], "3714s");
    }
}

#[test]
fn keys_not_carried_over_and_unknown_keys_are_listed_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    worker_files(dir.path(), &["workers/a.php", "workers/b.php"]);
    let ini = "stray = 1\n\
               [GearmanManager]\n\
               daemon = 1\n\
               verbose = vvv\n\
               log_file = syslog\n\
               worker_initial_spawn_splay = 100\n\
               timeout = 30\n\
               colour = blue\n\
               include = a, *,b,nothere\n\
               a line without an equals sign\n\
               [a]\n\
               priority = 2\n\
               flavour = x\n\
               [missing]\n\
               count = 4\n\
               [gearmanmanager]\n\
               count = 9\n\
               [b]\n\
               count = 1\n\
               [b]\n\
               count = 2\n";
    let (stdout, stderr) = import_and_check(dir.path(), ini, &[]);
    let notes: Vec<&str> = stderr.lines().filter(|l| l.starts_with("note: ")).collect();
    for expected in [
        "line 1: stray is before any section",
        "line 3: daemon: not carried over",
        "line 4: verbose: not carried over",
        "line 5: log_file = syslog: not carried over",
        "line 6: worker_initial_spawn_splay: not carried over",
        "line 8: [GearmanManager] colour: unknown key",
        "line 9: include: GearmanManager does not trim",
        "line 9: include: \"*\" names no function",
        "line 10: a line without '='",
        "include names nothere, which no worker_dir has",
        "line 12: [a] priority: not carried over",
        "line 13: [a] flavour: unknown key",
        "line 14: [missing]: no missing.php is served",
        "line 16: [gearmanmanager] is not [GearmanManager]",
        "line 20: section [b] again (first on line 18)",
    ] {
        assert!(
            notes.iter().any(|n| n.contains(expected)),
            "{expected:?} not among\n{stderr}"
        );
    }
    // Each note names the file.
    assert!(notes.iter().all(|n| n.contains("gm.ini: ")), "{stderr}");
    // [b] count = 2 (the second section) gives it a second process of its own.
    assert_eq!(
        pools(&stdout),
        BTreeMap::from([("a".into(), pool(1, 1, "-")), ("b".into(), pool(2, 2, "-"))])
    );
}

#[test]
fn ini_files_that_cannot_be_imported_are_errors_naming_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    worker_files(dir.path(), &["workers/a.php"]);
    let run = |ini: &str| {
        let path = dir.path().join("bad.ini");
        std::fs::write(&path, ini).unwrap();
        let ran = import_gearman_manager(dir.path(), &path, &[]);
        assert_eq!(ran.code, Some(2), "{ini:?}: {}", ran.stderr);
        assert_eq!(ran.stdout, "", "{ini:?}: nothing on stdout");
        ran.stderr
    };
    let file = dir.path().join("bad.ini").display().to_string();
    for (ini, expected) in [
        (
            "[GearmanManager\ncount = 1\n",
            ":1: a section header without its ']'",
        ),
        (
            "[GearmanManager]\ncount = 1\nhost = a|b\n",
            ":3: '|' in an unquoted value",
        ),
        (
            "[GearmanManager]\nlog_file = \"gm.log\n",
            ":2: a '\"' that is never closed",
        ),
        (
            "[GearmanManager]\n\ncount = ten\n",
            ":3: count = \"ten\": expected a whole number",
        ),
        ("[GearmanManager]\ncount = -2\n", ":2: count = \"-2\""),
        (
            "[a]\ndedicated_only = 1\n",
            ":1: [a] dedicated_only needs a dedicated_count",
        ),
        ("[GearmanManager]\nhost = bad host\n", ":2: host: "),
        (
            "[GearmanManager]\nworker_dir = nowhere\n",
            ":2: worker_dir ",
        ),
        ("; nothing but a comment\n", ": no configuration in it"),
    ] {
        let stderr = run(ini);
        assert!(
            stderr.contains(&format!("{file}{expected}")),
            "{ini:?}: {expected:?} not in {stderr}"
        );
    }
    // worker_dir left to GearmanManager's default ./workers, from elsewhere.
    let elsewhere = tempfile::tempdir().unwrap();
    let path = dir.path().join("gm.ini");
    std::fs::write(&path, "[GearmanManager]\ncount = 1\n").unwrap();
    let ran = import_gearman_manager(elsewhere.path(), &path, &[]);
    assert_eq!(ran.code, Some(2));
    assert!(
        ran.stderr
            .contains("worker_dir is not set, so its default ./workers is used"),
        "{}",
        ran.stderr
    );
    // A file that is not there, and one that is not a file.
    let missing = dir.path().join("missing.ini");
    let ran = import_gearman_manager(dir.path(), &missing, &[]);
    assert_eq!(ran.code, Some(2));
    assert!(
        ran.stderr
            .contains(&format!("{}: no such file", missing.display()))
    );
    let ran = import_gearman_manager(dir.path(), dir.path(), &[]);
    assert_eq!(ran.code, Some(2));
    assert!(ran.stderr.contains("not a regular file"), "{}", ran.stderr);
}

#[test]
fn relative_paths_are_taken_from_where_gearman_manager_ran() {
    let dir = tempfile::tempdir().unwrap();
    worker_files(dir.path(), &["app/workers/a.php"]);
    let ini = dir.path().join("gm.ini");
    std::fs::write(&ini, "[GearmanManager]\npid_file = gm.pid\n").unwrap();
    // Its default ./workers, from --relative-to.
    let app = dir.path().join("app");
    let ran = import_gearman_manager(dir.path(), &ini, &["--relative-to", app.to_str().unwrap()]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(
        ran.stdout
            .contains(&format!("path = \"{}/workers\"", app.display())),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout
            .contains(&format!("pidfile = \"{}/gm.pid\"", app.display())),
        "{}",
        ran.stdout
    );
    // Run from elsewhere, an ini whose relative worker_dir is beside it: a hint, whether the
    // directory is missing there or holds no worker file.
    let beside = dir.path().join("app/gm.ini");
    std::fs::write(&beside, "[GearmanManager]\nworker_dir = workers\n").unwrap();
    let hint = format!(
        "{}/workers has worker files: if GearmanManager ran in {}, give --relative-to {}",
        app.display(),
        app.display(),
        app.display()
    );
    let ran = import_gearman_manager(dir.path(), &beside, &[]);
    assert_eq!(ran.code, Some(2));
    assert!(ran.stderr.contains(&hint), "{}", ran.stderr);
    std::fs::create_dir(dir.path().join("workers")).unwrap();
    let ran = import_gearman_manager(dir.path(), &beside, &[]);
    assert_eq!(ran.code, Some(0));
    assert!(ran.stderr.contains(&hint), "{}", ran.stderr);
    // --runner and --php name the program.
    let runner = dir.path().join("runner.php");
    std::fs::write(&runner, "<?php\n").unwrap();
    let ran = import_gearman_manager(
        &app,
        &ini,
        &[
            "--runner",
            runner.to_str().unwrap(),
            "--php",
            "/usr/bin/php8.2",
        ],
    );
    assert!(
        ran.stdout.contains(&format!(
            "program = [\"/usr/bin/php8.2\", \"{}\", \"{{file}}\"]",
            runner.display()
        )),
        "{}",
        ran.stdout
    );
    assert!(!ran.stderr.contains("runner"), "{}", ran.stderr);
    let ran = import_gearman_manager(&app, &ini, &["--runner", "/nowhere/runner.php"]);
    assert!(
        ran.stderr
            .contains("the PHP runner /nowhere/runner.php is not there"),
        "{}",
        ran.stderr
    );
}

#[test]
fn a_function_in_two_worker_dirs_is_served_from_the_last() {
    let dir = tempfile::tempdir().unwrap();
    worker_files(dir.path(), &["one/a.php", "one/b.php", "two/b.php"]);
    let (stdout, stderr) = import_and_check(
        dir.path(),
        "[GearmanManager]\nworker_dir = one,two\ncount = 2\n",
        &[],
    );
    let table = job_table(&stdout);
    let two = dir.path().join("two/b.php").display().to_string();
    assert!(table["b"]["worker"].contains(&two), "{stdout}");
    assert!(stderr.contains("b.php is in"), "{stderr}");
    // Both directories' jobs are in the one group of every job.
    assert_eq!(
        pools(&stdout),
        BTreeMap::from([
            ("a".into(), pool(2, 2, "all")),
            ("b".into(), pool(2, 2, "all"))
        ])
    );
}

/// Texts PHP's `parse_ini_file($f, true)` reads (or refuses), for the reader to agree with.
const INI_CASES: &[&str] = &[
    "a = 1\n[S]\nb = yes\nc = \"yes\"\nd = off\ne = none\nf = null\ng = TRUE\nh=\n",
    "# hash\n[S]\nb = 1\n# x = y\n",
    "[S]\nb = \"abc\" def\nc = 'x\\y' z\nd = x ' y ' z\ne = \"a\" x \"b\"\n",
    "[S]\nb = \"x\\\"y\\\\z\\n\"\nc = \"multi\nline\"\nd=2\n",
    "[S]\nb = 3 ; comment\nc = x;y\nd = 'a;b'\ne = \"a;b\"\nf = 'a\"b'\n",
    "[S]\nnokey\n  other words here\n  ; indented comment\n\t\n",
    "[S] junk\nb=1\n[S]\nc=2\n[ T x ]\nd[]=1\nd[]=2\ne[k]=3\n",
    "[S]\na=1\na=2\nd=1\nd[]=2\ne[]=1\ne=2\nf[0]=a\nf[]=b\ng[x]=1\ng[]=2\n",
    "[1]\na.b=1\n[S]\nx = \"a\" 'b' c\ny = 'a' \"b\"\nz = 'x' z\n",
    "[S]\n  my key  =   a b c   \nk2=\t x \t\n",
    "[S]\nb = ${HOME}/x\nc = \"${HOME}\"\nd = $x\ne = ${GEARDRIVER_SURELY_UNSET}y\n",
    "\u{feff}[S]\r\nb = 1\r\nc = \"x\"\r\nd = 3\re = 4\n",
    "[S]\nb = /var/log/x-y_z.log\nc = 10.0.0.1:4730,10.0.0.2\nd = *\ne = a,b ,c\nf = [x]\ng = x]\n",
    "[S]\na = x#y\nb = #z\nc = on1\nd = \" spaced \"\ne = ' a '\n",
    "[S]\na = \"x\"y\"z\"\nb = 1 2\nc[ x ] = 1\nd = \"a\\\nc\"\n",
    "[S\"x\"]\na=1\n[]\nb=2\n",
    // What PHP refuses.
    "[S]\nb = a=b\n",
    "[S]\nb = /a/~b\n",
    "[S]\nb = a!b\n",
    "[S]\nb = a (x).log\n",
    "[S\nb=1\n",
    "[S;x]\na=1\n",
    "[S]\nb = \"unterminated\n",
    "[S]\nb = 'unterminated\n",
    "[S]\nd{e}=2\n",
    "[S]\nb = yes no\n",
    "[S]\nTrue = 1\n",
    "[S]\n= 1\n",
    "[S]\n  [T]\nb=2\n",
    "[S]\n\"b\" = 2\n",
    "[S]\na b[ = 1\n",
    "[S]\nb = &x\n",
];

/// PHP's array as JSON: a list when its keys are 0, 1, 2 …, else an object.
fn php_array(items: Vec<(String, serde_json::Value)>) -> serde_json::Value {
    let sequential = items
        .iter()
        .enumerate()
        .all(|(i, (k, _))| *k == i.to_string());
    match sequential {
        true => serde_json::Value::Array(items.into_iter().map(|(_, v)| v).collect()),
        false => serde_json::Value::Object(items.into_iter().collect()),
    }
}

fn as_json(ini: &geardriver::cli::import::ini::Ini) -> serde_json::Value {
    use geardriver::cli::import::ini::{Entry, Value};
    let entries = |entries: &[Entry]| -> Vec<(String, serde_json::Value)> {
        entries
            .iter()
            .map(|e| {
                let value = match &e.value {
                    Value::Text(t) => serde_json::Value::String(t.clone()),
                    Value::Array(items) => php_array(
                        items
                            .iter()
                            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                            .collect(),
                    ),
                };
                (e.key.clone(), value)
            })
            .collect()
    };
    let mut top = entries(&ini.top);
    for section in &ini.sections {
        top.push((section.name.clone(), php_array(entries(&section.entries))));
    }
    php_array(top)
}

#[test]
fn the_ini_reader_agrees_with_php() {
    if std::process::Command::new("php")
        .arg("-v")
        .output()
        .is_err()
    {
        if common::gearmand_required() {
            panic!("CI installs php-cli, to check the ini reader against PHP");
        }
        common::notice("php not installed: the ini reader is not compared with PHP's");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.ini");
    for text in INI_CASES {
        std::fs::write(&path, text).unwrap();
        let php = std::process::Command::new("php")
            .args([
                "-r",
                "$r = @parse_ini_file($argv[1], true); echo $r === false ? 'false' : json_encode($r);",
            ])
            .arg(&path)
            .output()
            .unwrap();
        let php = String::from_utf8_lossy(&php.stdout).into_owned();
        let ours = geardriver::cli::import::ini::parse(text, &|name| std::env::var(name).ok());
        match (php.as_str(), ours) {
            ("false", Err(_)) => {}
            ("false", Ok(ini)) => panic!("{text:?}: PHP refuses it, we read {ini:?}"),
            (_, Err(e)) => panic!("{text:?}: PHP reads {php}, we refuse it: {e}"),
            (json, Ok(ini)) => {
                let php: serde_json::Value = serde_json::from_str(json)
                    .unwrap_or_else(|e| panic!("{text:?}: PHP printed {json:?}: {e}"));
                assert_eq!(as_json(&ini), php, "{text:?}");
            }
        }
    }
}

/// The PHP runner of the source tree, when it is there and PHP can run it (php-cli with
/// pecl gearman and pcntl, which CI installs); else a notice.
fn php_runner() -> Option<std::path::PathBuf> {
    let runner =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("workers/php/gearman-manager-runner.php");
    if !runner.is_file() {
        common::notice("no workers/php/gearman-manager-runner.php: the imported fleet is not run");
        return None;
    }
    let modules = std::process::Command::new("php")
        .arg("-m")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    if !["gearman", "pcntl"]
        .iter()
        .all(|m| modules.lines().any(|l| l == *m))
    {
        if common::gearmand_required() {
            panic!("CI installs php-cli and php-gearman, to run the PHP runner");
        }
        common::notice(
            "php with gearman and pcntl is not installed: the imported fleet is not run",
        );
        return None;
    }
    Some(runner)
}

both_servers! {
    async fn an_imported_gearman_manager_fleet_serves_its_jobs_and_follows_a_deploy(server) {
        let Some(_runner) = php_runner() else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let workers = dir.path().join("workers");
        std::fs::create_dir_all(&workers).unwrap();
        // A procedural file and a class file, as GearmanManager's README writes them, with
        // its prefix.
        let reverse = workers.join("reverse_string.php");
        std::fs::write(
            &reverse,
            "<?php\nfunction gm_reverse_string($job, &$log) {\n    $log[] = 'reversed ' . strlen($job->workload()) . ' bytes';\n    return strrev($job->workload());\n}\n",
        )
        .unwrap();
        std::fs::write(
            workers.join("Sum.php"),
            "<?php\nclass gm_Sum {\n    public function run($job, &$log) {\n        return array_sum(json_decode($job->workload(), true));\n    }\n}\n",
        )
        .unwrap();
        let ini = dir.path().join("gm.ini");
        std::fs::write(
            &ini,
            format!(
                "[GearmanManager]\nworker_dir = workers\ncount = 1\nauto_update = 1\nprefix = gm_\n\
                 host = {}\nlog_file = host.log\nmax_runs_per_worker = 100\n\
                 [Sum]\ndedicated_count = 1\ndedicated_only = 1\n",
                server.addr()
            ),
        )
        .unwrap();
        let imported = import_gearman_manager(dir.path(), &ini, &[]);
        assert_eq!(imported.code, Some(0), "{}", imported.stderr);
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!("{}\n[console]\nlisten = \"\"\n[http]\nlisten = \"\"\n", imported.stdout),
        )
        .unwrap();
        let host = common::host::Host::start_with(dir, config);
        let limit = std::time::Duration::from_secs(20);
        // count = 1: one process for every job; Sum, dedicated_only, one of its own.
        host.wait_workers("all", 1, limit);
        host.wait_workers("Sum", 1, limit);
        let client = geardriver::gearman::Client::new(
            vec![server.addr()],
            geardriver::gearman::ClientOptions::default(),
        )
        .unwrap();
        assert_eq!(
            common::outcome(&client, "reverse_string", "hello").await,
            common::complete("olleh")
        );
        assert_eq!(
            common::outcome(&client, "Sum", "[1, 2, 3]").await,
            common::complete("6")
        );
        // What the function appended to $log is in the host's log.
        host.wait_log("reversed 5 bytes", limit);
        // A deploy: the new code serves without a restart of the host.
        std::fs::write(
            &reverse,
            "<?php\nfunction gm_reverse_string($job, &$log) {\n    return strtoupper(strrev($job->workload()));\n}\n",
        )
        .unwrap();
        host.wait_log("code changed; replacing its processes", limit);
        // Bounded: the old process finishes (it is idle), a new one starts.
        let deadline = std::time::Instant::now() + limit;
        let mut last = common::outcome(&client, "reverse_string", "hello").await;
        while last != common::complete("OLLEH") && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            last = common::outcome(&client, "reverse_string", "hello").await;
        }
        let deployed = last == common::complete("OLLEH");
        assert!(deployed, "still {last:?}\n{}", host.log());
    }
}
