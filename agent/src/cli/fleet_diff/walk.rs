//! Rendering every box of a fleet at two commits, on every core: each worker opens the repository itself
//! and takes the next box. A box whose facts are the same at both commits, and for which every question
//! render asked the FROM tree (read, kind, list of a path) gets the same answer from the TO tree, is proven
//! unchanged and rendered once: render is a function of its options and of those answers, so equal
//! answers give an equal result.

use crate::cli::render::fleet::render_box_with;
use crate::model::DesiredState;
use crate::render::{Entry, EntryKind, RenderError, Tree};
use crate::source::GitTree;
use git2::{Oid, Repository};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A box's facts at one commit, or why they cannot be used (`None` on the job: not a box there).
pub type Facts = Result<BTreeMap<String, String>, RenderError>;

/// One box to render.
pub struct Job {
    pub path: PathBuf,
    pub from: Option<Facts>,
    pub to: Option<Facts>,
}

/// A box rendered at both commits (`None`: not a box at that commit).
pub struct Rendered {
    pub path: PathBuf,
    pub from: Option<Result<DesiredState, RenderError>>,
    pub to: Option<Result<DesiredState, RenderError>>,
    /// TO was taken from FROM: the box's reads and facts are the same at both commits.
    pub proven_same: bool,
}

/// One commit: its id (for [`GitTree`]) and its tree.
#[derive(Debug, Clone, Copy)]
pub struct Commit {
    pub id: Oid,
    pub tree: Oid,
}

/// Render `jobs` at `from` and `to` of the repository at `root`, in order, as checked out at `checkout`
/// (where relative bind mounts point); `shortcut`: skip TO's render of a box proven unchanged.
pub fn render_all(
    root: &Path,
    checkout: &Path,
    from: Commit,
    to: Commit,
    jobs: Vec<Job>,
    shortcut: bool,
) -> Result<Vec<Rendered>, git2::Error> {
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, jobs.len().max(1));
    let next = AtomicUsize::new(0);
    let jobs = &jobs;
    let results: Vec<Result<Vec<(usize, Rendered)>, git2::Error>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                let next = &next;
                s.spawn(move || -> Result<Vec<(usize, Rendered)>, git2::Error> {
                    let open = |c: Commit| -> Result<GitTree, git2::Error> {
                        Ok(GitTree::new(
                            Repository::open(root)?,
                            c.tree,
                            c.id.to_string(),
                        ))
                    };
                    let (from_tree, to_tree) = (open(from)?, open(to)?);
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(job) = jobs.get(i) else { break };
                        done.push((i, one(checkout, &from_tree, &to_tree, job, shortcut)));
                    }
                    Ok(done)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(git2::Error::from_str("a render worker panicked")))
            })
            .collect()
    });
    let mut all = Vec::with_capacity(jobs.len());
    for r in results {
        all.extend(r?);
    }
    all.sort_by_key(|(i, _)| *i);
    Ok(all.into_iter().map(|(_, r)| r).collect())
}

fn one(root: &Path, from: &GitTree, to: &GitTree, job: &Job, shortcut: bool) -> Rendered {
    let mut asked = BTreeSet::new();
    let from_result = job.from.as_ref().map(|facts| match facts {
        Ok(facts) => {
            let rec = Recording::new(from);
            let r = render_box_with(&rec, root, &job.path, facts, None, &Default::default()).0;
            asked = rec.into_asked();
            r
        }
        Err(e) => Err(e.clone()),
    });
    let same_facts = matches!((&job.from, &job.to), (Some(Ok(a)), Some(Ok(b))) if a == b);
    if shortcut && same_facts && same_answers(from, to, &asked) {
        if let Some(r) = &from_result {
            return Rendered {
                path: job.path.clone(),
                to: Some(r.clone()),
                from: from_result,
                proven_same: true,
            };
        }
    }
    let to_result = job.to.as_ref().map(|facts| match facts {
        Ok(facts) => render_box_with(to, root, &job.path, facts, None, &Default::default()).0,
        Err(e) => Err(e.clone()),
    });
    Rendered {
        path: job.path.clone(),
        from: from_result,
        to: to_result,
        proven_same: false,
    }
}

/// A question render asks a [`Tree`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Ask {
    Read,
    Kind,
    List,
}

/// Whether `to` answers every question as `from` does. A read is the same when the entry (mode and blob
/// id) is; a listing when the directory's tree id is, or else the listings are equal; an error proves
/// nothing.
fn same_answers(from: &GitTree, to: &GitTree, asked: &BTreeSet<(Ask, PathBuf)>) -> bool {
    let same_entry =
        |p: &Path| matches!((from.entry_id(p), to.entry_id(p)), (Ok(a), Ok(b)) if a == b);
    !asked.is_empty()
        && asked.iter().all(|(ask, p)| match ask {
            Ask::Read => same_entry(p),
            Ask::Kind => matches!((from.kind(p), to.kind(p)), (Ok(a), Ok(b)) if a == b),
            Ask::List => {
                same_entry(p) || matches!((from.list(p), to.list(p)), (Ok(a), Ok(b)) if a == b)
            }
        })
}

