//! One service of a compose file → a [`ContainerSpec`] (before replicas are expanded).

use super::compose::{Net, Secret, SecretSource, StackInput, Vol};
use super::lines::{KeyPath, Seg};
use super::tree::{join_rel, resolve};
use super::values::*;
use super::{interpolate, EntryKind, Problem, Tree};
use crate::model::{
    Condition, ContainerSpec, Dependency, DeviceSpec, FileSource, HealthcheckSpec, InjectedFile,
    LoggingSpec, MountKind, MountSpec, NetworkAttachment, PortSpec, UlimitSpec,
};
use serde_yaml::{Mapping, Value};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Service keys of this release: the single-node Compose specification, without `build`.
pub(super) const SERVICE_KEYS: &[&str] = &[
    "image",
    "command",
    "entrypoint",
    "environment",
    "env_file",
    "ports",
    "expose",
    "volumes",
    "networks",
    "network_mode",
    "restart",
    "labels",
    "healthcheck",
    "depends_on",
    "deploy",
    "user",
    "working_dir",
    "hostname",
    "domainname",
    "extra_hosts",
    "dns",
    "dns_search",
    "dns_opt",
    "cap_add",
    "cap_drop",
    "privileged",
    "devices",
    "device_cgroup_rules",
    "read_only",
    "tmpfs",
    "shm_size",
    "stop_signal",
    "stop_grace_period",
    "init",
    "ulimits",
    "sysctls",
    "security_opt",
    "pid",
    "ipc",
    "userns_mode",
    "group_add",
    "mem_limit",
    "memswap_limit",
    "mem_reservation",
    "cpus",
    "cpu_shares",
    "cpuset",
    "oom_score_adj",
    "oom_kill_disable",
    "pids_limit",
    "logging",
    "container_name",
    "tty",
    "stdin_open",
    "platform",
    "pull_policy",
    "profiles",
    "scale",
    "secrets",
    "configs",
    "mac_address",
    "runtime",
    "extends",
];

/// Service keys of the Compose specification that this release refuses rather than ignores.
pub(super) const SERVICE_LATER: &[&str] = &[
    "annotations",
    "attach",
    "blkio_config",
    "cgroup",
    "cgroup_parent",
    "cpu_count",
    "cpu_percent",
    "cpu_period",
    "cpu_quota",
    "cpu_rt_period",
    "cpu_rt_runtime",
    "credential_spec",
    "develop",
    "driver_opts",
    "external_links",
    "gpus",
    "isolation",
    "label_file",
    "links",
    "mem_swappiness",
    "models",
    "post_start",
    "pre_stop",
    "provider",
    "storage_opt",
    "use_api_socket",
    "uts",
    "volumes_from",
];

pub(super) const MAX_REPLICAS: u64 = 100;

/// Top-level definitions a service may refer to.
pub(super) struct Refs<'a> {
    pub networks: &'a BTreeMap<String, Net>,
    pub volumes: &'a BTreeMap<String, Vol>,
    pub secrets: &'a BTreeMap<String, Secret>,
    pub configs: &'a BTreeMap<String, Secret>,
}

pub(super) struct Service {
    pub spec: ContainerSpec,
    pub replicas: u32,
    /// Services whose namespaces this one joins (`network_mode`, `pid`, `ipc`: `service:X`).
    pub namespace_of: Vec<String>,
    pub container_name: Option<String>,
    pub profiles: Vec<String>,
    /// Dependencies that must exist (`required: true`, the default).
    pub required: BTreeSet<String>,
}

