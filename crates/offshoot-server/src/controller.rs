//! The environment controller: runs a deployment (fetch → resolve → build → workflow steps)
//! or a teardown, recording every step so that a restarted server resumes where it stopped.
//! One operation per environment at a time (a lock per environment id).

use crate::backends::EnvBackend;
use crate::failure::Failure;
use crate::resolving::{Fork, resolve_env, resolve_fork};
use crate::state::{Ctx, Shared, set_service};
use offshoot_api_types::{DeploymentStatus, EnvStatus, ServiceStatus};
use offshoot_control::{ExecError, StepStatus, StoreLog, Workflow, execute_in};
use offshoot_runtime::{Namespace, Runtime};
use offshoot_store::{Deployment, Environment, ServiceDetail, Step};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Starts running a deployment in the background.
pub(crate) fn spawn(ctx: &Shared, deployment_id: offshoot_store::DeploymentId) {
    let shared = ctx.clone();
    ctx.background.spawn("deployment", async move {
        if let Err(e) = run(&shared, &deployment_id).await {
            tracing::error!(deployment = %deployment_id, error = %e, "deployment could not run");
        }
    });
}

/// Runs a deployment now and waits for it.
pub(crate) async fn run_now(ctx: &Shared, deployment_id: &str) -> anyhow::Result<()> {
    run_boxed(ctx, deployment_id).await
}

/// `run` behind a pointer, for the deployments of imports (run from within a deployment).
fn run_boxed<'a>(
    ctx: &'a Shared,
    deployment_id: &'a str,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>> + Send + 'a>> {
    Box::pin(run(ctx, deployment_id))
}

async fn run(ctx: &Shared, deployment_id: &str) -> anyhow::Result<()> {
    let Some(dep) = ctx.store.deployment(deployment_id).await? else { return Ok(()) };
    let lock = ctx.lock_for(&dep.env_id);
    let _guard = lock.lock().await;
    // Re-read under the lock: another run may have finished it.
    let Some(dep) = ctx.store.deployment(deployment_id).await? else { return Ok(()) };
    if dep.status != DeploymentStatus::Running {
        return Ok(());
    }
    let Some(env) = ctx.store.env(&dep.env_id).await? else { return Ok(()) };
    tracing::info!(env = %env.id, workflow = %dep.workflow, deployment = %dep.id, "running");
    let workflow = dep.workflow.parse::<Workflow>();
    let result = match &workflow {
        Ok(Workflow::Teardown) => teardown(ctx, &dep, &env).await,
        Ok(w) => deploy(ctx, &dep, &env, *w).await,
        Err(e) => Err(Failure::Reason(e.to_string())),
    };
    match result {
        Ok(()) => {
            ctx.store.finish_deployment(&dep.id, DeploymentStatus::Succeeded, None).await?;
            let next = if workflow == Ok(Workflow::Teardown) { EnvStatus::Deleted } else { EnvStatus::Ready };
            ctx.store.set_env_status(&env.id, next, None).await?;
            tracing::info!(env = %env.id, workflow = %dep.workflow, "done");
        }
        Err(failure) => {
            let reason = failure.to_string();
            ctx.store.finish_deployment(&dep.id, DeploymentStatus::Failed, Some(&reason)).await?;
            ctx.store.set_env_status(&env.id, EnvStatus::Failed, Some(&reason)).await?;
            tracing::warn!(env = %env.id, workflow = %dep.workflow, %reason, "failed");
        }
    }
    ctx.refresh_routes().await;
    if let Ok(Some(now)) = ctx.store.env(&env.id).await {
        crate::feedback::notify(ctx, &now);
    }
    Ok(())
}

fn ms(t: Instant) -> u64 {
    t.elapsed().as_millis() as u64
}

