//! The drift watcher: engine events on owned containers (stopped, killed or removed by hand) become
//! `Command::Drift` for the reconcile loop, which converges without fetching. It owns the [`DriftLink`]
//! shared with apply (containers the agent is itself stopping or removing, whose events are not drift)
//! and with the loop (a drift cycle already queued), and the leading-edge debounce of the triggers.

use crate::api::server::Command;
use crate::model::{ActualState, ContainerSpec, NetworkSpec, VolumeSpec};
use crate::runtime::{ContainerState, DockerRuntime, ImageInfo, Owner, Runtime, RuntimeError};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Shortest time between two drift-triggered cycles after the first: the first event of a quiet period
/// starts a cycle at once; whatever follows within this window is answered by one more cycle at its end.
const DRIFT_WINDOW: Duration = Duration::from_millis(300);

/// How long a hand-made `kill` waits for its `die`: the death that follows it is drift (see [`HandKills`]).
const KILL_MEMORY: Duration = Duration::from_secs(60);

/// How long after the agent's own stop or removal of a container returned its late events are still
/// recognised as the agent's (the engine sends them before it answers; the stream may lag a little).
const OWN_GRACE: Duration = Duration::from_secs(5);

/// What apply and the loop share with the drift watcher. Cloning shares it.
#[derive(Debug, Clone, Default)]
pub struct DriftLink {
    own: Arc<Mutex<HashMap<String, OwnChange>>>,
    queued: Arc<AtomicBool>,
    finished: Arc<Mutex<Finished>>,
}

/// Containers the watcher saw exit 0 by themselves (a `die` with no kill before it, by hand or by the
/// agent): a job of a service that [may finish](crate::model::ContainerSpec::may_finish) is done, not
/// started again every cycle. Kept in the store across restarts of the agent.
#[derive(Debug, Default)]
struct Finished {
    ids: BTreeSet<String>,
    /// Changed since the store last got it.
    dirty: bool,
}

/// The agent's own stop/kill/remove of one container.
#[derive(Debug, Default)]
struct OwnChange {
    /// Engine calls on it still running.
    active: u32,
    /// Set when the last call returned: recognised until then.
    until: Option<Instant>,
    /// Its final event (`stop` or `destroy`) was seen while a call still ran.
    finished: bool,
}

/// Marks a container as being stopped or removed by the agent until dropped (and [`OWN_GRACE`] after).
pub struct OwnGuard<'a> {
    link: &'a DriftLink,
    id: String,
}

impl Drop for OwnGuard<'_> {
    fn drop(&mut self) {
        self.link.release(&self.id, Instant::now());
    }
}

