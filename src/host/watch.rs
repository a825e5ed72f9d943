//! `watch = true`: code reload on deploy (GearmanManager's `auto_update`, Gearman::Starter's
//! `Reload`). The files a watched job runs from are watched with inotify (the `notify`
//! crate, no polling); when they change, the job's processes are replaced gracefully, each
//! finishing its job first. Changes are gathered until the files have been quiet for
//! [`QUIET`], so that a deploy of 200 files restarts each job once.
//!
//! What is watched, and what a change does:
//! - a job's file (a worker directory's), or the files and directories its command line
//!   names: a change replaces that job's processes;
//! - a watched worker directory: a matching file added, removed or renamed reloads the
//!   config (the directory is listed again, so jobs come and go); a file in a subdirectory
//!   (a library the jobs share) replaces every job of the directory. Hidden files (editors'
//!   swap files) and top-level files that do not match are left alone.
//!
//! Parents are watched rather than files: a deploy that renames a new file over the old one
//! would end a watch on the file itself. A symbolic link on the way (a deploy's `current`
//! pointed at a new release) is watched too: when it moves, the config is reloaded, the jobs
//! below it are replaced, and the watches are made again on what it points to now. The plan
//! is made again whenever the config changes.

use crate::config::{Config, WorkerDir, dirs};
use crate::driver::HostHandle;
use ::notify::event::{EventKind, ModifyKind};
use ::notify::{RecommendedWatcher, RecursiveMode, Watcher};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How long the files must be quiet before the changes are acted on.
const QUIET: Duration = Duration::from_millis(500);
/// The longest changes are held back while files keep changing.
const MOST: Duration = Duration::from_secs(5);

/// What to watch for one config, and what each change means.
#[derive(Debug, Default, PartialEq)]
struct Plan {
    /// Directories to watch, and whether below them too.
    watches: BTreeMap<PathBuf, bool>,
    /// A file → the jobs it belongs to.
    files: BTreeMap<PathBuf, Vec<String>>,
    /// Anything under a directory → the jobs it belongs to.
    trees: Vec<(PathBuf, Vec<String>)>,
    /// Watched worker directories: their files come and go.
    dirs: Vec<WorkerDir>,
    /// Symbolic links on the way to what is watched (a deploy's `current` → a release) →
    /// the jobs below them. inotify watches what a path named when the watch began, so a
    /// link pointed elsewhere is a new everything: the config is reloaded, the jobs
    /// replaced, and the watches made again.
    links: BTreeMap<PathBuf, Vec<String>>,
}

impl Plan {
    fn of(config: &Config) -> Plan {
        let mut plan = Plan::default();
        for job in config.jobs.iter().filter(|j| j.watch) {
            let paths = job.watched_paths();
            if paths.is_empty() {
                tracing::warn!(job = %job.name, "watch = true, but its command line names no file that exists here: nothing to watch");
            }
            for path in paths {
                let is_dir = path.is_dir();
                plan.follow_links(&path, std::slice::from_ref(&job.name), is_dir);
                if is_dir {
                    plan.watch(&path, true);
                    plan.trees.push((path, vec![job.name.clone()]));
                } else if let Some(parent) = path.parent() {
                    plan.watch(parent, false);
                    plan.files.entry(path).or_default().push(job.name.clone());
                }
            }
        }
        for dir in config.worker_dirs.iter().filter(|d| d.watch) {
            plan.follow_links(&dir.path, &dir.jobs, true);
            plan.watch(&dir.path, true);
            plan.dirs.push(dir.clone());
        }
        plan
    }

    /// Watches, for each symbolic link on the way to `path`, the directory holding it; and
    /// for a watched directory, the one holding it too (a deploy may rename a new copy
    /// over it, or remove it and copy it back).
    fn follow_links(&mut self, path: &Path, jobs: &[String], directory: bool) {
        for link in path.ancestors() {
            let is_link = std::fs::symlink_metadata(link).is_ok_and(|m| m.file_type().is_symlink());
            let moves = is_link || (directory && link == path);
            if let (true, Some(parent)) = (moves, link.parent()) {
                self.watch(parent, false);
                self.links
                    .entry(link.to_path_buf())
                    .or_default()
                    .extend(jobs.iter().cloned());
            }
        }
    }

