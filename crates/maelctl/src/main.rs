//! The `maelctl` binary: the original's commands (spec §6) over `maelstromd-api`'s client.
//! Failures print `ERROR: <message> - <error>` and exit 1; usage errors exit 2.

use clap::{Args, Parser, Subcommand};
use http_body_util::BodyExt;
use maelctl::output;
use maelctl::project_file::{self, parse_env_lines};
use maelstromd_api::client::{CallError, Client};
use maelstromd_api::now_ms;
use maelstromd_api::rpc::*;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "maelctl",
    about = "Deploy projects to maelstromd and inspect the cluster",
    after_help = "Talks to MAELSTROM_PRIVATE_URL (default http://127.0.0.1:8374) with the bearer token in MAELSTROM_PRIVATE_TOKEN (or MAEL_PRIVATE_TOKEN) when set."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Projects: put, ls, rm.
    Project {
        #[command(subcommand)]
        command: ProjectCmd,
    },
    /// Components.
    Comp {
        #[command(subcommand)]
        command: CompCmd,
    },
    /// Event sources: ls, enable, disable.
    Es {
        #[command(subcommand)]
        command: EsCmd,
    },
    /// The cluster: nodes, ps.
    Cluster {
        #[command(subcommand)]
        command: ClusterCmd,
    },
    /// Stream container logs from every node.
    Logs {
        /// Comma-separated component globs (`*` as prefix and/or suffix).
        #[arg(long)]
        components: Option<String>,
        /// How far back to start, e.g. 30s, 5m (default 1m).
        #[arg(long)]
        since: Option<String>,
    },
    /// Print the version.
    Version,
}

#[derive(Subcommand)]
enum ProjectCmd {
    /// Create or update a project from a YAML file.
    Put {
        /// Project file.
        #[arg(long, default_value = "maelstrom.yml")]
        file: PathBuf,
        /// Load NAME=value lines into the environment used for ${VAR} interpolation.
        #[arg(long)]
        env: Option<PathBuf>,
        /// Show what would change without changing it.
        #[arg(long)]
        diffonly: bool,
    },
    /// List projects.
    Ls {
        /// Name prefix.
        #[arg(long)]
        prefix: Option<String>,
    },
    /// Remove a project, its components and event sources; their containers stop.
    Rm {
        /// Project name.
        name: String,
    },
}

#[derive(Subcommand)]
enum CompCmd {
    /// List components.
    Ls {
        /// Name prefix.
        #[arg(long)]
        prefix: Option<String>,
    },
}

#[derive(Args)]
struct EsFilter {
    /// Name prefix.
    #[arg(long)]
    prefix: Option<String>,
    /// Component name.
    #[arg(long)]
    component: Option<String>,
    /// Event source type: http, cron, sqs or awsstepfunc.
    #[arg(long = "type", value_parser = ["http", "cron", "sqs", "awsstepfunc"])]
    kind: Option<String>,
    /// Project name.
    #[arg(long)]
    project: Option<String>,
}

#[derive(Subcommand)]
enum EsCmd {
    /// List event sources.
    Ls(EsFilter),
    /// Enable event sources matching the filters (all when none is given).
    Enable(EsFilter),
    /// Disable event sources matching the filters (all when none is given).
    Disable(EsFilter),
}

#[derive(Subcommand)]
enum ClusterCmd {
    /// List the nodes.
    Nodes {
        /// Ask every node for a fresh status.
        #[arg(long)]
        refresh: bool,
    },
    /// List the containers of every node.
    Ps {
        /// Ask every node for a fresh status.
        #[arg(long)]
        refresh: bool,
    },
}

/// Prints the original's error line and exits 1.
fn die(message: &str, error: impl std::fmt::Display) -> ! {
    println!("ERROR: {message} - {error}");
    std::process::exit(1);
}

