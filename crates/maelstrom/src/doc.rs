//! `maelstrom doc`: writes `workloads.md` and `protocol.md` from the registries the runner
//! itself uses — each workload's [`RpcSpec`] table (which also validates replies), the error
//! registry ([`maelstrom_services::errors`]) and the services' own descriptions — so the docs
//! say what the code does.

use crate::workload::{self, Field, RpcSpec, Workload, WorkloadOptions};
use maelstrom_services::ServiceKind;
use maelstrom_services::errors::ERRORS;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Writes both documents into `out` (created if missing) and returns their paths.
pub fn write(out: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out)?;
    let mut written = Vec::new();
    for (name, text) in [
        ("workloads.md", workloads_md()),
        ("protocol.md", protocol_md()),
    ] {
        let path = out.join(name);
        std::fs::write(&path, text)?;
        written.push(path);
    }
    Ok(written)
}

/// Every workload, as the runner builds it with the command line's defaults.
fn all_workloads() -> Vec<Box<dyn Workload>> {
    let opts = WorkloadOptions::defaults(vec!["n0".into()], 1);
    workload::ALL
        .iter()
        .map(|w| workload::by_name(w, &opts).expect("every listed workload exists"))
        .collect()
}

/// A JSON skeleton of a body: `{"type": "add", "msg_id": 1, "element": <integer>}`.
fn skeleton(msg_type: &str, id_field: &str, fields: &[Field]) -> String {
    let mut s = format!("{{\"type\": \"{msg_type}\", \"{id_field}\": 1");
    for f in fields {
        let _ = write!(s, ", \"{}\": <{}>", f.name, f.kind.name());
    }
    s.push('}');
    s
}

fn field_table(s: &mut String, fields: &[Field]) {
    if fields.is_empty() {
        return;
    }
    s.push_str("\n| Field | Type | Holds |\n|---|---|---|\n");
    for f in fields {
        let _ = writeln!(s, "| `{}` | {} | {} |", f.name, f.kind.name(), f.about);
    }
}

fn rpc_section(s: &mut String, rpc: &RpcSpec) {
    let _ = write!(
        s,
        "\n### RPC: `{}`\n\n{}\n\nRequest:\n\n```json\n{}\n```\n",
        rpc.request,
        rpc.about,
        skeleton(rpc.request, "msg_id", rpc.request_fields)
    );
    field_table(s, rpc.request_fields);
    let _ = write!(
        s,
        "\nReply:\n\n```json\n{}\n```\n",
        skeleton(
            &format!("{}_ok", rpc.request),
            "in_reply_to",
            rpc.reply_fields
        )
    );
    field_table(s, rpc.reply_fields);
}