pub(super) fn service(
    ctx: &mut Ctx,
    input: &StackInput,
    name: &str,
    path: &[Seg],
    m: &Mapping,
    services: &BTreeSet<String>,
    refs: &Refs,
) -> Option<Service> {
    let before = ctx.problems.len();
    let svc = Some(name);
    check_keys(ctx, svc, path, m, SERVICE_KEYS, SERVICE_LATER);
    let get = |k: &str| m.get(k).filter(|v| !v.is_null());
    let p = |k: &str| key(path, k);

    let image = match get("image") {
        Some(v) => string(ctx, svc, &p("image"), v).filter(|s| {
            let ok = !s.trim().is_empty() && !s.contains(char::is_whitespace);
            if !ok {
                ctx.err(svc, &p("image"), format!("{s:?} is not an image reference"));
            }
            ok
        }),
        None => None,
    };
    if image.is_none() && !m.contains_key("build") && get("image").is_none() {
        ctx.err(
            svc,
            path,
            "`image` is required (berth deploys images; it does not build them)",
        );
    }

    let mut spec = ContainerSpec {
        stack: input.name.clone(),
        service: name.to_string(),
        image: image.unwrap_or_default(),
        restart: "no".into(),
        ..Default::default()
    };
    spec.command = get("command").and_then(|v| command(ctx, name, &p("command"), v));
    spec.entrypoint = match m.get("entrypoint") {
        Some(v) => command(ctx, name, &p("entrypoint"), v),
        None => None,
    };

    // Environment: env_file entries first, then `environment`; last definition wins.
    // A key with no value anywhere is passed as the bare name, as Compose does (the engine then leaves
    // it unset).
    let mut env: BTreeMap<String, Option<String>> = BTreeMap::new();
    if let Some(v) = get("env_file") {
        let mut from_files = BTreeMap::new();
        env_files(ctx, input, name, &p("env_file"), v, &mut from_files);
        env.extend(from_files.into_iter().map(|(k, v)| (k, Some(v))));
    }
    if let Some(v) = get("environment") {
        for (k, val) in key_values(ctx, svc, &p("environment"), v) {
            let val = val.or_else(|| input.env.get(&k).cloned());
            env.insert(k, val);
        }
    }
    spec.env = env
        .into_iter()
        .map(|(k, v)| match v {
            Some(v) => format!("{k}={v}"),
            None => k,
        })
        .collect();

    if let Some(v) = get("ports") {
        spec.ports = ports(ctx, name, &p("ports"), v);
    }
    if let Some(v) = get("expose") {
        let mut expose = Vec::new();
        for (i, e) in string_list(ctx, svc, &p("expose"), v, false)
            .into_iter()
            .enumerate()
        {
            let (port, proto) = e.split_once('/').unwrap_or((e.as_str(), "tcp"));
            // A range stays one entry, as Compose passes it to the engine.
            match (parse_range(port), check_protocol(proto)) {
                (Ok((a, b)), Ok(())) => {
                    if a == b {
                        expose.push(format!("{a}/{proto}"));
                    } else {
                        expose.push(format!("{a}-{b}/{proto}"));
                    }
                }
                (Err(err), _) | (_, Err(err)) => ctx.err(svc, &idx(&p("expose"), i), err),
            }
        }
        expose.sort();
        expose.dedup();
        spec.expose = expose;
    }
    if let Some(v) = get("volumes") {
        spec.mounts = service_volumes(ctx, input, name, &p("volumes"), v, refs.volumes);
    }
    if let Some(v) = get("tmpfs") {
        spec.tmpfs = string_list(ctx, svc, &p("tmpfs"), v, true);
        spec.tmpfs.sort();
        spec.tmpfs.dedup();
    }
    for (section, default_dir) in [("secrets", "/run/secrets/"), ("configs", "/")] {
        if let Some(v) = get(section) {
            let table = if section == "secrets" {
                refs.secrets
            } else {
                refs.configs
            };
            secret_refs(
                ctx,
                input,
                name,
                &p(section),
                v,
                table,
                default_dir,
                &mut spec,
            );
        }
    }
    spec.mounts.sort_by(|a, b| a.target.cmp(&b.target));
    if spec.mounts.windows(2).any(|w| w[0].target == w[1].target) {
        ctx.err(svc, &p("volumes"), "two mounts use the same target path");
    }
    spec.files.sort();
    spec.content_digest = content_digest(ctx, input, name, path, &spec.mounts);

    // Networking.
    let mut namespace_of: Vec<String> = Vec::new();
    let mut depends: BTreeMap<String, Dependency> = BTreeMap::new();
    let mut required: BTreeSet<String> = BTreeSet::new();
    if let Some(v) = get("network_mode") {
        if let Some(mode) = string(ctx, svc, &p("network_mode"), v) {
            if m.get("networks").is_some_and(|n| !n.is_null()) {
                ctx.err(
                    svc,
                    &p("network_mode"),
                    "`network_mode` and `networks` cannot both be set",
                );
            }
            if let Some(peer) = mode.strip_prefix("service:") {
                if !services.contains(peer) {
                    ctx.err(
                        svc,
                        &p("network_mode"),
                        format!("service {peer:?} is not defined in this stack"),
                    );
                } else {
                    // Rewritten to `container:<peer's first container>` once names are known.
                    spec.network_mode = Some(mode.clone());
                    namespace_of.push(peer.to_string());
                    depends.insert(peer.to_string(), started(peer));
                    required.insert(peer.to_string());
                }
            } else if mode.is_empty() {
                ctx.err(svc, &p("network_mode"), "must not be empty");
            } else {
                spec.network_mode = Some(mode);
            }
        }
    }
    if spec.network_mode.is_none() {
        spec.networks = service_networks(ctx, name, &p("networks"), get("networks"), refs.networks);
    }
    // `pid` and `ipc` may share another service's namespace the same way.
    for k in ["pid", "ipc"] {
        if let Some(v) = get(k) {
            if let Some(mode) = string(ctx, svc, &p(k), v) {
                if let Some(peer) = mode.strip_prefix("service:") {
                    if services.contains(peer) {
                        depends.insert(peer.to_string(), started(peer));
                        required.insert(peer.to_string());
                        namespace_of.push(peer.to_string());
                    } else {
                        ctx.err(
                            svc,
                            &p(k),
                            format!("service {peer:?} is not defined in this stack"),
                        );
                    }
                }
                if k == "pid" {
                    spec.pid = Some(mode);
                } else {
                    spec.ipc = Some(mode);
                }
            }
        }
    }
    let opt_string = |ctx: &mut Ctx, k: &str| get(k).and_then(|v| string(ctx, svc, &p(k), v));
    spec.hostname = opt_string(ctx, "hostname");
    spec.domainname = opt_string(ctx, "domainname");
    spec.mac_address = opt_string(ctx, "mac_address");
    if let Some(v) = get("extra_hosts") {
        spec.extra_hosts = extra_hosts(ctx, name, &p("extra_hosts"), v);
    }
    for (k, field) in [
        ("dns", &mut spec.dns),
        ("dns_search", &mut spec.dns_search),
        ("dns_opt", &mut spec.dns_opt),
    ] {
        if let Some(v) = get(k) {
            *field = string_list(ctx, svc, &p(k), v, true);
        }
    }

    if let Some(v) = get("restart") {
        if let Some(r) = string(ctx, svc, &p("restart"), v) {
            if valid_restart(&r) {
                spec.restart = r;
            } else {
                ctx.err(
                    svc,
                    &p("restart"),
                    format!("{r:?} must be no, always, on-failure[:N] or unless-stopped"),
                );
            }
        }
    }
    spec.labels = super::compose::labels(ctx, svc, &p("labels"), get("labels"));
    if let Some(v) = get("healthcheck") {
        spec.healthcheck = healthcheck(ctx, name, &p("healthcheck"), v);
    }
    if let Some(v) = get("depends_on") {
        for (d, req) in depends_on(ctx, name, &p("depends_on"), v, services) {
            if req {
                required.insert(d.service.clone());
            }
            depends.insert(d.service.clone(), d);
        }
    }
    depends.remove(name);
    spec.depends_on = depends.into_values().collect();

    let mut replicas: Option<(u32, KeyPath)> = None;
    if let Some(v) = get("scale") {
        if let Some(n) = replica_count(ctx, name, &p("scale"), v) {
            replicas = Some((n, p("scale")));
        }
    }
    if let Some(v) = get("deploy") {
        deploy(
            ctx,
            name,
            &p("deploy"),
            v,
            &mut spec,
            &mut replicas,
            m.contains_key("restart"),
        );
    }
    let replicas = replicas.map(|(n, _)| n).unwrap_or(1);

    spec.user = opt_string(ctx, "user");
    spec.working_dir = opt_string(ctx, "working_dir");
    if let Some(v) = get("cap_add") {
        spec.cap_add = sorted_set(string_list(ctx, svc, &p("cap_add"), v, false));
    }
    if let Some(v) = get("cap_drop") {
        spec.cap_drop = sorted_set(string_list(ctx, svc, &p("cap_drop"), v, false));
    }
    let flag = |ctx: &mut Ctx, k: &str| get(k).and_then(|v| boolean(ctx, svc, &p(k), v));
    spec.privileged = flag(ctx, "privileged").unwrap_or(false);
    spec.read_only = flag(ctx, "read_only").unwrap_or(false);
    spec.init = flag(ctx, "init");
    spec.tty = flag(ctx, "tty").unwrap_or(false);
    spec.stdin_open = flag(ctx, "stdin_open").unwrap_or(false);
    spec.oom_kill_disable = flag(ctx, "oom_kill_disable");
    if let Some(v) = get("devices") {
        spec.devices = devices(ctx, name, &p("devices"), v);
    }
    if let Some(v) = get("device_cgroup_rules") {
        spec.device_cgroup_rules = string_list(ctx, svc, &p("device_cgroup_rules"), v, false);
    }
    spec.stop_signal = opt_string(ctx, "stop_signal");
    if let Some(v) = get("stop_grace_period") {
        spec.stop_grace_period =
            duration(ctx, svc, &p("stop_grace_period"), v).map(|d| d.as_secs());
    }
    if let Some(v) = get("shm_size") {
        spec.shm_size = bytes(ctx, svc, &p("shm_size"), v);
    }
    if let Some(v) = get("ulimits") {
        spec.ulimits = ulimits(ctx, name, &p("ulimits"), v);
    }
    if let Some(v) = get("sysctls") {
        spec.sysctls = key_values(ctx, svc, &p("sysctls"), v)
            .into_iter()
            .map(|(k, v)| (k, v.unwrap_or_default()))
            .collect();
    }
    if let Some(v) = get("security_opt") {
        spec.security_opt = string_list(ctx, svc, &p("security_opt"), v, false);
    }
    spec.userns_mode = opt_string(ctx, "userns_mode");
    if let Some(v) = get("group_add") {
        spec.group_add = string_list(ctx, svc, &p("group_add"), v, false);
    }
    // Resources: the service-level keys; `deploy.resources` (read above) wins where both are set.
    let mem = |ctx: &mut Ctx, k: &str| get(k).and_then(|v| bytes(ctx, svc, &p(k), v));
    spec.memory = spec.memory.or(mem(ctx, "mem_limit"));
    spec.memory_reservation = spec.memory_reservation.or(mem(ctx, "mem_reservation"));
    if let Some(v) = get("memswap_limit") {
        // -1 means unlimited swap.
        spec.memory_swap = match scalar(v).as_deref() {
            Some("-1") => Some(-1),
            _ => bytes(ctx, svc, &p("memswap_limit"), v),
        };
    }
    if let Some(v) = get("cpus") {
        if let Some(c) = cpus(ctx, svc, &p("cpus"), v) {
            spec.nano_cpus = spec.nano_cpus.or(Some(c));
        }
    }
    let int = |ctx: &mut Ctx, k: &str| get(k).and_then(|v| integer(ctx, svc, &p(k), v));
    spec.cpu_shares = int(ctx, "cpu_shares");
    spec.cpuset = opt_string(ctx, "cpuset");
    spec.oom_score_adj = int(ctx, "oom_score_adj");
    if let Some(n) = int(ctx, "pids_limit") {
        spec.pids_limit = spec.pids_limit.or(Some(n));
    }
    if let Some(v) = get("logging") {
        spec.logging = logging(ctx, name, &p("logging"), v);
    }
    spec.platform = opt_string(ctx, "platform");
    spec.runtime = opt_string(ctx, "runtime");
    if let Some(v) = get("pull_policy") {
        if let Some(policy) = string(ctx, svc, &p("pull_policy"), v) {
            match crate::images::PullPolicy::parse(&policy) {
                Ok(_) => spec.pull_policy = Some(policy),
                Err(e) => ctx.err(svc, &p("pull_policy"), e),
            }
        }
    }
    let profiles = match get("profiles") {
        Some(v) => string_list(ctx, svc, &p("profiles"), v, false),
        None => Vec::new(),
    };
    let container_name = opt_string(ctx, "container_name");
    if let Some(n) = &container_name {
        if !valid_container_name(n) {
            ctx.err(
                svc,
                &p("container_name"),
                format!("{n:?} is not a container name ([a-zA-Z0-9][a-zA-Z0-9_.-]*)"),
            );
        } else if replicas > 1 {
            ctx.err(
                svc,
                &p("container_name"),
                "a service with a container_name cannot have more than one replica",
            );
        }
    }
    if get("extends").is_some() {
        // Resolved (merged into this service) before conversion; a leftover means it could not be.
        ctx.err(svc, &p("extends"), "could not be resolved");
    }

    if ctx.problems.len() > before {
        return None;
    }
    Some(Service {
        spec,
        replicas,
        namespace_of,
        container_name,
        profiles,
        required,
    })
}

