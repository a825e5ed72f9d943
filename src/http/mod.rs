//! The HTTP endpoint (`[http] listen`, 127.0.0.1:47301 by default): Prometheus metrics, the
//! console's figures and control commands as a JSON API, and a live status page.
//!
//! - `metrics`: `/metrics`, in the Prometheus text format;
//! - `api`: `/api/status`, `/api/processes`, `/api/processes/PID/output` and the POSTs that
//!   change the host;
//! - `page`: `/`, the status page (files embedded in the binary).
//!
//! The same rule as the console: a listen address that is not loopback needs the console's
//! secret (config check), and with a secret every request for figures or changes carries it
//! as `Authorization: Bearer SECRET`; a wrong one is answered after a delay, like a wrong
//! `auth`. The page itself holds no figures and is served to anyone; it asks for the secret
//! when the API says it is needed.
//!
//! Every connection is bounded like the console's: a cap on connections at once, a deadline
//! for a request's headers, and a connection that stays idle is closed.

pub mod api;
pub mod metrics;
mod page;

use crate::driver::HostHandle;
use crate::gearman::server::Probe;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Connections served at once; more are closed at once.
pub const MAX_CONNECTIONS: usize = 64;
/// A request's headers must arrive within this, and a kept-alive connection that sends no
/// request for this long is closed.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// A request (its body included) must arrive and be answered within this.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection is closed after this long, whatever it does (a scraper reconnects).
pub const MAX_CONNECTION_AGE: Duration = Duration::from_secs(60);
/// The wait before a wrong secret is answered.
pub const AUTH_FAILURE_DELAY: Duration = Duration::from_secs(1);

/// What the handlers read.
#[derive(Clone)]
pub struct Context {
    pub host: HostHandle,
    /// The built-in job server, when the host runs one.
    pub server: Option<Probe>,
    pub secret: Option<Arc<str>>,
    pub started: Instant,
    /// Wrong tokens are logged at most this often.
    pub auth_failures: Arc<std::sync::Mutex<crate::logging::Throttle>>,
}

impl Context {
    pub fn new(host: HostHandle, server: Option<Probe>, secret: Option<&str>) -> Context {
        Context {
            host,
            server,
            secret: secret.map(Arc::from),
            started: Instant::now(),
            auth_failures: Arc::new(std::sync::Mutex::new(crate::logging::Throttle::new(
                Duration::from_secs(10),
            ))),
        }
    }
}

/// The routes, for [`run`] and for tests.
pub fn router(context: Context) -> axum::Router {
    use axum::routing::{get, post};
    let guarded = axum::Router::new()
        .route("/metrics", get(metrics::handler))
        .route("/api/status", get(api::status))
        .route("/api/processes", get(api::processes))
        .route("/api/processes/{pid}/output", get(api::output))
        .route("/api/jobs/{job}/processes", post(api::set_processes))
        .route("/api/kill", post(api::kill))
        .route("/api/killall", post(api::killall))
        .route("/api/reload", post(api::reload))
        .route_layer(axum::middleware::from_fn_with_state(
            context.clone(),
            authorize,
        ));
    axum::Router::new()
        .route("/", get(page::index))
        .route("/app.js", get(page::script))
        .route("/style.css", get(page::style))
        .merge(guarded)
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            context.clone(),
            same_site,
        ))
        .layer(axum::middleware::from_fn(deadline))
        .with_state(context)
}

/// The client whose request this is (set per connection by [`run`]).
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub std::net::SocketAddr);

/// A request that has not arrived and been answered within [`REQUEST_TIMEOUT`] (a body sent
/// a byte at a time) gets 408, and its connection is closed.
async fn deadline(request: Request, next: Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            let mut response = api::error(
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                &format!(
                    "the request was not complete within {} s",
                    REQUEST_TIMEOUT.as_secs()
                ),
            );
            response.headers_mut().insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
            response
        }
    }
}

