//! Clients for Maelstrom's built-in services: the `lin-kv`, `seq-kv` and `lww-kv` key-value
//! stores ([`Kv`]) and the `lin-tso` timestamp oracle ([`Tso`]).
//!
//! Every call times out (services never answer an unknown request type, so an untimed call
//! could hang for ever). `read` tells a missing key (`Ok(None)`, code 20) apart from every
//! other failure, timeouts included.

use crate::context::Core;
use crate::{Error, ErrorCode, Message};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// Whether a `cas` on a missing key creates it.
///
/// ```
/// assert_ne!(maelnode::CreateIfMissing::Yes, maelnode::CreateIfMissing::No);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreateIfMissing {
    /// A missing key is created with the `to` value (`create_if_not_exists: true`).
    Yes,
    /// A missing key fails the cas with code 20.
    No,
}

fn json_of(v: impl Serialize) -> Result<Value, Error> {
    serde_json::to_value(v)
        .map_err(|e| Error::malformed(format!("cannot serialise a service key or value: {e}")))
}

/// A service request body; a key or value that cannot be serialised is an error, not a panic.
fn request<const N: usize>(
    msg_type: &str,
    fields: [(&str, Result<Value, Error>); N],
) -> Result<Value, Error> {
    let mut body = serde_json::Map::new();
    body.insert("type".into(), msg_type.into());
    for (k, v) in fields {
        body.insert(k.into(), v?);
    }
    Ok(Value::Object(body))
}

/// How many read-cas rounds [`Kv::update`] tries before giving up.
const UPDATE_ATTEMPTS: usize = 64;

/// A client of one key-value service.
///
/// - `lin-kv` is linearizable.
/// - `seq-kv` is sequentially consistent: a node's reads may be **stale** (never older than
///   what it saw before) until the node itself changes the store. To read current data, first
///   write something unique (e.g. a key of your own with a counter), then read.
/// - `lww-kv` is last-write-wins over replicas: reads may be stale and go backwards. In upstream
///   Maelstrom it ignores `create_if_not_exists`; in this project's runner it honours it.
///
/// ```
/// # async fn f(ctx: maelnode::Ctx<()>) -> Result<(), maelnode::Error> {
/// use maelnode::CreateIfMissing;
/// let kv = ctx.lin_kv().timeout(std::time::Duration::from_millis(500));
/// kv.write(1, 5).await?;                                   // keys and values are any JSON
/// kv.cas(1, 5, 6, CreateIfMissing::No).await?;
/// assert_eq!(kv.read_as::<u64>(1).await?, Some(6));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Kv {
    core: Arc<Core>,
    service: &'static str,
    timeout: Duration,
}

impl Kv {
    pub(crate) fn new(core: Arc<Core>, service: &'static str) -> Kv {
        let timeout = core.rpc_timeout;
        Kv {
            core,
            service,
            timeout,
        }
    }

