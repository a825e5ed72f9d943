//! GearmanManager's settings as its `getopt` and `load_workers` read them from the parsed
//! ini (brianlmoon/GearmanManager, src/GearmanManager.php): the `[GearmanManager]` section,
//! one section per function, and PHP's rules for what counts as set (`empty()`, `isset`,
//! `(int) > 0`). Every key is either read, noted as not carried over, or noted as unknown.

use super::{Note, Problem};
use crate::cli::import::ini::{Entry, Ini, Section, Value};
use std::collections::BTreeMap;

/// The global section's name (GearmanManager::DEFAULT_CONFIG), matched exactly.
pub const GLOBAL: &str = "GearmanManager";

/// A value and the line it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct At<T> {
    pub value: T,
    pub line: usize,
}

/// What GearmanManager reads, with its defaults applied where they decide something.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// `worker_dir`, split at commas; `None`: GearmanManager's default `./workers`.
    pub worker_dirs: Option<At<Vec<String>>>,
    /// Function names to take; empty = all (`include = *` or unset).
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    /// `count`: processes that do every job.
    pub count: u64,
    /// `dedicated_count` of the global section (0 = unset).
    pub dedicated_count: u64,
    /// `max_worker_lifetime` when > 0 (else GearmanManager's 3600).
    pub max_worker_lifetime: Option<u64>,
    /// `worker_restart_splay` when > 0 (else GearmanManager's 600).
    pub worker_restart_splay: Option<u64>,
    pub max_runs_per_worker: Option<u64>,
    /// `timeout` as given (0 = none).
    pub timeout: Option<u64>,
    pub graceful_shutdown_wait_time: Option<u64>,
    pub auto_update: bool,
    /// `host`, split at commas; empty: GearmanManager's default 127.0.0.1.
    pub hosts: Option<At<Vec<String>>>,
    pub prefix: String,
    pub user: Option<String>,
    pub log_file: Option<At<String>>,
    pub pid_file: Option<At<String>>,
    /// Sections other than the global one, by name.
    pub functions: BTreeMap<String, FunctionSettings>,
}

/// A function's own section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FunctionSettings {
    /// The section header's line.
    pub line: usize,
    /// `count` (0 = unset).
    pub count: u64,
    /// `dedicated_count` (0 = unset).
    pub dedicated_count: u64,
    pub dedicated_only: bool,
    /// `timeout` as given, even 0 (GearmanManager tests it with `isset`).
    pub timeout: Option<u64>,
}

/// Reads the settings; what is not carried over is added to `notes`.
pub fn read(ini: &Ini, notes: &mut Vec<Note>) -> Result<Settings, Problem> {
    if ini.top.is_empty() && ini.sections.is_empty() {
        return Err(Problem {
            line: None,
            message:
                "no configuration in it (GearmanManager refuses it too: \"No configuration found\")"
                    .into(),
        });
    }
    for entry in &ini.top {
        notes.push(Note::at(
            entry.line,
            format!(
                "{} is before any section: GearmanManager ignores it; not carried over",
                entry.key
            ),
        ));
    }
    let mut settings = Settings::default();
    for section in &ini.sections {
        if section.name == GLOBAL {
            read_global(section, &mut settings, notes)?;
        } else if section.name.eq_ignore_ascii_case(GLOBAL) {
            notes.push(Note::at(
                section.line,
                format!(
                    "[{}] is not [{GLOBAL}] (the case differs): GearmanManager ignores it, and so does the import",
                    section.name
                ),
            ));
        } else {
            let function = read_function(section, notes)?;
            settings.functions.insert(section.name.clone(), function);
        }
    }
    Ok(settings)
}

