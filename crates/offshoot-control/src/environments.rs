//! Environments: created for a branch (with the environments of the applications it imports),
//! deployed again, torn down. Each records a deployment and hands it to [`Ports::start`]; the
//! executor does the rest.

use crate::error::ControlError;
use crate::gate::{Noted, Operation, gate};
use crate::imports::{ImportInfo, Planned, Request, unsupported};
use crate::plan::Workflow;
use crate::ports::{Mirrors, Ports};
use crate::{Control, config::Config};
use offshoot_api_types::{DeploymentStatus, EnvStatus};
use offshoot_git::Mirror;
use offshoot_git::hooks::PullRequest;
use offshoot_store::{App, Deployment, Environment, now_ms};
use offshoot_store::{DeploymentId, EnvId};
use offshoot_template::document::{self, Kind};
use offshoot_template::model::Template;
use std::collections::BTreeMap;

/// A new environment.
#[derive(Clone, Debug, Default)]
pub struct NewEnv {
    pub app: String,
    pub branch: String,
    /// The commit its `setup` deploys (default: the branch's head when it runs).
    pub commit: Option<String>,
    pub environment_template: Option<String>,
    pub ttl_seconds: Option<u64>,
    /// The pull request it is made for: its labels choose the imports (`pull_request_labels`).
    pub pull_request: Option<PullRequest>,
    /// Template and variables read from the branch (GitOps), instead of the app's latest version.
    pub config: Option<Config>,
    /// The application's repository, just fetched (else it is fetched now).
    pub mirror: Option<Mirror>,
    /// Values of its template's `parameters` (the defaults apply to the rest).
    pub parameters: BTreeMap<String, String>,
}

/// A deployment of `workflow`, running, not started yet.
pub fn new_deployment(env_id: &str, workflow: Workflow, commit: Option<String>) -> Deployment {
    Deployment {
        id: crate::ids::new_deployment_id(),
        env_id: env_id.into(),
        workflow: workflow.as_str().to_owned(),
        commit_sha: commit,
        status: DeploymentStatus::Running,
        error: None,
        phases: "{}".into(),
        created_at: now_ms(),
        finished_at: None,
    }
}

/// The longest lifetime an environment may be given (a year).
pub const MAX_TTL_SECONDS: u64 = 366 * 24 * 3600;

