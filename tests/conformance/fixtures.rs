//! Fixtures, placeholders and run-unique resources: the fixture directories, the host ports, subnets and
//! names each run substitutes, the copy with placeholders replaced, the `x-conformance:` instructions,
//! and the cleanup of everything one fixture run made.

use super::*;

pub(super) struct Fixture {
    pub(super) name: String,
    pub(super) dir: PathBuf,
}

/// The compose file names Compose looks for, in its order.
pub(super) const COMPOSE_FILES: [&str; 4] = [
    "compose.yaml",
    "compose.yml",
    "docker-compose.yaml",
    "docker-compose.yml",
];

/// The compose file of a fixture directory (under any of the names Compose reads).
pub(super) fn compose_file(dir: &Path) -> Option<PathBuf> {
    COMPOSE_FILES
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file())
}

/// Every fixture directory (holding a compose file), sorted; filtered by `BERTH_CONFORMANCE_FIXTURES`.
pub(super) fn fixtures() -> Vec<Fixture> {
    let only: Option<BTreeSet<String>> = std::env::var("BERTH_CONFORMANCE_FIXTURES")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.split(',').map(|x| x.trim().to_string()).collect());
    let mut v: Vec<Fixture> = std::fs::read_dir(fixtures_root())
        .expect("tests/fixtures/conformance")
        .filter_map(|e| e.ok())
        .filter(|e| compose_file(&e.path()).is_some())
        .map(|e| Fixture {
            name: e.file_name().to_string_lossy().to_string(),
            dir: e.path(),
        })
        .filter(|f| only.as_ref().is_none_or(|o| o.contains(&f.name)))
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

/// Host ports and subnets handed out to fixtures: free when checked, never handed out twice in one run,
/// and starting from a point derived from the pid so that two runs at the same time pick different ones.
pub(super) struct Alloc {
    pub(super) next_port: u32,
    pub(super) next_octet: u32,
    /// IPv4 networks (address, prefix length) in use on the engine or handed out.
    pub(super) used: Vec<(u32, u32)>,
}

pub(super) fn alloc() -> &'static Mutex<Alloc> {
    static A: OnceLock<Mutex<Alloc>> = OnceLock::new();
    A.get_or_init(|| {
        let pid = std::process::id();
        let mut used = Vec::new();
        if let Ok(ids) = docker_out(&["network", "ls", "-q"]) {
            let ids = lines(&ids);
            if !ids.is_empty() {
                let mut args = vec![
                    "network",
                    "inspect",
                    "--format",
                    "{{range .IPAM.Config}}{{.Subnet}} {{end}}",
                ];
                args.extend(ids.iter().map(String::as_str));
                // Networks may vanish between ls and inspect (other tests): take what answered.
                let o = run(&mut docker_cmd(&args), DOCKER_DEADLINE).ok();
                for s in o.map(|o| stdout(&o)).unwrap_or_default().split_whitespace() {
                    if let Some(n) = parse_cidr4(s) {
                        used.push(n);
                    }
                }
            }
        }
        Mutex::new(Alloc {
            next_port: 40000 + (pid.wrapping_mul(7919) % 900) * 10,
            next_octet: pid % 250,
            used,
        })
    })
}

pub(super) fn parse_cidr4(s: &str) -> Option<(u32, u32)> {
    let (addr, len) = s.split_once('/')?;
    let ip: std::net::Ipv4Addr = addr.parse().ok()?;
    let len: u32 = len.parse().ok()?;
    (len <= 32).then_some((u32::from(ip), len))
}

pub(super) fn overlaps(a: (u32, u32), b: (u32, u32)) -> bool {
    let len = a.1.min(b.1);
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    (a.0 & mask) == (b.0 & mask)
}

pub(super) fn port_free(p: u16) -> bool {
    std::net::TcpListener::bind(("0.0.0.0", p)).is_ok()
        && std::net::UdpSocket::bind(("0.0.0.0", p)).is_ok()
}

/// Ten consecutive free host ports.
pub(super) fn alloc_ports() -> u16 {
    let mut a = alloc().lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..1000 {
        let base = a.next_port;
        a.next_port = if base + 20 > 49990 { 40000 } else { base + 10 };
        if (0..10).all(|i| port_free((base + i) as u16)) {
            return base as u16;
        }
    }
    panic!("no 10 free consecutive host ports in 40000-49999");
}

