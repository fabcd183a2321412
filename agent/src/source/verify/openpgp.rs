//! OpenPGP signatures (git's default `gpg.format`): the `PGP SIGNATURE` block is checked with rPGP
//! (`pgp`) against the keys of `source.verify.keyring` — one file, or every regular file of a directory
//! (hidden files skipped), each holding one or more ASCII-armored (or binary) public keys.
//!
//! The key that made the signature (the primary key or a signing subkey, found by the signature's issuer
//! fingerprint or key id) must be bound by a valid self-signature, not revoked and not expired now; a
//! subkey must be flagged for signing and carry its back-signature.

use super::{read_trust_file, Signer, VerifyError, MAX_KEYRING_FILES};
use jiff::Timestamp;
use pgp::composed::{Deserializable, DetachedSignature, SignedPublicKey};
use pgp::packet::{Signature, SignatureType};
use pgp::types::{KeyDetails, Tag};
use std::path::{Path, PathBuf};

const KEY_BLOCK: &[u8] = b"-----BEGIN PGP PUBLIC KEY BLOCK-----";

/// Check an OpenPGP signature over `payload` against the keyring at `path`.
pub(super) fn check(
    armored: &[u8],
    payload: &[u8],
    subject: &str,
    path: &Path,
    now: Timestamp,
) -> Result<Signer, VerifyError> {
    let (sig, _) =
        DetachedSignature::from_armor_single(armored).map_err(|e| VerifyError::Malformed {
            subject: subject.into(),
            reason: e.to_string(),
        })?;
    let sig = sig.signature;
    let keys = load_keyring(path)?;
    let issuer = issuer_name(&sig);
    for key in &keys {
        if let Some(found) = find_signing_key(key, &sig) {
            let fingerprint = hex::encode_upper(key.primary_key.fingerprint().as_bytes());
            let err = |e: KeyProblem| match e {
                KeyProblem::Revoked => VerifyError::Revoked {
                    subject: subject.into(),
                    fingerprint: fingerprint.clone(),
                },
                KeyProblem::Expired(at) => VerifyError::Expired {
                    subject: subject.into(),
                    fingerprint: fingerprint.clone(),
                    detail: format!("expired {at}"),
                },
                KeyProblem::Unbound(reason) => VerifyError::BadSignature {
                    subject: subject.into(),
                    fingerprint: fingerprint.clone(),
                    reason,
                },
            };
            primary_usable(key, now).map_err(err)?;
            let verified = match found {
                Found::Primary => sig.verify(&key.primary_key, payload),
                Found::Subkey(i) => {
                    let sub = &key.public_subkeys[i];
                    subkey_usable(key, i, now).map_err(err)?;
                    sig.verify(&sub.key, payload)
                }
            };
            verified.map_err(|e| VerifyError::BadSignature {
                subject: subject.into(),
                fingerprint: fingerprint.clone(),
                reason: e.to_string(),
            })?;
            return Ok(Signer {
                principal: primary_user(key),
                fingerprint,
                tag: None,
            });
        }
    }
    Err(VerifyError::UnknownKey {
        subject: subject.into(),
        fingerprint: issuer,
    })
}

enum Found {
    Primary,
    Subkey(usize),
}

enum KeyProblem {
    Revoked,
    Expired(Timestamp),
    Unbound(String),
}

/// The issuer as the signature names it: its fingerprint, else its key id.
fn issuer_name(sig: &Signature) -> String {
    if let Some(fp) = sig.issuer_fingerprint().first() {
        return hex::encode_upper(fp.as_bytes());
    }
    match sig.issuer_key_id().first() {
        Some(id) => format!("key id {}", hex::encode_upper(id)),
        None => "(the signature names no issuer)".into(),
    }
}

fn issued_by(sig: &Signature, key: &impl KeyDetails) -> bool {
    let fp = key.fingerprint();
    let id = key.legacy_key_id();
    sig.issuer_fingerprint().iter().any(|f| **f == fp)
        || sig.issuer_key_id().iter().any(|i| **i == id)
}

fn find_signing_key(key: &SignedPublicKey, sig: &Signature) -> Option<Found> {
    if issued_by(sig, &key.primary_key) {
        return Some(Found::Primary);
    }
    key.public_subkeys
        .iter()
        .position(|s| issued_by(sig, &s.key))
        .map(Found::Subkey)
}

fn secs(t: pgp::types::Timestamp) -> i64 {
    i64::from(t.as_secs())
}

/// When a component created at `created` expires under `sig` (`None`: never).
fn expiry(created: pgp::types::Timestamp, sig: &Signature) -> Option<Timestamp> {
    let d = sig.key_expiration_time()?.as_secs();
    if d == 0 {
        return None;
    }
    Timestamp::from_second(secs(created) + i64::from(d)).ok()
}

fn newest<'a>(sigs: impl Iterator<Item = &'a Signature>) -> Option<&'a Signature> {
    sigs.max_by_key(|s| s.created().map(secs).unwrap_or(i64::MIN))
}

