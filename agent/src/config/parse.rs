//! The raw serde structs of the config file (unknown keys rejected) and their validation into
//! [`Settings`], collecting every problem, each naming its key.

use super::{
    hostname, normalise_rel_path, parse_duration, valid_agent_id, GitRef, HistorySettings,
    LogFormat, OnFailure, RolloutSettings, Settings, SourceSettings, DEFAULT_CYCLE_TIMEOUT,
    DEFAULT_HISTORY_KEEP, DEFAULT_SOCKET, DEFAULT_STATE_DIR, MAX_INTERVAL, MIN_HISTORY_KEEP,
};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    agent_id: Option<String>,
    source: Option<RawSource>,
    state_dir: Option<PathBuf>,
    socket: Option<PathBuf>,
    docker: Option<RawDocker>,
    log: Option<RawLog>,
    cycle_timeout: Option<String>,
    history: Option<RawHistory>,
    rollout: Option<RawRollout>,
    allow_empty: Option<bool>,
    alerts: Option<Vec<crate::signals::alerts::settings::RawAlert>>,
    alerts_source_grace: Option<String>,
    http: Option<crate::signals::receivers::RawHttp>,
    receivers: Option<Vec<crate::signals::receivers::RawReceiver>>,
    facts: Option<std::collections::BTreeMap<String, serde_yaml::Value>>,
    socket_group: Option<String>,
    secrets: Option<RawSecrets>,
}

