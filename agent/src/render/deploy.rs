//! A service's `deploy` (replicas, resources, restart policy) and the resource limits read with it
//! (`ulimits`, `pids_limit`): every count is bounded; Swarm-only keys are accepted and ignored with a
//! warning, as Compose ignores them.
//!
//! Layer: service sections (see the table in `render`).

use super::lines::{KeyPath, Seg};
use super::numbers::{bytes, cpus, duration, int_in};
use super::values::*;
use crate::model::{ContainerSpec, UlimitSpec};
use serde_yaml::{Mapping, Value};

/// The most containers one service may run (`scale`, `deploy.replicas`). An edge box running more of
/// one service is a mistake more likely than a plan, and every replica is a container to create.
pub(super) const MAX_REPLICAS: u32 = 100;

/// Linux's largest `pid_max` (`PID_MAX_LIMIT`, 2^22): no pids limit above it means anything.
pub(super) const MAX_PIDS: i64 = 4_194_304;

/// `scale` / `deploy.replicas`: 0 to [`MAX_REPLICAS`].
pub(super) fn replica_count(ctx: &mut Ctx, service: &str, path: &[Seg], v: &Value) -> Option<u32> {
    let n = int_in(ctx, Some(service), path, v, 0, i64::from(MAX_REPLICAS))?;
    u32::try_from(n).ok()
}

/// `deploy` keys that only Swarm acts on. Compose accepts them and ignores them on a single engine;
/// so does berth, with a warning.
const SWARM_ONLY: &[&str] = &[
    "labels",
    "placement",
    "update_config",
    "rollback_config",
    "endpoint_mode",
];

/// `deploy`: replicas, resources (limits, reservations), restart_policy. Swarm-only keys
/// ([`SWARM_ONLY`], a `mode` other than `replicated`) are accepted and ignored with a warning, as Compose ignores them.
pub(super) fn deploy(
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
    let mut known = vec!["replicas", "resources", "restart_policy", "mode"];
    known.extend_from_slice(SWARM_ONLY);
    check_keys(ctx, svc, path, d, &known, &[]);
    swarm_only(ctx, svc, path, d);
    deploy_mode(ctx, svc, path, d);
    if let Some(r) = d.get("replicas").filter(|v| !v.is_null()) {
        deploy_replicas(ctx, service, &key(path, "replicas"), r, replicas);
    }
    if let Some(r) = d.get("resources").filter(|v| !v.is_null()) {
        resources(ctx, svc, &key(path, "resources"), r, spec);
    }
    if let Some(r) = d.get("restart_policy").filter(|v| !v.is_null()) {
        restart_policy(ctx, svc, &key(path, "restart_policy"), r, spec, has_restart);
    }
}

/// Warns on each [`SWARM_ONLY`] key set in `deploy`.
fn swarm_only(ctx: &mut Ctx, svc: Option<&str>, path: &[Seg], d: &Mapping) {
    for k in SWARM_ONLY {
        if d.get(*k).is_some_and(|v| !v.is_null()) {
            ctx.warn(
                svc,
                &key(path, k),
                "is a Swarm setting; ignored on a single engine, as Compose does",
            );
        }
    }
}

/// `deploy.mode`: warns on any mode but `replicated`.
fn deploy_mode(ctx: &mut Ctx, svc: Option<&str>, path: &[Seg], d: &Mapping) {
    // Compose runs every mode (`global`, the `-job` ones, any other word) as `replicated`: `replicas`
    // containers, or one.
    if let Some(mode) = d.get("mode").filter(|v| !v.is_null()) {
        let mp = key(path, "mode");
        if let Some(mode) = string(ctx, svc, &mp, mode) {
            if mode != "replicated" {
                ctx.warn(
                    svc,
                    &mp,
                    "is a Swarm mode; run as `replicated` on a single engine, as Compose does",
                );
            }
        }
    }
}

/// `deploy.replicas`: bounded, and must agree with a `scale` read before it.
fn deploy_replicas(
    ctx: &mut Ctx,
    service: &str,
    rp: &[Seg],
    r: &Value,
    replicas: &mut Option<(u32, KeyPath)>,
) {
    if let Some(n) = replica_count(ctx, service, rp, r) {
        if let Some((other, op)) = replicas.as_ref() {
            if *other != n {
                ctx.err(
                    Some(service),
                    rp,
                    format!(
                        "{n} replicas, but {} says {other}",
                        super::lines::display(op)
                    ),
                );
            }
        }
        *replicas = Some((n, rp.to_vec()));
    }
}

/// `deploy.resources`: its `limits` then its `reservations`.
fn resources(ctx: &mut Ctx, svc: Option<&str>, rp: &[Seg], r: &Value, spec: &mut ContainerSpec) {
    let Some(rm) = as_map(ctx, svc, rp, r) else {
        return;
    };
    check_keys(ctx, svc, rp, rm, &["limits", "reservations"], &[]);
    if let Some(l) = rm.get("limits").filter(|v| !v.is_null()) {
        limits(ctx, svc, &key(rp, "limits"), l, spec);
    }
    if let Some(r) = rm.get("reservations").filter(|v| !v.is_null()) {
        reservations(ctx, svc, &key(rp, "reservations"), r, spec);
    }
}

