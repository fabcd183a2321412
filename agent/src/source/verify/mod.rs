//! Signature verification (`source.verify`): before a fetched commit is rendered, its signature (mode
//! `head`) or the signature of the annotated tag the box follows (mode `tag`) is checked against the
//! operator's trust files — SSH signatures against an `allowed_signers` file (`ssh.rs`, the format of
//! git's `gpg.ssh.allowedSignersFile`), OpenPGP signatures against an armored keyring (`openpgp.rs`).
//! Git and GnuPG are never run: git2 hands out the signed data, `ssh-key` and `pgp` check it.
//!
//! Decisions:
//! - **Files are read at every verification** (each new commit), so a rotated key needs no restart; a
//!   missing or unreadable trust file is an error of that cycle (retried with backoff), never a crash.
//! - **Time.** Key validity (`valid-after`/`valid-before`, OpenPGP expiry and revocation) is judged at the
//!   time of verification, not at the commit's time: the committer chooses the commit time, so a leaked
//!   key that expired could otherwise sign "old" commits forever.
//! - **Who signed** is kept with the applied revision ([`Signer`]): the principal of the matching
//!   `allowed_signers` line or the key's primary user id, and the key fingerprint (`SHA256:…` for SSH,
//!   the OpenPGP fingerprint in hex). Errors name the fingerprint, never key material.
//! - **Tags** carry their signature appended to the tag object; it is split off where git splits it (the
//!   last line that starts a signature block), and the tag must still name the commit being applied.

mod openpgp;
mod ssh;

#[cfg(test)]
mod tests;

use super::GitSource;
use crate::config::GitRef;
use crate::error::ErrorClass;
use git2::{ErrorCode, ObjectType, Oid, Repository};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A trust file (or one keyring file) larger than this is refused.
const MAX_TRUST_FILE: u64 = 1024 * 1024;
/// At most this many files are read from a keyring directory.
const MAX_KEYRING_FILES: usize = 256;

/// What must be signed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum VerifyMode {
    /// Nothing is checked.
    #[default]
    Off,
    /// The commit to apply must carry a valid signature.
    Head,
    /// The annotated tag the box follows (`source.tag`) must carry a valid signature.
    Tag,
}

impl VerifyMode {
    fn as_str(self) -> &'static str {
        match self {
            VerifyMode::Off => "off",
            VerifyMode::Head => "head",
            VerifyMode::Tag => "tag",
        }
    }
}

/// `source.verify`, validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifySettings {
    pub mode: VerifyMode,
    /// SSH signers, in git's `gpg.ssh.allowedSignersFile` format.
    pub allowed_signers: Option<PathBuf>,
    /// ASCII-armored OpenPGP public keys: one file, or a directory of them.
    pub keyring: Option<PathBuf>,
}

/// `source.verify` as written.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawVerify {
    mode: Option<String>,
    allowed_signers: Option<PathBuf>,
    keyring: Option<PathBuf>,
}

/// Validate `source.verify` (every problem pushed to `problems`). The files are not opened here: they are
/// read at each verification.
pub fn settings(
    raw: Option<RawVerify>,
    reference: &GitRef,
    problems: &mut Vec<String>,
) -> VerifySettings {
    let raw = raw.unwrap_or_default();
    let mode = match raw.mode.as_deref() {
        None | Some("off") => VerifyMode::Off,
        Some("head") => VerifyMode::Head,
        Some("tag") => VerifyMode::Tag,
        Some(other) => {
            problems.push(format!(
                "source.verify.mode: {other:?} is not one of head, tag, off"
            ));
            VerifyMode::Off
        }
    };
    for (key, path) in [
        ("allowed_signers", &raw.allowed_signers),
        ("keyring", &raw.keyring),
    ] {
        if let Some(p) = path {
            if !p.is_absolute() {
                problems.push(format!(
                    "source.verify.{key}: {} must be an absolute path",
                    p.display()
                ));
            }
        }
    }
    if mode != VerifyMode::Off && raw.allowed_signers.is_none() && raw.keyring.is_none() {
        problems.push(format!(
            "source.verify: mode {} needs allowed_signers (SSH signatures) or keyring (OpenPGP)",
            mode.as_str()
        ));
    }
    if mode == VerifyMode::Tag && !matches!(reference, GitRef::Tag(_)) {
        problems.push("source.verify: mode tag needs source.tag (the tag to follow)".into());
    }
    VerifySettings {
        mode,
        allowed_signers: raw.allowed_signers,
        keyring: raw.keyring,
    }
}

