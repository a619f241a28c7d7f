//! Cold-start placement (spec §9.3–§9.5): the holder of the cluster-wide `placement` role
//! picks the node with room for a component that runs nowhere, has it start one container,
//! and answers that node; other nodes delegate to the holder. The node ranking and the
//! eviction choice are pure functions shared with the autoscaler.

use crate::db::LockOutcome;
use crate::node::Node;
use maelstromd_api::model::{Component, ComponentInfo, ComponentStatus, NodeStatus};
use maelstromd_api::rpc::*;
use rand::Rng;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const ROLE: &str = "placement";

/// Where a component runs, starting it on the best node when it runs nowhere.
pub async fn place_component(node: &Arc<Node>, name: &str) -> Result<NodeStatus, RpcError> {
    let limit = Instant::now() + Duration::from_secs(70);
    loop {
        let outcome = node
            .acquire_role(ROLE, Duration::from_secs(60))
            .await
            .map_err(RpcError::from)?;
        match outcome {
            LockOutcome::Acquired => {
                node.metrics.role_held(ROLE, true);
                let result = place_as_holder(node, name).await;
                if node.placements_in_progress() == 0 {
                    let _ = node.db.release_role(ROLE, &node.id).await;
                    node.metrics.role_held(ROLE, false);
                }
                return result;
            }
            LockOutcome::HeldBy(holder) => {
                if let Some(link) = node.cluster.link(&holder) {
                    let input = PlaceComponentInput {
                        component_name: name.to_string(),
                    };
                    let client = link.rpc.clone().with_timeout(Duration::from_secs(200));
                    match client
                        .call::<_, PlaceComponentOutput>("NodeService.PlaceComponent", &input)
                        .await
                    {
                        Ok(out) => {
                            node.cluster.accept(&node.id, out.node.clone());
                            crate::cluster::sync_dispensers(node).await;
                            return Ok(out.node);
                        }
                        Err(e) => {
                            tracing::warn!(holder = %holder, error = %e, "delegated placement failed")
                        }
                    }
                }
            }
        }
        if Instant::now() >= limit {
            return Err(RpcError::database(
                "nodesvc: timeout trying to acquire or delegate placement",
            ));
        }
        let ms = rand::thread_rng().gen_range(2000..5000);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

async fn place_as_holder(node: &Arc<Node>, name: &str) -> Result<NodeStatus, RpcError> {
    // Concurrent calls for one component wait for each other; the later ones then find it
    // running and answer at once.
    let gate = node.placement_gate(name);
    let _turn = gate.lock().await;
    let _busy = node.placement_started();
    let component = node
        .catalog
        .component_fresh(name)
        .await?
        .ok_or_else(|| RpcError::not_found(format!("No Component found with name: {name}")))?;
    let required = component.docker().reserve_memory_mib();
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut last_error = String::new();
    while Instant::now() < deadline {
        // Hold the lease for as long as this placement runs (it may outlast one TTL).
        if let LockOutcome::HeldBy(other) = node.acquire_role(ROLE, Duration::from_secs(60)).await?
        {
            return Err(RpcError::misc(format!(
                "placement of {name}: the placement role moved to node {other}"
            )));
        }
        // The view may lag a broadcast, or name a node that died: decide on statuses asked
        // now, from the peers that answered.
        let mut statuses = vec![node.status().await];
        statuses.extend(refresh_peers(node).await);
        if let Some(s) = statuses.iter().find(|s| runs(s, name)) {
            return Ok(s.clone());
        }
        if node.draining() {
            statuses.retain(|s| s.node_id != node.id);
        }
        if !statuses.iter().any(|s| s.total_memory_mib > required) {
            return Err(RpcError::misc(format!(
                "no node has more than {required} MiB of memory for {name} (reservememory); lower reservememory or add memory"
            )));
        }
        let limits = node.component_limits(&statuses).await;
        let Some(option) = best_start_option(&statuses, &component, &limits, true) else {
            last_error =
                format!("no node has {required} MiB free for {name}, even after evictions");
            let ms = rand::thread_rng().gen_range(0..3000);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            continue;
        };
        let target = statuses
            .iter()
            .find(|s| s.node_id == option.node_id)
            .expect("option names a listed node");
        let mut counts = vec![ComponentTarget {
            component_name: name.to_string(),
            required_memory_mib: required,
            target_count: target.instances_of(name) as i64 + 1,
        }];
        for (victim, count) in &option.evictions {
            counts.push(ComponentTarget {
                component_name: victim.clone(),
                required_memory_mib: 0,
                target_count: *count as i64,
            });
        }
        let input = StartStopComponentsInput {
            client_node_id: node.id.clone(),
            target_version: target.version,
            target_counts: counts,
            return_status: true,
            block: true,
        };
        let out = match start_stop(node, &option.node_id, input).await {
            Ok(out) => out,
            Err(e) => {
                last_error = e.to_string();
                let ms = rand::thread_rng().gen_range(0..3000);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                continue;
            }
        };
        if let Some(status) = &out.target_status {
            node.cluster.accept(&node.id, status.clone());
        }
        if out.target_version_mismatch {
            continue;
        }
        if !out.errors.is_empty() {
            // A start that failed (missing image, failing health check) will fail again the
            // same way: report it rather than retrying for minutes.
            return Err(RpcError::misc(format!(
                "component {name} could not start on node {}: {}",
                option.node_id,
                out.errors.join("; ")
            )));
        }
        // Wait for the node to report the component.
        let window = Duration::from_secs(
            component
                .docker()
                .start_health_check_seconds()
                .unwrap_or(60),
        );
        let until = Instant::now() + window;
        loop {
            if let Some(s) = fresh_status(node, &option.node_id).await
                && runs(&s, name)
            {
                crate::cluster::sync_dispensers(node).await;
                return Ok(s);
            }
            if Instant::now() >= until {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        last_error = format!("node {} never reported {name} running", option.node_id);
    }
    Err(RpcError::misc(format!(
        "placement of {name} failed: {last_error}"
    )))
}

fn runs(s: &NodeStatus, name: &str) -> bool {
    s.running_components
        .iter()
        .any(|c| c.component_name == name && c.status != ComponentStatus::Stopping)
}

/// Asks every peer for its status now (2 s limit each), takes the answers into the view and
/// answers them.
async fn refresh_peers(node: &Arc<Node>) -> Vec<NodeStatus> {
    let asks = node.cluster.links().into_iter().map(|link| async move {
        let client = link.rpc.clone().with_timeout(Duration::from_secs(2));
        client
            .call::<_, GetStatusOutput>("NodeService.GetStatus", &serde_json::json!({}))
            .await
            .ok()
            .map(|o| o.status)
    });
    let answers: Vec<NodeStatus> = futures_util::future::join_all(asks)
        .await
        .into_iter()
        .flatten()
        .collect();
    for status in &answers {
        node.cluster.accept(&node.id, status.clone());
    }
    answers
}

/// A node's status, asked now (this node's computed locally).
pub async fn fresh_status(node: &Arc<Node>, node_id: &str) -> Option<NodeStatus> {
    if node_id == node.id {
        return Some(node.status().await);
    }
    let link = node.cluster.link(node_id)?;
    let out: GetStatusOutput = link
        .rpc
        .call("NodeService.GetStatus", &serde_json::json!({}))
        .await
        .ok()?;
    node.cluster.accept(&node.id, out.status.clone());
    Some(out.status)
}

/// `StartStopComponents` on `node_id`: in-process for this node, over RPC for a peer.
pub async fn start_stop(
    node: &Arc<Node>,
    node_id: &str,
    input: StartStopComponentsInput,
) -> Result<StartStopComponentsOutput, RpcError> {
    if node_id == node.id {
        return crate::rpc::node::start_stop_components(node, input).await;
    }
    let link = node
        .cluster
        .link(node_id)
        .ok_or_else(|| RpcError::misc(format!("node {node_id} is not in the cluster view")))?;
    let client = link.rpc.clone().with_timeout(Duration::from_secs(200));
    client
        .call("NodeService.StartStopComponents", &input)
        .await
        .map_err(|e| match e.rpc() {
            Some(r) => r.clone(),
            None => RpcError::misc(e.to_string()),
        })
}

/// What placement needs to know of every component that runs somewhere.
#[derive(Clone, Debug, Default)]
pub struct Limits {
    /// `mininstances` by component.
    pub min_instances: HashMap<String, usize>,
    /// Components with requests queued anywhere.
    pub queued: HashMap<String, usize>,
}

/// A chosen node and the containers it must stop to make room: `(component, count left on
/// that node)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartOption {
    /// The node.
    pub node_id: String,
    /// Evictions, as new target counts.
    pub evictions: Vec<(String, usize)>,
}

fn live(s: &NodeStatus) -> impl Iterator<Item = &ComponentInfo> {
    s.running_components
        .iter()
        .filter(|c| c.status != ComponentStatus::Stopping)
}

/// The best node to start one more instance of `component` on (spec §9.4): below
/// `maxinstancespernode`, enough total memory, enough available memory (with evictions when
/// `allow_evict`); ranked by fewest instances of the component, fewest evictions, at most one
/// container before more, then lower load.
pub fn best_start_option(
    statuses: &[NodeStatus],
    component: &Component,
    limits: &Limits,
    allow_evict: bool,
) -> Option<StartOption> {
    let required = component.docker().reserve_memory_mib();
    let mut cluster_counts: HashMap<&str, usize> = HashMap::new();
    for s in statuses {
        for c in live(s) {
            *cluster_counts.entry(c.component_name.as_str()).or_default() += 1;
        }
    }
    let mut best: Option<((usize, usize, usize, i64), StartOption)> = None;
    for s in statuses {
        let mine = s.instances_of(&component.name);
        if component.max_instances_per_node > 0 && mine as i64 >= component.max_instances_per_node {
            continue;
        }
        if s.total_memory_mib < required {
            continue;
        }
        let reserved: i64 = live(s).map(|c| c.memory_reserved_mib).sum();
        let mut available = s.total_memory_mib - reserved;
        let mut evictions: Vec<(String, usize)> = Vec::new();
        if available < required {
            if !allow_evict {
                continue;
            }
            // Candidates: other components' containers, most cluster instances first, then
            // least recently used; never below mininstances, never the last instance of a
            // component with queued requests.
            let mut candidates: Vec<&ComponentInfo> = live(s)
                .filter(|c| c.component_name != component.name)
                .collect();
            candidates.sort_by(|a, b| {
                let ca = cluster_counts
                    .get(a.component_name.as_str())
                    .copied()
                    .unwrap_or(0);
                let cb = cluster_counts
                    .get(b.component_name.as_str())
                    .copied()
                    .unwrap_or(0);
                cb.cmp(&ca)
                    .then(a.last_request_time.cmp(&b.last_request_time))
            });
            let mut removed: HashMap<&str, usize> = HashMap::new();
            for c in candidates {
                if available >= required {
                    break;
                }
                let name = c.component_name.as_str();
                let total = cluster_counts.get(name).copied().unwrap_or(0);
                let gone = removed.get(name).copied().unwrap_or(0);
                let left = total - gone - 1;
                let min = limits.min_instances.get(name).copied().unwrap_or(0);
                if left < min || (left == 0 && limits.queued.get(name).copied().unwrap_or(0) > 0) {
                    continue;
                }
                *removed.entry(name).or_default() += 1;
                available += c.memory_reserved_mib;
            }
            if available < required {
                continue;
            }
            let mut names: Vec<&&str> = removed.keys().collect();
            names.sort();
            for name in names {
                let on_node = live(s).filter(|c| c.component_name == **name).count();
                evictions.push((name.to_string(), on_node - removed[*name]));
            }
        }
        let evicted: usize = evictions
            .iter()
            .map(|(n, left)| live(s).filter(|c| &c.component_name == n).count() - left)
            .sum();
        let crowded = usize::from(live(s).count() > 1);
        let key = (mine, evicted, crowded, (s.load_avg1m * 1000.0) as i64);
        if best.as_ref().is_none_or(|(k, _)| key < *k) {
            best = Some((
                key,
                StartOption {
                    node_id: s.node_id.clone(),
                    evictions,
                },
            ));
        }
    }
    best.map(|b| b.1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use maelstromd_api::model::DockerComponent;
    use proptest::prelude::*;

    fn comp(name: &str, mib: i64) -> Component {
        Component {
            name: name.into(),
            max_concurrency: 1,
            docker: Some(DockerComponent {
                image: "x".into(),
                reserve_memory_mib: mib,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn info(name: &str, mib: i64, last: i64) -> ComponentInfo {
        ComponentInfo {
            component_name: name.into(),
            memory_reserved_mib: mib,
            last_request_time: last,
            ..Default::default()
        }
    }

    fn node(id: &str, total: i64, load: f64, running: Vec<ComponentInfo>) -> NodeStatus {
        NodeStatus {
            node_id: id.into(),
            total_memory_mib: total,
            load_avg1m: load,
            running_components: running,
            ..Default::default()
        }
    }

    #[test]
    fn fewest_instances_then_least_crowded_then_load() {
        let c = comp("web", 128);
        let limits = Limits::default();
        let statuses = vec![
            node("a", 1000, 0.1, vec![info("web", 128, 0)]),
            node("b", 1000, 0.9, vec![info("x", 128, 0), info("y", 128, 0)]),
            node("c", 1000, 0.5, vec![]),
        ];
        assert_eq!(
            best_start_option(&statuses, &c, &limits, false)
                .unwrap()
                .node_id,
            "c"
        );
        let statuses = vec![
            node("b", 1000, 0.9, vec![info("x", 128, 0), info("y", 128, 0)]),
            node("d", 1000, 0.2, vec![info("x", 128, 0), info("z", 128, 0)]),
        ];
        assert_eq!(
            best_start_option(&statuses, &c, &limits, false)
                .unwrap()
                .node_id,
            "d"
        );
    }

    #[test]
    fn eviction_takes_the_most_replicated_then_least_recent_and_respects_minimums() {
        let c = comp("web", 256);
        let statuses = vec![
            node(
                "a",
                512,
                0.0,
                vec![info("old", 256, 1), info("busy", 256, 9)],
            ),
            node("b", 2000, 0.0, vec![info("busy", 256, 9)]),
        ];
        let mut limits = Limits::default();
        // With room on b, nothing is evicted.
        let o = best_start_option(&statuses, &c, &limits, true).unwrap();
        assert_eq!(o.node_id, "b");
        assert!(o.evictions.is_empty());
        // Only a: "busy" has two instances in the cluster, so it goes first.
        let only_a = vec![statuses[0].clone(), node("b", 100, 0.0, vec![])];
        let mut all = only_a.clone();
        all[1] = node("b", 100, 0.0, vec![info("busy", 50, 9)]);
        let o = best_start_option(&all, &c, &limits, true).unwrap();
        assert_eq!(
            o,
            StartOption {
                node_id: "a".into(),
                evictions: vec![("busy".into(), 0)]
            }
        );
        // mininstances 2 protects it; the least recently used other goes instead.
        limits.min_instances.insert("busy".into(), 2);
        let o = best_start_option(&all, &c, &limits, true).unwrap();
        assert_eq!(o.evictions, vec![("old".into(), 0)]);
        // Without eviction there is no room.
        assert!(best_start_option(&only_a, &c, &limits, false).is_none());
    }

    #[test]
    fn per_node_limits_and_total_memory() {
        let mut c = comp("web", 128);
        c.max_instances_per_node = 1;
        let statuses = vec![
            node("a", 1000, 0.0, vec![info("web", 128, 0)]),
            node("b", 100, 0.0, vec![]),
        ];
        assert!(best_start_option(&statuses, &c, &Limits::default(), true).is_none());
    }

    proptest! {
        /// Any option chosen fits: total memory, available memory after its evictions, the
        /// per-node cap, and minimum instance counts of evicted components.
        #[test]
        fn chosen_options_always_fit(
            nodes in proptest::collection::vec(
                (200i64..2000, proptest::collection::vec((0usize..4, 64i64..512), 0..6)), 1..5),
            required in 64i64..512,
            per_node in 0i64..3,
            mins in proptest::collection::vec(0usize..3, 4),
        ) {
            let names = ["a", "b", "c", "web"];
            let statuses: Vec<NodeStatus> = nodes.iter().enumerate().map(|(i, (total, cs))| {
                node(&format!("n{i}"), *total, 0.0,
                     cs.iter().map(|(n, m)| info(names[*n], *m, 0)).collect())
            }).collect();
            let mut c = comp("web", required);
            c.max_instances_per_node = per_node;
            let mut limits = Limits::default();
            for (i, m) in mins.iter().enumerate() {
                limits.min_instances.insert(names[i].into(), *m);
            }
            if let Some(o) = best_start_option(&statuses, &c, &limits, true) {
                let s = statuses.iter().find(|s| s.node_id == o.node_id).unwrap();
                prop_assert!(s.total_memory_mib >= required);
                if per_node > 0 { prop_assert!((s.instances_of("web") as i64) < per_node); }
                let mut freed = 0;
                for (victim, left) in &o.evictions {
                    prop_assert!(victim != "web");
                    let mut on_node: Vec<_> = s.running_components.iter().filter(|x| &x.component_name == victim).collect();
                    prop_assert!(*left < on_node.len());
                    // The eviction names a count, not containers: at best the largest go.
                    on_node.sort_by_key(|x| std::cmp::Reverse(x.memory_reserved_mib));
                    freed += on_node.iter().take(on_node.len() - left).map(|x| x.memory_reserved_mib).sum::<i64>();
                    let cluster: usize = statuses.iter().map(|s| s.instances_of(victim)).sum();
                    let removed = on_node.len() - left;
                    prop_assert!(cluster - removed >= limits.min_instances.get(victim.as_str()).copied().unwrap_or(0));
                }
                let reserved: i64 = s.running_components.iter().map(|x| x.memory_reserved_mib).sum();
                prop_assert!(s.total_memory_mib - reserved + freed >= required);
            }
        }
    }
}
