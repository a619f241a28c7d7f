//! One maelstromd node: the state every part shares, start-up in the order the spec asks
//! (data directory and node id, database and migrations, Docker, adoption, then listeners and
//! background tasks), this node's status, and the shutdown sequence of spec §15.

use crate::autoscale::LoadBoard;
use crate::catalog::Catalog;
use crate::cluster::Cluster;
use crate::config::{Config, check_node_id};
use crate::containers::Containers;
use crate::converger::Convergers;
use crate::db::Db;
use crate::docker::{Engine, EngineEvent};
use crate::gateway::{self, Listener};
use crate::metrics::Metrics;
use crate::router::Router;
use futures_util::StreamExt;
use maelstromd_api::model::{ColdStart, NodeStatus};
use maelstromd_api::now_ms;
use maelstromd_api::rpc::DataChange;
use rand::Rng;
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

/// Why the node could not start; the process exits with `code`.
#[derive(Debug)]
pub struct StartError {
    /// Exit status: 2 for configuration, 1 for anything else.
    pub code: i32,
    /// What went wrong and how to fix it.
    pub message: String,
}

fn fail(code: i32, message: impl Into<String>) -> StartError {
    StartError {
        code,
        message: message.into(),
    }
}

/// The shared state of a node; see the module documentation.
pub struct Node {
    /// Settings.
    pub cfg: Config,
    /// Node id.
    pub id: String,
    /// URL peers use to reach this node's private port.
    pub peer_url: String,
    /// `MAELSTROM_PRIVATE_URL` given to containers.
    pub container_private_url: String,
    /// Process start, epoch ms.
    pub started_at: i64,
    /// The shared database.
    pub db: Db,
    /// The Docker Engine.
    pub engine: Engine,
    /// Cached routes and components.
    pub catalog: Catalog,
    /// This node's containers.
    pub containers: Containers,
    /// One converger per component.
    pub convergers: Convergers,
    /// Peers.
    pub cluster: Cluster,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// Load reports (on the autoscale holder) and this node's load samples.
    pub loads: LoadBoard,
    /// The private API's axum router (it holds the node, so it is set right after creation).
    pub api: std::sync::OnceLock<axum::Router>,
    /// Stops the background loops that shutdown ends first: cron, autoscaling, membership,
    /// Docker events, activity buckets.
    pub shutdown: CancellationToken,
    /// Cancelled at the very end of shutdown: convergers, health checks and cold starts keep
    /// working while requests drain.
    pub finished: CancellationToken,
    /// Stops the listeners' accept loops.
    pub stop_accepting: CancellationToken,
    /// Serialises `StartStopComponents` version checks.
    pub start_stop_lock: tokio::sync::Mutex<()>,
    /// Wakes the cron task after a catalog change.
    pub cron_reload: Notify,
    routers: std::sync::RwLock<HashMap<String, Arc<Router>>>,
    placement_tx: mpsc::UnboundedSender<String>,
    placement_gates: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    placements: AtomicUsize,
    status_version: AtomicI64,
    draining: AtomicBool,
    cold_starts: Mutex<VecDeque<ColdStart>>,
    engine_memory_mib: Option<i64>,
    shutdown_requested: Notify,
    /// `(component, version)` pairs whose image this node pulled (`pullimageonput`).
    pub pulled_versions: Mutex<std::collections::HashSet<(String, i64)>>,
    /// The proxy workers serving the listeners' connections.
    workers: std::sync::OnceLock<Arc<gateway::Workers>>,
}

/// Counts a placement in progress on this node while alive.
pub struct PlacementGuard<'a>(&'a Node);

impl Drop for PlacementGuard<'_> {
    fn drop(&mut self) {
        self.0.placements.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The listeners, bound before the node is built so a busy port fails start-up cleanly.
struct Listeners {
    public: TcpListener,
    private: TcpListener,
    gateway: Option<(TcpListener, SocketAddr)>,
}

async fn bind(addr: SocketAddr, var: &str) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr).await.map_err(|e| {
        fail(
            1,
            format!("cannot listen on {addr} ({e}); free the port or set {var} to another one"),
        )
    })
}

