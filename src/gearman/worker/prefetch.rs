//! Prefetch: while a short job runs, the next one is already on its way.
//!
//! A worker process that finishes jobs quickly is bound by the job server's round trip, not by
//! its own work: after WORK_COMPLETE it waits for GRAB_JOB → JOB_ASSIGN. With prefetch the
//! worker keeps a second connection to the job server and asks for the next job on it while
//! the current one runs, so the two round trips overlap with the work.
//!
//! Why a second connection and not a second GRAB_JOB on the same one (gearmand 1.1 does
//! assign a second job to a busy connection): the protocol has no way to give a job back
//! except closing the connection that holds it, and closing the one the running job came on
//! would lose that job's result. A job held on a connection of its own can be given back at
//! any moment by shutting that socket down; gearmand and the built-in server then queue it
//! again at once.
//!
//! Fair and safe:
//! - [`Recent`]: a function is prefetched behind only while its last [`RECENT`] runs each
//!   took at most [`SHORT_RUN`];
//! - [`Releaser`]: a job held while the running one takes longer than [`Recent::hold_limit`]
//!   is given back, by a thread of its own (so also while a job blocks the runtime). A
//!   process told to stop runs the held job (it is short) before it exits; one that dies
//!   gives it back through the kernel closing its sockets. So a held job is held for tens of
//!   milliseconds at most: far below the
//!   [`CAN_DO_TIMEOUT`](crate::gearman::Packet::CanDoTimeout) margin the worker registers,
//!   and the job's own timeout counts from when it starts.
//! - Before shutting a connection down to give its job back, the worker sends
//!   ECHO_REQ [`GIVE_BACK`]: the built-in server then queues the job again without counting
//!   a retry against it (`job_retries`); gearmand echoes it and counts one.

use std::os::fd::OwnedFd;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The ECHO_REQ payload a worker sends on a connection it is about to close to give its job
/// back: not a failure of that job.
pub const GIVE_BACK: &[u8] = b"geardriver:give-back";

/// A function's runs that decide whether to prefetch behind it.
pub const RECENT: usize = 8;
/// The longest run that still counts as short.
pub const SHORT_RUN: Duration = Duration::from_millis(10);
/// Bounds of how long a job may be held behind a running one.
const HOLD_MIN: Duration = Duration::from_millis(5);
const HOLD_MAX: Duration = Duration::from_millis(40);

/// The last [`RECENT`] run times of one function, in microseconds.
#[derive(Clone, Debug, Default)]
pub struct Recent {
    runs: [u32; RECENT],
    /// Runs recorded, up to [`RECENT`].
    seen: usize,
    next: usize,
}

impl Recent {
    pub fn record(&mut self, took: Duration) {
        self.runs[self.next] = u32::try_from(took.as_micros()).unwrap_or(u32::MAX);
        self.next = (self.next + 1) % RECENT;
        self.seen = (self.seen + 1).min(RECENT);
    }

    fn longest(&self) -> Duration {
        let micros = self.runs[..self.seen].iter().copied().max().unwrap_or(0);
        Duration::from_micros(u64::from(micros))
    }

    /// Whether a job may be held behind one of this function's: its last [`RECENT`] runs
    /// were all short.
    pub fn short(&self) -> bool {
        self.seen == RECENT && self.longest() <= SHORT_RUN
    }

    /// How long after one of this function's jobs started a job held behind it is given
    /// back: four times its longest recent run, within [5 ms, 40 ms].
    pub fn hold_limit(&self) -> Duration {
        (self.longest() * 4).clamp(HOLD_MIN, HOLD_MAX)
    }
}

/// Gives a held job back to its job server when the job running ahead of it overruns, by
/// shutting down the socket it was assigned on.
#[derive(Clone)]
pub struct Releaser {
    shared: Arc<(Mutex<Held>, Condvar)>,
}

#[derive(Default)]
struct Held {
    armed: Option<Armed>,
    /// Numbers the holds, so a hold disarmed late learns it was given back.
    count: u64,
    /// When the thread wakes up next on its own; `None`: only when told. A new hold wakes
    /// it only when its deadline comes earlier, so a stream of short jobs costs no wake-up
    /// per job.
    sleeping_until: Option<Instant>,
}

struct Armed {
    id: u64,
    deadline: Instant,
    socket: Arc<OwnedFd>,
}

/// One hold: [`Releaser::keep`] tells whether the held job is still this worker's.
#[must_use]
pub struct Hold {
    id: u64,
}

impl Releaser {
    /// Starts the thread that gives jobs back.
    pub fn start() -> std::io::Result<Releaser> {
        let releaser = Releaser {
            shared: Arc::new((Mutex::new(Held::default()), Condvar::new())),
        };
        let watcher = releaser.clone();
        std::thread::Builder::new()
            .name("prefetch".into())
            .spawn(move || watcher.serve())?;
        Ok(releaser)
    }

    /// Holds a job assigned on `socket` until `deadline`: past it the socket is shut down
    /// and the job server queues the job again.
    pub fn hold(&self, socket: Arc<OwnedFd>, deadline: Instant) -> Hold {
        let (held, wake) = &*self.shared;
        let mut held = lock(held);
        held.count += 1;
        let id = held.count;
        held.armed = Some(Armed {
            id,
            deadline,
            socket,
        });
        if held.sleeping_until.is_none_or(|wakes| wakes > deadline) {
            wake.notify_all();
        }
        Hold { id }
    }

