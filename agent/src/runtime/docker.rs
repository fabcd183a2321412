//! [`Runtime`] over the Docker Engine API (bollard), negotiated down to what the engine speaks. A spec
//! value the engine's types cannot hold, or a secret/config that cannot be archived (`tar`), is refused
//! before its container is created; a container that replaces another takes over its anonymous volumes.

use super::auth::RegistryAuth;
use super::{ContainerState, ImageInfo, Owner, Runtime, RuntimeError};
use crate::model::{
    labels, ActualContainer, ActualObject, ActualState, ContainerSpec, NetworkSpec, VolumeSpec,
};
use bollard::errors::Error as BollardError;
use bollard::models::{
    ContainerCreateBody, ContainerSummaryStateEnum, Ipam, IpamConfig, NetworkConnectRequest,
    NetworkCreateRequest, VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, ListContainersOptions, ListNetworksOptions,
    ListVolumesOptions, RemoveContainerOptions, RenameContainerOptions, StopContainerOptions,
};
use bollard::Docker;
use futures_util::StreamExt;
use std::collections::HashMap;

mod body;
mod files;
mod inherit;
pub use body::SpecError;
use body::{container_body, endpoint};
use files::files_tar;
use inherit::Carried;

/// Seconds a single engine request may take (pulls stream and are not bound by this).
const REQUEST_TIMEOUT_SECS: u64 = 120;
/// From this API version on (Docker 25), a MAC address belongs to the network endpoint.
const MAC_ON_ENDPOINT: bollard::ClientVersion = bollard::ClientVersion {
    major_version: 1,
    minor_version: 44,
};

fn bytes_of(v: &serde_json::Value) -> hyper::body::Bytes {
    hyper::body::Bytes::from(serde_json::to_vec(v).unwrap_or_default())
}

/// The API version assumed when the engine cannot be asked (Docker 20.10).
const FALLBACK_API: (usize, usize) = (1, 41);

#[derive(Clone)]
pub struct DockerRuntime {
    docker: Docker,
    /// Registry credentials file (`None`: Docker's default locations), read at every pull so a rotated
    /// file takes effect without a restart, and a missing one only fails the pulls that need it.
    auth_file: Option<std::path::PathBuf>,
}

