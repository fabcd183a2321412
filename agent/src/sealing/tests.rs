use super::*;
use crate::model::{ContainerSpec, StackSpec};

fn key(byte: u8) -> BoxKey {
    BoxKey::from_bytes(&[byte; KEY_LEN])
}

fn state_with_secret(secret: &str) -> DesiredState {
    let spec = ContainerSpec {
        name: "s-web-1".into(),
        stack: "s".into(),
        service: "web".into(),
        replica: 1,
        image: "busybox".into(),
        env: vec![
            format!("DB_URL=postgres://app:{secret}@db/app"),
            "PLAIN=visible".into(),
        ],
        ..Default::default()
    };
    let mut d = DesiredState::default();
    d.stacks.insert(
        "s".into(),
        StackSpec {
            name: "s".into(),
            dir: ".".into(),
            containers: vec![spec],
            ..Default::default()
        },
    );
    d.sensitive.add(secret);
    d
}

#[test]
fn sealed_strings_open_only_with_their_key_and_never_repeat() {
    let k = key(1);
    let a = k.seal("hunter2-secret").unwrap();
    let b = k.seal("hunter2-secret").unwrap();
    assert!(a.starts_with(SEALED_PREFIX));
    assert_ne!(a, b, "a random nonce per seal");
    assert!(!a.contains("hunter2"));
    assert_eq!(k.unseal(&a).unwrap(), "hunter2-secret");
    assert_eq!(key(2).unseal(&a), Err(SealError::Open));
    // A flipped ciphertext byte is caught by the tag.
    let mut bytes = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(&a[SEALED_PREFIX.len()..])
        .unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let tampered = format!(
        "{SEALED_PREFIX}{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes)
    );
    assert_eq!(k.unseal(&tampered), Err(SealError::Open));
    assert_eq!(k.unseal("plain"), Err(SealError::Malformed));
    assert_eq!(
        k.unseal(&format!("{SEALED_PREFIX}!!")),
        Err(SealError::Malformed)
    );
    assert_eq!(
        k.unseal(&format!("{SEALED_PREFIX}AAAA")),
        Err(SealError::Malformed)
    );
}

#[test]
fn digests_are_keyed_hmac_not_bare_sha256() {
    use sha2::Digest as _;
    let (a, b) = (key(1), key(2));
    let d = a.digest("hunter2-secret");
    assert_eq!(d.len(), 64);
    assert_eq!(d, a.digest("hunter2-secret"));
    assert_ne!(d, b.digest("hunter2-secret"), "another box, another digest");
    assert_ne!(d, a.digest("hunter3-secret"));
    assert_ne!(d, hex::encode(sha2::Sha256::digest(b"hunter2-secret")));
    assert!(!format!("{a:?}").contains(&d));
}

#[test]
fn the_key_is_created_once_private_and_never_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let (k1, created) = BoxKey::load_or_create(dir.path()).unwrap();
    assert!(created);
    let path = dir.path().join(KEY_FILE);
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.len(), KEY_LEN as u64);
    let bytes = std::fs::read(&path).unwrap();
    let (k2, created) = BoxKey::load_or_create(dir.path()).unwrap();
    assert!(!created);
    assert_eq!(k1.digest("x-value"), k2.digest("x-value"));
    // Creating over an existing key leaves it alone.
    assert!(!create(dir.path()).unwrap());
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    // No temporary file is left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(names.len(), 1);
}

#[test]
fn a_bad_key_file_is_a_loud_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(KEY_FILE);
    std::fs::write(&path, b"short").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let e = BoxKey::load_or_create(dir.path()).unwrap_err();
    assert!(matches!(e, KeyError::Length { len: 5, .. }), "{e}");
    assert_eq!(std::fs::read(&path).unwrap(), b"short", "never replaced");
    std::fs::write(&path, [7u8; KEY_LEN]).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = BoxKey::load(dir.path()).unwrap_err();
    assert!(matches!(e, KeyError::Mode { mode: 0o644, .. }), "{e}");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(BoxKey::load(dir.path()).unwrap().is_some());
    assert!(BoxKey::load(&dir.path().join("none")).unwrap().is_none());
}

#[test]
fn redaction_masks_every_occurrence_longest_value_first() {
    let mut s = Sensitive::default();
    s.add("secret");
    s.add("secret-long");
    let k = Arc::new(key(1));
    let r = Redactor::new(&s, Some(k.clone()));
    let out = r.redact("a=secret-long b=secret c=secretsecret");
    assert!(
        !out.contains("secret-long") && !out.contains("=secret"),
        "{out}"
    );
    assert!(out.contains(&format!("<secret:{}>", k.digest("secret-long"))));
    assert_eq!(out.matches(&k.digest("secret")).count(), 3, "{out}");
    assert!(matches!(r.redact("nothing here"), Cow::Borrowed(_)));
    let plain = Redactor::new(&s, None);
    assert_eq!(plain.redact("x secret y"), "x *** y");
}