async fn deploy(ctx: &Shared, dep: &Deployment, env: &Environment, workflow: Workflow) -> Result<(), Failure> {
    let mut phases: BTreeMap<String, u64> = BTreeMap::new();
    if env.status != EnvStatus::Creating {
        ctx.store.set_env_status(&env.id, EnvStatus::Deploying, None).await?;
    }
    let app = ctx.store.app(&env.app).await?.ok_or("the application was deleted")?;
    let fork = Fork::parse(env)?;

    // Imports first, in order, then this environment; under `parallelize_app_imports` the
    // imports and this environment are all set up at once (their variables are known from their
    // records), and this one is ready when they all are.
    let mut imports = None;
    if workflow == Workflow::Setup {
        if fork.parallel_imports() {
            let (ctx2, dep2, env2) = (ctx.clone(), dep.clone(), env.clone());
            // Tracked, and not stopped when this deployment fails first: the imports finish.
            imports = Some(ctx.background.spawn_joinable("imports", async move { deploy_imports(&ctx2, &dep2, &env2, true).await }));
        } else {
            deploy_imports(ctx, dep, env, false).await?;
        }
    }

    // Fetch.
    let t = Instant::now();
    let mirror = match &dep.commit_sha {
        Some(c) => ctx.mirror_with(&app.repo, c).await,
        None => ctx.sync_mirror(&app.repo).await,
    }
    .map_err(|e| format!("fetch: {e}"))?;
    let commit = match &dep.commit_sha {
        Some(c) => {
            let m = mirror.clone();
            let c2 = c.clone();
            let ok = tokio::task::spawn_blocking(move || m.has_commit(&c2)).await??;
            if !ok {
                return Err(format!("commit `{c}` is not in the repository").into());
            }
            c.clone()
        }
        None => {
            let (m, b) = (mirror.clone(), env.branch.clone());
            tokio::task::spawn_blocking(move || m.resolve(&b))
                .await??
                .ok_or_else(|| format!("branch `{}` does not exist in the repository", env.branch))?
        }
    };
    ctx.store.set_env_commit(&env.id, &commit).await?;
    ctx.store.set_deployment_commit(&dep.id, &commit).await?;
    phases.insert("fetch".into(), ms(t));

    // Instant Datasets: a clone of each listed dataset is checked out before anything resolves
    // (its variables are built-ins, which `mapping` may use).
    let t = Instant::now();
    let wanted = fork.datasets(env);
    let system = crate::plane::control(ctx, offshoot_control::Actor::system("controller"));
    system.attach_datasets(env, &wanted, ctx.dataset_wait).await?;
    phases.insert("datasets".into(), ms(t));
    // An attach from a full pool takes well under a millisecond: microseconds too.
    phases.insert("datasets_us".into(), t.elapsed().as_micros() as u64);

    // Resolve.
    let resolved = resolve_fork(ctx, env, &fork, Some(&commit)).await?;
    let plan = offshoot_control::plan(&resolved, workflow)?;

    // Build (content-addressed: an unchanged context is never rebuilt) and pull.
    let t = Instant::now();
    let auths = ctx.registry_auths(&app.name).await?;
    let source = crate::sites::At { app: &app.name, deployment: &dep.id, env_id: &env.id, mirror: &mirror, commit: &commit, auths: &auths };
    let (images, sites) = crate::builds::build_all(ctx, &source, &resolved, &plan).await?;
    phases.insert("build".into(), ms(t));
    let log = StoreLog::new(ctx.store.clone(), dep.id.clone());
    let backend =
        EnvBackend::for_deployment(ctx, (env, &dep.id), resolved, (images, sites), (&mirror, &commit), &auths, &mut phases).await?;
    record_phases(ctx, &dep.id, &phases).await?;
    let t = Instant::now();
    let result = execute_in(&plan, &Arc::new(backend), &log, &|work| ctx.background.spawn("detached step", work)).await;
    phases.insert("start".into(), ms(t));
    // A halted workflow ends now; otherwise the imports set up beside it are waited for.
    if let Err(e @ ExecError::Halted { .. }) = &result {
        return Err(Failure::Reason(e.to_string()));
    }
    if let Some(imports) = imports {
        imports
            .await
            .map_err(|e| Failure::Reason(format!("imports: {e}")))?
            .ok_or_else(|| Failure::from("imports: stopped with the server"))??;
    }
    // Wall time from the request to a ready environment.
    phases.insert("ready".into(), u64::try_from(offshoot_store::now_ms() - dep.created_at).unwrap_or(0));
    record_phases(ctx, &dep.id, &phases).await?;
    result.map(|_| ()).map_err(Failure::from)
}

