//! `messages.svg` (spec §11.3): the network journal as a sequence diagram. Lanes are the
//! clients by number, then the servers in node order, then the services that took part; time
//! runs down, one 20 px step per event. A delivered message is an arrow from its send step to
//! its receive step (pink for errors, blue when a client is an end, else black) labelled with
//! its type and body; a dropped one is a grey dashed stub ending in × with the reason in its
//! hover title; one still in flight when the test ended is a grey dashed stub.

#[cfg(test)]
use crate::net::JOURNAL_MAX;
use crate::net::{Event, Journal, Msg};
use crate::plots::html_escape;
use std::collections::HashMap;
use std::fmt::Write;

const STEP: f64 = 20.0;
const TOP: f64 = 40.0;
const MIN_WIDTH: f64 = 1200.0;
const MIN_LANE: f64 = 16.0;
const MARGIN: f64 = 60.0;

/// The label of a message: its type and its body without type, msg_id and in_reply_to, cut
/// to 48 characters; an error shows its text.
fn label(body: &str) -> (String, bool) {
    let Ok(serde_json::Value::Object(mut map)) = serde_json::from_str::<serde_json::Value>(body)
    else {
        return (body.chars().take(48).collect(), false);
    };
    let kind = map
        .remove("type")
        .and_then(|t| t.as_str().map(str::to_string))
        .unwrap_or_default();
    if kind == "error" {
        let text = map
            .get("text")
            .and_then(|t| t.as_str())
            .unwrap_or("error")
            .to_string();
        return (text.chars().take(48).collect(), true);
    }
    map.remove("msg_id");
    map.remove("in_reply_to");
    let rest = serde_json::Value::Object(map).to_string();
    let text = format!("{kind} {rest}");
    (text.chars().take(48).collect(), false)
}

/// Orders lanes: clients by number, servers in `nodes` order, then services.
fn lanes(journal: &Journal, nodes: &[String]) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    for e in &journal.events {
        if let Event::Send(m) = e {
            for id in [&*m.src, &*m.dest] {
                if !seen.iter().any(|s| s == id) {
                    seen.push(id.to_string());
                }
            }
        }
    }
    let client_no = |s: &str| s.strip_prefix('c').and_then(|n| n.parse::<u64>().ok());
    let mut clients: Vec<&String> = seen.iter().filter(|s| client_no(s).is_some()).collect();
    clients.sort_by_key(|s| client_no(s));
    let servers = nodes.iter().filter(|n| seen.contains(n));
    let services = seen
        .iter()
        .filter(|s| client_no(s).is_none() && !nodes.contains(s));
    clients
        .into_iter()
        .chain(servers)
        .chain(services)
        .cloned()
        .collect()
}

