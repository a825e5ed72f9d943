//! Worker directories (GearmanManager's `worker_dir`, Gearman::Driver's `namespaces`): each
//! file of a `[[worker_dirs]]` entry whose name matches becomes a job entry, named after the
//! file, with the directory's settings. A `[[jobs]]` entry of the same name overrides the
//! settings it gives and inherits the rest (the file and what runs it included).
//!
//! Discovery happens at every load, so a reload picks up files added or removed.

use super::{RawConfig, RawJob, WorkerDir};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A `[[worker_dirs]]` entry as written: where, which files, how to name them, and the job
/// settings every one of them gets.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawWorkerDir {
    path: Option<String>,
    files: Option<String>,
    prefix: Option<String>,
    include: Option<Vec<String>>,
    exclude: Option<Vec<String>>,
    #[serde(flatten)]
    settings: RawJob,
    /// What neither takes: a misspelt key (`deny_unknown_fields` does not work through
    /// `flatten`).
    #[serde(flatten)]
    unknown: BTreeMap<String, serde::de::IgnoredAny>,
}

/// The keys of a `[[worker_dirs]]` entry beyond a job's settings.
const DIR_KEYS: [&str; 5] = ["path", "files", "prefix", "include", "exclude"];

/// Finds the jobs of every worker directory and adds them to `raw.jobs` (or merges them
/// into the `[[jobs]]` entry of the same name). Returns the directories, resolved.
/// Also returns notes on what was left out: files whose names are not UTF-8, and
/// `[[jobs]]` entries that only override a directory's job whose file is gone (so that a
/// watched deploy that removes a file is not refused as a config error).
pub(super) fn discover(
    raw: &mut RawConfig,
    config_path: &Path,
) -> Result<(Vec<WorkerDir>, Vec<String>), String> {
    let entries = raw.worker_dirs.take().unwrap_or_default();
    let jobs = raw.jobs.get_or_insert_with(Vec::new);
    let written = jobs.len();
    for (i, job) in jobs.iter_mut().enumerate() {
        job.index = Some(i);
    }
    let mut notes = Vec::new();
    let any_dirs = !entries.is_empty();
    // Job name → the file that gave it, to name both when two files give one name.
    let mut found: BTreeMap<String, (usize, PathBuf)> = BTreeMap::new();
    let mut dirs = Vec::with_capacity(entries.len());
    for (index, entry) in entries.into_iter().enumerate() {
        let at = format!("worker_dirs[{index}]");
        let dir = resolve(&at, entry.path.as_deref(), config_path)?;
        let at = format!("{at} {:?}", dir.display().to_string());
        if let Some(key) = entry.unknown.keys().next() {
            return Err(format!(
                "{at}: unknown key {key:?}: a worker directory takes {} and the settings of a [[jobs]] entry",
                DIR_KEYS.join(", ")
            ));
        }
        if entry.settings.name.is_some() {
            return Err(format!(
                "{at}: name is not for a directory: its jobs are named after their files"
            ));
        }
        let pattern = entry.files.clone().unwrap_or_else(|| "*".into());
        if pattern.is_empty() || pattern.contains('/') {
            return Err(format!(
                "{at}: files = {pattern:?} must be a pattern for file names, such as \"*.php\""
            ));
        }
        let prefix = entry.prefix.clone().unwrap_or_default();
        let include = entry.include.clone().unwrap_or_default();
        let exclude = entry.exclude.clone().unwrap_or_default();
        let mut names = Vec::new();
        for (stem, file) in files(&at, &dir, &pattern, &mut notes)? {
            let taken = include.is_empty() || include.iter().any(|p| glob(p, &stem));
            if !taken || exclude.iter().any(|p| glob(p, &stem)) {
                continue;
            }
            let name = format!("{prefix}{stem}");
            if let Some((other, first)) = found.get(&name) {
                return Err(format!(
                    "{at}: {} and {} (worker_dirs[{other}]) both give job {name:?}; \
                     leave one out with exclude",
                    file.display(),
                    first.display()
                ));
            }
            found.insert(name.clone(), (index, file.clone()));
            let mut job = entry.settings.clone();
            if job.worker.is_none() && job.command.is_none() && job.program.is_none() {
                // The file is the program: an executable run once per job.
                job.command = Some(vec![super::FILE_PLACEHOLDER.into()]);
            }
            job.name = Some(name.clone());
            job.file = Some(file.clone());
            match jobs[..written]
                .iter_mut()
                .find(|j| j.name.as_deref().map(str::trim) == Some(name.as_str()))
            {
                Some(written) => *written = overridden(written.clone(), job),
                None => {
                    job.origin = Some(format!("{at} file {:?}", file.display().to_string()));
                    jobs.push(job);
                }
            }
            names.push(name);
        }
        names.sort();
        dirs.push(WorkerDir {
            path: dir,
            files: pattern,
            watch: entry.settings.watch.unwrap_or(false),
            jobs: names,
        });
    }
    if any_dirs {
        let mut index = 0;
        jobs.retain(|job| {
            let keep = index >= written
                || job.worker.is_some()
                || job.command.is_some()
                || job.program.is_some()
                || job
                    .name
                    .as_deref()
                    .is_none_or(|n| found.contains_key(n.trim()));
            if !keep {
                notes.push(format!(
                    "jobs[{index}] {:?}: no worker directory has its file, and it names no worker, command or program: left out until the file is back",
                    job.name.as_deref().unwrap_or_default()
                ));
            }
            index += 1;
            keep
        });
    }
    Ok((dirs, notes))
}

