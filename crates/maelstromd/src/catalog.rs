//! The node's cached view of the catalog: the sorted HTTP routes and components, each at most
//! one second old (spec §8.1) and dropped at once by a data-change notification. The request
//! path reads only this cache.
//!
//! An entry past half its life is re-read in the background while it is still served, so
//! under steady traffic no request waits for the database. Only an entry past its whole life
//! (or never read) is read by a request, and then one read of it at a time: the others wait
//! for that read instead of each sending the same query (SQLite has one connection, so 64
//! requests finding the same component stale at once queued 64 reads behind each other, and
//! every second their requests stalled for tens of milliseconds).
//!
//! The request path reads through a copy per thread ([`Catalog::with_routes`],
//! [`Catalog::with_component`]) holding the same entries with the same read times: reading
//! the shared cache takes a lock and clones reference counts, and two proxy workers doing that
//! on every request write to the same cache lines (about 1.5 µs of CPU per request on two
//! cores, scripts/bench-maelstromd).

use crate::db::Db;
use crate::gateway::resolve::{Route, sort_routes};
use maelstromd_api::model::Component;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

const MAX_AGE: Duration = Duration::from_secs(1);
/// Age from which an entry is re-read in the background while it is still served.
const REFRESH_AFTER: Duration = Duration::from_millis(500);

/// A component (or its absence) and when it was read.
type Cached = (Instant, Option<Arc<Component>>);
/// The routes and when they were read.
type Routes = (Instant, Arc<Vec<Route>>);

/// See the module documentation.
pub struct Catalog {
    shared: Arc<Shared>,
}

/// The cache itself, shared with its background reads.
struct Shared {
    db: Db,
    routes: RwLock<Option<Routes>>,
    /// Held while the routes are read from the database: one read at a time.
    routes_reading: tokio::sync::Mutex<()>,
    /// A background read of the routes is under way.
    routes_refreshing: AtomicBool,
    components: RwLock<HashMap<String, Cached>>,
    /// Per component name, held while it is read from the database: one read of a name at a
    /// time, and reads of different names (PostgreSQL has several connections) in parallel.
    /// A name's entry goes when its last reader is done.
    component_turns: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Components being re-read in the background.
    components_refreshing: Mutex<HashSet<String>>,
    /// Database reads made, for tests.
    #[cfg(test)]
    reads: std::sync::atomic::AtomicUsize,
    /// Bumped by [`Catalog::invalidate`], so the per-thread copies drop too, and a read that
    /// an invalidation overtook is not kept.
    generation: AtomicU64,
    /// Tells this catalog's per-thread copies from another's (tests run several nodes in
    /// one process).
    id: u64,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// This thread's copies; see the module documentation.
    static LOCAL: RefCell<Local> = RefCell::new(Local::default());
}

#[derive(Default)]
struct Local {
    /// The catalog and generation the copies were taken from.
    source: (u64, u64),
    routes: Option<Routes>,
    components: HashMap<String, Cached>,
}

impl Local {
    /// This thread's copies of `catalog`, emptied when they came from another catalog or
    /// before an invalidation.
    fn of(&mut self, catalog: &Shared) -> &mut Local {
        let source = (catalog.id, catalog.generation.load(Ordering::Acquire));
        if self.source != source {
            *self = Local {
                source,
                ..Local::default()
            };
        }
        self
    }
}

/// Whether an entry read at `at` may still be served at `now`.
fn valid(at: Instant, now: Instant) -> bool {
    now.saturating_duration_since(at) < MAX_AGE
}

/// Whether an entry read at `at` is young enough that nobody needs to re-read it yet.
fn fresh(at: Instant, now: Instant) -> bool {
    now.saturating_duration_since(at) < REFRESH_AFTER
}

impl Catalog {
    /// An empty cache over `db`.
    pub fn new(db: Db) -> Catalog {
        Catalog {
            shared: Arc::new(Shared {
                db,
                routes: RwLock::new(None),
                routes_reading: tokio::sync::Mutex::new(()),
                routes_refreshing: AtomicBool::new(false),
                components: RwLock::new(HashMap::new()),
                component_turns: Mutex::new(HashMap::new()),
                components_refreshing: Mutex::new(HashSet::new()),
                generation: AtomicU64::new(0),
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                #[cfg(test)]
                reads: std::sync::atomic::AtomicUsize::new(0),
            }),
        }
    }