fn read_global(section: &Section, s: &mut Settings, notes: &mut Vec<Note>) -> Result<(), Problem> {
    for entry in &section.entries {
        let line = entry.line;
        match entry.key.as_str() {
            "worker_dir" => {
                let dirs = list(entry, true, notes)?;
                // An empty worker_dir is GearmanManager's default.
                s.worker_dirs = (!dirs.is_empty()).then_some(At { value: dirs, line });
            }
            "include" => {
                s.include = match text(entry)? {
                    "*" => Vec::new(),
                    _ => without_star(entry, list(entry, false, notes)?, notes),
                }
            }
            "exclude" => s.exclude = without_star(entry, list(entry, false, notes)?, notes),
            "count" => s.count = whole(entry)?,
            "dedicated_count" => s.dedicated_count = whole(entry)?,
            "max_worker_lifetime" => s.max_worker_lifetime = Some(whole(entry)?).filter(|&n| n > 0),
            "worker_restart_splay" => {
                s.worker_restart_splay = Some(whole(entry)?).filter(|&n| n > 0)
            }
            "max_runs_per_worker" => s.max_runs_per_worker = Some(whole(entry)?).filter(|&n| n > 0),
            "timeout" => s.timeout = Some(whole(entry)?),
            "graceful_shutdown_wait_time" => s.graceful_shutdown_wait_time = Some(whole(entry)?),
            "auto_update" => s.auto_update = truthy(text(entry)?),
            "host" => {
                let hosts = list(entry, true, notes)?;
                s.hosts = (!hosts.is_empty()).then_some(At { value: hosts, line });
            }
            "prefix" => s.prefix = text(entry)?.to_string(),
            "user" => s.user = Some(text(entry)?.to_string()).filter(|u| !u.is_empty()),
            "log_file" => s.log_file = non_empty(entry)?,
            "pid_file" => s.pid_file = non_empty(entry)?,
            "daemon" => notes.push(Note::at(
                line,
                "daemon: not carried over: geardriver runs in the foreground; run it under \
                 systemd (contrib/geardriver.service) or your init system",
            )),
            "verbose" => notes.push(Note::at(
                line,
                "verbose: not carried over: geardriver logs at [driver] loglevel = \"info\", \
                 which already has every process start and exit and every line a worker \
                 writes ($log included); \"debug\" adds more",
            )),
            "worker_initial_spawn_splay" => notes.push(Note::at(
                line,
                "worker_initial_spawn_splay: not carried over: geardriver starts processes \
                 at once (each connects to the job servers on its own)",
            )),
            "dedicated_only" | "priority" => notes.push(Note::at(
                line,
                format!(
                    "{}: GearmanManager reads it only in a function's section; ignored here too",
                    entry.key
                ),
            )),
            "functions" | "file" => notes.push(Note::at(
                line,
                format!(
                    "{}: GearmanManager overwrites it with its own value; not carried over",
                    entry.key
                ),
            )),
            other => notes.push(unknown(line, GLOBAL, other)),
        }
    }
    Ok(())
}

fn read_function(section: &Section, notes: &mut Vec<Note>) -> Result<FunctionSettings, Problem> {
    let mut f = FunctionSettings {
        line: section.line,
        ..Default::default()
    };
    for entry in &section.entries {
        match entry.key.as_str() {
            "count" => f.count = whole(entry)?,
            "dedicated_count" => f.dedicated_count = whole(entry)?,
            "dedicated_only" => f.dedicated_only = truthy(text(entry)?),
            "timeout" => f.timeout = Some(whole(entry)?),
            "priority" => notes.push(Note::at(
                entry.line,
                format!(
                    "[{}] priority: not carried over: geardriver has no order among the \
                     functions a process serves (GearmanManager relied on gearmand handing \
                     out jobs in the order a worker registered its functions)",
                    section.name
                ),
            )),
            other => notes.push(unknown(entry.line, &section.name, other)),
        }
    }
    Ok(f)
}

fn unknown(line: usize, section: &str, key: &str) -> Note {
    Note::at(
        line,
        format!(
            "[{section}] {key}: unknown key (GearmanManager does not read it); not carried over"
        ),
    )
}

/// The value with its line, unless empty.
fn non_empty(entry: &Entry) -> Result<Option<At<String>>, Problem> {
    let value = text(entry)?;
    Ok((!value.is_empty()).then(|| At {
        value: value.to_string(),
        line: entry.line,
    }))
}

/// PHP's `!empty()` of an ini string.
fn truthy(value: &str) -> bool {
    !(value.is_empty() || value == "0")
}

fn text(entry: &Entry) -> Result<&str, Problem> {
    match &entry.value {
        Value::Text(t) => Ok(t),
        Value::Array(_) => Err(Problem::at(
            entry.line,
            format!(
                "{}[] is a list, but GearmanManager takes one value for {}",
                entry.key, entry.key
            ),
        )),
    }
}

