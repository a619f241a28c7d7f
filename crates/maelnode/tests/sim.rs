//! The simulated cluster: services through the KV clients, determinism, partitions, delivery
//! control and restarts.

use maelnode::sim::{Latency, Sim, TraceKind};
use maelnode::{CreateIfMissing, Ctx, ErrorCode, Node, Request};
use serde_json::{Value, json};
use std::time::Duration;

/// A node that exposes the KV and TSO clients to the test through requests.
fn kv_node() -> Node<()> {
    Node::builder(()).on_json("kv", |req: Request<()>, b| async move {
        let kv = match b["svc"].as_str().unwrap() {
            "lin-kv" => req.lin_kv(),
            "seq-kv" => req.seq_kv(),
            _ => req.lww_kv(),
        };
        let key = b["key"].clone();
        let result = match b["op"].as_str().unwrap() {
            "read" => kv.read(&key).await.map(|v| json!({"value": v})),
            "read_u64" => kv.read_as::<u64>(&key).await.map(|v| json!({"value": v})),
            "write" => kv.write(&key, &b["value"]).await.map(|_| json!({})),
            "cas" => {
                let create = if b.get("create") == Some(&json!(true)) {
                    CreateIfMissing::Yes
                } else {
                    CreateIfMissing::No
                };
                kv.cas(&key, &b["from"], &b["to"], create)
                    .await
                    .map(|_| json!({}))
            }
            "add" => {
                let d = b["delta"].as_u64().unwrap();
                kv.update(&key, |old: Option<u64>| old.unwrap_or(0) + d)
                    .await
                    .map(|v| json!({"value": v}))
            }
            "ts" => req.tso().ts().await.map(|t| json!({"value": t})),
            _ => unreachable!(),
        };
        match result {
            Ok(body) => req.reply(body),
            Err(e) => req.reply_error(e),
        }
    })
}

#[tokio::test(start_paused = true)]
async fn kv_clients_against_the_simulated_services() {
    let sim = Sim::builder()
        .seed(1)
        .nodes(2)
        .latency(Latency::Constant(Duration::from_millis(5)))
        .start(kv_node)
        .await
        .unwrap();
    let c = sim.client();
    let kv = |op: &str, extra: Value| {
        let mut b = json!({"type": "kv", "svc": "lin-kv", "op": op, "key": 7});
        b.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        b
    };
    // A missing key reads as None, distinct from an error.
    assert_eq!(
        c.call("n0", kv("read", json!({})))
            .await
            .unwrap()
            .body_json()["value"],
        Value::Null
    );
    let e = c
        .call("n0", kv("cas", json!({"from": 1, "to": 2})))
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::KeyDoesNotExist);
    c.call("n0", kv("cas", json!({"from": 1, "to": 2, "create": true})))
        .await
        .unwrap();
    let e = c
        .call("n1", kv("cas", json!({"from": 5, "to": 6})))
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::PreconditionFailed);
    c.call("n1", kv("write", json!({"value": "text"})))
        .await
        .unwrap();
    // A value that does not decode is an error, not None.
    assert_eq!(
        c.call("n0", kv("read_u64", json!({})))
            .await
            .unwrap_err()
            .code(),
        ErrorCode::MalformedRequest
    );
    // Integer key 7 and string key "7" are different keys.
    let r = c
        .call(
            "n0",
            json!({"type":"kv","svc":"lin-kv","op":"read","key":"7"}),
        )
        .await
        .unwrap();
    assert_eq!(r.body_json()["value"], Value::Null);
    // update: a read-cas loop, also creating the key.
    for _ in 0..3 {
        c.call(
            "n1",
            json!({"type":"kv","svc":"lin-kv","op":"add","key":"sum","delta":5}),
        )
        .await
        .unwrap();
    }
    let r = c
        .call(
            "n0",
            json!({"type":"kv","svc":"lin-kv","op":"read_u64","key":"sum"}),
        )
        .await
        .unwrap();
    assert_eq!(r.body_json()["value"], 15);
    let ts: Vec<u64> = futures_ts(&sim).await;
    assert_eq!(ts, [0, 1, 2]);
    // lww-kv honours create_if_not_exists here.
    c.call(
        "n0",
        json!({"type":"kv","svc":"lww-kv","op":"cas","key":1,"from":0,"to":3,"create":true}),
    )
    .await
    .unwrap();
    sim.sleep(Duration::from_millis(150)).await;
    let r = c
        .call(
            "n1",
            json!({"type":"kv","svc":"lww-kv","op":"read","key":1}),
        )
        .await
        .unwrap();
    assert_eq!(r.body_json()["value"], 3);
    assert_eq!(sim.stats().pending_rpcs, 0);
}

