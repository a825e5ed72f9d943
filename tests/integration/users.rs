//! Workers as another user (issue 18, item 5): `user = "NAME[:GROUP]"` per job and as the
//! host's default. Each worker process (plugin, command, a program and its keeper) runs as
//! that user with no supplementary groups, the stats table still records its jobs, and a
//! user that does not exist, or a host that is not root, is refused with a clear error.

use crate::common;

use common::console::Console;
use common::host::{Host, config_dir, config_text};
use common::{free_port, poll_until};
use geardriver::gearman::{Client, ClientOptions};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(15);
const NEVER: &str = "1970-01-01T00:00:00";

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// `Uid:`, `Gid:` (real ids) and `Groups:` of a process, from /proc.
fn ids(pid: u32) -> (u32, u32, String) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    let first = |v: String| v.split_whitespace().next().unwrap().parse().unwrap();
    (first(field("Uid:")), first(field("Gid:")), field("Groups:"))
}

/// An account's uid and primary gid.
fn account(name: &str) -> (u32, u32) {
    let user = nix::unistd::User::from_name(name).unwrap().unwrap();
    (user.uid.as_raw(), user.gid.as_raw())
}

both_servers! {
    async fn workers_run_as_the_user_they_are_given(server) {
        if !is_root() {
            if common::gearmand_required() {
                panic!("CI runs as root, to test workers as another user");
            }
            common::notice("not root: workers as another user cannot be tested here");
            return;
        }
        let nobody = account("nobody");
        let daemon = account("daemon");
        let nogroup = nix::unistd::Group::from_name("nogroup").unwrap().unwrap().gid.as_raw();
        let port = free_port();
        let host = Host::start(
            &[server.addr().to_string()],
            "interval = 0\nuser = \"nobody\"",
            &format!(
                "[console]\nlisten = \"127.0.0.1:{port}\"\n\
                 [[jobs]]\nname = \"whoami\"\ncommand = [\"sh\", \"-c\", \"cat >/dev/null; id -u; id -G; printf %s $HOME\"]\n\
                 [[jobs]]\nname = \"reverse\"\nworker = \"reverse\"\nuser = \"daemon:nogroup\"\n\
                 [[jobs]]\nname = \"napper\"\nprogram = [\"sleep\", \"1000\"]\n\
                 [[jobs]]\nname = \"mine\"\nworker = \"reverse\"\nuser = \"\"\n"
            ),
        );
        let whoami = host.wait_workers("whoami", 1, LIMIT)[0];
        let reverse = host.wait_workers("reverse", 1, LIMIT)[0];
        let keeper = host.wait_workers("napper", 1, LIMIT)[0];
        let mine = host.wait_workers("mine", 1, LIMIT)[0];
        assert!(poll_until(LIMIT, || common::host::children_of(keeper).len() == 1));
        let program = common::host::children_of(keeper)[0];
        // The host's default, a job's own user and group, the keeper and its program; no
        // supplementary groups anywhere; `user = ""` keeps the host's account.
        assert_eq!(ids(whoami), (nobody.0, nobody.1, String::new()));
        assert_eq!(ids(reverse), (daemon.0, nogroup, String::new()));
        assert_eq!(ids(keeper), (nobody.0, nobody.1, String::new()));
        assert_eq!(ids(program), (nobody.0, nobody.1, String::new()));
        assert_eq!((ids(mine).0, ids(mine).1), (0, 0));

        // Jobs from a foreign client: what runs them is that user (and its HOME).
        let client = Client::new(vec![server.addr()], ClientOptions::default()).unwrap();
        let home = nix::unistd::User::from_name("nobody").unwrap().unwrap().dir;
        assert_eq!(
            common::outcome(&client, "whoami", "x").await,
            common::complete(&format!("{}\n{}\n{}", nobody.0, nobody.1, home.display()))
        );
        assert_eq!(common::outcome(&client, "reverse", "abc").await, common::complete("cba"));
        // The stats table still records what they did.
        let mut console = Console::connect(port);
        let lines = console.lines("status");
        for job in ["reverse", "whoami"] {
            let line = lines.iter().find(|l| l.starts_with(job)).unwrap();
            let lastrun = line.split("  ").map(str::trim).filter(|c| !c.is_empty()).nth(4);
            assert!(lastrun.is_some_and(|t| t != NEVER), "{job}'s lastrun: {lines:?}");
        }
        let scoreboard = console.lines("scoreboard");
        assert!(scoreboard.iter().any(|l| l.contains(&reverse.to_string())), "{scoreboard:?}");
    }
}

#[test]
fn a_user_that_cannot_be_had_is_refused() {
    let (dir, config) = config_dir(
        &["127.0.0.1:4730".into()],
        "",
        "[[jobs]]\nname = \"r\"\nworker = \"reverse\"\nuser = \"no-such-user-here\"\n",
    );
    let out = common::import::check_config(&config);
    let stderr = &out.stderr;
    assert_ne!(out.code, Some(0));
    assert!(
        stderr.contains("jobs[0] \"r\": user = \"no-such-user-here\": there is no user \"no-such-user-here\" here"),
        "{stderr}"
    );
    std::fs::write(
        &config,
        config_text(
            dir.path(),
            &["127.0.0.1:4730".into()],
            "user = \"nobody:no-such-group\"",
            "",
        ),
    )
    .unwrap();
    let out = common::import::check_config(&config);
    assert!(
        out.stderr.contains(
            "driver: user = \"nobody:no-such-group\": there is no group \"no-such-group\" here"
        ),
        "{}",
        out.stderr
    );
    // A group's processes run as one user.
    if is_root() {
        std::fs::write(
            &config,
            config_text(
                dir.path(),
                &["127.0.0.1:4730".into()],
                "",
                "[[jobs]]\nname = \"a\"\nworker = \"reverse\"\ngroup = \"g\"\n\
                 [[jobs]]\nname = \"b\"\nworker = \"echo\"\ngroup = \"g\"\nuser = \"nobody\"\n",
            ),
        )
        .unwrap();
        let out = common::import::check_config(&config);
        let stderr = &out.stderr;
        assert!(
            stderr.contains("jobs[1] \"b\": runs as user \"nobody\", job \"a\" as the host's user; jobs in group \"g\" share processes, so they run as one user"),
            "{stderr}"
        );
    }
    // A host that is not root cannot switch users: check-config (and a start) refuse it.
    if !is_root() {
        common::notice("not root: the non-root refusal is tested as this user, not as nobody");
    }
    let me = nix::unistd::Uid::effective().as_raw();
    let other = if me == 0 { "daemon" } else { "root" };
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(
        &config,
        config_text(
            dir.path(),
            &["127.0.0.1:4730".into()],
            "",
            &format!("[[jobs]]\nname = \"r\"\nworker = \"reverse\"\nuser = \"{other}\"\n"),
        ),
    )
    .unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut check = common::geardriver();
    check.args(["check-config", "--config"]).arg(&config);
    if me == 0 {
        check.uid(account("nobody").0).gid(account("nobody").1);
    }
    let out = check.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "{stderr}{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        stderr.contains(&format!("user = \"{other}\": the host runs as uid "))
            && stderr.contains("not root, so it cannot start workers as another user"),
        "{stderr}"
    );
}
