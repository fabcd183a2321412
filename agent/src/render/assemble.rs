//! Assembling one stack's document before conversion: each file read, parsed (YAML anchors and merge
//! keys, expansion bounded), interpolated; the override file merged; `include`d files and `extends`
//! bases brought in, with their relative paths rebased onto the stack's directory so the rest of
//! render sees one document. Everything read is charged to the stack's [`Budget`], and includes and
//! extends nest at most [`MAX_DEPTH`] deep.
//!
//! Layer: assembly (see the table in `render`).

use super::budget::Budget;
use super::input::Doc;
use super::lines::{self, KeyPath, LineIndex, Seg};
use super::rebase::{rebase_document, rebase_service};
use super::tree::join_rel;
use super::{interpolate, merge, yaml, Problem, Tree};
use serde_yaml::{Mapping, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// How deep `include` and `extends` may nest.
pub const MAX_DEPTH: usize = 10;

pub struct Loaded {
    pub value: Value,
    pub doc: Doc,
}

/// Reads the files of one stack, within its budget; problems name the file (and line).
struct Assembler<'a> {
    tree: &'a dyn Tree,
    agent_env: &'a BTreeMap<String, String>,
    budget: &'a mut Budget,
    problems: &'a mut Vec<Problem>,
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
    budget: &mut Budget,
    docs: &mut Vec<Doc>,
    problems: &mut Vec<Problem>,
) -> Option<Value> {
    let mut a = Assembler {
        tree,
        agent_env,
        budget,
        problems,
    };
    a.assemble_nested(dir, files, scope, docs, 0)
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

/// One `include:` entry, as written.
struct Include {
    paths: Vec<String>,
    project_dir: Option<String>,
    env_files: Vec<String>,
}

/// Strings of a string-or-list key.
fn strings(v: Option<&Value>) -> Option<Vec<String>> {
    match v {
        Some(Value::String(s)) => Some(vec![s.clone()]),
        Some(Value::Sequence(s)) => Some(
            s.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
        ),
        _ => None,
    }
}

impl Assembler<'_> {
    /// Read, parse and interpolate one compose file.
    fn load_file(&mut self, file: &Path, scope: &BTreeMap<String, String>) -> Option<Loaded> {
        let text = match self.budget.read(self.tree, file) {
            Ok(Some(b)) => match String::from_utf8(b) {
                Ok(t) => t,
                Err(_) => {
                    self.problems.push(Problem::at(file, "is not UTF-8 text"));
                    return None;
                }
            },
            Ok(None) => {
                self.problems
                    .push(Problem::at(file, "does not exist or is not a file"));
                return None;
            }
            Err(e) => {
                self.problems.push(Problem::at(file, e));
                return None;
            }
        };
        let mut value = if text.trim().is_empty() {
            Value::Null
        } else {
            match yaml::parse(&text, self.budget.yaml) {
                Ok((v, left)) => {
                    self.budget.yaml = left;
                    v
                }
                Err(e) => {
                    self.problems.push(Problem {
                        line: e.line(),
                        column: e.column(),
                        ..Problem::at(file, &e)
                    });
                    return None;
                }
            }
        };
        // Indexed once the YAML is known to be sound (and so nested at most 128 deep).
        let index = LineIndex::build(&text);
        let mut vars = interpolate::Vars::with_budget(scope, self.budget.expansion);
        let before = self.problems.len();
        interpolate_value(
            &mut value,
            &mut Vec::new(),
            &mut vars,
            &index,
            file,
            self.problems,
        );
        self.budget.expansion = vars.budget();
        if self.problems.len() > before {
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

    /// Every file is read (so every file's problems are reported), then merged; `include` and
    /// `extends` are resolved on the result.
    fn assemble_nested(
        &mut self,
        dir: &Path,
        files: &[PathBuf],
        scope: &BTreeMap<String, String>,
        docs: &mut Vec<Doc>,
        depth: usize,
    ) -> Option<Value> {
        let mut merged: Option<Value> = None;
        let mut failed = false;
        for file in files {
            let Some(l) = self.load_file(file, scope) else {
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
        let before = self.problems.len();
        self.includes(dir, &main, &mut doc, scope, docs, depth);
        self.resolve_extends(dir, &main, &mut doc, scope, docs, depth);
        (self.problems.len() == before).then_some(doc)
    }

    /// `include:` — each entry's files are loaded as one document, its relative paths rebased onto
    /// `dir`, and its services, networks, volumes, secrets and configs added; a name defined twice is
    /// an error.
    fn includes(
        &mut self,
        dir: &Path,
        file: &Path,
        doc: &mut Value,
        scope: &BTreeMap<String, String>,
        docs: &mut Vec<Doc>,
        depth: usize,
    ) {
        let Some(list) = doc.as_mapping_mut().and_then(|m| m.remove("include")) else {
            return;
        };
        let base = vec![Seg::Key("include".into())];
        if depth >= MAX_DEPTH {
            self.problems.push(err_at(
                docs,
                file,
                &base,
                format!("includes nest more than {MAX_DEPTH} deep"),
            ));
            return;
        }
        let items = match list {
            Value::Sequence(s) => s,
            Value::Null => return,
            other => vec![other],
        };
        for (i, item) in items.into_iter().enumerate() {
            let mut p = base.clone();
            p.push(Seg::Index(i));
            let Some(inc) = self.include_entry(docs, file, &p, &item) else {
                continue;
            };
            let Some((mut included, inc_dir, first)) =
                self.load_include(dir, file, &p, &inc, scope, docs, depth)
            else {
                continue;
            };
            rebase_document(&mut included, &inc_dir, dir);
            self.add_included(doc, &included, docs, file, &p, &first);
        }
    }

    /// Read one `include:` entry: a path, or a mapping with `path`, `project_directory`, `env_file`.
    fn include_entry(
        &mut self,
        docs: &[Doc],
        file: &Path,
        p: &[Seg],
        item: &Value,
    ) -> Option<Include> {
        match item {
            Value::String(s) => Some(Include {
                paths: vec![s.clone()],
                project_dir: None,
                env_files: Vec::new(),
            }),
            Value::Mapping(im) => {
                for k in im.keys() {
                    let k = k.as_str().unwrap_or("?");
                    if !["path", "project_directory", "env_file"].contains(&k) {
                        self.problems
                            .push(err_at(docs, file, p, format!("unknown key `{k}`")));
                    }
                }
                let Some(paths) = strings(im.get("path")) else {
                    self.problems
                        .push(err_at(docs, file, p, "`path` is required"));
                    return None;
                };
                Some(Include {
                    paths,
                    project_dir: im
                        .get("project_directory")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    env_files: strings(im.get("env_file")).unwrap_or_default(),
                })
            }
            _ => {
                self.problems
                    .push(err_at(docs, file, p, "must be a path or a mapping"));
                None
            }
        }
    }

    /// Load the files of one include as a document of its own: its directory, its variables, its own
    /// includes and extends. Returns the document, its directory and its first file.
    #[allow(clippy::too_many_arguments)]
    fn load_include(
        &mut self,
        dir: &Path,
        file: &Path,
        p: &[Seg],
        inc: &Include,
        scope: &BTreeMap<String, String>,
        docs: &mut Vec<Doc>,
        depth: usize,
    ) -> Option<(Value, PathBuf, PathBuf)> {
        let mut rels = Vec::new();
        for path in &inc.paths {
            match join_rel(dir, Path::new(path)).filter(|_| !Path::new(path).is_absolute()) {
                Some(r) => rels.push(r),
                None => self.problems.push(err_at(
                    docs,
                    file,
                    p,
                    format!("{path}: an included file must be inside the repository"),
                )),
            }
        }
        let first = rels.first()?.clone();
        let inc_dir = match &inc.project_dir {
            Some(pd) => match join_rel(dir, Path::new(pd)) {
                Some(d) => d,
                None => {
                    self.problems.push(err_at(
                        docs,
                        file,
                        p,
                        format!("{pd} climbs out of the repository"),
                    ));
                    return None;
                }
            },
            None => first
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
            .filter_map(|r| match super::tree::resolve(self.tree, r) {
                Ok(r) => Some(r),
                Err(e) => {
                    self.problems.push(Problem::at(r, e));
                    None
                }
            })
            .collect();
        let inc_scope = self.include_scope(dir, file, p, inc, &inc_dir, scope, docs);
        let mut inc_docs = Vec::new();
        let included =
            self.assemble_nested(&inc_dir, &resolved, &inc_scope, &mut inc_docs, depth + 1);
        docs.extend(inc_docs);
        Some((included?, inc_dir, first))
    }

    /// The variables of an included project: its env_file (or the .env of its directory) over the
    /// including stack's, and the agent's environment over both, as in Compose.
    #[allow(clippy::too_many_arguments)]
    fn include_scope(
        &mut self,
        dir: &Path,
        file: &Path,
        p: &[Seg],
        inc: &Include,
        inc_dir: &Path,
        scope: &BTreeMap<String, String>,
        docs: &[Doc],
    ) -> BTreeMap<String, String> {
        let mut inc_scope = scope.clone();
        let env_files: Vec<(PathBuf, bool)> = if inc.env_files.is_empty() {
            vec![(inc_dir.join(".env"), false)]
        } else {
            inc.env_files
                .iter()
                .filter_map(|f| join_rel(dir, Path::new(f)).map(|r| (r, true)))
                .collect()
        };
        for (env_path, required) in env_files {
            match self.budget.read(self.tree, &env_path) {
                Ok(Some(bytes)) => match interpolate::parse_dotenv(
                    &String::from_utf8_lossy(&bytes),
                    self.agent_env,
                    &mut self.budget.expansion,
                ) {
                    Ok(pairs) => inc_scope.extend(pairs),
                    Err(e) => self.problems.push(Problem {
                        line: Some(e.line),
                        ..Problem::at(&env_path, &e.kind)
                    }),
                },
                Ok(None) if !required => {}
                Ok(None) => self.problems.push(err_at(
                    docs,
                    file,
                    p,
                    format!("env_file {} does not exist", env_path.display()),
                )),
                Err(e) => self.problems.push(Problem::at(&env_path, e)),
            }
        }
        inc_scope.extend(self.agent_env.iter().map(|(k, v)| (k.clone(), v.clone())));
        inc_scope
    }

    /// Add the services, networks, volumes, secrets and configs of an included document to `doc`.
    fn add_included(
        &mut self,
        doc: &mut Value,
        included: &Value,
        docs: &[Doc],
        file: &Path,
        p: &[Seg],
        first: &Path,
    ) {
        let (Some(target), Some(src)) = (doc.as_mapping_mut(), included.as_mapping()) else {
            return;
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
                    self.problems.push(err_at(
                        docs,
                        file,
                        p,
                        format!(
                            "{section}.{} is defined both here and in the included {}",
                            k.as_str().unwrap_or("?"),
                            first.display()
                        ),
                    ));
                } else {
                    dest.insert(k.clone(), v.clone());
                }
            }
        }
    }

    /// `extends:` of every service: the base service (from this document or another file) with this
    /// service merged over it by Compose's override rules.
    fn resolve_extends(
        &mut self,
        dir: &Path,
        file: &Path,
        doc: &mut Value,
        scope: &BTreeMap<String, String>,
        docs: &mut Vec<Doc>,
        depth: usize,
    ) {
        let names: Vec<Value> = match doc.get("services").and_then(Value::as_mapping) {
            Some(s) => s.keys().cloned().collect(),
            None => return,
        };
        for name in names {
            let mut chain = Vec::new();
            let at = Here { dir, file, depth };
            let resolved = self.extend_one(&at, doc, &name, scope, docs, &mut chain);
            if let (Some(svc), Some(services)) = (
                resolved,
                doc.get_mut("services").and_then(Value::as_mapping_mut),
            ) {
                services.insert(name, svc);
            }
        }
    }

    /// The service `name` of `doc` (read from `at.file`) with its `extends` chain resolved (`None` on
    /// a problem).
    fn extend_one(
        &mut self,
        at: &Here,
        doc: &Value,
        name: &Value,
        scope: &BTreeMap<String, String>,
        docs: &mut Vec<Doc>,
        chain: &mut Vec<String>,
    ) -> Option<Value> {
        let file = at.file;
        let sname = name.as_str().unwrap_or("?").to_string();
        let svc = doc.get("services")?.get(name)?.clone();
        let Some(ext) = svc.get("extends").cloned() else {
            return Some(svc);
        };
        let ext_path: KeyPath = vec![
            Seg::Key("services".into()),
            Seg::Key(sname.clone()),
            Seg::Key("extends".into()),
        ];
        let key = format!("{}:{sname}", file.display());
        if chain.contains(&key) || chain.len() > MAX_DEPTH || at.depth > MAX_DEPTH {
            self.problems.push(err_at(
                docs,
                file,
                &ext_path,
                format!(
                    "extends loop (or more than {MAX_DEPTH} deep): {} -> {key}",
                    chain.join(" -> ")
                ),
            ));
            return None;
        }
        chain.push(key);
        let (base_name, base_file) = self.extends_target(docs, file, &ext_path, &ext)?;
        let base = match base_file {
            None => {
                if doc
                    .get("services")
                    .and_then(|s| s.get(base_name.as_str()))
                    .is_none()
                {
                    self.problems.push(err_at(
                        docs,
                        file,
                        &ext_path,
                        format!("service {base_name:?} is not defined"),
                    ));
                    return None;
                }
                self.extend_one(at, doc, &Value::String(base_name), scope, docs, chain)?
            }
            Some(f) => self.extend_from_file(at, &ext_path, &f, base_name, scope, docs, chain)?,
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

    /// `extends: name` or `extends: {service, file}` → (service, file).
    fn extends_target(
        &mut self,
        docs: &[Doc],
        file: &Path,
        ext_path: &[Seg],
        ext: &Value,
    ) -> Option<(String, Option<String>)> {
        match ext {
            Value::String(s) => Some((s.clone(), None)),
            Value::Mapping(m) => {
                for k in m.keys() {
                    let k = k.as_str().unwrap_or("?");
                    if k != "service" && k != "file" {
                        self.problems.push(err_at(
                            docs,
                            file,
                            ext_path,
                            format!("unknown key `{k}`"),
                        ));
                        return None;
                    }
                }
                let Some(s) = m.get("service").and_then(Value::as_str) else {
                    self.problems
                        .push(err_at(docs, file, ext_path, "`service` is required"));
                    return None;
                };
                Some((
                    s.to_string(),
                    m.get("file").and_then(Value::as_str).map(str::to_string),
                ))
            }
            _ => {
                self.problems.push(err_at(
                    docs,
                    file,
                    ext_path,
                    "must be a service name or a mapping",
                ));
                None
            }
        }
    }

    /// The base service `base_name` of another file `f` (relative to `at.dir`), its own `extends`
    /// resolved there, its paths rebased onto `at.dir`.
    #[allow(clippy::too_many_arguments)]
    fn extend_from_file(
        &mut self,
        at: &Here,
        ext_path: &[Seg],
        f: &str,
        base_name: String,
        scope: &BTreeMap<String, String>,
        docs: &mut Vec<Doc>,
        chain: &mut Vec<String>,
    ) -> Option<Value> {
        let (dir, file) = (at.dir, at.file);
        let Some(rel) = join_rel(dir, Path::new(f)).filter(|_| !Path::new(f).is_absolute()) else {
            self.problems.push(err_at(
                docs,
                file,
                ext_path,
                format!("{f}: must be inside the repository"),
            ));
            return None;
        };
        let rel = match super::tree::resolve(self.tree, &rel) {
            Ok(r) => r,
            Err(e) => {
                self.problems.push(err_at(docs, file, ext_path, e));
                return None;
            }
        };
        let l = self.load_file(&rel, scope)?;
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
            self.problems.push(err_at(
                docs,
                file,
                ext_path,
                format!("service {base_name:?} is not defined in {}", rel.display()),
            ));
            return None;
        }
        let there = Here {
            dir: &other_dir,
            file: &rel,
            depth: at.depth + 1,
        };
        let mut b = self.extend_one(
            &there,
            &other,
            &Value::String(base_name),
            scope,
            docs,
            chain,
        )?;
        rebase_service(&mut b, &other_dir, dir);
        Some(b)
    }
}

/// Where a document was read: its directory, its file, how deep in includes/extends.
struct Here<'a> {
    dir: &'a Path,
    file: &'a Path,
    depth: usize,
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
