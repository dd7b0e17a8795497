//! The web dashboard, on the API's port under `/ui`: server-rendered pages (maud), a little
//! plain JavaScript for live updates over server-sent events, no build step. A browser logs in
//! with an API token; it then holds a random session id in an `HttpOnly`, `SameSite=Strict`
//! cookie (only the id's hash is stored), and every form carries a CSRF token derived from it.
//! Pages read the store and act through the same functions as the API, so what they show and
//! refuse is what the API would.

use crate::crypto::{hash_token, hex, random_bytes};
use crate::error::ApiError;
use crate::plane::control;
use crate::state::Shared;
use axum::extract::{Form, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use maud::{DOCTYPE, Markup, html};
use offshoot_api_types as dto;
use offshoot_control::Actor;
use offshoot_store::now_ms;
use serde::Deserialize;
use std::time::Duration;

const COOKIE: &str = "offshoot_session";
/// How long a session lasts.
const SESSION_MS: i64 = 12 * 3600 * 1000;

pub(crate) fn router(ctx: Shared) -> Router<Shared> {
    let private = Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/envs") }))
        .route("/ui/logout", post(logout))
        .route("/ui/apps", get(apps).post(create_app))
        .route("/ui/apps/{name}", get(app))
        .route("/ui/apps/{name}/config", post(save_config))
        .route("/ui/apps/{name}/secrets", post(set_secret))
        .route("/ui/apps/{name}/delete", post(delete_app))
        .route("/ui/envs", get(envs).post(create_env))
        .route("/ui/envs/{id}", get(env))
        .route("/ui/envs/{id}/deploy", post(deploy_env))
        .route("/ui/envs/{id}/delete", post(delete_env))
        .route("/ui/envs/{id}/sleep", post(sleep_env))
        .route("/ui/envs/{id}/wake", post(wake_env))
        .route("/ui/envs/{id}/extend", post(extend_env))
        .route("/ui/envs/{id}/events", get(env_events))
        .route("/ui/envs/{id}/logs/{service}", get(log_events))
        .route("/ui/datasets", get(datasets))
        .route("/ui/activity", get(activity))
        .route_layer(axum::middleware::from_fn_with_state(ctx, session));
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui") }))
        .route("/ui/login", get(login_page).post(login))
        .route(
            "/ui/app.css",
            get(|| async { ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], CSS) }),
        )
        .route(
            "/ui/app.js",
            get(|| async { ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], JS) }),
        )
        .merge(private)
        .layer(axum::middleware::map_response(hardened))
}

/// Pages load only this server's script and style, cannot be framed, and send no referrer
/// elsewhere.
async fn hardened(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    r
}

// Sessions -------------------------------------------------------------------------------------

fn session_of(headers: &HeaderMap) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|c| {
        let (k, v) = c.trim().split_once('=')?;
        (k == COOKIE && v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit())).then(|| v.to_owned())
    })
}

/// The CSRF token of a session: derived from its id, which only this browser and the server know.
fn csrf_of(session: &str) -> String {
    hash_token(&format!("csrf:{session}"))
}

/// The logged-in browser's session id, put in the request by the middleware.
#[derive(Clone)]
struct Session(String);

async fn session(State(ctx): State<Shared>, mut req: Request, next: Next) -> Response {
    let valid = match session_of(req.headers()) {
        Some(s) if ctx.store.session_valid(&hash_token(&s)).await.unwrap_or(false) => Some(s),
        _ => None,
    };
    let Some(s) = valid else {
        let back = req.uri().path().to_owned();
        return Redirect::to(&format!("/ui/login?next={}", urlencode(&back))).into_response();
    };
    // Each form handler checks the CSRF token its form carries against this session.
    req.extensions_mut().insert(Session(s));
    next.run(req).await
}

/// Whether a form's CSRF token is the session's.
fn csrf_ok(session: &Session, given: &str) -> bool {
    use subtle::ConstantTimeEq as _;
    bool::from(csrf_of(&session.0).as_bytes().ct_eq(given.as_bytes()))
}

fn forbidden() -> Response {
    let text = "The form is stale or did not come from this dashboard. Go back, reload, and try again.";
    (StatusCode::FORBIDDEN, page("Forbidden", None, html! { p { (text) } })).into_response()
}

/// Characters kept as they are in a path put in a query string.
const PATH_IN_QUERY: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'/');

fn urlencode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, PATH_IN_QUERY).to_string()
}

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
    error: Option<String>,
}

async fn login_page(Query(q): Query<NextQuery>) -> Markup {
    let next = q.next.filter(|n| n.starts_with("/ui")).unwrap_or_else(|| "/ui".into());
    page(
        "Log in",
        None,
        html! {
            form.card method="post" action="/ui/login" {
                @if q.error.is_some() { p.error role="alert" { "That token is not valid." } }
                p { "Paste an API token. The admin token is in the server's data directory, in " code { "admin-token" } "." }
                label for="token" { "API token" }
                input #token type="password" name="token" autocomplete="current-password" required autofocus;
                input type="hidden" name="next" value=(next);
                button type="submit" { "Log in" }
            }
        },
    )
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
    next: Option<String>,
}

