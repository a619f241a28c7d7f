//! One router per component and node: admits a request to a dispenser (a local container or
//! a peer that runs the component), or queues it until one has room (spec §8.4, §8.5, §3.e).
//!
//! A request holds a [`Slot`] from admission until its response body ends; dropping the slot
//! frees the dispenser's place and hands it to the oldest queued request that may use it. The
//! queue is bounded and a cancelled request leaves it at once. The router also integrates its
//! load (local in-flight plus queued requests over time), which feeds the autoscaler.

use crate::cluster::PeerLink;
use crate::containers::LocalContainer;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

/// Where a slot sends its request.
#[derive(Clone)]
pub enum Target {
    /// A container of this node.
    Local(Arc<LocalContainer>),
    /// A peer that runs the component; it routes through its own router.
    Remote(Arc<PeerLink>),
}

impl Target {
    fn key(&self) -> &str {
        match self {
            Target::Local(c) => &c.id,
            Target::Remote(p) => &p.node_id,
        }
    }
    fn is_local(&self) -> bool {
        matches!(self, Target::Local(_))
    }
    /// The same container, or the same peer.
    fn same(&self, other: &Target) -> bool {
        self.is_local() == other.is_local() && self.key() == other.key()
    }
}

struct Dispenser {
    target: Target,
    /// Requests it may carry at once; with `hard == false` only a load measure.
    capacity: usize,
    hard: bool,
    /// Requests on it now. Each slot holds this counter, so a slot granted by a dispenser that
    /// was since removed and re-added never frees a place on the new one.
    inflight: Arc<AtomicUsize>,
}

impl Dispenser {
    fn load(&self) -> usize {
        self.inflight.load(Ordering::Relaxed)
    }
    fn has_room(&self) -> bool {
        !self.hard || self.load() < self.capacity
    }
    fn ratio(&self) -> f64 {
        self.load() as f64 / self.capacity.max(1) as f64
    }
    /// Whether requests with these constraints could ever use it (room aside).
    fn usable_by(&self, adm: &Admission) -> bool {
        match &self.target {
            Target::Local(_) => true,
            Target::Remote(p) => !adm.exclude.iter().any(|n| n == &p.node_id),
        }
    }
}

/// Constraints on where one request may go.
#[derive(Clone, Debug, Default)]
pub struct Admission {
    /// Until then only local containers may take it (relayed requests, spec §8.3).
    pub local_only_until: Option<Instant>,
    /// Nodes it must not be relayed to (already on its relay path).
    pub exclude: Vec<String>,
}

impl Admission {
    fn allows(&self, d: &Dispenser, now: Instant) -> bool {
        match &d.target {
            Target::Local(_) => true,
            Target::Remote(p) => {
                self.local_only_until.is_none_or(|t| now >= t)
                    && !self.exclude.iter().any(|n| n == &p.node_id)
            }
        }
    }
}

struct Waiter {
    id: u64,
    tx: oneshot::Sender<Result<Slot, String>>,
    admission: Admission,
}

struct State {
    dispensers: Vec<Dispenser>,
    queue: VecDeque<Waiter>,
    next_id: u64,
    max_queue: usize,
    /// A placement for this component is under way from this node.
    placing: bool,
    local_inflight: usize,
    /// Slots granted and not yet released, on any dispenser (removed ones included).
    inflight: usize,
    /// ∫ (local in-flight + queued) dt since `sample_since`, for the load signal.
    area: f64,
    area_since: Instant,
    sample_since: Instant,
    /// Exponential average of request durations, seconds, for `Retry-After`.
    avg_duration: f64,
    last_request_ms: i64,
}

impl State {
    fn integrate(&mut self, now: Instant) {
        let dt = now.duration_since(self.area_since).as_secs_f64();
        self.area += (self.local_inflight + self.queue.len()) as f64 * dt;
        self.area_since = now;
    }

    /// The dispenser with the lowest in-flight/capacity ratio that has room and that the
    /// admission allows; ties go to local containers, saving a hop.
    fn pick(&self, adm: &Admission, now: Instant) -> Option<usize> {
        let mut best: Option<(usize, f64, bool)> = None;
        for (i, d) in self.dispensers.iter().enumerate() {
            if !d.has_room() || !adm.allows(d, now) {
                continue;
            }
            let (r, local) = (d.ratio(), d.target.is_local());
            let better = match best {
                None => true,
                Some((_, br, bl)) => r < br || (r == br && local && !bl),
            };
            if better {
                best = Some((i, r, local));
            }
        }
        best.map(|b| b.0)
    }
}

