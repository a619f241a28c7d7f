//! The key-value services and the timestamp oracle (spec §8).
//!
//! Keys and values are arbitrary JSON compared structurally: `1`, `1.0` and `"1"` are three
//! different keys. Stores key by the compact JSON text of the key, which is canonical for
//! these comparisons (serde_json writes `1` and `1.0` differently and sorts object keys).

use crate::{Service, error_body};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value, json};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

/// One parsed KV request.
enum Op {
    Read(Value),
    Write(Value, Value),
    Cas {
        key: Value,
        from: Value,
        to: Value,
        create: bool,
    },
}

/// The reply a KV operation produces against one state, and the state's change if any.
struct Outcome {
    reply: Value,
    write: Option<(String, Value)>,
}

fn parse_op(body: &Map<String, Value>) -> Result<Op, Value> {
    let field = |name: &str| {
        body.get(name)
            .cloned()
            .ok_or_else(|| error_body(12, format!("request lacks the field {name:?}")))
    };
    match body.get("type").and_then(Value::as_str) {
        Some("read") => Ok(Op::Read(field("key")?)),
        Some("write") => Ok(Op::Write(field("key")?, field("value")?)),
        Some("cas") => {
            let create = match body.get("create_if_not_exists") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(_) => return Err(error_body(12, "create_if_not_exists must be a boolean")),
            };
            Ok(Op::Cas {
                key: field("key")?,
                from: field("from")?,
                to: field("to")?,
                create,
            })
        }
        Some(other) => Err(error_body(
            10,
            format!("unsupported request type {other:?}"),
        )),
        None => Err(error_body(12, "request lacks a string \"type\"")),
    }
}

fn key_text(key: &Value) -> String {
    key.to_string()
}

/// Evaluates `op` against `lookup` (the state's value for a key) without changing anything.
fn evaluate(op: &Op, lookup: impl Fn(&str) -> Option<Value>) -> Outcome {
    match op {
        Op::Read(key) => Outcome {
            reply: match lookup(&key_text(key)) {
                Some(v) => json!({"type": "read_ok", "value": v}),
                None => error_body(20, "key does not exist"),
            },
            write: None,
        },
        Op::Write(key, value) => Outcome {
            reply: json!({"type": "write_ok"}),
            write: Some((key_text(key), value.clone())),
        },
        Op::Cas {
            key,
            from,
            to,
            create,
        } => {
            let k = key_text(key);
            match lookup(&k) {
                Some(cur) if &cur == from => Outcome {
                    reply: json!({"type": "cas_ok"}),
                    write: Some((k, to.clone())),
                },
                Some(cur) => Outcome {
                    reply: error_body(22, format!("current value {cur} is not {from}")),
                    write: None,
                },
                None if *create => Outcome {
                    reply: json!({"type": "cas_ok"}),
                    write: Some((k, to.clone())),
                },
                None => Outcome {
                    reply: error_body(20, "key does not exist"),
                    write: None,
                },
            }
        }
    }
}

/// Adds `in_reply_to` when the request had a `msg_id`; `None` means "send nothing".
fn addressed(body: &Map<String, Value>, mut reply: Value) -> Option<Value> {
    let id = body.get("msg_id")?.clone();
    reply
        .as_object_mut()
        .expect("replies are objects")
        .insert("in_reply_to".into(), id);
    Some(reply)
}

/// `lin-kv`: one state, each operation applied atomically in arrival order.
///
/// ```
/// use maelstrom_services::{LinKv, Service};
/// let mut kv = LinKv::default();
/// let r = kv.handle(Default::default(), "n1", serde_json::json!({"type": "read", "key": 1, "msg_id": 1}).as_object().unwrap());
/// assert_eq!(r.unwrap()["code"], 20);
/// ```
#[derive(Default)]
pub struct LinKv {
    state: HashMap<String, Value>,
}

impl Service for LinKv {
    fn id(&self) -> &'static str {
        "lin-kv"
    }

    fn handle(&mut self, _now: Duration, _src: &str, body: &Map<String, Value>) -> Option<Value> {
        let reply = match parse_op(body) {
            Err(e) => e,
            Ok(op) => {
                let out = evaluate(&op, |k| self.state.get(k).cloned());
                if let Some((k, v)) = out.write {
                    self.state.insert(k, v);
                }
                out.reply
            }
        };
        addressed(body, reply)
    }
}

