//! The hand-written HTTP/1.1 path for plain requests on the public port and the container
//! gateway: the head read with `httparse`, routed and admitted like any request
//! ([`super::Exchange`]), written to a pooled socket of the container or peer, and the
//! answer copied back as bytes, without parsing it into a `HeaderMap` or handing it between
//! tasks.
//!
//! Why not hyper here: hyper parses both messages into maps, re-encodes them, and drives each
//! upstream connection as its own task, so a proxied request cost maelstromd 22 µs of CPU
//! against nginx's 16 µs (scripts/bench-maelstromd); this path is the one nginx takes.
//! Everything else — upgrades, `Expect`, chunked or large uploads, HTTP/1.0, health checks —
//! goes to hyper: the connection is handed over with the bytes already read, for the rest of
//! its life ([`Rewind`]).

use super::proxy::{self, Hop};
use super::upstream::{Upstream, UpstreamError};
use super::{Client, Exchange, Listener, Refusal, upstream_of};
use crate::node::Node;
use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// A request head longer than this goes to hyper (which has its own limit); a response head
/// longer than this is a `502`.
const MAX_HEAD: usize = 64 * 1024;
/// Request bodies up to this size are read whole and sent with their head in one write;
/// longer ones stream through hyper.
const MAX_BODY: usize = 64 * 1024;
/// Headers per message this path reads; more go to hyper (requests) or fail (responses).
const MAX_HEADERS: usize = 100;

/// How often, at most, a connection checks that it is served on the CPU its packets arrive
/// on: a syscall, so not on every request. It moves when two checks in a row name the same
/// other worker, so a client thread that the scheduler bounces between CPUs does not drag its
/// connections along each time.
const AFFINITY_CHECK: Duration = Duration::from_millis(100);

/// How a connection served here ends.
pub enum End {
    /// Closed, by either side or at shutdown.
    Closed,
    /// The next request needs hyper: it gets the socket and what was read from it.
    Hyper(Rewind),
    /// Its packets now arrive on another worker's CPU: it goes to worker `to`, between
    /// requests, with nothing read.
    Moved { stream: TcpStream, to: usize },
}

/// The worker serving a connection, among the workers pinned one per CPU.
pub struct Home<'a> {
    pub workers: &'a super::Workers,
    pub worker: usize,
}

