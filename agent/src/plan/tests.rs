//! Tests of [`plan`]: one table of cases (desired, actual → the steps expected, in order), and properties
//! over arbitrary states, checked with a small pure model of what each step does to the engine.

use super::*;
use crate::model::{ActualObject, Condition, Dependency, StackSpec};

mod properties;

// ---------------------------------------------------------------------------------------------------
// Builders

/// Replica 1 of `service` in `stack`, image `img-<service>`, no dependencies.
fn svc(stack: &str, service: &str) -> ContainerSpec {
    ContainerSpec {
        name: format!("{stack}-{service}-1"),
        stack: stack.into(),
        service: service.into(),
        replica: 1,
        image: format!("img-{service}"),
        restart: "no".into(),
        ..Default::default()
    }
}

/// Ways to change a spec in a case, chained.
trait Edit: Sized {
    fn edit(self, f: impl FnOnce(&mut ContainerSpec)) -> Self;

    /// `depends_on: {service: {condition: service_started}}`.
    fn after(self, service: &str) -> Self {
        self.edit(|c| {
            c.depends_on.push(Dependency {
                service: service.into(),
                condition: Condition::ServiceStarted,
                restart: false,
            })
        })
    }
    /// `depends_on: {service: {condition: service_started, restart: true}}`.
    fn after_restart(self, service: &str) -> Self {
        self.edit(|c| {
            c.depends_on.push(Dependency {
                service: service.into(),
                condition: Condition::ServiceStarted,
                restart: true,
            })
        })
    }
    /// Replica `n` (`<stack>-<service>-<n>`).
    fn replica(self, n: u32) -> Self {
        self.edit(|c| {
            c.replica = n;
            c.name = format!("{}-{}-{n}", c.stack, c.service);
        })
    }
    fn env(self, kv: &str) -> Self {
        self.edit(|c| c.env = vec![kv.into()])
    }
    /// A one-shot job (another service waits for it with `service_completed_successfully`).
    fn job(self) -> Self {
        self.edit(|c| c.run_once = true)
    }
    /// `network_mode: service:<peer>` as render leaves it: the peer's first container's namespace, a
    /// `service_started` dependency on the peer, and the peer's hash folded into `content_digest`.
    fn network_of(self, peer: &ContainerSpec) -> Self {
        let (mode, digest) = (format!("container:{}", peer.name), peer.spec_hash());
        self.edit(|c| {
            c.network_mode = Some(mode);
            c.content_digest = Some(digest);
        })
        .after(&peer.service)
    }
}

impl Edit for ContainerSpec {
    fn edit(mut self, f: impl FnOnce(&mut ContainerSpec)) -> Self {
        f(&mut self);
        self
    }
}

fn network(stack: &str, key: &str) -> NetworkSpec {
    NetworkSpec {
        name: format!("{stack}_{key}"),
        stack: stack.into(),
        ..Default::default()
    }
}

fn volume(stack: &str, key: &str) -> VolumeSpec {
    VolumeSpec {
        name: format!("{stack}_{key}"),
        stack: stack.into(),
        ..Default::default()
    }
}

/// A stack with the network `<name>_default` and no volumes.
fn stack(name: &str, containers: Vec<ContainerSpec>) -> StackSpec {
    StackSpec {
        name: name.into(),
        dir: name.into(),
        containers,
        networks: vec![network(name, "default")],
        volumes: Vec::new(),
    }
}

fn desired(stacks: Vec<StackSpec>) -> DesiredState {
    DesiredState {
        stacks: stacks.into_iter().map(|s| (s.name.clone(), s)).collect(),
        ..Default::default()
    }
}

/// The image id every image of the tests has on the engine (until a case moves a tag).
fn image_id(image: &str) -> String {
    format!("sha256:{image}")
}

