//! Merging `compose.override.yaml` (or any later file) into a compose file, with Docker Compose's rules:
//!
//! - mappings merge key by key, recursively; a scalar in the later file replaces the earlier one;
//! - `command`, `entrypoint` and `healthcheck.test` are replaced as a whole;
//! - `environment`, `labels` (and the same of networks/volumes) merge by variable/label name, whether
//!   written as a list (`K=V`) or a mapping;
//! - `depends_on`, `networks` and `extra_hosts` of a service merge by name, in either form;
//! - `volumes` of a service merge by target path, `ports` and other sequences are appended without
//!   duplicates;
//! - the YAML tags `!reset` (drop the earlier value) and `!override` (replace instead of merging) work as
//!   in Compose.
//!
//! Merging is linear in the size of both documents (long lists are merged through sets and maps).
//!
//! Layer: foundations (see the table in `render`).

use serde_yaml::value::Tag;
use serde_yaml::{Mapping, Value};
use std::collections::{HashMap, HashSet};

/// Merge `over` into `base` (both whole compose documents).
pub fn merge_documents(base: Value, over: Value) -> Value {
    merge_at(base, over, &mut Vec::new())
}

/// Remove `!reset` keys and unwrap `!override` values of a single document (no earlier file to merge).
pub fn strip_tags(v: Value) -> Value {
    match v {
        Value::Mapping(m) => Value::Mapping(
            m.into_iter()
                .filter(|(_, v)| !is_tag(v, "reset"))
                .map(|(k, v)| (k, strip_tags(v)))
                .collect(),
        ),
        Value::Sequence(s) => Value::Sequence(
            s.into_iter()
                .filter(|v| !is_tag(v, "reset"))
                .map(strip_tags)
                .collect(),
        ),
        Value::Tagged(t) if t.tag == Tag::new("override") => strip_tags(t.value),
        other => other,
    }
}

fn is_tag(v: &Value, name: &str) -> bool {
    matches!(v, Value::Tagged(t) if t.tag == Tag::new(name))
}

/// Which rule applies at a path (keys only; `*` stands for any name).
fn rule(path: &[String]) -> Rule {
    let p: Vec<&str> = path.iter().map(String::as_str).collect();
    match p.as_slice() {
        ["services", _, "command" | "entrypoint"] | ["services", _, "healthcheck", "test"] => {
            Rule::Replace
        }
        ["services", _, "environment" | "labels" | "sysctls" | "annotations"]
        | ["services", _, "deploy", "labels"]
        | ["networks" | "volumes", _, "labels"] => Rule::KeyValue,
        ["services", _, "depends_on" | "networks"] => Rule::ByName,
        ["services", _, "extra_hosts"] => Rule::Hosts,
        ["services", _, "volumes"] => Rule::VolumesByTarget,
        _ => Rule::Default,
    }
}

enum Rule {
    Default,
    Replace,
    KeyValue,
    ByName,
    Hosts,
    VolumesByTarget,
}

fn merge_at(base: Value, over: Value, path: &mut Vec<String>) -> Value {
    match over {
        Value::Tagged(t) if t.tag == Tag::new("override") => return strip_tags(t.value),
        Value::Tagged(t) if t.tag == Tag::new("reset") => return Value::Null,
        _ => {}
    }
    match rule(path) {
        Rule::Replace => return strip_tags(over),
        Rule::KeyValue => return merge_maps(key_value_map(base), key_value_map(over), path),
        Rule::ByName => return merge_maps(name_map(base), name_map(over), path),
        Rule::Hosts => return merge_maps(hosts_map(base), hosts_map(over), path),
        Rule::VolumesByTarget => {
            if let (Value::Sequence(b), Value::Sequence(o)) = (&base, &over) {
                return Value::Sequence(volumes_by_target(b.clone(), o));
            }
        }
        Rule::Default => {}
    }
    match (base, over) {
        (Value::Mapping(b), Value::Mapping(o)) => merge_maps(b, o, path),
        (Value::Sequence(mut b), Value::Sequence(o)) => {
            // Appended without duplicates; a set keeps long lists linear.
            let mut seen: HashSet<Value> = b.iter().cloned().collect();
            for v in o {
                let v = strip_tags(v);
                if seen.insert(v.clone()) {
                    b.push(v);
                }
            }
            Value::Sequence(b)
        }
        (_, o) => strip_tags(o),
    }
}

/// Service volumes: an override replaces the earlier volume of the same target, or is appended.
fn volumes_by_target(mut out: Vec<Value>, over: &[Value]) -> Vec<Value> {
    let mut at: HashMap<String, usize> = HashMap::new();
    for (i, e) in out.iter().enumerate() {
        if let Some(t) = volume_target(e) {
            at.entry(t).or_insert(i);
        }
    }
    for v in over {
        let v = strip_tags(v.clone());
        match volume_target(&v) {
            Some(t) => match at.get(&t) {
                Some(&i) => {
                    if let Some(slot) = out.get_mut(i) {
                        *slot = v;
                    }
                }
                None => {
                    at.insert(t, out.len());
                    out.push(v);
                }
            },
            None => out.push(v),
        }
    }
    out
}

fn merge_maps(mut b: Mapping, o: Mapping, path: &mut Vec<String>) -> Value {
    for (k, v) in o {
        if is_tag(&v, "reset") {
            b.remove(&k);
            continue;
        }
        let key = match &k {
            Value::String(s) => s.clone(),
            other => serde_yaml::to_string(other)
                .unwrap_or_default()
                .trim()
                .to_string(),
        };
        let merged = match b.remove(&k) {
            Some(prev) => {
                path.push(key);
                let m = merge_at(prev, v, path);
                path.pop();
                m
            }
            None => strip_tags(v),
        };
        b.insert(k, merged);
    }
    Value::Mapping(b)
}

