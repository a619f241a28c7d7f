//! Linearizability (spec §10.3): the Wing–Gong search with Lowe's memoisation, as in Porcupine,
//! over a register or cas-register with Knossos's semantics, with a time and memory budget
//! that ends in `:unknown` instead of a crash.
//!
//! Preparation: `:fail` ops did not happen and are dropped; `:info` ops may have happened, so
//! their return moves after every other event; `:info` reads are dropped; `:ok` reads take the
//! completion's value.

use crate::edn::{Edn, kw, map};
use crate::history::{Op, OpType, Process};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// Register value: `None` is nil.
pub type Value = Option<Edn>;

/// A register operation.
#[derive(Clone, Debug, PartialEq)]
pub enum RegOp {
    /// Read, with the value read (nil reads match any state).
    Read(Value),
    /// Write a value.
    Write(Edn),
    /// Compare-and-set.
    Cas(Edn, Edn),
}

/// The models `check --model` accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Model {
    /// read, write, cas.
    CasRegister,
    /// read, write.
    Register,
}

/// A register state during the search: an interned value, `None` for nil.
type State = Option<u32>;

/// A register operation over interned values.
#[derive(Clone, Copy, Debug, PartialEq)]
enum IdOp {
    Read(State),
    Write(State),
    Cas(State, State),
}

impl Model {
    /// One step: the new state, or `None` when the op is not legal in `state`.
    fn step(self, state: State, op: IdOp) -> Option<State> {
        match op {
            IdOp::Read(None) => Some(state),
            IdOp::Read(Some(v)) => (state == Some(v)).then_some(state),
            IdOp::Write(v) => Some(v),
            IdOp::Cas(from, to) => (self == Model::CasRegister && state == from).then_some(to),
        }
    }
}

/// Interns register values (compared by their EDN text, so `1` and `1.0` differ).
#[derive(Default)]
struct Values {
    ids: HashMap<String, u32>,
    all: Vec<Edn>,
}

impl Values {
    fn id(&mut self, v: &Edn) -> u32 {
        let next = self.all.len() as u32;
        let id = *self.ids.entry(v.to_string()).or_insert(next);
        if id == next {
            self.all.push(v.clone());
        }
        id
    }

    /// An interned state: nil is `None`, as the register's initial state is.
    fn state(&mut self, v: &Edn) -> State {
        if *v == Edn::Nil {
            None
        } else {
            Some(self.id(v))
        }
    }

    fn op(&mut self, op: &RegOp) -> IdOp {
        match op {
            RegOp::Read(v) => IdOp::Read(v.as_ref().map(|v| self.id(v))),
            RegOp::Write(v) => IdOp::Write(self.state(v)),
            RegOp::Cas(a, b) => IdOp::Cas(self.state(a), self.state(b)),
        }
    }

    fn value(&self, s: State) -> Value {
        s.map(|i| self.all[i as usize].clone())
    }
}

/// Search limits.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    /// Wall time for one register.
    pub time: Duration,
    /// Bytes of memoisation cache for one register.
    pub memory: usize,
}

/// One operation prepared for the search.
#[derive(Clone, Debug)]
struct Call {
    op: IdOp,
    /// The op as recorded (for reports).
    source: Op,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    call: usize,
    is_return: bool,
    /// For a call entry: the index of its return entry.
    partner: usize,
    prev: usize,
    next: usize,
}

const NIL: usize = usize::MAX;

