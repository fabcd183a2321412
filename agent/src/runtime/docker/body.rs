//! The engine's create request for a spec: the one place the model maps onto Docker's API (`Binds` or
//! `Mounts` per mount, as Compose chooses; network endpoints; labels). A value the engine's types cannot
//! hold is a [`SpecError`] naming the service, found before anything is created.

use super::inherit::{same_path, Carried};
use super::non_empty_map;
use crate::model::{labels, BlkioSpec, ContainerSpec, DeviceRate, MountKind, MountSpec};
use crate::runtime::Owner;
use bollard::models::{
    ContainerCreateBody, DeviceMapping, EndpointIpamConfig, EndpointSettings, HealthConfig,
    HostConfig, HostConfigLogConfig, Mount, NetworkingConfig, PortBinding,
    ResourcesBlkioWeightDevice, ResourcesUlimits, RestartPolicy, RestartPolicyNameEnum,
    ThrottleDevice,
};
use std::collections::HashMap;

pub(super) fn endpoint(net: &crate::model::NetworkAttachment) -> EndpointSettings {
    let ipam = if net.ipv4_address.is_some() || net.ipv6_address.is_some() {
        Some(EndpointIpamConfig {
            ipv4_address: net.ipv4_address.clone(),
            ipv6_address: net.ipv6_address.clone(),
            ..Default::default()
        })
    } else {
        None
    };
    EndpointSettings {
        aliases: Some(net.aliases.clone()),
        links: (!net.links.is_empty()).then(|| net.links.clone()),
        ipam_config: ipam,
        mac_address: net.mac_address.clone(),
        ..Default::default()
    }
}

/// A value of a service's spec the engine cannot take, found before anything is created. Names the
/// service and the key or the secret/config (by its target path), never a secret's content.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("service {service}: {key}: {value} is more than the engine takes ({max})")]
    OutOfRange {
        service: String,
        key: &'static str,
        value: u64,
        max: i64,
    },
    #[error(
        "service {service}: secret or config {target}: {field} {value:?} is not a numeric id \
         (0 to 4294967294)"
    )]
    BadId {
        service: String,
        target: String,
        field: &'static str,
        value: String,
    },
    #[error(
        "service {service}: secret or config {target}: variable {var} is not set in the agent's \
         environment"
    )]
    EnvUnset {
        service: String,
        target: String,
        var: String,
    },
    #[error("service {service}: secret or config {target}: {source}")]
    Archive {
        service: String,
        target: String,
        source: std::io::Error,
    },
}

/// A `Binds` entry the way Docker Compose writes it: `source:target:rw|ro[,z|Z][,propagation][,nocopy]`.
fn bind_string(m: &MountSpec) -> String {
    let mut opts = vec![if m.read_only { "ro" } else { "rw" }.to_string()];
    opts.extend(m.selinux.clone());
    opts.extend(m.propagation.clone());
    if m.nocopy {
        opts.push("nocopy".into());
    }
    format!("{}:{}:{}", m.source, m.target, opts.join(","))
}

