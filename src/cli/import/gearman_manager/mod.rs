//! `geardriver import gearman-manager FILE.ini`: GearmanManager's ini (read as its own
//! `parse_config` and `getopt` read it) and worker directories (listed as its
//! `load_workers` lists them) turned into a `config.toml` that runs the same fleet with the
//! PHP runner, and a note for everything that could not be carried over.
//!
//! `settings` reads the keys, `fleet` works out the processes, `render` writes the TOML.
//! Relative paths in the ini are resolved against the directory GearmanManager ran in (its
//! working directory; `--relative-to`), and written absolute, so the config may live
//! anywhere.

pub mod fleet;
mod render;
pub mod settings;

use super::ini;
use crate::gearman::ServerAddr;
use settings::Settings;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// Something not carried over as it was, for stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub line: Option<usize>,
    pub text: String,
}

impl Note {
    pub fn at(line: usize, text: impl Into<String>) -> Note {
        Note {
            line: Some(line),
            text: text.into(),
        }
    }

    pub fn general(text: impl Into<String>) -> Note {
        Note {
            line: None,
            text: text.into(),
        }
    }
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.text),
            None => f.write_str(&self.text),
        }
    }
}

/// Why the ini cannot be imported: where (a line of it, or the file as a whole) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: Option<usize>,
    pub message: String,
}

impl Problem {
    pub fn at(line: usize, message: impl Into<String>) -> Problem {
        Problem {
            line: Some(line),
            message: message.into(),
        }
    }
}

/// What the import needs beyond the ini.
#[derive(Debug, Clone)]
pub struct Options {
    /// The ini file, absolute (named in the output).
    pub ini: PathBuf,
    /// GearmanManager's working directory: what its relative paths are relative to.
    pub base: PathBuf,
    /// The PHP runner, absolute.
    pub runner: PathBuf,
    /// The PHP interpreter.
    pub php: String,
}

/// The config text and the notes.
#[derive(Debug, Clone)]
pub struct Imported {
    pub toml: String,
    pub notes: Vec<Note>,
}

/// The runner's option for GearmanManager's `prefix`, which names the PHP symbols only: the
/// function or class for job `X` is `PREFIX` + `X` (the job keeps the file's name).
pub const PREFIX_OPTION: &str = "--prefix=";

/// What a worker directory's `program` gets the job's file as.
const FILE_PLACEHOLDER: &str = "{file}";

/// GearmanManager's default `worker_dir`.
const DEFAULT_WORKER_DIR: &str = "./workers";

/// A worker directory as the output gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dir {
    pub path: PathBuf,
    /// As the ini wrote it (`None`: GearmanManager's default).
    pub written: Option<String>,
    /// Functions left out here because a later directory has them too.
    pub shadowed: Vec<String>,
}

/// Everything the TOML is written from.
#[derive(Debug, Clone)]
pub struct Plan {
    pub settings: Settings,
    pub dirs: Vec<Dir>,
    pub job_servers: Vec<String>,
    pub logfile: Option<PathBuf>,
    pub pidfile: Option<PathBuf>,
    pub program: Vec<String>,
    pub fleet: fleet::Fleet,
    /// Each function's timeout in seconds, 0 = none: its section's, else the global one
    /// (GearmanManager tests both with `isset`, so a 0 in a section clears the global one).
    pub timeouts: BTreeMap<String, u64>,
}