/// The container `spec` made, running, with id `id`.
fn running(spec: &ContainerSpec, id: &str) -> ActualContainer {
    ActualContainer {
        id: id.into(),
        name: spec.name.clone(),
        stack: spec.stack.clone(),
        service: spec.service.clone(),
        replica: spec.replica,
        spec_hash: spec.spec_hash(),
        image_id: image_id(&spec.image),
        running: true,
        exit_code: None,
        state: "running".into(),
    }
}

/// The container `spec` made, exited with `code`.
fn exited(spec: &ContainerSpec, id: &str, code: i64) -> ActualContainer {
    ActualContainer {
        running: false,
        exit_code: Some(code),
        state: "exited".into(),
        ..running(spec, id)
    }
}

fn objects<'a>(names: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<ActualObject> {
    names
        .into_iter()
        .map(|(name, stack)| ActualObject {
            name: name.into(),
            stack: stack.into(),
        })
        .collect()
}

/// The images `d` names, each with its usual id.
fn images(d: &DesiredState) -> BTreeMap<String, String> {
    d.containers()
        .map(|c| (c.image.clone(), image_id(&c.image)))
        .collect()
}

/// What the engine has after `d` was converged: every container running (ids `<name>#`), its networks
/// and volumes, and its images.
fn converged(d: &DesiredState) -> ActualState {
    ActualState {
        containers: d
            .containers()
            .map(|c| running(c, &format!("{}#", c.name)))
            .collect(),
        networks: d
            .networks()
            .map(|n| ActualObject {
                name: n.name.clone(),
                stack: n.stack.clone(),
            })
            .collect(),
        volumes: d
            .volumes()
            .map(|v| ActualObject {
                name: v.name.clone(),
                stack: v.stack.clone(),
            })
            .collect(),
        images: images(d),
    }
}

/// Only the images of `d`: nothing created yet.
fn nothing_but_images(d: &DesiredState) -> ActualState {
    ActualState {
        images: images(d),
        ..Default::default()
    }
}

/// One line per step, in plan order, waves numbered from 0: what the table compares.
fn lines(p: &Plan) -> Vec<String> {
    let mut out = Vec::new();
    out.extend(
        p.create_networks
            .iter()
            .map(|n| format!("create network {}", n.name)),
    );
    out.extend(
        p.create_volumes
            .iter()
            .map(|v| format!("create volume {}", v.name)),
    );
    out.extend(
        p.missing_images
            .iter()
            .map(|i| format!("missing image {i}")),
    );
    out.extend(
        p.remove_containers
            .iter()
            .map(|c| format!("remove container {} ({})", c.name, c.id)),
    );
    for (w, wave) in p.waves.iter().enumerate() {
        for step in wave {
            let name = &step.spec().name;
            out.push(match step {
                ContainerStep::Create { .. } => format!("wave {w}: create {name}"),
                ContainerStep::Recreate {
                    old_id, old_name, ..
                } if old_name != name => {
                    format!("wave {w}: recreate {name} ({old_id} as {old_name})")
                }
                ContainerStep::Recreate { old_id, .. } => {
                    format!("wave {w}: recreate {name} ({old_id})")
                }
                ContainerStep::Start { id, .. } => format!("wave {w}: start {name} ({id})"),
                ContainerStep::Restart { id, .. } => format!("wave {w}: restart {name} ({id})"),
            });
        }
    }
    out.extend(
        p.remove_networks
            .iter()
            .map(|n| format!("remove network {n}")),
    );
    out
}

// ---------------------------------------------------------------------------------------------------
// The table

struct Case {
    name: &'static str,
    desired: DesiredState,
    actual: ActualState,
    expected: &'static [&'static str],
}

