//! A service's `env_file` entries: each file read from the repository (relative to the stack, never
//! out of it) and parsed as dotenv (with interpolation) or raw `KEY=VALUE` lines; and its `label_file`
//! entries, read the same way and parsed as Compose parses label files.
//!
//! Layer: service sections (see the table in `render`).

use super::input::StackInput;
use super::lines::{KeyPath, Seg};
use super::tree::{join_rel, resolve};
use super::values::*;
use super::{interpolate, Problem};
use serde_yaml::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub(super) fn env_files(
    ctx: &mut Ctx,
    input: &StackInput,
    service: &str,
    path: &[Seg],
    v: &Value,
    env: &mut BTreeMap<String, String>,
) {
    read_files(ctx, input, service, path, v, env, false)
}

/// `env_file` entries, or (`labels`) `label_file` entries, read into `env`.
fn read_files(
    ctx: &mut Ctx,
    input: &StackInput,
    service: &str,
    path: &[Seg],
    v: &Value,
    env: &mut BTreeMap<String, String>,
    labels: bool,
) {
    let svc = Some(service);
    let items: Vec<(KeyPath, Value)> = match v {
        Value::Sequence(s) => s
            .iter()
            .enumerate()
            .map(|(i, v)| (idx(path, i), v.clone()))
            .collect(),
        other => vec![(path.to_vec(), other.clone())],
    };
    for (p, item) in items {
        let Some(entry) = file_entry(ctx, svc, &p, &item) else {
            continue;
        };
        let Some((rel, resolved)) = repo_file(ctx, input, svc, &p, &entry.file) else {
            continue;
        };
        match ctx.budget.read(input.tree, &resolved) {
            Ok(Some(bytes)) => {
                let format = if entry.raw {
                    Format::Raw
                } else if labels {
                    Format::Labels
                } else {
                    Format::Dotenv
                };
                parse_into(ctx, input, service, &resolved, &bytes, format, env);
            }
            Ok(None) if !entry.required => {}
            Ok(None) => ctx.err(
                svc,
                &p,
                format!("env_file {} does not exist", rel.display()),
            ),
            Err(e) => ctx.err(svc, &p, e),
        }
    }
}

/// One `env_file` / `label_file` entry as written.
struct FileEntry {
    file: String,
    required: bool,
    /// `format: raw`: `KEY=VALUE` lines taken as they are.
    raw: bool,
}

/// How a file's text is parsed.
enum Format {
    Raw,
    Labels,
    Dotenv,
}

/// One entry: a path, or `{path, required, format}`; `None` when it has a problem.
fn file_entry(ctx: &mut Ctx, svc: Option<&str>, p: &[Seg], item: &Value) -> Option<FileEntry> {
    match item {
        Value::String(s) => Some(FileEntry {
            file: s.clone(),
            required: true,
            raw: false,
        }),
        Value::Mapping(m) => {
            check_keys(ctx, svc, p, m, &["path", "required", "format"], &[]);
            let Some(file) = m
                .get("path")
                .and_then(|v| string(ctx, svc, &key(p, "path"), v))
            else {
                ctx.err(svc, p, "`path` is required");
                return None;
            };
            let required = m
                .get("required")
                .and_then(|v| boolean(ctx, svc, &key(p, "required"), v))
                .unwrap_or(true);
            let raw = match m.get("format").filter(|v| !v.is_null()).and_then(scalar) {
                None => false,
                Some(f) if f == "dotenv" => false,
                Some(f) if f == "raw" => true,
                Some(_) => {
                    ctx.err(svc, &key(p, "format"), "must be dotenv or raw");
                    return None;
                }
            };
            Some(FileEntry {
                file,
                required,
                raw,
            })
        }
        other => {
            ctx.err(svc, p, format!("must be a path, not {}", type_name(other)));
            None
        }
    }
}

/// The entry's file relative to the repository root, and resolved (symlinks followed inside it);
/// `None` when it is absolute, climbs out or cannot be resolved.
fn repo_file(
    ctx: &mut Ctx,
    input: &StackInput,
    svc: Option<&str>,
    p: &[Seg],
    file: &str,
) -> Option<(PathBuf, PathBuf)> {
    if Path::new(file).is_absolute() {
        ctx.err(
            svc,
            p,
            format!(
                "{file}: an env_file must be a path inside the repository, relative to the stack"
            ),
        );
        return None;
    }
    let Some(rel) = join_rel(&input.dir, Path::new(file)) else {
        ctx.err(svc, p, format!("{file} climbs out of the repository"));
        return None;
    };
    match resolve(input.tree, &rel) {
        Ok(r) => Some((rel, r)),
        Err(e) => {
            ctx.err(svc, p, e);
            None
        }
    }
}

/// Parses a file's bytes in `format` into `env`; a parse problem names the file and line.
fn parse_into(
    ctx: &mut Ctx,
    input: &StackInput,
    service: &str,
    resolved: &Path,
    bytes: &[u8],
    format: Format,
    env: &mut BTreeMap<String, String>,
) {
    let text = String::from_utf8_lossy(bytes);
    let parsed = match format {
        Format::Raw => Ok(interpolate::parse_raw_env(&text)),
        Format::Labels => interpolate::parse_label_file(&text, &mut ctx.budget.expansion),
        Format::Dotenv => interpolate::parse_dotenv(&text, input.env, &mut ctx.budget.expansion),
    };
    match parsed {
        Ok(pairs) => env.extend(pairs),
        Err(e) => ctx.problems.push(Problem {
            file: Some(resolved.display().to_string()),
            line: Some(e.line),
            column: None,
            stack: Some(ctx.stack.clone()),
            service: Some(service.to_string()),
            message: e.kind.to_string(),
        }),
    }
}

/// `label_file`: a path or a list of paths, each a dotenv file of labels (later files win), read like
/// an `env_file` but parsed as Compose parses label files (`interpolate::parse_label_file`).
/// `io.berth.*` labels are reserved here too.
pub(super) fn label_files(
    ctx: &mut Ctx,
    input: &StackInput,
    service: &str,
    path: &[Seg],
    v: &Value,
) -> BTreeMap<String, String> {
    let svc = Some(service);
    let files = string_list(ctx, svc, path, v, true);
    let mut labels = BTreeMap::new();
    let items = Value::Sequence(files.into_iter().map(Value::String).collect());
    read_files(ctx, input, service, path, &items, &mut labels, true);
    labels.retain(|k, _| {
        let reserved = k.starts_with("io.berth.");
        if reserved {
            ctx.err(
                svc,
                path,
                format!("label {k} is reserved: berth sets io.berth.* labels itself"),
            );
        }
        !reserved
    });
    labels
}
