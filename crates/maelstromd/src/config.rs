//! maelstromd's settings: every `MAEL_*` variable of spec §4 with its type and default, the
//! envfile loader behind `maelstromd -f`, and the checks that end the process with status 2.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A setting that could not be used; the process exits with status 2 showing it.
#[derive(Debug, thiserror::Error)]
#[error("{var}: {message}")]
pub struct ConfigError {
    /// The variable at fault.
    pub var: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

fn err(var: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        var: var.to_string(),
        message: message.into(),
    }
}

/// The SQL database behind the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Database {
    /// Embedded SQLite file (one machine).
    Sqlite(PathBuf),
    /// PostgreSQL URL (clusters across machines).
    Postgres(String),
}

/// How the proxy reaches a container (spec §3.i).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Addressing {
    /// Publish `httpport` on 127.0.0.1 with a random host port.
    HostPort,
    /// Proxy to the container's network IP.
    ContainerIp,
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// `key=value` text.
    Text,
    /// One JSON object per line.
    Json,
}

/// Every setting, resolved.
#[derive(Clone, Debug)]
pub struct Config {
    /// The database.
    pub database: Database,
    /// `MAEL_DATA_DIR`.
    pub data_dir: PathBuf,
    /// `MAEL_NODE_ID`.
    pub node_id: Option<String>,
    /// `MAEL_PUBLIC_BIND`.
    pub public_bind: IpAddr,
    /// `MAEL_PUBLIC_PORT` (8008; the original used 80).
    pub public_port: u16,
    /// `MAEL_PRIVATE_BIND`.
    pub private_bind: IpAddr,
    /// `MAEL_PRIVATE_PORT`.
    pub private_port: u16,
    /// `MAEL_PRIVATE_TOKEN`.
    pub private_token: Option<String>,
    /// `MAEL_PEER_URL`.
    pub peer_url: Option<String>,
    /// `MAEL_CONTAINER_GATEWAY_PORT` (0 disables).
    pub container_gateway_port: u16,
    /// `MAEL_CONTAINER_PRIVATE_URL`.
    pub container_private_url: Option<String>,
    /// `MAEL_CONTAINER_ADDRESSING`.
    pub addressing: Addressing,
    /// `DIND_HOST`.
    pub dind_host: Option<String>,
    /// `MAEL_HTTP_READ_TIMEOUT`.
    pub http_read_timeout: Duration,
    /// `MAEL_HTTP_WRITE_TIMEOUT`.
    pub http_write_timeout: Duration,
    /// `MAEL_HTTP_IDLE_TIMEOUT`.
    pub http_idle_timeout: Duration,
    /// `MAEL_QUEUE_MAX_PER_COMPONENT`.
    pub queue_max_per_component: usize,
    /// `MAEL_AUTOSCALE_INTERVAL_SECONDS`.
    pub autoscale_interval: Duration,
    /// `MAEL_LOAD_REPORT_INTERVAL_MS`.
    pub load_report_interval: Duration,
    /// `MAEL_CRON_REFRESH_SECONDS`.
    pub cron_refresh: Duration,
    /// `MAEL_TOTAL_MEMORY` (MiB; negative: no cap).
    pub total_memory_mib: i64,
    /// `MAEL_NODE_LIVENESS_SECONDS`.
    pub node_liveness: Duration,
    /// `MAEL_NODE_STATUS_INTERVAL_SECONDS` (**added**, default 30): how often the node writes
    /// its status row and health-checks its peers.
    pub node_status_interval: Duration,
    /// `MAEL_INSTANCE_ID`.
    pub instance_id: String,
    /// `MAEL_SHUTDOWN_PAUSE_SECONDS`.
    pub shutdown_pause: Duration,
    /// `MAEL_DRAIN_TIMEOUT_SECONDS`.
    pub drain_timeout: Duration,
    /// `MAEL_CONTAINERS_ON_EXIT=stop`.
    pub stop_containers_on_exit: bool,
    /// `MAEL_TERMINATE_COMMAND`.
    pub terminate_command: String,
    /// `MAEL_TRUST_FORWARDED_HEADERS`.
    pub trust_forwarded_headers: bool,
    /// `MAEL_PROXY_CPU_AFFINITY` (default true): one proxy worker pinned per CPU, serving
    /// the connections whose packets arrive on that CPU.
    pub proxy_cpu_affinity: bool,
    /// `MAEL_LOG_LEVEL`.
    pub log_level: String,
    /// `MAEL_LOG_FORMAT`.
    pub log_format: LogFormat,
}

