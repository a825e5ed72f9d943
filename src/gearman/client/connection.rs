//! One job server connection, owned by a task that writes requests and reads everything the
//! server sends: a FIFO of what each request expects back, WORK_* packets routed by job
//! handle to the foreground jobs listening. The [`super::Client`] only holds handles.

use super::{ClientError, JobEvent, JobStatus};
use crate::gearman::addr::ServerAddr;
use crate::gearman::codec::{ClientCodec, ProtocolError};
use crate::gearman::packet::Packet;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::codec::Framed;

/// A handle on a connection's task.
#[derive(Clone)]
pub(super) struct Connection {
    pub(super) requests: mpsc::UnboundedSender<Request>,
    /// Why the task ended, once it has: what a request that could not be sent is told.
    pub(super) ended: Arc<std::sync::OnceLock<String>>,
    /// Changes (its sender is dropped) once the task is gone and has answered every request
    /// it took: a request still unanswered then was lost in the channel as it closed.
    pub(super) finished: watch::Receiver<()>,
}

impl Connection {
    pub(super) fn send(&self, addr: &ServerAddr, request: Request) -> Result<(), ClientError> {
        self.requests.send(request).map_err(|_| {
            let reason = self
                .ended
                .get()
                .map_or("the connection closed", String::as_str);
            lost(addr, reason)
        })
    }

    pub(super) fn is_closed(&self) -> bool {
        self.requests.is_closed()
    }

    /// The reply to a request sent on this connection, or why there will be none: a request
    /// sent just as the connection failed can miss both the task and its last drain.
    pub(super) async fn reply<T>(
        &self,
        addr: &ServerAddr,
        mut rx: oneshot::Receiver<Result<T, ClientError>>,
    ) -> Result<T, ClientError> {
        let mut finished = self.finished.clone();
        tokio::select! {
            biased;
            reply = &mut rx => reply.unwrap_or_else(|_| Err(lost(addr, "closed before the reply"))),
            _ = finished.changed() => rx.try_recv().unwrap_or_else(|_| {
                let reason = self.ended.get().map_or("the connection closed", String::as_str);
                Err(lost(addr, reason))
            }),
        }
    }
}

/// Creates what a connection's task reports its end through.
pub(super) fn finished_signal() -> (watch::Sender<()>, watch::Receiver<()>) {
    watch::channel(())
}

/// What a request expects back.
pub(super) enum Expect {
    Created {
        events: Option<mpsc::UnboundedSender<JobEvent>>,
        reply: oneshot::Sender<Result<Bytes, ClientError>>,
    },
    Status(oneshot::Sender<Result<JobStatus, ClientError>>),
    Echo(oneshot::Sender<Result<Bytes, ClientError>>),
    OptionSet(oneshot::Sender<Result<Bytes, ClientError>>),
}

pub(super) struct Request {
    pub(super) packet: Packet,
    pub(super) expect: Expect,
}

pub(super) fn lost(addr: &ServerAddr, reason: &str) -> ClientError {
    ClientError::ConnectionLost {
        addr: addr.clone(),
        reason: reason.to_string(),
    }
}

/// The state of one connection's task.
struct ConnectionState {
    addr: ServerAddr,
    pending: VecDeque<Expect>,
    jobs: HashMap<Bytes, Vec<mpsc::UnboundedSender<JobEvent>>>,
}

