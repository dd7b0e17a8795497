//! Probe monitors of running containers: liveness (recreate after `failure_threshold`
//! failures) and readiness (out of the router's pool and back), one generation per container so a
//! newer monitor retires an older one; and re-watching after a restart of the server.

use crate::docker_backend::{Rollout, probe_once, probe_timing, service_spec};
use crate::resolving::{resolve_env, volatile_keys};
use crate::state::Shared;
use offshoot_api_types::EnvStatus;
use offshoot_runtime::{ContainerSpec, Namespace, Runtime};
use offshoot_store::ServiceRow;
use offshoot_template::model::Probe;
use std::collections::HashMap;
use std::time::Duration;

/// Watches a service's liveness probe; after `failure_threshold` consecutive failures the
/// container is recreated from its image (a fresh filesystem, as a Kubernetes restart) and the
/// reason recorded.
pub(crate) fn watch_liveness(ctx: &Shared, ns: Namespace, spec: ContainerSpec, probe: Probe, mut ip: Option<std::net::IpAddr>) {
    let (service, container) = (spec.service.clone(), spec.name.clone());
    let key = (ns.env_id.clone(), container.clone());
    let generation = ctx.new_monitor(&key);
    let shared = ctx.clone();
    ctx.background.spawn("liveness monitor", async move {
        let ctx = shared;
        let (period, threshold, initial) = probe_timing(&probe);
        tokio::time::sleep(Duration::from_secs(initial)).await;
        let mut failures = 0;
        loop {
            tokio::time::sleep(Duration::from_secs(period)).await;
            let current = ctx.monitor_generation(&key);
            let live =
                matches!(ctx.store.env(&ns.env_id).await, Ok(Some(e)) if e.status == EnvStatus::Ready || e.status == EnvStatus::Deploying);
            if current != Some(generation) || !live {
                return;
            }
            match probe_once(&ctx, &container, &probe, ip).await {
                Ok(()) => failures = 0,
                // An engine that does not answer says nothing of the container: no restart.
                Err(_) if !engine_answers(&ctx).await => {}
                Err(e) => {
                    failures += 1;
                    if failures < threshold {
                        continue;
                    }
                    failures = 0;
                    let reason = format!("restarted after {threshold} failed liveness probes: {e}");
                    tracing::warn!(env = %ns.env_id, %service, %reason);
                    // Under the environment's lock: no deployment or reconcile round meanwhile.
                    let lock = ctx.lock_for(&ns.env_id);
                    let _guard = lock.lock().await;
                    let recreated = match ctx.rt.remove(&container).await {
                        Ok(()) => ctx.rt.apply(&ns, &spec).await,
                        Err(e) => Err(e),
                    };
                    match recreated {
                        Ok(a) => ip = a.ip,
                        Err(err) => tracing::warn!(env = %ns.env_id, %service, error = %err, "restart failed"),
                    }
                    if let Ok(rows) = ctx.store.services(&ns.env_id).await
                        && let Some(row) = rows.into_iter().find(|r| r.name == service)
                    {
                        crate::state::logged("a restart", ctx.store.set_service(&ServiceRow { reason: Some(reason), ..row }).await);
                    }
                }
            }
        }
    });
}

/// Whether the engine answers now (a probe that failed because it did not is no failure).
async fn engine_answers(ctx: &Shared) -> bool {
    match tokio::time::timeout(Duration::from_secs(5), ctx.rt.engine_info()).await {
        Ok(Ok(_)) => true,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "the engine does not answer; probes wait");
            false
        }
        Err(_) => false,
    }
}

