//! [`Runtime`] over the Docker Engine API (bollard), negotiated down to what the engine speaks.

use super::{Owner, Runtime, RuntimeError};
use crate::model::{
    labels, ActualContainer, ActualObject, ActualState, ContainerSpec, MountKind, NetworkSpec,
    VolumeSpec,
};
use bollard::errors::Error as BollardError;
use bollard::models::{
    ContainerCreateBody, ContainerSummaryStateEnum, DeviceMapping, EndpointSettings, HealthConfig,
    HostConfig, NetworkConnectRequest, NetworkCreateRequest, NetworkingConfig, PortBinding,
    RestartPolicy, RestartPolicyNameEnum, VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, ListContainersOptions, ListNetworksOptions,
    ListVolumesOptions, RemoveContainerOptions, RenameContainerOptions, StopContainerOptions,
};
use bollard::Docker;
use futures_util::StreamExt;
use std::collections::HashMap;

/// Seconds a single engine request may take (pulls stream and are not bound by this).
const REQUEST_TIMEOUT_SECS: u64 = 120;
/// The API version assumed when the engine cannot be asked (Docker 20.10).
const FALLBACK_API: (usize, usize) = (1, 41);

#[derive(Clone)]
pub struct DockerRuntime {
    docker: Docker,
}

impl DockerRuntime {
    /// Connect to `host` (`unix://…`, `tcp://…`) or Docker's defaults (`DOCKER_HOST`, then the local
    /// socket), and negotiate the API version down to the engine's.
    pub async fn connect(host: Option<&str>) -> Result<Self, RuntimeError> {
        let docker = Self::client_for(host, bollard::API_DEFAULT_VERSION)?;
        match docker.negotiate_version().await {
            Ok(docker) => Ok(DockerRuntime { docker }),
            Err(e) => {
                // The engine may simply not be up yet (boot order): keep a client that speaks an API
                // version every supported engine understands, and let each cycle report the error.
                tracing::warn!(error = %e, "docker engine not reachable yet; assuming API {FALLBACK_API:?}");
                let fallback = bollard::ClientVersion {
                    major_version: FALLBACK_API.0,
                    minor_version: FALLBACK_API.1,
                };
                Ok(DockerRuntime {
                    docker: Self::client_for(host, &fallback)?,
                })
            }
        }
    }

    fn client_for(
        host: Option<&str>,
        version: &bollard::ClientVersion,
    ) -> Result<Docker, RuntimeError> {
        match host {
            Some(h) if h.starts_with("unix://") => {
                Docker::connect_with_unix(h, REQUEST_TIMEOUT_SECS, version)
            }
            Some(h) => Docker::connect_with_http(h, REQUEST_TIMEOUT_SECS, version),
            None => match std::env::var("DOCKER_HOST") {
                Ok(h) if h.starts_with("tcp://") || h.starts_with("http://") => {
                    Docker::connect_with_http(&h, REQUEST_TIMEOUT_SECS, version)
                }
                Ok(h) if h.starts_with("unix://") => {
                    Docker::connect_with_unix(&h, REQUEST_TIMEOUT_SECS, version)
                }
                _ => Docker::connect_with_unix(
                    "unix:///var/run/docker.sock",
                    REQUEST_TIMEOUT_SECS,
                    version,
                ),
            },
        }
        .map_err(|e| RuntimeError::Unreachable(e.to_string()))
    }

    /// The underlying client, for read-only queries (status).
    pub fn client(&self) -> &Docker {
        &self.docker
    }
}

fn owner_filter(agent_id: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([(
        "label".to_string(),
        vec![format!("{}={agent_id}", labels::AGENT)],
    )])
}

fn engine_err(object: impl Into<String>) -> impl FnOnce(BollardError) -> RuntimeError {
    let object = object.into();
    move |e| match e {
        BollardError::DockerResponseServerError { message, .. } => {
            RuntimeError::Engine { object, message }
        }
        BollardError::RequestTimeoutError => RuntimeError::Engine {
            object,
            message: "engine request timed out".into(),
        },
        other if is_connection_error(&other) => RuntimeError::Unreachable(other.to_string()),
        other => RuntimeError::Engine {
            object,
            message: other.to_string(),
        },
    }
}

