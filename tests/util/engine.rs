//! Asking the Docker engine (through the `docker` CLI) what is there: containers by name or by owner
//! label, their state, labels and environment, volumes; `docker exec` into a container.

use super::process::{show, stdout};
use super::AGENT_LABEL;
use std::collections::BTreeMap;
use std::process::{Command, Output, Stdio};

/// Run `docker ARGS` to completion.
pub fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run docker")
}

/// Run `docker ARGS`, panic unless it succeeds; its trimmed stdout.
pub fn docker_ok(args: &[&str]) -> String {
    let o = docker(args);
    assert!(o.status.success(), "docker {args:?}: {}", show(&o));
    stdout(&o).trim().to_string()
}

pub fn inspect(name: &str, format: &str) -> Option<String> {
    let o = docker(&["container", "inspect", "--format", format, name]);
    o.status.success().then(|| stdout(&o).trim().to_string())
}

/// Full id of the container named `name`, if there is one.
pub fn container_id(name: &str) -> Option<String> {
    inspect(name, "{{.Id}}")
}

/// `running`, `exited`, `created`, … of the container named `name`.
pub fn container_state(name: &str) -> Option<String> {
    inspect(name, "{{.State.Status}}")
}

pub fn is_running(name: &str) -> bool {
    container_state(name).as_deref() == Some("running")
}

pub fn container_labels(name: &str) -> BTreeMap<String, String> {
    let json =
        inspect(name, "{{json .Config.Labels}}").unwrap_or_else(|| panic!("no container {name}"));
    serde_json::from_str::<Option<BTreeMap<String, String>>>(&json)
        .unwrap()
        .unwrap_or_default()
}

/// `KEY=VALUE` entries of the container's environment.
pub fn container_env(name: &str) -> Vec<String> {
    let json =
        inspect(name, "{{json .Config.Env}}").unwrap_or_else(|| panic!("no container {name}"));
    serde_json::from_str::<Option<Vec<String>>>(&json)
        .unwrap()
        .unwrap_or_default()
}

/// One container as `docker ps -a` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub id: String,
    pub name: String,
    pub state: String,
}

/// Every container (running or not) whose label `io.berth.agent` is `agent_id`, sorted by name.
pub fn owned_containers(agent_id: &str) -> Vec<Listed> {
    let filter = format!("label={AGENT_LABEL}={agent_id}");
    let out = docker_ok(&[
        "ps",
        "-a",
        "--no-trunc",
        "--filter",
        &filter,
        "--format",
        "{{.ID}}\t{{.Names}}\t{{.State}}",
    ]);
    let mut v: Vec<Listed> = out
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut f = l.split('\t');
            Listed {
                id: f.next().unwrap_or_default().to_string(),
                name: f.next().unwrap_or_default().to_string(),
                state: f.next().unwrap_or_default().to_string(),
            }
        })
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

/// `docker exec NAME sh -c SCRIPT`, panics on failure; trimmed stdout.
pub fn exec(name: &str, script: &str) -> String {
    docker_ok(&["exec", name, "sh", "-c", script])
}

/// `(name, value of label KEY)` of every container owned by `agent_id`, in one `docker ps` call.
pub fn owned_label(agent_id: &str, key: &str) -> Vec<(String, String)> {
    let filter = format!("label={AGENT_LABEL}={agent_id}");
    let format = format!("{{{{.Names}}}}\t{{{{.Label \"{key}\"}}}}");
    let out = docker_ok(&["ps", "-a", "--filter", &filter, "--format", &format]);
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (n, v) = l.split_once('\t').unwrap_or((l, ""));
            (n.to_string(), v.to_string())
        })
        .collect()
}

pub fn volume_exists(name: &str) -> bool {
    docker(&["volume", "inspect", name]).status.success()
}
