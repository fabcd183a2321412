//! `${VAR}` interpolation with every Compose form, and `.env` / `env_file` parsing.
//!
//! Forms: `$VAR`, `${VAR}`, `${VAR:-default}` (unset or empty), `${VAR-default}` (unset),
//! `${VAR:?error}`, `${VAR?error}`, `${VAR:+alternative}`, `${VAR+alternative}`, `$$` for a literal `$`;
//! a `$` that starts none of these is kept as it is, as Compose keeps it.
//! Defaults and alternatives may themselves hold `${...}`. An unset variable with no default becomes the
//! empty string and is reported as a warning, as in Compose.

use std::collections::BTreeMap;

/// Variables in scope: a lookup, and the names that were looked up but unset (for warnings).
pub struct Vars<'a> {
    pub map: &'a BTreeMap<String, String>,
    pub unset: Vec<String>,
}

impl<'a> Vars<'a> {
    pub fn new(map: &'a BTreeMap<String, String>) -> Self {
        Vars {
            map,
            unset: Vec::new(),
        }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.map.get(name).map(String::as_str)
    }
}

/// Interpolate one string. `Err` is a message for the user (`${VAR:?msg}`, or a malformed template).
pub fn interpolate(input: &str, vars: &mut Vars) -> Result<String, String> {
    if !input.contains('$') {
        return Ok(input.to_string());
    }
    let chars: Vec<char> = input.chars().collect();
    let (out, end) = expand(&chars, 0, vars, false)?;
    debug_assert_eq!(end, chars.len());
    Ok(out)
}

/// Expand from `i`; when `nested`, stop at the `}` that closes the enclosing `${`. Returns the text and
/// the index after the last character consumed (the closing `}` is not consumed).
fn expand(
    chars: &[char],
    mut i: usize,
    vars: &mut Vars,
    nested: bool,
) -> Result<(String, usize), String> {
    let mut out = String::new();
    while i < chars.len() {
        let c = chars[i];
        if nested && c == '}' {
            return Ok((out, i));
        }
        if c != '$' {
            out.push(c);
            i += 1;
            continue;
        }
        match chars.get(i + 1) {
            Some('$') => {
                out.push('$');
                i += 2;
            }
            Some('{') => {
                let (value, next) = braced(chars, i + 2, vars)?;
                out.push_str(&value);
                i = next;
            }
            Some(c) if c.is_ascii_alphabetic() || *c == '_' => {
                let start = i + 1;
                let mut j = start;
                while j < chars.len() && (chars[j].is_ascii_alphanumeric() || chars[j] == '_') {
                    j += 1;
                }
                let name: String = chars[start..j].iter().collect();
                match vars.get(&name) {
                    Some(v) => out.push_str(v),
                    None => vars.unset.push(name),
                }
                i = j;
            }
            // A `$` that starts nothing (`costs $ 5`, a trailing `$`) stays literal, as in Compose.
            _ => {
                out.push('$');
                i += 1;
            }
        }
    }
    if nested {
        return Err("unterminated `${` in interpolation".into());
    }
    Ok((out, i))
}

