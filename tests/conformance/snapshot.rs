//! Snapshots: what one tool made (containers, networks, volumes, via `docker inspect`), keyed by service
//! and replica, with the per-tool normalisations that make the two tools' values comparable.

use super::*;

/// Replacements that turn one tool's values into comparable ones, applied in order.
pub(super) struct Norm {
    pub(super) pairs: Vec<(String, String)>,
    pub(super) net_prefixes: Vec<String>,
}

impl Norm {
    pub(super) fn s(&self, s: &str) -> String {
        let mut out = s.to_string();
        for (from, to) in &self.pairs {
            if !from.is_empty() {
                out = out.replace(from.as_str(), to);
            }
        }
        hide_hex64(&out)
    }

    pub(super) fn v(&self, v: &Value) -> Value {
        match v {
            Value::String(s) => Value::String(self.s(s)),
            Value::Array(a) => Value::Array(a.iter().map(|x| self.v(x)).collect()),
            Value::Object(m) => {
                Value::Object(m.iter().map(|(k, x)| (self.s(k), self.v(x))).collect())
            }
            other => other.clone(),
        }
    }
}

/// Any 64-hex-digit run left after the known container ids were replaced is an id the engine generated
/// at random (anonymous volume names and their paths): it differs on every run, of either tool.
pub(super) fn hide_hex64(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        let run = b[i..]
            .iter()
            .take_while(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
            .count();
        if run == 64 {
            out.push_str("<random-id>");
            i += 64;
        } else if run > 0 {
            out.push_str(&s[i..i + run]);
            i += run;
        } else {
            let ch = s[i..].chars().next().unwrap();
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

/// Empty collections and absent values are the same to the engine (it stores whatever the client sent:
/// `null`, `[]` or `{}` for "none"), so they compare equal.
pub(super) fn canon(v: Value) -> Value {
    match v {
        Value::Array(a) if a.is_empty() => Value::Null,
        Value::Object(m) if m.is_empty() => Value::Null,
        other => other,
    }
}

/// An unordered list (capabilities, security options, extra hosts, …), sorted.
pub(super) fn set(v: &Value) -> Value {
    match v.as_array() {
        Some(a) => {
            let mut s: Vec<String> = a
                .iter()
                .map(|x| {
                    x.as_str()
                        .map(String::from)
                        .unwrap_or_else(|| x.to_string())
                })
                .collect();
            s.sort();
            s.dedup();
            json!(s)
        }
        None => v.clone(),
    }
}

pub(super) fn own_label(k: &str) -> bool {
    k.starts_with("com.docker.compose.") || k.starts_with("io.berth.")
}

/// Labels minus the tools' own.
pub(super) fn user_labels(v: &Value) -> Value {
    let m: Map<String, Value> = v
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| !own_label(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    Value::Object(m)
}

/// One tool's objects: key (`<service>-<n>`, `network <name>`, `volume <name>`) → field → value (compact
/// JSON of the normalised value).
#[derive(Default, Clone, Debug)]
pub(super) struct Snapshot {
    pub(super) objects: BTreeMap<String, BTreeMap<String, String>>,
    /// Container key → full id.
    pub(super) ids: BTreeMap<String, String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Tool {
    Compose,
    Berth,
}

impl Tool {
    pub(super) fn filter(self, owner: &str) -> String {
        match self {
            Tool::Compose => format!("label=com.docker.compose.project={owner}"),
            Tool::Berth => format!("label={AGENT_LABEL}={owner}"),
        }
    }

    /// The container's service and replica number, from the tool's own labels.
    pub(super) fn key(self, labels: &Value, name: &str) -> String {
        let (s, n) = match self {
            Tool::Compose => (
                "com.docker.compose.service",
                "com.docker.compose.container-number",
            ),
            Tool::Berth => ("io.berth.service", "io.berth.replica"),
        };
        match (labels[s].as_str(), labels[n].as_str()) {
            (Some(s), Some(n)) => format!("{s}-{n}"),
            _ => format!("unlabelled {name}"),
        }
    }
}

pub(super) fn inspect_all(kind: &str, ids: &[String]) -> Result<Vec<Value>, String> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut args = vec![kind, "inspect"];
    args.extend(ids.iter().map(String::as_str));
    let out = docker_out(&args)?;
    serde_json::from_str(&out).map_err(|e| format!("docker {kind} inspect: {e}"))
}

pub(super) fn container_state(c: &Value) -> String {
    let st = &c["State"];
    match st["Status"].as_str().unwrap_or("?") {
        "exited" => format!("exited({})", st["ExitCode"]),
        other => other.to_string(),
    }
}

/// Containers of a tool: raw inspect documents.
pub(super) fn list_containers(tool: Tool, owner: &str) -> Result<Vec<Value>, String> {
    let ids = lines(&docker_out(&[
        "ps",
        "-aq",
        "--no-trunc",
        "--filter",
        &tool.filter(owner),
    ])?);
    inspect_all("container", &ids)
}

/// Take the snapshot of what `tool` made for `owner`; `dir` is the tool's copy of the fixture, `project`
/// its project / stack name.
pub(super) fn snapshot(
    tool: Tool,
    owner: &str,
    dir: &Path,
    project: &str,
    names: &RunNames,
    probes: &[String],
) -> Result<Snapshot, String> {
    let containers = list_containers(tool, owner)?;
    let filter = tool.filter(owner);
    let nets = inspect_all(
        "network",
        &lines(&docker_out(&["network", "ls", "-q", "--filter", &filter])?),
    )?;
    let vols = inspect_all(
        "volume",
        &lines(&docker_out(&["volume", "ls", "-q", "--filter", &filter])?),
    )?;

    // The temp directory differs per tool (it holds the project name, so it goes first); the project /
    // stack name is part of every object name; container ids (in `container:<id>` modes, hostnames,
    // aliases) differ per run: each becomes the container's service-replica key.
    let mut pairs = vec![
        (dir.to_string_lossy().to_string(), "<DIR>".to_string()),
        (project.to_string(), "<PROJECT>".to_string()),
    ];
    let mut keyed = Vec::new();
    for c in &containers {
        let name = c["Name"]
            .as_str()
            .unwrap_or("")
            .trim_start_matches('/')
            .to_string();
        let key = tool.key(&c["Config"]["Labels"], &name);
        let id = c["Id"].as_str().unwrap_or("").to_string();
        keyed.push((key, id, c));
    }
    for (key, id, _) in &keyed {
        pairs.push((id.clone(), format!("<id:{key}>")));
    }
    // The harness's own containers are the same for both tools; named, so a value shows which one.
    for (id, name) in &names.ext_ids {
        pairs.push((id.clone(), format!("<id:{name}>")));
    }
    for (key, id, _) in &keyed {
        if id.len() >= 12 {
            pairs.push((id[..12].to_string(), format!("<id:{key}>")));
        }
    }
    let norm = Norm {
        pairs,
        net_prefixes: names.net_prefixes.clone(),
    };

    let mut snap = Snapshot::default();
    for (key, id, c) in keyed {
        let mut fields = container_fields(c, &norm);
        if c["State"]["Status"] == "running" {
            for p in probes {
                let o = run(
                    &mut docker_cmd(&["exec", &id, "sh", "-c", p]),
                    DOCKER_DEADLINE,
                )?;
                let v = json!({
                    "exit": o.status.code(),
                    "stdout": stdout(&o).trim_end(),
                    "stderr": stderr(&o).trim_end(),
                });
                fields.insert(format!("probe `{p}`"), norm.v(&v).to_string());
            }
        }
        snap.ids.insert(key.clone(), id);
        if snap.objects.insert(key.clone(), fields).is_some() {
            return Err(format!("two containers of {owner} have the key {key}"));
        }
    }
    for n in &nets {
        let name = norm.s(n["Name"].as_str().unwrap_or(""));
        snap.objects
            .insert(format!("network {name}"), network_fields(n, &norm));
    }
    for v in &vols {
        let name = norm.s(v["Name"].as_str().unwrap_or(""));
        snap.objects
            .insert(format!("volume {name}"), volume_fields(v, &norm));
    }
    Ok(snap)
}

pub(super) struct Fields<'a> {
    pub(super) map: BTreeMap<String, String>,
    pub(super) norm: &'a Norm,
}

impl Fields<'_> {
    pub(super) fn put(&mut self, name: &str, v: Value) {
        let v = self.norm.v(&canon(v));
        self.map.insert(name.to_string(), v.to_string());
    }
}
