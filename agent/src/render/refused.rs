//! Why berth refuses a key that the Compose specification has: each refused key with its reason, for the
//! problem `check_keys` reports (a key Compose itself does not know is an unknown key instead).
//!
//! Layer: foundations (see the table in `render`).

/// The reason a Compose key is refused: not in this release (with what it would take), or it cannot
/// work on one Linux engine.
pub(super) fn why(key: &str) -> &'static str {
    match key {
        "annotations" => "not in this release (OCI annotations on the container)",
        "credential_spec" => {
            "it is a Windows setting (gMSA credentials) that a Linux engine has no use for"
        }
        "gpus" => "not in this release (GPU device requests, which need a GPU runtime on the engine)",
        "models" => "it needs Docker Model Runner, which is not part of the engine",
        "post_start" | "pre_stop" => {
            "not in this release (lifecycle hooks that Compose runs with `docker exec`)"
        }
        "provider" => {
            "it hands the service to a Compose provider plugin; berth only runs containers on the engine"
        }
        "storage_opt" => {
            "not in this release (root filesystem quotas, which need overlay2 on xfs with pquota)"
        }
        "use_api_socket" => {
            "not in this release: it copies the operator's registry credentials into the container; mount /var/run/docker.sock explicitly instead"
        }
        "enable_ipv4" => "not in this release (IPv6-only networks need engine API 1.47)",
        "link_local_ips" | "gw_priority" | "interface_name" => {
            "not in this release (endpoint settings of newer engines)"
        }
        "devices" => "not in this release (GPU and other device reservations)",
        "image" => "not in this release (image mounts need engine API 1.48)",
        _ => "not in this release",
    }
}

#[cfg(test)]
mod tests {
    use super::why;

    #[test]
    fn each_refused_key_says_why() {
        assert!(why("credential_spec").contains("Windows"));
        assert!(why("use_api_socket").contains("docker.sock"));
        assert!(why("models").contains("Model Runner"));
        assert_eq!(why("something_else"), "not in this release");
    }
}
