//! One converger per component on this node: it starts and stops containers until the node
//! runs the target count of the component's current version (spec §12.1–§12.5). Targets come
//! from `StartStopComponents`; a component put makes it replace old versions (a rolling
//! restart in the component's `restartorder`), a removal stops everything, and container
//! deaths, failed health checks and image updates make it re-plan.

use crate::containers::{LocalContainer, short};
use crate::node::Node;
use maelstromd_api::model::{Component, ComponentStatus, RestartOrder, StartParallelism};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, watch};

/// Grace between SIGTERM and SIGKILL when stopping a container.
const STOP_GRACE: Duration = Duration::from_secs(60);

struct Target {
    count: usize,
    requested: u64,
}

/// See the module documentation.
pub struct Converger {
    component: String,
    target: Mutex<Target>,
    /// (generation finished, its result)
    done: watch::Sender<(u64, Result<(), String>)>,
    wake: Notify,
    /// Consecutive container deaths or failed starts, for the restart back-off.
    failures: Mutex<u32>,
}

/// Every converger of this node.
#[derive(Default)]
pub struct Convergers {
    map: Mutex<HashMap<String, Arc<Converger>>>,
}

impl Convergers {
    fn get(&self, component: &str) -> Option<Arc<Converger>> {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(component)
            .cloned()
    }

    /// The converger of `component`, started on first use.
    pub fn get_or_start(&self, node: &Arc<Node>, component: &str) -> Arc<Converger> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = map.get(component) {
            return c.clone();
        }
        let conv = Arc::new(Converger {
            component: component.to_string(),
            target: Mutex::new(Target {
                count: 0,
                requested: 0,
            }),
            done: watch::channel((0, Ok(()))).0,
            wake: Notify::new(),
            failures: Mutex::new(0),
        });
        map.insert(component.to_string(), conv.clone());
        tokio::spawn(run(node.clone(), conv.clone()));
        conv
    }

    /// The target count of `component` (0 when it has no converger).
    pub fn target(&self, component: &str) -> usize {
        self.get(component)
            .map(|c| c.target.lock().unwrap_or_else(|p| p.into_inner()).count)
            .unwrap_or(0)
    }

    /// Components with a converger.
    pub fn components(&self) -> Vec<String> {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// Asks `component`'s converger to re-plan (a container died, a health check failed, the
    /// component changed).
    pub fn wake(&self, component: &str) {
        if let Some(c) = self.get(component) {
            c.bump(None);
        }
    }

    /// Counts a failure toward the back-off of `component`'s restarts.
    pub fn note_failure(&self, component: &str) {
        if let Some(c) = self.get(component) {
            *c.failures.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        }
    }

    /// A container of `component` has stayed healthy for a while: restarts need no back-off.
    pub fn note_stable(&self, component: &str) {
        if let Some(c) = self.get(component) {
            *c.failures.lock().unwrap_or_else(|p| p.into_inner()) = 0;
        }
    }
}

impl Converger {
    /// Sets the target count (or keeps it with `None`) and wakes the task; answers the
    /// generation to wait for.
    fn bump(&self, count: Option<usize>) -> u64 {
        let mut t = self.target.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = count {
            t.count = n;
        }
        t.requested += 1;
        self.wake.notify_one();
        t.requested
    }

    /// Sets the target count; answers the generation to wait for.
    pub fn set_target(&self, count: usize) -> u64 {
        self.bump(Some(count))
    }

    /// Waits until generation `generation` has been converged; answers its result.
    pub async fn wait(&self, generation: u64) -> Result<(), String> {
        let mut rx = self.done.subscribe();
        loop {
            {
                let v = rx.borrow_and_update();
                if v.0 >= generation {
                    return v.1.clone();
                }
            }
            if rx.changed().await.is_err() {
                return Err("the node is shutting down".into());
            }
        }
    }
}

/// Answers every waiter with an error when the converger's task ends, however it ends
/// (shutdown, or a panic), so no `StartStopComponents` call waits forever.
struct Exit(Arc<Converger>);

