//! Three maelstromd nodes on one machine sharing a throwaway PostgreSQL and the Docker Engine,
//! with a private token: a project put through one node is served through all three, cron
//! fires once per schedule across the cluster, load spreads instances over nodes, a node
//! killed with SIGKILL (with its containers) stops being used and its component comes back on
//! a survivor, and a node that leaves gracefully is dropped at once.

mod common;

use common::postgres::Postgres;
use common::*;
use std::time::{Duration, Instant};

const TOKEN: &str = "cluster-secret";

async fn cluster(pg: &Postgres, db: &str, n: usize) -> Vec<Daemon> {
    let url = pg.database(db);
    let mut nodes = Vec::new();
    for _ in 0..n {
        nodes.push(
            Daemon::start(Opts {
                env: vec![
                    ("MAEL_SQL_DRIVER".into(), "postgres".into()),
                    ("MAEL_SQL_DSN".into(), url.clone()),
                    ("MAEL_PRIVATE_TOKEN".into(), TOKEN.into()),
                    ("MAEL_CRON_REFRESH_SECONDS".into(), "1".into()),
                ],
                ..Default::default()
            })
            .await,
        );
    }
    nodes
}

fn stdout(out: std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Which node runs the component's containers.
fn hosts(nodes: &[Daemon]) -> Vec<usize> {
    (0..nodes.len())
        .filter(|i| !nodes[*i].containers().is_empty())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_serve_relay_fire_cron_once_and_survive_a_lost_node() {
    let pg = Postgres::start();
    let mut nodes = cluster(&pg, "three", 3).await;
    let image = test_image();

    // Every node lists all three.
    let listing = stdout(nodes[2].maelctl(&["cluster", "nodes"]));
    for n in &nodes {
        assert!(
            listing.contains(&n.node_id[..n.node_id.len().min(14)]),
            "{listing}"
        );
    }
    assert_eq!(listing.lines().count(), 2 + 3, "{listing}");

    // The private port refuses requests without the token; peers send it.
    let a = request(
        &format!("127.0.0.1:{}", nodes[1].private_port),
        "POST",
        "x",
        "/_mael/v1",
        &[],
    )
    .await;
    assert_eq!(a.status, 401);

    nodes[0].put_project(&format!(
        "name: c1\ncomponents:\n  web:\n    image: {image}\n    httphealthcheckpath: /health\n    maxconcurrency: 20\n    crontab: |\n      @every 1s /count\n    eventsources:\n      web_http:\n        http:\n          hostname: c1.test\n"
    ));
    // Served through every node, by one container.
    for n in &nodes {
        let (status, body) = n.get("c1.test", "/").await;
        assert_eq!(status, 200, "{body}");
        assert!(body.starts_with("hello from c1_web"), "{body}");
    }
    assert_eq!(hosts(&nodes).len(), 1);
    let host = hosts(&nodes)[0];
    for (i, n) in nodes.iter().enumerate() {
        for _ in 0..5 {
            assert_eq!(n.get("c1.test", "/").await.0, 200);
        }
        if i != host {
            let m = request(
                &format!("127.0.0.1:{}", n.private_port),
                "GET",
                "x",
                "/metrics",
                &[("authorization", &format!("Bearer {TOKEN}"))],
            )
            .await
            .body;
            assert!(
                m.contains(&format!(
                    "maelstrom_relayed_requests_total{{component=\"c1_web\",peer=\"{}\"}}",
                    nodes[host].node_id
                )),
                "node {i} relays to the host:\n{m}"
            );
        }
    }
    let ps = stdout(nodes[1].maelctl(&["cluster", "ps"]));
    assert_eq!(ps.matches("c1_web").count(), 1, "{ps}");

    // Cron: one firing a second across the whole cluster, not one per node.
    let peek = |n: &Daemon| {
        let addr = n.public();
        async move {
            request(&addr, "GET", "c1.test", "/peek", &[])
                .await
                .body
                .trim()
                .parse::<i64>()
                .unwrap_or(0)
        }
    };
    eventually(Duration::from_secs(15), "cron starts firing", || async {
        peek(&nodes[0]).await >= 1
    })
    .await;
    let before = peek(&nodes[0]).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let fired = peek(&nodes[0]).await - before;
    assert!(
        (4..=8).contains(&fired),
        "{fired} firings in 6 s with @every 1s on three nodes"
    );

    // Kill the node that runs the component, and its containers.
    let survivor = (host + 1) % 3;
    let killed_id = nodes[host].node_id.clone();
    nodes[host].kill();
    let ids = nodes[host].containers();
    let _ = std::process::Command::new("docker")
        .arg("rm")
        .arg("-f")
        .args(&ids)
        .output();
    let lost_at = Instant::now();
    let restored = eventually(
        Duration::from_secs(30),
        "service restored through a survivor",
        || async {
            matches!(
                try_request(&nodes[survivor].public(), "GET", "c1.test", "/", &[]).await,
                Ok(a) if a.status == 200
            )
        },
    )
    .await;
    eprintln!("service restored {restored:?} after losing the node that ran the component");
    assert!(lost_at.elapsed() < Duration::from_secs(30));
    let other = 3 - host - survivor;
    for i in [survivor, other] {
        eventually(
            Duration::from_secs(30),
            "served through each survivor",
            || async { nodes[i].get("c1.test", "/").await.0 == 200 },
        )
        .await;
    }
    eventually(
        Duration::from_secs(10),
        "the dead node is dropped from the view",
        || async {
            !stdout(nodes[survivor].maelctl(&["cluster", "nodes"]))
                .contains(&killed_id[..killed_id.len().min(14)])
        },
    )
    .await;

    // A node that leaves gracefully is dropped at once, and releases its roles.
    let leaving = nodes[other].node_id.clone();
    let status = nodes[other].stop(Duration::from_secs(30));
    assert!(status.success());
    let listing = stdout(nodes[survivor].maelctl(&["cluster", "nodes"]));
    assert!(
        !listing.contains(&leaving[..leaving.len().min(14)]),
        "{listing}"
    );
    assert_eq!(nodes[survivor].get("c1.test", "/").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_through_one_node_scales_out_across_nodes() {
    let pg = Postgres::start();
    let nodes = cluster(&pg, "scale", 2).await;
    let image = test_image();
    nodes[0].put_project(&format!(
        "name: c2\ncomponents:\n  busy:\n    image: {image}\n    maxconcurrency: 1\n    maxinstances: 2\n    maxinstancespernode: 1\n    eventsources:\n      busy_http:\n        http:\n          hostname: c2.test\n"
    ));
    assert_eq!(nodes[0].get("c2.test", "/").await.0, 200);
    // Four concurrent slow requests on a container that takes one at a time.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (addr, stop) = (nodes[1].public(), stop.clone());
        load.push(tokio::spawn(async move {
            let mut ok = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                if request(&addr, "GET", "c2.test", "/sleep?ms=300", &[])
                    .await
                    .status
                    == 200
                {
                    ok += 1;
                }
            }
            ok
        }));
    }
    let took = eventually(
        Duration::from_secs(20),
        "a second instance on the other node",
        || async { hosts(&nodes).len() == 2 },
    )
    .await;
    eprintln!("scaled out after {took:?}");
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut served = 0;
    for l in load {
        served += l.await.unwrap();
    }
    assert!(served > 0);
    // maxinstances holds: never a third container.
    assert_eq!(nodes.iter().map(|n| n.containers().len()).sum::<usize>(), 2);
}
