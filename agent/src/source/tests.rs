//! Tests against real Git repositories made with the `git` CLI, served over file://, plain paths,
//! `git daemon` (git://) and `git http-backend` (http:// with Basic auth), all on loopback.

use super::*;
use crate::render::{EntryKind, Tree};
use std::net::TcpListener;
use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tempfile::TempDir;

#[path = "../../../tests/support/http_server.rs"]
mod http_server;
use http_server::git_http_backend;

const TIMEOUT: Duration = Duration::from_secs(20);

// ---------- helpers ----------

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

/// A loopback `git daemon`: our own listener (no port race), one `git daemon --inetd` per connection.
fn git_daemon(base: &Path) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let base = base.to_path_buf();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { break };
            let Ok(out) = stream.try_clone() else {
                continue;
            };
            let child = git_cmd(&base)
                .arg("daemon")
                .arg("--inetd")
                .arg("--export-all")
                .arg(format!("--base-path={}", base.display()))
                .stdin(Stdio::from(OwnedFd::from(stream)))
                .stdout(Stdio::from(OwnedFd::from(out)))
                .stderr(Stdio::null())
                .spawn();
            if let Ok(mut child) = child {
                std::thread::spawn(move || child.wait());
            }
        }
    });
    port
}

/// A port with nothing listening on it.
fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

// ---------- redact ----------

#[test]
fn redact_hides_passwords_and_tokens() {
    assert_eq!(redact("https://user:tok@host/x"), "https://user:***@host/x");
    assert_eq!(
        redact("fetch https://u:s3cr3t@git.example.com:8443/a/b.git failed: x"),
        "fetch https://u:***@git.example.com:8443/a/b.git failed: x"
    );
    assert_eq!(
        redact("https://ghp_abcdef123@github.com/o/r"),
        "https://***@github.com/o/r"
    );
    assert_eq!(
        redact("http://oauth2:glpat-xyz@gitlab/x"),
        "http://oauth2:***@gitlab/x"
    );
    assert_eq!(
        redact("ssh://git@example.com/x.git"),
        "ssh://git@example.com/x.git"
    );
    assert_eq!(
        redact("ssh://git:pw@example.com/x.git"),
        "ssh://git:***@example.com/x.git"
    );
    assert_eq!(
        redact("git@example.com:fleet.git"),
        "git@example.com:fleet.git"
    );
    assert_eq!(redact("https://host/x?y=z"), "https://host/x?y=z");
    assert_eq!(redact("/srv/git/fleet.git"), "/srv/git/fleet.git");
    assert_eq!(
        redact("file:///srv/git/fleet.git"),
        "file:///srv/git/fleet.git"
    );
    assert_eq!(
        redact("a https://a:b@h1/x and 'https://c:d@h2' end"),
        "a https://a:***@h1/x and 'https://c:***@h2' end"
    );
    assert_eq!(redact("https://u:p@ss@host/x"), "https://u:***@host/x");
    assert_eq!(redact("no url here: 'a:b@c'"), "no url here: 'a:b@c'");
    assert_eq!(redact("HTTPS://U:P@H/"), "HTTPS://U:***@H/");
}

// ---------- open ----------

#[test]
fn open_initialises_then_reopens_and_follows_url_changes() {
    let up = Upstream::new();
    up.commit(&[("a", Some("1"))], "one");
    let state = tempfile::tempdir().unwrap();
    let src = GitSource::open(state.path(), &settings(&up.file_url(), branch("main"))).unwrap();
    assert_eq!(src.workdir(), state.path().join("repo"));
    assert!(state.path().join("repo/.git").is_dir());
    drop(src);
    let other = format!("{}/", up.path().display());
    let _src = GitSource::open(state.path(), &settings(&other, branch("main"))).unwrap();
    assert_eq!(
        git(&state.path().join("repo"), &["remote", "get-url", "origin"]),
        other
    );
}

