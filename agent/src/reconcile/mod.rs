//! The reconcile loop: every trigger (interval tick with jitter, `berth reconcile`, rollback, resume) feeds
//! one loop that recomputes everything: fetch → render → checkout → observe → plan → apply → record.
//!
//! Errors never tear anything down: a fetch or render failure keeps converging the current revision (so
//! drift is still corrected offline), and every failure turns into a backoff through [`next_delay`].

use crate::api::server::{Command, Shared};
use crate::api::{CycleResult, SourceInfo, Status};
use crate::config::Settings;
use crate::model::DesiredState;
use crate::render::{self, RenderError, RenderOptions, Tree};
use crate::runtime::{DockerRuntime, Owner};
use crate::source::{self, GitSource};
use crate::store::{Outcome, Revision, Store};
use crate::{apply, notify};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tracing::Instrument;

mod drift;
pub use drift::{watch_drift, DriftLink};

/// Shortest wait after a failed cycle; doubles per consecutive failure up to the interval.
const BACKOFF_BASE: Duration = Duration::from_secs(2);

pub struct Agent {
    settings: Settings,
    runtime: DockerRuntime,
    store: Store,
    /// `None` only while a blocking git task holds it.
    source: Option<GitSource>,
    shared: Arc<Shared>,
    /// The revision the engine is converged to (the `current` pointer), with its desired state.
    current: Option<Revision>,
    /// The last commit seen on the remote.
    fetched: Option<String>,
    /// A commit that failed to render or check out: not retried until the remote moves.
    failed_commit: Option<(String, String)>,
    failures: u32,
    cycles: u64,
    /// The commit the working tree is known to hold (checked out by this process).
    checked_out: Option<String>,
    /// When each image was last pulled (for `pull_policy: daily` and the like); kept in the store.
    pull_log: crate::images::PullLog,
    apply_options: apply::ApplyOptions,
}

/// What one cycle is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Fetch and follow Git (or the pinned revision).
    Follow,
    /// Re-apply stored revision `seq` and pin there, without touching the remote.
    Rollback(u64),
    /// Converge the current (or pinned) revision again without fetching: drift seen in engine events.
    Local,
}

