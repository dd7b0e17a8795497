//! Single sign-on for the dashboard, over HTTP: `/ui/sso/login` sends the browser to the
//! identity provider, with the sign-in's state, nonce and PKCE verifier in a short-lived cookie
//! sealed with the server's key (so only the browser that started a sign-in can finish it);
//! `/ui/sso/callback` has `oidc` prove who came back, hands that to the policy in
//! `offshoot_control::sso` (which finds, makes or refuses the user, and records it), and starts
//! the dashboard's usual session. Signing out (`ui`) also ends the provider's session.

use crate::crypto::SecretKey;
use crate::error::ApiError;
use crate::oidc::{FLOW_SECS, Flow, Sso};
use crate::state::Shared;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use maud::html;
use offshoot_control::Actor;
use serde::Deserialize;

/// The sign-in in flight, in its sealed cookie.
const FLOW_COOKIE: &str = "offshoot_sso";

pub(crate) fn routes() -> Router<Shared> {
    Router::new().route("/ui/sso/login", get(login)).route("/ui/sso/callback", get(callback))
}

#[derive(Deserialize)]
struct LoginQuery {
    next: Option<String>,
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

/// A sign-in page that says what went wrong, with a way back.
fn refusal(status: StatusCode, message: &str, hint: Option<&str>) -> Response {
    let body = html! {
        div.card role="alert" {
            p.error { (message) }
            @if let Some(h) = hint { p { (capitalised(h)) } }
            p { a href="/ui/login" { "Back to sign-in" } }
        }
    };
    (status, crate::ui::page("Sign-in refused", None, body)).into_response()
}

/// The page for a server without single sign-on.
fn not_set_up() -> Response {
    refusal(StatusCode::NOT_FOUND, "Single sign-on is not set up on this server.", None)
}

async fn login(State(ctx): State<Shared>, Query(q): Query<LoginQuery>) -> Response {
    let Some(sso) = ctx.sso.as_deref() else { return not_set_up() };
    let next = crate::ui::local_next(q.next);
    let (url, flow) = match sso.begin(&next).await {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(error = %e, "single sign-on: cannot start a sign-in");
            return refusal(StatusCode::BAD_GATEWAY, &e, Some("try again in a moment, or sign in with an API token"));
        }
    };
    let sealed = match seal(&ctx.key, &flow) {
        Ok(s) => s,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let secure = if sso.secure { "; Secure" } else { "" };
    let cookie = format!("{FLOW_COOKIE}={sealed}; Path=/ui/sso; HttpOnly; SameSite=Lax; Max-Age={FLOW_SECS}{secure}");
    let mut r = Redirect::to(url.as_str()).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

fn seal(key: &SecretKey, flow: &Flow) -> anyhow::Result<String> {
    key.encrypt(&serde_json::to_string(flow)?, "sso-flow")
}

/// The flow this browser started, if its cookie is there, sealed by this server, and fresh.
fn flow_of(key: &SecretKey, headers: &HeaderMap) -> Option<Flow> {
    let sealed = crate::ui::cookie_of(headers, FLOW_COOKIE, |v| v.len() < 4096)?;
    let flow: Flow = serde_json::from_str(&key.decrypt(&sealed, "sso-flow").ok()?).ok()?;
    (flow.expires > offshoot_store::now_ms() / 1000).then_some(flow)
}

#[derive(Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

async fn callback(State(ctx): State<Shared>, Query(q): Query<CallbackQuery>, req: axum::extract::Request) -> Response {
    let Some(sso) = ctx.sso.as_deref() else { return not_set_up() };
    let address = req.extensions().get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip().to_string());
    let mut r = callback_outcome(&ctx, sso, address, req.headers(), q).await;
    // The flow is over, however it ended.
    r.headers_mut().append(header::SET_COOKIE, HeaderValue::from_static("offshoot_sso=; Path=/ui/sso; HttpOnly; SameSite=Lax; Max-Age=0"));
    r
}

async fn callback_outcome(ctx: &Shared, sso: &Sso, address: Option<String>, headers: &HeaderMap, q: CallbackQuery) -> Response {
    if let Some(error) = q.error {
        let text = q.error_description.unwrap_or(error);
        let message = format!("The identity provider did not sign you in: {}", text.chars().take(300).collect::<String>());
        return refusal(StatusCode::UNAUTHORIZED, &message, None);
    }
    let Some(flow) = flow_of(&ctx.key, headers) else {
        return refusal(
            StatusCode::BAD_REQUEST,
            "This sign-in did not start in this browser, or took longer than ten minutes.",
            Some("start again from the sign-in page"),
        );
    };
    let (Some(code), Some(state)) = (q.code, q.state) else {
        return refusal(StatusCode::BAD_REQUEST, "The identity provider's answer has no code.", None);
    };
    if !bool::from(subtle::ConstantTimeEq::ct_eq(state.as_bytes(), flow.state.as_bytes())) {
        return refusal(StatusCode::BAD_REQUEST, "This sign-in's state does not match the one this browser started.", None);
    }
    let next = flow.next.clone();
    let who = match sso.finish(&code, flow).await {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "single sign-on: a sign-in failed");
            return refusal(StatusCode::UNAUTHORIZED, &e, Some("start again from the sign-in page"));
        }
    };
    let control = crate::plane::control(ctx, Actor::sso().from_address(address));
    match control.sso_sign_in(&who, &sso.policy).await {
        Ok(user) => {
            tracing::info!(user = %user.email, role = %user.role, "single sign-on: signed in");
            crate::ui::start_session(ctx, &user.email, true, &next).await
        }
        Err(e) => {
            let e = ApiError::from(e);
            refusal(if e.status.is_server_error() { e.status } else { StatusCode::FORBIDDEN }, &e.message, e.hint.as_deref())
        }
    }
}