/// `lin-tso`: hands out 0, 1, 2, … in arrival order.
///
/// ```
/// use maelstrom_services::{LinTso, Service};
/// let mut tso = LinTso::default();
/// let r = tso.handle(Default::default(), "n1", serde_json::json!({"type": "ts", "msg_id": 1}).as_object().unwrap());
/// assert_eq!(r.unwrap()["ts"], 0);
/// ```
#[derive(Default)]
pub struct LinTso {
    next: u64,
}

impl Service for LinTso {
    fn id(&self) -> &'static str {
        "lin-tso"
    }

    fn handle(&mut self, _now: Duration, _src: &str, body: &Map<String, Value>) -> Option<Value> {
        let reply = match body.get("type").and_then(Value::as_str) {
            Some("ts") => {
                self.next += 1;
                json!({"type": "ts_ok", "ts": self.next - 1})
            }
            Some(other) => error_body(10, format!("unsupported request type {other:?}")),
            None => error_body(12, "request lacks a string \"type\""),
        };
        addressed(body, reply)
    }
}

/// How many past states `seq-kv` keeps, as in the original.
const SEQ_KV_HISTORY: usize = 32;

/// `seq-kv`: sequentially consistent. Keeps the last 32 states; each node reads from a state
/// no older than the last one it observed, so its view is monotonic but may be stale until its
/// own change catches it up to the newest state.
///
/// ```
/// use maelstrom_services::{SeqKv, Service, seed};
/// let mut kv = SeqKv::new(seed::stream(1, "service/seq-kv"));
/// let w = serde_json::json!({"type": "write", "key": "k", "value": 1, "msg_id": 1});
/// assert_eq!(kv.handle(Default::default(), "n1", w.as_object().unwrap()).unwrap()["type"], "write_ok");
/// ```
pub struct SeqKv {
    rng: ChaCha8Rng,
    /// `(version, state)`, oldest first; version 0 is the empty map.
    states: VecDeque<(u64, Arc<HashMap<String, Value>>)>,
    observed: HashMap<String, u64>,
}

impl SeqKv {
    /// A fresh store whose version choices come from `rng`.
    ///
    /// ```
    /// use maelstrom_services::{SeqKv, seed};
    /// let _kv = SeqKv::new(seed::stream(1, "service/seq-kv"));
    /// ```
    pub fn new(rng: ChaCha8Rng) -> Self {
        let mut states = VecDeque::new();
        states.push_back((0, Arc::new(HashMap::new())));
        SeqKv {
            rng,
            states,
            observed: HashMap::new(),
        }
    }
}

impl Service for SeqKv {
    fn id(&self) -> &'static str {
        "seq-kv"
    }

    fn handle(&mut self, _now: Duration, src: &str, body: &Map<String, Value>) -> Option<Value> {
        let op = match parse_op(body) {
            Err(e) => return addressed(body, e),
            Ok(op) => op,
        };
        let oldest = self.states.front().expect("never empty").0;
        let newest = self.states.back().expect("never empty").0;
        let ci = self.observed.get(src).copied().unwrap_or(0).max(oldest);
        let v = self.rng.gen_range(ci..=newest);
        let state_v = Arc::clone(&self.states[(v - oldest) as usize].1);
        let at_v = evaluate(&op, |k| state_v.get(k).cloned());
        let unchanged = match &at_v.write {
            None => true,
            Some((k, val)) => state_v.get(k) == Some(val),
        };
        if unchanged {
            self.observed.insert(src.to_string(), v);
            return addressed(body, at_v.reply);
        }
        let latest = Arc::clone(&self.states.back().expect("never empty").1);
        let at_newest = evaluate(&op, |k| latest.get(k).cloned());
        let mut version = newest;
        if let Some((k, val)) = at_newest.write
            && latest.get(&k) != Some(&val)
        {
            let mut next = (*latest).clone();
            next.insert(k, val);
            version += 1;
            self.states.push_back((version, Arc::new(next)));
            if self.states.len() > SEQ_KV_HISTORY {
                self.states.pop_front();
            }
        }
        self.observed.insert(src.to_string(), version);
        addressed(body, at_newest.reply)
    }
}

