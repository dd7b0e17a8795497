//! What the API, the dashboard and pull-request feedback show of applications and
//! environments: their views, built from the store and the server's state.

use crate::backends::EnvBackend;
use crate::error::ApiError;
use crate::state::Shared;
use offshoot_api_types as api;
use offshoot_control::Backend as _;
use offshoot_store::Environment;
use offshoot_template::resolve::host_url;
use std::collections::HashMap;

pub(crate) async fn app_dto(ctx: &Shared, a: offshoot_store::App) -> Result<api::App, ApiError> {
    let v = ctx.store.latest_version(&a.name).await?;
    let source = if v.as_ref().is_some_and(|v| v.template.starts_with("# generated")) { "compose" } else { "release" };
    let git = ctx.store.app_git(&a.name).await?;
    Ok(api::App {
        name: a.name.into(),
        repo: a.repo,
        default_branch: a.default_branch,
        version: v.map_or(0, |v| v.version),
        source: source.into(),
        created_at: a.created_at,
        pull_requests: git.as_ref().is_some_and(|g| g.pull_requests != 0),
        pull_request_label: git.as_ref().and_then(|g| g.pull_request_label.clone()),
        gitops_error: git.as_ref().and_then(|g| g.gitops_error.clone()),
        static_builder: git.as_ref().and_then(|g| g.static_builder.clone()),
        terraform_image: git.as_ref().and_then(|g| g.terraform_image.clone()),
        access: git.as_ref().and_then(|g| g.access.clone()).unwrap_or_else(|| "public".into()),
        fork_secrets: git.as_ref().is_some_and(|g| g.fork_secrets != 0),
        idle_sleep_seconds: git.as_ref().and_then(|g| g.idle_sleep_seconds),
        ttl_seconds: git.as_ref().and_then(|g| g.ttl_seconds),
        pull_request_ttl_seconds: git.as_ref().and_then(|g| g.pull_request_ttl_seconds),
        sleep_schedule: git.as_ref().and_then(|g| g.sleep_schedule.clone()),
        wake_schedule: git.as_ref().and_then(|g| g.wake_schedule.clone()),
        fetch_error: git.and_then(|g| g.fetch_error),
    })
}

/// What an environment's view is made of, besides its own row.
struct EnvParts {
    services: Vec<offshoot_store::ServiceRow>,
    deployments: Vec<offshoot_store::Deployment>,
    /// Deployment → its steps.
    steps: HashMap<String, Vec<api::DeploymentStep>>,
    children: Vec<Environment>,
    datasets: Vec<api::AttachedDataset>,
    /// Its application's idle-sleep default.
    app_idle: Option<i64>,
}

pub(crate) async fn env_dto(ctx: &Shared, e: Environment) -> Result<api::Env, ApiError> {
    let parts = EnvParts {
        services: ctx.store.services(&e.id).await?,
        deployments: ctx.store.deployments(&e.id).await?,
        steps: deployment_steps(ctx, Some(&e.id)).await?,
        children: ctx.store.child_envs(&e.id).await?,
        datasets: crate::clones::attached(ctx, &e.id).await.map_err(|m| anyhow::anyhow!(m))?,
        app_idle: ctx.store.app_git(&e.app).await?.and_then(|g| g.idle_sleep_seconds),
    };
    // Its forked template, parsed once for its parameters and what the runtime ignores of it.
    let fork = crate::resolving::Fork::parse(&e).ok();
    let parameters = fork.as_ref().map(|f| parameters_of(&e, f)).unwrap_or_default();
    let compat = fork.as_ref().map(|f| compat_of(ctx, f)).unwrap_or_default();
    let infrastructure = infrastructure(ctx, &e, fork.as_ref(), None).await?;
    let mut dto = env_dto_of(ctx, e, parts);
    dto.parameters = parameters;
    dto.compat = compat;
    dto.infrastructure = infrastructure;
    Ok(dto)
}

