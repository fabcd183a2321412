//! A service's `volumes` (short and long syntax) → mounts: bind sources resolved inside the checkout
//! (never out of the repository), named volumes checked against the top-level table, tmpfs sizes and
//! modes bounded; and the digest of the repository files a service bind-mounts.
//!
//! Layer: service sections (see the table in `render`).

use super::compose::Vol;
use super::input::StackInput;
use super::lines::Seg;
use super::numbers::{bytes, mode};
use super::tree::{join_rel, resolve, ResolveError};
use super::values::*;
use super::{EntryKind, Tree};
use crate::model::{MountKind, MountSpec};
use serde_yaml::{Mapping, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// How deep a bind-mounted repository directory is walked for the content digest.
const MAX_HASH_DEPTH: usize = 32;

/// Why a service volume was refused. Messages name paths, never option or size values.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("must be a volume, not {0}")]
    WrongType(&'static str),
    #[error("is not a volume like ./conf:/etc/app:ro or data:/data")]
    Shape,
    #[error(
        "a volume option is not one of ro, rw, z, Z, nocopy (volumes) or a propagation (binds)"
    )]
    Option,
    #[error("`type` is required (bind, volume or tmpfs)")]
    TypeRequired,
    #[error("`target` is required")]
    TargetRequired,
    #[error("the volume type is not supported (bind, volume or tmpfs)")]
    UnsupportedType,
    #[error("a bind mount needs a `source`")]
    BindNeedsSource,
    #[error("a tmpfs mount has no `source`")]
    TmpfsHasSource,
    #[error("the target must be an absolute path in the container")]
    RelativeTarget,
    #[error("a source starting with `~` needs HOME to be set")]
    NoHome,
    #[error("bind source {0} climbs out of the repository")]
    ClimbsOut(PathBuf),
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error("{0}: directories nested more than {MAX_HASH_DEPTH} deep")]
    TooDeep(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A service's `volumes`: bind mounts and named volumes (and `type: tmpfs`, returned as tmpfs entries).
pub(super) fn service_volumes(
    ctx: &mut Ctx,
    input: &StackInput,
    service: &str,
    path: &[Seg],
    v: &Value,
    volumes: &BTreeMap<String, Vol>,
) -> Vec<MountSpec> {
    let svc = Some(service);
    let Value::Sequence(items) = v else {
        ctx.err(svc, path, format!("must be a list, not {}", type_name(v)));
        return Vec::new();
    };
    let mut mounts: Vec<MountSpec> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let p = idx(path, i);
        let parsed = match item {
            Value::String(s) => parse_volume_short(s),
            Value::Mapping(m) => volume_long(ctx, service, &p, m),
            other => Err(MountError::WrongType(type_name(other))),
        };
        let mut mount = match parsed {
            Ok(v) => v,
            Err(e) => {
                ctx.err(svc, &p, e);
                continue;
            }
        };
        if !mount.target.starts_with('/') {
            ctx.err(svc, &p, MountError::RelativeTarget);
            continue;
        }
        match mount.kind {
            MountKind::Tmpfs => mounts.push(mount),
            MountKind::Bind => match bind_source(input, &mount.source) {
                Ok(host) => {
                    mount.source = host;
                    mounts.push(mount)
                }
                Err(e) => ctx.err(svc, &p, e),
            },
            MountKind::Volume => {
                if mount.source.is_empty() {
                    // Anonymous: the engine makes it; a recreate carries it over, as Compose does.
                    mounts.push(mount);
                    continue;
                }
                match volumes.get(&mount.source) {
                    Some(vol) => {
                        mount.source = vol.spec.name.clone();
                        mounts.push(mount)
                    }
                    None => ctx.err(
                        svc,
                        &p,
                        format!(
                            "volume {:?} is not declared under the top-level `volumes:`",
                            mount.source
                        ),
                    ),
                }
            }
        }
    }
    mounts
}

