//! Strict line endings in HTTP/1 request heads. hyper (through httparse) accepts a bare LF where
//! a request head must end a line with CRLF (RFC 9112 §2.2 lets a recipient do so). A server
//! that reads a head differently from a proxy in front of it invites request smuggling, so the
//! listener refuses such heads with 400, before hyper sees them.
//!
//! [`HeadScan`] follows a connection's bytes as hyper receives them: it looks at every byte of
//! each request head, learns the request's framing from the head (`Content-Length`, chunked
//! `Transfer-Encoding`), skips the body (chunk data in bulk), and then looks at the next head.
//! Connections that stop speaking HTTP/1 requests (HTTP/2 after its preface, `CONNECT`, upgrades)
//! and heads or framing hyper refuses anyway are not followed further.

/// Heads longer than this are refused by hyper anyway (its read buffer is about 400 KiB); the
/// scan stops following such a connection rather than keep the bytes.
const MAX_HEAD: usize = 512 * 1024;

/// Why a connection's bytes were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BareLf;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// In a request head (or before one: empty lines are skipped).
    Head,
    /// In a body of known length: this many bytes left.
    Body(u64),
    /// In a chunked body.
    Chunk(Chunk),
    /// Not followed any more.
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// The size line: the size so far, and whether an extension (or whitespace) began.
    Size { size: u64, digits: bool, ext: bool },
    /// Chunk data: this many bytes left.
    Data(u64),
    /// The line end after chunk data.
    DataEnd,
    /// Trailer fields after the last chunk: whether the current line is empty so far.
    Trailers { empty: bool },
}

/// Follows one connection's request stream (see the module documentation).
#[derive(Debug)]
pub(crate) struct HeadScan {
    state: State,
    /// The current head's bytes, for its framing once complete.
    head: Vec<u8>,
}

impl Default for HeadScan {
    fn default() -> Self {
        Self {
            state: State::Head,
            head: Vec::new(),
        }
    }
}

impl HeadScan {
    /// Takes the next bytes of the connection; `Err` when a request head has a bare LF.
    pub(crate) fn feed(&mut self, mut bytes: &[u8]) -> Result<(), BareLf> {
        while !bytes.is_empty() {
            match self.state {
                State::Off => return Ok(()),
                State::Head => {
                    // Up to and including the next LF, in one step.
                    let lf = memchr::memchr(b'\n', bytes);
                    let (line, rest) = bytes.split_at(lf.map_or(bytes.len(), |i| i + 1));
                    bytes = rest;
                    if let Some(i) = lf {
                        let before = match i {
                            0 => self.head.last().copied(),
                            _ => Some(line[i - 1]),
                        };
                        if before != Some(b'\r') {
                            return Err(BareLf);
                        }
                    }
                    self.head.extend_from_slice(line);
                    if lf.is_some() {
                        if self.head == b"\r\n" {
                            // An empty line before the request line (RFC 9112 §2.2).
                            self.head.clear();
                            continue;
                        }
                        if self.head.ends_with(b"\r\n\r\n") {
                            self.state = framing(&self.head);
                            self.head.clear();
                            if self.head.capacity() > 16 * 1024 {
                                self.head.shrink_to(16 * 1024);
                            }
                            continue;
                        }
                    }
                    if self.head.len() > MAX_HEAD {
                        self.state = State::Off;
                        self.head = Vec::new();
                    }
                }
                State::Body(left) => {
                    let n = (bytes.len() as u64).min(left);
                    bytes = &bytes[n as usize..];
                    self.state = if left == n {
                        State::Head
                    } else {
                        State::Body(left - n)
                    };
                }
                State::Chunk(c) => {
                    let (next, used) = chunk(c, bytes);
                    bytes = &bytes[used..];
                    self.state = next;
                }
            }
        }
        Ok(())
    }
}

