//! The load generator: a fixed number of connections, each driven by its own OS thread.
//!
//! **Open loop** (`Mode::Open`): requests are scheduled at a fixed total rate, spread evenly
//! over the connections. Latency is measured from each request's *intended* start, so a
//! stalled response also charges the requests that should have been sent meanwhile — the
//! coordinated-omission correction of wrk2 and fortio. The uncorrected service time (from
//! the actual send) is kept too.
//!
//! **Closed loop** (`Mode::Closed`): each connection sends back to back; the result is the
//! maximum throughput at that concurrency.
//!
//! Why a thread per connection: tokio's timer has millisecond granularity, which would add
//! up to 1 ms of fake latency to requests measured from their intended start. A thread that
//! paces with `std::thread::sleep` (hrtimer-backed, ~50–100 µs slack) and drives one
//! connection on a current-thread runtime keeps pacing error well under the effects we
//! measure, and matches how wrk structures its event loops.

mod worker;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

pub use worker::WorkerError;

/// Highest latency the histograms record (longer ones are clamped): 60 s, in µs.
pub const MAX_LATENCY_US: u64 = 60_000_000;

/// How requests are paced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// A fixed total request rate (requests per second).
    Open { rate: f64 },
    /// Back to back on every connection.
    Closed,
}

/// HTTP version spoken to the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum HttpVersion {
    Http1,
    Http2,
}

/// One load run against one URL.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub url: http::Uri,
    pub mode: Mode,
    pub connections: usize,
    pub duration: Duration,
    /// Not recorded: lets connections, pools and caches settle.
    pub warmup: Duration,
    /// Bytes of request body (0 sends a GET, otherwise a POST).
    pub body_size: usize,
    pub http: HttpVersion,
    /// Per-request time limit; a request over it counts as an error.
    pub timeout: Duration,
    /// Extra request headers (e.g. `x-aimux-identity` and `host` for the dev-mode gateway).
    pub headers: Vec<(String, String)>,
}

/// What a run measured.
#[derive(Debug)]
pub struct LoadResult {
    /// Latency from the intended start (open loop) or the actual start (closed loop), µs.
    pub corrected: Histogram<u64>,
    /// Latency from the actual send, µs.
    pub uncorrected: Histogram<u64>,
    pub requests: u64,
    pub errors: u64,
    /// First few error messages, for the report.
    pub error_samples: Vec<String>,
    /// Measured (post-warmup) wall time.
    pub elapsed: Duration,
}

impl LoadResult {
    pub fn throughput(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }
}

/// Live counters a progress display can poll.
#[derive(Debug, Default)]
pub struct Progress {
    pub completed: AtomicU64,
    pub errors: AtomicU64,
}

/// Errors that stop a run before it measures anything.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    #[error("connections must be at least 1")]
    NoConnections,
    #[error("open-loop rate must be a positive number of requests per second, got {0}")]
    BadRate(f64),
    #[error("URL {0} needs a host and a port (http://HOST:PORT/PATH); https is not supported")]
    BadUrl(http::Uri),
    #[error(transparent)]
    Worker(#[from] WorkerError),
}

/// 3 significant digits from 1 µs to 60 s.
#[allow(clippy::expect_used)] // constant bounds, checked by a test: cannot fail at run time
pub(crate) fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid constant histogram bounds")
}

