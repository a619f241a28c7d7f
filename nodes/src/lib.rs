//! Example Maelstrom nodes built with [`maelnode`], one module per workload. Each module's
//! `node()` builds the node; the binaries in `src/bin/` just run it on stdin/stdout, and the
//! tests run the very same function in maelnode's simulator.
//!
//! | Binary | Workload | How |
//! |---|---|---|
//! | `maelstrom-echo` | echo | replies with the request's `echo` |
//! | `maelstrom-unique-ids` | unique-ids | node id + local counter, no coordination |
//! | `maelstrom-broadcast` | broadcast | batched gossip over a star, acknowledged and retried |
//! | `maelstrom-g-set` | g-set | the same gossip |
//! | `maelstrom-counter` | g-counter | per-node totals in `seq-kv`, reads made current by a write |
//! | `maelstrom-pn-counter` | pn-counter | a state-based CRDT (two G-counters) gossiped to all peers |

pub mod broadcast;
pub mod counter;
pub mod echo;
pub mod g_set;
mod gossip;
pub mod pn_counter;
pub mod unique_ids;

/// Runs a node on stdin/stdout on a current-thread runtime; the binaries' whole `main`.
pub fn run_stdio<S: Send + Sync + 'static>(node: maelnode::Node<S>) -> std::io::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(node.run_stdio())
}
