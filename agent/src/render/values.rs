//! Reading compose values: every spelling Compose accepts for a scalar, list or mapping, with problems
//! located by key path (and so by file and line).

use super::compose::Doc;
use super::lines::{display, KeyPath, Seg};
use super::{Problem, Tree};
use serde_yaml::{Mapping, Value};
use std::path::Path;

pub(super) struct Ctx<'a> {
    pub docs: &'a [Doc],
    pub stack: String,
    pub problems: Vec<Problem>,
}

impl Ctx<'_> {
    pub fn locate(&self, path: &[Seg]) -> (Option<String>, Option<usize>) {
        for d in self.docs.iter().rev() {
            if let Some(line) = d.index.exact(path) {
                return (Some(d.file.clone()), Some(line));
            }
        }
        // Not literally in any file (a merged sequence, a key reached through an anchor): the file that
        // holds the deepest part of the path, the later file on a tie (it overrides).
        let mut best: Option<(usize, &Doc, usize)> = None;
        for d in self.docs {
            if let Some((depth, line)) = d.index.deepest(path) {
                if best.is_none_or(|(b, _, _)| depth >= b) {
                    best = Some((depth, d, line));
                }
            }
        }
        match best {
            Some((_, d, line)) => (Some(d.file.clone()), Some(line)),
            None => (self.docs.first().map(|d| d.file.clone()), None),
        }
    }

    pub fn err(&mut self, service: Option<&str>, path: &[Seg], msg: impl std::fmt::Display) {
        let (file, line) = self.locate(path);
        let message = if path.is_empty() {
            msg.to_string()
        } else {
            format!("{}: {msg}", display(path))
        };
        self.problems.push(Problem {
            file,
            line,
            column: None,
            stack: Some(self.stack.clone()),
            service: service.map(str::to_string),
            message,
        });
    }
}

pub(super) fn key(path: &[Seg], k: &str) -> KeyPath {
    let mut p = path.to_vec();
    p.push(Seg::Key(k.to_string()));
    p
}

pub(super) fn idx(path: &[Seg], i: usize) -> KeyPath {
    let mut p = path.to_vec();
    p.push(Seg::Index(i));
    p
}

pub(super) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// A scalar as text (strings, numbers, booleans); `None` for null and collections.
pub(super) fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Keys of a mapping as strings, checked against `known` (and `later`: Compose keys not in this release).
pub(super) fn check_keys(
    ctx: &mut Ctx,
    service: Option<&str>,
    path: &[Seg],
    m: &Mapping,
    known: &[&str],
    later: &[&str],
) {
    for k in m.keys() {
        let Some(k) = k.as_str() else {
            ctx.err(
                service,
                path,
                format!("key {} is not a string", type_name(k)),
            );
            continue;
        };
        if known.contains(&k) || k.starts_with("x-") {
            continue;
        }
        let p = key(path, k);
        if k == "build" {
            ctx.err(
                service,
                &p,
                "`build` is refused: berth deploys images; build and push them in CI, then name the image",
            );
        } else if later.contains(&k) {
            ctx.err(
                service,
                &p,
                format!("`{k}` is a Compose key this release of berth does not support yet"),
            );
        } else {
            ctx.err(service, &p, format!("unknown key `{k}`"));
        }
    }
}

pub(super) fn as_map<'v>(
    ctx: &mut Ctx,
    service: Option<&str>,
    path: &[Seg],
    v: &'v Value,
) -> Option<&'v Mapping> {
    match v {
        Value::Mapping(m) => Some(m),
        other => {
            ctx.err(
                service,
                path,
                format!("must be a mapping, not {}", type_name(other)),
            );
            None
        }
    }
}

pub(super) fn string(
    ctx: &mut Ctx,
    service: Option<&str>,
    path: &[Seg],
    v: &Value,
) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        other => {
            ctx.err(
                service,
                path,
                format!("must be a string, not {}", type_name(other)),
            );
            None
        }
    }
}

/// A boolean, also from the strings interpolation produces (`true`, `false`, `yes`, `no`, `on`, `off`).
pub(super) fn boolean(
    ctx: &mut Ctx,
    service: Option<&str>,
    path: &[Seg],
    v: &Value,
) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "true" | "yes" | "y" | "on" | "1" => Some(true),
            "false" | "no" | "n" | "off" | "0" | "" => Some(false),
            _ => {
                ctx.err(service, path, format!("{s:?} is not a boolean"));
                None
            }
        },
        other => {
            ctx.err(
                service,
                path,
                format!("must be a boolean, not {}", type_name(other)),
            );
            None
        }
    }
}

pub(super) fn integer(
    ctx: &mut Ctx,
    service: Option<&str>,
    path: &[Seg],
    v: &Value,
) -> Option<i64> {
    let parsed = match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    if parsed.is_none() {
        ctx.err(service, path, format!("{} is not a whole number", show(v)));
    }
    parsed
}

pub(super) fn show(v: &Value) -> String {
    scalar(v)
        .map(|s| format!("{s:?}"))
        .unwrap_or_else(|| type_name(v).to_string())
}

