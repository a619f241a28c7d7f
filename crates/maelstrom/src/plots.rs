//! Pictures of a test, written directly as SVG and HTML (no gnuplot): `latency-raw.svg`,
//! `latency-quantiles.svg`, `rate.svg` (all with nemesis intervals shaded) and
//! `timeline.html`. `messages.svg` is drawn by [`crate::messages`] from the network journal.

use crate::edn::{Edn, map};
use crate::history::{self, Op, OpType, Process};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

const W: f64 = 960.0;
const H: f64 = 420.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 170.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 50.0;
/// Most ops drawn in the timeline.
const TIMELINE_MAX: usize = 10_000;

fn colour(t: OpType) -> &'static str {
    match t {
        OpType::Ok => "#81BFFC",
        OpType::Info => "#FFA400",
        OpType::Fail => "#FF1E90",
        OpType::Invoke => "#888888",
    }
}

/// Writes every picture and returns the `:perf` result.
pub fn write_all(dir: &Path, ops: &[Op], time_limit: f64) -> std::io::Result<Edn> {
    let pairs: Vec<(&Op, &Op)> = history::pairs(ops)
        .into_iter()
        .filter_map(|(i, c)| c.map(|c| (i, c)))
        .collect();
    let end_s = ops
        .last()
        .map_or(time_limit, |o| o.time as f64 / 1e9)
        .max(1.0);
    let shading = nemesis_intervals(ops);
    std::fs::write(
        dir.join("latency-raw.svg"),
        latency_raw(&pairs, end_s, &shading),
    )?;
    std::fs::write(
        dir.join("latency-quantiles.svg"),
        latency_quantiles(&pairs, end_s, &shading),
    )?;
    std::fs::write(dir.join("rate.svg"), rate(&pairs, end_s, &shading))?;
    std::fs::write(dir.join("timeline.html"), timeline(ops))?;
    Ok(map([
        ("latency-graph", map([("valid?", Edn::Bool(true))])),
        ("rate-graph", map([("valid?", Edn::Bool(true))])),
        ("valid?", Edn::Bool(true)),
    ]))
}

/// (fault name, colour, start s, end s) for each active nemesis interval.
fn nemesis_intervals(ops: &[Op]) -> Vec<(&'static str, &'static str, f64, f64)> {
    let mut open: BTreeMap<&str, f64> = BTreeMap::new();
    let mut out = Vec::new();
    let end = ops.last().map_or(0.0, |o| o.time as f64 / 1e9);
    // Nemesis ops come as pairs (invocation, completion) of the same `:f`; the completion is
    // when the fault really started or stopped.
    let mut pending: std::collections::HashSet<&str> = std::collections::HashSet::new();
    for op in ops.iter().filter(|o| o.process == Process::Nemesis) {
        if pending.insert(op.f) {
            continue;
        }
        pending.remove(op.f);
        let t = op.time as f64 / 1e9;
        let (fault, starts) = match op.f {
            "start-partition" => ("partition", true),
            "stop-partition" => ("partition", false),
            "kill" => ("kill", true),
            "start" => ("kill", false),
            "pause" => ("pause", true),
            "resume" => ("pause", false),
            "start-loss" => ("lose", true),
            "stop-loss" => ("lose", false),
            _ => continue,
        };
        if starts {
            open.insert(fault, t);
        } else if let Some(s) = open.remove(fault) {
            out.push((fault, fault_colour(fault), s, t));
        }
    }
    for (fault, s) in open {
        out.push((fault, fault_colour(fault), s, end));
    }
    out
}

fn fault_colour(f: &str) -> &'static str {
    match f {
        "partition" => "#E9DCA0",
        "kill" => "#E9A0A0",
        "pause" => "#A0C4E9",
        _ => "#C8A0E9",
    }
}

