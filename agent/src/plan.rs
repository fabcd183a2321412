//! `plan(desired, actual) -> Plan`: a pure function, no I/O.
//!
//! Order of a plan, and why:
//! 1. create missing networks and volumes (containers need them);
//! 2. (images were pulled before planning, by pull policy, before anything is stopped: a container whose
//!    image is not available is not touched, and its step fails with the image named);
//! 3. remove owned containers that are no longer desired (frees names and host ports for what follows);
//! 4. create / recreate / start / restart containers, in waves: a container's wave comes after the waves
//!    of the services it depends on; containers in one wave are independent and may run concurrently;
//! 5. remove owned networks no longer desired (after their containers are gone).
//!
//! Volumes are never removed.

use crate::model::{
    ActualContainer, ActualState, ContainerSpec, DesiredState, NetworkSpec, VolumeSpec,
};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerStep {
    Create {
        spec: ContainerSpec,
    },
    /// The spec hash changed, or the image tag now names another image: replace `old_id` with a
    /// container made from `spec`.
    Recreate {
        spec: ContainerSpec,
        old_id: String,
        old_hash: String,
    },
    /// Up to date but not running.
    Start {
        spec: ContainerSpec,
        id: String,
    },
    /// Up to date and running, but a dependency marked `restart: true` is being replaced.
    Restart {
        spec: ContainerSpec,
        id: String,
    },
}

impl ContainerStep {
    pub fn spec(&self) -> &ContainerSpec {
        match self {
            ContainerStep::Create { spec }
            | ContainerStep::Recreate { spec, .. }
            | ContainerStep::Start { spec, .. }
            | ContainerStep::Restart { spec, .. } => spec,
        }
    }
    pub fn verb(&self) -> &'static str {
        match self {
            ContainerStep::Create { .. } => "create",
            ContainerStep::Recreate { .. } => "recreate",
            ContainerStep::Start { .. } => "start",
            ContainerStep::Restart { .. } => "restart",
        }
    }
    /// Whether the step makes a new container (and so needs its image).
    pub fn needs_image(&self) -> bool {
        matches!(
            self,
            ContainerStep::Create { .. } | ContainerStep::Recreate { .. }
        )
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub create_networks: Vec<NetworkSpec>,
    pub create_volumes: Vec<VolumeSpec>,
    /// Images that create/recreate steps need but the engine does not have (sorted): those steps fail.
    pub missing_images: Vec<String>,
    pub remove_containers: Vec<ActualContainer>,
    /// Waves in dependency order; each wave's steps are independent of each other.
    pub waves: Vec<Vec<ContainerStep>>,
    pub remove_networks: Vec<String>,
    /// Ids of the desired containers that exist now, by (stack, service): what dependency waits look
    /// at for services this plan does not touch.
    pub existing: BTreeMap<(String, String), Vec<String>>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.create_networks.is_empty()
            && self.create_volumes.is_empty()
            && self.remove_containers.is_empty()
            && self.waves.iter().all(Vec::is_empty)
            && self.remove_networks.is_empty()
    }

    /// One line per step, for logs and `--dry-run` style output.
    pub fn describe(&self) -> Vec<String> {
        let mut out = Vec::new();
        out.extend(
            self.create_networks
                .iter()
                .map(|n| format!("create network {}", n.name)),
        );
        out.extend(
            self.create_volumes
                .iter()
                .map(|v| format!("create volume {}", v.name)),
        );
        out.extend(
            self.remove_containers
                .iter()
                .map(|c| format!("remove container {}", c.name)),
        );
        for wave in &self.waves {
            out.extend(
                wave.iter()
                    .map(|s| format!("{} container {}", s.verb(), s.spec().name)),
            );
        }
        out.extend(
            self.remove_networks
                .iter()
                .map(|n| format!("remove network {n}")),
        );
        out
    }
}

