//! Converging a target on the engine (decrypted files, images, observe, plan, preflight, apply) and
//! watching its containers through the health gate.

use crate::api::RolloutInfo;
use crate::apply::{ApplyReport as Report, ConvergeError};
use crate::error::CycleError;
use crate::reconcile::{Agent, Target};
use crate::rollout::{self, GateOutcome, Watched};
use crate::runtime::{Owner, Runtime};
use std::time::Duration;

impl Agent {
    /// Every container of a target, in its stacks' order, for a gate over the whole revision.
    pub(super) async fn watch_all(&self, target: &Target) -> Result<Vec<Watched>, CycleError> {
        let actual = self.runtime.observe(&self.settings.agent_id).await?;
        let ids: std::collections::BTreeMap<&str, &str> = actual
            .containers
            .iter()
            .map(|c| (c.name.as_str(), c.id.as_str()))
            .collect();
        Ok(target
            .desired
            .containers()
            .filter_map(|spec| {
                let id = ids.get(spec.name.as_str())?;
                Some(Watched {
                    // Restarts before this gate are not its business: count from what it sees first.
                    restarts_at_start: -1,
                    ..Watched::of(spec, id)
                })
            })
            .collect())
    }

    /// Wait on the health gate for `watched`; status shows the rollout while it runs, and an operator's
    /// command (a `berth reconcile` for a newer commit, a rollback, resume or suspend) supersedes it.
    pub(super) async fn gate(&self, watched: &[Watched], commit: &str) -> GateOutcome {
        if watched.is_empty() {
            return GateOutcome::Passed;
        }
        let settings = self.settings.rollout.gate;
        tracing::info!(
            commit,
            containers = watched.len(),
            stable_s = settings.stable.as_secs(),
            timeout_s = settings.timeout.as_secs(),
            "health gate"
        );
        let shared = self.shared.clone();
        let commit_owned = commit.to_string();
        let tick = move |seconds: u64| {
            let mut s = shared.status.lock().unwrap_or_else(|p| p.into_inner());
            s.rollout = Some(RolloutInfo {
                commit: commit_owned.clone(),
                seconds,
            });
        };
        let wake = self.shared.wake.notified();
        tokio::pin!(wake);
        wake.as_mut().enable();
        let outcome = rollout::wait(&self.runtime, watched, settings, wake, &tick).await;
        self.set_status(|s| s.rollout = None);
        outcome
    }

    /// Images, observe, plan, preflight and apply for one target; pull times are kept in the store.
    pub(super) async fn converge(&mut self, target: &Target) -> Result<Report, ConvergeError> {
        self.secrets.extend(&target.desired.sensitive);
        // The working tree must hold the revision being converged (after a rollback, or when the clone
        // under state_dir was lost); without it, bind mounts would see other files.
        if let Err(e) = self.ensure_checkout(&target.commit).await {
            tracing::warn!(error = %e, commit = %target.commit, "cannot check out the revision; bind-mounted files stay as they are");
        }
        self.place_decrypted(target).await?;
        let owner = Owner {
            agent_id: self.settings.agent_id.clone(),
            revision: target.commit.clone(),
        };
        let throttle = crate::images::Throttle::new(Duration::from_secs(2));
        let progress = |image: &str, line: &str| {
            if throttle.pass(image, line) {
                tracing::info!(image, progress = line, "pulling");
            }
        };
        let before = self.pull_log.clone();
        let converged = crate::apply::converge(
            &self.runtime,
            &target.desired,
            &owner,
            &mut self.pull_log,
            &self.apply_options,
            &progress,
        )
        .await;
        if self.pull_log != before {
            let log = self.pull_log.clone();
            if let Err(e) = self.db(move |s| s.set_pull_log(&log)).await {
                tracing::warn!(error = %e, "cannot record pull times");
            }
        }
        if let Some(ids) = self.apply_options.drift.finished_changed() {
            if let Err(e) = self.db(move |s| s.set_finished_containers(&ids)).await {
                tracing::warn!(error = %e, "cannot record which containers finished");
            }
        }
        let (plan, report) = converged?;
        for step in plan.describe() {
            tracing::info!(step = %step, "plan");
        }
        for w in &report.warnings {
            tracing::warn!(warning = %w, "image");
        }
        Ok(report)
    }

    /// Decrypted SOPS files the target's containers bind-mount, written to the runtime directory from
    /// the working tree (on a thread of their own: file writes and decryption block).
    async fn place_decrypted(&self, target: &Target) -> Result<(), ConvergeError> {
        let desired = target.desired.clone();
        let checkout = self.settings.state_dir.join("repo");
        let sops = crate::reconcile::sops_options(&self.settings);
        let placed = tokio::task::spawn_blocking(move || {
            crate::render::sops::runtime::materialize(&desired, &checkout, &sops)
        })
        .await;
        match placed {
            Ok(r) => r.map(|_| ()).map_err(ConvergeError::Secrets),
            Err(e) => Err(ConvergeError::Secrets(
                crate::render::sops::runtime::MaterializeError::Io {
                    path: self.settings.state_dir.join("repo"),
                    source: std::io::Error::other(e),
                },
            )),
        }
    }
}
