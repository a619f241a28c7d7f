//! txn-list-append and txn-rw-register (spec §9.7, §9.8): `{"type":"txn","txn":[[F,K,V],…]}`
//! → `txn_ok` with every read filled in. Both share the key pool: `--key-count` active integer
//! keys picked with an exponential distribution favouring low ranks, values unique per key
//! from 1, and a key retired for the next unused one after `--max-writes-per-key` writes.
//! Checked Elle-style (see `checker::elle`). txn-rw-register adds a final phase that reads
//! every key ever written, so that converged final reads reveal the version order (G0).

use super::{
    CheckContext, Field, FinalPhase, Generator, Invocation, Kind, RpcSpec, Workload, body,
};
use crate::checker::elle::{self, TxnKind};
use crate::edn::{Edn, kw};
use crate::history::Op;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value, json};
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

/// Keys per final read transaction.
const FINAL_READ_KEYS: usize = 64;

pub struct Txn {
    kind: TxnKind,
    key_count: usize,
    max_txn_length: usize,
    max_writes_per_key: u64,
}

impl Txn {
    pub fn new(kind: TxnKind, key_count: u64, max_txn_length: u64, max_writes_per_key: u64) -> Txn {
        Txn {
            kind,
            key_count: key_count.max(1) as usize,
            max_txn_length: max_txn_length.max(1) as usize,
            max_writes_per_key: max_writes_per_key.max(1),
        }
    }

    fn write_name(&self) -> &'static str {
        match self.kind {
            TxnKind::ListAppend => "append",
            TxnKind::RwRegister => "w",
        }
    }
}

const LIST_APPEND_RPCS: &[RpcSpec] = &[RpcSpec {
    request: "txn",
    about: "Runs a transaction of reads and appends, in order.",
    request_fields: &[Field {
        name: "txn",
        kind: Kind::Array,
        about: "micro-ops `[\"r\", k, null]` (read key k) and `[\"append\", k, v]` (append v to \
                the list at k); integer keys and values",
    }],
    reply_fields: &[Field {
        name: "txn",
        kind: Kind::Array,
        about: "the same micro-ops in the same order, each read's `null` replaced by the whole \
                list (or `null` for a missing key)",
    }],
}];

const RW_REGISTER_RPCS: &[RpcSpec] = &[RpcSpec {
    request: "txn",
    about: "Runs a transaction of reads and writes, in order.",
    request_fields: &[Field {
        name: "txn",
        kind: Kind::Array,
        about: "micro-ops `[\"r\", k, null]` (read key k) and `[\"w\", k, v]` (write v to k); \
                integer keys and values",
    }],
    reply_fields: &[Field {
        name: "txn",
        kind: Kind::Array,
        about: "the same micro-ops in the same order, each read's `null` replaced by the value \
                read (or `null` for a missing key)",
    }],
}];

/// The shared key pool and value counters.
pub struct KeyPool {
    active: Vec<i64>,
    next_key: i64,
    writes: HashMap<i64, u64>,
    next_value: HashMap<i64, i64>,
    max_writes: u64,
    /// Every key a write was generated for.
    pub written: BTreeSet<i64>,
}

impl KeyPool {
    pub fn new(key_count: usize, max_writes: u64) -> KeyPool {
        KeyPool {
            active: (0..key_count as i64).collect(),
            next_key: key_count as i64,
            writes: HashMap::new(),
            next_value: HashMap::new(),
            max_writes,
            written: BTreeSet::new(),
        }
    }

    /// A key: rank r has probability 2^-(r+1), so low ranks are hot.
    pub fn pick(&self, rng: &mut ChaCha8Rng) -> (usize, i64) {
        let u: f64 = rng.gen_range(f64::EPSILON..1.0);
        let rank = ((-u.log2()).floor() as usize).min(self.active.len() - 1);
        (rank, self.active[rank])
    }

    /// The next unique value for the key in `slot`; retires the key when it is used up.
    pub fn write(&mut self, slot: usize) -> (i64, i64) {
        let k = self.active[slot];
        let v = self.next_value.entry(k).or_insert(0);
        *v += 1;
        let v = *v;
        self.written.insert(k);
        let n = self.writes.entry(k).or_insert(0);
        *n += 1;
        if *n >= self.max_writes {
            self.active[slot] = self.next_key;
            self.next_key += 1;
        }
        (k, v)
    }
}

struct Gen {
    pool: KeyPool,
    max_len: usize,
    write_name: &'static str,
    kind: TxnKind,
}

fn micro_op(f: &str, k: i64, v: Option<i64>) -> (Edn, Value) {
    let edn = Edn::Vector(vec![kw(f), Edn::Int(k), v.map_or(Edn::Nil, Edn::Int)]);
    (edn, json!([f, k, v]))
}