async fn login(State(ctx): State<Shared>, Form(f): Form<LoginForm>) -> Response {
    let token = f.token.trim();
    let ok = !token.is_empty() && token.len() <= 200 && ctx.store.token_exists(&hash_token(token)).await.unwrap_or(false);
    if !ok {
        tracing::warn!("dashboard: a login with an invalid token");
        return Redirect::to("/ui/login?error=1").into_response();
    }
    let id = hex(&random_bytes::<32>());
    if let Err(e) = ctx.store.create_session(&hash_token(&id), now_ms() + SESSION_MS).await {
        return ApiError::from(e).into_response();
    }
    let next = f.next.filter(|n| n.starts_with("/ui") && !n.starts_with("//")).unwrap_or_else(|| "/ui".into());
    let cookie = format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}", SESSION_MS / 1000);
    let mut r = Redirect::to(&next).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn logout(State(ctx): State<Shared>, axum::Extension(s): axum::Extension<Session>, Form(f): Form<CsrfForm>) -> Response {
    if !csrf_ok(&s, &f.csrf) {
        return forbidden();
    }
    crate::state::logged("a sign-out", ctx.store.delete_session(&hash_token(&s.0)).await);
    let mut r = Redirect::to("/ui/login").into_response();
    r.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_static("offshoot_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"));
    r
}

// Layout ---------------------------------------------------------------------------------------

fn page(title: &str, session: Option<&Session>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Offshoot" }
                link rel="stylesheet" href="/ui/app.css";
                script src="/ui/app.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header {
                    nav aria-label="Main" {
                        a.brand href="/ui" { "Offshoot" }
                        @if let Some(s) = session {
                            a href="/ui/envs" { "Environments" }
                            a href="/ui/apps" { "Applications" }
                            a href="/ui/datasets" { "Datasets" }
                            a href="/ui/activity" { "Activity" }
                            form.inline method="post" action="/ui/logout" {
                                input type="hidden" name="csrf" value=(csrf_of(&s.0));
                                button.link type="submit" { "Log out" }
                            }
                        }
                    }
                }
                main #main { h1 { (title) } (body) }
            }
        }
    }
}

fn csrf_field(s: &Session) -> Markup {
    html! { input type="hidden" name="csrf" value=(csrf_of(&s.0)); }
}

fn error_box(e: &ApiError) -> Markup {
    error_with_sources(e, &[])
}

/// An error; its diagnostics each with the line of the file they point at, when the text is
/// at hand (`(file name suffix, text)`).
fn error_with_sources(e: &ApiError, sources: &[(&str, &str)]) -> Markup {
    html! {
        div.error role="alert" {
            p { (e.message) }
            @if let Some(h) = &e.hint { p { "Hint: " (h) } }
            @if !e.diagnostics.is_empty() {
                ul { @for d in &e.diagnostics {
                    @let file = d["file"].as_str().unwrap_or("");
                    @let line = d["line"].as_u64().unwrap_or(0);
                    @let column = d["column"].as_u64().unwrap_or(0);
                    li {
                        (file) ":" (line) ":" (column) " " strong { (d["severity"].as_str().unwrap_or("")) } ": " (d["message"].as_str().unwrap_or(""))
                        @if let Some(h) = d["hint"].as_str() { " (" (h) ")" }
                        @if let Some((_, text)) = sources.iter().find(|(suffix, _)| file.ends_with(suffix)) {
                            @if let Some(src) = text.lines().nth((line as usize).saturating_sub(1)).filter(|_| line > 0) {
                                pre.excerpt { (format!("{line:>4} | {src}\n     | {}^", " ".repeat((column as usize).saturating_sub(1)))) }
                            }
                        }
                    }
                } }
            }
        }
    }
}

fn state_badge(status: &str) -> Markup {
    let class = match status {
        "ready" | "succeeded" => "ok",
        "failed" => "bad",
        "deleted" | "sleeping" => "off",
        _ => "busy",
    };
    html! { span class={ "badge " (class) } { (status) } }
}

/// `3 min ago`, from milliseconds since the epoch.
fn ago(t: i64) -> String {
    let s = (now_ms() - t).max(0) / 1000;
    match s {
        0..60 => format!("{s} s ago"),
        60..3600 => format!("{} min ago", s / 60),
        3600..86400 => format!("{} h ago", s / 3600),
        _ => format!("{} d ago", s / 86400),
    }
}

/// An absolute time (UTC), for what is re-sent live: a relative one would change every second.
fn when(t: i64) -> Markup {
    let text = chrono::DateTime::from_timestamp_millis(t).map_or_else(String::new, |d| d.format("%Y-%m-%d %H:%M:%S UTC").to_string());
    html! { time datetime=(text.replace(" UTC", "Z").replacen(' ', "T", 1)) { (text) } }
}

fn until(t: i64) -> String {
    let s = (t - now_ms()) / 1000;
    if s <= 0 {
        "expired".into()
    } else if s < 3600 {
        format!("in {} min", s / 60)
    } else if s < 86400 {
        format!("in {} h", s / 3600)
    } else {
        format!("in {} d", s / 86400)
    }
}

// Applications ---------------------------------------------------------------------------------

async fn apps(State(ctx): State<Shared>, axum::Extension(s): axum::Extension<Session>) -> Response {
    render_apps(&ctx, &s, None).await
}

