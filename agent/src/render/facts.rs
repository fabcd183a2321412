//! The box's own interpolation variables: per-box facts (`facts:` in the agent config, or `--fact` and
//! `fleet.yaml` for `berth render --repo`) as `${BERTH_FACT_<KEY>}`, and `${BERTH_AGENT_ID}`,
//! `${BERTH_HOSTNAME}`, `${BERTH_ARCH}`. [`scope`] layers them under the agent's environment, giving the
//! documented precedence: agent environment > facts > a stack's `.env`.
//!
//! A fact given as `{secret_file: PATH}` is secret: its value is read from that file (by the agent when
//! it starts, by `berth render --repo` for `--secret-fact KEY=PATH`), and what it puts into a desired
//! state is sealed in the store and digested in labels and status like the agent's environment.
//!
//! Layer: foundations (see the table in `render`).

use std::collections::BTreeMap;

/// Prefix of a fact's variable: the fact `site` is `${BERTH_FACT_SITE}`.
pub const FACT_PREFIX: &str = "BERTH_FACT_";
/// Longest fact key.
pub const MAX_KEY_LEN: usize = 64;
/// Most facts one box may have.
pub const MAX_FACTS: usize = 256;
/// Longest fact value, in bytes.
pub const MAX_VALUE_LEN: usize = 4096;

/// A fact that cannot be used. Messages never quote a fact's value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FactError {
    #[error("fact key {key:?} must be 1-{MAX_KEY_LEN} letters, digits or '_'")]
    BadKey { key: String },
    #[error("fact keys {first:?} and {second:?} are both ${{{var}}}")]
    SameVariable {
        first: String,
        second: String,
        var: String,
    },
    #[error("fact {key}: the value must be a string, number or boolean of at most {MAX_VALUE_LEN} bytes")]
    BadValue { key: String },
    #[error("more than {MAX_FACTS} facts")]
    TooMany,
    #[error("a fact must be given as KEY=VALUE")]
    NotKeyValue,
    #[error(
        "fact {key}: must be a string, number, boolean or {{secret_file: PATH}} (an absolute path)"
    )]
    BadSecret { key: String },
    /// The file's content is never quoted.
    #[error("fact {key}: cannot read secret_file {}: {reason}", path.display())]
    SecretUnreadable {
        key: String,
        path: std::path::PathBuf,
        reason: String,
    },
}

/// A fact as the agent config writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FactValue {
    Plain(String),
    /// `{secret_file: PATH}`: a secret fact, its value the file's content.
    SecretFile(std::path::PathBuf),
}

/// A fact's value from YAML: a scalar ([`scalar`]) or `{secret_file: PATH}` with an absolute path.
pub fn fact_value(key: &str, value: &serde_yaml::Value) -> Result<FactValue, FactError> {
    let serde_yaml::Value::Mapping(m) = value else {
        return scalar(key, value).map(FactValue::Plain);
    };
    match (m.len(), m.get("secret_file")) {
        (1, Some(serde_yaml::Value::String(p))) if std::path::Path::new(p).is_absolute() => {
            Ok(FactValue::SecretFile(p.into()))
        }
        _ => Err(FactError::BadSecret { key: key.into() }),
    }
}

/// The value of the secret fact `key` from `path`: the file's text without its final newline, at most
/// [`MAX_VALUE_LEN`] bytes.
pub fn read_secret(key: &str, path: &std::path::Path) -> Result<String, FactError> {
    let unreadable = |reason: String| FactError::SecretUnreadable {
        key: key.into(),
        path: path.to_path_buf(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| unreadable(e.to_string()))?;
    if bytes.len() > MAX_VALUE_LEN + 2 {
        return Err(unreadable(format!("longer than {MAX_VALUE_LEN} bytes")));
    }
    let text = String::from_utf8(bytes).map_err(|_| unreadable("not UTF-8".into()))?;
    let value = text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(&text);
    if value.len() > MAX_VALUE_LEN || value.contains('\0') {
        return Err(unreadable(format!(
            "longer than {MAX_VALUE_LEN} bytes or holds a NUL"
        )));
    }
    crate::telemetry::log_secrets().add(value);
    Ok(value.to_string())
}

/// A fact key: letters, digits and `_`, at most [`MAX_KEY_LEN`] of them.
pub fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_KEY_LEN
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The variable a fact key is read as.
pub fn variable(key: &str) -> String {
    format!("{FACT_PREFIX}{}", key.to_ascii_uppercase())
}

/// Check a set of facts: keys valid, values bounded, no two keys naming one variable (`site`, `SITE`).
pub fn validate(facts: &BTreeMap<String, String>) -> Vec<FactError> {
    let mut problems = Vec::new();
    if facts.len() > MAX_FACTS {
        problems.push(FactError::TooMany);
    }
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    for (key, value) in facts {
        if !valid_key(key) {
            problems.push(FactError::BadKey { key: key.clone() });
            continue;
        }
        if value.len() > MAX_VALUE_LEN || value.contains('\0') {
            problems.push(FactError::BadValue { key: key.clone() });
        }
        let var = variable(key);
        if let Some(first) = seen.insert(var.clone(), key) {
            problems.push(FactError::SameVariable {
                first: first.to_string(),
                second: key.clone(),
                var,
            });
        }
    }
    problems
}

/// A fact's value from YAML: strings, numbers and booleans, as written.
pub fn scalar(key: &str, value: &serde_yaml::Value) -> Result<String, FactError> {
    match value {
        serde_yaml::Value::String(s) => Ok(s.clone()),
        serde_yaml::Value::Number(n) => Ok(n.to_string()),
        serde_yaml::Value::Bool(b) => Ok(b.to_string()),
        _ => Err(FactError::BadValue { key: key.into() }),
    }
}

/// Parse one `KEY=VALUE` (`--fact`); the key is checked by [`validate`].
pub fn parse_key_value(arg: &str) -> Result<(String, String), FactError> {
    match arg.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(FactError::NotKeyValue),
    }
}

