//! Unit tests of `source.verify`: the allowed_signers reader (with a property test), the tag split, and
//! real signatures made by `ssh-keygen -Y sign`, GnuPG (a home of its own, `tests/support/gpg.rs`) and
//! `git` checked against trust files.

use super::ssh::{glob, parse, LineError};
use super::*;
use jiff::tz::TimeZone;
use proptest::prelude::*;
use std::process::Command;

#[path = "../../../../tests/support/gpg.rs"]
mod gpg;
use gpg::{run, GpgHome};

const ED25519: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDO0VQD9TIdICZLWFWwtf7s8/aENve8twGTEmNV0myh5";

fn ts(s: &str) -> jiff::Timestamp {
    s.parse().unwrap()
}

// --- allowed_signers -------------------------------------------------------------------------------

#[test]
fn allowed_signers_lines_as_ssh_keygen_reads_them() {
    let text = format!(
        "# comment\n\n\
         alice@example.com {ED25519} alice's laptop\n\
         \"bob@example.com,ops@*\" namespaces=\"git,file\",valid-after=\"20240101\",valid-before=\"20250101120000Z\" {ED25519}\n\
         carol@example.com cert-authority {ED25519}\n\
         bad@example.com\n\
         dave@example.com frobnicate {ED25519}\n\
         erin@example.com valid-before=\"2025\" {ED25519}\n\
         \"frank@example.com {ED25519}\n"
    );
    let (lines, skipped) = parse(&text, &TimeZone::UTC);
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert_eq!(lines[0].principals, "alice@example.com");
    assert_eq!(lines[0].namespaces, None);
    assert_eq!(lines[1].principals, "bob@example.com,ops@*");
    assert_eq!(
        lines[1].namespaces,
        Some(vec!["git".to_string(), "file".to_string()])
    );
    assert_eq!(
        lines[1].valid_after.as_ref().unwrap().0,
        ts("2024-01-01T00:00:00Z")
    );
    assert_eq!(
        lines[1].valid_before.as_ref().unwrap().0,
        ts("2025-01-01T12:00:00Z")
    );
    assert!(lines[2].cert_authority);
    assert_eq!(lines[0].key, lines[1].key);
    let reasons: Vec<(usize, LineError)> = skipped;
    assert_eq!(reasons.len(), 4, "{reasons:?}");
    assert_eq!(reasons[0], (6, LineError::NoKey));
    assert_eq!(
        reasons[1],
        (7, LineError::UnknownOption("frobnicate".into()))
    );
    assert!(matches!(reasons[2], (8, LineError::Time { .. })));
    assert_eq!(reasons[3], (9, LineError::Unterminated));
}

#[test]
fn times_without_z_are_local_and_short_forms_are_whole_days_and_minutes() {
    let berlin = TimeZone::get("Europe/Berlin").unwrap();
    let line = format!("a valid-after=\"202406011230\",valid-before=\"20240701\" {ED25519}");
    let (lines, skipped) = parse(&line, &berlin);
    assert!(skipped.is_empty(), "{skipped:?}");
    // Summer time in Berlin is UTC+2.
    assert_eq!(
        lines[0].valid_after.as_ref().unwrap().0,
        ts("2024-06-01T10:30:00Z")
    );
    assert_eq!(
        lines[0].valid_before.as_ref().unwrap().0,
        ts("2024-06-30T22:00:00Z")
    );
    for bad in [
        "2024013",
        "20241301",
        "2024010125",
        "2024-01-01",
        "",
        "20240101000000000",
    ] {
        let (lines, skipped) = parse(&format!("a valid-before=\"{bad}\" {ED25519}"), &berlin);
        assert!(lines.is_empty() && skipped.len() == 1, "{bad}: {lines:?}");
    }
}

