//! The README's walkthrough, as a new user would do it: make the off-the-shelf busybox image
//! with `examples/hello/make-image`, start `maelstromd` with no configuration at all (default
//! ports, `./maelstrom-data`), put `examples/hello/maelstrom.yml` with maelctl, request it by
//! hostname, get the 404 text for a bogus host, see it stop when idle, and remove it.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_walkthrough_with_an_off_the_shelf_image() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let example = repo.join("examples/hello");
    let out = Command::new(example.join("make-image")).output().unwrap();
    assert!(
        out.status.success(),
        "make-image: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // No configuration: defaults for every port and the data directory under the cwd.
    for port in [8008, 8374] {
        assert!(
            std::net::TcpListener::bind(("0.0.0.0", port)).is_ok(),
            "port {port} is busy; the walkthrough uses maelstromd's default ports"
        );
    }
    let cwd = tempfile::tempdir().unwrap();
    let log = std::fs::File::create(cwd.path().join("maelstromd.log")).unwrap();
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_maelstromd"))
        .current_dir(cwd.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    struct Kill(std::process::Child, tempfile::TempDir);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
            if std::thread::panicking() {
                let log = std::fs::read_to_string(self.1.path().join("maelstromd.log"))
                    .unwrap_or_default();
                eprintln!("--- maelstromd log ---\n{log}");
            }
        }
    }
    let started = Instant::now();
    while try_request("127.0.0.1:8374", "GET", "x", "/_mael_health_check", &[])
        .await
        .is_err()
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "maelstromd did not start"
        );
        assert!(daemon.try_wait().unwrap().is_none(), "maelstromd exited");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let guard = Kill(daemon, cwd);
    assert!(
        guard.1.path().join("maelstrom-data/maelstrom.db").exists(),
        "embedded SQLite in ./maelstrom-data"
    );
    let node_id = std::fs::read_to_string(guard.1.path().join("maelstrom-data/node-id")).unwrap();
    let node_id = node_id.trim().to_string();

    let maelctl = |args: &[&str]| {
        let out = Command::new(maelctl_bin())
            .args(args)
            .current_dir(&example)
            .env_remove("MAELSTROM_PRIVATE_URL")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };
    let (code, out) = maelctl(&["project", "put"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.starts_with("Project saved: hello from file: maelstrom.yml"),
        "{out}"
    );

    let containers = || {
        let out = Command::new("docker")
            .args([
                "ps",
                "-q",
                "--filter",
                &format!("label=maelstrom_node={node_id}"),
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    let a = request("127.0.0.1:8008", "GET", "hello.localhost", "/", &[]).await;
    assert_eq!(a.status, 200);
    assert!(a.body.contains("Hello from busybox"), "{}", a.body);
    assert_eq!(containers(), 1);
    let a = request("127.0.0.1:8008", "GET", "bogus.localhost", "/", &[]).await;
    assert_eq!(
        (a.status, a.body.as_str()),
        (404, "No component matches the request")
    );

    // Idle for its 10 s timeout: stopped within a few seconds after it.
    let idle_from = Instant::now();
    eventually(
        Duration::from_secs(25),
        "the idle container stops",
        || async { containers() == 0 },
    )
    .await;
    let took = idle_from.elapsed();
    eprintln!("stopped {took:?} after the last request (idletimeoutseconds: 10)");
    assert!(
        took >= Duration::from_secs(10) && took <= Duration::from_secs(10 + 7),
        "{took:?}"
    );

    // Requested again it starts again; project rm stops it.
    assert_eq!(
        request("127.0.0.1:8008", "GET", "hello.localhost", "/", &[])
            .await
            .status,
        200
    );
    assert_eq!(containers(), 1);
    let (code, out) = maelctl(&["project", "rm", "hello"]);
    assert_eq!((code, out.as_str()), (Some(0), "Project removed: hello\n"));
    eventually(
        Duration::from_secs(10),
        "project rm removes the container",
        || async { containers() == 0 },
    )
    .await;
    drop(guard);
}
