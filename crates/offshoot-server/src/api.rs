//! The HTTP API (`/api/v1`, bearer token) and `/healthz`.

use crate::controller::{self, Shared};
use crate::crypto::{hash_token, random_bytes};
use crate::error::ApiError;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use offshoot_api_types as api;
use offshoot_api_types::status;
use offshoot_git::CommitFiles;
use offshoot_runtime::Runtime as _;
use offshoot_store::{Environment, now_ms};
use offshoot_template::document::{self, Kind};
use offshoot_template::repo::{self, RepoFiles as _, Source};
use serde::Deserialize;

/// Largest request body the API accepts.
const MAX_BODY: usize = 4 * 1024 * 1024;

pub(crate) fn router(ctx: Shared) -> Router {
    let api = Router::new()
        .route("/apps", post(create_app).get(list_apps))
        .route("/apps/{name}", get(show_app).delete(delete_app))
        .route("/apps/{name}/template", get(get_template).put(put_template))
        .route("/apps/{name}/secrets", post(set_secret))
        .route("/envs", post(create_env).get(list_envs))
        .route("/envs/{id}", get(show_env).delete(delete_env))
        .route("/envs/{id}/deploy", post(deploy_env))
        .route("/envs/{id}/logs", get(env_logs))
        .route("/envs/{id}/build-logs", get(build_logs))
        .route("/envs/{id}/manifests", get(env_manifests))
        .route("/envs/{id}/exec", post(env_exec));
    let api = crate::datasets::api(crate::webhooks::api(api)).route_layer(axum::middleware::from_fn_with_state(ctx.clone(), auth));
    // Prometheus scrapes with the same bearer token (`authorization` in its scrape config).
    let metrics = Router::new().route("/metrics", get(metrics)).route_layer(axum::middleware::from_fn_with_state(ctx.clone(), auth));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .merge(metrics)
        .nest("/api/v1", api)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(ctx.clone())
        .merge(crate::webhooks::hooks(ctx.clone()))
        .merge(crate::ui::router(ctx.clone()).layer(axum::extract::DefaultBodyLimit::max(MAX_BODY)).with_state(ctx))
}

async fn metrics(State(ctx): State<Shared>) -> Response {
    ([(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], ctx.router.metrics_text())
        .into_response()
}

async fn auth(State(ctx): State<Shared>, req: Request, next: Next) -> Response {
    let token = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let ok = match token {
        Some(t) if !t.is_empty() => ctx.store.token_exists(&hash_token(t)).await.unwrap_or(false),
        _ => false,
    };
    if ok {
        next.run(req).await
    } else {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "a valid `Authorization: Bearer <token>` header is required")
            .hint("the admin token is in the server's data directory, `admin-token`")
            .into_response()
    }
}

fn valid_name(name: &str) -> bool {
    (1..=40).contains(&name.len())
        && name.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && !name.starts_with('-')
}

/// A name from a repository path or URL: its last component, lower case.
fn name_from_repo(repo: &str) -> String {
    let last = repo.trim_end_matches('/').rsplit(['/', ':']).next().unwrap_or("app").trim_end_matches(".git");
    let n: String = last.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
    n.trim_matches('-').chars().take(40).collect()
}

/// New environment ids: 7 lower-case letters and digits.
fn new_env_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    random_bytes::<7>().iter().map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect()
}