#[test]
fn glob_matches_like_ssh_patterns() {
    assert!(glob("git", "git"));
    assert!(glob("g*", "git"));
    assert!(glob("*", "git"));
    assert!(glob("g?t", "git"));
    assert!(glob("*i*", "git"));
    assert!(!glob("file", "git"));
    assert!(!glob("g?", "git"));
    assert!(!glob("", "git"));
    assert!(glob("**", ""));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any text: no panic, and every non-blank, non-comment line is either read or skipped.
    #[test]
    fn allowed_signers_never_panics(text in "(?s).{0,400}") {
        let (lines, skipped) = parse(&text, &TimeZone::UTC);
        let meaningful = text
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.trim().starts_with('#'))
            .count();
        prop_assert_eq!(lines.len() + skipped.len(), meaningful);
    }

    /// Lines built from parts read back as those parts.
    #[test]
    fn allowed_signers_round_trip(
        principals in "[a-z0-9@.*_-]{1,20}(,[a-z0-9@.*_-]{1,20}){0,3}",
        quoted in any::<bool>(),
        namespaces in proptest::option::of("[a-z*]{1,8}(,[a-z*]{1,8}){0,2}"),
        before in proptest::option::of(20000101u32..20991231),
        comment in "[ a-zA-Z0-9']{0,20}",
    ) {
        let before = before.filter(|d| jiff::civil::Date::strptime("%Y%m%d", d.to_string()).is_ok());
        let mut opts = Vec::new();
        if let Some(ns) = &namespaces {
            opts.push(format!("namespaces=\"{ns}\""));
        }
        if let Some(b) = before {
            opts.push(format!("valid-before=\"{b}Z\""));
        }
        let p = if quoted { format!("\"{principals}\"") } else { principals.clone() };
        let line = format!("{p} {} {ED25519} {comment}", opts.join(","));
        let (lines, skipped) = parse(&line, &TimeZone::UTC);
        prop_assert!(skipped.is_empty(), "{:?}", skipped);
        prop_assert_eq!(&lines[0].principals, &principals);
        let want: Option<Vec<String>> =
            namespaces.map(|n| n.split(',').map(str::to_string).collect());
        prop_assert_eq!(&lines[0].namespaces, &want);
        prop_assert_eq!(lines[0].valid_before.is_some(), before.is_some());
    }
}

// --- tags ----------------------------------------------------------------------------------------------

#[test]
fn a_signed_tag_splits_at_the_last_signature_block() {
    let raw = b"object 0123\ntype commit\ntag v1\ntagger T <t@t> 1 +0000\n\nrelease\n-----BEGIN PGP SIGNATURE----- in the message\nmore\n-----BEGIN SSH SIGNATURE-----\nAAAA\n-----END SSH SIGNATURE-----\n";
    let (payload, sig) = split_signed(raw).unwrap();
    assert!(payload.ends_with(b"more\n"));
    assert!(sig.starts_with(b"-----BEGIN SSH SIGNATURE-----\nAAAA"));
    assert!(split_signed(b"object 0123\ntype commit\n\nno signature\n").is_none());
    assert!(split_signed(b"").is_none());
}

// --- config --------------------------------------------------------------------------------------------

#[test]
fn settings_need_a_trust_file_and_tag_mode_needs_a_tag() {
    let raw = |y: &str| serde_yaml::from_str::<RawVerify>(y).unwrap();
    let branch = GitRef::Branch("main".into());
    let mut p = Vec::new();
    let s = settings(None, &branch, &mut p);
    assert_eq!((s.mode, p.len()), (VerifyMode::Off, 0));
    let s = settings(
        Some(raw(
            "{mode: head, allowed_signers: /etc/berth/allowed_signers}",
        )),
        &branch,
        &mut p,
    );
    assert_eq!((s.mode, p.len()), (VerifyMode::Head, 0));
    settings(Some(raw("{mode: head}")), &branch, &mut p);
    assert!(p[0].contains("needs allowed_signers"), "{p:?}");
    p.clear();
    settings(Some(raw("{mode: tag, keyring: /k.asc}")), &branch, &mut p);
    assert!(p[0].contains("needs source.tag"), "{p:?}");
    p.clear();
    let s = settings(
        Some(raw("{mode: tag, keyring: /k.asc}")),
        &GitRef::Tag("v1".into()),
        &mut p,
    );
    assert_eq!((s.mode, p.len()), (VerifyMode::Tag, 0));
    settings(Some(raw("{mode: always, keyring: k.asc}")), &branch, &mut p);
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(serde_yaml::from_str::<RawVerify>("{mode: head, allowed: x}").is_err());
}

// --- SSH signatures ------------------------------------------------------------------------------------

/// An ed25519 key made by ssh-keygen: (private key path, public key line).
fn ssh_key(dir: &Path, name: &str) -> (PathBuf, String) {
    let key = dir.join(name);
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&key));
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    (key, public.trim().to_string())
}

