//! The database layer against both real databases: embedded SQLite and a throwaway
//! PostgreSQL server. The same checks run on each: migrations (twice, and concurrently),
//! optimistic updates, pages, toggles, node status, start counts and role-lock contention.

mod common;

use common::postgres::Postgres;
use maelstromd::config::Database;
use maelstromd::db::{Db, DbError, ListFilter, LockOutcome};
use maelstromd_api::model::*;
use std::sync::Arc;
use std::time::Duration;

fn component(name: &str) -> Component {
    Component {
        name: name.into(),
        project_name: "p".into(),
        max_concurrency: 2,
        docker: Some(DockerComponent {
            image: "img".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn exercise(db: &Db) {
    db.migrate().await.unwrap();
    db.migrate().await.unwrap();

    let c = db.insert_component(&component("p_web")).await.unwrap();
    assert_eq!(c.version, 1);
    assert!(matches!(
        db.insert_component(&component("p_web")).await,
        Err(DbError::Exists(_))
    ));
    let c2 = db.update_component(&c).await.unwrap();
    assert_eq!(c2.version, 2);
    assert!(matches!(
        db.update_component(&c).await,
        Err(DbError::Conflict(_))
    ));
    let got = db.get_component("p_web").await.unwrap().unwrap();
    assert_eq!((got.version, got.max_concurrency), (2, 2));
    for n in ["p_a", "p_b", "q_c", "pxq"] {
        db.insert_component(&component(n)).await.unwrap();
    }
    let (page, next) = db
        .list_components(&ListFilter {
            name_prefix: "p_".into(),
            limit: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        page.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        ["p_a", "p_b"]
    );
    assert_eq!(next, "2");

    let es = EventSource {
        name: "p_web-http".into(),
        component_name: "p_web".into(),
        project_name: "p".into(),
        http: Some(HttpEventSource {
            hostname: "web.test".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let stored = db.insert_event_source(&es, true).await.unwrap();
    let f = ListFilter {
        kind: "http".into(),
        ..Default::default()
    };
    assert_eq!(
        db.toggle_event_sources(false, &f).await.unwrap(),
        ["p_web-http"]
    );
    let after = db.get_event_source("p_web-http").await.unwrap().unwrap();
    assert!(!after.enabled);
    assert_eq!(after.event_source.version, stored.version);
    assert!(db.enabled_event_sources("http").await.unwrap().is_empty());
    let projects = db.list_projects("").await.unwrap();
    assert_eq!(projects[0].project_name, "p");
    assert_eq!(
        (projects[0].component_count, projects[0].event_source_count),
        (5, 1)
    );

    let status = NodeStatus {
        node_id: "n1".into(),
        observed_at: 1000,
        peer_url: "http://127.0.0.1:1".into(),
        ..Default::default()
    };
    db.put_node_status(&status).await.unwrap();
    db.put_node_status(&NodeStatus {
        observed_at: 2000,
        ..status.clone()
    })
    .await
    .unwrap();
    let rows = db.list_node_status().await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].observed_at, 2000);
    assert_eq!(db.delete_stale_node_status(3000).await.unwrap(), 1);

    assert_eq!(db.component_start_count("p_web", 2).await.unwrap(), 0);
    db.record_component_start("p_web", 2).await.unwrap();
    db.record_component_start("p_web", 2).await.unwrap();
    assert_eq!(db.component_start_count("p_web", 2).await.unwrap(), 2);
    assert!(db.remove_component("p_web").await.unwrap());
    assert!(db.get_event_source("p_web-http").await.unwrap().is_none());
}

/// Eight nodes race for one role many times: exactly one wins each round, renewals keep it,
/// expiry and release hand it on.
async fn contend(db: Arc<Db>) {
    let ttl = Duration::from_millis(800);
    let nodes: Vec<String> = (0..8).map(|i| format!("node{i}")).collect();
    for round in 0..5 {
        let role = format!("role-{round}");
        let tries = nodes.iter().map(|n| {
            let (db, role, n) = (db.clone(), role.clone(), n.clone());
            tokio::spawn(async move { (n.clone(), db.acquire_role(&role, &n, ttl).await.unwrap()) })
        });
        let results: Vec<(String, LockOutcome)> = futures_util::future::join_all(tries)
            .await
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
        let winners: Vec<&String> = results
            .iter()
            .filter(|(_, o)| *o == LockOutcome::Acquired)
            .map(|(n, _)| n)
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        let holder = winners[0].clone();
        for (n, o) in &results {
            if *n != holder {
                assert_eq!(*o, LockOutcome::HeldBy(holder.clone()));
            }
        }
        // Renewal by the holder; refusal for the others.
        assert_eq!(
            db.acquire_role(&role, &holder, ttl).await.unwrap(),
            LockOutcome::Acquired
        );
        let other = nodes.iter().find(|n| **n != holder).unwrap();
        assert_eq!(
            db.acquire_role(&role, other, ttl).await.unwrap(),
            LockOutcome::HeldBy(holder.clone())
        );
        assert_eq!(db.role_holder(&role).await.unwrap(), Some(holder.clone()));
        if round % 2 == 0 {
            db.release_role(&role, &holder).await.unwrap();
        } else {
            tokio::time::sleep(ttl + Duration::from_millis(100)).await;
        }
        assert_eq!(
            db.acquire_role(&role, other, ttl).await.unwrap(),
            LockOutcome::Acquired
        );
    }
    db.release_all_roles("node0").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_catalog_cluster_tables_and_role_locks() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::connect(&Database::Sqlite(dir.path().join("m.db")))
        .await
        .unwrap();
    exercise(&db).await;
    contend(Arc::new(db)).await;
    // A second process's view of the same file: several nodes may share one SQLite file.
    let other = Db::connect(&Database::Sqlite(dir.path().join("m.db")))
        .await
        .unwrap();
    other.migrate().await.unwrap();
    assert!(other.get_component("p_a").await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_catalog_cluster_tables_and_role_locks() {
    let pg = Postgres::start();
    let url = pg.database("maelstrom");
    let db = Db::connect(&Database::Postgres(url.clone())).await.unwrap();
    // Nodes starting together migrate once, under the advisory lock.
    let target = Database::Postgres(url.clone());
    let others: Vec<Db> = futures_util::future::join_all((0..3).map(|_| Db::connect(&target)))
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    let migrations = others.iter().map(|d| d.migrate());
    for r in futures_util::future::join_all(migrations).await {
        r.unwrap();
    }
    exercise(&db).await;
    contend(Arc::new(db)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_database_of_the_original_is_continued() {
    let pg = Postgres::start();
    let url = pg.database("original");
    let db = Db::connect(&Database::Postgres(url)).await.unwrap();
    let Db::Postgres(pool) = &db else {
        unreachable!()
    };
    // The original's tables and darwin's log of its six migrations, with a row in them.
    for stmt in [
        "create table component (name varchar(60) primary key, projectName varchar(60), version int not null, createdAt bigint not null, modifiedAt bigint not null, json jsonb not null)",
        "create table eventsource (name varchar(60) primary key, componentName varchar(60) not null, projectName varchar(60), version int not null, createdAt bigint not null, modifiedAt bigint not null, type varchar(30) not null, json jsonb not null, enabled int default 1)",
        "create table nodestatus (nodeId varchar(60) primary key, observedAt bigint not null, json jsonb not null)",
        "create table rolelock (roleId varchar(80) primary key, nodeId varchar(60) not null, expiresAt bigint not null)",
        "create table componentstart (name varchar(60) not null, version int not null, startCount int not null, firstStartedAt bigint not null, lastStartedAt bigint not null, primary key (name, version))",
        "create table darwin_migrations (id serial primary key, version real, description text)",
        "insert into darwin_migrations (version, description) values (1,'a'),(2,'b'),(3,'c'),(4,'d'),(5,'e'),(6,'f')",
        r#"insert into component values ('old_web', 'old', 3, 1, 2, '{"name":"old_web","projectName":"old","environment":[],"maxConcurrency":5,"version":3,"docker":{"image":"x","httpPort":80,"httpHealthCheckPath":"/"}}')"#,
    ] {
        sqlx::query(stmt).execute(pool).await.unwrap();
    }
    db.migrate().await.unwrap();
    let c = db.get_component("old_web").await.unwrap().unwrap();
    assert_eq!(
        (c.version, c.max_concurrency, c.docker().http_port()),
        (3, 5, 80)
    );
    let updated = db.update_component(&c).await.unwrap();
    assert_eq!(updated.version, 4);
}
