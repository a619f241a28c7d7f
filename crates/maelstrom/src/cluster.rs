//! The node processes: spawning each in its own process group, feeding stdin, routing stdout
//! into the network, logging stderr, reporting crashes at once, and killing, pausing and
//! restarting for the nemesis and teardown.

use crate::client::Client;
use crate::console::Console;
use crate::net::Net;
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{Semaphore, mpsc, watch};

/// How a node program is started.
pub struct NodeSpec {
    /// Canonical path of `--bin`.
    pub bin: PathBuf,
    /// Extra arguments.
    pub args: Vec<String>,
    /// Working directory.
    pub cwd: PathBuf,
    /// `node-logs/` of this test.
    pub log_dir: PathBuf,
    /// `--log-stderr`.
    pub log_stderr: bool,
}

/// How many trailing stdout/stderr lines are kept for crash messages.
const TAIL: usize = 32;
/// How long a node may take to answer `init`.
pub const INIT_TIMEOUT: Duration = Duration::from_millis(10_000);
/// Spawns running at once.
const MAX_CONCURRENT_SPAWNS: usize = 64;
/// The longest line accepted from a node.
const MAX_LINE: usize = 16 << 20;

/// A crash: a node exited without being told to.
#[derive(Clone, Debug)]
pub struct Crash {
    /// The node.
    pub node: String,
    /// Exit code, or the negated signal number.
    pub exit: i64,
    /// History time (ns since start) of the crash.
    pub time: u64,
}

struct Running {
    pgid: i32,
    killed: Arc<AtomicBool>,
    /// Set once the process is reaped: its pid may then belong to anyone, so no more signals.
    reaped: Arc<AtomicBool>,
    /// True once the process has exited and, for a crash, the report has been printed.
    exited: watch::Receiver<bool>,
    err_tail: Tail,
    log_path: PathBuf,
}

/// The last lines a node wrote to one stream.
type Tail = Arc<Mutex<VecDeque<String>>>;

/// How much of one line a tail keeps: enough for a crash message, bounded for 1,000 nodes.
const TAIL_LINE: usize = 300;

fn show_tail(t: &Tail) -> String {
    let lines: Vec<String> = t.lock().expect("tail lock").iter().cloned().collect();
    if lines.is_empty() {
        "(nothing)".to_string()
    } else {
        format!("\n{}\n", lines.join("\n"))
    }
}

/// Every node process of a test.
pub struct Cluster {
    spec: NodeSpec,
    net: Arc<Net>,
    console: Arc<Console>,
    nodes: Vec<String>,
    running: Mutex<HashMap<String, Running>>,
    crashes: Mutex<Vec<Crash>>,
    spawn_slots: Semaphore,
    clock: Arc<dyn Fn() -> u64 + Send + Sync>,
    /// Node stderr lines on their way to `node-logs/`.
    logs: std::sync::Mutex<std::sync::mpsc::Sender<(Arc<PathBuf>, Vec<u8>)>>,
}

/// Writes node stderr to `node-logs/<node>.log` on one dedicated thread: file writes would
/// otherwise each take a trip through tokio's blocking pool, which grows a thread per busy node.
fn log_writer() -> std::sync::mpsc::Sender<(Arc<PathBuf>, Vec<u8>)> {
    let (tx, rx) = std::sync::mpsc::channel::<(Arc<PathBuf>, Vec<u8>)>();
    std::thread::Builder::new()
        .name("node-logs".into())
        .spawn(move || {
            let mut files: HashMap<Arc<PathBuf>, std::fs::File> = HashMap::new();
            for (path, bytes) in rx {
                if !files.contains_key(&path) {
                    match std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&*path)
                    {
                        Ok(f) => {
                            files.insert(Arc::clone(&path), f);
                        }
                        Err(_) => continue,
                    }
                }
                if let Some(f) = files.get_mut(&path) {
                    let _ = std::io::Write::write_all(f, &bytes);
                }
            }
        })
        .expect("spawn the node-log thread");
    tx
}

impl Cluster {
    /// A cluster of `nodes` (not started yet).
    pub fn new(
        spec: NodeSpec,
        nodes: Vec<String>,
        net: Arc<Net>,
        console: Arc<Console>,
        clock: Arc<dyn Fn() -> u64 + Send + Sync>,
    ) -> Arc<Cluster> {
        Arc::new(Cluster {
            spec,
            net,
            console,
            nodes,
            running: Mutex::new(HashMap::new()),
            crashes: Mutex::new(Vec::new()),
            spawn_slots: Semaphore::new(MAX_CONCURRENT_SPAWNS),
            clock,
            logs: std::sync::Mutex::new(log_writer()),
        })
    }

    /// The node ids, in order.
    pub fn nodes(&self) -> &[String] {
        &self.nodes
    }

    /// Crashes so far.
    pub fn crashes(&self) -> Vec<Crash> {
        self.crashes.lock().expect("crash lock").clone()
    }