#[test]
fn open_refuses_a_directory_that_is_not_a_repository_and_deletes_nothing() {
    let state = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(state.path().join("repo")).unwrap();
    std::fs::write(state.path().join("repo/precious"), "data").unwrap();
    let err = GitSource::open(state.path(), &settings("/nonexistent", branch("main")))
        .err()
        .expect("not a repository");
    let msg = err.to_string();
    assert!(matches!(err, SourceError::Local { .. }), "{msg}");
    assert!(msg.contains("not a Git repository"), "{msg}");
    assert_eq!(
        std::fs::read_to_string(state.path().join("repo/precious")).unwrap(),
        "data"
    );

    // A corrupt .git is reported, not replaced.
    let state = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(state.path().join("repo/.git")).unwrap();
    std::fs::write(state.path().join("repo/.git/HEAD"), "garbage").unwrap();
    let err = GitSource::open(state.path(), &settings("/nonexistent", branch("main")))
        .err()
        .expect("corrupt repository");
    assert!(
        err.to_string().contains("not a usable Git repository"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(state.path().join("repo/.git/HEAD")).unwrap(),
        "garbage"
    );

    // A file where the repository should be.
    let state = tempfile::tempdir().unwrap();
    std::fs::write(state.path().join("repo"), "x").unwrap();
    assert!(GitSource::open(state.path(), &settings("/x", branch("main"))).is_err());
}

#[test]
fn open_removes_stale_lock_files() {
    let up = Upstream::new();
    let c1 = up.commit(&[("a", Some("1"))], "one");
    let state = tempfile::tempdir().unwrap();
    let mut src = GitSource::open(state.path(), &settings(&up.file_url(), branch("main"))).unwrap();
    src.fetch().unwrap();
    drop(src);
    let gitdir = state.path().join("repo/.git");
    std::fs::write(gitdir.join("index.lock"), "").unwrap();
    std::fs::write(gitdir.join("refs/remotes/origin/main.lock"), "").unwrap();
    let src = GitSource::open(state.path(), &settings(&up.file_url(), branch("main"))).unwrap();
    src.checkout(&c1).unwrap();
    src.keep(1, &c1).unwrap();
    assert!(!gitdir.join("index.lock").exists());
}

// ---------- fetch ----------

/// Follows a branch through `url`; fetch_count moves only when the branch does.
fn follow_branch(url: &str, up: &Upstream) {
    let c1 = up.commit(&[("compose.yaml", Some("services: {}\n"))], "one");
    let state = tempfile::tempdir().unwrap();
    let mut src = GitSource::open(state.path(), &settings(url, branch("main"))).unwrap();
    assert_eq!(src.fetch_count(), 0);
    let o = src.fetch().unwrap();
    assert_eq!(
        o,
        FetchOutcome {
            commit: c1.clone(),
            fetched: true
        }
    );
    assert_eq!(src.fetch_count(), 1);
    assert!(src.has_commit(&c1));

    // Nothing moved: the remote ref is checked, nothing is fetched.
    let o = src.fetch().unwrap();
    assert_eq!(
        o,
        FetchOutcome {
            commit: c1.clone(),
            fetched: false
        }
    );
    assert_eq!(src.fetch_count(), 1);

    // It moved: fetched once more.
    let c2 = up.commit(&[("compose.yaml", Some("services: {a: {}}\n"))], "two");
    let o = src.fetch().unwrap();
    assert_eq!(
        o,
        FetchOutcome {
            commit: c2.clone(),
            fetched: true
        }
    );
    assert_eq!(src.fetch_count(), 2);
    assert!(!src.fetch().unwrap().fetched);
    assert_eq!(src.fetch_count(), 2);

    // Force-pushed back to a commit we already have: no download needed.
    up.git(&["reset", "-q", "--hard", &c1]);
    let o = src.fetch().unwrap();
    assert_eq!(
        o,
        FetchOutcome {
            commit: c1.clone(),
            fetched: false
        }
    );
    assert_eq!(src.fetch_count(), 2);

    // A fresh open of the existing clone knows what it has.
    drop(src);
    let mut src = GitSource::open(state.path(), &settings(url, branch("main"))).unwrap();
    assert_eq!(
        src.fetch().unwrap(),
        FetchOutcome {
            commit: c1,
            fetched: false
        }
    );
    assert_eq!(src.fetch_count(), 0);
}

#[test]
fn branch_over_file_url() {
    let up = Upstream::new();
    follow_branch(&up.file_url(), &up);
}

#[test]
fn branch_over_local_path() {
    let up = Upstream::new();
    follow_branch(&up.path().display().to_string(), &up);
}

#[test]
fn branch_over_git_daemon_is_shallow() {
    let up = Upstream::new();
    up.commit(&[("old", Some("0"))], "zero");
    let port = git_daemon(&up.base());
    let url = format!("git://127.0.0.1:{port}/up");
    follow_branch(&url, &up);

    // Depth 1: a fresh clone has the tip only.
    let tip = up.commit(&[("x", Some("x"))], "tip");
    let state = tempfile::tempdir().unwrap();
    let mut src = GitSource::open(state.path(), &settings(&url, branch("main"))).unwrap();
    assert_eq!(src.fetch().unwrap().commit, tip);
    let repo = state.path().join("repo");
    assert_eq!(
        std::fs::read_to_string(repo.join(".git/shallow"))
            .unwrap()
            .trim(),
        tip
    );
    assert_eq!(git(&repo, &["rev-list", "--count", "--all"]), "1");
}

#[test]
fn missing_branch_and_empty_remote_are_ref_not_found() {
    let up = Upstream::new();
    let state = tempfile::tempdir().unwrap();
    // Empty repository: no refs at all.
    let mut src = GitSource::open(state.path(), &settings(&up.file_url(), branch("main"))).unwrap();
    let err = src.fetch().unwrap_err();
    assert!(matches!(err, SourceError::RefNotFound { .. }), "{err}");
    up.commit(&[("a", Some("1"))], "one");
    let mut src = GitSource::open(state.path(), &settings(&up.file_url(), branch("nope"))).unwrap();
    let err = src.fetch().unwrap_err();
    assert!(matches!(err, SourceError::RefNotFound { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("branch nope") && msg.contains(&up.file_url()),
        "{msg}"
    );
    assert_eq!(src.fetch_count(), 0);
}

fn follow_tags(url: &str, up: &Upstream) {
    let a = up.commit(&[("f", Some("a"))], "a");
    up.git(&["tag", "-a", "-m", "release one", "v1"]);
    let b = up.commit(&[("f", Some("b"))], "b");
    up.git(&["tag", "v2"]);
    up.commit(&[("f", Some("c"))], "c");

    let state = tempfile::tempdir().unwrap();
    let mut src = GitSource::open(state.path(), &settings(url, GitRef::Tag("v1".into()))).unwrap();
    assert_eq!(
        src.fetch().unwrap(),
        FetchOutcome {
            commit: a.clone(),
            fetched: true
        }
    );
    assert_eq!(
        src.fetch().unwrap(),
        FetchOutcome {
            commit: a.clone(),
            fetched: false
        }
    );
    assert_eq!(src.fetch_count(), 1);

    let mut src = GitSource::open(state.path(), &settings(url, GitRef::Tag("v2".into()))).unwrap();
    // libgit2's local transport copies the objects of every ref, so b may already be here.
    let local = remote::is_local(url);
    assert_eq!(
        src.fetch().unwrap(),
        FetchOutcome {
            commit: b.clone(),
            fetched: !local
        }
    );
    assert!(!src.fetch().unwrap().fetched);

    // The annotated tag is moved to a new commit.
    let d = up.commit(&[("f", Some("d"))], "d");
    up.git(&["tag", "-f", "-a", "-m", "release one again", "v1"]);
    let mut src = GitSource::open(state.path(), &settings(url, GitRef::Tag("v1".into()))).unwrap();
    assert_eq!(
        src.fetch().unwrap(),
        FetchOutcome {
            commit: d,
            fetched: true
        }
    );
    assert!(!src.fetch().unwrap().fetched);

    let mut src = GitSource::open(state.path(), &settings(url, GitRef::Tag("v9".into()))).unwrap();
    let err = src.fetch().unwrap_err();
    assert!(err.to_string().contains("tag v9 not found"), "{err}");
}

#[test]
fn tags_over_file_url() {
    let up = Upstream::new();
    follow_tags(&up.file_url(), &up);
}

#[test]
fn tags_over_git_daemon() {
    let up = Upstream::new();
    let port = git_daemon(&up.base());
    follow_tags(&format!("git://127.0.0.1:{port}/up"), &up);
}

fn pinned_commits(url: &str, up: &Upstream) {
    let a = up.commit(&[("f", Some("a"))], "a");
    let b = up.commit(&[("f", Some("b"))], "b");
    let c = up.commit(&[("f", Some("c"))], "c");
    let state = tempfile::tempdir().unwrap();

    // Full id of a commit that is no ref's tip.
    let mut src = GitSource::open(state.path(), &settings(url, GitRef::Commit(a.clone()))).unwrap();
    assert_eq!(
        src.fetch().unwrap(),
        FetchOutcome {
            commit: a.clone(),
            fetched: true
        }
    );
    assert_eq!(
        src.fetch().unwrap(),
        FetchOutcome {
            commit: a.clone(),
            fetched: false
        }
    );
    assert_eq!(src.fetch_count(), 1);

    // Abbreviated, upper case.
    let state2 = tempfile::tempdir().unwrap();
    let short_b = b[..7].to_ascii_uppercase();
    let mut src = GitSource::open(state2.path(), &settings(url, GitRef::Commit(short_b))).unwrap();
    assert_eq!(
        src.fetch().unwrap(),
        FetchOutcome {
            commit: b.clone(),
            fetched: true
        }
    );

    // Abbreviated tip.
    let state3 = tempfile::tempdir().unwrap();
    let mut src = GitSource::open(
        state3.path(),
        &settings(url, GitRef::Commit(c[..10].to_string())),
    )
    .unwrap();
    assert_eq!(
        src.fetch().unwrap(),
        FetchOutcome {
            commit: c.clone(),
            fetched: true
        }
    );

    // Present locally: no network at all (the remote is unreachable now).
    let gone = format!("git://127.0.0.1:{}/up", closed_port());
    let mut src = GitSource::open(
        state.path(),
        &settings(&gone, GitRef::Commit(a[..8].into())),
    )
    .unwrap();
    assert_eq!(
        src.fetch().unwrap(),
        FetchOutcome {
            commit: a.clone(),
            fetched: false
        }
    );

    // A commit the remote does not have.
    let state4 = tempfile::tempdir().unwrap();
    let missing = "0123456789abcdef0123456789abcdef01234567";
    let mut src = GitSource::open(
        state4.path(),
        &settings(url, GitRef::Commit(missing.into())),
    )
    .unwrap();
    let err = src.fetch().unwrap_err();
    assert!(matches!(err, SourceError::RefNotFound { .. }), "{err}");
    assert!(err.to_string().contains(missing), "{err}");

    let mut src =
        GitSource::open(state4.path(), &settings(url, GitRef::Commit("xyz".into()))).unwrap();
    assert!(src.fetch().is_err());
}

#[test]
fn pinned_commits_over_file_url() {
    let up = Upstream::new();
    pinned_commits(&up.file_url(), &up);
}

#[test]
fn pinned_commits_over_git_daemon() {
    let up = Upstream::new();
    let port = git_daemon(&up.base());
    pinned_commits(&format!("git://127.0.0.1:{port}/up"), &up);
}

/// A shallow clone pinned to an old commit unshallows; then switching the URL to the local transport
/// (which rewrites the `shallow` file) still leaves history walkable.
#[test]
fn shallow_clone_then_old_pin_then_local_url() {
    let up = Upstream::new();
    let a = up.commit(&[("f", Some("a"))], "a");
    up.commit(&[("f", Some("b"))], "b");
    let c = up.commit(&[("f", Some("c"))], "c");
    let port = git_daemon(&up.base());
    let url = format!("git://127.0.0.1:{port}/up");
    let state = tempfile::tempdir().unwrap();
    let repo = state.path().join("repo");

    let mut src = GitSource::open(state.path(), &settings(&url, branch("main"))).unwrap();
    assert_eq!(src.fetch().unwrap().commit, c);
    src.keep(1, &c).unwrap();
    assert!(repo.join(".git/shallow").exists());

    // Local transport after a shallow fetch: the boundary stays listed.
    let d = up.commit(&[("f", Some("d"))], "d");
    let mut src = GitSource::open(state.path(), &settings(&up.file_url(), branch("main"))).unwrap();
    assert_eq!(src.fetch().unwrap().commit, d);
    assert!(
        git_ok(&repo, &["rev-list", "--all"]),
        "history must stay walkable"
    );
    src.checkout(&c).unwrap();

    // Pinning an old commit over the network unshallows.
    let mut src =
        GitSource::open(state.path(), &settings(&url, GitRef::Commit(a.clone()))).unwrap();
    assert_eq!(
        src.fetch().unwrap(),
        FetchOutcome {
            commit: a.clone(),
            fetched: true
        }
    );
    src.checkout(&a).unwrap();
    assert!(git_ok(&repo, &["rev-list", "--all"]));
}

// ---------- errors, timeouts, auth ----------

#[test]
fn unreachable_remote_fails_fast_with_the_redacted_url() {
    let state = tempfile::tempdir().unwrap();
    let port = closed_port();
    for url in [
        format!("git://127.0.0.1:{port}/up"),
        format!("http://user:hunter2@127.0.0.1:{port}/up.git"),
    ] {
        let mut src = GitSource::open(state.path(), &settings(&url, branch("main"))).unwrap();
        let started = Instant::now();
        let err = src.fetch().unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        let msg = err.to_string();
        assert!(matches!(err, SourceError::Fetch { .. }), "{msg}");
        assert!(msg.contains(&redact(&url)), "{msg}");
        assert!(msg.contains(&format!("127.0.0.1:{port}")), "{msg}");
        assert!(!msg.contains("hunter2"), "{msg}");
        assert_eq!(src.fetch_count(), 0);
    }
}

#[test]
fn a_silent_server_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming() {
            held.push(s); // accept, never answer
        }
    });
    let state = tempfile::tempdir().unwrap();
    let mut s = settings(&format!("git://127.0.0.1:{port}/up"), branch("main"));
    s.timeout = Duration::from_secs(3);
    let mut src = GitSource::open(state.path(), &s).unwrap();
    let started = Instant::now();
    let err = src.fetch().unwrap_err();
    // libgit2's socket timeout is process-wide: a test running in parallel may have set a longer one.
    assert!(
        started.elapsed() < TIMEOUT + Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(
        err.to_string()
            .contains("timed out after 3s (source.timeout)"),
        "{err}"
    );
}

#[test]
fn http_token_auth() {
    let up = Upstream::new();
    let c1 = up.commit(&[("a", Some("1"))], "one");
    let token = "tok-9f8e7d6c5b4a";
    let (server, denied) = git_http_backend(&up.base(), "deploy", token);
    let port = server.port;
    let url = format!("http://127.0.0.1:{port}/up");
    let secrets = tempfile::tempdir().unwrap();
    let token_file = secrets.path().join("token");

    // The right token (with whitespace around it in the file) and user name.
    std::fs::write(&token_file, format!("  {token}\n")).unwrap();
    let state = tempfile::tempdir().unwrap();
    let mut s = settings(&url, branch("main"));
    s.token_file = Some(token_file.clone());
    s.username = Some("deploy".into());
    let mut src = GitSource::open(state.path(), &s).unwrap();
    assert_eq!(
        src.fetch().unwrap(),
        FetchOutcome {
            commit: c1.clone(),
            fetched: true
        }
    );
    assert_eq!(
        src.fetch().unwrap(),
        FetchOutcome {
            commit: c1.clone(),
            fetched: false
        }
    );
    assert_eq!(src.fetch_count(), 1);
    let c2 = up.commit(&[("a", Some("2"))], "two");
    assert_eq!(
        src.fetch().unwrap(),
        FetchOutcome {
            commit: c2,
            fetched: true
        }
    );

    // A wrong token: bounded attempts, a clear error, no token in it.
    let wrong = "wrong-token-0123456789";
    std::fs::write(&token_file, wrong).unwrap();
    let before = denied.load(Ordering::SeqCst);
    let state = tempfile::tempdir().unwrap();
    let mut src = GitSource::open(state.path(), &s).unwrap();
    let err = src.fetch().unwrap_err();
    let msg = format!("{err} {err:?}");
    let attempts = denied.load(Ordering::SeqCst) - before;
    assert!(msg.contains("authentication failed"), "{msg}");
    assert!(!msg.contains(wrong) && !msg.contains(token), "{msg}");
    assert!((2..=4).contains(&attempts), "{attempts} requests denied");

    // The default user name is not the one the server wants.
    std::fs::write(&token_file, token).unwrap();
    let mut s2 = s.clone();
    s2.username = None;
    let mut src = GitSource::open(state.path(), &s2).unwrap();
    assert!(src
        .fetch()
        .unwrap_err()
        .to_string()
        .contains("authentication failed"));

    // No token at all.
    let mut s3 = s.clone();
    s3.token_file = None;
    let mut src = GitSource::open(state.path(), &s3).unwrap();
    let err = src.fetch().unwrap_err().to_string();
    assert!(err.contains("token_file"), "{err}");

    // An unreadable token file.
    let mut s4 = s.clone();
    s4.token_file = Some(secrets.path().join("missing"));
    let mut src = GitSource::open(state.path(), &s4).unwrap();
    let err = src.fetch().unwrap_err().to_string();
    assert!(err.contains("cannot read source.token_file"), "{err}");

    // Credentials in the URL itself never show.
    let bad_url = format!("http://deploy:{wrong}@127.0.0.1:{port}/up");
    let mut src = GitSource::open(state.path(), &settings(&bad_url, branch("main"))).unwrap();
    let err = src.fetch().unwrap_err();
    let msg = format!("{err} {err:?}");
    assert!(!msg.contains(wrong), "{msg}");
    assert!(
        msg.contains("deploy:***@") && msg.contains("authentication failed"),
        "{msg}"
    );
}

/// Every file under `dir` (recursively) whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let md = std::fs::symlink_metadata(&p).unwrap();
            if md.is_dir() {
                stack.push(p);
            } else if md.is_file() {
                let bytes = std::fs::read(&p).unwrap();
                if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                    found.push(p);
                }
            }
        }
    }
    found
}

