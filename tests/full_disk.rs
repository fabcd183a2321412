//! A full disk under `state_dir` (a small tmpfs mounted there, then filled): a new commit is not applied,
//! the cycle fails with an error that says the disk is full, the running containers and the recorded
//! history are untouched, and once space is freed the same commit is applied and nothing recorded was lost,
//! across a restart too. Needs root (mount), as CI runs.

use crate::util::*;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs mounted on a directory for the life of the guard (unmounted before the agent's temp dir goes).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let o = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "mount tmpfs on {}: {}",
            dir.display(),
            show(&o)
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Write `path` until the file system refuses (ENOSPC); then smaller and smaller writes fill the rest.
fn fill(path: &Path) {
    let mut f = std::fs::File::create(path).unwrap();
    let mut chunk = 1 << 20;
    while chunk > 0 {
        let buf = vec![0xa5u8; chunk];
        loop {
            match f.write(&buf) {
                Ok(n) if n == buf.len() => {}
                Ok(_) => break,
                Err(e) if e.raw_os_error() == Some(28) => break,
                Err(e) => panic!("filling {}: {e}", path.display()),
            }
        }
        chunk /= 4;
    }
    let _ = f.sync_all();
}

fn compose(mode: &str) -> String {
    format!(
        "services:\n  app:\n    image: {IMAGE}\n    command: {IDLE}\n    environment:\n      MODE: \"{mode}\"\n"
    )
}

#[test]
fn a_full_disk_fails_the_cycle_and_loses_nothing() {
    let repo = GitRepo::new();
    repo.write("compose.yaml", &compose("1"));
    let first = repo.commit_push("one");
    let mut agent = Agent::new("full-disk", AgentOptions::new(&repo.url()));
    let _tmpfs = Tmpfs::mount(&agent.state_dir, "48m");
    agent.spawn();
    agent.reconcile_ok();
    let app = agent.container("app");
    let id = container_id(&app).expect("app created");
    assert_eq!(
        str_field(&agent.status_json(), "applied_commit"),
        Some(first.as_str())
    );

    // The disk fills up; the next commit changes the container.
    let filler = agent.state_dir.join("filler");
    fill(&filler);
    repo.write("compose.yaml", &compose("2"));
    let second = repo.commit_push("two");
    let o = agent.reconcile_wait();
    assert!(
        !o.status.success(),
        "a full disk cannot apply: {}",
        show(&o)
    );
    let said = format!("{}{}", stdout(&o), String::from_utf8_lossy(&o.stderr));
    assert!(
        said.contains("No space left on device") || said.contains("disk full"),
        "the error says the disk is full: {said}"
    );
    let st = agent.status_json();
    assert_eq!(
        str_field(&st, "applied_commit"),
        Some(first.as_str()),
        "{st:#}"
    );
    assert_eq!(
        container_id(&app).as_deref(),
        Some(id.as_str()),
        "app untouched"
    );
    assert!(is_running(&app));
    assert!(
        container_env(&app).contains(&"MODE=1".to_string()),
        "the old spec still runs"
    );

    // Space again: the same commit is applied, by the running agent (it did not die of the full disk).
    std::fs::remove_file(&filler).unwrap();
    agent.reconcile_ok();
    let st = agent.status_json();
    assert_eq!(
        str_field(&st, "applied_commit"),
        Some(second.as_str()),
        "{st:#}"
    );
    wait_until(TIMEOUT, "the new app running", || is_running(&app));
    assert!(container_env(&app).contains(&"MODE=2".to_string()));

    // Nothing recorded was lost, across a restart.
    agent.stop();
    agent.spawn();
    let commits: Vec<String> = agent
        .history_json()
        .iter()
        .filter(|r| r["outcome"] == "applied")
        .map(|r| r["commit"].as_str().unwrap().to_string())
        .collect();
    assert!(
        commits.contains(&first) && commits.contains(&second),
        "both applied revisions are in the history: {commits:?}"
    );
    assert_eq!(
        str_field(&agent.status_json(), "applied_commit"),
        Some(second.as_str())
    );
}

/// The commit is fetched while the box is pinned, then the disk fills. Space comes back a page at a time
/// (4 KiB, 8 KiB, …): at every step where the revision cannot be checked out or recorded, resuming fails
/// with the disk-full error, the commit is not quarantined and the container is untouched; once there is
/// room the commit is applied, and the history survives a restart.
#[test]
fn a_full_disk_while_applying_loses_nothing() {
    let repo = GitRepo::new();
    repo.write("compose.yaml", &compose("1"));
    let first = repo.commit_push("one");
    let mut agent = Agent::new("full-disk-apply", AgentOptions::new(&repo.url()));
    let _tmpfs = Tmpfs::mount(&agent.state_dir, "48m");
    agent.spawn();
    agent.reconcile_ok();
    let app = agent.container("app");
    let id = container_id(&app).expect("app created");
    let o = agent.cli(&["rollback", "1"]);
    assert!(o.status.success(), "berth rollback 1: {}", show(&o));
    repo.write("compose.yaml", &compose("2"));
    let second = repo.commit_push("two");
    agent.reconcile_ok();
    let st = agent.status_json();
    assert_eq!(
        str_field(&st, "fetched_commit"),
        Some(second.as_str()),
        "{st:#}"
    );
    assert_eq!(
        str_field(&st, "applied_commit"),
        Some(first.as_str()),
        "{st:#}"
    );

    let filler = agent.state_dir.join("filler");
    fill(&filler);
    let full = std::fs::metadata(&filler).unwrap().len();
    let mut free = 0u64;
    let mut failed_at = Vec::new();
    loop {
        let resume = agent.cli(&["resume"]);
        let o = agent.reconcile_wait();
        if o.status.success() {
            break;
        }
        let said = format!(
            "{}{}{}",
            String::from_utf8_lossy(&resume.stderr),
            stdout(&o),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            said.contains("No space left on device"),
            "{free} bytes free: the error says the disk is full: {said}"
        );
        let st = agent.status_json();
        assert_eq!(
            str_field(&st, "applied_commit"),
            Some(first.as_str()),
            "{st:#}"
        );
        assert!(
            st["quarantined"].is_null(),
            "a full disk is not the commit's fault: {st:#}"
        );
        assert_eq!(
            container_id(&app).as_deref(),
            Some(id.as_str()),
            "app untouched"
        );
        assert!(container_env(&app).contains(&"MODE=1".to_string()));
        failed_at.push(free);
        free = if free == 0 { 4096 } else { free * 2 };
        assert!(free < full, "never applied, with {free} bytes free");
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&filler)
            .unwrap();
        f.set_len(full - free).unwrap();
    }
    eprintln!("full disk: failed with {failed_at:?} bytes free, applied with {free}");
    assert_eq!(
        failed_at.first(),
        Some(&0),
        "nothing applies on a full disk"
    );
    assert_eq!(
        str_field(&agent.status_json(), "applied_commit"),
        Some(second.as_str())
    );
    wait_until(TIMEOUT, "the new app running", || is_running(&app));
    assert!(container_env(&app).contains(&"MODE=2".to_string()));

    std::fs::remove_file(&filler).unwrap();
    agent.stop();
    agent.spawn();
    let h: Vec<(u64, String)> = agent
        .history_json()
        .iter()
        .map(|r| {
            (
                r["seq"].as_u64().unwrap(),
                r["commit"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        h,
        vec![(3, second.clone()), (2, first.clone()), (1, first.clone())],
        "every revision recorded, none twice"
    );
    assert!(
        !agent.log_text().contains("moved aside"),
        "the store opened"
    );
}
