//! The seam between the control plane and an engine: what an environment needs done, at the
//! level of services and jobs. One value serves one deployment of one environment (it holds
//! that deployment's images, namespace and resolved configuration), so the methods name only
//! the service or job.

use std::future::Future;

/// Why an engine could not do what was asked, phrased for the environment's record (the
/// executor prefixes the task and the step).
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
#[error("{message}")]
pub struct BackendError {
    message: String,
}

impl BackendError {
    pub fn new(message: impl std::fmt::Display) -> Self {
        BackendError { message: message.to_string() }
    }

    pub fn message(&self) -> &str {
        &self.message
    }
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

    /// Removes everything of the environment from the engine (`release.remove_environment`).
    fn remove_environment(&self) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// After the last step of a `setup` or `patch` that did not halt: what follows the services
    /// (ingresses, pruning what the configuration no longer has).
    fn finish(&self) -> impl Future<Output = Result<(), BackendError>> + Send {
        async { Ok(()) }
    }
}
