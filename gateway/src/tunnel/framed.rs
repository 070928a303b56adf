//! Writing the upstream's response body to the sidecar, one body frame at a time: as raw
//! bytes (SPEC.md §2.3), or as a framed payload with the upstream's trailers at the end
//! (SPEC.md §6.3) when the request envelope carried `te-trailers`.

use aimux_wire::{DataFrames, EncodeError, Limits, trailers_frame};
use bytes::{Bytes, BytesMut};
use http_body::Frame;

use super::transport::{SendError, StreamSend};
use crate::forward::headers;

/// DATA frames up to this size go out as one chunk with their 2- to 5-byte frame header (a
/// copy); larger ones as two chunks, the header and then the upstream's bytes as they are.
const COALESCE_MAX: usize = 4 * 1024;

/// Why a body frame could not be passed on.
#[derive(Debug, thiserror::Error)]
pub(super) enum FrameError {
    /// The sidecar stopped reading, or the stream is gone.
    #[error("{0}")]
    Send(#[from] SendError),
    /// The upstream's trailers cannot be put in a TRAILERS frame (over a limit, or a name or
    /// value the envelope cannot carry), or data in DATA frames (a `max_payload_frame` of
    /// 0): the response cannot be passed on whole.
    #[error("the response cannot be framed for the sidecar: {0}")]
    Encode(EncodeError),
}

/// Writes one body frame of the upstream's response. Unframed (`framed` false), only data
/// goes out and trailers are dropped: the requester did not ask for them. Framed, data
/// becomes DATA frames and trailers (hop-by-hop fields removed) a TRAILERS frame; an empty
/// trailer section is left out.
pub(super) async fn write_body_frame(
    send: &mut StreamSend,
    frame: Frame<Bytes>,
    framed: bool,
    limits: &Limits,
) -> Result<(), FrameError> {
    let data = match frame.into_data() {
        Ok(data) => data,
        Err(frame) => {
            let Ok(trailers) = frame.into_trailers() else {
                return Ok(()); // a frame kind of the future: nothing to pass on
            };
            let trailers = headers::to_envelope(trailers);
            if !framed || trailers.is_empty() {
                return Ok(());
            }
            let bytes = trailers_frame(&trailers, limits).map_err(FrameError::Encode)?;
            return Ok(send.write_chunk(bytes).await?);
        }
    };
    if data.is_empty() {
        return Ok(());
    }
    if !framed {
        return Ok(send.write_chunk(data).await?);
    }
    // Only a limit of 0 makes this fail, and then no body can be carried framed at all.
    let frames = DataFrames::new(data, limits).map_err(FrameError::Encode)?;
    for (header, piece) in frames {
        if piece.len() <= COALESCE_MAX {
            let mut chunk = BytesMut::with_capacity(header.as_slice().len() + piece.len());
            chunk.extend_from_slice(header.as_slice());
            chunk.extend_from_slice(&piece);
            send.write_chunk(chunk.freeze()).await?;
        } else {
            send.write_chunk(header.to_bytes()).await?;
            send.write_chunk(piece).await?;
        }
    }
    Ok(())
}