    /// Forgets everything (a component or event source changed).
    pub fn invalidate(&self) {
        let s = &self.shared;
        // The generation moves while both caches are locked: a request that sees the new
        // generation can no longer find an entry read before it, and a read that began
        // before it is not stored.
        let mut routes = s.routes.write().unwrap_or_else(|p| p.into_inner());
        let mut components = s.components.write().unwrap_or_else(|p| p.into_inner());
        s.generation.fetch_add(1, Ordering::AcqRel);
        *routes = None;
        components.clear();
    }

    /// Calls `f` with the enabled HTTP routes in match order, at most a second older than
    /// `now` (the caller's clock reading, so the request path reads the clock once), from
    /// this thread's copy while it is fresh.
    pub async fn with_routes<R>(
        &self,
        now: Instant,
        f: impl FnOnce(&[Route]) -> R,
    ) -> Result<R, crate::db::DbError> {
        let s = &self.shared;
        let f = match LOCAL.with_borrow_mut(|l| match &l.of(s).routes {
            Some((at, routes)) if fresh(*at, now) => Ok(f(routes)),
            _ => Err(f),
        }) {
            Ok(r) => return Ok(r),
            Err(f) => f,
        };
        let generation = s.generation.load(Ordering::Acquire);
        let (at, routes) = s.routes_entry(now).await?;
        let r = f(&routes);
        LOCAL.with_borrow_mut(|l| {
            let l = l.of(s);
            if l.source.1 == generation {
                l.routes = Some((at, routes));
            }
        });
        Ok(r)
    }

    /// Calls `f` with [`Catalog::component`] as of `now`, from this thread's copy while it
    /// is fresh.
    pub async fn with_component<R>(
        &self,
        name: &str,
        now: Instant,
        f: impl FnOnce(Option<&Component>) -> R,
    ) -> Result<R, crate::db::DbError> {
        let s = &self.shared;
        let f = match LOCAL.with_borrow_mut(|l| match l.of(s).components.get(name) {
            Some((at, c)) if fresh(*at, now) => Ok(f(c.as_deref())),
            _ => Err(f),
        }) {
            Ok(r) => return Ok(r),
            Err(f) => f,
        };
        let generation = s.generation.load(Ordering::Acquire);
        let entry = s.component_entry(name, now).await?;
        let r = f(entry.1.as_deref());
        // Only components that exist are copied: names sent by clients that match nothing
        // would otherwise pile up in every thread.
        if entry.1.is_some() {
            LOCAL.with_borrow_mut(|l| {
                let l = l.of(s);
                if l.source.1 == generation {
                    l.components.insert(name.to_string(), entry);
                }
            });
        }
        Ok(r)
    }

    /// A component, from the cache when fresh; `Ok(None)` when it does not exist.
    pub async fn component(
        &self,
        name: &str,
    ) -> Result<Option<Arc<Component>>, crate::db::DbError> {
        Ok(self.shared.component_entry(name, Instant::now()).await?.1)
    }

    /// A component read from the database now. A database error is an error, never "absent":
    /// callers must not mistake an outage for a removal.
    pub async fn component_fresh(
        &self,
        name: &str,
    ) -> Result<Option<Component>, crate::db::DbError> {
        self.shared.db.get_component(name).await
    }
}

/// A background read under way. Its mark is cleared however the read ends (done, failed,
/// panicked, or dropped with its runtime), so it never blocks later background reads.
struct Refresh {
    shared: Arc<Shared>,
    /// `None` for the routes.
    component: Option<String>,
}

impl Drop for Refresh {
    fn drop(&mut self) {
        match &self.component {
            None => self
                .shared
                .routes_refreshing
                .store(false, Ordering::Release),
            Some(name) => {
                self.shared
                    .components_refreshing
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(name);
            }
        }
    }
}