/// Serves `client` until it closes, `stop` (the worker's token for the node's stop
/// accepting) fires between requests, a request needs hyper, or (with a `home`) the
/// connection belongs to another worker.
pub async fn serve(
    node: &Arc<Node>,
    mut client: TcpStream,
    kind: Listener,
    client_addr: &Client,
    stop: &CancellationToken,
    home: Option<Home<'_>>,
) -> End {
    // One set of buffers per connection: client bytes, upstream bytes, bytes to write.
    let mut buf = BytesMut::with_capacity(8 * 1024);
    let mut ubuf = BytesMut::with_capacity(8 * 1024);
    let mut out = Vec::with_capacity(4 * 1024);
    // Made once per connection and reset per request: a new waiter on the token, or a new
    // timer, for every request would cost a lock and an allocation each.
    let stopped = stop.cancelled();
    tokio::pin!(stopped);
    // As hyper does with `header_read_timeout`: a head, and then its body, must arrive
    // within the read timeout of the last exchange, idle time included. The timer is armed
    // once and, when it fires, re-armed from the last activity if there was some since.
    let timeout = node.cfg.http_read_timeout;
    let mut active = tokio::time::Instant::now();
    let read_timer = tokio::time::sleep_until(active + timeout);
    tokio::pin!(read_timer);
    // Where the connection was placed (on arrival, or by a move) stands for a while.
    let mut next_affinity_check = active + AFFINITY_CHECK;
    let mut wanted_before = None;
    loop {
        let parsed = loop {
            match parse_request(&mut buf) {
                Ok(Some(p)) => break p,
                // Longer heads are hyper's to take or refuse.
                Ok(None) if buf.len() >= MAX_HEAD => {
                    return End::Hyper(Rewind::new(client, buf.freeze()));
                }
                Ok(None) => {}
                Err(Unplain) => return End::Hyper(Rewind::new(client, buf.freeze())),
            }
            let read = tokio::select! {
                r = client.read_buf(&mut buf) => r.ok(),
                _ = &mut stopped, if buf.is_empty() => None,
                _ = expired(read_timer.as_mut(), active, timeout) => None,
            };
            match read {
                Some(n) if n > 0 => {}
                _ => return End::Closed,
            }
        };
        let Parsed {
            body_len,
            close,
            mut req,
        } = parsed;
        // Read now, while the last packet in is the request: between requests it can be
        // the client's delayed ACK, sent from wherever the answer arrived.
        // `active` (the end of the last exchange) stands for now: no clock read per request.
        let mut move_to = None;
        if let Some(home) = &home
            && active >= next_affinity_check
        {
            next_affinity_check = active + AFFINITY_CHECK;
            let wanted = home.workers.move_target(&client, home.worker);
            move_to = wanted.filter(|_| wanted == wanted_before);
            wanted_before = wanted;
        }
        while buf.len() < body_len {
            let read = tokio::select! {
                r = client.read_buf(&mut buf) => r.ok(),
                _ = expired(read_timer.as_mut(), active, timeout) => None,
            };
            match read {
                Some(n) if n > 0 => {}
                _ => return End::Closed,
            }
        }
        let body = buf.split_to(body_len).freeze();
        if kind == Listener::Public {
            super::strip_maelstrom_headers(&mut req);
        }
        let mut to_client = ToClient {
            stream: &mut client,
            out: &mut out,
            head_only: req.method() == Method::HEAD,
            close,
            stop,
        };
        let keep = exchange(
            node,
            &mut to_client,
            &mut ubuf,
            req,
            body,
            kind,
            client_addr,
        )
        .await;
        if !keep {
            return End::Closed;
        }
        active = tokio::time::Instant::now();
        // Room is looked at again: the exchange may have taken long.
        if let Some(worker) = move_to
            && buf.is_empty()
            && !stop.is_cancelled()
            && home
                .as_ref()
                .is_some_and(|h| h.workers.has_room(worker, false))
        {
            return End::Moved {
                stream: client,
                to: worker,
            };
        }
    }
}

/// Resolves when `timer` fires with no activity within `timeout` before it; re-arms it
/// from `active` otherwise.
async fn expired(
    mut timer: Pin<&mut tokio::time::Sleep>,
    active: tokio::time::Instant,
    timeout: Duration,
) {
    loop {
        timer.as_mut().await;
        if active.elapsed() >= timeout {
            return;
        }
        timer.as_mut().reset(active + timeout);
    }
}

/// The client's side of one exchange: where the answer goes, and how.
struct ToClient<'a> {
    stream: &'a mut TcpStream,
    /// What is about to be written, to either side.
    out: &'a mut Vec<u8>,
    /// The request was `HEAD`: no answer carries a body.
    head_only: bool,
    /// The client asked to close after this exchange.
    close: bool,
    stop: &'a CancellationToken,
}

impl ToClient<'_> {
    /// Whether the answer must say `Connection: close`: the client asked, or the node is
    /// draining (as hyper's graceful shutdown does).
    fn closing(&self) -> bool {
        self.close || self.stop.is_cancelled()
    }

    /// Writes a refusal as a complete response. Answers whether the connection can carry
    /// another request.
    async fn refuse(&mut self, r: Refusal) -> bool {
        let closing = self.closing();
        let out = &mut *self.out;
        out.clear();
        out.extend_from_slice(format!("HTTP/1.1 {}\r\n", r.status).as_bytes());
        put_header(out, "content-type", b"text/plain; charset=utf-8");
        put_header(
            out,
            "content-length",
            r.message.len().to_string().as_bytes(),
        );
        if let Some(s) = r.retry_after {
            put_header(out, "retry-after", s.to_string().as_bytes());
        }
        if closing {
            put_header(out, "connection", b"close");
        }
        out.extend_from_slice(b"\r\n");
        if !self.head_only {
            out.extend_from_slice(r.message.as_bytes());
        }
        self.stream.write_all(out).await.is_ok() && !closing
    }
}

/// A request head that this path does not serve.
struct Unplain;

/// A plain request head, read and taken off the buffer.
struct Parsed {
    body_len: usize,
    /// The client asked to close after this exchange.
    close: bool,
    req: Request<()>,
}

