//! Issue 14, item 4: a fleet that survives a lost job server. Two hosts and two job servers
//! (gearmand, and the built-in server with its persistent queue), each in a network namespace
//! of its own, joined by veth pairs to a bridge, on addresses that exist only inside those
//! namespaces; clients in one more. Mid-run the built-in server's link is cut, then its process
//! is SIGKILLed and started again on its queue file. Every background job submitted to either
//! server runs (those of the lost server after its restart), and every foreground job either
//! completes or fails back to its client: none hangs.

use crate::common::{self, poll_until};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The namespaces of one test run, removed when dropped (with whatever runs in them).
struct Net {
    prefix: String,
    names: Vec<String>,
    children: Vec<Child>,
}

const SUBNET: &str = "10.77.0";

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Net {
    /// A bridge in a namespace of its own, and one namespace per member, each with a veth
    /// pair to the bridge and the address `10.77.0.N` (N = its position, from 1).
    fn build(members: &[&str]) -> Result<Net, String> {
        let prefix = format!("gd{}", std::process::id() % 100_000);
        let mut net = Net {
            prefix: prefix.clone(),
            names: Vec::new(),
            children: Vec::new(),
        };
        let hub = net.add_ns("hub")?;
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &hub, "link", "set", "br0", "up"])?;
        for (i, member) in members.iter().enumerate() {
            let ns = net.add_ns(member)?;
            let (inside, outside) = (format!("{prefix}i{i}"), format!("{prefix}o{i}"));
            ip(&[
                "link", "add", &inside, "type", "veth", "peer", "name", &outside,
            ])?;
            ip(&["link", "set", &inside, "netns", &ns])?;
            ip(&["link", "set", &outside, "netns", &hub])?;
            ip(&["-n", &hub, "link", "set", &outside, "master", "br0"])?;
            ip(&["-n", &hub, "link", "set", &outside, "up"])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{SUBNET}.{}/24", i + 1),
                "dev",
                &inside,
            ])?;
            ip(&["-n", &ns, "link", "set", &inside, "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(net)
    }

    fn add_ns(&mut self, name: &str) -> Result<String, String> {
        let ns = format!("{}{name}", self.prefix);
        ip(&["netns", "add", &ns])?;
        self.names.push(ns.clone());
        Ok(ns)
    }

    fn ns(&self, member: &str) -> String {
        format!("{}{member}", self.prefix)
    }

    /// The member's link to the bridge, up or down (as a cable pulled out).
    fn link(&self, member_index: usize, up: bool) {
        let outside = format!("{}o{member_index}", self.prefix);
        ip(&[
            "-n",
            &self.ns("hub"),
            "link",
            "set",
            &outside,
            if up { "up" } else { "down" },
        ])
        .unwrap();
    }

    /// A command run inside a member's namespace.
    fn command(&self, member: &str, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(member), program]);
        c
    }

    /// Starts a long-running process in a member's namespace; killed when the net goes.
    fn spawn(&mut self, mut command: Command) -> usize {
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.children.push(child);
        self.children.len() - 1
    }

    fn kill(&mut self, index: usize) {
        let _ = self.children[index].kill();
        let _ = self.children[index].wait();
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in self.names.iter().rev() {
            // Whatever still runs inside (a host's workers) goes with it.
            let _ = Command::new("ip")
                .args(["netns", "pids", ns])
                .output()
                .map(|o| {
                    for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                        let _ = Command::new("kill").args(["-9", pid]).status();
                    }
                });
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

/// Lines of the records file: one per job run.
fn records(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn counts(lines: &[String]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for line in lines {
        *counts.entry(line.clone()).or_default() += 1;
    }
    counts
}

/// `status` total of `function` on a server, asked from inside the clients' namespace.
fn total(net: &Net, server: &str, function: &str) -> Option<u64> {
    let out = net
        .command("client", env!("CARGO_BIN_EXE_geardriver"))
        .args(["admin", "--server", server, "status"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    Some(
        text.lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                (f.first() == Some(&function)).then(|| f.get(1)?.parse().ok())?
            })
            .unwrap_or(0),
    )
}

fn host_config(dir: &Path, name: &str, servers: &[String], records: &Path) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    let servers: Vec<String> = servers.iter().map(|s| format!("\"{s}\"")).collect();
    std::fs::write(
        &path,
        format!(
            "[driver]\njob_servers = [{}]\nlogfile = \"{}\"\nloglevel = \"debug\"\ninterval = 0\nshutdown_timeout = 2\n\
             [console]\nlisten = \"\"\n[server]\nenabled = false\n\
             [[jobs]]\nname = \"record\"\nmin_processes = 2\nmax_processes = 2\n\
             command = [\"sh\", \"-c\", \"read -r job; sleep 0.05; echo \\\"$job\\\" >> {}\"]\n",
            servers.join(", "),
            dir.join(format!("{name}.log")).display(),
            records.display()
        ),
    )
    .unwrap();
    path
}

#[test]
fn the_fleet_survives_a_job_server_cut_off_and_restarted() {
    let Some(gearmand) = common::gearmand_binary() else {
        assert!(!common::gearmand_required(), "gearmand is required in CI");
        common::notice("gearmand not found; skipping the fleet test");
        return;
    };
    let Some(gearman) = common::gearman_cli() else {
        return;
    };
    // Members, in address order: 10.77.0.1 gearmand, .2 the built-in server, .3 and .4 the
    // hosts, .5 the clients.
    let mut net = match Net::build(&["gearmand", "builtin", "host1", "host2", "client"]) {
        Ok(net) => net,
        Err(e) => {
            assert!(
                !common::gearmand_required(),
                "CI must be able to make network namespaces (root, iproute2): {e}"
            );
            common::notice(&format!(
                "cannot make network namespaces here ({e}); skipping the fleet test"
            ));
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let (s1, s2) = (format!("{SUBNET}.1:4730"), format!("{SUBNET}.2:4730"));
    let queue = dir.path().join("queue.sqlite");
    let records_path = dir.path().join("records");

    let mut g = net.command("gearmand", gearmand.to_str().unwrap());
    g.args([
        &format!("--listen={SUBNET}.1"),
        "--port=4730",
        "--log-file=none",
        "--job-retries=0",
        "--threads=2",
    ])
    .arg(format!("--pid-file={}", dir.path().join("g.pid").display()));
    net.spawn(g);
    let builtin_server = |net: &Net| {
        let mut c = net.command("builtin", env!("CARGO_BIN_EXE_geardriver"));
        c.args(["server", "--listen", &s2, "--queue"])
            .arg(&queue)
            .env("GEARDRIVER_LOG", "warn");
        c
    };
    let builtin = net.spawn(builtin_server(&net));
    for name in ["host1", "host2"] {
        let config = host_config(dir.path(), name, &[s1.clone(), s2.clone()], &records_path);
        let mut host = net.command(name, env!("CARGO_BIN_EXE_geardriver"));
        host.args(["run", "--config"]).arg(config);
        net.spawn(host);
    }
    // Four processes (two per host) registered on each server.
    let workers = |server: &str| -> usize {
        net.command("client", env!("CARGO_BIN_EXE_geardriver"))
            .args(["admin", "--server", server, "status"])
            .output()
            .ok()
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout).lines().find_map(|l| {
                    let f: Vec<&str> = l.split('\t').collect();
                    (f.first() == Some(&"record")).then(|| f.get(3)?.parse().ok())?
                })
            })
            .unwrap_or(0)
    };
    assert!(
        poll_until(Duration::from_secs(30), || workers(&s1) == 4
            && workers(&s2) == 4),
        "the hosts' workers registered on both servers: {} and {}\n{}",
        workers(&s1),
        workers(&s2),
        std::fs::read_to_string(dir.path().join("host1.log")).unwrap_or_default()
    );

    // Background jobs to each server, and foreground ones from our client, in flight
    // together: 4 processes × 50 ms a job take a few seconds for all of them.
    let mut background = Vec::new();
    for (server, name) in [(&s1, "g"), (&s2, "b")] {
        let jobs: Vec<String> = (0..150).map(|i| format!("bg-{name}-{i}")).collect();
        let (host, port) = server.split_once(':').unwrap();
        let mut cli = net.command("client", gearman.get_program().to_str().unwrap());
        let mut child = cli
            .args(["-b", "-N", "-h", host, "-p", port, "-f", "record"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all((jobs.join("\n") + "\n").as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        background.extend(jobs);
    }
    let foreground: Vec<(String, String, Child)> = [(&s1, "g"), (&s2, "b")]
        .iter()
        .flat_map(|(server, name)| {
            (0..5).map(move |i| (server.to_string(), format!("fg-{name}-{i}")))
        })
        .map(|(server, payload)| {
            let child = net
                .command("client", env!("CARGO_BIN_EXE_geardriver"))
                .args(["submit", "--server", &server, "record", &payload])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            (server, payload, child)
        })
        .collect();

    // Mid-run: the built-in server's cable is pulled, then its process dies, and it comes
    // back on its queue file.
    std::thread::sleep(Duration::from_millis(800));
    let done_before_cut = records(&records_path).len();
    net.link(1, false);
    std::thread::sleep(Duration::from_secs(3));
    net.kill(builtin);
    net.link(1, true);
    net.spawn(builtin_server(&net));

    // Every foreground client ends: completed, or failed back with a reason. None hangs.
    let started = Instant::now();
    let mut outcomes: Vec<(String, String, Output)> = Vec::new();
    for (server, payload, mut child) in foreground {
        let ended = poll_until(
            Duration::from_secs(90).saturating_sub(started.elapsed()),
            || child.try_wait().ok().flatten().is_some(),
        );
        if !ended {
            let _ = child.kill();
        }
        let out = child.wait_with_output().unwrap();
        assert!(ended, "the client of {payload} (on {server}) hung");
        outcomes.push((server, payload, out));
    }
    for (server, payload, out) in &outcomes {
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            continue;
        }
        assert!(
            *server == s2 && !stderr.trim().is_empty(),
            "{payload} on {server} failed without a reason, or on the server that stayed: {stderr}"
        );
    }
    // Every background job runs: gearmand's once, the lost server's at least once (those
    // running at the cut may run again after the restart).
    let all_ran = poll_until(Duration::from_secs(90), || {
        let seen = counts(&records(&records_path));
        background.iter().all(|j| seen.contains_key(j))
    });
    let seen = counts(&records(&records_path));
    let missing: Vec<&String> = background
        .iter()
        .filter(|j| !seen.contains_key(*j))
        .collect();
    assert!(
        all_ran,
        "{} background jobs never ran (done before the cut: {done_before_cut}): {:?}…\n--- host1 ---\n{}",
        missing.len(),
        &missing[..missing.len().min(5)],
        std::fs::read_to_string(dir.path().join("host1.log")).unwrap_or_default()
    );
    let twice_on_gearmand: Vec<_> = seen
        .iter()
        .filter(|(j, n)| j.starts_with("bg-g-") && **n > 1)
        .collect();
    assert!(twice_on_gearmand.is_empty(), "{twice_on_gearmand:?}");
    // Nothing is left queued on either server.
    assert!(poll_until(Duration::from_secs(30), || {
        total(&net, &s1, "record") == Some(0) && total(&net, &s2, "record") == Some(0)
    }));
    common::notice(&format!(
        "fleet: {} foreground failed back on the lost server, {} background jobs ran again after its restart",
        outcomes
            .iter()
            .filter(|(_, _, o)| !o.status.success())
            .count(),
        seen.iter()
            .filter(|(j, n)| j.starts_with("bg-b-") && **n > 1)
            .count()
    ));
}
