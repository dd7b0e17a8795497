//! Users, tokens and grants over HTTP, and who a request is: a bearer token, or a dashboard
//! session, becomes its user's [`Actor`] (its role, its grants, the token used, the address
//! the request came from). The rules live in `offshoot_control::users`.

use crate::error::ApiError;
use crate::plane::control;
use crate::state::Shared;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use offshoot_api_types as api;
use offshoot_control::{Actor, Role};
use serde::Deserialize;

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

pub(crate) fn api(router: Router<Shared>) -> Router<Shared> {
    router
        .route("/users", get(users).post(create_user))
        .route("/users/{email}", post(set_user))
        .route("/users/{email}/disable", post(disable_user))
        .route("/tokens", get(tokens).post(create_token))
        .route("/tokens/{id}", delete(revoke_token))
        .route("/apps/{name}/grants", post(grant))
        .route("/whoami", get(whoami))
        .route("/apps/{name}/bypass-token", post(bypass_token))
}

async fn user_dto(ctx: &Shared, u: offshoot_store::User) -> Result<api::User, ApiError> {
    let grants = ctx.store.grants(&u.email).await?.into_iter().map(|(app, role)| api::Grant { app, role }).collect();
    Ok(api::User { email: u.email, role: u.role, disabled: u.disabled != 0, created_at: u.created_at, grants })
}

async fn users(State(ctx): State<Shared>, Extension(actor): Extension<Actor>) -> Result<Json<Vec<api::User>>, ApiError> {
    let mut out = Vec::new();
    for u in control(&ctx, actor).users().await? {
        out.push(user_dto(&ctx, u).await?);
    }
    Ok(Json(out))
}

async fn create_user(
    State(ctx): State<Shared>,
    Extension(actor): Extension<Actor>,
    Json(body): Json<api::UserCreate>,
) -> Result<(StatusCode, Json<api::User>), ApiError> {
    let u = control(&ctx, actor).create_user(&body.email, &body.role).await?;
    Ok((StatusCode::CREATED, Json(user_dto(&ctx, u).await?)))
}

async fn set_user(
    State(ctx): State<Shared>,
    Extension(actor): Extension<Actor>,
    Path(email): Path<String>,
    Json(body): Json<api::UserUpdate>,
) -> Result<Json<api::User>, ApiError> {
    let u = control(&ctx, actor).set_user_role(&email, &body.role).await?;
    Ok(Json(user_dto(&ctx, u).await?))
}

async fn disable_user(
    State(ctx): State<Shared>,
    Extension(actor): Extension<Actor>,
    Path(email): Path<String>,
) -> Result<StatusCode, ApiError> {
    control(&ctx, actor).disable_user(&email).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct TokensQuery {
    user: Option<String>,
}

async fn tokens(
    State(ctx): State<Shared>,
    Extension(actor): Extension<Actor>,
    Query(q): Query<TokensQuery>,
) -> Result<Json<Vec<api::Token>>, ApiError> {
    let list = control(&ctx, actor).tokens(q.user.as_deref()).await?;
    Ok(Json(
        list.into_iter()
            .map(|t| api::Token { id: t.id, name: t.name, user: t.user_email, created_at: t.created_at, expires_at: t.expires_at })
            .collect(),
    ))
}

async fn create_token(
    State(ctx): State<Shared>,
    Extension(actor): Extension<Actor>,
    Json(body): Json<api::TokenCreate>,
) -> Result<(StatusCode, Json<api::TokenCreated>), ApiError> {
    let t = control(&ctx, actor).create_token(body.user.as_deref(), body.name.as_deref(), body.expires.as_deref()).await?;
    Ok((StatusCode::CREATED, Json(api::TokenCreated { token: t.token, id: t.row.id, expires_at: t.row.expires_at })))
}

async fn revoke_token(
    State(ctx): State<Shared>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    control(&ctx, actor).revoke_token(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn grant(
    State(ctx): State<Shared>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
    Json(body): Json<api::GrantSet>,
) -> Result<StatusCode, ApiError> {
    control(&ctx, actor).grant(&name, &body.email, &body.role).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct RotateQuery {
    #[serde(default)]
    rotate: bool,
}

/// An application's previews' bypass token (made on first ask, new with `?rotate=true`).
async fn bypass_token(
    State(ctx): State<Shared>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
    Query(q): Query<RotateQuery>,
) -> Result<Json<api::BypassToken>, ApiError> {
    let token = control(&ctx, actor).bypass_token(&name, q.rotate).await?;
    ctx.refresh_routes().await;
    Ok(Json(api::BypassToken { token }))
}

/// Who the caller is.
async fn whoami(State(ctx): State<Shared>, Extension(actor): Extension<Actor>) -> Result<Json<api::User>, ApiError> {
    match ctx.store.user(&actor.name).await? {
        Some(u) => Ok(Json(user_dto(&ctx, u).await?)),
        None => Err(ApiError::new(StatusCode::NOT_FOUND, "not-found", "the caller is not a user")),
    }
}
