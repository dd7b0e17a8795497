//! Users, tokens and grants over HTTP, and who a request is: a bearer token, or a dashboard
//! session, becomes its user's [`Actor`] (its role, its grants, the token used, the address
//! the request came from). The rules live in `offshoot_control::users`.

use crate::error::{ApiError, Body, Params};
use crate::plane::control;
use crate::state::Shared;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use offshoot_api_types as api;
use offshoot_control::{Actor, Role};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The actor of a user: its role and grants (`None` when disabled or unknown). A store that
/// cannot answer is an error, never an unknown user: a request is not told its valid token is
/// wrong because the database was busy.
pub(crate) async fn actor_of_user(ctx: &Shared, email: &str) -> Result<Option<Actor>, offshoot_store::StoreError> {
    let Some(user) = ctx.store.user(email).await?.filter(|u| u.disabled == 0) else { return Ok(None) };
    let Some(role) = Role::parse(&user.role) else { return Ok(None) };
    let grants = ctx.store.grants(email).await?.into_iter().filter_map(|(app, r)| Role::parse(&r).map(|r| (app, r))).collect();
    Ok(Some(Actor::user(email, role).with_grants(grants)))
}

/// The actor of a bearer token, if it is valid (known, not expired, its user enabled).
pub(crate) async fn actor_of_token(ctx: &Shared, token: &str) -> Result<Option<Actor>, offshoot_store::StoreError> {
    if token.is_empty() || token.len() > 200 {
        return Ok(None);
    }
    let Some((t, u)) = ctx.store.token_user(&crate::crypto::hash_token(token)).await? else { return Ok(None) };
    Ok(actor_of_user(ctx, &u.email).await?.map(|a| a.with_token(&t.id)))
}

pub(crate) fn api(router: OpenApiRouter<Shared>) -> OpenApiRouter<Shared> {
    router
        .routes(routes!(users, create_user))
        .routes(routes!(set_user))
        .routes(routes!(disable_user))
        .routes(routes!(tokens, create_token))
        .routes(routes!(revoke_token))
        .routes(routes!(grant))
        .routes(routes!(whoami))
        .routes(routes!(bypass_token))
}

async fn user_dto(ctx: &Shared, u: offshoot_store::User) -> Result<api::User, ApiError> {
    let grants = ctx.store.grants(&u.email).await?.into_iter().map(|(app, role)| api::Grant { app, role }).collect();
    Ok(api::User { email: u.email, role: u.role, disabled: u.disabled != 0, created_at: u.created_at, grants })
}

#[utoipa::path(get, path = "/users", tag = "accounts", responses((status = 200, description = "The users", body = Vec<api::User>)))]
async fn users(State(ctx): State<Shared>, Extension(actor): Extension<Actor>) -> Result<Json<Vec<api::User>>, ApiError> {
    let mut out = Vec::new();
    for u in control(&ctx, actor).users().await? {
        out.push(user_dto(&ctx, u).await?);
    }
    Ok(Json(out))
}

#[utoipa::path(post, path = "/users", tag = "accounts", request_body = api::UserCreate, responses((status = 201, description = "Created", body = api::User)))]
async fn create_user(
    State(ctx): State<Shared>,
    Extension(actor): Extension<Actor>,
    Body(body): Body<api::UserCreate>,
) -> Result<(StatusCode, Json<api::User>), ApiError> {
    let u = control(&ctx, actor).create_user(&body.email, &body.role).await?;
    Ok((StatusCode::CREATED, Json(user_dto(&ctx, u).await?)))
}

#[utoipa::path(post, path = "/users/{email}", tag = "accounts", params(("email" = String, Path, min_length = 1, description = "The user's e-mail")), request_body = api::UserUpdate, responses((status = 200, description = "Its new role", body = api::User)))]
async fn set_user(
    State(ctx): State<Shared>,
    Extension(actor): Extension<Actor>,
    Path(email): Path<String>,
    Body(body): Body<api::UserUpdate>,
) -> Result<Json<api::User>, ApiError> {
    let u = control(&ctx, actor).set_user_role(&email, &body.role).await?;
    Ok(Json(user_dto(&ctx, u).await?))
}

