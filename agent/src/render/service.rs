//! One service of a compose file → a [`ContainerSpec`] (before replicas are expanded): the service's
//! keys read section by section (process, storage, networking, lifecycle, resources); the sections with
//! a syntax of their own are in `ports`, `mounts`, `networks`, `secrets`, `env`, `health`, `deploy`.
//!
//! Layer: service (see the table in `render`).

use super::compose::{Net, Secret, Vol};
use super::deploy::{deploy, pids, replica_count, ulimits};
use super::env::env_files;
use super::health::{depends_on, healthcheck, started};
use super::input::StackInput;
use super::lines::{KeyPath, Seg};
use super::mounts::{content_digest, service_volumes};
use super::networks::{extra_hosts, links as service_links, service_networks, Link};
use super::numbers::{bytes, cpus, duration, int_in};
use super::ports::{expose, ports};
use super::secrets::secret_refs;
use super::values::*;
use crate::model::{ContainerSpec, Dependency, DeviceSpec, LoggingSpec};
use serde_yaml::{Mapping, Value};
use std::collections::{BTreeMap, BTreeSet};

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
    "links",
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
    /// Legacy `links`, turned into endpoint links once container names are known.
    pub links: Vec<Link>,
}

/// One service's mapping, with its name and key path, for the section readers below.
struct Svc<'a> {
    name: &'a str,
    path: &'a [Seg],
    m: &'a Mapping,
}

impl Svc<'_> {
    /// A key's value, `None` when it is absent or null.
    fn get(&self, k: &str) -> Option<&Value> {
        self.m.get(k).filter(|v| !v.is_null())
    }

    fn p(&self, k: &str) -> KeyPath {
        key(self.path, k)
    }

    fn some(&self) -> Option<&str> {
        Some(self.name)
    }

    fn opt_string(&self, ctx: &mut Ctx, k: &str) -> Option<String> {
        self.get(k)
            .and_then(|v| string(ctx, self.some(), &self.p(k), v))
    }

    fn flag(&self, ctx: &mut Ctx, k: &str) -> Option<bool> {
        self.get(k)
            .and_then(|v| boolean(ctx, self.some(), &self.p(k), v))
    }

    fn list(&self, ctx: &mut Ctx, k: &str, single_ok: bool) -> Option<Vec<String>> {
        self.get(k)
            .map(|v| string_list(ctx, self.some(), &self.p(k), v, single_ok))
    }
}

/// What joining other services' namespaces and `depends_on` make a service wait for.
#[derive(Default)]
struct Links {
    namespace_of: Vec<String>,
    depends: BTreeMap<String, Dependency>,
    required: BTreeSet<String>,
    /// `links:` entries.
    legacy: Vec<Link>,
}

impl Links {
    fn join(&mut self, peer: &str) {
        self.depends.insert(peer.to_string(), started(peer));
        self.required.insert(peer.to_string());
        self.namespace_of.push(peer.to_string());
    }
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
    let s = Svc { name, path, m };
    check_keys(ctx, s.some(), path, m, SERVICE_KEYS, SERVICE_LATER);

    let image = image(ctx, &s);
    let mut spec = ContainerSpec {
        stack: input.name.clone(),
        service: name.to_string(),
        image: image.unwrap_or_default(),
        restart: "no".into(),
        ..Default::default()
    };
    process(ctx, input, &s, &mut spec);
    storage(ctx, input, &s, refs, &mut spec);
    let mut links = Links::default();
    networking(ctx, &s, services, refs, &mut spec, &mut links);
    let replicas = lifecycle(ctx, &s, services, &mut spec, &mut links);
    resources(ctx, &s, &mut spec);

    let profiles = s.list(ctx, "profiles", false).unwrap_or_default();
    let container_name = s.opt_string(ctx, "container_name");
    if let Some(n) = &container_name {
        if !valid_container_name(n) {
            ctx.err(
                s.some(),
                &s.p("container_name"),
                "is not a container name ([a-zA-Z0-9][a-zA-Z0-9_.-]*)",
            );
        } else if replicas > 1 {
            ctx.err(
                s.some(),
                &s.p("container_name"),
                "a service with a container_name cannot have more than one replica",
            );
        }
    }
    if s.get("extends").is_some() {
        // Resolved (merged into this service) before conversion; a leftover means it could not be.
        ctx.err(s.some(), &s.p("extends"), "could not be resolved");
    }

    if ctx.problems.len() > before {
        return None;
    }
    Some(Service {
        spec,
        replicas,
        namespace_of: links.namespace_of,
        container_name,
        profiles,
        required: links.required,
        links: links.legacy,
    })
}