/// Variables of the original that are accepted and ignored, with one warning each (spec §2.4).
const IGNORED: &[&str] = &[
    "MAEL_PPROF",
    "MAEL_CPU_PROFILE_FILENAME",
    "MAEL_LOG_GC_SECONDS",
    "MAEL_CLUSTER_NAME",
    "MAEL_CLUSTER_MIN_SIZE",
    "MAEL_CLUSTER_MAX_SIZE",
];

/// Variables of features this release does not have: accepted with a warning that says so,
/// so an envfile written for the original still starts the node.
const NOT_IN_THIS_RELEASE: &[&str] = &[
    "MAEL_AWS_TERMINATE_QUEUE_URL",
    "MAEL_AWSTERMINATEQUEUEURL",
    "MAEL_AWS_SPOT_TERMINATE_POLL_SECONDS",
    "MAEL_DOCKER_PRUNE_MINUTES",
    "MAEL_DOCKER_PRUNE_UNREG_IMAGES",
    "MAEL_DOCKER_PRUNE_UNREG_KEEP",
];

impl Config {
    /// Reads the settings from the process environment. Warnings (ignored variables) are
    /// returned for the caller to log once logging is set up.
    pub fn from_env() -> Result<(Config, Vec<String>), ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads the settings through `get`, so tests need not touch the process environment.
    pub fn from_lookup(
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<(Config, Vec<String>), ConfigError> {
        let get = |k: &str| get(k).map(|v| v.trim().to_string());
        let mut warnings = Vec::new();
        for var in IGNORED {
            if get(var).is_some() {
                warnings.push(format!(
                    "{var} is a setting of the original Go maelstromd; it has no effect here"
                ));
            }
        }
        for var in NOT_IN_THIS_RELEASE {
            if get(var).is_some_and(|v| !v.is_empty() && v != "0" && v != "false") {
                warnings.push(format!(
                    "{var} is set, but this release does not have that feature; ignored"
                ));
            }
        }
        if get("LOGXI").is_some() || get("LOGXI_FORMAT").is_some() {
            warnings.push(
                "LOGXI and LOGXI_FORMAT have no effect; use MAEL_LOG_LEVEL and MAEL_LOG_FORMAT"
                    .into(),
            );
        }
        for (var, feature) in [
            ("LETSENCRYPT_EMAIL", "TLS with ACME certificates"),
            ("MAEL_ACME_EMAIL", "TLS with ACME certificates"),
        ] {
            if get(var).is_some_and(|v| !v.is_empty()) {
                return Err(err(
                    var,
                    format!(
                        "{feature} is not part of this release; unset {var} and terminate TLS in front of maelstromd (for example with nginx or a cloud load balancer)"
                    ),
                ));
            }
        }

        let int = |var: &str, default: i64| -> Result<i64, ConfigError> {
            match get(var) {
                None => Ok(default),
                Some(v) if v.is_empty() => Ok(default),
                Some(v) => v
                    .parse::<i64>()
                    .map_err(|_| err(var, format!("'{v}' is not an integer"))),
            }
        };
        let port = |var: &str, default: u16| -> Result<u16, ConfigError> {
            let v = int(var, default as i64)?;
            u16::try_from(v).map_err(|_| err(var, format!("{v} is not a port number (0-65535)")))
        };
        let secs = |var: &str, default: i64| -> Result<Duration, ConfigError> {
            let v = int(var, default)?;
            if v < 0 {
                return Err(err(
                    var,
                    format!("{v} is negative; give a number of seconds"),
                ));
            }
            Ok(Duration::from_secs(v as u64))
        };
        let boolean_or = |var: &str, default: bool| -> Result<bool, ConfigError> {
            match get(var).as_deref() {
                None | Some("") => Ok(default),
                Some(v) => match v.to_ascii_lowercase().as_str() {
                    "1" | "t" | "true" | "yes" => Ok(true),
                    "0" | "f" | "false" | "no" => Ok(false),
                    _ => Err(err(var, format!("'{v}' is not a boolean (true or false)"))),
                },
            }
        };
        let boolean = |var: &str| boolean_or(var, false);
        let addr = |var: &str, default: &str| -> Result<IpAddr, ConfigError> {
            let v = get(var).filter(|v| !v.is_empty()).unwrap_or(default.into());
            v.parse()
                .map_err(|_| err(var, format!("'{v}' is not an IP address")))
        };
        let opt = |var: &str| get(var).filter(|v| !v.is_empty());

        let data_dir = PathBuf::from(opt("MAEL_DATA_DIR").unwrap_or("./maelstrom-data".into()));
        let database = database(opt("MAEL_SQL_DRIVER"), opt("MAEL_SQL_DSN"), &data_dir)?;

        let addressing = match opt("MAEL_CONTAINER_ADDRESSING").as_deref() {
            None | Some("host-port") => Addressing::HostPort,
            Some("container-ip") => Addressing::ContainerIp,
            Some(v) => {
                return Err(err(
                    "MAEL_CONTAINER_ADDRESSING",
                    format!("'{v}' is neither host-port nor container-ip"),
                ));
            }
        };
        let log_format = match opt("MAEL_LOG_FORMAT").as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(v) => {
                return Err(err(
                    "MAEL_LOG_FORMAT",
                    format!("'{v}' is neither text nor json"),
                ));
            }
        };
        let stop_containers_on_exit = match opt("MAEL_CONTAINERS_ON_EXIT").as_deref() {
            None | Some("keep") => false,
            Some("stop") => true,
            Some(v) => {
                return Err(err(
                    "MAEL_CONTAINERS_ON_EXIT",
                    format!("'{v}' is neither keep nor stop"),
                ));
            }
        };
        let mut instance_id = opt("MAEL_INSTANCE_ID");
        if instance_id.is_none()
            && let Some(v) = opt("MAEL_INSTANCEID")
        {
            warnings.push("MAEL_INSTANCEID is deprecated; use MAEL_INSTANCE_ID".into());
            instance_id = Some(v);
        }
        let node_id = opt("MAEL_NODE_ID");
        if let Some(id) = &node_id {
            check_node_id(id).map_err(|m| err("MAEL_NODE_ID", m))?;
        }
        let private_token = opt("MAEL_PRIVATE_TOKEN");
        let private_bind = addr("MAEL_PRIVATE_BIND", "127.0.0.1")?;
        if !private_bind.is_loopback() && private_token.is_none() {
            warnings.push(format!(
                "the private port is bound to {private_bind} without MAEL_PRIVATE_TOKEN: anyone who reaches it can deploy containers; set MAEL_PRIVATE_TOKEN on every node"
            ));
        }
        let queue_max = int("MAEL_QUEUE_MAX_PER_COMPONENT", 1000)?;
        if queue_max < 1 {
            return Err(err(
                "MAEL_QUEUE_MAX_PER_COMPONENT",
                format!("{queue_max} is below 1"),
            ));
        }
        let positive_secs = |var: &str, default: i64| -> Result<Duration, ConfigError> {
            let d = secs(var, default)?;
            if d.is_zero() {
                return Err(err(var, "must be at least 1"));
            }
            Ok(d)
        };
        let load_ms = int("MAEL_LOAD_REPORT_INTERVAL_MS", 1000)?;
        if load_ms < 50 {
            return Err(err(
                "MAEL_LOAD_REPORT_INTERVAL_MS",
                format!("{load_ms} is below 50 ms"),
            ));
        }
        let config = Config {
            database,
            data_dir,
            node_id,
            public_bind: addr("MAEL_PUBLIC_BIND", "0.0.0.0")?,
            public_port: port("MAEL_PUBLIC_PORT", 8008)?,
            private_bind,
            private_port: port("MAEL_PRIVATE_PORT", 8374)?,
            private_token,
            peer_url: opt("MAEL_PEER_URL").map(|u| u.trim_end_matches('/').to_string()),
            container_gateway_port: port("MAEL_CONTAINER_GATEWAY_PORT", 8375)?,
            container_private_url: opt("MAEL_CONTAINER_PRIVATE_URL"),
            addressing,
            dind_host: opt("DIND_HOST"),
            http_read_timeout: positive_secs("MAEL_HTTP_READ_TIMEOUT", 300)?,
            http_write_timeout: positive_secs("MAEL_HTTP_WRITE_TIMEOUT", 310)?,
            http_idle_timeout: positive_secs("MAEL_HTTP_IDLE_TIMEOUT", 310)?,
            queue_max_per_component: queue_max as usize,
            autoscale_interval: positive_secs("MAEL_AUTOSCALE_INTERVAL_SECONDS", 2)?,
            load_report_interval: Duration::from_millis(load_ms as u64),
            cron_refresh: positive_secs("MAEL_CRON_REFRESH_SECONDS", 60)?,
            total_memory_mib: int("MAEL_TOTAL_MEMORY", -1)?,
            node_liveness: positive_secs("MAEL_NODE_LIVENESS_SECONDS", 300)?,
            node_status_interval: positive_secs("MAEL_NODE_STATUS_INTERVAL_SECONDS", 30)?,
            instance_id: instance_id.unwrap_or_default(),
            shutdown_pause: secs("MAEL_SHUTDOWN_PAUSE_SECONDS", 0)?,
            drain_timeout: secs("MAEL_DRAIN_TIMEOUT_SECONDS", 300)?,
            stop_containers_on_exit,
            terminate_command: opt("MAEL_TERMINATE_COMMAND").unwrap_or_default(),
            trust_forwarded_headers: boolean("MAEL_TRUST_FORWARDED_HEADERS")?,
            proxy_cpu_affinity: boolean_or("MAEL_PROXY_CPU_AFFINITY", true)?,
            log_level: opt("MAEL_LOG_LEVEL").unwrap_or("info".into()),
            log_format,
        };
        Ok((config, warnings))
    }
}

