//! The use cases (`offshoot_control::Control`) on this server: repositories fetched into its
//! mirrors, deployments run by its controller, secrets sealed with its key.

use crate::state::Shared;
use offshoot_control::imports::RepoError;
use offshoot_control::{Actor, Control, Ports};
use offshoot_git::Mirror;

/// This server as the use cases' ports.
#[derive(Clone, Copy)]
pub(crate) struct Plane<'a>(&'a Shared);

impl Ports for Plane<'_> {
    async fn fetch(&self, repo: &str) -> Result<Mirror, RepoError> {
        self.0.sync_mirror(repo).await.map_err(|e| RepoError(e.to_string()))
    }

    fn start(&self, deployment: offshoot_store::DeploymentId) {
        crate::controller::spawn(self.0, deployment);
    }

    async fn run(&self, deployment: offshoot_store::DeploymentId) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        Ok(crate::controller::run_now(self.0, &deployment).await?)
    }

    fn notify(&self, env: &offshoot_store::Environment) {
        crate::feedback::notify(self.0, env);
    }

    fn wake_pools(&self) {
        self.0.pools_wake.notify_one();
    }

    async fn drop_clone(&self, clone: &offshoot_store::DatasetClone) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        Ok(crate::clones::drop_clone_objects(self.0, clone).await?)
    }

    fn seal(&self, plaintext: &str, context: &str) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
        Ok(self.0.key.encrypt(plaintext, context)?)
    }
}

/// The use cases as `actor` does them here.
pub(crate) fn control(ctx: &Shared, actor: Actor) -> Control<'_, Plane<'_>> {
    Control::new(&ctx.store, Plane(ctx), actor)
}

pub(crate) async fn find_app(ctx: &Shared, name: &str) -> Result<offshoot_store::App, crate::error::ApiError> {
    Ok(offshoot_control::find_app(&ctx.store, name).await?)
}

pub(crate) async fn find_env(ctx: &Shared, id: &str) -> Result<offshoot_store::Environment, crate::error::ApiError> {
    Ok(offshoot_control::find_env(&ctx.store, id).await?)
}
