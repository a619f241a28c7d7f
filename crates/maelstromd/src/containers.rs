//! This node's containers: each one's state, in-flight count and activity buckets
//! (spec §12.8), the registry the rest of the node reads them from, and adoption of the
//! containers a previous run of this node left running (spec §3.d).

use crate::gateway::upstream::Upstream;
use crate::node::Node;
use maelstromd_api::model::{Component, ComponentActivity, ComponentInfo, ComponentStatus};
use maelstromd_api::now_ms;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Length of one activity bucket.
pub const BUCKET: Duration = Duration::from_secs(20);
const BUCKETS_KEPT: usize = 10;

/// The closed buckets; the open bucket's counters are atomics on the container, so the
/// request path takes no lock for them.
struct Activity {
    buckets: VecDeque<ComponentActivity>,
    bucket_started: Instant,
}

struct Mutable {
    status: ComponentStatus,
    /// Why the converger should replace it (health check failed, image updated, …).
    termination: Option<String>,
    activity: Activity,
}

/// One running container of this node.
pub struct LocalContainer {
    /// Docker container id.
    pub id: String,
    /// Full component name.
    pub component: String,
    /// Component version it runs.
    pub version: i64,
    /// Its concurrency limit.
    pub max_concurrency: usize,
    /// Memory reserved for it, MiB.
    pub memory_mib: i64,
    /// Start time, epoch ms.
    pub started_at: i64,
    /// Pooled keep-alive connections to it, an idle list per proxy worker.
    pub upstream: Arc<Upstream>,
    state: Mutex<Mutable>,
    inflight: AtomicUsize,
    idle: Notify,
    last_request_ms: AtomicI64,
    total_requests: AtomicI64,
    bucket_requests: AtomicI64,
    bucket_busy_us: AtomicU64,
}

impl LocalContainer {
    /// A container record; `status` is `starting` until its health check passes.
    pub fn new(
        id: &str,
        component: &Component,
        target: &str,
        status: ComponentStatus,
        last_request_ms: i64,
    ) -> Arc<LocalContainer> {
        let max_concurrency = component.max_concurrency() as usize;
        Arc::new(LocalContainer {
            id: id.to_string(),
            component: component.name.clone(),
            version: component.version,
            max_concurrency,
            memory_mib: component.docker().reserve_memory_mib(),
            started_at: now_ms(),
            upstream: Arc::new(Upstream::new(&format!("http://{target}"), max_concurrency)),
            state: Mutex::new(Mutable {
                status,
                termination: None,
                activity: Activity {
                    buckets: VecDeque::new(),
                    bucket_started: Instant::now(),
                },
            }),
            inflight: AtomicUsize::new(0),
            idle: Notify::new(),
            last_request_ms: AtomicI64::new(last_request_ms),
            total_requests: AtomicI64::new(0),
            bucket_requests: AtomicI64::new(0),
            bucket_busy_us: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Mutable> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A record with no engine behind it, for unit tests of routing.
    #[cfg(test)]
    pub fn for_tests(id: &str, component: &str, max_concurrency: i64) -> Arc<LocalContainer> {
        let c = Component {
            name: component.into(),
            max_concurrency,
            ..Default::default()
        };
        LocalContainer::new(id, &c, "127.0.0.1:9", ComponentStatus::Active, 0)
    }

    /// A request was admitted to it at `now_ms`.
    pub fn begin_request(&self, now_ms: i64) {
        self.inflight.fetch_add(1, Ordering::SeqCst);
        self.last_request_ms.fetch_max(now_ms, Ordering::Relaxed);
    }

    /// A request ended after `(duration, at epoch ms)`; `None` when it never started.
    pub fn end_request(&self, finished: Option<(Duration, i64)>) {
        if let Some((d, at_ms)) = finished {
            self.total_requests.fetch_add(1, Ordering::Relaxed);
            self.bucket_requests.fetch_add(1, Ordering::Relaxed);
            self.bucket_busy_us
                .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
            self.last_request_ms.fetch_max(at_ms, Ordering::Relaxed);
        }
        if self.inflight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle.notify_waiters();
        }
    }

    /// Requests in flight.
    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::SeqCst)
    }

