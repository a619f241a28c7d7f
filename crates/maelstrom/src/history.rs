//! The history: every client and nemesis operation, as invocation and completion, in the
//! order they happened, written as `history.edn` (Jepsen's op maps) and `history.txt`.

use crate::edn::{Edn, kw};
use std::fmt::Write as _;
use std::sync::Mutex;
use tokio::time::Instant;

/// An operation's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpType {
    /// The operation started.
    Invoke,
    /// It happened.
    Ok,
    /// It did not happen.
    Fail,
    /// It may or may not have happened.
    Info,
}

impl OpType {
    /// The keyword name.
    pub fn name(self) -> &'static str {
        match self {
            OpType::Invoke => "invoke",
            OpType::Ok => "ok",
            OpType::Fail => "fail",
            OpType::Info => "info",
        }
    }
}

/// Who performed an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Process {
    /// A client process; a worker thread becomes a new process after an `:info` result.
    Client(u64),
    /// The fault injector.
    Nemesis,
}

/// One history entry.
#[derive(Clone, Debug)]
pub struct Op {
    /// Invoke, ok, fail or info.
    pub op_type: OpType,
    /// The function, a keyword name such as `read`.
    pub f: &'static str,
    /// The argument (invocation) or result (completion).
    pub value: Edn,
    /// Nanoseconds since the test started.
    pub time: u64,
    /// Who did it.
    pub process: Process,
    /// Position in the history.
    pub index: u64,
    /// Why it failed, for fail and info completions.
    pub error: Option<Edn>,
    /// Whether it belongs to the final phase.
    pub is_final: bool,
}

impl Op {
    /// The op as Jepsen's EDN map, keys in the original's order.
    pub fn to_edn(&self) -> Edn {
        let mut m = Edn::Map(vec![]);
        m.push("type", kw(self.op_type.name()));
        m.push("f", kw(self.f));
        m.push("value", self.value.clone());
        m.push("time", Edn::Int(self.time as i64));
        m.push(
            "process",
            match self.process {
                Process::Client(p) => Edn::Int(p as i64),
                Process::Nemesis => kw("nemesis"),
            },
        );
        m.push("index", Edn::Int(self.index as i64));
        if let Some(e) = &self.error {
            m.push("error", e.clone());
        }
        if self.is_final {
            m.push("final?", Edn::Bool(true));
        }
        m
    }

    /// Whether this is a client (not nemesis) operation.
    pub fn is_client(&self) -> bool {
        matches!(self.process, Process::Client(_))
    }
}

/// The history being recorded; shared by workers and the nemesis.
pub struct History {
    start: Instant,
    ops: Mutex<Vec<Op>>,
}

impl History {
    /// An empty history whose clock starts at `start`.
    pub fn new(start: Instant) -> History {
        History {
            start,
            ops: Mutex::new(Vec::new()),
        }
    }

    /// Nanoseconds since the test started.
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// Appends an operation, stamping its time and index.
    pub fn record(
        &self,
        op_type: OpType,
        f: &'static str,
        value: Edn,
        process: Process,
        error: Option<Edn>,
        is_final: bool,
    ) {
        let mut ops = self.ops.lock().expect("history lock");
        let index = ops.len() as u64;
        ops.push(Op {
            op_type,
            f,
            value,
            time: self.now(),
            process,
            index,
            error,
            is_final,
        });
    }

    /// Counts of completed client operations: (ok, fail, info).
    pub fn completion_counts(&self) -> (u64, u64, u64) {
        let ops = self.ops.lock().expect("history lock");
        let mut c = (0, 0, 0);
        for op in ops.iter().filter(|o| o.is_client()) {
            match op.op_type {
                OpType::Ok => c.0 += 1,
                OpType::Fail => c.1 += 1,
                OpType::Info => c.2 += 1,
                OpType::Invoke => {}
            }
        }
        c
    }

    /// A copy of every operation so far.
    pub fn snapshot(&self) -> Vec<Op> {
        self.ops.lock().expect("history lock").clone()
    }
}

/// `history.edn`: a vector of op maps, one per line.
pub fn to_edn_text(ops: &[Op]) -> String {
    let mut out = String::from("[");
    for (i, op) in ops.iter().enumerate() {
        if i > 0 {
            out.push_str("\n ");
        }
        let _ = write!(out, "{}", op.to_edn());
    }
    out.push_str("]\n");
    out
}

/// `history.txt`: tab-separated `process type f value error`, one op per line.
pub fn to_txt(ops: &[Op]) -> String {
    let mut out = String::new();
    for op in ops {
        let process = match op.process {
            Process::Client(p) => p.to_string(),
            Process::Nemesis => ":nemesis".into(),
        };
        let error = op.error.as_ref().map(Edn::to_string).unwrap_or_default();
        let _ = writeln!(
            out,
            "{process}\t:{}\t:{}\t{}\t{error}",
            op.op_type.name(),
            op.f,
            op.value
        );
    }
    out
}

/// Pairs each client invocation with its completion (by process), in invocation order.
/// An invocation without completion (the test ended first) gets `None`.
pub fn pairs(ops: &[Op]) -> Vec<(&Op, Option<&Op>)> {
    pair_up(ops, false)
}

/// [`pairs`], plus each completion that has no invocation (histories of `:ok` ops alone, as
/// Elle's own tests write them), paired with itself.
pub fn pairs_with_lone_completions(ops: &[Op]) -> Vec<(&Op, Option<&Op>)> {
    pair_up(ops, true)
}

