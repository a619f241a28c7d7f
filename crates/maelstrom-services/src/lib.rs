//! The parts of a Maelstrom network that are not user nodes: the four built-in services
//! (`lin-kv`, `seq-kv`, `lww-kv`, `lin-tso`), the error registry, the broadcast topologies, and
//! the derivation of independent random streams from one seed.
//!
//! Both maelnode's in-process simulator and the `maelstrom` runner use this crate, so a node
//! tested in the simulator meets exactly the service semantics it meets in a real run.
//!
//! Services are plain state machines: [`Service::handle`] takes one request body and returns
//! the reply body (or nothing). Latency, ordering and delivery belong to the caller.
//!
//! ```
//! use maelstrom_services::{Service, ServiceKind};
//! use serde_json::json;
//!
//! let mut kv = ServiceKind::LinKv.build(7);
//! let req = json!({"type": "write", "key": 1, "value": 5, "msg_id": 3});
//! let reply = kv.handle(std::time::Duration::ZERO, "n1", req.as_object().unwrap()).unwrap();
//! assert_eq!(reply, json!({"type": "write_ok", "in_reply_to": 3}));
//! ```
#![deny(missing_docs)]

pub mod errors;
mod kv;
pub mod seed;
pub mod topology;

pub use kv::{LinKv, LinTso, LwwKv, SeqKv};

use serde_json::{Map, Value, json};
use std::time::Duration;

/// A built-in service: handles one request at a time, in arrival order.
pub trait Service: Send {
    /// The service's node id, e.g. `"lin-kv"`.
    fn id(&self) -> &'static str;

    /// Handles one request body sent by `src` at simulated time `now` (since the start of the
    /// run). Returns the reply body, with `in_reply_to` set and no `msg_id`, or `None` when the
    /// request carried no `msg_id` (it is still executed, as in the original).
    ///
    /// ```
    /// use maelstrom_services::{Service, ServiceKind};
    /// use serde_json::json;
    /// let mut tso = ServiceKind::LinTso.build(1);
    /// let r = tso.handle(Default::default(), "n1", json!({"type": "ts", "msg_id": 1}).as_object().unwrap());
    /// assert_eq!(r.unwrap()["ts"], json!(0));
    /// ```
    fn handle(&mut self, now: Duration, src: &str, body: &Map<String, Value>) -> Option<Value>;
}

/// The four services every Maelstrom network offers.
///
/// ```
/// use maelstrom_services::ServiceKind;
/// assert_eq!(ServiceKind::ALL.map(|k| k.id()), ["lin-kv", "lin-tso", "lww-kv", "seq-kv"]);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ServiceKind {
    /// Linearizable key-value store.
    LinKv,
    /// Linearizable timestamp oracle.
    LinTso,
    /// Last-write-wins store of five gossiping replicas.
    LwwKv,
    /// Sequentially consistent key-value store.
    SeqKv,
}

impl ServiceKind {
    /// Every service, in the order the original lists them at start-up.
    pub const ALL: [ServiceKind; 4] = [
        ServiceKind::LinKv,
        ServiceKind::LinTso,
        ServiceKind::LwwKv,
        ServiceKind::SeqKv,
    ];

    /// The node id under which the service is addressed.
    ///
    /// ```
    /// assert_eq!(maelstrom_services::ServiceKind::SeqKv.id(), "seq-kv");
    /// ```
    pub fn id(self) -> &'static str {
        match self {
            ServiceKind::LinKv => "lin-kv",
            ServiceKind::LinTso => "lin-tso",
            ServiceKind::LwwKv => "lww-kv",
            ServiceKind::SeqKv => "seq-kv",
        }
    }

    /// The service with this node id, if it is one.
    ///
    /// ```
    /// use maelstrom_services::ServiceKind;
    /// assert_eq!(ServiceKind::from_id("lww-kv"), Some(ServiceKind::LwwKv));
    /// assert_eq!(ServiceKind::from_id("n1"), None);
    /// ```
    pub fn from_id(id: &str) -> Option<ServiceKind> {
        Self::ALL.into_iter().find(|k| k.id() == id)
    }

    /// What the service promises its callers, in a paragraph (for `maelstrom doc`).
    pub fn about(self) -> &'static str {
        match self {
            ServiceKind::LinKv => {
                "A linearizable key-value store: one state, every operation applied atomically \
                 in arrival order."
            }
            ServiceKind::SeqKv => {
                "A sequentially consistent key-value store. Each node sees a monotonic view, \
                 but reads may be stale: a node keeps reading an old state until it changes \
                 something. The usual remedy is to write a unique value (e.g. to a key of the \
                 node's own) before a read that must be current. Two nodes may both succeed at \
                 a cas that leaves a value unchanged on a stale state."
            }
            ServiceKind::LwwKv => {
                "A last-write-wins store of five replicas that gossip: each request runs on a \
                 random replica, so reads may be stale and may go backwards, and concurrent \
                 writes are resolved by timestamp. The replicas converge within 100 ms once \
                 traffic stops. (The original keeps two replicas that never merge and ignores \
                 `create_if_not_exists`; this one behaves as the original documents.)"
            }
            ServiceKind::LinTso => {
                "A linearizable timestamp oracle: every `ts` returns a strictly greater \
                 integer, starting at 0."
            }
        }
    }

    /// The requests the service answers, as example request body, example reply body and the
    /// errors it may answer instead (for `maelstrom doc`). Replies carry `in_reply_to` and no
    /// `msg_id`.
    pub fn requests(self) -> &'static [(&'static str, &'static str, &'static str)] {
        const KV: &[(&str, &str, &str)] = &[
            (
                r#"{"type": "read", "key": 1}"#,
                r#"{"type": "read_ok", "value": 3}"#,
                "20 (key-does-not-exist) if the key is missing",
            ),
            (
                r#"{"type": "write", "key": 1, "value": 3}"#,
                r#"{"type": "write_ok"}"#,
                "",
            ),
            (
                r#"{"type": "cas", "key": 1, "from": 3, "to": 4, "create_if_not_exists": false}"#,
                r#"{"type": "cas_ok"}"#,
                "22 (precondition-failed) if the value is not `from`; 20 if the key is missing, \
                 unless `create_if_not_exists` is true (then the key is created with `to`)",
            ),
        ];
        match self {
            ServiceKind::LinTso => &[(r#"{"type": "ts"}"#, r#"{"type": "ts_ok", "ts": 0}"#, "")],
            _ => KV,
        }
    }

    /// A fresh service whose random choices come from the stream `service/<id>` of `seed`.
    ///
    /// ```
    /// use maelstrom_services::ServiceKind;
    /// assert_eq!(ServiceKind::LinKv.build(3).id(), "lin-kv");
    /// ```
    pub fn build(self, seed: u64) -> Box<dyn Service> {
        let rng = seed::stream(seed, &format!("service/{}", self.id()));
        match self {
            ServiceKind::LinKv => Box::new(LinKv::default()),
            ServiceKind::LinTso => Box::new(LinTso::default()),
            ServiceKind::LwwKv => Box::new(LwwKv::new(rng)),
            ServiceKind::SeqKv => Box::new(SeqKv::new(rng)),
        }
    }
}

/// An error reply body with Maelstrom's `code` and `text`.
///
/// ```
/// let e = maelstrom_services::error_body(20, "key does not exist");
/// assert_eq!(e["code"], 20);
/// ```
pub fn error_body(code: u32, text: impl Into<String>) -> Value {
    json!({"type": "error", "code": code, "text": text.into()})
}
