//! Executes a [`Plan`] through a [`Runtime`]. Failures are isolated per step: a failed step is reported
//! and its dependents are skipped; nothing else is torn down because of it.
//!
//! [`converge`] is the whole of one convergence: images (by pull policy) → observe → plan → the
//! empty-render guard and preflight (nothing changes when either refuses) → apply. The report lists the
//! containers the apply touched, in `depends_on` order, for the health gate (`rollout.rs`).

use crate::error::{StepCause, StepError};
use crate::images::{self, PullLog};
use crate::model::{Condition, ContainerSpec, Dependency, DesiredState};
use crate::plan::{ContainerStep, Plan};
use crate::runtime::{ContainerState, Owner, Runtime, RuntimeError};
use futures_util::future::join_all;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// Suffix of the old container's name while it is being replaced.
pub const OLD_SUFFIX: &str = "_berth-old";
/// Suffix of a new container's name until its networks and files are in place.
pub const NEW_SUFFIX: &str = "_berth-new";

/// How long a container waits for a dependency to become healthy or to complete, by default.
pub const DEPENDENCY_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, Default)]
pub struct ApplyReport {
    /// `verb object` for every step that succeeded, in order.
    pub done: Vec<String>,
    /// One error per failed or skipped step, naming the object (and stack/service for containers).
    pub errors: Vec<StepError>,
    /// Problems that did not stop anything (a pull that failed while a local image exists).
    pub warnings: Vec<String>,
    /// Image reference → local image id, for every image that was available.
    pub images: BTreeMap<String, String>,
    /// Every container this apply created, recreated, started or restarted, in `depends_on` order: what
    /// the health gate watches.
    pub touched: Vec<crate::rollout::Watched>,
}

/// Why a convergence stopped before its first engine write.
#[derive(Debug, thiserror::Error)]
pub enum ConvergeError {
    #[error(transparent)]
    Engine(#[from] RuntimeError),
    #[error("preflight failed, nothing was changed:\n  {}", join_lines(.0))]
    Preflight(Vec<crate::preflight::PreflightError>),
    #[error(
        "renders no containers while the box runs {running}; set allow_empty: true to allow it"
    )]
    Empty { running: usize },
    /// Decrypted SOPS files could not be placed for bind mounts; nothing was changed.
    #[error("nothing was changed: {0}")]
    Secrets(#[from] crate::render::sops::runtime::MaterializeError),
}

fn join_lines(errors: &[crate::preflight::PreflightError]) -> String {
    let texts: Vec<String> = errors.iter().map(ToString::to_string).collect();
    texts.join("\n  ")
}

impl ApplyReport {
    pub fn ok(&self) -> bool {
        self.errors.is_empty()
    }
    /// The errors as one message.
    pub fn error_text(&self) -> String {
        let texts: Vec<String> = self.errors.iter().map(ToString::to_string).collect();
        texts.join("; ")
    }
}

#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Bound on a `service_healthy` / `service_completed_successfully` wait.
    pub dependency_timeout: Duration,
    /// A desired state without containers may remove every container that runs.
    pub allow_empty: bool,
    /// Told of every container apply stops or removes, so the drift watcher ignores those events.
    pub drift: crate::reconcile::DriftLink,
}

impl ApplyOptions {
    /// The defaults, with `BERTH_DEPENDENCY_TIMEOUT` (a duration like `90s`) read from the environment.
    pub fn from_env() -> Self {
        let mut o = ApplyOptions::default();
        if let Ok(v) = std::env::var("BERTH_DEPENDENCY_TIMEOUT") {
            match crate::config::parse_duration(&v) {
                Ok(d) => o.dependency_timeout = d,
                Err(e) => tracing::warn!(
                    error = %e,
                    default_s = DEPENDENCY_TIMEOUT.as_secs(),
                    "BERTH_DEPENDENCY_TIMEOUT is not a duration; using the default"
                ),
            }
        }
        o
    }
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            dependency_timeout: DEPENDENCY_TIMEOUT,
            allow_empty: false,
            drift: Default::default(),
        }
    }
}

