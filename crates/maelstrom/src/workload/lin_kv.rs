//! lin-kv (spec §9.6): `read {key}` → `read_ok {value}`, `write {key, value}` → `write_ok`,
//! `cas {key, from, to}` → `cas_ok`, on integer keys with values 0..4. Threads form groups of
//! 2N; each group works on one key until 20 distinct processes have used it; the first N
//! threads of a group only read. Checked key by key for linearizability (cas-register), in
//! parallel, with the results and pictures of each key under `independent/<key>/`.

use super::{
    CheckContext, Field, Generator, Invocation, Kind, RpcSpec, Workload, WorkloadOptions, body,
    check_reply,
};
use crate::checker::linear::{self, Budget, Model, Outcome};
use crate::checker::merge_valid;
use crate::edn::{Edn, map};
use crate::history::{self, Op, OpType, Process};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::time::Duration;

/// Distinct processes that may use a key before its group moves on.
const PROCESSES_PER_KEY: usize = 20;

pub struct LinKv {
    nodes: usize,
}

const KEY: Field = Field {
    name: "key",
    kind: Kind::Integer,
    about: "0, 1, 2, …",
};

const RPCS: &[RpcSpec] = &[
    RpcSpec {
        request: "read",
        about: "Reads a key. A key never written answers error 20 (key-does-not-exist).",
        request_fields: &[KEY],
        reply_fields: &[Field {
            name: "value",
            kind: Kind::Any,
            about: "the key's current value",
        }],
    },
    RpcSpec {
        request: "write",
        about: "Sets a key's value.",
        request_fields: &[
            KEY,
            Field {
                name: "value",
                kind: Kind::Integer,
                about: "0..4",
            },
        ],
        reply_fields: &[],
    },
    RpcSpec {
        request: "cas",
        about: "Compare-and-set: if the key's value is `from`, sets it to `to`. A different \
                value answers error 22 (precondition-failed), a missing key error 20.",
        request_fields: &[
            KEY,
            Field {
                name: "from",
                kind: Kind::Integer,
                about: "the value expected, 0..4",
            },
            Field {
                name: "to",
                kind: Kind::Integer,
                about: "the new value, 0..4",
            },
        ],
        reply_fields: &[],
    },
];

impl LinKv {
    pub fn new(opts: &WorkloadOptions) -> LinKv {
        LinKv {
            nodes: opts.nodes.len().max(1),
        }
    }
}

struct Group {
    key: i64,
    processes: HashSet<u64>,
}

struct Gen {
    nodes: usize,
    groups: HashMap<usize, Group>,
    next_key: i64,
}

impl Generator for Gen {
    fn next(&mut self, rng: &mut ChaCha8Rng, thread: usize, process: u64) -> Invocation {
        let size = 2 * self.nodes;
        let next_key = &mut self.next_key;
        let group = self.groups.entry(thread / size).or_insert_with(|| {
            *next_key += 1;
            Group {
                key: *next_key - 1,
                processes: HashSet::new(),
            }
        });
        if group.processes.len() >= PROCESSES_PER_KEY && !group.processes.contains(&process) {
            group.key = *next_key;
            *next_key += 1;
            group.processes.clear();
        }
        group.processes.insert(process);
        let k = group.key;
        let pair = |v: Edn| Edn::Vector(vec![Edn::Int(k), v]);
        if thread % size < self.nodes {
            return Invocation {
                f: "read",
                value: pair(Edn::Nil),
                body: body("read", [("key", k.into())]),
            };
        }
        match rng.gen_range(0..3) {
            0 => {
                let v: i64 = rng.gen_range(0..5);
                Invocation {
                    f: "write",
                    value: pair(Edn::Int(v)),
                    body: body("write", [("key", k.into()), ("value", v.into())]),
                }
            }
            _ => {
                let (a, b): (i64, i64) = (rng.gen_range(0..5), rng.gen_range(0..5));
                Invocation {
                    f: "cas",
                    value: pair(Edn::Vector(vec![Edn::Int(a), Edn::Int(b)])),
                    body: body(
                        "cas",
                        [("key", k.into()), ("from", a.into()), ("to", b.into())],
                    ),
                }
            }
        }
    }
}

/// Splits a keyed history (`:value [k v]`) into one history per key, values unwrapped.
pub fn by_key(ops: &[Op]) -> BTreeMap<String, (Edn, Vec<Op>)> {
    let mut out: BTreeMap<String, (Edn, Vec<Op>)> = BTreeMap::new();
    let mut open: HashMap<u64, Edn> = HashMap::new();
    for op in ops {
        let Process::Client(p) = op.process else {
            continue;
        };
        let (key, inner) = match (&op.value, op.op_type) {
            (Edn::Vector(kv), _) if kv.len() == 2 => (kv[0].clone(), kv[1].clone()),
            (_, OpType::Invoke) => continue,
            _ => match open.get(&p) {
                Some(k) => (k.clone(), Edn::Nil),
                None => continue,
            },
        };
        if op.op_type == OpType::Invoke {
            open.insert(p, key.clone());
        } else {
            open.remove(&p);
        }
        let mut unwrapped = op.clone();
        unwrapped.value = inner;
        out.entry(key.to_string())
            .or_insert_with(|| (key, Vec::new()))
            .1
            .push(unwrapped);
    }
    out
}