async fn render_apps(ctx: &Shared, s: &Session, error: Option<ApiError>) -> Response {
    let list = match ctx.store.apps().await {
        Ok(l) => l,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let status = if error.is_some() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    let body = html! {
        @if let Some(e) = &error { (error_box(e)) }
        @if list.is_empty() { p { "No application yet. Create one from a repository below." } } @else {
            div.scroll { table {
                thead { tr { th scope="col" { "Name" } th scope="col" { "Repository" } th scope="col" { "Default branch" } th scope="col" { "Created" } } }
                tbody { @for a in &list { tr {
                    td { a href={ "/ui/apps/" (a.name) } { (a.name) } }
                    td { code { (a.repo) } }
                    td { (a.default_branch) }
                    td { (ago(a.created_at)) }
                } } }
            } }
        }
        form.card method="post" action="/ui/apps" {
            h2 { "New application" }
            (csrf_field(s))
            label for="repo" { "Repository (a local path or a git URL)" }
            input #repo name="repo" required;
            label for="name" { "Name (optional)" }
            input #name name="name" pattern="[a-z0-9][a-z0-9-]{0,39}";
            button type="submit" { "Create" }
        }
    };
    (status, page("Applications", Some(s), body)).into_response()
}

#[derive(Deserialize)]
struct NewApp {
    csrf: String,
    repo: String,
    name: Option<String>,
}

async fn create_app(State(ctx): State<Shared>, axum::Extension(s): axum::Extension<Session>, Form(f): Form<NewApp>) -> Response {
    if !csrf_ok(&s, &f.csrf) {
        return forbidden();
    }
    let req =
        offshoot_control::apps::NewApp { repo: f.repo.trim().to_owned(), name: f.name.filter(|n| !n.trim().is_empty()), branch: None };
    match control(&ctx, Actor::dashboard()).create_app(req).await {
        Ok(a) => Redirect::to(&format!("/ui/apps/{}", a.name)).into_response(),
        Err(e) => render_apps(&ctx, &s, Some(e.into())).await,
    }
}

async fn app(State(ctx): State<Shared>, axum::Extension(s): axum::Extension<Session>, Path(name): Path<String>) -> Response {
    render_app(&ctx, &s, &name, None, None).await
}

/// Lines added and removed between two texts (a longest-common-subsequence diff, bounded).
fn diff(old: &str, new: &str) -> Vec<(char, String)> {
    let (a, b): (Vec<&str>, Vec<&str>) = (old.lines().collect(), new.lines().collect());
    if a.len() * b.len() > 4_000_000 {
        return vec![('!', "too large to compare here".into())];
    }
    let mut l = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            l[i][j] = if a[i] == b[j] { l[i + 1][j + 1] + 1 } else { l[i + 1][j].max(l[i][j + 1]) };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            i += 1;
            j += 1;
        } else if j < b.len() && (i == a.len() || l[i][j + 1] >= l[i + 1][j]) {
            out.push(('+', b[j].to_owned()));
            j += 1;
        } else {
            out.push(('-', a[i].to_owned()));
            i += 1;
        }
    }
    out
}

/// Versions shown, with their diffs, on an application's page.
const SHOWN_VERSIONS: usize = 20;

/// The template and variables as submitted, when a save was refused.
struct Draft {
    template: String,
    env_vars: String,
}

async fn render_app(ctx: &Shared, s: &Session, name: &str, error: Option<ApiError>, draft: Option<Draft>) -> Response {
    let a = match crate::plane::find_app(ctx, name).await {
        Ok(a) => a,
        Err(e) => return (e.status, page("Not found", Some(s), error_box(&e))).into_response(),
    };
    let versions = ctx.store.versions(name).await.unwrap_or_default();
    let envs = ctx.store.envs(Some(name), false).await.unwrap_or_default();
    let latest = versions.first();
    let (template, env_vars) = match &draft {
        Some(d) => (d.template.clone(), d.env_vars.clone()),
        None => (latest.map(|v| v.template.clone()).unwrap_or_default(), latest.map(|v| v.env_vars.clone()).unwrap_or_default()),
    };
    let status = if error.is_some() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    let sources: Vec<(&str, &str)> = match &draft {
        Some(d) => vec![("application_template.yaml", d.template.as_str()), ("environment_variables.yaml", d.env_vars.as_str())],
        None => Vec::new(),
    };
    let body = html! {
        p { "Repository " code { (a.repo) } ", default branch " strong { (a.default_branch) } "." }
        @if let Some(e) = &error { (error_with_sources(e, &sources)) }
        section aria-labelledby="envs-h" {
            h2 #envs-h { "Environments" }
            @if envs.is_empty() { p { "None." } } @else {
                ul { @for e in &envs { li { a href={ "/ui/envs/" (e.id) } { (e.id) } " · " (e.branch) " · " (state_badge(e.status.as_str())) } } }
            }
            (new_env_form(s, Some(name), &[]))
        }
        form.card method="post" action={ "/ui/apps/" (name) "/config" } {
            h2 { "Configuration" }
            (csrf_field(s))
            p.muted { "Saved as a new version after validation; environments keep the version they were created with." }
            label for="template" { "Application Template" }
            textarea #template name="template" rows="20" spellcheck="false" { (template) }
            label for="env_vars" { "Environment Variables" }
            textarea #env_vars name="env_vars" rows="8" spellcheck="false" { (env_vars) }
            button type="submit" { "Validate and save" }
        }
        form.card method="post" action={ "/ui/apps/" (name) "/secrets" } {
            h2 { "Secrets" }
            p.muted { "Write-only: encrypted at rest, never shown again." }
            (csrf_field(s))
            label for="key" { "Name" }
            input #key name="key" required pattern="[A-Za-z_][A-Za-z0-9_]*";
            label for="service" { "Service (empty for every service)" }
            input #service name="service";
            label for="value" { "Value" }
            input #value name="value" type="password" autocomplete="off" required;
            button type="submit" { "Set secret" }
        }
        section aria-labelledby="versions-h" {
            h2 #versions-h { "Versions" }
            @if versions.len() > SHOWN_VERSIONS { p.muted { "The latest " (SHOWN_VERSIONS) " of " (versions.len()) "." } }
            @for (i, v) in versions.iter().take(SHOWN_VERSIONS).enumerate() {
                details open[i == 0] {
                    summary { "Version " (v.version) " · " (ago(v.created_at)) }
                    @if let Some(prev) = versions.get(i + 1) {
                        @let d = diff(&format!("{}\n{}", prev.template, prev.env_vars), &format!("{}\n{}", v.template, v.env_vars));
                        @if d.is_empty() { p.muted { "No change from version " (prev.version) "." } } @else {
                            pre.diff { @for (sign, line) in &d { span class=(if *sign == '+' { "add" } else { "del" }) { (sign) " " (line) "\n" } } }
                        }
                    } @else { p.muted { "The first version." } }
                }
            }
        }
        form.inline.danger method="post" action={ "/ui/apps/" (name) "/delete" } {
            (csrf_field(s))
            button.danger type="submit" { "Delete application" }
        }
    };
    (status, page(&format!("Application {name}"), Some(s), body)).into_response()
}

