//! [`redact`]: user info and tokens in URLs within any text become `***`, the rest of the text stays as
//! written, and no input makes it panic or show a password.

use super::*;

/// `redact(input)` is `want`, for every pair.
#[track_caller]
fn assert_redacts(cases: &[(&str, &str)]) {
    for (input, want) in cases {
        assert_eq!(redact(input), *want, "redact({input:?})");
    }
}

#[test]
fn redact_hides_passwords_and_tokens() {
    assert_redacts(&[
        ("https://user:tok@host/x", "https://user:***@host/x"),
        (
            "fetch https://u:s3cr3t@git.example.com:8443/a/b.git failed: x",
            "fetch https://u:***@git.example.com:8443/a/b.git failed: x",
        ),
        (
            "https://ghp_abcdef123@github.com/o/r",
            "https://***@github.com/o/r",
        ),
        (
            "http://oauth2:glpat-xyz@gitlab/x",
            "http://oauth2:***@gitlab/x",
        ),
        ("ssh://git@example.com/x.git", "ssh://git@example.com/x.git"),
        (
            "ssh://git:pw@example.com/x.git",
            "ssh://git:***@example.com/x.git",
        ),
        ("git@example.com:fleet.git", "git@example.com:fleet.git"),
        ("https://host/x?y=z", "https://host/x?y=z"),
        ("/srv/git/fleet.git", "/srv/git/fleet.git"),
        ("file:///srv/git/fleet.git", "file:///srv/git/fleet.git"),
        (
            "a https://a:b@h1/x and 'https://c:d@h2' end",
            "a https://a:***@h1/x and 'https://c:***@h2' end",
        ),
        ("https://u:p@ss@host/x", "https://u:***@host/x"),
        ("no url here: 'a:b@c'", "no url here: 'a:b@c'"),
        ("HTTPS://U:P@H/", "HTTPS://U:***@H/"),
    ]);
}

#[test]
fn redact_keeps_the_text_as_written_around_the_hidden_part() {
    // Parsed by `url`, but not re-serialised: no added `/`, case kept, trailing punctuation kept.
    assert_redacts(&[
        (
            "see (https://u:p@Host.example).",
            "see (https://u:***@Host.example).",
        ),
        (
            "https://u:p@[::1]:8443/x, then",
            "https://u:***@[::1]:8443/x, then",
        ),
        ("https://:tok@host/x", "https://:***@host/x"),
        ("https://@host/x", "https://@host/x"),
        (
            "git+ssh://git:pw@example.com/x",
            "git+ssh://git:***@example.com/x",
        ),
        // A password with `/`, `?` or `#` percent-encoded, as URLs require.
        ("https://u:a%2Fb%3Fc%23d@host/x", "https://u:***@host/x"),
        // The user name `url` reports is kept: a user with a password is not a token.
        (
            "https://x-access-token:ghs_1@github.com/o/r",
            "https://x-access-token:***@github.com/o/r",
        ),
    ]);
}

#[test]
fn redact_hides_user_info_of_words_that_are_not_urls() {
    // Invalid port, invalid host: not URLs, but the user info is still hidden.
    assert_redacts(&[
        ("https://u:secret@host:99999/x", "https://***@host:99999/x"),
        ("https://tok@ho^st/x", "https://***@ho^st/x"),
        ("://u:secret@h", "://***@h"),
        ("ssh://", "ssh://"),
        ("a://", "a://"),
        (
            "https://h/login?next=https://u:p@h2/y",
            "https://h/login?next=https://u:***@h2/y",
        ),
    ]);
}

#[test]
fn redact_never_panics_and_never_shows_a_password() {
    for s in [
        "é://u:secret@h/x",
        "日本://u:secret@h",
        "https://u:secret@日本.example/x",
        "https://u:secret@",
        "://",
        ":///",
        "https://u:secret@h\\x",
        "foo://u:secret@h\\x@y",
        "https://u:secret@h#frag@x",
        "https://h/x?next=https://u:secret@h2/y",
    ] {
        let r = redact(s);
        assert!(!r.contains("secret"), "{s} -> {r}");
    }
}