fn started(service: &str) -> Dependency {
    Dependency {
        service: service.to_string(),
        condition: Condition::ServiceStarted,
        restart: false,
    }
}

fn sorted_set(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v.dedup();
    v
}

fn valid_restart(r: &str) -> bool {
    match r.split_once(':') {
        Some(("on-failure", n)) => n.parse::<u32>().is_ok(),
        None => matches!(r, "no" | "always" | "on-failure" | "unless-stopped"),
        _ => false,
    }
}

fn valid_container_name(n: &str) -> bool {
    n.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn replica_count(ctx: &mut Ctx, service: &str, path: &[Seg], v: &Value) -> Option<u32> {
    let n = integer(ctx, Some(service), path, v)?;
    if n < 0 || n as u64 > MAX_REPLICAS {
        ctx.err(
            Some(service),
            path,
            format!("must be between 0 and {MAX_REPLICAS}"),
        );
        return None;
    }
    Some(n as u32)
}

/// `deploy`: replicas, resources (limits, reservations), restart_policy. Swarm-only keys are refused:
/// they would have no effect on a single engine.
fn deploy(
    ctx: &mut Ctx,
    service: &str,
    path: &[Seg],
    v: &Value,
    spec: &mut ContainerSpec,
    replicas: &mut Option<(u32, KeyPath)>,
    has_restart: bool,
) {
    let svc = Some(service);
    let Some(d) = as_map(ctx, svc, path, v) else {
        return;
    };
    check_keys(
        ctx,
        svc,
        path,
        d,
        &["replicas", "resources", "restart_policy", "mode"],
        &[
            "labels",
            "placement",
            "update_config",
            "rollback_config",
            "endpoint_mode",
        ],
    );
    if let Some(mode) = d.get("mode").and_then(scalar) {
        if mode != "replicated" {
            ctx.err(
                svc,
                &key(path, "mode"),
                format!("mode {mode:?}: only `replicated` makes sense on a single engine"),
            );
        }
    }
    if let Some(r) = d.get("replicas").filter(|v| !v.is_null()) {
        let rp = key(path, "replicas");
        if let Some(n) = replica_count(ctx, service, &rp, r) {
            if let Some((other, op)) = replicas.as_ref() {
                if *other != n {
                    ctx.err(
                        svc,
                        &rp,
                        format!(
                            "{n} replicas, but {} says {other}",
                            super::lines::display(op)
                        ),
                    );
                }
            }
            *replicas = Some((n, rp));
        }
    }
    if let Some(r) = d.get("resources").filter(|v| !v.is_null()) {
        let rp = key(path, "resources");
        if let Some(rm) = as_map(ctx, svc, &rp, r) {
            check_keys(ctx, svc, &rp, rm, &["limits", "reservations"], &[]);
            if let Some(l) = rm.get("limits").filter(|v| !v.is_null()) {
                let lp = key(&rp, "limits");
                if let Some(lm) = as_map(ctx, svc, &lp, l) {
                    check_keys(ctx, svc, &lp, lm, &["cpus", "memory", "pids"], &["devices"]);
                    if let Some(v) = lm.get("cpus") {
                        spec.nano_cpus = cpus(ctx, svc, &key(&lp, "cpus"), v);
                    }
                    if let Some(v) = lm.get("memory") {
                        spec.memory = bytes(ctx, svc, &key(&lp, "memory"), v);
                    }
                    if let Some(v) = lm.get("pids") {
                        spec.pids_limit = integer(ctx, svc, &key(&lp, "pids"), v);
                    }
                }
            }
            if let Some(r) = rm.get("reservations").filter(|v| !v.is_null()) {
                let lp = key(&rp, "reservations");
                if let Some(lm) = as_map(ctx, svc, &lp, r) {
                    check_keys(
                        ctx,
                        svc,
                        &lp,
                        lm,
                        &["cpus", "memory"],
                        &["devices", "generic_resources"],
                    );
                    if let Some(v) = lm.get("memory") {
                        spec.memory_reservation = bytes(ctx, svc, &key(&lp, "memory"), v);
                    }
                    // A CPU reservation is a Swarm scheduling hint; Compose checks it and passes nothing.
                    if let Some(v) = lm.get("cpus") {
                        cpus(ctx, svc, &key(&lp, "cpus"), v);
                    }
                }
            }
        }
    }
    if let Some(r) = d.get("restart_policy").filter(|v| !v.is_null()) {
        let rp = key(path, "restart_policy");
        if let Some(rm) = as_map(ctx, svc, &rp, r) {
            check_keys(
                ctx,
                svc,
                &rp,
                rm,
                &["condition", "max_attempts", "delay", "window"],
                &[],
            );
            let condition = rm
                .get("condition")
                .and_then(scalar)
                .unwrap_or_else(|| "any".into());
            let attempts = rm
                .get("max_attempts")
                .and_then(|v| integer(ctx, svc, &key(&rp, "max_attempts"), v));
            for k in ["delay", "window"] {
                if let Some(v) = rm.get(k) {
                    duration(ctx, svc, &key(&rp, k), v);
                }
            }
            let policy = match condition.as_str() {
                "none" => Some("no".to_string()),
                "any" => Some("always".to_string()),
                "on-failure" => Some(match attempts {
                    Some(n) if n > 0 => format!("on-failure:{n}"),
                    _ => "on-failure".to_string(),
                }),
                other => {
                    ctx.err(
                        svc,
                        &key(&rp, "condition"),
                        format!("{other:?} must be none, on-failure or any"),
                    );
                    None
                }
            };
            // `restart:` wins when both are set, as in Compose.
            if let (Some(p), false) = (policy, has_restart) {
                spec.restart = p;
            }
        }
    }
}

/// `cpus: 0.5` → nano CPUs.
fn cpus(ctx: &mut Ctx, service: Option<&str>, path: &[Seg], v: &Value) -> Option<i64> {
    let f = scalar(v).and_then(|s| s.trim().parse::<f64>().ok());
    match f {
        Some(f) if f >= 0.0 && f.is_finite() => Some((f * 1e9).round() as i64),
        _ => {
            ctx.err(
                service,
                path,
                format!("{} is not a number of CPUs", show(v)),
            );
            None
        }
    }
}

fn ulimits(ctx: &mut Ctx, service: &str, path: &[Seg], v: &Value) -> Vec<UlimitSpec> {
    let svc = Some(service);
    let Some(m) = as_map(ctx, svc, path, v) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (k, v) in m {
        let Some(name) = scalar(k) else { continue };
        let p = key(path, &name);
        let (soft, hard) = match v {
            Value::Mapping(lm) => {
                check_keys(ctx, svc, &p, lm, &["soft", "hard"], &[]);
                let soft = lm
                    .get("soft")
                    .and_then(|v| integer(ctx, svc, &key(&p, "soft"), v));
                let hard = lm
                    .get("hard")
                    .and_then(|v| integer(ctx, svc, &key(&p, "hard"), v));
                match (soft, hard) {
                    (Some(s), Some(h)) => (s, h),
                    _ => {
                        ctx.err(svc, &p, "needs both `soft` and `hard`");
                        continue;
                    }
                }
            }
            other => match integer(ctx, svc, &p, other) {
                Some(n) => (n, n),
                None => continue,
            },
        };
        out.push(UlimitSpec { name, soft, hard });
    }
    out.sort();
    out
}

fn logging(ctx: &mut Ctx, service: &str, path: &[Seg], v: &Value) -> Option<LoggingSpec> {
    let svc = Some(service);
    let m = as_map(ctx, svc, path, v)?;
    check_keys(ctx, svc, path, m, &["driver", "options"], &[]);
    let driver = m
        .get("driver")
        .filter(|v| !v.is_null())
        .and_then(|v| string(ctx, svc, &key(path, "driver"), v));
    let options = match m.get("options").filter(|v| !v.is_null()) {
        Some(o) => key_values(ctx, svc, &key(path, "options"), o)
            .into_iter()
            .map(|(k, v)| (k, v.unwrap_or_default()))
            .collect(),
        None => BTreeMap::new(),
    };
    Some(LoggingSpec { driver, options })
}

/// A service's `secrets:` / `configs:`: file sources become read-only bind mounts (as Compose does
/// without Swarm), `environment` and `content` sources are copied into the container before it starts.
#[allow(clippy::too_many_arguments)]
fn secret_refs(
    ctx: &mut Ctx,
    input: &StackInput,
    service: &str,
    path: &[Seg],
    v: &Value,
    table: &BTreeMap<String, Secret>,
    default_dir: &str,
    spec: &mut ContainerSpec,
) {
    let svc = Some(service);
    let Value::Sequence(items) = v else {
        ctx.err(svc, path, format!("must be a list, not {}", type_name(v)));
        return;
    };
    let section = match path.last() {
        Some(Seg::Key(k)) => k.clone(),
        _ => "secrets".into(),
    };
    for (i, item) in items.iter().enumerate() {
        let p = idx(path, i);
        let (source, target, uid, gid, mode) = match item {
            Value::String(s) => (s.clone(), None, None, None, None),
            Value::Mapping(m) => {
                check_keys(
                    ctx,
                    svc,
                    &p,
                    m,
                    &["source", "target", "uid", "gid", "mode"],
                    &[],
                );
                let Some(source) = m.get("source").and_then(scalar) else {
                    ctx.err(svc, &p, "`source` is required");
                    continue;
                };
                let mode = match m.get("mode").filter(|v| !v.is_null()) {
                    Some(v) => match file_mode(v) {
                        Some(n) => Some(n),
                        None => {
                            ctx.err(
                                svc,
                                &key(&p, "mode"),
                                format!("{} is not a file mode", show(v)),
                            );
                            continue;
                        }
                    },
                    None => None,
                };
                (
                    source,
                    m.get("target").and_then(scalar),
                    m.get("uid").and_then(scalar),
                    m.get("gid").and_then(scalar),
                    mode,
                )
            }
            other => {
                ctx.err(
                    svc,
                    &p,
                    format!("must be a name or a mapping, not {}", type_name(other)),
                );
                continue;
            }
        };
        let Some(def) = table.get(&source) else {
            ctx.err(
                svc,
                &p,
                format!("{section} {source:?} is not declared under the top-level `{section}:`"),
            );
            continue;
        };
        let target = match target {
            Some(t) if t.starts_with('/') => t,
            Some(t) => format!("{default_dir}{t}"),
            None => format!("{default_dir}{source}"),
        };
        match &def.source {
            SecretSource::File(rel) => {
                let mut m = MountSpec::new(
                    MountKind::Bind,
                    input.checkout_dir.join(rel).display().to_string(),
                    target,
                    true,
                );
                m.create_host_path = Some(false);
                spec.mounts.push(m);
            }
            SecretSource::Env { var, digest } => spec.files.push(InjectedFile {
                target,
                source: FileSource::Env(var.clone()),
                digest: digest.clone(),
                mode: mode.unwrap_or(0o444),
                uid,
                gid,
            }),
            SecretSource::Content(text) => spec.files.push(InjectedFile {
                target,
                digest: crate::model::hex(&Sha256::digest(text.as_bytes())),
                source: FileSource::Content(text.clone()),
                mode: mode.unwrap_or(0o444),
                uid,
                gid,
            }),
        }
    }
}

/// A file mode: an octal string (`"0440"`) or a number as YAML reads it (`0440` is 288 in YAML 1.2's
/// eyes only when written `0o440`; Compose reads a bare `0440` as octal).
fn file_mode(v: &Value) -> Option<u32> {
    match v {
        Value::String(s) => u32::from_str_radix(s.trim_start_matches("0o"), 8).ok(),
        Value::Number(n) => {
            let digits = n.to_string();
            if digits.starts_with('0') {
                u32::from_str_radix(&digits, 8).ok()
            } else {
                n.as_u64().map(|n| n as u32)
            }
        }
        _ => None,
    }
    .filter(|m| *m <= 0o7777)
}

pub(super) fn env_files(
    ctx: &mut Ctx,
    input: &StackInput,
    service: &str,
    path: &[Seg],
    v: &Value,
    env: &mut BTreeMap<String, String>,
) {
    let svc = Some(service);
    let items: Vec<(KeyPath, Value)> = match v {
        Value::Sequence(s) => s
            .iter()
            .enumerate()
            .map(|(i, v)| (idx(path, i), v.clone()))
            .collect(),
        other => vec![(path.to_vec(), other.clone())],
    };
    for (p, item) in items {
        let (file, required, raw) = match &item {
            Value::String(s) => (s.clone(), true, false),
            Value::Mapping(m) => {
                check_keys(ctx, svc, &p, m, &["path", "required", "format"], &[]);
                let Some(file) = m
                    .get("path")
                    .and_then(|v| string(ctx, svc, &key(&p, "path"), v))
                else {
                    ctx.err(svc, &p, "`path` is required");
                    continue;
                };
                let required = m
                    .get("required")
                    .and_then(|v| boolean(ctx, svc, &key(&p, "required"), v))
                    .unwrap_or(true);
                let raw = match m.get("format").filter(|v| !v.is_null()).and_then(scalar) {
                    None => false,
                    Some(f) if f == "dotenv" => false,
                    Some(f) if f == "raw" => true,
                    Some(f) => {
                        ctx.err(
                            svc,
                            &key(&p, "format"),
                            format!("{f:?} must be dotenv or raw"),
                        );
                        continue;
                    }
                };
                (file, required, raw)
            }
            other => {
                ctx.err(svc, &p, format!("must be a path, not {}", type_name(other)));
                continue;
            }
        };
        if Path::new(&file).is_absolute() {
            ctx.err(
                svc,
                &p,
                format!("{file}: an env_file must be a path inside the repository, relative to the stack"),
            );
            continue;
        }
        let Some(rel) = join_rel(&input.dir, Path::new(&file)) else {
            ctx.err(svc, &p, format!("{file} climbs out of the repository"));
            continue;
        };
        let resolved = match resolve(input.tree, &rel) {
            Ok(r) => r,
            Err(e) => {
                ctx.err(svc, &p, e);
                continue;
            }
        };
        match read_capped(input.tree, &resolved) {
            Ok(Some(bytes)) => {
                let text = String::from_utf8_lossy(&bytes);
                let parsed = if raw {
                    Ok(interpolate::parse_raw_env(&text))
                } else {
                    interpolate::parse_dotenv(&text, input.env)
                };
                match parsed {
                    Ok(pairs) => env.extend(pairs),
                    Err((line, msg)) => ctx.problems.push(Problem {
                        file: Some(resolved.display().to_string()),
                        line: Some(line),
                        column: None,
                        stack: Some(ctx.stack.clone()),
                        service: Some(service.to_string()),
                        message: msg,
                    }),
                }
            }
            Ok(None) if !required => {}
            Ok(None) => ctx.err(
                svc,
                &p,
                format!("env_file {} does not exist", rel.display()),
            ),
            Err(e) => ctx.err(svc, &p, format!("env_file {}: {e}", rel.display())),
        }
    }
}

pub(super) fn ports(ctx: &mut Ctx, service: &str, path: &[Seg], v: &Value) -> Vec<PortSpec> {
    let svc = Some(service);
    let Value::Sequence(items) = v else {
        ctx.err(svc, path, format!("must be a list, not {}", type_name(v)));
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let p = idx(path, i);
        let parsed = match item {
            Value::Number(_) | Value::String(_) => {
                parse_port_short(&scalar(item).unwrap_or_default())
            }
            Value::Mapping(m) => {
                check_keys(
                    ctx,
                    svc,
                    &p,
                    m,
                    &[
                        "target",
                        "published",
                        "host_ip",
                        "protocol",
                        "mode",
                        "name",
                        "app_protocol",
                    ],
                    &[],
                );
                port_long(m)
            }
            other => Err(format!("must be a port, not {}", type_name(other))),
        };
        match parsed {
            Ok(mut ports) => out.append(&mut ports),
            Err(e) => ctx.err(svc, &p, e),
        }
    }
    out.sort();
    out.dedup();
    out
}

pub(super) fn port_long(m: &Mapping) -> Result<Vec<PortSpec>, String> {
    let target = m
        .get("target")
        .and_then(scalar)
        .ok_or("`target` is required")?;
    let target = parse_port_number(&target)?;
    let protocol = m
        .get("protocol")
        .and_then(scalar)
        .unwrap_or_else(|| "tcp".into());
    check_protocol(&protocol)?;
    let host_ip = m.get("host_ip").and_then(scalar).filter(|s| !s.is_empty());
    let published = m
        .get("published")
        .and_then(scalar)
        .filter(|s| !s.is_empty());
    let hosts: Vec<Option<u16>> = match published {
        None => vec![None],
        Some(p) => {
            let (a, b) = parse_range(&p)?;
            if a != b {
                return Err(format!(
                    "published range {p} needs a target range of the same length"
                ));
            }
            vec![Some(a)]
        }
    };
    Ok(hosts
        .into_iter()
        .map(|h| PortSpec {
            host_ip: host_ip.clone(),
            host_port: h,
            container_port: target,
            protocol: protocol.clone(),
        })
        .collect())
}

pub(super) fn check_protocol(p: &str) -> Result<(), String> {
    if matches!(p, "tcp" | "udp" | "sctp") {
        Ok(())
    } else {
        Err(format!("protocol {p:?} must be tcp, udp or sctp"))
    }
}

pub(super) fn parse_port_number(s: &str) -> Result<u16, String> {
    match s.trim().parse::<u32>() {
        Ok(n) if (1..=65535).contains(&n) => Ok(n as u16),
        _ => Err(format!("{s:?} is not a port number (1-65535)")),
    }
}

pub(super) fn parse_range(s: &str) -> Result<(u16, u16), String> {
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (parse_port_number(a)?, parse_port_number(b)?);
            if b < a {
                return Err(format!("port range {s:?} is backwards"));
            }
            Ok((a, b))
        }
        None => {
            let n = parse_port_number(s)?;
            Ok((n, n))
        }
    }
}

