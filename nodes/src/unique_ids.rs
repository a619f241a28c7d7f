//! Challenge 2, unique ids: `<node id>-<local counter>` is unique cluster-wide without any
//! coordination, so the node stays available under any partition.

use maelnode::{Node, Request};
use serde::de::IgnoredAny;
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};

/// The unique-ids node.
pub fn node() -> Node<AtomicU64> {
    Node::builder(AtomicU64::new(0)).on(
        "generate",
        |req: Request<AtomicU64>, _: IgnoredAny| async move {
            let n = req.state().fetch_add(1, Ordering::Relaxed);
            let id = format!("{}-{n}", req.node_id());
            req.reply(json!({ "id": id }))
        },
    )
}
