//! Transactional checking in Elle's manner (spec §10.4), for txn-list-append and
//! txn-rw-register: infer version orders, build the dependency graph (ww, wr, rw, process,
//! realtime), find the non-cycle anomalies, search strongly connected components for cycles
//! class by class, and decide which consistency models the history violates.
//!
//! Transactions are vertices: `:ok` ones fully, `:info` ones only through their writes,
//! `:fail` ones not at all (reading their writes is G1a). Values are unique per key, so a
//! read names its writer.

use crate::edn::{Edn, kw, map};
use crate::history::{self, Op, OpType, Process};
use crate::workload::CheckContext;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::time::Instant;

/// Which transactional workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxnKind {
    /// Appends to lists; reads return whole lists.
    ListAppend,
    /// Writes to registers; reads return one value.
    RwRegister,
}

/// Examples kept per anomaly class.
const EXAMPLES: usize = 8;

const WW: u8 = 1;
const WR: u8 = 2;
const RW: u8 = 4;
const PROCESS: u8 = 8;
const REALTIME: u8 = 16;
const ALL_KINDS: u8 = WW | WR | RW | PROCESS | REALTIME;

/// A value in a read or write; integers as themselves, anything else interned.
type V = i64;

#[derive(Clone, Debug)]
enum Read {
    List(Vec<V>),
    Reg(Option<V>),
    /// An `:info` or `:fail` transaction's read: unknown.
    Unknown,
}

#[derive(Clone, Debug)]
enum Mop {
    Read(V, Read),
    Write(V, V),
}

struct Txn<'a> {
    status: OpType,
    process: u64,
    inv_time: u64,
    done_time: u64,
    mops: Vec<Mop>,
    /// The completion (or, for an unfinished one, the invocation), for reports.
    op: &'a Op,
    is_final: bool,
}

/// A cycle: each vertex with the kind and reason of the edge leaving it.
type Cycle = Vec<(usize, u8, u32)>;

/// Why an edge exists, for explanations.
#[derive(Clone, Copy, Debug)]
struct Why {
    key: V,
    a: Option<V>,
    b: Option<V>,
}

#[derive(Default)]
struct Interner {
    ids: HashMap<String, V>,
    names: HashMap<V, Edn>,
}

impl Interner {
    fn id(&mut self, e: &Edn) -> Option<V> {
        match e {
            Edn::Nil => None,
            Edn::Int(i) => Some(*i),
            other => {
                let next = i64::MIN / 2 + self.ids.len() as i64;
                let id = *self.ids.entry(other.to_string()).or_insert(next);
                self.names.insert(id, other.clone());
                Some(id)
            }
        }
    }

    fn show(&self, v: V) -> String {
        self.names.get(&v).map_or(v.to_string(), |e| e.to_string())
    }
}

fn parse_mops(
    value: &Edn,
    done: Option<&Edn>,
    kind: TxnKind,
    ok: bool,
    names: &mut Interner,
) -> Vec<Mop> {
    let src = if ok { done.unwrap_or(value) } else { value };
    let Edn::Vector(items) = src else {
        return vec![];
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let Edn::Vector(m) = item else { continue };
        if m.len() != 3 {
            continue;
        }
        let f = match &m[0] {
            Edn::Keyword(f) | Edn::Str(f) => f.as_str(),
            _ => continue,
        };
        let Some(k) = names.id(&m[1]) else { continue };
        match f {
            "r" if !ok => out.push(Mop::Read(k, Read::Unknown)),
            "r" => out.push(Mop::Read(
                k,
                match kind {
                    TxnKind::ListAppend => match &m[2] {
                        Edn::Vector(vs) => {
                            Read::List(vs.iter().filter_map(|v| names.id(v)).collect())
                        }
                        _ => Read::List(vec![]),
                    },
                    TxnKind::RwRegister => Read::Reg(names.id(&m[2])),
                },
            )),
            "append" | "w" => {
                if let Some(v) = names.id(&m[2]) {
                    out.push(Mop::Write(k, v));
                }
            }
            _ => {}
        }
    }
    out
}

/// The dependency graph: `edges[from]` holds `(to, kind, why)`.
struct Graph {
    edges: Vec<Vec<(usize, u8, u32)>>,
    whys: Vec<Why>,
}

impl Graph {
    fn new(n: usize) -> Graph {
        Graph {
            edges: vec![Vec::new(); n],
            whys: Vec::new(),
        }
    }

    fn add(&mut self, from: usize, to: usize, kind: u8, why: Why) {
        if from != to {
            self.whys.push(why);
            self.edges[from].push((to, kind, (self.whys.len() - 1) as u32));
        }
    }
}

/// Non-cycle findings, by anomaly name.
type Found = BTreeMap<&'static str, Vec<Edn>>;

fn note(found: &mut Found, name: &'static str, example: impl FnOnce() -> Edn) {
    let list = found.entry(name).or_default();
    if list.len() < EXAMPLES {
        list.push(example());
    }
}

