//! The cgroup and namespace keys of a service that Compose hands to the engine as they are
//! (`mem_swappiness`, `cpu_period`, `cpu_quota`, `cpu_rt_period`, `cpu_rt_runtime`, `cpu_count`,
//! `cpu_percent`, `cgroup_parent`, `cgroup`, `uts`, `isolation`), and the keys that only matter to a
//! Compose attached to its containers or watching files (`attach`, `develop`): read, checked, no effect.

use super::lines::Seg;
use super::numbers::int_in;
use super::values::*;
use crate::model::ContainerSpec;
use serde_yaml::{Mapping, Value};

/// The service keys this module reads.
pub(super) const CGROUP_KEYS: &[&str] = &[
    "mem_swappiness",
    "cpu_period",
    "cpu_quota",
    "cpu_rt_period",
    "cpu_rt_runtime",
    "cpu_count",
    "cpu_percent",
    "cgroup_parent",
    "cgroup",
    "uts",
    "isolation",
    "attach",
    "develop",
];

/// Read the keys of [`CGROUP_KEYS`] from a service's mapping into `spec`, with the ranges the kernel
/// and the engine accept (microseconds for periods, quotas and runtimes), so a wrong value is a render
/// problem at its line rather than a failed container create.
pub(super) fn cgroup_keys(
    ctx: &mut Ctx,
    service: &str,
    path: &[Seg],
    m: &Mapping,
    spec: &mut ContainerSpec,
) {
    let svc = Some(service);
    let get = |k: &str| m.get(k).filter(|v| !v.is_null());
    let int = |ctx: &mut Ctx, k: &str, min: i64, max: i64| {
        get(k).and_then(|v| int_in(ctx, svc, &key(path, k), v, min, max))
    };

    // Compose sends `MemorySwappiness` only when it is not 0 (`getDeployResources`): 0 leaves the
    // engine's default, and berth does the same so both make the same container.
    spec.mem_swappiness = int(ctx, "mem_swappiness", 0, 100).filter(|n| *n != 0);
    // CFS: the kernel takes a period of 1ms to 1s and a quota of at least 1ms (-1: no quota); 0 is the
    // engine's default for both.
    spec.cpu_period = int(ctx, "cpu_period", 0, 1_000_000);
    if spec.cpu_period.is_some_and(|p| p != 0 && p < 1_000) {
        ctx.err(
            svc,
            &key(path, "cpu_period"),
            "must be 0 or between 1000 and 1000000 (microseconds)",
        );
    }
    spec.cpu_quota = int(ctx, "cpu_quota", -1, i64::MAX);
    if spec.cpu_quota.is_some_and(|q| q > 0 && q < 1_000) {
        ctx.err(
            svc,
            &key(path, "cpu_quota"),
            "must be -1, 0 or at least 1000 (microseconds)",
        );
    }
    // Realtime scheduling, in microseconds as this Compose reads them (whole numbers).
    spec.cpu_rt_period = int(ctx, "cpu_rt_period", 0, 1_000_000);
    spec.cpu_rt_runtime = int(ctx, "cpu_rt_runtime", -1, 1_000_000);
    // Windows settings a Linux engine keeps (count) or discards with a warning (percent); Compose sends
    // the percentage multiplied by 100, and so does berth.
    spec.cpu_count = int(ctx, "cpu_count", 0, 1024);
    spec.cpu_percent = int(ctx, "cpu_percent", 0, 100).map(|p| p * 100);

    let text = |ctx: &mut Ctx, k: &str| get(k).and_then(|v| string(ctx, svc, &key(path, k), v));
    spec.cgroup_parent = text(ctx, "cgroup_parent").filter(|p| !p.is_empty());
    spec.cgroupns = text(ctx, "cgroup").filter(|c| {
        let ok = matches!(c.as_str(), "host" | "private");
        if !ok {
            ctx.err(svc, &key(path, "cgroup"), "must be `host` or `private`");
        }
        ok
    });
    spec.uts = text(ctx, "uts").filter(|u| {
        let ok = u == "host";
        if !ok {
            ctx.err(
                svc,
                &key(path, "uts"),
                "must be `host` (the container's own UTS namespace is the default)",
            );
        }
        ok
    });
    if spec.uts.is_some() && spec.hostname.is_some() {
        ctx.err(
            svc,
            &key(path, "uts"),
            "cannot be `host` with a `hostname` (the engine refuses both together)",
        );
    }
    spec.isolation = text(ctx, "isolation").filter(|i| {
        let ok = i == "default";
        if !ok {
            ctx.err(
                svc,
                &key(path, "isolation"),
                "must be `default`: `process` and `hyperv` are Windows isolation, which a Linux engine refuses",
            );
        }
        ok
    });

    // `attach: false` keeps a service's logs out of an attached `compose up`; berth never attaches.
    if let Some(v) = get("attach") {
        boolean(ctx, svc, &key(path, "attach"), v);
    }
    // `develop` configures `compose watch`; `up` does not read it, and berth follows Git instead.
    if let Some(v) = get("develop") {
        if !matches!(v, Value::Mapping(_)) {
            ctx.err(
                svc,
                &key(path, "develop"),
                format!("must be a mapping, not {}", type_name(v)),
            );
        }
    }
}