/// Only the host's own pages may drive it from a browser. Without a secret anyone on the
/// machine may use the endpoint, so a web page must not: a request whose `Host` names
/// anything but an address or `localhost` (DNS rebinding) is refused, and so is a POST from
/// another origin, or one whose body is not JSON (a cross-site form or a `no-cors` fetch).
async fn same_site(State(context): State<Context>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_string();
    if context.secret.is_none() && !is_address_or_localhost(&host) {
        return api::error(
            StatusCode::FORBIDDEN,
            "forbidden",
            &format!("requests must name the host by address or localhost, not {host:?}"),
        );
    }
    if request.method() == axum::http::Method::POST {
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or_default();
            let from = origin.split_once("://").map_or(origin, |(_, rest)| rest);
            if !from.eq_ignore_ascii_case(&host) {
                return api::error(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    &format!("a change from another site ({origin}) is refused"),
                );
            }
        }
        let json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|t| t.to_str().ok())
            .is_some_and(|t| {
                let t = t.split(';').next().unwrap_or_default().trim();
                t.eq_ignore_ascii_case("application/json")
                    || (t.starts_with("application/") && t.ends_with("+json"))
            });
        if !json {
            return api::error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "invalid_input",
                "changes are POSTs with \"Content-Type: application/json\"",
            );
        }
    }
    next.run(request).await
}

/// `127.0.0.1:47301`, `[::1]:47301`, `localhost:47301` (any port, or none).
fn is_address_or_localhost(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => {
            return v6
                .split(']')
                .next()
                .is_some_and(|a| a.parse::<std::net::Ipv6Addr>().is_ok());
        }
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::Ipv4Addr>().is_ok()
}

/// Serves until `shutdown` is cancelled.
pub async fn run(listener: TcpListener, context: Context, shutdown: CancellationToken) {
    let router = router(context);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut accept_errors = crate::logging::Throttle::new(Duration::from_secs(10));
    let mut refusals = crate::logging::Throttle::new(Duration::from_secs(10));
    loop {
        let accepted = crate::limits::accept(&listener, &shutdown, &mut accept_errors, "http");
        let Some((stream, peer)) = accepted.await else {
            return;
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            if let Some(held_back) = refusals.allow() {
                tracing::warn!(%peer, held_back, "http: {MAX_CONNECTIONS} connections at once; closing one");
            }
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(
            router.clone().layer(axum::Extension(Peer(peer))),
        );
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            tokio::select! {
                _ = connection => {}
                _ = tokio::time::sleep(MAX_CONNECTION_AGE) => {}
                _ = shutdown.cancelled() => {}
            }
            drop(permit);
        });
    }
}

/// With a secret, lets through only requests that carry it as a bearer token.
async fn authorize(State(context): State<Context>, request: Request, next: Next) -> Response {
    let Some(secret) = &context.secret else {
        return next.run(request).await;
    };
    // Bytes, not text: a secret may be any UTF-8. The scheme's name is case-insensitive;
    // HTTP cannot carry spaces around the token, so the secret's own are not asked for.
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes())
        .filter(|v| v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer "))
        .map(|v| String::from_utf8_lossy(&v[7..]).trim().to_string());
    match given {
        Some(token) if crate::console::commands::auth::same_secret(&token, secret.trim()) => {
            next.run(request).await
        }
        Some(_) => {
            let peer = request.extensions().get::<Peer>().map(|p| p.0.to_string());
            let allowed = context
                .auth_failures
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .allow();
            if let Some(held_back) = allowed {
                tracing::warn!(peer = peer.as_deref().unwrap_or("?"), path = %request.uri().path(), held_back, "http: wrong bearer token");
            }
            tokio::time::sleep(AUTH_FAILURE_DELAY).await;
            unauthorized("wrong secret")
        }
        None => unauthorized("send the console's secret as \"Authorization: Bearer SECRET\""),
    }
}

fn unauthorized(message: &str) -> Response {
    let mut response = api::error(StatusCode::UNAUTHORIZED, "auth_required", message);
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer realm=\"geardriver\""),
    );
    response
}

async fn not_found(request: Request) -> Response {
    api::error(
        StatusCode::NOT_FOUND,
        "not_found",
        &format!(
            "no such page: {} (try /, /metrics, /api/status or /api/processes)",
            request.uri().path()
        ),
    )
    .into_response()
}
