//! The simulated network (spec §3.2, §5): message ids, validation of node output, latency,
//! partitions, loss, dead nodes, and delivery in strict (deadline, id) order.
//!
//! One lock guards the whole state and one task delivers, so delivery order is a function of
//! the seed and the order of sends, and no destination's late message blocks another's.

use crate::console::Console;
use maelstrom_services::{Service, ServiceKind, seed};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

/// A message in flight. The body is kept as the sender's exact JSON text.
#[derive(Debug, Clone)]
pub struct Msg {
    /// Global message number, assigned at send time.
    pub id: u64,
    /// Sender.
    pub src: Arc<str>,
    /// Destination.
    pub dest: Arc<str>,
    /// The body's JSON text.
    pub body: Arc<str>,
}

impl Msg {
    /// The line a node reads: key order `id, src, dest, body`.
    fn to_line(&self) -> String {
        let mut line = String::with_capacity(self.body.len() + 64);
        line.push_str("{\"id\":");
        line.push_str(&self.id.to_string());
        line.push_str(",\"src\":");
        line.push_str(&serde_json::to_string(&*self.src).expect("string"));
        line.push_str(",\"dest\":");
        line.push_str(&serde_json::to_string(&*self.dest).expect("string"));
        line.push_str(",\"body\":");
        line.push_str(&self.body);
        line.push_str("}\n");
        line
    }
}

/// How latencies are drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LatencyDist {
    /// Exactly the mean.
    Constant,
    /// Whole milliseconds uniform in [0, 2·mean).
    Uniform,
    /// Exponential with the mean.
    Exponential,
}

/// Network settings from the command line.
pub struct NetConfig {
    /// The run's seed.
    pub seed: u64,
    /// Mean node↔node and node↔service latency in ms.
    pub latency_ms: u64,
    /// Its distribution.
    pub dist: LatencyDist,
    /// `--log-net-send`.
    pub log_send: bool,
    /// `--log-net-recv`.
    pub log_recv: bool,
}

enum Endpoint {
    Node {
        input: mpsc::UnboundedSender<String>,
        alive: bool,
    },
    Client(mpsc::UnboundedSender<Msg>),
    ClosedClient,
    Service(Box<dyn Service>),
}

/// Why a node's output line was not routed (spec §2.a).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum DropReason {
    /// Not a JSON object with string `src`/`dest` and an object `body`.
    Malformed,
    /// `src` is not a server or service.
    InvalidSrc,
    /// `dest` was never registered.
    UnknownDest,
    /// `dest` is a client that was closed.
    ClosedClient,
}

impl DropReason {
    /// The keyword used in results.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::InvalidSrc => "invalid-src",
            DropReason::UnknownDest => "unknown-dest",
            DropReason::ClosedClient => "closed-client",
        }
    }
}

/// One network event, for `messages.svg` (spec §11.3).
#[derive(Clone, Debug)]
pub enum Event {
    /// A message entered the network.
    Send(Msg),
    /// Message `id` reached its destination.
    Recv(u64),
    /// Message `id` was dropped, for this reason.
    Drop(u64, &'static str),
}

/// Events kept for the picture; it stops there.
pub const JOURNAL_MAX: usize = 10_000;

/// The first [`JOURNAL_MAX`] events (`init`/`init_ok` excluded) and whether more happened.
#[derive(Clone, Debug, Default)]
pub struct Journal {
    /// Events in order.
    pub events: Vec<Event>,
    /// Ids of the messages whose send was recorded.
    recorded: HashSet<u64>,
    /// Events were left out after the cap.
    pub truncated: bool,
}

impl Journal {
    pub(crate) fn push(&mut self, e: Event) {
        if self.events.len() >= JOURNAL_MAX {
            self.truncated = true;
            return;
        }
        if let Event::Recv(id) | Event::Drop(id, _) = &e
            && !self.recorded.contains(id)
        {
            return;
        }
        if let Event::Send(m) = &e {
            self.recorded.insert(m.id);
        }
        self.events.push(e);
    }
}

fn is_init(body: &str) -> bool {
    #[derive(Deserialize)]
    struct Type<'a> {
        #[serde(rename = "type", borrow)]
        kind: Option<&'a str>,
    }
    matches!(
        serde_json::from_str::<Type>(body),
        Ok(Type {
            kind: Some("init" | "init_ok")
        })
    )
}