/// Draws the journal; `nodes` is the test's server list in order.
pub fn svg(journal: &Journal, nodes: &[String]) -> String {
    let lanes = lanes(journal, nodes);
    let lane_w = ((MIN_WIDTH - 2.0 * MARGIN) / lanes.len().max(1) as f64).max(MIN_LANE);
    let width = (2.0 * MARGIN + lane_w * lanes.len() as f64).max(MIN_WIDTH);
    let x_of: HashMap<&str, f64> = lanes
        .iter()
        .enumerate()
        .map(|(i, l)| (l.as_str(), MARGIN + (i as f64 + 0.5) * lane_w))
        .collect();
    let steps = journal.events.len() + 2;
    let height = TOP + steps as f64 * STEP + 40.0;
    let y = |step: usize| TOP + (step as f64 + 1.0) * STEP;

    // Where each message ended: (step, Some(drop reason)).
    let mut sent: HashMap<u64, (usize, &Msg)> = HashMap::new();
    let mut ended: HashMap<u64, (usize, Option<&'static str>)> = HashMap::new();
    for (step, e) in journal.events.iter().enumerate() {
        match e {
            Event::Send(m) => {
                sent.insert(m.id, (step, m));
            }
            Event::Recv(id) => {
                ended.insert(*id, (step, None));
            }
            Event::Drop(id, why) => {
                ended.insert(*id, (step, Some(why)));
            }
        }
    }

    let mut s = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" font-family="sans-serif" font-size="10"><defs><marker id="a" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" markerHeight="6" orient="auto-start-reverse"><path d="M0 0 L10 5 L0 10 z" fill="context-stroke"/></marker></defs><rect width="100%" height="100%" fill="white"/>"##
    );
    for (lane, x) in &x_of {
        let _ = write!(
            s,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#DDDDDD"/>"##,
            height - 30.0
        );
        // Lane names at the top and again every 50 steps.
        let mut step = 0;
        while step <= steps {
            let _ = write!(
                s,
                r##"<text x="{x:.1}" y="{:.1}" text-anchor="middle" font-weight="bold" fill="#555555">{}</text>"##,
                TOP - 8.0 + step as f64 * STEP,
                html_escape(lane)
            );
            step += 50;
        }
    }
    let mut ids: Vec<&u64> = sent.keys().collect();
    ids.sort();
    for id in ids {
        let (step, m) = sent[id];
        let (Some(&x1), Some(&x2)) = (x_of.get(&*m.src), x_of.get(&*m.dest)) else {
            continue;
        };
        let (text, error) = label(&m.body);
        let title = html_escape(&format!("{} → {} {}", m.src, m.dest, m.body));
        let client = m.src.starts_with('c') || m.dest.starts_with('c');
        match ended.get(id) {
            Some((end, None)) => {
                let colour = if error {
                    "#FF1E90"
                } else if client {
                    "#81BFFC"
                } else {
                    "black"
                };
                let (y1, y2) = (y(step), y(*end));
                let _ = write!(
                    s,
                    r##"<g><title>{title}</title><line x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}" stroke="{colour}" marker-end="url(#a)"/><text x="{:.1}" y="{:.1}" text-anchor="middle" fill="{colour}">{}</text></g>"##,
                    (x1 + x2) / 2.0,
                    (y1 + y2) / 2.0 - 3.0,
                    html_escape(&text)
                );
            }
            other => {
                // Dropped (× and its reason) or never delivered while recorded.
                let (end_y, mark, why) = match other {
                    Some((end, Some(why))) => (y(*end), "×", format!(" (dropped: {why})")),
                    _ => (y(step) + STEP, "", " (not delivered while recorded)".into()),
                };
                let (y1, xm) = (y(step), x1 + (x2 - x1) / 2.0);
                let _ = write!(
                    s,
                    r##"<g><title>{title}{}</title><line x1="{x1:.1}" y1="{y1:.1}" x2="{xm:.1}" y2="{end_y:.1}" stroke="#AAAAAA" stroke-dasharray="4 3"/><text x="{xm:.1}" y="{:.1}" text-anchor="middle" fill="#888888" font-size="12">{mark}</text><text x="{:.1}" y="{:.1}" fill="#888888">{}</text></g>"##,
                    html_escape(&why),
                    end_y + 4.0,
                    (x1 + xm) / 2.0,
                    (y1 + end_y) / 2.0 - 3.0,
                    html_escape(&text)
                );
            }
        }
    }
    if journal.truncated {
        let _ = write!(
            s,
            r##"<text x="{MARGIN}" y="{:.1}" font-size="14" fill="#AA0000">Additional network events not shown</text>"##,
            height - 12.0
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn msg(id: u64, src: &str, dest: &str, body: &str) -> Msg {
        Msg {
            id,
            src: Arc::from(src),
            dest: Arc::from(dest),
            body: Arc::from(body),
        }
    }

    #[test]
    fn arrows_drops_errors_and_the_cap() {
        let mut j = Journal::default();
        j.push(Event::Send(msg(
            1,
            "c3",
            "n0",
            r#"{"type":"read","msg_id":1}"#,
        )));
        j.push(Event::Send(msg(
            2,
            "n1",
            "n0",
            r#"{"type":"gossip","values":[1]}"#,
        )));
        j.push(Event::Recv(1));
        j.push(Event::Drop(2, "partition"));
        j.push(Event::Send(msg(
            3,
            "n0",
            "c3",
            r#"{"type":"error","code":11,"text":"not leader","in_reply_to":1}"#,
        )));
        j.push(Event::Recv(3));
        let nodes = ["n1".to_string(), "n0".to_string()];
        // Lanes: clients by number, then servers in node order.
        assert_eq!(lanes(&j, &nodes), ["c3", "n1", "n0"]);
        let svg = svg(&j, &nodes);
        assert!(
            svg.contains(r##"stroke="#81BFFC""##),
            "client arrows are blue"
        );
        assert!(svg.contains("(dropped: partition)") && svg.contains("×"));
        assert!(
            svg.contains(r##"fill="#FF1E90">not leader<"##),
            "errors show their text in pink"
        );
        assert!(svg.contains(">read {}<"), "msg_id is left out of the label");
        assert!(!svg.contains("Additional network events not shown"));
        for i in 0..JOURNAL_MAX as u64 {
            j.push(Event::Send(msg(10 + i, "n0", "n1", r#"{"type":"x"}"#)));
        }
        assert!(j.truncated);
        assert!(
            crate::messages::svg(&j, &["n0".into()])
                .contains("Additional network events not shown")
        );
    }
}
