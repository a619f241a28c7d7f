//! g-counter and pn-counter (spec §9.5, §10.2): `add {delta}` → `add_ok`, `read` → `{value: N}`.
//! Every `:ok` final read must lie in the set of sums the acknowledged adds and any subset of
//! the indefinite adds allow, kept exactly as sorted closed ranges.

use super::{
    Field, FinalPhase, Generator, Invocation, Kind, RpcSpec, Workload, body, check_reply, integer,
};
use crate::edn::{Edn, map};
use crate::history::{Op, OpType};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value};

pub struct Counter {
    name: &'static str,
    deltas: std::ops::RangeInclusive<i64>,
}

impl Counter {
    pub fn grow_only() -> Counter {
        Counter {
            name: "g-counter",
            deltas: 0..=4,
        }
    }

    pub fn pn() -> Counter {
        Counter {
            name: "pn-counter",
            deltas: -5..=4,
        }
    }
}

const RPCS: &[RpcSpec] = &[
    RpcSpec {
        request: "add",
        about: "Adds a delta to the counter.",
        request_fields: &[Field {
            name: "delta",
            kind: Kind::Integer,
            about: "0..4 for g-counter, -5..4 for pn-counter",
        }],
        reply_fields: &[],
    },
    RpcSpec {
        request: "read",
        about: "Asks for the counter's current value.",
        request_fields: &[],
        reply_fields: &[Field {
            name: "value",
            kind: Kind::Integer,
            about: "the sum of the adds (an integral float such as `3.0` counts as 3)",
        }],
    },
];

struct Gen(std::ops::RangeInclusive<i64>);

impl Generator for Gen {
    fn next(&mut self, rng: &mut ChaCha8Rng, _thread: usize, _process: u64) -> Invocation {
        if rng.gen_bool(0.5) {
            let d = rng.gen_range(self.0.clone());
            Invocation {
                f: "add",
                value: Edn::Int(d),
                body: body("add", [("delta", Value::from(d))]),
            }
        } else {
            Invocation::read()
        }
    }

    fn final_phase(&mut self) -> FinalPhase {
        FinalPhase::read(true)
    }
}

/// Adds `d` to every sum in `ranges`, merging overlapping or adjacent ranges.
fn add_optional(ranges: &[(i64, i64)], d: i64) -> Vec<(i64, i64)> {
    let mut all: Vec<(i64, i64)> = ranges
        .iter()
        .copied()
        .chain(ranges.iter().map(|(a, b)| (a + d, b + d)))
        .collect();
    all.sort_unstable();
    let mut merged: Vec<(i64, i64)> = Vec::with_capacity(all.len());
    for (a, b) in all {
        match merged.last_mut() {
            Some(last) if a <= last.1 + 1 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    merged
}

impl Workload for Counter {
    fn name(&self) -> &'static str {
        self.name
    }

    fn functions(&self) -> &'static [&'static str] {
        &["add", "read"]
    }

    fn never_fails(&self) -> bool {
        true
    }

    fn about(&self) -> &'static str {
        if self.name == "g-counter" {
            "A grow-only counter: clients add deltas of 0..4 and read the total, half and half. \
             After a 10 s recovery wait every thread reads once more (`:final? true`). Every \
             final read must equal the sum of the acknowledged adds plus any subset of the adds \
             whose outcome is unknown."
        } else {
            "A counter that goes up and down: clients add deltas of -5..4 and read the total, \
             half and half. After a 10 s recovery wait every thread reads once more (`:final? \
             true`). Every final read must equal the sum of the acknowledged adds plus any \
             subset of the adds whose outcome is unknown."
        }
    }

    fn rpcs(&self) -> &'static [RpcSpec] {
        RPCS
    }

    fn generator(&self) -> Box<dyn Generator> {
        Box::new(Gen(self.deltas.clone()))
    }

    fn complete(&self, inv: &Invocation, reply: &Map<String, Value>) -> Result<Edn, String> {
        match inv.f {
            "add" => {
                check_reply(RPCS, "add", reply)?;
                Ok(inv.value.clone())
            }
            _ => {
                check_reply(RPCS, "read", reply)?;
                Ok(Edn::Int(integer(&reply["value"]).expect("checked")))
            }
        }
    }

    fn check(&self, ops: &[Op], _ctx: &super::CheckContext) -> Edn {
        let delta = |op: &Op| match op.value {
            Edn::Int(d) => d,
            _ => 0,
        };
        let sure: i64 = ops
            .iter()
            .filter(|o| o.is_client() && o.f == "add" && o.op_type == OpType::Ok)
            .map(delta)
            .sum();
        let mut acceptable = vec![(sure, sure)];
        for op in ops
            .iter()
            .filter(|o| o.is_client() && o.f == "add" && o.op_type == OpType::Info)
        {
            acceptable = add_optional(&acceptable, delta(op));
        }
        let finals: Vec<&Op> = ops
            .iter()
            .filter(|o| o.is_client() && o.f == "read" && o.op_type == OpType::Ok && o.is_final)
            .collect();
        let fits = |v: i64| acceptable.iter().any(|(a, b)| (*a..=*b).contains(&v));
        let errors: Vec<Edn> = finals
            .iter()
            .filter(|o| !matches!(o.value, Edn::Int(v) if fits(v)))
            .map(|o| o.to_edn())
            .collect();
        let valid = if finals.is_empty() {
            crate::checker::unknown()
        } else {
            Edn::Bool(errors.is_empty())
        };
        map([
            ("valid?", valid),
            ("errors", Edn::Vector(errors)),
            (
                "final-reads",
                Edn::Vector(finals.iter().map(|o| o.value.clone()).collect()),
            ),
            (
                "acceptable",
                Edn::Vector(
                    acceptable
                        .iter()
                        .map(|(a, b)| Edn::Vector(vec![Edn::Int(*a), Edn::Int(*b)]))
                        .collect(),
                ),
            ),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indefinite_adds_widen_the_acceptable_ranges_exactly() {
        assert_eq!(add_optional(&[(10, 10)], 3), [(10, 10), (13, 13)]);
        assert_eq!(add_optional(&[(10, 10), (13, 13)], 1), [(10, 11), (13, 14)]);
        assert_eq!(add_optional(&[(10, 11), (13, 14)], 2), [(10, 16)]);
        assert_eq!(add_optional(&[(0, 0)], -5), [(-5, -5), (0, 0)]);
    }
}