/// Checks every key of a keyed register history in parallel; writes `independent/<key>/`
/// when `ctx.dir` is set. Also used by `maelstrom check`.
pub fn check_keys(ops: &[Op], model: Model, initial: linear::Value, ctx: &CheckContext) -> Edn {
    let keys: Vec<(String, (Edn, Vec<Op>))> = by_key(ops).into_iter().collect();
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(keys.len().max(1));
    let budget = Budget {
        time: ctx.timeout,
        memory: ctx.memory / threads.max(1),
    };
    let next = std::sync::atomic::AtomicUsize::new(0);
    let outcomes: Vec<(usize, Outcome)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut done = vec![];
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some((_, (_, history))) = keys.get(i) else {
                            break;
                        };
                        done.push((
                            i,
                            linear::check(
                                history,
                                model,
                                initial.clone(),
                                &linear::plain_op,
                                budget,
                            ),
                        ));
                    }
                    done
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("checker thread"))
            .collect()
    });
    let mut outcomes: Vec<Option<Outcome>> =
        outcomes
            .into_iter()
            .fold(vec![None; keys.len()], |mut v, (i, o)| {
                v[i] = Some(o);
                v
            });
    let mut results = Vec::new();
    let mut failures = Vec::new();
    let mut valids = Vec::new();
    for (i, (_, (key, history))) in keys.iter().enumerate() {
        let outcome = outcomes[i].take().expect("every key checked");
        let lin = linear::result_edn(&outcome);
        let valid = lin.get("valid?").cloned().unwrap_or(Edn::Nil);
        if valid == Edn::Bool(false) {
            failures.push(key.clone());
        }
        let r = map([
            ("linearizable", lin),
            ("timeline", map([("valid?", Edn::Bool(true))])),
            ("valid?", valid.clone()),
        ]);
        if let Some(dir) = &ctx.dir {
            write_key_files(dir, key, history, &r, &outcome);
        }
        valids.push(valid);
        results.push((key.clone(), r));
    }
    map([
        ("valid?", merge_valid(&valids)),
        ("results", Edn::Map(results)),
        ("failures", Edn::Vector(failures)),
    ])
}

fn write_key_files(
    dir: &std::path::Path,
    key: &Edn,
    history: &[Op],
    result: &Edn,
    outcome: &Outcome,
) {
    let name = match key {
        Edn::Str(s) => s.clone(),
        k => k.to_string(),
    };
    let d = dir.join("independent").join(name.replace('/', "_"));
    if std::fs::create_dir_all(&d).is_err() {
        return;
    }
    let _ = std::fs::write(d.join("results.edn"), format!("{}\n", result.pretty()));
    let _ = std::fs::write(d.join("history.edn"), history::to_edn_text(history));
    let _ = std::fs::write(d.join("timeline.html"), crate::plots::timeline(history));
    if let Outcome::NotLinearizable { op, prefix, .. } = outcome {
        let _ = std::fs::write(d.join("linear.svg"), linear_svg(key, history, op, prefix));
    }
}

/// How many linearized operations before the failure the picture shows.
const PICTURE_PREFIX: usize = 6;

