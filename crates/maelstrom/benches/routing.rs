//! Router throughput: lines written by node processes, parsed, validated, queued and delivered
//! to the destination's stdin channel, with no processes involved, so only the runner's own
//! cost is measured. Anchor in the same run: parsing the same lines with serde_json into a
//! `Value` and doing nothing else.
//!
//! `cargo bench -p maelstrom --bench routing` — prints messages per second for both.

use maelstrom::console::Console;
use maelstrom::net::{LatencyDist, Net, NetConfig};
use std::sync::Arc;
use std::time::Instant;

const NODES: usize = 25;
const MESSAGES: usize = 1_000_000;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let lines: Vec<(String, String)> = (0..MESSAGES)
        .map(|i| {
            let (src, dest) = (format!("n{}", i % NODES), format!("n{}", (i * 7 + 1) % NODES));
            let line = format!(r#"{{"src":"{src}","dest":"{dest}","body":{{"type":"gossip","msg_id":{i},"values":[{i},{}]}}}}"#, i + 1);
            (src, line)
        })
        .collect();

    eprintln!("routing: {MESSAGES} node-to-node messages among {NODES} nodes");
    eprint!("  [1/2] anchor: serde_json::from_str into a Value ... ");
    let t = Instant::now();
    let mut n = 0usize;
    for (_, l) in &lines {
        n += serde_json::from_str::<serde_json::Value>(l)
            .map(|v| v.as_object().map_or(0, |o| o.len()))
            .unwrap_or(0);
    }
    let anchor = MESSAGES as f64 / t.elapsed().as_secs_f64();
    eprintln!("{anchor:.0} msg/s ({n})");

    eprint!("  [2/2] runner: parse, validate, queue, deliver ... ");
    let rate = runtime.block_on(async {
        let net = Net::new(
            NetConfig {
                seed: 1,
                latency_ms: 0,
                dist: LatencyDist::Constant,
                log_send: false,
                log_recv: false,
            },
            Arc::new(Console::new(false)),
        );
        let mut inputs = Vec::new();
        for i in 0..NODES {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            net.add_node(&format!("n{i}"), tx);
            inputs.push(rx);
        }
        let delivery = tokio::spawn(Arc::clone(&net).deliver_forever());
        let drain = tokio::spawn(async move {
            let mut got = 0usize;
            let mut rxs = inputs;
            while got < MESSAGES {
                for rx in rxs.iter_mut() {
                    while let Ok(line) = rx.try_recv() {
                        got += line.len().min(1);
                    }
                }
                tokio::task::yield_now().await;
            }
        });
        let t = Instant::now();
        for (src, line) in &lines {
            net.node_output(src, line.as_bytes());
        }
        drain.await.unwrap();
        delivery.abort();
        MESSAGES as f64 / t.elapsed().as_secs_f64()
    });
    eprintln!("{rate:.0} msg/s");
    println!(
        "routing: runner {rate:.0} msg/s, serde_json parse anchor {anchor:.0} msg/s, ratio {:.3}",
        rate / anchor
    );
}
