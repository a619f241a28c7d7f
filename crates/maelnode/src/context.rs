//! What a handler works with: the node-wide [`Ctx`] (identity, state, send, RPC, timers, tasks)
//! and the per-message [`Request`] that is answered by consuming it.

use crate::message::{body_text, encode_line};
use crate::{Error, HandlerResult, Message};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::future::{Future, IntoFuture};
use std::ops::Deref;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The first and longest pause between tries of [`Ctx::rpc_retry`].
const RETRY_PAUSE_MIN: Duration = Duration::from_millis(10);
const RETRY_PAUSE_MAX: Duration = Duration::from_millis(500);

/// What the output writer receives: a line, or the order to flush and stop.
pub(crate) enum Out {
    Line(String),
    Close(oneshot::Sender<()>),
}

/// The node's identity, fixed by `init`.
pub(crate) struct Identity {
    pub(crate) node_id: String,
    pub(crate) node_ids: Vec<String>,
}

/// The state-independent part of a node, shared by contexts, RPC futures and KV clients.
pub(crate) struct Core {
    pub(crate) ident: OnceLock<Identity>,
    next_msg_id: AtomicU64,
    out: mpsc::UnboundedSender<Out>,
    pending: Mutex<HashMap<u64, oneshot::Sender<Message>>>,
    /// Set at input EOF: no reply can arrive any more.
    closed: AtomicBool,
    pub(crate) rpc_timeout: Duration,
    /// Handlers, callbacks and `spawn`ed tasks, waited for at shutdown.
    pub(crate) tracker: TaskTracker,
    /// Cancels tracked tasks when the shutdown grace runs out.
    pub(crate) cancel: CancellationToken,
    /// Cancels timers at input EOF: a timer never finishes by itself.
    pub(crate) timers: CancellationToken,
    rng: Mutex<StdRng>,
}

impl Core {
    pub(crate) fn new(
        out: mpsc::UnboundedSender<Out>,
        rpc_timeout: Duration,
        seed: Option<u64>,
    ) -> Core {
        Core {
            ident: OnceLock::new(),
            next_msg_id: AtomicU64::new(1),
            out,
            pending: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
            rpc_timeout,
            tracker: TaskTracker::new(),
            cancel: CancellationToken::new(),
            timers: CancellationToken::new(),
            rng: Mutex::new(seed.map_or_else(StdRng::from_entropy, StdRng::seed_from_u64)),
        }
    }

    pub(crate) fn node_id(&self) -> &str {
        self.ident.get().map_or("", |i| i.node_id.as_str())
    }

    /// Queues `body` (a serialised JSON object) with a fresh `msg_id`, `in_reply_to` set or
    /// removed, and `default_type` unless the body has a type.
    pub(crate) fn emit(
        &self,
        dest: &str,
        body: &str,
        in_reply_to: Option<u64>,
        default_type: Option<&str>,
    ) {
        let id = self.next_msg_id.fetch_add(1, Ordering::Relaxed);
        self.emit_as(id, dest, body, in_reply_to, default_type);
    }

    /// Queues `body` with the given `msg_id`.
    fn emit_as(
        &self,
        id: u64,
        dest: &str,
        body: &str,
        in_reply_to: Option<u64>,
        default_type: Option<&str>,
    ) {
        let line = encode_line(self.node_id(), dest, body, id, in_reply_to, default_type);
        // A closed writer means stdout is gone; there is nobody left to tell.
        let _ = self.out.send(Out::Line(line));
    }

    /// Queues a body given as a JSON map (error replies and other library-made bodies).
    pub(crate) fn emit_map(&self, dest: &str, body: &Map<String, Value>, in_reply_to: Option<u64>) {
        let text = serde_json::to_string(body).expect("a JSON map always serialises");
        self.emit(dest, &text, in_reply_to, None);
    }

    /// Hands a reply to the RPC waiting for it; a late or unknown reply is dropped.
    pub(crate) fn complete(&self, msg: Message) {
        let irt = msg.in_reply_to().unwrap_or_default();
        let waiter = self.pending.lock().expect("pending lock").remove(&irt);
        match waiter {
            Some(tx) => {
                let _ = tx.send(msg);
            }
            None => tracing::debug!(
                node = self.node_id(),
                in_reply_to = irt,
                src = msg.src(),
                "dropped a reply that no RPC is waiting for"
            ),
        }
    }

