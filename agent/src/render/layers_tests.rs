//! The layer order of `render/` (the table in `mod.rs`'s doc) holds in the sources: no module imports
//! a module of a higher layer (nor `mod.rs` itself, the entry), modules of one layer import each other
//! without a circle, every module has a place in the table and names its layer in its opening comment.
//! Test modules (`#[cfg(test)]`) are exempt.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The sources of `render/`, by module name (`mod` for `mod.rs`).
fn sources() -> BTreeMap<String, String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("agent/src/render");
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "rs") {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            out.insert(name, std::fs::read_to_string(&p).unwrap());
        }
    }
    out
}

/// The rows of the table in `mod.rs`'s doc, from the bottom up: (layer, modules).
fn table(mod_rs: &str) -> Vec<(String, Vec<String>)> {
    mod_rs
        .lines()
        .filter_map(|l| l.strip_prefix("//! |"))
        .skip(2) // the header and the separator
        .map(|row| {
            let cols: Vec<&str> = row.split('|').map(str::trim).collect();
            let modules = cols
                .get(1)
                .unwrap_or(&"")
                .split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_string)
                .collect();
            (cols[0].to_string(), modules)
        })
        .collect()
}

/// Modules declared `#[cfg(test)] mod x;` in `mod.rs`.
fn test_modules(mod_rs: &str) -> BTreeSet<String> {
    let lines: Vec<&str> = mod_rs.lines().map(str::trim).collect();
    lines
        .windows(2)
        .filter(|w| w[0] == "#[cfg(test)]")
        .filter_map(|w| w[1].strip_prefix("mod ")?.strip_suffix(';'))
        .map(str::to_string)
        .collect()
}

/// The code of a source without comments and without inline `#[cfg(test)] mod … { }` blocks.
fn code(src: &str) -> String {
    let mut out = String::new();
    let mut lines = src.lines().peekable();
    while let Some(l) = lines.next() {
        let test_mod = lines
            .peek()
            .is_some_and(|n| n.starts_with("mod ") && n.trim_end().ends_with('{'));
        if l.trim() == "#[cfg(test)]" && test_mod {
            // rustfmt closes a top-level item with `}` in the first column.
            for n in lines.by_ref() {
                if n == "}" {
                    break;
                }
            }
            continue;
        }
        out.push_str(l.split("//").next().unwrap_or(""));
        out.push('\n');
    }
    out
}

