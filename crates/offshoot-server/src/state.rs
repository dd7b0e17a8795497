//! The server's shared state: the store, the engines, the router and the small pieces of
//! memory the control plane keeps between requests (readiness, locks, load-balancer ports).
//! Every module reaches the rest of the server through this one; it depends on no other module
//! of the server but leaf ones, so modules can depend on it without forming a circle.

use crate::crypto::SecretKey;
use crate::failure::Failure;
use offshoot_docker::DockerRuntime;
use offshoot_git::Mirror;
use offshoot_sites::{Bucket, Site};
use offshoot_store::{ServiceDetail, ServiceRow, ServiceStatus, Store};
use offshoot_template::resolve::IngressHttps;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub(crate) struct Ctx {
    pub(crate) store: Store,
    pub(crate) rt: DockerRuntime,
    pub(crate) data_dir: PathBuf,
    pub(crate) domain: String,
    pub(crate) router_port: u16,
    pub(crate) key: Arc<SecretKey>,
    /// This server's id: the label on everything it creates.
    pub(crate) instance: String,
    pub(crate) router: Arc<offshoot_router::Router>,
    pub(crate) tcp: offshoot_router::tcp::TcpProxies,
    /// The TLS listener's port, when there is one (URLs of the hosts it has a certificate for
    /// then use `https`).
    pub(crate) tls_port: Option<u16>,
    /// The operator gave the TLS listener a certificate of its own: every host is served there.
    pub(crate) tls_files: bool,
    /// Where webhooks reach this server (`http://host:port`).
    pub(crate) public_url: String,
    /// The git hosts pull-request feedback goes to.
    pub(crate) forges: Forges,
    /// Client for the git hosts' APIs.
    pub(crate) http: reqwest::Client,
    /// Wakes the Instant Datasets' pool keeper (a clone was taken or returned, a dataset
    /// created, refreshed or deleted).
    pub(crate) pools_wake: Arc<tokio::sync::Notify>,
    /// Wakes the certificate keeper: the routing table changed (a new host may want one).
    pub(crate) certs_wake: Arc<tokio::sync::Notify>,
    /// How long an environment waits for a clone when a pool is empty.
    pub(crate) dataset_wait: Duration,
    /// What containers may reach of this machine, when the server keeps them from the rest.
    pub(crate) firewall: Option<Arc<crate::firewall::HostFirewall>>,
    /// Limits on running environments.
    pub(crate) capacity: offshoot_control::capacity::Capacity,
    /// Environments run on Kubernetes rather than on the engine (which still builds images).
    pub(crate) kube: Option<KubeRuntime>,
    /// Static sites: their storage and the sites being served.
    pub(crate) sites: Option<Sites>,
    /// The image Terraform runs in unless an application names its own.
    pub(crate) terraform_image: String,
    /// Judges requests for team-only previews (the router's gatekeeper).
    pub(crate) previews: Arc<crate::previews::PreviewGate>,
    /// Single sign-on for the dashboard, when configured.
    pub(crate) sso: Option<Arc<crate::oidc::Sso>>,
    /// Containers failing their readiness probe: out of the router's pool.
    unready: Mutex<HashSet<String>>,
    /// Containers the engine reported dead, stopped or paused since they last started.
    dead: Mutex<HashSet<String>>,
    /// One routing-table rebuild at a time: a rebuild that read older state never swaps in after
    /// one that read newer state.
    /// Holds the ticket up to which requests were covered by the last rebuild (one that began
    /// after a request was made serves it: a burst of requests costs one or two rebuilds).
    pub(crate) refreshing: tokio::sync::Mutex<u64>,
    pub(crate) refresh_tickets: std::sync::atomic::AtomicU64,
    /// Routes the router could not take, by (environment, service).
    route_conflicts: Mutex<BTreeMap<(String, String), Vec<RouteConflict>>>,
    /// The open load-balancer ports.
    load_balancers: Mutex<BTreeMap<offshoot_router::tcp::TcpKey, std::net::SocketAddr>>,
    pub(crate) locks: Locks,
    /// Every loop and every piece of work that outlives a request, stopped at shutdown.
    pub(crate) background: crate::background::Background,
    /// Liveness monitors: one generation per (environment, container); a monitor whose
    /// generation is no longer current stops.
    liveness: Mutex<HashMap<(String, String), u64>>,
}

pub(crate) type Shared = Arc<Ctx>;

/// Where the load-balancer ports are remembered between runs.
const LB_FILE: &str = "load-balancers.json";

