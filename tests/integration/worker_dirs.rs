//! Worker directories (issue 18, items 1 and 2): every matching file of a `[[worker_dirs]]`
//! entry becomes a job named after it, `[[jobs]]` entries override their settings, and with
//! `watch = true` a deploy replaces the changed jobs' processes (once each, gracefully) and
//! files that come or go add and remove jobs, without a reload.

use crate::common;

use common::host::{Host, config_dir};
use common::poll_until;
use geardriver::config::{Config, WorkerKind};
use geardriver::gearman::{Client, ClientOptions, JobOutcome, ServerAddr};
use geardriver::plugin::Registry;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(15);

/// Writes an executable shell script.
fn script(path: &Path, body: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    // Written aside and renamed in, as a deploy does (and so that a running `sh` never reads
    // a half-written file).
    let aside = path.with_extension("tmp~");
    std::fs::write(&aside, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&aside, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&aside, path).unwrap();
}

fn load(dir: &Path, text: &str) -> Result<Config, String> {
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    Config::load(&path, &Registry::with_builtins()).map_err(|e| e.to_string())
}

#[test]
fn a_directorys_files_become_jobs_named_after_them() {
    let dir = tempfile::tempdir().unwrap();
    let gm = dir.path().join("gm");
    for name in [
        "resize.sh",
        "mail.sh",
        "index.sh",
        "notes.txt",
        ".hidden.sh",
        "sub/deep.sh",
    ] {
        script(&gm.join(name), "cat");
    }
    let config = load(
        dir.path(),
        "[[worker_dirs]]\npath = \"gm\"\nfiles = \"*.sh\"\nprefix = \"img_\"\nexclude = [\"ind*\"]\n\
         min_processes = 2\ntimeout = 7\n\
         [[jobs]]\nname = \"img_mail\"\nmin_processes = 0\nmax_processes = 4\n\
         [[jobs]]\nname = \"other\"\nworker = \"reverse\"\n",
    )
    .unwrap();
    let names: Vec<&str> = config.jobs.iter().map(|j| j.name.as_str()).collect();
    assert_eq!(names, ["img_mail", "img_resize", "other"]);
    let resize = config.job("img_resize").unwrap();
    let file = gm.join("resize.sh");
    assert_eq!(resize.file.as_deref(), Some(file.as_path()));
    // No command given: the file itself runs, once per job.
    assert_eq!(resize.worker, WorkerKind::Command(vec!["{file}".into()]));
    assert_eq!(resize.argv(), Some(vec![file.display().to_string()]));
    assert_eq!(
        (resize.limits.min_processes, resize.timeout),
        (2, Some(Duration::from_secs(7)))
    );
    // The [[jobs]] entry overrides what it gives and inherits the rest.
    let mail = config.job("img_mail").unwrap();
    assert_eq!(
        (mail.limits.min_processes, mail.limits.max_processes),
        (0, 4)
    );
    assert_eq!(mail.timeout, Some(Duration::from_secs(7)));
    assert_eq!(
        mail.argv(),
        Some(vec![gm.join("mail.sh").display().to_string()])
    );
    assert_eq!(config.worker_dirs.len(), 1);
    assert_eq!(config.worker_dirs[0].jobs, ["img_mail", "img_resize"]);

    // include takes names without the prefix; a program's {file} is the job's file.
    let config = load(
        dir.path(),
        "[[worker_dirs]]\npath = \"gm\"\nfiles = \"*.sh\"\ninclude = [\"resize\", \"index\"]\n\
         program = [\"sh\", \"{file}\", \"--from={file}\"]\n",
    )
    .unwrap();
    let names: Vec<&str> = config.jobs.iter().map(|j| j.name.as_str()).collect();
    assert_eq!(names, ["index", "resize"]);
    let index = gm.join("index.sh").display().to_string();
    assert_eq!(
        config.job("index").unwrap().argv(),
        Some(vec!["sh".into(), index.clone(), format!("--from={index}")])
    );

    // A group of programs from one directory: one process runs every member's file.
    let config = load(
        dir.path(),
        "[[worker_dirs]]\npath = \"gm\"\nfiles = \"*.sh\"\ngroup = \"all\"\n\
         program = [\"sh\", \"runner\", \"{file}\"]\n",
    )
    .unwrap();
    let pools = config.pools();
    assert_eq!(pools.len(), 1);
    let files: Vec<String> = ["index.sh", "mail.sh", "resize.sh"]
        .iter()
        .map(|f| gm.join(f).display().to_string())
        .collect();
    let mut expected = vec!["sh".to_string(), "runner".into()];
    expected.extend(files);
    assert_eq!(pools[0].program(), Some(expected));
}

