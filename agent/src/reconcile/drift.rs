//! The drift watcher: engine events on owned containers (stopped, killed or removed by hand) become
//! `Command::Drift` for the reconcile loop, which converges without fetching.

use crate::api::server::Command;
use crate::runtime::DockerRuntime;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Watch the engine's events for owned containers stopped, killed or removed by hand, and ask the loop to converge
/// (at most once per [`DRIFT_DEBOUNCE`]); reconnects with backoff when the event stream ends.
pub async fn watch_drift(
    runtime: DockerRuntime,
    agent_id: String,
    commands: mpsc::Sender<Command>,
) {
    use bollard::query_parameters::EventsOptions;
    use futures_util::StreamExt;
    let filters = std::collections::HashMap::from([
        ("type".to_string(), vec!["container".to_string()]),
        (
            "label".to_string(),
            vec![format!("{}={agent_id}", crate::model::labels::AGENT)],
        ),
        // Hand-made changes only: `die` alone (a process exiting by itself) is the restart policy's business,
        // and reacting to it would turn every crash into a tight restart loop.
        (
            "event".to_string(),
            vec![
                "stop".to_string(),
                "kill".to_string(),
                "destroy".to_string(),
            ],
        ),
    ]);
    let mut backoff = Duration::from_secs(1);
    loop {
        let mut events = runtime.client().events(Some(EventsOptions {
            filters: Some(filters.clone()),
            ..Default::default()
        }));
        // At most one cycle per DRIFT_DEBOUNCE, and never a lost one: an event inside the window (the
        // `destroy` that follows the `kill` of `docker rm -f`) asks for a cycle at the window's end.
        let mut last: Option<Instant> = None;
        let mut pending = false;
        loop {
            let wake = match (pending, last) {
                (true, Some(t)) => tokio::time::Instant::from_std(t + DRIFT_DEBOUNCE),
                _ => tokio::time::Instant::now() + Duration::from_secs(86_400),
            };
            tokio::select! {
                ev = events.next() => match ev {
                    Some(Ok(ev)) => {
                        backoff = Duration::from_secs(1);
                        tracing::debug!(action = ?ev.action, "engine event on an owned container");
                        if last.is_some_and(|t| t.elapsed() < DRIFT_DEBOUNCE) {
                            pending = true;
                            continue;
                        }
                        last = Some(Instant::now());
                        // `kill` is sent before the process is dead: look again at the window's end.
                        pending = ev.action.as_deref() == Some("kill");
                        // A full queue already holds a cycle that will see this.
                        let _ = commands.try_send(Command::Drift);
                    }
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "engine event stream ended");
                        break;
                    }
                    None => break,
                },
                _ = tokio::time::sleep_until(wake), if pending => {
                    last = Some(Instant::now());
                    pending = false;
                    let _ = commands.try_send(Command::Drift);
                }
            }
        }
        if pending {
            let _ = commands.try_send(Command::Drift);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(60));
    }
}

/// Shortest time between two drift-triggered cycles.
const DRIFT_DEBOUNCE: Duration = Duration::from_secs(2);