/// Checks a transactional history.
pub fn check(ops: &[Op], kind: TxnKind, ctx: &CheckContext) -> Edn {
    let mut names = Interner::default();
    let mut txns: Vec<Txn> = Vec::new();
    for (inv, done) in history::pairs_with_lone_completions(ops) {
        let Process::Client(p) = inv.process else {
            continue;
        };
        let status = done.map_or(OpType::Info, |d| d.op_type);
        let ok = status == OpType::Ok;
        // A completion standing alone started at an unknown time: say the beginning, so no
        // real-time order is invented for it.
        let whole = done.is_some_and(|d| std::ptr::eq(d, inv));
        txns.push(Txn {
            status,
            process: p,
            inv_time: if whole { 0 } else { inv.time },
            done_time: done.map_or(u64::MAX, |d| d.time),
            mops: parse_mops(&inv.value, done.map(|d| &d.value), kind, ok, &mut names),
            op: done.unwrap_or(inv),
            is_final: inv.is_final,
        });
    }
    let mut found = Found::new();

    // Who wrote each (key, value).
    let mut writer: HashMap<(V, V), (usize, usize)> = HashMap::new();
    let mut failed_writer: HashMap<(V, V), usize> = HashMap::new();
    let mut last_write_pos: HashMap<(usize, V), usize> = HashMap::new();
    for (t, txn) in txns.iter().enumerate() {
        for (i, m) in txn.mops.iter().enumerate() {
            if let Mop::Write(k, v) = m {
                if txn.status == OpType::Fail {
                    failed_writer.insert((*k, *v), t);
                } else {
                    writer.insert((*k, *v), (t, i));
                }
                last_write_pos.insert((t, *k), i);
            }
        }
    }
    let is_intermediate = |k: V, v: V| -> Option<usize> {
        let &(t, i) = writer.get(&(k, v))?;
        (last_write_pos.get(&(t, k)).copied().unwrap_or(i) > i).then_some(t)
    };
    let op_edn = |t: usize| txns[t].op.to_edn();

    // Per-read checks and internal consistency.
    for (t, txn) in txns
        .iter()
        .enumerate()
        .filter(|(_, x)| x.status == OpType::Ok)
    {
        let mut state: HashMap<V, (Option<Vec<V>>, Vec<V>)> = HashMap::new();
        for m in &txn.mops {
            match m {
                Mop::Write(k, v) => state.entry(*k).or_insert((None, vec![])).1.push(*v),
                Mop::Read(k, read) => {
                    let observed: Vec<V> = match read {
                        Read::List(l) => l.clone(),
                        Read::Reg(v) => v.iter().copied().collect(),
                        Read::Unknown => continue,
                    };
                    let mut seen = HashSet::new();
                    for v in &observed {
                        if kind == TxnKind::ListAppend && !seen.insert(*v) {
                            note(&mut found, "duplicate-elements", || {
                                map([
                                    ("op", op_edn(t)),
                                    ("key", Edn::Str(names.show(*k))),
                                    ("element", Edn::Str(names.show(*v))),
                                ])
                            });
                        }
                        if !writer.contains_key(&(*k, *v)) && !failed_writer.contains_key(&(*k, *v))
                        {
                            note(&mut found, "garbage-read", || {
                                map([
                                    ("op", op_edn(t)),
                                    ("key", Edn::Str(names.show(*k))),
                                    ("value", Edn::Str(names.show(*v))),
                                ])
                            });
                        }
                        if let Some(&w) = failed_writer.get(&(*k, *v)) {
                            note(&mut found, "G1a", || {
                                map([
                                    ("op", op_edn(t)),
                                    ("writer", op_edn(w)),
                                    ("key", Edn::Str(names.show(*k))),
                                    ("element", Edn::Str(names.show(*v))),
                                ])
                            });
                        }
                    }
                    if let Some(&last) = observed.last()
                        && let Some(w) = is_intermediate(*k, last)
                        && w != t
                    {
                        note(&mut found, "G1b", || {
                            map([
                                ("op", op_edn(t)),
                                ("writer", op_edn(w)),
                                ("key", Edn::Str(names.show(*k))),
                                ("value", Edn::Str(names.show(last))),
                            ])
                        });
                    }
                    let (known, since) = state.entry(*k).or_insert((None, vec![]));
                    let consistent = match (kind, &*known) {
                        (TxnKind::ListAppend, Some(before)) => {
                            observed.len() == before.len() + since.len()
                                && observed.starts_with(before)
                                && observed.ends_with(since)
                        }
                        (TxnKind::ListAppend, None) => observed.ends_with(since),
                        (TxnKind::RwRegister, _) if !since.is_empty() => {
                            observed.last() == since.last()
                        }
                        (TxnKind::RwRegister, Some(before)) => &observed == before,
                        (TxnKind::RwRegister, None) => true,
                    };
                    if !consistent {
                        note(&mut found, "internal", || {
                            map([("op", op_edn(t)), ("key", Edn::Str(names.show(*k)))])
                        });
                    }
                    *known = Some(observed);
                    since.clear();
                }
            }
        }
    }

    // Version orders, and the graph.
    let n = txns.len();
    let mut g = Graph::new(n);
    let vertex = |t: usize| txns[t].status != OpType::Fail;
    // Reads by key: (reader, version observed: last element / value, or None for the initial state).
    let mut reads: HashMap<V, Vec<(usize, Option<V>, usize)>> = HashMap::new();
    for (t, txn) in txns
        .iter()
        .enumerate()
        .filter(|(_, x)| x.status == OpType::Ok)
    {
        for m in &txn.mops {
            if let Mop::Read(k, r) = m {
                let (version, len) = match r {
                    Read::List(l) => (l.last().copied(), l.len()),
                    Read::Reg(v) => (*v, 0),
                    Read::Unknown => continue,
                };
                reads.entry(*k).or_default().push((t, version, len));
            }
        }
    }
    // Each key's known order: pairs (a, b) meaning a < b (a = None is the initial state).
    let mut pairs: HashMap<V, Vec<(Option<V>, V)>> = HashMap::new();
    match kind {
        TxnKind::ListAppend => {
            let mut longest: HashMap<V, (usize, Vec<V>)> = HashMap::new();
            for (t, txn) in txns
                .iter()
                .enumerate()
                .filter(|(_, x)| x.status == OpType::Ok)
            {
                for m in &txn.mops {
                    if let Mop::Read(k, Read::List(l)) = m {
                        let e = longest.entry(*k).or_insert((t, vec![]));
                        if l.len() > e.1.len() {
                            *e = (t, l.clone());
                        }
                    }
                }
            }
            for (t, txn) in txns
                .iter()
                .enumerate()
                .filter(|(_, x)| x.status == OpType::Ok)
            {
                for m in &txn.mops {
                    if let Mop::Read(k, Read::List(l)) = m {
                        let (lt, long) = &longest[k];
                        if !long.starts_with(l) {
                            note(&mut found, "incompatible-order", || {
                                map([
                                    ("key", Edn::Str(names.show(*k))),
                                    ("values", Edn::Vector(vec![op_edn(t), op_edn(*lt)])),
                                ])
                            });
                        }
                    }
                }
            }
            for (k, (_, long)) in &longest {
                let mut prev: Option<V> = None;
                for v in long {
                    pairs.entry(*k).or_default().push((prev, *v));
                    // A committed append right after a failed one built on a version that never was.
                    if let Some(a) = prev
                        && let Some(&fw) = failed_writer.get(&(*k, a))
                        && let Some(&(w, _)) = writer.get(&(*k, *v))
                        && txns[w].status == OpType::Ok
                    {
                        note(&mut found, "dirty-update", || {
                            map([
                                ("key", Edn::Str(names.show(*k))),
                                (
                                    "values",
                                    Edn::Vector(vec![
                                        Edn::Str(names.show(a)),
                                        Edn::Str(names.show(*v)),
                                    ]),
                                ),
                                ("failed", op_edn(fw)),
                                ("op", op_edn(w)),
                            ])
                        });
                    }
                    prev = Some(*v);
                }
            }
            // Committed appends no read shows. Every version is a prefix of the key's final
            // list, so such an append comes after the whole longest read: after its last
            // element (ww) and after every read of that version (rw), the initial state
            // included. Without this, write skew on keys nobody reads back goes unseen.
            let read_back: HashSet<(V, V)> = longest
                .iter()
                .flat_map(|(k, (_, long))| long.iter().map(move |v| (*k, *v)))
                .collect();
            let mut unread: Vec<(V, V)> = writer
                .iter()
                .filter(|(kv, (t, _))| {
                    txns[*t].status == OpType::Ok
                        && longest.contains_key(&kv.0)
                        && !read_back.contains(kv)
                })
                .map(|(kv, _)| *kv)
                .collect();
            unread.sort_unstable();
            for (k, v) in unread {
                let last = longest[&k].1.last().copied();
                pairs.entry(k).or_default().push((last, v));
            }
        }
        TxnKind::RwRegister => {
            for txn in txns.iter().filter(|x| x.status != OpType::Fail) {
                let mut read_before: HashMap<V, Option<V>> = HashMap::new();
                for m in &txn.mops {
                    match m {
                        Mop::Read(k, Read::Reg(v)) => {
                            read_before.insert(*k, *v);
                        }
                        Mop::Write(k, v) => {
                            if let Some(a) = read_before.remove(k) {
                                pairs.entry(*k).or_default().push((a, *v));
                            } else {
                                pairs.entry(*k).or_default().push((None, *v));
                            }
                            read_before.insert(*k, Some(*v));
                        }
                        _ => {}
                    }
                }
            }
            // Final-read inference (§2.c): converged final reads name the last version.
            let mut finals: HashMap<V, BTreeSet<Option<V>>> = HashMap::new();
            for txn in txns.iter().filter(|x| x.status == OpType::Ok && x.is_final) {
                for m in &txn.mops {
                    if let Mop::Read(k, Read::Reg(v)) = m {
                        finals.entry(*k).or_default().insert(*v);
                    }
                }
            }
            let mut versions: HashMap<V, BTreeSet<V>> = HashMap::new();
            for (k, v) in writer.keys() {
                versions.entry(*k).or_default().insert(*v);
            }
            for (k, seen) in &finals {
                if let (1, Some(Some(last))) = (seen.len(), seen.iter().next())
                    && writer.contains_key(&(*k, *last))
                {
                    for other in versions.get(k).into_iter().flatten().filter(|v| *v != last) {
                        pairs.entry(*k).or_default().push((Some(*other), *last));
                    }
                }
            }
            // A cycle in a key's version order.
            for (k, ps) in &pairs {
                if let Some(cycle) = version_cycle(ps) {
                    note(&mut found, "cyclic-versions", || {
                        map([
                            ("key", Edn::Str(names.show(*k))),
                            (
                                "cycle",
                                Edn::Vector(
                                    cycle.iter().map(|v| Edn::Str(names.show(*v))).collect(),
                                ),
                            ),
                        ])
                    });
                }
                for (a, b) in ps {
                    if let (Some(a), Some(&fw), Some(&(w, _))) = (
                        a,
                        a.and_then(|a| failed_writer.get(&(*k, a))),
                        writer.get(&(*k, *b)),
                    ) && txns[w].status == OpType::Ok
                    {
                        note(&mut found, "dirty-update", || {
                            map([
                                ("key", Edn::Str(names.show(*k))),
                                (
                                    "values",
                                    Edn::Vector(vec![
                                        Edn::Str(names.show(*a)),
                                        Edn::Str(names.show(*b)),
                                    ]),
                                ),
                                ("failed", op_edn(fw)),
                                ("op", op_edn(w)),
                            ])
                        });
                    }
                }
            }
        }
    }
    // Lost update: two committed transactions read the same version of a key, then both wrote it.
    let mut read_then_wrote: HashMap<(V, Option<V>), Vec<usize>> = HashMap::new();
    for (t, txn) in txns
        .iter()
        .enumerate()
        .filter(|(_, x)| x.status == OpType::Ok)
    {
        let mut first_read: HashMap<V, Option<V>> = HashMap::new();
        let mut wrote: HashSet<V> = HashSet::new();
        for m in &txn.mops {
            match m {
                Mop::Read(k, r) if !wrote.contains(k) && !first_read.contains_key(k) => {
                    let version = match r {
                        Read::List(l) => l.last().copied(),
                        Read::Reg(v) => *v,
                        Read::Unknown => continue,
                    };
                    first_read.insert(*k, version);
                }
                Mop::Write(k, _) => {
                    if wrote.insert(*k)
                        && let Some(version) = first_read.get(k)
                    {
                        read_then_wrote.entry((*k, *version)).or_default().push(t);
                    }
                }
                _ => {}
            }
        }
    }
    for ((k, version), ts) in &read_then_wrote {
        if ts.len() > 1 {
            note(&mut found, "lost-update", || {
                map([
                    ("key", Edn::Str(names.show(*k))),
                    (
                        "value",
                        version.map_or(Edn::Nil, |v| Edn::Str(names.show(v))),
                    ),
                    (
                        "txns",
                        Edn::Vector(ts.iter().take(4).map(|t| op_edn(*t)).collect()),
                    ),
                ])
            });
        }
    }

    // Edges. ww and rw from the known pairs; wr from every read.
    let writer_of = |k: V, v: V| writer.get(&(k, v)).map(|(t, _)| *t);
    let mut readers: HashMap<(V, Option<V>), Vec<usize>> = HashMap::new();
    for (k, rs) in &reads {
        for (t, version, _) in rs {
            readers.entry((*k, *version)).or_default().push(*t);
            if let Some(v) = version
                && let Some(w) = writer_of(*k, *v)
            {
                g.add(
                    w,
                    *t,
                    WR,
                    Why {
                        key: *k,
                        a: Some(*v),
                        b: None,
                    },
                );
            }
        }
    }
    for (k, ps) in &pairs {
        for (a, b) in ps {
            let Some(wb) = writer_of(*k, *b) else {
                continue;
            };
            if let Some(a) = a
                && let Some(wa) = writer_of(*k, *a)
            {
                g.add(
                    wa,
                    wb,
                    WW,
                    Why {
                        key: *k,
                        a: Some(*a),
                        b: Some(*b),
                    },
                );
            }
            for r in readers.get(&(*k, *a)).into_iter().flatten() {
                g.add(
                    *r,
                    wb,
                    RW,
                    Why {
                        key: *k,
                        a: *a,
                        b: Some(*b),
                    },
                );
            }
        }
    }
    // Process order, between the committed transactions of each process.
    let mut by_process: HashMap<u64, usize> = HashMap::new();
    let mut order: Vec<usize> = (0..n).filter(|t| txns[*t].status == OpType::Ok).collect();
    order.sort_by_key(|t| txns[*t].inv_time);
    for &t in &order {
        if let Some(prev) = by_process.insert(txns[t].process, t) {
            g.add(
                prev,
                t,
                PROCESS,
                Why {
                    key: 0,
                    a: None,
                    b: None,
                },
            );
        }
    }
    // Real-time order, transitively reduced: each invocation follows the current frontier of
    // completed transactions, and a completion replaces its own predecessors in the frontier.
    let mut events: Vec<(u64, bool, usize)> = order
        .iter()
        .flat_map(|&t| [(txns[t].inv_time, false, t), (txns[t].done_time, true, t)])
        .collect();
    events.sort_by_key(|&(time, done, t)| (time, done, t));
    let mut frontier: Vec<usize> = Vec::new();
    let mut preds: HashMap<usize, Vec<usize>> = HashMap::new();
    for (_, done, t) in events {
        if done {
            let before = preds.remove(&t).unwrap_or_default();
            frontier.retain(|f| !before.contains(f));
            frontier.push(t);
        } else {
            for &f in &frontier {
                g.add(
                    f,
                    t,
                    REALTIME,
                    Why {
                        key: 0,
                        a: None,
                        b: None,
                    },
                );
            }
            preds.insert(t, frontier.clone());
        }
    }

    // Cycles.
    let mut timed_out = false;
    let sccs = tarjan(&g, &|t| vertex(t), ALL_KINDS);
    let mut cycles: BTreeMap<String, Vec<Cycle>> = BTreeMap::new();
    // De-duplicated per class: the same transactions can form a weaker cycle through plain
    // edges and a stronger one through process or realtime edges, and both must be reported.
    let mut seen_cycles: HashSet<(String, Vec<usize>)> = HashSet::new();
    for scc in &sccs {
        // Each component has the whole budget: a slow one must not silence the others.
        let component_start = Instant::now();
        let members: HashSet<usize> = scc.iter().copied().collect();
        'component: for extra in [0, PROCESS, PROCESS | REALTIME] {
            for class in [
                Class::G0,
                Class::G1c,
                Class::GSingle,
                Class::GNonadjacent,
                Class::G2Item,
            ] {
                // Only vertices on a cycle of the edges this class may use can start one.
                let allowed = class.kinds() | extra;
                let starts: Vec<usize> = if allowed & RW != 0 {
                    scc.clone()
                } else {
                    tarjan(&g, &|t| members.contains(&t), allowed)
                        .into_iter()
                        .flatten()
                        .collect()
                };
                let mut found_here = 0;
                for start in starts {
                    if component_start.elapsed() > ctx.timeout {
                        timed_out = true;
                        break 'component;
                    }
                    let Some(cycle) = find_cycle(&g, &members, start, class, extra) else {
                        continue;
                    };
                    let name = classify(&cycle);
                    let mut key: Vec<usize> = cycle.iter().map(|(v, _, _)| *v).collect();
                    key.sort_unstable();
                    if !seen_cycles.insert((name.clone(), key)) {
                        continue;
                    }
                    let list = cycles.entry(name).or_default();
                    if list.len() < EXAMPLES {
                        list.push(cycle);
                    }
                    found_here += 1;
                    if found_here >= EXAMPLES {
                        break;
                    }
                }
            }
        }
    }

    // Explanations and pictures.
    let mut anomalies: BTreeMap<String, Vec<Edn>> =
        found.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    for (name, list) in &cycles {
        let mut text = String::new();
        let mut examples = Vec::new();
        for (i, cycle) in list.iter().enumerate() {
            let _ = writeln!(text, "{}", explain(cycle, &txns, &g, &names, kind));
            if let Some(dir) = &ctx.dir {
                let d = dir.join("elle").join(name);
                if std::fs::create_dir_all(&d).is_ok() {
                    let _ = std::fs::write(
                        d.join(format!("{i}.svg")),
                        cycle_svg(name, cycle, &txns, &g),
                    );
                }
            }
            examples.push(map([
                ("type", kw(name)),
                (
                    "cycle",
                    Edn::Vector(cycle.iter().map(|(t, _, _)| txns[*t].op.to_edn()).collect()),
                ),
                (
                    "steps",
                    Edn::Vector(
                        cycle
                            .iter()
                            .map(|(_, kind, why)| step_edn(*kind, g.whys[*why as usize], &names))
                            .collect(),
                    ),
                ),
            ]));
        }
        if let Some(dir) = &ctx.dir {
            let _ = std::fs::create_dir_all(dir.join("elle"));
            let _ = std::fs::write(dir.join("elle").join(format!("{name}.txt")), text);
        }
        anomalies.insert(name.clone(), examples);
    }
    if timed_out {
        anomalies.entry("cycle-search-timeout".into()).or_default();
    }
    // As Elle: with no dependency, process or real-time edge at all, nothing could be
    // checked (no committed transaction, or none related to another), which alone makes the
    // verdict unknown.
    if g.edges.iter().all(Vec::is_empty) {
        anomalies
            .entry("empty-transaction-graph".into())
            .or_default();
    }
    verdict(anomalies, &ctx.consistency_models, kind)
}

