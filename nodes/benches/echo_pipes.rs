//! Echo round trips through real stdin/stdout pipes.
//!
//! Pipes N echo requests (after `init`) into a node process pinned to one CPU, reads every
//! reply, and reports messages per second for two nodes in the same run:
//! - `maelstrom-echo`, the library's example node (current-thread runtime);
//! - the anchor: a minimal hand-written synchronous echo loop (serde_json, no library), which
//!   this bench binary becomes when started with `ECHO_BENCH_ROLE=raw`.
//!
//! `cargo bench -p maelstrom-example-nodes --bench echo_pipes -- [--requests N] [--min-rate R]`
//! exits 1 if the library node answers fewer than R messages/s (default 100 000), or if its
//! rate relative to the anchor falls more than 10 % below the ratio recorded in
//! `benches/echo_pipes.baseline`. Results are written to `target/echo_pipes.json`.

use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn raw_echo() {
    let stdin = std::io::stdin();
    let mut input = BufReader::with_capacity(1 << 16, stdin.lock());
    let mut out = BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    let mut line = String::new();
    let mut next_id = 0u64;
    let mut me = String::new();
    while input.read_line(&mut line).unwrap() > 0 {
        let msg: serde_json::Value = serde_json::from_str(&line).unwrap();
        let body = &msg["body"];
        next_id += 1;
        let reply = if body["type"] == "init" {
            me = body["node_id"].as_str().unwrap().to_string();
            serde_json::json!({"type": "init_ok", "msg_id": next_id, "in_reply_to": body["msg_id"]})
        } else {
            serde_json::json!({"type": "echo_ok", "echo": body["echo"], "msg_id": next_id, "in_reply_to": body["msg_id"]})
        };
        serde_json::to_writer(
            &mut out,
            &serde_json::json!({"src": me, "dest": msg["src"], "body": reply}),
        )
        .unwrap();
        out.write_all(b"\n").unwrap();
        if input.buffer().is_empty() {
            out.flush().unwrap();
        }
        line.clear();
    }
    out.flush().unwrap();
}

/// Runs one node over pipes; returns replies per second.
fn measure(mut cmd: Command, requests: u64) -> f64 {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn node");
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let start = Instant::now();
    let writer = std::thread::spawn(move || {
        let mut w = BufWriter::with_capacity(1 << 16, &mut stdin);
        writeln!(w, r#"{{"id":0,"src":"c0","dest":"n0","body":{{"type":"init","msg_id":1,"node_id":"n0","node_ids":["n0"]}}}}"#).unwrap();
        for i in 1..=requests {
            writeln!(w, r#"{{"id":{i},"src":"c1","dest":"n0","body":{{"type":"echo","msg_id":{i},"echo":"Please echo {}"}}}}"#, i % 128).unwrap();
        }
        w.flush().unwrap();
        drop(w);
        drop(stdin); // EOF
    });
    let mut reader = BufReader::with_capacity(1 << 16, stdout);
    let mut line = String::new();
    let mut replies = 0u64;
    let mut echoes = 0u64;
    let mut last = String::new();
    while reader.read_line(&mut line).unwrap() > 0 {
        replies += 1;
        echoes += u64::from(line.contains("\"echo_ok\""));
        if replies == requests + 1 {
            last = line.clone();
            break;
        }
        line.clear();
    }
    let elapsed = start.elapsed();
    writer.join().unwrap();
    let mut rest = Vec::new();
    let _ = reader.read_to_end(&mut rest);
    let status = child.wait().unwrap();
    assert_eq!(replies, requests + 1, "every request answered");
    assert_eq!(echoes, requests, "every echo answered with echo_ok");
    assert!(
        last.contains("echo_ok") && last.contains(&format!("\"in_reply_to\":{requests}")),
        "last reply: {last}"
    );
    assert!(status.success(), "node exited with {status}");
    requests as f64
        / elapsed
            .as_secs_f64()
            .max(Duration::from_micros(1).as_secs_f64())
}

fn pinned(program: &str) -> Command {
    // Pin the node to CPU 0 (the driver runs on the other), as the spec's benchmark asks.
    let taskset_works = Command::new("taskset")
        .args(["-c", "0", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if taskset_works {
        let mut c = Command::new("taskset");
        c.args(["-c", "0", program]);
        c
    } else {
        Command::new(program)
    }
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    if std::env::var("ECHO_BENCH_ROLE").as_deref() == Ok("raw") {
        return raw_echo();
    }
    let requests: u64 = arg("--requests").map_or(1_000_000, |v| v.parse().expect("--requests N"));
    let min_rate: f64 = arg("--min-rate").map_or(100_000.0, |v| v.parse().expect("--min-rate R"));
    let me = std::env::current_exe().unwrap();
    let echo = env!("CARGO_BIN_EXE_maelstrom-echo");

    // The driver runs on CPU 1 so it never competes with the node; threads inherit this.
    let _ = Command::new("taskset")
        .args(["-cp", "1", &std::process::id().to_string()])
        .stdout(Stdio::null())
        .status();
    eprintln!(
        "echo_pipes: {requests} pipelined echo requests per node, node pinned to CPU 0, driver to CPU 1"
    );
    eprint!("  [1/2] maelstrom-echo (maelnode) ... ");
    let lib = measure(pinned(echo), requests);
    eprintln!("{lib:.0} msg/s");
    eprint!("  [2/2] anchor: hand-written synchronous echo ... ");
    let mut raw_cmd = pinned(me.to_str().unwrap());
    raw_cmd.env("ECHO_BENCH_ROLE", "raw");
    let raw = measure(raw_cmd, requests);
    eprintln!("{raw:.0} msg/s");
    let ratio = lib / raw;
    println!(
        "echo_pipes: maelnode {lib:.0} msg/s, hand-written anchor {raw:.0} msg/s, ratio {ratio:.3} ({requests} requests)"
    );

    let out = format!(
        "{{\"requests\":{requests},\"maelnode_msgs_per_s\":{lib:.0},\"anchor_msgs_per_s\":{raw:.0},\"ratio\":{ratio:.4}}}\n"
    );
    let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/echo_pipes.json");
    let _ = std::fs::write(&target, out);

    let mut failed = false;
    if lib < min_rate {
        eprintln!("FAIL: maelnode answered {lib:.0} msg/s, below the required {min_rate:.0}");
        failed = true;
    }
    let baseline_file =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/echo_pipes.baseline");
    if let Some(baseline) = std::fs::read_to_string(&baseline_file)
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok())
        && ratio < 0.9 * baseline
    {
        eprintln!(
            "FAIL: ratio to the anchor {ratio:.3} is more than 10% below the recorded baseline {baseline:.3}"
        );
        failed = true;
    }
    if failed {
        std::process::exit(1);
    }
}
