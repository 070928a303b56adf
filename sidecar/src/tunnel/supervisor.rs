//! The one task that owns the connection to the gateway, over either transport.
//!
//! ```text
//!   ┌──────────► connect ──ok──► publish Connected ──► wait for closed() ──┐
//!   │               │                                                     │
//!   │             error                                                   │
//!   │               ▼                                                     ▼
//!   └── sleep ◄── classify: transient → full-jitter backoff (50 ms … 2 s)
//!                          revoked / refused → long backoff (15 … 30 s)
//! ```
//!
//! Each state change is logged once; repeats of the same failure are counted and logged at
//! debug level, and the count is reported when the connection comes back.

use std::sync::Arc;
use std::time::Duration;

use aimux_wire::codes;
use quinn::{Connection, Endpoint, VarInt};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::LinkStatus;
use super::backoff::{Backoff, long_delay};
use super::classify::{Failure, Severity, Subject, classify};
use super::h2::{H2Dialer, H2Live};
use super::transport::TunnelConn;
use super::verifier::RecordingVerifier;
use crate::config::{GatewayTarget, TunnelSettings};
use crate::fmt::Secs;
use crate::inbound::{self, Inbound};
use crate::stats::{ConnectionState, Counters};

/// A connection that lived this long "stayed up": the next failure starts the backoff over.
/// Shorter-lived ones keep growing it, so a gateway that accepts and immediately drops
/// connections is not hammered.
const STABLE_AFTER: Duration = Duration::from_secs(5);

/// Polling schedule while waiting for HANDSHAKE_DONE (see [`Supervisor::confirm`]).
const CONFIRM_FIRST_POLL: Duration = Duration::from_millis(1);
const CONFIRM_MAX_POLL: Duration = Duration::from_millis(50);

/// On shutdown, how long an HTTP/2 connection gets to send its GOAWAY and close.
const H2_CLOSE_WAIT: Duration = Duration::from_secs(1);

/// How connections are made.
#[derive(Debug)]
pub(crate) enum Dialer {
    /// From this QUIC endpoint.
    Quic(Endpoint),
    /// Over TCP.
    H2(H2Dialer),
}

/// A connection while it lives.
enum Live {
    Quic(Connection),
    H2(H2Live),
}

impl Live {
    fn conn(&self) -> TunnelConn {
        match self {
            Live::Quic(c) => TunnelConn::Quic(c.clone()),
            Live::H2(h) => TunnelConn::H2(h.conn.clone()),
        }
    }

    /// Waits for the end and says why.
    async fn closed(&mut self) -> Failure {
        match self {
            // After the handshake our verifier has nothing to say.
            Live::Quic(c) => classify(&c.closed().await, None),
            Live::H2(h) => h.closed().await,
        }
    }
}

/// Owns the connection to the gateway and publishes it.
#[derive(Debug)]
pub(crate) struct Supervisor {
    pub(crate) dialer: Dialer,
    pub(crate) verifier: Arc<RecordingVerifier>,
    pub(crate) gateway: GatewayTarget,
    pub(crate) settings: TunnelSettings,
    pub(crate) subject: Subject,
    pub(crate) link: watch::Sender<LinkStatus>,
    pub(crate) counters: Arc<Counters>,
    /// Deliveries to this agent, served on each QUIC connection while it lives.
    pub(crate) inbound: Option<Arc<Inbound>>,
}

