//! Decryption of files made by the real `sops` 3.11 (fixtures in `testdata/`, test keys only).

use super::file::{decrypt, detect, Format, SopsError};
use super::keys::Identities;
use super::*;
use crate::render::memtree::MemTree;
use crate::render::{render_warned, RenderOptions};
use serde_yaml::Value;

const KEY: &str = include_str!("testdata/key.txt");
const OTHER_KEY: &str = include_str!("testdata/other-key.txt");
const SECRET_ENV: &str = include_str!("testdata/secret.env");
const SECRET_YAML: &str = include_str!("testdata/secret.yaml");
const SECRET_JSON: &str = include_str!("testdata/secret.json");
const SECRET_TXT: &str = include_str!("testdata/secret.txt");
const REGEX_YAML: &str = include_str!("testdata/regex.yaml");
const MACONLY_YAML: &str = include_str!("testdata/maconly.yaml");
const OTHER_ENV: &str = include_str!("testdata/other.env");
const TWO_YAML: &str = include_str!("testdata/two-recipients.yaml");
const ANCHORS_YAML: &str = include_str!("testdata/anchors.yaml");
const MERGE_YAML: &str = include_str!("testdata/merge.yaml");
const MERGE_REGEX_YAML: &str = include_str!("testdata/merge-regex.yaml");
const COMMENTS_YAML: &str = include_str!("testdata/comments.yaml");
const COMMENTS_REGEX_YAML: &str = include_str!("testdata/comments-regex.yaml");
const MULTIDOC_YAML: &str = include_str!("testdata/multidoc.yaml");
const TYPES_YAML: &str = include_str!("testdata/types.yaml");

fn key() -> Identities {
    Identities::parse(KEY.as_bytes(), Path::new("key.txt")).unwrap()
}
fn other_key() -> Identities {
    Identities::parse(OTHER_KEY.as_bytes(), Path::new("other-key.txt")).unwrap()
}
fn yaml(text: &[u8]) -> Value {
    serde_yaml::from_slice(text).unwrap()
}
fn open(text: &str, name: &str, keys: Option<&Identities>) -> Result<file::Decrypted, SopsError> {
    let format = detect(text.as_bytes(), file::binary_by_name(name)).expect("detected as SOPS");
    decrypt(text.as_bytes(), format, keys)
}

#[test]
fn detects_sops_files_by_their_metadata_only() {
    assert_eq!(detect(SECRET_ENV.as_bytes(), false), Some(Format::Dotenv));
    assert_eq!(detect(SECRET_YAML.as_bytes(), false), Some(Format::Yaml));
    assert_eq!(detect(SECRET_JSON.as_bytes(), false), Some(Format::Json));
    assert_eq!(detect(SECRET_TXT.as_bytes(), true), Some(Format::Binary));
    assert_eq!(detect(b"services:\n  sops: {image: x}\n", true), None);
    assert_eq!(detect(b"sops: {}\n", true), None);
    assert_eq!(detect(b"SOPS_URL=x\n", true), None);
    assert_eq!(detect(include_bytes!("testdata/plain.yaml"), true), None);
    assert_eq!(detect(&[0xff, 0xfe, b's', b'o', b'p', b's'], true), None);
}

#[test]
fn dotenv_decrypts_with_the_mac_checked() {
    let d = open(SECRET_ENV, ".env", Some(&key())).unwrap();
    let text = String::from_utf8(d.bytes).unwrap();
    assert_eq!(
        text,
        "DB_PASSWORD=hunter2-sops-env\nAPI_TOKEN=tok-4242-sops\nMULTI=\"line\"\nEMPTY=\nLOG_LEVEL_unencrypted=debug\n"
    );
    assert!(d.secrets.contains(&"hunter2-sops-env".to_string()));
    assert!(d.secrets.contains(&"tok-4242-sops".to_string()));
    assert!(!d.secrets.contains(&"debug".to_string()));
    assert!(!d.placeholders);
}

