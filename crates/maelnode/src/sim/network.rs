//! The simulated network: message ids, seeded per-link latency, partitions, delivery rules,
//! strict deadline-ordered delivery, the built-in services, and the trace.
//!
//! All of it is one state behind one lock, driven by one delivery task, so the order of
//! deliveries is a pure function of the seed and the sequence of sends.

use crate::context::Core;
use maelstrom_services::seed;
use maelstrom_services::{Service, ServiceKind};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// One message in flight.
///
/// ```
/// let e = maelnode::sim::Envelope { id: 0, src: "c0".into(), dest: "n0".into(), body: serde_json::json!({"type": "read"}) };
/// assert_eq!(e.msg_type(), "read");
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Envelope {
    /// The network-wide message number, assigned at send time from 0.
    pub id: u64,
    /// Sender.
    pub src: String,
    /// Destination.
    pub dest: String,
    /// The body.
    pub body: Value,
}

impl Envelope {
    /// The body's `type`, or `""`.
    ///
    /// ```
    /// let e = maelnode::sim::Envelope { id: 0, src: "n0".into(), dest: "n1".into(), body: serde_json::json!({}) };
    /// assert_eq!(e.msg_type(), "");
    /// ```
    pub fn msg_type(&self) -> &str {
        self.body.get("type").and_then(Value::as_str).unwrap_or("")
    }

    /// The line a node reads: `{"id":…,"src":…,"dest":…,"body":…}` plus `\n`, as the runner writes it.
    pub(crate) fn to_line(&self) -> String {
        let mut line = serde_json::json!({"id": self.id, "src": self.src, "dest": self.dest, "body": self.body}).to_string();
        line.push('\n');
        line
    }
}

/// The latency of node↔node and node↔service messages; client edges always have none.
///
/// ```
/// use maelnode::sim::Latency;
/// use std::time::Duration;
/// let l = Latency::Exponential(Duration::from_millis(50));
/// # let _ = l;
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Latency {
    /// Exactly this long (keeps each link FIFO).
    Constant(Duration),
    /// Whole milliseconds uniform in `[0, 2 × mean)`.
    Uniform(Duration),
    /// Exponentially distributed with this mean.
    Exponential(Duration),
}

/// What happened to a message, as recorded in the trace.
///
/// ```
/// assert_ne!(maelnode::sim::TraceKind::Send, maelnode::sim::TraceKind::Deliver);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub enum TraceKind {
    /// Sent (every message, also those later dropped).
    Send,
    /// Delivered to its destination.
    Deliver,
    /// Dropped; the reason is `partition`, `dead-node`, `unknown-dest` or `rule`.
    Drop(&'static str),
    /// Held back by a hold rule until released.
    Hold,
}

/// One trace record.
///
/// ```
/// # async fn f(sim: maelnode::sim::Sim) {
/// for ev in sim.trace().iter().filter(|e| e.kind == maelnode::sim::TraceKind::Deliver) {
///     println!("{:?} {} -> {}: {}", ev.time, ev.message.src, ev.message.dest, ev.message.body);
/// }
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct TraceEvent {
    /// Virtual time since the simulation started.
    pub time: Duration,
    /// What happened.
    pub kind: TraceKind,
    /// The message.
    pub message: Envelope,
}

/// Counters over the whole run.
///
/// ```
/// # async fn f(sim: maelnode::sim::Sim) {
/// let s = sim.stats();
/// assert!(s.delivered + s.dropped + s.held + s.in_flight >= s.sent);
/// # }
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SimStats {
    /// Messages sent by anyone.
    pub sent: u64,
    /// Messages delivered.
    pub delivered: u64,
    /// Messages dropped (partitions, dead nodes, unknown destinations, drop rules).
    pub dropped: u64,
    /// Messages currently held by hold rules.
    pub held: u64,
    /// Messages sent but not yet delivered, dropped or held.
    pub in_flight: u64,
    /// Messages between two nodes (services excluded).
    pub node_to_node: u64,
    /// Requests sent by clients, by `type`.
    pub client_ops: BTreeMap<String, u64>,
    /// RPCs the live nodes are still waiting on.
    pub pending_rpcs: usize,
}

/// A predicate over messages, for hold and drop rules.
pub(crate) type Rule = Box<dyn Fn(&Envelope) -> bool + Send>;

pub(crate) enum Endpoint {
    Node {
        input: mpsc::UnboundedSender<String>,
        core: Arc<Core>,
    },
    DeadNode,
    Client(mpsc::UnboundedSender<Envelope>),
    Service(Box<dyn Service>),
}

pub(crate) struct Net {
    pub(crate) seed: u64,
    latency: Latency,
    start: Instant,
    next_id: u64,
    queue: BinaryHeap<Reverse<(Instant, u64)>>,
    in_flight: HashMap<u64, Envelope>,
    pub(crate) endpoints: HashMap<String, Endpoint>,
    /// dest → the sources whose messages it does not receive.
    pub(crate) partitions: HashMap<String, HashSet<String>>,
    link_rngs: HashMap<(String, String), ChaCha8Rng>,
    pub(crate) hold_rules: Vec<Rule>,
    pub(crate) drop_rules: Vec<Rule>,
    pub(crate) held: Vec<Envelope>,
    pub(crate) manual: bool,
    pub(crate) trace: Vec<TraceEvent>,
    pub(crate) stats: SimStats,
}