/// After `${`: the name, an optional operator and its word, and the closing `}`.
fn braced(chars: &[char], start: usize, vars: &mut Vars) -> Result<(String, usize), String> {
    let mut j = start;
    while j < chars.len() && (chars[j].is_ascii_alphanumeric() || chars[j] == '_') {
        j += 1;
    }
    let name: String = chars[start..j].iter().collect();
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        let text: String = chars.iter().collect();
        return Err(format!(
            "invalid interpolation in {text:?}: `${{` must be followed by a variable name"
        ));
    }
    let value = vars.get(&name).map(str::to_string);
    let (op, word_start) = match (chars.get(j), chars.get(j + 1)) {
        (Some('}'), _) => {
            if value.is_none() {
                vars.unset.push(name);
            }
            return Ok((value.unwrap_or_default(), j + 1));
        }
        (Some(':'), Some(c @ ('-' | '?' | '+'))) => (format!(":{c}"), j + 2),
        (Some(c @ ('-' | '?' | '+')), _) => (c.to_string(), j + 1),
        _ => {
            let text: String = chars.iter().collect();
            return Err(format!(
                "invalid interpolation in {text:?}: unsupported form after ${{{name}"
            ));
        }
    };
    // The word is itself expanded only when it is used, like a shell.
    let set = value.is_some();
    let non_empty = value.as_deref().is_some_and(|v| !v.is_empty());
    let use_word = match op.as_str() {
        ":-" | ":?" => !non_empty,
        "-" | "?" => !set,
        ":+" => non_empty,
        "+" => set,
        _ => unreachable!(),
    };
    let mut scratch = Vars {
        map: vars.map,
        unset: Vec::new(),
    };
    let (word, end) = expand(chars, word_start, &mut scratch, true)?;
    if use_word {
        vars.unset.extend(scratch.unset);
    }
    let next = end + 1; // past `}`
    let result = match op.as_str() {
        ":-" | "-" => {
            if use_word {
                word
            } else {
                value.unwrap_or_default()
            }
        }
        ":?" | "?" => {
            if use_word {
                let msg = if word.is_empty() {
                    format!("required variable {name} is missing a value")
                } else {
                    format!("required variable {name} is missing a value: {word}")
                };
                return Err(msg);
            }
            value.unwrap_or_default()
        }
        _ => {
            if use_word {
                word
            } else {
                String::new()
            }
        }
    };
    Ok((result, next))
}

/// Parse a `.env` / `env_file` text: `KEY=VALUE` lines, `export ` allowed, `#` comments, single quotes
/// literal, double quotes with `\n`, `\"`, `\\` escapes, `${VAR}` expanded in unquoted and double-quoted
/// values from the variables defined above it and from `outer`. A line `KEY` alone (no `=`) takes the
/// value of `KEY` from `outer` when there is one. Errors carry the 1-based line.
pub fn parse_dotenv(
    text: &str,
    outer: &BTreeMap<String, String>,
) -> Result<Vec<(String, String)>, (usize, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut scope = outer.clone();
    let mut lines = text.lines().enumerate();
    while let Some((n, raw)) = lines.next() {
        let line_no = n + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line
            .strip_prefix("export ")
            .map(str::trim_start)
            .unwrap_or(line);
        let (key, rest) = match line.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v)),
            None => (line, None),
        };
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        {
            return Err((line_no, format!("{key:?} is not a variable name")));
        }
        let Some(rest) = rest else {
            if let Some(v) = outer.get(key) {
                out.push((key.to_string(), v.clone()));
                scope.insert(key.to_string(), v.clone());
            }
            continue;
        };
        let rest = rest.trim_start();
        let value = if let Some(body) = rest.strip_prefix('\'') {
            quoted(body, &mut lines, |t| t.find('\''))
                .ok_or((line_no, "unterminated single quote".to_string()))?
        } else if let Some(body) = rest.strip_prefix('"') {
            let text = quoted(body, &mut lines, closing_double_quote)
                .ok_or((line_no, "unterminated double quote".to_string()))?;
            let unescaped = unescape_double(&text);
            expand_value(&unescaped, &scope).map_err(|e| (line_no, e))?
        } else {
            let v = match rest.find(" #") {
                Some(i) => &rest[..i],
                None => rest,
            };
            expand_value(v.trim_end(), &scope).map_err(|e| (line_no, e))?
        };
        scope.insert(key.to_string(), value.clone());
        out.push((key.to_string(), value));
    }
    Ok(out)
}

/// `format: raw`: every non-empty line is `KEY=VALUE` taken literally (no quotes, no interpolation, no
/// comments); a line without `=` is a key with an empty value.
pub fn parse_raw_env(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (l.to_string(), String::new()),
        })
        .collect()
}

