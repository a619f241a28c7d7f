//! The data model shared by maelstromd, maelctl and the database: projects, components, event
//! sources and node status, with the original's JSON field names (spec §5.3, §5.4, §7.6).
//!
//! Optional fields are omitted from JSON when empty, as the original's barrister encoder did;
//! every field defaults when absent so that the database rows written by the original decode.
//! Which fields an RPC input must carry is checked separately, against [`crate::idl`].

use serde::{Deserialize, Serialize};

fn is_zero(v: &i64) -> bool {
    *v == 0
}
fn is_zero_f(v: &f64) -> bool {
    *v == 0.0
}
fn is_false(v: &bool) -> bool {
    !*v
}

/// A `NAME=value` pair (environment variables, headers, log driver options).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameValue {
    /// The name.
    #[serde(default)]
    pub name: String,
    /// The value.
    #[serde(default)]
    pub value: String,
}

impl NameValue {
    /// A pair from two strings.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        NameValue {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// How starts of one component are serialised across the cluster (spec §12.2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartParallelism {
    /// No lock: every start runs at once.
    #[default]
    Parallel,
    /// Every start holds `start_container_<component>` until its health check passes.
    Series,
    /// Only the first start of a version takes the lock.
    Seriesfirst,
}

/// Whether a rolling restart stops an old container before starting a new one (spec §12.2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RestartOrder {
    /// Stop, then start (the default): a capacity dip, no extra memory.
    #[default]
    Stopstart,
    /// Start, then stop: no capacity dip.
    Startstop,
}

/// The four event-source kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventSourceType {
    /// HTTP requests matched by hostname and path prefix.
    Http,
    /// A cron schedule.
    Cron,
    /// An SQS queue.
    Sqs,
    /// An AWS Step Functions activity.
    Awsstepfunc,
}

impl EventSourceType {
    /// The name used in the database `type` column and in RPC filters.
    pub fn as_str(self) -> &'static str {
        match self {
            EventSourceType::Http => "http",
            EventSourceType::Cron => "cron",
            EventSourceType::Sqs => "sqs",
            EventSourceType::Awsstepfunc => "awsstepfunc",
        }
    }

    /// Parses a type name; `None` for anything but the four names.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "http" => Some(EventSourceType::Http),
            "cron" => Some(EventSourceType::Cron),
            "sqs" => Some(EventSourceType::Sqs),
            "awsstepfunc" => Some(EventSourceType::Awsstepfunc),
            _ => None,
        }
    }
}

/// A bind mount, volume or tmpfs of a component's container.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeMount {
    /// `bind` (default), `volume` or `tmpfs`.
    #[serde(default, rename = "type", skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// Host path or volume name.
    #[serde(default)]
    pub source: String,
    /// Path inside the container.
    #[serde(default)]
    pub target: String,
    /// Mounted read-only.
    #[serde(default, skip_serializing_if = "is_false")]
    pub read_only: bool,
}