    /// Starts node `id` and sends it `init` from `client`; returns once `init_ok` arrives, or
    /// an error message (no answer in 10 s, a wrong answer, or the process exited first).
    pub async fn start(self: &Arc<Self>, id: &str, mut client: Client) -> Result<(), String> {
        let mut exited = {
            let _slot = self.spawn_slots.acquire().await.expect("semaphore open");
            self.spawn(id).await.map_err(|e| {
                format!(
                    "Could not start node {id} from {}: {e}",
                    self.spec.bin.display()
                )
            })?
        };
        let body = json!({"type": "init", "node_id": id, "node_ids": self.nodes});
        let Value::Object(body) = body else {
            unreachable!()
        };
        let exit = async move {
            // The guard `wait_for` returns must not live across an await.
            let _ = exited.wait_for(|e| *e).await.is_ok();
        };
        let reply = tokio::select! {
            r = client.rpc(id, body, INIT_TIMEOUT) => r,
            // `exited` turns true only after the crash report is printed.
            _ = exit => {
                return Err(format!("Node {id} exited before answering init; see the crash report above."));
            }
        };
        client.close();
        match reply {
            None => {
                let (stderr, log) = match self.running.lock().expect("running lock").get(id) {
                    Some(r) => (show_tail(&r.err_tail), r.log_path.display().to_string()),
                    None => ("(nothing)".to_string(), String::new()),
                };
                Err(format!(
                    "Expected node {id} to respond to an init message, but node did not respond. Its last STDERR lines: {stderr} Full STDERR logs are available in {log}"
                ))
            }
            Some(r) if r.get("type").and_then(Value::as_str) == Some("init_ok") => Ok(()),
            Some(r) => Err(format!(
                ":init-failed: node {id} answered init with {}",
                Value::Object(r)
            )),
        }
    }

