//! set-full (spec §10.1), for broadcast and g-set: was every element, once known, present in
//! every later read?
//!
//! Reads count only when `:ok`, placed at their invocation time. Each element's reads are
//! walked backwards from the newest, so the work is linear in the total size of the reads —
//! which grows with the square of the run's length (every read returns the whole set), so each
//! element observation costs one integer hash lookup and no allocation.

use crate::checker::{quantiles, unknown};
use crate::edn::{Edn, map};
use crate::history::{self, Op, OpType};
use std::collections::{BTreeSet, HashMap};

const MS: u64 = 1_000_000;

/// Dense ids for elements. Broadcast and g-set values are integers in practice, interned
/// without formatting; any other value by its EDN text (how values compare).
#[derive(Default)]
struct Elements<'a> {
    ints: HashMap<i64, u32>,
    others: HashMap<String, u32>,
    values: Vec<&'a Edn>,
}

impl<'a> Elements<'a> {
    fn id(&mut self, v: &'a Edn) -> u32 {
        let next = self.values.len() as u32;
        let id = match v {
            Edn::Int(i) => *self.ints.entry(*i).or_insert(next),
            other => *self.others.entry(other.to_string()).or_insert(next),
        };
        if id == next {
            self.values.push(v);
        }
        id
    }
}

