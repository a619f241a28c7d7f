//! The `maelstromd` binary: reads its settings, starts a node, and shuts it down on SIGINT or
//! SIGTERM (a second signal skips the remaining waits).

use clap::{Parser, Subcommand};
use maelstromd::config::{Config, LogFormat, load_envfile};
use maelstromd::node::Node;
use std::path::PathBuf;
use tokio_util::sync::CancellationToken;

// The proxy path allocates for every request (headers, bodies, futures); glibc's malloc spent
// a sixth of its user time there (perf, scripts/bench-maelstromd). mimalloc is made for this.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ENV_HELP: &str = "\
Settings come from MAEL_* environment variables (or an envfile given with -f). The ones most
often set:
  MAEL_PUBLIC_PORT     public reverse-proxy port (default 8008; the original Go maelstromd
                       used 80, set MAEL_PUBLIC_PORT=80 to restore it)
  MAEL_PRIVATE_PORT    private port for maelctl, peers and metrics (default 8374, bound to
                       MAEL_PRIVATE_BIND, default 127.0.0.1)
  MAEL_PRIVATE_TOKEN   bearer token required on the private port (set it on every node of a
                       cluster whose private ports are reachable from other machines)
  MAEL_DATA_DIR        embedded SQLite database and node id (default ./maelstrom-data)
  MAEL_SQL_DRIVER, MAEL_SQL_DSN   postgres and postgres://user:pw@host/db for a cluster
  MAEL_NODE_ID         explicit node id
  MAEL_LOG_LEVEL, MAEL_LOG_FORMAT info|debug|warn, text|json
See the README for every variable.";

#[derive(Parser)]
#[command(name = "maelstromd", version, about = "Starts Docker containers on demand behind an HTTP router", after_help = ENV_HELP)]
struct Args {
    /// Load NAME=value lines from this file into the environment first.
    #[arg(short = 'f', value_name = "ENVFILE")]
    envfile: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Print the version and exit.
    Version,
}

fn main() {
    let args = Args::parse();
    if let Some(Command::Version) = args.command {
        println!(
            "maelstromd v{} built on {} commit {}",
            maelstromd::VERSION,
            option_env!("MAEL_BUILD_DATE").unwrap_or("unknown"),
            option_env!("MAEL_GIT_SHA").unwrap_or("unknown"),
        );
        return;
    }
    if let Some(path) = &args.envfile
        && let Err(e) = load_envfile(path)
    {
        eprintln!("maelstromd: {e}");
        std::process::exit(2);
    }
    let (cfg, warnings) = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("maelstromd: {e}");
            std::process::exit(2);
        }
    };
    init_logging(&cfg);
    for w in warnings {
        tracing::warn!("{w}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let code = runtime.block_on(run(cfg));
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    std::process::exit(code);
}

async fn run(cfg: Config) -> i32 {
    let node = match Node::start(cfg).await {
        Ok(n) => n,
        Err(e) => {
            tracing::error!("{}", e.message);
            eprintln!("maelstromd: {}", e.message);
            return e.code;
        }
    };
    let hurry = CancellationToken::new();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        _ = node.shutdown_requested() => {}
    }
    {
        let hurry = hurry.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            tracing::warn!("second signal: skipping the remaining waits");
            hurry.cancel();
        });
    }
    node.shut_down(hurry).await;
    0
}

fn init_logging(cfg: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&cfg.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cfg.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.with_ansi(false).init(),
    }
}
