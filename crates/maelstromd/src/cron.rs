//! Cron event sources (spec §13.1): schedules parsed from 5-field expressions or descriptors
//! (with an optional `CRON_TZ=` zone), run only on the holder of the `cron` role; each firing
//! becomes an HTTP request with `Maelstrom-Component` served in-process through the private
//! gateway, so cold starts and relaying apply as to any request.

use crate::db::LockOutcome;
use crate::gateway::proxy;
use crate::node::Node;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use http::Request;
use http_body_util::BodyExt;
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};
use maelstromd_api::model::EventSource;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;

const ROLE: &str = "cron";

/// When a source fires.
#[derive(Clone, Debug)]
pub enum Schedule {
    /// A cron expression in a time zone.
    Cron(Box<Cron>, TimeZone),
    /// `@every <duration>`.
    Every(Duration),
}

/// Parses a schedule: 5 fields, `@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily`,
/// `@midnight`, `@hourly`, `@every <duration>`, optionally after `CRON_TZ=<zone>`.
pub fn parse_schedule(text: &str) -> Result<Schedule, String> {
    let mut text = text.trim();
    let mut tz = TimeZone::system();
    for prefix in ["CRON_TZ=", "TZ="] {
        if let Some(rest) = text.strip_prefix(prefix) {
            let (zone, rest) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            tz = TimeZone::get(zone).map_err(|e| format!("unknown time zone '{zone}': {e}"))?;
            text = rest.trim();
        }
    }
    if let Some(d) = text.strip_prefix("@every") {
        let d = d.trim();
        let dur = humantime::parse_duration(d)
            .map_err(|e| format!("'@every {d}': {e} (write durations like 30s, 5m or 1h30m)"))?;
        if dur < Duration::from_secs(1) {
            return Err(format!("'@every {d}' is shorter than one second"));
        }
        return Ok(Schedule::Every(dur));
    }
    let expr = match text {
        "@midnight" => "@daily",
        t => t,
    };
    if !expr.starts_with('@') && expr.split_whitespace().count() != 5 {
        return Err(format!(
            "'{text}' is not a 5-field cron expression (minute hour day-of-month month day-of-week) or a descriptor such as @hourly"
        ));
    }
    let parser = CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build();
    let cron = parser
        .parse(expr)
        .map_err(|e| format!("'{text}' is not a valid schedule: {e}"))?;
    Ok(Schedule::Cron(Box::new(cron), tz))
}

impl Schedule {
    /// The first firing strictly after `after`.
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        match self {
            Schedule::Every(d) => after
                .checked_add(jiff::SignedDuration::try_from(*d).ok()?)
                .ok(),
            Schedule::Cron(cron, tz) => {
                let now = Zoned::new(after, tz.clone());
                cron.find_next_occurrence(&now, false)
                    .ok()
                    .map(|z| z.timestamp())
            }
        }
    }
}

/// Takes the `cron` role whenever it is free, and while holding it runs the enabled cron
/// sources, reloading them every `MAEL_CRON_REFRESH_SECONDS` or when the catalog changes.
pub async fn run(node: Arc<Node>) {
    let mut renew = tokio::time::interval(Duration::from_secs(15));
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut jobs: JoinSet<()> = JoinSet::new();
    let mut loaded: Option<BTreeMap<String, (i64, String)>> = None;
    let mut last_load = tokio::time::Instant::now();
    let mut reload = false;
    loop {
        let holding = match node.acquire_role(ROLE, Duration::from_secs(60)).await {
            Ok(LockOutcome::Acquired) => true,
            Ok(LockOutcome::HeldBy(_)) => false,
            Err(e) => {
                tracing::warn!(error = %e, "cron role lock failed");
                false
            }
        };
        node.metrics.role_held(ROLE, holding);
        if !holding {
            if loaded.take().is_some() {
                tracing::info!("lost the cron role; schedules stopped");
            }
            jobs.abort_all();
        } else if reload || loaded.is_none() || last_load.elapsed() >= node.cfg.cron_refresh {
            last_load = tokio::time::Instant::now();
            reload = false;
            match node.db.enabled_event_sources("cron").await {
                Ok(sources) => {
                    let key: BTreeMap<String, (i64, String)> = sources
                        .iter()
                        .filter_map(|s| {
                            Some((
                                s.name.clone(),
                                (s.version, s.cron.as_ref()?.schedule.clone()),
                            ))
                        })
                        .collect();
                    if loaded.as_ref() != Some(&key) {
                        jobs.abort_all();
                        for s in sources {
                            if let Some(job) = schedule_job(&node, s) {
                                jobs.spawn(job);
                            }
                        }
                        tracing::info!(schedules = key.len(), "cron schedules loaded");
                        loaded = Some(key);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot load cron sources"),
            }
        }
        tokio::select! {
            _ = renew.tick() => {}
            _ = node.cron_reload.notified() => reload = true,
            _ = node.shutdown.cancelled() => {
                jobs.abort_all();
                let _ = node.db.release_role(ROLE, &node.id).await;
                return;
            }
        }
    }
}

fn schedule_job(
    node: &Arc<Node>,
    es: EventSource,
) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
    let cron = es.cron.clone()?;
    let schedule = match parse_schedule(&cron.schedule) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(eventsource = %es.name, error = %e, "skipping a cron source");
            return None;
        }
    };
    let node = node.clone();
    Some(async move {
        // Each firing is computed from the previous one, so a clock stepping back never
        // repeats a firing.
        let mut after = Timestamp::now();
        loop {
            let Some(next) = schedule.next_after(after) else {
                return;
            };
            let wait = next.duration_since(Timestamp::now());
            if wait.is_positive() {
                tokio::time::sleep(wait.unsigned_abs()).await;
            }
            after = next;
            // Each firing runs on its own, so a slow run never delays the next one.
            let (node, es) = (node.clone(), es.clone());
            tokio::spawn(async move { fire(&node, &es).await });
        }
    })
}