async fn futures_ts(sim: &Sim) -> Vec<u64> {
    let c = sim.client();
    let mut out = vec![];
    for n in ["n0", "n1", "n0"] {
        out.push(
            c.call(n, json!({"type":"kv","op":"ts","svc":"","key":0}))
                .await
                .unwrap()
                .body_json()["value"]
                .as_u64()
                .unwrap(),
        );
    }
    out
}

#[tokio::test(start_paused = true)]
async fn kv_and_tso_calls_time_out_when_the_service_never_answers() {
    let node = || {
        Node::builder(())
            .rpc_timeout(Duration::from_millis(400))
            .on_json("both", |req: Request<()>, _| async move {
                let kv = req
                    .lin_kv()
                    .read("k")
                    .await
                    .map(|_| 0)
                    .unwrap_or_else(|e| e.code().code());
                let ts = req
                    .tso()
                    .ts()
                    .await
                    .map(|_| 0)
                    .unwrap_or_else(|e| e.code().code());
                let pending = req.pending_rpcs();
                req.reply(json!({"kv": kv, "ts": ts, "pending": pending}))
            })
    };
    let sim = Sim::builder().nodes(1).start(node).await.unwrap();
    sim.drop_where(|m| m.dest == "lin-kv" || m.dest == "lin-tso");
    let r = sim
        .client()
        .call("n0", json!({"type": "both"}))
        .await
        .unwrap();
    assert_eq!(r.body_json()["kv"], 0, "timeout, not 'missing key'");
    assert_eq!(r.body_json()["ts"], 0);
    assert_eq!(r.body_json()["pending"], 0, "timed-out calls deregister");
}

#[tokio::test(start_paused = true)]
async fn kv_calls_time_out_when_a_service_never_answers() {
    // A node whose "service" is a node that ignores everything: the call must time out.
    let node = || {
        Node::builder(())
            .rpc_timeout(Duration::from_millis(300))
            .on_json("ask", |req: Request<()>, _| async move {
                let e = req.rpc("n1", json!({"type": "ignored"})).await.unwrap_err();
                req.reply(json!({"code": e.code().code(), "definite": e.is_definite()}))
            })
    };
    let sim = Sim::builder().nodes(2).start(node).await.unwrap();
    let r = sim
        .client()
        .call("n0", json!({"type": "ask"}))
        .await
        .unwrap();
    // n1 answers "ignored" with error 10 (no handler), which is definite.
    assert_eq!(r.body_json()["code"], 10);
    sim.isolate("n1");
    let r = sim
        .client()
        .call("n0", json!({"type": "ask"}))
        .await
        .unwrap();
    assert_eq!(
        (
            r.body_json()["code"].clone(),
            r.body_json()["definite"].clone()
        ),
        (json!(0), json!(false))
    );
}

