//! Forwarding one request to a container or a peer (spec §3.g, §3.m, §8.2, §8.3): the
//! headers each hop adds or removes, streaming bodies both ways, WebSocket tunnels after a
//! `101`, and the response body that keeps its router slot and deadline until it ends.

use super::upstream::{Returning, Upstream};
use crate::router::{Slot, Target};
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use hyper_util::rt::TokioIo;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Any error a body may carry.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Bodies on both sides of the proxy.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// Header names of the maelstrom contract (spec §2.1), parsed once.
pub mod names {
    use http::header::HeaderName;
    /// Selects a component by full name.
    pub const COMPONENT: HeaderName = HeaderName::from_static("maelstrom-component");
    /// Node ids a request passed through.
    pub const RELAY_PATH: HeaderName = HeaderName::from_static("maelstrom-relay-path");
    /// Absolute deadline, Unix ns.
    pub const DEADLINE: HeaderName = HeaderName::from_static("maelstrom-deadline-nano");
    /// First acceptance, Unix ns.
    pub const START: HeaderName = HeaderName::from_static("maelstrom-start-nano");
    /// The client's own `Authorization` while a relay carries the cluster token.
    pub const ORIGINAL_AUTHORIZATION: HeaderName =
        HeaderName::from_static("maelstrom-original-authorization");
    /// `X-Forwarded-For`.
    pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
    /// `X-Forwarded-Proto`.
    pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
    /// `X-Forwarded-Host`.
    pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
    /// `Keep-Alive`.
    pub const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
    /// `Proxy-Connection`.
    pub const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
}

/// An empty or fixed body.
pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|e| match e {})
        .boxed_unsync()
}

/// A `text/plain` response.
pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<ProxyBody> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// `GET path` on `upstream`, answering the status code (health checks).
pub async fn get_status(
    upstream: &Arc<Upstream>,
    path: &str,
    timeout: Duration,
) -> Result<u16, String> {
    let req = Request::get(path)
        .body(full(Bytes::new()))
        .map_err(|e| e.to_string())?;
    match tokio::time::timeout(timeout, upstream.request(req)).await {
        Err(_) => Err(format!("no answer within {} s", timeout.as_secs())),
        Ok(Err(e)) => Err(error_chain(&e)),
        Ok(Ok((resp, lease))) => {
            let status = resp.status().as_u16();
            // Read the body so the connection goes back to the pool.
            let body = Returning::new(resp.into_body(), lease);
            let _ = tokio::time::timeout(timeout, body.collect()).await;
            Ok(status)
        }
    }
}

/// An error and its causes on one line (hyper's own Display omits the cause).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(cause) = src {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        src = cause.source();
    }
    s
}

/// Hop-by-hop headers (RFC 9110 §7.6.1), parsed once: removing by `&str` would parse each
/// name again on every request.
pub const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    names::KEEP_ALIVE,
    names::PROXY_CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes hop-by-hop headers, and the headers the `Connection` header names; an upgrade
/// keeps `Connection: upgrade` and `Upgrade`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // Most messages carry none: one pass over the names saves nine removals. `Connection`
    // is among them, so no header named by it is missed.
    if !headers.keys().any(|n| HOP_BY_HOP.contains(n)) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    let upgrade = keep_upgrade
        .then(|| headers.get(header::UPGRADE).cloned())
        .flatten();
    for n in named {
        headers.remove(n);
    }
    for n in &HOP_BY_HOP {
        headers.remove(n);
    }
    if let Some(u) = upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, u);
    }
}

/// Whether the request asks for a protocol upgrade (WebSocket).
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
}

/// Whether a response is a server-sent event stream, which has no deadline but an idle
/// timeout (spec §3.m).
pub fn is_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"))
}

/// Everything the hop needs besides the request itself.
pub struct Hop<'a> {
    /// Path and query to send.
    pub path_and_query: &'a str,
    /// Component full name.
    pub component: &'a str,
    /// This node's id (for the relay path).
    pub node_id: &'a str,
    /// The cluster token, sent to peers.
    pub token: Option<&'a str>,
    /// Absolute deadline.
    pub deadline: Instant,
}

