//! `geardriver import SOURCE FILE`: prints a `config.toml` that runs the fleet another
//! tool's config describes, and on stderr a note for each thing it could not carry over.
//! A file that cannot be read or parsed is an error naming the file and the line (exit 2).
//!
//! Sources: `gearman-manager` (PHP's GearmanManager ini). [`ini`] is the PHP ini reader it
//! rests on.

pub mod gearman_manager;
pub mod ini;

use super::Outcome;
use clap::Subcommand;
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    #[command(subcommand)]
    pub source: Source,
}

#[derive(Debug, Subcommand)]
pub enum Source {
    /// GearmanManager's ini file (github.com/brianlmoon/GearmanManager): its worker
    /// directories, run by the PHP runner
    GearmanManager(GearmanManagerArgs),
}

#[derive(Debug, clap::Args)]
pub struct GearmanManagerArgs {
    /// The ini file GearmanManager ran with (its -c)
    #[arg(value_name = "FILE.ini")]
    pub file: PathBuf,
    /// The directory GearmanManager ran in: the ini's relative paths (worker_dir, log_file,
    /// pid_file) are relative to it [default: the current directory]
    #[arg(long, value_name = "DIR")]
    pub relative_to: Option<PathBuf>,
    /// The PHP runner for GearmanManager's worker files [default: the one in this
    /// geardriver's source tree, workers/php/gearman-manager-runner.php]
    #[arg(long, value_name = "PATH")]
    pub runner: Option<PathBuf>,
    /// The PHP interpreter to run it with
    #[arg(long, default_value = "php", value_name = "PHP")]
    pub php: String,
}

/// Where the runner is in the source tree this binary was built from.
pub const DEFAULT_RUNNER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/workers/php/gearman-manager-runner.php"
);

pub fn run(args: ImportArgs) -> Outcome {
    match args.source {
        Source::GearmanManager(args) => gearman_manager(args),
    }
}

fn gearman_manager(args: GearmanManagerArgs) -> Outcome {
    let cwd = match std::env::current_dir() {
        Ok(dir) => dir,
        Err(e) => return Outcome::Failed(format!("cannot tell the current directory: {e}")),
    };
    let absolute = |p: &Path| std::path::absolute(cwd.join(p)).unwrap_or_else(|_| cwd.join(p));
    let file = args.file.display().to_string();
    let text = match read(&args.file) {
        Ok(text) => text,
        Err(reason) => return Outcome::Usage(format!("{file}: {reason}")),
    };
    let options = gearman_manager::Options {
        ini: absolute(&args.file),
        base: absolute(args.relative_to.as_deref().unwrap_or(Path::new("."))),
        runner: absolute(args.runner.as_deref().unwrap_or(Path::new(DEFAULT_RUNNER))),
        php: args.php,
    };
    let env = |name: &str| std::env::var(name).ok();
    match gearman_manager::import(&text, &options, &env) {
        Ok(imported) => {
            crate::cli::out(&imported.toml);
            for note in &imported.notes {
                eprintln!("note: {file}: {note}");
            }
            Outcome::Success
        }
        Err(problem) => Outcome::Usage(match problem.line {
            Some(line) => format!("{file}:{line}: {}", problem.message),
            None => format!("{file}: {}", problem.message),
        }),
    }
}

/// The file's text: PHP reads bytes, so text that is not UTF-8 is read lossily (an ini of
/// GearmanManager's keys is ASCII).
fn read(path: &Path) -> Result<String, String> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err("no such file".into()),
        Err(e) => return Err(format!("cannot read: {e}")),
        Ok(m) if !m.is_file() => return Err("not a regular file".into()),
        Ok(_) => {}
    }
    std::fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .map_err(|e| format!("cannot read: {e}"))
}
