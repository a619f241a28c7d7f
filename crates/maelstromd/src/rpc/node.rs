//! `NodeService` (spec §7.5): node status, status broadcasts, placement, the
//! `StartStopComponents` call that sets convergers' targets under optimistic concurrency, node
//! termination and the load reports that feed the autoscaler.

use super::{decode, encode};
use crate::node::Node;
use maelstromd_api::model::NodeStatus;
use maelstromd_api::rpc::*;
use serde_json::Value;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// Runs one method.
pub async fn dispatch(node: &Arc<Node>, method: &str, input: Value) -> Result<Value, RpcError> {
    match method {
        "ListNodeStatus" => {
            let i: ListNodeStatusInput = decode(input)?;
            encode(ListNodeStatusOutput {
                responding_node_id: node.id.clone(),
                nodes: list_node_status(node, i.force_refresh).await,
            })
        }
        "GetStatus" => encode(GetStatusOutput {
            status: node.status().await,
        }),
        "StatusChanged" => {
            let i: StatusChangedInput = decode(input)?;
            crate::cluster::status_received(node, i).await;
            encode(StatusChangedOutput {
                node_id: node.id.clone(),
            })
        }
        "PlaceComponent" => {
            let i: PlaceComponentInput = decode(input)?;
            let name = i.component_name.to_lowercase();
            let status = crate::placement::place_component(node, &name).await?;
            encode(PlaceComponentOutput {
                component_name: name,
                node: status,
            })
        }
        "StartStopComponents" => encode(start_stop_components(node, decode(input)?).await?),
        "TerminateNode" => {
            let i: TerminateNodeInput = decode(input)?;
            let instance = i
                .aws_lifecycle_hook
                .as_ref()
                .and_then(|h| h.get("InstanceId"))
                .and_then(|v| v.as_str())
                .unwrap_or("");
            let accepted = !node.cfg.instance_id.is_empty() && instance == node.cfg.instance_id;
            if accepted {
                tracing::warn!("TerminateNode accepted; shutting down");
                node.request_shutdown();
            }
            encode(TerminateNodeOutput {
                accepted_message: accepted,
                node_id: node.id.clone(),
                instance_id: node.cfg.instance_id.clone(),
            })
        }
        "ReportLoad" => {
            let i: ReportLoadInput = decode(input)?;
            node.loads.report(i);
            encode(RespondingNodeOutput {
                responding_node_id: node.id.clone(),
            })
        }
        _ => Err(RpcError::new(
            METHOD_NOT_FOUND,
            format!("method not found: NodeService.{method}"),
        )),
    }
}

/// This node's status and every peer's, by node id; with `refresh`, peers are asked now and
/// a peer that does not answer is reported with its last known status.
pub async fn list_node_status(node: &Arc<Node>, refresh: bool) -> Vec<NodeStatus> {
    let mut nodes = vec![node.status().await];
    if refresh {
        let asks = node.cluster.links().into_iter().map(|link| async move {
            let client = link.rpc.clone().with_timeout(Duration::from_secs(30));
            let r: Result<GetStatusOutput, _> = client
                .call("NodeService.GetStatus", &serde_json::json!({}))
                .await;
            r.ok().map(|o| o.status)
        });
        for status in futures_util::future::join_all(asks)
            .await
            .into_iter()
            .flatten()
        {
            node.cluster.accept(&node.id, status);
        }
        crate::cluster::sync_dispensers(node).await;
    }
    nodes.extend(node.cluster.peer_statuses());
    nodes.sort_by(|a, b| a.node_id.cmp(&b.node_id));
    nodes
}

/// `StartStopComponents`: applies target counts when the caller planned against this node's
/// current status version, then (with `block`) waits until every converger has finished.
pub async fn start_stop_components(
    node: &Arc<Node>,
    input: StartStopComponentsInput,
) -> Result<StartStopComponentsOutput, RpcError> {
    if node.draining() {
        return Err(RpcError::misc(
            "nodesvc: StartStopComponents: node is terminated",
        ));
    }
    let before: HashSet<String> = node.containers.all().iter().map(|c| c.id.clone()).collect();
    let waits = {
        let _guard = node.start_stop_lock.lock().await;
        let current = node.status_version();
        if input.target_version != current {
            return Ok(StartStopComponentsOutput {
                target_version_mismatch: true,
                target_status: Some(node.status().await),
                ..Default::default()
            });
        }
        node.bump_status_version();
        let mut waits = Vec::new();
        for t in &input.target_counts {
            let conv = node.convergers.get_or_start(node, &t.component_name);
            let generation = conv.set_target(t.target_count.max(0) as usize);
            waits.push((t.component_name.clone(), conv, generation));
        }
        waits
    };
    let mut out = StartStopComponentsOutput::default();
    if input.block {
        for (name, conv, generation) in waits {
            if let Err(e) = conv.wait(generation).await {
                out.errors.push(format!("{name}: {e}"));
            }
        }
    }
    let after = node.containers.all();
    let after_ids: HashSet<&str> = after.iter().map(|c| c.id.as_str()).collect();
    for c in &after {
        if !before.contains(&c.id) {
            out.started.push(ComponentDelta {
                component_name: c.component.clone(),
                container_id: c.id.clone(),
            });
        }
    }
    for id in before.iter().filter(|id| !after_ids.contains(id.as_str())) {
        out.stopped.push(ComponentDelta {
            component_name: String::new(),
            container_id: id.clone(),
        });
    }
    if input.return_status {
        out.target_status = Some(node.status().await);
    }
    Ok(out)
}
