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
//!   with `source.username`, else the URL's user, else `x-access-token`; without a token, a user name and
//!   password written in `source.url`. The clone's config (and `FETCH_HEAD`) never hold a password, nor an
//!   http(s) user name: `open` stores the URL without them and rewrites a clone that has them. SSH: `source.ssh_key`, else the
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
//!
//! This file opens the clone and reads commits and trees from it; `fetch.rs` fetches, `checkout.rs`
//! checks out, `redaction.rs` hides credentials, `remote.rs` holds a connection's callbacks.

mod applied;
mod checkout;
mod fetch;
mod known_hosts;
mod redaction;
mod remote;
mod tree;
pub mod verify;

#[cfg(test)]
mod tests;

pub use applied::{AppliedPrune, Gc, GcError, GC_TIMEOUT};
pub use redaction::redact;
pub use tree::GitTree;

use crate::config::{GitRef, SourceSettings};
use git2::{ErrorCode, Oid, Repository, RepositoryOpenFlags};
use remote::Session;
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

/// The local clone under `state_dir` and how to reach its remote.
pub struct GitSource {
    settings: SourceSettings,
    repo_dir: PathBuf,
    repo: Repository,
    fetches: u64,
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
        // Never with credentials: the callback gives them (a clone that holds them is rewritten here).
        let url = remote::remote_url(&settings.url);
        match repo.find_remote("origin") {
            Ok(r) if r.url_bytes() == url.as_bytes() => {}
            Ok(_) => {
                repo.remote_set_url("origin", &url)
                    .map_err(|e| local(format!("cannot set the remote URL: {}", e.message())))?;
                // It names the URL it was fetched from: maybe the old one, with credentials.
                match std::fs::remove_file(repo.path().join("FETCH_HEAD")) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(local(format!("cannot remove FETCH_HEAD: {e}")))
                    }
                    _ => {}
                }
            }
            Err(e) if e.code() == ErrorCode::NotFound => {
                repo.remote("origin", &url)
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
