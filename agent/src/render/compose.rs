//! The compose model: a merged, interpolated compose document of one stack → [`StackSpec`].
//!
//! This is the one place where Compose's many spellings (lists or maps, short or long syntax, strings
//! or numbers) are normalised into the model, so the spec hash sees one canonical form. Every problem is
//! collected with its key path; the caller turns paths into file and line. The top level (networks,
//! volumes, secrets, configs, profiles, replicas) is here, with the bounds on a stack's size (services,
//! containers, port bindings); one service is in `service.rs`.

use super::budget::Budget;
use super::lines::{LineIndex, Seg};
use super::service::{self, Service};
use super::tree::{join_rel, resolve};
use super::values::*;
use super::Tree;
use crate::model::{Condition, IpamPool, IpamSpec, NetworkSpec, StackSpec, VolumeSpec};
use serde_yaml::{Mapping, Value};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The most services one stack may define.
pub const MAX_SERVICES: usize = 1000;
/// The most containers one stack may run (its services' replicas together).
pub const MAX_CONTAINERS: u64 = 1000;
/// The most port bindings the containers of one stack may have together.
pub const MAX_STACK_PORT_BINDINGS: u64 = 4 * super::ports::MAX_PORT_BINDINGS as u64;

/// Top-level keys of this release (`include` is resolved before this point).
const TOP_KEYS: &[&str] = &[
    "name", "services", "networks", "volumes", "secrets", "configs", "version", "include",
];
/// Top-level keys of the Compose specification that this release refuses.
const TOP_LATER: &[&str] = &["models"];

/// One file of a stack, for locating problems.
pub struct Doc {
    /// Repository-relative path.
    pub file: String,
    pub index: LineIndex,
}

/// Everything needed to turn one stack's merged document into a [`StackSpec`].
pub struct StackInput<'a> {
    pub tree: &'a dyn Tree,
    pub name: String,
    /// Repository-relative directory of the stack (`.` for the root).
    pub dir: PathBuf,
    /// Where the repository root is (or will be) checked out on the host.
    pub checkout_dir: &'a Path,
    /// The stack's files in merge order.
    pub docs: &'a [Doc],
    pub doc: &'a Value,
    /// Interpolation scope: the stack's `.env` overlaid with the agent's environment.
    pub env: &'a BTreeMap<String, String>,
    /// The agent's environment alone.
    pub agent_env: &'a BTreeMap<String, String>,
}

pub(super) struct Net {
    pub key: String,
    pub external: bool,
    pub spec: NetworkSpec,
}

pub(super) struct Vol {
    pub external: bool,
    pub spec: VolumeSpec,
}

/// A top-level secret or config.
pub(super) struct Secret {
    pub source: SecretSource,
}

pub(super) enum SecretSource {
    /// A repository file (relative to the repository root, symlinks resolved).
    File(PathBuf),
    /// A variable of the environment; only its digest is kept.
    Env { var: String, digest: String },
    /// Inline content (configs).
    Content(String),
}

