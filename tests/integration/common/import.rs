//! Running `geardriver import` and `geardriver check-config` on files a test writes, and
//! reading check-config's job table by column name.

use std::collections::BTreeMap;
use std::path::Path;

/// How a command ended: its exit code, stdout and stderr.
pub struct Ran {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

fn ran(out: std::process::Output) -> Ran {
    Ran {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `geardriver import gearman-manager INI ARGS…`, run in `cwd`.
pub fn import_gearman_manager(cwd: &Path, ini: &Path, args: &[&str]) -> Ran {
    ran(super::geardriver()
        .current_dir(cwd)
        .args(["import", "gearman-manager"])
        .arg(ini)
        .args(args)
        .output()
        .expect("run geardriver import"))
}

/// `geardriver check-config --config PATH`.
pub fn check_config(path: &Path) -> Ran {
    ran(super::geardriver()
        .args(["check-config", "--config"])
        .arg(path)
        .output()
        .expect("run geardriver check-config"))
}

/// check-config's job table: job name → column name → value (the last column, `worker`,
/// holds the rest of the row).
pub fn job_table(stdout: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut lines = stdout.lines().skip_while(|l| !l.starts_with("job "));
    let Some(header) = lines.next() else {
        return BTreeMap::new();
    };
    let columns: Vec<&str> = header.split_whitespace().collect();
    let mut table = BTreeMap::new();
    for line in lines.take_while(|l| !l.trim().is_empty()) {
        let mut row = BTreeMap::new();
        let mut rest = line;
        for (i, column) in columns.iter().enumerate() {
            rest = rest.trim_start();
            let value = match i + 1 == columns.len() {
                true => rest.to_string(),
                false => {
                    let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                    let value = rest[..end].to_string();
                    rest = &rest[end..];
                    value
                }
            };
            row.insert(column.to_string(), value);
        }
        table.insert(row["job"].clone(), row);
    }
    table
}

/// Writes `files` (paths relative to `dir`) as GearmanManager worker files, each defining
/// the function of its name.
pub fn worker_files(dir: &Path, files: &[&str]) {
    for file in files {
        let path = dir.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        std::fs::write(
            &path,
            format!("<?php\nfunction {name}($job, &$log) {{ return strrev($job->workload()); }}\n"),
        )
        .unwrap();
    }
}
