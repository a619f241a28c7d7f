//! The Docker Engine, through bollard: creating a component's container with the start
//! configuration of spec §12.3, finding the address to proxy to (§3.i), stopping, listing and
//! watching this node's own containers. Every listing, event filter, stop and removal is
//! restricted to containers labelled `maelstrom_node=<this node>` (§3.c).

use crate::config::Addressing;
use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::models::{
    ContainerCreateBody, EventMessage, HostConfig, HostConfigLogConfig, Mount, MountType,
    PortBinding, ResourcesUlimits,
};
use bollard::query_parameters::{
    CreateImageOptionsBuilder, EventsOptionsBuilder, ListContainersOptionsBuilder,
    ListImagesOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    StopContainerOptionsBuilder,
};
use futures_util::{Stream, StreamExt};
use maelstromd_api::model::Component;
use std::collections::HashMap;
use std::time::Duration;

/// Label keys of the container contract (spec §2.2).
pub const LABEL_MAELSTROM: &str = "maelstrom";
/// Full component name.
pub const LABEL_COMPONENT: &str = "maelstrom_component";
/// Component version.
pub const LABEL_VERSION: &str = "maelstrom_version";
/// Owning node.
pub const LABEL_NODE: &str = "maelstrom_node";

/// A Docker failure, with the engine's message.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DockerError(pub String);

impl From<bollard::errors::Error> for DockerError {
    fn from(e: bollard::errors::Error) -> Self {
        match e {
            bollard::errors::Error::DockerResponseServerError { message, .. } => {
                DockerError(message)
            }
            other => DockerError(other.to_string()),
        }
    }
}

fn not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// A container of this node as a listing reports it.
#[derive(Clone, Debug)]
pub struct OwnContainer {
    /// Container id.
    pub id: String,
    /// Component full name.
    pub component: String,
    /// Component version.
    pub version: i64,
    /// Whether it is running.
    pub running: bool,
}

/// What happened to one of this node's containers or to an image.
#[derive(Clone, Debug)]
pub enum EngineEvent {
    /// The container's process exited.
    Died {
        /// Container id.
        id: String,
    },
    /// An image was tagged (built or pulled) under this reference.
    ImageTagged {
        /// `name:tag`.
        reference: String,
    },
}

/// The engine as this node uses it.
#[derive(Clone)]
pub struct Engine {
    docker: Docker,
    node_id: String,
    addressing: Addressing,
    dind_host: Option<String>,
}

/// The image reference with `:latest` appended when untagged (spec §12.1).
pub fn normalise_image(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    if last.contains(':') || last.contains('@') {
        image.to_string()
    } else {
        format!("{image}:latest")
    }
}

impl Engine {
    /// Connects with `DOCKER_HOST` and friends, negotiating the API version with the engine.
    pub async fn connect(
        node_id: &str,
        addressing: Addressing,
        dind_host: Option<String>,
    ) -> Result<Engine, DockerError> {
        let docker = Docker::connect_with_defaults()?
            .with_timeout(Duration::from_secs(120))
            .negotiate_version()
            .await
            .map_err(|e| {
                DockerError(format!(
                    "cannot reach the Docker Engine ({e}); is dockerd running and is DOCKER_HOST right?"
                ))
            })?;
        Ok(Engine {
            docker,
            node_id: node_id.to_string(),
            addressing,
            dind_host,
        })
    }

    /// The raw client, for the log stream.
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// The engine's total memory in MiB, if it reports one.
    pub async fn total_memory_mib(&self) -> Option<i64> {
        let info = self.docker.info().await.ok()?;
        info.mem_total.map(|b| b / (1024 * 1024))
    }

    /// The gateway address of `docker_gwbridge`, else `bridge` (spec §3.h).
    pub async fn bridge_gateway(&self) -> Option<std::net::IpAddr> {
        for name in ["docker_gwbridge", "bridge"] {
            let Ok(net) = self
                .docker
                .inspect_network(
                    name,
                    None::<bollard::query_parameters::InspectNetworkOptions>,
                )
                .await
            else {
                continue;
            };
            let gw = net
                .ipam
                .and_then(|i| i.config)
                .into_iter()
                .flatten()
                .find_map(|c| c.gateway.and_then(|g| g.parse().ok()));
            if gw.is_some() {
                return gw;
            }
        }
        None
    }

