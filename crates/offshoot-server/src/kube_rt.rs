//! Environments on Kubernetes (`offshoot server --runtime kubernetes`): images are built by the
//! local engine as on Docker and, with `--registry`, pushed and referenced by digest; the
//! environment is rendered (`offshoot-manifests`) and applied by the one executor through
//! `KubeBackend`: a service's objects are applied and its rollout waited for, a job is run to
//! completion; then the ingresses, then what the template no longer has is pruned. Teardown deletes the namespace
//! (an imported app's environment, which shares its importer's, deletes its own objects).
//! Kubernetes restarts and schedules; the reconciler redeploys only a service whose workload is
//! gone.

use crate::failure::Failure;
use crate::state::KubeRuntime;
use crate::state::{Shared, set_service};
use offshoot_api_types::ServiceStatus;
use offshoot_control::{Backend, BackendError, ExecOutput, ServiceState};
use offshoot_kube::Kube;
use offshoot_manifests::{Manifest, Options, job_name, job_secret_name, render};
use offshoot_store::{Environment, ServiceDetail};
use offshoot_template::resolve::{Resolved, ResolvedService, StaticSite};
use std::collections::HashMap;
use std::time::Duration;

/// How long a step's rollout may take.
const ROLLOUT_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a namespace may take to go.
const DELETE_TIMEOUT: Duration = Duration::from_secs(300);

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
        opts.tls = k.tls();
    }
    opts
}

/// Registry credentials in the form the manifests' pull Secret takes.
pub(crate) fn pull_auths(
    auths: &offshoot_runtime::RegistryAuths,
) -> std::collections::BTreeMap<String, (String, offshoot_template::secret::SecretString)> {
    auths
        .0
        .iter()
        .map(|(host, c)| (host.clone(), (c.username.clone(), offshoot_template::secret::SecretString::new(c.password.clone()))))
        .collect()
}

/// Pushes the built images (those with a content tag) to the registry; returns the references
/// pods use.
pub(crate) async fn publish(
    ctx: &Shared,
    k: &KubeRuntime,
    images: HashMap<String, String>,
    auths: &offshoot_runtime::RegistryAuths,
) -> Result<HashMap<String, String>, Failure> {
    let Some(registry) = &k.registry else { return Ok(images) };
    let mut out = HashMap::new();
    for (service, image) in images {
        let reference = if image.starts_with("offshoot/") {
            ctx.rt.push(&image, registry, auths).await.map_err(|e| format!("service `{service}`: {e}"))?
        } else {
            image
        };
        out.insert(service, reference);
    }
    Ok(out)
}

/// Kubernetes as the executor's backend, for one deployment: the environment rendered once;
/// a service's own objects applied and its rollout waited for; a job's Secret applied and the job
/// run to completion; then the ingresses, and what the template no longer has pruned.
pub(crate) struct KubeBackend {
    ctx: Shared,
    kube: Kube,
    env: Environment,
    resolved: Resolved,
    rendered: Vec<Manifest>,
    images: HashMap<String, String>,
    sites: HashMap<String, String>,
    ns: String,
    /// How it was rendered, to render it again with other variables.
    opts: Options,
}

impl KubeBackend {
    /// Renders the environment with the images pods run and the files `configmap` mounts.
    pub(crate) fn new(
        ctx: &Shared,
        k: &KubeRuntime,
        env: &Environment,
        resolved: Resolved,
        (images, sites): (HashMap<String, String>, HashMap<String, String>),
        files: std::collections::BTreeMap<String, String>,
        auths: &offshoot_runtime::RegistryAuths,
    ) -> Self {
        let mut opts = options(ctx, env);
        opts.images = images.iter().map(|(a, b)| (a.clone(), b.clone())).collect();
        opts.files = files;
        opts.registry_auths = pull_auths(auths);
        opts.reveal_secrets = true;
        let rendered = render(&resolved, &opts);
        for w in &rendered.warnings {
            tracing::warn!(env = %env.id, warning = %w, "kubernetes");
        }
        KubeBackend {
            ctx: ctx.clone(),
            kube: k.kube.clone(),
            env: env.clone(),
            resolved,
            rendered: rendered.manifests,
            images,
            sites,
            ns: namespace(env),
            opts,
        }
    }

    /// The same deployment rendered with another configuration (an apply's outputs added).
    pub(crate) fn with(&self, resolved: Resolved) -> KubeBackend {
        let rendered = render(&resolved, &self.opts).manifests;
        KubeBackend {
            ctx: self.ctx.clone(),
            kube: self.kube.clone(),
            env: self.env.clone(),
            resolved,
            rendered,
            images: self.images.clone(),
            sites: self.sites.clone(),
            ns: self.ns.clone(),
            opts: self.opts.clone(),
        }
    }

    fn manifests(&self, keep: impl Fn(&Manifest) -> bool) -> Vec<Manifest> {
        self.rendered.iter().filter(|m| keep(m)).cloned().collect()
    }

