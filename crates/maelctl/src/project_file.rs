//! Reading `maelstrom.yml` into a [`Project`] (spec §5): interpolation, strict parsing (an
//! unknown key is an error naming it, with file and line), the envfile and environment
//! merge, and the `crontab` block. Names are sent as written; the server lowercases and
//! prefixes them.

use crate::interpolate::interpolate;
use maelstromd_api::model::*;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// A project file that cannot be used, with the place and the fix.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ProjectFileError(pub String);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct YamlProject {
    name: String,
    #[serde(default)]
    envfile: Option<String>,
    #[serde(default)]
    environment: Vec<String>,
    components: BTreeMap<String, YamlComponent>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum StringOrList {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct YamlVolume {
    #[serde(default, rename = "type")]
    kind: String,
    source: String,
    target: String,
    #[serde(default)]
    readonly: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct YamlComponent {
    image: String,
    #[serde(default)]
    command: Vec<String>,
    #[serde(default)]
    entrypoint: Vec<String>,
    #[serde(default)]
    environment: Vec<String>,
    #[serde(default)]
    mininstances: i64,
    #[serde(default)]
    maxinstances: i64,
    #[serde(default)]
    maxinstancespernode: i64,
    #[serde(default)]
    maxconcurrency: i64,
    #[serde(default)]
    softconcurrencylimit: bool,
    #[serde(default)]
    scaleupconcurrencypct: f64,
    #[serde(default)]
    scaledownconcurrencypct: f64,
    #[serde(default)]
    maxdurationseconds: i64,
    #[serde(default)]
    maxqueuedrequests: i64,
    #[serde(default)]
    idletimeoutseconds: i64,
    #[serde(default)]
    httpport: i64,
    #[serde(default)]
    httphealthcheckpath: String,
    #[serde(default)]
    httpstarthealthcheckseconds: i64,
    #[serde(default)]
    httphealthcheckseconds: i64,
    #[serde(default)]
    httphealthcheckmaxfailures: i64,
    #[serde(default)]
    healthcheckfailedcommand: Vec<String>,
    #[serde(default)]
    reservememory: i64,
    #[serde(default)]
    limitmemory: i64,
    #[serde(default)]
    cpushares: i64,
    #[serde(default)]
    containerinit: bool,
    #[serde(default)]
    ports: Vec<String>,
    #[serde(default)]
    volumes: Vec<YamlVolume>,
    #[serde(default)]
    networkname: String,
    #[serde(default)]
    dns: Vec<String>,
    #[serde(default)]
    dnsoptions: Vec<String>,
    #[serde(default)]
    dnssearch: Vec<String>,
    #[serde(default)]
    ulimits: Vec<String>,
    #[serde(default)]
    logdriver: String,
    #[serde(default)]
    logdriveroptions: BTreeMap<String, String>,
    #[serde(default)]
    pullusername: String,
    #[serde(default)]
    pullpassword: String,
    #[serde(default)]
    pullcommand: Option<StringOrList>,
    #[serde(default)]
    pullimageonput: bool,
    #[serde(default)]
    pullimageonstart: bool,
    #[serde(default)]
    startparallelism: Option<String>,
    #[serde(default)]
    restartorder: Option<String>,
    #[serde(default)]
    hostname: String,
    #[serde(default)]
    domainname: String,
    #[serde(default)]
    user: String,
    #[serde(default)]
    capadd: Vec<String>,
    #[serde(default)]
    capdrop: Vec<String>,
    #[serde(default)]
    crontab: String,
    #[serde(default)]
    eventsources: BTreeMap<String, YamlEventSource>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct YamlEventSource {
    #[serde(default)]
    http: Option<YamlHttp>,
    #[serde(default)]
    cron: Option<YamlCron>,
    #[serde(default)]
    sqs: Option<YamlSqs>,
    #[serde(default)]
    awsstepfunc: Option<YamlStepFunc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct YamlHttp {
    #[serde(default)]
    hostname: String,
    #[serde(default)]
    pathprefix: String,
    #[serde(default)]
    stripprefix: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct YamlCron {
    schedule: String,
    http: YamlCronHttp,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct YamlCronHttp {
    method: String,
    path: String,
    #[serde(default)]
    data: String,
    #[serde(default)]
    headers: Vec<YamlHeader>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct YamlHeader {
    name: String,
    value: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct YamlSqs {
    queuename: String,
    #[serde(default)]
    nameasprefix: bool,
    path: String,
    #[serde(default)]
    maxconcurrency: i64,
    #[serde(default)]
    messagesperpoll: i64,
    #[serde(default)]
    concurrencyperpoller: i64,
    #[serde(default)]
    visibilitytimeout: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct YamlStepFunc {
    activityname: String,
    path: String,
    #[serde(default)]
    maxconcurrency: i64,
    #[serde(default)]
    concurrencyperpoller: i64,
}

/// Splits `NAME=value` lines at the first `=` into a map; blank lines and `#` comments are
/// skipped (spec §3.j #17).
pub fn parse_env_lines<'a>(
    lines: impl IntoIterator<Item = &'a str>,
    what: &str,
) -> Result<BTreeMap<String, String>, ProjectFileError> {
    let mut out = BTreeMap::new();
    for (i, line) in lines.into_iter().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            return Err(ProjectFileError(format!(
                "{what}, entry {}: '{line}' is not NAME=value",
                i + 1
            )));
        };
        out.insert(k.trim().to_string(), v.to_string());
    }
    Ok(out)
}

/// Reads and parses a project file, interpolating it with `env` (spec §5.1).
pub fn load(
    path: &Path,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Project, ProjectFileError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ProjectFileError(format!(
            "cannot read project file {}: {e} (give another one with --file)",
            path.display()
        ))
    })?;
    parse(&interpolate(&text, env), &path.display().to_string(), |p| {
        std::fs::read_to_string(p).map_err(|e| e.to_string())
    })
}

/// Parses interpolated project text; `file` names it in errors, `read` reads the envfile.
pub fn parse(
    text: &str,
    file: &str,
    read: impl Fn(&str) -> Result<String, String>,
) -> Result<Project, ProjectFileError> {
    let y: YamlProject = serde_yaml_ng::from_str(text).map_err(|e| {
        let place = e
            .location()
            .map(|l| format!("{file}:{}:{}", l.line(), l.column()))
            .unwrap_or_else(|| file.to_string());
        ProjectFileError(format!("{place}: {e}"))
    })?;
    let mut env = BTreeMap::new();
    if let Some(envfile) = &y.envfile {
        let content = read(envfile).map_err(|e| {
            ProjectFileError(format!("{file}: envfile {envfile} cannot be read: {e}"))
        })?;
        env = parse_env_lines(content.lines(), &format!("{file}: envfile {envfile}"))?;
    }
    env.extend(parse_env_lines(
        y.environment.iter().map(String::as_str),
        &format!("{file}: environment"),
    )?);
    if y.components.is_empty() {
        return Err(ProjectFileError(format!(
            "{file}: components is empty; a project needs at least one component"
        )));
    }
    let mut components = Vec::new();
    for (name, c) in y.components {
        components.push(component(&name, c, &env, file)?);
    }
    Ok(Project {
        name: y.name,
        components,
    })
}

fn component(
    name: &str,
    c: YamlComponent,
    project_env: &BTreeMap<String, String>,
    file: &str,
) -> Result<ComponentWithEventSources, ProjectFileError> {
    let at = |key: &str| format!("{file}: components.{name}.{key}");
    let mut env = project_env.clone();
    env.extend(parse_env_lines(
        c.environment.iter().map(String::as_str),
        &at("environment"),
    )?);
    let start_parallelism = match c.startparallelism.as_deref() {
        None | Some("") => None,
        Some("parallel") => Some(StartParallelism::Parallel),
        Some("series") => Some(StartParallelism::Series),
        Some("seriesfirst") => Some(StartParallelism::Seriesfirst),
        Some(v) => {
            return Err(ProjectFileError(format!(
                "{}: '{v}' is not one of parallel, series, seriesfirst",
                at("startparallelism")
            )));
        }
    };
    let restart_order = match c.restartorder.as_deref() {
        None | Some("") => None,
        Some("stopstart") => Some(RestartOrder::Stopstart),
        Some("startstop") => Some(RestartOrder::Startstop),
        Some(v) => {
            return Err(ProjectFileError(format!(
                "{}: '{v}' is not one of stopstart, startstop",
                at("restartorder")
            )));
        }
    };
    if c.image.trim().is_empty() {
        return Err(ProjectFileError(format!(
            "{} is empty; name a Docker image",
            at("image")
        )));
    }
    let mut event_sources = Vec::new();
    for (es_name, es) in c.eventsources {
        let kinds = [
            es.http.is_some(),
            es.cron.is_some(),
            es.sqs.is_some(),
            es.awsstepfunc.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if kinds != 1 {
            return Err(ProjectFileError(format!(
                "{}: give exactly one of http, cron, sqs, awsstepfunc",
                at(&format!("eventsources.{es_name}"))
            )));
        }
        event_sources.push(EventSourceWithStatus {
            enabled: true,
            event_source: EventSource {
                name: es_name.clone(),
                component_name: name.to_string(),
                http: es.http.map(|h| HttpEventSource {
                    hostname: h.hostname,
                    path_prefix: h.pathprefix,
                    strip_prefix: h.stripprefix,
                }),
                cron: es.cron.map(|cr| CronEventSource {
                    schedule: cr.schedule,
                    http: CronHttpRequest {
                        method: cr.http.method,
                        path: cr.http.path,
                        data: cr.http.data,
                        headers: cr
                            .http
                            .headers
                            .into_iter()
                            .map(|h| NameValue::new(h.name, h.value))
                            .collect(),
                    },
                }),
                sqs: es.sqs.map(|s| SqsEventSource {
                    queue_name: s.queuename,
                    name_as_prefix: s.nameasprefix,
                    path: s.path,
                    max_concurrency: s.maxconcurrency,
                    messages_per_poll: s.messagesperpoll,
                    concurrency_per_poller: s.concurrencyperpoller,
                    visibility_timeout: s.visibilitytimeout,
                }),
                aws_step_func: es.awsstepfunc.map(|s| AwsStepFuncEventSource {
                    activity_name: s.activityname,
                    path: s.path,
                    max_concurrency: s.maxconcurrency,
                    concurrency_per_poller: s.concurrencyperpoller,
                }),
                ..Default::default()
            },
        });
    }
    event_sources.extend(crontab(name, &c.crontab));
    Ok(ComponentWithEventSources {
        component: Component {
            name: name.to_string(),
            environment: env.into_iter().map(|(k, v)| NameValue::new(k, v)).collect(),
            min_instances: c.mininstances,
            max_instances: c.maxinstances,
            max_instances_per_node: c.maxinstancespernode,
            max_concurrency: c.maxconcurrency,
            soft_concurrency_limit: c.softconcurrencylimit,
            scale_up_concurrency_pct: c.scaleupconcurrencypct,
            scale_down_concurrency_pct: c.scaledownconcurrencypct,
            max_duration_seconds: c.maxdurationseconds,
            max_queued_requests: c.maxqueuedrequests,
            start_parallelism,
            restart_order,
            docker: Some(DockerComponent {
                image: c.image,
                command: c.command,
                entrypoint: c.entrypoint,
                http_port: c.httpport,
                http_health_check_path: c.httphealthcheckpath,
                http_start_health_check_seconds: c.httpstarthealthcheckseconds,
                http_health_check_seconds: c.httphealthcheckseconds,
                http_health_check_max_failures: c.httphealthcheckmaxfailures,
                health_check_failed_command: c.healthcheckfailedcommand,
                idle_timeout_seconds: c.idletimeoutseconds,
                volumes: c
                    .volumes
                    .into_iter()
                    .map(|v| VolumeMount {
                        kind: v.kind,
                        source: v.source,
                        target: v.target,
                        read_only: v.readonly,
                    })
                    .collect(),
                network_name: c.networkname,
                log_driver: c.logdriver,
                log_driver_options: c
                    .logdriveroptions
                    .into_iter()
                    .map(|(k, v)| NameValue::new(k, v))
                    .collect(),
                reserve_memory_mib: c.reservememory,
                limit_memory_mib: c.limitmemory,
                cpu_shares: c.cpushares,
                init: c.containerinit,
                ports: c.ports,
                dns: c.dns,
                dns_options: c.dnsoptions,
                dns_search: c.dnssearch,
                ulimits: c.ulimits,
                pull_username: c.pullusername,
                pull_password: c.pullpassword,
                pull_command: match c.pullcommand {
                    None => String::new(),
                    Some(StringOrList::One(s)) => s,
                    Some(StringOrList::Many(v)) => v.join(" "),
                },
                pull_image_on_put: c.pullimageonput,
                pull_image_on_start: c.pullimageonstart,
                hostname: c.hostname,
                domainname: c.domainname,
                user: c.user,
                cap_add: c.capadd,
                cap_drop: c.capdrop,
                ..Default::default()
            }),
            ..Default::default()
        },
        event_sources,
    })
}

/// The `crontab` block (spec §5.5): each non-comment line with at least two fields whose last
/// field starts with `/` is a GET of that path on the schedule of the fields before it.
pub fn crontab(component: &str, block: &str) -> Vec<EventSourceWithStatus> {
    let mut out = Vec::new();
    for line in block.lines().map(str::trim) {
        if line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(path) = fields.last() else { continue };
        if fields.len() < 2 || !path.starts_with('/') {
            continue;
        }
        out.push(EventSourceWithStatus {
            enabled: true,
            event_source: EventSource {
                name: format!("{component}-cron-{}", out.len()),
                component_name: component.to_string(),
                cron: Some(CronEventSource {
                    schedule: fields[..fields.len() - 1].join(" "),
                    http: CronHttpRequest {
                        method: "GET".into(),
                        path: path.to_string(),
                        ..Default::default()
                    },
                }),
                ..Default::default()
            },
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
name: demo
envfile: app.env
environment:
  - SHARED=project
  - ONLY_PROJECT=1
components:
  web:
    image: app:latest
    httpport: 8080
    maxconcurrency: 4
    restartorder: startstop
    environment:
      - SHARED=component
    logdriveroptions:
      max-size: 10m
    crontab: |
      # every five minutes
      */5 * * * * /tick
      not a job
      @hourly /hourly
    eventsources:
      web_http:
        http:
          hostname: web.test
          pathprefix: /api
          stripprefix: true
      nightly:
        cron:
          schedule: "0 2 * * *"
          http:
            method: POST
            path: /nightly
            data: "{}"
            headers:
              - name: Content-Type
                value: application/json
"#;

    fn read(p: &str) -> Result<String, String> {
        assert_eq!(p, "app.env");
        Ok("# env\nFROM_FILE=a=b\nSHARED=file\n".into())
    }

    #[test]
    fn a_full_project_file() {
        let p = parse(FILE, "maelstrom.yml", read).unwrap();
        assert_eq!(p.name, "demo");
        let c = &p.components[0];
        assert_eq!(c.component.name, "web");
        let env: Vec<(String, String)> = c
            .component
            .environment
            .iter()
            .map(|nv| (nv.name.clone(), nv.value.clone()))
            .collect();
        assert_eq!(
            env,
            [
                ("FROM_FILE", "a=b"),
                ("ONLY_PROJECT", "1"),
                ("SHARED", "component")
            ]
            .map(|(a, b)| (a.to_string(), b.to_string()))
        );
        assert_eq!(c.component.restart_order, Some(RestartOrder::Startstop));
        let names: Vec<&str> = c
            .event_sources
            .iter()
            .map(|e| e.event_source.name.as_str())
            .collect();
        assert_eq!(names, ["nightly", "web_http", "web-cron-0", "web-cron-1"]);
        let cron1 = c.event_sources[3].event_source.cron.as_ref().unwrap();
        assert_eq!(
            (cron1.schedule.as_str(), cron1.http.path.as_str()),
            ("@hourly", "/hourly")
        );
        let http = c.event_sources[1].event_source.http.as_ref().unwrap();
        assert!(http.strip_prefix);
    }

    #[test]
    fn unknown_keys_name_the_key_the_file_and_the_line() {
        let bad = "name: demo\ncomponents:\n  web:\n    image: x\n    maxconcurency: 3\n";
        let e = parse(bad, "maelstrom.yml", read).unwrap_err().to_string();
        assert!(e.starts_with("maelstrom.yml:5:"), "{e}");
        assert!(e.contains("unknown field `maxconcurency`"), "{e}");
        let e = parse(
            "name: demo\ncomponents:\n  web:\n    httpport: 80\n",
            "p.yml",
            read,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("missing field `image`"), "{e}");
        let e = parse(
            "name: d\ncomponents:\n  web:\n    image: x\n    restartorder: sideways\n",
            "p.yml",
            read,
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "p.yml: components.web.restartorder: 'sideways' is not one of stopstart, startstop"
        );
        let e = parse(
            "name: d\ncomponents:\n  web:\n    image: x\n    eventsources:\n      both:\n        http: {hostname: a}\n        cron: {schedule: '* * * * *', http: {method: GET, path: /}}\n",
            "p.yml",
            read,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("components.web.eventsources.both: give exactly one"),
            "{e}"
        );
    }
}

#[cfg(test)]
mod readme {
    use super::*;

    /// The project file shown in the README parses as written.
    #[test]
    fn the_readme_example_parses() {
        let readme = include_str!("../../../README.md");
        let start = readme
            .find("```yaml\n")
            .expect("a yaml block in the README")
            + 8;
        let end = start + readme[start..].find("```").unwrap();
        let text = crate::interpolate::interpolate(&readme[start..end], |_| None);
        let p = parse(&text, "README.md", |f| {
            assert_eq!(f, "shop.env");
            Ok("SECRET=x\n".into())
        })
        .unwrap();
        let c = &p.components[0].component;
        assert_eq!(c.docker.as_ref().unwrap().image, "shop-api:latest");
        assert_eq!(c.restart_order, Some(RestartOrder::Startstop));
        assert!(c.environment.iter().any(|nv| nv.name == "DB_HOST"));
        assert!(c.environment.iter().any(|nv| nv.name == "SECRET"));
        assert_eq!(p.components[0].event_sources.len(), 2);
    }
}
