//! The validated settings types ([`Settings`] and its parts) the rest of the agent reads, and the
//! facts and secret facts views of them.

use std::path::PathBuf;
use std::time::Duration;

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