/// Runs the load; blocks the calling thread until it is done.
pub fn run(config: &LoadConfig, progress: &Arc<Progress>) -> Result<LoadResult, LoadError> {
    if config.connections == 0 {
        return Err(LoadError::NoConnections);
    }
    if let Mode::Open { rate } = config.mode
        && !(rate.is_finite() && rate > 0.0)
    {
        return Err(LoadError::BadRate(rate));
    }
    let target = worker::Target::from_url(&config.url)
        .ok_or_else(|| LoadError::BadUrl(config.url.clone()))?;
    let start = Instant::now() + Duration::from_millis(50);
    let measure_from = start + config.warmup;
    let end = measure_from + config.duration;
    let stop = Arc::new(AtomicBool::new(false));
    let results: Vec<Result<worker::WorkerResult, WorkerError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..config.connections)
            .map(|index| {
                let plan = worker::Plan {
                    target: target.clone(),
                    config: config.clone(),
                    schedule: schedule(config, index, start),
                    measure_from,
                    end,
                };
                let (progress, stop) = (progress.clone(), stop.clone());
                scope.spawn(move || worker::run(plan, &progress, &stop))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(WorkerError::Panicked)))
            .collect()
    });
    let mut merged = LoadResult {
        corrected: new_histogram(),
        uncorrected: new_histogram(),
        requests: 0,
        errors: 0,
        error_samples: Vec::new(),
        elapsed: end.saturating_duration_since(measure_from),
    };
    for result in results {
        let r = result?;
        let _ = merged.corrected.add(&r.corrected);
        let _ = merged.uncorrected.add(&r.uncorrected);
        merged.requests += r.requests;
        merged.errors += r.errors;
        for sample in r.error_samples {
            if merged.error_samples.len() < 5 {
                merged.error_samples.push(sample);
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    Ok(merged)
}

/// When connection `index` sends: open loop spreads the total rate evenly, offsetting the
/// connections so their requests interleave instead of arriving in bursts.
pub(crate) fn schedule(config: &LoadConfig, index: usize, start: Instant) -> Option<Schedule> {
    match config.mode {
        Mode::Closed => None,
        Mode::Open { rate } => {
            let per_connection = rate / config.connections as f64;
            let interval = Duration::from_secs_f64(1.0 / per_connection);
            let offset = Duration::from_secs_f64(index as f64 / rate);
            Some(Schedule {
                first: start + offset,
                interval,
            })
        }
    }
}

/// Intended send times `first + i * interval`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Schedule {
    pub(crate) first: Instant,
    pub(crate) interval: Duration,
}

impl Schedule {
    pub(crate) fn at(&self, i: u64) -> Instant {
        self.first + self.interval.mul_f64(i as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(mode: Mode, connections: usize) -> LoadConfig {
        LoadConfig {
            url: "http://127.0.0.1:1/".parse().unwrap(),
            mode,
            connections,
            duration: Duration::from_secs(1),
            warmup: Duration::ZERO,
            body_size: 0,
            http: HttpVersion::Http1,
            timeout: Duration::from_secs(1),
            headers: Vec::new(),
        }
    }

    #[test]
    fn open_loop_spreads_the_rate_evenly_across_connections() {
        let start = Instant::now();
        let c = config(Mode::Open { rate: 1000.0 }, 4);
        let mut sends: Vec<Instant> = (0..4)
            .flat_map(|i| {
                let s = schedule(&c, i, start).unwrap();
                (0..250).map(move |k| s.at(k))
            })
            .collect();
        sends.sort();
        assert_eq!(sends.len(), 1000);
        // Every gap between consecutive sends is 1 ms (within float rounding).
        for pair in sends.windows(2) {
            let gap = pair[1] - pair[0];
            assert!((gap.as_secs_f64() - 0.001).abs() < 1e-6, "gap {gap:?}");
        }
    }

    #[test]
    fn histogram_bounds_are_valid() {
        let mut h = new_histogram();
        h.record(MAX_LATENCY_US).unwrap();
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn closed_loop_has_no_schedule() {
        assert!(schedule(&config(Mode::Closed, 2), 0, Instant::now()).is_none());
    }

    #[test]
    fn rejects_nonsense_before_starting() {
        let p = Arc::new(Progress::default());
        assert!(matches!(
            run(&config(Mode::Closed, 0), &p),
            Err(LoadError::NoConnections)
        ));
        assert!(matches!(
            run(&config(Mode::Open { rate: 0.0 }, 1), &p),
            Err(LoadError::BadRate(_))
        ));
    }
}
