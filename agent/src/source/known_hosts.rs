//! OpenSSH `known_hosts` checking for `source.known_hosts`.
//!
//! libgit2 (libssh2 backend) only knows the user's `~/.ssh/known_hosts`; when `source.known_hosts` is set,
//! berth checks the host key the server presented against that file itself, in the certificate callback.
//! Lines are parsed by `ssh-key`; hashed names are matched with HMAC-SHA1 (`hmac`, `sha1`).
//!
//! Supported: plain host names and `[host]:port` entries, comma-separated pattern lists with `*`/`?`
//! wildcards and `!` negation, hashed entries (`|1|salt|hmac`, as written by `ssh-keygen -H` /
//! `ssh-keyscan -H`) and `@revoked` lines. `@cert-authority` lines are ignored (host certificates are not
//! supported), as are malformed lines.

use base64::Engine as _;
use hmac::Mac as _;
use ssh_key::known_hosts::{Entry, HostPatterns, Marker};

/// The outcome of looking a host key up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostKeyCheck {
    /// The host is listed with exactly this key.
    Match,
    /// The host is listed, but with other keys (a changed host key, or only keys of other types).
    Mismatch,
    /// The key is marked `@revoked`.
    Revoked,
    /// The host is not listed at all.
    Unknown,
}

/// The name a host is listed under: `host` on port 22, `[host]:port` otherwise (as OpenSSH does).
pub(crate) fn host_name(host: &str, port: u16) -> String {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

/// Check `key` (the SSH wire-format host key blob) for `name` (see [`host_name`]) against the text of a
/// known_hosts file.
pub(crate) fn check(text: &str, name: &str, key: &[u8]) -> HostKeyCheck {
    let name = name.to_ascii_lowercase();
    let mut listed = false;
    let mut matched = false;
    for entry in entries(text) {
        if !hosts_match(entry.host_patterns(), &name) {
            continue;
        }
        let same = entry
            .public_key()
            .to_bytes()
            .is_ok_and(|blob| blob.as_slice() == key);
        match entry.marker() {
            Some(Marker::Revoked) if same => return HostKeyCheck::Revoked,
            Some(_) => continue, // a revoked other key; @cert-authority
            None => {
                listed = true;
                matched |= same;
            }
        }
    }
    match (listed, matched) {
        (_, true) => HostKeyCheck::Match,
        (true, false) => HostKeyCheck::Mismatch,
        (false, false) => HostKeyCheck::Unknown,
    }
}

/// The entries of a known_hosts text that parse; comments, blank and malformed lines are skipped. Fields
/// may be separated by any run of blanks, as OpenSSH allows (`ssh-key` wants single spaces).
fn entries(text: &str) -> impl Iterator<Item = Entry> + '_ {
    text.lines().filter_map(|line| {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        line.split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .parse::<Entry>()
            .ok()
    })
}

/// Does a known_hosts host field (pattern list or hashed name) match `name` (lower case)?
fn hosts_match(patterns: &HostPatterns, name: &str) -> bool {
    match patterns {
        HostPatterns::HashedName { salt, hash } => {
            let Ok(mut mac) = hmac::Hmac::<sha1::Sha1>::new_from_slice(salt) else {
                return false;
            };
            mac.update(name.as_bytes());
            mac.verify_slice(hash).is_ok()
        }
        HostPatterns::Patterns(list) => {
            let mut positive = false;
            for pattern in list {
                let (negated, pattern) = match pattern.strip_prefix('!') {
                    Some(p) => (true, p),
                    None => (false, pattern.as_str()),
                };
                if wildcard_match(&pattern.to_ascii_lowercase(), name) {
                    if negated {
                        return false;
                    }
                    positive = true;
                }
            }
            positive
        }
    }
}

