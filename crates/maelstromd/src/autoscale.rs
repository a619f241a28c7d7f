//! Autoscaling (spec §10): every node samples each component's load once a second (time-
//! weighted in-flight plus queued requests, from its routers) and pushes it to the holder of
//! the `autoscale` role; the holder decides a cluster-wide instance count per component and
//! tells nodes to start or stop containers. The decision itself, [`target_count`], is a pure
//! function.

use crate::db::LockOutcome;
use crate::node::Node;
use crate::placement::{Limits, best_start_option};
use maelstromd_api::model::{Component, ComponentInfo, ComponentStatus, NodeStatus};
use maelstromd_api::now_ms;
use maelstromd_api::rpc::{
    ComponentLoad, ComponentTarget, ReportLoadInput, StartStopComponentsInput,
};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ROLE: &str = "autoscale";
/// Reports older than this are ignored (the node's status row is used instead).
const REPORT_MAX_AGE: Duration = Duration::from_secs(10);
/// Scale-downs wait this long after the component's last scale-up.
const SCALE_DOWN_DELAY: Duration = Duration::from_secs(60);

/// The loads reported to this node while it holds the role.
#[derive(Default)]
pub struct LoadBoard {
    reports: Mutex<HashMap<String, (Instant, ReportLoadInput)>>,
    last_scale_up: Mutex<HashMap<String, Instant>>,
    /// Components whose plan is being applied; they are left alone until it ends.
    busy: Mutex<std::collections::HashSet<String>>,
    /// Per component: the last 60 one-second samples of this node's load.
    samples: Mutex<HashMap<String, VecDeque<f64>>>,
}

impl LoadBoard {
    /// Stores a node's report.
    pub fn report(&self, input: ReportLoadInput) {
        self.reports
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(input.node_id.clone(), (Instant::now(), input));
    }

    fn fresh_reports(&self) -> Vec<ReportLoadInput> {
        self.reports
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|(at, _)| at.elapsed() < REPORT_MAX_AGE)
            .map(|(_, r)| r.clone())
            .collect()
    }
}

/// One component's cluster-wide demand, as the holder sees it.
#[derive(Clone, Debug, Default)]
pub struct Demand {
    /// Active and starting instances.
    pub instances: usize,
    /// Requests in flight on containers now.
    pub inflight: usize,
    /// Requests queued in routers now.
    pub queued: usize,
    /// Time-weighted in-flight + queued over 6 s.
    pub concurrency_6s: f64,
    /// The same, peak over 60 s.
    pub concurrency_60s: f64,
    /// Newest request or container start anywhere, epoch ms.
    pub last_activity_ms: i64,
    /// Every instance is at its hard limit.
    pub saturated: bool,
    /// Time since the last scale-up of the component.
    pub since_scale_up: Option<Duration>,
}

/// The instance count the component should have (spec §10.1 with the faster signal of §10.2).
pub fn target_count(c: &Component, d: &Demand, now_ms: i64) -> usize {
    let cap = c.max_concurrency() as f64;
    let (up, down) = (c.scale_up_pct(), c.scale_down_pct());
    let n = d.instances;
    let idle_ms = c.docker().idle_timeout_seconds() as i64 * 1000;
    let busy = d.inflight + d.queued > 0;
    let idle = !busy && now_ms - d.last_activity_ms > idle_ms;
    let min = c.min_instances.max(0) as usize;
    let mut target = n;
    if n > 0 && d.concurrency_6s / (n as f64 * cap) > up {
        target = (d.concurrency_6s / (cap * up)).ceil() as usize;
    } else if n > 0
        && d.concurrency_60s / (n as f64 * cap) < down
        && d.since_scale_up.is_none_or(|t| t >= SCALE_DOWN_DELAY)
    {
        let wanted = (d.concurrency_60s / (cap * up)).ceil() as usize;
        target = wanted.max(n - n / 2);
    }
    if d.queued > 0 && (d.saturated || n == 0) {
        target = target.max(n + (d.queued as f64 / cap).ceil() as usize);
    }
    if idle {
        target = min;
    }
    let effective_min = if min == 0 && !idle {
        usize::from(n > 0 || busy)
    } else {
        min
    };
    target = target.max(effective_min);
    if c.max_instances > 0 {
        target = target.min(c.max_instances as usize);
    }
    if target == 0 && busy {
        target = 1;
    }
    target
}