    async fn spawn(self: &Arc<Self>, id: &str) -> std::io::Result<watch::Receiver<bool>> {
        let mut cmd = tokio::process::Command::new(&self.spec.bin);
        cmd.args(&self.spec.args)
            .current_dir(&self.spec.cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd.spawn()?;
        let pgid = child.id().map(|p| p as i32).unwrap_or(0);
        let mut stdin = child.stdin.take().expect("piped");
        let stdout = child.stdout.take().expect("piped");
        let mut stderr = child.stderr.take().expect("piped");
        let (input_tx, mut input_rx) = mpsc::unbounded_channel::<String>();
        self.net.add_node(id, input_tx);

        // stdin: an unbounded buffer, so a stopped node never stalls other deliveries.
        tokio::spawn(async move {
            // Grows only while a node lags; most nodes need a few KiB.
            let mut buf = Vec::new();
            while let Some(line) = input_rx.recv().await {
                buf.extend_from_slice(line.as_bytes());
                while let Ok(more) = input_rx.try_recv() {
                    buf.extend_from_slice(more.as_bytes());
                    if buf.len() > 1 << 16 {
                        break;
                    }
                }
                if stdin.write_all(&buf).await.is_err() || stdin.flush().await.is_err() {
                    break;
                }
                buf.clear();
                if buf.capacity() > 1 << 16 {
                    buf.shrink_to(8 << 10);
                }
            }
        });

        let killed = Arc::new(AtomicBool::new(false));
        let out_tail: Tail = Arc::new(Mutex::new(VecDeque::new()));
        let err_tail: Tail = Arc::new(Mutex::new(VecDeque::new()));
        let net = Arc::clone(&self.net);
        let node = id.to_string();
        let tail = Arc::clone(&out_tail);
        let cut_off = Arc::clone(&killed);
        let out_task = tokio::spawn(async move {
            // Small: 1,000 nodes must fit, and a longer line just takes more reads.
            let mut reader = BufReader::with_capacity(8 << 10, stdout);
            let mut line = Vec::new();
            while read_line(&mut reader, &mut line).await {
                // A line cut short because we killed the node mid-write is our doing, not the
                // node's: it is not reported as malformed.
                if !line.ends_with(b"\n") && cut_off.load(Ordering::SeqCst) {
                    break;
                }
                while matches!(line.last(), Some(b'\n' | b'\r')) {
                    line.pop();
                }
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                push_tail(&tail, String::from_utf8_lossy(&line).into_owned());
                net.node_output(&node, &line);
            }
        });
        let log_path = self.spec.log_dir.join(format!("{id}.log"));
        let log_key = Arc::new(log_path.clone());
        let logs = self.logs.lock().expect("log lock").clone();
        let console = Arc::clone(&self.console);
        let (node, tail, log_stderr) =
            (id.to_string(), Arc::clone(&err_tail), self.spec.log_stderr);
        let err_task = tokio::spawn(async move {
            // Raw bytes: a node's stderr is free-form, and not every program writes UTF-8.
            let mut reader = BufReader::with_capacity(4 << 10, &mut stderr);
            let mut line = Vec::new();
            while read_line(&mut reader, &mut line).await {
                if !line.ends_with(b"\n") {
                    line.push(b'\n');
                }
                let _ = logs.send((Arc::clone(&log_key), line.clone()));
                let text = String::from_utf8_lossy(&line[..line.len() - 1])
                    .trim_end_matches('\r')
                    .to_string();
                if log_stderr {
                    console.info(format!("{node} stderr: {text}"));
                }
                push_tail(&tail, text);
            }
        });

        let reaped = Arc::new(AtomicBool::new(false));
        let (crash_err_tail, crash_log) = (Arc::clone(&err_tail), log_path.clone());
        let (exit_tx, exit_rx) = watch::channel(false);
        let this = Arc::clone(self);
        let (node, was_killed, was_reaped) =
            (id.to_string(), Arc::clone(&killed), Arc::clone(&reaped));
        tokio::spawn(async move {
            let status = child.wait().await;
            was_reaped.store(true, Ordering::SeqCst);
            if was_killed.load(Ordering::SeqCst) {
                let _ = exit_tx.send(true);
                return;
            }
            this.net.kill_node(&node);
            // The last lines may still be in the pipes; let the readers finish first.
            let _ = tokio::time::timeout(Duration::from_millis(500), async {
                let _ = out_task.await;
                let _ = err_task.await;
            })
            .await;
            let (how, exit) = match status
                .as_ref()
                .map(|s| (s.code(), std::os::unix::process::ExitStatusExt::signal(s)))
            {
                Ok((Some(code), _)) => (format!("exit status {code}"), code as i64),
                Ok((None, Some(sig))) => (format!("killed by signal {sig}"), -(sig as i64)),
                _ => ("an unknown status".to_string(), -1),
            };
            this.console.warn(format!(
                "Node {node} crashed with {how}. Before crashing, it wrote to STDOUT: {} And to STDERR: {} Full STDERR logs are available in {}",
                show_tail(&out_tail),
                show_tail(&crash_err_tail),
                crash_log.display()
            ));
            this.crashes.lock().expect("crash lock").push(Crash {
                node: node.clone(),
                exit,
                time: (this.clock)(),
            });
            let _ = exit_tx.send(true);
        });
        let running = Running {
            pgid,
            killed,
            reaped,
            exited: exit_rx.clone(),
            err_tail,
            log_path,
        };
        self.running
            .lock()
            .expect("running lock")
            .insert(id.to_string(), running);
        Ok(exit_rx)
    }

    /// Resolves once node `id` has exited (and any crash report is printed); never, if it
    /// is not running.
    pub async fn exited(&self, id: &str) {
        let watch = self
            .running
            .lock()
            .expect("running lock")
            .get(id)
            .map(|r| r.exited.clone());
        match watch {
            Some(mut w) => {
                let _ = w.wait_for(|e| *e).await.is_ok();
            }
            None => std::future::pending().await,
        }
    }

    fn signal(&self, id: &str, sig: i32) {
        if let Some(r) = self.running.lock().expect("running lock").get(id) {
            if r.reaped.load(Ordering::SeqCst) {
                return;
            }
            if sig == libc::SIGKILL {
                r.killed.store(true, Ordering::SeqCst);
            }
            // SAFETY: sends a signal to the node's own process group.
            unsafe {
                libc::kill(-r.pgid, sig);
            }
        }
    }

    /// Kills a node's process group (nemesis): its state is lost; messages to it are dropped.
    pub fn kill(&self, id: &str) {
        self.net.kill_node(id);
        self.signal(id, libc::SIGKILL);
    }

    /// Stops a node's process group (SIGSTOP); its messages wait in its stdin buffer.
    pub fn pause(&self, id: &str) {
        self.signal(id, libc::SIGSTOP);
    }

    /// Continues a paused node (SIGCONT).
    pub fn resume(&self, id: &str) {
        self.signal(id, libc::SIGCONT);
    }

    /// Kills every node's process group and waits up to 5 s for each to exit.
    pub async fn teardown(&self) {
        let ids: Vec<String> = self
            .running
            .lock()
            .expect("running lock")
            .keys()
            .cloned()
            .collect();
        for id in &ids {
            self.signal(id, libc::SIGCONT);
            self.signal(id, libc::SIGKILL);
        }
        let waits: Vec<watch::Receiver<bool>> = self
            .running
            .lock()
            .expect("running lock")
            .values()
            .map(|r| r.exited.clone())
            .collect();
        for mut w in waits {
            let _ = tokio::time::timeout(Duration::from_secs(5), async move {
                w.wait_for(|e| *e).await.is_ok()
            })
            .await;
        }
    }
}

/// Reads the next line (up to 16 MiB, newline included) into `line`; false at end of input.
async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(reader: &mut R, line: &mut Vec<u8>) -> bool {
    line.clear();
    matches!(reader.take(MAX_LINE as u64).read_until(b'\n', line).await, Ok(n) if n > 0)
}

fn push_tail(tail: &Tail, mut line: String) {
    if line.len() > TAIL_LINE {
        let mut cut = TAIL_LINE;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
        line.push('…');
    }
    let mut t = tail.lock().expect("tail lock");
    if t.len() == TAIL {
        t.pop_front();
    }
    t.push_back(line);
}
