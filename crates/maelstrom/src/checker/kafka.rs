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

/// A message: integers (what the workload sends) without allocation, anything else by text.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Msg {
    Int(i64),
    Text(String),
}

impl Msg {
    fn of(e: &Edn) -> Msg {
        match e {
            Edn::Int(i) => Msg::Int(*i),
            other => Msg::Text(other.to_string()),
        }
    }

    fn edn(&self) -> Edn {
        match self {
            Msg::Int(i) => Edn::Int(*i),
            Msg::Text(t) => Edn::Str(t.clone()),
        }
    }
}

/// Keys interned to small integers, so the per-observation maps hold no strings.
#[derive(Default)]
struct Keys {
    ids: HashMap<String, u32>,
    names: Vec<String>,
}

impl Keys {
    fn id(&mut self, k: &Edn) -> u32 {
        let name = match k {
            Edn::Str(s) => s.clone(),
            other => other.to_string(),
        };
        let next = self.names.len() as u32;
        *self.ids.entry(name.clone()).or_insert_with(|| {
            self.names.push(name);
            next
        })
    }

    fn edn(&self, k: u32) -> Edn {
        Edn::Str(self.names[k as usize].clone())
    }
}

type K = u32;

/// One poll's pairs by key: (key, [(offset, message)]).
type Polled = Vec<(K, Vec<(i64, Msg)>)>;

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
fn poll_pairs(value: &Edn, keys: &mut Keys) -> Polled {
    let mut out = Vec::new();
    let Edn::Vector(mops) = value else { return out };
    for m in mops {
        let Edn::Vector(parts) = m else { continue };
        if parts.first() != Some(&kw("poll")) {
            continue;
        }
        let Some(Edn::Map(by_key)) = parts.get(1) else {
            continue;
        };
        for (k, pairs) in by_key {
            let Edn::Vector(pairs) = pairs else { continue };
            let list = pairs
                .iter()
                .filter_map(|p| match p {
                    Edn::Vector(om) if om.len() == 2 => match om[0] {
                        Edn::Int(o) => Some((o, Msg::of(&om[1]))),
                        _ => None,
                    },
                    _ => None,
                })
                .collect();
            out.push((keys.id(k), list));
        }
    }
    out
}

/// A send's key and message, and (in a completion) its offset.
fn send_of(value: &Edn, keys: &mut Keys) -> Option<(K, Option<i64>, Msg)> {
    let Edn::Vector(mops) = value else {
        return None;
    };
    let Some(Edn::Vector(parts)) = mops.first() else {
        return None;
    };
    if parts.first() != Some(&kw("send")) || parts.len() < 3 {
        return None;
    }
    let key = keys.id(&parts[1]);
    match &parts[2] {
        Edn::Vector(om) if om.len() == 2 => match om[0] {
            Edn::Int(o) => Some((key, Some(o), Msg::of(&om[1]))),
            _ => None,
        },
        m => Some((key, None, Msg::of(m))),
    }
}

/// Everything observed about the logs.
#[derive(Default)]
struct Logs {
    /// The message at each (key, offset).
    message_at: HashMap<(K, i64), Msg>,
    /// The first offset of each (key, message); all offsets only for messages seen at several.
    first_offset: HashMap<(K, Msg), i64>,
    duplicates: HashMap<(K, Msg), BTreeSet<i64>>,
    /// Every offset observed per key.
    known: HashMap<K, BTreeSet<i64>>,
}