#[test]
fn yaml_json_and_binary_decrypt_to_their_clear_text() {
    let d = open(SECRET_YAML, "secret.yaml", Some(&key())).unwrap();
    assert_eq!(yaml(&d.bytes), yaml(include_bytes!("testdata/plain.yaml")));
    assert!(d.secrets.contains(&"s3cret-yaml-pass".to_string()));
    assert!(d.secrets.contains(&"a.example".to_string()));
    assert!(!d.secrets.contains(&"left in clear".to_string()));

    let d = open(SECRET_JSON, "secret.json", Some(&key())).unwrap();
    assert_eq!(d.format, Format::Json);
    let got: serde_json::Value = serde_json::from_slice(&d.bytes).unwrap();
    let want: serde_json::Value =
        serde_json::from_slice(include_bytes!("testdata/plain.json")).unwrap();
    assert_eq!(got, want);
    assert!(d.secrets.contains(&"json-key-9876".to_string()));

    let d = open(SECRET_TXT, "secret.txt", Some(&key())).unwrap();
    assert_eq!(d.format, Format::Binary);
    assert_eq!(d.bytes, include_bytes!("testdata/plain.txt"));
    assert!(d.secrets.iter().any(|s| s.contains("binary secret line 1")));

    // Binary content need not be UTF-8 (a DER key, a keystore).
    let d = open(
        include_str!("testdata/secret.der"),
        "secret.der",
        Some(&key()),
    )
    .unwrap();
    assert_eq!(d.bytes, include_bytes!("testdata/plain.der"));
    let tampered = include_str!("testdata/secret.der").replacen("data:8", "data:9", 1);
    assert!(open(&tampered, "secret.der", Some(&key())).is_err());
}

#[test]
fn encrypted_regex_and_mac_only_encrypted_are_honoured() {
    let d = open(REGEX_YAML, "regex.yaml", Some(&key())).unwrap();
    assert_eq!(
        yaml(&d.bytes),
        yaml(include_bytes!("testdata/plain-regex.yaml"))
    );
    assert_eq!(
        d.secrets.first().map(String::as_str),
        Some("regex-secret-1")
    );
    let d = open(MACONLY_YAML, "maconly.yaml", Some(&key())).unwrap();
    assert_eq!(
        yaml(&d.bytes),
        yaml(include_bytes!("testdata/plain-regex.yaml"))
    );
    // Only encrypted values are in a mac_only_encrypted MAC: a changed clear value still verifies
    // (as with sops itself), a changed encrypted value does not.
    let changed = MACONLY_YAML.replace("visible-user", "other-user");
    assert!(open(&changed, "maconly.yaml", Some(&key())).is_ok());
}

#[test]
fn any_recipient_entry_the_box_holds_opens_the_file() {
    let d = open(TWO_YAML, "two.yaml", Some(&other_key())).unwrap();
    assert_eq!(yaml(&d.bytes), yaml(include_bytes!("testdata/plain.yaml")));
}

#[test]
fn a_file_for_another_recipient_is_refused_naming_its_recipients() {
    let e = open(OTHER_ENV, ".env", Some(&key())).err().unwrap();
    assert!(matches!(e, SopsError::NoRecipient { .. }), "{e}");
    let text = e.to_string();
    assert!(
        text.contains("age1ydc0afurwg4l9c6h09ku2gjvjfa8a23zssxzwn4u378j6zstafhss63s2q"),
        "{text}"
    );
}

