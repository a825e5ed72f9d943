//! The config snippets of the documentation stay true: every ```toml block of
//! docs/migrating.md must pass `geardriver check-config`. Paths under `/srv/app` are moved to
//! a scratch directory, where each worker directory a snippet names is made, with a worker
//! file for each `[[jobs]]` entry that overrides a job found in one (an entry with no
//! worker, command or program of its own).

use crate::common;

use common::import::check_config;
use std::path::Path;

/// The ```toml blocks of a Markdown text.
fn toml_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```toml") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

/// A string value of a `key = "value"  # comment` line.
fn string_value(line: &str, key: &str) -> Option<String> {
    let (k, v) = line.split_once('=')?;
    if k.trim() != key {
        return None;
    }
    let v = v.trim().strip_prefix('"')?;
    Some(v[..v.find('"')?].to_string())
}

/// A table of the snippet: its header and its lines.
struct Table {
    header: String,
    lines: Vec<String>,
}

impl Table {
    fn get(&self, key: &str) -> Option<String> {
        self.lines.iter().find_map(|l| string_value(l, key))
    }

    fn has(&self, key: &str) -> bool {
        self.lines
            .iter()
            .any(|l| l.split_once('=').is_some_and(|(k, _)| k.trim() == key))
    }
}

fn tables(toml: &str) -> Vec<Table> {
    let mut tables = vec![Table {
        header: String::new(),
        lines: Vec::new(),
    }];
    for line in toml.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            tables.push(Table {
                header: trimmed.split('#').next().unwrap_or_default().trim().into(),
                lines: Vec::new(),
            });
        } else if !trimmed.starts_with('#') {
            tables.last_mut().unwrap().lines.push(line.to_string());
        }
    }
    tables
}

/// Makes the worker directories and files the snippet needs under `root`.
fn make_worker_files(snippet: &str) {
    let tables = tables(snippet);
    let dirs: Vec<&Table> = tables
        .iter()
        .filter(|t| t.header == "[[worker_dirs]]")
        .collect();
    for (i, dir) in dirs.iter().enumerate() {
        let path = dir.get("path").expect("a worker directory's path");
        std::fs::create_dir_all(&path).unwrap();
        let ext = extension(dir);
        std::fs::write(Path::new(&path).join(format!("example_{i}{ext}")), "").unwrap();
    }
    let Some(first) = dirs.first() else {
        return;
    };
    let prefix = first.get("prefix").unwrap_or_default();
    for job in tables.iter().filter(|t| t.header == "[[jobs]]") {
        if ["worker", "command", "program"].iter().any(|k| job.has(k)) {
            continue;
        }
        let name = job.get("name").expect("a job's name");
        let stem = name.strip_prefix(&prefix).unwrap_or(&name);
        let path =
            Path::new(&first.get("path").unwrap()).join(format!("{stem}{}", extension(first)));
        std::fs::write(path, "").unwrap();
    }
}

/// What a directory's `files` pattern wants after the name: `.php` for `*.php`.
fn extension(dir: &Table) -> String {
    let pattern = dir.get("files").unwrap_or_else(|| "*".into());
    pattern.strip_prefix('*').unwrap_or_default().to_string()
}

#[test]
fn every_toml_block_of_migrating_md_passes_check_config() {
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/migrating.md");
    let text = std::fs::read_to_string(&doc).unwrap();
    let blocks = toml_blocks(&text);
    assert!(
        blocks.len() >= 3,
        "docs/migrating.md has {} toml blocks",
        blocks.len()
    );
    let me = nix::unistd::Uid::effective();
    for (i, block) in blocks.iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("srv/app");
        let mut snippet = block.replace("/srv/app", &root.display().to_string());
        if !me.is_root() {
            // Only root may start workers as another user.
            let name = nix::unistd::User::from_uid(me).unwrap().unwrap().name;
            snippet = snippet
                .lines()
                .map(|l| match string_value(l, "user") {
                    Some(_) => format!("user = \"{name}\""),
                    None => l.to_string(),
                })
                .collect::<Vec<_>>()
                .join("\n");
        }
        make_worker_files(&snippet);
        let config = dir.path().join("config.toml");
        std::fs::write(&config, &snippet).unwrap();
        let checked = check_config(&config);
        assert_eq!(
            checked.code,
            Some(0),
            "toml block {} of docs/migrating.md:\n{block}\ncheck-config: {}",
            i + 1,
            checked.stderr
        );
    }
}