impl Agent {
    pub async fn start(settings: Settings) -> anyhow::Result<(Agent, mpsc::Receiver<Command>)> {
        std::fs::create_dir_all(&settings.state_dir)
            .map_err(|e| anyhow::anyhow!("state_dir {}: {e}", settings.state_dir.display()))?;
        let runtime = DockerRuntime::connect(settings.docker_host.as_deref())
            .await?
            .with_auth_file(settings.docker_auth_file.clone());
        let store = Store::open(&settings.state_dir.join("store"))?;
        let source = {
            let (dir, s) = (settings.state_dir.clone(), settings.source.clone());
            tokio::task::spawn_blocking(move || GitSource::open(&dir, &s)).await??
        };
        let pointers = store.pointers()?;
        let pull_log = store.pull_log().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read pull times; starting afresh");
            Default::default()
        });
        let current = match pointers.current {
            Some(seq) => store.get(seq)?,
            None => None,
        };
        let (tx, rx) = mpsc::channel(64);
        let status = Status {
            agent_id: settings.agent_id.clone(),
            source: SourceInfo {
                url: source::redact(&settings.source.url),
                reference: settings.source.reference.to_string(),
                path: settings.source.path.display().to_string(),
            },
            applied_commit: current.as_ref().map(|r| r.commit.clone()),
            applied_seq: current.as_ref().map(|r| r.seq),
            last_good_seq: pointers.last_good,
            pinned: pointers.pinned.is_some(),
            pinned_seq: pointers.pinned,
            ..Default::default()
        };
        let shared = Arc::new(Shared {
            status: Mutex::new(status),
            store: store.clone(),
            runtime: runtime.clone(),
            commands: tx,
        });
        let agent = Agent {
            settings,
            runtime,
            store,
            source: Some(source),
            shared,
            current,
            fetched: None,
            failed_commit: None,
            failures: 0,
            cycles: 0,
            checked_out: None,
            pull_log,
            apply_options: apply::ApplyOptions::from_env(),
        };
        Ok((agent, rx))
    }

    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// What the drift watcher shares with this agent's applies and loop.
    pub fn drift_link(&self) -> DriftLink {
        self.apply_options.drift.clone()
    }

    /// Run forever (the caller stops it on SIGTERM/SIGINT by dropping this future, which may happen in the
    /// middle of a cycle: that is as safe as a crash, which berth must survive anyway). `once`: one cycle,
    /// then return its result.
    pub async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        once: bool,
    ) -> anyhow::Result<Option<CycleResult>> {
        let mut watchdog =
            tokio::time::interval(notify::watchdog_interval().unwrap_or(Duration::from_secs(3600)));

        let first = self.cycle_pinging(Mode::Follow, &mut watchdog).await;
        notify::notify("READY=1");
        if once {
            return Ok(Some(first));
        }
        loop {
            let delay = self.next_delay();
            tracing::debug!(delay_ms = delay.as_millis() as u64, "next cycle");
            let sleep = tokio::time::sleep(delay);
            tokio::pin!(sleep);
            let cmd = loop {
                tokio::select! {
                    _ = &mut sleep => break None,
                    c = commands.recv() => break c,
                    _ = watchdog.tick() => notify::notify("WATCHDOG=1"),
                }
            };
            match cmd {
                None => {
                    self.cycle_pinging(Mode::Follow, &mut watchdog).await;
                }
                Some(Command::Reconcile { reply }) => {
                    // Everyone who asked while we were busy is answered by this one cycle.
                    let mut replies: Vec<_> = reply.into_iter().collect();
                    let mut other = Vec::new();
                    while let Ok(c) = commands.try_recv() {
                        match c {
                            Command::Reconcile { reply } => replies.extend(reply),
                            c => other.push(c),
                        }
                    }
                    let result = self.cycle_pinging(Mode::Follow, &mut watchdog).await;
                    for r in replies {
                        let _ = r.send(result.clone());
                    }
                    for c in other {
                        self.command(c, &mut watchdog).await;
                    }
                }
                Some(c) => self.command(c, &mut watchdog).await,
            }
        }
    }

    async fn command(&mut self, cmd: Command, watchdog: &mut tokio::time::Interval) {
        match cmd {
            Command::Reconcile { reply } => {
                let r = self.cycle_pinging(Mode::Follow, watchdog).await;
                if let Some(reply) = reply {
                    let _ = reply.send(r);
                }
            }
            Command::Rollback { seq, reply } => {
                let target = match self.rollback_target(seq) {
                    Ok(t) => t,
                    Err(e) => {
                        let _ = reply.send(Err(e));
                        return;
                    }
                };
                let r = self.cycle_pinging(Mode::Rollback(target), watchdog).await;
                let _ = reply.send(Ok(r));
            }
            Command::Drift => {
                self.apply_options.drift.dequeued();
                self.cycle_pinging(Mode::Local, watchdog).await;
            }
            Command::Resume { reply } => {
                if let Err(e) = self.store.set_pinned(None) {
                    tracing::error!(error = %e, "cannot unpin");
                }
                self.set_status(|s| {
                    s.pinned = false;
                    s.pinned_seq = None;
                });
                tracing::info!("resumed: following Git again");
                let r = self.cycle_pinging(Mode::Follow, watchdog).await;
                let _ = reply.send(r);
            }
        }
    }

    /// Which stored revision a rollback goes to: `seq`, or the last good one before the current.
    fn rollback_target(&self, seq: Option<u64>) -> Result<u64, String> {
        let rev = match seq {
            Some(s) => self
                .store
                .get(s)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("no revision {s} in history"))?,
            None => {
                let before = self.current.as_ref().map(|c| c.seq).unwrap_or(u64::MAX);
                // A rollback record re-applies an older commit: step past every record of the current commit.
                let current_commit = self.current.as_ref().map(|c| c.commit.clone());
                let mut b = before;
                loop {
                    match self.store.last_good_before(b).map_err(|e| e.to_string())? {
                        Some(r) if Some(&r.commit) == current_commit.as_ref() => b = r.seq,
                        Some(r) => break r,
                        None => {
                            return Err("no earlier good revision in history to roll back to".into())
                        }
                    }
                }
            }
        };
        if rev.desired.is_none() {
            return Err(format!(
                "revision {} did not render; it cannot be re-applied",
                rev.seq
            ));
        }
        Ok(rev.seq)
    }

    fn next_delay(&self) -> Duration {
        let interval = self.settings.source.interval;
        let base = if self.failures == 0 {
            interval
        } else {
            let exp = BACKOFF_BASE.saturating_mul(1u32 << self.failures.min(16).saturating_sub(1));
            exp.min(interval)
        };
        jitter(base)
    }

    fn set_status(&self, f: impl FnOnce(&mut Status)) {
        let mut s = self.shared.status.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut s);
    }

    /// Run a cycle while pinging the watchdog, so a long pull is not mistaken for a hang (a real hang of
    /// the loop thread stops the pings too).
    async fn cycle_pinging(
        &mut self,
        mode: Mode,
        watchdog: &mut tokio::time::Interval,
    ) -> CycleResult {
        let n = self.cycles + 1;
        let span = tracing::info_span!("cycle", n, revision = tracing::field::Empty);
        let fut = self.cycle(mode).instrument(span);
        tokio::pin!(fut);
        loop {
            tokio::select! {
                r = &mut fut => return r,
                _ = watchdog.tick() => notify::notify("WATCHDOG=1"),
            }
        }
    }

    async fn cycle(&mut self, mode: Mode) -> CycleResult {
        let started = Instant::now();
        let mut errors: Vec<String> = Vec::new();
        let pinned = match self.store.pointers() {
            Ok(p) => p.pinned,
            Err(e) => {
                errors.push(e.to_string());
                None
            }
        };

        // 1. Fetch (not for a rollback: that works offline, from the store).
        if mode == Mode::Follow {
            match self
                .git(|src| src.fetch().map(|o| (o, src.fetch_count())))
                .await
            {
                Ok((outcome, count)) => {
                    self.fetched = Some(outcome.commit.clone());
                    self.set_status(|s| {
                        s.fetched_commit = Some(outcome.commit.clone());
                        s.fetched_at = Some(crate::now_unix());
                        s.fetch_count = count;
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "fetch failed; keeping the current revision");
                    errors.push(e.to_string());
                }
            }
        }

        // 2. Decide the target: a new revision to render, or the current/pinned one to keep converged.
        let mut new_revision: Option<Revision> = None;
        let target: Option<(DesiredState, String)> = match (mode, pinned) {
            (Mode::Rollback(seq), _) => match self.store.get(seq) {
                Ok(Some(rev)) if rev.desired.is_some() => {
                    if let Err(e) = self.store.set_pinned(Some(seq)) {
                        errors.push(e.to_string());
                    }
                    self.set_status(|s| {
                        s.pinned = true;
                        s.pinned_seq = Some(seq);
                    });
                    tracing::info!(seq, commit = %rev.commit, "rolling back; pinned until `berth resume`");
                    let desired = rev.desired.clone().unwrap_or_default();
                    new_revision = Some(Revision {
                        rollback: true,
                        outcome: Outcome::Applied,
                        error: None,
                        ..rev.clone()
                    });
                    Some((desired, rev.commit))
                }
                Ok(_) => {
                    errors.push(format!("revision {seq} cannot be re-applied"));
                    None
                }
                Err(e) => {
                    errors.push(e.to_string());
                    None
                }
            },
            (Mode::Follow | Mode::Local, Some(seq)) => {
                // Pinned: new commits are fetched and shown, not applied.
                match self.store.get(seq) {
                    Ok(Some(rev)) => rev.desired.map(|d| (d, rev.commit)),
                    _ => self.current_target(),
                }
            }
            (Mode::Follow, None) => match self.fetched.clone() {
                Some(commit) if self.current.as_ref().map(|c| &c.commit) != Some(&commit) => {
                    if let Some((failed, err)) =
                        self.failed_commit.clone().filter(|(c, _)| *c == commit)
                    {
                        // Already reported once; keep the running revision converged.
                        let _ = failed;
                        errors.push(err);
                        self.current_target()
                    } else {
                        match self.render_commit(&commit).await {
                            Ok((desired, rev)) => {
                                new_revision = Some(rev);
                                Some((desired, commit))
                            }
                            Err((message, rev)) => {
                                tracing::error!(commit = %commit, error = %message, "revision rejected; the running revision stays");
                                self.failed_commit = Some((commit.clone(), message.clone()));
                                let already = self
                                    .store
                                    .list(1)
                                    .ok()
                                    .and_then(|l| l.into_iter().next())
                                    .is_some_and(|r| {
                                        r.commit == commit
                                            && r.outcome == Outcome::Failed
                                            && r.desired.is_none()
                                    });
                                if let Some(rev) = rev.filter(|_| !already) {
                                    if let Err(e) = self.store.put(&rev, false, false) {
                                        errors.push(e.to_string());
                                    }
                                }
                                errors.push(message);
                                self.current_target()
                            }
                        }
                    }
                }
                _ => self.current_target(),
            },
            (Mode::Local, None) => self.current_target(),
        };

        // 3-5. Observe, plan, apply.
        let mut apply_errors = Vec::new();
        let mut images_used = std::collections::BTreeMap::new();
        if let Some((desired, revision)) = &target {
            tracing::Span::current().record("revision", revision.as_str());
            // The working tree must hold the revision being converged (after a rollback, or when the
            // clone under state_dir was lost); without it, bind mounts would see other files.
            if let Err(e) = self.ensure_checkout(revision).await {
                tracing::warn!(error = %e, "cannot check out {revision}; bind-mounted files stay as they are");
            }
            let owner = Owner {
                agent_id: self.settings.agent_id.clone(),
                revision: revision.clone(),
            };
            let throttle = crate::images::Throttle::new(Duration::from_secs(2));
            let progress = |image: &str, line: &str| {
                if throttle.pass(image, line) {
                    tracing::info!(image, progress = line, "pulling");
                }
            };
            let before = self.pull_log.clone();
            let converged = apply::converge(
                &self.runtime,
                desired,
                &owner,
                &mut self.pull_log,
                &self.apply_options,
                &progress,
            )
            .await;
            if self.pull_log != before {
                if let Err(e) = self.store.set_pull_log(&self.pull_log) {
                    tracing::warn!(error = %e, "cannot record pull times");
                }
            }
            match converged {
                Ok((plan, report)) => {
                    if !plan.is_empty() {
                        for step in plan.describe() {
                            tracing::info!(step = %step, "plan");
                        }
                    }
                    for w in &report.warnings {
                        tracing::warn!(warning = %w, "image");
                    }
                    images_used = report.images;
                    apply_errors = report.errors;
                }
                Err(e) => apply_errors.push(e.to_string()),
            }
        }
        for e in &apply_errors {
            tracing::error!(error = %e, "apply step failed");
        }

        // 6. Record.
        let duration_ms = started.elapsed().as_millis() as u64;
        let apply_ok = apply_errors.is_empty();
        errors.extend(apply_errors.iter().cloned());
        if let Some(mut rev) = new_revision {
            rev.seq = match self.store.next_seq() {
                Ok(s) => s,
                Err(e) => {
                    errors.push(e.to_string());
                    0
                }
            };
            rev.applied_at = crate::now_unix();
            rev.duration_ms = duration_ms;
            rev.images = images_used;
            rev.outcome = if apply_ok {
                Outcome::Applied
            } else {
                Outcome::Failed
            };
            rev.error = if apply_ok {
                None
            } else {
                Some(apply_errors.join("; "))
            };
            if rev.seq > 0 {
                match self.store.put(&rev, true, apply_ok) {
                    Ok(()) => {
                        let (seq, commit) = (rev.seq, rev.commit.clone());
                        if !rev.rollback
                            || self
                                .git(move |src| Ok(src.has_commit(&commit)))
                                .await
                                .unwrap_or(false)
                        {
                            let commit = rev.commit.clone();
                            if let Err(e) = self.git(move |src| src.keep(seq, &commit)).await {
                                tracing::warn!(error = %e, "cannot keep a local ref to the applied commit");
                            }
                        }
                        tracing::info!(seq = rev.seq, commit = %rev.commit, outcome = %rev.outcome, duration_ms, "revision recorded");
                        self.current = Some(rev);
                    }
                    Err(e) => errors.push(e.to_string()),
                }
            }
        } else if let Some(cur) = self
            .current
            .clone()
            .filter(|c| c.outcome == Outcome::Failed && apply_ok && target.is_some())
        {
            // A revision that failed to apply now converged: it becomes good.
            let rev = Revision {
                outcome: Outcome::Applied,
                error: None,
                ..cur
            };
            match self.store.put(&rev, true, true) {
                Ok(()) => self.current = Some(rev),
                Err(e) => errors.push(e.to_string()),
            }
        }

        let outcome = if errors.is_empty() {
            Outcome::Applied
        } else {
            Outcome::Failed
        };
        self.failures = if errors.is_empty() {
            0
        } else {
            self.failures.saturating_add(1)
        };
        self.cycles += 1;
        let last_good = self.store.pointers().ok().and_then(|p| p.last_good);
        let error = if errors.is_empty() {
            None
        } else {
            Some(errors.join("\n"))
        };
        let result = CycleResult {
            outcome,
            error: error.clone(),
            applied_commit: self.current.as_ref().map(|c| c.commit.clone()),
            applied_seq: self.current.as_ref().map(|c| c.seq),
        };
        self.set_status(|s| {
            s.outcome = Some(outcome);
            s.last_error = error;
            s.cycles = self.cycles;
            s.applied_commit = result.applied_commit.clone();
            s.applied_seq = result.applied_seq;
            s.last_good_seq = last_good;
        });
        result
    }

    /// Check `commit` out into the working tree unless it is known to be there already.
    async fn ensure_checkout(&mut self, commit: &str) -> Result<(), source::SourceError> {
        if self.checked_out.as_deref() == Some(commit) {
            return Ok(());
        }
        let c = commit.to_string();
        self.git(move |src| src.checkout(&c)).await?;
        self.checked_out = Some(commit.to_string());
        Ok(())
    }

    fn current_target(&self) -> Option<(DesiredState, String)> {
        self.current
            .as_ref()
            .and_then(|c| c.desired.clone().map(|d| (d, c.commit.clone())))
    }

    /// Render a commit from its Git tree, then (only if it rendered) check it out. `Err` carries the
    /// message and, when the commit could be read, a failed revision record.
    async fn render_commit(
        &mut self,
        commit: &str,
    ) -> Result<(DesiredState, Revision), (String, Option<Revision>)> {
        let opts = RenderOptions {
            path: self.settings.source.path.clone(),
            checkout_dir: self.settings.state_dir.join("repo"),
            root_stack_name: root_stack_name(&self.settings),
            env: std::env::vars().collect(),
        };
        let c = commit.to_string();
        let rendered = self
            .git(move |src| {
                let info = src.commit_info(&c)?;
                let tree = src.tree(&c)?;
                Ok((info, render_tree(&tree, &opts)))
            })
            .await;
        let (info, result) = match rendered {
            Ok(v) => v,
            Err(e) => return Err((e.to_string(), None)),
        };
        let rev = Revision {
            seq: 0,
            commit: info.id.clone(),
            author: info.author.clone(),
            summary: info.summary.clone(),
            commit_time: info.time,
            applied_at: crate::now_unix(),
            outcome: Outcome::Failed,
            error: None,
            duration_ms: 0,
            rollback: false,
            desired: None,
            images: Default::default(),
        };
        let desired = match result {
            Ok(d) => d,
            Err(e) => {
                let message = format!("commit {}: {e}", short(commit));
                let mut failed = rev;
                failed.seq = self.store.next_seq().unwrap_or(0);
                failed.error = Some(message.clone());
                return Err((message, Some(failed).filter(|r| r.seq > 0)));
            }
        };
        if let Err(e) = self.ensure_checkout(commit).await {
            return Err((format!("checkout of {}: {e}", short(commit)), None));
        }
        Ok((
            desired.clone(),
            Revision {
                desired: Some(desired),
                ..rev
            },
        ))
    }

    /// Run blocking git work off the async runtime, with the source moved into the task and back.
    async fn git<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut GitSource) -> Result<T, source::SourceError> + Send + 'static,
    ) -> Result<T, source::SourceError> {
        let mut src = match self.source.take() {
            Some(s) => s,
            None => GitSource::open(&self.settings.state_dir, &self.settings.source)?,
        };
        let joined = tokio::task::spawn_blocking(move || {
            let r = f(&mut src);
            (src, r)
        })
        .await;
        match joined {
            Ok((src, r)) => {
                self.source = Some(src);
                r
            }
            Err(e) => Err(source::SourceError::Local {
                path: self.settings.state_dir.join("repo"),
                message: format!("git task failed: {e}"),
            }),
        }
    }
}