/// Owns one server connection until it fails or nobody needs it any more.
pub(super) async fn run_connection(
    addr: ServerAddr,
    mut framed: Framed<tokio::net::TcpStream, ClientCodec>,
    mut requests: mpsc::UnboundedReceiver<Request>,
    ended: Arc<std::sync::OnceLock<String>>,
    finished: watch::Sender<()>,
) {
    let mut state = ConnectionState {
        addr,
        pending: VecDeque::new(),
        jobs: HashMap::new(),
    };
    let mut accepting = true;
    let failure: String = loop {
        if !accepting && state.pending.is_empty() && state.jobs_abandoned() {
            return;
        }
        tokio::select! {
            request = requests.recv(), if accepting => match request {
                Some(Request { packet, expect }) => {
                    if let Err(e) = framed.send(packet).await {
                        let reason = e.to_string();
                        if matches!(e, ProtocolError::Io(_)) {
                            state.pending.push_back(expect);
                            break reason;
                        }
                        // An unencodable packet fails its own request only.
                        expect.fail(ClientError::Encode { addr: state.addr.clone(), reason });
                        continue;
                    }
                    state.pending.push_back(expect);
                }
                None => accepting = false,
            },
            packet = framed.next() => match packet {
                Some(Ok(packet)) => {
                    if let Err(reason) = state.dispatch(packet) {
                        break reason;
                    }
                }
                Some(Err(e)) => break e.to_string(),
                None => break "the server closed the connection".to_string(),
            },
        }
    };
    tracing::debug!(server = %state.addr, reason = %failure, "client connection ended");
    let _ = ended.set(failure.clone());
    for expect in state.pending.drain(..) {
        expect.fail(lost(&state.addr, &failure));
    }
    // Requests queued but never written learn why too.
    requests.close();
    while let Ok(request) = requests.try_recv() {
        request.expect.fail(lost(&state.addr, &failure));
    }
    // Dropping the event senders tells every waiting foreground job the connection is gone,
    // and dropping `finished` every request whose reply did not come (also on early return).
    drop(finished);
}

impl Expect {
    fn fail(self, error: ClientError) {
        match self {
            Expect::Created { reply, .. } => drop(reply.send(Err(error))),
            Expect::Status(reply) => drop(reply.send(Err(error))),
            Expect::Echo(reply) | Expect::OptionSet(reply) => drop(reply.send(Err(error))),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Expect::Created { .. } => "JOB_CREATED",
            Expect::Status(_) => "STATUS_RES",
            Expect::Echo(_) => "ECHO_RES",
            Expect::OptionSet(_) => "OPTION_RES",
        }
    }
}

impl ConnectionState {
    fn jobs_abandoned(&mut self) -> bool {
        self.jobs.retain(|_, listeners| {
            listeners.retain(|l| !l.is_closed());
            !listeners.is_empty()
        });
        self.jobs.is_empty()
    }

    /// Handles one packet from the server; an error ends the connection.
    fn dispatch(&mut self, packet: Packet) -> Result<(), String> {
        match packet {
            Packet::WorkData { handle, data } => self.notify(&handle, JobEvent::Data(data), false),
            Packet::WorkWarning { handle, data } => {
                self.notify(&handle, JobEvent::Warning(data), false)
            }
            Packet::WorkStatus {
                handle,
                numerator,
                denominator,
            } => self.notify(
                &handle,
                JobEvent::Status {
                    numerator,
                    denominator,
                },
                false,
            ),
            Packet::WorkComplete { handle, data } => {
                self.notify(&handle, JobEvent::Complete(data), true)
            }
            Packet::WorkFail { handle } => self.notify(&handle, JobEvent::Fail, true),
            Packet::WorkException { handle, data } => {
                self.notify(&handle, JobEvent::Exception(data), true)
            }
            Packet::Noop => {}
            reply => return self.answer(reply),
        }
        Ok(())
    }

    fn notify(&mut self, handle: &Bytes, event: JobEvent, last: bool) {
        if last {
            if let Some(listeners) = self.jobs.remove(handle) {
                for listener in listeners {
                    let _ = listener.send(event.clone());
                }
            }
        } else if let Some(listeners) = self.jobs.get(handle) {
            for listener in listeners {
                let _ = listener.send(event.clone());
            }
        }
    }

