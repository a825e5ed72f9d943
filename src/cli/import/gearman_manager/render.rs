//! The `config.toml` text of a [`Plan`]: every value with a comment naming the ini key it
//! comes from, or why it is there.

use super::fleet::{self, Placement};
use super::{Options, Plan};
use std::fmt::Write;

/// Lines of `key = value` with their comments, the comments aligned.
#[derive(Default)]
struct Table {
    rows: Vec<(String, String)>,
}

impl Table {
    fn row(&mut self, key: &str, value: String, comment: impl Into<String>) {
        self.rows.push((format!("{key} = {value}"), comment.into()));
    }

    /// A comment on lines of its own.
    fn comment(&mut self, text: String) {
        self.rows.push((String::new(), text));
    }

    /// Short comments after their value, aligned; a long one on lines of its own above.
    fn write(&self, out: &mut String) {
        let width = self
            .rows
            .iter()
            .filter(|(code, c)| !code.is_empty() && !c.is_empty() && code.chars().count() <= 40)
            .map(|(code, _)| code.chars().count())
            .max()
            .unwrap_or(0);
        for (code, c) in &self.rows {
            let len = code.chars().count();
            if code.is_empty() {
                comment(out, c);
                continue;
            }
            if c.is_empty() {
                out.push_str(code);
            } else if len <= width && width + 4 + c.chars().count() <= 100 {
                let _ = write!(out, "{code:<width$}  # {c}");
            } else {
                comment(out, c);
                out.push_str(code);
            }
            out.push('\n');
        }
    }
}

/// A TOML basic string.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| quote(i)).collect();
    format!("[{}]", quoted.join(", "))
}

/// `# text`, wrapped at 92 columns.
fn comment(out: &mut String, text: &str) {
    let mut line = String::from("#");
    for word in text.split(' ') {
        if line.len() + 1 + word.len() > 92 && line.len() > 1 {
            out.push_str(&line);
            out.push('\n');
            line = String::from("#");
        }
        line.push(' ');
        line.push_str(word);
    }
    out.push_str(&line);
    out.push('\n');
}