/// How a component's container runs (spec §5.3, the `docker.` fields).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DockerComponent {
    /// Image reference.
    #[serde(default)]
    pub image: String,
    /// Command overriding the image's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Entrypoint overriding the image's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entrypoint: Vec<String>,
    /// Port the container serves HTTP on (0 means 8080).
    #[serde(default)]
    pub http_port: i64,
    /// Health-check path ("" means `/`).
    #[serde(default)]
    pub http_health_check_path: String,
    /// Start health-check window in seconds (0 → 60; < 0 skips the check).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub http_start_health_check_seconds: i64,
    /// Period of the ongoing health check (≤ 0 → 10).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub http_health_check_seconds: i64,
    /// Consecutive failures before the container is replaced (≤ 0 → 1).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub http_health_check_max_failures: i64,
    /// Command run inside a container whose health check failed, before it is stopped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub health_check_failed_command: Vec<String>,
    /// Seconds without requests before the container stops (≤ 0 → 300).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub idle_timeout_seconds: i64,
    /// Mounts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<VolumeMount>,
    /// Network mode.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub network_name: String,
    /// Log driver.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub log_driver: String,
    /// Log driver options.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log_driver_options: Vec<NameValue>,
    /// CPU limit in cores (the original's field; kept for compatibility).
    #[serde(default, skip_serializing_if = "is_zero_f")]
    pub limit_cpu: f64,
    /// Memory reservation in MiB, also the placement unit (≤ 0 → 128).
    #[serde(rename = "reserveMemoryMiB", default, skip_serializing_if = "is_zero")]
    pub reserve_memory_mib: i64,
    /// Hard memory limit in MiB (0: none).
    #[serde(rename = "limitMemoryMiB", default, skip_serializing_if = "is_zero")]
    pub limit_memory_mib: i64,
    /// CPU shares (0: engine default).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cpu_shares: i64,
    /// Run an init process as PID 1.
    #[serde(default, skip_serializing_if = "is_false")]
    pub init: bool,
    /// Extra published ports (`6001:6001`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
    /// DNS servers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<String>,
    /// DNS options.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_options: Vec<String>,
    /// DNS search domains.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_search: Vec<String>,
    /// Ulimits, `name=soft:hard` or `name=value`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ulimits: Vec<String>,
    /// Registry user name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pull_username: String,
    /// Registry password: write-only, never returned (spec §3.h).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pull_password: String,
    /// Host command run instead of the pull API; `<image>` is replaced.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pull_command: String,
    /// Pull on every notified node right after a put.
    #[serde(default, skip_serializing_if = "is_false")]
    pub pull_image_on_put: bool,
    /// Pull before every start.
    #[serde(default, skip_serializing_if = "is_false")]
    pub pull_image_on_start: bool,
    /// Container hostname.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hostname: String,
    /// Container domain name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub domainname: String,
    /// User the process runs as.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user: String,
    /// Capabilities added.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    /// Capabilities dropped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_drop: Vec<String>,
}

impl DockerComponent {
    /// `httpport` with its default (spec §3.j #10).
    pub fn http_port(&self) -> u16 {
        if self.http_port <= 0 || self.http_port > 65535 {
            8080
        } else {
            self.http_port as u16
        }
    }
    /// `httphealthcheckpath` with its default.
    pub fn health_check_path(&self) -> &str {
        if self.http_health_check_path.is_empty() {
            "/"
        } else {
            &self.http_health_check_path
        }
    }
    /// The start health-check window; `None` when the check is skipped.
    pub fn start_health_check_seconds(&self) -> Option<u64> {
        match self.http_start_health_check_seconds {
            0 => Some(60),
            s if s < 0 => None,
            s => Some(s as u64),
        }
    }
    /// Ongoing health-check period.
    pub fn health_check_seconds(&self) -> u64 {
        positive_or(self.http_health_check_seconds, 10)
    }
    /// Consecutive failures tolerated.
    pub fn health_check_max_failures(&self) -> u64 {
        positive_or(self.http_health_check_max_failures, 1)
    }
    /// Idle timeout.
    pub fn idle_timeout_seconds(&self) -> u64 {
        positive_or(self.idle_timeout_seconds, 300)
    }
    /// Memory reservation in MiB.
    pub fn reserve_memory_mib(&self) -> i64 {
        if self.reserve_memory_mib <= 0 {
            128
        } else {
            self.reserve_memory_mib
        }
    }
}

fn positive_or(v: i64, default: u64) -> u64 {
    if v <= 0 { default } else { v as u64 }
}

