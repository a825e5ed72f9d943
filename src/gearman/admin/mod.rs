//! The job server's text admin protocol, as typed commands and replies.
//!
//! Both directions live here so the client (`geardriver admin`, the autoscaler) and the
//! built-in job server share one definition of each line: [`AdminCommand::parse`] and
//! [`AdminReply::to_wire`] are the server's half, [`AdminCommand::to_line`] and
//! [`AdminReply::parse`] the client's. The formats are gearmand 1.1's, byte for byte: list
//! replies are LF-terminated rows then `.`, one-line replies are `OK …`, errors are
//! `ERR CODE url+encoded+text` with CRLF.
//!
//! Here the commands (and the error encoding); the replies and their rows in `reply`.

mod reply;

pub use reply::{AdminReply, FunctionStatus, JobRow, MalformedReply, PriorityRow, WorkerRow};

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
