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

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Developer => "developer",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "developer" => Some(Role::Developer),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    /// As recorded: a user's e-mail (`admin` for the built-in administrator), or `webhook`,
    /// `poller`, `expiry`, ... for what the server does by itself.
    pub name: String,
    pub role: Role,
    /// The API token used, when one was (its id).
    pub token_id: Option<String>,
    /// Where the request came from.
    pub address: Option<String>,
    /// Roles raised for single applications: `(app, role)`.
    pub grants: Vec<(String, Role)>,
}

impl Actor {
    /// The built-in administrator.
    pub fn token() -> Self {
        Actor::user(offshoot_store::ADMIN_USER, Role::Admin)
    }

    /// The built-in administrator in the dashboard.
    pub fn dashboard() -> Self {
        Actor::token()
    }

    /// A user with a role.
    pub fn user(email: &str, role: Role) -> Self {
        Actor { name: email.to_owned(), role, token_id: None, address: None, grants: Vec::new() }
    }

    /// A repository's events (`webhook` or `poller`): they deploy environments, nothing more.
    pub fn git(source: &str) -> Self {
        Actor::user(source, Role::Developer)
    }

    /// The server itself (`expiry`, `reconciler`): it deploys and tears down, nothing more.
    pub fn system(name: &str) -> Self {
        Actor::user(name, Role::Developer)
    }

    pub fn with_token(mut self, id: &str) -> Self {
        self.token_id = Some(id.to_owned());
        self
    }

    pub fn from_address(mut self, address: Option<String>) -> Self {
        self.address = address;
        self
    }

    pub fn with_grants(mut self, grants: Vec<(String, Role)>) -> Self {
        self.grants = grants;
        self
    }

    /// Its role for `app`: its own, or what a grant raises it to.
    pub fn role_for(&self, app: Option<&str>) -> Role {
        let granted = self.grants.iter().filter(|(a, _)| Some(a.as_str()) == app).map(|(_, r)| *r).max();
        granted.map_or(self.role, |g| g.max(self.role))
    }
}

