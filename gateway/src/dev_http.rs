//! Dev mode: a plain HTTP/1.1 listener for trying the mesh without a sidecar. The caller
//! *states* its identity in `x-aimux-identity` and names the destination service in `Host`;
//! routing, access rules and metrics then work as for sidecar traffic, keyed on that claim.
//! Nothing is verified, so this is for experiments only, never production.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use aimux_certs::{IdentityKind, SpiffeId, TrustDomain, WorkloadName};
use aimux_wire::{Intent, Outcome, Protocol};
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::uri::Authority;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::error::GatewayError;
use crate::forward::body::{BoxError, RequestBody, ResponseBody};
use crate::forward::headers::{self, IDENTITY_HEADER};
use crate::forward::{ForwardError, Outgoing};
use crate::http_server::{self, ServerBody, ServerLimits};
use crate::metrics::{GaugeGuard, Status, Transport};
use crate::policy::{Caller, Refusal, RequestFacts};
use crate::shared::Shared;

const WHAT: &str = "dev-mode HTTP listener";
/// Most dev-mode client connections at once.
const MAX_CONNECTIONS: usize = 1024;
/// Tells a dev-mode client which outcome a gateway-made answer stands for.
const OUTCOME_HEADER: &str = "x-aimux-outcome";

/// A bound dev-mode listener.
#[derive(Debug)]
pub(crate) struct DevHttpListener {
    listener: TcpListener,
    addr: SocketAddr,
}

impl DevHttpListener {
    pub(crate) async fn bind(addr: SocketAddr) -> Result<Self, GatewayError> {
        let listener = http_server::bind(WHAT, addr).await?;
        let addr = listener.local_addr().map_err(|source| GatewayError::Bind {
            what: WHAT,
            addr,
            source,
        })?;
        warn!(
            "dev-mode HTTP listener on {addr} trusts the x-aimux-identity header: for \
             experiments only, never production"
        );
        Ok(Self { listener, addr })
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub(crate) async fn run(self, shared: Arc<Shared>, shutdown: CancellationToken) {
        let limits = ServerLimits {
            max_connections: MAX_CONNECTIONS,
            header_read_timeout: shared.timeouts.envelope,
            grace: shared.timeouts.shutdown_grace,
        };
        let handler = move |req| {
            let shared = Arc::clone(&shared);
            async move { handle(&shared, req).await }
        };
        http_server::serve(WHAT, self.listener, limits, shutdown, handler).await;
    }
}

async fn handle(shared: &Shared, req: Request<Incoming>) -> Response<ServerBody> {
    let started = Instant::now();
    let open = shared.metrics.stream_opened(Transport::Dev);
    let caller = match claimed_caller(req.headers().get(IDENTITY_HEADER), &shared.trust_domain) {
        Ok(caller) => caller,
        Err(why) => return text(StatusCode::UNAUTHORIZED, None, why),
    };
    let Some(destination) = destination(&req) else {
        return text(
            StatusCode::BAD_REQUEST,
            None,
            "dev mode needs a Host header naming the destination service, e.g. `Host: echo`"
                .to_owned(),
        );
    };
    let target = req
        .uri()
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |pq| pq.as_str().to_owned());
    // Without a sidecar there is no sniffer: the intent is what any HTTP request shows.
    let intent = Intent::new(Protocol::Http, req.method().as_str(), req.uri().path());
    let facts = RequestFacts {
        destination: &destination,
        intent: Some(&intent),
        method: req.method().as_str(),
        path: &target,
    };
    let admitted = match shared.admit(&caller, &facts, "").await {
        Ok(admitted) => admitted,
        Err(denied) => {
            let status = Status::Outcome(denied.refusal.outcome);
            shared.record(caller.id_str(), &denied.service_label, status, started);
            return refusal(denied.refusal);
        }
    };
    let service = admitted.service;
    let (parts, body) = req.into_parts();
    // The response body is relayed as hyper hands it over, trailers included: ask the
    // upstream for them when the client does.
    let te_trailers = headers::accepts_trailers(&parts.headers);
    let outgoing = Outgoing {
        method: parts.method,
        target: &target,
        headers: parts.headers,
        body: RequestBody::dev(body),
        caller: &caller,
        trace: None,
        response_timeout: admitted.timeout,
        te_trailers,
    };
    let record = |status| shared.record(caller.id_str(), service.name(), status, started);
    match shared.forwarder.send(&service, outgoing).await {
        Ok(response) => {
            record(Status::Http(response.status().as_u16()));
            let (mut parts, body) = response.into_parts();
            headers::remove_hop_by_hop(&mut parts.headers);
            // The version is this hop's: HTTP/1.1 (hyper's HTTP/1.1 server refuses to write
            // an HTTP/3 upstream's version).
            parts.version = http::Version::HTTP_11;
            let body = Guarded {
                inner: body,
                _open: open,
            };
            Response::from_parts(parts, body.boxed_unsync())
        }
        Err(ForwardError::Refused(r)) => {
            warn!(identity = %caller.id(), service = service.name(), "{}", r.reason);
            record(Status::Outcome(r.outcome));
            refusal(r)
        }
        Err(ForwardError::Cancelled(why)) => {
            record(Status::Cancelled);
            text(
                StatusCode::BAD_REQUEST,
                None,
                format!("the request body failed: {why}"),
            )
        }
    }
}