pub(crate) async fn app_dto(ctx: &Shared, a: offshoot_store::App) -> Result<api::App, ApiError> {
    let v = ctx.store.latest_version(&a.name).await?;
    let source = if v.as_ref().is_some_and(|v| v.template.starts_with("# generated")) { "compose" } else { "release" };
    let git = ctx.store.app_git(&a.name).await?;
    Ok(api::App {
        name: a.name,
        repo: a.repo,
        default_branch: a.default_branch,
        version: v.map_or(0, |v| v.version),
        source: source.into(),
        created_at: a.created_at,
        pull_requests: git.as_ref().is_some_and(|g| g.pull_requests != 0),
        pull_request_label: git.as_ref().and_then(|g| g.pull_request_label.clone()),
        gitops_error: git.as_ref().and_then(|g| g.gitops_error.clone()),
        static_builder: git.as_ref().and_then(|g| g.static_builder.clone()),
        fetch_error: git.and_then(|g| g.fetch_error),
    })
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
fn read_config(mirror: &offshoot_git::Mirror, commit: &str, app: &str) -> Result<(String, String), ApiError> {
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

fn check_files(template: &str, env_vars: &str) -> Result<(), ApiError> {
    check_named(("application_template.yaml", template), ("environment_variables.yaml", env_vars))
}

/// Checks a template and variables file, naming them as given in diagnostics.
fn check_named((tname, template): (&str, &str), (vname, env_vars): (&str, &str)) -> Result<(), ApiError> {
    let t = document::check(tname, template, Some(Kind::Template));
    let v = document::check(vname, env_vars, Some(Kind::EnvVars));
    let errors: Vec<_> = t.diagnostics.iter().chain(&v.diagnostics).filter(|d| d.is_error()).cloned().collect();
    if errors.is_empty() { Ok(()) } else { Err(ApiError::invalid("the configuration is invalid", &errors)) }
}

pub(crate) async fn create_app(
    State(ctx): State<Shared>,
    Json(body): Json<api::AppCreate>,
) -> Result<(StatusCode, Json<api::App>), ApiError> {
    let repo = match std::path::Path::new(&body.repo).canonicalize() {
        Ok(p) if p.is_dir() => p.display().to_string(),
        _ if body.repo.contains("://") || body.repo.contains('@') => body.repo.clone(),
        _ => return Err(ApiError::bad_request(format!("`{}` is neither a directory nor a git URL", body.repo))),
    };
    let mirror = ctx.sync_mirror(&repo).await.map_err(|e| ApiError::bad_request(format!("cannot fetch `{repo}`: {e}")))?;
    let (m, branch, fallback) = (mirror.clone(), body.branch.clone(), body.name.clone().unwrap_or_else(|| name_from_repo(&repo)));
    let (default_branch, template, env_vars, heads) = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
        let default = m.default_branch().map_err(|e| ApiError::bad_request(e.to_string()))?.unwrap_or_else(|| "main".into());
        let branch = branch.unwrap_or_else(|| default.clone());
        let commit =
            m.resolve(&branch).map_err(|e| ApiError::bad_request(e.to_string()))?.ok_or_else(|| ApiError::not_found("branch", &branch))?;
        let (t, v) = read_config(&m, &commit, &fallback)?;
        Ok((default, t, v, m.heads().unwrap_or_default()))
    })
    .await
    .map_err(|e| anyhow::anyhow!(e))??;
    // The name: as given, else the template's `app` (as Release does), else the repository's.
    let from_template = document::check("t", &template, Some(Kind::Template)).template.and_then(|t| t.app).map(|a| a.value);
    let name = body.name.clone().or(from_template).unwrap_or_else(|| name_from_repo(&repo));
    if !valid_name(&name) {
        return Err(ApiError::bad_request(format!("`{name}` is not a valid application name"))
            .hint("use 1 to 40 lower-case letters, digits and `-`; choose one with `--name`"));
    }
    if ctx.store.app(&name).await?.is_some() {
        return Err(ApiError::new(StatusCode::CONFLICT, "conflict", format!("application `{name}` already exists"))
            .hint("choose another with `--name`"));
    }
    let app = offshoot_store::App { name: name.clone(), repo, default_branch, created_at: now_ms() };
    ctx.store.create_app(&app, &template, &env_vars).await?;
    crate::events::app_git(&ctx, &name).await?;
    // Where every ref is now: polling reports what moves from here.
    for (r, c) in heads {
        ctx.store.set_git_head(&name, &r, &c).await?;
    }
    tracing::info!(app = %name, "application created");
    Ok((StatusCode::CREATED, Json(app_dto(&ctx, app).await?)))
}

async fn list_apps(State(ctx): State<Shared>) -> Result<Json<Vec<api::App>>, ApiError> {
    let mut out = Vec::new();
    for a in ctx.store.apps().await? {
        out.push(app_dto(&ctx, a).await?);
    }
    Ok(Json(out))
}

pub(crate) async fn find_app(ctx: &Shared, name: &str) -> Result<offshoot_store::App, ApiError> {
    ctx.store.app(name).await?.ok_or_else(|| ApiError::not_found("application", name).hint("`offshoot app list` shows the applications"))
}