#[test]
fn a_desired_state_round_trips_sealed_and_holds_no_plaintext() {
    let k = key(1);
    let d = state_with_secret("hunter2-secret");
    let mut v = serde_json::to_value(&d).unwrap();
    seal_desired(&mut v, &d.sensitive, Some(&k)).unwrap();
    let text = v.to_string();
    assert!(!text.contains("hunter2"), "{text}");
    assert!(
        text.contains("PLAIN=visible"),
        "only strings with a secret are sealed"
    );
    let sensitive = unseal_desired(&mut v, Some(&k)).unwrap();
    let mut back: DesiredState = serde_json::from_value(v).unwrap();
    back.sensitive = sensitive;
    assert_eq!(back, d);
    assert_eq!(back.sensitive, d.sensitive);
}

#[test]
fn unsealed_states_load_and_sealed_ones_need_the_right_key() {
    let k = key(1);
    // A record written before sealing: nothing to open, no key needed.
    let mut old = serde_json::to_value(state_with_secret("x")).unwrap();
    let before = old.clone();
    assert!(unseal_desired(&mut old, None).unwrap().is_empty());
    assert_eq!(old, before);
    // No secret values: stored as it is, no key needed.
    let plain = DesiredState::default();
    let mut v = serde_json::to_value(&plain).unwrap();
    seal_desired(&mut v, &plain.sensitive, None).unwrap();
    assert_eq!(v, serde_json::to_value(&plain).unwrap());
    // Secret values without a key are refused, not stored in clear.
    let d = state_with_secret("hunter2-secret");
    let mut v = serde_json::to_value(&d).unwrap();
    assert_eq!(
        seal_desired(&mut v, &d.sensitive, None),
        Err(SealError::NoKey)
    );
    seal_desired(&mut v, &d.sensitive, Some(&k)).unwrap();
    assert_eq!(
        unseal_desired(&mut v.clone(), Some(&key(2))),
        Err(SealError::Open)
    );
    assert_eq!(unseal_desired(&mut v, None), Err(SealError::NoKey));
}

#[test]
fn a_user_string_that_looks_sealed_round_trips() {
    let k = key(1);
    let mut d = state_with_secret("hunter2-secret");
    d.stacks.get_mut("s").unwrap().containers[0]
        .env
        .push(format!("ODD={SEALED_PREFIX}abc"));
    let mut v = serde_json::to_value(&d).unwrap();
    seal_desired(&mut v, &d.sensitive, Some(&k)).unwrap();
    unseal_desired(&mut v, Some(&k)).unwrap();
    let back: DesiredState = serde_json::from_value(v).unwrap();
    assert_eq!(back.stacks, d.stacks);
}

#[test]
fn the_spec_label_and_hash_hold_keyed_digests_that_follow_the_secret() {
    let k = Arc::new(key(1));
    let mut d = state_with_secret("hunter2-secret");
    let bare = d.stacks["s"].containers[0].canonical_json();
    attach_digests(&mut d, Some(&k));
    let spec = &d.stacks["s"].containers[0];
    let json = spec.canonical_json();
    assert!(!json.contains("hunter2"), "{json}");
    assert!(json.contains(&k.digest("hunter2-secret")));
    assert!(json.contains("PLAIN=visible"));
    assert_ne!(json, bare);
    // Field order is the struct's, as without secrets.
    assert!(json.starts_with("{\"name\":\"s-web-1\""), "{json}");
    let hash = spec.spec_hash();
    let mut rotated = state_with_secret("hunter3-secret");
    attach_digests(&mut rotated, Some(&k));
    assert_ne!(rotated.stacks["s"].containers[0].spec_hash(), hash);
    let mut other_box = state_with_secret("hunter2-secret");
    attach_digests(&mut other_box, Some(&Arc::new(key(2))));
    assert_ne!(other_box.stacks["s"].containers[0].spec_hash(), hash);
    // A state without secret values hashes as it always did.
    let mut plain = state_with_secret("x");
    let before = plain.stacks["s"].containers[0].spec_hash();
    attach_digests(&mut plain, Some(&k));
    assert_eq!(plain.stacks["s"].containers[0].spec_hash(), before);
}
