//! Hermetic scenarios of the control plane: the planner on real templates, the executor on the
//! fake engine with a real (temporary SQLite) step log. No engine, no network: seconds in all.

mod common;

use common::{Ctx, KillingLog, resolved, run, run_until_killed, steps};
use offshoot_control::fake::FakeBackend;
use offshoot_control::{ExecError, PlanError, StepLog, StepStatus, Workflow, plan};
use offshoot_template::model::Task;
use std::time::{Duration, Instant};

/// Four services (`api` waits for `db` and `cache`, `web` for `api`), two built from the
/// repository, and two jobs (`migrate` halts the workflow when it fails).
const SHOP: &str = r#"
app: shop
services:
- name: db
  image: busybox:stable
- name: cache
  image: busybox:stable
- name: api
  image: offshoot/shop/api
  has_repo: true
  build:
    context: api
  depends_on: [db, cache]
- name: web
  image: offshoot/shop/web
  has_repo: true
  build:
    context: web
  depends_on: [api]
jobs:
- name: migrate
  image: busybox:stable
  halt_on_error: true
- name: seed
  image: busybox:stable
"#;

fn with_workflows(workflows: &str) -> String {
    format!("{SHOP}workflows:\n{workflows}")
}

/// Setup in three steps: the data services, then the migration beside the API, then the web.
fn staged() -> String {
    with_workflows(
        r#"- name: setup
  parallelize:
  - step: data
    tasks: [services.db, services.cache]
  - step: app
    tasks: [jobs.migrate, services.api, jobs.seed]
  - step: front
    tasks: [services.web]
- name: patch
  parallelize:
  - step: app
    tasks: [services.api, jobs.migrate]
  - step: front
    tasks: [services.web]
- name: teardown
  parallelize:
  - step: backup
    tasks: [jobs.seed]
  - step: remove
    tasks: [release.remove_environment]
"#,
    )
}

fn names(plan: &offshoot_control::Plan) -> Vec<Vec<Vec<String>>> {
    plan.steps.iter().map(|s| s.waves.iter().map(|w| w.iter().map(|t| t.key()).collect()).collect()).collect()
}

fn failure(r: Result<offshoot_control::Report, ExecError>) -> ExecError {
    match r {
        Ok(report) => panic!("the workflow succeeded: {report:?}"),
        Err(e) => e,
    }
}

// ---- The planner ---------------------------------------------------------------------------

#[test]
fn default_setup_starts_every_service_in_dependency_waves() {
    let s = steps(SHOP, Workflow::Setup);
    assert_eq!(names(&s), vec![vec![vec!["services.db", "services.cache"], vec!["services.api"], vec!["services.web"]]]);
    assert!(s.steps[0].wait_for_finish && !s.steps[0].halt_on_error);
}

#[test]
fn default_patch_restarts_only_what_the_repository_builds() {
    let s = steps(SHOP, Workflow::Patch);
    assert_eq!(names(&s), vec![vec![vec!["services.api"], vec!["services.web"]]]);
}

#[test]
fn default_teardown_removes_the_environment_and_halts_on_error() {
    let s = steps(SHOP, Workflow::Teardown);
    assert_eq!(names(&s), vec![vec![vec!["release.remove_environment"]]]);
    assert!(s.steps[0].halt_on_error);
}

#[test]
fn parallelize_keeps_step_names_order_and_flags() {
    let yaml = with_workflows(
        r#"- name: setup
  parallelize:
  - step: first
    tasks: [services.db]
    halt_on_error: true
  - step: second
    tasks: [services.cache]
    wait_for_finish: false
"#,
    );
    let s = steps(&yaml, Workflow::Setup);
    assert_eq!(
        s.steps.iter().map(|x| (x.idx, x.name.as_str(), x.halt_on_error, x.wait_for_finish)).collect::<Vec<_>>(),
        vec![(0, "first", true, true), (1, "second", false, false)]
    );
}

