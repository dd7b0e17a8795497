//! The HTTP API (`/api/v1`, bearer token) and `/healthz`.

use crate::backends::EnvBackend;
use crate::error::{ApiError, Body, Params};
use crate::plane::{control, find_app, find_env};
use crate::state::Shared;
use crate::views::{app_dto, env_dto, env_dtos};
use axum::extract::{Extension, Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use offshoot_api_types as api;
use offshoot_control::apps::{NewApp, TemplateVersion};
use offshoot_control::environments::NewEnv;
use offshoot_control::{Actor, Backend as _, Operation};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Largest request body the API accepts.
pub(crate) const MAX_BODY: usize = 4 * 1024 * 1024;

/// The API's operations at `/api/v1`, each with its OpenAPI description (`utoipa::path`): the
/// routes and the published description are made from the same list, so they cannot drift.
fn api_routes() -> OpenApiRouter<Shared> {
    let api = OpenApiRouter::new()
        .routes(routes!(create_app, list_apps))
        .routes(routes!(show_app, delete_app))
        .routes(routes!(get_template, put_template))
        .routes(routes!(set_secret))
        .routes(routes!(create_env, list_envs))
        .routes(routes!(show_env, delete_env))
        .routes(routes!(update_env))
        .routes(routes!(extend_env))
        .routes(routes!(deploy_env))
        .routes(routes!(sleep_env))
        .routes(routes!(wake_env))
        .routes(routes!(env_logs))
        .routes(routes!(env_jobs))
        .routes(routes!(env_infrastructure))
        .routes(routes!(build_logs))
        .routes(routes!(env_manifests))
        .routes(routes!(env_exec))
        .routes(routes!(registry_login, registries))
        .routes(routes!(certificates))
        .routes(routes!(registry_logout))
        .routes(routes!(activity))
        .routes(routes!(status))
        .routes(routes!(loops));
    crate::accounts::api(crate::datasets::api(crate::webhooks::api(api)))
}

/// The routes outside `/api/v1` that the description covers: the health check and the
/// description itself, open to anyone.
fn open_routes() -> OpenApiRouter<Shared> {
    OpenApiRouter::new().routes(routes!(healthz)).routes(routes!(openapi_json))
}

/// The whole API with its operations in place: `api` at `/api/v1`, `metrics`, the open routes.
/// The server routes it; its description is [`openapi`].
fn assemble(api: OpenApiRouter<Shared>, metrics: OpenApiRouter<Shared>) -> OpenApiRouter<Shared> {
    OpenApiRouter::with_openapi(crate::openapi::base()).nest("/api/v1", api).merge(metrics).merge(open_routes())
}

/// The API's OpenAPI description, made from its routes.
pub fn openapi() -> utoipa::openapi::OpenApi {
    crate::openapi::complete(assemble(api_routes(), OpenApiRouter::new().routes(routes!(metrics))).into_openapi())
}

pub(crate) fn router(ctx: Shared) -> Router {
    let auth = axum::middleware::from_fn_with_state(ctx.clone(), auth);
    // Prometheus scrapes with the same bearer token (`authorization` in its scrape config).
    let metrics = OpenApiRouter::new().routes(routes!(metrics)).route_layer(auth.clone());
    let (routes, _) = assemble(api_routes().route_layer(auth), metrics).split_for_parts();
    routes.layer(axum::extract::DefaultBodyLimit::max(MAX_BODY)).with_state(ctx.clone()).merge(crate::webhooks::hooks(ctx))
}

#[utoipa::path(get, path = "/healthz", tag = "server", security(()), responses((status = 200, description = "The server answers", body = String, content_type = "text/plain")))]
async fn healthz() -> &'static str {
    "ok\n"
}

/// This description, as JSON (OpenAPI 3.1).
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "server", security(()), responses((status = 200, description = "The API's OpenAPI description", body = Object)))]
async fn openapi_json() -> Response {
    static SPEC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let text = SPEC.get_or_init(|| openapi().to_json().unwrap_or_default());
    ([(axum::http::header::CONTENT_TYPE, "application/json")], text.as_str()).into_response()
}

