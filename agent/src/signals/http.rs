//! The optional TCP listener (`http.listen`): `GET /metrics` (Prometheus text, containers listed at scrape
//! time), `GET /healthz`, and `POST /hooks/<receiver>`, where a verified push to the followed ref queues a
//! reconcile. The [`router`] is built by a function so tests call it without a socket; [`serve`] binds it
//! and publishes the bound address and the receivers in status.

use super::metrics::{Metrics, WebhookResult, CONTENT_TYPE};
use super::receivers::{Receiver, Request};
use crate::api::server::{Command, Shared};
use crate::api::{HttpInfo, ReceiverInfo};
use crate::config::GitRef;
use crate::runtime::Runtime;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, State};
use axum::http::{header, Extensions, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Webhook bodies over this are refused (413).
pub const MAX_BODY: usize = 1024 * 1024;

/// What the listener serves from.
pub struct HttpState {
    pub shared: Arc<Shared>,
    pub metrics: Metrics,
    pub receivers: Vec<Receiver>,
    /// The ref the box follows: only a push to it triggers a fetch.
    pub followed: GitRef,
}

/// `/metrics`, `/healthz` and `/hooks/{receiver}` over `state`.
pub fn router(state: Arc<HttpState>) -> Router {
    for r in &state.receivers {
        state.metrics.webhook_receiver(&r.name);
    }
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/hooks/{receiver}", post(hook))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

fn json(code: StatusCode, value: serde_json::Value) -> Response {
    let mut body = value.to_string();
    body.push('\n');
    (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn healthz() -> Response {
    (StatusCode::OK, "ok\n").into_response()
}

async fn metrics(State(state): State<Arc<HttpState>>) -> Response {
    let agent_id = state
        .shared
        .status
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .agent_id
        .clone();
    let observed = state.shared.runtime.observe(&agent_id).await;
    let containers = match &observed {
        Ok(actual) => Some(
            actual
                .containers
                .iter()
                .map(|c| (c.stack.as_str(), c.state.as_str())),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "metrics: cannot list the containers");
            None
        }
    };
    match state.metrics.encode(containers) {
        Ok(text) => (StatusCode::OK, [(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn hook(
    State(state): State<Arc<HttpState>>,
    Path(name): Path<String>,
    extensions: Extensions,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    // Unknown names get no series of their own: a scanner must not grow the metrics.
    let Some(receiver) = state.receivers.iter().find(|r| r.name == name) else {
        return json(
            StatusCode::NOT_FOUND,
            serde_json::json!({"error": "no such receiver"}),
        );
    };
    let peer = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(a)| a.to_string())
        .unwrap_or_else(|| "unknown".into());
    let count = |result| state.metrics.webhook(&receiver.name, result);
    let body = match body {
        Ok(b) => b,
        Err(rejection) => {
            let code = rejection.status();
            if code == StatusCode::PAYLOAD_TOO_LARGE {
                count(WebhookResult::TooLarge);
                tracing::warn!(receiver = %receiver.name, %peer, limit = MAX_BODY, "webhook refused: body too large");
            }
            return json(code, serde_json::json!({"error": rejection.body_text()}));
        }
    };
    if !receiver.verify(&headers, &body) {
        count(WebhookResult::Unauthorized);
        tracing::warn!(receiver = %receiver.name, r#type = %receiver.kind, %peer, "webhook refused: bad or missing signature");
        return json(
            StatusCode::UNAUTHORIZED,
            serde_json::json!({"error": "bad or missing signature"}),
        );
    }
    match receiver.classify(&headers, &body, &state.followed) {
        Request::Reconcile => {
            count(WebhookResult::Triggered);
            tracing::info!(receiver = %receiver.name, %peer, "webhook: push to the followed ref; reconciling");
            trigger(&state.shared)
        }
        Request::Ignore(why) => {
            count(WebhookResult::Ignored);
            tracing::debug!(receiver = %receiver.name, %peer, why = %why, "webhook ignored");
            json(StatusCode::OK, serde_json::json!({"ignored": why}))
        }
        Request::Invalid => {
            count(WebhookResult::BadRequest);
            tracing::warn!(receiver = %receiver.name, %peer, "webhook: the body is not JSON");
            json(
                StatusCode::BAD_REQUEST,
                serde_json::json!({"error": "the body is not JSON"}),
            )
        }
    }
}

/// Queue a reconcile without waiting for it, and let a rollout waiting on its gate give way. A full queue
/// already holds a cycle that will fetch, and the loop merges every queued reconcile into one cycle: a
/// burst of pushes costs at most one fetch running and one queued.
fn trigger(shared: &Shared) -> Response {
    let sent = shared.commands.try_send(Command::Reconcile {
        reply: None,
        retry: false,
    });
    shared.wake.notify_waiters();
    match sent {
        Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => {
            json(StatusCode::ACCEPTED, serde_json::json!({"triggered": true}))
        }
        Err(mpsc::error::TrySendError::Closed(_)) => json(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"error": "the reconcile loop has stopped"}),
        ),
    }
}

/// The listener could not be bound or stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("http.listen {addr}: binding: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("http.listen {addr}: serving: {source}")]
    Serve {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Bind `addr`, publish the bound address and the receivers in status, and serve the [`router`]; returns
/// once bound with the task that serves.
pub async fn serve(
    addr: SocketAddr,
    state: Arc<HttpState>,
) -> Result<(SocketAddr, tokio::task::JoinHandle<Result<(), HttpError>>), HttpError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| HttpError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| HttpError::Bind { addr, source })?;
    {
        let mut status = state
            .shared
            .status
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        status.http = Some(HttpInfo {
            listen: bound.to_string(),
            receivers: state
                .receivers
                .iter()
                .map(|r| ReceiverInfo {
                    name: r.name.clone(),
                    kind: r.kind.to_string(),
                })
                .collect(),
        });
    }
    tracing::info!(listen = %bound, receivers = state.receivers.len(), "http listener ready");
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .await
            .map_err(|source| HttpError::Serve {
                addr: bound,
                source,
            })
    });
    Ok((bound, task))
}

#[cfg(test)]
mod tests;
