//! A `geardriver run` child process for tests: its config and log file live in a temp dir; its worker processes are found through /proc.

use super::{geardriver, poll_until};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::Duration;

pub struct Host {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub log: PathBuf,
}

/// Config text for a host: `[driver]` settings (job servers, a log file in the test's
/// directory, console and HTTP off unless given) followed by `jobs`.
pub fn config_text(dir: &Path, servers: &[String], driver_extra: &str, rest: &str) -> String {
    let servers: Vec<String> = servers.iter().map(|s| format!("\"{s}\"")).collect();
    format!(
        "[driver]\njob_servers = [{}]\nlogfile = \"{}\"\nloglevel = \"debug\"\n{}{driver_extra}\n{}{}{rest}",
        servers.join(", "),
        dir.join("host.log").display(),
        if driver_extra.contains("shutdown_timeout") {
            ""
        } else {
            "shutdown_timeout = 10\n"
        },
        if rest.contains("[console]") {
            ""
        } else {
            "[console]\nlisten = \"\"\n"
        },
        if rest.contains("[http]") {
            ""
        } else {
            "[http]\nlisten = \"\"\n"
        },
    )
}

/// A temp dir holding `config.toml` made by [`config_text`]; the dir and the file's path.
pub fn config_dir(
    servers: &[String],
    driver_extra: &str,
    rest: &str,
) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        config_text(dir.path(), servers, driver_extra, rest),
    )
    .unwrap();
    (dir, config)
}

impl Host {
    /// Starts a host with the given config body (see [`config_text`]).
    pub fn start(servers: &[String], driver_extra: &str, rest: &str) -> Host {
        let (dir, config) = config_dir(servers, driver_extra, rest);
        Self::start_with(dir, config)
    }

    pub fn start_with(dir: tempfile::TempDir, config: PathBuf) -> Host {
        Self::start_with_env(dir, config, &[])
    }

    /// [`Host::start_with`], the host's environment extended with `env`.
    pub fn start_with_env(dir: tempfile::TempDir, config: PathBuf, env: &[(&str, &str)]) -> Host {
        let log = dir.path().join("host.log");
        let child = geardriver()
            .envs(env.iter().copied())
            .arg("run")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("host.stderr")).unwrap())
            .spawn()
            .expect("start geardriver run");
        Host {
            child,
            dir,
            config,
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Once this host has exited (signal it first), starts a new one on the same directory,
    /// config and files.
    pub fn start_again(mut self) -> Host {
        let _ = self.child.wait();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir"));
        let config = self.config.clone();
        drop(self);
        Host::start_with(dir, config)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("host.stderr")).unwrap_or_default()
    }

    /// Live worker processes of `pool`, sorted by pid.
    pub fn workers(&self, pool: &str) -> Vec<u32> {
        children_of(self.pid())
            .into_iter()
            .filter(|&pid| pool_of(pid).as_deref() == Some(pool))
            .collect()
    }

    /// Every live child of the host.
    pub fn all_workers(&self) -> Vec<u32> {
        children_of(self.pid())
    }

    /// Waits (bounded) until `pool` has exactly `n` live workers; returns them.
    pub fn wait_workers(&self, pool: &str, n: usize, limit: Duration) -> Vec<u32> {
        let mut last = Vec::new();
        let ok = poll_until(limit, || {
            last = self.workers(pool);
            last.len() == n
        });
        assert!(
            ok,
            "pool {pool}: wanted {n} workers, have {last:?}\n--- log ---\n{}\n--- stderr ---\n{}",
            self.log(),
            self.stderr()
        );
        last
    }

    /// Waits (bounded) until something listens on 127.0.0.1:`port` (its console, its HTTP
    /// endpoint, its built-in job server).
    pub fn wait_listening(&self, port: u16, limit: Duration) {
        let up = poll_until(limit, || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(up, "port {port} up\n{}\n{}", self.log(), self.stderr());
    }

    /// Waits (bounded) until the log contains `needle`.
    pub fn wait_log(&self, needle: &str, limit: Duration) {
        let ok = poll_until(limit, || self.log().contains(needle));
        assert!(
            ok,
            "log never contained {needle:?}\n--- log ---\n{}",
            self.log()
        );
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid() as i32), signal).unwrap();
    }

    /// Waits (bounded) for the host to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let mut status = None;
        poll_until(limit, || {
            status = self.child.try_wait().unwrap();
            status.is_some()
        });
        status.unwrap_or_else(|| panic!("host did not exit within {limit:?}\n{}", self.log()))
    }

    /// Rewrites the config file.
    pub fn rewrite_config(&self, servers: &[String], driver_extra: &str, rest: &str) {
        std::fs::write(
            &self.config,
            config_text(self.dir.path(), servers, driver_extra, rest),
        )
        .unwrap();
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let workers = children_of(self.pid());
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Each worker leads a group: a program's keeper, the program and its helpers go
        // together (a keeper killed alone would leave its program behind).
        for pid in workers {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// The fields of /proc/PID/stat after the command name: state, ppid, ….
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &text[text.rfind(')')? + 2..];
    Some(after.split_whitespace().map(str::to_string).collect())
}

/// Whether a process exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    stat_fields(pid).is_some_and(|f| !is_zombie(&f))
}

