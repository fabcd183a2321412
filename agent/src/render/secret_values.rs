//! Which values of a render are secret: the value of every variable from a secret source (the agent's
//! process environment and facts marked secret, named by `RenderOptions::secret_vars`) that
//! interpolation took into the desired state (`interpolate::recording_taken`) or that
//! `environment: [NAME]` passed through, and the bare digest of each secret file read from the
//! environment. They go into [`crate::sensitive::Sensitive`] for the store, labels and status to seal or
//! digest.
//!
//! Layer: secret values (see the table in `render`), below the entry that calls it.

use crate::model::{DesiredState, FileSource};
use crate::sensitive::Sensitive;
use std::collections::{BTreeMap, BTreeSet};

/// Add to `desired.sensitive` the secret values `desired` holds: `env` the render's variables,
/// `secret_vars` those from a secret source, `taken` those interpolation took a value from.
pub fn mark(
    desired: &mut DesiredState,
    env: &BTreeMap<String, String>,
    secret_vars: &BTreeSet<String>,
    taken: &BTreeSet<String>,
) {
    let mut found = Sensitive::default();
    for c in desired.containers() {
        for f in &c.files {
            // SHA-256 of a value from the environment: an offline guessing oracle for a weak one.
            if matches!(f.source, FileSource::Env(_)) {
                found.add(&f.digest);
            }
        }
        // `environment: [NAME]` passed a secret variable through (an env_file or literal entry that
        // happens to equal it is treated alike: sealing it is harmless).
        for entry in &c.env {
            if let Some((name, value)) = entry.split_once('=') {
                if secret_vars.contains(name) && env.get(name).map(String::as_str) == Some(value) {
                    found.add(value);
                }
            }
        }
    }
    let values: Vec<&str> = taken
        .intersection(&secret_vars)
        .filter_map(|name| env.get(name))
        .map(String::as_str)
        .filter(|v| v.len() >= Sensitive::MIN_LEN)
        .collect();
    if !values.is_empty() {
        if let Ok(json) = serde_json::to_value(&desired.stacks) {
            crate::sealing::visit_strings(&json, &mut |s| {
                for v in &values {
                    if s.contains(v) {
                        found.add(v);
                    }
                }
            });
        }
    }
    desired.sensitive.extend(&found);
}

/// The names of this process's environment variables (those not valid UTF-8 cannot be interpolated and
/// are left out).
pub fn environment_names() -> BTreeSet<String> {
    std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use std::collections::BTreeSet;

    fn render_with(compose: &str, env: &[(&str, &str)], secret: &[&str]) -> DesiredState {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("compose.yaml"), compose).unwrap();
        std::fs::write(dir.path().join(".env"), "FROM_DOTENV=dotenv-value\n").unwrap();
        let opts = RenderOptions {
            checkout_dir: dir.path().to_path_buf(),
            secret_vars: secret.iter().map(|s| s.to_string()).collect(),
            ..crate::render::test_options(env)
        };
        render(&DirTree::new(dir.path()), &opts).unwrap()
    }

    #[test]
    fn values_from_secret_variables_are_marked_where_they_are_used() {
        let d = render_with(
            "services:\n  web:\n    image: busybox\n    environment:\n      - URL=postgres://app:${DB_PASSWORD}@db\n      - API_TOKEN\n      - SITE=${BERTH_FACT_SITE}\n      - DOT=${FROM_DOTENV}\n      - KEY=${BERTH_FACT_KEY}\n",
            &[
                ("DB_PASSWORD", "db-secret-1"),
                ("API_TOKEN", "token-secret-2"),
                ("UNUSED", "unused-secret-3"),
                ("BERTH_FACT_SITE", "berlin"),
                ("BERTH_FACT_KEY", "fact-secret-4"),
                // The package's own name in the environment: in the state, but never taken from it.
                ("NAME", "busybox"),
            ],
            &["DB_PASSWORD", "API_TOKEN", "UNUSED", "BERTH_FACT_KEY", "NAME"],
        );
        let marked: BTreeSet<&str> = d.sensitive.iter().collect();
        assert_eq!(
            marked,
            BTreeSet::from(["db-secret-1", "token-secret-2", "fact-secret-4"]),
            "environment values used (interpolated or passed through) and secret facts; not plain facts, .env or unused values"
        );
    }

    #[test]
    fn a_secret_file_from_the_environment_marks_its_digest() {
        let d = render_with(
            "services:\n  web:\n    image: busybox\n    secrets: [token]\nsecrets:\n  token:\n    environment: API_TOKEN\n",
            &[("API_TOKEN", "token-secret-2")],
            &["API_TOKEN"],
        );
        let file = &d.containers().next().unwrap().files[0];
        assert!(d.sensitive.leaks_into(&file.digest));
    }

    #[test]
    fn without_secret_variables_nothing_is_marked() {
        let d = render_with(
            "services:\n  web:\n    image: busybox\n    environment:\n      - URL=${DB_PASSWORD}\n",
            &[("DB_PASSWORD", "db-secret-1")],
            &[],
        );
        assert!(d.sensitive.is_empty());
    }
}