    fn watch(&mut self, dir: &Path, recursive: bool) {
        let entry = self.watches.entry(dir.to_path_buf()).or_default();
        *entry |= recursive;
    }

    /// What the changes to `paths` call for: whether to reload the config (files came or
    /// went in a worker directory, or a link moved), the jobs to replace with the path that
    /// changed, and whether a link moved (the watches must be made again).
    fn actions(&self, changes: &BTreeMap<PathBuf, bool>) -> Actions {
        let mut reload = false;
        let mut relinked = false;
        let mut replace: BTreeMap<String, PathBuf> = BTreeMap::new();
        // Why the config is reloaded: the paths that came, went or moved.
        let mut why: BTreeSet<PathBuf> = BTreeSet::new();
        // Each job's reason is a path that changed, one that is still there if any (an
        // editor's or sed's temporary file is gone by now).
        let mut add = |jobs: &[String], path: &Path| {
            for job in jobs {
                let reason = replace
                    .entry(job.clone())
                    .or_insert_with(|| path.to_path_buf());
                if !reason.exists() && path.exists() {
                    *reason = path.to_path_buf();
                }
            }
        };
        for (path, came_or_went) in changes {
            let hidden = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_none_or(|n| n.starts_with('.'));
            if hidden {
                continue;
            }
            if let Some(jobs) = self.files.get(path) {
                add(jobs, path);
            }
            if let Some(jobs) = self.links.get(path) {
                add(jobs, path);
                relinked = true;
                why.insert(path.clone());
            }
            for (tree, jobs) in &self.trees {
                if path.starts_with(tree) {
                    add(jobs, path);
                }
            }
            for dir in &self.dirs {
                let Ok(rest) = path.strip_prefix(&dir.path) else {
                    continue;
                };
                let name = rest.to_str().unwrap_or_default();
                let top = rest.components().count() == 1;
                if top && dirs::glob(&dir.files, name) {
                    // A job's own file is in `files`, above.
                    if *came_or_went {
                        reload = true;
                        why.insert(path.clone());
                    }
                } else if !top && !hidden_below(rest) {
                    add(&dir.jobs, path);
                }
            }
        }
        Actions {
            reload: reload || relinked,
            replace,
            relinked,
            why,
        }
    }
}

struct Actions {
    reload: bool,
    replace: BTreeMap<String, PathBuf>,
    relinked: bool,
    why: BTreeSet<PathBuf>,
}

/// Whether any directory between a worker directory and the file is hidden (`.git`).
fn hidden_below(rest: &Path) -> bool {
    rest.components()
        .any(|c| c.as_os_str().to_str().is_none_or(|n| n.starts_with('.')))
}

/// Watches what the config in force asks to, until `shutdown`.
pub async fn run(handle: HostHandle, shutdown: CancellationToken) {
    let mut configs = handle.config_changes();
    loop {
        let plan = Plan::of(&configs.borrow_and_update());
        let (tx, mut rx) = mpsc::unbounded_channel();
        let _watcher = match plan.watches.is_empty() {
            true => None,
            false => start(&plan, tx),
        };
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                changed = configs.changed() => match changed {
                    Ok(()) if Plan::of(&configs.borrow()) != plan => break,
                    Ok(()) => {}
                    Err(_) => return,
                },
                Some(first) = rx.recv() => {
                    let since = std::time::Instant::now();
                    let changes = gather(first, &mut rx).await;
                    if act(&handle, &plan, &changes, since).await {
                        break;
                    }
                }
            }
        }
    }
}