/// Records a deployment's phase timings.
async fn record_phases(ctx: &Ctx, deployment: &str, phases: &BTreeMap<String, u64>) -> Result<(), Failure> {
    let text = serde_json::to_string(phases).map_err(|e| Failure::Reason(format!("phase timings: {e}")))?;
    Ok(ctx.store.set_phases(deployment, &text).await?)
}

/// Index of the imports step in a deployment's step log (before the workflow's own steps).
const IMPORTS_STEP: i64 = -1;

/// Sets up the environments of the imported apps; a resumed deployment skips this when it was
/// done, and waits for an import's deployment that is still running rather than starting another.
async fn deploy_imports(ctx: &Shared, dep: &Deployment, env: &Environment, parallel: bool) -> Result<(), Failure> {
    let children = ctx.store.child_envs(&env.id).await?;
    if children.is_empty() {
        return Ok(());
    }
    if ctx.store.steps(&dep.id).await?.iter().any(|s| s.idx == IMPORTS_STEP && s.status == StepStatus::Done.as_str()) {
        return Ok(());
    }
    let record = |status: StepStatus, output: String| Step {
        deployment: dep.id.clone(),
        idx: IMPORTS_STEP,
        name: "imports".into(),
        status: status.as_str().into(),
        output,
    };
    ctx.store.set_step(&record(StepStatus::Running, String::new())).await?;
    // The shared network exists before any import joins it.
    let ns = Namespace::new(env.id.as_str(), env.app.as_str(), &ctx.instance);
    ctx.rt.ensure_namespace(&ns).await?;
    let results: Vec<Result<String, Failure>> = if parallel {
        futures_util::future::join_all(children.iter().map(|c| deploy_import(ctx, c))).await
    } else {
        let mut out = Vec::new();
        for c in &children {
            let r = deploy_import(ctx, c).await;
            let failed = r.is_err();
            out.push(r);
            if failed {
                break;
            }
        }
        out
    };
    let (done, failed): (Vec<_>, Vec<_>) = results.into_iter().partition(Result::is_ok);
    let done: Vec<String> = done.into_iter().filter_map(Result::ok).collect();
    if let Some(Err(e)) = failed.into_iter().next() {
        ctx.store.set_step(&record(StepStatus::Failed, e.to_string())).await?;
        return Err(e);
    }
    ctx.store.set_step(&record(StepStatus::Done, done.join("; "))).await?;
    Ok(())
}

/// Sets up one imported app's environment and waits for it.
async fn deploy_import(ctx: &Shared, child: &Environment) -> Result<String, Failure> {
    let running = ctx.store.deployments(&child.id).await?.into_iter().rfind(|d| d.status == DeploymentStatus::Running);
    match running {
        // Interrupted by a restart: `recover` resumes it; wait for it.
        Some(d) => loop {
            match ctx.store.deployment(&d.id).await? {
                Some(now) if now.status == DeploymentStatus::Running => tokio::time::sleep(Duration::from_millis(200)).await,
                _ => break,
            }
        },
        None => {
            let d = offshoot_control::environments::new_deployment(&child.id, Workflow::Setup, None);
            ctx.store.create_deployment(&d).await?;
            run_boxed(ctx, &d.id).await?;
        }
    }
    let now = ctx.store.env(&child.id).await?.ok_or("an imported environment disappeared")?;
    if now.status == EnvStatus::Ready {
        Ok(format!("{} ({}) ready", child.app, child.id))
    } else {
        Err(format!("import `{}` ({}): {}", child.app, child.id, now.reason.unwrap_or_else(|| now.status.to_string())).into())
    }
}

