//! Test harness: real maelstromd processes on free ports with their own data directories and
//! node ids, the real Docker Engine, the test component image built from
//! `tests/fixtures/test_component.rs`, and `maelctl` for the commands a user would type.
#![allow(dead_code)]

pub mod postgres;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The test component image, built by `tests/fixtures/build-test-component` once per source
/// version (several test binaries may ask at once: one builds, the others wait).
pub fn test_image() -> &'static str {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let dir = std::env::temp_dir().join("maelstrom-test-component");
        std::fs::create_dir_all(&dir).unwrap();
        let lock = std::fs::File::create(dir.join("lock")).unwrap();
        lock.lock().unwrap();
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/build-test-component");
        let out = run(&mut Command::new(script));
        lock.unlock().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    })
}

/// The maelctl binary next to maelstromd (cargo builds it for the workspace's tests).
pub fn maelctl_bin() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_maelstromd")).with_file_name("maelctl");
    assert!(
        bin.exists(),
        "{} is missing: run the workspace tests (cargo test --workspace) or cargo build -p maelctl first",
        bin.display()
    );
    bin
}

/// Settings of a test node.
#[derive(Clone, Default)]
pub struct Opts {
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// Reuse this data directory (and node id) instead of a fresh one.
    pub data_dir: Option<PathBuf>,
    /// Reuse these ports.
    pub ports: Option<(u16, u16, u16)>,
}

/// One maelstromd process.
pub struct Daemon {
    pub node_id: String,
    pub public_port: u16,
    pub private_port: u16,
    pub gateway_port: u16,
    pub data_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    pub log_path: PathBuf,
    child: Option<Child>,
    pub token: Option<String>,
    remove_containers_on_drop: bool,
}

