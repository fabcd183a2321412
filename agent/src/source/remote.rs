//! Talking to the remote: callbacks for credentials (the token, or credentials written in `source.url`,
//! which the clone's config never holds: [`remote_url`]), host keys, the fetch deadline, and turning
//! libgit2 errors into redacted messages.

use super::known_hosts::{self, HostKeyCheck};
use super::redact;
use crate::config::SourceSettings;
use git2::cert::Cert;
use git2::{CertificateCheckStatus, Cred, CredentialType, ErrorCode, RemoteCallbacks};
use std::cell::{Cell, RefCell};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Credentials offered per connection before giving up (libgit2 asks again after every rejection).
pub(crate) const MAX_AUTH_ATTEMPTS: u32 = 3;

/// User name sent with an HTTPS token when neither `source.username` nor the URL names one (what GitHub
/// and Gitea accept for tokens; GitLab accepts any user name with a token).
pub(crate) const DEFAULT_TOKEN_USER: &str = "x-access-token";

/// State of one `fetch()`: its deadline and what the callbacks learnt, for the error message.
pub(crate) struct Session<'s> {
    settings: &'s SourceSettings,
    deadline: Instant,
    timed_out: Cell<bool>,
    /// An error berth itself decided (authentication given up, host key refused...), reported instead of
    /// libgit2's generic text.
    reason: RefCell<Option<String>>,
    /// Secret values read during this fetch (the token), scrubbed from every message.
    secrets: RefCell<Vec<String>>,
}

impl<'s> Session<'s> {
    pub(crate) fn new(settings: &'s SourceSettings) -> Self {
        apply_global_timeouts(settings.timeout);
        // Credentials written in the URL are masked in logs: the password, or over http(s) a user name
        // alone (a token).
        if let Some(c) = url_credentials(&settings.url) {
            let http = settings.url.starts_with("http");
            if let Some(secret) = c.password.as_deref().or(http.then_some(c.user.as_str())) {
                crate::telemetry::log_secrets().add(secret);
            }
        }
        Session {
            settings,
            deadline: Instant::now() + settings.timeout,
            timed_out: Cell::new(false),
            reason: RefCell::new(None),
            secrets: RefCell::new(Vec::new()),
        }
    }

    /// False (and remembered) once the fetch has run longer than `source.timeout`.
    fn in_time(&self) -> bool {
        if Instant::now() > self.deadline {
            self.timed_out.set(true);
            false
        } else {
            true
        }
    }

    /// True once berth itself stopped the operation (deadline passed, credentials given up, host key
    /// refused): retrying another way would only fail again.
    pub(crate) fn gave_up(&self) -> bool {
        self.timed_out.get() || self.reason.borrow().is_some()
    }

    fn fail(&self, message: String) -> git2::Error {
        let message = self.scrub(&message);
        *self.reason.borrow_mut() = Some(message.clone());
        git2::Error::from_str(&message)
    }

