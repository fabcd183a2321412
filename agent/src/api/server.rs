//! The agent's side of the status socket: the axum [`router`] (callable without a socket), the commands it
//! sends the reconcile loop, and [`serve`], which binds the socket (0660 with its group from the moment it
//! appears, see [`bind`]) and serves it.

use super::{ContainerStatus, CycleResult, DiffAnswer, ErrorBody, HistoryEntry, Status};
use crate::runtime::{DockerRuntime, Runtime};
use crate::store::Store;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::{header, request::Parts, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Deserializer};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};

/// Requests the reconcile loop serves; the reply comes after the cycle that ran for it.
#[derive(Debug)]
pub enum Command {
    /// Fetch and follow Git; `retry`: lift the quarantine of the fetched commit first.
    Reconcile {
        reply: Option<oneshot::Sender<CycleResult>>,
        retry: bool,
    },
    Rollback {
        seq: Option<u64>,
        reply: oneshot::Sender<Result<CycleResult, crate::error::CycleError>>,
    },
    /// Lift a rollback pin and a suspend, then follow Git again.
    Resume { reply: oneshot::Sender<CycleResult> },
    /// Stop all reconciling, drift repair included, until `Resume`.
    Suspend {
        reply: oneshot::Sender<Result<(), crate::error::CycleError>>,
    },
    /// An owned container died or was removed behind berth's back: converge without fetching.
    Drift,
    /// Plan the fetched commit (`fetch`: ask the remote first) and answer what converging it would
    /// change, changing nothing.
    Diff {
        fetch: bool,
        reply: oneshot::Sender<Result<DiffAnswer, crate::diff::DiffError>>,
    },
}

/// What the server shares with the reconcile loop.
pub struct Shared {
    /// Everything but `containers`, which are listed fresh for each request.
    pub status: Mutex<Status>,
    pub store: Store,
    pub runtime: DockerRuntime,
    pub commands: mpsc::Sender<Command>,
    /// Woken (`notify_waiters`) when an operator's command is queued, so a rollout waiting on its health
    /// gate can give way to it.
    pub wake: tokio::sync::Notify,
}

/// Histories longer than this are asked for with `?limit=`.
const DEFAULT_HISTORY_LIMIT: usize = 100;

/// The whole HTTP API over `shared`.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/history", get(history))
        .route("/v1/reconcile", post(reconcile))
        .route("/v1/rollback", post(rollback))
        .route("/v1/resume", post(resume))
        .route("/v1/suspend", post(suspend))
        .route("/v1/diff", get(diff))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(shared)
}

