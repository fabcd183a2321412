//! Unit tests of the alerts: error mapping, the incident state machine, provider payloads, config, and
//! the store's outbox.

use super::incident::{Ctx, Incidents, Outgoing};
use super::provider::{request, signature};
use super::*;
use std::time::Duration;

pub(crate) fn event() -> Event {
    Event {
        agent_id: "edge-01".into(),
        severity: Severity::Error,
        reason: Reason::RenderFailed,
        message: "compose.yaml:3: bad".into(),
        commit: Some("0123456789abcdef".into()),
        stack: Some("web".into()),
        service: None,
        raised_at: "2026-11-29T21:00:00Z".into(),
        incident: "render_failed/web/1".into(),
        state: State::Firing,
        dropped: 0,
    }
}

fn route(name: &str, kind: ProviderKind) -> AlertSettings {
    AlertSettings {
        name: name.into(),
        kind,
        url: "http://127.0.0.1:9/hook".into(),
        secret_file: None,
        min_severity: Severity::Info,
        reasons: None,
        repeat: None,
    }
}

fn fail(reason: Reason, stack: &str) -> Failure {
    Failure {
        reason,
        stack: Some(stack.into()),
        service: None,
        commit: Some("c1".into()),
        message: "broken".into(),
    }
}

fn states(out: &[Outgoing]) -> Vec<(String, Reason, State)> {
    out.iter()
        .map(|o| (o.provider.clone(), o.event.reason, o.event.state))
        .collect()
}

#[test]
fn errors_map_to_reasons_by_variant() {
    use crate::error::CycleError;
    let render = CycleError::Render {
        commit: "abc".into(),
        source: crate::render::RenderError {
            problems: vec![crate::render::Problem {
                file: Some("web/compose.yaml".into()),
                line: Some(3),
                column: None,
                stack: Some("web".into()),
                service: Some("app".into()),
                message: "fetch failed".into(),
            }],
        },
    };
    let f = failure_of(&render).unwrap();
    assert_eq!(f.reason, Reason::RenderFailed);
    assert_eq!(f.stack.as_deref(), Some("web"));
    assert_eq!(f.service.as_deref(), Some("app"));
    let preflight = CycleError::Converge {
        commit: "abc".into(),
        source: crate::apply::ConvergeError::Empty { running: 2 },
    };
    assert_eq!(
        failure_of(&preflight).unwrap().reason,
        Reason::PreflightFailed
    );
    let engine = CycleError::Converge {
        commit: "abc".into(),
        source: crate::apply::ConvergeError::Engine(crate::runtime::RuntimeError::Unreachable(
            "down".into(),
        )),
    };
    assert_eq!(failure_of(&engine).unwrap().reason, Reason::ApplyFailed);
    let gate = |rolled_back| CycleError::Gate {
        commit: "abc".into(),
        source: crate::rollout::GateFailure::Exited {
            stack: "web".into(),
            service: "app".into(),
            replica: 1,
            code: 1,
        },
        rolled_back,
    };
    assert_eq!(failure_of(&gate(true)).unwrap().reason, Reason::RolledBack);
    let g = failure_of(&gate(false)).unwrap();
    assert_eq!(
        (g.reason, g.stack.as_deref()),
        (Reason::ApplyFailed, Some("web"))
    );
    let quarantined = CycleError::Quarantined {
        commit: "abc".into(),
        reason: "render failed".into(),
    };
    assert_eq!(failure_of(&quarantined), None);
    let fetch = CycleError::Fetch(crate::source::SourceError::Fetch {
        url: "u".into(),
        message: "render failed".into(),
    });
    assert_eq!(failure_of(&fetch), None);
}

