//! Assembling one stack's document before conversion: each file read, parsed (YAML anchors and merge
//! keys), interpolated; the override file merged; `include`d files and `extends` bases brought in, with
//! their relative paths rebased onto the stack's directory so the rest of render sees one document.

use super::compose::Doc;
use super::lines::{self, KeyPath, LineIndex, Seg};
use super::tree::join_rel;
use super::{interpolate, merge, values, Problem, Tree};
use serde_yaml::{Mapping, Value};
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

/// How deep `include` and `extends` may nest.
const MAX_DEPTH: usize = 10;

pub struct Loaded {
    pub value: Value,
    pub doc: Doc,
}

/// Read, parse and interpolate one compose file. Problems name the file (and line).
pub fn load_file(
    tree: &dyn Tree,
    file: &Path,
    scope: &BTreeMap<String, String>,
    problems: &mut Vec<Problem>,
) -> Option<Loaded> {
    let text = match values::read_capped(tree, file) {
        Ok(Some(b)) => match String::from_utf8(b) {
            Ok(t) => t,
            Err(_) => {
                problems.push(Problem::at(file, "is not UTF-8 text"));
                return None;
            }
        },
        Ok(None) => {
            problems.push(Problem::at(file, "does not exist or is not a file"));
            return None;
        }
        Err(e) => {
            problems.push(Problem::at(file, e));
            return None;
        }
    };
    let index = LineIndex::build(&text);
    let mut value: Value = if text.trim().is_empty() {
        Value::Null
    } else {
        match serde_yaml::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                let loc = e.location();
                let msg = e.to_string();
                let msg = match msg.rfind(" at line ") {
                    Some(i) => msg[..i].to_string(),
                    None => msg,
                };
                problems.push(Problem {
                    line: loc.as_ref().map(|l| l.line()),
                    column: loc.as_ref().map(|l| l.column()),
                    ..Problem::at(file, format!("invalid YAML: {msg}"))
                });
                return None;
            }
        }
    };
    if let Err(e) = value.apply_merge() {
        problems.push(Problem::at(file, format!("YAML merge key (<<): {e}")));
        return None;
    }
    let mut vars = interpolate::Vars::new(scope);
    let before = problems.len();
    interpolate_value(
        &mut value,
        &mut Vec::new(),
        &mut vars,
        &index,
        file,
        problems,
    );
    if problems.len() > before {
        return None;
    }
    let mut unset = vars.unset;
    unset.sort();
    unset.dedup();
    for var in unset {
        tracing::warn!(file = %file.display(), variable = %var, "variable is not set; using an empty string");
    }
    Some(Loaded {
        value,
        doc: Doc {
            file: file.display().to_string(),
            index,
        },
    })
}

/// Interpolate every string value (not keys) of a document; problems name the key path and line.
fn interpolate_value(
    v: &mut Value,
    path: &mut KeyPath,
    vars: &mut interpolate::Vars,
    index: &LineIndex,
    file: &Path,
    problems: &mut Vec<Problem>,
) {
    match v {
        Value::String(s) => match interpolate::interpolate(s, vars) {
            Ok(out) => *s = out,
            Err(e) => problems.push(Problem {
                line: index.find(path),
                ..Problem::at(file, format!("{}: {e}", lines::display(path)))
            }),
        },
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                path.push(Seg::Index(i));
                interpolate_value(item, path, vars, index, file, problems);
                path.pop();
            }
        }
        Value::Mapping(m) => {
            for (k, item) in m.iter_mut() {
                let key = match k {
                    Value::String(s) => s.clone(),
                    other => serde_yaml::to_string(other)
                        .unwrap_or_default()
                        .trim()
                        .to_string(),
                };
                path.push(Seg::Key(key));
                interpolate_value(item, path, vars, index, file, problems);
                path.pop();
            }
        }
        Value::Tagged(t) => interpolate_value(&mut t.value, path, vars, index, file, problems),
        _ => {}
    }
}

/// Load and merge the stack's files, then resolve `include` and `extends`. `docs` receives every file
/// read, for locating later problems.
#[allow(clippy::too_many_arguments)]
pub fn assemble(
    tree: &dyn Tree,
    dir: &Path,
    files: &[PathBuf],
    scope: &BTreeMap<String, String>,
    agent_env: &BTreeMap<String, String>,
    docs: &mut Vec<Doc>,
    problems: &mut Vec<Problem>,
) -> Option<Value> {
    assemble_nested(tree, dir, files, scope, agent_env, docs, problems, 0)
}

