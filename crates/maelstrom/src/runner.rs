//! One test, start to finish (spec §4.3, §6): store, services, nodes and `init`, per-node setup,
//! workers driven by the seeded schedule, the nemesis, the final phase, teardown, analysis,
//! and the files of the store.

use crate::analysis;
use crate::checker;
use crate::cli::TestConfig;
use crate::client::Client;
use crate::cluster::{Cluster, NodeSpec};
use crate::console::Console;
use crate::edn::{Edn, kw, map};
use crate::history::{self, History, OpType, Process};
use crate::nemesis::{Nemesis, World};
use crate::net::{Net, NetConfig};
use crate::workload::{
    self, FinalPhase, Invocation, Outcome, Reply, Rpc, Workload, WorkloadOptions,
};
use maelstrom_services::seed;
use rand::Rng;
use serde_json::{Map, Value, json};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// The timeout of setup messages and of most workload RPCs (spec §6.3).
const RPC_TIMEOUT: Duration = Duration::from_millis(5_000);
/// The wait before the final phase.
const RECOVERY: Duration = Duration::from_secs(10);

/// Why a test could not run to analysis (exit 255).
#[derive(Debug)]
pub struct Fatal(pub String);

/// What a finished test decided.
pub struct Verdict {
    /// `:valid?` of the results.
    pub valid: Edn,
    /// The test's store directory.
    pub dir: std::path::PathBuf,
}

/// The worker side of an operation's outcome.
struct Shared {
    workload: Arc<dyn Workload>,
    history: Arc<History>,
    net: Arc<Net>,
    console: Arc<Console>,
    concurrency: u64,
    /// The workload's RPC timeout.
    timeout: Duration,
}

/// One client thread, bound to one node for the whole test.
struct Worker {
    node: String,
    /// Client-side state, for workloads that keep some (kafka).
    logic: Option<Box<dyn workload::ClientLogic>>,
    /// The thread's current process id; the dispatcher reads it to record the invocation.
    process: Arc<AtomicU64>,
    client: Client,
}

/// Hands operations to worker threads. The invocation is recorded here, at dispatch, so the
/// history's order of invocations is the schedule's order whatever the threads' timing.
struct Dispatcher {
    history: Arc<History>,
    op_txs: Vec<mpsc::UnboundedSender<(Invocation, bool)>>,
    processes: Vec<Arc<AtomicU64>>,
}

impl Dispatcher {
    fn dispatch(&self, thread: usize, inv: Invocation, is_final: bool) {
        let process = Process::Client(self.processes[thread].load(Ordering::SeqCst));
        self.history.record(
            OpType::Invoke,
            inv.f,
            inv.value.clone(),
            process,
            None,
            is_final,
        );
        let _ = self.op_txs[thread].send((inv, is_final));
    }
}

impl Worker {
    /// Performs an operation whose invocation the dispatcher recorded; records its completion.
    async fn perform(&mut self, inv: &Invocation, is_final: bool, sh: &Shared) -> OpType {
        let proc_ = Process::Client(self.process.load(Ordering::SeqCst));
        let mut rpc = ClientRpc {
            client: &mut self.client,
            node: &self.node,
            timeout: sh.timeout,
        };
        let outcome = match &mut self.logic {
            Some(logic) => logic.perform(inv, &mut rpc).await,
            None => match rpc.call(inv.body.clone()).await {
                Reply::Ok(r) => match sh.workload.complete(inv, &r) {
                    Ok(v) => Outcome::Ok(v),
                    Err(reason) => {
                        sh.console.warn(format!(
                            "Malformed RPC response. Request: {} Reply: {} Rule: {reason}",
                            Value::Object(inv.body.clone()),
                            Value::Object(r)
                        ));
                        Outcome::Malformed(reason)
                    }
                },
                failed => Outcome::Failed(failed),
            },
        };
        let idempotent = sh.workload.idempotent().contains(&inv.f);
        let never_fails = sh.workload.never_fails();
        let soft_fail = |definite: bool| {
            if never_fails {
                OpType::Info
            } else if definite || idempotent {
                OpType::Fail
            } else {
                OpType::Info
            }
        };
        let (t, value, error) = match outcome {
            Outcome::Ok(v) => (OpType::Ok, v, None),
            Outcome::Failed(Reply::Timeout) => {
                (soft_fail(false), inv.value.clone(), Some(kw("net-timeout")))
            }
            Outcome::Failed(Reply::Error { code, text }) => {
                let (name, definite) = maelstrom_services::errors::name_and_definite(code);
                (
                    soft_fail(definite),
                    inv.value.clone(),
                    Some(Edn::Vector(vec![kw(name), Edn::Str(text)])),
                )
            }
            Outcome::Failed(Reply::Ok(_)) => unreachable!("an ok reply is not a failure"),
            Outcome::Malformed(reason) => (
                OpType::Info,
                inv.value.clone(),
                Some(Edn::Vector(vec![
                    kw("malformed-response"),
                    Edn::Str(reason),
                ])),
            ),
            Outcome::Crash => (OpType::Info, inv.value.clone(), Some(kw("crash"))),
        };
        sh.history.record(t, inv.f, value, proc_, error, is_final);
        if t == OpType::Info {
            self.process.fetch_add(sh.concurrency, Ordering::SeqCst);
            if !sh.workload.reusable_clients() {
                let fresh = Client::open(&sh.net);
                std::mem::replace(&mut self.client, fresh).close();
                self.logic = sh.workload.client();
            }
        }
        t
    }
}

