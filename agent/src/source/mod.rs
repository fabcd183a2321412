//! Git source: fetch the followed ref into `state_dir`, pick the commit, expose its tree to `render/`,
//! check a rendered revision out into the working tree that bind mounts point into, and keep applied
//! commits reachable locally so rollback works offline (`applied.rs`: the applied refs, their pruning
//! and `git gc`).
//!
//! Signatures of fetched commits (and followed tags) are checked in `verify/` (`source.verify`).
//!
//! Everything here is blocking (git2); the reconcile loop calls it through `spawn_blocking`.
//!
//! Decisions:
//! - **Check first.** `fetch` lists the remote's refs (like `git ls-remote`) and downloads objects only when
//!   the commit the followed ref names is not in the local object database. A pinned commit that is
//!   present locally needs no network at all.
//! - **Shallow.** Branches and tags are fetched with depth 1 over the network; libgit2's local transport
//!   (`file://` and plain paths) cannot do shallow fetches (and copies the objects of every ref), so those
//!   fetch fully (nothing crosses a network anyway), and a server that refuses shallow gets a full fetch.
//!   A pinned commit that is an advertised tip (or a prefix of exactly one) is fetched shallow through that
//!   ref; a full id that is not advertised is asked for by id (servers that allow it); otherwise every
//!   branch and tag is fetched with full history (unshallowing a shallow clone) and the id resolved.
//!   libgit2 never deletes objects, `refs/berth/applied/<seq>` keeps applied commits reachable for
//!   `git gc` (which history retention runs: `applied.rs`), and the `shallow` file keeps listing the
//!   boundary commits whose parents are absent (a local-transport fetch would otherwise drop it), so kept
//!   commits stay usable offline.
//! - **Timeouts.** `source.timeout` is libgit2's (process-wide) connect and socket read/write timeout and
//!   also a deadline for the whole fetch, checked in the progress and credential callbacks.
//! - **Auth.** HTTPS: the token of `source.token_file` (read when the server asks, trimmed) is the password,
//!   with `source.username`, else the URL's user, else `x-access-token`. SSH: `source.ssh_key`, else the
//!   ssh-agent, with the URL's user, else `source.username`, else `git` (no key passphrases). At most 3 credentials per connection, then
//!   "authentication failed". Host keys: checked against `source.known_hosts` when set; otherwise libgit2
//!   checks the service user's `~/.ssh/known_hosts` and refuses unknown hosts (never trust on first use).
//!   TLS certificates are checked by libgit2 against the system store.
//! - **Secrets.** Every message built from libgit2 goes through [`redact`] and has the token value (and any
//!   URL password) replaced by `***`.
//! - **Checkout** is `git checkout --force --detach <id>` minus one thing: tracked files are reset to the
//!   commit (hand edits are discarded, deleted files removed), untracked and ignored files are kept, and a
//!   checkout that would overwrite or delete an untracked file (a file of the commit where an untracked one
//!   with other content lies, or a tracked directory turned into a file while it holds untracked data) is
//!   refused with the paths named: container data is never destroyed.
//! - **Crash safety.** `open` removes lock files (`index.lock`, `refs/**.lock`...) a power loss can leave
//!   behind: the agent holds the store lock, so nothing else writes this repository.
//! - **Submodules** are not fetched or checked out; in a [`GitTree`] they are empty directories.

mod applied;
mod known_hosts;
mod remote;
mod tree;
pub mod verify;

#[cfg(test)]
mod tests;

pub use applied::{AppliedPrune, Gc, GcError, GC_TIMEOUT};
pub use tree::GitTree;

use crate::config::{GitRef, SourceSettings};
use git2::build::CheckoutBuilder;
use git2::{
    AutotagOption, Direction, ErrorCode, FetchOptions, FetchPrune, ObjectType, Oid, ProxyOptions,
    Repository, RepositoryOpenFlags, TreeWalkMode, TreeWalkResult,
};
use remote::Session;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Network, auth or protocol failure talking to the remote. The message is already redacted.
    #[error("fetch {url}: {message}")]
    Fetch { url: String, message: String },
    /// The followed branch/tag/commit does not exist on the remote.
    #[error("{url}: {what} not found")]
    RefNotFound { url: String, what: String },
    /// Local repository problem (disk full, corrupt objects...).
    #[error("local repository {}: {message}", path.display())]
    Local { path: PathBuf, message: String },
}

