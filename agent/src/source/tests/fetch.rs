//! `GitSource::open` of a state dir, and `fetch` of branches, tags and pinned commits over file://,
//! plain paths and `git daemon` (shallow): what is downloaded when, refs that are not there, and remotes
//! that refuse connections or never answer.

use super::*;
use std::time::Instant;

#[test]
fn open_initialises_then_reopens_and_follows_url_changes() {
    let up = Upstream::new();
    up.commit(&[("a", Some("1"))], "one");
    let state = tempfile::tempdir().unwrap();
    let src = open(state.path(), &up.file_url(), branch("main"));
    assert_eq!(src.workdir(), state.path().join("repo"));
    assert!(state.path().join("repo/.git").is_dir());
    drop(src);
    let other = format!("{}/", up.path().display());
    let _src = open(state.path(), &other, branch("main"));
    assert_eq!(
        git(&state.path().join("repo"), &["remote", "get-url", "origin"]),
        other
    );
}

#[test]
fn open_refuses_a_directory_that_is_not_a_repository_and_deletes_nothing() {
    let open_err = |state: &Path| {
        GitSource::open(state, &settings("/nonexistent", branch("main")))
            .err()
            .expect("not a usable repository")
    };
    let state = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(state.path().join("repo")).unwrap();
    std::fs::write(state.path().join("repo/precious"), "data").unwrap();
    let err = open_err(state.path());
    let msg = err.to_string();
    assert!(matches!(err, SourceError::Local { .. }), "{msg}");
    assert!(msg.contains("not a Git repository"), "{msg}");
    assert_eq!(read(&state.path().join("repo/precious")).unwrap(), "data");

    // A corrupt .git is reported, not replaced.
    let state = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(state.path().join("repo/.git")).unwrap();
    std::fs::write(state.path().join("repo/.git/HEAD"), "garbage").unwrap();
    let err = open_err(state.path());
    assert!(
        err.to_string().contains("not a usable Git repository"),
        "{err}"
    );
    assert_eq!(
        read(&state.path().join("repo/.git/HEAD")).unwrap(),
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
    let (state, mut src) = state_with(&up);
    src.fetch().unwrap();
    drop(src);
    let gitdir = state.path().join("repo/.git");
    std::fs::write(gitdir.join("index.lock"), "").unwrap();
    std::fs::write(gitdir.join("refs/remotes/origin/main.lock"), "").unwrap();
    let src = open(state.path(), &up.file_url(), branch("main"));
    src.checkout(&c1).unwrap();
    src.keep(1, &c1).unwrap();
    assert!(!gitdir.join("index.lock").exists());
}

/// Follows a branch through `url`; fetch_count moves only when the branch does.
fn follow_branch(url: &str, up: &Upstream) {
    let c1 = up.commit(&[("compose.yaml", Some("services: {}\n"))], "one");
    let state = tempfile::tempdir().unwrap();
    let mut src = open(state.path(), url, branch("main"));
    assert_eq!(src.fetch_count(), 0);
    assert_fetch(&mut src, &c1, true);
    assert_eq!(src.fetch_count(), 1);
    assert!(src.has_commit(&c1));

    // Nothing moved: the remote ref is checked, nothing is fetched.
    assert_fetch(&mut src, &c1, false);
    assert_eq!(src.fetch_count(), 1);

    // It moved: fetched once more.
    let c2 = up.commit(&[("compose.yaml", Some("services: {a: {}}\n"))], "two");
    assert_fetch(&mut src, &c2, true);
    assert_eq!(src.fetch_count(), 2);
    assert!(!src.fetch().unwrap().fetched);
    assert_eq!(src.fetch_count(), 2);

    // Force-pushed back to a commit we already have: no download needed.
    up.git(&["reset", "-q", "--hard", &c1]);
    assert_fetch(&mut src, &c1, false);
    assert_eq!(src.fetch_count(), 2);

    // A fresh open of the existing clone knows what it has.
    drop(src);
    let mut src = open(state.path(), url, branch("main"));
    assert_fetch(&mut src, &c1, false);
    assert_eq!(src.fetch_count(), 0);
}

#[test]
fn branch_over_git_daemon_is_shallow() {
    let up = Upstream::new();
    up.commit(&[("old", Some("0"))], "zero");
    let url = up.daemon_url();
    follow_branch(&url, &up);

    // Depth 1: a fresh clone has the tip only.
    let tip = up.commit(&[("x", Some("x"))], "tip");
    let state = tempfile::tempdir().unwrap();
    let mut src = open(state.path(), &url, branch("main"));
    assert_eq!(src.fetch().unwrap().commit, tip);
    let repo = state.path().join("repo");
    assert_eq!(read(&repo.join(".git/shallow")).unwrap().trim(), tip);
    assert_eq!(git(&repo, &["rev-list", "--count", "--all"]), "1");
}

#[test]
fn missing_branch_and_empty_remote_are_ref_not_found() {
    let up = Upstream::new();
    let state = tempfile::tempdir().unwrap();
    // Empty repository: no refs at all.
    let mut src = open(state.path(), &up.file_url(), branch("main"));
    let err = src.fetch().unwrap_err();
    assert!(matches!(err, SourceError::RefNotFound { .. }), "{err}");
    up.commit(&[("a", Some("1"))], "one");
    let mut src = open(state.path(), &up.file_url(), branch("nope"));
    let err = src.fetch().unwrap_err();
    assert!(matches!(err, SourceError::RefNotFound { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("branch nope") && msg.contains(&up.file_url()),
        "{msg}"
    );
    assert_eq!(src.fetch_count(), 0);
}

fn tag(t: &str) -> GitRef {
    GitRef::Tag(t.into())
}

fn follow_tags(url: &str, up: &Upstream) {
    let a = up.commit(&[("f", Some("a"))], "a");
    up.git(&["tag", "-a", "-m", "release one", "v1"]);
    let b = up.commit(&[("f", Some("b"))], "b");
    up.git(&["tag", "v2"]);
    up.commit(&[("f", Some("c"))], "c");

    let state = tempfile::tempdir().unwrap();
    let mut src = open(state.path(), url, tag("v1"));
    assert_fetch(&mut src, &a, true);
    assert_fetch(&mut src, &a, false);
    assert_eq!(src.fetch_count(), 1);

    let mut src = open(state.path(), url, tag("v2"));
    // libgit2's local transport copies the objects of every ref, so b may already be here.
    let local = remote::is_local(url);
    assert_fetch(&mut src, &b, !local);
    assert!(!src.fetch().unwrap().fetched);

    // The annotated tag is moved to a new commit.
    let d = up.commit(&[("f", Some("d"))], "d");
    up.git(&["tag", "-f", "-a", "-m", "release one again", "v1"]);
    let mut src = open(state.path(), url, tag("v1"));
    assert_fetch(&mut src, &d, true);
    assert!(!src.fetch().unwrap().fetched);

    let mut src = open(state.path(), url, tag("v9"));
    let err = src.fetch().unwrap_err();
    assert!(err.to_string().contains("tag v9 not found"), "{err}");
}

fn pin(id: &str) -> GitRef {
    GitRef::Commit(id.into())
}

fn pinned_commits(url: &str, up: &Upstream) {
    let a = up.commit(&[("f", Some("a"))], "a");
    let b = up.commit(&[("f", Some("b"))], "b");
    let c = up.commit(&[("f", Some("c"))], "c");
    let state = tempfile::tempdir().unwrap();

    // Full id of a commit that is no ref's tip.
    let mut src = open(state.path(), url, pin(&a));
    assert_fetch(&mut src, &a, true);
    assert_fetch(&mut src, &a, false);
    assert_eq!(src.fetch_count(), 1);

    // Abbreviated, upper case.
    let state2 = tempfile::tempdir().unwrap();
    let short_b = b[..7].to_ascii_uppercase();
    let mut src = open(state2.path(), url, pin(&short_b));
    assert_fetch(&mut src, &b, true);

    // Abbreviated tip.
    let state3 = tempfile::tempdir().unwrap();
    let mut src = open(state3.path(), url, pin(&c[..10]));
    assert_fetch(&mut src, &c, true);

    // Present locally: no network at all (the remote is unreachable now).
    let gone = format!("git://127.0.0.1:{}/up", closed_port());
    let mut src = open(state.path(), &gone, pin(&a[..8]));
    assert_fetch(&mut src, &a, false);

    // A commit the remote does not have.
    let state4 = tempfile::tempdir().unwrap();
    let missing = "0123456789abcdef0123456789abcdef01234567";
    let mut src = open(state4.path(), url, pin(missing));
    let err = src.fetch().unwrap_err();
    assert!(matches!(err, SourceError::RefNotFound { .. }), "{err}");
    assert!(err.to_string().contains(missing), "{err}");

    let mut src = open(state4.path(), url, pin("xyz"));
    assert!(src.fetch().is_err());
}

/// One test a row: `scenario` run against a new upstream repository through the URL `transport` gives.
macro_rules! over_transports {
    ($($test:ident: $scenario:ident over $transport:ident;)*) => {$(
        #[test]
        fn $test() {
            let up = Upstream::new();
            $scenario(&up.$transport(), &up);
        }
    )*};
}

over_transports! {
    branch_over_file_url: follow_branch over file_url;
    branch_over_local_path: follow_branch over plain_path;
    tags_over_file_url: follow_tags over file_url;
    tags_over_git_daemon: follow_tags over daemon_url;
    pinned_commits_over_file_url: pinned_commits over file_url;
    pinned_commits_over_git_daemon: pinned_commits over daemon_url;
}

/// A shallow clone pinned to an old commit unshallows; then switching the URL to the local transport
/// (which rewrites the `shallow` file) still leaves history walkable.
#[test]
fn shallow_clone_then_old_pin_then_local_url() {
    let up = Upstream::new();
    let a = up.commit(&[("f", Some("a"))], "a");
    up.commit(&[("f", Some("b"))], "b");
    let c = up.commit(&[("f", Some("c"))], "c");
    let url = up.daemon_url();
    let state = tempfile::tempdir().unwrap();
    let repo = state.path().join("repo");

    let mut src = open(state.path(), &url, branch("main"));
    assert_eq!(src.fetch().unwrap().commit, c);
    src.keep(1, &c).unwrap();
    assert!(repo.join(".git/shallow").exists());

    // Local transport after a shallow fetch: the boundary stays listed.
    let d = up.commit(&[("f", Some("d"))], "d");
    let mut src = open(state.path(), &up.file_url(), branch("main"));
    assert_eq!(src.fetch().unwrap().commit, d);
    assert!(
        git_ok(&repo, &["rev-list", "--all"]),
        "history must stay walkable"
    );
    src.checkout(&c).unwrap();

    // Pinning an old commit over the network unshallows.
    let mut src = open(state.path(), &url, pin(&a));
    assert_fetch(&mut src, &a, true);
    src.checkout(&a).unwrap();
    assert!(git_ok(&repo, &["rev-list", "--all"]));
}

// ---------- remotes that fail ----------

#[test]
fn unreachable_remote_fails_fast_with_the_redacted_url() {
    let state = tempfile::tempdir().unwrap();
    let port = closed_port();
    for url in [
        format!("git://127.0.0.1:{port}/up"),
        format!("http://user:hunter2@127.0.0.1:{port}/up.git"),
    ] {
        let mut src = open(state.path(), &url, branch("main"));
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
