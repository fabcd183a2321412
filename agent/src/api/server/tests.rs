use super::*;
use crate::api::client;
use crate::store::{Outcome, Revision};
use axum::body::Body;
use axum::http::Request;
use std::time::Duration;
use tower::ServiceExt;

fn revision(seq: u64, summary: &str) -> Revision {
    Revision {
        commit: format!("{seq}").repeat(40),
        summary: summary.into(),
        ..Revision::for_test(seq)
    }
}

/// A store with revisions 1 ("first") and 2 ("second"), the real engine, and the loop's command queue.
async fn shared(dir: &Path, queue: usize) -> (Arc<Shared>, mpsc::Receiver<Command>) {
    let store = Store::open(&dir.join("store")).unwrap();
    store.put(&revision(1, "first"), true, true).unwrap();
    store.put(&revision(2, "second"), true, true).unwrap();
    let (tx, rx) = mpsc::channel(queue);
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
            wake: tokio::sync::Notify::new(),
        }),
        rx,
    )
}

async fn send(app: &Router, method: Method, uri: &str) -> (StatusCode, Vec<u8>) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let code = resp.status();
    assert_eq!(
        resp.headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        Some("application/json"),
        "{uri}"
    );
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (code, body.to_vec())
}

/// The status code and the `ErrorBody` message of an error answer.
async fn send_err(app: &Router, method: Method, uri: &str) -> (StatusCode, String) {
    let (code, body) = send(app, method, uri).await;
    let e: ErrorBody = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("{uri}: not an ErrorBody ({e}): {body:?}"));
    (code, e.error)
}

async fn history(app: &Router, uri: &str) -> Vec<HistoryEntry> {
    let (code, body) = send(app, Method::GET, uri).await;
    assert_eq!(
        code,
        StatusCode::OK,
        "{uri}: {}",
        String::from_utf8_lossy(&body)
    );
    serde_json::from_slice(&body).unwrap()
}

#[tokio::test]
async fn router_answers_status_history_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (shared, rx) = shared(dir.path(), 4).await;
    let app = router(shared);
    let (code, body) = send(&app, Method::GET, "/v1/status").await;
    assert_eq!(code, StatusCode::OK);
    assert!(body.ends_with(b"}\n"), "pretty JSON with a newline");
    let s: Status = serde_json::from_slice(&body).unwrap();
    assert!(s.agent_id.starts_with("unit-api-"));

    let h = history(&app, "/v1/history?limit=5").await;
    assert_eq!(
        h.iter().map(|e| e.summary.as_str()).collect::<Vec<_>>(),
        ["second", "first"],
        "newest first"
    );
    assert_eq!(h[1].commit, "1".repeat(40));
    assert_eq!(history(&app, "/v1/history").await.len(), 2);

    assert_eq!(
        send_err(&app, Method::DELETE, "/v1/status").await,
        (
            StatusCode::METHOD_NOT_ALLOWED,
            "DELETE not allowed on /v1/status".to_string()
        )
    );
    assert_eq!(
        send_err(&app, Method::GET, "/v1/reconcile").await.0,
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(
        send_err(&app, Method::GET, "/nope").await,
        (StatusCode::NOT_FOUND, "no such endpoint /nope".to_string())
    );
    let (code, msg) = send_err(&app, Method::POST, "/v1/rollback?seq=x").await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(msg.contains("seq"), "{msg}");

    // Without waiting, a reconcile is queued and answered at once.
    let (code, _) = send(&app, Method::POST, "/v1/reconcile").await;
    assert_eq!(code, StatusCode::ACCEPTED);

    // With the loop gone, a waiting request says so instead of hanging.
    drop(rx);
    let (code, msg) = send_err(&app, Method::POST, "/v1/reconcile?wait=1").await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{msg}");
}