#[utoipa::path(get, path = "/metrics", tag = "server", responses((status = 200, description = "Prometheus metrics (OpenMetrics text)", body = String, content_type = "application/openmetrics-text")))]
async fn metrics(State(ctx): State<Shared>) -> Response {
    let text = ctx.router.metrics_text();
    // The router's text ends with `# EOF`: the loops' counters go before it.
    let (body, eof) = text.rsplit_once("# EOF").map_or((text.as_str(), ""), |(b, _)| (b, "# EOF\n"));
    let text = format!("{body}{}{eof}", ctx.background.loops().metrics_text());
    ([(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text).into_response()
}

/// Environments running and sleeping, against the server's limits.
#[utoipa::path(get, path = "/status", tag = "server", responses((status = 200, description = "Environments running and sleeping, against the limits", body = api::Status)))]
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
#[utoipa::path(get, path = "/loops", tag = "server", responses((status = 200, description = "Each background loop's rounds", body = std::collections::BTreeMap<String, crate::background::LoopStatus>)))]
async fn loops(State(ctx): State<Shared>) -> Json<std::collections::BTreeMap<&'static str, crate::background::LoopStatus>> {
    Json(ctx.background.loops().snapshot())
}

/// The actor of a request's bearer token: `None` without a valid one.
async fn bearer(ctx: &Shared, headers: &axum::http::HeaderMap) -> Result<Option<Actor>, ApiError> {
    let token =
        headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).map(str::trim);
    match token {
        Some(t) => Ok(crate::accounts::actor_of_token(ctx, t).await?),
        None => Ok(None),
    }
}

fn unauthorized() -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "a valid `Authorization: Bearer <token>` header is required")
        .hint("the admin token is in the server's data directory, `admin-token`")
}

/// Lets requests with a valid API token through, as the token's actor.
async fn auth(State(ctx): State<Shared>, mut req: Request, next: Next) -> Response {
    match bearer(&ctx, req.headers()).await {
        Ok(Some(actor)) => {
            let address = req.extensions().get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip().to_string());
            req.extensions_mut().insert(actor.from_address(address));
            next.run(req).await
        }
        Ok(None) => unauthorized().into_response(),
        Err(e) => e.into_response(),
    }
}

/// Any path the server does not serve: a JSON 404 like every other error. Under `/api/`, a
/// request without a valid token gets 401 first, as from every operation there: which paths
/// exist is not told to strangers.
pub(crate) async fn no_such_path(ctx: Shared, req: Request) -> ApiError {
    if req.uri().path().starts_with("/api/") {
        match bearer(&ctx, req.headers()).await {
            Ok(Some(_)) => {}
            Ok(None) => return unauthorized(),
            Err(e) => return e,
        }
    }
    ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no such path: `{}`", req.uri().path()))
}

#[utoipa::path(post, path = "/apps", tag = "apps", request_body = api::AppCreate, responses((status = 201, description = "Created, version 1 of its configuration generated from the repository", body = api::App)))]
pub(crate) async fn create_app(
    State(ctx): State<Shared>,
    Extension(actor): Extension<Actor>,
    Body(body): Body<api::AppCreate>,
) -> Result<(StatusCode, Json<api::App>), ApiError> {
    let req = NewApp { repo: body.repo, name: body.name, branch: body.branch };
    let app = control(&ctx, actor).create_app(req).await?;
    Ok((StatusCode::CREATED, Json(app_dto(&ctx, app).await?)))
}

#[utoipa::path(get, path = "/apps", tag = "apps", responses((status = 200, description = "Every application", body = Vec<api::App>)))]
async fn list_apps(State(ctx): State<Shared>) -> Result<Json<Vec<api::App>>, ApiError> {
    let mut out = Vec::new();
    for a in ctx.store.apps().await? {
        out.push(app_dto(&ctx, a).await?);
    }
    Ok(Json(out))
}

