//! The job server's text admin protocol, as typed commands and replies.
//!
//! Both directions live here so the client (`geardriver admin`, the autoscaler) and the
//! built-in job server share one definition of each line: [`AdminCommand::parse`] and
//! [`AdminReply::to_wire`] are the server's half, [`AdminCommand::to_line`] and
//! [`AdminReply::parse`] the client's. The formats are gearmand 1.1's, byte for byte: list
//! replies are LF-terminated rows then `.`, one-line replies are `OK …`, errors are
//! `ERR CODE url+encoded+text` with CRLF.

use std::fmt;

/// How `maxqueue` sets a function's queue limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaxQueueLimits {
    /// No size given: back to the server's default (unlimited).
    Default,
    /// One size for every priority.
    All(i64),
    /// One size per priority; zero or less means unlimited.
    PerPriority { high: i64, normal: i64, low: i64 },
}

/// A text admin command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdminCommand {
    Status,
    Workers,
    Version,
    Getpid,
    ShowJobs,
    ShowUniqueJobs,
    PriorityStatus,
    MaxQueue {
        function: String,
        limits: MaxQueueLimits,
    },
    CancelJob {
        handle: String,
    },
    /// The server's log level (gearadmin `--server-verbose`).
    Verbose,
    /// gearadmin `--create-function`.
    CreateFunction {
        function: String,
    },
    /// gearadmin `--drop-function`: refused while the function has workers or jobs.
    DropFunction {
        function: String,
    },
}

/// Whether a command's reply is a `.`-terminated list or a single line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyShape {
    List,
    Line,
}

/// An `ERR CODE text` reply.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}{}{}", if text.is_empty() { "" } else { ": " }, text)]
pub struct AdminError {
    /// gearmand's upper-case code, e.g. `UNKNOWN_COMMAND`.
    pub code: String,
    /// The text, already URL-decoded.
    pub text: String,
}

impl AdminError {
    pub fn new(code: &str, text: impl Into<String>) -> Self {
        AdminError {
            code: code.to_string(),
            text: text.into(),
        }
    }

    /// The reply as gearmand writes it: `ERR CODE url+encoded+text\r\n`.
    pub fn to_wire(&self) -> String {
        if self.text.is_empty() {
            format!("ERR {}\r\n", self.code)
        } else {
            format!("ERR {} {}\r\n", self.code, url_encode(&self.text))
        }
    }

    /// Parses an `ERR …` line; `None` when the line is not an error.
    pub fn parse(line: &str) -> Option<AdminError> {
        let rest = line.strip_prefix("ERR")?;
        if !(rest.is_empty() || rest.starts_with(' ')) {
            return None;
        }
        let rest = rest.trim_start();
        let (code, text) = rest.split_once(' ').unwrap_or((rest, ""));
        Some(AdminError {
            code: code.to_string(),
            text: url_decode(text),
        })
    }
}

impl AdminCommand {
    /// The command line as a client sends it. CRLF, because gearmand computes some argument
    /// lengths assuming two line-ending bytes.
    pub fn to_line(&self) -> String {
        let body = match self {
            AdminCommand::Status => "status".to_string(),
            AdminCommand::Workers => "workers".to_string(),
            AdminCommand::Version => "version".to_string(),
            AdminCommand::Getpid => "getpid".to_string(),
            AdminCommand::ShowJobs => "show jobs".to_string(),
            AdminCommand::ShowUniqueJobs => "show unique jobs".to_string(),
            AdminCommand::PriorityStatus => "prioritystatus".to_string(),
            AdminCommand::MaxQueue { function, limits } => match limits {
                MaxQueueLimits::Default => format!("maxqueue {function}"),
                MaxQueueLimits::All(n) => format!("maxqueue {function} {n}"),
                MaxQueueLimits::PerPriority { high, normal, low } => {
                    format!("maxqueue {function} {high} {normal} {low}")
                }
            },
            AdminCommand::CancelJob { handle } => format!("cancel job {handle}"),
            AdminCommand::Verbose => "verbose".to_string(),
            AdminCommand::CreateFunction { function } => format!("create function {function}"),
            AdminCommand::DropFunction { function } => format!("drop function {function}"),
        };
        body + "\r\n"
    }