fn ssh_sign(key: &Path, namespace: &str, payload: &[u8]) -> Vec<u8> {
    let dir = key.parent().unwrap();
    let file = dir.join("payload");
    std::fs::write(&file, payload).unwrap();
    let _ = std::fs::remove_file(dir.join("payload.sig"));
    run(Command::new("ssh-keygen")
        .args(["-q", "-Y", "sign", "-n", namespace, "-f"])
        .arg(key)
        .arg(&file));
    std::fs::read(dir.join("payload.sig")).unwrap()
}

fn ssh_settings(allowed: &Path) -> VerifySettings {
    VerifySettings {
        mode: VerifyMode::Head,
        allowed_signers: Some(allowed.to_path_buf()),
        keyring: None,
    }
}

#[test]
fn ssh_signatures_checked_against_allowed_signers() {
    let dir = tempfile::tempdir().unwrap();
    let (alice, alice_pub) = ssh_key(dir.path(), "alice");
    let (mallory, _) = ssh_key(dir.path(), "mallory");
    let allowed = dir.path().join("allowed_signers");
    let s = ssh_settings(&allowed);
    let now = jiff::Timestamp::now();
    let payload = b"tree 0123\n\nmessage\n";
    let sig = ssh_sign(&alice, "git", payload);
    // `sig` (or another signature) of `payload` (or other data), checked at `now` (or another time).
    let check_at = |sig: &[u8], data: &[u8], at| check(sig, data, "commit", &s, at);
    let check_now = |sig: &[u8]| check_at(sig, payload, now);
    // allowed_signers holds `lines`, alice's key for every `{alice}`.
    let allow = |lines: &str| {
        std::fs::write(&allowed, lines.replace("{alice}", &alice_pub)).unwrap();
    };

    // The file is read at each check: missing first, then written.
    let e = check_now(&sig).unwrap_err();
    assert!(matches!(e, VerifyError::Unreadable { .. }), "{e}");
    assert_eq!(e.class(), ErrorClass::Transient);

    allow("alice@example.com namespaces=\"git\" {alice}\n");
    let signer = check_now(&sig).unwrap();
    assert_eq!(signer.principal, "alice@example.com");
    assert!(signer.fingerprint.starts_with("SHA256:"), "{signer:?}");
    assert_eq!(
        signer.to_string(),
        format!("alice@example.com ({})", signer.fingerprint)
    );

    // Tampered content.
    let e = check_at(&sig, b"tree 0123\n\nother\n", now).unwrap_err();
    assert!(matches!(e, VerifyError::BadSignature { .. }), "{e}");
    assert!(e.to_string().contains(&signer.fingerprint), "{e}");
    assert_eq!(e.class(), ErrorClass::Input);

    // A key that is not in the file.
    let e = check_now(&ssh_sign(&mallory, "git", payload)).unwrap_err();
    assert!(matches!(e, VerifyError::UnknownKey { .. }), "{e}");
    assert!(e.to_string().contains("SHA256:"), "{e}");

    // Signed for another namespace.
    let e = check_now(&ssh_sign(&alice, "file", payload)).unwrap_err();
    assert!(e.to_string().contains("namespace \"file\""), "{e}");

    // Allowed only for another namespace.
    allow("alice@example.com namespaces=\"file\" {alice}\n");
    let e = check_now(&sig).unwrap_err();
    assert!(matches!(e, VerifyError::Namespace { .. }), "{e}");

    // Expired, and not yet valid, judged at `now`.
    allow("alice@example.com valid-before=\"20200101Z\" {alice}\n");
    let e = check_now(&sig).unwrap_err();
    assert!(matches!(e, VerifyError::Expired { .. }), "{e}");
    assert!(e.to_string().contains("expired key SHA256:"), "{e}");
    assert!(check_at(&sig, payload, ts("2019-12-31T00:00:00Z")).is_ok());
    allow("alice@example.com valid-after=\"20990101\" {alice}\n");
    let e = check_now(&sig).unwrap_err();
    assert!(matches!(e, VerifyError::NotYetValid { .. }), "{e}");

    // A second, valid line for the same key wins over an expired one.
    allow("old@example.com valid-before=\"20200101Z\" {alice}\nalice@example.com {alice}\n");
    assert_eq!(check_now(&sig).unwrap().principal, "alice@example.com");

    // An OpenPGP signature without a keyring, and garbage.
    let e = check_now(b"-----BEGIN PGP SIGNATURE-----\n").unwrap_err();
    assert!(
        matches!(e, VerifyError::NoTrustFile { key: "keyring", .. }),
        "{e}"
    );
    let e = check_now(b"-----BEGIN SSH SIGNATURE-----\nnot base64\n-----END SSH SIGNATURE-----\n")
        .unwrap_err();
    assert!(matches!(e, VerifyError::Malformed { .. }), "{e}");
    let e = check_now(b"hello").unwrap_err();
    assert!(matches!(e, VerifyError::Malformed { .. }), "{e}");
}

