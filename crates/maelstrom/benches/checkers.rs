//! Checker speed on synthetic histories with a known answer (see `maelstrom::synth`), each
//! against an anchor measured in the same run.
//!
//! `cargo bench -p maelstrom --bench checkers`
//! - linearizability, 10 processes × 1,000 ops (target < 100 ms); anchor: the same number of
//!   ops run one at a time (no concurrency to search);
//! - linearizability, 50 processes with 30 % crashed (`:info`) ops, under a 10 s budget;
//! - transactions, 100,000-transaction list-append history (target ≥ 200,000 txn/s; Elle
//!   reports 100,000–160,000/s); anchor: reading the same history back from EDN text;
//! - kafka, a 1,000,000-operation history (target < 30 s, bounded memory): time, and how much
//!   memory the check adds to the history it reads;
//! - set-full (broadcast, g-set), 10,000 adds each followed by a read of the whole set (50 M
//!   element observations); anchor: visiting every observation once (summing the elements).

use maelstrom::checker::elle::{self, TxnKind};
use maelstrom::checker::linear::{self, Budget, Model, Outcome};
use maelstrom::edn;
use maelstrom::history;
use maelstrom::synth;
use maelstrom::workload::CheckContext;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::time::{Duration, Instant};

fn best_of<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best = (Duration::MAX, None);
    for _ in 0..runs {
        let t = Instant::now();
        let out = f();
        let d = t.elapsed();
        if d < best.0 {
            best = (d, Some(out));
        }
    }
    (best.0, best.1.expect("ran"))
}

fn outcome_name(o: &Outcome) -> &'static str {
    match o {
        Outcome::Linearizable => "linearizable",
        Outcome::NotLinearizable { .. } => "NOT linearizable",
        Outcome::Unknown(c) => c,
    }
}

fn main() {
    let budget = Budget {
        time: Duration::from_secs(10),
        memory: 4 << 30,
    };
    let mut rows = vec![];

    eprintln!("[1/5] kafka, 1,000,000 operations");
    let log = synth::kafka(&mut ChaCha8Rng::seed_from_u64(4), 1_000_000, 10, 8);
    let before = rss_mib("VmRSS:");
    // Reset the high-water mark, so the peak below is the check's own.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let (t, r) = best_of(1, || maelstrom::checker::kafka::check(&log));
    let peak = rss_mib("VmHWM:");
    rows.push(format!(
        "| kafka, 1,000,000 ops, 10 keys, 8 consumers | {:.2} s, valid? {}; the check adds {} MiB to the {} MiB history | target < 30 s, bounded memory |",
        t.as_secs_f64(),
        r.get("valid?").map(|v| v.to_string()).unwrap_or_default(),
        peak.saturating_sub(before),
        before
    ));
    drop(log);

    eprintln!("[2/5] linearizability, 10 processes, 1,000 ops");
    let concurrent = synth::cas_register(&mut ChaCha8Rng::seed_from_u64(1), 1_000, 10, 0.0, false);
    let sequential = synth::cas_register(&mut ChaCha8Rng::seed_from_u64(1), 1_000, 1, 0.0, true);
    let (t, o) = best_of(5, || {
        linear::check(
            &concurrent,
            Model::CasRegister,
            None,
            &linear::plain_op,
            budget,
        )
    });
    let (anchor, _) = best_of(5, || {
        linear::check(
            &sequential,
            Model::CasRegister,
            None,
            &linear::plain_op,
            budget,
        )
    });
    rows.push(format!(
        "| cas-register, 10 processes × 1,000 ops | {:.1} ms, {} | {:.1} ms sequential (×{:.1}) |",
        t.as_secs_f64() * 1e3,
        outcome_name(&o),
        anchor.as_secs_f64() * 1e3,
        t.as_secs_f64() / anchor.as_secs_f64()
    ));

    eprintln!("[3/5] linearizability, 50 processes, 30 % crashed ops");
    let crashed = synth::cas_register(&mut ChaCha8Rng::seed_from_u64(2), 1_000, 50, 0.3, false);
    let (t, o) = best_of(1, || {
        linear::check(
            &crashed,
            Model::CasRegister,
            None,
            &linear::plain_op,
            budget,
        )
    });
    rows.push(format!(
        "| cas-register, 50 processes, 30 % :info, 10 s budget | {:.1} ms, {} | — |",
        t.as_secs_f64() * 1e3,
        outcome_name(&o)
    ));

    eprintln!("[4/5] transactions, 100,000 list-append txns");
    let n = 100_000;
    let txns = synth::list_append(&mut ChaCha8Rng::seed_from_u64(3), n, 10, 10);
    let ctx = CheckContext {
        dir: None,
        timeout: Duration::from_secs(60),
        memory: 4 << 30,
        consistency_models: vec!["strict-serializable".into()],
    };
    let (t, r) = best_of(3, || elle::check(&txns, TxnKind::ListAppend, &ctx));
    let text = history::to_edn_text(&txns);
    let (anchor, _) = best_of(3, || {
        history::from_edn(edn::parse_all(&text).expect("edn"), None, None).expect("ops")
    });
    rows.push(format!(
        "| list-append, 100,000 txns, 10 processes | {:.0} txn/s ({:.2} s), valid? {} | reading it from EDN: {:.2} s; Elle: 100,000–160,000 txn/s |",
        n as f64 / t.as_secs_f64(),
        t.as_secs_f64(),
        r.get("valid?").map(|v| v.to_string()).unwrap_or_default(),
        anchor.as_secs_f64()
    ));

    eprintln!("[5/5] set-full, 10,000 adds and 10,000 whole-set reads");
    let set = synth::grow_only_set(10_000);
    let observations: usize = set
        .iter()
        .map(|o| match &o.value {
            edn::Edn::Vector(v) if o.f == "read" => v.len(),
            _ => 0,
        })
        .sum();
    let (t, r) = best_of(3, || maelstrom::checker::set_full::check(&set, "add"));
    let (anchor, _) = best_of(3, || {
        let mut sum = 0i64;
        for o in &set {
            if let edn::Edn::Vector(v) = &o.value {
                for e in v {
                    if let edn::Edn::Int(i) = e {
                        sum = sum.wrapping_add(*i);
                    }
                }
            }
        }
        std::hint::black_box(sum)
    });
    rows.push(format!(
        "| set-full, 10,000 adds + 10,000 whole-set reads ({:.0} M observations) | {:.2} s ({:.0} M observations/s), valid? {} | visiting each observation once: {:.3} s (×{:.0}) |",
        observations as f64 / 1e6,
        t.as_secs_f64(),
        observations as f64 / t.as_secs_f64() / 1e6,
        r.get("valid?").map(|v| v.to_string()).unwrap_or_default(),
        anchor.as_secs_f64(),
        t.as_secs_f64() / anchor.as_secs_f64()
    ));

    let table = format!(
        "| checker | result | anchor |\n|---|---|---|\n{}\n",
        rows.join("\n")
    );
    print!("{table}");
    let _ = std::fs::write(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-checkers.txt"),
        table,
    );
}

/// A memory figure of this process from /proc/self/status (Linux), in MiB.
fn rss_mib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib / 1024)
}