impl DockerRuntime {
    /// Connect to `host` (`unix://…`, `tcp://…`) or Docker's defaults (`DOCKER_HOST`, then the local
    /// socket), and negotiate the API version down to the engine's.
    pub async fn connect(host: Option<&str>) -> Result<Self, RuntimeError> {
        let docker = Self::client_for(host, bollard::API_DEFAULT_VERSION)?;
        match docker.negotiate_version().await {
            Ok(docker) => Ok(DockerRuntime {
                docker,
                auth_file: None,
            }),
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
                    auth_file: None,
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

    /// After create: attach the networks beyond the first (the engine takes one at create time on API
    /// versions before 1.44), in priority order, and copy in the injected files (`files`: their tar
    /// archive, made before the container was created).
    async fn finish_create(
        &self,
        spec: &ContainerSpec,
        name: &str,
        id: &str,
        files: Option<Vec<u8>>,
    ) -> Result<(), RuntimeError> {
        if spec.network_mode.is_none() {
            for net in spec.networks.iter().skip(1) {
                let req = NetworkConnectRequest {
                    container: id.to_string(),
                    endpoint_config: Some(endpoint(net)),
                };
                self.docker
                    .connect_network(&net.name, req)
                    .await
                    .map_err(engine_err(format!(
                        "container {name}, network {}",
                        net.name
                    )))?;
            }
        }
        if let Some(tar) = files {
            self.docker
                .upload_to_container(
                    id,
                    Some(bollard::query_parameters::UploadToContainerOptions {
                        path: "/".into(),
                        ..Default::default()
                    }),
                    bollard::body_full(tar.into()),
                )
                .await
                .map_err(engine_err(format!("container {name}, secrets and configs")))?;
        }
        Ok(())
    }

    /// The anonymous volumes of container `old` that a container made from `spec` takes over: the old
    /// container's mounts and the new image's `VOLUME`s, asked for at once.
    async fn carried_volumes(
        &self,
        spec: &ContainerSpec,
        old: &str,
    ) -> Result<Vec<Carried>, RuntimeError> {
        let (container, image) = tokio::join!(
            self.docker.inspect_container(
                old,
                None::<bollard::query_parameters::InspectContainerOptions>
            ),
            self.docker.inspect_image(&spec.image)
        );
        let mounts = container
            .map_err(engine_err(format!("container {old}")))?
            .mounts
            .unwrap_or_default();
        let image_volumes = image
            .map_err(engine_err(format!("image {}", spec.image)))?
            .config
            .and_then(|c| c.volumes)
            .unwrap_or_default();
        Ok(inherit::carried_volumes(spec, &mounts, &image_volumes))
    }

    /// A client whose container-create request carries `MacAddress` at the container level, where
    /// engines before API 1.44 read it (bollard's model no longer has that field).
    fn with_container_mac(
        &self,
        body: &ContainerCreateBody,
        mac: &str,
    ) -> Result<Docker, RuntimeError> {
        let mut json = serde_json::to_value(body).map_err(|e| RuntimeError::Engine {
            object: "container".into(),
            message: e.to_string(),
        })?;
        json["MacAddress"] = serde_json::Value::String(mac.to_string());
        let bytes = bytes_of(&json);
        Ok(self.docker.clone().with_request_modifier(move |req| {
            if req.method() != hyper::Method::POST
                || !req.uri().path().ends_with("/containers/create")
            {
                return req;
            }
            let (mut parts, _) = req.into_parts();
            parts.headers.remove(hyper::header::CONTENT_LENGTH);
            hyper::Request::from_parts(parts, bollard::body_full(bytes.clone()))
        }))
    }

    /// Read registry credentials from this file (Docker `config.json` format) for pulls.
    pub fn with_auth_file(mut self, file: Option<std::path::PathBuf>) -> Self {
        self.auth_file = file;
        self
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
                image_id: c.image_id.clone().unwrap_or_default(),
                exit_code: c.status.as_deref().and_then(exit_code_of_status),
                running: matches!(
                    c.state,
                    Some(
                        ContainerSummaryStateEnum::RUNNING | ContainerSummaryStateEnum::RESTARTING
                    )
                ),
                state: state_word,
                finished: false,
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

    async fn inspect_image(&self, image: &str) -> Result<Option<ImageInfo>, RuntimeError> {
        match self.docker.inspect_image(image).await {
            Ok(i) => Ok(Some(ImageInfo {
                id: i.id.unwrap_or_default(),
                tagged_at: i
                    .metadata
                    .and_then(|m| m.last_tag_time)
                    .and_then(|t| parse_rfc3339(&t)),
            })),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(engine_err(format!("image {image}"))(e)),
        }
    }

    async fn pull_image(
        &self,
        image: &str,
        platform: Option<&str>,
        progress: &(dyn Fn(&str) + Sync),
    ) -> Result<(), RuntimeError> {
        let (from_image, tag) = split_image(image);
        let credentials = RegistryAuth::load(self.auth_file.as_deref())
            .map_err(|e| RuntimeError::Image {
                image: image.to_string(),
                message: e.to_string(),
            })?
            .for_image(image);
        let mut stream = self.docker.create_image(
            Some(CreateImageOptions {
                from_image: Some(from_image),
                tag: Some(tag),
                platform: platform.unwrap_or_default().to_string(),
                ..Default::default()
            }),
            None,
            credentials,
        );
        let fail = |message: String| RuntimeError::Image {
            image: image.to_string(),
            message,
        };
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    if let Some(detail) = info.error_detail {
                        return Err(fail(detail.message.unwrap_or_else(|| "pull failed".into())));
                    }
                    if let Some(status) = info.status {
                        let line = match (info.id, info.progress_detail) {
                            (Some(id), Some(d)) if d.total.unwrap_or(0) > 0 => format!(
                                "{id}: {status} {}/{} KiB",
                                d.current.unwrap_or(0) / 1024,
                                d.total.unwrap_or(0) / 1024
                            ),
                            (Some(id), _) => format!("{id}: {status}"),
                            (None, _) => status,
                        };
                        progress(&line);
                    }
                }
                Err(BollardError::DockerResponseServerError { message, .. }) => {
                    return Err(fail(message))
                }
                Err(e) => return Err(fail(e.to_string())),
            }
        }
        Ok(())
    }

