//! `berth agent`: load the config, the receivers' secrets, the secret facts, the box key and the age key
//! (checked only), start logging (alert URLs masked like every secret), make state_dir 0700, take the
//! agent id's lock, start the socket (with its group), the HTTP listener (when configured) and the drift
//! watcher, run the reconcile loop.

use super::exit;
use crate::config::Settings;
use crate::reconcile::Agent;
use crate::signals::receivers::Receiver;
use std::path::Path;
use tokio::signal::unix::{signal, SignalKind};

pub fn run(config: &Path, once: bool, err: &mut impl std::io::Write) -> i32 {
    let (settings, receivers, socket_gid) = match load(config, err) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    crate::telemetry::init(&settings.log_format, &settings.log_level);
    mask_config_secrets(&settings);
    // Before the lock file (or anything else) is written into it.
    if let Err(code) = prepare_state_dir(&settings, err) {
        return code;
    }
    // Before anything else (the socket above all: a second agent must not take over the first's), and
    // held until the process ends; the kernel releases it when the process dies however it dies.
    let _lock = match take_lock(&settings, err) {
        Ok(l) => l,
        Err(code) => return code,
    };
    // A key that cannot be read is never worked around (see `crate::sealing`); a missing one is made
    // when the agent opens its state.
    if let Err(e) = crate::sealing::BoxKey::load(&settings.state_dir) {
        tracing::error!(error = %e, "cannot load the box key");
        let _ = writeln!(err, "berth: {e}");
        return exit::CONFIG;
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(4)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = writeln!(err, "berth: cannot start the async runtime: {e}");
            return exit::FAILED;
        }
    };
    let result = rt.block_on(serve_until_stopped(&settings, once, receivers, socket_gid));
    // A git task on the blocking pool may still run (a slow fetch): do not wait for it forever.
    rt.shutdown_timeout(std::time::Duration::from_secs(5));
    let _ = std::fs::remove_file(&settings.socket);
    match result {
        Ok(code) => code,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "agent stopped");
            let _ = writeln!(err, "berth: {e:#}");
            exit::FAILED
        }
    }
}

/// What `run` reads before it starts logging: the settings (with the secret facts), the receivers, the
/// socket's group; the age key is only checked. `Err` is the exit code, the reason written to `err`.
fn load(
    config: &Path,
    err: &mut impl std::io::Write,
) -> Result<(Settings, Vec<Receiver>, Option<u32>), i32> {
    let mut settings = match crate::config::load(config) {
        Ok(s) => s,
        Err(e) => {
            let _ = writeln!(err, "berth: {e}");
            return Err(exit::CONFIG);
        }
    };
    if let Err(e) = settings.read_secret_facts() {
        let _ = writeln!(err, "berth: facts: {e}");
        return Err(exit::CONFIG);
    }
    let receivers = match settings
        .receivers
        .iter()
        .map(Receiver::load)
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(err, "berth: {e}");
            return Err(exit::CONFIG);
        }
    };
    let socket_gid = match crate::api::server::socket_gid(settings.socket_group.as_deref()) {
        Ok(g) => g,
        Err(e) => {
            let _ = writeln!(err, "berth: {e}");
            return Err(exit::CONFIG);
        }
    };
    // A missing age key is fine (no file may be encrypted); an unreadable or bad one is bad config.
    if let Err(e) = crate::render::sops::keys::Identities::load(&settings.age_key_file) {
        let _ = writeln!(err, "berth: secrets.age_key_file: {e}");
        return Err(exit::CONFIG);
    }
    Ok((settings, receivers, socket_gid))
}

/// Make state_dir 0700 (warning when it was open to others). `Err` is the exit code.
fn prepare_state_dir(settings: &Settings, err: &mut impl std::io::Write) -> Result<(), i32> {
    match crate::state_dir::prepare(&settings.state_dir) {
        Ok(None) => Ok(()),
        Ok(Some(was)) => {
            tracing::warn!(
                state_dir = %settings.state_dir.display(),
                was = %format!("{was:04o}"),
                "state_dir was readable by others: tightened to 0700"
            );
            Ok(())
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot prepare state_dir");
            let _ = writeln!(err, "berth: {e}");
            Err(exit::FAILED)
        }
    }
}

