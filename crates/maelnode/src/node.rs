//! The node: its builder (handlers, init hook, timers, settings) and the run loop that reads
//! input lines, dispatches them, and shuts down cleanly at EOF.

use crate::context::{Core, Ctx, Request, panic_text};
use crate::{Error, ErrorCode, HandlerResult, Message, output};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, BufReader};
use tokio::sync::mpsc;

/// A handler for one message type, as a trait (the closure form is [`Node::on`]).
///
/// `Body` is what the request body deserialises into; a body that does not fit is answered with
/// error 12 (malformed-request) and serde's message.
///
/// ```
/// use maelnode::{Handler, HandlerResult, Node, Request};
/// #[derive(serde::Deserialize)]
/// struct Add { delta: i64 }
/// struct AddHandler;
/// impl Handler<std::sync::atomic::AtomicI64> for AddHandler {
///     type Body = Add;
///     async fn call(&self, req: Request<std::sync::atomic::AtomicI64>, body: Add) -> HandlerResult {
///         req.state().fetch_add(body.delta, std::sync::atomic::Ordering::Relaxed);
///         req.reply_ok()
///     }
/// }
/// let node = Node::builder(std::sync::atomic::AtomicI64::new(0)).handler("add", AddHandler);
/// # drop(node);
/// ```
pub trait Handler<S>: Send + Sync + 'static {
    /// The request body's type.
    ///
    /// ```
    /// struct Read;
    /// impl maelnode::Handler<()> for Read {
    ///     type Body = serde_json::Map<String, serde_json::Value>; // any DeserializeOwned
    ///     async fn call(&self, req: maelnode::Request<()>, _: Self::Body) -> maelnode::HandlerResult { req.reply_ok() }
    /// }
    /// ```
    type Body: DeserializeOwned + Send;
    /// Handles one request; the library replies with an error if it returns `Err` or panics.
    ///
    /// ```
    /// struct Fails;
    /// impl maelnode::Handler<()> for Fails {
    ///     type Body = serde::de::IgnoredAny;
    ///     async fn call(&self, _: maelnode::Request<()>, _: Self::Body) -> maelnode::HandlerResult {
    ///         Err(maelnode::Error::new(maelnode::ErrorCode::Abort, "not today").into())
    ///     }
    /// }
    /// ```
    fn call(&self, req: Request<S>, body: Self::Body)
    -> impl Future<Output = HandlerResult> + Send;
}

/// The type-erased form the dispatcher stores.
trait Dispatch<S>: Send + Sync {
    fn dispatch(&self, req: Request<S>) -> BoxFuture<'static, HandlerResult>;
}

struct Erased<H> {
    handler: Arc<H>,
    /// For the catch-all handler: a body naming an unknown enum variant means "unsupported type".
    unknown_variant_is_unsupported: bool,
}

impl<S: Send + Sync + 'static, H: Handler<S>> Dispatch<S> for Erased<H> {
    fn dispatch(&self, req: Request<S>) -> BoxFuture<'static, HandlerResult> {
        let handler = Arc::clone(&self.handler);
        let unsupported = self.unknown_variant_is_unsupported;
        Box::pin(async move {
            let body = match req.message().body_as::<H::Body>() {
                Ok(b) => b,
                // Only the message's own type naming no variant means "unsupported"; an unknown
                // variant deeper in the body is a malformed request.
                Err(e)
                    if unsupported
                        && e.text().is_some_and(|t| {
                            t.contains(&format!("unknown variant `{}`", req.msg_type()))
                        }) =>
                {
                    return Err(Error::new(
                        ErrorCode::NotSupported,
                        format!(
                            "message type {:?} is not supported by this node",
                            req.msg_type()
                        ),
                    )
                    .into());
                }
                Err(e) => return Err(e.into()),
            };
            handler.call(req, body).await
        })
    }
}

/// Adapts a closure to [`Handler`].
struct FnHandler<F, B> {
    f: F,
    _body: PhantomData<fn() -> B>,
}

impl<S, F, Fut, B> Handler<S> for FnHandler<F, B>
where
    S: Send + Sync + 'static,
    F: Fn(Request<S>, B) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = HandlerResult> + Send + 'static,
    B: DeserializeOwned + Send + 'static,
{
    type Body = B;
    fn call(&self, req: Request<S>, body: B) -> impl Future<Output = HandlerResult> + Send {
        (self.f)(req, body)
    }
}

