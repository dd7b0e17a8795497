//! The control plane's core, without HTTP: what a deployment does, independent of the engine
//! that runs it.
//!
//! - [`plan`]: a pure function from a resolved environment and a workflow to its steps, each
//!   step's tasks already in `depends_on` waves.
//! - [`execute`]: the one executor. It records every step and every task of a step as it ends
//!   ([`StepLog`], persisted in the store), runs the tasks of a wave concurrently, and on a new
//!   run skips what the log says is finished, so a deployment interrupted by a crash resumes
//!   without running a finished task again. `halt_on_error`, `wait_for_finish` and the
//!   job-level `halt_on_error` mean the same for every engine.
//! - [`Backend`]: what an environment needs from an engine, implemented for Docker and
//!   Kubernetes by the server and by [`fake::FakeBackend`] for tests that run in seconds.
//!
//! - The use cases ([`Control`]): applications ([`apps`]) and environments ([`environments`]),
//!   each through one gate ([`gate`]) that authorises the actor, runs the checks, and records
//!   how it ended, and a repository's events ([`git_events`]); a deployment's Instant Datasets
//!   ([`datasets`]). Adapters (the REST API, the
//!   dashboard, webhook endpoints, the poller) only translate.
//!
//! This crate depends on no web framework (a tidy test holds it to that).

pub mod access;
pub mod apps;
mod backend;
pub mod capacity;
pub mod config;
pub mod conformance;
pub mod cron;
pub mod dataset_admin;
pub mod datasets;
pub mod environments;
mod error;
mod executor;
pub mod fake;
pub mod forks;
pub mod gate;
pub mod git_events;
mod ids;
pub mod imports;
mod log;
mod plan;
mod ports;
pub mod registries;
pub mod sleep;
pub mod sso;
pub mod users;

pub use backend::{Backend, BackendError, BackendErrorKind, ExecOutput, ServiceState};
pub use error::{ControlError, ErrorKind};
pub use executor::{Detached, ExecError, Report, execute, execute_in};
pub use gate::{Actor, Operation, Role, authorize};
pub use ids::{new_deployment_id, new_env_id};
pub use log::{Progress, StepLog, StepStatus, StoreLog};
pub use plan::{Plan, PlanError, PlannedTask, Step, Workflow, plan};
pub use ports::Ports;

use offshoot_store::{App, Environment, Store};

/// The use cases, as `actor` does them, over a store and the server's [`Ports`].
pub struct Control<'a, P> {
    pub store: &'a Store,
    pub ports: P,
    pub actor: Actor,
}

impl<'a, P: Ports> Control<'a, P> {
    pub fn new(store: &'a Store, ports: P, actor: Actor) -> Self {
        Control { store, ports, actor }
    }

    pub async fn find_app(&self, name: &str) -> Result<App, ControlError> {
        find_app(self.store, name).await
    }

    pub async fn find_env(&self, id: &str) -> Result<Environment, ControlError> {
        find_env(self.store, id).await
    }

    /// Refuses (and records the refusal) unless the actor may do `op` on `target`: for work an
    /// adapter starts in the background, whose own gate records how it ends.
    pub async fn authorize(&self, op: Operation, target: &str) -> Result<(), ControlError> {
        gate::precheck(self.store, &self.actor, op, target).await
    }

    /// Runs `work`, an operation an adapter carries out itself (a command in a service), through
    /// the same gate as the use cases: authorised for `op`, recorded on `target`.
    pub async fn perform<T>(
        &self,
        op: Operation,
        target: &str,
        work: impl std::future::Future<Output = Result<T, ControlError>>,
    ) -> Result<T, ControlError> {
        gate::gate(self.store, &self.actor, op, target, work, |_| gate::Noted::default()).await
    }
}

/// The application `name`, or an error that says how to list them.
pub async fn find_app(store: &Store, name: &str) -> Result<App, ControlError> {
    store.app(name).await?.ok_or_else(|| ControlError::not_found("application", name, "`offshoot app list` shows the applications"))
}

/// The environment `id`, or an error that says how to list them.
pub async fn find_env(store: &Store, id: &str) -> Result<Environment, ControlError> {
    store.env(id).await?.ok_or_else(|| ControlError::not_found("environment", id, "`offshoot env list` shows the environments"))
}
