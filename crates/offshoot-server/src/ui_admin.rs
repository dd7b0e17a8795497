//! The dashboard's pages for what admins do besides applications: Instant Datasets (made,
//! refreshed, deleted) and users (made, given a role, disabled). Each form acts as the session's
//! user through the same use cases as the API, so it is refused what the API refuses.

use crate::error::ApiError;
use crate::plane::control;
use crate::state::Shared;
use crate::ui::{CsrfForm, Session, ago, csrf_field, csrf_ok, error_box, forbidden, page, state_badge};
use axum::Router;
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Json};
use maud::html;
use serde::Deserialize;

pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/ui/datasets", get(datasets).post(create_dataset))
        .route("/ui/datasets/{name}/refresh", post(refresh_dataset))
        .route("/ui/datasets/{name}/delete", post(delete_dataset))
        .route("/ui/users", get(users).post(create_user))
        .route("/ui/users/{email}/role", post(set_role))
        .route("/ui/users/{email}/disable", post(disable_user))
}

/// After a dataset form: back to the page, or the page with why it was refused.
async fn back_to_datasets<T>(ctx: &Shared, s: &Session, done: Result<T, offshoot_control::ControlError>) -> Response {
    match done {
        Ok(_) => Redirect::to("/ui/datasets").into_response(),
        Err(e) => render_datasets(ctx, s, Some(e.into())).await,
    }
}

/// After a user form: back to the page, or the page with why it was refused.
async fn back_to_users<T>(ctx: &Shared, s: &Session, done: Result<T, offshoot_control::ControlError>) -> Response {
    match done {
        Ok(_) => Redirect::to("/ui/users").into_response(),
        Err(e) => render_users(ctx, s, Some(e.into())).await,
    }
}

async fn datasets(State(ctx): State<Shared>, Extension(s): Extension<Session>) -> Response {
    render_datasets(&ctx, &s, None).await
}

async fn render_datasets(ctx: &Shared, s: &Session, error: Option<ApiError>) -> Response {
    let list = match crate::datasets::list(State(ctx.clone())).await {
        Ok(Json(l)) => l,
        Err(e) => return (e.status, page("Datasets", Some(s), error_box(&e))).into_response(),
    };
    let status = if error.is_some() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    let body = html! {
        @if let Some(e) = &error { (error_box(e)) }
        @if list.is_empty() { p { "No dataset." } } @else {
            div.scroll tabindex="0" role="region" aria-label="Scrollable table" { table {
                thead { tr { th scope="col" { "Dataset" } th scope="col" { "Engine" } th scope="col" { "State" } th scope="col" { "Pool (ready / leased / filling)" } th scope="col" { "Snapshot" } th scope="col" { "Leases" } th scope="col" { "Actions" } } }
                tbody { @for d in &list { tr {
                    td { (d.name) }
                    td { (d.engine) }
                    td { (state_badge(&d.state)) @if let Some(e) = &d.error { " " span.muted { (e) } } }
                    td { (d.pool.ready) " / " (d.pool.leased) " / " (d.pool.filling) }
                    td { @if let Some(sn) = &d.snapshot { "generation " (sn.generation) ", " (sn.bytes / 1_000_000) " MB" } }
                    td { @for l in &d.leases { a href={ "/ui/envs/" (l.env_id) } { (l.env_id) } @if l.expired { " (expired)" } " " } }
                    td {
                        form.inline method="post" action={ "/ui/datasets/" (d.name) "/refresh" } {
                            (csrf_field(s)) button.link type="submit" aria-label={ "Refresh " (d.name) } { "Refresh" }
                        }
                        " "
                        form.inline method="post" action={ "/ui/datasets/" (d.name) "/delete" } {
                            (csrf_field(s)) button.link type="submit" aria-label={ "Delete " (d.name) } { "Delete" }
                        }
                    }
                } } }
            } }
        }
        form.card method="post" action="/ui/datasets" {
            h2 { "New dataset" }
            (csrf_field(s))
            label for="ds_name" { "Name" }
            input #ds_name name="name" required;
            label for="ds_source" { "Source database (" code { "postgres://user:pass@host:5432/db" } " or " code { "mysql://..." } ")" }
            input #ds_source name="source" type="password" autocomplete="off" required;
            label for="ds_pool" { "Pool size" }
            input #ds_pool name="pool_size" type="number" min="1" max="50" value="2";
            label for="ds_refresh" { "Refresh schedule (five cron fields, UTC; empty: never)" }
            input #ds_refresh name="refresh";
            button type="submit" { "Create dataset" }
        }
    };
    (status, page("Datasets", Some(s), body)).into_response()
}

#[derive(Deserialize)]
struct DatasetForm {
    csrf: String,
    name: String,
    source: String,
    pool_size: Option<String>,
    refresh: Option<String>,
}

