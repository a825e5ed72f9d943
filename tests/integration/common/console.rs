//! A console client for tests: sends raw bytes, reads raw replies.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

pub struct Console {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Console {
    pub fn connect(port: u16) -> Console {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the console");
        stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        Console {
            writer: stream.try_clone().unwrap(),
            reader: BufReader::new(stream),
        }
    }

    /// Sends bytes as they are.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).unwrap();
    }

    /// Reads one reply, up to and including its `.` line, as raw text.
    pub fn read_reply(&mut self) -> String {
        let mut reply = String::new();
        loop {
            let mut line = String::new();
            let n = self.reader.read_line(&mut line).expect("read a reply line");
            assert!(n > 0, "connection closed mid-reply after {reply:?}");
            reply.push_str(&line);
            if line == ".\r\n" {
                return reply;
            }
        }
    }

    /// Sends one command line (CRLF) and returns the raw reply.
    pub fn cmd(&mut self, line: &str) -> String {
        self.send_raw(format!("{line}\r\n").as_bytes());
        self.read_reply()
    }

    /// The reply's lines, without the `.` line and line endings.
    pub fn lines(&mut self, line: &str) -> Vec<String> {
        let reply = self.cmd(line);
        let mut lines: Vec<String> = reply.split("\r\n").map(str::to_string).collect();
        assert_eq!(lines.pop().as_deref(), Some(""));
        assert_eq!(lines.pop().as_deref(), Some("."));
        lines
    }

    /// Whatever arrives before the server closes the connection.
    pub fn read_to_close(&mut self) -> String {
        let mut rest = String::new();
        let _ = self.reader.read_to_string(&mut rest);
        rest
    }
}