#[test]
fn one_incident_fires_once_and_resolves_once() {
    let routes = [route("ops", ProviderKind::Generic)];
    let ctx = Ctx {
        agent_id: "edge-01",
        routes: &routes,
        grace: Duration::from_secs(600),
    };
    let mut inc = Incidents::default();
    let first = inc.cycle(vec![fail(Reason::RenderFailed, "web")], false, 100, &ctx);
    assert_eq!(
        states(&first),
        vec![("ops".into(), Reason::RenderFailed, State::Firing)]
    );
    // Five more cycles: the same failure (another commit too), then only the quarantine.
    for t in 101..104 {
        let mut f = fail(Reason::RenderFailed, "web");
        f.commit = Some(format!("c{t}"));
        assert!(inc.cycle(vec![f], false, t, &ctx).is_empty());
    }
    assert!(inc.cycle(vec![], false, 104, &ctx).is_empty());
    assert!(inc.cycle(vec![], false, 105, &ctx).is_empty());
    // Persisted and read back (a restart) it is the same incident.
    let mut inc: Incidents = serde_json::from_slice(&serde_json::to_vec(&inc).unwrap()).unwrap();
    let resolved = inc.cycle(vec![], true, 106, &ctx);
    assert_eq!(
        states(&resolved),
        vec![("ops".into(), Reason::RenderFailed, State::Resolved)]
    );
    assert_eq!(resolved[0].event.incident, first[0].event.incident);
    assert_eq!(resolved[0].event.severity, Severity::Error);
    assert!(inc.cycle(vec![], true, 107, &ctx).is_empty());
    // The next failure is a new incident.
    let again = inc.cycle(vec![fail(Reason::RenderFailed, "web")], false, 108, &ctx);
    assert_eq!(again.len(), 1);
    assert_ne!(again[0].event.incident, first[0].event.incident);
}

#[test]
fn each_reason_and_stack_is_its_own_incident() {
    let routes = [route("ops", ProviderKind::Generic)];
    let ctx = Ctx {
        agent_id: "a",
        routes: &routes,
        grace: Duration::from_secs(600),
    };
    let mut inc = Incidents::default();
    let out = inc.cycle(
        vec![
            fail(Reason::ApplyFailed, "web"),
            fail(Reason::ApplyFailed, "db"),
            fail(Reason::RolledBack, "web"),
        ],
        false,
        1,
        &ctx,
    );
    assert_eq!(out.len(), 3);
    assert_eq!(inc.open().len(), 3);
}

#[test]
fn providers_filter_on_severity_and_reasons() {
    let mut errors_only = route("pager", ProviderKind::Generic);
    errors_only.min_severity = Severity::Error;
    let mut renders = route("renders", ProviderKind::Slack);
    renders.reasons = Some(vec![Reason::RenderFailed]);
    let routes = [route("all", ProviderKind::Generic), errors_only, renders];
    let ctx = Ctx {
        agent_id: "a",
        routes: &routes,
        grace: Duration::from_secs(600),
    };
    let mut inc = Incidents::default();
    let notice = inc.notice(
        Failure {
            reason: Reason::Applied,
            stack: None,
            service: None,
            commit: None,
            message: "applied".into(),
        },
        1,
        &ctx,
    );
    assert_eq!(
        states(&notice),
        vec![("all".into(), Reason::Applied, State::Resolved)]
    );
    let out = inc.cycle(vec![fail(Reason::ApplyFailed, "web")], false, 2, &ctx);
    let to: Vec<_> = out.iter().map(|o| o.provider.as_str()).collect();
    assert_eq!(to, ["all", "pager"]);
    let out = inc.cycle(vec![fail(Reason::RenderFailed, "web")], false, 3, &ctx);
    let to: Vec<_> = out.iter().map(|o| o.provider.as_str()).collect();
    assert_eq!(to, ["all", "pager", "renders"]);
}

#[test]
fn repeat_resends_a_firing_incident_to_that_provider_only() {
    let mut repeating = route("repeat", ProviderKind::Generic);
    repeating.repeat = Some(Duration::from_secs(3600));
    let routes = [route("once", ProviderKind::Generic), repeating];
    let ctx = Ctx {
        agent_id: "a",
        routes: &routes,
        grace: Duration::from_secs(600),
    };
    let mut inc = Incidents::default();
    assert_eq!(
        inc.cycle(vec![fail(Reason::ApplyFailed, "w")], false, 0, &ctx)
            .len(),
        2
    );
    assert_eq!(inc.next_tick(&ctx), Some(3600));
    assert!(inc.tick(3599, &ctx).is_empty());
    let again = inc.tick(3600, &ctx);
    assert_eq!(
        states(&again),
        vec![("repeat".into(), Reason::ApplyFailed, State::Firing)]
    );
    assert!(inc.tick(3601, &ctx).is_empty());
    assert_eq!(inc.tick(7200, &ctx).len(), 1);
}

