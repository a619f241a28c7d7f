//! The interface description: every struct of the RPC interface with its fields, which of
//! them are optional, and the two interfaces' functions (spec §7.3). One table drives both the
//! `barrister-idl` answer and the check that an input carries every non-optional field
//! (-32602 otherwise).
//!
//! Field specs read like the original IDL: `"[]NameValue"` is an array, a trailing `?` marks
//! an optional field.

use serde_json::{Value, json};

/// A struct: its name and `(field, type spec)` pairs.
pub struct StructDef {
    /// Struct name.
    pub name: &'static str,
    /// `(field name, type spec)`.
    pub fields: &'static [(&'static str, &'static str)],
}

/// An interface: its name and `(function, input struct, output struct)` triples.
pub struct InterfaceDef {
    /// Interface name.
    pub name: &'static str,
    /// `(function, input type, output type)`.
    pub functions: &'static [(&'static str, &'static str, &'static str)],
}

/// Both interfaces.
pub const INTERFACES: &[InterfaceDef] = &[
    InterfaceDef {
        name: "MaelstromService",
        functions: &[
            ("ListProjects", "ListProjectsInput", "ListProjectsOutput"),
            ("PutProject", "PutProjectInput", "PutProjectOutput"),
            ("GetProject", "GetProjectInput", "GetProjectOutput"),
            ("RemoveProject", "RemoveProjectInput", "RemoveProjectOutput"),
            ("PutComponent", "PutComponentInput", "PutComponentOutput"),
            ("GetComponent", "GetComponentInput", "GetComponentOutput"),
            (
                "RemoveComponent",
                "RemoveComponentInput",
                "RemoveComponentOutput",
            ),
            (
                "ListComponents",
                "ListComponentsInput",
                "ListComponentsOutput",
            ),
            (
                "PutEventSource",
                "PutEventSourceInput",
                "PutEventSourceOutput",
            ),
            (
                "GetEventSource",
                "GetEventSourceInput",
                "GetEventSourceOutput",
            ),
            (
                "RemoveEventSource",
                "RemoveEventSourceInput",
                "RemoveEventSourceOutput",
            ),
            (
                "ToggleEventSources",
                "ToggleEventSourcesInput",
                "ToggleEventSourcesOutput",
            ),
            (
                "ListEventSources",
                "ListEventSourcesInput",
                "ListEventSourcesOutput",
            ),
            (
                "NotifyDataChanged",
                "NotifyDataChangedInput",
                "NotifyDataChangedOutput",
            ),
        ],
    },
    InterfaceDef {
        name: "NodeService",
        functions: &[
            (
                "ListNodeStatus",
                "ListNodeStatusInput",
                "ListNodeStatusOutput",
            ),
            ("GetStatus", "GetNodeStatusInput", "GetNodeStatusOutput"),
            ("StatusChanged", "StatusChangedInput", "StatusChangedOutput"),
            (
                "PlaceComponent",
                "PlaceComponentInput",
                "PlaceComponentOutput",
            ),
            (
                "StartStopComponents",
                "StartStopComponentsInput",
                "StartStopComponentsOutput",
            ),
            ("TerminateNode", "TerminateNodeInput", "TerminateNodeOutput"),
            ("ReportLoad", "ReportLoadInput", "ReportLoadOutput"),
        ],
    },
];

/// Enums: name and values.
pub const ENUMS: &[(&str, &[&str])] = &[
    ("EventSourceType", &["http", "cron", "sqs", "awsstepfunc"]),
    ("StartParallelism", &["parallel", "series", "seriesfirst"]),
    ("RestartOrder", &["startstop", "stopstart"]),
    ("ComponentStatus", &["active", "starting", "stopping"]),
];

