//! The `aws-chunked` body decoder: verifies chunk and trailer signatures while streaming.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use futures::Stream;
use sha2::{Digest, Sha256};

use super::sigv4::{ct_eq, decode_signature, signature_mismatch};
use super::{ChunkSigner, Payload};
use crate::error::{S3Code, S3Error};

/// The largest chunk accepted (the SDKs send 64 KiB).
const MAX_CHUNK_SIZE: usize = 16 << 20;
/// The longest chunk header or trailer line, without CRLF.
const MAX_LINE: usize = 4096;
/// The most trailer bytes accepted in total.
const MAX_TRAILER_BYTES: usize = 16 * 1024;

/// The trailing headers of an `aws-chunked` body, filled in once the body has been read
/// completely and verified.
#[derive(Clone, Default, Debug)]
pub struct TrailerSlot(Arc<Mutex<Vec<(String, String)>>>);

impl TrailerSlot {
    /// The trailing headers (lower-case names); empty until the body has ended successfully.
    pub fn get(&self) -> Vec<(String, String)> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, trailers: Vec<(String, String)>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = trailers;
    }
}

/// The decoded payload of an `aws-chunked` body; see [`decode_chunked`].
pub struct ChunkedBody<S> {
    inner: S,
    decoder: Decoder,
    out: VecDeque<Bytes>,
    slot: TrailerSlot,
    done: bool,
}

/// Decodes an aws-chunked body (for the two SignedChunks variants and
/// UnsignedChunksWithTrailer), verifying every chunk signature and the trailer signature,
/// yielding the decoded payload bytes.
///
/// Streams: holds at most one chunk (chunks over 16 MiB are refused). A body that ends early
/// yields IncompleteBody, a malformed one InvalidRequest, a bad signature
/// SignatureDoesNotMatch. Trailing headers go into the returned [`TrailerSlot`] once the
/// stream has ended successfully. Other payload kinds pass the body through unchanged.
pub fn decode_chunked<S, E>(body: S, payload: &Payload) -> (ChunkedBody<S>, TrailerSlot)
where
    S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
    E: std::fmt::Display,
{
    let slot = TrailerSlot::default();
    let body = ChunkedBody {
        inner: body,
        decoder: Decoder::new(payload),
        out: VecDeque::new(),
        slot: slot.clone(),
        done: false,
    };
    (body, slot)
}

impl<S, E> Stream for ChunkedBody<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    type Item = Result<Bytes, S3Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(bytes) = this.out.pop_front() {
                return Poll::Ready(Some(Ok(bytes)));
            }
            if this.done {
                return Poll::Ready(None);
            }
            let result = match Pin::new(&mut this.inner).poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(bytes))) => this.decoder.feed(bytes, &mut this.out),
                Poll::Ready(Some(Err(e))) => {
                    tracing::debug!(error = %e, "reading an aws-chunked body failed");
                    Err(incomplete())
                }
                Poll::Ready(None) => this.decoder.finish().map(|trailers| {
                    this.slot.set(trailers);
                    this.done = true;
                }),
            };
            if let Err(e) = result {
                this.done = true;
                this.out.clear();
                return Poll::Ready(Some(Err(e)));
            }
        }
    }
}

fn incomplete() -> S3Error {
    S3Error::new(
        S3Code::IncompleteBody,
        "The request body terminated unexpectedly",
    )
}

fn malformed(detail: &str) -> S3Error {
    S3Error::invalid_request(format!("Malformed aws-chunked body: {detail}"))
}

enum Mode {
    Passthrough,
    Unsigned,
    Signed {
        signer: ChunkSigner,
        previous: String,
        trailer: bool,
    },
}

enum State {
    /// Reading a chunk header line.
    Header,
    /// Reading chunk data.
    Data {
        remaining: usize,
        signature: Option<[u8; 32]>,
    },
    /// Reading the CRLF after chunk data.
    DataEnd { seen: usize },
    /// Reading trailer lines up to the empty line.
    Trailers,
    /// The final CRLF has been read.
    Done,
}