    /// Waits until nothing is in flight.
    pub async fn drained(&self) {
        loop {
            let notified = self.idle.notified();
            if self.inflight() == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Current state.
    pub fn status(&self) -> ComponentStatus {
        self.lock().status
    }

    /// Changes state.
    pub fn set_status(&self, status: ComponentStatus) {
        self.lock().status = status;
    }

    /// Asks the converger to replace it, for `reason`.
    pub fn terminate(&self, reason: &str) {
        let mut st = self.lock();
        if st.termination.is_none() {
            st.termination = Some(reason.to_string());
        }
    }

    /// Why it should be replaced, if it should.
    pub fn termination(&self) -> Option<String> {
        self.lock().termination.clone()
    }

    /// Newest request, epoch ms.
    pub fn last_request_ms(&self) -> i64 {
        self.last_request_ms.load(Ordering::Relaxed)
    }

    /// Closes the current 20-second bucket (called every [`BUCKET`]).
    pub fn rotate_activity(&self) {
        let mut st = self.lock();
        let a = &mut st.activity;
        let secs = a.bucket_started.elapsed().as_secs_f64().max(1e-3);
        let requests = self.bucket_requests.swap(0, Ordering::Relaxed);
        let busy = self.bucket_busy_us.swap(0, Ordering::Relaxed) as f64 / 1e6;
        a.buckets.push_front(ComponentActivity {
            requests,
            concurrency: busy / secs,
        });
        a.buckets.truncate(BUCKETS_KEPT);
        a.bucket_started = Instant::now();
    }

    /// The status entry of this container.
    pub fn info(&self) -> ComponentInfo {
        let st = self.lock();
        ComponentInfo {
            component_name: self.component.clone(),
            component_version: self.version,
            status: st.status,
            max_concurrency: self.max_concurrency as i64,
            memory_reserved_mib: self.memory_mib,
            start_time: self.started_at,
            last_request_time: self.last_request_ms.load(Ordering::Relaxed),
            total_requests: self.total_requests.load(Ordering::Relaxed),
            activity: st.activity.buckets.iter().cloned().collect(),
            container_id: self.id.clone(),
        }
    }
}

/// Every container of this node, by id.
#[derive(Default)]
pub struct Containers {
    map: Mutex<HashMap<String, Arc<LocalContainer>>>,
}

impl Containers {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<LocalContainer>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a container.
    pub fn insert(&self, c: Arc<LocalContainer>) {
        self.lock().insert(c.id.clone(), c);
    }

    /// Removes a container; answers it if it was there.
    pub fn remove(&self, id: &str) -> Option<Arc<LocalContainer>> {
        self.lock().remove(id)
    }

    /// One container.
    pub fn get(&self, id: &str) -> Option<Arc<LocalContainer>> {
        self.lock().get(id).cloned()
    }

    /// All containers.
    pub fn all(&self) -> Vec<Arc<LocalContainer>> {
        let mut v: Vec<_> = self.lock().values().cloned().collect();
        v.sort_by(|a, b| (&a.component, a.started_at).cmp(&(&b.component, b.started_at)));
        v
    }

    /// Containers of one component, in any state.
    pub fn of(&self, component: &str) -> Vec<Arc<LocalContainer>> {
        self.all()
            .into_iter()
            .filter(|c| c.component == component)
            .collect()
    }

    /// Status entries of all containers.
    pub fn infos(&self) -> Vec<ComponentInfo> {
        self.all().iter().map(|c| c.info()).collect()
    }
}

/// Adopts the containers a previous run of this node left: each running one whose component
/// still exists at the same version, with an address and a passing health check, becomes
/// active; every other own container is removed. Answers adopted counts per component.
pub async fn adopt(node: &Arc<Node>) -> HashMap<String, usize> {
    let mut adopted: HashMap<String, usize> = HashMap::new();
    let own = match node.engine.list_own().await {
        Ok(list) => list,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list this node's containers; none adopted");
            return adopted;
        }
    };
    for oc in own {
        let component = match node.catalog.component_fresh(&oc.component).await {
            Ok(c) => c,
            Err(e) => {
                // Without the catalog we cannot judge it; leave it for the next start.
                tracing::warn!(container = %short(&oc.id), error = %e, "cannot read its component; container left alone");
                continue;
            }
        };
        let reason = match &component {
            _ if !oc.running => Some("not running"),
            None => Some("its component was removed"),
            Some(c) if c.version != oc.version => Some("its component version changed"),
            Some(_) => None,
        };
        if let Some(reason) = reason {
            tracing::info!(container = %short(&oc.id), component = %oc.component, reason, "removing a container left by a previous run");
            node.engine.force_remove(&oc.id).await;
            continue;
        }
        let component = component.expect("checked above");
        let window = Duration::from_secs(
            component
                .docker()
                .start_health_check_seconds()
                .unwrap_or(60),
        );
        let target = match node.engine.target_address(&oc.id, &component).await {
            Ok(Some(t)) => t,
            _ => {
                node.engine.force_remove(&oc.id).await;
                continue;
            }
        };
        let c = LocalContainer::new(
            &oc.id,
            &component,
            &target,
            ComponentStatus::Starting,
            now_ms(),
        );
        if crate::converger::wait_healthy(&c, &component, window, || true)
            .await
            .is_err()
        {
            tracing::info!(container = %short(&oc.id), component = %oc.component, "left-over container failed its health check; removing");
            node.engine.force_remove(&oc.id).await;
            continue;
        }
        c.set_status(ComponentStatus::Active);
        node.containers.insert(c.clone());
        node.router(&component.name).await.add_local(
            c.clone(),
            component.max_concurrency() as usize,
            !component.soft_concurrency_limit,
        );
        crate::converger::spawn_health_monitor(node, c.clone(), component.clone());
        *adopted.entry(component.name.clone()).or_default() += 1;
        tracing::info!(container = %short(&oc.id), component = %component.name, "adopted a running container");
    }
    adopted
}

/// The first 12 characters of a container id, as `docker ps` shows it.
pub fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn activity_buckets_and_draining() {
        let c = LocalContainer::for_tests("abc", "p_c", 2);
        c.begin_request(1);
        c.begin_request(1);
        assert_eq!(c.inflight(), 2);
        c.end_request(Some((Duration::from_millis(500), 2)));
        let drained = {
            let c = c.clone();
            tokio::spawn(async move { c.drained().await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!drained.is_finished());
        c.end_request(Some((Duration::from_millis(500), 3)));
        drained.await.unwrap();
        c.rotate_activity();
        let info = c.info();
        assert_eq!(info.total_requests, 2);
        assert_eq!(info.activity.len(), 1);
        assert_eq!(info.activity[0].requests, 2);
        assert!(info.activity[0].concurrency > 0.0);
        for _ in 0..15 {
            c.rotate_activity();
        }
        assert_eq!(c.info().activity.len(), BUCKETS_KEPT);
    }
}
