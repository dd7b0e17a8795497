//! The use cases (`offshoot_control::Control`) on this server: repositories fetched into its
//! mirrors, deployments run by its controller, secrets sealed with its key, environments'
//! engines chosen by `backends`, the router and the monitors told when an environment slept or
//! woke.

use crate::state::Shared;
use offshoot_control::imports::RepoError;
use offshoot_control::{Actor, Control, Ports};
use offshoot_git::Mirror;

/// This server as the use cases' ports.
#[derive(Clone, Copy)]
pub(crate) struct Plane<'a>(&'a Shared);

impl Ports for Plane<'_> {
    type Engine = crate::backends::EnvBackend;

    async fn engine(&self, env: &offshoot_store::Environment) -> Result<Self::Engine, offshoot_control::ControlError> {
        let ctx = self.0;
        let resolved = crate::resolving::resolve_env(ctx, env, None)
            .await
            .map_err(|f| offshoot_control::ControlError::Backend(offshoot_control::BackendError::from(f)))?;
        let images = crate::state::images_of(ctx, &env.id).await?;
        Ok(crate::backends::EnvBackend::for_teardown(ctx, env, resolved, images))
    }

    async fn job_engine(&self, env: &offshoot_store::Environment) -> Result<Self::Engine, offshoot_control::ControlError> {
        let ctx = self.0;
        let backend = |f: crate::failure::Failure| offshoot_control::ControlError::Backend(offshoot_control::BackendError::from(f));
        let mut resolved = crate::resolving::resolve_env(ctx, env, None).await.map_err(backend)?;
        resolved.add_outputs(&crate::infra::flatten(&crate::infra::stored_outputs(ctx, &env.id).await.map_err(backend)?));
        let images = crate::state::images_of(ctx, &env.id).await?;
        let files = crate::monitors::mounted_files(ctx, env, &resolved).await.map_err(backend)?;
        Ok(crate::backends::EnvBackend::at_rest_with(ctx, env, resolved, images, files))
    }

    fn runtime(&self) -> offshoot_template::ledger::Runtime {
        self.0.runtime()
    }

    async fn changed(&self, env: &offshoot_store::Environment) {
        self.0.refresh_routes().await;
        if let Ok(Some(now)) = self.0.store.env(&env.id).await {
            if now.status == offshoot_api_types::EnvStatus::Ready {
                crate::monitors::rewatch_env(self.0, &now).await;
            }
            // Its pull request's comment says it sleeps, or is awake again.
            crate::feedback::notify(self.0, &now);
        }
    }

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

    fn capacity(&self) -> offshoot_control::capacity::Capacity {
        self.0.capacity
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

    fn unseal(&self, sealed: &str, context: &str) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
        Ok(self.0.key.decrypt(sealed, context)?)
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
