//! Alerts against a real agent and a real HTTP receiver on loopback (an axum router in the test that
//! records every request): one firing and one resolved per incident, signed bodies, filters, delivery
//! after a SIGKILL while the receiver was down, and the outbox bound.

use crate::http_server::HttpServer;
use crate::util::*;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::Router;
use hmac::{Hmac, Mac};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    /// Path and query.
    pub path: String,
    /// Names in lower case.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

type Log = Arc<Mutex<Vec<Received>>>;

/// An HTTP receiver on 127.0.0.1 (an axum router) that answers 200 and records requests.
pub struct Receiver {
    server: HttpServer,
    pub got: Log,
}

impl Receiver {
    pub fn start() -> Receiver {
        Receiver::on(TcpListener::bind("127.0.0.1:0").unwrap())
    }

    /// Listen on `port` (a port reserved earlier, the receiver "coming back").
    pub fn start_on(port: u16) -> Receiver {
        Receiver::on(TcpListener::bind(("127.0.0.1", port)).unwrap())
    }

    fn on(listener: TcpListener) -> Receiver {
        let got = Log::default();
        let router = Router::new().fallback(record).with_state(got.clone());
        Receiver {
            server: HttpServer::start(listener, router),
            got,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.server.port)
    }

    pub fn requests(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// The events received on `path`.
    pub fn events(&self, path: &str) -> Vec<Value> {
        self.requests()
            .iter()
            .filter(|r| r.path == path)
            .map(Received::json)
            .collect()
    }
}

async fn record(State(got): State<Log>, uri: Uri, headers: HeaderMap, body: Bytes) -> StatusCode {
    let path = match uri.path_and_query() {
        Some(p) => p.as_str().to_string(),
        None => uri.path().to_string(),
    };
    let headers = headers
        .iter()
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            (name.as_str().to_string(), value)
        })
        .collect();
    got.lock().unwrap().push(Received {
        path,
        headers,
        body: body.to_vec(),
    });
    StatusCode::OK
}

/// A port nobody listens on now (bound, then released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn compose(mode: &str) -> String {
    format!(
        "services:\n  web:\n    image: {IMAGE}\n    command: {IDLE}\n    environment:\n      MODE: \"{mode}\"\n"
    )
}

const BROKEN: &str = "services:\n  web:\n    image: [unclosed\n";

/// An agent following `repo` with these `alerts:` lines appended to its config (not started).
fn agent_with_alerts(name: &str, repo: &GitRepo, alerts: &str) -> Agent {
    let agent = Agent::new(name, AgentOptions::new(&repo.url()));
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&agent.config)
        .unwrap();
    f.write_all(alerts.as_bytes()).unwrap();
    agent
}

fn count(events: &[Value], reason: &str, state: &str) -> usize {
    events
        .iter()
        .filter(|e| e["reason"] == reason && e["state"] == state)
        .count()
}