impl Shared {
    fn shared_routes(&self) -> Option<Routes> {
        self.routes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn shared_component(&self, name: &str) -> Option<Cached> {
        self.components
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// The routes as of `now`: the cached entry while it is valid (starting a background
    /// read once it is past [`REFRESH_AFTER`]), else a read shared with every request that
    /// waits for it.
    async fn routes_entry(self: &Arc<Self>, now: Instant) -> Result<Routes, crate::db::DbError> {
        match self.shared_routes() {
            Some(entry) if valid(entry.0, now) => {
                // Loaded before swapped: while a read is under way, requests only load it.
                if !fresh(entry.0, now)
                    && !self.routes_refreshing.load(Ordering::Acquire)
                    && !self.routes_refreshing.swap(true, Ordering::AcqRel)
                {
                    let refresh = Refresh {
                        shared: self.clone(),
                        component: None,
                    };
                    tokio::spawn(async move {
                        let shared = &refresh.shared;
                        if let Err(e) = shared
                            .read_routes_in_turn(|at| fresh(at, Instant::now()))
                            .await
                        {
                            tracing::warn!(error = %e, "cannot re-read the routes; requests read them when they expire");
                        }
                    });
                }
                Ok(entry)
            }
            _ => self.read_routes_in_turn(|at| valid(at, now)).await,
        }
    }

    /// Reads the routes in their turn, unless the entry cached by then (read while this
    /// waited) is `enough`.
    async fn read_routes_in_turn(
        &self,
        enough: impl Fn(Instant) -> bool,
    ) -> Result<Routes, crate::db::DbError> {
        let _turn = self.routes_reading.lock().await;
        match self.shared_routes() {
            Some(entry) if enough(entry.0) => Ok(entry),
            _ => self.read_routes().await,
        }
    }

    /// Reads the routes from the database and caches them, unless an invalidation came
    /// meanwhile (the read may have missed that change; the next request reads again).
    async fn read_routes(&self) -> Result<Routes, crate::db::DbError> {
        #[cfg(test)]
        self.reads.fetch_add(1, Ordering::Relaxed);
        let generation = self.generation.load(Ordering::Acquire);
        let at = Instant::now();
        let mut routes: Vec<Route> = self
            .db
            .enabled_event_sources("http")
            .await?
            .iter()
            .filter_map(Route::from_event_source)
            .collect();
        sort_routes(&mut routes);
        let entry = (at, Arc::new(routes));
        let mut cached = self.routes.write().unwrap_or_else(|p| p.into_inner());
        if self.generation.load(Ordering::Acquire) == generation {
            *cached = Some(entry.clone());
        }
        Ok(entry)
    }

    /// A component (or its absence) as of `now`, the same way as [`Shared::routes_entry`].
    async fn component_entry(
        self: &Arc<Self>,
        name: &str,
        now: Instant,
    ) -> Result<Cached, crate::db::DbError> {
        let Some(entry) = self.shared_component(name).filter(|e| valid(e.0, now)) else {
            return self.read_component_in_turn(name, |at| valid(at, now)).await;
        };
        let start_read = !fresh(entry.0, now) && {
            let mut refreshing = self
                .components_refreshing
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            !refreshing.contains(name) && refreshing.insert(name.to_string())
        };
        if start_read {
            let refresh = Refresh {
                shared: self.clone(),
                component: Some(name.to_string()),
            };
            tokio::spawn(async move {
                let (shared, name) = (
                    &refresh.shared,
                    refresh.component.as_deref().unwrap_or_default(),
                );
                if let Err(e) = shared
                    .read_component_in_turn(name, |at| fresh(at, Instant::now()))
                    .await
                {
                    tracing::warn!(component = %name, error = %e, "cannot re-read the component; requests read it when it expires");
                }
            });
        }
        Ok(entry)
    }

    /// Reads component `name` in its turn, unless the entry cached by then (read while
    /// this waited) is `enough`.
    async fn read_component_in_turn(
        &self,
        name: &str,
        enough: impl Fn(Instant) -> bool,
    ) -> Result<Cached, crate::db::DbError> {
        let turn = self
            .component_turns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name.to_string())
            .or_default()
            .clone();
        let result = {
            let _turn = turn.lock().await;
            match self.shared_component(name) {
                Some(entry) if enough(entry.0) => Ok(entry),
                _ => self.read_component(name).await,
            }
        };
        // Counted and dropped under the map's lock, so of two last readers one removes it.
        let mut turns = self
            .component_turns
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if Arc::strong_count(&turn) == 2 {
            turns.remove(name);
        }
        drop(turn);
        result
    }

    /// Reads a component from the database and caches it (its absence too), unless an
    /// invalidation came meanwhile.
    async fn read_component(&self, name: &str) -> Result<Cached, crate::db::DbError> {
        #[cfg(test)]
        self.reads.fetch_add(1, Ordering::Relaxed);
        let generation = self.generation.load(Ordering::Acquire);
        let at = Instant::now();
        let entry = (at, self.db.get_component(name).await?.map(Arc::new));
        let mut cached = self.components.write().unwrap_or_else(|p| p.into_inner());
        if self.generation.load(Ordering::Acquire) == generation {
            cached.insert(name.to_string(), entry.clone());
        }
        Ok(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Database;
    use maelstromd_api::model::{EventSource, HttpEventSource};

    async fn database(dir: &tempfile::TempDir) -> Db {
        let db = Db::connect(&Database::Sqlite(dir.path().join("maelstrom.db")))
            .await
            .unwrap();
        db.migrate().await.unwrap();
        db
    }

    async fn add_route(db: &Db, host: &str) {
        let es = EventSource {
            name: format!("es_{host}"),
            component_name: "p_c".into(),
            project_name: "p".into(),
            http: Some(HttpEventSource {
                hostname: host.into(),
                ..HttpEventSource::default()
            }),
            ..EventSource::default()
        };
        db.insert_event_source(&es, true).await.unwrap();
    }

    fn hosts(routes: &[Route]) -> Vec<String> {
        let mut h: Vec<String> = routes.iter().map(|r| r.hostname.clone()).collect();
        h.sort();
        h
    }

    /// Calls `read` until it answers `want`, for up to five seconds.
    async fn eventually<T: PartialEq + std::fmt::Debug, F: Future<Output = T>>(
        want: T,
        mut read: impl FnMut() -> F,
    ) {
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            let got = read().await;
            if got == want {
                return;
            }
            assert!(Instant::now() < until, "still {got:?}, want {want:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn routes_past_half_their_life_are_read_again_in_the_background_and_waiting_readers_share_a_read()
     {
        let dir = tempfile::tempdir().unwrap();
        let db = database(&dir).await;
        add_route(&db, "a.test").await;
        let catalog = Catalog::new(db.clone());
        assert_eq!(
            catalog.with_routes(Instant::now(), hosts).await.unwrap(),
            ["a.test"]
        );
        // A change that no notification announces: only a read finds it.
        let read = Instant::now();
        add_route(&db, "b.test").await;

        // Past half its life the entry is still served as it is, with no read in the way...
        let later = read + REFRESH_AFTER + Duration::from_millis(50);
        assert_eq!(catalog.with_routes(later, hosts).await.unwrap(), ["a.test"]);
        // ...and the background read replaces it, well before it expires.
        eventually(vec!["a.test".to_string(), "b.test".into()], || async {
            catalog.with_routes(later, hosts).await.unwrap()
        })
        .await;

        // An expired entry is never served: the request reads.
        add_route(&db, "c.test").await;
        let expired = Instant::now() + MAX_AGE + Duration::from_millis(50);
        assert_eq!(
            catalog.with_routes(expired, hosts).await.unwrap(),
            ["a.test", "b.test", "c.test"]
        );

        // Requests that find no routes at once (after a change notice) share one read.
        add_route(&db, "d.test").await;
        catalog.invalidate();
        let before = catalog.shared.reads.load(Ordering::Relaxed);
        let now = Instant::now();
        let all =
            futures_util::future::join_all((0..64).map(|_| catalog.with_routes(now, hosts))).await;
        assert!(
            all.iter()
                .all(|r| r.as_ref().unwrap() == &["a.test", "b.test", "c.test", "d.test"]),
            "{all:?}"
        );
        assert_eq!(catalog.shared.reads.load(Ordering::Relaxed) - before, 1);
    }

    #[tokio::test]
    async fn components_past_half_their_life_are_read_again_and_waiting_readers_share_a_read() {
        let dir = tempfile::tempdir().unwrap();
        let db = database(&dir).await;
        let c = db
            .insert_component(&Component {
                name: "p_c".into(),
                project_name: "p".into(),
                ..Component::default()
            })
            .await
            .unwrap();
        let catalog = Catalog::new(db.clone());
        let version = |now| {
            let catalog = &catalog;
            async move {
                catalog
                    .with_component("p_c", now, |c| c.map(|c| c.version))
                    .await
                    .unwrap()
            }
        };
        assert_eq!(version(Instant::now()).await, Some(1));
        let read = Instant::now();
        db.update_component(&c).await.unwrap();

        let later = read + REFRESH_AFTER + Duration::from_millis(50);
        assert_eq!(version(later).await, Some(1));
        eventually(Some(2), || version(later)).await;

        // Requests that find no entry at once (after a change notice) share one read.
        db.update_component(&Component { version: 2, ..c })
            .await
            .unwrap();
        catalog.invalidate();
        let before = catalog.shared.reads.load(Ordering::Relaxed);
        let now = Instant::now();
        let all = futures_util::future::join_all((0..64).map(|_| version(now))).await;
        assert!(all.iter().all(|v| *v == Some(3)), "{all:?}");
        assert_eq!(catalog.shared.reads.load(Ordering::Relaxed) - before, 1);
    }
}