#[test]
fn mistakes_in_worker_directories_are_named() {
    let dir = tempfile::tempdir().unwrap();
    script(&dir.path().join("a/resize.sh"), "cat");
    script(&dir.path().join("b/resize.sh"), "cat");
    script(&dir.path().join("a/mail.sh"), "cat");
    let cases: [(&str, &str); 10] = [
        (
            "[[worker_dirs]]\nfiles = \"*\"\n",
            "worker_dirs[0]: path is required",
        ),
        (
            "[[worker_dirs]]\npath = \"nowhere\"\n",
            "nowhere: No such file or directory",
        ),
        (
            "[[worker_dirs]]\npath = \"a/resize.sh\"\n",
            "is not a directory",
        ),
        (
            "[[worker_dirs]]\npath = \"a\"\nfile = \"*.sh\"\n",
            "unknown key \"file\": a worker directory takes path, files, prefix, include, exclude",
        ),
        (
            "[[worker_dirs]]\npath = \"a\"\nname = \"x\"\n",
            "name is not for a directory: its jobs are named after their files",
        ),
        (
            "[[worker_dirs]]\npath = \"a\"\n[[worker_dirs]]\npath = \"b\"\n",
            "both give job \"resize\"; leave one out with exclude",
        ),
        (
            "[[jobs]]\nname = \"x\"\ncommand = [\"cat\", \"{file}\"]\n",
            "jobs[0] \"x\": {file} stands for the file of a job found in a worker directory; this job has none",
        ),
        (
            "[[jobs]]\nname = \"x\"\nworker = \"reverse\"\nwatch = true\n",
            "jobs[0] \"x\": watch applies to a command or a program",
        ),
        (
            "[[worker_dirs]]\npath = \"a\"\ngroup = \"g\"\nprogram = [\"sh\", \"{file}\"]\n\
             [[jobs]]\nname = \"mail\"\nprogram = [\"perl\", \"{file}\"]\n",
            "a group's processes run one program for all its jobs",
        ),
        (
            "[[worker_dirs]]\npath = \"a\"\ngroup = \"g\"\nprogram = [\"sh\", \"--file={file}\"]\n",
            "in group \"g\", {file} must be an argument of its own",
        ),
    ];
    for (text, wanted) in cases {
        let error = load(dir.path(), text).expect_err(text);
        assert!(
            error.contains(wanted),
            "{text}\n→ {error}\nwanted: {wanted}"
        );
    }
    // Errors in a discovered job name the file it came from.
    let error = load(
        dir.path(),
        "[[worker_dirs]]\npath = \"a\"\nmin_processes = 3\nmax_processes = 1\n",
    )
    .unwrap_err();
    assert!(
        error.contains("worker_dirs[0]")
            && error.contains("mail.sh")
            && error.contains("max_processes (1) must be >= min_processes (3)"),
        "{error}"
    );
}

async fn run(addr: &ServerAddr, function: &str, data: &str) -> JobOutcome {
    let client = Client::new(vec![addr.clone()], ClientOptions::default()).unwrap();
    common::outcome(&client, function, data).await
}

/// Lines of the host's log that say `job`'s processes are replaced for a code change.
fn replacements(host: &Host, job: &str) -> usize {
    host.log()
        .lines()
        .filter(|l| l.contains(&format!("[{job}] code changed; replacing its processes")))
        .count()
}

