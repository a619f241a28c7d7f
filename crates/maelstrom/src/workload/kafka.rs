//! kafka (spec §9.9): append-only logs under string keys. `send {key, msg}` → `send_ok
//! {offset}`; `poll {offsets}` → `poll_ok {msgs: {k: [[o, m], …]}}`; `commit_offsets` and
//! `list_committed_offsets`. Each client keeps its assigned keys and the next offset to poll
//! (see [`KafkaClient`]); `:crash` throws that state away. The final phase crashes every
//! client, assigns every key from the beginning and polls until each has read every
//! acknowledged offset. Checked by `checker::kafka`.

use super::txn::KeyPool;
use super::{
    CheckContext, ClientLogic, Field, FinalPhase, Generator, Invocation, Kind, Outcome, Reply, Rpc,
    RpcSpec, Workload, body, check_reply, integer,
};
use crate::edn::{Edn, kw};
use crate::history::Op;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Each client crashes about this often.
const CRASH_EVERY: Duration = Duration::from_secs(30);

const OFFSETS: Field = Field {
    name: "offsets",
    kind: Kind::Object,
    about: "key → offset",
};

const RPCS: &[RpcSpec] = &[
    RpcSpec {
        request: "send",
        about: "Appends a message to the log under a key.",
        request_fields: &[
            Field {
                name: "key",
                kind: Kind::String,
                about: "the log's key: `\"0\"`, `\"1\"`, … (strings)",
            },
            Field {
                name: "msg",
                kind: Kind::Integer,
                about: "the message, unique per key",
            },
        ],
        reply_fields: &[Field {
            name: "offset",
            kind: Kind::Integer,
            about: "where the message now sits in the key's log; offsets only grow",
        }],
    },
    RpcSpec {
        request: "poll",
        about: "Asks for messages from the given offset on, for each key (possibly none).",
        request_fields: &[OFFSETS],
        reply_fields: &[Field {
            name: "msgs",
            kind: Kind::Object,
            about: "key → `[[offset, msg], …]` in increasing offset order from the requested \
                    one; keys may be missing",
        }],
    },
    RpcSpec {
        request: "commit_offsets",
        about: "Records that this client has processed each key up to the given offset.",
        request_fields: &[OFFSETS],
        reply_fields: &[],
    },
    RpcSpec {
        request: "list_committed_offsets",
        about: "Asks for the committed offset of each key.",
        request_fields: &[Field {
            name: "keys",
            kind: Kind::Array,
            about: "the keys",
        }],
        reply_fields: &[Field {
            name: "offsets",
            kind: Kind::Object,
            about: "key → committed offset; keys never committed may be missing",
        }],
    },
];

/// Highest acknowledged offset per key, shared by the clients (for the final phase).
type Known = Arc<Mutex<HashMap<String, i64>>>;

pub struct Kafka {
    key_count: usize,
    max_writes_per_key: u64,
    concurrency: usize,
    known: Known,
}

impl Kafka {
    pub fn new(key_count: u64, max_writes_per_key: u64, concurrency: usize) -> Kafka {
        Kafka {
            key_count: key_count.max(1) as usize,
            max_writes_per_key: max_writes_per_key.max(1),
            concurrency: concurrency.max(1),
            known: Arc::new(Mutex::new(HashMap::new())),
        }
    }
}

struct Gen {
    pool: KeyPool,
    /// Keys sent to that no assign has included yet.
    unpolled: BTreeSet<String>,
    crash_gap: f64,
    next_crash: Option<Instant>,
}

fn key_name(k: i64) -> String {
    k.to_string()
}

fn assign(keys: Vec<String>, seek: bool) -> Invocation {
    let mut b = body("assign", []);
    if seek {
        b.insert("seek-to-beginning?".into(), true.into());
    }
    Invocation {
        f: "assign",
        value: Edn::Vector(keys.into_iter().map(Edn::Str).collect()),
        body: b,
    }
}

fn poll() -> Invocation {
    Invocation {
        f: "poll",
        value: Edn::Vector(vec![Edn::Vector(vec![kw("poll")])]),
        body: body("poll", []),
    }
}

fn crash() -> Invocation {
    Invocation {
        f: "crash",
        value: Edn::Nil,
        body: body("crash", []),
    }
}

