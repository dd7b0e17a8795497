//! The web dashboard, on the API's port under `/ui`: server-rendered pages (maud), a little
//! plain JavaScript for live updates over server-sent events, no build step. A browser logs in
//! with an API token; it then holds a random session id in an `HttpOnly`, `SameSite=Lax`
//! cookie (only the id's hash is stored), and every form carries a CSRF token derived from it.
//! Pages read the store and act through the same functions as the API, so what they show and
//! refuse is what the API would.

use crate::crypto::{hash_token, hex, random_bytes};
use crate::error::ApiError;
use crate::plane::control;
use crate::state::Shared;
use crate::ui_envs::new_env_form;
use axum::Router;
use axum::extract::{Form, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{DOCTYPE, Markup, html};
use offshoot_control::Actor;
use offshoot_store::now_ms;
use serde::Deserialize;

const COOKIE: &str = "offshoot_session";
/// How long a session lasts.
const SESSION_MS: i64 = 12 * 3600 * 1000;

/// The dashboard's pages; `public` adds pages reached without a session (single sign-on's).
pub(crate) fn router(ctx: Shared, public: Router<Shared>) -> Router<Shared> {
    let private = Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/envs") }))
        .route("/ui/logout", post(logout))
        .route("/ui/apps", get(apps).post(create_app))
        .route("/ui/apps/{name}", get(app))
        .route("/ui/apps/{name}/config", post(save_config))
        .route("/ui/apps/{name}/secrets", post(set_secret))
        .route("/ui/apps/{name}/delete", post(delete_app))
        .route("/ui/apps/{name}/settings", post(save_settings))
        .route("/ui/apps/{name}/restore", post(restore_version))
        .route("/ui/apps/{name}/pulls/{number}/approve", post(approve_pull))
        .merge(crate::ui_envs::routes())
        .merge(crate::ui_admin::routes())
        .route("/ui/activity", get(activity))
        .route("/ui/preview", get(preview))
        .route_layer(axum::middleware::from_fn_with_state(ctx.clone(), session));
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
        .merge(public)
        .merge(private)
        .layer(axum::middleware::map_response_with_state(ctx, hardened))
}

/// Pages load only this server's script and style, cannot be framed, and send no referrer
/// elsewhere; their forms lead here (and to the identity provider, where signing out ends).
async fn hardened(State(ctx): State<Shared>, mut r: Response) -> Response {
    let forms = ctx.sso.as_ref().map(|s| format!(" {}", s.origin())).unwrap_or_default();
    let csp = format!(
        "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'{forms}"
    );
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    r
}

// Sessions -------------------------------------------------------------------------------------

/// The value of the cookie `name` the request carries, if `valid` accepts it.
pub(crate) fn cookie_of(headers: &HeaderMap, name: &str, valid: impl Fn(&str) -> bool) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|c| {
        let (k, v) = c.trim().split_once('=')?;
        (k == name && valid(v)).then(|| v.to_owned())
    })
}

