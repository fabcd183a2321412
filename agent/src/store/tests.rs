use super::*;
use crate::model::DesiredState;

fn rev(seq: u64, outcome: Outcome) -> Revision {
    Revision {
        outcome,
        desired: Some(DesiredState::default()),
        ..Revision::for_test(seq)
    }
}

#[test]
fn warnings_are_kept_and_records_without_them_load() {
    let mut r = rev(1, Outcome::Applied);
    let old = serde_json::to_string(&r).unwrap();
    assert!(!old.contains("warnings"), "none written when empty: {old}");
    let loaded: Revision = serde_json::from_str(&old).unwrap();
    assert!(loaded.warnings.is_empty());
    r.warnings = vec!["compose.yaml:7: stack s, service a: deploy.placement ignored".into()];
    let back: Revision = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
    assert_eq!(back.warnings, r.warnings);
}

#[test]
fn records_and_pointers_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    {
        let s = Store::open(&path).unwrap();
        assert_eq!(s.next_seq().unwrap(), 1);
        s.put(&rev(1, Outcome::Applied), true, true).unwrap();
        s.put(&rev(2, Outcome::Failed), true, false).unwrap();
        s.set_pinned(Some(1)).unwrap();
    }
    let s = reopen(&path);
    assert_eq!(s.next_seq().unwrap(), 3);
    assert_eq!(
        s.pointers().unwrap(),
        Pointers {
            current: Some(2),
            last_good: Some(1),
            pinned: Some(1)
        }
    );
    let list = s.list(10).unwrap();
    assert_eq!(list.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![2, 1]);
    assert_eq!(s.last_good_before(2).unwrap().unwrap().seq, 1);
    assert!(s.last_good_before(1).unwrap().is_none());
    s.set_pinned(None).unwrap();
    assert_eq!(s.pointers().unwrap().pinned, None);
}

/// Open the store a handle of this process just dropped: sled's flusher thread may hold the file lock a
/// moment longer (an agent restarting is a new process and never sees this), so poll until it is free.
fn reopen(path: &Path) -> Store {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match Store::open(path) {
            Ok(s) => return s,
            Err(e)
                if e.message.contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10))
            }
            Err(e) => panic!("reopen {}: {e}", path.display()),
        }
    }
}

/// `n` good revisions with distinct commits; the last is current and last good.
fn filled(path: &Path, n: u64) -> Store {
    let s = Store::open(path).unwrap();
    for seq in 1..=n {
        s.put(&rev(seq, Outcome::Applied), true, true).unwrap();
    }
    s
}

fn seqs(s: &Store) -> Vec<u64> {
    let mut v: Vec<u64> = s.list(usize::MAX).unwrap().iter().map(|r| r.seq).collect();
    v.reverse();
    v
}

#[test]
fn prune_keeps_the_newest_window() {
    let dir = tempfile::tempdir().unwrap();
    let s = filled(&dir.path().join("store"), 30);
    assert_eq!(s.prune(10, &[]).unwrap(), (1..=20).collect::<Vec<_>>());
    assert_eq!(seqs(&s), (21..=30).collect::<Vec<_>>());
    assert_eq!(
        s.prune(10, &[]).unwrap(),
        Vec::<u64>::new(),
        "nothing more to drop"
    );
    assert_eq!(s.next_seq().unwrap(), 31);
    // A window larger than the history drops nothing.
    assert!(s.prune(200, &[]).unwrap().is_empty());
}

#[test]
fn prune_never_drops_what_a_pointer_or_the_caller_names() {
    let dir = tempfile::tempdir().unwrap();
    let s = filled(&dir.path().join("store"), 5);
    for seq in 6..=30 {
        s.put(&rev(seq, Outcome::Failed), true, false).unwrap();
    }
    s.set_pinned(Some(2)).unwrap();
    let removed = s.prune(10, &[4]).unwrap();
    assert!(!removed.contains(&2) && !removed.contains(&4) && !removed.contains(&5));
    let mut want = vec![2, 4, 5];
    want.extend(21..=30);
    assert_eq!(seqs(&s), want);
    assert_eq!(
        s.pointers().unwrap(),
        Pointers {
            current: Some(30),
            last_good: Some(5),
            pinned: Some(2)
        }
    );
    for seq in [2, 5, 30] {
        assert!(s.get(seq).unwrap().is_some(), "revision {seq} is named");
    }
}