/// Creates, in dependency order, and images that are missing.
fn creates() -> Vec<Case> {
    let mut cases = Vec::new();

    let d = desired(vec![stack(
        "s",
        vec![
            svc("s", "web").after("api"),
            svc("s", "api").after("db"),
            svc("s", "db"),
        ],
    )]);
    cases.push(Case {
        name: "converged: nothing to do",
        actual: converged(&d),
        desired: d.clone(),
        expected: &[],
    });
    cases.push(Case {
        name: "create everything, dependencies first",
        actual: nothing_but_images(&d),
        desired: d.clone(),
        expected: &[
            "create network s_default",
            "wave 0: create s-db-1",
            "wave 1: create s-api-1",
            "wave 2: create s-web-1",
        ],
    });
    cases.push(Case {
        name: "create with images the engine does not have names them",
        actual: ActualState::default(),
        desired: d.clone(),
        expected: &[
            "create network s_default",
            "missing image img-api",
            "missing image img-db",
            "missing image img-web",
            "wave 0: create s-db-1",
            "wave 1: create s-api-1",
            "wave 2: create s-web-1",
        ],
    });

    cases
}

/// Recreates: a changed spec hash, an image tag that moved.
fn recreates() -> Vec<Case> {
    let mut cases = Vec::new();
    let abc = desired(vec![stack(
        "s",
        vec![svc("s", "a"), svc("s", "b"), svc("s", "c")],
    )]);
    cases.push(Case {
        name: "recreate only the container whose spec hash changed",
        actual: converged(&abc),
        desired: desired(vec![stack(
            "s",
            vec![svc("s", "a"), svc("s", "b").env("X=1"), svc("s", "c")],
        )]),
        expected: &["wave 0: recreate s-b-1 (s-b-1#)"],
    });
    cases.push(Case {
        name: "recreate when the image tag now names another image",
        actual: ActualState {
            images: [
                ("img-a".to_string(), "sha256:moved".to_string()),
                ("img-b".to_string(), image_id("img-b")),
                ("img-c".to_string(), image_id("img-c")),
            ]
            .into(),
            ..converged(&abc)
        },
        desired: abc.clone(),
        expected: &["wave 0: recreate s-a-1 (s-a-1#)"],
    });
    let mut unknown_image = converged(&abc);
    unknown_image.containers[0].image_id = String::new();
    unknown_image
        .images
        .insert("img-a".into(), "sha256:moved".into());
    cases.push(Case {
        name: "a container whose image id is unknown is not recreated for it",
        actual: unknown_image,
        desired: abc.clone(),
        expected: &[],
    });

    cases
}

/// Starts of stopped containers, one-shot jobs.
fn starts() -> Vec<Case> {
    let mut cases = Vec::new();
    let a = svc("s", "a");
    let one = desired(vec![stack("s", vec![a.clone()])]);
    cases.push(Case {
        name: "start a stopped container (no image needed)",
        actual: ActualState {
            containers: vec![exited(&a, "a#", 137)],
            images: BTreeMap::new(),
            ..converged(&one)
        },
        desired: one.clone(),
        expected: &["wave 0: start s-a-1 (a#)"],
    });

    let job = svc("s", "migrate").job();
    let app = svc("s", "app").after("migrate");
    let jobs = desired(vec![stack("s", vec![app.clone(), job.clone()])]);
    cases.push(Case {
        name: "a one-shot job that finished is not started again",
        actual: ActualState {
            containers: vec![running(&app, "app#"), exited(&job, "job#", 0)],
            ..converged(&jobs)
        },
        desired: jobs.clone(),
        expected: &[],
    });
    cases.push(Case {
        name: "a one-shot job that failed is started again",
        actual: ActualState {
            containers: vec![running(&app, "app#"), exited(&job, "job#", 3)],
            ..converged(&jobs)
        },
        desired: jobs.clone(),
        expected: &["wave 0: start s-migrate-1 (job#)"],
    });
    cases.push(Case {
        name: "a service (not a job) that exited 0 is started",
        actual: ActualState {
            containers: vec![exited(&app, "app#", 0), exited(&job, "job#", 0)],
            ..converged(&jobs)
        },
        desired: jobs.clone(),
        // Waves are numbered among those that have steps: the only step is in the first one.
        expected: &["wave 0: start s-app-1 (app#)"],
    });
    cases.push(Case {
        name: "a container being removed gets no step (its destroy event brings the next cycle)",
        actual: ActualState {
            containers: vec![ActualContainer {
                state: "removing".into(),
                ..exited(&a, "a#", 137)
            }],
            ..converged(&one)
        },
        desired: one.clone(),
        expected: &[],
    });

    cases
}