impl<P: Ports> Control<'_, P> {
    /// Checks and records a new environment with its imports' environments, and starts its
    /// `setup`. Every check (template, environment template, datasets, branch, imports) comes
    /// before anything is recorded.
    pub async fn create_env(&self, req: NewEnv) -> Result<Environment, ControlError> {
        let app = req.app.clone();
        gate(self.store, &self.actor, Operation::CreateEnv, &app, self.create_env_checked(req), |e| {
            Noted::detail(format!("environment {}", e.id))
        })
        .await
    }

    async fn create_env_checked(&self, req: NewEnv) -> Result<Environment, ControlError> {
        let app = self.find_app(&req.app).await?;
        if req.ttl_seconds.is_some_and(|t| t == 0 || t > MAX_TTL_SECONDS) {
            return Err(ControlError::bad_input("a lifetime must be between 1 second and 366 days"));
        }
        let (template, env_vars) = match req.config {
            Some(c) => c,
            None => {
                let v = self.template(&app.name).await?;
                (v.template, v.env_vars)
            }
        };
        let (t, environment_template) = self.checked_template(&template, req.environment_template.as_deref()).await?;
        offshoot_template::params::bind(&t, &req.parameters).map_err(|problems| ControlError::Unprocessable {
            code: "invalid-parameter",
            message: problems.join("; "),
            hint: Some("`offshoot app template APP` shows the template's `parameters`".into()),
        })?;
        // A fork's pull request is deployed once approved, and as what it is (its secrets kept).
        if offshoot_git::hooks::is_pull_ref(&req.branch) && req.pull_request.as_ref().is_none_or(|p| p.fork.is_none()) {
            return Err(ControlError::BadInput {
                message: format!("`{}` is a pull request's head, not a branch", req.branch),
                hint: Some(format!("a pull request from a fork gets its environment once approved: `offshoot env approve {} N`", app.name)),
            });
        }
        self.check_branch(&app, req.mirror, &req.branch).await?;
        // Without its own lifetime, the application's for its kind (pull request or not).
        let git = self.store.app_git(&app.name).await?;
        let default_ttl = git.and_then(|g| if req.pull_request.is_some() { g.pull_request_ttl_seconds } else { g.ttl_seconds });
        let ttl_ms = req.ttl_seconds.map(|s| s as i64).or(default_ttl).map(|s| s * 1000);
        // Imports: every check before anything is recorded or started.
        let labels = req.pull_request.as_ref().map(|p| p.labels.as_slice());
        let (imports, warnings) = if t.app_imports.is_empty() {
            (Vec::new(), Vec::new())
        } else {
            let plan = self.plan_imports(&app.name, &t, &req.branch, req.environment_template.as_deref(), labels).await?;
            (plan.imports, plan.warnings)
        };
        // Room for it, once everything about it is known to be right. Boxed: putting another
        // environment to sleep is a large future, and this one is awaited deep in a webhook's.
        Box::pin(self.admit(crate::capacity::memory_of(&template), None)).await?;
        let id = crate::ids::new_env_id();
        let now = now_ms();
        for w in &warnings {
            tracing::warn!(env = %id, warning = %w, "app imports");
        }
        let env = Environment {
            id: id.clone(),
            app: app.name.clone(),
            branch: req.branch.clone(),
            commit_sha: None,
            environment_template,
            status: EnvStatus::Creating,
            reason: None,
            template,
            env_vars,
            expires_at: ttl_ms.map(|ms| now + ms),
            created_at: now,
            updated_at: now,
            parent_id: None,
            import_info: if warnings.is_empty() {
                None
            } else {
                Some(
                    serde_json::to_string(&ImportInfo { warnings, ..Default::default() })
                        .map_err(|e| ControlError::bad_input(e.to_string()))?,
                )
            },
            pull_request: req
                .pull_request
                .as_ref()
                .map(serde_json::to_string)
                .transpose()
                .map_err(|e| ControlError::bad_input(e.to_string()))?,
            sleeping_since: None,
            last_request_at: None,
            idle_sleep_seconds: None,
            parameters: if req.parameters.is_empty() {
                None
            } else {
                Some(serde_json::to_string(&req.parameters).map_err(|e| ControlError::bad_input(e.to_string()))?)
            },
        };
        self.store.create_env(&env).await?;
        self.create_imported(&id, imports, now).await?;
        let dep = new_deployment(&id, Workflow::Setup, req.commit);
        self.store.create_deployment(&dep).await?;
        self.ports.start(dep.id);
        tracing::info!(env = %id, app = %app.name, branch = %req.branch, "environment created");
        Ok(env)
    }

    /// The template an environment forks, checked: valid, supported, defining the environment
    /// template asked for, listing datasets that exist. With the environment template's name.
    async fn checked_template(&self, template: &str, asked: Option<&str>) -> Result<(Template, Option<String>), ControlError> {
        let doc = document::check("application_template.yaml", template, Some(Kind::Template));
        let errors: Vec<_> = doc.diagnostics.iter().filter(|d| d.is_error()).cloned().collect();
        if !errors.is_empty() {
            return Err(ControlError::Invalid { message: "the application's template is invalid".into(), diagnostics: errors });
        }
        let Some(t) = doc.template else {
            return Err(ControlError::Invalid { message: "the application's template is empty".into(), diagnostics: Vec::new() });
        };
        if let Some(why) = doc.root.as_ref().and_then(|root| unsupported(root, self.ports.runtime())) {
            return Err(ControlError::Unprocessable { code: "unsupported", message: why, hint: None });
        }
        if let Some(name) = asked
            && !t.environment_templates.iter().any(|e| e.name.as_str() == name)
        {
            let names: Vec<&str> = t.environment_templates.iter().map(|e| e.name.as_str()).collect();
            return Err(ControlError::bad_input(format!("environment template `{name}` is not defined"))
                .with_hint(format!("defined: {}", names.join(", "))));
        }
        let environment_template = t.environment_template_name(asked).or_else(|| asked.map(str::to_owned));
        for name in t.datasets_of(environment_template.as_deref()) {
            if self.store.dataset(&name).await?.is_none_or(|x| x.state == "deleting") {
                let chosen = environment_template.as_deref().unwrap_or_default();
                return Err(ControlError::Unprocessable {
                    code: "unknown-dataset",
                    message: format!("environment template `{chosen}` lists dataset `{name}`, which does not exist"),
                    hint: Some(format!("create it: `offshoot dataset create {name} --source postgres://...`")),
                });
            }
        }
        Ok((t, environment_template))
    }

    /// Whether `branch` exists in the application's repository (fetched now unless given).
    async fn check_branch(&self, app: &App, mirror: Option<Mirror>, branch: &str) -> Result<(), ControlError> {
        let mirror = match mirror {
            Some(m) => m,
            None => self.ports.fetch(&app.repo).await.map_err(|e| ControlError::Fetch { repo: app.repo.clone(), why: e.0 })?,
        };
        let b = branch.to_owned();
        let (exists, branches) =
            tokio::task::spawn_blocking(move || (mirror.resolve(&b).ok().flatten().is_some(), mirror.branches())).await?;
        if exists {
            Ok(())
        } else {
            Err(ControlError::not_found("branch", branch, format!("branches of `{}`: {}", app.name, branches?.join(", "))))
        }
    }

    /// Records the imported apps' environments of `parent`, in import order (the importer's
    /// `setup` deploys them first).
    pub async fn create_imported(&self, parent: &str, imports: Vec<Planned>, now: i64) -> Result<(), ControlError> {
        for (i, p) in imports.into_iter().enumerate() {
            let child = Environment {
                id: crate::ids::new_env_id(),
                app: p.app.name.clone(),
                branch: p.branch,
                commit_sha: None,
                environment_template: p.environment_template,
                status: EnvStatus::Creating,
                reason: None,
                template: p.version.template,
                env_vars: p.version.env_vars,
                expires_at: None,
                // Ordered after the importer and among themselves.
                created_at: now + 1 + i as i64,
                updated_at: now,
                parent_id: Some(parent.into()),
                import_info: Some(serde_json::to_string(&p.info).map_err(|e| ControlError::bad_input(e.to_string()))?),
                pull_request: None,
                sleeping_since: None,
                last_request_at: None,
                idle_sleep_seconds: None,
                parameters: None,
            };
            self.store.create_env(&child).await?;
            tracing::info!(env = %child.id, app = %child.app, branch = %child.branch, %parent, reason = %p.info.reason, "imported environment created");
        }
        Ok(())
    }

    /// Deploys an environment again, at `commit` (default: its branch's head): `patch` once its
    /// `setup` has succeeded, `setup` again until then.
    pub async fn deploy_env(&self, id: &str, commit: Option<String>) -> Result<Environment, ControlError> {
        let work = async {
            let e = self.find_env(id).await?;
            if e.status == EnvStatus::Deleted || e.status == EnvStatus::TearingDown {
                return Err(ControlError::Conflict {
                    code: "conflict",
                    message: format!("environment `{id}` is {}", e.status),
                    hint: None,
                });
            }
            if let Some(c) = &commit
                && (c.len() != 40 || !c.bytes().all(|b| b.is_ascii_hexdigit()))
            {
                return Err(ControlError::bad_input(format!("`{c}` is not a full commit SHA")));
            }
            // A fork's pull request runs only the commit approved (forks.rs).
            let commit = self.approved_for(&e, commit).await?;
            // A sleeper wakes first: `patch` starts only what it rebuilds, the rest must run.
            if matches!(e.status, EnvStatus::Sleeping | EnvStatus::Waking) {
                self.finish_wake(&e).await?;
            }
            // `patch` redeploys what is built from the repository; an environment whose `setup`
            // never succeeded (a missing dataset clone, say) has nothing running yet.
            let set_up = self
                .store
                .deployments(id)
                .await?
                .iter()
                .any(|d| d.workflow == Workflow::Setup.as_str() && d.status == DeploymentStatus::Succeeded);
            self.start(&e, if set_up { Workflow::Patch } else { Workflow::Setup }, commit).await?;
            self.find_env(id).await
        };
        gate(self.store, &self.actor, Operation::DeployEnv, id, work, |_| Noted::default()).await
    }

    /// Runs `workflow` on an environment (a push's `patch`, a changed import's `setup`).
    pub async fn run_workflow(&self, env: &Environment, workflow: Workflow, commit: Option<String>) -> Result<DeploymentId, ControlError> {
        let op = if workflow == Workflow::Teardown { Operation::DeleteEnv } else { Operation::DeployEnv };
        gate(self.store, &self.actor, op, &env.id, self.start(env, workflow, commit), |d| Noted::detail(format!("deployment {d}"))).await
    }

    async fn start(&self, env: &Environment, workflow: Workflow, commit: Option<String>) -> Result<DeploymentId, ControlError> {
        let status = if workflow == Workflow::Teardown { EnvStatus::TearingDown } else { EnvStatus::Deploying };
        self.store.set_env_status(&env.id, status, None).await?;
        let dep = new_deployment(&env.id, workflow, commit);
        self.store.create_deployment(&dep).await?;
        let id = dep.id.clone();
        self.ports.start(dep.id);
        Ok(id)
    }

    /// Tears an environment down (with the environments of its imports); `reason` is shown on
    /// it meanwhile. An imported environment goes with its importer, never alone.
    pub async fn delete_env(&self, id: &str, reason: Option<&str>) -> Result<Environment, ControlError> {
        let work = async {
            let e = self.find_env(id).await?;
            if let Some(parent) = &e.parent_id
                && self.store.env(parent).await?.is_some_and(|p| p.status != EnvStatus::Deleted)
            {
                return Err(ControlError::Conflict {
                    code: "imported",
                    message: format!("environment `{id}` belongs to environment `{parent}`, which imports `{}`", e.app),
                    hint: Some(format!("delete `{parent}`: its imports go with it")),
                });
            }
            if e.status != EnvStatus::Deleted && e.status != EnvStatus::TearingDown {
                self.store.set_env_status(id, EnvStatus::TearingDown, reason).await?;
                let dep = new_deployment(id, Workflow::Teardown, None);
                self.store.create_deployment(&dep).await?;
                self.ports.start(dep.id);
            }
            self.find_env(id).await
        };
        gate(self.store, &self.actor, Operation::DeleteEnv, id, work, |_| Noted::default()).await
    }
}

