//! Every example node in maelnode's simulated cluster, built by the same `node()` as its binary.

use maelnode::sim::{Latency, Sim, Topology};
use maelstrom_example_nodes::{broadcast, counter, echo, g_set, pn_counter, unique_ids};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::Duration;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[tokio::test(start_paused = true)]
async fn echo_answers_with_the_same_payload() {
    let sim = Sim::builder().nodes(1).start(echo::node).await.unwrap();
    let c = sim.client();
    for i in 0..10 {
        let r = c
            .call(
                "n0",
                json!({"type": "echo", "echo": format!("Please echo {i}")}),
            )
            .await
            .unwrap();
        assert_eq!(r.body_json()["echo"], format!("Please echo {i}"));
    }
}

#[tokio::test(start_paused = true)]
async fn unique_ids_stay_unique_through_partitions() {
    let sim = Sim::builder()
        .seed(2)
        .nodes(3)
        .latency(Latency::Uniform(ms(20)))
        .start(unique_ids::node)
        .await
        .unwrap();
    let c = sim.client();
    let mut ids = HashSet::new();
    for round in 0..300 {
        if round == 100 {
            sim.isolate("n1");
        }
        if round == 200 {
            sim.heal();
        }
        let r = c
            .call(&format!("n{}", round % 3), json!({"type": "generate"}))
            .await
            .unwrap();
        assert!(
            ids.insert(r.body_json()["id"].to_string()),
            "duplicate id {}",
            r.body_json()["id"]
        );
    }
}

async fn read_set(sim: &Sim, node: &str, field: &str) -> Vec<u64> {
    let r = sim
        .client()
        .call(node, json!({"type": "read"}))
        .await
        .unwrap();
    let mut v: Vec<u64> = r.body_json()[field]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect();
    v.sort();
    v
}

#[tokio::test(start_paused = true)]
async fn broadcast_reaches_every_node_after_a_partition_heals() {
    let sim = Sim::builder()
        .seed(7)
        .nodes(5)
        .latency(Latency::Constant(ms(100)))
        .start(broadcast::node)
        .await
        .unwrap();
    let c = sim.client();
    let topology = sim.topology(Topology::Grid);
    for n in sim.node_ids() {
        c.call(&n, json!({"type": "topology", "topology": topology}))
            .await
            .unwrap();
    }
    sim.partition(&[&["n0", "n1"], &["n2", "n3", "n4"]]);
    for v in 0..20u64 {
        c.call(
            &format!("n{}", v % 5),
            json!({"type": "broadcast", "message": v}),
        )
        .await
        .unwrap();
        sim.sleep(ms(50)).await;
    }
    sim.sleep(Duration::from_secs(3)).await;
    assert!(
        read_set(&sim, "n3", "messages").await.len() < 20,
        "the partition keeps values apart"
    );
    sim.heal();
    sim.sleep(Duration::from_secs(2)).await;
    for n in sim.node_ids() {
        assert_eq!(
            read_set(&sim, &n, "messages").await,
            (0..20).collect::<Vec<_>>(),
            "{n}"
        );
    }
    assert_eq!(sim.stats().pending_rpcs, 0);
}