/// One worker's RPCs: on its client, to its node, with the workload's timeout.
struct ClientRpc<'a> {
    client: &'a mut Client,
    node: &'a str,
    timeout: Duration,
}

impl Rpc for ClientRpc<'_> {
    fn call(
        &mut self,
        body: Map<String, Value>,
    ) -> Pin<Box<dyn Future<Output = Reply> + Send + '_>> {
        Box::pin(async move {
            match self.client.rpc(self.node, body, self.timeout).await {
                None => Reply::Timeout,
                Some(r) if r.get("type").and_then(Value::as_str) == Some("error") => Reply::Error {
                    code: r.get("code").and_then(Value::as_u64),
                    text: r
                        .get("text")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                },
                Some(r) => Reply::Ok(r),
            }
        })
    }
}

/// What the nemesis acts on.
struct TestWorld {
    cluster: Arc<Cluster>,
    net: Arc<Net>,
    console: Arc<Console>,
    setup: HashMap<String, Map<String, Value>>,
}

impl World for TestWorld {
    fn partition(&self, grudge: HashMap<String, HashSet<String>>) {
        if grudge.is_empty() {
            self.net.heal()
        } else {
            self.net.set_partitions(grudge)
        }
    }
    fn loss(&self, p: Option<f64>) {
        self.net.set_loss(p);
    }
    fn kill(&self, node: &str) {
        self.cluster.kill(node);
    }
    fn restart<'a>(&'a self, node: &'a str) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            let client = Client::open(&self.net);
            if let Err(e) = self.cluster.start(node, client).await {
                self.console.warn(format!("Restarting {node} failed: {e}"));
                return;
            }
            if let Some(body) = self.setup.get(node) {
                let mut c = Client::open(&self.net);
                if c.rpc(node, body.clone(), RPC_TIMEOUT).await.is_none() {
                    self.console.warn(format!(
                        "{node} did not acknowledge its setup message after restarting"
                    ));
                }
                c.close();
            }
        })
    }
    fn pause(&self, node: &str) {
        self.cluster.pause(node);
    }
    fn resume(&self, node: &str) {
        self.cluster.resume(node);
    }
}

/// Raises the soft descriptor limit to the hard one; fails if three pipes per node cannot fit.
fn raise_fd_limit(nodes: usize) -> Result<(), Fatal> {
    // Three pipes per node, plus its log file and what the runtime holds per child.
    let need = (nodes as u64) * 5 + 256;
    // SAFETY: plain getrlimit/setrlimit on this process.
    let limit = unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Ok(());
        }
        if lim.rlim_cur < lim.rlim_max {
            let mut raised = lim;
            raised.rlim_cur = lim.rlim_max;
            // May fail (macOS refuses an infinite soft limit); what counts is re-read below.
            libc::setrlimit(libc::RLIMIT_NOFILE, &raised);
        }
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur
    };
    if limit < need {
        return Err(Fatal(format!(
            "{nodes} nodes need about {need} file descriptors, but the limit is {limit}; raise it (ulimit -n) or use fewer nodes"
        )));
    }
    Ok(())
}

