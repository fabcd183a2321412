//! A service's `networks` (list or map with aliases, addresses, priority) → network attachments, its
//! legacy `links` and `external_links` (as Compose v2 maps them onto each endpoint's `Links`), and its
//! `extra_hosts`.
//!
//! Layer: service sections (see the table in `render`).

use super::compose::Net;
use super::lines::{KeyPath, Seg};
use super::numbers::int_in;
use super::values::*;
use crate::model::NetworkAttachment;
use serde_yaml::{Mapping, Value};
use std::collections::{BTreeMap, BTreeSet};

/// A service's `networks` (absent: the default network) → its attachments, highest priority first.
pub(super) fn service_networks(
    ctx: &mut Ctx,
    service: &str,
    path: &[Seg],
    v: Option<&Value>,
    networks: &BTreeMap<String, Net>,
) -> Vec<NetworkAttachment> {
    let wanted = wanted_networks(ctx, service, path, v);
    attach(ctx, service, wanted, networks)
}

/// An attachment with no options, named `name`.
fn blank(name: String) -> NetworkAttachment {
    NetworkAttachment {
        name,
        aliases: Vec::new(),
        ipv4_address: None,
        ipv6_address: None,
        priority: 0,
        mac_address: None,
        links: Vec::new(),
    }
}

/// The networks a service names (list or map form), each with its options and key path.
fn wanted_networks(
    ctx: &mut Ctx,
    service: &str,
    path: &[Seg],
    v: Option<&Value>,
) -> Vec<(String, NetworkAttachment, KeyPath)> {
    let svc = Some(service);
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
                    Value::Mapping(opts) => attachment_options(ctx, svc, &p, opts, &mut att),
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
    wanted
}

/// One network's options in the map form: aliases, addresses, priority.
fn attachment_options(
    ctx: &mut Ctx,
    svc: Option<&str>,
    p: &[Seg],
    opts: &Mapping,
    att: &mut NetworkAttachment,
) {
    check_keys(
        ctx,
        svc,
        p,
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
        att.aliases = string_list(ctx, svc, &key(p, "aliases"), a, false);
    }
    let s = |ctx: &mut Ctx, k: &str| {
        opts.get(k)
            .filter(|v| !v.is_null())
            .and_then(|v| string(ctx, svc, &key(p, k), v))
    };
    att.ipv4_address = s(ctx, "ipv4_address");
    att.ipv6_address = s(ctx, "ipv6_address");
    att.mac_address = s(ctx, "mac_address");
    if let Some(v) = opts.get("priority").filter(|v| !v.is_null()) {
        att.priority = int_in(
            ctx,
            svc,
            &key(p, "priority"),
            v,
            i64::from(i32::MIN),
            i64::from(i32::MAX),
        )
        .unwrap_or(0);
    }
}

/// Each wanted network resolved against the top-level `networks:`, the service's name added to its
/// aliases; highest priority first, then by name, each network once.
fn attach(
    ctx: &mut Ctx,
    service: &str,
    wanted: Vec<(String, NetworkAttachment, KeyPath)>,
    networks: &BTreeMap<String, Net>,
) -> Vec<NetworkAttachment> {
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
                Some(service),
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

/// One `links:` entry: the linked service and the name it is reached by (the service's own name
/// when no alias is given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Link {
    /// A service of the stack, or for an external link a container outside it.
    pub service: String,
    pub alias: String,
    /// From `external_links`: the container is named as it is, not looked up among the stack's.
    pub external: bool,
}

/// `links: [svc, "svc:alias"]`: each service must be defined in the stack (Compose makes it a
/// dependency that must start first).
pub(super) fn links(
    ctx: &mut Ctx,
    service: &str,
    path: &[Seg],
    v: &Value,
    services: &BTreeSet<String>,
) -> Vec<Link> {
    let svc = Some(service);
    let mut out = Vec::new();
    for (i, entry) in string_list(ctx, svc, path, v, false)
        .into_iter()
        .enumerate()
    {
        let (peer, alias) = entry.split_once(':').unwrap_or((&entry, &entry));
        if peer.is_empty() || alias.is_empty() || alias.contains(':') {
            ctx.err(svc, &idx(path, i), "is not like service or service:alias");
        } else if peer == service {
            ctx.err(svc, &idx(path, i), "a service cannot link to itself");
        } else if !services.contains(peer) {
            ctx.err(
                svc,
                &idx(path, i),
                format!("service {peer:?} is not defined in this stack"),
            );
        } else {
            out.push(Link {
                service: peer.to_string(),
                alias: alias.to_string(),
                external: false,
            });
        }
    }
    out
}

/// `external_links: [container, "container:alias"]`: containers outside the stack (or outside berth),
/// linked by name as Compose does, without a dependency.
pub(super) fn external_links(ctx: &mut Ctx, service: &str, path: &[Seg], v: &Value) -> Vec<Link> {
    let svc = Some(service);
    let mut out = Vec::new();
    for (i, entry) in string_list(ctx, svc, path, v, false)
        .into_iter()
        .enumerate()
    {
        let (name, alias) = entry.split_once(':').unwrap_or((&entry, &entry));
        if name.is_empty() || alias.is_empty() || alias.contains(':') {
            ctx.err(
                svc,
                &idx(path, i),
                "is not like container or container:alias",
            );
        } else {
            out.push(Link {
                service: name.to_string(),
                alias: alias.to_string(),
                external: true,
            });
        }
    }
    out
}

/// The endpoint `Links` Compose v2 gives replica `replica` of a service in stack `stack`
/// (`getLinks` in its `create.go`): for each link, for each container of the linked service (newest
/// first, as the engine lists them), `<container>:<alias>`, `<container>:<service>-<replica>` and
/// `<container>:<stack>-<service>-<replica>` — the number is the linking container's own, as in
/// Compose. `containers` gives each service's container names in replica order. An external link is
/// `<container>:<alias>` as written.
pub(super) fn endpoint_links(
    stack: &str,
    replica: u32,
    links: &[Link],
    containers: &BTreeMap<String, Vec<String>>,
) -> Vec<String> {
    let mut out = Vec::new();
    for l in links {
        if l.external {
            out.push(format!("{}:{}", l.service, l.alias));
            continue;
        }
        for c in containers.get(&l.service).into_iter().flatten().rev() {
            out.push(format!("{c}:{}", l.alias));
            out.push(format!("{c}:{}-{replica}", l.service));
            out.push(format!("{c}:{stack}-{}-{replica}", l.service));
        }
    }
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
                        "is not like host=ip or host:ip",
                    ),
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}
