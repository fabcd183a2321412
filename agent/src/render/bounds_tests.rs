//! Render refuses every out-of-range number, oversized expansion and runaway nesting with a problem at
//! the file and line, never a panic, a wrap or a silent clamp; messages name the key, not the value.

use super::memtree::MemTree;
use super::*;

fn opts(env: &[(&str, &str)]) -> RenderOptions {
    test_options(env)
}

/// A compose file whose one service has `line4` as its fourth line.
fn service_with(line4: &str) -> String {
    format!("services:\n  web:\n    image: busybox\n    {line4}\n")
}

fn problems_of(tree: &MemTree) -> Vec<Problem> {
    match render(tree, &opts(&[])) {
        Ok(d) => panic!("expected problems, rendered {d:?}"),
        Err(e) => e.problems,
    }
}

#[test]
fn every_number_out_of_range_is_a_problem_at_its_line() {
    // (line 4 of the service, the key path the problem names, a value the message must not quote)
    let cases: &[(&str, &str, Option<&str>)] = &[
        ("ports: ['70000:80']", "ports[0]", Some("70000")),
        ("ports: ['8000-8002:80-81']", "ports[0]", Some("8002")),
        (
            "ports: [{target: 99999999999999999999}]",
            "ports[0]",
            Some("99999"),
        ),
        ("expose: ['0']", "expose[0]", None),
        ("scale: 101", "scale", Some("101")),
        ("scale: 99999999999999999999", "scale", Some("99999")),
        ("deploy: {replicas: -1}", "deploy.replicas", None),
        ("healthcheck: {retries: -1}", "healthcheck.retries", None),
        (
            "healthcheck: {retries: 4294967296}",
            "healthcheck.retries",
            Some("4294967296"),
        ),
        (
            "healthcheck: {interval: 2562048h}",
            "healthcheck.interval",
            Some("2562048"),
        ),
        (
            "healthcheck: {timeout: 500us}",
            "healthcheck.timeout",
            Some("500"),
        ),
        (
            "stop_grace_period: 2562048h",
            "stop_grace_period",
            Some("2562048"),
        ),
        ("shm_size: 99999999999999999999g", "shm_size", Some("99999")),
        ("shm_size: 1e400", "shm_size", Some("1e400")),
        ("mem_limit: -1", "mem_limit", None),
        ("mem_reservation: 8192p", "mem_reservation", Some("8192")),
        ("memswap_limit: -2", "memswap_limit", Some("-2")),
        ("cpus: 1e400", "cpus", Some("1e400")),
        ("cpus: -1", "cpus", None),
        ("cpus: 2000", "cpus", Some("2000")),
        ("cpus: .nan", "cpus", Some("nan")),
        ("cpu_shares: 300000", "cpu_shares", Some("300000")),
        ("oom_score_adj: 1001", "oom_score_adj", Some("1001")),
        ("pids_limit: -2", "pids_limit", Some("-2")),
        ("pids_limit: 0x7fffffff", "pids_limit", Some("2147483647")),
        (
            "ulimits: {nofile: {soft: 2, hard: 1}}",
            "ulimits.nofile",
            None,
        ),
        (
            "ulimits: {nproc: 99999999999999999999}",
            "ulimits.nproc",
            Some("99999"),
        ),
        ("ulimits: {core: -2}", "ulimits.core", Some("-2")),
        (
            "restart: on-failure:4294967296",
            "restart",
            Some("4294967296"),
        ),
        ("restart: on-failure:+3", "restart", Some("+3")),
        (
            "deploy: {restart_policy: {condition: on-failure, max_attempts: -1}}",
            "deploy.restart_policy.max_attempts",
            None,
        ),
        (
            "deploy: {resources: {limits: {cpus: '0.001', memory: 1k, pids: 5000000}}}",
            "deploy.resources.limits",
            Some("0.001"),
        ),
        (
            "volumes: [{type: tmpfs, target: /t, tmpfs: {size: 99999999999999999999g}}]",
            "volumes[0].tmpfs.size",
            Some("99999"),
        ),
        (
            "volumes: [{type: tmpfs, target: /t, tmpfs: {mode: 4294967716}}]",
            "volumes[0].tmpfs.mode",
            Some("4294967716"),
        ),
        (
            "networks: {default: {priority: 9999999999}}",
            "networks.default.priority",
            Some("9999999999"),
        ),
    ];
    for (line4, path, value) in cases {
        let tree = MemTree::new().with("compose.yaml", service_with(line4));
        let p = problems_of(&tree);
        let hit = p
            .iter()
            .find(|p| p.message.contains(path))
            .unwrap_or_else(|| panic!("{line4}: no problem names {path}: {p:#?}"));
        assert_eq!(hit.file.as_deref(), Some("compose.yaml"), "{line4}");
        assert_eq!(hit.line, Some(4), "{line4}: {hit}");
        assert_eq!(hit.service.as_deref(), Some("web"), "{line4}");
        if let Some(value) = value {
            assert!(
                !hit.message.contains(value),
                "{line4}: the message quotes the value: {hit}"
            );
        }
    }
}

