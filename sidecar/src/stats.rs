//! Counters and the connection state, as a cheap snapshot for health checks and metrics.
//!
//! Counters are relaxed atomics (each is independent; a snapshot is not a transaction). The
//! connection state lives in the tunnel's `watch` channel, so callers can also *wait* for a
//! state instead of polling ([`StatsHandle::wait_for_state`]).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use crate::tunnel::LinkStatus;

/// The state of the sidecar's connection to the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConnectionState {
    /// The first connection attempt is under way.
    Connecting,
    /// Connected; requests flow.
    Connected,
    /// The connection failed or was lost for a transient reason; retrying with backoff.
    Reconnecting,
    /// The gateway said this agent's certificate is revoked; retrying only slowly. Requests
    /// are refused at once.
    Revoked,
    /// The gateway refused this agent, or the sidecar refused the gateway, for a reason a
    /// retry cannot fix (wrong CA, wrong gateway identity, expired certificate); retrying
    /// only slowly. Requests are refused at once.
    Refused,
    /// The sidecar has shut down.
    Stopped,
}

impl ConnectionState {
    /// Lower-case name for logs and metrics labels.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            ConnectionState::Connecting => "connecting",
            ConnectionState::Connected => "connected",
            ConnectionState::Reconnecting => "reconnecting",
            ConnectionState::Revoked => "revoked",
            ConnectionState::Refused => "refused",
            ConnectionState::Stopped => "stopped",
        }
    }

    /// Whether requests are refused without waiting (the gateway refused this agent).
    pub(crate) const fn refuses_requests(self) -> bool {
        matches!(self, ConnectionState::Revoked | ConnectionState::Refused)
    }
}

impl fmt::Display for ConnectionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A snapshot of the sidecar's counters and connection state.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SidecarStats {
    /// The connection state.
    pub state: ConnectionState,
    /// Why the last connection attempt failed or the last connection ended, if it did.
    pub last_error: Option<String>,
    /// While backing off: the delay chosen before the next attempt.
    pub retry_in: Option<Duration>,
    /// Connections established (handshake confirmed).
    pub connects: u64,
    /// Connections established after the first one.
    pub reconnects: u64,
    /// Connection attempts that failed.
    pub failed_attempts: u64,
    /// HTTP requests received from the agent.
    pub requests: u64,
    /// Requests whose response has not finished.
    pub in_flight: u64,
    /// Requests the gateway forwarded upstream (outcome `forwarded`).
    pub forwarded: u64,
    /// Requests the gateway answered with another outcome (denied, no route...).
    pub refused: u64,
    /// Requests the sidecar itself could not complete: no connection, stream errors,
    /// malformed or missing responses, bodies cut off mid-way.
    pub failures: u64,
    /// Requests and TCP streams of other agents delivered to this one (allowed callers).
    pub deliveries: u64,
    /// Deliveries refused: a caller not allowed, or nothing to deliver to.
    pub deliveries_refused: u64,
}

/// The shared counters.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) requests: AtomicU64,
    pub(crate) in_flight: AtomicU64,
    pub(crate) forwarded: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) failures: AtomicU64,
    pub(crate) deliveries: AtomicU64,
    pub(crate) deliveries_refused: AtomicU64,
    pub(crate) connects: AtomicU64,
    pub(crate) failed_attempts: AtomicU64,
}

impl Counters {
    pub(crate) fn incr(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a request in flight until the returned guard is dropped.
    pub(crate) fn start_request(self: &Arc<Self>) -> InFlight {
        Counters::incr(&self.requests);
        Counters::incr(&self.in_flight);
        InFlight(Arc::clone(self))
    }
}

/// Keeps one request counted in [`SidecarStats::in_flight`] while alive.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Counters>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A cloneable handle on a sidecar's statistics that stays valid while (and after) the
/// sidecar runs. Obtain it with [`Sidecar::stats_handle`](crate::Sidecar::stats_handle).
#[derive(Debug, Clone)]
pub struct StatsHandle {
    counters: Arc<Counters>,
    link: watch::Receiver<LinkStatus>,
}

impl StatsHandle {
    pub(crate) fn new(counters: Arc<Counters>, link: watch::Receiver<LinkStatus>) -> Self {
        StatsHandle { counters, link }
    }

    /// The current counters and connection state.
    #[must_use]
    pub fn snapshot(&self) -> SidecarStats {
        let (state, last_error, retry_in) = {
            let link = self.link.borrow();
            (
                link.state,
                link.cause.as_deref().map(str::to_owned),
                link.retry_in,
            )
        };
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let connects = get(&self.counters.connects);
        SidecarStats {
            state,
            last_error,
            retry_in,
            connects,
            reconnects: connects.saturating_sub(1),
            failed_attempts: get(&self.counters.failed_attempts),
            requests: get(&self.counters.requests),
            in_flight: get(&self.counters.in_flight),
            forwarded: get(&self.counters.forwarded),
            refused: get(&self.counters.refused),
            failures: get(&self.counters.failures),
            deliveries: get(&self.counters.deliveries),
            deliveries_refused: get(&self.counters.deliveries_refused),
        }
    }

    /// Waits until the connection state satisfies `pred` and returns a snapshot taken then.
    /// Returns the current snapshot at once if the sidecar has gone away. Wrap it in a
    /// timeout: the state may never come.
    pub async fn wait_for_state(
        &self,
        mut pred: impl FnMut(ConnectionState) -> bool,
    ) -> SidecarStats {
        let mut link = self.link.clone();
        // An error means the supervisor is gone; the snapshot then shows its last state.
        let _ = link.wait_for(|l| pred(l.state)).await;
        self.snapshot()
    }
}