fn ident(s: &str) -> String {
    s.trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

/// The first segment of every path after `super::` or `crate::render::` (each name of a
/// `super::{a, b::c}` group): the render modules, or items of `mod.rs`, that the code names.
fn named(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for prefix in ["super::", "crate::render::"] {
        let mut rest = code;
        while let Some(i) = rest.find(prefix) {
            let part_of_a_name = rest[..i]
                .chars()
                .last()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
            rest = &rest[i + prefix.len()..];
            if part_of_a_name {
                continue;
            }
            if let Some(outside) = rest.strip_prefix("super::") {
                // `super::super::…` leaves render.
                rest = outside;
                continue;
            }
            let Some(group) = rest.strip_prefix('{') else {
                out.insert(ident(rest));
                continue;
            };
            let (mut depth, mut item) = (0, String::new());
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.insert(ident(&std::mem::take(&mut item)));
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
            out.insert(ident(&item));
        }
    }
    out.retain(|n| !n.is_empty() && n != "self");
    out
}

/// What `mod.rs` imports from its modules (`use problem::{Problem, RenderError};`): name → module, so
/// that `super::Problem` in a module counts as importing `problem`.
fn reexports(mod_code: &str, modules: &BTreeSet<String>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stmt = String::new();
    for l in mod_code.lines() {
        let t = l.trim();
        let starts = ["use ", "pub use ", "pub(crate) use ", "pub(super) use "]
            .iter()
            .find_map(|p| t.strip_prefix(p));
        match starts {
            Some(rest) if stmt.is_empty() => stmt.push_str(rest),
            _ if !stmt.is_empty() => stmt.push_str(t),
            _ => continue,
        }
        if stmt.contains(';') {
            let path = std::mem::take(&mut stmt);
            let module = ident(&path);
            if modules.contains(&module) {
                let names = path[module.len()..]
                    .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .filter(|n| !n.is_empty() && !["self", "as", "super", "crate"].contains(n));
                for n in names {
                    out.insert(n.to_string(), module.clone());
                }
            }
        }
    }
    out
}

/// Every way the sources break the layer table of `mod.rs`.
fn violations(srcs: &BTreeMap<String, String>) -> Vec<String> {
    let mut bad = Vec::new();
    let Some(mod_rs) = srcs.get("mod") else {
        return vec!["no mod.rs".into()];
    };
    let rows = table(mod_rs);
    let mut layer: BTreeMap<String, usize> = BTreeMap::new();
    for (i, (_, modules)) in rows.iter().enumerate() {
        for m in modules {
            if layer.insert(m.clone(), i).is_some() {
                bad.push(format!("{m} has two places in the layer table"));
            }
            if !srcs.contains_key(m) {
                bad.push(format!("the layer table names {m}, which has no file"));
            }
        }
    }
    if layer.get("mod") != Some(&rows.len().saturating_sub(1)) {
        bad.push("mod (the entry) must be the top layer of the table".into());
    }
    let tests = test_modules(mod_rs);
    let files: BTreeSet<String> = srcs.keys().cloned().collect();
    let via_mod = reexports(&code(mod_rs), &files);

    let mut same_layer: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for (name, src) in srcs {
        if tests.contains(name) || name == "mod" {
            continue;
        }
        let Some(&own) = layer.get(name) else {
            bad.push(format!(
                "render/{name}.rs has no place in the layer table of render/mod.rs"
            ));
            continue;
        };
        let doc: String = src.lines().take_while(|l| l.starts_with("//!")).collect();
        if !doc.contains(&format!("Layer: {}", rows[own].0)) {
            bad.push(format!(
                "render/{name}.rs: its opening comment does not say `Layer: {}`",
                rows[own].0
            ));
        }
        for n in named(&code(src)) {
            let target = if files.contains(&n) {
                n.clone()
            } else {
                via_mod.get(&n).cloned().unwrap_or_else(|| "mod".into())
            };
            if tests.contains(&target) || &target == name {
                continue;
            }
            let Some(&theirs) = layer.get(&target) else {
                continue; // reported as a module without a place
            };
            if theirs > own {
                bad.push(format!(
                    "{name} ({}) imports {target} ({}, a higher layer){}",
                    rows[own].0,
                    rows[theirs].0,
                    if n == target {
                        String::new()
                    } else {
                        format!(" through super::{n}")
                    }
                ));
            } else if theirs == own {
                same_layer.entry(name).or_default().insert(target);
            }
        }
    }
    bad.extend(circles(&same_layer));
    bad
}

/// The circles of imports within one layer, each as `a -> b -> a`.
fn circles(edges: &BTreeMap<&str, BTreeSet<String>>) -> Vec<String> {
    fn visit(
        n: &str,
        edges: &BTreeMap<&str, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        path: &mut Vec<String>,
        out: &mut Vec<String>,
    ) {
        if let Some(start) = path.iter().position(|p| p == n) {
            let mut c = path[start..].to_vec();
            c.push(n.to_string());
            out.push(format!("a circle within one layer: {}", c.join(" -> ")));
            return;
        }
        if !done.insert(n.to_string()) {
            return;
        }
        path.push(n.to_string());
        for m in edges.get(n).into_iter().flatten() {
            visit(m, edges, done, path, out);
        }
        path.pop();
    }
    let (mut done, mut out) = (BTreeSet::new(), Vec::new());
    for n in edges.keys() {
        visit(n, edges, &mut done, &mut Vec::new(), &mut out);
    }
    out
}

#[test]
fn render_modules_import_only_lower_layers() {
    let bad = violations(&sources());
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

fn with(edits: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut srcs = sources();
    for (module, line) in edits {
        let src = srcs.entry(module.to_string()).or_default();
        src.push_str(line);
        src.push('\n');
    }
    srcs
}

#[test]
fn a_module_importing_a_higher_layer_is_caught() {
    let bad = violations(&with(&[("values", "use super::service::Service;")]));
    assert_eq!(
        bad,
        ["values (value readers) imports service (service, a higher layer)"]
    );
    // Grouped, nested and `crate::render::` paths count too.
    let bad = violations(&with(&[
        ("ports", "use super::{lines::{self, Seg}, convert};"),
        (
            "lines",
            "fn f() { crate::render::values::key(&[], \"k\"); }",
        ),
    ]));
    assert_eq!(bad.len(), 2, "{bad:?}");
    assert!(
        bad[0].starts_with("lines (foundations) imports values"),
        "{bad:?}"
    );
    assert!(
        bad[1].starts_with("ports (service sections) imports convert"),
        "{bad:?}"
    );
}

#[test]
fn an_item_of_mod_rs_is_the_entry_but_a_reexport_is_its_module() {
    // `super::Problem` is `problem` (re-exported by mod.rs), a layer below `values`: allowed.
    assert!(violations(&with(&[("values", "use super::{Problem, Tree};")])).is_empty());
    let bad = violations(&with(&[("values", "use super::render_stack;")]));
    assert_eq!(
        bad,
        ["values (value readers) imports mod (entry, a higher layer) through super::render_stack"]
    );
}

#[test]
fn a_circle_within_one_layer_is_caught() {
    let bad = violations(&with(&[
        ("ports", "use super::mounts::x;"),
        ("mounts", "use super::ports::y;"),
    ]));
    assert_eq!(
        bad,
        ["a circle within one layer: mounts -> ports -> mounts"]
    );
}

#[test]
fn a_module_without_a_place_or_a_layer_comment_is_caught() {
    let bad = violations(&with(&[(
        "sops",
        "//! Decrypting.\nuse super::tree::Tree;",
    )]));
    assert_eq!(
        bad,
        ["render/sops.rs has no place in the layer table of render/mod.rs"]
    );
    let mut srcs = sources();
    let Some(ports) = srcs.get_mut("ports") else {
        panic!("no ports.rs")
    };
    *ports = ports.replace("Layer: service sections", "Layer: somewhere");
    let bad = violations(&srcs);
    assert_eq!(
        bad,
        ["render/ports.rs: its opening comment does not say `Layer: service sections`"]
    );
}

#[test]
fn test_code_and_comments_are_exempt() {
    let srcs = with(&[
        ("values", "// see super::service::Service"),
        (
            "numbers",
            "#[cfg(test)]\nmod more_tests {\n    use super::super::convert::convert;\n}",
        ),
    ]);
    assert!(violations(&srcs).is_empty());
}
