//! What the use cases need from the server around them, and nothing else: repositories fetched
//! into mirrors, deployments run (in the background or now), pull requests told, Instant
//! Datasets' keepers woken and clones dropped, secrets sealed with the server's key, an
//! environment's engine at rest (to put it to sleep and wake it), and the router told when an
//! environment changed outside a deployment.

use crate::imports::{RepoError, Repos};
use offshoot_git::Mirror;
use std::collections::HashMap;
use std::future::Future;
use tokio::sync::Mutex;

pub trait Ports: Send + Sync {
    /// An environment's engine, as [`Ports::engine`] gives it.
    type Engine: crate::Backend;
    /// The engine of `env` with its configuration, to stop and start its services.
    fn engine(&self, env: &offshoot_store::Environment) -> impl Future<Output = Result<Self::Engine, crate::ControlError>> + Send;
    /// The engine of `env` ready to run one of its jobs between deployments (a cron job): with
    /// what its services mount (repository files, file secrets), which a job made from a
    /// service mounts too.
    fn job_engine(&self, env: &offshoot_store::Environment) -> impl Future<Output = Result<Self::Engine, crate::ControlError>> + Send {
        self.engine(env)
    }
    /// Where environments run (Docker by default): what the compatibility ledger says of a
    /// template depends on it.
    fn runtime(&self) -> offshoot_template::ledger::Runtime {
        offshoot_template::ledger::Runtime::Docker
    }
    /// The server's limits on running environments (none by default).
    fn capacity(&self) -> crate::capacity::Capacity {
        crate::capacity::Capacity::default()
    }
    /// `env` slept, woke or failed outside a deployment: the router and the probe monitors
    /// follow its new state.
    fn changed(&self, env: &offshoot_store::Environment) -> impl Future<Output = ()> + Send;
    /// The mirror of `repo` (a path or URL), fetched now.
    fn fetch(&self, repo: &str) -> impl Future<Output = Result<Mirror, RepoError>> + Send;
    /// Runs a recorded deployment in the background (the server's controller).
    fn start(&self, deployment: offshoot_store::DeploymentId);
    /// Runs a recorded deployment now and waits for it to end.
    fn run(
        &self,
        deployment: offshoot_store::DeploymentId,
    ) -> impl Future<Output = Result<(), Box<dyn std::error::Error + Send + Sync>>> + Send;
    /// Tells the environment's pull request about it (a comment, a status), in the background.
    fn notify(&self, env: &offshoot_store::Environment);
    /// Wakes the Instant Datasets pool keepers (a clone was taken or returned).
    fn wake_pools(&self);
    /// Drops a clone's database and login on its dataset's server (its record stays).
    fn drop_clone(
        &self,
        clone: &offshoot_store::DatasetClone,
    ) -> impl Future<Output = Result<(), Box<dyn std::error::Error + Send + Sync>>> + Send;
    /// Encrypts a secret for the store, bound to `context` (it decrypts only with it).
    fn seal(&self, plaintext: &str, context: &str) -> Result<String, Box<dyn std::error::Error + Send + Sync>>;
    /// Opens what [`Ports::seal`] sealed with `context`.
    fn unseal(&self, sealed: &str, context: &str) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
        let _ = (sealed, context);
        Err("this server cannot open sealed values".into())
    }
}

/// The applications' repositories for one plan of imports, each fetched once.
pub(crate) struct Mirrors<'a, P> {
    ports: &'a P,
    fetched: Mutex<HashMap<String, Mirror>>,
}

impl<'a, P: Ports> Mirrors<'a, P> {
    pub(crate) fn new(ports: &'a P) -> Self {
        Mirrors { ports, fetched: Mutex::new(HashMap::new()) }
    }
}

impl<P: Ports> Repos for Mirrors<'_, P> {
    async fn has_branch(&self, repo: &str, branch: &str) -> Result<bool, RepoError> {
        let mut fetched = self.fetched.lock().await;
        let mirror = match fetched.get(repo) {
            Some(m) => m.clone(),
            None => {
                let m = self.ports.fetch(repo).await?;
                fetched.insert(repo.to_owned(), m.clone());
                m
            }
        };
        drop(fetched);
        let b = branch.to_owned();
        let found = tokio::task::spawn_blocking(move || mirror.resolve(&b)).await.map_err(|e| RepoError(e.to_string()))?;
        Ok(found.map_err(|e| RepoError(e.to_string()))?.is_some())
    }
}