    async fn inventory(&self) -> Result<crate::preflight::Inventory, RuntimeError> {
        let list = self.docker.list_containers(Some(ListContainersOptions {
            all: true,
            ..Default::default()
        }));
        let nets = self.docker.list_networks(None::<ListNetworksOptions>);
        let vols = self.docker.list_volumes(None::<ListVolumesOptions>);
        let (list, nets, vols) = tokio::join!(list, nets, vols);
        let owner = |labels: Option<&HashMap<String, String>>| {
            labels.and_then(|l| l.get(labels::AGENT)).cloned()
        };
        let mut inv = crate::preflight::Inventory::default();
        for c in list.map_err(engine_err("containers"))? {
            let names: Vec<String> = c
                .names
                .iter()
                .flatten()
                .map(|n| n.trim_start_matches('/').to_string())
                .collect();
            for name in &names {
                inv.containers
                    .push((name.clone(), owner(c.labels.as_ref())));
            }
            inv.container_states
                .push(crate::preflight::ContainerPresence {
                    id: c.id.clone().unwrap_or_default(),
                    names,
                    state: c.state.map(|s| s.to_string()).unwrap_or_default(),
                });
        }
        for n in nets.map_err(engine_err("networks"))? {
            inv.networks
                .push((n.name.clone().unwrap_or_default(), owner(n.labels.as_ref())));
        }
        for v in vols
            .map_err(engine_err("volumes"))?
            .volumes
            .into_iter()
            .flatten()
        {
            inv.volumes.push((v.name.clone(), owner(Some(&v.labels))));
        }
        Ok(inv)
    }