/// Every struct.
pub const STRUCTS: &[StructDef] = &[
    StructDef {
        name: "NameValue",
        fields: &[("name", "string"), ("value", "string")],
    },
    StructDef {
        name: "Project",
        fields: &[
            ("name", "string"),
            ("components", "[]ComponentWithEventSources"),
        ],
    },
    StructDef {
        name: "ComponentWithEventSources",
        fields: &[
            ("component", "Component"),
            ("eventSources", "[]EventSourceWithStatus"),
        ],
    },
    StructDef {
        name: "EventSourceWithStatus",
        fields: &[("eventSource", "EventSource"), ("enabled", "bool")],
    },
    StructDef {
        name: "Component",
        fields: &[
            ("name", "string"),
            ("projectName", "string?"),
            ("environment", "[]NameValue"),
            ("minInstances", "int?"),
            ("maxInstances", "int?"),
            ("maxInstancesPerNode", "int?"),
            ("maxConcurrency", "int"),
            ("softConcurrencyLimit", "bool?"),
            ("scaleUpConcurrencyPct", "float?"),
            ("scaleDownConcurrencyPct", "float?"),
            ("maxDurationSeconds", "int?"),
            ("maxQueuedRequests", "int?"),
            ("startParallelism", "StartParallelism?"),
            ("RestartOrder", "RestartOrder?"),
            ("version", "int"),
            ("modifiedAt", "int?"),
            ("docker", "DockerComponent?"),
        ],
    },
    StructDef {
        name: "DockerComponent",
        fields: &[
            ("image", "string"),
            ("command", "[]string?"),
            ("entrypoint", "[]string?"),
            ("httpPort", "int"),
            ("httpHealthCheckPath", "string"),
            ("httpStartHealthCheckSeconds", "int?"),
            ("httpHealthCheckSeconds", "int?"),
            ("httpHealthCheckMaxFailures", "int?"),
            ("healthCheckFailedCommand", "[]string?"),
            ("idleTimeoutSeconds", "int?"),
            ("volumes", "[]VolumeMount?"),
            ("networkName", "string?"),
            ("logDriver", "string?"),
            ("logDriverOptions", "[]NameValue?"),
            ("limitCpu", "float?"),
            ("reserveMemoryMiB", "int?"),
            ("limitMemoryMiB", "int?"),
            ("cpuShares", "int?"),
            ("init", "bool?"),
            ("ports", "[]string?"),
            ("dns", "[]string?"),
            ("dnsOptions", "[]string?"),
            ("dnsSearch", "[]string?"),
            ("ulimits", "[]string?"),
            ("pullUsername", "string?"),
            ("pullPassword", "string?"),
            ("pullCommand", "string?"),
            ("pullImageOnPut", "bool?"),
            ("pullImageOnStart", "bool?"),
            ("hostname", "string?"),
            ("domainname", "string?"),
            ("user", "string?"),
            ("capAdd", "[]string?"),
            ("capDrop", "[]string?"),
        ],
    },
    StructDef {
        name: "VolumeMount",
        fields: &[
            ("type", "string?"),
            ("source", "string"),
            ("target", "string"),
            ("readOnly", "bool?"),
        ],
    },
    StructDef {
        name: "EventSource",
        fields: &[
            ("name", "string"),
            ("componentName", "string"),
            ("projectName", "string?"),
            ("version", "int"),
            ("modifiedAt", "int"),
            ("http", "HttpEventSource?"),
            ("cron", "CronEventSource?"),
            ("sqs", "SqsEventSource?"),
            ("awsStepFunc", "AwsStepFuncEventSource?"),
        ],
    },
    StructDef {
        name: "HttpEventSource",
        fields: &[
            ("hostname", "string?"),
            ("pathPrefix", "string?"),
            ("stripPrefix", "bool?"),
        ],
    },
    StructDef {
        name: "CronEventSource",
        fields: &[("schedule", "string"), ("http", "CronHttpRequest")],
    },
    StructDef {
        name: "CronHttpRequest",
        fields: &[
            ("method", "string"),
            ("path", "string"),
            ("data", "string?"),
            ("headers", "[]NameValue?"),
        ],
    },
    StructDef {
        name: "SqsEventSource",
        fields: &[
            ("queueName", "string"),
            ("nameAsPrefix", "bool?"),
            ("path", "string"),
            ("maxConcurrency", "int?"),
            ("messagesPerPoll", "int?"),
            ("concurrencyPerPoller", "int?"),
            ("visibilityTimeout", "int?"),
        ],
    },
    StructDef {
        name: "AwsStepFuncEventSource",
        fields: &[
            ("activityName", "string"),
            ("path", "string"),
            ("maxConcurrency", "int?"),
            ("concurrencyPerPoller", "int?"),
        ],
    },
    StructDef {
        name: "NodeStatus",
        fields: &[
            ("nodeId", "string"),
            ("startedAt", "int"),
            ("observedAt", "int"),
            ("version", "int"),
            ("peerUrl", "string"),
            ("totalMemoryMiB", "int"),
            ("freeMemoryMiB", "int"),
            ("numCPUs", "int"),
            ("loadAvg1m", "float"),
            ("loadAvg5m", "float"),
            ("loadAvg15m", "float"),
            ("runningComponents", "[]ComponentInfo"),
            ("recentColdStarts", "[]ColdStart?"),
        ],
    },
    StructDef {
        name: "ComponentInfo",
        fields: &[
            ("componentName", "string"),
            ("componentVersion", "int"),
            ("status", "ComponentStatus"),
            ("maxConcurrency", "int"),
            ("memoryReservedMiB", "int"),
            ("startTime", "int"),
            ("lastRequestTime", "int"),
            ("totalRequests", "int"),
            ("activity", "[]ComponentActivity"),
            ("containerId", "string?"),
        ],
    },
    StructDef {
        name: "ComponentActivity",
        fields: &[("requests", "int"), ("concurrency", "float")],
    },
    StructDef {
        name: "ColdStart",
        fields: &[
            ("componentName", "string"),
            ("startedAt", "int"),
            ("durationMs", "int"),
            ("result", "string"),
        ],
    },
    StructDef {
        name: "ListProjectsInput",
        fields: &[("namePrefix", "string?")],
    },
    StructDef {
        name: "ProjectInfo",
        fields: &[
            ("projectName", "string"),
            ("componentCount", "int"),
            ("eventSourceCount", "int"),
        ],
    },
    StructDef {
        name: "ListProjectsOutput",
        fields: &[("projects", "[]ProjectInfo")],
    },
    StructDef {
        name: "PutProjectInput",
        fields: &[("project", "Project"), ("diffOnly", "bool?")],
    },
    StructDef {
        name: "PutProjectOutput",
        fields: &[
            ("name", "string"),
            ("componentsAdded", "[]Component"),
            ("componentsUpdated", "[]Component"),
            ("componentsRemoved", "[]string"),
            ("eventSourcesAdded", "[]EventSource"),
            ("eventSourcesUpdated", "[]EventSource"),
            ("eventSourcesRemoved", "[]string"),
        ],
    },
    StructDef {
        name: "GetProjectInput",
        fields: &[("name", "string")],
    },
    StructDef {
        name: "GetProjectOutput",
        fields: &[("project", "Project")],
    },
    StructDef {
        name: "RemoveProjectInput",
        fields: &[("name", "string")],
    },
    StructDef {
        name: "RemoveProjectOutput",
        fields: &[("name", "string"), ("found", "bool")],
    },
    StructDef {
        name: "PutComponentInput",
        fields: &[("component", "Component")],
    },
    StructDef {
        name: "PutComponentOutput",
        fields: &[("name", "string"), ("version", "int")],
    },
    StructDef {
        name: "GetComponentInput",
        fields: &[("name", "string")],
    },
    StructDef {
        name: "GetComponentOutput",
        fields: &[("component", "Component")],
    },
    StructDef {
        name: "RemoveComponentInput",
        fields: &[("name", "string")],
    },
    StructDef {
        name: "RemoveComponentOutput",
        fields: &[("name", "string"), ("found", "bool")],
    },
    StructDef {
        name: "ListComponentsInput",
        fields: &[
            ("namePrefix", "string?"),
            ("projectName", "string?"),
            ("limit", "int?"),
            ("nextToken", "string?"),
        ],
    },
    StructDef {
        name: "ListComponentsOutput",
        fields: &[("components", "[]Component"), ("nextToken", "string?")],
    },
    StructDef {
        name: "PutEventSourceInput",
        fields: &[("eventSource", "EventSource")],
    },
    StructDef {
        name: "PutEventSourceOutput",
        fields: &[("name", "string"), ("version", "int")],
    },
    StructDef {
        name: "GetEventSourceInput",
        fields: &[("name", "string")],
    },
    StructDef {
        name: "GetEventSourceOutput",
        fields: &[("eventSource", "EventSource")],
    },
    StructDef {
        name: "RemoveEventSourceInput",
        fields: &[("name", "string")],
    },
    StructDef {
        name: "RemoveEventSourceOutput",
        fields: &[("name", "string"), ("found", "bool")],
    },
    StructDef {
        name: "ToggleEventSourcesInput",
        fields: &[
            ("enabled", "bool"),
            ("namePrefix", "string?"),
            ("componentName", "string?"),
            ("projectName", "string?"),
            ("eventSourceType", "EventSourceType?"),
        ],
    },
    StructDef {
        name: "ToggleEventSourcesOutput",
        fields: &[("enabled", "bool"), ("eventSourceNames", "[]string")],
    },
    StructDef {
        name: "ListEventSourcesInput",
        fields: &[
            ("namePrefix", "string?"),
            ("componentName", "string?"),
            ("projectName", "string?"),
            ("eventSourceType", "EventSourceType?"),
            ("limit", "int?"),
            ("nextToken", "string?"),
        ],
    },
    StructDef {
        name: "ListEventSourcesOutput",
        fields: &[
            ("eventSources", "[]EventSourceWithStatus"),
            ("nextToken", "string?"),
        ],
    },
    StructDef {
        name: "DataChange",
        fields: &[
            ("putComponent", "Component?"),
            ("removeComponent", "RemoveComponentInput?"),
        ],
    },
    StructDef {
        name: "NotifyDataChangedInput",
        fields: &[("nodeId", "string"), ("changes", "[]DataChange")],
    },
    StructDef {
        name: "NotifyDataChangedOutput",
        fields: &[("respondingNodeId", "string")],
    },
    StructDef {
        name: "ListNodeStatusInput",
        fields: &[("forceRefresh", "bool?")],
    },
    StructDef {
        name: "ListNodeStatusOutput",
        fields: &[("respondingNodeId", "string"), ("nodes", "[]NodeStatus")],
    },
    StructDef {
        name: "GetNodeStatusInput",
        fields: &[("status", "NodeStatus?")],
    },
    StructDef {
        name: "GetNodeStatusOutput",
        fields: &[("status", "NodeStatus")],
    },
    StructDef {
        name: "StatusChangedInput",
        fields: &[
            ("nodeId", "string"),
            ("exiting", "bool"),
            ("status", "NodeStatus?"),
        ],
    },
    StructDef {
        name: "StatusChangedOutput",
        fields: &[("nodeId", "string")],
    },
    StructDef {
        name: "PlaceComponentInput",
        fields: &[("componentName", "string")],
    },
    StructDef {
        name: "PlaceComponentOutput",
        fields: &[("componentName", "string"), ("node", "NodeStatus")],
    },
    StructDef {
        name: "ComponentTarget",
        fields: &[
            ("componentName", "string"),
            ("requiredMemoryMiB", "int"),
            ("targetCount", "int"),
        ],
    },
    StructDef {
        name: "StartStopComponentsInput",
        fields: &[
            ("clientNodeId", "string"),
            ("targetVersion", "int"),
            ("targetCounts", "[]ComponentTarget"),
            ("returnStatus", "bool"),
            ("block", "bool"),
        ],
    },
    StructDef {
        name: "ComponentDelta",
        fields: &[("componentName", "string"), ("containerId", "string")],
    },
    StructDef {
        name: "StartStopComponentsOutput",
        fields: &[
            ("targetVersionMismatch", "bool"),
            ("targetStatus", "NodeStatus?"),
            ("started", "[]ComponentDelta"),
            ("stopped", "[]ComponentDelta"),
            ("errors", "[]string"),
        ],
    },
    StructDef {
        name: "TerminateNodeInput",
        fields: &[("awsLifecycleHook", "AwsLifecycleHook?")],
    },
    StructDef {
        name: "AwsLifecycleHook",
        fields: &[
            ("QueueUrl", "string"),
            ("MessageReceiptHandle", "string"),
            ("AutoScalingGroupName", "string"),
            ("InstanceId", "string"),
            ("LifecycleActionToken", "string"),
            ("LifecycleHookName", "string"),
        ],
    },
    StructDef {
        name: "TerminateNodeOutput",
        fields: &[
            ("acceptedMessage", "bool"),
            ("nodeId", "string"),
            ("instanceId", "string"),
        ],
    },
    StructDef {
        name: "ComponentLoad",
        fields: &[
            ("componentName", "string"),
            ("inflight", "int"),
            ("queued", "int"),
            ("instances", "int"),
            ("concurrency6s", "float"),
            ("concurrency60s", "float"),
            ("lastRequestTime", "int"),
        ],
    },
    StructDef {
        name: "ReportLoadInput",
        fields: &[
            ("nodeId", "string"),
            ("observedAt", "int"),
            ("components", "[]ComponentLoad"),
        ],
    },
    StructDef {
        name: "ReportLoadOutput",
        fields: &[("respondingNodeId", "string")],
    },
];