impl Generator for Gen {
    fn next(&mut self, rng: &mut ChaCha8Rng, _thread: usize, _process: u64) -> Invocation {
        let now = Instant::now();
        let next_crash = *self.next_crash.get_or_insert_with(|| {
            now + Duration::from_secs_f64(rng.gen_range(0.0..=2.0 * self.crash_gap))
        });
        if now >= next_crash {
            self.next_crash = Some(
                next_crash + Duration::from_secs_f64(rng.gen_range(0.0..=2.0 * self.crash_gap)),
            );
            return crash();
        }
        if rng.gen_ratio(1, 64) {
            let (_, first) = self.pool.pick(rng);
            let mut keys: BTreeSet<String> = BTreeSet::from([key_name(first)]);
            for _ in 0..3 {
                keys.insert(key_name(self.pool.pick(rng).1));
            }
            if rng.gen_ratio(1, 3) {
                keys.extend(self.unpolled.iter().take(2).cloned());
            }
            for k in &keys {
                self.unpolled.remove(k);
            }
            return assign(keys.into_iter().collect(), false);
        }
        if rng.gen_bool(0.5) {
            return poll();
        }
        let (slot, _) = self.pool.pick(rng);
        let (k, v) = self.pool.write(slot);
        let k = key_name(k);
        self.unpolled.insert(k.clone());
        Invocation {
            f: "send",
            value: Edn::Vector(vec![Edn::Vector(vec![
                kw("send"),
                Edn::Str(k.clone()),
                Edn::Int(v),
            ])]),
            body: body("send", [("key", Value::String(k)), ("msg", v.into())]),
        }
    }

    fn final_phase(&mut self) -> FinalPhase {
        let keys: Vec<String> = self.pool.written.iter().map(|k| key_name(*k)).collect();
        FinalPhase {
            ops: vec![crash(), assign(keys, true), poll()],
            tagged: false,
            retries: 0,
            cap: Some(Duration::from_secs(10)),
            repeat_last_every: Some(Duration::from_millis(200)),
        }
    }
}

/// One client's state: assigned keys and the next offset to poll for each.
pub struct KafkaClient {
    offsets: BTreeMap<String, i64>,
    polled: HashMap<String, i64>,
    known: Known,
}

fn send_value(k: &str, o: i64, m: &Edn) -> Edn {
    Edn::Vector(vec![Edn::Vector(vec![
        kw("send"),
        Edn::Str(k.to_string()),
        Edn::Vector(vec![Edn::Int(o), m.clone()]),
    ])])
}

impl KafkaClient {
    async fn send(&mut self, inv: &Invocation, rpc: &mut dyn Rpc) -> Outcome {
        let k = inv
            .body
            .get("key")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let m = match &inv.value {
            Edn::Vector(v) => match v.first() {
                Some(Edn::Vector(op)) => op.get(2).cloned().unwrap_or(Edn::Nil),
                _ => Edn::Nil,
            },
            _ => Edn::Nil,
        };
        match rpc.call(inv.body.clone()).await {
            Reply::Ok(r) => match check_reply(RPCS, "send", &r).map(|()| integer(&r["offset"])) {
                Ok(Some(o)) => {
                    let mut known = self.known.lock().expect("known lock");
                    let best = known.entry(k.clone()).or_insert(o);
                    *best = (*best).max(o);
                    Outcome::Ok(send_value(&k, o, &m))
                }
                Ok(None) => unreachable!("check_reply checked the offset"),
                Err(why) => Outcome::Malformed(why),
            },
            failed => Outcome::Failed(failed),
        }
    }

    async fn poll(&mut self, rpc: &mut dyn Rpc) -> Outcome {
        let offsets: Map<String, Value> = self
            .offsets
            .iter()
            .map(|(k, o)| (k.clone(), json!(o)))
            .collect();
        let r = match rpc
            .call(body("poll", [("offsets", Value::Object(offsets))]))
            .await
        {
            Reply::Ok(r) => r,
            failed => return Outcome::Failed(failed),
        };
        let msgs = match check_reply(RPCS, "poll", &r) {
            Ok(()) => r["msgs"].as_object().expect("checked").clone(),
            Err(why) => return Outcome::Malformed(why),
        };
        let mut by_key = Vec::new();
        let mut commits = Map::new();
        for (k, pairs) in &msgs {
            let Some(pairs) = pairs.as_array() else {
                return Outcome::Malformed(format!(
                    "msgs[{k:?}] must be an array of [offset, msg]"
                ));
            };
            let mut list = Vec::with_capacity(pairs.len());
            let mut highest = None;
            for p in pairs {
                let Some([o, m]) = p.as_array().map(Vec::as_slice) else {
                    return Outcome::Malformed(format!("msgs[{k:?}] holds {p}, not [offset, msg]"));
                };
                let Some(o) = integer(o) else {
                    return Outcome::Malformed(format!("msgs[{k:?}] has a non-integer offset {o}"));
                };
                highest = highest.max(Some(o));
                list.push(Edn::Vector(vec![Edn::Int(o), Edn::from_json(m)]));
            }
            if let Some(h) = highest {
                if self.offsets.contains_key(k) {
                    self.offsets.insert(k.clone(), h + 1);
                }
                let p = self.polled.entry(k.clone()).or_insert(h);
                *p = (*p).max(h);
                commits.insert(k.clone(), json!(h));
            }
            by_key.push((Edn::Str(k.clone()), Edn::Vector(list)));
        }
        if !commits.is_empty() {
            // The poll has happened whatever becomes of the commit.
            let _ = rpc
                .call(body(
                    "commit_offsets",
                    [("offsets", Value::Object(commits))],
                ))
                .await;
        }
        Outcome::Ok(Edn::Vector(vec![Edn::Vector(vec![
            kw("poll"),
            Edn::Map(by_key),
        ])]))
    }

