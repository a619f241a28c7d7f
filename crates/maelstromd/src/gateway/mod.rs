//! The HTTP front of a node: the public port, the private port and the container gateway
//! (spec §7.1, §7.2), and the request path they share — resolve the component, compute the
//! deadline, take a router slot, forward, stream the answer back (spec §8).
//!
//! - [`resolve`]: event-source matching.
//! - [`proxy`]: what a hop does to headers and bodies.
//! - [`upstream`]: pooled connections to containers and peers.

pub mod proxy;
pub mod resolve;
pub mod upstream;

use crate::node::Node;
use crate::router::{Admission, Rejected, Target};
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use proxy::{Hop, ProxyBody, Tracked, names, text};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use upstream::Returning;

/// Which listener a request came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    /// Port 8008: clients.
    Public,
    /// Port 8374: peers, maelctl, component calls by header; also in-process cron requests.
    Private,
    /// Port 8375 on the Docker bridge: containers calling other components.
    Gateway,
}

impl Listener {
    /// The `listener` label of the request metrics.
    pub fn label(self) -> &'static str {
        match self {
            Listener::Public => "public",
            Listener::Private => "private",
            Listener::Gateway => "gateway",
        }
    }
}

/// An accepted connection on its way to a worker.
struct Accepted {
    stream: std::net::TcpStream,
    peer: SocketAddr,
    kind: Listener,
}

/// The proxy workers: one thread each, with its own single-threaded runtime, serving the
/// connections handed to it. Like nginx's worker processes, a connection and the pooled
/// upstream connections it uses stay on one thread, so a proxied request never wakes another
/// thread (on two cores that halves the cost of a request; see scripts/bench-maelstromd).
pub struct Workers {
    senders: Vec<tokio::sync::mpsc::UnboundedSender<Accepted>>,
    next: AtomicUsize,
    /// Open client connections on all listeners.
    pub open: Arc<AtomicUsize>,
}

impl Workers {
    /// Starts `n` worker threads serving for `node`.
    pub fn start(node: &Arc<Node>, n: usize) -> Workers {
        let open = Arc::new(AtomicUsize::new(0));
        let mut senders = Vec::new();
        for index in 0..n.max(1) {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Accepted>();
            senders.push(tx);
            let node = node.clone();
            let open = open.clone();
            std::thread::Builder::new()
                .name(format!("maelstromd-proxy-{index}"))
                .spawn(move || {
                    upstream::set_worker(index + 1);
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("a proxy worker runtime");
                    rt.block_on(async move {
                        let mut builder = hyper::server::conn::http1::Builder::new();
                        builder
                            .timer(TokioTimer::new())
                            .header_read_timeout(node.cfg.http_read_timeout)
                            .keep_alive(true);
                        loop {
                            let accepted = tokio::select! {
                                a = rx.recv() => a,
                                _ = node.stop_accepting.cancelled() => None,
                            };
                            let Some(a) = accepted else { break };
                            serve_connection(&node, &builder, a, &open);
                        }
                        // Let connections finish their exchange before the runtime goes.
                        while open.load(Ordering::SeqCst) > 0 {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    });
                })
                .expect("a proxy worker thread");
        }
        Workers {
            senders,
            next: AtomicUsize::new(0),
            open,
        }
    }

    fn dispatch(&self, a: Accepted) {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.senders.len();
        let _ = self.senders[i].send(a);
    }
}

fn serve_connection(
    node: &Arc<Node>,
    builder: &hyper::server::conn::http1::Builder,
    a: Accepted,
    open: &Arc<AtomicUsize>,
) {
    let Ok(stream) = tokio::net::TcpStream::from_std(a.stream) else {
        return;
    };
    let (kind, peer) = (a.kind, a.peer);
    let stop = node.stop_accepting.clone();
    let svc_node = node.clone();
    let svc = hyper::service::service_fn(move |req| handle(svc_node.clone(), req, kind, peer));
    let conn = builder
        .serve_connection(TokioIo::new(stream), svc)
        .with_upgrades();
    let open = open.clone();
    open.fetch_add(1, Ordering::SeqCst);
    tokio::spawn(async move {
        let mut conn = std::pin::pin!(conn);
        tokio::select! {
            _ = conn.as_mut() => {}
            _ = stop.cancelled() => {
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
            }
        }
        open.fetch_sub(1, Ordering::SeqCst);
    });
}

/// Accepts connections on one listener until the node stops accepting, handing each to a
/// proxy worker.
pub async fn serve(node: Arc<Node>, listener: TcpListener, kind: Listener, workers: Arc<Workers>) {
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(listener = kind.label(), error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = node.stop_accepting.cancelled() => return,
        };
        let _ = stream.set_nodelay(true);
        match stream.into_std() {
            Ok(stream) => workers.dispatch(Accepted { stream, peer, kind }),
            Err(e) => tracing::warn!(error = %e, "cannot hand a connection to a worker"),
        }
    }
}