impl DriftLink {
    /// The agent is about to stop, kill or remove container `id`: its events are not drift.
    pub fn expect(&self, id: &str) -> OwnGuard<'_> {
        let now = Instant::now();
        let mut own = self.own.lock().unwrap_or_else(|p| p.into_inner());
        own.retain(|_, c| c.active > 0 || c.until.is_some_and(|t| t > now));
        let c = own.entry(id.to_string()).or_default();
        c.active += 1;
        c.until = None;
        c.finished = false;
        OwnGuard {
            link: self,
            id: id.to_string(),
        }
    }

    fn release(&self, id: &str, now: Instant) {
        let mut own = self.own.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = own.get_mut(id) {
            c.active = c.active.saturating_sub(1);
            if c.active == 0 {
                if c.finished {
                    own.remove(id);
                } else {
                    c.until = Some(now + OWN_GRACE);
                }
            }
        }
    }

    /// Whether an event (`action` on container `id`) comes from the agent's own change. Its final event
    /// (`stop`, `destroy`) ends the recognition, so a later hand-made change of the same container counts.
    fn is_own(&self, id: &str, action: &str, now: Instant) -> bool {
        let mut own = self.own.lock().unwrap_or_else(|p| p.into_inner());
        let Some(c) = own.get_mut(id) else {
            return false;
        };
        if c.active == 0 && c.until.is_none_or(|t| t <= now) {
            own.remove(id);
            return false;
        }
        if matches!(action, "stop" | "destroy") {
            if c.active > 0 {
                c.finished = true;
            } else {
                own.remove(id);
            }
        }
        true
    }

    /// Queue one drift cycle unless one is queued already (triggers merge into the queued one).
    fn trigger(&self, commands: &mpsc::Sender<Command>) {
        if self.queued.swap(true, Ordering::SeqCst) {
            tracing::debug!("drift cycle already queued");
            return;
        }
        // A full queue already holds a cycle that will see this; do not leave the flag set for a
        // command that was never queued.
        if commands.try_send(Command::Drift).is_err() {
            self.queued.store(false, Ordering::SeqCst);
        }
    }

    /// Container `id` exited with code 0 by itself.
    fn saw_finish(&self, id: &str) {
        let mut f = self.finished.lock().unwrap_or_else(|p| p.into_inner());
        f.dirty |= f.ids.insert(id.to_string());
    }

    /// A hand-made change to container `id`: whatever it finished before, it is to be repaired now.
    fn saw_hand_change(&self, id: &str) {
        let mut f = self.finished.lock().unwrap_or_else(|p| p.into_inner());
        f.dirty |= f.ids.remove(id);
    }

    /// Mark the exited containers of `actual` that finished by themselves; forget the ids of containers
    /// that are gone.
    pub fn mark_finished(&self, actual: &mut ActualState) {
        let mut f = self.finished.lock().unwrap_or_else(|p| p.into_inner());
        let present: BTreeSet<&str> = actual.containers.iter().map(|c| c.id.as_str()).collect();
        let before = f.ids.len();
        f.ids.retain(|id| present.contains(id.as_str()));
        f.dirty |= f.ids.len() != before;
        for c in &mut actual.containers {
            c.finished = !c.running && f.ids.contains(&c.id);
        }
    }

    /// The finished ids, if they changed since the last call (for the store).
    pub fn finished_changed(&self) -> Option<Vec<String>> {
        let mut f = self.finished.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::take(&mut f.dirty).then(|| f.ids.iter().cloned().collect())
    }

    /// The finished ids the store kept from an earlier run of the agent.
    pub fn restore_finished(&self, ids: Vec<String>) {
        let mut f = self.finished.lock().unwrap_or_else(|p| p.into_inner());
        f.ids = ids.into_iter().collect();
        f.dirty = false;
    }

    /// The loop took the queued drift cycle: the next trigger queues a new one.
    pub fn dequeued(&self) {
        self.queued.store(false, Ordering::SeqCst);
    }

    /// `rt`, with every stop and removal announced to this link first.
    pub fn announce<'a, R: Runtime>(&'a self, rt: &'a R) -> Announced<'a, R> {
        Announced { link: self, rt }
    }
}

/// A [`Runtime`] that marks each container it stops or removes with [`DriftLink::expect`] for the
/// duration of the call, so the agent's own changes never read as drift.
pub struct Announced<'a, R> {
    link: &'a DriftLink,
    rt: &'a R,
}

impl<R: Runtime> Runtime for Announced<'_, R> {
    async fn observe(&self, agent_id: &str) -> Result<ActualState, RuntimeError> {
        self.rt.observe(agent_id).await
    }
    async fn inspect_image(&self, image: &str) -> Result<Option<ImageInfo>, RuntimeError> {
        self.rt.inspect_image(image).await
    }
    async fn pull_image(
        &self,
        image: &str,
        platform: Option<&str>,
        progress: &(dyn Fn(&str) + Sync),
    ) -> Result<(), RuntimeError> {
        self.rt.pull_image(image, platform, progress).await
    }
    async fn create_network(&self, spec: &NetworkSpec, owner: &Owner) -> Result<(), RuntimeError> {
        self.rt.create_network(spec, owner).await
    }
    async fn remove_network(&self, name: &str) -> Result<(), RuntimeError> {
        self.rt.remove_network(name).await
    }
    async fn create_volume(&self, spec: &VolumeSpec, owner: &Owner) -> Result<(), RuntimeError> {
        self.rt.create_volume(spec, owner).await
    }
    async fn create_container(
        &self,
        spec: &ContainerSpec,
        name: &str,
        owner: &Owner,
        replaces: Option<&str>,
    ) -> Result<String, RuntimeError> {
        self.rt.create_container(spec, name, owner, replaces).await
    }
    async fn start_container(&self, id: &str) -> Result<(), RuntimeError> {
        self.rt.start_container(id).await
    }
    async fn stop_container(&self, id: &str, grace: Option<u64>) -> Result<(), RuntimeError> {
        let _own = self.link.expect(id);
        self.rt.stop_container(id, grace).await
    }
    async fn remove_container(&self, id: &str) -> Result<(), RuntimeError> {
        let _own = self.link.expect(id);
        self.rt.remove_container(id).await
    }
    async fn rename_container(&self, id: &str, new_name: &str) -> Result<(), RuntimeError> {
        self.rt.rename_container(id, new_name).await
    }
    async fn container_state(&self, id: &str) -> Result<ContainerState, RuntimeError> {
        self.rt.container_state(id).await
    }
    async fn inventory(&self) -> Result<crate::preflight::Inventory, RuntimeError> {
        self.rt.inventory().await
    }
}

