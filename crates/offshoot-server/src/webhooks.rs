//! Webhook endpoints (`/hooks/github/{app}`, `/hooks/gitlab/{app}`) and the application's git
//! settings in the API. A webhook is authenticated with the application's own secret (the
//! payload's repository name is never trusted to find the application), recorded as a delivery
//! (a repeated delivery id is ignored), answered, then handled in the background.

use crate::error::{ApiError, Body, Params};
use crate::state::Shared;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use offshoot_api_types as api;
use offshoot_control::Actor;
use offshoot_git::hooks::{self, Parsed};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Largest webhook body accepted (GitHub's pushes of many commits stay well below it).
pub(crate) const MAX_HOOK_BODY: usize = 2 * 1024 * 1024;

/// The unauthenticated webhook endpoints (each checks its own signature).
pub(crate) fn hooks(ctx: Shared) -> Router {
    Router::new()
        .route("/hooks/github/{app}", post(github))
        .route("/hooks/gitlab/{app}", post(gitlab))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_HOOK_BODY))
        .with_state(ctx)
}

/// The API's routes for git settings (behind the bearer token).
pub(crate) fn api(router: OpenApiRouter<Shared>) -> OpenApiRouter<Shared> {
    router
        .routes(routes!(show_webhook, rotate_webhook))
        .routes(routes!(deliveries))
        .routes(routes!(update_app))
        .routes(routes!(fork_pulls))
        .routes(routes!(approve_pull))
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// A delivery id as the host sends it: bounded, printable, no separators we use.
fn delivery_id(headers: &HeaderMap, name: &str) -> Result<String, ApiError> {
    let id = header(headers, name).ok_or_else(|| ApiError::bad_request(format!("the `{name}` header is missing")))?;
    if id.is_empty() || id.len() > 100 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(ApiError::bad_request(format!("the `{name}` header is not a delivery id")));
    }
    Ok(id.to_owned())
}

/// The application's webhook secret, in clear.
async fn secret(ctx: &Shared, app: &str) -> Result<String, ApiError> {
    let git = crate::plane::control(ctx, offshoot_control::Actor::token()).app_git(app).await?;
    Ok(ctx.key.decrypt(&git.webhook_secret, &offshoot_control::apps::webhook_secret_context(app))?)
}

/// Checks a webhook against the application's secret with `verify` (401 when it does not
/// match); returns the event header. Named: the host, its event header, its signature header.
async fn authenticate(
    ctx: &Shared,
    app: &str,
    headers: &HeaderMap,
    (host, event_header, signature_header): (&str, &str, &str),
    verify: impl FnOnce(&str) -> bool,
) -> Result<String, ApiError> {
    crate::plane::find_app(ctx, app).await?;
    let secret = secret(ctx, app).await?;
    if !verify(&secret) {
        tracing::warn!(%app, %host, "webhook with a missing or wrong signature refused");
        return Err(unauthorized(&format!("missing or wrong `{signature_header}`")));
    }
    header(headers, &event_header.to_ascii_lowercase())
        .map(str::to_owned)
        .ok_or_else(|| ApiError::bad_request(format!("the `{event_header}` header is missing")))
}

async fn github(
    State(ctx): State<Shared>,
    Path(app): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<api::HookAnswer>), ApiError> {
    let event = authenticate(&ctx, &app, &headers, ("GitHub", "X-GitHub-Event", "X-Hub-Signature-256"), |secret| {
        hooks::verify_github(secret.as_bytes(), &body, header(&headers, "x-hub-signature-256"))
    })
    .await?;
    let id = delivery_id(&headers, "x-github-delivery")?;
    let parsed = hooks::parse_github(&event, &body).map_err(|e| ApiError::bad_request(e.to_string()))?;
    accept(&ctx, &app, format!("github:{id}"), parsed).await
}

async fn gitlab(
    State(ctx): State<Shared>,
    Path(app): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<api::HookAnswer>), ApiError> {
    let event = authenticate(&ctx, &app, &headers, ("GitLab", "X-Gitlab-Event", "X-Gitlab-Token"), |secret| {
        hooks::verify_gitlab(secret, header(&headers, "x-gitlab-token"))
    })
    .await?;
    // Older GitLab versions send no UUID: the body's digest then identifies the delivery.
    let id = match delivery_id(&headers, "x-gitlab-event-uuid") {
        Ok(id) => id,
        Err(_) => crate::crypto::hex(&<sha2::Sha256 as sha2::Digest>::digest(&body)[..16]),
    };
    let parsed = hooks::parse_gitlab(&event, &body).map_err(|e| ApiError::bad_request(e.to_string()))?;
    accept(&ctx, &app, format!("gitlab:{id}"), parsed).await
}

async fn accept(ctx: &Shared, app: &str, id: String, parsed: Parsed) -> Result<(StatusCode, Json<api::HookAnswer>), ApiError> {
    let event = match parsed {
        Parsed::Event(e) => e,
        Parsed::Ignored(reason) => {
            return Ok((StatusCode::OK, Json(api::HookAnswer { status: "ignored".into(), delivery: Some(id), reason: Some(reason) })));
        }
    };
    if !crate::events::record(ctx, &id, app, &event).await? {
        return Ok((
            StatusCode::OK,
            Json(api::HookAnswer {
                status: "duplicate".into(),
                delivery: Some(id),
                reason: Some("this delivery was received before".into()),
            }),
        ));
    }
    crate::events::spawn(ctx, id.clone());
    Ok((StatusCode::ACCEPTED, Json(api::HookAnswer { status: "accepted".into(), delivery: Some(id), reason: None })))
}