/// A push parser for aws-chunked bodies.
struct Decoder {
    mode: Mode,
    state: State,
    line: Vec<u8>,
    hasher: Sha256,
    held: Vec<Bytes>,
    trailers: Vec<(String, String)>,
    trailer_signature: Option<String>,
    trailer_bytes: usize,
}

impl Decoder {
    fn new(payload: &Payload) -> Self {
        let mode = match payload {
            Payload::Unsigned | Payload::Sha256(_) => Mode::Passthrough,
            Payload::UnsignedChunksWithTrailer => Mode::Unsigned,
            Payload::SignedChunks { signer, trailer } => Mode::Signed {
                previous: signer.seed().to_owned(),
                signer: signer.clone(),
                trailer: *trailer,
            },
        };
        Decoder {
            mode,
            state: State::Header,
            line: Vec::new(),
            hasher: Sha256::new(),
            held: Vec::new(),
            trailers: Vec::new(),
            trailer_signature: None,
            trailer_bytes: 0,
        }
    }

    /// Consumes `input`, pushing verified payload bytes to `out`.
    fn feed(&mut self, mut input: Bytes, out: &mut VecDeque<Bytes>) -> Result<(), S3Error> {
        if matches!(self.mode, Mode::Passthrough) {
            if !input.is_empty() {
                out.push_back(input);
            }
            return Ok(());
        }
        while !input.is_empty() {
            match &mut self.state {
                State::Header => {
                    if let Some(line) = self.take_line(&mut input)? {
                        self.on_header(&line)?;
                    }
                }
                State::Data { remaining, .. } => {
                    let n = (*remaining).min(input.len());
                    *remaining -= n;
                    let finished = *remaining == 0;
                    let piece = input.split_to(n);
                    if matches!(self.mode, Mode::Signed { .. }) {
                        self.hasher.update(&piece);
                        self.held.push(piece);
                    } else {
                        out.push_back(piece);
                    }
                    if finished {
                        self.end_data(out)?;
                    }
                }
                State::DataEnd { seen } => {
                    if input[0] != b"\r\n"[*seen] {
                        return Err(malformed("chunk data must be followed by CRLF"));
                    }
                    input.advance(1);
                    *seen += 1;
                    if *seen == 2 {
                        self.state = State::Header;
                    }
                }
                State::Trailers => {
                    if let Some(line) = self.take_line(&mut input)? {
                        self.on_trailer_line(&line)?;
                    }
                }
                State::Done => return Err(malformed("data after the final chunk")),
            }
        }
        Ok(())
    }

    /// The trailers once the whole body has been read, else IncompleteBody.
    fn finish(&mut self) -> Result<Vec<(String, String)>, S3Error> {
        match (&self.mode, &self.state) {
            (Mode::Passthrough, _) | (_, State::Done) => Ok(std::mem::take(&mut self.trailers)),
            _ => Err(incomplete()),
        }
    }

    /// Takes bytes up to and including LF; returns the line without CRLF once complete.
    fn take_line(&mut self, input: &mut Bytes) -> Result<Option<Vec<u8>>, S3Error> {
        let newline = input.iter().position(|&b| b == b'\n');
        let take = newline.map_or(input.len(), |i| i + 1);
        if self.line.len() + take > MAX_LINE + 2 {
            return Err(malformed("line too long"));
        }
        self.line.extend_from_slice(&input[..take]);
        input.advance(take);
        if newline.is_none() {
            return Ok(None);
        }
        let mut line = std::mem::take(&mut self.line);
        if !line.ends_with(b"\r\n") {
            return Err(malformed("lines must end with CRLF"));
        }
        line.truncate(line.len() - 2);
        Ok(Some(line))
    }