#[test]
fn order_from_runs_one_task_per_step_in_order() {
    let yaml = with_workflows("- name: setup\n  order_from: [services.cache, services.db, jobs.seed]\n");
    let s = steps(&yaml, Workflow::Setup);
    assert_eq!(names(&s), vec![vec![vec!["services.cache"]], vec![vec!["services.db"]], vec![vec!["jobs.seed"]]]);
}

#[test]
fn services_all_stands_for_every_service_in_template_order() {
    let yaml = with_workflows("- name: setup\n  order_from: [services.all]\n");
    let s = steps(&yaml, Workflow::Setup);
    assert_eq!(names(&s), vec![vec![vec!["services.db", "services.cache"], vec!["services.api"], vec!["services.web"]]]);
}

#[test]
fn a_dependency_started_by_another_step_is_not_waited_for_within_a_step() {
    let yaml = with_workflows(
        "- name: setup\n  parallelize:\n  - step: a\n    tasks: [services.db]\n  - step: b\n    tasks: [services.api, services.web]\n",
    );
    let s = steps(&yaml, Workflow::Setup);
    assert_eq!(names(&s)[1], vec![vec!["services.api"], vec!["services.web"]]);
}

#[test]
fn a_job_with_halt_on_error_is_marked_to_halt() {
    let s = steps(&staged(), Workflow::Setup);
    let halts: Vec<(String, bool)> = s.steps[1].tasks().map(|t| (t.key(), t.halts)).collect();
    assert!(halts.contains(&("jobs.migrate".into(), true)), "{halts:?}");
    assert!(halts.contains(&("jobs.seed".into(), false)), "{halts:?}");
    assert!(halts.contains(&("services.api".into(), false)), "{halts:?}");
}

#[test]
fn a_task_written_twice_in_a_step_runs_once() {
    let yaml = with_workflows("- name: setup\n  parallelize:\n  - step: a\n    tasks: [services.db, services.db]\n");
    assert_eq!(names(&steps(&yaml, Workflow::Setup)), vec![vec![vec!["services.db"]]]);
}

#[test]
fn workflows_have_one_string_form() {
    for w in [Workflow::Setup, Workflow::Patch, Workflow::Teardown] {
        assert_eq!(w.as_str().parse::<Workflow>(), Ok(w));
        assert_eq!(w.to_string(), w.as_str());
    }
    let e = "deploy".parse::<Workflow>().expect_err("not a workflow");
    assert_eq!(e, PlanError::UnknownWorkflow("deploy".into()));
    assert!(e.to_string().contains("`setup`, `patch` or `teardown`"), "{e}");
}

#[test]
fn the_planner_is_pure() {
    let r = resolved(&staged());
    for w in [Workflow::Setup, Workflow::Patch, Workflow::Teardown] {
        assert_eq!(plan(&r, w), plan(&r, w));
    }
}

#[test]
fn chart_tasks_are_planned_as_written() {
    let yaml = format!(
        "{}charts:\n- name: redis\n  directory: charts/redis\n",
        with_workflows("- name: setup\n  order_from: [charts.redis, services.db]\n")
    );
    let s = steps(&yaml, Workflow::Setup);
    assert_eq!(s.steps[0].waves[0][0].task, Task::Chart("redis".into()));
}

// ---- The executor --------------------------------------------------------------------------

#[tokio::test]
async fn setup_starts_each_service_once_and_logs_every_step_and_task() {
    let ctx = Ctx::new().await;
    let log = ctx.deployment("d1", Workflow::Setup).await;
    let fake = FakeBackend::new();
    let s = steps(&staged(), Workflow::Setup);
    let report = run(&s, &fake, &log).await.expect("setup succeeds");
    let st = fake.state();
    assert_eq!(st.calls.first().map(String::as_str), Some("prepare"));
    assert_eq!(st.calls.last().map(String::as_str), Some("finish"));
    for svc in ["db", "cache", "api", "web"] {
        assert_eq!(st.running.get(svc), Some(&1), "{svc} started once: {st:?}");
    }
    assert_eq!(report.steps.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), vec!["data", "app", "front"]);
    let p = log.load().await.expect("load the log");
    assert!(p.steps.values().all(|(s, _)| *s == StepStatus::Done), "{p:?}");
    assert_eq!(p.tasks.len(), 6, "{p:?}");
    let job = p.task(1, "jobs.migrate").expect("the job's record");
    assert_eq!(job, &(StepStatus::Done, "job migrate ran".to_owned()));
}

