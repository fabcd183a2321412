//! Fetching: list the remote's refs, fetch the followed branch or tag or a pinned commit (shallow where
//! the transport and server allow it, full otherwise), and keep the `shallow` file's boundary commits.

use super::remote::{self, Session};
use super::{redact, GitSource, SourceError, PINNED_REF};
use crate::config::SourceSettings;
use git2::{AutotagOption, Direction, FetchOptions, FetchPrune, Oid, ProxyOptions, Repository};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Depth {
    /// The commit only (depth 1) where the transport allows it.
    Shallow,
    /// Complete history (unshallowing a shallow clone).
    Full,
}

impl GitSource {
    // --- fetching ---

    /// Branch or tag: `remote_ref` on the remote, kept locally as `local_ref`.
    pub(super) fn fetch_ref(
        &mut self,
        session: &Session<'_>,
        remote_ref: &str,
        local_ref: &str,
    ) -> Result<(Oid, bool), SourceError> {
        let heads = self.ls_remote(session)?;
        let advertised = find_head(&heads, remote_ref).ok_or_else(|| self.not_found())?;
        let peeled = find_head(&heads, &format!("{remote_ref}^{{}}"));
        // Nothing moved (or it moved to a commit we already have): no download. A tag re-made on a
        // commit we have still brings its new tag object (its signature is what `source.verify` checks).
        if let Some(commit) = self.local_commit_of(peeled.unwrap_or(advertised)) {
            if self.repo.find_object(advertised, None).is_ok() {
                let _ =
                    self.repo
                        .reference(local_ref, advertised, true, "berth: remote ref checked");
                return Ok((commit, false));
            }
        }
        self.download(
            session,
            &[format!("+{remote_ref}:{local_ref}")],
            Depth::Shallow,
        )?;
        let commit = self
            .repo
            .find_reference(local_ref)
            .and_then(|r| r.peel_to_commit())
            .map_err(|e| SourceError::Fetch {
                url: redact(&self.settings.url),
                message: format!(
                    "{} does not name a commit after the fetch: {}",
                    self.settings.reference,
                    session.scrub(e.message())
                ),
            })?;
        Ok((commit.id(), true))
    }

