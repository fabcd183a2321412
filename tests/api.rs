//! The status socket of the real agent: `berth status` answers at once while a cycle hangs in a fetch,
//! queries are percent-decoded (a bad one answers 400), and the socket never exists with a mode looser
//! than 0660.

use crate::util::*;
use berth::api::client::{call, ClientError};
use berth::api::HistoryEntry;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A Git server on loopback that accepts connections and never answers; stopped when dropped.
struct SilentServer {
    port: u16,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SilentServer {
    fn start() -> SilentServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let (accepted, stop) = (accepted.clone(), stop.clone());
            move || {
                // Held open, never written to.
                let mut open = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            open.push(stream);
                            accepted.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            }
        });
        SilentServer {
            port,
            accepted,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for SilentServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn status_answers_within_100ms_while_a_fetch_hangs() {
    let server = SilentServer::start();
    let mut opts = AgentOptions::new(&format!("http://127.0.0.1:{}/x.git", server.port));
    opts.extra_source = "  timeout: 60s\n".into();
    // Returns once `berth status` answered: the socket is served and the first cycle has begun.
    let agent = Agent::start_with("api-slow-fetch", opts);
    wait_until(
        TIMEOUT,
        "the agent's fetch to reach the silent server",
        || server.accepted.load(Ordering::SeqCst) > 0,
    );
    let mut took = Vec::new();
    for _ in 0..10 {
        let start = Instant::now();
        let o = agent.cli(&["status"]);
        took.push(start.elapsed());
        assert!(o.status.success(), "{}", show(&o));
        assert!(stdout(&o).contains(&agent.id), "{}", show(&o));
    }
    eprintln!("berth status during a hanging fetch: {took:?}");
    // A blocked loop would hold every call for the whole 60 s fetch. The median is the answer time; one
    // slow spawn of the CLI on a loaded test machine (tests run in parallel) is not the agent's.
    took.sort();
    assert!(
        took[took.len() / 2] < Duration::from_millis(100),
        "berth status must answer within 100 ms (median): {took:?}"
    );
    assert!(
        took.iter().all(|t| *t < Duration::from_secs(2)),
        "no call may wait on the hanging fetch: {took:?}"
    );
    // The first cycle is still stuck in its fetch: what was measured ran alongside it.
    let s = agent.status_json();
    assert_eq!(s["cycles"], 0, "{s:#}");
    assert_eq!(s["fetch_count"], 0, "{s:#}");
}

#[test]
fn history_queries_are_percent_decoded_and_bad_ones_answer_400() {
    let repo = GitRepo::new();
    let compose = |mode: &str| {
        format!(
            "services:\n  web:\n    image: {IMAGE}\n    command: {IDLE}\n    environment:\n      MODE: \"{mode}\"\n"
        )
    };
    repo.write("compose.yaml", &compose("1"));
    repo.commit_push("one");
    let agent = Agent::start("api-query", &repo);
    agent.reconcile_ok();
    repo.write("compose.yaml", &compose("2"));
    let second = repo.commit_push("two");
    agent.reconcile_ok();
    let get = |path: &str| call(&agent.socket, "GET", path, Some(Duration::from_secs(30)));
    let history = |path: &str| -> Vec<HistoryEntry> {
        let body = get(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_json::from_slice(&body).unwrap()
    };
    // %31 is "1", %32 is "2".
    let one = history("/v1/history?limit=%31");
    assert_eq!(one.len(), 1, "{one:?}");
    assert_eq!(one[0].commit, second);
    assert_eq!(history("/v1/history?limit=%32").len(), 2);
    for bad in [
        "/v1/history?limit=1x",
        "/v1/history?limit=%2D1",
        "/v1/history?size=1",
    ] {
        match get(bad) {
            Err(ClientError::Agent {
                status: 400,
                message,
            }) => {
                assert!(message.contains("query"), "{bad}: {message}")
            }
            other => panic!("{bad}: expected a 400, got {other:?}"),
        }
    }
    // The CLI's own query still works.
    let o = agent.cli(&["history", "--limit", "1"]);
    assert!(o.status.success(), "{}", show(&o));
    assert!(stdout(&o).contains(&second[..12]), "{}", show(&o));
    assert!(!stdout(&o).contains(" one"), "{}", show(&o));
}

/// A `berth agent` started by the test itself (under a chosen umask); SIGTERM and reaped when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_socket_never_exists_looser_than_0660() {
    use inotify::{EventMask, Inotify, WatchMask};
    let repo = GitRepo::new();
    repo.write("README", "nothing to run\n");
    repo.commit_push("empty");
    let agent = Agent::new("api-socket-mode", AgentOptions::new(&repo.url()));
    let dir = agent.socket.parent().unwrap().to_path_buf();
    let name = agent.socket.file_name().unwrap().to_os_string();
    let mut inotify = Inotify::init().unwrap();
    inotify
        .watches()
        .add(
            &dir,
            WatchMask::CREATE | WatchMask::MOVED_TO | WatchMask::ATTRIB,
        )
        .unwrap();
    // umask 000: a socket bound in place would be srwxrwxrwx until chmod.
    let log = std::fs::File::create(&agent.log).unwrap();
    let child = Command::new("sh")
        .args(["-c", "umask 000 && exec \"$0\" agent --config \"$1\""])
        .arg(berth_bin())
        .arg(&agent.config)
        .env_remove("BERTH_LOG")
        .env_remove("JOURNAL_STREAM")
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let _process = Process(child);
    wait_until(TIMEOUT, "the agent's socket to answer", || {
        agent.cli(&["status", "--json"]).status.success()
    });
    // The umask reached the agent: what it made without an explicit mode (the id's lock file) is
    // world-writable. (state_dir is made 0700 whatever the umask.)
    let lock_file = dir.join(format!("{}.lock", agent.id));
    let lock_mode = std::fs::metadata(&lock_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(lock_mode, 0o666, "the umask did not apply");

    let mut events = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match inotify.read_events(&mut buf) {
            Ok(batch) => {
                let mut any = false;
                for e in batch {
                    any = true;
                    events.push((e.mask, e.name.map(|n| n.to_os_string())));
                }
                if !any {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("reading inotify events: {e}"),
        }
    }
    let on_socket: Vec<EventMask> = events
        .iter()
        .filter(|(_, n)| n.as_deref() == Some(name.as_os_str()))
        .map(|(m, _)| *m)
        .collect();
    // It arrives whole, by rename, already 0660: never created or chmodded at its published path.
    assert_eq!(on_socket, [EventMask::MOVED_TO], "all events: {events:?}");
    let mode = std::fs::symlink_metadata(&agent.socket)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777;
    assert_eq!(mode, 0o660);
    // Besides the socket, only the agent id's lock (lock.rs) lives there.
    let lock = std::ffi::OsString::from(format!("{}.lock", agent.id));
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| *n != lock)
        .collect();
    assert_eq!(
        names,
        [name],
        "nothing but the socket (and the id's lock) is left in its directory"
    );
}
