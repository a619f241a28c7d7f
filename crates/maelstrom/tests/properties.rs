//! Property tests of the checkers: histories recorded from a real sequential execution are
//! always accepted, and mutations that make them impossible are always rejected.

use maelstrom::checker::elle::{self, TxnKind};
use maelstrom::checker::linear::{self, Budget, Model, Outcome};
use maelstrom::edn::{Edn, kw};
use maelstrom::history::{Op, OpType};
use maelstrom::synth;
use maelstrom::workload::CheckContext;
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::time::Duration;

fn budget() -> Budget {
    Budget {
        time: Duration::from_secs(20),
        memory: 1 << 30,
    }
}

fn lin(ops: &[Op]) -> Outcome {
    linear::check(ops, Model::CasRegister, None, &linear::plain_op, budget())
}

fn elle_check(ops: &[Op]) -> Edn {
    elle_check_kind(ops, TxnKind::ListAppend)
}

fn elle_check_kind(ops: &[Op], kind: TxnKind) -> Edn {
    let ctx = CheckContext {
        dir: None,
        timeout: Duration::from_secs(20),
        memory: 1 << 30,
        consistency_models: vec!["strict-serializable".into()],
    };
    elle::check(ops, kind, &ctx)
}

/// Valid with no anomaly; or, when no transaction relates to another (a tiny history),
/// unknown for that reason alone, as Elle says.
fn no_anomaly(r: &Edn) -> bool {
    match (r.get("valid?"), r.get("anomaly-types")) {
        (Some(Edn::Bool(true)), Some(Edn::Vector(v))) => v.is_empty(),
        (Some(unknown), Some(Edn::Vector(v))) if *unknown == kw("unknown") => {
            *v == vec![kw("empty-transaction-graph")]
        }
        _ => false,
    }
}