/// `deploy.resources.limits`: cpus, memory, pids.
fn limits(ctx: &mut Ctx, svc: Option<&str>, lp: &[Seg], l: &Value, spec: &mut ContainerSpec) {
    let Some(lm) = as_map(ctx, svc, lp, l) else {
        return;
    };
    // `limits.devices` is not a Compose key either: an unknown key, as Compose says.
    check_keys(ctx, svc, lp, lm, &["cpus", "memory", "pids"], &[]);
    if let Some(v) = lm.get("cpus") {
        spec.nano_cpus = cpus(ctx, svc, &key(lp, "cpus"), v);
    }
    if let Some(v) = lm.get("memory") {
        spec.memory = bytes(ctx, svc, &key(lp, "memory"), v);
    }
    if let Some(v) = lm.get("pids") {
        spec.pids_limit = pids(ctx, svc, &key(lp, "pids"), v);
    }
}

/// `deploy.resources.reservations`: memory is passed on; cpus is checked; generic resources warn.
fn reservations(ctx: &mut Ctx, svc: Option<&str>, lp: &[Seg], r: &Value, spec: &mut ContainerSpec) {
    let Some(lm) = as_map(ctx, svc, lp, r) else {
        return;
    };
    check_keys(
        ctx,
        svc,
        lp,
        lm,
        &["cpus", "memory", "generic_resources"],
        &["devices"],
    );
    // Swarm's generic resources only steer Swarm's scheduler: Compose ignores them.
    if lm.get("generic_resources").is_some_and(|v| !v.is_null()) {
        ctx.warn(
            svc,
            &key(lp, "generic_resources"),
            "is a Swarm setting; ignored on a single engine, as Compose does",
        );
    }
    if let Some(v) = lm.get("memory") {
        spec.memory_reservation = bytes(ctx, svc, &key(lp, "memory"), v);
    }
    // A CPU reservation is a Swarm scheduling hint; Compose checks it and passes nothing.
    if let Some(v) = lm.get("cpus") {
        cpus(ctx, svc, &key(lp, "cpus"), v);
    }
}

/// `deploy.restart_policy`: mapped onto the engine's policy unless `restart:` is set.
fn restart_policy(
    ctx: &mut Ctx,
    svc: Option<&str>,
    rp: &[Seg],
    r: &Value,
    spec: &mut ContainerSpec,
    has_restart: bool,
) {
    let Some(rm) = as_map(ctx, svc, rp, r) else {
        return;
    };
    check_keys(
        ctx,
        svc,
        rp,
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
        .filter(|v| !v.is_null())
        .and_then(|v| {
            int_in(
                ctx,
                svc,
                &key(rp, "max_attempts"),
                v,
                0,
                i64::from(u32::MAX),
            )
        });
    for k in ["delay", "window"] {
        if let Some(v) = rm.get(k) {
            duration(ctx, svc, &key(rp, k), v);
        }
    }
    let policy = engine_policy(ctx, svc, rp, &condition, attempts);
    // `restart:` wins when both are set, as in Compose.
    if let (Some(p), false) = (policy, has_restart) {
        spec.restart = p;
    }
}

/// Compose's mapping of a restart condition onto the engine's policies (`mapRestartPolicyCondition`).
fn engine_policy(
    ctx: &mut Ctx,
    svc: Option<&str>,
    rp: &[Seg],
    condition: &str,
    attempts: Option<i64>,
) -> Option<String> {
    match condition {
        "none" | "no" => Some("no".to_string()),
        "any" | "always" => Some("always".to_string()),
        "unless-stopped" => Some("unless-stopped".to_string()),
        "on-failure" => Some(match attempts {
            Some(n) if n > 0 => format!("on-failure:{n}"),
            _ => "on-failure".to_string(),
        }),
        _ => {
            ctx.err(
                svc,
                &key(rp, "condition"),
                "must be none, on-failure, any or unless-stopped",
            );
            None
        }
    }
}

/// `pids_limit` / `deploy.resources.limits.pids`: -1 or 0 (no limit) up to the kernel's largest
/// `pid_max`.
pub(super) fn pids(ctx: &mut Ctx, service: Option<&str>, path: &[Seg], v: &Value) -> Option<i64> {
    int_in(ctx, service, path, v, -1, MAX_PIDS)
}

/// `ulimits`: a number (soft and hard alike) or `{soft, hard}`; -1 is unlimited, and the soft limit
/// may not exceed the hard one.
pub(super) fn ulimits(ctx: &mut Ctx, service: &str, path: &[Seg], v: &Value) -> Vec<UlimitSpec> {
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
                let (Some(soft), Some(hard)) = (lm.get("soft"), lm.get("hard")) else {
                    ctx.err(svc, &p, "needs both `soft` and `hard`");
                    continue;
                };
                let soft = int_in(ctx, svc, &key(&p, "soft"), soft, -1, i64::MAX);
                let hard = int_in(ctx, svc, &key(&p, "hard"), hard, -1, i64::MAX);
                match (soft, hard) {
                    (Some(s), Some(h)) => (s, h),
                    _ => continue,
                }
            }
            other => match int_in(ctx, svc, &p, other, -1, i64::MAX) {
                Some(n) => (n, n),
                None => continue,
            },
        };
        // -1 is unlimited: above every number.
        let unlimited = |n: i64| if n == -1 { u64::MAX } else { n.unsigned_abs() };
        if unlimited(soft) > unlimited(hard) {
            ctx.err(svc, &p, "the soft limit is above the hard limit");
            continue;
        }
        out.push(UlimitSpec { name, soft, hard });
    }
    out.sort();
    out
}