fn session_of(headers: &HeaderMap) -> Option<String> {
    cookie_of(headers, COOKIE, |v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The CSRF token of a session: derived from its id, which only this browser and the server know.
fn csrf_of(session: &str) -> String {
    hash_token(&format!("csrf:{session}"))
}

/// The logged-in browser's session id and its user, put in the request by the middleware.
#[derive(Clone)]
pub(crate) struct Session(pub(crate) String, pub(crate) Actor);

async fn session(State(ctx): State<Shared>, mut req: Request, next: Next) -> Response {
    let mut valid = None;
    if let Some(s) = session_of(req.headers()) {
        let actor = match ctx.store.session_user(&hash_token(&s)).await {
            Ok(Some(email)) => crate::accounts::actor_of_user(&ctx, &email).await,
            Ok(None) => Ok(None),
            Err(e) => Err(e),
        };
        match actor {
            Ok(Some(actor)) => {
                let address = req.extensions().get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip().to_string());
                valid = Some(Session(s, actor.from_address(address)));
            }
            Ok(None) => {}
            Err(e) => return ApiError::from(e).into_response(),
        }
    }
    let Some(s) = valid else {
        let back = req.uri().path_and_query().map_or_else(|| req.uri().path().to_owned(), |p| p.as_str().to_owned());
        return Redirect::to(&format!("/ui/login?next={}", urlencode(&back))).into_response();
    };
    // Each form handler checks the CSRF token its form carries against this session.
    req.extensions_mut().insert(s);
    next.run(req).await
}

/// Whether a form's CSRF token is the session's.
pub(crate) fn csrf_ok(session: &Session, given: &str) -> bool {
    use subtle::ConstantTimeEq as _;
    bool::from(csrf_of(&session.0).as_bytes().ct_eq(given.as_bytes()))
}

pub(crate) fn forbidden() -> Response {
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
    signed_out: Option<String>,
}

async fn login_page(State(ctx): State<Shared>, Query(q): Query<NextQuery>) -> Markup {
    let next = local_next(q.next);
    page(
        "Log in",
        None,
        html! {
            @if q.signed_out.is_some() { p.card role="status" { "You are signed out." } }
            @if ctx.sso.is_some() {
                div.card {
                    p { "Sign in with your organisation's account." }
                    a.button href={ "/ui/sso/login?next=" (urlencode(&next)) } { "Sign in with single sign-on" }
                }
            }
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
    let actor = match crate::accounts::actor_of_token(&ctx, token).await {
        Ok(Some(actor)) => actor,
        Ok(None) => {
            tracing::warn!("dashboard: a login with an invalid token");
            return Redirect::to("/ui/login?error=1").into_response();
        }
        Err(e) => return ApiError::from(e).into_response(),
    };
    start_session(&ctx, &actor.name, false, &local_next(f.next)).await
}

/// `next` if it is a dashboard page, else the dashboard's home (no open redirect).
pub(crate) fn local_next(next: Option<String>) -> String {
    next.filter(|n| n.starts_with("/ui") && !n.starts_with("//")).unwrap_or_else(|| "/ui".into())
}

/// A new session for `email` (begun by single sign-on or by a token), its cookie set, and the
/// browser sent on to `next`.
pub(crate) async fn start_session(ctx: &Shared, email: &str, sso: bool, next: &str) -> Response {
    let id = hex(&random_bytes::<32>());
    let via = if sso { "sso" } else { "token" };
    if let Err(e) = ctx.store.create_session(&hash_token(&id), email, via, now_ms() + SESSION_MS).await {
        return ApiError::from(e).into_response();
    }
    // `Secure` when the dashboard is reached over TLS (its public URL is `https://`).
    let secure = if ctx.public_url.starts_with("https://") { "; Secure" } else { "" };
    let cookie = format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{secure}", SESSION_MS / 1000);
    let mut r = Redirect::to(next).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

#[derive(Deserialize)]
struct PreviewQuery {
    host: String,
    next: Option<String>,
}

/// A signed-in user on the way to a team-only preview: back to its host with a short ticket
/// (only to a host the router serves: this is no open redirect).
async fn preview(State(ctx): State<Shared>, Query(q): Query<PreviewQuery>) -> Response {
    if !ctx.router.serves(&q.host) {
        return (StatusCode::NOT_FOUND, page("Not found", None, html! { p { "No environment answers for that address." } }))
            .into_response();
    }
    let next = q.next.filter(|n| n.starts_with('/') && !n.starts_with("//")).unwrap_or_else(|| "/".into());
    let to = format!(
        "{}{}?ticket={}&next={}",
        ctx.host_url(&q.host),
        offshoot_router::access::AUTH_PATH,
        crate::previews::escape(&ctx.previews.ticket(&q.host)),
        crate::previews::escape(&next)
    );
    Redirect::to(&to).into_response()
}

#[derive(Deserialize)]
pub(crate) struct CsrfForm {
    pub(crate) csrf: String,
}

async fn logout(State(ctx): State<Shared>, axum::Extension(s): axum::Extension<Session>, Form(f): Form<CsrfForm>) -> Response {
    if !csrf_ok(&s, &f.csrf) {
        return forbidden();
    }
    let via = ctx.store.delete_session(&hash_token(&s.0)).await;
    // A single sign-on session also ends at the identity provider, which sends the browser back.
    let to = match (&via, &ctx.sso) {
        (Ok(Some(v)), Some(sso)) if v == "sso" => sso.logout_url().await,
        _ => None,
    };
    crate::state::logged("a sign-out", via);
    let mut r = Redirect::to(to.as_deref().unwrap_or("/ui/login?signed_out=1")).into_response();
    r.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_static("offshoot_session=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"));
    r
}

// Layout ---------------------------------------------------------------------------------------

pub(crate) fn page(title: &str, session: Option<&Session>, body: Markup) -> Markup {
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
                            a href="/ui/users" { "Users" }
                            span.muted #whoami { (s.1.name) " (" (s.1.role) ")" }
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

pub(crate) fn csrf_field(s: &Session) -> Markup {
    html! { input type="hidden" name="csrf" value=(csrf_of(&s.0)); }
}

pub(crate) fn error_box(e: &ApiError) -> Markup {
    error_with_sources(e, &[])
}

/// An error; its diagnostics each with the line of the file they point at, when the text is
/// at hand (`(file name suffix, text)`).
pub(crate) fn error_with_sources(e: &ApiError, sources: &[(&str, &str)]) -> Markup {
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

pub(crate) fn state_badge(status: &str) -> Markup {
    let class = match status {
        "ready" | "succeeded" => "ok",
        "failed" => "bad",
        "deleted" | "sleeping" | "skipped" | "interrupted" => "off",
        _ => "busy",
    };
    html! { span class={ "badge " (class) } { (status) } }
}

/// `3 min ago`, from milliseconds since the epoch.
pub(crate) fn ago(t: i64) -> String {
    let s = (now_ms() - t).max(0) / 1000;
    match s {
        0..60 => format!("{s} s ago"),
        60..3600 => format!("{} min ago", s / 60),
        3600..86400 => format!("{} h ago", s / 3600),
        _ => format!("{} d ago", s / 86400),
    }
}

/// An absolute time (UTC), for what is re-sent live: a relative one would change every second.
pub(crate) fn when(t: i64) -> Markup {
    let text = chrono::DateTime::from_timestamp_millis(t).map_or_else(String::new, |d| d.format("%Y-%m-%d %H:%M:%S UTC").to_string());
    html! { time datetime=(text.replace(" UTC", "Z").replacen(' ', "T", 1)) { (text) } }
}

pub(crate) fn until(t: i64) -> String {
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
            div.scroll tabindex="0" role="region" aria-label="Scrollable table" { table {
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
    match control(&ctx, s.1.clone()).create_app(req).await {
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
    let git = ctx.store.app_git(name).await.ok().flatten();
    let forks = control(ctx, s.1.clone()).fork_pulls(name).await.unwrap_or_default();
    let latest = versions.first();
    let (template, env_vars) = match &draft {
        Some(d) => (d.template.clone(), d.env_vars.clone()),
        // Secret values masked; saving the form back keeps them.
        None => (
            latest.map(|v| v.template.clone()).unwrap_or_default(),
            latest.map(|v| offshoot_template::masking::masked(&v.env_vars)).unwrap_or_default(),
        ),
    };
    let params = latest
        .and_then(|v| {
            offshoot_template::document::check("application_template.yaml", &v.template, Some(offshoot_template::document::Kind::Template))
                .template
        })
        .map(|t| t.parameters)
        .unwrap_or_default();
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
            (new_env_form(s, Some(name), &[], &params))
        }
        @if !forks.is_empty() { (forks_section(s, name, &forks, git.as_ref().is_some_and(|g| g.fork_secrets != 0))) }
        @if let Some(g) = &git { (settings_form(s, name, g)) }
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
        form.card method="post" action={ "/ui/apps/" (name) "/secrets" } {
            h2 { "File secrets" }
            p.muted { "Mounted where a service's " code { "secret_files" } " names them (compose's " code { "secrets" } "). Write-only." }
            (csrf_field(s))
            input type="hidden" name="file" value="1";
            label for="file_key" { "Name" }
            input #file_key name="key" required pattern="[A-Za-z0-9][A-Za-z0-9._\\-]*";
            label for="file_value" { "Content" }
            textarea #file_value name="value" rows="4" spellcheck="false" autocomplete="off" required {}
            button type="submit" { "Set file secret" }
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
                    @if i > 0 {
                        form.inline method="post" action={ "/ui/apps/" (name) "/restore" } {
                            (csrf_field(s))
                            input type="hidden" name="version" value=(v.version);
                            button.link type="submit" { "Restore version " (v.version) " as a new version" }
                        }
                    }
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

/// The pull requests from forks: each waiting one with a button that approves its head commit.
fn forks_section(s: &Session, name: &str, forks: &[offshoot_control::forks::Held], secrets: bool) -> Markup {
    let short = |c: &str| c.get(..7).unwrap_or(c).to_owned();
    html! {
        section aria-labelledby="forks-h" {
            h2 #forks-h { "Pull requests from forks" }
            p.muted {
                "Someone else's code: each waits until its head commit is approved, and runs "
                @if secrets { "with" } @else { "without" } " this application's secrets."
            }
            ul { @for h in forks {
                @let pr = &h.pull_request;
                li {
                    "#" (pr.number) " from " code { (pr.fork.as_deref().unwrap_or_default()) } " · head " code { (short(&pr.head_commit)) } " · "
                    @if h.approved() { "approved by " (h.record.approved_by.as_deref().unwrap_or_default()) } @else { strong { "waiting" } }
                    @if let Some(e) = &h.env { " · " a href={ "/ui/envs/" (e.id) } { (e.id) } }
                    @if !h.approved() {
                        form.inline method="post" action={ "/ui/apps/" (name) "/pulls/" (pr.number) "/approve" } {
                            (csrf_field(s))
                            button type="submit" { "Approve " (short(&pr.head_commit)) }
                        }
                    }
                }
            } }
        }
    }
}

/// Approves a fork's pull request's head commit, as the signed-in user.
async fn approve_pull(
    State(ctx): State<Shared>,
    axum::Extension(s): axum::Extension<Session>,
    Path((name, number)): Path<(String, String)>,
    Form(f): Form<CsrfForm>,
) -> Response {
    if !csrf_ok(&s, &f.csrf) {
        return forbidden();
    }
    let Ok(number) = number.parse::<u64>() else {
        return render_app(&ctx, &s, &name, Some(ApiError::bad_request(format!("`{number}` is not a pull request's number"))), None).await;
    };
    match control(&ctx, s.1.clone()).approve_pull_request(&name, number).await {
        Ok(_) => Redirect::to(&format!("/ui/apps/{name}")).into_response(),
        Err(e) => render_app(&ctx, &s, &name, Some(e.into()), None).await,
    }
}

/// A duration in seconds as the settings take it (`90m`, `2h`, `3d`), or `off`.
fn span_text(secs: Option<i64>) -> String {
    match secs {
        None => "off".into(),
        Some(s) if s % 86_400 == 0 => format!("{}d", s / 86_400),
        Some(s) if s % 3600 == 0 => format!("{}h", s / 3600),
        Some(s) => format!("{}m", (s + 59) / 60),
    }
}

/// An application's settings: pull requests, builder and Terraform images, preview access, and
/// its environments' lifecycle.
fn settings_form(s: &Session, name: &str, g: &offshoot_store::AppGit) -> Markup {
    let team = g.access.as_deref() == Some("team");
    html! {
        form.card method="post" action={ "/ui/apps/" (name) "/settings" } {
            h2 { "Settings" }
            (csrf_field(s))
            label for="pull_requests" { "Environments for pull requests" }
            select #pull_requests name="pull_requests" {
                option value="on" selected[g.pull_requests != 0] { "On" }
                option value="off" selected[g.pull_requests == 0] { "Off" }
            }
            label for="pull_request_label" { "Only pull requests with this label (empty: all)" }
            input #pull_request_label name="pull_request_label" value=(g.pull_request_label.clone().unwrap_or_default());
            label for="access" { "Who its environments' URLs answer" }
            select #access name="access" {
                option value="public" selected[!team] { "Anyone (public)" }
                option value="team" selected[team] { "Signed-in users and the bypass token (team)" }
            }
            label for="static_builder" { "Static builds' image (empty: the server's)" }
            input #static_builder name="static_builder" value=(g.static_builder.clone().unwrap_or_default());
            label for="terraform_image" { "Terraform's image (empty: the server's)" }
            input #terraform_image name="terraform_image" value=(g.terraform_image.clone().unwrap_or_default());
            label for="idle_sleep" { "Sleep after this long without a request (" code { "30m" } ", " code { "2h" } ", " code { "off" } ")" }
            input #idle_sleep name="idle_sleep" value=(span_text(g.idle_sleep_seconds));
            label for="ttl" { "New environments live (" code { "7d" } ", " code { "off" } ")" }
            input #ttl name="ttl" value=(span_text(g.ttl_seconds));
            label for="pull_request_ttl" { "New pull-request environments live" }
            input #pull_request_ttl name="pull_request_ttl" value=(span_text(g.pull_request_ttl_seconds));
            label for="sleep_schedule" { "Sleep on a schedule (five cron fields, empty: never)" }
            input #sleep_schedule name="sleep_schedule" value=(g.sleep_schedule.clone().unwrap_or_default());
            label for="wake_schedule" { "Wake on a schedule" }
            input #wake_schedule name="wake_schedule" value=(g.wake_schedule.clone().unwrap_or_default());
            button type="submit" { "Save settings" }
        }
    }
}

#[derive(Deserialize)]
struct SettingsForm {
    csrf: String,
    pull_requests: String,
    pull_request_label: String,
    access: String,
    static_builder: String,
    terraform_image: String,
    idle_sleep: String,
    ttl: String,
    pull_request_ttl: String,
    sleep_schedule: String,
    wake_schedule: String,
}

async fn save_settings(
    State(ctx): State<Shared>,
    axum::Extension(s): axum::Extension<Session>,
    Path(name): Path<String>,
    Form(f): Form<SettingsForm>,
) -> Response {
    if !csrf_ok(&s, &f.csrf) {
        return forbidden();
    }
    let t = |v: String| Some(v.trim().to_owned());
    let req = offshoot_api_types::AppUpdate {
        pull_requests: Some(f.pull_requests == "on"),
        pull_request_label: t(f.pull_request_label),
        static_builder: t(f.static_builder),
        terraform_image: t(f.terraform_image),
        access: t(f.access),
        idle_sleep: t(f.idle_sleep),
        ttl: t(f.ttl),
        pull_request_ttl: t(f.pull_request_ttl),
        sleep_schedule: t(f.sleep_schedule),
        wake_schedule: t(f.wake_schedule),
        fork_secrets: None,
    };
    match control(&ctx, s.1.clone()).update_settings(&name, &req).await {
        Ok(_) => {
            ctx.refresh_routes().await;
            Redirect::to(&format!("/ui/apps/{name}")).into_response()
        }
        Err(e) => render_app(&ctx, &s, &name, Some(e.into()), None).await,
    }
}

#[derive(Deserialize)]
struct RestoreForm {
    csrf: String,
    version: i64,
}

/// An older version's template and variables saved again as the newest (validated as any save).
async fn restore_version(
    State(ctx): State<Shared>,
    axum::Extension(s): axum::Extension<Session>,
    Path(name): Path<String>,
    Form(f): Form<RestoreForm>,
) -> Response {
    if !csrf_ok(&s, &f.csrf) {
        return forbidden();
    }
    let versions = ctx.store.versions(&name).await.unwrap_or_default();
    let Some(v) = versions.into_iter().find(|v| v.version == f.version) else {
        let e = ApiError::new(StatusCode::NOT_FOUND, "not-found", format!("application `{name}` has no version {}", f.version));
        return render_app(&ctx, &s, &name, Some(e), None).await;
    };
    match control(&ctx, s.1.clone()).update_template(&name, Some(v.template), Some(v.env_vars)).await {
        Ok(_) => Redirect::to(&format!("/ui/apps/{name}")).into_response(),
        Err(e) => render_app(&ctx, &s, &name, Some(e.into()), None).await,
    }
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
    match control(&ctx, s.1.clone()).update_template(&name, Some(template.clone()), Some(env_vars.clone())).await {
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
    /// A file secret (its content from a text area, whose line ends browsers send as CRLF).
    file: Option<String>,
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
    let c = control(&ctx, s.1.clone());
    let done = match f.file {
        Some(_) => c.set_file_secret(&name, f.key.trim(), &f.value.replace("\r\n", "\n")).await,
        None => c.set_secret(&name, &service, f.key.trim(), &f.value).await,
    };
    match done {
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
    match control(&ctx, s.1.clone()).delete_app(&name).await {
        Ok(()) => Redirect::to("/ui/apps").into_response(),
        Err(e) => render_app(&ctx, &s, &name, Some(e.into()), None).await,
    }
}

// Environments ---------------------------------------------------------------------------------

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
            div.scroll tabindex="0" role="region" aria-label="Scrollable table" { table {
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
a.button{display:inline-block;justify-self:start;padding:6px 14px;border-radius:4px;background:var(--accent);color:#fff;text-decoration:none}
button.link{background:none;border:none;color:var(--accent);text-decoration:underline;padding:0}button.danger{background:var(--bad);border-color:var(--bad)}
.inline{display:inline}.actions{display:flex;gap:12px;margin-top:24px;flex-wrap:wrap}
.badge{display:inline-block;padding:0 8px;border-radius:10px;font-size:.85em;font-weight:600;border:1px solid}
.badge.ok{color:var(--ok)}.badge.bad{color:var(--bad)}.badge.busy{color:var(--busy)}.badge.off{color:var(--muted)}
.capacity{display:grid;gap:6px;margin:8px 0 16px}.meter{display:grid;grid-template-columns:110px 360px auto;gap:10px;align-items:center}
svg.timeline{vertical-align:middle}
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
