//! Cluster membership (spec §11): this node's view of its peers and their statuses, kept
//! current by the `nodestatus` table, peer health checks and `StatusChanged` broadcasts; and
//! the links used to call and relay to each peer. Every change of the view re-computes the
//! routers' remote dispensers, so a peer's containers become routable the moment it reports
//! them and stop being routable the moment it is found dead.

use crate::gateway::upstream::Upstream;
use crate::node::Node;
use maelstromd_api::client::Client;
use maelstromd_api::model::{ComponentStatus, NodeStatus};
use maelstromd_api::now_ms;
use maelstromd_api::rpc::{DataChange, NotifyDataChangedInput, StatusChangedInput};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::Notify;

/// How one peer is reached.
pub struct PeerLink {
    /// Its node id.
    pub node_id: String,
    /// Its private URL.
    pub peer_url: String,
    /// JSON-RPC client with the cluster token.
    pub rpc: Client,
    /// Pooled connections for relayed requests, one pool per proxy worker.
    pub proxy: Arc<Upstream>,
}

impl PeerLink {
    fn new(node_id: &str, peer_url: &str, token: Option<String>) -> Arc<PeerLink> {
        Arc::new(PeerLink {
            node_id: node_id.to_string(),
            peer_url: peer_url.trim_end_matches('/').to_string(),
            rpc: Client::new(peer_url, token).with_timeout(Duration::from_secs(30)),
            proxy: Arc::new(Upstream::new(peer_url, 64)),
        })
    }

    /// A link with no node behind it, for unit tests of routing.
    #[cfg(test)]
    pub fn for_tests(node_id: &str) -> Arc<PeerLink> {
        PeerLink::new(node_id, "http://127.0.0.1:9", None)
    }

    /// `GET /_mael_health_check` with a 5 s limit.
    pub async fn healthy(&self) -> bool {
        let url = format!("{}/_mael_health_check", self.peer_url);
        let client = self.rpc.clone().with_timeout(Duration::from_secs(5));
        matches!(client.send("GET", &url, None).await, Ok((200, _)))
    }
}

struct Peer {
    status: NodeStatus,
    link: Arc<PeerLink>,
}

/// See the module documentation.
pub struct Cluster {
    peers: RwLock<HashMap<String, Peer>>,
    token: Option<String>,
    /// This node's status changed: the status task writes and broadcasts it.
    pub changed: Notify,
}

fn newer(a: &NodeStatus, b: &NodeStatus) -> bool {
    a.version > b.version || (a.version == b.version && a.observed_at >= b.observed_at)
}

