//! Hiding credentials in text built from libgit2 messages and URLs ([`redact`]).

/// Hide credentials in URLs anywhere in `s`: `https://user:tok@host/x` → `https://user:***@host/x`. An
/// http(s) URL with a user name but no password (`https://TOKEN@host/x`, how some forges take tokens) has
/// the whole user info hidden: `https://***@host/x`. SSH users (`ssh://git@host`) are kept. Each
/// `scheme://…` word is parsed by `url`, which decides what its user and password are; the rest of the
/// text, and the URL itself apart from the hidden part, are kept as written. A word that does not parse
/// as a URL but has an `@` in its authority has its whole user info hidden.
pub fn redact(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("://") {
        // The scheme: the run of scheme characters before `://`.
        let scheme_start = rest[..i]
            .char_indices()
            .rev()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |(j, c)| j + c.len_utf8());
        out.push_str(&rest[..scheme_start]);
        let word_end = rest[i..]
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '`'))
            .map_or(rest.len(), |j| i + j);
        let (shown, used) = redact_url(&rest[scheme_start..word_end], i - scheme_start);
        out.push_str(&shown);
        // What follows the authority is scanned again (`?next=https://u:p@h2`).
        rest = &rest[scheme_start + used..];
    }
    out.push_str(rest);
    out
}

/// [`redact`] for one word `scheme://…` (`sep`: where its `://` is): the text to show for its start, and
/// how many bytes of the word that covers (through the authority).
fn redact_url(word: &str, sep: usize) -> (String, usize) {
    let after = sep + 3;
    // Where the user info ends, as written: the last `@` before the path, query or fragment.
    let authority_end = word[after..]
        .find(['/', '?', '#', '\\'])
        .map_or(word.len(), |j| after + j);
    let unchanged = (word[..authority_end].to_string(), authority_end);
    let at = word[after..authority_end].rfind('@').map(|j| after + j);
    // Trailing sentence punctuation is not part of the URL (`(see https://u:p@host).`).
    let url_text = word.trim_end_matches([')', ']', ',', ';', '.', '!']);
    let parsed = url::Url::parse(url_text).or_else(|_| url::Url::parse(word));
    let hidden = match &parsed {
        Ok(u) if u.password().is_some() => format!("{}:***", u.username()),
        Ok(u) if !u.username().is_empty() && matches!(u.scheme(), "http" | "https") => {
            "***".to_string()
        }
        Ok(_) => return unchanged, // no credentials, or an SSH user name
        Err(_) => "***".to_string(),
    };
    match (at, parsed) {
        (Some(at), _) => (
            format!("{}{hidden}{}", &word[..after], &word[at..authority_end]),
            authority_end,
        ),
        // `url` saw user info where the text shows no `@` before the path: rare, but then the parsed
        // URL, blanked, is what is shown.
        (None, Ok(mut u)) => {
            let _ = u.set_password(None);
            let _ = u.set_username("***");
            (u.to_string(), word.len())
        }
        (None, Err(_)) => unchanged,
    }
}
