//! One event to one provider: the request each provider type expects ([`request`], pure) and its
//! delivery with ureq ([`Sender`], blocking: only the alerts worker thread calls it), with a deadline on
//! every request. Formats: `generic` (the event as JSON), `generic-hmac` (the same, signed
//! `X-Signature: sha256=<hex>`), Slack / Discord incoming webhooks, a Teams workflow webhook (an
//! Adaptive Card), ntfy (text body, `Title`/`Priority`/`Tags` headers, optional bearer token) and
//! Gotify (`POST …/message` with `X-Gotify-Key`).

use super::{AlertSettings, Event, ProviderKind, Severity, State};
use hmac::{Hmac, Mac};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The longest a secret file may be.
const MAX_SECRET_BYTES: u64 = 64 * 1024;

/// An HTTP request, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("cannot read secret_file {}: {source}", path.display())]
    Secret {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("secret_file {} is empty or larger than 64 KiB", path.display())]
    BadSecret { path: PathBuf },
    #[error("cannot encode the event: {0}")]
    Encode(#[from] serde_json::Error),
    /// The URL is never quoted: it may hold a token.
    #[error("the url is not a valid URL")]
    Url,
    #[error("request failed: {}", describe(.0))]
    Http(#[source] ureq::Error),
    #[error("answered HTTP {0}")]
    Status(u16),
}

/// ureq's error without the URL (some variants quote it).
fn describe(e: &ureq::Error) -> String {
    match e {
        ureq::Error::BadUri(_) | ureq::Error::RequireHttpsOnly(_) => "bad URL".into(),
        ureq::Error::ConnectProxyFailed(_) => "the proxy refused the connection".into(),
        other => other.to_string(),
    }
}

/// The key or token in a secret file, without trailing whitespace (files end with a newline).
pub fn read_secret(path: &Path) -> Result<Vec<u8>, SendError> {
    use std::io::Read;
    let err = |source| SendError::Secret {
        path: path.to_path_buf(),
        source,
    };
    let mut buf = Vec::new();
    std::fs::File::open(path)
        .map_err(err)?
        .take(MAX_SECRET_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(err)?;
    while buf.last().is_some_and(|b| b.is_ascii_whitespace()) {
        buf.pop();
    }
    if buf.is_empty() || buf.len() as u64 > MAX_SECRET_BYTES {
        return Err(SendError::BadSecret {
            path: path.to_path_buf(),
        });
    }
    crate::telemetry::log_secrets().add_bytes(&buf);
    Ok(buf)
}

/// `sha256=<hex>`: HMAC-SHA256 of `body` with `key`.
pub fn signature(key: &[u8], body: &[u8]) -> String {
    let mut mac = match Hmac::<sha2::Sha256>::new_from_slice(key) {
        Ok(m) => m,
        // HMAC takes keys of any length; this arm is never taken.
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// `[edge-01] FIRING render_failed (stack web, commit abc123)`.
pub fn title(e: &Event) -> String {
    let state = match (e.state, e.severity) {
        (State::Firing, _) => "FIRING",
        (State::Resolved, Severity::Error) => "RESOLVED",
        (State::Resolved, Severity::Info) => "INFO",
    };
    let mut scope = Vec::new();
    if let Some(s) = &e.stack {
        scope.push(format!("stack {s}"));
    }
    if let Some(s) = &e.service {
        scope.push(format!("service {s}"));
    }
    if let Some(c) = &e.commit {
        scope.push(format!("commit {}", c.get(..12).unwrap_or(c)));
    }
    let scope = if scope.is_empty() {
        String::new()
    } else {
        format!(" ({})", scope.join(", "))
    };
    format!("[{}] {state} {}{scope}", e.agent_id, e.reason)
}

/// The text chat providers show: the title, the message, and what was dropped.
fn text(e: &Event) -> String {
    let mut t = format!("{}\n{}", title(e), e.message);
    if e.dropped > 0 {
        t.push_str(&format!(
            "\n({} earlier events were dropped from the full outbox)",
            e.dropped
        ));
    }
    t
}

/// The request `a` expects for `e`; `secret`: the content of `a.secret_file`, if it has one.
pub fn request(a: &AlertSettings, e: &Event, secret: Option<&[u8]>) -> Result<Request, SendError> {
    let json_type = ("Content-Type", "application/json".to_string());
    let mut url = a.url.clone();
    let (headers, body) = match a.kind {
        ProviderKind::Generic => (vec![json_type], serde_json::to_vec(e)?),
        ProviderKind::GenericHmac => {
            let body = serde_json::to_vec(e)?;
            let mut h = vec![json_type];
            if let Some(key) = secret {
                h.push(("X-Signature", signature(key, &body)));
            }
            (h, body)
        }
        ProviderKind::Slack => (
            vec![json_type],
            serde_json::to_vec(&json!({ "text": text(e) }))?,
        ),
        ProviderKind::Discord => (
            vec![json_type],
            // No @everyone or role pings from a message that quotes an error.
            serde_json::to_vec(&json!({
                "content": text(e),
                "allowed_mentions": { "parse": [] },
            }))?,
        ),
        ProviderKind::Teams => {
            let card = json!({
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.2",
                "body": [
                    { "type": "TextBlock", "text": title(e), "weight": "Bolder", "wrap": true },
                    { "type": "TextBlock", "text": e.message, "wrap": true },
                ],
            });
            let body = json!({
                "type": "message",
                "attachments": [{
                    "contentType": "application/vnd.microsoft.card.adaptive",
                    "content": card,
                }],
            });
            (vec![json_type], serde_json::to_vec(&body)?)
        }
        ProviderKind::Ntfy => {
            let (priority, tags) = match (e.state, e.severity) {
                (State::Firing, Severity::Error) => ("4", "rotating_light"),
                (State::Resolved, Severity::Error) => ("3", "white_check_mark"),
                _ => ("2", "information_source"),
            };
            let mut h = vec![
                ("Content-Type", "text/plain; charset=utf-8".to_string()),
                // Header values must be visible ASCII: a title with other characters is escaped.
                ("Title", title(e).escape_default().to_string()),
                ("Priority", priority.to_string()),
                ("Tags", tags.to_string()),
            ];
            if let Some(token) = secret {
                h.push(("Authorization", format!("Bearer {}", token_text(token))));
            }
            (h, text_body(e).into_bytes())
        }
        ProviderKind::Gotify => {
            let priority = match (e.state, e.severity) {
                (State::Firing, Severity::Error) => 8,
                (State::Resolved, Severity::Error) => 5,
                _ => 2,
            };
            let mut h = vec![json_type];
            if let Some(token) = secret {
                h.push(("X-Gotify-Key", token_text(token)));
            }
            url = gotify_url(&a.url)?;
            let body = json!({
                "title": title(e),
                "message": text_body(e),
                "priority": priority,
            });
            (h, serde_json::to_vec(&body)?)
        }
    };
    Ok(Request { url, headers, body })
}

/// The message and what was dropped (the title is sent apart).
fn text_body(e: &Event) -> String {
    let mut t = e.message.clone();
    if e.dropped > 0 {
        t.push_str(&format!(
            "\n({} earlier events were dropped from the full outbox)",
            e.dropped
        ));
    }
    t
}

fn token_text(token: &[u8]) -> String {
    String::from_utf8_lossy(token).to_string()
}

/// Gotify's endpoint is `<server>/message`; a url given without it gets it.
fn gotify_url(server: &str) -> Result<String, SendError> {
    let mut u = url::Url::parse(server).map_err(|_| SendError::Url)?;
    if !u.path().trim_end_matches('/').ends_with("/message") {
        let path = format!("{}/message", u.path().trim_end_matches('/'));
        u.set_path(&path);
    }
    Ok(u.to_string())
}

/// Sends requests with a deadline on each (connect included): a receiver that never answers costs
/// the worker `timeout`, never the reconcile loop anything.
pub struct Sender {
    agent: ureq::Agent,
}

impl Sender {
    pub fn new(timeout: Duration) -> Sender {
        let tls = ureq::tls::TlsConfig::builder()
            .provider(ureq::tls::TlsProvider::NativeTls)
            .root_certs(ureq::tls::RootCerts::PlatformVerifier)
            .build();
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .timeout_connect(Some(timeout.min(Duration::from_secs(5))))
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            .tls_config(tls)
            .build();
        Sender {
            agent: config.into(),
        }
    }

    /// Send `e` to `a`: `Ok` once it answered 2xx.
    pub fn send(&self, a: &AlertSettings, e: &Event) -> Result<(), SendError> {
        let secret = match &a.secret_file {
            Some(p) => Some(read_secret(p)?),
            None => None,
        };
        let req = request(a, e, secret.as_deref())?;
        let mut call = self.agent.post(&req.url);
        for (k, v) in &req.headers {
            call = call.header(*k, v);
        }
        let resp = call.send(&req.body[..]).map_err(SendError::Http)?;
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(SendError::Status(status))
        }
    }
}
