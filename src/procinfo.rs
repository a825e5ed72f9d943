//! What `/proc` says about a process: its resident memory and CPU time, alone and with its
//! descendants.

/// Bytes of `pid`'s memory in RAM (VmRSS), or `None` when it is gone or `/proc` cannot be read.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line["VmRSS:".len()..]
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// What a process and its descendants use: resident bytes and CPU time so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub rss_bytes: u64,
    /// User and system time, in clock ticks ([`TICKS_PER_SECOND`]).
    pub cpu_ticks: u64,
}

/// The unit of /proc's CPU times (USER_HZ, 100 on every Linux).
pub const TICKS_PER_SECOND: u64 = 100;

/// [`Usage`] of `pid` and every process descended from it, or `None` when `pid` is gone.
pub fn tree_usage(pid: u32) -> Option<Usage> {
    let mut usage = Usage {
        rss_bytes: rss_bytes(pid)?,
        cpu_ticks: cpu_ticks(pid).unwrap_or(0),
    };
    let mut pending = children(pid);
    let mut seen = 0;
    while let Some(child) = pending.pop() {
        seen += 1;
        if seen > 4096 {
            break;
        }
        usage.rss_bytes += rss_bytes(child).unwrap_or(0);
        usage.cpu_ticks += cpu_ticks(child).unwrap_or(0);
        pending.extend(children(child));
    }
    Some(usage)
}

/// User plus system CPU time of `pid`, in clock ticks.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace().skip(14 - 3);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(user + system)
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
    fn this_process_has_resident_memory() {
        let rss = super::rss_bytes(std::process::id()).expect("own status");
        assert!(rss > 100_000, "{rss}");
        assert_eq!(super::rss_bytes(u32::MAX), None);
    }

    #[test]
    fn a_tree_counts_its_children() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let me = std::process::id();
        let alone = super::rss_bytes(me).unwrap();
        let child_rss = super::rss_bytes(child.id()).unwrap();
        let tree = super::tree_usage(me).unwrap().rss_bytes;
        let listed = super::children(me).contains(&child.id());
        let _ = child.kill();
        let _ = child.wait();
        assert!(listed, "the child is found");
        assert!(super::cpu_ticks(me).is_some());
        // Other tests' threads allocate meanwhile: the tree is at least the child more.
        assert!(tree >= child_rss, "{tree} {alone} {child_rss}");
    }
}
