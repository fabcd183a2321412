//! The agent's side of the status socket. [`route`] is the whole router, callable without a socket.

use super::{ContainerStatus, CycleResult, ErrorBody, HistoryEntry, Status};
use crate::runtime::{DockerRuntime, Runtime};
use crate::store::Store;
use hyper::{Method, StatusCode};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};

/// Requests the reconcile loop serves; the reply comes after the cycle that ran for it.
#[derive(Debug)]
pub enum Command {
    Reconcile {
        reply: Option<oneshot::Sender<CycleResult>>,
    },
    Rollback {
        seq: Option<u64>,
        reply: oneshot::Sender<Result<CycleResult, String>>,
    },
    Resume {
        reply: oneshot::Sender<CycleResult>,
    },
    /// An owned container died or was removed behind berth's back: converge without fetching.
    Drift,
}

/// What the server shares with the reconcile loop.
pub struct Shared {
    /// Everything but `containers`, which are listed fresh for each request.
    pub status: Mutex<Status>,
    pub store: Store,
    pub runtime: DockerRuntime,
    pub commands: mpsc::Sender<Command>,
}

type Body = http_body_util::Full<hyper::body::Bytes>;

fn json<T: serde::Serialize>(code: StatusCode, value: &T) -> (StatusCode, Vec<u8>) {
    let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
    body.push(b'\n');
    (code, body)
}

fn error(code: StatusCode, message: impl Into<String>) -> (StatusCode, Vec<u8>) {
    json(
        code,
        &ErrorBody {
            error: message.into(),
        },
    )
}

fn query_param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// The router: method + path (with query) → status code and JSON body.
pub async fn route(
    shared: &Shared,
    method: &Method,
    path_and_query: &str,
) -> (StatusCode, Vec<u8>) {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    match (method, path) {
        (&Method::GET, "/v1/status") => {
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
        (&Method::GET, "/v1/history") => {
            let limit = query_param(query, "limit")
                .and_then(|l| l.parse().ok())
                .unwrap_or(100);
            match shared.store.list(limit) {
                Ok(revs) => json(
                    StatusCode::OK,
                    &revs.iter().map(HistoryEntry::from).collect::<Vec<_>>(),
                ),
                Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            }
        }
        (&Method::POST, "/v1/reconcile") => {
            let wait = matches!(query_param(query, "wait"), Some("1" | "true" | ""));
            if !wait {
                return match shared.commands.try_send(Command::Reconcile { reply: None }) {
                    Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => json(
                        StatusCode::ACCEPTED,
                        &serde_json::json!({"triggered": true}),
                    ),
                    Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
                };
            }
            let (tx, rx) = oneshot::channel();
            send_and_wait(shared, Command::Reconcile { reply: Some(tx) }, rx, Ok).await
        }
        (&Method::POST, "/v1/rollback") => {
            let seq = match query_param(query, "seq") {
                None | Some("") => None,
                Some(s) => match s.parse() {
                    Ok(n) => Some(n),
                    Err(_) => {
                        return error(
                            StatusCode::BAD_REQUEST,
                            format!("seq {s:?} is not a number"),
                        )
                    }
                },
            };
            let (tx, rx) = oneshot::channel();
            send_and_wait(shared, Command::Rollback { seq, reply: tx }, rx, |r| r).await
        }
        (&Method::POST, "/v1/resume") => {
            let (tx, rx) = oneshot::channel();
            send_and_wait(shared, Command::Resume { reply: tx }, rx, Ok).await
        }
        (_, "/v1/status" | "/v1/history" | "/v1/reconcile" | "/v1/rollback" | "/v1/resume") => {
            error(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{method} not allowed on {path}"),
            )
        }
        _ => error(StatusCode::NOT_FOUND, format!("no such endpoint {path}")),
    }
}

async fn send_and_wait<T>(
    shared: &Shared,
    cmd: Command,
    rx: oneshot::Receiver<T>,
    into: impl FnOnce(T) -> Result<CycleResult, String>,
) -> (StatusCode, Vec<u8>) {
    if shared.commands.send(cmd).await.is_err() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the reconcile loop has stopped",
        );
    }
    match rx.await {
        Ok(v) => match into(v) {
            Ok(result) => json(StatusCode::OK, &result),
            Err(e) => error(StatusCode::CONFLICT, e),
        },
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the reconcile loop stopped before answering",
        ),
    }
}

