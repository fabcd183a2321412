//! The cgroup and namespace keys of a service that Compose hands to the engine as they are
//! (`mem_swappiness`, `cpu_period`, `cpu_quota`, `cpu_rt_period`, `cpu_rt_runtime`, `cpu_count`,
//! `cpu_percent`, `cgroup_parent`, `cgroup`, `uts`, `isolation`, `blkio_config`), and the keys that only matter to a
//! Compose attached to its containers or watching files (`attach`, `develop`): read, checked, no effect.
//!
//! Layer: service sections (see the table in `render`).

use super::lines::Seg;
use super::numbers::{bytes, int_in};
use super::values::*;
use crate::model::{BlkioSpec, ContainerSpec, DeviceRate};
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
    "blkio_config",
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

    if let Some(v) = get("blkio_config") {
        spec.blkio = blkio(ctx, service, &key(path, "blkio_config"), v);
    }

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

/// `blkio_config`: `weight` and per-device weights (10-1000), read/write rates in bytes (`12mb`) or
/// operations per second, each device an absolute host path.
fn blkio(ctx: &mut Ctx, service: &str, path: &[Seg], v: &Value) -> Option<BlkioSpec> {
    let svc = Some(service);
    let m = as_map(ctx, svc, path, v)?;
    let lists = [
        "weight_device",
        "device_read_bps",
        "device_write_bps",
        "device_read_iops",
        "device_write_iops",
    ];
    let mut known = vec!["weight"];
    known.extend(lists);
    check_keys(ctx, svc, path, m, &known, &[]);
    let weight = m
        .get("weight")
        .filter(|v| !v.is_null())
        .and_then(|w| int_in(ctx, svc, &key(path, "weight"), w, 10, 1000))
        .and_then(|w| u16::try_from(w).ok());
    let [weight_device, device_read_bps, device_write_bps, device_read_iops, device_write_iops] =
        lists.map(|k| device_rates(ctx, service, path, m, k));
    Some(BlkioSpec {
        weight,
        weight_device,
        device_read_bps,
        device_write_bps,
        device_read_iops,
        device_write_iops,
    })
}

/// One list of `blkio_config`: `{path, weight}` entries for `weight_device`, `{path, rate}` for the
/// others.
fn device_rates(
    ctx: &mut Ctx,
    service: &str,
    path: &[Seg],
    m: &Mapping,
    k: &str,
) -> Vec<DeviceRate> {
    let svc = Some(service);
    let Some(v) = m.get(k).filter(|v| !v.is_null()) else {
        return Vec::new();
    };
    let p = key(path, k);
    let Value::Sequence(items) = v else {
        ctx.err(svc, &p, format!("must be a list, not {}", type_name(v)));
        return Vec::new();
    };
    let field = if k == "weight_device" {
        "weight"
    } else {
        "rate"
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let ip = idx(&p, i);
        let Some(im) = as_map(ctx, svc, &ip, item) else {
            continue;
        };
        check_keys(ctx, svc, &ip, im, &["path", field], &[]);
        let device = im
            .get("path")
            .filter(|v| !v.is_null())
            .and_then(|v| string(ctx, svc, &key(&ip, "path"), v));
        let rate = im.get(field).filter(|v| !v.is_null()).and_then(|v| {
            let fp = key(&ip, field);
            if field == "weight" {
                int_in(ctx, svc, &fp, v, 10, 1000)
            } else {
                bytes(ctx, svc, &fp, v)
            }
        });
        match (device, rate) {
            (Some(d), Some(rate)) if d.starts_with('/') => out.push(DeviceRate { path: d, rate }),
            (Some(_), _)
                if !im
                    .get("path")
                    .and_then(Value::as_str)
                    .unwrap_or("/")
                    .starts_with('/') =>
            {
                ctx.err(
                    svc,
                    &key(&ip, "path"),
                    "must be an absolute device path like /dev/sda",
                )
            }
            (None, _) if im.get("path").is_none_or(Value::is_null) => {
                ctx.err(svc, &ip, format!("`path` and `{field}` are required"))
            }
            (_, None) if im.get(field).is_none_or(Value::is_null) => {
                ctx.err(svc, &ip, format!("`path` and `{field}` are required"))
            }
            // A value that could not be read is already a problem at its key.
            _ => {}
        }
    }
    out
}
