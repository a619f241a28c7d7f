//! What maelctl prints: the original's fixed-width tables with their column headings and
//! messages (spec §6), and go-humanize's "3 minutes ago" wording for times.

use maelstromd_api::model::{EventSourceWithStatus, NodeStatus};
use maelstromd_api::rpc::{ProjectInfo, PutProjectOutput};
use std::fmt::Write;

const RULE: &str = "-----------------------------------------------------------------------------------------------------------------";
const SHORT_RULE: &str =
    "--------------------------------------------------------------------------";

/// `"now"`, `"1 second ago"`, `"5 minutes ago"`, … for an epoch-ms time seen at `now_ms`.
pub fn humanize(at_ms: i64, now_ms: i64) -> String {
    let secs = (now_ms - at_ms) / 1000;
    let (suffix, secs) = if secs < 0 {
        ("from now", -secs)
    } else {
        ("ago", secs)
    };
    let unit = |n: i64, one: &str, many: &str| {
        if n == 1 {
            format!("1 {one} {suffix}")
        } else {
            format!("{n} {many} {suffix}")
        }
    };
    const MIN: i64 = 60;
    const HOUR: i64 = 60 * MIN;
    const DAY: i64 = 24 * HOUR;
    const WEEK: i64 = 7 * DAY;
    const MONTH: i64 = 30 * DAY;
    const YEAR: i64 = 12 * MONTH;
    match secs {
        0 => "now".into(),
        s if s < MIN => unit(s, "second", "seconds"),
        s if s < 2 * MIN => unit(1, "minute", "minutes"),
        s if s < HOUR => unit(s / MIN, "minute", "minutes"),
        s if s < 2 * HOUR => unit(1, "hour", "hours"),
        s if s < DAY => unit(s / HOUR, "hour", "hours"),
        s if s < 2 * DAY => unit(1, "day", "days"),
        s if s < WEEK => unit(s / DAY, "day", "days"),
        s if s < 2 * WEEK => unit(1, "week", "weeks"),
        s if s < MONTH => unit(s / WEEK, "week", "weeks"),
        s if s < 2 * MONTH => unit(1, "month", "months"),
        s if s < YEAR => unit(s / MONTH, "month", "months"),
        s if s < 18 * MONTH => unit(1, "year", "years"),
        s if s < 2 * YEAR => unit(2, "year", "years"),
        s => unit(s / YEAR, "year", "years"),
    }
}

/// The first `n` characters.
pub fn trunc(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// `project put`: the saved line and the change table, or the no-change line.
pub fn project_put(out: &PutProjectOutput, file: &str, diff_only: bool) -> String {
    let mut s = String::new();
    if out.is_empty() {
        let _ = writeln!(
            s,
            "PutProject: No project changes detected for project: {} using file: {file}",
            out.name
        );
        return s;
    }
    let verb = if diff_only { "diff" } else { "saved" };
    let _ = writeln!(s, "Project {verb}: {} from file: {file}", out.name);
    let _ = writeln!(s, "Type         Name                               Action");
    let mut row = |kind: &str, name: &str, action: &str| {
        let _ = writeln!(s, "{kind:<11}  {name:<33}  {action}");
    };
    for c in &out.components_added {
        row("Component", &c.name, "Added");
    }
    for c in &out.components_updated {
        row("Component", &c.name, "Updated");
    }
    for c in &out.components_removed {
        row("Component", c, "Removed");
    }
    for e in &out.event_sources_added {
        row("EventSource", &e.name, "Added");
    }
    for e in &out.event_sources_updated {
        row("EventSource", &e.name, "Updated");
    }
    for e in &out.event_sources_removed {
        row("EventSource", e, "Removed");
    }
    s
}

/// `project ls`.
pub fn projects(list: &[ProjectInfo]) -> String {
    if list.is_empty() {
        return "No projects found\n".into();
    }
    let mut s = format!(
        "{:<30}  {:<15}  {:<15}\n{SHORT_RULE}\n",
        "Project", "# Components", "# Event Sources"
    );
    for p in list {
        let _ = writeln!(
            s,
            "{:<30}  {:<15}  {:<15}",
            trunc(&p.project_name, 30),
            p.component_count,
            p.event_source_count
        );
    }
    s
}

/// `comp ls`.
pub fn components(list: &[maelstromd_api::model::Component], now_ms: i64) -> String {
    if list.is_empty() {
        return "No components found\n".into();
    }
    let mut s = format!(
        "{:<20}  {:<30}  {:<5}  {:<10}\n{SHORT_RULE}\n",
        "Component", "Image", "Ver", "Last Modified"
    );
    for c in list {
        let image = c.docker.as_ref().map(|d| d.image.as_str()).unwrap_or("");
        let _ = writeln!(
            s,
            "{:<20}  {:<30}  {:<5}  {:<13}",
            trunc(&c.name, 20),
            trunc(image, 30),
            c.version,
            humanize(c.modified_at, now_ms)
        );
    }
    s
}

/// The type column and description of an event source.
pub fn describe(e: &maelstromd_api::model::EventSource) -> (&'static str, String) {
    if let Some(h) = &e.http {
        let parts: Vec<&str> = [h.hostname.as_str(), h.path_prefix.as_str()]
            .into_iter()
            .filter(|p| !p.is_empty())
            .collect();
        ("http", parts.join("/"))
    } else if let Some(c) = &e.cron {
        (
            "cron",
            format!("sched='{}' path={}", c.schedule, c.http.path),
        )
    } else if let Some(q) = &e.sqs {
        let star = if q.name_as_prefix { "*" } else { "" };
        ("sqs", format!("{}{star}", q.queue_name))
    } else if let Some(a) = &e.aws_step_func {
        ("awsstep", a.activity_name.clone())
    } else {
        ("??", "??".into())
    }
}

/// `es ls`.
pub fn event_sources(list: &[EventSourceWithStatus], now_ms: i64) -> String {
    if list.is_empty() {
        return "No event sources found\n".into();
    }
    let mut s = format!(
        "{:<20}  {:<20}  {:<5}  {:<30}  {:<5}  {:<13}  {:<8}\n{RULE}\n",
        "Event Source", "Component", "Type", "Description", "Ver", "Last Modified", "Status"
    );
    for ess in list {
        let e = &ess.event_source;
        let (kind, desc) = describe(e);
        let status = if ess.enabled { "Enabled" } else { "Disabled" };
        let _ = writeln!(
            s,
            "{:<20}  {:<20}  {:<5}  {:<30}  {:<5}  {:<13}  {:<8}",
            trunc(&e.name, 20),
            trunc(&e.component_name, 20),
            kind,
            trunc(&desc, 30),
            e.version,
            humanize(e.modified_at, now_ms),
            status
        );
    }
    s
}

/// `es enable` / `es disable`.
pub fn toggled(names: &[String], enabled: bool) -> String {
    if names.is_empty() {
        return "No event sources updated\n".into();
    }
    let status = if enabled { "Enabled" } else { "Disabled" };
    let mut s = format!("{:<40}  {:<15}\n{SHORT_RULE}\n", "Event Source", "Status");
    for n in names {
        let _ = writeln!(s, "{:<40}  {:<15}", trunc(n, 40), status);
    }
    s
}

fn host_of(url: &str) -> String {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let authority = rest.split('/').next().unwrap_or(rest);
    match authority.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h.to_string(),
        _ => authority.to_string(),
    }
}

