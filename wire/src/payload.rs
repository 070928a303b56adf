//! Framed response payloads (SPEC.md §6.3): body bytes in DATA frames, optionally ended by
//! one TRAILERS frame that carries the HTTP trailer section (RFC 9110 §6.5).
//!
//! A response envelope with `framed-payload` (only ever sent in answer to a request with
//! `te-trailers`) is followed by a sequence of frames instead of raw body bytes:
//!
//! ```text
//! payload-frame = type:varint  length:varint  bytes:byte[length]
//! ```
//!
//! - `0x00` DATA: `bytes` are body bytes (at most `max_payload_frame`);
//! - `0x01` TRAILERS: `bytes` are a field block of `http-header` fields exactly as in an
//!   envelope's header block (SPEC.md §5.1, §5.8), at most `max_header_block` bytes; at most
//!   one, and the last frame;
//! - anything else: skipped (after its length is checked against `max_payload_frame`).
//!
//! FIN after a complete frame ends the payload; FIN inside a frame means it was truncated.
//!
//! [`PayloadDecoder`] is incremental and sans-I/O: push each chunk the transport hands out
//! ([`PayloadDecoder::push`], zero-copy), pull frames out ([`PayloadDecoder::next_frame`])
//! until it says it needs more, and at the end of the stream call
//! [`PayloadDecoder::finish`]. DATA bytes come out as soon as they arrive, as zero-copy
//! slices of the pushed chunks: a DATA frame split across chunks comes out in pieces (frame
//! boundaries carry no meaning, as in HTTP/2, RFC 9113 §6.1), so nothing is held back for
//! a frame to complete. Only a frame header (at most 16 bytes) and a TRAILERS frame (at most
//! `max_header_block`) are ever buffered, so the decoder holds at most those bytes plus the
//! rest of the last chunk pushed.
//!
//! The encoders write a DATA frame's header apart from its data ([`FrameHeader`],
//! [`DataFrames`]), so body chunks are never copied; a TRAILERS frame is small and written
//! whole ([`encode_trailers`], [`trailers_frame`]).
//!
//! ```
//! use aimux_wire::{DataFrames, Header, Limits, PayloadDecoder, PayloadFrame, trailers_frame};
//! use bytes::{Bytes, BytesMut};
//!
//! let limits = Limits::default();
//! // Sender: one DATA frame per body chunk, then the trailers.
//! let mut stream = BytesMut::new();
//! for (header, data) in DataFrames::new(Bytes::from_static(b"hello"), &limits)? {
//!     stream.extend_from_slice(header.as_slice());
//!     stream.extend_from_slice(&data);
//! }
//! let trailers = vec![Header::new("grpc-status", "0")];
//! stream.extend_from_slice(&trailers_frame(&trailers, &limits)?);
//!
//! // Receiver: push what arrives, pull frames, finish at FIN.
//! let mut decoder = PayloadDecoder::new(&limits);
//! decoder.push(stream.freeze());
//! assert_eq!(decoder.next_frame()?, Some(PayloadFrame::Data(Bytes::from_static(b"hello"))));
//! assert_eq!(decoder.next_frame()?, Some(PayloadFrame::Trailers(trailers)));
//! assert_eq!(decoder.next_frame()?, None);
//! decoder.finish()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::VecDeque;

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{EncodeError, FrameId, Malformed};
use crate::field::{self, BlockWriter, Counter, FieldIter, Out, Sink, UNKNOWN};
use crate::http::{self, Header};
use crate::limits::Limits;
use crate::varint;

/// Payload frame type numbers (SPEC.md §6.3). An open registry: receivers skip types they
/// do not know.
pub mod frame_type {
    /// Body bytes.
    pub const DATA: u64 = 0x00;
    /// The trailer section: a field block of `http-header` fields. At most one, last.
    pub const TRAILERS: u64 = 0x01;
}

/// The longest frame header: two 8-byte varints.
pub const MAX_FRAME_HEADER_LEN: usize = 16;

/// Names of the payload frame types, for error messages.
fn frame_name(ty: u64) -> &'static str {
    match ty {
        frame_type::DATA => "DATA",
        frame_type::TRAILERS => "TRAILERS",
        _ => UNKNOWN,
    }
}