/// Declares the operations: each with its recorded name and the least role that may do it.
/// [`Operation::ALL`] lists every one, so a test can walk them all.
macro_rules! operations {
    ($($(#[$doc:meta])* $op:ident => $name:literal, $role:ident;)*) => {
        /// An operation that changes something.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Operation {
            $($(#[$doc])* $op,)*
        }

        impl Operation {
            /// Every operation.
            pub const ALL: &[Operation] = &[$(Operation::$op,)*];

            /// As recorded and shown.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Operation::$op => $name,)*
                }
            }

            /// The least role that may do it.
            pub fn needs(self) -> Role {
                match self {
                    $(Operation::$op => Role::$role,)*
                }
            }
        }
    };
}

operations! {
    CreateApp => "app.create", Admin;
    DeleteApp => "app.delete", Admin;
    /// An application's settings (pull requests, static builder, ...).
    UpdateApp => "app.settings", Admin;
    RotateWebhook => "app.webhook", Admin;
    UpdateTemplate => "app.template", Admin;
    SetSecret => "app.secret", Admin;
    /// A user's role raised for one application.
    GrantApp => "app.grant", Admin;
    /// A new bypass token for an application's team-only previews.
    RotateBypass => "app.bypass", Admin;
    CreateEnv => "env.create", Developer;
    ApprovePullRequest => "env.approve", Developer;
    DeployEnv => "env.deploy", Developer;
    DeleteEnv => "env.delete", Developer;
    /// A command run in one of an environment's services.
    ExecInEnv => "env.exec", Developer;
    SleepEnv => "env.sleep", Developer;
    WakeEnv => "env.wake", Developer;
    /// An environment's own settings (its idle sleep).
    UpdateEnv => "env.settings", Developer;
    /// More lifetime for an environment.
    ExtendEnv => "env.extend", Developer;
    CreateDataset => "dataset.create", Admin;
    RefreshDataset => "dataset.refresh", Admin;
    DeleteDataset => "dataset.delete", Admin;
    /// Credentials for a container registry, set or forgotten.
    RegistryLogin => "registry.login", Admin;
    RegistryLogout => "registry.logout", Admin;
    CreateUser => "user.create", Admin;
    /// A user's role.
    UpdateUser => "user.role", Admin;
    DisableUser => "user.disable", Admin;
    /// A token of one's own (an admin may make one for any user).
    CreateToken => "token.create", Viewer;
    /// A token of one's own (an admin may revoke any).
    RevokeToken => "token.revoke", Viewer;
}

impl Operation {
    /// Whether a per-application grant can allow it: what acts on one application or its
    /// environments. Datasets, registries, users, tokens and grants themselves are server-wide,
    /// whatever their names.
    pub fn app_scoped(self) -> bool {
        matches!(
            self,
            Operation::DeleteApp
                | Operation::UpdateApp
                | Operation::RotateWebhook
                | Operation::UpdateTemplate
                | Operation::SetSecret
                | Operation::RotateBypass
                | Operation::CreateEnv
                | Operation::ApprovePullRequest
                | Operation::DeployEnv
                | Operation::DeleteEnv
                | Operation::ExecInEnv
                | Operation::SleepEnv
                | Operation::WakeEnv
                | Operation::UpdateEnv
                | Operation::ExtendEnv
        )
    }

    /// The role `actor` has for this operation on `target`: its own, raised by a grant for the
    /// target's application when the operation is one a grant covers.
    async fn role_of(self, store: &Store, actor: &Actor, target: &str) -> Role {
        if actor.grants.is_empty() || !self.app_scoped() {
            return actor.role;
        }
        actor.role_for(app_of(store, target).await.as_deref())
    }
}

/// Whether `actor` may do `op`.
pub fn authorize(actor: &Actor, op: Operation) -> Result<(), ControlError> {
    authorize_as(actor, actor.role, op)
}

fn authorize_as(actor: &Actor, role: Role, op: Operation) -> Result<(), ControlError> {
    if role >= op.needs() {
        Ok(())
    } else {
        Err(ControlError::Forbidden { actor: actor.name.clone(), operation: op.as_str(), needs: op.needs(), has: role })
    }
}

/// The application an operation's target belongs to: the target itself or its first part
/// (`shop`, `shop/registry.example.com`), or an environment's application.
async fn app_of(store: &Store, target: &str) -> Option<String> {
    let first = target.split('/').next()?;
    if let Ok(Some(a)) = store.app(first).await {
        return Some(a.name.to_string());
    }
    store.env(first).await.ok().flatten().map(|e| e.app.to_string())
}

/// Whether `actor` may do `op` on `target` (its grants counted); a refusal is recorded as the
/// gate records one. For work an adapter starts in the background, which records its own end.
pub(crate) async fn precheck(store: &Store, actor: &Actor, op: Operation, target: &str) -> Result<(), ControlError> {
    let role = op.role_of(store, actor, target).await;
    if authorize_as(actor, role, op).is_ok() {
        return Ok(());
    }
    gate(store, actor, op, target, async { Ok(()) }, |_| Noted::default()).await
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
    // A grant raises the actor's role for the target's application.
    let role = op.role_of(store, actor, target).await;
    let result = match authorize_as(actor, role, op) {
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
        token_id: actor.token_id.clone(),
        address: actor.address.clone(),
    };
    store.add_activity(&record).await?;
    tracing::info!(actor = %actor.name, operation = op.as_str(), target = %record.target, outcome, "activity");
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_cover_what_acts_on_one_application_only() {
        for op in Operation::ALL {
            let server_wide = op.as_str().starts_with("dataset.")
                || op.as_str().starts_with("registry.")
                || op.as_str().starts_with("user.")
                || op.as_str().starts_with("token.")
                || *op == Operation::CreateApp
                || *op == Operation::GrantApp;
            assert_eq!(op.app_scoped(), !server_wide, "{}", op.as_str());
        }
        let a = Actor::user("v@example.com", Role::Viewer).with_grants(vec![("shop".into(), Role::Admin)]);
        assert_eq!((a.role_for(Some("shop")), a.role_for(Some("other")), a.role_for(None)), (Role::Admin, Role::Viewer, Role::Viewer));
    }
}