/// Finds a cycle in a key's version order (rw-register), as a list of versions. Iterative, so
/// a long chain of versions cannot overflow the stack.
fn version_cycle(pairs: &[(Option<V>, V)]) -> Option<Vec<V>> {
    let mut next: HashMap<V, Vec<V>> = HashMap::new();
    for (a, b) in pairs {
        if let Some(a) = a {
            next.entry(*a).or_default().push(*b);
        }
    }
    // Colours: absent = unvisited, 1 = on the current path, 2 = done.
    let mut colour: HashMap<V, u8> = HashMap::new();
    let mut roots: Vec<V> = next.keys().copied().collect();
    roots.sort_unstable();
    for root in roots {
        if colour.contains_key(&root) {
            continue;
        }
        let mut path: Vec<(V, usize)> = vec![(root, 0)];
        colour.insert(root, 1);
        while let Some(&mut (v, ref mut i)) = path.last_mut() {
            let succ = next.get(&v).map_or(&[][..], Vec::as_slice);
            if let Some(&w) = succ.get(*i) {
                *i += 1;
                match colour.get(&w) {
                    Some(1) => {
                        let at = path.iter().position(|(x, _)| *x == w).unwrap_or(0);
                        return Some(path[at..].iter().map(|(x, _)| *x).collect());
                    }
                    Some(_) => {}
                    None => {
                        colour.insert(w, 1);
                        path.push((w, 0));
                    }
                }
            } else {
                colour.insert(v, 2);
                path.pop();
            }
        }
    }
    None
}