#[tokio::test]
async fn a_service_starts_only_after_the_services_it_depends_on_are_ready() {
    let ctx = Ctx::new().await;
    let log = ctx.deployment("d1", Workflow::Setup).await;
    let fake = FakeBackend::new();
    fake.delay("services.db", Duration::from_millis(60));
    run(&steps(SHOP, Workflow::Setup), &fake, &log).await.expect("setup succeeds");
    let st = fake.state();
    let began = |c: &str| st.calls.iter().position(|x| x == c).expect("began");
    let done = |c: &str| st.ended.iter().position(|x| x == c).expect("ended");
    // `api` began after `db` ended: everything that ended before it began is in `ended` first.
    assert!(done("services.db") < done("services.api"));
    assert!(began("services.api") > began("services.db"));
    assert!(began("services.web") > began("services.api"));
    assert_eq!(st.ended[..2].iter().filter(|c| c.starts_with("services.")).count(), 1, "cache ended first: {st:?}");
}

#[tokio::test]
async fn independent_services_start_at_once() {
    let ctx = Ctx::new().await;
    let log = ctx.deployment("d1", Workflow::Setup).await;
    let fake = FakeBackend::new();
    for s in ["db", "cache"] {
        fake.delay(&format!("services.{s}"), Duration::from_millis(200));
    }
    let t = Instant::now();
    run(&steps(SHOP, Workflow::Setup), &fake, &log).await.expect("setup succeeds");
    assert_eq!(fake.state().max_in_flight, 2);
    assert!(t.elapsed() < Duration::from_millis(390), "the two 200 ms starts overlapped: {:?}", t.elapsed());
}

#[tokio::test]
async fn a_failing_service_fails_the_workflow_but_the_rest_still_runs() {
    let ctx = Ctx::new().await;
    let log = ctx.deployment("d1", Workflow::Setup).await;
    let fake = FakeBackend::new();
    fake.fail("services.cache", "port 6379 never answered");
    let e = failure(run(&steps(&staged(), Workflow::Setup), &fake, &log).await);
    assert_eq!(e.to_string(), "step `data`: services.cache: port 6379 never answered");
    assert!(matches!(e, ExecError::Failed { .. }));
    // The later steps ran, and what follows the services too.
    assert_eq!(fake.count("services.web"), 1);
    assert_eq!(fake.count("finish"), 1);
    let p = log.load().await.expect("log");
    assert_eq!(p.step(0).map(|s| s.0), Some(StepStatus::Failed));
    assert_eq!(p.task(0, "services.cache").map(|s| s.0), Some(StepStatus::Failed));
    assert_eq!(p.task(0, "services.db").map(|s| s.0), Some(StepStatus::Done));
}

#[tokio::test]
async fn every_failure_is_reported_with_its_step() {
    let ctx = Ctx::new().await;
    let log = ctx.deployment("d1", Workflow::Setup).await;
    let fake = FakeBackend::new();
    fake.fail("services.db", "exited with code 1").fail("services.web", "image not found");
    let e = failure(run(&steps(&staged(), Workflow::Setup), &fake, &log).await);
    assert_eq!(e.to_string(), "step `data`: services.db: exited with code 1; step `front`: services.web: image not found");
}

#[tokio::test]
async fn halt_on_error_stops_the_workflow_at_the_failing_step() {
    let yaml = with_workflows(
        "- name: setup\n  parallelize:\n  - step: a\n    tasks: [services.db]\n    halt_on_error: true\n  - step: b\n    tasks: [services.api]\n",
    );
    let ctx = Ctx::new().await;
    let log = ctx.deployment("d1", Workflow::Setup).await;
    let fake = FakeBackend::new();
    fake.fail("services.db", "boom");
    let e = failure(run(&steps(&yaml, Workflow::Setup), &fake, &log).await);
    assert!(matches!(&e, ExecError::Halted { step, .. } if step == "a"), "{e:?}");
    assert_eq!(e.to_string(), "step `a`: services.db: boom");
    assert_eq!(fake.count("services.api"), 0);
    assert_eq!(fake.count("finish"), 0, "a halted workflow does not finish");
}

