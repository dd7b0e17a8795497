//! Scenarios every backend must play the same way: a template, the workflow it runs, and what
//! the environment must end with (ready or failed, each step's status, words of the reason).
//! The hermetic tests play them on [`FakeBackend::scripted`](crate::fake::FakeBackend::scripted);
//! the end-to-end tests play them on the Docker engine through a real server.
//!
//! The templates use `busybox:stable` only. A task fails by exiting: a service or job whose
//! command is `sh -c "exit N"` fails with `exited with code N` on every backend. The service that
//! exits has a readiness probe that never passes: without one, an engine may find it running in
//! the instant before it exits and call it ready, as Kubernetes would.

use crate::log::StepStatus;

/// One scenario of `setup`.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub name: &'static str,
    /// The services, jobs and workflows of the application (an `app:` line is added).
    pub template: String,
    /// The environment ends ready (else failed).
    pub ready: bool,
    /// The steps in the log, in order, with how each ended.
    pub steps: &'static [(&'static str, StepStatus)],
    /// Words the failure's reason must contain.
    pub reason_has: &'static [&'static str],
}

const SERVICES: &str = r#"services:
- name: web
  image: busybox:stable
  command: [sh, -c, "exec sleep 3600"]
- name: broken
  image: busybox:stable
  command: [sh, -c, "exit 3"]
  readiness_probe:
    exec:
      command: [sh, -c, "test -f /ready"]
    period_seconds: 1
    failure_threshold: 3
jobs:
- name: ok
  image: busybox:stable
  command: [sh, -c, "echo migrated"]
- name: fails
  image: busybox:stable
  command: [sh, -c, "exit 4"]
- name: fails_and_halts
  image: busybox:stable
  command: [sh, -c, "exit 5"]
  halt_on_error: true
"#;

use StepStatus::{Done, Failed};

/// The scenarios, in a fixed order.
pub fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "steps_run_in_order_and_the_environment_is_ready",
            template: concat_template(
                "  parallelize:\n  - step: migrate\n    tasks: [jobs.ok]\n  - step: serve\n    tasks: [services.web]\n",
            ),
            ready: true,
            steps: &[("migrate", Done), ("serve", Done)],
            reason_has: &[],
        },
        Scenario {
            name: "a_failure_without_halt_on_error_lets_the_workflow_go_on",
            template: concat_template(
                "  parallelize:\n  - step: migrate\n    tasks: [jobs.fails]\n  - step: serve\n    tasks: [services.web]\n",
            ),
            ready: false,
            steps: &[("migrate", Failed), ("serve", Done)],
            reason_has: &["step `migrate`: jobs.fails:", "exited with code 4"],
        },
        Scenario {
            name: "halt_on_error_stops_at_the_failing_step",
            template: concat_template(
                "  parallelize:\n  - step: migrate\n    tasks: [jobs.fails]\n    halt_on_error: true\n  - step: serve\n    tasks: [services.web]\n",
            ),
            ready: false,
            steps: &[("migrate", Failed)],
            reason_has: &["step `migrate`: jobs.fails:", "exited with code 4"],
        },
        Scenario {
            name: "a_job_with_halt_on_error_stops_the_workflow",
            template: concat_template(
                "  parallelize:\n  - step: migrate\n    tasks: [jobs.fails_and_halts]\n  - step: serve\n    tasks: [services.web]\n",
            ),
            ready: false,
            steps: &[("migrate", Failed)],
            reason_has: &["jobs.fails_and_halts:", "exited with code 5"],
        },
        Scenario {
            name: "a_service_that_exits_fails_with_its_code",
            template: concat_template("  parallelize:\n  - step: serve\n    tasks: [services.web, services.broken]\n"),
            ready: false,
            steps: &[("serve", Failed)],
            // The engine may catch it exited or restarting: the step and the task are what count.
            reason_has: &["step `serve`: services.broken:"],
        },
        Scenario {
            name: "a_step_not_waited_for_does_not_hold_or_fail_the_workflow",
            template: concat_template(
                "  parallelize:\n  - step: background\n    tasks: [jobs.fails]\n    wait_for_finish: false\n  - step: serve\n    tasks: [services.web]\n",
            ),
            ready: true,
            steps: &[("background", Done), ("serve", Done)],
            reason_has: &[],
        },
        Scenario {
            name: "order_from_runs_each_task_as_its_own_step",
            template: concat_template("  order_from: [jobs.ok, services.web]\n"),
            ready: true,
            steps: &[("jobs.ok", Done), ("services.web", Done)],
            reason_has: &[],
        },
    ]
}

/// `SERVICES` and a `setup` workflow made of `steps`.
fn concat_template(steps: &str) -> String {
    format!("{SERVICES}workflows:\n- name: setup\n{steps}")
}
