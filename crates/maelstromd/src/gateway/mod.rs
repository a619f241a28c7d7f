//! The HTTP front of a node: the public port, the private port and the container gateway
//! (spec §7.1, §7.2), and the request path they share — resolve the component, compute the
//! deadline, take a router slot, forward, stream the answer back (spec §8).
//!
//! - [`affinity`]: which CPU a proxy worker runs on and which worker serves a connection.
//! - [`resolve`]: event-source matching.
//! - [`proxy`]: what a hop does to headers and bodies.
//! - [`upstream`]: pooled connections to containers and peers.

pub mod affinity;
mod forward;
pub mod proxy;
pub mod resolve;
pub mod upstream;

use crate::node::Node;
use crate::router::{Admission, Rejected, Slot, Target};
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
    /// Counted from the moment its worker is chosen, on the way to it included.
    counted: Counted,
}

/// A client connection, counted in [`Workers::open`] and in its worker's load until dropped,
/// wherever that happens (served to the end, or lost in a closed channel).
struct Counted {
    workers: Arc<Workers>,
    worker: usize,
}

impl Counted {
    fn new(workers: &Arc<Workers>, worker: usize) -> Counted {
        // Counted before it reaches the worker, so that the next choice sees it.
        workers.open.fetch_add(1, Ordering::SeqCst);
        workers.load[worker].fetch_add(1, Ordering::Relaxed);
        Counted {
            workers: workers.clone(),
            worker,
        }
    }

