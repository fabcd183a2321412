//! `plan(desired, actual) -> Plan`: a pure function, no I/O.
//!
//! Order of a plan, and why:
//! 1. create missing networks and volumes (containers need them);
//! 2. (images were pulled before planning, by pull policy, before anything is stopped: a container whose
//!    image is not available is not touched, and its step fails with the image named);
//! 3. remove owned containers that are no longer desired (frees names and host ports for what follows),
//!    and what an interrupted create or recreate left (`<name>_berth-new`: never complete, so never
//!    started; `<name>_berth-old` once `<name>` exists — while it does not, the recreate resumes from it);
//! 4. create / recreate / start / restart containers, in waves: a container's wave comes after the waves
//!    of the services it depends on; containers in one wave are independent and may run concurrently;
//! 5. remove owned networks no longer desired (after their containers are gone).
//!
//! Volumes are never removed.

use crate::model::{
    ActualContainer, ActualState, ContainerSpec, DesiredState, NetworkSpec, StackSpec, VolumeSpec,
};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerStep {
    Create {
        spec: ContainerSpec,
    },
    /// The spec hash changed, or the image tag now names another image: replace `old_id` with a
    /// container made from `spec` (which takes over its anonymous volumes).
    Recreate {
        spec: ContainerSpec,
        old_id: String,
        old_hash: String,
        /// The old container's name now: `spec.name`, or `<name>_berth-old` when a recreate was
        /// interrupted after moving it aside and before the new container took the name.
        old_name: String,
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
    plan_networks_and_volumes(desired, actual, &mut p);

    let by_name: BTreeMap<&str, &ActualContainer> = actual
        .containers
        .iter()
        .map(|c| (c.name.as_str(), c))
        .collect();
    let wanted: BTreeSet<&str> = desired.containers().map(|c| c.name.as_str()).collect();
    let resumed = interrupted_recreates(desired, &by_name, &wanted);
    // Owned containers no desired name: gone from the desired state, or left by an interrupted create
    // or recreate (`<name>_berth-new`, `<name>_berth-old`) — except an old one a recreate resumes from.
    p.remove_containers = actual
        .containers
        .iter()
        .filter(|c| !wanted.contains(c.name.as_str()))
        .filter(|c| !resumed.values().any(|r| r.id == c.id))
        .cloned()
        .collect();
    p.existing = existing(actual, &wanted);

    let mut missing = BTreeSet::new();
    for stack in desired.stacks.values() {
        let steps = stack_steps(stack, &by_name, &resumed, &actual.images, &mut missing);
        add_waves(&mut p.waves, stack, steps);
    }
    for wave in &mut p.waves {
        wave.sort_by(|a, b| a.spec().name.cmp(&b.spec().name));
    }
    p.missing_images = missing.into_iter().collect();
    p.waves.retain(|w| !w.is_empty());
    p
}

/// The networks to create and remove, and the volumes to create (volumes are never removed).
fn plan_networks_and_volumes(desired: &DesiredState, actual: &ActualState, p: &mut Plan) {
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
}

/// Ids of the existing containers under a desired name, by (stack, service).
fn existing(
    actual: &ActualState,
    wanted: &BTreeSet<&str>,
) -> BTreeMap<(String, String), Vec<String>> {
    let mut existing: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for c in &actual.containers {
        if wanted.contains(c.name.as_str()) {
            existing
                .entry((c.stack.clone(), c.service.clone()))
                .or_default()
                .push(c.id.clone());
        }
    }
    existing
}

/// The steps of one stack's containers, by service: what each needs, then the restarts of running
/// containers whose `restart: true` dependency gets a new container. Images the new containers need
/// but the engine lacks go into `missing`.
fn stack_steps<'s>(
    stack: &'s StackSpec,
    by_name: &BTreeMap<&str, &ActualContainer>,
    resumed: &BTreeMap<String, &ActualContainer>,
    images: &BTreeMap<String, String>,
    missing: &mut BTreeSet<String>,
) -> BTreeMap<&'s str, Vec<ContainerStep>> {
    let mut steps: BTreeMap<&str, Vec<ContainerStep>> = BTreeMap::new();
    // Services that get a new container in this plan (for `depends_on: {restart: true}`).
    let mut replaced: BTreeSet<&str> = BTreeSet::new();
    let mut unchanged_running: Vec<(&ContainerSpec, &ActualContainer)> = Vec::new();
    for spec in &stack.containers {
        let have = by_name.get(spec.name.as_str()).copied();
        let old = resumed.get(spec.name.as_str()).copied();
        match need(spec, have, old, images) {
            Need::Step(step) => {
                if step.needs_image() {
                    replaced.insert(spec.service.as_str());
                    if !images.contains_key(&spec.image) {
                        missing.insert(spec.image.clone());
                    }
                }
                steps.entry(spec.service.as_str()).or_default().push(step);
            }
            Need::Running(have) => unchanged_running.push((spec, have)),
            Need::Nothing => {}
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
    steps
}

/// Put one stack's steps into `waves`, by the dependency depth of each service.
fn add_waves(
    waves: &mut Vec<Vec<ContainerStep>>,
    stack: &StackSpec,
    steps: BTreeMap<&str, Vec<ContainerStep>>,
) {
    let deps: BTreeMap<&str, Vec<&str>> = stack
        .containers
        .iter()
        .map(|c| (c.service.as_str(), c.dependency_names().collect()))
        .collect();
    for (service, service_steps) in steps {
        let d = depth(service, &deps, &mut Vec::new());
        while waves.len() <= d {
            waves.push(Vec::new());
        }
        waves[d].extend(service_steps);
    }
}

/// What one desired container needs.
enum Need<'a> {
    Step(ContainerStep),
    /// Up to date and running: restarted only when a dependency marked `restart: true` is replaced.
    Running(&'a ActualContainer),
    /// Up to date and done (a one-shot job that exited 0).
    Nothing,
}

/// What `spec` needs, given the container under its name (`have`) and, when there is none, the old
/// container an interrupted recreate left aside (`aside`); `images`: the current id of each image.
fn need<'a>(
    spec: &ContainerSpec,
    have: Option<&'a ActualContainer>,
    aside: Option<&ActualContainer>,
    images: &BTreeMap<String, String>,
) -> Need<'a> {
    let recreate = |old: &ActualContainer| {
        Need::Step(ContainerStep::Recreate {
            spec: spec.clone(),
            old_id: old.id.clone(),
            old_hash: old.spec_hash.clone(),
            old_name: old.name.clone(),
        })
    };
    let Some(have) = have else {
        return match aside {
            Some(old) => recreate(old),
            None => Need::Step(ContainerStep::Create { spec: spec.clone() }),
        };
    };
    let image_moved = match images.get(&spec.image) {
        Some(id) => !have.image_id.is_empty() && *id != have.image_id,
        None => false,
    };
    if have.state == "removing" {
        // Being removed (by hand, or a removal still running): its `destroy` event brings the next cycle,
        // which creates it afresh; a start now would fail.
        Need::Nothing
    } else if have.spec_hash != spec.spec_hash() || image_moved {
        recreate(have)
    } else if have.running {
        Need::Running(have)
    } else if (spec.run_once || (have.finished && spec.may_finish())) && have.exit_code == Some(0) {
        // A one-shot job that did its work: others wait for it, or the agent saw it exit 0 by itself.
        Need::Nothing
    } else {
        Need::Step(ContainerStep::Start {
            spec: spec.clone(),
            id: have.id.clone(),
        })
    }
}

/// Desired containers that do not exist while the old container of an interrupted recreate does, left
/// aside as `<name>_berth-old` (same stack and service, and not itself a desired name): by desired
/// name. Their recreate resumes from that container, so the new one takes over its anonymous volumes
/// (removing it and creating afresh would leave them behind) and a failure puts it back.
fn interrupted_recreates<'a>(
    desired: &DesiredState,
    by_name: &BTreeMap<&str, &'a ActualContainer>,
    wanted: &BTreeSet<&str>,
) -> BTreeMap<String, &'a ActualContainer> {
    desired
        .containers()
        .filter(|spec| !by_name.contains_key(spec.name.as_str()))
        .filter_map(|spec| {
            let aside = format!("{}{}", spec.name, crate::apply::OLD_SUFFIX);
            let old = *by_name.get(aside.as_str())?;
            let same = old.stack == spec.stack && old.service == spec.service;
            (same && !wanted.contains(aside.as_str())).then(|| (spec.name.clone(), old))
        })
        .collect()
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
mod tests;
