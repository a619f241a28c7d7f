//! The kafka log checker (spec §10.5). Every acknowledged send and every polled pair is an
//! observation (key, offset, message); all structures are maps over what was observed, never
//! arrays sized by the largest offset, so huge or sparse offsets cost nothing. One pass over
//! the history plus sorting per key.

use crate::edn::{Edn, kw, map};
use crate::history::{self, Op, OpType, Process};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Examples kept per error type.
const EXAMPLES: usize = 8;

/// Error types that do not make a history invalid.
const ALLOWED: [&str; 6] = [
    "int-send-skip",
    "G0",
    "G0-process",
    "G0-realtime",
    "PL-1-cycle-exists",
    "strong-PL-1-cycle-exists",
];

type Key = String;

/// One poll's pairs by key: (key, [(offset, message)]).
type Polled = Vec<(Key, Vec<(i64, Edn)>)>;

#[derive(Default)]
struct Errors {
    by_type: BTreeMap<&'static str, (u64, Vec<Edn>)>,
}

impl Errors {
    fn add(&mut self, t: &'static str, example: impl FnOnce() -> Edn) {
        let e = self.by_type.entry(t).or_default();
        e.0 += 1;
        if e.1.len() < EXAMPLES {
            e.1.push(example());
        }
    }
}

/// One poll's pairs, by key, in reply order.
fn poll_pairs(value: &Edn) -> Polled {
    let mut out = Vec::new();
    let Edn::Vector(mops) = value else { return out };
    for m in mops {
        let Edn::Vector(parts) = m else { continue };
        if parts.first() != Some(&kw("poll")) {
            continue;
        }
        let Some(Edn::Map(keys)) = parts.get(1) else {
            continue;
        };
        for (k, pairs) in keys {
            let key = match k {
                Edn::Str(s) => s.clone(),
                other => other.to_string(),
            };
            let Edn::Vector(pairs) = pairs else { continue };
            let list = pairs
                .iter()
                .filter_map(|p| match p {
                    Edn::Vector(om) if om.len() == 2 => match om[0] {
                        Edn::Int(o) => Some((o, om[1].clone())),
                        _ => None,
                    },
                    _ => None,
                })
                .collect();
            out.push((key, list));
        }
    }
    out
}

/// A send's (key, message) from an invocation value, and its offset from a completion value.
fn send_of(value: &Edn) -> Option<(Key, Option<i64>, Edn)> {
    let Edn::Vector(mops) = value else {
        return None;
    };
    let Some(Edn::Vector(parts)) = mops.first() else {
        return None;
    };
    if parts.first() != Some(&kw("send")) || parts.len() < 3 {
        return None;
    }
    let key = match &parts[1] {
        Edn::Str(s) => s.clone(),
        other => other.to_string(),
    };
    match &parts[2] {
        Edn::Vector(om) if om.len() == 2 => match om[0] {
            Edn::Int(o) => Some((key, Some(o), om[1].clone())),
            _ => None,
        },
        m => Some((key, None, m.clone())),
    }
}