impl Ctx {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        store: Store,
        rt: DockerRuntime,
        data_dir: PathBuf,
        domain: String,
        (router, router_port, tls_port): (Arc<offshoot_router::Router>, u16, Option<u16>),
        key: SecretKey,
        instance: String,
        (public_url, forges): (String, Forges),
    ) -> Self {
        // The load-balancer ports of the last run, to open the same ones again.
        let load_balancers = std::fs::read_to_string(data_dir.join(LB_FILE))
            .ok()
            .and_then(|t| serde_json::from_str::<Vec<(offshoot_router::tcp::TcpKey, std::net::SocketAddr)>>(&t).ok())
            .unwrap_or_default()
            .into_iter()
            .collect();
        let key = Arc::new(key);
        let previews = Arc::new(crate::previews::PreviewGate::new(key.clone(), &public_url));
        Ctx {
            store,
            rt,
            data_dir,
            domain,
            router_port,
            key,
            instance,
            tcp: offshoot_router::tcp::TcpProxies::new(router.wake_timeout()),
            router,
            tls_port,
            tls_files: false,
            public_url,
            forges,
            http: reqwest::Client::new(),
            pools_wake: Arc::default(),
            certs_wake: Arc::default(),
            dataset_wait: Duration::from_secs(300),
            firewall: None,
            capacity: offshoot_control::capacity::Capacity::default(),
            kube: None,
            sites: None,
            terraform_image: "hashicorp/terraform:1.11".to_owned(),
            sso: None,
            previews,
            unready: Mutex::new(HashSet::new()),
            dead: Mutex::new(HashSet::new()),
            load_balancers: Mutex::new(load_balancers),
            route_conflicts: Mutex::new(BTreeMap::new()),
            refreshing: tokio::sync::Mutex::new(0),
            refresh_tickets: std::sync::atomic::AtomicU64::new(0),
            locks: Locks::default(),
            background: crate::background::Background::default(),
            liveness: Mutex::new(HashMap::new()),
        }
    }

    /// Whether an operation on the environment is under way (the reconciler leaves it alone).
    pub(crate) fn is_busy(&self, env_id: &str) -> bool {
        self.locks.is_busy(env_id)
    }

    /// The lock of one environment's operations (or of another named sequence of work).
    pub(crate) fn lock_for(&self, env_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.locks.lock_for(env_id)
    }

    /// Mirrors are kept per repository (several apps may share one).
    pub(crate) fn mirror_path(&self, repo: &str) -> PathBuf {
        let digest = crate::crypto::hex(&Sha256::digest(repo.as_bytes())[..10]);
        self.data_dir.join("repos").join(format!("{digest}.git"))
    }

    /// Fetches a repository into its mirror.
    pub(crate) async fn sync_mirror(&self, repo: &str) -> Result<Mirror, Failure> {
        let (repo, dest) = (repo.to_owned(), self.mirror_path(repo));
        tokio::task::spawn_blocking(move || Mirror::sync(&repo, &dest)).await?.map_err(Failure::from)
    }

    /// The mirror of a repository holding `commit`: fetched only when it does not hold it yet (a
    /// commit never changes, so a webhook's fetch serves the deployment it starts).
    pub(crate) async fn mirror_with(&self, repo: &str, commit: &str) -> Result<Mirror, Failure> {
        let (dest, c) = (self.mirror_path(repo), commit.to_owned());
        let held = tokio::task::spawn_blocking(move || Mirror::open(&dest).ok().filter(|m| m.has_commit(&c).unwrap_or(false))).await?;
        match held {
            Some(m) => Ok(m),
            None => self.sync_mirror(repo).await,
        }
    }

    /// Whether the environments' engine reaches this machine's loopback (through the host
    /// gateway): Docker's containers do; pods on a cluster need a server they can reach by its
    /// own name.
    pub(crate) fn engine_reaches_host_loopback(&self) -> bool {
        self.kube.is_none()
    }

    /// Containers that must not get traffic: failing readiness, or reported down by the engine.
    pub(crate) fn unready_containers(&self) -> HashSet<String> {
        let mut out = self.unready.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        out.extend(self.dead.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter().cloned());
        out
    }

    /// Starts a new generation of the probe monitor `key`; older monitors of it stop.
    pub(crate) fn new_monitor(&self, key: &(String, String)) -> u64 {
        let mut map = self.liveness.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let g = map.entry(key.clone()).or_insert(0);
        *g += 1;
        *g
    }

    /// The current generation of the probe monitor `key`.
    pub(crate) fn monitor_generation(&self, key: &(String, String)) -> Option<u64> {
        self.liveness.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(key).copied()
    }

    /// Forgets containers that no longer exist.
    pub(crate) fn forget_dead_except(&self, existing: &HashSet<&str>) {
        self.dead.lock().unwrap_or_else(std::sync::PoisonError::into_inner).retain(|c| existing.contains(c.as_str()));
    }

    /// Records what the engine said about a container.
    pub(crate) fn set_alive(&self, container: &str, alive: bool) {
        let mut dead = self.dead.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if alive {
            dead.remove(container);
        } else {
            dead.insert(container.to_owned());
        }
    }

    /// Marks a container (un)ready; `true` when that changed.
    pub(crate) fn set_ready(&self, container: &str, ready: bool) -> bool {
        let mut set = self.unready.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if ready { set.remove(container) } else { set.insert(container.to_owned()) }
    }

    pub(crate) fn set_route_conflicts(&self, c: BTreeMap<(String, String), Vec<RouteConflict>>) {
        *self.route_conflicts.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = c;
    }

    /// Why some of a service's routes are not served (another environment has them).
    pub(crate) fn route_conflicts(&self, env_id: &str, service: &str) -> Vec<RouteConflict> {
        let c = self.route_conflicts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        c.get(&(env_id.to_owned(), service.to_owned())).cloned().unwrap_or_default()
    }

    /// Where the router serves HTTPS, and for which hosts: every one with the operator's
    /// certificate, else those a certificate of the router's book covers.
    pub(crate) fn https(&self) -> Option<IngressHttps> {
        let port = self.tls_port?;
        Some(IngressHttps { port, names: (!self.tls_files).then(|| self.router.certs().names()) })
    }

    /// `scheme://HOST[:PORT]` of a host the router serves: `https` when a certificate covers it.
    pub(crate) fn host_url(&self, host: &str) -> String {
        offshoot_template::resolve::host_url(host, Some(self.router_port), self.https().as_ref())
    }

    pub(crate) fn load_balancers(&self) -> BTreeMap<offshoot_router::tcp::TcpKey, std::net::SocketAddr> {
        self.load_balancers.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Records the open load-balancer ports (also on disk, to reopen the same after a restart).
    pub(crate) fn set_load_balancers(&self, open: BTreeMap<offshoot_router::tcp::TcpKey, std::net::SocketAddr>) {
        let mut current = self.load_balancers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if *current != open {
            let list: Vec<_> = open.iter().collect();
            if let Ok(text) = serde_json::to_string(&list)
                && let Err(e) = std::fs::write(self.data_dir.join(LB_FILE), text)
            {
                tracing::warn!(error = %e, "cannot record the load-balancer ports");
            }
            *current = open;
        }
    }
}