#[test]
fn secrets_ids_and_modes_are_numeric_and_bounded() {
    for (entry, key) in [
        ("{source: s, uid: '4294967296'}", "uid"),
        ("{source: s, uid: root}", "uid"),
        ("{source: s, gid: '-1'}", "gid"),
        ("{source: s, mode: '077777'}", "mode"),
        ("{source: s, mode: 4294967716}", "mode"),
    ] {
        let text = format!(
            "services:\n  web:\n    image: busybox\n    secrets:\n      - {entry}\nsecrets:\n  s: {{environment: S}}\n"
        );
        let tree = MemTree::new().with("compose.yaml", text);
        let p = match render(&tree, &opts(&[("S", "hunter2")])) {
            Ok(d) => panic!("{entry}: rendered {d:?}"),
            Err(e) => e.problems,
        };
        assert_eq!(p.len(), 1, "{entry}: {p:#?}");
        assert!(
            p[0].message.contains(&format!("secrets[0].{key}")),
            "{}",
            p[0]
        );
        assert_eq!(p[0].line, Some(5), "{entry}: {}", p[0]);
    }
    // In range: normalised to the number.
    let text = "services:\n  web:\n    image: busybox\n    secrets:\n      - {source: s, uid: ' 4294967295', gid: 0, mode: 0o440}\nsecrets:\n  s: {environment: S}\n";
    let d = render(
        &MemTree::new().with("compose.yaml", text),
        &opts(&[("S", "v")]),
    )
    .unwrap();
    let f = &d.containers().next().unwrap().files[0];
    assert_eq!(
        (f.uid.as_deref(), f.gid.as_deref(), f.mode),
        (Some("4294967295"), Some("0"), 0o440)
    );
}

#[test]
fn an_unterminated_quote_in_a_command_names_file_line_service_and_key() {
    let tree = MemTree::new().with(
        "compose.yaml",
        service_with("command: sh -c 'echo ${PASSWORD}"),
    );
    let p = match render(&tree, &opts(&[("PASSWORD", "hunter2")])) {
        Ok(d) => panic!("rendered {d:?}"),
        Err(e) => e.problems,
    };
    assert_eq!(p.len(), 1, "{p:#?}");
    assert_eq!(
        (p[0].file.as_deref(), p[0].line, p[0].service.as_deref()),
        (Some("compose.yaml"), Some(4), Some("web"))
    );
    assert!(
        p[0].message.starts_with("services.web.command: "),
        "{}",
        p[0]
    );
    assert!(p[0].message.contains("quote"), "{}", p[0]);
    assert!(!p[0].to_string().contains("hunter2"), "{}", p[0]);
}

#[test]
fn interpolation_errors_do_not_quote_values() {
    let tree = MemTree::new().with(
        "compose.yaml",
        service_with("environment: {A: '${SECRET} ${'}"),
    );
    let p = match render(&tree, &opts(&[("SECRET", "hunter2")])) {
        Ok(d) => panic!("rendered {d:?}"),
        Err(e) => e.problems,
    };
    assert_eq!(p[0].line, Some(4), "{}", p[0]);
    assert!(p[0].message.contains("environment.A"), "{}", p[0]);
    assert!(!p[0].to_string().contains("hunter2"), "{}", p[0]);
    // A bad .env line names its line, not its text.
    let tree = MemTree::new()
        .with("compose.yaml", service_with("init: true"))
        .with(".env", "A=1\nmy password is hunter2\n");
    let p = problems_of(&tree);
    assert_eq!((p[0].file.as_deref(), p[0].line), (Some(".env"), Some(2)));
    assert!(!p[0].to_string().contains("hunter2"), "{}", p[0]);
}