/// A Go-style duration (`1m30s`, `500ms`) or a number of seconds.
pub(super) fn duration(
    ctx: &mut Ctx,
    service: Option<&str>,
    path: &[Seg],
    v: &Value,
) -> Option<std::time::Duration> {
    let text = scalar(v).unwrap_or_default();
    match crate::config::parse_duration(&text) {
        Ok(d) => Some(d),
        Err(_) => {
            ctx.err(
                service,
                path,
                format!("{} is not a duration like 30s, 1m30s or 500ms", show(v)),
            );
            None
        }
    }
}

/// A size in bytes: a number, or a number with a unit `b`, `k`/`kb`, `m`/`mb`, `g`/`gb` (powers of 1024),
/// the way Compose reads `mem_limit: 512m` or `shm_size: 1gb`.
pub(super) fn bytes(ctx: &mut Ctx, service: Option<&str>, path: &[Seg], v: &Value) -> Option<i64> {
    let parsed = match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => parse_bytes(s),
        _ => None,
    };
    if parsed.is_none() {
        ctx.err(
            service,
            path,
            format!("{} is not a size like 512m or 1g", show(v)),
        );
    }
    parsed
}

pub fn parse_bytes(s: &str) -> Option<i64> {
    let s = s.trim().to_ascii_lowercase();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let factor: f64 = match unit.trim() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let bytes = n * factor;
    (bytes.is_finite() && bytes >= 0.0 && bytes < i64::MAX as f64).then_some(bytes as i64)
}

/// A list of strings (numbers accepted), or a single string when `single_ok`.
pub(super) fn string_list(
    ctx: &mut Ctx,
    service: Option<&str>,
    path: &[Seg],
    v: &Value,
    single_ok: bool,
) -> Vec<String> {
    match v {
        Value::Sequence(items) => items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| string(ctx, service, &idx(path, i), item))
            .collect(),
        Value::String(s) if single_ok => vec![s.clone()],
        Value::Null => Vec::new(),
        other => {
            ctx.err(
                service,
                path,
                format!("must be a list, not {}", type_name(other)),
            );
            Vec::new()
        }
    }
}

/// `command` / `entrypoint`: a list, or a string split like a shell would.
pub(super) fn command(
    ctx: &mut Ctx,
    service: &str,
    path: &[Seg],
    v: &Value,
) -> Option<Vec<String>> {
    match v {
        Value::Null => None,
        Value::String(s) => match shell_split(s) {
            Ok(words) => Some(words),
            Err(e) => {
                ctx.err(Some(service), path, e);
                None
            }
        },
        _ => Some(string_list(ctx, Some(service), path, v, false)),
    }
}

/// Split a command line into words: whitespace separates, single quotes are literal, double quotes allow
/// `\"` and `\\`, a backslash outside quotes escapes the next character.
pub fn shell_split(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err(format!("unterminated single quote in {s:?}")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => cur.push(c),
                            Some(c) => {
                                cur.push('\\');
                                cur.push(c);
                            }
                            None => return Err(format!("unterminated double quote in {s:?}")),
                        },
                        Some(c) => cur.push(c),
                        None => return Err(format!("unterminated double quote in {s:?}")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(c) = chars.next() {
                    cur.push(c);
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// `[K=V, K]` or `{K: V, K: null}` → ordered (key, value); a value-less key is `None`.
pub(super) fn key_values(
    ctx: &mut Ctx,
    service: Option<&str>,
    path: &[Seg],
    v: &Value,
) -> Vec<(String, Option<String>)> {
    match v {
        Value::Null => Vec::new(),
        Value::Sequence(items) => items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| {
                let s = string(ctx, service, &idx(path, i), item)?;
                Some(match s.split_once('=') {
                    Some((k, v)) => (k.to_string(), Some(v.to_string())),
                    None => (s, None),
                })
            })
            .collect(),
        Value::Mapping(m) => m
            .iter()
            .filter_map(|(k, v)| {
                let k = scalar(k)?;
                match v {
                    Value::Null => Some((k, None)),
                    other => match scalar(other) {
                        Some(s) => Some((k, Some(s))),
                        None => {
                            ctx.err(
                                service,
                                &key(path, &k),
                                format!("must be a string, not {}", type_name(other)),
                            );
                            None
                        }
                    },
                }
            })
            .collect(),
        other => {
            ctx.err(
                service,
                path,
                format!("must be a list or a mapping, not {}", type_name(other)),
            );
            Vec::new()
        }
    }
}

/// Read a repository file, refusing ones over [`super::MAX_FILE_BYTES`].
pub fn read_capped(tree: &dyn Tree, path: &Path) -> Result<Option<Vec<u8>>, String> {
    match tree.read(path) {
        Ok(Some(b)) if b.len() > super::MAX_FILE_BYTES => Err(format!(
            "{} is {} bytes, larger than the {} allowed",
            path.display(),
            b.len(),
            super::MAX_FILE_BYTES
        )),
        Ok(r) => Ok(r),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn shell_words() {
        assert_eq!(
            shell_split(r#"sh -c 'echo "a b"' "x\"y" z\ w"#).unwrap(),
            vec!["sh", "-c", "echo \"a b\"", "x\"y", "z w"]
        );
        assert!(shell_split("echo 'open").is_err());
        assert_eq!(shell_split("  ").unwrap(), Vec::<String>::new());
    }
}