/// The node id: `MAEL_NODE_ID`, else `<data dir>/node-id`, else a new random one written there.
fn node_id(cfg: &Config) -> Result<String, StartError> {
    if let Some(id) = &cfg.node_id {
        return Ok(id.clone());
    }
    let path = cfg.data_dir.join("node-id");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let id = text.trim().to_string();
        check_node_id(&id).map_err(|m| fail(2, format!("{}: {m}", path.display())))?;
        return Ok(id);
    }
    // 16 characters of [a-z0-9]: 82 bits.
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    let id: String = (0..16)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect();
    let tmp = cfg.data_dir.join("node-id.tmp");
    std::fs::write(&tmp, format!("{id}\n"))
        .and_then(|_| std::fs::rename(&tmp, &path))
        .map_err(|e| fail(1, format!("cannot write {}: {e}", path.display())))?;
    Ok(id)
}

fn create_data_dir(dir: &Path) -> Result<(), StartError> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| {
            fail(
                1,
                format!("cannot create MAEL_DATA_DIR {}: {e}", dir.display()),
            )
        })
}

/// The URL peers use for this node (spec §3.h).
fn advertised_url(cfg: &Config) -> String {
    if let Some(u) = &cfg.peer_url {
        return u.clone();
    }
    let ip = if cfg.private_bind.is_unspecified() {
        // The address of the interface that routes outward; connecting a UDP socket sends
        // no packet.
        std::net::UdpSocket::bind("0.0.0.0:0")
            .and_then(|s| {
                s.connect("8.8.8.8:53")?;
                s.local_addr()
            })
            .map(|a| a.ip())
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
    } else {
        cfg.private_bind
    };
    match ip {
        IpAddr::V6(v6) => format!("http://[{v6}]:{}", cfg.private_port),
        IpAddr::V4(v4) => format!("http://{v4}:{}", cfg.private_port),
    }
}

impl Node {
    /// Starts a node: everything up to and including the listeners and background tasks.
    /// Answers when the node serves requests.
    pub async fn start(cfg: Config) -> Result<Arc<Node>, StartError> {
        create_data_dir(&cfg.data_dir)?;
        let id = node_id(&cfg)?;
        let db = Db::connect(&cfg.database).await.map_err(|e| {
            fail(
                1,
                format!("cannot open the database ({e}); check MAEL_SQL_DRIVER and MAEL_SQL_DSN"),
            )
        })?;
        db.migrate()
            .await
            .map_err(|e| fail(1, format!("database migration failed: {e}")))?;
        let engine = Engine::connect(&id, cfg.addressing, cfg.dind_host.clone())
            .await
            .map_err(|e| fail(1, e.to_string()))?;
        let peer_url = advertised_url(&cfg);
        refuse_copied_identity(&db, &id, &peer_url, &cfg).await?;

        let public = bind(
            SocketAddr::new(cfg.public_bind, cfg.public_port),
            "MAEL_PUBLIC_PORT",
        )
        .await?;
        let private = bind(
            SocketAddr::new(cfg.private_bind, cfg.private_port),
            "MAEL_PRIVATE_PORT",
        )
        .await?;
        let gateway = if cfg.container_gateway_port == 0 {
            None
        } else {
            let gw_ip = engine
                .bridge_gateway()
                .await
                .unwrap_or(IpAddr::V4(Ipv4Addr::new(172, 17, 0, 1)));
            let mut addr = SocketAddr::new(gw_ip, cfg.container_gateway_port);
            let listener = match TcpListener::bind(addr).await {
                Ok(l) => l,
                Err(_) => {
                    addr = SocketAddr::new(
                        IpAddr::V4(Ipv4Addr::LOCALHOST),
                        cfg.container_gateway_port,
                    );
                    bind(addr, "MAEL_CONTAINER_GATEWAY_PORT").await?
                }
            };
            Some((listener, addr))
        };
        let listeners = Listeners {
            public,
            private,
            gateway,
        };
        let container_private_url =
            cfg.container_private_url
                .clone()
                .unwrap_or_else(|| match &listeners.gateway {
                    Some((_, addr)) => format!("http://{addr}"),
                    None => peer_url.clone(),
                });

        crate::gateway::upstream::set_worker_count(proxy_workers());
        let (placement_tx, placement_rx) = mpsc::unbounded_channel();
        let started_at = now_ms();
        let engine_memory_mib = engine.total_memory_mib().await;
        let node = Arc::new(Node {
            cluster: Cluster::new(cfg.private_token.clone()),
            catalog: Catalog::new(db.clone()),
            api: std::sync::OnceLock::new(),
            id,
            peer_url,
            container_private_url,
            started_at,
            db,
            engine,
            containers: Containers::default(),
            convergers: Convergers::default(),
            metrics: Metrics::new(),
            loads: LoadBoard::default(),
            shutdown: CancellationToken::new(),
            finished: CancellationToken::new(),
            stop_accepting: CancellationToken::new(),
            start_stop_lock: tokio::sync::Mutex::new(()),
            cron_reload: Notify::new(),
            routers: std::sync::RwLock::new(HashMap::new()),
            placement_tx,
            placement_gates: Mutex::new(HashMap::new()),
            placements: AtomicUsize::new(0),
            status_version: AtomicI64::new(started_at),
            draining: AtomicBool::new(false),
            cold_starts: Mutex::new(VecDeque::new()),
            engine_memory_mib,
            shutdown_requested: Notify::new(),
            workers: std::sync::OnceLock::new(),
            pulled_versions: Mutex::new(std::collections::HashSet::new()),
            cfg,
        });
        let _ = node.api.set(crate::api::router(node.clone()));
        node.start_tasks(listeners, placement_rx).await;
        Ok(node)
    }

