//! Agent configuration: raw serde structs (unknown keys rejected) → validated [`Settings`], with every
//! error collected and reported at once.

use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_CONFIG: &str = "/etc/berth/config.yaml";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/berth";
pub const DEFAULT_SOCKET: &str = "/run/berth/berth.sock";
/// The longest `source.interval` and `cycle_timeout`.
const MAX_INTERVAL: Duration = Duration::from_secs(24 * 3600);
/// How long one reconcile cycle may take before it is abandoned.
pub const DEFAULT_CYCLE_TIMEOUT: Duration = Duration::from_secs(600);
/// Revisions kept in history by default (`history.keep`), and the fewest a config may ask for.
pub const DEFAULT_HISTORY_KEEP: usize = 200;
pub const MIN_HISTORY_KEEP: usize = 10;
/// A config file larger than this is refused before parsing.
const MAX_CONFIG_BYTES: u64 = 256 * 1024;

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

/// What happens when a new revision fails its health gate (`rollout.on_failure`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    /// Converge the last good revision again and quarantine the commit.
    Rollback,
    /// Leave the new revision running, recorded as failed.
    Keep,
}

/// `rollout:`: the health gate after each apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RolloutSettings {
    pub gate: crate::rollout::GateSettings,
    pub on_failure: OnFailure,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHistory {
    keep: Option<u64>,
}

/// Which commit of the remote the box follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GitRef {
    Branch(String),
    Tag(String),
    /// A full or abbreviated commit id.
    Commit(String),
}

impl std::fmt::Display for GitRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GitRef::Branch(b) => write!(f, "branch {b}"),
            GitRef::Tag(t) => write!(f, "tag {t}"),
            GitRef::Commit(c) => write!(f, "commit {c}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSettings {
    /// `ssh://`, `https://`, `http://`, `file://` or a local path.
    pub url: String,
    pub reference: GitRef,
    /// The followed directory, relative to the repository root, normalised (`.` for the root).
    pub path: PathBuf,
    pub interval: Duration,
    /// Network timeout for one fetch.
    pub timeout: Duration,
    pub ssh_key: Option<PathBuf>,
    pub known_hosts: Option<PathBuf>,
    /// File holding an HTTPS token; read when needed, never logged.
    pub token_file: Option<PathBuf>,
    pub username: Option<String>,
    /// `source.verify`: which signatures a commit needs before it is applied.
    pub verify: crate::source::verify::VerifySettings,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogFormat {
    Plain,
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub agent_id: String,
    pub source: SourceSettings,
    pub state_dir: PathBuf,
    pub socket: PathBuf,
    /// `unix:///var/run/docker.sock` style; `None` = Docker's defaults (`DOCKER_HOST`).
    pub docker_host: Option<String>,
    /// Registry credentials (Docker `config.json` format); `None`: `$DOCKER_CONFIG/config.json`, then
    /// `~/.docker/config.json` when present.
    pub docker_auth_file: Option<PathBuf>,
    pub log_format: LogFormat,
    pub log_level: String,
    /// A cycle still running after this is abandoned, logged and counted (`cycle_timeout`).
    pub cycle_timeout: Duration,
    pub history: HistorySettings,
    pub rollout: RolloutSettings,
    /// A commit that renders no containers may replace one that runs some (`allow_empty`).
    pub allow_empty: bool,
    /// Alert providers (`alerts:`), in config order.
    pub alerts: Vec<crate::signals::alerts::AlertSettings>,
    /// How long the remote may fail before `source_unreachable` fires (`alerts_source_grace`).
    pub alerts_source_grace: Duration,
    /// `http:`: the TCP listener for metrics, health and webhooks; `None`: off.
    pub http: Option<crate::signals::receivers::HttpSettings>,
    /// `receivers:`: webhooks that trigger a fetch (their secrets are read at start).
    pub receivers: Vec<crate::signals::receivers::ReceiverSettings>,
    /// `facts:`: free per-box keys, read by compose files as `${BERTH_FACT_<KEY>}`.
    pub facts: std::collections::BTreeMap<String, String>,
    /// `socket_group`: the group that may use the status socket (a name or a gid); `None`: `berth` when
    /// that group exists, else the agent's own (root).
    pub socket_group: Option<String>,
    /// `secrets.age_key_file`: the box's age identities for SOPS files (default `/etc/berth/age.key`;
    /// it need not exist while no file is encrypted).
    pub age_key_file: PathBuf,
    /// Secret facts (`facts: {KEY: {secret_file: PATH}}`): read by the agent when it starts
    /// ([`Settings::read_secret_facts`]); their values are sealed and digested like the environment's.
    pub secret_facts: std::collections::BTreeMap<String, PathBuf>,
}

impl Settings {
    /// Read every secret fact into `facts`. The error names the fact and file, never the value.
    pub fn read_secret_facts(&mut self) -> Result<(), crate::render::facts::FactError> {
        for (key, path) in &self.secret_facts {
            let value = crate::render::facts::read_secret(key, path)?;
            self.facts.insert(key.clone(), value);
        }
        Ok(())
    }

    /// `facts` as history and status may show them: a secret fact's value is `***`.
    pub fn public_facts(&self) -> std::collections::BTreeMap<String, String> {
        let mut facts = self.facts.clone();
        for key in self.secret_facts.keys() {
            facts.insert(key.clone(), "***".into());
        }
        facts
    }

    /// The interpolation variables whose values are secret: the agent's process environment and the
    /// secret facts.
    pub fn secret_vars(&self) -> std::collections::BTreeSet<String> {
        let mut names = crate::render::secret_values::environment_names();
        names.extend(
            self.secret_facts
                .keys()
                .map(|k| crate::render::facts::variable(k)),
        );
        names
    }
}

/// History retention: how many revisions the store (and the clone's applied refs) keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistorySettings {
    /// The newest revisions kept; the current, last good and pinned revisions and the default rollback
    /// target are kept besides, however old.
    pub keep: usize,
}

