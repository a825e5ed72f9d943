//! The admin protocol's replies: `status`, `workers`, `show jobs`, `priority status`
//! rows, one-line `OK …` answers and `ERR …`, written by the server and read by clients.

use super::AdminCommand;
use std::fmt;

/// One row of `status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunctionStatus {
    pub function: String,
    /// Jobs queued for the function, including the ones running.
    pub total: u64,
    pub running: u64,
    pub available_workers: u64,
}

impl FunctionStatus {
    /// Jobs waiting for a worker.
    pub fn waiting(&self) -> u64 {
        self.total.saturating_sub(self.running)
    }
}

/// One row of `workers`: one connection of the job server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerRow {
    pub fd: String,
    pub address: String,
    /// `None` when the connection set no client id (gearmand shows `-`).
    pub client_id: Option<String>,
    pub functions: Vec<String>,
}

/// One row of `prioritystatus`: waiting jobs per priority, then the worker count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PriorityRow {
    pub function: String,
    pub high: u64,
    pub normal: u64,
    pub low: u64,
    pub workers: u64,
}

/// One row of `show jobs`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobRow {
    pub handle: String,
    pub retries: u64,
    pub ignore_job: bool,
    pub job_queued: bool,
}

/// A successful admin reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdminReply {
    Status(Vec<FunctionStatus>),
    Workers(Vec<WorkerRow>),
    PriorityStatus(Vec<PriorityRow>),
    ShowJobs(Vec<JobRow>),
    ShowUniqueJobs(Vec<String>),
    Version(String),
    Pid(u32),
    /// `OK LEVEL` to `verbose`.
    Verbose(String),
    /// A bare `OK` (maxqueue, cancel job, create and drop function).
    Ok,
}

/// A reply line that does not have the shape its command promises.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed {command} reply line {line:?}: {problem}")]
pub struct MalformedReply {
    pub command: &'static str,
    pub line: String,
    pub problem: &'static str,
}

impl fmt::Display for FunctionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}\t{}\t{}\t{}",
            self.function, self.total, self.running, self.available_workers
        )
    }
}

impl fmt::Display for WorkerRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} :",
            self.fd,
            self.address,
            self.client_id.as_deref().unwrap_or("-")
        )?;
        for function in &self.functions {
            write!(f, " {function}")?;
        }
        Ok(())
    }
}

impl fmt::Display for PriorityRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}\t{}\t{}\t{}\t{}",
            self.function, self.high, self.normal, self.low, self.workers
        )
    }
}

impl fmt::Display for JobRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}\t{}\t{}\t{}",
            self.handle,
            self.retries,
            u8::from(self.ignore_job),
            u8::from(self.job_queued)
        )
    }
}

impl AdminReply {
    /// The reply as gearmand writes it.
    pub fn to_wire(&self) -> String {
        fn list<T: fmt::Display>(rows: &[T]) -> String {
            let mut out = String::new();
            for row in rows {
                out.push_str(&row.to_string());
                out.push('\n');
            }
            out.push_str(".\n");
            out
        }
        match self {
            AdminReply::Status(rows) => list(rows),
            AdminReply::Workers(rows) => list(rows),
            AdminReply::PriorityStatus(rows) => list(rows),
            AdminReply::ShowJobs(rows) => list(rows),
            AdminReply::ShowUniqueJobs(rows) => list(rows),
            AdminReply::Version(version) => format!("OK {version}\n"),
            AdminReply::Pid(pid) => format!("OK {pid}\n"),
            AdminReply::Verbose(level) => format!("OK {level}\n"),
            AdminReply::Ok => "OK\r\n".to_string(),
        }
    }

