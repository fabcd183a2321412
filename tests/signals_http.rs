//! The HTTP listener against a real agent and the real engine, over loopback: signed webhooks of each
//! receiver type trigger a fetch at once (interval 1h), bad signatures, other refs, pings and big bodies
//! trigger nothing, bursts coalesce, `/metrics` parses as Prometheus text with every metric carrying
//! `agent_id`, and `/healthz` answers.

use crate::util::*;
use hmac::{Hmac, Mac};
use std::time::{Duration, Instant};

const SECRET: &str = "webhook-secret-never-logged";

fn compose(value: &str) -> String {
    format!(
        "services:\n  app:\n    image: {IMAGE}\n    command: {IDLE}\n    environment:\n      V: \"{value}\"\n"
    )
}

/// An agent with `http.listen` on a free loopback port and the given `receivers:` lines; secret files
/// (holding [`SECRET`] and a newline) live in `secrets`.
struct Edge {
    agent: Agent,
    base: String,
    _secrets: tempfile::TempDir,
    http: ureq::Agent,
}

impl Edge {
    fn start(name: &str, repo: &GitRepo, receivers: &[(&str, &str)]) -> Edge {
        Edge::start_with(name, AgentOptions::new(&repo.url()), receivers)
    }

    fn start_with(name: &str, opts: AgentOptions, receivers: &[(&str, &str)]) -> Edge {
        let secrets = tempfile::tempdir().unwrap();
        let secret_file = secrets.path().join("webhook.secret");
        std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
        let mut agent = Agent::new(name, opts);
        let mut extra = String::from("http:\n  listen: 127.0.0.1:0\nreceivers:\n");
        for (name, kind) in receivers {
            extra.push_str(&format!("  - name: {name}\n    type: {kind}\n"));
            if *kind != "generic" {
                extra.push_str(&format!("    secret_file: {}\n", secret_file.display()));
            }
        }
        let mut config = std::fs::read_to_string(&agent.config).unwrap();
        config.push_str(&extra);
        std::fs::write(&agent.config, config).unwrap();
        agent.spawn();
        let listen = wait_for(TIMEOUT, "the listener in status", || {
            agent.status_json()["http"]["listen"]
                .as_str()
                .map(str::to_string)
        });
        let http = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        Edge {
            agent,
            base: format!("http://{listen}"),
            _secrets: secrets,
            http,
        }
    }

    fn post(&self, receiver: &str, headers: &[(&str, String)], body: &[u8]) -> u16 {
        let mut req = self.http.post(format!("{}/hooks/{receiver}", self.base));
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        req.send(body).expect("webhook request").status().as_u16()
    }

    fn get(&self, path: &str) -> (u16, String) {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .call()
            .expect("GET");
        let code = resp.status().as_u16();
        (code, resp.into_body().read_to_string().expect("body"))
    }

    fn applied(&self) -> Option<String> {
        str_field(&self.agent.status_json(), "applied_commit").map(str::to_string)
    }

    fn cycles(&self) -> u64 {
        self.agent.status_json()["cycles"].as_u64().unwrap_or(0)
    }

    fn metrics(&self) -> prometheus_parse::Scrape {
        let (code, text) = self.get("/metrics");
        assert_eq!(code, 200, "{text}");
        parse_metrics(&text)
    }

    /// Wait until no cycle is running or queued: the cycle count holds still for a second.
    fn settle(&self) -> u64 {
        let mut last = self.cycles();
        let mut since = Instant::now();
        wait_until(TIMEOUT, "the agent to settle", || {
            let now = self.cycles();
            if now != last {
                last = now;
                since = Instant::now();
            }
            since.elapsed() > Duration::from_secs(1)
        });
        last
    }
}

