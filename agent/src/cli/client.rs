//! Client subcommands: status, history, reconcile, rollback, resume — over the agent's socket.

use super::{exit, Conn};
use crate::api::client::call;
use crate::api::{ContainerStatus, CycleResult, HistoryEntry, Status};
use crate::store::Outcome;
use std::io::Write;
use std::time::Duration;

const QUICK: Option<Duration> = Some(Duration::from_secs(30));

fn get<T: serde::de::DeserializeOwned>(
    conn: &Conn,
    method: &str,
    path: &str,
    timeout: Option<Duration>,
) -> anyhow::Result<(T, Vec<u8>)> {
    let socket = conn.socket_path()?;
    let body = call(&socket, method, path, timeout)?;
    let value = serde_json::from_slice(&body)
        .map_err(|e| anyhow::anyhow!("agent answered something unexpected: {e}"))?;
    Ok((value, body))
}

/// A Unix time as `2026-11-29 19:58:00Z` (UTC); `-` when there is none.
fn time(t: Option<i64>) -> String {
    match t {
        None => "-".into(),
        Some(t) => match jiff::Timestamp::from_second(t) {
            Ok(ts) => ts.strftime("%Y-%m-%d %H:%M:%SZ").to_string(),
            // Beyond jiff's years -9999..=9999: the raw seconds rather than a made-up date.
            Err(_) => format!("@{t}"),
        },
    }
}

/// The first 12 characters of an id (whatever the agent sent: never cut inside a character).
fn prefix(id: &str) -> String {
    id.chars().take(12).collect()
}

fn short(c: &Option<String>) -> String {
    c.as_deref().map(prefix).unwrap_or_else(|| "-".into())
}

pub fn status(conn: &Conn, json: bool, out: &mut impl Write) -> anyhow::Result<i32> {
    let (s, raw): (Status, _) = get(conn, "GET", "/v1/status", QUICK)?;
    if json {
        out.write_all(&raw)?;
        return Ok(exit::OK);
    }
    write_revision(out, &s)?;
    write_http(out, &s)?;
    write_holds(out, &s)?;
    write_alerts_and_error(out, &s)?;
    writeln!(out)?;
    write_containers(out, &s.containers)?;
    Ok(exit::OK)
}

/// The status's agent, source, fetched and applied revisions, outcome and warnings.
fn write_revision(out: &mut impl Write, s: &Status) -> std::io::Result<()> {
    writeln!(out, "agent:    {}", s.agent_id)?;
    writeln!(
        out,
        "source:   {} ({}, path {})",
        s.source.url, s.source.reference, s.source.path
    )?;
    writeln!(
        out,
        "fetched:  {} at {}",
        short(&s.fetched_commit),
        time(s.fetched_at)
    )?;
    let seq = s
        .applied_seq
        .map(|n| format!(" (#{n})"))
        .unwrap_or_default();
    writeln!(out, "applied:  {}{seq}", short(&s.applied_commit))?;
    if let Some(signer) = &s.applied_signer {
        writeln!(out, "verified by {signer}")?;
    }
    let outcome = s
        .outcome
        .map(|o| o.to_string())
        .unwrap_or_else(|| "-".into());
    writeln!(
        out,
        "outcome:  {outcome} (cycle #{} since the agent started)",
        s.cycles
    )?;
    for w in &s.warnings {
        writeln!(out, "warning:  {w}")?;
    }
    Ok(())
}

/// The HTTP listener and its receivers, when there is one.
fn write_http(out: &mut impl Write, s: &Status) -> std::io::Result<()> {
    if let Some(h) = &s.http {
        writeln!(
            out,
            "http:     {} (/metrics, /healthz, /hooks/<receiver>)",
            h.listen
        )?;
        if !h.receivers.is_empty() {
            let names: Vec<String> = h
                .receivers
                .iter()
                .map(|r| format!("{} ({})", r.name, r.kind))
                .collect();
            writeln!(out, "receivers: {}", names.join(", "))?;
        }
    }
    Ok(())
}

/// What holds the agent back: a pin, a suspension, a rollout on the health gate, a quarantine.
fn write_holds(out: &mut impl Write, s: &Status) -> std::io::Result<()> {
    if s.pinned {
        writeln!(
            out,
            "pinned:   yes, to revision #{} (rollback); new commits are fetched, not applied — `berth resume` to follow Git",
            s.pinned_seq.map(|n| n.to_string()).unwrap_or_default()
        )?;
    }
    if s.suspended {
        writeln!(
            out,
            "suspended: yes — nothing is reconciled, drift repair included, until `berth resume`"
        )?;
    }
    if let Some(r) = &s.rollout {
        writeln!(
            out,
            "rolling out {} ({} s): waiting on the health gate",
            prefix(&r.commit),
            r.seconds
        )?;
    }
    if let Some(q) = &s.quarantined {
        writeln!(
            out,
            "quarantined: {} since {} — not applied again until the remote moves on (`berth reconcile --retry` to try it again)",
            prefix(&q.commit),
            time(Some(q.since))
        )?;
    }
    Ok(())
}

/// The alert providers with the outbox, and the last error with its class.
fn write_alerts_and_error(out: &mut impl Write, s: &Status) -> std::io::Result<()> {
    if !s.alerts.is_empty() {
        let providers: Vec<String> = s
            .alerts
            .iter()
            .map(|a| format!("{} ({})", a.name, a.kind))
            .collect();
        writeln!(
            out,
            "alerts:   {}; outbox: {} waiting",
            providers.join(", "),
            s.alerts_outbox
        )?;
    }
    if let Some(e) = &s.last_error {
        let class = s.error_class.map(|c| format!(" ({c})")).unwrap_or_default();
        writeln!(
            out,
            "error{class}:\n          {}",
            e.replace('\n', "\n          ")
        )?;
    }
    Ok(())
}

