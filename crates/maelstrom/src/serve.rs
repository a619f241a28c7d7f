//! `maelstrom serve` (spec §2.l, §7.4): a read-only web UI over `store/`. The index lists the
//! tests grouped by workload, newest first, coloured by verdict (blue valid, orange unknown,
//! pink invalid or crashed); a test's page shows its command line, seed, banner, the results
//! as a collapsible tree, its pictures and every artefact, each viewable and downloadable.
//! Pages are plain HTML with no script; paths outside the store are refused.

use crate::edn::{self, Edn};
use crate::plots::html_escape;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const STYLE: &str = "body{font-family:sans-serif;margin:2em;max-width:1400px}a{color:#0645ad}\
li{margin:.2em 0}.valid{border-left:8px solid #81BFFC;padding-left:.5em}\
.unknown{border-left:8px solid #FFA400;padding-left:.5em}\
.invalid{border-left:8px solid #FF1E90;padding-left:.5em}\
.banner{font-size:1.3em;padding:.4em}pre{background:#f6f6f6;padding:.6em;overflow:auto}\
details{margin-left:1.2em}summary{cursor:pointer}img{max-width:100%;border:1px solid #ddd;margin:.5em 0}\
table{border-collapse:collapse}td{padding:.1em .6em}";

/// Serves the UI for `store` on `addr` until the process ends.
pub async fn serve(store: PathBuf, addr: std::net::SocketAddr) -> Result<(), String> {
    let store = store.canonicalize().map_err(|e| {
        format!(
            "store {}: {e}; run a test first, or give --store DIR",
            store.display()
        )
    })?;
    let app = axum::Router::new()
        .route("/", get(index))
        .route("/test/{workload}/{test}/", get(test_page))
        .route("/files/{*path}", get(file))
        .with_state(Arc::new(store));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}; choose another --port or --host"))?;
    println!("Serving the store at http://{addr}/ (Ctrl-C to stop)");
    axum::serve(listener, app).await.map_err(|e| e.to_string())
}

/// A verdict as the UI shows it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Verdict {
    Valid,
    Unknown,
    Invalid,
    Crashed,
}

impl Verdict {
    fn class(self) -> &'static str {
        match self {
            Verdict::Valid => "valid",
            Verdict::Unknown => "unknown",
            Verdict::Invalid | Verdict::Crashed => "invalid",
        }
    }
    fn banner(self) -> &'static str {
        match self {
            Verdict::Valid => "Everything looks good! ヽ(‘ー`)ノ",
            Verdict::Unknown => "Errors occurred during analysis, but no anomalies found. ಠ~ಠ",
            Verdict::Invalid => "Analysis invalid! (ﾉಥ益ಥ）ﾉ ┻━┻",
            Verdict::Crashed => "The test crashed before its analysis (no results).",
        }
    }
}

fn verdict(dir: &Path) -> Verdict {
    let Ok(text) = std::fs::read_to_string(dir.join("results.json")) else {
        return Verdict::Crashed;
    };
    match serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("valid?").cloned())
    {
        Some(serde_json::Value::Bool(true)) => Verdict::Valid,
        Some(serde_json::Value::Bool(false)) => Verdict::Invalid,
        _ => Verdict::Unknown,
    }
}

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>{body}</body></html>",
        html_escape(title)
    ))
}

/// Directories directly under `dir`, not following the `latest`/`current` links.
fn subdirs(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    out.sort();
    out
}

async fn index(State(store): State<Arc<PathBuf>>) -> Html<String> {
    let mut body = String::from("<h1>Maelstrom tests</h1>");
    let workloads = subdirs(&store);
    if workloads.is_empty() {
        body.push_str("<p>The store is empty: run <code>maelstrom test</code> first.</p>");
    }
    for w in workloads {
        let _ = write!(body, "<h2>{}</h2><ul>", html_escape(&w));
        let mut tests = subdirs(&store.join(&w));
        tests.reverse();
        for t in tests {
            let v = verdict(&store.join(&w).join(&t));
            let _ = write!(
                body,
                r#"<li class="{}"><a href="/test/{}/{}/">{}</a> — {}</li>"#,
                v.class(),
                url_part(&w),
                url_part(&t),
                html_escape(&t),
                v.class()
            );
        }
        body.push_str("</ul>");
    }
    page("Maelstrom tests", &body)
}

