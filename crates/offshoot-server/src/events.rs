//! What a repository's events do: a push patches the environments tracking the branch (or
//! re-runs `setup` with the pushed configuration, under GitOps); a pull request gets an
//! environment of its own, patched on new commits and torn down when it closes. Webhooks and
//! polling both record an event as a delivery first and then come here, so a delivery is
//! handled once, in order per application, and after a restart if the server stopped before.
//!
//! Nothing is ever torn down because of what a git host did or failed to do: a deleted branch,
//! a failed fetch or a missing ref leaves every environment as it is; only a closed pull request
//! tears its own environment down.

use crate::controller;
use crate::ops::NewEnv;
use crate::state::Shared;
use offshoot_api_types::{DeploymentStatus, EnvStatus};
use offshoot_control::Workflow;
use offshoot_git::hooks::{GitEvent, PrAction, PullRequest};
use offshoot_store::{AppGit, Delivery, Environment};
use offshoot_template::document::{self, Kind};
use offshoot_template::model;
use std::time::Duration;

/// Handled deliveries are kept this long (a repeated id within it is ignored).
const KEEP_DELIVERIES: Duration = Duration::from_secs(7 * 24 * 3600);

/// Attempts to fetch before a delivery fails (with 0.2 s, then 1 s between them).
const FETCH_ATTEMPTS: u32 = 3;

/// Records a new event; `false` when a delivery of that id was recorded before.
pub(crate) async fn record(ctx: &Shared, id: &str, app: &str, event: &GitEvent) -> Result<bool, offshoot_store::StoreError> {
    let d = Delivery {
        id: id.to_owned(),
        app: app.to_owned(),
        event: serde_json::to_string(event).unwrap_or_default(),
        status: "pending".into(),
        result: None,
        received_at: offshoot_store::now_ms(),
        finished_at: None,
    };
    ctx.store.add_delivery(&d).await
}

/// Handles a recorded delivery in the background.
pub(crate) fn spawn(ctx: &Shared, id: String) {
    let shared = ctx.clone();
    ctx.background.spawn("delivery", async move { handle(&shared, &id).await });
}

/// After a restart: handles what was received but not handled.
pub(crate) async fn recover(ctx: &Shared) {
    match ctx.store.pending_deliveries().await {
        Ok(list) => {
            for d in list {
                tracing::info!(delivery = %d.id, app = %d.app, "handling a delivery received before the restart");
                handle(ctx, &d.id).await;
            }
        }
        Err(e) => tracing::error!(error = %e, "cannot list pending deliveries"),
    }
    let before = offshoot_store::now_ms() - KEEP_DELIVERIES.as_millis() as i64;
    if let Err(e) = ctx.store.prune_deliveries(before).await {
        tracing::warn!(error = %e, "cannot prune old deliveries");
    }
}

/// Handles one delivery, once: deliveries of one application are handled one at a time.
pub(crate) async fn handle(ctx: &Shared, id: &str) {
    let Ok(Some(d)) = ctx.store.delivery(id).await else { return };
    let lock = ctx.lock_for(&format!("events/{}", d.app));
    let _guard = lock.lock().await;
    let Ok(Some(d)) = ctx.store.delivery(id).await else { return };
    if d.status != "pending" {
        return;
    }
    let outcome = match serde_json::from_str::<GitEvent>(&d.event) {
        Ok(GitEvent::Push { ref_name, commit }) => on_push(ctx, &d.app, &ref_name, commit.as_deref()).await,
        Ok(GitEvent::PullRequest(pr)) => on_pull_request(ctx, &d.app, pr).await,
        Err(e) => Err(format!("unreadable event: {e}")),
    };
    let (st, text) = match outcome {
        Ok(text) => ("done", text),
        Err(text) => ("failed", text),
    };
    tracing::info!(delivery = %d.id, app = %d.app, status = st, result = %text, "delivery handled");
    if let Err(e) = ctx.store.finish_delivery(&d.id, st, &text).await {
        tracing::error!(delivery = %d.id, error = %e, "cannot record a delivery's result");
    }
}