/// Result of one poll of the remote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchOutcome {
    /// Full 40-hex id of the commit the followed ref names now.
    pub commit: String,
    /// True when objects were fetched (the remote ref moved or the commit was missing locally); false when
    /// the remote ref was checked and nothing needed fetching.
    pub fetched: bool,
}

/// Metadata of a commit, for history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitInfo {
    pub id: String,
    pub author: String,
    /// First line of the message.
    pub summary: String,
    /// Seconds since the epoch.
    pub time: i64,
}

/// Where a pinned commit fetched from the remote is kept reachable.
const PINNED_REF: &str = "refs/berth/pinned";
/// Prefix of the refs that keep applied commits reachable.
const APPLIED_REFS: &str = "refs/berth/applied/";
const MODE_TREE: i32 = 0o040000;
const MODE_LINK: i32 = 0o120000;
const MODE_SUBMODULE: i32 = 0o160000;

/// The local clone under `state_dir` and how to reach its remote.
pub struct GitSource {
    settings: SourceSettings,
    repo_dir: PathBuf,
    repo: Repository,
    fetches: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Depth {
    /// The commit only (depth 1) where the transport allows it.
    Shallow,
    /// Complete history (unshallowing a shallow clone).
    Full,
}

impl GitSource {
    /// Open (or initialise) the local repository at `<state_dir>/repo`, and point its remote `origin` at
    /// `settings.url`. A directory there that is not a usable repository is an error, never deleted.
    pub fn open(state_dir: &Path, settings: &SourceSettings) -> Result<Self, SourceError> {
        let repo_dir = state_dir.join("repo");
        let local = |message: String| SourceError::Local {
            path: repo_dir.clone(),
            message: redact(&message),
        };
        let repo = match std::fs::symlink_metadata(&repo_dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(&repo_dir)
                    .map_err(|e| local(format!("cannot create the directory: {e}")))?;
                Repository::init(&repo_dir)
                    .map_err(|e| local(format!("cannot initialise: {}", e.message())))?
            }
            Err(e) => return Err(local(format!("cannot inspect: {e}"))),
            Ok(md) if !md.is_dir() => {
                return Err(local(
                    "exists but is not a directory; move it away so berth can clone into it".into(),
                ))
            }
            Ok(_) => {
                if std::fs::symlink_metadata(repo_dir.join(".git")).is_ok() {
                    Repository::open_ext(
                        &repo_dir,
                        RepositoryOpenFlags::NO_SEARCH,
                        std::iter::empty::<&std::ffi::OsStr>(),
                    )
                    .map_err(|e| {
                        local(format!(
                            "is not a usable Git repository ({}); berth does not delete it: move it away \
                             to start from a fresh clone",
                            e.message()
                        ))
                    })?
                } else if std::fs::read_dir(&repo_dir)
                    .map_err(|e| local(format!("cannot read the directory: {e}")))?
                    .next()
                    .is_none()
                {
                    Repository::init(&repo_dir)
                        .map_err(|e| local(format!("cannot initialise: {}", e.message())))?
                } else {
                    return Err(local(
                        "exists, is not empty and is not a Git repository; berth does not delete it: \
                         move it away so berth can clone into it"
                            .into(),
                    ));
                }
            }
        };
        if repo.is_bare() || repo.workdir().is_none() {
            return Err(local(
                "is a bare repository; berth needs a working tree there: move it away".into(),
            ));
        }
        remove_stale_locks(repo.path());
        if let Err(e) = repo.index() {
            return Err(local(format!(
                "the index is unreadable ({}); berth does not delete it: move {} away",
                e.message(),
                repo.path().join("index").display()
            )));
        }
        match repo.find_remote("origin") {
            Ok(r) if r.url_bytes() == settings.url.as_bytes() => {}
            Ok(_) => repo
                .remote_set_url("origin", &settings.url)
                .map_err(|e| local(format!("cannot set the remote URL: {}", e.message())))?,
            Err(e) if e.code() == ErrorCode::NotFound => {
                repo.remote("origin", &settings.url)
                    .map_err(|e| local(format!("cannot add the remote: {}", e.message())))?;
            }
            Err(e) => return Err(local(format!("cannot read the remote: {}", e.message()))),
        }
        Ok(GitSource {
            settings: settings.clone(),
            repo_dir,
            repo,
            fetches: 0,
        })
    }

