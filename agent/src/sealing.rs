//! The per-box key (`<state_dir>/box.key`) and what berth does with it: the secret strings of a revision
//! are sealed with it in the history store (XChaCha20-Poly1305, so rollback works offline with the
//! values), and container labels, status, `berth diff` and logs show a keyed digest (HMAC-SHA256) in
//! place of each secret value ([`Redactor`]). Losing the key loses only what it sealed: a rollback to
//! such a revision is refused with an error that names the key; nothing else depends on it.

use crate::model::DesiredState;
use crate::sensitive::Sensitive;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use std::borrow::Cow;
use std::fmt;
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The key's file name under `state_dir`.
pub const KEY_FILE: &str = "box.key";
/// The key file holds exactly this many random bytes.
pub const KEY_LEN: usize = 32;
/// What a sealed string starts with in the store: `berth-sealed:v1:<base64(nonce ‖ ciphertext)>`.
pub const SEALED_PREFIX: &str = "berth-sealed:v1:";
/// Beside a sealed desired state in the store: the sealed JSON list of its secret values, so a state
/// read back digests exactly the values its render did (and its spec hashes do not move).
pub const SEALED_VALUES: &str = "sealed_values";
/// Binds a sealed string to its use (a store record), so it cannot be passed off as anything else.
const AAD: &[u8] = b"berth store v1";
const NONCE_LEN: usize = 24;

/// The per-box key could not be read or made. Never quotes the key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("box key {}: cannot read it: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("box key {}: cannot create it: {source}", path.display())]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "box key {}: holds {len} bytes, not {KEY_LEN}: restore it from a backup (or move it aside to \
         start a new key; revisions sealed with the old one can then not be rolled back to)",
        path.display()
    )]
    Length { path: PathBuf, len: u64 },
    #[error("box key {}: group or others may read it (mode {mode:o}): chmod 600 it", path.display())]
    Mode { path: PathBuf, mode: u32 },
}

/// A sealed string could not be made or opened. Never quotes the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("a secret value cannot be sealed")]
    Seal,
    #[error("a sealed value is damaged (not base64 of a nonce and ciphertext)")]
    Malformed,
    #[error(
        "sealed secret values cannot be opened with this box's key ({KEY_FILE} lost or replaced since \
         they were sealed): restore {KEY_FILE} from a backup to roll back to this revision"
    )]
    Open,
    #[error("secret values cannot be sealed or opened: no box key is loaded")]
    NoKey,
}

/// The per-box key: one random secret, from which the sealing key and the digest key are derived
/// (HKDF-SHA256), so a digest never reveals anything about the sealing key. `Debug` prints nothing.
pub struct BoxKey {
    seal: XChaCha20Poly1305,
    digest: [u8; 32],
}

impl fmt::Debug for BoxKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BoxKey(..)")
    }
}

impl BoxKey {
    /// The key derived from `secret` (the key file's bytes).
    pub fn from_bytes(secret: &[u8; KEY_LEN]) -> BoxKey {
        let hk = hkdf::Hkdf::<Sha256>::new(None, secret);
        let mut seal = [0u8; 32];
        let mut digest = [0u8; 32];
        // 32 bytes is far below HKDF-SHA256's 8160-byte limit: expand cannot fail here.
        let _ = hk.expand(b"berth seal v1", &mut seal);
        let _ = hk.expand(b"berth digest v1", &mut digest);
        BoxKey {
            seal: XChaCha20Poly1305::new(&seal.into()),
            digest,
        }
    }