    /// A static site: served by this server's router from the site storage; the cluster's
    /// ingress reaches it through a Service without pods.
    async fn start_site(&self, svc: &ResolvedService, st: &StaticSite) -> Result<(), BackendError> {
        let s = svc.name.as_str();
        let key = self.sites.get(s).ok_or_else(|| BackendError::new("the static site was not built"))?;
        self.kube
            .apply(&self.manifests(|m| !matches!(m, Manifest::Job(_) | Manifest::CronJob(_)) && m.belongs_to(s)))
            .await
            .map_err(BackendError::new)?;
        let routing = crate::resolving::routing_for(&self.resolved, svc);
        let detail = ServiceDetail {
            hostnames: svc.hostnames.clone(),
            urls: ingress_urls(&self.opts.tls, &self.resolved, s),
            site: Some(key.clone()),
            fallback: st.fallback.clone(),
            routing: Some(routing),
            ..ServiceDetail::new()
        };
        crate::sites::site(&self.ctx, &self.env.id, s, key, st.fallback.as_deref()).await.map_err(BackendError::new)?;
        set_service(&self.ctx, &self.env.id, s, ServiceStatus::Ready, None, detail).await;
        self.ctx.refresh_routes().await;
        Ok(())
    }
}

impl Backend for KubeBackend {
    /// The namespace and what belongs to no service. An import's namespace is its importer's,
    /// which an import deployed first makes (never pruned); the importer's NetworkPolicy is its own.
    async fn prepare(&self) -> Result<(), BackendError> {
        let importer = self.env.parent_id.is_none();
        let base = self.manifests(|m| match m {
            Manifest::Namespace(_) | Manifest::ServiceAccount(_) => true,
            Manifest::Secret(_) => m.name() == offshoot_manifests::pull_secret_name(&self.env.app),
            Manifest::NetworkPolicy(_) => importer,
            Manifest::PersistentVolumeClaim(_) => m.is_shared(),
            _ => false,
        });
        self.kube.apply(&base).await.map_err(BackendError::new)
    }

    async fn start_service(&self, s: &str) -> Result<(), BackendError> {
        let svc = self.resolved.services.iter().find(|x| x.name == s);
        let svc = svc.ok_or_else(|| BackendError::new(format!("service `{s}` is not defined")))?;
        if let Some(st) = &svc.static_site {
            return self.start_site(svc, st).await;
        }
        let own = self.manifests(|m| !matches!(m, Manifest::Job(_) | Manifest::CronJob(_)) && m.belongs_to(s));
        if own.is_empty() {
            return Ok(());
        }
        let image = ServiceDetail { image: self.images.get(s).cloned(), ..ServiceDetail::new() };
        set_service(&self.ctx, &self.env.id, s, ServiceStatus::Deploying, None, image).await;
        self.kube.apply(&own).await.map_err(BackendError::new)?;
        let workload = [(offshoot_manifests::dns_label(s), svc.stateful)];
        match self.kube.wait_rollout(&self.ns, &workload, ROLLOUT_TIMEOUT).await {
            Ok(()) => {
                let detail = ServiceDetail {
                    image: self.images.get(s).cloned(),
                    hostnames: svc.hostnames.clone(),
                    urls: ingress_urls(&self.opts.tls, &self.resolved, s),
                    ..ServiceDetail::new()
                };
                set_service(&self.ctx, &self.env.id, s, ServiceStatus::Ready, None, detail).await;
                Ok(())
            }
            Err(e) => {
                set_service(&self.ctx, &self.env.id, s, ServiceStatus::Failed, Some(&e.to_string()), ServiceDetail::new()).await;
                Err(BackendError::new(e))
            }
        }
    }

    async fn run_job(&self, j: &str) -> Result<String, BackendError> {
        let job = self.rendered.iter().find_map(|m| match m {
            Manifest::Job(o) if m.name() == job_name(j) => Some(o.as_ref().clone()),
            _ => None,
        });
        let job = job.ok_or_else(|| BackendError::new(format!("job `{j}` is not defined")))?;
        // The job's own Secret first.
        let secrets = self.manifests(|m| matches!(m, Manifest::Secret(_)) && m.name() == job_secret_name(j));
        self.kube.apply(&secrets).await.map_err(BackendError::new)?;
        let timeout = self.resolved.jobs.iter().find(|x| x.name == j).map_or(600, |x| x.completed_timeout_seconds);
        self.kube.run_job(&job, Duration::from_secs(timeout.max(1))).await.map_err(BackendError::new)?;
        Ok(String::new())
    }

    async fn remove_environment(&self) -> Result<(), BackendError> {
        teardown(&self.kube, &self.env).await.map_err(BackendError::new)
    }

