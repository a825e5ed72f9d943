//! Console commands: the one enum every line is parsed into, the table that `help` is
//! generated from, and the reply every command gives.

use super::commands::*;

/// A parsed console line. Arguments stay text: their checks (and error texts) belong to
/// the commands, which check the job name before the numbers, as Gearman::Driver does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `status`, or `status extended` (queue columns too).
    Status {
        extended: bool,
    },
    /// `show JOB`, or `show JOB extended` (each process's figures too).
    Show {
        job: Option<String>,
        extended: bool,
    },
    SetMinProcesses {
        job: Option<String>,
        value: Option<String>,
    },
    SetMaxProcesses {
        job: Option<String>,
        value: Option<String>,
    },
    SetProcesses {
        job: Option<String>,
        min: Option<String>,
        max: Option<String>,
    },
    Kill {
        pids: Vec<String>,
    },
    KillAll {
        jobs: Vec<String>,
    },
    Quit,
    Shutdown,
    Help,
    Version,
    Scoreboard,
    /// `output PID [LINES]`.
    Output {
        pid: Option<String>,
        lines: Option<String>,
    },
    Reload,
    Auth {
        secret: Option<String>,
    },
    /// Anything else, with the word that was not understood.
    Unknown(String),
}

/// How a command is written and what it does, for `help`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommandDef {
    pub name: &'static str,
    pub usage: &'static str,
    pub summary: &'static str,
}

/// Every command, in the order `help` lists them.
pub const COMMANDS: &[CommandDef] = &[
    status::DEF,
    show::DEF,
    set_min_processes::DEF,
    set_max_processes::DEF,
    set_processes::DEF,
    kill::DEF,
    killall::DEF,
    scoreboard::DEF,
    output::DEF,
    reload::DEF,
    shutdown::DEF,
    version::DEF,
    help::DEF,
    auth::DEF,
    quit::DEF,
];

impl Command {
    /// Words split on whitespace; the first names the command (exactly, as Gearman::Driver
    /// matches method names).
    pub fn parse(line: &str) -> Command {
        let mut words = line.split_whitespace().map(str::to_string);
        let Some(name) = words.next() else {
            return Command::Unknown(String::new());
        };
        if name == "auth" {
            // The secret is the rest of the line, spaces and all.
            let rest = line.trim_start()["auth".len()..].trim_start();
            return Command::Auth {
                secret: (!rest.is_empty()).then(|| rest.to_string()),
            };
        }
        let mut args = words;
        let mut next = || args.next();
        match name.as_str() {
            "status" => Command::Status {
                extended: next().as_deref() == Some("extended"),
            },
            "show" => Command::Show {
                job: next(),
                extended: next().as_deref() == Some("extended"),
            },
            "set_min_processes" => Command::SetMinProcesses {
                job: next(),
                value: next(),
            },
            "set_max_processes" => Command::SetMaxProcesses {
                job: next(),
                value: next(),
            },
            "set_processes" => Command::SetProcesses {
                job: next(),
                min: next(),
                max: next(),
            },
            "kill" => Command::Kill {
                pids: args.collect(),
            },
            "killall" => Command::KillAll {
                jobs: args.collect(),
            },
            "quit" => Command::Quit,
            "shutdown" => Command::Shutdown,
            "help" => Command::Help,
            "version" => Command::Version,
            "scoreboard" => Command::Scoreboard,
            "output" => Command::Output {
                pid: next(),
                lines: next(),
            },
            "reload" => Command::Reload,
            _ => Command::Unknown(name),
        }
    }
}

/// What a command answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Lines, then the `.` line.
    Lines(Vec<String>),
    /// `ERR code: text`, then the `.` line.
    Error { code: &'static str, text: String },
    /// Close the connection without a `.` (quit).
    Close,
}

impl Reply {
    pub fn ok() -> Reply {
        Reply::Lines(vec!["OK".into()])
    }

    pub fn error(code: &'static str, text: impl Into<String>) -> Reply {
        Reply::Error {
            code,
            text: text.into(),
        }
    }

    /// The bytes sent: CRLF line endings, and a `.` line after every reply but [`Reply::Close`].
    pub fn render(&self) -> Vec<u8> {
        let mut out = String::new();
        match self {
            Reply::Lines(lines) => {
                for line in lines {
                    out.push_str(line);
                    out.push_str("\r\n");
                }
            }
            Reply::Error { code, text } => {
                out.push_str(&format!("ERR {code}: {text}\r\n"));
            }
            Reply::Close => return Vec::new(),
        }
        out.push_str(".\r\n");
        out.into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_into_commands() {
        assert_eq!(
            Command::parse("status"),
            Command::Status { extended: false }
        );
        assert_eq!(
            Command::parse("status extended"),
            Command::Status { extended: true }
        );
        assert_eq!(
            Command::parse("  show   resize "),
            Command::Show {
                job: Some("resize".into()),
                extended: false
            }
        );
        assert_eq!(
            Command::parse("set_processes a 1 2 extra"),
            Command::SetProcesses {
                job: Some("a".into()),
                min: Some("1".into()),
                max: Some("2".into())
            }
        );
        assert_eq!(
            Command::parse("kill 1 2"),
            Command::Kill {
                pids: vec!["1".into(), "2".into()]
            }
        );
        assert_eq!(Command::parse("killall"), Command::KillAll { jobs: vec![] });
        assert_eq!(
            Command::parse("output 42 10"),
            Command::Output {
                pid: Some("42".into()),
                lines: Some("10".into())
            }
        );
        assert_eq!(Command::parse(""), Command::Unknown(String::new()));
        assert_eq!(Command::parse("STATUS"), Command::Unknown("STATUS".into()));
        assert_eq!(Command::parse("frob x"), Command::Unknown("frob".into()));
    }

    #[test]
    fn replies_render_with_crlf_and_a_dot() {
        assert_eq!(Reply::ok().render(), b"OK\r\n.\r\n");
        assert_eq!(Reply::Lines(vec![]).render(), b".\r\n");
        assert_eq!(
            Reply::error("unknown_command", "frob").render(),
            b"ERR unknown_command: frob\r\n.\r\n"
        );
        assert_eq!(Reply::Close.render(), b"");
    }

    #[test]
    fn every_command_is_in_help_once() {
        let mut names: Vec<&str> = COMMANDS.iter().map(|d| d.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), COMMANDS.len());
        for def in COMMANDS {
            assert!(def.usage.starts_with(def.name), "{def:?}");
            assert_ne!(
                Command::parse(def.name),
                Command::Unknown(def.name.into()),
                "{} parses",
                def.name
            );
        }
    }
}
