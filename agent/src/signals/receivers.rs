//! Webhook receivers: the `http:` and `receivers:` config keys (raw and validated), each receiver's secret
//! (read from `secret_file` at start, never shown), the signature checks of each type (HMAC-SHA256 compared
//! in constant time, or a token compared in constant time), and what a signed request asks for: a push to
//! the followed ref, or something to ignore.

use crate::config::GitRef;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use subtle::ConstantTimeEq;

/// `http:` as written.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    listen: Option<String>,
}

/// One entry of `receivers:` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReceiver {
    name: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    secret_file: Option<PathBuf>,
}

/// `http:`: the optional TCP listener for `/metrics`, `/healthz` and `/hooks/<receiver>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    /// Port 0 binds any free port (status shows the one bound).
    pub listen: SocketAddr,
}

/// How a receiver authenticates its requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiverKind {
    /// `X-Hub-Signature-256: sha256=<hex>`, HMAC-SHA256 of the body.
    Github,
    /// `X-Gitlab-Token`: the secret itself.
    Gitlab,
    /// `X-Gitea-Signature: <hex>` (Gitea and Forgejo), HMAC-SHA256 of the body.
    Gitea,
    /// `X-Signature: sha256=<hex>`, HMAC-SHA256 of the body.
    GenericHmac,
    /// No signature: only on a loopback listener.
    Generic,
}

