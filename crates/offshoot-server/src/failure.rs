//! Why a deployment, build, teardown or background task of this server failed. Its text is what
//! the environment records as its reason; the cause stays attached (`source`) for the log.

use offshoot_control::BackendError;

#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    /// A reason written for the user (`build of web failed: ...`).
    #[error("{0}")]
    Reason(String),
    #[error(transparent)]
    Store(#[from] offshoot_store::StoreError),
    #[error(transparent)]
    Engine(#[from] offshoot_runtime::RuntimeError),
    #[error(transparent)]
    Kube(#[from] offshoot_kube::KubeError),
    #[error(transparent)]
    Git(#[from] offshoot_git::GitError),
    #[error(transparent)]
    Sites(#[from] offshoot_sites::SiteError),
    #[error(transparent)]
    Datasets(#[from] offshoot_datasets::DatasetError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// A use case's refusal, with its hint: the reason is all the environment shows.
    #[error("{}", with_hint(.0))]
    Control(#[from] offshoot_control::ControlError),
    #[error(transparent)]
    Plan(#[from] offshoot_control::PlanError),
    #[error(transparent)]
    Workflow(#[from] offshoot_control::ExecError),
    #[error(transparent)]
    Http(#[from] reqwest::Error),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("a blocking task failed")]
    Join(#[from] tokio::task::JoinError),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

fn with_hint(e: &offshoot_control::ControlError) -> String {
    match e.hint() {
        Some(h) => format!("{e} ({h})"),
        None => e.to_string(),
    }
}

impl From<String> for Failure {
    fn from(reason: String) -> Self {
        Failure::Reason(reason)
    }
}

impl From<&str> for Failure {
    fn from(reason: &str) -> Self {
        Failure::Reason(reason.to_owned())
    }
}

impl From<Failure> for BackendError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Backend(b) => b,
            other => BackendError::new(other),
        }
    }
}
