//! Reading the request envelope that opens a stream (SPEC.md §4 framing procedure).
//!
//! The reader asks the stream for exactly the bytes the decoder says are missing, so it
//! never reads past the envelope: the payload stays in the stream for the body to read. The
//! buffer is bounded by the decoder itself: once the preface is in, a header block over
//! `Limits::max_header_block` is rejected before it is read, so at most
//! `MAX_PREFACE_LEN + max_header_block` bytes are ever held.

use aimux_wire::{DecodeError, Limits, Malformed, RequestEnvelope, ResponseEnvelope, envelope_len};
use bytes::BytesMut;

use super::transport::{RecvError, StreamRecv};

/// Why no envelope could be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EnvelopeError {
    /// The bytes received prove the envelope invalid (SPEC.md §9).
    #[error("{0}")]
    Malformed(Malformed),
    /// The stream ended (FIN) inside the envelope: malformed too (SPEC.md §9).
    #[error("the stream ended after {got} bytes, inside the envelope")]
    Truncated { got: usize },
    /// The stream was reset or the connection lost: nobody is listening any more.
    #[error("{0}")]
    Read(#[from] RecvError),
}

/// Reads one request envelope from the front of `recv`.
pub(crate) async fn read_request(
    recv: &mut StreamRecv,
    limits: &Limits,
) -> Result<RequestEnvelope, EnvelopeError> {
    let buf = read_envelope_bytes(recv, limits).await?;
    match RequestEnvelope::decode_slice(&buf, limits) {
        Ok((envelope, _len)) => Ok(envelope),
        Err(e) => Err(malformed(e)),
    }
}

/// Reads one response envelope from the front of `recv`: a destination sidecar's answer to
/// a request delivered to its agent (SPEC.md §12.2).
pub(crate) async fn read_response(
    recv: &mut StreamRecv,
    limits: &Limits,
) -> Result<ResponseEnvelope, EnvelopeError> {
    let buf = read_envelope_bytes(recv, limits).await?;
    match ResponseEnvelope::decode_slice(&buf, limits) {
        Ok((envelope, _len)) => Ok(envelope),
        Err(e) => Err(malformed(e)),
    }
}

/// The bytes of the envelope at the front of `recv`, and not one byte more.
async fn read_envelope_bytes(
    recv: &mut StreamRecv,
    limits: &Limits,
) -> Result<BytesMut, EnvelopeError> {
    let mut buf = BytesMut::with_capacity(aimux_wire::MAX_PREFACE_LEN);
    loop {
        let wanted = match envelope_len(&buf, limits) {
            Ok(total) if buf.len() >= total => return Ok(buf),
            Ok(total) => total - buf.len(),
            Err(DecodeError::Incomplete { needed, .. }) => needed.max(1),
            Err(e) => return Err(malformed(e)),
        };
        match recv.read_chunk(wanted).await? {
            Some(chunk) => buf.extend_from_slice(&chunk),
            None => return Err(EnvelopeError::Truncated { got: buf.len() }),
        }
    }
}

fn malformed(e: DecodeError) -> EnvelopeError {
    match e {
        DecodeError::Malformed(m) => EnvelopeError::Malformed(m),
        // `Incomplete` and `Segmented` cannot happen with a complete, contiguous buffer;
        // report them as a truncation rather than panic.
        _ => EnvelopeError::Truncated { got: 0 },
    }
}