/// Checks a kafka history.
pub fn check(ops: &[Op]) -> Edn {
    let mut errors = Errors::default();
    let pairs = history::pairs(ops);
    // Observations.
    let mut message_at: HashMap<(Key, i64), Edn> = HashMap::new();
    let mut offsets_of: HashMap<(Key, String), BTreeSet<i64>> = HashMap::new();
    let mut known: HashMap<Key, BTreeSet<i64>> = HashMap::new();
    let mut acked: Vec<(Key, i64, Edn, u64, &Op)> = Vec::new();
    let mut failed_sends: HashMap<(Key, String), &Op> = HashMap::new();
    let mut send_invoked: HashMap<(Key, String), u64> = HashMap::new();
    let mut info_causes: BTreeMap<String, u64> = BTreeMap::new();
    let mut observe = |errors: &mut Errors, k: &Key, o: i64, m: &Edn| {
        match message_at.get(&(k.clone(), o)) {
            Some(prev) if prev != m => errors.add("inconsistent-offsets", || {
                map([
                    ("key", Edn::Str(k.clone())),
                    ("offset", Edn::Int(o)),
                    ("values", Edn::Vector(vec![prev.clone(), m.clone()])),
                ])
            }),
            Some(_) => {}
            None => {
                message_at.insert((k.clone(), o), m.clone());
            }
        }
        offsets_of
            .entry((k.clone(), m.to_string()))
            .or_default()
            .insert(o);
        known.entry(k.clone()).or_default().insert(o);
    };
    // Per process: last acked send offset per key; last polled offset per key since the last assign.
    let mut last_send: HashMap<(u64, Key), i64> = HashMap::new();
    // Each completed poll's pairs, by its position in `pairs`.
    let mut polls: HashMap<usize, Polled> = HashMap::new();
    for (at, (inv, done)) in pairs.iter().enumerate() {
        let Process::Client(p) = inv.process else {
            continue;
        };
        let Some(done) = done else { continue };
        match (inv.f, done.op_type) {
            ("send", t) => {
                let Some((k, _, m)) = send_of(&inv.value) else {
                    continue;
                };
                send_invoked.insert((k.clone(), m.to_string()), inv.time);
                match t {
                    OpType::Ok => {
                        if let Some((_, Some(o), _)) = send_of(&done.value) {
                            observe(&mut errors, &k, o, &m);
                            if let Some(prev) = last_send.insert((p, k.clone()), o)
                                && o <= prev
                            {
                                errors.add("nonmonotonic-send", || {
                                    map([
                                        ("key", Edn::Str(k.clone())),
                                        ("offsets", Edn::Vector(vec![Edn::Int(prev), Edn::Int(o)])),
                                        ("op", done.to_edn()),
                                    ])
                                });
                            }
                            acked.push((k, o, m, done.time, done));
                        }
                    }
                    OpType::Fail => {
                        failed_sends.insert((k, m.to_string()), done);
                    }
                    _ => {
                        *info_causes
                            .entry(done.error.as_ref().map_or("unknown".into(), Edn::to_string))
                            .or_default() += 1
                    }
                }
            }
            ("poll", OpType::Ok) => {
                let got = poll_pairs(&done.value);
                for (k, list) in &got {
                    for (o, m) in list {
                        observe(&mut errors, k, *o, m);
                    }
                }
                polls.insert(at, got);
            }
            (_, OpType::Info) => {
                *info_causes
                    .entry(done.error.as_ref().map_or("unknown".into(), Edn::to_string))
                    .or_default() += 1
            }
            _ => {}
        }
    }
    // Duplicates: one message at several offsets.
    for ((k, m), os) in &offsets_of {
        if os.len() > 1 {
            errors.add("duplicate", || {
                map([
                    ("key", Edn::Str(k.clone())),
                    ("msg", Edn::Str(m.clone())),
                    (
                        "offsets",
                        Edn::Vector(os.iter().map(|o| Edn::Int(*o)).collect()),
                    ),
                ])
            });
        }
    }
    // Poll order, per consumer and inside each poll; what was polled, and when. A process is
    // sequential, so walking the history in order replays each consumer: an assign or a crash
    // resets its position.
    let mut polled: HashMap<(Key, i64), u64> = HashMap::new();
    let mut highest_polled: HashMap<Key, i64> = HashMap::new();
    let known_between = |k: &Key, a: i64, b: i64| {
        known
            .get(k)
            .is_some_and(|s| s.range(a + 1..b).next().is_some())
    };
    let mut last_poll: HashMap<(u64, Key), i64> = HashMap::new();
    for (at, (inv, done)) in pairs.iter().enumerate() {
        let (Process::Client(p), Some(done)) = (inv.process, done) else {
            continue;
        };
        if inv.f == "crash" || (inv.f == "assign" && done.op_type == OpType::Ok) {
            last_poll.retain(|(q, _), _| *q != p);
            continue;
        }
        let Some(got) = polls.get(&at) else { continue };
        let p = &p;
        for (k, list) in got {
            for w in list.windows(2) {
                if w[1].0 <= w[0].0 {
                    errors.add("int-nonmonotonic-poll", || {
                        map([
                            ("key", Edn::Str(k.clone())),
                            (
                                "offsets",
                                Edn::Vector(vec![Edn::Int(w[0].0), Edn::Int(w[1].0)]),
                            ),
                            ("op", done.to_edn()),
                        ])
                    });
                } else if known_between(k, w[0].0, w[1].0) {
                    errors.add("int-poll-skip", || {
                        map([
                            ("key", Edn::Str(k.clone())),
                            (
                                "offsets",
                                Edn::Vector(vec![Edn::Int(w[0].0), Edn::Int(w[1].0)]),
                            ),
                            ("op", done.to_edn()),
                        ])
                    });
                }
            }
            if let (Some(first), Some(prev)) = (list.first(), last_poll.get(&(*p, k.clone()))) {
                if first.0 <= *prev {
                    errors.add("nonmonotonic-poll", || {
                        map([
                            ("key", Edn::Str(k.clone())),
                            (
                                "offsets",
                                Edn::Vector(vec![Edn::Int(*prev), Edn::Int(first.0)]),
                            ),
                            ("op", done.to_edn()),
                        ])
                    });
                } else if known_between(k, *prev, first.0) {
                    errors.add("poll-skip", || {
                        map([
                            ("key", Edn::Str(k.clone())),
                            (
                                "offsets",
                                Edn::Vector(vec![Edn::Int(*prev), Edn::Int(first.0)]),
                            ),
                            ("op", done.to_edn()),
                        ])
                    });
                }
            }
            if let Some(last) = list.last() {
                last_poll.insert((*p, k.clone()), last.0);
            }
            for (o, m) in list {
                polled.entry((k.clone(), *o)).or_insert(done.time);
                let h = highest_polled.entry(k.clone()).or_insert(*o);
                *h = (*h).max(*o);
                if let Some(f) = failed_sends.get(&(k.clone(), m.to_string())) {
                    errors.add("G1a", || {
                        map([
                            ("key", Edn::Str(k.clone())),
                            ("msg", m.clone()),
                            ("send", f.to_edn()),
                            ("poll", done.to_edn()),
                        ])
                    });
                }
                if send_invoked
                    .get(&(k.clone(), m.to_string()))
                    .is_some_and(|t| *t > done.time)
                {
                    errors.add("precommitted-read", || {
                        map([
                            ("key", Edn::Str(k.clone())),
                            ("msg", m.clone()),
                            ("poll", done.to_edn()),
                        ])
                    });
                }
            }
        }
    }
    // Acknowledged sends: lost (later offsets were read) or unseen (nothing that far was read).
    let mut worst_lag: Option<(u64, &Key, i64)> = None;
    let mut unseen: BTreeMap<Key, u64> = BTreeMap::new();
    for (k, o, m, sent_at, op) in &acked {
        match polled.get(&(k.clone(), *o)) {
            Some(seen_at) => {
                let lag = seen_at.saturating_sub(*sent_at);
                if worst_lag.is_none_or(|w| lag > w.0) {
                    worst_lag = Some((lag, k, *o));
                }
            }
            None if highest_polled.get(k).is_some_and(|h| h > o) => {
                errors.add("lost-write", || {
                    map([
                        ("key", Edn::Str(k.clone())),
                        ("offset", Edn::Int(*o)),
                        ("msg", m.clone()),
                        ("op", op.to_edn()),
                    ])
                })
            }
            None => *unseen.entry(k.clone()).or_default() += 1,
        }
    }
    if !unseen.is_empty() {
        let total: u64 = unseen.values().sum();
        let e = errors.by_type.entry("unseen").or_default();
        e.0 = total;
        e.1 = vec![Edn::Map(
            unseen
                .iter()
                .map(|(k, n)| (Edn::Str(k.clone()), Edn::Int(*n as i64)))
                .collect(),
        )];
    }
    let types: Vec<&str> = errors.by_type.keys().copied().collect();
    let bad: Vec<&str> = types
        .iter()
        .copied()
        .filter(|t| !ALLOWED.contains(t))
        .collect();
    let mut out = map([
        ("valid?", Edn::Bool(bad.is_empty())),
        (
            "bad-error-types",
            Edn::Vector(bad.iter().map(|t| kw(t)).collect()),
        ),
        (
            "error-types",
            Edn::Vector(types.iter().map(|t| kw(t)).collect()),
        ),
        (
            "info-txn-causes",
            Edn::Map(
                info_causes
                    .into_iter()
                    .map(|(c, n)| (Edn::Str(c), Edn::Int(n as i64)))
                    .collect(),
            ),
        ),
        (
            "worst-realtime-lag",
            worst_lag.map_or(Edn::Nil, |(lag, k, o)| {
                map([
                    ("time", Edn::Float(lag as f64 / 1e9)),
                    ("key", Edn::Str(k.clone())),
                    ("offset", Edn::Int(o)),
                ])
            }),
        ),
    ]);
    for (t, (n, examples)) in errors.by_type {
        out.push(
            t,
            map([
                ("count", Edn::Int(n as i64)),
                ("errs", Edn::Vector(examples)),
            ]),
        );
    }
    out
}