/// The locks of environments' operations and of other named sequences of work (an
/// application's git events, a pull request's feedback), shared by whoever takes them.
#[derive(Clone, Default)]
pub(crate) struct Locks(Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>);

impl Locks {
    /// The lock named `name`.
    pub(crate) fn lock_for(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        locks.entry(name.to_owned()).or_default().clone()
    }

    /// Whether the work `name` names is under way.
    pub(crate) fn is_busy(&self, name: &str) -> bool {
        self.lock_for(name).try_lock().is_err()
    }

    /// Whether any work is under way.
    pub(crate) fn any_busy(&self) -> bool {
        let locks = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        locks.values().any(|l| l.try_lock().is_err())
    }
}

/// Records something whose failure to record must not stop the work it describes (a build
/// log, a last error): a failed write is logged, never dropped silently.
pub(crate) fn logged<T>(what: &'static str, r: Result<T, offshoot_store::StoreError>) {
    if let Err(e) = r {
        tracing::error!(error = %e, what, "cannot record");
    }
}

/// The image each service of an environment runs, as recorded when it last started, and each
/// job with a build of its own was last built as (under `offshoot_manifests::job_image_key`).
impl Ctx {
    /// The registry credentials `app`'s pulls, builds and pushes use: the server's, each
    /// replaced by the application's own for its host. Decrypted here, never logged.
    pub(crate) async fn registry_auths(&self, app: &str) -> Result<offshoot_runtime::RegistryAuths, crate::failure::Failure> {
        let mut out = std::collections::BTreeMap::new();
        let mut all = self.store.registry_credentials().await?;
        // The server's first, then the application's over them.
        all.sort_by_key(|c| !c.app.is_empty());
        for c in all.into_iter().filter(|c| c.app.is_empty() || c.app == app) {
            let password = self
                .key
                .decrypt(&c.secret, &offshoot_control::registries::seal_context(&c.host, &c.app))
                .map_err(|e| format!("the credentials for registry `{}`: {e}", c.host))?;
            out.insert(c.host, offshoot_runtime::Credentials { username: c.username, password });
        }
        Ok(offshoot_runtime::RegistryAuths(out))
    }