    /// The working tree bind mounts point into.
    pub fn workdir(&self) -> &Path {
        &self.repo_dir
    }

    /// Check the remote ref; fetch objects only when it moved.
    pub fn fetch(&mut self) -> Result<FetchOutcome, SourceError> {
        let settings = self.settings.clone();
        let session = Session::new(&settings);
        let (commit, fetched) = match &settings.reference {
            GitRef::Branch(b) => self.fetch_ref(
                &session,
                &format!("refs/heads/{b}"),
                &format!("refs/remotes/origin/{b}"),
            )?,
            GitRef::Tag(t) => {
                let r = format!("refs/tags/{t}");
                self.fetch_ref(&session, &r, &r)?
            }
            GitRef::Commit(c) => self.fetch_commit(&session, c)?,
        };
        if fetched {
            self.fetches += 1;
            tracing::info!(url = %redact(&settings.url), reference = %settings.reference, commit = %commit, "fetched");
        }
        Ok(FetchOutcome {
            commit: commit.to_string(),
            fetched,
        })
    }

    /// How many times `fetch` downloaded objects since `open`.
    pub fn fetch_count(&self) -> u64 {
        self.fetches
    }

    /// Author, summary and time of a commit in the local repository.
    pub fn commit_info(&self, id: &str) -> Result<CommitInfo, SourceError> {
        let oid = self.require_commit(id)?;
        let c = self
            .repo
            .find_commit(oid)
            .map_err(|e| self.local_err("cannot read commit", &e))?;
        let author = c.author();
        let message = String::from_utf8_lossy(c.message_bytes());
        Ok(CommitInfo {
            id: oid.to_string(),
            author: format!(
                "{} <{}>",
                String::from_utf8_lossy(author.name_bytes()),
                String::from_utf8_lossy(author.email_bytes())
            ),
            summary: message.lines().next().unwrap_or("").trim().to_string(),
            time: c.time().seconds(),
        })
    }

    /// The tree of a commit in the local repository, for rendering before anything on disk changes.
    pub fn tree(&self, id: &str) -> Result<GitTree, SourceError> {
        let oid = self.require_commit(id)?;
        let tree = self
            .repo
            .find_commit(oid)
            .map_err(|e| self.local_err("cannot read commit", &e))?
            .tree_id();
        let repo =
            Repository::open(&self.repo_dir).map_err(|e| self.local_err("cannot open", &e))?;
        Ok(GitTree::new(repo, tree, oid.to_string()))
    }

    /// Make the working tree hold commit `id`, the way `git checkout --force --detach` does, except that
    /// untracked files are never overwritten or deleted (see the module documentation).
    pub fn checkout(&self, id: &str) -> Result<(), SourceError> {
        let oid = self.require_commit(id)?;
        let commit = self
            .repo
            .find_commit(oid)
            .map_err(|e| self.local_err("cannot read commit", &e))?;
        let tree = commit
            .tree()
            .map_err(|e| self.local_err("cannot read the tree of commit", &e))?;
        let blocked = self
            .untracked_in_the_way(&tree)
            .map_err(|e| self.local_err("cannot compare the working tree", &e))?;
        if !blocked.is_empty() {
            let mut list = blocked
                .iter()
                .take(10)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ");
            if blocked.len() > 10 {
                list.push_str(&format!(" and {} more", blocked.len() - 10));
            }
            return Err(SourceError::Local {
                path: self.repo_dir.clone(),
                message: format!(
                    "checkout of {} would overwrite untracked files: {list}; berth never deletes files \
                     it does not track: move them away (or commit them)",
                    short(&oid)
                ),
            });
        }
        let mut co = CheckoutBuilder::new();
        co.force();
        self.repo
            .checkout_tree(tree.as_object(), Some(&mut co))
            .map_err(|e| self.local_err(&format!("checkout of {}", short(&oid)), &e))?;
        self.repo
            .set_head_detached(oid)
            .map_err(|e| self.local_err("cannot move HEAD", &e))?;
        Ok(())
    }

    // --- fetching ---

