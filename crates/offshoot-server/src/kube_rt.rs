//! Environments on Kubernetes (`offshoot server --runtime kubernetes`): images are built by the
//! local engine as on Docker and, with `--registry`, pushed and referenced by digest; the
//! environment is rendered (`offshoot-manifests`) and applied workflow step by step: a step's
//! services are applied and their rollout waited for, its jobs run to completion; then the
//! ingresses, then what the template no longer has is pruned. Teardown deletes the namespace
//! (an imported app's environment, which shares its importer's, deletes its own objects).
//! Kubernetes restarts and schedules; the reconciler does not recreate containers here.

use crate::controller::{Shared, set_service, workflow_tasks};
use offshoot_api_types::status;
use offshoot_kube::Kube;
use offshoot_manifests::{Manifest, Options, job_name, job_secret_name, render};
use offshoot_store::{Deployment, Environment};
use offshoot_template::resolve::Resolved;
use std::collections::HashMap;
use std::time::Duration;

/// How long a step's rollout may take.
const ROLLOUT_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a namespace may take to go.
const DELETE_TIMEOUT: Duration = Duration::from_secs(300);

/// The Kubernetes settings of a server.
pub(crate) struct KubeRuntime {
    pub(crate) kube: Kube,
    /// Where built images are pushed (`host:port[/prefix]`); without one, pods use the local
    /// tags (a kind or k3d cluster with the images loaded).
    pub(crate) registry: Option<String>,
    pub(crate) ingress_class: String,
    pub(crate) private_ingress_class: String,
    /// The router's address as the cluster reaches it: static sites' ingresses go there.
    pub(crate) static_upstream: Option<std::net::SocketAddr>,
}

/// The namespace of an environment: its own, or its importer's.
pub(crate) fn namespace(env: &Environment) -> String {
    format!("offshoot-{}", env.parent_id.as_deref().unwrap_or(&env.id))
}

/// How this server renders an environment: its namespace, this instance, and the ingress
/// classes of `--runtime kubernetes` (ingress-nginx's defaults otherwise).
pub(crate) fn options(ctx: &Shared, env: &Environment) -> Options {
    let mut opts = Options::new(namespace(env), ctx.instance.clone());
    if let Some(k) = &ctx.kube {
        opts.ingress_class = k.ingress_class.clone();
        opts.private_ingress_class = k.private_ingress_class.clone();
        opts.static_upstream = k.static_upstream;
    }
    opts
}

/// Pushes the built images (those with a content tag) to the registry; returns the references
/// pods use.
pub(crate) async fn publish(ctx: &Shared, k: &KubeRuntime, images: HashMap<String, String>) -> Result<HashMap<String, String>, String> {
    let Some(registry) = &k.registry else { return Ok(images) };
    let mut out = HashMap::new();
    for (service, image) in images {
        let reference = if image.starts_with("offshoot/") {
            ctx.rt.push(&image, registry).await.map_err(|e| format!("service `{service}`: {e}"))?
        } else {
            image
        };
        out.insert(service, reference);
    }
    Ok(out)
}

