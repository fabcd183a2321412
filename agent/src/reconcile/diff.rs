//! `berth diff` against the agent: the plan of the fetched commit against the engine, rendered from the
//! clone's tree without a checkout; nothing is pulled, recorded or applied.

use super::{notify, render_tree, short, Agent};

impl Agent {
    /// `berth diff` without a directory: render the fetched commit from the local clone (`fetch`: ask
    /// the remote first), plan it against the engine and describe the plan, with old specs from the
    /// store. Nothing is pulled, checked out, recorded or applied. Bounded by `cycle_timeout`, pinging
    /// the watchdog, like a cycle.
    pub(super) async fn diff(
        &mut self,
        fetch: bool,
        watchdog: &mut tokio::time::Interval,
    ) -> Result<crate::api::DiffAnswer, crate::diff::DiffError> {
        use crate::diff::{engine, DiffError};
        let limit = self.settings.cycle_timeout;
        let work = async {
            if fetch {
                self.fetch().await.map_err(DiffError::Fetch)?;
            }
            let commit = self.fetched.clone().ok_or(DiffError::NothingFetched)?;
            let opts = super::render_options(&self.settings);
            let (c, short_id) = (commit.clone(), short(&commit).to_string());
            let desired = self
                .git(move |src| Ok(render_tree(&src.tree(&c)?, &opts)))
                .await
                .map_err(|source| DiffError::Read {
                    commit: short_id.clone(),
                    source,
                })?
                .map_err(|source| DiffError::Render {
                    commit: short_id,
                    source,
                })?;
            let mut desired = desired;
            crate::sealing::attach_digests(&mut desired, self.store.box_key());
            let pointers = self.db(|s| s.pointers()).await.map_err(DiffError::Agent)?;
            let agent_id = self.settings.agent_id.clone();
            let planned = engine::plan(&self.runtime, &desired, &agent_id, &self.pull_log).await?;
            let wanted = crate::diff::changed_hashes(&planned.plan);
            let mut known = self
                .db(move |s| engine::specs_in_store(s, &wanted))
                .await
                .map_err(DiffError::Agent)?;
            known.extend(engine::specs_from_labels(&self.runtime, &planned.plan, &known).await);
            Ok(crate::api::DiffAnswer {
                agent_id,
                commit: Some(commit),
                applied_commit: self.current.as_ref().map(|c| c.commit.clone()),
                pinned: pointers.pinned.is_some(),
                // Image names and problems are printed as written: digests, never values.
                diff: crate::sealing::redacted(
                    planned.describe(&desired, &known),
                    &crate::sealing::Redactor::new(
                        &desired.sensitive,
                        self.store.box_key().cloned(),
                    ),
                ),
            })
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
}
