//! Synthetic histories with a known answer, for property tests and checker benchmarks.
//!
//! Each generator runs a real sequential execution: operation i takes effect at its
//! linearization point 10·i, and its invocation and completion are placed around that point
//! inside a window, so operations overlap (concurrency) yet the history is linearizable (or
//! strict serializable) by construction.

use crate::edn::{Edn, kw};
use crate::history::{Op, OpType, Process};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

fn push(events: &mut Vec<(u64, u8, Op)>, op: Op) {
    let order = u8::from(op.op_type != OpType::Invoke);
    events.push((op.time, order, op));
}

fn finish(mut events: Vec<(u64, u8, Op)>) -> Vec<Op> {
    events.sort_by_key(|e| (e.0, e.1));
    events
        .into_iter()
        .enumerate()
        .map(|(i, (_, _, mut op))| {
            op.index = i as u64;
            op
        })
        .collect()
}

fn op(op_type: OpType, f: &'static str, value: Edn, time: u64, process: u64) -> Op {
    Op {
        op_type,
        f,
        value,
        time,
        process: Process::Client(process),
        index: 0,
        error: None,
        is_final: false,
    }
}

/// A cas-register history of `n` operations by `concurrency` overlapping processes; a
/// fraction `info` of the writes and cas crash (`:info`), taking effect or not at random.
/// With `sequential`, operations never overlap.
pub fn cas_register(
    rng: &mut ChaCha8Rng,
    n: usize,
    concurrency: usize,
    info: f64,
    sequential: bool,
) -> Vec<Op> {
    let mut events = Vec::with_capacity(2 * n);
    let mut state: Option<i64> = None;
    let half = if sequential {
        4
    } else {
        (concurrency as u64 * 10) / 2 - 1
    };
    let mut crashed = 0u64;
    for i in 0..n {
        let at = 100 + i as u64 * 10;
        let (inv, done) = (at - rng.gen_range(0..=half), at + rng.gen_range(0..=half));
        // A process has one operation at a time; a crashed one is replaced by a fresh id.
        let process = (i % concurrency) as u64 + crashed * concurrency as u64 * 1000;
        let crash = rng.gen_bool(info);
        match rng.gen_range(0..3) {
            0 => {
                push(
                    &mut events,
                    op(OpType::Invoke, "read", Edn::Nil, inv, process),
                );
                let v = state.map_or(Edn::Nil, Edn::Int);
                push(&mut events, op(OpType::Ok, "read", v, done, process));
            }
            1 => {
                let v = rng.gen_range(0..5);
                push(
                    &mut events,
                    op(OpType::Invoke, "write", Edn::Int(v), inv, process),
                );
                if crash {
                    if rng.gen_bool(0.5) {
                        state = Some(v);
                    }
                    push(
                        &mut events,
                        op(OpType::Info, "write", Edn::Int(v), done, process),
                    );
                    crashed += 1;
                } else {
                    state = Some(v);
                    push(
                        &mut events,
                        op(OpType::Ok, "write", Edn::Int(v), done, process),
                    );
                }
            }
            _ => {
                let (a, b) = (rng.gen_range(0..5), rng.gen_range(0..5));
                let value = Edn::Vector(vec![Edn::Int(a), Edn::Int(b)]);
                push(
                    &mut events,
                    op(OpType::Invoke, "cas", value.clone(), inv, process),
                );
                let applies = state == Some(a);
                if crash {
                    if applies && rng.gen_bool(0.5) {
                        state = Some(b);
                    }
                    push(&mut events, op(OpType::Info, "cas", value, done, process));
                    crashed += 1;
                } else if applies {
                    state = Some(b);
                    push(&mut events, op(OpType::Ok, "cas", value, done, process));
                } else {
                    push(&mut events, op(OpType::Fail, "cas", value, done, process));
                }
            }
        }
    }
    finish(events)
}

