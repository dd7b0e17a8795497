//! Cron jobs over the hermetic world, with the clock given: each occurrence runs once, one run
//! at a time per job, sleeping environments skip and say so, a restart interrupts what ran.

mod world;

use offshoot_api_types::EnvStatus;
use offshoot_store::Environment;
use world::*;

/// Two cron jobs: `tick` every minute, `report` hourly at `report_minute`.
fn cronned_template(report_minute: i64) -> String {
    format!(
        "app: shop\nservices:\n- name: web\n  image: busybox\ncron_jobs:\n- name: report\n  image: busybox\n  schedule: '{report_minute} * * * *'\n- name: tick\n  from_services: web\n  schedule: '* * * * *'\n"
    )
}

const MIN: i64 = 60_000;

/// A ready environment with the two cron jobs, `report` due three minutes after the minute it
/// was created in.
async fn cronned(w: &World) -> Environment {
    w.app().await;
    let env = w.env("main").await;
    let template = cronned_template((env.created_at / MIN + 3) % 60);
    w.store.set_env_config(&env.id, &template, &env.env_vars).await.expect("template");
    w.store.set_env_status(&env.id, EnvStatus::Ready, None).await.expect("ready");
    w.store.env(&env.id).await.expect("read").expect("env")
}

/// A round at `now` (the clock is the test's), with every run it starts run to its end; the
/// jobs that ran.
async fn round(w: &World, now: i64) -> Vec<String> {
    let runs = w.admin().cron_round(now).await.expect("round");
    let mut names: Vec<String> = runs.iter().map(|r| r.job.clone()).collect();
    for r in &runs {
        w.admin().run_cron(r).await.expect("run");
    }
    names.sort();
    names
}

async fn history(w: &World, id: &str, job: &str) -> Vec<(i64, String, Option<String>)> {
    w.store.cron_runs(id, Some(job)).await.expect("runs").into_iter().map(|r| (r.scheduled_at / MIN, r.status, r.reason)).collect()
}

#[tokio::test]
async fn each_occurrence_runs_once_on_the_environments_engine() {
    let w = World::new().await;
    let env = cronned(&w).await;
    let created = env.created_at;
    // Minutes counted from the environment's creation.
    let at = |minutes: i64| (created / MIN + minutes) * MIN;
    assert_eq!(round(&w, at(0) + 10).await, Vec::<String>::new(), "nothing fired since it was created");
    assert_eq!(round(&w, at(1) + 10).await, ["tick"], "the every-minute job");
    assert_eq!(round(&w, at(1) + 40_000).await, Vec::<String>::new(), "the same minute again: nothing");
    let engine = w.ports.engine_of(&env.id);
    assert_eq!(engine.count("jobs.tick"), 1);
    let runs = w.store.cron_runs(&env.id, Some("tick")).await.expect("runs");
    assert_eq!((runs[0].status.as_str(), runs[0].output.as_str()), ("succeeded", "job tick ran"));
    // Both fire when the hourly job's minute comes.
    assert_eq!(round(&w, at(2) + 10).await, ["tick"]);
    assert_eq!(round(&w, at(3) + 10).await, ["report", "tick"]);
    assert_eq!(engine.count("jobs.report"), 1);
}

#[tokio::test]
async fn a_run_still_going_and_a_sleeping_environment_skip_and_say_why() {
    let w = World::new().await;
    let env = cronned(&w).await;
    let created = env.created_at;
    let at = |minutes: i64| (created / MIN + minutes) * MIN;
    let engine = w.ports.engine_of(&env.id);
    engine.hang("jobs.tick");
    // The first run hangs; the next minute's occurrence is skipped.
    let first = w.admin().cron_round(at(1) + 10).await.expect("round");
    assert_eq!(first.len(), 1);
    let run = first[0].clone();
    let ports = &w.ports;
    let store = &w.store;
    let hung = async {
        offshoot_control::Control::new(store, ports, offshoot_control::Actor::token()).run_cron(&run).await.expect("run");
    };
    tokio::select! {
        () = hung => panic!("the hung run ended"),
        () = async {
            engine.call_began().await;
            assert!(w.admin().cron_round(at(2) + 10).await.expect("round").is_empty());
        } => {}
    }
    let h = history(&w, &env.id, "tick").await;
    assert_eq!(h[0], (at(2) / MIN, "skipped".into(), Some("the previous run is still running".into())));
    assert_eq!(h[1].1, "running");
    // The server restarts: the run that was going is interrupted.
    let interrupted = w.admin().interrupt_cron_runs().await.expect("interrupt");
    assert_eq!(interrupted.len(), 1);
    let h = history(&w, &env.id, "tick").await;
    assert_eq!(h[1], (at(1) / MIN, "interrupted".into(), Some("the server stopped during the run".into())));
    engine.unhang("jobs.tick");

    // Asleep: skipped, and said so; awake again, it runs.
    w.store.set_env_status(&env.id, EnvStatus::Sleeping, None).await.expect("asleep");
    assert!(round(&w, at(3) + 10).await.is_empty());
    assert_eq!(history(&w, &env.id, "tick").await[0], (at(3) / MIN, "skipped".into(), Some("the environment is asleep".into())));
    w.store.set_env_status(&env.id, EnvStatus::Ready, None).await.expect("awake");
    assert_eq!(round(&w, at(4) + 10).await, ["tick"]);

    // The server was down for ten minutes: the latest occurrence runs once, and says so.
    assert_eq!(round(&w, at(14) + 10).await.iter().filter(|j| *j == "tick").count(), 1);
    let (_, status, reason) = history(&w, &env.id, "tick").await.remove(0);
    assert_eq!(status, "succeeded");
    assert!(reason.is_some_and(|r| r.starts_with("caught up: 9 earlier occurrence(s)")), "one run for ten occurrences");
}

#[tokio::test]
async fn a_failed_run_keeps_the_engines_message() {
    let w = World::new().await;
    let env = cronned(&w).await;
    let created = env.created_at;
    w.ports.engine_of(&env.id).fail("jobs.tick", "job `tick` exited with code 3: boom");
    round(&w, (created / MIN + 1) * MIN + 10).await;
    let h = history(&w, &env.id, "tick").await;
    assert_eq!(h[0].1, "failed");
    assert_eq!(h[0].2.as_deref(), Some("job `tick` exited with code 3: boom"));
}