/// A third octet `k` such that 10.211.k.0/24, 10.212.k.0/24 and 10.213.k.0/24 are all free.
pub(super) fn alloc_octet() -> u32 {
    let mut a = alloc().lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..250 {
        let k = a.next_octet;
        a.next_octet = (k + 1) % 250;
        let nets: Vec<(u32, u32)> = (1..=3)
            .map(|n| {
                (
                    u32::from(std::net::Ipv4Addr::new(10, 210 + n, k as u8, 0)),
                    24,
                )
            })
            .collect();
        if nets
            .iter()
            .all(|n| a.used.iter().all(|u| !overlaps(*n, *u)))
        {
            a.used.extend(nets);
            return k;
        }
    }
    panic!("no free 10.21x.k.0/24 subnets");
}

/// Everything one fixture run substitutes and creates.
pub(super) struct RunNames {
    /// Compose project name.
    pub(super) cproj: String,
    /// berth stack name and agent id.
    pub(super) bstack: String,
    /// Placeholder → value, shared by both tools.
    pub(super) common: Vec<(String, String)>,
    /// Allocated IPv4 /24 prefixes (`10.21n.k`) and the IPv6 /64 prefix: a subnet outside them was
    /// picked by the engine.
    pub(super) net_prefixes: Vec<String>,
    /// `(id, name)` of the containers the harness made first (`network_mode: container:<name>`).
    pub(super) ext_ids: Vec<(String, String)>,
}

impl RunNames {
    pub(super) fn new(fixture: &str) -> RunNames {
        let pid = std::process::id();
        let port = alloc_ports();
        let k = alloc_octet();
        let mut common = vec![("__EXT__".to_string(), format!("cfx-{fixture}-{pid}"))];
        for i in 0..10u16 {
            common.push((format!("__P{i}__"), (port + i).to_string()));
        }
        let mut net_prefixes = Vec::new();
        for n in 1..=3u32 {
            let p = format!("10.{}.{k}", 210 + n);
            common.push((format!("__NET{n}__"), p.clone()));
            net_prefixes.push(format!("{p}."));
        }
        let v6 = format!("fd42:c0f:{:x}:{k:x}", pid & 0xffff);
        common.push(("__NET6__".into(), v6.clone()));
        common.push(("__BLOCKDEV__".into(), block_device()));
        net_prefixes.push(format!("{v6}:"));
        RunNames {
            cproj: format!("cfc-{fixture}-{pid}"),
            bstack: format!("cfb-{fixture}-{pid}"),
            common,
            net_prefixes,
            ext_ids: Vec::new(),
        }
    }

    pub(super) fn subst(&self, project: &str) -> Vec<(String, String)> {
        let mut v = vec![("__PROJECT__".to_string(), project.to_string())];
        v.extend(self.common.iter().cloned());
        v
    }
}

/// A block device of the test machine, for `blkio_config` device rates: the first of the usual disk
/// names that exists as a block device.
pub(super) fn block_device() -> String {
    use std::os::unix::fs::FileTypeExt as _;
    [
        "/dev/vda",
        "/dev/sda",
        "/dev/nvme0n1",
        "/dev/xvda",
        "/dev/loop0",
    ]
    .into_iter()
    .find(|d| {
        std::fs::metadata(d)
            .map(|m| m.file_type().is_block_device())
            .unwrap_or(false)
    })
    .unwrap_or("/dev/sda")
    .to_string()
}

pub(super) fn apply_subst(text: &str, subst: &[(String, String)]) -> String {
    let mut s = text.to_string();
    for (k, v) in subst {
        s = s.replace(k.as_str(), v);
    }
    s
}

/// Copy a fixture directory, replacing placeholders in every file.
pub(super) fn copy_fixture(
    src: &Path,
    dst: &Path,
    subst: &[(String, String)],
) -> std::io::Result<()> {
    std::fs::create_dir_all(dst)?;
    for e in std::fs::read_dir(src)? {
        let e = e?;
        let to = dst.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_fixture(&e.path(), &to, subst)?;
        } else {
            let bytes = std::fs::read(e.path())?;
            match String::from_utf8(bytes) {
                Ok(t) => std::fs::write(&to, apply_subst(&t, subst))?,
                Err(b) => std::fs::write(&to, b.into_bytes())?,
            }
        }
    }
    Ok(())
}

/// The fixture's `x-conformance:` instructions (and whether it has a top-level `name:`).
#[derive(Default, Debug)]
pub(super) struct Extra {
    pub(super) networks: Vec<String>,
    pub(super) volumes: Vec<String>,
    pub(super) containers: Vec<String>,
    /// Images built first: tag → Dockerfile (built without a context, `FROM` the test image), for images
    /// whose `VOLUME`, `HEALTHCHECK`, `ENTRYPOINT`, `USER`… matter.
    pub(super) images: Vec<(String, String)>,
    pub(super) probes: Vec<String>,
    pub(super) has_name: bool,
}