pub fn plan(desired: &DesiredState, actual: &ActualState) -> Plan {
    let mut p = Plan::default();

    let have_nets: BTreeSet<&str> = actual.networks.iter().map(|n| n.name.as_str()).collect();
    let want_nets: BTreeSet<&str> = desired.networks().map(|n| n.name.as_str()).collect();
    p.create_networks = desired
        .networks()
        .filter(|n| !have_nets.contains(n.name.as_str()))
        .cloned()
        .collect();
    p.remove_networks = actual
        .networks
        .iter()
        .filter(|n| !want_nets.contains(n.name.as_str()))
        .map(|n| n.name.clone())
        .collect();

    let have_vols: BTreeSet<&str> = actual.volumes.iter().map(|v| v.name.as_str()).collect();
    p.create_volumes = desired
        .volumes()
        .filter(|v| !have_vols.contains(v.name.as_str()))
        .cloned()
        .collect();

    let by_name: BTreeMap<&str, &ActualContainer> = actual
        .containers
        .iter()
        .map(|c| (c.name.as_str(), c))
        .collect();
    let wanted: BTreeSet<&str> = desired.containers().map(|c| c.name.as_str()).collect();
    p.remove_containers = actual
        .containers
        .iter()
        .filter(|c| !wanted.contains(c.name.as_str()))
        .cloned()
        .collect();

    for c in &actual.containers {
        if wanted.contains(c.name.as_str()) {
            p.existing
                .entry((c.stack.clone(), c.service.clone()))
                .or_default()
                .push(c.id.clone());
        }
    }

    let mut missing = BTreeSet::new();
    for stack in desired.stacks.values() {
        let mut steps: BTreeMap<&str, Vec<ContainerStep>> = BTreeMap::new();
        // Services that get a new container in this plan (for `depends_on: {restart: true}`).
        let mut replaced: BTreeSet<&str> = BTreeSet::new();
        let mut unchanged_running: Vec<(&ContainerSpec, &ActualContainer)> = Vec::new();
        for spec in &stack.containers {
            let step = match by_name.get(spec.name.as_str()) {
                None => Some(ContainerStep::Create { spec: spec.clone() }),
                Some(have) => {
                    let hash = spec.spec_hash();
                    let image_moved = match actual.images.get(&spec.image) {
                        Some(id) => !have.image_id.is_empty() && *id != have.image_id,
                        None => false,
                    };
                    if have.spec_hash != hash || image_moved {
                        Some(ContainerStep::Recreate {
                            spec: spec.clone(),
                            old_id: have.id.clone(),
                            old_hash: have.spec_hash.clone(),
                        })
                    } else if !have.running {
                        if spec.run_once && have.exit_code == Some(0) {
                            None // a finished one-shot job
                        } else {
                            Some(ContainerStep::Start {
                                spec: spec.clone(),
                                id: have.id.clone(),
                            })
                        }
                    } else {
                        unchanged_running.push((spec, have));
                        None
                    }
                }
            };
            if let Some(step) = step {
                if step.needs_image() {
                    replaced.insert(spec.service.as_str());
                    if !actual.images.contains_key(&spec.image) {
                        missing.insert(spec.image.clone());
                    }
                }
                steps.entry(spec.service.as_str()).or_default().push(step);
            }
        }
        for (spec, have) in unchanged_running {
            let restart = spec
                .depends_on
                .iter()
                .any(|d| d.restart && replaced.contains(d.service.as_str()));
            if restart {
                steps
                    .entry(spec.service.as_str())
                    .or_default()
                    .push(ContainerStep::Restart {
                        spec: spec.clone(),
                        id: have.id.clone(),
                    });
            }
        }
        // Waves of this stack, by dependency depth of each service.
        let deps: BTreeMap<&str, Vec<&str>> = stack
            .containers
            .iter()
            .map(|c| (c.service.as_str(), c.dependency_names().collect()))
            .collect();
        for (service, service_steps) in steps {
            let d = depth(service, &deps, &mut Vec::new());
            while p.waves.len() <= d {
                p.waves.push(Vec::new());
            }
            p.waves[d].extend(service_steps);
        }
    }
    for wave in &mut p.waves {
        wave.sort_by(|a, b| a.spec().name.cmp(&b.spec().name));
    }
    p.missing_images = missing.into_iter().collect();
    p.waves.retain(|w| !w.is_empty());
    p
}

