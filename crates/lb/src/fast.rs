//! HTTP/1.x from clients without hyper: each connection is served by its own task with one
//! read buffer, nginx-style. A request head is parsed in place ([`httparse`]), routed, and the
//! target's request head is written straight from its bytes; the target's response head is
//! rewritten the same way and bodies are passed on as they are framed (chunked bodies too,
//! with [`ChunkedDecoder::scan`] following them to their end). No `HeaderMap`, no per-request
//! allocation on the common path. HTTP/2 (prior knowledge) stays with hyper
//! ([`crate::proxy`]); [`is_h2`] tells them apart without consuming a byte.

use std::cell::Cell;
use std::io;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use gantry_domain::lb::Action;
use http::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::balancer::{Group, TargetRt, now_ms};
use crate::h1::{self, Chunk, ChunkedDecoder, ResponseFraming};
use crate::pool::Connection;
use crate::routing::{Headers, RequestView, redirect_location};
use crate::state::{
    DEFAULT_IDLE_TIMEOUT, Inner, MAX_ATTEMPTS, NO_RESPONSE_HEADERS, ResponseHeaders, choose_group,
    cookie, error_text, trace_id_bytes,
};
use crate::upstream;

/// Most headers accepted in a request head (more: 431).
pub const MAX_REQUEST_HEADERS: usize = 100;
/// Largest request head accepted (larger: 431).
pub const MAX_REQUEST_HEAD: usize = 64 * 1024;
/// A request head must arrive in full within this once it has started.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// After a response that leaves request bytes unread, the connection is drained this long
/// before it closes (closing with unread bytes would reset it and could lose the response).
const LINGER: Duration = Duration::from_secs(2);
/// Client reads: at least a quarter of this free before each, then this much more.
const READ_SIZE: usize = 16 * 1024;
/// Output buffers larger than this are not kept between requests.
const MAX_KEPT_OUT: usize = 64 * 1024;
/// Body bytes at hand up to this are copied after a head to go out in one write.
const MAX_COPIED_BODY: usize = 16 * 1024;

const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether a new connection starts with the HTTP/2 preface, looking without consuming;
/// `None`: closed (or silent for [`HEAD_TIMEOUT`]) before that is known.
pub(crate) async fn is_h2(stream: &TcpStream) -> Option<bool> {
    let deadline = tokio::time::Instant::now() + HEAD_TIMEOUT;
    let mut b = [0u8; H2_PREFACE.len()];
    loop {
        let n = tokio::time::timeout_at(deadline, stream.peek(&mut b))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        if b[..n] != H2_PREFACE[..n] {
            return Some(false);
        }
        if n == H2_PREFACE.len() {
            return Some(true);
        }
        // Part of the preface: the socket stays readable, so wait a little for the rest.
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// What a client connection's requests share.
#[derive(Debug)]
pub(crate) struct Client {
    pub peer: SocketAddr,
    pub port: u16,
    /// The peer address as text, for `X-Forwarded-For`.
    pub peer_text: String,
    /// The listener port as text, for `X-Forwarded-Port`.
    pub port_text: String,
}

impl Client {
    pub fn new(peer: SocketAddr, port: u16) -> Self {
        Self {
            peer,
            port,
            peer_text: peer.ip().to_string(),
            port_text: port.to_string(),
        }
    }
}

/// How a request body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyFraming {
    None,
    Length(u64),
    Chunked,
}

/// What a request head says about the exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Facts {
    /// Length of the head in the buffer.
    pub len: usize,
    pub body: BodyFraming,
    pub http10: bool,
    /// Whether the client wants the connection kept open after this exchange.
    pub keep_alive: bool,
    pub head_method: bool,
    /// `Upgrade` with `Connection: upgrade`.
    pub upgrade: bool,
    /// `Expect: 100-continue`.
    pub expect_continue: bool,
    /// `Connection` lists header names besides close, keep-alive and upgrade.
    pub connection_lists: bool,
    pub has_host: bool,
    pub has_trace_id: bool,
}

/// Whether a header name (any case) is hop-by-hop whatever `Connection` says.
fn is_hop_by_hop(name: &str) -> bool {
    const NAMES: [&str; 9] = [
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ];
    NAMES
        .iter()
        .any(|n| n.len() == name.len() && n.eq_ignore_ascii_case(name))
}

fn pairs<'a>(
    headers: &'a [httparse::Header<'a>],
) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
    headers.iter().map(|h| (h.name.as_bytes(), h.value))
}

/// Whether `Connection` lists `name`.
fn listed(headers: &[httparse::Header<'_>], name: &str) -> bool {
    h1::has_token(pairs(headers), "connection", name)
}

/// Why a request is refused before it is routed (the connection closes after the answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refusal(pub StatusCode);

/// The facts of a parsed request head (`len`: its length).
pub(crate) fn facts(req: &httparse::Request<'_, '_>, len: usize) -> Result<Facts, Refusal> {
    let bad = Refusal(StatusCode::BAD_REQUEST);
    let http10 = req.version == Some(0);
    let headers: &[httparse::Header<'_>] = req.headers;
    let mut f = Facts {
        len,
        body: BodyFraming::None,
        http10,
        keep_alive: false,
        head_method: req.method == Some("HEAD"),
        upgrade: false,
        expect_continue: false,
        connection_lists: false,
        has_host: false,
        has_trace_id: false,
    };
    let (mut has_connection, mut has_upgrade, mut chunked, mut te) = (false, false, false, false);
    let mut hosts = 0;
    for h in headers {
        let n = h.name;
        if n.eq_ignore_ascii_case("host") {
            hosts += 1;
        } else if n.eq_ignore_ascii_case("connection") {
            has_connection = true;
        } else if n.eq_ignore_ascii_case("upgrade") {
            has_upgrade = true;
        } else if n.eq_ignore_ascii_case("transfer-encoding") {
            te = true;
            // The last coding must be chunked.
            chunked = h1::text(h.value)
                .and_then(|v| v.split(',').map(str::trim).rfind(|t| !t.is_empty()))
                .is_some_and(|t| t.eq_ignore_ascii_case("chunked"));
        } else if n.eq_ignore_ascii_case("expect") {
            f.expect_continue |= h.value.eq_ignore_ascii_case(b"100-continue");
        } else if n.eq_ignore_ascii_case("x-amzn-trace-id") {
            f.has_trace_id = true;
        }
    }
    if hosts > 1 {
        return Err(bad);
    }
    f.has_host = hosts == 1;
    f.keep_alive = if http10 {
        has_connection && listed(headers, "keep-alive")
    } else {
        !(has_connection && listed(headers, "close"))
    };
    if has_connection {
        f.upgrade = has_upgrade && listed(headers, "upgrade");
        f.connection_lists = headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("connection"))
            .filter_map(|h| h1::text(h.value))
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .any(|t| {
                !t.is_empty()
                    && !["close", "keep-alive", "upgrade"]
                        .iter()
                        .any(|k| k.eq_ignore_ascii_case(t))
            });
    }
    if te {
        if !chunked {
            return Err(bad);
        }
        f.body = BodyFraming::Chunked;
        // A length beside it: delivered by the coding, and the connection is not trusted
        // further.
        if headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case("content-length"))
        {
            f.keep_alive = false;
        }
    } else {
        let lengths = headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("content-length"))
            .map(|h| h.value);
        match h1::content_length(lengths) {
            Ok(Some(0)) | Ok(None) => {}
            Ok(Some(n)) => f.body = BodyFraming::Length(n),
            Err(_) => return Err(bad),
        }
    }
    Ok(f)
}

