//! `maelstrom serve` over a real store (one valid and one invalid test), read over HTTP and
//! rendered by a real browser (Debian's chromium, headless).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn fixture(rel: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
        .display()
        .to_string()
}

fn run_test(dir: &Path, bin: &str) -> i32 {
    let out = Command::new(env!("CARGO_BIN_EXE_maelstrom"))
        .args([
            "test",
            "-w",
            "echo",
            "--bin",
            bin,
            "--node-count",
            "1",
            "--time-limit",
            "2",
            "--no-progress",
        ])
        .current_dir(dir)
        .output()
        .unwrap();
    out.status.code().unwrap_or(-1)
}

/// A GET over a plain socket: (status line, headers, body).
fn get(port: u16, path: &str) -> (String, String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (status.to_string(), headers.to_lowercase(), body.to_string())
}

struct Server(Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn chromium(args: &[&str]) -> std::process::Output {
    let bin = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|b| {
            Command::new("which")
                .arg(b)
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("a headless browser: apt-get install chromium");
    Command::new(bin)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
        ])
        .args(args)
        .stderr(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn the_web_ui_lists_tests_by_verdict_shows_each_and_refuses_paths_outside_the_store() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(run_test(dir.path(), &fixture("python/echo.py")), 0);
    std::thread::sleep(Duration::from_millis(1100)); // distinct test directory names
    assert_eq!(run_test(dir.path(), &fixture("python/broken_echo.py")), 1);

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_maelstrom"))
        .args(["serve", "--port", &port.to_string(), "--store"])
        .arg(dir.path().join("store"))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let _server = Server(child);
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "serve did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // The index: one workload, newest first, coloured by verdict.
    let (status, _, index) = get(port, "/");
    assert!(status.contains("200"), "{status}");
    let invalid = index
        .find(r#"<li class="invalid">"#)
        .expect("the broken run, in pink");
    let valid = index
        .find(r#"<li class="valid">"#)
        .expect("the good run, in blue");
    assert!(invalid < valid, "newest first: {index}");
    let link = |from: usize| {
        let rest = &index[from..];
        let start = rest.find("href=\"").unwrap() + 6;
        rest[start..start + rest[start..].find('"').unwrap()].to_string()
    };
    let (valid_page, invalid_page) = (link(valid), link(invalid));

    // A test page: command line, seed, banner, results tree, pictures, artefacts.
    let (_, _, page) = get(port, &valid_page);
    assert!(page.contains("Everything looks good!"), "{page}");
    assert!(page.contains("test -w echo --bin"), "the command line");
    assert!(page.contains("<td>seed</td><td><code>") && !page.contains("<code>-</code>"));
    assert!(page.contains("<details open><summary><b>results.edn</b>"));
    assert!(
        page.contains("latency-raw.svg")
            && page.contains("messages.svg")
            && page.contains("timeline.html")
    );
    assert!(page.contains("node-logs/n0.log"), "every file is listed");
    let (_, _, bad) = get(port, &invalid_page);
    assert!(bad.contains("Analysis invalid!"));

    // Files: viewable with their type, downloadable, and nothing outside the store.
    let svg = format!("/files{}messages.svg", &valid_page["/test".len()..]);
    let (status, headers, body) = get(port, &svg);
    assert!(
        status.contains("200") && headers.contains("content-type: image/svg+xml"),
        "{status}\n{headers}"
    );
    assert!(body.starts_with("<svg"));
    let (_, headers, _) = get(port, &format!("{svg}?download=1"));
    assert!(
        headers.contains("content-disposition: attachment; filename=\"messages.svg\""),
        "{headers}"
    );
    for escape in [
        "/files/..%2F..%2F..%2Fetc%2Fpasswd",
        "/files/echo/..%2F..%2F..%2Fetc%2Fhostname",
    ] {
        let (status, _, body) = get(port, escape);
        assert!(status.contains("403"), "{escape}: {status}");
        assert!(!body.contains("root:"), "{escape}");
    }

    // A real browser renders the index and a test page.
    let dom = chromium(&["--dump-dom", &format!("http://127.0.0.1:{port}/")]);
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(
        dom.contains("<h2>echo</h2>") && dom.contains(r#"class="invalid""#),
        "{dom}"
    );
    let shot = dir.path().join("page.png");
    chromium(&[
        &format!("--screenshot={}", shot.display()),
        "--window-size=1200,1600",
        &format!("http://127.0.0.1:{port}{valid_page}"),
    ]);
    let png = std::fs::read(&shot).expect("a screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "a rendered page, {} bytes",
        png.len()
    );
}
