//! OpenSSH `known_hosts` checking for `source.known_hosts`.
//!
//! libgit2 (libssh2 backend) only knows the user's `~/.ssh/known_hosts`; when `source.known_hosts` is set,
//! berth checks the host key the server presented against that file itself, in the certificate callback.
//!
//! Supported: plain host names and `[host]:port` entries, comma-separated pattern lists with `*`/`?`
//! wildcards and `!` negation, hashed entries (`|1|salt|hmac`, as written by `ssh-keygen -H` /
//! `ssh-keyscan -H`) and `@revoked` lines. `@cert-authority` lines are ignored (host certificates are not
//! supported), as are malformed lines.

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
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let mut first = match fields.next() {
            Some(f) => f,
            None => continue,
        };
        let mut revoked = false;
        if first.starts_with('@') {
            match first {
                "@revoked" => revoked = true,
                _ => continue, // @cert-authority and unknown markers
            }
            first = match fields.next() {
                Some(f) => f,
                None => continue,
            };
        }
        let (Some(_key_type), Some(blob)) = (fields.next(), fields.next()) else {
            continue;
        };
        if !hosts_match(first, &name) {
            continue;
        }
        let Some(blob) = base64_decode(blob) else {
            continue;
        };
        let same = blob == key;
        if revoked {
            if same {
                return HostKeyCheck::Revoked;
            }
            continue;
        }
        listed = true;
        matched |= same;
    }
    match (listed, matched) {
        (_, true) => HostKeyCheck::Match,
        (true, false) => HostKeyCheck::Mismatch,
        (false, false) => HostKeyCheck::Unknown,
    }
}

/// Does a known_hosts host field (pattern list or hashed name) match `name` (lower case)?
fn hosts_match(field: &str, name: &str) -> bool {
    if let Some(rest) = field.strip_prefix("|1|") {
        let Some((salt, hash)) = rest.split_once('|') else {
            return false;
        };
        let (Some(salt), Some(hash)) = (base64_decode(salt), base64_decode(hash)) else {
            return false;
        };
        return hmac_sha1(&salt, name.as_bytes()).as_slice() == hash.as_slice();
    }
    let mut positive = false;
    for pattern in field.split(',') {
        let (negated, pattern) = match pattern.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, pattern),
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

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 (with or without padding); `None` when malformed.
pub(crate) fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = B64.iter().position(|&b| b == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    if bits >= 6 {
        return None;
    }
    Some(out)
}

/// Standard base64 without padding (as OpenSSH prints `SHA256:` fingerprints).
pub(crate) fn base64_encode_nopad(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0];
    let mut msg = data.to_vec();
    let bit_len = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_be_bytes());
    for block in msg.chunks(64) {
        let mut w = [0u32; 80];
        for (i, word) in block.chunks(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A827999),
                20..=39 => (b ^ c ^ d, 0x6ED9EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1BBCDC),
                _ => (b ^ c ^ d, 0xCA62C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (hv, v) in h.iter_mut().zip([a, b, c, d, e]) {
            *hv = hv.wrapping_add(v);
        }
    }
    let mut out = [0u8; 20];
    for (i, v) in h.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&v.to_be_bytes());
    }
    out
}

