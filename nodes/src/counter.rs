//! Challenge 4, grow-only counter on `seq-kv`.
//!
//! Each node owns the key `count/<node>` and writes its running total there; nobody else
//! writes it, so no cas races exist. An `add` is acknowledged once counted locally and a timer
//! flushes the total to `seq-kv`. A `read` first writes a fresh value to the node's own
//! `sync/<node>` key: any change to `seq-kv` brings the node's view up to the newest state,
//! so the reads that follow are not stale. Then it sums every node's key.

use maelnode::{Ctx, Node, Request};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Per-node counter state.
#[derive(Default)]
pub struct Counter {
    /// Everything this node has acknowledged.
    local: AtomicU64,
    /// The total last written to `seq-kv`.
    flushed: AtomicU64,
    /// Makes each sync write unique.
    syncs: AtomicU64,
}

#[derive(Deserialize)]
struct Add {
    delta: u64,
}

fn count_key(node: &str) -> String {
    format!("count/{node}")
}

/// Writes this node's total to `seq-kv` when it has grown. Runs never overlap, so a slow
/// older write cannot land after a newer one.
async fn flush(ctx: Ctx<Counter>) {
    let total = ctx.state().local.load(Ordering::SeqCst);
    if total > ctx.state().flushed.load(Ordering::SeqCst)
        && ctx
            .seq_kv()
            .write(count_key(ctx.node_id()), total)
            .await
            .is_ok()
    {
        ctx.state().flushed.store(total, Ordering::SeqCst);
    }
}

/// The g-counter node.
pub fn node() -> Node<Counter> {
    Node::builder(Counter::default())
        .on("add", |req: Request<Counter>, body: Add| async move {
            req.state().local.fetch_add(body.delta, Ordering::SeqCst);
            req.reply_ok()
        })
        .on("read", |req: Request<Counter>, _: IgnoredAny| async move {
            let kv = req.seq_kv();
            let sync = req.state().syncs.fetch_add(1, Ordering::SeqCst);
            kv.write(format!("sync/{}", req.node_id()), sync).await?;
            let mut total = req.state().local.load(Ordering::SeqCst);
            for peer in req.peers().map(String::from).collect::<Vec<_>>() {
                total += kv.read_as::<u64>(count_key(&peer)).await?.unwrap_or(0);
            }
            req.reply(json!({ "value": total }))
        })
        .every(Duration::from_millis(100), flush)
}