fn hmac_hex(body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fn push_body(reference: &str) -> Vec<u8> {
    serde_json::json!({"ref": reference, "after": "0".repeat(40)})
        .to_string()
        .into_bytes()
}

/// The headers a receiver type sends for `body`: signed right, or signed with another secret.
fn signed(kind: &str, body: &[u8], right: bool) -> Vec<(&'static str, String)> {
    let sig = if right {
        hmac_hex(body)
    } else {
        hmac_hex(b"another body")
    };
    match kind {
        "github" => vec![
            ("X-GitHub-Event", "push".into()),
            ("X-Hub-Signature-256", format!("sha256={sig}")),
        ],
        "gitea" => vec![("X-Gitea-Event", "push".into()), ("X-Gitea-Signature", sig)],
        "generic-hmac" => vec![("X-Signature", format!("sha256={sig}"))],
        "gitlab" => vec![
            ("X-Gitlab-Event", "Push Hook".into()),
            (
                "X-Gitlab-Token",
                if right { SECRET.into() } else { "guess".into() },
            ),
        ],
        _ => vec![],
    }
}

/// Parse the exposition with a Prometheus text parser; every line must be one it understands.
fn parse_metrics(text: &str) -> prometheus_parse::Scrape {
    use prometheus_parse::LineInfo;
    for line in text.lines() {
        // OpenMetrics' end marker and unit lines are comments to the Prometheus text format.
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        assert!(
            !matches!(LineInfo::parse(line), LineInfo::Ignored),
            "a line the parser does not understand: {line:?}\n{text}"
        );
    }
    let lines = text.lines().map(|l| Ok(l.to_string()));
    prometheus_parse::Scrape::parse(lines).expect("Prometheus text")
}

fn sample<'a>(
    scrape: &'a prometheus_parse::Scrape,
    metric: &str,
    labels: &[(&str, &str)],
) -> Option<&'a prometheus_parse::Sample> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
}

fn value(s: &prometheus_parse::Sample) -> f64 {
    match &s.value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => *v,
        other => panic!("not a single value: {other:?}"),
    }
}

fn webhooks(b: &Edge, receiver: &str, result: &str) -> f64 {
    let scrape = b.metrics();
    sample(
        &scrape,
        "berth_webhooks_total",
        &[("receiver", receiver), ("result", result)],
    )
    .map(value)
    .unwrap_or_else(|| panic!("no webhooks series for {receiver}/{result}"))
}

/// With interval 1h, a signed GitHub push is applied within 2 s; a bad signature gets 401 and is not
/// applied (nor fetched); a push to another branch and a ping answer 200 and apply nothing.
#[test]
fn a_signed_github_push_is_applied_at_once_and_a_bad_one_is_not() {
    let repo = GitRepo::new();
    repo.write("compose.yaml", &compose("1"));
    let first = repo.commit_push("one");
    let b = Edge::start("hook-github", &repo, &[("gh", "github")]);
    wait_until(TIMEOUT, "the first commit applied", || {
        b.applied().as_deref() == Some(first.as_str())
    });
    b.settle();

    repo.write("compose.yaml", &compose("2"));
    let second = repo.commit_push("two");
    let body = push_body("refs/heads/main");
    let sent = Instant::now();
    assert_eq!(b.post("gh", &signed("github", &body, true), &body), 202);
    wait_until(
        Duration::from_secs(2),
        "the push applied within 2 s",
        || b.applied().as_deref() == Some(second.as_str()),
    );
    eprintln!("push applied {:?} after the webhook", sent.elapsed());
    assert!(container_env(&b.agent.container("app")).contains(&"V=2".to_string()));
    b.settle();

    repo.write("compose.yaml", &compose("3"));
    let third = repo.commit_push("three");
    let cycles = b.cycles();
    assert_eq!(b.post("gh", &signed("github", &body, false), &body), 401);
    assert_eq!(
        b.post("gh", &[("X-GitHub-Event", "push".into())], &body),
        401
    );
    let dev = push_body("refs/heads/dev");
    assert_eq!(b.post("gh", &signed("github", &dev, true), &dev), 200);
    let ping = br#"{"zen":"Design for failure.","hook_id":1}"#;
    let mut ping_headers = signed("github", ping, true);
    ping_headers[0].1 = "ping".into();
    assert_eq!(b.post("gh", &ping_headers, ping), 200);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(b.cycles(), cycles, "no cycle ran");
    let st = b.agent.status_json();
    assert_ne!(
        str_field(&st, "fetched_commit"),
        Some(third.as_str()),
        "{st:#}"
    );
    assert_eq!(b.applied().as_deref(), Some(second.as_str()));

    assert_eq!(webhooks(&b, "gh", "triggered"), 1.0);
    assert_eq!(webhooks(&b, "gh", "unauthorized"), 2.0);
    assert_eq!(webhooks(&b, "gh", "ignored"), 2.0);
    let log = b.agent.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("bad or missing signature") && l.contains("127.0.0.1")),
        "the 401 is logged with the peer address:\n{log}"
    );
    assert!(!log.contains(SECRET), "the secret is never logged");

    let o = b.agent.cli(&["status"]);
    let text = stdout(&o);
    assert!(text.contains(&b.base["http://".len()..]), "{text}");
    assert!(text.contains("gh (github)"), "{text}");
    assert!(!text.contains(SECRET), "{text}");
    let raw = serde_json::to_string(&b.agent.status_json()).unwrap();
    assert!(
        !raw.contains(SECRET) && !raw.contains("webhook.secret"),
        "{raw}"
    );
}