/// A bad config: every problem, each naming its key.
#[derive(Debug, thiserror::Error)]
#[error("invalid config {}:\n  {}", path.display(), problems.join("\n  "))]
pub struct ConfigError {
    pub path: PathBuf,
    pub problems: Vec<String>,
}

pub fn load(path: &Path) -> Result<Settings, ConfigError> {
    let err = |p: String| ConfigError {
        path: path.to_path_buf(),
        problems: vec![p],
    };
    let meta = std::fs::metadata(path).map_err(|e| err(format!("cannot read: {e}")))?;
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(err(format!(
            "file is {} bytes, larger than the {MAX_CONFIG_BYTES} allowed",
            meta.len()
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read: {e}")))?;
    parse(&text).map_err(|problems| ConfigError {
        path: path.to_path_buf(),
        problems,
    })
}

/// Parse and validate config text; `Err` holds every problem found.
pub fn parse(text: &str) -> Result<Settings, Vec<String>> {
    let raw: RawConfig = if text.trim().is_empty() {
        RawConfig::default()
    } else {
        serde_yaml::from_str(text).map_err(|e| vec![yaml_problem(&e)])?
    };
    let mut problems = Vec::new();

    let agent_id = match raw.agent_id {
        Some(id) => id,
        None => hostname(),
    };
    if !valid_agent_id(&agent_id) {
        problems.push(format!(
            "agent_id: {agent_id:?} must be 1-63 characters of a-z, A-Z, 0-9, '.', '_' or '-'"
        ));
    }

    let src = raw.source.unwrap_or_default();
    let url = match src.url {
        Some(u) if !u.trim().is_empty() => u,
        _ => {
            problems.push("source.url: required".to_string());
            String::new()
        }
    };
    let refs: Vec<GitRef> = [
        src.branch.map(GitRef::Branch),
        src.tag.map(GitRef::Tag),
        src.commit.map(GitRef::Commit),
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
        &mut problems,
    );
    if interval < Duration::from_secs(1) || interval > MAX_INTERVAL {
        problems.push("source.interval: must be between 1s and 24h".into());
    }
    let timeout = duration_key(
        "source.timeout",
        src.timeout.as_deref(),
        Duration::from_secs(30),
        &mut problems,
    );
    if let Some(u) = &src.username {
        if u.is_empty() {
            problems.push("source.username: must not be empty".into());
        }
    }

    let verify = crate::source::verify::settings(src.verify, &reference, &mut problems);

    let state_dir = raw
        .state_dir
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
    if !state_dir.is_absolute() {
        problems.push(format!(
            "state_dir: {} must be an absolute path",
            state_dir.display()
        ));
    }
    let socket = raw.socket.unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET));
    if !socket.is_absolute() {
        problems.push(format!(
            "socket: {} must be an absolute path",
            socket.display()
        ));
    }
    let docker = raw.docker.unwrap_or_default();
    let docker_host = docker.host;
    let docker_auth_file = docker.auth_file;
    if let Some(f) = &docker_auth_file {
        if !f.is_absolute() {
            problems.push(format!(
                "docker.auth_file: {} must be an absolute path",
                f.display()
            ));
        }
    }
    if let Some(h) = &docker_host {
        if !(h.starts_with("unix://") || h.starts_with("tcp://") || h.starts_with("http://")) {
            problems.push(format!(
                "docker.host: {h:?} must start with unix://, tcp:// or http://"
            ));
        }
    }
    let cycle_timeout = duration_key(
        "cycle_timeout",
        raw.cycle_timeout.as_deref(),
        DEFAULT_CYCLE_TIMEOUT,
        &mut problems,
    );
    if cycle_timeout < Duration::from_secs(1) || cycle_timeout > MAX_INTERVAL {
        problems.push("cycle_timeout: must be between 1s and 24h".into());
    }
    let log = raw.log.unwrap_or_default();
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
    if !age_key_file.is_absolute() {
        problems.push(format!(
            "secrets.age_key_file: {} must be an absolute path",
            age_key_file.display()
        ));
    }

    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Settings {
        agent_id,
        source: SourceSettings {
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
        },
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

/// The longest duration anything in berth takes (an interval, a timeout, a grace period, a pull
/// period): ten years of 365.25 days. Longer is surely a typo, and would overflow the engine's
/// nanosecond counts.
pub const MAX_DURATION: Duration = Duration::from_secs(10 * 31_557_600);

/// A duration that does not parse, or is out of range.
#[derive(Debug, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration")]
    Empty,
    #[error("{text:?} is not a duration like 30s, 5m or 1h30m: {source}")]
    Invalid {
        text: String,
        source: humantime::DurationError,
    },
    #[error("{text:?} is longer than 10 years, the most a duration may be")]
    TooLong { text: String },
}

/// `1h30m`, `5m`, `30s`, `250ms`, `1.5s`, `1h 30m` (humantime's units); a bare number is seconds.
/// Anything over [`MAX_DURATION`] is an error.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let s = text.trim();
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    let too_long = || DurationError::TooLong {
        text: text.to_string(),
    };
    let d = if s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| too_long())?
    } else {
        match humantime::parse_duration(s) {
            Ok(d) => d,
            Err(humantime::DurationError::NumberOverflow) => return Err(too_long()),
            Err(source) => {
                return Err(DurationError::Invalid {
                    text: text.to_string(),
                    source,
                })
            }
        }
    };
    if d > MAX_DURATION {
        return Err(too_long());
    }
    Ok(d)
}