// --- OpenPGP signatures --------------------------------------------------------------------------------

/// A detached, armored signature of `payload` by key `signer` of `gpg`.
fn gpg_sign(gpg: &GpgHome, signer: &str, payload: &[u8], faked_time: Option<&str>) -> Vec<u8> {
    let file = gpg.path().join("payload");
    std::fs::write(&file, payload).unwrap();
    let out = gpg.path().join("payload.asc");
    let _ = std::fs::remove_file(&out);
    run(gpg
        .cmd(faked_time)
        .args(["--armor", "--detach-sign", "-u", signer, "-o"])
        .arg(&out)
        .arg(&file));
    std::fs::read(out).unwrap()
}

fn pgp_settings(keyring: &Path) -> VerifySettings {
    VerifySettings {
        mode: VerifyMode::Head,
        allowed_signers: None,
        keyring: Some(keyring.to_path_buf()),
    }
}

#[test]
fn openpgp_signatures_checked_against_the_keyring() {
    let gpg = GpgHome::new();
    let dir = tempfile::tempdir().unwrap();
    let alice = gpg.key("Alice <alice@example.com>", "ed25519", "never", None);
    let rsa = gpg.key("Rob <rob@example.com>", "rsa2048", "never", None);
    let mallory = gpg.key("Mallory <mallory@example.com>", "ed25519", "never", None);
    // Made, and used, in 2020; expired a day later.
    let old = gpg.key(
        "Old <old@example.com>",
        "ed25519",
        "1d",
        Some("20200101T000000"),
    );
    let now = jiff::Timestamp::now();
    let payload = b"tree 0123\n\nmessage\n";
    let sign = |key: &str| gpg_sign(&gpg, key, payload, None);

    // A directory of keys; two keys concatenated in one file.
    let keyring = dir.path().join("keys");
    std::fs::create_dir(&keyring).unwrap();
    std::fs::write(keyring.join("alice.asc"), gpg.export(&alice)).unwrap();
    std::fs::write(
        keyring.join("more.asc"),
        format!("{}\n{}\n", gpg.export(&rsa), gpg.export(&old)),
    )
    .unwrap();
    std::fs::write(keyring.join(".hidden"), "not a key").unwrap();
    let s = pgp_settings(&keyring);
    // `sig` of `data`, checked against `keyring` at `at`.
    let check_at = |sig: &[u8], data: &[u8], at| check(sig, data, "commit", &s, at);

    let signer = check_at(&sign(&alice), payload, now).unwrap();
    assert_eq!(signer.principal, "Alice <alice@example.com>");
    assert_eq!(signer.fingerprint, alice);
    let signer = check_at(&sign(&rsa), payload, now).unwrap();
    assert_eq!(signer.fingerprint, rsa);

    let e = check_at(&sign(&alice), b"tampered", now).unwrap_err();
    assert!(matches!(e, VerifyError::BadSignature { .. }), "{e}");
    assert!(e.to_string().contains(&alice), "{e}");

    let e = check_at(&sign(&mallory), payload, now).unwrap_err();
    assert!(matches!(e, VerifyError::UnknownKey { .. }), "{e}");
    assert!(e.to_string().contains(&mallory), "{e}");

    let old_sig = gpg_sign(&gpg, &old, payload, Some("20200101T010000"));
    let e = check_at(&old_sig, payload, now).unwrap_err();
    assert!(matches!(e, VerifyError::Expired { .. }), "{e}");
    assert!(e.to_string().contains(&old), "{e}");
    assert!(check_at(&old_sig, payload, ts("2020-01-01T02:00:00Z")).is_ok());

    // Revoked with the certificate GnuPG made at key generation.
    let sig = sign(&alice);
    let rev = gpg.path().join(format!("openpgp-revocs.d/{alice}.rev"));
    let cert = std::fs::read_to_string(&rev)
        .unwrap()
        .replace(":-----BEGIN", "-----BEGIN");
    let cert_file = dir.path().join("rev.asc");
    std::fs::write(&cert_file, cert).unwrap();
    run(gpg.cmd(None).arg("--import").arg(&cert_file));
    // `sig` checked against the keyring (file or directory) at `path`.
    let check_with = |path: &Path| check(&sig, payload, "commit", &pgp_settings(path), now);
    let single = dir.path().join("alice.asc");
    std::fs::write(&single, gpg.export(&alice)).unwrap();
    let e = check_with(&single).unwrap_err();
    assert!(matches!(e, VerifyError::Revoked { .. }), "{e}");

    // A keyring that is not one, and one that is missing.
    std::fs::write(&single, "hello").unwrap();
    let e = check_with(&single).unwrap_err();
    assert!(matches!(e, VerifyError::BadTrustFile { .. }), "{e}");
    let e = check_with(&dir.path().join("none")).unwrap_err();
    assert!(matches!(e, VerifyError::Unreadable { .. }), "{e}");
}