/// The state after a complete head: its body's framing, or `Off` for what is not followed.
fn framing(head: &[u8]) -> State {
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        // HTTP/2's preface, malformed heads (hyper answers them), too many headers.
        _ => return State::Off,
    }
    if req.method == Some("CONNECT") {
        return State::Off;
    }
    let mut length: Option<u64> = None;
    let mut chunked = false;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("upgrade") {
            return State::Off; // hyper may hand the connection over
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = true;
        } else if h.name.eq_ignore_ascii_case("content-length") {
            // hyper accepts a list of equal values (`5, 5`), as RFC 9110 §8.6 allows.
            let Ok(text) = std::str::from_utf8(h.value) else {
                return State::Off; // refused by hyper
            };
            for v in text.split(',') {
                let v = v.trim();
                let Some(n) = v
                    .bytes()
                    .all(|b| b.is_ascii_digit())
                    .then(|| v.parse::<u64>().ok())
                    .flatten()
                else {
                    return State::Off; // refused by hyper
                };
                if length.is_some_and(|l| l != n) {
                    return State::Off;
                }
                length = Some(n);
            }
        }
    }
    if chunked {
        // hyper refuses a request whose last coding is not chunked.
        return State::Chunk(Chunk::Size {
            size: 0,
            digits: false,
            ext: false,
        });
    }
    match length {
        Some(n) if n > 0 => State::Body(n),
        _ => State::Head,
    }
}

/// Advances a chunked body over `bytes`: the next state and how many bytes it used.
fn chunk(c: Chunk, bytes: &[u8]) -> (State, usize) {
    match c {
        Chunk::Data(left) => {
            let n = (bytes.len() as u64).min(left);
            let next = if n == left {
                Chunk::DataEnd
            } else {
                Chunk::Data(left - n)
            };
            (State::Chunk(next), n as usize)
        }
        Chunk::DataEnd => {
            let next = if bytes[0] == b'\n' {
                Chunk::Size {
                    size: 0,
                    digits: false,
                    ext: false,
                }
            } else {
                Chunk::DataEnd
            };
            (State::Chunk(next), 1)
        }
        Chunk::Size { size, digits, ext } => {
            let b = bytes[0];
            let next = match b {
                b'\n' if !digits => State::Off, // refused by hyper
                b'\n' if size == 0 => State::Chunk(Chunk::Trailers { empty: true }),
                b'\n' => State::Chunk(Chunk::Data(size)),
                _ if ext => State::Chunk(c),
                b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                    let digit = (b as char).to_digit(16).unwrap_or(0) as u64;
                    match size.checked_mul(16).and_then(|s| s.checked_add(digit)) {
                        Some(size) => State::Chunk(Chunk::Size {
                            size,
                            digits: true,
                            ext,
                        }),
                        None => State::Off,
                    }
                }
                b';' | b' ' | b'\t' | b'\r' => State::Chunk(Chunk::Size {
                    size,
                    digits,
                    ext: true,
                }),
                _ => State::Off,
            };
            (next, 1)
        }
        Chunk::Trailers { empty } => {
            let next = match bytes[0] {
                b'\n' if empty => State::Head,
                b'\n' => State::Chunk(Chunk::Trailers { empty: true }),
                b'\r' => State::Chunk(Chunk::Trailers { empty }),
                _ => State::Chunk(Chunk::Trailers { empty: false }),
            };
            (next, 1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `stream` in pieces of `piece` bytes.
    fn scan(stream: &[u8], piece: usize) -> Result<(), BareLf> {
        let mut s = HeadScan::default();
        for part in stream.chunks(piece.max(1)) {
            s.feed(part)?;
        }
        Ok(())
    }

    fn every_split(stream: &[u8]) -> Vec<Result<(), BareLf>> {
        (1..=stream.len()).map(|p| scan(stream, p)).collect()
    }

    #[test]
    fn crlf_heads_pass_with_bodies_of_every_framing_whatever_the_reads() {
        let stream = b"\r\nPOST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\na\nb\nc\
            POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\n\n\n\n\r\n0\r\nT: 1\r\n\r\n\
            GET /c HTTP/1.1\r\nHost: x\r\n\r\n";
        assert!(every_split(stream).iter().all(Result::is_ok));
    }

    #[test]
    fn a_bare_lf_is_found_in_any_head_of_the_stream() {
        for bad in [
            &b"GET / HTTP/1.1\nHost: x\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: x\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\n\n",
            b"\nGET / HTTP/1.1\r\n\r\n",
            // After a body with line feeds in it, and after a chunked body.
            b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\n\n\nGET / HTTP/1.1\nHost: x\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n\n\n\r\n0\r\n\r\nGET /\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 2, 2\r\n\r\n\n\nGET / HTTP/1.1\nHost: x\r\n\r\n",
        ] {
            assert!(
                every_split(bad).iter().all(|r| *r == Err(BareLf)),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn other_protocols_are_not_followed() {
        let mut h2 = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        h2.extend_from_slice(b"\x00\x00\n\x04\n\n\n");
        assert_eq!(scan(&h2, 7), Ok(()));
        assert_eq!(
            scan(
                b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n\n\n",
                3
            ),
            Ok(())
        );
    }
}