/// The containers as a table: name, state, stack/service, id.
fn write_containers(out: &mut impl Write, containers: &[ContainerStatus]) -> std::io::Result<()> {
    let rows: Vec<(&str, &str, String, String)> = containers
        .iter()
        .map(|c| {
            let ss = format!("{}/{}", c.stack, c.service);
            (c.name.as_str(), c.state.as_str(), ss, prefix(&c.id))
        })
        .collect();
    let w = rows.iter().map(|r| r.0.len()).fold(4, usize::max);
    let v = rows.iter().map(|r| r.2.len()).fold(13, usize::max);
    writeln!(
        out,
        "{:<w$}  {:<10}  {:<v$}  ID",
        "NAME", "STATE", "STACK/SERVICE"
    )?;
    for (name, state, ss, id) in &rows {
        writeln!(out, "{name:<w$}  {state:<10}  {ss:<v$}  {id}")?;
    }
    Ok(())
}

pub fn history(conn: &Conn, json: bool, limit: usize, out: &mut impl Write) -> anyhow::Result<i32> {
    let (h, raw): (Vec<HistoryEntry>, _) =
        get(conn, "GET", &format!("/v1/history?limit={limit}"), QUICK)?;
    if json {
        out.write_all(&raw)?;
        return Ok(exit::OK);
    }
    writeln!(
        out,
        "{:>5}  {:<12}  {:<11}  {:<20}  {:>8}  SUMMARY",
        "SEQ", "COMMIT", "OUTCOME", "APPLIED", "MS"
    )?;
    for r in &h {
        let summary = if r.rollback {
            format!("rollback: {}", r.summary)
        } else {
            r.summary.clone()
        };
        writeln!(
            out,
            "{:>5}  {:<12}  {:<11}  {:<20}  {:>8}  {}",
            r.seq,
            prefix(&r.commit),
            r.outcome.to_string(),
            time(Some(r.applied_at)),
            r.duration_ms,
            summary
        )?;
        if let Some(signer) = &r.signer {
            writeln!(out, "       verified by {signer}")?;
        }
        if let Some(e) = &r.error {
            writeln!(out, "       error: {}", e.replace('\n', "\n              "))?;
        }
    }
    Ok(exit::OK)
}

fn print_cycle(r: &CycleResult, out: &mut impl Write) -> anyhow::Result<i32> {
    let seq = r
        .applied_seq
        .map(|n| format!(" (#{n})"))
        .unwrap_or_default();
    writeln!(
        out,
        "{}: running {}{seq}",
        r.outcome,
        short(&r.applied_commit)
    )?;
    match (&r.outcome, &r.error) {
        (Outcome::Applied, None) => Ok(exit::OK),
        (_, e) => {
            anyhow::bail!("{}", e.as_deref().unwrap_or("cycle failed"))
        }
    }
}

pub fn reconcile(
    conn: &Conn,
    wait: bool,
    retry: bool,
    out: &mut impl Write,
) -> anyhow::Result<i32> {
    let retry = if retry { "retry=1&" } else { "" };
    if !wait {
        let socket = conn.socket_path()?;
        call(
            &socket,
            "POST",
            &format!("/v1/reconcile?{retry}wait=0"),
            QUICK,
        )?;
        writeln!(out, "reconcile triggered")?;
        return Ok(exit::OK);
    }
    let (r, _): (CycleResult, _) =
        get(conn, "POST", &format!("/v1/reconcile?{retry}wait=1"), None)?;
    print_cycle(&r, out)
}

pub fn suspend(conn: &Conn, out: &mut impl Write) -> anyhow::Result<i32> {
    let socket = conn.socket_path()?;
    call(&socket, "POST", "/v1/suspend", QUICK)?;
    writeln!(
        out,
        "suspended: nothing is reconciled, drift repair included, until `berth resume`"
    )?;
    Ok(exit::OK)
}

pub fn rollback(conn: &Conn, seq: Option<u64>, out: &mut impl Write) -> anyhow::Result<i32> {
    let path = match seq {
        Some(s) => format!("/v1/rollback?seq={s}"),
        None => "/v1/rollback".into(),
    };
    let (r, _): (CycleResult, _) = get(conn, "POST", &path, None)?;
    let code = print_cycle(&r, out)?;
    writeln!(
        out,
        "pinned: new commits are fetched but not applied until `berth resume`"
    )?;
    Ok(code)
}

pub fn resume(conn: &Conn, out: &mut impl Write) -> anyhow::Result<i32> {
    let (r, _): (CycleResult, _) = get(conn, "POST", "/v1/resume", None)?;
    print_cycle(&r, out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_utc_times() {
        assert_eq!(super::time(Some(0)), "1970-01-01 00:00:00Z");
        assert_eq!(super::time(Some(1_764_047_045)), "2025-11-25 05:04:05Z");
        assert_eq!(super::time(Some(1_795_982_280)), "2026-11-29 19:58:00Z");
        assert_eq!(super::time(Some(-1)), "1969-12-31 23:59:59Z");
        assert_eq!(super::time(Some(i64::MAX)), format!("@{}", i64::MAX));
        assert_eq!(super::time(None), "-");
    }

    #[test]
    fn shortens_ids_without_cutting_a_character() {
        assert_eq!(super::short(&Some("a".repeat(40))), "a".repeat(12));
        assert_eq!(super::short(&Some("ééééééééééééé".into())), "éééééééééééé");
        assert_eq!(super::short(&None), "-");
    }
}
