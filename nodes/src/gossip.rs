//! A grow-only set replicated by batched, acknowledged gossip; shared by broadcast and g-set.
//!
//! Nodes gossip over a star rooted at the first node (the offered topology is ignored, as the
//! challenge allows): a value crosses at most two hops. Every tick each node sends each
//! neighbour, in one message, the values it has neither acknowledged nor been sent within the
//! last ack timeout; an ack (or the neighbour's own gossip) marks them known. Batches pipeline
//! (a tick never waits for the previous batch's ack), batching keeps messages per operation
//! low, and resending until acknowledged makes the set survive partitions.

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

/// The replicated set and what each neighbour is known to hold.
#[derive(Default)]
pub struct GossipSet {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Values by their JSON text, which is how values are compared.
    values: HashMap<String, Value>,
    known_by: HashMap<String, HashSet<String>>,
    /// Per neighbour: values sent and not yet acknowledged, with when they were sent.
    in_flight: HashMap<String, HashMap<String, Instant>>,
}

impl GossipSet {
    /// Adds values heard from `from` (a neighbour, or a client when `None`).
    pub(crate) fn add(&self, from: Option<&str>, values: impl IntoIterator<Item = Value>) {
        let mut inner = self.inner.lock().expect("gossip lock");
        for v in values {
            let key = v.to_string();
            if let Some(peer) = from {
                inner
                    .known_by
                    .entry(peer.to_string())
                    .or_default()
                    .insert(key.clone());
            }
            inner.values.insert(key, v);
        }
    }

    /// Every value, in a stable order.
    pub(crate) fn read(&self) -> Vec<Value> {
        let inner = self.inner.lock().expect("gossip lock");
        let mut keyed: Vec<_> = inner.values.iter().collect();
        keyed.sort_by(|a, b| a.0.cmp(b.0));
        keyed.into_iter().map(|(_, v)| v.clone()).collect()
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
        let batch: Vec<(String, Value)> = {
            let mut guard = ctx.state().as_ref().inner.lock().expect("gossip lock");
            let inner = &mut *guard;
            let known = inner.known_by.get(&peer);
            let flying = inner.in_flight.entry(peer.clone()).or_default();
            let batch: Vec<_> = inner
                .values
                .iter()
                .filter(|(k, _)| known.is_none_or(|kn| !kn.contains(*k)))
                .filter(|(k, _)| {
                    flying
                        .get(*k)
                        .is_none_or(|sent| now.duration_since(*sent) >= ACK_TIMEOUT)
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            for (k, _) in &batch {
                flying.insert(k.clone(), now);
            }
            batch
        };
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
                let mut inner = c.state().as_ref().inner.lock().expect("gossip lock");
                let flying = inner.in_flight.entry(peer.clone()).or_default();
                for (k, _) in &batch {
                    flying.remove(k);
                }
                inner
                    .known_by
                    .entry(peer)
                    .or_default()
                    .extend(batch.into_iter().map(|(k, _)| k));
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
