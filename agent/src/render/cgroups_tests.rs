//! The cgroup and namespace keys Compose passes to the engine as they are (`render/cgroups.rs`),
//! `blkio_config`, and `attach`/`develop`, accepted without effect.

use super::*;

fn render_text(text: &str) -> Result<DesiredState, RenderError> {
    render_compose_text(text).0
}

fn problems(text: &str) -> Vec<String> {
    match render_text(text) {
        Ok(d) => panic!("expected problems, rendered {d:?}"),
        Err(e) => e.problems.iter().map(|p| p.to_string()).collect(),
    }
}

#[test]
fn cgroup_and_namespace_keys_reach_the_spec_as_compose_sends_them() {
    let d = render_text(
        r#"
services:
  app:
    image: busybox
    mem_swappiness: 10
    cpu_period: 100000
    cpu_quota: 50000
    cpu_rt_period: 1000000
    cpu_rt_runtime: 950000
    cpu_count: 2
    cpu_percent: 50
    cgroup_parent: edge.slice
    cgroup: private
    uts: host
    isolation: default
    attach: false
    develop:
      watch:
        - {action: sync, path: ./src, target: /src}
  zero:
    image: busybox
    mem_swappiness: 0
"#,
    )
    .unwrap();
    let app = d.containers().find(|c| c.name == "edge-app-1").unwrap();
    assert_eq!(app.mem_swappiness, Some(10));
    assert_eq!(app.cpu_period, Some(100_000));
    assert_eq!(app.cpu_quota, Some(50_000));
    assert_eq!(app.cpu_rt_period, Some(1_000_000));
    assert_eq!(app.cpu_rt_runtime, Some(950_000));
    assert_eq!(app.cpu_count, Some(2));
    // Compose multiplies the percentage by 100 (`getDeployResources`).
    assert_eq!(app.cpu_percent, Some(5_000));
    assert_eq!(app.cgroup_parent.as_deref(), Some("edge.slice"));
    assert_eq!(app.cgroupns.as_deref(), Some("private"));
    assert_eq!(app.uts.as_deref(), Some("host"));
    assert_eq!(app.isolation.as_deref(), Some("default"));
    // Compose never sends a swappiness of 0: the engine's default applies.
    let zero = d.containers().find(|c| c.name == "edge-zero-1").unwrap();
    assert_eq!(zero.mem_swappiness, None);
    // A spec without the keys hashes as before they existed.
    assert!(!zero.canonical_json().contains("cpu_period"));
}

#[test]
fn cgroup_keys_out_of_the_kernels_ranges_are_problems_at_their_line() {
    let p = problems(
        r#"
services:
  app:
    image: busybox
    mem_swappiness: 101
    cpu_period: 500
    cpu_quota: 10
    cgroup: shared
    uts: private
    isolation: hyperv
    attach: maybe
    develop: [watch]
"#,
    );
    let all = p.join("\n");
    let host =
        problems("services:\n  app:\n    image: busybox\n    hostname: box\n    uts: host\n");
    assert!(
        host.iter()
            .any(|p| p.contains("uts: cannot be `host` with a `hostname`")),
        "{host:?}"
    );
    for want in [
        "compose.yaml:5: stack edge, service app: services.app.mem_swappiness: must be between 0 and 100",
        "compose.yaml:6: stack edge, service app: services.app.cpu_period: must be 0 or between 1000 and 1000000",
        "compose.yaml:7: stack edge, service app: services.app.cpu_quota: must be -1, 0 or at least 1000",
        "services.app.cgroup: must be `host` or `private`",
        "services.app.uts: must be `host`",
        "services.app.isolation: must be `default`: `process` and `hyperv` are Windows isolation",
        "services.app.attach:",
        "services.app.develop: must be a mapping, not a list",
    ] {
        assert!(all.contains(want), "missing {want:?} in\n{all}");
    }
    assert_eq!(p.len(), 8, "{all}");
}

#[test]
fn blkio_config_reads_weights_and_rates_like_compose() {
    let d = render_text(
        r#"
services:
  app:
    image: busybox
    blkio_config:
      weight: 300
      weight_device: [{path: /dev/sda, weight: 400}]
      device_read_bps: [{path: /dev/sda, rate: 12mb}]
      device_write_bps: [{path: /dev/sda, rate: "1024k"}]
      device_read_iops: [{path: /dev/sda, rate: 120}]
      device_write_iops: [{path: /dev/sda, rate: 30}]
"#,
    )
    .unwrap();
    let b = d.containers().next().unwrap().blkio.clone().unwrap();
    let one = |rate: i64| {
        vec![crate::model::DeviceRate {
            path: "/dev/sda".into(),
            rate,
        }]
    };
    assert_eq!(b.weight, Some(300));
    assert_eq!(b.weight_device, one(400));
    assert_eq!(b.device_read_bps, one(12 * 1024 * 1024));
    assert_eq!(b.device_write_bps, one(1024 * 1024));
    assert_eq!(b.device_read_iops, one(120));
    assert_eq!(b.device_write_iops, one(30));

    let p = problems(
        r#"
services:
  app:
    image: busybox
    blkio_config:
      weight: 5
      weight_device: [{path: sda, weight: 400}, {weight: 400}]
      device_read_bps: {path: /dev/sda}
      device_write_iops: [{path: /dev/sda, rate: fast}]
      device_reads: []
"#,
    );
    let all = p.join("\n");
    for want in [
        "services.app.blkio_config.weight: must be between 10 and 1000",
        "services.app.blkio_config.weight_device[0].path: must be an absolute device path",
        "services.app.blkio_config.weight_device[1]: `path` and `weight` are required",
        "services.app.blkio_config.device_read_bps: must be a list, not a mapping",
        "services.app.blkio_config.device_write_iops[0].rate: must be a size",
        "services.app.blkio_config.device_reads: unknown key",
    ] {
        assert!(all.contains(want), "missing {want:?} in\n{all}");
    }
    assert_eq!(p.len(), 6, "{all}");
}
