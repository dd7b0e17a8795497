//! The step log: how far a deployment got, persisted as it goes so that a new executor finishes
//! what an interrupted one started.

use offshoot_store::{Store, StoreError};
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;

/// How a step or a task stands in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepStatus {
    /// Started and not ended (or ended by a crash).
    Running,
    Done,
    Failed,
}

impl StepStatus {
    /// The one string form (in the store and the API).
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Running => "running",
            StepStatus::Done => "done",
            StepStatus::Failed => "failed",
        }
    }

    /// Reads a stored status; anything else counts as not ended.
    pub fn parse(s: &str) -> StepStatus {
        match s {
            "done" => StepStatus::Done,
            "failed" => StepStatus::Failed,
            _ => StepStatus::Running,
        }
    }

    pub fn ended(self) -> bool {
        self != StepStatus::Running
    }
}

impl fmt::Display for StepStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the log holds for a deployment: each step's and each ended task's status and output.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub steps: BTreeMap<usize, (StepStatus, String)>,
    pub tasks: BTreeMap<(usize, String), (StepStatus, String)>,
}

impl Progress {
    pub fn step(&self, idx: usize) -> Option<&(StepStatus, String)> {
        self.steps.get(&idx)
    }

    pub fn task(&self, idx: usize, key: &str) -> Option<&(StepStatus, String)> {
        self.tasks.get(&(idx, key.to_owned()))
    }
}

/// Where the executor records progress.
pub trait StepLog: Send + Sync {
    fn load(&self) -> impl Future<Output = Result<Progress, StoreError>> + Send;
    fn record_step(&self, idx: usize, name: &str, status: StepStatus, output: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
    fn record_task(&self, idx: usize, key: &str, status: StepStatus, output: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The step log of one deployment, in the store.
#[derive(Clone, Debug)]
pub struct StoreLog {
    store: Store,
    deployment: String,
}

impl StoreLog {
    pub fn new(store: Store, deployment: impl Into<String>) -> Self {
        StoreLog { store, deployment: deployment.into() }
    }
}

/// Workflow steps are logged from index 0; the server keeps negative indexes for its own
/// records (the imports step).
fn to_idx(idx: usize) -> i64 {
    i64::try_from(idx).unwrap_or(i64::MAX)
}

impl StepLog for StoreLog {
    async fn load(&self) -> Result<Progress, StoreError> {
        let mut p = Progress::default();
        for s in self.store.steps(&self.deployment).await? {
            if let Ok(idx) = usize::try_from(s.idx) {
                p.steps.insert(idx, (StepStatus::parse(&s.status), s.output));
            }
        }
        for t in self.store.step_tasks(&self.deployment).await? {
            if let Ok(idx) = usize::try_from(t.step) {
                p.tasks.insert((idx, t.task), (StepStatus::parse(&t.status), t.output));
            }
        }
        Ok(p)
    }

    async fn record_step(&self, idx: usize, name: &str, status: StepStatus, output: &str) -> Result<(), StoreError> {
        let step = offshoot_store::Step {
            deployment: self.deployment.clone().into(),
            idx: to_idx(idx),
            name: name.to_owned(),
            status: status.as_str().to_owned(),
            output: output.to_owned(),
        };
        self.store.set_step(&step).await
    }

    async fn record_task(&self, idx: usize, key: &str, status: StepStatus, output: &str) -> Result<(), StoreError> {
        let task = offshoot_store::StepTask {
            deployment: self.deployment.clone(),
            step: to_idx(idx),
            task: key.to_owned(),
            status: status.as_str().to_owned(),
            output: output.to_owned(),
        };
        self.store.set_step_task(&task).await
    }
}
