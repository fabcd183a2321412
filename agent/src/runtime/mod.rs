//! The narrow runtime interface berth needs from a container engine, and its Docker implementation.
//!
//! Only what the planner's steps need: observe (one owner-filtered list), pull, networks, volumes,
//! create (taking over a replaced container's anonymous volumes)/start/stop/remove/rename. Anything an operator could call "owned" is decided by the owner label,
//! which every method here sets or filters by.

pub mod auth;
pub mod docker;

use crate::model::{ActualState, ContainerSpec, NetworkSpec, VolumeSpec};
use std::future::Future;

pub use docker::DockerRuntime;

/// Who owns what berth creates, and which revision made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub agent_id: String,
    /// Commit id (or `dir` for `berth apply DIR`), written to `io.berth.revision`.
    pub revision: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The engine cannot be reached at all.
    #[error("docker engine unreachable: {0}")]
    Unreachable(String),
    /// An image is missing and could not be pulled.
    #[error("image {image}: {message}")]
    Image { image: String, message: String },
    /// Any other engine refusal, naming the object.
    #[error("{object}: {message}")]
    Engine { object: String, message: String },
}

/// A local image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// `sha256:…`
    pub id: String,
    /// When the image was last tagged locally (a pull tags it), seconds since the epoch.
    pub tagged_at: Option<i64>,
}

/// What dependency waits and the health gate need to know of a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerState {
    pub running: bool,
    /// Engine status word: `created`, `running`, `exited`, ...
    pub status: String,
    /// `starting`, `healthy`, `unhealthy`; `None` without a healthcheck.
    pub health: Option<String>,
    pub exit_code: Option<i64>,
    /// How often the engine restarted it (restart policy).
    pub restart_count: i64,
    /// The output of the last healthcheck run, if any.
    pub health_output: Option<String>,
}

/// Container engine operations. Implementations never touch objects without the caller's owner label,
/// except through names the caller got from [`Runtime::observe`].
pub trait Runtime {
    /// One list call for containers filtered by `io.berth.agent=<agent_id>`, plus owned networks/volumes.
    fn observe(&self, agent_id: &str) -> impl Future<Output = Result<ActualState, RuntimeError>>;
    /// The local image a reference names, if the engine has it.
    fn inspect_image(
        &self,
        image: &str,
    ) -> impl Future<Output = Result<Option<ImageInfo>, RuntimeError>>;
    /// Pull an image (with the registry credentials the runtime was given), reporting progress lines.
    fn pull_image(
        &self,
        image: &str,
        platform: Option<&str>,
        progress: &(dyn Fn(&str) + Sync),
    ) -> impl Future<Output = Result<(), RuntimeError>>;
    fn create_network(
        &self,
        spec: &NetworkSpec,
        owner: &Owner,
    ) -> impl Future<Output = Result<(), RuntimeError>>;
    fn remove_network(&self, name: &str) -> impl Future<Output = Result<(), RuntimeError>>;
    fn create_volume(
        &self,
        spec: &VolumeSpec,
        owner: &Owner,
    ) -> impl Future<Output = Result<(), RuntimeError>>;
    /// Create (not start) a container named `name`, attached to its networks and with its injected files
    /// in place; returns its id. `replaces`: the id of the container it takes over from, whose anonymous
    /// volumes it mounts at the same targets, as Compose does on recreate (`None` for a new container).
    /// Errors name `spec.name`.
    fn create_container(
        &self,
        spec: &ContainerSpec,
        name: &str,
        owner: &Owner,
        replaces: Option<&str>,
    ) -> impl Future<Output = Result<String, RuntimeError>>;
    fn start_container(&self, id: &str) -> impl Future<Output = Result<(), RuntimeError>>;
    /// Stop with the given grace period in seconds (engine default when `None`).
    fn stop_container(
        &self,
        id: &str,
        grace: Option<u64>,
    ) -> impl Future<Output = Result<(), RuntimeError>>;
    /// Remove a container (forcefully, never its volumes).
    fn remove_container(&self, id: &str) -> impl Future<Output = Result<(), RuntimeError>>;
    fn rename_container(
        &self,
        id: &str,
        new_name: &str,
    ) -> impl Future<Output = Result<(), RuntimeError>>;
    /// Every network, volume and container name on the engine with its owner label (for preflight:
    /// listing is not touching).
    fn inventory(&self) -> impl Future<Output = Result<crate::preflight::Inventory, RuntimeError>>;
    /// The state of one container (for `depends_on` conditions).
    fn container_state(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<ContainerState, RuntimeError>>;
}