    async fn start_tasks(
        self: &Arc<Self>,
        listeners: Listeners,
        placement_rx: mpsc::UnboundedReceiver<String>,
    ) {
        let unowned = self.engine.count_unowned().await;
        if unowned > 0 {
            tracing::warn!(
                count = unowned,
                "containers labelled maelstrom=true without maelstrom_node (left by the original maelstromd?) are left alone"
            );
        }
        let adopted = crate::containers::adopt(self).await;
        for (component, count) in adopted {
            self.convergers
                .get_or_start(self, &component)
                .set_target(count);
        }
        crate::cluster::refresh(self).await;
        // Tell the nodes already running that this one is here.
        crate::cluster::publish(self).await;

        let workers = gateway::Workers::start(self, proxy_workers());
        let _ = self.workers.set(workers.clone());
        tokio::spawn(gateway::serve(
            self.clone(),
            listeners.public,
            Listener::Public,
            workers.clone(),
        ));
        tokio::spawn(gateway::serve(
            self.clone(),
            listeners.private,
            Listener::Private,
            workers.clone(),
        ));
        if let Some((l, addr)) = listeners.gateway {
            tracing::info!(%addr, "container gateway listening");
            tokio::spawn(gateway::serve(self.clone(), l, Listener::Gateway, workers));
        }
        tokio::spawn(crate::cluster::run_membership(self.clone()));
        tokio::spawn(crate::autoscale::run(self.clone()));
        tokio::spawn(crate::cron::run(self.clone()));
        tokio::spawn(watch_engine(self.clone()));
        tokio::spawn(rotate_activity(self.clone()));
        tokio::spawn(placement_driver(self.clone(), placement_rx));
        tracing::info!(node = %self.id, public = self.cfg.public_port, private = self.cfg.private_port,
            peer_url = %self.peer_url, "maelstromd started");
    }

    /// The router of `component`, created on first use with its queue bound and the peers
    /// that run it.
    pub async fn router(self: &Arc<Self>, component: &str) -> Arc<Router> {
        if let Some(r) = self
            .routers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(component)
        {
            return r.clone();
        }
        let max_queue = match self.catalog.component(component).await {
            Ok(Some(c)) if c.max_queued_requests > 0 => c.max_queued_requests as usize,
            _ => self.cfg.queue_max_per_component,
        };
        let created = {
            let mut map = self.routers.write().unwrap_or_else(|p| p.into_inner());
            if let Some(r) = map.get(component) {
                return r.clone();
            }
            let r = Router::new(
                component,
                max_queue,
                self.placement_tx.clone(),
                self.metrics.component(component),
            );
            map.insert(component.to_string(), r.clone());
            r
        };
        crate::cluster::sync_dispensers(self).await;
        created
    }

