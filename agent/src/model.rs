//! Desired and actual state as plain data, and the canonical spec hash.
//!
//! Everything here is normalised by `render/` once, so that the hash of a [`ContainerSpec`] is stable:
//! the same compose input always gives the same bytes, and defaults are written out explicitly instead of
//! being left for the engine to fill in.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Label keys berth puts on every object it creates.
pub mod labels {
    pub const AGENT: &str = "io.berth.agent";
    pub const STACK: &str = "io.berth.stack";
    pub const SERVICE: &str = "io.berth.service";
    pub const REPLICA: &str = "io.berth.replica";
    pub const SPEC_HASH: &str = "io.berth.spec-hash";
    pub const REVISION: &str = "io.berth.revision";
    /// The canonical JSON the spec hash is computed over ([`super::ContainerSpec::canonical_json`]), so
    /// `berth diff` can name the fields a recreate changes. Env values are in it as they are in the
    /// container's own config; secret values never are (only their digests).
    pub const SPEC: &str = "io.berth.spec";
}

/// Everything the followed directory describes, after rendering.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredState {
    /// Stacks by name.
    pub stacks: BTreeMap<String, StackSpec>,
    /// The secret values this state was rendered with (see [`crate::sensitive`]); never serialised.
    #[serde(skip)]
    pub sensitive: crate::sensitive::Sensitive,
}

