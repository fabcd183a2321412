//! `${VAR}` interpolation with every Compose form, and `.env` / `env_file` / `label_file` parsing.
//!
//! Forms: `$VAR`, `${VAR}`, `${VAR:-default}` (unset or empty), `${VAR-default}` (unset),
//! `${VAR:?error}`, `${VAR?error}`, `${VAR:+alternative}`, `${VAR+alternative}`, `$$` for a literal `$`;
//! a `$` that starts none of these is kept as it is, as Compose keeps it.
//! Defaults and alternatives may themselves hold `${...}`, up to [`MAX_NESTING`] levels. An unset
//! variable with no default becomes the empty string and is reported as a warning, as in Compose.
//! What variables add is bounded ([`MAX_EXPANDED_BYTES`] for a stack), so `$A$A$A…` cannot eat memory.
//! Errors never quote a value or the text around it: it may hold a secret.
//!
//! Layer: foundations (see the table in `render`).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

/// How deep `${A:-${B:-…}}` may nest.
pub const MAX_NESTING: usize = 16;
/// The most bytes variable values may add to the files of one stack (compose files, `.env`,
/// `env_file`s); a [`Vars`] made with [`Vars::new`] has this much for itself.
pub const MAX_EXPANDED_BYTES: usize = 16 * 1024 * 1024;

/// Why a string could not be interpolated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterpolateError {
    #[error("invalid interpolation: a `${{` is not closed by `}}`")]
    Unterminated,
    #[error("invalid interpolation: `${{` must be followed by a variable name")]
    MissingName,
    #[error("invalid interpolation: unsupported form after `${{{name}`")]
    UnsupportedForm { name: String },
    /// `${VAR:?message}`: the message as written in the file (not expanded: no variable's value shows).
    #[error("required variable {name} is missing a value{}", message_suffix(.message))]
    Required { name: String, message: String },
    #[error("interpolation nests deeper than {MAX_NESTING} levels")]
    TooDeep,
    #[error("variables expand the files of this stack by more than {MAX_EXPANDED_BYTES} bytes")]
    TooLarge,
}

fn message_suffix(m: &str) -> String {
    if m.is_empty() {
        String::new()
    } else {
        format!(": {m}")
    }
}

/// Variables in scope: a lookup, the names that were looked up but unset (for warnings), and what is
/// left of the file's expansion budget.
pub struct Vars<'a> {
    pub map: &'a BTreeMap<String, String>,
    pub unset: Vec<String>,
    budget: usize,
}

impl<'a> Vars<'a> {
    pub fn new(map: &'a BTreeMap<String, String>) -> Self {
        Vars {
            map,
            unset: Vec::new(),
            budget: MAX_EXPANDED_BYTES,
        }
    }

    /// Variables with what is left of a budget shared with other files.
    pub fn with_budget(map: &'a BTreeMap<String, String>, budget: usize) -> Self {
        Vars {
            map,
            unset: Vec::new(),
            budget,
        }
    }

    /// What is left of the budget.
    pub fn budget(&self) -> usize {
        self.budget
    }

    fn get(&self, name: &str) -> Option<&'a str> {
        let value = self.map.get(name).map(String::as_str);
        if value.is_some() {
            TAKEN.with(|t| {
                if let Some(names) = t.borrow_mut().as_mut() {
                    names.insert(name.to_string());
                }
            });
        }
        value
    }

    /// Append a variable's value to `out`, charging the budget.
    fn push_value(&mut self, out: &mut String, value: &str) -> Result<(), InterpolateError> {
        self.budget = self
            .budget
            .checked_sub(value.len())
            .ok_or(InterpolateError::TooLarge)?;
        out.push_str(value);
        Ok(())
    }
}

thread_local! {
    /// The names interpolation took a value from, while [`recording_taken`] runs on this thread.
    static TAKEN: RefCell<Option<BTreeSet<String>>> = const { RefCell::new(None) };
}

/// Run `f` (a render, which runs on one thread), and return the names of the variables interpolation
/// took a value from meanwhile, so render can tell which secret variables reached the state.
pub fn recording_taken<T>(f: impl FnOnce() -> T) -> (T, BTreeSet<String>) {
    let outer = TAKEN.with(|t| t.borrow_mut().replace(BTreeSet::new()));
    let out = f();
    let taken = TAKEN.with(|t| std::mem::replace(&mut *t.borrow_mut(), outer));
    let taken = taken.unwrap_or_default();
    // A recording around this one sees these names too.
    TAKEN.with(|t| {
        if let Some(names) = t.borrow_mut().as_mut() {
            names.extend(taken.iter().cloned());
        }
    });
    (out, taken)
}