fn pair_up(ops: &[Op], keep_lone: bool) -> Vec<(&Op, Option<&Op>)> {
    let mut open: std::collections::HashMap<u64, usize> = std::collections::HashMap::new();
    let mut out: Vec<(&Op, Option<&Op>)> = Vec::new();
    for op in ops {
        let Process::Client(p) = op.process else {
            continue;
        };
        if op.op_type == OpType::Invoke {
            open.insert(p, out.len());
            out.push((op, None));
        } else if let Some(i) = open.remove(&p) {
            out[i].1 = Some(op);
        } else if keep_lone {
            out.push((op, Some(op)));
        }
    }
    out
}

/// The client processes of invocation/completion pairs, sorted, each once.
pub fn client_processes(pairs: &[(&Op, Option<&Op>)]) -> Vec<u64> {
    let mut procs: Vec<u64> = pairs
        .iter()
        .filter_map(|(i, _)| {
            if let Process::Client(p) = i.process {
                Some(p)
            } else {
                None
            }
        })
        .collect();
    procs.sort_unstable();
    procs.dedup();
    procs
}

/// A history's process for ops that name none.
pub const ANONYMOUS: u64 = u64::MAX;

/// `:f` names read from files, interned so `Op::f` stays `&'static str`; bounded by the
/// number of distinct function names, which is tiny.
fn intern(name: &str) -> &'static str {
    static NAMES: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    let mut names = NAMES.lock().expect("intern lock");
    if let Some(n) = names.iter().find(|n| **n == name) {
        return n;
    }
    let leaked: &'static str = Box::leak(name.to_string().into_boxed_str());
    names.push(leaked);
    leaked
}

/// Reads a history from EDN forms, tolerantly, as Jepsen's own checkers do: one vector (or
/// list) of op maps, or one op map per form; an op without `:process` belongs to one anonymous
/// process; without `:f` it takes `default_f`; without `:time` its position; ops whose
/// `:process` is neither an integer nor nil (the nemesis) are skipped, and so are ops whose
/// `:f` is not in `functions` (when given). Errors name the op.
pub fn from_edn(
    forms: Vec<Edn>,
    default_f: Option<&'static str>,
    functions: Option<&[&str]>,
) -> Result<Vec<Op>, String> {
    from_edn_at(forms, &[], default_f, functions)
}

/// [`from_edn`], where `lines[n]` is the line on which op `n` starts (from
/// [`crate::edn::parse_with_lines`]), so that each error names the line at fault.
pub fn from_edn_at(
    forms: Vec<Edn>,
    lines: &[usize],
    default_f: Option<&'static str>,
    functions: Option<&[&str]>,
) -> Result<Vec<Op>, String> {
    let at = |n: usize| match lines.get(n) {
        Some(line) => format!("line {line} (op {n})"),
        None => format!("op {n}"),
    };
    let maps: Vec<Edn> = match forms.as_slice() {
        [Edn::Vector(items)] if items.iter().all(|i| matches!(i, Edn::Map(_))) => items.clone(),
        _ => forms,
    };
    let mut ops = Vec::with_capacity(maps.len());
    let mut open: std::collections::HashSet<u64> = std::collections::HashSet::new();
    for (n, m) in maps.into_iter().enumerate() {
        if !matches!(m, Edn::Map(_)) {
            return Err(format!(
                "{}: expected a map like {{:type :invoke, :f :read, :value nil, :process 0}}, got {m}",
                at(n)
            ));
        }
        let op_type = match m.get("type") {
            Some(Edn::Keyword(k)) if k == "invoke" => OpType::Invoke,
            Some(Edn::Keyword(k)) if k == "ok" => OpType::Ok,
            Some(Edn::Keyword(k)) if k == "fail" => OpType::Fail,
            Some(Edn::Keyword(k)) if k == "info" => OpType::Info,
            other => {
                return Err(format!(
                    "{}: :type must be :invoke, :ok, :fail or :info, got {}",
                    at(n),
                    other.map_or("nothing".into(), Edn::to_string)
                ));
            }
        };
        let process = match m.get("process") {
            None | Some(Edn::Nil) => Process::Client(ANONYMOUS),
            Some(Edn::Int(p)) if *p >= 0 => Process::Client(*p as u64),
            Some(_) => continue,
        };
        let f = match m.get("f") {
            Some(Edn::Keyword(f)) | Some(Edn::Str(f)) => intern(f),
            None => match default_f {
                Some(f) => f,
                None => {
                    return Err(format!(
                        "{}: it has no :f, and this check has no usual function",
                        at(n)
                    ));
                }
            },
            Some(other) => return Err(format!("{}: :f must be a keyword, got {other}", at(n))),
        };
        if functions.is_some_and(|fs| !fs.contains(&f)) {
            continue;
        }
        if let Process::Client(p) = process {
            // A process runs one operation at a time; pairing would otherwise go wrong silently.
            let invoked_again = if op_type == OpType::Invoke {
                !open.insert(p)
            } else {
                open.remove(&p);
                false
            };
            if invoked_again {
                let who = if p == ANONYMOUS {
                    "the anonymous process (ops without :process)".to_string()
                } else {
                    format!("process {p}")
                };
                return Err(format!(
                    "{}: {who} invoked an operation before its previous one completed; give concurrent operations distinct :process values",
                    at(n)
                ));
            }
        }
        let time = match m.get("time") {
            Some(Edn::Int(t)) if *t >= 0 => *t as u64,
            _ => n as u64,
        };
        ops.push(Op {
            op_type,
            f,
            value: m.get("value").cloned().unwrap_or(Edn::Nil),
            time,
            process,
            // Jepsen's index counts every op of the history, nemesis ones included.
            index: match m.get("index") {
                Some(Edn::Int(i)) if *i >= 0 => *i as u64,
                _ => n as u64,
            },
            error: m.get("error").cloned(),
            is_final: matches!(m.get("final?"), Some(Edn::Bool(true))),
        });
    }
    Ok(ops)
}