both_servers! {
    async fn a_watched_directory_follows_a_deploy(server) {
        let (dir, config) = config_dir(
            &[server.addr().to_string()],
            "interval = 0",
            "[[worker_dirs]]\npath = \"jobs\"\nfiles = \"*.sh\"\nwatch = true\nmin_processes = 1\n",
        );
        let jobs = dir.path().join("jobs");
        script(&jobs.join("version.sh"), "cat >/dev/null; printf v1");
        script(&jobs.join("slow.sh"), "cat >/dev/null; sleep 2; printf slow-v1");
        let host = Host::start_with(dir, config);
        let addr = server.addr();
        let version = host.wait_workers("version", 1, LIMIT)[0];
        let slow = host.wait_workers("slow", 1, LIMIT)[0];
        assert_eq!(run(&addr, "version", "x").await, common::complete("v1"));

        // A deploy: 200 files in a library every job uses, and both jobs' own files, while
        // `slow` is in the middle of a job.
        let busy = tokio::spawn({
            let addr = addr.clone();
            async move { run(&addr, "slow", "x").await }
        });
        assert!(
            poll_until(LIMIT, || common::host::children_of(slow).len() == 1),
            "slow never started its job"
        );
        for i in 0..200 {
            std::fs::create_dir_all(jobs.join("lib")).unwrap();
            std::fs::write(jobs.join(format!("lib/part{i}.sh")), format!("# {i}\n")).unwrap();
        }
        script(&jobs.join("version.sh"), "cat >/dev/null; printf v2");
        script(&jobs.join("slow.sh"), "cat >/dev/null; printf slow-v2");
        // The busy process finished its job: the new code waited for it.
        assert_eq!(busy.await.unwrap(), common::complete("slow-v1"));
        host.wait_log("[slow] code changed; replacing its processes", LIMIT);
        host.wait_log("[version] code changed; replacing its processes", LIMIT);
        assert!(
            poll_until(LIMIT, || {
                let now = host.workers("version");
                now.len() == 1 && now[0] != version && !common::host::alive(version)
            }),
            "version's process was not replaced: {:?}\n{}",
            host.workers("version"),
            host.log()
        );
        assert!(poll_until(LIMIT, || !common::host::alive(slow)), "slow's old process stayed");
        assert_eq!(run(&addr, "version", "x").await, common::complete("v2"));
        assert_eq!(run(&addr, "slow", "x").await, common::complete("slow-v2"));
        // Once each, however many files the deploy wrote; the log names a file that changed.
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!((replacements(&host, "version"), replacements(&host, "slow")), (1, 1), "{}", host.log());
        assert!(host.log().contains(&format!("changed={}", jobs.display())), "{}", host.log());

        // A file that comes is a job, one that goes is not, without a reload.
        script(&jobs.join("fresh.sh"), "cat >/dev/null; printf fresh");
        host.wait_workers("fresh", 1, LIMIT);
        assert_eq!(run(&addr, "fresh", "x").await, common::complete("fresh"));
        std::fs::remove_file(jobs.join("version.sh")).unwrap();
        host.wait_log("[version] removed from the config", LIMIT);
        host.wait_workers("version", 0, LIMIT);
        // Hidden files (an editor's) and files that do not match change nothing.
        std::fs::write(jobs.join(".slow.sh.swp"), "x").unwrap();
        std::fs::write(jobs.join("README"), "x").unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(replacements(&host, "slow"), 1, "{}", host.log());
    }
}

both_servers! {
    async fn a_watched_job_follows_the_files_its_command_names(server) {
        let (dir, config) = config_dir(&[server.addr().to_string()], "interval = 0", "");
        let code = dir.path().join("code");
        script(&code.join("greet.sh"), "cat >/dev/null; printf hello");
        std::fs::write(
            &config,
            common::host::config_text(
                dir.path(),
                &[server.addr().to_string()],
                "interval = 0",
                &format!(
                    "[[jobs]]\nname = \"greet\"\ncommand = [\"sh\", \"{}\"]\nwatch = true\n\
                     [[jobs]]\nname = \"plain\"\ncommand = [\"sh\", \"{}\"]\n",
                    code.join("greet.sh").display(),
                    code.join("greet.sh").display()
                ),
            ),
        )
        .unwrap();
        let host = Host::start_with(dir, config);
        let before = host.wait_workers("greet", 1, LIMIT)[0];
        let plain = host.wait_workers("plain", 1, LIMIT)[0];
        script(&code.join("greet.sh"), "cat >/dev/null; printf bonjour");
        host.wait_log("[greet] code changed; replacing its processes", LIMIT);
        assert!(poll_until(LIMIT, || !common::host::alive(before)));
        assert_eq!(run(&server.addr(), "greet", "x").await, common::complete("bonjour"));
        // The job that does not watch keeps its process.
        assert_eq!(host.workers("plain"), [plain]);
    }
}

