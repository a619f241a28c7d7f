//! echo (spec §9.1): `{"type":"echo","echo":V}` → `{"type":"echo_ok","echo":V}`.
//! Every invocation needs an `:ok` completion echoing its value.

use super::{Field, Generator, Invocation, Kind, RpcSpec, Workload, body, check_reply};
use crate::edn::{Edn, map};
use crate::history::{self, Op, OpType};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value};

pub struct Echo;

const RPCS: &[RpcSpec] = &[RpcSpec {
    request: "echo",
    about: "Sends a value; the node sends it back.",
    request_fields: &[Field {
        name: "echo",
        kind: Kind::String,
        about: "`\"Please echo <n>\"`, n in 0..127",
    }],
    reply_fields: &[Field {
        name: "echo",
        kind: Kind::Any,
        about: "the request's `echo`, unchanged",
    }],
}];

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

    fn about(&self) -> &'static str {
        "A simple echo workload: clients send a message and expect to get the same message \
         back. Every invocation must complete `:ok` with the value it sent; timeouts and \
         errors count against it. No final phase."
    }

    fn rpcs(&self) -> &'static [RpcSpec] {
        RPCS
    }

    fn generator(&self) -> Box<dyn Generator> {
        Box::new(Gen)
    }

    fn complete(&self, _inv: &Invocation, reply: &Map<String, Value>) -> Result<Edn, String> {
        check_reply(RPCS, "echo", reply)?;
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
