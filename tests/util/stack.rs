//! A compose stack in a temp directory (`berth apply DIR` / `berth render DIR`, no Git, no agent process).

use super::agent_id;
use super::engine::{owned_containers, Listed};
use super::files::tempdir;
use super::guards::remove_owned;
use super::process::{berth_bin, run_with_deadline, CLI_DEADLINE};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A temp directory `<tmp>/<id>/` holding `compose.yaml`, where `<id>` is a unique agent id
/// ([`agent_id`]): the stack, the agent id it is applied with, and so its containers' names
/// (`<id>-<service>-<n>`) and owner label all carry that id. berth runs with an empty `DOCKER_CONFIG`, so
/// this machine's Docker config plays no part. Everything the id owns on the engine is removed when the
/// stack is dropped (also when the test failed, after printing what it owned).
///
/// Declare it after whatever its containers use (a registry, an image made for the test), so it is dropped
/// first: containers go before what they need.
pub struct Stack {
    _tmp: tempfile::TempDir,
    docker_config: tempfile::TempDir,
    /// The stack directory (`.../<id>`).
    pub path: PathBuf,
    /// Agent id and stack name.
    pub id: String,
}

impl Stack {
    /// A stack named after `agent_id(name)` with `compose` as its `compose.yaml`.
    pub fn new(name: &str, compose: &str) -> Stack {
        let tmp = tempdir("berth-stack-");
        let id = agent_id(name);
        let path = tmp.path().join(&id);
        std::fs::create_dir_all(&path).unwrap();
        let s = Stack {
            _tmp: tmp,
            docker_config: tempdir("berth-dc-"),
            path,
            id,
        };
        s.write(compose);
        s
    }

    /// Replace `compose.yaml`.
    pub fn write(&self, compose: &str) {
        self.write_file("compose.yaml", compose);
    }

    /// Write another file of the stack directory (parents created); its absolute path.
    pub fn write_file(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.path.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }

    /// The stack directory as a command-line argument.
    pub fn arg(&self) -> &str {
        self.path.to_str().expect("temp paths are UTF-8")
    }

    /// The empty `DOCKER_CONFIG` directory berth runs with.
    pub fn docker_config(&self) -> &Path {
        self.docker_config.path()
    }

    /// `<stack>-<service>-1`.
    pub fn container(&self, service: &str) -> String {
        format!("{}-{service}-1", self.id)
    }

    /// Containers the id owns (by label), sorted by name.
    pub fn owned(&self) -> Vec<Listed> {
        owned_containers(&self.id)
    }

    /// `berth apply DIR --agent-id ID` with the empty `DOCKER_CONFIG`, no `BERTH_LOG` or
    /// `BERTH_DEPENDENCY_TIMEOUT` from the test's environment, then `env`; not yet started.
    pub fn apply_cmd(&self, env: &[(&str, &str)]) -> Command {
        let mut c = Command::new(berth_bin());
        c.arg("apply")
            .arg(&self.path)
            .arg("--agent-id")
            .arg(&self.id)
            .env("DOCKER_CONFIG", self.docker_config.path())
            .env_remove("BERTH_DEPENDENCY_TIMEOUT")
            .env_remove("BERTH_LOG");
        for (k, v) in env {
            c.env(k, v);
        }
        c
    }

    /// Run `berth apply` to completion (killed, failing the test, after [`CLI_DEADLINE`]).
    pub fn apply(&self) -> Output {
        self.apply_env(&[])
    }

    /// [`Stack::apply`] with more environment variables.
    pub fn apply_env(&self, env: &[(&str, &str)]) -> Output {
        run_with_deadline(&mut self.apply_cmd(env), CLI_DEADLINE)
    }

    /// [`Stack::apply`] with `DOCKER_CONFIG=docker_config` instead of the empty one (registry
    /// credentials).
    pub fn apply_with_docker_config(&self, docker_config: &Path) -> Output {
        run_with_deadline(
            self.apply_cmd(&[]).env("DOCKER_CONFIG", docker_config),
            CLI_DEADLINE,
        )
    }

    /// `berth render ARGS DIR` (e.g. `&["--json"]`), with the same environment as [`Stack::apply`].
    pub fn render(&self, args: &[&str]) -> Output {
        run_with_deadline(
            Command::new(berth_bin())
                .arg("render")
                .args(args)
                .arg(&self.path)
                .env("DOCKER_CONFIG", self.docker_config.path())
                .env_remove("BERTH_LOG"),
            CLI_DEADLINE,
        )
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "===== containers of {} =====\n{:#?}",
                self.id,
                owned_containers(&self.id)
            );
        }
        remove_owned(&self.id);
    }
}
