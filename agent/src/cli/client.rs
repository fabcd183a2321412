//! Client subcommands: status, history, reconcile, rollback, resume — over the agent's socket.

use super::{exit, Conn};
use crate::api::client::call;
use crate::api::{CycleResult, HistoryEntry, Status};
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

fn time(t: Option<i64>) -> String {
    match t {
        None => "-".into(),
        Some(t) => {
            // UTC, ISO-like, without pulling in a date crate.
            let days = t.div_euclid(86400);
            let secs = t.rem_euclid(86400);
            let (y, m, d) = civil_from_days(days);
            format!(
                "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}Z",
                secs / 3600,
                secs % 3600 / 60,
                secs % 60
            )
        }
    }
}

/// Days since 1970-01-01 → (year, month, day), Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z.rem_euclid(146097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn short(c: &Option<String>) -> String {
    c.as_deref()
        .map(|c| c[..c.len().min(12)].to_string())
        .unwrap_or_else(|| "-".into())
}

pub fn status(conn: &Conn, json: bool, out: &mut impl Write) -> anyhow::Result<i32> {
    let (s, raw): (Status, _) = get(conn, "GET", "/v1/status", QUICK)?;
    if json {
        out.write_all(&raw)?;
        return Ok(exit::OK);
    }
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
    let outcome = s
        .outcome
        .map(|o| o.to_string())
        .unwrap_or_else(|| "-".into());
    writeln!(out, "outcome:  {outcome} after {} cycles", s.cycles)?;
    if s.pinned {
        writeln!(
            out,
            "pinned:   yes, to revision #{} (rollback); new commits are fetched, not applied — `berth resume` to follow Git",
            s.pinned_seq.map(|n| n.to_string()).unwrap_or_default()
        )?;
    }
    if let Some(e) = &s.last_error {
        writeln!(out, "error:    {}", e.replace('\n', "\n          "))?;
    }
    writeln!(out)?;
    let w = s
        .containers
        .iter()
        .map(|c| c.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    writeln!(
        out,
        "{:<w$}  {:<10}  {:<16}  ID",
        "NAME", "STATE", "STACK/SERVICE"
    )?;
    for c in &s.containers {
        let ss = format!("{}/{}", c.stack, c.service);
        writeln!(
            out,
            "{:<w$}  {:<10}  {:<16}  {}",
            c.name,
            c.state,
            ss,
            &c.id[..c.id.len().min(12)]
        )?;
    }
    Ok(exit::OK)
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
        "{:>5}  {:<12}  {:<8}  {:<20}  {:>8}  SUMMARY",
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
            "{:>5}  {:<12}  {:<8}  {:<20}  {:>8}  {}",
            r.seq,
            &r.commit[..r.commit.len().min(12)],
            r.outcome.to_string(),
            time(Some(r.applied_at)),
            r.duration_ms,
            summary
        )?;
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
        (Outcome::Applied, _) => Ok(exit::OK),
        (Outcome::Failed, e) => {
            anyhow::bail!("{}", e.as_deref().unwrap_or("cycle failed"))
        }
    }
}

pub fn reconcile(conn: &Conn, wait: bool, out: &mut impl Write) -> anyhow::Result<i32> {
    if !wait {
        let socket = conn.socket_path()?;
        call(&socket, "POST", "/v1/reconcile", QUICK)?;
        writeln!(out, "reconcile triggered")?;
        return Ok(exit::OK);
    }
    let (r, _): (CycleResult, _) = get(conn, "POST", "/v1/reconcile?wait=1", None)?;
    print_cycle(&r, out)
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
        assert_eq!(super::time(None), "-");
    }
}
