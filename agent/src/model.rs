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
    /// Services of the same stack this one starts after, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
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
        let mut view = self.clone();
        view.depends_on.clear();
        let bytes = serde_json::to_vec(&view).expect("ContainerSpec serialises");
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