/// `[[host_ip:][host_port[-end]]:]container_port[-end][/protocol]`; host ranges map one to one.
pub fn parse_port_short(s: &str) -> Result<Vec<PortSpec>, String> {
    let (spec, protocol) = match s.rsplit_once('/') {
        Some((a, p)) => (a, p.to_string()),
        None => (s, "tcp".to_string()),
    };
    check_protocol(&protocol).map_err(|e| format!("{s:?}: {e}"))?;
    // An IPv6 host address is written in brackets.
    let (host_ip, rest) = if let Some(r) = spec.strip_prefix('[') {
        let end = r
            .find(']')
            .ok_or_else(|| format!("{s:?}: unclosed '[' in host address"))?;
        let ip = &r[..end];
        let rest = r[end + 1..]
            .strip_prefix(':')
            .ok_or_else(|| format!("{s:?}: expected ':' after the host address"))?;
        (Some(ip.to_string()), rest.to_string())
    } else {
        let parts: Vec<&str> = spec.split(':').collect();
        match parts.len() {
            1 | 2 => (None, spec.to_string()),
            3 => (
                Some(parts[0].to_string()),
                format!("{}:{}", parts[1], parts[2]),
            ),
            _ => {
                return Err(format!(
                    "{s:?} is not a port mapping like 8080:80 or 127.0.0.1:8080:80/udp"
                ))
            }
        }
    };
    let host_ip = host_ip.filter(|h| !h.is_empty());
    let (host, container) = match rest.split_once(':') {
        Some((h, c)) => (Some(h), c),
        None => (None, rest.as_str()),
    };
    let (c0, c1) = parse_range(container).map_err(|e| format!("{s:?}: {e}"))?;
    let host = host.filter(|h| !h.is_empty());
    let mut out = Vec::new();
    match host {
        None => {
            for c in c0..=c1 {
                out.push(PortSpec {
                    host_ip: host_ip.clone(),
                    host_port: None,
                    container_port: c,
                    protocol: protocol.clone(),
                });
            }
        }
        Some(h) => {
            let (h0, h1) = parse_range(h).map_err(|e| format!("{s:?}: {e}"))?;
            if h1 - h0 != c1 - c0 {
                return Err(format!(
                    "{s:?}: the host range and the container range must be the same length"
                ));
            }
            for (i, c) in (c0..=c1).enumerate() {
                out.push(PortSpec {
                    host_ip: host_ip.clone(),
                    host_port: Some(h0 + i as u16),
                    container_port: c,
                    protocol: protocol.clone(),
                });
            }
        }
    }
    Ok(out)
}