#[utoipa::path(get, path = "/apps/{name}", tag = "apps", params(("name" = String, Path, min_length = 1, description = "The application's name")), responses((status = 200, description = "The application", body = api::App)))]
async fn show_app(State(ctx): State<Shared>, Path(name): Path<String>) -> Result<Json<api::App>, ApiError> {
    let a = find_app(&ctx, &name).await?;
    Ok(Json(app_dto(&ctx, a).await?))
}

#[utoipa::path(delete, path = "/apps/{name}", tag = "apps", params(("name" = String, Path, min_length = 1, description = "The application's name")), responses((status = 204, description = "Deleted")))]
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

#[utoipa::path(get, path = "/apps/{name}/template", tag = "apps", params(("name" = String, Path, min_length = 1, description = "The application's name")), responses((status = 200, description = "Its current configuration; secret values masked", body = api::Template)))]
async fn get_template(
    State(ctx): State<Shared>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
) -> Result<Json<api::Template>, ApiError> {
    Ok(Json(template_dto(control(&ctx, actor).template(&name).await?)))
}

#[utoipa::path(put, path = "/apps/{name}/template", tag = "apps", params(("name" = String, Path, min_length = 1, description = "The application's name")), request_body = api::TemplateUpdate, responses((status = 200, description = "The new version", body = api::Template)))]
async fn put_template(
    State(ctx): State<Shared>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
    Body(body): Body<api::TemplateUpdate>,
) -> Result<Json<api::Template>, ApiError> {
    Ok(Json(template_dto(control(&ctx, actor).update_template(&name, body.template, body.env_vars).await?)))
}

