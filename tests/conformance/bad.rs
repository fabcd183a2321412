//! Helpers of the bad-files test: the baseline a bad file is applied over, and what an agent owns on the
//! engine before and after.

use super::*;

pub(super) const BASELINE: &str = r#"services:
  web:
    image: berth-test/busybox:latest
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
    volumes:
      - data:/data
    networks: [back]
networks:
  back: {}
volumes:
  data: {}
"#;

/// Everything an agent owns on the engine: containers (name, id, state), networks, volumes.
pub(super) fn owned_state(agent: &str) -> Result<String, String> {
    let filter = format!("label={AGENT_LABEL}={agent}");
    let mut c = lines(&docker_out(&[
        "ps",
        "-a",
        "--no-trunc",
        "--filter",
        &filter,
        "--format",
        "{{.Names}} {{.ID}} {{.State}}",
    ])?);
    c.sort();
    let mut n = lines(&docker_out(&[
        "network",
        "ls",
        "--filter",
        &filter,
        "--format",
        "{{.Name}}",
    ])?);
    n.sort();
    let mut v = lines(&docker_out(&[
        "volume",
        "ls",
        "--filter",
        &filter,
        "--format",
        "{{.Name}}",
    ])?);
    v.sort();
    Ok(format!(
        "containers: {c:?}\nnetworks: {n:?}\nvolumes: {v:?}"
    ))
}

pub(super) struct OwnedCleanup(pub(super) String);

impl Drop for OwnedCleanup {
    fn drop(&mut self) {
        let _ = remove_labelled(&format!("{AGENT_LABEL}={}", self.0));
    }
}
