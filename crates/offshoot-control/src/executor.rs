//! The one executor: runs a workflow's steps on a [`Backend`], recording each task and each step
//! as it ends. Run again for the same deployment (after a crash), it skips every step and task
//! the log says ended, so nothing that finished runs twice; a task interrupted mid-way runs
//! again, which the backend's convergence makes safe.
//!
//! Semantics, as on Release: steps run in order; the tasks of a step run at once, services after
//! the services of the step they depend on. A failing task does not stop its step's other
//! tasks. It stops the workflow when its step has `halt_on_error` or it is a job with
//! `halt_on_error`; otherwise the workflow goes on and ends failed with every reason. A step
//! with `wait_for_finish: false` is started and recorded done at once; the workflow does not
//! wait for it (and a crash does not start it again).

use crate::backend::{Backend, BackendError};
use crate::log::{Progress, StepLog, StepStatus};
use crate::plan::{Plan, PlannedTask, Step, Workflow};
use offshoot_store::StoreError;
use offshoot_template::model::Task;
use std::sync::Arc;

/// What a workflow that ran to its end produced: each step's output.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub steps: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("preparing the environment: {0}")]
    Prepare(#[source] BackendError),
    /// A step or job with `halt_on_error` failed: the steps after it did not run.
    #[error("{failure}")]
    Halted { step: String, failure: String },
    /// Steps failed; the workflow ran to its end.
    #[error("{}", .failures.join("; "))]
    Failed { failures: Vec<String> },
    #[error("finishing the workflow: {0}")]
    Finish(#[source] BackendError),
    #[error("cannot record the workflow's progress")]
    Log(#[from] StoreError),
}

/// How a task ended: its output, or why it failed (as recorded in the step log).
enum TaskEnd {
    Done(String),
    Failed(String),
}

/// How one step ended.
struct StepOutcome {
    outputs: Vec<String>,
    errors: Vec<String>,
    /// A job with `halt_on_error` failed.
    halt: bool,
}

impl StepOutcome {
    fn new() -> Self {
        StepOutcome { outputs: Vec::new(), errors: Vec::new(), halt: false }
    }

    fn add(&mut self, t: &PlannedTask, end: TaskEnd) {
        match end {
            TaskEnd::Done(out) if out.is_empty() => {}
            TaskEnd::Done(out) => self.outputs.push(format!("{}: {out}", t.task)),
            TaskEnd::Failed(e) => {
                self.halt |= t.halts;
                self.errors.push(format!("{}: {e}", t.task));
            }
        }
    }
}

/// Runs `plan` on `backend`, resuming from what `log` holds.
pub async fn execute<B: Backend, L: StepLog>(plan: &Plan, backend: &Arc<B>, log: &L) -> Result<Report, ExecError> {
    execute_in(plan, backend, log, &|work| drop(tokio::spawn(work))).await
}

/// Work the executor starts and does not wait for: a step with `wait_for_finish: false`.
pub type Detached = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// [`execute`], starting the steps it does not wait for with `detach` (a server runs them under
/// its task tracker, so that shutdown waits for them too).
pub async fn execute_in<B: Backend, L: StepLog>(
    plan: &Plan,
    backend: &Arc<B>,
    log: &L,
    detach: &(dyn Fn(Detached) + Sync),
) -> Result<Report, ExecError> {
    let progress = log.load().await?;
    // A teardown neither prepares (it would make what it removes) nor finishes.
    let edges = plan.workflow != Workflow::Teardown;
    if edges {
        backend.prepare().await.map_err(ExecError::Prepare)?;
    }
    let mut report = Report::default();
    let mut failures = Vec::new();
    for step in &plan.steps {
        let failure = |message: &str| format!("step `{}`: {message}", step.name);
        match progress.step(step.idx) {
            Some((StepStatus::Done, out)) => {
                report.steps.push((step.name.clone(), out.clone()));
                continue;
            }
            Some((StepStatus::Failed, message)) => {
                // Ended before the crash: halting now if it halted then.
                let halted_by_job =
                    step.tasks().any(|t| t.halts && matches!(progress.task(step.idx, &t.key()), Some((StepStatus::Failed, _))));
                if step.halt_on_error || halted_by_job {
                    return Err(ExecError::Halted { step: step.name.clone(), failure: failure(message) });
                }
                failures.push(failure(message));
                continue;
            }
            _ => {}
        }
        log.record_step(step.idx, &step.name, StepStatus::Running, "").await?;
        if !step.wait_for_finish {
            let (backend, detached, teardown) = (backend.clone(), step.clone(), !edges);
            detach(Box::pin(async move {
                let outcome = run_detached(&backend, &detached, teardown).await;
                if !outcome.errors.is_empty() {
                    tracing::warn!(step = %detached.name, error = %outcome.errors.join("; "), "a step that was not waited for failed");
                }
            }));
            log.record_step(step.idx, &step.name, StepStatus::Done, "started without waiting").await?;
            report.steps.push((step.name.clone(), "started without waiting".into()));
            continue;
        }
        let outcome = run_step(backend, log, (step, !edges), &progress).await?;
        if outcome.errors.is_empty() {
            let out = outcome.outputs.join("\n");
            log.record_step(step.idx, &step.name, StepStatus::Done, &out).await?;
            report.steps.push((step.name.clone(), out));
        } else {
            let message = outcome.errors.join("; ");
            log.record_step(step.idx, &step.name, StepStatus::Failed, &message).await?;
            if step.halt_on_error || outcome.halt {
                return Err(ExecError::Halted { step: step.name.clone(), failure: failure(&message) });
            }
            failures.push(failure(&message));
        }
    }
    // What follows the services is done even when some failed (the others are served).
    let finished = if edges { backend.finish().await } else { Ok(()) };
    match (failures.is_empty(), finished) {
        (true, Ok(())) => Ok(report),
        (true, Err(e)) => Err(ExecError::Finish(e)),
        (false, result) => {
            if let Err(e) = result {
                failures.push(format!("finishing the workflow: {e}"));
            }
            Err(ExecError::Failed { failures })
        }
    }
}

/// Runs a step's waves, skipping the tasks the log says ended and recording each that ends.
async fn run_step<B: Backend, L: StepLog>(
    backend: &Arc<B>,
    log: &L,
    (step, teardown): (&Step, bool),
    progress: &Progress,
) -> Result<StepOutcome, StoreError> {
    let mut outcome = StepOutcome::new();
    for wave in &step.waves {
        let runs = wave.iter().map(|t| async move {
            let key = t.key();
            if let Some((status, out)) = progress.task(step.idx, &key).filter(|(s, _)| s.ended()) {
                let end = if *status == StepStatus::Done { TaskEnd::Done(out.clone()) } else { TaskEnd::Failed(out.clone()) };
                return Ok((t, end));
            }
            let end = match run_task(backend.as_ref(), &t.task, teardown).await {
                Ok(out) => TaskEnd::Done(out),
                Err(e) => TaskEnd::Failed(e.to_string()),
            };
            let (status, out) = match &end {
                TaskEnd::Done(out) => (StepStatus::Done, out.as_str()),
                TaskEnd::Failed(e) => (StepStatus::Failed, e.as_str()),
            };
            log.record_task(step.idx, &key, status, out).await?;
            Ok::<_, StoreError>((t, end))
        });
        for ended in futures_util::future::join_all(runs).await {
            let (t, result) = ended?;
            outcome.add(t, result);
        }
    }
    Ok(outcome)
}

/// Runs a step nobody waits for (and nothing logs).
async fn run_detached<B: Backend>(backend: &Arc<B>, step: &Step, teardown: bool) -> StepOutcome {
    let mut outcome = StepOutcome::new();
    for wave in &step.waves {
        let results = futures_util::future::join_all(wave.iter().map(|t| run_task(backend.as_ref(), &t.task, teardown))).await;
        for (t, r) in wave.iter().zip(results) {
            outcome.add(t, r.map_or_else(|e| TaskEnd::Failed(e.to_string()), TaskEnd::Done));
        }
    }
    outcome
}

/// Runs one task; an `infrastructure` task destroys in a teardown and applies otherwise.
async fn run_task<B: Backend>(backend: &B, task: &Task, teardown: bool) -> Result<String, BackendError> {
    match task {
        Task::Service(name) => backend.start_service(name).await.map(|()| String::new()),
        Task::Job(name) => backend.run_job(name).await,
        Task::Infrastructure(name) => backend.infrastructure(name, teardown).await,
        Task::RemoveEnvironment => backend.remove_environment().await.map(|()| String::new()),
        Task::Chart(_) | Task::AllServices => {
            Err(BackendError::new(format!("this runtime cannot run `{task}`: Helm charts are not supported")))
        }
    }
}
