//! Running one fixture with both tools (Compose first, then berth, then berth again to check it
//! recreates nothing), and the corpus: every fixture, a few at a time, once per test binary.

use super::*;

#[derive(Debug, Clone)]
pub(super) struct Reapply {
    pub(super) ok: bool,
    pub(super) detail: String,
}

#[derive(Debug, Clone)]
pub(super) struct BerthRun {
    /// `Err(message)` when `berth apply` failed (exit code, stdout, stderr).
    pub(super) apply: Result<(), String>,
    pub(super) snapshot: Option<Snapshot>,
    pub(super) reapply: Option<Reapply>,
}

#[derive(Debug, Clone)]
pub(super) struct FixtureResult {
    pub(super) name: String,
    /// Problems of the harness or of the fixture itself (Compose refused it, a cleanup failed): never a
    /// conformance measurement, always a test failure.
    pub(super) errors: Vec<String>,
    pub(super) compose: Option<Snapshot>,
    pub(super) berth: Option<BerthRun>,
    pub(super) seconds: f64,
}

/// `(name, id)` of every container an agent owns.
pub(super) fn owned_ids(agent: &str) -> Result<BTreeSet<(String, String)>, String> {
    let out = docker_out(&[
        "ps",
        "-a",
        "--no-trunc",
        "--filter",
        &format!("label={AGENT_LABEL}={agent}"),
        "--format",
        "{{.Names}}\t{{.ID}}",
    ])?;
    Ok(lines(&out)
        .into_iter()
        .map(|l| {
            let (n, i) = l.split_once('\t').unwrap_or((&l, ""));
            (n.to_string(), i.to_string())
        })
        .collect())
}

pub(super) fn create_extra(extra: &Extra) -> Result<(), String> {
    for (tag, dockerfile) in &extra.images {
        let ctx = tempfile::Builder::new()
            .prefix("berth-conformance-image-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        std::fs::write(ctx.path().join("Dockerfile"), dockerfile).map_err(|e| e.to_string())?;
        let dir = ctx.path().to_string_lossy().to_string();
        let o = run(
            docker_cmd(&["build", "-q", "-t", tag, &dir]).env("DOCKER_BUILDKIT", "0"),
            TOOL_DEADLINE,
        )?;
        if !o.status.success() {
            return Err(format!("docker build -t {tag}: {}", show(&o)));
        }
    }
    for n in &extra.networks {
        docker_out(&["network", "create", n])?;
    }
    for v in &extra.volumes {
        docker_out(&["volume", "create", v])?;
    }
    for c in &extra.containers {
        docker_out(&["run", "-d", "--name", c, IMAGE, "sh", "-c", IDLE_SH])?;
    }
    Ok(())
}

pub(super) fn run_fixture(fx: &Fixture) -> FixtureResult {
    let start = Instant::now();
    let mut res = FixtureResult {
        name: fx.name.clone(),
        errors: Vec::new(),
        compose: None,
        berth: None,
        seconds: 0.0,
    };
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_fixture_inner(fx, &mut res)
    }));
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(e)) => res.errors.push(e),
        Err(p) => res.errors.push(format!(
            "harness panicked: {}",
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        )),
    }
    res.seconds = start.elapsed().as_secs_f64();
    res
}