async fn show_app(State(ctx): State<Shared>, Path(name): Path<String>) -> Result<Json<api::App>, ApiError> {
    let a = find_app(&ctx, &name).await?;
    Ok(Json(app_dto(&ctx, a).await?))
}

pub(crate) async fn delete_app(State(ctx): State<Shared>, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    find_app(&ctx, &name).await?;
    let live = ctx.store.envs(Some(&name), false).await?;
    if !live.is_empty() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("application `{name}` still has {} environment(s)", live.len()),
        )
        .hint("delete them first with `offshoot env delete ID`"));
    }
    ctx.store.delete_app(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn get_template(State(ctx): State<Shared>, Path(name): Path<String>) -> Result<Json<api::Template>, ApiError> {
    find_app(&ctx, &name).await?;
    let v = ctx.store.latest_version(&name).await?.ok_or_else(|| ApiError::not_found("template of", &name))?;
    Ok(Json(api::Template { app: name, version: v.version, template: v.template, env_vars: v.env_vars }))
}

pub(crate) async fn put_template(
    State(ctx): State<Shared>,
    Path(name): Path<String>,
    Json(body): Json<api::TemplateUpdate>,
) -> Result<Json<api::Template>, ApiError> {
    find_app(&ctx, &name).await?;
    let cur = ctx.store.latest_version(&name).await?.ok_or_else(|| ApiError::not_found("template of", &name))?;
    let template = body.template.unwrap_or(cur.template);
    let env_vars = body.env_vars.unwrap_or(cur.env_vars);
    check_files(&template, &env_vars)?;
    let version = ctx.store.add_version(&name, &template, &env_vars).await?;
    Ok(Json(api::Template { app: name, version, template, env_vars }))
}

pub(crate) async fn set_secret(
    State(ctx): State<Shared>,
    Path(name): Path<String>,
    Json(body): Json<api::SecretSet>,
) -> Result<StatusCode, ApiError> {
    find_app(&ctx, &name).await?;
    if !body.key.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_') || body.key.is_empty() || body.key.len() > 200 {
        return Err(ApiError::bad_request(format!("`{}` is not a valid variable name", body.key)));
    }
    if body.value.len() > 64 * 1024 {
        return Err(ApiError::bad_request("a secret may be at most 64 KiB"));
    }
    let service = body.service.unwrap_or_default();
    let ciphertext = ctx.key.encrypt(&body.value, &format!("{name}/{service}/{}", body.key))?;
    ctx.store.set_secret(&offshoot_store::Secret { app: name, service, key: body.key, ciphertext }).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What an environment's view is made of, besides its own row.
struct EnvParts {
    services: Vec<offshoot_store::ServiceRow>,
    deployments: Vec<offshoot_store::Deployment>,
    children: Vec<Environment>,
    datasets: Vec<api::AttachedDataset>,
}

pub(crate) async fn env_dto(ctx: &Shared, e: Environment) -> Result<api::Env, ApiError> {
    let parts = EnvParts {
        services: ctx.store.services(&e.id).await?,
        deployments: ctx.store.deployments(&e.id).await?,
        children: ctx.store.child_envs(&e.id).await?,
        datasets: crate::datasets::attached(ctx, &e.id).await.map_err(|m| anyhow::anyhow!(m))?,
    };
    Ok(env_dto_of(ctx, e, parts))
}

/// Every environment's view (of one app, or all), from a few queries whatever their number.
async fn env_dtos(ctx: &Shared, app: Option<&str>) -> Result<Vec<api::Env>, ApiError> {
    use std::collections::{HashMap, HashSet};
    let envs = ctx.store.envs(app, false).await?;
    let mut services: HashMap<String, Vec<offshoot_store::ServiceRow>> = HashMap::new();
    for s in ctx.store.live_services().await? {
        services.entry(s.env_id.clone()).or_default().push(s);
    }
    let mut deployments: HashMap<String, Vec<offshoot_store::Deployment>> = HashMap::new();
    for d in ctx.store.live_deployments().await? {
        deployments.entry(d.env_id.clone()).or_default().push(d);
    }
    // Imports: every environment that is not deleted, oldest first, by parent.
    let mut all = if app.is_some() { ctx.store.envs(None, false).await? } else { envs.clone() };
    all.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    let mut children: HashMap<String, Vec<Environment>> = HashMap::new();
    for c in all {
        if let Some(p) = c.parent_id.clone() {
            children.entry(p).or_default().push(c);
        }
    }
    let leased: HashSet<String> = ctx.store.envs_with_leases().await?.into_iter().collect();
    let mut out = Vec::with_capacity(envs.len());
    for e in envs {
        let datasets =
            if leased.contains(&e.id) { crate::datasets::attached(ctx, &e.id).await.map_err(|m| anyhow::anyhow!(m))? } else { Vec::new() };
        let parts = EnvParts {
            services: services.remove(&e.id).unwrap_or_default(),
            deployments: deployments.remove(&e.id).unwrap_or_default(),
            children: children.remove(&e.id).unwrap_or_default(),
            datasets,
        };
        out.push(env_dto_of(ctx, e, parts));
    }
    Ok(out)
}

fn env_dto_of(ctx: &Shared, e: Environment, parts: EnvParts) -> api::Env {
    let mut services = Vec::new();
    let lbs = ctx.load_balancers();
    for s in parts.services {
        let hostnames = s.detail.hostnames.clone();
        let routing = s.detail.routing.clone().unwrap_or_default();
        let (scheme, port) = match ctx.tls_port {
            Some(p) => ("https", p),
            None => ("http", ctx.router_port),
        };
        let conflicts = ctx.route_conflicts(&e.id, &s.name);
        let mut urls: Vec<String> = Vec::new();
        for (host, path, _) in &routing.routes {
            if conflicts.iter().any(|c| &c.host == host && &c.path == path) {
                continue;
            }
            let url = format!("{scheme}://{host}:{port}{}", if path.starts_with('/') { path.as_str() } else { "/" });
            if !urls.contains(&url) {
                urls.push(url);
            }
        }
        // On Kubernetes the cluster's ingress serves them (recorded at deployment).
        urls.extend(s.detail.urls.iter().cloned());
        let load_balancers = crate::routes::lb_for_env(&lbs, &e.id, &s.name)
            .into_iter()
            .map(|(port, addr)| api::LoadBalancer { port, address: addr.to_string() })
            .collect();
        let notes: Vec<&str> = conflicts.iter().map(|c| c.message.as_str()).collect();
        let reason = match (s.reason, notes.is_empty()) {
            (r, true) => r,
            (Some(r), false) => Some(format!("{r}; {}", notes.join("; "))),
            (None, false) => Some(notes.join("; ")),
        };
        services.push(api::Service { name: s.name, status: s.status, reason, hostnames, urls, load_balancers });
    }
    let deployments = parts
        .deployments
        .into_iter()
        .map(|d| api::Deployment {
            id: d.id,
            workflow: d.workflow,
            commit: d.commit_sha,
            status: d.status,
            error: d.error,
            phases: serde_json::from_str(&d.phases).unwrap_or_default(),
            created_at: d.created_at,
            finished_at: d.finished_at,
        })
        .collect();
    let mut imports = Vec::new();
    for c in parts.children {
        let info = crate::imports::ImportInfo::of(&c);
        imports.push(api::Import {
            app: c.app,
            branch: c.branch,
            commit: c.commit_sha,
            env_id: c.id,
            status: c.status,
            reason: info.reason,
        });
    }
    let warnings = if e.parent_id.is_none() { crate::imports::ImportInfo::of(&e).warnings } else { Vec::new() };
    api::Env {
        id: e.id,
        app: e.app,
        branch: e.branch,
        commit: e.commit_sha,
        status: e.status,
        reason: e.reason,
        environment_template: e.environment_template,
        services,
        deployments,
        created_at: e.created_at,
        expires_at: e.expires_at,
        imports,
        parent: e.parent_id,
        warnings,
        pull_request: e.pull_request.as_deref().and_then(|p| serde_json::from_str::<offshoot_git::hooks::PullRequest>(p).ok()).map(|p| {
            api::PullRequestRef { provider: p.provider.as_str().to_owned(), repo: p.repo, number: p.number, url: p.url, labels: p.labels }
        }),
        datasets: parts.datasets,
    }
}

/// Features this runtime cannot run are refused at creation, before anything starts.
pub(crate) fn unsupported(t: &offshoot_template::model::Template) -> Option<String> {
    if !t.charts.is_empty() {
        return Some("this template uses Helm `charts`, which the Docker runtime cannot run".into());
    }
    if !t.infrastructure.is_empty() {
        return Some("this template uses Terraform `infrastructure`, which the Docker runtime cannot run".into());
    }
    None
}

pub(crate) async fn create_env(
    State(ctx): State<Shared>,
    Json(body): Json<api::EnvCreate>,
) -> Result<(StatusCode, Json<api::Env>), ApiError> {
    let app = find_app(&ctx, &body.app).await?;
    let mirror = ctx.sync_mirror(&app.repo).await.map_err(|e| ApiError::bad_request(format!("cannot fetch `{}`: {e}", app.repo)))?;
    let req = NewEnv {
        app,
        branch: body.branch,
        commit: None,
        environment_template: body.environment_template,
        ttl_seconds: body.ttl_seconds,
        pull_request: None,
        config: None,
    };
    let env = create_environment(&ctx, req, mirror).await?;
    Ok((StatusCode::ACCEPTED, Json(env_dto(&ctx, env).await?)))
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
        status: status::CREATING.into(),
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
    let dep = controller::new_deployment(&id, "setup", req.commit);
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
            status: status::CREATING.into(),
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

#[derive(Deserialize)]
struct EnvQuery {
    app: Option<String>,
}

async fn list_envs(State(ctx): State<Shared>, Query(q): Query<EnvQuery>) -> Result<Json<Vec<api::Env>>, ApiError> {
    Ok(Json(env_dtos(&ctx, q.app.as_deref()).await?))
}

pub(crate) async fn find_env(ctx: &Shared, id: &str) -> Result<Environment, ApiError> {
    ctx.store.env(id).await?.ok_or_else(|| ApiError::not_found("environment", id).hint("`offshoot env list` shows the environments"))
}

pub(crate) async fn show_env(State(ctx): State<Shared>, Path(id): Path<String>) -> Result<Json<api::Env>, ApiError> {
    let e = find_env(&ctx, &id).await?;
    Ok(Json(env_dto(&ctx, e).await?))
}

pub(crate) async fn delete_env(State(ctx): State<Shared>, Path(id): Path<String>) -> Result<(StatusCode, Json<api::Env>), ApiError> {
    let e = find_env(&ctx, &id).await?;
    if let Some(parent) = &e.parent_id
        && ctx.store.env(parent).await?.is_some_and(|p| p.status != status::DELETED)
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "imported",
            format!("environment `{id}` belongs to environment `{parent}`, which imports `{}`", e.app),
        )
        .hint(format!("delete `{parent}`: its imports go with it")));
    }
    if e.status != status::DELETED && e.status != status::TEARING_DOWN {
        ctx.store.set_env_status(&id, status::TEARING_DOWN, None).await?;
        let dep = controller::new_deployment(&id, "teardown", None);
        ctx.store.create_deployment(&dep).await?;
        controller::spawn(&ctx, dep.id);
    }
    let e = find_env(&ctx, &id).await?;
    Ok((StatusCode::ACCEPTED, Json(env_dto(&ctx, e).await?)))
}