/// Picks the database from `MAEL_SQL_DRIVER` and `MAEL_SQL_DSN` (spec §3.a): drivers match by
/// substring; a DSN alone implies its driver; neither means SQLite in the data directory.
fn database(
    driver: Option<String>,
    dsn: Option<String>,
    data_dir: &std::path::Path,
) -> Result<Database, ConfigError> {
    let sqlite_path = |dsn: &str| {
        let path = dsn.strip_prefix("file:").unwrap_or(dsn);
        let path = path.split('?').next().unwrap_or(path);
        PathBuf::from(path)
    };
    match (driver.as_deref(), dsn.as_deref()) {
        (None, None) => Ok(Database::Sqlite(data_dir.join("maelstrom.db"))),
        (Some(d), dsn) if d.contains("sqlite") => Ok(Database::Sqlite(
            dsn.map(sqlite_path)
                .unwrap_or_else(|| data_dir.join("maelstrom.db")),
        )),
        (Some(d), Some(dsn)) if d.contains("postgres") => Ok(Database::Postgres(dsn.to_string())),
        (Some(d), None) if d.contains("postgres") => Err(err(
            "MAEL_SQL_DSN",
            "MAEL_SQL_DRIVER=postgres needs MAEL_SQL_DSN, e.g. postgres://user:password@host:5432/maelstrom",
        )),
        (Some(d), _) if d.contains("mysql") => Err(err(
            "MAEL_SQL_DRIVER",
            "the mysql driver is not available in this release; use postgres (MAEL_SQL_DRIVER=postgres) or leave both MAEL_SQL_* unset for SQLite",
        )),
        (Some(d), _) => Err(err(
            "MAEL_SQL_DRIVER",
            format!("unknown driver '{d}'; use sqlite3 or postgres"),
        )),
        (None, Some(dsn)) if dsn.starts_with("postgres://") || dsn.starts_with("postgresql://") => {
            Ok(Database::Postgres(dsn.to_string()))
        }
        (None, Some(dsn)) if dsn.starts_with("mysql://") => Err(err(
            "MAEL_SQL_DSN",
            "the mysql driver is not available in this release; use a postgres:// DSN or SQLite",
        )),
        (None, Some(dsn)) => Ok(Database::Sqlite(sqlite_path(dsn))),
    }
}