/// Every receiver type: a wrong signature (or token) gets 401 and triggers nothing; the right one
/// triggers a cycle. A body over 1 MiB gets 413.
#[test]
fn each_receiver_type_checks_its_signature() {
    let repo = GitRepo::new();
    repo.write("compose.yaml", &compose("1"));
    let first = repo.commit_push("one");
    let kinds = ["github", "gitlab", "gitea", "generic-hmac", "generic"];
    let receivers: Vec<(String, &str)> = kinds.iter().map(|k| (format!("r-{k}"), *k)).collect();
    let named: Vec<(&str, &str)> = receivers.iter().map(|(n, k)| (n.as_str(), *k)).collect();
    let b = Edge::start("hook-types", &repo, &named);
    wait_until(TIMEOUT, "the first commit applied", || {
        b.applied().as_deref() == Some(first.as_str())
    });
    let before = b.settle();
    let body = push_body("refs/heads/main");
    for (name, kind) in &named {
        if *kind == "generic" {
            continue;
        }
        assert_eq!(
            b.post(name, &signed(kind, &body, false), &body),
            401,
            "{kind}"
        );
        assert_eq!(b.post(name, &[], &body), 401, "{kind} unsigned");
    }
    let big = vec![b'{'; 1024 * 1024 + 1];
    assert_eq!(b.post("r-generic", &[], &big), 413);
    assert_eq!(b.post("r-github", &signed("github", &big, true), &big), 413);
    assert_eq!(b.post("nobody", &[], &body), 404);
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(b.cycles(), before, "nothing triggered a cycle");

    for (name, kind) in &named {
        let cycles = b.cycles();
        assert_eq!(
            b.post(name, &signed(kind, &body, true), &body),
            202,
            "{kind}"
        );
        wait_until(
            Duration::from_secs(10),
            &format!("a cycle for {kind}"),
            || b.cycles() > cycles,
        );
        b.settle();
        assert_eq!(webhooks(&b, name, "triggered"), 1.0, "{kind}");
    }
    assert_eq!(webhooks(&b, "r-github", "too_large"), 1.0);
}

