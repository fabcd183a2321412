//! Tests of [`plan`]: one table of cases (desired, actual → the steps expected, in order), and properties
//! over arbitrary states, checked with a small pure model of what each step does to the engine.
//!
//! This file holds the builders, the test that runs the table, and what every plan must respect; the
//! table itself is in `cases.rs`, the properties in `properties.rs`.

use super::*;
use crate::model::{ActualObject, Condition, Dependency, StackSpec};

mod cases;
mod properties;

use cases::cases;

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
        finished: false,
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
