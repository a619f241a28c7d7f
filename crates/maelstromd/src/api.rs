//! The private port's own endpoints (spec §7.2): JSON-RPC at `POST /_mael/v1`, the log stream
//! at `GET /_mael/logs` and Prometheus metrics at `GET /metrics`, served by axum; plus the
//! bearer-token check that guards the whole private port (spec §3.h).

use crate::gateway::proxy::{ProxyBody, text};
use crate::node::Node;
use axum::extract::{Query, State};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use std::sync::Arc;
use tower_service::Service;

/// Whether `path` is one of the private port's own endpoints rather than component routing.
pub fn is_api_path(path: &str) -> bool {
    matches!(path, "/_mael/v1" | "/_mael/logs" | "/metrics")
}

/// Whether the request carries `Authorization: Bearer <token>`, compared in constant time.
pub fn authorized(headers: &HeaderMap, token: &str) -> bool {
    use subtle::ConstantTimeEq;
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    given.trim().as_bytes().ct_eq(token.as_bytes()).into()
}

/// 401 with `WWW-Authenticate: Bearer`.
pub fn unauthorized() -> Response<ProxyBody> {
    let mut r = text(StatusCode::UNAUTHORIZED, "Unauthorized");
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

/// The axum router of the private API.
pub fn router(node: Arc<Node>) -> axum::Router {
    axum::Router::new()
        .route("/_mael/v1", post(rpc))
        .route("/_mael/logs", get(logs))
        .route("/metrics", get(metrics))
        .with_state(node)
}

/// Serves one private API request.
pub async fn serve(node: &Arc<Node>, req: Request<ProxyBody>) -> Response<ProxyBody> {
    let Some(router) = node.api.get() else {
        return text(StatusCode::SERVICE_UNAVAILABLE, "starting");
    };
    match router.clone().call(req).await {
        Ok(resp) => resp.map(|b| b.map_err(Into::into).boxed_unsync()),
        Err(e) => match e {},
    }
}

async fn rpc(State(node): State<Arc<Node>>, body: axum::body::Bytes) -> impl IntoResponse {
    let out = crate::rpc::handle(&node, &body).await;
    ([(header::CONTENT_TYPE, "application/json")], out)
}

#[derive(serde::Deserialize)]
struct LogsQuery {
    #[serde(default)]
    components: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    scope: String,
}

async fn logs(
    State(node): State<Arc<Node>>,
    Query(q): Query<LogsQuery>,
) -> axum::response::Response {
    match crate::logs::stream(&node, &q.components, &q.since, q.scope == "local") {
        Ok(body) => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            axum::body::Body::new(body),
        )
            .into_response(),
        Err(msg) => (StatusCode::BAD_REQUEST, msg).into_response(),
    }
}

async fn metrics(State(node): State<Arc<Node>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        node.metrics.render(&node).await,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens() {
        let mut h = HeaderMap::new();
        assert!(!authorized(&h, "s3cret"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer wrong"),
        );
        assert!(!authorized(&h, "s3cret"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer s3cret"),
        );
        assert!(authorized(&h, "s3cret"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic s3cret"),
        );
        assert!(!authorized(&h, "s3cret"));
    }
}