/// Gossips every value it hears to every peer, with retries until acknowledged.
fn flood_node() -> Node<std::sync::Mutex<Vec<u64>>> {
    Node::builder(std::sync::Mutex::new(Vec::new()))
        .on_json(
            "add",
            |req: Request<std::sync::Mutex<Vec<u64>>>, b| async move {
                let v = b["value"].as_u64().unwrap();
                let fresh = {
                    let mut seen = req.state().lock().unwrap();
                    let fresh = !seen.contains(&v);
                    if fresh {
                        seen.push(v);
                    }
                    fresh
                };
                let ctx = req.ctx();
                req.reply_ok()?;
                if fresh {
                    for peer in ctx.peers().map(String::from).collect::<Vec<_>>() {
                        let c = ctx.clone();
                        ctx.spawn(async move {
                            let _ = c
                                .rpc_retry(
                                    &peer,
                                    json!({"type": "add", "value": v}),
                                    Duration::from_secs(60),
                                )
                                .await;
                        });
                    }
                }
                Ok(())
            },
        )
        .on_json(
            "read",
            |req: Request<std::sync::Mutex<Vec<u64>>>, _| async move {
                let mut v = req.state().lock().unwrap().clone();
                v.sort();
                req.reply(json!({"values": v}))
            },
        )
}

