//! `berth diff` against the agent: the plan of the fetched commit against the engine, rendered from the
//! clone's tree without a checkout; nothing is pulled, recorded or applied. A commit that fails
//! `source.verify` is not rendered (as in a cycle): the answer says it would be refused, and why.

use super::{notify, render_tree, short, Agent};
use crate::api::{DiffAnswer, Refusal};
use crate::diff::DiffError;
use crate::model::DesiredState;

/// What the git task found for the fetched commit.
enum Checked {
    /// `source.verify` refused it: not rendered.
    Refused(crate::source::verify::VerifyError),
    /// Verified (or verification is off) and rendered.
    Rendered {
        signer: Option<String>,
        desired: DesiredState,
    },
}

impl Agent {
    /// `berth diff` without a directory: render the fetched commit from the local clone (`fetch`: ask
    /// the remote first), plan it against the engine and describe the plan, with old specs from the
    /// store. Nothing is pulled, checked out, recorded or applied. Bounded by `cycle_timeout`, pinging
    /// the watchdog, like a cycle.
    pub(super) async fn diff(
        &mut self,
        fetch: bool,
        watchdog: &mut tokio::time::Interval,
    ) -> Result<DiffAnswer, DiffError> {
        use crate::diff::engine;
        let limit = self.settings.cycle_timeout;
        let work = async {
            if fetch {
                self.fetch().await.map_err(DiffError::Fetch)?;
            }
            let commit = self.fetched.clone().ok_or(DiffError::NothingFetched)?;
            let pointers = self.db(|s| s.pointers()).await.map_err(DiffError::Agent)?;
            let mut answer = DiffAnswer {
                agent_id: self.settings.agent_id.clone(),
                commit: Some(commit.clone()),
                applied_commit: self.current.as_ref().map(|c| c.commit.clone()),
                pinned: pointers.pinned.is_some(),
                signer: None,
                refused: None,
                diff: Default::default(),
            };
            let mut desired = match self.check_and_render(&commit).await? {
                Checked::Refused(e) => {
                    answer.refused = Some(Refusal {
                        commit,
                        reason: e.to_string(),
                        class: e.class(),
                    });
                    return Ok(answer);
                }
                Checked::Rendered { signer, desired } => {
                    answer.signer = signer;
                    desired
                }
            };
            crate::sealing::attach_digests(&mut desired, self.store.box_key());
            let planned = engine::plan(
                &self.runtime,
                &desired,
                &answer.agent_id,
                &self.pull_log,
                &self.apply_options.drift,
            )
            .await?;
            let wanted = crate::diff::changed_hashes(&planned.plan);
            let mut known = self
                .db(move |s| engine::specs_in_store(s, &wanted))
                .await
                .map_err(DiffError::Agent)?;
            known.extend(engine::specs_from_labels(&self.runtime, &planned.plan, &known).await);
            // Image names and problems are printed as written: digests, never values.
            answer.diff = crate::sealing::redacted(
                planned.describe(&desired, &known),
                &crate::sealing::Redactor::new(&desired.sensitive, self.store.box_key().cloned()),
            );
            Ok(answer)
        };
        let deadline = tokio::time::sleep(limit);
        tokio::pin!(work);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                r = &mut work => return r,
                _ = &mut deadline => return Err(DiffError::Timeout { after: limit }),
                _ = watchdog.tick() => notify::notify("WATCHDOG=1"),
            }
        }
    }

    /// Verify `commit` as a cycle would (`source.verify`, now) and, only when it passes, render it from
    /// the clone's tree.
    async fn check_and_render(&mut self, commit: &str) -> Result<Checked, DiffError> {
        let opts = super::render_options(&self.settings);
        let (c, short_id) = (commit.to_string(), short(commit).to_string());
        let checked = self
            .git(move |src| {
                Ok(match src.verify(&c, jiff::Timestamp::now()) {
                    Err(e) => Err(e),
                    Ok(signer) => Ok((signer, render_tree(&src.tree(&c)?, &opts))),
                })
            })
            .await
            .map_err(|source| DiffError::Read {
                commit: short_id.clone(),
                source,
            })?;
        match checked {
            Err(e) => Ok(Checked::Refused(e)),
            Ok((signer, rendered)) => Ok(Checked::Rendered {
                signer: signer.map(|s| s.to_string()),
                desired: rendered.map_err(|source| DiffError::Render {
                    commit: short_id,
                    source,
                })?,
            }),
        }
    }
}