/// Images by pull policy, then observe, plan, preflight and apply. `log` remembers when each image was
/// pulled; `progress` receives `(image, status line)` while pulling. Nothing on the engine changes when
/// this returns `Err`.
pub async fn converge<R: Runtime>(
    rt: &R,
    desired: &DesiredState,
    owner: &Owner,
    log: &mut PullLog,
    opts: &ApplyOptions,
    progress: &(dyn Fn(&str, &str) + Sync),
) -> Result<(Plan, ApplyReport), ConvergeError> {
    // The engine's state does not depend on the pulls: ask for both at once (a no-op costs one round
    // trip less).
    let (prepared, actual) = tokio::join!(
        images::prepare(rt, desired, log, progress),
        rt.observe(&owner.agent_id)
    );
    let mut actual = actual?;
    actual.images = prepared.ids.clone();
    opts.drift.mark_finished(&mut actual);
    let plan = crate::plan::plan(desired, &actual);
    let running = actual.containers.len();
    if desired.containers().next().is_none() && running > 0 && !opts.allow_empty {
        return Err(ConvergeError::Empty { running });
    }
    if !plan.is_empty() {
        let inventory = rt.inventory().await?;
        let problems = crate::preflight::check(desired, &plan, &inventory, &owner.agent_id);
        if !problems.is_empty() {
            return Err(ConvergeError::Preflight(problems));
        }
    }
    let mut report = apply(rt, &plan, owner, opts).await;
    // Say why an image is missing (the steps that needed it name the image).
    for image in &plan.missing_images {
        if let Some(e) = prepared.errors.get(image) {
            report.errors.insert(
                0,
                StepError {
                    stack: String::new(),
                    service: None,
                    action: format!("pull {image}"),
                    cause: StepCause::Engine(crate::runtime::RuntimeError::Image {
                        image: image.clone(),
                        message: e.clone(),
                    }),
                },
            );
        }
    }
    report.warnings.extend(prepared.warnings);
    report.images = prepared.ids;
    Ok((plan, report))
}

pub async fn apply<R: Runtime>(
    rt: &R,
    plan: &Plan,
    owner: &Owner,
    opts: &ApplyOptions,
) -> ApplyReport {
    let mut report = ApplyReport::default();
    let rt = &opts.drift.announce(rt);
    create_networks_and_volumes(rt, plan, owner, &mut report).await;
    remove_containers(rt, plan, &mut report).await;
    run_waves(rt, plan, owner, opts, &mut report).await;
    remove_networks(rt, plan, &mut report).await;
    report
}

/// Container ids by (stack, service).
type Ids = BTreeMap<(String, String), Vec<String>>;

/// Create the plan's networks, then its volumes, one after the other.
async fn create_networks_and_volumes<R: Runtime>(
    rt: &R,
    plan: &Plan,
    owner: &Owner,
    report: &mut ApplyReport,
) {
    for net in &plan.create_networks {
        match rt.create_network(net, owner).await {
            Ok(()) => report.done.push(format!("create network {}", net.name)),
            Err(e) => report.errors.push(StepError {
                stack: net.stack.clone(),
                service: None,
                action: format!("create network {}", net.name),
                cause: e.into(),
            }),
        }
    }
    for vol in &plan.create_volumes {
        match rt.create_volume(vol, owner).await {
            Ok(()) => report.done.push(format!("create volume {}", vol.name)),
            Err(e) => report.errors.push(StepError {
                stack: vol.stack.clone(),
                service: None,
                action: format!("create volume {}", vol.name),
                cause: e.into(),
            }),
        }
    }
}

/// Stop and remove the containers the plan removes, all at once; report them in the plan's order.
async fn remove_containers<R: Runtime>(rt: &R, plan: &Plan, report: &mut ApplyReport) {
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
            Err(e) => report.errors.push(StepError {
                stack: c.stack.clone(),
                service: Some(c.service.clone()),
                action: format!("remove container {}", c.name),
                cause: e.into(),
            }),
        }
    }
}

