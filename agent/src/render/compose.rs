//! The compose model: a merged, interpolated compose document of one stack → [`StackSpec`].
//!
//! This is the one place where Compose's many spellings (lists or maps, short or long syntax, strings
//! or numbers) are normalised into the model, so the spec hash sees one canonical form. Every problem is
//! collected with its key path; the caller turns paths into file and line.

use super::lines::{display, KeyPath, LineIndex, Seg};
use super::tree::{join_rel, resolve};
use super::{interpolate, EntryKind, Problem, Tree};
use crate::model::{
    ContainerSpec, DeviceSpec, HealthcheckSpec, MountKind, MountSpec, NetworkAttachment,
    NetworkSpec, PortSpec, StackSpec, VolumeSpec,
};
use serde_yaml::{Mapping, Value};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level keys of this release.
const TOP_KEYS: &[&str] = &["name", "services", "networks", "volumes", "version"];
/// Top-level keys of the Compose specification that this release refuses.
const TOP_LATER: &[&str] = &["secrets", "configs", "include", "models"];

/// Service keys of this release.
const SERVICE_KEYS: &[&str] = &[
    "image",
    "command",
    "entrypoint",
    "environment",
    "env_file",
    "ports",
    "volumes",
    "networks",
    "restart",
    "labels",
    "healthcheck",
    "depends_on",
    "deploy",
    "user",
    "working_dir",
    "hostname",
    "extra_hosts",
    "cap_add",
    "cap_drop",
    "privileged",
    "devices",
    "read_only",
    "tmpfs",
    "stop_signal",
    "stop_grace_period",
    "init",
    "network_mode",
];

/// Service keys of the Compose specification that this release refuses rather than ignores.
const SERVICE_LATER: &[&str] = &[
    "annotations",
    "attach",
    "blkio_config",
    "cgroup",
    "cgroup_parent",
    "configs",
    "container_name",
    "cpu_count",
    "cpu_percent",
    "cpu_period",
    "cpu_quota",
    "cpu_rt_period",
    "cpu_rt_runtime",
    "cpu_shares",
    "cpus",
    "cpuset",
    "credential_spec",
    "develop",
    "device_cgroup_rules",
    "dns",
    "dns_opt",
    "dns_search",
    "domainname",
    "driver_opts",
    "expose",
    "extends",
    "external_links",
    "gpus",
    "group_add",
    "ipc",
    "isolation",
    "label_file",
    "links",
    "logging",
    "mac_address",
    "mem_limit",
    "mem_reservation",
    "mem_swappiness",
    "memswap_limit",
    "models",
    "oom_kill_disable",
    "oom_score_adj",
    "pid",
    "pids_limit",
    "platform",
    "post_start",
    "pre_stop",
    "profiles",
    "provider",
    "pull_policy",
    "runtime",
    "scale",
    "secrets",
    "security_opt",
    "shm_size",
    "stdin_open",
    "storage_opt",
    "sysctls",
    "tty",
    "ulimits",
    "use_api_socket",
    "userns_mode",
    "uts",
    "volumes_from",
];

const MAX_REPLICAS: u64 = 100;

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
}

struct Ctx<'a> {
    docs: &'a [Doc],
    stack: String,
    problems: Vec<Problem>,
}

impl Ctx<'_> {
    fn locate(&self, path: &[Seg]) -> (Option<String>, Option<usize>) {
        for d in self.docs.iter().rev() {
            if let Some(line) = d.index.exact(path) {
                return (Some(d.file.clone()), Some(line));
            }
        }
        // Not literally in any file (a merged sequence, a key reached through an anchor): the file that
        // holds the deepest part of the path, the later file on a tie (it overrides).
        let mut best: Option<(usize, &Doc, usize)> = None;
        for d in self.docs {
            if let Some((depth, line)) = d.index.deepest(path) {
                if best.is_none_or(|(b, _, _)| depth >= b) {
                    best = Some((depth, d, line));
                }
            }
        }
        match best {
            Some((_, d, line)) => (Some(d.file.clone()), Some(line)),
            None => (self.docs.first().map(|d| d.file.clone()), None),
        }
    }

    fn err(&mut self, service: Option<&str>, path: &[Seg], msg: impl std::fmt::Display) {
        let (file, line) = self.locate(path);
        let message = if path.is_empty() {
            msg.to_string()
        } else {
            format!("{}: {msg}", display(path))
        };
        self.problems.push(Problem {
            file,
            line,
            column: None,
            stack: Some(self.stack.clone()),
            service: service.map(str::to_string),
            message,
        });
    }
}

fn key(path: &[Seg], k: &str) -> KeyPath {
    let mut p = path.to_vec();
    p.push(Seg::Key(k.to_string()));
    p
}

