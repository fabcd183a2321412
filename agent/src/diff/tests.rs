//! Tests of the describing: states in, the plan made by [`crate::plan::plan`], the description out.

use super::*;
use crate::model::{
    ActualContainer, ActualObject, ContainerSpec, Dependency, NetworkSpec, PortSpec, StackSpec,
    VolumeSpec,
};

fn spec(stack: &str, service: &str) -> ContainerSpec {
    ContainerSpec {
        name: format!("{stack}-{service}-1"),
        stack: stack.into(),
        service: service.into(),
        replica: 1,
        image: "busybox:1".into(),
        restart: "no".into(),
        env: vec!["TOKEN=s3cret-one".into()],
        ..Default::default()
    }
}

fn desired(specs: Vec<ContainerSpec>) -> DesiredState {
    let mut d = DesiredState::default();
    for s in specs {
        d.stacks
            .entry(s.stack.clone())
            .or_insert_with(|| StackSpec {
                name: s.stack.clone(),
                dir: s.stack.clone(),
                ..Default::default()
            })
            .containers
            .push(s);
    }
    d
}

/// A running container made from `spec`, from image id `sha256:1`.
fn running(spec: &ContainerSpec) -> ActualContainer {
    ActualContainer {
        id: format!("id-{}", spec.name),
        name: spec.name.clone(),
        stack: spec.stack.clone(),
        service: spec.service.clone(),
        replica: spec.replica,
        spec_hash: spec.spec_hash(),
        image_id: "sha256:1".into(),
        running: true,
        exit_code: None,
        state: "running".into(),
        finished: false,
    }
}

fn actual(containers: Vec<ActualContainer>) -> ActualState {
    ActualState {
        containers,
        images: [("busybox:1".to_string(), "sha256:1".to_string())].into(),
        ..Default::default()
    }
}

/// Plan and describe, with the old specs given.
fn described(d: &DesiredState, a: &ActualState, old: &[&ContainerSpec]) -> Description {
    let plan = crate::plan::plan(d, a);
    let wanted = changed_hashes(&plan);
    let states: Vec<DesiredState> = old.iter().map(|s| desired(vec![(*s).clone()])).collect();
    let known = specs_in(states.iter(), &wanted);
    describe(d, a, &plan, &known, Vec::new(), Vec::new())
}

/// `(stack, service, container, action, why)` of every container step.
fn steps(d: &Description) -> Vec<(String, String, String, Action, Why)> {
    d.stacks
        .iter()
        .flat_map(|s| {
            s.services.iter().flat_map(move |svc| {
                svc.containers.iter().map(move |c| {
                    (
                        s.name.clone(),
                        svc.name.clone(),
                        c.container.clone(),
                        c.action,
                        c.why.clone(),
                    )
                })
            })
        })
        .collect()
}

#[test]
fn a_fresh_stack_is_created_with_its_network_and_volume() {
    let mut d = desired(vec![spec("shop", "web"), spec("shop", "db")]);
    let stack = d.stacks.get_mut("shop").unwrap();
    stack.networks.push(NetworkSpec {
        name: "shop_default".into(),
        stack: "shop".into(),
        ..Default::default()
    });
    stack.volumes.push(VolumeSpec {
        name: "shop_data".into(),
        stack: "shop".into(),
        ..Default::default()
    });
    let desc = described(&d, &actual(vec![]), &[]);
    assert!(desc.has_changes());
    assert_eq!(
        steps(&desc),
        vec![
            (
                "shop".into(),
                "db".into(),
                "shop-db-1".into(),
                Action::Create,
                Why::New
            ),
            (
                "shop".into(),
                "web".into(),
                "shop-web-1".into(),
                Action::Create,
                Why::New
            ),
        ]
    );
    let s = &desc.stacks[0];
    assert_eq!(
        s.networks,
        vec![ObjectChange {
            name: "shop_default".into(),
            action: ObjectAction::Create
        }]
    );
    assert_eq!(
        s.volumes,
        vec![ObjectChange {
            name: "shop_data".into(),
            action: ObjectAction::Create
        }]
    );
    assert_eq!(desc.counts(), [(Action::Create, 2)].into());
}

#[test]
fn an_unchanged_running_stack_has_nothing_to_do() {
    let web = spec("shop", "web");
    let desc = described(
        &desired(vec![web.clone()]),
        &actual(vec![running(&web)]),
        &[],
    );
    assert!(!desc.has_changes(), "{desc:?}");
    assert!(desc.stacks.is_empty());
}