    /// Matches a reply packet with the oldest request still waiting for one.
    fn answer(&mut self, reply: Packet) -> Result<(), String> {
        let Some(expect) = self.pending.pop_front() else {
            return Err(format!(
                "unexpected {} packet with no request waiting",
                reply.packet_type()
            ));
        };
        match (expect, reply) {
            (expect, Packet::Error { code, text }) => {
                expect.fail(ClientError::Server {
                    addr: self.addr.clone(),
                    code: String::from_utf8_lossy(&code).into_owned(),
                    text: String::from_utf8_lossy(&text).into_owned(),
                });
            }
            (Expect::Created { events, reply }, Packet::JobCreated { handle }) => {
                if let Some(events) = events {
                    self.jobs.entry(handle.clone()).or_default().push(events);
                }
                let _ = reply.send(Ok(handle));
            }
            (
                Expect::Status(reply),
                Packet::StatusRes {
                    handle,
                    known,
                    running,
                    numerator,
                    denominator,
                },
            ) => {
                let _ = reply.send(Ok(JobStatus {
                    id: handle,
                    known,
                    running,
                    numerator,
                    denominator,
                    waiting_clients: None,
                }));
            }
            (
                Expect::Status(reply),
                Packet::StatusResUnique {
                    unique,
                    known,
                    running,
                    numerator,
                    denominator,
                    waiting,
                },
            ) => {
                let _ = reply.send(Ok(JobStatus {
                    id: unique,
                    known,
                    running,
                    numerator,
                    denominator,
                    waiting_clients: Some(waiting),
                }));
            }
            (Expect::Echo(reply), Packet::EchoRes { data }) => drop(reply.send(Ok(data))),
            (Expect::OptionSet(reply), Packet::OptionRes { option }) => {
                drop(reply.send(Ok(option)))
            }
            (expect, reply) => {
                let reason = format!(
                    "expected {} but the server sent {}",
                    expect.name(),
                    reply.packet_type()
                );
                expect.fail(lost(&self.addr, &reason));
                return Err(reason);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A request sent as the connection failed, after the task's last drain: the task never
    /// sees it, and the channel keeps it as long as any handle lives. Its caller must hear
    /// why at once, not wait out the client's timeout.
    #[tokio::test]
    async fn a_request_lost_as_the_connection_ends_is_told_why() {
        let addr = ServerAddr::new("127.0.0.1", 4730);
        let (requests, _never_read) = mpsc::unbounded_channel();
        let (finished_tx, finished) = finished_signal();
        let conn = Connection {
            requests,
            ended: Arc::new(std::sync::OnceLock::from("bad magic".to_string())),
            finished,
        };
        let (reply_tx, reply_rx) = oneshot::channel();
        let packet = Packet::EchoReq {
            data: Bytes::from_static(b"x"),
        };
        let expect = Expect::Echo(reply_tx);
        conn.send(&addr, Request { packet, expect }).unwrap();
        drop(finished_tx);
        let reply = tokio::time::timeout(Duration::from_secs(5), conn.reply(&addr, reply_rx))
            .await
            .expect("the caller was left waiting");
        let err = reply.unwrap_err().to_string();
        assert!(err.contains("bad magic"), "{err}");
    }

    /// A reply the task gave before it ended is the answer, not the end.
    #[tokio::test]
    async fn a_reply_given_before_the_end_is_kept() {
        let addr = ServerAddr::new("127.0.0.1", 4730);
        let (requests, _never_read) = mpsc::unbounded_channel();
        let (finished_tx, finished) = finished_signal();
        let conn = Connection {
            requests,
            ended: Arc::new(std::sync::OnceLock::new()),
            finished,
        };
        let (reply_tx, reply_rx) = oneshot::channel::<Result<Bytes, ClientError>>();
        reply_tx.send(Ok(Bytes::from_static(b"pong"))).unwrap();
        drop(finished_tx);
        let reply = conn.reply(&addr, reply_rx).await.unwrap();
        assert_eq!(reply, Bytes::from_static(b"pong"));
    }
}