#[test]
fn credentials_in_the_url_never_reach_the_clone() {
    let up = Upstream::new();
    let c1 = up.commit(&[("a", Some("1"))], "one");
    let password = "pw-Sekr3t-77a1";
    let (server, _denied) = git_http_backend(&up.base(), "deploy", password);
    let port = server.port;
    let url = format!("http://deploy:{password}@127.0.0.1:{port}/up");
    let bare = format!("http://127.0.0.1:{port}/up");
    // A clone made by an earlier release: its config and FETCH_HEAD hold the URL with its credentials.
    let state = tempfile::tempdir().unwrap();
    let repo = state.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q"]);
    git(&repo, &["remote", "add", "origin", &url]);
    std::fs::write(
        repo.join(".git/FETCH_HEAD"),
        format!("{c1}\t\tbranch 'main' of {url}\n"),
    )
    .unwrap();

    let mut src = GitSource::open(state.path(), &settings(&url, branch("main"))).unwrap();
    assert_eq!(git(&repo, &["remote", "get-url", "origin"]), bare);
    assert_eq!(src.fetch().unwrap().commit, c1);
    src.checkout(&c1).unwrap();
    let c2 = up.commit(&[("a", Some("2"))], "two");
    assert_eq!(src.fetch().unwrap().commit, c2);
    src.checkout(&c2).unwrap();
    for needle in [password, "deploy:", "deploy@"] {
        assert_eq!(
            files_containing(state.path(), needle),
            Vec::<PathBuf>::new(),
            "{needle:?} is written under state_dir"
        );
    }
    assert_eq!(git(&repo, &["remote", "get-url", "origin"]), bare);

    // A user name in the URL with a token file: the token goes with that user.
    let token_dir = tempfile::tempdir().unwrap();
    let token_file = token_dir.path().join("token");
    std::fs::write(&token_file, password).unwrap();
    let mut s = settings(
        &format!("http://deploy@127.0.0.1:{port}/up"),
        branch("main"),
    );
    s.token_file = Some(token_file);
    let state = tempfile::tempdir().unwrap();
    let mut src = GitSource::open(state.path(), &s).unwrap();
    assert_eq!(src.fetch().unwrap().commit, c2);
    assert_eq!(
        files_containing(state.path(), "deploy@"),
        Vec::<PathBuf>::new()
    );
}