#[tokio::test]
async fn a_job_with_halt_on_error_stops_the_workflow_whatever_its_step_says() {
    let ctx = Ctx::new().await;
    let log = ctx.deployment("d1", Workflow::Setup).await;
    let fake = FakeBackend::new();
    fake.fail("jobs.migrate", "exited with code 3");
    let e = failure(run(&steps(&staged(), Workflow::Setup), &fake, &log).await);
    assert!(matches!(&e, ExecError::Halted { step, .. } if step == "app"), "{e:?}");
    // The step's other tasks ran (they began at once); the next step did not.
    assert_eq!(fake.count("services.api"), 1);
    assert_eq!(fake.count("services.web"), 0);
}

#[tokio::test]
async fn a_job_without_halt_on_error_fails_the_workflow_at_its_end() {
    let ctx = Ctx::new().await;
    let log = ctx.deployment("d1", Workflow::Setup).await;
    let fake = FakeBackend::new();
    fake.fail("jobs.seed", "no data");
    let e = failure(run(&steps(&staged(), Workflow::Setup), &fake, &log).await);
    assert_eq!(e.to_string(), "step `app`: jobs.seed: no data");
    assert_eq!(fake.count("services.web"), 1);
}

#[tokio::test]
async fn a_step_not_waited_for_does_not_hold_the_workflow() {
    let yaml = with_workflows(
        "- name: setup\n  parallelize:\n  - step: slow\n    tasks: [jobs.seed]\n    wait_for_finish: false\n  - step: b\n    tasks: [services.db]\n",
    );
    let ctx = Ctx::new().await;
    let log = ctx.deployment("d1", Workflow::Setup).await;
    let fake = FakeBackend::new();
    fake.hang("jobs.seed");
    let report = tokio::time::timeout(Duration::from_secs(5), run(&steps(&yaml, Workflow::Setup), &fake, &log))
        .await
        .expect("the workflow did not wait for the step")
        .expect("succeeds");
    assert_eq!(report.steps[0], ("slow".to_owned(), "started without waiting".to_owned()));
    assert_eq!(fake.count("services.db"), 1);
    assert_eq!(fake.count("jobs.seed"), 1, "the step was started");
    assert_eq!(log.load().await.expect("log").step(0).map(|s| s.0), Some(StepStatus::Done));
}

#[tokio::test]
async fn a_step_not_waited_for_is_handed_to_whoever_runs_the_executor() {
    let yaml = with_workflows(
        "- name: setup\n  parallelize:\n  - step: later\n    tasks: [jobs.seed]\n    wait_for_finish: false\n  - step: b\n    tasks: [services.db]\n",
    );
    let ctx = Ctx::new().await;
    let log = ctx.deployment("d1", Workflow::Setup).await;
    let fake = FakeBackend::new();
    let handed: std::sync::Mutex<Vec<offshoot_control::Detached>> = std::sync::Mutex::default();
    let detach = |work| handed.lock().expect("lock").push(work);
    let plan = steps(&yaml, Workflow::Setup);
    offshoot_control::execute_in(&plan, &std::sync::Arc::new(fake.clone()), &log, &detach).await.expect("succeeds");
    assert_eq!(fake.count("jobs.seed"), 0, "not started by the executor itself");
    let work: Vec<_> = handed.lock().expect("lock").drain(..).collect();
    assert_eq!(work.len(), 1);
    for w in work {
        w.await;
    }
    assert_eq!(fake.count("jobs.seed"), 1, "it runs when its runner runs it");
}