fn hmac_sha1(key: &[u8], msg: &[u8]) -> [u8; 20] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..20].copy_from_slice(&sha1(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    inner.extend_from_slice(msg);
    let mut outer: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    outer.extend_from_slice(&sha1(&inner));
    sha1(&outer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn sha1_and_hmac_known_vectors() {
        assert_eq!(
            hex(&sha1(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(hex(&sha1(b"")), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_eq!(
            hex(&sha1(
                b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
            )),
            "84983e441c3bd26ebaae4aa1f95129e5e54670f1"
        );
        // RFC 2202 test case 2.
        assert_eq!(
            hex(&hmac_sha1(b"Jefe", b"what do ya want for nothing?")),
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
        );
    }

    #[test]
    fn base64_round_trip() {
        for data in [&b""[..], b"f", b"fo", b"foo", b"foob", b"fooba", b"foobar"] {
            let enc = base64_encode_nopad(data);
            assert_eq!(base64_decode(&enc).unwrap(), data);
        }
        assert_eq!(base64_decode("Zm9vYg==").unwrap(), b"foob");
        assert_eq!(base64_decode("Zm9v!"), None);
    }

    #[test]
    fn patterns() {
        assert!(wildcard_match("*.example.com", "git.example.com"));
        assert!(!wildcard_match("*.example.com", "example.com"));
        assert!(wildcard_match("git?.example.com", "git1.example.com"));
        assert!(hosts_match("a,git.example.com", "git.example.com"));
        assert!(!hosts_match(
            "*.example.com,!git.example.com",
            "git.example.com"
        ));
        assert!(hosts_match(
            "[127.0.0.1]:2222",
            &host_name("127.0.0.1", 2222)
        ));
        assert!(!hosts_match("127.0.0.1", &host_name("127.0.0.1", 2222)));
    }

    #[test]
    fn check_plain_hashed_revoked() {
        let key_a = b"\x00\x00\x00\x0bssh-ed25519key-a".to_vec();
        let key_b = b"\x00\x00\x00\x0bssh-ed25519key-b".to_vec();
        let a64 = base64_encode_nopad(&key_a);
        let text = format!("# comment\ngit.example.com ssh-ed25519 {a64} c\n");
        assert_eq!(check(&text, "git.example.com", &key_a), HostKeyCheck::Match);
        assert_eq!(check(&text, "GIT.example.com", &key_a), HostKeyCheck::Match);
        assert_eq!(
            check(&text, "git.example.com", &key_b),
            HostKeyCheck::Mismatch
        );
        assert_eq!(
            check(&text, "other.example.com", &key_a),
            HostKeyCheck::Unknown
        );

        let salt = b"0123456789abcdefghij";
        let hashed = format!(
            "|1|{}|{} ssh-ed25519 {a64}\n",
            base64_encode_nopad(salt),
            base64_encode_nopad(&hmac_sha1(salt, b"[10.0.0.1]:2222"))
        );
        assert_eq!(
            check(&hashed, &host_name("10.0.0.1", 2222), &key_a),
            HostKeyCheck::Match
        );
        assert_eq!(
            check(&hashed, &host_name("10.0.0.1", 22), &key_a),
            HostKeyCheck::Unknown
        );

        let revoked = format!("{text}@revoked * ssh-ed25519 {a64}\n");
        assert_eq!(
            check(&revoked, "git.example.com", &key_a),
            HostKeyCheck::Revoked
        );
    }

    /// A file hashed by the real `ssh-keygen -H` matches: checks the HMAC and base64 against OpenSSH.
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
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k");
        let st = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key)
            .status()
            .unwrap();
        assert!(st.success());
        let public = std::fs::read_to_string(dir.path().join("k.pub")).unwrap();
        let mut parts = public.split_whitespace();
        let (kt, b64) = (parts.next().unwrap(), parts.next().unwrap());
        let blob = base64_decode(b64).unwrap();
        let kh = dir.path().join("known_hosts");
        std::fs::write(&kh, format!("[git.example.com]:2222 {kt} {b64}\n")).unwrap();
        let st = std::process::Command::new("ssh-keygen")
            .arg("-H")
            .arg("-f")
            .arg(&kh)
            .output()
            .unwrap();
        assert!(st.status.success(), "{st:?}");
        let text = std::fs::read_to_string(&kh).unwrap();
        assert!(text.starts_with("|1|"), "{text}");
        assert_eq!(
            check(&text, &host_name("git.example.com", 2222), &blob),
            HostKeyCheck::Match
        );
        assert_eq!(
            check(&text, &host_name("git.example.com", 22), &blob),
            HostKeyCheck::Unknown
        );
    }
}