static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Daemon {
    /// Starts a node and waits for its health check.
    pub async fn start(opts: Opts) -> Daemon {
        let (tmp, data_dir) = match &opts.data_dir {
            Some(d) => (None, d.clone()),
            None => {
                let t = tempfile::tempdir().unwrap();
                let d = t.path().join("data");
                (Some(t), d)
            }
        };
        std::fs::create_dir_all(&data_dir).unwrap();
        let id_file = data_dir.join("node-id");
        let node_id = match std::fs::read_to_string(&id_file) {
            Ok(id) => id.trim().to_string(),
            Err(_) => {
                let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .subsec_nanos();
                let id = format!("t{}-{n}-{}", std::process::id(), nanos % 100_000);
                std::fs::write(&id_file, &id).unwrap();
                id
            }
        };
        let (public_port, private_port, gateway_port) = opts
            .ports
            .unwrap_or_else(|| (free_port(), free_port(), free_port()));
        let runs = std::fs::read_dir(&data_dir).map(|d| d.count()).unwrap_or(0);
        let log_path = data_dir.join(format!("maelstromd-{runs}.log"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_maelstromd"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("MAEL_DATA_DIR", &data_dir)
            .env("MAEL_PUBLIC_BIND", "127.0.0.1")
            .env("MAEL_PUBLIC_PORT", public_port.to_string())
            .env("MAEL_PRIVATE_PORT", private_port.to_string())
            .env("MAEL_CONTAINER_GATEWAY_PORT", gateway_port.to_string())
            .env("MAEL_LOG_LEVEL", "info,maelstromd=debug")
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        if let Ok(h) = std::env::var("DOCKER_HOST") {
            cmd.env("DOCKER_HOST", h);
        }
        let mut token = None;
        for (k, v) in &opts.env {
            if k == "MAEL_PRIVATE_TOKEN" {
                token = Some(v.clone());
            }
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn maelstromd");
        let mut d = Daemon {
            node_id,
            public_port,
            private_port,
            gateway_port,
            data_dir,
            _tmp: tmp,
            log_path,
            child: Some(child),
            token,
            remove_containers_on_drop: true,
        };
        let url = format!("http://127.0.0.1:{private_port}/_mael_health_check");
        let started = Instant::now();
        loop {
            if let Ok((200, _)) = get_plain(&url).await {
                break;
            }
            if let Some(status) = d.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("maelstromd exited ({status}) at start:\n{}", d.log());
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "maelstromd did not start:\n{}",
                d.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        d
    }

    /// Keeps this node's containers when it is dropped (another process adopts them).
    pub fn keep_containers(&mut self) {
        self.remove_containers_on_drop = false;
    }

    /// The private URL.
    pub fn private_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.private_port)
    }

    /// The public address.
    pub fn public(&self) -> String {
        format!("127.0.0.1:{}", self.public_port)
    }

    /// The node's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Runs maelctl against this node.
    pub fn maelctl(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(maelctl_bin());
        cmd.args(args)
            .env("MAELSTROM_PRIVATE_URL", self.private_url())
            .env_remove("MAELSTROM_PRIVATE_TOKEN")
            .env_remove("MAEL_PRIVATE_TOKEN");
        if let Some(t) = &self.token {
            cmd.env("MAELSTROM_PRIVATE_TOKEN", t);
        }
        cmd.output().unwrap()
    }

    /// `maelctl project put` of `yaml`; answers stdout, panics with the log on failure.
    pub fn put_project(&self, yaml: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("maelstrom.yml");
        std::fs::write(&file, yaml).unwrap();
        let out = self.maelctl(&["project", "put", "--file", file.to_str().unwrap()]);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "project put failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// A request to the public port with a Host header.
    pub async fn get(&self, host: &str, path: &str) -> (u16, String) {
        let r = request(&self.public(), "GET", host, path, &[]).await;
        (r.status, r.body)
    }

    /// Ids of this node's containers, running or not.
    pub fn containers(&self) -> Vec<String> {
        let out = run(Command::new("docker").args([
            "ps",
            "-aq",
            "--no-trunc",
            "--filter",
            &format!("label=maelstrom_node={}", self.node_id),
        ]));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Sends SIGTERM and waits for the exit status (at most `limit`).
    pub fn stop(&mut self, limit: Duration) -> std::process::ExitStatus {
        unsafe { libc::kill(self.pid() as i32, libc::SIGTERM) };
        self.wait(limit)
    }

    /// Waits for the process to exit (at most `limit`).
    pub fn wait(&mut self, limit: Duration) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let until = Instant::now() + limit;
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                return s;
            }
            if Instant::now() > until {
                let _ = child.kill();
                panic!("maelstromd did not stop within {limit:?}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGKILL, as a crash.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
        if self.remove_containers_on_drop {
            let ids = self.containers();
            if !ids.is_empty() {
                let _ = Command::new("docker")
                    .arg("rm")
                    .arg("-f")
                    .args(&ids)
                    .output();
            }
        }
        if std::thread::panicking() {
            eprintln!("--- maelstromd log ({}) ---\n{}", self.node_id, self.log());
        }
    }
}

/// An HTTP answer.
pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

fn client() -> &'static Client<HttpConnector, Full<Bytes>> {
    static C: OnceLock<Client<HttpConnector, Full<Bytes>>> = OnceLock::new();
    C.get_or_init(|| {
        Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build_http()
    })
}

/// `method http://addr path` with a Host header and extra headers; panics when the address
/// cannot be reached.
pub async fn request(
    addr: &str,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Answer {
    try_request(addr, method, host, path, headers)
        .await
        .unwrap_or_else(|e| panic!("{method} {addr}{path}: {e}"))
}

/// [`request`], answering transport errors.
pub async fn try_request(
    addr: &str,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Answer, String> {
    let mut b = http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header("host", host);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = client()
        .request(b.body(Full::new(Bytes::new())).unwrap())
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok(Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).to_string(),
    })
}

async fn get_plain(url: &str) -> Result<(u16, String), String> {
    let resp = client()
        .request(
            http::Request::get(url)
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).to_string()))
}

/// Polls `check` every 100 ms until it is true or `limit` passes; answers the time it took.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if check().await {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