#[derive(Deserialize)]
struct ConfigForm {
    csrf: String,
    template: String,
    env_vars: String,
}

async fn save_config(
    State(ctx): State<Shared>,
    axum::Extension(s): axum::Extension<Session>,
    Path(name): Path<String>,
    Form(f): Form<ConfigForm>,
) -> Response {
    if !csrf_ok(&s, &f.csrf) {
        return forbidden();
    }
    // Browsers send CR LF in textareas.
    let (template, env_vars) = (f.template.replace("\r\n", "\n"), f.env_vars.replace("\r\n", "\n"));
    match control(&ctx, Actor::dashboard()).update_template(&name, Some(template.clone()), Some(env_vars.clone())).await {
        Ok(_) => Redirect::to(&format!("/ui/apps/{name}")).into_response(),
        Err(e) => render_app(&ctx, &s, &name, Some(e.into()), Some(Draft { template, env_vars })).await,
    }
}

#[derive(Deserialize)]
struct SecretForm {
    csrf: String,
    key: String,
    service: Option<String>,
    value: String,
}

async fn set_secret(
    State(ctx): State<Shared>,
    axum::Extension(s): axum::Extension<Session>,
    Path(name): Path<String>,
    Form(f): Form<SecretForm>,
) -> Response {
    if !csrf_ok(&s, &f.csrf) {
        return forbidden();
    }
    let service = f.service.map(|x| x.trim().to_owned()).unwrap_or_default();
    match control(&ctx, Actor::dashboard()).set_secret(&name, &service, f.key.trim(), &f.value).await {
        Ok(()) => Redirect::to(&format!("/ui/apps/{name}")).into_response(),
        Err(e) => render_app(&ctx, &s, &name, Some(e.into()), None).await,
    }
}

async fn delete_app(
    State(ctx): State<Shared>,
    axum::Extension(s): axum::Extension<Session>,
    Path(name): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    if !csrf_ok(&s, &f.csrf) {
        return forbidden();
    }
    match control(&ctx, Actor::dashboard()).delete_app(&name).await {
        Ok(()) => Redirect::to("/ui/apps").into_response(),
        Err(e) => render_app(&ctx, &s, &name, Some(e.into()), None).await,
    }
}

// Environments ---------------------------------------------------------------------------------

fn new_env_form(s: &Session, app: Option<&str>, apps: &[String]) -> Markup {
    html! {
        form.card method="post" action="/ui/envs" {
            h2 { "New environment" }
            (csrf_field(s))
            @match app {
                Some(a) => { input type="hidden" name="app" value=(a); }
                None => {
                    label for="app" { "Application" }
                    select #app name="app" required { @for a in apps { option value=(a) { (a) } } }
                }
            }
            label for="branch" { "Branch" }
            input #branch name="branch" required value="main";
            label for="ttl" { "Expires after (hours, optional)" }
            input #ttl name="ttl_hours" type="number" min="1" max="8760";
            button type="submit" { "Create environment" }
        }
    }
}

async fn envs(State(ctx): State<Shared>, axum::Extension(s): axum::Extension<Session>) -> Response {
    render_envs(&ctx, &s, None).await
}