#[tokio::test]
async fn a_failure_in_a_step_not_waited_for_does_not_fail_the_workflow() {
    let yaml = with_workflows(
        "- name: setup\n  parallelize:\n  - step: bg\n    tasks: [jobs.seed]\n    wait_for_finish: false\n    halt_on_error: true\n  - step: b\n    tasks: [services.db]\n",
    );
    let ctx = Ctx::new().await;
    let log = ctx.deployment("d1", Workflow::Setup).await;
    let fake = FakeBackend::new();
    fake.fail("jobs.seed", "boom");
    run(&steps(&yaml, Workflow::Setup), &fake, &log).await.expect("succeeds");
    assert_eq!(fake.count("services.db"), 1);
}

#[tokio::test]
async fn default_teardown_removes_the_environment() {
    let ctx = Ctx::new().await;
    let fake = FakeBackend::new();
    run(&steps(SHOP, Workflow::Setup), &fake, &ctx.deployment("d1", Workflow::Setup).await).await.expect("setup");
    assert_eq!(fake.state().running.len(), 4);
    run(&steps(SHOP, Workflow::Teardown), &fake, &ctx.deployment("d2", Workflow::Teardown).await).await.expect("teardown");
    assert!(fake.state().running.is_empty());
    assert_eq!(fake.count("release.remove_environment"), 1);
}

#[tokio::test]
async fn teardown_runs_its_jobs_before_the_removal() {
    let ctx = Ctx::new().await;
    let fake = FakeBackend::new();
    run(&steps(&staged(), Workflow::Teardown), &fake, &ctx.deployment("d1", Workflow::Teardown).await).await.expect("teardown");
    let st = fake.state();
    let job = st.calls.iter().position(|c| c == "jobs.seed").expect("job ran");
    let rm = st.calls.iter().position(|c| c == "release.remove_environment").expect("removed");
    assert!(job < rm);
}

#[tokio::test]
async fn patch_restarts_only_the_services_its_workflow_names() {
    let ctx = Ctx::new().await;
    let fake = FakeBackend::new();
    run(&steps(SHOP, Workflow::Setup), &fake, &ctx.deployment("d1", Workflow::Setup).await).await.expect("setup");
    run(&steps(SHOP, Workflow::Patch), &fake, &ctx.deployment("d2", Workflow::Patch).await).await.expect("patch");
    let running = fake.state().running;
    assert_eq!((running["db"], running["cache"], running["api"], running["web"]), (1, 1, 2, 2));
}

#[tokio::test]
async fn an_unsupported_task_fails_with_its_name() {
    let yaml = format!(
        "{}charts:\n- name: redis\n  directory: charts/redis\n",
        with_workflows("- name: setup\n  order_from: [charts.redis, services.db]\n")
    );
    let ctx = Ctx::new().await;
    let fake = FakeBackend::new();
    let e = failure(run(&steps(&yaml, Workflow::Setup), &fake, &ctx.deployment("d1", Workflow::Setup).await).await);
    assert!(e.to_string().starts_with("step `charts.redis`: charts.redis: this runtime cannot run `charts.redis`"), "{e}");
    assert_eq!(fake.count("services.db"), 1, "the workflow went on");
}

#[tokio::test]
async fn infrastructure_applies_in_setup_and_destroys_in_teardown_before_the_removal() {
    let yaml = format!(
        "{}infrastructure:\n- name: bucket\n  type: terraform\n  directory: infra\n",
        with_workflows(
            "- name: setup\n  order_from: [infrastructure.bucket, services.db]\n\
             - name: teardown\n  order_from: [infrastructure.bucket, release.remove_environment]\n"
        )
    );
    let ctx = Ctx::new().await;
    let fake = FakeBackend::new();
    run(&steps(&yaml, Workflow::Setup), &fake, &ctx.deployment("d1", Workflow::Setup).await).await.expect("setup");
    run(&steps(&yaml, Workflow::Teardown), &fake, &ctx.deployment("d2", Workflow::Teardown).await).await.expect("teardown");
    let calls = fake.state().calls;
    let at = |c: &str| calls.iter().position(|x| x == c).unwrap_or_else(|| panic!("{c} in {calls:?}"));
    assert!(at("infrastructure.bucket:apply") < at("services.db"));
    assert!(at("infrastructure.bucket:destroy") < at("release.remove_environment"));
    assert_eq!(fake.count("infrastructure.bucket:apply"), 1);
}