/// Bind the socket (mode 0660, parent directory created, a stale socket replaced) and serve forever.
pub async fn serve(socket: &Path, shared: Arc<Shared>) -> std::io::Result<()> {
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::remove_file(socket) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = tokio::net::UnixListener::bind(socket)?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o660))?;
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "status socket accept failed");
                continue;
            }
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let shared = shared.clone();
                    async move {
                        let pq = req
                            .uri()
                            .path_and_query()
                            .map(|p| p.as_str().to_string())
                            .unwrap_or_default();
                        let (code, body) = route(&shared, req.method(), &pq).await;
                        let resp = hyper::Response::builder()
                            .status(code)
                            .header("content-type", "application/json")
                            .body(Body::from(body))
                            .expect("static response parts");
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
            let io = hyper_util::rt::TokioIo::new(stream);
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await
            {
                tracing::debug!(error = %e, "status socket connection");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Outcome, Revision};
    use std::os::unix::fs::PermissionsExt;

    async fn shared(dir: &Path) -> (Arc<Shared>, mpsc::Receiver<Command>) {
        let store = Store::open(&dir.join("store")).unwrap();
        store
            .put(
                &Revision {
                    seq: 1,
                    commit: "a".repeat(40),
                    author: "t <t@t>".into(),
                    summary: "first".into(),
                    commit_time: 1,
                    applied_at: 2,
                    outcome: Outcome::Applied,
                    error: None,
                    duration_ms: 3,
                    rollback: false,
                    desired: None,
                    images: Default::default(),
                },
                true,
                true,
            )
            .unwrap();
        let (tx, rx) = mpsc::channel(4);
        let status = Status {
            agent_id: format!("unit-api-{}", std::process::id()),
            ..Default::default()
        };
        let runtime = DockerRuntime::connect(None).await.unwrap();
        (
            Arc::new(Shared {
                status: Mutex::new(status),
                store,
                runtime,
                commands: tx,
            }),
            rx,
        )
    }

    #[tokio::test]
    async fn router_answers_status_history_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let (shared, rx) = shared(dir.path()).await;
        let (code, body) = route(&shared, &Method::GET, "/v1/status").await;
        assert_eq!(code, StatusCode::OK);
        let s: Status = serde_json::from_slice(&body).unwrap();
        assert!(s.agent_id.starts_with("unit-api-"));
        let (code, body) = route(&shared, &Method::GET, "/v1/history?limit=5").await;
        assert_eq!(code, StatusCode::OK);
        let h: Vec<HistoryEntry> = serde_json::from_slice(&body).unwrap();
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].commit, "a".repeat(40));
        assert_eq!(
            route(&shared, &Method::DELETE, "/v1/status").await.0,
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            route(&shared, &Method::GET, "/nope").await.0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            route(&shared, &Method::POST, "/v1/rollback?seq=x").await.0,
            StatusCode::BAD_REQUEST
        );
        // With the loop gone, a waiting request says so instead of hanging.
        drop(rx);
        assert_eq!(
            route(&shared, &Method::POST, "/v1/reconcile?wait=1")
                .await
                .0,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[tokio::test]
    async fn socket_is_0660_and_speaks_to_the_cli_client() {
        let dir = tempfile::Builder::new()
            .prefix("b")
            .tempdir_in("/tmp")
            .unwrap();
        let (shared, _rx) = shared(dir.path()).await;
        let socket = dir.path().join("run/berth.sock");
        let server = tokio::spawn({
            let socket = socket.clone();
            async move { serve(&socket, shared).await }
        });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !socket.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "socket never appeared"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
        let s = socket.clone();
        let body = tokio::task::spawn_blocking(move || {
            crate::api::client::call(
                &s,
                "GET",
                "/v1/history",
                Some(std::time::Duration::from_secs(10)),
            )
        })
        .await
        .unwrap()
        .unwrap();
        let h: Vec<HistoryEntry> = serde_json::from_slice(&body).unwrap();
        assert_eq!(h[0].summary, "first");
        let s = socket.clone();
        let err = tokio::task::spawn_blocking(move || {
            crate::api::client::call(
                &s,
                "GET",
                "/v1/nothing",
                Some(std::time::Duration::from_secs(10)),
            )
        })
        .await
        .unwrap()
        .unwrap_err();
        assert!(err.to_string().contains("no such endpoint"), "{err}");
        server.abort();
    }
}