/// A Docker image plus its run settings (spec §5.3).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Component {
    /// Full name, `<project>_<component>`.
    #[serde(default)]
    pub name: String,
    /// Project the component belongs to.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub project_name: String,
    /// Container environment (project env overlaid by the component's), sorted by name.
    #[serde(default)]
    pub environment: Vec<NameValue>,
    /// Instances kept running at all times.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub min_instances: i64,
    /// Cluster-wide cap (0: none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_instances: i64,
    /// Per-node cap (0: none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_instances_per_node: i64,
    /// Concurrent requests per container (≤ 0 → 1).
    #[serde(default)]
    pub max_concurrency: i64,
    /// When true the concurrency limit only drives autoscaling.
    #[serde(default, skip_serializing_if = "is_false")]
    pub soft_concurrency_limit: bool,
    /// Scale-up threshold as a fraction of capacity (≤ 0 → 0.75).
    #[serde(default, skip_serializing_if = "is_zero_f")]
    pub scale_up_concurrency_pct: f64,
    /// Scale-down threshold (≤ 0 → 0.25).
    #[serde(default, skip_serializing_if = "is_zero_f")]
    pub scale_down_concurrency_pct: f64,
    /// Request deadline including queue wait (≤ 0 → 300).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_duration_seconds: i64,
    /// Queue bound per node (0: `MAEL_QUEUE_MAX_PER_COMPONENT`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_queued_requests: i64,
    /// Start serialisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_parallelism: Option<StartParallelism>,
    /// Rolling-restart order; capitalised as in the original.
    #[serde(
        rename = "RestartOrder",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub restart_order: Option<RestartOrder>,
    /// Version, bumped by every update (0 when creating).
    #[serde(default)]
    pub version: i64,
    /// Last modification, epoch ms.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub modified_at: i64,
    /// Container settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker: Option<DockerComponent>,
}

impl Component {
    /// The container settings, or defaults when absent.
    pub fn docker(&self) -> std::borrow::Cow<'_, DockerComponent> {
        match &self.docker {
            Some(d) => std::borrow::Cow::Borrowed(d),
            None => std::borrow::Cow::Owned(DockerComponent::default()),
        }
    }
    /// `maxconcurrency` with its default.
    pub fn max_concurrency(&self) -> u64 {
        positive_or(self.max_concurrency, 1)
    }
    /// `maxdurationseconds` with its default.
    pub fn max_duration_seconds(&self) -> u64 {
        positive_or(self.max_duration_seconds, 300)
    }
    /// `scaleupconcurrencypct` with its default.
    pub fn scale_up_pct(&self) -> f64 {
        if self.scale_up_concurrency_pct <= 0.0 {
            0.75
        } else {
            self.scale_up_concurrency_pct
        }
    }
    /// `scaledownconcurrencypct` with its default.
    pub fn scale_down_pct(&self) -> f64 {
        if self.scale_down_concurrency_pct <= 0.0 {
            0.25
        } else {
            self.scale_down_concurrency_pct
        }
    }
}

/// An HTTP event source: requests matched by hostname and/or path prefix.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpEventSource {
    /// Exact hostname.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hostname: String,
    /// Raw path prefix.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path_prefix: String,
    /// Remove the prefix before forwarding.
    #[serde(default, skip_serializing_if = "is_false")]
    pub strip_prefix: bool,
}

/// The request a cron firing makes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CronHttpRequest {
    /// HTTP method.
    #[serde(default)]
    pub method: String,
    /// Path, with an optional query string used verbatim.
    #[serde(default)]
    pub path: String,
    /// Body (not sent for GET).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub data: String,
    /// Headers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<NameValue>,
}

/// A cron event source.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CronEventSource {
    /// 5-field expression or descriptor.
    #[serde(default)]
    pub schedule: String,
    /// The request made at each firing.
    #[serde(default)]
    pub http: CronHttpRequest,
}

/// An SQS event source (stored and listed; polling is not part of this release).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SqsEventSource {
    /// Queue name or prefix.
    #[serde(default)]
    pub queue_name: String,
    /// Treat `queue_name` as a prefix.
    #[serde(default, skip_serializing_if = "is_false")]
    pub name_as_prefix: bool,
    /// POST target.
    #[serde(default)]
    pub path: String,
    /// Total concurrency.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_concurrency: i64,
    /// Messages per receive.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub messages_per_poll: i64,
    /// Concurrency per poller.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub concurrency_per_poller: i64,
    /// Visibility timeout in seconds.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub visibility_timeout: i64,
}