type InitHook<S> = Box<dyn FnOnce(Ctx<S>) -> BoxFuture<'static, HandlerResult> + Send>;
type TimerStart<S> = Box<dyn FnOnce(&Ctx<S>) + Send>;

/// A Maelstrom node under construction: register handlers, then [`run_stdio`](Node::run_stdio).
///
/// `init` is handled by the library (an optional [`on_init`](Node::on_init) hook runs before
/// `init_ok`); requests before `init` get error 11, a second `init` error 12, a type with no
/// handler error 10, and a failing or panicking handler an error reply; the node keeps running.
///
/// ```no_run
/// use maelnode::{Node, Request};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Deserialize)]
/// struct Echo { echo: serde_json::Value }
/// #[derive(Serialize)]
/// struct EchoOk { echo: serde_json::Value }
///
/// #[tokio::main(flavor = "current_thread")]
/// async fn main() -> std::io::Result<()> {
///     Node::builder(())
///         .on("echo", |req: Request<()>, body: Echo| async move { req.reply(EchoOk { echo: body.echo }) })
///         .run_stdio()
///         .await
/// }
/// ```
pub struct Node<S> {
    state: S,
    handlers: HashMap<String, Arc<dyn Dispatch<S>>>,
    fallback: Option<Arc<dyn Dispatch<S>>>,
    init_hook: Option<InitHook<S>>,
    timers: Vec<TimerStart<S>>,
    config_errors: Vec<String>,
    rpc_timeout: Duration,
    shutdown_grace: Duration,
    stdout_guard: bool,
    seed: Option<u64>,
}