    /// Ends a hold. `true`: the job is still this worker's to run; `false`: it was given
    /// back (its connection is shut down).
    pub fn keep(&self, hold: Hold) -> bool {
        let mut held = lock(&self.shared.0);
        match &held.armed {
            Some(armed) if armed.id == hold.id => {
                held.armed = None;
                true
            }
            _ => false,
        }
    }

    fn serve(&self) {
        let (held, wake) = &*self.shared;
        let mut state = lock(held);
        loop {
            let now = Instant::now();
            state = match &state.armed {
                None => {
                    state.sleeping_until = None;
                    wake.wait(state).unwrap_or_else(|e| e.into_inner())
                }
                Some(armed) if armed.deadline <= now => {
                    let armed = state.armed.take().expect("armed");
                    give_back(&armed.socket);
                    tracing::debug!(
                        "gave a prefetched job back to the job server: the job ahead of it ran long"
                    );
                    state
                }
                Some(armed) => {
                    let deadline = armed.deadline;
                    state.sleeping_until = Some(deadline);
                    wake.wait_timeout(state, deadline - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
    }
}

/// Says why, then shuts the connection down both ways: the job server sees it end and queues
/// the job again; the worker's reads on it fail and it reconnects. Nothing else writes on a
/// connection while it holds a prefetched job (its GRAB_JOB went out before the hold).
fn give_back(socket: &OwnedFd) {
    use tokio_util::codec::Encoder;
    let mut wire = bytes::BytesMut::new();
    let echo = crate::gearman::Packet::EchoReq {
        data: bytes::Bytes::from_static(GIVE_BACK),
    };
    if super::super::codec::ClientCodec::new(super::super::codec::DEFAULT_MAX_FRAME)
        .encode(echo, &mut wire)
        .is_ok()
    {
        // A few bytes into an empty send buffer (the socket is non-blocking, SIGPIPE
        // ignored); if they cannot go at once, the job server counts a retry, nothing worse.
        let _ = socket2::SockRef::from(socket).send(&wire);
    }
    let _ = socket2::SockRef::from(socket).shutdown(std::net::Shutdown::Both);
}

fn lock(held: &Mutex<Held>) -> std::sync::MutexGuard<'_, Held> {
    held.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_function_is_short_after_eight_short_runs_and_until_one_long_one() {
        let mut recent = Recent::default();
        for _ in 0..RECENT - 1 {
            recent.record(Duration::from_millis(1));
            assert!(!recent.short(), "too few runs to judge");
        }
        recent.record(Duration::from_millis(1));
        assert!(recent.short());
        assert_eq!(recent.hold_limit(), Duration::from_millis(5));
        recent.record(Duration::from_millis(8));
        assert!(recent.short());
        assert_eq!(recent.hold_limit(), Duration::from_millis(32));
        recent.record(Duration::from_secs(2));
        assert!(!recent.short());
        for _ in 0..RECENT - 1 {
            recent.record(Duration::from_millis(1));
        }
        assert!(
            !recent.short(),
            "the long run is still among the last eight"
        );
        recent.record(Duration::from_millis(1));
        assert!(recent.short());
    }

    /// The job server's end, and a duplicate of the worker's (the worker keeps the original).
    fn pair() -> (std::net::TcpStream, Arc<OwnedFd>, std::net::TcpStream) {
        use std::os::fd::AsFd;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let ours = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (theirs, _) = listener.accept().unwrap();
        let duplicate = Arc::new(ours.as_fd().try_clone_to_owned().unwrap());
        (theirs, duplicate, ours)
    }

    /// What the job server's end read before the connection ended, or `None` if it did not
    /// end within 200 ms.
    fn ended(mut theirs: &std::net::TcpStream) -> Option<Vec<u8>> {
        use std::io::Read;
        theirs
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut got = Vec::new();
        theirs.read_to_end(&mut got).ok().map(|_| got)
    }

    #[test]
    fn a_hold_kept_in_time_leaves_the_connection_alone() {
        let releaser = Releaser::start().unwrap();
        let (theirs, socket, _ours) = pair();
        let hold = releaser.hold(socket, Instant::now() + Duration::from_secs(5));
        assert!(releaser.keep(hold));
        assert_eq!(ended(&theirs), None);
    }

    #[test]
    fn a_hold_past_its_deadline_is_given_back() {
        let releaser = Releaser::start().unwrap();
        let (theirs, socket, _ours) = pair();
        let hold = releaser.hold(socket, Instant::now() + Duration::from_millis(20));
        let said = ended(&theirs).expect("the job server sees the connection end");
        // ECHO_REQ with the give-back marker, first.
        assert_eq!(&said[..4], b"\0REQ");
        assert_eq!(u32::from_be_bytes(said[4..8].try_into().unwrap()), 16);
        assert_eq!(&said[12..], GIVE_BACK);
        assert!(!releaser.keep(hold));
    }
}
