//! SSH remotes: a loopback `sshd` accepting one key, `source.ssh_key` authentication, and host keys
//! checked against `source.known_hosts` (or the user's own), never trusted on first use.

use super::*;
use std::time::Instant;

const SSHD: &str = "/usr/sbin/sshd";

/// A loopback `sshd` (Debian's openssh-server), one `sshd -i` per connection on our own listener, that
/// accepts `user_key.pub` for the current user. `None` (test skipped) when sshd is not installed.
struct SshServer {
    dir: TempDir,
    port: u16,
}

impl SshServer {
    fn start() -> Option<Self> {
        if !Path::new(SSHD).exists() {
            eprintln!("sshd not installed (Debian: openssh-server); SSH test skipped");
            return None;
        }
        // sshd running as root needs its privilege separation directory (made by its service otherwise).
        if is_root() && std::fs::create_dir_all("/run/sshd").is_err() {
            eprintln!("no /run/sshd; SSH test skipped");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for k in ["host", "user", "other"] {
            ssh_keygen(&d.join(k), k);
        }
        std::fs::copy(d.join("user.pub"), d.join("authorized_keys")).unwrap();
        std::fs::write(
            d.join("sshd_config"),
            format!(
                "HostKey {0}/host\nAuthorizedKeysFile {0}/authorized_keys\nStrictModes no\nUsePAM no\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 PermitRootLogin prohibit-password\nPidFile none\nLogLevel ERROR\n",
                d.display()
            ),
        )
        .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let config = d.join("sshd_config");
        let log = d.join("sshd.log");
        inetd(listener, move || {
            let mut c = Command::new(SSHD);
            c.arg("-i").arg("-f").arg(&config).arg("-E").arg(&log);
            c
        });
        Some(SshServer { dir, port })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A known_hosts file listing this server's host key (or another key) under `[127.0.0.1]:port`.
    fn known_hosts(&self, key: &str) -> PathBuf {
        let public = std::fs::read_to_string(self.path(&format!("{key}.pub"))).unwrap();
        let mut parts = public.split_whitespace();
        let (kt, b64) = (parts.next().unwrap(), parts.next().unwrap());
        let p = self.path(&format!("known_hosts-{key}"));
        std::fs::write(
            &p,
            format!("# test\n[127.0.0.1]:{} {kt} {b64}\n", self.port),
        )
        .unwrap();
        p
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

#[test]
fn ssh_key_auth_and_host_key_verification() {
    let Some(server) = SshServer::start() else {
        return;
    };
    let up = Upstream::new();
    let c1 = up.commit(&[("a", Some("1"))], "one");
    let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout).unwrap();
    let url = format!(
        "ssh://{}@127.0.0.1:{}{}",
        user.trim(),
        server.port,
        up.path().display()
    );
    let mut s = settings(&url, branch("main"));
    s.ssh_key = Some(server.path("user"));
    s.known_hosts = Some(server.known_hosts("host"));

    let state = tempfile::tempdir().unwrap();
    let mut src = GitSource::open(state.path(), &s).unwrap();
    let outcome = src.fetch().unwrap_or_else(|e| {
        panic!(
            "{e}\nsshd log:\n{}",
            std::fs::read_to_string(server.path("sshd.log")).unwrap_or_default()
        )
    });
    assert_eq!(
        outcome,
        FetchOutcome {
            commit: c1.clone(),
            fetched: true
        }
    );
    assert!(!src.fetch().unwrap().fetched);
    assert_eq!(src.fetch_count(), 1);

    // Every failure below is one fetch from a fresh open of the second state dir.
    let state = tempfile::tempdir().unwrap();
    let fetch_err = |s: &SourceSettings| {
        let mut src = GitSource::open(state.path(), s).unwrap();
        src.fetch().unwrap_err().to_string()
    };

    // The host presents a key that known_hosts does not list for it.
    let mut wrong_host = s.clone();
    wrong_host.known_hosts = Some(server.known_hosts("other"));
    let err = fetch_err(&wrong_host);
    assert!(err.contains("host key verification failed"), "{err}");
    assert!(
        err.contains("SHA256:") && err.contains(&format!("[127.0.0.1]:{}", server.port)),
        "{err}"
    );

    // Not listed at all.
    let mut unlisted = s.clone();
    let empty = server.path("known_hosts-empty");
    std::fs::write(&empty, "").unwrap();
    unlisted.known_hosts = Some(empty);
    let err = fetch_err(&unlisted);
    assert!(err.contains("is not listed in"), "{err}");

    // No source.known_hosts: libgit2 checks the user's ~/.ssh/known_hosts, which does not list this
    // server; unknown hosts are refused, never trusted on first use.
    let mut default_hosts = s.clone();
    default_hosts.known_hosts = None;
    let err = fetch_err(&default_hosts);
    assert!(err.contains("host key verification failed"), "{err}");

    // A key the server does not accept: bounded attempts, a clear error.
    let mut wrong_key = s.clone();
    wrong_key.ssh_key = Some(server.path("other"));
    let mut src = GitSource::open(state.path(), &wrong_key).unwrap();
    let started = Instant::now();
    let err = src.fetch().unwrap_err().to_string();
    assert!(err.contains("authentication failed"), "{err}");
    assert!(started.elapsed() < TIMEOUT, "{:?}", started.elapsed());
    assert_eq!(src.fetch_count(), 0);
}
