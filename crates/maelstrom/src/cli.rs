//! The command line (spec §7): the original's commands, flags and defaults, resolved into a
//! checked [`TestConfig`]. Every mistake exits 254 with a message that says what to change.

use crate::checker::Availability;
use crate::nemesis::Fault;
use crate::net::LatencyDist;
use crate::preflight;
use clap::{Args, Parser, Subcommand};
use maelstrom_services::ServiceKind;
use maelstrom_services::topology::Topology;
use std::path::PathBuf;

/// A JVM-free Maelstrom.
#[derive(Parser)]
#[command(
    name = "maelstrom",
    version,
    about = "Runs distributed-systems node programs over a simulated network and checks them"
)]
pub struct Cli {
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// `maelstrom <command>`.
#[derive(Subcommand)]
pub enum Command {
    /// Run a test (or --test-count tests) against a node program.
    Test(Box<TestArgs>),
    /// Re-run the checkers on a stored test.
    Analyze(AnalyzeArgs),
    /// Check a history file in Jepsen's EDN format.
    Check(CheckArgs),
    /// A read-only web UI over the store.
    Serve(ServeArgs),
    /// Run the bundled example nodes against every workload they solve.
    Demo(DemoArgs),
    /// Write workloads.md and protocol.md from the RPC and error registries.
    Doc(DocArgs),
}

/// `maelstrom demo` options: those of `test`, minus `--bin` and `-w`.
#[derive(Args)]
#[command(
    after_help = "Every `maelstrom test` option except --bin and -w applies to each run, e.g. \
                  `maelstrom demo --time-limit 5 --nemesis partition`."
)]
pub struct DemoArgs {
    /// `maelstrom test` options, applied to every run.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "TEST OPTIONS"
    )]
    pub options: Vec<String>,
}

/// `maelstrom doc` options.
#[derive(Args)]
pub struct DocArgs {
    /// Directory to write workloads.md and protocol.md into.
    #[arg(long, default_value = "doc")]
    pub out: PathBuf,
}

/// `maelstrom serve` options.
#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on (the original listened on all interfaces).
    #[arg(short = 'b', long = "host", default_value = "127.0.0.1")]
    pub host: std::net::IpAddr,
    /// Port to listen on.
    #[arg(short = 'p', long, default_value_t = 8080)]
    pub port: u16,
    /// The store directory.
    #[arg(long, default_value = "store")]
    pub store: PathBuf,
}

/// `maelstrom check` options.
#[derive(Args)]
pub struct CheckArgs {
    /// The history (`-` for stdin): a vector of op maps, or one op map per line.
    pub file: String,
    /// Check with this workload's checker (lin-kv expects `[key value]` values).
    #[arg(short = 'w', long)]
    pub workload: Option<String>,
    /// Check one register under Knossos semantics: cas-register or register.
    #[arg(long)]
    pub model: Option<String>,
    /// The register's initial value, as EDN (default nil).
    #[arg(long)]
    pub initial_value: Option<String>,
    /// Consistency models (transactional workloads).
    #[arg(long, default_value = "strict-serializable")]
    pub consistency_models: String,
    /// Seconds each key or component may take.
    #[arg(long, default_value_t = 60.0)]
    pub checker_timeout: f64,
    /// Directory for artefacts (per-key results, pictures).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Output format: edn or json.
    #[arg(long, default_value = "edn")]
    pub format: String,
}

/// `maelstrom analyze` options.
#[derive(Args)]
pub struct AnalyzeArgs {
    /// A stored test: an index by time (-1 is the newest, 0 the oldest) or a test directory.
    #[arg(
        short = 't',
        long = "test",
        default_value = "-1",
        allow_hyphen_values = true
    )]
    pub test: String,
    /// Where tests are stored.
    #[arg(long, default_value = "store")]
    pub store: PathBuf,
}