/// Set by the first Ctrl-C; the running test tears down and exits 255. A second Ctrl-C
/// exits at once (see `main`).
pub static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// Wakes the running test when [`INTERRUPTED`] is set.
pub static INTERRUPT: tokio::sync::Notify = tokio::sync::Notify::const_new();

async fn interrupted() {
    loop {
        let notified = INTERRUPT.notified();
        tokio::pin!(notified);
        // Registered before the flag is read, so a notification in between is not lost.
        notified.as_mut().enable();
        if INTERRUPTED.load(Ordering::SeqCst) {
            return;
        }
        notified.await;
    }
}

/// Runs one test with `seed` and writes its store directory.
pub async fn run(cfg: &TestConfig, seed: u64) -> Result<Verdict, Fatal> {
    let console = Arc::new(Console::new(cfg.progress));
    let dir = crate::store::create(&cfg.store, &cfg.workload).map_err(|e| {
        Fatal(format!(
            "cannot create the store under {}: {e}",
            cfg.store.display()
        ))
    })?;
    console
        .log_to(&dir.join("jepsen.log"))
        .map_err(|e| Fatal(format!("cannot write jepsen.log: {e}")))?;
    console.info(format!("Seed: {seed} (re-run with --seed {seed})"));
    console.info(format!("Test directory: {}", dir.display()));
    raise_fd_limit(cfg.nodes.len())?;
    write_test_json(cfg, seed, &dir)?;

    let opts = WorkloadOptions {
        topology: cfg.topology,
        nodes: cfg.nodes.clone(),
        concurrency: cfg.concurrency,
        key_count: cfg.key_count,
        max_txn_length: cfg.max_txn_length,
        max_writes_per_key: cfg.max_writes_per_key,
    };
    let workload: Arc<dyn Workload> = workload::by_name(&cfg.workload, &opts)
        .ok_or_else(|| Fatal(format!("workload {} is not available", cfg.workload)))?
        .into();
    let start = Instant::now();
    let history = Arc::new(History::new(start));
    let net = Net::new(
        NetConfig {
            seed,
            latency_ms: cfg.latency,
            dist: cfg.latency_dist,
            log_send: cfg.log_net_send,
            log_recv: cfg.log_net_recv,
        },
        Arc::clone(&console),
    );
    console.info("Starting services: (lin-kv lin-tso lww-kv seq-kv)");
    let delivery = tokio::spawn(Arc::clone(&net).deliver_forever());
    let clock = {
        let h = Arc::clone(&history);
        Arc::new(move || h.now()) as Arc<dyn Fn() -> u64 + Send + Sync>
    };
    let spec = NodeSpec {
        bin: cfg.bin.clone(),
        args: cfg.args.clone(),
        cwd: cfg.node_cwd.clone(),
        log_dir: dir.join("node-logs"),
        log_stderr: cfg.log_stderr,
    };
    let cluster = Cluster::new(
        spec,
        cfg.nodes.clone(),
        Arc::clone(&net),
        Arc::clone(&console),
        clock,
    );

    let outcome = tokio::select! {
        r = drive(cfg, seed, &console, &net, &cluster, &history, &workload, start) => r,
        _ = interrupted() => Err(Fatal("interrupted (Ctrl-C); the history so far is saved, analysis skipped".into())),
    };
    console.finish_progress();
    cluster.teardown().await;
    delivery.abort();
    let ops = history.snapshot();
    write_file(&dir.join("history.edn"), &history::to_edn_text(&ops))?;
    write_file(&dir.join("history.txt"), &history::to_txt(&ops))?;
    write_file(
        &dir.join("messages.svg"),
        &crate::messages::svg(&net.journal(), &cfg.nodes),
    )?;
    outcome?;

    let dropped = net.stats().dropped;
    for (node, reasons) in &dropped {
        let list: Vec<String> = reasons
            .iter()
            .map(|(r, n)| format!("{n} {}", r.name()))
            .collect();
        console.warn(format!(
            "Node {node}: dropped output lines: {}",
            list.join(", ")
        ));
    }
    let crashes = cluster.crashes();
    let crashed = (!crashes.is_empty()).then(|| {
        Edn::Map(
            crashes
                .iter()
                .map(|c| {
                    (
                        Edn::Str(c.node.clone()),
                        map([
                            ("exit", Edn::Int(c.exit)),
                            ("time", Edn::Int(c.time as i64)),
                        ]),
                    )
                })
                .collect(),
        )
    });
    let inputs = analysis::Inputs {
        dir: &dir,
        ops: &ops,
        workload: workload.as_ref(),
        availability: cfg.availability,
        checker_timeout: cfg.checker_timeout,
        consistency_models: &cfg.consistency_models,
        time_limit: cfg.time_limit,
        net: checker::net(&net.stats(), &ops),
        crashed,
        seed,
    };
    let valid = analysis::analyze(&console, inputs)?;
    Ok(Verdict { valid, dir })
}