#[test]
fn a_recreate_names_the_fields_that_differ_and_never_their_values() {
    let old = spec("shop", "web");
    let mut new = old.clone();
    new.env = vec!["TOKEN=s3cret-two".into()];
    new.ports = vec![PortSpec {
        host_ip: None,
        host_port: Some(8080),
        container_port: 80,
        protocol: "tcp".into(),
    }];
    let desc = described(&desired(vec![new]), &actual(vec![running(&old)]), &[&old]);
    assert_eq!(
        steps(&desc)[0].4,
        Why::SpecChanged {
            fields: vec!["env".into(), "ports".into()]
        }
    );
    let json = serde_json::to_string(&desc).unwrap();
    assert!(!json.contains("s3cret"), "a value leaked: {json}");
    assert!(!json.contains("8080"), "a value leaked: {json}");
}

#[test]
fn a_recreate_without_the_old_spec_says_so() {
    let old = spec("shop", "web");
    let mut new = old.clone();
    new.image = "busybox:2".into();
    let desc = described(&desired(vec![new]), &actual(vec![running(&old)]), &[]);
    let (.., action, why) = steps(&desc).remove(0);
    assert_eq!((action, why), (Action::Recreate, Why::SpecChangedUnknown));
}

#[test]
fn a_moved_image_tag_says_so() {
    let web = spec("shop", "web");
    let mut a = actual(vec![running(&web)]);
    a.images.insert("busybox:1".into(), "sha256:2".into());
    let desc = described(&desired(vec![web.clone()]), &a, &[&web]);
    let (.., action, why) = steps(&desc).remove(0);
    assert_eq!(action, Action::Recreate);
    assert_eq!(
        why,
        Why::ImageMoved {
            image: "busybox:1".into()
        }
    );
}

#[test]
fn start_restart_and_remove_say_why() {
    let db = spec("shop", "db");
    let mut db_new = db.clone();
    db_new.env = vec!["TOKEN=other".into()];
    let mut app = spec("shop", "app");
    app.depends_on.push(Dependency {
        service: "db".into(),
        condition: crate::model::Condition::ServiceStarted,
        restart: true,
    });
    let job = spec("shop", "job");
    let mut stopped = running(&job);
    stopped.running = false;
    stopped.state = "exited".into();
    let gone_service = spec("shop", "old");
    let gone_stack = spec("legacy", "web");
    let mut extra_replica = running(&spec("shop", "app"));
    extra_replica.name = "shop-app-2".into();
    extra_replica.id = "id-shop-app-2".into();
    extra_replica.replica = 2;
    let mut leftover = running(&db);
    leftover.name = format!("shop-db-1{}", crate::apply::OLD_SUFFIX);
    leftover.id = "id-leftover".into();
    let d = desired(vec![app.clone(), db_new, job.clone()]);
    let a = actual(vec![
        running(&app),
        running(&db),
        stopped,
        running(&gone_service),
        running(&gone_stack),
        extra_replica,
        leftover,
    ]);
    let desc = described(&d, &a, &[&db]);
    let got: Vec<(String, Action, Why)> = steps(&desc)
        .into_iter()
        .map(|(_, _, c, a, w)| (c, a, w))
        .collect();
    let expect = |c: &str, a: Action, w: Why| {
        assert!(
            got.contains(&(c.to_string(), a, w.clone())),
            "missing {c} {a:?} {w:?} in {got:#?}"
        )
    };
    expect("legacy-web-1", Action::Remove, Why::StackRemoved);
    expect("shop-old-1", Action::Remove, Why::ServiceRemoved);
    expect("shop-app-2", Action::Remove, Why::ReplicaRemoved);
    expect(
        &format!("shop-db-1{}", crate::apply::OLD_SUFFIX),
        Action::Remove,
        Why::Leftover,
    );
    expect(
        "shop-db-1",
        Action::Recreate,
        Why::SpecChanged {
            fields: vec!["env".into()],
        },
    );
    expect(
        "shop-job-1",
        Action::Start,
        Why::NotRunning {
            state: "exited".into(),
        },
    );
    expect(
        "shop-app-1",
        Action::Restart,
        Why::DependencyReplaced {
            services: vec!["db".into()],
        },
    );
    assert_eq!(got.len(), 7, "{got:#?}");
    // Grouped by stack, then service, both by name.
    let names: Vec<(&str, Vec<&str>)> = desc
        .stacks
        .iter()
        .map(|s| {
            (
                s.name.as_str(),
                s.services.iter().map(|v| v.name.as_str()).collect(),
            )
        })
        .collect();
    assert_eq!(
        names,
        vec![
            ("legacy", vec!["web"]),
            ("shop", vec!["app", "db", "job", "old"])
        ]
    );
}

