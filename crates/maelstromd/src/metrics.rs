//! Prometheus metrics at `GET /metrics` on the private port (spec §3.k): request counts and
//! latencies, queues, cold starts, containers, relays, event sources and roles. Counters and
//! histograms are updated on the request path; gauges of queues and containers are read
//! from the routers and the container registry when scraped.

use crate::gateway::Listener;
use crate::node::Node;
use crossbeam_utils::CachePadded;
use maelstromd_api::model::ComponentStatus;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::exponential_buckets_range;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

type Labels = Vec<(&'static str, String)>;
type Histograms = Family<Labels, Histogram, fn() -> Histogram>;

/// Proxy workers write their observations to their own shard (indexed by the worker number,
/// threads outside the workers share shard 0); a scrape sums the shards. Two workers
/// incrementing one atomic on every request would pass its cache line back and forth.
const SHARDS: usize = 8;
/// Buckets a histogram may have, `+Inf` included.
const MAX_BUCKETS: usize = 24;

fn shard() -> usize {
    crate::gateway::upstream::worker() % SHARDS
}

/// A histogram whose observations take no lock: a counter per bucket and the sum in
/// nanoseconds, per shard. prometheus-client's own histogram takes a mutex on every
/// observation; two of them are observed on every proxied request, from every proxy worker.
#[derive(Clone, Debug)]
pub struct Histogram(Arc<HistogramInner>);

#[derive(Debug)]
struct HistogramInner {
    bounds: Vec<f64>,
    shards: [CachePadded<HistogramShard>; SHARDS],
}

#[derive(Debug, Default)]
struct HistogramShard {
    /// One per bound, plus the `+Inf` bucket; not cumulative.
    counts: [AtomicU64; MAX_BUCKETS],
    sum_ns: AtomicU64,
}

impl Histogram {
    fn new(bounds: impl IntoIterator<Item = f64>) -> Histogram {
        let mut bounds: Vec<f64> = bounds.into_iter().filter(|b| b.is_finite()).collect();
        debug_assert!(bounds.len() < MAX_BUCKETS, "{} bounds", bounds.len());
        bounds.truncate(MAX_BUCKETS - 1);
        bounds.push(f64::INFINITY);
        Histogram(Arc::new(HistogramInner {
            bounds,
            shards: Default::default(),
        }))
    }

    /// Records one value, in seconds.
    pub fn observe(&self, secs: f64) {
        let i = self
            .0
            .bounds
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(self.0.bounds.len() - 1);
        let shard = &self.0.shards[shard()];
        shard.counts[i].fetch_add(1, Ordering::Relaxed);
        shard
            .sum_ns
            .fetch_add((secs.max(0.0) * 1e9) as u64, Ordering::Relaxed);
    }
}

/// A counter kept per shard, like [`Histogram`].
#[derive(Clone, Debug, Default)]
pub struct ShardedCounter(Arc<[CachePadded<AtomicU64>; SHARDS]>);

impl ShardedCounter {
    /// Adds one.
    pub fn inc(&self) {
        self.0[shard()].fetch_add(1, Ordering::Relaxed);
    }

    /// The total over the shards.
    pub fn get(&self) -> u64 {
        self.0.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

impl TypedMetric for ShardedCounter {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for ShardedCounter {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_counter::<NoLabelSet, _, u64>(&self.get(), None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
}

impl TypedMetric for Histogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let shards = &self.0.shards;
        let buckets: Vec<(f64, u64)> = self
            .0
            .bounds
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let n = shards.iter().map(|s| s.counts[i].load(Ordering::Relaxed));
                (*b, n.sum())
            })
            .collect();
        let count = buckets.iter().map(|b| b.1).sum();
        let sum_ns: u64 = shards
            .iter()
            .map(|s| s.sum_ns.load(Ordering::Relaxed))
            .sum();
        let sum = sum_ns as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

fn latency_histogram() -> Histogram {
    // 5 ms to 300 s.
    Histogram::new(exponential_buckets_range(0.005, 300.0, 16))
}

/// A shard's request counters of one component, by status code and listener.
type RequestCounters = Vec<(u16, Listener, ShardedCounter)>;

/// One component's request metrics, looked up once per router so the request path does
/// not build label sets.
pub struct ComponentMetrics {
    duration: Histogram,
    queue_wait: Histogram,
    /// Each shard's counters by code and listener, looked up without touching another
    /// shard's cache lines.
    requests: [CachePadded<Mutex<RequestCounters>>; SHARDS],
    family: Family<Labels, ShardedCounter>,
    component: String,
}

impl ComponentMetrics {
    /// One answered request.
    pub fn request(&self, code: u16, listener: Listener, elapsed: Duration) {
        let mut known = self.requests[shard()]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match known.iter().find(|(c, l, _)| *c == code && *l == listener) {
            Some((_, _, counter)) => counter.inc(),
            None => {
                let counter = self
                    .family
                    .get_or_create(&vec![
                        ("component", self.component.clone()),
                        ("code", code.to_string()),
                        ("listener", listener.label().to_string()),
                    ])
                    .clone();
                counter.inc();
                known.push((code, listener, counter));
            }
        }
        drop(known);
        self.duration.observe(elapsed.as_secs_f64());
    }

    /// Time a request waited for its slot.
    pub fn queue_wait(&self, waited: Duration) {
        self.queue_wait.observe(waited.as_secs_f64());
    }
}

/// Every metric of the node.
pub struct Metrics {
    registry: Registry,
    requests: Family<Labels, ShardedCounter>,
    duration: Histograms,
    queue_depth: Family<Labels, Gauge>,
    queue_rejected: Family<Labels, Counter>,
    queue_wait: Histograms,
    inflight: Family<Labels, Gauge>,
    cold_starts: Family<Labels, Counter>,
    cold_start_duration: Histograms,
    containers: Family<Labels, Gauge>,
    relayed: Family<Labels, Counter>,
    event_sources: Family<Labels, Counter>,
    roles: Family<Labels, Gauge>,
    connections_moved: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every family.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("maelstrom");
        let histograms =
            || Histograms::new_with_constructor(latency_histogram as fn() -> Histogram);
        let m = Metrics {
            requests: Family::default(),
            duration: histograms(),
            queue_depth: Family::default(),
            queue_rejected: Family::default(),
            queue_wait: histograms(),
            inflight: Family::default(),
            cold_starts: Family::default(),
            cold_start_duration: histograms(),
            containers: Family::default(),
            relayed: Family::default(),
            event_sources: Family::default(),
            roles: Family::default(),
            connections_moved: Counter::default(),
            registry: Registry::default(),
        };
        registry.register("http_requests", "Requests answered", m.requests.clone());
        registry.register(
            "http_request_duration_seconds",
            "Time to the response head",
            m.duration.clone(),
        );
        registry.register(
            "queue_depth",
            "Requests waiting for a container",
            m.queue_depth.clone(),
        );
        registry.register(
            "queue_rejected",
            "Requests refused because the queue was full",
            m.queue_rejected.clone(),
        );
        registry.register(
            "queue_wait_seconds",
            "Time from arrival to a container slot",
            m.queue_wait.clone(),
        );
        registry.register(
            "inflight_requests",
            "Requests being served by this node's containers",
            m.inflight.clone(),
        );
        registry.register(
            "cold_starts",
            "Placements of a component that ran nowhere",
            m.cold_starts.clone(),
        );
        registry.register(
            "cold_start_duration_seconds",
            "From the first waiting request to the first healthy instance",
            m.cold_start_duration.clone(),
        );
        registry.register(
            "containers",
            "Containers of this node by state",
            m.containers.clone(),
        );
        registry.register(
            "relayed_requests",
            "Requests relayed to a peer",
            m.relayed.clone(),
        );
        registry.register(
            "eventsource_invocations",
            "Event-source firings",
            m.event_sources.clone(),
        );
        registry.register(
            "role_held",
            "Whether this node holds a role lock",
            m.roles.clone(),
        );
        registry.register(
            "proxy_connections_moved",
            "Client connections handed to the proxy worker on the CPU their packets arrive on",
            m.connections_moved.clone(),
        );
        Metrics { registry, ..m }
    }

    /// A client connection went to another proxy worker (`gateway::affinity`).
    pub fn connection_moved(&self) {
        self.connections_moved.inc();
    }

    /// The request metrics of one component.
    pub fn component(&self, component: &str) -> std::sync::Arc<ComponentMetrics> {
        let labels = vec![("component", component.to_string())];
        std::sync::Arc::new(ComponentMetrics {
            duration: self.duration.get_or_create(&labels).clone(),
            queue_wait: self.queue_wait.get_or_create(&labels).clone(),
            requests: Default::default(),
            family: self.requests.clone(),
            component: component.to_string(),
        })
    }

    /// One answered request.
    pub fn request(&self, component: &str, code: u16, listener: Listener, elapsed: Duration) {
        self.requests
            .get_or_create(&vec![
                ("component", component.to_string()),
                ("code", code.to_string()),
                ("listener", listener.label().to_string()),
            ])
            .inc();
        if !component.is_empty() {
            self.duration
                .get_or_create(&vec![("component", component.to_string())])
                .observe(elapsed.as_secs_f64());
        }
    }

    /// A request refused with 503.
    pub fn queue_rejected(&self, component: &str) {
        self.queue_rejected
            .get_or_create(&vec![("component", component.to_string())])
            .inc();
    }

    /// A cold start ended.
    pub fn cold_start(&self, component: &str, ok: bool, took: Duration) {
        let result = if ok { "ok" } else { "error" };
        self.cold_starts
            .get_or_create(&vec![
                ("component", component.to_string()),
                ("result", result.to_string()),
            ])
            .inc();
        if ok {
            self.cold_start_duration
                .get_or_create(&vec![("component", component.to_string())])
                .observe(took.as_secs_f64());
        }
    }

    /// A request went to a peer.
    pub fn relayed(&self, component: &str, peer: &str) {
        self.relayed
            .get_or_create(&vec![
                ("component", component.to_string()),
                ("peer", peer.to_string()),
            ])
            .inc();
    }

    /// An event source fired.
    pub fn event_source(&self, name: &str, kind: &str, result: &str) {
        self.event_sources
            .get_or_create(&vec![
                ("eventsource", name.to_string()),
                ("type", kind.to_string()),
                ("result", result.to_string()),
            ])
            .inc();
    }

    /// Whether this node holds `role`.
    pub fn role_held(&self, role: &str, held: bool) {
        self.roles
            .get_or_create(&vec![("role", role.to_string())])
            .set(i64::from(held));
    }

    /// The text exposition, with gauges read now.
    pub async fn render(&self, node: &Arc<Node>) -> String {
        self.queue_depth.clear();
        self.inflight.clear();
        for r in node.routers() {
            let s = r.snapshot();
            let l = vec![("component", r.component.clone())];
            self.queue_depth.get_or_create(&l).set(s.queued as i64);
            self.inflight.get_or_create(&l).set(s.local_inflight as i64);
        }
        self.containers.clear();
        let mut counts: HashMap<(String, ComponentStatus), i64> = HashMap::new();
        for c in node.containers.all() {
            *counts.entry((c.component.clone(), c.status())).or_default() += 1;
        }
        for ((component, state), n) in counts {
            self.containers
                .get_or_create(&vec![
                    ("component", component),
                    ("state", state.as_str().to_string()),
                ])
                .set(n);
        }
        let mut out = String::new();
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_histograms_render_in_text_format() {
        let m = Metrics::new();
        m.request("p_web", 200, Listener::Public, Duration::from_millis(12));
        m.cold_start("p_web", true, Duration::from_secs(1));
        m.role_held("placement", true);
        let mut out = String::new();
        encode(&mut out, &m.registry).unwrap();
        assert!(
            out.contains(
                r#"maelstrom_http_requests_total{component="p_web",code="200",listener="public"} 1"#
            ),
            "{out}"
        );
        assert!(
            out.contains(r#"maelstrom_http_request_duration_seconds_count{component="p_web"} 1"#),
            "{out}"
        );
        assert!(
            out.contains(r#"maelstrom_http_request_duration_seconds_sum{component="p_web"} 0.012"#),
            "{out}"
        );
        assert!(
            out.contains(
                r#"maelstrom_http_request_duration_seconds_bucket{le="+Inf",component="p_web"} 1"#
            ),
            "{out}"
        );
        // Buckets are cumulative: the 5 ms bucket is empty, every bucket from 12 ms up has it.
        assert!(
            out.contains(
                r#"maelstrom_http_request_duration_seconds_bucket{le="0.005",component="p_web"} 0"#
            ),
            "{out}"
        );
        assert!(out.contains(r#"maelstrom_cold_starts_total{component="p_web",result="ok"} 1"#));
        assert!(out.contains(r#"maelstrom_role_held{role="placement"} 1"#));
    }
}
