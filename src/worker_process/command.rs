//! A `command` worker's job: the program run once per job, payload on stdin, result from
//! stdout, stderr relayed line by line; a non-zero exit fails the job.

use bytes::Bytes;
use std::collections::BTreeMap;
use tokio::io::AsyncWriteExt;

/// Longest stdout a command may produce as a result, and longest stderr kept as its message.
const COMMAND_OUTPUT_LIMIT: usize = 64 * 1024 * 1024;
const COMMAND_MESSAGE_LIMIT: usize = 4096;

/// Runs a command for one job: the payload on stdin, the result from stdout; a non-zero exit
/// fails the job with (the end of) its stderr. The argv runs directly, never via a shell.
///
/// Both outputs are read as they come: stdout up to [`COMMAND_OUTPUT_LIMIT`] (past it the
/// command is killed and the job fails), stderr line by line onto this process's stderr, so
/// the host logs every line (`STDERR: …`) whether the job succeeds or not, with only its
/// last [`COMMAND_MESSAGE_LIMIT`] bytes kept for a failure's message.
pub(super) async fn run_command(
    argv: &[String],
    env: &BTreeMap<String, String>,
    input: Bytes,
) -> Result<Bytes, String> {
    use tokio::io::AsyncReadExt;
    let mut child = tokio::process::Command::new(&argv[0])
        .args(&argv[1..])
        .envs(env)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {:?}: {e}", argv[0]))?;
    let mut stdin = child.stdin.take().expect("piped");
    let mut stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let feed = async move {
        // A command that does not read its input closes the pipe early; that is its business.
        let _ = stdin.write_all(&input).await;
        drop(stdin);
        Ok::<(), String>(())
    };
    let read_stdout = async {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = stdout
                .read(&mut buf)
                .await
                .map_err(|e| format!("{:?}: {e}", argv[0]))?;
            if n == 0 {
                return Ok(out);
            }
            if out.len() + n > COMMAND_OUTPUT_LIMIT {
                return Err(format!(
                    "{:?} wrote more than {COMMAND_OUTPUT_LIMIT} bytes",
                    argv[0]
                ));
            }
            out.extend_from_slice(&buf[..n]);
        }
    };
    let waited = async {
        child
            .wait()
            .await
            .map_err(|e| format!("{:?}: {e}", argv[0]))
    };
    let outcome = tokio::try_join!(feed, read_stdout, relay_stderr(stderr), waited);
    let (_, stdout, stderr, status) = match outcome {
        Ok(all) => all,
        Err(message) => {
            let _ = child.start_kill();
            return Err(message);
        }
    };
    if status.success() {
        return Ok(Bytes::from(stdout));
    }
    let message = String::from_utf8_lossy(&stderr).trim().to_string();
    let status = match status.code() {
        Some(code) => format!("exit status {code}"),
        None => "killed by a signal".into(),
    };
    Err(if message.is_empty() {
        format!("{} failed ({status})", argv[0])
    } else {
        format!("{} failed ({status}): {message}", argv[0])
    })
}

/// Copies a command's stderr onto this process's, line by line as the lines come (the host
/// logs them), and returns its last [`COMMAND_MESSAGE_LIMIT`] bytes (`…` in front when cut).
async fn relay_stderr(mut stderr: tokio::process::ChildStderr) -> Result<Vec<u8>, String> {
    use std::io::Write;
    use tokio::io::AsyncReadExt;
    let mut tail: Vec<u8> = Vec::new();
    let mut cut = false;
    let mut line: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 8192];
    let relay = |line: &mut Vec<u8>| {
        if !line.is_empty() {
            line.push(b'\n');
            let _ = std::io::stderr().lock().write_all(line);
            line.clear();
        }
    };
    loop {
        let n = stderr.read(&mut buf).await.unwrap_or(0);
        if n == 0 {
            break;
        }
        for &b in &buf[..n] {
            if b == b'\n' {
                relay(&mut line);
            } else if line.len() < COMMAND_MESSAGE_LIMIT {
                line.push(b);
            }
        }
        tail.extend_from_slice(&buf[..n]);
        if tail.len() > 2 * COMMAND_MESSAGE_LIMIT {
            tail.drain(..tail.len() - COMMAND_MESSAGE_LIMIT);
            cut = true;
        }
    }
    relay(&mut line); // a last line without a newline
    if tail.len() > COMMAND_MESSAGE_LIMIT {
        tail.drain(..tail.len() - COMMAND_MESSAGE_LIMIT);
        cut = true;
    }
    if cut {
        // Start at a character boundary.
        while tail.first().is_some_and(|b| b & 0xC0 == 0x80) {
            tail.remove(0);
        }
        let mut marked = "…".as_bytes().to_vec();
        marked.extend_from_slice(&tail);
        tail = marked;
    }
    Ok(tail)
}