#[tokio::test(start_paused = true)]
async fn broadcast_on_25_nodes_is_fast_and_frugal() {
    // Challenge 3d/3e conditions: 25 nodes, 100 ms latency, 100 ops/s, half of them broadcasts.
    let sim = Sim::builder()
        .seed(11)
        .nodes(25)
        .latency(Latency::Constant(ms(100)))
        .start(broadcast::node)
        .await
        .unwrap();
    let c = sim.client();
    let mut acked_at = Vec::new();
    for op in 0..1000u64 {
        let node = format!("n{}", (op * 7) % 25);
        if op % 2 == 0 {
            let v = op / 2;
            c.call(&node, json!({"type": "broadcast", "message": v}))
                .await
                .unwrap();
            acked_at.push(sim.elapsed());
        } else {
            c.call(&node, json!({"type": "read"})).await.unwrap();
        }
        sim.sleep(ms(10)).await;
    }
    sim.sleep(Duration::from_secs(2)).await;
    let stats = sim.stats();
    let ops = stats.client_ops["broadcast"] + stats.client_ops["read"];
    let per_op = stats.node_to_node as f64 / ops as f64;
    assert!(
        per_op < 20.0,
        "{per_op} node-to-node messages per operation"
    );

    // Propagation: from a broadcast's ack until the last node first received the value.
    let mut reached: Vec<std::collections::HashMap<String, Duration>> =
        vec![Default::default(); acked_at.len()];
    for ev in sim
        .trace()
        .iter()
        .filter(|e| e.kind == maelnode::sim::TraceKind::Deliver)
    {
        let values: Vec<u64> = match ev.message.msg_type() {
            "broadcast" => vec![ev.message.body["message"].as_u64().unwrap()],
            "gossip" => ev.message.body["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap())
                .collect(),
            _ => continue,
        };
        for v in values {
            reached[v as usize]
                .entry(ev.message.dest.clone())
                .or_insert(ev.time);
        }
    }
    let mut latencies: Vec<Duration> = reached
        .iter()
        .zip(&acked_at)
        .map(|(nodes, k)| {
            assert_eq!(nodes.len(), 25, "every value reaches every node");
            nodes.values().max().unwrap().saturating_sub(*k)
        })
        .collect();
    latencies.sort();
    let (median, max) = (latencies[latencies.len() / 2], *latencies.last().unwrap());
    eprintln!(
        "broadcast, 25 nodes, 100 ms latency: {per_op:.2} msgs/op, propagation median {median:?}, max {max:?}"
    );
    assert!(
        median < ms(400) && max < ms(600),
        "median {median:?}, max {max:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn g_set_converges_after_partitions() {
    let sim = Sim::builder()
        .seed(4)
        .nodes(3)
        .latency(Latency::Exponential(ms(30)))
        .start(g_set::node)
        .await
        .unwrap();
    let c = sim.client();
    for e in 0..30u64 {
        if e == 10 {
            sim.isolate("n2");
        }
        if e == 20 {
            sim.heal();
            sim.isolate("n0");
        }
        c.call(&format!("n{}", e % 3), json!({"type": "add", "element": e}))
            .await
            .unwrap();
    }
    sim.heal();
    sim.sleep(Duration::from_secs(2)).await;
    for n in sim.node_ids() {
        assert_eq!(
            read_set(&sim, &n, "value").await,
            (0..30).collect::<Vec<_>>(),
            "{n}"
        );
    }
}

async fn read_value(sim: &Sim, node: &str) -> Value {
    sim.client()
        .call(node, json!({"type": "read"}))
        .await
        .unwrap()
        .body_json()["value"]
        .clone()
}

#[tokio::test(start_paused = true)]
async fn g_counter_final_reads_equal_the_total() {
    let sim = Sim::builder()
        .seed(8)
        .nodes(3)
        .latency(Latency::Uniform(ms(40)))
        .start(counter::node)
        .await
        .unwrap();
    let c = sim.client();
    let mut total = 0u64;
    for i in 0..60u64 {
        // seq-kv is never partitioned, so lose its replies for a while instead: writes and
        // reads fail and must be retried.
        if i == 20 {
            sim.drop_where(|m| m.src == "seq-kv" && m.dest == "n0");
        }
        if i == 40 {
            sim.clear_rules();
        }
        let delta = i % 5;
        total += delta;
        c.call(
            &format!("n{}", i % 3),
            json!({"type": "add", "delta": delta}),
        )
        .await
        .unwrap();
        if i % 4 == 0 {
            let _ = sim
                .client()
                .call(&format!("n{}", (i + 1) % 3), json!({"type": "read"}))
                .await;
        }
    }
    sim.sleep(Duration::from_secs(2)).await;
    for n in sim.node_ids() {
        assert_eq!(read_value(&sim, &n).await, total, "{n}");
    }
    // The count lives in seq-kv.
    let kv_ops = sim
        .trace()
        .iter()
        .filter(|e| e.message.dest == "seq-kv")
        .count();
    assert!(kv_ops > 0);
}

#[tokio::test(start_paused = true)]
async fn pn_counter_converges_with_negative_deltas() {
    let sim = Sim::builder()
        .seed(9)
        .nodes(3)
        .latency(Latency::Constant(ms(50)))
        .start(pn_counter::node)
        .await
        .unwrap();
    let c = sim.client();
    let mut total = 0i64;
    sim.isolate("n1");
    for i in 0..45i64 {
        let delta = (i % 10) - 5;
        total += delta;
        c.call(
            &format!("n{}", i % 3),
            json!({"type": "add", "delta": delta}),
        )
        .await
        .unwrap();
    }
    // Totally available: the isolated node answered, and still sees only its own part.
    assert_ne!(read_value(&sim, "n1").await, total);
    sim.heal();
    sim.sleep(Duration::from_secs(1)).await;
    for n in sim.node_ids() {
        assert_eq!(read_value(&sim, &n).await, total, "{n}");
    }
}