// ---------- checkout, keep ----------

fn state_with(up: &Upstream) -> (TempDir, GitSource) {
    let state = tempfile::tempdir().unwrap();
    let src = GitSource::open(state.path(), &settings(&up.file_url(), branch("main"))).unwrap();
    (state, src)
}

fn read(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok()
}

#[test]
fn checkout_replaces_tracked_keeps_untracked_and_detaches() {
    let up = Upstream::new();
    let c1 = up.commit(
        &[
            ("compose.yaml", Some("v1")),
            ("conf/app.conf", Some("conf v1")),
            ("old/only.txt", Some("old")),
        ],
        "one",
    );
    let (state, mut src) = state_with(&up);
    let wd = state.path().join("repo");
    assert_eq!(src.fetch().unwrap().commit, c1);
    src.checkout(&c1).unwrap();
    assert_eq!(read(&wd.join("compose.yaml")).as_deref(), Some("v1"));

    // Containers write data into untracked places; someone edits a tracked file by hand.
    std::fs::create_dir_all(wd.join("data/db")).unwrap();
    std::fs::write(wd.join("data/db/file"), "precious").unwrap();
    std::fs::write(wd.join("old/cache.bin"), "untracked in a tracked dir").unwrap();
    std::fs::write(wd.join("conf/app.conf"), "hand edit").unwrap();
    std::fs::write(wd.join("compose.yaml"), "hand edit too").unwrap();

    let c2 = up.commit(
        &[
            ("compose.yaml", Some("v2")),
            ("old", None),
            ("new/n.txt", Some("new")),
        ],
        "two",
    );
    assert_eq!(src.fetch().unwrap().commit, c2);
    src.checkout(&c2).unwrap();
    assert_eq!(read(&wd.join("compose.yaml")).as_deref(), Some("v2"));
    assert_eq!(
        read(&wd.join("conf/app.conf")).as_deref(),
        Some("conf v1"),
        "hand edit reset"
    );
    assert_eq!(read(&wd.join("new/n.txt")).as_deref(), Some("new"));
    assert!(
        !wd.join("old/only.txt").exists(),
        "tracked file deleted in the commit"
    );
    assert_eq!(
        read(&wd.join("old/cache.bin")).as_deref(),
        Some("untracked in a tracked dir")
    );
    assert_eq!(read(&wd.join("data/db/file")).as_deref(), Some("precious"));
    assert_eq!(git(&wd, &["rev-parse", "HEAD"]), c2);
    assert!(
        !git_ok(&wd, &["symbolic-ref", "-q", "HEAD"]),
        "HEAD is detached"
    );
    assert_eq!(
        git(&wd, &["status", "--porcelain", "--untracked-files=no"]),
        ""
    );

    // Rollback to the older revision, after a fresh open of the existing clone.
    drop(src);
    let src = GitSource::open(state.path(), &settings(&up.file_url(), branch("main"))).unwrap();
    src.checkout(&c1).unwrap();
    assert_eq!(read(&wd.join("compose.yaml")).as_deref(), Some("v1"));
    assert_eq!(read(&wd.join("old/only.txt")).as_deref(), Some("old"));
    assert!(!wd.join("new/n.txt").exists());
    assert_eq!(read(&wd.join("data/db/file")).as_deref(), Some("precious"));
    assert_eq!(git(&wd, &["rev-parse", "HEAD"]), c1);
    // Same commit again: idempotent, resets hand edits.
    std::fs::write(wd.join("compose.yaml"), "edit").unwrap();
    src.checkout(&c1).unwrap();
    assert_eq!(read(&wd.join("compose.yaml")).as_deref(), Some("v1"));
}