/// Samples this node's routers once a second, pushes the load to the role holder, and — on
/// the holder — evaluates every `MAEL_AUTOSCALE_INTERVAL_SECONDS`.
pub async fn run(node: Arc<Node>) {
    let mut sample_tick = tokio::time::interval(Duration::from_secs(1));
    sample_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut eval_tick = tokio::time::interval(node.cfg.autoscale_interval);
    eval_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_full_push = Instant::now() - Duration::from_secs(60);
    let mut last_push = Instant::now() - Duration::from_secs(60);
    let mut holder: Option<String> = None;
    loop {
        tokio::select! {
            _ = sample_tick.tick() => {
                let report = sample(&node);
                let active = report.components.iter().any(|c| c.inflight + c.queued > 0 || c.concurrency_6s > 0.0);
                let due = (active && last_push.elapsed() >= node.cfg.load_report_interval)
                    || last_full_push.elapsed() >= Duration::from_secs(10);
                if due {
                    last_push = Instant::now();
                    if !active || last_full_push.elapsed() >= Duration::from_secs(10) {
                        last_full_push = Instant::now();
                    }
                    push(&node, report, &holder).await;
                }
            }
            _ = eval_tick.tick() => {
                match node.acquire_role(ROLE, Duration::from_secs(30)).await {
                    Ok(LockOutcome::Acquired) => {
                        node.metrics.role_held(ROLE, true);
                        holder = Some(node.id.clone());
                        evaluate(&node).await;
                    }
                    Ok(LockOutcome::HeldBy(h)) => {
                        node.metrics.role_held(ROLE, false);
                        holder = Some(h);
                    }
                    Err(e) => tracing::warn!(error = %e, "autoscale role lock failed"),
                }
            }
            _ = node.shutdown.cancelled() => {
                let _ = node.db.release_role(ROLE, &node.id).await;
                return;
            }
        }
    }
}

/// One second of this node's load per component.
fn sample(node: &Arc<Node>) -> ReportLoadInput {
    let mut samples = node.loads.samples.lock().unwrap_or_else(|p| p.into_inner());
    let mut components = Vec::new();
    for router in node.routers() {
        let s = router.snapshot();
        let value = router.take_load_sample();
        let window = samples.entry(router.component.clone()).or_default();
        window.push_front(value);
        window.truncate(60);
        let six: Vec<f64> = window.iter().take(6).copied().collect();
        let c6 = six.iter().sum::<f64>() / six.len().max(1) as f64;
        let c60 = window.iter().copied().fold(0.0, f64::max);
        let instances = node
            .containers
            .of(&router.component)
            .iter()
            .filter(|c| c.status() != ComponentStatus::Stopping)
            .count();
        components.push(ComponentLoad {
            component_name: router.component.clone(),
            inflight: s.local_inflight as i64,
            queued: s.queued as i64,
            instances: instances as i64,
            concurrency_6s: c6,
            concurrency_60s: c60,
            last_request_time: s.last_request_ms,
        });
    }
    ReportLoadInput {
        node_id: node.id.clone(),
        observed_at: now_ms(),
        components,
    }
}

async fn push(node: &Arc<Node>, report: ReportLoadInput, holder: &Option<String>) {
    match holder.as_deref() {
        Some(h) if h != node.id => {
            if let Some(link) = node.cluster.link(h) {
                let r: Result<serde_json::Value, _> =
                    link.rpc.call("NodeService.ReportLoad", &report).await;
                if let Err(e) = r {
                    tracing::debug!(holder = %h, error = %e, "load report failed");
                }
            }
        }
        _ => node.loads.report(report),
    }
}