fn list(fs: &[&str]) -> String {
    fs.iter()
        .map(|f| format!("`:{f}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `workloads.md`: every workload, its RPCs and how failures are recorded.
pub fn workloads_md() -> String {
    let workloads = all_workloads();
    let mut s = String::from(
        "# Workloads\n\n\
         Written by `maelstrom doc` from the tables the runner validates replies with; do not edit \
         by hand. Every request also carries a `msg_id`, and every reply must carry \
         `in_reply_to` with that id. Replies may hold extra fields; the listed ones must be \
         present with the listed JSON type (an integer may be written as an integral float such \
         as `3.0`), or the operation is recorded as `:info` with `:error [:malformed-response \
         \"<reason>\"]`. A node may instead answer with an error body (see `protocol.md`).\n\n",
    );
    for w in &workloads {
        let _ = writeln!(s, "- [{}](#{})", w.name(), w.name());
    }
    for w in &workloads {
        let _ = write!(s, "\n## {}\n\n{}\n\n", w.name(), w.about());
        let _ = writeln!(
            s,
            "- Run with `maelstrom test -w {} --bin <your node>`.",
            w.name()
        );
        let _ = writeln!(s, "- History operations: {}.", list(w.functions()));
        let fixed = w.timeout(0);
        if fixed == w.timeout(1_000) {
            let _ = writeln!(
                s,
                "- A request without a reply within {} ms times out.",
                fixed.as_millis()
            );
        } else {
            let _ = writeln!(
                s,
                "- A request without a reply within {} ms (or 10 × `--latency`, if larger) times out.",
                fixed.as_millis()
            );
        }
        if w.never_fails() {
            s.push_str(
                "- Failures are never `:fail`: every timeout and error reply is recorded as \
                 `:info`, since the operation may have happened.\n",
            );
        } else if w.idempotent().is_empty() {
            s.push_str(
                "- A definite error reply is recorded as `:fail`; timeouts and indefinite errors \
                 as `:info`.\n",
            );
        } else {
            let _ = writeln!(
                s,
                "- A definite error reply is recorded as `:fail`; timeouts and indefinite errors \
                 as `:info`, except that any failure of {} is `:fail`, since it changes nothing.",
                list(w.idempotent())
            );
        }
        if w.reusable_clients() {
            s.push_str("- A client keeps its connection after an `:info` result.\n");
        } else {
            s.push_str(
                "- After an `:info` result the client is replaced by a fresh one (a new `c<k>`); \
                 late replies to the old one are dropped.\n",
            );
        }
        for rpc in w.rpcs() {
            rpc_section(&mut s, rpc);
        }
    }
    s
}

/// `protocol.md`: the envelope, the handshake, errors and the services.
pub fn protocol_md() -> String {
    let mut s = String::from(
        "# Protocol\n\n\
         Written by `maelstrom doc`; do not edit by hand.\n\n\
         ## Messages\n\n\
         A node is a program that reads messages from stdin and writes messages to stdout, one \
         JSON object per line. Anything it writes to stderr is logged to \
         `store/<test>/node-logs/<node>.log`. A message has a source, a destination and a body:\n\n\
         ```json\n{\"src\": \"c1\", \"dest\": \"n1\", \"body\": {\"type\": \"echo\", \"msg_id\": 1, \"echo\": \"hi\"}}\n```\n\n\
         Delivered messages also carry a top-level integer `id`, which nodes may ignore. Nodes \
         are named `n0`, `n1`, … (`--node-count`), clients `c0`, `c1`, …, and the built-in \
         services `lin-kv`, `seq-kv`, `lww-kv` and `lin-tso`; an id is a client's if it starts \
         with `c`.\n\n\
         The body's `type` names the message. A request carries a `msg_id`, unique among the \
         sender's requests; a reply carries `in_reply_to` with the request's `msg_id`, and \
         conventionally the type `<request type>_ok`. A node may send any message to any other \
         node or service; messages between nodes go through the simulated network, with \
         `--latency` and the faults of `--nemesis`.\n\n\
         A line that is not a JSON object with `src`, `dest` and `body`, or that names an \
         unknown destination, is logged as a warning, counted under `:net :dropped` in the \
         results, and dropped; the node's later lines are still read.\n\n\
         ## Initialization\n\n\
         Before anything else, every node receives\n\n\
         ```json\n{\"type\": \"init\", \"msg_id\": 1, \"node_id\": \"n3\", \"node_ids\": [\"n1\", \"n2\", \"n3\"]}\n```\n\n\
         and must answer `{\"type\": \"init_ok\", \"in_reply_to\": 1}` within 10 s. `node_id` \
         is the node's own id, to use as `src` of everything it sends; `node_ids` lists every \
         node, itself included, in the same order for all.\n\n\
         ## Errors\n\n\
         A request that cannot be served gets an error reply:\n\n\
         ```json\n{\"type\": \"error\", \"in_reply_to\": 5, \"code\": 11, \"text\": \"no leader yet\"}\n```\n\n\
         `text` is optional and extra fields are allowed. Codes 0–999 are reserved; 1000 and up \
         are free for your own, and are treated as indefinite. *Definite* errors mean the \
         operation did not and will not happen; after an *indefinite* one it may have happened, \
         or may yet happen. The history records a definite error as `:fail` and an indefinite \
         one as `:info`, as `workloads.md` details per workload.\n\n\
         | Code | Name | Definite | Meaning |\n|---:|---|:---:|---|\n",
    );
    for e in ERRORS {
        let _ = writeln!(
            s,
            "| {} | `{}` | {} | {} |",
            e.code,
            e.name,
            if e.definite { "yes" } else { "no" },
            e.meaning
        );
    }
    s.push_str(
        "\n## Services\n\n\
         Every test runs four services, addressed like nodes. They answer one request at a time, \
         in arrival order, with network latency both ways, and are never partitioned. Keys and \
         values are any JSON, compared structurally (`1`, `1.0` and `\"1\"` differ). A request \
         with an unknown `type` gets error 10, one with a missing or ill-typed field error 12.\n",
    );
    for kind in ServiceKind::ALL {
        let _ = write!(s, "\n### `{}`\n\n{}\n\n", kind.id(), kind.about());
        s.push_str("| Request | Reply | Errors |\n|---|---|---|\n");
        for (request, reply, errors) in kind.requests() {
            let _ = writeln!(s, "| `{request}` | `{reply}` | {errors} |");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_workload_rpc_and_error_is_documented() {
        let w = workloads_md();
        for name in workload::ALL {
            assert!(w.contains(&format!("\n## {name}\n")), "{name}");
        }
        for rpc in ["topology", "broadcast", "generate", "cas", "txn", "poll"] {
            assert!(w.contains(&format!("### RPC: `{rpc}`")), "{rpc}");
        }
        assert!(w.contains(r#"{"type": "add", "msg_id": 1, "element": <integer>}"#));
        let p = protocol_md();
        for e in ERRORS {
            assert!(p.contains(&format!("| {} | `{}` |", e.code, e.name)));
        }
        for kind in ServiceKind::ALL {
            assert!(p.contains(&format!("### `{}`", kind.id())));
        }
    }
}
