//! `maelstromd`: an HTTP router that starts Docker containers on demand, proxies requests to
//! them and stops them when idle; nodes form a cluster over a shared SQL database. The binary
//! (`src/main.rs`) is a thin shell over this library.
//!
//! How a request flows: a [`gateway`] listener resolves it to a component → the component's
//! [`router`] admits it to a dispenser (a local container or a peer) or queues it and asks for
//! a cold start → [`placement`] picks a node, whose [`converger`] starts a container through
//! [`docker`] and registers it in [`containers`] → the gateway forwards and streams the answer.
//! Around that: [`cluster`] keeps the view of peers, [`autoscale`] and [`cron`] run on the
//! holders of their role locks, [`rpc`] and [`api`] serve `maelctl` and the peers, [`db`] is
//! the shared state, [`catalog`] its cached view, [`metrics`] and [`logs`] observe it all, and
//! [`node`] starts and stops the whole.

#![deny(missing_docs)]

pub mod api;
pub mod autoscale;
pub mod catalog;
pub mod cluster;
pub mod config;
pub mod containers;
pub mod converger;
pub mod cron;
pub mod db;
pub mod docker;
pub mod gateway;
pub mod logs;
pub mod metrics;
pub mod node;
pub mod placement;
pub mod router;
pub mod rpc;

/// Epoch milliseconds of a monotonic instant, without another clock read: the request path
/// has its `Instant` already, and a request's times need no better than millisecond truth.
pub fn epoch_ms_at(at: std::time::Instant) -> i64 {
    static BASE: std::sync::OnceLock<(std::time::Instant, i64)> = std::sync::OnceLock::new();
    let (base_instant, base_ms) =
        *BASE.get_or_init(|| (std::time::Instant::now(), maelstromd_api::now_ms()));
    match at.checked_duration_since(base_instant) {
        Some(d) => base_ms + d.as_millis() as i64,
        None => base_ms - base_instant.duration_since(at).as_millis() as i64,
    }
}

/// This build's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
