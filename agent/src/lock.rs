//! One owner per agent id: `berth agent` holds an exclusive `flock` on `<state_dir>/berth.lock` and on
//! `<socket dir>/<agent_id>.lock` for as long as it runs (the kernel releases it when the process dies,
//! even by SIGKILL), and `berth apply` takes the socket-directory lock of its id before it changes anything.
//! Each lock file names its holder (pid, command, agent id, socket), so a refusal can say who holds it.

use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The lock file of a state directory.
pub const STATE_LOCK: &str = "berth.lock";

/// Largest holder record read back from a lock file.
const MAX_HOLDER_BYTES: u64 = 4096;

/// Who holds a lock, as written into the lock file by the holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    /// `agent` or `apply`.
    pub command: String,
    pub agent_id: String,
    /// The holder's status socket (for `apply`: the socket whose directory it locked in).
    pub socket: PathBuf,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.command.as_str() {
            "agent" => write!(
                f,
                "berth agent (pid {}, agent id {}, socket {})",
                self.pid,
                self.agent_id,
                self.socket.display()
            ),
            other => write!(
                f,
                "berth {other} (pid {}, agent id {})",
                self.pid, self.agent_id
            ),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another live process holds the lock; `holder` is what it wrote into the file, when readable.
    #[error("{} is held by {}", path.display(), holder_text(holder))]
    Held {
        path: PathBuf,
        holder: Option<Holder>,
    },
    #[error("lock file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn holder_text(holder: &Option<Holder>) -> String {
    match holder {
        Some(h) => h.to_string(),
        None => "another process (it has not written its pid yet)".into(),
    }
}

impl LockError {
    pub fn holder(&self) -> Option<&Holder> {
        match self {
            LockError::Held { holder, .. } => holder.as_ref(),
            LockError::Io { .. } => None,
        }
    }
}

/// `<socket dir>/<agent_id>.lock`: the lock `berth agent` and `berth apply` both take for an agent id.
pub fn id_lock_path(socket: &Path, agent_id: &str) -> PathBuf {
    let dir = socket
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    dir.join(format!("{agent_id}.lock"))
}

/// Locks held until dropped; a clean drop removes the files (a crash leaves them, unlocked).
#[derive(Debug)]
pub struct Lock {
    held: Vec<Held>,
}

#[derive(Debug)]
struct Held {
    path: PathBuf,
    /// Holds the lock until dropped.
    _file: File,
    /// Opened read-only (no write permission): nothing written, nothing removed.
    read_only: bool,
}

impl Drop for Held {
    fn drop(&mut self) {
        // Unlinking while still holding the lock is safe: whoever opened the old file and locks it after
        // us sees that the path no longer names it and starts again (see `acquire`).
        if !self.read_only {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Lock {
    /// The agent's locks: its state directory and its id in the socket's directory (both created when
    /// missing). Fails with [`LockError::Held`] naming the holder when another process has either.
    pub fn agent(agent_id: &str, state_dir: &Path, socket: &Path) -> Result<Lock, LockError> {
        let holder = Holder {
            pid: std::process::id(),
            command: "agent".into(),
            agent_id: agent_id.into(),
            socket: socket.to_path_buf(),
        };
        let id_path = id_lock_path(socket, agent_id);
        let mut paths = vec![state_dir.join(STATE_LOCK)];
        if !same_file_path(&paths[0], &id_path) {
            paths.push(id_path);
        }
        let mut held = Vec::new();
        for path in paths {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|source| LockError::Io {
                    path: path.clone(),
                    source,
                })?;
            }
            held.extend(acquire(&path, &holder, true)?);
        }
        Ok(Lock { held })
    }

    /// `berth apply`'s lock on `agent_id` in the directory of `socket`. `Ok(None)` when that directory
    /// does not exist (no agent has run there since boot; apply does not create it), or when the lock
    /// file does not exist and may not be created by this user: no agent holds it then either.
    pub fn apply(agent_id: &str, socket: &Path) -> Result<Option<Lock>, LockError> {
        let path = id_lock_path(socket, agent_id);
        if !path.parent().is_some_and(Path::is_dir) {
            return Ok(None);
        }
        let holder = Holder {
            pid: std::process::id(),
            command: "apply".into(),
            agent_id: agent_id.into(),
            socket: socket.to_path_buf(),
        };
        Ok(acquire(&path, &holder, false)?.map(|h| Lock { held: vec![h] }))
    }

    /// The lock files held.
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.held.iter().map(|h| h.path.as_path())
    }
}

/// Two lock paths naming one file (an agent id `berth` with `state_dir` = the socket's directory).
fn same_file_path(a: &Path, b: &Path) -> bool {
    let canon = |p: &Path| {
        p.parent()
            .and_then(|d| d.canonicalize().ok())
            .zip(p.file_name())
            .map(|(d, n)| d.join(n))
    };
    a == b || matches!((canon(a), canon(b)), (Some(x), Some(y)) if x == y)
}