/// Everything between `init` and teardown; returns early with the reason if setup fails.
#[allow(clippy::too_many_arguments)]
async fn drive(
    cfg: &TestConfig,
    seed: u64,
    console: &Arc<Console>,
    net: &Arc<Net>,
    cluster: &Arc<Cluster>,
    history: &Arc<History>,
    workload: &Arc<dyn Workload>,
    start: Instant,
) -> Result<(), Fatal> {
    // init: client c<i> serves nodes[i].
    let mut inits = tokio::task::JoinSet::new();
    for id in &cfg.nodes {
        let client = Client::open(net);
        let (cluster, id) = (Arc::clone(cluster), id.clone());
        inits.spawn(async move { cluster.start(&id, client).await });
    }
    while let Some(r) = inits.join_next().await {
        r.map_err(|e| Fatal(format!("node start-up task failed: {e}")))?
            .map_err(Fatal)?;
    }
    console.info(format!("All {} nodes answered init", cfg.nodes.len()));

    // Per-node setup from clients c<N>..c<2N-1>.
    let setup: HashMap<String, Map<String, Value>> = cfg
        .nodes
        .iter()
        .filter_map(|n| workload.setup(n).map(|b| (n.clone(), b)))
        .collect();
    let mut setups = tokio::task::JoinSet::new();
    for id in &cfg.nodes {
        let mut client = Client::open(net);
        let (id, body, cluster) = (id.clone(), setup.get(id).cloned(), Arc::clone(cluster));
        setups.spawn(async move {
            let r = match body {
                None => Ok(()),
                Some(body) => {
                    let t = body
                        .get("type")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string();
                    // A node that crashes now is reported at once, not after the timeout.
                    let reply = tokio::select! {
                        r = client.rpc(&id, body, RPC_TIMEOUT) => r,
                        _ = cluster.exited(&id) => {
                            client.close();
                            return Err(format!("Node {id} exited during setup; see the crash report above."));
                        }
                    };
                    match reply {
                        Some(r)
                            if r.get("type").and_then(Value::as_str)
                                == Some(&format!("{t}_ok")) =>
                        {
                            Ok(())
                        }
                        Some(r) => Err(format!("Node {id} answered {t} with {}", Value::Object(r))),
                        None => Err(format!(
                            "Node {id} did not answer the {t} message within 5 s"
                        )),
                    }
                }
            };
            client.close();
            r
        });
    }
    while let Some(r) = setups.join_next().await {
        r.map_err(|e| Fatal(format!("setup task failed: {e}")))?
            .map_err(Fatal)?;
    }

    // Workers from c<2N>, thread i bound to nodes[i mod N].
    let concurrency = cfg.concurrency;
    let (free_tx, mut free_rx) = mpsc::unbounded_channel::<Done>();
    let mut dispatcher = Dispatcher {
        history: Arc::clone(history),
        op_txs: Vec::with_capacity(concurrency),
        processes: Vec::with_capacity(concurrency),
    };
    let shared = Arc::new(Shared {
        workload: Arc::clone(workload),
        history: Arc::clone(history),
        net: Arc::clone(net),
        console: Arc::clone(console),
        concurrency: concurrency as u64,
        timeout: workload.timeout(cfg.latency),
    });
    for i in 0..concurrency {
        let (tx, mut rx) = mpsc::unbounded_channel::<(Invocation, bool)>();
        let process = Arc::new(AtomicU64::new(i as u64));
        dispatcher.op_txs.push(tx);
        dispatcher.processes.push(Arc::clone(&process));
        let mut worker = Worker {
            node: cfg.nodes[i % cfg.nodes.len()].clone(),
            logic: workload.client(),
            process,
            client: Client::open(net),
        };
        let (sh, free) = (Arc::clone(&shared), free_tx.clone());
        tokio::spawn(async move {
            while let Some((inv, is_final)) = rx.recv().await {
                // Frees the thread even if the operation panics, so the phase ends.
                let mut done = FreeOnDrop {
                    tx: free.clone(),
                    thread: i,
                    outcome: OpType::Info,
                    finished: false,
                };
                done.outcome = worker.perform(&inv, is_final, &sh).await;
                done.finished = worker.logic.as_ref().is_some_and(|l| l.final_done());
            }
            worker.client.close();
        });
        let _ = free_tx.send(Done {
            thread: i,
            outcome: OpType::Ok,
            finished: false,
        });
    }

    let main_end = Instant::now() + Duration::from_secs_f64(cfg.time_limit);
    let in_final = Arc::new(AtomicBool::new(false));
    let world = TestWorld {
        cluster: Arc::clone(cluster),
        net: Arc::clone(net),
        console: Arc::clone(console),
        setup,
    };
    let nemesis = Nemesis::new(
        cfg.nemesis.clone(),
        cfg.nemesis_interval,
        cfg.lose_probability,
        cfg.nodes.clone(),
        seed::stream(seed, "nemesis"),
    );
    let nemesis_status = Arc::clone(&nemesis.status);
    let progress = tokio::spawn(show_progress(
        Arc::clone(console),
        Arc::clone(history),
        Arc::clone(net),
        nemesis_status,
        Arc::clone(&in_final),
        cfg.time_limit,
        start,
    ));

    let mut generator = workload.generator();
    let generate = async {
        let mut schedule = seed::stream(seed, "schedule");
        let mut values = seed::stream(seed, "generator");
        let phase_start = Instant::now();
        if cfg.rate > 0.0 {
            // t₀ = 0, tₖ = tₖ₋₁ + U[0, 2/R]; a busy moment never shifts later planned times.
            let mut t = 0.0f64;
            loop {
                let at = phase_start + Duration::from_secs_f64(t);
                if at >= main_end {
                    break;
                }
                tokio::time::sleep_until(at).await;
                let free = tokio::select! {
                    w = free_rx.recv() => w,
                    _ = tokio::time::sleep_until(main_end) => None,
                };
                let Some(Done { thread: w, .. }) = free else {
                    break;
                };
                let inv = generator.next(
                    &mut values,
                    w,
                    dispatcher.processes[w].load(Ordering::SeqCst),
                );
                dispatcher.dispatch(w, inv, false);
                t += schedule.gen_range(0.0..=2.0 / cfg.rate);
            }
        }
        tokio::time::sleep_until(main_end).await;
    };
    tokio::join!(generate, nemesis.run(main_end, &world, history));
    // Let in-flight operations finish or time out.
    for _ in 0..concurrency {
        free_rx.recv().await;
    }

    let plan = generator.final_phase();
    if !plan.ops.is_empty() {
        in_final.store(true, Ordering::SeqCst);
        console.info("Waiting for recovery...");
        tokio::time::sleep(RECOVERY).await;
        run_final_phase(&plan, &dispatcher, &mut free_rx, concurrency).await;
    }
    drop(dispatcher);
    progress.abort();
    Ok(())
}

