//! The JSON-RPC 2.0 methods of `MaelstromService` and `NodeService` (spec §7.3–§7.5): their
//! inputs and outputs, the error codes, and the envelope.

use crate::model::*;
use serde::{Deserialize, Serialize};

/// Invalid input (names, values).
pub const INVALID_INPUT: i64 = 1001;
/// Insert of a key that exists.
pub const ALREADY_EXISTS: i64 = 1002;
/// Entity not found.
pub const NOT_FOUND: i64 = 1003;
/// Optimistic update lost: the stored version is not the one given.
pub const VERSION_CONFLICT: i64 = 1004;
/// Miscellaneous server error.
pub const MISC: i64 = -32000;
/// Database error.
pub const DATABASE: i64 = -32001;
/// The body is not JSON.
pub const PARSE_ERROR: i64 = -32700;
/// Not a JSON-RPC request.
pub const INVALID_REQUEST: i64 = -32600;
/// No such method.
pub const METHOD_NOT_FOUND: i64 = -32601;
/// Parameters missing or of the wrong type.
pub const INVALID_PARAMS: i64 = -32602;
/// Internal error.
pub const INTERNAL: i64 = -32603;

/// A JSON-RPC error object, also the error type of every method.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("{message} (code {code})")]
pub struct RpcError {
    /// One of the codes above.
    pub code: i64,
    /// Human-readable message.
    pub message: String,
    /// Optional detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
}

impl RpcError {
    /// An error with a code and message.
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        RpcError {
            code,
            message: message.into(),
            data: None,
        }
    }
    /// 1001.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(INVALID_INPUT, message)
    }
    /// 1003.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(NOT_FOUND, message)
    }
    /// -32001.
    pub fn database(message: impl std::fmt::Display) -> Self {
        Self::new(DATABASE, format!("database error: {message}"))
    }
    /// -32000.
    pub fn misc(message: impl Into<String>) -> Self {
        Self::new(MISC, message)
    }
}

/// A request envelope.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Request {
    /// Always `2.0`.
    pub jsonrpc: String,
    /// Request id (absent for notifications).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<serde_json::Value>,
    /// `Interface.Method`.
    pub method: String,
    /// One input object in an array (barrister style).
    #[serde(default)]
    pub params: serde_json::Value,
}

/// A response envelope.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Response {
    /// Always `2.0`.
    pub jsonrpc: String,
    /// The request's id.
    #[serde(default)]
    pub id: serde_json::Value,
    /// Output on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    /// Error on failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RpcError>,
}