fn is_connection_error(e: &BollardError) -> bool {
    matches!(
        e,
        BollardError::HyperResponseError { .. }
            | BollardError::IOError { .. }
            | BollardError::SocketNotFoundError(_)
    )
}

fn is_not_found(e: &BollardError) -> bool {
    matches!(
        e,
        BollardError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// `repo[:tag]` / `repo@digest` → (fromImage, tag) for the pull API; an empty tag would pull every tag.
fn split_image(image: &str) -> (String, String) {
    if image.contains('@') {
        return (image.to_string(), String::new());
    }
    let last_slash = image.rfind('/').map(|i| i + 1).unwrap_or(0);
    match image[last_slash..].rfind(':') {
        Some(i) => (
            image[..last_slash + i].to_string(),
            image[last_slash + i + 1..].to_string(),
        ),
        None => (image.to_string(), "latest".to_string()),
    }
}

impl Runtime for DockerRuntime {
    async fn observe(&self, agent_id: &str) -> Result<ActualState, RuntimeError> {
        let list = self.docker.list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(owner_filter(agent_id)),
            ..Default::default()
        }));
        let nets = self.docker.list_networks(Some(ListNetworksOptions {
            filters: Some(owner_filter(agent_id)),
        }));
        let vols = self.docker.list_volumes(Some(ListVolumesOptions {
            filters: Some(owner_filter(agent_id)),
        }));
        let (list, nets, vols) = tokio::join!(list, nets, vols);
        let list = list.map_err(engine_err("containers"))?;
        let nets = nets.map_err(engine_err("networks"))?;
        let vols = vols.map_err(engine_err("volumes"))?;

        let mut state = ActualState::default();
        for c in list {
            let labels = c.labels.unwrap_or_default();
            // The filter already did this; checking again costs nothing and keeps the rule local.
            if labels.get(labels::AGENT).map(String::as_str) != Some(agent_id) {
                continue;
            }
            let name = c
                .names
                .unwrap_or_default()
                .into_iter()
                .next()
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_string();
            let state_word = c.state.map(|s| s.to_string()).unwrap_or_default();
            state.containers.push(ActualContainer {
                id: c.id.unwrap_or_default(),
                name,
                stack: labels.get(labels::STACK).cloned().unwrap_or_default(),
                service: labels.get(labels::SERVICE).cloned().unwrap_or_default(),
                replica: labels
                    .get(labels::REPLICA)
                    .and_then(|r| r.parse().ok())
                    .unwrap_or(0),
                spec_hash: labels.get(labels::SPEC_HASH).cloned().unwrap_or_default(),
                running: matches!(
                    c.state,
                    Some(
                        ContainerSummaryStateEnum::RUNNING | ContainerSummaryStateEnum::RESTARTING
                    )
                ),
                state: state_word,
            });
        }
        state.containers.sort_by(|a, b| a.name.cmp(&b.name));
        for n in nets {
            let labels = n.labels.unwrap_or_default();
            if labels.get(labels::AGENT).map(String::as_str) != Some(agent_id) {
                continue;
            }
            state.networks.push(ActualObject {
                name: n.name.unwrap_or_default(),
                stack: labels.get(labels::STACK).cloned().unwrap_or_default(),
            });
        }
        state.networks.sort_by(|a, b| a.name.cmp(&b.name));
        for v in vols.volumes.unwrap_or_default() {
            if v.labels.get(labels::AGENT).map(String::as_str) != Some(agent_id) {
                continue;
            }
            state.volumes.push(ActualObject {
                stack: v.labels.get(labels::STACK).cloned().unwrap_or_default(),
                name: v.name,
            });
        }
        state.volumes.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(state)
    }

    async fn ensure_image(&self, image: &str) -> Result<(), RuntimeError> {
        match self.docker.inspect_image(image).await {
            Ok(_) => return Ok(()),
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(engine_err(format!("image {image}"))(e)),
        }
        tracing::info!(image, "pulling image");
        let (from_image, tag) = split_image(image);
        let mut stream = self.docker.create_image(
            Some(CreateImageOptions {
                from_image: Some(from_image),
                tag: Some(tag),
                ..Default::default()
            }),
            None,
            None,
        );
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    if let Some(detail) = info.error_detail {
                        return Err(RuntimeError::Image {
                            image: image.to_string(),
                            message: detail.message.unwrap_or_else(|| "pull failed".into()),
                        });
                    }
                    if let Some(status) = info.status {
                        tracing::debug!(image, status, "pull");
                    }
                }
                Err(BollardError::DockerResponseServerError { message, .. }) => {
                    return Err(RuntimeError::Image {
                        image: image.to_string(),
                        message,
                    })
                }
                Err(e) => {
                    return Err(RuntimeError::Image {
                        image: image.to_string(),
                        message: e.to_string(),
                    })
                }
            }
        }
        Ok(())
    }

    async fn create_network(&self, spec: &NetworkSpec, owner: &Owner) -> Result<(), RuntimeError> {
        let mut labels: HashMap<String, String> = spec.labels.clone().into_iter().collect();
        labels.insert(labels::AGENT.into(), owner.agent_id.clone());
        labels.insert(labels::STACK.into(), spec.stack.clone());
        self.docker
            .create_network(NetworkCreateRequest {
                name: spec.name.clone(),
                driver: Some(spec.driver.clone().unwrap_or_else(|| "bridge".into())),
                internal: Some(spec.internal),
                labels: Some(labels),
                ..Default::default()
            })
            .await
            .map_err(engine_err(format!("network {}", spec.name)))?;
        Ok(())
    }

    async fn remove_network(&self, name: &str) -> Result<(), RuntimeError> {
        match self.docker.remove_network(name).await {
            Err(e) if is_not_found(&e) => Ok(()),
            r => r.map_err(engine_err(format!("network {name}"))),
        }
    }

    async fn create_volume(&self, spec: &VolumeSpec, owner: &Owner) -> Result<(), RuntimeError> {
        let mut labels: HashMap<String, String> = spec.labels.clone().into_iter().collect();
        labels.insert(labels::AGENT.into(), owner.agent_id.clone());
        labels.insert(labels::STACK.into(), spec.stack.clone());
        self.docker
            .create_volume(VolumeCreateRequest {
                name: Some(spec.name.clone()),
                driver: spec.driver.clone(),
                labels: Some(labels),
                ..Default::default()
            })
            .await
            .map_err(engine_err(format!("volume {}", spec.name)))?;
        Ok(())
    }

    async fn create_container(
        &self,
        spec: &ContainerSpec,
        name: &str,
        owner: &Owner,
    ) -> Result<String, RuntimeError> {
        let body = container_body(spec, owner);
        let id = self
            .docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(name.to_string()),
                    ..Default::default()
                }),
                body,
            )
            .await
            .map_err(engine_err(format!("container {name}")))?
            .id;
        // The engine takes one network at create time on older API versions; attach the rest now.
        if spec.network_mode.is_none() {
            for net in spec.networks.iter().skip(1) {
                let req = NetworkConnectRequest {
                    container: id.clone(),
                    endpoint_config: Some(EndpointSettings {
                        aliases: Some(net.aliases.clone()),
                        ..Default::default()
                    }),
                };
                if let Err(e) = self.docker.connect_network(&net.name, req).await {
                    let _ = self.remove_container(&id).await;
                    return Err(engine_err(format!(
                        "container {name}, network {}",
                        net.name
                    ))(e));
                }
            }
        }
        Ok(id)
    }

    async fn start_container(&self, id: &str) -> Result<(), RuntimeError> {
        self.docker
            .start_container(id, None::<bollard::query_parameters::StartContainerOptions>)
            .await
            .map_err(engine_err(format!("container {id}")))
    }

    async fn stop_container(&self, id: &str, grace: Option<u64>) -> Result<(), RuntimeError> {
        let opts = StopContainerOptions {
            t: grace.map(|g| g.min(i32::MAX as u64) as i32),
            signal: None,
        };
        match self.docker.stop_container(id, Some(opts)).await {
            Err(BollardError::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            r => r.map_err(engine_err(format!("container {id}"))),
        }
    }

    async fn remove_container(&self, id: &str) -> Result<(), RuntimeError> {
        let opts = RemoveContainerOptions {
            force: true,
            v: false,
            link: false,
        };
        match self.docker.remove_container(id, Some(opts)).await {
            Err(e) if is_not_found(&e) => Ok(()),
            r => r.map_err(engine_err(format!("container {id}"))),
        }
    }

    async fn rename_container(&self, id: &str, new_name: &str) -> Result<(), RuntimeError> {
        self.docker
            .rename_container(
                id,
                RenameContainerOptions {
                    name: new_name.to_string(),
                },
            )
            .await
            .map_err(engine_err(format!("container {id}")))
    }
}