fn mount_api(m: &MountSpec) -> Mount {
    use bollard::models::{
        MountBindOptions, MountBindOptionsPropagationEnum, MountTmpfsOptions, MountType,
        MountVolumeOptions,
    };
    let typ = match m.kind {
        MountKind::Bind => MountType::BIND,
        MountKind::Volume => MountType::VOLUME,
        MountKind::Tmpfs => MountType::TMPFS,
    };
    Mount {
        target: Some(m.target.clone()),
        // No source: an anonymous volume, which the engine makes.
        source: (m.kind != MountKind::Tmpfs && !m.source.is_empty()).then(|| m.source.clone()),
        typ: Some(typ),
        read_only: Some(m.read_only),
        bind_options: (m.kind == MountKind::Bind).then(|| MountBindOptions {
            propagation: m
                .propagation
                .as_deref()
                .and_then(|p| p.parse::<MountBindOptionsPropagationEnum>().ok()),
            create_mountpoint: m.create_host_path,
            ..Default::default()
        }),
        volume_options: (m.kind == MountKind::Volume).then(|| MountVolumeOptions {
            no_copy: Some(m.nocopy),
            subpath: m.subpath.clone(),
            ..Default::default()
        }),
        tmpfs_options: (m.kind == MountKind::Tmpfs
            && (m.tmpfs_size.is_some() || m.tmpfs_mode.is_some()))
        .then(|| MountTmpfsOptions {
            size_bytes: m.tmpfs_size,
            mode: m.tmpfs_mode.map(i64::from),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The `Binds` and `Mounts` of a container made from `spec`. An anonymous volume goes through the
/// `Mounts` API (as Compose sends it); where a replaced container's volume is `carried`, it takes the
/// anonymous volume's place at its target, and a carried volume of an image `VOLUME` is added.
fn binds_and_mounts(spec: &ContainerSpec, carried: &[Carried]) -> (Vec<String>, Vec<Mount>) {
    let mut binds = Vec::new();
    let mut mounts = Vec::new();
    for m in &spec.mounts {
        if m.kind == MountKind::Volume && m.source.is_empty() {
            let mut m = m.clone();
            if let Some(c) = carried.iter().find(|c| same_path(&c.target, &m.target)) {
                m.source = c.name.clone();
            }
            mounts.push(mount_api(&m));
        } else if m.needs_mount_api() {
            mounts.push(mount_api(m));
        } else {
            binds.push(bind_string(m));
        }
    }
    for c in carried {
        if !spec.mounts.iter().any(|m| same_path(&m.target, &c.target)) {
            mounts.push(Mount {
                typ: Some(bollard::models::MountType::VOLUME),
                source: Some(c.name.clone()),
                target: Some(c.target.clone()),
                read_only: Some(c.read_only),
                ..Default::default()
            });
        }
    }
    (binds, mounts)
}

/// The engine's create body for a spec: the one place the model maps onto Docker's API. A value the
/// engine's types cannot hold is an error naming the service, never a wrapped number.
pub(super) fn container_body(
    spec: &ContainerSpec,
    owner: &Owner,
    carried: &[Carried],
) -> Result<ContainerCreateBody, SpecError> {
    let stop_timeout = stop_timeout(spec)?;
    let all_labels = all_labels(spec, owner);
    let (exposed, bindings) = ports(spec);
    let non_empty = |v: &Vec<String>| if v.is_empty() { None } else { Some(v.clone()) };

    Ok(ContainerCreateBody {
        image: Some(spec.image.clone()),
        cmd: spec.command.clone(),
        entrypoint: spec.entrypoint.clone(),
        env: non_empty(&spec.env),
        user: spec.user.clone(),
        working_dir: spec.working_dir.clone(),
        hostname: spec.hostname.clone(),
        domainname: spec.domainname.clone(),
        tty: Some(spec.tty),
        open_stdin: Some(spec.stdin_open),
        labels: Some(all_labels),
        exposed_ports: exposed,
        stop_signal: spec.stop_signal.clone(),
        stop_timeout,
        healthcheck: spec.healthcheck.as_ref().map(|h| HealthConfig {
            test: if h.test.is_empty() {
                None
            } else {
                Some(h.test.clone())
            },
            interval: Some(h.interval_ns),
            timeout: Some(h.timeout_ns),
            start_period: Some(h.start_period_ns),
            start_interval: Some(h.start_interval_ns),
            retries: Some(h.retries),
        }),
        host_config: Some(host_config(spec, carried, bindings)),
        networking_config: networking_config(spec),
        ..Default::default()
    })
}

/// `stop_grace_period` as the engine's `StopTimeout`, an error when it is more than an `i32` holds.
fn stop_timeout(spec: &ContainerSpec) -> Result<Option<i64>, SpecError> {
    let Some(secs) = spec.stop_grace_period else {
        return Ok(None);
    };
    i64::try_from(secs)
        .ok()
        .filter(|_| i32::try_from(secs).is_ok())
        .map(Some)
        .ok_or_else(|| SpecError::OutOfRange {
            service: spec.service.clone(),
            key: "stop_grace_period",
            value: secs,
            max: i64::from(i32::MAX),
        })
}

/// The spec's own labels plus the agent's ownership labels (agent, stack, service, replica, spec hash,
/// spec, revision).
fn all_labels(spec: &ContainerSpec, owner: &Owner) -> HashMap<String, String> {
    let mut all_labels: HashMap<String, String> = spec.labels.clone().into_iter().collect();
    all_labels.insert(labels::AGENT.into(), owner.agent_id.clone());
    all_labels.insert(labels::STACK.into(), spec.stack.clone());
    all_labels.insert(labels::SERVICE.into(), spec.service.clone());
    all_labels.insert(labels::REPLICA.into(), spec.replica.to_string());
    all_labels.insert(labels::SPEC_HASH.into(), spec.spec_hash());
    // What the hash was computed over, so `berth diff` can name the fields a recreate changes. It holds
    // nothing the container's own config does not (secret values are digests).
    all_labels.insert(labels::SPEC.into(), spec.canonical_json());
    all_labels.insert(labels::REVISION.into(), owner.revision.clone());
    all_labels
}

/// Port bindings keyed `port/protocol`, `None` when there are none.
type Bindings = Option<HashMap<String, Option<Vec<PortBinding>>>>;

/// The exposed ports (sorted; `expose` plus every published port) and the port bindings, each `None`
/// when empty.
fn ports(spec: &ContainerSpec) -> (Option<Vec<String>>, Bindings) {
    let mut exposed: Vec<String> = spec.expose.clone();
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
                host_ip: Some(p.host_ip.clone().unwrap_or_default()),
                host_port: Some(p.host_port.map(|h| h.to_string()).unwrap_or_default()),
            });
    }
    let exposed = if exposed.is_empty() {
        None
    } else {
        exposed.sort();
        Some(exposed)
    };
    let bindings = if bindings.is_empty() {
        None
    } else {
        Some(bindings)
    };
    (exposed, bindings)
}

/// `restart:` as the engine's policy: `on-failure[:n]`, `always`, `unless-stopped`, else `no`.
fn restart_policy(spec: &ContainerSpec) -> RestartPolicy {
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
    RestartPolicy {
        name: Some(policy),
        maximum_retry_count: retries,
    }
}

/// The network mode: the spec's `network_mode`, else the first network's name.
fn network_mode(spec: &ContainerSpec) -> Option<String> {
    match &spec.network_mode {
        Some(m) => Some(m.clone()),
        None => spec.networks.first().map(|n| n.name.clone()),
    }
}

/// The endpoint settings of the first network, none under a `network_mode`.
fn networking_config(spec: &ContainerSpec) -> Option<NetworkingConfig> {
    match (&spec.network_mode, spec.networks.first()) {
        (None, Some(first)) => {
            let mut ep = endpoint(first);
            // The service-level `mac_address` is the primary endpoint's (Docker moved it there in API
            // 1.44; bollard no longer has the container-level field).
            if ep.mac_address.is_none() {
                ep.mac_address = spec.mac_address.clone();
            }
            Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(first.name.clone(), ep)])),
            })
        }
        _ => None,
    }
}