/// Turns a register's history into calls with invocation and return times; `parse` reads an
/// op's `:value` into a register operation (`None` skips the op).
fn prepare(
    ops: &[Op],
    parse: &dyn Fn(&Op, &Edn) -> Option<RegOp>,
    values: &mut Values,
) -> Vec<(Call, u64, u64)> {
    let mut open: HashMap<u64, (usize, &Op)> = HashMap::new();
    let mut out: Vec<Option<(Call, u64, u64)>> = Vec::new();
    let end = ops.iter().map(|o| o.time).max().unwrap_or(0) + 1;
    for op in ops {
        let Process::Client(p) = op.process else {
            continue;
        };
        match op.op_type {
            OpType::Invoke => {
                open.insert(p, (out.len(), op));
                out.push(None);
            }
            t => {
                let Some((slot, inv)) = open.remove(&p) else {
                    continue;
                };
                let value = if t == OpType::Ok {
                    &op.value
                } else {
                    &inv.value
                };
                let reg = match parse(inv, value) {
                    Some(r) => r,
                    None => continue,
                };
                match t {
                    OpType::Ok => {
                        out[slot] = Some((
                            Call {
                                op: values.op(&reg),
                                source: op.clone(),
                            },
                            inv.time,
                            op.time,
                        ))
                    }
                    OpType::Info if !matches!(reg, RegOp::Read(_)) => {
                        out[slot] = Some((
                            Call {
                                op: values.op(&reg),
                                source: op.clone(),
                            },
                            inv.time,
                            end,
                        ))
                    }
                    _ => {}
                }
            }
        }
    }
    // Invocations never completed are indeterminate, like :info.
    for (slot, inv) in open.into_values() {
        if let Some(reg) = parse(inv, &inv.value).filter(|r| !matches!(r, RegOp::Read(_))) {
            out[slot] = Some((
                Call {
                    op: values.op(&reg),
                    source: inv.clone(),
                },
                inv.time,
                end,
            ));
        }
    }
    out.into_iter().flatten().collect()
}

/// Outcome of checking one register.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// A linearization exists.
    Linearizable,
    /// None exists: the op that could not be linearized, the last `:ok` op before it in
    /// the history (Knossos's `:previous-ok`), the deepest linearized prefix (op, state
    /// after it), and the states reachable at that depth.
    NotLinearizable {
        op: Op,
        previous_ok: Option<Box<Op>>,
        prefix: Vec<(Op, Value)>,
        configs: Vec<Value>,
    },
    /// The budget ran out.
    Unknown(&'static str),
}

/// Checks one register. `initial` is the starting state.
pub fn check(
    ops: &[Op],
    model: Model,
    initial: Value,
    parse: &dyn Fn(&Op, &Edn) -> Option<RegOp>,
    budget: Budget,
) -> Outcome {
    search(ops, model, initial, parse, budget, true)
}