fn err_at(docs: &[Doc], file: &Path, path: &[Seg], msg: impl std::fmt::Display) -> Problem {
    let name = file.display().to_string();
    let line = docs
        .iter()
        .find(|d| d.file == name)
        .and_then(|d| d.index.find(path));
    Problem {
        line,
        ..Problem::at(file, format!("{}: {msg}", lines::display(path)))
    }
}

/// `include:` — each entry's files are loaded as one document, its relative paths rebased onto `dir`,
/// and its services, networks, volumes, secrets and configs added; a name defined twice is an error.
#[allow(clippy::too_many_arguments)]
fn includes(
    tree: &dyn Tree,
    dir: &Path,
    file: &Path,
    doc: &mut Value,
    scope: &BTreeMap<String, String>,
    agent_env: &BTreeMap<String, String>,
    docs: &mut Vec<Doc>,
    problems: &mut Vec<Problem>,
    depth: usize,
) {
    let Some(m) = doc.as_mapping_mut() else {
        return;
    };
    let Some(list) = m.remove("include") else {
        return;
    };
    let base = vec![Seg::Key("include".into())];
    if depth >= MAX_DEPTH {
        problems.push(err_at(docs, file, &base, "includes nest too deep"));
        return;
    }
    let items = match list {
        Value::Sequence(s) => s,
        Value::Null => return,
        other => vec![other],
    };
    for (i, item) in items.into_iter().enumerate() {
        let p = {
            let mut p = base.clone();
            p.push(Seg::Index(i));
            p
        };
        let mut env_files: Vec<String> = Vec::new();
        let (paths, project_dir) = match &item {
            Value::String(s) => (vec![s.clone()], None),
            Value::Mapping(im) => {
                for k in im.keys() {
                    let k = k.as_str().unwrap_or("?");
                    if !["path", "project_directory", "env_file"].contains(&k) {
                        problems.push(err_at(docs, file, &p, format!("unknown key `{k}`")));
                    }
                }
                let paths = match im.get("path") {
                    Some(Value::String(s)) => vec![s.clone()],
                    Some(Value::Sequence(s)) => s
                        .iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect(),
                    _ => {
                        problems.push(err_at(docs, file, &p, "`path` is required"));
                        continue;
                    }
                };
                let pd = im
                    .get("project_directory")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                env_files = match im.get("env_file") {
                    Some(Value::String(s)) => vec![s.clone()],
                    Some(Value::Sequence(s)) => s
                        .iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect(),
                    _ => Vec::new(),
                };
                (paths, pd)
            }
            _ => {
                problems.push(err_at(docs, file, &p, "must be a path or a mapping"));
                continue;
            }
        };
        let mut rels = Vec::new();
        for path in &paths {
            match join_rel(dir, Path::new(path)).filter(|_| !Path::new(path).is_absolute()) {
                Some(r) => rels.push(r),
                None => problems.push(err_at(
                    docs,
                    file,
                    &p,
                    format!("{path}: an included file must be inside the repository"),
                )),
            }
        }
        if rels.is_empty() {
            continue;
        }
        let inc_dir = match &project_dir {
            Some(pd) => match join_rel(dir, Path::new(pd)) {
                Some(d) => d,
                None => {
                    problems.push(err_at(
                        docs,
                        file,
                        &p,
                        format!("{pd} climbs out of the repository"),
                    ));
                    continue;
                }
            },
            None => rels[0]
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from(".")),
        };
        let inc_dir = if inc_dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            inc_dir
        };
        let resolved: Vec<PathBuf> = rels
            .iter()
            .filter_map(|r| match super::tree::resolve(tree, r) {
                Ok(r) => Some(r),
                Err(e) => {
                    problems.push(Problem::at(r, e));
                    None
                }
            })
            .collect();
        // The included project's variables: its env_file (or the .env of its directory) over the
        // including stack's, and the agent's environment over both, as in Compose.
        let mut inc_scope = scope.clone();
        let defaults: Vec<(PathBuf, bool)> = if env_files.is_empty() {
            vec![(inc_dir.join(".env"), false)]
        } else {
            env_files
                .iter()
                .filter_map(|f| join_rel(dir, Path::new(f)).map(|r| (r, true)))
                .collect()
        };
        for (env_path, required) in defaults {
            match values::read_capped(tree, &env_path) {
                Ok(Some(bytes)) => {
                    match interpolate::parse_dotenv(&String::from_utf8_lossy(&bytes), agent_env) {
                        Ok(pairs) => inc_scope.extend(pairs),
                        Err((line, msg)) => problems.push(Problem {
                            line: Some(line),
                            ..Problem::at(&env_path, msg)
                        }),
                    }
                }
                Ok(None) if !required => {}
                Ok(None) => problems.push(err_at(
                    docs,
                    file,
                    &p,
                    format!("env_file {} does not exist", env_path.display()),
                )),
                Err(e) => problems.push(Problem::at(&env_path, e)),
            }
        }
        inc_scope.extend(agent_env.iter().map(|(k, v)| (k.clone(), v.clone())));
        let mut inc_docs = Vec::new();
        let Some(mut inc) = assemble_nested(
            tree,
            &inc_dir,
            &resolved,
            &inc_scope,
            agent_env,
            &mut inc_docs,
            problems,
            depth + 1,
        ) else {
            docs.extend(inc_docs);
            continue;
        };
        docs.extend(inc_docs);
        rebase_document(&mut inc, &inc_dir, dir);
        let Some(target) = doc.as_mapping_mut() else {
            return;
        };
        let Some(src) = inc.as_mapping() else {
            continue;
        };
        for section in ["services", "networks", "volumes", "secrets", "configs"] {
            let Some(Value::Mapping(add)) = src.get(section) else {
                continue;
            };
            let entry = target
                .entry(Value::String(section.into()))
                .or_insert_with(|| Value::Mapping(Mapping::new()));
            if entry.is_null() {
                *entry = Value::Mapping(Mapping::new());
            }
            let Some(dest) = entry.as_mapping_mut() else {
                continue;
            };
            for (k, v) in add {
                if dest.contains_key(k) {
                    problems.push(err_at(
                        docs,
                        file,
                        &p,
                        format!(
                            "{section}.{} is defined both here and in the included {}",
                            k.as_str().unwrap_or("?"),
                            rels[0].display()
                        ),
                    ));
                } else {
                    dest.insert(k.clone(), v.clone());
                }
            }
        }
    }
}