#[tokio::test]
async fn a_failed_destroy_halts_the_teardown_before_the_removal() {
    let yaml = format!(
        "{}infrastructure:\n- name: bucket\n  type: terraform\n  directory: infra\n",
        with_workflows("- name: teardown\n  order_from: [infrastructure.bucket, release.remove_environment]\n")
    );
    let ctx = Ctx::new().await;
    let fake = FakeBackend::new();
    fake.fail("infrastructure.bucket:destroy", "Error: local-exec provisioner error");
    let e = failure(run(&steps(&yaml, Workflow::Teardown), &fake, &ctx.deployment("d1", Workflow::Teardown).await).await);
    assert!(e.to_string().contains("infrastructure.bucket: Error: local-exec provisioner error"), "{e}");
    assert_eq!(fake.count("release.remove_environment"), 0);
}

#[tokio::test]
async fn a_failed_prepare_runs_no_task() {
    let ctx = Ctx::new().await;
    let fake = FakeBackend::new();
    fake.fail("prepare", "the engine is gone");
    let e = failure(run(&steps(SHOP, Workflow::Setup), &fake, &ctx.deployment("d1", Workflow::Setup).await).await);
    assert_eq!(e.to_string(), "preparing the environment: the engine is gone");
    assert_eq!(fake.state().calls, vec!["prepare"]);
}

#[tokio::test]
async fn a_failed_finish_fails_the_workflow() {
    let ctx = Ctx::new().await;
    let fake = FakeBackend::new();
    fake.fail("finish", "ingress refused");
    let e = failure(run(&steps(SHOP, Workflow::Setup), &fake, &ctx.deployment("d1", Workflow::Setup).await).await);
    assert_eq!(e.to_string(), "finishing the workflow: ingress refused");
}

#[tokio::test]
async fn finish_runs_after_a_failure_that_did_not_halt_and_both_are_reported() {
    let ctx = Ctx::new().await;
    let fake = FakeBackend::new();
    fake.fail("services.web", "image not found").fail("finish", "ingress refused");
    let e = failure(run(&steps(SHOP, Workflow::Setup), &fake, &ctx.deployment("d1", Workflow::Setup).await).await);
    assert_eq!(e.to_string(), "step `services-0`: services.web: image not found; finishing the workflow: ingress refused");
}

#[tokio::test]
async fn a_finished_deployment_run_again_runs_no_task() {
    let ctx = Ctx::new().await;
    let fake = FakeBackend::new();
    let s = steps(&staged(), Workflow::Setup);
    let log = ctx.deployment("d1", Workflow::Setup).await;
    let first = run(&s, &fake, &log).await.expect("setup");
    let before = fake.state().ended.len();
    let again = run(&s, &fake, &log).await.expect("again");
    assert_eq!(first, again, "the report comes from the log");
    let st = fake.state();
    assert_eq!(st.ended[before..], ["prepare", "finish"], "only the converging edges ran again");
}

#[tokio::test]
async fn a_halted_deployment_run_again_halts_again_without_running_anything() {
    let ctx = Ctx::new().await;
    let fake = FakeBackend::new();
    fake.fail("jobs.migrate", "exited with code 3");
    let s = steps(&staged(), Workflow::Setup);
    let log = ctx.deployment("d1", Workflow::Setup).await;
    let first = failure(run(&s, &fake, &log).await).to_string();
    fake.heal("jobs.migrate");
    let calls = fake.state().calls.len();
    let again = failure(run(&s, &fake, &log).await);
    assert!(matches!(again, ExecError::Halted { .. }));
    assert_eq!(again.to_string(), first);
    assert_eq!(fake.state().calls[calls..], ["prepare"]);
}

#[tokio::test]
async fn a_failed_step_that_did_not_halt_is_not_retried_on_resume() {
    let ctx = Ctx::new().await;
    let fake = FakeBackend::new();
    fake.fail("services.db", "boom");
    let s = steps(&staged(), Workflow::Setup);
    let log = ctx.deployment("d1", Workflow::Setup).await;
    let first = failure(run(&s, &fake, &log).await).to_string();
    let again = failure(run(&s, &fake, &log).await).to_string();
    assert_eq!(first, again);
    assert_eq!(fake.count("services.db"), 1);
}