    /// Every router.
    pub fn routers(&self) -> Vec<Arc<Router>> {
        self.routers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// This node's status, computed now.
    pub async fn status(&self) -> NodeStatus {
        let (total, free) = memory_mib();
        let mut total = total;
        let mut free = free;
        if let Some(engine) = self.engine_memory_mib {
            total = total.min(engine);
            free = free.min(engine);
        }
        if self.cfg.total_memory_mib >= 0 {
            total = total.min(self.cfg.total_memory_mib);
            free = free.min(self.cfg.total_memory_mib);
        }
        let (l1, l5, l15) = load_avg();
        NodeStatus {
            node_id: self.id.clone(),
            started_at: self.started_at,
            observed_at: now_ms(),
            version: self.status_version(),
            peer_url: self.peer_url.clone(),
            total_memory_mib: total,
            free_memory_mib: free,
            num_cpus: std::thread::available_parallelism()
                .map(|n| n.get() as i64)
                .unwrap_or(1),
            load_avg1m: l1,
            load_avg5m: l5,
            load_avg15m: l15,
            running_components: self.components_info().await,
            recent_cold_starts: self
                .cold_starts
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .cloned()
                .collect(),
        }
    }

    /// Every container, plus one `starting` entry per start a converger has planned but not
    /// begun, so placement and autoscaling elsewhere count starts in progress (spec §9.3).
    async fn components_info(&self) -> Vec<maelstromd_api::model::ComponentInfo> {
        use maelstromd_api::model::{ComponentInfo, ComponentStatus};
        let mut infos = self.containers.infos();
        for name in self.convergers.components() {
            let target = self.convergers.target(&name);
            let have = infos
                .iter()
                .filter(|i| i.component_name == name && i.status != ComponentStatus::Stopping)
                .count();
            if target <= have {
                continue;
            }
            let Ok(Some(c)) = self.catalog.component(&name).await else {
                continue;
            };
            for _ in have..target {
                infos.push(ComponentInfo {
                    component_name: name.clone(),
                    component_version: c.version,
                    status: ComponentStatus::Starting,
                    max_concurrency: c.max_concurrency() as i64,
                    memory_reserved_mib: c.docker().reserve_memory_mib(),
                    start_time: now_ms(),
                    ..Default::default()
                });
            }
        }
        infos
    }

    /// This node's status and every peer's.
    pub async fn all_statuses(&self) -> Vec<NodeStatus> {
        let mut all = vec![self.status().await];
        all.extend(self.cluster.peer_statuses());
        all
    }

    /// A container changed: write the status and tell the peers (coalesced).
    pub fn status_changed(&self) {
        self.cluster.changed.notify_one();
    }

    /// The optimistic-concurrency version of this node's status.
    pub fn status_version(&self) -> i64 {
        self.status_version.load(Ordering::SeqCst)
    }

    /// Applied a matching `StartStopComponents`.
    pub fn bump_status_version(&self) {
        self.status_version.fetch_add(1, Ordering::SeqCst);
    }

    /// Whether the node is shutting down.
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Starts the shutdown sequence (as a signal would).
    pub fn request_shutdown(&self) {
        self.shutdown_requested.notify_one();
    }

    /// Waits until something asks the node to shut down.
    pub async fn shutdown_requested(&self) {
        self.shutdown_requested.notified().await
    }

    /// The lock that serialises placements of one component on this node.
    pub fn placement_gate(&self, component: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.placement_gates
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(component.to_string())
            .or_default()
            .clone()
    }

    /// Counts a placement in progress until the guard drops.
    pub fn placement_started(&self) -> PlacementGuard<'_> {
        self.placements.fetch_add(1, Ordering::SeqCst);
        PlacementGuard(self)
    }

    /// Placements in progress on this node.
    pub fn placements_in_progress(&self) -> usize {
        self.placements.load(Ordering::SeqCst)
    }

