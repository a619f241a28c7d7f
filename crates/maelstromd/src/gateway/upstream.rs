//! Keep-alive HTTP/1.1 connections to one upstream — a container or a peer node — with an
//! idle list per proxy worker, so a connection is only ever driven by the thread that uses
//! it (see [`super::Workers`]).
//!
//! Written on hyper's `client::conn::http1` rather than hyper-util's legacy `Client`: that
//! client spawns a task, clones a pool key and takes a shared lock on every request just to
//! get the connection back into its pool, which showed in the gateway's profile
//! (scripts/bench-maelstromd). Here a connection goes back when its response body ends.

use super::proxy::{BoxError, ProxyBody};
use bytes::Bytes;
use crossbeam_utils::CachePadded;
use http::header::{self, HeaderValue};
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// An idle connection is closed after this long unused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(20);
/// Connecting gives up after this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

thread_local! {
    /// Which idle list of an [`Upstream`] this thread uses: 0 outside the proxy workers.
    static WORKER: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// How many proxy workers run (set once at start).
static WORKERS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();

/// The proxy worker this thread is (1-based), or 0 outside the workers.
pub fn worker() -> usize {
    WORKER.with(|w| w.get())
}

/// Marks the current thread as proxy worker `index` (1-based).
pub fn set_worker(index: usize) {
    WORKER.with(|w| w.set(index));
}

/// Sets the number of proxy workers; upstreams made afterwards keep one idle list per worker.
pub fn set_worker_count(n: usize) {
    let _ = WORKERS.set(n);
}

/// Idle lists, one per thread that proxies; each entry with the time it went idle.
type PerWorker<T> = Vec<CachePadded<Mutex<VecDeque<(T, Instant)>>>>;

/// This thread's list among per-worker `lists`.
fn lock<T>(lists: &PerWorker<T>) -> std::sync::MutexGuard<'_, VecDeque<(T, Instant)>> {
    let i = worker();
    lists
        .get(i)
        .unwrap_or(&lists[0])
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// The newest entry of this thread's list that has not idled too long and that `usable`
/// accepts; the ones passed over are dropped.
fn take_idle<T>(lists: &PerWorker<T>, usable: impl Fn(&T) -> bool) -> Option<T> {
    let mut idle = lock(lists);
    while let Some((item, since)) = idle.pop_back() {
        if since.elapsed() < IDLE_TIMEOUT && usable(&item) {
            return Some(item);
        }
    }
    None
}

/// Adds `item` to this thread's list, dropping the oldest entries that idled too long or
/// would make the list longer than `max`.
fn keep_idle<T>(lists: &PerWorker<T>, item: T, max: usize) {
    let mut idle = lock(lists);
    while idle
        .front()
        .is_some_and(|(_, since)| since.elapsed() >= IDLE_TIMEOUT || idle.len() >= max)
    {
        idle.pop_front();
    }
    idle.push_back((item, Instant::now()));
}

/// One upstream address and its pooled connections.
pub struct Upstream {
    /// `host:port`, as connected to.
    authority: String,
    /// Sent as `Host` when a request has none (health checks, internal requests).
    host: HeaderValue,
    max_idle: usize,
    /// Index 0 for threads outside the workers, then one per worker; padded, so that two
    /// workers never write to the same cache line.
    idle: PerWorker<SendRequest<ProxyBody>>,
    /// Plain sockets for [`super::forward`], kept the same way.
    idle_raw: PerWorker<TcpStream>,
}

/// Why a request did not get a response head.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No connection could be made.
    #[error("cannot connect to {authority}")]
    Connect {
        /// The address tried.
        authority: String,
        /// What connecting said.
        #[source]
        source: std::io::Error,
    },
    /// The exchange failed after connecting.
    #[error("the exchange with {authority} failed")]
    Http {
        /// The upstream.
        authority: String,
        /// What hyper said.
        #[source]
        source: hyper::Error,
    },
}