/// An environment's `infrastructure` entries (those of its template, and any it still has
/// state for), each with its runs; the runs' logs only for `only` (one entry).
pub(crate) async fn infrastructure(
    ctx: &Shared,
    e: &Environment,
    fork: Option<&crate::resolving::Fork>,
    only: Option<&str>,
) -> Result<Vec<api::Infrastructure>, ApiError> {
    let states = ctx.store.infra_states(&e.id).await?;
    let mut names: Vec<String> = fork.map(|f| f.infrastructure_names()).unwrap_or_default();
    for s in &states {
        if !names.contains(&s.name) {
            names.push(s.name.clone());
        }
    }
    let runs = ctx.store.infra_runs(&e.id, only).await?;
    let mut out = Vec::new();
    for name in names.into_iter().filter(|n| only.is_none_or(|o| o == n)) {
        let state = states.iter().find(|s| s.name == name);
        let entry_runs: Vec<api::InfrastructureRun> = runs
            .iter()
            .filter(|r| r.name == name)
            .map(|r| api::InfrastructureRun {
                id: r.id.clone(),
                action: r.action.clone(),
                status: r.status.clone(),
                deployment: r.deployment_id.clone(),
                started_at: r.started_at,
                finished_at: r.finished_at,
                reason: r.reason.clone(),
                log: if only.is_some() { r.log.clone() } else { String::new() },
            })
            .collect();
        let status = match state {
            Some(s) => s.status.clone(),
            None if entry_runs.first().is_some_and(|r| r.action == "destroy" && r.status == "succeeded") => "destroyed".into(),
            None => "new".into(),
        };
        let outputs = state.map(crate::infra::plain_outputs).unwrap_or_default();
        // The names of the sensitive outputs, never their values: they are sealed together,
        // so their names are read from the last apply's record of them.
        let sensitive: Vec<String> =
            state.and_then(|s| crate::infra::sensitive_outputs(ctx, s).ok()).map(|m| m.into_keys().collect()).unwrap_or_default();
        out.push(api::Infrastructure {
            status,
            reason: state.and_then(|s| s.reason.clone()),
            outputs: outputs.into_keys().collect(),
            sensitive_outputs: sensitive,
            state: match state {
                Some(s) if s.backend.is_some() => s.backend.clone().unwrap_or_default(),
                Some(s) if s.state.is_some() => "offshoot".into(),
                _ => "none".into(),
            },
            updated_at: state.map_or(0, |s| s.updated_at),
            locked_by: state.and_then(|s| s.locked_by.clone()),
            runs: entry_runs,
            name,
        });
    }
    Ok(out)
}

/// What the server's runtime does not apply of an environment's template (the ledger's
/// findings in its forked template).
fn compat_of(ctx: &Shared, fork: &crate::resolving::Fork) -> Vec<api::CompatItem> {
    offshoot_template::ledger::scan(fork.root(), ctx.runtime())
        .into_iter()
        .map(|f| api::CompatItem { key: f.key, path: f.path, line: f.line, support: f.support.to_owned(), why: f.why.to_owned() })
        .collect()
}

/// Every parameter of an environment's template with its value: given, else the default.
fn parameters_of(e: &Environment, fork: &crate::resolving::Fork) -> Vec<api::ParameterValue> {
    let given = e.given_parameters();
    fork.template()
        .parameters
        .iter()
        .map(|p| match given.get(p.name.as_str()) {
            Some(v) => api::ParameterValue { name: p.name.value.clone(), value: v.clone(), default: false },
            None => api::ParameterValue {
                name: p.name.value.clone(),
                value: p.default.as_ref().map(|d| d.value.clone()).unwrap_or_default(),
                default: true,
            },
        })
        .collect()
}

