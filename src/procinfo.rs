//! What `/proc` says about a process: its resident memory and CPU time, alone and with its
//! descendants.

/// What a process and its descendants use: resident bytes and CPU time so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub rss_bytes: u64,
    /// User and system time, its reaped children's included, in clock ticks
    /// ([`TICKS_PER_SECOND`]).
    pub cpu_ticks: u64,
}

/// The unit of /proc's CPU times (USER_HZ, 100 on every Linux).
pub const TICKS_PER_SECOND: u64 = 100;

/// [`Usage`] of `pid` alone (one read of `/proc/PID/stat`), or `None` when it is gone.
pub fn usage(pid: u32) -> Option<Usage> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    // Fields from 3 (state): utime is 14, stime 15, cutime 16 and cstime 17 (children it
    // has reaped: a command job's), rss (pages) 24.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
    Some(Usage {
        rss_bytes: field(24)? * page_size(),
        cpu_ticks: field(14)? + field(15)? + field(16)? + field(17)?,
    })
}

/// [`Usage`] of `pid` and every process descended from it, or `None` when `pid` is gone.
pub fn tree_usage(pid: u32) -> Option<Usage> {
    let mut total = usage(pid)?;
    let mut pending = children(pid);
    // Bounded: a fork bomb under a worker does not keep the host reading forever.
    let mut seen = 0;
    while let Some(child) = pending.pop() {
        seen += 1;
        if seen > 4096 {
            break;
        }
        if let Some(u) = usage(child) {
            total.rss_bytes += u.rss_bytes;
            total.cpu_ticks += u.cpu_ticks;
        }
        pending.extend(children(child));
    }
    Some(total)
}

fn page_size() -> u64 {
    static PAGE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *PAGE.get_or_init(|| {
        nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .and_then(|p| u64::try_from(p).ok())
            .unwrap_or(4096)
    })
}

/// `pid`'s children, from each of its threads' `children` file.
fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|text| {
            text.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_process_uses_memory_and_cpu() {
        let own = super::usage(std::process::id()).expect("own stat");
        assert!(own.rss_bytes > 100_000, "{own:?}");
        // VmRSS (kB) from status says the same, within what other threads allocate meanwhile.
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        let ratio = own.rss_bytes as f64 / (kib * 1024) as f64;
        assert!((0.5..2.0).contains(&ratio), "{own:?} vs {kib} kB");
        assert_eq!(super::usage(u32::MAX), None);
    }

    #[test]
    fn a_tree_counts_its_children() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let me = std::process::id();
        let child_rss = super::usage(child.id()).unwrap().rss_bytes;
        let tree = super::tree_usage(me).unwrap().rss_bytes;
        let listed = super::children(me).contains(&child.id());
        let _ = child.kill();
        let _ = child.wait();
        assert!(listed, "the child is found");
        // Other tests' threads allocate meanwhile: the tree is at least the child more.
        assert!(tree >= child_rss, "{tree} {child_rss}");
    }
}