    /// Callbacks for one connection (credential attempts are counted per connection).
    pub(crate) fn callbacks(&self) -> RemoteCallbacks<'_> {
        let mut cb = RemoteCallbacks::new();
        let mut attempts = 0u32;
        cb.credentials(move |url, user, allowed| {
            self.credentials(&mut attempts, url, user, allowed)
        });
        cb.transfer_progress(|_| self.in_time());
        cb.sideband_progress(|_| self.in_time());
        cb.certificate_check(|cert, host| self.certificate_check(cert, host));
        cb
    }

    fn credentials(
        &self,
        attempts: &mut u32,
        _url: &str,
        user_from_url: Option<&str>,
        allowed: CredentialType,
    ) -> Result<Cred, git2::Error> {
        if !self.in_time() {
            return Err(git2::Error::from_str("timed out"));
        }
        let s = self.settings;
        if allowed.contains(CredentialType::USERNAME) {
            // SSH asks for the user name first when the URL has none; not an attempt.
            return Cred::username(s.username.as_deref().unwrap_or("git"));
        }
        *attempts += 1;
        let from_url = url_credentials(&s.url);
        let url_password = from_url.as_ref().and_then(|c| c.password.as_ref());
        if *attempts > MAX_AUTH_ATTEMPTS {
            let what = if !allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
                "the SSH key was rejected"
            } else if s.token_file.is_none() && url_password.is_some() {
                "the user name and password in source.url were rejected (a token belongs in \
                 source.token_file)"
            } else {
                "the token in source.token_file (and source.username) was rejected"
            };
            return Err(self.fail(format!(
                "authentication failed after {MAX_AUTH_ATTEMPTS} attempts: {what}"
            )));
        }
        if allowed.contains(CredentialType::SSH_KEY) {
            let user = user_from_url.or(s.username.as_deref()).unwrap_or("git");
            return match &s.ssh_key {
                Some(key) => Cred::ssh_key(user, None, key, None).map_err(|e| {
                    self.fail(format!(
                        "cannot use source.ssh_key {}: {}",
                        key.display(),
                        e.message()
                    ))
                }),
                None => Cred::ssh_key_from_agent(user),
            };
        }
        if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
            let Some(path) = &s.token_file else {
                // Credentials written in source.url: the clone's config holds the URL without them
                // (see `remote_url`), so they are given here, the way a token is.
                if let (Some(c), Some(password)) = (&from_url, url_password) {
                    self.secrets.borrow_mut().push(password.clone());
                    return Cred::userpass_plaintext(&c.user, password);
                }
                return Err(self.fail(
                    "the remote asks for credentials; set source.token_file (and source.username)"
                        .into(),
                ));
            };
            let token = std::fs::read_to_string(path).map_err(|e| {
                self.fail(format!(
                    "cannot read source.token_file {}: {e}",
                    path.display()
                ))
            })?;
            let token = token.trim().to_string();
            if token.is_empty() {
                return Err(self.fail(format!("source.token_file {} is empty", path.display())));
            }
            crate::telemetry::log_secrets().add(&token);
            self.secrets.borrow_mut().push(token.clone());
            let url_user = from_url.as_ref().map(|c| c.user.as_str());
            let user = s
                .username
                .as_deref()
                .or(user_from_url)
                .or(url_user.filter(|u| !u.is_empty()))
                .unwrap_or(DEFAULT_TOKEN_USER);
            return Cred::userpass_plaintext(user, &token);
        }
        Err(self.fail(format!(
            "the remote asks for credentials berth cannot provide ({allowed:?}); berth sends a token \
             (source.token_file) over HTTPS or a key (source.ssh_key / ssh-agent) over SSH"
        )))
    }

    fn certificate_check(
        &self,
        cert: &Cert<'_>,
        host: &str,
    ) -> Result<CertificateCheckStatus, git2::Error> {
        let (Some(hostkey), Some(path)) = (cert.as_hostkey(), &self.settings.known_hosts) else {
            // TLS: libgit2 verifies against the system CA store. SSH without source.known_hosts: libgit2
            // checks the service user's ~/.ssh/known_hosts and refuses unknown hosts.
            return Ok(CertificateCheckStatus::CertificatePassthrough);
        };
        let Some(key) = hostkey.hostkey() else {
            return Err(self.fail(format!("the SSH server {host} sent no usable host key")));
        };
        let fingerprint = hostkey
            .hash_sha256()
            .map(|h| format!(" (SHA256:{})", known_hosts::base64_encode_nopad(h)))
            .unwrap_or_default();
        let text = std::fs::read_to_string(path).map_err(|e| {
            self.fail(format!(
                "cannot read source.known_hosts {}: {e}",
                path.display()
            ))
        })?;
        let name = known_hosts::host_name(host, ssh_port(&self.settings.url));
        match known_hosts::check(&text, &name, key) {
            HostKeyCheck::Match => Ok(CertificateCheckStatus::CertificateOk),
            HostKeyCheck::Mismatch => Err(self.fail(format!(
                "host key verification failed: the host key of {name}{fingerprint} is not the one \
                 listed in {} (changed host key, or only keys of other types are listed)",
                path.display()
            ))),
            HostKeyCheck::Revoked => Err(self.fail(format!(
                "host key verification failed: the host key of {name}{fingerprint} is revoked in {}",
                path.display()
            ))),
            HostKeyCheck::Unknown => Err(self.fail(format!(
                "host key verification failed: {name}{fingerprint} is not listed in {}",
                path.display()
            ))),
        }
    }

    /// A redacted, human message for a failed libgit2 call.
    pub(crate) fn describe(&self, e: &git2::Error) -> String {
        let message = if self.timed_out.get()
            || e.code() == ErrorCode::Timeout
            || e.message().contains("timed out")
        {
            format!(
                "timed out after {}s (source.timeout): {}",
                self.settings.timeout.as_secs_f64(),
                e.message()
            )
        } else if let Some(reason) = self.reason.borrow().clone() {
            reason
        } else {
            match e.code() {
                ErrorCode::Auth => format!("authentication failed: {}", e.message()),
                ErrorCode::Certificate if e.class() == git2::ErrorClass::Ssh => format!(
                    "host key verification failed: {} (list the server in source.known_hosts or the \
                     service user's ~/.ssh/known_hosts)",
                    e.message()
                ),
                ErrorCode::Certificate => {
                    format!("TLS certificate verification failed: {}", e.message())
                }
                _ => e.message().to_string(),
            }
        };
        self.scrub(&message)
    }

    /// Redact URLs and remove every secret value this session has seen.
    pub(crate) fn scrub(&self, message: &str) -> String {
        let mut out = redact(message);
        for s in self.secrets.borrow().iter() {
            out = scrub_secret(&out, s);
        }
        if let Some(p) = url_password(&self.settings.url) {
            out = scrub_secret(&out, &p);
        }
        out
    }
}