/// Kills the executor after each possible number of records, resumes with a new one on the same
/// store and engine, and checks that the workflow ends as an uninterrupted one does and that no
/// task whose end was recorded ran again.
async fn crash_at_every_point(yaml: &str, workflow: Workflow, prior: Option<Workflow>) -> usize {
    let s = steps(yaml, workflow);
    // The reference: an uninterrupted run.
    let reference = {
        let ctx = Ctx::new().await;
        let fake = FakeBackend::new();
        if let Some(p) = prior {
            run(&steps(yaml, p), &fake, &ctx.deployment("d0", p).await).await.expect("the prior workflow");
        }
        let log = ctx.deployment("d1", workflow).await;
        let report = run(&s, &fake, &log).await.expect("the uninterrupted run");
        (report, log.load().await.expect("log"), fake.state().running)
    };
    let records = reference.1.steps.len() * 2 + reference.1.tasks.len();
    for n in 0..records {
        let ctx = Ctx::new().await;
        let fake = FakeBackend::new();
        if let Some(p) = prior {
            run(&steps(yaml, p), &fake, &ctx.deployment("d0", p).await).await.expect("the prior workflow");
        }
        let calls_before = fake.state().calls.len();
        let killing = KillingLog::new(ctx.deployment("d1", workflow).await, n);
        assert!(run_until_killed(&s, &fake, &killing).await.is_none(), "killed after {n} of {records} records");
        let recorded = killing.inner.load().await.expect("log");
        let ran_first: Vec<String> = fake.state().calls[calls_before..].to_vec();
        let resumed_from = fake.state().calls.len();
        let report = run(&s, &fake, &killing.inner).await.unwrap_or_else(|e| panic!("resume after {n} records: {e}"));
        assert_eq!(report, reference.0, "after {n} records");
        assert_eq!(killing.inner.load().await.expect("log"), reference.1, "the log after {n} records");
        assert_eq!(fake.state().running.keys().collect::<Vec<_>>(), reference.2.keys().collect::<Vec<_>>(), "after {n} records");
        let ran_again = &fake.state().calls[resumed_from..];
        for ((_, task), (status, _)) in &recorded.tasks {
            if status.ended() {
                assert!(
                    !ran_again.contains(task),
                    "`{task}` ended before the crash (after {n} records) and ran again: {ran_first:?} then {ran_again:?}"
                );
            }
        }
    }
    records
}

#[tokio::test]
async fn setup_resumes_after_a_crash_at_every_point() {
    let yaml = with_workflows("- name: setup\n  order_from: [services.db, jobs.migrate, services.cache, services.api, services.web]\n");
    assert_eq!(crash_at_every_point(&yaml, Workflow::Setup, None).await, 15);
}

#[tokio::test]
async fn staged_setup_with_concurrent_tasks_resumes_after_a_crash_at_every_point() {
    assert_eq!(crash_at_every_point(&staged(), Workflow::Setup, None).await, 12);
}

#[tokio::test]
async fn patch_resumes_after_a_crash_at_every_point() {
    assert_eq!(crash_at_every_point(&staged(), Workflow::Patch, Some(Workflow::Setup)).await, 7);
}

#[tokio::test]
async fn teardown_resumes_after_a_crash_at_every_point() {
    assert_eq!(crash_at_every_point(&staged(), Workflow::Teardown, Some(Workflow::Setup)).await, 6);
}

#[tokio::test]
async fn default_setup_resumes_after_a_crash_at_every_point() {
    assert_eq!(crash_at_every_point(SHOP, Workflow::Setup, None).await, 6);
}

