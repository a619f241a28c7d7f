//! The catalog tables: `component` and `eventsource`, and projects as the rows sharing a
//! `projectName`. Updates are optimistic (`where version = <previous>`), lists are ordered by
//! name and paginated by offset (spec §14).

use super::{Db, DbError, DbResult, with_pool};
use maelstromd_api::model::{Component, EventSource, EventSourceWithStatus};
use maelstromd_api::now_ms;
use maelstromd_api::rpc::ProjectInfo;
use sqlx::Row;
use sqlx::types::Json;

/// Filters of the list calls; empty strings match everything.
#[derive(Clone, Debug, Default)]
pub struct ListFilter {
    /// Name prefix.
    pub name_prefix: String,
    /// Component name (event sources).
    pub component_name: String,
    /// Project name.
    pub project_name: String,
    /// Event-source type.
    pub kind: String,
    /// Page size (0: unlimited).
    pub limit: i64,
    /// Rows skipped.
    pub offset: i64,
}

fn unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.is_unique_violation())
}

/// Pages are fetched with one extra row to know whether another page follows.
fn page<T>(mut rows: Vec<T>, filter: &ListFilter) -> (Vec<T>, String) {
    if filter.limit > 0 && rows.len() as i64 > filter.limit {
        rows.truncate(filter.limit as usize);
        (rows, (filter.offset + filter.limit).to_string())
    } else {
        (rows, String::new())
    }
}

fn fetch_limit(filter: &ListFilter) -> i64 {
    if filter.limit > 0 {
        filter.limit + 1
    } else {
        i64::MAX / 2
    }
}

impl Db {
    /// One component.
    pub async fn get_component(&self, name: &str) -> DbResult<Option<Component>> {
        let row = with_pool!(self, pool => {
            sqlx::query("select cast(json as text), version, modifiedAt from component where name = $1")
                .bind(name)
                .fetch_optional(pool)
                .await?
                .map(|r| component_row(&r))
                .transpose()?
        });
        Ok(row)
    }

    /// Components by name, filtered by prefix and project; answers the page and the next token.
    pub async fn list_components(&self, filter: &ListFilter) -> DbResult<(Vec<Component>, String)> {
        let rows = with_pool!(self, pool => {
            sqlx::query(
                "select cast(json as text), version, modifiedAt from component \
                 where ($1 = '' or substr(name, 1, length($1)) = $1) and ($2 = '' or projectName = $2) \
                 order by name limit $3 offset $4",
            )
            .bind(&filter.name_prefix)
            .bind(&filter.project_name)
            .bind(fetch_limit(filter))
            .bind(filter.offset)
            .fetch_all(pool)
            .await?
            .iter()
            .map(component_row)
            .collect::<DbResult<Vec<_>>>()?
        });
        Ok(page(rows, filter))
    }

    /// Inserts a new component at version 1; 1002 when the name exists.
    pub async fn insert_component(&self, c: &Component) -> DbResult<Component> {
        let now = now_ms();
        let mut c = c.clone();
        c.version = 1;
        c.modified_at = now;
        let r = with_pool!(self, pool => {
            sqlx::query("insert into component (name, projectName, version, createdAt, modifiedAt, json) values ($1, $2, $3, $4, $5, $6)")
                .bind(&c.name)
                .bind(&c.project_name)
                .bind(1i32)
                .bind(now)
                .bind(now)
                .bind(Json(&c))
                .execute(pool)
                .await
                .map(|_| ())
        });
        match r {
            Ok(_) => Ok(c),
            Err(e) if unique_violation(&e) => Err(DbError::Exists(format!("component {}", c.name))),
            Err(e) => Err(e.into()),
        }
    }

