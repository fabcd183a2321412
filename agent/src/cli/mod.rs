//! Command-line interface: one file per subcommand. Commands write to a `W: Write` so they can be tested
//! without a terminal; `main.rs` maps their results to exit codes.

pub mod agent;
pub mod apply;
pub mod client;
pub mod diff;
pub mod fleet_diff;
pub mod render;

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Exit codes, one per failure class (systemd's `RestartPreventExitStatus=78` stops a loop on bad config).
pub mod exit {
    pub const OK: i32 = 0;
    /// The operation ran and failed (render errors, a failed apply, an unreachable agent).
    pub const FAILED: i32 = 1;
    /// `berth diff`: something would change.
    pub const CHANGES: i32 = 2;
    /// The command line does not parse (EX_USAGE).
    pub const USAGE: i32 = 64;
    /// Bad config (EX_CONFIG).
    pub const CONFIG: i32 = 78;
}

#[derive(Debug, Parser)]
#[command(
    name = "berth",
    version,
    about = "GitOps agent for edge boxes: follow a Git directory, converge Docker"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent (the systemd service runs this).
    Agent {
        #[arg(long, default_value = crate::config::DEFAULT_CONFIG)]
        config: PathBuf,
        /// Run one reconcile cycle and exit (0 applied, 1 failed).
        #[arg(long)]
        once: bool,
    },
    /// Show what the agent runs: applied commit, last error, managed containers.
    Status {
        #[command(flatten)]
        conn: Conn,
        #[arg(long)]
        json: bool,
    },
    /// Show applied revisions, newest first.
    History {
        #[command(flatten)]
        conn: Conn,
        #[arg(long)]
        json: bool,
        /// Most entries to show.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Run a reconcile cycle now.
    Reconcile {
        #[command(flatten)]
        conn: Conn,
        /// Wait for the cycle to finish; exit 1 if it failed.
        #[arg(long)]
        wait: bool,
        /// Apply the fetched commit even if it is quarantined (after a failed rollout).
        #[arg(long)]
        retry: bool,
    },
    /// Re-apply a stored revision (default: the last good one before the current) and pin the box there.
    Rollback {
        #[command(flatten)]
        conn: Conn,
        /// Sequence number from `berth history`.
        seq: Option<u64>,
    },
    /// Unpin after a rollback, or end a suspend: follow Git again.
    Resume {
        #[command(flatten)]
        conn: Conn,
    },
    /// Stop all reconciling, drift repair included, until `berth resume` (for maintenance by hand).
    Suspend {
        #[command(flatten)]
        conn: Conn,
    },
    /// Render a directory and print the desired state; exit 1 on any error (for a fleet repo's CI). With
    /// `--repo ROOT`: render boxes of a fleet repository as their agents would, one line per box.
    Render(render::fleet::Args),
    /// Render a directory and converge the engine once: no Git, no daemon, no history.
    Apply {
        dir: PathBuf,
        /// Owner of the containers (default: the hostname).
        #[arg(long)]
        agent_id: Option<String>,
        /// The age identity file SOPS-encrypted files are decrypted with (default /etc/berth/age.key).
        #[arg(long, value_name = "FILE")]
        age_key: Option<PathBuf>,
        /// Where a running agent of this id would have its socket: its lock is in the same directory, and
        /// `apply` refuses an id that agent holds.
        #[command(flatten)]
        conn: Conn,
    },
    /// Compare two revisions of a fleet repository: for each box whose desired state changes, what its
    /// agent would create, recreate (naming the fields) or remove; a count at the end (exit 0: no box
    /// changes, 2: some do, 1: a box fails to render at TO). What a pull request's CI posts.
    FleetDiff(fleet_diff::Args),
    /// Show what converging would change, changing nothing (exit 0: nothing to do, 2: something would
    /// change, 1: an error, or an apply that would fail). With DIR: render it as `apply` does and plan it
    /// against the engine; without: ask the agent for the plan of the commit it fetched. With DIR,
    /// `--config` names the agent whose box key (under its `state_dir`) digests secret values.
    Diff {
        #[arg(conflicts_with = "socket")]
        dir: Option<PathBuf>,
        /// With DIR: owner of the containers to compare with (default: the hostname).
        #[arg(long, requires = "dir")]
        agent_id: Option<String>,
        /// With DIR: the age identity file SOPS-encrypted files are decrypted with (default
        /// /etc/berth/age.key).
        #[arg(long, value_name = "FILE", requires = "dir")]
        age_key: Option<PathBuf>,
        #[arg(long)]
        json: bool,
        /// Without DIR: plan the commit the agent fetched last, without asking the remote first.
        #[arg(long, conflicts_with = "dir")]
        no_fetch: bool,
        #[command(flatten)]
        conn: Conn,
    },
}

/// How a client command finds the agent's socket: `--socket`, else the `socket:` of `--config`, else
/// the default config's, else the default path.
#[derive(Debug, Args, Clone)]
pub struct Conn {
    #[arg(long)]
    pub socket: Option<PathBuf>,
    #[arg(long)]
    pub config: Option<PathBuf>,
}

impl Conn {
    pub fn socket_path(&self) -> Result<PathBuf, crate::config::ConfigError> {
        if let Some(s) = &self.socket {
            return Ok(s.clone());
        }
        if let Some(c) = &self.config {
            return crate::config::load(c).map(|s| s.socket);
        }
        let default = std::path::Path::new(crate::config::DEFAULT_CONFIG);
        if default.exists() {
            if let Ok(s) = crate::config::load(default) {
                return Ok(s.socket);
            }
        }
        Ok(PathBuf::from(crate::config::DEFAULT_SOCKET))
    }

    /// The `state_dir` of the agent this connection names (`--config`, else the default config when it
    /// exists, else the default `state_dir`): where its box key is.
    pub fn state_dir(&self) -> Result<PathBuf, crate::config::ConfigError> {
        if let Some(c) = &self.config {
            return crate::config::load(c).map(|s| s.state_dir);
        }
        let default = std::path::Path::new(crate::config::DEFAULT_CONFIG);
        if default.exists() {
            if let Ok(s) = crate::config::load(default) {
                return Ok(s.state_dir);
            }
        }
        Ok(PathBuf::from(crate::config::DEFAULT_STATE_DIR))
    }

    /// Give a directory's desired state the agent's digests of its secret values (the box key under
    /// [`Conn::state_dir`]), so labels and hashes agree with the agent's. `create`: make the key when
    /// there is none (`berth apply`); otherwise a missing key masks values as `***` (`berth diff`).
    /// The key, when one was needed and found.
    pub fn attach_box_key(
        &self,
        desired: &mut crate::model::DesiredState,
        create: bool,
    ) -> anyhow::Result<Option<std::sync::Arc<crate::sealing::BoxKey>>> {
        if desired.sensitive.is_empty() {
            return Ok(None);
        }
        let state_dir = self.state_dir()?;
        let key = if create {
            Some(crate::sealing::BoxKey::load_or_create(&state_dir)?.0)
        } else {
            crate::sealing::BoxKey::load(&state_dir)?
        }
        .map(std::sync::Arc::new);
        crate::sealing::attach_digests(desired, key.as_ref());
        Ok(key)
    }
}

/// Run a parsed command line; returns the exit code.
pub fn run(cli: Cli, out: &mut impl std::io::Write, err: &mut impl std::io::Write) -> i32 {
    let result = match cli.command {
        Command::Agent { config, once } => return agent::run(&config, once, err),
        Command::Status { conn, json } => client::status(&conn, json, out),
        Command::History { conn, json, limit } => client::history(&conn, json, limit, out),
        Command::Reconcile { conn, wait, retry } => client::reconcile(&conn, wait, retry, out),
        Command::Rollback { conn, seq } => client::rollback(&conn, seq, out),
        Command::Resume { conn } => client::resume(&conn, out),
        Command::Suspend { conn } => client::suspend(&conn, out),
        Command::Render(args) => render::run(&args, out, err),
        Command::FleetDiff(args) => fleet_diff::run(&args, out, err),
        Command::Apply {
            dir,
            agent_id,
            age_key,
            conn,
        } => apply::run(&dir, agent_id, age_key.as_deref(), &conn, out, err),
        Command::Diff {
            dir,
            agent_id,
            age_key,
            json,
            no_fetch,
            conn,
        } => diff::run(
            &diff::Target {
                dir,
                agent_id,
                age_key,
                fetch: !no_fetch,
                conn,
            },
            json,
            out,
            err,
        ),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(err, "berth: {e:#}");
            if e.downcast_ref::<crate::config::ConfigError>().is_some() {
                exit::CONFIG
            } else {
                exit::FAILED
            }
        }
    }
}