/// `maelstrom test` options.
#[derive(Args)]
pub struct TestArgs {
    /// The node program (paths resolve against the current directory; PATH is not searched).
    #[arg(long)]
    pub bin: Option<PathBuf>,
    /// Arguments passed to the node program (also everything after `--`).
    #[arg(value_name = "ARGS")]
    pub args: Vec<String>,
    /// broadcast, echo, g-counter, g-set, kafka, lin-kv, pn-counter, txn-list-append, txn-rw-register, unique-ids
    #[arg(short = 'w', long, default_value = "lin-kv")]
    pub workload: String,
    /// Number of nodes, named n0..n(N-1).
    #[arg(long)]
    pub node_count: Option<usize>,
    /// A node name (repeatable); default n1..n5.
    #[arg(short = 'n', long = "node")]
    pub node: Vec<String>,
    /// Comma-separated node names.
    #[arg(long)]
    pub nodes: Option<String>,
    /// A file with one node name per line.
    #[arg(long)]
    pub nodes_file: Option<PathBuf>,
    /// Client threads: an integer, or Kn for K × node count.
    #[arg(long, default_value = "1n")]
    pub concurrency: String,
    /// Total operations per second.
    #[arg(long, default_value_t = 5.0)]
    pub rate: f64,
    /// Seconds of the main phase.
    #[arg(long, default_value_t = 60.0)]
    pub time_limit: f64,
    /// Mean node↔node and node↔service latency, in ms.
    #[arg(long, default_value_t = 0)]
    pub latency: u64,
    /// constant, uniform or exponential.
    #[arg(long, default_value = "constant")]
    pub latency_dist: String,
    /// Comma list of partition, kill, pause, lose.
    #[arg(long)]
    pub nemesis: Option<String>,
    /// Mean seconds between nemesis operations.
    #[arg(long, default_value_t = 10.0)]
    pub nemesis_interval: f64,
    /// Loss probability while the lose fault is active.
    #[arg(long, default_value_t = 0.5)]
    pub lose_probability: f64,
    /// Broadcast topology: line, grid, tree, tree2, tree3, tree4, total.
    #[arg(long, default_value = "grid")]
    pub topology: String,
    /// total, or a fraction in [0, 1] of operations that must succeed.
    #[arg(long)]
    pub availability: Option<String>,
    /// Consistency models to check (transactional workloads).
    #[arg(long, default_value = "strict-serializable")]
    pub consistency_models: String,
    /// Active keys (txn and kafka workloads).
    #[arg(long, default_value_t = 10)]
    pub key_count: u64,
    /// Longest transaction (txn workloads).
    #[arg(long, default_value_t = 4)]
    pub max_txn_length: u64,
    /// Writes per key before it retires (txn and kafka workloads).
    #[arg(long, default_value_t = 16)]
    pub max_writes_per_key: u64,
    /// Log every node's stderr lines to the console.
    #[arg(long)]
    pub log_stderr: bool,
    /// Log every message sent.
    #[arg(long)]
    pub log_net_send: bool,
    /// Log every message delivered.
    #[arg(long)]
    pub log_net_recv: bool,
    /// Seed for every random choice (default: drawn from the OS).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Hide the live progress line.
    #[arg(long)]
    pub no_progress: bool,
    /// Seconds each checker may take.
    #[arg(long, default_value_t = 60.0)]
    pub checker_timeout: f64,
    /// Where tests are stored.
    #[arg(long, default_value = "store")]
    pub store: PathBuf,
    /// Working directory of node processes (default: the system temporary directory).
    #[arg(long)]
    pub node_cwd: Option<PathBuf>,
    /// Run this many tests in sequence (run i uses seed + i), stopping after an invalid one.
    #[arg(long, default_value_t = 1)]
    pub test_count: u64,
    #[arg(long, hide = true)]
    username: Option<String>,
    #[arg(long, hide = true)]
    password: Option<String>,
    #[arg(long, hide = true)]
    ssh_private_key: Option<String>,
    #[arg(long, hide = true, num_args = 0..=1, default_missing_value = "true")]
    strict_host_key_checking: Option<String>,
    #[arg(long, hide = true)]
    no_ssh: bool,
    #[arg(long, hide = true)]
    leave_db_running: bool,
    #[arg(long, hide = true)]
    logging_json: bool,
}

