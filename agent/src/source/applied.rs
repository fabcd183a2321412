//! Applied refs and their retention: `refs/berth/applied/<seq>` keeps the commit of every recorded revision
//! in the local clone, so rollback works offline; when history is pruned the refs of revisions the store
//! no longer holds are deleted, and Git's own `git gc --auto` (bounded) reclaims what nothing references.
//!
//! Why `git gc` and not libgit2: libgit2 has no gc, and a hand-written repack that deletes pack files is
//! the one bug that would lose the commits rollback needs. `git gc --auto` is what `git fetch` itself runs
//! after every fetch: it does nothing until Git's thresholds are crossed (`gc.auto`, `gc.autoPackLimit`),
//! then repacks and prunes unreachable objects older than `gc.pruneExpire` (and reflog entries older than
//! `gc.reflogExpire*`); an operator tunes or disables it (`gc.auto 0`) in the clone's config. It runs in
//! the git task (nothing else touches the repository meanwhile), in the foreground, killed after
//! [`GC_TIMEOUT`]. Without a `git` binary the refs are still deleted and unreachable objects stay until an
//! operator runs `git gc` in `<state_dir>/repo`.

use super::{redact, GitSource, SourceError, APPLIED_REFS};
use git2::Repository;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The longest one `git gc --auto` may run before it is killed (a repack of a large repository on a slow
/// box takes minutes; a kill leaves only temporary files Git removes at its next gc).
pub const GC_TIMEOUT: Duration = Duration::from_secs(300);

/// Where the output of the last `git gc` is kept, inside `.git`.
const GC_LOG: &str = "berth-gc.log";

/// Environment variables that would point `git` at another repository than the clone.
const GIT_REPO_ENV: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_CEILING_DIRECTORIES",
];

/// What one `git gc --auto` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gc {
    /// It ran and exited 0 (Git decided whether there was anything to do).
    Done,
    /// No `git` binary: unreachable objects stay until an operator runs `git gc`.
    NoGit,
}

/// A `git gc` that did not finish cleanly. Nothing is lost: the refs are already deleted, and the next
/// prune runs gc again.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error("cannot write the git gc log {}: {source}", path.display())]
    Log {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot run git gc: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("cannot wait for git gc: {0}")]
    Wait(#[source] std::io::Error),
    #[error(
        "git gc was still running after {}s and was stopped; run `git gc` by hand in {} (log: {})",
        after.as_secs(), repo.display(), log.display()
    )]
    Timeout {
        after: Duration,
        repo: PathBuf,
        log: PathBuf,
    },
    /// `tail` is the end of the log, redacted.
    #[error("git gc {status}: {tail} (log: {})", log.display())]
    Exit {
        status: ExitStatus,
        tail: String,
        log: PathBuf,
    },
}

/// What [`GitSource::prune_applied`] did.
#[derive(Debug)]
pub struct AppliedPrune {
    /// The seqs whose refs were deleted, ascending.
    pub deleted: Vec<u64>,
    pub gc: Result<Gc, GcError>,
}

impl GitSource {
    /// Keep `refs/berth/applied/<seq>` pointing at `id`, so the commit stays in the local repository (and
    /// rollback works offline) whatever happens to the remote.
    pub fn keep(&self, seq: u64, id: &str) -> Result<(), SourceError> {
        let oid = self.require_commit(id)?;
        self.repo
            .reference(
                &format!("{APPLIED_REFS}{seq}"),
                oid,
                true,
                &format!("berth: applied revision {seq}"),
            )
            .map_err(|e| self.local_err("cannot write the applied ref", &e))?;
        Ok(())
    }

    /// Whether a commit (full id or unambiguous prefix) is in the local repository.
    pub fn has_commit(&self, id: &str) -> bool {
        matches!(self.lookup_commit(id), Ok(Some(_)))
    }