/// A service's `volumes`: bind mounts, named and anonymous volumes (and `type: tmpfs`, returned as tmpfs
/// entries).
pub(super) fn service_volumes(
    ctx: &mut Ctx,
    input: &StackInput,
    service: &str,
    path: &[Seg],
    v: &Value,
    volumes: &BTreeMap<String, Vol>,
) -> Vec<MountSpec> {
    let svc = Some(service);
    let Value::Sequence(items) = v else {
        ctx.err(svc, path, format!("must be a list, not {}", type_name(v)));
        return Vec::new();
    };
    let mut mounts: Vec<MountSpec> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let p = idx(path, i);
        let parsed: Result<MountSpec, String> = match item {
            Value::String(s) => parse_volume_short(s),
            Value::Mapping(m) => volume_long(ctx, service, &p, m),
            other => Err(format!("must be a volume, not {}", type_name(other))),
        };
        let mut mount = match parsed {
            Ok(v) => v,
            Err(e) => {
                ctx.err(svc, &p, e);
                continue;
            }
        };
        if !mount.target.starts_with('/') {
            ctx.err(
                svc,
                &p,
                format!(
                    "target {:?} must be an absolute path in the container",
                    mount.target
                ),
            );
            continue;
        }
        match mount.kind {
            MountKind::Tmpfs => mounts.push(mount),
            MountKind::Bind => match bind_source(input, &mount.source) {
                Ok(host) => {
                    mount.source = host;
                    mounts.push(mount)
                }
                Err(e) => ctx.err(svc, &p, e),
            },
            MountKind::Volume => {
                if mount.source.is_empty() {
                    // An anonymous volume: the engine makes it, and a recreate carries it over.
                    mounts.push(mount);
                    continue;
                }
                match volumes.get(&mount.source) {
                    Some(vol) => {
                        mount.source = vol.spec.name.clone();
                        mounts.push(mount)
                    }
                    None => ctx.err(
                        svc,
                        &p,
                        format!(
                            "volume {:?} is not declared under the top-level `volumes:`",
                            mount.source
                        ),
                    ),
                }
            }
        }
    }
    mounts
}

