//! A small HTTP/1.1 client for the host's HTTP endpoint (one request per connection), and
//! the tools the HTTP tests need from the machine.

use std::io::{Read, Write};
use std::time::Duration;

/// A reply: its status, headers (names lower-cased) and body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }
}

/// `METHOD path` on 127.0.0.1:`port`, with a JSON body and a bearer token when given.
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
) -> Reply {
    let mut headers = vec![("Host", format!("127.0.0.1:{port}"))];
    if let Some(token) = token {
        headers.push(("Authorization", format!("Bearer {token}")));
    }
    if body.is_some() || method == "POST" {
        headers.push(("Content-Type", "application/json".to_string()));
    }
    request_with(port, method, path, body, &headers)
}

/// `METHOD path` with exactly these headers (and `Content-Length` when there is a body).
pub fn request_with(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&str>,
    headers: &[(&str, String)],
) -> Reply {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    let body = body.unwrap_or_default();
    if !body.is_empty() || method == "POST" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read the reply");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a whole reply");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let body = if headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"))
    {
        unchunk(body)
    } else {
        body.to_string()
    };
    Reply {
        status,
        headers,
        body,
    }
}

pub fn get(port: u16, path: &str) -> Reply {
    request(port, "GET", path, None, None)
}

pub fn post(port: u16, path: &str, body: &str) -> Reply {
    request(port, "POST", path, Some(body), None)
}

fn unchunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// A program on PATH, or `None` (after a notice) when it is missing outside CI; in CI
/// (where `.ci/run` installs it) its absence fails the test.
pub fn tool(name: &str, package: &str) -> Option<std::path::PathBuf> {
    let found = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        if super::gearmand_required() {
            panic!("{name} is required in CI but was not found (install Debian's {package})");
        }
        super::notice(&format!(
            "{name} not found; skipping this part (install Debian's {package})"
        ));
    }
    found
}