pub(crate) async fn deploy_env(
    State(ctx): State<Shared>,
    Path(id): Path<String>,
    Json(body): Json<api::EnvDeploy>,
) -> Result<(StatusCode, Json<api::Env>), ApiError> {
    let e = find_env(&ctx, &id).await?;
    if e.status == status::DELETED || e.status == status::TEARING_DOWN {
        return Err(ApiError::new(StatusCode::CONFLICT, "conflict", format!("environment `{id}` is {}", e.status)));
    }
    if let Some(c) = &body.commit
        && (c.len() != 40 || !c.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(ApiError::bad_request(format!("`{c}` is not a full commit SHA")));
    }
    // `patch` redeploys what is built from the repository; an environment whose `setup` never
    // succeeded (a missing dataset clone, say) has nothing running yet, so it gets `setup`.
    let set_up = ctx.store.deployments(&id).await?.iter().any(|d| d.workflow == "setup" && d.status == "succeeded");
    let workflow = if set_up { "patch" } else { "setup" };
    ctx.store.set_env_status(&id, status::DEPLOYING, None).await?;
    let dep = controller::new_deployment(&id, workflow, body.commit);
    ctx.store.create_deployment(&dep).await?;
    controller::spawn(&ctx, dep.id);
    let e = find_env(&ctx, &id).await?;
    Ok((StatusCode::ACCEPTED, Json(env_dto(&ctx, e).await?)))
}

