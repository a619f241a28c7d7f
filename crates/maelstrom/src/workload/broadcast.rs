//! broadcast (spec §9.3): `topology` once per node at setup, then `broadcast {message}` of
//! 0, 1, 2, … and `read` → `{messages: [...]}`, half each; a final read per thread. Checked by
//! set-full: every acknowledged message must end up in every later read.

use super::{
    Field, FinalPhase, Generator, Invocation, Kind, RpcSpec, Workload, WorkloadOptions, body,
    check_reply,
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

const RPCS: &[RpcSpec] = &[
    RpcSpec {
        request: "topology",
        about: "Sent once to every node during setup (a failure aborts the test). Nodes may use \
                the suggested neighbours or ignore them.",
        request_fields: &[Field {
            name: "topology",
            kind: Kind::Object,
            about: "every node's neighbours, e.g. `{\"n0\": [\"n1\"], \"n1\": [\"n0\"]}`; \
                    shaped by `--topology`",
        }],
        reply_fields: &[],
    },
    RpcSpec {
        request: "broadcast",
        about: "Asks the node to spread a message to every node in the cluster.",
        request_fields: &[Field {
            name: "message",
            kind: Kind::Integer,
            about: "0, 1, 2, …: each message is sent once",
        }],
        reply_fields: &[],
    },
    RpcSpec {
        request: "read",
        about: "Asks for every message the node has seen.",
        request_fields: &[],
        reply_fields: &[Field {
            name: "messages",
            kind: Kind::Array,
            about: "the messages, in any order",
        }],
    },
];

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

    fn about(&self) -> &'static str {
        "A broadcast system: clients broadcast unique integers to any node and read the set \
         each node has seen, half and half. After the main phase and a 10 s recovery wait every \
         thread reads once more (`:final? true`). Checked as a set: every acknowledged message \
         must be in every read that starts after it is stable; the result gives lost and stale \
         messages and stable latencies (how long a message took to reach every read)."
    }

    fn rpcs(&self) -> &'static [RpcSpec] {
        RPCS
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
                check_reply(RPCS, "broadcast", reply)?;
                Ok(inv.value.clone())
            }
            _ => {
                check_reply(RPCS, "read", reply)?;
                Ok(Edn::from_json(&reply["messages"]))
            }
        }
    }

    fn check(&self, ops: &[Op], _ctx: &super::CheckContext) -> Edn {
        set_full::check(ops, "broadcast")
    }
}
