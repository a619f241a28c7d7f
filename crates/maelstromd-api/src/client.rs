//! A JSON-RPC client of a maelstromd private port, used by `maelctl` and by nodes calling
//! their peers. It sends the bearer token when one is configured (spec §3.h).

use crate::rpc::{Request, Response, RpcError};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{Client as HttpClient, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use serde::{Serialize, de::DeserializeOwned};
use std::time::Duration;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The node could not be reached or the connection broke.
    #[error("cannot reach {url}: {detail}")]
    Transport {
        /// Endpoint.
        url: String,
        /// Cause.
        detail: String,
    },
    /// No answer in time.
    #[error("no answer from {url} within {secs} s")]
    Timeout {
        /// Endpoint.
        url: String,
        /// Limit.
        secs: u64,
    },
    /// The node answered with an HTTP error (for example 401 without the token).
    #[error("{url} answered HTTP {status}: {body}")]
    Http {
        /// Endpoint.
        url: String,
        /// Status code.
        status: u16,
        /// Body text.
        body: String,
    },
    /// The method failed.
    #[error("{0}")]
    Rpc(RpcError),
    /// The answer was not the expected JSON.
    #[error("unexpected answer from {url}: {detail}")]
    Decode {
        /// Endpoint.
        url: String,
        /// Cause.
        detail: String,
    },
}

impl CallError {
    /// The RPC error, when the method itself failed.
    pub fn rpc(&self) -> Option<&RpcError> {
        match self {
            CallError::Rpc(e) => Some(e),
            _ => None,
        }
    }
}

/// A client bound to one node's private URL.
#[derive(Clone)]
pub struct Client {
    base: String,
    token: Option<String>,
    timeout: Duration,
    http: HttpClient<HttpConnector, Full<Bytes>>,
}

impl Client {
    /// A client of `base` (`http://127.0.0.1:8374`), sending `token` as a bearer token.
    pub fn new(base: &str, token: Option<String>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        let http = HttpClient::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Client {
            base: base.trim_end_matches('/').to_string(),
            token: token.filter(|t| !t.is_empty()),
            timeout: Duration::from_secs(60),
            http,
        }
    }

    /// The same client with another per-call time limit (default 60 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The bearer token, if any.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// Calls `method` (`Interface.Method`) with one input object.
    pub async fn call<I: Serialize, O: DeserializeOwned>(
        &self,
        method: &str,
        input: &I,
    ) -> Result<O, CallError> {
        let url = format!("{}/_mael/v1", self.base);
        let req = Request {
            jsonrpc: "2.0".into(),
            id: Some(serde_json::Value::from(1)),
            method: method.to_string(),
            params: serde_json::Value::Array(vec![serde_json::to_value(input).map_err(|e| {
                CallError::Decode {
                    url: url.clone(),
                    detail: e.to_string(),
                }
            })?]),
        };
        let body = serde_json::to_vec(&req).unwrap_or_default();
        let (status, bytes) = self.send("POST", &url, Some(body)).await?;
        if status != 200 {
            return Err(CallError::Http {
                url,
                status,
                body: String::from_utf8_lossy(&bytes).trim().to_string(),
            });
        }
        let resp: Response = serde_json::from_slice(&bytes).map_err(|e| CallError::Decode {
            url: url.clone(),
            detail: e.to_string(),
        })?;
        if let Some(err) = resp.error {
            return Err(CallError::Rpc(err));
        }
        serde_json::from_value(resp.result.unwrap_or_default()).map_err(|e| CallError::Decode {
            url,
            detail: e.to_string(),
        })
    }

    /// `GET {base}{path_and_query}` with the token, answering the response head at once and
    /// its body as a stream (the log stream); no time limit.
    pub async fn open_stream(
        &self,
        path_and_query: &str,
    ) -> Result<http::Response<hyper::body::Incoming>, CallError> {
        let url = format!("{}{path_and_query}", self.base);
        let mut builder = http::Request::builder().method("GET").uri(&url);
        if let Some(t) = &self.token {
            builder = builder.header("authorization", format!("Bearer {t}"));
        }
        let req = builder
            .body(Full::new(Bytes::new()))
            .map_err(|e| CallError::Transport {
                url: url.clone(),
                detail: e.to_string(),
            })?;
        let resp = self
            .http
            .request(req)
            .await
            .map_err(|e| CallError::Transport {
                url: url.clone(),
                detail: chain(&e),
            })?;
        if resp.status() != 200 {
            let status = resp.status().as_u16();
            let body = resp
                .into_body()
                .collect()
                .await
                .map(|b| String::from_utf8_lossy(&b.to_bytes()).trim().to_string())
                .unwrap_or_default();
            return Err(CallError::Http { url, status, body });
        }
        Ok(resp)
    }

    /// A plain request to `url` with the token; answers status and body.
    pub async fn send(
        &self,
        method: &str,
        url: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Bytes), CallError> {
        let transport = |e: &dyn std::fmt::Display| CallError::Transport {
            url: url.to_string(),
            detail: e.to_string(),
        };
        let mut builder = http::Request::builder().method(method).uri(url);
        if let Some(t) = &self.token {
            builder = builder.header("authorization", format!("Bearer {t}"));
        }
        if body.is_some() {
            builder = builder.header("content-type", "application/json");
        }
        let req = builder
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| transport(&e))?;
        let fut = async {
            let resp = self
                .http
                .request(req)
                .await
                .map_err(|e| transport(&chain(&e)))?;
            let status = resp.status().as_u16();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| transport(&e))?
                .to_bytes();
            Ok((status, bytes))
        };
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(CallError::Timeout {
                url: url.to_string(),
                secs: self.timeout.as_secs(),
            }),
        }
    }
}

/// An error with its causes: the legacy client's Display hides them ("client error (Connect)").
fn chain(e: &dyn std::error::Error) -> String {
    let mut detail = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        detail = format!("{detail}: {s}");
        src = s.source();
    }
    detail
}