/// A whole number from 0 to 2^32 - 1; empty is 0, as PHP's `(int)` reads it. Anything else
/// is an error here (PHP would read `"3x"` as 3 and `"x"` as 0, never what was meant); the
/// bound keeps the arithmetic on counts and seconds far from overflowing.
fn whole(entry: &Entry) -> Result<u64, Problem> {
    let value = text(entry)?;
    if value.is_empty() {
        return Ok(0);
    }
    value.parse::<u32>().map(u64::from).map_err(|_| {
        Problem::at(
            entry.line,
            format!(
                "{} = {value:?}: expected a whole number from 0 to {}",
                entry.key,
                u32::MAX
            ),
        )
    })
}

/// A comma-separated list (or, where GearmanManager allows it, `key[] = …` lines), items
/// trimmed and empty ones dropped.
fn list(entry: &Entry, arrays: bool, notes: &mut Vec<Note>) -> Result<Vec<String>, Problem> {
    let items: Vec<String> = match &entry.value {
        Value::Array(items) if arrays => items.iter().map(|(_, v)| v.clone()).collect(),
        Value::Array(_) => {
            return Err(Problem::at(
                entry.line,
                format!(
                    "{}[] is a list, but GearmanManager takes {} as one comma-separated value",
                    entry.key, entry.key
                ),
            ));
        }
        Value::Text(t) => t.split(',').map(str::to_string).collect(),
    };
    let spaced: Vec<&String> = items
        .iter()
        .filter(|i| i.trim() != i.as_str() && !i.trim().is_empty())
        .collect();
    if !spaced.is_empty() && entry.key != "host" {
        notes.push(Note::at(
            entry.line,
            format!(
                "{}: GearmanManager does not trim the items of the list, so {:?} would not match; trimmed here",
                entry.key, spaced[0]
            ),
        ));
    }
    Ok(items
        .iter()
        .map(|i| i.trim().to_string())
        .filter(|i| !i.is_empty())
        .collect())
}