    /// The seqs of the applied refs, ascending. A ref under the prefix whose name is not a number is not
    /// berth's and is left out.
    pub fn applied_seqs(&self) -> Result<Vec<u64>, SourceError> {
        let refs = self
            .repo
            .references_glob(&format!("{APPLIED_REFS}*"))
            .map_err(|e| self.local_err("cannot list the applied refs", &e))?;
        let mut seqs = Vec::new();
        for r in refs {
            let r = r.map_err(|e| self.local_err("cannot list the applied refs", &e))?;
            if let Some(seq) = r
                .name_bytes()
                .strip_prefix(APPLIED_REFS.as_bytes())
                .and_then(|s| std::str::from_utf8(s).ok())
                .and_then(|s| s.parse::<u64>().ok())
            {
                seqs.push(seq);
            }
        }
        seqs.sort_unstable();
        Ok(seqs)
    }

    /// History retention in the clone: delete `refs/berth/applied/<seq>` for every seq `needed` rejects
    /// (so refs left behind by a crash between the store's prune and this one go too), then let
    /// `git gc --auto` reclaim objects nothing references any more. A ref that cannot be deleted is an
    /// error; a gc that fails is reported in [`AppliedPrune::gc`].
    pub fn prune_applied(
        &mut self,
        needed: &dyn Fn(u64) -> bool,
    ) -> Result<AppliedPrune, SourceError> {
        let mut deleted = Vec::new();
        for seq in self.applied_seqs()? {
            if needed(seq) {
                continue;
            }
            let name = format!("{APPLIED_REFS}{seq}");
            match self.repo.find_reference(&name) {
                Ok(mut r) => r
                    .delete()
                    .map_err(|e| self.local_err("cannot delete an applied ref", &e))?,
                Err(e) if e.code() == git2::ErrorCode::NotFound => continue,
                Err(e) => return Err(self.local_err("cannot read an applied ref", &e)),
            }
            deleted.push(seq);
        }
        let gc = self.collect_garbage();
        Ok(AppliedPrune { deleted, gc })
    }

    /// Run `git gc --auto` in the clone, in the foreground, killed after [`GC_TIMEOUT`]; then reopen the
    /// repository so libgit2 lets go of pack files gc deleted (their space is freed only then).
    pub fn collect_garbage(&mut self) -> Result<Gc, GcError> {
        let log = self.repo.path().join(GC_LOG);
        let gc = run_gc(Path::new("git"), &self.repo_dir, &log, GC_TIMEOUT);
        if let Ok(Gc::NoGit) = gc {
            static ONCE: std::sync::Once = std::sync::Once::new();
            ONCE.call_once(|| {
                tracing::info!(repo = %self.repo_dir.display(), "no git binary: refs of pruned revisions are deleted, their objects stay until an operator runs `git gc` there")
            });
        } else {
            match Repository::open(&self.repo_dir) {
                Ok(repo) => self.repo = repo,
                Err(e) => {
                    tracing::warn!(error = %redact(e.message()), "cannot reopen the repository after git gc")
                }
            }
        }
        gc
    }
}

/// `<git> gc --auto --quiet` in `workdir`, output to `log`, killed after `timeout`. `gc.autoDetach` is
/// off: a gc that forks into the background would escape both the bound and the git task's exclusivity.
/// gc runs in a process group of its own, so a kill also stops the repack and pack-objects it started.
/// One packing thread with a bounded delta window: gc shares the unit's memory limit with the agent.
fn run_gc(git: &Path, workdir: &Path, log: &Path, timeout: Duration) -> Result<Gc, GcError> {
    let log_err = |source| GcError::Log {
        path: log.to_path_buf(),
        source,
    };
    let out = std::fs::File::create(log).map_err(log_err)?;
    let mut cmd = Command::new(git);
    cmd.arg("-C")
        .arg(workdir)
        .args([
            "-c",
            "gc.autoDetach=false",
            "-c",
            "maintenance.autoDetach=false",
            "-c",
            "pack.threads=1",
            "-c",
            "pack.windowMemory=32m",
            "gc",
            "--auto",
            "--quiet",
        ])
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(out.try_clone().map_err(log_err)?)
        .process_group(0);
    for var in GIT_REPO_ENV {
        cmd.env_remove(var);
    }
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Gc::NoGit),
        Err(e) => return Err(GcError::Spawn(e)),
    };
    let started = Instant::now();
    let mut pause = Duration::from_millis(2);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() < timeout => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            waited => {
                kill_group(&child);
                let _ = child.kill();
                let _ = child.wait();
                return Err(match waited {
                    Err(e) => GcError::Wait(e),
                    _ => GcError::Timeout {
                        after: timeout,
                        repo: workdir.to_path_buf(),
                        log: log.to_path_buf(),
                    },
                });
            }
        }
    };
    if status.success() {
        return Ok(Gc::Done);
    }
    Err(GcError::Exit {
        status,
        tail: redact(&log_tail(log)),
        log: log.to_path_buf(),
    })
}