impl ReceiverKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ReceiverKind::Github => "github",
            ReceiverKind::Gitlab => "gitlab",
            ReceiverKind::Gitea => "gitea",
            ReceiverKind::GenericHmac => "generic-hmac",
            ReceiverKind::Generic => "generic",
        }
    }

    fn parse(s: &str) -> Option<ReceiverKind> {
        [
            ReceiverKind::Github,
            ReceiverKind::Gitlab,
            ReceiverKind::Gitea,
            ReceiverKind::GenericHmac,
            ReceiverKind::Generic,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for ReceiverKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One validated receiver; its secret is read by [`Receiver::load`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiverSettings {
    pub name: String,
    pub kind: ReceiverKind,
    /// `None` only for `generic`.
    pub secret_file: Option<PathBuf>,
}

/// Validate `http:` and `receivers:`, pushing every problem (each naming its key) onto `problems`.
pub fn settings(
    http: Option<RawHttp>,
    receivers: Vec<RawReceiver>,
    problems: &mut Vec<String>,
) -> (Option<HttpSettings>, Vec<ReceiverSettings>) {
    let http = http.and_then(
        |h| match h.listen.as_deref().map(str::parse::<SocketAddr>) {
            None => {
                problems.push("http.listen: required (an address like 127.0.0.1:9880)".into());
                None
            }
            Some(Ok(listen)) => Some(HttpSettings { listen }),
            Some(Err(_)) => {
                problems.push(format!(
                    "http.listen: {:?} is not an address like 127.0.0.1:9880 or [::1]:9880",
                    h.listen.unwrap_or_default()
                ));
                None
            }
        },
    );
    let mut out: Vec<ReceiverSettings> = Vec::new();
    if !receivers.is_empty() && http.is_none() {
        problems.push("receivers: need http.listen, the listener that serves them".into());
    }
    for (n, r) in receivers.into_iter().enumerate() {
        let key = format!("receivers[{n}]");
        let name = match r.name {
            Some(name) if crate::config::valid_agent_id(&name) => name,
            Some(name) => {
                problems.push(format!(
                    "{key}.name: {name:?} must be 1-63 characters of a-z, A-Z, 0-9, '.', '_' or '-'"
                ));
                continue;
            }
            None => {
                problems.push(format!("{key}.name: required"));
                continue;
            }
        };
        if out.iter().any(|o| o.name == name) {
            problems.push(format!("{key}.name: {name:?} is used twice"));
        }
        let Some(kind) = r.kind.as_deref().map(ReceiverKind::parse) else {
            problems.push(format!("{key}.type: required"));
            continue;
        };
        let Some(kind) = kind else {
            problems.push(format!(
                "{key}.type: {:?} must be github, gitlab, gitea, generic-hmac or generic",
                r.kind.unwrap_or_default()
            ));
            continue;
        };
        match (kind, &r.secret_file) {
            (ReceiverKind::Generic, Some(_)) => problems.push(format!(
                "{key}.secret_file: a generic receiver checks no signature; use generic-hmac"
            )),
            (ReceiverKind::Generic, None) => {
                if let Some(h) = http.as_ref().filter(|h| !h.listen.ip().is_loopback()) {
                    problems.push(format!(
                        "{key}.type: generic (no signature) is only allowed on a loopback http.listen, not {}",
                        h.listen
                    ));
                }
            }
            (_, None) => problems.push(format!("{key}.secret_file: required for type {kind}")),
            (_, Some(f)) if !f.is_absolute() => problems.push(format!(
                "{key}.secret_file: {} must be an absolute path",
                f.display()
            )),
            (_, Some(_)) => {}
        }
        out.push(ReceiverSettings {
            name,
            kind,
            secret_file: r.secret_file,
        });
    }
    (http, out)
}

/// A secret read from a file: compared, never displayed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// A receiver's secret file that cannot be used (the message never quotes its content).
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("receiver {receiver}: secret_file {}: {source}", path.display())]
    Read {
        receiver: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("receiver {receiver}: secret_file {} is empty", path.display())]
    Empty { receiver: String, path: PathBuf },
}

/// Secret files larger than this are refused (a secret is a line, not a document).
const MAX_SECRET_BYTES: u64 = 4096;

/// A receiver ready to check requests.
#[derive(Debug, Clone)]
pub struct Receiver {
    pub name: String,
    pub kind: ReceiverKind,
    secret: Option<Secret>,
}

impl Receiver {
    /// Read the receiver's secret file (trailing newlines dropped, as editors and `echo` add them).
    pub fn load(settings: &ReceiverSettings) -> Result<Receiver, SecretError> {
        let secret = match &settings.secret_file {
            Some(path) => Some(read_secret(&settings.name, path)?),
            None => None,
        };
        Ok(Receiver {
            name: settings.name.clone(),
            kind: settings.kind,
            secret,
        })
    }

    /// A receiver with this secret (tests and callers that hold the secret already).
    pub fn with_secret(name: &str, kind: ReceiverKind, secret: &[u8]) -> Receiver {
        Receiver {
            name: name.into(),
            kind,
            secret: (kind != ReceiverKind::Generic).then(|| Secret(secret.to_vec())),
        }
    }

    /// Whether the request's signature (or token) matches the body, in constant time. A `generic`
    /// receiver accepts every request.
    pub fn verify(&self, headers: &axum::http::HeaderMap, body: &[u8]) -> bool {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let Some(Secret(secret)) = &self.secret else {
            return self.kind == ReceiverKind::Generic;
        };
        match self.kind {
            ReceiverKind::Generic => true,
            ReceiverKind::Gitlab => header("x-gitlab-token")
                .is_some_and(|token| bool::from(token.as_bytes().ct_eq(secret))),
            ReceiverKind::Github => header("x-hub-signature-256")
                .and_then(|v| v.strip_prefix("sha256="))
                .is_some_and(|hex| hmac_matches(secret, body, hex)),
            ReceiverKind::Gitea => {
                header("x-gitea-signature").is_some_and(|hex| hmac_matches(secret, body, hex))
            }
            ReceiverKind::GenericHmac => header("x-signature")
                .and_then(|v| v.strip_prefix("sha256="))
                .is_some_and(|hex| hmac_matches(secret, body, hex)),
        }
    }

    /// What a verified request asks for.
    pub fn classify(
        &self,
        headers: &axum::http::HeaderMap,
        body: &[u8],
        followed: &GitRef,
    ) -> Request {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let forge = self.kind != ReceiverKind::Generic && self.kind != ReceiverKind::GenericHmac;
        let event = match self.kind {
            ReceiverKind::Github => header("x-github-event"),
            ReceiverKind::Gitea => header("x-gitea-event")
                .or_else(|| header("x-forgejo-event"))
                .or_else(|| header("x-gogs-event")),
            ReceiverKind::Gitlab => header("x-gitlab-event"),
            ReceiverKind::Generic | ReceiverKind::GenericHmac => None,
        };
        if let Some(event) = event {
            if !is_push_event(self.kind, event) {
                return Request::Ignore(format!("{event} event"));
            }
        }
        let payload: Option<Payload> = serde_json::from_slice(body).ok();
        match payload.and_then(|p| p.reference) {
            Some(pushed) if push_matches(followed, &pushed) => Request::Reconcile,
            Some(pushed) => {
                Request::Ignore(format!("push to {pushed}, not the followed {followed}"))
            }
            // A forge's push always names its ref; a generic hook is a plain "reconcile now".
            None if forge && serde_json::from_slice::<serde_json::Value>(body).is_err() => {
                Request::Invalid
            }
            None if forge => Request::Ignore("no ref in the payload".into()),
            None => Request::Reconcile,
        }
    }
}

fn read_secret(receiver: &str, path: &Path) -> Result<Secret, SecretError> {
    use std::io::Read;
    let read_err = |source| SecretError::Read {
        receiver: receiver.into(),
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let mut bytes = Vec::new();
    file.take(MAX_SECRET_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_SECRET_BYTES {
        return Err(read_err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {MAX_SECRET_BYTES} bytes"),
        )));
    }
    while matches!(bytes.last(), Some(b'\n' | b'\r')) {
        bytes.pop();
    }
    if bytes.is_empty() {
        return Err(SecretError::Empty {
            receiver: receiver.into(),
            path: path.to_path_buf(),
        });
    }
    crate::telemetry::log_secrets().add_bytes(&bytes);
    Ok(Secret(bytes))
}

/// Whether `hex` is the HMAC-SHA256 of `body` under `secret`; compared in constant time by `hmac`.
fn hmac_matches(secret: &[u8], body: &[u8], hex: &str) -> bool {
    let mut expected = [0u8; 32];
    if hex::decode_to_slice(hex.trim(), &mut expected).is_err() {
        return false;
    }
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// What a signed request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// A push to the followed ref (or a generic poke): fetch now.
    Reconcile,
    /// A ping, another event or another ref: answered 200, nothing done.
    Ignore(String),
    /// A forge's push whose body is not JSON.
    Invalid,
}

/// The part of a push payload that matters: GitHub, Gitea/Forgejo and GitLab all send `ref`.
#[derive(Deserialize)]
struct Payload {
    #[serde(rename = "ref")]
    reference: Option<String>,
}

fn is_push_event(kind: ReceiverKind, event: &str) -> bool {
    match kind {
        ReceiverKind::Gitlab => event == "Push Hook" || event == "Tag Push Hook",
        _ => event == "push",
    }
}

/// Whether a pushed ref (`refs/heads/<branch>`, `refs/tags/<tag>`) is the one the box follows. A box
/// that follows a fixed commit is moved by no push.
pub fn push_matches(followed: &GitRef, pushed: &str) -> bool {
    match followed {
        GitRef::Branch(b) => pushed.strip_prefix("refs/heads/") == Some(b.as_str()),
        GitRef::Tag(t) => pushed.strip_prefix("refs/tags/") == Some(t.as_str()),
        GitRef::Commit(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, HeaderValue};

    const SECRET: &[u8] = b"It's a Secret to Everybody";
    const BODY: &[u8] = b"Hello, World!";
    /// GitHub's documented example: HMAC-SHA256 of BODY under SECRET.
    const GITHUB_EXAMPLE: &str = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn github_signature() {
        let r = Receiver::with_secret("gh", ReceiverKind::Github, SECRET);
        let good = format!("sha256={GITHUB_EXAMPLE}");
        assert!(r.verify(&headers(&[("x-hub-signature-256", &good)]), BODY));
        assert!(!r.verify(
            &headers(&[("x-hub-signature-256", &good)]),
            b"Hello, World?"
        ));
        assert!(!r.verify(&headers(&[("x-hub-signature-256", GITHUB_EXAMPLE)]), BODY));
        assert!(!r.verify(&headers(&[("x-signature", &good)]), BODY));
        assert!(!r.verify(&headers(&[("x-hub-signature-256", "sha256=zz")]), BODY));
        assert!(!r.verify(&HeaderMap::new(), BODY));
        let other = Receiver::with_secret("gh", ReceiverKind::Github, b"another secret");
        assert!(!other.verify(&headers(&[("x-hub-signature-256", &good)]), BODY));
    }

    #[test]
    fn gitea_signature_is_bare_hex() {
        let r = Receiver::with_secret("gt", ReceiverKind::Gitea, SECRET);
        assert!(r.verify(&headers(&[("x-gitea-signature", GITHUB_EXAMPLE)]), BODY));
        let prefixed = format!("sha256={GITHUB_EXAMPLE}");
        assert!(!r.verify(&headers(&[("x-gitea-signature", &prefixed)]), BODY));
        assert!(!r.verify(&headers(&[("x-hub-signature-256", &prefixed)]), BODY));
        let truncated = &GITHUB_EXAMPLE[..62];
        assert!(!r.verify(&headers(&[("x-gitea-signature", truncated)]), BODY));
    }

    #[test]
    fn generic_hmac_signature() {
        let r = Receiver::with_secret("g", ReceiverKind::GenericHmac, SECRET);
        let good = format!("sha256={GITHUB_EXAMPLE}");
        assert!(r.verify(&headers(&[("x-signature", &good)]), BODY));
        assert!(!r.verify(&headers(&[("x-signature", GITHUB_EXAMPLE)]), BODY));
        assert!(!r.verify(&headers(&[("x-signature", &good)]), b""));
    }

    #[test]
    fn gitlab_token() {
        let r = Receiver::with_secret("gl", ReceiverKind::Gitlab, SECRET);
        let token = std::str::from_utf8(SECRET).unwrap();
        assert!(r.verify(&headers(&[("x-gitlab-token", token)]), BODY));
        assert!(!r.verify(&headers(&[("x-gitlab-token", "It's a Secret")]), BODY));
        assert!(!r.verify(&headers(&[("x-gitlab-token", &format!("{token}!"))]), BODY));
        assert!(!r.verify(&HeaderMap::new(), BODY));
    }

    #[test]
    fn generic_needs_nothing() {
        let r = Receiver::with_secret("g", ReceiverKind::Generic, b"");
        assert!(r.verify(&HeaderMap::new(), BODY));
    }

    #[test]
    fn ref_matching() {
        let main = GitRef::Branch("main".into());
        assert!(push_matches(&main, "refs/heads/main"));
        assert!(!push_matches(&main, "refs/heads/main2"));
        assert!(!push_matches(&main, "refs/heads/feature/main"));
        assert!(!push_matches(&main, "refs/tags/main"));
        assert!(!push_matches(&main, "main"));
        let nested = GitRef::Branch("release/1.x".into());
        assert!(push_matches(&nested, "refs/heads/release/1.x"));
        let tag = GitRef::Tag("v1.2.3".into());
        assert!(push_matches(&tag, "refs/tags/v1.2.3"));
        assert!(!push_matches(&tag, "refs/heads/v1.2.3"));
        assert!(!push_matches(
            &GitRef::Commit("abcdef1".into()),
            "refs/heads/main"
        ));
    }

    #[test]
    fn classify_events_and_refs() {
        let main = GitRef::Branch("main".into());
        let push = br#"{"ref":"refs/heads/main","after":"abc"}"#;
        let other = br#"{"ref":"refs/heads/dev"}"#;
        let gh = Receiver::with_secret("gh", ReceiverKind::Github, SECRET);
        let ev = |e: &str| headers(&[("x-github-event", e)]);
        assert_eq!(gh.classify(&ev("push"), push, &main), Request::Reconcile);
        assert!(matches!(
            gh.classify(&ev("push"), other, &main),
            Request::Ignore(_)
        ));
        assert!(matches!(
            gh.classify(&ev("ping"), br#"{"zen":"x"}"#, &main),
            Request::Ignore(_)
        ));
        assert!(matches!(
            gh.classify(&ev("issues"), push, &main),
            Request::Ignore(_)
        ));
        assert_eq!(
            gh.classify(&ev("push"), b"not json", &main),
            Request::Invalid
        );
        let gl = Receiver::with_secret("gl", ReceiverKind::Gitlab, SECRET);
        let ev = |e: &str| headers(&[("x-gitlab-event", e)]);
        assert_eq!(
            gl.classify(&ev("Push Hook"), push, &main),
            Request::Reconcile
        );
        let tag = GitRef::Tag("v1".into());
        let tag_push = br#"{"ref":"refs/tags/v1"}"#;
        assert_eq!(
            gl.classify(&ev("Tag Push Hook"), tag_push, &tag),
            Request::Reconcile
        );
        assert!(matches!(
            gl.classify(&ev("Merge Request Hook"), push, &main),
            Request::Ignore(_)
        ));
        let gt = Receiver::with_secret("gt", ReceiverKind::Gitea, SECRET);
        let ev = |e: &str| headers(&[("x-gitea-event", e)]);
        assert_eq!(gt.classify(&ev("push"), push, &main), Request::Reconcile);
        assert!(matches!(
            gt.classify(&ev("create"), push, &main),
            Request::Ignore(_)
        ));
        let g = Receiver::with_secret("g", ReceiverKind::GenericHmac, SECRET);
        assert_eq!(
            g.classify(&HeaderMap::new(), b"", &main),
            Request::Reconcile
        );
        assert_eq!(
            g.classify(&HeaderMap::new(), push, &main),
            Request::Reconcile
        );
        assert!(matches!(
            g.classify(&HeaderMap::new(), other, &main),
            Request::Ignore(_)
        ));
    }

    fn parse(extra: &str) -> Result<crate::config::Settings, Vec<String>> {
        crate::config::parse(&format!("agent_id: a\nsource:\n  url: x\n{extra}"))
    }

    #[test]
    fn config_keys() {
        let s = parse("").unwrap();
        assert_eq!(s.http, None);
        assert!(s.receivers.is_empty());
        let s = parse(
            "http: {listen: '127.0.0.1:9880'}\nreceivers:\n  - {name: gh, type: github, secret_file: /etc/s}\n  - {name: local, type: generic}\n",
        )
        .unwrap();
        assert_eq!(s.http.unwrap().listen, "127.0.0.1:9880".parse().unwrap());
        assert_eq!(s.receivers.len(), 2);
        assert_eq!(s.receivers[0].kind, ReceiverKind::Github);
        assert_eq!(s.receivers[1].secret_file, None);
        assert!(
            parse("http: {listen: '[::1]:0'}\nreceivers: [{name: l, type: generic}]\n").is_ok()
        );
    }

    #[test]
    fn bad_receivers_are_all_reported() {
        let errs = parse(
            "http: {listen: '0.0.0.0:9880'}\nreceivers:\n  - {name: open, type: generic}\n  - {name: gh, type: github}\n  - {name: gh, type: gitea, secret_file: rel}\n  - {name: x, type: bitbucket, secret_file: /s}\n  - {type: gitlab, secret_file: /s}\n",
        )
        .unwrap_err();
        let all = errs.join("\n");
        for want in [
            "receivers[0].type: generic (no signature) is only allowed on a loopback",
            "receivers[1].secret_file: required for type github",
            "receivers[2].name: \"gh\" is used twice",
            "receivers[2].secret_file: rel must be an absolute path",
            "receivers[3].type: \"bitbucket\" must be",
            "receivers[4].name: required",
        ] {
            assert!(all.contains(want), "missing {want:?} in\n{all}");
        }
        let errs = parse("receivers: [{name: gh, type: github, secret_file: /s}]\n").unwrap_err();
        assert!(errs[0].contains("need http.listen"), "{errs:?}");
        let errs = parse("http: {listen: 'localhost'}\n").unwrap_err();
        assert!(errs[0].contains("http.listen"), "{errs:?}");
        let errs = parse("http: {}\n").unwrap_err();
        assert!(errs[0].contains("http.listen: required"), "{errs:?}");
        let errs = parse("http: {listen: '127.0.0.1:1', port: 2}\n").unwrap_err();
        assert!(errs[0].contains("port"), "{errs:?}");
    }

    #[test]
    fn secret_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let settings = ReceiverSettings {
            name: "gh".into(),
            kind: ReceiverKind::Github,
            secret_file: Some(path.clone()),
        };
        assert!(matches!(
            Receiver::load(&settings),
            Err(SecretError::Read { .. })
        ));
        std::fs::write(&path, "\n").unwrap();
        assert!(matches!(
            Receiver::load(&settings),
            Err(SecretError::Empty { .. })
        ));
        std::fs::write(&path, vec![b'x'; 5000]).unwrap();
        assert!(Receiver::load(&settings).is_err());
        std::fs::write(&path, "It's a Secret to Everybody\n").unwrap();
        let r = Receiver::load(&settings).unwrap();
        let good = format!("sha256={GITHUB_EXAMPLE}");
        assert!(r.verify(&headers(&[("x-hub-signature-256", &good)]), BODY));
        assert!(!format!("{r:?}").contains("Everybody"));
    }
}