/// Watches a replica's readiness probe once it is serving: after `failure_threshold`
/// consecutive failures it leaves the router's pool, and it comes back at the first success.
pub(crate) fn watch_readiness(ctx: &Shared, ns: Namespace, container: String, probe: Probe) {
    let key = (ns.env_id.clone(), format!("{container}#readiness"));
    let generation = ctx.new_monitor(&key);
    let shared = ctx.clone();
    ctx.background.spawn("readiness monitor", async move {
        let ctx = shared;
        let (period, threshold, _) = probe_timing(&probe);
        let mut failures = 0;
        loop {
            tokio::time::sleep(Duration::from_secs(period)).await;
            let current = ctx.monitor_generation(&key);
            let live =
                matches!(ctx.store.env(&ns.env_id).await, Ok(Some(e)) if e.status == EnvStatus::Ready || e.status == EnvStatus::Deploying);
            if current != Some(generation) {
                return;
            }
            if !live {
                ctx.set_ready(&container, true);
                return;
            }
            // The address may change when the container is recreated.
            let ip = ctx.rt.address(&ns, &container).await.ok().flatten();
            match probe_once(&ctx, &container, &probe, ip).await {
                Ok(()) => {
                    failures = 0;
                    if ctx.set_ready(&container, true) {
                        tracing::info!(env = %ns.env_id, %container, "ready again; back in the router's pool");
                        ctx.refresh_routes().await;
                    }
                }
                Err(_) if !engine_answers(&ctx).await => {}
                Err(e) => {
                    failures += 1;
                    if failures >= threshold && ctx.set_ready(&container, false) {
                        tracing::warn!(env = %ns.env_id, %container, error = %e, "failed its readiness probe; out of the router's pool");
                        ctx.refresh_routes().await;
                    }
                }
            }
        }
    });
}

/// After a restart of the server: liveness monitors for the services of ready environments.
pub(crate) async fn rewatch(ctx: &Shared) {
    let Ok(envs) = ctx.store.envs(None, false).await else { return };
    for env in envs.into_iter().filter(|e| e.status == EnvStatus::Ready) {
        rewatch_env(ctx, &env).await;
    }
}

/// Watches the probes of a ready environment's containers (after a restart, or a wake: the
/// monitors of a sleeping environment stop).
pub(crate) async fn rewatch_env(ctx: &Shared, env: &offshoot_store::Environment) {
    let Ok(resolved) = resolve_env(ctx, env, None).await else { return };
    // The images the services run, as recorded when they became ready.
    let images = crate::state::images_of(ctx, &env.id).await.unwrap_or_default();
    let ns = Namespace::new(env.id.as_str(), env.app.as_str(), &ctx.instance).on_network_of(env.parent_id.as_deref());
    // The repository files its services mount, as the deployment wrote them (the same content,
    // the same paths), so that a liveness restart keeps them.
    let files = match mounted_files(ctx, env, &resolved).await {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(env = %env.id, error = %e, "cannot find the files its services mount; not watching its probes");
            return;
        }
    };
    let plan = Rollout {
        volatile: volatile_keys(&env.env_vars),
        images,
        sites: HashMap::new(),
        ns: ns.clone(),
        env_id: env.id.to_string(),
        resolved,
        files,
    };
    for s in plan.resolved.services.iter().filter(|s| s.static_site.is_none()) {
        let spec = service_spec(&plan, s);
        for i in 0..s.replicas.max(1) {
            let r = if i == 0 { spec.clone() } else { ContainerSpec { name: format!("{}-{i}", spec.name), ..spec.clone() } };
            if let Some(p) = &s.readiness_probe {
                watch_readiness(ctx, ns.clone(), r.name.clone(), p.clone());
            }
            if let Some(p) = &s.liveness_probe {
                let ip = ctx.rt.address(&ns, &r.name).await.ok().flatten();
                watch_liveness(ctx, ns.clone(), r, p.clone(), ip);
            }
        }
    }
}

/// The `configmap` mounts and file secrets of a deployed environment, at its commit.
pub(crate) async fn mounted_files(
    ctx: &Shared,
    env: &offshoot_store::Environment,
    resolved: &offshoot_template::resolve::Resolved,
) -> Result<HashMap<String, Vec<offshoot_runtime::Mount>>, crate::failure::Failure> {
    if ctx.kube.is_some() || resolved.services.iter().all(|s| s.configmap.is_empty() && s.secret_files.is_empty()) {
        return Ok(HashMap::new());
    }
    let (Some(app), Some(commit)) = (ctx.store.app(&env.app).await?, env.commit_sha.as_deref()) else { return Ok(HashMap::new()) };
    let mirror = ctx.mirror_with(&app.repo, commit).await?;
    crate::repo_mounts::materialize(ctx, &env.id, &mirror, commit, resolved).await
}