/// The host config: mounts, ports, restart, networking, privileges and namespaces here; the resource
/// limits from [`resources`].
fn host_config(spec: &ContainerSpec, carried: &[Carried], bindings: Bindings) -> HostConfig {
    let (binds, mounts) = binds_and_mounts(spec, carried);
    let non_empty = |v: &Vec<String>| if v.is_empty() { None } else { Some(v.clone()) };
    HostConfig {
        binds: non_empty(&binds),
        mounts: if mounts.is_empty() {
            None
        } else {
            Some(mounts)
        },
        port_bindings: bindings,
        restart_policy: Some(restart_policy(spec)),
        network_mode: network_mode(spec),
        cap_add: non_empty(&spec.cap_add),
        cap_drop: non_empty(&spec.cap_drop),
        privileged: Some(spec.privileged),
        readonly_rootfs: Some(spec.read_only),
        init: spec.init,
        extra_hosts: non_empty(&spec.extra_hosts),
        dns: non_empty(&spec.dns),
        dns_search: non_empty(&spec.dns_search),
        dns_options: non_empty(&spec.dns_opt),
        tmpfs: tmpfs(spec),
        devices: devices(spec),
        device_cgroup_rules: non_empty(&spec.device_cgroup_rules),
        shm_size: spec.shm_size,
        ulimits: ulimits(spec),
        sysctls: non_empty_map(&spec.sysctls),
        security_opt: non_empty(&spec.security_opt),
        pid_mode: spec.pid.clone(),
        ipc_mode: spec.ipc.clone(),
        userns_mode: spec.userns_mode.clone(),
        group_add: non_empty(&spec.group_add),
        log_config: spec.logging.as_ref().map(|l| HostConfigLogConfig {
            typ: l.driver.clone(),
            config: non_empty_map(&l.options),
        }),
        runtime: spec.runtime.clone(),
        volumes_from: non_empty(&spec.volumes_from),
        cgroup_parent: spec.cgroup_parent.clone(),
        // Render admits only the values these enums have.
        cgroupns_mode: spec.cgroupns.as_deref().and_then(|c| c.parse().ok()),
        uts_mode: spec.uts.clone(),
        isolation: spec.isolation.as_deref().and_then(|i| i.parse().ok()),
        ..resources(spec)
    }
}

