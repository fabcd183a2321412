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
        let Some(name) = alert_name(i, a.name, problems) else {
            continue;
        };
        if out.iter().any(|o| o.name == name) {
            problems.push(format!("{}: {name:?} is used twice", key(i, "name")));
        }
        let Some(kind) = provider_kind(i, a.kind.as_deref(), problems) else {
            continue;
        };
        let url = a.url.unwrap_or_default();
        check_url(i, &url, problems);
        check_secret_file(i, kind, a.secret_file.as_deref(), problems);
        let min_severity = min_severity(i, a.min_severity.as_deref(), problems);
        let reasons = a.reasons.map(|list| reasons(i, &list, problems));
        let repeat = repeat(i, a.repeat.as_deref(), problems);
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

/// The key `k` of the `i`th alert, as problems name it: `alerts[i].k`.
fn key(i: usize, k: &str) -> String {
    format!("alerts[{i}].{k}")
}

/// `name`, required and a valid name; `None` (with a problem) skips the entry.
fn alert_name(i: usize, name: Option<String>, problems: &mut Vec<String>) -> Option<String> {
    match name {
        Some(n) if valid_name(&n) => Some(n),
        Some(n) => {
            problems.push(format!(
                "{}: {n:?} must be 1-63 characters of a-z, A-Z, 0-9, '.', '_' or '-'",
                key(i, "name")
            ));
            None
        }
        None => {
            problems.push(format!("{}: required", key(i, "name")));
            None
        }
    }
}

/// `type`, required and one of [`ProviderKind::ALL`]; `None` (with a problem) skips the entry.
fn provider_kind(i: usize, kind: Option<&str>, problems: &mut Vec<String>) -> Option<ProviderKind> {
    match kind {
        Some(t) => match ProviderKind::ALL.iter().find(|k| k.as_str() == t) {
            Some(k) => Some(*k),
            None => {
                let all: Vec<&str> = ProviderKind::ALL.iter().map(|k| k.as_str()).collect();
                problems.push(format!(
                    "{}: {t:?} must be one of {}",
                    key(i, "type"),
                    all.join(", ")
                ));
                None
            }
        },
        None => {
            problems.push(format!("{}: required", key(i, "type")));
            None
        }
    }
}

/// `url`, required, http or https with a host; a problem never quotes it.
fn check_url(i: usize, url: &str, problems: &mut Vec<String>) {
    match url::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {}
        // The URL may hold a token: never quote it.
        _ => problems.push(format!(
            "{}: required, an http:// or https:// URL",
            key(i, "url")
        )),
    }
}

/// `secret_file`: required, optional or refused as the provider's type says; absolute when given.
fn check_secret_file(
    i: usize,
    kind: ProviderKind,
    secret_file: Option<&std::path::Path>,
    problems: &mut Vec<String>,
) {
    match (kind.secret(), secret_file) {
        (Some(true), None) => problems.push(format!(
            "{}: required for type {kind}",
            key(i, "secret_file")
        )),
        (None, Some(_)) => problems.push(format!(
            "{}: type {kind} takes no secret_file (its URL is its credential)",
            key(i, "secret_file")
        )),
        (_, Some(p)) if !p.is_absolute() => problems.push(format!(
            "{}: {} must be an absolute path",
            key(i, "secret_file"),
            p.display()
        )),
        _ => {}
    }
}

/// `min_severity`: info (the default) or error.
fn min_severity(i: usize, value: Option<&str>, problems: &mut Vec<String>) -> Severity {
    match value {
        None | Some("info") => Severity::Info,
        Some("error") => Severity::Error,
        Some(other) => {
            problems.push(format!(
                "{}: {other:?} must be info or error",
                key(i, "min_severity")
            ));
            Severity::Info
        }
    }
}

/// `reasons`: the known reasons of the list, a problem for each unknown one.
fn reasons(i: usize, list: &[String], problems: &mut Vec<String>) -> Vec<Reason> {
    list.iter()
        .filter_map(|r| match Reason::ALL.iter().find(|k| k.as_str() == r) {
            Some(k) => Some(*k),
            None => {
                let all: Vec<&str> = Reason::ALL.iter().map(|k| k.as_str()).collect();
                problems.push(format!(
                    "{}: {r:?} is not a reason ({})",
                    key(i, "reasons"),
                    all.join(", ")
                ));
                None
            }
        })
        .collect()
}

/// `repeat`: a duration of at least [`MIN_REPEAT`], `None` when unset or invalid.
fn repeat(i: usize, value: Option<&str>, problems: &mut Vec<String>) -> Option<Duration> {
    match value.map(crate::config::parse_duration) {
        None => None,
        Some(Ok(d)) if d >= MIN_REPEAT => Some(d),
        Some(Ok(_)) => {
            problems.push(format!("{}: must be at least 1m", key(i, "repeat")));
            None
        }
        Some(Err(e)) => {
            problems.push(format!("{}: {e}", key(i, "repeat")));
            None
        }
    }
}

/// Whether `n` is 1-63 characters of letters, digits, `.`, `_` and `-`.
fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 63
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}