/// `image`: one reference, without whitespace; required (berth deploys images, it does not build them).
fn image(ctx: &mut Ctx, s: &Svc) -> Option<String> {
    let image = match s.get("image") {
        Some(v) => string(ctx, s.some(), &s.p("image"), v).filter(|i| {
            let ok = !i.trim().is_empty() && !i.contains(char::is_whitespace);
            if !ok {
                ctx.err(s.some(), &s.p("image"), "is not an image reference");
            }
            ok
        }),
        None => None,
    };
    if image.is_none() && !s.m.contains_key("build") && s.get("image").is_none() {
        ctx.err(
            s.some(),
            s.path,
            "`image` is required (berth deploys images; it does not build them)",
        );
    }
    image
}

/// The process: command, entrypoint, environment, user, capabilities, devices, signals, limits of
/// the process itself, logging, platform and pull policy.
fn process(ctx: &mut Ctx, input: &StackInput, s: &Svc, spec: &mut ContainerSpec) {
    let (svc, name) = (s.some(), s.name);
    spec.command = s
        .get("command")
        .and_then(|v| command(ctx, name, &s.p("command"), v));
    spec.entrypoint = match s.m.get("entrypoint") {
        Some(v) => command(ctx, name, &s.p("entrypoint"), v),
        None => None,
    };

    spec.env = environment(ctx, input, s);
    spec.user = s.opt_string(ctx, "user");
    spec.working_dir = s.opt_string(ctx, "working_dir");
    spec.cap_add = s
        .list(ctx, "cap_add", false)
        .map(sorted_set)
        .unwrap_or_default();
    spec.cap_drop = s
        .list(ctx, "cap_drop", false)
        .map(sorted_set)
        .unwrap_or_default();
    spec.privileged = s.flag(ctx, "privileged").unwrap_or(false);
    spec.read_only = s.flag(ctx, "read_only").unwrap_or(false);
    spec.init = s.flag(ctx, "init");
    spec.tty = s.flag(ctx, "tty").unwrap_or(false);
    spec.stdin_open = s.flag(ctx, "stdin_open").unwrap_or(false);
    if let Some(v) = s.get("devices") {
        spec.devices = devices(ctx, name, &s.p("devices"), v);
    }
    spec.device_cgroup_rules = s
        .list(ctx, "device_cgroup_rules", false)
        .unwrap_or_default();
    spec.stop_signal = s.opt_string(ctx, "stop_signal");
    if let Some(v) = s.get("stop_grace_period") {
        // Bounded to the engine's int64 nanoseconds, so whole seconds fit an i64 many times over.
        spec.stop_grace_period =
            duration(ctx, svc, &s.p("stop_grace_period"), v).map(|d| d.as_secs());
    }
    if let Some(v) = s.get("ulimits") {
        spec.ulimits = ulimits(ctx, name, &s.p("ulimits"), v);
    }
    if let Some(v) = s.get("sysctls") {
        spec.sysctls = key_values(ctx, svc, &s.p("sysctls"), v)
            .into_iter()
            .map(|(k, v)| (k, v.unwrap_or_default()))
            .collect();
    }
    spec.security_opt = s.list(ctx, "security_opt", false).unwrap_or_default();
    spec.userns_mode = s.opt_string(ctx, "userns_mode");
    spec.group_add = s.list(ctx, "group_add", false).unwrap_or_default();
    if let Some(v) = s.get("logging") {
        spec.logging = logging(ctx, name, &s.p("logging"), v);
    }
    spec.platform = s.opt_string(ctx, "platform");
    spec.runtime = s.opt_string(ctx, "runtime");
    if let Some(policy) = s.opt_string(ctx, "pull_policy") {
        match crate::images::PullPolicy::parse(&policy) {
            Ok(_) => spec.pull_policy = Some(policy),
            Err(e) => ctx.err(svc, &s.p("pull_policy"), e),
        }
    }
}

/// Environment: env_file entries first, then `environment`; last definition wins.
/// A key with no value anywhere is passed as the bare name, as Compose does (the engine then leaves
/// it unset).
fn environment(ctx: &mut Ctx, input: &StackInput, s: &Svc) -> Vec<String> {
    let (svc, name) = (s.some(), s.name);
    let mut env: BTreeMap<String, Option<String>> = BTreeMap::new();
    if let Some(v) = s.get("env_file") {
        let mut from_files = BTreeMap::new();
        env_files(ctx, input, name, &s.p("env_file"), v, &mut from_files);
        env.extend(from_files.into_iter().map(|(k, v)| (k, Some(v))));
    }
    if let Some(v) = s.get("environment") {
        for (k, val) in key_values(ctx, svc, &s.p("environment"), v) {
            let val = val.or_else(|| input.env.get(&k).cloned());
            env.insert(k, val);
        }
    }
    env.into_iter()
        .map(|(k, v)| match v {
            Some(v) => format!("{k}={v}"),
            None => k,
        })
        .collect()
}