/// The resource limits of the host config: memory, CPU, pids, OOM and block I/O; nothing else set.
fn resources(spec: &ContainerSpec) -> HostConfig {
    HostConfig {
        memory: spec.memory,
        memory_swap: spec.memory_swap,
        memory_reservation: spec.memory_reservation,
        nano_cpus: spec.nano_cpus,
        cpu_shares: spec.cpu_shares,
        cpuset_cpus: spec.cpuset.clone(),
        pids_limit: spec.pids_limit,
        // Compose always sends it, false unless set.
        oom_kill_disable: Some(spec.oom_kill_disable.unwrap_or(false)),
        oom_score_adj: spec.oom_score_adj,
        memory_swappiness: spec.mem_swappiness,
        cpu_period: spec.cpu_period,
        cpu_quota: spec.cpu_quota,
        cpu_realtime_period: spec.cpu_rt_period,
        cpu_realtime_runtime: spec.cpu_rt_runtime,
        cpu_count: spec.cpu_count,
        cpu_percent: spec.cpu_percent,
        blkio_weight: spec.blkio.as_ref().and_then(|b| b.weight),
        blkio_weight_device: blkio(spec, |b| &b.weight_device).map(|d| {
            d.iter()
                .map(|w| ResourcesBlkioWeightDevice {
                    path: Some(w.path.clone()),
                    // Render bounds weights to 10-1000.
                    weight: usize::try_from(w.rate).ok(),
                })
                .collect()
        }),
        blkio_device_read_bps: blkio(spec, |b| &b.device_read_bps).map(throttle),
        blkio_device_write_bps: blkio(spec, |b| &b.device_write_bps).map(throttle),
        blkio_device_read_iops: blkio(spec, |b| &b.device_read_iops).map(throttle),
        blkio_device_write_iops: blkio(spec, |b| &b.device_write_iops).map(throttle),
        ..Default::default()
    }
}

/// `tmpfs:` entries as path to options (empty when none given), `None` when there are none.
fn tmpfs(spec: &ContainerSpec) -> Option<HashMap<String, String>> {
    let tmpfs: HashMap<String, String> = spec
        .tmpfs
        .iter()
        .map(|t| match t.split_once(':') {
            Some((path, opts)) => (path.to_string(), opts.to_string()),
            None => (t.clone(), String::new()),
        })
        .collect();
    if tmpfs.is_empty() {
        None
    } else {
        Some(tmpfs)
    }
}

/// `devices:` as the engine's device mappings, `None` when there are none.
fn devices(spec: &ContainerSpec) -> Option<Vec<DeviceMapping>> {
    if spec.devices.is_empty() {
        return None;
    }
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
}

/// `ulimits:` as the engine's list, `None` when there are none.
fn ulimits(spec: &ContainerSpec) -> Option<Vec<ResourcesUlimits>> {
    if spec.ulimits.is_empty() {
        return None;
    }
    Some(
        spec.ulimits
            .iter()
            .map(|u| ResourcesUlimits {
                name: Some(u.name.clone()),
                soft: Some(u.soft),
                hard: Some(u.hard),
            })
            .collect(),
    )
}

/// One list of `blkio_config`, `None` when empty (as Compose leaves it out).
fn blkio(spec: &ContainerSpec, list: fn(&BlkioSpec) -> &Vec<DeviceRate>) -> Option<&[DeviceRate]> {
    spec.blkio
        .as_ref()
        .map(|b| list(b).as_slice())
        .filter(|l| !l.is_empty())
}