/// Number of `lww-kv` replicas.
const LWW_REPLICAS: usize = 5;
/// Period of the full anti-entropy round that makes `lww-kv` converge.
const LWW_ROUND: Duration = Duration::from_millis(100);

/// One `lww-kv` replica: a Lamport counter and `(value, (counter, replica))` per key.
#[derive(Clone, Default)]
struct Replica {
    counter: u64,
    keys: HashMap<String, (Value, (u64, usize))>,
}

impl Replica {
    fn merge_from(&mut self, other: &Replica) {
        for (k, (v, ts)) in &other.keys {
            match self.keys.get(k) {
                Some((_, mine)) if mine >= ts => {}
                _ => {
                    self.keys.insert(k.clone(), (v.clone(), *ts));
                }
            }
        }
        self.counter = self.counter.max(other.counter);
    }
}

/// `lww-kv`: five last-write-wins replicas that gossip and converge (the project's fix of the
/// original, whose replicas never merge). Reads may be stale and may go backwards; once
/// traffic stops every replica agrees within one 100 ms round. Unlike the original,
/// `cas` honours `create_if_not_exists`.
///
/// ```
/// use maelstrom_services::{LwwKv, Service, seed};
/// let mut kv = LwwKv::new(seed::stream(1, "service/lww-kv"));
/// let w = serde_json::json!({"type": "write", "key": "k", "value": 1, "msg_id": 1});
/// assert_eq!(kv.handle(Default::default(), "n1", w.as_object().unwrap()).unwrap()["type"], "write_ok");
/// ```
pub struct LwwKv {
    rng: ChaCha8Rng,
    replicas: Vec<Replica>,
    rounds_done: u64,
}

impl LwwKv {
    /// A fresh store whose replica choices come from `rng`.
    ///
    /// ```
    /// use maelstrom_services::{LwwKv, seed};
    /// let _kv = LwwKv::new(seed::stream(1, "service/lww-kv"));
    /// ```
    pub fn new(rng: ChaCha8Rng) -> Self {
        LwwKv {
            rng,
            replicas: vec![Replica::default(); LWW_REPLICAS],
            rounds_done: 0,
        }
    }

    /// Runs the full merge rounds due by `now`. One merge makes every replica equal, so any
    /// number of missed rounds collapses into one.
    fn catch_up(&mut self, now: Duration) {
        let due = (now.as_nanos() / LWW_ROUND.as_nanos()) as u64;
        if due > self.rounds_done {
            self.rounds_done = due;
            let mut all = Replica::default();
            for r in &self.replicas {
                all.merge_from(r);
            }
            self.replicas = vec![all; LWW_REPLICAS];
        }
    }
}