impl UpstreamError {
    /// Whether the request never reached the upstream because no connection could be made.
    pub fn is_connect(&self) -> bool {
        matches!(self, UpstreamError::Connect { .. })
    }
}

impl Upstream {
    /// An upstream at `base_url` (`http://host:port`), keeping up to `max_idle` idle
    /// connections per worker.
    pub fn new(base_url: &str, max_idle: usize) -> Upstream {
        let authority = base_url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let host = HeaderValue::from_str(&authority)
            .unwrap_or_else(|_| HeaderValue::from_static("localhost"));
        let lists = WORKERS.get().copied().unwrap_or(0) + 1;
        Upstream {
            authority,
            host,
            max_idle: max_idle.max(1),
            idle: (0..lists).map(|_| CachePadded::default()).collect(),
            idle_raw: (0..lists).map(|_| CachePadded::default()).collect(),
        }
    }

    /// The most recently used idle socket of this thread that has not been closed by the
    /// upstream.
    pub fn checkout_raw(&self) -> Option<TcpStream> {
        take_idle(&self.idle_raw, |s| {
            // Readiness is cached by the reactor, so an idle socket nothing arrived on costs
            // no system call here; one that got its FIN (or stray bytes) is dropped.
            let mut probe = [0u8; 1];
            matches!(s.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        })
    }

    /// Keeps a socket whose exchange ended cleanly for the next request of this thread.
    pub fn checkin_raw(&self, s: TcpStream) {
        keep_idle(&self.idle_raw, s, self.max_idle);
    }

    /// A new socket to the upstream.
    pub async fn connect_raw(&self) -> Result<TcpStream, UpstreamError> {
        let connect_err = |source| UpstreamError::Connect {
            authority: self.authority.clone(),
            source,
        };
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&self.authority))
            .await
            .map_err(|_| connect_err(std::io::ErrorKind::TimedOut.into()))?
            .map_err(connect_err)?;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    /// Sent as `Host` when a request has none.
    pub fn host(&self) -> &HeaderValue {
        &self.host
    }

    /// The most recently used open idle connection of this thread, if any.
    fn checkout(&self) -> Option<SendRequest<ProxyBody>> {
        take_idle(&self.idle, |sender| !sender.is_closed())
    }

    fn checkin(&self, sender: SendRequest<ProxyBody>) {
        if !sender.is_closed() {
            keep_idle(&self.idle, sender, self.max_idle);
        }
    }

    async fn connect(&self) -> Result<SendRequest<ProxyBody>, UpstreamError> {
        let stream = self.connect_raw().await?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|source| UpstreamError::Http {
                authority: self.authority.clone(),
                source,
            })?;
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        Ok(sender)
    }

    /// Sends `req` (its URI in origin form, `/path?query`) on a pooled connection, or a new
    /// one. A pooled connection found closed before the request was written is replaced,
    /// and the request sent again. The connection goes back to the pool when the returned
    /// [`Lease`] is handed back with [`Lease::release`] or its body ends.
    pub async fn request(
        self: &Arc<Self>,
        mut req: Request<ProxyBody>,
    ) -> Result<(Response<Incoming>, Lease), UpstreamError> {
        if !req.headers().contains_key(header::HOST) {
            req.headers_mut().insert(header::HOST, self.host.clone());
        }
        loop {
            let (mut sender, pooled) = match self.checkout() {
                Some(s) => (s, true),
                None => (self.connect().await?, false),
            };
            if sender.ready().await.is_err() && pooled {
                continue;
            }
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    let lease = Lease {
                        upstream: self.clone(),
                        sender: Some(sender),
                    };
                    return Ok((resp, lease));
                }
                Err(mut e) => match e.take_message() {
                    Some(back) if pooled => req = back,
                    _ => {
                        return Err(UpstreamError::Http {
                            authority: self.authority.clone(),
                            source: e.into_error(),
                        });
                    }
                },
            }
        }
    }
}

