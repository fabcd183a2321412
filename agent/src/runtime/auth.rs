//! Registry credentials from a Docker `config.json` (`{"auths": {"host": {"auth": "base64(user:pass)"}}}`
//! or `username`/`password` fields), the file `docker login` writes. Credential helpers (`credsStore`,
//! `credHelpers`) are not run: an agent should not exec whatever a config names; use a plain file.
//!
//! Secrets never leave this module except into the pull request's auth header: `Debug` shows registries
//! only, and errors name the file, never its content.

use base64::Engine as _;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Clone, Default)]
pub struct RegistryAuth {
    /// Registry host (`127.0.0.1:5000`, `docker.io`) → (user, password).
    entries: BTreeMap<String, (String, String)>,
    pub source: Option<PathBuf>,
}

impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryAuth")
            .field("registries", &self.entries.keys().collect::<Vec<_>>())
            .field("source", &self.source)
            .finish()
    }
}

/// Largest credentials file read.
const MAX_BYTES: u64 = 1024 * 1024;

/// Why the credentials file could not be used. Names the file, never its content.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("registry credentials {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("registry credentials {}: larger than {MAX_BYTES} bytes", path.display())]
    TooLarge { path: PathBuf },
    #[error("registry credentials {}: {source}", path.display())]
    Parse { path: PathBuf, source: ParseError },
}

/// What is wrong with the JSON of a credentials file.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// serde_json's syntax errors name a position, never the text.
    #[error("not JSON: line {}", source.line())]
    Json { source: serde_json::Error },
    /// The base64 decoder's error is not kept: it names the offending byte of the secret.
    #[error("auths.{server}.auth is not base64 of user:password")]
    BadAuth { server: String },
}

/// Docker writes `auth` padded; older tools and hand-written files sometimes do not.
const AUTH_BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

impl RegistryAuth {
    /// Load `path`, which must exist; or, without a path, `$DOCKER_CONFIG/config.json`, else
    /// `$HOME/.docker/config.json`, when there is one (no file: no credentials).
    pub fn load(path: Option<&Path>) -> Result<RegistryAuth, AuthError> {
        let (file, required) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => {
                let dir = std::env::var_os("DOCKER_CONFIG")
                    .map(PathBuf::from)
                    .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")));
                match dir {
                    Some(d) => (d.join("config.json"), false),
                    None => return Ok(RegistryAuth::default()),
                }
            }
        };
        let meta = match std::fs::metadata(&file) {
            Ok(m) => m,
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(RegistryAuth::default())
            }
            Err(source) => return Err(AuthError::Read { path: file, source }),
        };
        if meta.len() > MAX_BYTES {
            return Err(AuthError::TooLarge { path: file });
        }
        let text = match std::fs::read(&file) {
            Ok(t) => t,
            Err(source) => return Err(AuthError::Read { path: file, source }),
        };
        let mut auth = match Self::parse(&text) {
            Ok(a) => a,
            Err(source) => return Err(AuthError::Parse { path: file, source }),
        };
        auth.source = Some(file);
        Ok(auth)
    }

    /// Parse the JSON of a Docker config file.
    pub fn parse(text: &[u8]) -> Result<RegistryAuth, ParseError> {
        let v: serde_json::Value =
            serde_json::from_slice(text).map_err(|source| ParseError::Json { source })?;
        let mut out = RegistryAuth::default();
        let Some(auths) = v.get("auths").and_then(|a| a.as_object()) else {
            return Ok(out);
        };
        for (server, entry) in auths {
            let user_pass = if let Some(a) = entry.get("auth").and_then(|a| a.as_str()) {
                let bad = || ParseError::BadAuth {
                    server: server.clone(),
                };
                let compact: String = a.chars().filter(|c| !c.is_ascii_whitespace()).collect();
                let decoded = AUTH_BASE64
                    .decode(compact)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(bad)?;
                let (u, p) = decoded.split_once(':').ok_or_else(bad)?;
                crate::telemetry::log_secrets().add(a);
                Some((u.to_string(), p.to_string()))
            } else {
                match (
                    entry.get("username").and_then(|u| u.as_str()),
                    entry.get("password").and_then(|p| p.as_str()),
                ) {
                    (Some(u), Some(p)) => Some((u.to_string(), p.to_string())),
                    _ => None,
                }
            };
            if let Some(up) = user_pass {
                crate::telemetry::log_secrets().add(&up.1);
                out.entries.insert(normalise_server(server), up);
            }
        }
        Ok(out)
    }

    /// Credentials for the registry an image reference names.
    pub fn for_image(&self, image: &str) -> Option<bollard::auth::DockerCredentials> {
        let registry = registry_of(image);
        let (user, pass) = self.entries.get(&registry)?;
        Some(bollard::auth::DockerCredentials {
            username: Some(user.clone()),
            password: Some(pass.clone()),
            serveraddress: Some(registry),
            ..Default::default()
        })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// `https://index.docker.io/v1/` → `docker.io`; `https://host:5000/v2/` → `host:5000`.
fn normalise_server(s: &str) -> String {
    let s = s
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = s.split('/').next().unwrap_or(s);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".into()
        }
        h => h.to_string(),
    }
}

