//! Prometheus metrics (OpenMetrics text via `prometheus-client`).
//!
//! Label values come only from certificates and configuration: the routed service is a
//! configured name or `unknown`, the status an HTTP status code or an outcome name. The
//! identity label is the verified SPIFFE ID; because dev mode lets callers *claim* any
//! identity, the number of distinct identity values is capped and the rest are counted as
//! `other`, so no caller can grow the metric families without bound. Upstream labels are
//! configured service names and upstream URLs.

use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use aimux_wire::Outcome;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::forward::UpstreamStatus;
use crate::forward::balance::BreakerState;

/// The label of requests whose destination is not a configured service.
pub(crate) const UNKNOWN_SERVICE: &str = "unknown";
/// The identity label once [`MAX_IDENTITY_LABELS`] distinct identities have been seen.
pub(crate) const OTHER_IDENTITY: &str = "other";
/// Most distinct identity label values.
pub(crate) const MAX_IDENTITY_LABELS: usize = 1000;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    identity: String,
    service: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabels {
    service: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IdentityLabels {
    identity: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    service: String,
    upstream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransportLabels {
    transport: String,
}

/// How a connection or request reached the gateway: the `transport` label of the
/// connection and stream gauges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    /// The QUIC tunnel (SPEC.md §12).
    Quic,
    /// The HTTP/2-over-TLS tunnel (SPEC.md §12.1).
    H2,
    /// The dev-mode plain-HTTP listener (requests only).
    Dev,
}

impl Transport {
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::Quic => "quic",
            Self::H2 => "h2",
            Self::Dev => "dev",
        }
    }

    fn labels(self) -> TransportLabels {
        TransportLabels {
            transport: self.as_str().to_owned(),
        }
    }
}

/// What became of a request, as the `status` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    /// Forwarded: the upstream's HTTP status.
    Http(u16),
    /// Refused by the gateway (or the upstream could not be reached).
    Outcome(Outcome),
    /// Abandoned by the caller before the response head (label `cancelled`).
    Cancelled,
}

impl Status {
    fn label(self) -> String {
        match self {
            Self::Http(code) => code.to_string(),
            Self::Outcome(outcome) => outcome.as_str().to_owned(),
            Self::Cancelled => "cancelled".to_owned(),
        }
    }
}

type DurationFamily = Family<ServiceLabels, Histogram, fn() -> Histogram>;

/// The gateway's metrics.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: DurationFamily,
    connections_open: Family<TransportLabels, Gauge>,
    streams_open: Family<TransportLabels, Gauge>,
    revocations: Counter,
    rate_limited: Family<IdentityLabels, Counter>,
    isolations: Family<IdentityLabels, Counter>,
    isolated_identities: Gauge,
    audit_dropped: Counter,
    breaker_open: Family<UpstreamLabels, Gauge>,
    outstanding: Family<UpstreamLabels, Gauge>,
    /// The upstream series set at the last [`Metrics::upstreams`], to remove those a reload
    /// took away.
    upstreams_seen: Mutex<HashSet<UpstreamLabels>>,
    identities: Mutex<HashSet<String>>,
}

