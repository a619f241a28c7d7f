//! unique-ids (spec §9.2): `{"type":"generate"}` → `{"type":"generate_ok","id":ID}`. Valid when
//! no two acknowledged ids are equal (compared structurally).

use super::{Field, Generator, Invocation, Kind, RpcSpec, Workload, body, check_reply};
use crate::edn::{Edn, map};
use crate::history::{Op, OpType};
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value};
use std::cmp::Ordering;
use std::collections::HashMap;

pub struct UniqueIds;

const RPCS: &[RpcSpec] = &[RpcSpec {
    request: "generate",
    about: "Asks for an id that no other `generate` anywhere in the cluster has returned.",
    request_fields: &[],
    reply_fields: &[Field {
        name: "id",
        kind: Kind::Any,
        about: "the id: any JSON value (string, number, array, …), compared structurally",
    }],
}];

struct Gen;

impl Generator for Gen {
    fn next(&mut self, _rng: &mut ChaCha8Rng, _thread: usize, _process: u64) -> Invocation {
        Invocation {
            f: "generate",
            value: Edn::Nil,
            body: body("generate", []),
        }
    }
}

/// A total order over JSON values: by type, then by value, so mixed types never fail.
fn json_order(a: &Value, b: &Value) -> Ordering {
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Null => 0,
            Value::Bool(_) => 1,
            Value::Number(_) => 2,
            Value::String(_) => 3,
            Value::Array(_) => 4,
            Value::Object(_) => 5,
        }
    }
    rank(a).cmp(&rank(b)).then_with(|| match (a, b) {
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .unwrap_or(0.0)
            .total_cmp(&y.as_f64().unwrap_or(0.0)),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        _ => a.to_string().cmp(&b.to_string()),
    })
}

impl Workload for UniqueIds {
    fn name(&self) -> &'static str {
        "unique-ids"
    }

    fn functions(&self) -> &'static [&'static str] {
        &["generate"]
    }

    fn reusable_clients(&self) -> bool {
        true
    }

    fn about(&self) -> &'static str {
        "A globally unique ID generation workload: clients ask any node for a fresh id. Valid \
         when no two acknowledged ids are equal; the result counts attempts, acknowledgements \
         and duplicates and gives the range of ids seen. Meant to be totally available, so \
         it is often run with `--availability total` under partitions."
    }

    fn rpcs(&self) -> &'static [RpcSpec] {
        RPCS
    }

    fn generator(&self) -> Box<dyn Generator> {
        Box::new(Gen)
    }

    fn complete(&self, _inv: &Invocation, reply: &Map<String, Value>) -> Result<Edn, String> {
        check_reply(RPCS, "generate", reply)?;
        Ok(Edn::from_json(&reply["id"]))
    }

    fn check(&self, ops: &[Op], _ctx: &super::CheckContext) -> Edn {
        let attempted = ops
            .iter()
            .filter(|o| o.is_client() && o.op_type == OpType::Invoke)
            .count();
        let ids: Vec<Value> = ops
            .iter()
            .filter(|o| o.is_client() && o.op_type == OpType::Ok)
            .map(|o| o.value.to_json())
            .collect();
        let mut counts: HashMap<String, (usize, &Value)> = HashMap::new();
        for id in &ids {
            counts.entry(id.to_string()).or_insert((0, id)).0 += 1;
        }
        let mut dups: Vec<(&Value, usize)> = counts
            .values()
            .filter(|(n, _)| *n > 1)
            .map(|(n, v)| (*v, *n))
            .collect();
        dups.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| json_order(a.0, b.0)));
        let duplicated_count = dups.len();
        let range = match (
            ids.iter().min_by(|a, b| json_order(a, b)),
            ids.iter().max_by(|a, b| json_order(a, b)),
        ) {
            (Some(lo), Some(hi)) => Edn::Vector(vec![Edn::from_json(lo), Edn::from_json(hi)]),
            _ => Edn::Vector(vec![]),
        };
        let dup_map = Edn::Map(
            dups.into_iter()
                .take(48)
                .map(|(v, n)| (Edn::from_json(v), Edn::Int(n as i64)))
                .collect(),
        );
        map([
            ("valid?", Edn::Bool(duplicated_count == 0)),
            ("attempted-count", Edn::Int(attempted as i64)),
            ("acknowledged-count", Edn::Int(ids.len() as i64)),
            ("duplicated-count", Edn::Int(duplicated_count as i64)),
            ("duplicated", dup_map),
            ("range", range),
        ])
    }
}
