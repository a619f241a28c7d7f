//! The shared SQL database (spec §14): connecting to embedded SQLite or PostgreSQL, the
//! migrations (including a database left by the original), and the dispatch that lets every
//! query be written once for both drivers.
//!
//! Queries use `$n` placeholders, which both drivers accept, and bind JSON documents as
//! `Json<T>` (jsonb on PostgreSQL, text on SQLite); they read them back as `cast(json as text)`,
//! which also reads the blobs the original wrote into its `mediumblob` columns. Integer
//! columns declared `int` are decoded as `i32`, since PostgreSQL will not decode an int4 as
//! i64. Columns are read by position: PostgreSQL folds the unquoted camelCase names to lower
//! case, SQLite keeps them.

mod catalog;
mod cluster;

pub use catalog::ListFilter;
pub use cluster::LockOutcome;

use crate::config::Database;
use maelstromd_api::rpc::{ALREADY_EXISTS, RpcError, VERSION_CONFLICT};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use std::str::FromStr;
use std::time::Duration;

/// Runs `$body` with `$pool` bound to the concrete pool, once per driver; the macro copies the
/// body into both arms so each is type-checked against its own driver.
macro_rules! with_pool {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::db::Db::Sqlite($pool) => $body,
            $crate::db::Db::Postgres($pool) => $body,
        }
    };
}
pub(crate) use with_pool;

/// A connection pool to either database.
#[derive(Clone, Debug)]
pub enum Db {
    /// Embedded SQLite.
    Sqlite(SqlitePool),
    /// PostgreSQL.
    Postgres(PgPool),
}

/// Why a database call failed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// An insert found the key present (1002).
    #[error("{0} already exists")]
    Exists(String),
    /// An optimistic update found another version (1004).
    #[error("{0}")]
    Conflict(String),
    /// Anything the driver reported.
    #[error(transparent)]
    Sql(#[from] sqlx::Error),
    /// A stored document that does not decode.
    #[error("stored JSON of {0} does not decode: {1}")]
    Json(String, serde_json::Error),
}

impl From<DbError> for RpcError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Exists(m) => RpcError::new(ALREADY_EXISTS, format!("{m} already exists")),
            DbError::Conflict(m) => RpcError::new(VERSION_CONFLICT, m),
            other => RpcError::database(other),
        }
    }
}

/// Shorthand.
pub type DbResult<T> = Result<T, DbError>;

/// One schema step: the version, a description and the statements per driver.
struct Migration {
    version: i64,
    description: &'static str,
    sqlite: &'static [&'static str],
    postgres: &'static [&'static str],
}

/// Versions 1–6 are the original's six migrations (so a database it wrote, which logged them
/// in `darwin_migrations`, continues from 7); later ones are this project's.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "component",
        sqlite: &[
            "create table if not exists component (name varchar(60) primary key, projectName varchar(60), version int not null, createdAt bigint not null, modifiedAt bigint not null, json text not null)",
        ],
        postgres: &[
            "create table if not exists component (name varchar(60) primary key, projectName varchar(60), version int not null, createdAt bigint not null, modifiedAt bigint not null, json jsonb not null)",
        ],
    },
    Migration {
        version: 2,
        description: "eventsource",
        sqlite: &[
            "create table if not exists eventsource (name varchar(60) primary key, componentName varchar(60) not null, projectName varchar(60), version int not null, createdAt bigint not null, modifiedAt bigint not null, type varchar(30) not null, json text not null)",
        ],
        postgres: &[
            "create table if not exists eventsource (name varchar(60) primary key, componentName varchar(60) not null, projectName varchar(60), version int not null, createdAt bigint not null, modifiedAt bigint not null, type varchar(30) not null, json jsonb not null)",
        ],
    },
    Migration {
        version: 3,
        description: "nodestatus",
        sqlite: &[
            "create table if not exists nodestatus (nodeId varchar(60) primary key, observedAt bigint not null, json text not null)",
        ],
        postgres: &[
            "create table if not exists nodestatus (nodeId varchar(60) primary key, observedAt bigint not null, json jsonb not null)",
        ],
    },
    Migration {
        version: 4,
        description: "rolelock",
        sqlite: &[
            "create table if not exists rolelock (roleId varchar(80) primary key, nodeId varchar(60) not null, expiresAt bigint not null)",
        ],
        postgres: &[
            "create table if not exists rolelock (roleId varchar(80) primary key, nodeId varchar(60) not null, expiresAt bigint not null)",
        ],
    },
    Migration {
        version: 5,
        description: "componentstart",
        sqlite: &[
            "create table if not exists componentstart (name varchar(60) not null, version int not null, startCount int not null, firstStartedAt bigint not null, lastStartedAt bigint not null, primary key (name, version))",
        ],
        postgres: &[
            "create table if not exists componentstart (name varchar(60) not null, version int not null, startCount int not null, firstStartedAt bigint not null, lastStartedAt bigint not null, primary key (name, version))",
        ],
    },
    Migration {
        version: 6,
        description: "eventsource.enabled",
        sqlite: &["alter table eventsource add column enabled int default 1"],
        postgres: &["alter table eventsource add column if not exists enabled int default 1"],
    },
    Migration {
        version: 7,
        description: "certstore",
        sqlite: &[
            "create table if not exists certstore (name varchar(255) primary key, value blob, modifiedAt bigint not null)",
        ],
        postgres: &[
            "create table if not exists certstore (name varchar(255) primary key, value bytea, modifiedAt bigint not null)",
        ],
    },
];

