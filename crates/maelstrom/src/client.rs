//! A client `c<k>`: one outstanding request at a time; accepts only the reply whose
//! `in_reply_to` is its request's `msg_id`, as the original's clients do.

use crate::net::{Msg, Net};
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// One client endpoint on the network.
pub struct Client {
    /// The client's id.
    pub id: String,
    net: Arc<Net>,
    rx: mpsc::UnboundedReceiver<Msg>,
    next_msg_id: u64,
}

impl Client {
    /// Opens a client with the next global `c<k>` number.
    pub fn open(net: &Arc<Net>) -> Client {
        let (id, rx) = net.open_client();
        Client {
            id,
            net: Arc::clone(net),
            rx,
            next_msg_id: 1,
        }
    }

    /// Sends `body` (with a fresh `msg_id`) to `dest` and waits up to `timeout` for the reply
    /// body. `None` means the timeout passed.
    pub async fn rpc(
        &mut self,
        dest: &str,
        mut body: Map<String, Value>,
        timeout: Duration,
    ) -> Option<Map<String, Value>> {
        let msg_id = self.next_msg_id;
        self.next_msg_id += 1;
        body.insert("msg_id".into(), msg_id.into());
        self.net
            .send(&self.id, dest, Value::Object(body).to_string());
        let wait = async {
            while let Some(m) = self.rx.recv().await {
                let Ok(Value::Object(reply)) = serde_json::from_str::<Value>(&m.body) else {
                    continue;
                };
                if reply.get("in_reply_to").and_then(Value::as_u64) == Some(msg_id) {
                    return Some(reply);
                }
            }
            None
        };
        tokio::time::timeout(timeout, wait).await.ok().flatten()
    }

    /// Closes the client: replies that arrive later are dropped as `:closed-client`.
    pub fn close(self) {
        self.net.close_client(&self.id);
    }
}
