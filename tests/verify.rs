//! `source.verify` end to end: real repositories whose commits and tags are signed by the real `git`, with
//! SSH keys made by `ssh-keygen` and OpenPGP keys made by GnuPG, followed by a real agent. A refused
//! commit changes nothing on disk or in the engine, is recorded as failed with the reason, and is not
//! retried until the remote moves; the applied revision shows who signed it.

use crate::util::*;
use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "support/gpg.rs"]
mod gpg;
use gpg::{run, GpgHome};

fn compose(v: &str) -> String {
    format!(
        "services:\n  app:\n    image: {IMAGE}\n    command: {IDLE}\n    environment:\n      V: \"{v}\"\n"
    )
}

/// How git signs: `-c` settings and environment.
#[derive(Clone)]
struct Signing {
    config: Vec<String>,
    env: Vec<(String, PathBuf)>,
}

/// Keys of both kinds in a temp dir: SSH keys, and a GnuPG home (its agent stopped on drop).
struct Keys {
    dir: tempfile::TempDir,
    gnupg: GpgHome,
}

impl Keys {
    fn new() -> Keys {
        Keys {
            dir: tempfile::tempdir().unwrap(),
            gnupg: GpgHome::new(),
        }
    }

    /// A new SSH key: how git signs with it, and its allowed_signers line for `principal` (`options`
    /// before the key when not empty).
    fn ssh(&self, name: &str, principal: &str, options: &str) -> (Signing, String) {
        let key = self.dir.path().join(name);
        run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
            .arg(&key));
        let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
        let signing = Signing {
            config: vec![
                "gpg.format=ssh".into(),
                format!("user.signingkey={}", key.display()),
            ],
            env: vec![],
        };
        (
            signing,
            format!("{principal} {options} {}\n", public.trim()),
        )
    }

    /// A new OpenPGP key (made at `faked_time` when given, expiring after `expire`): how git signs with
    /// it, its fingerprint, and its armored public key.
    fn openpgp(
        &self,
        uid: &str,
        expire: &str,
        faked_time: Option<&str>,
    ) -> (Signing, String, String) {
        let fpr = self.gnupg.key(uid, "ed25519", expire, faked_time);
        let armored = self.gnupg.export(&fpr);
        let mut config = vec![format!("user.signingkey={fpr}")];
        if let Some(t) = faked_time {
            // A key that has expired can only sign in its own time: a gpg that believes it is then.
            let wrapper = self.dir.path().join(format!("gpg-at-{t}"));
            std::fs::write(
                &wrapper,
                format!("#!/bin/sh\nexec gpg --faked-system-time {t} \"$@\"\n"),
            )
            .unwrap();
            run(Command::new("chmod").arg("+x").arg(&wrapper));
            config.push(format!("gpg.program={}", wrapper.display()));
        }
        let signing = Signing {
            config,
            env: vec![("GNUPGHOME".into(), self.gnupg.path().to_path_buf())],
        };
        (signing, fpr, format!("{armored}\n"))
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// `git ARGS` in the work clone, signing as `signing` says.
fn git(repo: &GitRepo, signing: Option<&Signing>, args: &[&str]) -> String {
    let mut c = Command::new("git");
    c.arg("-C")
        .arg(&repo.work)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0");
    if let Some(s) = signing {
        for kv in &s.config {
            c.args(["-c", kv]);
        }
        for (k, v) in &s.env {
            c.env(k, v);
        }
    }
    run(c.args(args))
}

/// Commit the work tree (signed when `signing` is given) and push `main`; the new commit's id.
fn commit_push(repo: &GitRepo, signing: Option<&Signing>, msg: &str) -> String {
    git(repo, None, &["add", "-A"]);
    let sign = if signing.is_some() {
        "-S"
    } else {
        "--no-gpg-sign"
    };
    git(
        repo,
        signing,
        &["commit", "-q", sign, "--allow-empty", "-m", msg],
    );
    repo.push();
    git(repo, None, &["rev-parse", "HEAD"])
}

/// Point tag `name` at HEAD (annotated; signed when `signing` is given) and force-push it.
fn tag_push(repo: &GitRepo, signing: Option<&Signing>, name: &str) {
    let sign = if signing.is_some() { "-s" } else { "-a" };
    git(repo, signing, &["tag", "-f", sign, "-m", name, name]);
    git(
        repo,
        None,
        &["push", "-q", "-f", "origin", &format!("refs/tags/{name}")],
    );
}

fn verify_opts(repo: &GitRepo, verify: &str) -> AgentOptions {
    let mut opts = AgentOptions::new(&repo.url());
    opts.extra_source = format!("  verify: {verify}\n");
    opts
}

/// The `source.verify` value for `mode` with the trust file `trust` (`allowed_signers` or `keyring`) at
/// `path`.
fn verify(mode: &str, trust: &str, path: &Path) -> String {
    format!("{{mode: {mode}, {trust}: {}}}", path.display())
}

/// A new repository whose first commit (`V=1`) is signed by `signing` and pushed, and agent `name`
/// started on it with `source.verify: VERIFY` (no cycle run yet); the commit's id.
fn start_on_a_signed_commit(
    name: &str,
    signing: &Signing,
    verify: &str,
) -> (GitRepo, Agent, String) {
    let repo = GitRepo::new();
    repo.write("compose.yaml", &compose("1"));
    let first = commit_push(&repo, Some(signing), "first, signed");
    let agent = Agent::start_with(name, verify_opts(&repo, verify));
    (repo, agent, first)
}

/// With `first` (`V=1`) applied: a commit that is unsigned, one signed by `unknown` (not trusted) and one
/// signed by `expired` (trusted, but no longer) are each refused with the reason given, `first` running on.
fn assert_the_untrusted_refused(
    repo: &GitRepo,
    agent: &Agent,
    first: &str,
    (unknown, unknown_reason): (&Signing, &str),
    (expired, expired_reason): (&Signing, &str),
) {
    repo.write("compose.yaml", &compose("2"));
    let unsigned = commit_push(repo, None, "unsigned");
    assert_refused(agent, &unsigned, "unsigned commit", first, "1");
    let commit = commit_push(repo, Some(unknown), "signed by an unknown key");
    assert_refused(agent, &commit, unknown_reason, first, "1");
    let commit = commit_push(repo, Some(expired), "signed by an expired key");
    assert_refused(agent, &commit, expired_reason, first, "1");
}

fn env_of(agent: &Agent) -> Vec<String> {
    container_env(&agent.container("app"))
}

/// The newest history record.
fn newest(agent: &Agent) -> serde_json::Value {
    agent.history_json().into_iter().next().expect("a record")
}

/// A refused commit: the cycle fails with `reason`, class input; the container, the applied commit and
/// the checked-out files stay as they were; the record says failed with the reason; and the commit is
/// not tried again until the remote moves.
fn assert_refused(agent: &Agent, commit: &str, reason: &str, running: &str, old_v: &str) {
    let id_before = container_id(&agent.container("app"));
    let o = agent.reconcile_wait();
    assert!(!o.status.success(), "refused: {}", show(&o));
    assert!(stderr(&o).contains(reason), "{reason}: {}", show(&o));
    let st = agent.status_json();
    assert_eq!(str_field(&st, "error_class"), Some("input"), "{st:#}");
    assert!(
        str_field(&st, "last_error").is_some_and(|e| e.contains(reason) && e.contains("refused")),
        "{st:#}"
    );
    assert_eq!(str_field(&st, "applied_commit"), Some(running), "{st:#}");
    assert_eq!(container_id(&agent.container("app")), id_before);
    assert!(env_of(agent).contains(&format!("V={old_v}")));
    let files = std::fs::read_to_string(agent.state_dir.join("repo/compose.yaml")).unwrap();
    assert!(files.contains(&format!("V: \"{old_v}\"")), "{files}");
    let rec = newest(agent);
    assert_eq!(rec["commit"], commit, "{rec:#}");
    assert_eq!(rec["outcome"], "failed", "{rec:#}");
    assert!(rec["error"].as_str().unwrap().contains(reason), "{rec:#}");
    assert!(rec.get("signer").is_none(), "{rec:#}");
    // Not retried until the remote moves: the next cycle reports the quarantine and records nothing.
    let records = agent.history_json().len();
    let again = agent.reconcile_wait();
    assert!(stderr(&again).contains("quarantined"), "{}", show(&again));
    assert_eq!(agent.history_json().len(), records);
    assert_eq!(container_id(&agent.container("app")), id_before);
}

/// The newest record and status name the signer.
fn assert_applied(agent: &Agent, commit: &str, v: &str, signer: &str) {
    agent.reconcile_ok();
    let st = agent.status_json();
    assert_eq!(str_field(&st, "applied_commit"), Some(commit), "{st:#}");
    assert!(
        str_field(&st, "applied_signer").is_some_and(|s| s.contains(signer)),
        "{st:#}"
    );
    assert!(env_of(agent).contains(&format!("V={v}")));
    let text = stdout(&agent.cli(&["status"]));
    assert!(
        text.lines()
            .any(|l| l.starts_with("verified by ") && l.contains(signer)),
        "{text}"
    );
    let rec = newest(agent);
    assert_eq!(rec["outcome"], "applied", "{rec:#}");
    assert!(rec["signer"].as_str().unwrap().contains(signer), "{rec:#}");
}

#[test]
fn ssh_signed_commits_are_applied_and_the_others_refused() {
    let keys = Keys::new();
    let (alice, alice_line) = keys.ssh("alice", "alice@example.com", "namespaces=\"git\"");
    let (mallory, _) = keys.ssh("mallory", "mallory@example.com", "");
    let (bob, bob_line) = keys.ssh("bob", "bob@example.com", "valid-before=\"20200101Z\"");
    let allowed = keys.path("allowed_signers");
    std::fs::write(&allowed, format!("{alice_line}{bob_line}")).unwrap();

    let trust = verify("head", "allowed_signers", &allowed);
    let (repo, agent, first) = start_on_a_signed_commit("verify-ssh", &alice, &trust);
    assert_applied(&agent, &first, "1", "alice@example.com (SHA256:");
    assert_the_untrusted_refused(
        &repo,
        &agent,
        &first,
        (&mallory, "signed by an unknown key SHA256:"),
        (&bob, "signed by an expired key SHA256:"),
    );
    assert!(
        agent
            .log_text()
            .contains("valid-before 20200101Z has passed"),
        "the reason names the key's limit"
    );

    // An unsigned commit followed by a signed one: the signed one is applied.
    repo.write("compose.yaml", &compose("3"));
    let signed = commit_push(&repo, Some(&alice), "signed again");
    assert_applied(&agent, &signed, "3", "alice@example.com");

    // A rollback needs no verification again: it was verified when first applied (here the trust file
    // is gone altogether).
    std::fs::remove_file(&allowed).unwrap();
    let o = agent.cli(&["rollback"]);
    assert!(o.status.success(), "berth rollback: {}", show(&o));
    let st = agent.status_json();
    assert_eq!(
        str_field(&st, "applied_commit"),
        Some(first.as_str()),
        "{st:#}"
    );
    assert!(
        str_field(&st, "applied_signer").is_some_and(|s| s.contains("alice@example.com")),
        "the rollback record keeps who signed: {st:#}"
    );
    assert!(env_of(&agent).contains(&"V=1".to_string()));
}

#[test]
fn a_key_added_to_allowed_signers_is_trusted_without_a_restart() {
    let keys = Keys::new();
    let (alice, alice_line) = keys.ssh("alice", "alice@example.com", "");
    let (carol, carol_line) = keys.ssh("carol", "carol@example.com", "");
    let allowed = keys.path("allowed_signers");
    std::fs::write(&allowed, &alice_line).unwrap();
    let trust = verify("head", "allowed_signers", &allowed);
    let (repo, agent, first) = start_on_a_signed_commit("verify-rotate", &alice, &trust);
    assert_applied(&agent, &first, "1", "alice@example.com");
    let pid = agent.pid();

    repo.write("compose.yaml", &compose("2"));
    let early = commit_push(&repo, Some(&carol), "carol, not trusted yet");
    assert_refused(&agent, &early, "unknown key", &first, "1");

    std::fs::write(&allowed, format!("{alice_line}{carol_line}")).unwrap();
    repo.write("compose.yaml", &compose("3"));
    let trusted = commit_push(&repo, Some(&carol), "carol, trusted now");
    assert_applied(&agent, &trusted, "3", "carol@example.com");
    assert_eq!(agent.pid(), pid, "the same agent process");
}

#[test]
fn openpgp_signed_commits_are_applied_and_the_others_refused() {
    let keys = Keys::new();
    let (alice, alice_fpr, alice_key) = keys.openpgp("Alice <alice@example.com>", "never", None);
    let (mallory, mallory_fpr, _) = keys.openpgp("Mallory <mallory@example.com>", "never", None);
    let (old, old_fpr, old_key) =
        keys.openpgp("Old <old@example.com>", "1d", Some("20200101T000000"));
    let keyring = keys.path("keys.asc");
    std::fs::write(&keyring, format!("{alice_key}{old_key}")).unwrap();

    let trust = verify("head", "keyring", &keyring);
    let (repo, agent, first) = start_on_a_signed_commit("verify-pgp", &alice, &trust);
    assert_applied(
        &agent,
        &first,
        "1",
        &format!("Alice <alice@example.com> ({alice_fpr})"),
    );
    assert_the_untrusted_refused(
        &repo,
        &agent,
        &first,
        (&mallory, &format!("signed by an unknown key {mallory_fpr}")),
        (&old, &format!("signed by an expired key {old_fpr}")),
    );

    repo.write("compose.yaml", &compose("3"));
    let signed = commit_push(&repo, Some(&alice), "signed again");
    assert_applied(&agent, &signed, "3", &alice_fpr);
}

/// Tag mode: the followed tag must be a signed annotated tag; the commits themselves need no signature.
fn tag_mode(name: &str, signing: &Signing, verify: &str, signer: &str) {
    let repo = GitRepo::new();
    repo.write("compose.yaml", &compose("1"));
    let first = commit_push(&repo, None, "release 1 (the commit is not signed)");
    tag_push(&repo, Some(signing), "v1");
    let mut opts = verify_opts(&repo, verify);
    opts.reference = "tag: v1".into();
    let agent = Agent::start_with(name, opts);
    assert_applied(&agent, &first, "1", signer);
    assert!(
        str_field(&agent.status_json(), "applied_signer").is_some_and(|s| s.ends_with("on tag v1")),
        "{:#}",
        agent.status_json()
    );

    // The tag moved to a new commit, unsigned: refused.
    repo.write("compose.yaml", &compose("2"));
    let second = commit_push(&repo, None, "release 2");
    tag_push(&repo, None, "v1");
    assert_refused(&agent, &second, "unsigned tag v1", &first, "1");

    // Signed again (on a new commit: the remote moves on).
    repo.write("compose.yaml", &compose("3"));
    let third = commit_push(&repo, None, "release 3");
    tag_push(&repo, Some(signing), "v1");
    assert_applied(&agent, &third, "3", signer);
}

#[test]
fn a_signed_ssh_tag_is_applied_in_tag_mode_and_an_unsigned_one_refused() {
    let keys = Keys::new();
    let (alice, line) = keys.ssh("alice", "alice@example.com", "");
    let allowed = keys.path("allowed_signers");
    std::fs::write(&allowed, line).unwrap();
    let trust = verify("tag", "allowed_signers", &allowed);
    tag_mode("verify-tag-ssh", &alice, &trust, "alice@example.com");
}

#[test]
fn a_signed_openpgp_tag_is_applied_in_tag_mode_and_an_unsigned_one_refused() {
    let keys = Keys::new();
    let (alice, fpr, key) = keys.openpgp("Alice <alice@example.com>", "never", None);
    let dir = keys.path("keyring.d");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("alice.asc"), key).unwrap();
    tag_mode(
        "verify-tag-pgp",
        &alice,
        &verify("tag", "keyring", &dir),
        &fpr,
    );
}