impl Db {
    /// Connects to the configured database; creates the SQLite file (and its directory).
    pub async fn connect(database: &Database) -> DbResult<Db> {
        match database {
            Database::Sqlite(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(sqlx::Error::Io)?;
                }
                let opts = SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .busy_timeout(Duration::from_secs(10));
                // One connection: SQLite has a single writer, and every statement here is short.
                // It is opened here, once, and kept (no idle or age limit): sqlx gives each
                // SQLite connection its own thread, started by whichever thread opens it, and
                // a proxy worker pinned to one CPU would pass its affinity on. Only a
                // connection that breaks is opened again wherever it is next needed.
                let pool = SqlitePoolOptions::new()
                    .max_connections(1)
                    .min_connections(1)
                    .idle_timeout(None)
                    .max_lifetime(None)
                    .acquire_timeout(Duration::from_secs(30))
                    .connect_with(opts)
                    .await?;
                Ok(Db::Sqlite(pool))
            }
            Database::Postgres(url) => {
                let opts = PgConnectOptions::from_str(url)?.options([("statement_timeout", "30s")]);
                let pool = PgPoolOptions::new()
                    .max_connections(10)
                    .acquire_timeout(Duration::from_secs(30))
                    .connect_with(opts)
                    .await?;
                Ok(Db::Postgres(pool))
            }
        }
    }

    /// Applies the migrations not yet applied, under a lock so that nodes starting together
    /// do not race: SQLite's write lock (`begin immediate`), PostgreSQL's advisory lock.
    pub async fn migrate(&self) -> DbResult<()> {
        match self {
            Db::Sqlite(pool) => {
                let mut conn = pool.acquire().await?;
                sqlx::query("begin immediate").execute(&mut *conn).await?;
                let result = apply_migrations!(
                    &mut *conn,
                    "select name from sqlite_master where type = 'table' and name = 'darwin_migrations'",
                    sqlite
                );
                let end = if result.is_ok() { "commit" } else { "rollback" };
                sqlx::query(end).execute(&mut *conn).await?;
                result
            }
            Db::Postgres(pool) => {
                let mut conn = pool.acquire().await?;
                sqlx::query("select pg_advisory_lock(735100)")
                    .execute(&mut *conn)
                    .await?;
                let result = apply_migrations!(
                    &mut *conn,
                    "select table_name::text from information_schema.tables where table_name = 'darwin_migrations'",
                    postgres
                );
                sqlx::query("select pg_advisory_unlock(735100)")
                    .execute(&mut *conn)
                    .await?;
                result
            }
        }
    }

    /// Closes the pool.
    pub async fn close(&self) {
        with_pool!(self, pool => pool.close().await)
    }
}

