//! What the use cases need from the server around them, and nothing else: repositories fetched
//! into mirrors, deployments run (in the background or now), pull requests told, Instant
//! Datasets' keepers woken and clones dropped, secrets sealed with the server's key.

use crate::imports::{RepoError, Repos};
use offshoot_git::Mirror;
use std::collections::HashMap;
use std::future::Future;
use tokio::sync::Mutex;

pub trait Ports: Send + Sync {
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