/// Message counts for the `:net` checker.
#[derive(Clone, Debug, Default)]
pub struct NetStats {
    /// Sends with a client endpoint.
    pub client_sends: u64,
    /// Deliveries with a client endpoint.
    pub client_recvs: u64,
    /// Other sends (node↔node, node↔service).
    pub server_sends: u64,
    /// Other deliveries.
    pub server_recvs: u64,
    /// Node output lines dropped, by node and reason.
    pub dropped: BTreeMap<String, BTreeMap<DropReason, u64>>,
}

struct State {
    seed: u64,
    latency: Duration,
    dist: LatencyDist,
    next_id: u64,
    next_client: u64,
    queue: BinaryHeap<Reverse<(Instant, u64)>>,
    in_flight: HashMap<u64, Msg>,
    endpoints: HashMap<Arc<str>, Endpoint>,
    /// dest → sources it cannot hear.
    partitions: HashMap<String, HashSet<String>>,
    loss: Option<f64>,
    loss_rng: ChaCha8Rng,
    link_rngs: HashMap<(Arc<str>, Arc<str>), ChaCha8Rng>,
    stats: NetStats,
    spoof_warned: HashSet<String>,
    journal: Journal,
}

/// The network shared by nodes, clients and services.
pub struct Net {
    state: Mutex<State>,
    wake: Notify,
    start: Instant,
    console: Arc<Console>,
    log_send: bool,
    log_recv: bool,
    delivered: AtomicU64,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    src: Option<&'a str>,
    dest: Option<&'a str>,
    #[serde(borrow)]
    body: Option<&'a RawValue>,
}

fn is_client(id: &str) -> bool {
    id.starts_with('c')
}

impl Net {
    /// A network with the four services registered.
    pub fn new(cfg: NetConfig, console: Arc<Console>) -> Arc<Net> {
        let endpoints = ServiceKind::ALL
            .into_iter()
            .map(|k| (Arc::from(k.id()), Endpoint::Service(k.build(cfg.seed))))
            .collect();
        Arc::new(Net {
            state: Mutex::new(State {
                seed: cfg.seed,
                latency: Duration::from_millis(cfg.latency_ms),
                dist: cfg.dist,
                next_id: 0,
                next_client: 0,
                queue: BinaryHeap::new(),
                in_flight: HashMap::new(),
                endpoints,
                partitions: HashMap::new(),
                loss: None,
                loss_rng: seed::stream(cfg.seed, "lose"),
                link_rngs: HashMap::new(),
                stats: NetStats::default(),
                spoof_warned: HashSet::new(),
                journal: Journal::default(),
            }),
            wake: Notify::new(),
            start: Instant::now(),
            console,
            log_send: cfg.log_send,
            log_recv: cfg.log_recv,
            delivered: AtomicU64::new(0),
        })
    }

    /// Registers (or re-registers after a restart) a node and the channel to its stdin.
    pub fn add_node(&self, id: &str, input: mpsc::UnboundedSender<String>) {
        self.state
            .lock()
            .expect("net lock")
            .endpoints
            .insert(Arc::from(id), Endpoint::Node { input, alive: true });
    }

    /// Marks a node dead: messages reaching it are dropped until it is added again.
    pub fn kill_node(&self, id: &str) {
        if let Some(Endpoint::Node { alive, .. }) =
            self.state.lock().expect("net lock").endpoints.get_mut(id)
        {
            *alive = false;
        }
    }

    /// Opens a client `c<k>` with the next global number.
    pub fn open_client(&self) -> (String, mpsc::UnboundedReceiver<Msg>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut st = self.state.lock().expect("net lock");
        let id = format!("c{}", st.next_client);
        st.next_client += 1;
        st.endpoints
            .insert(Arc::from(id.as_str()), Endpoint::Client(tx));
        (id, rx)
    }

    /// Closes a client; late messages to it are dropped as `:closed-client`.
    pub fn close_client(&self, id: &str) {
        self.state
            .lock()
            .expect("net lock")
            .endpoints
            .insert(Arc::from(id), Endpoint::ClosedClient);
    }