/// Storage: volumes, tmpfs, secrets and configs, shared memory; the digest of bind-mounted files.
fn storage(ctx: &mut Ctx, input: &StackInput, s: &Svc, refs: &Refs, spec: &mut ContainerSpec) {
    let (svc, name) = (s.some(), s.name);
    if let Some(v) = s.get("volumes") {
        spec.mounts = service_volumes(ctx, input, name, &s.p("volumes"), v, refs.volumes);
    }
    if let Some(tmpfs) = s.list(ctx, "tmpfs", true) {
        spec.tmpfs = sorted_set(tmpfs);
    }
    for (section, default_dir) in [("secrets", "/run/secrets/"), ("configs", "/")] {
        if let Some(v) = s.get(section) {
            let table = if section == "secrets" {
                refs.secrets
            } else {
                refs.configs
            };
            secret_refs(ctx, input, name, &s.p(section), v, table, default_dir, spec);
        }
    }
    spec.mounts.sort_by(|a, b| a.target.cmp(&b.target));
    if spec.mounts.windows(2).any(|w| w[0].target == w[1].target) {
        ctx.err(svc, &s.p("volumes"), "two mounts use the same target path");
    }
    spec.files.sort();
    spec.content_digest = content_digest(ctx, input, name, s.path, &spec.mounts);
    if let Some(v) = s.get("shm_size") {
        spec.shm_size = bytes(ctx, svc, &s.p("shm_size"), v);
    }
}

/// Networking: ports, `network_mode` or networks, shared pid/ipc namespaces, names and DNS.
fn networking(
    ctx: &mut Ctx,
    s: &Svc,
    services: &BTreeSet<String>,
    refs: &Refs,
    spec: &mut ContainerSpec,
    links: &mut Links,
) {
    let name = s.name;
    if let Some(v) = s.get("ports") {
        spec.ports = ports(ctx, name, &s.p("ports"), v);
    }
    if let Some(v) = s.get("expose") {
        spec.expose = expose(ctx, name, &s.p("expose"), v);
    }
    namespaces(ctx, s, services, refs, spec, links);
    // A link is a dependency that must start first, restarted with its peer (`Restart: true` in
    // compose-go); a `depends_on` entry for the same service, read later, wins.
    if let Some(v) = s.get("links") {
        for l in service_links(ctx, name, &s.p("links"), v, services) {
            links.depends.insert(
                l.service.clone(),
                Dependency {
                    restart: true,
                    ..started(&l.service)
                },
            );
            links.required.insert(l.service.clone());
            links.legacy.push(l);
        }
    }
    spec.hostname = s.opt_string(ctx, "hostname");
    spec.domainname = s.opt_string(ctx, "domainname");
    spec.mac_address = s.opt_string(ctx, "mac_address");
    if let Some(v) = s.get("extra_hosts") {
        spec.extra_hosts = extra_hosts(ctx, name, &s.p("extra_hosts"), v);
    }
    spec.dns = s.list(ctx, "dns", true).unwrap_or_default();
    spec.dns_search = s.list(ctx, "dns_search", true).unwrap_or_default();
    spec.dns_opt = s.list(ctx, "dns_opt", true).unwrap_or_default();
}