    async fn finish(&self) -> Result<(), BackendError> {
        // The certificate's Secret before the Ingresses that name it.
        let tls = offshoot_manifests::tls_secret_name(&self.env.id);
        let ingresses = self.manifests(|m| matches!(m, Manifest::Ingress(_)) || matches!(m, Manifest::Secret(_)) && m.name() == tls);
        self.kube.apply(&ingresses).await.map_err(BackendError::new)?;
        // The cron jobs, once their services run: the cluster keeps their schedules (with
        // each one's Secret first).
        let cron: Vec<&str> = self.resolved.cron_jobs.iter().map(|j| j.name.as_str()).collect();
        let secrets = self.manifests(|m| matches!(m, Manifest::Secret(_)) && cron.iter().any(|j| m.name() == job_secret_name(j)));
        self.kube.apply(&secrets).await.map_err(BackendError::new)?;
        self.kube.apply(&self.manifests(|m| matches!(m, Manifest::CronJob(_)))).await.map_err(BackendError::new)?;
        let pruned = self.kube.prune(&self.ns, &self.env.id, &self.rendered).await.map_err(BackendError::new)?;
        if !pruned.is_empty() {
            tracing::info!(env = %self.env.id, removed = ?pruned, "pruned what the template no longer has");
        }
        Ok(())
    }

    async fn observe(&self) -> Result<Vec<ServiceState>, BackendError> {
        let workloads = self.kube.workloads(&self.ns, &self.env.id).await.map_err(BackendError::new)?;
        let mut out = Vec::new();
        for s in self.ctx.store.services(&self.env.id).await.map_err(BackendError::new)? {
            let label = offshoot_manifests::dns_label(&s.name);
            // Kubernetes keeps a workload with replicas running: restarts are its own business.
            if let Some(w) = workloads.iter().find(|w| w.service == label) {
                out.push(ServiceState { service: s.name, running: w.replicas > 0 });
            }
        }
        Ok(out)
    }

    async fn logs(&self, service: Option<&str>, tail: usize) -> Result<Vec<(String, String)>, BackendError> {
        let mut out = Vec::new();
        for s in self.ctx.store.services(&self.env.id).await.map_err(BackendError::new)? {
            if service.is_some_and(|w| w != s.name) {
                continue;
            }
            let label = offshoot_manifests::dns_label(&s.name);
            for (pod, logs) in self.kube.logs(&self.ns, &self.env.id, &label, tail).await.map_err(BackendError::new)? {
                out.push((format!("{}/{pod}", s.name), logs));
            }
        }
        Ok(out)
    }

    async fn exec(&self, _service: &str, _command: &[String]) -> Result<ExecOutput, BackendError> {
        Err(BackendError::unsupported(
            "`env exec` is not available on the Kubernetes runtime yet",
            "use `kubectl exec -n offshoot-<env id> deploy/<service> -- CMD`",
        ))
    }

    async fn stop_service(&self, service: &str) -> Result<(), BackendError> {
        match self.kube.scale_down(&self.ns, &self.env.id, service).await.map_err(BackendError::new)? {
            0 => Err(BackendError::not_found(format!("service `{service}` has no workload"))),
            _ => Ok(()),
        }
    }

    /// Restores the service's replicas and waits for its rollout, as a deployment does.
    async fn resume_service(&self, service: &str) -> Result<(), BackendError> {
        if self.kube.scale_up(&self.ns, &self.env.id, service).await.map_err(BackendError::new)? == 0 {
            return Err(BackendError::not_found(format!("service `{service}` has no workload")));
        }
        let stateful = self.resolved.services.iter().find(|s| s.name == service).is_some_and(|s| s.stateful);
        let workload = [(offshoot_manifests::dns_label(service), stateful)];
        self.kube.wait_rollout(&self.ns, &workload, ROLLOUT_TIMEOUT).await.map_err(BackendError::new)
    }

    async fn pause_schedules(&self, paused: bool) -> Result<(), BackendError> {
        self.kube.suspend_cron_jobs(&self.ns, &self.env.id, paused).await.map(drop).map_err(BackendError::new)
    }
}

/// Where a service is reached through the cluster's ingress: its hosts and paths.
fn ingress_urls(tls: &offshoot_manifests::IngressTls, resolved: &Resolved, service: &str) -> Vec<String> {
    let https = tls.https();
    resolved
        .routes
        .iter()
        .filter(|r| r.service == service)
        .map(|r| format!("{}{}", offshoot_template::resolve::host_url(&r.host, Some(80), https.as_ref()), r.path))
        .collect()
}

/// Removes an environment from the cluster.
pub(crate) async fn teardown(kube: &Kube, env: &Environment) -> Result<(), offshoot_kube::KubeError> {
    let ns = namespace(env);
    if env.parent_id.is_some() {
        // An import: its own objects, in its importer's namespace.
        kube.prune(&ns, &env.id, &[]).await.map(|_| ())
    } else {
        kube.delete_namespace(&ns, DELETE_TIMEOUT).await
    }
}
