//! The audit log: one JSON object per line for every decision the gateway takes.
//!
//! Every line has the same fields, in this order, `null` when unknown:
//!
//! | field | value |
//! |---|---|
//! | `time` | when the decision was taken, RFC 3339 UTC with milliseconds: `2026-11-25T03:04:05.123Z` |
//! | `identity` | the caller's SPIFFE ID (verified, or claimed in dev mode) |
//! | `intent` | the intent hint, `protocol operation target` (`mcp tools/call search`) |
//! | `destination` | the service the request named |
//! | `route` | the route that sent it elsewhere |
//! | `service` | the service it was (or would have been) forwarded to |
//! | `decision` | `allow`, `deny`, `no_route`, `rate_limited`, `isolated` or `error` |
//! | `rule` | the access rule that decided (its name, or `#N`) |
//! | `reason` | why, for people (at most 1 KiB) |
//! | `request_id` | the request ID, hex |
//! | `status` | the HTTP status the caller got |
//!
//! Recording never blocks the request: [`AuditLog::record`] hands the entry to a bounded
//! queue and, when the writer falls behind and the queue is full, drops it and counts it
//! ([`AuditLog::dropped`], for a metric). The [`AuditWriter`] task owns the file (or
//! stdout), flushes whenever the queue runs empty and at least every 200 ms while it does
//! not, and on shutdown writes what is queued and flushes before it returns.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Serialize, Serializer};
use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Entries waiting for the writer; beyond this they are dropped.
const QUEUE: usize = 8192;
/// Longest time a written line may sit in the buffer while entries keep coming.
const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// The writer's buffer.
const BUFFER: usize = 64 * 1024;
/// Longest reason kept, so the queue's memory is bounded too.
const MAX_REASON: usize = 1024;

/// Where the audit log goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConfig {
    /// The destination of the lines.
    pub sink: AuditSink,
}

/// The destination of audit lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditSink {
    /// Standard output (the gateway's own logs go to standard error).
    Stdout,
    /// A file, appended to, created with mode 0640 if missing. Rotate it with a tool that
    /// copies and truncates (`copytruncate`), since the gateway keeps it open.
    File(PathBuf),
}

/// The audit log could not be set up.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AuditError {
    #[error("cannot open the audit log {}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What the gateway decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Decision {
    Allow,
    Deny,
    NoRoute,
    RateLimited,
    Isolated,
    Error,
}

/// One decision: one line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct AuditEntry {
    #[serde(serialize_with = "serialize_time")]
    pub(crate) time: SystemTime,
    pub(crate) identity: String,
    pub(crate) intent: Option<String>,
    pub(crate) destination: String,
    pub(crate) route: Option<String>,
    pub(crate) service: Option<String>,
    pub(crate) decision: Decision,
    pub(crate) rule: Option<String>,
    pub(crate) reason: Option<String>,
    pub(crate) request_id: Option<String>,
    pub(crate) status: Option<u16>,
}