#[test]
fn the_source_fires_after_its_grace_and_resolves_on_the_next_answer() {
    let routes = [route("ops", ProviderKind::Generic)];
    let ctx = Ctx {
        agent_id: "a",
        routes: &routes,
        grace: Duration::from_secs(600),
    };
    let mut inc = Incidents::default();
    assert!(inc.fetched(false, 1000, &ctx).is_empty());
    assert!(inc.fetched(false, 1300, &ctx).is_empty());
    assert_eq!(inc.next_tick(&ctx), Some(1600));
    assert!(inc.tick(1599, &ctx).is_empty());
    let fired = inc.tick(1600, &ctx);
    assert_eq!(
        states(&fired),
        vec![("ops".into(), Reason::SourceUnreachable, State::Firing)]
    );
    assert!(inc.fetched(false, 1700, &ctx).is_empty());
    // A clean cycle (the fetch failed, the rest was fine) does not resolve it.
    assert!(inc.cycle(vec![], true, 1800, &ctx).is_empty());
    let back = inc.fetched(true, 1900, &ctx);
    assert_eq!(
        states(&back),
        vec![("ops".into(), Reason::SourceUnreachable, State::Resolved)]
    );
    assert_eq!(back[0].event.incident, fired[0].event.incident);
    assert!(inc.fetched(true, 2000, &ctx).is_empty());
}