/// `[K=V, K2]` or `{K: V}` → mapping (a bare `K` maps to null).
fn key_value_map(v: Value) -> Mapping {
    match v {
        Value::Sequence(items) => {
            let mut m = Mapping::new();
            for item in items {
                if let Value::String(s) = &item {
                    match s.split_once('=') {
                        Some((k, val)) => {
                            m.insert(Value::String(k.into()), Value::String(val.into()))
                        }
                        None => m.insert(Value::String(s.clone()), Value::Null),
                    };
                }
            }
            m
        }
        Value::Mapping(m) => m,
        _ => Mapping::new(),
    }
}

/// `[a, b]` or `{a: {...}}` → mapping by name.
fn name_map(v: Value) -> Mapping {
    match v {
        Value::Sequence(items) => items.into_iter().map(|i| (i, Value::Null)).collect(),
        Value::Mapping(m) => m,
        _ => Mapping::new(),
    }
}

/// `["host:ip", "host=ip"]` or `{host: ip}` → mapping by host.
fn hosts_map(v: Value) -> Mapping {
    match v {
        Value::Sequence(items) => {
            let mut m = Mapping::new();
            for item in items {
                if let Value::String(s) = &item {
                    let split = s.split_once('=').or_else(|| s.split_once(':'));
                    if let Some((h, ip)) = split {
                        m.insert(Value::String(h.into()), Value::String(ip.into()));
                    }
                }
            }
            m
        }
        Value::Mapping(m) => m,
        _ => Mapping::new(),
    }
}

/// The container path of a service volume, short (`src:dst[:mode]`) or long syntax.
fn volume_target(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => {
            let parts: Vec<&str> = s.split(':').collect();
            match parts.len() {
                1 => Some(parts[0].to_string()),
                _ => Some(parts[1].to_string()),
            }
        }
        Value::Mapping(m) => m.get("target").and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn y(s: &str) -> Value {
        serde_yaml::from_str(s).unwrap()
    }

    #[test]
    fn compose_override_rules() {
        let base = y(r#"
services:
  web:
    image: a:1
    command: ["sh", "-c", "one"]
    environment: [A=1, B=2]
    labels: {x: "1"}
    ports: ["80:80"]
    volumes: ["./conf:/etc/app:ro", "data:/data"]
    networks: [front]
    depends_on: [db]
    cap_add: [NET_ADMIN]
    healthcheck: {test: ["CMD", "true"], interval: 5s}
"#);
        let over = y(r#"
services:
  web:
    image: a:2
    command: ["sh"]
    environment: {B: "3", C: "4"}
    labels: [y=2]
    ports: ["80:80", "443:443"]
    volumes: ["./other:/etc/app"]
    networks: {back: {aliases: [w]}}
    depends_on: {cache: {condition: service_started}}
    cap_add: [NET_ADMIN, SYS_TIME]
    healthcheck: {test: ["CMD", "false"]}
  new:
    image: b
"#);
        let m = merge_documents(base, over);
        let web = &m["services"]["web"];
        assert_eq!(web["image"], y("a:2"));
        assert_eq!(web["command"], y("[sh]"));
        assert_eq!(web["environment"], y("{A: '1', B: '3', C: '4'}"));
        assert_eq!(web["labels"], y("{x: '1', y: '2'}"));
        assert_eq!(web["ports"], y("['80:80', '443:443']"));
        assert_eq!(web["volumes"], y("['./other:/etc/app', 'data:/data']"));
        assert_eq!(web["networks"], y("{front: null, back: {aliases: [w]}}"));
        assert_eq!(
            web["depends_on"],
            y("{db: null, cache: {condition: service_started}}")
        );
        assert_eq!(web["cap_add"], y("[NET_ADMIN, SYS_TIME]"));
        assert_eq!(
            web["healthcheck"],
            y("{test: [CMD, 'false'], interval: 5s}")
        );
        assert_eq!(m["services"]["new"]["image"], y("b"));
    }

    #[test]
    fn reset_and_override_tags() {
        let base = y("services: {web: {image: a, ports: ['80:80'], environment: {A: '1'}}}");
        let over = y("services: {web: {ports: !reset [], environment: !override {B: '2'}}}");
        let m = merge_documents(base, over);
        assert!(m["services"]["web"].get("ports").is_none());
        assert_eq!(m["services"]["web"]["environment"], y("{B: '2'}"));
        let single = strip_tags(y("services: {web: {image: a, ports: !reset []}}"));
        assert!(single["services"]["web"].get("ports").is_none());
    }

    #[test]
    fn long_lists_merge_in_linear_time() {
        let n = 50_000;
        let list = |from: usize| {
            Value::Sequence(
                (from..from + n)
                    .map(|i| Value::String(format!("/d{i}")))
                    .collect(),
            )
        };
        let doc = |ports: Value, volumes: Value| {
            let mut web = Mapping::new();
            web.insert("ports".into(), ports);
            web.insert("volumes".into(), volumes);
            let mut services = Mapping::new();
            services.insert("web".into(), Value::Mapping(web));
            let mut top = Mapping::new();
            top.insert("services".into(), Value::Mapping(services));
            Value::Mapping(top)
        };
        let start = std::time::Instant::now();
        let m = merge_documents(doc(list(0), list(0)), doc(list(n / 2), list(n / 2)));
        assert!(start.elapsed() < std::time::Duration::from_secs(10));
        let web = &m["services"]["web"];
        assert_eq!(web["ports"].as_sequence().map(Vec::len), Some(n + n / 2));
        assert_eq!(web["volumes"].as_sequence().map(Vec::len), Some(n + n / 2));
    }
}
