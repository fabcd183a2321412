//! SSH signatures (git's `gpg.format = ssh`): the `SSH SIGNATURE` block is checked with `ssh-key`'s
//! sshsig support, and its key looked up in an `allowed_signers` file as `ssh-keygen -Y verify` reads it:
//! `principals [options] keytype base64 [comment]`, options `namespaces="…"`, `valid-after="…"`,
//! `valid-before="…"` (`YYYYMMDD[HHMM[SS]]`, local time, or UTC with a trailing `Z`) and
//! `cert-authority` (certificates are not supported: such lines never match). A line that does not parse
//! is skipped with a warning naming it, as ssh-keygen does.

use super::{read_trust_file, Signer, VerifyError};
use jiff::tz::TimeZone;
use jiff::Timestamp;
use ssh_key::authorized_keys::ConfigOpts;
use ssh_key::public::KeyData;
use ssh_key::{HashAlg, PublicKey, SshSig};
use std::path::Path;

/// The namespace git signs in.
const NAMESPACE: &str = "git";

/// One usable line of an `allowed_signers` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Line {
    /// As written (comma-separated patterns).
    pub principals: String,
    pub key: KeyData,
    /// `None`: every namespace.
    pub namespaces: Option<Vec<String>>,
    pub valid_after: Option<(Timestamp, String)>,
    pub valid_before: Option<(Timestamp, String)>,
    pub cert_authority: bool,
}

/// Why a line was skipped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum LineError {
    #[error("unterminated quoted principals")]
    Unterminated,
    #[error("no key after the principals")]
    NoKey,
    #[error("the key or its options cannot be read")]
    Key,
    #[error("unknown option {0:?}")]
    UnknownOption(String),
    #[error("option {0} needs a value")]
    NoValue(&'static str),
    #[error("{option}: {value:?} is not a time (YYYYMMDD, YYYYMMDDHHMM or YYYYMMDDHHMMSS, optionally ending in Z)")]
    Time { option: &'static str, value: String },
}

/// Parse an `allowed_signers` text: the usable lines, and the skipped ones (1-based line number, reason).
/// Times without `Z` are in `tz`.
pub(super) fn parse(text: &str, tz: &TimeZone) -> (Vec<Line>, Vec<(usize, LineError)>) {
    let mut lines = Vec::new();
    let mut skipped = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        match parse_line(l, tz) {
            Ok(line) => lines.push(line),
            Err(e) => skipped.push((i + 1, e)),
        }
    }
    (lines, skipped)
}

fn parse_line(line: &str, tz: &TimeZone) -> Result<Line, LineError> {
    let (principals, rest) = match line.strip_prefix('"') {
        Some(quoted) => quoted.split_once('"').ok_or(LineError::Unterminated)?,
        None => line
            .split_once(char::is_whitespace)
            .ok_or(LineError::NoKey)?,
    };
    // `[options] keytype base64 [comment]` is what an authorized_keys line holds: ssh-key reads the key
    // and the options (their quoting included). Fields are separated by single spaces there.
    let rest = rest.split_whitespace().collect::<Vec<_>>().join(" ");
    if rest.is_empty() {
        return Err(LineError::NoKey);
    }
    let (opts, key) = match PublicKey::from_openssh(&rest) {
        Ok(key) => (ConfigOpts::default(), key),
        Err(_) => {
            let (opts, key) = rest.split_once(' ').ok_or(LineError::Key)?;
            (
                ConfigOpts::new(opts).map_err(|_| LineError::Key)?,
                PublicKey::from_openssh(key).map_err(|_| LineError::Key)?,
            )
        }
    };
    let mut out = Line {
        principals: principals.to_string(),
        key: key.key_data().clone(),
        namespaces: None,
        valid_after: None,
        valid_before: None,
        cert_authority: false,
    };
    for opt in opts.iter() {
        let (name, value) = match opt.split_once('=') {
            Some((n, v)) => (n, Some(unquote(v))),
            None => (opt, None),
        };
        match name.to_ascii_lowercase().as_str() {
            "cert-authority" => out.cert_authority = true,
            "namespaces" => {
                let v = value.ok_or(LineError::NoValue("namespaces"))?;
                out.namespaces = Some(v.split(',').map(|s| s.trim().to_string()).collect());
            }
            "valid-after" => {
                let v = value.ok_or(LineError::NoValue("valid-after"))?;
                out.valid_after = Some((parse_time("valid-after", v, tz)?, v.to_string()));
            }
            "valid-before" => {
                let v = value.ok_or(LineError::NoValue("valid-before"))?;
                out.valid_before = Some((parse_time("valid-before", v, tz)?, v.to_string()));
            }
            _ => return Err(LineError::UnknownOption(name.to_string())),
        }
    }
    Ok(out)
}