/// A worker thread is free again, after an operation with this outcome.
struct Done {
    thread: usize,
    outcome: OpType,
    /// Its client has read all it should (final phase; see `ClientLogic::final_done`).
    finished: bool,
}

/// Reports the thread free when dropped: after the operation, or while unwinding from a panic.
struct FreeOnDrop {
    tx: mpsc::UnboundedSender<Done>,
    thread: usize,
    outcome: OpType,
    finished: bool,
}

impl Drop for FreeOnDrop {
    fn drop(&mut self) {
        let _ = self.tx.send(Done {
            thread: self.thread,
            outcome: self.outcome,
            finished: self.finished,
        });
    }
}

/// Every thread runs the plan's operations in order; a `:fail` is retried up to the plan's
/// limit; the last operation may repeat until the thread's client is done; nothing new starts
/// after the plan's time cap.
async fn run_final_phase(
    plan: &FinalPhase,
    dispatcher: &Dispatcher,
    free_rx: &mut mpsc::UnboundedReceiver<Done>,
    concurrency: usize,
) {
    let deadline = plan.cap.map(|c| Instant::now() + c);
    let mut next = vec![0usize; concurrency];
    let mut retries = vec![0u32; concurrency];
    for thread in 0..concurrency {
        dispatcher.dispatch(thread, plan.ops[0].clone(), plan.tagged);
    }
    let mut busy = concurrency;
    while busy > 0 {
        let Some(Done {
            thread,
            outcome,
            finished,
        }) = free_rx.recv().await
        else {
            return;
        };
        let last = next[thread] + 1 == plan.ops.len();
        if outcome == OpType::Fail && retries[thread] < plan.retries {
            retries[thread] += 1;
        } else if let (true, Some(pace), false) = (last, plan.repeat_last_every, finished) {
            // Repeat the last operation (kafka's poll) until the client has read everything.
            // Pacing here delays other threads' next steps by at most one pace.
            tokio::time::sleep(pace).await;
        } else {
            next[thread] += 1;
            retries[thread] = 0;
        }
        let in_time = deadline.is_none_or(|d| Instant::now() < d);
        match plan.ops.get(next[thread]) {
            Some(op) if in_time => dispatcher.dispatch(thread, op.clone(), plan.tagged),
            _ => busy -= 1,
        }
    }
}