pub(super) fn run_fixture_inner(fx: &Fixture, res: &mut FixtureResult) -> Result<(), String> {
    let mut names = RunNames::new(&fx.name);
    let cmdline = compose_cmd()?;
    let file = compose_file(&fx.dir).ok_or("no compose file")?;
    let file_name = file.file_name().map(PathBuf::from).unwrap_or_default();
    let extra = read_extra(&file)?;
    let tmp = tempfile::Builder::new()
        .prefix("berth-conformance-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let root = tmp.path().canonicalize().map_err(|e| e.to_string())?;
    // A fixture with a top-level `name:` runs from directories named differently from the project, and
    // Compose without `-p`: the name can only come from the file.
    let suffix = if extra.has_name { "-dir" } else { "" };
    let dir1 = root
        .join("compose")
        .join(format!("{}{suffix}", names.cproj));
    let dir2 = root.join("berth").join(format!("{}{suffix}", names.bstack));
    copy_fixture(&fx.dir, &dir1, &names.subst(&names.cproj)).map_err(|e| e.to_string())?;
    copy_fixture(&fx.dir, &dir2, &names.subst(&names.bstack)).map_err(|e| e.to_string())?;
    let extra = read_extra(&dir1.join(&file_name))?;
    let probes = extra.probes.clone();

    let mut cleanup = Cleanup {
        compose: Some((cmdline.clone(), names.cproj.clone(), dir1.clone())),
        agent: names.bstack.clone(),
        extra: Extra::default(),
    };
    cleanup.extra = Extra {
        networks: extra.networks.clone(),
        volumes: extra.volumes.clone(),
        containers: extra.containers.clone(),
        images: extra.images.clone(),
        ..Extra::default()
    };
    create_extra(&extra)?;
    for c in &extra.containers {
        let id = docker_out(&["container", "inspect", "--format", "{{.Id}}", c])?;
        names.ext_ids.push((id.trim().to_string(), c.clone()));
    }

    // Docker Compose.
    let dir1_s = dir1.to_string_lossy().to_string();
    let mut args: Vec<&str> = Vec::new();
    if !extra.has_name {
        args.extend(["-p", names.cproj.as_str()]);
    }
    // `up -d` waits for the depends_on conditions itself. (`--wait` is not used: it fails on a service
    // whose healthcheck sets only options, one of the forms the corpus covers.)
    args.extend(["--project-directory", &dir1_s, "up", "-d"]);
    let up = run(&mut compose(&cmdline, &args), TOOL_DEADLINE)?;
    if up.status.success() {
        settle(Tool::Compose, &names.cproj)?;
        match snapshot(
            Tool::Compose,
            &names.cproj,
            &dir1,
            &names.cproj,
            &names,
            &probes,
        ) {
            Ok(s) => res.compose = Some(s),
            Err(e) => res
                .errors
                .push(format!("snapshot of Compose's objects: {e}")),
        }
    } else {
        res.errors.push(format!(
            "the fixture is broken: `docker compose up` failed: {}",
            show(&up)
        ));
    }
    // Compose's objects go before berth's come (same host ports, addresses, container names).
    cleanup.compose_down()?;

    // berth.
    let apply = berth_apply(&dir2, &names.bstack)?;
    let mut b = BerthRun {
        apply: Ok(()),
        snapshot: None,
        reapply: None,
    };
    if !apply.status.success() {
        b.apply = Err(show(&apply));
        res.berth = Some(b);
        return Ok(());
    }
    // Wait (with a deadline) until berth's containers reach the states Compose's had: one-shot
    // containers may still be running right after `berth apply`.
    if let Some(cs) = &res.compose {
        let want: BTreeMap<String, String> = cs
            .objects
            .iter()
            .filter_map(|(k, f)| f.get("state").map(|s| (k.clone(), s.clone())))
            .collect();
        let deadline = Instant::now() + SETTLE_DEADLINE;
        loop {
            let have: BTreeMap<String, String> = list_containers(Tool::Berth, &names.bstack)?
                .iter()
                .map(|c| {
                    let name = c["Name"].as_str().unwrap_or("").to_string();
                    (
                        Tool::Berth.key(&c["Config"]["Labels"], &name),
                        json!(container_state(c)).to_string(),
                    )
                })
                .collect();
            let settled = want.iter().all(|(k, s)| have.get(k).is_none_or(|h| h == s));
            if settled || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    b.snapshot = Some(snapshot(
        Tool::Berth,
        &names.bstack,
        &dir2,
        &names.bstack,
        &names,
        &probes,
    )?);

    // Apply again: nothing may be recreated.
    let before = owned_ids(&names.bstack)?;
    let again = berth_apply(&dir2, &names.bstack)?;
    let after = owned_ids(&names.bstack)?;
    let mut problems = Vec::new();
    if !again.status.success() {
        problems.push("the second `berth apply` failed".to_string());
    }
    if !stdout(&again).contains("up to date") {
        problems.push("the second `berth apply` did not say `up to date`".to_string());
    }
    if before != after {
        let gone: Vec<_> = before.difference(&after).map(|(n, _)| n.clone()).collect();
        let new: Vec<_> = after.difference(&before).map(|(n, _)| n.clone()).collect();
        problems.push(format!(
            "containers changed: replaced or removed {gone:?}, new {new:?}"
        ));
    }
    b.reapply = Some(Reapply {
        ok: problems.is_empty(),
        detail: if problems.is_empty() {
            format!("{} container(s) kept", after.len())
        } else {
            format!("{}\n{}", problems.join("; "), show(&again))
        },
    });
    res.berth = Some(b);
    drop(cleanup);
    drop(tmp);
    Ok(())
}

/// Wait (with a deadline) until no container of `owner` is still being created or restarting. A
/// container that keeps restarting is snapshotted as it is when the deadline passes.
pub(super) fn settle(tool: Tool, owner: &str) -> Result<(), String> {
    let deadline = Instant::now() + SETTLE_DEADLINE;
    loop {
        let busy = list_containers(tool, owner)?.iter().any(|c| {
            matches!(
                c["State"]["Status"].as_str(),
                Some("created" | "restarting")
            )
        });
        if !busy || Instant::now() > deadline {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The corpus, run once per test binary, a few fixtures at a time.
pub(super) fn corpus() -> &'static Vec<FixtureResult> {
    static RESULTS: OnceLock<Vec<FixtureResult>> = OnceLock::new();
    RESULTS.get_or_init(|| {
        let fx = fixtures();
        let next = AtomicUsize::new(0);
        let results: Mutex<Vec<FixtureResult>> = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for _ in 0..WORKERS.min(fx.len()) {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(f) = fx.get(i) else { break };
                    let r = run_fixture(f);
                    results.lock().unwrap_or_else(|e| e.into_inner()).push(r);
                });
            }
        });
        let mut v = results.into_inner().unwrap_or_else(|e| e.into_inner());
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    })
}