#[derive(Deserialize)]
pub(crate) struct LogsQuery {
    pub(crate) service: Option<String>,
    pub(crate) tail: Option<usize>,
}

pub(crate) async fn env_logs(
    State(ctx): State<Shared>,
    Path(id): Path<String>,
    Query(q): Query<LogsQuery>,
) -> Result<Json<Vec<api::Logs>>, ApiError> {
    let e = find_env(&ctx, &id).await?;
    let mut out = Vec::new();
    let tail = q.tail.unwrap_or(200).min(10_000);
    if let Some(k) = &ctx.kube {
        for s in ctx.store.services(&id).await? {
            if q.service.as_ref().is_some_and(|w| w != &s.name) {
                continue;
            }
            let label = offshoot_manifests::dns_label(&s.name);
            let pods = k.kube.logs(&crate::kube_rt::namespace(&e), &id, &label, tail).await.map_err(anyhow::Error::new)?;
            for (pod, logs) in pods {
                out.push(api::Logs { service: format!("{}/{pod}", s.name), logs });
            }
        }
    }
    for c in ctx.rt.list(Some(&id)).await.map_err(anyhow::Error::new)? {
        if q.service.as_ref().is_some_and(|s| s != &c.service) || c.role != "service" {
            continue;
        }
        let logs = ctx.rt.logs(&c.name, tail).await.map_err(anyhow::Error::new)?;
        out.push(api::Logs { service: c.service, logs });
    }
    if out.is_empty()
        && let Some(s) = q.service
    {
        return Err(ApiError::not_found("running service", &s));
    }
    Ok(Json(out))
}