/// Replace every occurrence of `secret` with `***`.
pub(crate) fn scrub_secret(message: &str, secret: &str) -> String {
    if secret.is_empty() {
        message.to_string()
    } else {
        message.replace(secret, "***")
    }
}

/// The user info written in a URL, percent-decoded.
pub(crate) struct UrlCredentials {
    /// Empty when only a password is written (`https://:pw@host`).
    pub(crate) user: String,
    pub(crate) password: Option<String>,
}

/// The user name and password written in `url` (`https://user:pass@host/…`), if any.
pub(crate) fn url_credentials(url: &str) -> Option<UrlCredentials> {
    let u = url::Url::parse(url).ok()?;
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let user = decode(u.username());
    let password = u.password().map(decode).filter(|p| !p.is_empty());
    (!user.is_empty() || password.is_some()).then_some(UrlCredentials { user, password })
}

/// The password part of a URL's user info, if any (percent-decoded).
fn url_password(url: &str) -> Option<String> {
    url_credentials(url)?.password
}

/// `url` as the clone's config keeps it: never with a password, and for http(s) without any user info
/// (a user name there may be a token). Credentials are given by the credential callback instead. A URL
/// without credentials (or that is not a URL: a path, `git@host:repo`) is kept as written.
pub(crate) fn remote_url(url: &str) -> String {
    let Ok(mut u) = url::Url::parse(url) else {
        return url.to_string();
    };
    let http = matches!(u.scheme(), "http" | "https");
    if u.password().is_none() && !(http && !u.username().is_empty()) {
        return url.to_string();
    }
    let _ = u.set_password(None);
    if http {
        let _ = u.set_username("");
    }
    u.to_string()
}

/// The port of an SSH URL (`ssh://[user@]host[:port]/path` or scp-like `[user@]host:path`), 22 by default.
pub(crate) fn ssh_port(url: &str) -> u16 {
    let Some(rest) = url
        .strip_prefix("ssh://")
        .or_else(|| url.strip_prefix("ssh+git://"))
    else {
        return 22;
    };
    let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
    let hostport = &authority[authority.rfind('@').map_or(0, |i| i + 1)..];
    let port = match hostport.rfind(']') {
        Some(close) => hostport[close + 1..].strip_prefix(':'),
        None => hostport.rsplit_once(':').map(|(_, p)| p),
    };
    port.and_then(|p| p.parse().ok()).unwrap_or(22)
}

/// Whether libgit2 will use its local transport (no network; no shallow fetches) for this URL.
pub(crate) fn is_local(url: &str) -> bool {
    url.starts_with("file://") || (!url.contains("://") && std::path::Path::new(url).exists())
}