/// Render the followed path of a tree; a followed path missing from the commit is an error, not an
/// empty desired state (which would remove every container).
pub fn render_tree(tree: &dyn Tree, opts: &RenderOptions) -> Result<DesiredState, RenderError> {
    let exists = opts.path.as_os_str() == "."
        || matches!(tree.kind(&opts.path), Ok(Some(render::EntryKind::Dir)));
    if !exists {
        return Err(RenderError {
            problems: vec![render::Problem {
                file: None,
                line: None,
                column: None,
                stack: None,
                service: None,
                message: format!(
                    "source.path {} is not a directory in this commit",
                    opts.path.display()
                ),
            }],
        });
    }
    render::render(tree, opts)
}

/// The stack name of the followed directory itself, when its compose file has no `name:`.
pub fn root_stack_name(settings: &Settings) -> String {
    let base = match settings.source.path.file_name() {
        Some(n) if settings.source.path.as_os_str() != "." => n.to_string_lossy().to_string(),
        _ => settings.agent_id.clone(),
    };
    sanitize_stack_name(&base)
}

pub use crate::render::sanitize_stack_name;

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}

/// ±10% jitter, from a cheap per-call seed (no RNG crate needed for spreading a fleet's polls).
fn jitter(d: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    let r = (h.finish() % 2001) as f64 / 1000.0 - 1.0; // -1.0 ..= 1.0
    d.mul_f64(1.0 + 0.1 * r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_ten_percent() {
        let base = Duration::from_secs(60);
        let mut seen_low = false;
        let mut seen_high = false;
        for _ in 0..2000 {
            let j = jitter(base);
            assert!(
                j >= Duration::from_secs(54) && j <= Duration::from_secs(66),
                "{j:?}"
            );
            seen_low |= j < Duration::from_secs(59);
            seen_high |= j > Duration::from_secs(61);
        }
        assert!(seen_low && seen_high, "jitter must spread both ways");
    }

    #[test]
    fn stack_names_are_sanitized() {
        assert_eq!(sanitize_stack_name("Edge-01"), "edge-01");
        assert_eq!(sanitize_stack_name("edge.box"), "edge-box");
        assert_eq!(sanitize_stack_name("..."), "default");
    }
}
