//! The fleet view in `config-examples/monitoring/`: the Prometheus alert rules, the scrape config and the
//! Grafana dashboard parse, their PromQL uses only the metrics berth exports (parsed with promql-parser),
//! and, where promtool is installed (scripts/test.sh installs it), `promtool check` accepts the rules, the
//! config and the dashboard's queries and the rules pass their unit tests (`prometheus-rules.test.yaml`).

use promql_parser::label::MatchOp;
use promql_parser::parser::{self, Expr, VectorSelector};
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The metrics the agent exports (issue 8, item 6).
const METRICS: [&str; 12] = [
    "berth_cycles_total",
    "berth_cycle_duration_seconds",
    "berth_revision_info",
    "berth_last_applied_timestamp_seconds",
    "berth_source_up",
    "berth_fetch_total",
    "berth_drift_corrections_total",
    "berth_containers",
    "berth_rollbacks_total",
    "berth_alerts_outbox",
    "berth_alerts_sent_total",
    "berth_webhooks_total",
];

/// The scrape job the rules select and the example scrape config defines.
const JOB: &str = "berth";

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config-examples/monitoring")
}

fn read(name: &str) -> String {
    std::fs::read_to_string(dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    groups: Vec<RuleGroup>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleGroup {
    name: String,
    rules: Vec<Rule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    alert: String,
    expr: String,
    #[serde(rename = "for")]
    for_: Option<String>,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
}

fn rules() -> Vec<Rule> {
    let file: RuleFile =
        serde_yaml::from_str(&read("prometheus-rules.yaml")).expect("prometheus-rules.yaml");
    assert!(!file.groups.is_empty(), "no rule group");
    file.groups
        .into_iter()
        .flat_map(|g| {
            assert!(!g.name.is_empty() && !g.rules.is_empty(), "group {g:?}");
            g.rules
        })
        .collect()
}

fn dashboard() -> Value {
    serde_json::from_str(&read("grafana-dashboard.json")).expect("grafana-dashboard.json")
}

/// Every (panel title, refId, expr) of the dashboard, rows' nested panels included.
fn dashboard_targets(d: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for p in all_panels(d) {
        let title = p["title"].as_str().unwrap_or_default().to_string();
        for t in p["targets"].as_array().into_iter().flatten() {
            let r = t["refId"].as_str().unwrap_or_default().to_string();
            let e = t["expr"].as_str().unwrap_or_default().to_string();
            out.push((title.clone(), r, e));
        }
    }
    out
}

fn all_panels(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("panels is a list") {
        out.push(p);
        out.extend(p["panels"].as_array().into_iter().flatten());
    }
    out
}

/// A dashboard query as Prometheus receives it: Grafana's interval variables replaced by a duration
/// (`$agent_id` stays: it only occurs inside a regex string).
fn grafana_to_promql(expr: &str) -> String {
    ["$__rate_interval", "$__range", "$__interval"]
        .iter()
        .fold(expr.to_string(), |e, var| e.replace(var, "5m"))
}

/// Every vector selector of a PromQL expression, parsed with promql-parser.
fn selectors(expr: &str) -> Vec<VectorSelector> {
    fn walk(e: &Expr, out: &mut Vec<VectorSelector>) {
        match e {
            Expr::Aggregate(a) => {
                walk(&a.expr, out);
                if let Some(p) = &a.param {
                    walk(p, out);
                }
            }
            Expr::Unary(u) => walk(&u.expr, out),
            Expr::Binary(b) => {
                walk(&b.lhs, out);
                walk(&b.rhs, out);
            }
            Expr::Paren(p) => walk(&p.expr, out),
            Expr::Subquery(s) => walk(&s.expr, out),
            Expr::VectorSelector(v) => out.push(v.clone()),
            Expr::MatrixSelector(m) => out.push(m.vs.clone()),
            Expr::Call(c) => c.args.args.iter().for_each(|a| walk(a, out)),
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
        }
    }
    let parsed = parser::parse(expr).unwrap_or_else(|e| panic!("PromQL {expr:?}: {e}"));
    let mut out = Vec::new();
    walk(&parsed, &mut out);
    out
}

/// The metric a selector reads: its name, or a `__name__="…"` matcher.
fn metric_name(v: &VectorSelector) -> String {
    v.name.clone().unwrap_or_else(|| {
        let by_label = v.matchers.find_matchers("__name__");
        match by_label.first() {
            Some(m) if matches!(m.op, MatchOp::Equal) => m.value.clone(),
            _ => panic!("selector {v} does not name one metric"),
        }
    })
}

/// One of the exported metrics (a histogram's `_bucket`, `_sum` and `_count` series included), or the
/// scrape's own `up`.
fn known_metric(name: &str) -> bool {
    let histogram = ["_bucket", "_sum", "_count"]
        .iter()
        .any(|s| name.strip_suffix(s) == Some("berth_cycle_duration_seconds"));
    name == "up" || histogram || METRICS.contains(&name)
}

fn base_metric(name: &str) -> &str {
    ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .filter(|b| METRICS.contains(b))
        .unwrap_or(name)
}

#[test]
fn rules_have_alert_structure_and_name_the_box() {
    let rules = rules();
    let names: BTreeSet<&str> = rules.iter().map(|r| r.alert.as_str()).collect();
    assert_eq!(names.len(), rules.len(), "alert names repeat");
    for wanted in [
        "BerthNotConverged",
        "BerthSourceDown",
        "BerthRolledBack",
        "BerthAlertsOutboxGrowing",
        "BerthBoxDown",
        "BerthNoBoxesScraped",
    ] {
        assert!(names.contains(wanted), "no alert {wanted}: {names:?}");
    }
    for r in &rules {
        let a = &r.alert;
        assert!(
            a.starts_with("Berth") && a.chars().all(|c| c.is_ascii_alphanumeric()),
            "{a}"
        );
        assert!(
            ["critical", "warning", "info"].contains(&r.labels.get("severity").map_or("", |s| s)),
            "{a}: severity {:?}",
            r.labels
        );
        if let Some(f) = &r.for_ {
            assert!(humantime::parse_duration(f).is_ok(), "{a}: for {f:?}");
        }
        // Only a rule that fires on the absence of every box has no box to name.
        let whole_job = r.expr.trim_start().starts_with("absent(");
        for key in ["summary", "description"] {
            let text = r.annotations.get(key).map_or("", |s| s.as_str());
            assert!(!text.trim().is_empty(), "{a}: no {key}");
            let names_box = if whole_job {
                text.contains("agent_id")
            } else {
                text.contains("{{ $labels.agent_id }}")
            };
            assert!(names_box, "{a}: {key} does not name agent_id: {text}");
        }
    }
    let rollback = rules.iter().find(|r| r.alert == "BerthRolledBack").unwrap();
    let sel = selectors(&rollback.expr);
    assert!(
        sel.iter().all(|v| v
            .matchers
            .find_matchers("kind")
            .iter()
            .any(|m| matches!(m.op, MatchOp::Equal) && m.value == "auto")),
        "the rollback alert counts only automatic rollbacks: {}",
        rollback.expr
    );
}

#[test]
fn rules_and_dashboard_use_only_exported_metrics() {
    let mut unknown = Vec::new();
    for r in rules() {
        for v in selectors(&r.expr) {
            let name = metric_name(&v);
            if !known_metric(&name) {
                unknown.push(format!("rule {}: {name}", r.alert));
            }
            if name == "up" {
                let job = v.matchers.find_matchers("job");
                assert!(
                    job.iter().any(|m| m.value == JOB),
                    "rule {}: `up` without job={JOB:?}",
                    r.alert
                );
            }
        }
    }
    let d = dashboard();
    let mut used = BTreeSet::new();
    for (title, _, expr) in dashboard_targets(&d) {
        for v in selectors(&grafana_to_promql(&expr)) {
            let name = metric_name(&v);
            if !known_metric(&name) {
                unknown.push(format!("panel {title:?}: {name}"));
            }
            // Every query follows the dashboard's box selection.
            let filtered = v
                .matchers
                .find_matchers("agent_id")
                .iter()
                .any(|m| matches!(m.op, MatchOp::Re(_)) && m.value == "$agent_id");
            assert!(
                filtered,
                "panel {title:?}: {name} ignores the agent_id variable"
            );
            used.insert(base_metric(&name).to_string());
        }
    }
    assert!(
        unknown.is_empty(),
        "metrics berth does not export: {unknown:#?}"
    );
    let unused: Vec<_> = METRICS.iter().filter(|m| !used.contains(**m)).collect();
    assert!(
        unused.is_empty(),
        "the dashboard shows nothing of {unused:?}"
    );
}

#[test]
fn dashboard_is_a_grafana_model_every_panel_with_a_query() {
    let d = dashboard();
    assert!(
        d["schemaVersion"].as_u64().is_some_and(|v| v >= 36),
        "schemaVersion"
    );
    for key in ["title", "uid"] {
        assert!(d[key].as_str().is_some_and(|s| !s.is_empty()), "{key}");
    }
    let vars = d["templating"]["list"].as_array().expect("templating.list");
    let var = |name: &str| vars.iter().find(|v| v["name"] == name);
    let ds = var("datasource").expect("a datasource variable");
    assert_eq!(ds["type"], "datasource");
    assert_eq!(ds["query"], "prometheus");
    let agent = var("agent_id").expect("an agent_id variable");
    assert_eq!(agent["type"], "query");
    assert_eq!(agent["includeAll"], true);
    assert_eq!(agent["multi"], true);
    let q = agent["query"]["query"].as_str().expect("agent_id query");
    assert!(
        q.starts_with("label_values(berth_") && q.ends_with(", agent_id)"),
        "{q}"
    );

    let mut ids = BTreeSet::new();
    let mut boxes: Vec<(String, [u64; 4])> = Vec::new();
    for p in all_panels(&d) {
        let title = p["title"].as_str().expect("every panel has a title");
        assert!(
            ids.insert(p["id"].as_u64().expect("numeric id")),
            "id of {title:?} repeats"
        );
        let g = &p["gridPos"];
        let [x, y, w, h] = ["x", "y", "w", "h"].map(|k| g[k].as_u64().expect("gridPos"));
        assert!(w > 0 && h > 0 && x + w <= 24, "{title:?}: gridPos {g}");
        for (other, [ox, oy, ow, oh]) in &boxes {
            let apart = x + w <= *ox || *ox + ow <= x || y + h <= *oy || *oy + oh <= y;
            assert!(apart, "{title:?} overlaps {other:?}");
        }
        boxes.push((title.to_string(), [x, y, w, h]));
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{title:?}");
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title:?} has no target");
        let mut refs = BTreeSet::new();
        for t in targets {
            assert!(
                refs.insert(t["refId"].as_str().expect("refId")),
                "{title:?}: refId repeats"
            );
            let expr = t["expr"].as_str().unwrap_or_default();
            assert!(!expr.trim().is_empty(), "{title:?}: empty expr");
        }
    }
    assert!(ids.len() > 10, "only {} panels", ids.len());
}

#[test]
fn scrape_config_matches_the_rules() {
    let cfg: serde_yaml::Value =
        serde_yaml::from_str(&read("prometheus.yml")).expect("prometheus.yml");
    let files: Vec<&str> = cfg["rule_files"]
        .as_sequence()
        .expect("rule_files")
        .iter()
        .filter_map(|f| f.as_str())
        .collect();
    assert!(files.contains(&"prometheus-rules.yaml"), "{files:?}");
    let jobs = cfg["scrape_configs"].as_sequence().expect("scrape_configs");
    let job = jobs
        .iter()
        .find(|j| j["job_name"].as_str() == Some(JOB))
        .expect("a scrape job named like the rules' up{job=…}");
    // The box's own agent_id label must not be renamed to exported_agent_id.
    assert_eq!(job["honor_labels"].as_bool(), Some(true));
    let statics = job["static_configs"].as_sequence().expect("static_configs");
    for s in statics {
        let id = s["labels"]["agent_id"].as_str().unwrap_or_default();
        assert!(!id.is_empty(), "a target without agent_id: {s:?}");
        assert!(s["targets"].as_sequence().is_some_and(|t| !t.is_empty()));
    }
}

fn promtool() -> Option<Command> {
    let found = Command::new("promtool").arg("--version").output();
    if found.is_ok_and(|o| o.status.success()) {
        let mut c = Command::new("promtool");
        c.current_dir(dir());
        Some(c)
    } else {
        eprintln!("promtool not found (scripts/test.sh installs the prometheus package): skipped");
        None
    }
}

fn promtool_ok(args: &[&str]) {
    let Some(mut c) = promtool() else { return };
    let out = c.args(args).output().expect("promtool runs");
    assert!(
        out.status.success(),
        "promtool {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn promtool_accepts_the_rules_and_config_and_the_rule_tests_pass() {
    promtool_ok(&["check", "rules", "prometheus-rules.yaml"]);
    promtool_ok(&["check", "config", "prometheus.yml"]);
    promtool_ok(&["test", "rules", "prometheus-rules.test.yaml"]);
}

#[test]
fn promtool_accepts_every_dashboard_query() {
    // Prometheus's own parser, through a rule file that records every query of the dashboard.
    let rules: Vec<serde_json::Value> = dashboard_targets(&dashboard())
        .into_iter()
        .enumerate()
        .map(|(i, (_, _, expr))| {
            serde_json::json!({"record": format!("berth_dashboard:query_{i}"), "expr": grafana_to_promql(&expr)})
        })
        .collect();
    assert!(!rules.is_empty());
    let file = serde_json::json!({"groups": [{"name": "dashboard", "rules": rules}]});
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("dashboard-queries.yaml");
    std::fs::write(&path, serde_yaml::to_string(&file).unwrap()).unwrap();
    promtool_ok(&["check", "rules", path.to_str().unwrap()]);
}