/// A request target split for routing and for the target's request line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Target<'a> {
    /// The authority of an absolute-form target.
    pub authority: Option<&'a str>,
    pub path: &'a str,
    pub query: &'a str,
    /// Path and query as they go to the target (origin form).
    pub origin: &'a str,
}

/// Splits a request target (origin form, absolute form or `*`).
pub(crate) fn split_target(t: &str) -> Option<Target<'_>> {
    if !t.is_ascii() {
        return None;
    }
    let (authority, origin) = if t.starts_with('/') || t == "*" {
        (None, t)
    } else {
        let scheme_end = t.find("://")?;
        let scheme = &t[..scheme_end];
        if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
            return None;
        }
        let rest = &t[scheme_end + 3..];
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        // No authority, or one with userinfo (RFC 9110 §4.2.4: treated as an error).
        if end == 0 || rest[..end].contains('@') {
            return None;
        }
        (Some(&rest[..end]), &rest[end..])
    };
    let origin = origin.split('#').next().unwrap_or_default();
    let (path, query) = origin.split_once('?').unwrap_or((origin, ""));
    Some(Target {
        authority,
        path: if path.is_empty() { "/" } else { path },
        query,
        origin,
    })
}

/// Whether a request head ends a line with a bare LF. httparse accepts them; RFC 9112 §2.2
/// lets a recipient do so, but a proxy that reads a head differently from the server behind it
/// invites request smuggling, so heads must end their lines with CRLF.
pub(crate) fn bare_lf(head: &[u8]) -> bool {
    let mut prev = 0u8;
    for &b in head {
        if b == b'\n' && prev != b'\r' {
            return true;
        }
        prev = b;
    }
    false
}

/// The host of a `Host` value, without the port.
fn host_without_port(raw: &str) -> &str {
    if raw.starts_with('[') {
        return match raw.find(']') {
            Some(end) => &raw[..=end],
            None => raw,
        };
    }
    raw.split(':').next().unwrap_or("")
}