/// Checks a history whose additions have `:f add_f` and whose reads are `:f :read`.
pub fn check(ops: &[Op], add_f: &str) -> Edn {
    let pairs = history::pairs(ops);
    // Reads: (invocation time, completion time, elements), by invocation time.
    let mut reads: Vec<(u64, u64, &Vec<Edn>)> = pairs
        .iter()
        .filter_map(|(inv, done)| match (inv.f, done) {
            ("read", Some(c)) if c.op_type == OpType::Ok => match &c.value {
                Edn::Vector(v) => Some((inv.time, c.time, v)),
                _ => None,
            },
            _ => None,
        })
        .collect();
    reads.sort_by_key(|r| r.0);

    let mut elements = Elements::default();
    // Per element id: when it became known (its first :ok add, or first read).
    let mut known: Vec<Option<u64>> = Vec::new();
    let mut attempts = 0i64;
    for (inv, done) in &pairs {
        if inv.f == add_f {
            attempts += 1;
            let id = elements.id(&inv.value) as usize;
            known.resize(elements.values.len(), None);
            if let Some(c) = done.filter(|c| c.op_type == OpType::Ok) {
                known[id] = Some(known[id].map_or(c.time, |k| k.min(c.time)));
            }
        }
    }
    // Which reads contain each element, in read order; duplicates within a read.
    let mut containing: Vec<Vec<u32>> = Vec::new();
    let mut duplicated: BTreeSet<u32> = BTreeSet::new();
    // The last read (index + 1) each element was seen in, to spot duplicates without a set.
    let mut last_seen_in: Vec<u32> = Vec::new();
    for (i, (_, done_at, vals)) in reads.iter().enumerate() {
        let read = i as u32 + 1;
        for v in vals.iter() {
            let id = elements.id(v) as usize;
            if id >= containing.len() {
                let n = elements.values.len();
                known.resize(n, None);
                containing.resize(n, Vec::new());
                last_seen_in.resize(n, 0);
            }
            if last_seen_in[id] == read {
                duplicated.insert(id as u32);
                continue;
            }
            last_seen_in[id] = read;
            known[id] = Some(known[id].map_or(*done_at, |k| k.min(*done_at)));
            containing[id].push(i as u32);
        }
    }
    containing.resize(elements.values.len(), Vec::new());

    let (mut stable, mut lost, mut never, mut stale) = (vec![], vec![], vec![], vec![]);
    let (mut stable_lat, mut lost_lat) = (vec![], vec![]);
    let mut worst: Vec<(i64, Edn)> = vec![];
    for (id, elem) in elements.values.iter().enumerate() {
        let elem = *elem;
        let Some(k_time) = known[id] else {
            never.push(elem.clone());
            continue;
        };
        // Reads invoked after the element became known.
        let first_relevant = reads.partition_point(|r| r.0 <= k_time);
        if first_relevant == reads.len() {
            never.push(elem.clone());
            continue;
        }
        let hits = &containing[id];
        let last_present = hits
            .last()
            .map(|&i| i as usize)
            .filter(|&i| i >= first_relevant);
        let mut j = hits.len();
        let mut last_absent = None;
        for r in (first_relevant..reads.len()).rev() {
            if j > 0 && hits[j - 1] as usize == r {
                j -= 1;
            } else {
                last_absent = Some(r);
                break;
            }
        }
        let inv = |i: usize| reads[i].0;
        match (last_present, last_absent) {
            (Some(p), a) if a.is_none_or(|a| inv(a) < inv(p)) => {
                let latency = a.map_or(0, |a| inv(a).saturating_sub(k_time) / MS) as i64;
                stable.push(elem.clone());
                stable_lat.push(latency);
                if let Some(a) = a {
                    stale.push(elem.clone());
                    worst.push((
                        latency,
                        map([
                            ("element", elem.clone()),
                            ("known-time", Edn::Int(k_time as i64)),
                            ("last-absent-time", Edn::Int(inv(a) as i64)),
                            ("stable-latency", Edn::Int(latency)),
                        ]),
                    ));
                }
            }
            (p, _) => {
                lost.push(elem.clone());
                lost_lat.push(p.map_or(0, |p| inv(p).saturating_sub(k_time) / MS) as i64);
            }
        }
    }
    worst.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| crate::edn::order(&a.1, &b.1)));
    for list in [&mut lost, &mut never, &mut stale] {
        list.sort_by(crate::edn::order);
    }
    let valid = if !lost.is_empty() {
        Edn::Bool(false)
    } else if stable.is_empty() {
        unknown()
    } else {
        Edn::Bool(true)
    };
    let mut out = map([
        ("valid?", valid),
        ("attempt-count", Edn::Int(attempts)),
        ("stable-count", Edn::Int(stable.len() as i64)),
        ("lost-count", Edn::Int(lost.len() as i64)),
        ("lost", Edn::Vector(lost.clone())),
        ("never-read-count", Edn::Int(never.len() as i64)),
        ("never-read", Edn::Vector(never)),
        ("stale-count", Edn::Int(stale.len() as i64)),
        ("stale", Edn::Vector(stale)),
        (
            "worst-stale",
            Edn::Vector(worst.into_iter().take(8).map(|(_, e)| e).collect()),
        ),
        ("stable-latencies", quantiles(&mut stable_lat)),
    ]);
    if !lost.is_empty() {
        out.push("lost-latencies", quantiles(&mut lost_lat));
    }
    out.push("duplicated-count", Edn::Int(duplicated.len() as i64));
    let mut duplicated: Vec<Edn> = duplicated
        .into_iter()
        .map(|id| elements.values[id as usize].clone())
        .collect();
    duplicated.sort_by(crate::edn::order);
    out.push("duplicated", Edn::Vector(duplicated));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Process;

    fn op(t: OpType, f: &'static str, value: Edn, time_ms: u64, p: u64) -> Op {
        Op {
            op_type: t,
            f,
            value,
            time: time_ms * MS,
            process: Process::Client(p),
            index: 0,
            error: None,
            is_final: false,
        }
    }

    fn ints(v: &[i64]) -> Edn {
        Edn::Vector(v.iter().map(|i| Edn::Int(*i)).collect())
    }

    #[test]
    fn stable_lost_stale_and_never_read() {
        use OpType::*;
        let ops = vec![
            op(Invoke, "add", Edn::Int(1), 0, 0),
            op(Ok, "add", Edn::Int(1), 10, 0),
            op(Invoke, "add", Edn::Int(2), 20, 0),
            op(Ok, "add", Edn::Int(2), 30, 0),
            op(Invoke, "read", Edn::Nil, 40, 1),
            op(Ok, "read", ints(&[2]), 41, 1), // 1 absent: stale so far
            op(Invoke, "read", Edn::Nil, 50, 1),
            op(Ok, "read", ints(&[1, 2]), 51, 1),
            op(Invoke, "read", Edn::Nil, 60, 1),
            op(Ok, "read", ints(&[1]), 61, 1), // 2 vanished: lost
            op(Invoke, "add", Edn::Int(3), 70, 0),
            op(Info, "add", Edn::Int(3), 80, 0),
        ];
        let r = check(&ops, "add");
        assert_eq!(r.get("valid?"), Some(&Edn::Bool(false)));
        assert_eq!(r.get("lost"), Some(&ints(&[2])));
        assert_eq!(r.get("stale"), Some(&ints(&[1])));
        assert_eq!(r.get("never-read"), Some(&ints(&[3])));
        assert_eq!(
            r.get("stable-latencies").unwrap().to_string(),
            "{0 30, 0.5 30, 0.95 30, 0.99 30, 1 30}"
        );
    }

    #[test]
    fn nothing_stable_is_unknown() {
        let ops = vec![
            op(OpType::Invoke, "add", Edn::Int(1), 0, 0),
            op(OpType::Ok, "add", Edn::Int(1), 1, 0),
        ];
        assert_eq!(check(&ops, "add").get("valid?"), Some(&unknown()));
    }
}