fn frame_id(ty: u64) -> FrameId {
    FrameId {
        ty,
        name: frame_name(ty),
    }
}

/// Names of the fields a TRAILERS frame's field block knows: only `http-header`.
fn trailer_field_names(ty: u64) -> &'static str {
    match ty {
        field::HTTP_HEADER => "http-header",
        _ => UNKNOWN,
    }
}

/// What a framed payload yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayloadFrame {
    /// Body bytes: a DATA frame, or a piece of one (never empty).
    Data(Bytes),
    /// The trailer section, in order (names may repeat). Nothing follows it but the end of
    /// the stream.
    Trailers(Vec<Header>),
}

/// Received bytes not yet decoded: the pushed chunks, front first.
#[derive(Debug, Default)]
struct Input {
    chunks: VecDeque<Bytes>,
    len: usize,
}

impl Input {
    fn push(&mut self, chunk: Bytes) {
        if !chunk.is_empty() {
            self.len = self.len.saturating_add(chunk.len());
            self.chunks.push_back(chunk);
        }
    }

    /// Copies up to `out.len()` bytes from the front into `out`; returns how many.
    fn peek(&self, out: &mut [u8]) -> usize {
        let mut n = 0;
        for chunk in &self.chunks {
            let Some(rest) = out.get_mut(n..) else { break };
            let take = rest.len().min(chunk.len());
            if let (Some(dst), Some(src)) = (rest.get_mut(..take), chunk.get(..take)) {
                dst.copy_from_slice(src);
            }
            n = n.saturating_add(take);
            if n == out.len() {
                break;
            }
        }
        n
    }

    /// Drops `n` bytes from the front (at most what is there).
    fn advance(&mut self, mut n: usize) {
        while n > 0 {
            let Some(front) = self.chunks.front_mut() else {
                break;
            };
            if front.len() > n {
                bytes::Buf::advance(front, n);
                self.len = self.len.saturating_sub(n);
                return;
            }
            n = n.saturating_sub(front.len());
            self.len = self.len.saturating_sub(front.len());
            self.chunks.pop_front();
        }
    }

    /// Up to `max` bytes from the front chunk, without copying.
    fn take_front(&mut self, max: usize) -> Bytes {
        let Some(front) = self.chunks.front_mut() else {
            return Bytes::new();
        };
        let piece = if front.len() > max {
            front.split_to(max)
        } else {
            let whole = std::mem::take(front);
            self.chunks.pop_front();
            whole
        };
        self.len = self.len.saturating_sub(piece.len());
        piece
    }

    /// Exactly `n` bytes from the front (the caller checked `n <= len`): a slice of the
    /// front chunk when it holds them all, else a copy.
    fn take_exact(&mut self, n: usize) -> Bytes {
        if self.chunks.front().is_some_and(|f| f.len() >= n) {
            return self.take_front(n);
        }
        let mut out = BytesMut::with_capacity(n);
        while out.len() < n {
            let piece = self.take_front(n.saturating_sub(out.len()));
            if piece.is_empty() {
                break;
            }
            out.extend_from_slice(&piece);
        }
        out.freeze()
    }
}

/// Where the decoder is in the frame sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Between frames: a frame header comes next (or the end of the stream).
    Header,
    /// Inside a DATA frame with this many body bytes still to come.
    Data { remaining: u64 },
    /// Inside an unknown frame, skipping this many more bytes.
    Skip { remaining: u64 },
    /// Waiting for a whole TRAILERS frame of this many bytes.
    Trailers { len: usize },
    /// The TRAILERS frame has been decoded: only the end of the stream may follow.
    Done,
    /// The payload is malformed; this error is returned again.
    Failed(Malformed),
}

/// An incremental decoder of a framed payload (SPEC.md §6.3); see the module docs.
///
/// `next_frame` returning `Ok(None)` is the payload's *incomplete*: nothing is wrong with
/// the bytes so far, and more bytes (or the end of the stream) decide. `Err` is
/// *malformed*, final: the payload cannot be used. At the end of the stream, [`finish`]
/// says whether the payload ended cleanly between frames or was cut inside one (which is
/// malformed, as a truncated envelope is, SPEC.md §9).
///
/// [`finish`]: PayloadDecoder::finish
#[derive(Debug)]
pub struct PayloadDecoder {
    limits: Limits,
    input: Input,
    state: State,
}

