//! A service's `secrets:` and `configs:` references → read-only bind mounts (file sources, as Compose
//! does without Swarm; a SOPS-encrypted file from the runtime directory) or files copied into the container (environment and content sources), with
//! numeric uid/gid (at most `u32::MAX`) and modes (at most `0o7777`).
//!
//! Layer: service sections (see the table in `render`).

use super::compose::{Secret, SecretSource};
use super::input::StackInput;
use super::lines::Seg;
use super::numbers::{id, mode};
use super::values::*;
use crate::model::{ContainerSpec, FileSource, InjectedFile, MountKind, MountSpec};
use serde_yaml::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// A service's `secrets:` / `configs:`: file sources become read-only bind mounts (as Compose does
/// without Swarm), `environment` and `content` sources are copied into the container before it starts.
#[allow(clippy::too_many_arguments)]
pub(super) fn secret_refs(
    ctx: &mut Ctx,
    input: &StackInput,
    service: &str,
    path: &[Seg],
    v: &Value,
    table: &BTreeMap<String, Secret>,
    default_dir: &str,
    spec: &mut ContainerSpec,
) {
    let svc = Some(service);
    let Value::Sequence(items) = v else {
        ctx.err(svc, path, format!("must be a list, not {}", type_name(v)));
        return;
    };
    let section = match path.last() {
        Some(Seg::Key(k)) => k.clone(),
        _ => "secrets".into(),
    };
    for (i, item) in items.iter().enumerate() {
        let p = idx(path, i);
        let Some(mut r) = reference(ctx, svc, &p, item) else {
            continue;
        };
        let Some(def) = table.get(&r.source) else {
            let source = &r.source;
            ctx.err(
                svc,
                &p,
                format!("{section} {source:?} is not declared under the top-level `{section}:`"),
            );
            continue;
        };
        let target = match r.target.take() {
            Some(t) if t.starts_with('/') => t,
            Some(t) => format!("{default_dir}{t}"),
            None => format!("{default_dir}{}", r.source),
        };
        place(ctx, input, svc, &p, &def.source, target, r, spec);
    }
}

/// One entry of `secrets:` / `configs:` as read, before it is looked up.
struct Reference {
    source: String,
    target: Option<String>,
    uid: Option<String>,
    gid: Option<String>,
    mode: Option<u32>,
}

/// One entry (a name or `{source, target, uid, gid, mode}`); `None` when it has a problem.
fn reference(ctx: &mut Ctx, svc: Option<&str>, p: &[Seg], item: &Value) -> Option<Reference> {
    match item {
        Value::String(s) => Some(Reference {
            source: s.clone(),
            target: None,
            uid: None,
            gid: None,
            mode: None,
        }),
        Value::Mapping(m) => {
            check_keys(
                ctx,
                svc,
                p,
                m,
                &["source", "target", "uid", "gid", "mode"],
                &[],
            );
            let Some(source) = m.get("source").and_then(scalar) else {
                ctx.err(svc, p, "`source` is required");
                return None;
            };
            let before = ctx.problems.len();
            let mode = m
                .get("mode")
                .filter(|v| !v.is_null())
                .and_then(|v| mode(ctx, svc, &key(p, "mode"), v));
            // Numeric ids only: the file is written into the container before it starts, when no
            // user name can be looked up.
            let mut id_of = |k: &str| {
                m.get(k)
                    .filter(|v| !v.is_null())
                    .and_then(|v| id(ctx, svc, &key(p, k), v))
                    .map(|n| n.to_string())
            };
            let (uid, gid) = (id_of("uid"), id_of("gid"));
            if ctx.problems.len() > before {
                return None;
            }
            Some(Reference {
                source,
                target: m.get("target").and_then(scalar),
                uid,
                gid,
                mode,
            })
        }
        other => {
            ctx.err(
                svc,
                p,
                format!("must be a name or a mapping, not {}", type_name(other)),
            );
            None
        }
    }
}

/// Puts one reference into the container at `target`: a read-only bind mount for a file source, an
/// injected file for an environment or content source.
#[allow(clippy::too_many_arguments)]
fn place(
    ctx: &mut Ctx,
    input: &StackInput,
    svc: Option<&str>,
    p: &[Seg],
    source: &SecretSource,
    target: String,
    r: Reference,
    spec: &mut ContainerSpec,
) {
    match source {
        SecretSource::File(rel) => {
            // A SOPS-encrypted file is mounted decrypted, from the runtime directory.
            let host = match input.tree.host_source(rel) {
                Ok(Some(host)) => host,
                Ok(None) => input.checkout_dir.join(rel),
                Err(e) => {
                    ctx.err(svc, p, format!("{}: {e}", rel.display()));
                    return;
                }
            };
            let mut m = MountSpec::new(MountKind::Bind, host.display().to_string(), target, true);
            m.create_host_path = Some(false);
            spec.mounts.push(m);
        }
        SecretSource::Env { var, digest } => spec.files.push(InjectedFile {
            target,
            source: FileSource::Env(var.clone()),
            digest: digest.clone(),
            mode: r.mode.unwrap_or(0o444),
            uid: r.uid,
            gid: r.gid,
        }),
        SecretSource::Content(text) => spec.files.push(InjectedFile {
            target,
            digest: crate::model::hex(&Sha256::digest(text.as_bytes())),
            source: FileSource::Content(text.clone()),
            mode: r.mode.unwrap_or(0o444),
            uid: r.uid,
            gid: r.gid,
        }),
    }
}