    pub fn reply_shape(&self) -> ReplyShape {
        match self {
            AdminCommand::Status
            | AdminCommand::Workers
            | AdminCommand::ShowJobs
            | AdminCommand::ShowUniqueJobs
            | AdminCommand::PriorityStatus => ReplyShape::List,
            AdminCommand::Version
            | AdminCommand::Getpid
            | AdminCommand::MaxQueue { .. }
            | AdminCommand::CancelJob { .. }
            | AdminCommand::Verbose
            | AdminCommand::CreateFunction { .. }
            | AdminCommand::DropFunction { .. } => ReplyShape::Line,
        }
    }

    /// Parses a command line as gearmand does: words split on whitespace, the command
    /// case-insensitive. Errors carry gearmand's codes and texts.
    pub fn parse(line: &str) -> Result<AdminCommand, AdminError> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some(first) = words.first() else {
            return Err(unknown_command(""));
        };
        let command = first.to_ascii_lowercase();
        let args = &words[1..];
        match command.as_str() {
            "status" => Ok(AdminCommand::Status),
            "workers" => Ok(AdminCommand::Workers),
            "version" => Ok(AdminCommand::Version),
            "getpid" => Ok(AdminCommand::Getpid),
            "prioritystatus" => Ok(AdminCommand::PriorityStatus),
            "show" => match args
                .iter()
                .map(|w| w.to_ascii_lowercase())
                .collect::<Vec<_>>()
                .as_slice()
            {
                [jobs] if jobs == "jobs" => Ok(AdminCommand::ShowJobs),
                [unique, jobs] if unique == "unique" && jobs == "jobs" => {
                    Ok(AdminCommand::ShowUniqueJobs)
                }
                _ => Err(AdminError::new("UNKNOWN_SHOW_ARGUMENTS", "")),
            },
            "maxqueue" => {
                let Some(function) = args.first() else {
                    return Err(AdminError::new(
                        "INVALID_ARGUMENTS",
                        "An incomplete set of arguments was sent to this command maxqueue",
                    ));
                };
                let numbers = args[1..]
                    .iter()
                    .map(|w| w.parse::<i64>())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| {
                        AdminError::new("INVALID_ARGUMENTS", "maxqueue sizes must be whole numbers")
                    })?;
                let limits = match numbers.as_slice() {
                    [] => MaxQueueLimits::Default,
                    [high, normal, low, ..] => MaxQueueLimits::PerPriority {
                        high: *high,
                        normal: *normal,
                        low: *low,
                    },
                    [all, ..] => MaxQueueLimits::All(*all),
                };
                Ok(AdminCommand::MaxQueue {
                    function: function.to_string(),
                    limits,
                })
            }
            "cancel" => match args {
                [job, handle] if job.eq_ignore_ascii_case("job") => Ok(AdminCommand::CancelJob {
                    handle: handle.to_string(),
                }),
                _ => Err(unknown_command(first)),
            },
            "verbose" => Ok(AdminCommand::Verbose),
            "create" | "drop" => {
                let function = match args {
                    [word, function, ..] if word.eq_ignore_ascii_case("function") => {
                        function.to_string()
                    }
                    _ => {
                        return Err(AdminError::new(
                            "INVALID_ARGUMENTS",
                            format!(
                                "An incomplete set of arguments was sent to this command {command}"
                            ),
                        ));
                    }
                };
                Ok(if command == "create" {
                    AdminCommand::CreateFunction { function }
                } else {
                    AdminCommand::DropFunction { function }
                })
            }
            _ => Err(unknown_command(first)),
        }
    }
}

fn unknown_command(word: &str) -> AdminError {
    // gearmand appends the command word to its text with no separator.
    AdminError::new("UNKNOWN_COMMAND", format!("Unknown server command{word}"))
}

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