/// Removals: services, stacks, replicas above the count, containers left aside.
fn removals() -> Vec<Case> {
    let mut cases = Vec::new();
    let a = svc("s", "a");
    let one = desired(vec![stack("s", vec![a.clone()])]);
    let two_stacks = desired(vec![
        stack("s", vec![svc("s", "a"), svc("s", "b")]),
        stack("t", vec![svc("t", "x")]),
    ]);
    cases.push(Case {
        name: "remove a service no longer desired",
        actual: converged(&two_stacks),
        desired: desired(vec![
            stack("s", vec![svc("s", "a")]),
            stack("t", vec![svc("t", "x")]),
        ]),
        expected: &["remove container s-b-1 (s-b-1#)"],
    });
    cases.push(Case {
        name: "remove a stack no longer desired: its containers, then its network",
        actual: converged(&two_stacks),
        desired: desired(vec![stack("s", vec![svc("s", "a"), svc("s", "b")])]),
        expected: &[
            "remove container t-x-1 (t-x-1#)",
            "remove network t_default",
        ],
    });
    cases.push(Case {
        name: "an empty desired state removes every owned container and network",
        actual: converged(&two_stacks),
        desired: DesiredState::default(),
        expected: &[
            "remove container s-a-1 (s-a-1#)",
            "remove container s-b-1 (s-b-1#)",
            "remove container t-x-1 (t-x-1#)",
            "remove network s_default",
            "remove network t_default",
        ],
    });

    let three = desired(vec![stack(
        "s",
        vec![a.clone(), a.clone().replica(2), a.clone().replica(3)],
    )]);
    cases.push(Case {
        name: "remove the replicas above the count",
        actual: converged(&three),
        desired: one.clone(),
        expected: &[
            "remove container s-a-2 (s-a-2#)",
            "remove container s-a-3 (s-a-3#)",
        ],
    });
    cases.push(Case {
        name: "create only the replicas that are missing",
        actual: converged(&one),
        desired: three.clone(),
        expected: &["wave 0: create s-a-2", "wave 0: create s-a-3"],
    });

    let mut stray = running(&a, "old#");
    stray.name = format!("{}{}", a.name, crate::apply::OLD_SUFFIX);
    cases.push(Case {
        name: "a container left aside by an interrupted recreate is removed",
        actual: ActualState {
            containers: vec![running(&a, "a#"), stray],
            ..converged(&one)
        },
        desired: one.clone(),
        expected: &["remove container s-a-1_berth-old (old#)"],
    });

    cases
}

/// Networks and volumes; `network_mode: service:X`.
fn networks() -> Vec<Case> {
    let mut cases = Vec::new();
    let a = svc("s", "a");
    let one = desired(vec![stack("s", vec![a.clone()])]);
    let mut nets = stack("s", vec![a.clone()]);
    nets.networks.push(network("s", "front"));
    nets.volumes = vec![volume("s", "data")];
    cases.push(Case {
        name: "networks to create and remove; volumes created, never removed",
        actual: ActualState {
            networks: objects([("s_default", "s"), ("s_old", "s")]),
            volumes: objects([("s_gone", "s")]),
            ..converged(&one)
        },
        desired: desired(vec![nets]),
        expected: &[
            "create network s_front",
            "create volume s_data",
            "remove network s_old",
        ],
    });

    let vpn = svc("s", "vpn");
    let tunnel = desired(vec![stack(
        "s",
        vec![svc("s", "app").network_of(&vpn), vpn.clone()],
    )]);
    cases.push(Case {
        name: "network_mode service:X: X is created in an earlier wave",
        actual: nothing_but_images(&tunnel),
        desired: tunnel.clone(),
        expected: &[
            "create network s_default",
            "wave 0: create s-vpn-1",
            "wave 1: create s-app-1",
        ],
    });
    let vpn2 = vpn.clone().env("V=2");
    cases.push(Case {
        name: "network_mode service:X: a changed X recreates both, X first",
        actual: converged(&tunnel),
        desired: desired(vec![stack(
            "s",
            vec![svc("s", "app").network_of(&vpn2), vpn2.clone()],
        )]),
        expected: &[
            "wave 0: recreate s-vpn-1 (s-vpn-1#)",
            "wave 1: recreate s-app-1 (s-app-1#)",
        ],
    });

    cases
}