/// The registry of an image reference: its first path component when that looks like a host (has a
/// `.` or `:`, or is `localhost`), else Docker Hub.
pub fn registry_of(image: &str) -> String {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            normalise_server(first)
        }
        _ => "docker.io".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_docker_config_and_matches_registries() {
        // "alice:s3cret" and "bob:pw"
        let text = br#"{"auths": {
            "127.0.0.1:5000": {"auth": "YWxpY2U6czNjcmV0"},
            "https://index.docker.io/v1/": {"username": "bob", "password": "pw"}
        }, "credsStore": "desktop"}"#;
        let a = RegistryAuth::parse(text).unwrap();
        let c = a.for_image("127.0.0.1:5000/team/app:1").unwrap();
        assert_eq!(c.username.as_deref(), Some("alice"));
        assert_eq!(c.password.as_deref(), Some("s3cret"));
        assert_eq!(c.serveraddress.as_deref(), Some("127.0.0.1:5000"));
        assert_eq!(
            a.for_image("busybox").unwrap().username.as_deref(),
            Some("bob")
        );
        assert_eq!(
            a.for_image("library/busybox:1")
                .unwrap()
                .username
                .as_deref(),
            Some("bob")
        );
        assert!(a.for_image("ghcr.io/x/y").is_none());
        let shown = format!("{a:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("pw\""),
            "{shown}"
        );
        assert!(RegistryAuth::parse(b"{not json").is_err());
        assert!(RegistryAuth::parse(br#"{"auths": {"h": {"auth": "!!"}}}"#).is_err());
    }

    #[test]
    fn auth_base64_with_or_without_padding_and_errors_never_show_it() {
        // "ab:c" is "YWI6Yw==".
        for auth in ["YWI6Yw==", "YWI6Yw", "YWI6 Yw=="] {
            let text = format!(r#"{{"auths": {{"h:5000": {{"auth": "{auth}"}}}}}}"#);
            let a = RegistryAuth::parse(text.as_bytes()).unwrap();
            let c = a.for_image("h:5000/app").unwrap();
            assert_eq!(c.username.as_deref(), Some("ab"), "{auth}");
            assert_eq!(c.password.as_deref(), Some("c"), "{auth}");
        }
        // base64 of "nocolon-s3cret", then a broken one holding a secret-looking byte.
        for auth in ["bm9jb2xvbi1zM2NyZXQ=", "s3cr3t!tok"] {
            let text = format!(r#"{{"auths": {{"h": {{"auth": "{auth}"}}}}}}"#);
            let e = RegistryAuth::parse(text.as_bytes()).unwrap_err();
            assert!(matches!(e, ParseError::BadAuth { ref server } if server == "h"));
            let shown = format!("{e} {e:?}");
            assert!(!shown.contains("s3cr") && !shown.contains(auth), "{shown}");
            assert!(std::error::Error::source(&e).is_none());
        }
        let e = RegistryAuth::parse(b"{\n  \"auths\": x").unwrap_err();
        assert!(matches!(e, ParseError::Json { .. }), "{e}");
        assert_eq!(e.to_string(), "not JSON: line 2");
    }

    #[test]
    fn registry_of_references() {
        assert_eq!(registry_of("busybox"), "docker.io");
        assert_eq!(registry_of("team/app"), "docker.io");
        assert_eq!(registry_of("localhost/app"), "localhost");
        assert_eq!(
            registry_of("registry.example.com/a/b:1"),
            "registry.example.com"
        );
        assert_eq!(
            registry_of("127.0.0.1:5000/app@sha256:abc"),
            "127.0.0.1:5000"
        );
    }

    #[test]
    fn missing_default_file_is_no_credentials_but_a_named_one_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let e = RegistryAuth::load(Some(&dir.path().join("nope.json"))).unwrap_err();
        assert!(matches!(e, AuthError::Read { .. }), "{e}");
        assert!(e.to_string().contains("nope.json"), "{e}");
        std::fs::write(
            dir.path().join("bad.json"),
            br#"{"auths": {"h": {"auth": "!"}}}"#,
        )
        .unwrap();
        let e = RegistryAuth::load(Some(&dir.path().join("bad.json"))).unwrap_err();
        assert!(
            matches!(
                e,
                AuthError::Parse {
                    source: ParseError::BadAuth { .. },
                    ..
                }
            ),
            "{e}"
        );
        std::fs::write(dir.path().join("c.json"), br#"{"auths": {}}"#).unwrap();
        let a = RegistryAuth::load(Some(&dir.path().join("c.json"))).unwrap();
        assert!(a.is_empty());
    }
}