/// A [`Tree`] that remembers every question asked.
struct Recording<'a> {
    inner: &'a dyn Tree,
    asked: RefCell<BTreeSet<(Ask, PathBuf)>>,
}

impl<'a> Recording<'a> {
    fn new(inner: &'a dyn Tree) -> Self {
        Recording {
            inner,
            asked: RefCell::new(BTreeSet::new()),
        }
    }

    fn note(&self, ask: Ask, path: &Path) {
        self.asked.borrow_mut().insert((ask, path.to_path_buf()));
    }

    fn into_asked(self) -> BTreeSet<(Ask, PathBuf)> {
        self.asked.into_inner()
    }
}

impl Tree for Recording<'_> {
    fn read(&self, path: &Path) -> std::io::Result<Option<Vec<u8>>> {
        self.note(Ask::Read, path);
        self.inner.read(path)
    }

    fn kind(&self, path: &Path) -> std::io::Result<Option<EntryKind>> {
        self.note(Ask::Kind, path);
        self.inner.kind(path)
    }

    fn list(&self, path: &Path) -> std::io::Result<Vec<Entry>> {
        self.note(Ask::List, path);
        self.inner.list(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn git(dir: &Path, args: &[&str]) -> String {
        let o = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@t.invalid")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@t.invalid")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap().trim().to_string()
    }

    fn commit(root: &Path, rev: &str) -> Commit {
        let repo = Repository::open(root).unwrap();
        let c = repo.revparse_single(rev).unwrap().peel_to_commit().unwrap();
        Commit {
            id: c.id(),
            tree: c.tree_id(),
        }
    }

    fn write(root: &Path, path: &str, text: &str) {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn job(path: &str) -> Job {
        Job {
            path: path.into(),
            from: Some(Ok(BTreeMap::new())),
            to: Some(Ok(BTreeMap::new())),
        }
    }

    /// Boxes a, b include bases/x; c and e include bases/y; d reads its own .env. Change bases/x and d's
    /// .env, add a stack to e: a, b, d and e are rendered again (and differ), c is proven unchanged,
    /// though the hosts/ directory around it changed. The shortcut's answer is the full render's.
    #[test]
    fn only_boxes_whose_reads_changed_are_rendered_again() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        git(root, &["init", "-q"]);
        let base = |v: &str| {
            format!("services:\n  s:\n    image: busybox\n    environment: {{V: \"{v}\"}}\n")
        };
        write(root, "bases/x/compose.yaml", &base("1"));
        write(root, "bases/y/compose.yaml", &base("1"));
        let include = |b: &str| format!("include:\n  - ../../bases/{b}/compose.yaml\n");
        write(root, "hosts/a/compose.yaml", &include("x"));
        write(root, "hosts/b/compose.yaml", &include("x"));
        write(root, "hosts/c/compose.yaml", &include("y"));
        write(
            root,
            "hosts/d/compose.yaml",
            "services:\n  s:\n    image: busybox\n    environment: {V: \"${V}\"}\n",
        );
        write(root, "hosts/d/.env", "V=1\n");
        write(root, "hosts/e/compose.yaml", &include("y"));
        git(root, &["add", "-A"]);
        git(root, &["commit", "-qm", "one"]);
        write(root, "bases/x/compose.yaml", &base("2"));
        write(root, "hosts/d/.env", "V=2\n");
        write(root, "unrelated.txt", "x");
        // A new stack directory in box e: its listing differs, though no file it read did.
        write(
            root,
            "hosts/e/extra/compose.yaml",
            "services:\n  t:\n    image: busybox\n",
        );
        git(root, &["add", "-A"]);
        git(root, &["commit", "-qm", "two"]);
        let (from, to) = (commit(root, "HEAD~1"), commit(root, "HEAD"));
        let jobs = || {
            ["hosts/a", "hosts/b", "hosts/c", "hosts/d", "hosts/e"]
                .map(job)
                .into()
        };

        let fast = render_all(root, root, from, to, jobs(), true).unwrap();
        let proven: Vec<bool> = fast.iter().map(|r| r.proven_same).collect();
        assert_eq!(proven, [false, false, true, false, false]);
        let full = render_all(root, root, from, to, jobs(), false).unwrap();
        assert!(full.iter().all(|r| !r.proven_same));
        for (f, s) in fast.iter().zip(&full) {
            assert_eq!(f.path, s.path);
            let (ff, ft) = (
                f.from.clone().unwrap().unwrap(),
                f.to.clone().unwrap().unwrap(),
            );
            let (sf, st) = (
                s.from.clone().unwrap().unwrap(),
                s.to.clone().unwrap().unwrap(),
            );
            assert_eq!((ff == ft), (sf == st), "{}", f.path.display());
            assert_eq!(ft, st, "{}", f.path.display());
        }
        assert!(full[2].from == full[2].to);
        for changed in [0, 1, 3, 4] {
            assert!(full[changed].from != full[changed].to, "{changed}");
        }

        // Different facts at the two commits: rendered again, even with the same files.
        let mut j = job("hosts/c");
        j.to = Some(Ok(BTreeMap::from([("site".into(), "x".into())])));
        let r = render_all(root, root, from, to, vec![j], true).unwrap();
        assert!(!r[0].proven_same);
    }
}