async fn create_dataset(State(ctx): State<Shared>, Extension(s): Extension<Session>, Form(f): Form<DatasetForm>) -> Response {
    if !csrf_ok(&s, &f.csrf) {
        return forbidden();
    }
    let req = offshoot_api_types::CreateDataset {
        name: f.name.trim().to_owned(),
        source: f.source.trim().to_owned(),
        target: None,
        pool_size: f.pool_size.as_deref().and_then(|p| p.trim().parse().ok()),
        refresh: f.refresh.map(|r| r.trim().to_owned()).filter(|r| !r.is_empty()),
        ttl: None,
    };
    back_to_datasets(&ctx, &s, control(&ctx, s.1.clone()).create_dataset(&req).await).await
}

async fn refresh_dataset(
    State(ctx): State<Shared>,
    Extension(s): Extension<Session>,
    Path(name): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    if !csrf_ok(&s, &f.csrf) {
        return forbidden();
    }
    back_to_datasets(&ctx, &s, control(&ctx, s.1.clone()).refresh_dataset(&name).await).await
}

async fn delete_dataset(
    State(ctx): State<Shared>,
    Extension(s): Extension<Session>,
    Path(name): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    if !csrf_ok(&s, &f.csrf) {
        return forbidden();
    }
    back_to_datasets(&ctx, &s, control(&ctx, s.1.clone()).delete_dataset(&name, false).await).await
}

const ROLES: [&str; 3] = ["viewer", "developer", "admin"];

async fn users(State(ctx): State<Shared>, Extension(s): Extension<Session>) -> Response {
    render_users(&ctx, &s, None).await
}

async fn render_users(ctx: &Shared, s: &Session, error: Option<ApiError>) -> Response {
    let list = match control(ctx, s.1.clone()).users().await {
        Ok(l) => l,
        Err(e) => {
            // The refusal of what was asked comes first (a form's), else the list's.
            let e = error.unwrap_or_else(|| ApiError::from(e));
            return (e.status, page("Users", Some(s), error_box(&e))).into_response();
        }
    };
    let status = if error.is_some() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    let body = html! {
        @if let Some(e) = &error { (error_box(e)) }
        div.scroll tabindex="0" role="region" aria-label="Scrollable table" { table {
            thead { tr { th scope="col" { "User" } th scope="col" { "Role" } th scope="col" { "Since" } th scope="col" { "Actions" } } }
            tbody { @for u in &list { tr {
                td { (u.email) @if u.disabled != 0 { " " span.muted { "(disabled)" } } }
                td {
                    form.inline method="post" action={ "/ui/users/" (u.email) "/role" } {
                        (csrf_field(s))
                        label.skip for={ "role-" (u.email) } { "Role of " (u.email) }
                        select id={ "role-" (u.email) } name="role" {
                            @for r in ROLES { option value=(r) selected[u.role == r] { (r) } }
                        }
                        " " button.link type="submit" { "Set" }
                    }
                }
                td { (ago(u.created_at)) }
                td { @if u.disabled == 0 && u.email != offshoot_store::ADMIN_USER {
                    form.inline method="post" action={ "/ui/users/" (u.email) "/disable" } {
                        (csrf_field(s)) button.link type="submit" aria-label={ "Disable " (u.email) } { "Disable" }
                    }
                } }
            } } }
        } }
        form.card method="post" action="/ui/users" {
            h2 { "New user" }
            (csrf_field(s))
            label for="user_email" { "E-mail" }
            input #user_email name="email" type="email" required;
            label for="user_role" { "Role" }
            select #user_role name="role" { @for r in ROLES { option value=(r) { (r) } } }
            button type="submit" { "Add user" }
            p.muted { "Then make the user a token: " code { "offshoot token create --user EMAIL" } "." }
        }
    };
    (status, page("Users", Some(s), body)).into_response()
}

#[derive(Deserialize)]
struct UserForm {
    csrf: String,
    email: String,
    role: String,
}

async fn create_user(State(ctx): State<Shared>, Extension(s): Extension<Session>, Form(f): Form<UserForm>) -> Response {
    if !csrf_ok(&s, &f.csrf) {
        return forbidden();
    }
    back_to_users(&ctx, &s, control(&ctx, s.1.clone()).create_user(f.email.trim(), &f.role).await).await
}

#[derive(Deserialize)]
struct RoleForm {
    csrf: String,
    role: String,
}

async fn set_role(
    State(ctx): State<Shared>,
    Extension(s): Extension<Session>,
    Path(email): Path<String>,
    Form(f): Form<RoleForm>,
) -> Response {
    if !csrf_ok(&s, &f.csrf) {
        return forbidden();
    }
    back_to_users(&ctx, &s, control(&ctx, s.1.clone()).set_user_role(&email, &f.role).await).await
}

async fn disable_user(
    State(ctx): State<Shared>,
    Extension(s): Extension<Session>,
    Path(email): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    if !csrf_ok(&s, &f.csrf) {
        return forbidden();
    }
    back_to_users(&ctx, &s, control(&ctx, s.1.clone()).disable_user(&email).await).await
}
