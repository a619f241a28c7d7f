//! `maelstrom test` end to end: real node processes in Python, Ruby, JavaScript, Go and Rust,
//! good and deliberately broken, through the runner binary, judged by its exit code and files.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    dir: tempfile::TempDir,
}

impl Run {
    fn results(&self) -> Value {
        let text = std::fs::read_to_string(self.dir.path().join("store/latest/results.json"))
            .unwrap_or_else(|e| {
                panic!(
                    "no results.json ({e}); stdout:\n{}\nstderr:\n{}",
                    self.stdout, self.stderr
                )
            });
        serde_json::from_str(&text).unwrap()
    }

    fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join("store/latest").join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    fn explain(&self) -> String {
        let tail: Vec<&str> = self
            .stdout
            .lines()
            .rev()
            .take(60)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        format!(
            "exit {}\nstdout (tail):\n{}\nstderr:\n{}",
            self.code,
            tail.join("\n"),
            self.stderr
        )
    }
}

fn maelstrom(args: &[&str]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_maelstrom"))
        .args(args)
        .current_dir(dir.path())
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        dir,
    }
}

fn fixture(rel: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
        .display()
        .to_string()
}

/// Go fixtures are compiled once per test process; all but the two oldest share `node.go`.
fn go_fixture(name: &str) -> String {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let dir =
            std::env::temp_dir().join(format!("maelstrom-go-fixtures-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let programs: [(&str, &[&str]); 6] = [
            ("echo", &["echo.go"]),
            ("g_set", &["g_set.go"]),
            ("unique_ids", &["node.go", "unique_ids.go"]),
            ("broadcast", &["node.go", "broadcast.go"]),
            ("counter", &["node.go", "counter.go"]),
            ("broken_unique_ids", &["node.go", "broken_unique_ids.go"]),
        ];
        for (program, sources) in programs {
            let status = Command::new("go")
                .args(["build", "-o", dir.join(program).to_str().unwrap()])
                .args(sources.iter().map(|f| fixture(&format!("go/{f}"))))
                .env("GOCACHE", dir.join("cache"))
                .env("HOME", &dir)
                .status()
                .expect("go is installed (scripts/test installs golang-go)");
            assert!(status.success(), "go build {program}");
        }
        dir
    });
    dir.join(name).display().to_string()
}

/// The example node binaries, built in this test's profile.
fn example_node(name: &str) -> String {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-q", "-p", "maelstrom-example-nodes", "--bins"])
            .status()
            .unwrap();
        assert!(status.success(), "building the example nodes");
    });
    let dir = Path::new(env!("CARGO_BIN_EXE_maelstrom")).parent().unwrap();
    dir.join(name).display().to_string()
}