/// [`check`]; `shortcut` answers at once for a read of a value never written.
fn search(
    ops: &[Op],
    model: Model,
    initial: Value,
    parse: &dyn Fn(&Op, &Edn) -> Option<RegOp>,
    budget: Budget,
    shortcut: bool,
) -> Outcome {
    let mut values = Values::default();
    let initial: State = initial.as_ref().map(|v| values.id(v));
    let calls = prepare(ops, parse, &mut values);
    let n = calls.len();
    if n == 0 {
        return Outcome::Linearizable;
    }
    // A read of a value no operation ever wrote can never be linearized. The search cannot
    // get past the first such read to complete, so only the ops invoked before it returned
    // matter: a short search over them names where it gets stuck, which may be an earlier
    // op (as Knossos reports it). Should even that search run out of time, the read is the
    // answer: the history is invalid either way.
    if shortcut && let Some(read) = first_impossible_read(&calls, initial) {
        let window: Vec<Op> = ops
            .iter()
            .filter(|o| o.time <= read.time)
            .cloned()
            .collect();
        let short = Budget {
            time: budget.time.min(Duration::from_secs(1)),
            ..budget
        };
        let found = search(&window, model, values.value(initial), parse, short, false);
        if matches!(found, Outcome::NotLinearizable { .. }) {
            return found;
        }
        return Outcome::NotLinearizable {
            op: read.clone(),
            previous_ok: previous_ok(ops, read),
            prefix: vec![],
            configs: vec![],
        };
    }
    // Events sorted by time, calls before returns on ties.
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * n);
    for (i, (_, inv, ret)) in calls.iter().enumerate() {
        events.push((*inv, false, i));
        events.push((*ret, true, i));
    }
    events.sort_by_key(|&(t, is_return, i)| (t, is_return, i));
    let mut entries: Vec<Entry> = Vec::with_capacity(2 * n + 1);
    // Entry 0 is a sentinel head.
    entries.push(Entry {
        call: NIL,
        is_return: false,
        partner: NIL,
        prev: NIL,
        next: 1,
    });
    let mut return_of = vec![0usize; n];
    for (k, &(_, is_return, call)) in events.iter().enumerate() {
        let idx = k + 1;
        entries.push(Entry {
            call,
            is_return,
            partner: NIL,
            prev: idx - 1,
            next: if k + 1 < events.len() { idx + 1 } else { NIL },
        });
        if is_return {
            return_of[call] = idx;
        }
    }
    for idx in 1..entries.len() {
        if !entries[idx].is_return {
            entries[idx].partner = return_of[entries[idx].call];
        }
    }
    let unlink = |entries: &mut Vec<Entry>, i: usize| {
        let (p, nx) = (entries[i].prev, entries[i].next);
        entries[p].next = nx;
        if nx != NIL {
            entries[nx].prev = p;
        }
    };
    let relink = |entries: &mut Vec<Entry>, i: usize| {
        let (p, nx) = (entries[i].prev, entries[i].next);
        entries[p].next = i;
        if nx != NIL {
            entries[nx].prev = i;
        }
    };

    let words = n.div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut cache: HashSet<(Vec<u64>, State)> = HashSet::new();
    let mut stack: Vec<(usize, State)> = Vec::new();
    let mut state = initial;
    let mut deepest: (usize, Vec<usize>, Option<usize>) = (0, vec![], None);
    let mut deepest_states: Vec<State> = vec![];
    let entry_bytes = words * 8 + 64;
    let started = Instant::now();
    let mut steps = 0u64;
    let mut cursor = entries[0].next;
    // Indeterminate (:info) ops may never have happened: once every other op is linearized,
    // the rest can be left out, so the search succeeds.
    let last_time = calls.iter().map(|c| c.2).max().unwrap_or(0);
    let indeterminate: Vec<bool> = calls
        .iter()
        .map(|c| c.2 == last_time && c.0.source.op_type != OpType::Ok)
        .collect();
    let mut required_left = indeterminate.iter().filter(|i| !**i).count();
    while required_left > 0 {
        steps += 1;
        if steps.is_multiple_of(4096) {
            if started.elapsed() > budget.time {
                return Outcome::Unknown("timeout");
            }
            if cache.len() * entry_bytes > budget.memory {
                return Outcome::Unknown("out-of-memory");
            }
        }
        // A return reached while its op is not linearized (or the end of the list): nothing
        // more can be tried at this depth, so undo the last linearized op and try the next.
        if cursor == NIL || entries[cursor].is_return {
            if cursor != NIL && stack.len() >= deepest.0 {
                if stack.len() > deepest.0 {
                    deepest_states.clear();
                }
                deepest = (
                    stack.len(),
                    stack.iter().map(|(ce, _)| entries[*ce].call).collect(),
                    Some(entries[cursor].call),
                );
                if deepest_states.len() < 10 && !deepest_states.contains(&state) {
                    deepest_states.push(state);
                }
            }
            let Some((call_entry, old)) = stack.pop() else {
                break;
            };
            state = old;
            let c = entries[call_entry].call;
            linearized[c / 64] &= !(1 << (c % 64));
            required_left += usize::from(!indeterminate[c]);
            let partner = entries[call_entry].partner;
            relink(&mut entries, partner);
            relink(&mut entries, call_entry);
            cursor = entries[call_entry].next;
            continue;
        }
        let e = entries[cursor];
        let c = e.call;
        if let Some(next_state) = model.step(state, calls[c].0.op) {
            linearized[c / 64] |= 1 << (c % 64);
            if cache.insert((linearized.clone(), next_state)) {
                required_left -= usize::from(!indeterminate[c]);
                stack.push((cursor, std::mem::replace(&mut state, next_state)));
                unlink(&mut entries, cursor);
                unlink(&mut entries, e.partner);
                cursor = entries[0].next;
                continue;
            }
            linearized[c / 64] &= !(1 << (c % 64));
        }
        cursor = e.next;
    }
    if required_left == 0 {
        return Outcome::Linearizable;
    }
    let (_, path, blocked) = deepest;
    let blocked = blocked.unwrap_or(0);
    let mut s = initial;
    let prefix = path
        .iter()
        .map(|&c| {
            s = model.step(s, calls[c].0.op).unwrap_or(None);
            (calls[c].0.source.clone(), values.value(s))
        })
        .collect();
    let configs = deepest_states
        .into_iter()
        .map(|s| values.value(s))
        .collect();
    let op = calls[blocked].0.source.clone();
    Outcome::NotLinearizable {
        previous_ok: previous_ok(ops, &op),
        op,
        prefix,
        configs,
    }
}