fn idx(path: &[Seg], i: usize) -> KeyPath {
    let mut p = path.to_vec();
    p.push(Seg::Index(i));
    p
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// A scalar as text (strings, numbers, booleans); `None` for null and collections.
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Keys of a mapping as strings, checked against `known` (and `later`: Compose keys not in this release).
fn check_keys(
    ctx: &mut Ctx,
    service: Option<&str>,
    path: &[Seg],
    m: &Mapping,
    known: &[&str],
    later: &[&str],
) {
    for k in m.keys() {
        let Some(k) = k.as_str() else {
            ctx.err(service, path, format!("key {} is not a string", type_name(k)));
            continue;
        };
        if known.contains(&k) || k.starts_with("x-") {
            continue;
        }
        let p = key(path, k);
        if k == "build" {
            ctx.err(
                service,
                &p,
                "`build` is refused: berth deploys images; build and push them in CI, then name the image",
            );
        } else if later.contains(&k) {
            ctx.err(
                service,
                &p,
                format!("`{k}` is a Compose key this release of berth does not support yet"),
            );
        } else {
            ctx.err(service, &p, format!("unknown key `{k}`"));
        }
    }
}

fn as_map<'v>(
    ctx: &mut Ctx,
    service: Option<&str>,
    path: &[Seg],
    v: &'v Value,
) -> Option<&'v Mapping> {
    match v {
        Value::Mapping(m) => Some(m),
        other => {
            ctx.err(service, path, format!("must be a mapping, not {}", type_name(other)));
            None
        }
    }
}

fn string(ctx: &mut Ctx, service: Option<&str>, path: &[Seg], v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        other => {
            ctx.err(service, path, format!("must be a string, not {}", type_name(other)));
            None
        }
    }
}

/// A boolean, also from the strings interpolation produces (`true`, `false`, `yes`, `no`, `on`, `off`).
fn boolean(ctx: &mut Ctx, service: Option<&str>, path: &[Seg], v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "true" | "yes" | "y" | "on" | "1" => Some(true),
            "false" | "no" | "n" | "off" | "0" | "" => Some(false),
            _ => {
                ctx.err(service, path, format!("{s:?} is not a boolean"));
                None
            }
        },
        other => {
            ctx.err(service, path, format!("must be a boolean, not {}", type_name(other)));
            None
        }
    }
}

fn integer(ctx: &mut Ctx, service: Option<&str>, path: &[Seg], v: &Value) -> Option<i64> {
    let parsed = match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    if parsed.is_none() {
        ctx.err(service, path, format!("{} is not a whole number", show(v)));
    }
    parsed
}

fn show(v: &Value) -> String {
    scalar(v)
        .map(|s| format!("{s:?}"))
        .unwrap_or_else(|| type_name(v).to_string())
}

/// A Go-style duration (`1m30s`, `500ms`) or a number of seconds.
fn duration(
    ctx: &mut Ctx,
    service: Option<&str>,
    path: &[Seg],
    v: &Value,
) -> Option<std::time::Duration> {
    let text = scalar(v).unwrap_or_default();
    match crate::config::parse_duration(&text) {
        Ok(d) => Some(d),
        Err(_) => {
            ctx.err(
                service,
                path,
                format!("{} is not a duration like 30s, 1m30s or 500ms", show(v)),
            );
            None
        }
    }
}

/// A list of strings (numbers accepted), or a single string when `single_ok`.
fn string_list(
    ctx: &mut Ctx,
    service: Option<&str>,
    path: &[Seg],
    v: &Value,
    single_ok: bool,
) -> Vec<String> {
    match v {
        Value::Sequence(items) => items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| string(ctx, service, &idx(path, i), item))
            .collect(),
        Value::String(s) if single_ok => vec![s.clone()],
        Value::Null => Vec::new(),
        other => {
            ctx.err(service, path, format!("must be a list, not {}", type_name(other)));
            Vec::new()
        }
    }
}

/// `command` / `entrypoint`: a list, or a string split like a shell would.
fn command(ctx: &mut Ctx, service: &str, path: &[Seg], v: &Value) -> Option<Vec<String>> {
    match v {
        Value::Null => None,
        Value::String(s) => match shell_split(s) {
            Ok(words) => Some(words),
            Err(e) => {
                ctx.err(Some(service), path, e);
                None
            }
        },
        _ => Some(string_list(ctx, Some(service), path, v, false)),
    }
}

