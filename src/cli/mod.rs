//! The `geardriver` command line: one definition (clap derive) drives parsing and `--help`,
//! and [`main_with`] dispatches to the command. A user's own binary calls the same entry
//! point with its own [`Registry`], so it is a complete host too.

mod admin;
mod check_config;
mod ctl;
mod host;
pub mod import;
mod server;
mod submit;
mod worker;

use crate::config::Config;
use crate::gearman::{Priority, ServerAddr};
use crate::plugin::Registry;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Runs Gearman worker processes: keeps enough of them alive for each job, scales them with
/// the job servers' queues, and answers an admin console.
#[derive(Debug, Parser)]
#[command(name = "geardriver", version, about)]
pub struct Cli {
    /// Config file [default: $GEARDRIVER_CONFIG, else ./config.toml]
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the host in the foreground (the default)
    Run,
    /// Validate the config and print the resolved job table
    CheckConfig,
    /// Submit one job and print its result
    Submit(SubmitArgs),
    /// Ask a job server's text admin protocol (like gearadmin)
    Admin(AdminArgs),
    /// Send one console command to a running host and print the reply
    Ctl(CtlArgs),
    /// Run only the built-in job server
    Server(ServerArgs),
    /// Print a config.toml that runs the fleet another tool's config describes
    Import(import::ImportArgs),
    /// Serve jobs as one worker process (started by the host)
    #[command(hide = true)]
    Worker(WorkerArgs),
    /// Run a program as a supervised worker process (started by the host)
    #[command(hide = true)]
    Launch(LaunchArgs),
}

#[derive(Debug, clap::Args)]
pub struct SubmitArgs {
    /// Job server, HOST[:PORT]; repeat for several [default: the config's first job server]
    #[arg(long = "server", value_name = "H:P")]
    pub servers: Vec<ServerAddr>,
    /// Queue the job and print its handle instead of waiting for the result
    #[arg(long)]
    pub background: bool,
    /// low, normal or high
    #[arg(long, default_value = "normal", value_name = "PRIORITY")]
    pub priority: Priority,
    /// Unique id: jobs with the same one are run once
    #[arg(long, value_name = "ID")]
    pub unique: Option<String>,
    /// Give up waiting for the result after this many seconds
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<f64>,
    /// The Gearman function
    pub function: String,
    /// The workload [default: read from stdin]
    pub data: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct AdminArgs {
    /// Job server, HOST[:PORT] [default: the config's first job server]
    #[arg(long, value_name = "H:P")]
    pub server: Option<ServerAddr>,
    /// Seconds to wait for the job server
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    pub timeout: f64,
    /// status, workers, version, getpid, prioritystatus, show jobs, show unique jobs,
    /// maxqueue FUNCTION [N | HIGH NORMAL LOW], cancel job HANDLE
    #[arg(required = true, num_args = 1.., value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct CtlArgs {
    /// Console address [default: the config's [console] listen]
    #[arg(long, value_name = "H:P")]
    pub console: Option<String>,
    /// The console secret, sent with `auth` first [default: $GEARDRIVER_CONSOLE_SECRET, else
    /// the config's [console] secret]
    #[arg(long, value_name = "SECRET")]
    pub secret: Option<String>,
    /// Seconds to wait for the reply
    #[arg(long, default_value_t = 30.0, value_name = "SECS")]
    pub timeout: f64,
    /// The console command and its arguments, e.g. `status` or `set_processes resize 1 4`
    #[arg(required = true, num_args = 1.., value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// Address to listen on [default: the config's [server] listen]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Hand-outs of a job whose workers keep going away before it fails; 0 = never
    /// [default: the config's [server] job_retries, else 3]
    #[arg(long, value_name = "N")]
    pub job_retries: Option<u32>,
    /// Keep background jobs in this SQLite file across restarts (gearmand's libsqlite3
    /// layout) [default: the config's [server] queue, else memory only]
    #[arg(long, value_name = "PATH")]
    pub queue: Option<PathBuf>,
    /// What a crash may cost the queue: "normal" (nothing after a process crash) or "full"
    /// (nothing after a power loss; an fsync per group of jobs) [default: the config's, else
    /// normal]
    #[arg(long, value_name = "MODE")]
    pub queue_sync: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// The pool this process serves (shown by `ps`; the host passes the rest in the
    /// environment)
    #[arg(long, value_name = "NAME")]
    pub pool: Option<String>,
    /// Without a spec from the host: a job server; repeat for several
    #[arg(long = "server", value_name = "H:P")]
    pub servers: Vec<ServerAddr>,
    /// Without a spec from the host: FUNCTION[=PLUGIN] to serve; repeat for several. The
    /// plugin defaults to the function name.
    #[arg(long = "function", value_name = "FUNCTION[=PLUGIN]")]
    pub functions: Vec<String>,
    /// Client id shown by the job server's `workers` command
    #[arg(long, value_name = "ID")]
    pub client_id: Option<String>,
    /// Without a spec from the host: do not fetch the next job while a short one runs
    #[arg(long)]
    pub no_prefetch: bool,
    /// Without a spec from the host: jobs run at once, each by its own worker loop
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub concurrency: u32,
}

#[derive(Debug, clap::Args)]
pub struct LaunchArgs {
    /// Stop (SIGTERM) when the process with this pid is no longer our parent
    #[arg(long, value_name = "PID")]
    pub parent_pid: u32,
    /// The inherited stats table's descriptor
    #[arg(long, value_name = "FD", requires = "slot")]
    pub stats_fd: Option<i32>,
    /// The program's slot in the stats table
    #[arg(long, value_name = "N")]
    pub slot: Option<usize>,
    /// The pool's functions, in order; repeat
    #[arg(long = "function", value_name = "NAME")]
    pub functions: Vec<String>,
    /// How long the program may finish its job once the host is gone
    #[arg(long, value_name = "MS", default_value_t = 30_000)]
    pub shutdown_timeout_ms: u64,
    /// Ask the program to stop after this long, to be replaced
    #[arg(long, value_name = "MS")]
    pub max_lifetime_ms: Option<u64>,
    /// The program and its arguments
    #[arg(last = true, required = true, value_name = "ARGV")]
    pub argv: Vec<String>,
}

/// How a command ended, mapped to the process exit code.
#[derive(Debug)]
pub enum Outcome {
    Success,
    /// The command ran and failed (a failed job, an unreachable server): exit 1.
    Failed(String),
    /// The command could not run as asked (bad arguments, bad config): exit 2.
    Usage(String),
}

impl Outcome {
    fn exit(self) -> ExitCode {
        match self {
            Outcome::Success => ExitCode::SUCCESS,
            Outcome::Failed(message) => {
                if !message.is_empty() {
                    eprintln!("geardriver: {message}");
                }
                ExitCode::from(1)
            }
            Outcome::Usage(message) => {
                eprintln!("geardriver: {message}");
                ExitCode::from(2)
            }
        }
    }
}

/// The whole `geardriver` program with the built-in workers.
/// Writes `text` to stdout. A reader that went away (`| head`) ends the command quietly,
/// as it would end `cat`, instead of a panic from `print!`.
pub(crate) fn out(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(141); // 128 + SIGPIPE, as a shell reports it
        }
        eprintln!("geardriver: cannot write to stdout: {e}");
        std::process::exit(1);
    }
}