impl DesiredState {
    pub fn containers(&self) -> impl Iterator<Item = &ContainerSpec> {
        self.stacks.values().flat_map(|s| s.containers.iter())
    }
    pub fn networks(&self) -> impl Iterator<Item = &NetworkSpec> {
        self.stacks.values().flat_map(|s| s.networks.iter())
    }
    pub fn volumes(&self) -> impl Iterator<Item = &VolumeSpec> {
        self.stacks.values().flat_map(|s| s.volumes.iter())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackSpec {
    pub name: String,
    /// Directory of the stack relative to the repository root (`.` for the root), for messages.
    pub dir: String,
    /// One entry per replica, `<stack>-<service>-<n>`, sorted by name.
    pub containers: Vec<ContainerSpec>,
    /// Networks this stack creates (engine names, `<stack>_<key>`), external ones excluded.
    pub networks: Vec<NetworkSpec>,
    /// Named volumes this stack creates (engine names, `<stack>_<key>`), external ones excluded.
    pub volumes: Vec<VolumeSpec>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkSpec {
    /// Engine name, e.g. `shop_default`.
    pub name: String,
    pub stack: String,
    pub driver: Option<String>,
    pub internal: bool,
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub driver_opts: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipam: Option<IpamSpec>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub attachable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_ipv6: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpamSpec {
    pub driver: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config: Vec<IpamPool>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpamPool {
    pub subnet: Option<String>,
    pub ip_range: Option<String>,
    pub gateway: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub aux_addresses: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeSpec {
    /// Engine name, e.g. `shop_data`.
    pub name: String,
    pub stack: String,
    pub driver: Option<String>,
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub driver_opts: BTreeMap<String, String>,
}

/// One container, fully normalised. Field order matters: it is the canonical serialisation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSpec {
    /// `<stack>-<service>-<replica>`.
    pub name: String,
    pub stack: String,
    pub service: String,
    /// 1-based.
    pub replica: u32,
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// `KEY=VALUE`, sorted by key, last definition wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<MountSpec>,
    /// Networks to attach to, sorted by name (engine names). Empty when `network_mode` is set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<NetworkAttachment>,
    /// `host`, `none`, `bridge`, `container:<id>`; `None` means the stack networks above.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_mode: Option<String>,
    /// `no`, `always`, `on-failure[:N]`, `unless-stopped`; defaults to `no` like Compose.
    pub restart: String,
    /// The user's labels only; berth's own are added by the runtime.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<HealthcheckSpec>,
    /// Services of the same stack this one starts after, sorted by service. Not part of the spec hash.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<Dependency>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// `host:ip`, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_drop: Vec<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub privileged: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<DeviceSpec>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub read_only: bool,
    /// `path[:options]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tmpfs: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// Seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_grace_period: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<bool>,
    /// SHA-256 over the content of every repository file bind-mounted into this container (paths and
    /// bytes), so that changing a mounted config file changes the spec hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_digest: Option<String>,
    /// `port/protocol`, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expose: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domainname: Option<String>,
    /// In the order written (resolver order matters).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_opt: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_cgroup_rules: Vec<String>,
    /// Bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shm_size: Option<i64>,
    /// Sorted by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ulimits: Vec<UlimitSpec>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctls: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_opt: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipc: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userns_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group_add: Vec<String>,
    /// Bytes (`mem_limit`, `deploy.resources.limits.memory`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<i64>,
    /// Bytes; -1 is unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_swap: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_reservation: Option<i64>,
    /// CPUs × 10⁹ (`cpus`, `deploy.resources.limits.cpus`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nano_cpus: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_shares: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpuset: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids_limit: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oom_kill_disable: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oom_score_adj: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging: Option<LoggingSpec>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub tty: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub stdin_open: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    /// The cgroup and namespace settings Compose passes to the engine as they are (see
    /// `render/cgroups.rs`): `mem_swappiness` (0-100; 0 is never sent, as in Compose), CFS and realtime
    /// periods and quotas in microseconds, Windows' CPU count and percent, the parent cgroup, the
    /// cgroup namespace (`host`, `private`), the UTS namespace (`host`), the isolation technology.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_swappiness: Option<i64>,
    /// `volumes_from`, as the engine takes it: `<container>[:ro|:rw]` (a service of the stack is
    /// `service:<name>[:mode]` until its first container's name is known).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes_from: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_period: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_quota: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_rt_period: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_rt_runtime: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_count: Option<i64>,
    /// As Compose sends it: the percentage × 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_percent: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup_parent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroupns: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uts: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation: Option<String>,
    /// `blkio_config`: block I/O weights and throttles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blkio: Option<BlkioSpec>,
    /// Files copied into the container before it starts (secrets and configs from `environment` or
    /// `content`). Only digests of secret values are kept here, never the values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<InjectedFile>,
    /// `always`, `missing` (default), `never`, `daily`, `weekly`, `every_<duration>`. Not hashed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_policy: Option<String>,
    /// A one-shot job: another service waits for it with `service_completed_successfully`, so having
    /// exited with code 0 is its converged state (it is not started again). Not hashed.
    #[serde(default, skip_serializing_if = "is_false")]
    pub run_once: bool,
    /// Keyed digests for the secret values in this spec ([`crate::sealing::attach_digests`]): the
    /// canonical JSON shows them instead of the values. Not serialised, not part of equality.
    #[serde(skip)]
    pub secrets: crate::sealing::SpecSecrets,
}

/// `blkio_config`, as Compose passes it to the engine.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlkioSpec {
    /// 10-1000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u16>,
    /// `rate` is the weight (10-1000).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub weight_device: Vec<DeviceRate>,
    /// Bytes per second.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_read_bps: Vec<DeviceRate>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_write_bps: Vec<DeviceRate>,
    /// Operations per second.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_read_iops: Vec<DeviceRate>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_write_iops: Vec<DeviceRate>,
}

/// A block device (absolute path on the host) and a weight or a rate, in the order written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRate {
    pub path: String,
    pub rate: i64,
}

/// A `depends_on` entry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Dependency {
    pub service: String,
    pub condition: Condition,
    /// Restart this container when berth recreates the dependency (a restart does not pass along a chain).
    #[serde(default, skip_serializing_if = "is_false")]
    pub restart: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    ServiceStarted,
    ServiceHealthy,
    ServiceCompletedSuccessfully,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct UlimitSpec {
    pub name: String,
    pub soft: i64,
    pub hard: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggingSpec {
    pub driver: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct InjectedFile {
    /// Absolute path in the container.
    pub target: String,
    pub source: FileSource,
    /// SHA-256 of the content, so a changed value recreates the container.
    pub digest: String,
    pub mode: u32,
    pub uid: Option<String>,
    pub gid: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileSource {
    /// The value of this variable of the agent's environment, read when the container is created.
    Env(String),
    /// Inline content from the compose file (configs), already in Git in clear.
    Content(String),
}

impl ContainerSpec {
    /// Names of the services this one depends on.
    pub fn dependency_names(&self) -> impl Iterator<Item = &str> {
        self.depends_on.iter().map(|d| d.service.as_str())
    }

    /// The engine is not asked to keep it running (`restart: no` or `on-failure`): exiting 0 by itself is
    /// finishing its work, for the health gate and, once the agent saw it, for the planner.
    pub fn may_finish(&self) -> bool {
        self.restart == "no" || self.restart.starts_with("on-failure")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PortSpec {
    pub host_ip: Option<String>,
    pub host_port: Option<u16>,
    pub container_port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MountKind {
    Bind,
    Volume,
    Tmpfs,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MountSpec {
    pub kind: MountKind,
    /// Absolute host path for binds; engine volume name for volumes (`<stack>_<key>` or external name).
    pub source: String,
    pub target: String,
    pub read_only: bool,
    /// Bind propagation (`rprivate`, `rshared`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub propagation: Option<String>,
    /// SELinux relabel: `z` or `Z`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selinux: Option<String>,
    /// `Some(false)`: a missing bind source is an error instead of an empty directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_host_path: Option<bool>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub nocopy: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subpath: Option<String>,
    /// tmpfs size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmpfs_size: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmpfs_mode: Option<u32>,
}

impl MountSpec {
    pub fn new(
        kind: MountKind,
        source: impl Into<String>,
        target: impl Into<String>,
        read_only: bool,
    ) -> Self {
        MountSpec {
            kind,
            source: source.into(),
            target: target.into(),
            read_only,
            propagation: None,
            selinux: None,
            create_host_path: None,
            nocopy: false,
            subpath: None,
            tmpfs_size: None,
            tmpfs_mode: None,
        }
    }

    /// Whether the engine's `Mounts` API is needed rather than a `Binds` string — the same choice Docker
    /// Compose makes, so containers look the same in `docker inspect`.
    pub fn needs_mount_api(&self) -> bool {
        match self.kind {
            MountKind::Tmpfs => true,
            MountKind::Bind => self.create_host_path == Some(false) || self.propagation.is_some(),
            MountKind::Volume => self.nocopy || self.subpath.is_some(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NetworkAttachment {
    /// Engine network name.
    pub name: String,
    /// Always includes the service name, like Compose; sorted.
    pub aliases: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_address: Option<String>,
    /// Higher first: the first network is attached at create time.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub priority: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac_address: Option<String>,
    /// Legacy links on this endpoint (`<container>:<alias>`), as Compose v2 sets them for `links:`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<String>,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthcheckSpec {
    /// Engine form: `["CMD", ...]`, `["CMD-SHELL", "..."]` or `["NONE"]`.
    pub test: Vec<String>,
    /// Nanoseconds, 0 = engine default.
    pub interval_ns: i64,
    pub timeout_ns: i64,
    pub start_period_ns: i64,
    pub retries: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_interval_ns: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DeviceSpec {
    pub host: String,
    pub container: String,
    /// e.g. `rwm`.
    pub permissions: String,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl ContainerSpec {
    /// The canonical hash of this spec: SHA-256 of its canonical JSON serialisation, hex.
    ///
    /// Every field is plain data with a fixed order (structs, sorted vectors, `BTreeMap`s), so the same
    /// rendered spec always hashes the same. Empty and default fields are left out of the serialisation,
    /// so a later release that adds a field does not change the hash of specs that do not use it (no
    /// fleet-wide recreate on upgrade). `depends_on` only orders the work and is not hashed, like Compose's
    /// config hash.
    pub fn spec_hash(&self) -> String {
        hash_canonical(&self.canonical_json())
    }

    /// The canonical JSON serialisation [`ContainerSpec::spec_hash`] hashes: the spec without the fields
    /// that are not hashed.
    ///
    /// Each secret value (see [`crate::sensitive`]) is shown as its keyed digest when digests are
    /// attached ([`crate::sealing::attach_digests`]), so the label never holds the value and a changed
    /// value still changes the hash.
    pub fn canonical_json(&self) -> String {
        let mut view = self.clone();
        view.depends_on.clear();
        view.pull_policy = None;
        view.run_once = false;
        if let Some(redactor) = self.secrets.0.as_ref().filter(|r| !r.is_empty()) {
            let mut value = serde_json::to_value(&view).expect("ContainerSpec serialises");
            redactor.redact_json(&mut value);
            // Back through the struct keeps its field order; a digest where a typed word stood (a
            // secret equal to `bind`) cannot go back, and the map's own order is as stable.
            return match serde_json::from_value::<ContainerSpec>(value.clone()) {
                Ok(spec) => serde_json::to_string(&spec).expect("ContainerSpec serialises"),
                Err(_) => value.to_string(),
            };
        }
        serde_json::to_string(&view).expect("ContainerSpec serialises")
    }
}

/// The spec hash of a canonical JSON serialisation (see [`ContainerSpec::canonical_json`]).
pub fn hash_canonical(json: &str) -> String {
    hex(&Sha256::digest(json.as_bytes()))
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    ::hex::encode(bytes)
}

/// What the engine has, as far as berth owns it (one list call filtered by the owner label).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActualState {
    pub containers: Vec<ActualContainer>,
    /// Engine names of owned networks.
    pub networks: Vec<ActualObject>,
    /// Engine names of owned volumes.
    pub volumes: Vec<ActualObject>,
    /// Local image ids (`sha256:…`) of the images the desired state names, after pulling; an image that
    /// is not here is not available on the engine.
    #[serde(default)]
    pub images: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActualContainer {
    pub id: String,
    /// Without the leading `/`.
    pub name: String,
    pub stack: String,
    pub service: String,
    pub replica: u32,
    pub spec_hash: String,
    /// The image id the container was created from (`sha256:…`).
    #[serde(default)]
    pub image_id: String,
    pub running: bool,
    /// Exit code of a container that exited (parsed from the engine's status), if known.
    #[serde(default)]
    pub exit_code: Option<i64>,
    /// Engine state word: `running`, `exited`, `created`, `restarting`, ...
    pub state: String,
    /// The agent saw it exit with code 0 by itself (no kill or stop before its death; see
    /// [`crate::reconcile::drift`]): with a spec that [may finish](ContainerSpec::may_finish), it is done.
    #[serde(default, skip_serializing_if = "is_false")]
    pub finished: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActualObject {
    pub name: String,
    pub stack: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_hash_is_stable_and_sensitive() {
        let a = ContainerSpec {
            name: "s-web-1".into(),
            image: "busybox".into(),
            env: vec!["A=1".into()],
            ..Default::default()
        };
        let b = a.clone();
        assert_eq!(a.spec_hash(), b.spec_hash());
        assert_eq!(a.spec_hash().len(), 64);
        let mut c = a.clone();
        c.env = vec!["A=2".into()];
        assert_ne!(a.spec_hash(), c.spec_hash());
    }
}