impl Drop for Exit {
    fn drop(&mut self) {
        let _ = self
            .0
            .done
            .send_replace((u64::MAX, Err("the converger stopped".into())));
    }
}

async fn run(node: Arc<Node>, conv: Arc<Converger>) {
    let _exit = Exit(conv.clone());
    let mut retry_after: Option<Duration> = None;
    loop {
        let tick = retry_after.unwrap_or(Duration::from_secs(60));
        tokio::select! {
            _ = conv.wake.notified() => {}
            _ = tokio::time::sleep(tick) => {}
            _ = node.finished.cancelled() => return,
        }
        let (count, generation) = {
            let t = conv.target.lock().unwrap_or_else(|p| p.into_inner());
            (t.count, t.requested)
        };
        let result = converge_once(&node, &conv, count).await;
        retry_after = match &result {
            Ok(()) => None,
            Err(e) => {
                tracing::warn!(component = %conv.component, error = %e, "converging failed");
                conv.backoff()
            }
        };
        let _ = conv.done.send_replace((generation, result));
    }
}

impl Converger {
    /// The wait before the next start: none without failures, then 1, 2, 4 … 60 s.
    fn backoff(&self) -> Option<Duration> {
        let n = *self.failures.lock().unwrap_or_else(|p| p.into_inner());
        (n > 0).then(|| Duration::from_secs(1u64 << (n - 1).min(6)).min(Duration::from_secs(60)))
    }
}

enum Step {
    Stop(Arc<LocalContainer>, String),
    Start,
}

/// One plan: stop what must go, start what is missing, in the component's restart order.
async fn converge_once(node: &Arc<Node>, conv: &Converger, count: usize) -> Result<(), String> {
    let component = node
        .catalog
        .component_fresh(&conv.component)
        .await
        .map_err(|e| format!("cannot read the component: {e}"))?;
    let (version, count) = match &component {
        Some(c) => (c.version, count),
        None => {
            // Removed: nothing of it may run here any more.
            conv.target.lock().unwrap_or_else(|p| p.into_inner()).count = 0;
            (-1, 0)
        }
    };
    let mut stops = Vec::new();
    let mut keep = Vec::new();
    for c in node.containers.of(&conv.component) {
        if c.status() == ComponentStatus::Stopping {
            continue;
        }
        if let Some(reason) = c.termination() {
            stops.push(Step::Stop(c, reason));
        } else if c.version != version {
            stops.push(Step::Stop(c, "component version changed".into()));
        } else {
            keep.push(c);
        }
    }
    // Scale down by stopping the least recently used containers first.
    keep.sort_by_key(|c| std::cmp::Reverse(c.last_request_ms()));
    while keep.len() > count {
        let c = keep.pop().expect("non-empty");
        stops.push(Step::Stop(c, "scale down".into()));
    }
    let starts = count.saturating_sub(keep.len());
    if stops.is_empty() && starts == 0 {
        return Ok(());
    }
    let component = component.unwrap_or_default();
    let order = component.restart_order.unwrap_or_default();
    let mut plan = Vec::new();
    let (mut stops, mut starts_left) = (stops.into_iter(), starts);
    let mut stop_turn = order == RestartOrder::Stopstart;
    loop {
        let step = if stop_turn {
            stops.next().or_else(|| {
                (starts_left > 0).then(|| {
                    starts_left -= 1;
                    Step::Start
                })
            })
        } else if starts_left > 0 {
            starts_left -= 1;
            Some(Step::Start)
        } else {
            stops.next()
        };
        match step {
            Some(s) => plan.push(s),
            None => break,
        }
        stop_turn = !stop_turn;
    }
    if starts > 0 {
        // Restarts after deaths or failed starts back off, 1 s doubling to 60 s (spec §12.1).
        if let Some(delay) = conv.backoff() {
            tracing::info!(component = %conv.component, secs = delay.as_secs(), "backing off before starting");
            tokio::time::sleep(delay).await;
        }
        if let Err(e) = pull_if_needed(node, &component).await {
            give_up_starts(node, conv);
            return Err(e);
        }
    }
    for step in plan {
        match step {
            Step::Stop(c, reason) => stop_container(node, &c, &reason).await,
            Step::Start => {
                if let Err(e) = start_container(node, &component).await {
                    give_up_starts(node, conv);
                    return Err(e);
                }
            }
        }
    }
    Ok(())
}