/// A txn-list-append history of `n` transactions (1–4 micro-ops over `keys` active keys) by
/// `concurrency` overlapping processes, strict serializable by construction. As in the
/// workload, a key that has had 16 appends retires for a fresh one, so lists stay short.
pub fn list_append(rng: &mut ChaCha8Rng, n: usize, concurrency: usize, keys: i64) -> Vec<Op> {
    const MAX_WRITES: i64 = 16;
    let mut lists: Vec<Vec<i64>> = vec![Vec::new(); keys as usize];
    let mut next = vec![0i64; keys as usize];
    let mut ids: Vec<i64> = (0..keys).collect();
    let mut fresh = keys;
    transactions(rng, n, concurrency, |rng| {
        let (mut invoked, mut completed) = (vec![], vec![]);
        for _ in 0..rng.gen_range(1..=4) {
            let slot = rng.gen_range(0..keys) as usize;
            let k = ids[slot];
            if rng.gen_bool(0.5) {
                let read = Edn::Vector(lists[slot].iter().map(|v| Edn::Int(*v)).collect());
                invoked.push(Edn::Vector(vec![kw("r"), Edn::Int(k), Edn::Nil]));
                completed.push(Edn::Vector(vec![kw("r"), Edn::Int(k), read]));
            } else {
                next[slot] += 1;
                let v = next[slot];
                lists[slot].push(v);
                let m = Edn::Vector(vec![kw("append"), Edn::Int(k), Edn::Int(v)]);
                invoked.push(m.clone());
                completed.push(m);
                if v == MAX_WRITES {
                    ids[slot] = fresh;
                    fresh += 1;
                    lists[slot].clear();
                    next[slot] = 0;
                }
            }
        }
        (invoked, completed)
    })
}

/// A txn-rw-register history of `n` transactions (1–4 micro-ops over `keys` keys) by
/// `concurrency` overlapping processes, strict serializable by construction. Each key's writes
/// are 1, 2, 3, … (unique, as the workload's are); a read returns the key's current value, nil
/// before the first write.
pub fn rw_register(rng: &mut ChaCha8Rng, n: usize, concurrency: usize, keys: i64) -> Vec<Op> {
    let mut current: Vec<Option<i64>> = vec![None; keys as usize];
    transactions(rng, n, concurrency, |rng| {
        let (mut invoked, mut completed) = (vec![], vec![]);
        for _ in 0..rng.gen_range(1..=4) {
            let k = rng.gen_range(0..keys);
            let slot = &mut current[k as usize];
            if rng.gen_bool(0.5) {
                let read = slot.map_or(Edn::Nil, Edn::Int);
                invoked.push(Edn::Vector(vec![kw("r"), Edn::Int(k), Edn::Nil]));
                completed.push(Edn::Vector(vec![kw("r"), Edn::Int(k), read]));
            } else {
                let v = slot.map_or(1, |v| v + 1);
                *slot = Some(v);
                let m = Edn::Vector(vec![kw("w"), Edn::Int(k), Edn::Int(v)]);
                invoked.push(m.clone());
                completed.push(m);
            }
        }
        (invoked, completed)
    })
}

/// `n` committed transactions by `concurrency` overlapping processes: transaction i takes
/// effect at 100 + 10·i, inside its invocation–completion window. `txn` runs each one in
/// order, giving its micro-ops as invoked and as completed.
fn transactions(
    rng: &mut ChaCha8Rng,
    n: usize,
    concurrency: usize,
    mut txn: impl FnMut(&mut ChaCha8Rng) -> (Vec<Edn>, Vec<Edn>),
) -> Vec<Op> {
    let mut events = Vec::with_capacity(2 * n);
    let half = (concurrency as u64 * 10) / 2 - 1;
    for i in 0..n {
        let at = 100 + i as u64 * 10;
        let (inv, done) = (at - rng.gen_range(0..=half), at + rng.gen_range(0..=half));
        let process = (i % concurrency) as u64;
        let (invoked, completed) = txn(rng);
        push(
            &mut events,
            op(OpType::Invoke, "txn", Edn::Vector(invoked), inv, process),
        );
        push(
            &mut events,
            op(OpType::Ok, "txn", Edn::Vector(completed), done, process),
        );
    }
    finish(events)
}