/// SIGKILL the process group `child` leads (it was spawned with `process_group(0)`, and is not reaped
/// yet, so its id still names that group).
fn kill_group(child: &std::process::Child) {
    let pid = rustix::process::Pid::from_child(child);
    if pid != rustix::process::Pid::INIT {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
}

/// The end of the gc log (at most 1 KiB), on one line.
fn log_tail(log: &Path) -> String {
    let mut text = Vec::new();
    if let Ok(mut f) = std::fs::File::open(log) {
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        if f.seek(SeekFrom::Start(len.saturating_sub(1024))).is_ok() {
            let _ = f.take(1024).read_to_end(&mut text);
        }
    }
    String::from_utf8_lossy(&text)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    /// Run `run_gc` with a stand-in for `git` (a shell script).
    fn gc_with(script: &str, timeout: Duration) -> (Result<Gc, GcError>, String, Duration) {
        let dir = tempfile::tempdir().unwrap();
        let git = dir.path().join("git");
        std::fs::write(&git, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&git, std::fs::Permissions::from_mode(0o755)).unwrap();
        let log = dir.path().join("gc.log");
        let started = Instant::now();
        let mut r = run_gc(&git, dir.path(), &log, timeout);
        // A fork of another test thread may hold the script open for writing for a moment (ETXTBSY).
        for _ in 0..50 {
            match &r {
                Err(GcError::Spawn(e)) if e.raw_os_error() == Some(26) => {
                    std::thread::sleep(Duration::from_millis(20));
                    r = run_gc(&git, dir.path(), &log, timeout);
                }
                _ => break,
            }
        }
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        (r, text, started.elapsed())
    }

    #[test]
    fn gc_runs_in_the_foreground_with_bounded_packing() {
        let (r, log, _) = gc_with(r#"echo "$@" >&2"#, Duration::from_secs(20));
        assert_eq!(r.unwrap(), Gc::Done);
        for arg in [
            "-C ",
            "gc.autoDetach=false",
            "pack.threads=1",
            "gc --auto --quiet",
        ] {
            assert!(log.contains(arg), "{arg} in {log}");
        }
    }

    #[test]
    fn a_hung_gc_is_killed_at_the_bound() {
        let (r, _, took) = gc_with("exec sleep 30", Duration::from_millis(300));
        let e = r.unwrap_err();
        assert!(matches!(e, GcError::Timeout { .. }), "{e}");
        assert!(e.to_string().contains("git gc"), "{e}");
        assert!(took < Duration::from_secs(10), "{took:?}");
    }

    #[test]
    fn a_kill_at_the_bound_stops_what_gc_started() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let (r, _, _) = gc_with(
            &format!("sleep 30 & echo $! > {}; wait", pidfile.display()),
            Duration::from_millis(500),
        );
        assert!(matches!(r, Err(GcError::Timeout { .. })), "{r:?}");
        let pid = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .to_string();
        let gone = |pid: &str| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| s.split_whitespace().nth(2) == Some("Z"))
                .unwrap_or(true)
        };
        let started = Instant::now();
        while !gone(&pid) && started.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(gone(&pid), "the grandchild {pid} outlived the bound");
    }

    #[test]
    fn a_failed_gc_reports_the_end_of_its_log_redacted() {
        let (r, _, _) = gc_with(
            "echo 'fatal: https://u:s3cret@example.com/x broke' >&2; exit 3",
            Duration::from_secs(20),
        );
        let e = r.unwrap_err().to_string();
        assert!(e.contains("broke") && e.contains("gc.log"), "{e}");
        assert!(!e.contains("s3cret"), "{e}");
    }

    #[test]
    fn no_git_binary_is_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let r = run_gc(
            &dir.path().join("no-such-git"),
            dir.path(),
            &dir.path().join("gc.log"),
            Duration::from_secs(1),
        );
        assert_eq!(r.unwrap(), Gc::NoGit);
    }
}