both_servers! {
    async fn a_deploy_that_points_a_link_at_a_new_release_is_followed(server) {
        let (dir, config) = config_dir(
            &[server.addr().to_string()],
            "interval = 0",
            "[[worker_dirs]]\npath = \"current/jobs\"\nfiles = \"*.sh\"\nwatch = true\nmin_processes = 1\n",
        );
        let releases = dir.path().join("releases");
        script(&releases.join("r1/jobs/version.sh"), "cat >/dev/null; printf r1");
        script(&releases.join("r2/jobs/version.sh"), "cat >/dev/null; printf r2");
        script(&releases.join("r2/jobs/extra.sh"), "cat >/dev/null; printf extra");
        std::os::unix::fs::symlink("releases/r1", dir.path().join("current")).unwrap();
        let current = dir.path().join("current");
        let host = Host::start_with(dir, config);
        let addr = server.addr();
        let before = host.wait_workers("version", 1, LIMIT)[0];
        assert_eq!(run(&addr, "version", "x").await, common::complete("r1"));
        // Capistrano's switch: a new link renamed over the old one.
        let aside = current.with_extension("new");
        std::os::unix::fs::symlink("releases/r2", &aside).unwrap();
        std::fs::rename(&aside, &current).unwrap();
        host.wait_log("[version] code changed; replacing its processes", LIMIT);
        host.wait_workers("extra", 1, LIMIT);
        assert!(poll_until(LIMIT, || !common::host::alive(before)));
        assert_eq!(run(&addr, "version", "x").await, common::complete("r2"));
        assert_eq!(run(&addr, "extra", "x").await, common::complete("extra"));
        // The watches follow the link: a change in the new release is seen.
        script(&releases.join("r2/jobs/version.sh"), "cat >/dev/null; printf r2-fixed");
        assert!(
            poll_until(LIMIT, || replacements(&host, "version") == 2),
            "{}",
            host.log()
        );
        let fixed = poll_until(LIMIT, || {
            tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(run(&addr, "version", "x"))
            }) == common::complete("r2-fixed")
        });
        assert!(fixed, "{}", host.log());
    }
}

/// Runs a job on a blocking thread of the test's runtime (inside `poll_until`).
fn run_now(addr: &ServerAddr, function: &str) -> JobOutcome {
    tokio::task::block_in_place(|| {
        tokio::runtime::Handle::current().block_on(run(addr, function, "x"))
    })
}

// Found by a new user's trial: after a deploy renamed a new copy of the directory over the
// old one (or removed it and copied it back), its files were no longer watched; a `touch`
// or a `chmod -R` replaced every job; a deploy that added a file and edited another
// replaced a group twice.
both_servers! {
    async fn a_watched_directory_stays_watched_through_swaps_and_ignores_metadata(server) {
        let (dir, config) = config_dir(
            &[server.addr().to_string()],
            "interval = 0",
            "[[worker_dirs]]\npath = \"jobs\"\nfiles = \"*.sh\"\nwatch = true\ngroup = \"all\"\n\
             program = [\"sh\", \"-c\", \"exec sleep 1000\", \"{file}\"]\n\
             [[worker_dirs]]\npath = \"cmds\"\nfiles = \"*.sh\"\nwatch = true\nmin_processes = 1\n",
        );
        let root = dir.path().to_path_buf();
        script(&root.join("jobs/a.sh"), "");
        script(&root.join("cmds/say.sh"), "cat >/dev/null; printf one");
        let host = Host::start_with(dir, config);
        let addr = server.addr();
        host.wait_workers("all", 1, LIMIT);
        host.wait_workers("say", 1, LIMIT);

        // Metadata only: nothing is replaced.
        let chmod = std::process::Command::new("chmod").args(["-R", "a+rX"]).arg(&root).status().unwrap();
        assert!(chmod.success());
        let touched = std::process::Command::new("touch").arg(root.join("cmds/say.sh")).arg(root.join("jobs")).status().unwrap();
        assert!(touched.success());
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!((replacements(&host, "all"), replacements(&host, "say")), (0, 0), "{}", host.log());

        // One deploy adds a file to the group and edits another: the group is replaced once.
        let before = host.workers("all");
        script(&root.join("jobs/b.sh"), "");
        script(&root.join("jobs/a.sh"), "# edited");
        assert!(poll_until(LIMIT, || {
            let now = host.workers("all");
            now.len() == 1 && !before.contains(&now[0])
        }));
        tokio::time::sleep(Duration::from_secs(2)).await;
        let started = host.log().lines().filter(|l| l.contains("[all] Process started")).count();
        assert_eq!(started, 2, "the group was replaced more than once:\n{}", host.log());

        // A new copy renamed over the directory: served, and still watched afterwards.
        script(&root.join("cmds.new/say.sh"), "cat >/dev/null; printf two");
        std::fs::rename(root.join("cmds"), root.join("cmds.old")).unwrap();
        std::fs::rename(root.join("cmds.new"), root.join("cmds")).unwrap();
        assert!(poll_until(LIMIT, || run_now(&addr, "say") == common::complete("two")), "{}", host.log());
        let replaced = replacements(&host, "say");
        script(&root.join("cmds/say.sh"), "cat >/dev/null; printf three");
        assert!(poll_until(LIMIT, || replacements(&host, "say") > replaced), "the new copy is not watched:\n{}", host.log());
        assert!(poll_until(LIMIT, || run_now(&addr, "say") == common::complete("three")));
        // An edit of the old copy is no edit of the job.
        let replaced = replacements(&host, "say");
        script(&root.join("cmds.old/say.sh"), "cat >/dev/null; printf old");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(replacements(&host, "say"), replaced, "{}", host.log());

        // Removed and copied back: the running process stays meanwhile (found by a second
        // trial: it was replaced by ones that could not start), and it is watched again.
        let running = host.workers("say");
        let replaced = replacements(&host, "say");
        std::fs::remove_dir_all(root.join("cmds")).unwrap();
        host.wait_log("reload refused; keeping the old config", LIMIT);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!((host.workers("say"), replacements(&host, "say")), (running, replaced), "{}", host.log());
        script(&root.join("cmds/say.sh"), "cat >/dev/null; printf four");
        assert!(poll_until(LIMIT, || run_now(&addr, "say") == common::complete("four")), "{}", host.log());
        let replaced = replacements(&host, "say");
        script(&root.join("cmds/say.sh"), "cat >/dev/null; printf five");
        assert!(poll_until(LIMIT, || replacements(&host, "say") > replaced), "the copy is not watched:\n{}", host.log());
        assert!(poll_until(LIMIT, || run_now(&addr, "say") == common::complete("five")));
    }
}

