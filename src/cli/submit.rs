//! `geardriver submit`: submit one job, stream what it reports, print its result.
//!
//! The result and WORK_DATA chunks go to stdout as raw bytes; warnings and progress go to
//! stderr. A failed job prints the reason on stderr and exits 1.

use super::{Outcome, SubmitArgs};
use crate::gearman::{Client, ClientOptions, JobEvent, JobRequest, ServerAddr};
use bytes::Bytes;
use std::io::{IsTerminal, Read, Write};
use std::time::Duration;

pub async fn run(args: SubmitArgs, servers: Vec<ServerAddr>) -> Outcome {
    let data = match args.data {
        Some(data) => Bytes::from(data),
        None => {
            let mut buf = Vec::new();
            if let Err(e) = std::io::stdin().read_to_end(&mut buf) {
                return Outcome::Failed(format!("cannot read the workload from stdin: {e}"));
            }
            Bytes::from(buf)
        }
    };
    let timeout = match args.timeout.map(Duration::try_from_secs_f64) {
        None => None,
        Some(Ok(t)) => Some(t),
        Some(Err(_)) => {
            return Outcome::Usage("--timeout must be a positive number of seconds".into());
        }
    };
    let client = match Client::new(servers, ClientOptions::default()) {
        Ok(client) => client,
        Err(e) => return Outcome::Usage(e.to_string()),
    };
    let mut request = JobRequest::new(args.function.clone(), data).priority(args.priority);
    request.background = args.background;
    request.unique = args.unique.map(Bytes::from);
    let follow = async {
        let mut job = client.submit(request).await.map_err(|e| e.to_string())?;
        if args.background {
            println!("{}", String::from_utf8_lossy(&job.handle.handle));
            return Ok(Outcome::Success);
        }
        let mut stdout = std::io::stdout().lock();
        let mut last_byte = None;
        let mut write = |bytes: &[u8]| -> Result<(), String> {
            if let Some(&b) = bytes.last() {
                last_byte = Some(b);
            }
            stdout
                .write_all(bytes)
                .and_then(|()| stdout.flush())
                .map_err(|e| format!("cannot write the result: {e}"))
        };
        // Workers report a failure's message as a warning just before WORK_FAIL.
        let mut last_warning = None;
        while let Some(event) = job.next_event().await {
            match event.map_err(|e| e.to_string())? {
                JobEvent::Data(chunk) => write(&chunk)?,
                JobEvent::Warning(text) => {
                    let text = String::from_utf8_lossy(&text).into_owned();
                    eprintln!("warning: {text}");
                    last_warning = Some(text);
                }
                JobEvent::Status {
                    numerator,
                    denominator,
                } => eprintln!("status: {numerator}/{denominator}"),
                JobEvent::Complete(result) => {
                    write(&result)?;
                    // A terminal gets its prompt back on a new line; a pipe gets the exact bytes.
                    if std::io::stdout().is_terminal() && last_byte.is_some_and(|b| b != b'\n') {
                        println!();
                    }
                    return Ok(Outcome::Success);
                }
                JobEvent::Fail => {
                    return Ok(Outcome::Failed(match last_warning {
                        Some(message) => format!("job {} failed: {message}", args.function),
                        None => format!("job {} failed", args.function),
                    }));
                }
                JobEvent::Exception(message) => {
                    return Ok(Outcome::Failed(format!(
                        "job {} failed: {}",
                        args.function,
                        String::from_utf8_lossy(&message)
                    )));
                }
            }
        }
        Err("the job ended without a result".to_string())
    };
    let result = match timeout {
        None => follow.await,
        Some(limit) => tokio::time::timeout(limit, follow)
            .await
            .unwrap_or_else(|_| Err(format!("no result within {limit:?}"))),
    };
    result.unwrap_or_else(Outcome::Failed)
}