/// Reads a complete request head off the front of `buf`: `None` while it is incomplete,
/// `Unplain` (leaving `buf` as it was) for what hyper serves instead, including heads it
/// must refuse.
fn parse_request(buf: &mut BytesMut) -> Result<Option<Parsed>, Unplain> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut head = httparse::Request::new(&mut headers);
    let head_len = match head.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(Unplain),
    };
    let (Some(method), Some(path), Some(1)) = (head.method, head.path, head.version) else {
        return Err(Unplain);
    };
    if method == "CONNECT" {
        return Err(Unplain);
    }
    let mut req = Request::new(());
    *req.method_mut() = Method::from_bytes(method.as_bytes()).map_err(|_| Unplain)?;
    *req.uri_mut() = path.parse().map_err(|_| Unplain)?;
    if req.uri().path_and_query().map(|p| p.as_str()) == Some("/_mael_health_check") {
        return Err(Unplain);
    }
    let mut body_len = None;
    let mut close = false;
    // Values are taken as slices of the head once it is off the buffer: no copy each.
    let base = buf.as_ptr() as usize;
    let mut values = Vec::with_capacity(head.headers.len());
    for h in head.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| Unplain)?;
        if name == header::TRANSFER_ENCODING || name == header::UPGRADE || name == header::EXPECT {
            return Err(Unplain);
        }
        if name == header::CONTENT_LENGTH {
            let n = content_length(h.value).ok_or(Unplain)?;
            if body_len.replace(n).is_some_and(|m| m != n) {
                return Err(Unplain);
            }
        }
        if name == header::CONNECTION && has_token(h.value, "close") {
            close = true;
        }
        // What `HeaderValue` accepts, checked before the head leaves the buffer.
        if !h.value.iter().all(|&b| (b >= 32 && b != 127) || b == b'\t') {
            return Err(Unplain);
        }
        let start = h.value.as_ptr() as usize - base;
        values.push((name, start..start + h.value.len()));
    }
    let body_len = body_len.unwrap_or(0);
    if body_len > MAX_BODY {
        return Err(Unplain);
    }
    let raw = buf.split_to(head_len).freeze();
    let map = req.headers_mut();
    map.reserve(values.len() + 6);
    for (name, range) in values {
        // Always valid: checked above.
        if let Ok(value) = HeaderValue::from_maybe_shared(raw.slice(range)) {
            map.append(name, value);
        }
    }
    Ok(Some(Parsed {
        body_len,
        close,
        req,
    }))
}