/// The environment as Kubernetes manifests: its forked configuration resolved as for a
/// deployment, built services at the images they were built as, secret values masked.
async fn env_manifests(State(ctx): State<Shared>, Path(id): Path<String>) -> Result<Json<api::RenderedManifests>, ApiError> {
    let e = find_env(&ctx, &id).await?;
    let r =
        controller::resolve_env(&ctx, &e, None).await.map_err(|m| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "unresolvable", m))?;
    let mut opts = crate::kube_rt::options(&ctx, &e);
    for s in ctx.store.services(&id).await? {
        if let Some(image) = s.detail.image {
            opts.images.insert(s.name, image);
        }
    }
    let rendered = offshoot_manifests::render(&r, &opts);
    let yaml = offshoot_manifests::to_yaml(&rendered.manifests).map_err(|m| anyhow::anyhow!(m))?;
    Ok(Json(api::RenderedManifests { runtime: "kubernetes".into(), yaml, warnings: rendered.warnings }))
}

/// The build logs of the environment's latest deployment that built anything.
async fn build_logs(State(ctx): State<Shared>, Path(id): Path<String>) -> Result<Json<Vec<api::Logs>>, ApiError> {
    find_env(&ctx, &id).await?;
    for d in ctx.store.deployments(&id).await?.into_iter().rev() {
        let logs = ctx.store.build_logs(&d.id).await?;
        if !logs.is_empty() {
            return Ok(Json(logs.into_iter().map(|(service, logs)| api::Logs { service, logs }).collect()));
        }
    }
    Ok(Json(Vec::new()))
}

async fn env_exec(
    State(ctx): State<Shared>,
    Path(id): Path<String>,
    Json(body): Json<api::ExecRequest>,
) -> Result<Json<api::ExecResult>, ApiError> {
    find_env(&ctx, &id).await?;
    if body.command.is_empty() {
        return Err(ApiError::bad_request("no command given"));
    }
    if ctx.kube.is_some() {
        return Err(ApiError::new(StatusCode::NOT_IMPLEMENTED, "unsupported", "`env exec` is not available on the Kubernetes runtime yet")
            .hint("use `kubectl exec -n offshoot-<env id> deploy/<service> -- CMD`"));
    }
    let running = ctx.rt.list(Some(&id)).await.map_err(anyhow::Error::new)?;
    let c = running
        .iter()
        .find(|c| c.service == body.service && c.role == "service")
        .ok_or_else(|| ApiError::not_found("running service", &body.service))?;
    let done = ctx.rt.exec(&c.name, &body.command).await.map_err(anyhow::Error::new)?;
    Ok(Json(api::ExecResult { exit_code: done.exit_code, output: done.logs }))
}