    /// Parses the reply to `command`: the rows before the `.` line of a list reply, or the
    /// single line of a one-line reply (line endings already removed).
    pub fn parse(command: &AdminCommand, lines: &[String]) -> Result<AdminReply, MalformedReply> {
        match command {
            AdminCommand::Status => {
                parse_rows(lines, "status", parse_status_row).map(AdminReply::Status)
            }
            AdminCommand::Workers => {
                parse_rows(lines, "workers", parse_worker_row).map(AdminReply::Workers)
            }
            AdminCommand::PriorityStatus => parse_rows(lines, "prioritystatus", parse_priority_row)
                .map(AdminReply::PriorityStatus),
            AdminCommand::ShowJobs => {
                parse_rows(lines, "show jobs", parse_job_row).map(AdminReply::ShowJobs)
            }
            AdminCommand::ShowUniqueJobs => Ok(AdminReply::ShowUniqueJobs(lines.to_vec())),
            AdminCommand::Version => ok_value(lines, "version").map(AdminReply::Version),
            AdminCommand::Getpid => {
                let value = ok_value(lines, "getpid")?;
                value
                    .parse()
                    .map(AdminReply::Pid)
                    .map_err(|_| malformed("getpid", &value, "the pid is not a number"))
            }
            AdminCommand::MaxQueue { .. } => ok_bare(lines, "maxqueue"),
            AdminCommand::CancelJob { .. } => ok_bare(lines, "cancel job"),
            AdminCommand::Verbose => ok_value(lines, "verbose").map(AdminReply::Verbose),
            AdminCommand::CreateFunction { .. } => ok_bare(lines, "create function"),
            AdminCommand::DropFunction { .. } => ok_bare(lines, "drop function"),
        }
    }
}

fn malformed(command: &'static str, line: &str, problem: &'static str) -> MalformedReply {
    MalformedReply {
        command,
        line: line.to_string(),
        problem,
    }
}

fn parse_rows<T>(
    lines: &[String],
    command: &'static str,
    parse: fn(&str) -> Option<T>,
) -> Result<Vec<T>, MalformedReply> {
    lines
        .iter()
        .map(|line| parse(line).ok_or_else(|| malformed(command, line, "unexpected columns")))
        .collect()
}

fn numbers<const N: usize>(fields: &[&str]) -> Option<[u64; N]> {
    let mut out = [0u64; N];
    if fields.len() != N {
        return None;
    }
    for (slot, field) in out.iter_mut().zip(fields) {
        *slot = field.trim().parse().ok()?;
    }
    Some(out)
}

fn parse_status_row(line: &str) -> Option<FunctionStatus> {
    let fields: Vec<&str> = line.split('\t').collect();
    let (function, rest) = fields.split_first()?;
    let [total, running, available_workers] = numbers::<3>(rest)?;
    Some(FunctionStatus {
        function: function.to_string(),
        total,
        running,
        available_workers,
    })
}

fn parse_priority_row(line: &str) -> Option<PriorityRow> {
    let fields: Vec<&str> = line.split('\t').collect();
    let (function, rest) = fields.split_first()?;
    let [high, normal, low, workers] = numbers::<4>(rest)?;
    Some(PriorityRow {
        function: function.to_string(),
        high,
        normal,
        low,
        workers,
    })
}

fn parse_job_row(line: &str) -> Option<JobRow> {
    let fields: Vec<&str> = line.split('\t').collect();
    let (handle, rest) = fields.split_first()?;
    let [retries, ignore_job, job_queued] = numbers::<3>(rest)?;
    Some(JobRow {
        handle: handle.to_string(),
        retries,
        ignore_job: ignore_job != 0,
        job_queued: job_queued != 0,
    })
}

fn parse_worker_row(line: &str) -> Option<WorkerRow> {
    // `FD ADDRESS CLIENT-ID : FUNCTION…`, split into words: an IPv6 address holds colons
    // but never a space, so the lone `:` word is the separator.
    let mut words = line.split_whitespace();
    let fd = words.next()?.to_string();
    let address = words.next()?.to_string();
    let client_id = words.next()?;
    if words.next()? != ":" {
        return None;
    }
    Some(WorkerRow {
        fd,
        address,
        client_id: (client_id != "-").then(|| client_id.to_string()),
        functions: words.map(str::to_string).collect(),
    })
}

fn single_line<'a>(lines: &'a [String], command: &'static str) -> Result<&'a str, MalformedReply> {
    match lines {
        [line] => Ok(line),
        _ => Err(malformed(
            command,
            &lines.join("\\n"),
            "expected exactly one line",
        )),
    }
}

fn ok_value(lines: &[String], command: &'static str) -> Result<String, MalformedReply> {
    let line = single_line(lines, command)?;
    line.strip_prefix("OK ")
        .map(|v| v.trim().to_string())
        .ok_or_else(|| malformed(command, line, "expected OK and a value"))
}

fn ok_bare(lines: &[String], command: &'static str) -> Result<AdminReply, MalformedReply> {
    let line = single_line(lines, command)?;
    if line.trim() == "OK" {
        Ok(AdminReply::Ok)
    } else {
        Err(malformed(command, line, "expected OK"))
    }
}
