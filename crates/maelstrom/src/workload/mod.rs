//! Workloads: each file holds one workload's RPC schema, generator and checker, so a workload
//! is read in one place. This module defines what a workload provides and the registry.

mod broadcast;
mod counter;
mod echo;
mod g_set;
mod kafka;
mod lin_kv;
mod txn;
mod unique_ids;

use crate::edn::Edn;
use crate::history::Op;
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value};

/// One operation to perform: its history `:f` and `:value`, and the request body to send.
#[derive(Clone, Debug)]
pub struct Invocation {
    /// The history `:f`.
    pub f: &'static str,
    /// The history `:value` of the invocation.
    pub value: Edn,
    /// The request body (without `msg_id`).
    pub body: Map<String, Value>,
}

impl Invocation {
    /// A plain `read` (broadcast, g-set, the counters).
    pub fn read() -> Invocation {
        Invocation {
            f: "read",
            value: Edn::Nil,
            body: body("read", []),
        }
    }
}

/// Produces main-phase operations from the generator stream.
pub trait Generator: Send {
    /// The next operation, for worker `thread`, currently process `process`.
    fn next(&mut self, rng: &mut ChaCha8Rng, thread: usize, process: u64) -> Invocation;
    /// What every thread does after the recovery wait (nothing by default).
    fn final_phase(&mut self) -> FinalPhase {
        FinalPhase::default()
    }
}

/// The final phase (spec §6.2): after a 10 s recovery wait, every thread runs `ops` in order.
#[derive(Clone, Debug, Default)]
pub struct FinalPhase {
    /// Operations each thread runs.
    pub ops: Vec<Invocation>,
    /// Whether they are tagged `:final? true`.
    pub tagged: bool,
    /// How often a `:fail` is retried.
    pub retries: u32,
    /// No operation starts after this long.
    pub cap: Option<std::time::Duration>,
    /// Repeat the last operation at this pace until the thread's client is done
    /// ([`ClientLogic::final_done`]) or the cap passes (kafka's final polls).
    pub repeat_last_every: Option<std::time::Duration>,
}

impl FinalPhase {
    /// One read per thread.
    pub fn read(tagged: bool) -> FinalPhase {
        FinalPhase {
            ops: vec![Invocation::read()],
            tagged,
            retries: 0,
            cap: None,
            repeat_last_every: None,
        }
    }
}

/// What a checker may use besides the history.
pub struct CheckContext {
    /// The test's store directory, for per-key and per-anomaly files (none for `check` without `--out`).
    pub dir: Option<std::path::PathBuf>,
    /// `--checker-timeout`.
    pub timeout: std::time::Duration,
    /// Bytes the checkers may use for search caches.
    pub memory: usize,
    /// `--consistency-models`.
    pub consistency_models: Vec<String>,
}

/// Options some workloads need.
pub struct WorkloadOptions {
    /// The broadcast topology.
    pub topology: maelstrom_services::topology::Topology,
    /// The nodes, in order.
    pub nodes: Vec<String>,
    /// Client threads.
    pub concurrency: usize,
    /// `--key-count`.
    pub key_count: u64,
    /// `--max-txn-length`.
    pub max_txn_length: u64,
    /// `--max-writes-per-key`.
    pub max_writes_per_key: u64,
}

impl WorkloadOptions {
    /// The command line's defaults, for checking histories outside a run.
    pub fn defaults(nodes: Vec<String>, concurrency: usize) -> WorkloadOptions {
        WorkloadOptions {
            topology: maelstrom_services::topology::Topology::Grid,
            nodes,
            concurrency,
            key_count: 10,
            max_txn_length: 4,
            max_writes_per_key: 16,
        }
    }
}

/// How one RPC ended.
#[derive(Clone, Debug)]
pub enum Reply {
    /// A reply that is not an error body.
    Ok(Map<String, Value>),
    /// An error body.
    Error {
        /// Its code.
        code: Option<u64>,
        /// Its text.
        text: String,
    },
    /// No reply in time.
    Timeout,
}

/// How an operation ended, before the runner maps it to the history (spec §6.5).
#[derive(Clone, Debug)]
pub enum Outcome {
    /// It happened; the completion's `:value`.
    Ok(Edn),
    /// An RPC failed (error body or timeout).
    Failed(Reply),
    /// A reply broke the workload's schema.
    Malformed(String),
    /// The client crashed on purpose (kafka's `:crash`): `:info` at once, and a fresh client.
    Crash,
}