// Found by the import helper: a `[[jobs]]` entry that only overrides a directory's job (as
// `import` writes for GearmanManager's per-function sections) became a job with nothing to
// run once its file was deleted, so the config was refused: a watched deploy that removed
// the file left the host on the old config, and check-config failed.
#[test]
fn an_override_whose_file_is_gone_is_left_out_with_a_note() {
    let dir = tempfile::tempdir().unwrap();
    script(&dir.path().join("jobs/kept.sh"), "cat");
    let config = load(
        dir.path(),
        "[[worker_dirs]]\npath = \"jobs\"\nfiles = \"*.sh\"\n\
         [[jobs]]\nname = \"gone\"\nmin_processes = 2\n\
         [[jobs]]\nname = \"kept\"\nmin_processes = 3\n\
         [[jobs]]\nname = \"x\"\nworker = \"nope\"\n",
    )
    .unwrap_err();
    // Entries after the left-out one keep their numbers in errors.
    assert!(
        config.contains("jobs[2] \"x\": worker = \"nope\" is not a registered plugin"),
        "{config}"
    );
    let config = load(
        dir.path(),
        "[[worker_dirs]]\npath = \"jobs\"\nfiles = \"*.sh\"\n\
         [[jobs]]\nname = \"gone\"\nmin_processes = 2\n\
         [[jobs]]\nname = \"kept\"\nmin_processes = 3\n",
    )
    .unwrap();
    let names: Vec<&str> = config.jobs.iter().map(|j| j.name.as_str()).collect();
    assert_eq!(names, ["kept"]);
    assert_eq!(config.job("kept").unwrap().limits.min_processes, 3);
    assert_eq!(
        config.notes,
        [
            "jobs[0] \"gone\": no worker directory has its file, and it names no worker, command or program: left out until the file is back"
        ]
    );
    // Without any worker directory, such an entry is the error it always was.
    let error = load(dir.path(), "[[jobs]]\nname = \"gone\"\n").unwrap_err();
    assert!(
        error.contains("jobs[0] \"gone\": needs one of worker, command or program"),
        "{error}"
    );
}

both_servers! {
    async fn a_watched_deploy_that_removes_an_overridden_file_stops_its_job(server) {
        let (dir, config) = config_dir(
            &[server.addr().to_string()],
            "interval = 0",
            "[[worker_dirs]]\npath = \"jobs\"\nfiles = \"*.sh\"\nwatch = true\n\
             [[jobs]]\nname = \"special\"\nmin_processes = 2\n",
        );
        let jobs = dir.path().join("jobs");
        script(&jobs.join("special.sh"), "cat >/dev/null; printf special");
        script(&jobs.join("plain.sh"), "cat >/dev/null; printf plain");
        let host = Host::start_with(dir, config);
        host.wait_workers("special", 2, LIMIT);
        host.wait_workers("plain", 1, LIMIT);
        std::fs::remove_file(jobs.join("special.sh")).unwrap();
        host.wait_log("[special] removed from the config", LIMIT);
        host.wait_log("jobs[0] \"special\": no worker directory has its file", LIMIT);
        host.wait_workers("special", 0, LIMIT);
        assert!(!host.log().contains("reload refused"), "{}", host.log());
        assert_eq!(run(&server.addr(), "plain", "x").await, common::complete("plain"));
        // Back again: served with its override.
        script(&jobs.join("special.sh"), "cat >/dev/null; printf back");
        host.wait_workers("special", 2, LIMIT);
        assert_eq!(run(&server.addr(), "special", "x").await, common::complete("back"));
    }
}
