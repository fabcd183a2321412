//! Checkout of fetched commits into the working tree (tracked files reset, untracked data never lost),
//! commits kept by applied refs, commit info, and the tree `render/` reads.

use super::*;
use crate::render::{EntryKind, Tree};

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
    let src = open(state.path(), &up.file_url(), branch("main"));
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
    assert_eq!(src.fetch().unwrap().commit, c1l);
    let mut src2 = open(state.path(), &up.file_url(), branch("other"));
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
    let mut src = open(state.path(), &up.file_url(), branch("main"));
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

    // The listing of `dir` as `ls -F` would put it: `name/` a directory, `name -> target` a symlink.
    let ls = |dir: &str| -> String {
        let entries: Vec<String> = t
            .list(p(dir))
            .unwrap()
            .into_iter()
            .map(|e| match e.kind {
                EntryKind::File => e.name,
                EntryKind::Dir => format!("{}/", e.name),
                EntryKind::Symlink(to) => format!("{} -> {}", e.name, to.display()),
            })
            .collect();
        entries.join(", ")
    };
    assert_eq!(
        ls("."),
        "b-dir/, compose.yaml, escape -> ../../etc/passwd, vendor/, web/"
    );
    assert_eq!(ls("web"), "compose.yaml, conf/, link -> conf/nginx.conf");
    assert_eq!(ls("vendor"), "sub/");
    for empty in ["vendor/sub", "missing", "compose.yaml", "web/link"] {
        assert_eq!(ls(empty), "", "{empty}");
    }

    // The tree is Send + 'static: made and used in another thread.
    let t = src.tree(&c).unwrap();
    let got = std::thread::spawn(move || t.read(Path::new("web/compose.yaml")).unwrap())
        .join()
        .unwrap();
    assert_eq!(got.unwrap(), b"web");

    // Checking out a commit with a submodule leaves it as an (empty) directory.
    src.checkout(&c).unwrap();
}