/// A watcher for the plan's directories, sending each change's paths (and whether a file
/// came or went) to `tx`. `None` (with the reason logged) when inotify refuses.
fn start(
    plan: &Plan,
    tx: mpsc::UnboundedSender<Vec<(PathBuf, bool)>>,
) -> Option<RecommendedWatcher> {
    let handler = move |event: ::notify::Result<::notify::Event>| {
        let Ok(event) = event else { return };
        let came_or_went = match event.kind {
            // Reading the code (a worker starting) is no change, nor are a new mode, owner
            // or time stamp (`touch`, a `chmod -R` by configuration management).
            EventKind::Access(_) | EventKind::Modify(ModifyKind::Metadata(_)) => return,
            EventKind::Create(_)
            | EventKind::Remove(_)
            | EventKind::Modify(ModifyKind::Name(_)) => true,
            EventKind::Modify(_) | EventKind::Any | EventKind::Other => false,
        };
        let _ = tx.send(event.paths.into_iter().map(|p| (p, came_or_went)).collect());
    };
    let mut watcher = match RecommendedWatcher::new(handler, ::notify::Config::default()) {
        Ok(w) => w,
        Err(e) => {
            tracing::error!(error = %e, "cannot watch files: watch = true has no effect");
            return None;
        }
    };
    for (dir, &recursive) in &plan.watches {
        let mode = match recursive {
            true => RecursiveMode::Recursive,
            false => RecursiveMode::NonRecursive,
        };
        match watcher.watch(dir, mode) {
            Ok(()) => tracing::debug!(dir = %dir.display(), recursive, "watching"),
            Err(e) => {
                tracing::error!(dir = %dir.display(), error = %e, "cannot watch it: its jobs are not replaced when it changes")
            }
        }
    }
    Some(watcher)
}

/// The first change and those that follow until the files are quiet for [`QUIET`] (or
/// [`MOST`] has passed): each path once, marked if a file came or went there.
async fn gather(
    first: Vec<(PathBuf, bool)>,
    rx: &mut mpsc::UnboundedReceiver<Vec<(PathBuf, bool)>>,
) -> BTreeMap<PathBuf, bool> {
    let mut changes: BTreeMap<PathBuf, bool> = BTreeMap::new();
    let mut note = |batch: Vec<(PathBuf, bool)>| {
        for (path, came_or_went) in batch {
            *changes.entry(path).or_default() |= came_or_went;
        }
    };
    note(first);
    let until = tokio::time::Instant::now() + MOST;
    loop {
        let wait = QUIET.min(until.saturating_duration_since(tokio::time::Instant::now()));
        match tokio::time::timeout(wait, rx.recv()).await {
            Ok(Some(batch)) => note(batch),
            Ok(None) | Err(_) => break,
        }
    }
    changes
}

/// Acts on the changes; `true` when a link moved, so that the watches are made again.
async fn act(
    handle: &HostHandle,
    plan: &Plan,
    changes: &BTreeMap<PathBuf, bool>,
    since: std::time::Instant,
) -> bool {
    let Actions {
        reload,
        replace,
        relinked,
        why,
    } = plan.actions(changes);
    if reload {
        tracing::info!(
            changed = %list(why.iter()),
            "files came or went in a watched worker directory, or a link to one moved: reloading the config"
        );
        if let Err(e) = handle.reload().await {
            // A worker directory gone (`rm -rf` before a copy): the processes that run keep
            // running until it is back, rather than being replaced by ones that cannot start.
            tracing::error!(error = %e, "reload refused; keeping the old config and its processes");
            return relinked;
        }
    }
    if replace.is_empty() {
        return relinked;
    }
    let jobs = replace
        .into_iter()
        .map(|(job, path)| (job, path.display().to_string()))
        .collect();
    if let Err(e) = handle.replace(jobs, since).await {
        tracing::warn!(error = %e, "cannot replace the processes of changed jobs");
    }
    relinked
}

/// The first few paths, and how many more: a deploy of 200 files is one short log line.
fn list<'a>(paths: impl Iterator<Item = &'a PathBuf>) -> String {
    const SHOWN: usize = 5;
    let paths: BTreeSet<String> = paths.map(|p| p.display().to_string()).collect();
    let mut text = paths
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if paths.len() > SHOWN {
        text += &format!(" and {} more", paths.len() - SHOWN);
    }
    text
}