#[test]
fn checkout_between_unrelated_histories_and_symlinks() {
    let up = Upstream::new();
    let c1 = up.commit(&[("a/x", Some("x")), ("b", Some("b"))], "one");
    std::os::unix::fs::symlink("a/x", up.path().join("link")).unwrap();
    let c1l = up.commit(&[], "link");
    up.git(&["checkout", "-q", "--orphan", "other"]);
    up.git(&["rm", "-q", "-rf", "."]);
    let c2 = up.commit(&[("a", Some("now a file")), ("z", Some("z"))], "unrelated");
    let (state, mut src) = state_with(&up);
    let wd = state.path().join("repo");
    let mut s = settings(&up.file_url(), branch("main"));
    assert_eq!(src.fetch().unwrap().commit, c1l);
    s.reference = branch("other");
    let mut src2 = GitSource::open(state.path(), &s).unwrap();
    assert_eq!(src2.fetch().unwrap().commit, c2);
    src.checkout(&c1l).unwrap();
    assert_eq!(
        std::fs::read_link(wd.join("link")).unwrap(),
        PathBuf::from("a/x")
    );
    src.checkout(&c2).unwrap();
    assert_eq!(read(&wd.join("a")).as_deref(), Some("now a file"));
    assert!(!wd.join("b").exists() && !wd.join("link").exists());
    src.checkout(&c1).unwrap();
    assert_eq!(read(&wd.join("a/x")).as_deref(), Some("x"));
}

#[test]
fn checkout_never_overwrites_untracked_files() {
    let up = Upstream::new();
    let c1 = up.commit(
        &[("compose.yaml", Some("v1")), ("conf/a", Some("a"))],
        "one",
    );
    let (state, mut src) = state_with(&up);
    let wd = state.path().join("repo");
    src.fetch().unwrap();
    src.checkout(&c1).unwrap();

    // An untracked file where the next commit puts a file with other content.
    std::fs::create_dir_all(wd.join("data")).unwrap();
    std::fs::write(wd.join("data/state.json"), "container data").unwrap();
    let c2 = up.commit(&[("data/state.json", Some("{}"))], "adds data/state.json");
    src.fetch().unwrap();
    let err = src.checkout(&c2).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, SourceError::Local { .. }), "{msg}");
    assert!(
        msg.contains("data/state.json") && msg.contains("untracked"),
        "{msg}"
    );
    assert_eq!(
        read(&wd.join("data/state.json")).as_deref(),
        Some("container data")
    );
    assert_eq!(git(&wd, &["rev-parse", "HEAD"]), c1, "nothing changed");

    // Same content: nothing is lost, the checkout proceeds.
    std::fs::write(wd.join("data/state.json"), "{}").unwrap();
    src.checkout(&c2).unwrap();
    assert_eq!(git(&wd, &["rev-parse", "HEAD"]), c2);

    // A tracked directory that becomes a file while it holds untracked data.
    std::fs::write(wd.join("conf/runtime.db"), "written by a container").unwrap();
    let c3 = up.commit(&[("conf", None)], "rm conf");
    let c4 = up.commit(&[("conf", Some("now a file"))], "conf is a file");
    src.fetch().unwrap();
    let err = src.checkout(&c4).unwrap_err().to_string();
    assert!(err.contains("conf"), "{err}");
    assert_eq!(
        read(&wd.join("conf/runtime.db")).as_deref(),
        Some("written by a container")
    );
    // Deleting the tracked directory keeps the untracked file in it.
    src.checkout(&c3).unwrap();
    assert!(!wd.join("conf/a").exists());
    assert_eq!(
        read(&wd.join("conf/runtime.db")).as_deref(),
        Some("written by a container")
    );

    // An untracked file where the commit needs a directory.
    std::fs::remove_dir_all(wd.join("conf")).unwrap();
    std::fs::write(wd.join("conf"), "untracked file").unwrap();
    let err = src.checkout(&c1).unwrap_err().to_string();
    assert!(err.contains("conf"), "{err}");
    assert_eq!(read(&wd.join("conf")).as_deref(), Some("untracked file"));
}