/// A kafka history of `n` operations: producers send to `keys` keys, consumers poll each key
/// in order, five messages at a time, and finally drain every key (as the workload's final
/// phase does); valid by construction.
pub fn kafka(rng: &mut ChaCha8Rng, n: usize, keys: usize, consumers: u64) -> Vec<Op> {
    let mut ops = Vec::with_capacity(2 * n);
    let mut logs: Vec<Vec<i64>> = vec![Vec::new(); keys];
    let mut positions: Vec<Vec<usize>> = vec![vec![0; keys]; consumers as usize];
    let mut next_msg = 0i64;
    for i in 0..n {
        let t = 10 * i as u64;
        if rng.gen_bool(0.5) {
            let k = rng.gen_range(0..keys);
            next_msg += 1;
            let key = Edn::Str(k.to_string());
            let offset = logs[k].len() as i64;
            logs[k].push(next_msg);
            let sent = |v: Edn| Edn::Vector(vec![Edn::Vector(vec![kw("send"), key.clone(), v])]);
            ops.push(op(
                OpType::Invoke,
                "send",
                sent(Edn::Int(next_msg)),
                t,
                1000,
            ));
            ops.push(op(
                OpType::Ok,
                "send",
                sent(Edn::Vector(vec![Edn::Int(offset), Edn::Int(next_msg)])),
                t + 5,
                1000,
            ));
        } else {
            let c = (i as u64 % consumers) as usize;
            ops.extend(poll_all(&logs, &mut positions[c], c as u64, t, 5));
        }
    }
    let end = 10 * n as u64;
    for (c, pos) in positions.iter_mut().enumerate() {
        ops.extend(poll_all(
            &logs,
            pos,
            c as u64,
            end + 10 * c as u64,
            usize::MAX,
        ));
    }
    for (i, o) in ops.iter_mut().enumerate() {
        o.index = i as u64;
    }
    ops
}

/// One consumer's poll of up to `batch` messages per key, as an invocation and completion.
fn poll_all(
    logs: &[Vec<i64>],
    positions: &mut [usize],
    consumer: u64,
    t: u64,
    batch: usize,
) -> [Op; 2] {
    let mut polled = Vec::new();
    for (k, log) in logs.iter().enumerate() {
        let from = positions[k];
        let to = from.saturating_add(batch).min(log.len());
        if from < to {
            let pairs = (from..to)
                .map(|o| Edn::Vector(vec![Edn::Int(o as i64), Edn::Int(log[o])]))
                .collect();
            polled.push((Edn::Str(k.to_string()), Edn::Vector(pairs)));
            positions[k] = to;
        }
    }
    [
        op(
            OpType::Invoke,
            "poll",
            Edn::Vector(vec![Edn::Vector(vec![kw("poll")])]),
            t,
            consumer,
        ),
        op(
            OpType::Ok,
            "poll",
            Edn::Vector(vec![Edn::Vector(vec![kw("poll"), Edn::Map(polled)])]),
            t + 5,
            consumer,
        ),
    ]
}

/// A broadcast-style grow-only set history: `n` adds of 0, 1, 2, … by process 0, each followed
/// by a read (process 1) that returns every element added so far, so the reads hold n²/2
/// element observations in all, as a long broadcast run's do. Valid: nothing is lost.
pub fn grow_only_set(n: usize) -> Vec<Op> {
    let mut events = Vec::with_capacity(4 * n);
    for i in 0..n {
        let t = 10 * i as u64;
        push(
            &mut events,
            op(OpType::Invoke, "add", Edn::Int(i as i64), t, 0),
        );
        push(
            &mut events,
            op(OpType::Ok, "add", Edn::Int(i as i64), t + 1, 0),
        );
        let all = Edn::Vector((0..=i as i64).map(Edn::Int).collect());
        push(&mut events, op(OpType::Invoke, "read", Edn::Nil, t + 2, 1));
        push(&mut events, op(OpType::Ok, "read", all, t + 3, 1));
    }
    finish(events)
}
