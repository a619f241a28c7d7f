//! Analysis of a recorded history, shared by `maelstrom test` (right after the run) and
//! `maelstrom analyze` (later, from the store): the workload checker, the shared checkers,
//! the pictures, the results map and its files.

use crate::checker::{self, Availability, merge_valid};
use crate::console::Console;
use crate::edn::{Edn, map};
use crate::history::Op;
use crate::plots;
use crate::runner::{Fatal, write_file};
use crate::workload::{CheckContext, Workload};
use std::path::Path;
use std::time::Duration;

/// What an analysis needs.
pub struct Inputs<'a> {
    /// The test's store directory.
    pub dir: &'a Path,
    /// The history.
    pub ops: &'a [Op],
    /// The workload.
    pub workload: &'a dyn Workload,
    /// `--availability`.
    pub availability: Option<Availability>,
    /// `--checker-timeout`, seconds.
    pub checker_timeout: f64,
    /// `--consistency-models`.
    pub consistency_models: &'a [String],
    /// `--time-limit`, seconds (for plot axes when the history is empty).
    pub time_limit: f64,
    /// The `:net` result (computed from the network during a run, reused by `analyze`).
    pub net: Edn,
    /// The `:crashed` result, when nodes crashed.
    pub crashed: Option<Edn>,
    /// The run's seed.
    pub seed: u64,
}

/// Runs every checker, writes `results.edn`, `results.json` and the pictures, prints the
/// results, and returns `:valid?`.
pub fn analyze(console: &Console, inp: Inputs<'_>) -> Result<Edn, Fatal> {
    console.info("Analyzing...");
    let started = std::time::Instant::now();
    let ctx = CheckContext {
        dir: Some(inp.dir.to_path_buf()),
        timeout: Duration::from_secs_f64(inp.checker_timeout),
        memory: checker::memory_budget(),
        consistency_models: inp.consistency_models.to_vec(),
    };
    let workload_result = run_checker(inp.workload, inp.ops, &ctx);
    if started.elapsed() > Duration::from_secs(1) {
        console.info(format!(
            "The {} checker took {:.1} s",
            inp.workload.name(),
            started.elapsed().as_secs_f64()
        ));
    }
    let perf = plots::write_all(inp.dir, inp.ops, inp.time_limit)
        .map_err(|e| Fatal(format!("cannot write plots: {e}")))?;
    let mut results = Edn::Map(vec![]);
    results.push("perf", perf);
    results.push("timeline", map([("valid?", Edn::Bool(true))]));
    results.push("exceptions", map([("valid?", Edn::Bool(true))]));
    results.push("stats", checker::stats(inp.ops));
    results.push(
        "availability",
        checker::availability(inp.ops, inp.availability),
    );
    results.push("net", inp.net);
    results.push("workload", workload_result);
    let crashed = inp.crashed.is_some();
    if let Some(c) = inp.crashed {
        results.push("crashed", c);
    }
    results.push("seed", Edn::UInt(inp.seed));
    let valid = if crashed {
        Edn::Bool(false)
    } else {
        merge_valid(&validities(&results))
    };
    results.push("valid?", valid.clone());
    let text = results.pretty();
    write_file(&inp.dir.join("results.edn"), &format!("{text}\n"))?;
    let json = serde_json::to_string_pretty(&results.to_json()).expect("json");
    write_file(&inp.dir.join("results.json"), &format!("{json}\n"))?;
    console.print(&text);
    Ok(valid)
}

/// Each checker's `:valid?` in a results map.
pub fn validities(results: &Edn) -> Vec<Edn> {
    match results {
        Edn::Map(entries) => entries
            .iter()
            .filter_map(|(_, v)| v.get("valid?").cloned())
            .collect(),
        _ => vec![],
    }
}

/// Runs a workload checker; a panic becomes `{:valid? :unknown :error …}` (spec §10.7).
pub fn run_checker(workload: &dyn Workload, ops: &[Op], ctx: &CheckContext) -> Edn {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| workload.check(ops, ctx))) {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            map([("valid?", checker::unknown()), ("error", Edn::Str(msg))])
        }
    }
}