/// `cluster nodes`, by start time.
pub fn nodes(list: &[NodeStatus], now_ms: i64) -> String {
    let mut list: Vec<&NodeStatus> = list.iter().collect();
    list.sort_by_key(|n| n.started_at);
    let mut s = format!(
        "{:<14}  {:<15}  {:<15}  {:<15}  {:<10}  {:<15}  {:<4}\n{RULE}\n",
        "Node ID", "IP Addr", "Started", "Ver", "Free RAM", "Load Avg", "# Containers"
    );
    for n in list {
        let _ = writeln!(
            s,
            "{:<14}  {:<15}  {:<15}  {:<15}  {:<10}  {:<4.2} {:<4.2} {:<4.2}   {:<4}",
            trunc(&n.node_id, 14),
            host_of(&n.peer_url),
            humanize(n.started_at, now_ms),
            n.version,
            n.free_memory_mib,
            n.load_avg1m,
            n.load_avg5m,
            n.load_avg15m,
            n.running_components.len()
        );
    }
    s
}

/// `cluster ps`: one row per container.
pub fn containers(list: &[NodeStatus], now_ms: i64) -> String {
    let rows: Vec<_> = list
        .iter()
        .flat_map(|n| n.running_components.iter().map(move |c| (n, c)))
        .collect();
    if rows.is_empty() {
        return "No running containers found\n".into();
    }
    let mut s = format!(
        "{:<30}  {:<5}  {:<8}  {:<14}  {:<7}  {:<15}  {:<11}  {:<8}\n{RULE}\n",
        "Component",
        "Ver",
        "Status",
        "Node ID",
        "Max RAM",
        "Last Request",
        "# Requests",
        "Concur %"
    );
    for (n, c) in rows {
        let last = if c.last_request_time > 0 {
            humanize(c.last_request_time, now_ms)
        } else {
            "Never".into()
        };
        let mean = if c.activity.is_empty() {
            0.0
        } else {
            c.activity.iter().map(|a| a.concurrency).sum::<f64>() / c.activity.len() as f64
        };
        let pct = 100.0 * mean / c.max_concurrency.max(1) as f64;
        let _ = writeln!(
            s,
            "{:<30}  {:<5}  {:<8}  {:<14}  {:<7}  {:<15}  {:<11}  {:<8.1}",
            trunc(&c.component_name, 30),
            c.component_version,
            c.status.as_str(),
            trunc(&n.node_id, 14),
            c.memory_reserved_mib,
            last,
            c.total_requests,
            pct
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn humanized_times() {
        let now = 1_000_000_000;
        assert_eq!(humanize(now, now), "now");
        assert_eq!(humanize(now - 1_000, now), "1 second ago");
        assert_eq!(humanize(now - 59_000, now), "59 seconds ago");
        assert_eq!(humanize(now - 90_000, now), "1 minute ago");
        assert_eq!(humanize(now - 600_000, now), "10 minutes ago");
        assert_eq!(humanize(now - 3 * 86_400_000, now), "3 days ago");
    }

    #[test]
    fn tables_keep_the_originals_headings() {
        assert_eq!(projects(&[]), "No projects found\n");
        let t = projects(&[ProjectInfo {
            project_name: "demo".into(),
            component_count: 2,
            event_source_count: 3,
        }]);
        assert!(t.starts_with("Project                         # Components     # Event Sources"));
        assert_eq!(containers(&[], 0), "No running containers found\n");
        let out = PutProjectOutput {
            name: "demo".into(),
            components_removed: vec!["demo_old".into()],
            ..Default::default()
        };
        let t = project_put(&out, "maelstrom.yml", false);
        assert_eq!(
            t,
            "Project saved: demo from file: maelstrom.yml\nType         Name                               Action\nComponent    demo_old                           Removed\n"
        );
        assert!(
            project_put(
                &PutProjectOutput {
                    name: "demo".into(),
                    ..Default::default()
                },
                "f",
                false
            )
            .starts_with("PutProject: No project changes detected")
        );
        assert_eq!(host_of("http://10.0.0.5:8374"), "10.0.0.5");
    }
}