impl<S: Send + Sync + 'static> Node<S> {
    /// Starts building a node around the user state `state`, shared by every handler.
    ///
    /// ```
    /// let node = maelnode::Node::builder(std::sync::Mutex::new(Vec::<u64>::new()));
    /// # drop(node);
    /// ```
    pub fn builder(state: S) -> Node<S> {
        Node {
            state,
            handlers: HashMap::new(),
            fallback: None,
            init_hook: None,
            timers: Vec::new(),
            config_errors: Vec::new(),
            rpc_timeout: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(2),
            stdout_guard: true,
            seed: None,
        }
    }

    /// The default timeout of [`Ctx::rpc`] and of KV calls (default 1 s).
    ///
    /// ```
    /// let node = maelnode::Node::builder(()).rpc_timeout(std::time::Duration::from_millis(500));
    /// # drop(node);
    /// ```
    pub fn rpc_timeout(mut self, timeout: Duration) -> Self {
        self.rpc_timeout = timeout;
        self
    }

    /// How long shutdown waits for in-flight handlers and tracked tasks after input EOF
    /// before cancelling them (default 2 s).
    ///
    /// ```
    /// let node = maelnode::Node::builder(()).shutdown_grace(std::time::Duration::from_millis(100));
    /// # drop(node);
    /// ```
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// Whether [`run_stdio`](Node::run_stdio) moves protocol output to a private copy of
    /// descriptor 1 and points descriptor 1 at stderr (default on, Unix only), so that a stray
    /// `println!` lands in the log instead of corrupting the protocol.
    ///
    /// ```
    /// let node = maelnode::Node::builder(()).stdout_guard(false);
    /// # drop(node);
    /// ```
    pub fn stdout_guard(mut self, on: bool) -> Self {
        self.stdout_guard = on;
        self
    }

    /// Fixes the seed of [`Ctx::rng`] (default: OS entropy). The simulator sets it per node.
    ///
    /// ```
    /// let node = maelnode::Node::builder(()).seed(42);
    /// # drop(node);
    /// ```
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// An async hook that runs after `init` is received (the identity is known) and before
    /// `init_ok` is sent. If it fails, the node answers `init` with the error at once.
    ///
    /// ```
    /// use maelnode::{Ctx, Node};
    /// let node = Node::builder(()).on_init(|ctx: Ctx<()>| async move {
    ///     tracing::info!(node = ctx.node_id(), peers = ctx.peers().count(), "initialised");
    ///     Ok(())
    /// });
    /// # drop(node);
    /// ```
    pub fn on_init<F, Fut>(mut self, hook: F) -> Self
    where
        F: FnOnce(Ctx<S>) -> Fut + Send + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        self.init_hook = Some(Box::new(move |ctx| Box::pin(hook(ctx))));
        self
    }

    /// Registers a closure for `msg_type`, with the body deserialised into `B` (any
    /// `DeserializeOwned`, including a `#[serde(tag = "type")]` enum).
    ///
    /// ```
    /// use maelnode::{Node, Request};
    /// #[derive(serde::Deserialize)]
    /// struct Broadcast { message: u64 }
    /// let node = Node::builder(std::sync::Mutex::new(Vec::new()))
    ///     .on("broadcast", |req: Request<std::sync::Mutex<Vec<u64>>>, b: Broadcast| async move {
    ///         req.state().lock().unwrap().push(b.message);
    ///         req.reply_ok()
    ///     });
    /// # drop(node);
    /// ```
    pub fn on<B, F, Fut>(self, msg_type: &str, f: F) -> Self
    where
        B: DeserializeOwned + Send + 'static,
        F: Fn(Request<S>, B) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        self.handler(
            msg_type,
            FnHandler {
                f,
                _body: PhantomData,
            },
        )
    }

    /// Registers a closure for `msg_type` that takes the body as a JSON map.
    ///
    /// ```
    /// let node = maelnode::Node::builder(()).on_json("read", |req, body| async move {
    ///     let key = body.get("key").cloned();
    ///     req.reply(serde_json::json!({"value": key}))
    /// });
    /// # drop(node);
    /// ```
    pub fn on_json<F, Fut>(self, msg_type: &str, f: F) -> Self
    where
        F: Fn(Request<S>, Map<String, Value>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        self.on(msg_type, f)
    }

    /// Registers a [`Handler`] implementation for `msg_type`. Registering a type twice, or
    /// registering `init` (which the library owns), makes `run` fail at start-up.
    ///
    /// ```
    /// use maelnode::{Handler, HandlerResult, Node, Request};
    /// struct Ping;
    /// impl Handler<()> for Ping {
    ///     type Body = serde::de::IgnoredAny;
    ///     async fn call(&self, req: Request<()>, _: Self::Body) -> HandlerResult { req.reply_ok() }
    /// }
    /// let node = Node::builder(()).handler("ping", Ping);
    /// # drop(node);
    /// ```
    pub fn handler<H: Handler<S>>(mut self, msg_type: &str, handler: H) -> Self {
        if msg_type == "init" {
            self.config_errors.push(
                "a handler for \"init\" was registered; the library answers init itself, use on_init for a hook".into(),
            );
        } else if self.handlers.contains_key(msg_type) {
            self.config_errors.push(format!(
                "a handler for message type {msg_type:?} was registered twice"
            ));
        } else {
            let erased = Erased {
                handler: Arc::new(handler),
                unknown_variant_is_unsupported: false,
            };
            self.handlers.insert(msg_type.to_string(), Arc::new(erased));
        }
        self
    }

    /// A catch-all for types without their own handler, replacing the automatic error 10. With
    /// a `#[serde(tag = "type")]` enum as `B`, a whole node fits in one `match`; a type that is
    /// not one of the enum's variants is still answered with error 10.
    ///
    /// ```
    /// use maelnode::{Node, Request};
    /// #[derive(serde::Deserialize)]
    /// #[serde(tag = "type", rename_all = "snake_case")]
    /// enum Msg { Echo { echo: serde_json::Value }, Generate }
    /// let node = Node::builder(()).fallback(|req: Request<()>, msg: Msg| async move {
    ///     match msg {
    ///         Msg::Echo { echo } => req.reply(serde_json::json!({"echo": echo})),
    ///         Msg::Generate => req.reply(serde_json::json!({"id": 1})),
    ///     }
    /// });
    /// # drop(node);
    /// ```
    pub fn fallback<B, F, Fut>(mut self, f: F) -> Self
    where
        B: DeserializeOwned + Send + 'static,
        F: Fn(Request<S>, B) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        let handler = FnHandler {
            f,
            _body: PhantomData,
        };
        self.fallback = Some(Arc::new(Erased {
            handler: Arc::new(handler),
            unknown_variant_is_unsupported: true,
        }));
        self
    }

    /// Runs `f` every `period` once `init` has completed, for the node's whole life.
    /// (To cancel a timer, start it from a context with [`Ctx::every`], which returns a handle.)
    ///
    /// ```
    /// use maelnode::{Ctx, Node};
    /// let node = Node::builder(()).every(std::time::Duration::from_millis(200), |ctx: Ctx<()>| async move {
    ///     for peer in ctx.peers() { ctx.send(peer, serde_json::json!({"type": "gossip"})).ok(); }
    /// });
    /// # drop(node);
    /// ```
    pub fn every<F, Fut>(mut self, period: Duration, f: F) -> Self
    where
        F: Fn(Ctx<S>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.timers.push(Box::new(move |ctx| {
            ctx.every(period, f);
        }));
        self
    }

    /// Runs `f` once, `delay` after `init` has completed.
    ///
    /// ```
    /// use maelnode::{Ctx, Node};
    /// let node = Node::builder(()).after(std::time::Duration::from_secs(1), |ctx: Ctx<()>| async move {
    ///     tracing::info!(node = ctx.node_id(), "warmed up");
    /// });
    /// # drop(node);
    /// ```
    pub fn after<F, Fut>(mut self, delay: Duration, f: F) -> Self
    where
        F: FnOnce(Ctx<S>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.timers.push(Box::new(move |ctx| {
            ctx.after(delay, f);
        }));
        self
    }

    /// Runs the node on the process's stdin and stdout until stdin ends, then shuts down (see
    /// the crate docs) and returns `Ok(())`. `Err` means an I/O or configuration error.
    /// Installs a stderr `tracing` subscriber filtered by `RUST_LOG` (default `info`) unless
    /// the application installed its own.
    ///
    /// ```no_run
    /// # async fn f() -> std::io::Result<()> {
    /// maelnode::Node::builder(()).run_stdio().await
    /// # }
    /// ```
    pub async fn run_stdio(self) -> io::Result<()> {
        output::install_default_logging();
        let (reader, writer) = output::stdio(self.stdout_guard)?;
        self.run_with(reader, writer).await
    }

    /// Runs the node on any reader and writer, e.g. the halves of `tokio::io::duplex` in tests.
    /// Returns once the reader reaches EOF and shutdown is complete.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
    /// use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    /// let (node_in, mut to_node) = tokio::io::duplex(4096);
    /// let (from_node, node_out) = tokio::io::duplex(4096);
    /// let node = maelnode::Node::builder(()).on_json("echo", |req, body| async move { req.reply(body) });
    /// let running = tokio::spawn(node.run_with(node_in, node_out));
    /// to_node.write_all(br#"{"id":0,"src":"c0","dest":"n1","body":{"type":"init","msg_id":1,"node_id":"n1","node_ids":["n1"]}}
    /// "#).await?;
    /// let mut lines = BufReader::new(from_node).lines();
    /// let init_ok = lines.next_line().await?.unwrap();
    /// assert_eq!(init_ok, r#"{"src":"n1","dest":"c0","body":{"type":"init_ok","msg_id":1,"in_reply_to":1}}"#);
    /// drop(to_node); // EOF: the node shuts down
    /// running.await.unwrap()
    /// # }
    /// ```
    pub async fn run_with<R, W>(self, reader: R, writer: W) -> io::Result<()>
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        self.launch(reader, writer)?.1.await
    }

    /// Checks the configuration and starts the writer; returns the node's core (for the
    /// simulator's statistics) and the future that runs the node to completion.
    pub(crate) fn launch<R, W>(
        self,
        reader: R,
        writer: W,
    ) -> io::Result<(Arc<Core>, impl Future<Output = io::Result<()>> + Send)>
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        if let Some(first) = self.config_errors.first() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, first.clone()));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let core = Arc::new(Core::new(tx, self.rpc_timeout, self.seed));
        let grace = self.shutdown_grace;
        let dispatcher = Arc::new(Dispatcher {
            ctx: Ctx {
                core: Arc::clone(&core),
                state: Arc::new(self.state),
            },
            handlers: self.handlers,
            fallback: self.fallback,
            init_hook: Mutex::new(self.init_hook),
            timers: Mutex::new(self.timers),
            phase: AtomicU8::new(UNINITIALISED),
            early: Mutex::new(Vec::new()),
        });
        let writer_task = tokio::spawn(output::write_lines(rx, writer));
        let run = async move {
            let read_result = dispatcher.read_all(reader).await;
            dispatcher.shut_down(grace).await;
            let write_result = writer_task
                .await
                .unwrap_or_else(|e| Err(io::Error::other(e)));
            read_result.and(write_result)
        };
        Ok((core, run))
    }
}