fn client() -> Client {
    let url = std::env::var("MAELSTROM_PRIVATE_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "http://127.0.0.1:8374".into());
    let token = std::env::var("MAELSTROM_PRIVATE_TOKEN")
        .ok()
        .or_else(|| std::env::var("MAEL_PRIVATE_TOKEN").ok());
    Client::new(&url, token).with_timeout(std::time::Duration::from_secs(600))
}

async fn call<I: serde::Serialize, O: serde::de::DeserializeOwned>(
    c: &Client,
    method: &str,
    input: &I,
) -> O {
    match c.call(method, input).await {
        Ok(o) => o,
        Err(e) => {
            let what = format!("{} failed", method.split('.').nth(1).unwrap_or(method));
            match &e {
                CallError::Transport { .. } => die(
                    &what,
                    format!(
                        "{e} (is maelstromd running? set MAELSTROM_PRIVATE_URL to its private URL)"
                    ),
                ),
                CallError::Http { status: 401, .. } => die(
                    &what,
                    format!(
                        "{e} (set MAELSTROM_PRIVATE_TOKEN to the cluster's MAEL_PRIVATE_TOKEN)"
                    ),
                ),
                _ => die(&what, e),
            }
        }
    }
}

fn main() {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    rt.block_on(run(cli.command));
}

async fn run(command: Command) {
    let c = client();
    let now = now_ms();
    match command {
        Command::Version => println!("maelctl v{}", env!("CARGO_PKG_VERSION")),
        Command::Project { command } => match command {
            ProjectCmd::Put {
                file,
                env,
                diffonly,
            } => {
                let mut overlay = BTreeMap::new();
                if let Some(path) = &env {
                    let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
                        die(&format!("Unable to load env file: {}", path.display()), e)
                    });
                    overlay = parse_env_lines(text.lines(), &path.display().to_string())
                        .unwrap_or_else(|e| {
                            die(&format!("Unable to load env file: {}", path.display()), e)
                        });
                }
                let lookup = |k: &str| overlay.get(k).cloned().or_else(|| std::env::var(k).ok());
                let project = project_file::load(&file, lookup)
                    .unwrap_or_else(|e| die("Unable to load project YAML file", e));
                let out: PutProjectOutput = call(
                    &c,
                    "MaelstromService.PutProject",
                    &PutProjectInput {
                        project,
                        diff_only: diffonly,
                    },
                )
                .await;
                print!(
                    "{}",
                    output::project_put(&out, &file.display().to_string(), diffonly)
                );
            }
            ProjectCmd::Ls { prefix } => {
                let out: ListProjectsOutput = call(
                    &c,
                    "MaelstromService.ListProjects",
                    &ListProjectsInput {
                        name_prefix: prefix.unwrap_or_default().trim().to_string(),
                    },
                )
                .await;
                print!("{}", output::projects(&out.projects));
            }
            ProjectCmd::Rm { name } => {
                let out: RemoveOutput =
                    call(&c, "MaelstromService.RemoveProject", &NameInput { name }).await;
                if out.found {
                    println!("Project removed: {}", out.name);
                } else {
                    println!("Project not found: {}", out.name);
                }
            }
        },
        Command::Comp {
            command: CompCmd::Ls { prefix },
        } => {
            let mut all = Vec::new();
            let mut input = ListComponentsInput {
                name_prefix: prefix.unwrap_or_default().trim().to_string(),
                ..Default::default()
            };
            loop {
                let out: ListComponentsOutput =
                    call(&c, "MaelstromService.ListComponents", &input).await;
                all.extend(out.components);
                if out.next_token.is_empty() {
                    break;
                }
                input.next_token = out.next_token;
            }
            print!("{}", output::components(&all, now));
        }
        Command::Es { command } => match command {
            EsCmd::Ls(f) => {
                let mut all = Vec::new();
                let mut input = ListEventSourcesInput {
                    name_prefix: f.prefix.unwrap_or_default().trim().to_string(),
                    component_name: f.component.unwrap_or_default().trim().to_string(),
                    project_name: f.project.unwrap_or_default().trim().to_string(),
                    event_source_type: f.kind.unwrap_or_default(),
                    ..Default::default()
                };
                loop {
                    let out: ListEventSourcesOutput =
                        call(&c, "MaelstromService.ListEventSources", &input).await;
                    all.extend(out.event_sources);
                    if out.next_token.is_empty() {
                        break;
                    }
                    input.next_token = out.next_token;
                }
                print!("{}", output::event_sources(&all, now));
            }
            EsCmd::Enable(f) => toggle(&c, true, f).await,
            EsCmd::Disable(f) => toggle(&c, false, f).await,
        },
        Command::Cluster { command } => {
            let (refresh, ps) = match command {
                ClusterCmd::Nodes { refresh } => (refresh, false),
                ClusterCmd::Ps { refresh } => (refresh, true),
            };
            let out: ListNodeStatusOutput = call(
                &c,
                "NodeService.ListNodeStatus",
                &ListNodeStatusInput {
                    force_refresh: refresh,
                },
            )
            .await;
            if ps {
                print!("{}", output::containers(&out.nodes, now));
            } else {
                print!("{}", output::nodes(&out.nodes, now));
            }
        }
        Command::Logs { components, since } => logs(&c, components, since).await,
    }
}

async fn toggle(c: &Client, enabled: bool, f: EsFilter) {
    let status = if enabled { "Enabled" } else { "Disabled" };
    if f.prefix.is_none() && f.component.is_none() && f.project.is_none() && f.kind.is_none() {
        print!("Toggling ALL event sources to {status}\n\n");
    }
    let out: ToggleEventSourcesOutput = call(
        c,
        "MaelstromService.ToggleEventSources",
        &ToggleEventSourcesInput {
            enabled,
            name_prefix: f.prefix.unwrap_or_default().trim().to_string(),
            component_name: f.component.unwrap_or_default().trim().to_string(),
            project_name: f.project.unwrap_or_default().trim().to_string(),
            event_source_type: f.kind.unwrap_or_default(),
        },
    )
    .await;
    print!("{}", output::toggled(&out.event_source_names, enabled));
}

#[derive(serde::Deserialize)]
struct LogLine {
    #[serde(rename = "Component")]
    component: String,
    #[serde(rename = "Stream")]
    stream: String,
    #[serde(rename = "Data")]
    data: String,
}

/// `maelctl logs`: `[component]\t<data>`, stderr lines to stderr, until interrupted.
async fn logs(c: &Client, components: Option<String>, since: Option<String>) {
    let mut query = Vec::new();
    if let Some(comps) = components.filter(|s| !s.is_empty()) {
        query.push(format!("components={}", url_escape(&comps)));
    }
    if let Some(s) = since.filter(|s| !s.is_empty()) {
        query.push(format!("since={}", url_escape(&s)));
    }
    let path = format!("/_mael/logs?{}", query.join("&"));
    let resp = c
        .open_stream(&path)
        .await
        .unwrap_or_else(|e| die(&format!("Request to {}{path} failed", c.base()), e));
    let mut body = resp.into_body();
    let mut buf: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        buf.extend_from_slice(&data);
        while let Some(pos) = buf.windows(2).position(|w| w == b"\r\n") {
            let line: Vec<u8> = buf.drain(..pos + 2).collect();
            let line = &line[..line.len() - 2];
            if line == b"PING" {
                continue;
            }
            if let Ok(l) = serde_json::from_slice::<LogLine>(line) {
                if l.stream == "stderr" {
                    eprintln!("[{}]\t{}", l.component, l.data);
                } else {
                    println!("[{}]\t{}", l.component, l.data);
                    let _ = std::io::stdout().flush();
                }
            }
        }
    }
}

fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' | b',' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