#[utoipa::path(post, path = "/users/{email}/disable", tag = "accounts", params(("email" = String, Path, min_length = 1, description = "The user's e-mail")), responses((status = 204, description = "Disabled")))]
async fn disable_user(
    State(ctx): State<Shared>,
    Extension(actor): Extension<Actor>,
    Path(email): Path<String>,
) -> Result<StatusCode, ApiError> {
    control(&ctx, actor).disable_user(&email).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct TokensQuery {
    user: Option<String>,
}

#[utoipa::path(get, path = "/tokens", tag = "accounts", params(TokensQuery), responses((status = 200, description = "The tokens, never their values", body = Vec<api::Token>)))]
async fn tokens(
    State(ctx): State<Shared>,
    Extension(actor): Extension<Actor>,
    Params(q): Params<TokensQuery>,
) -> Result<Json<Vec<api::Token>>, ApiError> {
    let list = control(&ctx, actor).tokens(q.user.as_deref()).await?;
    Ok(Json(
        list.into_iter()
            .map(|t| api::Token { id: t.id, name: t.name, user: t.user_email, created_at: t.created_at, expires_at: t.expires_at })
            .collect(),
    ))
}

#[utoipa::path(post, path = "/tokens", tag = "accounts", request_body = api::TokenCreate, responses((status = 201, description = "Made; its value is shown this once", body = api::TokenCreated)))]
async fn create_token(
    State(ctx): State<Shared>,
    Extension(actor): Extension<Actor>,
    Body(body): Body<api::TokenCreate>,
) -> Result<(StatusCode, Json<api::TokenCreated>), ApiError> {
    let t = control(&ctx, actor).create_token(body.user.as_deref(), body.name.as_deref(), body.expires.as_deref()).await?;
    Ok((StatusCode::CREATED, Json(api::TokenCreated { token: t.token, id: t.row.id, expires_at: t.row.expires_at })))
}

#[utoipa::path(delete, path = "/tokens/{id}", tag = "accounts", params(("id" = String, Path, min_length = 1, description = "The token's id")), responses((status = 204, description = "Revoked")))]
async fn revoke_token(
    State(ctx): State<Shared>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    control(&ctx, actor).revoke_token(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/apps/{name}/grants", tag = "accounts", params(("name" = String, Path, min_length = 1, description = "The application's name")), request_body = api::GrantSet, responses((status = 204, description = "Granted")))]
async fn grant(
    State(ctx): State<Shared>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
    Body(body): Body<api::GrantSet>,
) -> Result<StatusCode, ApiError> {
    control(&ctx, actor).grant(&name, &body.email, &body.role).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct RotateQuery {
    #[serde(default)]
    rotate: bool,
}

/// An application's previews' bypass token (made on first ask, new with `?rotate=true`).
#[utoipa::path(post, path = "/apps/{name}/bypass-token", tag = "accounts", params(("name" = String, Path, min_length = 1, description = "The application's name"), RotateQuery), responses((status = 200, description = "The token", body = api::BypassToken)))]
async fn bypass_token(
    State(ctx): State<Shared>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
    Params(q): Params<RotateQuery>,
) -> Result<Json<api::BypassToken>, ApiError> {
    let token = control(&ctx, actor).bypass_token(&name, q.rotate).await?;
    ctx.refresh_routes().await;
    Ok(Json(api::BypassToken { token }))
}

/// Who the caller is.
#[utoipa::path(get, path = "/whoami", tag = "accounts", responses((status = 200, description = "The caller", body = api::User)))]
async fn whoami(State(ctx): State<Shared>, Extension(actor): Extension<Actor>) -> Result<Json<api::User>, ApiError> {
    match ctx.store.user(&actor.name).await? {
        Some(u) => Ok(Json(user_dto(&ctx, u).await?)),
        None => Err(ApiError::new(StatusCode::NOT_FOUND, "not-found", "the caller is not a user")),
    }
}