/// Strongly connected components with more than one vertex (Tarjan, iterative), over the
/// included vertices and the edges of the `kinds` given.
fn tarjan(g: &Graph, include: &dyn Fn(usize) -> bool, kinds: u8) -> Vec<Vec<usize>> {
    let n = g.edges.len();
    let (mut index, mut low, mut on_stack) = (vec![usize::MAX; n], vec![0usize; n], vec![false; n]);
    let (mut stack, mut out, mut counter) = (Vec::new(), Vec::new(), 0usize);
    for root in 0..n {
        if index[root] != usize::MAX || !include(root) {
            continue;
        }
        let mut work: Vec<(usize, usize)> = vec![(root, 0)];
        while let Some((v, i)) = work.pop() {
            if i == 0 {
                index[v] = counter;
                low[v] = counter;
                counter += 1;
                stack.push(v);
                on_stack[v] = true;
            }
            let mut descended = false;
            let mut j = i;
            while j < g.edges[v].len() {
                let (w, kind, _) = g.edges[v][j];
                j += 1;
                if !include(w) || kind & kinds == 0 {
                    continue;
                }
                if index[w] == usize::MAX {
                    work.push((v, j));
                    work.push((w, 0));
                    descended = true;
                    break;
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
            }
            if descended {
                continue;
            }
            if low[v] == index[v] {
                let mut comp = Vec::new();
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    comp.push(w);
                    if w == v {
                        break;
                    }
                }
                if comp.len() > 1 {
                    comp.sort_unstable();
                    out.push(comp);
                }
            }
            if let Some(&(parent, _)) = work.last() {
                low[parent] = low[parent].min(low[v]);
            }
        }
    }
    out
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Class {
    G0,
    G1c,
    GSingle,
    GNonadjacent,
    G2Item,
}

impl Class {
    /// The dependency edges a cycle of this class may use.
    fn kinds(self) -> u8 {
        match self {
            Class::G0 => WW,
            Class::G1c => WW | WR,
            _ => WW | WR | RW,
        }
    }
}

/// The shortest cycle through `start` of the given class, using ww/wr/rw edges as the class
/// allows plus the `extra` kinds (process, realtime) as plain dependencies. Breadth-first over
/// states (vertex, rw count capped at 2, whether the last edge was rw, whether the first was).
fn find_cycle(
    g: &Graph,
    members: &HashSet<usize>,
    start: usize,
    class: Class,
    extra: u8,
) -> Option<Cycle> {
    let allowed = extra | class.kinds();
    type State = (usize, u8, bool, bool);
    let mut parent: HashMap<State, (State, u8, u32)> = HashMap::new();
    let mut queue: VecDeque<(State, bool)> = VecDeque::new();
    queue.push_back(((start, 0, false, false), true));
    let mut visited: HashSet<State> = HashSet::new();
    while let Some((state, first)) = queue.pop_front() {
        let (v, rws, last_rw, first_rw) = state;
        for &(w, kind, why) in &g.edges[v] {
            if kind & allowed == 0 || !members.contains(&w) {
                continue;
            }
            let is_rw = kind == RW;
            if is_rw
                && ((class == Class::GSingle && rws >= 1)
                    || (class == Class::GNonadjacent && last_rw))
            {
                continue;
            }
            let next: State = (
                w,
                (rws + u8::from(is_rw)).min(2),
                is_rw,
                if first { is_rw } else { first_rw },
            );
            if w == start {
                let ok = match class {
                    Class::G0 | Class::G1c => next.1 == 0,
                    Class::GSingle => next.1 == 1,
                    Class::GNonadjacent => next.1 >= 2 && !(next.2 && next.3),
                    Class::G2Item => next.1 >= 1,
                };
                if ok {
                    let mut path = vec![(v, kind, why)];
                    let mut s = state;
                    while let Some(&(prev, k, y)) = parent.get(&s) {
                        path.push((prev.0, k, y));
                        s = prev;
                    }
                    path.reverse();
                    // path[i] = (vertex, kind of the edge leaving it, why). States repeat
                    // vertices with different rw counts; only a simple cycle is an example.
                    let mut vs: Vec<usize> = path.iter().map(|p| p.0).collect();
                    vs.sort_unstable();
                    vs.dedup();
                    if vs.len() == path.len() {
                        return Some(path);
                    }
                    continue;
                }
                continue;
            }
            if visited.insert(next) {
                parent.insert(next, (state, kind, why));
                queue.push_back((next, false));
            }
        }
    }
    None
}

/// Names a cycle by its own edges.
fn classify(cycle: &[(usize, u8, u32)]) -> String {
    let kinds: Vec<u8> = cycle.iter().map(|(_, k, _)| *k).collect();
    let rw = kinds.iter().filter(|k| **k == RW).count();
    let adjacent_rw =
        (0..kinds.len()).any(|i| kinds[i] == RW && kinds[(i + 1) % kinds.len()] == RW);
    let base = if rw == 0 {
        if kinds.contains(&WR) { "G1c" } else { "G0" }
    } else if rw == 1 {
        "G-single"
    } else if !adjacent_rw {
        "G-nonadjacent"
    } else {
        "G2-item"
    };
    let suffix = if kinds.contains(&REALTIME) {
        "-realtime"
    } else if kinds.contains(&PROCESS) {
        "-process"
    } else {
        ""
    };
    format!("{base}{suffix}")
}

fn kind_name(kind: u8) -> &'static str {
    match kind {
        WW => "ww",
        WR => "wr",
        RW => "rw",
        PROCESS => "process",
        _ => "realtime",
    }
}

