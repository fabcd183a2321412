//! Against the real engine (the test suite starts one and builds `berth-test/busybox:latest`).

use super::*;
use crate::apply::{converge, ApplyOptions, ApplyReport};
use crate::model::{DesiredState, MountKind, MountSpec, NetworkAttachment, StackSpec};
use crate::plan::plan;

async fn conv(rt: &DockerRuntime, d: &DesiredState, owner: &Owner) -> ApplyReport {
    converge(
        rt,
        d,
        owner,
        &mut Default::default(),
        // These tests end by converging nothing, to clean up.
        &ApplyOptions {
            allow_empty: true,
            ..Default::default()
        },
        &|_, _| {},
    )
    .await
    .expect("engine reachable")
    .1
}

fn spec(agent: &str, service: &str, env: &str) -> ContainerSpec {
    ContainerSpec {
        name: format!("{agent}-{service}-1"),
        stack: agent.into(),
        service: service.into(),
        replica: 1,
        image: "berth-test/busybox:latest".into(),
        command: Some(vec!["sleep".into(), "3600".into()]),
        env: vec![format!("E={env}")],
        init: Some(true),
        restart: "no".into(),
        networks: vec![NetworkAttachment {
            name: format!("{agent}_default"),
            aliases: vec![service.into()],
            ipv4_address: None,
            ipv6_address: None,
            priority: 0,
            mac_address: None,
            links: vec![],
        }],
        mounts: vec![MountSpec::new(
            MountKind::Volume,
            format!("{agent}_data"),
            "/data",
            false,
        )],
        ..Default::default()
    }
}

fn desired(agent: &str, containers: Vec<ContainerSpec>) -> DesiredState {
    let mut d = DesiredState::default();
    d.stacks.insert(
        agent.into(),
        StackSpec {
            name: agent.into(),
            dir: ".".into(),
            containers,
            networks: vec![NetworkSpec {
                name: format!("{agent}_default"),
                stack: agent.into(),
                ..Default::default()
            }],
            volumes: vec![VolumeSpec {
                name: format!("{agent}_data"),
                stack: agent.into(),
                ..Default::default()
            }],
        },
    );
    d
}

#[tokio::test]
async fn converge_recreate_and_remove_against_the_engine() {
    let agent = format!("unit-rt-{}", std::process::id());
    let rt = DockerRuntime::connect(None)
        .await
        .expect("a Docker engine (scripts/test.sh starts one)");
    let owner = Owner {
        agent_id: agent.clone(),
        revision: "r1".into(),
    };

    let d1 = desired(&agent, vec![spec(&agent, "a", "1"), spec(&agent, "b", "1")]);
    let report = conv(&rt, &d1, &owner).await;
    assert!(report.ok(), "{report:?}");
    let a1 = rt.observe(&agent).await.unwrap();
    assert_eq!(a1.containers.len(), 2);
    assert!(a1.containers.iter().all(|c| c.running), "{a1:?}");
    assert_eq!(a1.networks.len(), 1);
    assert_eq!(a1.volumes.len(), 1);
    assert!(
        plan(&d1, &a1).is_empty(),
        "converged state must plan nothing"
    );

    // Change b only: b is recreated, a keeps its id.
    let d2 = desired(&agent, vec![spec(&agent, "a", "1"), spec(&agent, "b", "2")]);
    let report = conv(&rt, &d2, &owner).await;
    assert!(report.ok(), "{report:?}");
    let a2 = rt.observe(&agent).await.unwrap();
    let id = |s: &ActualState, n: &str| {
        s.containers
            .iter()
            .find(|c| c.service == n)
            .map(|c| c.id.clone())
    };
    assert_eq!(id(&a1, "a"), id(&a2, "a"));
    assert_ne!(id(&a1, "b"), id(&a2, "b"));
    assert_eq!(
        a2.containers.len(),
        2,
        "the old b is gone, no stray left: {a2:?}"
    );

    // Remove everything: containers and network go, the volume stays.
    let report = conv(&rt, &DesiredState::default(), &owner).await;
    assert!(report.ok(), "{report:?}");
    let a3 = rt.observe(&agent).await.unwrap();
    assert!(a3.containers.is_empty() && a3.networks.is_empty(), "{a3:?}");
    assert_eq!(a3.volumes.len(), 1, "volumes are never pruned");
    rt.client()
        .remove_volume(
            &format!("{agent}_data"),
            None::<bollard::query_parameters::RemoveVolumeOptions>,
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn stop_grace_period_beyond_the_engines_range_is_refused_not_clamped() {
    let rt = DockerRuntime::connect(None).await.expect("a Docker engine");
    let e = rt
        .stop_container("berth-unit-no-such-container", Some(u64::MAX))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("stop_grace_period"), "{e}");
}

#[tokio::test]
async fn missing_image_fails_before_the_old_container_is_touched() {
    let agent = format!("unit-img-{}", std::process::id());
    let rt = DockerRuntime::connect(None).await.expect("a Docker engine");
    let owner = Owner {
        agent_id: agent.clone(),
        revision: "r1".into(),
    };
    let d1 = desired(&agent, vec![spec(&agent, "a", "1")]);
    assert!(conv(&rt, &d1, &owner).await.ok());
    let before = rt.observe(&agent).await.unwrap();

    let mut bad = spec(&agent, "a", "2");
    bad.image = "127.0.0.1:1/berth-missing/image:nope".into();
    let d2 = desired(&agent, vec![bad]);
    let report = conv(&rt, &d2, &owner).await;
    assert!(!report.ok());
    assert!(
        report.error_text().contains("berth-missing/image"),
        "{}",
        report.error_text()
    );
    let after = rt.observe(&agent).await.unwrap();
    assert_eq!(
        before.containers, after.containers,
        "the running container is untouched"
    );

    conv(&rt, &DesiredState::default(), &owner).await;
    rt.client()
        .remove_volume(
            &format!("{agent}_data"),
            None::<bollard::query_parameters::RemoveVolumeOptions>,
        )
        .await
        .unwrap();
}
