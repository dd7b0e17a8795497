//! The HTTP API (`/api/v1`, bearer token) and `/healthz`.

use crate::controller;
use crate::crypto::hash_token;
use crate::error::ApiError;
use crate::ops::{NewEnv, check_files, create_environment, find_app, find_env, read_config};
use crate::state::Shared;
use crate::views::{app_dto, env_dto, env_dtos};
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use offshoot_api_types as api;
use offshoot_api_types::{DeploymentStatus, EnvStatus};
use offshoot_control::Workflow;
use offshoot_store::now_ms;
use offshoot_template::document::{self, Kind};
use serde::Deserialize;

/// Largest request body the API accepts.
pub(crate) const MAX_BODY: usize = 4 * 1024 * 1024;

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
        .merge(crate::webhooks::hooks(ctx))
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

#[derive(Deserialize)]
struct EnvQuery {
    app: Option<String>,
}

async fn list_envs(State(ctx): State<Shared>, Query(q): Query<EnvQuery>) -> Result<Json<Vec<api::Env>>, ApiError> {
    Ok(Json(env_dtos(&ctx, q.app.as_deref()).await?))
}

pub(crate) async fn show_env(State(ctx): State<Shared>, Path(id): Path<String>) -> Result<Json<api::Env>, ApiError> {
    let e = find_env(&ctx, &id).await?;
    Ok(Json(env_dto(&ctx, e).await?))
}

pub(crate) async fn delete_env(State(ctx): State<Shared>, Path(id): Path<String>) -> Result<(StatusCode, Json<api::Env>), ApiError> {
    let e = find_env(&ctx, &id).await?;
    if let Some(parent) = &e.parent_id
        && ctx.store.env(parent).await?.is_some_and(|p| p.status != EnvStatus::Deleted)
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "imported",
            format!("environment `{id}` belongs to environment `{parent}`, which imports `{}`", e.app),
        )
        .hint(format!("delete `{parent}`: its imports go with it")));
    }
    if e.status != EnvStatus::Deleted && e.status != EnvStatus::TearingDown {
        ctx.store.set_env_status(&id, EnvStatus::TearingDown, None).await?;
        let dep = controller::new_deployment(&id, Workflow::Teardown, None);
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
    if e.status == EnvStatus::Deleted || e.status == EnvStatus::TearingDown {
        return Err(ApiError::new(StatusCode::CONFLICT, "conflict", format!("environment `{id}` is {}", e.status)));
    }
    if let Some(c) = &body.commit
        && (c.len() != 40 || !c.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(ApiError::bad_request(format!("`{c}` is not a full commit SHA")));
    }
    // `patch` redeploys what is built from the repository; an environment whose `setup` never
    // succeeded (a missing dataset clone, say) has nothing running yet, so it gets `setup`.
    let set_up =
        ctx.store.deployments(&id).await?.iter().any(|d| d.workflow == Workflow::Setup.as_str() && d.status == DeploymentStatus::Succeeded);
    let workflow = if set_up { Workflow::Patch } else { Workflow::Setup };
    ctx.store.set_env_status(&id, EnvStatus::Deploying, None).await?;
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
    let tail = q.tail.unwrap_or(200).min(10_000);
    let out: Vec<api::Logs> = crate::backends::logs(&ctx, &e, q.service.as_deref(), tail)
        .await?
        .into_iter()
        .map(|(service, logs)| api::Logs { service, logs })
        .collect();
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
    let r = crate::resolving::resolve_env(&ctx, &e, None)
        .await
        .map_err(|m| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "unresolvable", m))?;
    let mut opts = crate::kube_rt::options(&ctx, &e);
    opts.images = crate::state::images_of(&ctx, &id).await?.into_iter().collect();
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
    let Some(done) = crate::backends::exec(&ctx, &id, &body.service, &body.command).await? else {
        return Err(ApiError::new(StatusCode::NOT_IMPLEMENTED, "unsupported", "`env exec` is not available on the Kubernetes runtime yet")
            .hint("use `kubectl exec -n offshoot-<env id> deploy/<service> -- CMD`"));
    };
    Ok(Json(api::ExecResult { exit_code: done.exit_code, output: done.logs }))
}
