//! A service's `networks` (list or map with aliases, addresses, priority) → network attachments, its
//! legacy `links` (as Compose v2 maps them onto each endpoint's `Links`), and its `extra_hosts`.
//!
//! Layer: service sections (see the table in `render`).

use super::compose::Net;
use super::lines::{KeyPath, Seg};
use super::numbers::int_in;
use super::values::*;
use crate::model::NetworkAttachment;
use serde_yaml::Value;
use std::collections::{BTreeMap, BTreeSet};

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
        links: Vec::new(),
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
                            att.priority = int_in(
                                ctx,
                                svc,
                                &key(&p, "priority"),
                                v,
                                i64::from(i32::MIN),
                                i64::from(i32::MAX),
                            )
                            .unwrap_or(0);
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

/// One `links:` entry: the linked service and the name it is reached by (the service's own name
/// when no alias is given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Link {
    pub service: String,
    pub alias: String,
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
            });
        }
    }
    out
}

/// The endpoint `Links` Compose v2 gives replica `replica` of a service in stack `stack`
/// (`getLinks` in its `create.go`): for each link, for each container of the linked service (newest
/// first, as the engine lists them), `<container>:<alias>`, `<container>:<service>-<replica>` and
/// `<container>:<stack>-<service>-<replica>` — the number is the linking container's own, as in
/// Compose. `containers` gives each service's container names in replica order.
pub(super) fn endpoint_links(
    stack: &str,
    replica: u32,
    links: &[Link],
    containers: &BTreeMap<String, Vec<String>>,
) -> Vec<String> {
    let mut out = Vec::new();
    for l in links {
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