/// A burst of signed pushes queues at most one cycle behind the one running: once the last push is
/// answered, at most two more cycles (and asks of the remote) happen, however many pushes were queued.
#[test]
fn a_burst_of_pushes_coalesces() {
    let repo = GitRepo::new();
    repo.write("compose.yaml", &compose("1"));
    let first = repo.commit_push("one");
    let b = Edge::start("hook-burst", &repo, &[("gh", "github")]);
    wait_until(TIMEOUT, "the first commit applied", || {
        b.applied().as_deref() == Some(first.as_str())
    });
    let before = b.settle();
    let checks = |a: &Agent| a.log_text().matches("checking the remote").count();
    let body = push_body("refs/heads/main");
    let headers = signed("github", &body, true);
    let codes: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..40)
            .map(|_| s.spawn(|| b.post("gh", &headers, &body)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let (cycles_at_end, checks_at_end) = (b.cycles(), checks(&b.agent));
    assert!(codes.iter().all(|c| *c == 202), "{codes:?}");
    let after = b.settle();
    eprintln!(
        "40 pushes: {} cycles in all, {} after the last answer",
        after - before,
        after - cycles_at_end
    );
    assert!(after > before, "the pushes ran a cycle");
    assert!(
        after - cycles_at_end <= 2,
        "{} cycles ran after the burst: more than one running and one queued",
        after - cycles_at_end
    );
    let fetched = checks(&b.agent) - checks_at_end;
    assert!(
        fetched <= 2,
        "the remote was asked {fetched} times after the burst"
    );
}

/// `/metrics` parses as Prometheus text and holds every metric, each series with `agent_id`;
/// `/healthz` answers.
#[test]
fn metrics_parse_and_name_the_agent() {
    let repo = GitRepo::new();
    repo.write("compose.yaml", &compose("1"));
    repo.commit_push("one");
    // An alert provider, so its delivery series exist; it only wants rollbacks, so nothing is queued.
    let mut opts = AgentOptions::new(&repo.url());
    opts.rollout.push_str(
        "alerts:\n  - name: ops\n    type: generic\n    url: http://127.0.0.1:9/\n    min_severity: error\n    reasons: [rolled_back]\n",
    );
    let b = Edge::start_with("metrics", opts, &[("gh", "github")]);
    repo.write("compose.yaml", &compose("2"));
    let second = repo.commit_push("two");
    b.agent.reconcile_ok();
    let o = b.agent.cli(&["rollback"]);
    assert!(o.status.success(), "{}", show(&o));
    let st = b.agent.status_json();
    let applied = str_field(&st, "applied_commit").unwrap().to_string();
    assert_ne!(applied, second, "rolled back");
    let seq = st["applied_seq"].as_u64().unwrap().to_string();

    let (code, body) = b.get("/healthz");
    assert_eq!((code, body.trim()), (200, "ok"));

    let scrape = b.metrics();
    let id = b.agent.id.as_str();
    for s in &scrape.samples {
        assert_eq!(s.labels.get("agent_id"), Some(id), "{s:?}");
    }
    let has = |metric: &str, labels: &[(&str, &str)]| {
        sample(&scrape, metric, labels)
            .map(value)
            .unwrap_or_else(|| panic!("{metric} {labels:?} missing: {:#?}", scrape.samples))
    };
    assert!(has("berth_cycles_total", &[("result", "applied")]) >= 3.0);
    assert!(has("berth_fetch_total", &[("result", "ok")]) >= 2.0);
    assert_eq!(has("berth_source_up", &[]), 1.0);
    assert_eq!(
        has(
            "berth_revision_info",
            &[("commit", &applied), ("seq", &seq)]
        ),
        1.0
    );
    assert!(has("berth_last_applied_timestamp_seconds", &[]) > 1.6e9);
    assert_eq!(has("berth_rollbacks_total", &[("kind", "manual")]), 1.0);
    assert_eq!(has("berth_rollbacks_total", &[("kind", "auto")]), 0.0);
    assert_eq!(has("berth_drift_corrections_total", &[]), 0.0);
    assert_eq!(
        has("berth_containers", &[("stack", id), ("state", "running")]),
        1.0
    );
    assert_eq!(has("berth_alerts_outbox", &[]), 0.0);
    assert_eq!(
        has(
            "berth_webhooks_total",
            &[("receiver", "gh"), ("result", "triggered")]
        ),
        0.0
    );
    let histogram = scrape
        .samples
        .iter()
        .find(|s| s.metric == "berth_cycle_duration_seconds")
        .expect("the cycle duration histogram");
    assert!(matches!(
        histogram.value,
        prometheus_parse::Value::Histogram(_)
    ));
    for result in ["ok", "failed"] {
        assert_eq!(
            has(
                "berth_alerts_sent_total",
                &[("provider", "ops"), ("result", result)]
            ),
            0.0
        );
    }

    // Drift: a container removed behind the agent's back is put back by a drift cycle, and counted.
    docker_ok(&["rm", "-f", &b.agent.container("app")]);
    wait_until(TIMEOUT, "a drift correction counted", || {
        let scrape = b.metrics();
        // The removal's events may come in more than one batch: one cycle or more.
        sample(&scrape, "berth_drift_corrections_total", &[])
            .map(value)
            .is_some_and(|v| v >= 1.0)
    });
    wait_until(TIMEOUT, "the removed container back", || {
        is_running(&b.agent.container("app"))
    });
}

/// A receiver without a signature is refused on a listener other than loopback (exit 78, EX_CONFIG).
#[test]
fn a_generic_receiver_off_loopback_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "agent_id: t-generic-open\nsource:\n  url: file:///nonexistent\nstate_dir: {}\nsocket: {}\nhttp:\n  listen: 0.0.0.0:0\nreceivers:\n  - name: open\n    type: generic\n",
            dir.path().join("state").display(),
            dir.path().join("s.sock").display()
        ),
    )
    .unwrap();
    let o = run_with_deadline(
        std::process::Command::new(berth_bin())
            .args(["agent", "--config"])
            .arg(&config),
        Duration::from_secs(30),
    );
    assert_eq!(o.status.code(), Some(78), "{}", show(&o));
    assert!(stderr(&o).contains("receivers[0].type"), "{}", show(&o));
}