/// The engine's create body for a spec: the one place the model maps onto Docker's API.
fn container_body(spec: &ContainerSpec, owner: &Owner) -> ContainerCreateBody {
    let mut all_labels: HashMap<String, String> = spec.labels.clone().into_iter().collect();
    all_labels.insert(labels::AGENT.into(), owner.agent_id.clone());
    all_labels.insert(labels::STACK.into(), spec.stack.clone());
    all_labels.insert(labels::SERVICE.into(), spec.service.clone());
    all_labels.insert(labels::REPLICA.into(), spec.replica.to_string());
    all_labels.insert(labels::SPEC_HASH.into(), spec.spec_hash());
    all_labels.insert(labels::REVISION.into(), owner.revision.clone());

    let mut exposed = Vec::new();
    let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for p in &spec.ports {
        let key = format!("{}/{}", p.container_port, p.protocol);
        if !exposed.contains(&key) {
            exposed.push(key.clone());
        }
        bindings
            .entry(key)
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(PortBinding {
                host_ip: p.host_ip.clone(),
                host_port: p.host_port.map(|h| h.to_string()),
            });
    }
    let binds: Vec<String> = spec
        .mounts
        .iter()
        .map(|m| {
            let mode = if m.read_only { ":ro" } else { "" };
            match m.kind {
                MountKind::Bind | MountKind::Volume => format!("{}:{}{mode}", m.source, m.target),
            }
        })
        .collect();
    let tmpfs: HashMap<String, String> = spec
        .tmpfs
        .iter()
        .map(|t| match t.split_once(':') {
            Some((path, opts)) => (path.to_string(), opts.to_string()),
            None => (t.clone(), String::new()),
        })
        .collect();
    let (policy, retries) = match spec.restart.split_once(':') {
        Some(("on-failure", n)) => (RestartPolicyNameEnum::ON_FAILURE, n.parse().ok()),
        _ => (
            match spec.restart.as_str() {
                "always" => RestartPolicyNameEnum::ALWAYS,
                "unless-stopped" => RestartPolicyNameEnum::UNLESS_STOPPED,
                "on-failure" => RestartPolicyNameEnum::ON_FAILURE,
                _ => RestartPolicyNameEnum::NO,
            },
            None,
        ),
    };
    let network_mode = match &spec.network_mode {
        Some(m) => Some(m.clone()),
        None => spec.networks.first().map(|n| n.name.clone()),
    };
    let networking_config = match (&spec.network_mode, spec.networks.first()) {
        (None, Some(first)) => Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                first.name.clone(),
                EndpointSettings {
                    aliases: Some(first.aliases.clone()),
                    ..Default::default()
                },
            )])),
        }),
        _ => None,
    };
    let non_empty = |v: &Vec<String>| if v.is_empty() { None } else { Some(v.clone()) };

    ContainerCreateBody {
        image: Some(spec.image.clone()),
        cmd: spec.command.clone(),
        entrypoint: spec.entrypoint.clone(),
        env: non_empty(&spec.env),
        user: spec.user.clone(),
        working_dir: spec.working_dir.clone(),
        hostname: spec.hostname.clone(),
        labels: Some(all_labels),
        exposed_ports: if exposed.is_empty() {
            None
        } else {
            Some(exposed)
        },
        stop_signal: spec.stop_signal.clone(),
        stop_timeout: spec.stop_grace_period.map(|s| s as i64),
        healthcheck: spec.healthcheck.as_ref().map(|h| HealthConfig {
            test: Some(h.test.clone()),
            interval: Some(h.interval_ns),
            timeout: Some(h.timeout_ns),
            start_period: Some(h.start_period_ns),
            retries: Some(h.retries),
            ..Default::default()
        }),
        host_config: Some(HostConfig {
            binds: non_empty(&binds),
            port_bindings: if bindings.is_empty() {
                None
            } else {
                Some(bindings)
            },
            restart_policy: Some(RestartPolicy {
                name: Some(policy),
                maximum_retry_count: retries,
            }),
            network_mode,
            cap_add: non_empty(&spec.cap_add),
            cap_drop: non_empty(&spec.cap_drop),
            privileged: Some(spec.privileged),
            readonly_rootfs: Some(spec.read_only),
            init: spec.init,
            extra_hosts: non_empty(&spec.extra_hosts),
            tmpfs: if tmpfs.is_empty() { None } else { Some(tmpfs) },
            devices: if spec.devices.is_empty() {
                None
            } else {
                Some(
                    spec.devices
                        .iter()
                        .map(|d| DeviceMapping {
                            path_on_host: Some(d.host.clone()),
                            path_in_container: Some(d.container.clone()),
                            cgroup_permissions: Some(d.permissions.clone()),
                        })
                        .collect(),
                )
            },
            ..Default::default()
        }),
        networking_config,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references_split_for_pull() {
        assert_eq!(split_image("busybox"), ("busybox".into(), "latest".into()));
        assert_eq!(
            split_image("busybox:1.36"),
            ("busybox".into(), "1.36".into())
        );
        assert_eq!(
            split_image("127.0.0.1:5000/app"),
            ("127.0.0.1:5000/app".into(), "latest".into())
        );
        assert_eq!(
            split_image("127.0.0.1:5000/app:v2"),
            ("127.0.0.1:5000/app".into(), "v2".into())
        );
        assert_eq!(
            split_image("app@sha256:abc"),
            ("app@sha256:abc".into(), String::new())
        );
    }
}