impl Logs {
    fn observe(&mut self, errors: &mut Errors, keys: &Keys, k: K, o: i64, m: &Msg) {
        match self.message_at.get(&(k, o)) {
            Some(prev) if prev != m => errors.add("inconsistent-offsets", || {
                map([
                    ("key", keys.edn(k)),
                    ("offset", Edn::Int(o)),
                    ("values", Edn::Vector(vec![prev.edn(), m.edn()])),
                ])
            }),
            Some(_) => {}
            None => {
                self.message_at.insert((k, o), m.clone());
            }
        }
        match self.first_offset.get(&(k, m.clone())) {
            None => {
                self.first_offset.insert((k, m.clone()), o);
            }
            Some(&first) if first != o => {
                self.duplicates
                    .entry((k, m.clone()))
                    .or_insert_with(|| BTreeSet::from([first]))
                    .insert(o);
            }
            Some(_) => {}
        }
        self.known.entry(k).or_default().insert(o);
    }

    fn known_between(&self, k: K, a: i64, b: i64) -> bool {
        a + 1 < b
            && self
                .known
                .get(&k)
                .is_some_and(|s| s.range(a + 1..b).next().is_some())
    }
}

/// Checks a kafka history.
pub fn check(ops: &[Op]) -> Edn {
    let mut errors = Errors::default();
    let mut keys = Keys::default();
    let mut logs = Logs::default();
    let pairs = history::pairs(ops);
    let mut acked: Vec<(K, i64, Msg, u64, &Op)> = Vec::new();
    let mut failed_sends: HashMap<(K, Msg), &Op> = HashMap::new();
    let mut send_invoked: HashMap<(K, Msg), u64> = HashMap::new();
    let mut info_causes: BTreeMap<String, u64> = BTreeMap::new();
    let mut last_send: HashMap<(u64, K), i64> = HashMap::new();
    for (inv, done) in &pairs {
        let (Process::Client(p), Some(done)) = (inv.process, done) else {
            continue;
        };
        match (inv.f, done.op_type) {
            ("send", t) => {
                let Some((k, _, m)) = send_of(&inv.value, &mut keys) else {
                    continue;
                };
                send_invoked.insert((k, m.clone()), inv.time);
                match t {
                    OpType::Ok => {
                        if let Some((_, Some(o), _)) = send_of(&done.value, &mut keys) {
                            logs.observe(&mut errors, &keys, k, o, &m);
                            if let Some(prev) = last_send.insert((p, k), o)
                                && o <= prev
                            {
                                errors.add("nonmonotonic-send", || {
                                    map([
                                        ("key", keys.edn(k)),
                                        ("offsets", Edn::Vector(vec![Edn::Int(prev), Edn::Int(o)])),
                                        ("op", done.to_edn()),
                                    ])
                                });
                            }
                            acked.push((k, o, m, done.time, done));
                        }
                    }
                    OpType::Fail => {
                        failed_sends.insert((k, m), done);
                    }
                    _ => {
                        *info_causes
                            .entry(done.error.as_ref().map_or("unknown".into(), Edn::to_string))
                            .or_default() += 1
                    }
                }
            }
            ("poll", OpType::Ok) => {
                for (k, list) in poll_pairs(&done.value, &mut keys) {
                    for (o, m) in &list {
                        logs.observe(&mut errors, &keys, k, *o, m);
                    }
                }
            }
            (_, OpType::Info) => {
                *info_causes
                    .entry(done.error.as_ref().map_or("unknown".into(), Edn::to_string))
                    .or_default() += 1
            }
            _ => {}
        }
    }
    for ((k, m), os) in &logs.duplicates {
        errors.add("duplicate", || {
            map([
                ("key", keys.edn(*k)),
                ("msg", m.edn()),
                (
                    "offsets",
                    Edn::Vector(os.iter().map(|o| Edn::Int(*o)).collect()),
                ),
            ])
        });
    }
    // Poll order, per consumer and inside each poll; what was polled, and when. A process is
    // sequential, so walking the history in order replays each consumer: an assign or a crash
    // resets its position. Polls are parsed again rather than kept from the first pass, which
    // would hold every polled pair in memory at once.
    let mut polled: HashMap<(K, i64), u64> = HashMap::new();
    let mut highest_polled: HashMap<K, i64> = HashMap::new();
    let mut last_poll: HashMap<(u64, K), i64> = HashMap::new();
    for (inv, done) in &pairs {
        let (Process::Client(p), Some(done)) = (inv.process, done) else {
            continue;
        };
        if inv.f == "crash" || (inv.f == "assign" && done.op_type == OpType::Ok) {
            last_poll.retain(|(q, _), _| *q != p);
            continue;
        }
        if inv.f != "poll" || done.op_type != OpType::Ok {
            continue;
        }
        for (k, list) in poll_pairs(&done.value, &mut keys) {
            for w in list.windows(2) {
                let (a, b) = (w[0].0, w[1].0);
                if b <= a {
                    errors.add("int-nonmonotonic-poll", || {
                        map([
                            ("key", keys.edn(k)),
                            ("offsets", Edn::Vector(vec![Edn::Int(a), Edn::Int(b)])),
                            ("op", done.to_edn()),
                        ])
                    });
                } else if logs.known_between(k, a, b) {
                    errors.add("int-poll-skip", || {
                        map([
                            ("key", keys.edn(k)),
                            ("offsets", Edn::Vector(vec![Edn::Int(a), Edn::Int(b)])),
                            ("op", done.to_edn()),
                        ])
                    });
                }
            }
            if let (Some(first), Some(&prev)) = (list.first(), last_poll.get(&(p, k))) {
                if first.0 <= prev {
                    errors.add("nonmonotonic-poll", || {
                        map([
                            ("key", keys.edn(k)),
                            (
                                "offsets",
                                Edn::Vector(vec![Edn::Int(prev), Edn::Int(first.0)]),
                            ),
                            ("op", done.to_edn()),
                        ])
                    });
                } else if logs.known_between(k, prev, first.0) {
                    errors.add("poll-skip", || {
                        map([
                            ("key", keys.edn(k)),
                            (
                                "offsets",
                                Edn::Vector(vec![Edn::Int(prev), Edn::Int(first.0)]),
                            ),
                            ("op", done.to_edn()),
                        ])
                    });
                }
            }
            if let Some(last) = list.last() {
                last_poll.insert((p, k), last.0);
            }
            for (o, m) in &list {
                polled.entry((k, *o)).or_insert(done.time);
                let h = highest_polled.entry(k).or_insert(*o);
                *h = (*h).max(*o);
                if let Some(f) = failed_sends.get(&(k, m.clone())) {
                    errors.add("G1a", || {
                        map([
                            ("key", keys.edn(k)),
                            ("msg", m.edn()),
                            ("send", f.to_edn()),
                            ("poll", done.to_edn()),
                        ])
                    });
                }
                if send_invoked
                    .get(&(k, m.clone()))
                    .is_some_and(|t| *t > done.time)
                {
                    errors.add("precommitted-read", || {
                        map([
                            ("key", keys.edn(k)),
                            ("msg", m.edn()),
                            ("poll", done.to_edn()),
                        ])
                    });
                }
            }
        }
    }
    // Acknowledged sends: lost (later offsets were read) or unseen (nothing that far was read).
    let mut worst_lag: Option<(u64, K, i64)> = None;
    let mut unseen: BTreeMap<String, u64> = BTreeMap::new();
    for (k, o, m, sent_at, op) in &acked {
        match polled.get(&(*k, *o)) {
            Some(seen_at) => {
                let lag = seen_at.saturating_sub(*sent_at);
                if worst_lag.is_none_or(|w| lag > w.0) {
                    worst_lag = Some((lag, *k, *o));
                }
            }
            None if highest_polled.get(k).is_some_and(|h| h > o) => {
                errors.add("lost-write", || {
                    map([
                        ("key", keys.edn(*k)),
                        ("offset", Edn::Int(*o)),
                        ("msg", m.edn()),
                        ("op", op.to_edn()),
                    ])
                })
            }
            None => *unseen.entry(keys.names[*k as usize].clone()).or_default() += 1,
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
                    ("key", keys.edn(k)),
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
