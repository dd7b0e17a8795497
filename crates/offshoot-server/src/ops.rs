//! The operations on applications and environments that more than one adapter starts (the
//! API, the dashboard, webhooks and polling): reading a repository's configuration, creating an
//! environment and the environments of its imports, finding what a request names.

use crate::controller;
use crate::crypto::random_bytes;
use crate::error::ApiError;
use crate::imports::unsupported;
use crate::state::Shared;
use axum::http::StatusCode;
use offshoot_api_types::EnvStatus;
use offshoot_control::Workflow;
use offshoot_git::CommitFiles;
use offshoot_store::Environment;
use offshoot_store::now_ms;
use offshoot_template::document::{self, Kind};
use offshoot_template::repo::{self, RepoFiles as _, Source};

/// New environment ids: 7 lower-case letters and digits.
pub(crate) fn new_env_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    random_bytes::<7>().iter().map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect()
}

/// Release's configuration files at a commit, checked; `None` when the repository has no
/// `.release.yaml` or `.release/` files (GitOps does not apply to it).
pub(crate) fn release_config(mirror: &offshoot_git::Mirror, commit: &str) -> Result<Option<(String, String)>, ApiError> {
    let files = CommitFiles { mirror, commit: commit.to_owned() };
    let found = repo::discover(&files, None);
    let errors: Vec<_> = found.diagnostics.iter().filter(|d| d.is_error()).cloned().collect();
    if !errors.is_empty() {
        return Err(ApiError::invalid("the repository's .release.yaml is invalid", &errors));
    }
    match found.source {
        Some(Source::Release { template: Some(t), env_vars }) => {
            let template = files.read(&t.0).unwrap_or_default();
            let vname = env_vars.as_ref().map_or_else(|| "environment_variables.yaml".to_owned(), |e| e.0.clone());
            let env_vars = env_vars.and_then(|e| files.read(&e.0)).unwrap_or_else(|| "defaults: []\n".to_owned());
            check_named((&t.0, &template), (&vname, &env_vars))?;
            Ok(Some((template, env_vars)))
        }
        Some(Source::Release { template: None, .. }) => {
            Err(ApiError::bad_request("the repository's .release.yaml names no application template"))
        }
        _ => Ok(None),
    }
}

/// The configuration of a commit, checked: Release's files, or a template generated from compose.
pub(crate) fn read_config(mirror: &offshoot_git::Mirror, commit: &str, app: &str) -> Result<(String, String), ApiError> {
    if let Some(config) = release_config(mirror, commit)? {
        return Ok(config);
    }
    let files = CommitFiles { mirror, commit: commit.to_owned() };
    match repo::discover(&files, None).source {
        Some(Source::Compose { path }) => {
            let src = files.read(&path).unwrap_or_default();
            let read = |p: &str| files.read(p);
            let opts = offshoot_template::compose::Options { app: Some(app.to_owned()), read_file: Some(&read), ..Default::default() };
            let (generated, diags) = offshoot_template::compose::generate(&path, &src, &opts);
            match generated.filter(|_| !diags.iter().any(|d| d.is_error())) {
                Some(g) => {
                    let (template, env_vars) = (format!("# generated from {path}\n{}", g.template_yaml()), g.env_vars_yaml());
                    check_files(&template, &env_vars)?;
                    Ok((template, env_vars))
                }
                None => Err(ApiError::invalid(format!("cannot generate a template from `{path}`"), &diags)),
            }
        }
        _ => Err(ApiError::bad_request("the repository has no .release.yaml, .release/ files or docker-compose file")),
    }
}

pub(crate) fn check_files(template: &str, env_vars: &str) -> Result<(), ApiError> {
    check_named(("application_template.yaml", template), ("environment_variables.yaml", env_vars))
}

/// Checks a template and variables file, naming them as given in diagnostics.
pub(crate) fn check_named((tname, template): (&str, &str), (vname, env_vars): (&str, &str)) -> Result<(), ApiError> {
    let t = document::check(tname, template, Some(Kind::Template));
    let v = document::check(vname, env_vars, Some(Kind::EnvVars));
    let errors: Vec<_> = t.diagnostics.iter().chain(&v.diagnostics).filter(|d| d.is_error()).cloned().collect();
    if errors.is_empty() { Ok(()) } else { Err(ApiError::invalid("the configuration is invalid", &errors)) }
}

pub(crate) async fn find_app(ctx: &Shared, name: &str) -> Result<offshoot_store::App, ApiError> {
    ctx.store.app(name).await?.ok_or_else(|| ApiError::not_found("application", name).hint("`offshoot app list` shows the applications"))
}

pub(crate) async fn find_env(ctx: &Shared, id: &str) -> Result<Environment, ApiError> {
    ctx.store.env(id).await?.ok_or_else(|| ApiError::not_found("environment", id).hint("`offshoot env list` shows the environments"))
}

/// What a new environment is made from.
pub(crate) struct NewEnv {
    pub(crate) app: offshoot_store::App,
    pub(crate) branch: String,
    /// The commit its `setup` deploys (default: the branch's head when it runs).
    pub(crate) commit: Option<String>,
    pub(crate) environment_template: Option<String>,
    pub(crate) ttl_seconds: Option<u64>,
    /// The pull request it is made for: its labels choose the imports (`pull_request_labels`).
    pub(crate) pull_request: Option<offshoot_git::hooks::PullRequest>,
    /// Template and variables read from the branch (GitOps), instead of the app's latest version.
    pub(crate) config: Option<(String, String)>,
}