#[test]
fn networks_removed_and_volumes_kept_are_grouped_by_their_stack() {
    let mut a = actual(vec![]);
    a.networks.push(ActualObject {
        name: "legacy_default".into(),
        stack: "legacy".into(),
    });
    a.volumes.push(ActualObject {
        name: "legacy_data".into(),
        stack: "legacy".into(),
    });
    let desc = described(&DesiredState::default(), &a, &[]);
    assert_eq!(desc.stacks.len(), 1);
    let s = &desc.stacks[0];
    assert_eq!(s.name, "legacy");
    assert_eq!(s.networks[0].action, ObjectAction::Remove);
    assert_eq!(s.volumes[0].action, ObjectAction::Keep);
    assert!(desc.has_changes(), "removing a network is a change");
    a.networks.clear();
    let desc = described(&DesiredState::default(), &a, &[]);
    assert!(!desc.has_changes(), "a kept volume is not a change");
}

#[test]
fn differing_fields_compares_top_level_values_absent_ones_included() {
    let old = serde_json::json!({"image": "a", "env": ["X=1"], "restart": "no"});
    let new = serde_json::json!({"image": "a", "env": ["X=2"], "restart": "no", "ports": [1]});
    assert_eq!(
        differing_fields(&old, &new),
        Some(vec!["env".to_string(), "ports".to_string()])
    );
    assert_eq!(differing_fields(&old, &serde_json::json!([])), None);
}

#[test]
fn a_spec_label_is_believed_only_when_it_hashes_to_the_containers_spec_hash() {
    let s = spec("shop", "web");
    let label = s.canonical_json();
    assert_eq!(crate::model::hash_canonical(&label), s.spec_hash());
    assert!(verified_spec(&label, &s.spec_hash()).is_some());
    let edited = label.replace("s3cret-one", "s3cret-two");
    assert!(verified_spec(&edited, &s.spec_hash()).is_none());
    assert!(verified_spec("not json", &crate::model::hash_canonical("not json")).is_none());
}

#[test]
fn old_specs_are_found_newest_first_by_hash() {
    let old = spec("shop", "web");
    let mut older = old.clone();
    older.image = "busybox:0".into();
    let states = [desired(vec![old.clone()]), desired(vec![older.clone()])];
    let wanted: BTreeSet<String> = [older.spec_hash(), "unknown".to_string()].into();
    let found = specs_in(states.iter(), &wanted);
    assert_eq!(found.len(), 1);
    assert_eq!(found[&older.spec_hash()]["image"], "busybox:0");
}

#[test]
fn pull_reasons() {
    assert_eq!(pull_reason(PullPolicy::Missing, false), "not on the engine");
    assert_eq!(pull_reason(PullPolicy::Always, true), "pull_policy always");
    assert!(
        pull_reason(
            PullPolicy::Every(std::time::Duration::from_secs(86_400)),
            true
        )
        .contains("1day"),
        "{}",
        pull_reason(
            PullPolicy::Every(std::time::Duration::from_secs(86_400)),
            true
        )
    );
}

#[test]
fn between_two_revisions_names_what_a_box_running_the_first_would_do() {
    let db = spec("shop", "db");
    let mut db_new = db.clone();
    db_new.env = vec!["TOKEN=s3cret-two".into()];
    db_new.ports.push(PortSpec {
        host_ip: None,
        container_port: 80,
        host_port: Some(8080),
        protocol: "tcp".into(),
    });
    let mut app = spec("shop", "app");
    app.depends_on.push(Dependency {
        service: "db".into(),
        condition: crate::model::Condition::ServiceStarted,
        restart: true,
    });
    let web = spec("legacy", "web");
    let cache = spec("shop", "cache");
    let from = desired(vec![db.clone(), app.clone(), web]);
    let to = desired(vec![db_new, app, cache]);

    let d = between(&from, &to);
    let steps: Vec<(String, Action, Why)> = d
        .stacks
        .iter()
        .flat_map(|s| &s.services)
        .flat_map(|s| &s.containers)
        .map(|c| (c.container.clone(), c.action, c.why.clone()))
        .collect();
    assert!(steps.contains(&(
        "shop-db-1".into(),
        Action::Recreate,
        Why::SpecChanged {
            fields: vec!["env".into(), "ports".into()]
        }
    )));
    assert!(steps.contains(&("shop-cache-1".into(), Action::Create, Why::New)));
    assert!(steps.contains(&("legacy-web-1".into(), Action::Remove, Why::StackRemoved)));
    assert!(steps
        .iter()
        .any(|(n, a, _)| n == "shop-app-1" && *a == Action::Restart));
    assert_eq!(steps.len(), 4, "{steps:?}");
    assert!(d.has_changes());
    assert!(d.pulls.is_empty() && d.problems.is_empty());
    // Field names only: no value is in the description.
    assert!(!serde_json::to_string(&d).unwrap().contains("s3cret"));

    // The same state twice changes nothing; from nothing, everything is created; to nothing, removed.
    assert!(!between(&from, &from).has_changes());
    let all_new = between(&DesiredState::default(), &to);
    assert_eq!(all_new.counts().get(&Action::Create), Some(&3));
    let all_gone = between(&from, &DesiredState::default());
    assert_eq!(all_gone.counts().get(&Action::Remove), Some(&3));
}