fn unquote(v: &str) -> &str {
    v.strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(v)
}

/// `YYYYMMDD`, `YYYYMMDDHHMM` or `YYYYMMDDHHMMSS`, in `tz` unless it ends in `Z` (UTC), as ssh-keygen
/// reads `valid-after`/`valid-before`.
fn parse_time(option: &'static str, value: &str, tz: &TimeZone) -> Result<Timestamp, LineError> {
    let bad = || LineError::Time {
        option,
        value: value.to_string(),
    };
    let (digits, tz) = match value.strip_suffix(['Z', 'z']) {
        Some(d) => (d, TimeZone::UTC),
        None => (value, tz.clone()),
    };
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    if ![8, 12, 14].contains(&digits.len()) {
        return Err(bad());
    }
    // The shorter forms mean midnight and a whole minute.
    let padded = format!("{digits:0<14}");
    let dt = jiff::civil::DateTime::strptime("%Y%m%d%H%M%S", &padded).map_err(|_| bad())?;
    tz.to_ambiguous_timestamp(dt)
        .compatible()
        .map_err(|_| bad())
}

/// Check an SSH signature over `payload` against the `allowed_signers` file at `path`.
pub(super) fn check(
    armored: &[u8],
    payload: &[u8],
    subject: &str,
    path: &Path,
    now: Timestamp,
) -> Result<Signer, VerifyError> {
    let malformed = |reason: String| VerifyError::Malformed {
        subject: subject.into(),
        reason,
    };
    let sig = SshSig::from_pem(armored).map_err(|e| malformed(e.to_string()))?;
    let key = PublicKey::from(sig.public_key().clone());
    let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
    let data = read_trust_file("allowed_signers", path)?;
    let text = String::from_utf8_lossy(&data);
    let (lines, skipped) = parse(&text, &TimeZone::system());
    for (n, e) in &skipped {
        tracing::warn!(file = %path.display(), line = n, error = %e, "allowed_signers: line skipped");
    }
    let mine: Vec<&Line> = lines
        .iter()
        .filter(|l| !l.cert_authority && l.key == *sig.public_key())
        .collect();
    if mine.is_empty() {
        return Err(VerifyError::UnknownKey {
            subject: subject.into(),
            fingerprint,
        });
    }
    key.verify(NAMESPACE, payload, &sig)
        .map_err(|e| VerifyError::BadSignature {
            subject: subject.into(),
            fingerprint: fingerprint.clone(),
            reason: match e {
                ssh_key::Error::Namespace => {
                    format!("made for namespace {:?}, not \"git\"", sig.namespace())
                }
                other => other.to_string(),
            },
        })?;
    let for_git: Vec<&Line> = mine
        .into_iter()
        .filter(|l| {
            l.namespaces
                .as_ref()
                .is_none_or(|ns| ns.iter().any(|n| glob(n, NAMESPACE)))
        })
        .collect();
    let mut refusal = None;
    for l in &for_git {
        match validity(l, now) {
            Ok(()) => {
                return Ok(Signer {
                    principal: l.principals.clone(),
                    fingerprint,
                    tag: None,
                })
            }
            Err(e) => refusal = refusal.or(Some(e)),
        }
    }
    Err(match refusal {
        Some(Validity::Expired(detail)) => VerifyError::Expired {
            subject: subject.into(),
            fingerprint,
            detail,
        },
        Some(Validity::NotYet(detail)) => VerifyError::NotYetValid {
            subject: subject.into(),
            fingerprint,
            detail,
        },
        None => VerifyError::Namespace {
            subject: subject.into(),
            fingerprint,
            path: path.to_path_buf(),
        },
    })
}

enum Validity {
    Expired(String),
    NotYet(String),
}

/// ssh-keygen's rule: valid from `valid-after`, until and including `valid-before`.
fn validity(l: &Line, now: Timestamp) -> Result<(), Validity> {
    if let Some((after, text)) = &l.valid_after {
        if now < *after {
            return Err(Validity::NotYet(format!("valid-after {text}")));
        }
    }
    if let Some((before, text)) = &l.valid_before {
        if now > *before {
            return Err(Validity::Expired(format!("valid-before {text} has passed")));
        }
    }
    Ok(())
}

/// ssh's pattern match for one pattern: `*` any run, `?` one character; iterative, O(len²) at worst.
pub(super) fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}