/// The picture of a non-linearizable key: the moments that matter, from a few operations
/// before the failure to the operation that could not be linearized, in event order. Each
/// operation is a bar from invocation to completion, one row per process; the linearized ones in green, numbered
/// in linearization order, the blocked one in red, the others grey (details on hover).
fn linear_svg(key: &Edn, history: &[Op], blocked: &Op, prefix: &[(Op, linear::Value)]) -> String {
    let all: Vec<(&Op, Option<&Op>)> = history::pairs(history);
    let last_time = history.iter().map(|o| o.time).max().unwrap_or(0);
    let span_of = |(inv, done): &(&Op, Option<&Op>)| (inv.time, done.map_or(last_time, |d| d.time));
    let is_blocked = |(inv, done): &(&Op, Option<&Op>)| {
        inv.index == blocked.index || done.is_some_and(|d| d.index == blocked.index)
    };
    let (_, blocked_end) = all
        .iter()
        .find(|p| is_blocked(p))
        .map_or((0, last_time), span_of);
    // The window starts at the invocation of the PICTURE_PREFIX-th last linearized operation.
    let tail: HashSet<u64> = prefix
        .iter()
        .rev()
        .take(PICTURE_PREFIX)
        .map(|(o, _)| o.index)
        .collect();
    let start = all
        .iter()
        .filter(|(_, d)| d.is_some_and(|d| tail.contains(&d.index)))
        .map(|p| span_of(p).0)
        .min()
        .unwrap_or(0);
    let end = blocked_end.max(start + 1);
    let pairs: Vec<(&Op, Option<&Op>)> = all
        .into_iter()
        .filter(|p| {
            let (a, b) = span_of(p);
            a <= end && b >= start
        })
        .collect();
    let procs: Vec<u64> = history::client_processes(&pairs);
    let (w, row) = (1000.0, 28.0);
    let h = 60.0 + row * procs.len() as f64;
    // Event order, not wall time: every invocation and completion is one step, so short
    // operations separated by long pauses stay readable.
    let mut steps: Vec<u64> = pairs
        .iter()
        .flat_map(|p| {
            let (a, b) = span_of(p);
            [a.max(start), b.min(end)]
        })
        .collect();
    steps.sort_unstable();
    steps.dedup();
    let step = (w - 130.0) / steps.len().max(1) as f64;
    let x = |t: u64| 110.0 + steps.partition_point(|s| *s < t.clamp(start, end)) as f64 * step;
    let order: HashMap<u64, usize> = prefix
        .iter()
        .enumerate()
        .map(|(i, (o, _))| (o.index, i + 1))
        .collect();
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11"><rect width="100%" height="100%" fill="white"/><text x="10" y="18" font-size="14">Key {key}: not linearizable at {} {} (green: linearized, in order; red: impossible)</text>"#,
        blocked.f,
        crate::plots::html_escape(&blocked.value.to_string())
    );
    for (n, p) in procs.iter().enumerate() {
        let _ = write!(
            s,
            r#"<text x="10" y="{}">process {p}</text>"#,
            55.0 + row * n as f64
        );
    }
    for pair in &pairs {
        let (inv, done) = *pair;
        let Process::Client(p) = inv.process else {
            continue;
        };
        let y = 40.0 + row * procs.iter().position(|q| *q == p).unwrap_or(0) as f64;
        let (a, b) = span_of(pair);
        let completion: &Op = done.unwrap_or(inv);
        let (fill, mark) = if is_blocked(pair) {
            ("#FF1E90", "✗ ".to_string())
        } else if let Some(n) = done.and_then(|d| order.get(&d.index)) {
            ("#7FD17F", format!("{n}: "))
        } else {
            ("#DDDDDD", String::new())
        };
        let width = (x(b) - x(a)).max(3.0);
        let _ = write!(
            s,
            r##"<rect x="{:.1}" y="{y}" width="{width:.1}" height="{}" fill="{fill}" stroke="#555"><title>{}</title></rect>"##,
            x(a),
            row - 6.0,
            crate::plots::html_escape(&format!("{}\n{}", inv.to_edn(), completion.to_edn())),
        );
        let label = format!("{mark}{} {}", inv.f, done.map_or(&inv.value, |d| &d.value));
        // The full label where it fits, else just the number or ✗; hovering shows everything.
        let label = if width >= 6.5 * label.chars().count() as f64 {
            label
        } else {
            mark.trim_end_matches([':', ' ']).to_string()
        };
        if !label.is_empty() {
            let _ = write!(
                s,
                r#"<text x="{:.1}" y="{}">{}</text>"#,
                x(a) + 3.0,
                y + 15.0,
                crate::plots::html_escape(&label)
            );
        }
    }
    s.push_str("</svg>\n");
    s
}

impl Workload for LinKv {
    fn name(&self) -> &'static str {
        "lin-kv"
    }

    fn functions(&self) -> &'static [&'static str] {
        &["read", "write", "cas"]
    }

    fn idempotent(&self) -> &'static [&'static str] {
        &["read"]
    }

    fn reusable_clients(&self) -> bool {
        true
    }

    fn about(&self) -> &'static str {
        "A linearizable key-value store: threads form groups of twice the node count, each \
         group works on one integer key (half of its threads only read, the rest write or \
         cas values 0..4) and moves to a fresh key once 20 processes have used it. Each key \
         is checked for linearizability as a compare-and-set register, keys in parallel; \
         per-key results and timelines land in `independent/<key>/`. `--concurrency` must be \
         a positive multiple of twice the node count."
    }

    fn rpcs(&self) -> &'static [RpcSpec] {
        RPCS
    }

    fn timeout(&self, latency_ms: u64) -> Duration {
        Duration::from_millis((10 * latency_ms).max(1000))
    }

    fn generator(&self) -> Box<dyn Generator> {
        Box::new(Gen {
            nodes: self.nodes,
            groups: HashMap::new(),
            next_key: 0,
        })
    }

    fn complete(&self, inv: &Invocation, reply: &Map<String, Value>) -> Result<Edn, String> {
        let key = match &inv.value {
            Edn::Vector(kv) => kv[0].clone(),
            _ => Edn::Nil,
        };
        match inv.f {
            "read" => {
                check_reply(RPCS, "read", reply)?;
                Ok(Edn::Vector(vec![key, Edn::from_json(&reply["value"])]))
            }
            f => {
                check_reply(RPCS, f, reply)?;
                Ok(inv.value.clone())
            }
        }
    }

    fn check(&self, ops: &[Op], ctx: &CheckContext) -> Edn {
        check_keys(ops, Model::CasRegister, None, ctx)
    }
}
