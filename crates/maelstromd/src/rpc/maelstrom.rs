//! `MaelstromService`: projects, components and event sources (spec §7.4, §5.6, §5.7) —
//! naming and validation, the put/diff of a project, and the notifications that make every
//! node act on a change.

use super::{decode, encode};
use crate::db::ListFilter;
use crate::node::Node;
use maelstromd_api::model::*;
use maelstromd_api::rpc::*;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

/// Runs one method.
pub async fn dispatch(node: &Arc<Node>, method: &str, input: Value) -> Result<Value, RpcError> {
    match method {
        "ListProjects" => {
            let i: ListProjectsInput = decode(input)?;
            let projects = node.db.list_projects(&i.name_prefix.to_lowercase()).await?;
            encode(ListProjectsOutput { projects })
        }
        "PutProject" => encode(put_project(node, decode(input)?).await?),
        "GetProject" => {
            let i: NameInput = decode(input)?;
            encode(GetProjectOutput {
                project: get_project(node, &i.name.to_lowercase()).await?,
            })
        }
        "RemoveProject" => {
            let i: NameInput = decode(input)?;
            encode(remove_project(node, &i.name.to_lowercase()).await?)
        }
        "PutComponent" => {
            let i: PutComponentInput = decode(input)?;
            encode(put_component(node, i.component).await?)
        }
        "GetComponent" => {
            let i: NameInput = decode(input)?;
            let name = i.name.to_lowercase();
            let c = node.db.get_component(&name).await?.ok_or_else(|| {
                RpcError::not_found(format!("No Component found with name: {name}"))
            })?;
            encode(GetComponentOutput {
                component: redact(c),
            })
        }
        "RemoveComponent" => {
            let i: NameInput = decode(input)?;
            let name = i.name.to_lowercase();
            let found = node.db.remove_component(&name).await?;
            if found {
                node.data_changed(vec![removal(&name)], true).await;
            }
            encode(RemoveOutput { name, found })
        }
        "ListComponents" => {
            let i: ListComponentsInput = decode(input)?;
            let filter = ListFilter {
                name_prefix: i.name_prefix.to_lowercase(),
                project_name: i.project_name.to_lowercase(),
                limit: page_limit(i.limit)?,
                offset: page_offset(&i.next_token)?,
                ..Default::default()
            };
            let (components, next_token) = node.db.list_components(&filter).await?;
            encode(ListComponentsOutput {
                components: components.into_iter().map(redact).collect(),
                next_token,
            })
        }
        "PutEventSource" => {
            let i: PutEventSourceInput = decode(input)?;
            encode(put_event_source(node, i.event_source).await?)
        }
        "GetEventSource" => {
            let i: NameInput = decode(input)?;
            let name = i.name.to_lowercase();
            let es = node.db.get_event_source(&name).await?.ok_or_else(|| {
                RpcError::not_found(format!("No EventSource found with name: {name}"))
            })?;
            encode(GetEventSourceOutput {
                event_source: es.event_source,
            })
        }
        "RemoveEventSource" => {
            let i: NameInput = decode(input)?;
            let name = i.name.to_lowercase();
            let found = node.db.remove_event_source(&name).await?;
            node.data_changed(Vec::new(), true).await;
            encode(RemoveOutput { name, found })
        }
        "ToggleEventSources" => {
            let i: ToggleEventSourcesInput = decode(input)?;
            let filter = ListFilter {
                name_prefix: i.name_prefix.to_lowercase(),
                component_name: i.component_name.to_lowercase(),
                project_name: i.project_name.to_lowercase(),
                kind: event_source_type(&i.event_source_type)?,
                ..Default::default()
            };
            let names = node.db.toggle_event_sources(i.enabled, &filter).await?;
            node.data_changed(Vec::new(), true).await;
            encode(ToggleEventSourcesOutput {
                enabled: i.enabled,
                event_source_names: names,
            })
        }
        "ListEventSources" => {
            let i: ListEventSourcesInput = decode(input)?;
            let filter = ListFilter {
                name_prefix: i.name_prefix.to_lowercase(),
                component_name: i.component_name.to_lowercase(),
                project_name: i.project_name.to_lowercase(),
                kind: event_source_type(&i.event_source_type)?,
                limit: page_limit(i.limit)?,
                offset: page_offset(&i.next_token)?,
            };
            let (event_sources, next_token) = node.db.list_event_sources(&filter).await?;
            encode(ListEventSourcesOutput {
                event_sources,
                next_token,
            })
        }
        "NotifyDataChanged" => {
            let i: NotifyDataChangedInput = decode(input)?;
            node.data_changed(i.changes, false).await;
            encode(RespondingNodeOutput {
                responding_node_id: node.id.clone(),
            })
        }
        _ => Err(RpcError::new(
            METHOD_NOT_FOUND,
            format!("method not found: MaelstromService.{method}"),
        )),
    }
}