/// Why a request was not admitted.
#[derive(Debug, PartialEq, Eq)]
pub enum Rejected {
    /// The queue is at its bound; retry after this many seconds.
    QueueFull {
        /// Expected wait, whole seconds, at least 1.
        retry_after: u64,
    },
    /// No container could be started for it; the text says why.
    Failed(String),
}

/// A router; see the module documentation.
pub struct Router {
    /// Full component name.
    pub component: String,
    /// The component's request metrics.
    pub metrics: Arc<crate::metrics::ComponentMetrics>,
    state: Mutex<State>,
    placement: mpsc::UnboundedSender<String>,
}

/// Counts a router reports to metrics, status and the autoscaler.
#[derive(Clone, Debug, Default)]
pub struct RouterSnapshot {
    /// Waiting requests.
    pub queued: usize,
    /// Requests on local containers.
    pub local_inflight: usize,
    /// Requests on any dispenser.
    pub inflight: usize,
    /// Local dispensers.
    pub local_dispensers: usize,
    /// All dispensers.
    pub dispensers: usize,
    /// Whether every dispenser with a hard limit is full.
    pub saturated: bool,
    /// Newest admission, epoch ms.
    pub last_request_ms: i64,
}

impl Router {
    /// A router for `component` that asks for placements on `placement`.
    pub fn new(
        component: &str,
        max_queue: usize,
        placement: mpsc::UnboundedSender<String>,
        metrics: Arc<crate::metrics::ComponentMetrics>,
    ) -> Arc<Router> {
        Arc::new(Router {
            component: component.to_string(),
            metrics,
            placement,
            state: Mutex::new(State {
                dispensers: Vec::new(),
                queue: VecDeque::new(),
                next_id: 0,
                max_queue: max_queue.max(1),
                placing: false,
                local_inflight: 0,
                inflight: 0,
                area: 0.0,
                area_since: Instant::now(),
                sample_since: Instant::now(),
                avg_duration: 0.1,
                last_request_ms: 0,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the state half-changed in a way that
        // matters more than stopping all routing, so poisoning is ignored.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the queue bound (`maxqueuedrequests` or the node default).
    pub fn set_max_queue(&self, max: usize) {
        self.lock().max_queue = max.max(1);
    }

    /// Admits a request: at once when a dispenser has room, else after waiting in the queue.
    /// Dropping the future (client gone, deadline passed) leaves the queue.
    pub async fn acquire(self: &Arc<Self>, adm: Admission) -> Result<Slot, Rejected> {
        let now = Instant::now();
        let (id, rx, ask_placement) = {
            let mut st = self.lock();
            st.last_request_ms = crate::epoch_ms_at(now);
            if let Some(i) = st.pick(&adm, now) {
                return Ok(self.grant(&mut st, i, now));
            }
            if st.queue.len() >= st.max_queue {
                let capacity: usize = st.dispensers.iter().map(|d| d.capacity).sum();
                let wait = st.queue.len() as f64 * st.avg_duration / capacity.max(1) as f64;
                return Err(Rejected::QueueFull {
                    retry_after: (wait.ceil() as u64).max(1),
                });
            }
            st.integrate(now);
            let (tx, rx) = oneshot::channel();
            let id = st.next_id;
            st.next_id += 1;
            st.queue.push_back(Waiter {
                id,
                tx,
                admission: adm.clone(),
            });
            // No dispenser this request could ever use: a placement must find one.
            let ask = !st.placing && !st.dispensers.iter().any(|d| d.usable_by(&adm));
            if ask {
                st.placing = true;
            }
            (id, rx, ask)
        };
        if ask_placement {
            let _ = self.placement.send(self.component.clone());
        }
        let guard = QueueGuard {
            router: self.clone(),
            id,
        };
        let mut rx = rx;
        if let Some(until) = adm.local_only_until.filter(|t| *t > now) {
            tokio::select! {
                slot = &mut rx => {
                    drop(guard);
                    return flatten(slot);
                }
                _ = tokio::time::sleep_until(until.into()) => {
                    self.relax(id);
                }
            }
        }
        let slot = rx.await;
        drop(guard);
        flatten(slot)
    }

    fn grant(self: &Arc<Self>, st: &mut State, i: usize, now: Instant) -> Slot {
        st.integrate(now);
        let d = &st.dispensers[i];
        d.inflight.fetch_add(1, Ordering::Relaxed);
        let (target, counter) = (d.target.clone(), d.inflight.clone());
        st.inflight += 1;
        if let Target::Local(c) = &target {
            c.begin_request(crate::epoch_ms_at(now));
            st.local_inflight += 1;
        }
        Slot {
            router: self.clone(),
            target,
            counter,
            started: now,
            armed: true,
        }
    }

    /// A relayed request's local-only window ended: let remote dispensers take it.
    fn relax(self: &Arc<Self>, id: u64) {
        let mut st = self.lock();
        if let Some(w) = st.queue.iter_mut().find(|w| w.id == id) {
            w.admission.local_only_until = None;
        }
        self.dispatch(&mut st);
    }

    /// Hands free places to queued requests, oldest first.
    fn dispatch(self: &Arc<Self>, st: &mut State) {
        let now = Instant::now();
        let mut i = 0;
        while i < st.queue.len() {
            let Some(d) = st.pick(&st.queue[i].admission, now) else {
                i += 1;
                continue;
            };
            let waiter = st.queue.remove(i).expect("index in range");
            let slot = self.grant(st, d, now);
            if let Err(Ok(mut slot)) = waiter.tx.send(Ok(slot)) {
                // The request went away between queueing and now: undo in place (the lock
                // is held, so the slot must not release itself).
                slot.armed = false;
                self.undo(st, &slot);
            }
        }
    }

    fn undo(&self, st: &mut State, slot: &Slot) {
        st.integrate(Instant::now());
        slot.counter.fetch_sub(1, Ordering::Relaxed);
        st.inflight = st.inflight.saturating_sub(1);
        if let Target::Local(c) = &slot.target {
            st.local_inflight = st.local_inflight.saturating_sub(1);
            c.end_request(None);
        }
    }

    fn release(self: &Arc<Self>, slot: &Slot) {
        let now = Instant::now();
        let elapsed = now.duration_since(slot.started);
        let mut st = self.lock();
        st.avg_duration = 0.9 * st.avg_duration + 0.1 * elapsed.as_secs_f64();
        st.integrate(now);
        slot.counter.fetch_sub(1, Ordering::Relaxed);
        st.inflight = st.inflight.saturating_sub(1);
        if let Target::Local(c) = &slot.target {
            st.local_inflight = st.local_inflight.saturating_sub(1);
            c.end_request(Some((elapsed, crate::epoch_ms_at(now))));
        }
        self.dispatch(&mut st);
    }

    /// Adds a dispenser for `target`, or updates its room: `capacity` requests at once, a
    /// hard limit unless `softconcurrencylimit`. Waiting requests are dispatched to it.
    fn upsert(self: &Arc<Self>, target: Target, capacity: usize, hard: bool) {
        let mut st = self.lock();
        match st.dispensers.iter_mut().find(|d| d.target.same(&target)) {
            Some(d) => {
                d.capacity = capacity;
                d.hard = hard;
                d.target = target;
            }
            None => st.dispensers.push(Dispenser {
                target,
                capacity,
                hard,
                inflight: Arc::new(AtomicUsize::new(0)),
            }),
        }
        st.placing = false;
        self.dispatch(&mut st);
    }

    /// Adds or updates a local container's dispenser.
    pub fn add_local(self: &Arc<Self>, c: Arc<LocalContainer>, capacity: usize, hard: bool) {
        self.upsert(Target::Local(c), capacity, hard);
    }

    /// Sets the dispenser for a peer: room for `capacity` requests (its active instances ×
    /// their maxconcurrency).
    pub fn set_remote(self: &Arc<Self>, peer: &Arc<PeerLink>, capacity: usize, hard: bool) {
        self.upsert(Target::Remote(peer.clone()), capacity, hard);
    }

    /// Removes a local container's dispenser (stopping or gone); its in-flight requests finish.
    pub fn remove_local(&self, container_id: &str) {
        self.remove(|t| t.is_local() && t.key() == container_id);
    }

    /// Removes a peer's dispenser (it stopped the component or left the cluster).
    pub fn remove_remote(&self, node_id: &str) {
        self.remove(|t| !t.is_local() && t.key() == node_id);
    }

    /// Removes dispensers; when the waiting requests are left with none they could use, asks
    /// for a placement (the router is pending again, spec §8.4).
    fn remove(&self, gone: impl Fn(&Target) -> bool) {
        let mut st = self.lock();
        st.dispensers.retain(|d| !gone(&d.target));
        let stranded = st
            .queue
            .iter()
            .any(|w| !st.dispensers.iter().any(|d| d.usable_by(&w.admission)));
        if stranded && !st.placing {
            st.placing = true;
            let _ = self.placement.send(self.component.clone());
        }
    }

    /// Node ids of peers with a dispenser here.
    pub fn remote_peers(&self) -> Vec<String> {
        self.lock()
            .dispensers
            .iter()
            .filter(|d| !d.target.is_local())
            .map(|d| d.target.key().to_string())
            .collect()
    }

    /// Marks the end of a placement attempt; answers whether requests still wait with no
    /// dispenser (so the caller should try again).
    pub fn placement_finished(&self) -> bool {
        let mut st = self.lock();
        let again = st
            .queue
            .iter()
            .any(|w| !st.dispensers.iter().any(|d| d.usable_by(&w.admission)));
        st.placing = again;
        again
    }

    /// Answers every queued request with `message` when no dispenser exists (a placement
    /// failed for a reason that waiting will not fix, such as a missing image).
    pub fn fail_waiters(&self, message: &str) {
        let mut st = self.lock();
        if !st.dispensers.is_empty() {
            return;
        }
        st.integrate(Instant::now());
        for w in st.queue.drain(..) {
            let _ = w.tx.send(Err(message.to_string()));
        }
        st.placing = false;
    }

    /// Current counts.
    pub fn snapshot(&self) -> RouterSnapshot {
        let st = self.lock();
        RouterSnapshot {
            queued: st.queue.len(),
            local_inflight: st.local_inflight,
            inflight: st.inflight,
            local_dispensers: st.dispensers.iter().filter(|d| d.target.is_local()).count(),
            dispensers: st.dispensers.len(),
            saturated: !st.dispensers.is_empty() && st.dispensers.iter().all(|d| !d.has_room()),
            last_request_ms: st.last_request_ms,
        }
    }

    /// The time-weighted mean of local in-flight plus queued requests since the previous call.
    pub fn take_load_sample(&self) -> f64 {
        let mut st = self.lock();
        st.integrate(Instant::now());
        let elapsed = st.area_since.duration_since(st.sample_since).as_secs_f64();
        let mean = if elapsed > 0.0 {
            st.area / elapsed
        } else {
            0.0
        };
        st.area = 0.0;
        st.sample_since = st.area_since;
        mean
    }
}

fn flatten(r: Result<Result<Slot, String>, oneshot::error::RecvError>) -> Result<Slot, Rejected> {
    match r {
        Ok(Ok(slot)) => Ok(slot),
        Ok(Err(msg)) => Err(Rejected::Failed(msg)),
        // The sender lives in the queue entry, which only the guard removes.
        Err(_) => Err(Rejected::Failed("the request left the queue".into())),
    }
}

/// Removes a cancelled request from the queue.
struct QueueGuard {
    router: Arc<Router>,
    id: u64,
}

impl Drop for QueueGuard {
    fn drop(&mut self) {
        let mut st = self.router.lock();
        if let Some(pos) = st.queue.iter().position(|w| w.id == self.id) {
            st.integrate(Instant::now());
            st.queue.remove(pos);
        }
    }
}

/// A place on a dispenser, held until the response ends.
pub struct Slot {
    router: Arc<Router>,
    target: Target,
    counter: Arc<AtomicUsize>,
    started: Instant,
    armed: bool,
}

impl Slot {
    /// Where to send the request.
    pub fn target(&self) -> &Target {
        &self.target
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.armed {
            self.router.release(self);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn container(id: &str) -> Arc<LocalContainer> {
        LocalContainer::for_tests(id, "p_c", 1)
    }

    fn router(max_queue: usize) -> (Arc<Router>, mpsc::UnboundedReceiver<String>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let metrics = crate::metrics::Metrics::new().component("p_c");
        (Router::new("p_c", max_queue, tx, metrics), rx)
    }

    #[tokio::test]
    async fn a_request_with_no_dispenser_queues_and_asks_for_one_placement() {
        let (r, mut placements) = router(10);
        let r2 = r.clone();
        let first = tokio::spawn(async move { r2.acquire(Admission::default()).await });
        let r3 = r.clone();
        let second = tokio::spawn(async move { r3.acquire(Admission::default()).await });
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(placements.recv().await.as_deref(), Some("p_c"));
        assert!(
            placements.try_recv().is_err(),
            "one placement for two requests"
        );
        assert_eq!(r.snapshot().queued, 2);
        r.add_local(container("a"), 1, true);
        let s1 = first.await.unwrap().unwrap();
        assert_eq!(r.snapshot().queued, 1, "capacity 1: the second still waits");
        drop(s1);
        let s2 = second.await.unwrap().unwrap();
        assert!(matches!(s2.target(), Target::Local(c) if c.id == "a"));
    }

    #[tokio::test]
    async fn a_full_queue_rejects_and_a_cancelled_request_leaves_the_queue() {
        let (r, _p) = router(1);
        r.add_local(container("a"), 1, true);
        let busy = r.acquire(Admission::default()).await.unwrap();
        let r2 = r.clone();
        let waiting = tokio::spawn(async move { r2.acquire(Admission::default()).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(r.snapshot().queued, 1);
        assert!(matches!(
            r.acquire(Admission::default()).await,
            Err(Rejected::QueueFull { retry_after }) if retry_after >= 1
        ));
        waiting.abort();
        let _ = waiting.await;
        assert_eq!(r.snapshot().queued, 0);
        drop(busy);
        assert_eq!(r.snapshot().inflight, 0);
        let again = r.acquire(Admission::default()).await.unwrap();
        drop(again);
    }

    #[tokio::test]
    async fn the_least_loaded_dispenser_wins_and_ties_go_local() {
        let (r, _p) = router(10);
        let peer = PeerLink::for_tests("n2");
        r.set_remote(&peer, 2, true);
        r.add_local(container("a"), 2, true);
        let s1 = r.acquire(Admission::default()).await.unwrap();
        assert!(s1.target().is_local(), "tie at 0/2: local first");
        let s2 = r.acquire(Admission::default()).await.unwrap();
        assert!(!s2.target().is_local(), "local at 1/2, remote at 0/2");
        // A relayed request never goes back to a node on its path.
        let adm = Admission {
            local_only_until: None,
            exclude: vec!["n2".into()],
        };
        let s3 = r.acquire(adm).await.unwrap();
        assert!(s3.target().is_local());
        drop((s1, s2, s3));
        assert_eq!(r.snapshot().inflight, 0);
    }

    #[tokio::test]
    async fn relayed_requests_wait_for_local_containers_first() {
        let (r, _p) = router(10);
        let peer = PeerLink::for_tests("n2");
        r.set_remote(&peer, 5, true);
        let adm = Admission {
            local_only_until: Some(Instant::now() + Duration::from_millis(100)),
            exclude: vec![],
        };
        let started = Instant::now();
        let slot = r.acquire(adm).await.unwrap();
        assert!(started.elapsed() >= Duration::from_millis(90));
        assert!(!slot.target().is_local());
    }

    #[tokio::test]
    async fn losing_the_last_dispenser_with_requests_waiting_asks_for_a_placement() {
        let (r, mut placements) = router(10);
        let peer = PeerLink::for_tests("n2");
        r.set_remote(&peer, 1, true);
        let busy = r.acquire(Admission::default()).await.unwrap();
        let r2 = r.clone();
        let waiting = tokio::spawn(async move { r2.acquire(Admission::default()).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            placements.try_recv().is_err(),
            "a dispenser exists: no placement yet"
        );
        r.remove_remote("n2");
        assert_eq!(placements.recv().await.as_deref(), Some("p_c"));
        r.add_local(container("a"), 1, true);
        assert!(waiting.await.unwrap().is_ok());
        drop(busy);
    }

    #[tokio::test]
    async fn a_slot_of_a_removed_dispenser_never_frees_a_place_on_its_successor() {
        let (r, _p) = router(10);
        let peer = PeerLink::for_tests("n2");
        r.set_remote(&peer, 1, true);
        let old = r.acquire(Admission::default()).await.unwrap();
        r.remove_remote("n2");
        r.set_remote(&peer, 1, true);
        let fresh = r.acquire(Admission::default()).await.unwrap();
        drop(old);
        // The successor is still full: a third request must wait.
        let third =
            tokio::time::timeout(Duration::from_millis(50), r.acquire(Admission::default())).await;
        assert!(third.is_err(), "capacity 1 holds after the old slot ended");
        drop(fresh);
        assert_eq!(r.snapshot().inflight, 0);
    }

    #[tokio::test]
    async fn soft_limits_never_queue() {
        let (r, _p) = router(10);
        r.add_local(container("a"), 1, false);
        let slots: Vec<_> =
            futures_util::future::join_all((0..5).map(|_| r.acquire(Admission::default()))).await;
        assert!(slots.iter().all(|s| s.is_ok()));
        assert_eq!(r.snapshot().local_inflight, 5);
    }
}
