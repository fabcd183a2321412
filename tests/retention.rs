//! History retention with a real agent, a real Git repository and the real engine: after many commits the
//! store, the applied refs and the clone's packs stay bounded by `history.keep`, and the oldest kept
//! revision can still be rolled back to with the remote gone.

use crate::util::*;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Instant;

/// The smallest window the config allows plus ten: the rule is the same as with the default 200.
const KEEP: usize = 20;
/// Commits before the first measurement; the second is after twice as many. Large enough that what N
/// unpruned records would add (N × `PAD`, 6 MB) dwarfs how much sled's size on disk wobbles while the
/// history is bounded (3.5–5.6 MB measured over 300 commits, in 512 KiB segments).
const N: usize = 150;
/// The environment padding of each revision, so the records' number shows in the store's size.
const PAD: usize = 40 * 1024;
/// Besides the window: current, last good, pinned and the default rollback target.
const PROTECTED: usize = 4;

/// Commits that share one container spec: every commit changes the README, every `SPEC_EVERY`th the
/// spec too (a recreate costs more than the rest of a cycle, and any two revisions a window apart differ).
const SPEC_EVERY: usize = 10;

/// One idle service whose `MODE` is `i / SPEC_EVERY`, with `PAD` bytes of environment so the store's
/// records are big enough for their number to show in its size on disk.
fn compose(i: usize) -> String {
    let pad = "p".repeat(PAD);
    format!(
        "services:\n  idle:\n    image: {IMAGE}\n    command: {IDLE}\n    environment:\n      MODE: \"{}\"\n      PAD: \"{pad}\"\n",
        i / SPEC_EVERY
    )
}

fn dir_size(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let md = e.metadata().unwrap();
            if md.is_dir() {
                dir_size(&e.path())
            } else {
                md.len()
            }
        })
        .sum()
}

fn git_out(repo: &Path, args: &[&str]) -> String {
    let o = std::process::Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "git {args:?}: {}", show(&o));
    stdout(&o)
}

/// The seqs of `refs/berth/applied/*` in the agent's clone.
fn applied_refs(agent: &Agent) -> BTreeSet<u64> {
    git_out(
        &agent.state_dir.join("repo"),
        &["for-each-ref", "--format=%(refname)", "refs/berth/applied/"],
    )
    .lines()
    .map(|l| l.trim_start_matches("refs/berth/applied/").parse().unwrap())
    .collect()
}

fn pack_count(agent: &Agent) -> usize {
    std::fs::read_dir(agent.state_dir.join("repo/.git/objects/pack"))
        .unwrap()
        .filter(|e| {
            let p = e.as_ref().unwrap().path();
            p.extension().is_some_and(|x| x == "pack")
        })
        .count()
}

