//! App imports on this server: the use case (`offshoot_control::imports`) given the
//! repositories as this server fetches them, and its refusals as API errors.

use crate::error::ApiError;
use crate::state::Shared;
use axum::http::StatusCode;
use offshoot_control::imports::{ImportError, ImportPlan, RepoError, Repos, Request};
pub(crate) use offshoot_control::imports::{ImportInfo, Planned, unsupported};
use offshoot_git::Mirror;
use offshoot_template::model::Template;
use std::collections::HashMap;
use tokio::sync::Mutex;

/// The applications' repositories, each fetched once per plan.
struct Mirrors<'a> {
    ctx: &'a Shared,
    fetched: Mutex<HashMap<String, Mirror>>,
}

impl Repos for Mirrors<'_> {
    async fn has_branch(&self, repo: &str, branch: &str) -> Result<bool, RepoError> {
        let mut fetched = self.fetched.lock().await;
        let mirror = match fetched.get(repo) {
            Some(m) => m.clone(),
            None => {
                let m = self.ctx.sync_mirror(repo).await.map_err(RepoError)?;
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

/// The imports of `importer` (template `t`) for an environment of `branch`; see
/// `offshoot_control::imports::plan`.
pub(crate) async fn plan(
    ctx: &Shared,
    importer: &str,
    t: &Template,
    branch: &str,
    environment_template: Option<&str>,
    labels: Option<&[String]>,
) -> Result<(Vec<Planned>, Vec<String>), ApiError> {
    let repos = Mirrors { ctx, fetched: Mutex::new(HashMap::new()) };
    let req = Request { importer, template: t, branch, environment_template, labels };
    match offshoot_control::imports::plan(&ctx.store, &repos, req).await {
        Ok(ImportPlan { imports, warnings }) => Ok((imports, warnings)),
        Err(ImportError::Store(e)) => Err(e.into()),
        Err(ImportError::InvalidTemplate { name, diagnostics }) => {
            Err(ApiError::invalid(format!("the template of imported application `{name}` is invalid"), &diagnostics))
        }
        Err(e) => {
            let err = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-import", e.to_string());
            Err(match e.hint() {
                Some(h) => err.hint(h),
                None => err,
            })
        }
    }
}
