//! Challenge 1, echo: answer each `echo` with the same payload.

use maelnode::{Node, Request};
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Deserialize)]
struct Echo {
    echo: Value,
}

#[derive(Serialize)]
struct EchoOk {
    echo: Value,
}

/// The echo node.
pub fn node() -> Node<()> {
    Node::builder(()).on("echo", |req: Request<()>, body: Echo| async move {
        req.reply(EchoOk { echo: body.echo })
    })
}