#[test]
fn prune_keeps_the_default_rollback_target_outside_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let s = filled(&dir.path().join("store"), 1);
    // A month of commits that did not render, then a good one: `berth rollback` goes to 1.
    for seq in 2..=29 {
        let mut r = rev(seq, Outcome::Failed);
        r.desired = None;
        s.put(&r, false, false).unwrap();
    }
    s.put(&rev(30, Outcome::Applied), true, true).unwrap();
    assert_eq!(s.default_rollback().unwrap().unwrap().seq, 1);
    s.prune(10, &[]).unwrap();
    let mut want = vec![1];
    want.extend(21..=30);
    assert_eq!(seqs(&s), want);
    assert_eq!(s.default_rollback().unwrap().unwrap().seq, 1);
}

#[test]
fn the_rollback_target_steps_past_records_of_the_current_commit() {
    let dir = tempfile::tempdir().unwrap();
    let s = filled(&dir.path().join("store"), 3);
    // 4..=30 re-apply commit 3 (rollback records, re-applies): the target is 2, a different commit.
    for seq in 4..=30 {
        let mut r = rev(seq, Outcome::Applied);
        r.commit = rev(3, Outcome::Applied).commit;
        r.rollback = true;
        s.put(&r, true, true).unwrap();
    }
    assert_eq!(s.default_rollback().unwrap().unwrap().seq, 2);
    let removed = s.prune(10, &[]).unwrap();
    assert_eq!(
        removed,
        [1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]
    );
    assert_eq!(s.default_rollback().unwrap().unwrap().seq, 2);
}

#[test]
fn pruned_history_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    {
        let s = filled(&path, 40);
        s.set_pinned(Some(7)).unwrap();
        s.prune(10, &[]).unwrap();
    }
    let s = reopen(&path);
    let mut want = vec![7];
    want.extend(31..=40);
    assert_eq!(seqs(&s), want);
    assert_eq!(s.next_seq().unwrap(), 41, "seqs are never given out twice");
    assert_eq!(s.pointers().unwrap().pinned, Some(7));
    assert_eq!(s.get(40).unwrap().unwrap(), rev(40, Outcome::Applied));
    // Even a window of 0 keeps the newest record, which `next_seq` counts from.
    s.set_pinned(None).unwrap();
    s.put(&rev(41, Outcome::Failed), false, false).unwrap();
    assert_eq!(s.prune(0, &[]).unwrap().len(), 9);
    assert_eq!(seqs(&s), vec![39, 40, 41]);
    assert_eq!(s.next_seq().unwrap(), 42);
}

#[test]
fn applied_refs_are_needed_while_their_record_is_or_the_seq_is_unused() {
    let dir = tempfile::tempdir().unwrap();
    let s = filled(&dir.path().join("store"), 30);
    s.prune(10, &[]).unwrap();
    assert!(!s.may_need(5));
    assert!(s.may_need(25));
    assert!(s.may_need(31), "not given out yet");
    assert!(s.may_need(1000));
}

#[test]
fn a_store_in_use_by_another_agent_is_not_moved_aside() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let first = Store::open(&path).unwrap();
    first.put(&rev(1, Outcome::Applied), true, true).unwrap();
    // sled's lock is per process (fcntl); a second process is what an operator would start by mistake.
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args([
            "--exact",
            "store::tests::second_process_open",
            "--nocapture",
            "--ignored",
        ])
        .env("BERTH_TEST_STORE", &path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("SECOND-OPEN-REFUSED"), "{text}");
    assert!(!std::fs::read_dir(dir.path()).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains("broken")));
    assert_eq!(first.list(10).unwrap().len(), 1);
}

#[test]
#[ignore = "run by a_store_in_use_by_another_agent_is_not_moved_aside in a second process"]
fn second_process_open() {
    let Some(path) = std::env::var_os("BERTH_TEST_STORE") else {
        return;
    };
    match Store::open(Path::new(&path)) {
        Ok(_) => println!("SECOND-OPEN-SUCCEEDED"),
        Err(e) => println!("SECOND-OPEN-REFUSED: {e}"),
    }
}

#[test]
fn unreadable_store_is_moved_aside_not_wiped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    std::fs::create_dir_all(&path).unwrap();
    // sled keeps its config in `conf`; garbage there makes the store unreadable.
    std::fs::write(path.join("conf"), b"\xff\xfe garbage").unwrap();
    std::fs::write(path.join("db"), b"not a sled database at all, definitely").unwrap();
    let s = Store::open(&path).unwrap();
    assert_eq!(s.next_seq().unwrap(), 1);
    let aside: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("store.broken-"))
        .collect();
    assert_eq!(
        aside.len(),
        1,
        "the broken store is kept beside the new one"
    );
    let kept = dir.path().join(&aside[0]).join("db");
    assert_eq!(
        std::fs::read(kept).unwrap(),
        b"not a sled database at all, definitely"
    );
}