fn frame(title: &str, y_label: &str, end_s: f64, shading: &[(&str, &str, f64, f64)]) -> String {
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/><text x="{}" y="18" text-anchor="middle" font-size="14">{title}</text>"#,
        W / 2.0
    );
    let x = |t: f64| LEFT + t / end_s * (W - LEFT - RIGHT);
    for (fault, colour, a, b) in shading {
        let _ = write!(
            s,
            r#"<rect x="{:.1}" y="{TOP}" width="{:.1}" height="{}" fill="{colour}" opacity="0.6"><title>{fault}</title></rect>"#,
            x(*a),
            (x(*b) - x(*a)).max(1.0),
            H - TOP - BOTTOM
        );
    }
    let _ = write!(
        s,
        r#"<line x1="{LEFT}" y1="{}" x2="{}" y2="{}" stroke="black"/><line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{}" stroke="black"/>"#,
        H - BOTTOM,
        W - RIGHT,
        H - BOTTOM,
        H - BOTTOM
    );
    for i in 0..=5 {
        let t = end_s * i as f64 / 5.0;
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{t:.1}</text>"#,
            x(t),
            H - BOTTOM + 16.0
        );
    }
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">time (s)</text><text x="16" y="{}" transform="rotate(-90 16 {})" text-anchor="middle">{y_label}</text>"#,
        LEFT + (W - LEFT - RIGHT) / 2.0,
        H - 10.0,
        H / 2.0,
        H / 2.0
    );
    let mut ly = TOP + 10.0;
    let mut seen = std::collections::BTreeSet::new();
    for (fault, colour, _, _) in shading {
        if seen.insert(*fault) {
            let _ = write!(
                s,
                r#"<rect x="{}" y="{}" width="12" height="12" fill="{colour}"/><text x="{}" y="{}">{fault}</text>"#,
                W - RIGHT + 12.0,
                ly - 10.0,
                W - RIGHT + 30.0,
                ly
            );
            ly += 18.0;
        }
    }
    s
}

