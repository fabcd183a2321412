//! The `alerts:` list of the agent config: raw serde entries → validated [`AlertSettings`], every problem
//! collected (named by `alerts[i].key`). Secrets are only named by path here, read at delivery.

use super::{Reason, Severity};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// `alerts_source_grace` when unset: how long the remote may fail before `source_unreachable` fires.
pub const DEFAULT_SOURCE_GRACE: Duration = Duration::from_secs(600);
/// The shortest `repeat`: a firing incident is not re-sent more often than this.
const MIN_REPEAT: Duration = Duration::from_secs(60);

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAlert {
    name: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    url: Option<String>,
    secret_file: Option<PathBuf>,
    min_severity: Option<String>,
    reasons: Option<Vec<String>>,
    repeat: Option<String>,
}

/// Which format and authentication a provider gets (`type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderKind {
    Generic,
    GenericHmac,
    Slack,
    Discord,
    Teams,
    Ntfy,
    Gotify,
}

impl ProviderKind {
    pub const ALL: [ProviderKind; 7] = [
        ProviderKind::Generic,
        ProviderKind::GenericHmac,
        ProviderKind::Slack,
        ProviderKind::Discord,
        ProviderKind::Teams,
        ProviderKind::Ntfy,
        ProviderKind::Gotify,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Generic => "generic",
            ProviderKind::GenericHmac => "generic-hmac",
            ProviderKind::Slack => "slack",
            ProviderKind::Discord => "discord",
            ProviderKind::Teams => "teams",
            ProviderKind::Ntfy => "ntfy",
            ProviderKind::Gotify => "gotify",
        }
    }

    /// Whether `secret_file` is required (`Some(true)`), optional (`Some(false)`) or meaningless.
    fn secret(self) -> Option<bool> {
        match self {
            ProviderKind::GenericHmac | ProviderKind::Gotify => Some(true),
            ProviderKind::Ntfy => Some(false),
            _ => None,
        }
    }
}

impl std::fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One validated alert provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertSettings {
    pub name: String,
    pub kind: ProviderKind,
    /// May hold a token (Slack, Discord, Teams hooks): never logged or shown; see [`redact_url`].
    pub url: String,
    /// generic-hmac: the HMAC key; gotify: the application token; ntfy: an access token (optional).
    pub secret_file: Option<PathBuf>,
    pub min_severity: Severity,
    /// Only these reasons; `None`: every reason.
    pub reasons: Option<Vec<Reason>>,
    /// Re-send a firing incident this often.
    pub repeat: Option<Duration>,
}

impl AlertSettings {
    /// Whether an event of this reason and severity goes to this provider.
    pub fn wants(&self, reason: Reason, severity: Severity) -> bool {
        severity >= self.min_severity && self.reasons.as_ref().is_none_or(|r| r.contains(&reason))
    }
}

/// A URL as logs and status may show it: scheme, host and port only (hook URLs carry tokens in their
/// path, query or user info).
pub fn redact_url(u: &str) -> String {
    match url::Url::parse(u) {
        Ok(p) => {
            let host = p.host_str().unwrap_or("");
            match p.port() {
                Some(port) => format!("{}://{host}:{port}/…", p.scheme()),
                None => format!("{}://{host}/…", p.scheme()),
            }
        }
        Err(_) => "(invalid url)".into(),
    }
}

/// Validate the raw `alerts:` list; problems are pushed, named by their key.
pub(crate) fn validate(raw: Vec<RawAlert>, problems: &mut Vec<String>) -> Vec<AlertSettings> {
    let mut out: Vec<AlertSettings> = Vec::new();
    for (i, a) in raw.into_iter().enumerate() {
        let key = |k: &str| format!("alerts[{i}].{k}");
        let name = match a.name {
            Some(n) if valid_name(&n) => n,
            Some(n) => {
                problems.push(format!(
                    "{}: {n:?} must be 1-63 characters of a-z, A-Z, 0-9, '.', '_' or '-'",
                    key("name")
                ));
                continue;
            }
            None => {
                problems.push(format!("{}: required", key("name")));
                continue;
            }
        };
        if out.iter().any(|o| o.name == name) {
            problems.push(format!("{}: {name:?} is used twice", key("name")));
        }
        let kind = match a.kind.as_deref() {
            Some(t) => match ProviderKind::ALL.iter().find(|k| k.as_str() == t) {
                Some(k) => *k,
                None => {
                    let all: Vec<&str> = ProviderKind::ALL.iter().map(|k| k.as_str()).collect();
                    problems.push(format!(
                        "{}: {t:?} must be one of {}",
                        key("type"),
                        all.join(", ")
                    ));
                    continue;
                }
            },
            None => {
                problems.push(format!("{}: required", key("type")));
                continue;
            }
        };
        let url = a.url.unwrap_or_default();
        match url::Url::parse(&url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {}
            // The URL may hold a token: never quote it.
            _ => problems.push(format!(
                "{}: required, an http:// or https:// URL",
                key("url")
            )),
        }
        match (kind.secret(), &a.secret_file) {
            (Some(true), None) => {
                problems.push(format!("{}: required for type {kind}", key("secret_file")))
            }
            (None, Some(_)) => problems.push(format!(
                "{}: type {kind} takes no secret_file (its URL is its credential)",
                key("secret_file")
            )),
            (_, Some(p)) if !p.is_absolute() => problems.push(format!(
                "{}: {} must be an absolute path",
                key("secret_file"),
                p.display()
            )),
            _ => {}
        }
        let min_severity = match a.min_severity.as_deref() {
            None | Some("info") => Severity::Info,
            Some("error") => Severity::Error,
            Some(other) => {
                problems.push(format!(
                    "{}: {other:?} must be info or error",
                    key("min_severity")
                ));
                Severity::Info
            }
        };
        let reasons = a.reasons.map(|list| {
            list.iter()
                .filter_map(|r| match Reason::ALL.iter().find(|k| k.as_str() == r) {
                    Some(k) => Some(*k),
                    None => {
                        let all: Vec<&str> = Reason::ALL.iter().map(|k| k.as_str()).collect();
                        problems.push(format!(
                            "{}: {r:?} is not a reason ({})",
                            key("reasons"),
                            all.join(", ")
                        ));
                        None
                    }
                })
                .collect()
        });
        let repeat = match a.repeat.as_deref().map(crate::config::parse_duration) {
            None => None,
            Some(Ok(d)) if d >= MIN_REPEAT => Some(d),
            Some(Ok(_)) => {
                problems.push(format!("{}: must be at least 1m", key("repeat")));
                None
            }
            Some(Err(e)) => {
                problems.push(format!("{}: {e}", key("repeat")));
                None
            }
        };
        out.push(AlertSettings {
            name,
            kind,
            url,
            secret_file: a.secret_file,
            min_severity,
            reasons,
            repeat,
        });
    }
    out
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 63
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}