/// An AWS Step Functions activity event source (stored and listed; polling is not part of
/// this release).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AwsStepFuncEventSource {
    /// Activity name.
    #[serde(default)]
    pub activity_name: String,
    /// POST target.
    #[serde(default)]
    pub path: String,
    /// Total concurrency.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_concurrency: i64,
    /// Concurrency per poller.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub concurrency_per_poller: i64,
}

/// A trigger bound to one component; exactly one of the four kinds is set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventSource {
    /// Full name.
    #[serde(default)]
    pub name: String,
    /// Full name of the component it triggers.
    #[serde(default)]
    pub component_name: String,
    /// Project of that component.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub project_name: String,
    /// Version, bumped by every update.
    #[serde(default)]
    pub version: i64,
    /// Last modification, epoch ms.
    #[serde(default)]
    pub modified_at: i64,
    /// HTTP routing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpEventSource>,
    /// Cron schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<CronEventSource>,
    /// SQS queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sqs: Option<SqsEventSource>,
    /// Step Functions activity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_step_func: Option<AwsStepFuncEventSource>,
}

impl EventSource {
    /// The kind of the source; `None` when no sub-type is set.
    pub fn kind(&self) -> Option<EventSourceType> {
        if self.http.is_some() {
            Some(EventSourceType::Http)
        } else if self.cron.is_some() {
            Some(EventSourceType::Cron)
        } else if self.sqs.is_some() {
            Some(EventSourceType::Sqs)
        } else if self.aws_step_func.is_some() {
            Some(EventSourceType::Awsstepfunc)
        } else {
            None
        }
    }

    /// How many sub-types are set (exactly one is valid).
    pub fn kind_count(&self) -> usize {
        [
            self.http.is_some(),
            self.cron.is_some(),
            self.sqs.is_some(),
            self.aws_step_func.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count()
    }
}

/// An event source with its enabled flag.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventSourceWithStatus {
    /// The event source.
    #[serde(default)]
    pub event_source: EventSource,
    /// Whether it takes part in routing or scheduling.
    #[serde(default)]
    pub enabled: bool,
}

/// A component with its event sources, as a project holds it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ComponentWithEventSources {
    /// The component.
    #[serde(default)]
    pub component: Component,
    /// Its event sources.
    #[serde(default)]
    pub event_sources: Vec<EventSourceWithStatus>,
}

/// What `maelctl project put` deploys from one `maelstrom.yml`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Project {
    /// Project name.
    #[serde(default)]
    pub name: String,
    /// Components and their event sources.
    #[serde(default)]
    pub components: Vec<ComponentWithEventSources>,
}

/// One 20-second activity bucket of a container (spec §12.8).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ComponentActivity {
    /// Requests completed in the bucket.
    #[serde(default)]
    pub requests: i64,
    /// Σ request durations / bucket time.
    #[serde(default)]
    pub concurrency: f64,
}

/// Life-cycle state of a container as nodes report it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ComponentStatus {
    /// Serving.
    #[default]
    Active,
    /// Created, not yet healthy.
    Starting,
    /// Draining before stop.
    Stopping,
}

impl ComponentStatus {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            ComponentStatus::Active => "active",
            ComponentStatus::Starting => "starting",
            ComponentStatus::Stopping => "stopping",
        }
    }
}

