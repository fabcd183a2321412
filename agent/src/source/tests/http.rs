//! HTTP remotes behind Basic auth (`git http-backend`): the token of `source.token_file` with a user
//! name, wrong or missing credentials, and credentials written in the URL, which never reach the clone.

use super::http_server::{git_http_backend, HttpServer};
use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// An upstream repository with one commit, served by `git http-backend` on loopback to the user `deploy`
/// with `password` (the server stops on drop).
struct Served {
    up: Upstream,
    c1: String,
    port: u16,
    /// Requests refused for want of the right credentials.
    denied: Arc<AtomicUsize>,
    _server: HttpServer,
}

fn serve_over_http(password: &str) -> Served {
    let up = Upstream::new();
    let c1 = up.commit(&[("a", Some("1"))], "one");
    let (server, denied) = git_http_backend(&up.base(), "deploy", password);
    Served {
        port: server.port,
        up,
        c1,
        denied,
        _server: server,
    }
}

#[test]
fn http_token_auth() {
    let token = "tok-9f8e7d6c5b4a";
    let srv = serve_over_http(token);
    let (up, c1, port, denied) = (&srv.up, srv.c1.clone(), srv.port, &srv.denied);
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
    assert_fetch(&mut src, &c1, true);
    assert_fetch(&mut src, &c1, false);
    assert_eq!(src.fetch_count(), 1);
    let c2 = up.commit(&[("a", Some("2"))], "two");
    assert_fetch(&mut src, &c2, true);

    // Every failure below is one fetch from a fresh open of the second state dir.
    let state = tempfile::tempdir().unwrap();
    let fetch_err = |s: &SourceSettings| {
        let mut src = GitSource::open(state.path(), s).unwrap();
        src.fetch().unwrap_err()
    };

    // A wrong token: bounded attempts, a clear error, no token in it.
    let wrong = "wrong-token-0123456789";
    std::fs::write(&token_file, wrong).unwrap();
    let before = denied.load(Ordering::SeqCst);
    let err = fetch_err(&s);
    let msg = format!("{err} {err:?}");
    let attempts = denied.load(Ordering::SeqCst) - before;
    assert!(msg.contains("authentication failed"), "{msg}");
    assert!(!msg.contains(wrong) && !msg.contains(token), "{msg}");
    assert!((2..=4).contains(&attempts), "{attempts} requests denied");

    // The default user name is not the one the server wants.
    std::fs::write(&token_file, token).unwrap();
    let mut s2 = s.clone();
    s2.username = None;
    assert!(fetch_err(&s2).to_string().contains("authentication failed"));

    // No token at all.
    let mut s3 = s.clone();
    s3.token_file = None;
    let err = fetch_err(&s3).to_string();
    assert!(err.contains("token_file"), "{err}");

    // An unreadable token file.
    let mut s4 = s.clone();
    s4.token_file = Some(secrets.path().join("missing"));
    let err = fetch_err(&s4).to_string();
    assert!(err.contains("cannot read source.token_file"), "{err}");

    // Credentials in the URL itself never show.
    let bad_url = format!("http://deploy:{wrong}@127.0.0.1:{port}/up");
    let err = fetch_err(&settings(&bad_url, branch("main")));
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
    let password = "pw-Sekr3t-77a1";
    let srv = serve_over_http(password);
    let (up, c1, port) = (&srv.up, srv.c1.clone(), srv.port);
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

    let mut src = open(state.path(), &url, branch("main"));
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
