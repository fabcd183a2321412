//! Cleaning up the engine: what berth made for an agent id (by owner label), and containers and volumes a
//! test made itself (by name), removed when their guard is dropped.

use super::engine::{docker, docker_ok};
use super::process::stdout;
use super::{AGENT_LABEL, IMAGE};

/// Remove every container, network and volume labelled `io.berth.agent=<agent_id>`: what berth made for
/// this id and nothing else.
pub fn remove_owned(agent_id: &str) {
    let filter = format!("label={AGENT_LABEL}={agent_id}");
    let ids = |args: &[&str]| -> Vec<String> {
        let o = docker(args);
        stdout(&o)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect()
    };
    let containers = ids(&["ps", "-aq", "--no-trunc", "--filter", &filter]);
    if !containers.is_empty() {
        let mut args = vec!["rm", "-f"];
        args.extend(containers.iter().map(String::as_str));
        docker(&args);
    }
    let networks = ids(&["network", "ls", "-q", "--filter", &filter]);
    for n in &networks {
        docker(&["network", "rm", n]);
    }
    let volumes = ids(&["volume", "ls", "-q", "--filter", &filter]);
    if !volumes.is_empty() {
        let mut args = vec!["volume", "rm", "-f"];
        args.extend(volumes.iter().map(String::as_str));
        docker(&args);
    }
}

/// Removes what berth made for an agent id when dropped (for `berth apply --agent-id`, no process).
pub struct OwnedGuard(pub String);

impl Drop for OwnedGuard {
    fn drop(&mut self) {
        remove_owned(&self.0);
    }
}

/// A container the test made itself (with `docker run`); removed by name when dropped.
pub struct ForeignContainer {
    pub name: String,
}

impl ForeignContainer {
    /// `docker run -d --name NAME [--label L]… IMAGE sleep`: a container berth does not own.
    pub fn run(name: &str, labels: &[&str]) -> ForeignContainer {
        let mut args = vec!["run", "-d", "--name", name];
        for l in labels {
            args.extend(["--label", l]);
        }
        args.extend([IMAGE, "sleep", "3600"]);
        let guard = ForeignContainer {
            name: name.to_string(),
        };
        docker_ok(&args);
        guard
    }
}

impl Drop for ForeignContainer {
    fn drop(&mut self) {
        docker(&["rm", "-f", &self.name]);
    }
}

/// A volume the test made itself; removed when dropped.
pub struct VolumeGuard(pub String);

impl Drop for VolumeGuard {
    fn drop(&mut self) {
        docker(&["volume", "rm", "-f", &self.0]);
    }
}