/// `secrets:`: how SOPS-encrypted files in the repository are decrypted.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSecrets {
    age_key_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSource {
    url: Option<String>,
    branch: Option<String>,
    tag: Option<String>,
    commit: Option<String>,
    path: Option<String>,
    interval: Option<String>,
    timeout: Option<String>,
    ssh_key: Option<PathBuf>,
    known_hosts: Option<PathBuf>,
    token_file: Option<PathBuf>,
    username: Option<String>,
    verify: Option<crate::source::verify::RawVerify>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDocker {
    host: Option<String>,
    auth_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLog {
    format: Option<String>,
    level: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRollout {
    timeout: Option<String>,
    stable: Option<String>,
    on_failure: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHistory {
    keep: Option<u64>,
}

/// Parse and validate config text; `Err` holds every problem found.
pub fn parse(text: &str) -> Result<Settings, Vec<String>> {
    let raw: RawConfig = if text.trim().is_empty() {
        RawConfig::default()
    } else {
        serde_yaml::from_str(text).map_err(|e| vec![yaml_problem(&e)])?
    };
    let mut problems = Vec::new();

    let agent_id = agent_id_setting(raw.agent_id, &mut problems);
    let source = source_settings(raw.source.unwrap_or_default(), &mut problems);
    let state_dir = raw
        .state_dir
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
    require_absolute("state_dir", &state_dir, &mut problems);
    let socket = raw.socket.unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET));
    require_absolute("socket", &socket, &mut problems);
    let (docker_host, docker_auth_file) =
        docker_settings(raw.docker.unwrap_or_default(), &mut problems);
    let cycle_timeout = duration_key(
        "cycle_timeout",
        raw.cycle_timeout.as_deref(),
        DEFAULT_CYCLE_TIMEOUT,
        &mut problems,
    );
    if cycle_timeout < Duration::from_secs(1) || cycle_timeout > MAX_INTERVAL {
        problems.push("cycle_timeout: must be between 1s and 24h".into());
    }
    let (log_format, log_level) = log_settings(raw.log.unwrap_or_default(), &mut problems);
    let history = history_settings(raw.history.unwrap_or_default(), &mut problems);
    let rollout = rollout_settings(raw.rollout.unwrap_or_default(), &mut problems);
    let alerts =
        crate::signals::alerts::settings::validate(raw.alerts.unwrap_or_default(), &mut problems);
    let alerts_source_grace = duration_key(
        "alerts_source_grace",
        raw.alerts_source_grace.as_deref(),
        crate::signals::alerts::settings::DEFAULT_SOURCE_GRACE,
        &mut problems,
    );
    let (http, receivers) = crate::signals::receivers::settings(
        raw.http,
        raw.receivers.unwrap_or_default(),
        &mut problems,
    );
    let (facts, secret_facts) = facts_settings(raw.facts.unwrap_or_default(), &mut problems);
    if raw.socket_group.as_deref().is_some_and(str::is_empty) {
        problems.push("socket_group: must not be empty".into());
    }
    let age_key_file = raw
        .secrets
        .and_then(|s| s.age_key_file)
        .unwrap_or_else(|| PathBuf::from(crate::render::sops::DEFAULT_AGE_KEY_FILE));
    require_absolute("secrets.age_key_file", &age_key_file, &mut problems);

    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Settings {
        agent_id,
        source,
        state_dir,
        socket,
        docker_host,
        docker_auth_file,
        log_format,
        log_level,
        cycle_timeout,
        history,
        rollout,
        allow_empty: raw.allow_empty.unwrap_or(false),
        alerts,
        alerts_source_grace,
        http,
        receivers,
        facts,
        socket_group: raw.socket_group,
        age_key_file,
        secret_facts,
    })
}

/// `agent_id:`, the hostname when unset; a problem when it is not a valid id.
fn agent_id_setting(raw: Option<String>, problems: &mut Vec<String>) -> String {
    let agent_id = match raw {
        Some(id) => id,
        None => hostname(),
    };
    if !valid_agent_id(&agent_id) {
        problems.push(format!(
            "agent_id: {agent_id:?} must be 1-63 characters of a-z, A-Z, 0-9, '.', '_' or '-'"
        ));
    }
    agent_id
}

/// `source:`: the URL, reference, path, interval, timeout, credentials and verification.
fn source_settings(src: RawSource, problems: &mut Vec<String>) -> SourceSettings {
    let url = match src.url {
        Some(u) if !u.trim().is_empty() => u,
        _ => {
            problems.push("source.url: required".to_string());
            String::new()
        }
    };
    let reference = source_reference(src.branch, src.tag, src.commit, problems);
    let path = match normalise_rel_path(src.path.as_deref().unwrap_or(".")) {
        Ok(p) => p,
        Err(e) => {
            problems.push(format!("source.path: {e}"));
            PathBuf::from(".")
        }
    };
    let interval = duration_key(
        "source.interval",
        src.interval.as_deref(),
        Duration::from_secs(60),
        problems,
    );
    if interval < Duration::from_secs(1) || interval > MAX_INTERVAL {
        problems.push("source.interval: must be between 1s and 24h".into());
    }
    let timeout = duration_key(
        "source.timeout",
        src.timeout.as_deref(),
        Duration::from_secs(30),
        problems,
    );
    if let Some(u) = &src.username {
        if u.is_empty() {
            problems.push("source.username: must not be empty".into());
        }
    }

    let verify = crate::source::verify::settings(src.verify, &reference, problems);
    SourceSettings {
        url,
        reference,
        path,
        interval,
        timeout,
        ssh_key: src.ssh_key,
        known_hosts: src.known_hosts,
        token_file: src.token_file,
        username: src.username,
        verify,
    }
}

/// The one of `source.branch`, `tag` and `commit` that is set (branch `main` when none is), checked to
/// be a valid reference name or commit id.
fn source_reference(
    branch: Option<String>,
    tag: Option<String>,
    commit: Option<String>,
    problems: &mut Vec<String>,
) -> GitRef {
    let refs: Vec<GitRef> = [
        branch.map(GitRef::Branch),
        tag.map(GitRef::Tag),
        commit.map(GitRef::Commit),
    ]
    .into_iter()
    .flatten()
    .collect();
    let reference = match refs.len() {
        0 => GitRef::Branch("main".into()),
        1 => refs.into_iter().next().unwrap(),
        _ => {
            problems.push("source: set only one of branch, tag and commit".into());
            GitRef::Branch("main".into())
        }
    };
    match &reference {
        GitRef::Branch(b) | GitRef::Tag(b)
            if !git2::Reference::is_valid_name(&format!("refs/heads/{b}")) =>
        {
            problems.push(format!(
                "source: {reference}: not a valid Git reference name"
            ));
        }
        GitRef::Commit(c)
            if c.len() < 7 || c.len() > 40 || !c.chars().all(|ch| ch.is_ascii_hexdigit()) =>
        {
            problems.push(format!(
                "source.commit: {c:?} is not a commit id (7 to 40 hex digits)"
            ));
        }
        _ => {}
    }
    reference
}

/// A problem naming `key` when `path` is not absolute.
fn require_absolute(key: &str, path: &std::path::Path, problems: &mut Vec<String>) {
    if !path.is_absolute() {
        problems.push(format!(
            "{key}: {} must be an absolute path",
            path.display()
        ));
    }
}

/// `docker:`: the engine's address and the registry auth file, as `(host, auth_file)`.
fn docker_settings(
    docker: RawDocker,
    problems: &mut Vec<String>,
) -> (Option<String>, Option<PathBuf>) {
    if let Some(f) = &docker.auth_file {
        require_absolute("docker.auth_file", f, problems);
    }
    if let Some(h) = &docker.host {
        if !(h.starts_with("unix://") || h.starts_with("tcp://") || h.starts_with("http://")) {
            problems.push(format!(
                "docker.host: {h:?} must start with unix://, tcp:// or http://"
            ));
        }
    }
    (docker.host, docker.auth_file)
}

/// `log:`: the format (plain or json) and the level.
fn log_settings(log: RawLog, problems: &mut Vec<String>) -> (LogFormat, String) {
    let log_format = match log.format.as_deref() {
        None | Some("plain") => LogFormat::Plain,
        Some("json") => LogFormat::Json,
        Some(other) => {
            problems.push(format!("log.format: {other:?} must be plain or json"));
            LogFormat::Plain
        }
    };
    let log_level = log.level.unwrap_or_else(|| "info".into());
    if !["error", "warn", "info", "debug", "trace"].contains(&log_level.as_str()) {
        problems.push(format!(
            "log.level: {log_level:?} must be error, warn, info, debug or trace"
        ));
    }
    (log_format, log_level)
}

/// `facts:`: scalar values, keys of letters, digits and `_` (see [`crate::render::facts`]).
/// A fact may be `{secret_file: PATH}` (read when the agent starts).
fn facts_settings(
    raw: std::collections::BTreeMap<String, serde_yaml::Value>,
    problems: &mut Vec<String>,
) -> (
    std::collections::BTreeMap<String, String>,
    std::collections::BTreeMap<String, PathBuf>,
) {
    use crate::render::facts::FactValue;
    let mut facts = std::collections::BTreeMap::new();
    let mut secret = std::collections::BTreeMap::new();
    for (key, value) in raw {
        match crate::render::facts::fact_value(&key, &value) {
            Ok(FactValue::Plain(v)) => {
                facts.insert(key, v);
            }
            Ok(FactValue::SecretFile(p)) => {
                secret.insert(key, p);
            }
            Err(e) => problems.push(format!("facts: {e}")),
        }
    }
    let mut all = facts.clone();
    all.extend(secret.keys().map(|k| (k.clone(), String::new())));
    for e in crate::render::facts::validate(&all) {
        problems.push(format!("facts: {e}"));
    }
    (facts, secret)
}

fn rollout_settings(raw: RawRollout, problems: &mut Vec<String>) -> RolloutSettings {
    let defaults = crate::rollout::GateSettings::default();
    let timeout = duration_key(
        "rollout.timeout",
        raw.timeout.as_deref(),
        defaults.timeout,
        problems,
    );
    let stable = duration_key(
        "rollout.stable",
        raw.stable.as_deref(),
        defaults.stable,
        problems,
    );
    if timeout > MAX_INTERVAL {
        problems.push("rollout.timeout: must be at most 24h".into());
    }
    if stable > timeout {
        problems.push("rollout.stable: must not be longer than rollout.timeout".into());
    }
    let on_failure = match raw.on_failure.as_deref() {
        None | Some("rollback") => OnFailure::Rollback,
        Some("keep") => OnFailure::Keep,
        Some(other) => {
            problems.push(format!(
                "rollout.on_failure: {other:?} must be rollback or keep"
            ));
            OnFailure::Rollback
        }
    };
    RolloutSettings {
        gate: crate::rollout::GateSettings { timeout, stable },
        on_failure,
    }
}

fn history_settings(raw: RawHistory, problems: &mut Vec<String>) -> HistorySettings {
    let keep = match raw.keep.map(usize::try_from) {
        None => DEFAULT_HISTORY_KEEP,
        Some(Ok(n)) if n >= MIN_HISTORY_KEEP => n,
        Some(_) => {
            problems.push(format!(
                "history.keep: must be a number of revisions, at least {MIN_HISTORY_KEEP} (rollback needs some history)"
            ));
            DEFAULT_HISTORY_KEEP
        }
    };
    HistorySettings { keep }
}

fn yaml_problem(e: &serde_yaml::Error) -> String {
    // serde_yaml puts "at line L column C" into its message for unknown fields; make the key path lead.
    // A value in the wrong place may be a secret: its text is never quoted.
    let message = crate::render::without_scalars(&strip_location(&e.to_string()));
    match e.location() {
        Some(loc) => format!("line {}: {message}", loc.line()),
        None => message,
    }
}

fn strip_location(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

fn duration_key(
    key: &str,
    value: Option<&str>,
    default: Duration,
    problems: &mut Vec<String>,
) -> Duration {
    match value {
        None => default,
        Some(v) => match parse_duration(v) {
            Ok(d) => d,
            Err(e) => {
                problems.push(format!("{key}: {e}"));
                default
            }
        },
    }
}