fn duration_histogram() -> Histogram {
    // 1 ms to ~33 s: from a loopback hop to the response-head timeout.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("aimux_gateway");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests by verified caller identity, routed service (or `unknown`) and status \
             (the upstream's HTTP status, the outcome name when the gateway answered itself, or \
             `cancelled` when the caller gave up before the response head)",
            requests.clone(),
        );
        let duration: DurationFamily = Family::new_with_constructor(duration_histogram);
        registry.register_with_unit(
            "request_duration",
            "Time from the request head (envelope) until the response head was sent, by routed \
             service; streamed response bodies are not included",
            Unit::Seconds,
            duration.clone(),
        );
        let connections_open = Family::<TransportLabels, Gauge>::default();
        registry.register(
            "connections_open",
            "Sidecar tunnel connections open now, by transport (`quic`, `h2`)",
            connections_open.clone(),
        );
        let streams_open = Family::<TransportLabels, Gauge>::default();
        registry.register(
            "streams_open",
            "Request streams in flight now, by transport (`quic`, `h2`, or `dev` for dev-mode \
             requests)",
            streams_open.clone(),
        );
        // Every series exists from the start (at 0), so dashboards need no special case.
        for t in [Transport::Quic, Transport::H2] {
            drop(connections_open.get_or_create(&t.labels()));
        }
        for t in [Transport::Quic, Transport::H2, Transport::Dev] {
            drop(streams_open.get_or_create(&t.labels()));
        }
        let revocations = Counter::default();
        registry.register(
            "revocations",
            "Live connections closed because their certificate was revoked",
            revocations.clone(),
        );
        let rate_limited = Family::<IdentityLabels, Counter>::default();
        registry.register(
            "rate_limited",
            "Requests refused because the caller exceeded its rate limit, by caller identity",
            rate_limited.clone(),
        );
        let isolations = Family::<IdentityLabels, Counter>::default();
        registry.register(
            "isolations",
            "Times a caller was isolated because too many of its recent requests were denied or \
             failed, by caller identity",
            isolations.clone(),
        );
        let isolated_identities = Gauge::default();
        registry.register(
            "isolated_identities",
            "Caller identities isolated now",
            isolated_identities.clone(),
        );
        let audit_dropped = Counter::default();
        registry.register(
            "audit_dropped",
            "Audit log entries lost: the writer fell behind and the queue was full, or the \
             write failed",
            audit_dropped.clone(),
        );
        let breaker_open = Family::<UpstreamLabels, Gauge>::default();
        registry.register(
            "upstream_breaker_open",
            "1 while an upstream's circuit breaker is open or half-open (the upstream gets no \
             requests, or one trial request), 0 while it is closed",
            breaker_open.clone(),
        );
        let outstanding = Family::<UpstreamLabels, Gauge>::default();
        registry.register(
            "upstream_outstanding",
            "Requests in flight to an upstream now, streamed response bodies included",
            outstanding.clone(),
        );
        Self {
            registry,
            requests,
            duration,
            connections_open,
            streams_open,
            revocations,
            rate_limited,
            isolations,
            isolated_identities,
            audit_dropped,
            breaker_open,
            outstanding,
            upstreams_seen: Mutex::new(HashSet::new()),
            identities: Mutex::new(HashSet::new()),
        }
    }

    /// Records one finished request decision.
    pub(crate) fn request(&self, identity: &str, service: &str, status: Status, took: Duration) {
        let labels = RequestLabels {
            identity: self.identity_label(identity),
            service: service.to_owned(),
            status: status.label(),
        };
        self.requests.get_or_create(&labels).inc();
        self.duration
            .get_or_create(&ServiceLabels {
                service: service.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    fn identity_label(&self, identity: &str) -> String {
        let mut seen = self
            .identities
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if seen.contains(identity) {
            return identity.to_owned();
        }
        if seen.len() >= MAX_IDENTITY_LABELS {
            return OTHER_IDENTITY.to_owned();
        }
        seen.insert(identity.to_owned());
        identity.to_owned()
    }

    /// A connection is open until the guard drops.
    pub(crate) fn connection_opened(&self, transport: Transport) -> GaugeGuard {
        GaugeGuard::new(&self.connections_open.get_or_create(&transport.labels()))
    }

    /// A request stream is in flight until the guard drops.
    pub(crate) fn stream_opened(&self, transport: Transport) -> GaugeGuard {
        GaugeGuard::new(&self.streams_open.get_or_create(&transport.labels()))
    }

    /// A live connection was closed because its certificate was revoked.
    pub(crate) fn revoked(&self) {
        self.revocations.inc();
    }

    /// The metrics in the OpenMetrics text format.
    ///
    /// Gauges of state owned elsewhere (isolated identities, upstreams, the audit drop
    /// count) are set by the caller just before, with the setters below.
    pub(crate) fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; an error would only come from a metric's own
        // encoder, and then a partial page is still the most useful answer.
        if let Err(e) = encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "could not encode every metric");
        }
        out
    }
}

/// Rate limiting, isolation, the audit log and upstream state.
impl Metrics {
    /// A request was refused by the rate limiter.
    pub(crate) fn rate_limited(&self, identity: &str) {
        let labels = IdentityLabels {
            identity: self.identity_label(identity),
        };
        self.rate_limited.get_or_create(&labels).inc();
    }

    /// An identity was just isolated (an `IsolationEvent`).
    pub(crate) fn isolated(&self, identity: &str) {
        let labels = IdentityLabels {
            identity: self.identity_label(identity),
        };
        self.isolations.get_or_create(&labels).inc();
    }