/// Every file is read (so every file's problems are reported), then merged; `include` and `extends`
/// are resolved on the result.
#[allow(clippy::too_many_arguments)]
fn assemble_nested(
    tree: &dyn Tree,
    dir: &Path,
    files: &[PathBuf],
    scope: &BTreeMap<String, String>,
    agent_env: &BTreeMap<String, String>,
    docs: &mut Vec<Doc>,
    problems: &mut Vec<Problem>,
    depth: usize,
) -> Option<Value> {
    let mut merged: Option<Value> = None;
    let mut failed = false;
    for file in files {
        let Some(l) = load_file(tree, file, scope, problems) else {
            failed = true;
            continue;
        };
        docs.push(l.doc);
        merged = Some(match merged {
            None => merge::strip_tags(l.value),
            Some(base) => merge::merge_documents(base, l.value),
        });
    }
    if failed {
        return None;
    }
    let mut doc = merged.unwrap_or(Value::Null);
    let main = files.first().cloned().unwrap_or_default();
    let before = problems.len();
    includes(
        tree, dir, &main, &mut doc, scope, agent_env, docs, problems, depth,
    );
    resolve_extends(tree, dir, &main, &mut doc, scope, docs, problems, depth);
    (problems.len() == before).then_some(doc)
}

/// `extends:` of every service: the base service (from this document or another file) with this
/// service merged over it by Compose's override rules.
#[allow(clippy::too_many_arguments)]
fn resolve_extends(
    tree: &dyn Tree,
    dir: &Path,
    file: &Path,
    doc: &mut Value,
    scope: &BTreeMap<String, String>,
    docs: &mut Vec<Doc>,
    problems: &mut Vec<Problem>,
    depth: usize,
) {
    let names: Vec<Value> = match doc.get("services").and_then(Value::as_mapping) {
        Some(s) => s.keys().cloned().collect(),
        None => return,
    };
    for name in names {
        let mut chain = Vec::new();
        let resolved = extend_one(
            tree, dir, file, doc, &name, scope, docs, problems, depth, &mut chain,
        );
        if let (Some(svc), Some(services)) = (
            resolved,
            doc.get_mut("services").and_then(Value::as_mapping_mut),
        ) {
            services.insert(name, svc);
        }
    }
}

