use super::*;

#[test]
fn minimal_config_gets_defaults() {
    let s = parse("agent_id: edge-01\nsource:\n  url: file:///srv/fleet.git\n").unwrap();
    assert_eq!(s.agent_id, "edge-01");
    assert_eq!(s.source.reference, GitRef::Branch("main".into()));
    assert_eq!(s.source.path, PathBuf::from("."));
    assert_eq!(s.source.interval, Duration::from_secs(60));
    assert_eq!(s.state_dir, PathBuf::from(DEFAULT_STATE_DIR));
    assert_eq!(s.socket, PathBuf::from(DEFAULT_SOCKET));
    assert_eq!(s.history.keep, DEFAULT_HISTORY_KEEP);
}

#[test]
fn facts_are_scalars_with_plain_keys() {
    let base = "source:\n  url: /srv/fleet.git\n";
    let s = parse(base).unwrap();
    assert!(s.facts.is_empty());
    let s = parse(&format!(
        "{base}facts: {{site: berlin, floor: 3, lab: true}}\n"
    ))
    .unwrap();
    assert_eq!(s.facts["site"], "berlin");
    assert_eq!(s.facts["floor"], "3");
    assert_eq!(s.facts["lab"], "true");
    let errs = parse(&format!(
        "{base}facts: {{site-name: x, list: [a], site: a, SITE: b}}\n"
    ))
    .unwrap_err();
    assert_eq!(errs.len(), 3, "{errs:?}");
    assert!(errs.iter().all(|e| e.starts_with("facts: ")), "{errs:?}");
    assert!(errs.iter().any(|e| e.contains("site-name")), "{errs:?}");
    assert!(
        errs.iter().any(|e| e.contains("BERTH_FACT_SITE")),
        "{errs:?}"
    );
}

#[test]
fn a_secret_fact_is_read_at_start_and_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("db_key");
    let base = "source:\n  url: /srv/fleet.git\n";
    let mut s = parse(&format!(
        "{base}facts: {{site: berlin, db_key: {{secret_file: {}}}}}\n",
        file.display()
    ))
    .unwrap();
    assert_eq!(s.secret_facts["db_key"], file);
    assert!(
        !s.facts.contains_key("db_key"),
        "not read when the config is"
    );
    assert!(s.secret_vars().contains("BERTH_FACT_DB_KEY"));
    let e = s.read_secret_facts().unwrap_err().to_string();
    assert!(e.contains("db_key") && e.contains("secret_file"), "{e}");
    std::fs::write(&file, "fact-secret-4\n").unwrap();
    s.read_secret_facts().unwrap();
    assert_eq!(s.facts["db_key"], "fact-secret-4");
    assert_eq!(s.public_facts()["db_key"], "***");
    assert_eq!(s.public_facts()["site"], "berlin");
    let errs = parse(&format!("{base}facts: {{k: {{secret_file: rel}}}}\n")).unwrap_err();
    assert!(errs[0].contains("secret_file"), "{errs:?}");
}

#[test]
fn rollout_and_allow_empty() {
    let base = "source:\n  url: /srv/fleet.git\n";
    let s = parse(base).unwrap();
    assert_eq!(s.rollout.gate, crate::rollout::GateSettings::default());
    assert_eq!(s.rollout.on_failure, OnFailure::Rollback);
    assert!(!s.allow_empty);
    let s = parse(&format!(
        "{base}rollout: {{timeout: 30s, stable: 2s, on_failure: keep}}\nallow_empty: true\n"
    ))
    .unwrap();
    assert_eq!(s.rollout.gate.timeout, Duration::from_secs(30));
    assert_eq!(s.rollout.gate.stable, Duration::from_secs(2));
    assert_eq!(s.rollout.on_failure, OnFailure::Keep);
    assert!(s.allow_empty);
    let errs = parse(&format!(
        "{base}rollout: {{timeout: 5s, stable: 10s, on_failure: pray}}\n"
    ))
    .unwrap_err();
    assert!(
        errs.iter().any(|e| e.contains("rollout.stable")),
        "{errs:?}"
    );
    assert!(
        errs.iter().any(|e| e.contains("rollout.on_failure")),
        "{errs:?}"
    );
    assert!(parse(&format!(
        "{base}rollout: {{timeout: 99999999999999999999s}}\n"
    ))
    .is_err());
}

#[test]
fn type_errors_never_quote_the_value() {
    let errs =
        parse("agent_id: a\nsource:\n  url: x\nallow_empty: SECRET-MARK-config\n").unwrap_err();
    let text = errs.join("\n");
    assert!(!text.contains("SECRET-MARK"), "{text}");
    assert!(
        text.contains("line 4") && text.contains("allow_empty"),
        "{text}"
    );
}