/// A rollout that fails its health gate and is rolled back counts as an automatic rollback, and its
/// cycle as failed.
#[test]
fn an_automatic_rollback_is_counted() {
    let repo = GitRepo::new();
    repo.write("compose.yaml", &compose("1"));
    let good = repo.commit_push("good");
    let mut opts = AgentOptions::new(&repo.url());
    opts.rollout = "rollout:\n  stable: 1s\n  timeout: 20s\n".into();
    let b = Edge::start_with("metrics-auto", opts, &[]);
    wait_until(TIMEOUT, "the good commit applied", || {
        b.applied().as_deref() == Some(good.as_str())
    });
    repo.write(
        "compose.yaml",
        &format!(
            "services:\n  app:\n    image: {IMAGE}\n    command: [\"sh\", \"-c\", \"exit 3\"]\n    restart: always\n"
        ),
    );
    repo.commit_push("bad");
    let o = b.agent.reconcile_wait();
    assert!(!o.status.success(), "{}", show(&o));
    let scrape = b.metrics();
    let get = |metric: &str, labels: &[(&str, &str)]| sample(&scrape, metric, labels).map(value);
    assert_eq!(get("berth_rollbacks_total", &[("kind", "auto")]), Some(1.0));
    assert_eq!(
        get("berth_rollbacks_total", &[("kind", "manual")]),
        Some(0.0)
    );
    assert!(get("berth_cycles_total", &[("result", "failed")]) >= Some(1.0));
    assert_eq!(
        get("berth_revision_info", &[("commit", &good)]),
        Some(1.0),
        "the good revision runs again"
    );
}

/// An unreadable receiver secret stops the agent at start with EX_CONFIG, naming the receiver and the
/// file; a listen address already taken leaves the listener off and the agent running.
#[test]
fn a_missing_secret_stops_the_start_and_a_taken_port_does_not() {
    let repo = GitRepo::new();
    repo.write("compose.yaml", &compose("1"));
    repo.commit_push("one");
    let mut agent = Agent::new("hook-start", AgentOptions::new(&repo.url()));
    let base = std::fs::read_to_string(&agent.config).unwrap();
    std::fs::write(
        &agent.config,
        format!(
            "{base}http:\n  listen: 127.0.0.1:0\nreceivers:\n  - name: gh\n    type: github\n    secret_file: /nonexistent/webhook.secret\n"
        ),
    )
    .unwrap();
    let o = run_with_deadline(
        std::process::Command::new(berth_bin())
            .args(["agent", "--config"])
            .arg(&agent.config),
        Duration::from_secs(30),
    );
    assert_eq!(o.status.code(), Some(78), "{}", show(&o));
    assert!(
        stderr(&o).contains("receiver gh: secret_file /nonexistent/webhook.secret"),
        "{}",
        show(&o)
    );

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    std::fs::write(&agent.config, format!("{base}http:\n  listen: {addr}\n")).unwrap();
    agent.spawn();
    let st = agent.status_json();
    assert!(st["http"].is_null(), "{st:#}");
    assert!(
        agent.log_text().contains("http listener not started"),
        "{}",
        agent.log_text()
    );
}