/// The service `name` of `doc` with its `extends` chain resolved (`None` on a problem).
#[allow(clippy::too_many_arguments)]
fn extend_one(
    tree: &dyn Tree,
    dir: &Path,
    file: &Path,
    doc: &Value,
    name: &Value,
    scope: &BTreeMap<String, String>,
    docs: &mut Vec<Doc>,
    problems: &mut Vec<Problem>,
    depth: usize,
    chain: &mut Vec<String>,
) -> Option<Value> {
    let sname = name.as_str().unwrap_or("?").to_string();
    let path: Vec<Seg> = vec![Seg::Key("services".into()), Seg::Key(sname.clone())];
    let svc = doc.get("services")?.get(name)?.clone();
    let Some(ext) = svc.get("extends").cloned() else {
        return Some(svc);
    };
    let ext_path = {
        let mut p = path.clone();
        p.push(Seg::Key("extends".into()));
        p
    };
    let key = format!("{}:{sname}", file.display());
    if chain.contains(&key) || chain.len() > MAX_DEPTH || depth > MAX_DEPTH {
        problems.push(err_at(
            docs,
            file,
            &ext_path,
            format!("extends loop: {} -> {key}", chain.join(" -> ")),
        ));
        return None;
    }
    chain.push(key);
    let (base_name, base_file) = match &ext {
        Value::String(s) => (s.clone(), None),
        Value::Mapping(m) => {
            for k in m.keys() {
                let k = k.as_str().unwrap_or("?");
                if k != "service" && k != "file" {
                    problems.push(err_at(docs, file, &ext_path, format!("unknown key `{k}`")));
                    return None;
                }
            }
            let Some(s) = m.get("service").and_then(Value::as_str) else {
                problems.push(err_at(docs, file, &ext_path, "`service` is required"));
                return None;
            };
            (
                s.to_string(),
                m.get("file").and_then(Value::as_str).map(str::to_string),
            )
        }
        _ => {
            problems.push(err_at(
                docs,
                file,
                &ext_path,
                "must be a service name or a mapping",
            ));
            return None;
        }
    };
    let base = match base_file {
        None => {
            if doc
                .get("services")
                .and_then(|s| s.get(base_name.as_str()))
                .is_none()
            {
                problems.push(err_at(
                    docs,
                    file,
                    &ext_path,
                    format!("service {base_name:?} is not defined"),
                ));
                return None;
            }
            extend_one(
                tree,
                dir,
                file,
                doc,
                &Value::String(base_name),
                scope,
                docs,
                problems,
                depth,
                chain,
            )?
        }
        Some(f) => {
            let rel = match join_rel(dir, Path::new(&f)).filter(|_| !Path::new(&f).is_absolute()) {
                Some(r) => r,
                None => {
                    problems.push(err_at(
                        docs,
                        file,
                        &ext_path,
                        format!("{f}: must be inside the repository"),
                    ));
                    return None;
                }
            };
            let rel = match super::tree::resolve(tree, &rel) {
                Ok(r) => r,
                Err(e) => {
                    problems.push(err_at(docs, file, &ext_path, e));
                    return None;
                }
            };
            let l = load_file(tree, &rel, scope, problems)?;
            docs.insert(0, l.doc);
            let other = l.value;
            let other_dir = rel
                .parent()
                .map(Path::to_path_buf)
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or_else(|| PathBuf::from("."));
            if other
                .get("services")
                .and_then(|s| s.get(base_name.as_str()))
                .is_none()
            {
                problems.push(err_at(
                    docs,
                    file,
                    &ext_path,
                    format!("service {base_name:?} is not defined in {}", rel.display()),
                ));
                return None;
            }
            let mut b = extend_one(
                tree,
                &other_dir,
                &rel,
                &other,
                &Value::String(base_name),
                scope,
                docs,
                problems,
                depth + 1,
                chain,
            )?;
            rebase_service(&mut b, &other_dir, dir);
            b
        }
    };
    let mut own = svc;
    if let Some(m) = own.as_mapping_mut() {
        m.remove("extends");
    }
    let mut base = base;
    if let Some(m) = base.as_mapping_mut() {
        m.remove("extends");
    }
    // Merge as if the base were the earlier file: the same rules as an override.
    let wrap = |v: Value| {
        let mut s = Mapping::new();
        s.insert(Value::String("x".into()), v);
        let mut top = Mapping::new();
        top.insert(Value::String("services".into()), Value::Mapping(s));
        Value::Mapping(top)
    };
    let merged = merge::merge_documents(wrap(base), wrap(own));
    merged.get("services").and_then(|s| s.get("x")).cloned()
}