#[test]
fn history_keep() {
    let base = "agent_id: a\nsource:\n  url: x\n";
    let keep = |extra: &str| parse(&format!("{base}{extra}")).map(|s| s.history.keep);
    assert_eq!(keep("history: {keep: 20}\n"), Ok(20));
    assert_eq!(keep("history: {keep: 10}\n"), Ok(10));
    assert_eq!(keep("history: {}\n"), Ok(DEFAULT_HISTORY_KEEP));
    assert_eq!(keep("history:\n"), Ok(DEFAULT_HISTORY_KEEP));
    let errs = keep("history: {keep: 9}\n").unwrap_err();
    assert!(
        errs[0].contains("history.keep") && errs[0].contains("at least 10"),
        "{errs:?}"
    );
    // Reported with the other problems, not instead of them.
    let errs = keep("history: {keep: 0}\nstate_dir: rel\n").unwrap_err();
    assert_eq!(errs.len(), 2, "{errs:?}");
    for bad in [
        "history: {keep: -1}\n",
        "history: {keep: lots}\n",
        "history: {kept: 20}\n",
    ] {
        assert!(keep(bad).is_err(), "{bad}");
    }
    let errs = keep("history: {kept: 20}\n").unwrap_err();
    assert!(errs[0].contains("kept"), "{errs:?}");
}

#[test]
fn every_problem_is_reported_at_once() {
    let errs = parse(
        "agent_id: 'bad id!'\nsource:\n  branch: main\n  tag: v1\n  path: ../up\n  interval: soon\nstate_dir: rel\n",
    )
    .unwrap_err();
    let all = errs.join("\n");
    for key in [
        "agent_id",
        "source.url",
        "source: set only one",
        "source.path",
        "source.interval",
        "state_dir",
    ] {
        assert!(all.contains(key), "missing {key} in {all}");
    }
}

#[test]
fn unknown_key_is_named_with_line() {
    let errs = parse("agent_id: a\nsource:\n  url: x\n  brnach: main\n").unwrap_err();
    assert!(errs[0].contains("brnach"), "{errs:?}");
    assert!(errs[0].contains("line 4"), "{errs:?}");
}

#[test]
fn durations() {
    assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
    assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
    assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
    assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
    assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
    assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
    assert_eq!(parse_duration("1h 30m").unwrap(), Duration::from_secs(5400));
    assert_eq!(
        parse_duration(" 2d ").unwrap(),
        Duration::from_secs(2 * 86_400)
    );
    assert!(matches!(
        parse_duration("soon"),
        Err(DurationError::Invalid { .. })
    ));
    assert!(parse_duration("5x").is_err());
    assert!(parse_duration("-5s").is_err());
    assert!(matches!(parse_duration("  "), Err(DurationError::Empty)));
}

#[test]
fn overflowing_durations_are_errors_not_panics() {
    assert_eq!(parse_duration("10years").unwrap(), MAX_DURATION);
    for text in [
        "99999999999999999999s",
        "99999999999999999999",
        "18446744073709551615",
        "18446744073709551615s",
        "99999999999999999999h",
        "9999999999999h",
        "11years",
        "315576001",
        "5000000000000000000ns 5000000000000000000ns 5000000000000000000ns",
    ] {
        let e = parse_duration(text).unwrap_err();
        assert!(matches!(e, DurationError::TooLong { .. }), "{text}: {e}");
        assert!(e.to_string().contains("10 years"), "{e}");
    }
    // Everything in range fits the engine's nanosecond counts.
    assert!(i64::try_from(MAX_DURATION.as_nanos()).is_ok());
}

#[test]
fn overflowing_interval_in_the_agent_config_is_a_problem() {
    let errs = parse(
        "agent_id: a\nsource:\n  url: file:///x\n  interval: 99999999999999999999s\n  timeout: 99999999999999999999\n",
    )
    .unwrap_err();
    let all = errs.join("\n");
    assert!(
        all.contains("source.interval: \"99999999999999999999s\" is longer than 10 years"),
        "{all}"
    );
    assert!(all.contains("source.timeout:"), "{all}");
}

#[test]
fn relative_paths() {
    assert_eq!(
        normalise_rel_path("a/./b/../c").unwrap(),
        PathBuf::from("a/c")
    );
    assert_eq!(normalise_rel_path("./").unwrap(), PathBuf::from("."));
    assert_eq!(
        normalise_rel_path("/etc").unwrap_err(),
        RelPathError::Absolute {
            path: "/etc".into()
        }
    );
    assert_eq!(
        normalise_rel_path("a/../../b").unwrap_err(),
        RelPathError::ClimbsOut {
            path: "a/../../b".into()
        }
    );
}

#[test]
fn secrets_age_key_file_defaults_and_must_be_absolute() {
    let base = "agent_id: a\nsource:\n  url: x\n";
    let s = parse(base).unwrap();
    assert_eq!(s.age_key_file, PathBuf::from("/etc/berth/age.key"));
    let s = parse(&format!("{base}secrets:\n  age_key_file: /srv/box.key\n")).unwrap();
    assert_eq!(s.age_key_file, PathBuf::from("/srv/box.key"));
    let errs = parse(&format!("{base}secrets:\n  age_key_file: box.key\n")).unwrap_err();
    assert!(
        errs.iter().any(|e| e.starts_with("secrets.age_key_file")),
        "{errs:?}"
    );
    assert!(parse(&format!("{base}secrets:\n  age_key: /x\n")).is_err());
}
