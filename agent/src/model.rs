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
}

/// Everything the followed directory describes, after rendering.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredState {
    /// Stacks by name.
    pub stacks: BTreeMap<String, StackSpec>,
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkSpec {
    /// Engine name, e.g. `shop_default`.
    pub name: String,
    pub stack: String,
    pub driver: Option<String>,
    pub internal: bool,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeSpec {
    /// Engine name, e.g. `shop_data`.
    pub name: String,
    pub stack: String,
    pub driver: Option<String>,
    pub labels: BTreeMap<String, String>,
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
    pub command: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    /// `KEY=VALUE`, sorted by key, last definition wins.
    pub env: Vec<String>,
    pub ports: Vec<PortSpec>,
    pub mounts: Vec<MountSpec>,
    /// Networks to attach to, sorted by name (engine names). Empty when `network_mode` is set.
    pub networks: Vec<NetworkAttachment>,
    /// `host`, `none`, `bridge`, `container:<id>`; `None` means the stack networks above.
    pub network_mode: Option<String>,
    /// `no`, `always`, `on-failure[:N]`, `unless-stopped`; defaults to `no` like Compose.
    pub restart: String,
    /// The user's labels only; berth's own are added by the runtime.
    pub labels: BTreeMap<String, String>,
    pub healthcheck: Option<HealthcheckSpec>,
    /// Services of the same stack this one starts after, sorted.
    pub depends_on: Vec<String>,
    pub user: Option<String>,
    pub working_dir: Option<String>,
    pub hostname: Option<String>,
    /// `host:ip`, sorted.
    pub extra_hosts: Vec<String>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub privileged: bool,
    pub devices: Vec<DeviceSpec>,
    pub read_only: bool,
    /// `path[:options]`.
    pub tmpfs: Vec<String>,
    pub stop_signal: Option<String>,
    /// Seconds.
    pub stop_grace_period: Option<u64>,
    pub init: Option<bool>,
    /// SHA-256 over the content of every repository file bind-mounted into this container (paths and
    /// bytes), so that changing a mounted config file changes the spec hash.
    pub content_digest: Option<String>,
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
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MountSpec {
    pub kind: MountKind,
    /// Absolute host path for binds; engine volume name for volumes (`<stack>_<key>` or external name).
    pub source: String,
    pub target: String,
    pub read_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NetworkAttachment {
    /// Engine network name.
    pub name: String,
    /// Always includes the service name, like Compose; sorted.
    pub aliases: Vec<String>,
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
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DeviceSpec {
    pub host: String,
    pub container: String,
    /// e.g. `rwm`.
    pub permissions: String,
}

impl ContainerSpec {
    /// The canonical hash of this spec: SHA-256 of its canonical JSON serialisation, hex.
    ///
    /// Every field is plain data with a fixed order (structs, sorted vectors, `BTreeMap`s), so the same
    /// rendered spec always hashes the same.
    pub fn spec_hash(&self) -> String {
        let bytes = serde_json::to_vec(self).expect("ContainerSpec serialises");
        hex(&Sha256::digest(&bytes))
    }
}

pub fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

/// What the engine has, as far as berth owns it (one list call filtered by the owner label).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActualState {
    pub containers: Vec<ActualContainer>,
    /// Engine names of owned networks.
    pub networks: Vec<ActualObject>,
    /// Engine names of owned volumes.
    pub volumes: Vec<ActualObject>,
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
    pub running: bool,
    /// Engine state word: `running`, `exited`, `created`, `restarting`, ...
    pub state: String,
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
