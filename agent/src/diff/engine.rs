//! The read-only side of `berth diff`: images inspected (never pulled: the pull policy only decides what
//! would be pulled), the engine observed, the plan made and preflight-checked, and the old specs read from
//! the history store or from containers' `io.berth.spec` labels. Nothing here writes to the engine, the
//! store or the clone.

use super::{KnownSpecs, Pull};
use crate::images::{self, PullLog};
use crate::model::{labels, ActualState, DesiredState};
use crate::plan::{ContainerStep, Plan};
use crate::runtime::{DockerRuntime, Runtime, RuntimeError};
use crate::store::{Store, StoreError};
use std::collections::{BTreeMap, BTreeSet};

/// How many stored revisions are searched for old specs (newest first).
const HISTORY_SCAN: usize = 1000;

/// A plan made against the engine, with what the apply would pull and why it would fail.
#[derive(Debug, Clone, Default)]
pub struct Planned {
    pub actual: ActualState,
    pub plan: Plan,
    pub pulls: Vec<Pull>,
    pub problems: Vec<String>,
}

impl Planned {
    /// Describe the plan for `desired` with the old specs `known`.
    pub fn describe(self, desired: &DesiredState, known: &KnownSpecs) -> super::Description {
        super::describe(
            desired,
            &self.actual,
            &self.plan,
            known,
            self.pulls,
            self.problems,
        )
    }
}

/// Plan `desired` for `agent_id` against the engine as it is: the images present now (what the apply
/// would pull is reported, not pulled; `log`: when the agent last pulled each), one observe, one
/// inventory of names for preflight.
pub async fn plan(
    rt: &DockerRuntime,
    desired: &DesiredState,
    agent_id: &str,
    log: &PullLog,
    finished: &crate::reconcile::DriftLink,
) -> Result<Planned, RuntimeError> {
    let (images, actual, inventory) = tokio::join!(
        inspect_images(rt, desired, log),
        rt.observe(agent_id),
        rt.inventory()
    );
    let (mut actual, inventory) = (actual?, inventory?);
    actual.images = images.ids;
    finished.mark_finished(&mut actual);
    let plan = crate::plan::plan(desired, &actual);
    let mut problems: Vec<String> = plan
        .missing_images
        .iter()
        .filter_map(|image| images.unavailable.get(image).cloned())
        .collect();
    problems.extend(
        crate::preflight::check(desired, &plan, &inventory, agent_id)
            .iter()
            .map(ToString::to_string),
    );
    Ok(Planned {
        actual,
        plan,
        pulls: images.pulls,
        problems,
    })
}

#[derive(Debug, Default)]
struct Images {
    /// Local ids of the images present.
    ids: BTreeMap<String, String>,
    pulls: Vec<Pull>,
    /// Images the apply could not have, with why.
    unavailable: BTreeMap<String, String>,
}

/// What [`images::prepare`] would do, decided the same way, without pulling.
async fn inspect_images(rt: &DockerRuntime, desired: &DesiredState, log: &PullLog) -> Images {
    let now = crate::now_unix();
    let mut out = Images::default();
    for (image, (policy, _platform)) in images::policies(desired) {
        let local = match rt.inspect_image(image).await {
            Ok(l) => l,
            Err(e) => {
                out.unavailable.insert(image.to_string(), e.to_string());
                continue;
            }
        };
        let last = log
            .get(image)
            .copied()
            .or_else(|| local.as_ref().and_then(|l| l.tagged_at));
        let present = local.is_some();
        if policy.wants_pull(present, last, now) {
            out.pulls.push(Pull {
                image: image.to_string(),
                reason: super::pull_reason(policy, present),
            });
        } else if !present {
            out.unavailable.insert(
                image.to_string(),
                format!("image {image} is not on the engine and its pull_policy is never"),
            );
        }
        if let Some(l) = local {
            out.ids.insert(image.to_string(), l.id);
        }
    }
    out
}

/// The old specs of `plan`'s recreates (those not in `known` already) from their containers'
/// `io.berth.spec` labels, where the label is there and matches the container's spec hash. A container
/// that cannot be inspected just stays unknown.
pub async fn specs_from_labels(rt: &DockerRuntime, plan: &Plan, known: &KnownSpecs) -> KnownSpecs {
    let mut found = KnownSpecs::new();
    for step in plan.waves.iter().flatten() {
        let ContainerStep::Recreate {
            old_id, old_hash, ..
        } = step
        else {
            continue;
        };
        if known.contains_key(old_hash) || found.contains_key(old_hash) {
            continue;
        }
        let Ok(inspected) = rt.client().inspect_container(old_id, None).await else {
            continue;
        };
        let label = inspected
            .config
            .and_then(|c| c.labels)
            .and_then(|l| l.get(labels::SPEC).cloned());
        if let Some(spec) = label.and_then(|l| super::verified_spec(&l, old_hash)) {
            found.insert(old_hash.clone(), spec);
        }
    }
    found
}

/// The specs whose hash is in `wanted`, from the stored revisions (newest first). Blocking (sled).
pub fn specs_in_store(store: &Store, wanted: &BTreeSet<String>) -> Result<KnownSpecs, StoreError> {
    if wanted.is_empty() {
        return Ok(KnownSpecs::new());
    }
    let revisions = store.list(HISTORY_SCAN)?;
    Ok(super::specs_in(
        revisions.iter().filter_map(|r| r.desired.as_ref()),
        wanted,
    ))
}