impl PayloadDecoder {
    /// A decoder at the start of a framed payload.
    #[must_use]
    pub fn new(limits: &Limits) -> Self {
        PayloadDecoder {
            limits: *limits,
            input: Input::default(),
            state: State::Header,
        }
    }

    /// Appends bytes received from the stream (kept as they are, not copied).
    pub fn push(&mut self, chunk: Bytes) {
        self.input.push(chunk);
    }

    /// Bytes pushed and not yet decoded.
    #[must_use]
    pub fn buffered(&self) -> usize {
        self.input.len
    }

    /// True once the TRAILERS frame has been returned: the payload is complete as soon as
    /// the stream ends, and any further byte is malformed.
    #[must_use]
    pub fn has_trailers(&self) -> bool {
        self.state == State::Done
    }

    /// The next frame (or piece of a DATA frame); `Ok(None)` when more bytes are needed.
    ///
    /// # Errors
    /// [`Malformed`] when the bytes received prove the payload invalid: a frame over its
    /// limit, bytes after the TRAILERS frame, or an invalid trailer field block. The
    /// decoder then returns the same error on every call.
    pub fn next_frame(&mut self) -> Result<Option<PayloadFrame>, Malformed> {
        match self.step() {
            Err(e) => {
                self.state = State::Failed(e.clone());
                Err(e)
            }
            ok => ok,
        }
    }

    fn step(&mut self) -> Result<Option<PayloadFrame>, Malformed> {
        loop {
            match &mut self.state {
                State::Failed(e) => return Err(e.clone()),
                State::Done if self.input.len > 0 => return Err(Malformed::FrameAfterTrailers),
                State::Done => return Ok(None),
                State::Header => {
                    let Some((ty, len, header_len)) = self.peek_header() else {
                        return Ok(None);
                    };
                    self.state = self.start_frame(ty, len)?;
                    self.input.advance(header_len);
                }
                State::Data { remaining } => {
                    if self.input.len == 0 {
                        return Ok(None);
                    }
                    let max = usize::try_from(*remaining).unwrap_or(usize::MAX);
                    let piece = self.input.take_front(max);
                    *remaining = remaining.saturating_sub(piece.len() as u64);
                    if *remaining == 0 {
                        self.state = State::Header;
                    }
                    return Ok(Some(PayloadFrame::Data(piece)));
                }
                State::Skip { remaining } => {
                    let n = usize::try_from(*remaining)
                        .unwrap_or(usize::MAX)
                        .min(self.input.len);
                    self.input.advance(n);
                    *remaining = remaining.saturating_sub(n as u64);
                    if *remaining > 0 {
                        return Ok(None);
                    }
                    self.state = State::Header;
                }
                State::Trailers { len } => {
                    let len = *len;
                    if self.input.len < len {
                        return Ok(None);
                    }
                    let block = self.input.take_exact(len);
                    let trailers = read_trailers(&block, &self.limits)
                        .map_err(|e| Malformed::InvalidTrailers(Box::new(e)))?;
                    self.state = State::Done;
                    return Ok(Some(PayloadFrame::Trailers(trailers)));
                }
            }
        }
    }

    /// The frame header at the front, if it is all there: (type, length, header bytes).
    fn peek_header(&self) -> Option<(u64, u64, usize)> {
        let mut head = [0u8; MAX_FRAME_HEADER_LEN];
        let n = self.input.peek(&mut head);
        let head = head.get(..n)?;
        let (ty, ty_len) = varint::decode(head).ok()?;
        let (len, len_len) = varint::decode(head.get(ty_len..)?).ok()?;
        Some((ty, len, ty_len.saturating_add(len_len)))
    }