fn expand_value(v: &str, scope: &BTreeMap<String, String>) -> Result<String, String> {
    let mut vars = Vars::new(scope);
    interpolate(v, &mut vars)
}

/// A quoted value that may run over several lines: the text up to the closing quote `close` finds.
fn quoted<'a>(
    first: &str,
    lines: &mut impl Iterator<Item = (usize, &'a str)>,
    close: impl Fn(&str) -> Option<usize>,
) -> Option<String> {
    let mut acc = first.to_string();
    loop {
        if let Some(end) = close(&acc) {
            acc.truncate(end);
            return Some(acc);
        }
        let (_, more) = lines.next()?;
        acc.push('\n');
        acc.push_str(more);
    }
}

fn closing_double_quote(s: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            '"' if !escaped => return Some(i),
            _ => escaped = false,
        }
    }
    None
}

fn unescape_double(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some(o) => out.push(o),
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(s: &str, env: &[(&str, &str)]) -> Result<(String, Vec<String>), String> {
        let map: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut vars = Vars::new(&map);
        let out = interpolate(s, &mut vars)?;
        Ok((out, vars.unset))
    }

    fn ok(s: &str, env: &[(&str, &str)]) -> String {
        run(s, env).unwrap().0
    }

    #[test]
    fn every_compose_form() {
        let env = [("A", "a"), ("E", "")];
        assert_eq!(ok("x$A-${A}y", &env), "xa-ay");
        assert_eq!(ok("$$A and $${A}", &env), "$A and ${A}");
        assert_eq!(ok("${E:-d} ${E-d} ${U:-d} ${U-d}", &env), "d  d d");
        assert_eq!(
            ok("${A:+alt} ${E:+alt} ${E+alt} ${U+alt}", &env),
            "alt  alt "
        );
        assert_eq!(ok("${A:?boom} ${E?boom}", &env), "a ");
        assert_eq!(ok("${U:-${A}-${B:-b}}", &env), "a-b");
        assert_eq!(ok("${A:-${U}}", &env), "a");
        let err = run("${U:?set U please}", &env).unwrap_err();
        assert!(err.contains("U") && err.contains("set U please"), "{err}");
        assert!(run("${E:?}", &env).is_err());
        assert!(run("${U?}", &env).is_err());
        assert_eq!(ok("cost: 5$ or $ 6", &env), "cost: 5$ or $ 6");
        assert!(run("${A", &env).is_err());
        assert!(run("${}", &env).is_err());
    }

    #[test]
    fn unset_variables_are_reported() {
        let (out, unset) = run("${X} $Y ${Z:-z} ${W:-$V}", &[]).unwrap();
        assert_eq!(out, "  z ");
        assert_eq!(unset, vec!["X", "Y", "V"]);
    }

    #[test]
    fn dotenv_forms() {
        let outer: BTreeMap<String, String> = [("HOST".to_string(), "h".to_string())]
            .into_iter()
            .collect();
        let text = "# comment\nA=1\nexport B = two words # trailing\nC='lit $A'\nD=\"q\\n${A}\"\nE=${A}-$HOST\nHOST\nMISSING\nF=\"multi\nline\"\nG=\n";
        let got = parse_dotenv(text, &outer).unwrap();
        let m: BTreeMap<_, _> = got.into_iter().collect();
        assert_eq!(m["A"], "1");
        assert_eq!(m["B"], "two words");
        assert_eq!(m["C"], "lit $A");
        assert_eq!(m["D"], "q\n1");
        assert_eq!(m["E"], "1-h");
        assert_eq!(m["HOST"], "h");
        assert!(!m.contains_key("MISSING"));
        assert_eq!(m["F"], "multi\nline");
        assert_eq!(m["G"], "");
        let err = parse_dotenv("A=1\nbad key=2\n", &outer).unwrap_err();
        assert_eq!(err.0, 2);
    }
}