    /// `<state_dir>/box.key`, or `None` when there is none. A key that is unreadable, of the wrong
    /// length or readable by others is an error: berth never works around it.
    pub fn load(state_dir: &Path) -> Result<Option<BoxKey>, KeyError> {
        let path = state_dir.join(KEY_FILE);
        let read = |source| KeyError::Read {
            path: path.clone(),
            source,
        };
        let mut file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(read(e)),
        };
        let meta = file.metadata().map_err(read)?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError::Mode { path, mode });
        }
        if meta.len() != KEY_LEN as u64 {
            return Err(KeyError::Length {
                path,
                len: meta.len(),
            });
        }
        let mut secret = [0u8; KEY_LEN];
        file.read_exact(&mut secret).map_err(read)?;
        Ok(Some(BoxKey::from_bytes(&secret)))
    }

    /// [`BoxKey::load`], creating the key first when there is none: random bytes written to a private
    /// temporary file (mode 0600), synced, then linked into place, which fails rather than replace a
    /// key another process made meanwhile (that one is used). `true` when this call created it.
    pub fn load_or_create(state_dir: &Path) -> Result<(BoxKey, bool), KeyError> {
        if let Some(k) = Self::load(state_dir)? {
            return Ok((k, false));
        }
        let created = create(state_dir)?;
        match Self::load(state_dir)? {
            Some(k) => Ok((k, created)),
            None => Err(KeyError::Read {
                path: state_dir.join(KEY_FILE),
                source: std::io::ErrorKind::NotFound.into(),
            }),
        }
    }

    /// The keyed digest of `value`: HMAC-SHA256 with the digest key, hex.
    pub fn digest(&self, value: &str) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.digest)
            .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
        mac.update(value.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// `plaintext` sealed: [`SEALED_PREFIX`] and base64 of a random nonce and the ciphertext.
    pub fn seal(&self, plaintext: &str) -> Result<String, SealError> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let ciphertext = self
            .seal
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: AAD,
                },
            )
            .map_err(|_| SealError::Seal)?;
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&ciphertext);
        Ok(format!(
            "{SEALED_PREFIX}{}",
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes)
        ))
    }

    /// The plaintext of a string [`BoxKey::seal`] made with this key.
    pub fn unseal(&self, sealed: &str) -> Result<String, SealError> {
        let b64 = sealed
            .strip_prefix(SEALED_PREFIX)
            .ok_or(SealError::Malformed)?;
        let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(b64)
            .map_err(|_| SealError::Malformed)?;
        if bytes.len() < NONCE_LEN {
            return Err(SealError::Malformed);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let plain = self
            .seal
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: AAD,
                },
            )
            .map_err(|_| SealError::Open)?;
        String::from_utf8(plain).map_err(|_| SealError::Malformed)
    }
}

/// Write a new key next to where it belongs and link it into place (never over an existing one).
fn create(state_dir: &Path) -> Result<bool, KeyError> {
    let path = state_dir.join(KEY_FILE);
    let fail = |source| KeyError::Create {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(state_dir).map_err(fail)?;
    let tmp = state_dir.join(format!(".{KEY_FILE}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let secret = XChaCha20Poly1305::generate_key(&mut OsRng);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(&secret)?;
            f.sync_all()
        });
    let linked = written.and_then(|()| std::fs::hard_link(&tmp, &path));
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            // The new name is durable once the directory is.
            std::fs::File::open(state_dir)
                .and_then(|d| d.sync_all())
                .map_err(fail)?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(fail(e)),
    }
}

/// Replaces every secret value inside a text with its keyed digest (`<secret:HEX>`), or with `***`
/// when no key is loaded. Longer values are matched first, so a value that holds another is replaced
/// whole.
pub struct Redactor {
    values: Vec<String>,
    key: Option<Arc<BoxKey>>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Redactor({} values)", self.values.len())
    }
}

impl Redactor {
    pub fn new(sensitive: &Sensitive, key: Option<Arc<BoxKey>>) -> Redactor {
        let mut values: Vec<String> = sensitive.iter().map(str::to_owned).collect();
        values.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        Redactor { values, key }
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// What a secret value is shown as.
    pub fn mask(&self, value: &str) -> String {
        match &self.key {
            Some(k) => format!("<secret:{}>", k.digest(value)),
            None => "***".to_string(),
        }
    }

    /// `text` with every secret value in it masked.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if !self.values.iter().any(|v| text.contains(v.as_str())) {
            return Cow::Borrowed(text);
        }
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        'scan: while !rest.is_empty() {
            for v in &self.values {
                if let Some(after) = rest.strip_prefix(v.as_str()) {
                    out.push_str(&self.mask(v));
                    rest = after;
                    continue 'scan;
                }
            }
            let mut chars = rest.chars();
            if let Some(c) = chars.next() {
                out.push(c);
            }
            rest = chars.as_str();
        }
        Cow::Owned(out)
    }

    /// Mask secret values in every string (and object key) of a JSON value.
    pub fn redact_json(&self, v: &mut Value) {
        if self.is_empty() {
            return;
        }
        map_strings(v, &mut |s| {
            Ok::<_, std::convert::Infallible>(self.redact(s).into_owned())
        })
        .unwrap_or_else(|e| match e {});
    }
}

/// `value` with every secret value in its serialised form masked (unchanged if it does not go back).
pub fn redacted<T: serde::Serialize + serde::de::DeserializeOwned>(
    value: T,
    redactor: &Redactor,
) -> T {
    if redactor.is_empty() {
        return value;
    }
    let Ok(mut v) = serde_json::to_value(&value) else {
        return value;
    };
    redactor.redact_json(&mut v);
    serde_json::from_value(v).unwrap_or(value)
}

