//! Executes a [`Plan`] through a [`Runtime`]. Failures are isolated per step: a failed step is reported
//! and its dependents are skipped; nothing else is torn down because of it.

use crate::plan::{ContainerStep, Plan};
use crate::runtime::{Owner, Runtime, RuntimeError};
use futures_util::future::join_all;
use std::collections::BTreeSet;

/// Suffix of the old container's name while it is being replaced.
pub const OLD_SUFFIX: &str = "_berth-old";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// `verb object` for every step that succeeded, in order.
    pub done: Vec<String>,
    /// One message per failed or skipped step, naming the object (and stack/service for containers).
    pub errors: Vec<String>,
}

impl ApplyReport {
    pub fn ok(&self) -> bool {
        self.errors.is_empty()
    }
    /// The errors as one message.
    pub fn error_text(&self) -> String {
        self.errors.join("; ")
    }
}

pub async fn apply<R: Runtime>(rt: &R, plan: &Plan, owner: &Owner) -> ApplyReport {
    let mut report = ApplyReport::default();

    for net in &plan.create_networks {
        match rt.create_network(net, owner).await {
            Ok(()) => report.done.push(format!("create network {}", net.name)),
            Err(e) => report
                .errors
                .push(format!("stack {}: create network: {e}", net.stack)),
        }
    }
    for vol in &plan.create_volumes {
        match rt.create_volume(vol, owner).await {
            Ok(()) => report.done.push(format!("create volume {}", vol.name)),
            Err(e) => report
                .errors
                .push(format!("stack {}: create volume: {e}", vol.stack)),
        }
    }

    // Images first, before anything is stopped: a missing image fails while the old container runs.
    let pulls = join_all(
        plan.pull
            .iter()
            .map(|image| async move { (image, rt.ensure_image(image).await) }),
    )
    .await;
    let mut bad_images = BTreeSet::new();
    for (image, result) in pulls {
        if let Err(e) = result {
            report.errors.push(e.to_string());
            bad_images.insert(image.clone());
        }
    }

    let removals = join_all(plan.remove_containers.iter().map(|c| async move {
        let r = async {
            rt.stop_container(&c.id, None).await?;
            rt.remove_container(&c.id).await
        }
        .await;
        (c, r)
    }))
    .await;
    for (c, r) in removals {
        match r {
            Ok(()) => report.done.push(format!("remove container {}", c.name)),
            Err(e) => report.errors.push(format!(
                "stack {}, service {}: remove {}: {e}",
                c.stack, c.service, c.name
            )),
        }
    }

    // (stack, service) pairs that failed: their dependents are skipped.
    let mut failed: BTreeSet<(String, String)> = BTreeSet::new();
    for wave in &plan.waves {
        let results = join_all(wave.iter().map(|step| {
            let spec = step.spec();
            let blocked = if bad_images.contains(&spec.image)
                && !matches!(step, ContainerStep::Start { .. })
            {
                Some(format!("image {} is not available", spec.image))
            } else {
                spec.depends_on
                    .iter()
                    .find(|d| failed.contains(&(spec.stack.clone(), (*d).clone())))
                    .map(|d| format!("skipped: dependency {d} failed"))
            };
            async move {
                let r = match blocked {
                    Some(msg) => Err(msg),
                    None => run_step(rt, step, owner).await.map_err(|e| e.to_string()),
                };
                (step, r)
            }
        }))
        .await;
        for (step, r) in results {
            let spec = step.spec();
            match r {
                Ok(()) => report
                    .done
                    .push(format!("{} container {}", step.verb(), spec.name)),
                Err(e) => {
                    report.errors.push(format!(
                        "stack {}, service {}: {} {}: {e}",
                        spec.stack,
                        spec.service,
                        step.verb(),
                        spec.name
                    ));
                    failed.insert((spec.stack.clone(), spec.service.clone()));
                }
            }
        }
    }

    for name in &plan.remove_networks {
        match rt.remove_network(name).await {
            Ok(()) => report.done.push(format!("remove network {name}")),
            Err(e) => report.errors.push(format!("remove network: {e}")),
        }
    }
    report
}

async fn run_step<R: Runtime>(
    rt: &R,
    step: &ContainerStep,
    owner: &Owner,
) -> Result<(), RuntimeError> {
    match step {
        ContainerStep::Start { id, .. } => rt.start_container(id).await,
        ContainerStep::Create { spec } => {
            let id = rt.create_container(spec, &spec.name, owner).await?;
            if let Err(e) = rt.start_container(&id).await {
                let _ = rt.remove_container(&id).await;
                return Err(e);
            }
            Ok(())
        }
        ContainerStep::Recreate { spec, old_id, .. } => {
            // Stop the old one and move it aside; only once the new one runs is the old one removed. If the
            // new one cannot be created or started, the old one is put back and started again.
            rt.stop_container(old_id, spec.stop_grace_period).await?;
            let old_name = format!("{}{OLD_SUFFIX}", spec.name);
            rt.rename_container(old_id, &old_name).await?;
            let restore = || async {
                let _ = rt.rename_container(old_id, &spec.name).await;
                let _ = rt.start_container(old_id).await;
            };
            let id = match rt.create_container(spec, &spec.name, owner).await {
                Ok(id) => id,
                Err(e) => {
                    restore().await;
                    return Err(e);
                }
            };
            if let Err(e) = rt.start_container(&id).await {
                let _ = rt.remove_container(&id).await;
                restore().await;
                return Err(e);
            }
            rt.remove_container(old_id).await
        }
    }
}
