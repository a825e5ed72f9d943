//! `output PID [LINES]`: the recent output of one of our processes, or of one that exited
//! lately (RapidApp::BgTask::TaskPool's read buffer): a header line, `PID  JOB  running since
//! TIME` or `PID  JOB  exited TIME with status N`, then its last LINES lines (all that are
//! kept without LINES), oldest first, as `TIME  STREAM  text`:
//!
//! ```text
//! 4242  resize  exited 2026-11-30T05:12:09 with status 101
//! 2026-11-30T05:12:08  STDOUT  resizing img-7.png
//! 2026-11-30T05:12:09  STDERR  thread 'main' panicked at src/resize.rs:12:5
//! ```
//!
//! Control characters in a line are shown escaped (`\u{1b}`), so no output can play tricks on
//! an operator's terminal, and no line of the reply is a lone `.`. The HTTP API serves the
//! same as JSON, with the same checks ([`request`]).

use crate::console::command::{CommandDef, Reply};
use crate::console::snapshot::utc;
use crate::driver::HostHandle;
use crate::driver::output::ProcessOutput;

pub const DEF: CommandDef = CommandDef {
    name: "output",
    usage: "output PID [LINES]",
    summary: "the process's last LINES lines of stdout and stderr (all that are kept: [driver] output_buffer), also a while after it exited",
};

/// Why an `output` request cannot be answered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OutputError {
    #[error("give a PID: output PID [LINES]")]
    NoPid,
    #[error("PID must be a process id, not {0:?}")]
    BadPid(String),
    #[error("LINES must be a whole number >= 1, not {0:?}")]
    BadLines(String),
    #[error("no output is kept for {0}: it is not one of our processes, or it exited too long ago")]
    NotKept(u32),
    #[error("no output is kept: [driver] output_buffer is 0")]
    Off,
}

impl OutputError {
    /// Whether the request itself is malformed (else it names nothing we have).
    pub fn is_malformed(&self) -> bool {
        matches!(
            self,
            OutputError::NoPid | OutputError::BadPid(_) | OutputError::BadLines(_)
        )
    }
}

/// Checks a request's PID and LINES, as text from the console or the URL.
pub fn parse(pid: Option<&str>, lines: Option<&str>) -> Result<(u32, Option<usize>), OutputError> {
    let pid = match pid {
        None => return Err(OutputError::NoPid),
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|&pid| pid > 0)
            .ok_or_else(|| OutputError::BadPid(text.to_string()))?,
    };
    let lines = match lines {
        None => None,
        Some(text) => Some(
            text.parse::<usize>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| OutputError::BadLines(text.to_string()))?,
        ),
    };
    Ok((pid, lines))
}

/// What is kept for the request's process.
pub fn request(
    host: &HostHandle,
    pid: Option<&str>,
    lines: Option<&str>,
) -> Result<ProcessOutput, OutputError> {
    let (pid, lines) = parse(pid, lines)?;
    match host.output().read(pid, lines) {
        Some(output) => Ok(output),
        None if host.config().driver.output_buffer == 0 => Err(OutputError::Off),
        None => Err(OutputError::NotKept(pid)),
    }
}

pub fn run(host: &HostHandle, pid: Option<&str>, lines: Option<&str>) -> Reply {
    match request(host, pid, lines) {
        Ok(output) => Reply::Lines(render(&output)),
        Err(e) => Reply::error("invalid_value", e.to_string()),
    }
}

/// The reply's lines: the header, then the output.
pub fn render(output: &ProcessOutput) -> Vec<String> {
    let seconds = |ms: i64| utc(ms.div_euclid(1000));
    let mut header = match &output.exited {
        None => format!(
            "{}  {}  running since {}",
            output.pid,
            output.pool,
            seconds(output.started_ms)
        ),
        Some((when, how)) => format!(
            "{}  {}  exited {} with status {how}",
            output.pid,
            output.pool,
            seconds(*when)
        ),
    };
    if output.dropped > 0 {
        header.push_str(&format!(" ({} earlier lines not kept)", output.dropped));
    }
    std::iter::once(header)
        .chain(output.lines.iter().map(|line| {
            let cut = if line.cut { " [line cut]" } else { "" };
            format!(
                "{}  {}  {}{cut}",
                seconds(line.time_ms),
                line.stream.name(),
                escape_controls(&line.text)
            )
        }))
        .collect()
}

/// The text with its control characters (but tabs) written as `\u{..}` escapes.
fn escape_controls(text: &str) -> String {
    if !text.chars().any(|c| c.is_control() && c != '\t') {
        return text.to_string();
    }
    text.chars()
        .map(|c| match c {
            '\t' => c.to_string(),
            c if c.is_control() => c.escape_unicode().to_string(),
            c => c.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::output::{OutputLine, Stream};

    #[test]
    fn requests_are_checked() {
        assert_eq!(parse(Some("42"), None), Ok((42, None)));
        assert_eq!(parse(Some("42"), Some("5")), Ok((42, Some(5))));
        assert_eq!(parse(None, None), Err(OutputError::NoPid));
        for bad in ["abc", "-1", "0", "4294967296", ""] {
            assert_eq!(parse(Some(bad), None), Err(OutputError::BadPid(bad.into())));
        }
        for bad in ["x", "-3", "0", "1.5", "99999999999999999999999"] {
            assert_eq!(
                parse(Some("42"), Some(bad)),
                Err(OutputError::BadLines(bad.into()))
            );
        }
        assert_eq!(
            OutputError::BadLines("x".into()).to_string(),
            "LINES must be a whole number >= 1, not \"x\""
        );
        assert!(OutputError::BadPid("x".into()).is_malformed());
        assert!(!OutputError::NotKept(4).is_malformed());
    }

    #[test]
    fn output_renders_with_a_header_and_escaped_controls() {
        let line = |stream, text: &str, cut| OutputLine {
            time_ms: 1_700_000_001_999,
            stream,
            text: text.into(),
            cut,
        };
        let mut output = ProcessOutput {
            pid: 4242,
            pool: "resize".into(),
            started_ms: 1_700_000_000_000,
            exited: None,
            lines: vec![
                line(Stream::Stdout, "resizing\timg-7.png", false),
                line(Stream::Stderr, "\u{1b}[31mred\u{1b}[0m", false),
                line(Stream::Stdout, ".", true),
            ],
            dropped: 0,
        };
        assert_eq!(
            render(&output),
            [
                "4242  resize  running since 2023-11-14T22:13:20",
                "2023-11-14T22:13:21  STDOUT  resizing\timg-7.png",
                "2023-11-14T22:13:21  STDERR  \\u{1b}[31mred\\u{1b}[0m",
                "2023-11-14T22:13:21  STDOUT  . [line cut]",
            ]
        );
        output.exited = Some((1_700_000_009_000, "101".into()));
        output.dropped = 12;
        output.lines.clear();
        assert_eq!(
            render(&output),
            [
                "4242  resize  exited 2023-11-14T22:13:29 with status 101 (12 earlier lines not kept)"
            ]
        );
    }
}
