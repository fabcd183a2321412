//! A cycle's work on the local clone: ask the remote, verify and render a commit from its tree, check it
//! out, and history retention (old store records and their applied refs).

use super::{render_options, render_tree_warned, short, Agent};
use crate::error::CycleError;
use crate::model::DesiredState;
use crate::source;
use crate::store::{Outcome, Revision};
use std::time::Instant;

impl Agent {
    /// Ask the remote where the followed ref is; fetch objects only when it moved.
    pub(super) async fn fetch(&mut self) -> Result<(), CycleError> {
        tracing::debug!("checking the remote");
        let fetched = self
            .git(|src| src.fetch().map(|o| (o, src.fetch_count())))
            .await;
        self.backoff.fetch_done(fetched.is_ok(), Instant::now());
        self.alerts.fetched(fetched.is_ok());
        self.metrics.fetch_done(fetched.is_ok());
        let (outcome, count) = fetched.map_err(CycleError::Fetch)?;
        self.fetched = Some(outcome.commit.clone());
        self.set_status(|s| {
            s.fetched_commit = Some(outcome.commit.clone());
            s.fetched_at = Some(crate::now_unix());
            s.fetch_count = count;
        });
        Ok(())
    }

    /// History retention (`history.keep`): drop old revisions from the store, then the applied refs of
    /// revisions it no longer holds, and let `git gc --auto` reclaim objects. Both block: in the git task.
    pub(super) async fn prune_history(&mut self) {
        let (store, keep) = (self.store.clone(), self.settings.history.keep);
        let pruned = self
            .git(move |src| {
                let removed = store.prune(keep, &[]);
                Ok(removed.map(|r| (r, src.prune_applied(&|seq| store.may_need(seq)))))
            })
            .await;
        match pruned {
            Ok(Ok((removed, Ok(refs)))) => {
                if !removed.is_empty() || !refs.deleted.is_empty() {
                    tracing::info!(
                        keep,
                        revisions = removed.len(),
                        refs = refs.deleted.len(),
                        "history pruned"
                    );
                }
                if let Err(e) = refs.gc {
                    tracing::warn!(error = %e, "git gc of the local clone failed");
                }
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot prune history"),
            Ok(Ok((_, Err(e)))) | Err(e) => tracing::warn!(error = %e, "cannot prune applied refs"),
        }
    }

    /// Check `commit` out into the working tree unless it is known to be there already.
    pub(super) async fn ensure_checkout(
        &mut self,
        commit: &str,
    ) -> Result<(), source::SourceError> {
        if self.checked_out.as_deref() == Some(commit) {
            return Ok(());
        }
        let c = commit.to_string();
        self.git(move |src| src.checkout(&c)).await?;
        self.checked_out = Some(commit.to_string());
        Ok(())
    }

    /// Verify a commit's signature (`source.verify`), render it from its Git tree, then (only if it
    /// rendered) check it out. `Err` carries the error and, when the commit could be read, a failed
    /// revision record (without a sequence number).
    pub(super) async fn render_commit(
        &mut self,
        commit: &str,
    ) -> Result<(DesiredState, Revision), (CycleError, Option<Revision>)> {
        let opts = render_options(&self.settings);
        let c = commit.to_string();
        let rendered = self
            .git(move |src| {
                let info = src.commit_info(&c)?;
                // An unverified commit is not even rendered.
                let rendered = match src.verify(&c, jiff::Timestamp::now()) {
                    Ok(signer) => Ok((signer, render_tree_warned(&src.tree(&c)?, &opts))),
                    Err(e) => Err(e),
                };
                Ok((info, rendered))
            })
            .await;
        let (info, verified) = match rendered {
            Ok(v) => v,
            Err(source) => {
                let commit = short(commit).to_string();
                return Err((CycleError::Read { commit, source }, None));
            }
        };
        let mut rev = Revision {
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
            error_class: None,
            facts: self.settings.public_facts(),
            signer: None,
            warnings: Vec::new(),
        };
        let c = short(commit).to_string();
        let desired = match verified {
            Err(source) => Err(CycleError::Verify { commit: c, source }),
            Ok((signer, (result, warnings))) => {
                rev.signer = signer;
                rev.warnings = warnings.iter().map(|w| w.to_string()).collect();
                for w in &rev.warnings {
                    tracing::warn!(warning = %w, commit = short(commit), "render");
                }
                result.map_err(|source| CycleError::Render { commit: c, source })
            }
        };
        let desired = match desired {
            Ok(mut d) => {
                crate::sealing::attach_digests(&mut d, self.store.box_key());
                self.secrets.extend(&d.sensitive);
                d
            }
            Err(err) => {
                let failed = Revision {
                    error: Some(err.to_string()),
                    ..rev
                };
                return Err((err, Some(failed)));
            }
        };
        if let Err(source) = self.ensure_checkout(commit).await {
            let commit = short(commit).to_string();
            return Err((CycleError::Checkout { commit, source }, None));
        }
        Ok((
            desired.clone(),
            Revision {
                desired: Some(desired),
                ..rev
            },
        ))
    }
}
