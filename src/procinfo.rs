//! What `/proc` says about a process: its resident memory.

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

#[cfg(test)]
mod tests {
    #[test]
    fn this_process_has_resident_memory() {
        let rss = super::rss_bytes(std::process::id()).expect("own status");
        assert!(rss > 100_000, "{rss}");
        assert_eq!(super::rss_bytes(u32::MAX), None);
    }
}