/// The connection a response came on, until its body has been read.
pub struct Lease {
    upstream: Arc<Upstream>,
    sender: Option<SendRequest<ProxyBody>>,
}

impl Lease {
    /// Gives the connection back to the pool: its exchange is over.
    pub fn release(mut self) {
        if let Some(s) = self.sender.take() {
            self.upstream.checkin(s);
        }
    }
}

/// A response body that gives its connection back to the pool when it ends. Dropped before
/// the end, the connection is dropped with it (hyper closes a connection whose response was
/// not read).
pub struct Returning {
    inner: Incoming,
    lease: Option<Lease>,
}

impl Returning {
    /// `inner` read from the connection `lease` holds.
    pub fn new(inner: Incoming, lease: Lease) -> Self {
        Returning {
            inner,
            lease: Some(lease),
        }
    }
}

impl Drop for Returning {
    fn drop(&mut self) {
        // A server stops polling a body that says it has ended (an empty one, or the last
        // frame of a sized one), so the end is often seen here rather than in poll_frame.
        if self.inner.is_end_stream()
            && let Some(lease) = self.lease.take()
        {
            lease.release();
        }
    }
}

impl Body for Returning {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(None) => {
                if let Some(lease) = self.lease.take() {
                    lease.release();
                }
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                self.lease = None;
                Poll::Ready(Some(Err(e.into())))
            }
            other => other.map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::proxy::full;
    use http_body_util::BodyExt;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A loopback server answering `status` with `body`; counts the connections it accepts.
    async fn server(
        status: u16,
        body: &'static str,
        keep_alive: bool,
    ) -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                let svc = hyper::service::service_fn(move |_req| async move {
                    let mut r = Response::new(full(body));
                    *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
                    Ok::<_, std::convert::Infallible>(r)
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .keep_alive(keep_alive)
                        .serve_connection(TokioIo::new(stream), svc),
                );
            }
        });
        (url, accepted)
    }

    async fn get(up: &Arc<Upstream>) -> (u16, Bytes) {
        let (resp, lease) = up
            .request(Request::get("/").body(full(Bytes::new())).unwrap())
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let mut body = Returning::new(resp.into_body(), lease);
        // Read as hyper's server does: no further poll once the body says it has ended.
        let mut data = Vec::new();
        while !body.is_end_stream() {
            match body.frame().await {
                Some(frame) => data.extend_from_slice(&frame.unwrap().into_data().unwrap()),
                None => break,
            }
        }
        (status, Bytes::from(data))
    }

    #[tokio::test]
    async fn one_connection_serves_sequential_requests_with_and_without_bodies() {
        for (status, body) in [(200, "hello"), (204, "")] {
            let (url, accepted) = server(status, body, true).await;
            let up = Arc::new(Upstream::new(&url, 4));
            for _ in 0..5 {
                assert_eq!(get(&up).await, (status, Bytes::from(body)));
            }
            assert_eq!(accepted.load(Ordering::SeqCst), 1, "HTTP {status}");
        }
    }

    #[tokio::test]
    async fn a_connection_the_server_closes_is_replaced() {
        let (url, accepted) = server(200, "once", false).await;
        let up = Arc::new(Upstream::new(&url, 4));
        for _ in 0..5 {
            assert_eq!(get(&up).await, (200, Bytes::from("once")));
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 5);
    }

    #[tokio::test]
    async fn nothing_listening_is_a_connect_error() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let up = Arc::new(Upstream::new(&format!("http://127.0.0.1:{port}"), 4));
        let Err(err) = up
            .request(Request::get("/").body(full(Bytes::new())).unwrap())
            .await
        else {
            panic!("a request to a closed port was answered");
        };
        assert!(err.is_connect(), "{err}");
        assert!(
            err.to_string().contains(&format!("127.0.0.1:{port}")),
            "{err}"
        );
    }
}