/// Against the real engine (the test suite starts one and builds `berth-test/busybox:latest`).
#[cfg(test)]
mod engine_tests {
    use super::*;
    use crate::apply::apply;
    use crate::model::{DesiredState, MountSpec, NetworkAttachment, StackSpec};
    use crate::plan::plan;

    fn spec(agent: &str, service: &str, env: &str) -> ContainerSpec {
        ContainerSpec {
            name: format!("{agent}-{service}-1"),
            stack: agent.into(),
            service: service.into(),
            replica: 1,
            image: "berth-test/busybox:latest".into(),
            command: Some(vec!["sleep".into(), "3600".into()]),
            env: vec![format!("E={env}")],
            init: Some(true),
            restart: "no".into(),
            networks: vec![NetworkAttachment {
                name: format!("{agent}_default"),
                aliases: vec![service.into()],
            }],
            mounts: vec![MountSpec {
                kind: MountKind::Volume,
                source: format!("{agent}_data"),
                target: "/data".into(),
                read_only: false,
            }],
            ..Default::default()
        }
    }

    fn desired(agent: &str, containers: Vec<ContainerSpec>) -> DesiredState {
        let mut d = DesiredState::default();
        d.stacks.insert(
            agent.into(),
            StackSpec {
                name: agent.into(),
                dir: ".".into(),
                containers,
                networks: vec![NetworkSpec {
                    name: format!("{agent}_default"),
                    stack: agent.into(),
                    driver: None,
                    internal: false,
                    labels: Default::default(),
                }],
                volumes: vec![VolumeSpec {
                    name: format!("{agent}_data"),
                    stack: agent.into(),
                    driver: None,
                    labels: Default::default(),
                }],
            },
        );
        d
    }

