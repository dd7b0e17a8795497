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
//! This crate depends on no web framework (a tidy test holds it to that).

mod backend;
pub mod conformance;
mod executor;
pub mod fake;
pub mod imports;
mod log;
mod plan;

pub use backend::{Backend, BackendError};
pub use executor::{ExecError, Report, execute};
pub use log::{Progress, StepLog, StepStatus, StoreLog};
pub use plan::{Plan, PlanError, PlannedTask, Step, Workflow, plan};