async fn handle(
    node: Arc<Node>,
    req: Request<Incoming>,
    kind: Listener,
    peer: SocketAddr,
) -> Result<Response<ProxyBody>, Infallible> {
    let mut req = req.map(|b| b.map_err(Into::into).boxed_unsync());
    let is_health = req.method() == Method::GET
        && req.uri().path_and_query().map(|p| p.as_str()) == Some("/_mael_health_check");
    if is_health {
        // While draining, load balancers and peers stop sending here (spec §15 step 1).
        return Ok(if node.draining() {
            text(StatusCode::SERVICE_UNAVAILABLE, "Draining")
        } else {
            text(StatusCode::OK, "OK")
        });
    }
    match kind {
        Listener::Public => strip_maelstrom_headers(&mut req),
        Listener::Private => {
            if let Some(token) = &node.cfg.private_token {
                if !crate::api::authorized(req.headers(), token) {
                    return Ok(crate::api::unauthorized());
                }
                // The token is ours; the client's own Authorization travels in its place.
                let headers = req.headers_mut();
                headers.remove(header::AUTHORIZATION);
                if let Some(orig) = headers.remove(&names::ORIGINAL_AUTHORIZATION) {
                    headers.insert(header::AUTHORIZATION, orig);
                }
            }
            if crate::api::is_api_path(req.uri().path()) {
                return Ok(crate::api::serve(&node, req).await);
            }
        }
        Listener::Gateway => {}
    }
    Ok(proxy_request(&node, req, kind, peer.ip()).await)
}

/// Removes every inbound `maelstrom-*` header (spec §3.g).
fn strip_maelstrom_headers(req: &mut Request<ProxyBody>) {
    let names: Vec<HeaderName> = req
        .headers()
        .keys()
        .filter(|n| n.as_str().starts_with("maelstrom-"))
        .cloned()
        .collect();
    for n in names {
        req.headers_mut().remove(n);
    }
}

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

fn header_str<'a>(req: &'a Request<ProxyBody>, name: &HeaderName) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

fn set_header(req: &mut Request<ProxyBody>, name: HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        req.headers_mut().insert(name, v);
    }
}

/// Serves a request made inside this node (cron): through the private gateway path, with
/// cold start and relaying, and without client cancellation.
pub async fn internal(node: &Arc<Node>, req: Request<ProxyBody>) -> Response<ProxyBody> {
    proxy_request(
        node,
        req,
        Listener::Private,
        std::net::Ipv4Addr::LOCALHOST.into(),
    )
    .await
}

