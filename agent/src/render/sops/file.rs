//! One SOPS 3.x file: recognised by its metadata (a top-level `sops` mapping in YAML/JSON, `sops_*` lines
//! in dotenv, a JSON `data` value for binary files), its data key unwrapped with the box's age
//! identities, every `ENC[AES256_GCM,…]` value decrypted with its key path as additional data, and the
//! MAC (SHA-512 over the values in order, encrypted under `lastmodified`) checked before anything is
//! returned. YAML is read as SOPS (yaml.v3) stores it: every document, merge keys (`<<`) kept as keys.
//! Without a key the structure is checked and values are replaced by placeholders.

use super::keys::Identities;
use aes_gcm::aead::consts::U32;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::aes::Aes256;
use aes_gcm::AesGcm;
use base64::Engine as _;
use serde_yaml::{Mapping, Value};
use sha2::{Digest, Sha512};
use std::io::Read;

/// AES-256-GCM with SOPS's 32-byte IVs.
type SopsCipher = AesGcm<Aes256, U32>;

/// What SOPS `MACOnlyEncryptedInitialization` puts first into the hash (SHA-256 of `sops`).
const MAC_ONLY_ENCRYPTED_INIT: [u8; 32] = [
    0x8a, 0x3f, 0xd2, 0xad, 0x54, 0xce, 0x66, 0x52, 0x7b, 0x10, 0x34, 0xf3, 0xd1, 0x47, 0xbe, 0x0b,
    0x0b, 0x97, 0x5b, 0x3b, 0xf4, 0x4f, 0x72, 0xc6, 0xfd, 0xad, 0xec, 0x81, 0x76, 0xf2, 0x7d, 0x69,
];

/// What the value written in place of an encrypted string starts with when a file is rendered without a
/// key (see [`placeholder`]).
pub const PLACEHOLDER: &str = "sops-encrypted";

/// The stand-in for an encrypted value rendered without a key: [`PLACEHOLDER`] and a short SHA-256 of
/// its ciphertext (public: it says nothing of the value). Re-encrypting a value changes it, so
/// `berth fleet-diff` without box keys still sees that an encrypted value changed.
pub fn placeholder(ciphertext: &[u8]) -> String {
    let digest = hex::encode(sha2::Sha256::digest(ciphertext));
    format!("{PLACEHOLDER}-{}", &digest[..12])
}

/// How a SOPS file stores its tree (and how its clear form is written back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
    Dotenv,
    /// A JSON document with one encrypted `data` value: the clear form is that value's bytes.
    Binary,
}