    /// Components or event sources changed (here, or on a peer that told us): refresh the
    /// caches, have convergers re-plan (a put version means a rolling restart, a removal
    /// stops everything), reload cron, and with `broadcast` tell every peer.
    pub async fn data_changed(self: &Arc<Self>, changes: Vec<DataChange>, broadcast: bool) {
        self.catalog.invalidate();
        for change in &changes {
            if let Some(c) = &change.put_component {
                if let Some(r) = self
                    .routers
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&c.name)
                {
                    r.set_max_queue(if c.max_queued_requests > 0 {
                        c.max_queued_requests as usize
                    } else {
                        self.cfg.queue_max_per_component
                    });
                }
                self.convergers.wake(&c.name);
                if c.docker().pull_image_on_put {
                    // The broadcast copy has no password: pull with the stored component.
                    let (node, name) = (self.clone(), c.name.clone());
                    tokio::spawn(async move {
                        if let Ok(Some(c)) = node.catalog.component_fresh(&name).await
                            && let Err(e) = crate::converger::pull_if_needed(&node, &c).await
                        {
                            tracing::warn!(component = %name, error = %e, "pullimageonput failed");
                        }
                    });
                }
            }
            if let Some(r) = &change.remove_component {
                self.convergers.wake(&r.name);
            }
        }
        self.cron_reload.notify_one();
        if broadcast {
            crate::cluster::notify_data_changed(self, changes);
        }
    }

    /// Takes or renews `role`; a lease held by a node that is gone (not in the view and not
    /// answering its health check) is broken first, so a crashed holder does not block the
    /// cluster for the rest of its TTL.
    pub async fn acquire_role(
        &self,
        role: &str,
        ttl: Duration,
    ) -> Result<crate::db::LockOutcome, crate::db::DbError> {
        use crate::db::LockOutcome;
        let outcome = self.db.acquire_role(role, &self.id, ttl).await?;
        let LockOutcome::HeldBy(holder) = &outcome else {
            return Ok(outcome);
        };
        if self.cluster.link(holder).is_some() || !self.holder_is_gone(holder).await {
            return Ok(outcome);
        }
        tracing::warn!(role, holder = %holder, "the role's holder is gone; breaking its lease");
        self.db.release_role(role, holder).await?;
        self.db.acquire_role(role, &self.id, ttl).await
    }

    async fn holder_is_gone(&self, holder: &str) -> bool {
        let Ok(rows) = self.db.list_node_status().await else {
            return false;
        };
        match rows.iter().find(|r| r.node_id == holder) {
            None => true,
            Some(row) => {
                let client = maelstromd_api::client::Client::new(
                    &row.peer_url,
                    self.cfg.private_token.clone(),
                )
                .with_timeout(Duration::from_secs(2));
                let url = format!("{}/_mael_health_check", row.peer_url);
                !matches!(client.send("GET", &url, None).await, Ok((200, _)))
            }
        }
    }

    fn record_cold_start(&self, c: ColdStart) {
        let mut q = self.cold_starts.lock().unwrap_or_else(|p| p.into_inner());
        q.push_front(c);
        q.truncate(50);
    }

    /// The shutdown sequence (spec §15). `hurry` cancels the remaining waits (a second signal).
    pub async fn shut_down(self: &Arc<Self>, hurry: CancellationToken) {
        tracing::info!("shutting down: draining");
        self.draining.store(true, Ordering::SeqCst);
        self.shutdown.cancel();
        crate::cluster::leave(self).await;
        let pause = |d: Duration| {
            let hurry = hurry.clone();
            async move {
                tokio::select! {
                    _ = tokio::time::sleep(d) => {}
                    _ = hurry.cancelled() => {}
                }
            }
        };
        pause(self.cfg.shutdown_pause).await;
        // Wait for in-flight and queued requests, at most MAEL_DRAIN_TIMEOUT_SECONDS.
        let drain_until = Instant::now() + self.cfg.drain_timeout;
        while Instant::now() < drain_until && !hurry.is_cancelled() {
            let busy: usize = self
                .routers()
                .iter()
                .map(|r| {
                    let s = r.snapshot();
                    s.inflight + s.queued
                })
                .sum();
            if busy == 0 {
                break;
            }
            pause(Duration::from_millis(100)).await;
        }
        if self.cfg.stop_containers_on_exit {
            let stops = self.containers.all().into_iter().map(|c| {
                let node = self.clone();
                async move {
                    crate::converger::stop_container(&node, &c, "maelstromd is stopping").await
                }
            });
            tokio::select! {
                _ = futures_util::future::join_all(stops) => {}
                _ = hurry.cancelled() => {}
            }
        } else {
            tracing::info!(
                containers = self.containers.all().len(),
                "leaving containers running for the next start to adopt (MAEL_CONTAINERS_ON_EXIT=keep)"
            );
        }
        pause(self.cfg.shutdown_pause).await;
        self.stop_accepting.cancel();
        // Connections finish their current exchange and close (at most 5 s).
        let closing_until = Instant::now() + Duration::from_secs(5);
        let open = || {
            self.workers
                .get()
                .map(|w| w.open.load(Ordering::SeqCst))
                .unwrap_or(0)
        };
        while open() > 0 && Instant::now() < closing_until && !hurry.is_cancelled() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.finished.cancel();
        let _ = self.db.release_all_roles(&self.id).await;
        self.db.close().await;
        tracing::info!("maelstromd stopped");
    }
}

