//! Rebasing the relative paths of an `include`d document or an `extends` base from the directory it
//! was read in onto the stack's directory: bind sources, `env_file`s, secret and config files.
//!
//! Layer: input (see the table in `render`).

use super::tree::join_rel;
use serde_yaml::Value;
use std::path::{Component, Path};

/// Rebase every path-bearing key of a whole document (services, secrets, configs) from `from` to `to`.
pub(super) fn rebase_document(doc: &mut Value, from: &Path, to: &Path) {
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
pub(super) fn rebase_service(svc: &mut Value, from: &Path, to: &Path) {
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
