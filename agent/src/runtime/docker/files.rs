//! Secrets and configs injected into a container: one tar archive (GNU headers, so any uid/gid fits)
//! uploaded to `/` after create. Values from the agent's environment are read here, at create time.

use super::SpecError;
use crate::model::ContainerSpec;

/// The tar archive of a spec's injected files, paths relative to `/`. Values from the environment are
/// read here so they never pass through the desired state or the store. A uid/gid that is not a number
/// is an error naming the service and the file's target.
pub(super) fn files_tar(spec: &ContainerSpec) -> Result<Vec<u8>, SpecError> {
    use crate::model::FileSource;
    use std::os::unix::ffi::OsStringExt;
    let mut tar = tar::Builder::new(Vec::new());
    for f in &spec.files {
        let content = match &f.source {
            FileSource::Content(c) => c.clone().into_bytes(),
            FileSource::Env(var) => std::env::var_os(var)
                .ok_or_else(|| SpecError::EnvUnset {
                    service: spec.service.clone(),
                    target: f.target.clone(),
                    var: var.clone(),
                })?
                .into_vec(),
        };
        let id = |field: &'static str, value: &Option<String>| -> Result<u64, SpecError> {
            let Some(v) = value else { return Ok(0) };
            // u32::MAX is chown's "leave unchanged".
            match v.trim().parse::<u32>() {
                Ok(n) if n != u32::MAX => Ok(u64::from(n)),
                _ => Err(SpecError::BadId {
                    service: spec.service.clone(),
                    target: f.target.clone(),
                    field,
                    value: v.clone(),
                }),
            }
        };
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(f.mode);
        header.set_uid(id("uid", &f.uid)?);
        header.set_gid(id("gid", &f.gid)?);
        header.set_mtime(0);
        header.set_size(content.len() as u64);
        tar.append_data(
            &mut header,
            f.target.trim_start_matches('/'),
            content.as_slice(),
        )
        .map_err(|source| SpecError::Archive {
            service: spec.service.clone(),
            target: f.target.clone(),
            source,
        })?;
    }
    tar.into_inner().map_err(|source| SpecError::Archive {
        service: spec.service.clone(),
        target: "(end of archive)".into(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{FileSource, InjectedFile};

    fn with_file(uid: Option<&str>, gid: Option<&str>, source: FileSource) -> ContainerSpec {
        ContainerSpec {
            service: "app".into(),
            files: vec![InjectedFile {
                target: "/run/secrets/token".into(),
                source,
                digest: String::new(),
                mode: 0o440,
                uid: uid.map(str::to_string),
                gid: gid.map(str::to_string),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn files_tar_takes_any_uid_in_gnu_headers() {
        let spec = with_file(
            Some("3000000"),
            Some(" 4294967294 "),
            FileSource::Content("top secret".into()),
        );
        let tar = files_tar(&spec).unwrap();
        let mut archive = tar::Archive::new(tar.as_slice());
        let mut entries = archive.entries().unwrap();
        let mut e = entries.next().unwrap().unwrap();
        assert_eq!(e.path().unwrap().to_str(), Some("run/secrets/token"));
        assert_eq!(e.header().uid().unwrap(), 3_000_000);
        assert_eq!(e.header().gid().unwrap(), 4_294_967_294);
        assert_eq!(e.header().mode().unwrap(), 0o440);
        let mut body = String::new();
        std::io::Read::read_to_string(&mut e, &mut body).unwrap();
        assert_eq!(body, "top secret");
        assert!(entries.next().is_none());

        // No uid/gid: root, as Compose does.
        let tar = files_tar(&with_file(None, None, FileSource::Content("x".into()))).unwrap();
        let mut archive = tar::Archive::new(tar.as_slice());
        let e = archive.entries().unwrap().next().unwrap().unwrap();
        assert_eq!(
            (e.header().uid().unwrap(), e.header().gid().unwrap()),
            (0, 0)
        );
    }

    #[test]
    fn files_tar_refuses_ids_that_are_not_numbers_naming_service_and_target() {
        for (uid, gid) in [
            (Some("web"), None),
            (None, Some("-1")),
            (Some("4294967295"), None),
            (Some("99999999999999999999"), None),
            (Some(""), None),
        ] {
            let spec = with_file(uid, gid, FileSource::Content("top secret".into()));
            let e = files_tar(&spec).unwrap_err();
            assert!(matches!(e, SpecError::BadId { .. }), "{e}");
            let text = e.to_string();
            assert!(
                text.contains("service app") && text.contains("/run/secrets/token"),
                "{text}"
            );
            assert!(!text.contains("top secret"), "{text}");
        }
    }

    #[test]
    fn files_tar_names_an_unset_variable_never_a_value() {
        let var = format!("BERTH_UNIT_UNSET_{}", std::process::id());
        let e = files_tar(&with_file(None, None, FileSource::Env(var.clone()))).unwrap_err();
        assert!(matches!(e, SpecError::EnvUnset { .. }), "{e}");
        assert!(e.to_string().contains(&var), "{e}");
    }
}