async fn teardown(ctx: &Shared, dep: &Deployment, env: &Environment) -> Result<(), Failure> {
    ctx.store.set_env_status(&env.id, EnvStatus::TearingDown, None).await?;
    // The imported apps' environments go first (their containers sit on this one's network).
    for child in ctx.store.child_envs(&env.id).await? {
        if child.status == EnvStatus::Deleted {
            continue;
        }
        ctx.store.set_env_status(&child.id, EnvStatus::TearingDown, None).await?;
        let d = offshoot_control::environments::new_deployment(&child.id, Workflow::Teardown, None);
        ctx.store.create_deployment(&d).await?;
        run_boxed(ctx, &d.id).await?;
    }
    // The teardown workflow runs first (its jobs may need the environment); the removal itself
    // happens even when the workflow failed or the configuration no longer resolves, unless
    // infrastructure is left that could not be destroyed: then the environment stays, failed,
    // with its Terraform state, to be deleted again.
    let resolved = resolve_env(ctx, env, None).await;
    let runner = teardown_runner(ctx, dep, env, resolved.as_ref().ok()).await?;
    if let Err(e) = teardown_workflow(ctx, dep, env, resolved, &runner).await {
        tracing::warn!(env = %env.id, error = %e, "the teardown workflow failed; removing the environment anyway");
    }
    crate::infra::destroy_remaining(ctx, &runner, &dep.id).await?;
    crate::backends::remove(ctx, env).await?;
    ctx.store.forget_infra_runs(&env.id).await?;
    // The containers are gone: their databases go back.
    if let Err(e) = crate::plane::control(ctx, offshoot_control::Actor::system("controller")).detach_datasets(&env.id).await {
        tracing::error!(env = %env.id, error = %e, "datasets: cannot check the environment's clones in; the pool keeper will");
    }
    for s in ctx.store.services(&env.id).await? {
        set_service(ctx, &env.id, &s.name, ServiceStatus::Deleted, None, ServiceDetail::new()).await;
    }
    Ok(())
}

/// The Terraform runner of a teardown: the repository at the deployed commit is fetched only
/// when there is infrastructure to destroy.
async fn teardown_runner(
    ctx: &Shared,
    dep: &Deployment,
    env: &Environment,
    resolved: Option<&offshoot_template::resolve::Resolved>,
) -> Result<crate::infra::Runner, Failure> {
    let entries = resolved.map(|r| r.infrastructure.clone()).unwrap_or_default();
    if ctx.store.infra_states(&env.id).await?.is_empty() {
        return Ok(crate::infra::Runner::new(ctx, env, &dep.id, None, entries, Default::default()));
    }
    let gone = "its Terraform module cannot be read to destroy what it made";
    let app = ctx.store.app(&env.app).await?.ok_or_else(|| format!("the application was deleted: {gone}"))?;
    let commit = env.commit_sha.clone().ok_or_else(|| format!("the environment has no deployed commit: {gone}"))?;
    let mirror = ctx.mirror_with(&app.repo, &commit).await.map_err(|e| format!("fetch: {e}"))?;
    let auths = ctx.registry_auths(&app.name).await?;
    Ok(crate::infra::Runner::new(ctx, env, &dep.id, Some((mirror, commit)), entries, auths))
}

/// Runs the environment's teardown workflow on its engine (jobs with the images its services
/// last ran, `infrastructure.<name>` destroying), recorded in the deployment's step log like
/// any other.
async fn teardown_workflow(
    ctx: &Shared,
    dep: &Deployment,
    env: &Environment,
    resolved: Result<offshoot_template::resolve::Resolved, Failure>,
    runner: &crate::infra::Runner,
) -> Result<(), Failure> {
    let resolved = resolved?;
    let plan = offshoot_control::plan(&resolved, Workflow::Teardown)?;
    let images = crate::state::images_of(ctx, &env.id).await?;
    let log = StoreLog::new(ctx.store.clone(), dep.id.clone());
    let backend = EnvBackend::for_teardown(ctx, env, resolved.clone(), images).with_runner(runner.clone(), resolved);
    let result = execute_in(&plan, &Arc::new(backend), &log, &|work| ctx.background.spawn("detached step", work)).await;
    result.map(|_| ()).map_err(Failure::from)
}