    /// Creates and starts a container of `component`; answers its id. `env` is the full
    /// environment (spec §2.2).
    pub async fn create_and_start(
        &self,
        component: &Component,
        env: Vec<String>,
    ) -> Result<String, DockerError> {
        let body = self.create_body(component, env)?;
        let created = tokio::time::timeout(Duration::from_secs(60), async {
            let created = self
                .docker
                .create_container(
                    None::<bollard::query_parameters::CreateContainerOptions>,
                    body,
                )
                .await?;
            if let Err(e) = self
                .docker
                .start_container(
                    &created.id,
                    None::<bollard::query_parameters::StartContainerOptions>,
                )
                .await
            {
                self.force_remove(&created.id).await;
                return Err(DockerError::from(e));
            }
            Ok(created.id)
        })
        .await
        .map_err(|_| DockerError("create and start took over 1 minute".into()))??;
        Ok(created)
    }

    fn create_body(
        &self,
        component: &Component,
        env: Vec<String>,
    ) -> Result<ContainerCreateBody, DockerError> {
        let d = component.docker();
        let http_port = d.http_port();
        let mut exposed = vec![format!("{http_port}/tcp")];
        let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
        for spec in &d.ports {
            let p = parse_port_spec(spec)
                .map_err(|m| DockerError(format!("component {}: {m}", component.name)))?;
            let key = format!("{}/{}", p.container_port, p.proto);
            exposed.push(key.clone());
            bindings
                .entry(key)
                .or_default()
                .get_or_insert_with(Vec::new)
                .push(PortBinding {
                    host_ip: p.host_ip,
                    host_port: p.host_port,
                });
        }
        let host_network = d.network_name == "host";
        if !host_network {
            let publish_on = match (&self.dind_host, self.addressing) {
                (Some(_), _) => Some(""),
                (None, Addressing::HostPort) => Some("127.0.0.1"),
                (None, Addressing::ContainerIp) => None,
            };
            if let Some(ip) = publish_on {
                bindings
                    .entry(format!("{http_port}/tcp"))
                    .or_default()
                    .get_or_insert_with(Vec::new)
                    .push(PortBinding {
                        host_ip: Some(ip.to_string()),
                        host_port: Some(String::new()),
                    });
            }
        }
        exposed.dedup();
        let ulimits = d
            .ulimits
            .iter()
            .map(|u| parse_ulimit(u))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|m| DockerError(format!("component {}: {m}", component.name)))?;
        let mounts = d
            .volumes
            .iter()
            .map(|v| Mount {
                target: Some(v.target.clone()),
                source: Some(v.source.clone()),
                typ: Some(match v.kind.as_str() {
                    "volume" => MountType::VOLUME,
                    "tmpfs" => MountType::TMPFS,
                    _ => MountType::BIND,
                }),
                read_only: Some(v.read_only),
                ..Default::default()
            })
            .collect::<Vec<_>>();
        let mib = 1024 * 1024;
        let labels = HashMap::from([
            (LABEL_MAELSTROM.to_string(), "true".to_string()),
            (LABEL_COMPONENT.to_string(), component.name.clone()),
            (LABEL_VERSION.to_string(), component.version.to_string()),
            (LABEL_NODE.to_string(), self.node_id.clone()),
        ]);
        let some_vec = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
        let some_str = |s: &String| (!s.is_empty()).then(|| s.clone());
        Ok(ContainerCreateBody {
            image: Some(d.image.clone()),
            cmd: some_vec(&d.command),
            entrypoint: some_vec(&d.entrypoint),
            env: Some(env),
            exposed_ports: Some(exposed),
            labels: Some(labels),
            hostname: some_str(&d.hostname),
            domainname: some_str(&d.domainname),
            user: some_str(&d.user),
            host_config: Some(HostConfig {
                memory_reservation: Some(d.reserve_memory_mib() * mib),
                memory: (d.limit_memory_mib > 0).then_some(d.limit_memory_mib * mib),
                cpu_shares: (d.cpu_shares > 0).then_some(d.cpu_shares),
                nano_cpus: (d.limit_cpu > 0.0).then_some((d.limit_cpu * 1e9) as i64),
                init: d.init.then_some(true),
                log_config: (!d.log_driver.is_empty()).then(|| HostConfigLogConfig {
                    typ: Some(d.log_driver.clone()),
                    config: Some(
                        d.log_driver_options
                            .iter()
                            .map(|nv| (nv.name.clone(), nv.value.clone()))
                            .collect(),
                    ),
                }),
                mounts: (!mounts.is_empty()).then_some(mounts),
                dns: some_vec(&d.dns),
                dns_options: some_vec(&d.dns_options),
                dns_search: some_vec(&d.dns_search),
                ulimits: (!ulimits.is_empty()).then_some(ulimits),
                port_bindings: (!bindings.is_empty()).then_some(bindings),
                network_mode: some_str(&d.network_name),
                cap_add: some_vec(&d.cap_add),
                cap_drop: some_vec(&d.cap_drop),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    /// The `host:port` to proxy to, once the engine reports it (spec §3.i); `None` while the
    /// container has no address yet.
    pub async fn target_address(
        &self,
        id: &str,
        component: &Component,
    ) -> Result<Option<String>, DockerError> {
        let d = component.docker();
        let http_port = d.http_port();
        if d.network_name == "host" {
            return Ok(Some(format!("127.0.0.1:{http_port}")));
        }
        let info = self
            .docker
            .inspect_container(
                id,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await?;
        if let Some(state) = &info.state
            && state.running == Some(false)
            && state.status != Some(bollard::models::ContainerStateStatusEnum::CREATED)
        {
            return Err(DockerError(format!(
                "the container exited (status {})",
                state.exit_code.unwrap_or(-1)
            )));
        }
        let net = info.network_settings.unwrap_or_default();
        let host_port = || {
            net.ports
                .as_ref()?
                .get(&format!("{http_port}/tcp"))?
                .as_ref()?
                .iter()
                .find_map(|b| b.host_port.clone().filter(|p| !p.is_empty() && p != "0"))
        };
        Ok(match (&self.dind_host, self.addressing) {
            (Some(host), _) => host_port().map(|p| format!("{host}:{p}")),
            (None, Addressing::HostPort) => host_port().map(|p| format!("127.0.0.1:{p}")),
            (None, Addressing::ContainerIp) => net
                .networks
                .as_ref()
                .and_then(|n| {
                    let mut nets: Vec<_> = n.iter().collect();
                    nets.sort_by(|a, b| a.0.cmp(b.0));
                    nets.into_iter()
                        .find_map(|(_, e)| e.ip_address.clone().filter(|ip| !ip.is_empty()))
                })
                .map(|ip| format!("{ip}:{http_port}")),
        })
    }

    /// Stops with SIGTERM and `grace`, then removes; on any error but "not found", forces the
    /// removal (spec §12.5).
    pub async fn stop_and_remove(&self, id: &str, grace: Duration) {
        let opts = StopContainerOptionsBuilder::default()
            .t(grace.as_secs() as i32)
            .build();
        match self.docker.stop_container(id, Some(opts)).await {
            Ok(()) => {}
            Err(e) if not_found(&e) => return,
            Err(e) => tracing::debug!(container = id, error = %e, "stop failed; forcing removal"),
        }
        self.force_remove(id).await;
    }

    /// Removes a container, killing it if needed; "not found" and "already in progress" are
    /// not errors.
    pub async fn force_remove(&self, id: &str) {
        let opts = RemoveContainerOptionsBuilder::default().force(true).build();
        if let Err(e) = self.docker.remove_container(id, Some(opts)).await {
            let msg = e.to_string();
            if !not_found(&e) && !msg.contains("already in progress") {
                tracing::warn!(container = id, error = %msg, "container removal failed");
            }
        }
    }

    /// This node's containers, running or not.
    pub async fn list_own(&self) -> Result<Vec<OwnContainer>, DockerError> {
        let filters = HashMap::from([(
            "label".to_string(),
            vec![format!("{LABEL_NODE}={}", self.node_id)],
        )]);
        let opts = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let list = self.docker.list_containers(Some(opts)).await?;
        Ok(list
            .into_iter()
            .filter_map(|c| {
                let labels = c.labels.unwrap_or_default();
                Some(OwnContainer {
                    id: c.id?,
                    component: labels.get(LABEL_COMPONENT)?.clone(),
                    version: labels.get(LABEL_VERSION)?.parse().ok()?,
                    running: c.state == Some(bollard::models::ContainerSummaryStateEnum::RUNNING),
                })
            })
            .collect())
    }

    /// How many containers carry `maelstrom=true` but no node label: leftovers of the
    /// original, reported once and left alone.
    pub async fn count_unowned(&self) -> usize {
        let filters =
            HashMap::from([("label".to_string(), vec![format!("{LABEL_MAELSTROM}=true")])]);
        let opts = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        match self.docker.list_containers(Some(opts)).await {
            Ok(list) => list
                .iter()
                .filter(|c| {
                    c.labels
                        .as_ref()
                        .is_none_or(|l| !l.contains_key(LABEL_NODE))
                })
                .count(),
            Err(_) => 0,
        }
    }

    /// Deaths of this node's containers and image tags, as they happen.
    pub fn events(&self) -> impl Stream<Item = EngineEvent> + Send + 'static {
        let containers = {
            let filters = HashMap::from([
                ("type".to_string(), vec!["container".to_string()]),
                ("event".to_string(), vec!["die".to_string()]),
                (
                    "label".to_string(),
                    vec![format!("{LABEL_NODE}={}", self.node_id)],
                ),
            ]);
            self.docker.events(Some(
                EventsOptionsBuilder::default().filters(&filters).build(),
            ))
        };
        let images = {
            let filters = HashMap::from([
                ("type".to_string(), vec!["image".to_string()]),
                ("event".to_string(), vec!["tag".to_string()]),
            ]);
            self.docker.events(Some(
                EventsOptionsBuilder::default().filters(&filters).build(),
            ))
        };
        futures_util::stream::select(containers, images).filter_map(|e| async move {
            let e: EventMessage = e.ok()?;
            let actor = e.actor?;
            match e.action.as_deref()? {
                "die" => Some(EngineEvent::Died { id: actor.id? }),
                "tag" => {
                    let name = actor.attributes?.get("name")?.clone();
                    Some(EngineEvent::ImageTagged {
                        reference: normalise_image(&name),
                    })
                }
                _ => None,
            }
        })
    }

    /// Runs `cmd` inside the container, for at most a minute; answers its output.
    pub async fn exec(&self, id: &str, cmd: &[String]) -> Result<String, DockerError> {
        let exec = self
            .docker
            .create_exec(
                id,
                bollard::exec::CreateExecOptions {
                    cmd: Some(cmd.to_vec()),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    ..Default::default()
                },
            )
            .await?;
        let run = async {
            let mut out = String::new();
            if let bollard::exec::StartExecResults::Attached { mut output, .. } =
                self.docker.start_exec(&exec.id, None).await?
            {
                while let Some(Ok(chunk)) = output.next().await {
                    out.push_str(&chunk.to_string());
                }
            }
            Ok::<_, DockerError>(out)
        };
        tokio::time::timeout(Duration::from_secs(60), run)
            .await
            .map_err(|_| DockerError("command ran over 1 minute".into()))?
    }

    /// Whether the image is present locally.
    pub async fn image_present(&self, image: &str) -> Result<bool, DockerError> {
        let filters = HashMap::from([("reference".to_string(), vec![normalise_image(image)])]);
        let opts = ListImagesOptionsBuilder::default()
            .filters(&filters)
            .build();
        Ok(!self.docker.list_images(Some(opts)).await?.is_empty())
    }

    /// Pulls the image through the engine's pull API with optional credentials.
    pub async fn pull(&self, image: &str, user: &str, password: &str) -> Result<(), DockerError> {
        let image = normalise_image(image);
        let creds = (!user.is_empty()).then(|| DockerCredentials {
            username: Some(user.to_string()),
            password: Some(password.to_string()),
            ..Default::default()
        });
        let opts = CreateImageOptionsBuilder::default()
            .from_image(&image)
            .build();
        let mut stream = self.docker.create_image(Some(opts), None, creds);
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| {
                DockerError(format!("pull of {image} failed: {}", DockerError::from(e)))
            })?;
            if let Some(err) = info.error_detail.and_then(|d| d.message) {
                return Err(DockerError(format!("pull of {image} failed: {err}")));
            }
        }
        Ok(())
    }

    /// The container's output since `since_secs` (Unix seconds), following new lines.
    pub fn logs(
        &self,
        id: &str,
        since_secs: i64,
    ) -> impl Stream<Item = Result<bollard::container::LogOutput, bollard::errors::Error>> + Send + 'static
    {
        let opts = LogsOptionsBuilder::default()
            .follow(true)
            .stdout(true)
            .stderr(true)
            .since(since_secs as i32)
            .build();
        self.docker.logs(id, Some(opts))
    }
}

/// A parsed `ports` entry: `[hostIp:][hostPort:]containerPort[/proto]`.
#[derive(Debug, PartialEq, Eq)]
pub struct PortSpec {
    /// Host address, if given.
    pub host_ip: Option<String>,
    /// Host port, if given.
    pub host_port: Option<String>,
    /// Container port.
    pub container_port: u16,
    /// `tcp` or `udp`.
    pub proto: String,
}

/// Parses a Docker port spec such as `6001:6001`, `127.0.0.1:80:8080/tcp` or `53/udp`.
pub fn parse_port_spec(spec: &str) -> Result<PortSpec, String> {
    let (ports, proto) = match spec.rsplit_once('/') {
        Some((p, proto)) if proto == "tcp" || proto == "udp" || proto == "sctp" => {
            (p, proto.to_string())
        }
        Some(_) => {
            return Err(format!(
                "port spec '{spec}': protocol must be tcp, udp or sctp"
            ));
        }
        None => (spec, "tcp".to_string()),
    };
    let parts: Vec<&str> = ports.split(':').collect();
    let (host_ip, host_port, container) = match parts.as_slice() {
        [c] => (None, None, *c),
        [h, c] => (None, Some(h.to_string()), *c),
        [ip, h, c] => (Some(ip.to_string()), Some(h.to_string()), *c),
        _ => {
            return Err(format!(
                "port spec '{spec}' is not [ip:][hostPort:]containerPort[/proto]"
            ));
        }
    };
    let container_port = container
        .parse()
        .map_err(|_| format!("port spec '{spec}': '{container}' is not a port number"))?;
    Ok(PortSpec {
        host_ip,
        host_port,
        container_port,
        proto,
    })
}

/// Parses `name=soft:hard` or `name=value`.
pub fn parse_ulimit(spec: &str) -> Result<ResourcesUlimits, String> {
    let bad = || format!("ulimit '{spec}' is not name=soft:hard or name=value");
    let (name, value) = spec.split_once('=').ok_or_else(bad)?;
    let (soft, hard) = match value.split_once(':') {
        Some((s, h)) => (s, h),
        None => (value, value),
    };
    Ok(ResourcesUlimits {
        name: Some(name.trim().to_string()),
        soft: Some(soft.trim().parse().map_err(|_| bad())?),
        hard: Some(hard.trim().parse().map_err(|_| bad())?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_specs() {
        assert_eq!(
            parse_port_spec("6001:6001").unwrap(),
            PortSpec {
                host_ip: None,
                host_port: Some("6001".into()),
                container_port: 6001,
                proto: "tcp".into()
            }
        );
        let p = parse_port_spec("127.0.0.1:53:5353/udp").unwrap();
        assert_eq!(
            (p.host_ip.as_deref(), p.container_port, p.proto.as_str()),
            (Some("127.0.0.1"), 5353, "udp")
        );
        assert!(parse_port_spec("80/xyz").is_err());
        assert!(parse_port_spec("a:b:c:d").is_err());
    }

    #[test]
    fn ulimits_and_image_names() {
        let u = parse_ulimit("nofile=1024:2048").unwrap();
        assert_eq!((u.soft, u.hard), (Some(1024), Some(2048)));
        let u = parse_ulimit("nproc=99").unwrap();
        assert_eq!((u.soft, u.hard), (Some(99), Some(99)));
        assert!(parse_ulimit("nofile").is_err());
        assert_eq!(normalise_image("busybox"), "busybox:latest");
        assert_eq!(normalise_image("reg:5000/app"), "reg:5000/app:latest");
        assert_eq!(normalise_image("app:v1"), "app:v1");
    }
}