/// One firing: `<method> http://127.0.0.1<path>` with the data, headers and
/// `Maelstrom-Component`, served in-process.
pub async fn fire(node: &Arc<Node>, es: &EventSource) {
    let Some(cron) = &es.cron else { return };
    let method = cron.http.method.to_uppercase();
    let mut builder = Request::builder()
        .method(method.as_str())
        .uri(format!("http://127.0.0.1{}", cron.http.path))
        .header("host", "127.0.0.1")
        .header("Maelstrom-Component", es.component_name.as_str());
    for h in &cron.http.headers {
        builder = builder.header(h.name.as_str(), h.value.as_str());
    }
    let body = if method == "GET" {
        String::new()
    } else {
        cron.http.data.clone()
    };
    let req = match builder.body(proxy::full(body)) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(eventsource = %es.name, error = %e, "cron request is invalid");
            node.metrics.event_source(&es.name, "cron", "error");
            return;
        }
    };
    let resp = crate::gateway::internal(node, req).await;
    let status = resp.status();
    let _ = resp.into_body().collect().await;
    if status.is_success() {
        tracing::info!(eventsource = %es.name, component = %es.component_name, status = status.as_u16(), "cron fired");
        node.metrics.event_source(&es.name, "cron", "ok");
    } else {
        tracing::warn!(eventsource = %es.name, component = %es.component_name, status = status.as_u16(), "cron request failed");
        node.metrics.event_source(&es.name, "cron", "error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions_and_descriptors() {
        let t: Timestamp = "2026-01-01T10:07:30Z".parse().unwrap();
        let utc = |s: &str| parse_schedule(&format!("CRON_TZ=UTC {s}")).unwrap();
        assert_eq!(
            utc("*/15 * * * *").next_after(t).unwrap().to_string(),
            "2026-01-01T10:15:00Z"
        );
        assert_eq!(
            utc("@hourly").next_after(t).unwrap().to_string(),
            "2026-01-01T11:00:00Z"
        );
        assert_eq!(
            utc("@midnight").next_after(t).unwrap().to_string(),
            "2026-01-02T00:00:00Z"
        );
        assert_eq!(
            utc("0 9 * * MON").next_after(t).unwrap().to_string(),
            "2026-01-05T09:00:00Z"
        );
        let every = parse_schedule("@every 1h30m").unwrap();
        assert_eq!(
            every.next_after(t).unwrap().to_string(),
            "2026-01-01T11:37:30Z"
        );
        let ny = parse_schedule("CRON_TZ=America/New_York 0 9 * * *").unwrap();
        assert_eq!(
            ny.next_after(t).unwrap().to_string(),
            "2026-01-01T14:00:00Z"
        );
    }

    #[test]
    fn bad_schedules_say_why() {
        assert!(parse_schedule("* * * *").unwrap_err().contains("5-field"));
        assert!(
            parse_schedule("0 0 * * * *")
                .unwrap_err()
                .contains("5-field")
        );
        assert!(parse_schedule("61 * * * *").is_err());
        assert!(
            parse_schedule("@every soon")
                .unwrap_err()
                .contains("@every soon")
        );
        assert!(
            parse_schedule("CRON_TZ=Mars/Olympus * * * * *")
                .unwrap_err()
                .contains("unknown time zone")
        );
    }
}