#[test]
fn tampered_files_are_refused_without_quoting_values() {
    // A clear value changed: the MAC no longer matches.
    let t = SECRET_YAML.replace("left in clear", "left in clear!");
    let e = open(&t, "secret.yaml", Some(&key())).err().unwrap();
    assert!(matches!(e, SopsError::Mac), "{e}");
    let t = SECRET_ENV.replace("LOG_LEVEL_unencrypted=debug", "LOG_LEVEL_unencrypted=trace");
    assert!(matches!(
        open(&t, ".env", Some(&key())),
        Err(SopsError::Mac)
    ));
    // An encrypted value moved to another key: its additional data (the key path) no longer matches.
    let user = SECRET_YAML
        .lines()
        .find(|l| l.trim_start().starts_with("user:"))
        .unwrap()
        .trim_start()
        .trim_start_matches("user: ")
        .to_string();
    let password_line = SECRET_YAML
        .lines()
        .find(|l| l.trim_start().starts_with("password:"))
        .unwrap();
    let t = SECRET_YAML.replace(password_line, &format!("    password: {user}"));
    let e = open(&t, "secret.yaml", Some(&key())).err().unwrap();
    assert!(
        matches!(&e, SopsError::Decrypt { path } if path == "db.password"),
        "{e}"
    );
    // A value that is not a SOPS value where one is expected.
    let t = SECRET_YAML.replace(password_line, "    password: plain-injected");
    let e = open(&t, "secret.yaml", Some(&key())).err().unwrap();
    assert!(
        matches!(&e, SopsError::BadValue { path } if path == "db.password"),
        "{e}"
    );
    for e in [e.to_string(), SopsError::Mac.to_string()] {
        assert!(
            !e.contains("s3cret") && !e.contains("plain-injected"),
            "{e}"
        );
    }
}

#[test]
fn without_a_key_the_structure_is_checked_and_values_are_placeholders() {
    let d = open(SECRET_YAML, "secret.yaml", None).unwrap();
    assert!(d.placeholders && d.secrets.is_empty());
    let v = yaml(&d.bytes);
    let password = v["db"]["password"].as_str().unwrap();
    assert!(password.starts_with("sops-encrypted-"), "{password}");
    assert_eq!(v["db"]["port"], Value::Number(0.into()));
    assert_eq!(v["note_unencrypted"], Value::String("left in clear".into()));
    let d = open(SECRET_ENV, ".env", None).unwrap();
    let clear = String::from_utf8(d.bytes).unwrap();
    let stand_in = |text: &str, key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap()
            .to_string()
    };
    let db = stand_in(&clear, "DB_PASSWORD");
    assert!(db.starts_with("sops-encrypted-"), "{db}");
    // Stable for one ciphertext, different for another (a re-encrypted value shows as changed).
    let again = String::from_utf8(open(SECRET_ENV, ".env", None).unwrap().bytes).unwrap();
    assert_eq!(stand_in(&again, "DB_PASSWORD"), db);
    assert_ne!(stand_in(&clear, "API_TOKEN"), db);
    let other = String::from_utf8(open(OTHER_ENV, ".env", None).unwrap().bytes).unwrap();
    assert_ne!(stand_in(&other, "DB_PASSWORD"), db);
    // A broken value is still found.
    let t = SECRET_ENV.replace("DB_PASSWORD=ENC[AES256_GCM,", "DB_PASSWORD=ENC[AES999,");
    assert!(matches!(
        open(&t, ".env", None),
        Err(SopsError::BadValue { .. })
    ));
}