    #[tokio::test]
    async fn converge_recreate_and_remove_against_the_engine() {
        let agent = format!("unit-rt-{}", std::process::id());
        let rt = DockerRuntime::connect(None)
            .await
            .expect("a Docker engine (scripts/test.sh starts one)");
        let owner = Owner {
            agent_id: agent.clone(),
            revision: "r1".into(),
        };

        let d1 = desired(&agent, vec![spec(&agent, "a", "1"), spec(&agent, "b", "1")]);
        let report = apply(&rt, &plan(&d1, &rt.observe(&agent).await.unwrap()), &owner).await;
        assert!(report.ok(), "{report:?}");
        let a1 = rt.observe(&agent).await.unwrap();
        assert_eq!(a1.containers.len(), 2);
        assert!(a1.containers.iter().all(|c| c.running), "{a1:?}");
        assert_eq!(a1.networks.len(), 1);
        assert_eq!(a1.volumes.len(), 1);
        assert!(
            plan(&d1, &a1).is_empty(),
            "converged state must plan nothing"
        );

        // Change b only: b is recreated, a keeps its id.
        let d2 = desired(&agent, vec![spec(&agent, "a", "1"), spec(&agent, "b", "2")]);
        let report = apply(&rt, &plan(&d2, &a1), &owner).await;
        assert!(report.ok(), "{report:?}");
        let a2 = rt.observe(&agent).await.unwrap();
        let id = |s: &ActualState, n: &str| {
            s.containers
                .iter()
                .find(|c| c.service == n)
                .map(|c| c.id.clone())
        };
        assert_eq!(id(&a1, "a"), id(&a2, "a"));
        assert_ne!(id(&a1, "b"), id(&a2, "b"));
        assert_eq!(
            a2.containers.len(),
            2,
            "the old b is gone, no stray left: {a2:?}"
        );

        // Remove everything: containers and network go, the volume stays.
        let report = apply(&rt, &plan(&DesiredState::default(), &a2), &owner).await;
        assert!(report.ok(), "{report:?}");
        let a3 = rt.observe(&agent).await.unwrap();
        assert!(a3.containers.is_empty() && a3.networks.is_empty(), "{a3:?}");
        assert_eq!(a3.volumes.len(), 1, "volumes are never pruned");
        rt.client()
            .remove_volume(
                &format!("{agent}_data"),
                None::<bollard::query_parameters::RemoveVolumeOptions>,
            )
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn missing_image_fails_before_the_old_container_is_touched() {
        let agent = format!("unit-img-{}", std::process::id());
        let rt = DockerRuntime::connect(None).await.expect("a Docker engine");
        let owner = Owner {
            agent_id: agent.clone(),
            revision: "r1".into(),
        };
        let d1 = desired(&agent, vec![spec(&agent, "a", "1")]);
        assert!(
            apply(&rt, &plan(&d1, &rt.observe(&agent).await.unwrap()), &owner)
                .await
                .ok()
        );
        let before = rt.observe(&agent).await.unwrap();

        let mut bad = spec(&agent, "a", "2");
        bad.image = "127.0.0.1:1/berth-missing/image:nope".into();
        let d2 = desired(&agent, vec![bad]);
        let report = apply(&rt, &plan(&d2, &before), &owner).await;
        assert!(!report.ok());
        assert!(
            report.error_text().contains("berth-missing/image"),
            "{}",
            report.error_text()
        );
        let after = rt.observe(&agent).await.unwrap();
        assert_eq!(
            before.containers, after.containers,
            "the running container is untouched"
        );

        apply(&rt, &plan(&DesiredState::default(), &after), &owner).await;
        rt.client()
            .remove_volume(
                &format!("{agent}_data"),
                None::<bollard::query_parameters::RemoveVolumeOptions>,
            )
            .await
            .unwrap();
    }
}