/// `depends_on` with `restart: true`.
fn restarts() -> Vec<Case> {
    let mut cases = Vec::new();
    let db = svc("s", "db");
    let restarts = |db: &ContainerSpec| {
        desired(vec![stack(
            "s",
            vec![
                db.clone(),
                svc("s", "other").after("db"),
                svc("s", "web").after_restart("db"),
            ],
        )])
    };
    let before = restarts(&db);
    cases.push(Case {
        name: "restart: true restarts the running dependent when its dependency is recreated",
        actual: converged(&before),
        desired: restarts(&db.clone().env("V=2")),
        expected: &[
            "wave 0: recreate s-db-1 (s-db-1#)",
            "wave 1: restart s-web-1 (s-web-1#)",
        ],
    });
    let mut db_stopped = converged(&before);
    db_stopped.containers[0] = exited(&db, "s-db-1#", 1);
    cases.push(Case {
        name: "restart: true does not restart when the dependency is only started",
        actual: db_stopped,
        desired: before.clone(),
        expected: &["wave 0: start s-db-1 (s-db-1#)"],
    });
    let changed_both = desired(vec![stack(
        "s",
        vec![
            db.clone().env("V=2"),
            svc("s", "other").after("db"),
            svc("s", "web").after_restart("db").env("W=2"),
        ],
    )]);
    cases.push(Case {
        name:
            "restart: true on a dependent that is recreated anyway: recreated once, not restarted",
        actual: converged(&before),
        desired: changed_both,
        expected: &[
            "wave 0: recreate s-db-1 (s-db-1#)",
            "wave 1: recreate s-web-1 (s-web-1#)",
        ],
    });

    cases
}

/// Ownership: what observe left out.
fn ownership() -> Vec<Case> {
    let mut cases = Vec::new();
    let a = svc("s", "a");
    // The engine also holds another agent's containers and network, some with names that look like this
    // stack's. observe lists by owner label, so plan is given only this agent's objects; it never names
    // the others, not even to remove a name this stack no longer wants.
    let mine = desired(vec![stack("s", vec![a.clone(), svc("s", "web")])]);
    let engine = [
        ("me", running(&a, "mine-a")),
        ("other", running(&svc("s", "gone"), "theirs-gone")),
        ("other", running(&svc("x", "web"), "theirs-web")),
    ];
    let observed = ActualState {
        containers: engine
            .iter()
            .filter(|(owner, _)| *owner == "me")
            .map(|(_, c)| c.clone())
            .collect(),
        networks: objects([("s_default", "s")]),
        volumes: Vec::new(),
        images: images(&mine),
    };
    cases.push(Case {
        name: "another agent's containers never appear in a step",
        actual: observed,
        desired: mine,
        expected: &["wave 0: create s-web-1"],
    });

    cases
}