fn verify(key: &[u8], body: &[u8], header: &str) -> bool {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(body);
    header == format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A broken commit and five more cycles give one firing alert; the fix gives one resolved; every body
/// is signed; `min_severity: error` gets no notices; a `reasons` list that does not name it gets nothing.
#[test]
fn one_firing_and_one_resolved_per_incident_signed_and_filtered() {
    let rx = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("alert.secret");
    std::fs::write(&key_file, "s3cret-key\n").unwrap();
    let repo = GitRepo::new();
    repo.write("compose.yaml", &compose("1"));
    let c1 = repo.commit_push("good");
    let alerts = format!(
        "alerts:\n  - name: ops\n    type: generic-hmac\n    url: {}\n    secret_file: {}\n  - name: pager\n    type: generic\n    url: {}\n    min_severity: error\n  - name: rollbacks\n    type: generic\n    url: {}\n    reasons: [rolled_back]\n",
        rx.url("/hmac?token=hidden"),
        key_file.display(),
        rx.url("/errors"),
        rx.url("/rollbacks"),
    );
    let mut agent = agent_with_alerts("alerts-once", &repo, &alerts);
    agent.spawn();
    agent.reconcile_ok();
    wait_until(Duration::from_secs(20), "applied notice delivered", || {
        count(&rx.events("/hmac?token=hidden"), "applied", "resolved") == 1
    });

    repo.write("compose.yaml", BROKEN);
    let bad = repo.commit_push("broken");
    for _ in 0..6 {
        assert_eq!(agent.reconcile_wait().status.code(), Some(1));
    }
    wait_until(Duration::from_secs(20), "firing render_failed", || {
        count(&rx.events("/errors"), "render_failed", "firing") >= 1
    });
    repo.write("compose.yaml", &compose("2"));
    let c3 = repo.commit_push("fixed");
    agent.reconcile_ok();
    wait_until(Duration::from_secs(20), "resolved render_failed", || {
        count(&rx.events("/errors"), "render_failed", "resolved") >= 1
            && count(
                &rx.events("/hmac?token=hidden"),
                "render_failed",
                "resolved",
            ) >= 1
    });
    // Nothing more arrives late.
    std::thread::sleep(Duration::from_secs(2));

    let ops = rx.events("/hmac?token=hidden");
    assert_eq!(count(&ops, "render_failed", "firing"), 1, "{ops:#?}");
    assert_eq!(count(&ops, "render_failed", "resolved"), 1, "{ops:#?}");
    assert_eq!(count(&ops, "agent_started", "resolved"), 1, "{ops:#?}");
    assert_eq!(count(&ops, "applied", "resolved"), 2, "{ops:#?}");
    let firing = ops
        .iter()
        .find(|e| e["reason"] == "render_failed" && e["state"] == "firing")
        .unwrap();
    let resolved = ops
        .iter()
        .find(|e| e["reason"] == "render_failed" && e["state"] == "resolved")
        .unwrap();
    assert_eq!(firing["incident"], resolved["incident"]);
    assert_eq!(firing["agent_id"], agent.id.as_str());
    assert_eq!(firing["severity"], "error");
    assert_eq!(firing["commit"], &bad[..12]);
    assert!(firing["message"].as_str().unwrap().contains("compose.yaml"));
    assert!(firing["raised_at"]
        .as_str()
        .unwrap()
        .parse::<jiff::Timestamp>()
        .is_ok());
    for r in rx.requests().iter().filter(|r| r.path.starts_with("/hmac")) {
        let sig = r.headers.get("x-signature").expect("X-Signature");
        assert!(verify(b"s3cret-key", &r.body, sig), "bad signature {sig}");
    }
    let errors = rx.events("/errors");
    assert_eq!(errors.len(), 2, "min_severity error: {errors:#?}");
    assert_eq!(count(&errors, "render_failed", "firing"), 1);
    assert!(rx.events("/rollbacks").is_empty());

    let st = agent.status_json();
    assert_eq!(st["alerts_outbox"], 0, "{st:#}");
    assert_eq!(st["alerts"][0]["name"], "ops");
    assert_eq!(st["alerts"][0]["type"], "generic-hmac");
    let text = stdout(&agent.cli(&["status"]));
    assert!(
        text.contains(
            "alerts:   ops (generic-hmac), pager (generic), rollbacks (generic); outbox: 0 waiting"
        ),
        "{text}"
    );
    assert!(!text.contains("hidden") && !st.to_string().contains("hidden"));
    assert!(!agent.log_text().contains("token=hidden"));
    assert_eq!(str_field(&st, "applied_commit"), Some(c3.as_str()));
    let _ = c1;
}

/// The receiver is down when an incident is raised; the agent is killed (-9) and started again; the
/// receiver comes back: the alert arrives once, with its original `raised_at`.
#[test]
fn an_alert_raised_while_the_receiver_is_down_survives_kill_9() {
    let port = free_port();
    let repo = GitRepo::new();
    repo.write("compose.yaml", &compose("1"));
    repo.commit_push("good");
    let alerts = format!(
        "alerts:\n  - name: ops\n    type: generic\n    url: http://127.0.0.1:{port}/down\n    min_severity: error\n"
    );
    let mut agent = agent_with_alerts("alerts-offline", &repo, &alerts);
    agent.spawn();
    agent.reconcile_ok();
    repo.write("compose.yaml", BROKEN);
    repo.commit_push("broken");
    assert_eq!(agent.reconcile_wait().status.code(), Some(1));
    wait_until(
        Duration::from_secs(20),
        "the incident in the outbox",
        || agent.status_json()["alerts_outbox"].as_u64() == Some(1),
    );
    let killed_at = jiff::Timestamp::now();
    agent.kill9();
    std::thread::sleep(Duration::from_millis(1100));
    agent.spawn();
    let restarted_at = jiff::Timestamp::now();
    assert_eq!(agent.status_json()["alerts_outbox"].as_u64(), Some(1));
    let rx = Receiver::start_on(port);
    wait_until(Duration::from_secs(60), "the alert delivered", || {
        count(&rx.events("/down"), "render_failed", "firing") >= 1
    });
    // Cycles after the restart raise nothing new for the same incident.
    let _ = agent.reconcile_wait();
    std::thread::sleep(Duration::from_secs(2));
    let got = rx.events("/down");
    assert_eq!(got.len(), 1, "{got:#?}");
    let raised: jiff::Timestamp = got[0]["raised_at"].as_str().unwrap().parse().unwrap();
    assert!(
        raised <= killed_at && raised < restarted_at,
        "raised_at {raised}"
    );
    wait_until(Duration::from_secs(10), "outbox empty", || {
        agent.status_json()["alerts_outbox"].as_u64() == Some(0)
    });
}

/// The outbox holds at most 1,000 events: the oldest are dropped, and the next delivered event says how
/// many. (The store is filled before the agent starts; its `agent_started` is the 1,001st.)
#[test]
fn the_outbox_is_bounded_and_reports_what_it_dropped() {
    use berth::signals::alerts::incident::Outgoing;
    use berth::signals::alerts::{Event, Reason, Severity, State};
    let rx = Receiver::start();
    let repo = GitRepo::new();
    repo.write("compose.yaml", &compose("1"));
    repo.commit_push("good");
    let alerts = format!(
        "alerts:\n  - name: ops\n    type: generic\n    url: {}\n    reasons: [apply_failed, agent_started]\n",
        rx.url("/bound")
    );
    let mut agent = agent_with_alerts("alerts-bound", &repo, &alerts);
    {
        let store = berth::store::Store::open(&agent.state_dir.join("store")).unwrap();
        let old: Vec<(u64, Outgoing)> = (1..=1000u64)
            .map(|i| {
                let event = Event {
                    agent_id: agent.id.clone(),
                    severity: Severity::Error,
                    reason: Reason::ApplyFailed,
                    message: format!("old {i}"),
                    commit: None,
                    stack: None,
                    service: None,
                    raised_at: "2026-01-01T00:00:00Z".into(),
                    incident: format!("old-{i}"),
                    state: State::Firing,
                    dropped: 0,
                };
                (
                    i,
                    Outgoing {
                        provider: "ops".into(),
                        event,
                    },
                )
            })
            .collect();
        store.outbox_write::<(), _>(None, &old, &[]).unwrap();
    }
    agent.spawn();
    wait_until(Duration::from_secs(60), "1,000 events delivered", || {
        rx.events("/bound").len() >= 1000
    });
    let got = rx.events("/bound");
    assert_eq!(got.len(), 1000);
    assert_eq!(got[0]["incident"], "old-2", "the oldest was dropped");
    assert_eq!(got[0]["dropped"], 1, "{:#}", got[0]);
    assert!(
        got[1].get("dropped").is_none(),
        "reported once: {:#}",
        got[1]
    );
    let ids: Vec<String> = got[..999]
        .iter()
        .map(|e| e["incident"].as_str().unwrap().to_string())
        .collect();
    let want: Vec<String> = (2..=1000).map(|i| format!("old-{i}")).collect();
    assert_eq!(ids, want, "delivered in order");
    assert_eq!(got[999]["reason"], "agent_started");
}