/// A `Content-Length` value: digits only (RFC 9110 §8.6), as hyper reads it; `+5` or
/// `0x5` would let a lenient upstream frame the body differently from us.
fn content_length(value: &[u8]) -> Option<usize> {
    let v = value.trim_ascii();
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// Whether a comma-separated header value lists `token`.
fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|b| *b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// Routes, admits and forwards one request, writing the answer to the client. Answers
/// whether the client connection can carry another request.
async fn exchange(
    node: &Arc<Node>,
    client: &mut ToClient<'_>,
    rbuf: &mut BytesMut,
    mut req: Request<()>,
    body: Bytes,
    kind: Listener,
    client_addr: &Client,
) -> bool {
    let mut ex = match Exchange::begin(node, &mut req, kind, client_addr).await {
        Ok(ex) => ex,
        Err(r) => return client.refuse(r).await,
    };
    let idempotent = req.method().is_idempotent();
    loop {
        let slot = tokio::select! {
            s = ex.slot(node) => s,
            _ = client_gone(client.stream) => return false,
        };
        let slot = match slot {
            Ok(s) => s,
            Err(r) => return client.refuse(r).await,
        };
        let hop = ex.hop(node);
        // Only a relay is ever sent again, so only then is the request kept.
        let mut sent = match slot.target() {
            crate::router::Target::Remote(_) => req.clone(),
            crate::router::Target::Local(_) => std::mem::replace(&mut req, Request::new(())),
        };
        if let Err(e) = proxy::prepare(&mut sent, slot.target(), &hop) {
            return client
                .refuse(Refusal::new(StatusCode::BAD_REQUEST, e))
                .await;
        }
        let to = upstream_of(slot.target());
        encode_request(client.out, &sent, &hop, to, &body);
        let answer = tokio::select! {
            biased;
            r = send(to, client.out, idempotent, client.head_only, rbuf) => r,
            _ = &mut ex.timer => return client.refuse(ex.timed_out()).await,
            _ = client_gone(client.stream) => return false,
        };
        let (upstream, head) = match answer {
            Ok(a) => a,
            Err(e) => {
                let replayable = e.is_connect();
                match ex.failed(node, slot, &proxy::error_chain(&e), replayable) {
                    Ok(()) => continue,
                    Err(r) => return client.refuse(r).await,
                }
            }
        };
        ex.answered(head.status, slot.target());
        let closing = client.closing();
        encode_response(client.out, &rbuf[..head.len], &head, closing);
        rbuf.advance(head.len);
        let copy = Copy {
            client: client.stream,
            upstream,
            rbuf,
            out: client.out,
            framing: head.framing,
            reusable: head.reusable,
        };
        let finished = if head.event_stream {
            copy.run(Some(node.cfg.http_idle_timeout)).await
        } else {
            tokio::select! {
                r = copy.run(None) => r,
                _ = &mut ex.timer => None,
            }
        };
        let completed = finished.is_some();
        if let Some(Some(s)) = finished {
            to.checkin_raw(s);
        }
        drop(slot);
        return completed && head.framing != Framing::Close && !closing;
    }
}

/// Resolves when the client has closed its side (or its socket failed) while its request
/// waits; bytes it sent meanwhile (a pipelined request) stay unread.
async fn client_gone(client: &TcpStream) {
    let mut probe = [0u8; 1];
    loop {
        match client.peek(&mut probe).await {
            Ok(0) | Err(_) => return,
            Ok(_) => std::future::pending::<()>().await,
        }
    }
}

/// Writes the request head for the hop, and its body, into `out`.
fn encode_request(out: &mut Vec<u8>, req: &Request<()>, hop: &Hop<'_>, to: &Upstream, body: &[u8]) {
    out.clear();
    out.extend_from_slice(req.method().as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(hop.path_and_query.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    if !req.headers().contains_key(header::HOST) {
        put_header(out, header::HOST.as_str(), to.host().as_bytes());
    }
    for (name, value) in req.headers() {
        put_header(out, name.as_str(), value.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

fn put_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Sends the encoded request on a pooled socket, or a new one, and reads until a final
/// response head is complete; it is read once, here. A pooled socket the upstream closed before answering is replaced; the
/// request is sent again when it cannot have been acted on twice (an idempotent method, or
/// nothing could be written).
async fn send(
    to: &Upstream,
    request: &[u8],
    idempotent: bool,
    head_only: bool,
    rbuf: &mut BytesMut,
) -> Result<(TcpStream, ResponseHead), SendError> {
    loop {
        let (mut s, pooled) = match to.checkout_raw() {
            Some(s) => (s, true),
            None => (to.connect_raw().await?, false),
        };
        if let Err(e) = s.write_all(request).await {
            if pooled {
                continue;
            }
            return Err(SendError::Io(e));
        }
        rbuf.clear();
        let mut answered = false;
        loop {
            match s.read_buf(rbuf).await {
                Ok(0) | Err(_) if pooled && !answered && idempotent => break,
                Ok(0) => return Err(SendError::ClosedEarly),
                Err(e) => return Err(SendError::Io(e)),
                Ok(_) => answered = true,
            }
            match read_response_head(rbuf, head_only) {
                Ok(Some(head)) => return Ok((s, head)),
                Ok(None) if rbuf.len() >= MAX_HEAD => return Err(SendError::HeadTooLarge),
                Ok(None) => {}
                Err(detail) => return Err(SendError::BadHead(detail)),
            }
        }
    }
}

/// An interim answer that a final one follows; hyper's client skips these too.
fn informational(status: u16) -> bool {
    (100..200).contains(&status) && status != 101
}

/// Why sending failed before a response head.
#[derive(Debug, thiserror::Error)]
enum SendError {
    #[error(transparent)]
    Connect(#[from] UpstreamError),
    #[error("the connection failed")]
    Io(#[source] std::io::Error),
    #[error("connection closed before a response")]
    ClosedEarly,
    #[error("response head over {MAX_HEAD} bytes")]
    HeadTooLarge,
    #[error("{0}")]
    BadHead(&'static str),
}

impl SendError {
    fn is_connect(&self) -> bool {
        matches!(self, SendError::Connect(e) if e.is_connect())
    }
}

/// How a response body ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    /// No body (`HEAD`, `204`, `304`).
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// Chunked; copied as it is, and read to find its end.
    Chunked,
    /// Until the upstream closes; the client connection closes after it.
    Close,
}

/// A response head, read.
struct ResponseHead {
    /// Its length in the buffer.
    len: usize,
    status: u16,
    framing: Framing,
    event_stream: bool,
    /// The upstream socket can serve another request after this body.
    reusable: bool,
    /// Header lines to pass on, as (start, end) byte ranges of the buffer.
    lines: Vec<(usize, usize)>,
}

/// Reads the response head at the start of `rbuf`, taking informational ones off the
/// buffer: `None` until the final head is complete.
fn read_response_head(
    rbuf: &mut BytesMut,
    head_only: bool,
) -> Result<Option<ResponseHead>, &'static str> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut head = httparse::Response::new(&mut headers);
        let len = match head.parse(rbuf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err("malformed response head"),
        };
        let status = head.code.ok_or("malformed response head")?;
        if informational(status) {
            rbuf.advance(len);
            continue;
        }
        if status == 101 {
            return Err("an upgrade that was not asked for");
        }
        // First what frames the body, then which lines go on (RFC 9112 §6.3).
        let mut length = None;
        let mut transfer_encoded = false;
        let mut chunked = false;
        let mut event_stream = false;
        let mut reusable = head.version == Some(1);
        for h in head.headers.iter() {
            let name = h.name;
            if name.eq_ignore_ascii_case("content-length") {
                let n = content_length(h.value).ok_or("a bad Content-Length")?;
                if length.replace(n).is_some_and(|m| m != n) {
                    return Err("conflicting Content-Length");
                }
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                transfer_encoded = true;
                // Only a final `chunked` frames the body; the last header has the last say.
                chunked = h
                    .value
                    .rsplit(|b| *b == b',')
                    .next()
                    .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            } else if name.eq_ignore_ascii_case("connection") {
                reusable &= !has_token(h.value, "close");
            } else if name.eq_ignore_ascii_case("content-type") {
                event_stream = h.value.starts_with(b"text/event-stream");
            }
        }
        let framing = if head_only || status == 204 || status == 304 {
            Framing::Empty
        } else if transfer_encoded && chunked {
            Framing::Chunked
        } else if transfer_encoded {
            Framing::Close
        } else if let Some(n) = length {
            Framing::Length(n as u64)
        } else {
            Framing::Close
        };
        let named_by_connection: Vec<&str> = head
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("connection"))
            .flat_map(|h| std::str::from_utf8(h.value).unwrap_or("").split(','))
            .map(str::trim)
            .collect();
        let base = rbuf.as_ptr() as usize;
        let mut lines = Vec::with_capacity(head.headers.len());
        for h in head.headers.iter() {
            let name = h.name;
            let framing_header = name.eq_ignore_ascii_case("content-length")
                || name.eq_ignore_ascii_case("transfer-encoding");
            // With a Transfer-Encoding, a Content-Length is wrong and must not go on; the
            // framing headers stay even when `Connection` names them, since the body is
            // passed on as it came.
            let dropped = name.eq_ignore_ascii_case("connection")
                || is_hop_by_hop(name)
                || (transfer_encoded && name.eq_ignore_ascii_case("content-length"))
                || (!framing_header
                    && named_by_connection
                        .iter()
                        .any(|n| n.eq_ignore_ascii_case(name)));
            if dropped {
                continue;
            }
            // A header's line runs from its name to the end of its value.
            let start = name.as_ptr() as usize - base;
            let end = h.value.as_ptr() as usize - base + h.value.len();
            lines.push((start, end));
        }
        if framing == Framing::Close {
            reusable = false;
        }
        return Ok(Some(ResponseHead {
            len,
            status,
            framing,
            event_stream,
            reusable,
            lines,
        }));
    }
}

/// Hop-by-hop headers this path drops from responses ([`proxy::HOP_BY_HOP`]) but
/// `Transfer-Encoding`, which stays, since a chunked body is passed on as it came.
fn is_hop_by_hop(name: &str) -> bool {
    !name.eq_ignore_ascii_case("transfer-encoding")
        && proxy::HOP_BY_HOP
            .iter()
            .any(|h| h.as_str().eq_ignore_ascii_case(name))
}

/// Writes the client's response head into `out`.
fn encode_response(out: &mut Vec<u8>, raw: &[u8], head: &ResponseHead, close: bool) {
    out.clear();
    let status_line_end = raw
        .windows(2)
        .position(|w| w == b"\r\n")
        .unwrap_or(raw.len());
    // The status line is passed on as HTTP/1.1 with the upstream's own reason phrase.
    let reason_at = raw[..status_line_end]
        .iter()
        .position(|b| *b == b' ')
        .unwrap_or(0);
    out.extend_from_slice(b"HTTP/1.1");
    out.extend_from_slice(&raw[reason_at..status_line_end]);
    out.extend_from_slice(b"\r\n");
    for &(start, end) in &head.lines {
        out.extend_from_slice(&raw[start..end]);
        out.extend_from_slice(b"\r\n");
    }
    if close || head.framing == Framing::Close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// The copy of one response body from the upstream to the client, head first.
struct Copy<'a> {
    client: &'a mut TcpStream,
    upstream: TcpStream,
    rbuf: &'a mut BytesMut,
    out: &'a mut Vec<u8>,
    framing: Framing,
    reusable: bool,
}

impl Copy<'_> {
    /// Copies until the body ends: `None` when either side failed, else the upstream socket
    /// when it can be reused. An event stream (`idle` set) has no deadline but ends when
    /// nothing arrives for `idle`.
    async fn run(self, idle: Option<Duration>) -> Option<Option<TcpStream>> {
        let Copy {
            client,
            mut upstream,
            rbuf,
            out,
            framing,
            reusable,
        } = self;
        let mut left = match framing {
            Framing::Length(n) => n,
            _ => u64::MAX,
        };
        let mut chunks = ChunkedEnd::default();
        let mut done = framing == Framing::Empty || left == 0;
        let mut clean = true;
        loop {
            // Pass on what the buffer holds of the body, with the head on the first turn.
            let take = match framing {
                Framing::Empty => 0,
                Framing::Length(_) => (left.min(rbuf.len() as u64)) as usize,
                Framing::Chunked => match chunks.scan(rbuf) {
                    Ok(Some(end)) => {
                        done = true;
                        end
                    }
                    Ok(None) => rbuf.len(),
                    Err(()) => return None,
                },
                Framing::Close => rbuf.len(),
            };
            if let Framing::Length(_) = framing {
                left -= take as u64;
                done = left == 0;
            }
            out.extend_from_slice(&rbuf[..take]);
            rbuf.advance(take);
            if !out.is_empty() {
                client.write_all(out).await.ok()?;
                out.clear();
            }
            if done {
                // Bytes past the end of the body mean the upstream is out of step.
                clean &= rbuf.is_empty();
                break;
            }
            rbuf.clear();
            // A client that goes away ends the exchange (and frees its slot) at once.
            let read = async {
                tokio::select! {
                    r = upstream.read_buf(rbuf) => r.ok(),
                    _ = client_gone(client) => None,
                }
            };
            let n = match idle {
                Some(idle) => tokio::time::timeout(idle, read).await.ok()??,
                None => read.await?,
            };
            if n == 0 {
                if framing == Framing::Close {
                    break;
                }
                return None;
            }
        }
        Some((reusable && clean && framing != Framing::Close).then_some(upstream))
    }
}

/// Finds the end of a chunked body as it streams past (RFC 9112 §7.1), without changing it.
#[derive(Default)]
struct ChunkedEnd {
    state: Chunk,
}

#[derive(Clone, Copy, Default)]
enum Chunk {
    /// Reading a chunk size; whether a digit was seen.
    #[default]
    SizeStart,
    Size(u64),
    /// Chunk extensions, up to the CR.
    Ext(u64),
    SizeLf(u64),
    Data(u64),
    DataCr,
    DataLf,
    /// The start of a trailer line, or of the final empty line.
    LineStart,
    Line,
    LineLf {
        empty: bool,
    },
}

impl ChunkedEnd {
    /// Scans the next bytes of the body: where in `data` the body ends, if it does.
    fn scan(&mut self, data: &[u8]) -> Result<Option<usize>, ()> {
        let mut i = 0;
        while i < data.len() {
            let b = data[i];
            self.state = match self.state {
                Chunk::SizeStart | Chunk::Size(_) => {
                    let n = match self.state {
                        Chunk::Size(n) => Some(n),
                        _ => None,
                    };
                    match (b as char).to_digit(16) {
                        Some(d) => {
                            let v = n.unwrap_or(0).checked_mul(16).ok_or(())? + d as u64;
                            Chunk::Size(v)
                        }
                        None => match (n, b) {
                            (Some(n), b';' | b' ' | b'\t') => Chunk::Ext(n),
                            (Some(n), b'\r') => Chunk::SizeLf(n),
                            _ => return Err(()),
                        },
                    }
                }
                Chunk::Ext(n) => match b {
                    b'\r' => Chunk::SizeLf(n),
                    _ => Chunk::Ext(n),
                },
                Chunk::SizeLf(n) => match (b, n) {
                    (b'\n', 0) => Chunk::LineStart,
                    (b'\n', n) => Chunk::Data(n),
                    _ => return Err(()),
                },
                Chunk::Data(n) => {
                    let take = n.min((data.len() - i) as u64);
                    i += take as usize;
                    self.state = if take == n {
                        Chunk::DataCr
                    } else {
                        Chunk::Data(n - take)
                    };
                    continue;
                }
                Chunk::DataCr if b == b'\r' => Chunk::DataLf,
                Chunk::DataLf if b == b'\n' => Chunk::SizeStart,
                Chunk::DataCr | Chunk::DataLf => return Err(()),
                Chunk::LineStart if b == b'\r' => Chunk::LineLf { empty: true },
                Chunk::LineStart | Chunk::Line if b == b'\r' => Chunk::LineLf { empty: false },
                Chunk::LineStart | Chunk::Line => Chunk::Line,
                Chunk::LineLf { empty } if b == b'\n' => {
                    if empty {
                        return Ok(Some(i + 1));
                    }
                    Chunk::LineStart
                }
                Chunk::LineLf { .. } => return Err(()),
            };
            i += 1;
        }
        Ok(None)
    }
}

/// A socket handed to hyper with the bytes this path had already read from it.
pub struct Rewind {
    pre: Bytes,
    inner: TcpStream,
}

impl Rewind {
    /// `inner`, whose next bytes are `pre`.
    pub fn new(inner: TcpStream, pre: Bytes) -> Rewind {
        Rewind { pre, inner }
    }
}

impl AsyncRead for Rewind {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.pre.is_empty() {
            let n = self.pre.len().min(buf.remaining());
            buf.put_slice(&self.pre[..n]);
            self.pre.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn end_of(body: &[u8]) -> Result<Option<usize>, ()> {
        ChunkedEnd::default().scan(body)
    }

    #[test]
    fn the_end_of_a_chunked_body_is_found_however_it_is_split() {
        let body = b"5\r\nhello\r\n1a;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nx-trailer: 1\r\n\r\nNEXT";
        let end = body.len() - 4;
        assert_eq!(end_of(body), Ok(Some(end)));
        for split in 0..body.len() {
            let mut c = ChunkedEnd::default();
            let first = c.scan(&body[..split]).unwrap();
            let found = match first {
                Some(e) => e,
                None => split + c.scan(&body[split..]).unwrap().expect("an end"),
            };
            assert_eq!(found, end, "split at {split}");
        }
        assert_eq!(end_of(b"0\r\n\r\n"), Ok(Some(5)));
        assert_eq!(end_of(b"5\r\nhel"), Ok(None));
        assert_eq!(end_of(b"zz\r\n"), Err(()));
        assert_eq!(end_of(b"2\r\nabX"), Err(()));
    }

    #[test]
    fn plain_heads_are_parsed_and_the_rest_goes_to_hyper() {
        let raw =
            b"GET /a?b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc";
        let mut buf = BytesMut::from(&raw[..]);
        let p = parse_request(&mut buf).ok().flatten().unwrap();
        assert_eq!((p.body_len, p.close), (3, true));
        assert_eq!(&buf[..], b"abc", "the head is taken off the buffer");
        assert_eq!(p.req.uri(), "/a?b");
        assert_eq!(p.req.headers()["host"], "x");
        let mut partial = BytesMut::from(&b"GET / HTTP/1.1\r\nHost: x\r\n"[..]);
        assert!(matches!(parse_request(&mut partial), Ok(None)));
        let too_long = format!(
            "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        for unplain in [
            &b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            b"PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
            b"GET / HTTP/1.0\r\n\r\n",
            b"GET /_mael_health_check HTTP/1.1\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"GARBAGE\r\n\r\n",
            b"GET / HTTP/1.1\r\nx-bell: \x07\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\nx",
            b"GET http://h/_mael_health_check HTTP/1.1\r\n\r\n",
            too_long.as_bytes(),
        ] {
            let mut buf = BytesMut::from(unplain);
            assert!(
                parse_request(&mut buf).is_err(),
                "{}",
                String::from_utf8_lossy(unplain)
            );
            assert_eq!(&buf[..], unplain, "hyper gets every byte");
        }
    }

    /// A server that answers one keep-alive request per connection and then closes it, as
    /// servers do with idle connections; counts the connections.
    async fn closing_server() -> (Upstream, Arc<std::sync::atomic::AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut buf = vec![0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .await;
            }
        });
        (Upstream::new(&url, 4), accepted)
    }

    #[tokio::test]
    async fn a_pooled_socket_the_upstream_closed_is_replaced() {
        let (up, accepted) = closing_server().await;
        let mut rbuf = BytesMut::new();
        for i in 1..=3 {
            // Not idempotent: no second try, so the closed socket must be seen at checkout.
            let request = b"POST / HTTP/1.1\r\nHost: x\r\n\r\n";
            let (s, head) = send(&up, request, false, false, &mut rbuf).await.unwrap();
            assert_eq!((head.status, head.framing), (200, Framing::Length(2)));
            up.checkin_raw(s);
            // Let the close arrive, as it would while the socket waits in the pool.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), i);
        }
    }

    #[test]
    fn response_heads_keep_end_to_end_headers_and_find_their_framing() {
        let raw = b"HTTP/1.1 200 Fine\r\nContent-Length: 2\r\nConnection: keep-alive, x-hop\r\nx-hop: 1\r\nKeep-Alive: timeout=5\r\nx-end: 2\r\n\r\nok";
        let mut buf = BytesMut::from(&raw[..]);
        let head = read_response_head(&mut buf, false).unwrap().unwrap();
        assert_eq!(
            (head.status, head.framing, head.reusable),
            (200, Framing::Length(2), true)
        );
        let mut out = Vec::new();
        encode_response(&mut out, &buf[..head.len], &head, false);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 Fine\r\nContent-Length: 2\r\nx-end: 2\r\n\r\n"
        );
        let mut buf = BytesMut::from(
            &b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                [..],
        );
        let head = read_response_head(&mut buf, false).unwrap().unwrap();
        assert_eq!(head.framing, Framing::Chunked);
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\nConnection: transfer-encoding\r\n\r\n";
        let mut buf = BytesMut::from(&raw[..]);
        let head = read_response_head(&mut buf, false).unwrap().unwrap();
        assert_eq!(head.framing, Framing::Chunked);
        let mut out = Vec::new();
        encode_response(&mut out, &buf[..head.len], &head, false);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            "the chunked framing stays, the Content-Length beside it goes"
        );
        let mut buf = BytesMut::from(
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 5\r\n\r\n"[..],
        );
        let head = read_response_head(&mut buf, false).unwrap().unwrap();
        assert_eq!((head.framing, head.reusable), (Framing::Close, false));
        let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n"[..]);
        assert!(read_response_head(&mut buf, false).is_err());
        let mut buf = BytesMut::from(&b"HTTP/1.0 200 OK\r\n\r\nbody"[..]);
        let head = read_response_head(&mut buf, false).unwrap().unwrap();
        assert_eq!((head.framing, head.reusable), (Framing::Close, false));
        let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n"[..]);
        assert_eq!(
            read_response_head(&mut buf, true).unwrap().unwrap().framing,
            Framing::Empty
        );
    }
}