#[test]
fn a_bad_key_file_is_an_error_that_never_quotes_it() {
    let e = Identities::parse(
        b"AGE-SECRET-KEY-1NOTAKEY\n",
        Path::new("/etc/berth/age.key"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("/etc/berth/age.key") && !e.contains("NOTAKEY"),
        "{e}"
    );
    let dir = tempfile::tempdir().unwrap();
    assert!(Identities::load(&dir.path().join("missing"))
        .unwrap()
        .is_none());
}

fn opts(sops: SopsOptions) -> RenderOptions {
    RenderOptions {
        checkout_dir: PathBuf::from("/srv/berth/repo"),
        sops,
        ..crate::render::test_options(&[])
    }
}

fn stack() -> MemTree {
    MemTree::new()
        .with(
            "app/compose.yaml",
            "services:\n  web:\n    image: busybox\n    environment:\n      DB_PASSWORD: ${DB_PASSWORD}\n    \
             env_file: [extra.env]\n    secrets: [api]\n    volumes: ['./conf.yaml:/etc/conf.yaml:ro']\n\
             secrets:\n  api:\n    file: ./secret.txt\n",
        )
        .with("app/.env", SECRET_ENV)
        .with("app/extra.env", SECRET_ENV)
        .with("app/secret.txt", SECRET_TXT)
        .with("app/conf.yaml", SECRET_YAML)
}

fn with_key(dir: &tempfile::TempDir) -> SopsOptions {
    let key = dir.path().join("age.key");
    std::fs::write(&key, KEY).unwrap();
    SopsOptions {
        age_key_file: Some(key),
        placeholders: false,
        runtime_dir: dir.path().join("run"),
    }
}

#[test]
fn render_decrypts_env_files_and_mounts_encrypted_files_from_the_runtime_dir() {
    let dir = tempfile::tempdir().unwrap();
    let (result, warnings) = render_warned(&stack(), &opts(with_key(&dir)));
    let d = result.unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let web = d.containers().next().unwrap();
    assert!(
        web.env
            .contains(&"DB_PASSWORD=hunter2-sops-env".to_string()),
        "{:?}",
        web.env
    );
    assert!(
        web.env.contains(&"API_TOKEN=tok-4242-sops".to_string()),
        "{:?}",
        web.env
    );
    let runtime = dir.path().join("run/sops");
    let mounts: Vec<&str> = web.mounts.iter().map(|m| m.source.as_str()).collect();
    assert_eq!(mounts.len(), 2, "{mounts:?}");
    for m in &mounts {
        assert!(m.starts_with(runtime.to_str().unwrap()), "{m}");
    }
    assert!(mounts.iter().any(|m| m.ends_with("/app/secret.txt")));
    assert!(mounts.iter().any(|m| m.ends_with("/app/conf.yaml")));
    for v in ["hunter2-sops-env", "tok-4242-sops", "s3cret-yaml-pass"] {
        assert!(d.sensitive.leaks_into(v), "{v} is not in the sensitive set");
    }
    // Whole decrypted files too (a secret file's content).
    assert!(d
        .sensitive
        .iter()
        .any(|s| s == "binary secret line 1\nsecond line\n"));
}

#[test]
fn an_encrypted_file_the_box_cannot_open_is_a_render_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let tree = stack().with("app/.env", OTHER_ENV);
    let e = render_warned(&tree, &opts(with_key(&dir))).0.unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("app/.env") && text.contains("none of this box's age identities"),
        "{text}"
    );
    // No key at all (and no placeholders): an error too, naming the file.
    let none = SopsOptions {
        age_key_file: Some(dir.path().join("missing.key")),
        ..SopsOptions::default()
    };
    let text = render_warned(&stack(), &opts(none))
        .0
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("app/.env") && text.contains("no age key"),
        "{text}"
    );
    // A tampered bind-mounted file.
    let tampered = stack().with(
        "app/conf.yaml",
        SECRET_YAML.replace("left in clear", "changed"),
    );
    let text = render_warned(&tampered, &opts(with_key(&dir)))
        .0
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("app/conf.yaml") && text.contains("MAC mismatch"),
        "{text}"
    );
    assert!(
        !text.contains("hunter2") && !text.contains("s3cret"),
        "{text}"
    );
}

#[test]
fn without_a_key_render_can_use_placeholders_and_says_so() {
    let o = SopsOptions {
        placeholders: true,
        ..SopsOptions::default()
    };
    let (result, warnings) = render_warned(&stack(), &opts(o));
    let d = result.unwrap();
    let web = d.containers().next().unwrap();
    let prefix = format!("DB_PASSWORD={}-", file::PLACEHOLDER);
    assert!(
        web.env.iter().any(|e| e.starts_with(&prefix)),
        "{:?}",
        web.env
    );
    assert!(d.sensitive.is_empty());
    let w: Vec<String> = warnings.iter().map(ToString::to_string).collect();
    assert!(
        w.iter()
            .any(|w| w.starts_with("app/.env: ") && w.contains("placeholder")),
        "{w:?}"
    );
}