pub fn main() -> ExitCode {
    main_with(Registry::with_builtins())
}

/// The whole program with the plugins and codecs of `registry`: a user's binary registers
/// its workers and calls this.
pub fn main_with(registry: Registry) -> ExitCode {
    let cli = Cli::parse();
    run(cli, registry).exit()
}

/// Logging for the short-lived commands: warnings and errors on stderr.
fn init_cli_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("GEARDRIVER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn run(cli: Cli, registry: Registry) -> Outcome {
    let config_path = cli.config.clone();
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => host::run(config_path, registry),
        Command::CheckConfig => check_config::run(config_path, &registry),
        Command::Submit(mut args) => {
            init_cli_tracing();
            let servers =
                match default_servers(std::mem::take(&mut args.servers), config_path, &registry) {
                    Ok(servers) => servers,
                    Err(outcome) => return outcome,
                };
            block_on(submit::run(args, servers))
        }
        Command::Admin(mut args) => {
            init_cli_tracing();
            let given: Vec<ServerAddr> = args.server.take().into_iter().collect();
            let server = match default_servers(given, config_path, &registry) {
                Ok(mut servers) => servers.remove(0),
                Err(outcome) => return outcome,
            };
            block_on(admin::run(args, server))
        }
        Command::Worker(args) => worker::run(args, &registry),
        Command::Launch(args) => worker::launch(args),
        Command::Ctl(args) => {
            init_cli_tracing();
            ctl::run(args, config_path, &registry)
        }
        Command::Server(args) => server::run(args, config_path, &registry),
        Command::Import(args) => import::run(args),
    }
}

/// `--server` values; else the config's first job server; else 127.0.0.1:4730 when there is
/// no config file at all (an explicit `--config` must exist).
fn default_servers(
    given: Vec<ServerAddr>,
    config: Option<PathBuf>,
    registry: &Registry,
) -> Result<Vec<ServerAddr>, Outcome> {
    if !given.is_empty() {
        return Ok(given);
    }
    let explicit = config.is_some() || std::env::var_os(crate::config::PATH_VAR).is_some();
    let path = Config::resolve_path(config.as_deref());
    if !explicit && !path.exists() {
        return Ok(vec![ServerAddr::new(
            "127.0.0.1",
            crate::gearman::DEFAULT_PORT,
        )]);
    }
    match Config::load(&path, registry) {
        Ok(config) => Ok(vec![config.driver.job_servers[0].clone()]),
        Err(e) => Err(Outcome::Usage(format!("{e} (or give --server)"))),
    }
}

/// Runs a short-lived command on a single-threaded runtime.
fn block_on(future: impl std::future::Future<Output = Outcome>) -> Outcome {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(future),
        Err(e) => Outcome::Failed(format!("cannot start the async runtime: {e}")),
    }
}