/// Containers killed by hand whose death has not been seen yet. `kill` is sent before the process is
/// dead, so a cycle it starts may still find the container running; its `die` (and only that one: a
/// process exiting by itself is the restart policy's business) starts another.
#[derive(Debug, Default)]
struct HandKills(HashMap<String, Instant>);

impl HandKills {
    /// A hand-made event (`action` on container `id`, not the agent's own) at `now`; true: it is drift.
    fn event(&mut self, id: &str, action: &str, now: Instant) -> bool {
        self.0.retain(|_, t| now.duration_since(*t) < KILL_MEMORY);
        match action {
            "die" => self.0.remove(id).is_some(),
            "kill" => {
                self.0.insert(id.to_string(), now);
                true
            }
            _ => {
                self.0.remove(id);
                true
            }
        }
    }
}

/// Leading-edge debounce: the first event of a quiet period starts a cycle at once and opens a window;
/// events inside the window ask for one more cycle at its end, which opens the next window.
#[derive(Debug)]
struct Debounce {
    window: Duration,
    /// End of the current window.
    until: Option<Instant>,
    /// A cycle is due at the window's end.
    pending: bool,
}

impl Debounce {
    fn new(window: Duration) -> Debounce {
        Debounce {
            window,
            until: None,
            pending: false,
        }
    }

    /// An event at `now`; true: start a cycle now. `kill` is sent before the process is dead, so it
    /// always gets a second look at the window's end.
    fn event(&mut self, now: Instant, kill: bool) -> bool {
        match self.until {
            Some(end) if now < end => {
                self.pending = true;
                false
            }
            _ => {
                self.until = Some(now + self.window);
                self.pending = kill;
                true
            }
        }
    }

    /// When the trailing cycle is due, if one is.
    fn due(&self) -> Option<Instant> {
        self.until.filter(|_| self.pending)
    }

    /// The trailing cycle starts at `now`.
    fn fired(&mut self, now: Instant) {
        self.pending = false;
        self.until = Some(now + self.window);
    }
}

