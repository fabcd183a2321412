//! apply's failure isolation, end to end with `berth apply DIR --agent-id ID` against the real engine:
//! a service whose image cannot be had fails alone (its `depends_on` dependents are skipped, an
//! unrelated service of the same stack is created and runs), and a recreate whose new container cannot
//! start puts the old container back (same id, original name, running, nothing left aside).

use crate::util::*;
use std::net::TcpListener;

/// An image reference on a loopback port nothing listens on: the engine's pull is refused at once (no
/// DNS, no internet, no timeout), so the image is not available.
fn unpullable_image() -> String {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0");
    format!("127.0.0.1:{port}/berth-missing/db:1")
}

/// The `error:` lines of a `berth apply`'s stderr.
fn error_lines(o: &std::process::Output) -> Vec<String> {
    stderr(o)
        .lines()
        .filter(|l| l.starts_with("error:"))
        .map(String::from)
        .collect()
}

fn missing_image_stack(db_image: &str) -> String {
    format!(
        r#"services:
  db:
    image: {db_image}
    command: {IDLE}
  app:
    image: {IMAGE}
    command: {IDLE}
    depends_on: [db]
  web:
    image: {IMAGE}
    command: {IDLE}
    depends_on:
      app:
        condition: service_started
  other:
    image: {IMAGE}
    command: {IDLE}
"#
    )
}

#[test]
fn a_missing_image_fails_its_service_skips_its_dependents_and_spares_the_rest() {
    let image = unpullable_image();
    let s = Stack::new("apply-missing-image", &missing_image_stack(&image));
    let (db, app, web, other) = (
        s.container("db"),
        s.container("app"),
        s.container("web"),
        s.container("other"),
    );

    let o = s.apply();
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let errors = error_lines(&o);
    // The failed service: named with its stack, and the image named.
    let stack_service = |service: &str| format!("stack {}, service {service}:", s.id);
    let db_error = errors
        .iter()
        .find(|l| l.contains(&stack_service("db")))
        .unwrap_or_else(|| {
            panic!(
                "no error naming stack {} and service db: {}",
                s.id,
                show(&o)
            )
        });
    assert!(
        db_error.contains(&db) && db_error.contains(&image),
        "the error must name the container and the image: {db_error}"
    );
    // Its dependents, direct and transitive: skipped, each naming the dependency that failed.
    for (service, dependency) in [("app", "db"), ("web", "app")] {
        let line = errors
            .iter()
            .find(|l| l.contains(&stack_service(service)))
            .unwrap_or_else(|| panic!("no error for service {service}: {}", show(&o)));
        assert!(
            line.contains("skipped") && line.contains(&format!("dependency {dependency}")),
            "{service} must be skipped because {dependency} failed: {line}"
        );
    }
    assert!(
        !errors.iter().any(|l| l.contains(&stack_service("other"))),
        "the unrelated service must not fail: {}",
        show(&o)
    );
    for name in [&db, &app, &web] {
        assert_eq!(container_id(name), None, "{name} must not be created");
    }
    assert!(
        stdout(&o).contains(&format!("create container {other}")),
        "{}",
        show(&o)
    );
    assert!(is_running(&other), "{other} must run: {}", show(&o));
    let owned: Vec<String> = s.owned().into_iter().map(|c| c.name).collect();
    assert_eq!(
        owned,
        vec![other.clone()],
        "only the unrelated service exists"
    );

    // With an image that exists, the next apply creates what was skipped and leaves `other` alone.
    let other_id = container_id(&other).unwrap();
    s.write(&missing_image_stack(IMAGE));
    let o = s.apply();
    assert!(o.status.success(), "berth apply: {}", show(&o));
    for name in [&db, &app, &web] {
        assert!(is_running(name), "{name} must run: {}", show(&o));
    }
    assert_eq!(container_id(&other).as_deref(), Some(other_id.as_str()));
}

fn one_service(extra: &str) -> String {
    format!(
        "services:\n  app:\n    image: {IMAGE}\n    command: {IDLE}\n    environment:\n      VERSION: \"1\"\n{extra}"
    )
}

/// One recreate whose new container is created but cannot start, for each way of failing at start: the
/// old container is renamed back, started again, and the failed new one is gone.
#[test]
fn a_recreate_whose_new_container_cannot_start_puts_the_old_one_back() {
    let s = Stack::new("apply-restore-old", &one_service(""));
    // An absolute host path that is a file, mounted over a directory of the image: the engine accepts
    // the container, and the runtime refuses to start it ("not a directory").
    let file = s.write_file("not-a-directory.txt", "a file\n");
    let cases = [
        (
            "a file bind-mounted over a directory",
            format!(
                "    volumes:\n      - {}:/etc:ro\n",
                file.to_str().expect("temp paths are UTF-8")
            ),
        ),
        (
            "an entrypoint that does not exist",
            "    entrypoint: [\"/no/such/program\"]\n".to_string(),
        ),
    ];
    let app = s.container("app");
    let aside = format!("{app}_berth-old");
    let o = s.apply();
    assert!(o.status.success(), "berth apply: {}", show(&o));
    let id = container_id(&app).expect("app created");
    assert!(is_running(&app));

    for (what, extra) in &cases {
        s.write(&one_service(extra));
        let o = s.apply();
        assert_eq!(o.status.code(), Some(1), "{what}: {}", show(&o));
        let errors = error_lines(&o);
        assert!(
            errors.iter().any(|l| l.contains(&format!(
                "stack {}, service app: recreate container {app}",
                s.id
            ))),
            "{what}: the error must name the stack, the service and the recreate: {}",
            show(&o)
        );
        assert_eq!(
            container_id(&app).as_deref(),
            Some(id.as_str()),
            "{what}: the old container must be back under its name: {:#?}",
            s.owned()
        );
        assert!(
            is_running(&app),
            "{what}: the old container must run again: {:?}",
            container_state(&app)
        );
        assert_eq!(
            container_id(&aside),
            None,
            "{what}: nothing may be left aside"
        );
        let owned = s.owned();
        assert_eq!(
            owned.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
            vec![id.as_str()],
            "{what}: the failed new container must be removed: {owned:#?}"
        );
        assert!(
            container_env(&app).contains(&"VERSION=1".to_string()),
            "{what}: the old container is the old spec"
        );

        // The restored container is the old spec exactly: going back to it changes nothing.
        s.write(&one_service(""));
        let o = s.apply();
        assert!(o.status.success(), "{what}: berth apply: {}", show(&o));
        assert!(stdout(&o).contains("up to date"), "{what}: {}", show(&o));
        assert_eq!(container_id(&app).as_deref(), Some(id.as_str()));
    }
}
