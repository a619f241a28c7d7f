//! An in-process simulated cluster for tests (feature `sim`).
//!
//! [`Sim`] runs N nodes — built by the same function as your `main` — over an in-memory
//! network on tokio's virtual clock: seeded latency, directed partitions, controllable
//! delivery (hold, drop, step), the four services with the runner's semantics, and clients
//! `c<k>` that send requests and await replies. Run it on a current-thread runtime with the
//! clock paused, and a whole minute of cluster time takes milliseconds:
//!
//! ```
//! use maelnode::sim::{Latency, Sim};
//! use maelnode::{Node, Request};
//! use serde_json::json;
//! use std::time::Duration;
//!
//! fn echo_node() -> Node<()> {
//!     Node::builder(()).on_json("echo", |req: Request<()>, body| async move {
//!         req.reply(json!({"echo": body["echo"]}))
//!     })
//! }
//!
//! #[tokio::main(flavor = "current_thread", start_paused = true)]
//! async fn main() -> Result<(), maelnode::Error> {
//!     let sim = Sim::builder().seed(7).nodes(3).latency(Latency::Constant(Duration::from_millis(50)))
//!         .start(echo_node).await?;
//!     let c = sim.client();
//!     let reply = c.call("n1", json!({"type": "echo", "echo": "hi"})).await?;
//!     assert_eq!(reply.body_json()["echo"], "hi");
//!     sim.partition(&[&["n0"], &["n1", "n2"]]);
//!     sim.heal();
//!     assert_eq!(sim.stats().pending_rpcs, 0);
//!     Ok(())
//! }
//! ```
//!
//! Delivery order, latencies and drops are a pure function of the seed and the sequence of
//! sends. The seed comes from [`SimBuilder::seed`], is overridden by the environment variable
//! `MAELNODE_SEED`, and printed when the cluster starts (the test harness shows it when the
//! test fails), so a failure replays with `MAELNODE_SEED=<seed> cargo test …`.

mod network;

pub use maelstrom_services::topology::Topology;
pub use network::{Envelope, Latency, SimStats, TraceEvent, TraceKind};

use crate::context::Core;
use crate::{Error, ErrorCode, Message, Node};
use futures_util::future::BoxFuture;
use network::{Endpoint, Net};
use serde_json::Value;
use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

/// How long a client waits for a reply, as the runner's clients do.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a node may take to answer `init`, as in the runner.
const INIT_TIMEOUT: Duration = Duration::from_secs(10);

