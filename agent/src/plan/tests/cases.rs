//! The table of [`plan`] cases: desired and actual states and the steps expected, in order, grouped by
//! what they exercise (creates, recreates, starts, removals, networks, restarts, ownership, interrupted
//! recreates). The builders they use and the test that runs them are in the parent.

use super::*;

// ---------------------------------------------------------------------------------------------------
// The table

pub(super) struct Case {
    pub(super) name: &'static str,
    pub(super) desired: DesiredState,
    pub(super) actual: ActualState,
    pub(super) expected: &'static [&'static str],
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
    let finished = |spec: &ContainerSpec, id: &str| ActualContainer {
        finished: true,
        ..exited(spec, id, 0)
    };
    cases.push(Case {
        name: "a `restart: no` service the agent saw exit 0 by itself is done, not started again",
        actual: ActualState {
            containers: vec![finished(&a, "a#")],
            ..converged(&one)
        },
        desired: one.clone(),
        expected: &[],
    });
    let on_failure = svc("s", "a").edit(|c| c.restart = "on-failure:3".into());
    let d = desired(vec![stack("s", vec![on_failure.clone()])]);
    cases.push(Case {
        name: "so is an `on-failure` one",
        actual: ActualState {
            containers: vec![finished(&on_failure, "a#")],
            ..converged(&d)
        },
        desired: d.clone(),
        expected: &[],
    });
    let always = svc("s", "a").edit(|c| c.restart = "unless-stopped".into());
    let d = desired(vec![stack("s", vec![always.clone()])]);
    cases.push(Case {
        name: "a service the engine is to keep running is started, even if it exited 0 by itself",
        actual: ActualState {
            containers: vec![finished(&always, "a#")],
            ..converged(&d)
        },
        desired: d.clone(),
        expected: &["wave 0: start s-a-1 (a#)"],
    });
    cases.push(Case {
        name:
            "a `restart: no` service that exited 0 but not by itself (stopped by hand) is started",
        actual: ActualState {
            containers: vec![exited(&a, "a#", 0)],
            ..converged(&one)
        },
        desired: one.clone(),
        expected: &["wave 0: start s-a-1 (a#)"],
    });
    let changed = svc("s", "a").edit(|c| c.command = Some(vec!["true".into()]));
    let d = desired(vec![stack("s", vec![changed])]);
    cases.push(Case {
        name: "a finished job whose spec changed is recreated (and so runs again)",
        actual: ActualState {
            containers: vec![finished(&a, "a#")],
            ..converged(&d)
        },
        desired: d.clone(),
        expected: &["wave 0: recreate s-a-1 (a#)"],
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

pub(super) fn cases() -> Vec<Case> {
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