/// The primary key: a valid self-signature, no valid revocation, not expired at `now`.
fn primary_usable(key: &SignedPublicKey, now: Timestamp) -> Result<(), KeyProblem> {
    let primary = &key.primary_key;
    if key
        .details
        .revocation_signatures
        .iter()
        .any(|s| s.verify_key(primary).is_ok())
    {
        return Err(KeyProblem::Revoked);
    }
    let certifications = key.details.users.iter().flat_map(|u| {
        u.signatures.iter().filter(move |s| {
            matches!(
                s.typ(),
                Some(
                    SignatureType::CertGeneric
                        | SignatureType::CertPersona
                        | SignatureType::CertCasual
                        | SignatureType::CertPositive
                )
            ) && s.verify_certification(primary, Tag::UserId, &u.id).is_ok()
        })
    });
    let direct = key
        .details
        .direct_signatures
        .iter()
        .filter(|s| s.verify_key(primary).is_ok());
    let Some(self_sig) = newest(certifications.chain(direct)) else {
        return Err(KeyProblem::Unbound(
            "the key has no valid self-signature".into(),
        ));
    };
    match expiry(primary.created_at(), self_sig) {
        Some(at) if at <= now => Err(KeyProblem::Expired(at)),
        _ => Ok(()),
    }
}

/// A signing subkey: a valid binding with the signing flag and its back-signature, not revoked, not
/// expired at `now`.
fn subkey_usable(key: &SignedPublicKey, i: usize, now: Timestamp) -> Result<(), KeyProblem> {
    let primary = &key.primary_key;
    let sub = &key.public_subkeys[i];
    let valid: Vec<&Signature> = sub
        .signatures
        .iter()
        .filter(|s| s.verify_subkey_binding(primary, &sub.key).is_ok())
        .collect();
    if valid
        .iter()
        .any(|s| s.typ() == Some(SignatureType::SubkeyRevocation))
    {
        return Err(KeyProblem::Revoked);
    }
    let binding = newest(
        valid
            .iter()
            .copied()
            .filter(|s| s.typ() == Some(SignatureType::SubkeyBinding)),
    )
    .ok_or_else(|| KeyProblem::Unbound("the subkey has no valid binding signature".into()))?;
    if !binding.key_flags().sign() {
        return Err(KeyProblem::Unbound(
            "the subkey is not flagged for signing".into(),
        ));
    }
    let back = binding
        .embedded_signature()
        .is_some_and(|b| b.verify_primary_key_binding(&sub.key, primary).is_ok());
    if !back {
        return Err(KeyProblem::Unbound(
            "the signing subkey has no valid back-signature".into(),
        ));
    }
    match expiry(sub.key.created_at(), binding) {
        Some(at) if at <= now => Err(KeyProblem::Expired(at)),
        _ => Ok(()),
    }
}

/// The primary user id (else the first), as text.
fn primary_user(key: &SignedPublicKey) -> String {
    let user = key
        .details
        .users
        .iter()
        .find(|u| u.is_primary())
        .or(key.details.users.first());
    match user {
        Some(u) => String::from_utf8_lossy(u.id.id()).into_owned(),
        None => "(no user id)".into(),
    }
}

/// Every key of the keyring file, or of every regular, non-hidden file of the keyring directory.
fn load_keyring(path: &Path) -> Result<Vec<SignedPublicKey>, VerifyError> {
    let unreadable = |source| VerifyError::Unreadable {
        key: "keyring",
        path: path.to_path_buf(),
        source,
    };
    let files: Vec<PathBuf> = if std::fs::metadata(path).map_err(unreadable)?.is_dir() {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(path).map_err(unreadable)? {
            let entry = entry.map_err(unreadable)?;
            let hidden = entry.file_name().to_string_lossy().starts_with('.');
            if !hidden && entry.path().is_file() {
                files.push(entry.path());
            }
        }
        files.sort();
        if files.len() > MAX_KEYRING_FILES {
            return Err(VerifyError::BadTrustFile {
                key: "keyring",
                path: path.to_path_buf(),
                reason: format!("more than {MAX_KEYRING_FILES} files"),
            });
        }
        files
    } else {
        vec![path.to_path_buf()]
    };
    let mut keys = Vec::new();
    for file in files {
        let data = read_trust_file("keyring", &file)?;
        let bad = |reason: String| VerifyError::BadTrustFile {
            key: "keyring",
            path: file.clone(),
            reason,
        };
        for block in key_blocks(&data) {
            let (parsed, _) = SignedPublicKey::from_reader_many(block)
                .map_err(|e| bad(format!("not an OpenPGP public key: {e}")))?;
            for key in parsed {
                keys.push(key.map_err(|e| bad(format!("cannot read a key: {e}")))?);
            }
        }
    }
    Ok(keys)
}

/// A file of several concatenated armored key blocks (`cat a.asc b.asc`), split at each block's start;
/// anything else (one block, binary keys) is one piece.
fn key_blocks(data: &[u8]) -> Vec<&[u8]> {
    let mut starts: Vec<usize> = Vec::new();
    let mut at = 0;
    while at < data.len() {
        if data[at..].starts_with(KEY_BLOCK) {
            starts.push(at);
        }
        at = match data[at..].iter().position(|b| *b == b'\n') {
            Some(i) => at + i + 1,
            None => data.len(),
        };
    }
    if starts.len() < 2 {
        return vec![data];
    }
    let mut blocks = Vec::new();
    for (n, s) in starts.iter().enumerate() {
        let end = starts.get(n + 1).copied().unwrap_or(data.len());
        blocks.push(&data[*s..end]);
    }
    blocks
}