pub(super) fn read_extra(compose_yaml: &Path) -> Result<Extra, String> {
    let text = std::fs::read_to_string(compose_yaml).map_err(|e| e.to_string())?;
    let doc: serde_yaml::Value =
        serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", compose_yaml.display()))?;
    let strings = |v: Option<&serde_yaml::Value>| -> Vec<String> {
        v.and_then(|v| v.as_sequence())
            .map(|s| {
                s.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let x = doc.get("x-conformance");
    let create = x.and_then(|x| x.get("create"));
    Ok(Extra {
        networks: strings(create.and_then(|c| c.get("networks"))),
        volumes: strings(create.and_then(|c| c.get("volumes"))),
        containers: strings(create.and_then(|c| c.get("containers"))),
        images: create
            .and_then(|c| c.get("images"))
            .and_then(|i| i.as_mapping())
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default(),
        probes: strings(x.and_then(|x| x.get("probe"))),
        has_name: doc.get("name").is_some(),
    })
}

/// Removes, when dropped (also when the fixture failed), everything one fixture run made: the Compose
/// project (`down -v`, then anything still labelled with the project), berth's objects for the agent id
/// (containers with their anonymous volumes), and the objects the harness made first.
pub(super) struct Cleanup {
    pub(super) compose: Option<(Vec<String>, String, PathBuf)>,
    pub(super) agent: String,
    pub(super) extra: Extra,
}

impl Cleanup {
    pub(super) fn compose_down(&self) -> Result<(), String> {
        let Some((cmdline, proj, dir)) = &self.compose else {
            return Ok(());
        };
        let dir_s = dir.to_string_lossy().to_string();
        let o = run(
            &mut compose(
                cmdline,
                &[
                    "-p",
                    proj,
                    "--project-directory",
                    &dir_s,
                    "down",
                    "-v",
                    "--remove-orphans",
                    "--timeout",
                    "10",
                ],
            ),
            TOOL_DEADLINE,
        )?;
        let label = format!("com.docker.compose.project={proj}");
        let swept = remove_labelled(&label);
        if !o.status.success() {
            // Docker 20.10 sometimes still counts an endpoint of a container it has just removed
            // ("network … has active endpoints"). That is the engine's lag, not Compose's or berth's:
            // the down counts as done when the project's objects are all gone shortly after.
            let gone = || {
                remove_labelled(&label).is_ok()
                    && docker_out(&["network", "ls", "-q", "--filter", &format!("label={label}")])
                        .map(|o| o.trim().is_empty())
                        .unwrap_or(false)
            };
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            let stderr = String::from_utf8_lossy(&o.stderr);
            while stderr.contains("active endpoints") && std::time::Instant::now() < deadline {
                if gone() {
                    return Ok(());
                }
                std::thread::sleep(std::time::Duration::from_millis(250));
            }
            return Err(format!("docker compose down: {}", show(&o)));
        }
        swept
    }
}

/// Remove containers (with their anonymous volumes), networks and volumes carrying `label`.
pub(super) fn remove_labelled(label: &str) -> Result<(), String> {
    let filter = format!("label={label}");
    let containers = lines(&docker_out(&[
        "ps",
        "-aq",
        "--no-trunc",
        "--filter",
        &filter,
    ])?);
    if !containers.is_empty() {
        let mut args = vec!["rm", "-f", "-v"];
        args.extend(containers.iter().map(String::as_str));
        docker_out(&args)?;
    }
    for n in lines(&docker_out(&["network", "ls", "-q", "--filter", &filter])?) {
        let _ = docker(&["network", "rm", &n]);
    }
    let volumes = lines(&docker_out(&["volume", "ls", "-q", "--filter", &filter])?);
    if !volumes.is_empty() {
        let mut args = vec!["volume", "rm", "-f"];
        args.extend(volumes.iter().map(String::as_str));
        let _ = docker(&args);
    }
    Ok(())
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = self.compose_down();
        let _ = remove_labelled(&format!("{AGENT_LABEL}={}", self.agent));
        for c in &self.extra.containers {
            docker(&["rm", "-f", "-v", c]);
        }
        for n in &self.extra.networks {
            docker(&["network", "rm", n]);
        }
        for v in &self.extra.volumes {
            docker(&["volume", "rm", "-f", v]);
        }
        for (tag, _) in &self.extra.images {
            docker(&["image", "rm", "-f", tag]);
        }
    }
}