#[utoipa::path(post, path = "/apps/{name}/secrets", tag = "apps", params(("name" = String, Path, min_length = 1, description = "The application's name")), request_body = api::SecretSet, responses((status = 204, description = "Stored, encrypted")))]
async fn set_secret(
    State(ctx): State<Shared>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
    Body(body): Body<api::SecretSet>,
) -> Result<StatusCode, ApiError> {
    let c = control(&ctx, actor);
    match (body.file, body.service.as_deref()) {
        (true, Some(_)) => return Err(ApiError::bad_request("a file secret belongs to the application; `service` does not apply")),
        (true, None) => c.set_file_secret(&name, &body.key, &body.value).await?,
        (false, service) => c.set_secret(&name, service.unwrap_or_default(), &body.key, &body.value).await?,
    }
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/envs", tag = "envs", request_body = api::EnvCreate, responses((status = 202, description = "Created; its setup runs", body = api::Env)))]
async fn create_env(
    State(ctx): State<Shared>,
    Extension(actor): Extension<Actor>,
    Body(body): Body<api::EnvCreate>,
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
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct AppQuery {
    app: Option<String>,
}

#[utoipa::path(get, path = "/envs", tag = "envs", params(AppQuery), responses((status = 200, description = "The environments", body = Vec<api::Env>)))]
async fn list_envs(State(ctx): State<Shared>, Params(q): Params<AppQuery>) -> Result<Json<Vec<api::Env>>, ApiError> {
    Ok(Json(env_dtos(&ctx, q.app.as_deref()).await?))
}

#[utoipa::path(get, path = "/envs/{id}", tag = "envs", params(("id" = String, Path, min_length = 1, description = "The environment's id")), responses((status = 200, description = "The environment", body = api::Env)))]
async fn show_env(State(ctx): State<Shared>, Path(id): Path<String>) -> Result<Json<api::Env>, ApiError> {
    let e = find_env(&ctx, &id).await?;
    Ok(Json(env_dto(&ctx, e).await?))
}

#[utoipa::path(delete, path = "/envs/{id}", tag = "envs", params(("id" = String, Path, min_length = 1, description = "The environment's id")), responses((status = 202, description = "Its teardown runs", body = api::Env)))]
async fn delete_env(
    State(ctx): State<Shared>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<api::Env>), ApiError> {
    let e = control(&ctx, actor).delete_env(&id, None).await?;
    Ok((StatusCode::ACCEPTED, Json(env_dto(&ctx, e).await?)))
}

#[utoipa::path(post, path = "/envs/{id}/deploy", tag = "envs", params(("id" = String, Path, min_length = 1, description = "The environment's id")), request_body = api::EnvDeploy, responses((status = 202, description = "Its patch runs", body = api::Env)))]
async fn deploy_env(
    State(ctx): State<Shared>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    Body(body): Body<api::EnvDeploy>,
) -> Result<(StatusCode, Json<api::Env>), ApiError> {
    let e = control(&ctx, actor).deploy_env(&id, body.commit).await?;
    Ok((StatusCode::ACCEPTED, Json(env_dto(&ctx, e).await?)))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct WaitQuery {
    #[serde(default)]
    wait: bool,
}

#[utoipa::path(post, path = "/envs/{id}/settings", tag = "envs", params(("id" = String, Path, min_length = 1, description = "The environment's id")), request_body = api::EnvUpdate, responses((status = 200, description = "Changed", body = api::Env)))]
async fn update_env(
    State(ctx): State<Shared>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    Body(body): Body<api::EnvUpdate>,
) -> Result<Json<api::Env>, ApiError> {
    let e = control(&ctx, actor).update_env_settings(&id, &body).await?;
    Ok(Json(env_dto(&ctx, e).await?))
}

#[utoipa::path(post, path = "/envs/{id}/extend", tag = "envs", params(("id" = String, Path, min_length = 1, description = "The environment's id")), request_body = api::EnvExtend, responses((status = 200, description = "Its new expiry", body = api::Env)))]
async fn extend_env(
    State(ctx): State<Shared>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    Body(body): Body<api::EnvExtend>,
) -> Result<Json<api::Env>, ApiError> {
    let e = control(&ctx, actor).extend_env(&id, body.ttl_seconds).await?;
    Ok(Json(env_dto(&ctx, e).await?))
}

#[utoipa::path(post, path = "/envs/{id}/sleep", tag = "envs", params(("id" = String, Path, min_length = 1, description = "The environment's id"), WaitQuery), responses((status = 200, description = "Asleep (`wait`)", body = api::Env), (status = 202, description = "Going to sleep", body = api::Env)))]
async fn sleep_env(
    State(ctx): State<Shared>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    Params(q): Params<WaitQuery>,
) -> Result<(StatusCode, Json<api::Env>), ApiError> {
    sleep_or_wake(ctx, actor, id, q.wait, Operation::SleepEnv).await
}

#[utoipa::path(post, path = "/envs/{id}/wake", tag = "envs", params(("id" = String, Path, min_length = 1, description = "The environment's id"), WaitQuery), responses((status = 200, description = "Awake (`wait`)", body = api::Env), (status = 202, description = "Waking", body = api::Env)))]
async fn wake_env(
    State(ctx): State<Shared>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    Params(q): Params<WaitQuery>,
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

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ActivityQuery {
    /// How many, newest first (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    app: Option<String>,
    user: Option<String>,
    /// Only the last so long (`24h`, `7d`).
    since: Option<String>,
}

/// What was done, newest first (`limit`: 1 to 1,000, default 100), of one application, by one
/// user, since a while ago.
#[utoipa::path(get, path = "/activity", tag = "server", params(ActivityQuery), responses((status = 200, description = "What was done, newest first", body = Vec<api::Activity>)))]
async fn activity(State(ctx): State<Shared>, Params(q): Params<ActivityQuery>) -> Result<Json<Vec<api::Activity>>, ApiError> {
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

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct LogsQuery {
    service: Option<String>,
    tail: Option<usize>,
}

#[utoipa::path(get, path = "/envs/{id}/logs", tag = "envs", params(("id" = String, Path, min_length = 1, description = "The environment's id"), LogsQuery), responses((status = 200, description = "Its services' logs", body = Vec<api::Logs>)))]
async fn env_logs(
    State(ctx): State<Shared>,
    Path(id): Path<String>,
    Params(q): Params<LogsQuery>,
) -> Result<Json<Vec<api::Logs>>, ApiError> {
    Ok(Json(crate::views::logs(&ctx, &id, q.service.as_deref(), q.tail.unwrap_or(200)).await?))
}

#[utoipa::path(post, path = "/registries", tag = "server", request_body = api::RegistryLogin, responses((status = 204, description = "Stored, the password encrypted")))]
async fn registry_login(
    State(ctx): State<Shared>,
    Extension(actor): Extension<Actor>,
    Body(body): Body<api::RegistryLogin>,
) -> Result<StatusCode, ApiError> {
    let login = offshoot_control::registries::Login { host: body.host, app: body.app, username: body.username, password: body.password };
    control(&ctx, actor).registry_login(login).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The certificates from ACME: names, issuer, validity, orders, the last failure; never a key.
#[utoipa::path(get, path = "/certs", tag = "server", responses((status = 200, description = "The certificates", body = Vec<api::Certificate>)))]
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
#[utoipa::path(get, path = "/registries", tag = "server", responses((status = 200, description = "The registry logins", body = Vec<api::RegistryInfo>)))]
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

#[utoipa::path(delete, path = "/registries/{host}", tag = "server", params(("host" = String, Path, min_length = 1, description = "The registry's host"), AppQuery), responses((status = 204, description = "Forgotten")))]
async fn registry_logout(
    State(ctx): State<Shared>,
    Extension(actor): Extension<Actor>,
    Path(host): Path<String>,
    Params(q): Params<AppQuery>,
) -> Result<StatusCode, ApiError> {
    control(&ctx, actor).registry_logout(&host, q.app.as_deref()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct JobsQuery {
    job: Option<String>,
}

/// The environment's cron jobs (or one), each with its latest runs, newest first.
#[utoipa::path(get, path = "/envs/{id}/jobs", tag = "envs", params(("id" = String, Path, min_length = 1, description = "The environment's id"), JobsQuery), responses((status = 200, description = "Its cron jobs", body = Vec<api::CronJob>)))]
async fn env_jobs(
    State(ctx): State<Shared>,
    Path(id): Path<String>,
    Params(q): Params<JobsQuery>,
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

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct InfraQuery {
    name: Option<String>,
}

/// The environment's `infrastructure` entries with their runs; with `?name=`, that one entry
/// with its runs' logs.
#[utoipa::path(get, path = "/envs/{id}/infrastructure", tag = "envs", params(("id" = String, Path, min_length = 1, description = "The environment's id"), InfraQuery), responses((status = 200, description = "Its Terraform entries", body = Vec<api::Infrastructure>)))]
async fn env_infrastructure(
    State(ctx): State<Shared>,
    Path(id): Path<String>,
    Params(q): Params<InfraQuery>,
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
#[utoipa::path(get, path = "/envs/{id}/manifests", tag = "envs", params(("id" = String, Path, min_length = 1, description = "The environment's id")), responses((status = 200, description = "Its Kubernetes manifests", body = api::RenderedManifests)))]
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
#[utoipa::path(get, path = "/envs/{id}/build-logs", tag = "envs", params(("id" = String, Path, min_length = 1, description = "The environment's id")), responses((status = 200, description = "Its latest build logs", body = Vec<api::Logs>)))]
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

#[utoipa::path(post, path = "/envs/{id}/exec", tag = "envs", params(("id" = String, Path, min_length = 1, description = "The environment's id")), request_body = api::ExecRequest, responses((status = 200, description = "The command ran", body = api::ExecResult)))]
async fn env_exec(
    State(ctx): State<Shared>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    Body(body): Body<api::ExecRequest>,
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