/// The holder's evaluation: per component, the target count and the nodes that start or stop
/// instances to reach it.
async fn evaluate(node: &Arc<Node>) {
    let statuses = node.all_statuses().await;
    let reports = node.loads.fresh_reports();
    let now = now_ms();
    let mut names: Vec<String> = statuses
        .iter()
        .flat_map(|s| {
            s.running_components
                .iter()
                .map(|c| c.component_name.clone())
        })
        .chain(reports.iter().flat_map(|r| {
            r.components
                .iter()
                .filter(|c| c.queued > 0 || c.inflight > 0)
                .map(|c| c.component_name.clone())
        }))
        .collect();
    match node.db.list_components(&Default::default()).await {
        Ok((all, _)) => names.extend(
            all.into_iter()
                .filter(|c| c.min_instances > 0)
                .map(|c| c.name),
        ),
        Err(e) => tracing::warn!(error = %e, "autoscale cannot list components"),
    }
    names.sort();
    names.dedup();
    let limits = node.component_limits(&statuses).await;
    let mut working = statuses.clone();
    let mut plans: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    let busy = node
        .loads
        .busy
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    for name in names.into_iter().filter(|n| !busy.contains(n)) {
        let Ok(Some(component)) = node.catalog.component(&name).await else {
            continue;
        };
        let demand = demand_of(&name, &component, &statuses, &reports, node);
        let target = target_count(&component, &demand, now);
        let n = demand.instances;
        if target == n {
            continue;
        }
        // A component that runs nowhere with requests waiting is placed by the routers'
        // cold start; the autoscaler starts it only for mininstances.
        if n == 0 && demand.queued > 0 && component.min_instances == 0 {
            continue;
        }
        tracing::info!(component = %name, from = n, to = target,
            c6 = format!("{:.2}", demand.concurrency_6s), queued = demand.queued, "autoscale decision");
        if target > n {
            node.loads
                .last_scale_up
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(name.clone(), Instant::now());
            for _ in n..target {
                let Some(option) = best_start_option(&working, &component, &limits, false) else {
                    tracing::info!(component = %name, "autoscale: no node has room for another instance");
                    break;
                };
                let s = working
                    .iter_mut()
                    .find(|s| s.node_id == option.node_id)
                    .expect("listed");
                let count = s.instances_of(&name) as i64 + 1;
                s.running_components.push(ComponentInfo {
                    component_name: name.clone(),
                    memory_reserved_mib: component.docker().reserve_memory_mib(),
                    status: ComponentStatus::Starting,
                    ..Default::default()
                });
                plans
                    .entry(option.node_id)
                    .or_default()
                    .insert(name.clone(), count);
            }
        } else {
            for _ in target..n {
                // The costliest node: most instances of the component, then most containers,
                // then highest load.
                let Some(s) = working
                    .iter_mut()
                    .filter(|s| s.instances_of(&name) > 0)
                    .max_by(|a, b| {
                        (a.instances_of(&name), a.running_components.len())
                            .cmp(&(b.instances_of(&name), b.running_components.len()))
                            .then(a.load_avg1m.total_cmp(&b.load_avg1m))
                    })
                else {
                    break;
                };
                if let Some(pos) = s
                    .running_components
                    .iter()
                    .position(|c| c.component_name == name && c.status != ComponentStatus::Stopping)
                {
                    s.running_components.remove(pos);
                }
                let count = s.instances_of(&name) as i64;
                plans
                    .entry(s.node_id.clone())
                    .or_default()
                    .insert(name.clone(), count);
            }
        }
    }
    if plans.is_empty() {
        return;
    }
    // Applying waits for containers to start or drain; evaluation (every 2 s), load reports
    // and the lease renewal go on meanwhile.
    let components: Vec<String> = plans.values().flat_map(|t| t.keys().cloned()).collect();
    node.loads
        .busy
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .extend(components.iter().cloned());
    let node = node.clone();
    tokio::spawn(async move {
        apply(&node, &statuses, plans).await;
        let mut busy = node.loads.busy.lock().unwrap_or_else(|p| p.into_inner());
        for c in &components {
            busy.remove(c);
        }
    });
}

