//! The HTTP endpoint (`[http] listen`, 127.0.0.1:47301 by default): Prometheus metrics, the
//! console's figures and control commands as a JSON API, and a live status page.
//!
//! - `metrics`: `/metrics`, in the Prometheus text format;
//! - `api`: `/api/status`, `/api/processes` and the POSTs that change the host;
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
/// A connection is closed after this long, whatever it does (a scraper reconnects).
pub const MAX_CONNECTION_AGE: Duration = Duration::from_secs(300);
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
}

/// The routes, for [`run`] and for tests.
pub fn router(context: Context) -> axum::Router {
    use axum::routing::{get, post};
    let guarded = axum::Router::new()
        .route("/metrics", get(metrics::handler))
        .route("/api/status", get(api::status))
        .route("/api/processes", get(api::processes))
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
        .with_state(context)
}

/// Serves until `shutdown` is cancelled.
pub async fn run(listener: TcpListener, context: Context, shutdown: CancellationToken) {
    let service = hyper_util::service::TowerToHyperService::new(router(context));
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut accept_errors = crate::logging::Throttle::new(Duration::from_secs(10));
    let mut refusals = crate::logging::Throttle::new(Duration::from_secs(10));
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                if let Some(held_back) = accept_errors.allow() {
                    tracing::warn!(error = %e, held_back, "http: accept failed");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            if let Some(held_back) = refusals.allow() {
                tracing::warn!(%peer, held_back, "http: {MAX_CONNECTIONS} connections at once; closing one");
            }
            continue;
        };
        let service = service.clone();
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
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(token) if crate::console::commands::auth::same_secret(token, secret) => {
            next.run(request).await
        }
        Some(_) => {
            tracing::warn!(path = %request.uri().path(), "http: wrong bearer token");
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