/// Why a SOPS file could not be decrypted. Never holds a value, a key or a data key: key paths and
/// recipients (public keys) only.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SopsError {
    #[error("SOPS metadata: {0}")]
    Metadata(String),
    #[error("SOPS-encrypted, and no age key is configured to decrypt it (secrets.age_key_file / --age-key)")]
    NoKey,
    #[error("SOPS-encrypted for {recipients}: none of this box's age identities can decrypt it")]
    NoRecipient { recipients: String },
    #[error("SOPS data key does not decrypt to 32 bytes")]
    DataKey,
    #[error("SOPS value at {path} is not of the form ENC[AES256_GCM,data:…,iv:…,tag:…,type:…]")]
    BadValue { path: String },
    #[error(
        "SOPS value at {path} does not decrypt with the file's data key (tampered or re-keyed)"
    )]
    Decrypt { path: String },
    #[error("SOPS value at {path} does not match its type {kind}")]
    Type { path: String, kind: String },
    #[error("SOPS MAC mismatch: the file was changed after it was encrypted")]
    Mac,
    #[error("SOPS files with {0} are not supported")]
    Unsupported(&'static str),
    #[error("SOPS file does not parse as {format} at line {line}")]
    Parse { format: &'static str, line: usize },
}

/// The clear form of a SOPS file and the secret values it held.
pub struct Decrypted {
    pub format: Format,
    pub bytes: Vec<u8>,
    /// Every value that was encrypted, in clear (for [`crate::sensitive::Sensitive`]).
    pub secrets: Vec<String>,
    /// Whether values are placeholders (no key): nothing was decrypted.
    pub placeholders: bool,
}

/// The stored format of `bytes` when they are a SOPS file; `None` for anything else. `binary_ok` says
/// whether a JSON file with only `data` is read as binary (SOPS picks binary for names it has no store
/// for: not `.json`, `.yaml`, `.yml`, `.env`).
pub fn detect(bytes: &[u8], binary_ok: bool) -> Option<Format> {
    let text = std::str::from_utf8(bytes).ok()?;
    if !text.contains("sops") {
        return None;
    }
    if text
        .lines()
        .any(|l| l.starts_with("sops_mac=") || l.starts_with("sops_lastmodified="))
    {
        return Some(Format::Dotenv);
    }
    let json = text.trim_start().starts_with('{');
    // SOPS writes its key at the top level: a cheap look before parsing anything.
    let has_key = if json {
        text.contains("\"sops\"")
    } else {
        text.lines().any(|l| l.starts_with("sops:"))
    };
    if !has_key {
        return None;
    }
    let docs = parse(text).ok()?;
    // SOPS reads its metadata from the first document (every document carries it).
    let map = docs.first()?.as_mapping()?;
    let meta = map.get("sops")?.as_mapping()?;
    if !(meta.contains_key("mac") && meta.contains_key("lastmodified")) {
        return None;
    }
    let only_data =
        docs.len() == 1 && map.len() == 2 && map.get("data").is_some_and(Value::is_string);
    Some(match (json, only_data && binary_ok) {
        (true, true) => Format::Binary,
        (true, false) => Format::Json,
        (false, _) => Format::Yaml,
    })
}

/// What parsing one SOPS file may expand to (anchors and aliases), as render bounds every YAML it reads.
const PARSE_BUDGET: usize = 16 * crate::render::MAX_FILE_BYTES;

/// Parse YAML (or JSON) with the render's bounded parser: every document, merge keys (`<<`) kept as
/// keys. SOPS (yaml.v3) keeps them: the values merged in are copied under `<<` at encryption (aliases
/// expanded), encrypted and authenticated with `<<` in their key path, and in the MAC where they
/// stand. The decrypted file keeps the `<<` key; whoever reads it (compose) applies the merge.
fn parse(text: &str) -> Result<Vec<Value>, crate::render::yaml::YamlError> {
    crate::render::yaml::parse_documents_unmerged(text, PARSE_BUDGET)
}

/// Whether SOPS would store a file of this name as binary (it picks the store from the extension).
pub fn binary_by_name(name: &str) -> bool {
    !(name.ends_with(".json")
        || name.ends_with(".yaml")
        || name.ends_with(".yml")
        || name.ends_with(".env")
        || name.ends_with(".ini"))
}

/// Decrypt (or, with `keys: None`, check and fill with placeholders) a file of the given format.
pub fn decrypt(
    bytes: &[u8],
    format: Format,
    keys: Option<&Identities>,
) -> Result<Decrypted, SopsError> {
    let text = std::str::from_utf8(bytes).map_err(|_| SopsError::Parse {
        format: "UTF-8 text",
        line: 1,
    })?;
    match format {
        Format::Dotenv => decrypt_dotenv(text, keys),
        Format::Yaml | Format::Json | Format::Binary => decrypt_tree(text, format, keys),
    }
}

/// The metadata SOPS keeps under `sops` (or `sops_*`), as far as decrypting needs it.
struct Meta {
    /// `enc` of every age recipient (recipient, armored data key).
    age: Vec<(String, String)>,
    lastmodified: String,
    mac: String,
    mac_only_encrypted: bool,
    rules: Rules,
}

/// Which keys SOPS encrypted (`shouldBeEncrypted`).
#[derive(Default)]
struct Rules {
    unencrypted_suffix: Option<String>,
    encrypted_suffix: Option<String>,
    unencrypted_regex: Option<regex::Regex>,
    encrypted_regex: Option<regex::Regex>,
}

impl Rules {
    fn encrypted(&self, path: &[String]) -> bool {
        let mut enc = true;
        if let Some(s) = &self.unencrypted_suffix {
            if path.iter().any(|p| p.ends_with(s.as_str())) {
                enc = false;
            }
        }
        if let Some(s) = &self.encrypted_suffix {
            enc = path.iter().any(|p| p.ends_with(s.as_str()));
        }
        if let Some(r) = &self.unencrypted_regex {
            if path.iter().any(|p| r.is_match(p)) {
                enc = false;
            }
        }
        if let Some(r) = &self.encrypted_regex {
            enc = path.iter().any(|p| r.is_match(p));
        }
        enc
    }
}

/// Metadata from key → scalar text pairs (the YAML mapping's scalars, or dotenv's flattened keys).
fn meta_from(
    get: &dyn Fn(&str) -> Option<String>,
    age: Vec<(String, String)>,
    key_groups: usize,
) -> Result<Meta, SopsError> {
    if get("unencrypted_comment_regex").is_some() || get("encrypted_comment_regex").is_some() {
        return Err(SopsError::Unsupported("comment regexes"));
    }
    if key_groups > 1 {
        return Err(SopsError::Unsupported("several key groups (Shamir)"));
    }
    let need = |k: &str| get(k).ok_or_else(|| SopsError::Metadata(format!("`{k}` is missing")));
    let regex = |k: &str| -> Result<Option<regex::Regex>, SopsError> {
        match get(k) {
            None => Ok(None),
            Some(r) => regex::Regex::new(&r).map(Some).map_err(|_| {
                SopsError::Metadata(format!("`{k}` is not a valid regular expression"))
            }),
        }
    };
    let rules = Rules {
        unencrypted_suffix: get("unencrypted_suffix").filter(|s| !s.is_empty()),
        encrypted_suffix: get("encrypted_suffix").filter(|s| !s.is_empty()),
        unencrypted_regex: regex("unencrypted_regex")?,
        encrypted_regex: regex("encrypted_regex")?,
    };
    Ok(Meta {
        age,
        lastmodified: need("lastmodified")?,
        mac: need("mac")?,
        mac_only_encrypted: get("mac_only_encrypted").is_some_and(|v| v == "true"),
        rules,
    })
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn age_entries(list: Option<&Value>) -> Result<Vec<(String, String)>, SopsError> {
    let Some(list) = list.filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let items = list
        .as_sequence()
        .ok_or_else(|| SopsError::Metadata("`age` must be a list".into()))?;
    items
        .iter()
        .map(|i| {
            let field = |k: &str| i.get(k).and_then(Value::as_str).map(str::to_string);
            match (field("recipient"), field("enc")) {
                (Some(r), Some(e)) => Ok((r, e)),
                _ => Err(SopsError::Metadata(
                    "an `age` entry needs `recipient` and `enc`".into(),
                )),
            }
        })
        .collect()
}

fn meta_from_yaml(m: &Mapping) -> Result<Meta, SopsError> {
    let mut age = age_entries(m.get("age"))?;
    let mut groups = 0;
    if let Some(kg) = m.get("key_groups").filter(|v| !v.is_null()) {
        let kg = kg
            .as_sequence()
            .ok_or_else(|| SopsError::Metadata("`key_groups` must be a list".into()))?;
        groups = kg.len();
        for g in kg {
            age.extend(age_entries(g.get("age"))?);
        }
    }
    let get = |k: &str| m.get(k).and_then(scalar_text);
    meta_from(&get, age, groups)
}

/// The 32-byte data key, from the first age entry one of `keys` opens.
fn data_key(meta: &Meta, keys: &Identities) -> Result<[u8; 32], SopsError> {
    for (_, enc) in &meta.age {
        let Ok(decryptor) =
            age::Decryptor::new_buffered(age::armor::ArmoredReader::new(enc.as_bytes()))
        else {
            continue;
        };
        let Ok(mut reader) = decryptor.decrypt(keys.iter()) else {
            continue;
        };
        let mut key = Vec::new();
        if reader.read_to_end(&mut key).is_err() {
            continue;
        }
        return key.try_into().map_err(|_| SopsError::DataKey);
    }
    let recipients: Vec<&str> = meta.age.iter().map(|(r, _)| r.as_str()).collect();
    Err(SopsError::NoRecipient {
        recipients: if recipients.is_empty() {
            "no age recipient".into()
        } else {
            recipients.join(", ")
        },
    })
}

/// A parsed `ENC[AES256_GCM,data:…,iv:…,tag:…,type:…]`.
struct EncValue {
    data: Vec<u8>,
    iv: Vec<u8>,
    tag: Vec<u8>,
    kind: String,
}

fn parse_enc(s: &str) -> Option<EncValue> {
    let inner = s.strip_prefix("ENC[AES256_GCM,")?.strip_suffix(']')?;
    let b64 = |v: &str| base64::engine::general_purpose::STANDARD.decode(v).ok();
    let mut data = None;
    let mut iv = None;
    let mut tag = None;
    let mut kind = None;
    for part in inner.split(',') {
        let (k, v) = part.split_once(':')?;
        match k {
            "data" => data = Some(b64(v)?),
            "iv" => iv = Some(b64(v)?),
            "tag" => tag = Some(b64(v)?),
            "type" => kind = Some(v.to_string()),
            _ => return None,
        }
    }
    let iv = iv?;
    let tag = tag?;
    (iv.len() == 32 && tag.len() == 16).then_some(())?;
    Some(EncValue {
        data: data?,
        iv,
        tag,
        kind: kind?,
    })
}

/// Decrypt one value; `path` names it in errors, `aad` is what SOPS authenticated it with.
fn open(key: &[u8; 32], v: &EncValue, aad: &str, path: &str) -> Result<Vec<u8>, SopsError> {
    let cipher = SopsCipher::new(key.into());
    let mut msg = v.data.clone();
    msg.extend_from_slice(&v.tag);
    cipher
        .decrypt(
            aes_gcm::Nonce::<U32>::from_slice(&v.iv),
            Payload {
                msg: &msg,
                aad: aad.as_bytes(),
            },
        )
        .map_err(|_| SopsError::Decrypt {
            path: path.to_string(),
        })
}

/// Walks a tree: decrypts (or fills placeholders) and feeds the MAC, as SOPS's `Tree.Decrypt` does.
struct Walker<'a> {
    meta: &'a Meta,
    key: Option<[u8; 32]>,
    hash: Sha512,
    secrets: Vec<String>,
}

impl<'a> Walker<'a> {
    fn new(meta: &'a Meta, key: Option<[u8; 32]>) -> Self {
        let mut hash = Sha512::new();
        if meta.mac_only_encrypted {
            hash.update(MAC_ONLY_ENCRYPTED_INIT);
        }
        Walker {
            meta,
            key,
            hash,
            secrets: Vec::new(),
        }
    }

    /// The clear bytes of one encrypted value (empty values are left empty, as SOPS does).
    fn value(&mut self, s: &str, path: &[String]) -> Result<(Vec<u8>, String), SopsError> {
        let shown = path.join(".");
        if s.is_empty() {
            return Ok((Vec::new(), "str".into()));
        }
        let enc = parse_enc(s).ok_or_else(|| SopsError::BadValue {
            path: shown.clone(),
        })?;
        let Some(key) = &self.key else {
            return Ok((Vec::new(), enc.kind));
        };
        let aad = format!("{}:", path.join(":"));
        let clear = open(key, &enc, &aad, &shown)?;
        Ok((clear, enc.kind))
    }

    fn leaf(&mut self, v: &mut Value, path: &[String]) -> Result<(), SopsError> {
        let encrypted = self.meta.rules.encrypted(path);
        if encrypted {
            let Value::String(s) = &*v else {
                return Err(SopsError::BadValue {
                    path: path.join("."),
                });
            };
            let stand_in = placeholder(s.as_bytes());
            let (clear, kind) = self.value(s, path)?;
            let shown = path.join(".");
            let bad = || SopsError::Type {
                path: shown.clone(),
                kind: kind.clone(),
            };
            let text = String::from_utf8(clear).map_err(|_| bad())?;
            *v = if self.key.is_none() {
                match kind.as_str() {
                    "int" | "int64" => Value::Number(0.into()),
                    "float" => Value::Number(0.0.into()),
                    "bool" => Value::Bool(false),
                    _ => Value::String(stand_in),
                }
            } else {
                match kind.as_str() {
                    // `time`: a YAML timestamp, held as SOPS writes it back (RFC 3339 text).
                    "str" | "bytes" | "time" => Value::String(text.clone()),
                    "int" | "int64" => {
                        Value::Number(text.parse::<i64>().map_err(|_| bad())?.into())
                    }
                    // SOPS's JSON store types every number float: `3` stays `3`.
                    "float" => match text.parse::<i64>() {
                        Ok(i) => Value::Number(i.into()),
                        Err(_) => Value::Number(text.parse::<f64>().map_err(|_| bad())?.into()),
                    },
                    "bool" => Value::Bool(parse_go_bool(&text).ok_or_else(bad)?),
                    _ => return Err(bad()),
                }
            };
            if self.key.is_some() {
                self.secrets.push(text);
            }
        }
        if !self.meta.mac_only_encrypted || encrypted {
            self.hash.update(to_bytes(v));
        }
        Ok(())
    }

    fn walk(&mut self, v: &mut Value, path: &mut Vec<String>) -> Result<(), SopsError> {
        match v {
            Value::Null => Ok(()),
            Value::Mapping(m) => {
                for (k, val) in m.iter_mut() {
                    let Value::String(k) = k else {
                        return Err(SopsError::Unsupported("keys that are not strings"));
                    };
                    path.push(k.clone());
                    let r = self.walk(val, path);
                    path.pop();
                    r?;
                }
                Ok(())
            }
            Value::Sequence(items) => {
                for item in items {
                    self.walk(item, path)?;
                }
                Ok(())
            }
            Value::Tagged(t) => self.walk(&mut t.value, path),
            _ => self.leaf(v, path),
        }
    }

    /// Check the MAC (only when decrypting).
    fn finish(self) -> Result<Vec<String>, SopsError> {
        let Some(key) = self.key else {
            return Ok(self.secrets);
        };
        let computed = hex::encode_upper(self.hash.finalize());
        let enc = parse_enc(&self.meta.mac).ok_or_else(|| SopsError::BadValue {
            path: "sops.mac".into(),
        })?;
        let stored =
            open(&key, &enc, &self.meta.lastmodified, "sops.mac").map_err(|_| SopsError::Mac)?;
        if subtle::ConstantTimeEq::ct_eq(stored.as_slice(), computed.as_bytes()).into() {
            Ok(self.secrets)
        } else {
            Err(SopsError::Mac)
        }
    }
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// SOPS's `ToBytes`: what a value contributes to the MAC.
fn to_bytes(v: &Value) -> Vec<u8> {
    match v {
        Value::String(s) => s.as_bytes().to_vec(),
        Value::Bool(true) => b"True".to_vec(),
        Value::Bool(false) => b"False".to_vec(),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string().into_bytes(),
            (_, Some(u), _) => u.to_string().into_bytes(),
            (_, _, Some(f)) => format!("{f}").into_bytes(),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

fn decrypt_tree(
    text: &str,
    format: Format,
    keys: Option<&Identities>,
) -> Result<Decrypted, SopsError> {
    let name = if format == Format::Yaml {
        "YAML"
    } else {
        "JSON"
    };
    let mut docs = parse(text).map_err(|e| SopsError::Parse {
        format: name,
        line: e.line().unwrap_or(1),
    })?;
    if docs.len() > 1 && format != Format::Yaml {
        return Err(SopsError::Unsupported("several documents outside YAML"));
    }
    // Every document carries the metadata; SOPS reads the first one's. One MAC covers all documents.
    let mut meta = None;
    for doc in &mut docs {
        let Value::Mapping(map) = doc else {
            return Err(SopsError::Metadata("a document is not a mapping".into()));
        };
        match (map.remove("sops"), &meta) {
            (Some(Value::Mapping(m)), None) => meta = Some(m),
            (_, Some(_)) => {}
            _ => return Err(SopsError::Metadata("no `sops` mapping".into())),
        }
    }
    let meta = meta_from_yaml(&meta.ok_or_else(|| SopsError::Metadata("no document".into()))?)?;
    let key = keys.map(|k| data_key(&meta, k)).transpose()?;
    let mut walker = Walker::new(&meta, key);
    if let (Format::Binary, [doc]) = (format, docs.as_slice()) {
        return decrypt_binary(doc, walker);
    }
    for doc in &mut docs {
        walker.walk(doc, &mut Vec::new())?;
    }
    let placeholders = key.is_none();
    let mut secrets = walker.finish()?;
    let bytes = match (format, docs.as_slice()) {
        (Format::Json, [doc]) => serde_json::to_vec_pretty(doc)
            .map_err(|_| SopsError::Unsupported("values JSON cannot hold"))?,
        _ => yaml_documents(&docs)?.into_bytes(),
    };
    if !placeholders {
        secrets.push(String::from_utf8_lossy(&bytes).into_owned());
    }
    Ok(Decrypted {
        format,
        bytes,
        secrets,
        placeholders,
    })
}

/// The clear YAML of `docs`, `---` between documents (as `sops decrypt` writes them).
fn yaml_documents(docs: &[Value]) -> Result<String, SopsError> {
    let mut out = String::new();
    for (i, doc) in docs.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(
            &serde_yaml::to_string(doc)
                .map_err(|_| SopsError::Unsupported("values YAML cannot hold"))?,
        );
    }
    Ok(out)
}

/// A binary file's one `data` value, as bytes (it need not be UTF-8).
fn decrypt_binary(doc: &Value, mut walker: Walker) -> Result<Decrypted, SopsError> {
    let path = vec!["data".to_string()];
    let Some(Value::String(data)) = doc.get("data") else {
        return Err(SopsError::BadValue {
            path: "data".into(),
        });
    };
    let encrypted = walker.meta.rules.encrypted(&path);
    let clear = if encrypted {
        walker.value(data, &path)?.0
    } else {
        data.as_bytes().to_vec()
    };
    if !walker.meta.mac_only_encrypted || encrypted {
        walker.hash.update(&clear);
    }
    let placeholders = walker.key.is_none();
    let mut secrets = walker.finish()?;
    let bytes = if placeholders {
        placeholder(data.as_bytes()).into_bytes()
    } else {
        secrets.push(String::from_utf8_lossy(&clear).into_owned());
        clear
    };
    Ok(Decrypted {
        format: Format::Binary,
        bytes,
        secrets,
        placeholders,
    })
}

/// Dotenv as SOPS's dotenv store reads it: `#` comment lines, `KEY=VALUE` lines split at the first `=`,
/// `\n` in a value is a newline; `sops_*` keys are the flattened metadata.
fn decrypt_dotenv(text: &str, keys: Option<&Identities>) -> Result<Decrypted, SopsError> {
    let mut items: Vec<(String, String)> = Vec::new();
    let mut meta_items: Vec<(String, String)> = Vec::new();
    for (i, line) in text.split('\n').enumerate() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (k, v) = line.split_once('=').ok_or(SopsError::Parse {
            format: "dotenv",
            line: i + 1,
        })?;
        let v = v.replace("\\n", "\n");
        match k.strip_prefix("sops_") {
            Some(mk) => meta_items.push((mk.to_string(), v)),
            None => items.push((k.to_string(), v)),
        }
    }
    let age_re = regex::Regex::new(
        r"^(?:key_groups__list_(\d+)__map_)?age__list_(\d+)__map_(recipient|enc)$",
    )
    .map_err(|_| SopsError::Metadata("age entries".into()))?;
    let mut age: std::collections::BTreeMap<(usize, usize), (Option<String>, Option<String>)> =
        Default::default();
    let mut groups = std::collections::BTreeSet::new();
    for (k, v) in &meta_items {
        if let Some(c) = age_re.captures(k) {
            let n = |i: usize| {
                c.get(i)
                    .and_then(|m| m.as_str().parse::<usize>().ok())
                    .unwrap_or(0)
            };
            if c.get(1).is_some() {
                groups.insert(n(1));
            }
            let e = age.entry((n(1), n(2))).or_default();
            if &c[3] == "recipient" {
                e.0 = Some(v.clone());
            } else {
                e.1 = Some(v.clone());
            }
        } else if k.starts_with("key_groups__list_") {
            if let Some(g) = k
                .strip_prefix("key_groups__list_")
                .and_then(|r| r.split("__").next())
                .and_then(|g| g.parse::<usize>().ok())
            {
                groups.insert(g);
            }
        }
    }
    let age = age
        .into_values()
        .map(|(r, e)| match (r, e) {
            (Some(r), Some(e)) => Ok((r, e)),
            _ => Err(SopsError::Metadata(
                "an `age` entry needs `recipient` and `enc`".into(),
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let get = |k: &str| {
        meta_items
            .iter()
            .find(|(mk, _)| mk == k)
            .map(|(_, v)| v.clone())
    };
    let meta = meta_from(&get, age, groups.len())?;
    let key = keys.map(|k| data_key(&meta, k)).transpose()?;
    let mut walker = Walker::new(&meta, key);
    let mut out = String::new();
    for (k, v) in items {
        let mut value = Value::String(v);
        walker.leaf(&mut value, std::slice::from_ref(&k))?;
        let clear = match value {
            Value::String(s) => s,
            other => String::from_utf8_lossy(&to_bytes(&other)).into_owned(),
        };
        out.push_str(&k);
        out.push('=');
        out.push_str(&clear.replace('\n', "\\n"));
        out.push('\n');
    }
    let placeholders = key.is_none();
    let secrets = walker.finish()?;
    Ok(Decrypted {
        format: Format::Dotenv,
        bytes: out.into_bytes(),
        secrets,
        placeholders,
    })
}
