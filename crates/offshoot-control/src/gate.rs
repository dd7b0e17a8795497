//! The one gate every operation that changes something passes: who asks ([`Actor`]), whether
//! their role allows it ([`Operation::needs`]), and a record of how it ended in the activity
//! log, refusals included. The API, the dashboard and git events all come through here, so
//! roles and audit (the teams issue) hook in at one place.

use crate::error::{ControlError, ErrorKind};
use offshoot_store::{Activity, Store, now_ms};
use std::future::Future;

/// What an actor may do; each role may do what the roles below it may.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Reads applications, environments, logs and datasets.
    Viewer,
    /// Also creates, deploys and deletes environments.
    Developer,
    /// Also manages applications, templates, secrets and datasets.
    Admin,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Viewer => "viewer",
            Role::Developer => "developer",
            Role::Admin => "admin",
        })
    }
}

/// Who asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    /// As recorded: `token`, `dashboard`, `webhook`, `poller`.
    pub name: String,
    pub role: Role,
}

impl Actor {
    /// A holder of an API token (today every token is an admin's).
    pub fn token() -> Self {
        Actor { name: "token".into(), role: Role::Admin }
    }

    /// A browser logged in to the dashboard with an API token.
    pub fn dashboard() -> Self {
        Actor { name: "dashboard".into(), role: Role::Admin }
    }

    /// A repository's events (`webhook` or `poller`): they deploy environments, nothing more.
    pub fn git(source: &str) -> Self {
        Actor { name: source.to_owned(), role: Role::Developer }
    }

    /// The server itself (`expiry`, `reconciler`): it deploys and tears down, nothing more.
    pub fn system(name: &str) -> Self {
        Actor { name: name.to_owned(), role: Role::Developer }
    }
}

/// An operation that changes something.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    CreateApp,
    DeleteApp,
    /// An application's settings (pull requests, static builder, ...).
    UpdateApp,
    RotateWebhook,
    UpdateTemplate,
    SetSecret,
    CreateEnv,
    DeployEnv,
    DeleteEnv,
    /// A command run in one of an environment's services.
    ExecInEnv,
    SleepEnv,
    WakeEnv,
    /// An environment's own settings (its idle sleep).
    UpdateEnv,
    /// More lifetime for an environment.
    ExtendEnv,
    CreateDataset,
    RefreshDataset,
    DeleteDataset,
    /// Credentials for a container registry, set or forgotten.
    RegistryLogin,
    RegistryLogout,
}

impl Operation {
    /// As recorded and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::CreateApp => "app.create",
            Operation::DeleteApp => "app.delete",
            Operation::UpdateApp => "app.settings",
            Operation::RotateWebhook => "app.webhook",
            Operation::UpdateTemplate => "app.template",
            Operation::SetSecret => "app.secret",
            Operation::CreateEnv => "env.create",
            Operation::DeployEnv => "env.deploy",
            Operation::DeleteEnv => "env.delete",
            Operation::ExecInEnv => "env.exec",
            Operation::SleepEnv => "env.sleep",
            Operation::WakeEnv => "env.wake",
            Operation::UpdateEnv => "env.settings",
            Operation::ExtendEnv => "env.extend",
            Operation::CreateDataset => "dataset.create",
            Operation::RefreshDataset => "dataset.refresh",
            Operation::DeleteDataset => "dataset.delete",
            Operation::RegistryLogin => "registry.login",
            Operation::RegistryLogout => "registry.logout",
        }
    }

    /// The least role that may do it.
    pub fn needs(self) -> Role {
        match self {
            Operation::CreateApp
            | Operation::DeleteApp
            | Operation::UpdateApp
            | Operation::RotateWebhook
            | Operation::UpdateTemplate
            | Operation::SetSecret
            | Operation::CreateDataset
            | Operation::RefreshDataset
            | Operation::DeleteDataset
            | Operation::RegistryLogin
            | Operation::RegistryLogout => Role::Admin,
            Operation::CreateEnv
            | Operation::DeployEnv
            | Operation::DeleteEnv
            | Operation::ExecInEnv
            | Operation::SleepEnv
            | Operation::WakeEnv
            | Operation::UpdateEnv
            | Operation::ExtendEnv => Role::Developer,
        }
    }
}

/// Whether `actor` may do `op`.
pub fn authorize(actor: &Actor, op: Operation) -> Result<(), ControlError> {
    if actor.role >= op.needs() {
        Ok(())
    } else {
        Err(ControlError::Forbidden { actor: actor.name.clone(), operation: op.as_str(), needs: op.needs(), has: actor.role })
    }
}

/// What the record of a success says beyond its operation.
#[derive(Default)]
pub(crate) struct Noted {
    /// What it turned out to act on, when the request did not name it (an application named
    /// by its template).
    pub(crate) target: Option<String>,
    /// The new environment's id, the new version, ...
    pub(crate) detail: Option<String>,
}

impl Noted {
    pub(crate) fn detail(d: String) -> Self {
        Noted { target: None, detail: Some(d) }
    }
}

/// Runs `work` if `actor` may do `op` on `target`, and records how it ended; `noted` says what
/// the record of a success adds. A record that cannot be written fails the call: nothing
/// changes unrecorded without the caller hearing of it.
pub(crate) async fn gate<T>(
    store: &Store,
    actor: &Actor,
    op: Operation,
    target: &str,
    work: impl Future<Output = Result<T, ControlError>>,
    noted: impl FnOnce(&T) -> Noted,
) -> Result<T, ControlError> {
    let result = match authorize(actor, op) {
        Ok(()) => work.await,
        Err(e) => Err(e),
    };
    let (outcome, target, detail) = match &result {
        Ok(v) => {
            let n = noted(v);
            ("ok", n.target.unwrap_or_else(|| target.to_owned()), n.detail)
        }
        Err(e) if e.kind() == ErrorKind::Internal => ("failed", target.to_owned(), Some(e.to_string())),
        Err(e) => ("refused", target.to_owned(), Some(e.to_string())),
    };
    let record = Activity {
        id: crate::ids::new_activity_id(),
        at: now_ms(),
        actor: actor.name.clone(),
        operation: op.as_str().into(),
        target,
        outcome: outcome.into(),
        detail,
    };
    store.add_activity(&record).await?;
    tracing::info!(actor = %actor.name, operation = op.as_str(), target = %record.target, outcome, "activity");
    result
}