fn put_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn put_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Appends the head of the request for a target: origin-form request line, the client's
/// headers as they came except hop-by-hop ones (an upgrade keeps `Upgrade`), framing and
/// forwarding headers, `X-Amzn-Trace-Id` when absent. An absolute-form target's authority
/// replaces the client's `Host` (RFC 9112 §3.2.2); `host` fills a missing one.
pub(crate) fn write_target_head(
    out: &mut Vec<u8>,
    req: &httparse::Request<'_, '_>,
    f: &Facts,
    target: &Target<'_>,
    client: &Client,
    host: &str,
) {
    let headers: &[httparse::Header<'_>] = req.headers;
    let method = req.method.unwrap_or("GET");
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    if target.origin.is_empty() {
        out.push(b'/');
    } else {
        if target.origin.starts_with('?') {
            out.push(b'/');
        }
        out.extend_from_slice(target.origin.as_bytes());
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    if let Some(authority) = target.authority {
        put_header(out, b"host", authority.as_bytes());
    } else if !f.has_host {
        put_header(out, b"host", host.as_bytes());
    }
    let mut xff: Option<&[u8]> = None;
    let mut had_length = false;
    let mut upgrade: Option<&[u8]> = None;
    for h in headers {
        let n = h.name;
        if target.authority.is_some() && n.eq_ignore_ascii_case("host") {
            continue;
        }
        if is_hop_by_hop(n) {
            if f.upgrade && upgrade.is_none() && n.eq_ignore_ascii_case("upgrade") {
                upgrade = Some(h.value);
            }
            continue;
        }
        if n.eq_ignore_ascii_case("content-length") {
            had_length = true;
            continue;
        }
        if n.eq_ignore_ascii_case("x-forwarded-for") {
            xff = xff.or(Some(h.value));
            continue;
        }
        if n.eq_ignore_ascii_case("x-forwarded-proto")
            || n.eq_ignore_ascii_case("x-forwarded-port")
            || (n.eq_ignore_ascii_case("expect") && h.value.eq_ignore_ascii_case(b"100-continue"))
            || (f.connection_lists && listed(headers, n))
        {
            continue;
        }
        put_header(out, n.as_bytes(), h.value);
    }
    if let Some(u) = upgrade {
        put_header(out, b"upgrade", u);
        out.extend_from_slice(b"connection: upgrade\r\n");
    }
    out.extend_from_slice(b"x-forwarded-for: ");
    if let Some(prev) = xff {
        out.extend_from_slice(prev);
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(client.peer_text.as_bytes());
    out.extend_from_slice(b"\r\nx-forwarded-proto: http\r\nx-forwarded-port: ");
    out.extend_from_slice(client.port_text.as_bytes());
    out.extend_from_slice(b"\r\n");
    if !f.has_trace_id {
        put_header(out, b"x-amzn-trace-id", &trace_id_bytes());
    }
    match f.body {
        BodyFraming::None => {
            if had_length || matches!(method, "POST" | "PUT" | "PATCH") {
                out.extend_from_slice(b"content-length: 0\r\n");
            }
        }
        BodyFraming::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            put_decimal(out, n);
            out.extend_from_slice(b"\r\n");
        }
        BodyFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.extend_from_slice(b"\r\n");
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) for epoch seconds.
pub(crate) fn http_date(secs: u64) -> [u8; 29] {
    const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut out = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    out[..3].copy_from_slice(DAYS[(days % 7) as usize]);
    let two = |out: &mut [u8], v: u64| {
        out[0] = b'0' + (v / 10 % 10) as u8;
        out[1] = b'0' + (v % 10) as u8;
    };
    two(&mut out[5..7], day as u64);
    out[8..11].copy_from_slice(MONTHS[(month - 1) as usize]);
    let y = year.clamp(0, 9999) as u64;
    two(&mut out[12..14], y / 100);
    two(&mut out[14..16], y % 100);
    two(&mut out[17..19], rem / 3600);
    two(&mut out[20..22], rem / 60 % 60);
    two(&mut out[23..25], rem % 60);
    out
}

thread_local! {
    static DATE: Cell<(u64, [u8; 29])> = const { Cell::new((u64::MAX, [0; 29])) };
}

/// Appends a `date` header for now (formatted once a second per thread).
fn put_date(out: &mut Vec<u8>) {
    let secs = now_ms() / 1000;
    let date = DATE.with(|d| {
        let (at, text) = d.get();
        if at == secs {
            return text;
        }
        let text = http_date(secs);
        d.set((secs, text));
        text
    });
    put_header(out, b"date", &date);
}

fn put_status_line(out: &mut Vec<u8>, status: u16, reason: &str) {
    out.extend_from_slice(b"HTTP/1.1 ");
    put_decimal(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn canonical_reason(status: u16) -> &'static str {
    StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("")
}

/// Whether a status never has a body.
fn bodiless(status: u16) -> bool {
    (100..200).contains(&status) || status == 204 || status == 304
}

/// Appends the `Connection` header a response needs.
fn put_connection(out: &mut Vec<u8>, http10: bool, keep_alive: bool) {
    if !keep_alive {
        out.extend_from_slice(b"connection: close\r\n");
    } else if http10 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
}

/// A response made here: `headers`, `content-length`, `date`, `Connection`, then the body
/// (none for HEAD).
pub(crate) struct Answer<'a> {
    pub status: u16,
    pub headers: &'a [(&'a str, &'a [u8])],
    pub body: &'a [u8],
}

fn put_answer(
    out: &mut Vec<u8>,
    a: &Answer<'_>,
    f: Option<&Facts>,
    keep_alive: bool,
    extra: &ResponseHeaders,
) {
    put_status_line(out, a.status, canonical_reason(a.status));
    for (n, v) in a.headers {
        if !extra.replaces(n) {
            put_header(out, n.as_bytes(), v);
        }
    }
    for (n, v) in &extra.set {
        put_header(out, n.as_str().as_bytes(), v.as_bytes());
    }
    if !bodiless(a.status) {
        out.extend_from_slice(b"content-length: ");
        put_decimal(out, a.body.len() as u64);
        out.extend_from_slice(b"\r\n");
    }
    put_date(out);
    put_connection(out, f.is_some_and(|f| f.http10), keep_alive);
    out.extend_from_slice(b"\r\n");
    if !bodiless(a.status) && !f.is_some_and(|f| f.head_method) {
        out.extend_from_slice(a.body);
    }
}

/// Appends an error page (with `set-cookie` values, if any).
fn put_error(
    out: &mut Vec<u8>,
    status: StatusCode,
    cookies: &[&[u8]],
    f: Option<&Facts>,
    keep_alive: bool,
    extra: &ResponseHeaders,
) {
    let text = error_text(status);
    let mut headers: [(&str, &[u8]); 4] = [
        ("content-type", b"text/html"),
        ("server", b"awselb/2.0"),
        ("", b""),
        ("", b""),
    ];
    let mut n = 2;
    if extra.hide_server {
        n = 1;
    }
    for c in cookies.iter().take(2) {
        headers[n] = ("set-cookie", c);
        n += 1;
    }
    put_answer(
        out,
        &Answer {
            status: status.as_u16(),
            headers: &headers[..n],
            body: text.as_bytes(),
        },
        f,
        keep_alive,
        extra,
    );
}

/// How much of `buf` a request body of `framing` takes if it is all there.
fn body_in(buf: &[u8], framing: BodyFraming) -> Option<usize> {
    match framing {
        BodyFraming::None => Some(0),
        BodyFraming::Length(n) => usize::try_from(n).ok().filter(|&n| n <= buf.len()),
        BodyFraming::Chunked => {
            let mut dec = ChunkedDecoder::default();
            let n = dec.scan(buf).ok()?;
            dec.is_done().then_some(n)
        }
    }
}

/// Where a routed request goes.
#[derive(Debug)]
pub(crate) struct Forward {
    pub group: Arc<Group>,
    pub target: Arc<TargetRt>,
    /// `AWSALB` cookie lifetime (target stickiness).
    pub sticky_secs: Option<u64>,
    /// The load balancer's idle timeout, for the request body.
    pub idle_timeout: Duration,
    /// The load balancer's counts (answers made here).
    pub lb: Arc<crate::usage::LbUsage>,
}

/// What to do with the request at the start of the buffer.
#[derive(Debug)]
pub(crate) enum Step {
    /// The head is not complete yet.
    Partial,
    /// An answer is in the output buffer; the connection closes after it.
    Refused,
    /// An answer made here is in the output buffer: the body is skipped if it is all at hand,
    /// else the connection closes (`keep_alive` says which).
    Answered { facts: Facts, keep_alive: bool },
    /// The target request head is in the output buffer.
    Forward {
        facts: Facts,
        forward: Forward,
        /// `Set-Cookie` values for the response (`AWSALBTG` so far).
        cookies: Cookies,
    },
}

/// What the load balancer adds to a target's response: `Set-Cookie` values and the listener's
/// response headers.
#[derive(Debug, Default)]
pub(crate) struct Cookies {
    pub target: Option<String>,
    pub group: Option<String>,
    pub headers: Option<Arc<ResponseHeaders>>,
}

impl Cookies {
    fn extra(&self) -> &ResponseHeaders {
        self.headers.as_deref().unwrap_or(&NO_RESPONSE_HEADERS)
    }

    fn list(&self) -> ([&[u8]; 2], usize) {
        let mut out: [&[u8]; 2] = [b"", b""];
        let mut n = 0;
        for c in [&self.target, &self.group].into_iter().flatten() {
            out[n] = c.as_bytes();
            n += 1;
        }
        (out, n)
    }
}

/// Parses, routes and prepares the request at the start of `buf`, writing either an answer
/// or the target's request head to `out`.
pub(crate) fn plan(inner: &Inner, client: &Client, buf: &[u8], out: &mut Vec<u8>) -> Step {
    let mut storage =
        [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_REQUEST_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let routes = inner.routes.load();
    let listener = routes.by_port.get(&client.port);
    let extra: &ResponseHeaders = listener.map_or(&NO_RESPONSE_HEADERS, |p| &p.response_headers);
    let refuse = |out: &mut Vec<u8>, status: StatusCode| {
        if let Some(p) = listener {
            p.lb.answered(status.as_u16());
        }
        put_error(out, status, &[], None, false, extra);
        Step::Refused
    };
    let len = match req.parse_with_uninit_headers(buf, &mut storage) {
        Ok(httparse::Status::Complete(len)) if len <= MAX_REQUEST_HEAD => len,
        Ok(httparse::Status::Complete(_)) => {
            return refuse(out, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        }
        Ok(httparse::Status::Partial) if buf.len() <= MAX_REQUEST_HEAD => return Step::Partial,
        Ok(httparse::Status::Partial) | Err(httparse::Error::TooManyHeaders) => {
            return refuse(out, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        }
        Err(_) => return refuse(out, StatusCode::BAD_REQUEST),
    };
    if bare_lf(&buf[..len]) {
        return refuse(out, StatusCode::BAD_REQUEST);
    }
    let f = match facts(&req, len) {
        Ok(f) => f,
        Err(Refusal(status)) => return refuse(out, status),
    };
    let method = req.method.unwrap_or("GET");
    if method == "CONNECT" {
        return refuse(out, StatusCode::METHOD_NOT_ALLOWED);
    }
    let Some(target) = req.path.and_then(split_target) else {
        return refuse(out, StatusCode::BAD_REQUEST);
    };
    let headers = Headers::Raw(req.headers);
    let host_header = headers.get_all("host").next();
    let view = RequestView {
        method,
        path: target.path,
        query: target.query,
        // RFC 9112 §3.2.2: an absolute-form target's authority replaces `Host`.
        host: host_without_port(target.authority.or(host_header).unwrap_or_default()),
        headers,
        source: client.peer.ip(),
    };
    let answered = |out: &mut Vec<u8>, answer: &Answer<'_>| {
        let keep_alive = f.keep_alive && body_in(&buf[len..], f.body).is_some();
        put_answer(out, answer, Some(&f), keep_alive, extra);
        Step::Answered {
            facts: f,
            keep_alive,
        }
    };
    let unavailable = |out: &mut Vec<u8>, cookies: &[&[u8]]| {
        let keep_alive = f.keep_alive && body_in(&buf[len..], f.body).is_some();
        put_error(
            out,
            StatusCode::SERVICE_UNAVAILABLE,
            cookies,
            Some(&f),
            keep_alive,
            extra,
        );
        Step::Answered {
            facts: f,
            keep_alive,
        }
    };
    let Some(plan) = listener else {
        return unavailable(out, &[]);
    };
    let Some(action) = plan.table.select(&view) else {
        plan.lb.answered(503);
        return unavailable(out, &[]);
    };
    match action {
        Action::FixedResponse {
            status_code,
            content_type,
            message_body,
            ..
        } => {
            let status = StatusCode::from_u16(*status_code).map_or(200, |s| s.as_u16());
            let ct = content_type.as_deref().unwrap_or("text/plain");
            let body = message_body.as_deref().unwrap_or_default();
            let with_type = [("content-type", ct.as_bytes())];
            let headers: &[(&str, &[u8])] = if http::HeaderValue::from_str(ct).is_ok() {
                &with_type
            } else {
                &[]
            };
            plan.lb.fixed_response(status);
            answered(
                out,
                &Answer {
                    status,
                    headers,
                    body: body.as_bytes(),
                },
            )
        }
        Action::Redirect { redirect, .. } => {
            let location = redirect_location(redirect, &view, client.port);
            let status = if redirect.status_code == "HTTP_302" {
                302
            } else {
                301
            };
            let with_location = [("location", location.as_bytes())];
            let headers: &[(&str, &[u8])] = if http::HeaderValue::from_str(&location).is_ok() {
                &with_location
            } else {
                &[]
            };
            plan.lb.redirect(status);
            answered(
                out,
                &Answer {
                    status,
                    headers,
                    body: b"",
                },
            )
        }
        Action::Forward {
            target_groups,
            stickiness,
            ..
        } => {
            let sticky_group = if stickiness.enabled {
                cookie(headers, "AWSALBTG")
            } else {
                None
            };
            let Some(group) = choose_group(&routes, target_groups, sticky_group) else {
                plan.lb.answered(503);
                return unavailable(out, &[]);
            };
            let group_cookie = stickiness
                .enabled
                .then(|| stickiness.duration_seconds.unwrap_or(3600));
            let cookies = Cookies {
                headers: (!plan.response_headers.is_empty()).then(|| plan.response_headers.clone()),
                target: None,
                group: group_cookie
                    .map(|max_age| format!("AWSALBTG={}; Max-Age={max_age}; Path=/", group.id)),
            };
            let sticky_secs = group.sticky_seconds();
            let sticky_key = sticky_secs.and_then(|_| {
                cookie(headers, "AWSALB")
                    .and_then(|v| v.split_once('|'))
                    .filter(|(gid, _)| *gid == group.id)
                    .map(|(_, key)| key)
            });
            let Some(first) = group.pick(sticky_key, None) else {
                group.metrics.request();
                plan.lb.answered(503);
                let (list, n) = cookies.list();
                return unavailable(out, &list[..n]);
            };
            let addr = first.addr.load();
            write_target_head(out, &req, &f, &target, client, &addr);
            Step::Forward {
                facts: f,
                forward: Forward {
                    group,
                    target: first,
                    sticky_secs,
                    idle_timeout: plan.idle_timeout,
                    lb: plan.lb.clone(),
                },
                cookies,
            }
        }
    }
}

/// A target's response head, as it goes to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reply {
    /// Length of the head in the target's buffer.
    pub len: usize,
    pub status: u16,
    pub framing: ResponseFraming,
    /// Whether the target allows another request on the connection.
    pub target_keep_alive: bool,
    /// The body goes to the client decoded (chunked to an HTTP/1.0 client), delimited by the
    /// end of the connection.
    pub decode: bool,
    /// Whether the client connection can stay open after the body.
    pub client_keep_alive: bool,
}

/// Parses the response head at the start of `buf` and appends its rewrite for the client to
/// `out` (hop-by-hop headers removed, `Set-Cookie` values appended, `date` when absent,
/// `Connection` as the client connection needs). An interim (1xx) head is rewritten for
/// HTTP/1.1 clients except 100 (the proxy answers `Expect` itself); a 101 goes through with
/// its headers as they are. `Ok(None)`: incomplete.
pub(crate) fn rewrite_reply(
    buf: &[u8],
    f: &Facts,
    cookies: &Cookies,
    client_keep_alive: bool,
    out: &mut Vec<u8>,
) -> Result<Option<Reply>, h1::ProtocolError> {
    let mut storage = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; h1::MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut resp,
        buf,
        &mut storage,
    ) {
        Ok(httparse::Status::Complete(len)) if len <= h1::MAX_HEAD_BYTES => len,
        Ok(httparse::Status::Partial) if buf.len() <= h1::MAX_HEAD_BYTES => return Ok(None),
        Ok(_) => return Err(h1::ProtocolError("response head too large")),
        Err(httparse::Error::TooManyHeaders) => return Err(h1::ProtocolError("too many headers")),
        Err(_) => return Err(h1::ProtocolError("malformed response head")),
    };
    let status = resp
        .code
        .filter(|c| (100..1000).contains(c))
        .ok_or(h1::ProtocolError("invalid status code"))?;
    let headers: &[httparse::Header<'_>] = resp.headers;
    let reason = match resp.reason {
        Some(r) if !r.is_empty() => r,
        _ => canonical_reason(status),
    };
    let interim = |framing| Reply {
        len,
        status,
        framing,
        target_keep_alive: true,
        decode: false,
        client_keep_alive,
    };
    if status == 101 {
        put_status_line(out, status, reason);
        for h in headers {
            put_header(out, h.name.as_bytes(), h.value);
        }
        if let Some(c) = &cookies.group {
            put_header(out, b"set-cookie", c.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        return Ok(Some(interim(ResponseFraming::Empty)));
    }
    let framing = h1::framing_of(f.head_method, status, resp.version == Some(0), || {
        pairs(headers)
    })?;
    let decode = framing.framing == ResponseFraming::Chunked && f.http10;
    let client_keep_alive = client_keep_alive && !decode && framing.framing != ResponseFraming::Eof;
    let connection_lists = headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("connection"));
    let interim_head = (100..200).contains(&status);
    if interim_head && (f.http10 || status == 100) {
        return Ok(Some(interim(ResponseFraming::Empty)));
    }
    put_status_line(out, status, reason);
    let mut has_date = false;
    for h in headers {
        let n = h.name;
        if is_hop_by_hop(n) {
            // Chunked bodies go on chunked, as they are.
            if n.eq_ignore_ascii_case("transfer-encoding") && !decode {
                put_header(out, n.as_bytes(), h.value);
            }
            continue;
        }
        if (framing.length_overridden && n.eq_ignore_ascii_case("content-length"))
            || (connection_lists && listed(headers, n))
            || cookies.extra().replaces(n)
        {
            continue;
        }
        has_date |= n.eq_ignore_ascii_case("date");
        put_header(out, n.as_bytes(), h.value);
    }
    if interim_head {
        out.extend_from_slice(b"\r\n");
        return Ok(Some(interim(ResponseFraming::Empty)));
    }
    for c in [&cookies.target, &cookies.group].into_iter().flatten() {
        put_header(out, b"set-cookie", c.as_bytes());
    }
    for (n, v) in &cookies.extra().set {
        put_header(out, n.as_str().as_bytes(), v.as_bytes());
    }
    if !has_date {
        put_date(out);
    }
    put_connection(out, f.http10, client_keep_alive);
    out.extend_from_slice(b"\r\n");
    Ok(Some(Reply {
        len,
        status,
        framing: framing.framing,
        target_keep_alive: framing.keep_alive,
        decode,
        client_keep_alive,
    }))
}

/// How long a client connection of listener `port` may stay idle: the load balancer's idle
/// timeout, read anew for every wait so that a configuration change applies to the next one.
fn idle_timeout(inner: &Inner, port: u16) -> Duration {
    inner
        .routes
        .load()
        .by_port
        .get(&port)
        .map_or(DEFAULT_IDLE_TIMEOUT, |p| p.idle_timeout)
}

/// Serves an HTTP/1.x client connection until it closes.
pub(crate) async fn serve(inner: Arc<Inner>, mut stream: TcpStream, peer: SocketAddr, port: u16) {
    let client = Client::new(peer, port);
    let mut buf = BytesMut::with_capacity(READ_SIZE);
    let mut out: Vec<u8> = Vec::with_capacity(4096);
    let mut head: Vec<u8> = Vec::with_capacity(4096);
    loop {
        out.clear();
        if out.capacity() > MAX_KEPT_OUT {
            out = Vec::with_capacity(4096);
        }
        if head.capacity() > MAX_KEPT_OUT {
            head = Vec::with_capacity(4096);
        }
        let step = loop {
            if !buf.is_empty() {
                match plan(&inner, &client, &buf, &mut out) {
                    Step::Partial => {}
                    step => break step,
                }
            }
            let wait = if buf.is_empty() {
                idle_timeout(&inner, port)
            } else {
                HEAD_TIMEOUT
            };
            if buf.capacity() - buf.len() < READ_SIZE / 4 {
                buf.reserve(READ_SIZE);
            }
            match tokio::time::timeout(
                wait,
                tokio::io::AsyncReadExt::read_buf(&mut stream, &mut buf),
            )
            .await
            {
                Ok(Ok(n)) if n > 0 => {}
                _ => return,
            }
        };
        let keep_alive = match step {
            Step::Partial => false,
            Step::Refused => {
                let _ = stream.write_all(&out).await;
                false
            }
            Step::Answered { facts, keep_alive } => {
                buf.advance(facts.len);
                if stream.write_all(&out).await.is_err() {
                    return;
                }
                if keep_alive && let Some(n) = body_in(&buf, facts.body) {
                    buf.advance(n);
                }
                keep_alive
            }
            Step::Forward {
                facts,
                forward,
                cookies,
            } => {
                buf.advance(facts.len);
                exchange(
                    &mut stream,
                    &mut buf,
                    &mut out,
                    &mut head,
                    &facts,
                    forward,
                    cookies,
                )
                .await
            }
        };
        if !keep_alive {
            close(stream).await;
            return;
        }
    }
}

/// Closes a client connection: the sending side first, then whatever the client still sends
/// is read and dropped for a moment, so that the last response is not lost to a reset.
async fn close(mut stream: TcpStream) {
    if stream.shutdown().await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(LINGER, async {
        let mut scratch = [0u8; 4096];
        loop {
            match stream.try_read(&mut scratch) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if stream.readable().await.is_err() {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
    })
    .await;
}

/// The part of a request body still to come from the client.
#[derive(Debug)]
enum Rest {
    Length(u64),
    Chunked(ChunkedDecoder),
}

/// Why an exchange with a target ended early.
#[derive(Debug)]
enum Failure {
    /// Before any response byte: the target most likely closed a pooled connection as it was
    /// reused.
    Stale(io::Error),
    /// Before the response head: the client gets an error page.
    Target(io::Error),
    /// After the response began, or the client went away: the client connection closes.
    Broken,
}

/// Writes `a` then `b` (in one system call when they fit).
async fn write2<W: AsyncWrite + Unpin>(w: &mut W, a: &[u8], b: &[u8]) -> io::Result<()> {
    if b.is_empty() {
        return w.write_all(a).await;
    }
    let mut both = a.chain(b);
    w.write_all_buf(&mut both).await
}

/// Reads the target's response head, relaying interim ones, and leaves the client's version
/// of it in `head`.
async fn read_reply<R, W>(
    tr: &mut R,
    tbuf: &mut BytesMut,
    read_size: &mut usize,
    cw: &mut W,
    f: &Facts,
    cookies: &Cookies,
    head: &mut Vec<u8>,
) -> Result<Reply, Failure>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut received = false;
    loop {
        if !tbuf.is_empty() {
            head.clear();
            match rewrite_reply(tbuf, f, cookies, f.keep_alive, head) {
                Ok(Some(r)) if (100..200).contains(&r.status) && r.status != 101 => {
                    tbuf.advance(r.len);
                    received = true;
                    if !head.is_empty() {
                        cw.write_all(head).await.map_err(|_| Failure::Broken)?;
                    }
                    continue;
                }
                Ok(Some(r)) => {
                    tbuf.advance(r.len);
                    return Ok(r);
                }
                Ok(None) => {}
                Err(e) => return Err(Failure::Target(e.into())),
            }
        }
        let e = match upstream::fill(tr, tbuf, read_size).await {
            Ok(0) => io::Error::new(io::ErrorKind::UnexpectedEof, "target closed the connection"),
            Ok(_) => {
                received = true;
                continue;
            }
            Err(e) => e,
        };
        return Err(if !received && upstream::is_connection_error(&e) {
            Failure::Stale(e)
        } else {
            Failure::Target(e)
        });
    }
}

/// Writes the response head in `head` and relays the body by its framing. `Ok(true)`: the
/// body ended as framed and nothing followed it.
async fn relay<R, W>(
    tr: &mut R,
    tbuf: &mut BytesMut,
    read_size: &mut usize,
    cw: &mut W,
    head: &[u8],
    reply: &Reply,
) -> Result<bool, Failure>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let broken = |_| Failure::Broken;
    let more = async |tr: &mut R, tbuf: &mut BytesMut, read_size: &mut usize| match upstream::fill(
        tr, tbuf, read_size,
    )
    .await
    {
        Ok(0) | Err(_) => Err(Failure::Broken),
        Ok(_) => Ok(()),
    };
    match reply.framing {
        ResponseFraming::Empty => {
            cw.write_all(head).await.map_err(broken)?;
            Ok(tbuf.is_empty())
        }
        ResponseFraming::Length(n) => {
            let take = |left: u64, tbuf: &BytesMut| {
                usize::try_from(left).map_or(tbuf.len(), |l| l.min(tbuf.len()))
            };
            let k = take(n, tbuf);
            write2(cw, head, &tbuf[..k]).await.map_err(broken)?;
            tbuf.advance(k);
            let mut left = n - k as u64;
            while left > 0 {
                more(tr, tbuf, read_size).await?;
                let k = take(left, tbuf);
                cw.write_all(&tbuf[..k]).await.map_err(broken)?;
                tbuf.advance(k);
                left -= k as u64;
            }
            Ok(tbuf.is_empty())
        }
        ResponseFraming::Chunked if !reply.decode => {
            let mut dec = ChunkedDecoder::default();
            let k = dec.scan(tbuf).map_err(|_| Failure::Broken)?;
            write2(cw, head, &tbuf[..k]).await.map_err(broken)?;
            tbuf.advance(k);
            while !dec.is_done() {
                more(tr, tbuf, read_size).await?;
                let k = dec.scan(tbuf).map_err(|_| Failure::Broken)?;
                cw.write_all(&tbuf[..k]).await.map_err(broken)?;
                tbuf.advance(k);
            }
            Ok(tbuf.is_empty())
        }
        ResponseFraming::Chunked => {
            cw.write_all(head).await.map_err(broken)?;
            let mut dec = ChunkedDecoder::default();
            loop {
                match dec.decode(tbuf).map_err(|_| Failure::Broken)? {
                    Chunk::Data(d) => cw.write_all(&d).await.map_err(broken)?,
                    Chunk::Trailers(_) | Chunk::End => return Ok(tbuf.is_empty()),
                    Chunk::NeedMore => more(tr, tbuf, read_size).await?,
                }
            }
        }
        ResponseFraming::Eof => {
            write2(cw, head, tbuf).await.map_err(broken)?;
            tbuf.clear();
            loop {
                match upstream::fill(tr, tbuf, read_size).await {
                    Ok(0) => return Ok(false),
                    Ok(_) => {}
                    Err(_) => return Err(Failure::Broken),
                }
                cw.write_all(tbuf).await.map_err(broken)?;
                tbuf.clear();
            }
        }
    }
}

/// Why relaying a request body stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UploadError {
    /// The client went away or fell silent.
    Client,
    /// The chunked body is malformed.
    Malformed,
    /// The target stopped taking it.
    Target,
}

/// Relays the rest of a request body from the client to the target, leaving whatever
/// follows it in `buf`; the client may pause for up to `idle` between pieces.
async fn upload<R, W>(
    cr: &mut R,
    buf: &mut BytesMut,
    tw: &mut W,
    mut rest: Rest,
    idle: Duration,
) -> Result<(), UploadError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    loop {
        if !buf.is_empty() {
            let (k, done) = match &mut rest {
                Rest::Length(n) => {
                    let k = usize::try_from(*n).map_or(buf.len(), |n| n.min(buf.len()));
                    *n -= k as u64;
                    (k, *n == 0)
                }
                Rest::Chunked(dec) => {
                    let k = dec.scan(buf).map_err(|_| UploadError::Malformed)?;
                    (k, dec.is_done())
                }
            };
            tw.write_all(&buf[..k])
                .await
                .map_err(|_| UploadError::Target)?;
            buf.advance(k);
            if done {
                return Ok(());
            }
        }
        if buf.capacity() - buf.len() < READ_SIZE / 4 {
            buf.reserve(READ_SIZE);
        }
        match tokio::time::timeout(idle, tokio::io::AsyncReadExt::read_buf(cr, buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return Err(UploadError::Client),
        }
    }
}

/// After a 101: the response head and any bytes either side sent early, then bytes both
/// ways until one side closes.
async fn tunnel(client: &mut TcpStream, buf: &mut BytesMut, conn: &mut Connection, head: &[u8]) {
    if write2(client, head, &conn.buf).await.is_err() {
        return;
    }
    conn.buf.clear();
    if !buf.is_empty() {
        if conn.stream.write_all(buf).await.is_err() {
            return;
        }
        buf.clear();
    }
    let _ = tokio::io::copy_bidirectional(client, &mut conn.stream).await;
}

/// The `AWSALB` cookie for a target, when the group is sticky.
fn target_cookie(group: &Group, target: &TargetRt, sticky_secs: Option<u64>) -> Option<String> {
    sticky_secs.map(|secs| format!("AWSALB={}|{}; Max-Age={secs}; Path=/", group.id, target.key))
}

/// Forwards a request whose target head is in `out` and whose body starts in `buf` (the
/// client's response head is built in `head`); returns whether the client connection stays
/// open.
async fn exchange(
    client: &mut TcpStream,
    buf: &mut BytesMut,
    out: &mut Vec<u8>,
    head: &mut Vec<u8>,
    f: &Facts,
    forward: Forward,
    mut cookies: Cookies,
) -> bool {
    // The body: all at hand (sent with the head, and again on a retry), or the start of it.
    let (at_hand, rest) = match f.body {
        BodyFraming::None => (0, None),
        BodyFraming::Length(n) => match usize::try_from(n) {
            Ok(k) if k <= buf.len() => (k, None),
            _ => (buf.len(), Some(Rest::Length(n - buf.len() as u64))),
        },
        BodyFraming::Chunked => {
            let mut dec = ChunkedDecoder::default();
            match dec.scan(buf) {
                Ok(k) if dec.is_done() => (k, None),
                Ok(k) => (k, Some(Rest::Chunked(dec))),
                Err(e) => {
                    tracing::debug!(error = %e, "malformed chunked request body");
                    forward.lb.answered(400);
                    head.clear();
                    put_error(
                        head,
                        StatusCode::BAD_REQUEST,
                        &[],
                        Some(f),
                        false,
                        cookies.extra(),
                    );
                    let _ = client.write_all(head).await;
                    return false;
                }
            }
        }
    };
    if at_hand <= MAX_COPIED_BODY || rest.is_none() {
        out.extend_from_slice(&buf[..at_hand]);
        buf.advance(at_hand);
    }
    // Otherwise the body at hand goes with the rest.
    let rest = match rest {
        Some(Rest::Length(n)) if at_hand > MAX_COPIED_BODY => {
            Some(Rest::Length(n + at_hand as u64))
        }
        Some(Rest::Chunked(_)) if at_hand > MAX_COPIED_BODY => {
            Some(Rest::Chunked(ChunkedDecoder::default()))
        }
        rest => rest,
    };
    // An answer made here: (status, whether the client connection can stay open).
    let gm = forward.group.metrics.clone();
    let lb = forward.lb.clone();
    gm.request();
    let started = std::time::Instant::now();
    let fail = async |client: &mut TcpStream,
                      head: &mut Vec<u8>,
                      cookies: &Cookies,
                      status: StatusCode,
                      keep: bool| {
        if status == StatusCode::BAD_GATEWAY {
            gm.upstream_error();
        }
        lb.answered(status.as_u16());
        head.clear();
        let (list, n) = cookies.list();
        put_error(head, status, &list[..n], Some(f), keep, cookies.extra());
        client.write_all(head).await.is_ok() && keep
    };
    let keep = rest.is_none() && f.keep_alive;

    let Forward {
        group,
        mut target,
        sticky_secs,
        idle_timeout: idle,
        ..
    } = forward;
    let mut moved_on = false;
    let mut fresh = false;
    let mut attempts = 0;
    let (mut conn, guard) = loop {
        attempts += 1;
        if attempts > MAX_ATTEMPTS {
            return fail(client, head, &cookies, StatusCode::BAD_GATEWAY, keep).await;
        }
        let Some((mut conn, reused)) =
            upstream::connect_or_move_on(&group, &mut target, &mut moved_on, fresh).await
        else {
            return fail(client, head, &cookies, StatusCode::BAD_GATEWAY, keep).await;
        };
        let guard = target.begin();
        cookies.target = target_cookie(&group, &target, sticky_secs);
        let result = match conn.stream.write_all(out).await {
            Err(e) if upstream::is_connection_error(&e) => Err(Failure::Stale(e)),
            Err(e) => Err(Failure::Target(e)),
            Ok(()) if rest.is_some() => break (conn, guard),
            Ok(()) => {
                let Connection {
                    stream,
                    buf: tbuf,
                    read_size,
                    ..
                } = &mut conn;
                read_reply(stream, tbuf, read_size, client, f, &cookies, head).await
            }
        };
        let reply = match result {
            Ok(reply) => {
                gm.responded(started.elapsed(), reply.status);
                reply
            }
            Err(Failure::Stale(e)) if reused => {
                tracing::debug!(target = %target.key, error = %e, "pooled connection closed; retrying");
                // Its neighbours in the pool are likely closed too.
                fresh = true;
                continue;
            }
            Err(Failure::Stale(e) | Failure::Target(e)) => {
                tracing::debug!(target = %target.key, error = %e, "target request failed");
                return fail(client, head, &cookies, StatusCode::BAD_GATEWAY, keep).await;
            }
            Err(Failure::Broken) => return false,
        };
        if reply.status == 101 {
            if !f.upgrade {
                return fail(client, head, &cookies, StatusCode::BAD_GATEWAY, keep).await;
            }
            let _guard = guard;
            tunnel(client, buf, &mut conn, head).await;
            return false;
        }
        let Connection {
            stream,
            buf: tbuf,
            read_size,
            ..
        } = &mut conn;
        let clean = relay(stream, tbuf, read_size, client, head, &reply).await;
        if matches!(clean, Ok(true)) && reply.target_keep_alive {
            conn.release(guard.target());
        }
        drop(guard);
        return clean.is_ok() && reply.client_keep_alive;
    };
    let Some(rest) = rest else {
        return false;
    };

    // A body still arriving: sent while the response is read and relayed, so a target that
    // answers before reading it all cannot deadlock the exchange.
    if f.expect_continue
        && !f.http10
        && buf.is_empty()
        && client
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .is_err()
    {
        return false;
    }
    let responded = AtomicBool::new(false);
    let mut uploaded: Option<bool> = None;
    let outcome = {
        let (mut cr, mut cw) = client.split();
        let Connection {
            stream,
            buf: tbuf,
            read_size,
            ..
        } = &mut conn;
        let (mut tr, mut tw) = stream.split();
        let up = upload(&mut cr, buf, &mut tw, rest, idle);
        let down = async {
            let reply = read_reply(&mut tr, tbuf, read_size, &mut cw, f, &cookies, head).await?;
            if reply.status == 101 {
                return Err(Failure::Target(io::Error::other("switching protocols")));
            }
            responded.store(true, Ordering::Relaxed);
            gm.responded(started.elapsed(), reply.status);
            let clean = relay(&mut tr, tbuf, read_size, &mut cw, head, &reply).await?;
            Ok((reply, clean))
        };
        tokio::pin!(up, down);
        loop {
            tokio::select! {
                biased;
                r = &mut down => break Some(r),
                r = &mut up, if uploaded.is_none() => match r {
                    Ok(()) => uploaded = Some(true),
                    // The target stopped reading: its answer may still come.
                    Err(UploadError::Target) => uploaded = Some(false),
                    Err(UploadError::Client) => break None,
                    Err(UploadError::Malformed) => {
                        uploaded = Some(false);
                        break None;
                    }
                },
            }
        }
    };
    let complete = uploaded == Some(true);
    match outcome {
        Some(Ok((reply, clean))) => {
            if clean && complete && reply.target_keep_alive {
                conn.release(guard.target());
            }
            drop(guard);
            reply.client_keep_alive && complete
        }
        Some(Err(Failure::Stale(e) | Failure::Target(e))) if !responded.load(Ordering::Relaxed) => {
            tracing::debug!(error = %e, "target request failed");
            fail(client, head, &cookies, StatusCode::BAD_GATEWAY, false).await
        }
        None if !responded.load(Ordering::Relaxed) && uploaded == Some(false) => {
            fail(client, head, &cookies, StatusCode::BAD_REQUEST, false).await
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> Client {
        Client::new("10.1.2.3:5555".parse().unwrap(), 8080)
    }

    /// Parses `raw` and rewrites it for a target whose address is `t:1`.
    fn rewrite(raw: &str) -> Result<(Facts, String), Refusal> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_REQUEST_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        let len = req.parse(raw.as_bytes()).unwrap().unwrap();
        let f = facts(&req, len)?;
        let target = split_target(req.path.unwrap()).unwrap();
        let mut out = Vec::new();
        write_target_head(&mut out, &req, &f, &target, &client(), "t:1");
        let mut text = String::from_utf8(out).unwrap();
        // The trace id is random.
        if let Some(i) = text.find("x-amzn-trace-id: Root=1-") {
            text.replace_range(i + 24..i + 24 + 33, "X");
        }
        Ok((f, text))
    }

    #[test]
    fn target_heads_keep_the_client_headers_but_hop_by_hop_ones() {
        let (f, head) = rewrite(
            "POST /p?q=1 HTTP/1.1\r\nHost: api\r\nConnection: keep-alive, X-Secret\r\nX-Secret: s\r\nKeep-Alive: 5\r\nTE: trailers\r\nProxy-Authorization: p\r\nX-Forwarded-For: 1.1.1.1\r\nX-Forwarded-For: 2.2.2.2\r\nX-Forwarded-Proto: https\r\nExpect: 100-continue\r\nContent-Length: 3\r\nX-Case: Kept\r\n\r\n",
        )
        .unwrap();
        assert_eq!(
            head,
            "POST /p?q=1 HTTP/1.1\r\nHost: api\r\nX-Case: Kept\r\nx-forwarded-for: 1.1.1.1, 10.1.2.3\r\nx-forwarded-proto: http\r\nx-forwarded-port: 8080\r\nx-amzn-trace-id: Root=1-X\r\ncontent-length: 3\r\n\r\n"
        );
        assert_eq!(f.body, BodyFraming::Length(3));
        assert!(f.keep_alive && f.expect_continue && f.connection_lists && !f.upgrade);
    }

    #[test]
    fn absolute_form_upgrades_and_chunked_bodies() {
        let (f, head) = rewrite(
            "GET http://Example.com:81/a%20b?x#frag HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Amzn-Trace-Id: Root=mine\r\n\r\n",
        )
        .unwrap();
        assert_eq!(
            head,
            "GET /a%20b?x HTTP/1.1\r\nhost: Example.com:81\r\nX-Amzn-Trace-Id: Root=mine\r\nupgrade: websocket\r\nconnection: upgrade\r\nx-forwarded-for: 10.1.2.3\r\nx-forwarded-proto: http\r\nx-forwarded-port: 8080\r\n\r\n"
        );
        assert!(f.upgrade && f.keep_alive && f.has_trace_id && !f.has_host);
        let (f, head) = rewrite(
            "PUT * HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 9\r\n\r\n",
        )
        .unwrap();
        assert!(
            head.starts_with("PUT * HTTP/1.1\r\nhost: t:1\r\n"),
            "{head}"
        );
        assert!(
            head.ends_with("transfer-encoding: chunked\r\n\r\n"),
            "{head}"
        );
        assert!(!head.contains("ength"), "{head}");
        // Both framings: the transfer coding wins and the connection is not trusted further.
        assert_eq!(f.body, BodyFraming::Chunked);
        assert!(!f.keep_alive);
        // The authority replaces the client's `Host` (RFC 9112 §3.2.2).
        let (_, head) =
            rewrite("GET http://other.example/p HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n\r\n").unwrap();
        assert!(
            head.starts_with("GET /p HTTP/1.1\r\nhost: other.example\r\nX-A: 1\r\n"),
            "{head}"
        );
        assert!(!head.contains("Host: x"), "{head}");
        let (_, head) = rewrite("POST http://h?only HTTP/1.1\r\n\r\n").unwrap();
        assert!(
            head.starts_with("POST /?only HTTP/1.1\r\nhost: h\r\n"),
            "{head}"
        );
        assert!(head.ends_with("content-length: 0\r\n\r\n"), "{head}");
    }

    #[test]
    fn keep_alive_follows_the_version_and_connection() {
        let keep = |raw: &str| rewrite(raw).unwrap().0.keep_alive;
        assert!(keep("GET / HTTP/1.1\r\n\r\n"));
        assert!(!keep("GET / HTTP/1.1\r\nConnection: Close\r\n\r\n"));
        assert!(!keep("GET / HTTP/1.0\r\n\r\n"));
        assert!(keep("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
        assert!(!keep("GET / HTTP/1.1\r\nConnection: x, close\r\n\r\n"));
        let refused = |raw: &str| rewrite(raw).unwrap_err();
        assert_eq!(
            refused("POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"),
            Refusal(StatusCode::BAD_REQUEST)
        );
        assert_eq!(
            refused("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"),
            Refusal(StatusCode::BAD_REQUEST)
        );
    }

    #[test]
    fn request_targets() {
        let t = split_target("/a/b?c=d&e").unwrap();
        assert_eq!(
            (t.path, t.query, t.origin, t.authority),
            ("/a/b", "c=d&e", "/a/b?c=d&e", None)
        );
        let t = split_target("HTTPS://h:1").unwrap();
        assert_eq!(
            (t.path, t.query, t.origin, t.authority),
            ("/", "", "", Some("h:1"))
        );
        let t = split_target("http://h#f").unwrap();
        assert_eq!((t.authority, t.path), (Some("h"), "/"));
        for bad in ["a/b", "ftp://h/", "http:///p", "/\u{e9}", "http://u:p@h/"] {
            assert!(split_target(bad).is_none(), "{bad}");
        }
        assert_eq!(host_without_port("h.example:80"), "h.example");
        assert_eq!(host_without_port("[::1]:80"), "[::1]");
    }

    #[test]
    fn bare_line_feeds_are_found() {
        assert!(!bare_lf(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(bare_lf(b"GET / HTTP/1.1\nHost: x\r\n\r\n"));
        assert!(bare_lf(b"GET / HTTP/1.1\r\nHost: x\r\n\n"));
        assert!(bare_lf(b"\n"));
    }

    fn reply(raw: &str, f: &Facts, keep: bool) -> (Reply, String) {
        let cookies = Cookies {
            target: Some("AWSALB=g|t; Max-Age=5; Path=/".into()),
            group: None,
            headers: None,
        };
        let mut out = Vec::new();
        let r = rewrite_reply(raw.as_bytes(), f, &cookies, keep, &mut out)
            .unwrap()
            .unwrap();
        (r, String::from_utf8(out).unwrap())
    }

    #[test]
    fn response_heads_lose_hop_by_hop_headers_and_gain_cookies() {
        let (f, _) = rewrite("GET / HTTP/1.1\r\n\r\n").unwrap();
        let (r, head) = reply(
            "HTTP/1.1 200 Fine\r\nDate: d\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\nX-A: b\r\n\r\n5\r\n",
            &f,
            true,
        );
        assert_eq!(
            head,
            "HTTP/1.1 200 Fine\r\nDate: d\r\nTransfer-Encoding: chunked\r\nX-A: b\r\nset-cookie: AWSALB=g|t; Max-Age=5; Path=/\r\n\r\n"
        );
        assert_eq!(r.len, head.len() - "set-cookie: AWSALB=g|t; Max-Age=5; Path=/\r\n".len() + "Connection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nContent-Length: 4\r\n".len());
        assert_eq!(r.framing, ResponseFraming::Chunked);
        assert!(r.client_keep_alive && !r.target_keep_alive && !r.decode);
        // To an HTTP/1.0 client a chunked body goes decoded, delimited by the close.
        let (f10, _) = rewrite("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").unwrap();
        let (r, head) = reply(
            "HTTP/1.1 200 OK\r\nDate: d\r\nTransfer-Encoding: chunked\r\n\r\n",
            &f10,
            true,
        );
        assert!(r.decode && !r.client_keep_alive);
        assert!(
            !head.contains("chunked") && head.contains("connection: close"),
            "{head}"
        );
        // Until the target closes: so does the client connection. No date: one is added.
        let (r, head) = reply("HTTP/1.1 404 \r\n\r\n", &f, true);
        assert_eq!(r.framing, ResponseFraming::Eof);
        assert!(!r.client_keep_alive);
        assert!(head.starts_with("HTTP/1.1 404 Not Found\r\n"), "{head}");
        assert!(
            head.contains("\r\ndate: ") && head.contains("connection: close"),
            "{head}"
        );
        // Interim responses go on to HTTP/1.1 clients, but 100 (the proxy answers `Expect`).
        let (r, head) = reply("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n", &f, true);
        assert_eq!(
            (r.status, head.as_str()),
            (103, "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n")
        );
        assert_eq!(reply("HTTP/1.1 100 Continue\r\n\r\n", &f, true).1, "");
        assert_eq!(reply("HTTP/1.1 103 Early Hints\r\n\r\n", &f10, true).1, "");
        let mut out = Vec::new();
        assert_eq!(
            rewrite_reply(
                b"HTTP/1.1 200 OK\r\nX",
                &f,
                &Cookies::default(),
                true,
                &mut out
            ),
            Ok(None)
        );
        assert!(
            rewrite_reply(
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                &f,
                &Cookies::default(),
                true,
                &mut out
            )
            .is_err()
        );
    }

    #[test]
    fn answers_made_here() {
        let (f, _) = rewrite("HEAD / HTTP/1.0\r\n\r\n").unwrap();
        let mut out = Vec::new();
        put_error(
            &mut out,
            StatusCode::BAD_GATEWAY,
            &[b"AWSALBTG=x"],
            Some(&f),
            false,
            &NO_RESPONSE_HEADERS,
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/html\r\nserver: awselb/2.0\r\nset-cookie: AWSALBTG=x\r\ncontent-length: "), "{text}");
        // HEAD: no body.
        assert!(text.ends_with("connection: close\r\n\r\n"), "{text}");
    }

    #[test]
    fn dates() {
        assert_eq!(&http_date(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(&http_date(784_111_777), b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(&http_date(1_709_210_096), b"Thu, 29 Feb 2024 12:34:56 GMT");
    }
}
