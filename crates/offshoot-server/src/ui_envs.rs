//! The dashboard's environment pages: the list (with the server's capacity as bars), one
//! environment live (its services, its deployments' phases as a timeline, its workflow's steps,
//! its logs), and the forms that create, deploy, extend, sleep, wake and delete.

use crate::crypto::hash_token;
use crate::error::ApiError;
use crate::plane::control;
use crate::state::Shared;
use crate::ui::{CsrfForm, Session, ago, csrf_field, csrf_ok, error_box, forbidden, page, state_badge, until, when};
use axum::Router;
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{Markup, html};
use offshoot_api_types as dto;
use serde::Deserialize;
use std::time::Duration;

pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/ui/envs", get(envs).post(create_env))
        .route("/ui/envs/{id}", get(env))
        .route("/ui/envs/{id}/deploy", post(deploy_env))
        .route("/ui/envs/{id}/delete", post(delete_env))
        .route("/ui/envs/{id}/sleep", post(sleep_env))
        .route("/ui/envs/{id}/wake", post(wake_env))
        .route("/ui/envs/{id}/extend", post(extend_env))
        .route("/ui/envs/{id}/events", get(env_events))
        .route("/ui/envs/{id}/logs/{service}", get(log_events))
}

/// The form that creates an environment: of one application (with a field per parameter of its
/// template: a choice when it lists options, required when it has no default), or of any (with
/// the parameters as `NAME=VALUE` lines).
pub(crate) fn new_env_form(s: &Session, app: Option<&str>, apps: &[String], params: &[offshoot_template::model::Parameter]) -> Markup {
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
            @for p in params {
                @let id = format!("param_{}", p.name);
                @let default = p.default.as_ref().map(|d| d.as_str());
                label for=(id) { "Parameter " code { (p.name) } @if let Some(d) = &p.description { " " span.muted { (d) } } }
                @if p.options.is_empty() {
                    input id=(id) name=(id) placeholder=[default] required[default.is_none()];
                } @else {
                    select id=(id) name=(id) required[default.is_none()] {
                        @for o in &p.options { option value=(o) selected[Some(o.as_str()) == default] { (o) } }
                    }
                }
            }
            @if app.is_none() {
                label for="params" { "Parameters (optional: NAME=VALUE, one per line)" }
                textarea #params name="params" rows="2" spellcheck="false" {}
            }
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
    let usage = match control(ctx, s.1.clone()).usage().await {
        Ok(u) => u,
        Err(e) => return ApiError::from(e).into_response(),
    };
    // A certificate that fails to be issued or renewed is everyone's concern: it is shown first.
    let failing: Vec<_> = match ctx.store.certificates().await {
        Ok(rows) => rows.into_iter().filter(|c| c.last_error.is_some()).collect(),
        Err(e) => return ApiError::from(e).into_response(),
    };
    let body = html! {
        @if let Some(e) = &error { (error_box(e)) }
        @for c in &failing {
            div.error role="alert" {
                "HTTPS: the certificate for " code { (c.names.replace(',', ", ")) } " failed " (c.failures) " time(s), next try "
                (until(c.next_attempt)) ": " (c.last_error.as_deref().unwrap_or_default())
                @if let Some(na) = c.not_after { ". The current one expires " (until(na)) "." }
            }
        }
        (capacity(usage, ctx.capacity))
        @if list.is_empty() { p { "No environment yet." } } @else {
            div.scroll tabindex="0" role="region" aria-label="Scrollable table" { table {
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
        @if !apps.is_empty() { (new_env_form(s, None, &apps, &[])) }
    };
    (status, page("Environments", Some(s), body)).into_response()
}

/// The server's capacity as bars (SVG, as [`timeline`]): environments running (of the limit)
/// and sleeping, and the memory their services may take (of the budget).
fn capacity(u: offshoot_control::capacity::Usage, cap: offshoot_control::capacity::Capacity) -> Markup {
    use offshoot_control::capacity::bytes;
    const WIDTH: f64 = 360.0;
    let share = |used: f64, of: f64| if of > 0.0 { (WIDTH * used / of).clamp(0.0, WIDTH) } else { 0.0 };
    let envs_of = cap.max_environments.unwrap_or(u.running + u.sleeping).max(1) as f64;
    let (run, sleep) = (share(u.running as f64, envs_of), share(u.sleeping as f64, envs_of));
    let memory = cap.memory_budget.map_or(0.0, |b| share(u.memory as f64, b as f64));
    let bar = |label: String, parts: Vec<(f64, f64, &'static str)>| {
        html! {
            svg.bar width=(WIDTH) height="12" viewBox={ "0 0 " (WIDTH) " 12" } role="img" aria-label=(label) {
                rect width=(WIDTH) height="12" rx="6" fill="#eaeef2" {}
                @for (x, w, fill) in parts { @if w > 0.0 { rect x=(format!("{x:.1}")) width=(format!("{w:.1}")) height="12" fill=(fill) {} } }
            }
        }
    };
    html! {
        section.capacity aria-label="Capacity" {
            div.meter {
                span.what { "Environments" }
                (bar(format!("{} running, {} sleeping", u.running, u.sleeping), vec![(0.0, run, "#116329"), (run, sleep.min(WIDTH - run), "#8c959f")]))
                span { (u.running) " running" @if let Some(m) = cap.max_environments { " of " (m) } ", " (u.sleeping) " sleeping" }
            }
            div.meter {
                span.what { "Memory" }
                (bar(format!("{} of the services' memory limits in use", bytes(u.memory)), vec![(0.0, memory, "#116329")]))
                span { (bytes(u.memory)) @if let Some(b) = cap.memory_budget { " of " (bytes(b)) } @else { " (no budget)" } }
            }
        }
    }
}

#[derive(Deserialize)]
struct NewEnv {
    csrf: String,
    app: String,
    branch: String,
    ttl_hours: Option<String>,
    /// `NAME=VALUE` lines, and `param_NAME` fields.
    #[serde(default)]
    params: String,
    #[serde(flatten)]
    fields: std::collections::HashMap<String, String>,
}

impl NewEnv {
    /// The parameters given: the non-empty `param_NAME` fields and the `NAME=VALUE` lines.
    fn parameters(&self) -> Result<std::collections::BTreeMap<String, String>, String> {
        let mut out: std::collections::BTreeMap<String, String> = self
            .fields
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix("param_")?.to_owned(), v.clone())))
            .filter(|(_, v)| !v.is_empty())
            .collect();
        for line in self.params.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let (k, v) = offshoot_template::params::parse_assignment(line).map_err(|e| format!("Parameters: {e}"))?;
            out.insert(k, v);
        }
        Ok(out)
    }
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
    let parameters = match f.parameters() {
        Ok(p) => p,
        Err(e) => return render_envs(&ctx, &s, Some(ApiError::bad_request(e))).await,
    };
    let req = offshoot_control::environments::NewEnv {
        app: f.app,
        branch: f.branch.trim().to_owned(),
        ttl_seconds: ttl,
        parameters,
        ..Default::default()
    };
    match control(&ctx, s.1.clone()).create_env(req).await {
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

/// A deployment's phases as one bar (SVG: the pages' policy allows no inline style), a segment
/// per phase in proportion to its time (the `ready` phase is the total, from the start), each
/// titled with its milliseconds.
fn timeline(p: &std::collections::BTreeMap<String, u64>) -> Markup {
    const WIDTH: f64 = 220.0;
    let parts: Vec<(&str, u64)> = phases(p).into_iter().filter(|(k, _)| *k != "ready").collect();
    let total = p.get("ready").copied().unwrap_or_else(|| parts.iter().map(|(_, v)| v).sum()).max(1);
    let label = parts.iter().map(|(k, v)| format!("{k} {v} ms")).collect::<Vec<_>>().join(", ");
    let colour = |k: &str| match k {
        "fetch" => "#8250df",
        "build" => "#0a58ca",
        "start" => "#116329",
        "push" | "datasets" => "#7d4e00",
        _ => "#6e7781",
    };
    let mut x = 0.0;
    let segs: Vec<(f64, f64, &str, u64)> = parts
        .iter()
        .map(|(k, v)| {
            let w = (WIDTH * *v as f64 / total as f64).clamp(1.0, WIDTH);
            let seg = (x, w, *k, *v);
            x += w;
            seg
        })
        .collect();
    html! {
        @if parts.is_empty() { span.muted { "–" } } @else {
            svg.timeline width=(WIDTH) height="16" viewBox={ "0 0 " (WIDTH) " 16" } role="img" aria-label={ (label) ", ready after " (total) " ms" } {
                rect width=(WIDTH) height="16" fill="#eaeef2" {}
                @for (x, w, k, v) in &segs {
                    rect x=(format!("{x:.1}")) width=(format!("{w:.1}")) height="16" fill=(colour(k)) { title { (k) " " (v) " ms" } }
                    @if *w >= 34.0 { text x=(format!("{:.1}", x + 3.0)) y="12" font-size="10" fill="#fff" { (k) } }
                }
            }
            " " span.muted { (total) " ms" }
        }
    }
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
        div.scroll tabindex="0" role="region" aria-label="Scrollable table" { table #services {
            thead { tr { th scope="col" { "Service" } th scope="col" { "State" } th scope="col" { "URLs" } th scope="col" { "Logs" } } }
            tbody { @for svc in &e.services { tr {
                td { (svc.name) }
                td { (state_badge(svc.status.as_str())) @if let Some(r) = &svc.reason { " " span.muted { (r) } } }
                td { @for u in &svc.urls { a href=(u) target="_blank" rel="noopener" { (u) } br; } }
                td { button.link type="button" data-logs=(svc.name) aria-controls="logs" { "Show logs" } }
            } } }
        } }
        h2 { "Deployments" }
        div.scroll tabindex="0" role="region" aria-label="Scrollable table" { table #deployments {
            thead { tr { th scope="col" { "Workflow" } th scope="col" { "Commit" } th scope="col" { "Status" } th scope="col" { "Phases" } th scope="col" { "Started" } } }
            tbody { @for d in e.deployments.iter().rev() { tr {
                td { (d.workflow) }
                td { code { (d.commit.as_deref().map_or("", |c| &c[..c.len().min(10)])) } }
                td { (state_badge(d.status.as_str())) @if let Some(err) = &d.error { " " span.muted { (err) } } }
                td { (timeline(&d.phases)) }
                td { (when(d.created_at)) }
            } } }
        } }
        @if let Some(d) = e.deployments.last() {
            h2 { "Workflow steps of the latest deployment (" (d.workflow) ")" }
            @if steps.is_empty() { p.muted { "No step has run yet." } } @else {
                div.scroll tabindex="0" role="region" aria-label="Scrollable table" { table #steps {
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
    let cron = match crate::plane::find_env(&ctx, &id).await {
        Ok(env) => crate::views::cron_jobs(&ctx, &env).await.unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    let body = html! {
        p { "Application " a href={ "/ui/apps/" (e.app) } { (e.app) } ", branch " strong { (e.branch) } ", created " (ago(e.created_at))
            @if let Some(t) = e.expires_at { ", expires " (until(t)) } "." }
        div #live data-events={ "/ui/envs/" (id) "/events" } aria-live="polite" { (env_live(&e, &steps)) }
        @if !cron.is_empty() {
            h2 { "Cron jobs" }
            div.scroll tabindex="0" role="region" aria-label="Scrollable table" { table #cron {
                thead { tr { th scope="col" { "Job" } th scope="col" { "Schedule (UTC)" } th scope="col" { "Next" } th scope="col" { "Latest runs" } } }
                tbody { @for j in &cron { tr {
                    td { (j.name) }
                    td { code { (j.schedule) } }
                    td { @if let Some(t) = j.next_at { (until(t)) } }
                    td {
                        @if let Some(n) = &j.note { span.muted { (n) } }
                        @for r in j.runs.iter().take(5) {
                            (state_badge(&r.status)) " " (ago(r.scheduled_at))
                            @if let Some(why) = &r.reason { " " span.muted { (why) } }
                            br;
                        }
                    }
                } } }
            } }
        }
        @if !e.infrastructure.is_empty() {
            h2 { "Infrastructure" }
            p.muted { "Terraform modules of this environment; `offshoot env logs " (e.id) " --infrastructure NAME` prints a run's output." }
            table #infrastructure { thead { tr { th { "Entry" } th { "Status" } th { "State" } th { "Outputs" } th { "Last run" } } }
                tbody { @for i in &e.infrastructure { tr {
                    td { code { (i.name) } }
                    td { (state_badge(&i.status)) @if let Some(why) = &i.reason { br; span.muted { (why.lines().next().unwrap_or_default()) } } }
                    td { (i.state) }
                    td { @for o in &i.outputs { code { (o) } " " } @for o in &i.sensitive_outputs { code { (o) } " (sensitive) " } }
                    td { @if let Some(r) = i.runs.first() { (r.action) " " (state_badge(&r.status)) " " (ago(r.started_at)) } }
                } } }
            }
        }
        @if !e.compat.is_empty() {
            h2 { "Not applied here" }
            p.muted { "Keys of this environment's template that its runtime ignores, and why." }
            ul #compat { @for c in &e.compat {
                li { code { (c.path) } " (line " (c.line) "): " (c.why) }
            } }
        }
        @if !e.parameters.is_empty() {
            h2 { "Parameters" }
            dl #parameters { @for p in &e.parameters {
                dt { code { (p.name) } }
                dd { (p.value) @if p.default { " " span.muted { "(default)" } } }
            } }
        }
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

/// What an environment's action answers: back to its page, or the refusal on a page of its own.
fn acted<T>(s: &Session, id: &str, refused: &str, result: Result<T, offshoot_control::ControlError>) -> Response {
    match result.map_err(ApiError::from) {
        Ok(_) => Redirect::to(&format!("/ui/envs/{id}")).into_response(),
        Err(e) => (e.status, page(refused, Some(s), error_box(&e))).into_response(),
    }
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
    acted(&s, &id, "Deploy refused", control(&ctx, s.1.clone()).deploy_env(&id, None).await)
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
    acted(&s, &id, "Extend refused", control(&ctx, s.1.clone()).extend_env(&id, f.ttl).await)
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
    acted(&s, &id, "Sleep refused", crate::waking::sleep(&ctx, s.1.clone(), &id).await)
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
    acted(&s, &id, "Wake refused", crate::waking::wake(&ctx, s.1.clone(), &id).await)
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
    acted(&s, &id, "Delete refused", control(&ctx, s.1.clone()).delete_env(&id, None).await)
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