    /// Branch or tag: `remote_ref` on the remote, kept locally as `local_ref`.
    fn fetch_ref(
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
    fn fetch_commit(
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

    // --- local lookups ---

    /// The commit an object (commit or annotated tag) peels to, if it is in the local repository.
    fn local_commit_of(&self, oid: Oid) -> Option<Oid> {
        let obj = self.repo.find_object(oid, None).ok()?;
        obj.peel_to_commit().ok().map(|c| c.id())
    }

    /// A commit by full id or prefix: `Ok(None)` when absent, an error when the prefix is ambiguous.
    fn lookup_commit(&self, id: &str) -> Result<Option<Oid>, SourceError> {
        let id = id.trim();
        if id.len() == 40 {
            return Ok(Oid::from_str(id)
                .ok()
                .and_then(|oid| self.repo.find_commit(oid).ok())
                .map(|c| c.id()));
        }
        if id.len() < 4 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        match self.repo.find_commit_by_prefix(id) {
            Ok(c) => Ok(Some(c.id())),
            Err(e) if e.code() == ErrorCode::Ambiguous => Err(SourceError::Fetch {
                url: redact(&self.settings.url),
                message: format!("commit {id} is ambiguous: more than one object starts with it; use more hex digits"),
            }),
            Err(_) => Ok(None),
        }
    }

    fn require_commit(&self, id: &str) -> Result<Oid, SourceError> {
        self.lookup_commit(id)?.ok_or_else(|| SourceError::Local {
            path: self.repo_dir.clone(),
            message: format!("commit {id} is not in the local repository"),
        })
    }

    /// Repository-relative paths of untracked (or ignored) files that checking `tree` out would overwrite
    /// or delete.
    fn untracked_in_the_way(&self, tree: &git2::Tree<'_>) -> Result<Vec<String>, git2::Error> {
        let mut index = self.repo.index()?;
        index.read(false)?;
        let tracked: HashSet<Vec<u8>> = index.iter().map(|e| e.path).collect();
        let mut blocked = Vec::new();
        tree.walk(TreeWalkMode::PreOrder, |root, entry| {
            let rel = format!("{root}{}", String::from_utf8_lossy(entry.name_bytes()));
            let full = self.repo_dir.join(&rel);
            let mode = entry.filemode();
            let Ok(md) = std::fs::symlink_metadata(&full) else {
                return TreeWalkResult::Skip; // nothing on disk there (or below)
            };
            if mode == MODE_SUBMODULE {
                return TreeWalkResult::Skip;
            }
            if mode == MODE_TREE {
                if md.is_dir() {
                    return TreeWalkResult::Ok;
                }
                if !tracked.contains(rel.as_bytes()) {
                    blocked.push(rel);
                }
                return TreeWalkResult::Skip;
            }
            if tracked.contains(rel.as_bytes()) {
                return TreeWalkResult::Ok;
            }
            let in_the_way = if md.is_dir() {
                dir_has_untracked(&full, &rel, &tracked)
            } else {
                !same_content(&full, &md, mode, entry.id())
            };
            if in_the_way {
                blocked.push(rel);
            }
            TreeWalkResult::Ok
        })?;
        Ok(blocked)
    }

    // --- errors ---

    fn not_found(&self) -> SourceError {
        SourceError::RefNotFound {
            url: redact(&self.settings.url),
            what: self.settings.reference.to_string(),
        }
    }

    fn local_err(&self, what: &str, e: &git2::Error) -> SourceError {
        SourceError::Local {
            path: self.repo_dir.clone(),
            message: redact(&format!("{what}: {}", e.message())),
        }
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

fn short(oid: &Oid) -> String {
    oid.to_string()[..12].to_string()
}

/// Does the directory `full` (repository path `rel`) hold a file (or symlink) the index does not track?
fn dir_has_untracked(full: &Path, rel: &str, tracked: &HashSet<Vec<u8>>) -> bool {
    let Ok(entries) = std::fs::read_dir(full) else {
        return true; // unreadable: assume the worst
    };
    for entry in entries {
        let Ok(entry) = entry else { return true };
        let child = format!("{rel}/{}", entry.file_name().to_string_lossy());
        match std::fs::symlink_metadata(entry.path()) {
            Ok(md) if md.is_dir() => {
                if dir_has_untracked(&entry.path(), &child, tracked) {
                    return true;
                }
            }
            Ok(_) => {
                if !tracked.contains(child.as_bytes()) {
                    return true;
                }
            }
            Err(_) => return true,
        }
    }
    false
}

/// Is the untracked file at `full` exactly what the commit puts there?
fn same_content(full: &Path, md: &std::fs::Metadata, mode: i32, id: Oid) -> bool {
    if mode == MODE_LINK {
        if !md.file_type().is_symlink() {
            return false;
        }
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStrExt;
            std::fs::read_link(full)
                .ok()
                .and_then(|t| Oid::hash_object(ObjectType::Blob, t.as_os_str().as_bytes()).ok())
                == Some(id)
        }
        #[cfg(not(unix))]
        {
            false
        }
    } else {
        md.is_file() && Oid::hash_file(ObjectType::Blob, full).ok() == Some(id)
    }
}

/// Remove lock files a crash (power loss on an edge box) can leave behind; only this agent writes to its
/// repository, and a stale lock would make every later checkout or ref update fail.
fn remove_stale_locks(gitdir: &Path) {
    let mut candidates: Vec<PathBuf> = [
        "index.lock",
        "HEAD.lock",
        "config.lock",
        "shallow.lock",
        "packed-refs.lock",
    ]
    .iter()
    .map(|n| gitdir.join(n))
    .collect();
    let mut dirs = vec![gitdir.join("refs")];
    while let Some(dir) = dirs.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "lock") {
                candidates.push(p);
            }
        }
    }
    for p in candidates {
        if p.exists() {
            match std::fs::remove_file(&p) {
                Ok(()) => tracing::warn!(path = %p.display(), "removed a stale Git lock file"),
                Err(e) => {
                    tracing::warn!(path = %p.display(), error = %e, "cannot remove a stale Git lock file")
                }
            }
        }
    }
}