/// Docker's name for a CPU architecture (`std::env::consts::ARCH` → amd64, arm64, arm, …).
pub fn docker_arch(rust_arch: &str) -> &str {
    match rust_arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "loongarch64" => "loong64",
        other => other,
    }
}

/// Who the box is, for `${BERTH_AGENT_ID}`, `${BERTH_HOSTNAME}` and `${BERTH_ARCH}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoxIdentity {
    pub agent_id: String,
    pub hostname: String,
    /// Docker's architecture name.
    pub arch: String,
}

impl BoxIdentity {
    /// This machine, under `agent_id`.
    pub fn local(agent_id: &str) -> BoxIdentity {
        BoxIdentity {
            agent_id: agent_id.to_string(),
            hostname: crate::config::hostname(),
            arch: docker_arch(std::env::consts::ARCH).to_string(),
        }
    }
}

/// The variables render starts from (`RenderOptions.env`): the box's own, then its facts, then the
/// agent's environment, each overriding the one before; a stack's `.env` ranks below all of them.
pub fn scope(
    id: &BoxIdentity,
    facts: &BTreeMap<String, String>,
    env: impl IntoIterator<Item = (String, String)>,
) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::from([
        ("BERTH_AGENT_ID".to_string(), id.agent_id.clone()),
        ("BERTH_HOSTNAME".to_string(), id.hostname.clone()),
        ("BERTH_ARCH".to_string(), id.arch.clone()),
    ]);
    vars.extend(facts.iter().map(|(k, v)| (variable(k), v.clone())));
    vars.extend(env);
    vars
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> BoxIdentity {
        BoxIdentity {
            agent_id: "edge-01".into(),
            hostname: "host-1".into(),
            arch: "arm64".into(),
        }
    }

    #[test]
    fn a_secret_fact_is_a_file_read_without_its_newline() {
        let y = |s: &str| serde_yaml::from_str::<serde_yaml::Value>(s).unwrap();
        assert_eq!(
            fact_value("k", &y("{secret_file: /etc/berth/k}")),
            Ok(FactValue::SecretFile("/etc/berth/k".into()))
        );
        assert_eq!(
            fact_value("k", &y("berlin")),
            Ok(FactValue::Plain("berlin".into()))
        );
        for bad in [
            "{secret_file: rel/k}",
            "{secret_file: /a, x: 1}",
            "{file: /a}",
            "[a]",
        ] {
            assert!(fact_value("k", &y(bad)).is_err(), "{bad}");
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        std::fs::write(&path, "fact-secret-4\n").unwrap();
        assert_eq!(read_secret("k", &path).unwrap(), "fact-secret-4");
        let e = read_secret("k", &dir.path().join("none")).unwrap_err();
        assert!(e.to_string().contains("cannot read secret_file"), "{e}");
        std::fs::write(&path, "x".repeat(MAX_VALUE_LEN + 10)).unwrap();
        let e = read_secret("k", &path).unwrap_err().to_string();
        assert!(!e.contains("xxxx"), "never quotes the content: {e}");
    }

    #[test]
    fn facts_become_upper_case_variables_and_the_environment_wins() {
        let facts = BTreeMap::from([
            ("site".to_string(), "berlin".to_string()),
            ("tier".to_string(), "edge".to_string()),
        ]);
        let env = vec![("BERTH_FACT_TIER".to_string(), "core".to_string())];
        let s = scope(&id(), &facts, env);
        assert_eq!(s["BERTH_FACT_SITE"], "berlin");
        assert_eq!(s["BERTH_FACT_TIER"], "core");
        assert_eq!(s["BERTH_AGENT_ID"], "edge-01");
        assert_eq!(s["BERTH_HOSTNAME"], "host-1");
        assert_eq!(s["BERTH_ARCH"], "arm64");
    }

    #[test]
    fn bad_keys_and_clashing_keys_are_refused_without_quoting_values() {
        let facts = BTreeMap::from([
            ("site".to_string(), "x".to_string()),
            ("SITE".to_string(), "y".to_string()),
            ("bad-key".to_string(), "hunter2".to_string()),
            ("nul".to_string(), "a\0b".to_string()),
        ]);
        let problems = validate(&facts);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems.contains(&FactError::BadKey {
            key: "bad-key".into()
        }));
        assert!(problems
            .iter()
            .any(|p| matches!(p, FactError::SameVariable { var, .. } if var == "BERTH_FACT_SITE")));
        assert!(problems.iter().all(|p| !p.to_string().contains("hunter2")));
        assert!(validate(&BTreeMap::from([("a_1".into(), "v".into())])).is_empty());
    }

    #[test]
    fn arch_uses_docker_names() {
        assert_eq!(docker_arch("x86_64"), "amd64");
        assert_eq!(docker_arch("aarch64"), "arm64");
        assert_eq!(docker_arch("arm"), "arm");
    }

    #[test]
    fn key_value_needs_a_key() {
        assert_eq!(
            parse_key_value("site=a=b"),
            Ok(("site".into(), "a=b".into()))
        );
        assert_eq!(parse_key_value("=x"), Err(FactError::NotKeyValue));
        assert_eq!(parse_key_value("site"), Err(FactError::NotKeyValue));
    }
}