#[test]
fn openpgp_signing_subkeys_are_found_and_bound() {
    let gpg = GpgHome::new();
    let dir = tempfile::tempdir().unwrap();
    let primary = gpg.key("Sub <sub@example.com>", "ed25519", "never", None);
    run(gpg
        .cmd(None)
        .args(["--quick-add-key", &primary, "ed25519", "sign", "never"]));
    let keyring = dir.path().join("k.asc");
    std::fs::write(&keyring, gpg.export(&primary)).unwrap();
    let payload = b"data";
    // GnuPG signs with the newest signing subkey.
    let sig = gpg_sign(&gpg, &primary, payload, None);
    let signer = check(
        &sig,
        payload,
        "commit",
        &pgp_settings(&keyring),
        jiff::Timestamp::now(),
    )
    .unwrap();
    assert_eq!(signer.fingerprint, primary);
}

// --- commits and tags made by git ----------------------------------------------------------------------

fn git(dir: &Path, args: &[&str]) -> String {
    run(Command::new("git")
        .arg("-C")
        .arg(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .args(["-c", "user.name=T", "-c", "user.email=t@example.com"])
        .args(args))
}

#[test]
fn commits_and_tags_signed_by_git() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = ssh_key(dir.path(), "signer");
    let allowed = dir.path().join("allowed_signers");
    std::fs::write(&allowed, format!("signer@example.com {public}\n")).unwrap();
    let work = dir.path().join("repo");
    std::fs::create_dir(&work).unwrap();
    git(&work, &["init", "-q"]);
    let key_arg = format!("user.signingkey={}", key.display());
    let signed = ["-c", "gpg.format=ssh", "-c", key_arg.as_str()];
    let commit = |args: &[&str], msg: &str| {
        let mut a: Vec<&str> = args.to_vec();
        a.extend(["commit", "-q", "--allow-empty", "-m", msg]);
        git(&work, &a);
        git(&work, &["rev-parse", "HEAD"])
    };
    let unsigned = commit(&[], "unsigned");
    let mut a = signed.to_vec();
    a.push("-c");
    a.push("commit.gpgsign=true");
    let signed_commit = commit(&a, "signed");
    let mut t = signed.to_vec();
    t.extend(["tag", "-s", "-m", "release v1", "v1"]);
    git(&work, &t);
    git(&work, &["tag", "-a", "-m", "unsigned", "v2"]);
    git(&work, &["tag", "light"]);

    let repo = Repository::open(&work).unwrap();
    let s = ssh_settings(&allowed);
    let now = jiff::Timestamp::now();
    let oid = |s: &str| Oid::from_str(s).unwrap();
    let signer = verify_commit(&repo, oid(&signed_commit), &s, now).unwrap();
    assert_eq!(signer.principal, "signer@example.com");
    let e = verify_commit(&repo, oid(&unsigned), &s, now).unwrap_err();
    assert!(matches!(e, VerifyError::Unsigned { .. }), "{e}");
    assert_eq!(e.to_string(), "unsigned commit (source.verify.mode: head)");

    let t = Signer {
        tag: Some("v1".into()),
        ..signer
    };
    assert_eq!(
        verify_tag(&repo, "v1", oid(&signed_commit), &s, now).unwrap(),
        t
    );
    assert!(t.to_string().ends_with(" on tag v1"), "{t}");
    let e = verify_tag(&repo, "v2", oid(&signed_commit), &s, now).unwrap_err();
    assert_eq!(e.to_string(), "unsigned tag v2 (source.verify.mode: tag)");
    let e = verify_tag(&repo, "light", oid(&signed_commit), &s, now).unwrap_err();
    assert!(e.to_string().contains("lightweight"), "{e}");
    let e = verify_tag(&repo, "v1", oid(&unsigned), &s, now).unwrap_err();
    assert!(matches!(e, VerifyError::TagMoved { .. }), "{e}");
}

