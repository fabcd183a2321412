//! `berth diff`: the describing of a plan, pure. From a [`Plan`], the [`ActualState`] it was made against
//! and the old specs that are known (by spec hash), say what converging would do, by stack and service:
//! create / recreate (naming the top-level spec fields that differ, never their values) / start / restart
//! / remove, networks and volumes, images that would be pulled, and what would make the apply fail.
//! [`between`] describes two revisions the same way, with no engine (`berth fleet-diff`).
//!
//! Reading the engine without changing it is [`engine`]'s; printing is `cli/diff.rs`'s.

pub mod engine;

use crate::apply::OLD_SUFFIX;
use crate::images::PullPolicy;
use crate::model::{ActualState, DesiredState};
use crate::plan::{ContainerStep, Plan};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// Old specs by spec hash, as canonical JSON values (see [`crate::model::ContainerSpec::canonical_json`]).
pub type KnownSpecs = BTreeMap<String, Value>;

/// What converging would change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Description {
    /// Stacks with something to do, by name.
    pub stacks: Vec<StackChanges>,
    /// Images the apply would pull first (a pull may move a tag, which recreates its containers).
    #[serde(default)]
    pub pulls: Vec<Pull>,
    /// Why applying this would fail (an image that cannot be had, a preflight check); nothing of the
    /// plan would be done for them.
    #[serde(default)]
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackChanges {
    pub name: String,
    /// Services with container steps, by name.
    #[serde(default)]
    pub services: Vec<ServiceChanges>,
    #[serde(default)]
    pub networks: Vec<ObjectChange>,
    #[serde(default)]
    pub volumes: Vec<ObjectChange>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceChanges {
    pub name: String,
    /// In the order the apply would take them.
    pub containers: Vec<ContainerChange>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerChange {
    pub container: String,
    pub action: Action,
    pub why: Why,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Create,
    Recreate,
    Start,
    Restart,
    Remove,
}

impl Action {
    pub fn word(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Recreate => "recreate",
            Action::Start => "start",
            Action::Restart => "restart",
            Action::Remove => "remove",
        }
    }
}

/// Why a container step is planned. Field names only, never values: a value may be a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Why {
    /// Not on the engine.
    New,
    /// The spec hash changed; these top-level fields of the spec differ.
    SpecChanged { fields: Vec<String> },
    /// The spec hash changed, and the old spec is not known (made by `berth apply`, or before history).
    SpecChangedUnknown,
    /// Same spec, but the image reference now names another local image.
    ImageMoved { image: String },
    /// Up to date but not running.
    NotRunning { state: String },
    /// Running and up to date, but these dependencies (`depends_on: {restart: true}`) are replaced.
    DependencyReplaced { services: Vec<String> },
    /// Its stack is no longer in Git.
    StackRemoved,
    /// Its service is no longer in its stack.
    ServiceRemoved,
    /// Its replica number is above the service's replicas.
    ReplicaRemoved,
    /// Left aside by an interrupted recreate.
    Leftover,
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Why::New => f.write_str("not on the engine"),
            Why::SpecChanged { fields } if fields.is_empty() => f.write_str("spec changed"),
            Why::SpecChanged { fields } => write!(f, "({})", fields.join(", ")),
            Why::SpecChangedUnknown => f.write_str("spec changed (old spec unknown)"),
            Why::ImageMoved { image } => write!(f, "image {image} now names another image"),
            Why::NotRunning { state } => write!(f, "not running ({state})"),
            Why::DependencyReplaced { services } => write!(
                f,
                "{} replaced (depends_on restart: true)",
                services.join(", ")
            ),
            Why::StackRemoved => f.write_str("stack no longer in Git"),
            Why::ServiceRemoved => f.write_str("service no longer in Git"),
            Why::ReplicaRemoved => f.write_str("replica no longer wanted"),
            Why::Leftover => f.write_str("left over by an interrupted recreate"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectChange {
    pub name: String,
    pub action: ObjectAction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectAction {
    Create,
    Remove,
    /// An owned volume no longer used: berth never deletes data, so it stays (not a change).
    Keep,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pull {
    pub image: String,
    /// `not on the engine`, `pull_policy always`, `pull_policy daily: last pull older than that`.
    pub reason: String,
}

impl Description {
    /// Whether converging would change a container, network or volume. Pulls alone do not count (with
    /// `pull_policy: always` every run pulls), and neither do kept volumes.
    pub fn has_changes(&self) -> bool {
        self.stacks.iter().any(|s| {
            !s.services.is_empty()
                || s.networks.iter().any(|n| n.action != ObjectAction::Keep)
                || s.volumes.iter().any(|v| v.action != ObjectAction::Keep)
        })
    }

    /// How many container steps of each action, in action order.
    pub fn counts(&self) -> BTreeMap<Action, usize> {
        let mut n = BTreeMap::new();
        for c in self
            .stacks
            .iter()
            .flat_map(|s| &s.services)
            .flat_map(|s| &s.containers)
        {
            *n.entry(c.action).or_insert(0) += 1;
        }
        n
    }
}

/// The old spec hashes of the recreates whose spec changed: the specs [`describe`] compares against.
pub fn changed_hashes(plan: &Plan) -> BTreeSet<String> {
    plan.waves
        .iter()
        .flatten()
        .filter_map(|s| match s {
            ContainerStep::Recreate { spec, old_hash, .. } if *old_hash != spec.spec_hash() => {
                Some(old_hash.clone())
            }
            _ => None,
        })
        .collect()
}

/// Describe `plan`, made for `desired` against `actual`. `known`: old specs by hash; `pulls` and
/// `problems` are passed through.
pub fn describe(
    desired: &DesiredState,
    actual: &ActualState,
    plan: &Plan,
    known: &KnownSpecs,
    pulls: Vec<Pull>,
    problems: Vec<String>,
) -> Description {
    let mut stacks: BTreeMap<String, StackChanges> = BTreeMap::new();
    for ((stack_name, service), changes) in container_changes(desired, actual, plan, known) {
        stack(&mut stacks, &stack_name)
            .services
            .push(ServiceChanges {
                name: service,
                containers: changes,
            });
    }
    for n in &plan.create_networks {
        stack(&mut stacks, &n.stack).networks.push(ObjectChange {
            name: n.name.clone(),
            action: ObjectAction::Create,
        });
    }
    for name in &plan.remove_networks {
        let owner = actual
            .networks
            .iter()
            .find(|n| n.name == *name)
            .map(|n| n.stack.as_str())
            .unwrap_or_default();
        stack(&mut stacks, owner).networks.push(ObjectChange {
            name: name.clone(),
            action: ObjectAction::Remove,
        });
    }
    for v in &plan.create_volumes {
        stack(&mut stacks, &v.stack).volumes.push(ObjectChange {
            name: v.name.clone(),
            action: ObjectAction::Create,
        });
    }
    let wanted_volumes: BTreeSet<&str> = desired.volumes().map(|v| v.name.as_str()).collect();
    for v in &actual.volumes {
        if !wanted_volumes.contains(v.name.as_str()) {
            stack(&mut stacks, &v.stack).volumes.push(ObjectChange {
                name: v.name.clone(),
                action: ObjectAction::Keep,
            });
        }
    }
    Description {
        stacks: stacks.into_values().collect(),
        pulls,
        problems,
    }
}

/// The container steps of `plan` by (stack, service): removals first, then the waves, as apply runs them.
fn container_changes(
    desired: &DesiredState,
    actual: &ActualState,
    plan: &Plan,
    known: &KnownSpecs,
) -> BTreeMap<(String, String), Vec<ContainerChange>> {
    let mut containers: BTreeMap<(String, String), Vec<ContainerChange>> = BTreeMap::new();
    for c in &plan.remove_containers {
        containers
            .entry((c.stack.clone(), c.service.clone()))
            .or_default()
            .push(ContainerChange {
                container: c.name.clone(),
                action: Action::Remove,
                why: removal_reason(desired, &c.name, &c.stack, &c.service),
            });
    }
    let replaced: BTreeSet<(&str, &str)> = plan
        .waves
        .iter()
        .flatten()
        .filter(|s| s.needs_image())
        .map(|s| (s.spec().stack.as_str(), s.spec().service.as_str()))
        .collect();
    for step in plan.waves.iter().flatten() {
        let spec = step.spec();
        let (action, why) = step_reason(step, actual, &replaced, known);
        containers
            .entry((spec.stack.clone(), spec.service.clone()))
            .or_default()
            .push(ContainerChange {
                container: spec.name.clone(),
                action,
                why,
            });
    }
    containers
}

/// What a step does and why. `replaced`: the (stack, service) pairs that get new containers.
fn step_reason(
    step: &ContainerStep,
    actual: &ActualState,
    replaced: &BTreeSet<(&str, &str)>,
    known: &KnownSpecs,
) -> (Action, Why) {
    let spec = step.spec();
    match step {
        ContainerStep::Create { .. } => (Action::Create, Why::New),
        ContainerStep::Recreate { old_hash, .. } => {
            (Action::Recreate, recreate_reason(spec, old_hash, known))
        }
        ContainerStep::Start { id, .. } => {
            let state = actual
                .containers
                .iter()
                .find(|c| c.id == *id)
                .map(|c| c.state.clone())
                .unwrap_or_else(|| "stopped".into());
            (Action::Start, Why::NotRunning { state })
        }
        ContainerStep::Restart { .. } => {
            let services = spec
                .depends_on
                .iter()
                .filter(|d| {
                    d.restart && replaced.contains(&(spec.stack.as_str(), d.service.as_str()))
                })
                .map(|d| d.service.clone())
                .collect();
            (Action::Restart, Why::DependencyReplaced { services })
        }
    }
}

fn stack<'a>(stacks: &'a mut BTreeMap<String, StackChanges>, name: &str) -> &'a mut StackChanges {
    stacks
        .entry(name.to_string())
        .or_insert_with(|| StackChanges {
            name: name.to_string(),
            ..Default::default()
        })
}

fn recreate_reason(spec: &crate::model::ContainerSpec, old_hash: &str, known: &KnownSpecs) -> Why {
    if spec.spec_hash() == old_hash {
        return Why::ImageMoved {
            image: spec.image.clone(),
        };
    }
    let new = serde_json::from_str::<Value>(&spec.canonical_json()).ok();
    match (known.get(old_hash), new) {
        (Some(old), Some(new)) => match differing_fields(old, &new) {
            Some(fields) => Why::SpecChanged { fields },
            None => Why::SpecChangedUnknown,
        },
        _ => Why::SpecChangedUnknown,
    }
}

fn removal_reason(desired: &DesiredState, name: &str, stack: &str, service: &str) -> Why {
    if name.ends_with(OLD_SUFFIX) {
        return Why::Leftover;
    }
    match desired.stacks.get(stack) {
        None => Why::StackRemoved,
        Some(s) if s.containers.iter().any(|c| c.service == service) => Why::ReplicaRemoved,
        Some(_) => Why::ServiceRemoved,
    }
}

/// The names of the top-level fields whose values differ between two spec objects (a field absent on
/// one side is at its default there). `None` when either is not an object.
pub fn differing_fields(old: &Value, new: &Value) -> Option<Vec<String>> {
    let (old, new) = (old.as_object()?, new.as_object()?);
    let keys: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    Some(
        keys.into_iter()
            .filter(|k| old.get(*k) != new.get(*k))
            .cloned()
            .collect(),
    )
}

/// The spec in an `io.berth.spec` label, if it is the one the container's spec hash was computed over
/// (a label edited by hand, or from another spec, is not believed).
pub fn verified_spec(label: &str, spec_hash: &str) -> Option<Value> {
    if crate::model::hash_canonical(label) != spec_hash {
        return None;
    }
    serde_json::from_str(label).ok()
}

/// The specs among `states` (newest first: stored revisions) whose hash is in `wanted`.
pub fn specs_in<'a>(
    states: impl IntoIterator<Item = &'a DesiredState>,
    wanted: &BTreeSet<String>,
) -> KnownSpecs {
    let mut found = KnownSpecs::new();
    for state in states {
        if found.len() == wanted.len() {
            break;
        }
        for spec in state.containers() {
            let hash = spec.spec_hash();
            if wanted.contains(&hash) && !found.contains_key(&hash) {
                if let Ok(v) = serde_json::from_str(&spec.canonical_json()) {
                    found.insert(hash, v);
                }
            }
        }
    }
    found
}

/// Why an image would be pulled (see [`PullPolicy::wants_pull`], which decides whether).
pub fn pull_reason(policy: PullPolicy, present: bool) -> String {
    match policy {
        _ if !present => "not on the engine".into(),
        PullPolicy::Always => "pull_policy always".into(),
        PullPolicy::Every(d) => format!(
            "last pull older than its pull_policy period ({})",
            humantime::format_duration(d)
        ),
        PullPolicy::Never | PullPolicy::Missing => "pull_policy".into(),
    }
}

/// What converging `to` would change on a box that runs `from` exactly: every container of `from`
/// running from the image it names, its networks and volumes there, no image moved. This is the diff of
/// two revisions without an engine (`berth fleet-diff`), made by the same [`crate::plan::plan`] and
/// [`describe`] as `berth diff`; the old specs are `from`'s, so a recreate names its fields.
pub fn between(from: &DesiredState, to: &DesiredState) -> Description {
    use crate::model::{ActualContainer, ActualObject};
    let image_id = |image: &str| format!("image:{image}");
    let actual = ActualState {
        containers: from
            .containers()
            .map(|c| ActualContainer {
                id: format!("container:{}", c.name),
                name: c.name.clone(),
                stack: c.stack.clone(),
                service: c.service.clone(),
                replica: c.replica,
                spec_hash: c.spec_hash(),
                image_id: image_id(&c.image),
                running: true,
                exit_code: None,
                state: "running".into(),
                finished: false,
            })
            .collect(),
        networks: from
            .networks()
            .map(|n| ActualObject {
                name: n.name.clone(),
                stack: n.stack.clone(),
            })
            .collect(),
        volumes: from
            .volumes()
            .map(|v| ActualObject {
                name: v.name.clone(),
                stack: v.stack.clone(),
            })
            .collect(),
        images: from
            .containers()
            .chain(to.containers())
            .map(|c| (c.image.clone(), image_id(&c.image)))
            .collect(),
    };
    let plan = crate::plan::plan(to, &actual);
    let known = specs_in([from], &changed_hashes(&plan));
    describe(to, &actual, &plan, &known, Vec::new(), Vec::new())
}

/// Why the agent cannot say what a diff would change.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    /// Asking the remote failed (`--no-fetch` plans the last fetched commit).
    #[error("{0} (--no-fetch plans the commit fetched last)")]
    Fetch(#[source] crate::error::CycleError),
    #[error("the agent has not fetched a commit yet")]
    NothingFetched,
    #[error("commit {commit}: {source}")]
    Read {
        commit: String,
        #[source]
        source: crate::source::SourceError,
    },
    #[error("commit {commit}: {source}")]
    Render {
        commit: String,
        #[source]
        source: crate::render::RenderError,
    },
    #[error(transparent)]
    Engine(#[from] crate::runtime::RuntimeError),
    /// The agent's store or a blocking task failed.
    #[error(transparent)]
    Agent(crate::error::CycleError),
    #[error("no plan within {}s (cycle_timeout)", after.as_secs())]
    Timeout { after: std::time::Duration },
}

#[cfg(test)]
mod tests;