macro_rules! io_struct {
    ($(#[$m:meta])* $name:ident { $($(#[$fm:meta])* $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
        #[serde(rename_all = "camelCase")]
        pub struct $name { $($(#[$fm])* #[serde(default)] pub $field: $ty),* }
    };
}

io_struct!(
    /// `ListProjects` input.
    ListProjectsInput { /// Name prefix filter.
    name_prefix: String }
);
io_struct!(
    /// One row of `ListProjects`.
    ProjectInfo { /// Project.
    project_name: String, /// Components.
    component_count: i64, /// Event sources.
    event_source_count: i64 }
);
io_struct!(
    /// `ListProjects` output.
    ListProjectsOutput { /// By name.
    projects: Vec<ProjectInfo> }
);
io_struct!(
    /// `PutProject` input.
    PutProjectInput { /// The project.
    project: Project, /// Compute the diff only.
    diff_only: bool }
);
io_struct!(
    /// `PutProject` output: the diff applied (or that would be).
    PutProjectOutput {
        /// Project name.
        name: String,
        /// Added components.
        components_added: Vec<Component>,
        /// Updated components.
        components_updated: Vec<Component>,
        /// Removed component names.
        components_removed: Vec<String>,
        /// Added event sources.
        event_sources_added: Vec<EventSource>,
        /// Updated event sources.
        event_sources_updated: Vec<EventSource>,
        /// Removed event source names.
        event_sources_removed: Vec<String>,
    }
);

impl PutProjectOutput {
    /// True when the put changed nothing.
    pub fn is_empty(&self) -> bool {
        self.components_added.is_empty()
            && self.components_updated.is_empty()
            && self.components_removed.is_empty()
            && self.event_sources_added.is_empty()
            && self.event_sources_updated.is_empty()
            && self.event_sources_removed.is_empty()
    }
}

io_struct!(
    /// Input naming one entity.
    NameInput { /// Name.
    name: String }
);
io_struct!(
    /// `GetProject` output.
    GetProjectOutput { /// The project.
    project: Project }
);
io_struct!(
    /// Output of the `Remove*` methods.
    RemoveOutput { /// Name.
    name: String, /// Whether it existed.
    found: bool }
);
io_struct!(
    /// `PutComponent` input.
    PutComponentInput { /// The component.
    component: Component }
);
io_struct!(
    /// Output of `PutComponent` and `PutEventSource`.
    PutOutput { /// Name.
    name: String, /// New version.
    version: i64 }
);
io_struct!(
    /// `GetComponent` output.
    GetComponentOutput { /// The component.
    component: Component }
);
io_struct!(
    /// `ListComponents` input.
    ListComponentsInput {
        /// Name prefix.
        name_prefix: String,
        /// Project filter.
        project_name: String,
        /// Page size 1..1000 (0: 1000).
        limit: i64,
        /// Offset token from the previous page.
        next_token: String,
    }
);
io_struct!(
    /// `ListComponents` output.
    ListComponentsOutput {
        /// The page.
        components: Vec<Component>,
        /// Present when more rows exist.
        #[serde(skip_serializing_if = "String::is_empty")]
        next_token: String,
    }
);
io_struct!(
    /// `PutEventSource` input.
    PutEventSourceInput { /// The event source.
    event_source: EventSource }
);
io_struct!(
    /// `GetEventSource` output.
    GetEventSourceOutput { /// The event source.
    event_source: EventSource }
);
io_struct!(
    /// `ToggleEventSources` input.
    ToggleEventSourcesInput {
        /// New state.
        enabled: bool,
        /// Name prefix.
        name_prefix: String,
        /// Component filter.
        component_name: String,
        /// Project filter.
        project_name: String,
        /// Type filter (`http`, `cron`, `sqs`, `awsstepfunc`).
        event_source_type: String,
    }
);
io_struct!(
    /// `ToggleEventSources` output.
    ToggleEventSourcesOutput { /// New state.
    enabled: bool, /// Rows that changed.
    event_source_names: Vec<String> }
);
io_struct!(
    /// `ListEventSources` input.
    ListEventSourcesInput {
        /// Name prefix.
        name_prefix: String,
        /// Component filter.
        component_name: String,
        /// Project filter.
        project_name: String,
        /// Type filter.
        event_source_type: String,
        /// Page size.
        limit: i64,
        /// Offset token.
        next_token: String,
    }
);
io_struct!(
    /// `ListEventSources` output.
    ListEventSourcesOutput {
        /// The page.
        event_sources: Vec<EventSourceWithStatus>,
        /// Present when more rows exist.
        #[serde(skip_serializing_if = "String::is_empty")]
        next_token: String,
    }
);
io_struct!(
    /// One component change carried by `NotifyDataChanged`.
    DataChange {
        /// A component put.
        #[serde(skip_serializing_if = "Option::is_none")]
        put_component: Option<Component>,
        /// A component removal.
        #[serde(skip_serializing_if = "Option::is_none")]
        remove_component: Option<NameInput>,
    }
);
io_struct!(
    /// `NotifyDataChanged` input.
    NotifyDataChangedInput { /// Sender.
    node_id: String, /// Changes.
    changes: Vec<DataChange> }
);
io_struct!(
    /// Output naming the node that answered.
    RespondingNodeOutput { /// Node id.
    responding_node_id: String }
);
io_struct!(
    /// `ListNodeStatus` input.
    ListNodeStatusInput { /// Ask every node for a fresh status.
    force_refresh: bool }
);
io_struct!(
    /// `ListNodeStatus` output.
    ListNodeStatusOutput { /// Answering node.
    responding_node_id: String, /// Nodes.
    nodes: Vec<NodeStatus> }
);
io_struct!(
    /// `GetStatus` output.
    GetStatusOutput { /// Fresh status.
    status: NodeStatus }
);
io_struct!(
    /// `StatusChanged` input.
    StatusChangedInput {
        /// Sender.
        node_id: String,
        /// The node is leaving.
        exiting: bool,
        /// Its status (absent when exiting).
        #[serde(skip_serializing_if = "Option::is_none")]
        status: Option<NodeStatus>,
    }
);
io_struct!(
    /// `StatusChanged` output.
    StatusChangedOutput { /// Receiver.
    node_id: String }
);
io_struct!(
    /// `PlaceComponent` input.
    PlaceComponentInput { /// Component.
    component_name: String }
);
io_struct!(
    /// `PlaceComponent` output.
    PlaceComponentOutput { /// Component.
    component_name: String, /// Node that runs it.
    node: NodeStatus }
);
io_struct!(
    /// A target count for one component on one node.
    ComponentTarget {
        /// Component.
        component_name: String,
        /// Memory per instance, MiB.
        #[serde(rename = "requiredMemoryMiB")]
        required_memory_mib: i64,
        /// Instances wanted on the node.
        target_count: i64,
    }
);
io_struct!(
    /// `StartStopComponents` input.
    StartStopComponentsInput {
        /// Caller.
        client_node_id: String,
        /// Status version the caller planned against.
        target_version: i64,
        /// Targets.
        target_counts: Vec<ComponentTarget>,
        /// Return the status after applying.
        return_status: bool,
        /// Wait until the targets are met.
        block: bool,
    }
);
io_struct!(
    /// A container started or stopped by `StartStopComponents`.
    ComponentDelta { /// Component.
    component_name: String, /// Container.
    container_id: String }
);
io_struct!(
    /// `StartStopComponents` output.
    StartStopComponentsOutput {
        /// The caller planned against a stale status.
        target_version_mismatch: bool,
        /// Status after applying (or the current one on a mismatch).
        target_status: Option<NodeStatus>,
        /// Containers started.
        started: Vec<ComponentDelta>,
        /// Containers stopped.
        stopped: Vec<ComponentDelta>,
        /// Failures.
        errors: Vec<String>,
    }
);
io_struct!(
    /// `TerminateNode` input.
    TerminateNodeInput { /// The lifecycle hook message, if any.
    aws_lifecycle_hook: Option<serde_json::Value> }
);
io_struct!(
    /// `TerminateNode` output.
    TerminateNodeOutput { /// Shutdown started here.
    accepted_message: bool, /// Node id.
    node_id: String, /// Instance id.
    instance_id: String }
);
io_struct!(
    /// One component's load on one node (`ReportLoad`, spec §10.2).
    ComponentLoad {
        /// Component.
        component_name: String,
        /// Requests in flight on local containers.
        inflight: i64,
        /// Requests waiting in the router.
        queued: i64,
        /// Local instances.
        instances: i64,
        /// Time-weighted `inflight + queued`, 6-second window.
        #[serde(rename = "concurrency6s")]
        concurrency_6s: f64,
        /// The same over 60 seconds (maximum of per-second values).
        #[serde(rename = "concurrency60s")]
        concurrency_60s: f64,
        /// Newest request, epoch ms.
        last_request_time: i64,
    }
);
io_struct!(
    /// `ReportLoad` input.
    ReportLoadInput { /// Sender.
    node_id: String, /// When sampled, epoch ms.
    observed_at: i64, /// Per component.
    components: Vec<ComponentLoad> }
);

/// The methods, by their wire name, with their input and output types. Keeps the server's
/// dispatch, the client and the interface description in step.
pub mod methods {
    /// `MaelstromService` methods.
    pub const MAELSTROM: &[&str] = &[
        "ListProjects",
        "PutProject",
        "GetProject",
        "RemoveProject",
        "PutComponent",
        "GetComponent",
        "RemoveComponent",
        "ListComponents",
        "PutEventSource",
        "GetEventSource",
        "RemoveEventSource",
        "ToggleEventSources",
        "ListEventSources",
        "NotifyDataChanged",
    ];
    /// `NodeService` methods.
    pub const NODE: &[&str] = &[
        "ListNodeStatus",
        "GetStatus",
        "StatusChanged",
        "PlaceComponent",
        "StartStopComponents",
        "TerminateNode",
        "ReportLoad",
    ];
}

/// Serialises `value` as JSON with every non-ASCII character escaped as `\uXXXX`, as the
/// original's responses were (spec §7.3). serde_json has no such mode; its `Formatter` hook
/// for string fragments is the one place to do it.
pub fn to_ascii_json<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    struct Ascii;
    impl serde_json::ser::Formatter for Ascii {
        fn write_string_fragment<W: ?Sized + std::io::Write>(
            &mut self,
            writer: &mut W,
            fragment: &str,
        ) -> std::io::Result<()> {
            if fragment.is_ascii() {
                return writer.write_all(fragment.as_bytes());
            }
            for c in fragment.chars() {
                if c.is_ascii() {
                    writer.write_all(&[c as u8])?;
                } else {
                    let mut units = [0u16; 2];
                    for u in c.encode_utf16(&mut units) {
                        write!(writer, "\\u{u:04x}")?;
                    }
                }
            }
            Ok(())
        }
    }
    let mut out = Vec::with_capacity(256);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, Ascii);
    // Serialising plain data into a Vec cannot fail.
    let _ = value.serialize(&mut ser);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_ascii() {
        let v = serde_json::json!({"s": "é😀x"});
        let bytes = to_ascii_json(&v);
        assert!(bytes.is_ascii());
        assert_eq!(
            String::from_utf8(bytes.clone()).unwrap(),
            r#"{"s":"\u00e9\ud83d\ude00x"}"#
        );
        let back: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back, v);
    }
}