/// Watch the engine's events for owned containers stopped, killed or removed by hand, and ask the loop to
/// converge (leading edge, then at most one more cycle per [`DRIFT_WINDOW`]); events of the agent's own
/// stops and removals (announced through `link`) are ignored. Reconnects with backoff when the event
/// stream ends.
pub async fn watch_drift(
    runtime: DockerRuntime,
    agent_id: String,
    commands: mpsc::Sender<Command>,
    link: DriftLink,
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
        // and reacting to it would turn every crash into a tight restart loop; it counts only after a hand-made
        // `kill` ([`HandKills`]).
        (
            "event".to_string(),
            vec![
                "stop".to_string(),
                "kill".to_string(),
                "die".to_string(),
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
        let mut debounce = Debounce::new(DRIFT_WINDOW);
        let mut kills = HandKills::default();
        loop {
            let wake = debounce
                .due()
                .map(tokio::time::Instant::from_std)
                .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(86_400));
            tokio::select! {
                ev = events.next() => match ev {
                    Some(Ok(ev)) => {
                        backoff = Duration::from_secs(1);
                        let action = ev.action.as_deref().unwrap_or_default();
                        let id = ev.actor.as_ref().and_then(|a| a.id.as_deref()).unwrap_or_default();
                        if link.is_own(id, action, Instant::now()) {
                            tracing::debug!(action, id, "engine event of the agent's own change: ignored");
                            continue;
                        }
                        if !kills.event(id, action, Instant::now()) {
                            // A death no kill caused: the process exited by itself.
                            let code = ev.actor.as_ref().and_then(|a| a.attributes.as_ref()).and_then(|a| a.get("exitCode"));
                            if code.map(String::as_str) == Some("0") {
                                tracing::debug!(id, "exited 0 by itself");
                                link.saw_finish(id);
                            }
                            continue;
                        }
                        link.saw_hand_change(id);
                        tracing::debug!(action, id, "engine event on an owned container");
                        if debounce.event(Instant::now(), action == "kill") {
                            link.trigger(&commands);
                        }
                    }
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "engine event stream ended");
                        break;
                    }
                    None => break,
                },
                _ = tokio::time::sleep_until(wake), if debounce.due().is_some() => {
                    debounce.fired(Instant::now());
                    link.trigger(&commands);
                }
            }
        }
        if debounce.due().is_some() {
            link.trigger(&commands);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(60));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_death_counts_only_after_a_hand_made_kill() {
        let t0 = Instant::now();
        let mut k = HandKills::default();
        assert!(!k.event("a", "die", t0), "a process exiting by itself");
        assert!(k.event("a", "kill", t0));
        assert!(!k.event("b", "die", t0 + ms(10)), "another container");
        assert!(
            k.event("a", "die", t0 + ms(900)),
            "the death the kill caused"
        );
        assert!(!k.event("a", "die", t0 + ms(950)), "once");
        assert!(k.event("a", "kill", t0 + ms(1000)));
        assert!(k.event("a", "destroy", t0 + ms(1100)), "removed by hand");
        assert!(
            !k.event("a", "die", t0 + ms(1200)),
            "the removal ended the wait"
        );
        assert!(k.event("c", "kill", t0));
        assert!(
            !k.event("c", "die", t0 + KILL_MEMORY),
            "too late to be the kill's"
        );
        assert!(k.event("d", "stop", t0));
    }

    #[test]
    fn the_first_event_starts_a_cycle_at_once_and_the_rest_of_the_window_one_more() {
        let t0 = Instant::now();
        let mut d = Debounce::new(ms(500));
        assert!(d.event(t0, false), "leading edge");
        assert_eq!(d.due(), None, "nothing more unless more comes");
        assert!(!d.event(t0 + ms(10), false));
        assert!(!d.event(t0 + ms(300), false));
        assert_eq!(d.due(), Some(t0 + ms(500)), "one trailing cycle at the end");
        d.fired(t0 + ms(500));
        assert_eq!(d.due(), None);
        // Inside the next window: again at most one, at its end.
        assert!(!d.event(t0 + ms(600), false));
        assert_eq!(d.due(), Some(t0 + ms(1000)));
        d.fired(t0 + ms(1000));
        // After a quiet window: leading edge again.
        assert!(d.event(t0 + ms(2000), false));
        assert_eq!(d.due(), None);
    }

    #[test]
    fn a_kill_gets_a_second_look() {
        let t0 = Instant::now();
        let mut d = Debounce::new(ms(500));
        assert!(d.event(t0, true));
        assert_eq!(d.due(), Some(t0 + ms(500)));
    }

    #[test]
    fn the_agents_own_changes_are_not_drift_until_their_final_event() {
        let link = DriftLink::default();
        let now = Instant::now();
        assert!(!link.is_own("a", "kill", now));
        {
            let _g = link.expect("a");
            assert!(link.is_own("a", "kill", Instant::now()));
            assert!(link.is_own("a", "stop", Instant::now()));
            assert!(
                !link.is_own("b", "stop", Instant::now()),
                "another container"
            );
        }
        // Its final event came while the call ran: a later hand-made stop is drift again.
        assert!(!link.is_own("a", "stop", Instant::now()));

        // A late final event (after the call returned) is still the agent's, once.
        let g = link.expect("c");
        drop(g);
        assert!(link.is_own("c", "kill", Instant::now()));
        assert!(link.is_own("c", "destroy", Instant::now()));
        assert!(!link.is_own("c", "destroy", Instant::now()));
    }

    #[test]
    fn own_changes_expire() {
        let link = DriftLink::default();
        drop(link.expect("a"));
        let later = Instant::now() + OWN_GRACE + ms(1);
        assert!(!link.is_own("a", "kill", later));
        assert!(link.own.lock().unwrap().is_empty(), "expired entries go");
        // Entries whose final event never came are dropped on the next mark.
        drop(link.expect("b"));
        link.own.lock().unwrap().get_mut("b").unwrap().until = Some(Instant::now());
        drop(link.expect("c"));
        assert!(!link.own.lock().unwrap().contains_key("b"));
    }

    #[test]
    fn queued_drift_triggers_merge() {
        let link = DriftLink::default();
        let (tx, mut rx) = mpsc::channel(8);
        link.trigger(&tx);
        link.trigger(&tx);
        link.trigger(&tx);
        assert!(matches!(rx.try_recv(), Ok(Command::Drift)));
        assert!(rx.try_recv().is_err(), "one queued at most");
        link.dequeued();
        link.trigger(&tx);
        assert!(matches!(rx.try_recv(), Ok(Command::Drift)));
    }

    #[test]
    fn a_full_queue_does_not_stop_later_triggers() {
        let link = DriftLink::default();
        let (tx, mut rx) = mpsc::channel(1);
        tx.try_send(Command::Resume {
            reply: tokio::sync::oneshot::channel().0,
        })
        .unwrap();
        link.trigger(&tx);
        let _ = rx.try_recv();
        link.trigger(&tx);
        assert!(matches!(rx.try_recv(), Ok(Command::Drift)));
    }
}