/// A checked test configuration.
#[derive(Clone, Debug)]
pub struct TestConfig {
    /// Canonical node program path.
    pub bin: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Workload name.
    pub workload: String,
    /// Node ids.
    pub nodes: Vec<String>,
    /// Client threads.
    pub concurrency: usize,
    /// Ops per second.
    pub rate: f64,
    /// Main phase, seconds.
    pub time_limit: f64,
    /// Mean latency, ms.
    pub latency: u64,
    /// Latency distribution.
    pub latency_dist: LatencyDist,
    /// Enabled faults.
    pub nemesis: Vec<Fault>,
    /// Mean seconds between nemesis ops.
    pub nemesis_interval: f64,
    /// Loss probability.
    pub lose_probability: f64,
    /// Broadcast topology.
    pub topology: Topology,
    /// The topology's name, as given.
    pub topology_name: String,
    /// Required availability.
    pub availability: Option<Availability>,
    /// Console logging switches.
    pub log_stderr: bool,
    /// `--log-net-send`.
    pub log_net_send: bool,
    /// `--log-net-recv`.
    pub log_net_recv: bool,
    /// The seed of the first test.
    pub seed: u64,
    /// Whether the seed was given.
    pub seed_given: bool,
    /// Progress line enabled.
    pub progress: bool,
    /// Store directory.
    pub store: PathBuf,
    /// Node working directory.
    pub node_cwd: PathBuf,
    /// Tests to run.
    pub test_count: u64,
    /// The command line as given.
    pub argv: Vec<String>,
    /// Seconds each checker may take per key or component.
    pub checker_timeout: f64,
    /// Consistency models to check.
    pub consistency_models: Vec<String>,
    /// `--key-count`.
    pub key_count: u64,
    /// `--max-txn-length`.
    pub max_txn_length: u64,
    /// `--max-writes-per-key`.
    pub max_writes_per_key: u64,
}

/// The longest time option accepted (a year); longer ones overflow clocks.
const MAX_SECONDS: f64 = 31_536_000.0;

/// A usage error: the message, ending in what to change.
#[derive(Debug)]
pub struct UsageError(pub String);