/// The namespaces a service runs in: `network_mode` or its networks, and `pid` and `ipc`; joining
/// another service's (`service:X`) makes it wait for X.
fn namespaces(
    ctx: &mut Ctx,
    s: &Svc,
    services: &BTreeSet<String>,
    refs: &Refs,
    spec: &mut ContainerSpec,
    links: &mut Links,
) {
    let (svc, name) = (s.some(), s.name);
    let undefined = |ctx: &mut Ctx, k: &str, peer: &str| {
        ctx.err(
            svc,
            &s.p(k),
            format!("service {peer:?} is not defined in this stack"),
        )
    };
    if let Some(mode) = s.opt_string(ctx, "network_mode") {
        if s.get("networks").is_some() {
            ctx.err(
                svc,
                &s.p("network_mode"),
                "`network_mode` and `networks` cannot both be set",
            );
        }
        if let Some(peer) = mode.strip_prefix("service:") {
            if services.contains(peer) {
                // Rewritten to `container:<peer's first container>` once names are known.
                links.join(peer);
                spec.network_mode = Some(mode);
            } else {
                undefined(ctx, "network_mode", peer);
            }
        } else if mode.is_empty() {
            ctx.err(svc, &s.p("network_mode"), "must not be empty");
        } else {
            spec.network_mode = Some(mode);
        }
    }
    if spec.network_mode.is_none() {
        spec.networks = service_networks(
            ctx,
            name,
            &s.p("networks"),
            s.get("networks"),
            refs.networks,
        );
    }
    // `pid` and `ipc` may share another service's namespace the same way.
    for k in ["pid", "ipc"] {
        if let Some(mode) = s.opt_string(ctx, k) {
            if let Some(peer) = mode.strip_prefix("service:") {
                if services.contains(peer) {
                    links.join(peer);
                } else {
                    undefined(ctx, k, peer);
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

/// Lifecycle: restart policy, labels, healthcheck, dependencies, replicas and `deploy`. Returns the
/// number of replicas.
fn lifecycle(
    ctx: &mut Ctx,
    s: &Svc,
    services: &BTreeSet<String>,
    spec: &mut ContainerSpec,
    links: &mut Links,
) -> u32 {
    let (svc, name) = (s.some(), s.name);
    if let Some(r) = s.opt_string(ctx, "restart") {
        if valid_restart(&r) {
            spec.restart = r;
        } else {
            ctx.err(
                svc,
                &s.p("restart"),
                format!(
                    "must be no, always, on-failure[:N] (N at most {}) or unless-stopped",
                    u32::MAX
                ),
            );
        }
    }
    spec.labels = super::compose::labels(ctx, svc, &s.p("labels"), s.get("labels"));
    if let Some(v) = s.get("healthcheck") {
        spec.healthcheck = healthcheck(ctx, name, &s.p("healthcheck"), v);
    }
    if let Some(v) = s.get("depends_on") {
        for (d, req) in depends_on(ctx, name, &s.p("depends_on"), v, services) {
            if req {
                links.required.insert(d.service.clone());
            }
            links.depends.insert(d.service.clone(), d);
        }
    }
    links.depends.remove(name);
    spec.depends_on = links.depends.values().cloned().collect();

    let mut replicas: Option<(u32, KeyPath)> = None;
    if let Some(v) = s.get("scale") {
        if let Some(n) = replica_count(ctx, name, &s.p("scale"), v) {
            replicas = Some((n, s.p("scale")));
        }
    }
    if let Some(v) = s.get("deploy") {
        deploy(
            ctx,
            name,
            &s.p("deploy"),
            v,
            spec,
            &mut replicas,
            s.m.contains_key("restart"),
        );
    }
    replicas.map(|(n, _)| n).unwrap_or(1)
}

/// Resources: the service-level keys; `deploy.resources` (read before) wins where both are set.
fn resources(ctx: &mut Ctx, s: &Svc, spec: &mut ContainerSpec) {
    let svc = s.some();
    let mem = |ctx: &mut Ctx, k: &str| s.get(k).and_then(|v| bytes(ctx, svc, &s.p(k), v));
    spec.memory = spec.memory.or(mem(ctx, "mem_limit"));
    spec.memory_reservation = spec.memory_reservation.or(mem(ctx, "mem_reservation"));
    if let Some(v) = s.get("memswap_limit") {
        // -1 means unlimited swap.
        spec.memory_swap = match scalar(v).as_deref() {
            Some("-1") => Some(-1),
            _ => bytes(ctx, svc, &s.p("memswap_limit"), v),
        };
    }
    if let Some(v) = s.get("cpus") {
        if let Some(c) = cpus(ctx, svc, &s.p("cpus"), v) {
            spec.nano_cpus = spec.nano_cpus.or(Some(c));
        }
    }
    // The kernel's ranges: cpu.shares 2-262144 (0 for the engine's default), oom_score_adj ±1000.
    let int = |ctx: &mut Ctx, k: &str, min: i64, max: i64| {
        s.get(k)
            .and_then(|v| int_in(ctx, svc, &s.p(k), v, min, max))
    };
    spec.cpu_shares = int(ctx, "cpu_shares", 0, 262_144);
    spec.cpuset = s.opt_string(ctx, "cpuset");
    spec.oom_score_adj = int(ctx, "oom_score_adj", -1000, 1000);
    spec.oom_kill_disable = s.flag(ctx, "oom_kill_disable");
    if let Some(v) = s.get("pids_limit") {
        if let Some(n) = pids(ctx, svc, &s.p("pids_limit"), v) {
            spec.pids_limit = spec.pids_limit.or(Some(n));
        }
    }
}

fn sorted_set(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v.dedup();
    v
}

fn valid_restart(r: &str) -> bool {
    match r.split_once(':') {
        Some(("on-failure", n)) => {
            !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && n.parse::<u32>().is_ok()
        }
        None => matches!(r, "no" | "always" | "on-failure" | "unless-stopped"),
        _ => false,
    }
}

fn valid_container_name(n: &str) -> bool {
    n.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
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
                "is not a device like /dev/ttyUSB0[:/dev/ttyUSB0[:rwm]]",
            ),
        }
    }
    out.sort();
    out.dedup();
    out
}