/// Take the agent id's lock; a lock another agent holds is explained. `Err` is the exit code.
fn take_lock(settings: &Settings, err: &mut impl std::io::Write) -> Result<crate::lock::Lock, i32> {
    crate::lock::Lock::agent(&settings.agent_id, &settings.state_dir, &settings.socket).map_err(|e| {
        tracing::error!(error = %e, "cannot take the agent's lock");
        let _ = match e {
            crate::lock::LockError::Held { .. } => writeln!(
                err,
                "berth: another agent runs with agent id {} or state_dir {}: {e}; one agent owns an \
                 agent id and a state_dir at a time: stop it first",
                settings.agent_id,
                settings.state_dir.display()
            ),
            crate::lock::LockError::Io { .. } => writeln!(err, "berth: {e}"),
        };
        exit::FAILED
    })
}

/// Start the agent and (unless `once`) its drift watcher, HTTP listener and socket; run the reconcile
/// loop until it ends or a signal stops it. The exit code says whether the last cycle failed.
async fn serve_until_stopped(
    settings: &Settings,
    once: bool,
    receivers: Vec<Receiver>,
    socket_gid: Option<u32>,
) -> anyhow::Result<i32> {
    let (agent, commands) = Agent::start(settings.clone()).await?;
    tracing::info!(
        agent_id = %settings.agent_id,
        url = %crate::source::redact(&settings.source.url),
        reference = %settings.source.reference,
        path = %settings.source.path.display(),
        "berth agent starting"
    );
    if !once {
        start_listeners(&agent, settings, receivers, socket_gid).await;
    }
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let result = tokio::select! {
        r = agent.run(commands, once) => r?,
        _ = term.recv() => None,
        _ = int.recv() => None,
    };
    crate::notify::notify("STOPPING=1");
    tracing::info!("berth agent stopped");
    Ok(match result {
        Some(r) if r.outcome == crate::store::Outcome::Failed => exit::FAILED,
        _ => exit::OK,
    })
}

/// Spawn the drift watcher, the HTTP listener (when configured) and the status socket.
async fn start_listeners(
    agent: &Agent,
    settings: &Settings,
    receivers: Vec<Receiver>,
    socket_gid: Option<u32>,
) {
    let shared = agent.shared();
    tokio::spawn(crate::reconcile::watch_drift(
        shared.runtime.clone(),
        settings.agent_id.clone(),
        shared.commands.clone(),
        agent.drift_link(),
    ));
    if let Some(http) = &settings.http {
        start_http(http.listen, agent, settings, receivers).await;
    }
    let socket = settings.socket.clone();
    tokio::spawn(async move {
        if let Err(e) = crate::api::server::serve(&socket, socket_gid, shared).await {
            tracing::error!(socket = %socket.display(), error = %e, "status socket failed");
        }
    });
}

/// Mask in logs what the config itself holds that may be a credential: alert URLs (Slack, Discord, Teams
/// hooks are their own credential). Secrets read from files are registered by whatever reads them (see
/// [`crate::telemetry::log_secrets`]).
fn mask_config_secrets(settings: &crate::config::Settings) {
    for a in &settings.alerts {
        crate::telemetry::log_secrets().add(&a.url);
    }
}

/// Bind the HTTP listener and serve it in a task of its own. A listener that cannot be bound is logged and
/// left off: the box keeps following Git on its interval.
async fn start_http(
    listen: std::net::SocketAddr,
    agent: &Agent,
    settings: &crate::config::Settings,
    receivers: Vec<crate::signals::receivers::Receiver>,
) {
    use crate::signals::http::{serve, HttpState};
    let state = std::sync::Arc::new(HttpState {
        shared: agent.shared(),
        metrics: agent.metrics(),
        receivers,
        followed: settings.source.reference.clone(),
    });
    match serve(listen, state).await {
        Ok((bound, task)) => {
            tokio::spawn(async move {
                match task.await {
                    Ok(Err(e)) => tracing::error!(error = %e, "http listener failed"),
                    Err(e) => {
                        tracing::error!(listen = %bound, error = %e, "http listener task failed")
                    }
                    Ok(Ok(())) => {}
                }
            });
        }
        Err(e) => tracing::error!(error = %e, "http listener not started"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn alert_urls_are_masked_in_logs() {
        let url = "https://hooks.slack.com/services/T0/B0/agent-rs-test";
        let settings = crate::config::parse(&format!(
            "source:\n  url: /srv/fleet.git\nalerts:\n  - {{name: chat, type: slack, url: '{url}'}}\n"
        ))
        .unwrap();
        let line = format!("posting to {url} failed\n");
        assert_eq!(
            crate::telemetry::log_secrets().redact(line.as_bytes()),
            line.as_bytes()
        );
        super::mask_config_secrets(&settings);
        assert_eq!(
            crate::telemetry::log_secrets().redact(line.as_bytes()),
            b"posting to *** failed\n"
        );
    }
}