/// What a kill in the middle of a create or recreate leaves: `<name>_berth-new` (made, but its networks
/// or files may be missing: never started, always removed) and `<name>_berth-old` (the old container, moved
/// aside: removed once `<name>` exists, else the recreate resumes from it, taking over its volumes).
fn interrupted() -> Vec<Case> {
    let mut cases = Vec::new();
    let a = svc("s", "a");
    let one = desired(vec![stack("s", vec![a.clone()])]);
    let left = |suffix: &str, id: &str, hash: &str| ActualContainer {
        name: format!("{}{suffix}", a.name),
        spec_hash: hash.into(),
        ..exited(&a, id, 0)
    };
    let new = ActualContainer {
        running: false,
        exit_code: None,
        state: "created".into(),
        ..left(crate::apply::NEW_SUFFIX, "new#", &a.spec_hash())
    };
    let old = left(crate::apply::OLD_SUFFIX, "old#", "stale");
    let without_a = |extra: Vec<ActualContainer>| ActualState {
        containers: extra,
        ..converged(&one)
    };

    cases.push(Case {
        name: "a create killed before its container took its name: removed, created again",
        actual: without_a(vec![new.clone()]),
        desired: one.clone(),
        expected: &[
            "remove container s-a-1_berth-new (new#)",
            "wave 0: create s-a-1",
        ],
    });
    cases.push(Case {
        name: "a temporary container next to the named one is removed, not started",
        actual: without_a(vec![running(&a, "a#"), new.clone()]),
        desired: one.clone(),
        expected: &["remove container s-a-1_berth-new (new#)"],
    });
    cases.push(Case {
        name: "a recreate killed after moving the old container aside resumes from it",
        actual: without_a(vec![old.clone()]),
        desired: one.clone(),
        expected: &["wave 0: recreate s-a-1 (old# as s-a-1_berth-old)"],
    });
    cases.push(Case {
        name: "a recreate killed while making the new container: the new removed, resumed from the old",
        actual: without_a(vec![new.clone(), old.clone()]),
        desired: one.clone(),
        expected: &[
            "remove container s-a-1_berth-new (new#)",
            "wave 0: recreate s-a-1 (old# as s-a-1_berth-old)",
        ],
    });
    cases.push(Case {
        name: "a recreate killed before the old container was removed: the new one only started",
        actual: without_a(vec![exited(&a, "a#", 137), old.clone()]),
        desired: one.clone(),
        expected: &[
            "remove container s-a-1_berth-old (old#)",
            "wave 0: start s-a-1 (a#)",
        ],
    });
    let mut other = old.clone();
    other.service = "b".into();
    cases.push(Case {
        name: "an aside container of another service is not taken over",
        actual: without_a(vec![other]),
        desired: one.clone(),
        expected: &[
            "remove container s-a-1_berth-old (old#)",
            "wave 0: create s-a-1",
        ],
    });
    let only_b = desired(vec![stack("s", vec![svc("s", "b")])]);
    cases.push(Case {
        name: "leftovers of a service no longer desired are removed",
        actual: ActualState {
            containers: vec![new, old],
            ..converged(&only_b)
        },
        desired: only_b.clone(),
        expected: &[
            "remove container s-a-1_berth-new (new#)",
            "remove container s-a-1_berth-old (old#)",
            "wave 0: create s-b-1",
        ],
    });
    cases
}