/// How many input lines the reader dispatches before letting other tasks run.
const LINES_PER_YIELD: u32 = 64;

const UNINITIALISED: u8 = 0;
const INITIALISING: u8 = 1;
const READY: u8 = 2;
/// The init hook failed. Final: the hook has been consumed and the identity is fixed, so a
/// later `init` could only pretend to succeed (the runner aborts the test anyway).
const INIT_FAILED: u8 = 3;

/// The running node's input side: routes each line to the init logic, a pending RPC or a
/// handler task.
struct Dispatcher<S> {
    ctx: Ctx<S>,
    handlers: HashMap<String, Arc<dyn Dispatch<S>>>,
    fallback: Option<Arc<dyn Dispatch<S>>>,
    init_hook: Mutex<Option<InitHook<S>>>,
    timers: Mutex<Vec<TimerStart<S>>>,
    phase: AtomicU8,
    /// Requests that arrived while `init` was in progress; handled once it completes. The
    /// lock also makes "check the phase, then queue" atomic against the switch to READY.
    early: Mutex<Vec<Message>>,
}

#[derive(Deserialize)]
struct InitBody {
    node_id: String,
    node_ids: Vec<String>,
}

fn not_initialised() -> Error {
    Error::new(
        ErrorCode::TemporarilyUnavailable,
        "the node has not been initialised yet",
    )
}