/// Short syntax `source:target[:options]`: `ro`/`rw`, SELinux `z`/`Z`, bind propagation, `nocopy`.
pub(super) fn parse_volume_short(s: &str) -> Result<MountSpec, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let (source, target, mode) = match parts.as_slice() {
        [t] => ("", *t, ""),
        [s, t] => (*s, *t, ""),
        [s, t, m] => (*s, *t, *m),
        _ => {
            return Err(format!(
                "{s:?} is not a volume like ./conf:/etc/app:ro or data:/data"
            ))
        }
    };
    let kind = if source.is_empty() {
        MountKind::Volume
    } else if source.starts_with('.') || source.starts_with('/') || source.starts_with('~') {
        MountKind::Bind
    } else {
        MountKind::Volume
    };
    let mut m = MountSpec::new(kind, source, target, false);
    for opt in mode.split(',').filter(|o| !o.is_empty()) {
        match opt {
            "ro" => m.read_only = true,
            "rw" => m.read_only = false,
            "z" | "Z" => m.selinux = Some(opt.to_string()),
            "nocopy" if kind == MountKind::Volume => m.nocopy = true,
            "shared" | "rshared" | "slave" | "rslave" | "private" | "rprivate"
                if kind == MountKind::Bind =>
            {
                m.propagation = Some(opt.to_string())
            }
            // Consistency hints only mean something on Docker Desktop; Compose passes them on, Linux ignores.
            "cached" | "delegated" | "consistent" => {}
            other => {
                return Err(format!(
                    "{s:?}: volume option {other:?} is not one of ro, rw, z, Z, nocopy, or a bind propagation"
                ))
            }
        }
    }
    Ok(m)
}

pub(super) fn volume_long(
    ctx: &mut Ctx,
    service: &str,
    path: &[Seg],
    m: &Mapping,
) -> Result<MountSpec, String> {
    let svc = Some(service);
    check_keys(
        ctx,
        svc,
        path,
        m,
        &[
            "type",
            "source",
            "target",
            "read_only",
            "bind",
            "volume",
            "tmpfs",
            "consistency",
        ],
        &["image"],
    );
    let kind = m
        .get("type")
        .and_then(scalar)
        .ok_or("`type` is required (bind, volume or tmpfs)")?;
    let target = m
        .get("target")
        .and_then(scalar)
        .ok_or("`target` is required")?;
    let source = m.get("source").and_then(scalar).unwrap_or_default();
    let read_only = match m.get("read_only") {
        Some(v) => boolean(ctx, svc, &key(path, "read_only"), v).unwrap_or(false),
        None => false,
    };
    let kind = match kind.as_str() {
        "bind" => MountKind::Bind,
        "volume" => MountKind::Volume,
        "tmpfs" => MountKind::Tmpfs,
        other => {
            return Err(format!(
                "volume type {other:?} is not supported (bind, volume, tmpfs)"
            ))
        }
    };
    let mut mount = MountSpec::new(kind, source, target, read_only);
    let sub = |ctx: &mut Ctx, k: &str, allowed: &[&str]| -> Option<Mapping> {
        let v = m.get(k).filter(|v| !v.is_null())?;
        let sm = as_map(ctx, svc, &key(path, k), v)?.clone();
        check_keys(ctx, svc, &key(path, k), &sm, allowed, &[]);
        Some(sm)
    };
    match kind {
        MountKind::Bind => {
            if mount.source.is_empty() {
                return Err("a bind mount needs a `source`".into());
            }
            if let Some(b) = sub(ctx, "bind", &["create_host_path", "propagation", "selinux"]) {
                let bp = key(path, "bind");
                if let Some(v) = b.get("create_host_path") {
                    mount.create_host_path = boolean(ctx, svc, &key(&bp, "create_host_path"), v);
                }
                if let Some(v) = b.get("propagation") {
                    mount.propagation = string(ctx, svc, &key(&bp, "propagation"), v);
                }
                if let Some(v) = b.get("selinux") {
                    mount.selinux = string(ctx, svc, &key(&bp, "selinux"), v);
                }
            }
        }
        MountKind::Volume => {
            if let Some(b) = sub(ctx, "volume", &["nocopy", "subpath"]) {
                let bp = key(path, "volume");
                if let Some(v) = b.get("nocopy") {
                    mount.nocopy = boolean(ctx, svc, &key(&bp, "nocopy"), v).unwrap_or(false);
                }
                if let Some(v) = b.get("subpath") {
                    mount.subpath = string(ctx, svc, &key(&bp, "subpath"), v);
                }
            }
        }
        MountKind::Tmpfs => {
            if !mount.source.is_empty() {
                return Err("a tmpfs mount has no `source`".into());
            }
            if let Some(t) = sub(ctx, "tmpfs", &["size", "mode"]) {
                let tp = key(path, "tmpfs");
                if let Some(v) = t.get("size") {
                    mount.tmpfs_size = bytes(ctx, svc, &key(&tp, "size"), v);
                }
                if let Some(v) = t.get("mode") {
                    mount.tmpfs_mode = file_mode(v);
                    if mount.tmpfs_mode.is_none() {
                        ctx.err(
                            svc,
                            &key(&tp, "mode"),
                            format!("{} is not a file mode", show(v)),
                        );
                    }
                }
            }
        }
    }
    Ok(mount)
}

/// A bind source → absolute host path. Relative sources resolve inside the checkout and must stay in
/// the repository (symlinks followed, none may point outside); absolute host paths are allowed.
pub(super) fn bind_source(input: &StackInput, source: &str) -> Result<String, String> {
    if source.starts_with('/') {
        return Ok(normalise_abs(source));
    }
    if let Some(rest) = source.strip_prefix('~') {
        let home = input
            .env
            .get("HOME")
            .cloned()
            .ok_or_else(|| format!("{source}: `~` needs HOME to be set"))?;
        return Ok(normalise_abs(&format!("{home}{rest}")));
    }
    let rel = join_rel(&input.dir, Path::new(source))
        .ok_or_else(|| format!("bind source {source} climbs out of the repository"))?;
    let resolved = resolve(input.tree, &rel)?;
    let host = if resolved == Path::new(".") {
        input.checkout_dir.to_path_buf()
    } else {
        input.checkout_dir.join(&resolved)
    };
    Ok(host.display().to_string())
}