#[test]
fn a_billion_laughs_compose_file_is_refused_quickly() {
    let mut text = String::from("x-a0: &a0 [\"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\"]\n");
    for i in 1..12 {
        let refs = vec![format!("*a{}", i - 1); 10].join(", ");
        text.push_str(&format!("x-a{i}: &a{i} [{refs}]\n"));
    }
    text.push_str("services:\n  web:\n    image: busybox\n    labels: {x: *a11}\n");
    let start = std::time::Instant::now();
    let p = problems_of(&MemTree::new().with("compose.yaml", text));
    assert!(start.elapsed() < std::time::Duration::from_secs(10));
    assert_eq!(p.len(), 1, "{p:#?}");
    assert_eq!(p[0].file.as_deref(), Some("compose.yaml"));
    // Wide anchors that serde_yaml's alias limit lets through stop at the budget.
    let mut text = format!("x-a0: &a0 [{}]\n", vec!["\"lol\""; 2000].join(", "));
    for i in 1..8 {
        let refs = vec![format!("*a{}", i - 1); 10].join(", ");
        text.push_str(&format!("x-a{i}: &a{i} [{refs}]\n"));
    }
    text.push_str("services: {}\n");
    let p = problems_of(&MemTree::new().with("compose.yaml", text));
    assert!(p[0].message.contains("expands"), "{}", p[0]);
    assert!(start.elapsed() < std::time::Duration::from_secs(20));
}

#[test]
fn variables_cannot_grow_a_stack_without_bound() {
    // Each .env line doubles the one before: 2^40 bytes if nothing stopped it.
    let mut env = String::from("A0=xxxxxxxxxxxxxxxx\n");
    for i in 1..40 {
        env.push_str(&format!("A{i}=${{A{}}}${{A{}}}\n", i - 1, i - 1));
    }
    let tree = MemTree::new()
        .with("compose.yaml", service_with("init: true"))
        .with(".env", env);
    let p = problems_of(&tree);
    assert_eq!(p[0].file.as_deref(), Some(".env"));
    assert!(p[0].message.contains("expand"), "{}", p[0]);
    // The same through a compose file's strings: one budget for the stack.
    let big = "v".repeat(1024 * 1024);
    let text = service_with(&format!("labels: {{a: '{}'}}", "$BIG".repeat(20)));
    let p = match render(
        &MemTree::new().with("compose.yaml", text),
        &opts(&[("BIG", &big)]),
    ) {
        Ok(_) => panic!("rendered"),
        Err(e) => e.problems,
    };
    assert!(p[0].message.contains("expand"), "{}", p[0]);
    let nested = format!("{}x{}", "${U:-".repeat(100_000), "}".repeat(100_000));
    let p = problems_of(&MemTree::new().with(
        "compose.yaml",
        service_with(&format!("labels: {{a: '{nested}'}}")),
    ));
    assert!(p[0].message.contains("nests deeper"), "{}", p[0]);
}

#[test]
fn includes_and_extends_are_bounded_in_depth_and_in_what_they_read() {
    // An include chain deeper than MAX_DEPTH.
    let mut tree = MemTree::new();
    for i in 0..15 {
        tree.set(
            &format!("inc{i}.yaml"),
            format!(
                "include: [inc{}.yaml]\nservices: {{s{i}: {{image: busybox}}}}\n",
                i + 1
            ),
        );
    }
    tree.set("inc15.yaml", "services: {}\n");
    tree.set("compose.yaml", "include: [inc0.yaml]\n");
    let p = problems_of(&tree);
    assert!(p.iter().any(|p| p.message.contains("nest")), "{p:#?}");
    // A fan-out of includes: every level includes the next one ten times.
    let mut tree = MemTree::new();
    for i in 0..9 {
        let list = vec![format!("f{}.yaml", i + 1); 10].join(", ");
        tree.set(&format!("f{i}.yaml"), format!("include: [{list}]\n"));
    }
    tree.set("f9.yaml", format!("x-pad: '{}'\n", "p".repeat(100_000)));
    tree.set("compose.yaml", "include: [f0.yaml]\n");
    let start = std::time::Instant::now();
    let p = problems_of(&tree);
    assert!(start.elapsed() < std::time::Duration::from_secs(30));
    assert!(
        p.iter().any(|p| p.message.contains("reads more than")),
        "{p:#?}"
    );
    // An extends loop through files, and a chain deeper than MAX_DEPTH.
    let tree = MemTree::new()
        .with(
            "compose.yaml",
            "services:\n  a:\n    extends: {file: b.yaml, service: b}\n",
        )
        .with(
            "b.yaml",
            "services:\n  b:\n    extends: {file: compose.yaml, service: a}\n",
        );
    let p = problems_of(&tree);
    assert!(
        p.iter().any(|p| p.message.contains("extends loop")),
        "{p:#?}"
    );
    // Written last to first, so that no base is resolved before the service extending it.
    let mut text = String::from("services:\n");
    for i in (1..20).rev() {
        text.push_str(&format!("  s{i}: {{extends: s{}}}\n", i - 1));
    }
    text.push_str("  s0: {image: busybox}\n");
    let p = problems_of(&MemTree::new().with("compose.yaml", text));
    assert!(
        p.iter().any(|p| p.message.contains("extends loop")),
        "{p:#?}"
    );
}