async fn render_envs(ctx: &Shared, s: &Session, error: Option<ApiError>) -> Response {
    let (list, apps) = match (ctx.store.envs(None, false).await, ctx.store.apps().await) {
        (Ok(l), Ok(a)) => (l, a.into_iter().map(|a| a.name.into_string()).collect::<Vec<_>>()),
        (Err(e), _) | (_, Err(e)) => return ApiError::from(e).into_response(),
    };
    let status = if error.is_some() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    let body = html! {
        @if let Some(e) = &error { (error_box(e)) }
        @if list.is_empty() { p { "No environment yet." } } @else {
            div.scroll { table {
                thead { tr { th scope="col" { "Environment" } th scope="col" { "Application" } th scope="col" { "Branch" } th scope="col" { "Status" } th scope="col" { "Created" } th scope="col" { "Expires" } } }
                tbody { @for e in &list { tr {
                    td { a href={ "/ui/envs/" (e.id) } { (e.id) } }
                    td { a href={ "/ui/apps/" (e.app) } { (e.app) } }
                    td { (e.branch) }
                    td { (state_badge(e.status.as_str())) @if let Some(r) = &e.reason { " " span.muted { (r) } } }
                    td { (ago(e.created_at)) }
                    td { @if let Some(t) = e.expires_at { (until(t)) } @else { "never" } }
                } } }
            } }
        }
        @if !apps.is_empty() { (new_env_form(s, None, &apps)) }
    };
    (status, page("Environments", Some(s), body)).into_response()
}

#[derive(Deserialize)]
struct NewEnv {
    csrf: String,
    app: String,
    branch: String,
    ttl_hours: Option<String>,
}

async fn create_env(State(ctx): State<Shared>, axum::Extension(s): axum::Extension<Session>, Form(f): Form<NewEnv>) -> Response {
    if !csrf_ok(&s, &f.csrf) {
        return forbidden();
    }
    let ttl = match f.ttl_hours.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        None => None,
        Some(t) => match t.parse::<u64>() {
            Ok(h) if (1..=8760).contains(&h) => Some(h * 3600),
            _ => return render_envs(&ctx, &s, Some(ApiError::bad_request("`Expires after` is a number of hours from 1 to 8760"))).await,
        },
    };
    let req =
        offshoot_control::environments::NewEnv { app: f.app, branch: f.branch.trim().to_owned(), ttl_seconds: ttl, ..Default::default() };
    match control(&ctx, Actor::dashboard()).create_env(req).await {
        Ok(e) => Redirect::to(&format!("/ui/envs/{}", e.id)).into_response(),
        Err(e) => render_envs(&ctx, &s, Some(e.into())).await,
    }
}

/// A deployment's phases in the order they happen, then any others.
fn phases(p: &std::collections::BTreeMap<String, u64>) -> Vec<(&str, u64)> {
    const ORDER: &[&str] = &["fetch", "datasets", "build", "push", "start", "ready"];
    let mut out: Vec<(&str, u64)> = ORDER.iter().filter_map(|k| p.get(*k).map(|v| (*k, *v))).collect();
    out.extend(p.iter().filter(|(k, _)| !ORDER.contains(&k.as_str()) && !k.ends_with("_us")).map(|(k, v)| (k.as_str(), *v)));
    out
}

/// An environment as its page shows it: the API's view and the steps of its latest deployment.
async fn live_state(ctx: &Shared, id: &str) -> Result<(dto::Env, Vec<offshoot_store::Step>), ApiError> {
    let e = crate::views::env_dto(ctx, crate::plane::find_env(ctx, id).await?).await?;
    let steps = match e.deployments.last() {
        Some(d) => ctx.store.steps(&d.id).await?,
        None => Vec::new(),
    };
    Ok((e, steps))
}

/// The part of an environment's page that changes while it deploys (sent again over SSE).
fn env_live(e: &dto::Env, steps: &[offshoot_store::Step]) -> Markup {
    html! {
        p { "Status " (state_badge(e.status.as_str())) @if let Some(r) = &e.reason { " " span.reason { (r) } } }
        h2 { "Services" }
        div.scroll { table #services {
            thead { tr { th scope="col" { "Service" } th scope="col" { "State" } th scope="col" { "URLs" } th scope="col" { "Logs" } } }
            tbody { @for svc in &e.services { tr {
                td { (svc.name) }
                td { (state_badge(svc.status.as_str())) @if let Some(r) = &svc.reason { " " span.muted { (r) } } }
                td { @for u in &svc.urls { a href=(u) target="_blank" rel="noopener" { (u) } br; } }
                td { button.link type="button" data-logs=(svc.name) aria-controls="logs" { "Show logs" } }
            } } }
        } }
        h2 { "Deployments" }
        div.scroll { table #deployments {
            thead { tr { th scope="col" { "Workflow" } th scope="col" { "Commit" } th scope="col" { "Status" } th scope="col" { "Phases (ms)" } th scope="col" { "Started" } } }
            tbody { @for d in e.deployments.iter().rev() { tr {
                td { (d.workflow) }
                td { code { (d.commit.as_deref().map_or("", |c| &c[..c.len().min(10)])) } }
                td { (state_badge(d.status.as_str())) @if let Some(err) = &d.error { " " span.muted { (err) } } }
                td { @for (k, v) in phases(&d.phases) { (k) " " (v) " " } }
                td { (when(d.created_at)) }
            } } }
        } }
        @if let Some(d) = e.deployments.last() {
            h2 { "Workflow steps of the latest deployment (" (d.workflow) ")" }
            @if steps.is_empty() { p.muted { "No step has run yet." } } @else {
                div.scroll { table #steps {
                    thead { tr { th scope="col" { "Step" } th scope="col" { "Status" } th scope="col" { "Output" } } }
                    tbody { @for st in steps { tr {
                        td { (st.name) }
                        td { (state_badge(if st.status == "done" { "succeeded" } else { &st.status })) }
                        td { span.muted { (st.output.chars().take(300).collect::<String>()) } }
                    } } }
                } }
            }
        }
        @if !e.imports.is_empty() {
            h2 { "Imports" }
            ul { @for i in &e.imports { li { a href={ "/ui/envs/" (i.env_id) } { (i.app) } " on " strong { (i.branch) } " (" (i.reason) ") " (state_badge(i.status.as_str())) } } }
        }
    }
}

