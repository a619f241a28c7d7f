//! echo (spec §9.1): `{"type":"echo","echo":V}` → `{"type":"echo_ok","echo":V}`.
//! Every invocation needs an `:ok` completion echoing its value.

use super::{Generator, Invocation, Kind, Workload, body, expect_fields};
use crate::edn::{Edn, map};
use crate::history::{self, Op, OpType};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value};

pub struct Echo;

struct Gen;

impl Generator for Gen {
    fn next(&mut self, rng: &mut ChaCha8Rng, _thread: usize, _process: u64) -> Invocation {
        let text = format!("Please echo {}", rng.gen_range(0..128));
        Invocation {
            f: "echo",
            value: Edn::Str(text.clone()),
            body: body("echo", [("echo", Value::String(text))]),
        }
    }
}

impl Workload for Echo {
    fn name(&self) -> &'static str {
        "echo"
    }

    fn functions(&self) -> &'static [&'static str] {
        &["echo"]
    }

    fn generator(&self) -> Box<dyn Generator> {
        Box::new(Gen)
    }

    fn complete(&self, _inv: &Invocation, reply: &Map<String, Value>) -> Result<Edn, String> {
        expect_fields("echo", reply, &[("echo", Kind::Any)])?;
        Ok(Edn::from_json(&Value::Object(reply.clone())))
    }

    fn check(&self, ops: &[Op], _ctx: &super::CheckContext) -> Edn {
        let mut errors = Vec::new();
        for (inv, done) in history::pairs(ops) {
            let echoed = match done {
                Some(c) if c.op_type == OpType::Ok => c.value.get("echo").cloned(),
                _ => None,
            };
            if echoed.as_ref() != Some(&inv.value) {
                let received = done.map_or(Edn::Nil, |c| {
                    if c.op_type == OpType::Ok {
                        c.value.clone()
                    } else {
                        c.error.clone().unwrap_or(Edn::Nil)
                    }
                });
                errors.push(Edn::Vector(vec![
                    Edn::Str("Expected a message with :echo".into()),
                    inv.value.clone(),
                    Edn::Str("But received".into()),
                    received,
                ]));
            }
        }
        let valid = errors.is_empty();
        map([
            ("valid?", Edn::Bool(valid)),
            ("errors", Edn::Vector(errors)),
        ])
    }
}
