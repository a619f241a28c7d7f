//! The checkers every workload shares (spec §10.6–10.7): `:stats`, `:availability` and `:net`,
//! validity merging, and latency quantiles. set-full lives in its own file.

pub mod elle;
pub mod kafka;
pub mod linear;
pub mod set_full;

use crate::edn::{Edn, kw, map};
use crate::history::{Op, OpType};
use crate::net::NetStats;
use std::collections::BTreeMap;

/// Bytes the search caches may use: min(4 GiB, 25 % of RAM).
pub fn memory_budget() -> usize {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<usize>().ok())
        })
        .map_or(8 << 30, |kib| kib * 1024);
    (total / 4).min(4 << 30)
}

/// `:unknown`.
pub fn unknown() -> Edn {
    kw("unknown")
}

/// Merges validities: `false` beats `:unknown`, which beats `true`.
pub fn merge_valid<'a>(values: impl IntoIterator<Item = &'a Edn>) -> Edn {
    let mut out = Edn::Bool(true);
    for v in values {
        match v {
            Edn::Bool(false) => return Edn::Bool(false),
            Edn::Bool(true) => {}
            _ => out = unknown(),
        }
    }
    out
}

/// Quantiles 0, 0.5, 0.95, 0.99 and 1 of `values` (ms): index min(n−1, ⌊q·n⌋) of the sorted list.
pub fn quantiles(values: &mut [i64]) -> Edn {
    values.sort_unstable();
    let n = values.len();
    let at = |q: f64| {
        if n == 0 {
            Edn::Nil
        } else {
            Edn::Int(values[((q * n as f64).floor() as usize).min(n - 1)])
        }
    };
    Edn::Map(vec![
        (Edn::Int(0), at(0.0)),
        (Edn::Float(0.5), at(0.5)),
        (Edn::Float(0.95), at(0.95)),
        (Edn::Float(0.99), at(0.99)),
        (Edn::Int(1), at(1.0)),
    ])
}

/// `:f`s no checker counts.
fn ignored(f: &str) -> bool {
    matches!(f, "crash" | "debug-topic-partitions")
}

/// `:stats`: completion counts, overall and per `:f`; an `:f` is valid iff something of it succeeded.
pub fn stats(ops: &[Op]) -> Edn {
    let mut by_f: BTreeMap<&str, [i64; 4]> = BTreeMap::new();
    for op in ops
        .iter()
        .filter(|o| o.is_client() && o.op_type != OpType::Invoke && !ignored(o.f))
    {
        let c = by_f.entry(op.f).or_default();
        c[0] += 1;
        match op.op_type {
            OpType::Ok => c[1] += 1,
            OpType::Fail => c[2] += 1,
            _ => c[3] += 1,
        }
    }
    let counts = |c: [i64; 4], valid: bool| {
        map([
            ("valid?", Edn::Bool(valid)),
            ("count", Edn::Int(c[0])),
            ("ok-count", Edn::Int(c[1])),
            ("fail-count", Edn::Int(c[2])),
            ("info-count", Edn::Int(c[3])),
        ])
    };
    let total = by_f.values().fold([0; 4], |a, c| {
        [a[0] + c[0], a[1] + c[1], a[2] + c[2], a[3] + c[3]]
    });
    let all_valid = by_f.values().all(|c| c[1] > 0);
    let mut out = counts(total, all_valid);
    out.push(
        "by-f",
        Edn::Map(
            by_f.into_iter()
                .map(|(f, c)| (kw(f), counts(c, c[1] > 0)))
                .collect(),
        ),
    );
    out
}

/// `--availability`: `total` or a fraction.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Availability {
    /// Every operation must succeed.
    Total,
    /// At least this fraction must.
    AtLeast(f64),
}

/// `:availability`: the fraction of client invocations that completed `:ok`.
pub fn availability(ops: &[Op], required: Option<Availability>) -> Edn {
    let invoked = ops
        .iter()
        .filter(|o| o.is_client() && o.op_type == OpType::Invoke && !ignored(o.f))
        .count();
    let ok = ops
        .iter()
        .filter(|o| o.is_client() && o.op_type == OpType::Ok && !ignored(o.f))
        .count();
    let fraction = if invoked == 0 {
        1.0
    } else {
        ok as f64 / invoked as f64
    };
    let valid = match required {
        None => true,
        Some(Availability::Total) => ok == invoked,
        Some(Availability::AtLeast(a)) => fraction >= a,
    };
    map([
        ("valid?", Edn::Bool(valid)),
        ("ok-fraction", Edn::Float(fraction)),
    ])
}

/// `:net`: message counts, messages per operation, and the node output that was dropped.
pub fn net(stats: &NetStats, ops: &[Op]) -> Edn {
    let invocations = ops
        .iter()
        .filter(|o| o.is_client() && o.op_type == OpType::Invoke)
        .count()
        .max(1) as f64;
    let group = |send: u64, recv: u64, per_op: bool| {
        let mut m = map([
            ("send-count", Edn::Int(send as i64)),
            ("recv-count", Edn::Int(recv as i64)),
            ("msg-count", Edn::Int(send as i64)),
        ]);
        if per_op {
            m.push(
                "msgs-per-op",
                Edn::Float(((send as f64 / invocations) * 1e4).round() / 1e4),
            );
        }
        m
    };
    let total: u64 = stats.dropped.values().flat_map(|r| r.values()).sum();
    let mut dropped = map([("total", Edn::Int(total as i64))]);
    let mut reasons: BTreeMap<&str, u64> = BTreeMap::new();
    for by_reason in stats.dropped.values() {
        for (r, n) in by_reason {
            *reasons.entry(r.name()).or_default() += n;
        }
    }
    for (r, n) in reasons {
        dropped.push(r, Edn::Int(n as i64));
    }
    dropped.push(
        "by-node",
        Edn::Map(
            stats
                .dropped
                .iter()
                .map(|(node, rs)| {
                    (
                        Edn::Str(node.clone()),
                        Edn::Map(
                            rs.iter()
                                .map(|(r, n)| (kw(r.name()), Edn::Int(*n as i64)))
                                .collect(),
                        ),
                    )
                })
                .collect(),
        ),
    );
    map([
        (
            "all",
            group(
                stats.client_sends + stats.server_sends,
                stats.client_recvs + stats.server_recvs,
                true,
            ),
        ),
        (
            "clients",
            group(stats.client_sends, stats.client_recvs, false),
        ),
        (
            "servers",
            group(stats.server_sends, stats.server_recvs, true),
        ),
        ("dropped", dropped),
        ("valid?", Edn::Bool(true)),
    ])
}