fn step_edn(kind: u8, why: Why, names: &Interner) -> Edn {
    let mut m = map([("type", kw(kind_name(kind)))]);
    if kind & (WW | WR | RW) != 0 {
        m.push("key", Edn::Str(names.show(why.key)));
        m.push("value", why.a.map_or(Edn::Nil, |v| Edn::Str(names.show(v))));
        if let Some(b) = why.b {
            m.push("value'", Edn::Str(names.show(b)));
        }
    }
    m
}

/// A cycle in words: the transactions, then why each precedes the next.
fn explain(
    cycle: &[(usize, u8, u32)],
    txns: &[Txn],
    g: &Graph,
    names: &Interner,
    kind: TxnKind,
) -> String {
    let label = |i: usize| format!("T{}", i + 1);
    let mut s = format!("{}:\n", classify(cycle));
    for (i, (t, _, _)) in cycle.iter().enumerate() {
        let _ = writeln!(s, "  {} = {}", label(i), txns[*t].op.to_edn());
    }
    let wrote = if kind == TxnKind::ListAppend {
        "appended"
    } else {
        "wrote"
    };
    for (i, (_, k, why)) in cycle.iter().enumerate() {
        let (a, b) = (label(i), label((i + 1) % cycle.len()));
        let w = g.whys[*why as usize];
        let key = names.show(w.key);
        let va = w.a.map_or("nil".to_string(), |v| names.show(v));
        let vb = w.b.map_or("nil".to_string(), |v| names.show(v));
        let _ = match *k {
            WW => writeln!(
                s,
                "  {a} < {b} (ww): {a} {wrote} {va} to key {key}, and {b} {wrote} {vb} after it."
            ),
            WR => writeln!(
                s,
                "  {a} < {b} (wr): {b} observed {a}'s {wrote} {va} to key {key}."
            ),
            RW => writeln!(
                s,
                "  {a} < {b} (rw): {a} read key {key} at version {va}, and {b} {wrote} the later version {vb}."
            ),
            PROCESS => writeln!(
                s,
                "  {a} < {b} (process): the same process ran {a}, then {b}."
            ),
            _ => writeln!(
                s,
                "  {a} < {b} (realtime): {a} completed before {b} was invoked."
            ),
        };
    }
    let _ = writeln!(s, "  So {} < {}: a cycle.", label(0), label(0));
    s
}