impl Generator for Gen {
    fn next(&mut self, rng: &mut ChaCha8Rng, _thread: usize, _process: u64) -> Invocation {
        let len = rng.gen_range(1..=self.max_len);
        let (mut edn, mut json) = (Vec::with_capacity(len), Vec::with_capacity(len));
        for _ in 0..len {
            let (slot, k) = self.pool.pick(rng);
            let (e, j) = if rng.gen_bool(0.5) {
                micro_op("r", k, None)
            } else {
                let (k, v) = self.pool.write(slot);
                micro_op(self.write_name, k, Some(v))
            };
            edn.push(e);
            json.push(j);
        }
        Invocation {
            f: "txn",
            value: Edn::Vector(edn),
            body: body("txn", [("txn", Value::Array(json))]),
        }
    }

    fn final_phase(&mut self) -> FinalPhase {
        if self.kind != TxnKind::RwRegister {
            return FinalPhase::default();
        }
        let keys: Vec<i64> = self.pool.written.iter().copied().collect();
        let ops = keys
            .chunks(FINAL_READ_KEYS)
            .map(|chunk| {
                let (edn, json): (Vec<Edn>, Vec<Value>) =
                    chunk.iter().map(|k| micro_op("r", *k, None)).unzip();
                Invocation {
                    f: "txn",
                    value: Edn::Vector(edn),
                    body: body("txn", [("txn", Value::Array(json))]),
                }
            })
            .collect();
        FinalPhase {
            ops,
            tagged: true,
            retries: 5,
            cap: Some(Duration::from_secs(10)),
            repeat_last_every: None,
        }
    }
}

impl Workload for Txn {
    fn name(&self) -> &'static str {
        match self.kind {
            TxnKind::ListAppend => "txn-list-append",
            TxnKind::RwRegister => "txn-rw-register",
        }
    }

    fn functions(&self) -> &'static [&'static str] {
        &["txn"]
    }

    fn reusable_clients(&self) -> bool {
        true
    }

    fn about(&self) -> &'static str {
        match self.kind {
            TxnKind::ListAppend => {
                "Transactions over lists: each transaction reads whole lists and appends unique \
                 values to them, over `--key-count` active integer keys (a key retires after \
                 `--max-writes-per-key` appends), with up to `--max-txn-length` micro-ops. \
                 Checked Elle-style for the anomalies `--consistency-models` forbids; cycles \
                 and their explanations land in `elle/`."
            }
            TxnKind::RwRegister => {
                "Transactions over registers: each transaction reads and writes unique values \
                 to registers, over `--key-count` active integer keys, with up to \
                 `--max-txn-length` micro-ops. After a 10 s recovery wait every thread reads \
                 every key ever written (`:final? true`), so that converged final reads give \
                 the version order. Checked Elle-style for the anomalies \
                 `--consistency-models` forbids, G0 included; results land in `elle/`."
            }
        }
    }

    fn rpcs(&self) -> &'static [RpcSpec] {
        match self.kind {
            TxnKind::ListAppend => LIST_APPEND_RPCS,
            TxnKind::RwRegister => RW_REGISTER_RPCS,
        }
    }

    fn generator(&self) -> Box<dyn Generator> {
        Box::new(Gen {
            pool: KeyPool::new(self.key_count, self.max_writes_per_key),
            max_len: self.max_txn_length,
            write_name: self.write_name(),
            kind: self.kind,
        })
    }

    fn complete(&self, inv: &Invocation, reply: &Map<String, Value>) -> Result<Edn, String> {
        super::check_reply(self.rpcs(), "txn", reply)?;
        let got = reply["txn"].as_array().expect("checked");
        let Edn::Vector(sent) = &inv.value else {
            return Err("the request was not a transaction".into());
        };
        if got.len() != sent.len() {
            return Err(format!(
                "txn_ok has {} micro-ops, the request had {}",
                got.len(),
                sent.len()
            ));
        }
        let mut out = Vec::with_capacity(sent.len());
        for (i, (mine, theirs)) in sent.iter().zip(got).enumerate() {
            let t = theirs
                .as_array()
                .filter(|a| a.len() == 3)
                .ok_or_else(|| format!("micro-op {i} must be an array [f, k, v], got {theirs}"))?;
            let f = t[0].as_str().unwrap_or("");
            let Edn::Vector(m) = mine else {
                unreachable!("the generator builds vectors")
            };
            let mine_f = match &m[0] {
                Edn::Keyword(f) => f.as_str(),
                _ => "",
            };
            if f != mine_f {
                return Err(format!(
                    "micro-op {i} is {f:?}, the request's is {mine_f:?}"
                ));
            }
            if f == "r" {
                let v = &t[2];
                if self.kind == TxnKind::ListAppend && !(v.is_array() || v.is_null()) {
                    return Err(format!(
                        "micro-op {i}: a read's value must be an array or null, got {v}"
                    ));
                }
                out.push(Edn::Vector(vec![
                    m[0].clone(),
                    m[1].clone(),
                    Edn::from_json(v),
                ]));
            } else {
                out.push(mine.clone());
            }
        }
        Ok(Edn::Vector(out))
    }

    fn check(&self, ops: &[Op], ctx: &CheckContext) -> Edn {
        elle::check(ops, self.kind, ctx)
    }
}
