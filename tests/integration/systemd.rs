//! systemd's notify protocol against a fake notify socket: READY once the host serves,
//! watchdog pings while it runs, RELOADING then READY around a SIGHUP, STOPPING at a stop;
//! worker processes do not inherit the socket.

use crate::common;

use common::host::{Host, config_dir};
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(15);

/// The next notification that contains `needle`, with every one read before it.
fn expect(socket: &UnixDatagram, needle: &str, within: Duration) -> (String, Vec<String>) {
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        socket
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match socket.recv(&mut buf) {
            Ok(n) => {
                let message = String::from_utf8_lossy(&buf[..n]).into_owned();
                if message.contains(needle) {
                    return (message, seen);
                }
                seen.push(message);
            }
            Err(_) => break,
        }
    }
    panic!("no notification with {needle:?} within {within:?}; got {seen:?}");
}

fn environ(pid: u32) -> String {
    String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default())
        .replace('\0', "\n")
}

#[test]
fn the_host_tells_systemd_it_is_ready_alive_reloading_and_stopping() {
    let server = common::JobServer::start(common::ServerKind::Builtin).expect("built-in server");
    let (dir, config) = config_dir(
        &[server.addr().to_string()],
        "",
        "[[jobs]]\nname = \"reverse\"\nworker = \"reverse\"\nmin_processes = 1\n",
    );
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    let mut host = Host::start_with_env(
        dir,
        config,
        &[
            ("NOTIFY_SOCKET", path.to_str().unwrap()),
            ("WATCHDOG_USEC", "400000"),
        ],
    );
    let (ready, before) = expect(&socket, "READY=1", LIMIT);
    assert!(before.is_empty(), "nothing before READY: {before:?}");
    assert!(
        ready.contains(&format!("MAINPID={}", host.pid())),
        "{ready}"
    );
    assert!(ready.contains("STATUS=serving 1 jobs"), "{ready}");
    // Pings every 0.2 s.
    let started = Instant::now();
    for _ in 0..4 {
        expect(&socket, "WATCHDOG=1", Duration::from_secs(2));
    }
    assert!(started.elapsed() < Duration::from_secs(3));
    let worker = host.wait_workers("reverse", 1, LIMIT)[0];
    let env = environ(worker);
    assert!(env.contains("GEARDRIVER"), "environ readable: {env}");
    for var in ["NOTIFY_SOCKET", "WATCHDOG_USEC"] {
        assert!(
            !env.contains(&format!("{var}=")),
            "{var} in the worker's environment"
        );
    }
    host.signal(nix::sys::signal::Signal::SIGHUP);
    let (reloading, _) = expect(&socket, "RELOADING=1", LIMIT);
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    let (ready, _) = expect(&socket, "READY=1", LIMIT);
    assert!(ready.contains("STATUS=config reloaded"), "{ready}");
    host.signal(nix::sys::signal::Signal::SIGTERM);
    expect(&socket, "STOPPING=1", LIMIT);
    assert!(host.wait_exit(LIMIT).success());
    assert!(
        !host.log().contains("stopped ticking"),
        "a stop is not a stuck supervisor: {}",
        host.log()
    );
}

#[test]
fn an_abstract_notify_socket_works_and_a_broken_one_does_not_stop_the_host() {
    use std::os::linux::net::SocketAddrExt;
    let name = format!(
        "geardriver-test-{}-{}",
        std::process::id(),
        common::free_port()
    );
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let socket = UnixDatagram::bind_addr(&addr).unwrap();
    let server = common::JobServer::start(common::ServerKind::Builtin).expect("built-in server");
    let (dir, config) = config_dir(&[server.addr().to_string()], "", "");
    let mut host = Host::start_with_env(dir, config, &[("NOTIFY_SOCKET", &format!("@{name}"))]);
    expect(&socket, "READY=1", LIMIT);
    host.signal(nix::sys::signal::Signal::SIGTERM);
    expect(&socket, "STOPPING=1", LIMIT);
    assert!(host.wait_exit(LIMIT).success());

    // Nobody listening there: logged, and the host serves on.
    let (dir, config) = config_dir(&[server.addr().to_string()], "", "");
    let gone = dir.path().join("nobody.sock");
    let mut host = Host::start_with_env(dir, config, &[("NOTIFY_SOCKET", gone.to_str().unwrap())]);
    host.wait_log("cannot notify systemd", LIMIT);
    host.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(host.wait_exit(LIMIT).success(), "{}", host.log());
}