    /// Input ended: every pending RPC fails now, and new ones fail at once.
    pub(crate) fn close_rpcs(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.pending.lock().expect("pending lock").clear();
    }

    /// Whether input has ended (no reply can arrive any more).
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    pub(crate) fn pending_count(&self) -> usize {
        self.pending.lock().expect("pending lock").len()
    }

    pub(crate) fn shutdown_writer(&self) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        let _ = self.out.send(Out::Close(tx));
        rx
    }

    /// Spawns a task that is waited for at shutdown and cancelled when the grace runs out.
    pub(crate) fn spawn_tracked(&self, fut: impl Future<Output = ()> + Send + 'static) {
        let cancel = self.cancel.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = fut => {}
            }
        });
    }

    pub(crate) async fn call(
        self: Arc<Self>,
        dest: String,
        body: Result<String, Error>,
        timeout: Duration,
    ) -> Result<Message, Error> {
        let body = body?;
        let (tx, rx) = oneshot::channel();
        let id = self.next_msg_id.fetch_add(1, Ordering::Relaxed);
        // Registered before the request leaves, so the reply cannot overtake the entry.
        self.pending.lock().expect("pending lock").insert(id, tx);
        let _guard = PendingGuard { core: &self, id };
        if self.closed.load(Ordering::SeqCst) {
            return Err(Error::timeout(format!(
                "no reply can arrive from {dest}: the node's input has ended"
            )));
        }
        self.emit_as(id, &dest, &body, None, None);
        match tokio::time::timeout(timeout, rx).await {
            Err(_) => Err(Error::timeout(format!(
                "RPC to {dest} timed out after {timeout:?}"
            ))),
            Ok(Err(_)) => Err(Error::timeout(format!(
                "no reply can arrive from {dest}: the node's input has ended"
            ))),
            Ok(Ok(reply)) if reply.msg_type() == "error" => {
                Err(Error::from_body(reply.body_json()))
            }
            Ok(Ok(reply)) => Ok(reply),
        }
    }
}

/// Removes a pending RPC entry when its future finishes or is dropped.
struct PendingGuard<'a> {
    core: &'a Core,
    id: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.core
            .pending
            .lock()
            .expect("pending lock")
            .remove(&self.id);
    }
}

/// The node-wide handler context: identity, user state, messaging, timers and tasks.
///
/// Cheap to clone, `Send` and `'static`: keep it in tasks and timers, or in your state after
/// init. It is the explicit stand-in for the Racket library's dynamic handler context.
///
/// ```
/// use maelnode::{Ctx, Node};
/// use std::time::Duration;
/// #[derive(Default)]
/// struct State { gossip_rounds: std::sync::atomic::AtomicU64 }
/// let node = Node::builder(State::default())
///     .on_init(|ctx: Ctx<State>| async move {
///         // Contexts work outside handlers too: start a timer from the init hook.
///         ctx.every(Duration::from_millis(200), |ctx: Ctx<State>| async move {
///             ctx.state().gossip_rounds.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
///         });
///         Ok(())
///     });
/// # drop(node);
/// ```
pub struct Ctx<S> {
    pub(crate) core: Arc<Core>,
    pub(crate) state: Arc<S>,
}

impl<S> Clone for Ctx<S> {
    fn clone(&self) -> Self {
        Ctx {
            core: Arc::clone(&self.core),
            state: Arc::clone(&self.state),
        }
    }
}