/// A repository-relative path that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelPathError {
    #[error("{path:?} must be relative to the repository root")]
    Absolute { path: String },
    #[error("{path:?} climbs out of the repository")]
    ClimbsOut { path: String },
    #[error("{path:?} is not a plain relative path")]
    NotPlain { path: String },
}

/// Normalise a repository-relative path: no absolute paths, no `..` climbing out.
pub fn normalise_rel_path(p: &str) -> Result<PathBuf, RelPathError> {
    let path = Path::new(p);
    if path.is_absolute() {
        return Err(RelPathError::Absolute { path: p.into() });
    }
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::Normal(n) => out.push(n),
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                if !out.pop() {
                    return Err(RelPathError::ClimbsOut { path: p.into() });
                }
            }
            _ => return Err(RelPathError::NotPlain { path: p.into() }),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    Ok(out)
}

pub fn valid_agent_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 63
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-')
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "berth".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_config_gets_defaults() {
        let s = parse("agent_id: edge-01\nsource:\n  url: file:///srv/fleet.git\n").unwrap();
        assert_eq!(s.agent_id, "edge-01");
        assert_eq!(s.source.reference, GitRef::Branch("main".into()));
        assert_eq!(s.source.path, PathBuf::from("."));
        assert_eq!(s.source.interval, Duration::from_secs(60));
        assert_eq!(s.state_dir, PathBuf::from(DEFAULT_STATE_DIR));
        assert_eq!(s.socket, PathBuf::from(DEFAULT_SOCKET));
        assert_eq!(s.history.keep, DEFAULT_HISTORY_KEEP);
    }

    #[test]
    fn facts_are_scalars_with_plain_keys() {
        let base = "source:\n  url: /srv/fleet.git\n";
        let s = parse(base).unwrap();
        assert!(s.facts.is_empty());
        let s = parse(&format!(
            "{base}facts: {{site: berlin, floor: 3, lab: true}}\n"
        ))
        .unwrap();
        assert_eq!(s.facts["site"], "berlin");
        assert_eq!(s.facts["floor"], "3");
        assert_eq!(s.facts["lab"], "true");
        let errs = parse(&format!(
            "{base}facts: {{site-name: x, list: [a], site: a, SITE: b}}\n"
        ))
        .unwrap_err();
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(errs.iter().all(|e| e.starts_with("facts: ")), "{errs:?}");
        assert!(errs.iter().any(|e| e.contains("site-name")), "{errs:?}");
        assert!(
            errs.iter().any(|e| e.contains("BERTH_FACT_SITE")),
            "{errs:?}"
        );
    }

    #[test]
    fn a_secret_fact_is_read_at_start_and_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("db_key");
        let base = "source:\n  url: /srv/fleet.git\n";
        let mut s = parse(&format!(
            "{base}facts: {{site: berlin, db_key: {{secret_file: {}}}}}\n",
            file.display()
        ))
        .unwrap();
        assert_eq!(s.secret_facts["db_key"], file);
        assert!(
            !s.facts.contains_key("db_key"),
            "not read when the config is"
        );
        assert!(s.secret_vars().contains("BERTH_FACT_DB_KEY"));
        let e = s.read_secret_facts().unwrap_err().to_string();
        assert!(e.contains("db_key") && e.contains("secret_file"), "{e}");
        std::fs::write(&file, "fact-secret-4\n").unwrap();
        s.read_secret_facts().unwrap();
        assert_eq!(s.facts["db_key"], "fact-secret-4");
        assert_eq!(s.public_facts()["db_key"], "***");
        assert_eq!(s.public_facts()["site"], "berlin");
        let errs = parse(&format!("{base}facts: {{k: {{secret_file: rel}}}}\n")).unwrap_err();
        assert!(errs[0].contains("secret_file"), "{errs:?}");
    }

    #[test]
    fn rollout_and_allow_empty() {
        let base = "source:\n  url: /srv/fleet.git\n";
        let s = parse(base).unwrap();
        assert_eq!(s.rollout.gate, crate::rollout::GateSettings::default());
        assert_eq!(s.rollout.on_failure, OnFailure::Rollback);
        assert!(!s.allow_empty);
        let s = parse(&format!(
            "{base}rollout: {{timeout: 30s, stable: 2s, on_failure: keep}}\nallow_empty: true\n"
        ))
        .unwrap();
        assert_eq!(s.rollout.gate.timeout, Duration::from_secs(30));
        assert_eq!(s.rollout.gate.stable, Duration::from_secs(2));
        assert_eq!(s.rollout.on_failure, OnFailure::Keep);
        assert!(s.allow_empty);
        let errs = parse(&format!(
            "{base}rollout: {{timeout: 5s, stable: 10s, on_failure: pray}}\n"
        ))
        .unwrap_err();
        assert!(
            errs.iter().any(|e| e.contains("rollout.stable")),
            "{errs:?}"
        );
        assert!(
            errs.iter().any(|e| e.contains("rollout.on_failure")),
            "{errs:?}"
        );
        assert!(parse(&format!(
            "{base}rollout: {{timeout: 99999999999999999999s}}\n"
        ))
        .is_err());
    }

    #[test]
    fn type_errors_never_quote_the_value() {
        let errs =
            parse("agent_id: a\nsource:\n  url: x\nallow_empty: SECRET-MARK-config\n").unwrap_err();
        let text = errs.join("\n");
        assert!(!text.contains("SECRET-MARK"), "{text}");
        assert!(
            text.contains("line 4") && text.contains("allow_empty"),
            "{text}"
        );
    }

    #[test]
    fn history_keep() {
        let base = "agent_id: a\nsource:\n  url: x\n";
        let keep = |extra: &str| parse(&format!("{base}{extra}")).map(|s| s.history.keep);
        assert_eq!(keep("history: {keep: 20}\n"), Ok(20));
        assert_eq!(keep("history: {keep: 10}\n"), Ok(10));
        assert_eq!(keep("history: {}\n"), Ok(DEFAULT_HISTORY_KEEP));
        assert_eq!(keep("history:\n"), Ok(DEFAULT_HISTORY_KEEP));
        let errs = keep("history: {keep: 9}\n").unwrap_err();
        assert!(
            errs[0].contains("history.keep") && errs[0].contains("at least 10"),
            "{errs:?}"
        );
        // Reported with the other problems, not instead of them.
        let errs = keep("history: {keep: 0}\nstate_dir: rel\n").unwrap_err();
        assert_eq!(errs.len(), 2, "{errs:?}");
        for bad in [
            "history: {keep: -1}\n",
            "history: {keep: lots}\n",
            "history: {kept: 20}\n",
        ] {
            assert!(keep(bad).is_err(), "{bad}");
        }
        let errs = keep("history: {kept: 20}\n").unwrap_err();
        assert!(errs[0].contains("kept"), "{errs:?}");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let errs = parse(
            "agent_id: 'bad id!'\nsource:\n  branch: main\n  tag: v1\n  path: ../up\n  interval: soon\nstate_dir: rel\n",
        )
        .unwrap_err();
        let all = errs.join("\n");
        for key in [
            "agent_id",
            "source.url",
            "source: set only one",
            "source.path",
            "source.interval",
            "state_dir",
        ] {
            assert!(all.contains(key), "missing {key} in {all}");
        }
    }

    #[test]
    fn unknown_key_is_named_with_line() {
        let errs = parse("agent_id: a\nsource:\n  url: x\n  brnach: main\n").unwrap_err();
        assert!(errs[0].contains("brnach"), "{errs:?}");
        assert!(errs[0].contains("line 4"), "{errs:?}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("1h 30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(
            parse_duration(" 2d ").unwrap(),
            Duration::from_secs(2 * 86_400)
        );
        assert!(matches!(
            parse_duration("soon"),
            Err(DurationError::Invalid { .. })
        ));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("-5s").is_err());
        assert!(matches!(parse_duration("  "), Err(DurationError::Empty)));
    }

    #[test]
    fn overflowing_durations_are_errors_not_panics() {
        assert_eq!(parse_duration("10years").unwrap(), MAX_DURATION);
        for text in [
            "99999999999999999999s",
            "99999999999999999999",
            "18446744073709551615",
            "18446744073709551615s",
            "99999999999999999999h",
            "9999999999999h",
            "11years",
            "315576001",
            "5000000000000000000ns 5000000000000000000ns 5000000000000000000ns",
        ] {
            let e = parse_duration(text).unwrap_err();
            assert!(matches!(e, DurationError::TooLong { .. }), "{text}: {e}");
            assert!(e.to_string().contains("10 years"), "{e}");
        }
        // Everything in range fits the engine's nanosecond counts.
        assert!(i64::try_from(MAX_DURATION.as_nanos()).is_ok());
    }

    #[test]
    fn overflowing_interval_in_the_agent_config_is_a_problem() {
        let errs = parse(
            "agent_id: a\nsource:\n  url: file:///x\n  interval: 99999999999999999999s\n  timeout: 99999999999999999999\n",
        )
        .unwrap_err();
        let all = errs.join("\n");
        assert!(
            all.contains("source.interval: \"99999999999999999999s\" is longer than 10 years"),
            "{all}"
        );
        assert!(all.contains("source.timeout:"), "{all}");
    }

    #[test]
    fn relative_paths() {
        assert_eq!(
            normalise_rel_path("a/./b/../c").unwrap(),
            PathBuf::from("a/c")
        );
        assert_eq!(normalise_rel_path("./").unwrap(), PathBuf::from("."));
        assert_eq!(
            normalise_rel_path("/etc").unwrap_err(),
            RelPathError::Absolute {
                path: "/etc".into()
            }
        );
        assert_eq!(
            normalise_rel_path("a/../../b").unwrap_err(),
            RelPathError::ClimbsOut {
                path: "a/../../b".into()
            }
        );
    }

    #[test]
    fn secrets_age_key_file_defaults_and_must_be_absolute() {
        let base = "agent_id: a\nsource:\n  url: x\n";
        let s = parse(base).unwrap();
        assert_eq!(s.age_key_file, PathBuf::from("/etc/berth/age.key"));
        let s = parse(&format!("{base}secrets:\n  age_key_file: /srv/box.key\n")).unwrap();
        assert_eq!(s.age_key_file, PathBuf::from("/srv/box.key"));
        let errs = parse(&format!("{base}secrets:\n  age_key_file: box.key\n")).unwrap_err();
        assert!(
            errs.iter().any(|e| e.starts_with("secrets.age_key_file")),
            "{errs:?}"
        );
        assert!(parse(&format!("{base}secrets:\n  age_key: /x\n")).is_err());
    }
}