/// Interpolate one string.
pub fn interpolate(input: &str, vars: &mut Vars) -> Result<String, InterpolateError> {
    if !input.contains('$') {
        return Ok(input.to_string());
    }
    let chars: Vec<char> = input.chars().collect();
    let (out, _) = expand(&chars, 0, vars, 0)?;
    Ok(out)
}

/// Expand from `i`; at `depth` > 0 (inside a `${…}` word), stop at the `}` that closes it. Returns the
/// text and the index after the last character consumed (the closing `}` is not consumed).
fn expand(
    chars: &[char],
    mut i: usize,
    vars: &mut Vars,
    depth: usize,
) -> Result<(String, usize), InterpolateError> {
    let mut out = String::new();
    while let Some(&c) = chars.get(i) {
        if depth > 0 && c == '}' {
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
                if depth >= MAX_NESTING {
                    return Err(InterpolateError::TooDeep);
                }
                let (value, next) = braced(chars, i + 2, vars, depth + 1)?;
                out.push_str(&value);
                i = next;
            }
            Some(c) if c.is_ascii_alphabetic() || *c == '_' => {
                let end = name_end(chars, i + 1);
                let name: String = chars[i + 1..end].iter().collect();
                match vars.get(&name) {
                    Some(v) => vars.push_value(&mut out, v)?,
                    None => vars.unset.push(name),
                }
                i = end;
            }
            // A `$` that starts nothing (`costs $ 5`, a trailing `$`) stays literal, as in Compose.
            _ => {
                out.push('$');
                i += 1;
            }
        }
    }
    if depth > 0 {
        return Err(InterpolateError::Unterminated);
    }
    Ok((out, i))
}

/// The index after the variable name starting at `start`.
fn name_end(chars: &[char], start: usize) -> usize {
    chars[start..]
        .iter()
        .position(|c| !(c.is_ascii_alphanumeric() || *c == '_'))
        .map_or(chars.len(), |n| start + n)
}

/// The operator of `${VAR<op>word}`.
#[derive(Clone, Copy)]
enum Op {
    /// `:-` (unset or empty) and `-` (unset): the word as a default.
    Default { or_empty: bool },
    /// `:?` and `?`: an error with the word as message.
    Required { or_empty: bool },
    /// `:+` and `+`: the word when set.
    Alternative { or_empty: bool },
}

/// After `${`: the name, an optional operator and its word, and the closing `}`.
fn braced(
    chars: &[char],
    start: usize,
    vars: &mut Vars,
    depth: usize,
) -> Result<(String, usize), InterpolateError> {
    let j = name_end(chars, start);
    let name: String = chars[start..j].iter().collect();
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(InterpolateError::MissingName);
    }
    let value = vars.get(&name);
    let (op, word_start) = match (chars.get(j), chars.get(j + 1)) {
        (Some('}'), _) => {
            let mut out = String::new();
            match value {
                Some(v) => vars.push_value(&mut out, v)?,
                None => vars.unset.push(name),
            }
            return Ok((out, j + 1));
        }
        (Some(':'), Some(c @ ('-' | '?' | '+'))) => (op_of(*c, true), j + 2),
        (Some(c @ ('-' | '?' | '+')), _) => (op_of(*c, false), j + 1),
        _ => return Err(InterpolateError::UnsupportedForm { name }),
    };
    // The word is expanded only when it is used, like a shell; it is parsed either way.
    let set = value.is_some();
    let non_empty = value.is_some_and(|v| !v.is_empty());
    let use_word = match op {
        Op::Default { or_empty } | Op::Required { or_empty } => {
            if or_empty {
                !non_empty
            } else {
                !set
            }
        }
        Op::Alternative { or_empty } => {
            if or_empty {
                non_empty
            } else {
                set
            }
        }
    };
    let mut scratch = Vars {
        map: vars.map,
        unset: Vec::new(),
        budget: vars.budget,
    };
    let (word, end) = expand(chars, word_start, &mut scratch, depth)?;
    if use_word {
        vars.unset.extend(scratch.unset);
        vars.budget = scratch.budget;
    }
    let next = end + 1; // past `}`
    let mut out = String::new();
    match (op, use_word) {
        (Op::Default { .. } | Op::Alternative { .. }, true) => out = word,
        (Op::Required { .. }, true) => {
            return Err(InterpolateError::Required {
                name,
                message: chars[word_start..end].iter().collect(),
            })
        }
        (Op::Default { .. } | Op::Required { .. }, false) => {
            vars.push_value(&mut out, value.unwrap_or_default())?
        }
        (Op::Alternative { .. }, false) => {}
    }
    Ok((out, next))
}