#[test]
fn materialize_writes_private_files_from_the_working_tree_and_prunes_old_ones() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let checkout = dir.path().join("repo");
    for (p, text) in stack().files() {
        let full = checkout.join(p);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, text).unwrap();
    }
    let o = with_key(&dir);
    let d = render_warned(&DirTreeRef(&checkout), &opts(o.clone()))
        .0
        .unwrap();
    let stale = o.runtime_dir.join("sops/0123456789abcdef/x");
    std::fs::create_dir_all(&stale).unwrap();
    assert_eq!(runtime::materialize(&d, &checkout, &o).unwrap(), 2);
    let web = d.containers().next().unwrap();
    for m in &web.mounts {
        let p = Path::new(&m.source);
        let mode = std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o444, "{}", m.source);
        let parent = std::fs::metadata(p.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(parent, 0o700);
    }
    let secret = web
        .mounts
        .iter()
        .find(|m| m.source.ends_with("secret.txt"))
        .unwrap();
    assert_eq!(
        std::fs::read(&secret.source).unwrap(),
        include_bytes!("testdata/plain.txt")
    );
    let root_mode = std::fs::metadata(o.runtime_dir.join("sops"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(root_mode & 0o777, 0o700);
    assert!(!stale.exists(), "a directory no container needs is removed");
    // The working tree still holds only the encrypted file.
    assert_eq!(
        std::fs::read_to_string(checkout.join("app/secret.txt")).unwrap(),
        SECRET_TXT
    );
    // An empty desired state removes every decrypted file.
    runtime::materialize(&Default::default(), &checkout, &o).unwrap();
    assert!(!Path::new(&secret.source).exists());
}

/// A [`crate::render::DirTree`] over a path (the checkout the materializer reads too).
struct DirTreeRef<'a>(&'a Path);

impl Tree for DirTreeRef<'_> {
    fn read(&self, path: &Path) -> std::io::Result<Option<Vec<u8>>> {
        crate::render::DirTree::new(self.0).read(path)
    }
    fn kind(&self, path: &Path) -> std::io::Result<Option<EntryKind>> {
        crate::render::DirTree::new(self.0).kind(path)
    }
    fn list(&self, path: &Path) -> std::io::Result<Vec<Entry>> {
        crate::render::DirTree::new(self.0).list(path)
    }
}

#[test]
fn an_encrypted_compose_file_renders_decrypted() {
    let dir = tempfile::tempdir().unwrap();
    let tree = MemTree::new().with("compose.yaml", include_str!("testdata/compose.yaml"));
    let d = render_warned(&tree, &opts(with_key(&dir))).0.unwrap();
    let web = d.containers().next().unwrap();
    assert!(
        web.env.contains(&"API_KEY=compose-sops-key-77".to_string()),
        "{:?}",
        web.env
    );
    assert_eq!(web.ports.len(), 1);
    assert!(d.sensitive.leaks_into("compose-sops-key-77"));
}

/// A tree that, like a Git tree, refuses to read a directory.
struct StrictTree(MemTree);

impl Tree for StrictTree {
    fn read(&self, path: &Path) -> std::io::Result<Option<Vec<u8>>> {
        match self.0.kind(path)? {
            Some(EntryKind::Dir) => Err(std::io::Error::other("is a directory, not a file")),
            _ => self.0.read(path),
        }
    }
    fn kind(&self, path: &Path) -> std::io::Result<Option<EntryKind>> {
        self.0.kind(path)
    }
    fn list(&self, path: &Path) -> std::io::Result<Vec<Entry>> {
        self.0.list(path)
    }
}

#[test]
fn a_bind_mounted_directory_is_mounted_from_the_checkout() {
    let tree = StrictTree(
        MemTree::new()
            .with(
                "compose.yaml",
                "services:\n  web:\n    image: busybox\n    volumes: ['./conf:/etc/conf:ro']\n",
            )
            .with("conf/app.conf", "x=1\n"),
    );
    let d = render_warned(&tree, &opts(SopsOptions::default()))
        .0
        .unwrap();
    let web = d.containers().next().unwrap();
    assert_eq!(web.mounts[0].source, "/srv/berth/repo/conf");
}