pub(super) fn normalise_abs(p: &str) -> String {
    let mut out = PathBuf::from("/");
    for c in Path::new(p).components() {
        match c {
            std::path::Component::Normal(n) => out.push(n),
            std::path::Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out.display().to_string()
}

/// SHA-256 over every repository file bind-mounted into the container (path and bytes), so a changed
/// config file changes the spec hash. Files that are not in the repository (data dirs) are not hashed.
pub(super) fn content_digest(
    ctx: &mut Ctx,
    input: &StackInput,
    service: &str,
    path: &[Seg],
    mounts: &[MountSpec],
) -> Option<String> {
    let prefix = format!(
        "{}/",
        input
            .checkout_dir
            .display()
            .to_string()
            .trim_end_matches('/')
    );
    let mut h = Sha256::new();
    let mut any = false;
    for m in mounts.iter().filter(|m| m.kind == MountKind::Bind) {
        let rel = if m.source == input.checkout_dir.display().to_string() {
            PathBuf::from(".")
        } else if let Some(r) = m.source.strip_prefix(&prefix) {
            PathBuf::from(r)
        } else {
            continue;
        };
        if let Err(e) = hash_tree(input.tree, &rel, &mut h, &mut any, 0) {
            ctx.err(Some(service), &key(path, "volumes"), e);
        }
    }
    any.then(|| crate::model::hex(&h.finalize()))
}

pub(super) fn hash_tree(
    tree: &dyn Tree,
    rel: &Path,
    h: &mut Sha256,
    any: &mut bool,
    depth: usize,
) -> Result<(), String> {
    if depth > 32 {
        return Err(format!("{}: directories nested too deep", rel.display()));
    }
    match tree
        .kind(rel)
        .map_err(|e| format!("{}: {e}", rel.display()))?
    {
        None => Ok(()),
        Some(EntryKind::File) => {
            let bytes = tree
                .read(rel)
                .map_err(|e| format!("{}: {e}", rel.display()))?
                .unwrap_or_default();
            h.update(rel.display().to_string().as_bytes());
            h.update([0]);
            h.update(Sha256::digest(&bytes));
            *any = true;
            Ok(())
        }
        Some(EntryKind::Symlink(target)) => {
            // The container sees what the link points at: it must stay inside the repository.
            if target.is_absolute()
                || join_rel(rel.parent().unwrap_or(Path::new(".")), &target).is_none()
            {
                return Err(format!(
                    "symlink {} points outside the repository (to {})",
                    rel.display(),
                    target.display()
                ));
            }
            h.update(rel.display().to_string().as_bytes());
            h.update(b"\0->");
            h.update(target.display().to_string().as_bytes());
            *any = true;
            Ok(())
        }
        Some(EntryKind::Dir) => {
            let entries = tree
                .list(rel)
                .map_err(|e| format!("{}: {e}", rel.display()))?;
            for e in entries {
                let child = if rel == Path::new(".") {
                    PathBuf::from(&e.name)
                } else {
                    rel.join(&e.name)
                };
                hash_tree(tree, &child, h, any, depth + 1)?;
            }
            Ok(())
        }
    }
}

pub(super) fn service_networks(
    ctx: &mut Ctx,
    service: &str,
    path: &[Seg],
    v: Option<&Value>,
    networks: &BTreeMap<String, Net>,
) -> Vec<NetworkAttachment> {
    let svc = Some(service);
    let blank = |name: String| NetworkAttachment {
        name,
        aliases: Vec::new(),
        ipv4_address: None,
        ipv6_address: None,
        priority: 0,
        mac_address: None,
    };
    let mut wanted: Vec<(String, NetworkAttachment, KeyPath)> = Vec::new();
    match v {
        None => wanted.push(("default".into(), blank(String::new()), path.to_vec())),
        Some(Value::Sequence(items)) => {
            for (i, item) in items.iter().enumerate() {
                if let Some(n) = string(ctx, svc, &idx(path, i), item) {
                    wanted.push((n, blank(String::new()), idx(path, i)));
                }
            }
        }
        Some(Value::Mapping(m)) => {
            for (k, v) in m {
                let Some(n) = scalar(k) else { continue };
                let p = key(path, &n);
                let mut att = blank(String::new());
                match v {
                    Value::Null => {}
                    Value::Mapping(opts) => {
                        check_keys(
                            ctx,
                            svc,
                            &p,
                            opts,
                            &[
                                "aliases",
                                "ipv4_address",
                                "ipv6_address",
                                "priority",
                                "mac_address",
                            ],
                            &[
                                "link_local_ips",
                                "gw_priority",
                                "driver_opts",
                                "interface_name",
                            ],
                        );
                        if let Some(a) = opts.get("aliases") {
                            att.aliases = string_list(ctx, svc, &key(&p, "aliases"), a, false);
                        }
                        let s = |ctx: &mut Ctx, k: &str| {
                            opts.get(k)
                                .filter(|v| !v.is_null())
                                .and_then(|v| string(ctx, svc, &key(&p, k), v))
                        };
                        att.ipv4_address = s(ctx, "ipv4_address");
                        att.ipv6_address = s(ctx, "ipv6_address");
                        att.mac_address = s(ctx, "mac_address");
                        if let Some(v) = opts.get("priority").filter(|v| !v.is_null()) {
                            att.priority = integer(ctx, svc, &key(&p, "priority"), v).unwrap_or(0);
                        }
                    }
                    other => {
                        ctx.err(
                            svc,
                            &p,
                            format!("must be a mapping, not {}", type_name(other)),
                        );
                    }
                }
                wanted.push((n, att, p));
            }
        }
        Some(other) => {
            ctx.err(
                svc,
                path,
                format!("must be a list or a mapping, not {}", type_name(other)),
            );
        }
    }
    let mut out = Vec::new();
    for (n, mut att, p) in wanted {
        match networks.get(&n) {
            Some(net) => {
                att.name = net.spec.name.clone();
                att.aliases.push(service.to_string());
                att.aliases.sort();
                att.aliases.dedup();
                out.push(att);
            }
            None => ctx.err(
                svc,
                &p,
                format!("network {n:?} is not declared under the top-level `networks:`"),
            ),
        }
    }
    // Highest priority first (it is the one attached when the container is created), then by name.
    out.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.name.cmp(&b.name)));
    out.dedup_by(|a, b| a.name == b.name);
    out
}