impl TestArgs {
    /// Checks every option and the node program.
    pub fn resolve(self, argv: Vec<String>) -> Result<TestConfig, UsageError> {
        let err = |m: String| Err(UsageError(m));
        let Some(bin) = self.bin else {
            return err("Expected a --bin PATH_TO_BINARY to test".into());
        };
        let cwd = std::env::current_dir()
            .map_err(|e| UsageError(format!("cannot read the current directory: {e}")))?;
        let bin = preflight::check_bin(&bin, &cwd)
            .map_err(|p| UsageError(format!("{}\nFix: {}", p.message, p.fix)))?;
        if !crate::workload::ALL.contains(&self.workload.as_str()) {
            return err(format!(
                "Unknown workload {:?}; expected one of {}",
                self.workload,
                crate::workload::ALL.join(", ")
            ));
        }
        let nodes = resolve_nodes(self.node_count, self.node, self.nodes, self.nodes_file)?;
        let concurrency = parse_concurrency(&self.concurrency, nodes.len())?;
        if self.workload == "lin-kv" && !concurrency.is_multiple_of(2 * nodes.len()) {
            return err(format!(
                "The lin-kv workload needs --concurrency to be a positive multiple of 2 x node count (e.g. --concurrency 2n); got {concurrency} with {} nodes.",
                nodes.len()
            ));
        }
        if !(self.checker_timeout > 0.0 && self.checker_timeout.is_finite()) {
            return err(format!(
                "--checker-timeout must be more than 0 seconds, got {}",
                self.checker_timeout
            ));
        }
        let consistency_models: Vec<String> = self
            .consistency_models
            .split(',')
            .map(|m| m.trim().to_string())
            .filter(|m| !m.is_empty())
            .collect();
        if let Some(bad) = consistency_models
            .iter()
            .find(|m| !crate::checker::elle::MODELS.contains(&m.as_str()))
        {
            return err(format!(
                "Unknown consistency model {bad:?}; expected a comma list of {}",
                crate::checker::elle::MODELS.join(", ")
            ));
        }
        if self.key_count == 0 || self.max_txn_length == 0 || self.max_writes_per_key == 0 {
            return err(
                "--key-count, --max-txn-length and --max-writes-per-key must each be at least 1"
                    .into(),
            );
        }
        if !(self.rate >= 0.0 && self.rate <= 1e7) {
            return err(format!(
                "--rate must be between 0 and 10,000,000, got {}",
                self.rate
            ));
        }
        if !(self.time_limit > 0.0 && self.time_limit <= MAX_SECONDS) {
            return err(format!(
                "--time-limit must be more than 0 seconds and at most a year, got {}",
                self.time_limit
            ));
        }
        let latency_dist = match self.latency_dist.as_str() {
            "constant" => LatencyDist::Constant,
            "uniform" => LatencyDist::Uniform,
            "exponential" => LatencyDist::Exponential,
            other => {
                return err(format!(
                    "Unknown --latency-dist {other:?}; expected constant, uniform or exponential"
                ));
            }
        };
        let mut nemesis = Vec::new();
        for f in self
            .nemesis
            .iter()
            .flat_map(|s| s.split(','))
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            match Fault::parse(f) {
                Some(fault) if !nemesis.contains(&fault) => nemesis.push(fault),
                Some(_) => {}
                None => {
                    return err(format!(
                        "Unknown nemesis fault {f:?}; expected a comma list of partition, kill, pause, lose"
                    ));
                }
            }
        }
        if !(self.nemesis_interval > 0.0 && self.nemesis_interval <= MAX_SECONDS) {
            return err(format!(
                "--nemesis-interval must be more than 0 seconds (and at most a year), got {}",
                self.nemesis_interval
            ));
        }
        if !(self.lose_probability > 0.0 && self.lose_probability <= 1.0) {
            return err(format!(
                "--lose-probability must be in (0, 1], got {}",
                self.lose_probability
            ));
        }
        let Some(topology) = Topology::parse(&self.topology) else {
            return err(format!(
                "Unknown --topology {:?}; expected line, grid, tree, tree2, tree3, tree4 or total",
                self.topology
            ));
        };
        let availability = match self.availability.as_deref() {
            None => None,
            Some("total") => Some(Availability::Total),
            Some(s) => match s.parse::<f64>() {
                Ok(a) if (0.0..=1.0).contains(&a) => Some(Availability::AtLeast(a)),
                _ => {
                    return err(format!(
                        "--availability must be total or a number in [0, 1], got {s:?}"
                    ));
                }
            },
        };
        if self.test_count == 0 {
            return err("--test-count must be at least 1".into());
        }
        let node_cwd = match self.node_cwd {
            Some(d) if d.is_dir() => d,
            Some(d) => return err(format!("--node-cwd {} is not a directory", d.display())),
            None => std::env::temp_dir(),
        };
        Ok(TestConfig {
            bin,
            args: self.args,
            workload: self.workload,
            nodes,
            concurrency,
            rate: self.rate,
            time_limit: self.time_limit,
            latency: self.latency,
            latency_dist,
            nemesis,
            nemesis_interval: self.nemesis_interval,
            lose_probability: self.lose_probability,
            topology,
            topology_name: self.topology,
            availability,
            log_stderr: self.log_stderr,
            log_net_send: self.log_net_send,
            log_net_recv: self.log_net_recv,
            seed: self.seed.unwrap_or_else(rand::random),
            seed_given: self.seed.is_some(),
            progress: !self.no_progress,
            store: self.store,
            node_cwd,
            test_count: self.test_count,
            argv,
            checker_timeout: self.checker_timeout,
            consistency_models,
            key_count: self.key_count,
            max_txn_length: self.max_txn_length,
            max_writes_per_key: self.max_writes_per_key,
        })
    }
}