/// The completion of the first read to return a value that neither `initial` nor any write
/// or cas could have put there.
fn first_impossible_read(calls: &[(Call, u64, u64)], initial: State) -> Option<&Op> {
    let written: HashSet<u32> = calls
        .iter()
        .filter_map(|c| match c.0.op {
            IdOp::Write(v) | IdOp::Cas(_, v) => v,
            IdOp::Read(_) => None,
        })
        .chain(initial)
        .collect();
    calls
        .iter()
        .filter(|c| matches!(c.0.op, IdOp::Read(Some(v)) if !written.contains(&v)))
        .min_by_key(|c| c.2)
        .map(|c| &c.0.source)
}

/// The last client op completed `:ok` before `op` in the history.
fn previous_ok(ops: &[Op], op: &Op) -> Option<Box<Op>> {
    ops.iter()
        .filter(|o| o.index < op.index && o.op_type == OpType::Ok)
        .filter(|o| matches!(o.process, Process::Client(_)))
        .max_by_key(|o| o.index)
        .map(|o| Box::new(o.clone()))
}

/// The result map of one register (spec §10.3).
pub fn result_edn(outcome: &Outcome) -> Edn {
    let state = |v: &Value| v.clone().unwrap_or(Edn::Nil);
    match outcome {
        Outcome::Linearizable => map([("valid?", Edn::Bool(true)), ("analyzer", kw("wgl"))]),
        Outcome::Unknown(cause) => map([
            ("valid?", kw("unknown")),
            ("analyzer", kw("wgl")),
            ("cause", kw(cause)),
        ]),
        Outcome::NotLinearizable {
            op,
            previous_ok,
            prefix,
            configs,
        } => {
            let path: Vec<Edn> = prefix
                .iter()
                .map(|(o, s)| map([("op", o.to_edn()), ("model", state(s))]))
                .collect();
            map([
                ("valid?", Edn::Bool(false)),
                ("analyzer", kw("wgl")),
                ("op", op.to_edn()),
                (
                    "previous-ok",
                    previous_ok.as_ref().map_or(Edn::Nil, |o| o.to_edn()),
                ),
                ("final-paths", Edn::Vector(vec![Edn::Vector(path)])),
                (
                    "configs",
                    Edn::Vector(configs.iter().map(|c| map([("model", state(c))])).collect()),
                ),
            ])
        }
    }
}