/// Hide credentials in URLs anywhere in `s`: `https://user:tok@host/x` → `https://user:***@host/x`. An
/// http(s) URL with a user name but no password (`https://TOKEN@host/x`, how some forges take tokens) has
/// the whole user info hidden: `https://***@host/x`. SSH users (`ssh://git@host`) are kept. Each
/// `scheme://…` word is parsed by `url`, which decides what its user and password are; the rest of the
/// text, and the URL itself apart from the hidden part, are kept as written. A word that does not parse
/// as a URL but has an `@` in its authority has its whole user info hidden.
pub fn redact(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("://") {
        // The scheme: the run of scheme characters before `://`.
        let scheme_start = rest[..i]
            .char_indices()
            .rev()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |(j, c)| j + c.len_utf8());
        out.push_str(&rest[..scheme_start]);
        let word_end = rest[i..]
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '`'))
            .map_or(rest.len(), |j| i + j);
        let (shown, used) = redact_url(&rest[scheme_start..word_end], i - scheme_start);
        out.push_str(&shown);
        // What follows the authority is scanned again (`?next=https://u:p@h2`).
        rest = &rest[scheme_start + used..];
    }
    out.push_str(rest);
    out
}

/// [`redact`] for one word `scheme://…` (`sep`: where its `://` is): the text to show for its start, and
/// how many bytes of the word that covers (through the authority).
fn redact_url(word: &str, sep: usize) -> (String, usize) {
    let after = sep + 3;
    // Where the user info ends, as written: the last `@` before the path, query or fragment.
    let authority_end = word[after..]
        .find(['/', '?', '#', '\\'])
        .map_or(word.len(), |j| after + j);
    let unchanged = (word[..authority_end].to_string(), authority_end);
    let at = word[after..authority_end].rfind('@').map(|j| after + j);
    // Trailing sentence punctuation is not part of the URL (`(see https://u:p@host).`).
    let url_text = word.trim_end_matches([')', ']', ',', ';', '.', '!']);
    let parsed = url::Url::parse(url_text).or_else(|_| url::Url::parse(word));
    let hidden = match &parsed {
        Ok(u) if u.password().is_some() => format!("{}:***", u.username()),
        Ok(u) if !u.username().is_empty() && matches!(u.scheme(), "http" | "https") => {
            "***".to_string()
        }
        Ok(_) => return unchanged, // no credentials, or an SSH user name
        Err(_) => "***".to_string(),
    };
    match (at, parsed) {
        (Some(at), _) => (
            format!("{}{hidden}{}", &word[..after], &word[at..authority_end]),
            authority_end,
        ),
        // `url` saw user info where the text shows no `@` before the path: rare, but then the parsed
        // URL, blanked, is what is shown.
        (None, Ok(mut u)) => {
            let _ = u.set_password(None);
            let _ = u.set_username("***");
            (u.to_string(), word.len())
        }
        (None, Err(_)) => unchanged,
    }
}
