//! The seam between the control plane and an engine: what an environment needs done, at the
//! level of services and jobs. One value serves one environment, so the methods name only the
//! service or job: for a deployment it holds that deployment's images and resolved
//! configuration (what `start_service` and `run_job` need); at rest (logs, exec, stop and
//! start, observing) it needs neither.

use std::future::Future;

/// Why an engine could not do what was asked, phrased for the environment's record (the
/// executor prefixes the task and the step).
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
#[error("{message}")]
pub struct BackendError {
    message: String,
    kind: BackendErrorKind,
    hint: Option<String>,
}

/// What kind of [`BackendError`], for adapters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendErrorKind {
    /// The engine failed, or what it runs did.
    Failed,
    /// What was named does not run on the engine.
    NotFound,
    /// This engine cannot do it.
    Unsupported,
}

impl BackendError {
    pub fn new(message: impl std::fmt::Display) -> Self {
        BackendError { message: message.to_string(), kind: BackendErrorKind::Failed, hint: None }
    }

    pub fn not_found(message: impl std::fmt::Display) -> Self {
        BackendError { kind: BackendErrorKind::NotFound, ..Self::new(message) }
    }

    pub fn unsupported(message: impl std::fmt::Display, hint: impl Into<String>) -> Self {
        BackendError { kind: BackendErrorKind::Unsupported, hint: Some(hint.into()), ..Self::new(message) }
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn kind(&self) -> BackendErrorKind {
        self.kind
    }

    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }
}

/// A service as the engine has it now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceState {
    pub service: String,
    /// The engine runs it, or keeps it running (a Kubernetes workload with replicas); false when
    /// it is stopped, scaled to zero or exited.
    pub running: bool,
}

/// What a command run in a service printed, and how it ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecOutput {
    pub exit_code: i64,
    pub output: String,
}

/// What the executor needs from an engine. Every method converges: asked twice for the same
/// thing, a backend does it once (a service already running as asked is left alone), which is
/// what lets an interrupted deployment be resumed.
pub trait Backend: Send + Sync + 'static {
    /// Before the first step of `setup` or `patch` (not of `teardown`): what belongs to no
    /// service (a network, a namespace, shared volumes).
    fn prepare(&self) -> impl Future<Output = Result<(), BackendError>> + Send {
        async { Ok(()) }
    }

    /// Starts a service, or updates it to its current configuration, and waits until it is
    /// ready (or has failed).
    fn start_service(&self, service: &str) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Runs a job to completion; its output (the tail of its log) on success.
    fn run_job(&self, job: &str) -> impl Future<Output = Result<String, BackendError>> + Send;

    /// Runs an `infrastructure` entry: applies its module in `setup` and `patch`, destroys what
    /// it made when `destroy` (in `teardown`). Its output (what it applied, its outputs' names)
    /// on success.
    fn infrastructure(&self, name: &str, destroy: bool) -> impl Future<Output = Result<String, BackendError>> + Send {
        let _ = destroy;
        let message = format!("this engine cannot run `infrastructure.{name}`");
        async move { Err(BackendError::unsupported(message, "run the server with a Docker engine: Terraform runs in a container")) }
    }

    /// Removes everything of the environment from the engine (`release.remove_environment`).
    fn remove_environment(&self) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// After the last step of a `setup` or `patch` that did not halt: what follows the services
    /// (ingresses, pruning what the configuration no longer has).
    fn finish(&self) -> impl Future<Output = Result<(), BackendError>> + Send {
        async { Ok(()) }
    }

    /// The environment's services as the engine has them now.
    fn observe(&self) -> impl Future<Output = Result<Vec<ServiceState>, BackendError>> + Send;

    /// The last `tail` lines of the logs of each instance (container, pod) of a service, or of
    /// every service: `(instance, text)`.
    fn logs(&self, service: Option<&str>, tail: usize) -> impl Future<Output = Result<Vec<(String, String)>, BackendError>> + Send;

    /// Runs a command in a running instance of a service and waits for it.
    fn exec(&self, service: &str, command: &[String]) -> impl Future<Output = Result<ExecOutput, BackendError>> + Send;

    /// Stops a service and keeps it (its volumes, its configuration) to start again; stopped
    /// already is done.
    fn stop_service(&self, service: &str) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Starts a stopped service again as it was; running already is done.
    fn resume_service(&self, service: &str) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Pauses (or resumes) the schedules the engine keeps itself (Kubernetes `CronJob`s) while
    /// the environment sleeps. Engines whose schedules the control plane keeps do nothing.
    fn pause_schedules(&self, paused: bool) -> impl Future<Output = Result<(), BackendError>> + Send {
        let _ = paused;
        async { Ok(()) }
    }
}