    /// Checks a frame's declared length against its limit and picks the state that reads it.
    fn start_frame(&self, ty: u64, len: u64) -> Result<State, Malformed> {
        let limit = match ty {
            frame_type::TRAILERS => self.limits.max_header_block,
            _ => self.limits.max_payload_frame,
        };
        if len > limit as u64 {
            return Err(Malformed::PayloadFrameTooLarge {
                frame: frame_id(ty),
                len,
                limit,
            });
        }
        Ok(match ty {
            frame_type::DATA if len == 0 => State::Header,
            frame_type::DATA => State::Data { remaining: len },
            // Bounded by the limit just checked, which is a usize.
            frame_type::TRAILERS => State::Trailers {
                len: usize::try_from(len).unwrap_or(usize::MAX),
            },
            // Forward compatibility: unknown frame types are skipped (SPEC.md §6.3).
            _ if len == 0 => State::Header,
            _ => State::Skip { remaining: len },
        })
    }

    /// Call at the end of the stream (FIN), once [`next_frame`](Self::next_frame) has
    /// returned `Ok(None)`: `Ok` if the payload ended between frames, else why not.
    ///
    /// # Errors
    /// [`Malformed::TruncatedPayload`] if the stream ended inside a frame; the decoder's
    /// earlier error if it already failed.
    pub fn finish(&self) -> Result<(), Malformed> {
        let inside = match &self.state {
            State::Failed(e) => return Err(e.clone()),
            State::Done if self.input.len > 0 => return Err(Malformed::FrameAfterTrailers),
            State::Header | State::Done if self.input.len == 0 => return Ok(()),
            State::Header | State::Done => "a frame header",
            State::Data { .. } => "a DATA frame",
            State::Skip { .. } => "an unknown frame",
            State::Trailers { .. } => "the TRAILERS frame",
        };
        Err(Malformed::TruncatedPayload { inside })
    }
}

/// Decodes the field block of a TRAILERS frame (SPEC.md §5.1 layout, §5.8 fields).
fn read_trailers(block: &Bytes, limits: &Limits) -> Result<Vec<Header>, Malformed> {
    let scan = field::scan(block, limits, trailer_field_names)?;
    let mut headers = Vec::with_capacity(scan.headers);
    for f in FieldIter::new(block, limits, trailer_field_names) {
        let f = f?;
        if f.ty == field::HTTP_HEADER {
            let fid = field::id(trailer_field_names, f.ty);
            headers.push(http::read_header(fid, f.value, |v| {
                field::sub_bytes(block, v)
            })?);
        }
        // Other field types are unknown in a trailer block and skipped (SPEC.md §7).
    }
    Ok(headers)
}

/// The header of one payload frame: its type and length, 2 to 16 bytes. Written in front of
/// the frame's bytes, which are sent as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    bytes: [u8; MAX_FRAME_HEADER_LEN],
    len: u8,
}

impl FrameHeader {
    /// The header of a DATA frame of `len` body bytes.
    ///
    /// # Errors
    /// When `len` is over `limits.max_payload_frame` (a receiver would reject the frame;
    /// [`DataFrames`] splits larger chunks).
    pub fn data(len: usize, limits: &Limits) -> Result<Self, EncodeError> {
        if len > limits.max_payload_frame {
            return Err(Malformed::PayloadFrameTooLarge {
                frame: frame_id(frame_type::DATA),
                len: len as u64,
                limit: limits.max_payload_frame,
            }
            .into());
        }
        Ok(Self::new(frame_type::DATA, len as u64))
    }

    /// A header for a frame of type `ty` (below 2^62) and `len` bytes (below 2^62).
    fn new(ty: u64, len: u64) -> Self {
        let mut bytes = [0u8; MAX_FRAME_HEADER_LEN];
        let mut out: &mut [u8] = &mut bytes;
        let a = varint::encode(&mut out, ty).unwrap_or(0);
        let b = varint::encode(&mut out, len).unwrap_or(0);
        FrameHeader {
            bytes,
            // At most 16.
            len: u8::try_from(a.saturating_add(b)).unwrap_or(0),
        }
    }

    /// The header's bytes.
    #[must_use]
    pub fn as_slice(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or_default()
    }

    /// The header's bytes as `Bytes` (a 2- to 16-byte copy).
    #[must_use]
    pub fn to_bytes(&self) -> Bytes {
        Bytes::copy_from_slice(self.as_slice())
    }
}

