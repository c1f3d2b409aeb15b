//! HTTP/1.1 wire format for the target side: request heads, response heads, body framing and
//! chunked decoding. Pure functions over buffers; the I/O is in [`crate::upstream`].

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Uri, Version};

/// Most headers accepted in a response head (more: 502).
pub const MAX_HEADERS: usize = 100;
/// Largest response head accepted (larger: 502).
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Largest trailer section accepted after a chunked body.
const MAX_TRAILER_BYTES: usize = 16 * 1024;
/// Largest chunk extension accepted on one chunk-size line.
const MAX_EXTENSION_BYTES: usize = 4 * 1024;

/// A malformed message from a target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid response from target: {0}")]
pub struct ProtocolError(pub &'static str);

impl From<ProtocolError> for std::io::Error {
    fn from(e: ProtocolError) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidData, e)
    }
}

/// How a request body is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestFraming {
    /// No body.
    Empty,
    /// `Content-Length`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

fn is_100_continue(v: &HeaderValue) -> bool {
    v.as_bytes().eq_ignore_ascii_case(b"100-continue")
}

/// Appends a request head to `out`: request line with the origin-form target, the headers
/// except framing ones (and `Expect: 100-continue`, which the proxy answers itself), then the
/// framing header for `framing`. Hop-by-hop headers must already be gone.
pub fn encode_request_head(
    out: &mut Vec<u8>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    framing: RequestFraming,
) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    match uri.path_and_query() {
        Some(pq) if !pq.as_str().is_empty() => out.extend_from_slice(pq.as_str().as_bytes()),
        _ => out.push(b'/'),
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut had_length = false;
    for (name, value) in headers {
        if name == header::CONTENT_LENGTH {
            had_length = true;
            continue;
        }
        if name == header::TRANSFER_ENCODING || (name == header::EXPECT && is_100_continue(value)) {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match framing {
        RequestFraming::Empty => {
            // Methods whose body has a meaning say that it is empty (as does a request that
            // said so itself).
            if had_length || matches!(*method, Method::POST | Method::PUT | Method::PATCH) {
                out.extend_from_slice(b"content-length: 0\r\n");
            }
        }
        RequestFraming::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(n.to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        RequestFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends the chunk-size line of a chunk of `len` bytes.
pub fn encode_chunk_size(out: &mut Vec<u8>, len: usize) {
    out.extend_from_slice(format!("{len:x}\r\n").as_bytes());
}

/// Appends the last chunk with `trailers` and the end of the chunked body.
pub fn encode_last_chunk(out: &mut Vec<u8>, trailers: Option<&HeaderMap>) {
    out.extend_from_slice(b"0\r\n");
    for (name, value) in trailers.into_iter().flatten() {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// A parsed response head.
#[derive(Debug)]
pub struct ResponseHead {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
}

/// Parses a response head at the start of `buf`. `Ok(None)`: incomplete, read more. A complete
/// head is removed from `buf`; header values share its memory.
pub fn parse_response_head(buf: &mut BytesMut) -> Result<Option<ResponseHead>, ProtocolError> {
    // (name, value start, value end) per header, resolved once the head is split off.
    let mut found: [(usize, usize, usize, usize); MAX_HEADERS] = [(0, 0, 0, 0); MAX_HEADERS];
    let (len, status, version, count) = {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        let len = match resp.parse(buf) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => {
                if buf.len() > MAX_HEAD_BYTES {
                    return Err(ProtocolError("response head too large"));
                }
                return Ok(None);
            }
            Err(httparse::Error::TooManyHeaders) => {
                return Err(ProtocolError("too many headers"));
            }
            Err(_) => return Err(ProtocolError("malformed response head")),
        };
        if len > MAX_HEAD_BYTES {
            return Err(ProtocolError("response head too large"));
        }
        let version = match resp.version {
            Some(0) => Version::HTTP_10,
            _ => Version::HTTP_11,
        };
        let status = resp
            .code
            .and_then(|c| StatusCode::from_u16(c).ok())
            .ok_or(ProtocolError("invalid status code"))?;
        let base = buf.as_ptr() as usize;
        let count = resp.headers.len();
        for (slot, h) in found.iter_mut().zip(resp.headers.iter()) {
            let name = h.name.as_ptr() as usize - base;
            let value = h.value.as_ptr() as usize - base;
            *slot = (name, name + h.name.len(), value, value + h.value.len());
        }
        (len, status, version, count)
    };
    let head = buf.split_to(len).freeze();
    let mut headers = HeaderMap::with_capacity(count);
    for &(ns, ne, vs, ve) in &found[..count] {
        let name = HeaderName::from_bytes(&head[ns..ne])
            .map_err(|_| ProtocolError("invalid header name"))?;
        let value = HeaderValue::from_maybe_shared(head.slice(vs..ve))
            .map_err(|_| ProtocolError("invalid header value"))?;
        headers.append(name, value);
    }
    Ok(Some(ResponseHead {
        status,
        version,
        headers,
    }))
}

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFraming {
    /// No body (HEAD, 1xx, 204, 304).
    Empty,
    Length(u64),
    Chunked,
    /// Until the target closes the connection.
    Eof,
}

/// Whether the comma-separated text values of the headers named `name` include `token`
/// (case-insensitive).
pub fn has_token<'h, I>(headers: I, name: &str, token: &str) -> bool
where
    I: Iterator<Item = (&'h [u8], &'h [u8])>,
{
    headers
        .filter(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
        .filter_map(|(_, v)| text(v))
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// A header value as text (visible ASCII, spaces and tabs), as `HeaderValue::to_str` gives it.
pub fn text(v: &[u8]) -> Option<&str> {
    if v.iter().all(|&b| b == b'\t' || (0x20..0x7f).contains(&b)) {
        std::str::from_utf8(v).ok()
    } else {
        None
    }
}

/// What [`framing_of`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framing {
    pub framing: ResponseFraming,
    /// Whether the connection can carry another request afterwards.
    pub keep_alive: bool,
    /// A `Content-Length` is present but `Transfer-Encoding` overrides it (it must not be
    /// passed on).
    pub length_overridden: bool,
}

/// The framing of a response's body (RFC 9112 section 6.3) from its status, version and
/// header lines (`headers` gives a fresh iterator over `(name, value)` each call).
pub fn framing_of<'h, I>(
    head_request: bool,
    status: u16,
    http10: bool,
    headers: impl Fn() -> I,
) -> Result<Framing, ProtocolError>
where
    I: Iterator<Item = (&'h [u8], &'h [u8])>,
{
    let named = |name: &'static str| {
        headers().filter(move |(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
    };
    let mut keep_alive = if http10 {
        has_token(headers(), "connection", "keep-alive")
    } else {
        !has_token(headers(), "connection", "close")
    };
    let done = |framing, keep_alive| {
        Ok(Framing {
            framing,
            keep_alive,
            length_overridden: false,
        })
    };
    if head_request || (100..200).contains(&status) || status == 204 || status == 304 {
        return done(ResponseFraming::Empty, keep_alive);
    }
    if named("transfer-encoding").next().is_some() {
        let length_overridden = named("content-length").next().is_some();
        if length_overridden {
            // Both: a sign of a confused or malicious sender; deliver by the transfer coding
            // and do not trust the connection afterwards.
            keep_alive = false;
        }
        let last = named("transfer-encoding")
            .filter_map(|(_, v)| text(v))
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .last();
        let (framing, keep_alive) = match last {
            Some(t) if t.eq_ignore_ascii_case("chunked") => (ResponseFraming::Chunked, keep_alive),
            _ => (ResponseFraming::Eof, false),
        };
        return Ok(Framing {
            framing,
            keep_alive,
            length_overridden,
        });
    }
    match content_length(named("content-length").map(|(_, v)| v))? {
        Some(n) => done(ResponseFraming::Length(n), keep_alive),
        None => done(ResponseFraming::Eof, false),
    }
}

/// The value of `Content-Length` header values (a list of equal values counts as one);
/// `None` when there are none.
pub fn content_length<'h>(
    values: impl Iterator<Item = &'h [u8]>,
) -> Result<Option<u64>, ProtocolError> {
    let mut length: Option<u64> = None;
    for v in values {
        for part in v.split(|&b| b == b',') {
            let part = part.trim_ascii();
            if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
                return Err(ProtocolError("invalid content-length"));
            }
            let n = std::str::from_utf8(part)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or(ProtocolError("invalid content-length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(ProtocolError("conflicting content-length"));
            }
            length = Some(n);
        }
    }
    Ok(length)
}

/// The framing of a response's body (RFC 9112 section 6.3) and whether the connection can
/// carry another request afterwards. A `Content-Length` that `Transfer-Encoding` overrides is
/// removed from `head.headers`.
pub fn response_framing(
    request_method: &Method,
    head: &mut ResponseHead,
) -> Result<(ResponseFraming, bool), ProtocolError> {
    let f = framing_of(
        *request_method == Method::HEAD,
        head.status.as_u16(),
        head.version == Version::HTTP_10,
        || {
            head.headers
                .iter()
                .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()))
        },
    )?;
    if f.length_overridden {
        head.headers.remove(header::CONTENT_LENGTH);
    }
    Ok((f.framing, f.keep_alive))
}

/// What [`ChunkedDecoder::decode`] found.
#[derive(Debug, PartialEq)]
pub enum Chunk {
    Data(Bytes),
    /// The trailer section (the body is complete after it).
    Trailers(HeaderMap),
    /// The body is complete.
    End,
    /// The buffer holds no further complete element: read more.
    NeedMore,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Hex digits of a chunk size (`digits` so far).
    Size,
    /// Whitespace or extensions after the size, up to the line end.
    Extension,
    /// A CR was seen at the end of the size line.
    SizeLf,
    /// Chunk data (`remaining` bytes to go).
    Data,
    DataCr,
    DataLf,
    /// After the last chunk: the trailer section up to an empty line (for
    /// [`ChunkedDecoder::scan`]: at the start of a trailer line).
    Trailers,
    /// [`ChunkedDecoder::scan`] only: inside a trailer line.
    TrailerLine,
    /// [`ChunkedDecoder::scan`] only: a CR at the start of a trailer line.
    TrailerCr,
    Done,
}

/// An incremental `Transfer-Encoding: chunked` decoder: feed it the bytes read so far, any
/// split, and it consumes what it can.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    size: u64,
    digits: u8,
    ext_len: usize,
    /// Trailer bytes seen by [`ChunkedDecoder::scan`].
    trailer_len: usize,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self {
            state: State::Size,
            size: 0,
            digits: 0,
            ext_len: 0,
            trailer_len: 0,
        }
    }
}

impl ChunkedDecoder {
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    fn end_of_size_line(&mut self) -> Result<(), ProtocolError> {
        if self.digits == 0 {
            return Err(ProtocolError("missing chunk size"));
        }
        self.state = if self.size == 0 {
            State::Trailers
        } else {
            State::Data
        };
        Ok(())
    }

    /// Consumes from the start of `buf` up to the next piece of data, the trailers or the end.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Chunk, ProtocolError> {
        loop {
            match self.state {
                State::Done => return Ok(Chunk::End),
                State::Data => {
                    if buf.is_empty() {
                        return Ok(Chunk::NeedMore);
                    }
                    let n = usize::try_from(self.size).map_or(buf.len(), |s| s.min(buf.len()));
                    self.size -= n as u64;
                    if self.size == 0 {
                        self.state = State::DataCr;
                    }
                    return Ok(Chunk::Data(buf.split_to(n).freeze()));
                }
                State::Trailers => return self.trailers(buf),
                _ => {}
            }
            let Some(&b) = buf.first() else {
                return Ok(Chunk::NeedMore);
            };
            buf.advance(1);
            self.step(b)?;
        }
    }

    /// One byte of a size line or of the CRLF after chunk data.
    fn step(&mut self, b: u8) -> Result<(), ProtocolError> {
        match self.state {
            State::Size => match b {
                b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                    let d = (b as char).to_digit(16).unwrap_or(0);
                    if self.size > u64::MAX >> 4 {
                        return Err(ProtocolError("chunk size too large"));
                    }
                    self.size = (self.size << 4) | u64::from(d);
                    self.digits = self.digits.saturating_add(1);
                }
                b';' | b' ' | b'\t' if self.digits > 0 => {
                    self.state = State::Extension;
                    self.ext_len = 0;
                }
                b'\r' => self.state = State::SizeLf,
                b'\n' => self.end_of_size_line()?,
                _ => return Err(ProtocolError("invalid chunk size")),
            },
            State::Extension => match b {
                b'\r' => self.state = State::SizeLf,
                b'\n' => self.end_of_size_line()?,
                _ => {
                    self.ext_len += 1;
                    if self.ext_len > MAX_EXTENSION_BYTES {
                        return Err(ProtocolError("chunk extension too long"));
                    }
                }
            },
            State::SizeLf => {
                if b != b'\n' {
                    return Err(ProtocolError("invalid chunk size line"));
                }
                self.end_of_size_line()?;
            }
            State::DataCr => {
                if b != b'\r' {
                    return Err(ProtocolError("missing CRLF after chunk"));
                }
                self.state = State::DataLf;
            }
            State::DataLf => {
                if b != b'\n' {
                    return Err(ProtocolError("missing CRLF after chunk"));
                }
                self.state = State::Size;
                self.size = 0;
                self.digits = 0;
            }
            State::Data | State::Trailers | State::TrailerLine | State::TrailerCr | State::Done => {
            }
        }
        Ok(())
    }

    /// Follows a chunked body passed on as it is: consumes bytes from the start of `input` up
    /// to the end of the body, and returns how many belong to it (all of `input` unless the
    /// body ends inside it; [`ChunkedDecoder::is_done`] then says so). Chunk sizes are checked
    /// as [`ChunkedDecoder::decode`] checks them; trailer lines only for their length. Not to
    /// be mixed with `decode` on one body.
    pub fn scan(&mut self, input: &[u8]) -> Result<usize, ProtocolError> {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                State::Done => return Ok(i),
                State::Data => {
                    let n = usize::try_from(self.size)
                        .map_or(input.len() - i, |s| s.min(input.len() - i));
                    self.size -= n as u64;
                    if self.size == 0 {
                        self.state = State::DataCr;
                    }
                    i += n;
                    continue;
                }
                State::Trailers | State::TrailerLine | State::TrailerCr => {
                    let b = input[i];
                    i += 1;
                    self.trailer_len += 1;
                    if self.trailer_len > MAX_TRAILER_BYTES {
                        return Err(ProtocolError("trailers too large"));
                    }
                    self.state = match (self.state, b) {
                        (State::Trailers, b'\r') => State::TrailerCr,
                        (State::Trailers, b'\n') | (State::TrailerCr, b'\n') => State::Done,
                        (State::TrailerCr, _) => return Err(ProtocolError("malformed trailers")),
                        (_, b'\n') => State::Trailers,
                        _ => State::TrailerLine,
                    };
                    continue;
                }
                _ => {}
            }
            self.step(input[i])?;
            i += 1;
        }
        Ok(i)
    }

    /// The trailer section: nothing but an empty line, or header lines ending with one.
    fn trailers(&mut self, buf: &mut BytesMut) -> Result<Chunk, ProtocolError> {
        if buf.starts_with(b"\n") || buf.starts_with(b"\r\n") {
            buf.advance(if buf[0] == b'\n' { 1 } else { 2 });
            self.state = State::Done;
            return Ok(Chunk::End);
        }
        let mut headers = [httparse::EMPTY_HEADER; 64];
        match httparse::parse_headers(buf, &mut headers) {
            Ok(httparse::Status::Complete((len, parsed))) => {
                let mut map = HeaderMap::with_capacity(parsed.len());
                for h in parsed {
                    let name = HeaderName::from_bytes(h.name.as_bytes())
                        .map_err(|_| ProtocolError("invalid trailer name"))?;
                    let value = HeaderValue::from_bytes(h.value)
                        .map_err(|_| ProtocolError("invalid trailer value"))?;
                    map.append(name, value);
                }
                buf.advance(len);
                self.state = State::Done;
                Ok(Chunk::Trailers(map))
            }
            Ok(httparse::Status::Partial) if buf.len() <= MAX_TRAILER_BYTES => Ok(Chunk::NeedMore),
            Ok(httparse::Status::Partial) => Err(ProtocolError("trailers too large")),
            Err(_) => Err(ProtocolError("malformed trailers")),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    /// Body, trailers, bytes after the end.
    type Decoded = (Vec<u8>, Option<HeaderMap>, Vec<u8>);

    /// Feeds `wire` to a decoder in pieces of the given sizes (cycled); returns the body, the
    /// trailers and the bytes left over after the end.
    fn decode_in_pieces(wire: &[u8], pieces: &[usize]) -> Result<Decoded, ProtocolError> {
        let mut dec = ChunkedDecoder::default();
        let mut buf = BytesMut::new();
        let mut body = Vec::new();
        let mut trailers = None;
        let mut fed = 0;
        let mut i = 0;
        loop {
            match dec.decode(&mut buf)? {
                Chunk::Data(d) => {
                    assert!(!d.is_empty());
                    body.extend_from_slice(&d);
                }
                Chunk::Trailers(t) => trailers = Some(t),
                Chunk::End => {
                    let mut rest = buf.to_vec();
                    rest.extend_from_slice(&wire[fed..]);
                    return Ok((body, trailers, rest));
                }
                Chunk::NeedMore => {
                    if fed == wire.len() {
                        return Err(ProtocolError("eof"));
                    }
                    let n = pieces[i % pieces.len()].clamp(1, wire.len() - fed);
                    i += 1;
                    buf.extend_from_slice(&wire[fed..fed + n]);
                    fed += n;
                }
            }
        }
    }

    #[test]
    fn chunked_byte_by_byte_with_extensions_and_trailers() {
        let wire = b"5;name=value\r\nhello\r\n6 \r\n world\r\nA\r\n0123456789\r\n0\r\nX-Sum: 1\r\nX-Other: two\r\n\r\nNEXT";
        let (body, trailers, rest) = decode_in_pieces(wire, &[1]).unwrap();
        assert_eq!(body, b"hello world0123456789");
        let t = trailers.unwrap();
        assert_eq!(t["x-sum"], "1");
        assert_eq!(t["x-other"], "two");
        assert_eq!(rest, b"NEXT");
    }

    #[test]
    fn chunked_without_trailers_and_with_bare_lf_size_lines() {
        let (body, trailers, rest) = decode_in_pieces(b"3\nabc\r\n0\n\r\n", &[2]).unwrap();
        assert_eq!(
            (body.as_slice(), trailers, rest.len()),
            (&b"abc"[..], None, 0)
        );
        let (body, _, _) = decode_in_pieces(b"0\r\n\r\n", &[100]).unwrap();
        assert!(body.is_empty());
    }

    #[test]
    fn chunked_rejects_malformed_input() {
        for wire in [
            &b"g\r\n"[..],
            b"\r\n",
            b";ext\r\n",
            b"3\r\nabcX\r\n",
            b"3\r\nabc\rX",
            b"3\rX",
            b"11111111111111111\r\n",
            b"0\r\nbad trailer\r\n\r\n",
        ] {
            assert!(
                decode_in_pieces(wire, &[1]).is_err(),
                "{:?}",
                String::from_utf8_lossy(wire)
            );
        }
    }

    #[test]
    fn huge_chunk_sizes_are_accepted_and_streamed() {
        let mut dec = ChunkedDecoder::default();
        let mut buf = BytesMut::from(&b"ffffffffffffffff\r\nabc"[..]);
        assert_eq!(
            dec.decode(&mut buf).unwrap(),
            Chunk::Data(Bytes::from("abc"))
        );
        assert_eq!(dec.decode(&mut buf).unwrap(), Chunk::NeedMore);
    }

    fn encode_chunked(chunks: &[Vec<u8>], trailers: &[(String, String)], ext: bool) -> Vec<u8> {
        let mut wire = Vec::new();
        for c in chunks.iter().filter(|c| !c.is_empty()) {
            if ext {
                wire.extend_from_slice(format!("{:X};a=\"b\"\r\n", c.len()).as_bytes());
            } else {
                encode_chunk_size(&mut wire, c.len());
            }
            wire.extend_from_slice(c);
            wire.extend_from_slice(b"\r\n");
        }
        let mut map = HeaderMap::new();
        for (k, v) in trailers {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        encode_last_chunk(&mut wire, Some(&map));
        wire
    }

    proptest! {
        #[test]
        fn chunked_round_trips_whatever_the_read_boundaries(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..8),
            trailers in proptest::collection::vec(("x-[a-z]{1,8}", "[a-zA-Z0-9 ]{0,12}"), 0..3),
            pieces in proptest::collection::vec(1usize..64, 1..8),
            ext in any::<bool>(),
        ) {
            let wire = encode_chunked(&chunks, &trailers, ext);
            let mut tail = wire.clone();
            tail.extend_from_slice(b"GET / HTTP/1.1");
            prop_assert_eq!(scan_in_pieces(&tail, &pieces).unwrap(), wire.len());
            let (body, got, rest) = decode_in_pieces(&wire, &pieces).unwrap();
            prop_assert_eq!(body, chunks.concat());
            prop_assert!(rest.is_empty());
            let got: Vec<(String, String)> = got
                .iter()
                .flatten()
                .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap().trim().to_owned()))
                .collect();
            let want: Vec<(String, String)> = trailers
                .iter()
                .map(|(k, v)| (k.clone(), v.trim().to_owned()))
                .collect();
            prop_assert_eq!(got, want);
        }
    }

    /// Scans `wire` (a chunked body, then other bytes) in pieces: the body's length.
    fn scan_in_pieces(wire: &[u8], pieces: &[usize]) -> Result<usize, ProtocolError> {
        let mut dec = ChunkedDecoder::default();
        let (mut fed, mut i) = (0, 0);
        while !dec.is_done() {
            if fed == wire.len() {
                return Err(ProtocolError("eof"));
            }
            let n = pieces[i % pieces.len()].clamp(1, wire.len() - fed);
            i += 1;
            let used = dec.scan(&wire[fed..fed + n])?;
            assert!(used == n || dec.is_done());
            fed += used;
        }
        Ok(fed)
    }

    #[test]
    fn scanning_finds_the_end_of_chunked_bodies() {
        let wire = b"5;name=value\r\nhello\r\n6 \r\n world\r\n0\r\nX-Sum: 1\r\n\r\nNEXT";
        for piece in [1, 2, 3, 7, 100] {
            assert_eq!(scan_in_pieces(wire, &[piece]).unwrap(), wire.len() - 4);
        }
        assert_eq!(scan_in_pieces(b"0\r\n\r\nGET", &[1]).unwrap(), 5);
        assert_eq!(scan_in_pieces(b"3\nabc\r\n0\n\nX", &[2]).unwrap(), 10);
        for wire in [
            &b"g\r\n"[..],
            b"\r\n",
            b"3\r\nabcX\r\n",
            b"3\rX",
            b"0\r\n\rX",
            b"11111111111111111\r\n",
        ] {
            assert!(
                scan_in_pieces(wire, &[1]).is_err(),
                "{:?}",
                String::from_utf8_lossy(wire)
            );
        }
        let mut big = b"0\r\n".to_vec();
        big.extend(std::iter::repeat_n(b'x', MAX_TRAILER_BYTES + 1));
        assert!(scan_in_pieces(&big, &[4096]).is_err());
    }

    fn head(raw: &str) -> ResponseHead {
        let mut buf = BytesMut::from(raw.as_bytes());
        parse_response_head(&mut buf).unwrap().unwrap()
    }

    #[test]
    fn response_heads_parse_incrementally() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\nX-A: 2\r\n\r\nhello";
        let mut buf = BytesMut::new();
        for (i, b) in raw.iter().enumerate() {
            buf.extend_from_slice(&[*b]);
            let parsed = parse_response_head(&mut buf).unwrap();
            if i + 1 < raw.len() - 5 {
                assert!(parsed.is_none());
                continue;
            }
            let h = parsed.unwrap();
            assert_eq!(h.status, StatusCode::OK);
            assert_eq!(h.version, Version::HTTP_11);
            assert_eq!(h.headers["content-length"], "5");
            let a: Vec<_> = h.headers.get_all("x-a").iter().collect();
            assert_eq!(a, ["1", "2"]);
            assert!(buf.is_empty());
            break;
        }
    }

    #[test]
    fn response_heads_reject_garbage_and_too_many_headers() {
        let mut buf = BytesMut::from(&b"HTTP/1.1 abc\r\n\r\n"[..]);
        assert!(parse_response_head(&mut buf).is_err());
        let mut buf = BytesMut::from(&b"SSH-2.0-OpenSSH\r\n\r\n"[..]);
        assert!(parse_response_head(&mut buf).is_err());
        let mut raw = String::from("HTTP/1.1 200 OK\r\n");
        for i in 0..=MAX_HEADERS {
            raw.push_str(&format!("x-{i}: v\r\n"));
        }
        raw.push_str("\r\n");
        let mut buf = BytesMut::from(raw.as_bytes());
        assert_eq!(
            parse_response_head(&mut buf).unwrap_err(),
            ProtocolError("too many headers")
        );
        let mut buf = BytesMut::from(vec![b'x'; MAX_HEAD_BYTES + 1].as_slice());
        buf[..9].copy_from_slice(b"HTTP/1.1 ");
        assert!(parse_response_head(&mut buf).is_err());
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let get = Method::GET;
        let f = |m: &Method, raw: &str| response_framing(m, &mut head(raw));
        assert_eq!(
            f(&get, "HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n"),
            Ok((ResponseFraming::Length(12), true))
        );
        assert_eq!(
            f(&get, "HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\n"),
            Ok((ResponseFraming::Length(3), true))
        );
        assert!(
            f(
                &get,
                "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"
            )
            .is_err()
        );
        assert!(f(&get, "HTTP/1.1 200 OK\r\nContent-Length: +3\r\n\r\n").is_err());
        assert_eq!(
            f(
                &get,
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n"
            ),
            Ok((ResponseFraming::Chunked, true))
        );
        assert_eq!(
            f(
                &get,
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"
            ),
            Ok((ResponseFraming::Eof, false))
        );
        let mut both =
            head("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n");
        assert_eq!(
            response_framing(&get, &mut both),
            Ok((ResponseFraming::Chunked, false))
        );
        assert!(!both.headers.contains_key("content-length"));
        assert_eq!(
            f(&get, "HTTP/1.1 200 OK\r\n\r\n"),
            Ok((ResponseFraming::Eof, false))
        );
        assert_eq!(
            f(
                &get,
                "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n"
            ),
            Ok((ResponseFraming::Length(1), false))
        );
        assert_eq!(
            f(&get, "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n"),
            Ok((ResponseFraming::Length(1), false))
        );
        assert_eq!(
            f(
                &get,
                "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 1\r\n\r\n"
            ),
            Ok((ResponseFraming::Length(1), true))
        );
        for raw in [
            "HTTP/1.1 204 No Content\r\n\r\n",
            "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
            "HTTP/1.1 103 Early Hints\r\n\r\n",
        ] {
            assert_eq!(f(&get, raw), Ok((ResponseFraming::Empty, true)), "{raw}");
        }
        assert_eq!(
            f(
                &Method::HEAD,
                "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"
            ),
            Ok((ResponseFraming::Empty, true))
        );
    }

    #[test]
    fn request_heads_carry_their_own_framing() {
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("example.com"));
        h.insert("content-length", HeaderValue::from_static("99"));
        h.insert("expect", HeaderValue::from_static("100-Continue"));
        h.insert("x-a", HeaderValue::from_static("b"));
        let uri: Uri = "/p?q=1".parse().unwrap();
        let enc = |m: Method, h: &HeaderMap, f| {
            let mut out = Vec::new();
            encode_request_head(&mut out, &m, &uri, h, f);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(
            enc(Method::POST, &h, RequestFraming::Length(7)),
            "POST /p?q=1 HTTP/1.1\r\nhost: example.com\r\nx-a: b\r\ncontent-length: 7\r\n\r\n"
        );
        assert_eq!(
            enc(Method::PUT, &h, RequestFraming::Chunked),
            "PUT /p?q=1 HTTP/1.1\r\nhost: example.com\r\nx-a: b\r\ntransfer-encoding: chunked\r\n\r\n"
        );
        assert_eq!(
            enc(Method::GET, &h, RequestFraming::Empty),
            "GET /p?q=1 HTTP/1.1\r\nhost: example.com\r\nx-a: b\r\ncontent-length: 0\r\n\r\n"
        );
        h.remove("content-length");
        assert_eq!(
            enc(Method::GET, &h, RequestFraming::Empty),
            "GET /p?q=1 HTTP/1.1\r\nhost: example.com\r\nx-a: b\r\n\r\n"
        );
        let mut out = Vec::new();
        encode_request_head(
            &mut out,
            &Method::GET,
            &Uri::from_static("*"),
            &HeaderMap::new(),
            RequestFraming::Empty,
        );
        assert_eq!(out, b"GET * HTTP/1.1\r\n\r\n");
    }
}