fn demand_of(
    name: &str,
    component: &Component,
    statuses: &[NodeStatus],
    reports: &[ReportLoadInput],
    node: &Node,
) -> Demand {
    let mut d = Demand::default();
    let mut reported_nodes = Vec::new();
    for r in reports {
        if let Some(c) = r.components.iter().find(|c| c.component_name == name) {
            d.inflight += c.inflight.max(0) as usize;
            d.queued += c.queued.max(0) as usize;
            d.concurrency_6s += c.concurrency_6s;
            d.concurrency_60s += c.concurrency_60s;
            d.last_activity_ms = d.last_activity_ms.max(c.last_request_time);
            reported_nodes.push(r.node_id.as_str());
        }
    }
    let mut capacity = 0;
    for s in statuses {
        for c in s
            .running_components
            .iter()
            .filter(|c| c.component_name == name)
        {
            if c.status == ComponentStatus::Stopping {
                continue;
            }
            d.instances += 1;
            capacity += c.max_concurrency.max(1) as usize;
            d.last_activity_ms = d
                .last_activity_ms
                .max(c.last_request_time)
                .max(c.start_time);
            if !reported_nodes.contains(&s.node_id.as_str()) {
                // No fresh report from this node: fall back to its status buckets.
                if let Some(b) = c.activity.first() {
                    d.concurrency_6s += b.concurrency;
                    d.concurrency_60s += b.concurrency;
                }
            }
        }
    }
    d.saturated = !component.soft_concurrency_limit && capacity > 0 && d.inflight >= capacity;
    d.since_scale_up = node
        .loads
        .last_scale_up
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(name)
        .map(|t| t.elapsed());
    d
}

/// Sends the plans: nodes that only start first, then nodes that start and stop, then nodes
/// that only stop; a failed group stops the later ones (spec §10.1).
async fn apply(
    node: &Arc<Node>,
    statuses: &[NodeStatus],
    plans: BTreeMap<String, BTreeMap<String, i64>>,
) {
    let kind = |node_id: &str, targets: &BTreeMap<String, i64>| -> u8 {
        let s = statuses.iter().find(|s| s.node_id == node_id);
        let (mut starts, mut stops) = (false, false);
        for (name, count) in targets {
            let have = s.map(|s| s.instances_of(name) as i64).unwrap_or(0);
            starts |= *count > have;
            stops |= *count < have;
        }
        match (starts, stops) {
            (true, false) => 0,
            (true, true) => 1,
            _ => 2,
        }
    };
    for group in 0..3u8 {
        let calls: Vec<_> = plans
            .iter()
            .filter(|(id, t)| kind(id, t) == group)
            .map(|(node_id, targets)| {
                let version = statuses
                    .iter()
                    .find(|s| &s.node_id == node_id)
                    .map(|s| s.version)
                    .unwrap_or(0);
                let input = StartStopComponentsInput {
                    client_node_id: node.id.clone(),
                    target_version: version,
                    target_counts: targets
                        .iter()
                        .map(|(name, count)| ComponentTarget {
                            component_name: name.clone(),
                            required_memory_mib: 0,
                            target_count: *count,
                        })
                        .collect(),
                    return_status: true,
                    block: true,
                };
                let node = node.clone();
                let node_id = node_id.clone();
                async move { crate::placement::start_stop(&node, &node_id, input).await }
            })
            .collect();
        let results = futures_util::future::join_all(calls).await;
        let mut failed = false;
        for r in results {
            match r {
                Ok(out) => {
                    if let Some(s) = out.target_status {
                        node.cluster.accept(&node.id, s);
                    }
                    if !out.errors.is_empty() {
                        tracing::warn!(errors = ?out.errors, "autoscale plan had errors");
                        failed = true;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "autoscale plan failed");
                    failed = true;
                }
            }
        }
        if failed {
            return;
        }
    }
}

/// What placement needs of every component: minimums and queued requests.
pub fn limits_from(components: &[Arc<Component>], reports: &[ReportLoadInput]) -> Limits {
    let mut limits = Limits::default();
    for c in components {
        limits
            .min_instances
            .insert(c.name.clone(), c.min_instances.max(0) as usize);
    }
    for r in reports {
        for c in &r.components {
            *limits.queued.entry(c.component_name.clone()).or_default() += c.queued.max(0) as usize;
        }
    }
    limits
}

