//! `maelstrom`: a JVM-free Maelstrom. Runs a node program (any language, unmodified) as
//! several processes over a simulated network, drives them with a workload, and checks the
//! history. The binary (`src/main.rs`) is a thin shell over this library.
//!
//! Data flows one way: [`cli`] resolves options → [`runner`] starts the [`net`], the
//! [`cluster`] of node processes and [`client`]s, drives a [`workload`] under the [`nemesis`],
//! records the [`history`] → [`analysis`] runs the workload's checker and the shared
//! [`checker`]s → results, [`plots`] and the [`store`]. [`commands`] offers the checkers
//! without a run (`check`, `analyze`) and [`doc`] writes the protocol and workload docs from
//! the same registries; [`synth`] makes histories with known answers for tests and benchmarks.

pub mod analysis;
pub mod checker;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod commands;
pub mod console;
pub mod demo;
pub mod doc;
pub mod edn;
pub mod history;
pub mod messages;
pub mod nemesis;
pub mod net;
pub mod plots;
pub mod preflight;
pub mod runner;
pub mod serve;
pub mod store;
pub mod synth;
pub mod workload;

/// The final console line for a validity, and the exit code (spec §7.5).
pub fn banner(valid: &edn::Edn) -> (&'static str, i32) {
    match valid {
        edn::Edn::Bool(true) => ("Everything looks good! ヽ(‘ー`)ノ", 0),
        edn::Edn::Bool(false) => ("Analysis invalid! (ﾉಥ益ಥ）ﾉ ┻━┻", 1),
        _ => (
            "Errors occurred during analysis, but no anomalies found. ಠ~ಠ",
            2,
        ),
    }
}