fn latency_raw(pairs: &[(&Op, &Op)], end_s: f64, shading: &[(&str, &str, f64, f64)]) -> String {
    let mut s = frame("Raw latency", "latency (ms, log scale)", end_s, shading);
    let lat = |(i, c): &(&Op, &Op)| ((c.time - i.time) as f64 / 1e6).max(0.01);
    let (lo, hi) = pairs
        .iter()
        .map(lat)
        .fold((f64::MAX, f64::MIN), |(a, b), l| (a.min(l), b.max(l)));
    let (lo, hi) = if pairs.is_empty() {
        (0.01, 1.0)
    } else {
        (
            lo.log10().floor(),
            hi.log10().ceil().max(lo.log10().floor() + 1.0),
        )
    };
    let y = |l: f64| H - BOTTOM - (l.log10() - lo) / (hi - lo) * (H - TOP - BOTTOM);
    let x = |t: u64| LEFT + t as f64 / 1e9 / end_s * (W - LEFT - RIGHT);
    for e in lo as i32..=hi as i32 {
        let v = 10f64.powi(e);
        let _ = write!(
            s,
            r#"<text x="{}" y="{:.1}" text-anchor="end">{v}</text>"#,
            LEFT - 6.0,
            y(v) + 4.0
        );
    }
    let fs: Vec<&str> = pairs
        .iter()
        .map(|(i, _)| i.f)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    for p in pairs {
        let shape = fs.iter().position(|f| *f == p.0.f).unwrap_or(0);
        let (cx, cy, c) = (x(p.0.time), y(lat(p)), colour(p.1.op_type));
        let _ = match shape % 3 {
            0 => write!(s, r#"<circle cx="{cx:.1}" cy="{cy:.1}" r="2" fill="{c}"/>"#),
            1 => write!(
                s,
                r#"<rect x="{:.1}" y="{:.1}" width="4" height="4" fill="{c}"/>"#,
                cx - 2.0,
                cy - 2.0
            ),
            _ => write!(
                s,
                r#"<path d="M{cx:.1} {:.1} l2.5 4.5 h-5 z" fill="{c}"/>"#,
                cy - 3.0
            ),
        };
    }
    let mut ly = H / 2.0;
    for (k, f) in fs.iter().enumerate() {
        legend_line(
            &mut s,
            &mut ly,
            None,
            &format!("{} {f}", ["●", "■", "▲"][k % 3]),
        );
    }
    for (t, name) in [
        (OpType::Ok, "ok"),
        (OpType::Info, "info"),
        (OpType::Fail, "fail"),
    ] {
        legend_line(&mut s, &mut ly, Some(colour(t)), &format!("■ {name}"));
    }
    s.push_str("</svg>\n");
    s
}

/// The 0.5, 0.95, 0.99 and 1 quantiles of `:ok` latencies per `:f`, in time buckets of
/// max(1 s, duration / 50), by invocation time (spec §11.4).
fn latency_quantiles(
    pairs: &[(&Op, &Op)],
    end_s: f64,
    shading: &[(&str, &str, f64, f64)],
) -> String {
    let mut s = frame(
        "Latency quantiles",
        "latency (ms, log scale)",
        end_s,
        shading,
    );
    let bucket = (end_s / 50.0).max(1.0);
    let n = (end_s / bucket).ceil() as usize + 1;
    let mut per_f: BTreeMap<&str, Vec<Vec<f64>>> = BTreeMap::new();
    for (i, c) in pairs.iter().filter(|(_, c)| c.op_type == OpType::Ok) {
        let b = ((i.time as f64 / 1e9) / bucket) as usize;
        let lat = ((c.time - i.time) as f64 / 1e6).max(0.01);
        per_f.entry(i.f).or_insert_with(|| vec![Vec::new(); n])[b.min(n - 1)].push(lat);
    }
    const QUANTILES: [(f64, &str, &str); 4] = [
        (0.5, "0.5", "#81BFFC"),
        (0.95, "0.95", "#FFA400"),
        (0.99, "0.99", "#FF1E90"),
        (1.0, "1", "#444444"),
    ];
    // One line per (f, quantile): its points as (bucket, latency).
    type Line<'a> = (&'a str, usize, Vec<(usize, f64)>);
    let mut lines: Vec<Line> = Vec::new();
    for (f, buckets) in per_f.iter_mut() {
        for (qi, (q, _, _)) in QUANTILES.iter().enumerate() {
            let mut pts = Vec::new();
            for (k, lats) in buckets.iter_mut().enumerate() {
                if lats.is_empty() {
                    continue;
                }
                lats.sort_by(f64::total_cmp);
                let idx = ((lats.len() as f64 * q).ceil() as usize).clamp(1, lats.len()) - 1;
                pts.push((k, lats[idx]));
            }
            lines.push((f, qi, pts));
        }
    }
    let all = lines.iter().flat_map(|l| l.2.iter().map(|p| p.1));
    let (lo, hi) = all.fold((f64::MAX, f64::MIN), |(a, b), l| (a.min(l), b.max(l)));
    let (lo, hi) = if lo > hi {
        (-2.0, 0.0)
    } else {
        (
            lo.log10().floor(),
            hi.log10().ceil().max(lo.log10().floor() + 1.0),
        )
    };
    let y = |l: f64| H - BOTTOM - (l.log10() - lo) / (hi - lo) * (H - TOP - BOTTOM);
    let x = |k: usize| LEFT + (k as f64 + 0.5) * bucket / end_s * (W - LEFT - RIGHT);
    for e in lo as i32..=hi as i32 {
        let v = 10f64.powi(e);
        let _ = write!(
            s,
            r#"<text x="{}" y="{:.1}" text-anchor="end">{v}</text>"#,
            LEFT - 6.0,
            y(v) + 4.0
        );
    }
    let fs: Vec<&str> = per_f.keys().copied().collect();
    for (f, qi, pts) in &lines {
        let fi = fs.iter().position(|x| x == f).unwrap_or(0);
        let dash = [
            "",
            r#" stroke-dasharray="5 3""#,
            r#" stroke-dasharray="2 2""#,
        ][fi % 3];
        let poly: Vec<String> = pts
            .iter()
            .map(|(k, v)| format!("{:.1},{:.1}", x(*k), y(*v)))
            .collect();
        let _ = write!(
            s,
            r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="1.5"{dash}><title>{f} {}</title></polyline>"#,
            poly.join(" "),
            QUANTILES[*qi].2,
            QUANTILES[*qi].1
        );
    }
    let mut ly = H / 2.0;
    for (_, name, colour) in QUANTILES {
        legend_line(&mut s, &mut ly, Some(colour), &format!("— quantile {name}"));
    }
    for (fi, f) in fs.iter().enumerate() {
        legend_line(
            &mut s,
            &mut ly,
            None,
            &format!("{} {f}", ["solid", "dashed", "dotted"][fi % 3]),
        );
    }
    s.push_str("</svg>\n");
    s
}

