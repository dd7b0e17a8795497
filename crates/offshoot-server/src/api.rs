//! The HTTP API (`/api/v1`, bearer token) and `/healthz`.

use crate::backends::EnvBackend;
use crate::error::ApiError;
use crate::plane::{control, find_app, find_env};
use crate::state::Shared;
use crate::views::{app_dto, env_dto, env_dtos};
use axum::extract::{Extension, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use offshoot_api_types as api;
use offshoot_control::apps::{NewApp, TemplateVersion};
use offshoot_control::environments::NewEnv;
use offshoot_control::{Actor, Backend as _, Operation};
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
        .route("/envs/{id}/settings", post(update_env))
        .route("/envs/{id}/extend", post(extend_env))
        .route("/envs/{id}/deploy", post(deploy_env))
        .route("/envs/{id}/sleep", post(sleep_env))
        .route("/envs/{id}/wake", post(wake_env))
        .route("/envs/{id}/logs", get(env_logs))
        .route("/envs/{id}/jobs", get(env_jobs))
        .route("/envs/{id}/infrastructure", get(env_infrastructure))
        .route("/envs/{id}/build-logs", get(build_logs))
        .route("/envs/{id}/manifests", get(env_manifests))
        .route("/envs/{id}/exec", post(env_exec))
        .route("/registries", post(registry_login).get(registries))
        .route("/certs", get(certificates))
        .route("/registries/{host}", axum::routing::delete(registry_logout))
        .route("/activity", get(activity))
        .route("/status", get(status))
        .route("/loops", get(loops));
    let api = crate::accounts::api(crate::datasets::api(crate::webhooks::api(api)))
        .route_layer(axum::middleware::from_fn_with_state(ctx.clone(), auth));
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
    let text = ctx.router.metrics_text();
    // The router's text ends with `# EOF`: the loops' counters go before it.
    let (body, eof) = text.rsplit_once("# EOF").map_or((text.as_str(), ""), |(b, _)| (b, "# EOF\n"));
    let text = format!("{body}{}{eof}", ctx.background.loops().metrics_text());
    ([(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text).into_response()
}

/// Environments running and sleeping, against the server's limits.
async fn status(State(ctx): State<Shared>) -> Result<Json<api::Status>, ApiError> {
    let u = control(&ctx, Actor::token()).usage().await?;
    Ok(Json(api::Status {
        running: u.running,
        sleeping: u.sleeping,
        max_environments: ctx.capacity.max_environments,
        memory_used: u.memory,
        memory_budget: ctx.capacity.memory_budget,
    }))
}

/// How each background loop's rounds went.
async fn loops(State(ctx): State<Shared>) -> Json<std::collections::BTreeMap<&'static str, crate::background::LoopStatus>> {
    Json(ctx.background.loops().snapshot())
}

/// Lets requests with a valid API token through, as the token's actor.
async fn auth(State(ctx): State<Shared>, mut req: Request, next: Next) -> Response {
    let token = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let actor = match token {
        Some(t) => match crate::accounts::actor_of_token(&ctx, t).await {
            Ok(a) => a,
            Err(e) => return ApiError::from(e).into_response(),
        },
        None => None,
    };
    if let Some(actor) = actor {
        let address = req.extensions().get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip().to_string());
        req.extensions_mut().insert(actor.from_address(address));
        next.run(req).await
    } else {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "a valid `Authorization: Bearer <token>` header is required")
            .hint("the admin token is in the server's data directory, `admin-token`")
            .into_response()
    }
}