/// How a container spec shows its secret values in its canonical JSON (the `io.berth.spec` label and
/// the spec hash): carried beside the spec, never serialised, and never part of its equality.
#[derive(Clone, Default)]
pub struct SpecSecrets(pub Option<Arc<Redactor>>);

impl PartialEq for SpecSecrets {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for SpecSecrets {}

impl fmt::Debug for SpecSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(r) => write!(f, "{r:?}"),
            None => f.write_str("SpecSecrets(none)"),
        }
    }
}

/// Give every container of `desired` the digests of its state's secret values (keyed with `key`), so
/// its label and spec hash hold digests instead of values. Call before planning or describing.
pub fn attach_digests(desired: &mut DesiredState, key: Option<&Arc<BoxKey>>) {
    let redactor = (!desired.sensitive.is_empty())
        .then(|| Arc::new(Redactor::new(&desired.sensitive, key.cloned())));
    for stack in desired.stacks.values_mut() {
        for c in &mut stack.containers {
            c.secrets = SpecSecrets(redactor.clone());
        }
    }
}

/// Every string and object key of `v`, through `f` (which returns the new text).
pub fn map_strings<E>(
    v: &mut Value,
    f: &mut impl FnMut(&str) -> Result<String, E>,
) -> Result<(), E> {
    match v {
        Value::String(s) => *s = f(s)?,
        Value::Array(items) => {
            for item in items {
                map_strings(item, f)?;
            }
        }
        Value::Object(map) => {
            let old = std::mem::take(map);
            for (k, mut item) in old {
                map_strings(&mut item, f)?;
                map.insert(f(&k)?, item);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
    Ok(())
}

/// Every string and object key of `v`, in no particular order.
pub fn visit_strings(v: &Value, f: &mut impl FnMut(&str)) {
    match v {
        Value::String(s) => f(s),
        Value::Array(items) => items.iter().for_each(|i| visit_strings(i, f)),
        Value::Object(map) => {
            for (k, item) in map {
                f(k);
                visit_strings(item, f);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Seal, in the JSON of a desired state, every string that holds a secret value (and every string that
/// already looks sealed, so reading back is unambiguous), and add the sealed list of the values as
/// [`SEALED_VALUES`]. A state without secret values needs no key and is left as it is.
pub fn seal_desired(
    v: &mut Value,
    sensitive: &Sensitive,
    key: Option<&BoxKey>,
) -> Result<(), SealError> {
    let values: Vec<&str> = sensitive.iter().collect();
    let needs = |s: &str| s.starts_with(SEALED_PREFIX) || values.iter().any(|x| s.contains(x));
    let mut any = !values.is_empty();
    visit_strings(v, &mut |s| any |= needs(s));
    if !any {
        return Ok(());
    }
    let key = key.ok_or(SealError::NoKey)?;
    map_strings(v, &mut |s| {
        if needs(s) {
            key.seal(s)
        } else {
            Ok(s.to_string())
        }
    })?;
    if let Value::Object(map) = v {
        let list = serde_json::to_string(&values).map_err(|_| SealError::Seal)?;
        map.insert(SEALED_VALUES.to_string(), Value::String(key.seal(&list)?));
    }
    Ok(())
}

/// Undo [`seal_desired`]: open every sealed string and return the secret values the state was rendered
/// with. JSON written before sealing existed has no sealed strings and loads as it is.
pub fn unseal_desired(v: &mut Value, key: Option<&BoxKey>) -> Result<Sensitive, SealError> {
    let mut sensitive = Sensitive::default();
    let sealed_values = match v {
        Value::Object(map) => map.remove(SEALED_VALUES),
        _ => None,
    };
    let mut any = sealed_values.is_some();
    visit_strings(v, &mut |s| any |= s.starts_with(SEALED_PREFIX));
    if !any {
        return Ok(sensitive);
    }
    let key = key.ok_or(SealError::NoKey)?;
    map_strings(v, &mut |s| {
        if s.starts_with(SEALED_PREFIX) {
            key.unseal(s)
        } else {
            Ok(s.to_string())
        }
    })?;
    if let Some(Value::String(sealed)) = sealed_values {
        let list: Vec<String> =
            serde_json::from_str(&key.unseal(&sealed)?).map_err(|_| SealError::Malformed)?;
        for value in &list {
            sensitive.add(value);
        }
    }
    Ok(sensitive)
}

#[cfg(test)]
mod tests;