fn rate(pairs: &[(&Op, &Op)], end_s: f64, shading: &[(&str, &str, f64, f64)]) -> String {
    let mut s = frame("Throughput", "completions per second", end_s, shading);
    let bucket = (end_s / 50.0).max(1.0);
    let n = (end_s / bucket).ceil() as usize + 1;
    let mut series: BTreeMap<(&str, &str), Vec<f64>> = BTreeMap::new();
    for (i, c) in pairs {
        let b = ((c.time as f64 / 1e9) / bucket) as usize;
        series
            .entry((i.f, c.op_type.name()))
            .or_insert_with(|| vec![0.0; n])[b.min(n - 1)] += 1.0 / bucket;
    }
    let max = series.values().flatten().fold(1.0f64, |a, b| a.max(*b));
    let x = |k: usize| LEFT + (k as f64 + 0.5) * bucket / end_s * (W - LEFT - RIGHT);
    let y = |v: f64| H - BOTTOM - v / max * (H - TOP - BOTTOM);
    for i in 0..=4 {
        let v = max * i as f64 / 4.0;
        let _ = write!(
            s,
            r#"<text x="{}" y="{:.1}" text-anchor="end">{v:.0}</text>"#,
            LEFT - 6.0,
            y(v) + 4.0
        );
    }
    let mut ly = H / 2.0;
    for (k, ((f, t), counts)) in series.iter().enumerate() {
        let colour = match *t {
            "ok" => "#81BFFC",
            "info" => "#FFA400",
            _ => "#FF1E90",
        };
        let dash = if k % 2 == 1 {
            r#" stroke-dasharray="4 2""#
        } else {
            ""
        };
        let pts: Vec<String> = counts
            .iter()
            .enumerate()
            .map(|(k, v)| format!("{:.1},{:.1}", x(k), y(*v)))
            .collect();
        let _ = write!(
            s,
            r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="1.5"{dash}/>"#,
            pts.join(" ")
        );
        legend_line(&mut s, &mut ly, Some(colour), &format!("{f} {t}"));
    }
    s.push_str("</svg>\n");
    s
}

pub(crate) fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub(crate) fn timeline(ops: &[Op]) -> String {
    let pairs = history::pairs(ops);
    let shown = &pairs[..pairs.len().min(TIMELINE_MAX)];
    let procs: Vec<u64> = history::client_processes(shown);
    let col: BTreeMap<u64, usize> = procs.iter().enumerate().map(|(i, p)| (*p, i)).collect();
    let end = ops.last().map_or(1, |o| o.time.max(1)) as f64;
    let height = 2000.0f64.max(shown.len() as f64 * 2.0);
    let mut s = String::from(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Timeline</title><style>body{font-family:sans-serif}.op{position:absolute;width:100px;font-size:10px;overflow:hidden;border:1px solid #666;box-sizing:border-box}.ok{background:#81BFFC}.info{background:#FFA400}.fail{background:#FF1E90}.invoke{background:#eee}</style></head><body>",
    );
    if pairs.len() > TIMELINE_MAX {
        let _ = write!(
            s,
            "<p>Showing the first {TIMELINE_MAX} of {} operations.</p>",
            pairs.len()
        );
    }
    let _ = write!(
        s,
        "<div style=\"position:relative;height:{}px\">",
        height + 40.0
    );
    for (p, c) in &col {
        let _ = write!(
            s,
            "<div style=\"position:absolute;left:{}px;top:0;font-weight:bold\">{p}</div>",
            c * 106
        );
    }
    for (inv, done) in shown {
        let Process::Client(p) = inv.process else {
            continue;
        };
        let top = 20.0 + inv.time as f64 / end * height;
        let bottom = 20.0 + done.map_or(end, |d| d.time as f64) / end * height;
        let (class, detail) = match done {
            Some(d) => (
                d.op_type.name(),
                format!("{}\n{}", d.to_edn(), inv.to_edn()),
            ),
            None => ("invoke", inv.to_edn().to_string()),
        };
        let label = format!("{} {}", inv.f, done.map_or(&inv.value, |d| &d.value));
        let _ = write!(
            s,
            "<div class=\"op {class}\" style=\"left:{}px;top:{top:.1}px;height:{:.1}px\" title=\"{}\">{}</div>",
            col[&p] * 106,
            (bottom - top).max(2.0),
            html_escape(&detail),
            html_escape(&label)
        );
    }
    s.push_str("</div></body></html>\n");
    s
}

/// One line of a plot's legend, right of the plot area, at `ly`; moves `ly` to the next line.
fn legend_line(s: &mut String, ly: &mut f64, fill: Option<&str>, text: &str) {
    let fill = fill.map_or(String::new(), |c| format!(r#" fill="{c}""#));
    let _ = write!(
        s,
        r#"<text x="{}" y="{ly}"{fill}>{text}</text>"#,
        W - RIGHT + 12.0
    );
    *ly += 16.0;
}
