//! A GnuPG home of its own for tests that sign with OpenPGP keys: keys made with `gpg --quick-gen-key`
//! (at a faked time when asked), exported armored; its gpg-agent is stopped on drop. Also [`run`], a
//! command that must succeed.
//!
//! Shared by the unit tests in `agent/src/source/verify/tests.rs` and the integration tests in
//! `tests/verify.rs`, both of which include this file with `#[path]`; it may use only std and tempfile.

use std::path::Path;
use std::process::Command;

/// Run `cmd`; panic with its output unless it succeeds; its stdout, trimmed.
pub fn run(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        o.status.success(),
        "{cmd:?}: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// A `GNUPGHOME` in a temp dir of its own.
pub struct GpgHome {
    home: tempfile::TempDir,
}

impl GpgHome {
    pub fn new() -> GpgHome {
        // gpg-agent's socket path must stay short.
        let home = tempfile::Builder::new()
            .prefix("g")
            .tempdir_in("/tmp")
            .unwrap();
        GpgHome { home }
    }

    pub fn path(&self) -> &Path {
        self.home.path()
    }

    /// `gpg` in this home, without prompts, believing it is `faked_time` when given.
    pub fn cmd(&self, faked_time: Option<&str>) -> Command {
        let mut c = Command::new("gpg");
        c.env("GNUPGHOME", self.home.path()).args([
            "--batch",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
        ]);
        if let Some(t) = faked_time {
            c.args(["--faked-system-time", t]);
        }
        c
    }

    /// A new signing key for `uid` (made at `faked_time` when given, expiring after `expire`); its
    /// fingerprint.
    pub fn key(&self, uid: &str, algo: &str, expire: &str, faked_time: Option<&str>) -> String {
        run(self
            .cmd(faked_time)
            .args(["--quick-gen-key", uid, algo, "sign", expire]));
        let listing = run(self.cmd(None).args(["--with-colons", "--list-keys", uid]));
        listing
            .lines()
            .find_map(|l| l.strip_prefix("fpr:::::::::"))
            .map(|l| l.trim_end_matches(':').to_string())
            .unwrap()
    }

    /// The armored public key `fpr`.
    pub fn export(&self, fpr: &str) -> String {
        run(self.cmd(None).args(["--armor", "--export", fpr]))
    }
}

impl Drop for GpgHome {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", self.home.path())
            .args(["--kill", "gpg-agent"])
            .output();
    }
}
