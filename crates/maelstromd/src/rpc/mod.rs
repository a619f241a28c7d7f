//! JSON-RPC 2.0 at `POST /_mael/v1` (spec §7.3): the envelope, batches, `barrister-idl`, the
//! required-field check against the interface description, and dispatch to the methods of
//! [`maelstrom`] (`MaelstromService`) and [`node`] (`NodeService`). Answers are ASCII-only.

pub mod maelstrom;
pub mod node;

use crate::node::Node;
use maelstromd_api::idl;
use maelstromd_api::rpc::{
    INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND, PARSE_ERROR, RpcError, to_ascii_json,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::sync::Arc;

/// Answers a request body (one call or a batch).
pub async fn handle(node: &Arc<Node>, body: &[u8]) -> Vec<u8> {
    let parsed: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return to_ascii_json(&envelope(
                Value::Null,
                Err(RpcError::new(PARSE_ERROR, format!("parse error: {e}"))),
            ));
        }
    };
    match parsed {
        Value::Array(calls) if calls.is_empty() => to_ascii_json(&envelope(
            Value::Null,
            Err(RpcError::new(INVALID_REQUEST, "empty batch")),
        )),
        Value::Array(calls) => {
            let mut out = Vec::with_capacity(calls.len());
            for call in calls {
                out.push(one(node, call).await);
            }
            to_ascii_json(&out)
        }
        call => to_ascii_json(&one(node, call).await),
    }
}

fn envelope(id: Value, result: Result<Value, RpcError>) -> Value {
    match result {
        Ok(r) => json!({"jsonrpc": "2.0", "id": id, "result": r}),
        Err(e) => json!({"jsonrpc": "2.0", "id": id, "error": e}),
    }
}

async fn one(node: &Arc<Node>, call: Value) -> Value {
    let id = call.get("id").cloned().unwrap_or(Value::Null);
    let Some(method) = call.get("method").and_then(|m| m.as_str()) else {
        return envelope(
            id,
            Err(RpcError::new(INVALID_REQUEST, "invalid request: no method")),
        );
    };
    if call.get("jsonrpc").and_then(|v| v.as_str()) != Some("2.0") {
        return envelope(
            id,
            Err(RpcError::new(
                INVALID_REQUEST,
                "invalid request: jsonrpc must be \"2.0\"",
            )),
        );
    }
    if method == "barrister-idl" {
        return envelope(id, Ok(idl::barrister_json()));
    }
    let Some(input_type) = idl::input_type(method) else {
        return envelope(
            id,
            Err(RpcError::new(
                METHOD_NOT_FOUND,
                format!("method not found: {method}"),
            )),
        );
    };
    let input = match call.get("params") {
        Some(Value::Array(p)) if p.len() == 1 => p[0].clone(),
        Some(Value::Array(_)) => {
            return envelope(
                id,
                Err(RpcError::new(
                    INVALID_PARAMS,
                    format!("{method} takes exactly one input object"),
                )),
            );
        }
        Some(Value::Object(o)) => Value::Object(o.clone()),
        None | Some(Value::Null) => json!({}),
        Some(_) => {
            return envelope(
                id,
                Err(RpcError::new(INVALID_PARAMS, "params must be an array")),
            );
        }
    };
    if let Err(msg) = idl::check_required(input_type, &input) {
        return envelope(
            id,
            Err(RpcError::new(
                INVALID_PARAMS,
                format!("invalid params: {msg}"),
            )),
        );
    }
    let result = match method.split_once('.') {
        Some(("MaelstromService", m)) => maelstrom::dispatch(node, m, input).await,
        Some(("NodeService", m)) => node::dispatch(node, m, input).await,
        _ => Err(RpcError::new(
            METHOD_NOT_FOUND,
            format!("method not found: {method}"),
        )),
    };
    envelope(id, result)
}

/// Decodes a method's input.
pub fn decode<T: DeserializeOwned>(input: Value) -> Result<T, RpcError> {
    serde_json::from_value(input)
        .map_err(|e| RpcError::new(INVALID_PARAMS, format!("invalid params: {e}")))
}

/// Encodes a method's output.
pub fn encode<T: Serialize>(output: T) -> Result<Value, RpcError> {
    serde_json::to_value(output)
        .map_err(|e| RpcError::new(maelstromd_api::rpc::INTERNAL, e.to_string()))
}