/// Open (creating) and `flock` `path` without waiting, then write `holder` into it. `must_write`: a file
/// that cannot be opened for writing is an error (the agent); otherwise it is locked read-only (apply
/// run by a user who may read but not write the directory still cannot race a running agent), and
/// `None` when it does not exist and cannot be created (nobody holds it).
fn acquire(path: &Path, holder: &Holder, must_write: bool) -> Result<Option<Held>, LockError> {
    let io = |source: std::io::Error| LockError::Io {
        path: path.to_path_buf(),
        source,
    };
    // A holder that removes the file on exit may do so between our open and our lock: then the file we
    // locked is no longer the one at `path`, and we start again.
    for _ in 0..10 {
        let (mut file, read_only) = match OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
        {
            Ok(f) => (f, false),
            Err(e) if !must_write && e.kind() == std::io::ErrorKind::PermissionDenied => {
                match File::open(path) {
                    Ok(f) => (f, true),
                    // Not there and we may not create it: nobody holds it.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(io(e)),
                }
            }
            Err(e) => return Err(io(e)),
        };
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(LockError::Held {
                    path: path.to_path_buf(),
                    holder: read_holder(&mut file),
                })
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        let ours = file.metadata().map_err(io)?;
        match std::fs::metadata(path) {
            Ok(now) if now.dev() == ours.dev() && now.ino() == ours.ino() => {}
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io(e)),
        }
        if !read_only {
            let text = serde_json::to_string(holder).map_err(|e| io(e.into()))?;
            file.set_len(0).map_err(io)?;
            file.write_all(format!("{text}\n").as_bytes()).map_err(io)?;
        }
        return Ok(Some(Held {
            path: path.to_path_buf(),
            _file: file,
            read_only,
        }));
    }
    Err(io(std::io::Error::other(
        "the lock file kept being replaced while it was being locked",
    )))
}

/// What the holder wrote into its lock file; `None` when it is empty (not written yet) or unreadable.
fn read_holder(file: &mut File) -> Option<Holder> {
    let mut text = String::new();
    file.take(MAX_HOLDER_BYTES).read_to_string(&mut text).ok()?;
    serde_json::from_str(text.trim()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dirs() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let state = t.path().join("state");
        let socket = t.path().join("run").join("berth.sock");
        (t, state, socket)
    }

    #[test]
    fn a_second_agent_is_refused_and_named_until_the_first_lets_go() {
        let (_t, state, socket) = dirs();
        let first = Lock::agent("edge-01", &state, &socket).unwrap();
        let paths: Vec<PathBuf> = first.paths().map(Path::to_path_buf).collect();
        assert_eq!(
            paths,
            vec![
                state.join("berth.lock"),
                socket.parent().unwrap().join("edge-01.lock")
            ]
        );
        // The same state_dir under another id and socket.
        let other_socket = socket.with_file_name("other.sock");
        let e = Lock::agent("edge-02", &state, &other_socket).unwrap_err();
        let h = e.holder().expect("holder named");
        assert_eq!(h.pid, std::process::id());
        assert_eq!(h.command, "agent");
        assert_eq!(h.socket, socket);
        assert!(e
            .to_string()
            .contains(&format!("pid {}", std::process::id())));
        // The same id in the same socket directory, another state_dir.
        let e = Lock::agent("edge-01", &state.with_file_name("state2"), &socket).unwrap_err();
        assert!(matches!(e, LockError::Held { ref path, .. } if path.ends_with("edge-01.lock")));
        // `berth apply` of that id.
        let e = Lock::apply("edge-01", &socket).unwrap_err();
        assert_eq!(e.holder().map(|h| h.agent_id.as_str()), Some("edge-01"));
        // Another id is free.
        assert!(Lock::apply("edge-02", &socket).unwrap().is_some());

        drop(first);
        assert!(
            !state.join("berth.lock").exists(),
            "a clean exit removes it"
        );
        let again = Lock::agent("edge-01", &state, &socket).unwrap();
        drop(again);
    }

    #[test]
    fn apply_holds_the_id_against_an_agent() {
        let (_t, state, socket) = dirs();
        std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
        let apply = Lock::apply("edge-01", &socket).unwrap().expect("locked");
        let e = Lock::agent("edge-01", &state, &socket).unwrap_err();
        assert!(e.to_string().contains("berth apply (pid"), "{e}");
        // The agent's failed attempt released its state_dir lock again.
        drop(apply);
        Lock::agent("edge-01", &state, &socket).unwrap();
    }

    #[test]
    fn apply_without_the_socket_directory_checks_nothing() {
        let (_t, _state, socket) = dirs();
        assert!(Lock::apply("edge-01", &socket).unwrap().is_none());
        assert!(!socket.parent().unwrap().exists(), "apply creates nothing");
    }

    #[test]
    fn one_file_for_state_dir_and_id_is_locked_once() {
        let t = tempfile::tempdir().unwrap();
        let socket = t.path().join("s.sock");
        let lock = Lock::agent("berth", t.path(), &socket).unwrap();
        assert_eq!(lock.paths().count(), 1);
    }

    #[test]
    fn a_stale_lock_file_of_a_dead_holder_is_taken_over() {
        let (_t, state, socket) = dirs();
        std::fs::create_dir_all(&state).unwrap();
        std::fs::write(
            state.join("berth.lock"),
            r#"{"pid":1,"command":"agent","agent_id":"x","socket":"/x"}"#,
        )
        .unwrap();
        let lock = Lock::agent("edge-01", &state, &socket).unwrap();
        let text = std::fs::read_to_string(state.join("berth.lock")).unwrap();
        let h: Holder = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(h.pid, std::process::id());
        drop(lock);
    }

    #[test]
    fn an_empty_or_garbage_lock_file_names_no_holder() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("x.lock");
        std::fs::write(&p, "not json").unwrap();
        let mut f = File::open(&p).unwrap();
        assert_eq!(read_holder(&mut f), None);
        let e = LockError::Held {
            path: p,
            holder: None,
        };
        assert!(e.to_string().contains("another process"), "{e}");
    }
}
