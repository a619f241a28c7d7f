//! g-set (spec §9.4): `add {element}` → `add_ok`, `read` → `{value: [...]}`; a final read per
//! thread (not tagged `:final?`). Checked by set-full. Failures are never `:fail`.

use super::broadcast::AddOrRead;
use super::{Field, Generator, Invocation, Kind, RpcSpec, Workload, check_reply};
use crate::checker::set_full;
use crate::edn::Edn;
use crate::history::Op;
use serde_json::{Map, Value};

pub struct GSet;

const RPCS: &[RpcSpec] = &[
    RpcSpec {
        request: "add",
        about: "Adds an element to the set.",
        request_fields: &[Field {
            name: "element",
            kind: Kind::Integer,
            about: "0, 1, 2, …: each element is added once",
        }],
        reply_fields: &[],
    },
    RpcSpec {
        request: "read",
        about: "Asks for the whole set as this node knows it.",
        request_fields: &[],
        reply_fields: &[Field {
            name: "value",
            kind: Kind::Array,
            about: "the elements, in any order (the field is `value`, not `elements`)",
        }],
    },
];

impl Workload for GSet {
    fn name(&self) -> &'static str {
        "g-set"
    }

    fn functions(&self) -> &'static [&'static str] {
        &["add", "read"]
    }

    fn never_fails(&self) -> bool {
        true
    }

    fn about(&self) -> &'static str {
        "A grow-only set: clients add unique integers and read the whole set, half and half. \
         After a 10 s recovery wait every thread reads once more. Checked as a set: every \
         acknowledged element must appear in every read that starts after it is stable."
    }

    fn rpcs(&self) -> &'static [RpcSpec] {
        RPCS
    }

    fn generator(&self) -> Box<dyn Generator> {
        Box::new(AddOrRead {
            next: 0,
            add_f: "add",
            add_field: "element",
            final_tagged: false,
        })
    }

    fn complete(&self, inv: &Invocation, reply: &Map<String, Value>) -> Result<Edn, String> {
        match inv.f {
            "add" => {
                check_reply(RPCS, "add", reply)?;
                Ok(inv.value.clone())
            }
            _ => {
                check_reply(RPCS, "read", reply)?;
                Ok(Edn::from_json(&reply["value"]))
            }
        }
    }

    fn check(&self, ops: &[Op], _ctx: &super::CheckContext) -> Edn {
        set_full::check(ops, "add")
    }
}