#[tokio::test]
async fn queries_are_percent_decoded_and_bad_ones_answer_400() {
    let dir = tempfile::tempdir().unwrap();
    let (shared, _rx) = shared(dir.path(), 4).await;
    let app = router(shared);
    // %31 is "1", %32 is "2".
    let h = history(&app, "/v1/history?limit=%31").await;
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].summary, "second");
    assert_eq!(history(&app, "/v1/history?limit=%32").await.len(), 2);
    for uri in [
        "/v1/history?limit=x",
        "/v1/history?limit=-1",
        "/v1/history?limit=%ZZ",
        "/v1/history?limt=1",
        "/v1/status?verbose=1",
    ] {
        let (code, msg) = send_err(&app, Method::GET, uri).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{uri}: {msg}");
        assert!(msg.contains("query"), "{uri}: {msg}");
    }
    for uri in [
        "/v1/reconcile?wait=maybe",
        "/v1/rollback?seq=1.5",
        "/v1/rollback?seq=",
        "/v1/resume?now=1",
    ] {
        let (code, msg) = send_err(&app, Method::POST, uri).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{uri}: {msg}");
    }
}

#[tokio::test]
async fn commands_reach_the_loop_and_its_answer_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let (shared, mut rx) = shared(dir.path(), 4).await;
    let app = router(shared);
    let done = CycleResult {
        outcome: Outcome::Applied,
        error: None,
        error_class: None,
        applied_commit: Some("c".repeat(40)),
        applied_seq: Some(2),
    };
    // A stand-in for the reconcile loop: rollback to 2 works, any other refuses, resume and reconcile work.
    let loop_ = tokio::spawn({
        let done = done.clone();
        async move {
            let mut seen = Vec::new();
            while let Some(cmd) = rx.recv().await {
                match cmd {
                    Command::Rollback { seq, reply } => {
                        seen.push(format!("rollback {seq:?}"));
                        let _ = reply.send(match seq {
                            Some(2) => Ok(done.clone()),
                            _ => Err(crate::error::RollbackError::NoEarlierGood.into()),
                        });
                    }
                    Command::Resume { reply } => {
                        seen.push("resume".into());
                        let _ = reply.send(done.clone());
                    }
                    Command::Reconcile { reply, retry } => {
                        seen.push(format!(
                            "reconcile waiting={} retry={retry}",
                            reply.is_some()
                        ));
                        if let Some(r) = reply {
                            let _ = r.send(done.clone());
                        }
                    }
                    Command::Drift => seen.push("drift".into()),
                    Command::Suspend { reply } => {
                        seen.push("suspend".into());
                        let _ = reply.send(Ok(()));
                    }
                    Command::Diff { .. } => seen.push("diff".into()),
                }
            }
            seen
        }
    });
    let (code, body) = send(&app, Method::POST, "/v1/rollback?seq=%32").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(serde_json::from_slice::<CycleResult>(&body).unwrap(), done);
    assert_eq!(
        send_err(&app, Method::POST, "/v1/rollback").await,
        (
            StatusCode::CONFLICT,
            "no earlier good revision in history to roll back to".to_string()
        )
    );
    let (code, _) = send(&app, Method::POST, "/v1/resume").await;
    assert_eq!(code, StatusCode::OK);
    for uri in ["/v1/reconcile?wait", "/v1/reconcile?wait=true"] {
        let (code, body) = send(&app, Method::POST, uri).await;
        assert_eq!(code, StatusCode::OK, "{uri}");
        assert_eq!(serde_json::from_slice::<CycleResult>(&body).unwrap(), done);
    }
    let (code, _) = send(&app, Method::POST, "/v1/reconcile?wait=0").await;
    assert_eq!(code, StatusCode::ACCEPTED);
    let (code, _) = send(&app, Method::POST, "/v1/reconcile?wait=1&retry=1").await;
    assert_eq!(code, StatusCode::OK);
    let (code, body) = send(&app, Method::POST, "/v1/suspend").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(body, b"{\n  \"suspended\": true\n}\n");
    drop(app);
    assert_eq!(
        loop_.await.unwrap(),
        [
            "rollback Some(2)",
            "rollback None",
            "resume",
            "reconcile waiting=true retry=false",
            "reconcile waiting=true retry=false",
            "reconcile waiting=false retry=false",
            "reconcile waiting=true retry=true",
            "suspend",
        ]
    );
}