impl<P: Ports> Control<'_, P> {
    /// Tears down every live environment whose lifetime ended by `now` (ms); the ids of those
    /// it started tearing down.
    /// Gives an environment `ttl_seconds` more from now (it expires then, whatever it was).
    pub async fn extend_env(&self, id: &str, ttl_seconds: u64) -> Result<Environment, ControlError> {
        let work = async {
            let env = self.find_env(id).await?;
            if matches!(env.status, EnvStatus::TearingDown | EnvStatus::Deleted) {
                return Err(ControlError::Conflict {
                    code: "conflict",
                    message: format!("environment `{id}` is {}", env.status),
                    hint: None,
                });
            }
            if ttl_seconds == 0 || ttl_seconds > MAX_TTL_SECONDS {
                return Err(ControlError::bad_input("ttl: a lifetime must be between 1 second and 366 days"));
            }
            self.store.set_env_expiry(id, Some(now_ms() + (ttl_seconds as i64) * 1000)).await?;
            self.find_env(id).await
        };
        gate(self.store, &self.actor, Operation::ExtendEnv, id, work, |_| Noted::detail(format!("{ttl_seconds} s"))).await
    }

    /// The pull-request environments that expire within a day of `now` (ms) and whose pull
    /// request was not warned yet; each is marked warned, once per expiry time.
    pub async fn expiry_warnings(&self, now: i64) -> Result<Vec<Environment>, ControlError> {
        let mut out = Vec::new();
        for env in self.store.envs(None, false).await? {
            let soon = env.expires_at.is_some_and(|t| t > now && t - now <= 24 * 3600 * 1000);
            if soon && env.pull_request.is_some() && env.parent_id.is_none() && self.store.mark_expiry_warned(&env.id).await? {
                out.push(env);
            }
        }
        Ok(out)
    }

    pub async fn expire(&self, now: i64) -> Result<Vec<EnvId>, ControlError> {
        let mut out = Vec::new();
        for env in self.store.envs(None, false).await? {
            if env.expires_at.is_some_and(|t| t <= now) && env.status != EnvStatus::TearingDown {
                tracing::info!(env = %env.id, "expired; tearing down");
                self.delete_env(&env.id, Some("expired")).await?;
                out.push(env.id);
            }
        }
        Ok(out)
    }

    /// The imports an environment of `importer` (template `t`) on `branch` brings along now;
    /// each repository fetched once.
    pub async fn plan_imports(
        &self,
        importer: &str,
        t: &offshoot_template::model::Template,
        branch: &str,
        environment_template: Option<&str>,
        labels: Option<&[String]>,
    ) -> Result<crate::imports::ImportPlan, ControlError> {
        let repos = Mirrors::new(&self.ports);
        let r = Request { importer, template: t, branch, environment_template, labels, runtime: self.ports.runtime() };
        Ok(crate::imports::plan(self.store, &repos, r).await?)
    }
}