fn removal(name: &str) -> DataChange {
    DataChange {
        put_component: None,
        remove_component: Some(NameInput { name: name.into() }),
    }
}

fn put(c: &Component) -> DataChange {
    DataChange {
        put_component: Some(redact(c.clone())),
        remove_component: None,
    }
}

fn page_limit(limit: i64) -> Result<i64, RpcError> {
    match limit {
        0 => Ok(1000),
        1..=1000 => Ok(limit),
        _ => Err(RpcError::invalid(format!(
            "input.limit {limit} is out of range (1..1000)"
        ))),
    }
}

fn page_offset(token: &str) -> Result<i64, RpcError> {
    if token.is_empty() {
        return Ok(0);
    }
    token
        .parse::<i64>()
        .ok()
        .filter(|n| *n >= 0)
        .ok_or_else(|| RpcError::invalid(format!("input.nextToken '{token}' is invalid")))
}

fn event_source_type(t: &str) -> Result<String, RpcError> {
    let t = t.trim().to_lowercase();
    if t.is_empty() || EventSourceType::parse(&t).is_some() {
        Ok(t)
    } else {
        Err(RpcError::invalid(format!(
            "input.eventSourceType '{t}' is invalid (http, cron, sqs or awsstepfunc)"
        )))
    }
}

/// The write-only password is never returned (spec §3.h).
fn redact(mut c: Component) -> Component {
    if let Some(d) = c.docker.as_mut() {
        d.pull_password.clear();
    }
    c
}

