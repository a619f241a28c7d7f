//! `maelstromd-api`: the interface between maelstromd nodes and their clients.
//!
//! - [`model`]: projects, components, event sources and node status, with the original's JSON
//!   field names; the database stores the same documents.
//! - [`rpc`]: the `MaelstromService` and `NodeService` methods' inputs and outputs, error codes,
//!   the JSON-RPC 2.0 envelope and ASCII-only encoding.
//! - [`idl`]: the interface description behind `barrister-idl` and the required-field check.
//! - [`client`]: a JSON-RPC client of a node's private port (`maelctl` and peer calls).
//!
//! ```
//! use maelstromd_api::model::Component;
//! let c: Component = serde_json::from_str(r#"{"name":"p_web","maxConcurrency":2}"#).unwrap();
//! assert_eq!(c.max_concurrency(), 2);
//! assert_eq!(c.docker().http_port(), 8080); // httpport defaults to 8080
//! ```
#![deny(missing_docs)]

pub mod client;
pub mod idl;
pub mod model;
pub mod rpc;

/// Current time as Unix epoch milliseconds, the unit of every timestamp in the interface.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
