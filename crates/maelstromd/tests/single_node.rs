//! One maelstromd node against the real Docker Engine, driven the way a user drives it: a
//! project put with maelctl, requests on the public port, and the containers observed with
//! `docker`. Each test runs its own node (own ports, data directory and node id).

mod common;

use common::*;
use std::time::{Duration, Instant};

fn yaml(template: &str) -> String {
    template.replace("{image}", test_image())
}

fn docker(args: &[&str]) -> String {
    let out = std::process::Command::new("docker")
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_request_starts_a_container_and_routing_follows_the_event_sources() {
    let d = Daemon::start(Opts::default()).await;
    let project = yaml(
        r#"
name: T1
environment:
  - SHARED=project
  - MAELSTROM_COMPONENT_NAME=hijacked
components:
  web:
    image: {image}
    httphealthcheckpath: /health
    environment:
      - GREETING=hello
    eventsources:
      web_http:
        http:
          hostname: web.test
  api:
    image: {image}
    httphealthcheckpath: /health
    eventsources:
      api_http:
        http:
          pathprefix: /api
          stripprefix: true
"#,
    );
    let out = d.put_project(&project);
    assert!(out.starts_with("Project saved: t1 from file:"), "{out}");
    assert!(
        out.contains("Component    t1_api                             Added"),
        "{out}"
    );
    assert!(
        out.contains("EventSource  t1_web_http                        Added"),
        "{out}"
    );
    assert!(
        d.containers().is_empty(),
        "nothing runs before the first request"
    );

    let started = Instant::now();
    let (status, body) = d.get("web.test:80", "/").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("hello from t1_web v1"), "{body}");
    eprintln!("cold start to first answer: {:?}", started.elapsed());
    assert_eq!(d.containers().len(), 1);

    // Environment: the MAELSTROM_* contract wins over user variables of that prefix.
    let (_, env) = d.get("web.test", "/env").await;
    for want in [
        "MAELSTROM_COMPONENT_NAME=t1_web",
        "MAELSTROM_COMPONENT_VERSION=1",
        "MAELSTROM_PROJECT_NAME=t1",
        "GREETING=hello",
        "SHARED=project",
    ] {
        assert!(env.lines().any(|l| l == want), "missing {want} in:\n{env}");
    }
    assert!(!env.contains("hijacked"), "{env}");
    assert!(
        env.lines()
            .any(|l| l.starts_with("MAELSTROM_PRIVATE_URL=http://")),
        "{env}"
    );

    // Path prefix with stripping, on any host.
    let (status, env) = d.get("other.test", "/api/env").await;
    assert_eq!(status, 200);
    assert!(env.contains("MAELSTROM_COMPONENT_NAME=t1_api"), "{env}");
    let (status, body) = d.get("bogus.test", "/").await;
    assert_eq!(
        (status, body.as_str()),
        (404, "No component matches the request")
    );

    // Header hygiene on the public port.
    let a = request(
        &d.public(),
        "GET",
        "web.test",
        "/headers",
        &[
            ("x-forwarded-for", "203.0.113.9"),
            ("MAELSTROM-COMPONENT", "t1_api"),
            ("maelstrom-deadline-nano", "1"),
        ],
    )
    .await;
    assert_eq!(a.status, 200);
    let h = a.body;
    assert!(h.contains("x-forwarded-for: 203.0.113.9, 127.0.0.1"), "{h}");
    assert!(h.contains("x-forwarded-proto: http"), "{h}");
    assert!(h.contains("x-forwarded-host: web.test"), "{h}");
    assert!(!h.contains("maelstrom-component"), "{h}");
    let deadline: u128 = h
        .lines()
        .find_map(|l| l.strip_prefix("maelstrom-deadline-nano: "))
        .expect("deadline header")
        .parse()
        .unwrap();
    assert!(
        deadline > 1_000_000_000_000_000_000,
        "the client's deadline was ignored"
    );
    assert!(h.contains("maelstrom-start-nano: "), "{h}");

    // The private port selects by header; so does the container gateway.
    let a = request(
        &format!("127.0.0.1:{}", d.private_port),
        "GET",
        "x",
        "/env",
        &[("MAELSTROM-COMPONENT", "t1_api")],
    )
    .await;
    assert!(
        a.body.contains("MAELSTROM_COMPONENT_NAME=t1_api"),
        "{}",
        a.body
    );
    let gw = d
        .log()
        .lines()
        .find_map(|l| {
            l.split("container gateway listening addr=")
                .nth(1)
                .map(|s| s.trim().to_string())
        })
        .expect("gateway address in the log");
    let a = request(&gw, "GET", "x", "/", &[("MAELSTROM-COMPONENT", "t1_web")]).await;
    assert!(a.body.starts_with("hello from t1_web"), "{}", a.body);
    let a = request(&gw, "POST", "x", "/_mael/v1", &[]).await;
    assert_eq!(a.status, 404, "the container gateway never serves RPC");

    // Labels of the container contract.
    let id = &d.containers()[0];
    let labels = docker(&["inspect", "-f", "{{json .Config.Labels}}", id]);
    for want in [
        "\"maelstrom\":\"true\"",
        "\"maelstrom_version\":\"1\"",
        &format!("\"maelstrom_node\":\"{}\"", d.node_id),
    ] {
        assert!(labels.contains(want), "{labels}");
    }

    // maelctl views.
    let comps = String::from_utf8_lossy(&d.maelctl(&["comp", "ls"]).stdout).to_string();
    assert!(comps.starts_with("Component             Image"), "{comps}");
    assert!(
        comps.contains("t1_api") && comps.contains("t1_web"),
        "{comps}"
    );
    let es =
        String::from_utf8_lossy(&d.maelctl(&["es", "ls", "--project", "t1"]).stdout).to_string();
    assert!(
        es.contains("t1_web_http") && es.contains("web.test") && es.contains("Enabled"),
        "{es}"
    );
    let ps = String::from_utf8_lossy(&d.maelctl(&["cluster", "ps"]).stdout).to_string();
    assert!(ps.contains("t1_web") && ps.contains("active"), "{ps}");
    let nodes = String::from_utf8_lossy(&d.maelctl(&["cluster", "nodes"]).stdout).to_string();
    assert!(
        nodes.contains(&d.node_id[..d.node_id.len().min(14)]),
        "{nodes}"
    );

    // Disabling the event source stops routing within about a second.
    let out = d.maelctl(&["es", "disable", "--component", "t1_web"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("t1_web_http"));
    eventually(
        Duration::from_secs(3),
        "routing stops after es disable",
        || async { d.get("web.test", "/").await.0 == 404 },
    )
    .await;
    d.maelctl(&["es", "enable", "--component", "t1_web"]);
    eventually(
        Duration::from_secs(3),
        "routing resumes after es enable",
        || async { d.get("web.test", "/").await.0 == 200 },
    )
    .await;

    // A second put with no change says so; removal stops every container.
    let again = d.put_project(&project);
    assert!(
        again.starts_with("PutProject: No project changes detected"),
        "{again}"
    );
    let out = d.maelctl(&["project", "rm", "t1"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Project removed: t1\n"
    );
    eventually(
        Duration::from_secs(10),
        "containers gone after project rm",
        || async { d.containers().is_empty() },
    )
    .await;
    assert_eq!(d.get("web.test", "/").await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_limit_queue_overflow_and_cancellation() {
    let d = Daemon::start(Opts::default()).await;
    d.put_project(&yaml(
        "name: t2\ncomponents:\n  slow:\n    image: {image}\n    maxconcurrency: 1\n    maxinstances: 1\n    maxqueuedrequests: 2\n    eventsources:\n      slow_http:\n        http:\n          hostname: slow.test\n",
    ));
    assert_eq!(d.get("slow.test", "/").await.0, 200);
    let addr = d.public();
    let spawn = |ms: u64| {
        let addr = addr.clone();
        tokio::spawn(async move {
            let t = Instant::now();
            let a = request(&addr, "GET", "slow.test", &format!("/sleep?ms={ms}"), &[]).await;
            (a.status, t.elapsed())
        })
    };
    let first = spawn(1500);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second = spawn(300);
    let third = spawn(300);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let metrics = |d: &Daemon| {
        let url = format!("127.0.0.1:{}", d.private_port);
        async move { request(&url, "GET", "x", "/metrics", &[]).await.body }
    };
    assert!(
        metrics(&d)
            .await
            .contains("maelstrom_queue_depth{component=\"t2_slow\"} 2")
    );

    // The queue holds two: the next request is refused at once.
    let t = Instant::now();
    let full = request(&d.public(), "GET", "slow.test", "/sleep?ms=1", &[]).await;
    assert_eq!(full.status, 503);
    assert_eq!(full.body, "Component queue full: t2_slow");
    let retry: u64 = full.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "refused without waiting"
    );

    // A client that goes away leaves the queue.
    third.abort();
    eventually(
        Duration::from_secs(2),
        "the cancelled request left the queue",
        || async {
            metrics(&d)
                .await
                .contains("maelstrom_queue_depth{component=\"t2_slow\"} 1")
        },
    )
    .await;
    let (s1, t1) = first.await.unwrap();
    let (s2, t2) = second.await.unwrap();
    assert_eq!((s1, s2), (200, 200));
    assert!(
        t2 > Duration::from_millis(1100),
        "the queued request waited for the slot: {t2:?} (first {t1:?})"
    );
    assert!(
        metrics(&d)
            .await
            .contains("maelstrom_queue_rejected_total{component=\"t2_slow\"} 1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_health_checks_replace_the_container() {
    let d = Daemon::start(Opts::default()).await;
    d.put_project(&yaml(
        r#"
name: t3
components:
  flaky:
    image: {image}
    httphealthcheckpath: /health
    httphealthcheckseconds: 1
    httphealthcheckmaxfailures: 2
    healthcheckfailedcommand: ["/c", "--say", "goodbye-from-healthcheck"]
    eventsources:
      flaky_http:
        http:
          hostname: flaky.test
"#,
    ));
    let (_, first) = d.get("flaky.test", "/").await;
    assert_eq!(d.get("flaky.test", "/fail").await.0, 200);
    eventually(
        Duration::from_secs(20),
        "a new container answers",
        || async {
            let (s, body) = d.get("flaky.test", "/").await;
            s == 200 && body != first
        },
    )
    .await;
    eventually(
        Duration::from_secs(5),
        "the failed container is gone",
        || async { d.containers().len() == 1 },
    )
    .await;
    assert!(
        d.log().contains("goodbye-from-healthcheck"),
        "healthcheckfailedcommand ran inside the container"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_containers_stop_after_their_timeout() {
    let d = Daemon::start(Opts::default()).await;
    d.put_project(&yaml(
        "name: t4\ncomponents:\n  idle:\n    image: {image}\n    idletimeoutseconds: 2\n    eventsources:\n      idle_http:\n        http:\n          hostname: idle.test\n",
    ));
    assert_eq!(d.get("idle.test", "/").await.0, 200);
    let last = Instant::now();
    assert_eq!(d.containers().len(), 1);
    eventually(
        Duration::from_secs(12),
        "the idle container stops",
        || async { d.containers().is_empty() },
    )
    .await;
    let took = last.elapsed();
    eprintln!("stopped {took:?} after the last request (idle timeout 2 s)");
    assert!(
        took >= Duration::from_secs(2),
        "not before the idle timeout: {took:?}"
    );
    assert!(
        took <= Duration::from_secs(2 + 5 + 2),
        "within idletimeout + 5 s (+ stop): {took:?}"
    );
    // The next request starts it again.
    assert_eq!(d.get("idle.test", "/").await.0, 200);
}

async fn rolling_update(order: &str) {
    let d = Daemon::start(Opts::default()).await;
    let project = |rev: u32| {
        yaml(&format!(
            "name: roll\ncomponents:\n  app:\n    image: {{image}}\n    httphealthcheckpath: /health\n    mininstances: 2\n    maxconcurrency: 4\n    restartorder: {order}\n    environment: [REV={rev}]\n    eventsources:\n      app_http:\n        http:\n          hostname: roll.test\n"
        ))
    };
    d.put_project(&project(1));
    eventually(
        Duration::from_secs(20),
        "mininstances: 2 active containers",
        || async {
            let ps = String::from_utf8_lossy(&d.maelctl(&["cluster", "ps"]).stdout).to_string();
            d.get("roll.test", "/").await.0 == 200
                && ps
                    .lines()
                    .filter(|l| l.starts_with("roll_app") && l.contains(" active "))
                    .count()
                    == 2
        },
    )
    .await;
    let old: Vec<String> = d.containers();
    // Steady load while the update rolls.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..3 {
        let (addr, stop) = (d.public(), stop.clone());
        load.push(tokio::spawn(async move {
            let mut results = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let t = Instant::now();
                let a = request(&addr, "GET", "roll.test", "/env", &[]).await;
                results.push((a.status, t.elapsed(), a.body.contains("REV=2")));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            results
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log_before = d.log().len();
    d.put_project(&project(2));
    eventually(
        Duration::from_secs(30),
        "both containers replaced",
        || async {
            let now = d.containers();
            now.len() == 2 && now.iter().all(|c| !old.contains(c))
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut all = Vec::new();
    for l in load {
        all.extend(l.await.unwrap());
    }
    let errors = all.iter().filter(|r| r.0 != 200).count();
    assert_eq!(
        errors,
        0,
        "{errors} of {} requests failed during the {order} update",
        all.len()
    );
    assert!(all.last().unwrap().2, "the new version serves at the end");
    let log = d.log()[log_before..].to_string();
    let first_start = log.find("container started and healthy").expect("a start");
    let first_stop = log.find("component version changed").expect("a stop");
    match order {
        "startstop" => assert!(
            first_start < first_stop,
            "startstop begins with a start:\n{log}"
        ),
        _ => assert!(
            first_stop < first_start,
            "stopstart begins with a stop:\n{log}"
        ),
    }
    let mut lat: Vec<Duration> = all.iter().map(|r| r.1).collect();
    lat.sort();
    eprintln!(
        "{order}: {} requests, p50 {:?}, p99 {:?}",
        lat.len(),
        lat[lat.len() / 2],
        lat[lat.len() * 99 / 100]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_startstop_serves_throughout() {
    rolling_update("startstop").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_stopstart_serves_throughout() {
    rolling_update("stopstart").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_adopts_its_running_containers() {
    let mut a = Daemon::start(Opts::default()).await;
    a.put_project(&yaml(
        "name: t6\ncomponents:\n  keep:\n    image: {image}\n    httphealthcheckpath: /health\n    eventsources:\n      keep_http:\n        http:\n          hostname: keep.test\n",
    ));
    let (_, before) = a.get("keep.test", "/").await;
    let ids = a.containers();
    assert_eq!(ids.len(), 1);
    let status = a.stop(Duration::from_secs(20));
    assert!(status.success(), "clean exit: {status}");
    assert_eq!(
        a.containers(),
        ids,
        "MAEL_CONTAINERS_ON_EXIT=keep leaves it running"
    );
    a.keep_containers();
    let b = Daemon::start(Opts {
        data_dir: Some(a.data_dir.clone()),
        ..Default::default()
    })
    .await;
    assert_eq!(
        b.node_id, a.node_id,
        "the node id is kept in the data directory"
    );
    let (status, after) = b.get("keep.test", "/").await;
    assert_eq!(status, 200);
    assert_eq!(after, before, "the same container answers");
    assert_eq!(b.containers(), ids, "no new container was started");
    assert!(b.log().contains("adopted a running container"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cron_fires_through_the_gateway_and_stops_when_disabled() {
    let d = Daemon::start(Opts {
        env: vec![("MAEL_CRON_REFRESH_SECONDS".into(), "1".into())],
        ..Default::default()
    })
    .await;
    d.put_project(&yaml(
        "name: t7\ncomponents:\n  ticker:\n    image: {image}\n    crontab: |\n      # one a second\n      @every 1s /count\n    eventsources:\n      tick_http:\n        http:\n          hostname: tick.test\n",
    ));
    let count = |body: String| body.trim().parse::<u64>().unwrap_or(0);
    eventually(
        Duration::from_secs(15),
        "cron has fired a few times",
        || async { count(d.get("tick.test", "/peek").await.1) >= 3 },
    )
    .await;
    let es =
        String::from_utf8_lossy(&d.maelctl(&["es", "ls", "--type", "cron"]).stdout).to_string();
    assert!(
        es.contains("t7_ticker-cron-0") && es.contains("sched='@every 1s'"),
        "{es}"
    );
    let metrics = request(
        &format!("127.0.0.1:{}", d.private_port),
        "GET",
        "x",
        "/metrics",
        &[],
    )
    .await
    .body;
    assert!(metrics.contains("maelstrom_eventsource_invocations_total{eventsource=\"t7_ticker-cron-0\",type=\"cron\",result=\"ok\"}"), "{metrics}");
    d.maelctl(&["es", "disable", "--type", "cron"]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let a = count(d.get("tick.test", "/peek").await.1);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let b = count(d.get("tick.test", "/peek").await.1);
    assert_eq!(b, a, "no firing once cron is disabled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_in_flight_requests_and_can_stop_containers() {
    let mut d = Daemon::start(Opts {
        env: vec![("MAEL_CONTAINERS_ON_EXIT".into(), "stop".into())],
        ..Default::default()
    })
    .await;
    d.put_project(&yaml(
        "name: t8\ncomponents:\n  work:\n    image: {image}\n    eventsources:\n      work_http:\n        http:\n          hostname: work.test\n",
    ));
    assert_eq!(d.get("work.test", "/").await.0, 200);
    let addr = d.public();
    let inflight =
        tokio::spawn(
            async move { request(&addr, "GET", "work.test", "/sleep?ms=1500", &[]).await },
        );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = d.pid();
    let stopper = std::thread::spawn(move || {
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    });
    stopper.join().unwrap();
    let a = inflight.await.unwrap();
    assert_eq!(
        (a.status, a.body.as_str()),
        (200, "slept 1500 ms\n"),
        "the in-flight request finished"
    );
    let status = d.wait(Duration::from_secs(30));
    assert!(status.success());
    assert!(
        d.containers().is_empty(),
        "MAEL_CONTAINERS_ON_EXIT=stop removed the containers"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlines_streaming_upgrades_keep_alive_and_metrics() {
    let d = Daemon::start(Opts::default()).await;
    d.put_project(&yaml(
        "name: t9\ncomponents:\n  x:\n    image: {image}\n    maxdurationseconds: 1\n    maxconcurrency: 8\n    eventsources:\n      x_http:\n        http:\n          hostname: x.test\n",
    ));
    assert_eq!(d.get("x.test", "/").await.0, 200);

    let t = Instant::now();
    let (status, body) = d.get("x.test", "/sleep?ms=3000").await;
    assert_eq!(
        (status, body.as_str()),
        (504, "gateway: Timeout proxying component: t9_x")
    );
    assert!(
        t.elapsed() < Duration::from_millis(1800),
        "{:?}",
        t.elapsed()
    );

    // Chunks stream through as they come.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(d.public()).await.unwrap();
        s.write_all(b"GET /stream HTTP/1.1\r\nHost: x.test\r\n\r\n")
            .await
            .unwrap();
        let t = Instant::now();
        let mut buf = vec![0u8; 4096];
        let mut got = String::new();
        let mut first_chunk_at = None;
        while !got.contains("chunk 2") {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed early: {got}");
            got.push_str(&String::from_utf8_lossy(&buf[..n]));
            if first_chunk_at.is_none() && got.contains("chunk 0") {
                first_chunk_at = Some(t.elapsed());
            }
        }
        let first = first_chunk_at.unwrap();
        assert!(
            first < Duration::from_millis(250),
            "first chunk after {first:?}"
        );
        assert!(
            t.elapsed() >= Duration::from_millis(600),
            "chunks were not buffered into one"
        );
    }

    // An event stream has no deadline: five events over 1.5 s pass a 1 s one.
    {
        use tokio::io::AsyncWriteExt;
        let s = tokio::net::TcpStream::connect(d.public()).await.unwrap();
        let mut r = tokio::io::BufReader::new(s);
        r.get_mut()
            .write_all(b"GET /events?n=5 HTTP/1.1\r\nHost: x.test\r\n\r\n")
            .await
            .unwrap();
        let (status, _, body) = read_answer(&mut r, false).await;
        assert_eq!(status, 200);
        assert!(body.contains("data: event 4"), "{body}");
    }

    // An upgrade is tunnelled both ways.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(d.public()).await.unwrap();
        s.write_all(
            b"GET /ws HTTP/1.1\r\nHost: x.test\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n",
        )
        .await
        .unwrap();
        let mut buf = vec![0u8; 1024];
        let n = s.read(&mut buf).await.unwrap();
        let head = String::from_utf8_lossy(&buf[..n]).to_string();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        for word in ["ping", "pong"] {
            s.write_all(word.as_bytes()).await.unwrap();
            let n = s.read(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], word.as_bytes());
        }
    }

    // Keep-alive connections to the container are reused.
    let (_, before) = d.get("x.test", "/conns").await;
    for _ in 0..30 {
        assert_eq!(d.get("x.test", "/").await.0, 200);
    }
    let (_, after) = d.get("x.test", "/conns").await;
    let opened = after.trim().parse::<u64>().unwrap() - before.trim().parse::<u64>().unwrap();
    assert!(
        opened <= 2,
        "30 sequential requests opened {opened} new connections"
    );

    let m = request(
        &format!("127.0.0.1:{}", d.private_port),
        "GET",
        "x",
        "/metrics",
        &[],
    )
    .await
    .body;
    for want in [
        "maelstrom_http_requests_total{component=\"t9_x\",code=\"200\",listener=\"public\"}",
        "maelstrom_http_requests_total{component=\"t9_x\",code=\"504\",listener=\"public\"} 1",
        "maelstrom_cold_starts_total{component=\"t9_x\",result=\"ok\"} 1",
        "maelstrom_cold_start_duration_seconds_count{component=\"t9_x\"} 1",
        "maelstrom_containers{component=\"t9_x\",state=\"active\"} 1",
        "maelstrom_role_held{role=\"autoscale\"} 1",
    ] {
        assert!(m.contains(want), "missing {want} in\n{m}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_private_token_guards_the_private_port() {
    let d = Daemon::start(Opts {
        env: vec![("MAEL_PRIVATE_TOKEN".into(), "s3cret".into())],
        ..Default::default()
    })
    .await;
    let private = format!("127.0.0.1:{}", d.private_port);
    let a = request(&private, "GET", "x", "/metrics", &[]).await;
    assert_eq!((a.status, a.body.as_str()), (401, "Unauthorized"));
    assert_eq!(a.headers["www-authenticate"], "Bearer");
    let a = request(
        &private,
        "GET",
        "x",
        "/metrics",
        &[("authorization", "Bearer wrong")],
    )
    .await;
    assert_eq!(a.status, 401);
    let a = request(&private, "GET", "x", "/_mael_health_check", &[]).await;
    assert_eq!((a.status, a.body.as_str()), (200, "OK"));
    let a = request(
        &private,
        "GET",
        "x",
        "/metrics",
        &[("authorization", "Bearer s3cret")],
    )
    .await;
    assert_eq!(a.status, 200);
    // maelctl with the token works; without it, it explains.
    let out = d.maelctl(&["project", "ls"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "No projects found\n");
    let out = std::process::Command::new(maelctl_bin())
        .args(["project", "ls"])
        .env("MAELSTROM_PRIVATE_URL", d.private_url())
        .env_remove("MAELSTROM_PRIVATE_TOKEN")
        .env_remove("MAEL_PRIVATE_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let msg = String::from_utf8_lossy(&out.stdout);
    assert!(
        msg.starts_with("ERROR: ListProjects failed - ")
            && msg.contains("401")
            && msg.contains("MAELSTROM_PRIVATE_TOKEN"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maelctl_logs_streams_container_output() {
    let d = Daemon::start(Opts::default()).await;
    d.put_project(&yaml(
        "name: t11\ncomponents:\n  talker:\n    image: {image}\n    eventsources:\n      talk_http:\n        http:\n          hostname: talk.test\n",
    ));
    assert_eq!(d.get("talk.test", "/").await.0, 200);
    let mut cmd = tokio::process::Command::new(maelctl_bin());
    cmd.args(["logs", "--components", "t11_*", "--since", "1m"])
        .env("MAELSTROM_PRIVATE_URL", d.private_url())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(d.get("talk.test", "/log?msg=hello-logs").await.0, 200);
    use tokio::io::AsyncBufReadExt;
    let mut out = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut err = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(l)) = out.next_line().await {
            if l == "[t11_talker]\thello-logs" {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "stdout line");
    let found = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(Some(l)) = err.next_line().await {
            if l == "[t11_talker]\terr:hello-logs" {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "stderr line");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_ip_addressing_publishes_no_port() {
    let d = Daemon::start(Opts {
        env: vec![("MAEL_CONTAINER_ADDRESSING".into(), "container-ip".into())],
        ..Default::default()
    })
    .await;
    d.put_project(&yaml(
        "name: t12\ncomponents:\n  ip:\n    image: {image}\n    eventsources:\n      ip_http:\n        http:\n          hostname: ip.test\n",
    ));
    let (status, body) = d.get("ip.test", "/").await;
    assert_eq!(status, 200, "{body}");
    let id = &d.containers()[0];
    let ports = docker(&["inspect", "-f", "{{json .NetworkSettings.Ports}}", id]);
    assert!(!ports.contains("HostPort"), "nothing published: {ports}");
    assert!(
        d.log().contains("target=172."),
        "proxied to the container's bridge address"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_that_cannot_start_says_why_at_once() {
    let d = Daemon::start(Opts::default()).await;
    d.put_project(
        "name: t13\ncomponents:\n  broken:\n    image: maelstrom-no-such-image:v0\n    eventsources:\n      broken_http:\n        http:\n          hostname: broken.test\n",
    );
    let t = Instant::now();
    let (status, body) = d.get("broken.test", "/").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.starts_with("Component t13_broken could not start:")
            && body.contains("maelstrom-no-such-image:v0"),
        "{body}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "answered in {:?}, not at the deadline",
        t.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_rpc_envelopes_batches_the_idl_and_errors() {
    use maelstromd_api::client::Client;
    use maelstromd_api::rpc::*;
    let d = Daemon::start(Opts::default()).await;
    let raw = |body: &'static str| {
        let url = d.private_url();
        async move {
            let c = Client::new(&url, None);
            let (status, bytes) = c
                .send(
                    "POST",
                    &format!("{url}/_mael/v1"),
                    Some(body.as_bytes().to_vec()),
                )
                .await
                .unwrap();
            assert_eq!(status, 200);
            assert!(bytes.is_ascii(), "answers are ASCII");
            serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()
        }
    };
    let idl = raw(r#"{"jsonrpc":"2.0","id":1,"method":"barrister-idl","params":[]}"#).await;
    let entries = idl["result"].as_array().unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e["type"] == "interface" && e["name"] == "MaelstromService")
    );
    assert!(
        entries
            .iter()
            .any(|e| e["type"] == "struct" && e["name"] == "Component")
    );
    let batch = raw(
        r#"[{"jsonrpc":"2.0","id":1,"method":"MaelstromService.ListProjects","params":[{}]},
            {"jsonrpc":"2.0","id":2,"method":"MaelstromService.Nope","params":[{}]},
            {"jsonrpc":"2.0","id":3,"method":"MaelstromService.GetComponent","params":[{}]},
            {"jsonrpc":"2.0","id":4,"method":"MaelstromService.GetComponent","params":[{"name":"Missing"}]}]"#,
    )
    .await;
    assert_eq!(batch[0]["result"]["projects"], serde_json::json!([]));
    assert_eq!(batch[1]["error"]["code"], METHOD_NOT_FOUND);
    assert_eq!(batch[2]["error"]["code"], INVALID_PARAMS);
    assert!(
        batch[2]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("input.name is required")
    );
    assert_eq!(batch[3]["error"]["code"], NOT_FOUND);
    assert_eq!(
        batch[3]["error"]["message"],
        "No Component found with name: missing"
    );
    assert_eq!(raw("{nope").await["error"]["code"], PARSE_ERROR);

    // PutComponent's optimistic versions, through the typed client.
    let c = Client::new(&d.private_url(), None);
    let comp = maelstromd_api::model::Component {
        name: "solo".into(),
        max_concurrency: 1,
        docker: Some(maelstromd_api::model::DockerComponent {
            image: "x".into(),
            http_port: 80,
            http_health_check_path: "/".into(),
            pull_password: "hunter2".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let out: PutOutput = c
        .call(
            "MaelstromService.PutComponent",
            &PutComponentInput {
                component: comp.clone(),
            },
        )
        .await
        .unwrap();
    assert_eq!(out.version, 1);
    let again = c
        .call::<_, PutOutput>(
            "MaelstromService.PutComponent",
            &PutComponentInput {
                component: comp.clone(),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(again.rpc().unwrap().code, ALREADY_EXISTS);
    let stale = maelstromd_api::model::Component {
        version: 7,
        ..comp.clone()
    };
    let err = c
        .call::<_, PutOutput>(
            "MaelstromService.PutComponent",
            &PutComponentInput { component: stale },
        )
        .await
        .unwrap_err();
    assert_eq!(err.rpc().unwrap().code, VERSION_CONFLICT);
    assert_eq!(
        err.rpc().unwrap().message,
        "PutComponent: previousVersion is incorrect"
    );
    let got: GetComponentOutput = c
        .call(
            "MaelstromService.GetComponent",
            &NameInput {
                name: "solo".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        got.component.docker.unwrap().pull_password,
        "",
        "the pull password is write-only"
    );

    // --diffonly shows a change without making it.
    let file = yaml("name: t14\ncomponents:\n  w:\n    image: {image}\n");
    d.put_project(&file);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.yml");
    std::fs::write(
        &path,
        file.replace(
            "components:\n  w:",
            "components:\n  w:\n    maxconcurrency: 3",
        ),
    )
    .unwrap();
    let out = String::from_utf8_lossy(
        &d.maelctl(&[
            "project",
            "put",
            "--diffonly",
            "--file",
            path.to_str().unwrap(),
        ])
        .stdout,
    )
    .to_string();
    assert!(
        out.starts_with("Project diff: t14") && out.contains("t14_w") && out.contains("Updated"),
        "{out}"
    );
    let comps =
        String::from_utf8_lossy(&d.maelctl(&["comp", "ls", "--prefix", "t14"]).stdout).to_string();
    assert!(
        comps.contains("t14_w") && comps.lines().nth(2).unwrap().contains("  1  "),
        "still version 1: {comps}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_start_under_way_completes_during_shutdown() {
    let mut d = Daemon::start(Opts::default()).await;
    d.put_project(&yaml(
        "name: t15\ncomponents:\n  slow:\n    image: {image}\n    environment: [STARTUP_DELAY_MS=1500]\n    eventsources:\n      slow_http:\n        http:\n          hostname: slowstart.test\n",
    ));
    let addr = d.public();
    let waiting =
        tokio::spawn(async move { request(&addr, "GET", "slowstart.test", "/", &[]).await });
    tokio::time::sleep(Duration::from_millis(400)).await;
    unsafe { libc::kill(d.pid() as i32, libc::SIGTERM) };
    let a = waiting.await.unwrap();
    assert_eq!(a.status, 200, "the queued request was served: {}", a.body);
    let status = d.wait(Duration::from_secs(30));
    assert!(status.success());
}

/// One answer read off a raw connection: status, head (lower-cased) and body, framed by
/// `Content-Length`, chunks, or the end of the connection.
async fn read_answer(
    r: &mut tokio::io::BufReader<tokio::net::TcpStream>,
    head_only: bool,
) -> (u16, String, String) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt};
    let mut head = String::new();
    loop {
        let mut line = String::new();
        assert!(
            r.read_line(&mut line).await.unwrap() > 0,
            "closed in a head: {head}"
        );
        if line == "\r\n" {
            break;
        }
        head.push_str(&line.to_ascii_lowercase());
    }
    let status = head[9..12].parse().unwrap();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .map(|v| v.trim().parse::<usize>().unwrap());
    let mut body = Vec::new();
    if head_only {
    } else if head.contains("transfer-encoding: chunked") {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).await.unwrap();
            let n = usize::from_str_radix(size.trim(), 16).unwrap();
            let mut chunk = vec![0u8; n + 2];
            r.read_exact(&mut chunk).await.unwrap();
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(n) = length {
        body.resize(n, 0);
        r.read_exact(&mut body).await.unwrap();
    } else {
        r.read_to_end(&mut body).await.unwrap();
    }
    (status, head, String::from_utf8(body).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_requests_and_the_rest_share_keep_alive_connections() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
    // A short read timeout, so that an idle connection's end can be seen.
    let d = Daemon::start(Opts {
        env: vec![("MAEL_HTTP_READ_TIMEOUT".into(), "2".into())],
        ..Opts::default()
    })
    .await;
    d.put_project(&yaml(
        "name: t16\ncomponents:\n  e:\n    image: {image}\n    eventsources:\n      e_http:\n        http:\n          hostname: e.test\n  one:\n    image: {image}\n    maxconcurrency: 1\n    maxinstances: 1\n    eventsources:\n      one_http:\n        http:\n          hostname: one.test\n",
    ));
    assert_eq!(d.get("e.test", "/").await.0, 200);
    assert_eq!(d.get("one.test", "/").await.0, 200);
    let connect =
        || async { BufReader::new(tokio::net::TcpStream::connect(d.public()).await.unwrap()) };

    // Plain requests on one connection: a body, HEAD, two pipelined in one write, and the
    // client's own MAELSTROM-* header dropped while the forwarding headers are added.
    let mut c = connect().await;
    c.get_mut()
        .write_all(b"POST /echo HTTP/1.1\r\nHost: e.test\r\nContent-Length: 11\r\n\r\nhello there")
        .await
        .unwrap();
    let (status, _, body) = read_answer(&mut c, false).await;
    assert_eq!((status, body.as_str()), (200, "hello there"));
    c.get_mut()
        .write_all(b"HEAD / HTTP/1.1\r\nHost: e.test\r\n\r\n")
        .await
        .unwrap();
    let (status, head, _) = read_answer(&mut c, true).await;
    assert_eq!(status, 200);
    assert!(head.contains("content-length: "), "{head}");
    c.get_mut()
        .write_all(
            b"GET /headers HTTP/1.1\r\nHost: e.test\r\nMaelstrom-Component: t12_other\r\nX-Forwarded-For: 10.1.2.3\r\n\r\nGET /count HTTP/1.1\r\nHost: e.test\r\n\r\n",
        )
        .await
        .unwrap();
    let (_, _, headers) = read_answer(&mut c, false).await;
    assert!(!headers.contains("maelstrom-component"), "{headers}");
    assert!(
        headers.contains("x-forwarded-for: 10.1.2.3, 127.0.0.1"),
        "{headers}"
    );
    assert!(headers.contains("x-forwarded-host: e.test"), "{headers}");
    assert!(headers.contains("maelstrom-deadline-nano: "), "{headers}");
    let (status, _, count) = read_answer(&mut c, false).await;
    assert_eq!(status, 200);
    assert!(count.trim().parse::<u64>().is_ok(), "{count}");

    // The node's own answers to HEAD have no body either.
    c.get_mut()
        .write_all(
            b"HEAD / HTTP/1.1\r\nHost: nothing.test\r\n\r\nGET / HTTP/1.1\r\nHost: e.test\r\n\r\n",
        )
        .await
        .unwrap();
    let (status, head, _) = read_answer(&mut c, true).await;
    assert_eq!(status, 404);
    assert!(head.contains("content-length: 32"), "{head}");
    assert_eq!(read_answer(&mut c, false).await.0, 200);

    // A chunked upload is hyper's to serve; the connection stays with hyper and keeps
    // working, and a bogus host on it still gets the 404 text.
    c.get_mut()
        .write_all(
            b"POST /echo HTTP/1.1\r\nHost: e.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        )
        .await
        .unwrap();
    let (status, _, body) = read_answer(&mut c, false).await;
    assert_eq!((status, body.as_str()), (200, "hello world"));
    c.get_mut()
        .write_all(b"GET / HTTP/1.1\r\nHost: nothing.test\r\n\r\n")
        .await
        .unwrap();
    let (status, _, body) = read_answer(&mut c, false).await;
    assert_eq!(
        (status, body.as_str()),
        (404, "No component matches the request")
    );

    // An upload over the size read whole streams through hyper.
    let big = "x".repeat(200 * 1024);
    let mut c = connect().await;
    c.get_mut()
        .write_all(
            format!(
                "PUT /echo HTTP/1.1\r\nHost: e.test\r\nContent-Length: {}\r\n\r\n{big}",
                big.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let (status, _, body) = read_answer(&mut c, false).await;
    assert_eq!((status, body.len()), (200, big.len()));

    // An answer ended by the upstream closing reaches the client whole, and then the
    // client's connection closes too; a bogus host on the plain path gets the 404 text.
    let mut c = connect().await;
    c.get_mut()
        .write_all(b"GET / HTTP/1.1\r\nHost: nothing.test\r\n\r\nGET /close HTTP/1.1\r\nHost: e.test\r\n\r\n")
        .await
        .unwrap();
    let (status, _, body) = read_answer(&mut c, false).await;
    assert_eq!(
        (status, body.as_str()),
        (404, "No component matches the request")
    );
    let (status, head, body) = read_answer(&mut c, false).await;
    assert_eq!((status, body.as_str()), (200, "until the end\n"));
    assert!(head.contains("connection: close"), "{head}");
    let mut rest = Vec::new();
    assert_eq!(c.read_to_end(&mut rest).await.unwrap(), 0);

    // A client that leaves in the middle of a body frees its place at once: the only slot
    // of `one` is free long before the 3 s stream would have ended.
    let mut c = connect().await;
    c.get_mut()
        .write_all(b"GET /events?n=10 HTTP/1.1\r\nHost: one.test\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 64];
    assert!(c.read(&mut first).await.unwrap() > 0);
    drop(c);
    let t = Instant::now();
    assert_eq!(d.get("one.test", "/").await.0, 200);
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );

    // A connection that sends nothing is closed after the read timeout.
    let mut c = connect().await;
    let t = Instant::now();
    let n = tokio::time::timeout(Duration::from_secs(10), c.read(&mut first))
        .await
        .expect("an idle connection was kept past the read timeout");
    assert_eq!(n.unwrap(), 0);
    assert!(
        t.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_is_served_by_the_worker_on_its_clients_cpu() {
    use maelstromd::gateway::affinity;
    let cpus = affinity::allowed_cpus().expect("the allowed CPUs");
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus.len() < 2 || workers != cpus.len() {
        eprintln!(
            "{} CPUs allowed, {workers} proxy workers: the workers are not pinned, nothing to steer",
            cpus.len()
        );
        return;
    }
    let d = Daemon::start(Opts::default()).await;
    d.put_project(&yaml(
        "name: t20\ncomponents:\n  e:\n    image: {image}\n    eventsources:\n      e_http:\n        http:\n          hostname: e.test\n",
    ));
    assert_eq!(d.get("e.test", "/").await.0, 200);
    let url = format!("127.0.0.1:{}", d.private_port);
    let moved = || async {
        let body = request(&url, "GET", "x", "/metrics", &[]).await.body;
        body.lines()
            .find_map(|l| l.strip_prefix("maelstrom_proxy_connections_moved_total "))
            .unwrap_or_else(|| panic!("no moved connections counter in {body}"))
            .parse::<u64>()
            .unwrap()
    };
    // A keep-alive client on one CPU, then on another: requests spaced past the interval at
    // which a connection checks where its packets arrive.
    let public = d.public();
    let (first, second) = (cpus[0], cpus[1]);
    let (to_client, from_test) = std::sync::mpsc::channel::<usize>();
    let (to_test, from_client) = tokio::sync::mpsc::unbounded_channel::<()>();
    let client = std::thread::spawn(move || {
        use std::io::{BufRead, BufReader, Read, Write};
        let mut conn = None;
        for cpu in from_test {
            affinity::pin_thread(cpu).expect("pin the client thread");
            // Connected from the first CPU, so that the handshake arrives there.
            let c = conn.get_or_insert_with(|| {
                let s = std::net::TcpStream::connect(&public).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                BufReader::new(s)
            });
            for _ in 0..4 {
                std::thread::sleep(Duration::from_millis(150));
                c.get_mut()
                    .write_all(b"GET /count HTTP/1.1\r\nHost: e.test\r\n\r\n")
                    .unwrap();
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    assert!(c.read_line(&mut line).unwrap() > 0, "closed: {head}");
                    if line == "\r\n" {
                        break;
                    }
                    head.push_str(&line.to_ascii_lowercase());
                }
                assert!(head.starts_with("http/1.1 200"), "{head}");
                let n: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .unwrap()
                    .trim()
                    .parse()
                    .unwrap();
                c.read_exact(&mut vec![0; n]).unwrap();
            }
            to_test.send(()).unwrap();
        }
    });
    let mut from_client = from_client;
    let before = moved().await;
    run_client_on(&to_client, first, &mut from_client).await;
    assert_eq!(
        moved().await,
        before,
        "a connection accepted from CPU {first} was not placed on that CPU's worker"
    );
    run_client_on(&to_client, second, &mut from_client).await;
    assert!(
        moved().await > before,
        "the connection stayed on CPU {first}'s worker after its client moved to CPU {second}"
    );
    drop(to_client);
    client.join().unwrap();
}

/// Tells the client thread to run on `cpu` and waits for its requests there.
async fn run_client_on(
    to_client: &std::sync::mpsc::Sender<usize>,
    cpu: usize,
    done: &mut tokio::sync::mpsc::UnboundedReceiver<()>,
) {
    to_client.send(cpu).unwrap();
    done.recv().await.expect("the client thread failed");
}