/// Run the container steps wave by wave, the steps of a wave at once; a step whose image is missing or
/// whose dependency failed is skipped.
async fn run_waves<R: Runtime>(
    rt: &R,
    plan: &Plan,
    owner: &Owner,
    opts: &ApplyOptions,
    report: &mut ApplyReport,
) {
    let missing: BTreeSet<&str> = plan.missing_images.iter().map(String::as_str).collect();
    // Container ids by (stack, service), for dependency waits: the existing ones, updated as steps
    // replace them.
    let mut ids: Ids = plan.existing.clone();
    // (stack, service) pairs that failed: their dependents are skipped.
    let mut failed: BTreeSet<(String, String)> = BTreeSet::new();
    for wave in &plan.waves {
        let results = join_all(wave.iter().map(|step| {
            let blocked = blocked_by(step, &missing, &failed);
            let ids = &ids;
            async move {
                let r = match blocked {
                    Some(msg) => Err(msg),
                    None => match wait_for_dependencies(rt, step.spec(), ids, opts).await {
                        Err(e) => Err(e),
                        Ok(()) => run_step(rt, step, owner).await.map_err(StepCause::from),
                    },
                };
                (step, r)
            }
        }))
        .await;
        for (step, r) in results {
            record_step(report, &mut ids, &mut failed, step, r);
        }
    }
}

/// Why `step` cannot run at all: its image is missing, or one of its dependencies failed.
fn blocked_by(
    step: &ContainerStep,
    missing: &BTreeSet<&str>,
    failed: &BTreeSet<(String, String)>,
) -> Option<StepCause> {
    let spec = step.spec();
    if step.needs_image() && missing.contains(spec.image.as_str()) {
        Some(StepCause::ImageMissing(spec.image.clone()))
    } else {
        spec.dependency_names()
            .find(|d| failed.contains(&(spec.stack.clone(), d.to_string())))
            .map(|d| StepCause::DependencyFailed(d.to_string()))
    }
}

/// Report one step's result: a container it made joins `ids` (replacing the one it recreated), a
/// failed service joins `failed`.
fn record_step(
    report: &mut ApplyReport,
    ids: &mut Ids,
    failed: &mut BTreeSet<(String, String)>,
    step: &ContainerStep,
    r: Result<String, StepCause>,
) {
    let spec = step.spec();
    match r {
        Ok(id) => {
            report
                .done
                .push(format!("{} container {}", step.verb(), spec.name));
            report.touched.push(crate::rollout::Watched::of(spec, &id));
            let list = ids
                .entry((spec.stack.clone(), spec.service.clone()))
                .or_default();
            if let ContainerStep::Recreate { old_id, .. } = step {
                list.retain(|i| i != old_id);
            }
            if !list.contains(&id) {
                list.push(id);
            }
        }
        Err(cause) => {
            report.errors.push(StepError {
                stack: spec.stack.clone(),
                service: Some(spec.service.clone()),
                action: format!("{} container {}", step.verb(), spec.name),
                cause,
            });
            failed.insert((spec.stack.clone(), spec.service.clone()));
        }
    }
}

/// Remove the networks the plan no longer needs.
async fn remove_networks<R: Runtime>(rt: &R, plan: &Plan, report: &mut ApplyReport) {
    for name in &plan.remove_networks {
        match rt.remove_network(name).await {
            Ok(()) => report.done.push(format!("remove network {name}")),
            Err(e) => report.errors.push(StepError {
                stack: String::new(),
                service: None,
                action: format!("remove network {name}"),
                cause: e.into(),
            }),
        }
    }
}

/// Wait until every dependency with a condition holds: `service_healthy` — each of its containers
/// reports healthy; `service_completed_successfully` — each has exited with code 0. Bounded by
/// `opts.dependency_timeout`; the error names the dependency and what it was doing.
async fn wait_for_dependencies<R: Runtime>(
    rt: &R,
    spec: &ContainerSpec,
    ids: &Ids,
    opts: &ApplyOptions,
) -> Result<(), StepCause> {
    let waits: Vec<_> = spec
        .depends_on
        .iter()
        .filter(|d| d.condition != Condition::ServiceStarted)
        .collect();
    if waits.is_empty() {
        return Ok(());
    }
    let deadline = Instant::now() + opts.dependency_timeout;
    for dep in waits {
        let key = (spec.stack.clone(), dep.service.clone());
        let containers: Vec<String> = ids.get(&key).cloned().unwrap_or_default();
        if containers.is_empty() {
            return Err(StepCause::DependencyMissing {
                service: dep.service.clone(),
            });
        }
        for id in containers {
            let mut delay = Duration::from_millis(100);
            loop {
                let st = rt.container_state(&id).await?;
                match dependency_verdict(dep, &st) {
                    Some(Ok(())) => break,
                    Some(Err(e)) => return Err(e),
                    None if Instant::now() >= deadline => {
                        return Err(dependency_timeout(dep, st, opts))
                    }
                    None => {
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(1));
                    }
                }
            }
        }
    }
    Ok(())
}