// --- where the result goes -----------------------------------------------------------------------------

#[test]
fn the_example_config_documents_source_verify() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config-examples/config.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    // Enable the commented-out `verify:` block.
    let mut inside = false;
    let enabled: String = text
        .lines()
        .map(|l| {
            if l.trim_start() == "# verify:" {
                inside = true;
            } else if inside && !l.trim_start().starts_with("#   ") {
                inside = false;
            }
            if inside {
                format!("{}\n", l.replacen("# ", "", 1))
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    let s = crate::config::parse(&enabled).unwrap_or_else(|e| panic!("{e:?}\n{enabled}"));
    assert_eq!(s.source.verify.mode, VerifyMode::Head);
    assert!(s.source.verify.allowed_signers.is_some() && s.source.verify.keyring.is_some());
    // And off unless asked for.
    let s = crate::config::parse(&text).unwrap();
    assert_eq!(s.source.verify, VerifySettings::default());
    let e = crate::config::parse("source:\n  url: /r\n  verify: {mode: head}\n").unwrap_err();
    assert!(e.iter().any(|p| p.contains("source.verify")), "{e:?}");
}

#[test]
fn a_refused_commit_is_an_input_error_with_an_alert_of_its_own() {
    let err = crate::error::CycleError::Verify {
        commit: "0123456789ab".into(),
        source: VerifyError::UnknownKey {
            subject: "commit".into(),
            fingerprint: "SHA256:abc".into(),
        },
    };
    assert_eq!(err.class(), ErrorClass::Input);
    assert_eq!(
        err.to_string(),
        "commit 0123456789ab: refused: commit signed by an unknown key SHA256:abc"
    );
    let f = crate::signals::alerts::failure_of(&err).unwrap();
    assert_eq!(f.reason, crate::signals::alerts::Reason::VerifyFailed);
    assert_eq!(f.reason.as_str(), "verify_failed");
    assert_eq!(f.commit.as_deref(), Some("0123456789ab"));
    // A trust file the operator must fix is retried; a clone that cannot be read is the agent's.
    let missing = VerifyError::Unreadable {
        key: "keyring",
        path: "/k".into(),
        source: std::io::Error::from(std::io::ErrorKind::NotFound),
    };
    assert_eq!(missing.class(), ErrorClass::Transient);
    let git = VerifyError::Git {
        subject: "commit".into(),
        message: "x".into(),
    };
    assert_eq!(git.class(), ErrorClass::Internal);
}

#[test]
fn revisions_keep_their_signer_and_older_records_load() {
    let rev = crate::store::Revision {
        signer: Some(Signer {
            principal: "alice@example.com".into(),
            fingerprint: "SHA256:abc".into(),
            tag: None,
        }),
        ..crate::store::Revision::for_test(1)
    };
    let json = serde_json::to_value(&rev).unwrap();
    let back: crate::store::Revision = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(back, rev);
    let mut old = json;
    old.as_object_mut().unwrap().remove("signer");
    let back: crate::store::Revision = serde_json::from_value(old).unwrap();
    assert_eq!(back.signer, None);
    let entry = crate::api::HistoryEntry::from(&rev);
    assert_eq!(
        entry.signer.as_deref(),
        Some("alice@example.com (SHA256:abc)")
    );
}
