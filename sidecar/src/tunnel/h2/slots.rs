//! Stream credit over HTTP/2: the gateway's SETTINGS_MAX_CONCURRENT_STREAMS (RFC 9113
//! §5.1.2, §6.5.2), counted here so that a request waits (bounded) for a free stream before
//! it is sent, exactly as QUIC's `open_bi` waits for stream credit (RFC 9000 §4.6).
//!
//! h2 would queue a stream over the limit itself, but silently: the request would look sent,
//! and only the lack of an answer would tell. Counting here keeps "no stream credit" a
//! local, immediate fact, independent of the network's round-trip time (which on a lossy
//! WAN link can be long).
//!
//! The limit comes from the gateway's connection preface, the SETTINGS frame that is the
//! first thing it sends (RFC 9113 §3.4), read while confirming the handshake.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;
use tokio::time::Instant;

/// Frame type SETTINGS (RFC 9113 §6.5).
const SETTINGS: u8 = 0x4;
/// SETTINGS_MAX_CONCURRENT_STREAMS (RFC 9113 §6.5.2).
const MAX_CONCURRENT_STREAMS: u16 = 0x3;
/// Frame header length (RFC 9113 §4.1).
const FRAME_HEADER: usize = 9;

/// SETTINGS_MAX_CONCURRENT_STREAMS from a server connection preface, if the preface holds a
/// whole SETTINGS frame that sets it.
pub(crate) fn max_concurrent_streams(preface: &[u8]) -> Option<u32> {
    let header = preface.get(..FRAME_HEADER)?;
    let len = usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
    if header[3] != SETTINGS {
        return None;
    }
    let payload = preface.get(FRAME_HEADER..FRAME_HEADER.checked_add(len)?)?;
    // Each setting is 6 bytes: a 16-bit identifier and a 32-bit value; the last one wins.
    payload
        .chunks_exact(6)
        .rev()
        .find(|s| u16::from_be_bytes([s[0], s[1]]) == MAX_CONCURRENT_STREAMS)
        .map(|s| u32::from_be_bytes([s[2], s[3], s[4], s[5]]))
}

/// The streams of one connection that are open, against the gateway's limit.
#[derive(Debug)]
pub(crate) struct Slots {
    limit: usize,
    open: AtomicUsize,
    freed: Notify,
}

/// One open stream's slot, freed when dropped. Both directions of the stream share it (in
/// an `Arc`), so it is freed once both are done.
#[derive(Debug)]
pub(crate) struct Slot(Arc<Slots>);

/// No slot became free before the deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NoCredit;

impl Slots {
    /// `limit`: the gateway's SETTINGS_MAX_CONCURRENT_STREAMS; `None` means no limit (RFC
    /// 9113 §6.5.2: "initially, there is no limit").
    pub(crate) fn new(limit: Option<u32>) -> Arc<Slots> {
        let limit = limit.map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
        Arc::new(Slots {
            limit,
            open: AtomicUsize::new(0),
            freed: Notify::new(),
        })
    }

    /// Takes a slot, waiting until `deadline` for one to be freed.
    pub(crate) async fn acquire(self: &Arc<Self>, deadline: Instant) -> Result<Slot, NoCredit> {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            // Registered before the check, so a slot freed in between wakes us.
            freed.as_mut().enable();
            let open = self.open.load(Ordering::Acquire);
            if open < self.limit {
                if self
                    .open
                    .compare_exchange(open, open + 1, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    return Ok(Slot(Arc::clone(self)));
                }
                continue;
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return Err(NoCredit);
            }
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        self.0.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn reads_the_limit_from_the_settings_frame() {
        // SETTINGS, 12 bytes: ENABLE_PUSH 0, MAX_CONCURRENT_STREAMS 1024.
        let preface = [
            0, 0, 12, 0x4, 0, 0, 0, 0, 0, //
            0, 2, 0, 0, 0, 0, //
            0, 3, 0, 0, 4, 0,    //
            0xff, // the next frame
        ];
        assert_eq!(max_concurrent_streams(&preface), Some(1024));
        assert_eq!(max_concurrent_streams(&preface[..12]), None, "incomplete");
        let empty = [0, 0, 0, 0x4, 0, 0, 0, 0, 0];
        assert_eq!(max_concurrent_streams(&empty), None, "not set: no limit");
        let ping = [0, 0, 8, 0x6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];
        assert_eq!(max_concurrent_streams(&ping), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_connection_waits_for_a_freed_slot_or_the_deadline() {
        let slots = Slots::new(Some(1));
        let first = slots.acquire(Instant::now()).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(2);
        assert_eq!(slots.acquire(deadline).await.unwrap_err(), NoCredit);

        let waiting = tokio::spawn({
            let slots = Arc::clone(&slots);
            async move { slots.acquire(Instant::now() + Duration::from_secs(5)).await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        drop(first);
        assert!(waiting.await.unwrap().is_ok());
    }

    #[tokio::test]
    async fn without_a_limit_nobody_waits() {
        let slots = Slots::new(None);
        let mut held = Vec::new();
        for _ in 0..1000 {
            held.push(slots.acquire(Instant::now()).await.unwrap());
        }
    }
}