/// The cycle drawn: transactions on a circle, labelled arrows between them.
fn cycle_svg(name: &str, cycle: &[(usize, u8, u32)], txns: &[Txn<'_>], g: &Graph) -> String {
    let n = cycle.len() as f64;
    let (cx, cy, r) = (320.0, 300.0, 200.0);
    let pos = |i: usize| {
        let a = std::f64::consts::TAU * i as f64 / n - std::f64::consts::FRAC_PI_2;
        (cx + r * a.cos(), cy + r * a.sin())
    };
    let mut s = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="640" height="620" font-family="sans-serif" font-size="12"><defs><marker id="a" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" orient="auto"><path d="M0 0L10 5L0 10z"/></marker></defs><rect width="100%" height="100%" fill="white"/><text x="10" y="20" font-size="16">{name}</text>"##
    );
    for (i, (_, kind, why)) in cycle.iter().enumerate() {
        let ((x1, y1), (x2, y2)) = (pos(i), pos((i + 1) % cycle.len()));
        let (dx, dy) = (x2 - x1, y2 - y1);
        let len = (dx * dx + dy * dy).sqrt().max(1.0);
        let (ux, uy) = (dx / len, dy / len);
        let colour = if *kind == RW { "#FF1E90" } else { "#333" };
        let w = g.whys[*why as usize];
        let label = match *kind {
            WW | WR | RW => format!("{} k{}", kind_name(*kind), w.key),
            k => kind_name(k).to_string(),
        };
        let _ = write!(
            s,
            r#"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{colour}" stroke-width="2" marker-end="url(#a)"/><text x="{:.1}" y="{:.1}" fill="{colour}">{label}</text>"#,
            x1 + ux * 34.0,
            y1 + uy * 34.0,
            x2 - ux * 34.0,
            y2 - uy * 34.0,
            (x1 + x2) / 2.0 + uy * 14.0,
            (y1 + y2) / 2.0 - ux * 14.0
        );
    }
    for (i, (t, _, _)) in cycle.iter().enumerate() {
        let (x, y) = pos(i);
        let op = &txns[*t].op;
        let _ = write!(
            s,
            r##"<circle cx="{x:.1}" cy="{y:.1}" r="30" fill="#81BFFC"><title>{}</title></circle><text x="{x:.1}" y="{:.1}" text-anchor="middle">T{} (#{})</text>"##,
            crate::plots::html_escape(&op.to_edn().to_string()),
            y + 4.0,
            i + 1,
            op.index
        );
    }
    s.push_str("</svg>\n");
    s
}

