//! One-shot jobs with the real engine: a `restart: "no"` service whose process exits 0 by itself has done
//! its work and is not started again by later cycles, nor after the agent restarts; a long-running
//! `restart: "no"` service stopped by hand (its process also exits 0) is still repaired; a job whose spec
//! changes runs again.

use crate::util::*;

fn compose(run: &str) -> String {
    format!(
        "services:\n  job:\n    image: {IMAGE}\n    command: [\"sh\", \"-c\", \"echo job $RUN; exit 0\"]\n    restart: \"no\"\n    environment:\n      RUN: \"{run}\"\n  app:\n    image: {IMAGE}\n    command: {IDLE}\n"
    )
}

fn started_at(name: &str) -> String {
    inspect(name, "{{.Id}} {{.State.StartedAt}}").expect("container exists")
}

/// Wait until the job container `id` exited 0 and the agent's drift watcher saw it finish by itself.
fn wait_finished(agent: &Agent, job: &str) {
    wait_until(TIMEOUT, "the job to exit 0", || {
        container_state(job).as_deref() == Some("exited")
    });
    assert_eq!(inspect(job, "{{.State.ExitCode}}").as_deref(), Some("0"));
    let id = container_id(job).unwrap();
    wait_until(TIMEOUT, "the agent to see the job finish", || {
        agent
            .log_text()
            .lines()
            .any(|l| l.contains("exited 0 by itself") && l.contains(&id))
    });
}

#[test]
fn a_job_that_finished_is_not_run_again_but_a_service_stopped_by_hand_is() {
    let repo = GitRepo::new();
    repo.write("compose.yaml", &compose("1"));
    repo.commit_push("a job and an app");
    let mut agent = Agent::start("jobs", &repo);
    agent.reconcile_ok();
    let (job, app) = (agent.container("job"), agent.container("app"));
    wait_finished(&agent, &job);
    let ran = started_at(&job);

    // Later cycles (what the interval and webhooks bring) leave it done.
    for _ in 0..3 {
        agent.reconcile_ok();
    }
    assert_eq!(started_at(&job), ran, "the job was started again");
    assert_eq!(container_state(&job).as_deref(), Some("exited"));

    // So does an agent that restarts: what finished is kept in the store.
    agent.stop();
    agent.spawn();
    agent.reconcile_ok();
    assert_eq!(started_at(&job), ran, "the job ran again after a restart");

    // A long-running `restart: no` service stopped by hand exits 0 too (it traps TERM), but that is drift.
    let before = started_at(&app);
    docker_ok(&["stop", &app]);
    wait_until(TIMEOUT, "the app stopped by hand to run again", || {
        is_running(&app) && started_at(&app) != before
    });
    assert_eq!(started_at(&job), ran);

    // A new spec for the job: it is recreated and runs once more.
    repo.write("compose.yaml", &compose("2"));
    repo.commit_push("run the job again");
    agent.reconcile_ok();
    wait_finished(&agent, &job);
    let again = started_at(&job);
    assert_ne!(again, ran, "the changed job ran again");
    assert!(container_env(&job).contains(&"RUN=2".to_string()));
    agent.reconcile_ok();
    assert_eq!(started_at(&job), again);
}