/// Parses a plain register op (`check --model`): `:read v`, `:write v`, `:cas [from to]`.
pub fn plain_op(inv: &Op, value: &Edn) -> Option<RegOp> {
    match inv.f {
        "read" => Some(RegOp::Read(if *value == Edn::Nil {
            None
        } else {
            Some(value.clone())
        })),
        "write" => Some(RegOp::Write(value.clone())),
        "cas" => match value {
            Edn::Vector(v) if v.len() == 2 => Some(RegOp::Cas(v[0].clone(), v[1].clone())),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(t: OpType, p: u64, f: &'static str, value: Edn, time: u64) -> Op {
        Op {
            op_type: t,
            f,
            value,
            time,
            process: Process::Client(p),
            index: 0,
            error: None,
            is_final: false,
        }
    }

    fn budget() -> Budget {
        Budget {
            time: Duration::from_secs(5),
            memory: 1 << 30,
        }
    }

    fn run(ops: &[Op]) -> Outcome {
        check(ops, Model::CasRegister, None, &plain_op, budget())
    }

    /// The blocked op, `:previous-ok` and prefix of a history that must not linearize.
    fn refuted(ops: &[Op]) -> (Op, Option<Box<Op>>, Vec<(Op, Value)>) {
        match run(ops) {
            Outcome::NotLinearizable {
                op,
                previous_ok,
                prefix,
                ..
            } => (op, previous_ok, prefix),
            other => panic!("expected not linearizable, got {other:?}"),
        }
    }

    use OpType::*;

    #[test]
    fn sequential_and_concurrent_histories() {
        let i = Edn::Int;
        // write 1; read 1 — linearizable.
        let ok = [
            op(Invoke, 0, "write", i(1), 0),
            op(Ok, 0, "write", i(1), 1),
            op(Invoke, 1, "read", Edn::Nil, 2),
            op(Ok, 1, "read", i(1), 3),
        ];
        assert!(matches!(run(&ok), Outcome::Linearizable));
        // write 1 completes; then a read returns 2, never written.
        let bad = [
            op(Invoke, 0, "write", i(1), 0),
            op(Ok, 0, "write", i(1), 1),
            op(Invoke, 1, "read", Edn::Nil, 2),
            op(Ok, 1, "read", i(2), 3),
        ];
        assert_eq!(refuted(&bad).0.f, "read");
        // Two reads of values never written overlap: the one to complete first is named,
        // though the other was invoked first.
        let two = [
            op(Invoke, 0, "read", Edn::Nil, 0),
            op(Invoke, 1, "read", Edn::Nil, 1),
            op(Ok, 1, "read", i(7), 2),
            op(Ok, 0, "read", i(8), 3),
        ];
        let (blocked, _, _) = refuted(&two);
        assert_eq!((blocked.process, blocked.value), (Process::Client(1), i(7)));
        // A read of 1, overwritten by 2 before it began, completes before a read of 9 (never
        // written): the search is stuck at the read of 1 first, and that is what is named,
        // with the prefix that got there.
        let stale = [
            op(Invoke, 0, "write", i(1), 0),
            op(Ok, 0, "write", i(1), 1),
            op(Invoke, 0, "write", i(2), 2),
            op(Ok, 0, "write", i(2), 3),
            op(Invoke, 1, "read", Edn::Nil, 4),
            op(Invoke, 2, "read", Edn::Nil, 5),
            op(Ok, 1, "read", i(1), 6),
            op(Ok, 2, "read", i(9), 7),
        ];
        let mut stale = stale.to_vec();
        for (n, o) in stale.iter_mut().enumerate() {
            o.index = n as u64;
        }
        let (blocked, previous_ok, prefix) = refuted(&stale);
        assert_eq!((blocked.process, blocked.value), (Process::Client(1), i(1)));
        assert_eq!(prefix.len(), 2, "{prefix:?}");
        // Knossos's :previous-ok: the last :ok before it in the history, here write 2.
        assert_eq!(previous_ok.map(|o| o.index), Some(3));
        // Concurrent write 1 and write 2, then reads 2 and 1 in sequence: impossible.
        let h = [
            op(Invoke, 0, "write", i(1), 0),
            op(Invoke, 1, "write", i(2), 0),
            op(Ok, 0, "write", i(1), 5),
            op(Ok, 1, "write", i(2), 5),
            op(Invoke, 2, "read", Edn::Nil, 6),
            op(Ok, 2, "read", i(2), 7),
            op(Invoke, 2, "read", Edn::Nil, 8),
            op(Ok, 2, "read", i(1), 9),
        ];
        assert!(matches!(run(&h), Outcome::NotLinearizable { .. }));
        // An :info write may take effect later: reading its value afterwards is fine.
        let info = [
            op(Invoke, 0, "write", i(3), 0),
            op(Info, 0, "write", i(3), 1),
            op(Invoke, 1, "read", Edn::Nil, 10),
            op(Ok, 1, "read", i(3), 11),
        ];
        assert!(matches!(run(&info), Outcome::Linearizable));
        // An :info cas whose precondition never held simply never happened.
        let never = [
            op(Invoke, 0, "write", i(1), 0),
            op(Ok, 0, "write", i(1), 1),
            op(Invoke, 1, "cas", Edn::Vector(vec![i(4), i(2)]), 2),
            op(Info, 1, "cas", Edn::Vector(vec![i(4), i(2)]), 3),
            op(Invoke, 2, "read", Edn::Nil, 4),
            op(Ok, 2, "read", i(1), 5),
        ];
        assert!(matches!(run(&never), Outcome::Linearizable));
        // nil is the initial state: cas from nil works on a fresh register.
        let from_nil = [
            op(Invoke, 0, "cas", Edn::Vector(vec![Edn::Nil, i(1)]), 0),
            op(Ok, 0, "cas", Edn::Vector(vec![Edn::Nil, i(1)]), 1),
            op(Invoke, 1, "read", Edn::Nil, 2),
            op(Ok, 1, "read", i(1), 3),
        ];
        assert!(matches!(run(&from_nil), Outcome::Linearizable));
        // A read of nil (a key not found, as the original's lin-kv reports it) is accepted
        // in any state.
        let nil_read = [
            op(Invoke, 0, "write", i(1), 0),
            op(Ok, 0, "write", i(1), 1),
            op(Invoke, 1, "read", Edn::Nil, 2),
            op(Ok, 1, "read", Edn::Nil, 3),
        ];
        assert!(matches!(run(&nil_read), Outcome::Linearizable));
        // A :fail write did not happen.
        let failed = [
            op(Invoke, 0, "write", i(3), 0),
            op(Fail, 0, "write", i(3), 1),
            op(Invoke, 1, "read", Edn::Nil, 10),
            op(Ok, 1, "read", i(3), 11),
        ];
        assert!(matches!(run(&failed), Outcome::NotLinearizable { .. }));
        // cas needs the current value.
        let cas = [
            op(Invoke, 0, "write", i(1), 0),
            op(Ok, 0, "write", i(1), 1),
            op(Invoke, 0, "cas", Edn::Vector(vec![i(2), i(3)]), 2),
            op(Ok, 0, "cas", Edn::Vector(vec![i(2), i(3)]), 3),
        ];
        assert!(matches!(run(&cas), Outcome::NotLinearizable { .. }));
    }

    #[test]
    fn budgets_end_in_unknown() {
        let mut ops = vec![];
        for p in 0..40u64 {
            ops.push(op(Invoke, p, "write", Edn::Int(p as i64), 0));
        }
        for p in 0..40u64 {
            ops.push(op(Info, p, "write", Edn::Int(p as i64), 1));
        }
        // Reads 1, 2, 1 in sequence: impossible, since write 1 happens once, but proving it
        // means trying the crashed writes in every order.
        for (k, v) in [1i64, 2, 1].into_iter().enumerate() {
            let t = 2 + 2 * k as u64;
            ops.push(op(Invoke, 100 + k as u64, "read", Edn::Nil, t));
            ops.push(op(Ok, 100 + k as u64, "read", Edn::Int(v), t + 1));
        }
        let tiny = Budget {
            time: Duration::from_secs(60),
            memory: 10_000,
        };
        assert!(matches!(
            check(&ops, Model::CasRegister, None, &plain_op, tiny),
            Outcome::Unknown("out-of-memory")
        ));
        let no_time = Budget {
            time: Duration::ZERO,
            memory: 1 << 30,
        };
        assert!(matches!(
            check(&ops, Model::CasRegister, None, &plain_op, no_time),
            Outcome::Unknown("timeout")
        ));
    }
}