/// What each consistency model prohibits (spec §10.4).
fn prohibited(model: &str) -> Option<BTreeSet<&'static str>> {
    let rc = ["G0", "G1a", "G1b", "G1c", "dirty-update"];
    let cs: Vec<&str> = rc.iter().copied().chain(["lost-update"]).collect();
    // Snapshot isolation allows only cycles with two adjacent rw edges (Cerone and Gotsman),
    // so it prohibits G-nonadjacent as well as G-single, as Elle's own tests expect.
    let si: Vec<&str> = cs
        .iter()
        .copied()
        .chain(["G-single", "G-nonadjacent"])
        .collect();
    let ser: Vec<&str> = si.iter().copied().chain(["G2-item"]).collect();
    let process = |base: &[&'static str]| -> Vec<&'static str> {
        base.iter()
            .copied()
            .chain(
                [
                    "G0-process",
                    "G1c-process",
                    "G-single-process",
                    "G-nonadjacent-process",
                    "G2-item-process",
                ]
                .into_iter()
                .filter(|a| base.contains(&a.trim_end_matches("-process"))),
            )
            .collect()
    };
    let realtime = |base: &[&'static str]| -> Vec<&'static str> {
        base.iter()
            .copied()
            .chain(
                [
                    "G0-realtime",
                    "G1c-realtime",
                    "G-single-realtime",
                    "G-nonadjacent-realtime",
                    "G2-item-realtime",
                ]
                .into_iter()
                .filter(|a| base.contains(&a.trim_end_matches("-realtime"))),
            )
            .collect()
    };
    let set: Vec<&'static str> = match model {
        "read-uncommitted" => vec!["G0"],
        "read-committed" => rc.to_vec(),
        "cursor-stability" => cs,
        "snapshot-isolation" => si,
        "repeatable-read" | "serializable" => ser,
        "strong-session-snapshot-isolation" => process(&si),
        "strong-session-serializable" => process(&ser),
        "strong-snapshot-isolation" => realtime(&process(&si)),
        "strict-serializable" | "strong-serializable" => realtime(&process(&ser)),
        _ => return None,
    };
    Some(set.into_iter().collect())
}