/// The caller's claimed identity: an agent name (`demo-agent`) or the full SPIFFE ID of an
/// agent of the mesh trust domain.
fn claimed_caller(value: Option<&HeaderValue>, td: &TrustDomain) -> Result<Caller, String> {
    let example = format!(
        "e.g. `x-aimux-identity: demo-agent` or `x-aimux-identity: spiffe://{td}/agent/demo-agent`"
    );
    let Some(value) = value else {
        return Err(format!(
            "missing x-aimux-identity header: in dev mode the caller states which agent it is, \
             {example}"
        ));
    };
    let text = value
        .to_str()
        .map_err(|_| format!("x-aimux-identity is not ASCII text; {example}"))?
        .trim();
    let id = if text.starts_with(aimux_certs::SCHEME_PREFIX) {
        SpiffeId::parse(text).map_err(|e| format!("x-aimux-identity: {e}; {example}"))?
    } else {
        let name =
            WorkloadName::new(text).map_err(|e| format!("x-aimux-identity: {e}; {example}"))?;
        SpiffeId::agent(td, &name)
    };
    if id.trust_domain() != td || id.kind() != Some(IdentityKind::Agent) {
        return Err(format!(
            "x-aimux-identity names {id}, which is not an agent of trust domain `{td}`; {example}"
        ));
    }
    Ok(Caller::new(id, td))
}

/// The destination service: the host part of `Host` (or of an absolute-form target).
fn destination(req: &Request<Incoming>) -> Option<String> {
    let from_host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.parse::<Authority>().ok())
        .map(|a| a.host().to_owned());
    from_host
        .or_else(|| req.uri().host().map(str::to_owned))
        .filter(|h| !h.is_empty())
}

fn refusal(r: Refusal) -> Response<ServerBody> {
    let status =
        StatusCode::from_u16(r.outcome.suggested_http_status()).unwrap_or(StatusCode::BAD_GATEWAY);
    let retry_after = r.retry_after;
    let mut response = text(status, Some(r.outcome), r.reason);
    if let Some(secs) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

fn text(status: StatusCode, outcome: Option<Outcome>, body: String) -> Response<ServerBody> {
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::BAD_REQUEST {
        info!(status = status.as_u16(), "dev-mode request refused: {body}");
    }
    let mut response = Response::new(
        Full::new(Bytes::from(body + "\n"))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Some(outcome) = outcome
        && let Ok(v) = HeaderValue::from_str(outcome.as_str())
    {
        headers.insert(OUTCOME_HEADER, v);
    }
    response
}

/// A response body that keeps the request counted as in flight until it has been sent.
struct Guarded {
    inner: ResponseBody,
    _open: GaugeGuard,
}

impl Body for Guarded {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn td() -> TrustDomain {
        TrustDomain::new("aimux.local").unwrap()
    }

    fn claim(v: &'static str) -> Result<Caller, String> {
        claimed_caller(Some(&HeaderValue::from_static(v)), &td())
    }

    #[test]
    fn claims_are_agent_names_or_agent_ids_of_the_trust_domain() {
        assert_eq!(
            claim("demo-agent").unwrap().id_str(),
            "spiffe://aimux.local/agent/demo-agent"
        );
        assert_eq!(
            claim("spiffe://aimux.local/agent/alice")
                .unwrap()
                .agent_name(),
            Some("alice")
        );
        for bad in [
            "spiffe://other.org/agent/alice",
            "spiffe://aimux.local/gateway/edge",
            "not a name",
            "",
        ] {
            assert!(claim(bad).is_err(), "{bad}");
        }
        let missing = claimed_caller(None, &td()).unwrap_err();
        assert!(
            missing.starts_with("missing x-aimux-identity header"),
            "{missing}"
        );
    }
}