/// An application's git settings, created with a new webhook secret the first time.
pub(crate) async fn app_git(ctx: &Shared, app: &str) -> Result<AppGit, crate::error::ApiError> {
    if let Some(g) = ctx.store.app_git(app).await? {
        return Ok(g);
    }
    let secret = crate::crypto::hex(&crate::crypto::random_bytes::<32>());
    let g = AppGit {
        app: app.to_owned(),
        webhook_secret: ctx.key.encrypt(&secret, &secret_context(app))?,
        pull_requests: 0,
        pull_request_label: None,
        gitops_error: None,
        fetch_error: None,
        static_builder: None,
    };
    Ok(ctx.store.ensure_app_git(&g).await?)
}

/// What the webhook secret's encryption is bound to.
pub(crate) fn secret_context(app: &str) -> String {
    format!("webhook/{app}")
}

/// Fetches the application's repository, up to `attempts` times (0.2 s, then 1 s apart);
/// records the outcome on the app (`fetch_error`).
async fn fetch(ctx: &Shared, app: &offshoot_store::App, attempts: u32) -> Result<offshoot_git::Mirror, String> {
    let mut last = String::new();
    for attempt in 0..attempts {
        if attempt > 0 {
            tokio::time::sleep(if attempt == 1 { Duration::from_millis(200) } else { Duration::from_secs(1) }).await;
        }
        match ctx.sync_mirror(&app.repo).await {
            Ok(m) => {
                crate::state::logged("a fetch error", ctx.store.set_fetch_error(&app.name, None).await);
                return Ok(m);
            }
            Err(e) => last = e,
        }
    }
    let message = format!("cannot fetch `{}`: {last}", app.repo);
    // Applications made before git settings existed get theirs here, to hold the error.
    if let Err(e) = app_git(ctx, &app.name).await {
        tracing::error!(app = %app.name, error = %e.message, "cannot record the git settings that hold the fetch error");
    }
    crate::state::logged("a fetch error", ctx.store.set_fetch_error(&app.name, Some(&message)).await);
    Err(message)
}

/// Release's configuration at a commit (GitOps), read off the async threads; an invalid one is
/// an error listing its diagnostics as `file:line:column: message`.
async fn gitops_config(mirror: &offshoot_git::Mirror, commit: &str) -> Result<Option<(String, String)>, String> {
    let (m, c) = (mirror.clone(), commit.to_owned());
    let read = tokio::task::spawn_blocking(move || crate::ops::release_config(&m, &c)).await.map_err(|e| e.to_string())?;
    read.map_err(|e| {
        let mut text = e.message;
        for d in &e.diagnostics {
            let (file, message) = (d["file"].as_str().unwrap_or(""), d["message"].as_str().unwrap_or(""));
            text.push_str(&format!("\n{file}:{}:{}: {message}", d["line"], d["column"]));
        }
        text
    })
}

