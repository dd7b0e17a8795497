//! What a repository's events do: a push patches the environments tracking the branch (or
//! re-runs `setup` with the pushed configuration, under GitOps); a pull request gets an
//! environment of its own, patched on new commits and torn down when it closes. Webhooks and
//! polling both record an event as a delivery first ([`record_delivery`]) and then hand it
//! here, so a delivery is handled once, and after a restart if the server stopped before.
//!
//! Nothing is ever torn down because of what a git host did or failed to do: a deleted branch,
//! a failed fetch or a missing ref leaves every environment as it is; only a closed pull request
//! tears its own environment down.

use crate::Control;
use crate::environments::NewEnv;
use crate::error::ControlError;
use crate::imports::{ImportInfo, Planned};
use crate::plan::Workflow;
use crate::ports::Ports;
use offshoot_api_types::{DeploymentStatus, EnvStatus};
use offshoot_git::Mirror;
use offshoot_git::hooks::{GitEvent, PrAction, PullRequest};
use offshoot_store::{Delivery, Environment, Store, StoreError};
use offshoot_template::document::{self, Kind};
use offshoot_template::model;
use std::time::Duration;

/// Attempts to fetch before a delivery fails (with 0.2 s, then 1 s between them).
pub(crate) const FETCH_ATTEMPTS: u32 = 3;

/// Records a new event; `false` when a delivery of that id was recorded before.
pub async fn record_delivery(store: &Store, id: &str, app: &str, event: &GitEvent) -> Result<bool, StoreError> {
    let d = Delivery {
        id: id.to_owned(),
        app: app.to_owned(),
        event: serde_json::to_string(event).map_err(|source| StoreError::Decode { what: "git event", name: id.to_owned(), source })?,
        status: "pending".into(),
        result: None,
        received_at: offshoot_store::now_ms(),
        finished_at: None,
    };
    store.add_delivery(&d).await
}

/// A failure that a delivery records as its result.
pub(crate) fn failed(message: impl Into<String>) -> ControlError {
    ControlError::Unprocessable { code: "delivery", message: message.into(), hint: None }
}

