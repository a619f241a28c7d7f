//! broadcast (spec §9.3): `topology` once per node at setup, then `broadcast {message}` of
//! 0, 1, 2, … and `read` → `{messages: [...]}`, half each; a final read per thread. Checked by
//! set-full: every acknowledged message must end up in every later read.

use super::{
    FinalPhase, Generator, Invocation, Kind, Workload, WorkloadOptions, body, expect_fields,
};
use crate::checker::set_full;
use crate::edn::Edn;
use crate::history::Op;
use maelstrom_services::topology::Topology;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value};

pub struct Broadcast {
    topology: Value,
}

impl Broadcast {
    pub fn new(opts: &WorkloadOptions) -> Broadcast {
        let topology: Topology = opts.topology;
        Broadcast {
            topology: topology.to_json(&opts.nodes),
        }
    }
}

/// Broadcasts of unique integers mixed with reads; shared with g-set.
pub struct AddOrRead {
    pub next: i64,
    pub add_f: &'static str,
    pub add_field: &'static str,
    /// Broadcast tags its final reads `:final?`; g-set does not.
    pub final_tagged: bool,
}

impl Generator for AddOrRead {
    fn next(&mut self, rng: &mut ChaCha8Rng, _thread: usize, _process: u64) -> Invocation {
        if rng.gen_bool(0.5) {
            let v = self.next;
            self.next += 1;
            let msg_type = if self.add_f == "broadcast" {
                "broadcast"
            } else {
                "add"
            };
            Invocation {
                f: self.add_f,
                value: Edn::Int(v),
                body: body(msg_type, [(self.add_field, Value::from(v))]),
            }
        } else {
            Invocation::read()
        }
    }

    fn final_phase(&mut self) -> FinalPhase {
        FinalPhase::read(self.final_tagged)
    }
}

impl Workload for Broadcast {
    fn name(&self) -> &'static str {
        "broadcast"
    }

    fn functions(&self) -> &'static [&'static str] {
        &["broadcast", "read"]
    }

    fn idempotent(&self) -> &'static [&'static str] {
        &["read"]
    }

    fn setup(&self, _node: &str) -> Option<Map<String, Value>> {
        Some(body("topology", [("topology", self.topology.clone())]))
    }

    fn generator(&self) -> Box<dyn Generator> {
        Box::new(AddOrRead {
            next: 0,
            add_f: "broadcast",
            add_field: "message",
            final_tagged: true,
        })
    }

    fn complete(&self, inv: &Invocation, reply: &Map<String, Value>) -> Result<Edn, String> {
        match inv.f {
            "broadcast" => {
                expect_fields("broadcast", reply, &[])?;
                Ok(inv.value.clone())
            }
            _ => {
                expect_fields("read", reply, &[("messages", Kind::Array)])?;
                Ok(Edn::from_json(&reply["messages"]))
            }
        }
    }

    fn check(&self, ops: &[Op], _ctx: &super::CheckContext) -> Edn {
        set_full::check(ops, "broadcast")
    }
}