impl Cluster {
    /// An empty view.
    pub fn new(token: Option<String>) -> Cluster {
        Cluster {
            peers: RwLock::new(HashMap::new()),
            token,
            changed: Notify::new(),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Peer>> {
        self.peers.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Peer>> {
        self.peers.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The link to one peer in the view.
    pub fn link(&self, node_id: &str) -> Option<Arc<PeerLink>> {
        self.read().get(node_id).map(|p| p.link.clone())
    }

    /// Every peer's last known status.
    pub fn peer_statuses(&self) -> Vec<NodeStatus> {
        self.read().values().map(|p| p.status.clone()).collect()
    }

    /// Every peer's link.
    pub fn links(&self) -> Vec<Arc<PeerLink>> {
        self.read().values().map(|p| p.link.clone()).collect()
    }

    /// Takes a peer's status if it is newer than the one known (or the peer is new).
    /// Answers whether the view changed.
    pub fn accept(&self, self_id: &str, status: NodeStatus) -> bool {
        if status.node_id == self_id || status.peer_url.is_empty() {
            return false;
        }
        let mut peers = self.write();
        match peers.get_mut(&status.node_id) {
            Some(p) if !newer(&status, &p.status) => false,
            Some(p) => {
                if p.link.peer_url != status.peer_url.trim_end_matches('/') {
                    p.link = PeerLink::new(&status.node_id, &status.peer_url, self.token.clone());
                }
                p.status = status;
                true
            }
            None => {
                let link = PeerLink::new(&status.node_id, &status.peer_url, self.token.clone());
                peers.insert(status.node_id.clone(), Peer { status, link });
                true
            }
        }
    }

    /// Drops a peer; answers whether it was in the view.
    pub fn remove(&self, node_id: &str) -> bool {
        self.write().remove(node_id).is_some()
    }

    /// Replaces the view with `statuses` (peers that answered their health check), keeping a
    /// known status where it is newer than the row read.
    fn replace(&self, statuses: Vec<NodeStatus>) {
        let mut peers = self.write();
        let mut next = HashMap::new();
        for s in statuses {
            match peers.remove(&s.node_id) {
                Some(p) if newer(&p.status, &s) => {
                    next.insert(s.node_id.clone(), p);
                }
                Some(p) if p.link.peer_url == s.peer_url.trim_end_matches('/') => {
                    next.insert(
                        s.node_id.clone(),
                        Peer {
                            status: s,
                            link: p.link,
                        },
                    );
                }
                _ => {
                    let link = PeerLink::new(&s.node_id, &s.peer_url, self.token.clone());
                    next.insert(s.node_id.clone(), Peer { status: s, link });
                }
            }
        }
        *peers = next;
    }
}

/// Re-computes every router's remote dispensers from the view: one per peer running the
/// component, with room for its active instances × their concurrency limit (spec §8.5, the
/// original's squared cap fixed).
pub async fn sync_dispensers(node: &Arc<Node>) {
    let view: Vec<(Arc<PeerLink>, NodeStatus)> = node
        .cluster
        .read()
        .values()
        .map(|p| (p.link.clone(), p.status.clone()))
        .collect();
    for router in node.routers() {
        let soft = node
            .catalog
            .component(&router.component)
            .await
            .ok()
            .flatten()
            .is_some_and(|c| c.soft_concurrency_limit);
        let mut present = Vec::new();
        for (link, status) in &view {
            let capacity: i64 = status
                .running_components
                .iter()
                .filter(|c| {
                    c.component_name == router.component && c.status == ComponentStatus::Active
                })
                .map(|c| c.max_concurrency.max(1))
                .sum();
            if capacity > 0 {
                router.set_remote(link, capacity as usize, !soft);
                present.push(link.node_id.clone());
            }
        }
        for gone in router.remote_peers() {
            if !present.contains(&gone) {
                router.remove_remote(&gone);
            }
        }
    }
}

/// Takes a peer's status from a broadcast and updates routing.
pub async fn status_received(node: &Arc<Node>, input: StatusChangedInput) {
    if input.exiting {
        if node.cluster.remove(&input.node_id) {
            tracing::info!(peer = %input.node_id, "peer is leaving the cluster");
            sync_dispensers(node).await;
        }
        return;
    }
    if let Some(status) = input.status
        && node.cluster.accept(&node.id, status)
    {
        sync_dispensers(node).await;
    }
}

/// A relay to `node_id` could not connect: health-check it now and drop it if it fails
/// (spec §11, node loss).
pub async fn peer_failed(node: &Arc<Node>, node_id: &str) {
    let Some(link) = node.cluster.link(node_id) else {
        return;
    };
    if !link.healthy().await && node.cluster.remove(node_id) {
        tracing::warn!(peer = %node_id, "peer failed its health check; dropped from the cluster view");
        sync_dispensers(node).await;
    }
}

/// Every `MAEL_NODE_STATUS_INTERVAL_SECONDS` (30 s): write this node's row, drop stale rows,
/// health-check every other node and keep those that answer. Also writes and broadcasts
/// the status whenever it changes.
pub async fn run_membership(node: Arc<Node>) {
    let mut interval = tokio::time::interval(node.cfg.node_status_interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => refresh(&node).await,
            _ = node.cluster.changed.notified() => {
                // Coalesce bursts of container changes into one write and broadcast.
                tokio::time::sleep(Duration::from_millis(20)).await;
                publish(&node).await;
            }
            _ = node.shutdown.cancelled() => return,
        }
    }
}

/// Writes this node's status and sends it to every peer.
pub async fn publish(node: &Arc<Node>) {
    if node.draining() {
        // Leaving deleted the row; a late write must not bring it back.
        return;
    }
    let status = node.status().await;
    if let Err(e) = node.db.put_node_status(&status).await {
        tracing::warn!(error = %e, "cannot write this node's status row");
    }
    let input = StatusChangedInput {
        node_id: node.id.clone(),
        exiting: false,
        status: Some(status),
    };
    broadcast(node, "NodeService.StatusChanged", input);
}

/// Sends one RPC to every peer, in the background.
pub fn broadcast<I: serde::Serialize + Clone + Send + Sync + 'static>(
    node: &Arc<Node>,
    method: &'static str,
    input: I,
) {
    for link in node.cluster.links() {
        let input = input.clone();
        let node = node.clone();
        tokio::spawn(async move {
            let r: Result<serde_json::Value, _> = link.rpc.call(method, &input).await;
            if let Err(e) = r {
                tracing::debug!(peer = %link.node_id, method, error = %e, "broadcast failed");
                if !matches!(e, maelstromd_api::client::CallError::Rpc(_)) {
                    peer_failed(&node, &link.node_id).await;
                }
            }
        });
    }
}

/// Tells every peer about component puts and removals (spec §11); receivers refresh caches
/// and retarget convergers.
pub fn notify_data_changed(node: &Arc<Node>, changes: Vec<DataChange>) {
    if changes.is_empty() {
        return;
    }
    let input = NotifyDataChangedInput {
        node_id: node.id.clone(),
        changes,
    };
    broadcast(node, "MaelstromService.NotifyDataChanged", input);
}

/// One membership round.
pub async fn refresh(node: &Arc<Node>) {
    if node.draining() {
        return;
    }
    let status = node.status().await;
    if let Err(e) = node.db.put_node_status(&status).await {
        tracing::warn!(error = %e, "cannot write this node's status row");
    }
    let cutoff = now_ms() - node.cfg.node_liveness.as_millis() as i64;
    if let Err(e) = node.db.delete_stale_node_status(cutoff).await {
        tracing::warn!(error = %e, "cannot delete stale status rows");
    }
    let rows = match node.db.list_node_status().await {
        Ok(rows) => rows,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the status rows");
            return;
        }
    };
    let mut checks = Vec::new();
    for row in rows {
        if row.node_id == node.id {
            continue;
        }
        if row.peer_url == node.peer_url && !is_loopback_url(&node.peer_url) {
            // A row that carries this node's own address under another id is a previous
            // identity of this machine.
            let _ = node.db.delete_node_status(&row.node_id).await;
            continue;
        }
        let token = node.cfg.private_token.clone();
        checks.push(async move {
            let link = PeerLink::new(&row.node_id, &row.peer_url, token);
            link.healthy().await.then_some(row)
        });
    }
    let alive: Vec<NodeStatus> = futures_util::future::join_all(checks)
        .await
        .into_iter()
        .flatten()
        .collect();
    node.cluster.replace(alive);
    sync_dispensers(node).await;
}

fn is_loopback_url(url: &str) -> bool {
    url.contains("://127.") || url.contains("://localhost") || url.contains("://[::1]")
}

/// Leaving: delete this node's row and tell every peer (spec §15 step 1).
pub async fn leave(node: &Arc<Node>) {
    let _ = node.db.delete_node_status(&node.id).await;
    let input = StatusChangedInput {
        node_id: node.id.clone(),
        exiting: true,
        status: None,
    };
    let calls = node.cluster.links().into_iter().map(|link| {
        let input = input.clone();
        async move {
            let _: Result<serde_json::Value, _> =
                link.rpc.call("NodeService.StatusChanged", &input).await;
        }
    });
    let _ = tokio::time::timeout(
        Duration::from_secs(5),
        futures_util::future::join_all(calls),
    )
    .await;
}