impl<S: Send + Sync + 'static> Ctx<S> {
    /// This node's id (`""` before `init`).
    ///
    /// ```
    /// # async fn f(ctx: maelnode::Ctx<()>) {
    /// tracing::info!(node = ctx.node_id(), "ready");
    /// # }
    /// ```
    pub fn node_id(&self) -> &str {
        self.core.node_id()
    }

    /// Every node id from `init`, in init order, this node included.
    ///
    /// ```
    /// # async fn f(ctx: maelnode::Ctx<()>) {
    /// let cluster_size = ctx.node_ids().len();
    /// # }
    /// ```
    pub fn node_ids(&self) -> &[String] {
        self.core.ident.get().map_or(&[], |i| i.node_ids.as_slice())
    }

    /// Every other node, in init order.
    ///
    /// ```
    /// # async fn f(ctx: maelnode::Ctx<()>) {
    /// for peer in ctx.peers() { ctx.send(peer, serde_json::json!({"type": "hello"})).ok(); }
    /// # }
    /// ```
    pub fn peers(&self) -> impl Iterator<Item = &str> + '_ {
        let me = self.node_id();
        self.node_ids()
            .iter()
            .map(String::as_str)
            .filter(move |n| *n != me)
    }

    /// The user state given to [`Node::builder`](crate::Node::builder).
    ///
    /// ```
    /// # async fn f(ctx: maelnode::Ctx<std::sync::Mutex<Vec<u64>>>) {
    /// ctx.state().lock().unwrap().push(1);
    /// # }
    /// ```
    pub fn state(&self) -> &S {
        &self.state
    }

    /// A random number generator: seeded from the cluster seed in the simulator (so runs
    /// replay), from OS entropy otherwise. Each call returns a new generator drawn from the
    /// node's own stream.
    ///
    /// ```
    /// # async fn f(ctx: maelnode::Ctx<()>) {
    /// use maelnode::rand::Rng;
    /// let jitter_ms: u64 = ctx.rng().gen_range(0..50);
    /// # }
    /// ```
    pub fn rng(&self) -> StdRng {
        let seed: u64 = self.core.rng.lock().expect("rng lock").r#gen();
        StdRng::seed_from_u64(seed)
    }

    /// How many RPCs are waiting for a reply (for tests and metrics).
    ///
    /// ```
    /// # async fn f(ctx: maelnode::Ctx<()>) {
    /// assert_eq!(ctx.pending_rpcs(), 0);
    /// # }
    /// ```
    pub fn pending_rpcs(&self) -> usize {
        self.core.pending_count()
    }

    /// Sends a message and registers nothing (fire and forget). A fresh `msg_id` is set;
    /// any `in_reply_to` in `body` is removed.
    ///
    /// ```
    /// # async fn f(ctx: maelnode::Ctx<()>) -> Result<(), maelnode::Error> {
    /// ctx.send("n2", serde_json::json!({"type": "gossip", "ids": [1, 2]}))?;
    /// # Ok(()) }
    /// ```
    pub fn send(&self, dest: &str, body: impl Serialize) -> Result<(), Error> {
        self.core.emit(dest, &body_text(body)?, None, None);
        Ok(())
    }

    /// Sends a request and returns a future of its reply: `Ok` for a non-error reply, `Err`
    /// with the reply's code for an error body, and `Err` code 0 when the timeout (node-wide
    /// default, or [`Rpc::timeout`]) expires. Dropping the future forgets the request.
    ///
    /// ```
    /// # async fn f(ctx: maelnode::Ctx<()>) -> Result<(), maelnode::Error> {
    /// use std::time::Duration;
    /// let reply = ctx.rpc("n2", serde_json::json!({"type": "read"}))
    ///     .timeout(Duration::from_millis(300))
    ///     .await?;
    /// let value = reply.body_json()["value"].clone();
    /// # Ok(()) }
    /// ```
    pub fn rpc(&self, dest: &str, body: impl Serialize) -> Rpc {
        Rpc {
            core: Arc::clone(&self.core),
            dest: dest.to_string(),
            body: body_text(body),
            timeout: self.core.rpc_timeout,
        }
    }

    /// The callback form of [`rpc`](Self::rpc): `f` runs exactly once with the reply, the
    /// error or the timeout, as a tracked task.
    ///
    /// ```
    /// # async fn f(ctx: maelnode::Ctx<()>) {
    /// ctx.rpc_then("n2", serde_json::json!({"type": "gossip", "ids": [3]}), |ctx, result| async move {
    ///     if result.is_err() { tracing::warn!(node = ctx.node_id(), "gossip to n2 unacknowledged"); }
    /// });
    /// # }
    /// ```
    pub fn rpc_then<F, Fut>(&self, dest: &str, body: impl Serialize, f: F)
    where
        F: FnOnce(Ctx<S>, Result<Message, Error>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let call = self.rpc(dest, body).into_future();
        let ctx = self.clone();
        self.core.spawn_tracked(async move {
            let result = call.await;
            f(ctx, result).await;
        });
    }

    /// Sends a request until it gets an `_ok` reply or a definite error, resending (with a new
    /// `msg_id`, after a pause that doubles from 10 ms to 500 ms) after each timeout or
    /// indefinite error, until `deadline` has passed or the node's input has ended. Each try
    /// waits at most the node's RPC timeout.
    ///
    /// ```
    /// # async fn f(ctx: maelnode::Ctx<()>) -> Result<(), maelnode::Error> {
    /// use std::time::Duration;
    /// let body = serde_json::json!({"type": "replicate", "value": 5});
    /// ctx.rpc_retry("n2", &body, Duration::from_secs(5)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn rpc_retry(
        &self,
        dest: &str,
        body: impl Serialize,
        deadline: Duration,
    ) -> Result<Message, Error> {
        let body = serde_json::to_value(body)
            .map_err(|e| Error::crash(format!("cannot serialise outgoing body: {e}")))?;
        let until = tokio::time::Instant::now() + deadline;
        let mut pause = RETRY_PAUSE_MIN;
        loop {
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            let try_for = left.min(self.core.rpc_timeout);
            match self.rpc(dest, &body).timeout(try_for).await {
                // After input EOF no reply can come: retrying would only spin.
                Err(e)
                    if !e.is_definite()
                        && !self.core.is_closed()
                        && tokio::time::Instant::now() < until =>
                {
                    tracing::debug!(node = self.node_id(), dest, error = %e, "retrying RPC");
                    // An indefinite error can come back at once; never retry in a tight loop.
                    tokio::time::sleep(
                        pause.min(until.saturating_duration_since(tokio::time::Instant::now())),
                    )
                    .await;
                    pause = (pause * 2).min(RETRY_PAUSE_MAX);
                }
                result => return result,
            }
        }
    }

    /// Runs `fut` as a tracked task: shutdown waits for it (up to the grace period), then
    /// cancels it.
    ///
    /// ```
    /// # async fn f(ctx: maelnode::Ctx<()>) {
    /// let c = ctx.clone();
    /// ctx.spawn(async move { c.send("n2", serde_json::json!({"type": "hint"})).ok(); });
    /// # }
    /// ```
    pub fn spawn(&self, fut: impl Future<Output = ()> + Send + 'static) {
        self.core.spawn_tracked(fut);
    }

    /// Runs `f` every `period`, starting one period from now, until cancelled or shutdown.
    /// A run never overlaps the previous one; ticks missed while it ran are skipped.
    ///
    /// ```
    /// # async fn f(ctx: maelnode::Ctx<()>) {
    /// use std::time::Duration;
    /// let timer = ctx.every(Duration::from_millis(100), |ctx| async move {
    ///     for peer in ctx.peers() { ctx.send(peer, serde_json::json!({"type": "heartbeat"})).ok(); }
    /// });
    /// timer.cancel();
    /// # }
    /// ```
    pub fn every<F, Fut>(&self, period: Duration, f: F) -> TimerHandle
    where
        F: Fn(Ctx<S>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.every_jittered(period, Duration::ZERO, f)
    }

    /// Like [`every`](Self::every), but each run is delayed by a random extra in `[0, jitter)`
    /// so that nodes started together do not tick in lockstep.
    ///
    /// ```
    /// # async fn f(ctx: maelnode::Ctx<()>) {
    /// use std::time::Duration;
    /// ctx.every_jittered(Duration::from_millis(100), Duration::from_millis(20), |_ctx| async {});
    /// # }
    /// ```
    pub fn every_jittered<F, Fut>(&self, period: Duration, jitter: Duration, f: F) -> TimerHandle
    where
        F: Fn(Ctx<S>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let token = self.core.timers.child_token();
        let ctx = self.clone();
        let stop = token.clone();
        let mut rng = self.rng();
        tokio::spawn(async move {
            let period = period.max(Duration::from_millis(1));
            let mut next = tokio::time::Instant::now() + period;
            loop {
                let extra = if jitter.is_zero() {
                    Duration::ZERO
                } else {
                    rng.gen_range(Duration::ZERO..jitter)
                };
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep_until(next + extra) => {}
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = run_caught(ctx.node_id(), f(ctx.clone())) => {}
                }
                let now = tokio::time::Instant::now();
                while next <= now {
                    next += period;
                }
            }
        });
        TimerHandle { token }
    }

    /// Runs `f` once after `delay`, unless cancelled or shut down first.
    ///
    /// ```
    /// # async fn f(ctx: maelnode::Ctx<()>) {
    /// use std::time::Duration;
    /// ctx.after(Duration::from_secs(1), |ctx| async move { tracing::info!(node = ctx.node_id(), "one second in"); });
    /// # }
    /// ```
    pub fn after<F, Fut>(&self, delay: Duration, f: F) -> TimerHandle
    where
        F: FnOnce(Ctx<S>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let token = self.core.timers.child_token();
        let stop = token.clone();
        let ctx = self.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = tokio::time::sleep(delay) => {
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        _ = run_caught(ctx.node_id(), f(ctx.clone())) => {}
                    }
                }
            }
        });
        TimerHandle { token }
    }
}