    async fn container_state(&self, id: &str) -> Result<ContainerState, RuntimeError> {
        let c = self
            .docker
            .inspect_container(
                id,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
            .map_err(engine_err(format!("container {id}")))?;
        let st = c.state.unwrap_or_default();
        let health = st.health.unwrap_or_default();
        Ok(ContainerState {
            running: st.running.unwrap_or(false),
            status: st.status.map(|s| s.to_string()).unwrap_or_default(),
            health: health
                .status
                .map(|s| s.to_string())
                .filter(|s| !s.is_empty() && s != "none"),
            exit_code: st.exit_code,
            restart_count: c.restart_count.unwrap_or(0),
            health_output: health
                .log
                .and_then(|log| log.into_iter().last())
                .and_then(|r| r.output),
        })
    }

    async fn create_network(&self, spec: &NetworkSpec, owner: &Owner) -> Result<(), RuntimeError> {
        let mut labels: HashMap<String, String> = spec.labels.clone().into_iter().collect();
        labels.insert(labels::AGENT.into(), owner.agent_id.clone());
        labels.insert(labels::STACK.into(), spec.stack.clone());
        let ipam = spec.ipam.as_ref().map(|i| Ipam {
            driver: i.driver.clone(),
            config: Some(
                i.config
                    .iter()
                    .map(|p| IpamConfig {
                        subnet: p.subnet.clone(),
                        ip_range: p.ip_range.clone(),
                        gateway: p.gateway.clone(),
                        auxiliary_addresses: non_empty_map(&p.aux_addresses),
                    })
                    .collect(),
            ),
            options: non_empty_map(&i.options),
        });
        self.docker
            .create_network(NetworkCreateRequest {
                name: spec.name.clone(),
                driver: Some(spec.driver.clone().unwrap_or_else(|| "bridge".into())),
                internal: Some(spec.internal),
                attachable: Some(spec.attachable),
                enable_ipv6: spec.enable_ipv6,
                options: non_empty_map(&spec.driver_opts),
                ipam,
                labels: Some(labels),
                ..Default::default()
            })
            .await
            .map_err(engine_err(format!("network {}", spec.name)))?;
        Ok(())
    }

    async fn remove_network(&self, name: &str) -> Result<(), RuntimeError> {
        // Right after its containers are removed, an engine may still count their endpoints for a
        // moment ("has active endpoints"): try again for a few seconds before calling it an error
        // (a container berth does not own that is still attached keeps it failing, as it should).
        let mut delay = std::time::Duration::from_millis(100);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            match self.docker.remove_network(name).await {
                Err(e) if is_not_found(&e) => return Ok(()),
                Err(BollardError::DockerResponseServerError { message, .. })
                    if message.contains("active endpoints")
                        && std::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(std::time::Duration::from_secs(1));
                }
                r => return r.map_err(engine_err(format!("network {name}"))),
            }
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
                driver_opts: non_empty_map(&spec.driver_opts),
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
        replaces: Option<&str>,
    ) -> Result<String, RuntimeError> {
        // Errors name the container the operator knows, whatever name it is created under.
        let shown = spec.name.as_str();
        let spec_err = |e: SpecError| RuntimeError::Engine {
            object: format!("container {shown}"),
            message: e.to_string(),
        };
        let carried = match replaces {
            Some(old) => self.carried_volumes(spec, old).await?,
            None => Vec::new(),
        };
        // Everything that can be refused is checked before the container exists.
        let body = container_body(spec, owner, &carried).map_err(spec_err)?;
        let files = if spec.files.is_empty() {
            None
        } else {
            Some(files_tar(spec).map_err(spec_err)?)
        };
        let docker = match &spec.mac_address {
            Some(mac) if self.docker.client_version() < MAC_ON_ENDPOINT => {
                self.with_container_mac(&body, mac)?
            }
            _ => self.docker.clone(),
        };
        let id = docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(name.to_string()),
                    platform: spec.platform.clone().unwrap_or_default(),
                }),
                body,
            )
            .await
            .map_err(engine_err(format!("container {shown}")))?
            .id;
        if let Err(e) = self.finish_create(spec, shown, &id, files).await {
            let _ = self.remove_container(&id).await;
            return Err(e);
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
        let t = match grace.map(i32::try_from).transpose() {
            Ok(t) => t,
            Err(_) => {
                return Err(RuntimeError::Engine {
                    object: format!("container {id}"),
                    message: format!(
                        "stop_grace_period: {}s is more than the engine takes ({}s)",
                        grace.unwrap_or_default(),
                        i32::MAX
                    ),
                })
            }
        };
        let opts = StopContainerOptions { t, signal: None };
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

fn non_empty_map(
    m: &std::collections::BTreeMap<String, String>,
) -> Option<HashMap<String, String>> {
    if m.is_empty() {
        None
    } else {
        Some(m.clone().into_iter().collect())
    }
}

/// `Exited (137) 5 minutes ago` → 137.
fn exit_code_of_status(status: &str) -> Option<i64> {
    let rest = status.strip_prefix("Exited (")?;
    rest.split(')').next()?.parse().ok()
}

/// RFC 3339 (`2026-11-25T08:00:00.123456789Z`, or with an offset) → seconds since the epoch.
fn parse_rfc3339(s: &str) -> Option<i64> {
    s.parse::<jiff::Timestamp>().ok().map(|t| t.as_second())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_timestamps() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2026-11-25T08:00:00.123456789Z"),
            Some(1_795_593_600)
        );
        assert_eq!(
            parse_rfc3339("2026-11-25T09:30:00+01:30"),
            Some(1_795_593_600)
        );
        // Docker's zero time (never tagged) is a time long ago, not an error.
        assert!(parse_rfc3339("0001-01-01T00:00:00Z").is_some_and(|t| t < 0));
        assert_eq!(parse_rfc3339("yesterday"), None);
        assert_eq!(parse_rfc3339("2026-13-45T99:00:00Z"), None);
    }

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
mod engine_tests;