async fn env(State(ctx): State<Shared>, axum::Extension(s): axum::Extension<Session>, Path(id): Path<String>) -> Response {
    let (e, steps) = match live_state(&ctx, &id).await {
        Ok(x) => x,
        Err(e) => return (e.status, page("Not found", Some(&s), error_box(&e))).into_response(),
    };
    let body = html! {
        p { "Application " a href={ "/ui/apps/" (e.app) } { (e.app) } ", branch " strong { (e.branch) } ", created " (ago(e.created_at))
            @if let Some(t) = e.expires_at { ", expires " (until(t)) } "." }
        div #live data-events={ "/ui/envs/" (id) "/events" } aria-live="polite" { (env_live(&e, &steps)) }
        @if !e.datasets.is_empty() {
            h2 { "Datasets" }
            ul { @for d in &e.datasets { li { a href="/ui/datasets" { (d.dataset) } ": database " code { (d.database) } } } }
        }
        section #logs-section hidden {
            h2 #logs-title { "Logs" }
            pre #logs tabindex="0" aria-labelledby="logs-title" data-base={ "/ui/envs/" (id) "/logs/" } {}
        }
        div.actions {
            form.inline method="post" action={ "/ui/envs/" (id) "/deploy" } { (csrf_field(&s)) button type="submit" { "Deploy latest commit" } }
            @if e.expires_at.is_some() {
                form.inline method="post" action={ "/ui/envs/" (id) "/extend" } {
                    (csrf_field(&s))
                    label for="ttl" { "Extend by " }
                    select #ttl name="ttl" { option value="86400" { "1 day" } option value="259200" { "3 days" } option value="604800" { "7 days" } }
                    " " button type="submit" { "Extend" }
                }
            }
            @if e.status == offshoot_api_types::EnvStatus::Sleeping {
                form.inline method="post" action={ "/ui/envs/" (id) "/wake" } { (csrf_field(&s)) button type="submit" { "Wake" } }
            } @else if e.status == offshoot_api_types::EnvStatus::Ready {
                form.inline method="post" action={ "/ui/envs/" (id) "/sleep" } { (csrf_field(&s)) button type="submit" { "Sleep" } }
            }
            form.inline method="post" action={ "/ui/envs/" (id) "/delete" } { (csrf_field(&s)) button.danger type="submit" { "Delete environment" } }
        }
    };
    page(&format!("Environment {id}"), Some(&s), body).into_response()
}

async fn deploy_env(
    State(ctx): State<Shared>,
    axum::Extension(s): axum::Extension<Session>,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    if !csrf_ok(&s, &f.csrf) {
        return forbidden();
    }
    match control(&ctx, Actor::dashboard()).deploy_env(&id, None).await.map_err(ApiError::from) {
        Ok(_) => Redirect::to(&format!("/ui/envs/{id}")).into_response(),
        Err(e) => (e.status, page("Deploy refused", Some(&s), error_box(&e))).into_response(),
    }
}

#[derive(Deserialize)]
struct ExtendForm {
    csrf: String,
    ttl: u64,
}

async fn extend_env(
    State(ctx): State<Shared>,
    axum::Extension(s): axum::Extension<Session>,
    Path(id): Path<String>,
    Form(f): Form<ExtendForm>,
) -> Response {
    if !csrf_ok(&s, &f.csrf) {
        return forbidden();
    }
    match control(&ctx, Actor::dashboard()).extend_env(&id, f.ttl).await.map_err(ApiError::from) {
        Ok(_) => Redirect::to(&format!("/ui/envs/{id}")).into_response(),
        Err(e) => (e.status, page("Extend refused", Some(&s), error_box(&e))).into_response(),
    }
}

async fn sleep_env(
    State(ctx): State<Shared>,
    axum::Extension(s): axum::Extension<Session>,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    if !csrf_ok(&s, &f.csrf) {
        return forbidden();
    }
    match crate::waking::sleep(&ctx, Actor::dashboard(), &id).await.map_err(ApiError::from) {
        Ok(_) => Redirect::to(&format!("/ui/envs/{id}")).into_response(),
        Err(e) => (e.status, page("Sleep refused", Some(&s), error_box(&e))).into_response(),
    }
}

async fn wake_env(
    State(ctx): State<Shared>,
    axum::Extension(s): axum::Extension<Session>,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    if !csrf_ok(&s, &f.csrf) {
        return forbidden();
    }
    match crate::waking::wake(&ctx, Actor::dashboard(), &id).await.map_err(ApiError::from) {
        Ok(_) => Redirect::to(&format!("/ui/envs/{id}")).into_response(),
        Err(e) => (e.status, page("Wake refused", Some(&s), error_box(&e))).into_response(),
    }
}