impl<P: Ports> Control<'_, P> {
    /// Handles a recorded delivery, once (a delivery no longer pending is left alone), and
    /// records its result. The caller handles one delivery of an application at a time.
    pub async fn handle_delivery(&self, id: &str) -> Result<(), ControlError> {
        let Some(d) = self.store.delivery(id).await? else { return Ok(()) };
        if d.status != "pending" {
            return Ok(());
        }
        let outcome = match serde_json::from_str::<GitEvent>(&d.event) {
            Ok(GitEvent::Push { ref_name, commit }) => self.on_push(&d.app, &ref_name, commit.as_deref()).await,
            Ok(GitEvent::PullRequest(pr)) if pr.fork.is_some() => self.on_fork_pull_request(&d.app, pr).await,
            Ok(GitEvent::PullRequest(pr)) => self.on_pull_request(&d.app, pr).await,
            Ok(GitEvent::Approve { number, by }) => self.approve(&d.app, number, &format!("{by} (a comment)")).await,
            Err(e) => Err(failed(format!("unreadable event: {e}"))),
        };
        let (st, text) = match outcome {
            Ok(text) => ("done", text),
            Err(e) => ("failed", e.to_text()),
        };
        tracing::info!(delivery = %d.id, app = %d.app, status = st, result = %text, "delivery handled");
        Ok(self.store.finish_delivery(&d.id, st, &text).await?)
    }

    /// Fetches the application's repository, up to `attempts` times (0.2 s, then 1 s apart);
    /// records the outcome on the application (`fetch_error`).
    pub async fn fetch_app(&self, app: &offshoot_store::App, attempts: u32) -> Result<Mirror, ControlError> {
        let mut last = String::new();
        for attempt in 0..attempts {
            if attempt > 0 {
                tokio::time::sleep(if attempt == 1 { Duration::from_millis(200) } else { Duration::from_secs(1) }).await;
            }
            match self.ports.fetch(&app.repo).await {
                Ok(m) => {
                    self.store.set_fetch_error(&app.name, None).await?;
                    return Ok(m);
                }
                Err(e) => last = e.0,
            }
        }
        // Applications made before git settings existed get theirs here, to hold the error.
        self.app_git(&app.name).await?;
        let e = ControlError::Fetch { repo: app.repo.clone(), why: last };
        self.store.set_fetch_error(&app.name, Some(&e.to_string())).await?;
        Err(e)
    }

    /// What a push to `ref_name` does: GitOps, then `patch` (or `setup`) of the environments that
    /// track it and deploy automatically.
    async fn on_push(&self, app_name: &str, ref_name: &str, commit: Option<&str>) -> Result<String, ControlError> {
        let Some(commit) = commit else {
            return Ok(format!("`{ref_name}` was deleted; its environments are kept (delete them, or close their pull requests)"));
        };
        let app = self.store.app(app_name).await?.ok_or_else(|| failed("the application was deleted"))?;
        let mirror = self.fetch_app(&app, FETCH_ATTEMPTS).await?;
        let (m, c) = (mirror.clone(), commit.to_owned());
        let present = tokio::task::spawn_blocking(move || m.has_commit(&c)).await??;
        if !present {
            return Err(failed(format!("commit {} is not in `{}` after fetching", short(commit), app.repo)));
        }
        // Seen only once fetched: after a failed fetch, the poller still reports this push.
        self.store.set_git_head(app_name, ref_name, commit).await?;
        // GitOps: the configuration at the pushed commit, when the repository has Release's files.
        let gitops = match gitops_config(&mirror, commit).await {
            Ok(config) => {
                self.store.set_gitops_error(&app.name, None).await?;
                config
            }
            Err(e) => {
                let text = format!("push of {} to `{ref_name}` refused: {}", short(commit), e.to_text());
                self.store.set_gitops_error(&app.name, Some(&text)).await?;
                return Err(failed(format!("{text}\nenvironments left as they are")));
            }
        };
        let mut done = Vec::new();
        if let Some((template, env_vars)) = &gitops
            && tracks(&app, template, ref_name)
        {
            let latest = self.store.latest_version(&app.name).await?;
            if latest.is_none_or(|v| &v.template != template || &v.env_vars != env_vars) {
                let v = self.store.add_version(&app.name, template, env_vars).await?;
                done.push(format!("version {v} of the template from {}", short(commit)));
            }
        }
        for env in self.targets(&app.name, ref_name).await? {
            let (template, env_vars) = gitops.clone().unwrap_or_else(|| (env.template.clone(), env.env_vars.clone()));
            if !auto_deploy(&template, env.environment_template.as_deref()) {
                done.push(format!("{}: `auto_deploy` is off", env.id));
                continue;
            }
            let changed = template != env.template || env_vars != env.env_vars;
            if changed {
                self.store.set_env_config(&env.id, &template, &env_vars).await?;
                self.run_workflow(&env, Workflow::Setup, Some(commit.to_owned())).await?;
                done.push(format!("{}: setup with the pushed configuration", env.id));
            } else if self.already_deploying(&env, commit).await? {
                done.push(format!("{}: already at {}", env.id, short(commit)));
            } else {
                self.run_workflow(&env, Workflow::Patch, Some(commit.to_owned())).await?;
                done.push(format!("{}: patch to {}", env.id, short(commit)));
            }
        }
        if done.is_empty() {
            done.push(format!("no environment tracks `{ref_name}`"));
        }
        Ok(done.join("; "))
    }

    /// The live environments of an application that follow `ref_name`: those of the branch (but
    /// those tracking a tag), or those tracking the tag.
    async fn targets(&self, app: &str, ref_name: &str) -> Result<Vec<Environment>, ControlError> {
        let all = self.store.envs(Some(app), false).await?;
        Ok(all
            .into_iter()
            .filter(|e| e.status != EnvStatus::TearingDown)
            .filter(|e| match (ref_name.strip_prefix("refs/heads/"), ref_name.strip_prefix("refs/tags/")) {
                (Some(branch), _) => e.branch == branch && tracking_tag(e).is_none(),
                (_, Some(tag)) => tracking_tag(e).as_deref() == Some(tag),
                _ => false,
            })
            .collect())
    }

    /// Whether the environment's latest deployment already is (or was) of `commit`: a push seen
    /// twice (webhook and poll, or push and pull-request synchronize) deploys once.
    async fn already_deploying(&self, env: &Environment, commit: &str) -> Result<bool, ControlError> {
        let deps = self.store.deployments(&env.id).await?;
        Ok(deps
            .iter()
            .filter(|d| d.workflow != Workflow::Teardown.as_str())
            .max_by_key(|d| d.created_at)
            .is_some_and(|d| d.commit_sha.as_deref() == Some(commit) && d.status != DeploymentStatus::Failed))
    }

    /// The environment made for a pull request, if there is one.
    pub(crate) async fn pr_env(&self, app: &str, pr: &PullRequest) -> Result<Option<Environment>, ControlError> {
        let key = pr.key();
        let all = self.store.envs(Some(app), false).await?;
        Ok(all.into_iter().find(|e| {
            e.parent_id.is_none()
                && e.status != EnvStatus::TearingDown
                && e.pull_request.as_deref().and_then(|p| serde_json::from_str::<PullRequest>(p).ok()).is_some_and(|p| p.key() == key)
        }))
    }

    pub(crate) async fn on_pull_request(&self, app_name: &str, pr: PullRequest) -> Result<String, ControlError> {
        let app = self.store.app(app_name).await?.ok_or_else(|| failed("the application was deleted"))?;
        let git = self.app_git(app_name).await?;
        let existing = self.pr_env(app_name, &pr).await?;
        match (pr.action, existing) {
            (PrAction::Closed, Some(env)) => {
                self.delete_env(&env.id, Some("the pull request was closed")).await?;
                Ok(format!("{}: teardown (pull request #{} closed)", env.id, pr.number))
            }
            (PrAction::Closed, None) => Ok(format!("no environment for pull request #{}", pr.number)),
            (PrAction::Synchronize | PrAction::Reopened | PrAction::Opened, Some(env)) => {
                self.set_pull_request(&env, &pr).await?;
                if self.already_deploying(&env, &pr.head_commit).await? {
                    return Ok(format!("{}: already at {}", env.id, short(&pr.head_commit)));
                }
                self.fetch_app(&app, FETCH_ATTEMPTS).await?;
                self.run_workflow(&env, Workflow::Patch, Some(pr.head_commit.clone())).await?;
                Ok(format!("{}: patch to {}", env.id, short(&pr.head_commit)))
            }
            (PrAction::Labeled, Some(env)) => {
                self.set_pull_request(&env, &pr).await?;
                self.reimport(&env, &pr).await
            }
            (PrAction::Synchronize, None) => Ok(format!("no environment for pull request #{}", pr.number)),
            (PrAction::Opened | PrAction::Reopened | PrAction::Labeled, None) => {
                if git.pull_requests == 0 {
                    return Ok("pull-request environments are off for this application (`offshoot app set --pull-requests on`)".into());
                }
                if let Some(label) = &git.pull_request_label
                    && !pr.labels.contains(label)
                {
                    return Ok(format!("pull request #{} does not carry the label `{label}`", pr.number));
                }
                let mirror = self.fetch_app(&app, FETCH_ATTEMPTS).await?;
                // GitOps: the pull request's environment runs the configuration of its head commit.
                let config = gitops_config(&mirror, &pr.head_commit)
                    .await
                    .map_err(|e| failed(format!("the pull request's configuration is invalid: {}", e.to_text())))?;
                let req = NewEnv {
                    app: app.name.into_string(),
                    branch: pr.head_branch.clone(),
                    commit: Some(pr.head_commit.clone()),
                    pull_request: Some(pr.clone()),
                    config,
                    mirror: Some(mirror),
                    ..NewEnv::default()
                };
                let env = self.create_env(req).await?;
                self.ports.notify(&env);
                Ok(format!("{}: created for pull request #{} ({})", env.id, pr.number, pr.head_branch))
            }
        }
    }

    /// Keeps the latest state of the pull request (labels, head) on its environment.
    async fn set_pull_request(&self, env: &Environment, pr: &PullRequest) -> Result<(), ControlError> {
        let text = serde_json::to_string(pr).map_err(|e| failed(e.to_string()))?;
        Ok(self.store.set_env_pull_request(&env.id, &text).await?)
    }

    /// Labels changed: brings along the imports whose `pull_request_labels` now match, tears down
    /// those that no longer do, and re-runs `setup` when anything changed.
    async fn reimport(&self, env: &Environment, pr: &PullRequest) -> Result<String, ControlError> {
        let doc = document::check("application_template.yaml", &env.template, Some(Kind::Template));
        let Some(t) = doc.template else { return Err(failed("the environment's template does not parse")) };
        if t.app_imports.iter().all(|i| i.pull_request_labels.is_empty()) {
            return Ok(format!("{}: labels do not choose any import", env.id));
        }
        let planned = self.plan_imports(&env.app, &t, &env.branch, env.environment_template.as_deref(), Some(&pr.labels)).await?;
        let (plan, warnings) = (planned.imports, planned.warnings);
        let info = ImportInfo { warnings, ..ImportInfo::of(env) };
        let info = if info.warnings.is_empty() { None } else { Some(serde_json::to_string(&info).map_err(|e| failed(e.to_string()))?) };
        self.store.set_env_import_info(&env.id, info.as_deref()).await?;
        let children = self.store.child_envs(&env.id).await?;
        let wanted: Vec<&str> = plan.iter().map(|p| p.app.name.as_str()).collect();
        let gone: Vec<&Environment> = children.iter().filter(|c| !wanted.contains(&c.app.as_str())).collect();
        let new: Vec<Planned> = plan.into_iter().filter(|p| !children.iter().any(|c| c.app == p.app.name)).collect();
        if gone.is_empty() && new.is_empty() {
            return Ok(format!("{}: imports unchanged", env.id));
        }
        let mut done = Vec::new();
        for c in gone {
            self.store.set_env_status(&c.id, EnvStatus::TearingDown, Some("its pull_request_labels no longer match")).await?;
            let d = crate::environments::new_deployment(&c.id, Workflow::Teardown, None);
            self.store.create_deployment(&d).await?;
            // Gone before the importer's `setup` runs again.
            self.ports.run(d.id).await.map_err(|e| failed(format!("import `{}` could not be torn down: {e}", c.app)))?;
            done.push(format!("import `{}` removed", c.app));
        }
        for p in &new {
            done.push(format!("import `{}` added", p.app.name));
        }
        self.create_imported(&env.id, new, offshoot_store::now_ms()).await?;
        let commit = env.commit_sha.clone().unwrap_or_else(|| pr.head_commit.clone());
        self.run_workflow(env, Workflow::Setup, Some(commit)).await?;
        Ok(format!("{}: {}; setup", env.id, done.join(", ")))
    }
}

