//! A grow-only set replicated by batched, acknowledged gossip; shared by broadcast and g-set.
//!
//! Nodes gossip over a star rooted at the first node (the offered topology is ignored, as the
//! challenge allows): a value crosses at most two hops. Every tick each node sends each
//! neighbour, in one message, the values it has neither acknowledged nor been sent within the
//! last ack timeout; an ack (or the neighbour's own gossip) marks them known. Batches pipeline
//! (a tick never waits for the previous batch's ack), batching keeps messages per operation
//! low, and resending until acknowledged makes the set survive partitions.
//!
//! A tick costs what it sends, not the size of the set: values are kept in arrival order and
//! each neighbour has a cursor into that log plus the few values awaiting its ack. The hub of a
//! 1,000-node star would otherwise rescan every value for each of 999 neighbours ten times a
//! second.

use maelnode::{Ctx, Request};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// How often each node gossips.
pub(crate) const TICK: Duration = Duration::from_millis(100);
/// How long a gossip waits for its ack before the values are offered again.
const ACK_TIMEOUT: Duration = Duration::from_millis(400);

/// The replicated set and what each neighbour still needs.
#[derive(Default)]
pub struct GossipSet {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Values by their JSON text, which is how values are compared.
    values: HashMap<String, Value>,
    /// Keys of `values` in arrival order.
    log: Vec<String>,
    peers: HashMap<String, Peer>,
}

/// What one neighbour has been sent.
#[derive(Default)]
struct Peer {
    /// `log[..cursor]` has been offered to it.
    cursor: usize,
    /// Values it sent us since the last tick, so it needs none of them back.
    has: HashSet<String>,
    /// Values sent and not yet acknowledged, with when they were last sent.
    in_flight: HashMap<String, Instant>,
}

impl GossipSet {
    /// Adds values heard from `from` (a neighbour, or a client when `None`).
    pub(crate) fn add(&self, from: Option<&str>, values: impl IntoIterator<Item = Value>) {
        let mut guard = self.inner.lock().expect("gossip lock");
        let inner = &mut *guard;
        for v in values {
            let key = v.to_string();
            if let Some(peer) = from {
                let p = inner.peers.entry(peer.to_string()).or_default();
                p.in_flight.remove(&key);
                p.has.insert(key.clone());
            }
            if !inner.values.contains_key(&key) {
                inner.log.push(key.clone());
                inner.values.insert(key, v);
            }
        }
    }

    /// Every value, in a stable order.
    pub(crate) fn read(&self) -> Vec<Value> {
        let inner = self.inner.lock().expect("gossip lock");
        let mut keyed: Vec<_> = inner.values.iter().collect();
        keyed.sort_by(|a, b| a.0.cmp(b.0));
        keyed.into_iter().map(|(_, v)| v.clone()).collect()
    }

    /// What `peer` should be sent now: values past its cursor it does not have, and values
    /// whose ack is overdue. Marks them in flight.
    fn batch_for(&self, peer: &str, now: Instant) -> Vec<(String, Value)> {
        let mut guard = self.inner.lock().expect("gossip lock");
        let inner = &mut *guard;
        let p = inner.peers.entry(peer.to_string()).or_default();
        let mut keys: Vec<String> = inner.log[p.cursor..]
            .iter()
            .filter(|k| !p.has.contains(*k))
            .cloned()
            .collect();
        p.cursor = inner.log.len();
        p.has.clear();
        keys.extend(
            p.in_flight
                .iter()
                .filter(|(_, sent)| now.duration_since(**sent) >= ACK_TIMEOUT)
                .map(|(k, _)| k.clone()),
        );
        keys.into_iter()
            .map(|k| {
                p.in_flight.insert(k.clone(), now);
                let v = inner.values[&k].clone();
                (k, v)
            })
            .collect()
    }

    /// `peer` acknowledged these values.
    fn acknowledged(&self, peer: &str, keys: impl IntoIterator<Item = String>) {
        let mut inner = self.inner.lock().expect("gossip lock");
        if let Some(p) = inner.peers.get_mut(peer) {
            for k in keys {
                p.in_flight.remove(&k);
            }
        }
    }
}

/// The neighbours of `me` in the star rooted at the first node.
fn neighbours<S: Send + Sync + 'static>(ctx: &Ctx<S>) -> Vec<String> {
    let Some(hub) = ctx.node_ids().first() else {
        return vec![];
    };
    if ctx.node_id() == hub {
        ctx.peers().map(String::from).collect()
    } else {
        vec![hub.clone()]
    }
}

/// One gossip round: each neighbour gets what it lacks, except values already on their way.
pub(crate) async fn tick<S: AsRef<GossipSet> + Send + Sync + 'static>(ctx: Ctx<S>) {
    let now = Instant::now();
    for peer in neighbours(&ctx) {
        let batch = ctx.state().as_ref().batch_for(&peer, now);
        if batch.is_empty() {
            continue;
        }
        let values: Vec<&Value> = batch.iter().map(|(_, v)| v).collect();
        let call = ctx
            .rpc(&peer, json!({"type": "gossip", "values": values}))
            .timeout(ACK_TIMEOUT);
        let c = ctx.clone();
        ctx.spawn(async move {
            if call.await.is_ok() {
                c.state()
                    .as_ref()
                    .acknowledged(&peer, batch.into_iter().map(|(k, _)| k));
            }
        });
    }
}

/// Adds a client's value and pushes it at once instead of at the next tick: a leaf sees too few
/// new values per tick for batching to save anything, so waiting would only add latency.
pub(crate) fn add_from_client<S: AsRef<GossipSet> + Send + Sync + 'static>(
    req: &Request<S>,
    value: Value,
) {
    req.state().as_ref().add(None, [value]);
    let ctx = req.ctx();
    req.spawn(tick(ctx));
}

/// Handles a neighbour's `gossip`: keep the values, remember the sender has them, ack.
pub(crate) async fn on_gossip<S: AsRef<GossipSet> + Send + Sync + 'static>(
    req: Request<S>,
    body: serde_json::Map<String, Value>,
) -> maelnode::HandlerResult {
    let values = match body.get("values") {
        Some(Value::Array(vs)) => vs.clone(),
        _ => return Err(maelnode::Error::malformed("gossip needs an array \"values\"").into()),
    };
    req.state().as_ref().add(Some(req.src()), values);
    req.reply_ok()
}
