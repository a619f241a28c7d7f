//! The node protocol end to end over in-memory pipes: init, replies, errors, RPC, shutdown.

use maelnode::{Ctx, Error, ErrorCode, HandlerError, Node, Request};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream, Lines};
use tokio::task::JoinHandle;

/// Drives one node the way the runner does: lines in, lines out.
struct Harness {
    to_node: Option<DuplexStream>,
    from_node: Lines<BufReader<DuplexStream>>,
    running: JoinHandle<std::io::Result<()>>,
}

impl Harness {
    fn start<S: Send + Sync + 'static>(node: Node<S>) -> Harness {
        let (node_in, to_node) = tokio::io::duplex(1 << 16);
        let (from_node, node_out) = tokio::io::duplex(1 << 16);
        Harness {
            to_node: Some(to_node),
            from_node: BufReader::new(from_node).lines(),
            running: tokio::spawn(node.run_with(node_in, node_out)),
        }
    }

    async fn started<S: Send + Sync + 'static>(node: Node<S>) -> Harness {
        let mut h = Harness::start(node);
        h.line(r#"{"id":0,"src":"c0","dest":"n1","body":{"type":"init","msg_id":1,"node_id":"n1","node_ids":["n1","n2","n3"]}}"#).await;
        let ok = h.recv().await;
        assert_eq!(ok["body"]["type"], "init_ok", "{ok}");
        h
    }

    async fn line(&mut self, line: &str) {
        let w = self.to_node.as_mut().expect("input open");
        w.write_all(line.as_bytes()).await.unwrap();
        w.write_all(b"\n").await.unwrap();
    }

    async fn send(&mut self, src: &str, body: Value) {
        self.line(&json!({"id": 99, "src": src, "dest": "n1", "body": body}).to_string())
            .await;
    }

    async fn recv(&mut self) -> Value {
        let line = tokio::time::timeout(Duration::from_secs(30), self.from_node.next_line())
            .await
            .expect("a line within 30 s")
            .unwrap()
            .expect("output open");
        serde_json::from_str(&line).unwrap()
    }

    async fn call(&mut self, body: Value) -> Value {
        self.send("c1", body).await;
        self.recv().await["body"].clone()
    }

    async fn eof(mut self) -> std::io::Result<()> {
        self.to_node.take();
        self.running.await.unwrap()
    }
}

fn echo_node() -> Node<()> {
    Node::builder(()).on_json("echo", |req: Request<()>, body| async move {
        req.reply(json!({"echo": body["echo"]}))
    })
}

