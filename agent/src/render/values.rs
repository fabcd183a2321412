//! Reading compose values: every spelling Compose accepts for a scalar, list or mapping, with problems
//! located by key path (and so by file and line).
//!
//! Layer: value readers (see the table in `render`).

use super::budget::Budget;
use super::input::Doc;
use super::lines::{display, KeyPath, Seg};
use super::Problem;
use serde_yaml::{Mapping, Value};

pub(super) struct Ctx<'a> {
    pub docs: &'a [Doc],
    pub stack: String,
    pub problems: Vec<Problem>,
    /// What berth accepts but ignores, as Compose does on one engine (Swarm-only `deploy` keys).
    pub warnings: Vec<Problem>,
    /// What is left of the stack's budget (files read by `env_file`, their expansion).
    pub budget: Budget,
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
        let p = self.problem(service, path, msg);
        self.problems.push(p);
    }

    /// A warning: located like a problem, but the render goes on.
    pub fn warn(&mut self, service: Option<&str>, path: &[Seg], msg: impl std::fmt::Display) {
        let p = self.problem(service, path, msg);
        self.warnings.push(p);
    }

    fn problem(&self, service: Option<&str>, path: &[Seg], msg: impl std::fmt::Display) -> Problem {
        let (file, line) = self.locate(path);
        let message = if path.is_empty() {
            msg.to_string()
        } else {
            format!("{}: {msg}", display(path))
        };
        Problem {
            file,
            line,
            column: None,
            stack: Some(self.stack.clone()),
            service: service.map(str::to_string),
            message,
        }
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
                ctx.err(service, path, "must be a boolean (true or false)");
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

/// `command` / `entrypoint`: a list, or a string split into words the way a POSIX shell would (as
/// Compose does, with a shell-words implementation). An unterminated quote is a problem at the key.
pub(super) fn command(
    ctx: &mut Ctx,
    service: &str,
    path: &[Seg],
    v: &Value,
) -> Option<Vec<String>> {
    match v {
        Value::Null => None,
        Value::String(s) => match shell_words::split(s) {
            Ok(words) => Some(words),
            Err(shell_words::ParseError) => {
                ctx.err(
                    Some(service),
                    path,
                    "a quote is not closed (the string is split into words like a shell does)",
                );
                None
            }
        },
        _ => Some(string_list(ctx, Some(service), path, v, false)),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Result<Vec<String>, shell_words::ParseError> {
        shell_words::split(s)
    }

    #[test]
    fn commands_split_like_a_shell() {
        assert_eq!(
            words(r#"sh -c 'echo "a b"' "x\"y" z\ w"#).unwrap(),
            vec!["sh", "-c", "echo \"a b\"", "x\"y", "z w"]
        );
        assert_eq!(words("  ").unwrap(), Vec::<String>::new());
        assert!(words("echo 'open").is_err());
        assert!(words("echo \"open").is_err());
    }

    #[test]
    fn an_unterminated_quote_is_a_problem_at_the_key_without_the_value() {
        let mut ctx = Ctx {
            docs: &[],
            stack: "s".into(),
            problems: Vec::new(),
            warnings: Vec::new(),
            budget: Budget::default(),
        };
        let path = vec![
            Seg::Key("services".into()),
            Seg::Key("web".into()),
            Seg::Key("command".into()),
        ];
        let got = command(
            &mut ctx,
            "web",
            &path,
            &Value::String("echo 'hunter2".into()),
        );
        assert_eq!(got, None);
        let p = &ctx.problems[0];
        assert_eq!(p.service.as_deref(), Some("web"));
        assert!(p.message.starts_with("services.web.command: "), "{p}");
        assert!(p.message.contains("quote"), "{p}");
        assert!(!p.message.contains("hunter2"), "{p}");
    }
}