/// `text` as YAML with merge keys applied (as compose reads it).
fn merged(text: &[u8]) -> Value {
    let mut v = yaml(text);
    v.apply_merge().unwrap();
    v
}

#[test]
fn anchors_and_aliases_decrypt_to_the_values_sops_expanded() {
    let d = open(ANCHORS_YAML, "anchors.yaml", Some(&key())).unwrap();
    let want = yaml(include_bytes!("testdata/plain-anchors.yaml"));
    assert_eq!(yaml(&d.bytes), want);
    assert_eq!(want["x"]["s"], Value::String("anchored-map-secret".into()));
    assert!(d.secrets.contains(&"anchored-scalar-secret".to_string()));
    // SOPS encrypted each copy under its own key path: one copy moved to another is refused.
    let value_of = |prefix: &str| {
        let line = ANCHORS_YAML
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap();
        line[prefix.len()..].to_string()
    };
    // (SOPS quotes the key `y`, which YAML 1.1 reads as a boolean.)
    let t = ANCHORS_YAML.replace(&value_of("\"y\": "), &value_of("scal: "));
    let e = open(&t, "anchors.yaml", Some(&key())).err().unwrap();
    assert!(
        matches!(&e, SopsError::Decrypt { path } if path == "y"),
        "{e}"
    );
}

#[test]
fn merge_keys_stay_keys_authenticated_where_sops_put_them() {
    for (text, name) in [
        (MERGE_YAML, "merge.yaml"),
        (MERGE_REGEX_YAML, "merge-regex.yaml"),
    ] {
        let d = open(text, name, Some(&key())).unwrap();
        // Read as compose reads it (merge applied), the same as the clear text.
        assert_eq!(
            merged(&d.bytes),
            merged(include_bytes!("testdata/plain-merge.yaml")),
            "{name}"
        );
        // The decrypted file keeps `<<` (as `sops decrypt` does): the reader applies the merge.
        let raw = yaml(&d.bytes);
        assert!(raw["services"]["web"].get("<<").is_some(), "{name}");
        assert!(raw["services"]["db"]["<<"].is_sequence(), "{name}");
        assert!(d.secrets.contains(&"merge-common-token".to_string()));
        // Without a key, the structure is checked and the merge keys kept too.
        let p = open(text, name, None).unwrap();
        assert!(yaml(&p.bytes)["services"]["web"].get("<<").is_some());
    }
    // The copies merged in are in the MAC: a clear one changed (db's, the last) is a mismatch.
    let i = MERGE_REGEX_YAML.rfind("restart: always").unwrap();
    let mut t = MERGE_REGEX_YAML.to_string();
    t.replace_range(i..i + "restart: always".len(), "restart: never");
    let e = open(&t, "merge-regex.yaml", Some(&key())).err().unwrap();
    assert!(matches!(e, SopsError::Mac), "{e}");
}

#[test]
fn comments_and_block_scalars_decrypt_to_their_values() {
    for (text, name) in [
        (COMMENTS_YAML, "comments.yaml"),
        (COMMENTS_REGEX_YAML, "comments-regex.yaml"),
    ] {
        // SOPS encrypts comments too (`#ENC[…,type:comment]`) and leaves them out of the MAC; the
        // clear file has values only.
        let d = open(text, name, Some(&key())).unwrap();
        let v = yaml(&d.bytes);
        assert_eq!(
            v,
            yaml(include_bytes!("testdata/plain-comments.yaml")),
            "{name}"
        );
        assert_eq!(
            v["db"]["script"],
            Value::String("line one\nline two\n".into())
        );
        assert_eq!(
            v["db"]["folded"],
            Value::String("folded one folded two\n".into())
        );
        assert_eq!(v["db"]["keep"], Value::String("kept\n\n".into()));
        assert_eq!(v["db"]["strip"], Value::String("stripped".into()));
        assert!(d.secrets.contains(&"comment-secret-1".to_string()));
        assert!(!d.secrets.contains(&"admin".to_string()));
    }
    let t = COMMENTS_REGEX_YAML.replace("user_unencrypted: admin", "user_unencrypted: root");
    assert!(matches!(
        open(&t, "comments-regex.yaml", Some(&key())),
        Err(SopsError::Mac)
    ));
}