fn op_of(c: char, or_empty: bool) -> Op {
    match c {
        '-' => Op::Default { or_empty },
        '?' => Op::Required { or_empty },
        _ => Op::Alternative { or_empty },
    }
}

/// Why a `.env` / `env_file` could not be read, and on which line (1-based).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {kind}")]
pub struct DotenvError {
    pub line: usize,
    pub kind: DotenvErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DotenvErrorKind {
    #[error("not KEY=VALUE with a variable name of letters, digits, '_', '.' or '-'")]
    BadName,
    #[error("a single quote is not closed")]
    UnterminatedSingle,
    #[error("a double quote is not closed")]
    UnterminatedDouble,
    #[error(transparent)]
    Interpolate(#[from] InterpolateError),
}

/// Parse a `.env` / `env_file` text: `KEY=VALUE` lines, `export ` allowed, `#` comments, single quotes
/// literal, double quotes with `\n`, `\"`, `\\` escapes, `${VAR}` expanded in unquoted and double-quoted
/// values from the variables defined above it and from `outer`. A line `KEY` alone (no `=`) takes the
/// value of `KEY` from `outer` when there is one. What variables add is charged to `budget`.
pub fn parse_dotenv(
    text: &str,
    outer: &BTreeMap<String, String>,
    budget: &mut usize,
) -> Result<Vec<(String, String)>, DotenvError> {
    parse_dotenv_keys(text, outer, budget, |c| {
        c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
    })
}

/// Parse a `label_file` the way Compose does: dotenv syntax, but a label name may hold any character
/// but whitespace and `=` (`traefik.http.routers.a.tls.domains[0].main`), and `${VAR}` sees only the
/// labels defined above it (Compose reads label files without the project's variables).
pub fn parse_label_file(
    text: &str,
    budget: &mut usize,
) -> Result<Vec<(String, String)>, DotenvError> {
    parse_dotenv_keys(text, &BTreeMap::new(), budget, |c| {
        !c.is_whitespace() && c != '='
    })
}

fn parse_dotenv_keys(
    text: &str,
    outer: &BTreeMap<String, String>,
    budget: &mut usize,
    key_char: fn(char) -> bool,
) -> Result<Vec<(String, String)>, DotenvError> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut scope = outer.clone();
    let mut lines = text.lines().enumerate();
    while let Some((n, raw)) = lines.next() {
        let line_no = n + 1;
        let fail = |kind: DotenvErrorKind| DotenvError {
            line: line_no,
            kind,
        };
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
        if key.is_empty() || !key.chars().all(key_char) {
            return Err(fail(DotenvErrorKind::BadName));
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
                .ok_or(fail(DotenvErrorKind::UnterminatedSingle))?
        } else if let Some(body) = rest.strip_prefix('"') {
            let text = quoted(body, &mut lines, closing_double_quote)
                .ok_or(fail(DotenvErrorKind::UnterminatedDouble))?;
            let unescaped = unescape_double(&text);
            expand_value(&unescaped, &scope, budget).map_err(|e| fail(e.into()))?
        } else {
            let v = match rest.find(" #") {
                Some(i) => &rest[..i],
                None => rest,
            };
            expand_value(v.trim_end(), &scope, budget).map_err(|e| fail(e.into()))?
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

/// Interpolate one value of a `.env` file, charging the file's `budget`.
fn expand_value(
    v: &str,
    scope: &BTreeMap<String, String>,
    budget: &mut usize,
) -> Result<String, InterpolateError> {
    let mut vars = Vars {
        map: scope,
        unset: Vec::new(),
        budget: *budget,
    };
    let out = interpolate(v, &mut vars)?;
    *budget = vars.budget;
    Ok(out)
}

/// A quoted value that may run over several lines: the text up to the closing quote `close` finds.
/// Each line is searched once (the newline that joins it resets any escape), so an unclosed quote
/// costs time linear in the file.
fn quoted<'a>(
    first: &str,
    lines: &mut impl Iterator<Item = (usize, &'a str)>,
    close: impl Fn(&str) -> Option<usize>,
) -> Option<String> {
    let mut acc = first.to_string();
    let mut from = 0;
    loop {
        if let Some(end) = acc.get(from..).and_then(&close) {
            acc.truncate(from + end);
            return Some(acc);
        }
        let (_, more) = lines.next()?;
        from = acc.len();
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

    fn run(s: &str, env: &[(&str, &str)]) -> Result<(String, Vec<String>), InterpolateError> {
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
        let err = run("${U:?set U please}", &env).unwrap_err().to_string();
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
        let got = parse_dotenv(text, &outer, &mut MAX_EXPANDED_BYTES.clone()).unwrap();
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
        let err =
            parse_dotenv("A=1\nbad key=2\n", &outer, &mut MAX_EXPANDED_BYTES.clone()).unwrap_err();
        assert_eq!(err.line, 2);
        assert_eq!(err.kind, DotenvErrorKind::BadName);
    }

    #[test]
    fn nesting_is_bounded_without_recursing_the_stack_away() {
        let nest = |n: usize| format!("{}x{}", "${U:-".repeat(n), "}".repeat(n));
        assert_eq!(ok(&nest(MAX_NESTING), &[]), "x");
        assert_eq!(
            run(&nest(MAX_NESTING + 1), &[]),
            Err(InterpolateError::TooDeep)
        );
        // Far past any stack: refused at the bound, not by a crash.
        assert_eq!(run(&nest(200_000), &[]), Err(InterpolateError::TooDeep));
        // An unused word is parsed (and bounded) too.
        let unused = format!("${{A:+{}}}", nest(MAX_NESTING + 1));
        assert_eq!(run(&unused, &[]), Err(InterpolateError::TooDeep));
    }

    #[test]
    fn expansion_is_bounded() {
        let big = "v".repeat(1024 * 1024);
        let env = [("A", big.as_str())];
        // 17 references to 1 MiB: over the 16 MiB a file may grow by.
        let text = "$A".repeat(17);
        assert_eq!(run(&text, &env), Err(InterpolateError::TooLarge));
        assert_eq!(
            run(&"${A}".repeat(16), &env).unwrap().0.len(),
            16 * big.len()
        );
        assert_eq!(
            run(&"${A:-x}".repeat(17), &env),
            Err(InterpolateError::TooLarge)
        );
        // One budget per Vars: many strings of one file share it.
        let map: BTreeMap<String, String> = [("A".to_string(), big.clone())].into_iter().collect();
        let mut vars = Vars::new(&map);
        for _ in 0..16 {
            interpolate("$A", &mut vars).unwrap();
        }
        assert_eq!(
            interpolate("$A", &mut vars),
            Err(InterpolateError::TooLarge)
        );
        // A .env that doubles a value on every line is refused, not grown to 2^40 bytes.
        let mut dotenv = "A0=xxxxxxxxxxxxxxxx\n".to_string();
        for i in 1..40 {
            dotenv.push_str(&format!("A{i}=${{A{}}}${{A{}}}\n", i - 1, i - 1));
        }
        let err =
            parse_dotenv(&dotenv, &BTreeMap::new(), &mut MAX_EXPANDED_BYTES.clone()).unwrap_err();
        assert_eq!(
            err.kind,
            DotenvErrorKind::Interpolate(InterpolateError::TooLarge)
        );
    }

    #[test]
    fn the_names_interpolation_takes_a_value_from_are_recorded() {
        let ((), taken) = recording_taken(|| {
            ok(
                "${A} ${UNSET:-d} ${B:-x} $$C",
                &[("A", "a"), ("B", "b"), ("C", "c")],
            );
        });
        assert_eq!(taken, BTreeSet::from(["A".to_string(), "B".to_string()]));
        let ((), none) = recording_taken(|| {
            ok("plain", &[("A", "a")]);
        });
        assert!(none.is_empty());
    }

    #[test]
    fn errors_do_not_quote_values() {
        let env = [("SECRET", "hunter2")];
        for text in [
            "hunter2 ${",
            "hunter2 ${}",
            "${SECRET:x}",
            "x${SECRET:?${SECRET}}",
        ] {
            let e = run(text, &env);
            if let Err(e) = e {
                assert!(!e.to_string().contains("hunter2"), "{e}");
            }
        }
        let e = run("${U:?set ${SECRET} please}", &env).unwrap_err();
        assert_eq!(
            e.to_string(),
            "required variable U is missing a value: set ${SECRET} please"
        );
        let e = parse_dotenv(
            "PASSWORD='hunter2\n",
            &BTreeMap::new(),
            &mut MAX_EXPANDED_BYTES.clone(),
        )
        .unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let e = parse_dotenv(
            "hunter2 is my password\n",
            &BTreeMap::new(),
            &mut MAX_EXPANDED_BYTES.clone(),
        )
        .unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }

    #[test]
    fn an_unclosed_quote_over_many_lines_is_linear() {
        let text = format!("A=\"{}", "a line of text\n".repeat(70_000));
        let start = std::time::Instant::now();
        let err =
            parse_dotenv(&text, &BTreeMap::new(), &mut MAX_EXPANDED_BYTES.clone()).unwrap_err();
        assert_eq!(err.kind, DotenvErrorKind::UnterminatedDouble);
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
    }
}