/// The request path: resolve, admit, forward, answer (spec §8).
pub async fn proxy_request(
    node: &Arc<Node>,
    mut req: Request<ProxyBody>,
    kind: Listener,
    client_ip: std::net::IpAddr,
) -> Response<ProxyBody> {
    let began = Instant::now();
    let trusted = kind != Listener::Public;

    // Which component.
    let by_header = trusted
        .then(|| header_str(&req, &names::COMPONENT).map(|v| v.trim().to_ascii_lowercase()))
        .flatten()
        .filter(|v| !v.is_empty());
    let (name, route) = match by_header {
        Some(name) => (name, None),
        None => {
            let host = header_str(&req, &header::HOST)
                .map(str::to_string)
                .or_else(|| req.uri().host().map(str::to_string))
                .unwrap_or_default();
            let host = resolve::host_without_port(&host);
            let path = resolve::decode_path(req.uri().path());
            let routes = match node.catalog.routes(began).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the routes");
                    return text(StatusCode::INTERNAL_SERVER_ERROR, "Server Error");
                }
            };
            match resolve::resolve(&routes, host, &path) {
                Some(r) => (r.component.clone(), Some(r.clone())),
                None => {
                    node.metrics.request("", 404, kind, began.elapsed());
                    return text(StatusCode::NOT_FOUND, "No component matches the request");
                }
            }
        }
    };
    let component = match node.catalog.component_at(&name, began).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            node.metrics.request("", 404, kind, began.elapsed());
            return text(StatusCode::NOT_FOUND, "No component matches the request");
        }
        Err(e) => {
            tracing::error!(component = %name, error = %e, "cannot read the component");
            node.metrics.request("", 500, kind, began.elapsed());
            return text(StatusCode::INTERNAL_SERVER_ERROR, "Server Error");
        }
    };
    let timeout_text = || format!("gateway: Timeout proxying component: {name}");

    // Deadline: honoured from the header on trusted listeners, else from maxdurationseconds.
    let now = now_ns();
    let deadline_ns = trusted
        .then(|| header_str(&req, &names::DEADLINE).and_then(|v| v.trim().parse::<i128>().ok()))
        .flatten()
        .unwrap_or(now + component.max_duration_seconds() as i128 * 1_000_000_000);
    let remaining = Duration::from_nanos((deadline_ns - now).max(0) as u64);
    let deadline = began + remaining;
    set_header(&mut req, names::DEADLINE, &deadline_ns.to_string());
    if header_str(&req, &names::START).is_none() {
        set_header(&mut req, names::START, &now.to_string());
    }

    // Relayed requests prefer local containers, and never go back along their path.
    let relay_path: Option<Vec<String>> = trusted
        .then(|| header_str(&req, &names::RELAY_PATH))
        .flatten()
        .map(|p| p.split('|').map(str::to_string).collect());
    let admission = match &relay_path {
        Some(path) => Admission {
            local_only_until: Some(
                Instant::now()
                    + Duration::from_secs((component.max_duration_seconds() / 10).max(1)),
            ),
            exclude: path.clone(),
        },
        None => Admission::default(),
    };
    if relay_path.is_none() {
        forwarded_headers(node, &mut req, client_ip);
    }
    let path_and_query = match &route {
        Some(r) => resolve::forwarded_path(r, req.uri().path(), req.uri().query()),
        None => req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into()),
    };

    let router = node.router(&name).await;
    let client_upgrade = proxy::is_upgrade(req.headers()).then(|| hyper::upgrade::on(&mut req));
    // A bodiless request relayed to a peer can be sent again if the peer turns out dead
    // before answering; its head is kept for that (only when relaying).
    let bodiless = req.body().size_hint().exact() == Some(0);
    let mut replay: Option<(Method, http::HeaderMap, http::Version)> = None;
    let mut req = Some(req);
    let mut attempts = 0;
    // One timer for the whole exchange: polled only when something has to wait, and handed
    // on to the response body.
    let mut timer = Box::pin(tokio::time::sleep_until(deadline.into()));
    loop {
        attempts += 1;
        let admitted = tokio::select! {
            biased;
            r = router.acquire(admission.clone()) => Ok(r),
            _ = &mut timer => Err(()),
        };
        let slot = match admitted {
            Err(_) => {
                router.metrics.request(504, kind, began.elapsed());
                return text(StatusCode::GATEWAY_TIMEOUT, timeout_text());
            }
            Ok(Err(Rejected::QueueFull { retry_after })) => {
                node.metrics.queue_rejected(&name);
                router.metrics.request(503, kind, began.elapsed());
                let mut r = text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("Component queue full: {name}"),
                );
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
                return r;
            }
            Ok(Err(Rejected::Failed(msg))) => {
                router.metrics.request(503, kind, began.elapsed());
                return text(StatusCode::SERVICE_UNAVAILABLE, msg);
            }
            Ok(Ok(slot)) => slot,
        };
        router.metrics.queue_wait(began.elapsed());
        let mut upstream = match req.take() {
            Some(r) => r,
            None => {
                let (method, headers, version) =
                    replay.clone().expect("replay only for bodiless requests");
                let mut r = Request::new(proxy::full(bytes::Bytes::new()));
                *r.method_mut() = method;
                *r.headers_mut() = headers;
                *r.version_mut() = version;
                r
            }
        };
        if bodiless && replay.is_none() && matches!(slot.target(), Target::Remote(_)) {
            replay = Some((
                upstream.method().clone(),
                upstream.headers().clone(),
                upstream.version(),
            ));
        }
        let hop = Hop {
            path_and_query: &path_and_query,
            component: &name,
            node_id: &node.id,
            token: node.cfg.private_token.as_deref(),
            deadline,
        };
        if let Err(e) = proxy::prepare(&mut upstream, slot.target(), &hop) {
            return text(StatusCode::BAD_REQUEST, e);
        }
        let (to, remote) = match slot.target() {
            Target::Local(c) => (c.upstream.clone(), None),
            Target::Remote(p) => {
                node.metrics.relayed(&name, &p.node_id);
                (p.proxy.clone(), Some(p.node_id.clone()))
            }
        };
        let result = tokio::select! {
            biased;
            r = to.request(upstream) => Ok(r),
            _ = &mut timer => Err(()),
        };
        let (mut resp, lease) = match result {
            Err(_) => {
                router.metrics.request(504, kind, began.elapsed());
                return text(StatusCode::GATEWAY_TIMEOUT, timeout_text());
            }
            Ok(Err(e)) => {
                let detail = proxy::error_chain(&e);
                if let Some(peer) = remote {
                    // The peer may be gone: stop sending it traffic now, check it, and send
                    // this request elsewhere when it never left here.
                    router.remove_remote(&peer);
                    drop(slot);
                    let (n, p) = (node.clone(), peer.clone());
                    tokio::spawn(async move { crate::cluster::peer_failed(&n, &p).await });
                    if e.is_connect()
                        && replay.is_some()
                        && attempts < 3
                        && Instant::now() < deadline
                    {
                        tracing::warn!(component = %name, peer = %peer, error = %detail, "relay failed; sending the request elsewhere");
                        continue;
                    }
                }
                tracing::warn!(component = %name, error = %detail, "proxying failed");
                router.metrics.request(502, kind, began.elapsed());
                return text(StatusCode::BAD_GATEWAY, format!("Bad Gateway: {detail}"));
            }
            Ok(Ok(resp)) => resp,
        };
        let status = resp.status();
        router
            .metrics
            .request(status.as_u16(), kind, began.elapsed());
        tracing::info!(target: "maelstromd::access", component = %name, status = status.as_u16(),
            ms = began.elapsed().as_millis() as u64, via = remote_label(slot.target()), "request");
        if status == StatusCode::SWITCHING_PROTOCOLS
            && let Some(up) = client_upgrade
        {
            // The connection is the tunnel's now, never to return to the pool.
            drop(lease);
            proxy::tunnel(up, &mut resp, slot, node.cfg.http_idle_timeout);
            let (parts, _) = resp.into_parts();
            return Response::from_parts(parts, proxy::full(bytes::Bytes::new()));
        }
        proxy::strip_hop_by_hop(resp.headers_mut(), false);
        let streaming = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if streaming {
            let idle = node.cfg.http_idle_timeout;
            return resp
                .map(|b| Tracked::streaming(Returning::new(b, lease), slot, idle).boxed_unsync());
        }
        return resp.map(|b| Tracked::new(Returning::new(b, lease), slot, timer).boxed_unsync());
    }
}

fn remote_label(t: &Target) -> &str {
    match t {
        Target::Local(_) => "local",
        Target::Remote(p) => &p.node_id,
    }
}

/// `X-Forwarded-For` gets the client's address appended; `X-Forwarded-Proto` and
/// `X-Forwarded-Host` are set unless trusted from a load balancer (spec §3.g). Only the first
/// hop does this.
fn forwarded_headers(node: &Node, req: &mut Request<ProxyBody>, client_ip: std::net::IpAddr) {
    let headers = req.headers_mut();
    let xff = match headers
        .get(&names::X_FORWARDED_FOR)
        .and_then(|v| v.to_str().ok())
    {
        Some(prev) if !prev.trim().is_empty() => format!("{prev}, {client_ip}"),
        _ => client_ip.to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        headers.insert(names::X_FORWARDED_FOR, v);
    }
    let trust = node.cfg.trust_forwarded_headers;
    if !(trust && headers.contains_key(&names::X_FORWARDED_PROTO)) {
        headers.insert(names::X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    }
    if !(trust && headers.contains_key(&names::X_FORWARDED_HOST))
        && let Some(host) = headers.get(header::HOST).cloned()
    {
        headers.insert(names::X_FORWARDED_HOST, host);
    }
}