/// One container of a node, as its status reports it (spec §7.6).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ComponentInfo {
    /// Full component name.
    #[serde(default)]
    pub component_name: String,
    /// Component version the container runs.
    #[serde(default)]
    pub component_version: i64,
    /// Container state.
    #[serde(default)]
    pub status: ComponentStatus,
    /// Concurrency limit of the container.
    #[serde(default)]
    pub max_concurrency: i64,
    /// Memory reserved for it, MiB.
    #[serde(rename = "memoryReservedMiB", default)]
    pub memory_reserved_mib: i64,
    /// Start time, epoch ms.
    #[serde(default)]
    pub start_time: i64,
    /// Newest request, epoch ms (0: never).
    #[serde(default)]
    pub last_request_time: i64,
    /// Requests served.
    #[serde(default)]
    pub total_requests: i64,
    /// Newest bucket first, at most 10.
    #[serde(default)]
    pub activity: Vec<ComponentActivity>,
    /// Docker container id (**added**).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub container_id: String,
}

/// A cold start as the dashboard and node status report it (**added**).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ColdStart {
    /// Component.
    pub component_name: String,
    /// When it began, epoch ms.
    pub started_at: i64,
    /// Trigger to first healthy instance, ms.
    pub duration_ms: i64,
    /// `ok` or the error.
    pub result: String,
}

/// A node's self-description (spec §7.6, §11).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    /// Node id.
    #[serde(default)]
    pub node_id: String,
    /// Process start, epoch ms.
    #[serde(default)]
    pub started_at: i64,
    /// When this status was computed, epoch ms.
    #[serde(default)]
    pub observed_at: i64,
    /// Optimistic-concurrency version for `StartStopComponents`.
    #[serde(default)]
    pub version: i64,
    /// Where peers reach this node's private port.
    #[serde(default)]
    pub peer_url: String,
    /// Total memory, MiB.
    #[serde(rename = "totalMemoryMiB", default)]
    pub total_memory_mib: i64,
    /// Free memory, MiB.
    #[serde(rename = "freeMemoryMiB", default)]
    pub free_memory_mib: i64,
    /// CPU count.
    #[serde(rename = "numCPUs", default)]
    pub num_cpus: i64,
    /// 1-minute load.
    #[serde(default)]
    pub load_avg1m: f64,
    /// 5-minute load.
    #[serde(default)]
    pub load_avg5m: f64,
    /// 15-minute load.
    #[serde(default)]
    pub load_avg15m: f64,
    /// Containers.
    #[serde(default)]
    pub running_components: Vec<ComponentInfo>,
    /// Recent cold starts, newest first (**added**).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent_cold_starts: Vec<ColdStart>,
}

impl NodeStatus {
    /// Containers of `component` in a state other than `stopping`.
    pub fn instances_of(&self, component: &str) -> usize {
        self.running_components
            .iter()
            .filter(|c| c.component_name == component && c.status != ComponentStatus::Stopping)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optional_fields_are_omitted_and_restart_order_is_capitalised() {
        let c = Component {
            name: "p_web".into(),
            max_concurrency: 5,
            restart_order: Some(RestartOrder::Startstop),
            docker: Some(DockerComponent {
                image: "img".into(),
                http_port: 80,
                ..Default::default()
            }),
            ..Default::default()
        };
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"name":"p_web","environment":[],"maxConcurrency":5,
                "RestartOrder":"startstop","version":0,
                "docker":{"image":"img","httpPort":80,"httpHealthCheckPath":""}})
        );
        let back: Component = serde_json::from_value(v).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn defaults_follow_the_spec() {
        let d = DockerComponent::default();
        assert_eq!(d.http_port(), 8080);
        assert_eq!(d.health_check_path(), "/");
        assert_eq!(d.start_health_check_seconds(), Some(60));
        assert_eq!(d.idle_timeout_seconds(), 300);
        assert_eq!(d.reserve_memory_mib(), 128);
        let skip = DockerComponent {
            http_start_health_check_seconds: -1,
            ..Default::default()
        };
        assert_eq!(skip.start_health_check_seconds(), None);
        let c = Component::default();
        assert_eq!(c.max_concurrency(), 1);
        assert_eq!(c.max_duration_seconds(), 300);
        assert_eq!((c.scale_up_pct(), c.scale_down_pct()), (0.75, 0.25));
    }
}