impl Supervisor {
    /// Runs until `stop` is cancelled, then closes the connection with `SHUTDOWN` and
    /// publishes [`ConnectionState::Stopped`].
    pub(crate) async fn run(self, stop: CancellationToken) {
        let s = &self.settings;
        let mut backoff = Backoff::new(s.backoff_initial, s.backoff_max);
        let mut report = Reporter::default();
        loop {
            let attempt = tokio::select! {
                biased;
                () = stop.cancelled() => break,
                attempt = self.connect() => attempt,
            };
            let (failure, lost) = match attempt {
                Ok(mut live) => {
                    let up_since = Instant::now();
                    Counters::incr(&self.counters.connects);
                    report.connected(&self.gateway, &self.subject);
                    self.publish(ConnectionState::Connected, Some(live.conn()), None, None);
                    let deliveries = self.serve_deliveries(&live);
                    let failure = tokio::select! {
                        biased;
                        () = stop.cancelled() => {
                            deliveries.stop().await;
                            self.shut(live).await;
                            break;
                        }
                        failure = live.closed() => failure,
                    };
                    deliveries.stop().await;
                    if up_since.elapsed() >= STABLE_AFTER {
                        backoff.reset();
                    }
                    (failure, true)
                }
                Err(failure) => {
                    Counters::incr(&self.counters.failed_attempts);
                    (failure, false)
                }
            };

            let severity = failure.severity();
            let delay = match severity {
                Severity::Transient => backoff.next_delay(rand::random()),
                Severity::Refused | Severity::Revoked => {
                    long_delay(s.revoked_backoff, rand::random())
                }
            };
            let cause = failure.describe(&self.subject);
            report.failed(&failure, &cause, lost, delay, s);
            let state = match severity {
                Severity::Transient => ConnectionState::Reconnecting,
                Severity::Refused => ConnectionState::Refused,
                Severity::Revoked => ConnectionState::Revoked,
            };
            self.publish(state, None, Some(cause.into()), Some(delay));

            tokio::select! {
                biased;
                () = stop.cancelled() => break,
                () = tokio::time::sleep(delay) => {}
            }
        }
        self.link.send_modify(|l| {
            l.state = ConnectionState::Stopped;
            l.conn = None;
            l.retry_in = None;
        });
        if let Dialer::H2(dialer) = &self.dialer {
            dialer.shutdown(H2_CLOSE_WAIT).await;
        }
        debug!(gateway = %self.gateway.addr, "tunnel supervisor stopped");
    }

    /// Starts accepting deliveries on a QUIC connection, if this agent takes any.
    fn serve_deliveries(&self, live: &Live) -> Deliveries {
        let stop = CancellationToken::new();
        let task = match (live, &self.inbound) {
            (Live::Quic(conn), Some(inbound)) => Some(tokio::spawn(inbound::serve(
                conn.clone(),
                Arc::clone(inbound),
                stop.clone(),
            ))),
            _ => None,
        };
        Deliveries { stop, task }
    }

    /// Closes the live connection on shutdown: QUIC with `SHUTDOWN` (SPEC.md §12); HTTP/2,
    /// once unpublished, with GOAWAY (RFC 9113 §6.8).
    async fn shut(&self, live: Live) {
        match live {
            Live::Quic(conn) => conn.close(VarInt::from_u32(codes::CLOSE_SHUTDOWN), b"shutdown"),
            Live::H2(h2) => {
                self.link.send_modify(|l| l.conn = None);
                h2.close(H2_CLOSE_WAIT).await;
            }
        }
    }

    fn publish(
        &self,
        state: ConnectionState,
        conn: Option<TunnelConn>,
        cause: Option<Arc<str>>,
        retry_in: Option<Duration>,
    ) {
        self.link.send_replace(LinkStatus {
            state,
            conn,
            cause,
            retry_in,
        });
    }

    /// One connection attempt, bounded by the handshake timeout, ending with a *confirmed*
    /// handshake.
    async fn connect(&self) -> Result<Live, Failure> {
        let limit = self.settings.handshake_timeout;
        let deadline = Instant::now() + limit;
        // The slot belongs to this attempt.
        let _ = self.verifier.take();
        match &self.dialer {
            Dialer::Quic(endpoint) => self.connect_quic(endpoint, deadline, limit).await,
            Dialer::H2(dialer) => {
                match tokio::time::timeout_at(deadline, dialer.dial(&self.verifier)).await {
                    Err(_elapsed) => Err(Failure::HandshakeTimeout(limit)),
                    Ok(dialed) => dialed.map(Live::H2),
                }
            }
        }
    }

    async fn connect_quic(
        &self,
        endpoint: &Endpoint,
        deadline: Instant,
        limit: Duration,
    ) -> Result<Live, Failure> {
        let connecting = endpoint
            .connect(self.gateway.addr, &self.gateway.server_name)
            .map_err(|e| {
                Failure::Local(format!(
                    "cannot start a connection to {}: {e}",
                    self.gateway.addr
                ))
            })?;
        let conn = match tokio::time::timeout_at(deadline, connecting).await {
            Err(_elapsed) => return Err(Failure::HandshakeTimeout(limit)),
            Ok(Err(e)) => return Err(classify(&e, self.verifier.take())),
            Ok(Ok(conn)) => conn,
        };
        self.confirm(&conn, deadline, limit).await?;
        Ok(Live::Quic(conn))
    }