/// A node id must match `^[a-z0-9_-]{1,60}$` (spec §3.c).
pub fn check_node_id(id: &str) -> Result<(), String> {
    if id.is_empty()
        || id.len() > 60
        || !id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        return Err(format!(
            "'{id}' is not a valid node id: use 1 to 60 lowercase letters, digits, '_' or '-'"
        ));
    }
    Ok(())
}

/// Loads `NAME=value` lines of an envfile into the process environment (`maelstromd -f`):
/// blank lines and `#` comments are skipped, names and values trimmed, existing variables
/// overwritten as the original does. Must run before any thread starts.
pub fn load_envfile(path: &std::path::Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read envfile {}: {e}", path.display()))?;
    for (name, value) in
        parse_envfile(&text).map_err(|(line, msg)| format!("{}:{line}: {msg}", path.display()))?
    {
        // SAFETY: called from main before the runtime or any other thread starts.
        unsafe { std::env::set_var(name, value) };
    }
    Ok(())
}

/// Parses envfile text into pairs; errors carry the 1-based line number.
pub fn parse_envfile(text: &str) -> Result<Vec<(String, String)>, (usize, String)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, value)) = line.split_once('=') else {
            return Err((i + 1, format!("'{line}' is not NAME=value")));
        };
        let name = name.trim();
        if name.is_empty() {
            return Err((i + 1, "a line starts with '=' (no variable name)".into()));
        }
        out.push((name.to_string(), value.trim().to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(vars: &[(&str, &str)]) -> Result<(Config, Vec<String>), ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn zero_configuration_is_sqlite_in_the_data_dir_on_8008() {
        let (c, w) = cfg(&[]).unwrap();
        assert!(w.is_empty());
        assert_eq!(
            c.database,
            Database::Sqlite(PathBuf::from("./maelstrom-data/maelstrom.db"))
        );
        assert_eq!((c.public_port, c.private_port), (8008, 8374));
        assert!(c.private_bind.is_loopback());
        assert_eq!(c.container_gateway_port, 8375);
        assert_eq!(c.addressing, Addressing::HostPort);
        assert!(c.proxy_cpu_affinity);
    }

    #[test]
    fn proxy_cpu_affinity_can_be_turned_off() {
        let (c, _) = cfg(&[("MAEL_PROXY_CPU_AFFINITY", "false")]).unwrap();
        assert!(!c.proxy_cpu_affinity);
        let e = cfg(&[("MAEL_PROXY_CPU_AFFINITY", "sometimes")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "MAEL_PROXY_CPU_AFFINITY: 'sometimes' is not a boolean (true or false)"
        );
    }

    #[test]
    fn drivers_and_dsns() {
        let pg = "postgres://u:p@127.0.0.1/db";
        let (c, _) = cfg(&[("MAEL_SQL_DSN", pg)]).unwrap();
        assert_eq!(c.database, Database::Postgres(pg.into()));
        let (c, _) = cfg(&[
            ("MAEL_SQL_DRIVER", "sqlite3"),
            ("MAEL_SQL_DSN", "file:/tmp/x.db?cache=shared"),
        ])
        .unwrap();
        assert_eq!(c.database, Database::Sqlite("/tmp/x.db".into()));
        let e = cfg(&[("MAEL_SQL_DRIVER", "postgres")]).unwrap_err();
        assert_eq!(e.var, "MAEL_SQL_DSN");
        let e = cfg(&[("MAEL_SQL_DRIVER", "mysql"), ("MAEL_SQL_DSN", "x")]).unwrap_err();
        assert!(e.message.contains("mysql driver is not available"));
    }

    #[test]
    fn bad_values_name_the_variable() {
        let e = cfg(&[("MAEL_PUBLIC_PORT", "eighty")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "MAEL_PUBLIC_PORT: 'eighty' is not an integer"
        );
        let e = cfg(&[("MAEL_PRIVATE_PORT", "70000")]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("MAEL_PRIVATE_PORT: 70000 is not a port")
        );
        let e = cfg(&[("MAEL_NODE_ID", "Node One")]).unwrap_err();
        assert_eq!(e.var, "MAEL_NODE_ID");
        let e = cfg(&[("LETSENCRYPT_EMAIL", "a@b.c")]).unwrap_err();
        assert!(e.message.contains("not part of this release"));
    }

    #[test]
    fn ignored_variables_warn_once_each() {
        let (_, w) = cfg(&[
            ("MAEL_PPROF", "true"),
            ("MAEL_CLUSTER_NAME", "x"),
            ("MAEL_INSTANCEID", "i-1"),
        ])
        .unwrap();
        assert_eq!(w.len(), 3, "{w:?}");
        let (_, w) = cfg(&[("MAEL_PRIVATE_BIND", "0.0.0.0")]).unwrap();
        assert!(w[0].contains("MAEL_PRIVATE_TOKEN"));
    }

    #[test]
    fn envfiles_skip_comments_and_split_at_the_first_equals() {
        let pairs = parse_envfile("# comment\n\n A = b=c \nB=\n").unwrap();
        assert_eq!(
            pairs,
            vec![("A".into(), "b=c".into()), ("B".into(), "".into())]
        );
        assert_eq!(parse_envfile("x\n").unwrap_err().0, 1);
    }
}
