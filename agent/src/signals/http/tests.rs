use super::*;
use crate::api::Status;
use crate::runtime::DockerRuntime;
use crate::signals::receivers::ReceiverKind;
use crate::store::Store;
use axum::body::Body;
use axum::http::{Method, Request as HttpRequest};
use hmac::{Hmac, Mac};
use std::sync::Mutex;
use tower::ServiceExt;

const SECRET: &[u8] = b"s3cret";

async fn state(dir: &std::path::Path, queue: usize) -> (Arc<HttpState>, mpsc::Receiver<Command>) {
    let (tx, rx) = mpsc::channel(queue);
    let agent_id = format!("unit-http-{}", std::process::id());
    let shared = Arc::new(Shared {
        status: Mutex::new(Status {
            agent_id: agent_id.clone(),
            ..Default::default()
        }),
        store: Store::open(&dir.join("store")).unwrap(),
        runtime: DockerRuntime::connect(None).await.unwrap(),
        commands: tx,
        wake: tokio::sync::Notify::new(),
    });
    let state = HttpState {
        shared,
        metrics: Metrics::new(&agent_id),
        receivers: vec![
            Receiver::with_secret("gh", ReceiverKind::Github, SECRET),
            Receiver::with_secret("local", ReceiverKind::Generic, b""),
        ],
        followed: GitRef::Branch("main".into()),
    };
    (Arc::new(state), rx)
}

fn sign(body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

async fn post(app: &Router, uri: &str, headers: &[(&str, &str)], body: Vec<u8>) -> StatusCode {
    let mut req = HttpRequest::builder().method(Method::POST).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    resp.status()
}

#[tokio::test]
async fn a_signed_push_queues_one_reconcile_and_the_rest_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let (state, mut rx) = state(dir.path(), 4).await;
    let app = router(state.clone());
    let push = br#"{"ref":"refs/heads/main"}"#.to_vec();
    let sig = sign(&push);
    let headers = [
        ("x-github-event", "push"),
        ("x-hub-signature-256", sig.as_str()),
    ];
    assert_eq!(
        post(&app, "/hooks/gh", &headers, push.clone()).await,
        StatusCode::ACCEPTED
    );
    assert!(matches!(
        rx.try_recv(),
        Ok(Command::Reconcile {
            reply: None,
            retry: false
        })
    ));
    // Bad signature, another ref, a ping, an unknown receiver: nothing queued.
    let bad = [
        ("x-github-event", "push"),
        ("x-hub-signature-256", "sha256=00"),
    ];
    assert_eq!(
        post(&app, "/hooks/gh", &bad, push.clone()).await,
        StatusCode::UNAUTHORIZED
    );
    let dev = br#"{"ref":"refs/heads/dev"}"#.to_vec();
    let dev_sig = sign(&dev);
    let h = [
        ("x-github-event", "push"),
        ("x-hub-signature-256", dev_sig.as_str()),
    ];
    assert_eq!(post(&app, "/hooks/gh", &h, dev).await, StatusCode::OK);
    let ping = br#"{"zen":"hi"}"#.to_vec();
    let ping_sig = sign(&ping);
    let h = [
        ("x-github-event", "ping"),
        ("x-hub-signature-256", ping_sig.as_str()),
    ];
    assert_eq!(post(&app, "/hooks/gh", &h, ping).await, StatusCode::OK);
    assert_eq!(
        post(&app, "/hooks/nope", &headers, push.clone()).await,
        StatusCode::NOT_FOUND
    );
    assert!(rx.try_recv().is_err(), "nothing else was queued");
    // A full queue still answers 202: a queued cycle will fetch anyway.
    for _ in 0..6 {
        assert_eq!(
            post(&app, "/hooks/gh", &headers, push.clone()).await,
            StatusCode::ACCEPTED
        );
    }
    let text = state.metrics.encode(None::<[(&str, &str); 0]>).unwrap();
    assert!(
        text.contains(r#"receiver="gh",result="triggered"} 7"#),
        "{text}"
    );
    assert!(!text.contains(r#"receiver="nope""#), "{text}");
}

#[tokio::test]
async fn bodies_over_a_mebibyte_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (state, mut rx) = state(dir.path(), 4).await;
    let app = router(state);
    let big = vec![b' '; MAX_BODY + 1];
    assert_eq!(
        post(&app, "/hooks/local", &[], big).await,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert!(rx.try_recv().is_err());
    assert_eq!(
        post(&app, "/hooks/local", &[], vec![b' '; MAX_BODY]).await,
        StatusCode::ACCEPTED
    );
}

#[tokio::test]
async fn healthz_and_metrics_answer() {
    let dir = tempfile::tempdir().unwrap();
    let (state, _rx) = state(dir.path(), 4).await;
    let app = router(state);
    for (uri, ctype) in [("/healthz", None), ("/metrics", Some(CONTENT_TYPE))] {
        let req = HttpRequest::builder().uri(uri).body(Body::empty()).unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{uri}");
        if let Some(ctype) = ctype {
            assert_eq!(resp.headers()[header::CONTENT_TYPE], ctype);
        }
    }
}
