//! Spotting the gateway's GOAWAY in the bytes hyper reads.
//!
//! hyper does not tell a client that the server sent GOAWAY (RFC 9113 §6.8): the connection
//! just stops taking requests, and a request sent meanwhile fails as if the stream had been
//! reset. The supervisor must know at once, to stop publishing the connection and to
//! reconnect while the streams in flight finish on the old one. The server's side of the
//! connection is a plain sequence of frames from its first byte (its preface is a SETTINGS
//! frame, RFC 9113 §3.4), so following frame boundaries (RFC 9113 §4.1) finds it: a fixed
//! 9-byte header per frame, no allocation, whatever the input.

/// Frame type GOAWAY (RFC 9113 §6.8).
const GOAWAY: u8 = 0x7;
/// Frame header length (RFC 9113 §4.1).
const HEADER: usize = 9;
/// The part of a GOAWAY payload kept: last stream ID and error code.
const GOAWAY_FIXED: usize = 8;

/// What a GOAWAY said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GoAway {
    /// The highest stream the gateway may have processed.
    pub(crate) last_stream_id: u32,
    /// The HTTP/2 error code (RFC 9113 §7); `NO_ERROR` (0) for a graceful shutdown.
    pub(crate) error_code: u32,
}

/// Follows the frame boundaries of the server's byte stream.
#[derive(Debug, Default)]
pub(crate) struct FrameScanner {
    header: [u8; HEADER],
    header_len: usize,
    /// Payload bytes of the current frame still to come.
    remaining: usize,
    /// While inside a GOAWAY payload: its first bytes.
    goaway: Option<([u8; GOAWAY_FIXED], usize)>,
}

impl FrameScanner {
    /// Feeds the next bytes; calls `on_goaway` for each GOAWAY whose payload ends in them.
    pub(crate) fn feed(&mut self, mut bytes: &[u8], mut on_goaway: impl FnMut(GoAway)) {
        while !bytes.is_empty() {
            if self.remaining == 0 && self.goaway.is_none() {
                let take = (HEADER - self.header_len).min(bytes.len());
                self.header[self.header_len..self.header_len + take]
                    .copy_from_slice(&bytes[..take]);
                self.header_len += take;
                bytes = &bytes[take..];
                if self.header_len < HEADER {
                    return;
                }
                self.header_len = 0;
                let h = &self.header;
                self.remaining =
                    usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
                if h[3] == GOAWAY {
                    self.goaway = Some(([0; GOAWAY_FIXED], 0));
                }
            }
            let take = self.remaining.min(bytes.len());
            if let Some((fixed, filled)) = &mut self.goaway {
                let keep = (GOAWAY_FIXED - *filled).min(take);
                fixed[*filled..*filled + keep].copy_from_slice(&bytes[..keep]);
                *filled += keep;
            }
            self.remaining -= take;
            bytes = &bytes[take..];
            if self.remaining == 0
                && let Some((fixed, _)) = self.goaway.take()
            {
                // A GOAWAY shorter than its fixed part is a frame size error (RFC 9113
                // §6.8) that hyper ends the connection for; what is there is reported.
                on_goaway(GoAway {
                    last_stream_id: u32::from_be_bytes([fixed[0], fixed[1], fixed[2], fixed[3]])
                        & 0x7fff_ffff,
                    error_code: u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut f = vec![
            (len >> 16) as u8,
            (len >> 8) as u8,
            len as u8,
            kind,
            0,
            0,
            0,
            0,
            0,
        ];
        f.extend_from_slice(payload);
        f
    }

    fn goaways(stream: &[u8], split: usize) -> Vec<GoAway> {
        let mut scanner = FrameScanner::default();
        let mut found = Vec::new();
        for piece in stream.chunks(split.max(1)) {
            scanner.feed(piece, |g| found.push(g));
        }
        found
    }

    #[test]
    fn finds_goaway_behind_other_frames_however_the_bytes_are_split() {
        let mut stream = frame(0x4, &[0, 3, 0, 0, 4, 0]); // SETTINGS
        stream.extend(frame(0x0, &vec![7; 40_000])); // DATA
        stream.extend(frame(0x6, &[1, 2, 3, 4, 5, 6, 7, 8])); // PING
        // GOAWAY: last stream 2^31-1, NO_ERROR, debug data "bye".
        stream.extend(frame(
            GOAWAY,
            &[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, b'b', b'y', b'e'],
        ));
        stream.extend(frame(0x0, b"after"));
        let expected = vec![GoAway {
            last_stream_id: 0x7fff_ffff,
            error_code: 0,
        }];
        for split in [1, 2, 5, 9, 10, 4096, stream.len()] {
            assert_eq!(goaways(&stream, split), expected, "split {split}");
        }
    }

    #[test]
    fn error_codes_are_kept_and_nothing_else_is_a_goaway() {
        let stream = frame(GOAWAY, &[0, 0, 0, 7, 0, 0, 0, 2]);
        assert_eq!(
            goaways(&stream, 3),
            vec![GoAway {
                last_stream_id: 7,
                error_code: 2
            }]
        );
        let data = frame(0x0, &[GOAWAY; 100]);
        assert!(goaways(&data, 7).is_empty());
    }
}