    /// The service's node id, e.g. `"seq-kv"`.
    ///
    /// ```
    /// # async fn f(ctx: maelnode::Ctx<()>) { assert_eq!(ctx.seq_kv().service(), "seq-kv"); }
    /// ```
    pub fn service(&self) -> &'static str {
        self.service
    }

    /// The same client with another per-call timeout (default: the node's RPC timeout).
    ///
    /// ```
    /// # async fn f(ctx: maelnode::Ctx<()>) { let kv = ctx.lww_kv().timeout(std::time::Duration::from_secs(2)); }
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Kv {
        self.timeout = timeout;
        self
    }

    async fn call(&self, body: Result<Value, Error>) -> Result<Message, Error> {
        let body = body.and_then(crate::message::body_text);
        Arc::clone(&self.core)
            .call(self.service.to_string(), body, self.timeout)
            .await
    }

    /// Reads a key: `Ok(Some(value))`, `Ok(None)` if the key does not exist (code 20), `Err`
    /// for anything else.
    ///
    /// ```
    /// # async fn f(ctx: maelnode::Ctx<()>) -> Result<(), maelnode::Error> {
    /// if let Some(v) = ctx.lin_kv().read("leader").await? { tracing::info!(%v, "leader known"); }
    /// # Ok(()) }
    /// ```
    pub async fn read(&self, key: impl Serialize) -> Result<Option<Value>, Error> {
        match self.call(request("read", [("key", json_of(key))])).await {
            Ok(reply) => Ok(Some(
                reply
                    .body_json()
                    .get("value")
                    .cloned()
                    .unwrap_or(Value::Null),
            )),
            Err(e) if e.code() == ErrorCode::KeyDoesNotExist => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Reads a key as `T`; a value that does not decode is an error, not `None`.
    ///
    /// ```
    /// # async fn f(ctx: maelnode::Ctx<()>) -> Result<(), maelnode::Error> {
    /// let n: u64 = ctx.seq_kv().read_as("counter").await?.unwrap_or(0);
    /// # Ok(()) }
    /// ```
    pub async fn read_as<T: DeserializeOwned>(
        &self,
        key: impl Serialize,
    ) -> Result<Option<T>, Error> {
        match self.read(key).await? {
            None => Ok(None),
            Some(v) => serde_json::from_value(v).map(Some).map_err(|e| {
                Error::malformed(format!("{} value does not decode: {e}", self.service))
            }),
        }
    }

    /// Writes a key.
    ///
    /// ```
    /// # async fn f(ctx: maelnode::Ctx<()>) -> Result<(), maelnode::Error> {
    /// ctx.lin_kv().write("config", serde_json::json!({"replicas": 3})).await?;
    /// # Ok(()) }
    /// ```
    pub async fn write(&self, key: impl Serialize, value: impl Serialize) -> Result<(), Error> {
        self.call(request(
            "write",
            [("key", json_of(key)), ("value", json_of(value))],
        ))
        .await
        .map(drop)
    }

    /// Compare-and-set: if the key holds `from`, it becomes `to`. Fails with code 22 on a
    /// mismatch and code 20 on a missing key, unless `create` is [`CreateIfMissing::Yes`].
    ///
    /// ```
    /// # async fn f(ctx: maelnode::Ctx<()>) -> Result<(), maelnode::Error> {
    /// use maelnode::{CreateIfMissing, ErrorCode};
    /// match ctx.lin_kv().cas("x", 1, 2, CreateIfMissing::Yes).await {
    ///     Err(e) if e.code() == ErrorCode::PreconditionFailed => { /* someone else won */ }
    ///     other => other?,
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn cas(
        &self,
        key: impl Serialize,
        from: impl Serialize,
        to: impl Serialize,
        create: CreateIfMissing,
    ) -> Result<(), Error> {
        let mut body = request(
            "cas",
            [
                ("key", json_of(key)),
                ("from", json_of(from)),
                ("to", json_of(to)),
            ],
        );
        if let (Ok(b), CreateIfMissing::Yes) = (&mut body, create) {
            b["create_if_not_exists"] = true.into();
        }
        self.call(body).await.map(drop)
    }

    /// Read-modify-write: reads the key, computes `f(old)` and cas-es it in (creating the key
    /// when it was missing), retrying on a lost race up to 64 times. Returns the new value.
    ///
    /// ```
    /// # async fn f(ctx: maelnode::Ctx<()>) -> Result<(), maelnode::Error> {
    /// let total: u64 = ctx.lin_kv().update("counter", |old: Option<u64>| old.unwrap_or(0) + 5).await?;
    /// # Ok(()) }
    /// ```
    pub async fn update<T, F>(&self, key: impl Serialize, mut f: F) -> Result<T, Error>
    where
        T: Serialize + DeserializeOwned,
        F: FnMut(Option<T>) -> T,
    {
        let key = serde_json::to_value(key).map_err(|e| Error::malformed(e.to_string()))?;
        for _ in 0..UPDATE_ATTEMPTS {
            let old = self.read(&key).await?;
            let old_typed = match &old {
                None => None,
                Some(v) => Some(serde_json::from_value(v.clone()).map_err(|e| {
                    Error::malformed(format!("{} value does not decode: {e}", self.service))
                })?),
            };
            let new = f(old_typed);
            let result = match &old {
                None => {
                    self.cas(&key, Value::Null, &new, CreateIfMissing::Yes)
                        .await
                }
                Some(v) => self.cas(&key, v, &new, CreateIfMissing::No).await,
            };
            match result {
                Ok(()) => return Ok(new),
                Err(e)
                    if matches!(
                        e.code(),
                        ErrorCode::PreconditionFailed | ErrorCode::KeyDoesNotExist
                    ) =>
                {
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::new(
            ErrorCode::PreconditionFailed,
            format!(
                "update of {key} on {} lost {UPDATE_ATTEMPTS} races in a row",
                self.service
            ),
        ))
    }
}

/// A client of `lin-tso`, the linearizable timestamp oracle.
///
/// ```
/// # async fn f(ctx: maelnode::Ctx<()>) -> Result<(), maelnode::Error> {
/// let a = ctx.tso().ts().await?;
/// let b = ctx.tso().ts().await?;
/// assert!(b > a);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Tso {
    kv: Kv,
}

impl Tso {
    pub(crate) fn new(core: Arc<Core>) -> Tso {
        Tso {
            kv: Kv::new(core, "lin-tso"),
        }
    }

    /// The same client with another per-call timeout.
    ///
    /// ```
    /// # async fn f(ctx: maelnode::Ctx<()>) { let t = ctx.tso().timeout(std::time::Duration::from_millis(100)); }
    /// ```
    pub fn timeout(self, timeout: Duration) -> Tso {
        Tso {
            kv: self.kv.timeout(timeout),
        }
    }

    /// A fresh timestamp: 0, 1, 2, … across the whole cluster, strictly increasing.
    ///
    /// ```
    /// # async fn f(ctx: maelnode::Ctx<()>) -> Result<(), maelnode::Error> {
    /// let ts: u64 = ctx.tso().ts().await?;
    /// # Ok(()) }
    /// ```
    pub async fn ts(&self) -> Result<u64, Error> {
        let reply = self.kv.call(request("ts", [])).await?;
        reply
            .body_json()
            .get("ts")
            .and_then(Value::as_u64)
            .ok_or_else(|| {
                Error::malformed(format!(
                    "lin-tso reply has no integer ts: {}",
                    reply.body_raw()
                ))
            })
    }
}

impl<S: Send + Sync + 'static> crate::Ctx<S> {
    /// A client of the linearizable `lin-kv` store.
    ///
    /// ```
    /// # async fn f(ctx: maelnode::Ctx<()>) { let kv = ctx.lin_kv(); }
    /// ```
    pub fn lin_kv(&self) -> Kv {
        Kv::new(Arc::clone(&self.core), "lin-kv")
    }

    /// A client of the sequentially consistent `seq-kv` store; see [`Kv`] on stale reads.
    ///
    /// ```
    /// # async fn f(ctx: maelnode::Ctx<()>) { let kv = ctx.seq_kv(); }
    /// ```
    pub fn seq_kv(&self) -> Kv {
        Kv::new(Arc::clone(&self.core), "seq-kv")
    }

    /// A client of the last-write-wins `lww-kv` store; see [`Kv`].
    ///
    /// ```
    /// # async fn f(ctx: maelnode::Ctx<()>) { let kv = ctx.lww_kv(); }
    /// ```
    pub fn lww_kv(&self) -> Kv {
        Kv::new(Arc::clone(&self.core), "lww-kv")
    }

    /// A client of the `lin-tso` timestamp oracle.
    ///
    /// ```
    /// # async fn f(ctx: maelnode::Ctx<()>) { let tso = ctx.tso(); }
    /// ```
    pub fn tso(&self) -> Tso {
        Tso::new(Arc::clone(&self.core))
    }
}
