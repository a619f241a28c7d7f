//! # maelnode: write Maelstrom nodes in Rust
//!
//! A [Maelstrom](https://github.com/jepsen-io/maelstrom) node is a program that reads JSON
//! messages from stdin, one per line, writes messages to stdout, and logs to stderr. This crate
//! owns that protocol — framing, `init`, message ids, reply matching, error replies, service
//! clients, timers and shutdown — so a node is just its handlers:
//!
//! ```no_run
//! use maelnode::{Node, Request};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Deserialize)]
//! struct Echo { echo: serde_json::Value }
//! #[derive(Serialize)]
//! struct EchoOk { echo: serde_json::Value }
//!
//! #[tokio::main(flavor = "current_thread")]
//! async fn main() -> std::io::Result<()> {
//!     Node::builder(())
//!         .on("echo", |req: Request<()>, body: Echo| async move { req.reply(EchoOk { echo: body.echo }) })
//!         .run_stdio()
//!         .await
//! }
//! ```
//!
//! ## The wire protocol
//!
//! Each input line is `{"src": "c1", "dest": "n1", "body": {…}}`; the runner also adds a
//! top-level `id`, which is ignored like any other extra key. Each output line is compact JSON
//! with exactly `src`, `dest` and `body`. Body fields the library manages:
//!
//! - `type`: picks the handler. A reply's type defaults to the request's plus `_ok`.
//! - `msg_id`: set on **every** outgoing message from a per-node counter starting at 1
//!   (any `msg_id` in your body is overwritten).
//! - `in_reply_to`: a message that carries one (even `0`) is a reply and completes the RPC that
//!   is waiting for it; a late reply is dropped.
//!
//! Absent optional fields are omitted, never `null`, and `1` and `1.0` stay distinct. Only
//! protocol lines reach stdout: by default [`Node::run_stdio`] moves protocol output to a
//! private copy of descriptor 1 and points descriptor 1 at stderr, so a stray `println!`
//! lands in the log.
//!
//! ## Life of a node
//!
//! - `init` is answered by the library after the optional [`Node::on_init`] hook; requests
//!   before it get error 11, a second `init` gets error 12.
//! - Each request runs in its own tokio task, so a handler awaiting an RPC never blocks others.
//! - A handler's `Err(maelnode::Error)` becomes an error reply with that code; any other error
//!   becomes code 13 (crash) with its text; a **panic** is caught and answered with code 13.
//!   This needs `panic = "unwind"` (the default): do not set `panic = "abort"` in your profile.
//! - A type with no handler gets error 10; a malformed input line is logged and skipped.
//! - **Shutdown at stdin EOF:** the node stops dispatching, fails every pending RPC with a
//!   timeout at once, stops timers, waits up to the grace period (default 2 s,
//!   [`Node::shutdown_grace`]) for in-flight handlers and [`Ctx::spawn`]ed tasks, cancels the
//!   rest, flushes stdout and returns `Ok(())`. (Maelstrom itself kills nodes instead; EOF
//!   matters for tests.)
//!
//! ## Errors
//!
//! | Code | Name | Definite | Code | Name | Definite |
//! |---:|---|:-:|---:|---|:-:|
//! | 0 | timeout | no | 14 | abort | yes |
//! | 1 | node-not-found | yes | 20 | key-does-not-exist | yes |
//! | 10 | not-supported | yes | 21 | key-already-exists | yes |
//! | 11 | temporarily-unavailable | yes | 22 | precondition-failed | yes |
//! | 12 | malformed-request | yes | 30 | txn-conflict | yes |
//! | 13 | crash | no | ≥ 1000 | custom | no |
//!
//! *Definite* means the operation did not and will not happen. See [`Error`] and [`ErrorCode`].
//!
//! ## Services
//!
//! [`Ctx::lin_kv`], [`Ctx::seq_kv`] and [`Ctx::lww_kv`] return [`Kv`] clients, [`Ctx::tso`] a
//! [`Tso`] client. Keys and values are any serialisable value (`1` is not `"1"`). Every call
//! times out, because services never answer a request type they do not know.
//!
//! - `lin-kv` is linearizable.
//! - `seq-kv` is sequentially consistent: reads may be **stale** until the node itself changes
//!   the store. The remedy: write a value unique to this read (e.g. a per-node counter key)
//!   before reading.
//! - `lww-kv` keeps last-write-wins replicas: reads may be stale and go backwards. Upstream
//!   Maelstrom's `lww-kv` ignores `create_if_not_exists`; this project's runner honours it.
//! - `lin-tso` hands out timestamps 0, 1, 2, … in a linearizable order.
//!
//! ## Testing
//!
//! [`Node::run_with`] runs a node over any reader and writer (e.g. `tokio::io::duplex`). With
//! the `sim` feature, [`sim::Sim`] runs a whole cluster in-process on virtual time: seeded
//! latency, partitions, controllable delivery, the four services with the runner's semantics,
//! and clients — deterministic for a seed, so a failing test replays.
#![deny(missing_docs)]

mod context;
mod error;
mod kv;
mod message;
mod node;
mod output;
#[cfg(feature = "sim")]
pub mod sim;

pub use context::{Ctx, Request, Rpc, TimerHandle};
pub use error::{Error, ErrorCode, HandlerError, HandlerResult};
pub use kv::{CreateIfMissing, Kv, Tso};
pub use message::Message;
pub use node::{Handler, Node};

/// The `rand` crate, for [`Ctx::rng`]'s generator.
pub use rand;

/// The README's examples, compiled as doctests so the README cannot drift from the code.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
