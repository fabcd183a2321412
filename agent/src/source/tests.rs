//! Tests against real Git repositories made with the `git` CLI, served over file://, plain paths,
//! `git daemon` (git://), `git http-backend` (http:// with Basic auth) and `sshd`, all on loopback. This
//! file holds the fixtures the test modules below share (the upstream repository, settings, servers).

use super::*;
use std::net::TcpListener;
use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};
use std::time::Duration;
use tempfile::TempDir;

#[path = "../../../tests/support/http_server.rs"]
mod http_server;

mod checkout;
mod fetch;
mod http;
mod redact;
mod retention;
mod ssh;

const TIMEOUT: Duration = Duration::from_secs(20);

fn git_cmd(dir: &Path) -> Command {
    let mut c = Command::new("git");
    c.current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Ada Lovelace")
        .env("GIT_AUTHOR_EMAIL", "ada@example.com")
        .env("GIT_COMMITTER_NAME", "Ada Lovelace")
        .env("GIT_COMMITTER_EMAIL", "ada@example.com")
        .env("GIT_TERMINAL_PROMPT", "0");
    c
}

/// Run git in `dir`; panic with its stderr on failure; stdout trimmed.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = git_cmd(dir).args(args).output().expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn git_ok(dir: &Path, args: &[&str]) -> bool {
    git_cmd(dir)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// `ssh-keygen` of a new ed25519 key without a passphrase at `path` (`path.pub` the public half).
fn ssh_keygen(path: &Path, comment: &str) {
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .status()
        .unwrap();
    assert!(st.success());
}

/// The upstream repository (non-bare, branch `main`) under `<tmp>/srv/up`.
struct Upstream {
    tmp: TempDir,
}

impl Upstream {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("srv/up")).unwrap();
        let u = Upstream { tmp };
        git(&u.path(), &["init", "-q", "-b", "main"]);
        u
    }
    fn base(&self) -> PathBuf {
        self.tmp.path().join("srv")
    }
    fn path(&self) -> PathBuf {
        self.base().join("up")
    }
    fn file_url(&self) -> String {
        format!("file://{}", self.path().display())
    }
    /// The repository's path as a URL (libgit2's local transport, like file://).
    fn plain_path(&self) -> String {
        self.path().display().to_string()
    }
    /// A `git daemon` serving this repository; its `git://` URL.
    fn daemon_url(&self) -> String {
        format!("git://127.0.0.1:{}/up", git_daemon(&self.base()))
    }
    /// Write (`Some`) or delete (`None`) files, commit everything, return the commit id.
    fn commit(&self, files: &[(&str, Option<&str>)], message: &str) -> String {
        for (path, content) in files {
            let p = self.path().join(path);
            match content {
                Some(c) => {
                    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                    std::fs::write(&p, c).unwrap();
                }
                None => {
                    if p.is_dir() {
                        std::fs::remove_dir_all(&p).unwrap();
                    } else {
                        std::fs::remove_file(&p).unwrap();
                    }
                }
            }
        }
        git(&self.path(), &["add", "-A"]);
        git(
            &self.path(),
            &["commit", "-q", "--allow-empty", "-m", message],
        );
        git(&self.path(), &["rev-parse", "HEAD"])
    }
    fn git(&self, args: &[&str]) -> String {
        git(&self.path(), args)
    }
}

fn settings(url: &str, reference: GitRef) -> SourceSettings {
    SourceSettings {
        url: url.to_string(),
        reference,
        path: PathBuf::from("."),
        interval: Duration::from_secs(60),
        timeout: TIMEOUT,
        ssh_key: None,
        known_hosts: None,
        token_file: None,
        username: None,
        verify: Default::default(),
    }
}

fn branch(b: &str) -> GitRef {
    GitRef::Branch(b.into())
}

/// `GitSource::open` of `state` following `reference` of `url`, with the other settings as [`settings`].
fn open(state: &Path, url: &str, reference: GitRef) -> GitSource {
    GitSource::open(state, &settings(url, reference)).unwrap()
}

/// A fresh state dir and a source following `main` of `up` over file://.
fn state_with(up: &Upstream) -> (TempDir, GitSource) {
    let state = tempfile::tempdir().unwrap();
    let src = open(state.path(), &up.file_url(), branch("main"));
    (state, src)
}

/// The next fetch succeeds with `commit`, downloading objects (`fetched`) or not.
#[track_caller]
fn assert_fetch(src: &mut GitSource, commit: &str, fetched: bool) {
    assert_eq!(
        src.fetch().unwrap(),
        FetchOutcome {
            commit: commit.to_string(),
            fetched
        }
    );
}

fn read(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok()
}

/// Serve each connection `listener` accepts with a child `command()` on the connection's stdin and
/// stdout (an inetd: `git daemon --inetd`, `sshd -i`), on a thread of its own.
fn inetd(listener: TcpListener, command: impl Fn() -> Command + Send + 'static) {
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { break };
            let Ok(out) = stream.try_clone() else {
                continue;
            };
            let child = command()
                .stdin(Stdio::from(OwnedFd::from(stream)))
                .stdout(Stdio::from(OwnedFd::from(out)))
                .stderr(Stdio::null())
                .spawn();
            if let Ok(mut child) = child {
                std::thread::spawn(move || child.wait());
            }
        }
    });
}

/// A loopback `git daemon`: our own listener (no port race), one `git daemon --inetd` per connection.
fn git_daemon(base: &Path) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let base = base.to_path_buf();
    inetd(listener, move || {
        let mut c = git_cmd(&base);
        c.arg("daemon")
            .arg("--inetd")
            .arg("--export-all")
            .arg(format!("--base-path={}", base.display()));
        c
    });
    port
}

/// A port with nothing listening on it.
fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}