/// A transaction op from its micro-ops written as EDN.
fn txn(op_type: OpType, process: u64, mops: &str, time: u64, is_final: bool) -> Op {
    let forms = maelstrom::edn::parse_all(mops).unwrap();
    Op {
        op_type,
        f: "txn",
        value: forms[0].clone(),
        time,
        process: maelstrom::history::Process::Client(process),
        index: 0,
        error: None,
        is_final,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    #[test]
    fn concurrent_register_executions_are_linearizable(seed: u64, n in 1usize..300, concurrency in 1usize..10, info in 0.0f64..0.3) {
        let ops = synth::cas_register(&mut ChaCha8Rng::seed_from_u64(seed), n, concurrency, info, false);
        let outcome = lin(&ops);
        prop_assert!(matches!(outcome, Outcome::Linearizable), "{:?}", outcome);
    }

    #[test]
    fn a_read_of_a_value_never_written_is_rejected(seed: u64, n in 2usize..200, concurrency in 1usize..5, pick: prop::sample::Index) {
        let mut ops = synth::cas_register(&mut ChaCha8Rng::seed_from_u64(seed), n, concurrency, 0.1, false);
        let reads: Vec<usize> = ops.iter().enumerate().filter(|(_, o)| o.op_type == OpType::Ok && o.f == "read").map(|(i, _)| i).collect();
        prop_assume!(!reads.is_empty());
        ops[reads[pick.index(reads.len())]].value = Edn::Int(999);
        let rejected = matches!(lin(&ops), Outcome::NotLinearizable { .. });
        prop_assert!(rejected);
    }

    #[test]
    fn a_stale_read_in_a_sequential_history_is_rejected(seed: u64, n in 2usize..200, pick: prop::sample::Index, other in 0i64..5) {
        let mut ops = synth::cas_register(&mut ChaCha8Rng::seed_from_u64(seed), n, 1, 0.0, true);
        let reads: Vec<usize> = ops.iter().enumerate().filter(|(_, o)| o.op_type == OpType::Ok && o.f == "read" && o.value != Edn::Nil).map(|(i, _)| i).collect();
        prop_assume!(!reads.is_empty());
        let i = reads[pick.index(reads.len())];
        prop_assume!(ops[i].value != Edn::Int(other));
        // The acknowledged state is lost: the read sees another value.
        ops[i].value = Edn::Int(other);
        let rejected = matches!(lin(&ops), Outcome::NotLinearizable { .. });
        prop_assert!(rejected);
    }

    #[test]
    fn serial_transaction_executions_are_strict_serializable(seed: u64, n in 1usize..400, concurrency in 1usize..10, keys in 1i64..8) {
        let ops = synth::list_append(&mut ChaCha8Rng::seed_from_u64(seed), n, concurrency, keys);
        let r = elle_check(&ops);
        prop_assert!(no_anomaly(&r), "{}", r.pretty());
    }

    #[test]
    fn a_garbage_read_or_a_lost_append_is_rejected(seed: u64, n in 5usize..300, concurrency in 1usize..6, garbage: bool, pick: prop::sample::Index) {
        let mut ops = synth::list_append(&mut ChaCha8Rng::seed_from_u64(seed), n, concurrency, 3);
        // Reads (in completed transactions) that saw at least two elements. A lost append is
        // only observable where another read of the key shows the element, so for that
        // mutation only reads whose key has another read at least as long qualify.
        let mut reads: Vec<(usize, usize, Edn, usize)> = vec![];
        for (i, op) in ops.iter().enumerate().filter(|(_, o)| o.op_type == OpType::Ok) {
            if let Edn::Vector(mops) = &op.value {
                for (j, m) in mops.iter().enumerate() {
                    if let Edn::Vector(parts) = m && parts[0] == kw("r") && let Edn::Vector(l) = &parts[2] {
                        reads.push((i, j, parts[1].clone(), l.len()));
                    }
                }
            }
        }
        let candidates: Vec<(usize, usize)> = reads
            .iter()
            .filter(|(i, j, k, len)| {
                *len >= 2 && (garbage || reads.iter().any(|(i2, j2, k2, len2)| (i2, j2) != (i, j) && k2 == k && len2 >= len))
            })
            .map(|(i, j, _, _)| (*i, *j))
            .collect();
        prop_assume!(!candidates.is_empty());
        let (i, j) = candidates[pick.index(candidates.len())];
        if let Edn::Vector(mops) = &mut ops[i].value && let Edn::Vector(parts) = &mut mops[j] && let Edn::Vector(list) = &mut parts[2] {
            if garbage {
                list.push(Edn::Int(1_000_000));
            } else {
                list.remove(0);
            }
        }
        let r = elle_check(&ops);
        prop_assert_eq!(r.get("valid?"), Some(&Edn::Bool(false)), "{}", r.pretty());
    }

    #[test]
    fn an_injected_cycle_is_found(seed: u64, n in 1usize..200, concurrency in 1usize..6) {
        let mut ops = synth::list_append(&mut ChaCha8Rng::seed_from_u64(seed), n, concurrency, 3);
        // Two concurrent transactions that each see the other's append: G1c.
        let end = ops.last().map_or(0, |o| o.time) + 100;
        let t = |ty, p, mops: &str, time| txn(ty, p, mops, time, false);
        ops.push(t(OpType::Invoke, 100, "[[:append 50 1] [:r 51 nil]]", end));
        ops.push(t(OpType::Invoke, 101, "[[:append 51 1] [:r 50 nil]]", end + 1));
        ops.push(t(OpType::Ok, 100, "[[:append 50 1] [:r 51 [1]]]", end + 2));
        ops.push(t(OpType::Ok, 101, "[[:append 51 1] [:r 50 [1]]]", end + 3));
        let r = elle_check(&ops);
        prop_assert!(r.get("anomaly-types").unwrap().to_string().contains(":G1c"), "{}", r.pretty());
        prop_assert_eq!(r.get("valid?"), Some(&Edn::Bool(false)));
    }

    #[test]
    fn serial_rw_register_executions_are_strict_serializable(seed: u64, n in 1usize..400, concurrency in 1usize..10, keys in 1i64..8) {
        let ops = synth::rw_register(&mut ChaCha8Rng::seed_from_u64(seed), n, concurrency, keys);
        let r = elle_check_kind(&ops, TxnKind::RwRegister);
        prop_assert!(no_anomaly(&r), "{}", r.pretty());
    }

    #[test]
    fn an_rw_register_read_of_a_value_never_written_is_rejected(seed: u64, n in 2usize..300, concurrency in 1usize..6, pick: prop::sample::Index) {
        let mut ops = synth::rw_register(&mut ChaCha8Rng::seed_from_u64(seed), n, concurrency, 3);
        let mut reads: Vec<(usize, usize)> = vec![];
        for (i, op) in ops.iter().enumerate().filter(|(_, o)| o.op_type == OpType::Ok) {
            if let Edn::Vector(mops) = &op.value {
                for (j, m) in mops.iter().enumerate() {
                    if let Edn::Vector(parts) = m && parts[0] == kw("r") {
                        reads.push((i, j));
                    }
                }
            }
        }
        prop_assume!(!reads.is_empty());
        let (i, j) = reads[pick.index(reads.len())];
        if let Edn::Vector(mops) = &mut ops[i].value && let Edn::Vector(parts) = &mut mops[j] {
            parts[2] = Edn::Int(1_000_000);
        }
        let r = elle_check_kind(&ops, TxnKind::RwRegister);
        prop_assert_eq!(r.get("valid?"), Some(&Edn::Bool(false)), "{}", r.pretty());
    }

    #[test]
    fn injected_rw_register_write_and_read_cycles_are_found(seed: u64, n in 1usize..200, concurrency in 1usize..6) {
        let mut ops = synth::rw_register(&mut ChaCha8Rng::seed_from_u64(seed), n, concurrency, 3);
        let end = ops.last().map_or(0, |o| o.time) + 100;
        // Two concurrent writers of keys 50 and 51; the final reads order their writes one way
        // on 50 and the other way on 51: a write cycle, G0.
        for (ty, p, mops, dt) in [
            (OpType::Invoke, 100, "[[:w 50 1] [:w 51 1]]", 0),
            (OpType::Invoke, 101, "[[:w 50 2] [:w 51 2]]", 1),
            (OpType::Ok, 100, "[[:w 50 1] [:w 51 1]]", 2),
            (OpType::Ok, 101, "[[:w 50 2] [:w 51 2]]", 3),
            // Two more that each read the other's write: a read cycle, G1c.
            (OpType::Invoke, 102, "[[:w 60 1] [:r 61 nil]]", 4),
            (OpType::Invoke, 103, "[[:w 61 1] [:r 60 nil]]", 5),
            (OpType::Ok, 102, "[[:w 60 1] [:r 61 1]]", 6),
            (OpType::Ok, 103, "[[:w 61 1] [:r 60 1]]", 7),
        ] {
            ops.push(txn(ty, p, mops, end + dt, false));
        }
        ops.push(txn(OpType::Invoke, 104, "[[:r 50 nil] [:r 51 nil]]", end + 10, true));
        ops.push(txn(OpType::Ok, 104, "[[:r 50 2] [:r 51 1]]", end + 11, true));
        for (i, o) in ops.iter_mut().enumerate() {
            o.index = i as u64;
        }
        let r = elle_check_kind(&ops, TxnKind::RwRegister);
        let types = r.get("anomaly-types").unwrap().to_string();
        prop_assert!(types.contains(":G0") && types.contains(":G1c"), "{}", r.pretty());
        prop_assert_eq!(r.get("valid?"), Some(&Edn::Bool(false)));
    }
}