/// Short syntax `source:target[:options]`: `ro`/`rw`, SELinux `z`/`Z`, bind propagation, `nocopy`.
pub(super) fn parse_volume_short(s: &str) -> Result<MountSpec, MountError> {
    let parts: Vec<&str> = s.split(':').collect();
    let (source, target, mode) = match parts.as_slice() {
        [t] => ("", *t, ""),
        [s, t] => (*s, *t, ""),
        [s, t, m] => (*s, *t, *m),
        _ => return Err(MountError::Shape),
    };
    let kind = if source.is_empty() {
        MountKind::Volume
    } else if source.starts_with('.') || source.starts_with('/') || source.starts_with('~') {
        MountKind::Bind
    } else {
        MountKind::Volume
    };
    let mut m = MountSpec::new(kind, source, target, false);
    for opt in mode.split(',').filter(|o| !o.is_empty()) {
        match opt {
            "ro" => m.read_only = true,
            "rw" => m.read_only = false,
            "z" | "Z" => m.selinux = Some(opt.to_string()),
            "nocopy" if kind == MountKind::Volume => m.nocopy = true,
            "shared" | "rshared" | "slave" | "rslave" | "private" | "rprivate"
                if kind == MountKind::Bind =>
            {
                m.propagation = Some(opt.to_string())
            }
            // Consistency hints only mean something on Docker Desktop; Compose passes them on, Linux ignores.
            "cached" | "delegated" | "consistent" => {}
            _ => return Err(MountError::Option),
        }
    }
    Ok(m)
}

pub(super) fn volume_long(
    ctx: &mut Ctx,
    service: &str,
    path: &[Seg],
    m: &Mapping,
) -> Result<MountSpec, MountError> {
    let svc = Some(service);
    check_keys(
        ctx,
        svc,
        path,
        m,
        &[
            "type",
            "source",
            "target",
            "read_only",
            "bind",
            "volume",
            "tmpfs",
            "consistency",
        ],
        &["image"],
    );
    let kind = m
        .get("type")
        .and_then(scalar)
        .ok_or(MountError::TypeRequired)?;
    let target = m
        .get("target")
        .and_then(scalar)
        .ok_or(MountError::TargetRequired)?;
    let source = m.get("source").and_then(scalar).unwrap_or_default();
    let read_only = match m.get("read_only") {
        Some(v) => boolean(ctx, svc, &key(path, "read_only"), v).unwrap_or(false),
        None => false,
    };
    let kind = match kind.as_str() {
        "bind" => MountKind::Bind,
        "volume" => MountKind::Volume,
        "tmpfs" => MountKind::Tmpfs,
        _ => return Err(MountError::UnsupportedType),
    };
    let mut mount = MountSpec::new(kind, source, target, read_only);
    let sub = |ctx: &mut Ctx, k: &str, allowed: &[&str]| -> Option<Mapping> {
        let v = m.get(k).filter(|v| !v.is_null())?;
        let sm = as_map(ctx, svc, &key(path, k), v)?.clone();
        check_keys(ctx, svc, &key(path, k), &sm, allowed, &[]);
        Some(sm)
    };
    match kind {
        MountKind::Bind => {
            if mount.source.is_empty() {
                return Err(MountError::BindNeedsSource);
            }
            if let Some(b) = sub(ctx, "bind", &["create_host_path", "propagation", "selinux"]) {
                let bp = key(path, "bind");
                if let Some(v) = b.get("create_host_path") {
                    mount.create_host_path = boolean(ctx, svc, &key(&bp, "create_host_path"), v);
                }
                if let Some(v) = b.get("propagation") {
                    mount.propagation = string(ctx, svc, &key(&bp, "propagation"), v);
                }
                if let Some(v) = b.get("selinux") {
                    mount.selinux = string(ctx, svc, &key(&bp, "selinux"), v);
                }
            }
        }
        MountKind::Volume => {
            if let Some(b) = sub(ctx, "volume", &["nocopy", "subpath"]) {
                let bp = key(path, "volume");
                if let Some(v) = b.get("nocopy") {
                    mount.nocopy = boolean(ctx, svc, &key(&bp, "nocopy"), v).unwrap_or(false);
                }
                if let Some(v) = b.get("subpath") {
                    mount.subpath = string(ctx, svc, &key(&bp, "subpath"), v);
                }
            }
        }
        MountKind::Tmpfs => {
            if !mount.source.is_empty() {
                return Err(MountError::TmpfsHasSource);
            }
            if let Some(t) = sub(ctx, "tmpfs", &["size", "mode"]) {
                let tp = key(path, "tmpfs");
                if let Some(v) = t.get("size") {
                    mount.tmpfs_size = bytes(ctx, svc, &key(&tp, "size"), v);
                }
                if let Some(v) = t.get("mode") {
                    mount.tmpfs_mode = mode(ctx, svc, &key(&tp, "mode"), v);
                }
            }
        }
    }
    Ok(mount)
}