async fn flood_trace(seed: u64) -> Vec<(TraceKind, u64, String, String, Value)> {
    let sim = Sim::builder()
        .seed(seed)
        .nodes(4)
        .latency(Latency::Exponential(Duration::from_millis(30)))
        .start(flood_node)
        .await
        .unwrap();
    let c = sim.client();
    for v in 0..10 {
        c.call(&format!("n{}", v % 4), json!({"type": "add", "value": v}))
            .await
            .unwrap();
    }
    sim.sleep(Duration::from_secs(2)).await;
    sim.trace()
        .into_iter()
        .map(|e| {
            (
                e.kind,
                e.message.id,
                e.message.src,
                e.message.dest,
                e.message.body,
            )
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn the_same_seed_replays_the_same_trace() {
    let a = flood_trace(99).await;
    let b = flood_trace(99).await;
    assert!(a.len() > 100);
    assert_eq!(a, b);
    assert_ne!(
        a,
        flood_trace(100).await,
        "another seed gives other latencies, so another order"
    );
}

#[tokio::test(start_paused = true)]
async fn partitions_drop_messages_and_retries_heal_after() {
    let sim = Sim::builder()
        .seed(3)
        .nodes(4)
        .latency(Latency::Uniform(Duration::from_millis(50)))
        .start(flood_node)
        .await
        .unwrap();
    let c = sim.client();
    sim.partition(&[&["n0", "n1"], &["n2", "n3"]]);
    c.call("n0", json!({"type": "add", "value": 1}))
        .await
        .unwrap();
    sim.sleep(Duration::from_secs(3)).await;
    let read = |n: &'static str| {
        let c = sim.client();
        async move {
            c.call(n, json!({"type": "read"}))
                .await
                .unwrap()
                .body_json()["values"]
                .clone()
        }
    };
    assert_eq!(read("n1").await, json!([1]));
    assert_eq!(read("n3").await, json!([]), "n3 is on the other side");
    assert!(
        sim.trace()
            .iter()
            .any(|e| e.kind == TraceKind::Drop("partition"))
    );
    sim.heal();
    sim.sleep(Duration::from_secs(3)).await;
    for n in ["n0", "n1", "n2", "n3"] {
        assert_eq!(read(n).await, json!([1]), "{n} after healing");
    }
    // Directed cut: n1 no longer hears n0, but n0 hears n1.
    sim.cut("n0", "n1");
    c.call("n0", json!({"type": "add", "value": 2}))
        .await
        .unwrap();
    sim.sleep(Duration::from_millis(500)).await;
    assert_eq!(read("n1").await, json!([1, 2]), "n1 got 2 through n2 or n3");
}

#[tokio::test(start_paused = true)]
async fn hold_release_step_and_drop_rules() {
    let sim = Sim::builder()
        .seed(5)
        .nodes(2)
        .start(flood_node)
        .await
        .unwrap();
    let c = sim.client();
    sim.hold(|m| m.dest == "n1" && m.msg_type() == "add");
    c.call("n0", json!({"type": "add", "value": 7}))
        .await
        .unwrap();
    sim.sleep(Duration::from_millis(100)).await;
    assert_eq!(
        c.call("n1", json!({"type": "read"}))
            .await
            .unwrap()
            .body_json()["values"],
        json!([])
    );
    assert!(sim.stats().held >= 1);
    sim.release_held();
    sim.sleep(Duration::from_millis(100)).await;
    assert_eq!(
        c.call("n1", json!({"type": "read"}))
            .await
            .unwrap()
            .body_json()["values"],
        json!([7])
    );

    // Manual stepping: nothing moves until stepped.
    sim.set_manual(true);
    c.send("n0", json!({"type": "add", "value": 8, "msg_id": 100}));
    sim.sleep(Duration::from_secs(1)).await;
    let stepped = sim.step().expect("the client's add is queued");
    assert_eq!(
        (stepped.src.as_str(), stepped.dest.as_str()),
        (c.id(), "n0")
    );
    sim.set_manual(false);
    sim.sleep(Duration::from_millis(100)).await;
    assert_eq!(
        c.call("n1", json!({"type": "read"}))
            .await
            .unwrap()
            .body_json()["values"],
        json!([7, 8])
    );

    // Drop rules drop at delivery.
    sim.drop_where(|m| m.dest == "n1" && m.msg_type() == "add");
    c.call("n0", json!({"type": "add", "value": 9}))
        .await
        .unwrap();
    sim.sleep(Duration::from_millis(500)).await;
    assert!(
        sim.trace()
            .iter()
            .any(|e| e.kind == TraceKind::Drop("rule"))
    );
    sim.clear_rules();
    sim.sleep(Duration::from_secs(2)).await;
    assert_eq!(
        c.call("n1", json!({"type": "read"}))
            .await
            .unwrap()
            .body_json()["values"],
        json!([7, 8, 9]),
        "retries got through"
    );
    let s = sim.stats();
    assert_eq!(s.client_ops["init"], 2);
    assert_eq!(
        s.client_ops["add"] + s.client_ops["read"] + 2,
        s.client_ops.values().sum::<u64>()
    );
    assert!(s.node_to_node > 0);
}

#[tokio::test(start_paused = true)]
async fn a_restarted_node_starts_fresh_with_a_new_init_client() {
    let sim = Sim::builder().nodes(2).start(flood_node).await.unwrap();
    let c = sim.client();
    c.call("n1", json!({"type": "add", "value": 4}))
        .await
        .unwrap();
    sim.kill("n1");
    let e = c
        .call_timeout("n1", json!({"type": "read"}), Duration::from_millis(200))
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::Timeout);
    assert!(
        sim.trace()
            .iter()
            .any(|e| e.kind == TraceKind::Drop("dead-node"))
    );
    sim.restart("n1").await.unwrap();
    assert_eq!(
        c.call("n1", json!({"type": "read"}))
            .await
            .unwrap()
            .body_json()["values"],
        json!([])
    );
    let inits: Vec<_> = sim
        .trace()
        .into_iter()
        .filter(|e| e.kind == TraceKind::Send && e.message.msg_type() == "init")
        .map(|e| e.message.src)
        .collect();
    assert_eq!(
        inits,
        ["c0", "c1", "c3"],
        "init clients c0, c1, then a fresh one after c2"
    );
}

#[tokio::test(start_paused = true)]
async fn contexts_give_a_seeded_rng_in_the_simulator() {
    use maelnode::rand::Rng;
    let node = || {
        Node::builder(()).on_json("roll", |req: Request<()>, _| async move {
            let ctx: Ctx<()> = req.ctx();
            let n: u64 = ctx.rng().gen_range(0..1_000_000);
            req.reply(json!({"n": n}))
        })
    };
    let mut rolls = vec![];
    for _ in 0..2 {
        let sim = Sim::builder().seed(11).nodes(1).start(node).await.unwrap();
        rolls.push(
            sim.client()
                .call("n0", json!({"type": "roll"}))
                .await
                .unwrap()
                .body_json()["n"]
                .clone(),
        );
    }
    assert_eq!(rolls[0], rolls[1]);
}