    /// How many identities are isolated now (`Isolation::isolated_count`).
    pub(crate) fn set_isolated_identities(&self, count: usize) {
        self.isolated_identities
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// The audit log's drop count so far (`AuditLog::dropped`): the counter catches up with
    /// it, so it never goes down even if the total is read out of order.
    pub(crate) fn set_audit_dropped(&self, total: u64) {
        let seen = self.audit_dropped.get();
        if total > seen {
            self.audit_dropped.inc_by(total - seen);
        }
    }

    /// The state of every upstream now (`Services::upstream_status`). Series of upstreams
    /// that are no longer configured (after a reload) are removed.
    pub(crate) fn upstreams<'a>(&self, statuses: impl IntoIterator<Item = UpstreamStatus<'a>>) {
        let mut current = HashSet::new();
        for s in statuses {
            let labels = UpstreamLabels {
                service: s.service.to_owned(),
                upstream: s.upstream.to_owned(),
            };
            let open = i64::from(s.breaker != BreakerState::Closed);
            self.breaker_open.get_or_create(&labels).set(open);
            self.outstanding
                .get_or_create(&labels)
                .set(i64::try_from(s.outstanding).unwrap_or(i64::MAX));
            current.insert(labels);
        }
        let mut seen = self
            .upstreams_seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for gone in seen.difference(&current) {
            self.breaker_open.remove(gone);
            self.outstanding.remove(gone);
        }
        *seen = current;
    }
}

/// Increments a gauge now and decrements it when dropped.
#[derive(Debug)]
pub(crate) struct GaugeGuard(Gauge);

impl GaugeGuard {
    fn new(gauge: &Gauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_every_family_with_the_documented_names() {
        let m = Metrics::new();
        m.request(
            "spiffe://example.org/agent/alice",
            "echo",
            Status::Http(200),
            Duration::from_millis(3),
        );
        m.request(
            "spiffe://example.org/agent/alice",
            UNKNOWN_SERVICE,
            Status::Outcome(Outcome::NoRoute),
            Duration::from_millis(1),
        );
        let conn = m.connection_opened(Transport::Quic);
        let _stream = m.stream_opened(Transport::H2);
        m.revoked();
        let text = m.encode();
        for needle in [
            r#"aimux_gateway_requests_total{identity="spiffe://example.org/agent/alice",service="echo",status="200"} 1"#,
            r#"aimux_gateway_requests_total{identity="spiffe://example.org/agent/alice",service="unknown",status="no_route"} 1"#,
            r#"aimux_gateway_request_duration_seconds_count{service="echo"} 1"#,
            r#"aimux_gateway_connections_open{transport="quic"} 1"#,
            r#"aimux_gateway_connections_open{transport="h2"} 0"#,
            r#"aimux_gateway_streams_open{transport="h2"} 1"#,
            r#"aimux_gateway_streams_open{transport="dev"} 0"#,
            "aimux_gateway_revocations_total 1",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
        drop(conn);
        assert!(
            m.encode()
                .contains(r#"aimux_gateway_connections_open{transport="quic"} 0"#)
        );
    }

    #[test]
    fn limits_audit_and_upstream_metrics() {
        let m = Metrics::new();
        let alice = "spiffe://example.org/agent/alice";
        m.rate_limited(alice);
        m.rate_limited(alice);
        m.isolated(alice);
        m.set_isolated_identities(3);
        m.set_audit_dropped(5);
        m.set_audit_dropped(4);
        m.set_audit_dropped(7);
        let status = |upstream, breaker, outstanding| UpstreamStatus {
            service: "echo",
            upstream,
            breaker,
            outstanding,
        };
        m.upstreams([
            status("http://a:1", BreakerState::Closed, 2),
            status("http://b:2", BreakerState::HalfOpen, 0),
        ]);
        let text = m.encode();
        for needle in [
            r#"aimux_gateway_rate_limited_total{identity="spiffe://example.org/agent/alice"} 2"#,
            r#"aimux_gateway_isolations_total{identity="spiffe://example.org/agent/alice"} 1"#,
            "aimux_gateway_isolated_identities 3",
            "aimux_gateway_audit_dropped_total 7",
            r#"aimux_gateway_upstream_breaker_open{service="echo",upstream="http://a:1"} 0"#,
            r#"aimux_gateway_upstream_breaker_open{service="echo",upstream="http://b:2"} 1"#,
            r#"aimux_gateway_upstream_outstanding{service="echo",upstream="http://a:1"} 2"#,
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
        // A reload removed upstream b: its series go.
        m.upstreams([status("http://a:1", BreakerState::Open, 0)]);
        let text = m.encode();
        assert!(!text.contains("http://b:2"), "{text}");
        assert!(text.contains(
            r#"aimux_gateway_upstream_breaker_open{service="echo",upstream="http://a:1"} 1"#
        ));
    }

    #[test]
    fn identity_labels_are_capped() {
        let m = Metrics::new();
        for i in 0..MAX_IDENTITY_LABELS {
            assert_eq!(m.identity_label(&format!("id-{i}")), format!("id-{i}"));
        }
        assert_eq!(m.identity_label("one-too-many"), OTHER_IDENTITY);
        assert_eq!(m.identity_label("id-7"), "id-7");
    }
}
