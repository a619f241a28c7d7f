//! The cluster tables: `nodestatus` (membership), `rolelock` (time-limited leases, spec §9.1)
//! and `componentstart` (first-start bookkeeping for `seriesfirst`).

use super::{Db, DbError, DbResult, with_pool};
use maelstromd_api::model::NodeStatus;
use maelstromd_api::now_ms;
use rand::Rng;
use sqlx::Row;
use sqlx::types::Json;
use std::time::Duration;

/// The result of trying to take a role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LockOutcome {
    /// This node holds the role until the TTL passes.
    Acquired,
    /// Another node holds it.
    HeldBy(String),
}

fn retryable(e: &sqlx::Error) -> bool {
    e.as_database_error().is_some_and(|d| {
        d.is_unique_violation() || {
            let m = d.message();
            m.contains("database is locked") || m.contains("busy")
        }
    })
}

impl Db {
    /// Writes this node's status row.
    pub async fn put_node_status(&self, status: &NodeStatus) -> DbResult<()> {
        with_pool!(self, pool => {
            sqlx::query("insert into nodestatus (nodeId, observedAt, json) values ($1, $2, $3) \
                         on conflict (nodeId) do update set observedAt = excluded.observedAt, json = excluded.json")
                .bind(&status.node_id)
                .bind(status.observed_at)
                .bind(Json(status))
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Every status row.
    pub async fn list_node_status(&self) -> DbResult<Vec<NodeStatus>> {
        let rows = with_pool!(self, pool => {
            sqlx::query("select cast(json as text) from nodestatus order by nodeId")
                .fetch_all(pool)
                .await?
                .iter()
                .map(|r| {
                    let text: String = r.try_get(0)?;
                    serde_json::from_str::<NodeStatus>(&text)
                        .map_err(|e| DbError::Json("a node status".into(), e))
                })
                .collect::<DbResult<Vec<_>>>()?
        });
        Ok(rows)
    }

    /// Deletes one node's status row.
    pub async fn delete_node_status(&self, node_id: &str) -> DbResult<()> {
        with_pool!(self, pool => {
            sqlx::query("delete from nodestatus where nodeId = $1")
                .bind(node_id)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Deletes status rows observed before `cutoff_ms`.
    pub async fn delete_stale_node_status(&self, cutoff_ms: i64) -> DbResult<u64> {
        let n = with_pool!(self, pool => {
            sqlx::query("delete from nodestatus where observedAt < $1")
                .bind(cutoff_ms)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n)
    }

    /// Takes or renews `role` for `node` for `ttl` (spec §9.1).
    pub async fn acquire_role(
        &self,
        role: &str,
        node: &str,
        ttl: Duration,
    ) -> DbResult<LockOutcome> {
        let ttl_ms = ttl.as_millis() as i64;
        let mut last_err = None;
        for _ in 0..5 {
            let retry = match self.try_acquire_role(role, node, ttl_ms).await {
                Ok(Some(outcome)) => return Ok(outcome),
                Ok(None) => true,
                Err(DbError::Sql(e)) if retryable(&e) => {
                    last_err = Some(e);
                    true
                }
                Err(e) => return Err(e),
            };
            if retry {
                let ms = rand::thread_rng().gen_range(1..=50);
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
        }
        Err(DbError::Sql(last_err.unwrap_or_else(|| {
            sqlx::Error::Protocol(format!("role lock {role}: contended five times in a row"))
        })))
    }

    /// One pass of the algorithm; `None` asks for another pass (a race or a busy database).
    async fn try_acquire_role(
        &self,
        role: &str,
        node: &str,
        ttl_ms: i64,
    ) -> DbResult<Option<LockOutcome>> {
        let now = now_ms();
        let row: Option<(String, i64)> = with_pool!(self, pool => {
            sqlx::query("select nodeId, expiresAt from rolelock where roleId = $1")
                .bind(role)
                .fetch_optional(pool)
                .await?
                .map(|r| Ok::<_, sqlx::Error>((r.try_get(0)?, r.try_get(1)?)))
                .transpose()?
        });
        if let Some((holder, expires)) = &row
            && *expires >= now
            && holder != node
        {
            return Ok(Some(LockOutcome::HeldBy(holder.clone())));
        }
        let read_expires = row.as_ref().map(|r| r.1).unwrap_or(-1);
        let updated = with_pool!(self, pool => {
            sqlx::query("update rolelock set nodeId = $1, expiresAt = $2 where roleId = $3 \
                         and (expiresAt < $4 or (nodeId = $1 and expiresAt = $5))")
                .bind(node)
                .bind(now + ttl_ms)
                .bind(role)
                .bind(now)
                .bind(read_expires)
                .execute(pool)
                .await?
                .rows_affected()
        });
        if updated == 1 {
            return Ok(Some(LockOutcome::Acquired));
        }
        if row.is_some() {
            // Someone renewed or took it between our read and update: read again.
            return Ok(None);
        }
        let inserted = with_pool!(self, pool => {
            sqlx::query("insert into rolelock (roleId, nodeId, expiresAt) values ($1, $2, $3)")
                .bind(role)
                .bind(node)
                .bind(now + ttl_ms)
                .execute(pool)
                .await
                .map(|_| ())
        });
        match inserted {
            Ok(_) => Ok(Some(LockOutcome::Acquired)),
            Err(e) if retryable(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Takes `role`, trying every `retry` for at most `limit` while another node holds it.
    pub async fn acquire_role_waiting(
        &self,
        role: &str,
        node: &str,
        ttl: Duration,
        retry: Duration,
        limit: Duration,
    ) -> Result<(), String> {
        let until = std::time::Instant::now() + limit;
        loop {
            match self.acquire_role(role, node, ttl).await {
                Ok(LockOutcome::Acquired) => return Ok(()),
                Ok(LockOutcome::HeldBy(holder)) if std::time::Instant::now() < until => {
                    tracing::debug!(role, holder = %holder, "waiting for a role");
                    tokio::time::sleep(retry).await;
                }
                Ok(LockOutcome::HeldBy(holder)) => {
                    return Err(format!(
                        "role {role} stayed with node {holder} for {} s",
                        limit.as_secs()
                    ));
                }
                Err(e) => return Err(format!("role {role}: {e}")),
            }
        }
    }

    /// Deletes `role` if `node` holds it.
    pub async fn release_role(&self, role: &str, node: &str) -> DbResult<()> {
        with_pool!(self, pool => {
            sqlx::query("delete from rolelock where roleId = $1 and nodeId = $2")
                .bind(role)
                .bind(node)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Deletes every role `node` holds (at exit).
    pub async fn release_all_roles(&self, node: &str) -> DbResult<()> {
        with_pool!(self, pool => {
            sqlx::query("delete from rolelock where nodeId = $1")
                .bind(node)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// The current holder of `role`, if its lease has not expired.
    pub async fn role_holder(&self, role: &str) -> DbResult<Option<String>> {
        let now = now_ms();
        let holder = with_pool!(self, pool => {
            sqlx::query_scalar::<_, String>("select nodeId from rolelock where roleId = $1 and expiresAt >= $2")
                .bind(role)
                .bind(now)
                .fetch_optional(pool)
                .await?
        });
        Ok(holder)
    }

    /// Counts one more successful start of `(name, version)`.
    pub async fn record_component_start(&self, name: &str, version: i64) -> DbResult<()> {
        let now = now_ms();
        with_pool!(self, pool => {
            sqlx::query("insert into componentstart (name, version, startCount, firstStartedAt, lastStartedAt) values ($1, $2, 1, $3, $3) \
                         on conflict (name, version) do update set startCount = componentstart.startCount + 1, lastStartedAt = $3")
                .bind(name)
                .bind(version as i32)
                .bind(now)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Successful starts of `(name, version)` so far.
    pub async fn component_start_count(&self, name: &str, version: i64) -> DbResult<i64> {
        let n = with_pool!(self, pool => {
            sqlx::query_scalar::<_, i32>("select startCount from componentstart where name = $1 and version = $2")
                .bind(name)
                .bind(version as i32)
                .fetch_optional(pool)
                .await?
        });
        Ok(n.unwrap_or(0) as i64)
    }
}