/// A pretty-printed JSON answer (what `--json` prints as it comes).
fn json<T: serde::Serialize>(code: StatusCode, value: &T) -> Response {
    match serde_json::to_vec_pretty(value) {
        Ok(mut body) => {
            body.push(b'\n');
            (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding the answer: {e}"),
        ),
    }
}

fn error(code: StatusCode, message: impl Into<String>) -> Response {
    let body = ErrorBody {
        error: message.into(),
    };
    let mut text = serde_json::to_vec_pretty(&body).unwrap_or_default();
    text.push(b'\n');
    (code, [(header::CONTENT_TYPE, "application/json")], text).into_response()
}

/// The query string deserialized by serde (percent-decoded); a bad one answers 400 with [`ErrorBody`].
struct Params<T>(T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Query::try_from_uri(&parts.uri)
            .map(|Query(v)| Params(v))
            .map_err(|e| error(StatusCode::BAD_REQUEST, e.body_text()))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    limit: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReconcileQuery {
    /// `?wait`, `?wait=1`, `?wait=true`: answer after the cycle.
    #[serde(default, deserialize_with = "flag")]
    wait: bool,
    /// `?retry=1`: apply the fetched commit even if it is quarantined.
    #[serde(default, deserialize_with = "flag")]
    retry: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RollbackQuery {
    seq: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DiffQuery {
    /// `?fetch=0`: plan the commit fetched last without asking the remote.
    #[serde(default = "yes", deserialize_with = "flag")]
    fetch: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoQuery {}

/// A query flag: present empty, `1` or `true` is set; `0` or `false` is not; anything else is refused.
fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    let value = std::borrow::Cow::<str>::deserialize(d)?;
    match value.as_ref() {
        "" | "1" | "true" => Ok(true),
        "0" | "false" => Ok(false),
        other => Err(serde::de::Error::invalid_value(
            serde::de::Unexpected::Str(other),
            &"1, true, 0 or false",
        )),
    }
}

async fn status(
    State(shared): State<Arc<Shared>>,
    Params(NoQuery {}): Params<NoQuery>,
) -> Response {
    // The lock is only ever held to copy or update the record, never across an await.
    let mut status = shared
        .status
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    match shared.runtime.observe(&status.agent_id).await {
        Ok(actual) => {
            status.containers = actual
                .containers
                .into_iter()
                .map(|c| ContainerStatus {
                    name: c.name,
                    id: c.id,
                    stack: c.stack,
                    service: c.service,
                    replica: c.replica,
                    state: c.state,
                })
                .collect()
        }
        Err(e) => {
            let msg = format!("listing containers: {e}");
            status.last_error = Some(match status.last_error {
                Some(prev) => format!("{prev}; {msg}"),
                None => msg,
            });
        }
    }
    json(StatusCode::OK, &status)
}

async fn history(State(shared): State<Arc<Shared>>, Params(q): Params<HistoryQuery>) -> Response {
    let limit = q.limit.unwrap_or(DEFAULT_HISTORY_LIMIT);
    let store = shared.store.clone();
    // sled reads block: off the agent's (single) async thread.
    match tokio::task::spawn_blocking(move || store.list(limit)).await {
        Ok(Ok(revs)) => json(
            StatusCode::OK,
            &revs.iter().map(HistoryEntry::from).collect::<Vec<_>>(),
        ),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("reading the history: {e}"),
        ),
    }
}

async fn reconcile(
    State(shared): State<Arc<Shared>>,
    Params(q): Params<ReconcileQuery>,
) -> Response {
    if !q.wait {
        let cmd = Command::Reconcile {
            reply: None,
            retry: q.retry,
        };
        let sent = shared.commands.try_send(cmd);
        shared.wake.notify_waiters();
        return match sent {
            // A full queue already holds a cycle that will see the newest state.
            Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => json(
                StatusCode::ACCEPTED,
                &serde_json::json!({"triggered": true}),
            ),
            Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        };
    }
    let (tx, rx) = oneshot::channel();
    let cmd = Command::Reconcile {
        reply: Some(tx),
        retry: q.retry,
    };
    send_and_wait(&shared, cmd, rx, Ok::<_, String>).await
}

async fn rollback(State(shared): State<Arc<Shared>>, Params(q): Params<RollbackQuery>) -> Response {
    let (tx, rx) = oneshot::channel();
    let cmd = Command::Rollback {
        seq: q.seq,
        reply: tx,
    };
    send_and_wait(&shared, cmd, rx, |r| r).await
}

async fn resume(
    State(shared): State<Arc<Shared>>,
    Params(NoQuery {}): Params<NoQuery>,
) -> Response {
    let (tx, rx) = oneshot::channel();
    send_and_wait(&shared, Command::Resume { reply: tx }, rx, Ok::<_, String>).await
}

async fn suspend(
    State(shared): State<Arc<Shared>>,
    Params(NoQuery {}): Params<NoQuery>,
) -> Response {
    let (tx, rx) = oneshot::channel();
    let done = |r: Result<(), crate::error::CycleError>| {
        r.map(|()| serde_json::json!({"suspended": true}))
    };
    send_and_wait(&shared, Command::Suspend { reply: tx }, rx, done).await
}

async fn diff(State(shared): State<Arc<Shared>>, Params(q): Params<DiffQuery>) -> Response {
    use crate::diff::DiffError;
    let (reply, rx) = oneshot::channel();
    let cmd = Command::Diff {
        fetch: q.fetch,
        reply,
    };
    if shared.commands.send(cmd).await.is_err() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the reconcile loop has stopped",
        );
    }
    match rx.await {
        Ok(Ok(answer)) => json(StatusCode::OK, &answer),
        Ok(Err(e)) => {
            let code = match &e {
                DiffError::Render { .. } => StatusCode::UNPROCESSABLE_ENTITY,
                DiffError::NothingFetched => StatusCode::CONFLICT,
                DiffError::Fetch(_) | DiffError::Engine(_) => StatusCode::BAD_GATEWAY,
                DiffError::Read { .. } | DiffError::Agent(_) => StatusCode::INTERNAL_SERVER_ERROR,
                DiffError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            };
            error(code, e.to_string())
        }
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the reconcile loop stopped before answering",
        ),
    }
}

async fn not_found(uri: Uri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!("no such endpoint {}", uri.path()),
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} not allowed on {}", uri.path()),
    )
}