/// The process state letter (R, S, Z …).
pub fn state(pid: u32) -> Option<String> {
    stat_fields(pid).map(|f| f[0].clone())
}

/// Every process, with its /proc stat fields after the command name.
fn processes() -> impl Iterator<Item = (u32, Vec<String>)> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| Some((pid, stat_fields(pid)?)))
}

fn is_zombie(fields: &[String]) -> bool {
    fields[0] == "Z" || fields[0] == "X"
}

/// Live (not zombie) children of `parent`.
pub fn children_of(parent: u32) -> Vec<u32> {
    let mut pids: Vec<u32> = processes()
        .filter(|(_, f)| f[1].parse::<u32>().ok() == Some(parent) && !is_zombie(f))
        .map(|(pid, _)| pid)
        .collect();
    pids.sort_unstable();
    pids
}

/// Zombie children of `parent`.
pub fn zombies_of(parent: u32) -> Vec<u32> {
    processes()
        .filter(|(_, f)| f[1].parse::<u32>().ok() == Some(parent) && f[0] == "Z")
        .map(|(pid, _)| pid)
        .collect()
}

/// The pool a worker process serves: `--pool NAME` in its command line, or the job name a
/// program was launched for.
pub fn pool_of(pid: u32) -> Option<String> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<String> = cmdline
        .split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    if let Some(i) = args.iter().position(|a| a == "--pool") {
        return args.get(i + 1).cloned();
    }
    // Retitled: `geardriver: POOL [state …]`.
    if let Some(title) = args.first().and_then(|a| a.strip_prefix("geardriver: ")) {
        if let Some((pool, _)) = title.split_once(" [") {
            return Some(pool.to_string());
        }
    }
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    environ
        .split(|&b| b == 0)
        .filter_map(|kv| std::str::from_utf8(kv).ok())
        .find_map(|kv| kv.strip_prefix("GEARDRIVER_JOB=").map(str::to_string))
}

/// CPU time (user + system, in clock ticks) a process has used.
pub fn cpu_ticks(pid: u32) -> u64 {
    stat_fields(pid)
        .map(|f| f[11].parse::<u64>().unwrap_or(0) + f[12].parse::<u64>().unwrap_or(0))
        .unwrap_or(0)
}

/// The process groups of `pids` (each worker process leads its own).
pub fn groups_of(pids: &[u32]) -> Vec<u32> {
    pids.iter()
        .filter_map(|&pid| stat_fields(pid)?.get(2)?.parse().ok())
        .collect()
}

/// Live processes in any of `groups`: what a worker process started, and it.
pub fn members_of(groups: &[u32]) -> Vec<u32> {
    processes()
        .filter(|(_, f)| !is_zombie(f) && f[2].parse().is_ok_and(|g: u32| groups.contains(&g)))
        .map(|(pid, _)| pid)
        .collect()
}