pub(super) fn extra_hosts(ctx: &mut Ctx, service: &str, path: &[Seg], v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    match v {
        Value::Mapping(m) => {
            for (k, v) in m {
                let Some(host) = scalar(k) else { continue };
                let ips = match v {
                    Value::Sequence(s) => s.iter().filter_map(scalar).collect(),
                    other => scalar(other).into_iter().collect::<Vec<_>>(),
                };
                for ip in ips {
                    out.push(format!("{host}:{ip}"));
                }
            }
        }
        _ => {
            for (i, s) in string_list(ctx, Some(service), path, v, false)
                .into_iter()
                .enumerate()
            {
                // Compose accepts `host=ip` and `host:ip`; an IPv6 address holds colons itself.
                let pair = s.split_once('=').or_else(|| s.split_once(':'));
                match pair {
                    Some((h, ip)) if !h.is_empty() && !ip.is_empty() => {
                        let ip = ip.trim_start_matches('[').trim_end_matches(']');
                        out.push(format!("{h}:{ip}"))
                    }
                    _ => ctx.err(
                        Some(service),
                        &idx(path, i),
                        format!("{s:?} is not like host=ip or host:ip"),
                    ),
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

pub(super) fn devices(ctx: &mut Ctx, service: &str, path: &[Seg], v: &Value) -> Vec<DeviceSpec> {
    let mut out = Vec::new();
    for (i, s) in string_list(ctx, Some(service), path, v, false)
        .into_iter()
        .enumerate()
    {
        let parts: Vec<&str> = s.split(':').collect();
        let d = match parts.as_slice() {
            [h] => Some((*h, *h, "rwm")),
            [h, c] if c.starts_with('/') => Some((*h, *c, "rwm")),
            [h, p] => Some((*h, *h, *p)),
            [h, c, p] => Some((*h, *c, *p)),
            _ => None,
        };
        match d {
            Some((h, c, p))
                if h.starts_with('/')
                    && c.starts_with('/')
                    && !p.is_empty()
                    && p.chars().all(|ch| matches!(ch, 'r' | 'w' | 'm')) =>
            {
                out.push(DeviceSpec {
                    host: h.into(),
                    container: c.into(),
                    permissions: p.into(),
                })
            }
            _ => ctx.err(
                Some(service),
                &idx(path, i),
                format!("{s:?} is not a device like /dev/ttyUSB0[:/dev/ttyUSB0[:rwm]]"),
            ),
        }
    }
    out.sort();
    out.dedup();
    out
}

pub(super) fn healthcheck(
    ctx: &mut Ctx,
    service: &str,
    path: &[Seg],
    v: &Value,
) -> Option<HealthcheckSpec> {
    let svc = Some(service);
    let m = as_map(ctx, svc, path, v)?;
    check_keys(
        ctx,
        svc,
        path,
        m,
        &[
            "test",
            "interval",
            "timeout",
            "start_period",
            "start_interval",
            "retries",
            "disable",
        ],
        &[],
    );
    let disable = m
        .get("disable")
        .and_then(|v| boolean(ctx, svc, &key(path, "disable"), v))
        .unwrap_or(false);
    let ns = |ctx: &mut Ctx, k: &str| -> i64 {
        m.get(k)
            .filter(|v| !v.is_null())
            .and_then(|v| duration(ctx, svc, &key(path, k), v))
            .map(|d| d.as_nanos().min(i64::MAX as u128) as i64)
            .unwrap_or(0)
    };
    let mut spec = HealthcheckSpec {
        test: Vec::new(),
        interval_ns: ns(ctx, "interval"),
        timeout_ns: ns(ctx, "timeout"),
        start_period_ns: ns(ctx, "start_period"),
        start_interval_ns: ns(ctx, "start_interval"),
        retries: m
            .get("retries")
            .filter(|v| !v.is_null())
            .and_then(|v| integer(ctx, svc, &key(path, "retries"), v))
            .unwrap_or(0),
    };
    if disable {
        spec.test = vec!["NONE".into()];
        return Some(spec);
    }
    match m.get("test") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => spec.test = vec!["CMD-SHELL".into(), s.clone()],
        Some(v) => {
            let list = string_list(ctx, svc, &key(path, "test"), v, false);
            match list.first().map(String::as_str) {
                Some("CMD" | "CMD-SHELL" | "NONE") => spec.test = list,
                _ => ctx.err(
                    svc,
                    &key(path, "test"),
                    "a test list must start with CMD, CMD-SHELL or NONE",
                ),
            }
        }
    }
    Some(spec)
}

/// `depends_on` → (dependency, required). A missing service is an error unless `required: false`.
pub(super) fn depends_on(
    ctx: &mut Ctx,
    service: &str,
    path: &[Seg],
    v: &Value,
    services: &BTreeSet<String>,
) -> Vec<(Dependency, bool)> {
    let svc = Some(service);
    let mut out = Vec::new();
    let mut check = |ctx: &mut Ctx, dep: Dependency, p: KeyPath, required: bool| {
        if services.contains(&dep.service) {
            out.push((dep, required));
        } else if required {
            ctx.err(
                svc,
                &p,
                format!("service {:?} is not defined in this stack", dep.service),
            );
        }
    };
    match v {
        Value::Sequence(items) => {
            for (i, item) in items.iter().enumerate() {
                if let Some(n) = string(ctx, svc, &idx(path, i), item) {
                    check(ctx, started(&n), idx(path, i), true);
                }
            }
        }
        Value::Mapping(m) => {
            for (k, v) in m {
                let Some(n) = scalar(k) else { continue };
                let p = key(path, &n);
                let mut dep = started(&n);
                let mut required = true;
                if let Some(opts) = v.as_mapping() {
                    check_keys(
                        ctx,
                        svc,
                        &p,
                        opts,
                        &["condition", "required", "restart"],
                        &[],
                    );
                    if let Some(c) = opts.get("condition").filter(|v| !v.is_null()) {
                        let c = scalar(c).unwrap_or_default();
                        dep.condition = match c.as_str() {
                            "service_started" => Condition::ServiceStarted,
                            "service_healthy" => Condition::ServiceHealthy,
                            "service_completed_successfully" => {
                                Condition::ServiceCompletedSuccessfully
                            }
                            _ => {
                                ctx.err(
                                    svc,
                                    &key(&p, "condition"),
                                    format!("condition {c:?} must be service_started, service_healthy or service_completed_successfully"),
                                );
                                Condition::ServiceStarted
                            }
                        };
                    }
                    if let Some(r) = opts.get("required") {
                        required = boolean(ctx, svc, &key(&p, "required"), r).unwrap_or(true);
                    }
                    if let Some(r) = opts.get("restart") {
                        dep.restart = boolean(ctx, svc, &key(&p, "restart"), r).unwrap_or(false);
                    }
                } else if !v.is_null() {
                    ctx.err(svc, &p, format!("must be a mapping, not {}", type_name(v)));
                }
                check(ctx, dep, p, required);
            }
        }
        other => ctx.err(
            svc,
            path,
            format!("must be a list or a mapping, not {}", type_name(other)),
        ),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn short_ports() {
        let p = |s: &str| parse_port_short(s).unwrap();
        assert_eq!(
            p("8080:80"),
            vec![PortSpec {
                host_ip: None,
                host_port: Some(8080),
                container_port: 80,
                protocol: "tcp".into()
            }]
        );
        assert_eq!(p("80")[0].host_port, None);
        let r = p("127.0.0.1:8000-8001:80-81/udp");
        assert_eq!(r.len(), 2);
        assert_eq!(r[1].host_port, Some(8001));
        assert_eq!(r[1].container_port, 81);
        assert_eq!(r[0].host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(r[0].protocol, "udp");
        assert_eq!(p("[::1]:53:53/udp")[0].host_ip.as_deref(), Some("::1"));
        assert_eq!(p(":80")[0].host_port, None);
        assert!(parse_port_short("8000-8002:80-81").is_err());
        assert!(parse_port_short("99999").is_err());
        assert!(parse_port_short("80/icmp").is_err());
        assert!(parse_port_short("a:b:c:d").is_err());
    }

    #[test]
    fn short_volumes() {
        let m = parse_volume_short("./conf:/etc/app:ro,z").unwrap();
        assert_eq!(
            (m.kind, m.source.as_str(), m.target.as_str(), m.read_only),
            (MountKind::Bind, "./conf", "/etc/app", true)
        );
        assert_eq!(m.selinux.as_deref(), Some("z"));
        let v = parse_volume_short("data:/data:nocopy").unwrap();
        assert_eq!(v.kind, MountKind::Volume);
        assert!(v.nocopy && v.needs_mount_api());
        assert_eq!(parse_volume_short("/data").unwrap().source, "");
        let b = parse_volume_short("/srv:/srv:rshared").unwrap();
        assert_eq!(b.propagation.as_deref(), Some("rshared"));
        assert!(parse_volume_short("a:/b:bogus").is_err());
        assert!(parse_volume_short("data:/data:rshared").is_err());
    }
}