    /// Sends a message from a client or service. `body` must be a JSON object's text.
    pub fn send(&self, src: &str, dest: &str, body: String) {
        let mut st = self.state.lock().expect("net lock");
        self.enqueue(&mut st, Arc::from(src), Arc::from(dest), Arc::from(body));
        drop(st);
        self.wake.notify_one();
    }

    /// Routes one line a node wrote to stdout, or drops it with a warning (spec §3.2).
    pub fn node_output(&self, writer: &str, line: &[u8]) {
        let env: Envelope = match serde_json::from_slice(line) {
            Ok(e) => e,
            Err(e) => {
                return self.drop_line(
                    writer,
                    DropReason::Malformed,
                    line,
                    &format!("not a JSON object: {e}"),
                );
            }
        };
        let (Some(src), Some(dest), Some(body)) = (env.src, env.dest, env.body) else {
            return self.drop_line(
                writer,
                DropReason::Malformed,
                line,
                "src, dest and body are required",
            );
        };
        if !body.get().starts_with('{') {
            return self.drop_line(
                writer,
                DropReason::Malformed,
                line,
                "body is not a JSON object",
            );
        }
        let mut st = self.state.lock().expect("net lock");
        let src_ok = matches!(
            st.endpoints.get(src),
            Some(Endpoint::Node { .. } | Endpoint::Service(_))
        );
        if !src_ok {
            drop(st);
            return self.drop_line(
                writer,
                DropReason::InvalidSrc,
                line,
                &format!("src {src:?} is not a server or service"),
            );
        }
        match st.endpoints.get(dest) {
            None => {
                drop(st);
                let why = format!("Invalid dest for message: no node or client named {dest:?}");
                return self.drop_line(writer, DropReason::UnknownDest, line, &why);
            }
            Some(Endpoint::ClosedClient) => {
                drop(st);
                return self.drop_line(
                    writer,
                    DropReason::ClosedClient,
                    line,
                    &format!("client {dest} is closed (a reply after its timeout?)"),
                );
            }
            _ => {}
        }
        if src != writer && st.spoof_warned.insert(writer.to_string()) {
            self.console.warn(format!("Node {writer} sent a message with src {src:?}; forwarding it (warned once per node)"));
        }
        self.enqueue(
            &mut st,
            Arc::from(src),
            Arc::from(dest),
            Arc::from(body.get()),
        );
        drop(st);
        self.wake.notify_one();
    }

    fn drop_line(&self, writer: &str, reason: DropReason, line: &[u8], why: &str) {
        let shown: String = String::from_utf8_lossy(line).chars().take(200).collect();
        self.console.warn(format!(
            "Dropped a message from {writer} (:{}): {why}: {shown}",
            reason.name()
        ));
        let mut st = self.state.lock().expect("net lock");
        *st.stats
            .dropped
            .entry(writer.to_string())
            .or_default()
            .entry(reason)
            .or_default() += 1;
    }

    fn enqueue(&self, st: &mut State, src: Arc<str>, dest: Arc<str>, body: Arc<str>) {
        let id = st.next_id;
        st.next_id += 1;
        let client_edge = is_client(&src) || is_client(&dest);
        if client_edge {
            st.stats.client_sends += 1;
        } else {
            st.stats.server_sends += 1;
        }
        let msg = Msg {
            id,
            src,
            dest,
            body,
        };
        if self.log_send {
            self.console
                .info(format!("net send {}", msg.to_line().trim_end()));
        }
        if !st.journal.truncated && !is_init(&msg.body) {
            st.journal.push(Event::Send(msg.clone()));
        }
        let both_nodes = !client_edge
            && ServiceKind::from_id(&msg.src).is_none()
            && ServiceKind::from_id(&msg.dest).is_none();
        if let (Some(p), true) = (st.loss, both_nodes)
            && st.loss_rng.gen_bool(p)
        {
            st.journal.push(Event::Drop(id, "lose"));
            return;
        }
        let latency = if client_edge {
            Duration::ZERO
        } else {
            sample_latency(st, &msg.src, &msg.dest)
        };
        st.queue.push(Reverse((Instant::now() + latency, id)));
        st.in_flight.insert(id, msg);
    }

    /// Installs partitions: `grudge[dest]` is the set of sources `dest` cannot hear.
    pub fn set_partitions(&self, grudge: HashMap<String, HashSet<String>>) {
        self.state.lock().expect("net lock").partitions = grudge;
    }