/// Runs a timer body, logging a panic instead of ending the timer.
async fn run_caught(node: &str, fut: impl Future<Output = ()>) {
    if let Err(panic) = AssertUnwindSafe(fut).catch_unwind().await {
        tracing::error!(
            node,
            panic = panic_text(&*panic),
            "timer task panicked; the timer keeps running"
        );
    }
}

/// The message of a caught panic.
pub(crate) fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "handler panicked".to_string())
}

/// Cancels a timer. Dropping the handle does not cancel it; shutdown does.
///
/// ```
/// # async fn f(ctx: maelnode::Ctx<()>) {
/// let t = ctx.after(std::time::Duration::from_secs(3), |_| async {});
/// t.cancel();
/// assert!(t.is_cancelled());
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct TimerHandle {
    token: CancellationToken,
}

impl TimerHandle {
    /// Stops the timer; a run in progress is abandoned at its next await point.
    ///
    /// ```
    /// # async fn f(t: maelnode::TimerHandle) { t.cancel(); }
    /// ```
    pub fn cancel(&self) {
        self.token.cancel();
    }

    /// Whether the timer was cancelled (by [`cancel`](Self::cancel) or shutdown).
    ///
    /// ```
    /// # async fn f(t: maelnode::TimerHandle) { let _stopped = t.is_cancelled(); }
    /// ```
    pub fn is_cancelled(&self) -> bool {
        self.token.is_cancelled()
    }
}