    /// Waits until the handshake is *confirmed*, i.e. the gateway's HANDSHAKE_DONE frame has
    /// arrived (RFC 9001 §4.1.2).
    ///
    /// Why: in TLS 1.3 the client's handshake completes as soon as it sends its Finished,
    /// before the server has checked the client certificate; quinn then already reports the
    /// connection as established. A gateway that refuses the certificate (revoked, unknown
    /// CA) answers with a TLS alert one round trip later. The server sends HANDSHAKE_DONE
    /// only after accepting the certificate, so waiting for it keeps requests off connections
    /// that are about to be refused, and keeps "connected" out of the log of a revoked agent.
    ///
    /// quinn 0.11 has no event for it, so this polls the connection's frame counters (a
    /// mutex-protected read), starting at 1 ms and doubling up to 50 ms; on loopback the
    /// frame is there within a millisecond or two.
    async fn confirm(
        &self,
        conn: &Connection,
        deadline: Instant,
        limit: Duration,
    ) -> Result<(), Failure> {
        let mut step = CONFIRM_FIRST_POLL;
        loop {
            if conn.stats().frame_rx.handshake_done > 0 {
                return Ok(());
            }
            if Instant::now() >= deadline {
                conn.close(
                    VarInt::from_u32(codes::CLOSE_SHUTDOWN),
                    b"handshake not confirmed in time",
                );
                return Err(Failure::HandshakeTimeout(limit));
            }
            tokio::select! {
                biased;
                closed = conn.closed() => return Err(classify(&closed, self.verifier.take())),
                () = tokio::time::sleep_until((Instant::now() + step).min(deadline)) => {}
            }
            step = (step * 2).min(CONFIRM_MAX_POLL);
        }
    }
}

/// Logs state changes once and counts repeats.
#[derive(Debug, Default)]
struct Reporter {
    /// The failure last logged, while it keeps recurring.
    last: Option<Failure>,
    /// Failed connection attempts since the last success.
    failures: u64,
    /// Since when there has been no connection (after the first success or failure).
    since: Option<Instant>,
}

impl Reporter {
    fn connected(&mut self, gateway: &GatewayTarget, subject: &Subject) {
        match self.since.take() {
            None => info!(
                gateway = %gateway.addr,
                transport = gateway.transport.as_str(),
                "connected to gateway {} ({}) as {}",
                gateway.addr, gateway.identity, subject.agent_label
            ),
            Some(since) => info!(
                gateway = %gateway.addr,
                transport = gateway.transport.as_str(),
                "connected to gateway {} ({}) as {} after {} without a connection ({} failed \
                 attempt{})",
                gateway.addr,
                gateway.identity,
                subject.agent_label,
                Secs(since.elapsed()),
                self.failures,
                if self.failures == 1 { "" } else { "s" },
            ),
        }
        self.last = None;
        self.failures = 0;
    }

    fn failed(
        &mut self,
        failure: &Failure,
        cause: &str,
        lost: bool,
        delay: Duration,
        settings: &TunnelSettings,
    ) {
        if !lost {
            self.failures = self.failures.saturating_add(1);
        }
        self.since.get_or_insert_with(Instant::now);
        if self.last.as_ref().is_some_and(|l| l.same_kind(failure)) {
            debug!(
                attempts = self.failures,
                retry_in = %Secs(delay),
                "still no connection to the gateway: {cause}"
            );
            return;
        }
        self.last = Some(failure.clone());
        match failure.severity() {
            Severity::Revoked | Severity::Refused => error!(
                "{cause}; retrying only every {}–{}",
                Secs(settings.revoked_backoff / 2),
                Secs(settings.revoked_backoff)
            ),
            Severity::Transient if lost => {
                warn!("lost the connection to the gateway: {cause}; reconnecting")
            }
            Severity::Transient => warn!(
                "cannot connect to the gateway: {cause}; retrying with backoff (at most {} \
                 apart)",
                Secs(settings.backoff_max)
            ),
        }
    }
}

/// The delivery task of one connection; stopping it aborts the deliveries in flight.
struct Deliveries {
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Deliveries {
    async fn stop(self) {
        self.stop.cancel();
        if let Some(task) = self.task
            && let Err(e) = task.await
            && e.is_panic()
        {
            error!("the delivery task panicked: {e}");
        }
    }
}