/// Split a command line into words: whitespace separates, single quotes are literal, double quotes allow
/// `\"` and `\\`, a backslash outside quotes escapes the next character.
pub fn shell_split(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err(format!("unterminated single quote in {s:?}")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => cur.push(c),
                            Some(c) => {
                                cur.push('\\');
                                cur.push(c);
                            }
                            None => return Err(format!("unterminated double quote in {s:?}")),
                        },
                        Some(c) => cur.push(c),
                        None => return Err(format!("unterminated double quote in {s:?}")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(c) = chars.next() {
                    cur.push(c);
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// `[K=V, K]` or `{K: V, K: null}` → ordered (key, value); a value-less key is `None`.
fn key_values(
    ctx: &mut Ctx,
    service: Option<&str>,
    path: &[Seg],
    v: &Value,
) -> Vec<(String, Option<String>)> {
    match v {
        Value::Null => Vec::new(),
        Value::Sequence(items) => items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| {
                let s = string(ctx, service, &idx(path, i), item)?;
                Some(match s.split_once('=') {
                    Some((k, v)) => (k.to_string(), Some(v.to_string())),
                    None => (s, None),
                })
            })
            .collect(),
        Value::Mapping(m) => m
            .iter()
            .filter_map(|(k, v)| {
                let k = scalar(k)?;
                match v {
                    Value::Null => Some((k, None)),
                    other => match scalar(other) {
                        Some(s) => Some((k, Some(s))),
                        None => {
                            ctx.err(
                                service,
                                &key(path, &k),
                                format!("must be a string, not {}", type_name(other)),
                            );
                            None
                        }
                    },
                }
            })
            .collect(),
        other => {
            ctx.err(
                service,
                path,
                format!("must be a list or a mapping, not {}", type_name(other)),
            );
            Vec::new()
        }
    }
}

/// Convert one stack. Problems are appended to `problems`; `None` when there was any.
pub fn convert(input: &StackInput, problems: &mut Vec<Problem>) -> Option<StackSpec> {
    let mut ctx = Ctx {
        docs: input.docs,
        stack: input.name.clone(),
        problems: Vec::new(),
    };
    let top = match &input.doc {
        Value::Mapping(m) => m.clone(),
        Value::Null => Mapping::new(),
        other => {
            ctx.err(None, &[], format!("a compose file must be a mapping, not {}", type_name(other)));
            problems.append(&mut ctx.problems);
            return None;
        }
    };
    check_keys(&mut ctx, None, &[], &top, TOP_KEYS, TOP_LATER);

    let stack = input.name.clone();
    let networks = top_networks(&mut ctx, &stack, top.get("networks"));
    let volumes = top_volumes(&mut ctx, &stack, top.get("volumes"));

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
    let names: BTreeSet<String> = services.iter().map(|(n, _)| n.clone()).collect();

    let mut built: Vec<Service> = Vec::new();
    for (name, m) in &services {
        let path = key(&services_path, name);
        if let Some(s) = service(&mut ctx, input, name, &path, m, &names, &networks, &volumes) {
            built.push(s);
        }
    }
    check_cycles(&mut ctx, &services_path, &built);

    // `network_mode: service:X` shares X's namespace: X's spec hash is folded into the dependent's, so
    // recreating X recreates it too (a container left in a dead namespace has no network).
    let hashes: BTreeMap<String, String> = built
        .iter()
        .map(|s| (s.spec.service.clone(), s.spec.spec_hash()))
        .collect();
    let mut containers = Vec::new();
    let mut used_networks: BTreeSet<String> = BTreeSet::new();
    for s in &built {
        let mut spec = s.spec.clone();
        if let Some(peer) = &s.namespace_of {
            let mut h = Sha256::new();
            h.update(spec.content_digest.clone().unwrap_or_default());
            h.update(hashes.get(peer).cloned().unwrap_or_default());
            spec.content_digest = Some(crate::model::hex(&h.finalize()));
        }
        for n in &spec.networks {
            used_networks.insert(n.name.clone());
        }
        for r in 1..=s.replicas {
            let mut c = spec.clone();
            c.replica = r;
            c.name = format!("{stack}-{}-{r}", spec.service);
            containers.push(c);
        }
    }
    containers.sort_by(|a, b| a.name.cmp(&b.name));

    // Networks are created when declared (non-external) or when `default` is used implicitly.
    let net_specs: Vec<NetworkSpec> = networks
        .values()
        .filter(|n| !n.external)
        .filter(|n| n.key != "default" || used_networks.contains(&n.spec.name))
        .map(|n| n.spec.clone())
        .collect();
    let vol_specs: Vec<VolumeSpec> = volumes
        .values()
        .filter(|v| !v.external)
        .map(|v| v.spec.clone())
        .collect();

    if !ctx.problems.is_empty() {
        problems.append(&mut ctx.problems);
        return None;
    }
    let mut net_specs = net_specs;
    net_specs.sort_by(|a, b| a.name.cmp(&b.name));
    let mut vol_specs = vol_specs;
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
        && n
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

struct Net {
    key: String,
    external: bool,
    spec: NetworkSpec,
}

struct Vol {
    external: bool,
    spec: VolumeSpec,
}

fn top_networks(ctx: &mut Ctx, stack: &str, v: Option<&Value>) -> BTreeMap<String, Net> {
    let path = vec![Seg::Key("networks".into())];
    let mut out = BTreeMap::new();
    out.insert(
        "default".to_string(),
        Net {
            key: "default".into(),
            external: false,
            spec: NetworkSpec {
                name: format!("{stack}_default"),
                stack: stack.into(),
                driver: None,
                internal: false,
                labels: BTreeMap::new(),
            },
        },
    );
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return out;
    };
    let Some(m) = as_map(ctx, None, &path, v) else {
        return out;
    };
    for (k, v) in m {
        let Some(name) = scalar(k) else { continue };
        let p = key(&path, &name);
        let empty = Mapping::new();
        let def = match v {
            Value::Null => &empty,
            Value::Mapping(m) => m,
            other => {
                ctx.err(None, &p, format!("must be a mapping, not {}", type_name(other)));
                continue;
            }
        };
        check_keys(
            ctx,
            None,
            &p,
            def,
            &["driver", "internal", "labels", "external", "name"],
            &["driver_opts", "ipam", "attachable", "enable_ipv6", "enable_ipv4"],
        );
        let (external, ext_name) = external(ctx, &p, def.get("external"));
        let explicit = def
            .get("name")
            .and_then(|v| string(ctx, None, &key(&p, "name"), v));
        let engine_name = explicit
            .or(ext_name)
            .unwrap_or_else(|| if external { name.clone() } else { format!("{stack}_{name}") });
        let labels = labels(ctx, None, &key(&p, "labels"), def.get("labels"));
        let spec = NetworkSpec {
            name: engine_name,
            stack: stack.into(),
            driver: def
                .get("driver")
                .and_then(|v| string(ctx, None, &key(&p, "driver"), v)),
            internal: def
                .get("internal")
                .and_then(|v| boolean(ctx, None, &key(&p, "internal"), v))
                .unwrap_or(false),
            labels,
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

fn top_volumes(ctx: &mut Ctx, stack: &str, v: Option<&Value>) -> BTreeMap<String, Vol> {
    let path = vec![Seg::Key("volumes".into())];
    let mut out = BTreeMap::new();
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return out;
    };
    let Some(m) = as_map(ctx, None, &path, v) else {
        return out;
    };
    for (k, v) in m {
        let Some(name) = scalar(k) else { continue };
        let p = key(&path, &name);
        let empty = Mapping::new();
        let def = match v {
            Value::Null => &empty,
            Value::Mapping(m) => m,
            other => {
                ctx.err(None, &p, format!("must be a mapping, not {}", type_name(other)));
                continue;
            }
        };
        check_keys(
            ctx,
            None,
            &p,
            def,
            &["driver", "labels", "external", "name"],
            &["driver_opts"],
        );
        let (external, ext_name) = external(ctx, &p, def.get("external"));
        let explicit = def
            .get("name")
            .and_then(|v| string(ctx, None, &key(&p, "name"), v));
        let engine_name = explicit
            .or(ext_name)
            .unwrap_or_else(|| if external { name.clone() } else { format!("{stack}_{name}") });
        let labels = labels(ctx, None, &key(&p, "labels"), def.get("labels"));
        let spec = VolumeSpec {
            name: engine_name,
            stack: stack.into(),
            driver: def
                .get("driver")
                .and_then(|v| string(ctx, None, &key(&p, "driver"), v)),
            labels,
        };
        out.insert(name, Vol { external, spec });
    }
    out
}

/// `external: true` or the legacy `external: {name: x}`.
fn external(ctx: &mut Ctx, path: &[Seg], v: Option<&Value>) -> (bool, Option<String>) {
    let p = key(path, "external");
    match v {
        None => (false, None),
        Some(Value::Mapping(m)) => {
            check_keys(ctx, None, &p, m, &["name"], &[]);
            let name = m.get("name").and_then(|v| string(ctx, None, &key(&p, "name"), v));
            (true, name)
        }
        Some(v) => (boolean(ctx, None, &p, v).unwrap_or(false), None),
    }
}

fn labels(
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

struct Service {
    spec: ContainerSpec,
    replicas: u32,
    /// `network_mode: service:X`.
    namespace_of: Option<String>,
}

#[allow(clippy::too_many_arguments)]
fn service(
    ctx: &mut Ctx,
    input: &StackInput,
    name: &str,
    path: &[Seg],
    m: &Mapping,
    services: &BTreeSet<String>,
    networks: &BTreeMap<String, Net>,
    volumes: &BTreeMap<String, Vol>,
) -> Option<Service> {
    let before = ctx.problems.len();
    let svc = Some(name);
    check_keys(ctx, svc, path, m, SERVICE_KEYS, SERVICE_LATER);
    let get = |k: &str| m.get(k).filter(|v| !v.is_null());
    let p = |k: &str| key(path, k);

    let image = match get("image") {
        Some(v) => string(ctx, svc, &p("image"), v).filter(|s| {
            let ok = !s.trim().is_empty() && !s.contains(char::is_whitespace);
            ok
        }),
        None => None,
    };
    if image.is_none() && !m.contains_key("build") {
        ctx.err(svc, path, "`image` is required (berth deploys images; it does not build them)");
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
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    if let Some(v) = get("env_file") {
        env_files(ctx, input, name, &p("env_file"), v, &mut env);
    }
    if let Some(v) = get("environment") {
        for (k, val) in key_values(ctx, svc, &p("environment"), v) {
            match val.or_else(|| input.env.get(&k).cloned()) {
                Some(val) => {
                    env.insert(k, val);
                }
                None => {
                    env.remove(&k);
                }
            }
        }
    }
    spec.env = env.into_iter().map(|(k, v)| format!("{k}={v}")).collect();

    if let Some(v) = get("ports") {
        spec.ports = ports(ctx, name, &p("ports"), v);
    }
    if let Some(v) = get("volumes") {
        let (mounts, tmpfs) = service_volumes(ctx, input, name, &p("volumes"), v, volumes);
        spec.mounts = mounts;
        spec.tmpfs.extend(tmpfs);
    }
    if let Some(v) = get("tmpfs") {
        spec.tmpfs
            .extend(string_list(ctx, svc, &p("tmpfs"), v, true));
    }
    spec.tmpfs.sort();
    spec.tmpfs.dedup();
    spec.content_digest = content_digest(ctx, input, name, path, &spec.mounts);

    // Networking.
    let mut namespace_of = None;
    let mut depends: BTreeSet<String> = BTreeSet::new();
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
                    spec.network_mode = Some(format!("container:{}-{peer}-1", input.name));
                    namespace_of = Some(peer.to_string());
                    depends.insert(peer.to_string());
                }
            } else if mode.is_empty() {
                ctx.err(svc, &p("network_mode"), "must not be empty");
            } else {
                spec.network_mode = Some(mode);
            }
        }
    }
    if spec.network_mode.is_none() {
        spec.networks = service_networks(ctx, name, &p("networks"), get("networks"), networks);
    }
    if let Some(v) = get("hostname") {
        spec.hostname = string(ctx, svc, &p("hostname"), v);
    }
    if let Some(v) = get("extra_hosts") {
        spec.extra_hosts = extra_hosts(ctx, name, &p("extra_hosts"), v);
    }

    if let Some(v) = get("restart") {
        if let Some(r) = string(ctx, svc, &p("restart"), v) {
            let ok = match r.split_once(':') {
                Some(("on-failure", n)) => n.parse::<u32>().is_ok(),
                None => matches!(r.as_str(), "no" | "always" | "on-failure" | "unless-stopped"),
                _ => false,
            };
            if ok {
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
    spec.labels = labels(ctx, svc, &p("labels"), get("labels"));
    if let Some(v) = get("healthcheck") {
        spec.healthcheck = healthcheck(ctx, name, &p("healthcheck"), v);
    }
    if let Some(v) = get("depends_on") {
        depends.extend(depends_on(ctx, name, &p("depends_on"), v, services));
    }
    depends.remove(name);
    spec.depends_on = depends.into_iter().collect();

    let mut replicas = 1u32;
    if let Some(v) = get("deploy") {
        if let Some(d) = as_map(ctx, svc, &p("deploy"), v) {
            check_keys(
                ctx,
                svc,
                &p("deploy"),
                d,
                &["replicas"],
                &[
                    "mode",
                    "resources",
                    "restart_policy",
                    "labels",
                    "placement",
                    "update_config",
                    "rollback_config",
                    "endpoint_mode",
                ],
            );
            if let Some(r) = d.get("replicas").filter(|v| !v.is_null()) {
                let rp = key(&p("deploy"), "replicas");
                if let Some(n) = integer(ctx, svc, &rp, r) {
                    if n < 0 || n as u64 > MAX_REPLICAS {
                        ctx.err(svc, &rp, format!("must be between 0 and {MAX_REPLICAS}"));
                    } else {
                        replicas = n as u32;
                    }
                }
            }
        }
    }

    if let Some(v) = get("user") {
        spec.user = string(ctx, svc, &p("user"), v);
    }
    if let Some(v) = get("working_dir") {
        spec.working_dir = string(ctx, svc, &p("working_dir"), v);
    }
    if let Some(v) = get("cap_add") {
        spec.cap_add = caps(ctx, name, &p("cap_add"), v);
    }
    if let Some(v) = get("cap_drop") {
        spec.cap_drop = caps(ctx, name, &p("cap_drop"), v);
    }
    if let Some(v) = get("privileged") {
        spec.privileged = boolean(ctx, svc, &p("privileged"), v).unwrap_or(false);
    }
    if let Some(v) = get("read_only") {
        spec.read_only = boolean(ctx, svc, &p("read_only"), v).unwrap_or(false);
    }
    if let Some(v) = get("init") {
        spec.init = boolean(ctx, svc, &p("init"), v);
    }
    if let Some(v) = get("devices") {
        spec.devices = devices(ctx, name, &p("devices"), v);
    }
    if let Some(v) = get("stop_signal") {
        spec.stop_signal = string(ctx, svc, &p("stop_signal"), v);
    }
    if let Some(v) = get("stop_grace_period") {
        spec.stop_grace_period = duration(ctx, svc, &p("stop_grace_period"), v).map(|d| d.as_secs());
    }

    if ctx.problems.len() > before {
        return None;
    }
    Some(Service {
        spec,
        replicas,
        namespace_of,
    })
}

fn env_files(
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
        let (file, required) = match &item {
            Value::String(s) => (s.clone(), true),
            Value::Mapping(m) => {
                check_keys(ctx, svc, &p, m, &["path", "required", "format"], &[]);
                let Some(file) = m.get("path").and_then(|v| string(ctx, svc, &key(&p, "path"), v))
                else {
                    ctx.err(svc, &p, "`path` is required");
                    continue;
                };
                let required = m
                    .get("required")
                    .and_then(|v| boolean(ctx, svc, &key(&p, "required"), v))
                    .unwrap_or(true);
                if let Some(f) = m.get("format") {
                    if scalar(f).as_deref() != Some("dotenv") {
                        ctx.err(
                            svc,
                            &key(&p, "format"),
                            "only the dotenv format is supported by this release",
                        );
                        continue;
                    }
                }
                (file, required)
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
                match interpolate::parse_dotenv(&text, input.env) {
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
            Ok(None) => ctx.err(svc, &p, format!("env_file {} does not exist", rel.display())),
            Err(e) => ctx.err(svc, &p, format!("env_file {}: {e}", rel.display())),
        }
    }
}

/// Read a repository file, refusing ones over [`super::MAX_FILE_BYTES`].
pub fn read_capped(tree: &dyn Tree, path: &Path) -> Result<Option<Vec<u8>>, String> {
    match tree.read(path) {
        Ok(Some(b)) if b.len() > super::MAX_FILE_BYTES => Err(format!(
            "{} is {} bytes, larger than the {} allowed",
            path.display(),
            b.len(),
            super::MAX_FILE_BYTES
        )),
        Ok(r) => Ok(r),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

fn ports(ctx: &mut Ctx, service: &str, path: &[Seg], v: &Value) -> Vec<PortSpec> {
    let svc = Some(service);
    let Value::Sequence(items) = v else {
        ctx.err(svc, path, format!("must be a list, not {}", type_name(v)));
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let p = idx(path, i);
        let parsed = match item {
            Value::Number(_) | Value::String(_) => parse_port_short(&scalar(item).unwrap_or_default()),
            Value::Mapping(m) => {
                check_keys(
                    ctx,
                    svc,
                    &p,
                    m,
                    &["target", "published", "host_ip", "protocol", "mode", "name", "app_protocol"],
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

fn port_long(m: &Mapping) -> Result<Vec<PortSpec>, String> {
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
    let published = m.get("published").and_then(scalar).filter(|s| !s.is_empty());
    let hosts: Vec<Option<u16>> = match published {
        None => vec![None],
        Some(p) => {
            let (a, b) = parse_range(&p)?;
            if a != b {
                return Err(format!("published range {p} needs a target range of the same length"));
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

fn check_protocol(p: &str) -> Result<(), String> {
    if matches!(p, "tcp" | "udp" | "sctp") {
        Ok(())
    } else {
        Err(format!("protocol {p:?} must be tcp, udp or sctp"))
    }
}

fn parse_port_number(s: &str) -> Result<u16, String> {
    match s.trim().parse::<u32>() {
        Ok(n) if (1..=65535).contains(&n) => Ok(n as u16),
        _ => Err(format!("{s:?} is not a port number (1-65535)")),
    }
}

fn parse_range(s: &str) -> Result<(u16, u16), String> {
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
        let end = r.find(']').ok_or_else(|| format!("{s:?}: unclosed '[' in host address"))?;
        let ip = &r[..end];
        let rest = r[end + 1..]
            .strip_prefix(':')
            .ok_or_else(|| format!("{s:?}: expected ':' after the host address"))?;
        (Some(ip.to_string()), rest.to_string())
    } else {
        let parts: Vec<&str> = spec.split(':').collect();
        match parts.len() {
            1 | 2 => (None, spec.to_string()),
            3 => (Some(parts[0].to_string()), format!("{}:{}", parts[1], parts[2])),
            _ => return Err(format!("{s:?} is not a port mapping like 8080:80 or 127.0.0.1:8080:80/udp")),
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

/// A service's `volumes`: bind mounts and named volumes (and `type: tmpfs`, returned as tmpfs entries).
fn service_volumes(
    ctx: &mut Ctx,
    input: &StackInput,
    service: &str,
    path: &[Seg],
    v: &Value,
    volumes: &BTreeMap<String, Vol>,
) -> (Vec<MountSpec>, Vec<String>) {
    let svc = Some(service);
    let Value::Sequence(items) = v else {
        ctx.err(svc, path, format!("must be a list, not {}", type_name(v)));
        return (Vec::new(), Vec::new());
    };
    let mut mounts: Vec<MountSpec> = Vec::new();
    let mut tmpfs = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let p = idx(path, i);
        // (kind, source, target, read_only)
        let parsed: Result<(String, String, String, bool), String> = match item {
            Value::String(s) => parse_volume_short(s),
            Value::Mapping(m) => {
                check_keys(
                    ctx,
                    svc,
                    &p,
                    m,
                    &["type", "source", "target", "read_only", "bind", "volume", "tmpfs", "consistency"],
                    &[],
                );
                volume_long(ctx, service, &p, m)
            }
            other => Err(format!("must be a volume, not {}", type_name(other))),
        };
        let (kind, source, target, read_only) = match parsed {
            Ok(v) => v,
            Err(e) => {
                ctx.err(svc, &p, e);
                continue;
            }
        };
        if !target.starts_with('/') {
            ctx.err(svc, &p, format!("target {target:?} must be an absolute path in the container"));
            continue;
        }
        match kind.as_str() {
            "tmpfs" => tmpfs.push(source),
            "bind" => match bind_source(input, &source) {
                Ok(host) => mounts.push(MountSpec {
                    kind: MountKind::Bind,
                    source: host,
                    target,
                    read_only,
                }),
                Err(e) => ctx.err(svc, &p, e),
            },
            _ => {
                if source.is_empty() {
                    ctx.err(
                        svc,
                        &p,
                        format!("anonymous volume {target}: its data would be lost whenever berth recreates the container; declare a named volume under the top-level `volumes:` and mount it"),
                    );
                    continue;
                }
                match volumes.get(&source) {
                    Some(vol) => mounts.push(MountSpec {
                        kind: MountKind::Volume,
                        source: vol.spec.name.clone(),
                        target,
                        read_only,
                    }),
                    None => ctx.err(
                        svc,
                        &p,
                        format!("volume {source:?} is not declared under the top-level `volumes:`"),
                    ),
                }
            }
        }
    }
    mounts.sort_by(|a, b| a.target.cmp(&b.target));
    let before = mounts.len();
    mounts.dedup_by(|a, b| a.target == b.target);
    if mounts.len() != before {
        ctx.err(svc, path, "two volumes mount the same target path");
    }
    (mounts, tmpfs)
}

/// Short syntax `source:target[:mode]` → (kind, source, target, read_only).
fn parse_volume_short(s: &str) -> Result<(String, String, String, bool), String> {
    let parts: Vec<&str> = s.split(':').collect();
    let (source, target, mode) = match parts.as_slice() {
        [t] => ("", *t, ""),
        [s, t] => (*s, *t, ""),
        [s, t, m] => (*s, *t, *m),
        _ => return Err(format!("{s:?} is not a volume like ./conf:/etc/app:ro or data:/data")),
    };
    let mut read_only = false;
    for opt in mode.split(',').filter(|o| !o.is_empty()) {
        match opt {
            "ro" => read_only = true,
            "rw" => read_only = false,
            // Consistency hints only mean something on Docker Desktop; Compose passes them on, Linux ignores.
            "cached" | "delegated" | "consistent" => {}
            other => {
                return Err(format!(
                    "{s:?}: volume option {other:?} is not supported by this release (ro, rw)"
                ))
            }
        }
    }
    let kind = if source.is_empty() {
        "volume"
    } else if source.starts_with('.') || source.starts_with('/') || source.starts_with('~') {
        "bind"
    } else {
        "volume"
    };
    Ok((kind.into(), source.into(), target.into(), read_only))
}

fn volume_long(
    ctx: &mut Ctx,
    service: &str,
    path: &[Seg],
    m: &Mapping,
) -> Result<(String, String, String, bool), String> {
    let svc = Some(service);
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
    for (k, allowed) in [
        ("bind", &["create_host_path"][..]),
        ("volume", &[][..]),
        ("tmpfs", &["size", "mode"][..]),
    ] {
        if let Some(sub) = m.get(k) {
            if let Some(sm) = as_map(ctx, svc, &key(path, k), sub) {
                check_keys(
                    ctx,
                    svc,
                    &key(path, k),
                    sm,
                    allowed,
                    &["propagation", "selinux", "nocopy", "subpath"],
                );
            }
        }
    }
    match kind.as_str() {
        "bind" => {
            if source.is_empty() {
                return Err("a bind mount needs a `source`".into());
            }
            Ok((kind, source, target, read_only))
        }
        "volume" => Ok((kind, source, target, read_only)),
        "tmpfs" => {
            let mut opts = Vec::new();
            if let Some(t) = m.get("tmpfs").and_then(Value::as_mapping) {
                if let Some(size) = t.get("size").and_then(scalar) {
                    opts.push(format!("size={size}"));
                }
                if let Some(mode) = t.get("mode").and_then(scalar) {
                    opts.push(format!("mode={mode}"));
                }
            }
            let entry = if opts.is_empty() {
                target.clone()
            } else {
                format!("{target}:{}", opts.join(","))
            };
            Ok((kind, entry, target, read_only))
        }
        other => Err(format!(
            "volume type {other:?} is not supported by this release (bind, volume, tmpfs)"
        )),
    }
}

/// A bind source → absolute host path. Relative sources resolve inside the checkout and must stay in
/// the repository (symlinks followed, none may point outside); absolute host paths are allowed.
fn bind_source(input: &StackInput, source: &str) -> Result<String, String> {
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

fn normalise_abs(p: &str) -> String {
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
fn content_digest(
    ctx: &mut Ctx,
    input: &StackInput,
    service: &str,
    path: &[Seg],
    mounts: &[MountSpec],
) -> Option<String> {
    let prefix = format!("{}/", input.checkout_dir.display().to_string().trim_end_matches('/'));
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

fn hash_tree(
    tree: &dyn Tree,
    rel: &Path,
    h: &mut Sha256,
    any: &mut bool,
    depth: usize,
) -> Result<(), String> {
    if depth > 32 {
        return Err(format!("{}: directories nested too deep", rel.display()));
    }
    match tree.kind(rel).map_err(|e| format!("{}: {e}", rel.display()))? {
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

fn service_networks(
    ctx: &mut Ctx,
    service: &str,
    path: &[Seg],
    v: Option<&Value>,
    networks: &BTreeMap<String, Net>,
) -> Vec<NetworkAttachment> {
    let svc = Some(service);
    let mut wanted: Vec<(String, Vec<String>, KeyPath)> = Vec::new();
    match v {
        None => wanted.push(("default".into(), Vec::new(), path.to_vec())),
        Some(Value::Sequence(items)) => {
            for (i, item) in items.iter().enumerate() {
                if let Some(n) = string(ctx, svc, &idx(path, i), item) {
                    wanted.push((n, Vec::new(), idx(path, i)));
                }
            }
        }
        Some(Value::Mapping(m)) => {
            for (k, v) in m {
                let Some(n) = scalar(k) else { continue };
                let p = key(path, &n);
                let mut aliases = Vec::new();
                match v {
                    Value::Null => {}
                    Value::Mapping(opts) => {
                        check_keys(
                            ctx,
                            svc,
                            &p,
                            opts,
                            &["aliases"],
                            &[
                                "ipv4_address",
                                "ipv6_address",
                                "link_local_ips",
                                "mac_address",
                                "priority",
                                "gw_priority",
                                "driver_opts",
                                "interface_name",
                            ],
                        );
                        if let Some(a) = opts.get("aliases") {
                            aliases = string_list(ctx, svc, &key(&p, "aliases"), a, false);
                        }
                    }
                    other => {
                        ctx.err(svc, &p, format!("must be a mapping, not {}", type_name(other)));
                    }
                }
                wanted.push((n, aliases, p));
            }
        }
        Some(other) => {
            ctx.err(svc, path, format!("must be a list or a mapping, not {}", type_name(other)));
        }
    }
    let mut out = Vec::new();
    for (n, mut aliases, p) in wanted {
        match networks.get(&n) {
            Some(net) => {
                aliases.push(service.to_string());
                aliases.sort();
                aliases.dedup();
                out.push(NetworkAttachment {
                    name: net.spec.name.clone(),
                    aliases,
                });
            }
            None => ctx.err(
                svc,
                &p,
                format!("network {n:?} is not declared under the top-level `networks:`"),
            ),
        }
    }
    out.sort();
    out.dedup_by(|a, b| a.name == b.name);
    out
}

fn extra_hosts(ctx: &mut Ctx, service: &str, path: &[Seg], v: &Value) -> Vec<String> {
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
            for (i, s) in string_list(ctx, Some(service), path, v, false).into_iter().enumerate() {
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

fn caps(ctx: &mut Ctx, service: &str, path: &[Seg], v: &Value) -> Vec<String> {
    let mut out = string_list(ctx, Some(service), path, v, false);
    out.sort();
    out.dedup();
    out
}

fn devices(ctx: &mut Ctx, service: &str, path: &[Seg], v: &Value) -> Vec<DeviceSpec> {
    let mut out = Vec::new();
    for (i, s) in string_list(ctx, Some(service), path, v, false).into_iter().enumerate() {
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

fn healthcheck(ctx: &mut Ctx, service: &str, path: &[Seg], v: &Value) -> Option<HealthcheckSpec> {
    let svc = Some(service);
    let m = as_map(ctx, svc, path, v)?;
    check_keys(
        ctx,
        svc,
        path,
        m,
        &["test", "interval", "timeout", "start_period", "retries", "disable"],
        &["start_interval"],
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

fn depends_on(
    ctx: &mut Ctx,
    service: &str,
    path: &[Seg],
    v: &Value,
    services: &BTreeSet<String>,
) -> Vec<String> {
    let svc = Some(service);
    let mut out = Vec::new();
    let mut check = |ctx: &mut Ctx, name: String, p: KeyPath, required: bool| {
        if services.contains(&name) {
            out.push(name);
        } else if required {
            ctx.err(svc, &p, format!("service {name:?} is not defined in this stack"));
        }
    };
    match v {
        Value::Sequence(items) => {
            for (i, item) in items.iter().enumerate() {
                if let Some(n) = string(ctx, svc, &idx(path, i), item) {
                    check(ctx, n, idx(path, i), true);
                }
            }
        }
        Value::Mapping(m) => {
            for (k, v) in m {
                let Some(n) = scalar(k) else { continue };
                let p = key(path, &n);
                let mut required = true;
                if let Some(opts) = v.as_mapping() {
                    check_keys(ctx, svc, &p, opts, &["condition", "required", "restart"], &[]);
                    if let Some(c) = opts.get("condition") {
                        let c = scalar(c).unwrap_or_default();
                        if c != "service_started" {
                            let msg = if matches!(
                                c.as_str(),
                                "service_healthy" | "service_completed_successfully"
                            ) {
                                format!("condition {c} is not supported by this release yet (service_started)")
                            } else {
                                format!("condition {c:?} must be service_started, service_healthy or service_completed_successfully")
                            };
                            ctx.err(svc, &key(&p, "condition"), msg);
                        }
                    }
                    if let Some(r) = opts.get("required") {
                        required = boolean(ctx, svc, &key(&p, "required"), r).unwrap_or(true);
                    }
                    if let Some(r) = opts.get("restart") {
                        boolean(ctx, svc, &key(&p, "restart"), r);
                    }
                } else if !v.is_null() {
                    ctx.err(svc, &p, format!("must be a mapping, not {}", type_name(v)));
                }
                check(ctx, n, p, required);
            }
        }
        other => ctx.err(svc, path, format!("must be a list or a mapping, not {}", type_name(other))),
    }
    out
}

/// A `depends_on` cycle is an error naming the services in it.
fn check_cycles(ctx: &mut Ctx, services_path: &[Seg], built: &[Service]) {
    let deps: BTreeMap<&str, &[String]> = built
        .iter()
        .map(|s| (s.spec.service.as_str(), s.spec.depends_on.as_slice()))
        .collect();
    let mut state: BTreeMap<&str, u8> = BTreeMap::new(); // 1 visiting, 2 done
    fn visit<'a>(
        n: &'a str,
        deps: &BTreeMap<&'a str, &'a [String]>,
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
        for d in deps.get(n).copied().unwrap_or(&[]) {
            if let Some(c) = visit(d.as_str(), deps, state, stack) {
                return Some(c);
            }
        }
        stack.pop();
        state.insert(n, 2);
        None
    }
    for s in deps.keys() {
        if let Some(cycle) = visit(s, &deps, &mut state, &mut Vec::new()) {
            let first = cycle[0].clone();
            ctx.err(
                Some(&first),
                &key(&key(services_path, &first), "depends_on"),
                format!("dependency cycle: {}", cycle.join(" -> ")),
            );
            return;
        }
    }
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
    fn shell_words() {
        assert_eq!(
            shell_split(r#"sh -c 'echo "a b"' "x\"y" z\ w"#).unwrap(),
            vec!["sh", "-c", "echo \"a b\"", "x\"y", "z w"]
        );
        assert!(shell_split("echo 'open").is_err());
        assert_eq!(shell_split("  ").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn short_volumes() {
        assert_eq!(
            parse_volume_short("./conf:/etc/app:ro").unwrap(),
            ("bind".into(), "./conf".into(), "/etc/app".into(), true)
        );
        assert_eq!(parse_volume_short("data:/data").unwrap().0, "volume");
        assert_eq!(parse_volume_short("/data").unwrap().1, "");
        assert!(parse_volume_short("a:/b:z").is_err());
    }
}
