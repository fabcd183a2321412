//! A service's `env_file` entries: each file read from the repository (relative to the stack, never
//! out of it) and parsed as dotenv (with interpolation) or raw `KEY=VALUE` lines.
//!
//! Layer: service sections (see the table in `render`).

use super::input::StackInput;
use super::lines::{KeyPath, Seg};
use super::tree::{join_rel, resolve};
use super::values::*;
use super::{interpolate, Problem};
use serde_yaml::Value;
use std::collections::BTreeMap;
use std::path::Path;

pub(super) fn env_files(
    ctx: &mut Ctx,
    input: &StackInput,
    service: &str,
    path: &[Seg],
    v: &Value,
    env: &mut BTreeMap<String, String>,
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
        let (file, required, raw) = match &item {
            Value::String(s) => (s.clone(), true, false),
            Value::Mapping(m) => {
                check_keys(ctx, svc, &p, m, &["path", "required", "format"], &[]);
                let Some(file) = m
                    .get("path")
                    .and_then(|v| string(ctx, svc, &key(&p, "path"), v))
                else {
                    ctx.err(svc, &p, "`path` is required");
                    continue;
                };
                let required = m
                    .get("required")
                    .and_then(|v| boolean(ctx, svc, &key(&p, "required"), v))
                    .unwrap_or(true);
                let raw = match m.get("format").filter(|v| !v.is_null()).and_then(scalar) {
                    None => false,
                    Some(f) if f == "dotenv" => false,
                    Some(f) if f == "raw" => true,
                    Some(_) => {
                        ctx.err(svc, &key(&p, "format"), "must be dotenv or raw");
                        continue;
                    }
                };
                (file, required, raw)
            }
            other => {
                ctx.err(svc, &p, format!("must be a path, not {}", type_name(other)));
                continue;
            }
        };
        if Path::new(&file).is_absolute() {
            ctx.err(
                svc,
                &p,
                format!("{file}: an env_file must be a path inside the repository, relative to the stack"),
            );
            continue;
        }
        let Some(rel) = join_rel(&input.dir, Path::new(&file)) else {
            ctx.err(svc, &p, format!("{file} climbs out of the repository"));
            continue;
        };
        let resolved = match resolve(input.tree, &rel) {
            Ok(r) => r,
            Err(e) => {
                ctx.err(svc, &p, e);
                continue;
            }
        };
        match ctx.budget.read(input.tree, &resolved) {
            Ok(Some(bytes)) => {
                let text = String::from_utf8_lossy(&bytes);
                let parsed = if raw {
                    Ok(interpolate::parse_raw_env(&text))
                } else {
                    interpolate::parse_dotenv(&text, input.env, &mut ctx.budget.expansion)
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
            Ok(None) if !required => {}
            Ok(None) => ctx.err(
                svc,
                &p,
                format!("env_file {} does not exist", rel.display()),
            ),
            Err(e) => ctx.err(svc, &p, e),
        }
    }
}