    fn moved_to(mut self, worker: usize) -> Counted {
        if worker == self.worker {
            return self;
        }
        self.workers.load[self.worker].fetch_sub(1, Ordering::Relaxed);
        self.workers.load[worker].fetch_add(1, Ordering::Relaxed);
        self.worker = worker;
        self
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.workers.load[self.worker].fetch_sub(1, Ordering::Relaxed);
        self.workers.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The proxy workers: one thread each, with its own single-threaded runtime, serving the
/// connections handed to it. Like nginx's worker processes, a connection and the pooled
/// upstream connections it uses stay on one thread, so a proxied request never wakes another
/// thread (on two cores that halves the cost of a request; see scripts/bench-maelstromd).
/// With one worker per CPU, each is pinned to its CPU and a connection is served by the
/// worker on the CPU its packets arrive on ([`affinity`]), within a bound on imbalance.
pub struct Workers {
    senders: Vec<tokio::sync::mpsc::UnboundedSender<Accepted>>,
    next: AtomicUsize,
    cpus: Option<affinity::CpuMap>,
    /// Cleared when a worker cannot be pinned: its CPU's connections would not be served
    /// there.
    steering: std::sync::atomic::AtomicBool,
    /// Client connections per worker.
    load: Vec<AtomicUsize>,
    /// Open client connections on all listeners.
    pub open: AtomicUsize,
}

impl Workers {
    /// Starts `n` worker threads serving for `node`.
    pub fn start(node: &Arc<Node>, n: usize) -> Arc<Workers> {
        let n = n.max(1);
        let cpus = if node.cfg.proxy_cpu_affinity {
            affinity::CpuMap::for_workers(n)
        } else {
            None
        };
        match &cpus {
            Some(_) => tracing::info!(workers = n, "proxy workers pinned one per CPU"),
            None if node.cfg.proxy_cpu_affinity => tracing::info!(
                workers = n,
                "proxy workers not pinned: one CPU, or fewer workers than CPUs (a CPU quota)"
            ),
            None => tracing::info!(
                workers = n,
                "proxy workers not pinned (MAEL_PROXY_CPU_AFFINITY=false)"
            ),
        }
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..n)
            .map(|_| tokio::sync::mpsc::unbounded_channel::<Accepted>())
            .unzip();
        let workers = Arc::new(Workers {
            senders,
            next: AtomicUsize::new(0),
            steering: std::sync::atomic::AtomicBool::new(cpus.is_some()),
            cpus,
            load: (0..n).map(|_| AtomicUsize::new(0)).collect(),
            open: AtomicUsize::new(0),
        });
        for (index, mut rx) in receivers.into_iter().enumerate() {
            let node = node.clone();
            let workers = workers.clone();
            std::thread::Builder::new()
                .name(format!("maelstromd-proxy-{index}"))
                .spawn(move || {
                    upstream::set_worker(index + 1);
                    let mut rt = tokio::runtime::Builder::new_current_thread();
                    rt.enable_all();
                    if let Some(cpus) = &workers.cpus {
                        if let Err(e) = cpus.pin(index) {
                            tracing::warn!(worker = index, error = %e, "cannot pin a proxy worker to its CPU; connections are not steered");
                            workers.steering.store(false, Ordering::Relaxed);
                        }
                        // Blocking threads (DNS lookups) would inherit the worker's one CPU.
                        rt.on_thread_start(affinity::unpin_thread);
                    }
                    let rt = rt.build().expect("a proxy worker runtime");
                    rt.block_on(async move {
                        // The worker's own token: connections wait on it without touching
                        // the other workers' (a shared token is a shared lock).
                        let stop = node.stop_accepting.child_token();
                        let mut builder = hyper::server::conn::http1::Builder::new();
                        builder
                            .timer(TokioTimer::new())
                            .header_read_timeout(node.cfg.http_read_timeout)
                            .keep_alive(true);
                        loop {
                            let accepted = tokio::select! {
                                biased;
                                a = rx.recv() => a,
                                _ = node.stop_accepting.cancelled() => None,
                            };
                            let Some(a) = accepted else { break };
                            serve_connection(&node, &builder, a, index, &stop);
                        }
                        // Connections already handed over (moved ones are idle between
                        // requests) are still served: an idle one closes at once, one whose
                        // request is in gets its answer with `Connection: close`. `recv`
                        // also waits for a hand-over under way when the channel closes.
                        rx.close();
                        while let Some(a) = rx.recv().await {
                            serve_connection(&node, &builder, a, index, &stop);
                        }
                        // Let connections finish their exchange before the runtime goes.
                        while workers.open.load(Ordering::SeqCst) > 0 {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    });
                })
                .expect("a proxy worker thread");
        }
        workers
    }

    /// Hands a new connection to the worker on its CPU, or to the next in turn.
    fn dispatch(self: &Arc<Self>, stream: std::net::TcpStream, peer: SocketAddr, kind: Listener) {
        let i = match self.steering() {
            Some(cpus) => self.choose(cpus.worker_for(&stream)),
            None => self.next.fetch_add(1, Ordering::Relaxed) % self.senders.len(),
        };
        let counted = Counted::new(self, i);
        let _ = self.senders[i].send(Accepted {
            stream,
            peer,
            kind,
            counted,
        });
    }

    /// The CPU map, while connections are steered by it.
    fn steering(&self) -> Option<&affinity::CpuMap> {
        self.cpus
            .as_ref()
            .filter(|_| self.steering.load(Ordering::Relaxed))
    }

    /// The worker a connection goes to when its packets arrive on `wanted`'s CPU: that one,
    /// unless it already serves half again its share of the connections (all packets may
    /// arrive on one CPU: a single-queue network card, a single-threaded client), else the
    /// least loaded.
    fn choose(&self, wanted: Option<usize>) -> usize {
        if let Some(w) = wanted
            && self.has_room(w, true)
        {
            return w;
        }
        (0..self.load.len())
            .min_by_key(|&w| self.load[w].load(Ordering::Relaxed))
            .unwrap_or(0)
    }

    /// Whether one more connection leaves `worker` within half again its share: `new`
    /// for a connection not counted yet, else one moving from another worker.
    pub(super) fn has_room(&self, worker: usize, new: bool) -> bool {
        let n = self.load.len();
        let total: usize = self.load.iter().map(|l| l.load(Ordering::Relaxed)).sum();
        let after = total + usize::from(new);
        (self.load[worker].load(Ordering::Relaxed) + 1) * 2 * n <= 3 * after.max(n)
    }

    /// The worker that `socket`, served by `from`, should move to, if any.
    fn move_target(&self, socket: &tokio::net::TcpStream, from: usize) -> Option<usize> {
        self.steering()?
            .worker_for(socket)
            .filter(|&w| w != from && self.has_room(w, false))
    }
}

fn serve_connection(
    node: &Arc<Node>,
    builder: &hyper::server::conn::http1::Builder,
    a: Accepted,
    index: usize,
    stop: &tokio_util::sync::CancellationToken,
) {
    let counted = a.counted.moved_to(index);
    let Ok(stream) = tokio::net::TcpStream::from_std(a.stream) else {
        return;
    };
    let (kind, peer) = (a.kind, a.peer);
    let client = Client::new(peer.ip());
    let node = node.clone();
    let builder = builder.clone();
    let stop = stop.clone();
    tokio::spawn(async move {
        let home = counted.workers.cpus.is_some().then(|| forward::Home {
            workers: &counted.workers,
            worker: index,
        });
        // Plain requests take the hand-written path; the private port (the API, relays with
        // their token) and whatever that path does not serve take hyper's.
        let io = match kind {
            Listener::Private => forward::Rewind::new(stream, bytes::Bytes::new()),
            Listener::Public | Listener::Gateway => {
                match forward::serve(&node, stream, kind, &client, &stop, home).await {
                    forward::End::Closed => return,
                    forward::End::Moved { stream, to } => {
                        let Ok(stream) = stream.into_std() else {
                            return;
                        };
                        let workers = counted.workers.clone();
                        let moving = Accepted {
                            stream,
                            peer,
                            kind,
                            counted: counted.moved_to(to),
                        };
                        match workers.senders[to].send(moving) {
                            Ok(()) => node.metrics.connection_moved(),
                            // That worker has stopped taking connections (the node is
                            // stopping): this one goes on serving it.
                            Err(e) => serve_connection(&node, &builder, e.0, index, &stop),
                        }
                        return;
                    }
                    forward::End::Hyper(io) => io,
                }
            }
        };
        let svc =
            hyper::service::service_fn(move |req| handle(node.clone(), req, kind, client.clone()));
        let conn = builder
            .serve_connection(TokioIo::new(io), svc)
            .with_upgrades();
        let mut conn = std::pin::pin!(conn);
        tokio::select! {
            _ = conn.as_mut() => {}
            _ = stop.cancelled() => {
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
            }
        }
        drop(counted);
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
            Ok(stream) => workers.dispatch(stream, peer, kind),
            Err(e) => tracing::warn!(error = %e, "cannot hand a connection to a worker"),
        }
    }
}

async fn handle(
    node: Arc<Node>,
    req: Request<Incoming>,
    kind: Listener,
    client: Client,
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
    Ok(proxy_request(&node, req, kind, &client).await)
}

/// Removes every inbound `maelstrom-*` header (spec §3.g).
fn strip_maelstrom_headers<B>(req: &mut Request<B>) {
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

fn header_str<'a, B>(req: &'a Request<B>, name: &HeaderName) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Serves a request made inside this node (cron): through the private gateway path, with
/// cold start and relaying, and without client cancellation.
pub async fn internal(node: &Arc<Node>, req: Request<ProxyBody>) -> Response<ProxyBody> {
    let client = Client::new(std::net::Ipv4Addr::LOCALHOST.into());
    proxy_request(node, req, Listener::Private, &client).await
}

/// A connection's client: its address, and that address as an `X-Forwarded-For` value,
/// made once per connection rather than formatted on every request.
#[derive(Clone)]
pub(crate) struct Client {
    ip: std::net::IpAddr,
    forwarded_for: HeaderValue,
}

impl Client {
    pub(crate) fn new(ip: std::net::IpAddr) -> Client {
        let forwarded_for =
            HeaderValue::from_str(&ip.to_string()).expect("an IP address is a valid header value");
        Client { ip, forwarded_for }
    }
}

/// An answer the node gives itself instead of a component's: no route, a full queue, a
/// passed deadline, an upstream that failed.
pub(crate) struct Refusal {
    status: StatusCode,
    message: String,
    retry_after: Option<u64>,
}

impl Refusal {
    fn new(status: StatusCode, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    fn not_found() -> Refusal {
        Refusal::new(StatusCode::NOT_FOUND, "No component matches the request")
    }

    fn into_response(self) -> Response<ProxyBody> {
        let mut r = text(self.status, self.message);
        if let Some(s) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }
}

/// The upstream connections of a slot's target.
fn upstream_of(t: &Target) -> &Arc<upstream::Upstream> {
    match t {
        Target::Local(c) => &c.upstream,
        Target::Remote(p) => &p.proxy,
    }
}

/// One request on its way through the node, whichever HTTP engine carries it (hyper here,
/// [`forward`] for plain requests): routed to a component, its headers set for the hop,
/// then admitted to router slots until a forward succeeds (spec §8).
pub(crate) struct Exchange {
    name: String,
    router: Arc<crate::router::Router>,
    admission: Admission,
    deadline: Instant,
    path_and_query: String,
    began: Instant,
    kind: Listener,
    /// One timer for the whole exchange: polled only when something has to wait, and
    /// handed on to the response body.
    timer: std::pin::Pin<Box<tokio::time::Sleep>>,
    attempts: u32,
}

impl Exchange {
    /// Routes `req` and rewrites its `MAELSTROM-*` and forwarding headers.
    pub(crate) async fn begin<B>(
        node: &Arc<Node>,
        req: &mut Request<B>,
        kind: Listener,
        client: &Client,
    ) -> Result<Exchange, Refusal> {
        let began = Instant::now();
        let trusted = kind != Listener::Public;

        // Which component.
        let by_header = trusted
            .then(|| header_str(req, &names::COMPONENT).map(|v| v.trim().to_ascii_lowercase()))
            .flatten()
            .filter(|v| !v.is_empty());
        let (name, path_and_query) = match by_header {
            Some(name) => {
                let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
                (name, pq.to_string())
            }
            None => {
                let host = header_str(req, &header::HOST)
                    .or_else(|| req.uri().host())
                    .unwrap_or_default();
                let host = resolve::host_without_port(host);
                let (path, query) = (req.uri().path(), req.uri().query());
                let decoded = resolve::decode_path(path);
                let found = node.catalog.with_routes(began, |routes| {
                    resolve::resolve(routes, host, &decoded)
                        .map(|r| (r.component.clone(), resolve::forwarded_path(r, path, query)))
                });
                match found.await {
                    Ok(Some(found)) => found,
                    Ok(None) => {
                        node.metrics.request("", 404, kind, began.elapsed());
                        return Err(Refusal::not_found());
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot read the routes");
                        return Err(Refusal::new(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "Server Error",
                        ));
                    }
                }
            }
        };
        let max_duration = node
            .catalog
            .with_component(&name, began, |c| c.map(|c| c.max_duration_seconds()));
        let max_duration = match max_duration.await {
            Ok(Some(seconds)) => seconds,
            Ok(None) => {
                node.metrics.request("", 404, kind, began.elapsed());
                return Err(Refusal::not_found());
            }
            Err(e) => {
                tracing::error!(component = %name, error = %e, "cannot read the component");
                node.metrics.request("", 500, kind, began.elapsed());
                return Err(Refusal::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Server Error",
                ));
            }
        };

        // Deadline: honoured from the header on trusted listeners, else from
        // maxdurationseconds.
        let now = now_ns();
        let deadline_ns = trusted
            .then(|| header_str(req, &names::DEADLINE).and_then(|v| v.trim().parse::<i128>().ok()))
            .flatten()
            .unwrap_or(now + max_duration as i128 * 1_000_000_000);
        let remaining = Duration::from_nanos((deadline_ns - now).max(0) as u64);
        let deadline = began + remaining;
        req.headers_mut()
            .insert(names::DEADLINE, ns_value(deadline_ns));
        if header_str(req, &names::START).is_none() {
            req.headers_mut().insert(names::START, ns_value(now));
        }

        // Relayed requests prefer local containers, and never go back along their path.
        let relay_path: Option<Vec<String>> = trusted
            .then(|| header_str(req, &names::RELAY_PATH))
            .flatten()
            .map(|p| p.split('|').map(str::to_string).collect());
        let admission = match relay_path {
            Some(exclude) => Admission {
                local_only_until: Some(
                    Instant::now() + Duration::from_secs((max_duration / 10).max(1)),
                ),
                exclude,
            },
            None => {
                forwarded_headers(node, req, client);
                Admission::default()
            }
        };
        let router = node.router(&name).await;
        Ok(Exchange {
            name,
            router,
            admission,
            deadline,
            path_and_query,
            began,
            kind,
            timer: Box::pin(tokio::time::sleep_until(deadline.into())),
            attempts: 0,
        })
    }

    /// Waits for a slot: a container or peer with room.
    pub(crate) async fn slot(&mut self, node: &Node) -> Result<Slot, Refusal> {
        self.attempts += 1;
        let admitted = tokio::select! {
            biased;
            r = self.router.acquire(self.admission.clone()) => r,
            _ = &mut self.timer => return Err(self.timed_out()),
        };
        let slot = admitted.map_err(|rejected| {
            self.router
                .metrics
                .request(503, self.kind, self.began.elapsed());
            match rejected {
                Rejected::QueueFull { retry_after } => {
                    node.metrics.queue_rejected(&self.name);
                    Refusal {
                        retry_after: Some(retry_after),
                        ..Refusal::new(
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!("Component queue full: {}", self.name),
                        )
                    }
                }
                Rejected::Failed(msg) => Refusal::new(StatusCode::SERVICE_UNAVAILABLE, msg),
            }
        })?;
        self.router.metrics.queue_wait(self.began.elapsed());
        if let Target::Remote(p) = slot.target() {
            node.metrics.relayed(&self.name, &p.node_id);
        }
        Ok(slot)
    }

    /// What the hop to a slot's target adds to the request.
    pub(crate) fn hop<'a>(&'a self, node: &'a Node) -> Hop<'a> {
        Hop {
            path_and_query: &self.path_and_query,
            component: &self.name,
            node_id: &node.id,
            token: node.cfg.private_token.as_deref(),
            deadline: self.deadline,
        }
    }

    /// The deadline passed before the component answered.
    pub(crate) fn timed_out(&self) -> Refusal {
        self.router
            .metrics
            .request(504, self.kind, self.began.elapsed());
        Refusal::new(
            StatusCode::GATEWAY_TIMEOUT,
            format!("gateway: Timeout proxying component: {}", self.name),
        )
    }

    /// The component's answer arrived.
    pub(crate) fn answered(&self, status: u16, target: &Target) {
        self.router
            .metrics
            .request(status, self.kind, self.began.elapsed());
        tracing::info!(target: "maelstromd::access", component = %self.name, status,
            ms = self.began.elapsed().as_millis() as u64, via = remote_label(target), "request");
    }

    /// Forwarding on `slot` failed before an answer: `Ok` means send the request again on
    /// another slot (a peer that could not be reached, when the request can be replayed),
    /// `Err` is the `502` to answer.
    pub(crate) fn failed(
        &self,
        node: &Arc<Node>,
        slot: Slot,
        detail: &str,
        replayable: bool,
    ) -> Result<(), Refusal> {
        if let Target::Remote(p) = slot.target() {
            // The peer may be gone: stop sending it traffic now, check it, and send this
            // request elsewhere when it never left here.
            let peer = p.node_id.clone();
            self.router.remove_remote(&peer);
            drop(slot);
            let n = node.clone();
            let p = peer.clone();
            tokio::spawn(async move { crate::cluster::peer_failed(&n, &p).await });
            if replayable && self.attempts < 3 && Instant::now() < self.deadline {
                tracing::warn!(component = %self.name, peer = %peer, error = %detail, "relay failed; sending the request elsewhere");
                return Ok(());
            }
        }
        tracing::warn!(component = %self.name, error = %detail, "proxying failed");
        self.router
            .metrics
            .request(502, self.kind, self.began.elapsed());
        Err(Refusal::new(
            StatusCode::BAD_GATEWAY,
            format!("Bad Gateway: {detail}"),
        ))
    }
}

/// Unix nanoseconds as a header value (`MAELSTROM-DEADLINE-NANO`, `MAELSTROM-START-NANO`).
fn ns_value(ns: i128) -> HeaderValue {
    match u64::try_from(ns) {
        Ok(n) => HeaderValue::from(n),
        Err(_) => HeaderValue::from_str(&ns.to_string()).unwrap_or(HeaderValue::from_static("0")),
    }
}

/// The request path through hyper: resolve, admit, forward, answer (spec §8).
pub(crate) async fn proxy_request(
    node: &Arc<Node>,
    mut req: Request<ProxyBody>,
    kind: Listener,
    client: &Client,
) -> Response<ProxyBody> {
    let mut ex = match Exchange::begin(node, &mut req, kind, client).await {
        Ok(ex) => ex,
        Err(r) => return r.into_response(),
    };
    let client_upgrade = proxy::is_upgrade(req.headers()).then(|| hyper::upgrade::on(&mut req));
    // A bodiless request relayed to a peer can be sent again if the peer turns out dead
    // before answering; its head is kept for that (only when relaying).
    let bodiless = req.body().size_hint().exact() == Some(0);
    let mut replay: Option<(Method, http::HeaderMap, http::Version)> = None;
    let mut req = Some(req);
    loop {
        let slot = match ex.slot(node).await {
            Ok(s) => s,
            Err(r) => return r.into_response(),
        };
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
        if let Err(e) = proxy::prepare(&mut upstream, slot.target(), &ex.hop(node)) {
            return text(StatusCode::BAD_REQUEST, e);
        }
        let to = upstream_of(slot.target()).clone();
        let result = tokio::select! {
            biased;
            r = to.request(upstream) => r,
            _ = &mut ex.timer => return ex.timed_out().into_response(),
        };
        let (mut resp, lease) = match result {
            Err(e) => {
                let replayable = e.is_connect() && replay.is_some();
                match ex.failed(node, slot, &proxy::error_chain(&e), replayable) {
                    Ok(()) => continue,
                    Err(r) => return r.into_response(),
                }
            }
            Ok(resp) => resp,
        };
        let status = resp.status();
        ex.answered(status.as_u16(), slot.target());
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
        if proxy::is_event_stream(resp.headers()) {
            let idle = node.cfg.http_idle_timeout;
            return resp
                .map(|b| Tracked::streaming(Returning::new(b, lease), slot, idle).boxed_unsync());
        }
        let timer = ex.timer;
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
fn forwarded_headers<B>(node: &Node, req: &mut Request<B>, client: &Client) {
    let headers = req.headers_mut();
    let xff = match headers
        .get(&names::X_FORWARDED_FOR)
        .and_then(|v| v.to_str().ok())
    {
        Some(prev) if !prev.trim().is_empty() => {
            HeaderValue::from_str(&format!("{prev}, {}", client.ip)).ok()
        }
        _ => Some(client.forwarded_for.clone()),
    };
    if let Some(v) = xff {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn workers(load: &[usize]) -> Workers {
        Workers {
            senders: load
                .iter()
                .map(|_| tokio::sync::mpsc::unbounded_channel().0)
                .collect(),
            next: AtomicUsize::new(0),
            cpus: None,
            steering: std::sync::atomic::AtomicBool::new(true),
            load: load.iter().map(|&l| AtomicUsize::new(l)).collect(),
            open: AtomicUsize::new(load.iter().sum()),
        }
    }

    /// Connections whose packets all arrive on one CPU fill its worker to half again its
    /// share, and the rest go to the least loaded.
    #[test]
    fn a_worker_takes_its_cpus_connections_up_to_half_again_its_share() {
        let mut placed = workers(&[0, 0]);
        for _ in 0..12 {
            let w = placed.choose(Some(0));
            placed.load[w].fetch_add(1, Ordering::Relaxed);
        }
        let loads: Vec<usize> = placed
            .load
            .iter()
            .map(|l| l.load(Ordering::Relaxed))
            .collect();
        assert!(loads[0] * 2 <= 3 * 6 && loads[0] > loads[1], "{loads:?}");
        placed = workers(&[0, 0, 0, 0]);
        assert_eq!(placed.choose(Some(3)), 3);
        assert_eq!(placed.choose(None), 0);
    }

    #[test]
    fn a_move_needs_room_on_the_worker_it_goes_to() {
        // Up to half again the share after the move: two of three and three of four may be
        // on one worker, four of four may not (the moving connection already counts on its
        // own worker). A new connection counts on top: two of two may not.
        assert!(workers(&[1, 2]).has_room(0, false));
        assert!(workers(&[2, 2]).has_room(0, false));
        assert!(!workers(&[3, 1]).has_room(0, false));
        assert!(!workers(&[1, 0]).has_room(0, true));
        assert!(workers(&[1, 1]).has_room(0, true));
    }
}