/// Checks and records a new environment with its imports' environments, and starts its `setup`.
/// `mirror`: the application's repository, just fetched.
pub(crate) async fn create_environment(ctx: &Shared, req: NewEnv, mirror: offshoot_git::Mirror) -> Result<Environment, ApiError> {
    let app = req.app;
    let (template, env_vars) = match req.config {
        Some(c) => c,
        None => {
            let v = ctx.store.latest_version(&app.name).await?.ok_or_else(|| ApiError::not_found("template of", &app.name))?;
            (v.template, v.env_vars)
        }
    };
    let doc = document::check("application_template.yaml", &template, Some(Kind::Template));
    let errors: Vec<_> = doc.diagnostics.iter().filter(|d| d.is_error()).cloned().collect();
    if !errors.is_empty() {
        return Err(ApiError::invalid("the application's template is invalid", &errors));
    }
    if let Some(why) = doc.template.as_ref().and_then(unsupported) {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "unsupported", why));
    }
    if let (Some(name), Some(t)) = (&req.environment_template, &doc.template)
        && !t.environment_templates.iter().any(|e| e.name.as_str() == name)
    {
        let names: Vec<&str> = t.environment_templates.iter().map(|e| e.name.as_str()).collect();
        return Err(
            ApiError::bad_request(format!("environment template `{name}` is not defined")).hint(format!("defined: {}", names.join(", ")))
        );
    }
    // The Instant Datasets its environment template lists must exist.
    let environment_template = doc.template.as_ref().and_then(|t| t.environment_template_name(req.environment_template.as_deref()));
    for name in doc.template.as_ref().map(|t| t.datasets_of(environment_template.as_deref())).unwrap_or_default() {
        if ctx.store.dataset(&name).await?.is_none_or(|x| x.state == "deleting") {
            let chosen = environment_template.as_deref().unwrap_or_default();
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown-dataset",
                format!("environment template `{chosen}` lists dataset `{name}`, which does not exist"),
            )
            .hint(format!("create it: `offshoot dataset create {name} --source postgres://...`")));
        }
    }
    let (m, b) = (mirror, req.branch.clone());
    let (exists, branches) =
        tokio::task::spawn_blocking(move || (m.resolve(&b).ok().flatten().is_some(), m.branches().unwrap_or_default()))
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
    if !exists {
        return Err(ApiError::not_found("branch", &req.branch).hint(format!("branches of `{}`: {}", app.name, branches.join(", "))));
    }
    // Imports: every check before anything is recorded or started.
    let labels = req.pull_request.as_ref().map(|p| p.labels.as_slice());
    let (imports, warnings) = match &doc.template {
        Some(t) if !t.app_imports.is_empty() => {
            crate::imports::plan(ctx, &app.name, t, &req.branch, req.environment_template.as_deref(), labels).await?
        }
        _ => (Vec::new(), Vec::new()),
    };
    let id = new_env_id();
    let now = now_ms();
    for (i, w) in warnings.iter().enumerate() {
        tracing::warn!(env = %id, warning = %w, n = i, "app imports");
    }
    let env = Environment {
        id: id.clone(),
        app: app.name.clone(),
        branch: req.branch.clone(),
        commit_sha: None,
        environment_template: environment_template.or_else(|| req.environment_template.clone()),
        status: EnvStatus::Creating,
        reason: None,
        template,
        env_vars,
        expires_at: req.ttl_seconds.map(|s| now + (s as i64) * 1000),
        created_at: now,
        updated_at: now,
        parent_id: None,
        import_info: (!warnings.is_empty())
            .then(|| serde_json::to_string(&crate::imports::ImportInfo { warnings: warnings.clone(), ..Default::default() }).ok())
            .flatten(),
        pull_request: req.pull_request.as_ref().and_then(|p| serde_json::to_string(p).ok()),
    };
    ctx.store.create_env(&env).await?;
    create_imported(ctx, &id, imports, now).await?;
    let dep = controller::new_deployment(&id, Workflow::Setup, req.commit);
    ctx.store.create_deployment(&dep).await?;
    controller::spawn(ctx, dep.id);
    tracing::info!(env = %id, app = %app.name, branch = %req.branch, "environment created");
    Ok(env)
}

/// Records the imported apps' environments of `parent`, in import order (the importer's `setup`
/// deploys them first).
pub(crate) async fn create_imported(ctx: &Shared, parent: &str, imports: Vec<crate::imports::Planned>, now: i64) -> Result<(), ApiError> {
    for (i, p) in imports.into_iter().enumerate() {
        let child = Environment {
            id: new_env_id(),
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
            parent_id: Some(parent.to_owned()),
            import_info: serde_json::to_string(&p.info).ok(),
            pull_request: None,
        };
        ctx.store.create_env(&child).await?;
        tracing::info!(env = %child.id, app = %child.app, branch = %child.branch, %parent, reason = %p.info.reason, "imported environment created");
    }
    Ok(())
}