/// Release's configuration at a commit (GitOps), read off the async threads.
async fn gitops_config(mirror: &Mirror, commit: &str) -> Result<Option<crate::config::Config>, ControlError> {
    let (m, c) = (mirror.clone(), commit.to_owned());
    tokio::task::spawn_blocking(move || crate::config::release_config(&m, &c)).await?
}

/// Whether `ref_name` is what the application's template tracks (`tracking_tag`, else
/// `tracking_branch`, else the repository's default branch): its pushes make new versions.
fn tracks(app: &offshoot_store::App, template: &str, ref_name: &str) -> bool {
    let t = document::check("application_template.yaml", template, Some(Kind::Template)).template;
    let tag = t.as_ref().and_then(|t| t.tracking_tag.as_ref()).map(|x| x.value.clone());
    let branch = t.as_ref().and_then(|t| t.tracking_branch.as_ref()).map(|x| x.value.clone());
    match (tag, branch) {
        (Some(tag), _) => ref_name == format!("refs/tags/{tag}"),
        (None, Some(b)) => ref_name == format!("refs/heads/{b}"),
        (None, None) => ref_name == format!("refs/heads/{}", app.default_branch),
    }
}

/// A top-level setting as an environment sees it: its environment template's value, else the
/// template's; `None` when the template does not parse.
fn setting<T>(
    template: &str,
    environment_template: Option<&str>,
    field: impl Fn(&model::EnvironmentTemplate) -> Option<T>,
    top: impl Fn(model::Template) -> Option<T>,
) -> Option<Option<T>> {
    let t = document::check("application_template.yaml", template, Some(Kind::Template)).template?;
    let over = environment_template.and_then(|n| t.environment_templates.iter().find(|e| e.name.as_str() == n)).and_then(field);
    Some(over.or_else(|| top(t)))
}

