//! The planner: a resolved environment and a workflow become the steps to run. Pure: no I/O,
//! no engine, the same answer for the same input.

use offshoot_template::model::Task;
use offshoot_template::resolve::{Resolved, ResolvedStep};
use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

/// The three workflows Release runs on an environment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Workflow {
    /// On creation.
    Setup,
    /// On a push to the environment's branch (or a redeploy).
    Patch,
    /// On deletion or expiry.
    Teardown,
}

impl Workflow {
    /// The name in templates, in the store and in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Workflow::Setup => "setup",
            Workflow::Patch => "patch",
            Workflow::Teardown => "teardown",
        }
    }
}

impl fmt::Display for Workflow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Workflow {
    type Err = PlanError;

    fn from_str(s: &str) -> Result<Self, PlanError> {
        match s {
            "setup" => Ok(Workflow::Setup),
            "patch" => Ok(Workflow::Patch),
            "teardown" => Ok(Workflow::Teardown),
            other => Err(PlanError::UnknownWorkflow(other.to_owned())),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("unknown workflow `{0}`: it is `setup`, `patch` or `teardown`")]
    UnknownWorkflow(String),
    #[error("workflow `{workflow}`, step `{step}`: {reason}")]
    Task { workflow: Workflow, step: String, reason: String },
}

/// A task to run, with what the planner knows about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedTask {
    pub task: Task,
    /// Its failure stops the workflow whatever its step says: a job with `halt_on_error`, or an
    /// `infrastructure` task of a teardown (what it could not destroy must not lose the
    /// environment that made it).
    pub halts: bool,
}

impl PlannedTask {
    /// The task as written, which is also its key in the step log.
    pub fn key(&self) -> String {
        self.task.to_string()
    }
}

/// One step of a workflow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// Its place in the workflow (the key of its record in the step log).
    pub idx: usize,
    pub name: String,
    /// The step's tasks in waves: a service comes in a wave after the services of the same
    /// step it depends on; the tasks of one wave run at once.
    pub waves: Vec<Vec<PlannedTask>>,
    /// `false`: the step is started and the workflow goes on without waiting for it.
    pub wait_for_finish: bool,
    /// A failure in this step stops the workflow (otherwise the workflow goes on and ends failed).
    pub halt_on_error: bool,
}

impl Step {
    /// Every task of the step, wave after wave.
    pub fn tasks(&self) -> impl Iterator<Item = &PlannedTask> {
        self.waves.iter().flatten()
    }
}

/// A workflow's steps, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub workflow: Workflow,
    pub steps: Vec<Step>,
}

/// The steps of `workflow` for `r`. A template that does not define the workflow gets Release's
/// defaults: `setup` starts every service, `patch` those built from a repository (and static
/// sites), `teardown` removes the environment.
pub fn plan(r: &Resolved, workflow: Workflow) -> Result<Plan, PlanError> {
    let written: Vec<ResolvedStep> = match r.workflows.get(workflow.as_str()) {
        Some(steps) => steps.clone(),
        None => default_steps(r, workflow),
    };
    let steps = written.into_iter().enumerate().map(|(idx, s)| plan_step(r, workflow, idx, s)).collect::<Result<_, _>>()?;
    Ok(Plan { workflow, steps })
}

fn default_steps(r: &Resolved, workflow: Workflow) -> Vec<ResolvedStep> {
    let services = |only_built: bool| {
        r.services
            .iter()
            .filter(|s| !only_built || s.has_repo || s.static_site.is_some())
            .map(|s| Task::Service(s.name.clone()).to_string())
            .collect::<Vec<_>>()
    };
    let step = |name: &str, tasks: Vec<String>, halt_on_error: bool| ResolvedStep {
        name: name.to_owned(),
        tasks,
        wait_for_finish: true,
        halt_on_error,
    };
    match workflow {
        Workflow::Setup => vec![step("services-0", services(false), false)],
        Workflow::Patch => vec![step("services-0", services(true), false)],
        Workflow::Teardown => vec![step("remove-environment", vec![Task::RemoveEnvironment.to_string()], true)],
    }
}

fn plan_step(r: &Resolved, workflow: Workflow, idx: usize, s: ResolvedStep) -> Result<Step, PlanError> {
    let mut tasks = Vec::new();
    for text in &s.tasks {
        let task = Task::parse(text).map_err(|reason| PlanError::Task { workflow, step: s.name.clone(), reason })?;
        match task {
            // Resolve expands it; expanded here too so no caller ever sees it.
            Task::AllServices => tasks.extend(r.services.iter().map(|x| Task::Service(x.name.clone()))),
            t => tasks.push(t),
        }
    }
    let mut seen = HashSet::new();
    tasks.retain(|t| seen.insert(t.to_string()));
    let planned = tasks
        .into_iter()
        .map(|task| {
            let halts = match &task {
                Task::Job(j) => r.jobs.iter().any(|x| &x.name == j && x.halt_on_error),
                Task::Infrastructure(_) => workflow == Workflow::Teardown,
                _ => false,
            };
            PlannedTask { task, halts }
        })
        .collect();
    Ok(Step { idx, name: s.name, waves: waves(r, planned), wait_for_finish: s.wait_for_finish, halt_on_error: s.halt_on_error })
}

/// Splits a step's tasks into waves by `depends_on` among the step's own services (a service
/// another step starts is not waited for here). Validation refuses cycles; if one got through,
/// what is left starts together rather than never.
fn waves(r: &Resolved, tasks: Vec<PlannedTask>) -> Vec<Vec<PlannedTask>> {
    let service = |t: &PlannedTask| match &t.task {
        Task::Service(n) => Some(n.clone()),
        _ => None,
    };
    let in_step: HashSet<String> = tasks.iter().filter_map(service).collect();
    let deps = |t: &PlannedTask| -> Vec<String> {
        service(t)
            .and_then(|n| r.services.iter().find(|s| s.name == n))
            .map(|s| s.depends_on.iter().filter(|d| in_step.contains(*d)).cloned().collect())
            .unwrap_or_default()
    };
    let mut placed: HashSet<String> = HashSet::new();
    let mut remaining = tasks;
    let mut out = Vec::new();
    while !remaining.is_empty() {
        let (mut wave, rest): (Vec<_>, Vec<_>) = remaining.into_iter().partition(|t| deps(t).iter().all(|d| placed.contains(d)));
        if wave.is_empty() {
            wave = rest;
            remaining = Vec::new();
        } else {
            remaining = rest;
        }
        placed.extend(wave.iter().filter_map(service));
        out.push(wave);
    }
    out
}