/// Sends one request on the operation's client and waits for the reply.
pub trait Rpc: Send {
    /// One request/reply.
    fn call(
        &mut self,
        body: Map<String, Value>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Reply> + Send + '_>>;
}

/// Performs operations for one client, keeping client-side state between them. Only
/// workloads whose operations take several RPCs or local state need one (kafka); the others
/// send each operation's body once and map the reply with [`Workload::complete`].
pub trait ClientLogic: Send {
    /// Performs one operation.
    fn perform<'a>(
        &'a mut self,
        inv: &'a Invocation,
        rpc: &'a mut dyn Rpc,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Outcome> + Send + 'a>>;
    /// In the final phase: whether this client has read everything it should.
    fn final_done(&self) -> bool {
        false
    }
}

/// What a workload provides to the runner.
pub trait Workload: Send + Sync {
    /// The `-w` name.
    fn name(&self) -> &'static str;
    /// Every `:f` the workload records; the first is the usual one (`check` gives it to ops
    /// that have none).
    fn functions(&self) -> &'static [&'static str];
    /// `:f`s whose timeouts and errors are `:fail` (they did not change anything).
    fn idempotent(&self) -> &'static [&'static str] {
        &[]
    }
    /// g-set and the counters never record `:fail`: every failure is `:info`.
    fn never_fails(&self) -> bool {
        false
    }
    /// Whether a client survives an `:info` result (otherwise a new `c<k>` is opened).
    fn reusable_clients(&self) -> bool {
        false
    }
    /// A message sent once to each node during setup (broadcast: `topology`).
    fn setup(&self, _node: &str) -> Option<Map<String, Value>> {
        None
    }
    /// The main-phase generator.
    fn generator(&self) -> Box<dyn Generator>;
    /// Client-side logic for a fresh client, for workloads that need it (see [`ClientLogic`]).
    fn client(&self) -> Option<Box<dyn ClientLogic>> {
        None
    }
    /// How long a client waits for a reply (spec §6.3), given `--latency` in ms.
    fn timeout(&self, _latency_ms: u64) -> std::time::Duration {
        std::time::Duration::from_millis(5_000)
    }
    /// One paragraph for `workloads.md`: what the workload does and how it is checked.
    fn about(&self) -> &'static str;
    /// The RPCs the workbench sends to nodes, in the order the docs list them.
    fn rpcs(&self) -> &'static [RpcSpec];
    /// Validates an `_ok` reply and gives the completion's `:value`; `Err` names the violated rule.
    fn complete(&self, inv: &Invocation, reply: &Map<String, Value>) -> Result<Edn, String>;
    /// The workload checker's result map.
    fn check(&self, history: &[Op], ctx: &CheckContext) -> Edn;
}

/// Every workload name `-w` accepts.
pub const ALL: [&str; 10] = [
    "broadcast",
    "echo",
    "g-counter",
    "g-set",
    "kafka",
    "lin-kv",
    "pn-counter",
    "txn-list-append",
    "txn-rw-register",
    "unique-ids",
];

/// The workload called `name`, if this build implements it.
pub fn by_name(name: &str, opts: &WorkloadOptions) -> Option<Box<dyn Workload>> {
    Some(match name {
        "echo" => Box::new(echo::Echo),
        "unique-ids" => Box::new(unique_ids::UniqueIds),
        "broadcast" => Box::new(broadcast::Broadcast::new(opts)),
        "g-set" => Box::new(g_set::GSet),
        "g-counter" => Box::new(counter::Counter::grow_only()),
        "pn-counter" => Box::new(counter::Counter::pn()),
        "lin-kv" => Box::new(lin_kv::LinKv::new(opts)),
        "kafka" => Box::new(kafka::Kafka::new(
            opts.key_count,
            opts.max_writes_per_key,
            opts.concurrency,
        )),
        "txn-list-append" => Box::new(txn::Txn::new(
            crate::checker::elle::TxnKind::ListAppend,
            opts.key_count,
            opts.max_txn_length,
            opts.max_writes_per_key,
        )),
        "txn-rw-register" => Box::new(txn::Txn::new(
            crate::checker::elle::TxnKind::RwRegister,
            opts.key_count,
            opts.max_txn_length,
            opts.max_writes_per_key,
        )),
        _ => return None,
    })
}

/// JSON types a field must have (spec §2.k).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Any JSON value.
    Any,
    /// An integer, or a float with no fractional part.
    Integer,
    /// A string.
    String,
    /// An array.
    Array,
    /// An object.
    Object,
}

impl Kind {
    /// Whether `v` has this type.
    pub fn fits(self, v: &Value) -> bool {
        match self {
            Kind::Any => true,
            Kind::Integer => integer(v).is_some(),
            Kind::String => v.is_string(),
            Kind::Array => v.is_array(),
            Kind::Object => v.is_object(),
        }
    }

    /// The type's name, as the docs and error messages write it.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Any => "any JSON",
            Kind::Integer => "integer",
            Kind::String => "string",
            Kind::Array => "array",
            Kind::Object => "object",
        }
    }
}

/// One field of a request or reply body.
#[derive(Debug)]
pub struct Field {
    /// The JSON key.
    pub name: &'static str,
    /// Its type.
    pub kind: Kind,
    /// What it holds.
    pub about: &'static str,
}

/// One RPC of a workload's schema (spec §9): the request the workbench sends and the fields
/// its `<type>_ok` reply must carry. The same table validates replies ([`RpcSpec::check_reply`])
/// and writes `workloads.md` (`maelstrom doc`), so the docs cannot drift from the checks.
#[derive(Debug)]
pub struct RpcSpec {
    /// The request's `type`; the reply's is this plus `_ok`.
    pub request: &'static str,
    /// What the request asks of the node.
    pub about: &'static str,
    /// Fields of the request besides `type` and `msg_id`.
    pub request_fields: &'static [Field],
    /// Fields the reply must have besides `type` and `in_reply_to`; extra keys are fine.
    pub reply_fields: &'static [Field],
}