#[test]
fn several_yaml_documents_decrypt_under_one_mac() {
    assert_eq!(detect(MULTIDOC_YAML.as_bytes(), true), Some(Format::Yaml));
    let d = open(MULTIDOC_YAML, "multidoc.yaml", Some(&key())).unwrap();
    let docs = |bytes: &[u8]| -> Vec<Value> {
        serde_yaml::Deserializer::from_slice(bytes)
            .map(|doc| serde::Deserialize::deserialize(doc).unwrap())
            .collect()
    };
    let got = docs(&d.bytes);
    assert_eq!(got, docs(include_bytes!("testdata/plain-multidoc.yaml")));
    assert_eq!(got.len(), 3);
    assert!(d.secrets.contains(&"second-doc-secret".to_string()));
    // One MAC over every document: dropping the last one is a mismatch.
    let last = MULTIDOC_YAML.rfind("\n---\n").unwrap();
    let e = open(&MULTIDOC_YAML[..last + 1], "multidoc.yaml", Some(&key()))
        .err()
        .unwrap();
    assert!(matches!(e, SopsError::Mac), "{e}");
    // Without a key: every document checked, placeholders.
    let p = open(MULTIDOC_YAML, "multidoc.yaml", None).unwrap();
    assert_eq!(docs(&p.bytes).len(), 3);
    // JSON has one document: more is refused.
    let t = format!("{SECRET_JSON}\n---\n{SECRET_JSON}");
    let e = open(&t, "secret.json", Some(&key())).err().unwrap();
    assert!(matches!(e, SopsError::Unsupported(_)), "{e}");
    // A document that is not a mapping is refused, naming no value.
    let t = format!("{MULTIDOC_YAML}---\n[first-doc-secret]\n");
    let e = open(&t, "multidoc.yaml", Some(&key())).err().unwrap();
    assert!(matches!(e, SopsError::Metadata(_)), "{e}");
    assert!(!e.to_string().contains("first-doc"), "{e}");
}

#[test]
fn an_encrypted_compose_file_with_merge_keys_renders_merged() {
    let dir = tempfile::tempdir().unwrap();
    for text in [MERGE_YAML, MERGE_REGEX_YAML] {
        let tree = MemTree::new().with("compose.yaml", text);
        let d = render_warned(&tree, &opts(with_key(&dir))).0.unwrap();
        let c = |service: &str| {
            d.containers()
                .find(|c| c.service == service)
                .unwrap()
                .clone()
        };
        let (web, db) = (c("web"), c("db"));
        assert_eq!(web.image, "busybox");
        assert_eq!(web.env, vec!["TOKEN=merge-common-token".to_string()]);
        assert_eq!(
            web.command,
            Some(vec!["sleep".to_string(), "3600".to_string()])
        );
        assert_eq!(web.restart, "always");
        // Explicit keys win over merged ones, the first mapping of a list over later ones.
        assert_eq!(db.restart, "unless-stopped");
        assert_eq!(db.env, web.env);
        assert!(d.sensitive.leaks_into("merge-common-token"));
    }
}

#[test]
fn timestamps_and_tags_decrypt_as_sops_decrypt_writes_them() {
    // SOPS types a YAML timestamp `time` (RFC 3339 text inside) and drops tags when it encrypts.
    let d = open(TYPES_YAML, "types.yaml", Some(&key())).unwrap();
    let want: Value = serde_yaml::from_str(
        "created: '2024-01-01T00:00:00Z'\nat: '2001-12-14T21:59:43.1-05:00'\n\
         tagged: tagged-secret\noverride: {x: 1}\ntext: '123'\n",
    )
    .unwrap();
    assert_eq!(yaml(&d.bytes), want);
    assert!(d.secrets.contains(&"2024-01-01T00:00:00Z".to_string()));
}
