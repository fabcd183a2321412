//! Starting the agent: open its state on the blocking pool (box key, store, clone, pointers, pull times,
//! quarantine, unfinished attempt, suspend flag) and build the [`Agent`] with its first status.

use super::{quarantine_info, signer_of, Agent, Backoff};
use crate::api::server::{Command, Shared};
use crate::api::{SourceInfo, Status};
use crate::apply;
use crate::config::Settings;
use crate::runtime::DockerRuntime;
use crate::signals::metrics::Metrics;
use crate::source::{self, GitSource};
use crate::store::{Attempt, Quarantine, Revision, Store};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// What `Agent::start` reads from disk, on the blocking pool.
struct Opened {
    store: Store,
    source: GitSource,
    pointers: crate::store::Pointers,
    pull_log: crate::images::PullLog,
    finished: Vec<String>,
    current: Option<Revision>,
    quarantine: Option<Quarantine>,
    unfinished: Option<Attempt>,
    suspended: bool,
}

fn open_state(settings: &Settings) -> anyhow::Result<Opened> {
    std::fs::create_dir_all(&settings.state_dir)
        .map_err(|e| anyhow::anyhow!("state_dir {}: {e}", settings.state_dir.display()))?;
    let (key, created) = crate::sealing::BoxKey::load_or_create(&settings.state_dir)?;
    let store = Store::open(&settings.state_dir.join("store"))?.with_key(Arc::new(key));
    let source = GitSource::open(&settings.state_dir, &settings.source)?;
    let pointers = store.pointers()?;
    if created && pointers.current.is_some() {
        tracing::warn!(
            key = %settings.state_dir.join(crate::sealing::KEY_FILE).display(),
            "a new box key was created for a store with history: revisions sealed with the old key cannot be rolled back to"
        );
    }
    let pull_log = store.pull_log().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "cannot read pull times; starting afresh");
        Default::default()
    });
    let finished = store.finished_containers().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "cannot read which containers finished; jobs that did may run again");
        Vec::new()
    });
    let current = match pointers.current {
        Some(seq) => match store.get(seq) {
            Ok(r) => r,
            // Its sealed values cannot be opened (the box key was lost or replaced): as if nothing were
            // applied, so the next cycle applies the followed commit afresh.
            Err(e) if store.get_lenient(seq).is_ok() => {
                tracing::error!(seq, error = %e, "the current revision cannot be opened with this box key; the followed commit will be applied afresh");
                None
            }
            Err(e) => return Err(e.into()),
        },
        None => None,
    };
    // An attempt still recorded at start: the agent died while applying it. Count that death first, so
    // a commit that kills the agent every time is quarantined however often systemd restarts it.
    let unfinished = match store.attempt()? {
        Some(mut a) => {
            a.deaths = a.deaths.saturating_add(1);
            store.record(&crate::store::Record {
                attempt: Some(Some(a.clone())),
                ..Default::default()
            })?;
            tracing::warn!(commit = %a.revision.commit, deaths = a.deaths, "the agent stopped while applying this commit");
            Some(a)
        }
        None => None,
    };
    Ok(Opened {
        quarantine: store.quarantine()?,
        suspended: store.suspended()?,
        store,
        source,
        pointers,
        pull_log,
        finished,
        current,
        unfinished,
    })
}

impl Agent {
    pub async fn start(settings: Settings) -> anyhow::Result<(Agent, mpsc::Receiver<Command>)> {
        let runtime = DockerRuntime::connect(settings.docker_host.as_deref())
            .await?
            .with_auth_file(settings.docker_auth_file.clone());
        let opened = {
            let settings = settings.clone();
            tokio::task::spawn_blocking(move || open_state(&settings)).await??
        };
        let Opened {
            store,
            source,
            pointers,
            pull_log,
            finished,
            current,
            quarantine,
            unfinished,
            suspended,
        } = opened;
        let (tx, rx) = mpsc::channel(64);
        let status = Status {
            agent_id: settings.agent_id.clone(),
            source: SourceInfo {
                url: source::redact(&settings.source.url),
                reference: settings.source.reference.to_string(),
                path: settings.source.path.display().to_string(),
            },
            applied_commit: current.as_ref().map(|r| r.commit.clone()),
            applied_seq: current.as_ref().map(|r| r.seq),
            applied_signer: current.as_ref().and_then(signer_of),
            warnings: current
                .as_ref()
                .map(|r| r.warnings.clone())
                .unwrap_or_default(),
            last_good_seq: pointers.last_good,
            pinned: pointers.pinned.is_some(),
            pinned_seq: pointers.pinned,
            suspended,
            quarantined: quarantine.as_ref().map(quarantine_info),
            ..Default::default()
        };
        let shared = Arc::new(Shared {
            status: Mutex::new(status),
            store: store.clone(),
            runtime: runtime.clone(),
            commands: tx,
            wake: tokio::sync::Notify::new(),
        });
        let metrics = Metrics::new(&settings.agent_id);
        metrics.current(current.as_ref());
        let alerts = crate::signals::alerts::Alerts::start(
            &settings,
            store.clone(),
            shared.clone(),
            metrics.clone(),
        );
        let mut secrets = crate::sensitive::Sensitive::default();
        if let Some(d) = current.as_ref().and_then(|c| c.desired.as_ref()) {
            secrets.extend(&d.sensitive);
        }
        let mut apply_options = apply::ApplyOptions::from_env();
        apply_options.allow_empty = settings.allow_empty;
        apply_options.drift.restore_finished(finished);
        let agent = Agent {
            settings,
            runtime,
            store,
            source: Some(source),
            shared,
            current,
            fetched: None,
            quarantine,
            unfinished,
            suspended,
            backoff: Backoff::default(),
            cycles: 0,
            abandoned: 0,
            checked_out: None,
            pull_log,
            apply_options,
            alerts,
            metrics,
            secrets,
        };
        Ok((agent, rx))
    }
}
