//! Challenge 3, broadcast: every value broadcast to any node ends up readable on every node,
//! through partitions, with few messages per operation (see the gossip module).

use crate::gossip::{self, GossipSet};
use maelnode::{Node, Request};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::{Value, json};

/// The broadcast node's state: the replicated set of messages.
#[derive(Default)]
pub struct Broadcast(GossipSet);

impl AsRef<GossipSet> for Broadcast {
    fn as_ref(&self) -> &GossipSet {
        &self.0
    }
}

#[derive(Deserialize)]
struct Message {
    message: Value,
}

/// The broadcast node.
pub fn node() -> Node<Broadcast> {
    Node::builder(Broadcast::default())
        .on(
            "topology",
            |req: Request<Broadcast>, _: IgnoredAny| async move { req.reply_ok() },
        )
        .on(
            "broadcast",
            |req: Request<Broadcast>, body: Message| async move {
                gossip::add_from_client(&req, body.message);
                req.reply_ok()
            },
        )
        .on(
            "read",
            |req: Request<Broadcast>, _: IgnoredAny| async move {
                let messages = req.state().0.read();
                req.reply(json!({ "messages": messages }))
            },
        )
        .on_json("gossip", gossip::on_gossip)
        .every(gossip::TICK, gossip::tick)
}