/// An RPC in preparation; `.await` it (it implements [`IntoFuture`]) for the reply.
///
/// ```
/// # async fn f(ctx: maelnode::Ctx<()>) -> Result<(), maelnode::Error> {
/// #[derive(serde::Deserialize)]
/// struct ReadOk { messages: Vec<u64> }
/// let r: ReadOk = ctx.rpc("n3", serde_json::json!({"type": "read"}))
///     .timeout(std::time::Duration::from_millis(250))
///     .await?
///     .body_as()?;
/// # Ok(()) }
/// ```
#[must_use = "an RPC is sent only when awaited"]
pub struct Rpc {
    core: Arc<Core>,
    dest: String,
    body: Result<String, Error>,
    timeout: Duration,
}

impl Rpc {
    /// Overrides the node-wide RPC timeout for this call.
    ///
    /// ```
    /// # async fn f(ctx: maelnode::Ctx<()>) {
    /// let _ = ctx.rpc("n2", serde_json::json!({"type": "ping"})).timeout(std::time::Duration::from_millis(50)).await;
    /// # }
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Rpc {
        self.timeout = timeout;
        self
    }
}

impl IntoFuture for Rpc {
    type Output = Result<Message, Error>;
    type IntoFuture = BoxFuture<'static, Result<Message, Error>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.core.call(self.dest, self.body, self.timeout))
    }
}

/// One incoming request: the message plus the node's context (through `Deref`).
///
/// Replying consumes the request, so a request is answered at most once.
///
/// ```
/// use maelnode::{Node, Request};
/// let node = Node::builder(()).on_json("whoami", |req: Request<()>, _body| async move {
///     let me = req.node_id().to_string(); // Ctx methods through Deref
///     req.reply(serde_json::json!({"id": me}))
/// });
/// # drop(node);
/// ```
pub struct Request<S> {
    ctx: Ctx<S>,
    msg: Message,
    replied: Arc<AtomicBool>,
}

impl<S> Deref for Request<S> {
    type Target = Ctx<S>;
    fn deref(&self) -> &Ctx<S> {
        &self.ctx
    }
}