#[tokio::test(start_paused = true)]
async fn init_is_answered_with_the_runners_ids_and_top_level_id_is_ignored() {
    let mut h = Harness::start(echo_node());
    h.line(r#"{"id":17,"src":"c0","dest":"n1","body":{"type":"init","msg_id":1,"node_id":"n1","node_ids":["n1","n2"]}}"#).await;
    let out = h.recv().await;
    assert_eq!(
        out,
        json!({"src":"n1","dest":"c0","body":{"type":"init_ok","msg_id":1,"in_reply_to":1}})
    );
    let r = h
        .call(json!({"type":"echo","msg_id":1,"echo":{"nested":[1,1.0,"x"]}}))
        .await;
    assert_eq!(
        r,
        json!({"type":"echo_ok","echo":{"nested":[1,1.0,"x"]},"msg_id":2,"in_reply_to":1})
    );
    h.eof().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn requests_before_init_get_11_and_a_second_init_gets_12() {
    let mut h = Harness::start(echo_node());
    let r = h.call(json!({"type":"echo","msg_id":5,"echo":1})).await;
    assert_eq!(
        (r["code"].clone(), r["in_reply_to"].clone()),
        (json!(11), json!(5))
    );
    h.line(r#"{"src":"c0","dest":"n1","body":{"type":"init","msg_id":1,"node_id":"n1","node_ids":["n1"]}}"#).await;
    assert_eq!(h.recv().await["body"]["type"], "init_ok");
    h.line(r#"{"src":"c0","dest":"n9","body":{"type":"init","msg_id":2,"node_id":"n9","node_ids":["n9"]}}"#).await;
    let again = h.recv().await;
    assert_eq!(again["body"]["code"], 12);
    let r = h.call(json!({"type":"echo","msg_id":6,"echo":1})).await;
    assert_eq!(r["type"], "echo_ok");
    h.send("c1", json!({"type":"echo","msg_id":7,"echo":1}))
        .await;
    assert_eq!(
        h.recv().await["src"],
        "n1",
        "identity unchanged by the second init"
    );
    h.eof().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn requests_pipelined_behind_init_wait_for_the_init_hook() {
    let node = echo_node().on_init(|_ctx: Ctx<()>| async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        Ok(())
    });
    let mut h = Harness::start(node);
    h.line(r#"{"src":"c0","dest":"n1","body":{"type":"init","msg_id":1,"node_id":"n1","node_ids":["n1"]}}"#).await;
    h.send("c1", json!({"type":"echo","msg_id":1,"echo":"early"}))
        .await;
    assert_eq!(h.recv().await["body"]["type"], "init_ok");
    assert_eq!(
        h.recv().await["body"]["echo"],
        "early",
        "served after init, not refused"
    );
    h.eof().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn unknown_types_get_10_and_malformed_lines_are_skipped() {
    let mut h = Harness::started(echo_node()).await;
    let r = h.call(json!({"type":"frobnicate","msg_id":2})).await;
    assert_eq!(r["code"], 10);
    assert!(r["text"].as_str().unwrap().contains("frobnicate"));
    for garbage in [
        "not json",
        "[1,2,3]",
        r#"{"src":"c1","body":{}}"#,
        r#"{"src":"c1","dest":"n1","body":7}"#,
        "",
        "   ",
    ] {
        h.line(garbage).await;
    }
    let r = h
        .call(json!({"type":"echo","msg_id":3,"echo":"still here"}))
        .await;
    assert_eq!(r["echo"], "still here");
    h.eof().await.unwrap();
}

#[derive(serde::Deserialize)]
struct Fail {
    how: String,
}

fn failing_node() -> Node<()> {
    echo_node().on("fail", |req: Request<()>, body: Fail| async move {
        match body.how.as_str() {
            "maelstrom" => Err(Error::new(ErrorCode::TxnConflict, "conflict on key 3").into()),
            "custom" => Err(Error::custom(1234, "quota").into()),
            "io" => Err(std::io::Error::other("disk on fire").into()),
            "parse" => {
                let n: u32 = "forty".parse()?;
                req.reply(json!({"n": n}))
            }
            "msg" => Err(HandlerError::msg("plain text")),
            "panic" => panic!("handler exploded"),
            "error-reply" => req.reply_error(Error::new(ErrorCode::Abort, "by hand")),
            "custom-type" => {
                req.reply(json!({"type": "special", "x": 1, "msg_id": 999, "in_reply_to": 555}))
            }
            _ => req.reply_ok(),
        }
    })
}

#[tokio::test(start_paused = true)]
async fn handler_failures_become_error_replies_and_the_node_lives() {
    let mut h = Harness::started(failing_node()).await;
    let cases = [
        ("maelstrom", 30, "conflict on key 3"),
        ("custom", 1234, "quota"),
        ("io", 13, "disk on fire"),
        ("parse", 13, "invalid digit found in string"),
        ("msg", 13, "plain text"),
        ("panic", 13, "handler panicked: handler exploded"),
        ("error-reply", 14, "by hand"),
    ];
    for (i, (how, code, text)) in cases.into_iter().enumerate() {
        let r = h.call(json!({"type":"fail","msg_id":10+i,"how":how})).await;
        assert_eq!(r["type"], "error", "{how}: {r}");
        assert_eq!(r["code"], code, "{how}: {r}");
        assert_eq!(r["text"], text, "{how}: {r}");
        assert_eq!(r["in_reply_to"], 10 + i);
    }
    let r = h
        .call(json!({"type":"fail","msg_id":50,"how":"custom-type"}))
        .await;
    assert_eq!(r["type"], "special");
    assert_eq!(
        r["in_reply_to"], 50,
        "the library overwrites a user in_reply_to"
    );
    assert_ne!(r["msg_id"], 999, "the library overwrites a user msg_id");
    let r = h
        .call(json!({"type":"fail","msg_id":51,"how":"none"}))
        .await;
    assert_eq!(
        r,
        json!({"type":"fail_ok","msg_id":r["msg_id"],"in_reply_to":51})
    );
    // A body that does not fit the handler's type: error 12 with serde's message.
    let r = h.call(json!({"type":"fail","msg_id":52,"how":5})).await;
    assert_eq!(r["code"], 12);
    assert!(r["text"].as_str().unwrap().contains("invalid type"), "{r}");
    h.eof().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn every_outgoing_message_has_a_unique_increasing_msg_id() {
    let mut h = Harness::started(echo_node()).await;
    let mut ids = vec![];
    for i in 0..20 {
        ids.push(
            h.call(json!({"type":"echo","msg_id":i,"echo":i})).await["msg_id"]
                .as_u64()
                .unwrap(),
        );
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    assert_eq!(ids[0], 2, "init_ok took msg_id 1");
    h.eof().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_request_without_msg_id_is_handled_but_not_answered() {
    let mut h = Harness::started(echo_node()).await;
    h.send("c1", json!({"type":"echo","echo":"silent"})).await;
    let r = h
        .call(json!({"type":"echo","msg_id":2,"echo":"loud"}))
        .await;
    assert_eq!(
        r["echo"], "loud",
        "the unaddressed request produced no line"
    );
    h.eof().await.unwrap();
}

fn rpc_node(results: Arc<Mutex<Vec<String>>>) -> Node<Arc<Mutex<Vec<String>>>> {
    Node::builder(results)
        .rpc_timeout(Duration::from_millis(500))
        .on_json(
            "ask",
            |req: Request<Arc<Mutex<Vec<String>>>>, body| async move {
                let to = body["to"].as_str().unwrap().to_string();
                let outcome = match req.rpc(&to, json!({"type": "question"})).await {
                    Ok(m) => format!("ok {}", m.body_json()["answer"]),
                    Err(e) => format!("err {}", e.code().code()),
                };
                req.state().lock().unwrap().push(outcome.clone());
                let pending = req.pending_rpcs();
                req.reply(json!({"outcome": outcome, "pending": pending}))
            },
        )
        .on_json(
            "abandon",
            |req: Request<Arc<Mutex<Vec<String>>>>, _| async move {
                // Dropping the RPC future must deregister it.
                let rpc = req.rpc("n2", json!({"type": "question"}));
                let _ = tokio::time::timeout(Duration::from_millis(10), rpc.into_future()).await;
                let pending = req.pending_rpcs();
                req.reply(json!({"pending": pending}))
            },
        )
        .on_json(
            "later",
            |req: Request<Arc<Mutex<Vec<String>>>>, _| async move {
                req.rpc_then("n3", json!({"type": "question"}), |ctx, r| async move {
                    ctx.state().lock().unwrap().push(format!(
                        "callback {}",
                        r.map(|_| 0).unwrap_or_else(|e| e.code().code())
                    ));
                });
                req.reply_ok()
            },
        )
}

use std::future::IntoFuture;

#[tokio::test(start_paused = true)]
async fn rpc_replies_errors_timeouts_and_dropped_futures() {
    let log = Arc::new(Mutex::new(vec![]));
    let mut h = Harness::started(rpc_node(log.clone())).await;

    // A reply with in_reply_to completes the RPC, whatever its msg_id.
    h.send("c1", json!({"type":"ask","msg_id":2,"to":"n2"}))
        .await;
    let q = h.recv().await;
    assert_eq!(
        (q["dest"].as_str(), q["body"]["type"].as_str()),
        (Some("n2"), Some("question"))
    );
    let id = q["body"]["msg_id"].clone();
    h.send(
        "n2",
        json!({"type":"question_ok","in_reply_to":id,"answer":42}),
    )
    .await;
    assert_eq!(h.recv().await["body"]["outcome"], "ok 42");

    // An error reply resolves to Err with its code.
    h.send("c1", json!({"type":"ask","msg_id":3,"to":"n2"}))
        .await;
    let id = h.recv().await["body"]["msg_id"].clone();
    h.send(
        "n2",
        json!({"type":"error","in_reply_to":id,"code":22,"text":"nope"}),
    )
    .await;
    assert_eq!(h.recv().await["body"]["outcome"], "err 22");

    // No reply: timeout (code 0) and the entry is gone; a late reply is dropped silently.
    h.send("c1", json!({"type":"ask","msg_id":4,"to":"n3"}))
        .await;
    let id = h.recv().await["body"]["msg_id"].clone();
    let r = h.recv().await["body"].clone();
    assert_eq!(
        (r["outcome"].as_str(), r["pending"].as_u64()),
        (Some("err 0"), Some(0))
    );
    h.send("n3", json!({"type":"question_ok","in_reply_to":id}))
        .await;

    // A dropped RPC future deregisters itself.
    h.send("c1", json!({"type":"abandon","msg_id":5})).await;
    let _question = h.recv().await;
    assert_eq!(h.recv().await["body"]["pending"], 0);

    // The callback form runs once, here with the timeout.
    h.send("c1", json!({"type":"later","msg_id":6})).await;
    let mut got = [h.recv().await, h.recv().await];
    got.sort_by_key(|m| m["dest"].as_str().unwrap().to_string());
    assert_eq!(got[0]["body"]["type"], "later_ok");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let callbacks: Vec<String> = log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.starts_with("callback"))
        .cloned()
        .collect();
    assert_eq!(
        callbacks,
        ["callback 0"],
        "the callback ran exactly once, with the timeout"
    );
    h.eof().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn in_reply_to_zero_is_a_reply_not_a_request() {
    let mut h = Harness::started(echo_node()).await;
    // A reply nobody waits for: dropped, and no automatic error reply.
    h.send(
        "n2",
        json!({"type":"echo","in_reply_to":0,"msg_id":8,"echo":1}),
    )
    .await;
    let r = h.call(json!({"type":"echo","msg_id":9,"echo":2})).await;
    assert_eq!(r["in_reply_to"], 9);
    h.eof().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_slow_handler_does_not_block_others() {
    let node = echo_node().on_json("slow", |req: Request<()>, _| async move {
        tokio::time::sleep(Duration::from_secs(20)).await;
        req.reply_ok()
    });
    let mut h = Harness::started(node).await;
    h.send("c1", json!({"type":"slow","msg_id":2})).await;
    let start = tokio::time::Instant::now();
    let r = h
        .call(json!({"type":"echo","msg_id":3,"echo":"fast"}))
        .await;
    assert_eq!(r["echo"], "fast");
    assert!(start.elapsed() < Duration::from_secs(1));
    assert_eq!(h.recv().await["body"]["type"], "slow_ok");
    h.eof().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn eof_fails_pending_rpcs_at_once_and_shutdown_is_bounded() {
    let log = Arc::new(Mutex::new(vec![]));
    let node = rpc_node(log.clone())
        .rpc_timeout(Duration::from_secs(3600))
        .shutdown_grace(Duration::from_secs(2))
        .on_json(
            "stuck",
            |req: Request<Arc<Mutex<Vec<String>>>>, _| async move {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                req.reply_ok()
            },
        );
    let mut h = Harness::started(node).await;
    h.send("c1", json!({"type":"ask","msg_id":2,"to":"n2"}))
        .await;
    h.send("c1", json!({"type":"stuck","msg_id":3})).await;
    let _question = h.recv().await;
    let start = tokio::time::Instant::now();
    h.to_node.take();
    // The pending RPC fails at once with a timeout, so the asking handler still answers.
    let r = h.recv().await;
    assert_eq!(r["body"]["outcome"], "err 0");
    h.running.await.unwrap().unwrap();
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(3),
        "stuck handler cancelled after the grace: {took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn registering_a_type_twice_or_init_fails_at_start_naming_the_type() {
    let twice = echo_node().on_json("echo", |req: Request<()>, _| async move { req.reply_ok() });
    let (r, w) = tokio::io::duplex(64);
    let err = twice.run_with(tokio::io::empty(), r).await.unwrap_err();
    assert!(
        err.to_string().contains("\"echo\" was registered twice"),
        "{err}"
    );
    let init = echo_node().on_json("init", |req: Request<()>, _| async move { req.reply_ok() });
    let err = init.run_with(tokio::io::empty(), w).await.unwrap_err();
    assert!(err.to_string().contains("on_init"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn init_hook_runs_before_init_ok_and_its_failure_is_answered() {
    let node = echo_node().on_init(|ctx: Ctx<()>| async move {
        assert_eq!(ctx.node_id(), "n1");
        assert_eq!(ctx.peers().collect::<Vec<_>>(), ["n2", "n3"]);
        assert_eq!(ctx.node_ids(), ["n1", "n2", "n3"]);
        Ok(())
    });
    Harness::started(node).await.eof().await.unwrap();

    let failing = echo_node().on_init(|_ctx: Ctx<()>| async move {
        Err(Error::new(ErrorCode::Abort, "no disk").into())
    });
    let mut h = Harness::start(failing);
    h.line(r#"{"src":"c0","dest":"n1","body":{"type":"init","msg_id":1,"node_id":"n1","node_ids":["n1"]}}"#).await;
    let r = h.recv().await["body"].clone();
    assert_eq!(
        (
            r["type"].as_str(),
            r["code"].as_u64(),
            r["in_reply_to"].as_u64()
        ),
        (Some("error"), Some(14), Some(1))
    );
    h.eof().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn timers_start_after_init_never_overlap_and_stop_at_shutdown() {
    #[derive(Default)]
    struct T {
        ticks: AtomicUsize,
        running: AtomicUsize,
        overlaps: AtomicUsize,
        once: AtomicUsize,
        /// Also seen by the test after the node has shut down.
        all_ticks: Arc<AtomicUsize>,
    }
    let all_ticks = Arc::new(AtomicUsize::new(0));
    let node = Node::builder(T {
        all_ticks: Arc::clone(&all_ticks),
        ..T::default()
    })
    .every(Duration::from_millis(100), |ctx: Ctx<T>| async move {
        let s = ctx.state();
        if s.running.fetch_add(1, Ordering::SeqCst) > 0 {
            s.overlaps.fetch_add(1, Ordering::SeqCst);
        }
        s.ticks.fetch_add(1, Ordering::SeqCst);
        s.all_ticks.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(250)).await; // longer than the period
        s.running.fetch_sub(1, Ordering::SeqCst);
    })
    .after(Duration::from_millis(50), |ctx: Ctx<T>| async move {
        ctx.state().once.fetch_add(1, Ordering::SeqCst);
    })
    .on_json("count", |req: Request<T>, _| async move {
        let s = req.state();
        let (t, o, once) = (
            s.ticks.load(Ordering::SeqCst),
            s.overlaps.load(Ordering::SeqCst),
            s.once.load(Ordering::SeqCst),
        );
        req.reply(json!({"ticks": t, "overlaps": o, "once": once}))
    })
    .on_json("cancel_soon", |req: Request<T>, _| async move {
        let t = req.every(Duration::from_millis(10), |_| async {
            panic!("a cancelled timer must not run")
        });
        t.cancel();
        assert!(t.is_cancelled());
        req.reply_ok()
    });
    let mut h = Harness::started(node).await;
    assert_eq!(
        h.call(json!({"type":"cancel_soon","msg_id":2})).await["type"],
        "cancel_soon_ok"
    );
    tokio::time::sleep(Duration::from_millis(1010)).await;
    let r = h.call(json!({"type":"count","msg_id":3})).await;
    // Runs start at 100, 400, 700, 1000 ms: the ticks missed while a run lasts are skipped.
    assert_eq!(r["ticks"], 4, "{r}");
    assert_eq!(r["overlaps"], 0);
    assert_eq!(r["once"], 1);
    h.eof().await.unwrap();
    let at_shutdown = all_ticks.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        all_ticks.load(Ordering::SeqCst),
        at_shutdown,
        "no tick after shutdown"
    );
}

#[derive(serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Msg {
    Echo { echo: Value },
    Generate,
}

#[tokio::test(start_paused = true)]
async fn a_whole_node_as_one_tagged_enum() {
    let node = Node::builder(()).fallback(|req: Request<()>, msg: Msg| async move {
        match msg {
            Msg::Echo { echo } => req.reply(json!({"echo": echo})),
            Msg::Generate => req.reply(json!({"id": "n1-1"})),
        }
    });
    let mut h = Harness::started(node).await;
    assert_eq!(
        h.call(json!({"type":"generate","msg_id":2})).await["id"],
        "n1-1"
    );
    assert_eq!(
        h.call(json!({"type":"echo","msg_id":3,"echo":5})).await["echo"],
        5
    );
    assert_eq!(h.call(json!({"type":"nope","msg_id":4})).await["code"], 10);
    assert_eq!(h.call(json!({"type":"echo","msg_id":5})).await["code"], 12);
    h.eof().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_multi_thread_runtime_works_too() {
    let mut h = Harness::started(echo_node()).await;
    for i in 0..100 {
        h.send("c1", json!({"type":"echo","msg_id":i,"echo":i}))
            .await;
    }
    let mut seen: Vec<u64> = Vec::new();
    for _ in 0..100 {
        seen.push(h.recv().await["body"]["in_reply_to"].as_u64().unwrap());
    }
    seen.sort();
    assert_eq!(seen, (0..100).collect::<Vec<_>>());
    h.eof().await.unwrap();
}