#[test]
fn kept_commits_survive_the_remote_and_force_pushes() {
    let up = Upstream::new();
    let c1 = up.commit(&[("f", Some("one"))], "one");
    let (state, mut src) = state_with(&up);
    let wd = state.path().join("repo");
    src.fetch().unwrap();
    src.checkout(&c1).unwrap();
    src.keep(1, &c1).unwrap();
    let c2 = up.commit(&[("f", Some("two"))], "two");
    src.fetch().unwrap();
    src.checkout(&c2).unwrap();
    src.keep(2, &c2).unwrap();
    assert_eq!(git(&wd, &["rev-parse", "refs/berth/applied/1"]), c1);

    // Force-push an unrelated history, fetch it: the kept commits are still there.
    up.git(&["checkout", "-q", "--orphan", "tmp"]);
    let c3 = up.commit(&[("g", Some("new world"))], "rewritten");
    up.git(&["branch", "-f", "main", &c3]);
    assert_eq!(src.fetch().unwrap().commit, c3);
    src.checkout(&c3).unwrap();

    // The remote disappears: fetch fails clearly, rollback works offline from a fresh open.
    std::fs::remove_dir_all(up.path()).unwrap();
    drop(src);
    let mut src = GitSource::open(state.path(), &settings(&up.file_url(), branch("main"))).unwrap();
    let err = src.fetch().unwrap_err();
    assert!(err.to_string().contains(&up.file_url()), "{err}");
    assert!(src.has_commit(&c1) && src.has_commit(&c2));
    src.checkout(&c1).unwrap();
    assert_eq!(read(&wd.join("f")).as_deref(), Some("one"));
    assert!(!wd.join("g").exists());
    assert_eq!(src.commit_info(&c1).unwrap().summary, "one");
    assert!(git_ok(&wd, &["fsck", "--connectivity-only"]));
}

#[test]
fn missing_commits_are_local_errors() {
    let up = Upstream::new();
    up.commit(&[("f", Some("one"))], "one");
    let (_state, src) = state_with(&up);
    let missing = "0123456789abcdef0123456789abcdef01234567";
    assert!(!src.has_commit(missing));
    for err in [
        src.checkout(missing).unwrap_err(),
        src.keep(1, missing).unwrap_err(),
        src.commit_info(missing).unwrap_err(),
        src.tree(missing).err().unwrap(),
    ] {
        assert!(matches!(err, SourceError::Local { .. }), "{err}");
        assert!(
            err.to_string().contains("not in the local repository"),
            "{err}"
        );
    }
}

// ---------- commit info, tree ----------

#[test]
fn commit_info_has_author_summary_time() {
    let up = Upstream::new();
    let c = {
        std::fs::write(up.path().join("f"), "x").unwrap();
        up.git(&["add", "-A"]);
        let out = git_cmd(&up.path())
            .env("GIT_COMMITTER_DATE", "1700000000 +0000")
            .args(["commit", "-q", "-m", "Deploy web 2.0\n\nLonger text."])
            .output()
            .unwrap();
        assert!(out.status.success());
        up.git(&["rev-parse", "HEAD"])
    };
    let (_state, mut src) = state_with(&up);
    src.fetch().unwrap();
    let info = src.commit_info(&c).unwrap();
    assert_eq!(
        info,
        CommitInfo {
            id: c.clone(),
            author: "Ada Lovelace <ada@example.com>".into(),
            summary: "Deploy web 2.0".into(),
            time: 1_700_000_000,
        }
    );
    assert_eq!(src.commit_info(&c[..9]).unwrap().id, c);
}

#[test]
fn tree_reads_files_dirs_symlinks_and_submodules() {
    let up = Upstream::new();
    up.commit(
        &[
            ("compose.yaml", Some("services: {}\n")),
            ("web/compose.yaml", Some("web")),
            ("web/conf/nginx.conf", Some("conf")),
            ("b-dir/x", Some("x")),
        ],
        "files",
    );
    std::os::unix::fs::symlink("conf/nginx.conf", up.path().join("web/link")).unwrap();
    std::os::unix::fs::symlink("../../etc/passwd", up.path().join("escape")).unwrap();
    let sub = up.commit(&[], "links");
    up.git(&[
        "update-index",
        "--add",
        "--cacheinfo",
        &format!("160000,{sub},vendor/sub"),
    ]);
    up.git(&["commit", "-q", "-m", "submodule"]);
    let c = up.git(&["rev-parse", "HEAD"]);
    let (_state, mut src) = state_with(&up);
    src.fetch().unwrap();
    let t = src.tree(&c).unwrap();
    assert_eq!(t.commit(), c);

    let p = Path::new;
    assert_eq!(
        t.read(p("compose.yaml")).unwrap().unwrap(),
        b"services: {}\n"
    );
    assert_eq!(
        t.read(p("./web/conf/../compose.yaml")).unwrap().unwrap(),
        b"web"
    );
    assert_eq!(t.read(p("nope.yaml")).unwrap(), None);
    assert_eq!(t.read(p("web/nope/x")).unwrap(), None);
    assert!(t.read(p("web")).is_err(), "a directory is not a file");
    let err = t.read(p("web/link")).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("symlink"), "{err}");
    assert_eq!(
        t.read(p("web/link/x")).unwrap(),
        None,
        "symlinks are not followed"
    );
    assert!(t.read(p("../x")).is_err());
    assert!(t.read(p("/etc/passwd")).is_err());

    assert_eq!(t.kind(p(".")).unwrap(), Some(EntryKind::Dir));
    assert_eq!(t.kind(p("")).unwrap(), Some(EntryKind::Dir));
    assert_eq!(t.kind(p("web")).unwrap(), Some(EntryKind::Dir));
    assert_eq!(
        t.kind(p("web/compose.yaml")).unwrap(),
        Some(EntryKind::File)
    );
    assert_eq!(
        t.kind(p("web/link")).unwrap(),
        Some(EntryKind::Symlink(PathBuf::from("conf/nginx.conf")))
    );
    assert_eq!(
        t.kind(p("escape")).unwrap(),
        Some(EntryKind::Symlink(PathBuf::from("../../etc/passwd")))
    );
    assert_eq!(t.kind(p("missing")).unwrap(), None);
    assert_eq!(t.kind(p("vendor/sub")).unwrap(), Some(EntryKind::Dir));

    let names = |dir: &str| -> Vec<(String, EntryKind)> {
        t.list(p(dir))
            .unwrap()
            .into_iter()
            .map(|e| (e.name, e.kind))
            .collect()
    };
    assert_eq!(
        names("."),
        vec![
            ("b-dir".into(), EntryKind::Dir),
            ("compose.yaml".into(), EntryKind::File),
            (
                "escape".into(),
                EntryKind::Symlink(PathBuf::from("../../etc/passwd"))
            ),
            ("vendor".into(), EntryKind::Dir),
            ("web".into(), EntryKind::Dir),
        ]
    );
    assert_eq!(
        names("web"),
        vec![
            ("compose.yaml".into(), EntryKind::File),
            ("conf".into(), EntryKind::Dir),
            (
                "link".into(),
                EntryKind::Symlink(PathBuf::from("conf/nginx.conf"))
            ),
        ]
    );
    assert_eq!(names("vendor"), vec![("sub".into(), EntryKind::Dir)]);
    assert!(names("vendor/sub").is_empty());
    assert!(names("missing").is_empty());
    assert!(names("compose.yaml").is_empty());
    assert!(names("web/link").is_empty());

    // The tree is Send + 'static: made and used in another thread.
    let t = src.tree(&c).unwrap();
    let got = std::thread::spawn(move || t.read(Path::new("web/compose.yaml")).unwrap())
        .join()
        .unwrap();
    assert_eq!(got.unwrap(), b"web");

    // Checking out a commit with a submodule leaves it as an (empty) directory.
    src.checkout(&c).unwrap();
}