impl<S: Send + Sync + 'static> Request<S> {
    pub(crate) fn new(ctx: Ctx<S>, msg: Message, replied: Arc<AtomicBool>) -> Self {
        Request { ctx, msg, replied }
    }

    /// The sender's id.
    ///
    /// ```
    /// # fn f(req: maelnode::Request<()>) { let from_client = req.src().starts_with('c'); }
    /// ```
    pub fn src(&self) -> &str {
        self.msg.src()
    }

    /// The request's `type`.
    ///
    /// ```
    /// # fn f(req: maelnode::Request<()>) { assert!(!req.msg_type().is_empty()); }
    /// ```
    pub fn msg_type(&self) -> &str {
        self.msg.msg_type()
    }

    /// The request's `msg_id`; without one, no reply can be sent.
    ///
    /// ```
    /// # fn f(req: maelnode::Request<()>) { let _id: Option<u64> = req.msg_id(); }
    /// ```
    pub fn msg_id(&self) -> Option<u64> {
        self.msg.msg_id()
    }

    /// The body as a JSON map.
    ///
    /// ```
    /// # fn f(req: maelnode::Request<()>) { let _delta = req.body_json().get("delta"); }
    /// ```
    pub fn body_json(&self) -> &Map<String, Value> {
        self.msg.body_json()
    }

    /// The whole message.
    ///
    /// ```
    /// # fn f(req: maelnode::Request<()>) { let _raw: &str = req.message().body_raw(); }
    /// ```
    pub fn message(&self) -> &Message {
        &self.msg
    }

    /// A context for the node, to keep after the request is answered.
    ///
    /// ```
    /// # fn f(req: maelnode::Request<()>) -> maelnode::HandlerResult {
    /// let ctx = req.ctx();
    /// req.reply_ok()?;
    /// ctx.send("n2", serde_json::json!({"type": "replicate"}))?;
    /// # Ok(()) }
    /// ```
    pub fn ctx(&self) -> Ctx<S> {
        self.ctx.clone()
    }

    /// Replies to the sender with `body`, setting `in_reply_to` and a fresh `msg_id`. The
    /// reply's `type` is `body`'s own if it sets one, else the request type + `_ok`.
    ///
    /// ```
    /// # fn f(req: maelnode::Request<()>) -> maelnode::HandlerResult {
    /// req.reply(serde_json::json!({"messages": [1, 2, 3]})) // type: "read_ok" for a "read"
    /// # }
    /// ```
    pub fn reply(self, body: impl Serialize) -> HandlerResult {
        let body = body_text(body)?;
        let ok_type = format!("{}_ok", self.msg.msg_type());
        self.send_reply(&body, Some(&ok_type));
        Ok(())
    }

    /// Replies with an empty `_ok` body, e.g. `{"type":"broadcast_ok"}`.
    ///
    /// ```
    /// # fn f(req: maelnode::Request<()>) -> maelnode::HandlerResult {
    /// req.reply_ok()
    /// # }
    /// ```
    pub fn reply_ok(self) -> HandlerResult {
        let ok_type = format!("{}_ok", self.msg.msg_type());
        self.send_reply("{}", Some(&ok_type));
        Ok(())
    }

    /// Replies with an error body (`type: "error"`, `code`, `text`).
    ///
    /// ```
    /// # fn f(req: maelnode::Request<()>) -> maelnode::HandlerResult {
    /// use maelnode::{Error, ErrorCode};
    /// req.reply_error(Error::new(ErrorCode::TemporarilyUnavailable, "no leader yet"))
    /// # }
    /// ```
    pub fn reply_error(self, err: Error) -> HandlerResult {
        let body = serde_json::to_string(&err.to_body()).expect("a JSON map always serialises");
        self.send_reply(&body, None);
        Ok(())
    }

    fn send_reply(self, body: &str, default_type: Option<&str>) {
        self.replied.store(true, Ordering::Release);
        match self.msg.msg_id() {
            Some(id) => self
                .ctx
                .core
                .emit(self.msg.src(), body, Some(id), default_type),
            None => tracing::warn!(
                node = self.ctx.node_id(),
                src = self.msg.src(),
                msg_type = self.msg.msg_type(),
                "not replying: the request has no msg_id"
            ),
        }
    }
}