/// libgit2's connect and read/write timeouts are process-wide; set them to `source.timeout` (they apply to
/// git://, http(s):// and ssh:// sockets). Only one agent runs per process, so "last set wins" is right; the
/// mutex only keeps concurrent callers (tests) from racing on the C global.
fn apply_global_timeouts(timeout: Duration) {
    static CURRENT: Mutex<Option<i32>> = Mutex::new(None);
    let ms = i32::try_from(timeout.as_millis())
        .unwrap_or(i32::MAX)
        .max(1);
    let mut current = CURRENT.lock().unwrap_or_else(|p| p.into_inner());
    if *current != Some(ms) {
        // SAFETY: libgit2 stores plain ints read when a socket is opened; calls are serialised by the mutex.
        unsafe {
            let _ = git2::opts::set_server_connect_timeout_in_milliseconds(ms);
            let _ = git2::opts::set_server_timeout_in_milliseconds(ms);
        }
        *current = Some(ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_ports() {
        assert_eq!(ssh_port("ssh://git@example.com/x.git"), 22);
        assert_eq!(ssh_port("ssh://git@example.com:2222/x.git"), 2222);
        assert_eq!(ssh_port("ssh://[::1]:2200/x.git"), 2200);
        assert_eq!(ssh_port("ssh://[::1]/x.git"), 22);
        assert_eq!(ssh_port("git@example.com:fleet/x.git"), 22);
        assert_eq!(ssh_port("https://example.com:8443/x.git"), 22);
    }

    #[test]
    fn the_clone_keeps_urls_without_credentials() {
        assert_eq!(remote_url("https://u:p4ss@h/x.git"), "https://h/x.git");
        assert_eq!(remote_url("https://ghp_tok@h:8443/x"), "https://h:8443/x");
        assert_eq!(remote_url("ssh://git:pw@h/x.git"), "ssh://git@h/x.git");
        for kept in [
            "ssh://git@h/x.git",
            "https://h/x.git",
            "git@h:fleet.git",
            "/srv/git/x",
            "file:///srv/git/x",
        ] {
            assert_eq!(remote_url(kept), kept);
        }
        let c = url_credentials("https://dep%40loy:p%3Ass@h/x").unwrap();
        assert_eq!(
            (c.user.as_str(), c.password.as_deref()),
            ("dep@loy", Some("p:ss"))
        );
        assert!(url_credentials("https://h/x").is_none());
    }

    #[test]
    fn passwords_in_urls() {
        assert_eq!(url_password("https://u:p4ss@h/x").as_deref(), Some("p4ss"));
        assert_eq!(url_password("https://u@h/x"), None);
        assert_eq!(url_password("/srv/git/x"), None);
        assert_eq!(scrub_secret("a tok b tok", "tok"), "a *** b ***");
        assert_eq!(scrub_secret("abc", ""), "abc");
    }

    #[test]
    fn credentials_in_the_url_are_masked_in_logs_once_a_fetch_starts() {
        let masked = |v: &str| crate::telemetry::log_secrets().redact(v.as_bytes()) == b"***";
        let settings = |url: &str| SourceSettings {
            url: url.into(),
            reference: crate::source::GitRef::Branch("main".into()),
            path: ".".into(),
            interval: Duration::from_secs(60),
            timeout: Duration::from_secs(5),
            ssh_key: None,
            known_hosts: None,
            token_file: None,
            username: None,
            verify: Default::default(),
        };
        for url in [
            "https://deploy:url-pw-5a1c@h/x",
            "https://ghp-token-8e2f@h/x",
            "ssh://gitlab-runner-77@h/x",
        ] {
            drop(Session::new(&settings(url)));
        }
        assert!(masked("url-pw-5a1c") && masked("ghp-token-8e2f"));
        assert!(
            !masked("deploy") && !masked("gitlab-runner-77"),
            "a user name beside a password, or over ssh, is no secret"
        );
    }

    #[test]
    fn local_urls() {
        let d = tempfile::tempdir().unwrap();
        assert!(is_local(&format!("file://{}", d.path().display())));
        assert!(is_local(&d.path().display().to_string()));
        assert!(!is_local("git://127.0.0.1/x"));
        assert!(!is_local("git@example.com:x.git"));
    }
}