/// One proxy worker per CPU.
fn proxy_workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Refuses to start when another live node uses this id from another address: a copied data
/// directory (spec §3.c).
async fn refuse_copied_identity(
    db: &Db,
    id: &str,
    peer_url: &str,
    cfg: &Config,
) -> Result<(), StartError> {
    let rows = db
        .list_node_status()
        .await
        .map_err(|e| fail(1, format!("cannot read node status: {e}")))?;
    let live_after = now_ms() - cfg.node_liveness.as_millis() as i64;
    if let Some(row) = rows
        .iter()
        .find(|r| r.node_id == id && r.peer_url != peer_url && r.observed_at > live_after)
    {
        let link = maelstromd_api::client::Client::new(&row.peer_url, cfg.private_token.clone())
            .with_timeout(Duration::from_secs(5));
        let url = format!("{}/_mael_health_check", row.peer_url);
        if matches!(link.send("GET", &url, None).await, Ok((200, _))) {
            return Err(fail(
                2,
                format!(
                    "node id {id} is already used by a running maelstromd at {}: was the data directory copied? Give this node its own MAEL_DATA_DIR (or MAEL_NODE_ID)",
                    row.peer_url
                ),
            ));
        }
    }
    Ok(())
}

/// `(total, available)` memory in MiB from /proc/meminfo.
fn memory_mib() -> (i64, i64) {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<i64>().ok())
            .map(|kib| kib / 1024)
            .unwrap_or(0)
    };
    (field("MemTotal:"), field("MemAvailable:"))
}

fn load_avg() -> (f64, f64, f64) {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut it = text
        .split_whitespace()
        .map(|v| v.parse::<f64>().unwrap_or(0.0));
    (
        it.next().unwrap_or(0.0),
        it.next().unwrap_or(0.0),
        it.next().unwrap_or(0.0),
    )
}

/// Container deaths and image tags from the engine, re-subscribing if the stream breaks.
async fn watch_engine(node: Arc<Node>) {
    loop {
        let mut events = Box::pin(node.engine.events());
        loop {
            tokio::select! {
                e = events.next() => match e {
                    Some(EngineEvent::Died { id }) => crate::converger::container_died(&node, &id).await,
                    Some(EngineEvent::ImageTagged { reference }) => crate::converger::image_tagged(&node, &reference).await,
                    None => break,
                },
                _ = node.shutdown.cancelled() => return,
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn rotate_activity(node: Arc<Node>) {
    let mut tick = tokio::time::interval(crate::containers::BUCKET);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                for c in node.containers.all() {
                    c.rotate_activity();
                }
            }
            _ = node.shutdown.cancelled() => return,
        }
    }
}

/// Runs a cold start for each component a router asks for (spec §8.4): placement, then a
/// wait for a dispenser, repeated every `httpstarthealthcheckseconds` while requests wait.
async fn placement_driver(node: Arc<Node>, mut rx: mpsc::UnboundedReceiver<String>) {
    loop {
        let name = tokio::select! {
            n = rx.recv() => match n { Some(n) => n, None => return },
            _ = node.finished.cancelled() => return,
        };
        let node = node.clone();
        tokio::spawn(async move { cold_start(&node, &name).await });
    }
}

async fn cold_start(node: &Arc<Node>, name: &str) {
    let router = node.router(name).await;
    let began = Instant::now();
    let started_at = now_ms();
    let retry = node
        .catalog
        .component(name)
        .await
        .ok()
        .flatten()
        .and_then(|c| c.docker().start_health_check_seconds())
        .unwrap_or(30)
        .max(1);
    loop {
        match crate::placement::place_component(node, name).await {
            Ok(status) => {
                node.cluster.accept(&node.id, status);
                crate::cluster::sync_dispensers(node).await;
            }
            Err(e) => {
                tracing::warn!(component = name, error = %e.message, "cold start failed");
                node.metrics.cold_start(name, false, began.elapsed());
                node.record_cold_start(ColdStart {
                    component_name: name.to_string(),
                    started_at,
                    duration_ms: began.elapsed().as_millis() as i64,
                    result: e.message.clone(),
                });
                router.fail_waiters(&format!("Component {name} could not start: {}", e.message));
                return;
            }
        }
        // Wait for the instance to become routable (a peer's arrives by broadcast).
        let until = Instant::now() + Duration::from_secs(retry);
        while Instant::now() < until && router.snapshot().dispensers == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if !router.placement_finished() {
            node.metrics.cold_start(name, true, began.elapsed());
            node.record_cold_start(ColdStart {
                component_name: name.to_string(),
                started_at,
                duration_ms: began.elapsed().as_millis() as i64,
                result: "ok".into(),
            });
            return;
        }
    }
}