    fn on_header(&mut self, line: &[u8]) -> Result<(), S3Error> {
        let text = std::str::from_utf8(line).map_err(|_| malformed("bad chunk header"))?;
        let (size, extension) = match text.split_once(';') {
            Some((size, ext)) => (size, Some(ext)),
            None => (text, None),
        };
        if size.is_empty() || size.len() > 16 || !size.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(malformed("bad chunk size"));
        }
        let size = u64::from_str_radix(size, 16).map_err(|_| malformed("bad chunk size"))?;
        let size = usize::try_from(size)
            .ok()
            .filter(|&s| s <= MAX_CHUNK_SIZE)
            .ok_or_else(|| malformed("chunks may not be larger than 16 MiB"))?;
        let signature = match self.mode {
            Mode::Signed { .. } => {
                let sig = extension
                    .and_then(|e| e.strip_prefix("chunk-signature="))
                    .ok_or_else(|| malformed("missing chunk-signature"))?;
                Some(decode_signature(sig).ok_or_else(signature_mismatch)?)
            }
            _ => None,
        };
        if size > 0 {
            self.hasher = Sha256::new();
            self.state = State::Data {
                remaining: size,
                signature,
            };
            return Ok(());
        }
        if let Some(signature) = signature {
            self.verify_chunk(&signature, &Sha256::digest(b""))?;
        }
        self.state = State::Trailers;
        Ok(())
    }

    fn end_data(&mut self, out: &mut VecDeque<Bytes>) -> Result<(), S3Error> {
        if let State::Data {
            signature: Some(signature),
            ..
        } = self.state
        {
            let hash = std::mem::take(&mut self.hasher).finalize();
            self.verify_chunk(&signature, &hash)?;
            out.extend(self.held.drain(..));
        }
        self.state = State::DataEnd { seen: 0 };
        Ok(())
    }

    fn verify_chunk(&mut self, provided: &[u8; 32], data_sha256: &[u8]) -> Result<(), S3Error> {
        if let Mode::Signed {
            signer, previous, ..
        } = &mut self.mode
        {
            let computed = signer.chunk_signature(previous, data_sha256);
            if !ct_eq(&computed, provided) {
                return Err(signature_mismatch());
            }
            *previous = hex::encode(computed);
        }
        Ok(())
    }

    fn on_trailer_line(&mut self, line: &[u8]) -> Result<(), S3Error> {
        if line.is_empty() {
            return self.finish_trailers();
        }
        if let Mode::Signed { trailer: false, .. } = self.mode {
            return Err(malformed(
                "trailing headers need STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
            ));
        }
        self.trailer_bytes += line.len();
        if self.trailer_bytes > MAX_TRAILER_BYTES {
            return Err(malformed("trailing headers too large"));
        }
        let text = std::str::from_utf8(line).map_err(|_| malformed("bad trailing header"))?;
        let (name, value) = text
            .split_once(':')
            .ok_or_else(|| malformed("bad trailing header"))?;
        let name = name.trim().to_ascii_lowercase();
        if name.is_empty() {
            return Err(malformed("bad trailing header"));
        }
        let value = value.trim().to_owned();
        if name == "x-amz-trailer-signature" {
            if self.trailer_signature.replace(value).is_some() {
                return Err(malformed("repeated x-amz-trailer-signature"));
            }
        } else {
            self.trailers.push((name, value));
        }
        Ok(())
    }

    fn finish_trailers(&mut self) -> Result<(), S3Error> {
        if let Mode::Signed {
            signer,
            previous,
            trailer: true,
        } = &self.mode
        {
            if !self.trailers.is_empty() || self.trailer_signature.is_some() {
                let provided = self
                    .trailer_signature
                    .as_deref()
                    .and_then(decode_signature)
                    .ok_or_else(signature_mismatch)?;
                let mut sorted: Vec<&(String, String)> = self.trailers.iter().collect();
                sorted.sort_by(|a, b| a.0.cmp(&b.0));
                let mut canonical = Vec::new();
                for (name, value) in sorted {
                    canonical.extend_from_slice(name.as_bytes());
                    canonical.push(b':');
                    canonical.extend_from_slice(value.as_bytes());
                    canonical.push(b'\n');
                }
                let computed = signer.trailer_signature(previous, &canonical);
                if !ct_eq(&computed, &provided) {
                    return Err(signature_mismatch());
                }
            }
        }
        self.state = State::Done;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