fn cases() -> Vec<Case> {
    [
        creates(),
        recreates(),
        starts(),
        removals(),
        networks(),
        restarts(),
        ownership(),
        interrupted(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

#[test]
fn table() {
    let cases = cases();
    let mut failures = Vec::new();
    for case in &cases {
        let p = plan(&case.desired, &case.actual);
        let got = lines(&p);
        if got != case.expected {
            failures.push(format!(
                "{}:\n  expected {:#?}\n  got {got:#?}",
                case.name, case.expected
            ));
        }
        // Only missing images make a plan that does nothing non-empty-looking.
        let only_images = got.iter().all(|l| l.starts_with("missing image"));
        if p.is_empty() != only_images {
            failures.push(format!("{}: is_empty() is {}", case.name, p.is_empty()));
        }
        if let Err(e) = names_only_what_it_was_given(&case.desired, &case.actual, &p) {
            failures.push(format!("{}: {e}", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn the_existing_containers_of_desired_services_are_listed_for_dependency_waits() {
    let d = desired(vec![stack(
        "s",
        vec![svc("s", "a"), svc("s", "a").replica(2)],
    )]);
    let mut actual = converged(&d);
    actual.containers.push(running(&svc("s", "gone"), "gone#"));
    let p = plan(&d, &actual);
    let existing: Vec<_> = p.existing.into_iter().collect();
    assert_eq!(
        existing,
        vec![(
            ("s".to_string(), "a".to_string()),
            vec!["s-a-1#".to_string(), "s-a-2#".to_string()]
        )]
    );
}

#[test]
fn a_dependency_cycle_that_got_past_render_is_cut_instead_of_looping() {
    let d = desired(vec![stack(
        "s",
        vec![
            svc("s", "a").after("b"),
            svc("s", "b").after("a"),
            svc("s", "c").after("c"),
        ],
    )]);
    let p = plan(&d, &nothing_but_images(&d));
    assert_eq!(p.waves.iter().flatten().count(), 3, "{:#?}", lines(&p));
}

// ---------------------------------------------------------------------------------------------------
// What every plan must respect (the table checks it for each case, `properties` for arbitrary states)

/// Every step names only what plan was given: containers to remove, recreate, start or restart are
/// containers of `actual` (by id, under the name the step uses), every created or recreated container is
/// a desired one, networks come from `desired` (create) or `actual` (remove), and no desired container
/// is named by two steps.
fn names_only_what_it_was_given(d: &DesiredState, a: &ActualState, p: &Plan) -> Result<(), String> {
    let ids: BTreeMap<&str, &str> = a
        .containers
        .iter()
        .map(|c| (c.id.as_str(), c.name.as_str()))
        .collect();
    let specs: Vec<&ContainerSpec> = d.containers().collect();
    for c in &p.remove_containers {
        if ids.get(c.id.as_str()) != Some(&c.name.as_str()) {
            return Err(format!("removes {} ({}), not given", c.name, c.id));
        }
    }
    let mut named = BTreeSet::new();
    for step in p.waves.iter().flatten() {
        let spec = step.spec();
        if !specs.contains(&spec) {
            return Err(format!("{} {}: not a desired spec", step.verb(), spec.name));
        }
        if !named.insert(spec.name.as_str()) {
            return Err(format!("{} is named by two steps", spec.name));
        }
        // A recreate may resume from the old container an interrupted one left aside.
        let aside = format!("{}{}", spec.name, crate::apply::OLD_SUFFIX);
        let (id, name) = match step {
            ContainerStep::Create { .. } => (None, &spec.name),
            ContainerStep::Recreate {
                old_id, old_name, ..
            } if *old_name == aside => (Some(old_id), old_name),
            ContainerStep::Recreate { old_id: id, .. }
            | ContainerStep::Start { id, .. }
            | ContainerStep::Restart { id, .. } => (Some(id), &spec.name),
        };
        if let Some(id) = id {
            if ids.get(id.as_str()) != Some(&name.as_str()) {
                return Err(format!(
                    "{} {} names container {id}, which is not that container",
                    step.verb(),
                    spec.name
                ));
            }
        }
    }
    let want: Vec<&NetworkSpec> = d.networks().collect();
    if let Some(n) = p.create_networks.iter().find(|n| !want.contains(n)) {
        return Err(format!("creates network {}, not desired", n.name));
    }
    let have: BTreeSet<&str> = a.networks.iter().map(|n| n.name.as_str()).collect();
    if let Some(n) = p
        .remove_networks
        .iter()
        .find(|n| !have.contains(n.as_str()))
    {
        return Err(format!("removes network {n}, not given"));
    }
    Ok(())
}