#[tokio::test]
async fn diff_asks_the_loop_and_answers_its_plan_or_its_error() {
    use crate::diff::DiffError;
    let dir = tempfile::tempdir().unwrap();
    let (shared, mut rx) = shared(dir.path(), 4).await;
    let app = router(shared);
    let answer = DiffAnswer {
        agent_id: "a".into(),
        commit: Some("c".repeat(40)),
        applied_commit: None,
        pinned: false,
        signer: None,
        refused: None,
        diff: Default::default(),
    };
    // A stand-in for the loop: with a fetch it plans, without one it has nothing fetched, and a commit
    // that does not render comes third.
    let loop_ = tokio::spawn({
        let answer = answer.clone();
        async move {
            let mut fetches = Vec::new();
            let mut n = 0;
            while let Some(cmd) = rx.recv().await {
                let Command::Diff { fetch, reply } = cmd else {
                    continue;
                };
                fetches.push(fetch);
                n += 1;
                let _ = reply.send(match (n, fetch) {
                    (3, _) => Err(DiffError::Render {
                        commit: "cccccccccccc".into(),
                        source: crate::render::RenderError {
                            problems: vec![crate::render::Problem {
                                file: Some("compose.yaml".into()),
                                line: Some(3),
                                column: None,
                                stack: None,
                                service: None,
                                message: "bad".into(),
                            }],
                        },
                    }),
                    (_, true) => Ok(answer.clone()),
                    (_, false) => Err(DiffError::NothingFetched),
                });
            }
            fetches
        }
    });
    let (code, body) = send(&app, Method::GET, "/v1/diff").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(serde_json::from_slice::<DiffAnswer>(&body).unwrap(), answer);
    let (code, msg) = send_err(&app, Method::GET, "/v1/diff?fetch=0").await;
    assert_eq!(code, StatusCode::CONFLICT, "{msg}");
    let (code, msg) = send_err(&app, Method::GET, "/v1/diff?fetch=1").await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(msg, "commit cccccccccccc: compose.yaml:3: bad");
    for uri in ["/v1/diff?fetch=maybe", "/v1/diff?dir=x"] {
        assert_eq!(
            send_err(&app, Method::GET, uri).await.0,
            StatusCode::BAD_REQUEST,
            "{uri}"
        );
    }
    assert_eq!(
        send_err(&app, Method::POST, "/v1/diff").await.0,
        StatusCode::METHOD_NOT_ALLOWED
    );
    drop(app);
    assert_eq!(loop_.await.unwrap(), [true, false, true]);
}