pub fn render(plan: &Plan, options: &Options) -> String {
    let s = &plan.settings;
    let f = &plan.fleet;
    let mut out = String::new();
    comment(
        &mut out,
        &format!(
            "geardriver config.toml imported from GearmanManager's {} by `geardriver import \
             gearman-manager` (docs/migrating.md). Every path in it is absolute, so it may \
             live in any directory; check it with `geardriver check-config --config FILE`.",
            options.ini.display()
        ),
    );
    out.push_str("#\n");
    let dedicated_only: Vec<&String> = f
        .functions
        .iter()
        .filter(|(_, p)| p.dedicated_only)
        .map(|(n, _)| n)
        .collect();
    let started = match s.count {
        0 => format!(
            "GearmanManager started {} processes for the {} functions found, each serving \
             one function.",
            f.gearman_manager,
            f.functions.len()
        ),
        count => format!(
            "GearmanManager started {} processes for the {} functions found: {count} that do \
             every job{} and {} that each serve one function.",
            f.gearman_manager,
            f.functions.len(),
            match dedicated_only.len() {
                0 => String::new(),
                _ => format!(
                    " (but {}, dedicated_only)",
                    dedicated_only
                        .iter()
                        .map(|n| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            },
            f.gearman_manager - count
        ),
    };
    comment(&mut out, &started);
    let shared = f.functions.values().any(|p| p.shared);
    let mut here = String::new();
    if f.max_total > f.min_total {
        here += &format!(
            "geardriver serves a function from one pool of processes, so a function with \
             processes of its own here does not share the {} that do every job; instead it \
             may start up to {} more of its own while its queue backs up (max_processes). ",
            s.count, s.count
        );
    }
    here += &match f.max_total > f.min_total {
        true => format!(
            "Here: {} processes at rest, {} at most.",
            f.min_total, f.max_total
        ),
        false => format!("Here: the same {} processes.", f.min_total),
    };
    if s.count > 0 && !shared && !f.functions.is_empty() {
        here += &format!(
            " No function is left to the {} that do every job, so they are not started.",
            s.count
        );
    }
    out.push_str("#\n");
    comment(&mut out, &here);

    out.push_str("\n[driver]\n");
    let mut driver = Table::default();
    driver.row(
        "job_servers",
        list(&plan.job_servers),
        match s.hosts {
            Some(_) => "host (the default port is 4730)",
            None => "host is not set: GearmanManager's default",
        },
    );
    driver.row(
        "shutdown_timeout",
        s.graceful_shutdown_wait_time
            .unwrap_or(fleet::DEFAULT_SHUTDOWN_WAIT)
            .to_string(),
        match s.graceful_shutdown_wait_time {
            Some(_) => "graceful_shutdown_wait_time: seconds a stopping process may finish its job",
            None => "GearmanManager's graceful_shutdown_wait_time: seconds a stopping process may finish its job",
        },
    );
    if let Some(p) = &plan.pidfile {
        driver.row("pidfile", quote(&p.display().to_string()), "pid_file");
    }
    if let Some(p) = &plan.logfile {
        driver.row(
            "logfile",
            quote(&p.display().to_string()),
            "log_file (kill -USR1 the host to reopen it after rotating)",
        );
    }
    if let Some(user) = &s.user {
        driver.row(
            "user",
            quote(user),
            "user: every worker process runs as it (the host stays root to switch)",
        );
    }
    driver.write(&mut out);
    out.push_str(
        "# The built-in job server stays off ([server] enabled = false): the workers use the job\n\
         # servers above, as GearmanManager's did.\n",
    );

    for dir in &plan.dirs {
        out.push_str("\n[[worker_dirs]]\n");
        worker_dir(plan, dir).write(&mut out);
    }

    for (name, placement) in &f.functions {
        if let Some(table) = job(plan, name, placement) {
            out.push('\n');
            match s.functions.get(name) {
                Some(section) => {
                    let _ = writeln!(out, "# [{name}] (line {})", section.line);
                }
                None => {
                    let _ = writeln!(out, "# {name}");
                }
            }
            out.push_str("[[jobs]]\n");
            table.write(&mut out);
        }
    }
    out
}

fn worker_dir(plan: &Plan, dir: &super::Dir) -> Table {
    let s = &plan.settings;
    let f = &plan.fleet;
    let mut t = Table::default();
    t.row(
        "path",
        quote(&dir.path.display().to_string()),
        match &dir.written {
            Some(w) => format!("worker_dir {w}"),
            None => "worker_dir is not set: GearmanManager's default ./workers".into(),
        },
    );
    t.row(
        "files",
        quote("*.php"),
        "each *.php file is the function of its name",
    );
    if !s.include.is_empty() {
        t.row("include", list(&s.include), "include");
    }
    let mut exclude = s.exclude.clone();
    exclude.extend(dir.shadowed.iter().cloned());
    if !exclude.is_empty() {
        t.row(
            "exclude",
            list(&exclude),
            match dir.shadowed.is_empty() {
                true => "exclude",
                false => "exclude, and the functions a later worker_dir also has",
            },
        );
    }
    t.row(
        "program",
        list(&plan.program),
        "GearmanManager's function and class files, served as it served them",
    );
    if !s.prefix.is_empty() {
        t.comment(format!(
            "prefix = {}: job X calls the PHP function or class {}X (the runner's --prefix)",
            s.prefix, s.prefix
        ));
    }
    if s.auto_update {
        t.row(
            "watch",
            "true".into(),
            "auto_update: a changed file restarts its job's processes (each after its job)",
        );
    }
    if let Some(timeout) = s.timeout.filter(|&t| t > 0) {
        t.row(
            "timeout",
            timeout.to_string(),
            "timeout: a job past it fails (gearmand gave it to another worker)",
        );
    }
    let l = s.max_worker_lifetime.unwrap_or(fleet::DEFAULT_LIFETIME);
    let splay = s.worker_restart_splay.unwrap_or(fleet::DEFAULT_SPLAY);
    let m = fleet::lifetime(l, splay);
    t.row(
        "max_lifetime",
        m.to_string(),
        format!(
            "max_worker_lifetime {l}{} + worker_restart_splay {splay}{}: GearmanManager \
             recycled a process after {l}-{} s, geardriver after {m}-{} s (it adds up to a \
             tenth itself)",
            if s.max_worker_lifetime.is_none() {
                " (default)"
            } else {
                ""
            },
            if s.worker_restart_splay.is_none() {
                " (default)"
            } else {
                ""
            },
            l + splay,
            m + m / 10
        ),
    );
    if let Some(n) = s.max_runs_per_worker {
        t.row("max_jobs", n.to_string(), "max_runs_per_worker");
    }
    match &f.group {
        Some(group) => {
            t.row(
                "group",
                quote(group),
                "count: these processes do every job (but the ones listed below)",
            );
            t.row("min_processes", s.count.to_string(), "count");
        }
        None => {
            t.row(
                "min_processes",
                f.default.min.to_string(),
                own_why(s.count, s.dedicated_count, &f.default, None),
            );
            if f.default.max > f.default.min {
                t.row(
                    "max_processes",
                    f.default.max.to_string(),
                    format!(
                        "+ count = {}: the shared processes it no longer has",
                        s.count
                    ),
                );
            }
        }
    }
    t
}

/// Why a function has `p.own` processes of its own (`section`: its name, when it has one).
fn own_why(count: u64, global_dedicated: u64, p: &Placement, section: Option<&str>) -> String {
    let Some(name) = section else {
        return match (count, global_dedicated) {
            (0, 0) => "count is 0: one process of its own for each function".into(),
            (_, 0) => "count: processes of each function's own".into(),
            _ => "dedicated_count: processes of each function's own".into(),
        };
    };
    match (p.dedicated_only, count) {
        (true, _) => {
            format!("[{name}] dedicated_count; dedicated_only: no other process serves it")
        }
        (false, 0) => format!("[{name}] count / dedicated_count"),
        (false, _) => format!(
            "[{name}] count / dedicated_count: {} could serve it, {} of them its own",
            p.max, p.own
        ),
    }
}

/// The `[[jobs]]` override of a function placed apart from what its directory gives, or
/// with a timeout of its own.
fn job(plan: &Plan, name: &str, p: &Placement) -> Option<Table> {
    let s = &plan.settings;
    let f = &plan.fleet;
    let timeout = plan.timeouts.get(name).copied().unwrap_or(0);
    let placed_apart = *p != f.default;
    let timed_apart = timeout != s.timeout.unwrap_or(0);
    if !placed_apart && !timed_apart {
        return None;
    }
    let mut t = Table::default();
    t.row("name", quote(name), "");
    if placed_apart && f.group.is_some() && !p.shared {
        t.row(
            "group",
            quote(""),
            "processes of its own: out of the group of every job",
        );
    }
    if placed_apart && p.shared {
        // Only when the directory gives no group (it always does when any is shared).
        t.row("group", quote(f.group.as_deref().unwrap_or("all")), "count");
    } else if placed_apart {
        t.row(
            "min_processes",
            p.min.to_string(),
            own_why(s.count, s.dedicated_count, p, Some(name)),
        );
        t.row(
            "max_processes",
            p.max.to_string(),
            match p.max > p.min {
                true => format!(
                    "+ count = {}: the shared processes it no longer has",
                    s.count
                ),
                false => String::new(),
            },
        );
    }
    if timed_apart {
        t.row(
            "timeout",
            timeout.to_string(),
            format!(
                "[{name}] timeout{}",
                if timeout == 0 { ": none" } else { "" }
            ),
        );
    }
    Some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_strings_are_escaped() {
        assert_eq!(quote("a\"b\\c\n\u{7f}é"), "\"a\\\"b\\\\c\\n\\u007Fé\"");
    }
}