    /// A pinned commit: no network when present; else fetch it (by an advertised ref, by id, or all heads
    /// and tags) and resolve the (possibly abbreviated) id unambiguously.
    pub(super) fn fetch_commit(
        &mut self,
        session: &Session<'_>,
        id: &str,
    ) -> Result<(Oid, bool), SourceError> {
        let id = id.trim().to_ascii_lowercase();
        if !(7..=40).contains(&id.len()) || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(SourceError::Fetch {
                url: redact(&self.settings.url),
                message: format!("commit {id:?} is not 7 to 40 hex digits"),
            });
        }
        if let Some(oid) = self.lookup_commit(&id)? {
            return Ok((oid, false));
        }
        let heads = self.ls_remote(session)?;
        let mut tips: Vec<(&str, Oid)> = heads
            .iter()
            .filter(|(name, oid)| name != "HEAD" && oid.to_string().starts_with(&id))
            .map(|(name, oid)| (name.trim_end_matches("^{}"), *oid))
            .collect();
        tips.sort_by_key(|(_, oid)| *oid);
        tips.dedup_by_key(|(_, oid)| *oid);
        let mut found = None;
        if let [(name, _)] = tips.as_slice() {
            // The commit is (or a tag peels to) an advertised tip: a shallow fetch of that ref is enough.
            self.download(session, &[format!("+{name}:{PINNED_REF}")], Depth::Shallow)?;
            found = self.lookup_commit(&id)?;
        } else if id.len() == 40 && tips.is_empty() {
            // Not advertised: servers that allow it send a reachable commit by id.
            match self.download(session, &[format!("+{id}:{PINNED_REF}")], Depth::Shallow) {
                Ok(()) => found = self.lookup_commit(&id)?,
                Err(e) if session.gave_up() => return Err(e),
                Err(e) => {
                    tracing::debug!(error = %e, "fetch by commit id refused; fetching every branch and tag")
                }
            }
        }
        if found.is_none() {
            self.download(
                session,
                &[
                    "+refs/heads/*:refs/remotes/origin/*".to_string(),
                    "+refs/tags/*:refs/tags/*".to_string(),
                ],
                Depth::Full,
            )?;
            found = self.lookup_commit(&id)?;
        }
        let oid = found.ok_or_else(|| self.not_found())?;
        self.repo
            .reference(PINNED_REF, oid, true, "berth: pinned commit")
            .map_err(|e| self.local_err("cannot write the pinned ref", &e))?;
        Ok((oid, true))
    }

    /// The refs the remote advertises (name, id), including peeled tags (`refs/tags/x^{}`).
    fn ls_remote(&mut self, session: &Session<'_>) -> Result<Vec<(String, Oid)>, SourceError> {
        let mut remote = self
            .repo
            .find_remote("origin")
            .map_err(|e| self.local_err("cannot read the remote", &e))?;
        let mut proxy = ProxyOptions::new();
        proxy.auto();
        let conn = remote
            .connect_auth(Direction::Fetch, Some(session.callbacks()), Some(proxy))
            .map_err(|e| fetch_err(&self.settings, session, &e))?;
        let heads = conn
            .list()
            .map_err(|e| fetch_err(&self.settings, session, &e))?
            .iter()
            .map(|h| (h.name().to_string(), h.oid()))
            .collect();
        Ok(heads)
    }

    /// Download `refspecs`, shallow where the transport allows; the `shallow` file keeps listing boundary
    /// commits whose parents are still absent.
    fn download(
        &mut self,
        session: &Session<'_>,
        refspecs: &[String],
        depth: Depth,
    ) -> Result<(), SourceError> {
        let local = remote::is_local(&self.settings.url);
        let before = self.shallow_roots();
        let mut result = Err(None);
        if depth == Depth::Shallow && !local {
            result = self.download_once(session, refspecs, 1).map_err(Some);
            if let Err(Some(e)) = &result {
                if !session.gave_up() && e.message().contains("shallow") {
                    tracing::info!(url = %redact(&self.settings.url), "the remote refuses shallow fetches; fetching full history");
                    result = Err(None);
                }
            }
        }
        if let Err(None) = result {
            let d = if depth == Depth::Full && !local && self.repo.is_shallow() {
                i32::MAX // GIT_FETCH_DEPTH_UNSHALLOW
            } else {
                0
            };
            result = self.download_once(session, refspecs, d).map_err(Some);
        }
        let restored = self.restore_shallow_roots(&before);
        match result {
            Ok(()) => restored,
            Err(Some(e)) => Err(fetch_err(&self.settings, session, &e)),
            Err(None) => unreachable!("a download was attempted"),
        }
    }

    fn download_once(
        &self,
        session: &Session<'_>,
        refspecs: &[String],
        depth: i32,
    ) -> Result<(), git2::Error> {
        let mut remote = self.repo.find_remote("origin")?;
        let mut proxy = ProxyOptions::new();
        proxy.auto();
        let mut fo = FetchOptions::new();
        fo.remote_callbacks(session.callbacks())
            .proxy_options(proxy)
            .download_tags(AutotagOption::None)
            .update_fetchhead(false)
            .prune(FetchPrune::Off);
        if depth > 0 {
            fo.depth(depth);
        }
        remote.fetch(refspecs, Some(&mut fo), Some("berth: fetch"))
    }

    fn shallow_roots(&self) -> Vec<Oid> {
        std::fs::read_to_string(self.repo.path().join("shallow"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| Oid::from_str(l.trim()).ok())
            .collect()
    }

    /// libgit2's local transport rewrites the `shallow` file as empty; put back every earlier boundary
    /// commit that still lacks a parent, so history walks (fetch negotiation, `git log`, `git gc`) do not
    /// trip over missing parents of kept commits.
    fn restore_shallow_roots(&mut self, before: &[Oid]) -> Result<(), SourceError> {
        if before.is_empty() {
            return Ok(());
        }
        let after = self.shallow_roots();
        let odb = self
            .repo
            .odb()
            .map_err(|e| self.local_err("cannot open the object database", &e))?;
        let lacks_parent = |oid: &Oid| match odb.read(*oid) {
            Ok(obj) => String::from_utf8_lossy(obj.data())
                .lines()
                .take_while(|l| !l.is_empty())
                .filter_map(|l| l.strip_prefix("parent "))
                .filter_map(|p| Oid::from_str(p.trim()).ok())
                .any(|p| !odb.exists(p)),
            Err(_) => false,
        };
        let lost: Vec<Oid> = before
            .iter()
            .filter(|o| !after.contains(o) && lacks_parent(o))
            .copied()
            .collect();
        drop(odb);
        if lost.is_empty() {
            return Ok(());
        }
        let text: String = after
            .iter()
            .chain(lost.iter())
            .map(|o| format!("{o}\n"))
            .collect();
        let path = self.repo.path().join("shallow");
        let tmp = self.repo.path().join("shallow.berth-tmp");
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| SourceError::Local {
                path: self.repo_dir.clone(),
                message: format!("cannot write {}: {e}", path.display()),
            })?;
        // Reopen so libgit2 reloads the grafts.
        self.repo =
            Repository::open(&self.repo_dir).map_err(|e| self.local_err("cannot reopen", &e))?;
        Ok(())
    }
}

fn fetch_err(settings: &SourceSettings, session: &Session<'_>, e: &git2::Error) -> SourceError {
    SourceError::Fetch {
        url: redact(&settings.url),
        message: session.describe(e),
    }
}

fn find_head(heads: &[(String, Oid)], name: &str) -> Option<Oid> {
    heads.iter().find(|(n, _)| n == name).map(|(_, oid)| *oid)
}