/// A parsed type spec.
struct TypeSpec<'a> {
    base: &'a str,
    array: bool,
    optional: bool,
}

fn parse_spec(spec: &str) -> TypeSpec<'_> {
    let (spec, optional) = match spec.strip_suffix('?') {
        Some(s) => (s, true),
        None => (spec, false),
    };
    let (base, array) = match spec.strip_prefix("[]") {
        Some(s) => (s, true),
        None => (spec, false),
    };
    TypeSpec {
        base,
        array,
        optional,
    }
}

fn struct_def(name: &str) -> Option<&'static StructDef> {
    STRUCTS.iter().find(|s| s.name == name)
}

/// The input type of `Interface.Method`, if the method exists.
pub fn input_type(method: &str) -> Option<&'static str> {
    let (iface, func) = method.split_once('.')?;
    INTERFACES
        .iter()
        .find(|i| i.name == iface)?
        .functions
        .iter()
        .find(|f| f.0 == func)
        .map(|f| f.1)
}

/// Checks that `value` carries every non-optional field of struct `ty`, recursively. The
/// error names the path of the first missing field, as `input.project.components[0].name`.
pub fn check_required(ty: &str, value: &Value) -> Result<(), String> {
    check_at(ty, value, "input")
}

fn check_at(ty: &str, value: &Value, path: &str) -> Result<(), String> {
    let Some(def) = struct_def(ty) else {
        return Ok(()); // primitives and enums: serde checks their types
    };
    let Some(obj) = value.as_object() else {
        return Err(format!("{path} must be an object of type {ty}"));
    };
    for (field, spec) in def.fields {
        let spec = parse_spec(spec);
        let field_path = format!("{path}.{field}");
        match obj.get(*field) {
            None | Some(Value::Null) => {
                if !spec.optional {
                    return Err(format!("{field_path} is required"));
                }
            }
            Some(v) if spec.array => {
                let Some(items) = v.as_array() else {
                    return Err(format!("{field_path} must be an array"));
                };
                for (i, item) in items.iter().enumerate() {
                    check_at(spec.base, item, &format!("{field_path}[{i}]"))?;
                }
            }
            Some(v) => check_at(spec.base, v, &field_path)?,
        }
    }
    Ok(())
}

