//! g-set (spec §9.4): `add {element}` → `add_ok`, `read` → `{value: [...]}`; a final read per
//! thread (not tagged `:final?`). Checked by set-full. Failures are never `:fail`.

use super::broadcast::AddOrRead;
use super::{Generator, Invocation, Kind, Workload, expect_fields};
use crate::checker::set_full;
use crate::edn::Edn;
use crate::history::Op;
use serde_json::{Map, Value};

pub struct GSet;

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
                expect_fields("add", reply, &[])?;
                Ok(inv.value.clone())
            }
            _ => {
                expect_fields("read", reply, &[("value", Kind::Array)])?;
                Ok(Edn::from_json(&reply["value"]))
            }
        }
    }

    fn check(&self, ops: &[Op], _ctx: &super::CheckContext) -> Edn {
        set_full::check(ops, "add")
    }
}
