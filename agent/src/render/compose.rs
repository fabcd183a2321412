//! The top level of a compose file: the `networks`, `volumes`, `secrets` and `configs` tables a stack
//! defines (engine names, `external`, IPAM, sources of secrets and configs) and `labels`, read into the
//! definitions services refer to.
//!
//! Layer: top-level tables (under the service sections, `service` and `convert`).

use super::input::StackInput;
use super::lines::Seg;
use super::tree::{join_rel, resolve};
use super::values::*;
use crate::model::{IpamPool, IpamSpec, NetworkSpec, VolumeSpec};
use serde_yaml::{Mapping, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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

pub(super) fn top_networks(ctx: &mut Ctx, stack: &str, v: Option<&Value>) -> BTreeMap<String, Net> {
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

pub(super) fn top_volumes(ctx: &mut Ctx, stack: &str, v: Option<&Value>) -> BTreeMap<String, Vol> {
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
pub(super) fn top_secrets(
    ctx: &mut Ctx,
    input: &StackInput,
    section: &str,
    v: Option<&Value>,
) -> BTreeMap<String, Secret> {
    let mut out = BTreeMap::new();
    for (name, p, def) in definitions(ctx, section, v) {
        let Some(source) = secret_source(ctx, input, section, &p, &def) else {
            continue;
        };
        let _ = labels(ctx, None, &key(&p, "labels"), def.get("labels"));
        out.insert(name, Secret { source });
    }
    out
}

/// The string at `def.k` (a problem if it is not one); `None` when absent or null.
fn def_string(ctx: &mut Ctx, p: &[Seg], def: &Mapping, k: &str) -> Option<String> {
    def.get(k)
        .filter(|v| !v.is_null())
        .and_then(|v| string(ctx, None, &key(p, k), v))
}

/// One secret or config's keys checked, and its one source read.
fn secret_source(
    ctx: &mut Ctx,
    input: &StackInput,
    section: &str,
    p: &[Seg],
    def: &Mapping,
) -> Option<SecretSource> {
    let keys: &[&str] = if section == "configs" {
        &["file", "environment", "content", "name", "labels"]
    } else {
        &["file", "environment", "name", "labels"]
    };
    check_keys(
        ctx,
        None,
        p,
        def,
        keys,
        &["external", "driver", "driver_opts", "template_driver"],
    );
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
        ctx.err(None, p, format!("set exactly one of {allowed}"));
        return None;
    }
    match sources[0] {
        "file" => file_source(ctx, input, section, p, def),
        "environment" => env_source(ctx, input, p, def),
        _ => def_string(ctx, p, def, "content").map(SecretSource::Content),
    }
}

/// A `file` source: relative, inside the repository, and a file there (symlinks resolved).
fn file_source(
    ctx: &mut Ctx,
    input: &StackInput,
    section: &str,
    p: &[Seg],
    def: &Mapping,
) -> Option<SecretSource> {
    let file = def_string(ctx, p, def, "file")?;
    if Path::new(&file).is_absolute() {
        ctx.err(
            None,
            &key(p, "file"),
            format!("{file}: a {section} file must be inside the repository"),
        );
        return None;
    }
    let Some(rel) = join_rel(&input.dir, Path::new(&file)) else {
        ctx.err(
            None,
            &key(p, "file"),
            format!("{file} climbs out of the repository"),
        );
        return None;
    };
    match resolve(input.tree, &rel) {
        Ok(r) => match input.tree.kind(&r) {
            Ok(Some(super::EntryKind::File)) => Some(SecretSource::File(r)),
            _ => {
                ctx.err(
                    None,
                    &key(p, "file"),
                    format!("{} is not a file in the repository", rel.display()),
                );
                None
            }
        },
        Err(e) => {
            ctx.err(None, &key(p, "file"), e);
            None
        }
    }
}

/// An `environment` source: the variable must be set (the agent's environment or the stack's .env).
fn env_source(ctx: &mut Ctx, input: &StackInput, p: &[Seg], def: &Mapping) -> Option<SecretSource> {
    let var = def_string(ctx, p, def, "environment")?;
    match input.env.get(&var) {
        // From the agent's environment: read again when the container is created, only
        // a digest kept here.
        Some(value) if input.agent_env.contains_key(&var) => Some(SecretSource::Env {
            digest: crate::model::hex(&Sha256::digest(value.as_bytes())),
            var,
        }),
        // From the stack's .env: it is in the repository already.
        Some(value) => Some(SecretSource::Content(value.clone())),
        None => {
            ctx.err(
                None,
                &key(p, "environment"),
                format!("variable {var} is not set"),
            );
            None
        }
    }
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