impl<S: Send + Sync + 'static> Dispatcher<S> {
    async fn read_all<R: AsyncRead + Unpin>(self: &Arc<Self>, reader: R) -> io::Result<()> {
        let mut reader = BufReader::with_capacity(1 << 16, reader);
        let mut line = Vec::with_capacity(1024);
        let mut since_yield = 0u32;
        loop {
            // Lines already buffered are read without touching tokio's cooperative budget, so
            // without this the reader would race ahead of the handlers it spawns, piling up
            // tasks and output. Yielding regularly lets them run: backpressure for free.
            since_yield += 1;
            if since_yield == LINES_PER_YIELD {
                since_yield = 0;
                tokio::task::yield_now().await;
            }
            line.clear();
            if reader.read_until(b'\n', &mut line).await? == 0 {
                return Ok(());
            }
            while matches!(line.last(), Some(b'\n' | b'\r')) {
                line.pop();
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match Message::parse(&line) {
                Ok(msg) => self.route(msg),
                Err(why) => {
                    let shown: String = String::from_utf8_lossy(&line).chars().take(200).collect();
                    tracing::warn!(node = self.ctx.node_id(), %why, line = %shown, "skipping a malformed input line");
                }
            }
        }
    }

    fn route(self: &Arc<Self>, msg: Message) {
        tracing::debug!(
            node = self.ctx.node_id(),
            src = msg.src(),
            msg_type = msg.msg_type(),
            "received"
        );
        if msg.in_reply_to().is_some() {
            self.ctx.core.complete(msg);
        } else if msg.msg_type() == "init" {
            self.init(msg);
        } else if self.phase.load(Ordering::Acquire) == READY {
            self.handle(msg);
        } else {
            let mut early = self.early.lock().expect("early lock");
            match self.phase.load(Ordering::Acquire) {
                INITIALISING => early.push(msg),
                READY => {
                    drop(early);
                    self.handle(msg);
                }
                _ => self.answer(&msg, not_initialised().to_body()),
            }
        }
    }

    /// Sends `body` as the reply to `msg`, if it has a `msg_id`.
    fn answer(&self, msg: &Message, body: Map<String, Value>) {
        if let Some(id) = msg.msg_id() {
            self.ctx.core.emit_map(msg.src(), &body, Some(id));
        }
    }

    fn init(self: &Arc<Self>, msg: Message) {
        if self
            .phase
            .compare_exchange(
                UNINITIALISED,
                INITIALISING,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_err()
        {
            let text = if self.phase.load(Ordering::Acquire) == INIT_FAILED {
                format!(
                    "the node's init hook failed as {:?}; start the node again",
                    self.ctx.node_id()
                )
            } else {
                format!(
                    "the node is already initialised as {:?}",
                    self.ctx.node_id()
                )
            };
            self.answer(&msg, Error::malformed(text).to_body());
            return;
        }
        let body: InitBody = match msg.body_as() {
            Ok(b) => b,
            Err(e) => {
                self.phase.store(UNINITIALISED, Ordering::Release);
                self.answer(&msg, e.to_body());
                return;
            }
        };
        let _ = self.ctx.core.ident.set(crate::context::Identity {
            node_id: body.node_id,
            node_ids: body.node_ids,
        });
        let this = Arc::clone(self);
        self.ctx.core.spawn_tracked(async move {
            let hook = this.init_hook.lock().expect("init hook lock").take();
            let result = match hook {
                None => Ok(()),
                Some(hook) => match AssertUnwindSafe(hook(this.ctx.clone()))
                    .catch_unwind()
                    .await
                {
                    Ok(r) => r.map_err(|e| e.to_error()),
                    Err(p) => Err(Error::crash(format!(
                        "init hook panicked: {}",
                        panic_text(&*p)
                    ))),
                },
            };
            match result {
                Ok(()) => {
                    for start in this.timers.lock().expect("timers lock").drain(..) {
                        start(&this.ctx);
                    }
                    if let Some(id) = msg.msg_id() {
                        this.ctx
                            .core
                            .emit(msg.src(), "{}", Some(id), Some("init_ok"));
                    }
                    tracing::debug!(node = this.ctx.node_id(), "initialised");
                    let early = {
                        let mut early = this.early.lock().expect("early lock");
                        this.phase.store(READY, Ordering::Release);
                        std::mem::take(&mut *early)
                    };
                    early.into_iter().for_each(|m| this.handle(m));
                }
                Err(e) => {
                    tracing::error!(node = this.ctx.node_id(), error = %e, "init hook failed");
                    this.answer(&msg, e.to_body());
                    let early = {
                        let mut early = this.early.lock().expect("early lock");
                        this.phase.store(INIT_FAILED, Ordering::Release);
                        std::mem::take(&mut *early)
                    };
                    early
                        .iter()
                        .for_each(|m| this.answer(m, not_initialised().to_body()));
                }
            }
        });
    }

    fn handle(self: &Arc<Self>, msg: Message) {
        let Some(handler) = self
            .handlers
            .get(msg.msg_type())
            .or(self.fallback.as_ref())
            .cloned()
        else {
            tracing::warn!(
                node = self.ctx.node_id(),
                msg_type = msg.msg_type(),
                src = msg.src(),
                "no handler for this message type"
            );
            let text = format!(
                "message type {:?} is not supported by this node",
                msg.msg_type()
            );
            self.answer(&msg, Error::new(ErrorCode::NotSupported, text).to_body());
            return;
        };
        let (src, msg_id, msg_type) = (
            msg.src().to_string(),
            msg.msg_id(),
            msg.msg_type().to_string(),
        );
        let replied = Arc::new(AtomicBool::new(false));
        let fut = handler.dispatch(Request::new(self.ctx.clone(), msg, Arc::clone(&replied)));
        let core = Arc::clone(&self.ctx.core);
        self.ctx.core.spawn_tracked(async move {
            let failure = match AssertUnwindSafe(fut).catch_unwind().await {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_error()),
                Err(p) => Some(Error::crash(format!("handler panicked: {}", panic_text(&*p)))),
            };
            let answered = replied.load(Ordering::Acquire);
            match failure {
                Some(err) => {
                    if err.code() == ErrorCode::NotSupported {
                        tracing::warn!(node = core.node_id(), %msg_type, %src, "no handler for this message type");
                    } else {
                        tracing::error!(node = core.node_id(), %msg_type, %src, error = %err, "handler failed");
                    }
                    if let (false, Some(id)) = (answered, msg_id) {
                        core.emit_map(&src, &err.to_body(), Some(id));
                    }
                }
                None if !answered && src.starts_with('c') => {
                    tracing::warn!(node = core.node_id(), %msg_type, %src, "handler finished without replying to a client request");
                }
                None => {}
            }
        });
    }

    /// Input has ended: fail pending RPCs, stop timers, give in-flight work `grace` to finish,
    /// cancel the rest, and let the writer flush.
    async fn shut_down(&self, grace: Duration) {
        let core = &self.ctx.core;
        core.close_rpcs();
        core.timers.cancel();
        core.tracker.close();
        if tokio::time::timeout(grace, core.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                node = core.node_id(),
                ?grace,
                "cancelling tasks still running after the shutdown grace"
            );
            core.cancel.cancel();
            core.tracker.wait().await;
        }
        let _ = core.shutdown_writer().await;
    }
}