/// `(seq, commit)` of every revision in `berth history`, oldest first.
fn history(agent: &Agent) -> Vec<(u64, String)> {
    let mut h: Vec<(u64, String)> = agent
        .history_json()
        .iter()
        .map(|r| {
            (
                r["seq"].as_u64().unwrap(),
                r["commit"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    h.reverse();
    h
}

/// Push commits `from..to` one after another, each followed by `berth reconcile --wait`. Returns the
/// largest size of the store seen every `SPEC_EVERY` commits over the second half of the run.
fn push_commits(repo: &GitRepo, agent: &Agent, commits: &mut Vec<String>, to: usize) -> u64 {
    let from = commits.len();
    let mut largest = 0;
    for i in from..to {
        repo.write("compose.yaml", &compose(i));
        repo.write("README.md", &format!("revision {i}\n"));
        commits.push(repo.commit_push(&format!("revision {i}")));
        agent.reconcile_ok();
        if (i + 1 - from) * 2 >= to - from && (i + 1) % SPEC_EVERY == 0 {
            largest = largest.max(dir_size(&agent.state_dir.join("store")));
        }
    }
    largest
}

/// History, refs and packs bounded; the history is the newest revisions plus the protected ones.
fn assert_bounded(agent: &Agent, commits: &[String]) -> Vec<(u64, String)> {
    let h = history(agent);
    assert!(
        h.len() >= KEEP && h.len() <= KEEP + PROTECTED,
        "{} revisions in history: {h:?}",
        h.len()
    );
    let newest: Vec<&String> = commits.iter().rev().take(KEEP).collect();
    let kept: Vec<&String> = h.iter().rev().take(KEEP).map(|(_, c)| c).collect();
    assert_eq!(kept, newest, "the window is the newest {KEEP} commits");
    let seqs: BTreeSet<u64> = h.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        applied_refs(agent),
        seqs,
        "one applied ref per revision kept"
    );
    // `git gc --auto` repacks once Git's gc.autoPackLimit (50) is passed: one pack per fetch otherwise.
    let packs = pack_count(agent);
    assert!(packs <= 52, "{packs} packs in the clone");
    h
}

#[test]
fn history_stays_bounded_and_the_oldest_kept_revision_rolls_back_offline() {
    let repo = GitRepo::new();
    let mut commits = Vec::new();
    repo.write("compose.yaml", &compose(0));
    commits.push(repo.commit_push("revision 0"));
    let mut agent = Agent::new("retention", AgentOptions::new(&repo.url()));
    let mut config = std::fs::read_to_string(&agent.config).unwrap();
    config.push_str(&format!("history:\n  keep: {KEEP}\n"));
    std::fs::write(&agent.config, config).unwrap();
    agent.spawn();
    agent.reconcile_ok();

    let started = Instant::now();
    let largest_n = push_commits(&repo, &agent, &mut commits, N);
    let first = started.elapsed();
    assert_bounded(&agent, &commits);

    let largest_2n = push_commits(&repo, &agent, &mut commits, 2 * N);
    let h = assert_bounded(&agent, &commits);
    eprintln!(
        "retention: {N} commits in {first:?}, {} in {:?}; store at most {largest_n} bytes over commits {}..{N}, {largest_2n} over {}..{}; {} packs",
        2 * N,
        started.elapsed(),
        N / 2,
        3 * N / 2,
        2 * N,
        pack_count(&agent)
    );
    // The second N records, unpruned, would add about N × PAD bytes to the store (measured with pruning
    // off: at most 9.6 MB over commits 75..150, 16.0 MB over 225..300, which fails here). Pruned, sled reuses the space of deleted records and its size only
    // wobbles by a few 512 KiB segments, so it stays well under half that.
    let bound = largest_n + (N * PAD / 2) as u64;
    assert!(
        largest_2n <= bound,
        "store reached {largest_2n} bytes over commits {}..{}, more than {bound} (largest {largest_n} over {}..{N})",
        3 * N / 2,
        2 * N,
        N / 2
    );
    assert!(agent.log_text().contains("history pruned"));

    // The oldest revision kept, with the remote gone: the box runs its spec again and stays pinned there.
    let (oldest, commit) = h[0].clone();
    let index = commits.iter().position(|c| *c == commit).unwrap();
    assert_eq!(index, 2 * N - KEEP, "{oldest} is the oldest of the window");
    let mode = index / SPEC_EVERY;
    assert_ne!(mode, (2 * N - 1) / SPEC_EVERY, "the current spec differs");
    repo.delete_remote();
    let o = agent.cli(&["rollback", &oldest.to_string()]);
    assert!(o.status.success(), "berth rollback {oldest}: {}", show(&o));
    let st = agent.status_json();
    assert_eq!(
        str_field(&st, "applied_commit"),
        Some(commit.as_str()),
        "{st:#}"
    );
    assert_eq!(st["pinned_seq"].as_u64(), Some(oldest), "{st:#}");
    let idle = agent.container("idle");
    wait_until(TIMEOUT, "the rolled-back container running", || {
        is_running(&idle)
    });
    assert!(
        container_env(&idle).contains(&format!("MODE={mode}")),
        "{:?}",
        container_env(&idle)
            .iter()
            .filter(|e| e.starts_with("MODE"))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        container_labels(&idle).get("io.berth.revision"),
        Some(&commit)
    );

    // The rollback record moved the window; the pinned revision stays, with its ref.
    let h = history(&agent);
    assert!(h.len() <= KEEP + PROTECTED, "{h:?}");
    assert!(
        h.iter().any(|(s, _)| *s == oldest),
        "pinned {oldest}: {h:?}"
    );
    assert!(applied_refs(&agent).contains(&oldest));
    assert_eq!(
        applied_refs(&agent),
        h.iter().map(|(s, _)| *s).collect::<BTreeSet<_>>()
    );
}