#[test]
fn a_stack_is_bounded_in_services_containers_and_port_bindings() {
    let mut text = String::from("services:\n");
    for i in 0..=convert::MAX_SERVICES {
        text.push_str(&format!("  s{i}: {{image: busybox}}\n"));
    }
    let p = problems_of(&MemTree::new().with("compose.yaml", text));
    assert_eq!(p.len(), 1, "{p:#?}");
    assert!(p[0].message.contains("at most"), "{}", p[0]);

    let mut text = String::from("services:\n");
    for i in 0..11 {
        text.push_str(&format!("  s{i}: {{image: busybox, scale: 100}}\n"));
    }
    let p = problems_of(&MemTree::new().with("compose.yaml", text));
    assert!(p[0].message.contains("1100 containers"), "{}", p[0]);

    let text = service_with("ports: ['1-60000']\n    scale: 5");
    let p = problems_of(&MemTree::new().with("compose.yaml", text));
    assert!(p[0].message.contains("300000 ports"), "{}", p[0]);
}

#[test]
fn a_followed_directory_holds_a_bounded_number_of_stacks() {
    let mut tree = MemTree::new();
    for i in 0..=MAX_STACKS {
        tree.set(&format!("s{i}/compose.yaml"), "services: {}\n");
    }
    let p = problems_of(&tree);
    assert_eq!(p.len(), 1, "{p:#?}");
    assert!(p[0].message.contains("more than 1000 stacks"), "{}", p[0]);
}

#[test]
fn a_long_depends_on_chain_is_checked_without_deep_recursion() {
    let mut text = String::from("services:\n  s0: {image: busybox}\n");
    for i in 1..convert::MAX_SERVICES {
        text.push_str(&format!(
            "  s{i}: {{image: busybox, depends_on: [s{}]}}\n",
            i - 1
        ));
    }
    let d = render(&MemTree::new().with("compose.yaml", text), &opts(&[])).unwrap();
    assert_eq!(d.containers().count(), convert::MAX_SERVICES);
}

#[test]
fn thousands_of_problems_are_reported_as_the_first_ones_and_a_count() {
    let mut text = String::from("services:\n  web:\n    image: busybox\n    ports:\n");
    for _ in 0..1000 {
        text.push_str("      - '0'\n");
    }
    let p = problems_of(&MemTree::new().with("compose.yaml", text));
    assert_eq!(p.len(), MAX_PROBLEMS + 1);
    assert_eq!(p[MAX_PROBLEMS].message, "… and 800 more problems");
}

/// Durations past what `config::parse_duration` can represent. Its hand-written parser panics on
/// them (`Duration::from_secs_f64` overflows, config.rs); the humantime replacement on the `crates`
/// branch returns an error, which render turns into a problem at the key's line. Run with
/// `--ignored` once that is merged, then drop the `ignore`.
pub(super) const OVERFLOWING_DURATIONS: &[&str] = &[
    "99999999999999999999s",
    "99999999999999999999h",
    "18446744073709551616s",
    "5124095576030432h",
    "1m99999999999999999999s",
];

#[test]
fn overflowing_durations_are_problems_at_their_line() {
    for d in OVERFLOWING_DURATIONS {
        for line4 in [
            format!("healthcheck: {{interval: {d}}}"),
            format!("healthcheck: {{start_period: {d}}}"),
            format!("stop_grace_period: {d}"),
            format!("deploy: {{restart_policy: {{delay: {d}}}}}"),
        ] {
            let p = problems_of(&MemTree::new().with("compose.yaml", service_with(&line4)));
            assert_eq!(p.len(), 1, "{line4}: {p:#?}");
            assert_eq!(
                (p[0].file.as_deref(), p[0].line),
                (Some("compose.yaml"), Some(4)),
                "{line4}: {}",
                p[0]
            );
        }
    }
}