/// Who signed an applied commit (or the tag naming it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signer {
    /// The principal of the matching `allowed_signers` line, or the OpenPGP key's primary user id.
    pub principal: String,
    /// `SHA256:…` (SSH) or the OpenPGP fingerprint in hex.
    pub fingerprint: String,
    /// The signed tag, in `tag` mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

impl std::fmt::Display for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.principal, self.fingerprint)?;
        if let Some(t) = &self.tag {
            write!(f, " on tag {t}")?;
        }
        Ok(())
    }
}

/// Why a commit (or its tag) was refused. `subject` is `commit` or `tag <name>`.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("unsigned {subject} (source.verify.mode: {mode})")]
    Unsigned { subject: String, mode: &'static str },
    #[error("{subject} signed by an unknown key {fingerprint}")]
    UnknownKey {
        subject: String,
        fingerprint: String,
    },
    #[error("{subject} signed by key {fingerprint}, which {path} does not allow to sign for namespace \"git\"")]
    Namespace {
        subject: String,
        fingerprint: String,
        path: PathBuf,
    },
    #[error("{subject} signed by an expired key {fingerprint} ({detail})")]
    Expired {
        subject: String,
        fingerprint: String,
        detail: String,
    },
    #[error("{subject} signed by key {fingerprint}, which is not valid yet ({detail})")]
    NotYetValid {
        subject: String,
        fingerprint: String,
        detail: String,
    },
    #[error("{subject} signed by a revoked key {fingerprint}")]
    Revoked {
        subject: String,
        fingerprint: String,
    },
    #[error("{subject}: bad signature by key {fingerprint}: {reason}")]
    BadSignature {
        subject: String,
        fingerprint: String,
        reason: String,
    },
    #[error("{subject}: the signature cannot be read: {reason}")]
    Malformed { subject: String, reason: String },
    #[error("{subject} is signed with {format}, but source.verify.{key} is not set")]
    NoTrustFile {
        subject: String,
        format: &'static str,
        key: &'static str,
    },
    #[error("source.verify.{key} {}: {source}", path.display())]
    Unreadable {
        key: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("source.verify.{key} {}: {reason}", path.display())]
    BadTrustFile {
        key: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("tag {tag} no longer names this commit (it moved while the commit was checked)")]
    TagMoved { tag: String },
    #[error("cannot read {subject} from the local repository: {message}")]
    Git { subject: String, message: String },
}

impl VerifyError {
    /// Trust files the operator can fix and a moved tag are retried; a bad signature is the commit's
    /// fault (not retried until the remote moves); a clone that cannot be read is the agent's problem.
    pub fn class(&self) -> ErrorClass {
        match self {
            VerifyError::Unreadable { .. }
            | VerifyError::BadTrustFile { .. }
            | VerifyError::TagMoved { .. } => ErrorClass::Transient,
            VerifyError::Git { .. } => ErrorClass::Internal,
            _ => ErrorClass::Input,
        }
    }
}

/// Check the signature of commit `oid` (mode `head`).
pub fn verify_commit(
    repo: &Repository,
    oid: Oid,
    settings: &VerifySettings,
    now: jiff::Timestamp,
) -> Result<Signer, VerifyError> {
    let subject = "commit".to_string();
    let (signature, payload) = match repo.extract_signature(&oid, None) {
        Ok(v) => v,
        Err(e) if e.code() == ErrorCode::NotFound => {
            return Err(VerifyError::Unsigned {
                subject,
                mode: VerifyMode::Head.as_str(),
            })
        }
        Err(e) => {
            return Err(VerifyError::Git {
                subject,
                message: e.message().to_string(),
            })
        }
    };
    check(&signature, &payload, &subject, settings, now)
}

/// Check the signature of annotated tag `tag`, which must name commit `commit` (mode `tag`).
pub fn verify_tag(
    repo: &Repository,
    tag: &str,
    commit: Oid,
    settings: &VerifySettings,
    now: jiff::Timestamp,
) -> Result<Signer, VerifyError> {
    let subject = format!("tag {tag}");
    let git = |e: git2::Error| VerifyError::Git {
        subject: subject.clone(),
        message: e.message().to_string(),
    };
    let target = repo
        .find_reference(&format!("refs/tags/{tag}"))
        .map_err(git)?
        .target()
        .ok_or_else(|| VerifyError::Git {
            subject: subject.clone(),
            message: "the tag is a symbolic reference".into(),
        })?;
    let object = repo.find_object(target, None).map_err(git)?;
    let peeled = object.peel_to_commit().map_err(git)?.id();
    if peeled != commit {
        return Err(VerifyError::TagMoved { tag: tag.into() });
    }
    if object.kind() != Some(ObjectType::Tag) {
        return Err(VerifyError::Unsigned {
            subject: format!("{subject} (a lightweight tag, which cannot carry a signature)"),
            mode: VerifyMode::Tag.as_str(),
        });
    }
    let odb = repo.odb().map_err(git)?;
    let raw = odb.read(target).map_err(git)?;
    let Some((payload, signature)) = split_signed(raw.data()) else {
        return Err(VerifyError::Unsigned {
            subject,
            mode: VerifyMode::Tag.as_str(),
        });
    };
    let signer = check(signature, payload, &subject, settings, now)?;
    Ok(Signer {
        tag: Some(tag.to_string()),
        ..signer
    })
}