pub(crate) async fn create_app(
    State(ctx): State<Shared>,
    Extension(actor): Extension<Actor>,
    Json(body): Json<api::AppCreate>,
) -> Result<(StatusCode, Json<api::App>), ApiError> {
    let req = NewApp { repo: body.repo, name: body.name, branch: body.branch };
    let app = control(&ctx, actor).create_app(req).await?;
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

async fn delete_app(
    State(ctx): State<Shared>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    control(&ctx, actor).delete_app(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn template_dto(v: TemplateVersion) -> api::Template {
    // Secret values of the Environment Variables file are never shown (saving it back keeps them).
    api::Template { app: v.app, version: v.version, template: v.template, env_vars: offshoot_template::masking::masked(&v.env_vars) }
}

async fn get_template(
    State(ctx): State<Shared>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
) -> Result<Json<api::Template>, ApiError> {
    Ok(Json(template_dto(control(&ctx, actor).template(&name).await?)))
}

async fn put_template(
    State(ctx): State<Shared>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
    Json(body): Json<api::TemplateUpdate>,
) -> Result<Json<api::Template>, ApiError> {
    Ok(Json(template_dto(control(&ctx, actor).update_template(&name, body.template, body.env_vars).await?)))
}

async fn set_secret(
    State(ctx): State<Shared>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
    Json(body): Json<api::SecretSet>,
) -> Result<StatusCode, ApiError> {
    let c = control(&ctx, actor);
    match (body.file, body.service.as_deref()) {
        (true, Some(_)) => return Err(ApiError::bad_request("a file secret belongs to the application; `service` does not apply")),
        (true, None) => c.set_file_secret(&name, &body.key, &body.value).await?,
        (false, service) => c.set_secret(&name, service.unwrap_or_default(), &body.key, &body.value).await?,
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn create_env(
    State(ctx): State<Shared>,
    Extension(actor): Extension<Actor>,
    Json(body): Json<api::EnvCreate>,
) -> Result<(StatusCode, Json<api::Env>), ApiError> {
    let req = NewEnv {
        app: body.app,
        branch: body.branch,
        environment_template: body.environment_template,
        ttl_seconds: body.ttl_seconds,
        parameters: body.parameters,
        ..NewEnv::default()
    };
    let env = control(&ctx, actor).create_env(req).await?;
    Ok((StatusCode::ACCEPTED, Json(env_dto(&ctx, env).await?)))
}

/// `?app=NAME`: of one application.
#[derive(Deserialize)]
struct AppQuery {
    app: Option<String>,
}

async fn list_envs(State(ctx): State<Shared>, Query(q): Query<AppQuery>) -> Result<Json<Vec<api::Env>>, ApiError> {
    Ok(Json(env_dtos(&ctx, q.app.as_deref()).await?))
}

async fn show_env(State(ctx): State<Shared>, Path(id): Path<String>) -> Result<Json<api::Env>, ApiError> {
    let e = find_env(&ctx, &id).await?;
    Ok(Json(env_dto(&ctx, e).await?))
}

async fn delete_env(
    State(ctx): State<Shared>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<api::Env>), ApiError> {
    let e = control(&ctx, actor).delete_env(&id, None).await?;
    Ok((StatusCode::ACCEPTED, Json(env_dto(&ctx, e).await?)))
}

async fn deploy_env(
    State(ctx): State<Shared>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    Json(body): Json<api::EnvDeploy>,
) -> Result<(StatusCode, Json<api::Env>), ApiError> {
    let e = control(&ctx, actor).deploy_env(&id, body.commit).await?;
    Ok((StatusCode::ACCEPTED, Json(env_dto(&ctx, e).await?)))
}

#[derive(Deserialize)]
struct WaitQuery {
    #[serde(default)]
    wait: bool,
}

async fn update_env(
    State(ctx): State<Shared>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    Json(body): Json<api::EnvUpdate>,
) -> Result<Json<api::Env>, ApiError> {
    let e = control(&ctx, actor).update_env_settings(&id, &body).await?;
    Ok(Json(env_dto(&ctx, e).await?))
}

async fn extend_env(
    State(ctx): State<Shared>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    Json(body): Json<api::EnvExtend>,
) -> Result<Json<api::Env>, ApiError> {
    let e = control(&ctx, actor).extend_env(&id, body.ttl_seconds).await?;
    Ok(Json(env_dto(&ctx, e).await?))
}

async fn sleep_env(
    State(ctx): State<Shared>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    Query(q): Query<WaitQuery>,
) -> Result<(StatusCode, Json<api::Env>), ApiError> {
    sleep_or_wake(ctx, actor, id, q.wait, Operation::SleepEnv).await
}

async fn wake_env(
    State(ctx): State<Shared>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    Query(q): Query<WaitQuery>,
) -> Result<(StatusCode, Json<api::Env>), ApiError> {
    sleep_or_wake(ctx, actor, id, q.wait, Operation::WakeEnv).await
}

/// Sleeps or wakes an environment: done when `wait`; else started (202) once the request is
/// allowed and the environment is in a state to, and the outcome is on the environment.
async fn sleep_or_wake(ctx: Shared, actor: Actor, id: String, wait: bool, op: Operation) -> Result<(StatusCode, Json<api::Env>), ApiError> {
    let run = {
        let (ctx, id) = (ctx.clone(), id.clone());
        move |actor: Actor| async move {
            match op {
                Operation::SleepEnv => crate::waking::sleep(&ctx, actor, &id).await,
                _ => crate::waking::wake(&ctx, actor, &id).await,
            }
        }
    };
    if wait {
        let e = run(actor).await?;
        return Ok((StatusCode::OK, Json(env_dto(&ctx, e).await?)));
    }
    // Checked now, the work done in the background (whose gate records how it ends); a refusal
    // now is recorded here.
    let c = control(&ctx, actor.clone());
    c.authorize(op, &id).await?;
    let checked = async {
        let e = c.find_env(&id).await?;
        let ok = match op {
            Operation::SleepEnv => matches!(e.status, api::EnvStatus::Ready | api::EnvStatus::Sleeping),
            _ => matches!(e.status, api::EnvStatus::Ready | api::EnvStatus::Sleeping | api::EnvStatus::Waking),
        };
        if !ok {
            let what = if op == Operation::SleepEnv { "sleep" } else { "wake" };
            return Err(offshoot_control::ControlError::Conflict {
                code: "conflict",
                message: format!("environment `{id}` is {}; it cannot {what} now", e.status),
                hint: Some("try again once it is ready".into()),
            });
        }
        Ok(e)
    };
    let e = match checked.await {
        Ok(e) => e,
        Err(refused) => {
            return Err(c
                .perform(op, &id, async { Err::<(), _>(refused) })
                .await
                .err()
                .map_or_else(|| ApiError::bad_request("refused"), ApiError::from));
        }
    };
    ctx.background.spawn("sleep or wake", async move {
        if let Err(e) = run(actor).await {
            tracing::warn!(error = %e, "sleep or wake failed");
        }
    });
    Ok((StatusCode::ACCEPTED, Json(env_dto(&ctx, e).await?)))
}

#[derive(Deserialize)]
struct ActivityQuery {
    limit: Option<i64>,
    app: Option<String>,
    user: Option<String>,
    /// Only the last so long (`24h`, `7d`).
    since: Option<String>,
}

/// What was done, newest first (`limit`: 1 to 1,000, default 100), of one application, by one
/// user, since a while ago.
async fn activity(State(ctx): State<Shared>, Query(q): Query<ActivityQuery>) -> Result<Json<Vec<api::Activity>>, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("`limit` must be between 1 and 1000"));
    }
    let since = match q.since.as_deref() {
        None => None,
        Some(text) => {
            let secs = offshoot_datasets::parse_duration(text).map_err(|e| ApiError::bad_request(format!("`since`: {e}")))?;
            Some(offshoot_store::now_ms() - i64::try_from(secs).unwrap_or(i64::MAX / 2000) * 1000)
        }
    };
    let filter = offshoot_store::ActivityFilter { app: q.app, actor: q.user, since, limit };
    let list = ctx.store.activity_where(&filter).await?;
    Ok(Json(
        list.into_iter()
            .map(|a| api::Activity {
                at: a.at,
                actor: a.actor,
                operation: a.operation,
                target: a.target,
                outcome: a.outcome,
                detail: a.detail,
                token_id: a.token_id,
                address: a.address,
            })
            .collect(),
    ))
}

#[derive(Deserialize)]
struct LogsQuery {
    service: Option<String>,
    tail: Option<usize>,
}

async fn env_logs(State(ctx): State<Shared>, Path(id): Path<String>, Query(q): Query<LogsQuery>) -> Result<Json<Vec<api::Logs>>, ApiError> {
    Ok(Json(crate::views::logs(&ctx, &id, q.service.as_deref(), q.tail.unwrap_or(200)).await?))
}

async fn registry_login(
    State(ctx): State<Shared>,
    Extension(actor): Extension<Actor>,
    Json(body): Json<api::RegistryLogin>,
) -> Result<StatusCode, ApiError> {
    let login = offshoot_control::registries::Login { host: body.host, app: body.app, username: body.username, password: body.password };
    control(&ctx, actor).registry_login(login).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The certificates from ACME: names, issuer, validity, orders, the last failure; never a key.
async fn certificates(State(ctx): State<Shared>) -> Result<Json<Vec<api::Certificate>>, ApiError> {
    let rows = ctx.store.certificates().await?;
    Ok(Json(
        rows.into_iter()
            .map(|r| api::Certificate {
                names: r.name_list(),
                renew_at: r.not_before.zip(r.not_after).map(|(nb, na)| offshoot_acme::renew_at(nb, na)),
                next_attempt: (r.failures > 0).then_some(r.next_attempt),
                name: r.name,
                issuer: r.issuer,
                serial: r.serial,
                not_before: r.not_before,
                not_after: r.not_after,
                orders: r.orders,
                failures: r.failures,
                last_error: r.last_error,
            })
            .collect(),
    ))
}

/// The registry logins: host, whose, user; never a password.
async fn registries(State(ctx): State<Shared>) -> Result<Json<Vec<api::RegistryInfo>>, ApiError> {
    let all = ctx.store.registry_credentials().await?;
    Ok(Json(
        all.into_iter()
            .map(|c| api::RegistryInfo {
                host: c.host,
                app: (!c.app.is_empty()).then_some(c.app),
                username: c.username,
                created_at: c.created_at,
            })
            .collect(),
    ))
}

async fn registry_logout(
    State(ctx): State<Shared>,
    Extension(actor): Extension<Actor>,
    Path(host): Path<String>,
    Query(q): Query<AppQuery>,
) -> Result<StatusCode, ApiError> {
    control(&ctx, actor).registry_logout(&host, q.app.as_deref()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct JobsQuery {
    job: Option<String>,
}

/// The environment's cron jobs (or one), each with its latest runs, newest first.
async fn env_jobs(
    State(ctx): State<Shared>,
    Path(id): Path<String>,
    Query(q): Query<JobsQuery>,
) -> Result<Json<Vec<api::CronJob>>, ApiError> {
    let e = find_env(&ctx, &id).await?;
    let jobs = crate::views::cron_jobs(&ctx, &e).await?;
    match q.job {
        None => Ok(Json(jobs)),
        Some(name) => match jobs.into_iter().find(|j| j.name == name) {
            Some(j) => Ok(Json(vec![j])),
            None => Err(ApiError::new(StatusCode::NOT_FOUND, "not-found", format!("environment `{id}` has no cron job `{name}`"))),
        },
    }
}

#[derive(Deserialize)]
struct InfraQuery {
    name: Option<String>,
}

/// The environment's `infrastructure` entries with their runs; with `?name=`, that one entry
/// with its runs' logs.
async fn env_infrastructure(
    State(ctx): State<Shared>,
    Path(id): Path<String>,
    Query(q): Query<InfraQuery>,
) -> Result<Json<Vec<api::Infrastructure>>, ApiError> {
    let e = find_env(&ctx, &id).await?;
    let fork = crate::resolving::Fork::parse(&e).ok();
    let list = crate::views::infrastructure(&ctx, &e, fork.as_ref(), q.name.as_deref()).await?;
    if let Some(name) = &q.name
        && list.is_empty()
    {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "not-found", format!("environment `{id}` has no infrastructure entry `{name}`")));
    }
    Ok(Json(list))
}

/// The environment as Kubernetes manifests: its forked configuration resolved as for a
/// deployment, built services at the images they were built as, secret values masked.
async fn env_manifests(State(ctx): State<Shared>, Path(id): Path<String>) -> Result<Json<api::RenderedManifests>, ApiError> {
    let e = find_env(&ctx, &id).await?;
    let r = crate::resolving::resolve_env(&ctx, &e, None)
        .await
        .map_err(|m| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "unresolvable", m.to_string()))?;
    let mut opts = crate::kube_rt::options(&ctx, &e);
    opts.images = crate::state::images_of(&ctx, &id).await?.into_iter().collect();
    opts.registry_auths = crate::kube_rt::pull_auths(&ctx.registry_auths(&e.app).await.map_err(|f| anyhow::anyhow!(f.to_string()))?);
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
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    Json(body): Json<api::ExecRequest>,
) -> Result<Json<api::ExecResult>, ApiError> {
    // Recorded on the environment and service; the command itself may hold secrets. Checked
    // past the gate: a role that may not run commands learns nothing of the environment.
    let target = format!("{id}/{}", body.service);
    let c = control(&ctx, actor);
    let work = async {
        let env = c.find_env(&id).await?;
        if body.command.is_empty() {
            return Err(offshoot_control::ControlError::bad_input("no command given"));
        }
        Ok(EnvBackend::at_rest(&ctx, &env).exec(&body.service, &body.command).await?)
    };
    let done = c.perform(Operation::ExecInEnv, &target, work).await?;
    Ok(Json(api::ExecResult { exit_code: done.exit_code, output: done.output }))
}