async fn send_and_wait<T, A: serde::Serialize, E: std::fmt::Display>(
    shared: &Shared,
    cmd: Command,
    rx: oneshot::Receiver<T>,
    into: impl FnOnce(T) -> Result<A, E>,
) -> Response {
    if shared.commands.send(cmd).await.is_err() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the reconcile loop has stopped",
        );
    }
    shared.wake.notify_waiters();
    match rx.await {
        Ok(v) => match into(v) {
            Ok(result) => json(StatusCode::OK, &result),
            Err(e) => error(StatusCode::CONFLICT, e.to_string()),
        },
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the reconcile loop stopped before answering",
        ),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("status socket {}: {what}: {source}", path.display())]
    Bind {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("status socket {} is not a file path", path.display())]
    NotAFile { path: PathBuf },
    #[error("status socket: the binding task failed: {source}")]
    Task { source: tokio::task::JoinError },
    #[error("status socket {}: serving: {source}", path.display())]
    Serve {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The status socket's mode: owner and group read and write (connect), nobody else.
pub const SOCKET_MODE: u32 = 0o660;

/// Bind `socket` so that it is never looser than 0660 and appears at its path already 0660 with its
/// group (`group`: a gid; `None` keeps the group the process creates files with).
///
/// How, without touching the process-wide umask (other threads create files meanwhile): the socket's
/// own mode is set to 0660 (`fchmod`) before `bind`, so the kernel creates the file with 0660 minus the
/// umask, never more; it is made inside a private (0700) directory next to its path, set to exactly 0660
/// and given its group there, then renamed into place (replacing a stale socket), atomically.
/// The parent directory is created when missing.
pub fn bind(
    socket: &Path,
    group: Option<u32>,
) -> Result<std::os::unix::net::UnixListener, SocketError> {
    let io = |what: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| SocketError::Bind { what, path, source }
    };
    let name = socket.file_name().ok_or_else(|| SocketError::NotAFile {
        path: socket.to_path_buf(),
    })?;
    let dir = match socket.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(io("creating its directory", dir))?;
    let mut private_name = std::ffi::OsString::from(".");
    private_name.push(name);
    private_name.push(".new");
    let private = dir.join(private_name);
    // Left over by a crash between bind and rename.
    match std::fs::remove_dir_all(&private) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(io("removing a leftover directory", &private)(e))
        }
        _ => {}
    }
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&private)
        .map_err(io("creating a private directory", &private))?;
    // Whatever the umask took away: the owner must be able to bind inside.
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700))
        .map_err(io("setting mode 0700", &private))?;
    let staged = private.join("s");
    let bound = (|| {
        let listener = bind_with_mode(&staged).map_err(io("binding", &staged))?;
        // The umask may have taken group bits away; chmod on the path (not the socket's fd).
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(SOCKET_MODE))
            .map_err(io("setting mode 0660", &staged))?;
        if let Some(gid) = group {
            rustix::fs::chown(&staged, None, Some(rustix::fs::Gid::from_raw(gid)))
                .map_err(|e| io("setting its group (socket_group)", &staged)(e.into()))?;
        }
        std::fs::rename(&staged, socket).map_err(io("moving into place", socket))?;
        Ok(listener)
    })();
    if let Err(e) = std::fs::remove_dir_all(&private) {
        tracing::warn!(path = %private.display(), error = %e, "cannot remove the socket's staging directory");
    }
    bound
}

/// A listening Unix socket at `path` whose file the kernel creates with mode 0660 minus the umask: the
/// socket's inode mode is set before `bind`, which creates the file with it.
fn bind_with_mode(path: &Path) -> std::io::Result<std::os::unix::net::UnixListener> {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )?;
    rustix::fs::fchmod(&fd, rustix::fs::Mode::from_raw_mode(SOCKET_MODE))?;
    rustix::net::bind(&fd, &SocketAddrUnix::new(path)?)?;
    // The backlog std's UnixListener::bind uses.
    rustix::net::listen(&fd, 128)?;
    Ok(std::os::unix::net::UnixListener::from(
        std::os::fd::OwnedFd::from(fd),
    ))
}

/// The gid the socket gets: `socket_group` when set (a group name, or a number), else `berth` when that
/// group exists, else `None` (the group the agent creates files with: root's, for the root service).
pub fn socket_gid(configured: Option<&str>) -> Result<Option<u32>, SocketGroupError> {
    let lookup = |name: &str| {
        nix::unistd::Group::from_name(name).map_err(|e| SocketGroupError::Lookup {
            name: name.to_string(),
            source: std::io::Error::from(e),
        })
    };
    match configured {
        Some(name) => {
            if let Ok(gid) = name.parse::<u32>() {
                return Ok(Some(gid));
            }
            match lookup(name)? {
                Some(g) => Ok(Some(g.gid.as_raw())),
                None => Err(SocketGroupError::NoSuchGroup {
                    name: name.to_string(),
                }),
            }
        }
        None => Ok(lookup(DEFAULT_SOCKET_GROUP)?.map(|g| g.gid.as_raw())),
    }
}

/// The group that may use the status socket when `socket_group` is not set (and that group exists).
pub const DEFAULT_SOCKET_GROUP: &str = "berth";

#[derive(Debug, thiserror::Error)]
pub enum SocketGroupError {
    #[error("socket_group: there is no group {name:?} on this system")]
    NoSuchGroup { name: String },
    #[error("socket_group: cannot look up group {name:?}: {source}")]
    Lookup {
        name: String,
        source: std::io::Error,
    },
}

/// Bind the socket (see [`bind`]) and serve the [`router`] forever.
pub async fn serve(
    socket: &Path,
    group: Option<u32>,
    shared: Arc<Shared>,
) -> Result<(), SocketError> {
    let path = socket.to_path_buf();
    let listener = tokio::task::spawn_blocking(move || bind(&path, group))
        .await
        .map_err(|source| SocketError::Task { source })??;
    let bind_err = |what: &'static str| {
        let path = socket.to_path_buf();
        move |source| SocketError::Bind { what, path, source }
    };
    listener
        .set_nonblocking(true)
        .map_err(bind_err("making it non-blocking"))?;
    let listener =
        tokio::net::UnixListener::from_std(listener).map_err(bind_err("registering it"))?;
    axum::serve(listener, router(shared))
        .await
        .map_err(|source| SocketError::Serve {
            path: socket.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests;