/// A start failed: count it for the back-off and lower the target to what runs, so that the
/// node does not report a start that will not happen. Whoever needs the instance (a cold
/// start, the autoscaler for `mininstances`) asks again.
fn give_up_starts(node: &Node, conv: &Converger) {
    *conv.failures.lock().unwrap_or_else(|p| p.into_inner()) += 1;
    let running = node
        .containers
        .of(&conv.component)
        .iter()
        .filter(|c| c.status() != ComponentStatus::Stopping)
        .count();
    conv.target.lock().unwrap_or_else(|p| p.into_inner()).count = running;
}

/// Pulls the image when the pull policy says so (spec §12.6): always with
/// `pullimageonstart`, when the image is absent, and once per component version with
/// `pullimageonput`. A failed pull fails the start, unless the image is present anyway.
pub async fn pull_if_needed(node: &Arc<Node>, component: &Component) -> Result<(), String> {
    let d = component.docker();
    let present = node
        .engine
        .image_present(&d.image)
        .await
        .map_err(|e| e.to_string())?;
    let version = (component.name.clone(), component.version);
    let pulled_for_put = node
        .pulled_versions
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .contains(&version);
    let wanted = !present || d.pull_image_on_start || (d.pull_image_on_put && !pulled_for_put);
    if !wanted {
        return Ok(());
    }
    let result = pull(node, component, present).await;
    if result.is_ok() {
        node.pulled_versions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(version);
    }
    result
}