/// Imports the ini text (read from `options.ini`); `env` looks up `${NAME}`.
pub fn import(
    text: &str,
    options: &Options,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Imported, Problem> {
    let ini = ini::parse(text, env).map_err(|e| Problem::at(e.line, e.message))?;
    let mut notes: Vec<Note> = ini
        .notes
        .iter()
        .map(|(line, text)| Note::at(*line, text.clone()))
        .collect();
    let settings = settings::read(&ini, &mut notes)?;
    let plan = plan(settings, options, &mut notes)?;
    Ok(Imported {
        toml: render::render(&plan, options),
        notes,
    })
}

fn plan(settings: Settings, options: &Options, notes: &mut Vec<Note>) -> Result<Plan, Problem> {
    let absolute = |p: &str| -> PathBuf {
        let p = options.base.join(p);
        std::path::absolute(&p).unwrap_or(p)
    };

    // The worker directories and their *.php files; a function in several is served from
    // the last (GearmanManager overwrites its path with each).
    let (written, line) = match &settings.worker_dirs {
        Some(dirs) => (
            dirs.value.iter().cloned().map(Some).collect(),
            Some(dirs.line),
        ),
        None => (vec![None], None),
    };
    let mut dirs = Vec::new();
    let mut found: BTreeMap<String, usize> = BTreeMap::new();
    for written in written {
        let as_written = written.as_deref().unwrap_or(DEFAULT_WORKER_DIR);
        let path = absolute(as_written);
        // A relative path is GearmanManager's working directory's, which the ini does not
        // say; when the ini's own directory has the files, say so.
        let beside_ini = options
            .ini
            .parent()
            .map(|d| d.join(as_written))
            .filter(|p| Path::new(as_written).is_relative() && *p != path)
            .filter(|p| php_files(p).is_ok_and(|f| !f.is_empty()))
            .map(|p| {
                format!(
                    "; {} has worker files: if GearmanManager ran in {}, give --relative-to {}",
                    p.display(),
                    options.ini.parent().unwrap_or(Path::new("/")).display(),
                    options.ini.parent().unwrap_or(Path::new("/")).display()
                )
            })
            .unwrap_or_default();
        let names = php_files(&path).map_err(|e| Problem {
            line,
            message: format!(
                "worker_dir {}: {e} (GearmanManager refuses to start without it too{}){beside_ini}",
                path.display(),
                match written {
                    Some(_) => "; relative paths are taken from --relative-to, else the current directory".to_string(),
                    None => format!("; worker_dir is not set, so its default {DEFAULT_WORKER_DIR} is used: set worker_dir, or give --relative-to"),
                }
            ),
        })?;
        if names.is_empty() && !beside_ini.is_empty() {
            notes.push(Note {
                line,
                text: format!("worker_dir {}: no *.php files{beside_ini}", path.display()),
            });
        }
        let index = dirs.len();
        for name in names {
            if let Some(earlier) = found.insert(name.clone(), index) {
                let dir: &mut Dir = &mut dirs[earlier];
                dir.shadowed.push(name.clone());
                notes.push(Note {
                    line,
                    text: format!(
                        "{name}.php is in {} and in {}: GearmanManager serves the last one's, so the first is left out (exclude)",
                        dir.path.display(),
                        path.display()
                    ),
                });
            }
        }
        dirs.push(Dir {
            path,
            written,
            shadowed: Vec::new(),
        });
    }
    let names: Vec<String> = found
        .keys()
        .filter(|n| settings.include.is_empty() || settings.include.contains(n))
        .filter(|n| !settings.exclude.contains(n))
        .cloned()
        .collect();
    if names.is_empty() {
        notes.push(Note::general(
            "no *.php worker files found (or include/exclude leaves none): GearmanManager would exit with \"No workers found\"; the config serves the files once they are there",
        ));
    }
    for name in &settings.include {
        if !found.contains_key(name) {
            notes.push(Note::general(format!(
                "include names {name}, which no worker_dir has"
            )));
        }
    }
    for (name, f) in &settings.functions {
        if !names.contains(name) {
            notes.push(Note::at(
                f.line,
                format!(
                    "[{name}]: no {name}.php is served (none in the worker directories, or include/exclude leaves it out), so GearmanManager does not use the section; not carried over (import again once the file is there)"
                ),
            ));
        }
    }

    let fleet = fleet::plan(&settings, &names).map_err(|(name, message)| Problem {
        line: settings.functions.get(&name).map(|f| f.line),
        message: format!("[{name}] {message}"),
    })?;

    let timeouts = names
        .iter()
        .map(|n| {
            let own = settings.functions.get(n).and_then(|f| f.timeout);
            (n.clone(), own.or(settings.timeout).unwrap_or(0))
        })
        .collect();

    let job_servers = match &settings.hosts {
        None => vec![format!("127.0.0.1:{}", crate::gearman::DEFAULT_PORT)],
        Some(hosts) => hosts
            .value
            .iter()
            .map(|h| {
                h.parse::<ServerAddr>()
                    .map(|a| a.to_string())
                    .map_err(|e| Problem::at(hosts.line, format!("host: {e}")))
            })
            .collect::<Result<_, _>>()?,
    };
    let logfile = match &settings.log_file {
        Some(f) if f.value == "syslog" => {
            notes.push(Note::at(
                f.line,
                "log_file = syslog: not carried over: geardriver logs to a file or stderr (under systemd, stderr goes to the journal)",
            ));
            None
        }
        Some(f) => Some(absolute(&f.value)),
        None => None,
    };
    let pidfile = settings.pid_file.as_ref().map(|f| absolute(&f.value));
    if !options.runner.is_file() {
        notes.push(Note::general(format!(
            "the PHP runner {} is not there: give its path with --runner",
            options.runner.display()
        )));
    }
    let mut program = vec![options.php.clone(), options.runner.display().to_string()];
    if !settings.prefix.is_empty() {
        program.push(format!("{PREFIX_OPTION}{}", settings.prefix));
    }
    program.push(FILE_PLACEHOLDER.to_string());
    Ok(Plan {
        settings,
        dirs,
        job_servers,
        logfile,
        pidfile,
        program,
        fleet,
        timeouts,
    })
}

/// The names (without `.php`) of the `*.php` files in `dir`, as GearmanManager's
/// `glob("$dir/*.php")` finds them: not hidden, files (through symlinks), sorted.
fn php_files(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let Some(stem) = name.strip_suffix(".php") else {
            continue;
        };
        if name.starts_with('.') || stem.is_empty() {
            continue;
        }
        if std::fs::metadata(entry.path()).is_ok_and(|m| m.is_file()) {
            names.push(stem.to_string());
        }
    }
    names.sort();
    Ok(names)
}
