//! Converting one stack: its merged, interpolated compose document → [`StackSpec`].
//!
//! This is where Compose's many spellings (lists or maps, short or long syntax, strings or numbers),
//! normalised by the layers below, come together, so the spec hash sees one canonical form. Every
//! problem is collected with its key path; the caller turns paths into file and line. Here: the top
//! level's keys, the services table, profiles, replicas, and the bounds on a stack's size (services,
//! containers, port bindings); the top-level tables are in `compose`, one service in `service`.
//!
//! Layer: conversion (the top of conversion; only the entry point in `mod.rs` is above it).

use super::budget::Budget;
use super::compose::{top_networks, top_secrets, top_volumes, Net, Vol};
use super::input::StackInput;
use super::lines::Seg;
use super::service::{self, Service};
use super::values::*;
use crate::model::{Condition, ContainerSpec, NetworkSpec, StackSpec, VolumeSpec};
use serde_yaml::{Mapping, Value};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};

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
    let Some(top) = top_level(&mut ctx, input.doc) else {
        problems.append(&mut ctx.problems);
        return None;
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
    let services = services_table(&mut ctx, &services_path, top.get("services"));
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

    let mut built: Vec<Service> = Vec::new();
    for (name, m) in &services {
        let path = key(&services_path, name);
        if let Some(s) = service::service(&mut ctx, input, name, &path, m, &names, &refs) {
            built.push(s);
        }
    }
    enable_profiles(&mut ctx, &services_path, input.env, &mut built);
    check_cycles(&mut ctx, &services_path, &built);
    check_size(&mut ctx, &services_path, &built);
    let (containers, used_networks) = containers(&stack, &built);

    let (net_specs, vol_specs) = created(&networks, &volumes, &used_networks);

    warnings.append(&mut ctx.warnings);
    if !ctx.problems.is_empty() {
        problems.append(&mut ctx.problems);
        return None;
    }
    Some(StackSpec {
        name: stack,
        dir: input.dir.display().to_string(),
        containers,
        networks: net_specs,
        volumes: vol_specs,
    })
}

/// The document's top level: a mapping (`null` is an empty one).
fn top_level(ctx: &mut Ctx, doc: &Value) -> Option<Mapping> {
    match doc {
        Value::Mapping(m) => Some(m.clone()),
        Value::Null => Some(Mapping::new()),
        other => {
            ctx.err(
                None,
                &[],
                format!("a compose file must be a mapping, not {}", type_name(other)),
            );
            None
        }
    }
}

/// The networks and volumes a stack creates, sorted by name: those declared and not external; the
/// `default` network only when a container uses it (as Compose creates it implicitly).
fn created(
    networks: &BTreeMap<String, Net>,
    volumes: &BTreeMap<String, Vol>,
    used_networks: &BTreeSet<String>,
) -> (Vec<NetworkSpec>, Vec<VolumeSpec>) {
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
    net_specs.sort_by(|a, b| a.name.cmp(&b.name));
    vol_specs.sort_by(|a, b| a.name.cmp(&b.name));
    (net_specs, vol_specs)
}

/// The `services:` table: each service's name (checked) and mapping (`null` is an empty one).
fn services_table(
    ctx: &mut Ctx,
    services_path: &[Seg],
    v: Option<&Value>,
) -> Vec<(String, Mapping)> {
    match v {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => match as_map(ctx, None, services_path, v) {
            Some(m) => m
                .iter()
                .filter_map(|(k, v)| {
                    let name = scalar(k)?;
                    let p = key(services_path, &name);
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
    }
}

/// Every service is checked, active or not; only those of active profiles are deployed (Compose reads
/// COMPOSE_PROFILES from the environment or the stack's .env). A dependency on a service left out is
/// dropped, or is a problem when it is required.
fn enable_profiles(
    ctx: &mut Ctx,
    services_path: &[Seg],
    env: &BTreeMap<String, String>,
    built: &mut Vec<Service>,
) {
    let active_profiles: BTreeSet<String> = env
        .get("COMPOSE_PROFILES")
        .map(|p| {
            p.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
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
    for s in built.iter_mut() {
        let svc = s.spec.service.clone();
        let mut kept = Vec::new();
        for d in std::mem::take(&mut s.spec.depends_on) {
            if enabled.contains(&d.service) {
                kept.push(d);
            } else if s.required.contains(&d.service) {
                ctx.err(
                    Some(&svc),
                    &key(&key(&key(services_path, &svc), "depends_on"), &d.service),
                    format!(
                        "service {:?} is not enabled: its profiles are not in COMPOSE_PROFILES",
                        d.service
                    ),
                );
            }
        }
        s.spec.depends_on = kept;
    }
}

/// The containers of a stack, sorted by name, and the networks they use: each service's spec once per
/// replica, named, with its own name as an alias and its `links` on every network.
fn containers(stack: &str, built: &[Service]) -> (Vec<ContainerSpec>, BTreeSet<String>) {
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
    for s in built {
        let spec = shared_spec(s, &jobs, &hashes, &first_container);
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
            let endpoint_links = super::networks::endpoint_links(stack, r, &s.links, &names_of);
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
    (containers, used_networks)
}

/// The spec a service's containers share: whether it is a one-shot job, and what joining another
/// service's namespace makes of it.
fn shared_spec(
    s: &Service,
    jobs: &BTreeSet<String>,
    hashes: &BTreeMap<String, String>,
    first_container: &BTreeMap<String, String>,
) -> ContainerSpec {
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
    spec
}

fn valid_service_name(n: &str) -> bool {
    n.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
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