    async fn assign(&mut self, inv: &Invocation, rpc: &mut dyn Rpc) -> Outcome {
        let keys: Vec<String> = match &inv.value {
            Edn::Vector(ks) => ks
                .iter()
                .filter_map(|k| {
                    if let Edn::Str(s) = k {
                        Some(s.clone())
                    } else {
                        None
                    }
                })
                .collect(),
            _ => vec![],
        };
        if inv.body.get("seek-to-beginning?") == Some(&Value::Bool(true)) {
            self.offsets = keys.into_iter().map(|k| (k, 0)).collect();
            return Outcome::Ok(inv.value.clone());
        }
        let committed = match rpc
            .call(body("list_committed_offsets", [("keys", json!(keys))]))
            .await
        {
            Reply::Ok(r) => match check_reply(RPCS, "list_committed_offsets", &r) {
                Ok(()) => r["offsets"].as_object().expect("checked").clone(),
                Err(why) => return Outcome::Malformed(why),
            },
            failed => return Outcome::Failed(failed),
        };
        let old = std::mem::take(&mut self.offsets);
        for k in keys {
            let o = old
                .get(&k)
                .copied()
                .or_else(|| committed.get(&k).and_then(integer))
                .unwrap_or(0);
            self.offsets.insert(k, o);
        }
        Outcome::Ok(inv.value.clone())
    }
}

impl ClientLogic for KafkaClient {
    fn perform<'a>(
        &'a mut self,
        inv: &'a Invocation,
        rpc: &'a mut dyn Rpc,
    ) -> Pin<Box<dyn Future<Output = Outcome> + Send + 'a>> {
        Box::pin(async move {
            match inv.f {
                "send" => self.send(inv, rpc).await,
                "poll" => self.poll(rpc).await,
                "assign" => self.assign(inv, rpc).await,
                _ => Outcome::Crash,
            }
        })
    }

    fn final_done(&self) -> bool {
        let known = self.known.lock().expect("known lock");
        known
            .iter()
            .all(|(k, o)| self.polled.get(k).is_some_and(|p| p >= o))
    }
}

impl Workload for Kafka {
    fn name(&self) -> &'static str {
        "kafka"
    }

    fn functions(&self) -> &'static [&'static str] {
        &["send", "poll", "assign", "crash"]
    }

    fn about(&self) -> &'static str {
        "A Kafka-style replicated log: clients send messages to append-only logs under string \
         keys, poll them from an offset and commit the offsets they have processed. Each \
         client keeps its assigned keys and next offsets, and crashes about every 30 s, losing \
         that state. After a 10 s recovery wait every client re-reads every key from the \
         beginning. Checked for lost writes, duplicates, offsets that change or go backwards, \
         and polls that skip messages; plots land beside the results."
    }

    fn rpcs(&self) -> &'static [RpcSpec] {
        RPCS
    }

    fn idempotent(&self) -> &'static [&'static str] {
        &["assign"]
    }

    fn generator(&self) -> Box<dyn Generator> {
        Box::new(Gen {
            pool: KeyPool::new(self.key_count, self.max_writes_per_key),
            unpolled: BTreeSet::new(),
            crash_gap: CRASH_EVERY.as_secs_f64() / self.concurrency as f64,
            next_crash: None,
        })
    }

    fn client(&self) -> Option<Box<dyn ClientLogic>> {
        Some(Box::new(KafkaClient {
            offsets: BTreeMap::new(),
            polled: HashMap::new(),
            known: Arc::clone(&self.known),
        }))
    }

    fn complete(&self, _inv: &Invocation, _reply: &Map<String, Value>) -> Result<Edn, String> {
        Err("kafka operations are completed by their client".into())
    }

    fn check(&self, ops: &[Op], _ctx: &CheckContext) -> Edn {
        crate::checker::kafka::check(ops)
    }
}