#[tokio::test]
async fn status_and_history_answer_while_the_loop_is_busy() {
    let dir = tempfile::tempdir().unwrap();
    // The loop never reads its queue, which is full: it is in the middle of a cycle.
    let (shared, _rx) = shared(dir.path(), 1).await;
    shared.commands.try_send(Command::Drift).unwrap();
    let app = router(shared);
    let answered = tokio::time::timeout(Duration::from_secs(20), async {
        let (code, _) = send(&app, Method::GET, "/v1/status").await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(history(&app, "/v1/history?limit=1").await.len(), 1);
        // A trigger that cannot be queued is still accepted: the queued cycle sees the newest state.
        assert_eq!(
            send(&app, Method::POST, "/v1/reconcile").await.0,
            StatusCode::ACCEPTED
        );
    })
    .await;
    assert!(answered.is_ok(), "the API waited on the reconcile loop");
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

fn short_tempdir() -> tempfile::TempDir {
    // Unix socket paths must stay under 108 bytes.
    tempfile::Builder::new()
        .prefix("b")
        .tempdir_in("/tmp")
        .unwrap()
}

#[test]
fn bind_makes_the_directory_replaces_a_stale_socket_and_leaves_nothing_else() {
    let dir = short_tempdir();
    let socket = dir.path().join("run/berth.sock");
    let first = bind(&socket, None).unwrap();
    assert_eq!(mode(&socket), 0o660);
    drop(first);
    // A stale socket of a dead agent, and a staging directory a crash left behind.
    std::fs::create_dir(dir.path().join("run/.berth.sock.new")).unwrap();
    std::fs::write(dir.path().join("run/.berth.sock.new/s"), "x").unwrap();
    let listener = bind(&socket, None).unwrap();
    assert_eq!(mode(&socket), 0o660);
    let names: Vec<_> = std::fs::read_dir(dir.path().join("run"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(names, ["berth.sock"]);
    // The listener answers at the published path.
    let _client = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    listener.accept().unwrap();
}

/// A watcher stats the socket the moment it appears at its path (inotify), over many binds: every time it
/// is already 0660 with its group, whatever the umask took away at `bind`.
#[test]
fn the_socket_appears_0660_with_its_group() {
    use inotify::{Inotify, WatchMask};
    use std::os::unix::fs::MetadataExt;
    let dir = short_tempdir();
    let run = dir.path().join("run");
    std::fs::create_dir(&run).unwrap();
    let socket = run.join("berth.sock");
    // Root may give the socket any group; others keep their own.
    let group = rustix::process::geteuid().is_root().then_some(4242u32);
    let mut inotify = Inotify::init().unwrap();
    inotify
        .watches()
        .add(&run, WatchMask::CREATE | WatchMask::MOVED_TO)
        .unwrap();
    let (seen_tx, seen_rx) = std::sync::mpsc::channel();
    let watched = socket.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            let Ok(events) = inotify.read_events_blocking(&mut buf) else {
                return;
            };
            for e in events {
                if e.name == watched.file_name() {
                    let seen =
                        std::fs::symlink_metadata(&watched).map(|m| (m.mode() & 0o7777, m.gid()));
                    if seen_tx.send(seen).is_err() {
                        return;
                    }
                }
            }
        }
    });
    for round in 0..50 {
        let listener = bind(&socket, group).unwrap();
        let (mode, gid) = seen_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the watcher saw the socket appear")
            .expect("stat of the socket at the moment it appeared");
        assert_eq!(
            mode, SOCKET_MODE,
            "round {round}: mode {mode:o} when it appeared"
        );
        if let Some(g) = group {
            assert_eq!(gid, g, "round {round}: group when it appeared");
        }
        drop(listener);
        std::fs::remove_file(&socket).unwrap();
    }
}

#[test]
fn socket_groups_by_name_or_number() {
    assert_eq!(socket_gid(Some("4242")).unwrap(), Some(4242));
    assert_eq!(socket_gid(Some("root")).unwrap(), Some(0));
    let err = socket_gid(Some("no-such-group-berth")).unwrap_err();
    assert!(matches!(err, SocketGroupError::NoSuchGroup { .. }), "{err}");
    let berth = nix::unistd::Group::from_name(DEFAULT_SOCKET_GROUP)
        .unwrap()
        .map(|g| g.gid.as_raw());
    assert_eq!(socket_gid(None).unwrap(), berth);
}

#[test]
fn bind_refuses_a_path_without_a_file_name() {
    let err = bind(Path::new("/"), None).unwrap_err();
    assert!(matches!(err, SocketError::NotAFile { .. }), "{err}");
}

#[tokio::test]
async fn the_socket_speaks_to_the_cli_client() {
    let dir = short_tempdir();
    let (shared, _rx) = shared(dir.path(), 4).await;
    let socket = dir.path().join("run/berth.sock");
    let server = tokio::spawn({
        let socket = socket.clone();
        async move { serve(&socket, None, shared).await }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "socket never appeared"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(mode(&socket), 0o660);
    let call = |path: &'static str| {
        let s = socket.clone();
        tokio::task::spawn_blocking(move || {
            client::call(&s, "GET", path, Some(Duration::from_secs(10)))
        })
    };
    let body = call("/v1/history?limit=%31").await.unwrap().unwrap();
    let h: Vec<HistoryEntry> = serde_json::from_slice(&body).unwrap();
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].summary, "second");
    let err = call("/v1/nothing").await.unwrap().unwrap_err();
    assert!(
        matches!(&err, client::ClientError::Agent { status: 404, message } if message == "no such endpoint /v1/nothing"),
        "{err:?}"
    );
    let err = call("/v1/history?limit=x").await.unwrap().unwrap_err();
    assert!(
        matches!(&err, client::ClientError::Agent { status: 400, .. }),
        "{err:?}"
    );
    server.abort();
}