    /// Updates a component stored at `c.version`; the stored row gets `c.version + 1`.
    pub async fn update_component(&self, c: &Component) -> DbResult<Component> {
        let now = now_ms();
        let previous = c.version;
        let mut c = c.clone();
        c.version = previous + 1;
        c.modified_at = now;
        let n = with_pool!(self, pool => {
            sqlx::query("update component set projectName = $1, version = $2, modifiedAt = $3, json = $4 where name = $5 and version = $6")
                .bind(&c.project_name)
                .bind(c.version as i32)
                .bind(now)
                .bind(Json(&c))
                .bind(&c.name)
                .bind(previous as i32)
                .execute(pool)
                .await?
                .rows_affected()
        });
        if n != 1 {
            return Err(DbError::Conflict(
                "PutComponent: previousVersion is incorrect".into(),
            ));
        }
        Ok(c)
    }

    /// Deletes a component and its event sources; true when it existed.
    pub async fn remove_component(&self, name: &str) -> DbResult<bool> {
        let n = with_pool!(self, pool => {
            sqlx::query("delete from eventsource where componentName = $1")
                .bind(name)
                .execute(pool)
                .await?;
            sqlx::query("delete from component where name = $1")
                .bind(name)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n > 0)
    }

    /// One event source with its enabled flag.
    pub async fn get_event_source(&self, name: &str) -> DbResult<Option<EventSourceWithStatus>> {
        let row = with_pool!(self, pool => {
            sqlx::query("select cast(json as text), version, modifiedAt, enabled from eventsource where name = $1")
                .bind(name)
                .fetch_optional(pool)
                .await?
                .map(|r| event_source_row(&r))
                .transpose()?
        });
        Ok(row)
    }

    /// Event sources by name, filtered.
    pub async fn list_event_sources(
        &self,
        filter: &ListFilter,
    ) -> DbResult<(Vec<EventSourceWithStatus>, String)> {
        let rows = with_pool!(self, pool => {
            sqlx::query(
                "select cast(json as text), version, modifiedAt, enabled from eventsource \
                 where ($1 = '' or substr(name, 1, length($1)) = $1) and ($2 = '' or componentName = $2) \
                 and ($3 = '' or projectName = $3) and ($4 = '' or type = $4) \
                 order by name limit $5 offset $6",
            )
            .bind(&filter.name_prefix)
            .bind(&filter.component_name)
            .bind(&filter.project_name)
            .bind(&filter.kind)
            .bind(fetch_limit(filter))
            .bind(filter.offset)
            .fetch_all(pool)
            .await?
            .iter()
            .map(event_source_row)
            .collect::<DbResult<Vec<_>>>()?
        });
        Ok(page(rows, filter))
    }

    /// The enabled event sources of one type, for routing and scheduling.
    pub async fn enabled_event_sources(&self, kind: &str) -> DbResult<Vec<EventSource>> {
        let filter = ListFilter {
            kind: kind.into(),
            ..Default::default()
        };
        let (rows, _) = self.list_event_sources(&filter).await?;
        Ok(rows
            .into_iter()
            .filter(|e| e.enabled)
            .map(|e| e.event_source)
            .collect())
    }

    /// Inserts a new event source at version 1, enabled.
    pub async fn insert_event_source(
        &self,
        es: &EventSource,
        enabled: bool,
    ) -> DbResult<EventSource> {
        let now = now_ms();
        let mut es = es.clone();
        es.version = 1;
        es.modified_at = now;
        let kind = es.kind().map(|k| k.as_str()).unwrap_or("");
        let r = with_pool!(self, pool => {
            sqlx::query("insert into eventsource (name, componentName, projectName, version, createdAt, modifiedAt, type, json, enabled) values ($1, $2, $3, $4, $5, $6, $7, $8, $9)")
                .bind(&es.name)
                .bind(&es.component_name)
                .bind(&es.project_name)
                .bind(1i32)
                .bind(now)
                .bind(now)
                .bind(kind)
                .bind(Json(&es))
                .bind(enabled as i32)
                .execute(pool)
                .await
                .map(|_| ())
        });
        match r {
            Ok(_) => Ok(es),
            Err(e) if unique_violation(&e) => {
                Err(DbError::Exists(format!("event source {}", es.name)))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Updates an event source stored at `es.version`; `enabled` is left as it is.
    pub async fn update_event_source(&self, es: &EventSource) -> DbResult<EventSource> {
        let now = now_ms();
        let previous = es.version;
        let mut es = es.clone();
        es.version = previous + 1;
        es.modified_at = now;
        let kind = es.kind().map(|k| k.as_str()).unwrap_or("");
        let n = with_pool!(self, pool => {
            sqlx::query("update eventsource set componentName = $1, projectName = $2, version = $3, modifiedAt = $4, type = $5, json = $6 where name = $7 and version = $8")
                .bind(&es.component_name)
                .bind(&es.project_name)
                .bind(es.version as i32)
                .bind(now)
                .bind(kind)
                .bind(Json(&es))
                .bind(&es.name)
                .bind(previous as i32)
                .execute(pool)
                .await?
                .rows_affected()
        });
        if n != 1 {
            return Err(DbError::Conflict(
                "PutEventSource: previousVersion is incorrect".into(),
            ));
        }
        Ok(es)
    }

    /// Deletes an event source; true when it existed.
    pub async fn remove_event_source(&self, name: &str) -> DbResult<bool> {
        let n = with_pool!(self, pool => {
            sqlx::query("delete from eventsource where name = $1")
                .bind(name)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n > 0)
    }

    /// Sets `enabled` on the matching rows whose flag differs, without touching version or
    /// `modifiedAt`; answers the names that changed.
    pub async fn toggle_event_sources(
        &self,
        enabled: bool,
        filter: &ListFilter,
    ) -> DbResult<Vec<String>> {
        let (rows, _) = self
            .list_event_sources(&ListFilter {
                limit: 0,
                offset: 0,
                ..filter.clone()
            })
            .await?;
        let mut changed = Vec::new();
        for row in rows.into_iter().filter(|r| r.enabled != enabled) {
            with_pool!(self, pool => {
                sqlx::query("update eventsource set enabled = $1 where name = $2")
                    .bind(enabled as i32)
                    .bind(&row.event_source.name)
                    .execute(pool)
                    .await?;
            });
            changed.push(row.event_source.name);
        }
        Ok(changed)
    }

    /// Projects with their component and event-source counts, by name.
    pub async fn list_projects(&self, name_prefix: &str) -> DbResult<Vec<ProjectInfo>> {
        let rows: Vec<(String, i64, i64)> = with_pool!(self, pool => {
            sqlx::query(
                "select c.projectName, count(*), \
                 (select count(*) from eventsource e where e.projectName = c.projectName) \
                 from component c where c.projectName <> '' and ($1 = '' or substr(c.projectName, 1, length($1)) = $1) \
                 group by c.projectName order by c.projectName",
            )
            .bind(name_prefix)
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect::<Result<Vec<_>, sqlx::Error>>()?
        });
        Ok(rows
            .into_iter()
            .map(
                |(project_name, component_count, event_source_count)| ProjectInfo {
                    project_name,
                    component_count,
                    event_source_count,
                },
            )
            .collect())
    }
}

fn component_row<R: Row>(r: &R) -> DbResult<Component>
where
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i32: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    usize: sqlx::ColumnIndex<R>,
{
    let text: String = r.try_get(0)?;
    let mut c: Component =
        serde_json::from_str(&text).map_err(|e| DbError::Json("a component".into(), e))?;
    c.version = r.try_get::<i32, _>(1)? as i64;
    c.modified_at = r.try_get(2)?;
    Ok(c)
}

fn event_source_row<R: Row>(r: &R) -> DbResult<EventSourceWithStatus>
where
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i32: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<i32>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    usize: sqlx::ColumnIndex<R>,
{
    let text: String = r.try_get(0)?;
    let mut es: EventSource =
        serde_json::from_str(&text).map_err(|e| DbError::Json("an event source".into(), e))?;
    es.version = r.try_get::<i32, _>(1)? as i64;
    es.modified_at = r.try_get(2)?;
    let enabled: Option<i32> = r.try_get(3)?;
    Ok(EventSourceWithStatus {
        event_source: es,
        enabled: enabled.unwrap_or(1) != 0,
    })
}