/// What a push to `ref_name` does: GitOps, then `patch` (or `setup`) of the environments that
/// track it and deploy automatically.
async fn on_push(ctx: &Shared, app_name: &str, ref_name: &str, commit: Option<&str>) -> Result<String, String> {
    let store_err = |e: offshoot_store::StoreError| e.to_string();
    let Some(commit) = commit else {
        return Ok(format!("`{ref_name}` was deleted; its environments are kept (delete them, or close their pull requests)"));
    };
    let app = ctx.store.app(app_name).await.map_err(store_err)?.ok_or("the application was deleted")?;
    let mirror = fetch(ctx, &app, FETCH_ATTEMPTS).await?;
    let (m, c) = (mirror.clone(), commit.to_owned());
    let present = tokio::task::spawn_blocking(move || m.has_commit(&c)).await.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
    if !present {
        return Err(format!("commit {} is not in `{}` after fetching", short(commit), app.repo));
    }
    // Seen only once fetched: after a failed fetch, the poller still reports this push.
    ctx.store.set_git_head(app_name, ref_name, commit).await.map_err(store_err)?;
    // GitOps: the configuration at the pushed commit, when the repository has Release's files.
    let gitops = match gitops_config(&mirror, commit).await {
        Ok(config) => {
            crate::state::logged("a configuration error", ctx.store.set_gitops_error(&app.name, None).await);
            config
        }
        Err(e) => {
            let text = format!("push of {} to `{ref_name}` refused: {e}", short(commit));
            crate::state::logged("a configuration error", ctx.store.set_gitops_error(&app.name, Some(&text)).await);
            return Err(format!("{text}\nenvironments left as they are"));
        }
    };
    let mut done = Vec::new();
    if let Some((template, env_vars)) = &gitops
        && tracks(&app, template, ref_name)
    {
        let latest = ctx.store.latest_version(&app.name).await.map_err(store_err)?;
        if latest.is_none_or(|v| &v.template != template || &v.env_vars != env_vars) {
            let v = ctx.store.add_version(&app.name, template, env_vars).await.map_err(store_err)?;
            done.push(format!("version {v} of the template from {}", short(commit)));
        }
    }
    for env in targets(ctx, &app.name, ref_name).await? {
        let (template, env_vars) = gitops.clone().unwrap_or_else(|| (env.template.clone(), env.env_vars.clone()));
        if !auto_deploy(&template, env.environment_template.as_deref()) {
            done.push(format!("{}: `auto_deploy` is off", env.id));
            continue;
        }
        let changed = template != env.template || env_vars != env.env_vars;
        if changed {
            ctx.store.set_env_config(&env.id, &template, &env_vars).await.map_err(store_err)?;
            start(ctx, &env, Workflow::Setup, commit).await?;
            done.push(format!("{}: setup with the pushed configuration", env.id));
        } else if already_deploying(ctx, &env, commit).await? {
            done.push(format!("{}: already at {}", env.id, short(commit)));
        } else {
            start(ctx, &env, Workflow::Patch, commit).await?;
            done.push(format!("{}: patch to {}", env.id, short(commit)));
        }
    }
    if done.is_empty() {
        done.push(format!("no environment tracks `{ref_name}`"));
    }
    Ok(done.join("; "))
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
pub(crate) fn auto_deploy(template: &str, environment_template: Option<&str>) -> bool {
    setting(template, environment_template, |e| e.auto_deploy.clone(), |t| t.auto_deploy).is_some_and(|a| a.is_none_or(|a| a.value))
}

/// The `tracking_tag` of an environment's template, if it tracks a tag.
fn tracking_tag(env: &Environment) -> Option<String> {
    setting(&env.template, env.environment_template.as_deref(), |e| e.tracking_tag.clone(), |t| t.tracking_tag).flatten().map(|x| x.value)
}

/// The live environments of an application that follow `ref_name`: those of the branch (but
/// those tracking a tag), or those tracking the tag.
async fn targets(ctx: &Shared, app: &str, ref_name: &str) -> Result<Vec<Environment>, String> {
    let all = ctx.store.envs(Some(app), false).await.map_err(|e| e.to_string())?;
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
async fn already_deploying(ctx: &Shared, env: &Environment, commit: &str) -> Result<bool, String> {
    let deps = ctx.store.deployments(&env.id).await.map_err(|e| e.to_string())?;
    Ok(deps
        .iter()
        .filter(|d| d.workflow != Workflow::Teardown.as_str())
        .max_by_key(|d| d.created_at)
        .is_some_and(|d| d.commit_sha.as_deref() == Some(commit) && d.status != DeploymentStatus::Failed))
}

/// Starts a workflow on an environment at a commit.
pub(crate) async fn start(ctx: &Shared, env: &Environment, workflow: Workflow, commit: &str) -> Result<String, String> {
    ctx.store.set_env_status(&env.id, EnvStatus::Deploying, None).await.map_err(|e| e.to_string())?;
    let dep = controller::new_deployment(&env.id, workflow, Some(commit.to_owned()));
    ctx.store.create_deployment(&dep).await.map_err(|e| e.to_string())?;
    let id = dep.id.clone();
    controller::spawn(ctx, dep.id);
    Ok(id)
}

fn short(c: &str) -> &str {
    c.get(..7).unwrap_or(c)
}

/// The environment made for a pull request, if there is one.
async fn pr_env(ctx: &Shared, app: &str, pr: &PullRequest) -> Result<Option<Environment>, String> {
    let key = pr.key();
    let all = ctx.store.envs(Some(app), false).await.map_err(|e| e.to_string())?;
    Ok(all.into_iter().find(|e| {
        e.parent_id.is_none()
            && e.status != EnvStatus::TearingDown
            && e.pull_request.as_deref().and_then(|p| serde_json::from_str::<PullRequest>(p).ok()).is_some_and(|p| p.key() == key)
    }))
}

async fn on_pull_request(ctx: &Shared, app_name: &str, pr: PullRequest) -> Result<String, String> {
    let store_err = |e: offshoot_store::StoreError| e.to_string();
    let app = ctx.store.app(app_name).await.map_err(store_err)?.ok_or("the application was deleted")?;
    let git = app_git(ctx, app_name).await.map_err(|e| e.message)?;
    let existing = pr_env(ctx, app_name, &pr).await?;
    match (pr.action, existing) {
        (PrAction::Closed, Some(env)) => {
            ctx.store.set_env_status(&env.id, EnvStatus::TearingDown, Some("the pull request was closed")).await.map_err(store_err)?;
            let dep = controller::new_deployment(&env.id, Workflow::Teardown, None);
            ctx.store.create_deployment(&dep).await.map_err(store_err)?;
            controller::spawn(ctx, dep.id);
            Ok(format!("{}: teardown (pull request #{} closed)", env.id, pr.number))
        }
        (PrAction::Closed, None) => Ok(format!("no environment for pull request #{}", pr.number)),
        (PrAction::Synchronize | PrAction::Reopened | PrAction::Opened, Some(env)) => {
            set_pull_request(ctx, &env, &pr).await?;
            if already_deploying(ctx, &env, &pr.head_commit).await? {
                return Ok(format!("{}: already at {}", env.id, short(&pr.head_commit)));
            }
            fetch(ctx, &app, FETCH_ATTEMPTS).await?;
            start(ctx, &env, Workflow::Patch, &pr.head_commit).await?;
            Ok(format!("{}: patch to {}", env.id, short(&pr.head_commit)))
        }
        (PrAction::Labeled, Some(env)) => {
            set_pull_request(ctx, &env, &pr).await?;
            reimport(ctx, &env, &pr).await
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
            let mirror = fetch(ctx, &app, FETCH_ATTEMPTS).await?;
            // GitOps: the pull request's environment runs the configuration of its head commit.
            let config =
                gitops_config(&mirror, &pr.head_commit).await.map_err(|e| format!("the pull request's configuration is invalid: {e}"))?;
            let req = NewEnv {
                app,
                branch: pr.head_branch.clone(),
                commit: Some(pr.head_commit.clone()),
                environment_template: None,
                ttl_seconds: None,
                pull_request: Some(pr.clone()),
                config,
            };
            let env = crate::ops::create_environment(ctx, req, mirror).await.map_err(|e| e.message)?;
            crate::feedback::notify(ctx, &env);
            Ok(format!("{}: created for pull request #{} ({})", env.id, pr.number, pr.head_branch))
        }
    }
}

/// Keeps the latest state of the pull request (labels, head) on its environment.
async fn set_pull_request(ctx: &Shared, env: &Environment, pr: &PullRequest) -> Result<(), String> {
    let text = serde_json::to_string(pr).map_err(|e| e.to_string())?;
    ctx.store.set_env_pull_request(&env.id, &text).await.map_err(|e| e.to_string())
}

/// Labels changed: brings along the imports whose `pull_request_labels` now match, tears down
/// those that no longer do, and re-runs `setup` when anything changed.
async fn reimport(ctx: &Shared, env: &Environment, pr: &PullRequest) -> Result<String, String> {
    let doc = document::check("application_template.yaml", &env.template, Some(Kind::Template));
    let Some(t) = doc.template else { return Err("the environment's template does not parse".into()) };
    if t.app_imports.iter().all(|i| i.pull_request_labels.is_empty()) {
        return Ok(format!("{}: labels do not choose any import", env.id));
    }
    let (plan, warnings) = crate::imports::plan(ctx, &env.app, &t, &env.branch, env.environment_template.as_deref(), Some(&pr.labels))
        .await
        .map_err(|e| e.message)?;
    let info = crate::imports::ImportInfo { warnings, ..crate::imports::ImportInfo::of(env) };
    let info = (!info.warnings.is_empty()).then(|| serde_json::to_string(&info).ok()).flatten();
    ctx.store.set_env_import_info(&env.id, info.as_deref()).await.map_err(|e| e.to_string())?;
    let children = ctx.store.child_envs(&env.id).await.map_err(|e| e.to_string())?;
    let wanted: Vec<&str> = plan.iter().map(|p| p.app.name.as_str()).collect();
    let gone: Vec<&Environment> = children.iter().filter(|c| !wanted.contains(&c.app.as_str())).collect();
    let new: Vec<crate::imports::Planned> = plan.into_iter().filter(|p| !children.iter().any(|c| c.app == p.app.name)).collect();
    if gone.is_empty() && new.is_empty() {
        return Ok(format!("{}: imports unchanged", env.id));
    }
    let mut done = Vec::new();
    for c in gone {
        ctx.store
            .set_env_status(&c.id, EnvStatus::TearingDown, Some("its pull_request_labels no longer match"))
            .await
            .map_err(|e| e.to_string())?;
        let d = controller::new_deployment(&c.id, Workflow::Teardown, None);
        ctx.store.create_deployment(&d).await.map_err(|e| e.to_string())?;
        controller::run_now(ctx, &d.id).await.map_err(|e| e.to_string())?;
        done.push(format!("import `{}` removed", c.app));
    }
    for p in &new {
        done.push(format!("import `{}` added", p.app.name));
    }
    crate::ops::create_imported(ctx, &env.id, new, offshoot_store::now_ms()).await.map_err(|e| e.message)?;
    let commit = env.commit_sha.clone().unwrap_or_else(|| pr.head_commit.clone());
    start(ctx, env, Workflow::Setup, &commit).await?;
    Ok(format!("{}: {}; setup", env.id, done.join(", ")))
}

/// Polls every application's repository for pushes, as webhooks would report them. A fetch
/// error is recorded on the application and retried at the next round; a ref that disappeared
/// is not an event.
pub(crate) async fn poll_loop(ctx: Shared, every: Duration) {
    loop {
        if let Err(e) = poll(&ctx).await {
            tracing::warn!(error = %e, "polling failed; retrying later");
        }
        tokio::time::sleep(every).await;
    }
}

async fn poll(ctx: &Shared) -> Result<(), offshoot_store::StoreError> {
    for app in ctx.store.apps().await? {
        // One attempt: the next round is the retry.
        let mirror = match fetch(ctx, &app, 1).await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(app = %app.name, error = %e, "poll: fetch failed; environments left as they are");
                continue;
            }
        };
        let heads = match tokio::task::spawn_blocking(move || mirror.heads()).await {
            Ok(Ok(h)) => h,
            Ok(Err(e)) => {
                tracing::warn!(app = %app.name, error = %e, "poll: cannot list refs");
                continue;
            }
            Err(_) => continue,
        };
        let seen: std::collections::BTreeMap<String, String> = ctx.store.git_heads(&app.name).await?.into_iter().collect();
        let first = seen.is_empty();
        for (ref_name, commit) in heads {
            if seen.get(&ref_name) == Some(&commit) {
                continue;
            }
            if first {
                // The first look at an application created before polling existed only learns
                // where things are (applications record their refs when they are created).
                ctx.store.set_git_head(&app.name, &ref_name, &commit).await?;
                continue;
            }
            let id = format!("poll:{}:{ref_name}:{commit}", app.name);
            let event = GitEvent::Push { ref_name: ref_name.clone(), commit: Some(commit.clone()) };
            if record(ctx, &id, &app.name, &event).await? {
                handle(ctx, &id).await;
            }
        }
    }
    Ok(())
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
        };
        assert_eq!(tracking_tag(&env(T)).as_deref(), Some("v1"));
        assert_eq!(tracking_tag(&env(&T.replace("tracking_tag: v1\n", ""))), None);
    }
}