    /// Removes every partition.
    pub fn heal(&self) {
        self.state.lock().expect("net lock").partitions.clear();
    }

    /// Starts (`Some(p)`) or stops (`None`) random loss on node↔node links.
    pub fn set_loss(&self, p: Option<f64>) {
        self.state.lock().expect("net lock").loss = p;
    }

    /// Counts so far.
    pub fn stats(&self) -> NetStats {
        self.state.lock().expect("net lock").stats.clone()
    }

    /// The events kept for `messages.svg`.
    pub fn journal(&self) -> Journal {
        self.state.lock().expect("net lock").journal.clone()
    }

    /// Messages delivered so far (for the progress line).
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// Delivers messages forever, each at its deadline, in (deadline, id) order.
    pub async fn deliver_forever(self: Arc<Self>) {
        loop {
            let next = {
                let mut st = self.state.lock().expect("net lock");
                let now = Instant::now();
                let mut due = Vec::new();
                while let Some(Reverse((t, id))) = st.queue.peek().copied() {
                    if t > now {
                        break;
                    }
                    st.queue.pop();
                    if let Some(m) = st.in_flight.remove(&id) {
                        due.push(m);
                    }
                    if due.len() >= 1024 {
                        break;
                    }
                }
                for m in due {
                    self.deliver(&mut st, m);
                }
                st.queue.peek().map(|Reverse((t, _))| *t)
            };
            match next {
                Some(t) if t <= Instant::now() => tokio::task::yield_now().await,
                Some(t) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(t) => {}
                        _ = self.wake.notified() => {}
                    }
                }
                None => self.wake.notified().await,
            }
        }
    }

    fn deliver(&self, st: &mut State, m: Msg) {
        if st
            .partitions
            .get(&*m.dest)
            .is_some_and(|srcs| srcs.contains(&*m.src))
        {
            st.journal.push(Event::Drop(m.id, "partition"));
            return;
        }
        let now = self.start.elapsed();
        let client_edge = is_client(&m.src) || is_client(&m.dest);
        let reply = match st.endpoints.get_mut(&m.dest) {
            Some(Endpoint::Node { input, alive: true }) => {
                let _ = input.send(m.to_line());
                None
            }
            Some(Endpoint::Client(tx)) => {
                let _ = tx.send(m.clone());
                None
            }
            Some(Endpoint::Service(svc)) => {
                match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&m.body) {
                    Ok(body) => svc.handle(now, &m.src, &body),
                    Err(_) => None,
                }
            }
            // Dead nodes, closed clients: dropped at delivery.
            Some(Endpoint::Node { alive: false, .. }) => {
                st.journal.push(Event::Drop(m.id, "dead-node"));
                return;
            }
            _ => {
                st.journal.push(Event::Drop(m.id, "closed-client"));
                return;
            }
        };
        st.journal.push(Event::Recv(m.id));
        if client_edge {
            st.stats.client_recvs += 1;
        } else {
            st.stats.server_recvs += 1;
        }
        self.delivered.fetch_add(1, Ordering::Relaxed);
        if self.log_recv {
            self.console
                .info(format!("net recv {}", m.to_line().trim_end()));
        }
        if let Some(reply) = reply {
            self.enqueue(
                st,
                Arc::clone(&m.dest),
                Arc::clone(&m.src),
                Arc::from(reply.to_string()),
            );
        }
    }
}

fn sample_latency(st: &mut State, src: &Arc<str>, dest: &Arc<str>) -> Duration {
    if st.latency.is_zero() {
        return Duration::ZERO;
    }
    let (seed, mean, dist) = (st.seed, st.latency, st.dist);
    let rng = st
        .link_rngs
        .entry((Arc::clone(src), Arc::clone(dest)))
        .or_insert_with(|| seed::stream(seed, &format!("latency/{src}/{dest}")));
    match dist {
        LatencyDist::Constant => mean,
        LatencyDist::Uniform => {
            Duration::from_millis(rng.gen_range(0..2 * mean.as_millis() as u64))
        }
        LatencyDist::Exponential => mean.mul_f64(-rng.gen_range(f64::EPSILON..1.0f64).ln()),
    }
}