/// Whether one container of `dep` meets its condition (`Some(Ok)`), never will (`Some(Err)`), or may
/// yet (`None`).
fn dependency_verdict(dep: &Dependency, st: &ContainerState) -> Option<Result<(), StepCause>> {
    let service = || dep.service.clone();
    match dep.condition {
        Condition::ServiceHealthy => match st.health.as_deref() {
            Some("healthy") => Some(Ok(())),
            Some("unhealthy") => Some(Err(StepCause::DependencyUnhealthy { service: service() })),
            None if st.running => Some(Err(StepCause::DependencyNoHealthcheck {
                service: service(),
            })),
            _ if !st.running && st.status == "exited" => Some(Err(StepCause::DependencyExited {
                service: service(),
                code: st.exit_code.unwrap_or(-1),
            })),
            _ => None,
        },
        Condition::ServiceCompletedSuccessfully => {
            if st.status == "exited" {
                match st.exit_code {
                    Some(0) => Some(Ok(())),
                    code => Some(Err(StepCause::DependencyFailedJob {
                        service: service(),
                        code: code.unwrap_or(-1),
                    })),
                }
            } else {
                None
            }
        }
        Condition::ServiceStarted => Some(Ok(())),
    }
}

/// The error of a dependency wait that ran out of time, with the state the container was last in.
fn dependency_timeout(dep: &Dependency, st: ContainerState, opts: &ApplyOptions) -> StepCause {
    let wanted = match dep.condition {
        Condition::ServiceHealthy => "healthy",
        _ => "complete",
    };
    StepCause::DependencyTimeout {
        service: dep.service.clone(),
        wanted,
        after: opts.dependency_timeout,
        state: format!(
            "{}{}",
            st.status,
            st.health.map(|h| format!(", {h}")).unwrap_or_default()
        ),
    }
}

/// Runs one step; returns the id of the container the service now has.
///
/// A new container is created under `<name>_berth-new` and takes its name only once its networks and
/// files are in place: a container under a desired name is always complete, and whatever a kill leaves
/// under the temporary name is removed by the next plan, never started.
async fn run_step<R: Runtime>(
    rt: &R,
    step: &ContainerStep,
    owner: &Owner,
) -> Result<String, RuntimeError> {
    match step {
        ContainerStep::Start { id, .. } => rt.start_container(id).await.map(|_| id.clone()),
        ContainerStep::Restart { id, spec } => {
            rt.stop_container(id, spec.stop_grace_period).await?;
            rt.start_container(id).await.map(|_| id.clone())
        }
        ContainerStep::Create { spec } => create_and_start(rt, spec, owner, None).await,
        ContainerStep::Recreate {
            spec,
            old_id,
            old_name,
            ..
        } => {
            // Stop the old one and move it aside (an interrupted recreate may have left it there already);
            // only once the new one runs is the old one removed. If the new one cannot be created, named or
            // started, it is removed, and the old one is put back and started again.
            rt.stop_container(old_id, spec.stop_grace_period).await?;
            let aside = format!("{}{OLD_SUFFIX}", spec.name);
            if *old_name != aside {
                rt.rename_container(old_id, &aside).await?;
            }
            match create_and_start(rt, spec, owner, Some(old_id)).await {
                Ok(id) => {
                    rt.remove_container(old_id).await?;
                    Ok(id)
                }
                Err(e) => {
                    let _ = rt.rename_container(old_id, &spec.name).await;
                    let _ = rt.start_container(old_id).await;
                    Err(e)
                }
            }
        }
    }
}

/// Create the container of `spec` under its temporary name (taking over the anonymous volumes of
/// `replaces`), give it its name, start it; a container that fails any of these is removed.
async fn create_and_start<R: Runtime>(
    rt: &R,
    spec: &ContainerSpec,
    owner: &Owner,
    replaces: Option<&str>,
) -> Result<String, RuntimeError> {
    let temporary = format!("{}{NEW_SUFFIX}", spec.name);
    let id = rt
        .create_container(spec, &temporary, owner, replaces)
        .await?;
    let named = async {
        rt.rename_container(&id, &spec.name).await?;
        rt.start_container(&id).await
    };
    if let Err(e) = named.await {
        let _ = rt.remove_container(&id).await;
        return Err(e);
    }
    Ok(id)
}