fn url_part(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `rel` inside the store, or `None` when it names something outside it.
fn inside(store: &Path, rel: &str) -> Option<PathBuf> {
    let p = store.join(rel).canonicalize().ok()?;
    p.starts_with(store).then_some(p)
}

fn refused() -> Response {
    (StatusCode::FORBIDDEN, "That path is outside the store.").into_response()
}

async fn test_page(
    State(store): State<Arc<PathBuf>>,
    UrlPath((workload, test)): UrlPath<(String, String)>,
) -> Response {
    let rel = format!("{workload}/{test}");
    let Some(dir) = inside(&store, &rel) else {
        return refused();
    };
    if !dir.is_dir() {
        return (StatusCode::NOT_FOUND, "No such test.").into_response();
    }
    let v = verdict(&dir);
    let test_json: serde_json::Value = std::fs::read_to_string(dir.join("test.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let argv: Vec<String> = test_json["argv"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let results_edn = std::fs::read_to_string(dir.join("results.edn")).unwrap_or_default();
    let seed = edn::parse_all(&results_edn)
        .ok()
        .and_then(|v| v.into_iter().next())
        .and_then(|r| r.get("seed").map(|s| s.to_string()))
        .or_else(|| test_json.get("seed").map(|s| s.to_string()))
        .unwrap_or_else(|| "-".into());

    let mut body = format!(
        r#"<p><a href="/">← all tests</a></p><h1>{} / {}</h1><div class="banner {}">{}</div>"#,
        html_escape(&workload),
        html_escape(&test),
        v.class(),
        html_escape(v.banner())
    );
    let _ = write!(
        body,
        "<table><tr><td>command</td><td><code>{}</code></td></tr><tr><td>seed</td><td><code>{}</code></td></tr></table>",
        html_escape(&argv.join(" ")),
        html_escape(&seed)
    );
    body.push_str("<h2>Results</h2>");
    match edn::parse_all(&results_edn) {
        Ok(values) if !values.is_empty() => {
            for value in &values {
                tree(&mut body, "results.edn", value, true);
            }
        }
        _ => body.push_str("<p>No results.edn: the test did not reach its analysis.</p>"),
    }
    let files = |sub: &str| format!("/files/{}/{}/{}", url_part(&workload), url_part(&test), sub);
    body.push_str("<h2>Pictures</h2>");
    for name in ["latency-raw.svg", "latency-quantiles.svg", "rate.svg"] {
        if dir.join(name).is_file() {
            let _ = write!(
                body,
                r#"<h3>{name}</h3><img src="{}" alt="{name}">"#,
                files(name)
            );
        }
    }
    for (name, what) in [
        ("messages.svg", "network messages"),
        ("timeline.html", "operations timeline"),
    ] {
        if dir.join(name).is_file() {
            let _ = write!(
                body,
                r#"<p><a href="{}">{name}</a> ({what}) · <a href="{}?download=1">download</a></p>"#,
                files(name),
                files(name)
            );
        }
    }
    body.push_str("<h2>Every file</h2><ul>");
    let mut all = Vec::new();
    walk(&dir, &dir, &mut all);
    all.sort();
    for f in all {
        let _ = write!(
            body,
            r#"<li><a href="{}">{}</a> · <a href="{}?download=1">download</a></li>"#,
            files(&f),
            html_escape(&f),
            files(&f)
        );
    }
    body.push_str("</ul>");
    page(&format!("{workload} {test}"), &body).into_response()
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(root, &p, out);
        } else if let Ok(rel) = p.strip_prefix(root) {
            out.push(rel.to_string_lossy().to_string());
        }
    }
}

/// Renders an EDN value as nested `<details>`; scalars inline.
fn tree(out: &mut String, label: &str, v: &Edn, open: bool) {
    let children: Vec<(String, &Edn)> = match v {
        Edn::Map(entries) => entries.iter().map(|(k, v)| (k.to_string(), v)).collect(),
        Edn::Vector(items) | Edn::Set(items) if items.iter().any(|i| !is_scalar(i)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| (i.to_string(), v))
            .collect(),
        _ => {
            let _ = write!(
                out,
                "<div><b>{}</b> {}</div>",
                html_escape(label),
                html_escape(&v.to_string())
            );
            return;
        }
    };
    let valid = v.get("valid?").map(|x| x.to_string());
    let _ = write!(
        out,
        "<details{}><summary><b>{}</b>{}</summary>",
        if open { " open" } else { "" },
        html_escape(label),
        valid
            .map(|x| format!(" <i>valid? {}</i>", html_escape(&x)))
            .unwrap_or_default()
    );
    for (k, child) in children {
        tree(out, &k, child, false);
    }
    out.push_str("</details>");
}

fn is_scalar(v: &Edn) -> bool {
    !matches!(v, Edn::Map(_) | Edn::Vector(_) | Edn::Set(_))
}

#[derive(serde::Deserialize)]
struct FileQuery {
    #[serde(default)]
    download: Option<String>,
}

async fn file(
    State(store): State<Arc<PathBuf>>,
    UrlPath(path): UrlPath<String>,
    Query(q): Query<FileQuery>,
) -> Response {
    let Some(p) = inside(&store, &path) else {
        return refused();
    };
    let Ok(bytes) = std::fs::read(&p) else {
        return (StatusCode::NOT_FOUND, "No such file.").into_response();
    };
    let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
    let kind = match ext {
        "svg" => "image/svg+xml",
        "html" => "text/html; charset=utf-8",
        "json" => "application/json",
        _ => "text/plain; charset=utf-8",
    };
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let mut resp = ([(header::CONTENT_TYPE, kind)], bytes).into_response();
    if q.download.is_some()
        && let Ok(v) = format!("attachment; filename=\"{name}\"").parse()
    {
        resp.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    resp
}