async fn pull(node: &Arc<Node>, component: &Component, present: bool) -> Result<(), String> {
    let d = component.docker();
    if !d.pull_command.is_empty() {
        let cmd = d.pull_command.replace("<image>", &d.image);
        let parts: Vec<&str> = cmd.split_whitespace().collect();
        let Some((program, args)) = parts.split_first() else {
            return Err("pullcommand is empty".into());
        };
        let mut command = tokio::process::Command::new(program);
        command.args(args);
        // A cold start on a proxy worker runs this on the worker's pinned thread.
        crate::gateway::affinity::unpin_child(&mut command);
        let out = command
            .output()
            .await
            .map_err(|e| format!("pullcommand '{cmd}' could not run: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "pullcommand '{cmd}' failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        return Ok(());
    }
    match node
        .engine
        .pull(&d.image, &d.pull_username, &d.pull_password)
        .await
    {
        Ok(()) => Ok(()),
        Err(e) if present => {
            tracing::warn!(image = %d.image, error = %e, "pullimageonstart: pull failed; using the local image");
            Ok(())
        }
        Err(e) => Err(format!(
            "image {} is not on this node and could not be pulled: {e}",
            d.image
        )),
    }
}

/// The container environment (spec §2.2): the `MAELSTROM_*` variables, then the component's
/// own, minus any that would override them.
pub fn container_env(node: &Node, component: &Component) -> Vec<String> {
    let mut env = vec![
        format!("MAELSTROM_PRIVATE_URL={}", node.container_private_url),
        format!("MAELSTROM_COMPONENT_NAME={}", component.name),
        format!("MAELSTROM_COMPONENT_VERSION={}", component.version),
        format!("MAELSTROM_PROJECT_NAME={}", component.project_name),
    ];
    for nv in &component.environment {
        if !nv.name.starts_with("MAELSTROM_") {
            env.push(format!("{}={}", nv.name, nv.value));
        }
    }
    env
}

/// Starts one container and waits for its health check; on success it serves requests.
async fn start_container(node: &Arc<Node>, component: &Component) -> Result<(), String> {
    let d = component.docker();
    let window = Duration::from_secs(d.start_health_check_seconds().unwrap_or(60));
    let series = match component.start_parallelism.unwrap_or_default() {
        StartParallelism::Parallel => false,
        StartParallelism::Series => true,
        StartParallelism::Seriesfirst => {
            node.db
                .component_start_count(&component.name, component.version)
                .await
                .map_err(|e| e.to_string())?
                == 0
        }
    };
    let lock_role = format!("start_container_{}", component.name);
    if series {
        node.db
            .acquire_role_waiting(
                &lock_role,
                &node.id,
                window + Duration::from_secs(1),
                Duration::from_secs(5),
                window.saturating_mul(3),
            )
            .await?;
    }
    let result = start_and_check(node, component, window).await;
    if series {
        let _ = node.db.release_role(&lock_role, &node.id).await;
    }
    result
}

async fn start_and_check(
    node: &Arc<Node>,
    component: &Component,
    window: Duration,
) -> Result<(), String> {
    let began = Instant::now();
    let id = node
        .engine
        .create_and_start(component, container_env(node, component))
        .await
        .map_err(|e| format!("container start failed: {e}"))?;
    let target = loop {
        match node.engine.target_address(&id, component).await {
            Ok(Some(t)) => break t,
            Ok(None) if began.elapsed() < window => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Ok(None) => {
                node.engine.force_remove(&id).await;
                return Err("the container never got an address to proxy to".into());
            }
            Err(e) => {
                let logs = tail_logs(node, &id).await;
                node.engine.force_remove(&id).await;
                return Err(format!("{e}{logs}"));
            }
        }
    };
    let c = LocalContainer::new(
        &id,
        component,
        &target,
        ComponentStatus::Starting,
        maelstromd_api::now_ms(),
    );
    node.containers.insert(c.clone());
    node.status_changed();
    if let Err(e) = wait_healthy(&c, component, window, || node.containers.get(&id).is_some()).await
    {
        let logs = tail_logs(node, &id).await;
        node.containers.remove(&id);
        node.engine.force_remove(&id).await;
        node.status_changed();
        return Err(format!("{e}{logs}"));
    }
    c.set_status(ComponentStatus::Active);
    // Logged before the container takes requests, so the line precedes anything it serves.
    tracing::info!(component = %component.name, container = %short(&id), target = %target,
        secs = format!("{:.2}", began.elapsed().as_secs_f64()), "container started and healthy");
    node.router(&component.name).await.add_local(
        c.clone(),
        component.max_concurrency() as usize,
        !component.soft_concurrency_limit,
    );
    if let Err(e) = node
        .db
        .record_component_start(&component.name, component.version)
        .await
    {
        tracing::warn!(error = %e, "componentstart bookkeeping failed");
    }
    node.status_changed();
    spawn_health_monitor(node, c, component.clone());
    Ok(())
}

async fn tail_logs(node: &Node, id: &str) -> String {
    use futures_util::StreamExt;
    let mut out = String::new();
    let opts = bollard::query_parameters::LogsOptionsBuilder::default()
        .stdout(true)
        .stderr(true)
        .tail("5")
        .build();
    let mut s = node.engine.docker().logs(id, Some(opts));
    while let Ok(Some(Ok(chunk))) = tokio::time::timeout(Duration::from_secs(2), s.next()).await {
        out.push_str(&chunk.to_string());
    }
    let out = out.trim();
    if out.is_empty() {
        String::new()
    } else {
        format!("; its last output: {out}")
    }
}

/// Polls the health-check path every 50 ms until it answers 200 or `window` passes (spec
/// §12.4), and gives up at once when `alive` says the container is gone; a component whose
/// start check is disabled passes at once.
pub async fn wait_healthy(
    c: &LocalContainer,
    component: &Component,
    window: Duration,
    alive: impl Fn() -> bool,
) -> Result<(), String> {
    let d = component.docker();
    if d.start_health_check_seconds().is_none() {
        return Ok(());
    }
    let deadline = Instant::now() + window;
    let mut last = String::from("no answer");
    while Instant::now() < deadline {
        if !alive() {
            return Err("the container exited before its health check passed".into());
        }
        let path = d.health_check_path();
        match crate::gateway::proxy::get_status(&c.upstream, path, Duration::from_secs(2)).await {
            Ok(200) => return Ok(()),
            Ok(code) => last = format!("HTTP {code}"),
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!(
        "health check never passed: GET {} gave {last} for {} s",
        d.health_check_path(),
        window.as_secs()
    ))
}

/// Checks a running container every `httphealthcheckseconds`; after
/// `httphealthcheckmaxfailures` failures in a row it runs `healthcheckfailedcommand` inside
/// it, waits 2 s and has the converger replace it.
pub fn spawn_health_monitor(node: &Arc<Node>, c: Arc<LocalContainer>, component: Component) {
    let node = node.clone();
    tokio::spawn(async move {
        let d = component.docker().into_owned();
        let period = Duration::from_secs(d.health_check_seconds());
        let mut failures = 0;
        let mut stable = false;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                _ = node.finished.cancelled() => return,
            }
            if node.containers.get(&c.id).is_none() || c.status() == ComponentStatus::Stopping {
                return;
            }
            let path = d.health_check_path();
            match crate::gateway::proxy::get_status(&c.upstream, path, Duration::from_secs(15))
                .await
            {
                Ok(200) => {
                    failures = 0;
                    if !stable && maelstromd_api::now_ms() - c.started_at > 60_000 {
                        stable = true;
                        node.convergers.note_stable(&c.component);
                    }
                    continue;
                }
                other => {
                    failures += 1;
                    tracing::warn!(component = %c.component, container = %short(&c.id), failures,
                        result = ?other, "health check failed");
                }
            }
            if failures >= d.health_check_max_failures() {
                if !d.health_check_failed_command.is_empty() {
                    match node
                        .engine
                        .exec(&c.id, &d.health_check_failed_command)
                        .await
                    {
                        Ok(out) => {
                            tracing::info!(container = %short(&c.id), output = %out.trim(), "healthcheckfailedcommand ran")
                        }
                        Err(e) => {
                            tracing::warn!(container = %short(&c.id), error = %e, "healthcheckfailedcommand failed")
                        }
                    }
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
                c.terminate("health check failed");
                node.convergers.wake(&c.component);
                return;
            }
        }
    });
}

/// Drains and stops one container (spec §12.5): no new requests, in-flight ones finish
/// (at most 60 s), then SIGTERM with a 60 s grace, then removal.
pub async fn stop_container(node: &Arc<Node>, c: &Arc<LocalContainer>, reason: &str) {
    c.set_status(ComponentStatus::Stopping);
    node.router(&c.component).await.remove_local(&c.id);
    node.status_changed();
    tracing::info!(component = %c.component, container = %short(&c.id), reason, "stopping container");
    let _ = tokio::time::timeout(Duration::from_secs(60), c.drained()).await;
    node.engine.stop_and_remove(&c.id, STOP_GRACE).await;
    node.containers.remove(&c.id);
    node.status_changed();
}

/// A container died outside our control: forget it and let its converger replace it.
pub async fn container_died(node: &Arc<Node>, id: &str) {
    let Some(c) = node.containers.get(id) else {
        return;
    };
    if c.status() == ComponentStatus::Stopping {
        return;
    }
    tracing::warn!(component = %c.component, container = %short(id), "container died; replacing it");
    node.containers.remove(id);
    node.router(&c.component).await.remove_local(id);
    node.engine.force_remove(id).await;
    node.convergers.note_failure(&c.component);
    node.convergers.wake(&c.component);
    node.status_changed();
}

/// An image was re-tagged: containers of components using it restart (spec §12.1).
pub async fn image_tagged(node: &Arc<Node>, reference: &str) {
    for c in node.containers.all() {
        let Ok(Some(component)) = node.catalog.component(&c.component).await else {
            continue;
        };
        if crate::docker::normalise_image(&component.docker().image) == reference
            && c.status() != ComponentStatus::Stopping
        {
            c.terminate("docker image updated");
            node.convergers.wake(&c.component);
        }
    }
}