fn serialize_time<S: Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339_millis(*time))
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` in UTC; times before 1970 (a broken clock) show as the epoch.
pub(crate) fn rfc3339_millis(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since.subsec_millis()
    )
}

/// Year, month, day of the `days`th day after 1970-01-01 in the proleptic Gregorian
/// calendar (H. Hinnant's `civil_from_days`, for non-negative days): eras of 400 years,
/// years starting in March so the leap day comes last.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// The handle request handlers record decisions with. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct AuditLog {
    tx: mpsc::Sender<AuditEntry>,
    dropped: Arc<AtomicU64>,
}

impl AuditLog {
    /// The log and the writer task that must run for lines to be written. The file is
    /// opened here, so a bad path fails at startup.
    pub(crate) fn new(config: &AuditConfig) -> Result<(Self, AuditWriter), AuditError> {
        Self::with_queue(config, QUEUE)
    }

    fn with_queue(config: &AuditConfig, queue: usize) -> Result<(Self, AuditWriter), AuditError> {
        let (out, sink): (Box<dyn AsyncWrite + Send + Unpin>, String) = match &config.sink {
            AuditSink::Stdout => (Box::new(tokio::io::stdout()), "stdout".to_owned()),
            AuditSink::File(path) => {
                let file = open_append(path).map_err(|source| AuditError::Open {
                    path: path.clone(),
                    source,
                })?;
                (
                    Box::new(tokio::fs::File::from_std(file)),
                    path.display().to_string(),
                )
            }
        };
        let (tx, rx) = mpsc::channel(queue.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        let writer = AuditWriter {
            rx,
            out: BufWriter::with_capacity(BUFFER, out),
            sink,
            dropped: Arc::clone(&dropped),
            failing: false,
        };
        Ok((Self { tx, dropped }, writer))
    }

    /// Queues `entry` without waiting; if the queue is full (or the writer has stopped) the
    /// entry is dropped and counted.
    pub(crate) fn record(&self, mut entry: AuditEntry) {
        if let Some(reason) = &mut entry.reason {
            clip(reason, MAX_REASON);
        }
        if self.tx.try_send(entry).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Entries dropped so far (queue full, writer stopped, or the write failed).
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

fn clip(text: &mut String, max: usize) {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
}

fn open_append(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Who called what is sensitive: owner and group only.
        options.mode(0o640);
    }
    options.open(path)
}

/// The task that writes queued entries; see [`AuditWriter::run`].
pub(crate) struct AuditWriter {
    rx: mpsc::Receiver<AuditEntry>,
    out: BufWriter<Box<dyn AsyncWrite + Send + Unpin>>,
    /// "stdout" or the path, for messages.
    sink: String,
    dropped: Arc<AtomicU64>,
    /// Set after a failed write until a flush succeeds: one error message per burst.
    failing: bool,
}

impl fmt::Debug for AuditWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditWriter")
            .field("sink", &self.sink)
            .field("failing", &self.failing)
            .finish_non_exhaustive()
    }
}

impl AuditWriter {
    /// Writes entries as they come until `shutdown` is cancelled (or every [`AuditLog`] is
    /// gone), then writes what is still queued, flushes and returns.
    pub(crate) async fn run(mut self, shutdown: CancellationToken) {
        let mut line = Vec::with_capacity(512);
        loop {
            let next = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                next = self.rx.recv() => next,
            };
            let Some(entry) = next else { break };
            self.write(&entry, &mut line).await;
            // Batch whatever else is queued into the buffer.
            let mut flushed = Instant::now();
            while !shutdown.is_cancelled() {
                let Ok(entry) = self.rx.try_recv() else { break };
                self.write(&entry, &mut line).await;
                if flushed.elapsed() >= FLUSH_EVERY {
                    self.flush().await;
                    flushed = Instant::now();
                }
            }
            // Idle: nothing is left waiting in the buffer.
            self.flush().await;
        }
        // No new entries from here on; the queued ones still go out.
        self.rx.close();
        while let Some(entry) = self.rx.recv().await {
            self.write(&entry, &mut line).await;
        }
        self.flush().await;
    }

    async fn write(&mut self, entry: &AuditEntry, line: &mut Vec<u8>) {
        line.clear();
        let result = match serde_json::to_writer(&mut *line, entry) {
            Ok(()) => {
                line.push(b'\n');
                self.out.write_all(line).await.map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = result {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            self.failed(&e);
        }
    }

    async fn flush(&mut self) {
        match self.out.flush().await {
            Ok(()) if self.failing => {
                self.failing = false;
                tracing::info!(sink = %self.sink, "the audit log is written again");
            }
            Ok(()) => {}
            Err(e) => self.failed(&e.to_string()),
        }
    }

    fn failed(&mut self, error: &str) {
        if !self.failing {
            self.failing = true;
            tracing::error!(sink = %self.sink, error,
                "cannot write the audit log; entries are lost (and counted) until it works again");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u32) -> AuditEntry {
        AuditEntry {
            time: UNIX_EPOCH + Duration::from_millis(1_795_575_845_123),
            identity: "spiffe://mesh.local/agent/alice".into(),
            intent: Some("mcp tools/call search".into()),
            destination: "tools".into(),
            route: None,
            service: Some("tools".into()),
            decision: Decision::Allow,
            rule: Some("#1".into()),
            reason: None,
            request_id: Some(format!("{n:032x}")),
            status: Some(200),
        }
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_milliseconds() {
        let at = |ms: u64| rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms));
        assert_eq!(at(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(1_795_575_845_123), "2026-11-25T03:04:05.123Z");
        assert_eq!(at(1_709_251_199_999), "2024-02-29T23:59:59.999Z");
        assert_eq!(at(4_107_542_400_000), "2100-03-01T00:00:00.000Z");
        assert_eq!(
            rfc3339_millis(UNIX_EPOCH - Duration::from_secs(1)),
            "1970-01-01T00:00:00.000Z"
        );
    }

    #[test]
    fn every_line_has_the_documented_fields_in_order() {
        let json = serde_json::to_string(&entry(7)).unwrap();
        assert_eq!(
            json,
            r##"{"time":"2026-11-25T03:04:05.123Z","identity":"spiffe://mesh.local/agent/alice","intent":"mcp tools/call search","destination":"tools","route":null,"service":"tools","decision":"allow","rule":"#1","reason":null,"request_id":"00000000000000000000000000000007","status":200}"##
        );
        for (decision, name) in [
            (Decision::Allow, "allow"),
            (Decision::Deny, "deny"),
            (Decision::NoRoute, "no_route"),
            (Decision::RateLimited, "rate_limited"),
            (Decision::Isolated, "isolated"),
            (Decision::Error, "error"),
        ] {
            assert_eq!(serde_json::to_value(decision).unwrap(), name);
        }
    }

    #[tokio::test]
    async fn lines_reach_the_file_in_order_and_shutdown_flushes_everything() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        std::fs::write(&path, "earlier\n").unwrap();
        let config = AuditConfig {
            sink: AuditSink::File(path.clone()),
        };
        let (log, writer) = AuditLog::new(&config).unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(writer.run(shutdown.clone()));
        for n in 0..2000 {
            log.record(entry(n));
        }
        shutdown.cancel();
        task.await.unwrap();

        let text = std::fs::read_to_string(&path).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("earlier"), "appended, not truncated");
        let ids: Vec<String> = lines
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["request_id"].as_str().unwrap().to_owned()
            })
            .collect();
        let expected: Vec<String> = (0..2000u32).map(|n| format!("{n:032x}")).collect();
        assert_eq!(ids, expected);
        assert_eq!(log.dropped(), 0);
        // After the writer is gone, entries are counted as dropped.
        log.record(entry(0));
        assert_eq!(log.dropped(), 1);
    }

    #[tokio::test]
    async fn an_idle_writer_flushes_without_waiting_for_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let config = AuditConfig {
            sink: AuditSink::File(path.clone()),
        };
        let (log, writer) = AuditLog::new(&config).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode & !0o640, 0, "mode {mode:o} is wider than 0640");
        }
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(writer.run(shutdown.clone()));
        log.record(entry(1));
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::read_to_string(&path).unwrap().lines().count() < 1 {
            assert!(Instant::now() < deadline, "the line was never flushed");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        shutdown.cancel();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_instead_of_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let config = AuditConfig {
            sink: AuditSink::File(dir.path().join("audit.log")),
        };
        let (log, _writer) = AuditLog::with_queue(&config, 2).unwrap();
        for n in 0..5 {
            log.record(entry(n));
        }
        assert_eq!(log.dropped(), 3);
    }

    #[test]
    fn long_reasons_are_clipped_and_bad_paths_fail_at_startup() {
        let mut reason = "é".repeat(MAX_REASON);
        clip(&mut reason, MAX_REASON);
        assert!(reason.len() <= MAX_REASON + '…'.len_utf8() && reason.ends_with('…'));
        let config = AuditConfig {
            sink: AuditSink::File("/nonexistent-dir/audit.log".into()),
        };
        let err = AuditLog::new(&config).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot open the audit log /nonexistent-dir/audit.log: "),
            "{err}"
        );
    }
}
