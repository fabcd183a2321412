//! The refs that keep applied commits (`refs/berth/applied/<seq>`), their pruning and `git gc`, and
//! signed tags fetched shallow and verified (`source.verify`).

use super::*;

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
    let url = up.daemon_url();
    let state = tempfile::tempdir().unwrap();
    let wd = state.path().join("repo");
    let mut src = open(state.path(), &url, branch("main"));
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
    ssh_keygen(&key, "k");
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let allowed = keys.path().join("allowed_signers");
    std::fs::write(&allowed, format!("ops@example.com {public}")).unwrap();
    let a = up.commit(&[("f", Some("a"))], "a");
    up.git(&["tag", "-a", "-m", "unsigned", "v1"]);
    up.commit(&[("f", Some("b"))], "b");

    let mut s = settings(&up.daemon_url(), GitRef::Tag("v1".into()));
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
    assert_fetch(&mut src, &a, true);
    let signer = src.verify(&a, now).unwrap().unwrap();
    assert_eq!(signer.principal, "ops@example.com");
    assert_eq!(signer.tag.as_deref(), Some("v1"));
    assert!(!src.fetch().unwrap().fetched, "nothing new the next time");
}