/// A bind source → absolute host path. Relative sources resolve inside the checkout and must stay in
/// the repository (symlinks followed, none may point outside); absolute host paths are allowed.
pub(super) fn bind_source(input: &StackInput, source: &str) -> Result<String, MountError> {
    if source.starts_with('/') {
        return Ok(normalise_abs(source));
    }
    if let Some(rest) = source.strip_prefix('~') {
        let home = input.env.get("HOME").cloned().ok_or(MountError::NoHome)?;
        return Ok(normalise_abs(&format!("{home}{rest}")));
    }
    let rel = join_rel(&input.dir, Path::new(source))
        .ok_or_else(|| MountError::ClimbsOut(PathBuf::from(source)))?;
    let resolved = resolve(input.tree, &rel)?;
    let host = if resolved == Path::new(".") {
        input.checkout_dir.to_path_buf()
    } else {
        input.checkout_dir.join(&resolved)
    };
    Ok(host.display().to_string())
}

pub(super) fn normalise_abs(p: &str) -> String {
    let mut out = PathBuf::from("/");
    for c in Path::new(p).components() {
        match c {
            std::path::Component::Normal(n) => out.push(n),
            std::path::Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out.display().to_string()
}

/// SHA-256 over every repository file bind-mounted into the container (path and bytes), so a changed
/// config file changes the spec hash. Files that are not in the repository (data dirs) are not hashed.
pub(super) fn content_digest(
    ctx: &mut Ctx,
    input: &StackInput,
    service: &str,
    path: &[Seg],
    mounts: &[MountSpec],
) -> Option<String> {
    let prefix = format!(
        "{}/",
        input
            .checkout_dir
            .display()
            .to_string()
            .trim_end_matches('/')
    );
    let mut h = Sha256::new();
    let mut any = false;
    for m in mounts.iter().filter(|m| m.kind == MountKind::Bind) {
        let rel = if m.source == input.checkout_dir.display().to_string() {
            PathBuf::from(".")
        } else if let Some(r) = m.source.strip_prefix(&prefix) {
            PathBuf::from(r)
        } else {
            continue;
        };
        if let Err(e) = hash_tree(input.tree, &rel, &mut h, &mut any, 0) {
            ctx.err(Some(service), &key(path, "volumes"), e);
        }
    }
    any.then(|| crate::model::hex(&h.finalize()))
}

pub(super) fn hash_tree(
    tree: &dyn Tree,
    rel: &Path,
    h: &mut Sha256,
    any: &mut bool,
    depth: usize,
) -> Result<(), MountError> {
    if depth > MAX_HASH_DEPTH {
        return Err(MountError::TooDeep(rel.to_path_buf()));
    }
    let io = |source| MountError::Io {
        path: rel.to_path_buf(),
        source,
    };
    match tree.kind(rel).map_err(io)? {
        None => Ok(()),
        Some(EntryKind::File) => {
            let bytes = tree.read(rel).map_err(io)?.unwrap_or_default();
            h.update(rel.display().to_string().as_bytes());
            h.update([0]);
            h.update(Sha256::digest(&bytes));
            *any = true;
            Ok(())
        }
        Some(EntryKind::Symlink(target)) => {
            // The container sees what the link points at: it must stay inside the repository.
            if target.is_absolute()
                || join_rel(rel.parent().unwrap_or(Path::new(".")), &target).is_none()
            {
                return Err(MountError::Resolve(ResolveError::Outside {
                    link: rel.to_path_buf(),
                    target,
                }));
            }
            h.update(rel.display().to_string().as_bytes());
            h.update(b"\0->");
            h.update(target.display().to_string().as_bytes());
            *any = true;
            Ok(())
        }
        Some(EntryKind::Dir) => {
            let entries = tree.list(rel).map_err(io)?;
            for e in entries {
                let child = if rel == Path::new(".") {
                    PathBuf::from(&e.name)
                } else {
                    rel.join(&e.name)
                };
                hash_tree(tree, &child, h, any, depth + 1)?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_volumes() {
        let m = parse_volume_short("./conf:/etc/app:ro,z").unwrap();
        assert_eq!(
            (m.kind, m.source.as_str(), m.target.as_str(), m.read_only),
            (MountKind::Bind, "./conf", "/etc/app", true)
        );
        assert_eq!(m.selinux.as_deref(), Some("z"));
        let v = parse_volume_short("data:/data:nocopy").unwrap();
        assert_eq!(v.kind, MountKind::Volume);
        assert!(v.nocopy && v.needs_mount_api());
        assert_eq!(parse_volume_short("/data").unwrap().source, "");
        let b = parse_volume_short("/srv:/srv:rshared").unwrap();
        assert_eq!(b.propagation.as_deref(), Some("rshared"));
        assert!(parse_volume_short("a:/b:bogus").is_err());
        assert!(parse_volume_short("data:/data:rshared").is_err());
    }
}