async fn delete_env(
    State(ctx): State<Shared>,
    axum::Extension(s): axum::Extension<Session>,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    if !csrf_ok(&s, &f.csrf) {
        return forbidden();
    }
    match control(&ctx, Actor::dashboard()).delete_env(&id, None).await.map_err(ApiError::from) {
        Ok(_) => Redirect::to(&format!("/ui/envs/{id}")).into_response(),
        Err(e) => (e.status, page("Delete refused", Some(&s), error_box(&e))).into_response(),
    }
}

/// Server-sent `event`s: `render` is run every `period` and its text sent when it changed,
/// until the session that opened the stream ends (logout, expiry).
fn live<F, Fut>(ctx: Shared, session: &Session, event: &'static str, period: Duration, render: F) -> Response
where
    F: Fn(Shared) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = String> + Send,
{
    let session = std::sync::Arc::new(hash_token(&session.0));
    let render = std::sync::Arc::new(render);
    let stream = futures_util::stream::unfold((ctx, String::new()), move |(ctx, last)| {
        let (session, render) = (session.clone(), render.clone());
        async move {
            loop {
                if !ctx.store.session_valid(&session).await.unwrap_or(false) {
                    return None;
                }
                let text = render(ctx.clone()).await;
                if text != last {
                    let ev = Event::default().event(event).data(text.clone());
                    return Some((Ok::<_, std::convert::Infallible>(ev), (ctx, text)));
                }
                tokio::time::sleep(period).await;
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default()).into_response()
}

/// The changing part of an environment's page, again whenever it changes (checked twice a
/// second, from the store).
async fn env_events(State(ctx): State<Shared>, axum::Extension(s): axum::Extension<Session>, Path(id): Path<String>) -> Response {
    live(ctx, &s, "live", Duration::from_millis(500), move |ctx| {
        let id = id.clone();
        async move {
            match live_state(&ctx, &id).await {
                Ok((e, steps)) => env_live(&e, &steps).into_string(),
                Err(e) => html! { p.error { (e.message) } }.into_string(),
            }
        }
    })
}

/// A service's log, again whenever it grows (checked every second).
async fn log_events(
    State(ctx): State<Shared>,
    axum::Extension(s): axum::Extension<Session>,
    Path((id, service)): Path<(String, String)>,
) -> Response {
    live(ctx, &s, "log", Duration::from_secs(1), move |ctx| {
        let (id, service) = (id.clone(), service.clone());
        async move {
            match crate::views::logs(&ctx, &id, Some(&service), 300).await {
                Ok(logs) => logs.into_iter().map(|l| l.logs).collect::<Vec<_>>().join(""),
                Err(e) => e.message,
            }
        }
    })
}

// Datasets -------------------------------------------------------------------------------------

/// What was done, by whom, and how it ended: the newest 200 entries of the activity log.
async fn activity(State(ctx): State<Shared>, axum::Extension(s): axum::Extension<Session>) -> Response {
    let list = match ctx.store.activity(200).await {
        Ok(l) => l,
        Err(e) => {
            let e = ApiError::from(e);
            return (e.status, page("Activity", Some(&s), error_box(&e))).into_response();
        }
    };
    // An environment's operations are recorded on its id (`env.exec` on `id/service`); creating
    // one is recorded on its application.
    let link = |a: &offshoot_store::Activity| -> Option<String> {
        let on_env = a.operation.starts_with("env.") && a.operation != "env.create";
        on_env.then(|| format!("/ui/envs/{}", a.target.split('/').next().unwrap_or(&a.target)))
    };
    let body = html! {
        @if list.is_empty() { p { "Nothing was done yet." } } @else {
            div.scroll { table {
                thead { tr { th scope="col" { "When" } th scope="col" { "Who" } th scope="col" { "What" } th scope="col" { "On" } th scope="col" { "Outcome" } th scope="col" { "Detail" } } }
                tbody { @for a in &list { tr {
                    td { (ago(a.at)) }
                    td { (a.actor) }
                    td { code { (a.operation) } }
                    td { @if let Some(href) = link(a) { a href=(href) { (a.target) } } @else { (a.target) } }
                    td { span class={ "badge " (match a.outcome.as_str() { "ok" => "ok", "failed" => "bad", _ => "busy" }) } { (a.outcome) } }
                    td { @if let Some(d) = &a.detail { span.muted { (d.lines().next().unwrap_or("")) } } }
                } } }
            } }
        }
    };
    page("Activity", Some(&s), body).into_response()
}

async fn datasets(State(ctx): State<Shared>, axum::Extension(s): axum::Extension<Session>) -> Response {
    let list = match crate::datasets::list(State(ctx.clone())).await {
        Ok(Json(l)) => l,
        Err(e) => return (e.status, page("Datasets", Some(&s), error_box(&e))).into_response(),
    };
    let body = html! {
        @if list.is_empty() { p { "No dataset. Create one with " code { "offshoot dataset create" } "." } } @else {
            div.scroll { table {
                thead { tr { th scope="col" { "Dataset" } th scope="col" { "Engine" } th scope="col" { "State" } th scope="col" { "Pool (ready / leased / filling)" } th scope="col" { "Snapshot" } th scope="col" { "Leases" } } }
                tbody { @for d in &list { tr {
                    td { (d.name) }
                    td { (d.engine) }
                    td { (state_badge(&d.state)) @if let Some(e) = &d.error { " " span.muted { (e) } } }
                    td { (d.pool.ready) " / " (d.pool.leased) " / " (d.pool.filling) }
                    td { @if let Some(sn) = &d.snapshot { "generation " (sn.generation) ", " (sn.bytes / 1_000_000) " MB" } }
                    td { @for l in &d.leases { a href={ "/ui/envs/" (l.env_id) } { (l.env_id) } @if l.expired { " (expired)" } " " } }
                } } }
            } }
        }
    };
    page("Datasets", Some(&s), body).into_response()
}

const CSS: &str = r#":root{--fg:#1b1f24;--muted:#57606a;--bg:#fff;--line:#d0d7de;--accent:#0a58ca;--ok:#116329;--bad:#a40e26;--busy:#7d4e00}
*{box-sizing:border-box}body{margin:0;font:16px/1.5 system-ui,sans-serif;color:var(--fg);background:var(--bg)}
.skip{position:absolute;left:-999px}.skip:focus{left:8px;top:8px;background:#fff;padding:4px}
header{border-bottom:1px solid var(--line);padding:8px 16px}nav{display:flex;gap:16px;align-items:center;flex-wrap:wrap}
nav a{color:var(--accent)}.brand{font-weight:700;color:var(--fg)!important;text-decoration:none}
main{max-width:1100px;margin:0 auto;padding:16px}h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:1.5em}
a:focus,button:focus,input:focus,textarea:focus,select:focus,summary:focus{outline:3px solid #f0b400;outline-offset:2px}
.scroll{overflow-x:auto}table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:6px 8px;border-bottom:1px solid var(--line);vertical-align:top}
.card{border:1px solid var(--line);border-radius:6px;padding:12px 16px;margin:16px 0;display:grid;gap:6px;max-width:100%}
label{font-weight:600}input,textarea,select{font:inherit;padding:6px;border:1px solid var(--muted);border-radius:4px;width:100%}
textarea{font-family:ui-monospace,monospace;font-size:14px}button{font:inherit;padding:6px 14px;border-radius:4px;border:1px solid var(--accent);background:var(--accent);color:#fff;cursor:pointer;justify-self:start}
button.link{background:none;border:none;color:var(--accent);text-decoration:underline;padding:0}button.danger{background:var(--bad);border-color:var(--bad)}
.inline{display:inline}.actions{display:flex;gap:12px;margin-top:24px;flex-wrap:wrap}
.badge{display:inline-block;padding:0 8px;border-radius:10px;font-size:.85em;font-weight:600;border:1px solid}
.badge.ok{color:var(--ok)}.badge.bad{color:var(--bad)}.badge.busy{color:var(--busy)}.badge.off{color:var(--muted)}
.card h2{margin:0 0 4px}input:not([type=hidden]),select{max-width:40rem}.muted{color:var(--muted)}.excerpt{color:var(--fg);margin:4px 0}.error{border:1px solid var(--bad);color:var(--bad);padding:8px 12px;border-radius:6px}
pre{background:#f6f8fa;padding:8px;overflow:auto;max-height:420px;font-size:13px}.diff .add{color:var(--ok)}.diff .del{color:var(--bad)}
@media (max-width:600px){main{padding:8px}th,td{padding:4px}}
"#;

const JS: &str = r#"document.addEventListener('DOMContentLoaded',()=>{
const live=document.getElementById('live');
if(live&&live.dataset.events){const es=new EventSource(live.dataset.events);es.addEventListener('live',e=>{live.innerHTML=e.data;});}
let logs=null;
document.addEventListener('click',ev=>{const b=ev.target.closest('[data-logs]');if(!b)return;
const pre=document.getElementById('logs');const sec=document.getElementById('logs-section');
sec.hidden=false;document.getElementById('logs-title').textContent='Logs of '+b.dataset.logs;pre.textContent='';
if(logs)logs.close();logs=new EventSource(pre.dataset.base+encodeURIComponent(b.dataset.logs));
logs.addEventListener('log',e=>{pre.textContent=e.data;pre.scrollTop=pre.scrollHeight;});pre.focus();});
});
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diffs_and_cookies() {
        assert_eq!(diff("a\nb\nc", "a\nc\nd"), vec![('-', "b".to_owned()), ('+', "d".to_owned())]);
        assert!(diff("same", "same").is_empty());
        let mut h = HeaderMap::new();
        let id = "ab".repeat(32);
        h.insert(header::COOKIE, HeaderValue::from_str(&format!("x=1; {COOKIE}={id}")).expect("header"));
        assert_eq!(session_of(&h), Some(id.clone()));
        h.insert(header::COOKIE, HeaderValue::from_static("offshoot_session=short"));
        assert_eq!(session_of(&h), None);
        assert_ne!(csrf_of(&id), csrf_of(&"cd".repeat(32)));
        assert_eq!(urlencode("/ui/envs/a b"), "/ui/envs/a%20b");
    }
}
