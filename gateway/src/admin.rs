//! The admin listener: `/healthz` (the process lives), `/readyz` (every listener bound and
//! serving, not shutting down) and `/metrics` (OpenMetrics text).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::error::GatewayError;
use crate::http_server::{self, ServerBody, ServerLimits};
use crate::shared::Shared;

const WHAT: &str = "admin listener";
/// Probes and scrapers need few connections.
const MAX_CONNECTIONS: usize = 64;
/// Probes send tiny requests; a client this slow is stuck.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// OpenMetrics text exposition format, which `prometheus-client` writes.
const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Whether the gateway is ready for traffic.
#[derive(Debug, Default)]
pub(crate) struct Readiness(AtomicU8);

const STARTING: u8 = 0;
const READY: u8 = 1;
const DRAINING: u8 = 2;

impl Readiness {
    pub(crate) fn set_ready(&self) {
        // Never go back from draining to ready.
        let _ = self
            .0
            .compare_exchange(STARTING, READY, Ordering::AcqRel, Ordering::Acquire);
    }

    pub(crate) fn set_draining(&self) {
        self.0.store(DRAINING, Ordering::Release);
    }

    fn state(&self) -> u8 {
        self.0.load(Ordering::Acquire)
    }
}

/// A bound admin listener.
#[derive(Debug)]
pub(crate) struct AdminListener {
    listener: TcpListener,
    addr: SocketAddr,
}

impl AdminListener {
    pub(crate) async fn bind(addr: SocketAddr) -> Result<Self, GatewayError> {
        let listener = http_server::bind(WHAT, addr).await?;
        let addr = listener.local_addr().map_err(|source| GatewayError::Bind {
            what: WHAT,
            addr,
            source,
        })?;
        Ok(Self { listener, addr })
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `stop`, which the gateway cancels only after every other component has
    /// stopped, so `/readyz` answers 503 throughout the shutdown.
    pub(crate) async fn run(
        self,
        shared: Arc<Shared>,
        readiness: Arc<Readiness>,
        stop: CancellationToken,
    ) {
        let limits = ServerLimits {
            max_connections: MAX_CONNECTIONS,
            header_read_timeout: HEADER_READ_TIMEOUT,
            grace: Duration::from_secs(1),
        };
        let handler = move |req: Request<Incoming>| {
            let response = respond(&shared, &readiness, req.method(), req.uri().path());
            async move { response }
        };
        http_server::serve(WHAT, self.listener, limits, stop, handler).await;
    }
}

fn respond(
    shared: &Shared,
    readiness: &Readiness,
    method: &Method,
    path: &str,
) -> Response<ServerBody> {
    if method != Method::GET && method != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
    }
    match path {
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => match readiness.state() {
            READY => text(StatusCode::OK, "ready\n"),
            DRAINING => text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n"),
            _ => text(StatusCode::SERVICE_UNAVAILABLE, "starting\n"),
        },
        "/metrics" => {
            let mut r = body(StatusCode::OK, shared.encode_metrics());
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(METRICS_CONTENT_TYPE),
            );
            r
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /healthz, /readyz or /metrics\n",
        ),
    }
}

fn text(status: StatusCode, s: &'static str) -> Response<ServerBody> {
    let mut r = body(status, s);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn body(status: StatusCode, content: impl Into<Bytes>) -> Response<ServerBody> {
    let mut r = Response::new(
        Full::new(content.into())
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *r.status_mut() = status;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_never_returns_from_draining() {
        let r = Readiness::default();
        assert_eq!(r.state(), STARTING);
        r.set_ready();
        assert_eq!(r.state(), READY);
        r.set_draining();
        r.set_ready();
        assert_eq!(r.state(), DRAINING);
    }
}