/// Where git splits a signed tag (gpg-interface.c `parse_signed_buffer`): at the last line that opens a
/// signature block. `None`: no signature.
fn split_signed(raw: &[u8]) -> Option<(&[u8], &[u8])> {
    const OPENERS: [&[u8]; 4] = [
        b"-----BEGIN PGP SIGNATURE-----",
        b"-----BEGIN PGP MESSAGE-----",
        b"-----BEGIN SSH SIGNATURE-----",
        b"-----BEGIN SIGNED MESSAGE-----",
    ];
    let mut found = None;
    let mut start = 0;
    while start < raw.len() {
        let line = &raw[start..];
        if OPENERS.iter().any(|o| line.starts_with(o)) {
            found = Some(start);
        }
        start = match line.iter().position(|b| *b == b'\n') {
            Some(i) => start + i + 1,
            None => raw.len(),
        };
    }
    found.map(|i| raw.split_at(i))
}

/// Check `signature` over `payload` with the trust file of its format.
pub fn check(
    signature: &[u8],
    payload: &[u8],
    subject: &str,
    settings: &VerifySettings,
    now: jiff::Timestamp,
) -> Result<Signer, VerifyError> {
    let text = signature.trim_ascii_start();
    if text.starts_with(b"-----BEGIN SSH SIGNATURE-----") {
        let Some(path) = &settings.allowed_signers else {
            return Err(VerifyError::NoTrustFile {
                subject: subject.into(),
                format: "an SSH key",
                key: "allowed_signers",
            });
        };
        ssh::check(text, payload, subject, path, now)
    } else if text.starts_with(b"-----BEGIN PGP SIGNATURE-----") {
        let Some(path) = &settings.keyring else {
            return Err(VerifyError::NoTrustFile {
                subject: subject.into(),
                format: "an OpenPGP key",
                key: "keyring",
            });
        };
        openpgp::check(text, payload, subject, path, now)
    } else {
        Err(VerifyError::Malformed {
            subject: subject.into(),
            reason: "neither an SSH nor an OpenPGP signature (X.509 signatures are not supported)"
                .into(),
        })
    }
}

/// Read a trust file, bounded.
fn read_trust_file(key: &'static str, path: &Path) -> Result<Vec<u8>, VerifyError> {
    use std::io::Read;
    let unreadable = |source| VerifyError::Unreadable {
        key,
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(unreadable)?;
    let mut data = Vec::new();
    file.take(MAX_TRUST_FILE + 1)
        .read_to_end(&mut data)
        .map_err(unreadable)?;
    if data.len() as u64 > MAX_TRUST_FILE {
        return Err(VerifyError::BadTrustFile {
            key,
            path: path.to_path_buf(),
            reason: format!("larger than {MAX_TRUST_FILE} bytes"),
        });
    }
    Ok(data)
}

impl GitSource {
    /// Check commit `id` as `source.verify` asks: `Ok(None)` when verification is off.
    pub fn verify(&self, id: &str, now: jiff::Timestamp) -> Result<Option<Signer>, VerifyError> {
        let settings = &self.settings.verify;
        if settings.mode == VerifyMode::Off {
            return Ok(None);
        }
        let oid = self.require_commit(id).map_err(|e| VerifyError::Git {
            subject: "commit".into(),
            message: e.to_string(),
        })?;
        let signer = match (settings.mode, &self.settings.reference) {
            (VerifyMode::Tag, GitRef::Tag(tag)) => verify_tag(&self.repo, tag, oid, settings, now)?,
            (VerifyMode::Tag, other) => {
                return Err(VerifyError::Git {
                    subject: "commit".into(),
                    message: format!("source.verify.mode tag needs source.tag, not {other}"),
                })
            }
            _ => verify_commit(&self.repo, oid, settings, now)?,
        };
        tracing::info!(commit = %oid, signer = %signer, "signature verified");
        Ok(Some(signer))
    }
}