/// Every environment's view (of one app, or all), from a few queries whatever their number.
pub(crate) async fn env_dtos(ctx: &Shared, app: Option<&str>) -> Result<Vec<api::Env>, ApiError> {
    use std::collections::HashSet;
    let envs = ctx.store.envs(app, false).await?;
    let mut services: HashMap<String, Vec<offshoot_store::ServiceRow>> = HashMap::new();
    for s in ctx.store.live_services().await? {
        services.entry(s.env_id.to_string()).or_default().push(s);
    }
    let mut deployments: HashMap<String, Vec<offshoot_store::Deployment>> = HashMap::new();
    for d in ctx.store.live_deployments().await? {
        deployments.entry(d.env_id.to_string()).or_default().push(d);
    }
    let mut steps = deployment_steps(ctx, None).await?;
    // Imports: every environment that is not deleted, oldest first, by parent.
    let mut all = if app.is_some() { ctx.store.envs(None, false).await? } else { envs.clone() };
    all.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    let mut children: HashMap<String, Vec<Environment>> = HashMap::new();
    for c in all {
        if let Some(p) = c.parent_id.clone() {
            children.entry(p.into_string()).or_default().push(c);
        }
    }
    let leased: HashSet<String> = ctx.store.envs_with_leases().await?.into_iter().collect();
    // One query per application, not per environment.
    let mut app_idle: HashMap<String, Option<i64>> = HashMap::new();
    let mut out = Vec::with_capacity(envs.len());
    for e in envs {
        let idle = match app_idle.get(e.app.as_str()) {
            Some(d) => *d,
            None => {
                let d = ctx.store.app_git(&e.app).await?.and_then(|g| g.idle_sleep_seconds);
                app_idle.insert(e.app.to_string(), d);
                d
            }
        };
        let datasets = if leased.contains(e.id.as_str()) {
            crate::clones::attached(ctx, &e.id).await.map_err(|m| anyhow::anyhow!(m))?
        } else {
            Vec::new()
        };
        let parts = EnvParts {
            services: services.remove(e.id.as_str()).unwrap_or_default(),
            steps: deployments.get(e.id.as_str()).into_iter().flatten().filter_map(|d| steps.remove_entry(d.id.as_str())).collect(),
            deployments: deployments.remove(e.id.as_str()).unwrap_or_default(),
            children: children.remove(e.id.as_str()).unwrap_or_default(),
            datasets,
            app_idle: idle,
        };
        out.push(env_dto_of(ctx, e, parts));
    }
    Ok(out)
}

fn env_dto_of(ctx: &Shared, e: Environment, mut parts: EnvParts) -> api::Env {
    let idle_sleep_seconds = offshoot_control::sleep::idle_limit(&e, parts.app_idle);
    let mut services = Vec::new();
    let lbs = ctx.load_balancers();
    let https = ctx.https();
    for s in parts.services {
        let hostnames = s.detail.hostnames.clone();
        let routing = s.detail.routing.clone().unwrap_or_default();
        let conflicts = ctx.route_conflicts(&e.id, &s.name);
        let mut urls: Vec<String> = Vec::new();
        for (host, path, _) in &routing.routes {
            if conflicts.iter().any(|c| &c.host == host && &c.path == path) {
                continue;
            }
            let url = format!(
                "{}{}",
                host_url(host, Some(ctx.router_port), https.as_ref()),
                if path.starts_with('/') { path.as_str() } else { "/" }
            );
            if !urls.contains(&url) {
                urls.push(url);
            }
        }
        // On Kubernetes the cluster's ingress serves them (recorded at deployment).
        urls.extend(s.detail.urls.iter().cloned());
        let load_balancers = crate::routes::lb_for_env(&lbs, &e.id, &s.name)
            .into_iter()
            .map(|(port, addr)| api::LoadBalancer { port, address: addr.to_string() })
            .collect();
        let notes: Vec<&str> = conflicts.iter().map(|c| c.message.as_str()).collect();
        let reason = match (s.reason, notes.is_empty()) {
            (r, true) => r,
            (Some(r), false) => Some(format!("{r}; {}", notes.join("; "))),
            (None, false) => Some(notes.join("; ")),
        };
        services.push(api::Service { name: s.name, status: s.status, reason, hostnames, urls, load_balancers });
    }
    let deployments = parts
        .deployments
        .into_iter()
        .map(|d| (parts.steps.remove(d.id.as_str()).unwrap_or_default(), d))
        .map(|(steps, d)| api::Deployment {
            id: d.id.into(),
            workflow: d.workflow,
            commit: d.commit_sha,
            status: d.status,
            error: d.error,
            phases: serde_json::from_str(&d.phases).unwrap_or_default(),
            created_at: d.created_at,
            finished_at: d.finished_at,
            steps,
        })
        .collect();
    let mut imports = Vec::new();
    for c in parts.children {
        let info = offshoot_control::imports::ImportInfo::of(&c);
        imports.push(api::Import {
            app: c.app.into(),
            branch: c.branch,
            commit: c.commit_sha,
            env_id: c.id.into(),
            status: c.status,
            reason: info.reason,
        });
    }
    let warnings = if e.parent_id.is_none() { offshoot_control::imports::ImportInfo::of(&e).warnings } else { Vec::new() };
    let given = e.given_parameters().into_iter().map(|(name, value)| api::ParameterValue { name, value, default: false }).collect();
    api::Env {
        id: e.id.into(),
        app: e.app.into(),
        branch: e.branch,
        commit: e.commit_sha,
        status: e.status,
        reason: e.reason,
        environment_template: e.environment_template,
        services,
        deployments,
        created_at: e.created_at,
        expires_at: e.expires_at,
        sleeping_since: e.sleeping_since,
        last_request_at: e.last_request_at,
        idle_sleep_seconds,
        imports,
        parent: e.parent_id.map(offshoot_store::EnvId::into_string),
        warnings,
        pull_request: e.pull_request.as_deref().and_then(|p| serde_json::from_str::<offshoot_git::hooks::PullRequest>(p).ok()).map(|p| {
            api::PullRequestRef { provider: p.provider.as_str().to_owned(), repo: p.repo, number: p.number, url: p.url, labels: p.labels }
        }),
        datasets: parts.datasets,
        parameters: given,
        compat: Vec::new(),
        infrastructure: Vec::new(),
    }
}