fn throttle(d: &[DeviceRate]) -> Vec<ThrottleDevice> {
    d.iter()
        .map(|t| ThrottleDevice {
            path: Some(t.path.clone()),
            rate: Some(t.rate),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blkio_config_reaches_the_host_config() {
        let owner = Owner {
            agent_id: "a".into(),
            revision: "r".into(),
        };
        let rate = |r: i64| DeviceRate {
            path: "/dev/vda".into(),
            rate: r,
        };
        let spec = ContainerSpec {
            service: "app".into(),
            blkio: Some(BlkioSpec {
                weight: Some(300),
                weight_device: vec![rate(400)],
                device_read_bps: vec![rate(12_582_912)],
                device_write_iops: vec![rate(30)],
                ..Default::default()
            }),
            ..Default::default()
        };
        let hc = container_body(&spec, &owner, &[])
            .unwrap()
            .host_config
            .unwrap();
        assert_eq!(hc.blkio_weight, Some(300));
        let wd = hc.blkio_weight_device.unwrap();
        assert_eq!(wd[0].path.as_deref(), Some("/dev/vda"));
        assert_eq!(wd[0].weight, Some(400));
        assert_eq!(hc.blkio_device_read_bps.unwrap()[0].rate, Some(12_582_912));
        assert_eq!(hc.blkio_device_write_iops.unwrap()[0].rate, Some(30));
        assert_eq!(hc.blkio_device_write_bps, None);
        assert_eq!(hc.blkio_device_read_iops, None);
    }

    #[test]
    fn stop_grace_period_out_of_the_engines_range_is_an_error() {
        let owner = Owner {
            agent_id: "a".into(),
            revision: "r".into(),
        };
        let mut spec = ContainerSpec {
            service: "app".into(),
            stop_grace_period: Some(90),
            ..Default::default()
        };
        assert_eq!(
            container_body(&spec, &owner, &[]).unwrap().stop_timeout,
            Some(90)
        );
        for secs in [2_147_483_648, u64::MAX] {
            spec.stop_grace_period = Some(secs);
            let e = container_body(&spec, &owner, &[]).unwrap_err();
            assert!(
                e.to_string().contains("service app: stop_grace_period"),
                "{e}"
            );
        }
    }
}

#[cfg(test)]
mod mount_tests {
    use super::*;
    use bollard::models::MountType;

    const OLD: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9";

    fn spec() -> ContainerSpec {
        ContainerSpec {
            mounts: vec![
                MountSpec::new(MountKind::Volume, "app_data", "/data", false),
                MountSpec::new(MountKind::Volume, "", "/cache", true),
            ],
            ..Default::default()
        }
    }

    #[test]
    fn an_anonymous_volume_goes_through_the_mounts_api_without_a_source() {
        let (binds, mounts) = binds_and_mounts(&spec(), &[]);
        assert_eq!(binds, ["app_data:/data:rw"]);
        assert_eq!(mounts.len(), 1);
        assert_eq!(mounts[0].typ, Some(MountType::VOLUME));
        assert_eq!(mounts[0].source, None);
        assert_eq!(mounts[0].target.as_deref(), Some("/cache"));
        assert_eq!(mounts[0].read_only, Some(true));
    }

    #[test]
    fn a_carried_volume_takes_the_anonymous_ones_place_or_is_added_for_an_image_volume() {
        let carried = [
            Carried {
                name: OLD.into(),
                target: "/cache".into(),
                read_only: false,
            },
            Carried {
                name: OLD.replace('0', "f"),
                target: "/var/lib/db".into(),
                read_only: false,
            },
        ];
        let (binds, mounts) = binds_and_mounts(&spec(), &carried);
        assert_eq!(binds, ["app_data:/data:rw"]);
        let got: Vec<(Option<&str>, Option<&str>, Option<bool>)> = mounts
            .iter()
            .map(|m| (m.source.as_deref(), m.target.as_deref(), m.read_only))
            .collect();
        let image = OLD.replace('0', "f");
        assert_eq!(
            got,
            [
                // The spec's read_only stays the spec's.
                (Some(OLD), Some("/cache"), Some(true)),
                (Some(image.as_str()), Some("/var/lib/db"), Some(false)),
            ]
        );
        // The spec hash is the spec's: what is carried is not part of it.
        let owner = Owner {
            agent_id: "a".into(),
            revision: "r".into(),
        };
        let labels = |c: &[Carried]| {
            container_body(&spec(), &owner, c)
                .unwrap()
                .labels
                .unwrap()
                .get(labels::SPEC_HASH)
                .cloned()
        };
        assert_eq!(labels(&carried), labels(&[]));
    }
}