/// Sets the upstream URI (origin form: the connection already goes to `target`) and the
/// headers of a hop to `target`.
pub fn prepare<B>(req: &mut Request<B>, target: &Target, hop: &Hop<'_>) -> Result<(), String> {
    *req.uri_mut() = hop
        .path_and_query
        .parse()
        .map_err(|e| format!("bad upstream URI: {e}"))?;
    let keep_upgrade = is_upgrade(req.headers());
    let headers = req.headers_mut();
    strip_hop_by_hop(headers, keep_upgrade);
    if let Target::Remote(_) = target {
        headers.insert(
            names::COMPONENT,
            HeaderValue::from_str(hop.component).map_err(|e| e.to_string())?,
        );
        let path = match headers
            .get(&names::RELAY_PATH)
            .and_then(|v| v.to_str().ok())
        {
            Some(p) if p.len() < 1024 => format!("{p}|{}", hop.node_id),
            Some(p) => p.to_string(),
            None => hop.node_id.to_string(),
        };
        headers.insert(
            names::RELAY_PATH,
            HeaderValue::from_str(&path).map_err(|e| e.to_string())?,
        );
        if let Some(token) = hop.token {
            if let Some(auth) = headers.remove(header::AUTHORIZATION) {
                headers.insert(names::ORIGINAL_AUTHORIZATION, auth);
            }
            headers.insert(
                header::AUTHORIZATION,
                HeaderValue::from_str(&format!("Bearer {token}")).map_err(|e| e.to_string())?,
            );
        }
    }
    Ok(())
}

/// The response body handed to the client: streams the upstream body, keeps the router slot
/// until the body ends or is dropped, and ends the exchange with an error at the deadline —
/// or, for event streams, after `idle` without a frame (spec §3.m).
pub struct Tracked<B> {
    inner: B,
    slot: Option<Slot>,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    idle: Option<(Duration, Pin<Box<tokio::time::Sleep>>)>,
}

impl<B> Tracked<B> {
    /// Wraps `inner` with the exchange's deadline timer.
    pub fn new(inner: B, slot: Slot, deadline: Pin<Box<tokio::time::Sleep>>) -> Self {
        Tracked {
            inner,
            slot: Some(slot),
            deadline: Some(deadline),
            idle: None,
        }
    }

    /// Wraps an event stream: no deadline, but `idle` of silence ends it.
    pub fn streaming(inner: B, slot: Slot, idle: Duration) -> Self {
        Tracked {
            inner,
            slot: Some(slot),
            deadline: None,
            idle: Some((idle, Box::pin(tokio::time::sleep(idle)))),
        }
    }
}

impl<B> Body for Tracked<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(d) = self.deadline.as_mut()
            && d.as_mut().poll(cx).is_ready()
        {
            self.slot = None;
            return Poll::Ready(Some(Err(
                "deadline passed while streaming the response".into()
            )));
        }
        if let Some((_, t)) = self.idle.as_mut()
            && t.as_mut().poll(cx).is_ready()
        {
            self.slot = None;
            return Poll::Ready(Some(Err("the stream was idle too long".into())));
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(None) => {
                self.slot = None;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                self.slot = None;
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(Some(Ok(frame))) => {
                if let Some((d, t)) = self.idle.as_mut() {
                    let d = *d;
                    t.as_mut().reset(tokio::time::Instant::now() + d);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// After a `101`, joins the client's and the upstream's upgraded connections and copies
/// both ways until both sides close or nothing moves for `idle_timeout`; the slot is held
/// for the tunnel's life, so the container counts it as in flight and is not idle.
pub fn tunnel(
    client_upgrade: hyper::upgrade::OnUpgrade,
    upstream: &mut Response<hyper::body::Incoming>,
    slot: Slot,
    idle_timeout: Duration,
) {
    let upstream_upgrade = hyper::upgrade::on(upstream);
    tokio::spawn(async move {
        let _slot = slot;
        let (Ok(client), Ok(server)) = tokio::join!(client_upgrade, upstream_upgrade) else {
            return;
        };
        let (cr, cw) = tokio::io::split(TokioIo::new(client));
        let (sr, sw) = tokio::io::split(TokioIo::new(server));
        let start = Instant::now();
        let last = std::sync::atomic::AtomicU64::new(0);
        let both = async { tokio::join!(pump(cr, sw, &last, start), pump(sr, cw, &last, start)) };
        let watchdog = async {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let idle_ms = start.elapsed().as_millis() as u64
                    - last.load(std::sync::atomic::Ordering::Relaxed);
                if idle_ms > idle_timeout.as_millis() as u64 {
                    return;
                }
            }
        };
        tokio::select! {
            _ = both => {}
            _ = watchdog => {}
        }
    });
}

/// Copies one direction of a tunnel, noting the time of the last byte moved.
async fn pump<R, W>(
    mut r: R,
    mut w: W,
    last: &std::sync::atomic::AtomicU64,
    start: Instant,
) -> std::io::Result<()>
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            return w.shutdown().await;
        }
        w.write_all(&buf[..n]).await?;
        last.store(
            start.elapsed().as_millis() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_go_and_upgrades_keep_theirs() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-keep"));
        let mut u = HeaderMap::new();
        u.insert("connection", HeaderValue::from_static("Upgrade"));
        u.insert("upgrade", HeaderValue::from_static("websocket"));
        assert!(is_upgrade(&u));
        strip_hop_by_hop(&mut u, true);
        assert_eq!(u.get("upgrade").unwrap(), "websocket");
        assert_eq!(u.get("connection").unwrap(), "upgrade");
    }
}