/// The directory, absolute (relative to the config's).
fn resolve(at: &str, path: Option<&str>, config_path: &Path) -> Result<PathBuf, String> {
    let path = match path.map(str::trim) {
        None | Some("") => return Err(format!("{at}: path is required: the directory")),
        Some(p) => PathBuf::from(p),
    };
    let path = match (path.is_relative(), config_path.parent()) {
        (true, Some(dir)) => dir.join(path),
        _ => path,
    };
    let path = std::path::absolute(&path).unwrap_or(path);
    match std::fs::metadata(&path) {
        Ok(m) if m.is_dir() => Ok(path),
        Ok(_) => Err(format!("{at}: {} is not a directory", path.display())),
        Err(e) => Err(format!("{at}: {}: {e}", path.display())),
    }
}

/// The files of `dir` whose names match `pattern`, as (name without its extension, path),
/// sorted. Hidden files, directories and names that are not UTF-8 are never jobs (the last
/// with a note).
fn files(
    at: &str,
    dir: &Path,
    pattern: &str,
    notes: &mut Vec<String>,
) -> Result<Vec<(String, PathBuf)>, String> {
    let read = std::fs::read_dir(dir).map_err(|e| format!("{at}: cannot list it: {e}"))?;
    let mut out = Vec::new();
    for entry in read {
        let entry = entry.map_err(|e| format!("{at}: cannot list it: {e}"))?;
        let name = match entry.file_name().into_string() {
            Ok(name) => name,
            Err(raw) => {
                notes.push(format!(
                    "{at}: {:?}: a file name that is not UTF-8 names no job: left out",
                    raw
                ));
                continue;
            }
        };
        if name.starts_with('.') || !glob(pattern, &name) {
            continue;
        }
        let path = entry.path();
        // Through symlinks: a deploy may link its files in.
        if !std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
            continue;
        }
        out.push((stem(&name).to_string(), path));
    }
    out.sort();
    Ok(out)
}

/// A file name without its last extension: `resize.php` → `resize`.
pub fn stem(name: &str) -> &str {
    match name.rfind('.') {
        Some(0) | None => name,
        Some(dot) => &name[..dot],
    }
}

/// Whether `name` matches `pattern`, where `*` is any run of characters and `?` any one.
pub fn glob(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    // The classic two-pointer match, backtracking to the last `*`.
    let (mut i, mut j, mut star, mut from) = (0, 0, None, 0);
    while j < n.len() {
        if i < p.len() && (p[i] == '?' || p[i] == n[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some(i);
            from = j;
            i += 1;
        } else if let Some(s) = star {
            i = s + 1;
            from += 1;
            j = from;
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&c| c == '*')
}

/// A `[[jobs]]` entry over the directory's job of the same name: what the entry gives wins;
/// it inherits the rest. What runs the job comes whole from one or the other.
fn overridden(written: RawJob, found: RawJob) -> RawJob {
    let runs = written.worker.is_some() || written.command.is_some() || written.program.is_some();
    let (worker, command, program) = match runs {
        true => (written.worker, written.command, written.program),
        false => (found.worker, found.command, found.program),
    };
    RawJob {
        name: written.name,
        worker,
        command,
        program,
        min_processes: written.min_processes.or(found.min_processes),
        max_processes: written.max_processes.or(found.max_processes),
        max_idle_time: written.max_idle_time.or(found.max_idle_time),
        min_spare: written.min_spare.or(found.min_spare),
        max_spare: written.max_spare.or(found.max_spare),
        concurrency: written.concurrency.or(found.concurrency),
        decode: written.decode.or(found.decode),
        encode: written.encode.or(found.encode),
        timeout: written.timeout.or(found.timeout),
        prefetch: written.prefetch.or(found.prefetch),
        group: written.group.or(found.group),
        max_jobs: written.max_jobs.or(found.max_jobs),
        max_lifetime: written.max_lifetime.or(found.max_lifetime),
        max_memory: written.max_memory.or(found.max_memory),
        env: match (written.env, found.env) {
            (Some(mine), Some(mut theirs)) => {
                theirs.extend(mine);
                Some(theirs)
            }
            (mine, theirs) => mine.or(theirs),
        },
        watch: written.watch.or(found.watch),
        user: written.user.or(found.user),
        file: found.file,
        origin: written.origin,
        index: written.index,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_as_a_shell_would() {
        assert!(glob("*", "a.php"));
        assert!(glob("*.php", "resize.php"));
        assert!(!glob("*.php", "resize.php~"));
        assert!(!glob("*.php", "resize.py"));
        assert!(glob("re*", "resize"));
        assert!(glob("r?size", "resize"));
        assert!(glob("*a*b*", "xxaybzz"));
        assert!(!glob("*a*b", "xxaybzz"));
        assert!(glob("", ""));
        assert!(!glob("", "a"));
    }

    #[test]
    fn stems_lose_their_last_extension_only() {
        assert_eq!(stem("resize.php"), "resize");
        assert_eq!(stem("a.b.php"), "a.b");
        assert_eq!(stem("run"), "run");
    }
}