/// Deployment → its steps, from the step logs (the imports step, kept at a negative index,
/// first): of one environment, or of every environment that is not deleted.
async fn deployment_steps(ctx: &Shared, env_id: Option<&str>) -> Result<HashMap<String, Vec<api::DeploymentStep>>, ApiError> {
    let mut out: HashMap<String, Vec<api::DeploymentStep>> = HashMap::new();
    for s in ctx.store.deployment_steps(env_id).await? {
        out.entry(s.deployment.into_string()).or_default().push(api::DeploymentStep { name: s.name, status: s.status, output: s.output });
    }
    Ok(out)
}

/// The latest `tail` lines (at most 10,000) of an environment's services, or of one.
pub(crate) async fn logs(ctx: &Shared, id: &str, service: Option<&str>, tail: usize) -> Result<Vec<api::Logs>, ApiError> {
    let e = offshoot_control::find_env(&ctx.store, id).await?;
    let out: Vec<api::Logs> = EnvBackend::at_rest(ctx, &e)
        .logs(service, tail.min(10_000))
        .await?
        .into_iter()
        .map(|(service, logs)| api::Logs { service, logs })
        .collect();
    match service {
        Some(s) if out.is_empty() => Err(ApiError::not_found("running service", s)),
        _ => Ok(out),
    }
}

/// An environment's cron jobs with their latest runs (on Kubernetes, the cluster keeps them).
pub(crate) async fn cron_jobs(ctx: &Shared, e: &Environment) -> Result<Vec<api::CronJob>, ApiError> {
    let now = offshoot_store::now_ms();
    let runs = ctx.store.cron_runs(&e.id, None).await?;
    let ns = ctx.kube.as_ref().map(|_| crate::kube_rt::namespace(e));
    Ok(offshoot_control::cron::cron_jobs_of(e)
        .into_iter()
        .map(|j| api::CronJob {
            next_at: offshoot_template::schedule::Schedule::parse(&j.schedule).ok().and_then(|s| s.next_after(now)),
            runs: runs
                .iter()
                .filter(|r| r.job == j.name)
                .map(|r| api::CronRun {
                    id: r.id.clone(),
                    scheduled_at: r.scheduled_at,
                    started_at: r.started_at,
                    finished_at: r.finished_at,
                    status: r.status.clone(),
                    reason: r.reason.clone(),
                    output: r.output.clone(),
                })
                .collect(),
            note: ns.as_ref().map(|ns| format!("the cluster's CronJob runs it: `kubectl get jobs -n {ns}`")),
            name: j.name,
            schedule: j.schedule,
        })
        .collect())
}