fn valid_name(name: &str, max: usize) -> bool {
    !name.is_empty()
        && name.len() <= max
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn invalid_name(path: &str, max: usize) -> RpcError {
    RpcError::invalid(format!(
        "{path} is invalid (only alpha-numeric chars, _ - are valid, at most {max} bytes)"
    ))
}

fn prefixed(project: &str, name: &str) -> String {
    let name = name.to_lowercase();
    let prefix = format!("{project}_");
    if name.starts_with(&prefix) {
        name
    } else {
        format!("{prefix}{name}")
    }
}

/// Checks a component's own fields (after naming).
fn validate_component(c: &Component, path: &str) -> Result<(), RpcError> {
    if !valid_name(&c.name, 60) {
        return Err(invalid_name(path, 60));
    }
    let Some(d) = &c.docker else {
        return Err(RpcError::invalid(format!("{path}.docker is required")));
    };
    if d.image.trim().is_empty() {
        return Err(RpcError::invalid(format!(
            "{path}.docker.image is required"
        )));
    }
    if c.max_instances > 0 && c.max_instances < c.min_instances {
        return Err(RpcError::invalid(format!(
            "{path}.maxInstances ({}) is below minInstances ({})",
            c.max_instances, c.min_instances
        )));
    }
    // Bounds that keep times and counts meaningful (and arithmetic on them safe).
    const YEAR: i64 = 365 * 86_400;
    for (field, value, max) in [
        ("maxDurationSeconds", c.max_duration_seconds, YEAR),
        ("docker.idleTimeoutSeconds", d.idle_timeout_seconds, YEAR),
        (
            "docker.httpStartHealthCheckSeconds",
            d.http_start_health_check_seconds,
            86_400,
        ),
        (
            "docker.httpHealthCheckSeconds",
            d.http_health_check_seconds,
            86_400,
        ),
        ("maxConcurrency", c.max_concurrency, 1_000_000),
        ("maxQueuedRequests", c.max_queued_requests, 1_000_000),
        ("docker.reserveMemoryMiB", d.reserve_memory_mib, 1 << 30),
    ] {
        if value > max {
            return Err(RpcError::invalid(format!(
                "{path}.{field} is {value}; the most allowed is {max}"
            )));
        }
    }
    if !d.pull_command.is_empty() && d.pull_command.trim().is_empty() {
        return Err(RpcError::invalid(format!(
            "{path}.docker.pullCommand is blank"
        )));
    }
    for u in &d.ulimits {
        crate::docker::parse_ulimit(u)
            .map_err(|m| RpcError::invalid(format!("{path}.docker.ulimits: {m}")))?;
    }
    for p in &d.ports {
        crate::docker::parse_port_spec(p)
            .map_err(|m| RpcError::invalid(format!("{path}.docker.ports: {m}")))?;
    }
    Ok(())
}

fn validate_event_source(es: &EventSource, path: &str) -> Result<(), RpcError> {
    if !valid_name(&es.name, 60) {
        return Err(invalid_name(path, 60));
    }
    if es.kind_count() != 1 {
        return Err(RpcError::invalid(format!(
            "{path} must have exactly one of http, cron, sqs, awsstepfunc"
        )));
    }
    if let Some(h) = &es.http
        && h.hostname.is_empty()
        && h.path_prefix.is_empty()
    {
        return Err(RpcError::invalid(format!(
            "{path}.http needs a hostname or a pathPrefix"
        )));
    }
    if let Some(c) = &es.cron {
        crate::cron::parse_schedule(&c.schedule)
            .map_err(|m| RpcError::invalid(format!("{path}.cron.schedule: {m}")))?;
        if c.http.method.is_empty() || c.http.path.is_empty() {
            return Err(RpcError::invalid(format!(
                "{path}.cron.http needs a method and a path"
            )));
        }
    }
    if let Some(s) = &es.sqs
        && (s.queue_name.is_empty() || s.path.is_empty())
    {
        return Err(RpcError::invalid(format!(
            "{path}.sqs needs a queueName and a path"
        )));
    }
    if let Some(s) = &es.aws_step_func
        && (s.activity_name.is_empty() || s.path.is_empty())
    {
        return Err(RpcError::invalid(format!(
            "{path}.awsStepFunc needs an activityName and a path"
        )));
    }
    Ok(())
}

/// Names the project's parts (lowercase, `<project>_` prefix, component links) and validates
/// them; nothing is written when anything is invalid.
fn normalise_project(mut p: Project) -> Result<Project, RpcError> {
    p.name = p.name.trim().to_lowercase();
    if !valid_name(&p.name, 20) {
        return Err(invalid_name("input.project.name", 20));
    }
    if p.components.is_empty() {
        return Err(RpcError::invalid("input.project.components is empty"));
    }
    let mut seen = HashMap::new();
    for (i, cws) in p.components.iter_mut().enumerate() {
        let path = format!("input.project.components[{i}].component");
        let c = &mut cws.component;
        c.name = prefixed(&p.name, &c.name);
        c.project_name = p.name.clone();
        c.environment.sort_by(|a, b| a.name.cmp(&b.name));
        validate_component(c, &path)?;
        if seen.insert(c.name.clone(), ()).is_some() {
            return Err(RpcError::invalid(format!(
                "{path}: component {} appears twice",
                c.name
            )));
        }
        for (j, ews) in cws.event_sources.iter_mut().enumerate() {
            let es = &mut ews.event_source;
            es.name = prefixed(&p.name, &es.name);
            es.component_name = c.name.clone();
            es.project_name = p.name.clone();
            validate_event_source(
                es,
                &format!("input.project.components[{i}].eventSources[{j}].eventSource"),
            )?;
        }
    }
    Ok(p)
}

fn same_component(a: &Component, b: &Component) -> bool {
    let strip = |c: &Component| {
        let mut c = c.clone();
        c.version = 0;
        c.modified_at = 0;
        c
    };
    strip(a) == strip(b)
}

fn same_event_source(a: &EventSource, b: &EventSource) -> bool {
    let strip = |e: &EventSource| {
        let mut e = e.clone();
        e.version = 0;
        e.modified_at = 0;
        e
    };
    strip(a) == strip(b)
}

/// `PutProject` (spec §5.7): diff against the stored rows, then (unless `diffOnly`) remove
/// components, remove event sources, put components, put event sources, and notify.
async fn put_project(
    node: &Arc<Node>,
    input: PutProjectInput,
) -> Result<PutProjectOutput, RpcError> {
    let project = normalise_project(input.project)?;
    let all = ListFilter {
        project_name: project.name.clone(),
        ..Default::default()
    };
    let (stored_components, _) = node.db.list_components(&all).await?;
    let (stored_sources, _) = node.db.list_event_sources(&all).await?;
    let stored_c: HashMap<&str, &Component> = stored_components
        .iter()
        .map(|c| (c.name.as_str(), c))
        .collect();
    let stored_e: HashMap<&str, &EventSourceWithStatus> = stored_sources
        .iter()
        .map(|e| (e.event_source.name.as_str(), e))
        .collect();

    let mut out = PutProjectOutput {
        name: project.name.clone(),
        ..Default::default()
    };
    let mut component_puts = Vec::new();
    let mut source_puts = Vec::new();
    for cws in &project.components {
        let mut c = cws.component.clone();
        match stored_c.get(c.name.as_str()) {
            Some(old) => {
                // An empty password with an unchanged user keeps the stored one (write-only).
                if let (Some(new_d), Some(old_d)) = (c.docker.as_mut(), old.docker.as_ref())
                    && new_d.pull_password.is_empty()
                    && new_d.pull_username == old_d.pull_username
                {
                    new_d.pull_password = old_d.pull_password.clone();
                }
                c.version = old.version;
                c.modified_at = old.modified_at;
                if !same_component(&c, old) {
                    out.components_updated.push(redact(c.clone()));
                    component_puts.push(c);
                }
            }
            None => {
                c.version = 0;
                out.components_added.push(redact(c.clone()));
                component_puts.push(c);
            }
        }
        for ews in &cws.event_sources {
            let mut es = ews.event_source.clone();
            match stored_e.get(es.name.as_str()) {
                Some(old) => {
                    es.version = old.event_source.version;
                    es.modified_at = old.event_source.modified_at;
                    // The enabled flag is not part of the diff (spec §3.j #9).
                    if !same_event_source(&es, &old.event_source) {
                        out.event_sources_updated.push(es.clone());
                        source_puts.push((es, None));
                    }
                }
                None => {
                    es.version = 0;
                    out.event_sources_added.push(es.clone());
                    source_puts.push((es, Some(ews.enabled)));
                }
            }
        }
    }
    let new_components: Vec<&str> = project
        .components
        .iter()
        .map(|c| c.component.name.as_str())
        .collect();
    let new_sources: Vec<&str> = project
        .components
        .iter()
        .flat_map(|c| c.event_sources.iter().map(|e| e.event_source.name.as_str()))
        .collect();
    out.components_removed = stored_components
        .iter()
        .filter(|c| !new_components.contains(&c.name.as_str()))
        .map(|c| c.name.clone())
        .collect();
    out.event_sources_removed = stored_sources
        .iter()
        .filter(|e| !new_sources.contains(&e.event_source.name.as_str()))
        .map(|e| e.event_source.name.clone())
        .collect();
    if input.diff_only {
        return Ok(out);
    }

    let mut changes = Vec::new();
    for name in &out.components_removed {
        node.db.remove_component(name).await?;
        changes.push(removal(name));
    }
    for name in &out.event_sources_removed {
        node.db.remove_event_source(name).await?;
    }
    for c in &component_puts {
        let stored = if c.version == 0 {
            node.db.insert_component(c).await?
        } else {
            node.db.update_component(c).await?
        };
        changes.push(put(&stored));
    }
    for (es, enabled) in &source_puts {
        match enabled {
            Some(enabled) => node.db.insert_event_source(es, *enabled).await?,
            None => node.db.update_event_source(es).await?,
        };
    }
    node.data_changed(changes, true).await;
    Ok(out)
}

async fn get_project(node: &Arc<Node>, name: &str) -> Result<Project, RpcError> {
    let all = ListFilter {
        project_name: name.into(),
        ..Default::default()
    };
    let (components, _) = node.db.list_components(&all).await?;
    if components.is_empty() {
        return Err(RpcError::not_found(format!(
            "No Project found with name: {name}"
        )));
    }
    let (sources, _) = node.db.list_event_sources(&all).await?;
    Ok(Project {
        name: name.into(),
        components: components
            .into_iter()
            .map(|c| ComponentWithEventSources {
                event_sources: sources
                    .iter()
                    .filter(|e| e.event_source.component_name == c.name)
                    .cloned()
                    .collect(),
                component: redact(c),
            })
            .collect(),
    })
}

/// `RemoveProject`: deletes the project's rows and tells the cluster, so containers stop
/// (spec §3.j #5).
async fn remove_project(node: &Arc<Node>, name: &str) -> Result<RemoveOutput, RpcError> {
    let all = ListFilter {
        project_name: name.into(),
        ..Default::default()
    };
    let (components, _) = node.db.list_components(&all).await?;
    let (sources, _) = node.db.list_event_sources(&all).await?;
    let mut changes = Vec::new();
    for s in &sources {
        node.db.remove_event_source(&s.event_source.name).await?;
    }
    for c in &components {
        node.db.remove_component(&c.name).await?;
        changes.push(removal(&c.name));
    }
    let found = !components.is_empty() || !sources.is_empty();
    node.data_changed(changes, true).await;
    Ok(RemoveOutput {
        name: name.into(),
        found,
    })
}

async fn put_component(node: &Arc<Node>, mut c: Component) -> Result<PutOutput, RpcError> {
    c.name = c.name.trim().to_lowercase();
    c.project_name = c.project_name.trim().to_lowercase();
    validate_component(&c, "input.component")?;
    let stored = if c.version == 0 {
        node.db.insert_component(&c).await?
    } else {
        let old = node.db.get_component(&c.name).await?;
        match old {
            Some(old) if old.version == c.version => {
                if let (Some(new_d), Some(old_d)) = (c.docker.as_mut(), old.docker.as_ref())
                    && new_d.pull_password.is_empty()
                    && new_d.pull_username == old_d.pull_username
                {
                    new_d.pull_password = old_d.pull_password.clone();
                }
                node.db.update_component(&c).await?
            }
            _ => {
                return Err(RpcError::new(
                    VERSION_CONFLICT,
                    "PutComponent: previousVersion is incorrect",
                ));
            }
        }
    };
    node.data_changed(vec![put(&stored)], true).await;
    Ok(PutOutput {
        name: stored.name,
        version: stored.version,
    })
}

async fn put_event_source(node: &Arc<Node>, mut es: EventSource) -> Result<PutOutput, RpcError> {
    es.name = es.name.trim().to_lowercase();
    es.component_name = es.component_name.trim().to_lowercase();
    validate_event_source(&es, "input.eventSource")?;
    let component = node
        .db
        .get_component(&es.component_name)
        .await?
        .ok_or_else(|| {
            RpcError::not_found(format!(
                "eventSource.component not found: {}",
                es.component_name
            ))
        })?;
    es.project_name = component.project_name;
    let stored = if es.version == 0 {
        node.db.insert_event_source(&es, true).await?
    } else {
        node.db.update_event_source(&es).await?
    };
    node.data_changed(Vec::new(), true).await;
    Ok(PutOutput {
        name: stored.name,
        version: stored.version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(yaml_like: Vec<(&str, Vec<&str>)>) -> Project {
        Project {
            name: "Demo".into(),
            components: yaml_like
                .into_iter()
                .map(|(c, sources)| ComponentWithEventSources {
                    component: Component {
                        name: c.into(),
                        max_concurrency: 1,
                        docker: Some(DockerComponent {
                            image: "img".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                    event_sources: sources
                        .into_iter()
                        .map(|s| EventSourceWithStatus {
                            event_source: EventSource {
                                name: s.into(),
                                http: Some(HttpEventSource {
                                    hostname: "a.test".into(),
                                    ..Default::default()
                                }),
                                ..Default::default()
                            },
                            enabled: true,
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    #[test]
    fn names_are_lowercased_prefixed_and_linked() {
        let p = normalise_project(project(vec![
            ("Web", vec!["web-http"]),
            ("demo_api", vec![]),
        ]))
        .unwrap();
        assert_eq!(p.name, "demo");
        assert_eq!(p.components[0].component.name, "demo_web");
        assert_eq!(p.components[0].component.project_name, "demo");
        assert_eq!(
            p.components[1].component.name, "demo_api",
            "already prefixed"
        );
        let es = &p.components[0].event_sources[0].event_source;
        assert_eq!(
            (es.name.as_str(), es.component_name.as_str()),
            ("demo_web-http", "demo_web")
        );
    }

    #[test]
    fn invalid_names_are_reported_with_their_path() {
        let e = normalise_project(project(vec![("bad name!", vec![])])).unwrap_err();
        assert_eq!(e.code, INVALID_INPUT);
        assert!(e.message.starts_with("input.project.components[0].component is invalid (only alpha-numeric chars, _ - are valid"), "{}", e.message);
        let mut long = project(vec![("web", vec![])]);
        long.name = "a".repeat(21);
        assert!(
            normalise_project(long)
                .unwrap_err()
                .message
                .starts_with("input.project.name is invalid")
        );
        let mut no_route = project(vec![("web", vec!["x"])]);
        no_route.components[0].event_sources[0].event_source.http =
            Some(HttpEventSource::default());
        assert!(
            normalise_project(no_route)
                .unwrap_err()
                .message
                .contains("needs a hostname or a pathPrefix")
        );
        let empty = Project {
            name: "x".into(),
            components: vec![],
        };
        assert_eq!(
            normalise_project(empty).unwrap_err().message,
            "input.project.components is empty"
        );
    }
}