impl Node {
    /// The limits placement respects for the components in `statuses`.
    pub async fn component_limits(&self, statuses: &[NodeStatus]) -> Limits {
        let mut names: Vec<&str> = statuses
            .iter()
            .flat_map(|s| {
                s.running_components
                    .iter()
                    .map(|c| c.component_name.as_str())
            })
            .collect();
        names.sort();
        names.dedup();
        let mut components = Vec::new();
        for n in names {
            if let Ok(Some(c)) = self.catalog.component(n).await {
                components.push(c);
            }
        }
        let mut reports = self.loads.fresh_reports();
        reports.push(ReportLoadInput {
            node_id: self.id.clone(),
            observed_at: now_ms(),
            components: self
                .routers()
                .iter()
                .map(|r| ComponentLoad {
                    component_name: r.component.clone(),
                    queued: r.snapshot().queued as i64,
                    ..Default::default()
                })
                .collect(),
        });
        limits_from(&components, &reports)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use maelstromd_api::model::DockerComponent;
    use proptest::prelude::*;

    fn comp(min: i64, max: i64, conc: i64) -> Component {
        Component {
            name: "c".into(),
            min_instances: min,
            max_instances: max,
            max_concurrency: conc,
            docker: Some(DockerComponent {
                idle_timeout_seconds: 10,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn load_above_the_threshold_scales_up_and_low_load_scales_down_by_half() {
        let c = comp(0, 0, 2);
        let now = 1_000_000;
        let busy = Demand {
            instances: 1,
            inflight: 2,
            concurrency_6s: 3.0,
            concurrency_60s: 3.0,
            last_activity_ms: now,
            ..Default::default()
        };
        assert_eq!(target_count(&c, &busy, now), 2, "3 / (2 × 0.75) → 2");
        let quiet = Demand {
            instances: 8,
            inflight: 1,
            concurrency_6s: 0.5,
            concurrency_60s: 0.5,
            last_activity_ms: now,
            since_scale_up: Some(Duration::from_secs(120)),
            ..Default::default()
        };
        assert_eq!(target_count(&c, &quiet, now), 4, "at most half go at once");
        let recent = Demand {
            since_scale_up: Some(Duration::from_secs(5)),
            ..quiet
        };
        assert_eq!(
            target_count(&c, &recent, now),
            8,
            "no scale-down right after a scale-up"
        );
    }

    #[test]
    fn queued_requests_on_full_instances_add_capacity() {
        let c = comp(0, 3, 1);
        let d = Demand {
            instances: 1,
            inflight: 1,
            queued: 5,
            saturated: true,
            last_activity_ms: 10,
            ..Default::default()
        };
        assert_eq!(
            target_count(&c, &d, 10),
            3,
            "1 + 5, capped by maxinstances 3"
        );
    }

    #[test]
    fn idle_components_go_to_their_minimum_at_once() {
        let now = 100_000;
        let idle = Demand {
            instances: 3,
            concurrency_6s: 2.0,
            concurrency_60s: 2.0,
            last_activity_ms: now - 11_000,
            ..Default::default()
        };
        assert_eq!(target_count(&comp(0, 0, 1), &idle, now), 0);
        assert_eq!(target_count(&comp(2, 0, 1), &idle, now), 2);
        let not_yet = Demand {
            last_activity_ms: now - 9_000,
            concurrency_6s: 0.0,
            concurrency_60s: 0.0,
            instances: 1,
            ..Default::default()
        };
        assert_eq!(target_count(&comp(0, 0, 1), &not_yet, now), 1);
    }

    proptest! {
        #[test]
        fn targets_respect_limits_and_never_strand_requests(
            min in 0i64..3, max in 0i64..6, conc in 1i64..5,
            instances in 0usize..8, inflight in 0usize..20, queued in 0usize..20,
            c6 in 0.0f64..30.0, c60 in 0.0f64..30.0, idle_for in 0i64..30_000,
            saturated: bool, since in proptest::option::of(0u64..200),
        ) {
            let max = if max > 0 && max < min { min } else { max };
            let c = comp(min, max, conc);
            let now = 1_000_000;
            let d = Demand {
                instances, inflight, queued, concurrency_6s: c6, concurrency_60s: c60,
                last_activity_ms: now - idle_for, saturated,
                since_scale_up: since.map(Duration::from_secs),
            };
            let t = target_count(&c, &d, now);
            if max > 0 { prop_assert!(t <= max as usize); }
            prop_assert!(t >= min as usize);
            if inflight + queued > 0 { prop_assert!(t >= 1); }
            let idle = inflight + queued == 0 && idle_for > 10_000;
            if idle { prop_assert_eq!(t, min as usize); }
            if !idle && t < instances && (max == 0 || max as usize >= instances) {
                prop_assert!(t >= instances - instances / 2);
            }
        }
    }
}