type Launch = Arc<
    dyn Fn(
            u64,
        ) -> Box<
            dyn FnOnce(
                    tokio::io::DuplexStream,
                )
                    -> io::Result<(Arc<Core>, BoxFuture<'static, io::Result<()>>)>
                + Send,
        > + Send
        + Sync,
>;

/// Settings for a simulated cluster; finish with [`start`](SimBuilder::start).
///
/// ```
/// let b = maelnode::sim::Sim::builder().seed(1).nodes(5);
/// # drop(b);
/// ```
pub struct SimBuilder {
    seed: Option<u64>,
    nodes: Vec<String>,
    latency: Latency,
}

impl SimBuilder {
    /// The seed of every random choice (default: drawn from the OS; `MAELNODE_SEED` overrides both).
    ///
    /// ```
    /// let b = maelnode::sim::Sim::builder().seed(42);
    /// # drop(b);
    /// ```
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// `n` nodes named `n0`..`n{n-1}` (default 3).
    ///
    /// ```
    /// let b = maelnode::sim::Sim::builder().nodes(25);
    /// # drop(b);
    /// ```
    pub fn nodes(mut self, n: usize) -> Self {
        self.nodes = (0..n).map(|i| format!("n{i}")).collect();
        self
    }

    /// Nodes with these names, in this order.
    ///
    /// ```
    /// let b = maelnode::sim::Sim::builder().node_names(&["n1", "n2", "n3"]);
    /// # drop(b);
    /// ```
    pub fn node_names(mut self, names: &[&str]) -> Self {
        self.nodes = names.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Node↔node and node↔service latency (default none).
    ///
    /// ```
    /// let b = maelnode::sim::Sim::builder().latency(maelnode::sim::Latency::Uniform(std::time::Duration::from_millis(100)));
    /// # drop(b);
    /// ```
    pub fn latency(mut self, latency: Latency) -> Self {
        self.latency = latency;
        self
    }

    /// Spawns every node from `make` (the function your `main` uses), sends each its `init`
    /// from a fresh client, and returns once all answered `init_ok`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() -> Result<(), maelnode::Error> {
    /// let sim = maelnode::sim::Sim::builder().nodes(2).start(|| maelnode::Node::builder(())).await?;
    /// assert_eq!(sim.node_ids(), ["n0", "n1"]);
    /// # Ok(()) }
    /// ```
    pub async fn start<S, F>(self, make: F) -> Result<Sim, Error>
    where
        S: Send + Sync + 'static,
        F: Fn() -> Node<S> + Send + Sync + 'static,
    {
        let seed = std::env::var("MAELNODE_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .or(self.seed)
            .unwrap_or_else(rand::random);
        // Printed at the start rather than on failure: the test harness shows a test's output
        // exactly when it fails, whether by panic or by returning `Err`.
        eprintln!("maelnode sim: seed {seed} (replay with MAELNODE_SEED={seed})");
        let launch: Launch = Arc::new(move |node_seed| {
            let node = make().stdout_guard(false).seed(node_seed);
            Box::new(move |io: tokio::io::DuplexStream| {
                let (r, w) = tokio::io::split(io);
                let (core, run) = node.launch(r, w)?;
                Ok((core, Box::pin(run) as BoxFuture<'static, io::Result<()>>))
            })
        });
        let inner = Arc::new(Inner {
            net: Mutex::new(Net::new(seed, self.latency)),
            wake: Notify::new(),
            next_client: AtomicU64::new(0),
            launch,
            tasks: Mutex::new(Vec::new()),
            node_tasks: Mutex::new(HashMap::new()),
            nodes: self.nodes,
        });
        let sim = Sim { inner };
        let delivery = tokio::spawn(deliver_forever(Arc::clone(&sim.inner)));
        sim.inner.tasks.lock().expect("tasks lock").push(delivery);
        for id in &sim.inner.nodes {
            sim.spawn_node(id)?;
        }
        // One init client per node, c0..c{N-1}, as the runner assigns them.
        let inits: Vec<_> = sim
            .inner
            .nodes
            .iter()
            .map(|id| (sim.client(), id.clone()))
            .collect();
        let node_ids = sim.inner.nodes.clone();
        for (client, id) in inits {
            client.init(&id, &node_ids).await?;
        }
        Ok(sim)
    }
}

struct Inner {
    net: Mutex<Net>,
    wake: Notify,
    next_client: AtomicU64,
    launch: Launch,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    node_tasks: Mutex<HashMap<String, Vec<JoinHandle<()>>>>,
    nodes: Vec<String>,
}

impl Inner {
    fn send(&self, src: &str, dest: &str, body: Value) -> u64 {
        let id = self.net.lock().expect("net lock").send(src, dest, body);
        self.wake.notify_one();
        id
    }
}

/// The delivery task: sleeps until the earliest deadline and delivers in (deadline, id) order.
async fn deliver_forever(inner: Arc<Inner>) {
    loop {
        let next = inner.net.lock().expect("net lock").next_deadline();
        match next {
            Some(t) if t <= tokio::time::Instant::now() => {
                let mut net = inner.net.lock().expect("net lock");
                if let Some(env) = net.pop() {
                    net.deliver(env);
                }
            }
            Some(t) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(t) => {}
                    _ = inner.wake.notified() => {}
                }
            }
            None => inner.wake.notified().await,
        }
    }
}

/// A running simulated cluster. Dropping it stops every node.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() -> Result<(), maelnode::Error> {
/// let sim = maelnode::sim::Sim::builder().nodes(2).start(|| maelnode::Node::builder(())).await?;
/// sim.isolate("n1");
/// sim.sleep(std::time::Duration::from_secs(1)).await;
/// assert_eq!(sim.stats().pending_rpcs, 0);
/// # Ok(()) }
/// ```
pub struct Sim {
    inner: Arc<Inner>,
}

impl Sim {
    /// Starts configuring a cluster.
    ///
    /// ```
    /// let b = maelnode::sim::Sim::builder();
    /// # drop(b);
    /// ```
    pub fn builder() -> SimBuilder {
        SimBuilder {
            seed: None,
            nodes: (0..3).map(|i| format!("n{i}")).collect(),
            latency: Latency::Constant(Duration::ZERO),
        }
    }

    fn spawn_node(&self, id: &str) -> Result<(), Error> {
        let seed = self.seed();
        let node_seed = maelstrom_services::seed::derive(seed, &format!("node/{id}"));
        let (node_side, sim_side) = tokio::io::duplex(1 << 16);
        let (core, run) = (self.inner.launch)(node_seed)(node_side)
            .map_err(|e| Error::crash(format!("node {id} failed to start: {e}")))?;
        let (from_node, mut to_node) = tokio::io::split(sim_side);
        let (input_tx, mut input_rx) = mpsc::unbounded_channel::<String>();
        let node_id = id.to_string();
        let run_task = tokio::spawn(async move {
            if let Err(e) = run.await {
                tracing::error!(node = %node_id, error = %e, "simulated node stopped with an error");
            }
        });
        let writer = tokio::spawn(async move {
            while let Some(line) = input_rx.recv().await {
                if to_node.write_all(line.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
        let inner = Arc::clone(&self.inner);
        let src_id = id.to_string();
        let reader = tokio::spawn(async move {
            let mut lines = BufReader::new(from_node).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                match serde_json::from_str::<Value>(&line) {
                    Ok(Value::Object(mut m)) => {
                        let dest = m.get("dest").and_then(Value::as_str).map(String::from);
                        match (dest, m.remove("body")) {
                            (Some(dest), Some(body)) if body.is_object() => {
                                inner.send(&src_id, &dest, body);
                            }
                            _ => {
                                tracing::warn!(node = %src_id, %line, "simulated node wrote a message without dest or object body")
                            }
                        }
                    }
                    _ => {
                        tracing::warn!(node = %src_id, %line, "simulated node wrote a line that is not a JSON object")
                    }
                }
            }
        });
        self.inner.net.lock().expect("net lock").endpoints.insert(
            id.to_string(),
            Endpoint::Node {
                input: input_tx,
                core,
            },
        );
        self.inner
            .node_tasks
            .lock()
            .expect("tasks lock")
            .insert(id.to_string(), vec![run_task, writer, reader]);
        Ok(())
    }

    /// The seed in use (after the `MAELNODE_SEED` override).
    ///
    /// ```
    /// # async fn f(sim: maelnode::sim::Sim) { println!("replay with MAELNODE_SEED={}", sim.seed()); }
    /// ```
    pub fn seed(&self) -> u64 {
        self.inner.net.lock().expect("net lock").seed
    }

    /// The node ids, in init order.
    ///
    /// ```
    /// # async fn f(sim: maelnode::sim::Sim) { for n in sim.node_ids() { println!("{n}"); } }
    /// ```
    pub fn node_ids(&self) -> Vec<String> {
        self.inner.nodes.clone()
    }

    /// A new client `c<k>` (numbers are global and never reused).
    ///
    /// ```
    /// # async fn f(sim: maelnode::sim::Sim) { let c = sim.client(); assert!(c.id().starts_with('c')); }
    /// ```
    pub fn client(&self) -> Client {
        let k = self.inner.next_client.fetch_add(1, Ordering::Relaxed);
        let id = format!("c{k}");
        let (tx, rx) = mpsc::unbounded_channel();
        self.inner
            .net
            .lock()
            .expect("net lock")
            .endpoints
            .insert(id.clone(), Endpoint::Client(tx));
        Client {
            id,
            inner: Arc::clone(&self.inner),
            rx: tokio::sync::Mutex::new(rx),
            next_msg_id: AtomicU64::new(1),
        }
    }

    /// The `topology` map of a broadcast topology over this cluster's nodes.
    ///
    /// ```
    /// # async fn f(sim: maelnode::sim::Sim) {
    /// let t = sim.topology(maelnode::sim::Topology::Grid);
    /// sim.client().call("n0", serde_json::json!({"type": "topology", "topology": t})).await.unwrap();
    /// # }
    /// ```
    pub fn topology(&self, topology: Topology) -> Value {
        topology.to_json(&self.inner.nodes)
    }

    /// Splits the nodes into groups that cannot reach each other (directed both ways).
    /// Services and clients are never partitioned.
    ///
    /// ```
    /// # async fn f(sim: maelnode::sim::Sim) { sim.partition(&[&["n0", "n1"], &["n2"]]); }
    /// ```
    pub fn partition(&self, groups: &[&[&str]]) {
        let mut net = self.inner.net.lock().expect("net lock");
        for (i, group) in groups.iter().enumerate() {
            for dest in *group {
                let cut = net.partitions.entry(dest.to_string()).or_default();
                for (j, other) in groups.iter().enumerate() {
                    if i != j {
                        cut.extend(other.iter().map(|s| s.to_string()));
                    }
                }
            }
        }
    }

    /// Cuts `node` off from every other node.
    ///
    /// ```
    /// # async fn f(sim: maelnode::sim::Sim) { sim.isolate("n2"); }
    /// ```
    pub fn isolate(&self, node: &str) {
        let rest: Vec<&str> = self
            .inner
            .nodes
            .iter()
            .map(String::as_str)
            .filter(|n| *n != node)
            .collect();
        self.partition(&[&[node], &rest]);
    }

    /// Cuts one direction only: `dest` stops receiving from `src`.
    ///
    /// ```
    /// # async fn f(sim: maelnode::sim::Sim) { sim.cut("n0", "n1"); }
    /// ```
    pub fn cut(&self, src: &str, dest: &str) {
        let mut net = self.inner.net.lock().expect("net lock");
        net.partitions
            .entry(dest.to_string())
            .or_default()
            .insert(src.to_string());
    }

    /// Removes every partition.
    ///
    /// ```
    /// # async fn f(sim: maelnode::sim::Sim) { sim.heal(); }
    /// ```
    pub fn heal(&self) {
        self.inner.net.lock().expect("net lock").partitions.clear();
    }

    /// Holds back, at delivery, every message matching `pred` until [`release_held`](Self::release_held).
    /// Holding a message while later ones pass reorders them.
    ///
    /// ```
    /// # async fn f(sim: maelnode::sim::Sim) {
    /// sim.hold(|m| m.msg_type() == "gossip" && m.dest == "n2");
    /// sim.release_held();
    /// # }
    /// ```
    pub fn hold(&self, pred: impl Fn(&Envelope) -> bool + Send + 'static) {
        self.inner
            .net
            .lock()
            .expect("net lock")
            .hold_rules
            .push(Box::new(pred));
    }

    /// Drops, at delivery, every message matching `pred`.
    ///
    /// ```
    /// # async fn f(sim: maelnode::sim::Sim) { sim.drop_where(|m| m.src == "n1" && m.msg_type() == "gossip_ok"); }
    /// ```
    pub fn drop_where(&self, pred: impl Fn(&Envelope) -> bool + Send + 'static) {
        self.inner
            .net
            .lock()
            .expect("net lock")
            .drop_rules
            .push(Box::new(pred));
    }

    /// Removes every hold and drop rule (held messages stay held until released).
    ///
    /// ```
    /// # async fn f(sim: maelnode::sim::Sim) { sim.clear_rules(); }
    /// ```
    pub fn clear_rules(&self) {
        let mut net = self.inner.net.lock().expect("net lock");
        net.hold_rules.clear();
        net.drop_rules.clear();
    }

    /// Clears the hold rules and queues every held message for delivery now, in send order.
    ///
    /// ```
    /// # async fn f(sim: maelnode::sim::Sim) { sim.release_held(); }
    /// ```
    pub fn release_held(&self) {
        let mut net = self.inner.net.lock().expect("net lock");
        net.hold_rules.clear();
        let held = std::mem::take(&mut net.held);
        for env in held {
            net.requeue(env);
        }
        drop(net);
        self.inner.wake.notify_one();
    }

    /// Switches to manual delivery: nothing is delivered except by [`step`](Self::step), until
    /// `set_manual(false)`.
    ///
    /// ```
    /// # async fn f(sim: maelnode::sim::Sim) { sim.set_manual(true); sim.step(); sim.set_manual(false); }
    /// ```
    pub fn set_manual(&self, manual: bool) {
        self.inner.net.lock().expect("net lock").manual = manual;
        self.inner.wake.notify_one();
    }

    /// Delivers the earliest queued message now (whatever its deadline) and returns it.
    ///
    /// ```
    /// # async fn f(sim: maelnode::sim::Sim) { if let Some(m) = sim.step() { println!("{} -> {}", m.src, m.dest); } }
    /// ```
    pub fn step(&self) -> Option<Envelope> {
        let mut net = self.inner.net.lock().expect("net lock");
        let env = net.pop()?;
        net.deliver(env.clone());
        Some(env)
    }

    /// Virtual time since the simulation started (the trace's clock).
    ///
    /// ```
    /// # async fn f(sim: maelnode::sim::Sim) { println!("{:?} in", sim.elapsed()); }
    /// ```
    pub fn elapsed(&self) -> Duration {
        self.inner.net.lock().expect("net lock").elapsed()
    }

    /// Lets virtual time pass (nodes, timers and deliveries run meanwhile).
    ///
    /// ```
    /// # async fn f(sim: maelnode::sim::Sim) { sim.sleep(std::time::Duration::from_secs(5)).await; }
    /// ```
    pub async fn sleep(&self, d: Duration) {
        tokio::time::sleep(d).await;
    }

    /// Counters: messages sent, delivered, dropped, held, client operations, pending RPCs.
    ///
    /// ```
    /// # async fn f(sim: maelnode::sim::Sim) { println!("{} messages", sim.stats().sent); }
    /// ```
    pub fn stats(&self) -> SimStats {
        self.inner.net.lock().expect("net lock").snapshot_stats()
    }

    /// Every send, delivery, drop and hold so far.
    ///
    /// ```
    /// # async fn f(sim: maelnode::sim::Sim) { assert!(sim.trace().len() as u64 >= sim.stats().sent); }
    /// ```
    pub fn trace(&self) -> Vec<TraceEvent> {
        self.inner.net.lock().expect("net lock").trace.clone()
    }

    /// Kills `node` (its state is lost and messages to it are dropped until it is back).
    ///
    /// ```
    /// # async fn f(sim: maelnode::sim::Sim) { sim.kill("n1"); }
    /// ```
    pub fn kill(&self, node: &str) {
        if let Some(tasks) = self
            .inner
            .node_tasks
            .lock()
            .expect("tasks lock")
            .remove(node)
        {
            tasks.iter().for_each(JoinHandle::abort);
        }
        let mut net = self.inner.net.lock().expect("net lock");
        if let Some(Endpoint::Node { core, .. }) =
            net.endpoints.insert(node.to_string(), Endpoint::DeadNode)
        {
            core.timers.cancel();
            core.cancel.cancel();
        }
    }

    /// Restarts `node` with fresh state: kills it, starts a new instance from the builder
    /// function, and sends it `init` from a new client.
    ///
    /// ```
    /// # async fn f(sim: maelnode::sim::Sim) -> Result<(), maelnode::Error> { sim.restart("n1").await?; Ok(()) }
    /// ```
    pub async fn restart(&self, node: &str) -> Result<(), Error> {
        self.kill(node);
        self.spawn_node(node)?;
        self.client().init(node, &self.inner.nodes).await
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        for task in self.inner.tasks.lock().expect("tasks lock").drain(..) {
            task.abort();
        }
        for (_, tasks) in self.inner.node_tasks.lock().expect("tasks lock").drain() {
            tasks.iter().for_each(JoinHandle::abort);
        }
        for endpoint in self.inner.net.lock().expect("net lock").endpoints.values() {
            if let Endpoint::Node { core, .. } = endpoint {
                core.timers.cancel();
                core.cancel.cancel();
            }
        }
    }
}

/// A simulated client `c<k>`: one outstanding request at a time, zero latency, as in the runner.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() -> Result<(), maelnode::Error> {
/// let node = || maelnode::Node::builder(()).on_json("ping", |req, _| async move { req.reply_ok() });
/// let sim = maelnode::sim::Sim::builder().nodes(1).start(node).await?;
/// let c = sim.client();
/// assert_eq!(c.call("n0", serde_json::json!({"type": "ping"})).await?.msg_type(), "ping_ok");
/// # Ok(()) }
/// ```
pub struct Client {
    id: String,
    inner: Arc<Inner>,
    rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<Envelope>>,
    next_msg_id: AtomicU64,
}

impl Client {
    /// The client's id, e.g. `"c7"`.
    ///
    /// ```
    /// # async fn f(sim: maelnode::sim::Sim) { println!("{}", sim.client().id()); }
    /// ```
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Sends a request (a fresh `msg_id` is added) and waits up to 5 s for its reply: `Ok` for
    /// an `_ok`-style reply, `Err` with the reply's code for an error body, code 0 on timeout.
    ///
    /// ```
    /// # async fn f(sim: maelnode::sim::Sim) -> Result<(), maelnode::Error> {
    /// let r = sim.client().call("n0", serde_json::json!({"type": "read"})).await?;
    /// # Ok(()) }
    /// ```
    pub async fn call(&self, dest: &str, body: Value) -> Result<Message, Error> {
        self.call_timeout(dest, body, CLIENT_TIMEOUT).await
    }

    /// [`call`](Self::call) with another timeout.
    ///
    /// ```
    /// # async fn f(sim: maelnode::sim::Sim) { let _ = sim.client().call_timeout("n0", serde_json::json!({"type": "read"}), std::time::Duration::from_secs(1)).await; }
    /// ```
    pub async fn call_timeout(
        &self,
        dest: &str,
        mut body: Value,
        timeout: Duration,
    ) -> Result<Message, Error> {
        let Some(map) = body.as_object_mut() else {
            return Err(Error::malformed("a request body must be a JSON object"));
        };
        let msg_id = self.next_msg_id.fetch_add(1, Ordering::Relaxed);
        map.insert("msg_id".into(), msg_id.into());
        let mut rx = self.rx.lock().await;
        self.inner.send(&self.id, dest, body);
        let wait = async {
            while let Some(env) = rx.recv().await {
                if env.body.get("in_reply_to").and_then(Value::as_u64) == Some(msg_id) {
                    return Some(env);
                }
            }
            None
        };
        let env = match tokio::time::timeout(timeout, wait).await {
            Ok(Some(env)) => env,
            _ => {
                return Err(Error::timeout(format!(
                    "{} got no reply from {dest} within {timeout:?}",
                    self.id
                )));
            }
        };
        let line =
            serde_json::json!({"src": env.src, "dest": env.dest, "body": env.body}).to_string();
        let reply = Message::parse(line.as_bytes()).map_err(Error::malformed)?;
        if reply.msg_type() == "error" {
            return Err(Error::from_body(reply.body_json()));
        }
        Ok(reply)
    }

    /// Sends a message without waiting for anything.
    ///
    /// ```
    /// # async fn f(sim: maelnode::sim::Sim) { sim.client().send("n0", serde_json::json!({"type": "poke"})); }
    /// ```
    pub fn send(&self, dest: &str, body: Value) {
        self.inner.send(&self.id, dest, body);
    }

    async fn init(&self, node: &str, node_ids: &[String]) -> Result<(), Error> {
        let body = serde_json::json!({"type": "init", "node_id": node, "node_ids": node_ids});
        let reply = self
            .call_timeout(node, body, INIT_TIMEOUT)
            .await
            .map_err(|e| {
                Error::new(
                    ErrorCode::Crash,
                    format!("node {node} did not answer init with init_ok: {e}"),
                )
            })?;
        if reply.msg_type() != "init_ok" {
            return Err(Error::crash(format!(
                "node {node} answered init with {}",
                reply.body_raw()
            )));
        }
        Ok(())
    }
}