/// Drops `*` from an include or exclude list: GearmanManager compares names exactly, so a
/// `*` among other names matches nothing, but geardriver's lists take patterns.
fn without_star(entry: &Entry, items: Vec<String>, notes: &mut Vec<Note>) -> Vec<String> {
    let (stars, names): (Vec<String>, Vec<String>) =
        items.into_iter().partition(|i| i.contains(['*', '?']));
    for star in stars {
        notes.push(Note::at(
            entry.line,
            format!(
                "{}: {star:?} names no function for GearmanManager, which compares names \
                 exactly (only a whole `include = *` means all); left out",
                entry.key
            ),
        ));
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::import::ini;

    fn settings(text: &str) -> (Settings, Vec<Note>) {
        let ini = ini::parse(text, &|_| None).unwrap();
        let mut notes = Vec::new();
        let s = read(&ini, &mut notes).unwrap_or_else(|p| panic!("{p:?}"));
        (s, notes)
    }

    fn problem(text: &str) -> Problem {
        let ini = ini::parse(text, &|_| None).unwrap();
        read(&ini, &mut Vec::new()).expect_err(text)
    }

    #[test]
    fn every_global_key_is_read() {
        let (s, notes) = settings(
            "[GearmanManager]\nworker_dir = ./a, ./b\ninclude = x,y\nexclude = z\ncount = 10\n\
             dedicated_count = 2\nmax_worker_lifetime = 60\nworker_restart_splay = 5\n\
             max_runs_per_worker = 100\ntimeout = 30\ngraceful_shutdown_wait_time = 9\n\
             auto_update = yes\nhost = h1:4731,h2\nprefix = gm_\nuser = www-data\n\
             log_file = gm.log\npid_file = gm.pid\n",
        );
        assert_eq!(
            s.worker_dirs.unwrap(),
            At {
                value: vec!["./a".to_string(), "./b".to_string()],
                line: 2
            }
        );
        assert_eq!(s.include, ["x", "y"]);
        assert_eq!(s.exclude, ["z"]);
        assert_eq!((s.count, s.dedicated_count), (10, 2));
        assert_eq!(
            (s.max_worker_lifetime, s.worker_restart_splay),
            (Some(60), Some(5))
        );
        assert_eq!((s.max_runs_per_worker, s.timeout), (Some(100), Some(30)));
        assert_eq!(s.graceful_shutdown_wait_time, Some(9));
        assert!(s.auto_update);
        assert_eq!(s.hosts.unwrap().value, ["h1:4731", "h2"]);
        assert_eq!(
            (s.prefix.as_str(), s.user.as_deref()),
            ("gm_", Some("www-data"))
        );
        assert_eq!(s.log_file.unwrap().value, "gm.log");
        assert_eq!(s.pid_file.unwrap().line, 17);
        // The spaces after the comma in worker_dir are noted.
        assert_eq!(notes.len(), 1, "{notes:?}");
    }

    #[test]
    fn php_emptiness_decides_what_is_set() {
        let (s, _) = settings(
            "[GearmanManager]\ncount = 0\nmax_worker_lifetime = 0\nworker_restart_splay =\n\
             max_runs_per_worker = 0\nauto_update = 0\ninclude = *\nuser =\n",
        );
        assert_eq!(s.count, 0);
        assert_eq!(s.max_worker_lifetime, None);
        assert_eq!(s.worker_restart_splay, None);
        assert_eq!(s.max_runs_per_worker, None);
        assert!(!s.auto_update);
        assert!(s.include.is_empty());
        assert_eq!(s.user, None);
        // timeout is tested with isset: 0 is a value (none).
        let (s, _) = settings("[GearmanManager]\ntimeout = 0\n[f]\ntimeout = 0\n");
        assert_eq!(s.timeout, Some(0));
        assert_eq!(s.functions["f"].timeout, Some(0));
        let (s, _) = settings("[GearmanManager]\nauto_update = \"no\"\n");
        assert!(
            s.auto_update,
            "a quoted \"no\" is a non-empty string to PHP"
        );
    }

    #[test]
    fn function_sections() {
        let (s, notes) = settings(
            "[GearmanManager]\ncount = 1\n[Sum]\ndedicated_count = 5\ndedicated_only = 1\n\
             [fetch_url]\ncount = 15\ntimeout = 30\npriority = 2\nbogus = 1\n",
        );
        assert_eq!(
            s.functions["Sum"],
            FunctionSettings {
                line: 3,
                count: 0,
                dedicated_count: 5,
                dedicated_only: true,
                timeout: None
            }
        );
        assert_eq!(s.functions["fetch_url"].count, 15);
        assert_eq!(s.functions["fetch_url"].timeout, Some(30));
        let texts: Vec<String> = notes.iter().map(|n| format!("{n}")).collect();
        assert!(
            texts[0].contains("line 9") && texts[0].contains("priority"),
            "{texts:?}"
        );
        assert!(
            texts[1].contains("[fetch_url] bogus: unknown key"),
            "{texts:?}"
        );
    }

    #[test]
    fn stars_and_spaces_in_lists() {
        let (s, notes) = settings("[GearmanManager]\ninclude = a, *,b\nexclude = *\n");
        assert_eq!(s.include, ["a", "b"]);
        assert!(s.exclude.is_empty());
        assert_eq!(notes.len(), 3, "{notes:?}");
        let (s, _) =
            settings("[GearmanManager]\nworker_dir[] = /a\nworker_dir[] = /b\nhost[] = h\n");
        assert_eq!(s.worker_dirs.unwrap().value, ["/a", "/b"]);
        assert_eq!(s.hosts.unwrap().value, ["h"]);
    }

    #[test]
    fn keys_not_carried_over_are_noted() {
        let (_, notes) = settings(
            "stray = 1\n[GearmanManager]\ndaemon = 1\nverbose = vvv\nworker_initial_spawn_splay = 9\n\
             dedicated_only = 1\nfunctions = x\nwhatever = 2\n[gearmanmanager]\ncount = 3\n",
        );
        let lines: Vec<Option<usize>> = notes.iter().map(|n| n.line).collect();
        assert_eq!(
            lines,
            [
                Some(1),
                Some(3),
                Some(4),
                Some(5),
                Some(6),
                Some(7),
                Some(8),
                Some(9)
            ]
        );
        assert!(notes[7].text.contains("case differs"));
    }

    #[test]
    fn bad_values_name_their_line() {
        let p = problem("[GearmanManager]\n\ncount = ten\n");
        assert_eq!(p.line, Some(3));
        assert!(p.message.contains("count = \"ten\""), "{}", p.message);
        assert_eq!(problem("[f]\ncount = -1\n").line, Some(2));
        assert_eq!(problem("[f]\ncount = 3.5\n").line, Some(2));
        assert_eq!(problem("[GearmanManager]\ninclude[] = a\n").line, Some(2));
        assert_eq!(problem("[GearmanManager]\ncount[] = 1\n").line, Some(2));
        assert_eq!(problem("[f]\ntimeout = 99999999999\n").line, Some(2));
        assert_eq!(problem("; nothing\n").line, None);
    }
}