// ---------- ssh ----------

/// A loopback `sshd` (Debian's openssh-server), one `sshd -i` per connection on our own listener, that
/// accepts `user_key.pub` for the current user. `None` (test skipped) when sshd is not installed.
struct SshServer {
    dir: TempDir,
    port: u16,
}

impl SshServer {
    fn start() -> Option<Self> {
        let sshd = Path::new("/usr/sbin/sshd");
        if !sshd.exists() {
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
            let st = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", k, "-f"])
                .arg(d.join(k))
                .status()
                .unwrap();
            assert!(st.success());
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
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { break };
                let Ok(out) = stream.try_clone() else {
                    continue;
                };
                let child = Command::new("/usr/sbin/sshd")
                    .arg("-i")
                    .arg("-f")
                    .arg(&config)
                    .arg("-E")
                    .arg(&log)
                    .stdin(Stdio::from(OwnedFd::from(stream)))
                    .stdout(Stdio::from(OwnedFd::from(out)))
                    .stderr(Stdio::null())
                    .spawn();
                if let Ok(mut child) = child {
                    std::thread::spawn(move || child.wait());
                }
            }
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

    // The host presents a key that known_hosts does not list for it.
    let mut wrong_host = s.clone();
    wrong_host.known_hosts = Some(server.known_hosts("other"));
    let state = tempfile::tempdir().unwrap();
    let mut src = GitSource::open(state.path(), &wrong_host).unwrap();
    let err = src.fetch().unwrap_err().to_string();
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
    let mut src = GitSource::open(state.path(), &unlisted).unwrap();
    let err = src.fetch().unwrap_err().to_string();
    assert!(err.contains("is not listed in"), "{err}");

    // No source.known_hosts: libgit2 checks the user's ~/.ssh/known_hosts, which does not list this
    // server; unknown hosts are refused, never trusted on first use.
    let mut default_hosts = s.clone();
    default_hosts.known_hosts = None;
    let mut src = GitSource::open(state.path(), &default_hosts).unwrap();
    let err = src.fetch().unwrap_err().to_string();
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

// ---------- redact, through `url` ----------

#[test]
fn redact_keeps_the_text_as_written_around_the_hidden_part() {
    // Parsed by `url`, but not re-serialised: no added `/`, case kept, trailing punctuation kept.
    assert_eq!(
        redact("see (https://u:p@Host.example)."),
        "see (https://u:***@Host.example)."
    );
    assert_eq!(
        redact("https://u:p@[::1]:8443/x, then"),
        "https://u:***@[::1]:8443/x, then"
    );
    assert_eq!(redact("https://:tok@host/x"), "https://:***@host/x");
    assert_eq!(redact("https://@host/x"), "https://@host/x");
    assert_eq!(
        redact("git+ssh://git:pw@example.com/x"),
        "git+ssh://git:***@example.com/x"
    );
    // A password with `/`, `?` or `#` percent-encoded, as URLs require.
    assert_eq!(
        redact("https://u:a%2Fb%3Fc%23d@host/x"),
        "https://u:***@host/x"
    );
    // The user name `url` reports is kept: a user with a password is not a token.
    assert_eq!(
        redact("https://x-access-token:ghs_1@github.com/o/r"),
        "https://x-access-token:***@github.com/o/r"
    );
}

#[test]
fn redact_hides_user_info_of_words_that_are_not_urls() {
    // Invalid port, invalid host: not URLs, but the user info is still hidden.
    assert_eq!(
        redact("https://u:secret@host:99999/x"),
        "https://***@host:99999/x"
    );
    assert_eq!(redact("https://tok@ho^st/x"), "https://***@ho^st/x");
    assert_eq!(redact("://u:secret@h"), "://***@h");
    assert_eq!(redact("ssh://"), "ssh://");
    assert_eq!(redact("a://"), "a://");
    assert_eq!(
        redact("https://h/login?next=https://u:p@h2/y"),
        "https://h/login?next=https://u:***@h2/y"
    );
}

#[test]
fn redact_never_panics_and_never_shows_a_password() {
    for s in [
        "é://u:secret@h/x",
        "日本://u:secret@h",
        "https://u:secret@日本.example/x",
        "https://u:secret@",
        "://",
        ":///",
        "https://u:secret@h\\x",
        "foo://u:secret@h\\x@y",
        "https://u:secret@h#frag@x",
        "https://h/x?next=https://u:secret@h2/y",
    ] {
        let r = redact(s);
        assert!(!r.contains("secret"), "{s} -> {r}");
    }
}

// ---------- applied refs, retention ----------

#[test]
fn pruning_deletes_only_the_applied_refs_not_needed() {
    let up = Upstream::new();
    let (state, mut src) = state_with(&up);
    let wd = state.path().join("repo");
    let mut commits = Vec::new();
    for i in 1..=5u64 {
        let c = up.commit(&[("f", Some(&i.to_string()))], &format!("c{i}"));
        src.fetch().unwrap();
        src.keep(i, &c).unwrap();
        commits.push(c);
    }
    // Not berth's: a name under the prefix that is not a seq.
    git(&wd, &["update-ref", "refs/berth/applied/mine", &commits[0]]);
    assert_eq!(src.applied_seqs().unwrap(), vec![1, 2, 3, 4, 5]);

    let pruned = src.prune_applied(&|seq| seq >= 3).unwrap();
    assert_eq!(pruned.deleted, vec![1, 2]);
    assert_eq!(pruned.gc.unwrap(), Gc::Done);
    assert_eq!(src.applied_seqs().unwrap(), vec![3, 4, 5]);
    let refs = git(
        &wd,
        &["for-each-ref", "--format=%(refname)", "refs/berth/applied/"],
    );
    assert_eq!(
        refs.lines().collect::<Vec<_>>(),
        [
            "refs/berth/applied/3",
            "refs/berth/applied/4",
            "refs/berth/applied/5",
            "refs/berth/applied/mine"
        ]
    );
    assert!(src
        .prune_applied(&|seq| seq >= 3)
        .unwrap()
        .deleted
        .is_empty());
    // The repository object was reopened after gc and still works.
    src.checkout(&commits[2]).unwrap();
    assert_eq!(read(&wd.join("f")).as_deref(), Some("3"));
}

#[test]
fn git_gc_reclaims_the_commits_of_pruned_revisions() {
    // Over the network the clone is shallow: an old commit stays only while an applied ref names it.
    let up = Upstream::new();
    let port = git_daemon(&up.base());
    let url = format!("git://127.0.0.1:{port}/up");
    let state = tempfile::tempdir().unwrap();
    let wd = state.path().join("repo");
    let mut src = GitSource::open(state.path(), &settings(&url, branch("main"))).unwrap();
    let mut commits = Vec::new();
    for i in 1..=5u64 {
        let c = up.commit(&[("f", Some(&format!("content {i}")))], &format!("c{i}"));
        assert_eq!(src.fetch().unwrap().commit, c);
        src.checkout(&c).unwrap();
        src.keep(i, &c).unwrap();
        commits.push(c);
    }
    // Git's own policy decides; here: gc at once, and nothing unreachable is kept for later.
    for (k, v) in [
        ("gc.autoPackLimit", "1"),
        ("gc.pruneExpire", "now"),
        ("gc.reflogExpire", "now"),
        ("gc.reflogExpireUnreachable", "now"),
    ] {
        git(&wd, &["config", k, v]);
    }
    let packs = || {
        std::fs::read_dir(wd.join(".git/objects/pack"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "pack")
            })
            .count()
    };
    assert!(packs() > 1, "one pack per fetch");

    // Every ref still needed: gc repacks, and keeps every applied commit.
    let pruned = src.prune_applied(&|_| true).unwrap();
    assert!(pruned.deleted.is_empty());
    assert_eq!(pruned.gc.unwrap(), Gc::Done);
    assert_eq!(packs(), 1);
    for c in &commits {
        assert!(git_ok(&wd, &["cat-file", "-e", c]), "{c} was kept");
    }

    // A new revision (a new pack), and revisions 1-3 pruned: their commits go, the others stay whole.
    let c6 = up.commit(&[("f", Some("content 6"))], "c6");
    src.fetch().unwrap();
    src.checkout(&c6).unwrap();
    src.keep(6, &c6).unwrap();
    commits.push(c6);
    assert_eq!(packs(), 2);
    let pruned = src.prune_applied(&|seq| seq >= 4).unwrap();
    assert_eq!(pruned.deleted, vec![1, 2, 3]);
    assert_eq!(pruned.gc.unwrap(), Gc::Done);
    for c in &commits[..3] {
        assert!(!git_ok(&wd, &["cat-file", "-e", c]), "{c} was reclaimed");
        assert!(!src.has_commit(c));
    }
    for c in &commits[3..] {
        assert!(src.has_commit(c));
    }
    assert!(git_ok(&wd, &["fsck", "--connectivity-only"]));
    src.checkout(&commits[3]).unwrap();
    assert_eq!(read(&wd.join("f")).as_deref(), Some("content 4"));
}

/// `source.verify` in tag mode over a shallow network fetch: the tag object comes with it, and a tag
/// re-made (now signed) on a commit already here is fetched again, so its new signature is what counts.
#[test]
fn signed_tags_are_fetched_shallow_and_verified() {
    use super::verify::{VerifyError, VerifyMode, VerifySettings};
    let up = Upstream::new();
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("k");
    let keygen = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "k", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(keygen.success());
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let allowed = keys.path().join("allowed_signers");
    std::fs::write(&allowed, format!("ops@example.com {public}")).unwrap();
    let a = up.commit(&[("f", Some("a"))], "a");
    up.git(&["tag", "-a", "-m", "unsigned", "v1"]);
    up.commit(&[("f", Some("b"))], "b");

    let port = git_daemon(&up.base());
    let mut s = settings(
        &format!("git://127.0.0.1:{port}/up"),
        GitRef::Tag("v1".into()),
    );
    s.verify = VerifySettings {
        mode: VerifyMode::Tag,
        allowed_signers: Some(allowed),
        keyring: None,
    };
    let state = tempfile::tempdir().unwrap();
    let mut src = GitSource::open(state.path(), &s).unwrap();
    let now = jiff::Timestamp::now();
    assert_eq!(src.fetch().unwrap().commit, a);
    assert!(src.repo.is_shallow(), "fetched shallow");
    let e = src.verify(&a, now).unwrap_err();
    assert!(matches!(e, VerifyError::Unsigned { .. }), "{e}");

    let signing = format!("user.signingkey={}", key.display());
    up.git(&[
        "-c",
        "gpg.format=ssh",
        "-c",
        &signing,
        "tag",
        "-f",
        "-s",
        "-m",
        "signed",
        "v1",
        &a,
    ]);
    let o = src.fetch().unwrap();
    assert_eq!(
        o,
        FetchOutcome {
            commit: a.clone(),
            fetched: true
        }
    );
    let signer = src.verify(&a, now).unwrap().unwrap();
    assert_eq!(signer.principal, "ops@example.com");
    assert_eq!(signer.tag.as_deref(), Some("v1"));
    assert!(!src.fetch().unwrap().fetched, "nothing new the next time");
}