#[tokio::test]
async fn a_task_interrupted_mid_way_runs_again_and_only_it() {
    let yaml = with_workflows("- name: setup\n  parallelize:\n  - step: all\n    tasks: [services.db, services.cache, jobs.seed]\n");
    let s = steps(&yaml, Workflow::Setup);
    let ctx = Ctx::new().await;
    let log = ctx.deployment("d1", Workflow::Setup).await;
    let fake = FakeBackend::new();
    fake.hang("jobs.seed");
    let killed = tokio::time::timeout(Duration::from_millis(300), run(&s, &fake, &log)).await;
    assert!(killed.is_err(), "the hanging job held the step");
    fake.unhang("jobs.seed");
    run(&s, &fake, &log).await.expect("resumed");
    assert_eq!((fake.count("services.db"), fake.count("services.cache"), fake.count("jobs.seed")), (1, 1, 2));
}

#[tokio::test]
async fn a_log_written_before_task_records_existed_resumes_by_step() {
    // Deployments interrupted under the previous version have step records only.
    let ctx = Ctx::new().await;
    let log = ctx.deployment("d1", Workflow::Setup).await;
    log.record_step(0, "data", StepStatus::Done, "").await.expect("record");
    log.record_step(1, "app", StepStatus::Running, "").await.expect("record");
    let fake = FakeBackend::new();
    run(&steps(&staged(), Workflow::Setup), &fake, &log).await.expect("resumed");
    assert_eq!((fake.count("services.db"), fake.count("services.api"), fake.count("services.web")), (0, 1, 1));
}

#[tokio::test]
async fn the_log_belongs_to_one_deployment() {
    let ctx = Ctx::new().await;
    let fake = FakeBackend::new();
    let s = steps(SHOP, Workflow::Setup);
    run(&s, &fake, &ctx.deployment("d1", Workflow::Setup).await).await.expect("first");
    run(&s, &fake, &ctx.deployment("d2", Workflow::Setup).await).await.expect("second");
    assert_eq!(fake.count("services.db"), 2, "a new deployment runs everything again");
}

#[tokio::test]
async fn step_statuses_have_one_string_form() {
    for s in [StepStatus::Running, StepStatus::Done, StepStatus::Failed] {
        assert_eq!(StepStatus::parse(s.as_str()), s);
    }
    assert_eq!(StepStatus::parse("something else"), StepStatus::Running);
    assert!(!StepStatus::Running.ended() && StepStatus::Done.ended() && StepStatus::Failed.ended());
}

#[tokio::test]
async fn teardown_neither_prepares_nor_finishes() {
    let ctx = Ctx::new().await;
    let fake = FakeBackend::new();
    run(&steps(&staged(), Workflow::Teardown), &fake, &ctx.deployment("d1", Workflow::Teardown).await).await.expect("teardown");
    assert_eq!(fake.state().calls, vec!["jobs.seed", "release.remove_environment"]);
}

// ---- The conformance scenarios, on the fake engine --------------------------------------------

#[tokio::test]
async fn the_conformance_scenarios_play_as_specified_on_the_fake_engine() {
    let all = offshoot_control::conformance::scenarios();
    assert!(all.len() >= 7);
    for sc in all {
        let r = resolved(&format!("app: shop\n{}", sc.template));
        let fake = FakeBackend::scripted(&r);
        let ctx = Ctx::new().await;
        let log = ctx.deployment("d1", Workflow::Setup).await;
        let result = run(&plan(&r, Workflow::Setup).expect("plans"), &fake, &log).await;
        assert_eq!(result.is_ok(), sc.ready, "{}: {result:?}", sc.name);
        let p = log.load().await.expect("log");
        let steps: Vec<(String, StepStatus)> = p
            .steps
            .values()
            .map(|(s, _)| *s)
            .zip(plan(&r, Workflow::Setup).expect("plans").steps.iter().map(|s| s.name.clone()))
            .map(|(s, n)| (n, s))
            .collect();
        let want: Vec<(String, StepStatus)> = sc.steps.iter().map(|(n, s)| ((*n).to_owned(), *s)).collect();
        assert_eq!(steps, want, "{}", sc.name);
        if let Err(e) = result {
            for w in sc.reason_has {
                assert!(e.to_string().contains(w), "{}: `{e}` does not say `{w}`", sc.name);
            }
        }
    }
}
