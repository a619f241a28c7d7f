//! The g-set workload: a grow-only set, replicated like broadcast (see the gossip module).

use crate::gossip::{self, GossipSet};
use maelnode::{Node, Request};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::{Value, json};

/// The g-set node's state.
#[derive(Default)]
pub struct GSet(GossipSet);

impl AsRef<GossipSet> for GSet {
    fn as_ref(&self) -> &GossipSet {
        &self.0
    }
}

#[derive(Deserialize)]
struct Add {
    element: Value,
}

/// The g-set node.
pub fn node() -> Node<GSet> {
    Node::builder(GSet::default())
        .on("add", |req: Request<GSet>, body: Add| async move {
            gossip::add_from_client(&req, body.element);
            req.reply_ok()
        })
        .on("read", |req: Request<GSet>, _: IgnoredAny| async move {
            let value = req.state().0.read();
            req.reply(json!({ "value": value }))
        })
        .on_json("gossip", gossip::on_gossip)
        .every(gossip::TICK, gossip::tick)
}
