//! The node's cached view of the catalog: the sorted HTTP routes and components, each at most
//! one second old (spec §8.1) and dropped at once by a data-change notification. The request
//! path reads only this cache; at most one request at a time refreshes it, the others keep
//! using the previous copy.

use crate::db::Db;
use crate::gateway::resolve::{Route, sort_routes};
use maelstromd_api::model::Component;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

const MAX_AGE: Duration = Duration::from_secs(1);

/// A component (or its absence) and when it was read.
type Cached = (Instant, Option<Arc<Component>>);

/// See the module documentation.
pub struct Catalog {
    db: Db,
    routes: RwLock<Option<(Instant, Arc<Vec<Route>>)>>,
    refreshing: tokio::sync::Mutex<()>,
    components: RwLock<HashMap<String, Cached>>,
}

impl Catalog {
    /// An empty cache over `db`.
    pub fn new(db: Db) -> Catalog {
        Catalog {
            db,
            routes: RwLock::new(None),
            refreshing: tokio::sync::Mutex::new(()),
            components: RwLock::new(HashMap::new()),
        }
    }

    /// Forgets everything (a component or event source changed).
    pub fn invalidate(&self) {
        *self.routes.write().unwrap_or_else(|p| p.into_inner()) = None;
        self.components
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// The enabled HTTP routes in match order, at most a second older than `now` (the
    /// caller's clock reading, so the request path reads the clock once).
    pub async fn routes(&self, now: Instant) -> Result<Arc<Vec<Route>>, crate::db::DbError> {
        let cached = self
            .routes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some((at, routes)) = &cached
            && now.saturating_duration_since(*at) < MAX_AGE
        {
            return Ok(routes.clone());
        }
        // One refresher; the rest use the previous copy when there is one.
        let _guard = match (self.refreshing.try_lock(), &cached) {
            (Ok(g), _) => g,
            (Err(_), Some((_, routes))) => return Ok(routes.clone()),
            (Err(_), None) => self.refreshing.lock().await,
        };
        if let Some((at, routes)) = self
            .routes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            && at.elapsed() < MAX_AGE
        {
            return Ok(routes.clone());
        }
        let mut routes: Vec<Route> = self
            .db
            .enabled_event_sources("http")
            .await?
            .iter()
            .filter_map(Route::from_event_source)
            .collect();
        sort_routes(&mut routes);
        let routes = Arc::new(routes);
        *self.routes.write().unwrap_or_else(|p| p.into_inner()) =
            Some((Instant::now(), routes.clone()));
        Ok(routes)
    }

    /// A component, from the cache when fresh; `Ok(None)` when it does not exist.
    pub async fn component(
        &self,
        name: &str,
    ) -> Result<Option<Arc<Component>>, crate::db::DbError> {
        self.component_at(name, Instant::now()).await
    }

    /// [`Catalog::component`], fresh as of the caller's clock reading `now`.
    pub async fn component_at(
        &self,
        name: &str,
        now: Instant,
    ) -> Result<Option<Arc<Component>>, crate::db::DbError> {
        if let Some((at, c)) = self
            .components
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            && now.saturating_duration_since(*at) < MAX_AGE
        {
            return Ok(c.clone());
        }
        let c = self.component_fresh(name).await?.map(Arc::new);
        self.store(name, c.clone());
        Ok(c)
    }

    /// A component read from the database now. A database error is an error, never "absent":
    /// callers must not mistake an outage for a removal.
    pub async fn component_fresh(
        &self,
        name: &str,
    ) -> Result<Option<Component>, crate::db::DbError> {
        self.db.get_component(name).await
    }

    fn store(&self, name: &str, c: Option<Arc<Component>>) {
        self.components
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), (Instant::now(), c));
    }
}