/// Applies one environment, step by step.
pub(crate) async fn deploy(
    ctx: &Shared,
    k: &KubeRuntime,
    dep: &Deployment,
    env: &Environment,
    resolved: &Resolved,
    (images, sites): (&HashMap<String, String>, &HashMap<String, String>),
    files: std::collections::BTreeMap<String, String>,
) -> Result<(), String> {
    let ns = namespace(env);
    let mut opts = options(ctx, env);
    opts.images = images.iter().map(|(a, b)| (a.clone(), b.clone())).collect();
    opts.files = files;
    opts.reveal_secrets = true;
    let rendered = render(resolved, &opts);
    for w in &rendered.warnings {
        tracing::warn!(env = %env.id, warning = %w, "kubernetes");
    }
    let err = |e: offshoot_kube::KubeError| e.to_string();
    // The namespace and what belongs to no service. An import's namespace is its importer's,
    // which an import deployed first makes (never pruned); the importer's NetworkPolicy is its own.
    let base: Vec<Manifest> = rendered
        .manifests
        .iter()
        .filter(|m| match m {
            Manifest::Namespace(_) => true,
            Manifest::NetworkPolicy(_) => env.parent_id.is_none(),
            Manifest::ServiceAccount(_) => true,
            Manifest::PersistentVolumeClaim(_) => m.is_shared(),
            _ => false,
        })
        .cloned()
        .collect();
    k.kube.apply(&base).await.map_err(err)?;
    let mut failures = Vec::new();
    for step in workflow_tasks(resolved, &dep.workflow) {
        let mut services: Vec<&offshoot_template::resolve::ResolvedService> = Vec::new();
        let mut jobs = Vec::new();
        for task in &step {
            if let Some(s) = task.strip_prefix("services.") {
                let Some(svc) = resolved.services.iter().find(|x| x.name == s) else { continue };
                let own: Vec<Manifest> =
                    rendered.manifests.iter().filter(|m| !matches!(m, Manifest::Job(_)) && m.belongs_to(s)).cloned().collect();
                if let Some(st) = &svc.static_site {
                    // Served by this server's router from the site storage; the cluster's
                    // ingress reaches it through a Service without pods.
                    let key = sites.get(s).ok_or_else(|| format!("service `{s}`: the static site was not built"))?;
                    k.kube.apply(&own).await.map_err(err)?;
                    let urls = ingress_urls(resolved, s);
                    let routing = crate::controller::routing_for(resolved, svc);
                    let detail = serde_json::json!({"hostnames": svc.hostnames, "urls": urls, "site": key, "fallback": st.fallback, "routing": routing});
                    crate::sites::site(ctx, &env.id, s, key, st.fallback.as_deref()).await?;
                    set_service(ctx, &env.id, s, status::READY, None, detail).await;
                    ctx.refresh_routes().await;
                    continue;
                }
                if own.is_empty() {
                    continue;
                }
                set_service(ctx, &env.id, s, "deploying", None, serde_json::json!({"image": images.get(s)})).await;
                k.kube.apply(&own).await.map_err(err)?;
                services.push(svc);
            } else if let Some(j) = task.strip_prefix("jobs.") {
                jobs.push(j.to_owned());
            }
        }
        if !services.is_empty() {
            let workloads: Vec<(String, bool)> = services.iter().map(|s| (offshoot_manifests::dns_label(&s.name), s.stateful)).collect();
            match k.kube.wait_rollout(&ns, &workloads, ROLLOUT_TIMEOUT).await {
                Ok(()) => {
                    for s in &services {
                        let detail = serde_json::json!({"image": images.get(&s.name), "hostnames": s.hostnames, "urls": ingress_urls(resolved, &s.name)});
                        set_service(ctx, &env.id, &s.name, status::READY, None, detail).await;
                    }
                }
                Err(e) => {
                    let stuck = match &e {
                        offshoot_kube::KubeError::Rollout { service, .. } => Some(service.as_str()),
                        _ => None,
                    };
                    if let Some((s, _)) = services.iter().zip(&workloads).find(|(_, (label, _))| Some(label.as_str()) == stuck) {
                        set_service(ctx, &env.id, &s.name, status::FAILED, Some(&e.to_string()), serde_json::json!({})).await;
                    }
                    return Err(e.to_string());
                }
            }
        }
        for j in jobs {
            let Some(job) = rendered.manifests.iter().find_map(|m| match m {
                Manifest::Job(o) if m.name() == job_name(&j) => Some(o.as_ref().clone()),
                _ => None,
            }) else {
                continue;
            };
            // The job's own Secret first.
            let secrets: Vec<Manifest> = rendered
                .manifests
                .iter()
                .filter(|m| matches!(m, Manifest::Secret(_)) && m.name() == job_secret_name(&j))
                .cloned()
                .collect();
            k.kube.apply(&secrets).await.map_err(err)?;
            let spec = resolved.jobs.iter().find(|x| x.name == j);
            let timeout = spec.map_or(600, |x| x.completed_timeout_seconds);
            let halt = spec.is_some_and(|x| x.halt_on_error);
            if let Err(e) = k.kube.run_job(&job, Duration::from_secs(timeout.max(1))).await {
                if halt {
                    return Err(format!("job `{j}`: {e}"));
                }
                failures.push(format!("job `{j}`: {e}"));
            }
        }
    }
    let ingresses: Vec<Manifest> = rendered.manifests.iter().filter(|m| matches!(m, Manifest::Ingress(_))).cloned().collect();
    k.kube.apply(&ingresses).await.map_err(err)?;
    let pruned = k.kube.prune(&ns, &env.id, &rendered.manifests).await.map_err(err)?;
    if !pruned.is_empty() {
        tracing::info!(env = %env.id, removed = ?pruned, "pruned what the template no longer has");
    }
    if failures.is_empty() { Ok(()) } else { Err(failures.join("; ")) }
}

/// Where a service is reached through the cluster's ingress: its hosts and paths.
fn ingress_urls(resolved: &Resolved, service: &str) -> Vec<String> {
    resolved.routes.iter().filter(|r| r.service == service).map(|r| format!("http://{}{}", r.host, r.path)).collect()
}

/// Removes an environment from the cluster.
pub(crate) async fn teardown(k: &KubeRuntime, env: &Environment) -> Result<(), String> {
    let ns = namespace(env);
    if env.parent_id.is_some() {
        // An import: its own objects, in its importer's namespace.
        k.kube.prune(&ns, &env.id, &[]).await.map(|_| ()).map_err(|e| e.to_string())
    } else {
        k.kube.delete_namespace(&ns, DELETE_TIMEOUT).await.map_err(|e| e.to_string())
    }
}