/// Length of the longest `depends_on` chain below `service` (0 for none). Render refuses cycles; a cycle
/// that got here anyway is cut rather than looping.
fn depth<'a>(
    service: &'a str,
    deps: &BTreeMap<&'a str, Vec<&'a str>>,
    seen: &mut Vec<&'a str>,
) -> usize {
    if seen.contains(&service) {
        return 0;
    }
    seen.push(service);
    let d = deps
        .get(service)
        .map(|ds| {
            ds.iter()
                .map(|d| 1 + depth(d, deps, seen))
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0);
    seen.pop();
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ActualObject, Condition, Dependency, StackSpec};

    fn spec(stack: &str, service: &str, deps: &[&str]) -> ContainerSpec {
        ContainerSpec {
            name: format!("{stack}-{service}-1"),
            stack: stack.into(),
            service: service.into(),
            replica: 1,
            image: format!("img-{service}"),
            restart: "no".into(),
            depends_on: deps
                .iter()
                .map(|s| Dependency {
                    service: s.to_string(),
                    condition: Condition::ServiceStarted,
                    restart: false,
                })
                .collect(),
            ..Default::default()
        }
    }

    fn desired(stacks: Vec<(&str, Vec<ContainerSpec>)>) -> DesiredState {
        let mut d = DesiredState::default();
        for (name, containers) in stacks {
            d.stacks.insert(
                name.into(),
                StackSpec {
                    name: name.into(),
                    dir: name.into(),
                    networks: vec![NetworkSpec {
                        name: format!("{name}_default"),
                        stack: name.into(),
                        driver: None,
                        internal: false,
                        labels: Default::default(),
                        ..Default::default()
                    }],
                    containers,
                    volumes: vec![VolumeSpec {
                        name: format!("{name}_data"),
                        stack: name.into(),
                        driver: None,
                        labels: Default::default(),
                        ..Default::default()
                    }],
                },
            );
        }
        d
    }

    fn running(spec: &ContainerSpec, id: &str) -> ActualContainer {
        ActualContainer {
            id: id.into(),
            name: spec.name.clone(),
            stack: spec.stack.clone(),
            service: spec.service.clone(),
            replica: spec.replica,
            spec_hash: spec.spec_hash(),
            image_id: format!("sha256:{}", spec.image),
            running: true,
            exit_code: None,
            state: "running".into(),
        }
    }

    fn converged(d: &DesiredState) -> ActualState {
        ActualState {
            containers: d
                .containers()
                .enumerate()
                .map(|(i, c)| running(c, &format!("id{i}")))
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

    fn images(d: &DesiredState) -> BTreeMap<String, String> {
        d.containers()
            .map(|c| (c.image.clone(), format!("sha256:{}", c.image)))
            .collect()
    }

    #[test]
    fn fresh_converge_creates_everything_in_dependency_waves() {
        let d = desired(vec![(
            "s",
            vec![
                spec("s", "web", &["api"]),
                spec("s", "api", &["db"]),
                spec("s", "db", &[]),
            ],
        )]);
        let p = plan(&d, &ActualState::default());
        assert_eq!(p.create_networks.len(), 1);
        assert_eq!(p.create_volumes.len(), 1);
        assert_eq!(p.missing_images, vec!["img-api", "img-db", "img-web"]);
        let with_images = ActualState {
            images: images(&d),
            ..Default::default()
        };
        assert!(plan(&d, &with_images).missing_images.is_empty());
        let waves: Vec<Vec<&str>> = p
            .waves
            .iter()
            .map(|w| w.iter().map(|s| s.spec().service.as_str()).collect())
            .collect();
        assert_eq!(waves, vec![vec!["db"], vec!["api"], vec!["web"]]);
        assert!(p
            .waves
            .iter()
            .flatten()
            .all(|s| matches!(s, ContainerStep::Create { .. })));
    }

    #[test]
    fn converged_state_plans_nothing() {
        let d = desired(vec![(
            "s",
            vec![spec("s", "a", &[]), spec("s", "b", &["a"])],
        )]);
        let p = plan(&d, &converged(&d));
        assert!(p.is_empty(), "{p:?}");
        assert!(p.missing_images.is_empty());
    }

    #[test]
    fn changed_spec_recreates_only_that_container() {
        let d = desired(vec![(
            "s",
            vec![
                spec("s", "a", &[]),
                spec("s", "b", &[]),
                spec("s", "c", &[]),
            ],
        )]);
        let actual = converged(&d);
        let mut d2 = d.clone();
        d2.stacks.get_mut("s").unwrap().containers[1].env = vec!["X=1".into()];
        let p = plan(&d2, &actual);
        let steps: Vec<_> = p.waves.iter().flatten().collect();
        assert_eq!(steps.len(), 1);
        match steps[0] {
            ContainerStep::Recreate { spec, old_id, .. } => {
                assert_eq!(spec.service, "b");
                assert_eq!(old_id, "id1");
            }
            other => panic!("expected recreate, got {other:?}"),
        }
        assert!(p.missing_images.is_empty());
        assert!(p.remove_containers.is_empty());
    }

    #[test]
    fn stopped_container_is_started_without_an_image() {
        let d = desired(vec![("s", vec![spec("s", "a", &[])])]);
        let mut actual = converged(&d);
        actual.containers[0].running = false;
        let p = plan(&d, &actual);
        assert!(matches!(p.waves[0][0], ContainerStep::Start { .. }));
        actual.images.clear();
        assert!(
            plan(&d, &actual).missing_images.is_empty(),
            "a start needs no image"
        );
    }

    #[test]
    fn removed_service_and_stack_are_removed_but_volumes_never() {
        let d = desired(vec![
            ("s", vec![spec("s", "a", &[]), spec("s", "b", &[])]),
            ("t", vec![spec("t", "x", &[])]),
        ]);
        let actual = converged(&d);
        let d2 = desired(vec![("s", vec![spec("s", "a", &[])])]);
        let p = plan(&d2, &actual);
        let removed: Vec<&str> = p
            .remove_containers
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(removed, vec!["s-b-1", "t-x-1"]);
        assert_eq!(p.remove_networks, vec!["t_default"]);
        assert!(p.waves.is_empty());
        // Plan has no way to express volume removal at all; the desired-less volume simply stays.
        assert!(p.create_volumes.is_empty());
    }

    #[test]
    fn stray_names_from_an_interrupted_recreate_are_removed() {
        let d = desired(vec![("s", vec![spec("s", "a", &[])])]);
        let mut actual = converged(&d);
        let mut stray = actual.containers[0].clone();
        stray.name = "s-a-1_berth-old".into();
        stray.id = "old".into();
        actual.containers.push(stray);
        let p = plan(&d, &actual);
        assert_eq!(p.remove_containers.len(), 1);
        assert_eq!(p.remove_containers[0].id, "old");
        assert!(p.waves.is_empty());
    }

    #[test]
    fn replicas_scale_down_removes_extra() {
        let mut a2 = spec("s", "a", &[]);
        a2.replica = 2;
        a2.name = "s-a-2".into();
        let d = desired(vec![("s", vec![spec("s", "a", &[]), a2])]);
        let actual = converged(&d);
        let d1 = desired(vec![("s", vec![spec("s", "a", &[])])]);
        let p = plan(&d1, &actual);
        assert_eq!(p.remove_containers.len(), 1);
        assert_eq!(p.remove_containers[0].name, "s-a-2");
    }

    #[test]
    fn empty_desired_removes_all_owned_containers() {
        let d = desired(vec![("s", vec![spec("s", "a", &[])])]);
        let p = plan(&DesiredState::default(), &converged(&d));
        assert_eq!(p.remove_containers.len(), 1);
        assert_eq!(p.remove_networks.len(), 1);
    }

    #[test]
    fn a_moved_image_tag_recreates_its_containers() {
        let d = desired(vec![("s", vec![spec("s", "a", &[]), spec("s", "b", &[])])]);
        let mut actual = converged(&d);
        actual.images.insert("img-a".into(), "sha256:new-a".into());
        let p = plan(&d, &actual);
        let steps: Vec<_> = p.waves.iter().flatten().collect();
        assert_eq!(steps.len(), 1);
        assert!(matches!(steps[0], ContainerStep::Recreate { spec, .. } if spec.service == "a"));
    }

    #[test]
    fn a_finished_one_shot_job_is_not_started_again_but_a_stopped_service_is() {
        let mut job = spec("s", "migrate", &[]);
        job.run_once = true;
        let d = desired(vec![("s", vec![job, spec("s", "web", &[])])]);
        let mut actual = converged(&d);
        for c in &mut actual.containers {
            c.running = false;
            c.exit_code = Some(0);
        }
        let p = plan(&d, &actual);
        let names: Vec<&str> = p
            .waves
            .iter()
            .flatten()
            .map(|s| s.spec().service.as_str())
            .collect();
        assert_eq!(names, vec!["web"]);
        // A job that failed is run again.
        actual.containers[0].exit_code = Some(1);
        assert_eq!(plan(&d, &actual).waves.iter().flatten().count(), 2);
    }

    #[test]
    fn dependents_with_restart_true_restart_when_their_dependency_is_replaced() {
        let mut web = spec("s", "web", &["db"]);
        web.depends_on[0].restart = true;
        let other = spec("s", "other", &["db"]);
        let d = desired(vec![("s", vec![spec("s", "db", &[]), web, other])]);
        let actual = converged(&d);
        let mut d2 = d.clone();
        let db = d2
            .stacks
            .get_mut("s")
            .unwrap()
            .containers
            .iter_mut()
            .find(|c| c.service == "db")
            .unwrap();
        db.env = vec!["V=2".into()];
        let p = plan(&d2, &actual);
        let waves: Vec<Vec<(&str, &str)>> = p
            .waves
            .iter()
            .map(|w| {
                w.iter()
                    .map(|s| (s.verb(), s.spec().service.as_str()))
                    .collect()
            })
            .collect();
        assert_eq!(
            waves,
            vec![vec![("recreate", "db")], vec![("restart", "web")]]
        );
    }
}