/// A trust file that is missing is the operator's to fix: the agent starts, the cycle fails (transient,
/// retried), nothing is recorded against the commit, and once the file is there the commit is applied.
#[test]
fn a_missing_trust_file_is_an_error_at_fetch_not_a_crash() {
    let keys = Keys::new();
    let (alice, line) = keys.ssh("alice", "alice@example.com", "");
    let allowed = keys.path("allowed_signers");
    let trust = verify("head", "allowed_signers", &allowed);
    let (_repo, agent, first) = start_on_a_signed_commit("verify-missing", &alice, &trust);
    let o = agent.reconcile_wait();
    assert!(!o.status.success(), "{}", show(&o));
    assert!(
        stderr(&o).contains("source.verify.allowed_signers"),
        "{}",
        show(&o)
    );
    let st = agent.status_json();
    assert_eq!(str_field(&st, "error_class"), Some("transient"), "{st:#}");
    assert!(agent.history_json().is_empty());
    std::fs::write(&allowed, line).unwrap();
    assert_applied(&agent, &first, "1", "alice@example.com");
}

/// `berth diff` against the agent verifies the fetched commit as a cycle would: a signed one is planned
/// and names its signer; an unsigned one is not planned, the answer (text and `--json`) says it would be
/// refused and why, and it exits 1. The agent then does refuse it, for the same reason.
#[test]
fn berth_diff_says_when_the_agent_would_refuse_the_fetched_commit() {
    let keys = Keys::new();
    let (alice, alice_line) = keys.ssh("alice", "alice@example.com", "");
    let allowed = keys.path("allowed_signers");
    std::fs::write(&allowed, &alice_line).unwrap();
    let repo = GitRepo::new();
    repo.write("compose.yaml", &compose("1"));
    let first = commit_push(&repo, Some(&alice), "signed by alice");
    let opts = verify_opts(
        &repo,
        &format!("{{mode: head, allowed_signers: {}}}", allowed.display()),
    );
    let agent = Agent::start_with("verify-diff", opts);
    assert_applied(&agent, &first, "1", "alice@example.com");

    repo.write("compose.yaml", &compose("2"));
    let signed = commit_push(&repo, Some(&alice), "a signed change");
    let o = agent.cli(&["diff"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "a signed change is planned: {}",
        show(&o)
    );
    let text = stdout(&o);
    assert!(
        text.contains(&format!("commit {} fetched", &signed[..12])),
        "{text}"
    );
    assert!(text.contains("verified by alice@example.com"), "{text}");
    assert!(
        text.contains("recreate") && !text.contains("refused"),
        "{text}"
    );
    let o = agent.cli(&["diff", "--json"]);
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(j.get("refused").is_none(), "{j:#}");
    assert!(
        j["signer"].as_str().unwrap().contains("alice@example.com"),
        "{j:#}"
    );

    repo.write("compose.yaml", &compose("3"));
    let unsigned = commit_push(&repo, None, "an unsigned change");
    let o = agent.cli(&["diff"]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        stderr(&o).contains(&format!(
            "error: commit {} would be refused: unsigned commit",
            &unsigned[..12]
        )),
        "{}",
        show(&o)
    );
    let text = stdout(&o);
    assert!(
        text.contains(&format!("commit {} fetched", &unsigned[..12])),
        "{text}"
    );
    assert!(
        text.contains("refused: the agent would not apply this commit"),
        "{text}"
    );
    assert!(
        !text.contains("recreate") && !text.contains("verified by"),
        "no plan: {text}"
    );
    let o = agent.cli(&["diff", "--json", "--no-fetch"]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["commit"], unsigned.as_str(), "{j:#}");
    assert_eq!(j["refused"]["commit"], unsigned.as_str(), "{j:#}");
    assert_eq!(j["refused"]["class"], "input", "{j:#}");
    assert!(
        j["refused"]["reason"]
            .as_str()
            .unwrap()
            .contains("unsigned commit"),
        "{j:#}"
    );
    assert!(j.get("signer").is_none(), "{j:#}");
    assert!(
        j["stacks"].as_array().is_none_or(|s| s.is_empty()),
        "nothing planned: {j:#}"
    );
    // What diff said is what the agent does.
    assert_refused(&agent, &unsigned, "unsigned commit", &first, "1");
}