    /// Where environments run.
    pub(crate) fn runtime(&self) -> offshoot_template::ledger::Runtime {
        if self.kube.is_some() { offshoot_template::ledger::Runtime::Kubernetes } else { offshoot_template::ledger::Runtime::Docker }
    }
}

pub(crate) async fn images_of(ctx: &Ctx, env_id: &str) -> Result<HashMap<String, String>, offshoot_store::StoreError> {
    let mut images: HashMap<String, String> =
        ctx.store.services(env_id).await?.into_iter().filter_map(|s| Some((s.name, s.detail.image?))).collect();
    // And the jobs' own builds (a cron job runs from its last one).
    images.extend(ctx.store.job_images(env_id).await?.into_iter().map(|(job, image)| (offshoot_manifests::job_image_key(&job), image)));
    Ok(images)
}

pub(crate) async fn set_service(ctx: &Ctx, env_id: &str, name: &str, st: ServiceStatus, reason: Option<&str>, detail: ServiceDetail) {
    let row = ServiceRow { env_id: env_id.into(), name: name.into(), status: st, reason: reason.map(str::to_owned), detail };
    if let Err(e) = ctx.store.set_service(&row).await {
        tracing::error!(error = %e, "cannot record a service");
    }
}

pub(crate) struct Sites {
    pub(crate) bucket: Arc<Bucket>,
    pub(crate) default_builder: String,
    /// The site each (environment, service) serves, made once per build.
    pub(crate) live: Mutex<HashMap<(String, String), Arc<Site>>>,
}

/// The Kubernetes settings of a server.
pub(crate) struct KubeRuntime {
    pub(crate) kube: offshoot_kube::Kube,
    /// Where built images are pushed (`host:port[/prefix]`); without one, pods use the local
    /// tags (a kind or k3d cluster with the images loaded).
    pub(crate) registry: Option<String>,
    pub(crate) ingress_class: String,
    pub(crate) private_ingress_class: String,
    /// The router's address as the cluster reaches it: static sites' ingresses go there.
    pub(crate) static_upstream: Option<std::net::SocketAddr>,
    /// Ingresses get their certificates from cert-manager, from this ClusterIssuer.
    pub(crate) cert_manager_issuer: Option<String>,
    /// The ACME wildcard, as the Ingresses' Secrets carry it (kept by the certificate keeper).
    pub(crate) certificate: Arc<Mutex<Option<offshoot_manifests::Certificate>>>,
}

impl KubeRuntime {
    /// How the Ingresses are served over HTTPS.
    pub(crate) fn tls(&self) -> offshoot_manifests::IngressTls {
        if let Some(issuer) = &self.cert_manager_issuer {
            return offshoot_manifests::IngressTls::CertManager(issuer.clone());
        }
        match self.certificate.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone() {
            Some(c) => offshoot_manifests::IngressTls::Certificate(c),
            None => offshoot_manifests::IngressTls::None,
        }
    }

    /// Where the cluster's ingress serves HTTPS, and for which hosts.
    pub(crate) fn https(&self) -> Option<IngressHttps> {
        self.tls().https()
    }
}

/// A git host's API: where it is and the token to call it with.
#[derive(Clone, Debug, Default)]
pub struct Forge {
    pub api_url: String,
    pub token: Option<String>,
}

/// The git hosts feedback goes to.
#[derive(Clone, Debug)]
pub struct Forges {
    pub github: Forge,
    pub gitlab: Forge,
}

impl Default for Forges {
    fn default() -> Self {
        Forges {
            github: Forge { api_url: "https://api.github.com".into(), token: None },
            gitlab: Forge { api_url: "https://gitlab.com/api/v4".into(), token: None },
        }
    }
}

/// A route of a service that the router could not take.
#[derive(Clone, Debug)]
pub(crate) struct RouteConflict {
    pub(crate) host: String,
    pub(crate) path: String,
    pub(crate) message: String,
}