/// Every model name `--consistency-models` accepts.
pub const MODELS: [&str; 11] = [
    "read-uncommitted",
    "read-committed",
    "cursor-stability",
    "snapshot-isolation",
    "repeatable-read",
    "serializable",
    "strong-session-snapshot-isolation",
    "strong-session-serializable",
    "strong-snapshot-isolation",
    "strict-serializable",
    "strong-serializable",
];

/// Each model with the models directly weaker than it: a history that satisfies a model
/// satisfies every weaker one. This is Elle's hierarchy (after jepsen.io/consistency), not
/// inclusion of prohibited sets: repeatable read and snapshot isolation are incomparable, so
/// a G-single history is `:not` both, and write skew is `:not` repeatable read alone.
const WEAKER: [(&str, &[&str]); 10] = [
    ("read-committed", &["read-uncommitted"]),
    ("cursor-stability", &["read-committed"]),
    ("snapshot-isolation", &["cursor-stability"]),
    ("repeatable-read", &["cursor-stability"]),
    ("serializable", &["repeatable-read", "snapshot-isolation"]),
    ("strong-session-snapshot-isolation", &["snapshot-isolation"]),
    (
        "strong-session-serializable",
        &["serializable", "strong-session-snapshot-isolation"],
    ),
    (
        "strong-snapshot-isolation",
        &["strong-session-snapshot-isolation"],
    ),
    (
        "strict-serializable",
        &["strong-session-serializable", "strong-snapshot-isolation"],
    ),
    (
        "strong-serializable",
        &["strong-session-serializable", "strong-snapshot-isolation"],
    ),
];

/// Whether model `a` is (transitively) weaker than model `b`.
fn is_weaker(a: &str, b: &str) -> bool {
    let direct = |m: &str| -> &[&str] {
        WEAKER
            .iter()
            .find(|(n, _)| *n == m)
            .map_or(&[], |(_, w)| *w)
    };
    let mut todo: Vec<&str> = direct(b).to_vec();
    while let Some(m) = todo.pop() {
        if m == a {
            return true;
        }
        todo.extend_from_slice(direct(m));
    }
    false
}

/// Anomalies invalid under every model.
const ALWAYS_INVALID: [&str; 5] = [
    "internal",
    "garbage-read",
    "duplicate-elements",
    "incompatible-order",
    "cyclic-versions",
];

fn verdict(mut anomalies: BTreeMap<String, Vec<Edn>>, requested: &[String], kind: TxnKind) -> Edn {
    if kind == TxnKind::RwRegister {
        // As in the original: a cycle search that ran out of time says nothing about validity.
        anomalies.remove("cycle-search-timeout");
    }
    let types: BTreeSet<&str> = anomalies.keys().map(String::as_str).collect();
    let models: Vec<(&str, BTreeSet<&str>)> = MODELS
        .iter()
        .filter_map(|m| prohibited(m).map(|p| (*m, p)))
        .collect();
    // Anomalies invalid under every model count as prohibited by every model.
    let always = types.iter().any(|t| ALWAYS_INVALID.contains(t));
    let violated: Vec<&(&str, BTreeSet<&str>)> = models
        .iter()
        .filter(|(_, p)| always || p.iter().any(|a| types.contains(a)))
        .collect();
    let (mut not, mut also_not) = (vec![], vec![]);
    for (m, _) in &violated {
        if violated.iter().any(|(w, _)| is_weaker(w, m)) {
            also_not.push(kw(m));
        } else {
            not.push(kw(m));
        }
    }
    let requested_violated = requested
        .iter()
        .any(|r| violated.iter().any(|(m, _)| m == r));
    let valid = if requested_violated || always {
        Edn::Bool(false)
    } else if types.contains("cycle-search-timeout") || types.contains("empty-transaction-graph") {
        kw("unknown")
    } else {
        Edn::Bool(true)
    };
    map([
        ("valid?", valid),
        (
            "anomaly-types",
            Edn::Vector(types.iter().map(|t| kw(t)).collect()),
        ),
        (
            "anomalies",
            Edn::Map(
                anomalies
                    .into_iter()
                    .map(|(k, v)| (kw(&k), Edn::Vector(v)))
                    .collect(),
            ),
        ),
        ("not", Edn::Set(not)),
        ("also-not", Edn::Set(also_not)),
    ])
}