/// Runs every command at once (they mostly sleep) and returns the runs in order.
fn all(commands: Vec<Vec<String>>) -> Vec<(String, Run)> {
    std::thread::scope(|s| {
        let handles: Vec<_> = commands
            .iter()
            .map(|c| {
                s.spawn(move || {
                    let args: Vec<&str> = c.iter().map(String::as_str).collect();
                    (c.join(" "), maelstrom(&args))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn cmd(s: &str, bin: &str) -> Vec<String> {
    let mut v: Vec<String> = vec!["test".into(), "--bin".into(), bin.into()];
    v.extend(s.split_whitespace().map(String::from));
    v
}

fn assert_all(runs: &[(String, Run)], want: i32) {
    for (c, run) in runs {
        assert_eq!(run.code, want, "maelstrom {c}\n{}", run.explain());
        let valid = &run.results()["valid?"];
        assert_eq!(*valid, Value::Bool(want == 0), "maelstrom {c}");
    }
}

/// Every workload of this issue, with the original's command-line options, against one
/// language's nodes (each program is a separate file, as in the original's demo folder).
fn every_workload(node: impl Fn(&str) -> String) -> Vec<Vec<String>> {
    vec![
        cmd("-w echo --node-count 2 --time-limit 3", &node("echo")),
        cmd(
            "-w unique-ids --node-count 3 --time-limit 3 --rate 200 --availability total --nemesis partition --nemesis-interval 1",
            &node("unique_ids"),
        ),
        cmd(
            "-w broadcast --node-count 5 --time-limit 4 --rate 20 --topology line --nemesis partition --nemesis-interval 1",
            &node("broadcast"),
        ),
        cmd(
            "-w g-set --node-count 3 --time-limit 4 --rate 20 --nemesis partition --nemesis-interval 1",
            &node("g_set"),
        ),
        cmd(
            "-w g-counter --node-count 3 --time-limit 4 --rate 50 --nemesis partition --nemesis-interval 1",
            &node("counter"),
        ),
        cmd(
            "-w pn-counter --node-count 3 --time-limit 4 --rate 50 --latency 20 --latency-dist exponential",
            &node("counter"),
        ),
    ]
}

#[test]
fn python_nodes_pass_every_workload() {
    let runs = all(every_workload(|f| fixture(&format!("python/{f}.py"))));
    assert_all(&runs, 0);
}

#[test]
fn ruby_nodes_pass_every_workload_unmodified() {
    let runs = all(every_workload(|f| fixture(&format!("ruby/{f}.rb"))));
    assert_all(&runs, 0);
}

#[test]
fn javascript_nodes_pass_every_workload_unmodified() {
    let runs = all(every_workload(|f| fixture(&format!("js/{f}.js"))));
    assert_all(&runs, 0);
}

#[test]
fn go_nodes_pass_every_workload_unmodified() {
    let runs = all(every_workload(go_fixture));
    assert_all(&runs, 0);
}

#[test]
fn broken_nodes_are_judged_invalid_for_every_workload() {
    let py = |f: &str| fixture(&format!("python/{f}"));
    let runs = all(vec![
        cmd(
            "-w echo --node-count 1 --time-limit 2",
            &py("broken_echo.py"),
        ),
        cmd(
            "-w unique-ids --node-count 3 --time-limit 2 --rate 100",
            &py("broken_unique_ids.py"),
        ),
        cmd(
            "-w broadcast --node-count 3 --time-limit 3 --rate 20",
            &py("broken_set.py"),
        ),
        cmd(
            "-w g-set --node-count 3 --time-limit 3 --rate 20",
            &py("broken_set.py"),
        ),
        cmd(
            "-w g-counter --node-count 3 --time-limit 3 --rate 50",
            &py("broken_counter.py"),
        ),
        cmd(
            "-w pn-counter --node-count 1 --time-limit 3 --rate 50",
            &py("broken_counter.py"),
        ),
        cmd(
            "-w broadcast --node-count 3 --time-limit 3 --rate 20",
            &fixture("ruby/broken_broadcast.rb"),
        ),
        cmd(
            "-w g-counter --node-count 1 --time-limit 3 --rate 50",
            &fixture("js/broken_counter.js"),
        ),
        cmd(
            "-w unique-ids --node-count 3 --time-limit 2 --rate 100",
            &go_fixture("broken_unique_ids"),
        ),
    ]);
    assert_all(&runs, 1);
    let workload = |i: usize| runs[i].1.results()["workload"].clone();
    assert!(workload(1)["duplicated-count"].as_u64().unwrap() > 0);
    assert!(workload(2)["lost-count"].as_u64().unwrap() > 0);
    assert!(!workload(4)["errors"].as_array().unwrap().is_empty());
    assert!(workload(6)["lost-count"].as_u64().unwrap() > 0);
    assert!(!workload(7)["errors"].as_array().unwrap().is_empty());
    assert!(workload(8)["duplicated-count"].as_u64().unwrap() > 0);
}

#[test]
fn gossip_glomers_challenges_pass_against_the_example_nodes() {
    let runs = all(vec![
        cmd(
            "-w echo --node-count 1 --time-limit 10",
            &example_node("maelstrom-echo"),
        ),
        cmd(
            "-w unique-ids --time-limit 30 --rate 1000 --node-count 3 --availability total --nemesis partition",
            &example_node("maelstrom-unique-ids"),
        ),
        cmd(
            "-w broadcast --node-count 1 --time-limit 20 --rate 10",
            &example_node("maelstrom-broadcast"),
        ),
        cmd(
            "-w broadcast --node-count 5 --time-limit 20 --rate 10",
            &example_node("maelstrom-broadcast"),
        ),
        cmd(
            "-w broadcast --node-count 5 --time-limit 20 --rate 10 --nemesis partition",
            &example_node("maelstrom-broadcast"),
        ),
        cmd(
            "-w g-counter --node-count 3 --rate 100 --time-limit 20 --nemesis partition",
            &example_node("maelstrom-counter"),
        ),
    ]);
    assert_all(&runs, 0);
    assert_eq!(
        runs[1].1.results()["availability"]["ok-fraction"],
        1.0,
        "challenge 2 is totally available"
    );
    for (c, run) in &runs[2..5] {
        let edn = run.file("results.edn");
        // Users grep these; the value must sit on the key's line.
        assert!(edn.lines().any(|l| l.contains(":msgs-per-op ")), "{c}");
        assert!(
            edn.lines().any(|l| l.contains(":stable-latencies {0 ")),
            "{c}\n{edn}"
        );
        assert_eq!(run.results()["workload"]["lost-count"], 0, "{c}");
    }
}

/// One history line's `:f value` and `:time`.
fn f_value_time(line: &str) -> (String, u64) {
    let start = line.find(", :f ").expect("an :f") + 2;
    let end = line.find(", :time ").expect("a :time");
    let time: u64 = line[end + 8..]
        .split(',')
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    (line[start..end].to_string(), time)
}

/// `:f value` and `:time` of each op.
type Timed = Vec<(String, u64)>;

/// Main-phase client invocations and nemesis events, from history.edn (one op map per line).
fn schedule(run: &Run) -> (Timed, Timed) {
    let text = run.file("history.edn");
    let mut client = vec![];
    let mut nemesis = vec![];
    for line in text.lines() {
        if line.contains(":process :nemesis") {
            nemesis.push(f_value_time(line));
        } else if line.contains(":type :invoke") && !line.contains(":final? true") {
            client.push(f_value_time(line));
        }
    }
    (client, nemesis)
}

fn names(ops: &[(String, u64)]) -> Vec<&str> {
    ops.iter().map(|(f, _)| f.as_str()).collect()
}

/// Times relative to the first client invocation (start-up time differs between runs).
fn offsets(ops: &[(String, u64)], zero: u64) -> Vec<f64> {
    ops.iter()
        .map(|(_, t)| (*t as f64 - zero as f64) / 1e6)
        .collect()
}

#[test]
fn the_same_seed_gives_the_same_schedule_values_and_faults() {
    let bin = fixture("python/broadcast.py");
    let faults = |seed: u64| {
        cmd(
            &format!(
                "-w broadcast --node-count 5 --time-limit 4 --rate 40 --nemesis partition,lose,pause,kill --nemesis-interval 0.4 --seed {seed}"
            ),
            &bin,
        )
    };
    let calm = |seed: u64| {
        cmd(
            &format!(
                "-w broadcast --node-count 3 --concurrency 6 --time-limit 3 --rate 40 --nemesis partition --nemesis-interval 0.5 --seed {seed}"
            ),
            &bin,
        )
    };
    let runs = all(vec![faults(42), faults(42), faults(43), calm(7), calm(7)]);
    let (a, b, other) = (
        schedule(&runs[0].1),
        schedule(&runs[1].1),
        schedule(&runs[2].1),
    );
    assert!(
        a.0.len() > 100 && a.1.len() > 8,
        "{} ops, {} nemesis events",
        a.0.len(),
        a.1.len()
    );
    // Operations are generated and dispatched in schedule order, so they match op for op; when
    // every worker is stuck on a timeout as the phase ends (kills and pauses make that
    // possible), the last planned ones may go undispatched, so one run may stop earlier.
    let n = a.0.len().min(b.0.len());
    assert!(
        names(&a.0)[..n] == names(&b.0)[..n],
        "the same operations in the same order"
    );
    assert!(
        a.0.len().abs_diff(b.0.len()) <= 10,
        "{} vs {} operations",
        a.0.len(),
        b.0.len()
    );
    assert_eq!(
        names(&a.1),
        names(&b.1),
        "the same faults, targets and partition shapes"
    );
    assert_ne!(names(&a.0), names(&other.0));
    assert_ne!(names(&a.1), names(&other.1));
    // Without kills and pauses a worker is almost always free, so the planned times are kept:
    // the same seed gives the same times, to within scheduling noise. On a loaded machine
    // (these five runs share it) a reply can come late enough that an op waits for a worker,
    // so a few may be late; a different plan would differ by more for most ops.
    let (x, y) = (schedule(&runs[3].1), schedule(&runs[4].1));
    assert_eq!(names(&x.0), names(&y.0));
    let (zx, zy) = (x.0[0].1, y.0[0].1);
    let gaps: Vec<f64> = offsets(&x.0, zx)
        .iter()
        .zip(offsets(&y.0, zy))
        .map(|(p, q)| (p - q).abs())
        .collect();
    let close = gaps.iter().filter(|g| **g < 50.0).count();
    assert!(
        close * 100 >= gaps.len() * 95,
        "{close} of {} ops within 50 ms of the same op in the other run: {gaps:.1?}",
        gaps.len()
    );
    for (i, g) in gaps.iter().enumerate() {
        assert!(*g < 500.0, "op {i} is {g:.1} ms away from the other run's");
    }
    for (i, (p, q)) in offsets(&x.1, zx).iter().zip(offsets(&y.1, zy)).enumerate() {
        assert!(
            (p - q).abs() < 100.0,
            "nemesis event {i} at {p:.1} ms vs {q:.1} ms"
        );
    }
    assert_eq!(names(&x.1), names(&y.1));
    for (_, run) in &runs {
        assert!(run.stdout.contains("Seed: "), "the seed is printed");
        assert!(run.results()["seed"].as_u64().is_some());
    }
}

#[test]
fn garbage_and_unknown_destinations_are_counted_and_reading_goes_on() {
    let run = maelstrom(&[
        "test",
        "-w",
        "echo",
        "--bin",
        &fixture("python/noisy_echo.py"),
        "--node-count",
        "1",
        "--time-limit",
        "2",
    ]);
    assert_eq!(run.code, 0, "{}", run.explain());
    let dropped = &run.results()["net"]["dropped"];
    assert!(dropped["malformed"].as_u64().unwrap() >= 5, "{dropped}");
    assert!(dropped["unknown-dest"].as_u64().unwrap() >= 5, "{dropped}");
    assert_eq!(dropped["by-node"]["n0"]["malformed"], dropped["malformed"]);
    assert!(run.stdout.contains("Invalid dest for message"));
    assert!(run.stdout.contains("Node n0: dropped output lines"));
}

#[test]
fn crashes_and_silent_nodes_explain_themselves() {
    let runs = all(vec![
        cmd(
            "-w echo --node-count 1 --time-limit 3",
            &fixture("python/silent.py"),
        ),
        cmd(
            "-w echo --node-count 1 --time-limit 3",
            &fixture("python/crash_at_init.py"),
        ),
        cmd(
            "-w echo --node-count 1 --time-limit 3 --rate 10",
            &fixture("python/crash_later.py"),
        ),
    ]);
    let (silent, at_init, later) = (&runs[0].1, &runs[1].1, &runs[2].1);
    assert_eq!(silent.code, 255, "{}", silent.explain());
    assert!(
        silent
            .stdout
            .contains("Expected node n0 to respond to an init message, but node did not respond.")
    );
    assert!(
        silent
            .stdout
            .contains("starting up, but I will never answer"),
        "the last stderr lines are shown"
    );
    assert!(
        silent
            .stdout
            .contains("Oh jeez, I'm sorry, Maelstrom broke. Here's why:")
    );

    assert_eq!(at_init.code, 255, "{}", at_init.explain());
    assert!(
        at_init
            .stdout
            .contains("Node n0 crashed with exit status 3"),
        "{}",
        at_init.explain()
    );
    assert!(
        at_init.stdout.contains("about to fail")
            && at_init.stdout.contains("fatal: no configuration")
    );

    assert_eq!(later.code, 1, "{}", later.explain());
    assert!(later.stdout.contains("Node n0 crashed with exit status 7"));
    assert_eq!(later.results()["crashed"]["n0"]["exit"], 7);
}

#[test]
fn bad_command_lines_exit_254_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let write = |name: &str, body: &[u8], mode: u32| {
        use std::os::unix::fs::PermissionsExt;
        let p = d.join(name);
        std::fs::write(&p, body).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p.display().to_string()
    };
    let cases = [
        (
            vec!["test".to_string(), "-w".into(), "echo".into()],
            "Expected a --bin PATH_TO_BINARY to test",
        ),
        (
            vec!["test".into(), "--bin".into(), "./missing-node".into()],
            "no such file",
        ),
        (
            vec!["test".into(), "--bin".into(), d.display().to_string()],
            "it is a directory",
        ),
        (
            vec![
                "test".into(),
                "--bin".into(),
                write("n.py", b"#!/bin/sh\n", 0o644),
            ],
            "chmod +x",
        ),
        (
            vec!["test".into(), "--bin".into(), write("n.js", b"x\n", 0o755)],
            "neither a native executable nor a script",
        ),
        (
            vec![
                "test".into(),
                "--bin".into(),
                write("w.py", b"#!/usr/bin/python9\n", 0o755),
            ],
            "names /usr/bin/python9, which does not exist",
        ),
        (
            vec![
                "test".into(),
                "--bin".into(),
                write("r.py", b"#!/bin/sh\r\n", 0o755),
            ],
            "carriage return",
        ),
        (
            vec![
                "test".into(),
                "-w".into(),
                "echo".into(),
                "--bin".into(),
                fixture("python/echo.py"),
                "--concurrency".into(),
                "0".into(),
            ],
            "--concurrency",
        ),
        (
            vec![
                "test".into(),
                "-w".into(),
                "echo".into(),
                "--bin".into(),
                fixture("python/echo.py"),
                "--nemesis".into(),
                "flood".into(),
            ],
            "Unknown nemesis fault",
        ),
        (
            vec![
                "test".into(),
                "-w".into(),
                "echo".into(),
                "--bin".into(),
                fixture("python/echo.py"),
                "--time-limit".into(),
                "0".into(),
            ],
            "--time-limit",
        ),
        (
            vec!["frobnicate".into()],
            "Commands: test, analyze, check, serve, demo, doc",
        ),
    ];
    for (args, want) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = maelstrom(&args);
        assert_eq!(run.code, 254, "{args:?}: {}", run.explain());
        assert!(
            run.stderr.contains(want),
            "{args:?} should say {want:?}: {}",
            run.explain()
        );
    }
}

#[test]
fn the_store_has_the_original_layout() {
    let run = maelstrom(&[
        "test",
        "-w",
        "echo",
        "--bin",
        &fixture("python/echo.py"),
        "--node-count",
        "2",
        "--time-limit",
        "2",
        "--log-stderr",
    ]);
    assert_eq!(run.code, 0, "{}", run.explain());
    let store = run.dir.path().join("store");
    for link in ["latest", "current", "echo/latest"] {
        assert!(
            std::fs::symlink_metadata(store.join(link))
                .unwrap()
                .file_type()
                .is_symlink(),
            "{link}"
        );
    }
    for f in [
        "jepsen.log",
        "test.json",
        "history.edn",
        "history.txt",
        "results.edn",
        "results.json",
        "node-logs/n0.log",
        "node-logs/n1.log",
        "latency-raw.svg",
        "latency-quantiles.svg",
        "rate.svg",
        "messages.svg",
        "timeline.html",
    ] {
        assert!(store.join("latest").join(f).is_file(), "{f}");
    }
    let history = run.file("history.edn");
    assert!(
        history.starts_with("[{:type :invoke, :f :echo, :value \"Please echo "),
        "{}",
        &history[..100]
    );
    assert!(run.file("node-logs/n0.log").contains("initialised n0"));
    assert!(
        run.stdout.contains("n0 stderr: initialised n0"),
        "--log-stderr"
    );
    assert!(
        run.file("jepsen.log")
            .contains("Starting services: (lin-kv lin-tso lww-kv seq-kv)")
    );
    assert!(run.stdout.ends_with("Everything looks good! ヽ(‘ー`)ノ\n"));
    assert!(
        !run.stderr.contains("msg/s"),
        "no progress line when stderr is not a terminal"
    );
    let svg = run.file("latency-raw.svg");
    assert!(svg.starts_with("<svg") && svg.contains("<circle"));
    let quantiles = run.file("latency-quantiles.svg");
    assert!(quantiles.contains("<polyline") && quantiles.contains("quantile 0.99"));
    // The sequence diagram: client lanes, echo arrows labelled with their bodies, no init.
    let messages = run.file("messages.svg");
    assert!(
        messages.contains(">echo {&quot;echo&quot;:&quot;Please echo "),
        "{}",
        &messages[..2000.min(messages.len())]
    );
    assert!(messages.contains("echo_ok "));
    assert!(!messages.contains("init_ok"));
}

#[test]
fn a_terminal_gets_a_live_progress_line() {
    // `script` runs the command on a pseudo-terminal.
    let dir = tempfile::tempdir().unwrap();
    let inner = format!(
        "{} test -w echo --bin {} --node-count 1 --time-limit 2",
        env!("CARGO_BIN_EXE_maelstrom"),
        fixture("python/echo.py")
    );
    let out = Command::new("script")
        .args(["-qec", &inner, "/dev/null"])
        .current_dir(dir.path())
        .output()
        .expect("script (util-linux)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("s / 2s ] ok "), "{text}");
    assert!(text.contains("msg/s | nemesis: none"), "{text}");
    assert!(text.contains("Everything looks good!"));
}

#[test]
fn lin_kv_kafka_and_transactional_nodes_are_judged() {
    let py = |f: &str| fixture(&format!("python/{f}"));
    let runs = all(vec![
        cmd(
            "-w lin-kv --node-count 3 --concurrency 2n --rate 30 --time-limit 5 --nemesis partition --nemesis-interval 1",
            &py("lin_kv.py"),
        ),
        cmd(
            "-w txn-list-append --node-count 2 --concurrency 2n --rate 50 --time-limit 5 --nemesis partition --nemesis-interval 1",
            &py("txn_list_append.py"),
        ),
        cmd(
            "-w txn-rw-register --node-count 1 --concurrency 2n --rate 100 --time-limit 4 --consistency-models serializable --availability total",
            &py("txn_rw_register.py"),
        ),
        cmd(
            "-w kafka --node-count 1 --concurrency 2n --rate 100 --time-limit 5",
            &py("kafka.py"),
        ),
        cmd(
            "-w lin-kv --node-count 3 --concurrency 2n --rate 50 --time-limit 5",
            &py("broken_lin_kv.py"),
        ),
        cmd(
            "-w txn-list-append --node-count 2 --concurrency 2n --rate 50 --time-limit 5",
            &py("broken_txn.py"),
        ),
        cmd(
            "-w txn-rw-register --node-count 2 --concurrency 2n --rate 100 --time-limit 4",
            &py("broken_txn.py"),
        ),
        cmd(
            "-w kafka --node-count 1 --concurrency 2n --rate 100 --time-limit 5",
            &py("broken_kafka.py"),
        ),
    ]);
    assert_all(&runs[..4], 0);
    assert_all(&runs[4..], 1);
    let kafka = runs[7].1.results();
    assert!(
        kafka["workload"]["bad-error-types"]
            .to_string()
            .contains("lost-write"),
        "{}",
        kafka["workload"]
    );
    let linkv = &runs[4].1;
    let failures = linkv.results()["workload"]["failures"]
        .as_array()
        .unwrap()
        .clone();
    assert!(!failures.is_empty());
    let key = failures[0].to_string().trim_matches('"').to_string();
    for f in ["results.edn", "history.edn", "timeline.html", "linear.svg"] {
        assert!(
            linkv
                .dir
                .path()
                .join("store/latest/independent")
                .join(&key)
                .join(f)
                .is_file(),
            "independent/{key}/{f}"
        );
    }
    let txn = &runs[5].1;
    let types = txn.results()["workload"]["anomaly-types"]
        .as_array()
        .unwrap()
        .clone();
    assert!(!types.is_empty());
    let elle = txn.dir.path().join("store/latest/elle");
    let cycle = types
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .find(|t| t.starts_with('G') && elle.join(format!("{t}.txt")).is_file());
    let cycle = cycle.expect("a cycle anomaly with an explanation");
    assert!(
        std::fs::read_to_string(elle.join(format!("{cycle}.txt")))
            .unwrap()
            .contains("a cycle")
    );
    assert!(elle.join(&cycle).join("0.svg").is_file());
    let bad_concurrency = maelstrom(&[
        "test",
        "-w",
        "lin-kv",
        "--bin",
        &py("lin_kv.py"),
        "--node-count",
        "3",
        "--concurrency",
        "3",
    ]);
    assert_eq!(bad_concurrency.code, 254);
    assert!(bad_concurrency.stderr.contains("The lin-kv workload needs --concurrency to be a positive multiple of 2 x node count (e.g. --concurrency 2n); got 3 with 3 nodes."));
}

fn check_file(text: &str, args: &[&str]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("h.edn"), text).unwrap();
    let mut all_args = vec!["check"];
    all_args.extend_from_slice(args);
    all_args.push("h.edn");
    let out = Command::new(env!("CARGO_BIN_EXE_maelstrom"))
        .args(&all_args)
        .current_dir(dir.path())
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
        dir,
    }
}

#[test]
fn check_reads_jepsen_histories_and_explains_bad_input() {
    let linearizable = "; write, then read it back\n[{:process 0, :type :invoke, :f :write, :value 1}\n {:process 0, :type :ok, :f :write, :value 1}\n {:process 1, :type :invoke, :f :read, :value nil}\n {:process 1, :type :ok, :f :read, :value 1}]";
    let run = check_file(linearizable, &[]);
    assert_eq!(run.code, 0, "{}", run.explain());
    assert!(run.stdout.contains(":analyzer :wgl"));
    let stale = linearizable.replace(":value 1}]", ":value 0}]");
    assert_eq!(check_file(&stale, &["--model", "cas-register"]).code, 1);
    assert_eq!(
        check_file(&stale, &["--model", "cas-register", "--initial-value", "0"]).code,
        1,
        "0 was overwritten by 1 before the read"
    );
    // Keyed values make it a lin-kv history; one op map per line works too.
    let keyed = "{:process 0 :type :invoke :f :write :value [7 1]}\n{:process 0 :type :ok :f :write :value [7 1]}\n{:process 1 :type :invoke :f :read :value [7 nil]}\n{:process 1 :type :ok :f :read :value [7 2]}\n{:process :nemesis :type :info :f :start-partition :value nil}";
    let run = check_file(keyed, &["--format", "json"]);
    assert_eq!(run.code, 1, "{}", run.explain());
    let json: Value = serde_json::from_str(run.stdout.split("\n\n").next().unwrap()).unwrap();
    assert_eq!(json["workload"]["failures"], serde_json::json!([7]));
    // A transactional history with -w.
    let txn = "[{:process 0 :type :invoke :value [[:append 1 1]]} {:process 0 :type :ok :value [[:append 1 1]]} {:process 1 :type :invoke :value [[:r 1 nil]]} {:process 1 :type :ok :value [[:r 1 [1 1]]]}]";
    let run = check_file(txn, &["-w", "txn-list-append"]);
    assert_eq!(run.code, 1, "{}", run.explain());
    assert!(run.stdout.contains(":duplicate-elements"));
    // Bad input: a clear message naming the line, exit 254.
    let run = check_file("[{:process 0 :type :invoke}\n{:oops}", &[]);
    assert_eq!(run.code, 254);
    assert!(run.stderr.contains("h.edn: line 2"), "{}", run.stderr);
    let run = check_file(
        "{:process 0 :type :invoke :f :read}\n; a comment\n{:process 0 :type :okay :f :read}",
        &[],
    );
    assert_eq!(run.code, 254);
    assert!(
        run.stderr
            .contains("h.edn: line 3 (op 1): :type must be :invoke, :ok, :fail or :info"),
        "{}",
        run.stderr
    );
    let run = check_file(
        "[{:process 0 :type :invoke :f :read}\n {:process 0 :type :ok :f :read :value 7}\n {:process 0 :type :ok :f :read}]",
        &[],
    );
    assert_eq!(run.code, 1, "7 was never written: {}", run.explain());
    assert!(
        run.stdout
            .contains(":value 7, :time 1, :process 0, :index 1}")
    );
    let run = check_file("[70 :invoke :read nil]\n[70 :ok :read nil]", &[]);
    assert_eq!(run.code, 254);
    assert!(
        run.stderr
            .contains("h.edn: line 1 (op 0): expected a map like"),
        "{}",
        run.stderr
    );
    let run = check_file("[]", &["-w", "no-such-workload"]);
    assert_eq!(run.code, 254);
    assert!(run.stderr.contains("Unknown workload"));
}

#[test]
fn analyze_rechecks_a_stored_test() {
    let run = maelstrom(&[
        "test",
        "-w",
        "g-counter",
        "--bin",
        &fixture("python/broken_counter.py"),
        "--node-count",
        "2",
        "--time-limit",
        "2",
        "--rate",
        "50",
    ]);
    assert_eq!(run.code, 1, "{}", run.explain());
    let before = run.results();
    std::fs::remove_file(run.dir.path().join("store/latest/results.edn")).unwrap();
    for t in ["-1", "0"] {
        let out = Command::new(env!("CARGO_BIN_EXE_maelstrom"))
            .args(["analyze", "-t", t])
            .current_dir(run.dir.path())
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let after = run.results();
    assert_eq!(before["workload"], after["workload"]);
    assert_eq!(before["net"], after["net"]);
    assert!(run.dir.path().join("store/latest/results.edn").is_file());
    let out = Command::new(env!("CARGO_BIN_EXE_maelstrom"))
        .args(["analyze", "-t", "5"])
        .current_dir(run.dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(254));
    assert!(String::from_utf8_lossy(&out.stderr).contains("No stored test at index 5"));
}

#[test]
fn demo_runs_every_example_node_and_sums_up() {
    example_node("maelstrom-echo");
    let run = maelstrom(&[
        "demo",
        "--time-limit",
        "1",
        "--rate",
        "20",
        "--node-count",
        "3",
    ]);
    assert_eq!(run.code, 0, "{}", run.explain());
    let summary = run.stdout.split("Demo summary:").nth(1).expect("a summary");
    for (workload, binary) in [
        ("echo", "maelstrom-echo"),
        ("unique-ids", "maelstrom-unique-ids"),
        ("broadcast", "maelstrom-broadcast"),
        ("g-set", "maelstrom-g-set"),
        ("g-counter", "maelstrom-counter"),
        ("pn-counter", "maelstrom-pn-counter"),
    ] {
        let line = summary
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{workload} ")))
            .unwrap_or_else(|| panic!("{workload} in\n{summary}"));
        assert!(line.contains(binary) && line.contains(" valid "), "{line}");
        let dir = line.split_whitespace().last().unwrap();
        assert!(
            run.dir.path().join(dir).join("results.edn").is_file(),
            "{dir}"
        );
        let test_json =
            std::fs::read_to_string(run.dir.path().join(dir).join("test.json")).unwrap();
        assert!(
            test_json.contains("--time-limit"),
            "the options reach every run"
        );
    }
    assert!(summary.contains("no bundled example node for kafka"));
    assert!(
        run.stdout
            .trim_end()
            .ends_with("Everything looks good! ヽ(‘ー`)ノ")
    );

    let refused = maelstrom(&["demo", "--bin", "x"]);
    assert_eq!(refused.code, 254);
    assert!(refused.stderr.contains("drop --bin"), "{}", refused.stderr);
    let typo = maelstrom(&["demo", "--time-limt", "1"]);
    assert_eq!(typo.code, 254, "{}", typo.explain());
}

#[test]
fn demo_without_the_example_nodes_says_how_to_build_them() {
    let dir = tempfile::tempdir().unwrap();
    let lonely = dir.path().join("maelstrom");
    std::fs::copy(env!("CARGO_BIN_EXE_maelstrom"), &lonely).unwrap();
    let out = Command::new(&lonely)
        .args(["demo", "--time-limit", "1"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(254), "{stderr}");
    assert!(stderr.contains("maelstrom-echo"), "{stderr}");
    assert!(stderr.contains("cargo build --release -p maelstrom -p maelstrom-example-nodes"));
}

#[test]
fn doc_writes_the_committed_workload_and_protocol_docs() {
    let run = maelstrom(&["doc", "--out", "docs-here"]);
    assert_eq!(run.code, 0, "{}", run.explain());
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../doc");
    for name in ["workloads.md", "protocol.md"] {
        let fresh = std::fs::read_to_string(run.dir.path().join("docs-here").join(name)).unwrap();
        let kept = std::fs::read_to_string(committed.join(name)).unwrap_or_default();
        assert!(
            fresh == kept,
            "doc/{name} is out of date; regenerate it with `cargo run -p maelstrom -- doc`"
        );
        assert!(run.stdout.contains(name));
    }
}

/// Completions (not invocations) of a stored history, one op map per line.
fn completions(run: &Run) -> Vec<String> {
    run.file("history.edn")
        .lines()
        .filter(|l| l.contains(":type :") && !l.contains(":type :invoke"))
        .map(String::from)
        .collect()
}

#[test]
fn timeouts_error_codes_and_malformed_replies_map_to_the_history_as_the_original() {
    let bin = fixture("python/misbehaving.py");
    let runs = all(vec![
        cmd(
            "-w lin-kv --node-count 1 --concurrency 2n --time-limit 4 --rate 20",
            &bin,
        ),
        cmd("-w g-set --node-count 1 --time-limit 2 --rate 10", &bin),
    ]);
    let (lin_kv, g_set) = (&runs[0].1, &runs[1].1);
    assert_eq!(lin_kv.code, 1, "no operation succeeds: :stats is invalid");
    let ops = completions(lin_kv);
    let has = |t: &str, f: &str, error: &str| {
        ops.iter().any(|l| {
            l.contains(&format!(":type :{t}, :f :{f},")) && l.contains(&format!(":error {error}"))
        })
    };
    // read is idempotent for lin-kv: every failure is :fail, even a timeout or unknown code.
    assert!(has("fail", "read", ":net-timeout"), "{ops:#?}");
    assert!(has("fail", "read", "[:key-does-not-exist \"no luck"));
    assert!(has("fail", "read", "[:unknown \"no luck"));
    assert!(has(
        "info",
        "read",
        "[:malformed-response \"read_ok needs a field \\\"value\\\"\"]"
    ));
    // write is not: timeouts, crash (13) and custom codes are indefinite; 11 is definite.
    assert!(has("info", "write", ":net-timeout"));
    assert!(has("info", "write", "[:crash \"no luck"));
    assert!(has("info", "write", "[:unknown \"no luck"));
    assert!(has("fail", "write", "[:temporarily-unavailable \"no luck"));
    assert!(has("fail", "cas", "[:precondition-failed \"no luck"));
    // After an :info a thread continues as process + concurrency (2), keeping its client.
    assert!(ops.iter().any(|l| l.contains(":process 3,")), "{ops:#?}");

    // g-set records no :fail at all, not even for a definite code.
    let ops = completions(g_set);
    assert!(
        ops.iter().any(|l| l.contains(":type :info, :f :add,")
            && l.contains(":error [:temporarily-unavailable"))
    );
    assert!(
        ops.iter()
            .any(|l| l.contains(":type :info, :f :add,") && l.contains(":error :net-timeout"))
    );
    assert!(!ops.iter().any(|l| l.contains(":type :fail")), "{ops:#?}");
}

#[test]
fn faults_and_services_decide_verdicts_end_to_end() {
    let py = |f: &str| fixture(&format!("python/{f}"));
    let faulty = "--time-limit 4 --rate 40 --nemesis-interval 0.5";
    let runs = all(vec![
        // State in memory dies with a killed node; state in lin-tso does not. A client whose
        // request meets a dead node waits out its 5 s timeout, so one client can spend the
        // whole run stuck without a single add acknowledged (seen in CI): four clients and
        // a run longer than the timeout make an acknowledged-then-lost add all but certain.
        cmd(
            "-w g-set --node-count 1 --nemesis kill --time-limit 6 --rate 40 --nemesis-interval 0.5 --concurrency 4",
            &py("g_set.py"),
        ),
        cmd(
            &format!("-w unique-ids --node-count 3 --nemesis kill {faulty}"),
            &py("tso_unique_ids.py"),
        ),
        // Fire-and-forget loses messages under the lose fault; acknowledged gossip does not,
        // nor does it mind pauses.
        cmd(
            &format!("-w broadcast --node-count 3 --nemesis lose {faulty}"),
            &py("broadcast_once.py"),
        ),
        cmd(
            &format!("-w broadcast --node-count 3 --nemesis lose,pause {faulty}"),
            &py("broadcast.py"),
        ),
        cmd(
            "-w broadcast --node-count 3 --time-limit 3 --rate 40",
            &py("broadcast_once.py"),
        ),
        // Sharing state through lww-kv converges once traffic stops, partitions or not.
        cmd(
            "-w g-set --node-count 3 --time-limit 4 --rate 20 --latency 10 --nemesis partition --nemesis-interval 1",
            &py("lww_g_set.py"),
        ),
    ]);
    let want = [1, 0, 1, 0, 0, 0];
    for ((c, run), want) in runs.iter().zip(want) {
        assert_eq!(run.code, want, "maelstrom {c}\n{}", run.explain());
    }
    let workload = |i: usize| runs[i].1.results()["workload"].clone();
    assert!(workload(0)["lost-count"].as_u64().unwrap() > 0);
    assert!(workload(2)["lost-count"].as_u64().unwrap() > 0);
    for i in [0, 1] {
        let history = runs[i].1.file("history.edn");
        assert!(history.contains(":f :kill, :value {"), "nodes were killed");
        assert!(history.contains(":restarted"), "and restarted");
    }
    // lin-tso counts 0, 1, 2, … across restarts, one timestamp per attempt at most.
    let ids = workload(1);
    let count = |k: &str| ids[k].as_i64().unwrap();
    let (lo, hi) = (ids["range"][0].as_i64(), ids["range"][1].as_i64().unwrap());
    assert_eq!(lo, Some(0), "{ids}");
    assert!(
        hi >= count("acknowledged-count") - 1 && hi < count("attempted-count"),
        "{ids}"
    );
    assert!(runs[3].1.file("history.edn").contains(":f :pause"));
}
