//! `geardriver ctl COMMAND…`: one console command to a running host, its reply printed
//! (without the `.` line); exit 1 when the reply is an `ERR`. The console address comes from
//! the config unless `--console` is given; the secret (sent with `auth` first) from
//! `--secret`, else `$GEARDRIVER_CONSOLE_SECRET`, else the config.

use super::{CtlArgs, Outcome};
use crate::config::Config;
use crate::plugin::Registry;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const MAX_REPLY_LINE: u64 = 64 * 1024;

pub fn run(args: CtlArgs, config: Option<PathBuf>, registry: &Registry) -> Outcome {
    let path = Config::resolve_path(config.as_deref());
    let explicit = config.is_some() || std::env::var_os(crate::config::PATH_VAR).is_some();
    let loaded = if explicit || path.exists() {
        match Config::load(&path, registry) {
            Ok(config) => Some(config),
            Err(e) if args.console.is_none() => {
                return Outcome::Usage(format!("{e} (or give --console)"));
            }
            Err(_) => None,
        }
    } else {
        None
    };
    let secret = args
        .secret
        .clone()
        .or_else(|| std::env::var(crate::config::SECRET_VARS[1]).ok())
        .or_else(|| loaded.as_ref().and_then(|c| c.console.secret.clone()));
    let address = match (&args.console, &loaded) {
        (Some(given), _) => given.clone(),
        (None, Some(config)) => match config.console.listen {
            Some(addr) => addr.to_string(),
            None => {
                return Outcome::Usage(format!(
                    "the console is off in {} (give --console)",
                    path.display()
                ));
            }
        },
        (None, None) => "127.0.0.1:47300".to_string(),
    };
    let Ok(timeout) = Duration::try_from_secs_f64(args.timeout) else {
        return Outcome::Usage("--timeout must be a positive number of seconds".into());
    };
    let line = args.command.join(" ");
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return Outcome::Failed(format!("cannot start the async runtime: {e}")),
    };
    let exchange = async {
        let stream = TcpStream::connect(&address)
            .await
            .map_err(|e| format!("cannot connect to the console at {address}: {e}"))?;
        let mut stream = BufReader::new(stream);
        if let Some(secret) = &secret {
            let reply = send(&mut stream, &format!("auth {secret}")).await?;
            if reply.first().is_some_and(|l| l.starts_with("ERR ")) {
                return Ok(reply);
            }
        }
        if line.trim() == "quit" {
            return Ok(Vec::new());
        }
        send(&mut stream, &line).await
    };
    match runtime.block_on(async { tokio::time::timeout(timeout, exchange).await }) {
        Err(_) => Outcome::Failed(format!(
            "no reply from the console at {address} within {timeout:?}"
        )),
        Ok(Err(message)) => Outcome::Failed(message),
        Ok(Ok(reply)) => {
            if reply.first().is_some_and(|l| l.starts_with("ERR ")) {
                for l in &reply {
                    eprintln!("{l}");
                }
                Outcome::Failed(String::new())
            } else {
                super::out(&reply.iter().map(|l| format!("{l}\n")).collect::<String>());
                Outcome::Success
            }
        }
    }
}

/// Sends one line and reads the reply up to its `.` line.
async fn send(stream: &mut BufReader<TcpStream>, line: &str) -> Result<Vec<String>, String> {
    stream
        .get_mut()
        .write_all(format!("{line}\r\n").as_bytes())
        .await
        .map_err(|e| format!("cannot send to the console: {e}"))?;
    let mut reply = Vec::new();
    loop {
        let mut buf = Vec::new();
        let n = (&mut *stream)
            .take(MAX_REPLY_LINE)
            .read_until(b'\n', &mut buf)
            .await
            .map_err(|e| format!("console: {e}"))?;
        if n == 0 {
            return Err("the console closed the connection before the end of the reply".into());
        }
        let text = String::from_utf8_lossy(&buf)
            .trim_end_matches(['\r', '\n'])
            .to_string();
        if text == "." {
            return Ok(reply);
        }
        reply.push(text);
    }
}