/// The migration steps on one connection: the log table, the original's `darwin_migrations`
/// (whose versions count as applied), then each missing step with `$dialect`'s statements.
/// A macro so that one body serves both connection types.
macro_rules! apply_migrations {
    ($conn:expr, $darwin_table:expr, $dialect:ident) => {
        async {
            let conn = $conn;
            sqlx::query("create table if not exists mael_migrations (version int primary key, description text not null, appliedAt bigint not null)")
                .execute(&mut *conn)
                .await?;
            let darwin: Vec<i32> = match sqlx::query_scalar::<_, String>($darwin_table)
                .fetch_optional(&mut *conn)
                .await?
            {
                Some(_) => sqlx::query_scalar("select cast(version as int) from darwin_migrations")
                    .fetch_all(&mut *conn)
                    .await?,
                None => Vec::new(),
            };
            let applied: Vec<i32> = sqlx::query_scalar("select version from mael_migrations")
                .fetch_all(&mut *conn)
                .await?;
            for m in MIGRATIONS {
                let v = m.version as i32;
                if applied.contains(&v) {
                    continue;
                }
                if !darwin.contains(&v) {
                    for stmt in m.$dialect {
                        if let Err(e) = sqlx::query(*stmt).execute(&mut *conn).await {
                            // A database left by an interrupted run may have the column.
                            if !e.to_string().contains("duplicate column") {
                                return Err(DbError::from(e));
                            }
                        }
                    }
                }
                sqlx::query("insert into mael_migrations (version, description, appliedAt) values ($1, $2, $3)")
                    .bind(v)
                    .bind(m.description)
                    .bind(maelstromd_api::now_ms())
                    .execute(&mut *conn)
                    .await?;
            }
            Ok(())
        }
        .await
    };
}
use apply_migrations;

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fresh SQLite database in a temporary directory.
    pub(crate) async fn sqlite() -> (Db, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&Database::Sqlite(dir.path().join("m.db")))
            .await
            .unwrap();
        db.migrate().await.unwrap();
        (db, dir)
    }

    #[tokio::test]
    async fn migrations_are_idempotent_and_logged() {
        let (db, _dir) = sqlite().await;
        db.migrate().await.unwrap();
        let Db::Sqlite(pool) = &db else {
            unreachable!()
        };
        let n: i64 = sqlx::query_scalar("select count(*) from mael_migrations")
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(n, MIGRATIONS.len() as i64);
    }

    #[tokio::test]
    async fn a_database_of_the_original_continues_after_its_six_migrations() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&Database::Sqlite(dir.path().join("m.db")))
            .await
            .unwrap();
        let Db::Sqlite(pool) = &db else {
            unreachable!()
        };
        // What the original leaves: its tables (JSON in mediumblob columns, written as blobs)
        // and darwin's log of versions 1-6.
        for m in &MIGRATIONS[..6] {
            for s in m.sqlite {
                sqlx::query(sqlx::AssertSqlSafe(
                    s.replace("json text", "json mediumblob"),
                ))
                .execute(pool)
                .await
                .unwrap();
            }
        }
        let doc = br#"{"name":"old_web","projectName":"old","environment":[],"maxConcurrency":5,"version":3,"docker":{"image":"x","httpPort":80,"httpHealthCheckPath":"/"}}"#;
        sqlx::query("insert into component values ('old_web', 'old', 3, 1, 2, $1)")
            .bind(&doc[..])
            .execute(pool)
            .await
            .unwrap();
        sqlx::query("create table darwin_migrations (id integer primary key, version real, description text)")
            .execute(pool)
            .await
            .unwrap();
        for v in 1..=6 {
            sqlx::query("insert into darwin_migrations (version, description) values ($1, 'x')")
                .bind(v as f64)
                .execute(pool)
                .await
                .unwrap();
        }
        db.migrate().await.unwrap();
        let n: i64 = sqlx::query_scalar("select count(*) from certstore")
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(n, 0);
        let c = db.get_component("old_web").await.unwrap().unwrap();
        assert_eq!((c.version, c.max_concurrency), (3, 5));
        assert_eq!(db.update_component(&c).await.unwrap().version, 4);
    }
}