/// Convert one stack. Problems are appended to `problems`; `None` when there was any.
pub(super) fn convert(
    input: &StackInput,
    budget: Budget,
    problems: &mut Vec<super::Problem>,
    warnings: &mut Vec<super::Problem>,
) -> Option<StackSpec> {
    let mut ctx = Ctx {
        docs: input.docs,
        stack: input.name.clone(),
        problems: Vec::new(),
        warnings: Vec::new(),
        budget,
    };
    let top = match &input.doc {
        Value::Mapping(m) => m.clone(),
        Value::Null => Mapping::new(),
        other => {
            ctx.err(
                None,
                &[],
                format!("a compose file must be a mapping, not {}", type_name(other)),
            );
            problems.append(&mut ctx.problems);
            return None;
        }
    };
    check_keys(&mut ctx, None, &[], &top, TOP_KEYS, TOP_LATER);

    let stack = input.name.clone();
    let networks = top_networks(&mut ctx, &stack, top.get("networks"));
    let volumes = top_volumes(&mut ctx, &stack, top.get("volumes"));
    let secrets = top_secrets(&mut ctx, input, "secrets", top.get("secrets"));
    let configs = top_secrets(&mut ctx, input, "configs", top.get("configs"));
    let refs = service::Refs {
        networks: &networks,
        volumes: &volumes,
        secrets: &secrets,
        configs: &configs,
    };

    let services_path = vec![Seg::Key("services".into())];
    let services: Vec<(String, Mapping)> = match top.get("services") {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => match as_map(&mut ctx, None, &services_path, v) {
            Some(m) => m
                .iter()
                .filter_map(|(k, v)| {
                    let name = scalar(k)?;
                    let p = key(&services_path, &name);
                    if !valid_service_name(&name) {
                        ctx.err(
                            Some(&name),
                            &p,
                            "a service name must be letters, digits, '.', '_' or '-', starting with a letter or digit",
                        );
                        return None;
                    }
                    match v {
                        Value::Mapping(m) => Some((name, m.clone())),
                        Value::Null => Some((name, Mapping::new())),
                        other => {
                            ctx.err(
                                Some(&name),
                                &p,
                                format!("must be a mapping, not {}", type_name(other)),
                            );
                            None
                        }
                    }
                })
                .collect(),
            None => Vec::new(),
        },
    };
    if services.len() > MAX_SERVICES {
        ctx.err(
            None,
            &services_path,
            format!("a stack may define at most {MAX_SERVICES} services"),
        );
        problems.append(&mut ctx.problems);
        return None;
    }
    let names: BTreeSet<String> = services.iter().map(|(n, _)| n.clone()).collect();

    // Every service is checked, active or not; only those of active profiles are deployed (Compose reads
    // COMPOSE_PROFILES from the environment or the stack's .env).
    let active_profiles: BTreeSet<String> = input
        .env
        .get("COMPOSE_PROFILES")
        .map(|p| {
            p.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let mut built: Vec<Service> = Vec::new();
    for (name, m) in &services {
        let path = key(&services_path, name);
        if let Some(s) = service::service(&mut ctx, input, name, &path, m, &names, &refs) {
            built.push(s);
        }
    }
    let active = |s: &Service| {
        s.profiles.is_empty()
            || active_profiles.contains("*")
            || s.profiles.iter().any(|p| active_profiles.contains(p))
    };
    let enabled: BTreeSet<String> = built
        .iter()
        .filter(|s| active(s))
        .map(|s| s.spec.service.clone())
        .collect();
    built.retain(|s| enabled.contains(&s.spec.service));
    for s in &mut built {
        let svc = s.spec.service.clone();
        let mut kept = Vec::new();
        for d in std::mem::take(&mut s.spec.depends_on) {
            if enabled.contains(&d.service) {
                kept.push(d);
            } else if s.required.contains(&d.service) {
                ctx.err(
                    Some(&svc),
                    &key(&key(&key(&services_path, &svc), "depends_on"), &d.service),
                    format!(
                        "service {:?} is not enabled: its profiles are not in COMPOSE_PROFILES",
                        d.service
                    ),
                );
            }
        }
        s.spec.depends_on = kept;
    }
    check_cycles(&mut ctx, &services_path, &built);
    check_size(&mut ctx, &services_path, &built);

    // A service another one waits for with `service_completed_successfully` is a one-shot job.
    let jobs: BTreeSet<String> = built
        .iter()
        .flat_map(|s| s.spec.depends_on.iter())
        .filter(|d| d.condition == Condition::ServiceCompletedSuccessfully)
        .map(|d| d.service.clone())
        .collect();

    // `network_mode: service:X` shares X's namespace: X's spec hash is folded into the dependent's, so
    // recreating X recreates it too (a container left in a dead namespace has no network).
    let hashes: BTreeMap<String, String> = built
        .iter()
        .map(|s| (s.spec.service.clone(), s.spec.spec_hash()))
        .collect();
    let first_container: BTreeMap<String, String> = built
        .iter()
        .map(|s| {
            let name = s
                .container_name
                .clone()
                .unwrap_or_else(|| format!("{stack}-{}-1", s.spec.service));
            (s.spec.service.clone(), name)
        })
        .collect();
    // Every service's container names in replica order, for `links`.
    let names_of: BTreeMap<String, Vec<String>> = built
        .iter()
        .map(|s| {
            let names = (1..=s.replicas)
                .map(|r| match &s.container_name {
                    Some(n) => n.clone(),
                    None => format!("{stack}-{}-{r}", s.spec.service),
                })
                .collect();
            (s.spec.service.clone(), names)
        })
        .collect();
    let mut containers = Vec::new();
    let mut used_networks: BTreeSet<String> = BTreeSet::new();
    for s in &built {
        let mut spec = s.spec.clone();
        spec.run_once = jobs.contains(&spec.service);
        // Joining another service's namespace: `service:X` becomes `container:<X's first container>`,
        // and X's spec hash is folded into this one's, so recreating X recreates it too (a container
        // left in a dead namespace has no network, or no shared memory).
        if !s.namespace_of.is_empty() {
            let mut h = Sha256::new();
            h.update(spec.content_digest.clone().unwrap_or_default());
            for peer in &s.namespace_of {
                h.update(hashes.get(peer).cloned().unwrap_or_default());
            }
            spec.content_digest = Some(crate::model::hex(&h.finalize()));
            for field in [&mut spec.network_mode, &mut spec.pid, &mut spec.ipc] {
                if let Some(peer) = field.as_deref().and_then(|m| m.strip_prefix("service:")) {
                    if let Some(c) = first_container.get(peer) {
                        *field = Some(format!("container:{c}"));
                    }
                }
            }
        }
        // `volumes_from: [service:X]` mounts the volumes of X's first container, as in Compose.
        for v in &mut spec.volumes_from {
            if let Some(rest) = v.strip_prefix("service:") {
                let (peer, mode) = rest.split_once(':').unwrap_or((rest, ""));
                if let Some(c) = first_container.get(peer) {
                    let engine = if mode.is_empty() {
                        c.clone()
                    } else {
                        format!("{c}:{mode}")
                    };
                    *v = engine;
                }
            }
        }
        for n in &spec.networks {
            used_networks.insert(n.name.clone());
        }
        for r in 1..=s.replicas {
            let mut c = spec.clone();
            c.replica = r;
            c.name = match &s.container_name {
                Some(n) => n.clone(),
                None => format!("{stack}-{}-{r}", spec.service),
            };
            // Compose gives every container its own name as an alias on each network, and the
            // service's `links` on each endpoint.
            let endpoint_links = super::networks::endpoint_links(&stack, r, &s.links, &names_of);
            for n in &mut c.networks {
                n.aliases.push(c.name.clone());
                n.aliases.sort();
                n.aliases.dedup();
                n.links = endpoint_links.clone();
            }
            containers.push(c);
        }
    }
    containers.sort_by(|a, b| a.name.cmp(&b.name));

    // Networks are created when declared (non-external) or when `default` is used implicitly.
    let mut net_specs: Vec<NetworkSpec> = networks
        .values()
        .filter(|n| !n.external)
        .filter(|n| n.key != "default" || used_networks.contains(&n.spec.name))
        .map(|n| n.spec.clone())
        .collect();
    let mut vol_specs: Vec<VolumeSpec> = volumes
        .values()
        .filter(|v| !v.external)
        .map(|v| v.spec.clone())
        .collect();

    warnings.append(&mut ctx.warnings);
    if !ctx.problems.is_empty() {
        problems.append(&mut ctx.problems);
        return None;
    }
    net_specs.sort_by(|a, b| a.name.cmp(&b.name));
    vol_specs.sort_by(|a, b| a.name.cmp(&b.name));
    Some(StackSpec {
        name: stack,
        dir: input.dir.display().to_string(),
        containers,
        networks: net_specs,
        volumes: vol_specs,
    })
}

fn valid_service_name(n: &str) -> bool {
    n.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// A top-level `networks:` / `volumes:` entry: `null` or a mapping.
fn definitions(
    ctx: &mut Ctx,
    section: &str,
    v: Option<&Value>,
) -> Vec<(String, KeyPathBuf, Mapping)> {
    let path = vec![Seg::Key(section.into())];
    let mut out = Vec::new();
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return out;
    };
    let Some(m) = as_map(ctx, None, &path, v) else {
        return out;
    };
    for (k, v) in m {
        let Some(name) = scalar(k) else { continue };
        let p = key(&path, &name);
        match v {
            Value::Null => out.push((name, p, Mapping::new())),
            Value::Mapping(m) => out.push((name, p, m.clone())),
            other => ctx.err(
                None,
                &p,
                format!("must be a mapping, not {}", type_name(other)),
            ),
        }
    }
    out
}

type KeyPathBuf = Vec<Seg>;

fn string_map(ctx: &mut Ctx, path: &[Seg], v: Option<&Value>) -> BTreeMap<String, String> {
    match v {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(v) => key_values(ctx, None, path, v)
            .into_iter()
            .map(|(k, v)| (k, v.unwrap_or_default()))
            .collect(),
    }
}

fn top_networks(ctx: &mut Ctx, stack: &str, v: Option<&Value>) -> BTreeMap<String, Net> {
    let mut out = BTreeMap::new();
    out.insert(
        "default".to_string(),
        Net {
            key: "default".into(),
            external: false,
            spec: NetworkSpec {
                name: format!("{stack}_default"),
                stack: stack.into(),
                ..Default::default()
            },
        },
    );
    for (name, p, def) in definitions(ctx, "networks", v) {
        check_keys(
            ctx,
            None,
            &p,
            &def,
            &[
                "driver",
                "driver_opts",
                "ipam",
                "external",
                "internal",
                "attachable",
                "labels",
                "enable_ipv6",
                "name",
            ],
            &["enable_ipv4"],
        );
        let (external, engine_name) = engine_name(ctx, stack, &name, &p, &def);
        let labels = labels(ctx, None, &key(&p, "labels"), def.get("labels"));
        let bool_key = |ctx: &mut Ctx, k: &str| {
            def.get(k)
                .filter(|v| !v.is_null())
                .and_then(|v| boolean(ctx, None, &key(&p, k), v))
        };
        let spec = NetworkSpec {
            name: engine_name,
            stack: stack.into(),
            driver: def
                .get("driver")
                .and_then(|v| string(ctx, None, &key(&p, "driver"), v)),
            internal: bool_key(ctx, "internal").unwrap_or(false),
            labels,
            driver_opts: string_map(ctx, &key(&p, "driver_opts"), def.get("driver_opts")),
            ipam: def
                .get("ipam")
                .filter(|v| !v.is_null())
                .and_then(|v| ipam(ctx, &key(&p, "ipam"), v)),
            attachable: bool_key(ctx, "attachable").unwrap_or(false),
            enable_ipv6: bool_key(ctx, "enable_ipv6"),
        };
        out.insert(
            name.clone(),
            Net {
                key: name,
                external,
                spec,
            },
        );
    }
    out
}

fn ipam(ctx: &mut Ctx, path: &[Seg], v: &Value) -> Option<IpamSpec> {
    let m = as_map(ctx, None, path, v)?;
    check_keys(ctx, None, path, m, &["driver", "config", "options"], &[]);
    let mut spec = IpamSpec {
        driver: m
            .get("driver")
            .and_then(|v| string(ctx, None, &key(path, "driver"), v)),
        config: Vec::new(),
        options: string_map(ctx, &key(path, "options"), m.get("options")),
    };
    if let Some(c) = m.get("config").filter(|v| !v.is_null()) {
        let cp = key(path, "config");
        match c {
            Value::Sequence(items) => {
                for (i, item) in items.iter().enumerate() {
                    let ip = idx(&cp, i);
                    let Some(pool) = as_map(ctx, None, &ip, item) else {
                        continue;
                    };
                    check_keys(
                        ctx,
                        None,
                        &ip,
                        pool,
                        &["subnet", "ip_range", "gateway", "aux_addresses"],
                        &[],
                    );
                    let s = |ctx: &mut Ctx, k: &str| {
                        pool.get(k)
                            .filter(|v| !v.is_null())
                            .and_then(|v| string(ctx, None, &key(&ip, k), v))
                    };
                    spec.config.push(IpamPool {
                        subnet: s(ctx, "subnet"),
                        ip_range: s(ctx, "ip_range"),
                        gateway: s(ctx, "gateway"),
                        aux_addresses: string_map(
                            ctx,
                            &key(&ip, "aux_addresses"),
                            pool.get("aux_addresses"),
                        ),
                    });
                }
            }
            other => ctx.err(
                None,
                &cp,
                format!("must be a list, not {}", type_name(other)),
            ),
        }
    }
    Some(spec)
}

fn top_volumes(ctx: &mut Ctx, stack: &str, v: Option<&Value>) -> BTreeMap<String, Vol> {
    let mut out = BTreeMap::new();
    for (name, p, def) in definitions(ctx, "volumes", v) {
        check_keys(
            ctx,
            None,
            &p,
            &def,
            &["driver", "driver_opts", "labels", "external", "name"],
            &[],
        );
        let (external, engine_name) = engine_name(ctx, stack, &name, &p, &def);
        let labels = labels(ctx, None, &key(&p, "labels"), def.get("labels"));
        let spec = VolumeSpec {
            name: engine_name,
            stack: stack.into(),
            driver: def
                .get("driver")
                .and_then(|v| string(ctx, None, &key(&p, "driver"), v)),
            labels,
            driver_opts: string_map(ctx, &key(&p, "driver_opts"), def.get("driver_opts")),
        };
        out.insert(name, Vol { external, spec });
    }
    out
}

/// Top-level `secrets:` or `configs:`: `file` (in the repository), `environment` (secrets and configs),
/// `content` (configs). `external` needs Swarm and is refused.
fn top_secrets(
    ctx: &mut Ctx,
    input: &StackInput,
    section: &str,
    v: Option<&Value>,
) -> BTreeMap<String, Secret> {
    let mut out = BTreeMap::new();
    for (name, p, def) in definitions(ctx, section, v) {
        let keys: &[&str] = if section == "configs" {
            &["file", "environment", "content", "name", "labels"]
        } else {
            &["file", "environment", "name", "labels"]
        };
        check_keys(
            ctx,
            None,
            &p,
            &def,
            keys,
            &["external", "driver", "driver_opts", "template_driver"],
        );
        let s = |ctx: &mut Ctx, k: &str| {
            def.get(k)
                .filter(|v| !v.is_null())
                .and_then(|v| string(ctx, None, &key(&p, k), v))
        };
        let sources: Vec<&str> = ["file", "environment", "content"]
            .into_iter()
            .filter(|k| def.contains_key(*k))
            .collect();
        if sources.len() != 1 {
            let allowed = if section == "configs" {
                "file, environment or content"
            } else {
                "file or environment"
            };
            ctx.err(None, &p, format!("set exactly one of {allowed}"));
            continue;
        }
        let source = match sources[0] {
            "file" => {
                let Some(file) = s(ctx, "file") else { continue };
                if Path::new(&file).is_absolute() {
                    ctx.err(
                        None,
                        &key(&p, "file"),
                        format!("{file}: a {section} file must be inside the repository"),
                    );
                    continue;
                }
                let Some(rel) = join_rel(&input.dir, Path::new(&file)) else {
                    ctx.err(
                        None,
                        &key(&p, "file"),
                        format!("{file} climbs out of the repository"),
                    );
                    continue;
                };
                match resolve(input.tree, &rel) {
                    Ok(r) => match input.tree.kind(&r) {
                        Ok(Some(super::EntryKind::File)) => SecretSource::File(r),
                        _ => {
                            ctx.err(
                                None,
                                &key(&p, "file"),
                                format!("{} is not a file in the repository", rel.display()),
                            );
                            continue;
                        }
                    },
                    Err(e) => {
                        ctx.err(None, &key(&p, "file"), e);
                        continue;
                    }
                }
            }
            "environment" => {
                let Some(var) = s(ctx, "environment") else {
                    continue;
                };
                match input.env.get(&var) {
                    // From the agent's environment: read again when the container is created, only
                    // a digest kept here.
                    Some(value) if input.agent_env.contains_key(&var) => SecretSource::Env {
                        digest: crate::model::hex(&Sha256::digest(value.as_bytes())),
                        var,
                    },
                    // From the stack's .env: it is in the repository already.
                    Some(value) => SecretSource::Content(value.clone()),
                    None => {
                        ctx.err(
                            None,
                            &key(&p, "environment"),
                            format!("variable {var} is not set"),
                        );
                        continue;
                    }
                }
            }
            _ => {
                let Some(content) = s(ctx, "content") else {
                    continue;
                };
                SecretSource::Content(content)
            }
        };
        let _ = labels(ctx, None, &key(&p, "labels"), def.get("labels"));
        out.insert(name, Secret { source });
    }
    out
}

/// Whether a top-level network or volume is external, and its engine name: `name:`, else the external
/// name, else the key itself (external) or `<stack>_<key>`.
fn engine_name(ctx: &mut Ctx, stack: &str, name: &str, p: &[Seg], def: &Mapping) -> (bool, String) {
    let (external, ext_name) = external(ctx, p, def.get("external"));
    let explicit = def
        .get("name")
        .and_then(|v| string(ctx, None, &key(p, "name"), v));
    let engine = explicit.or(ext_name).unwrap_or_else(|| {
        if external {
            name.to_string()
        } else {
            format!("{stack}_{name}")
        }
    });
    (external, engine)
}

/// `external: true` or the legacy `external: {name: x}`.
fn external(ctx: &mut Ctx, path: &[Seg], v: Option<&Value>) -> (bool, Option<String>) {
    let p = key(path, "external");
    match v {
        None => (false, None),
        Some(Value::Mapping(m)) => {
            check_keys(ctx, None, &p, m, &["name"], &[]);
            let name = m
                .get("name")
                .and_then(|v| string(ctx, None, &key(&p, "name"), v));
            (true, name)
        }
        Some(v) => (boolean(ctx, None, &p, v).unwrap_or(false), None),
    }
}

/// `labels:` in list or mapping form; `io.berth.*` is reserved.
pub(super) fn labels(
    ctx: &mut Ctx,
    service: Option<&str>,
    path: &[Seg],
    v: Option<&Value>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Some(v) = v else { return out };
    for (k, val) in key_values(ctx, service, path, v) {
        if k.starts_with("io.berth.") {
            ctx.err(
                service,
                &key(path, &k),
                format!("label {k} is reserved: berth sets io.berth.* labels itself"),
            );
            continue;
        }
        out.insert(k, val.unwrap_or_default());
    }
    out
}

/// The containers a stack expands to, and their port bindings, are bounded before any is made.
fn check_size(ctx: &mut Ctx, services_path: &[Seg], built: &[Service]) {
    let containers: u64 = built.iter().map(|s| u64::from(s.replicas)).sum();
    if containers > MAX_CONTAINERS {
        ctx.err(
            None,
            services_path,
            format!("the services of this stack make {containers} containers; at most {MAX_CONTAINERS} are allowed"),
        );
    }
    let ports: u64 = built
        .iter()
        .map(|s| {
            let n = u64::try_from(s.spec.ports.len()).unwrap_or(u64::MAX);
            u64::from(s.replicas).saturating_mul(n)
        })
        .sum();
    if ports > MAX_STACK_PORT_BINDINGS {
        ctx.err(
            None,
            services_path,
            format!("the containers of this stack publish {ports} ports; at most {MAX_STACK_PORT_BINDINGS} are allowed"),
        );
    }
}

/// A `depends_on` cycle is an error naming the services in it.
fn check_cycles(ctx: &mut Ctx, services_path: &[Seg], built: &[Service]) {
    let deps: BTreeMap<&str, Vec<&str>> = built
        .iter()
        .map(|s| (s.spec.service.as_str(), s.spec.dependency_names().collect()))
        .collect();
    let mut state: BTreeMap<&str, u8> = BTreeMap::new(); // 1 visiting, 2 done
    fn visit<'a>(
        n: &'a str,
        deps: &BTreeMap<&'a str, Vec<&'a str>>,
        state: &mut BTreeMap<&'a str, u8>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        match state.get(n) {
            Some(2) => return None,
            Some(1) => {
                let start = stack.iter().position(|s| *s == n).unwrap_or(0);
                let mut cycle: Vec<String> = stack[start..].iter().map(|s| s.to_string()).collect();
                cycle.push(n.to_string());
                return Some(cycle);
            }
            _ => {}
        }
        state.insert(n, 1);
        stack.push(n);
        for d in deps.get(n).map(Vec::as_slice).unwrap_or(&[]) {
            if let Some(c) = visit(d, deps, state, stack) {
                return Some(c);
            }
        }
        stack.pop();
        state.insert(n, 2);
        None
    }
    for s in deps.keys() {
        if let Some(cycle) = visit(s, &deps, &mut state, &mut Vec::new()) {
            let first = cycle.first().cloned().unwrap_or_default();
            ctx.err(
                Some(&first),
                &key(&key(services_path, &first), "depends_on"),
                format!("dependency cycle: {}", cycle.join(" -> ")),
            );
            return;
        }
    }
}