fn webhook_dto(ctx: &Shared, app: &str, secret: String) -> api::Webhook {
    let base = ctx.public_url.trim_end_matches('/');
    api::Webhook { url: format!("{base}/hooks/github/{app}"), secret, gitlab_url: format!("{base}/hooks/gitlab/{app}") }
}

#[utoipa::path(get, path = "/apps/{name}/webhook", tag = "apps", params(("name" = String, Path, min_length = 1, description = "The application's name")), responses((status = 200, description = "Where to point its webhooks, and their secret", body = api::Webhook)))]
async fn show_webhook(State(ctx): State<Shared>, Path(name): Path<String>) -> Result<Json<api::Webhook>, ApiError> {
    crate::plane::find_app(&ctx, &name).await?;
    let secret = secret(&ctx, &name).await?;
    Ok(Json(webhook_dto(&ctx, &name, secret)))
}

/// A new secret: webhooks signed with the old one are refused from now on.
#[utoipa::path(post, path = "/apps/{name}/webhook", tag = "apps", params(("name" = String, Path, min_length = 1, description = "The application's name")), responses((status = 200, description = "A new secret", body = api::Webhook)))]
async fn rotate_webhook(
    State(ctx): State<Shared>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
) -> Result<Json<api::Webhook>, ApiError> {
    let secret = crate::plane::control(&ctx, actor).rotate_webhook(&name).await?;
    Ok(Json(webhook_dto(&ctx, &name, secret)))
}

#[utoipa::path(post, path = "/apps/{name}/settings", tag = "apps", params(("name" = String, Path, min_length = 1, description = "The application's name")), request_body = api::AppUpdate, responses((status = 200, description = "Its settings", body = api::App)))]
async fn update_app(
    State(ctx): State<Shared>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
    Body(body): Body<api::AppUpdate>,
) -> Result<Json<api::App>, ApiError> {
    crate::plane::control(&ctx, actor).update_settings(&name, &body).await?;
    if body.access.is_some() {
        ctx.refresh_routes().await;
    }
    let app = crate::plane::find_app(&ctx, &name).await?;
    Ok(Json(crate::views::app_dto(&ctx, app).await?))
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct DeliveriesQuery {
    limit: Option<i64>,
}

#[utoipa::path(get, path = "/apps/{name}/deliveries", tag = "apps", params(("name" = String, Path, min_length = 1, description = "The application's name"), DeliveriesQuery), responses((status = 200, description = "Its webhook deliveries, newest first", body = Vec<api::Delivery>)))]
async fn deliveries(
    State(ctx): State<Shared>,
    Path(name): Path<String>,
    Params(q): Params<DeliveriesQuery>,
) -> Result<Json<Vec<api::Delivery>>, ApiError> {
    crate::plane::find_app(&ctx, &name).await?;
    let list = ctx.store.deliveries(&name, q.limit.unwrap_or(50).clamp(1, 1000)).await?;
    Ok(Json(
        list.into_iter()
            .map(|d| api::Delivery {
                id: d.id,
                event: serde_json::from_str(&d.event).unwrap_or_default(),
                status: d.status,
                result: d.result,
                received_at: d.received_at,
                finished_at: d.finished_at,
            })
            .collect(),
    ))
}

/// The pull requests from forks: those waiting for approval, and those approved.
#[utoipa::path(get, path = "/apps/{name}/pulls", tag = "apps", params(("name" = String, Path, min_length = 1, description = "The application's name")), responses((status = 200, description = "Its forks' pull requests, by number", body = Vec<api::ForkPull>)))]
async fn fork_pulls(
    State(ctx): State<Shared>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
) -> Result<Json<Vec<api::ForkPull>>, ApiError> {
    let held = crate::plane::control(&ctx, actor).fork_pulls(&name).await?;
    Ok(Json(
        held.into_iter()
            .map(|h| api::ForkPull {
                status: if h.approved() { "approved" } else { "waiting" }.into(),
                number: h.pull_request.number,
                provider: h.pull_request.provider.as_str().into(),
                fork: h.pull_request.fork.clone().unwrap_or_default(),
                head_commit: h.pull_request.head_commit.clone(),
                url: h.pull_request.url.clone(),
                approved_commit: h.record.approved_commit,
                approved_by: h.record.approved_by,
                approved_at: h.record.approved_at,
                env_id: h.env.map(|e| e.id.to_string()),
            })
            .collect(),
    ))
}

/// Approves the head commit of a fork's pull request (the developer role) and deploys it:
/// its environment is made, or moved to that commit. New commits wait for another approval.
#[utoipa::path(
    post,
    path = "/apps/{name}/pulls/{number}/approve",
    tag = "apps",
    params(("name" = String, Path, min_length = 1, description = "The application's name"), ("number" = u64, Path, description = "The pull request's number")),
    responses((status = 200, description = "Approved; what it did", body = api::Approval))
)]
async fn approve_pull(
    State(ctx): State<Shared>,
    Extension(actor): Extension<Actor>,
    Path((name, number)): Path<(String, String)>,
) -> Result<Json<api::Approval>, ApiError> {
    let number = number.parse::<u64>().map_err(|_| ApiError::bad_request(format!("`{number}` is not a pull request's number")))?;
    let result = crate::plane::control(&ctx, actor).approve_pull_request(&name, number).await?;
    Ok(Json(api::Approval { result }))
}