async fn show_progress(
    console: Arc<Console>,
    history: Arc<History>,
    net: Arc<Net>,
    nemesis: Arc<std::sync::Mutex<String>>,
    in_final: Arc<AtomicBool>,
    limit: f64,
    start: Instant,
) {
    let mut last = (Instant::now(), net.delivered());
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let (ok, fail, info) = history.completion_counts();
        let now = (Instant::now(), net.delivered());
        let rate = (now.1 - last.1) as f64 / now.0.duration_since(last.0).as_secs_f64().max(1e-3);
        last = now;
        let of = if in_final.load(Ordering::SeqCst) {
            "final".to_string()
        } else {
            format!("{limit}s")
        };
        let nem = nemesis.lock().expect("status lock").clone();
        console.progress(format!(
            "[ {:.1}s / {of} ] ok {ok}  fail {fail}  info {info}  | {} msg/s | nemesis: {nem}",
            start.elapsed().as_secs_f64(),
            group_thousands(rate as u64)
        ));
    }
}

fn group_thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

pub(crate) fn write_file(path: &Path, text: &str) -> Result<(), Fatal> {
    std::fs::write(path, text).map_err(|e| Fatal(format!("cannot write {}: {e}", path.display())))
}

fn write_test_json(cfg: &TestConfig, seed: u64, dir: &Path) -> Result<(), Fatal> {
    let n = cfg.nodes.len();
    let test = json!({
        "argv": cfg.argv,
        "workload": cfg.workload,
        "bin": cfg.bin,
        "args": cfg.args,
        "nodes": cfg.nodes,
        "init-clients": (0..n).map(|i| format!("c{i}")).collect::<Vec<_>>(),
        "concurrency": cfg.concurrency,
        "rate": cfg.rate,
        "time-limit": cfg.time_limit,
        "latency": {"mean": cfg.latency, "dist": format!("{:?}", cfg.latency_dist).to_lowercase()},
        "nemesis": cfg.nemesis.iter().map(|f| f.name()).collect::<Vec<_>>(),
        "nemesis-interval": cfg.nemesis_interval,
        "lose-probability": cfg.lose_probability,
        "topology": cfg.topology_name,
        "availability": match cfg.availability {
            None => Value::Null,
            Some(checker::Availability::Total) => json!("total"),
            Some(checker::Availability::AtLeast(a)) => json!(a),
        },
        "consistency-models": cfg.consistency_models,
        "checker-timeout": cfg.checker_timeout,
        "key-count": cfg.key_count,
        "max-txn-length": cfg.max_txn_length,
        "max-writes-per-key": cfg.max_writes_per_key,
        "node-cwd": cfg.node_cwd,
        "seed": seed,
        "version": env!("CARGO_PKG_VERSION"),
    });
    write_file(
        &dir.join("test.json"),
        &format!("{}\n", serde_json::to_string_pretty(&test).expect("json")),
    )
}

/// The `store/` path of the newest test (for messages).
pub fn latest(store: &Path) -> PathBuf {
    store.join("latest")
}
