//! The example binaries over real pipes, driven exactly as the original runner drives a node:
//! a top-level `id` on every delivered message, `msg_id` from 1, and no EOF until the end.

use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

struct Driver {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    next_id: u64,
}

impl Driver {
    fn spawn(mut cmd: Command) -> Driver {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn node");
        let stdin = child.stdin.take();
        let stdout: ChildStdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Driver {
            child,
            stdin,
            lines,
            next_id: 0,
        }
    }

    fn raw(&mut self, line: &str) {
        let w = self.stdin.as_mut().unwrap();
        w.write_all(line.as_bytes()).unwrap();
        w.write_all(b"\n").unwrap();
        w.flush().unwrap();
    }

    fn send(&mut self, src: &str, body: Value) {
        let line = json!({"id": self.next_id, "src": src, "dest": "n1", "body": body}).to_string();
        self.next_id += 1;
        self.raw(&line);
    }

    /// The next protocol line (lines that are not JSON objects fail the test).
    fn recv(&mut self) -> Value {
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(10))
            .expect("a reply within 10 s");
        serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("stdout carried a non-protocol line {line:?}: {e}"))
    }

    fn init(&mut self) {
        self.send(
            "c0",
            json!({"type": "init", "msg_id": 1, "node_id": "n1", "node_ids": ["n1", "n2", "n3"]}),
        );
        let r = self.recv();
        assert_eq!(
            r,
            json!({"src": "n1", "dest": "c0", "body": {"type": "init_ok", "msg_id": 1, "in_reply_to": 1}})
        );
    }

    /// Closes stdin and returns how long the process took to exit, and its stderr.
    fn close(mut self) -> (Duration, String) {
        self.stdin.take();
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "exit status {status}");
                let mut err = String::new();
                self.child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut err)
                    .unwrap();
                return (start.elapsed(), err);
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "node still running 10 s after EOF"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

#[test]
fn echo_binary_speaks_the_runners_protocol() {
    let mut d = Driver::spawn(Command::new(env!("CARGO_BIN_EXE_maelstrom-echo")));
    d.init();
    let payload = json!({"text": "Please echo 42", "n": 1, "f": 1.0, "big": 18446744073709551615u64, "list": [null, true]});
    d.send("c1", json!({"type": "echo", "msg_id": 1, "echo": payload}));
    let r = d.recv();
    assert_eq!(r["dest"], "c1");
    assert_eq!(r["body"]["type"], "echo_ok");
    assert_eq!(r["body"]["in_reply_to"], 1);
    assert_eq!(
        r["body"]["echo"], payload,
        "identical payload, 1.0 kept as a float"
    );
    assert!(
        r.as_object()
            .unwrap()
            .keys()
            .eq(["body", "dest", "src"].iter()),
        "only src, dest, body: {r}"
    );

    d.send("c1", json!({"type": "bogus", "msg_id": 2}));
    let r = d.recv();
    assert_eq!(
        (
            r["body"]["type"].as_str(),
            r["body"]["code"].as_u64(),
            r["body"]["in_reply_to"].as_u64()
        ),
        (Some("error"), Some(10), Some(2))
    );

    d.raw("this is not json {");
    d.raw(r#"{"src":"c1","dest":"n1"}"#);
    d.send(
        "c1",
        json!({"type": "echo", "msg_id": 3, "echo": "after garbage"}),
    );
    assert_eq!(d.recv()["body"]["echo"], "after garbage");

    let (took, stderr) = d.close();
    assert!(took < Duration::from_secs(5), "exited {took:?} after EOF");
    assert!(
        stderr.contains("malformed input line"),
        "the bad lines were logged: {stderr}"
    );
}

#[test]
fn every_example_binary_initialises_and_exits_at_eof() {
    for bin in [
        env!("CARGO_BIN_EXE_maelstrom-echo"),
        env!("CARGO_BIN_EXE_maelstrom-unique-ids"),
        env!("CARGO_BIN_EXE_maelstrom-broadcast"),
        env!("CARGO_BIN_EXE_maelstrom-g-set"),
        env!("CARGO_BIN_EXE_maelstrom-counter"),
        env!("CARGO_BIN_EXE_maelstrom-pn-counter"),
    ] {
        let mut d = Driver::spawn(Command::new(bin));
        d.init();
        let (took, _) = d.close();
        assert!(
            took < Duration::from_secs(5),
            "{bin} exited {took:?} after EOF"
        );
    }
}

/// Not a test on its own: the node that `stray_prints_never_reach_the_protocol` runs by
/// re-executing this test binary.
#[test]
fn noisy_node_child() {
    if std::env::var("NOISY_NODE").is_err() {
        return;
    }
    let node = maelnode::Node::builder(()).on_json(
        "echo",
        |req: maelnode::Request<()>, body| async move {
            println!("STRAY-PRINT from a handler");
            req.reply(json!({"echo": body["echo"]}))
        },
    );
    maelstrom_example_nodes::run_stdio(node).unwrap();
}

#[test]
fn stray_prints_never_reach_the_protocol() {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "noisy_node_child",
        "--exact",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("NOISY_NODE", "1");
    let mut d = Driver::spawn(cmd);
    // The test harness prints its own banner before the node starts; skip to the protocol.
    d.send(
        "c0",
        json!({"type": "init", "msg_id": 1, "node_id": "n1", "node_ids": ["n1"]}),
    );
    loop {
        let line = d
            .lines
            .recv_timeout(Duration::from_secs(10))
            .expect("init_ok");
        assert!(!line.contains("STRAY-PRINT"));
        if line.contains("init_ok") {
            break;
        }
    }
    d.send("c1", json!({"type": "echo", "msg_id": 2, "echo": 5}));
    assert_eq!(
        d.recv()["body"]["echo"],
        5,
        "the line after the handler's println! is the reply"
    );
    let (_, stderr) = d.close();
    assert!(
        stderr.contains("STRAY-PRINT"),
        "the println! went to stderr: {stderr}"
    );
}