impl RpcSpec {
    /// Checks a reply's `type` and required fields; `Err` names the violated rule.
    pub fn check_reply(&self, reply: &Map<String, Value>) -> Result<(), String> {
        let want = format!("{}_ok", self.request);
        match reply.get("type").and_then(Value::as_str) {
            Some(t) if t == want => {}
            other => {
                return Err(format!(
                    "expected type {want:?}, got {}",
                    other.map_or("none".to_string(), |t| format!("{t:?}"))
                ));
            }
        }
        for field in self.reply_fields {
            let v = reply
                .get(field.name)
                .ok_or_else(|| format!("{want} needs a field {:?}", field.name))?;
            if !field.kind.fits(v) {
                return Err(format!(
                    "{want} field {:?} must be {}, got {v}",
                    field.name,
                    match field.kind {
                        Kind::Any => "any value",
                        Kind::Integer => "an integer",
                        Kind::String => "a string",
                        Kind::Array => "an array",
                        Kind::Object => "an object",
                    }
                ));
            }
        }
        Ok(())
    }
}

/// Checks `reply` against the RPC `request` of `schema`.
///
/// # Panics
/// If the schema does not declare `request`: a workload sent an RPC it did not document.
pub fn check_reply(
    schema: &[RpcSpec],
    request: &str,
    reply: &Map<String, Value>,
) -> Result<(), String> {
    schema
        .iter()
        .find(|r| r.request == request)
        .unwrap_or_else(|| panic!("the workload's schema has no {request:?} RPC"))
        .check_reply(reply)
}

/// An integer, accepting integral floats such as `3.0`.
pub fn integer(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| {
        v.as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
            .map(|f| f as i64)
    })
}

/// A request body `{"type": t, …}`.
pub fn body<const N: usize>(msg_type: &str, fields: [(&str, Value); N]) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("type".into(), msg_type.into());
    for (k, v) in fields {
        m.insert(k.into(), v);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// Records what a client sends, answering polls with one message so commits follow.
    struct Recorder(Vec<Map<String, Value>>);

    impl Rpc for Recorder {
        fn call(
            &mut self,
            body: Map<String, Value>,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Reply> + Send + '_>> {
            let reply = match body["type"].as_str() {
                Some("poll") => Reply::Ok(
                    serde_json::json!({"type": "poll_ok", "msgs": {"1": [[0, 5]]}})
                        .as_object()
                        .unwrap()
                        .clone(),
                ),
                _ => Reply::Timeout,
            };
            self.0.push(body);
            Box::pin(async move { reply })
        }
    }

    /// The RPC tables are what the docs print, so every request a workload puts on the wire
    /// must be declared there, with exactly the declared fields and types.
    #[test]
    fn every_request_sent_is_declared_in_the_workload_schema() {
        let nodes: Vec<String> = (0..3).map(|i| format!("n{i}")).collect();
        let opts = WorkloadOptions::defaults(nodes, 6);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        for name in ALL {
            let w = by_name(name, &opts).unwrap();
            let mut rng = ChaCha8Rng::seed_from_u64(7);
            let mut generator = w.generator();
            let mut invocations: Vec<Invocation> = (0..2_000)
                .map(|i| generator.next(&mut rng, i % 6, i as u64))
                .collect();
            invocations.extend(generator.final_phase().ops);
            let mut sent: Vec<Map<String, Value>> = w.setup("n0").into_iter().collect();
            match w.client() {
                None => sent.extend(invocations.into_iter().map(|i| i.body)),
                Some(mut client) => {
                    let mut rpc = Recorder(vec![]);
                    for inv in &invocations {
                        runtime.block_on(client.perform(inv, &mut rpc));
                    }
                    sent.extend(rpc.0);
                }
            }
            let mut seen = std::collections::BTreeSet::new();
            for body in sent {
                let t = body["type"].as_str().unwrap().to_string();
                let spec = w
                    .rpcs()
                    .iter()
                    .find(|r| r.request == t)
                    .unwrap_or_else(|| panic!("{name} sends an undeclared {t:?}"));
                for f in spec.request_fields {
                    let v = body
                        .get(f.name)
                        .unwrap_or_else(|| panic!("{name} {t} lacks {:?}", f.name));
                    assert!(f.kind.fits(v), "{name} {t}.{} = {v}", f.name);
                }
                for k in body.keys() {
                    assert!(
                        k == "type" || spec.request_fields.iter().any(|f| f.name == k),
                        "{name} {t} sends an undeclared field {k:?}"
                    );
                }
                seen.insert(t);
            }
            let declared: std::collections::BTreeSet<String> =
                w.rpcs().iter().map(|r| r.request.to_string()).collect();
            assert_eq!(seen, declared, "{name}: every declared RPC is sent");
        }
    }
}