/// The whole interface in barrister's JSON form, the answer to `barrister-idl`.
pub fn barrister_json() -> Value {
    let mut out = Vec::new();
    for s in STRUCTS {
        let fields: Vec<Value> = s
            .fields
            .iter()
            .map(|(name, spec)| {
                let t = parse_spec(spec);
                json!({"name": name, "type": t.base, "optional": t.optional,
                       "is_array": t.array, "comment": ""})
            })
            .collect();
        out.push(
            json!({"type": "struct", "name": s.name, "comment": "", "extends": "",
                        "fields": fields}),
        );
    }
    for (name, values) in ENUMS {
        let values: Vec<Value> = values
            .iter()
            .map(|v| json!({"value": v, "comment": ""}))
            .collect();
        out.push(json!({"type": "enum", "name": name, "comment": "", "values": values}));
    }
    for iface in INTERFACES {
        let functions: Vec<Value> = iface
            .functions
            .iter()
            .map(|(f, input, output)| {
                json!({"name": f, "comment": "",
                       "params": [{"name": "input", "type": input, "optional": false, "is_array": false}],
                       "returns": {"type": output, "optional": false, "is_array": false}})
            })
            .collect();
        out.push(
            json!({"type": "interface", "name": iface.name, "comment": "",
                        "functions": functions}),
        );
    }
    out.push(json!({"type": "meta", "barrister_version": "0.1.6",
                    "date_generated": 0, "checksum": ""}));
    Value::Array(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn primitive(base: &str) -> bool {
        matches!(base, "string" | "int" | "float" | "bool")
    }

    #[test]
    fn every_type_named_in_the_table_is_defined() {
        let known =
            |t: &str| primitive(t) || struct_def(t).is_some() || ENUMS.iter().any(|e| e.0 == t);
        for s in STRUCTS {
            for (f, spec) in s.fields {
                let base = parse_spec(spec).base;
                assert!(known(base), "{}.{f}: unknown type {base}", s.name);
            }
        }
        for i in INTERFACES {
            for (f, input, output) in i.functions {
                assert!(struct_def(input).is_some(), "{f} input {input}");
                assert!(struct_def(output).is_some(), "{f} output {output}");
            }
        }
    }

    #[test]
    fn missing_required_fields_are_named_by_path() {
        let v = json!({"project": {"name": "p", "components": [
            {"component": {"name": "c", "environment": [], "version": 0}, "eventSources": []}]}});
        assert_eq!(
            check_required("PutProjectInput", &v).unwrap_err(),
            "input.project.components[0].component.maxConcurrency is required"
        );
        let ok = json!({"name": "x"});
        assert!(check_required("GetComponentInput", &ok).is_ok());
        assert_eq!(
            input_type("MaelstromService.PutProject"),
            Some("PutProjectInput")
        );
        assert_eq!(input_type("MaelstromService.Nope"), None);
    }
}
