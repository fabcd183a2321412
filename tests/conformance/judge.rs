//! Comparing the two tools' snapshots, and judging the differences against the known-differences table
//! of README.md (unlisted differences and stale rows fail); the printed tables.

use super::*;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Difference {
    pub(super) fixture: String,
    pub(super) object: String,
    pub(super) field: String,
    pub(super) compose: String,
    pub(super) berth: String,
}

#[derive(Debug, Default)]
pub(super) struct Tally {
    pub(super) compared: usize,
    pub(super) equal: usize,
}

/// Compare one fixture's snapshots. A fixture berth refused counts every field Compose produced as
/// different and shows as one `apply` difference; an object only one tool made counts all its fields as
/// different and shows as one `exists` difference.
pub(super) fn compare(r: &FixtureResult) -> (Tally, Vec<Difference>) {
    let mut t = Tally::default();
    let mut diffs = Vec::new();
    let Some(c) = &r.compose else {
        return (t, diffs);
    };
    let d = |object: &str, field: &str, compose: String, berth: String| Difference {
        fixture: r.name.clone(),
        object: object.to_string(),
        field: field.to_string(),
        compose,
        berth,
    };
    let b = match &r.berth {
        Some(BerthRun {
            apply: Ok(()),
            snapshot: Some(b),
            ..
        }) => b,
        other => {
            t.compared = c.objects.values().map(|f| f.len()).sum();
            let why = match other {
                Some(BerthRun { apply: Err(e), .. }) => format!(
                    "{}: {}",
                    if refused(e) { "refused" } else { "failed" },
                    first_error_line(e)
                ),
                _ => "no snapshot".to_string(),
            };
            diffs.push(d("-", "apply", "up".into(), why));
            return (t, diffs);
        }
    };
    let keys: BTreeSet<&String> = c.objects.keys().chain(b.objects.keys()).collect();
    for k in keys {
        match (c.objects.get(k), b.objects.get(k)) {
            (Some(cf), Some(bf)) => {
                let fields: BTreeSet<&String> = cf.keys().chain(bf.keys()).collect();
                for f in fields {
                    t.compared += 1;
                    let cv = cf.get(f).cloned().unwrap_or_else(|| "<absent>".into());
                    let bv = bf.get(f).cloned().unwrap_or_else(|| "<absent>".into());
                    if cv == bv {
                        t.equal += 1;
                    } else {
                        diffs.push(d(k, f, cv, bv));
                    }
                }
            }
            (Some(cf), None) => {
                t.compared += cf.len();
                diffs.push(d(k, "exists", "yes".into(), "no".into()));
            }
            (None, Some(bf)) => {
                t.compared += bf.len();
                diffs.push(d(k, "exists", "no".into(), "yes".into()));
            }
            (None, None) => {}
        }
    }
    (t, diffs)
}

/// Whether `berth apply` refused the directory (a render problem: nothing was done) rather than failed
/// on the engine.
pub(super) fn refused(shown: &str) -> bool {
    shown.contains("berth: nothing changed")
}

/// The first line of berth's stderr that names a problem (for the one-line `apply` difference).
pub(super) fn first_error_line(shown: &str) -> String {
    let err = shown.split("--- stderr\n").nth(1).unwrap_or(shown);
    err.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
        .chars()
        .take(160)
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Known {
    pub(super) fixture: String,
    pub(super) field: String,
    pub(super) reason: String,
}

/// Rows `| fixture | field | reason |` of the table under the heading `### Known differences from Docker
/// Compose` (none when the heading is missing). The header and separator rows are skipped; backticks
/// around a cell are ignored.
pub(super) fn known_differences(readme: &str) -> Vec<Known> {
    let mut rows = Vec::new();
    let mut in_section = false;
    let mut in_table = false;
    for line in readme.lines() {
        let l = line.trim();
        if l.starts_with('#') {
            if in_section {
                break;
            }
            in_section = l == KNOWN_HEADING;
            continue;
        }
        if !in_section {
            continue;
        }
        if !l.starts_with('|') {
            if in_table {
                break;
            }
            continue;
        }
        in_table = true;
        let cells: Vec<String> = l
            .trim_matches('|')
            .split('|')
            .map(|c| c.trim().trim_matches('`').trim().to_string())
            .collect();
        if cells.len() < 2 {
            continue;
        }
        let separator = cells
            .iter()
            .all(|c| !c.is_empty() && c.chars().all(|ch| matches!(ch, '-' | ':' | ' ')));
        let header =
            cells[0].eq_ignore_ascii_case("fixture") && cells[1].eq_ignore_ascii_case("field");
        if separator || header {
            continue;
        }
        rows.push(Known {
            fixture: cells[0].clone(),
            field: cells[1].clone(),
            reason: cells.get(2).cloned().unwrap_or_default(),
        });
    }
    rows
}

pub(super) fn listed(k: &Known, d: &Difference) -> bool {
    (k.fixture == "*" || k.fixture == d.fixture) && k.field == d.field
}

/// Differences not listed, and listed rows that matched nothing (among the fixtures that ran).
pub(super) fn judge<'a>(
    diffs: &[Difference],
    known: &'a [Known],
    ran: &BTreeSet<String>,
    all_ran: bool,
) -> (Vec<Difference>, Vec<&'a Known>) {
    let unlisted = diffs
        .iter()
        .filter(|d| !known.iter().any(|k| listed(k, d)))
        .cloned()
        .collect();
    let stale = known
        .iter()
        .filter(|k| {
            let judged = if k.fixture == "*" {
                all_ran
            } else {
                ran.contains(&k.fixture)
            };
            judged && !diffs.iter().any(|d| listed(k, d))
        })
        .collect();
    (unlisted, stale)
}

pub(super) fn render_table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|i| {
            rows.iter()
                .filter(|r| i + 1 < r.len())
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            if i + 1 < r.len() {
                line.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            } else {
                line.push_str(cell);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

pub(super) fn short(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let cut: String = s.chars().take(max).collect();
        format!("{cut}…")
    }
}