/// Rebase every path-bearing key of a whole document (services, secrets, configs) from `from` to `to`.
fn rebase_document(doc: &mut Value, from: &Path, to: &Path) {
    if from == to {
        return;
    }
    if let Some(services) = doc.get_mut("services").and_then(Value::as_mapping_mut) {
        for (_, svc) in services.iter_mut() {
            rebase_service(svc, from, to);
        }
    }
    for section in ["secrets", "configs"] {
        if let Some(defs) = doc.get_mut(section).and_then(Value::as_mapping_mut) {
            for (_, def) in defs.iter_mut() {
                if let Some(Value::String(f)) = def.get_mut("file") {
                    *f = rebase(f, from, to);
                }
            }
        }
    }
}

/// Relative bind sources, `env_file` paths and `extends.file` of one service, rebased.
fn rebase_service(svc: &mut Value, from: &Path, to: &Path) {
    if from == to {
        return;
    }
    let Some(m) = svc.as_mapping_mut() else {
        return;
    };
    if let Some(Value::Sequence(vols)) = m.get_mut("volumes") {
        for v in vols.iter_mut() {
            match v {
                Value::String(s) => {
                    if let Some((src, rest)) = s.split_once(':') {
                        if src.starts_with('.') {
                            *s = format!("{}:{rest}", rebase(src, from, to));
                        }
                    }
                }
                Value::Mapping(vm) => {
                    if let Some(Value::String(src)) = vm.get_mut("source") {
                        if src.starts_with('.') {
                            *src = rebase(src, from, to);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    match m.get_mut("env_file") {
        Some(Value::String(s)) => *s = rebase(s, from, to),
        Some(Value::Sequence(items)) => {
            for i in items.iter_mut() {
                match i {
                    Value::String(s) => *s = rebase(s, from, to),
                    Value::Mapping(im) => {
                        if let Some(Value::String(s)) = im.get_mut("path") {
                            *s = rebase(s, from, to);
                        }
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

/// `rel` (relative to `from`) re-expressed relative to `to`; both are repository-relative directories.
/// A path that climbs out of the repository is left as it is (render then refuses it).
fn rebase(rel: &str, from: &Path, to: &Path) -> String {
    if Path::new(rel).is_absolute() || rel.starts_with('~') {
        return rel.to_string();
    }
    let Some(target) = join_rel(from, Path::new(rel)) else {
        return rel.to_string();
    };
    let parts = |p: &Path| -> Vec<String> {
        p.components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n.to_string_lossy().to_string()),
                _ => None,
            })
            .collect()
    };
    let (t, base) = (parts(&target), parts(to));
    let common = t.iter().zip(&base).take_while(|(a, b)| a == b).count();
    let mut out: Vec<String> = std::iter::repeat_n("..".to_string(), base.len() - common).collect();
    out.extend(t[common..].iter().cloned());
    if out.is_empty() {
        ".".into()
    } else if out[0] == ".." {
        out.join("/")
    } else {
        format!("./{}", out.join("/"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rebasing_keeps_the_target() {
        assert_eq!(
            rebase("./conf", Path::new("shared"), Path::new("hosts/a")),
            "../../shared/conf"
        );
        assert_eq!(
            rebase("../x", Path::new("hosts/b"), Path::new("hosts/a")),
            "../x"
        );
        assert_eq!(
            rebase("./c", Path::new("hosts/a/inc"), Path::new("hosts/a")),
            "./inc/c"
        );
        assert_eq!(rebase("/abs", Path::new("a"), Path::new("b")), "/abs");
        assert_eq!(rebase(".", Path::new("a"), Path::new("a")), ".");
    }
}