/// gearmand's encoding of error texts: spaces become `+`, other unsafe bytes `%XX`.
pub fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b' ' => out.push('+'),
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Reverses [`url_encode`]; malformed escapes are kept as they are.
pub fn url_decode(text: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                bytes.get(i + 1).and_then(|&b| hex(b)),
                bytes.get(i + 2).and_then(|&b| hex(b)),
            ) {
                (Some(high), Some(low)) => {
                    out.push(high << 4 | low);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(s: &[&str]) -> Vec<String> {
        s.iter().map(|l| l.to_string()).collect()
    }

    #[test]
    fn parses_gearmand_replies_seen_on_the_wire() {
        let status =
            AdminReply::parse(&AdminCommand::Status, &lines(&["testfn\t2\t1\t1"])).unwrap();
        assert_eq!(
            status,
            AdminReply::Status(vec![FunctionStatus {
                function: "testfn".into(),
                total: 2,
                running: 1,
                available_workers: 1
            }])
        );
        let workers = AdminReply::parse(
            &AdminCommand::Workers,
            &lines(&["39 127.0.0.1 - :", "38 ::1 w1 : testfn other"]),
        )
        .unwrap();
        let AdminReply::Workers(rows) = workers else {
            panic!()
        };
        assert_eq!(rows[0].functions, Vec::<String>::new());
        assert_eq!(rows[0].client_id, None);
        assert_eq!(rows[1].address, "::1");
        assert_eq!(rows[1].client_id.as_deref(), Some("w1"));
        assert_eq!(rows[1].functions, vec!["testfn", "other"]);
        assert_eq!(
            AdminReply::parse(&AdminCommand::Version, &lines(&["OK 1.1.20+ds"])).unwrap(),
            AdminReply::Version("1.1.20+ds".into())
        );
        assert_eq!(
            AdminReply::parse(&AdminCommand::Getpid, &lines(&["OK 5948"])).unwrap(),
            AdminReply::Pid(5948)
        );
        let jobs =
            AdminReply::parse(&AdminCommand::ShowJobs, &lines(&["H:vm:1\t0\t0\t1"])).unwrap();
        assert_eq!(
            jobs,
            AdminReply::ShowJobs(vec![JobRow {
                handle: "H:vm:1".into(),
                retries: 0,
                ignore_job: false,
                job_queued: true
            }])
        );
        assert!(AdminReply::parse(&AdminCommand::Status, &lines(&["f\tx\t1\t1"])).is_err());
        assert!(AdminReply::parse(&AdminCommand::Getpid, &lines(&["OK pid"])).is_err());
    }

    #[test]
    fn errors_round_trip_with_gearmand_encoding() {
        let wire = "ERR UNKNOWN_COMMAND Unknown+server+commandbogus";
        let err = AdminError::parse(wire).unwrap();
        assert_eq!(err.code, "UNKNOWN_COMMAND");
        assert_eq!(err.text, "Unknown server commandbogus");
        assert_eq!(err.to_wire(), format!("{wire}\r\n"));
        assert_eq!(AdminError::parse("ERR UNKNOWN_JOB").unwrap().text, "");
        assert_eq!(AdminError::parse("ERRATIC"), None);
        assert_eq!(url_decode("a%2Bb+c%"), "a+b c%");
    }

    #[test]
    fn commands_parse_like_gearmand() {
        assert_eq!(AdminCommand::parse("STATUS"), Ok(AdminCommand::Status));
        assert_eq!(
            AdminCommand::parse("show unique jobs"),
            Ok(AdminCommand::ShowUniqueJobs)
        );
        assert_eq!(
            AdminCommand::parse("show bogus").unwrap_err().to_wire(),
            "ERR UNKNOWN_SHOW_ARGUMENTS\r\n"
        );
        assert_eq!(
            AdminCommand::parse("bogus").unwrap_err().to_wire(),
            "ERR UNKNOWN_COMMAND Unknown+server+commandbogus\r\n"
        );
        assert_eq!(
            AdminCommand::parse("maxqueue").unwrap_err().to_wire(),
            "ERR INVALID_ARGUMENTS An+incomplete+set+of+arguments+was+sent+to+this+command+maxqueue\r\n"
        );
        assert_eq!(
            AdminCommand::parse("maxqueue f 1 2 3"),
            Ok(AdminCommand::MaxQueue {
                function: "f".into(),
                limits: MaxQueueLimits::PerPriority {
                    high: 1,
                    normal: 2,
                    low: 3
                }
            })
        );
        assert_eq!(
            AdminCommand::parse("cancel job H:x:1"),
            Ok(AdminCommand::CancelJob {
                handle: "H:x:1".into()
            })
        );
        for command in [
            AdminCommand::Status,
            AdminCommand::ShowJobs,
            AdminCommand::MaxQueue {
                function: "f".into(),
                limits: MaxQueueLimits::All(4),
            },
            AdminCommand::CancelJob {
                handle: "H:1".into(),
            },
        ] {
            assert_eq!(
                AdminCommand::parse(command.to_line().trim_end()),
                Ok(command)
            );
        }
    }
}
