//! Anonymous volumes a replacement container takes over from the container it replaces, the way Docker
//! Compose does it on recreate (`buildContainerMountOptions`, "inherit"): the old container's anonymous
//! volumes at the targets where the new spec has an anonymous volume (`- /path`) or the new image declares a
//! `VOLUME`, unless the new spec mounts something else there. Pure: the caller inspects the engine.

use crate::model::{ContainerSpec, MountKind};
use bollard::models::MountPoint;
use std::path::{Path, PathBuf};

/// An old container's anonymous volume, to be mounted at the same target in the new container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Carried {
    /// The engine's name of the volume (64 hex digits).
    pub name: String,
    /// Where the old container had it, as the engine reported it.
    pub target: String,
    /// Mounted read-only in the old container.
    pub read_only: bool,
}

/// Whether two container paths name the same place (`/data` and `/data/` do).
pub(super) fn same_path(a: &str, b: &str) -> bool {
    canonical(a) == canonical(b)
}

fn canonical(p: &str) -> PathBuf {
    Path::new(p).components().collect()
}

/// A volume name the engine made up for an anonymous volume: 64 lowercase hex digits.
fn is_anonymous_name(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The anonymous volumes of `old` (the replaced container's mounts) that the container made from `spec`
/// takes over; `image_volumes` are the `VOLUME`s the new image declares. A volume is carried when:
/// - it is a volume whose name the engine made up (64 hex digits) and that `spec` does not name as a
///   source anywhere (a named volume stays what the spec says);
/// - `spec` mounts nothing with a source (bind, named volume) or tmpfs at its target;
/// - `spec` has an anonymous volume at its target, or the new image declares a `VOLUME` there.
pub(super) fn carried_volumes(
    spec: &ContainerSpec,
    old: &[MountPoint],
    image_volumes: &[String],
) -> Vec<Carried> {
    let mut out: Vec<Carried> = Vec::new();
    for m in old {
        let (Some("volume"), Some(name), Some(target)) = (
            m.typ.as_deref(),
            m.name.as_deref(),
            m.destination.as_deref(),
        ) else {
            continue;
        };
        if !is_anonymous_name(name) || spec.mounts.iter().any(|s| s.source == name) {
            continue;
        }
        let at_target = spec.mounts.iter().find(|s| same_path(&s.target, target));
        let wanted = match at_target {
            Some(s) => s.kind == MountKind::Volume && s.source.is_empty(),
            None => {
                let tmpfs = spec
                    .tmpfs
                    .iter()
                    .any(|t| same_path(t.split_once(':').map_or(t.as_str(), |(p, _)| p), target));
                !tmpfs && image_volumes.iter().any(|v| same_path(v, target))
            }
        };
        if wanted && !out.iter().any(|c| same_path(&c.target, target)) {
            out.push(Carried {
                name: name.to_string(),
                target: target.to_string(),
                read_only: m.rw == Some(false),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MountSpec;

    const A: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9";
    const B: &str = "1111111111111111111111111111111111111111111111111111111111111111";
    const C: &str = "2222222222222222222222222222222222222222222222222222222222222222";

    fn volume(name: &str, target: &str) -> MountPoint {
        MountPoint {
            typ: Some("volume".into()),
            name: Some(name.into()),
            source: Some(format!("/var/lib/docker/volumes/{name}/_data")),
            destination: Some(target.into()),
            driver: Some("local".into()),
            rw: Some(true),
            ..Default::default()
        }
    }

    fn names(c: &[Carried]) -> Vec<(&str, &str)> {
        c.iter()
            .map(|c| (c.target.as_str(), c.name.as_str()))
            .collect()
    }

    #[test]
    fn anonymous_volumes_of_the_spec_and_of_the_image_are_carried() {
        let spec = ContainerSpec {
            mounts: vec![MountSpec::new(MountKind::Volume, "", "/cache/", false)],
            ..Default::default()
        };
        let old = [volume(A, "/data"), volume(B, "/cache")];
        let carried = carried_volumes(&spec, &old, &["/data".into()]);
        assert_eq!(names(&carried), [("/data", A), ("/cache", B)]);
        assert!(carried.iter().all(|c| !c.read_only));
    }

    #[test]
    fn what_the_new_spec_or_image_no_longer_asks_for_is_not_carried() {
        // The image no longer declares /old; nothing in the spec is anonymous at /gone.
        let spec = ContainerSpec::default();
        let old = [volume(A, "/old"), volume(B, "/gone")];
        assert!(carried_volumes(&spec, &old, &["/data".into()]).is_empty());
    }

    #[test]
    fn a_mount_the_spec_makes_at_the_target_wins() {
        let spec = ContainerSpec {
            mounts: vec![
                MountSpec::new(MountKind::Volume, "app_data", "/data", false),
                MountSpec::new(MountKind::Bind, "/srv/conf", "/conf", true),
                MountSpec::new(MountKind::Tmpfs, "", "/scratch", false),
            ],
            tmpfs: vec!["/run:size=1m".into()],
            ..Default::default()
        };
        let old = [
            volume(A, "/data"),
            volume(B, "/conf"),
            volume(C, "/scratch"),
            volume(A, "/run"),
        ];
        let image = ["/data", "/conf", "/scratch", "/run"].map(String::from);
        assert!(carried_volumes(&spec, &old, &image).is_empty());
    }

    #[test]
    fn named_volumes_binds_and_tmpfs_of_the_old_container_are_never_carried() {
        let spec = ContainerSpec::default();
        let mut bind = volume(A, "/a");
        bind.typ = Some("bind".into());
        let mut tmpfs = volume(B, "/b");
        tmpfs.typ = Some("tmpfs".into());
        let named = volume("app_data", "/c");
        let upper = volume(&A.to_uppercase(), "/d");
        let short = volume(&A[..63], "/e");
        let old = [bind, tmpfs, named, upper, short];
        let image = ["/a", "/b", "/c", "/d", "/e"].map(String::from);
        assert!(carried_volumes(&spec, &old, &image).is_empty());
    }

    #[test]
    fn a_volume_the_spec_names_as_a_source_is_not_taken_as_anonymous() {
        let spec = ContainerSpec {
            mounts: vec![MountSpec::new(MountKind::Volume, A, "/elsewhere", false)],
            ..Default::default()
        };
        assert!(carried_volumes(&spec, &[volume(A, "/data")], &["/data".into()]).is_empty());
    }

    #[test]
    fn read_only_is_kept_and_a_target_is_carried_once() {
        let spec = ContainerSpec::default();
        let mut ro = volume(A, "/data");
        ro.rw = Some(false);
        let carried = carried_volumes(&spec, &[ro, volume(B, "/data/")], &["/data".into()]);
        assert_eq!(names(&carried), [("/data", A)]);
        assert!(carried[0].read_only);
    }
}