/// A body chunk as DATA frames: `(header, bytes)` pairs whose bytes are zero-copy slices of
/// the chunk, each at most `max_payload_frame` long. An empty chunk yields nothing.
#[derive(Debug, Clone)]
pub struct DataFrames {
    rest: Bytes,
    max: usize,
}

impl DataFrames {
    /// Splits `data` into DATA frames within `limits`.
    ///
    /// # Errors
    /// Only when `limits.max_payload_frame` is 0 and `data` is not empty: no DATA frame
    /// could carry it.
    pub fn new(data: Bytes, limits: &Limits) -> Result<Self, EncodeError> {
        if limits.max_payload_frame == 0 && !data.is_empty() {
            return Err(Malformed::PayloadFrameTooLarge {
                frame: frame_id(frame_type::DATA),
                len: data.len() as u64,
                limit: 0,
            }
            .into());
        }
        Ok(DataFrames {
            rest: data,
            max: limits.max_payload_frame,
        })
    }
}

impl Iterator for DataFrames {
    type Item = (FrameHeader, Bytes);

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let piece = if self.rest.len() > self.max {
            self.rest.split_to(self.max)
        } else {
            std::mem::take(&mut self.rest)
        };
        Some((
            FrameHeader::new(frame_type::DATA, piece.len() as u64),
            piece,
        ))
    }
}

/// Measures and checks a TRAILERS frame: returns (field block length, frame length).
fn measure_trailers(trailers: &[Header], limits: &Limits) -> Result<(usize, usize), Malformed> {
    let fid = field::id(trailer_field_names, field::HTTP_HEADER);
    for h in trailers {
        http::check_header(fid, h)?;
    }
    let mut counter = Counter::default();
    write_trailer_block(&mut counter, trailers, limits)?;
    let block_len = counter.0;
    if block_len > limits.max_header_block {
        return Err(Malformed::PayloadFrameTooLarge {
            frame: frame_id(frame_type::TRAILERS),
            len: block_len as u64,
            limit: limits.max_header_block,
        });
    }
    let header_len = FrameHeader::new(frame_type::TRAILERS, block_len as u64)
        .as_slice()
        .len();
    Ok((block_len, header_len.saturating_add(block_len)))
}

fn write_trailer_block(
    sink: &mut dyn Sink,
    trailers: &[Header],
    limits: &Limits,
) -> Result<(), Malformed> {
    let mut w = BlockWriter::new(sink, limits, trailer_field_names);
    for h in trailers {
        w.field(field::HTTP_HEADER, |s| http::write_header(s, h))?;
    }
    Ok(())
}

/// Encodes a TRAILERS frame (header and field block) into `buf`, returning the bytes
/// written. Refuses, writing nothing, what a receiver with the same `limits` would reject:
/// an invalid name or value, more than `max_http_headers` fields, a field over
/// `max_field_value`, or a block over `max_header_block`.
///
/// # Errors
/// [`EncodeError::Invalid`] as above; [`EncodeError::BufferTooSmall`] if `buf` cannot
/// take the frame.
pub fn encode_trailers<B: BufMut + ?Sized>(
    buf: &mut B,
    trailers: &[Header],
    limits: &Limits,
) -> Result<usize, EncodeError> {
    let (block_len, total) = measure_trailers(trailers, limits)?;
    if buf.remaining_mut() < total {
        return Err(EncodeError::BufferTooSmall {
            needed: total,
            remaining: buf.remaining_mut(),
        });
    }
    let header = FrameHeader::new(frame_type::TRAILERS, block_len as u64);
    let mut out = Out(buf);
    out.put_slice(header.as_slice());
    write_trailer_block(&mut out, trailers, limits)?;
    Ok(total)
}

/// A TRAILERS frame in a new buffer (see [`encode_trailers`]).
///
/// # Errors
/// As [`encode_trailers`].
pub fn trailers_frame(trailers: &[Header], limits: &Limits) -> Result<Bytes, EncodeError> {
    let (_, total) = measure_trailers(trailers, limits)?;
    let mut out = Vec::with_capacity(total);
    encode_trailers(&mut out, trailers, limits)?;
    Ok(out.into())
}

#[cfg(test)]
#[path = "payload_tests.rs"]
mod tests;