/// `*` and `?` glob matching, as OpenSSH's `match_pattern`.
fn wildcard_match(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni) = (0, 0);
    let (mut star, mut star_n) = (None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            star_n = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            star_n += 1;
            ni = star_n;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

/// Standard base64 without padding, as OpenSSH prints `SHA256:` fingerprints.
pub(crate) fn base64_encode_nopad(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ssh_key::public::{Ed25519PublicKey, KeyData};
    use ssh_key::PublicKey;

    /// An Ed25519 public key: its wire blob and its `type base64` text.
    fn key(byte: u8) -> (Vec<u8>, String) {
        let k = PublicKey::from(KeyData::Ed25519(Ed25519PublicKey([byte; 32])));
        (k.to_bytes().unwrap(), k.to_openssh().unwrap())
    }

    /// A `|1|salt|hash` field for `name`, the way `ssh-keygen -H` writes it.
    fn hashed(name: &str, salt: &[u8]) -> String {
        let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(salt).unwrap();
        mac.update(name.as_bytes());
        let b64 = base64::engine::general_purpose::STANDARD;
        format!(
            "|1|{}|{}",
            b64.encode(salt),
            b64.encode(mac.finalize().into_bytes())
        )
    }

    fn field(s: &str) -> HostPatterns {
        s.parse().unwrap()
    }

    #[test]
    fn patterns() {
        assert!(wildcard_match("*.example.com", "git.example.com"));
        assert!(!wildcard_match("*.example.com", "example.com"));
        assert!(wildcard_match("git?.example.com", "git1.example.com"));
        assert!(hosts_match(&field("a,git.example.com"), "git.example.com"));
        assert!(!hosts_match(
            &field("*.example.com,!git.example.com"),
            "git.example.com"
        ));
        assert!(hosts_match(
            &field("[127.0.0.1]:2222"),
            &host_name("127.0.0.1", 2222)
        ));
        assert!(!hosts_match(
            &field("127.0.0.1"),
            &host_name("127.0.0.1", 2222)
        ));
    }

    #[test]
    fn fingerprint_base64_has_no_padding() {
        assert_eq!(base64_encode_nopad(b"foob"), "Zm9vYg");
        assert_eq!(base64_encode_nopad(b""), "");
    }

    #[test]
    fn check_plain_and_revoked() {
        let (blob_a, a) = key(1);
        let (blob_b, _) = key(2);
        let text = format!("# comment\ngit.example.com {a} a comment\n");
        assert_eq!(
            check(&text, "git.example.com", &blob_a),
            HostKeyCheck::Match
        );
        assert_eq!(
            check(&text, "GIT.example.com", &blob_a),
            HostKeyCheck::Match
        );
        assert_eq!(
            check(&text, "git.example.com", &blob_b),
            HostKeyCheck::Mismatch
        );
        assert_eq!(
            check(&text, "other.example.com", &blob_a),
            HostKeyCheck::Unknown
        );

        let revoked = format!("{text}@revoked * {a}\n");
        assert_eq!(
            check(&revoked, "git.example.com", &blob_a),
            HostKeyCheck::Revoked
        );
        // A revoked other key does not list the host.
        let (_, c) = key(3);
        let other_revoked = format!("@revoked * {c}\n");
        assert_eq!(
            check(&other_revoked, "git.example.com", &blob_a),
            HostKeyCheck::Unknown
        );
        // Certificate authorities are not supported: the line lists nothing.
        let ca = format!("@cert-authority *.example.com {a}\n");
        assert_eq!(
            check(&ca, "git.example.com", &blob_a),
            HostKeyCheck::Unknown
        );
    }

    #[test]
    fn blanks_and_malformed_lines() {
        let (blob_a, a) = key(1);
        let tabs = format!("  git.example.com\t{}  \n", a.replacen(' ', "\t ", 1));
        assert_eq!(
            check(&tabs, "git.example.com", &blob_a),
            HostKeyCheck::Match
        );
        let junk = format!(
            "git.example.com ssh-ed25519 !!notbase64\n@bogus git.example.com {a}\n\
             |1|x git.example.com\ngit.example.com\n\ngit.example.com {a}\n"
        );
        assert_eq!(
            check(&junk, "git.example.com", &blob_a),
            HostKeyCheck::Match
        );
    }

    #[test]
    fn hashed_entry_matches_and_a_wrong_key_for_it_is_a_mismatch() {
        let (blob_a, a) = key(1);
        let (blob_b, _) = key(2);
        let text = format!(
            "{} {a}\n",
            hashed("[10.0.0.1]:2222", b"0123456789abcdefghij")
        );
        let name = host_name("10.0.0.1", 2222);
        assert_eq!(check(&text, &name, &blob_a), HostKeyCheck::Match);
        assert_eq!(check(&text, &name, &blob_b), HostKeyCheck::Mismatch);
        assert_eq!(
            check(&text, &host_name("10.0.0.1", 22), &blob_a),
            HostKeyCheck::Unknown
        );
        let revoked = format!("{text}@revoked {} {a}\n", hashed(&name, b"salt"));
        assert_eq!(check(&revoked, &name, &blob_a), HostKeyCheck::Revoked);
    }

    /// Files hashed by the real `ssh-keygen -H` match, for Ed25519 and ECDSA keys: checks the parsing and
    /// HMAC against OpenSSH.
    #[test]
    fn check_against_ssh_keygen_hashed_file() {
        if std::process::Command::new("ssh-keygen")
            .arg("-?")
            .output()
            .is_err()
        {
            eprintln!("ssh-keygen not installed; skipped");
            return;
        }
        for kind in ["ed25519", "ecdsa", "rsa"] {
            let dir = tempfile::tempdir().unwrap();
            let key = dir.path().join("k");
            let st = std::process::Command::new("ssh-keygen")
                .args(["-q", "-t", kind, "-N", "", "-f"])
                .arg(&key)
                .status()
                .unwrap();
            assert!(st.success());
            let public = std::fs::read_to_string(dir.path().join("k.pub")).unwrap();
            let blob = PublicKey::from_openssh(&public)
                .unwrap()
                .to_bytes()
                .unwrap();
            let kh = dir.path().join("known_hosts");
            std::fs::write(&kh, format!("[git.example.com]:2222 {public}")).unwrap();
            let st = std::process::Command::new("ssh-keygen")
                .arg("-H")
                .arg("-f")
                .arg(&kh)
                .output()
                .unwrap();
            assert!(st.status.success(), "{st:?}");
            let text = std::fs::read_to_string(&kh).unwrap();
            assert!(text.starts_with("|1|"), "{text}");
            let name = host_name("git.example.com", 2222);
            assert_eq!(check(&text, &name, &blob), HostKeyCheck::Match, "{kind}");
            assert_eq!(
                check(&text, &host_name("git.example.com", 22), &blob),
                HostKeyCheck::Unknown,
                "{kind}"
            );
            assert_eq!(
                check(&text, &name, &self::key(9).0),
                HostKeyCheck::Mismatch,
                "{kind}"
            );
        }
    }
}
