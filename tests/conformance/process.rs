//! Running the tools: a command under a deadline (output drained by threads), `docker`, the reference
//! `docker compose` (v2) and `berth apply`, with the environment both tools share.

use super::*;

/// Run a command to completion within `deadline` (killed otherwise). stdout and stderr are drained by
/// threads, so a command that prints a lot (a `docker inspect` of many containers) cannot block on a full
/// pipe.
pub(super) fn run(cmd: &mut Command, deadline: Duration) -> Result<Output, String> {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = out.read_to_end(&mut b);
        b
    });
    let t_err = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = err.read_to_end(&mut b);
        b
    });
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) => {}
            Err(e) => return Err(format!("waiting for {what}: {e}")),
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let o = Output {
                status: std::process::ExitStatus::default(),
                stdout: t_out.join().unwrap_or_default(),
                stderr: t_err.join().unwrap_or_default(),
            };
            return Err(format!(
                "{what} still running after {deadline:?}; killed\n--- stdout\n{}\n--- stderr\n{}",
                stdout(&o),
                stderr(&o)
            ));
        }
        std::thread::sleep(Duration::from_millis(25));
    };
    Ok(Output {
        status,
        stdout: t_out.join().unwrap_or_default(),
        stderr: t_err.join().unwrap_or_default(),
    })
}

pub(super) fn docker_cmd(args: &[&str]) -> Command {
    let mut c = Command::new("docker");
    c.args(args);
    c
}

/// `docker ARGS` that must succeed; its stdout.
pub(super) fn docker_out(args: &[&str]) -> Result<String, String> {
    let o = run(&mut docker_cmd(args), DOCKER_DEADLINE)?;
    if !o.status.success() {
        return Err(format!("docker {args:?}: {}", show(&o)));
    }
    Ok(stdout(&o))
}

pub(super) fn lines(s: &str) -> Vec<String> {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

/// The environment both tools run with: the test process's, minus anything that would change how either
/// tool reads a project (`COMPOSE_*`, `DOCKER_DEFAULT_PLATFORM`) or that fixtures interpolate (`CONF_*`),
/// plus the fixtures' shell variables.
pub(super) fn tool_env(cmd: &mut Command) -> &mut Command {
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().to_string();
        if k.starts_with("COMPOSE_") || k.starts_with("CONF_") || k == "DOCKER_DEFAULT_PLATFORM" {
            cmd.env_remove(&k);
        }
    }
    cmd.env("CONF_FROM_SHELL", "from-shell")
        .env("CONF_OVERRIDDEN", "from-shell")
        .env("CONF_SECRET_ENV", "secret-from-env")
        .env("CONF_CONFIG_ENV", "config-from-env")
}

/// The reference: `docker compose` (v2). When `docker compose version` fails, `scripts/compose-v2.sh`
/// installs it; a fallback to Compose v1 (`docker-compose`) is refused, since v1 names and labels differ.
pub(crate) fn compose_cmd() -> Result<Vec<String>, String> {
    static CMD: OnceLock<Result<Vec<String>, String>> = OnceLock::new();
    CMD.get_or_init(|| {
        let v2 = || {
            run(&mut docker_cmd(&["compose", "version", "--short"]), DOCKER_DEADLINE)
                .map(|o| o.status.success())
                .unwrap_or(false)
        };
        if v2() {
            return Ok(vec!["docker".into(), "compose".into()]);
        }
        let script = manifest_dir().join("scripts/compose-v2.sh");
        let o = run(
            Command::new("sh").arg(&script).arg("--print"),
            Duration::from_secs(900),
        )?;
        let printed = stdout(&o).trim().to_string();
        if o.status.success() && printed == "docker compose" && v2() {
            Ok(vec!["docker".into(), "compose".into()])
        } else {
            Err(format!(
                "Docker Compose v2 is not available (scripts/compose-v2.sh printed {printed:?}): {}",
                show(&o)
            ))
        }
    })
    .clone()
}

pub(crate) fn compose(cmdline: &[String], args: &[&str]) -> Command {
    let mut c = Command::new(&cmdline[0]);
    c.args(&cmdline[1..]).args(args);
    tool_env(&mut c);
    c
}

pub(super) fn berth_apply(dir: &Path, agent: &str) -> Result<Output, String> {
    let mut c = Command::new(berth_bin());
    c.arg("apply").arg(dir).arg("--agent-id").arg(agent);
    tool_env(&mut c);
    run(&mut c, TOOL_DEADLINE)
}