impl Service for LwwKv {
    fn id(&self) -> &'static str {
        "lww-kv"
    }

    fn handle(&mut self, now: Duration, _src: &str, body: &Map<String, Value>) -> Option<Value> {
        self.catch_up(now);
        let from = self.rng.gen_range(0..LWW_REPLICAS);
        let to = (from + self.rng.gen_range(1..LWW_REPLICAS)) % LWW_REPLICAS;
        let source = self.replicas[from].clone();
        self.replicas[to].merge_from(&source);
        let op = match parse_op(body) {
            Err(e) => return addressed(body, e),
            Ok(op) => op,
        };
        let i = self.rng.gen_range(0..LWW_REPLICAS);
        let replica = &mut self.replicas[i];
        let out = evaluate(&op, |k| replica.keys.get(k).map(|(v, _)| v.clone()));
        if let Some((k, v)) = out.write {
            replica.counter += 1;
            replica.keys.insert(k, (v, (replica.counter, i)));
        }
        addressed(body, out.reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ServiceKind;

    fn call(s: &mut dyn Service, src: &str, body: Value) -> Value {
        s.handle(Duration::ZERO, src, body.as_object().unwrap())
            .unwrap()
    }

    #[test]
    fn lin_kv_read_write_cas_and_errors() {
        let mut kv = ServiceKind::LinKv.build(0);
        let kv = kv.as_mut();
        assert_eq!(
            call(kv, "n1", json!({"type":"read","key":1,"msg_id":1}))["code"],
            20
        );
        call(
            kv,
            "n1",
            json!({"type":"write","key":1,"value":3,"msg_id":2}),
        );
        // 1 and "1" are different keys; 3 and 3.0 are different values.
        assert_eq!(
            call(kv, "n1", json!({"type":"read","key":"1","msg_id":3}))["code"],
            20
        );
        let r = call(
            kv,
            "n1",
            json!({"type":"cas","key":1,"from":3.0,"to":4,"msg_id":4}),
        );
        assert_eq!(r["code"], 22);
        assert_eq!(r["text"], "current value 3 is not 3.0");
        let r = call(
            kv,
            "n1",
            json!({"type":"cas","key":1,"from":3,"to":4,"msg_id":5}),
        );
        assert_eq!(r, json!({"type":"cas_ok","in_reply_to":5}));
        let r = call(
            kv,
            "n1",
            json!({"type":"cas","key":9,"from":0,"to":1,"msg_id":6}),
        );
        assert_eq!(r["code"], 20);
        let r = call(
            kv,
            "n1",
            json!({"type":"cas","key":9,"from":0,"to":1,"create_if_not_exists":true,"msg_id":7}),
        );
        assert_eq!(r["type"], "cas_ok");
        assert_eq!(
            call(kv, "n1", json!({"type":"read","key":9,"msg_id":8}))["value"],
            1
        );
    }

    #[test]
    fn bad_requests_get_errors_and_unaddressed_ones_no_reply() {
        let mut kv = LinKv::default();
        assert_eq!(
            call(&mut kv, "n1", json!({"type":"frob","msg_id":1}))["code"],
            10
        );
        assert_eq!(
            call(&mut kv, "n1", json!({"type":"write","key":1,"msg_id":2}))["code"],
            12
        );
        let silent = json!({"type":"write","key":1,"value":2});
        assert!(
            kv.handle(Duration::ZERO, "n1", silent.as_object().unwrap())
                .is_none()
        );
        assert_eq!(
            call(&mut kv, "n1", json!({"type":"read","key":1,"msg_id":3}))["value"],
            2
        );
    }

    #[test]
    fn seq_kv_reads_are_monotonic_per_node_and_a_write_catches_up() {
        let mut kv = ServiceKind::SeqKv.build(42);
        let kv = kv.as_mut();
        for v in 0..20 {
            call(
                kv,
                "n1",
                json!({"type":"write","key":"k","value":v,"msg_id":v}),
            );
        }
        // n2 may read stale values, but never goes backwards.
        let mut last = -1i64;
        let mut saw_stale = false;
        for i in 0..200 {
            let r = call(kv, "n2", json!({"type":"read","key":"k","msg_id":100+i}));
            let v = r.get("value").and_then(Value::as_i64).unwrap_or(-1);
            assert!(v >= last, "went back from {last} to {v}");
            saw_stale |= v < 19;
            last = v;
        }
        assert!(saw_stale, "seed 42 should show at least one stale read");
        // A state change by n3 brings n3 to the newest state.
        call(
            kv,
            "n3",
            json!({"type":"write","key":"sync","value":1,"msg_id":1}),
        );
        assert_eq!(
            call(kv, "n3", json!({"type":"read","key":"k","msg_id":2}))["value"],
            19
        );
    }

    #[test]
    fn lww_kv_converges_after_a_round_and_honours_create() {
        let mut kv = ServiceKind::LwwKv.build(5);
        let body =
            json!({"type":"cas","key":"a","from":1,"to":2,"create_if_not_exists":true,"msg_id":1});
        let r = kv
            .handle(Duration::ZERO, "n1", body.as_object().unwrap())
            .unwrap();
        assert_eq!(r["type"], "cas_ok");
        for i in 0..50 {
            let read = json!({"type":"read","key":"a","msg_id":10+i});
            let r = kv
                .handle(Duration::from_millis(200), "n2", read.as_object().unwrap())
                .unwrap();
            assert_eq!(
                r["value"], 2,
                "after a full round every replica has the write"
            );
        }
    }

    #[test]
    fn tso_counts_from_zero() {
        let mut t = LinTso::default();
        for i in 0..3u64 {
            assert_eq!(call(&mut t, "n1", json!({"type":"ts","msg_id":i}))["ts"], i);
        }
    }
}
