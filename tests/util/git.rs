//! Git: a bare "remote" repository and a work clone in a temp directory, driven with the `git` CLI.

use super::files::tempdir;
use super::process::{show, stdout};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A bare "remote" repository and a work clone, both made with the `git` CLI.
pub struct GitRepo {
    _dir: tempfile::TempDir,
    pub bare: PathBuf,
    pub work: PathBuf,
}

fn git_in(dir: &Path, args: &[&str]) -> String {
    let o = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null())
        .output()
        .expect("run git");
    assert!(
        o.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        show(&o)
    );
    stdout(&o).trim().to_string()
}

impl GitRepo {
    pub fn new() -> GitRepo {
        let dir = tempdir("berth-git-");
        let bare = dir.path().join("remote.git");
        let work = dir.path().join("work");
        let repo = GitRepo {
            _dir: dir,
            bare,
            work,
        };
        repo.init_bare();
        std::fs::create_dir_all(&repo.work).unwrap();
        git_in(&repo.work, &["-c", "init.defaultBranch=main", "init", "-q"]);
        git_in(&repo.work, &["config", "user.name", "Berth Test"]);
        git_in(&repo.work, &["config", "user.email", "test@berth.invalid"]);
        git_in(&repo.work, &["config", "commit.gpgsign", "false"]);
        git_in(&repo.work, &["remote", "add", "origin", &repo.url()]);
        repo
    }

    fn init_bare(&self) {
        std::fs::create_dir_all(&self.bare).unwrap();
        git_in(
            &self.bare,
            &["-c", "init.defaultBranch=main", "init", "-q", "--bare"],
        );
    }

    /// `file://` URL of the bare repository.
    pub fn url(&self) -> String {
        format!("file://{}", self.bare.display())
    }

    /// Write a file of the work tree (parents created).
    pub fn write(&self, path: &str, text: &str) -> &Self {
        let p = self.work.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        self
    }

    /// Remove a file or directory of the work tree.
    pub fn remove(&self, path: &str) -> &Self {
        let p = self.work.join(path);
        if p.is_dir() {
            std::fs::remove_dir_all(&p).unwrap();
        } else {
            std::fs::remove_file(&p).unwrap();
        }
        self
    }

    /// Commit everything in the work tree; the full 40-hex id of the new commit.
    pub fn commit(&self, msg: &str) -> String {
        git_in(&self.work, &["add", "-A"]);
        git_in(&self.work, &["commit", "-q", "--allow-empty", "-m", msg]);
        git_in(&self.work, &["rev-parse", "HEAD"])
    }

    /// Push `main` to the bare repository.
    pub fn push(&self) {
        git_in(
            &self.work,
            &["push", "-q", "origin", "HEAD:refs/heads/main"],
        );
    }

    /// Commit and push; the full id of the new commit.
    pub fn commit_push(&self, msg: &str) -> String {
        let c = self.commit(msg);
        self.push();
        c
    }

    /// Delete the remote (`rm -rf` of the bare repository).
    pub fn delete_remote(&self) {
        std::fs::remove_dir_all(&self.bare).unwrap();
    }

    /// A fresh bare repository at the same path, with the work clone's `main` pushed into it.
    pub fn recreate_remote(&self) {
        self.init_bare();
        self.push();
    }
}
