//! The pn-counter workload: a state-based CRDT of two grow-only counters per node (increments
//! and decrements), gossiped in full to every peer and merged by per-node maximum. Always
//! available; converges within a tick of a partition healing.

use maelnode::{Ctx, Node, Request};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// Per node: (sum of increments, sum of decrements).
#[derive(Default)]
pub struct PnCounter(Mutex<BTreeMap<String, (u64, u64)>>);

#[derive(Deserialize)]
struct Add {
    delta: i64,
}

#[derive(Deserialize)]
struct State {
    counts: BTreeMap<String, (u64, u64)>,
}

async fn gossip(ctx: Ctx<PnCounter>) {
    let counts = ctx.state().0.lock().expect("counter lock").clone();
    for peer in ctx.peers() {
        let _ = ctx.send(peer, json!({"type": "pn_state", "counts": counts}));
    }
}

/// The pn-counter node.
pub fn node() -> Node<PnCounter> {
    Node::builder(PnCounter::default())
        .on("add", |req: Request<PnCounter>, body: Add| async move {
            {
                let mut counts = req.state().0.lock().expect("counter lock");
                let mine = counts.entry(req.node_id().to_string()).or_default();
                if body.delta >= 0 {
                    mine.0 += body.delta as u64;
                } else {
                    mine.1 += body.delta.unsigned_abs();
                }
            }
            req.reply_ok()
        })
        .on(
            "read",
            |req: Request<PnCounter>, _: IgnoredAny| async move {
                let value: i64 = req
                    .state()
                    .0
                    .lock()
                    .expect("counter lock")
                    .values()
                    .map(|(p, n)| *p as i64 - *n as i64)
                    .sum();
                req.reply(json!({ "value": value }))
            },
        )
        .on(
            "pn_state",
            |req: Request<PnCounter>, body: State| async move {
                let mut counts = req.state().0.lock().expect("counter lock");
                for (node, (p, n)) in body.counts {
                    let mine = counts.entry(node).or_default();
                    *mine = (mine.0.max(p), mine.1.max(n));
                }
                Ok(())
            },
        )
        .every(Duration::from_millis(100), gossip)
}