fn resolve_nodes(
    count: Option<usize>,
    node: Vec<String>,
    nodes: Option<String>,
    file: Option<PathBuf>,
) -> Result<Vec<String>, UsageError> {
    let list: Vec<String> = if let Some(n) = count {
        if n == 0 {
            return Err(UsageError("--node-count must be at least 1".into()));
        }
        (0..n).map(|i| format!("n{i}")).collect()
    } else if !node.is_empty() {
        node
    } else if let Some(s) = nodes {
        s.split(',')
            .map(|x| x.trim().to_string())
            .filter(|x| !x.is_empty())
            .collect()
    } else if let Some(f) = file {
        std::fs::read_to_string(&f)
            .map_err(|e| UsageError(format!("cannot read --nodes-file {}: {e}", f.display())))?
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect()
    } else {
        (1..=5).map(|i| format!("n{i}")).collect()
    };
    let mut seen = std::collections::HashSet::new();
    for n in &list {
        if n.starts_with('c') {
            return Err(UsageError(format!(
                "Node name {n:?} starts with 'c', which marks clients; rename it"
            )));
        }
        if ServiceKind::from_id(n).is_some() {
            return Err(UsageError(format!(
                "Node name {n:?} is the name of a built-in service; rename it"
            )));
        }
        if !seen.insert(n) {
            return Err(UsageError(format!(
                "Node name {n:?} appears twice; node names must be unique"
            )));
        }
    }
    if list.is_empty() {
        return Err(UsageError(
            "No nodes: give --node-count N or node names".into(),
        ));
    }
    Ok(list)
}

/// `--concurrency`: `K`, `Kn` (K × node count) or `n`.
pub fn parse_concurrency(s: &str, nodes: usize) -> Result<usize, UsageError> {
    let bad = || {
        UsageError(format!(
            "--concurrency must be a positive integer or Kn (K times the node count), got {s:?}"
        ))
    };
    let c = match s.strip_suffix('n') {
        Some("") => nodes,
        Some(k) => k.parse::<usize>().map_err(|_| bad())? * nodes,
        None => s.parse::<usize>().map_err(|_| bad())?,
    };
    if c < 1 {
        return Err(bad());
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrency_accepts_the_original_syntax() {
        assert_eq!(parse_concurrency("n", 3).unwrap(), 3);
        assert_eq!(parse_concurrency("4n", 3).unwrap(), 12);
        assert_eq!(parse_concurrency("7", 3).unwrap(), 7);
        assert!(parse_concurrency("0", 3).is_err());
        assert!(parse_concurrency("xn", 3).is_err());
    }

    #[test]
    fn node_names_are_checked() {
        assert_eq!(
            resolve_nodes(Some(2), vec![], None, None).unwrap(),
            ["n0", "n1"]
        );
        assert_eq!(resolve_nodes(None, vec![], None, None).unwrap().len(), 5);
        assert_eq!(
            resolve_nodes(None, vec![], Some("a, b".into()), None).unwrap(),
            ["a", "b"]
        );
        assert!(
            resolve_nodes(None, vec!["c1".into()], None, None)
                .unwrap_err()
                .0
                .contains("clients")
        );
        assert!(
            resolve_nodes(None, vec!["lin-kv".into()], None, None)
                .unwrap_err()
                .0
                .contains("service")
        );
        assert!(
            resolve_nodes(None, vec!["a".into(), "a".into()], None, None)
                .unwrap_err()
                .0
                .contains("twice")
        );
    }
}
