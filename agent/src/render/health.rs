//! A service's `healthcheck` (test, bounded intervals in the engine's nanoseconds, retries) and its
//! `depends_on` (the services and conditions, such as healthy, it waits for).
//!
//! Layer: service sections (see the table in `render`).

use super::lines::{KeyPath, Seg};
use super::numbers::{duration, duration_nanos, int_in, NumberError};
use super::values::*;
use crate::model::{Condition, Dependency, HealthcheckSpec};
use serde_yaml::Value;
use std::collections::BTreeSet;

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
    // The engine takes int64 nanoseconds, 0 for its default or at least 1ms.
    let ns = |ctx: &mut Ctx, k: &str| -> i64 {
        let Some(v) = m.get(k).filter(|v| !v.is_null()) else {
            return 0;
        };
        let p = key(path, k);
        let nanos = duration(ctx, svc, &p, v).map(duration_nanos);
        match nanos {
            Some(Ok(n)) if n == 0 || n >= 1_000_000 => n,
            Some(Ok(_)) => {
                ctx.err(svc, &p, NumberError::DurationTooShort);
                0
            }
            Some(Err(e)) => {
                ctx.err(svc, &p, e);
                0
            }
            None => 0,
        }
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
            .and_then(|v| int_in(ctx, svc, &key(path, "retries"), v, 0, i64::from(i32::MAX)))
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
                                    "must be service_started, service_healthy or service_completed_successfully",
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

/// A dependency on `service` being started: what `links`, a joined namespace and a `depends_on` entry
/// without a condition wait for.
pub(super) fn started(service: &str) -> Dependency {
    Dependency {
        service: service.to_string(),
        condition: Condition::ServiceStarted,
        restart: false,
    }
}