#[test]
fn generic_sends_the_event_and_generic_hmac_signs_it() {
    let e = event();
    let r = request(&route("g", ProviderKind::Generic), &e, None).unwrap();
    let back: Event = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(back, e);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    for key in [
        "agent_id",
        "severity",
        "reason",
        "message",
        "commit",
        "stack",
        "raised_at",
        "incident",
        "state",
    ] {
        assert!(v.get(key).is_some(), "{key} missing");
    }
    assert_eq!(v["state"], "firing");
    assert_eq!(v["reason"], "render_failed");
    let r = request(&route("h", ProviderKind::GenericHmac), &e, Some(b"key")).unwrap();
    let sig = r
        .headers
        .iter()
        .find(|(k, _)| *k == "X-Signature")
        .map(|(_, v)| v.clone())
        .unwrap();
    assert_eq!(sig, signature(b"key", &r.body));
    // RFC 4231 test case 2.
    assert_eq!(
        signature(b"Jefe", b"what do ya want for nothing?"),
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

#[test]
fn chat_providers_get_their_webhook_formats() {
    let mut e = event();
    e.dropped = 3;
    let body = |kind| {
        let r = request(&route("x", kind), &e, None).unwrap();
        serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()
    };
    let slack = body(ProviderKind::Slack);
    let text = slack["text"].as_str().unwrap();
    assert!(text.starts_with("[edge-01] FIRING render_failed (stack web, commit 0123456789ab)"));
    assert!(text.contains("compose.yaml:3: bad") && text.contains("3 earlier events"));
    let discord = body(ProviderKind::Discord);
    assert!(discord["content"].as_str().unwrap().contains("FIRING"));
    assert_eq!(discord["allowed_mentions"]["parse"], serde_json::json!([]));
    let teams = body(ProviderKind::Teams);
    assert_eq!(teams["type"], "message");
    let att = &teams["attachments"][0];
    assert_eq!(
        att["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert_eq!(att["content"]["type"], "AdaptiveCard");
    assert_eq!(att["content"]["body"][1]["text"], "compose.yaml:3: bad");
}

#[test]
fn ntfy_and_gotify_get_their_formats_and_tokens() {
    let e = event();
    let r = request(&route("n", ProviderKind::Ntfy), &e, Some(b"tk_abc")).unwrap();
    let h = |k: &str| {
        r.headers
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(
        String::from_utf8(r.body.clone()).unwrap(),
        "compose.yaml:3: bad"
    );
    assert_eq!(
        h("Title").unwrap(),
        "[edge-01] FIRING render_failed (stack web, commit 0123456789ab)"
    );
    assert_eq!(h("Priority").as_deref(), Some("4"));
    assert_eq!(h("Authorization").as_deref(), Some("Bearer tk_abc"));
    let mut g = route("g", ProviderKind::Gotify);
    g.url = "https://push.example.com".into();
    let r = request(&g, &e, Some(b"AppToken")).unwrap();
    assert_eq!(r.url, "https://push.example.com/message");
    assert!(r.headers.contains(&("X-Gotify-Key", "AppToken".into())));
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["priority"], 8);
    assert_eq!(v["message"], "compose.yaml:3: bad");
    g.url = "https://push.example.com/gotify/message".into();
    assert_eq!(
        request(&g, &e, None).unwrap().url,
        "https://push.example.com/gotify/message"
    );
}

#[test]
fn alerts_config_is_validated_without_quoting_urls() {
    let base = "source: {url: /tmp/x}\nstate_dir: /tmp/s\nsocket: /tmp/s.sock\n";
    let ok = format!(
        "{base}alerts:\n  - {{name: ops, type: generic-hmac, url: 'https://a.example/b', secret_file: /etc/k, min_severity: error, reasons: [render_failed, rolled_back], repeat: 6h}}\n  - {{name: chat, type: slack, url: 'https://hooks.slack.com/services/T/B/X'}}\nalerts_source_grace: 5m\n"
    );
    let s = crate::config::parse(&ok).unwrap();
    assert_eq!(s.alerts.len(), 2);
    assert_eq!(s.alerts[0].kind, ProviderKind::GenericHmac);
    assert_eq!(s.alerts[0].min_severity, Severity::Error);
    assert_eq!(
        s.alerts[0].reasons,
        Some(vec![Reason::RenderFailed, Reason::RolledBack])
    );
    assert_eq!(s.alerts[0].repeat, Some(Duration::from_secs(6 * 3600)));
    assert_eq!(s.alerts_source_grace, Duration::from_secs(300));
    assert_eq!(
        crate::config::parse(base).unwrap().alerts_source_grace,
        Duration::from_secs(600)
    );
    let bad = format!(
        "{base}alerts:\n  - {{name: a, type: pager, url: 'https://x'}}\n  - {{name: b, type: generic-hmac, url: 'https://x'}}\n  - {{name: c, type: slack, url: 'ftp://secret-token@x', secret_file: /k}}\n  - {{name: d, type: generic, url: 'https://x', reasons: [exploded], repeat: 10s, min_severity: fatal}}\n"
    );
    let problems = crate::config::parse(&bad).unwrap_err().join("\n");
    for want in [
        "alerts[0].type: \"pager\" must be one of",
        "alerts[1].secret_file: required for type generic-hmac",
        "alerts[2].url: required, an http:// or https:// URL",
        "alerts[2].secret_file: type slack takes no secret_file",
        "alerts[3].reasons: \"exploded\" is not a reason",
        "alerts[3].repeat: must be at least 1m",
        "alerts[3].min_severity: \"fatal\" must be info or error",
    ] {
        assert!(problems.contains(want), "{want} not in:\n{problems}");
    }
    assert!(!problems.contains("secret-token"), "{problems}");
    assert_eq!(
        redact_url("https://hooks.slack.com/services/T/B/X?token=y"),
        "https://hooks.slack.com/…"
    );
}

#[test]
fn store_outbox_keeps_state_and_order_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    {
        let s = crate::store::Store::open(&path).unwrap();
        let add: Vec<(u64, Event)> = (1..=3)
            .map(|i| {
                let mut e = event();
                e.incident = format!("i{i}");
                (i, e)
            })
            .collect();
        s.outbox_write(Some(&"state-1"), &add, &[]).unwrap();
        s.outbox_write::<String, Event>(None, &[], &[2]).unwrap();
        assert_eq!(s.outbox_len(), 2);
    }
    let s = crate::store::Store::open(&path).unwrap();
    let (state, entries) = s.outbox_load::<String, Event>().unwrap();
    assert_eq!(state.as_deref(), Some("state-1"));
    let ids: Vec<(u64, String)> = entries.into_iter().map(|(k, e)| (k, e.incident)).collect();
    assert_eq!(ids, vec![(1, "i1".to_string()), (3, "i3".to_string())]);
}