impl Net {
    pub(crate) fn new(seed: u64, latency: Latency) -> Net {
        let endpoints = ServiceKind::ALL
            .into_iter()
            .map(|k| (k.id().to_string(), Endpoint::Service(k.build(seed))))
            .collect();
        Net {
            seed,
            latency,
            start: Instant::now(),
            next_id: 0,
            queue: BinaryHeap::new(),
            in_flight: HashMap::new(),
            endpoints,
            partitions: HashMap::new(),
            link_rngs: HashMap::new(),
            hold_rules: Vec::new(),
            drop_rules: Vec::new(),
            held: Vec::new(),
            manual: false,
            trace: Vec::new(),
            stats: SimStats::default(),
        }
    }

    pub(crate) fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    fn record(&mut self, kind: TraceKind, message: &Envelope) {
        self.trace.push(TraceEvent {
            time: self.start.elapsed(),
            kind,
            message: message.clone(),
        });
    }

    fn sample_latency(&mut self, src: &str, dest: &str) -> Duration {
        if src.starts_with('c') || dest.starts_with('c') {
            return Duration::ZERO;
        }
        let seed = self.seed;
        let rng = self
            .link_rngs
            .entry((src.to_string(), dest.to_string()))
            .or_insert_with(|| seed::stream(seed, &format!("latency/{src}/{dest}")));
        match self.latency {
            Latency::Constant(d) => d,
            Latency::Uniform(mean) => {
                let ms = mean.as_millis() as u64;
                Duration::from_millis(if ms == 0 { 0 } else { rng.gen_range(0..2 * ms) })
            }
            Latency::Exponential(mean) => {
                let u: f64 = rng.gen_range(f64::EPSILON..1.0);
                mean.mul_f64(-u.ln())
            }
        }
    }

    /// Assigns an id, records the send and queues the message for delivery.
    pub(crate) fn send(&mut self, src: &str, dest: &str, body: Value) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let env = Envelope {
            id,
            src: src.to_string(),
            dest: dest.to_string(),
            body,
        };
        self.stats.sent += 1;
        if src.starts_with('c') {
            *self
                .stats
                .client_ops
                .entry(env.msg_type().to_string())
                .or_default() += 1;
        }
        let is_node = |id: &str| !id.starts_with('c') && ServiceKind::from_id(id).is_none();
        if is_node(src) && is_node(dest) {
            self.stats.node_to_node += 1;
        }
        self.record(TraceKind::Send, &env);
        let deadline = Instant::now() + self.sample_latency(src, dest);
        self.queue.push(Reverse((deadline, id)));
        self.in_flight.insert(id, env);
        id
    }

    /// The earliest deadline, unless delivery is manual.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        if self.manual {
            return None;
        }
        self.queue.peek().map(|Reverse((t, _))| *t)
    }

    /// Removes and returns the earliest queued message.
    pub(crate) fn pop(&mut self) -> Option<Envelope> {
        let Reverse((_, id)) = self.queue.pop()?;
        self.in_flight.remove(&id)
    }

    /// Puts a message back into the queue for delivery now.
    pub(crate) fn requeue(&mut self, env: Envelope) {
        self.queue.push(Reverse((Instant::now(), env.id)));
        self.in_flight.insert(env.id, env);
    }

    /// Delivers one message: applies partitions and rules, then hands it to its endpoint.
    pub(crate) fn deliver(&mut self, env: Envelope) {
        let cut = self
            .partitions
            .get(&env.dest)
            .is_some_and(|srcs| srcs.contains(&env.src));
        if cut {
            return self.drop_msg(env, "partition");
        }
        if self.drop_rules.iter().any(|r| r(&env)) {
            return self.drop_msg(env, "rule");
        }
        if self.hold_rules.iter().any(|r| r(&env)) {
            self.record(TraceKind::Hold, &env);
            self.held.push(env);
            return;
        }
        let now = self.start.elapsed();
        let reply = match self.endpoints.get_mut(&env.dest) {
            None => return self.drop_msg(env, "unknown-dest"),
            Some(Endpoint::DeadNode) => return self.drop_msg(env, "dead-node"),
            Some(Endpoint::Node { input, .. }) => {
                let _ = input.send(env.to_line());
                None
            }
            Some(Endpoint::Client(tx)) => {
                let _ = tx.send(env.clone());
                None
            }
            Some(Endpoint::Service(svc)) => match env.body.as_object() {
                Some(body) => svc.handle(now, &env.src, body),
                None => None,
            },
        };
        self.stats.delivered += 1;
        self.record(TraceKind::Deliver, &env);
        if let Some(reply) = reply {
            self.send(&env.dest, &env.src, reply);
        }
    }

    fn drop_msg(&mut self, env: Envelope, reason: &'static str) {
        self.stats.dropped += 1;
        self.record(TraceKind::Drop(reason), &env);
    }

    pub(crate) fn snapshot_stats(&self) -> SimStats {
        let mut s = self.stats.clone();
        s.held = self.held.len() as u64;
        s.in_flight = self.in_flight.len() as u64;
        s.pending_rpcs = self
            .endpoints
            .values()
            .map(|e| match e {
                Endpoint::Node { core, .. } => core.pending_count(),
                _ => 0,
            })
            .sum();
        s
    }
}