/// `auto_deploy` of an environment's template; on unless set to false, as in templates Release
/// generates.
pub fn auto_deploy(template: &str, environment_template: Option<&str>) -> bool {
    setting(template, environment_template, |e| e.auto_deploy.clone(), |t| t.auto_deploy).is_some_and(|a| a.is_none_or(|a| a.value))
}

/// The `tracking_tag` of an environment's template, if it tracks a tag.
fn tracking_tag(env: &Environment) -> Option<String> {
    setting(&env.template, env.environment_template.as_deref(), |e| e.tracking_tag.clone(), |t| t.tracking_tag).flatten().map(|x| x.value)
}

pub(crate) fn short(c: &str) -> &str {
    c.get(..7).unwrap_or(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "app: shop\nauto_deploy: false\ntracking_tag: v1\nenvironment_templates:\n- name: ephemeral\n  auto_deploy: true\n- name: permanent\nservices:\n- name: web\n  image: busybox\n";

    #[test]
    fn an_environment_template_overrides_the_top_level_setting() {
        assert!(auto_deploy(T, Some("ephemeral")));
        assert!(!auto_deploy(T, Some("permanent")));
        assert!(!auto_deploy(T, None));
        assert!(auto_deploy("app: shop\nservices:\n- name: web\n  image: busybox\n", None), "on when absent");
        assert!(!auto_deploy("[unclosed", None), "off when the template does not parse");
        let env = |template: &str| Environment {
            id: "e".into(),
            app: "shop".into(),
            branch: "main".into(),
            commit_sha: None,
            environment_template: Some("ephemeral".into()),
            status: EnvStatus::Ready,
            reason: None,
            template: template.into(),
            env_vars: String::new(),
            expires_at: None,
            created_at: 0,
            updated_at: 0,
            parent_id: None,
            import_info: None,
            pull_request: None,
            sleeping_since: None,
            last_request_at: None,
            idle_sleep_seconds: None,
            parameters: None,
        };
        assert_eq!(tracking_tag(&env(T)).as_deref(), Some("v1"));
        assert_eq!(tracking_tag(&env(&T.replace("tracking_tag: v1\n", ""))), None);
    }
}
