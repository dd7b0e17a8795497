//! The control plane: `offshoot server`. The HTTP API, the environment controller, the
//! reconciler (resume interrupted work, remove orphans, expire environments) and the router.

mod accounts;
mod api;
mod backends;
mod background;
mod builds;
mod certs;
mod clones;
mod controller;
mod cron;
mod crypto;
mod datasets;
mod docker_backend;
mod error;
mod events;
mod failure;
mod feedback;
mod firewall;
mod infra;
mod keeper;
mod kube_rt;
mod monitors;
mod oidc;
mod openapi;
mod plane;
mod previews;
mod repo_mounts;
mod resolving;
mod routes;
mod secret_files;
mod sites;
mod sso;
mod state;
mod ui;
mod ui_admin;
mod ui_envs;
mod views;
mod waking;
mod webhooks;

use anyhow::{Context as _, Result};
use offshoot_api_types::{EnvStatus, ServiceStatus};
use offshoot_control::Workflow;
use offshoot_docker::DockerRuntime;
use offshoot_runtime::Runtime as _;
use offshoot_store::{Store, now_ms};
use state::{Ctx, Shared};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use api::openapi;
pub use certs::AcmeConfig;
pub use offshoot_acme::{LETS_ENCRYPT, Rfc2136};
pub use offshoot_control::capacity::Capacity;
pub use offshoot_docker::{Limits as ContainerLimits, NetworkPool};
pub use offshoot_router::RouterConfig;
pub use oidc::OidcConfig;
pub use state::{Forge, Forges};

/// A network in CIDR notation (`10.0.0.0/8`), or one address.
pub fn parse_network(s: &str) -> Result<ipnet::IpNet> {
    let s = s.trim();
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .with_context(|| format!("`{s}` is not a network: write it like `10.0.0.0/8` or `192.168.1.5`"))
}

#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub router_listen: SocketAddr,
    pub data_dir: PathBuf,
    /// `sqlite://...` or `postgres://...`; default: SQLite in the data directory.
    pub database_url: Option<String>,
    pub domain: String,
    /// How often the reconciler runs.
    pub reconcile_every: Duration,
    /// The router's limits and trusted networks.
    pub router: offshoot_router::RouterConfig,
    /// A TLS listener: address, certificate chain and key (PEM), reloaded when they change.
    pub tls: Option<TlsListen>,
    /// Threads serving the router (each its own event loop); 0 for one per core.
    pub router_threads: usize,
    /// Where webhooks reach this server; default `http://<listen>`.
    pub public_url: Option<String>,
    /// Poll every application's repository this often (for repositories without webhooks).
    pub poll_interval: Option<Duration>,
    /// The git hosts pull-request feedback goes to.
    pub forges: Forges,
    /// How long an environment waits for a clone of an Instant Dataset whose pool is empty.
    pub dataset_wait: Duration,
    /// Limits on running environments: a creation or wake past one puts the least recently
    /// used idle environment to sleep first, or is refused.
    pub capacity: Capacity,
    /// Run environments on Kubernetes (the engine still builds images).
    pub kubernetes: Option<KubernetesConfig>,
    /// Where static sites are stored (a directory, `file://`, `s3://bucket/prefix`); default
    /// `static` in the data directory.
    pub static_store: Option<String>,
    /// The image static sites are built in unless an application names its own.
    pub static_builder: String,
    /// The image Terraform runs in unless an application names its own.
    pub terraform_image: String,
    /// How long the audit trail keeps its records.
    pub audit_retention: Duration,
    /// Where environment networks on the Docker engine take their /24 subnets from.
    pub network_pool: NetworkPool,
    /// Every container's default memory limit and its process limit.
    pub container_limits: ContainerLimits,
    /// Keep containers from this machine's services, but for the router, datasets' servers
    /// and these ports; `None`: no firewall.
    pub host_firewall: Option<Vec<u16>>,
    /// Single sign-on for the dashboard (OpenID Connect).
    pub oidc: Option<oidc::OidcConfig>,
    /// Certificates from ACME for the TLS listener.
    pub acme: Option<certs::AcmeConfig>,
}

#[derive(Clone, Debug)]
pub struct KubernetesConfig {
    /// Default: `KUBECONFIG`, `~/.kube/config`, or the in-cluster service account.
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
    /// Where built images are pushed (`host:port[/prefix]`).
    pub registry: Option<String>,
    pub ingress_class: String,
    pub private_ingress_class: String,
    /// The router's address as the cluster reaches it: static sites' ingresses go there.
    pub static_upstream: Option<SocketAddr>,
    /// Ingresses get their certificates from cert-manager, from this ClusterIssuer.
    pub cert_manager_issuer: Option<String>,
}

#[derive(Clone, Debug)]
pub struct TlsListen {
    pub listen: SocketAddr,
    /// A certificate chain and key (PEM) to serve for the names ACME's do not cover; with ACME
    /// alone, none.
    pub files: Option<(PathBuf, PathBuf)>,
}

/// Sets up the host firewall for the network pool: the router's ports when it listens beyond
/// loopback (containers reach it as anyone does), each dataset's server, and `allowed`. Without
/// root or iptables, a warning says containers reach every service of the machine.
async fn host_firewall(ctx: &Ctx, config: &Config, allowed: &[u16]) -> Option<std::sync::Arc<firewall::HostFirewall>> {
    let mut ports: Vec<u16> = allowed.to_vec();
    if !config.router_listen.ip().is_loopback() {
        ports.push(ctx.router_port);
        ports.extend(ctx.tls_port);
    }
    for d in ctx.store.datasets().await.unwrap_or_default() {
        match clones::target(&ctx.key, &d) {
            Ok(dsn) => ports.push(dsn.port),
            Err(e) => tracing::warn!(dataset = %d.name, error = %e, "host firewall: cannot read the dataset's server"),
        }
    }
    match firewall::HostFirewall::set_up(&config.network_pool.to_string(), ports) {
        Ok(fw) => Some(std::sync::Arc::new(fw)),
        Err(e) => {
            tracing::warn!(error = %e, "containers can reach every service of this machine (run as root with iptables, or pass --no-host-firewall to say so)");
            None
        }
    }
}

/// Runs the server until SIGINT/SIGTERM.
pub async fn run(config: Config) -> Result<()> {
    std::fs::create_dir_all(&config.data_dir).with_context(|| format!("create the data directory `{}`", config.data_dir.display()))?;
    let url = config.database_url.clone().unwrap_or_else(|| format!("sqlite://{}", config.data_dir.join("offshoot.db").display()));
    let store = Store::open(&url).await.context("open the database")?;
    ensure_admin_token(&store, &config).await?;
    let key = crypto::SecretKey::load_or_create(&config.data_dir.join("secret.key"))?;
    let instance = instance_id(&config)?;
    let rt = DockerRuntime::connect()
        .await
        .context("connect to the Docker engine")?
        .with_network_pool(config.network_pool)
        .with_limits(config.container_limits);
    let api_listener = tokio::net::TcpListener::bind(config.listen).await.with_context(|| format!("listen on {}", config.listen))?;
    let router_listener =
        tokio::net::TcpListener::bind(config.router_listen).await.with_context(|| format!("listen on {}", config.router_listen))?;
    let router_port = router_listener.local_addr()?.port();
    let mut router_config = config.router.clone();
    router_config.temp_dir = config.data_dir.join("proxy-temp");
    let router = offshoot_router::Router::new(router_config);
    if config.acme.is_some() && config.tls.is_none() {
        anyhow::bail!("--acme needs --tls-listen: the address HTTPS is served on");
    }
    let tls = match &config.tls {
        Some(t) => {
            let loaded = match &t.files {
                Some((cert, key)) => offshoot_router::Tls::load(cert, key).context("load the TLS certificate")?,
                None if config.acme.is_some() => offshoot_router::Tls::from_book(router.certs().clone()),
                None => anyhow::bail!("--tls-listen needs --tls-cert and --tls-key, or --acme"),
            };
            if config.acme.is_some() {
                loaded.use_book(router.certs().clone());
            }
            let l = tokio::net::TcpListener::bind(t.listen).await.with_context(|| format!("listen on {}", t.listen))?;
            Some((loaded, l))
        }
        None => None,
    };
    let tls_port = tls.as_ref().and_then(|(_, l)| l.local_addr().ok()).map(|a| a.port());
    if let (Some(port), Some(_)) = (tls_port, &config.acme) {
        router.certs().set_https_port(port);
    }
    let mut ctx = Ctx::new(
        store,
        rt,
        config.data_dir.clone(),
        config.domain.clone(),
        (router.clone(), router_port, tls_port),
        key,
        instance,
        (
            config.public_url.clone().unwrap_or_else(|| format!("http://{}", api_listener.local_addr().unwrap_or(config.listen))),
            config.forges.clone(),
        ),
    );
    ctx.tls_files = config.tls.as_ref().is_some_and(|t| t.files.is_some());
    ctx.dataset_wait = config.dataset_wait;
    ctx.capacity = config.capacity;
    ctx.terraform_image = config.terraform_image.clone();
    if let (Some(allowed), None) = (&config.host_firewall, &config.kubernetes) {
        ctx.firewall = host_firewall(&ctx, &config, allowed).await;
    }
    if let Some(o) = &config.oidc {
        ctx.sso = Some(Arc::new(oidc::Sso::new(o, &ctx.public_url)?));
        tracing::info!(issuer = %o.issuer, "dashboard single sign-on");
    }
    let store_at = config.static_store.clone().unwrap_or_else(|| config.data_dir.join("static").display().to_string());
    let bucket = offshoot_sites::Bucket::open(&store_at, 256 << 20).context("open the static site storage")?;
    ctx.sites = Some(state::Sites::new(bucket, config.static_builder.clone()));
    if let Some(k) = &config.kubernetes {
        let kube = offshoot_kube::Kube::connect(k.kubeconfig.as_deref(), k.context.as_deref()).await.context("connect to Kubernetes")?;
        let version = kube.version().await.context("reach the Kubernetes API")?;
        tracing::info!(%version, registry = ?k.registry, "environments run on Kubernetes");
        ctx.kube = Some(state::KubeRuntime {
            kube,
            registry: k.registry.clone(),
            ingress_class: k.ingress_class.clone(),
            private_ingress_class: k.private_ingress_class.clone(),
            static_upstream: k.static_upstream,
            cert_manager_issuer: k.cert_manager_issuer.clone(),
            certificate: Arc::default(),
        });
        if k.cert_manager_issuer.is_none() && config.acme.as_ref().is_none_or(|a| a.dns.is_none()) {
            tracing::warn!(
                "the Ingresses are served over plain HTTP: give --cert-manager-issuer, or --acme with --acme-dns for a wildcard"
            );
        }
    }
    let ctx: Shared = Arc::new(ctx);
    let waker = Arc::new(waking::RouterWaker::new(&ctx));
    router.set_waker(waker.clone());
    router.set_gatekeeper(ctx.previews.clone());
    ctx.tcp.set_waker(waker);
    ctx.refresh_routes().await;

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let threads = match config.router_threads {
        0 => std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
        n => n,
    };
    let mut draining = vec![tokio::spawn(offshoot_router::serve_threads(router.clone(), router_listener, None, stop_rx.clone(), threads))];
    if let Some((loaded, listener)) = tls {
        loaded.watch(Duration::from_secs(2), stop_rx.clone());
        draining.push(tokio::spawn(offshoot_router::serve_threads(router.clone(), listener, Some(loaded), stop_rx.clone(), threads)));
    }
    // Orphans of a crash are dropped before any clone is made.
    let bg = ctx.background.clone();
    bg.every(
        keeper::Keeper::new(ctx.store.clone(), ctx.key.clone(), ctx.instance.clone(), bg.clone()),
        keeper::ROUND,
        Some(ctx.pools_wake.clone()),
    );
    recover(&ctx).await;
    monitors::rewatch(&ctx).await;
    {
        let ctx = ctx.clone();
        bg.spawn("delivery recovery", async move { events::recover(&ctx).await });
    }
    if let Some(every) = config.poll_interval {
        bg.every(events::Poller(ctx.clone()), every, None);
    }
    bg.every(Reconciler { ctx: ctx.clone(), last_round: None, requests_read: None }, config.reconcile_every, None);
    bg.every(AuditRetention { ctx: ctx.clone(), keep: config.audit_retention }, Duration::from_secs(3600), None);
    if let Some(acme) = config.acme.clone() {
        bg.every(certs::CertKeeper::new(ctx.clone(), acme), certs::ROUND, Some(ctx.certs_wake.clone()));
    }
    if ctx.kube.is_none() {
        cron::recover(&ctx).await;
        bg.every(cron::CronClock(ctx.clone()), cron::EVERY, None);
    }
    if let Some(s) = &ctx.sites {
        let gc = sites::SiteGc {
            store: ctx.store.clone(),
            bucket: s.bucket.clone(),
            locks: ctx.locks.clone(),
            tmp: ctx.data_dir.join("tmp"),
            swept: false,
        };
        bg.every(gc, sites::GC_EVERY, None);
    }
    bg.spawn("container events", follow_containers(ctx.clone()));
    tracing::info!(api = %api_listener.local_addr()?, router = %router_port, tls = ?tls_port, domain = %config.domain, "offshoot server ready");
    let mut stop = stop_rx.clone();
    let app = api::router(ctx.clone())
        .merge(ui::router(ctx.clone(), sso::routes()).layer(axum::extract::DefaultBodyLimit::max(api::MAX_BODY)).with_state(ctx.clone()))
        .fallback({
            let ctx = ctx.clone();
            move |req: axum::extract::Request| api::no_such_path(ctx.clone(), req)
        });
    axum::serve(api_listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>())
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            let _ = stop_tx.send(true);
            let _ = stop.changed().await;
        })
        .await
        .context("serve the API")?;
    // The router stops accepting and finishes the requests in flight.
    for d in draining {
        if let Ok(Err(e)) = d.await {
            tracing::error!(error = %e, "the router stopped with an error");
        }
    }
    // Loops stop; deployments in flight stop at their next step and resume at the next start.
    let left = ctx.background.shutdown(Duration::from_secs(10)).await;
    tracing::info!(left, "background work stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = ctrl_c => {},
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {},
    }
}

/// This server's instance id (`DATA_DIR/instance-id`, created on first start): every object
/// it creates carries it, and it reconciles only those.
fn instance_id(config: &Config) -> Result<String> {
    let path = config.data_dir.join("instance-id");
    if let Ok(id) = std::fs::read_to_string(&path)
        && !id.trim().is_empty()
    {
        return Ok(id.trim().to_owned());
    }
    let id = crypto::hex(&crypto::random_bytes::<8>());
    std::fs::write(&path, format!("{id}\n")).with_context(|| format!("write `{}`", path.display()))?;
    Ok(id)
}

/// On first start: an admin token, stored as a hash, written to `DATA_DIR/admin-token` (0600).
async fn ensure_admin_token(store: &Store, config: &Config) -> Result<()> {
    if store.token_count().await? > 0 {
        return Ok(());
    }
    let token = crypto::new_token();
    store.add_token(&crypto::hash_token(&token), "admin").await?;
    crypto::write_private(&config.data_dir.join("admin-token"), format!("{token}\n").as_bytes())?;
    tracing::info!(path = %config.data_dir.join("admin-token").display(), "admin token created");
    Ok(())
}

/// After a restart: resume every deployment that was running.
async fn recover(ctx: &Shared) {
    // Terraform runs a stopped server left are interrupted (a resumed deployment runs the entry
    // again, after salvaging the state its container left); locks of deployments that ended go.
    let now = offshoot_store::now_ms();
    match (ctx.store.interrupt_infra_runs(now).await, ctx.store.release_stale_infra_locks().await) {
        (Ok(runs), Ok(locks)) if runs + locks > 0 => tracing::info!(runs, locks, "infrastructure: interrupted runs and stale locks"),
        (Err(e), _) | (_, Err(e)) => tracing::error!(error = %e, "infrastructure: cannot interrupt runs or release stale locks"),
        _ => {}
    }
    match ctx.store.unfinished_deployments().await {
        Ok(list) => {
            for d in list {
                tracing::info!(env = %d.env_id, workflow = %d.workflow, deployment = %d.id, "resuming an interrupted deployment");
                controller::spawn(ctx, d.id);
            }
        }
        Err(e) => tracing::error!(error = %e, "cannot list unfinished deployments"),
    }
}

/// Drops the audit records older than `--audit-retention` (hourly; the first round at start).
struct AuditRetention {
    ctx: Shared,
    keep: Duration,
}

impl background::Periodic for AuditRetention {
    const NAME: &'static str = "audit retention";

    async fn round(&mut self) -> Result<(), failure::Failure> {
        let before = offshoot_store::now_ms() - i64::try_from(self.keep.as_millis()).unwrap_or(i64::MAX / 2);
        let dropped = self.ctx.store.prune_activity(before).await?;
        if dropped > 0 {
            tracing::info!(dropped, "audit: records past their retention dropped");
        }
        Ok(())
    }
}

/// Rebuilds the routing table as soon as a container starts or stops, so that the router never
/// waits on an address that is gone. The event stream ends when the engine goes away (a
/// restart, a lost connection); what happened meanwhile is not replayed, so each time it
/// connects again, once it has been listening a moment, what the engine says of every
/// container replaces what the events said.
async fn follow_containers(ctx: Shared) {
    use futures_util::StreamExt as _;
    loop {
        let mut events = std::pin::pin!(ctx.rt.container_events());
        let resync = tokio::time::sleep(RESYNC_AFTER);
        let mut resync = std::pin::pin!(resync);
        let mut resynced = false;
        loop {
            tokio::select! {
                e = events.next() => match e {
                    Some(Ok((action, container))) => {
                        tracing::debug!(%action, %container, "container event; rebuilding the routing table");
                        // The engine's list may still show a container that just died as
                        // running: the event is what counts.
                        ctx.set_alive(&container, matches!(action.as_str(), "start" | "unpause"));
                        // Events come in bursts (a deployment): take those already waiting,
                        // then rebuild once.
                        while let Some(Some(Ok((action, container)))) = futures_util::FutureExt::now_or_never(events.next()) {
                            ctx.set_alive(&container, matches!(action.as_str(), "start" | "unpause"));
                        }
                        ctx.refresh_routes().await;
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "container events interrupted; reconnecting");
                        break;
                    }
                    None => break,
                },
                () = &mut resync, if !resynced => {
                    resynced = true;
                    resync_containers(&ctx).await;
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// How long the event stream listens before the engine's state is read again: events from
/// then on are not missed, and later ones correct the reading.
const RESYNC_AFTER: Duration = Duration::from_millis(500);

/// What the engine says now of every container (running or not) replaces what its events
/// said, and the routing table is rebuilt from it.
async fn resync_containers(ctx: &Shared) {
    use offshoot_runtime::Runtime as _;
    match ctx.rt.list(None).await {
        Ok(observed) => {
            for o in &observed {
                ctx.set_alive(&o.name, o.state == offshoot_runtime::State::Running);
            }
            tracing::info!(containers = observed.len(), "container events connected; the engine's state read again");
            ctx.refresh_routes().await;
        }
        Err(e) => tracing::warn!(error = %e, "cannot read the engine's containers after connecting to its events"),
    }
}

/// The reconciler, a loop of the server: it drives the use cases (expiry, idle sleep,
/// schedules, redeploys) over the whole plane. Every round re-reads the store and the engine; it
/// keeps only when its last round began, so a schedule fires once, in the round after its time.
struct Reconciler {
    ctx: Shared,
    last_round: Option<i64>,
    /// When the router's request times were last read and stored (`None`: not yet).
    requests_read: Option<i64>,
}

impl background::Periodic for Reconciler {
    const NAME: &'static str = "reconciler";

    async fn round(&mut self) -> Result<(), failure::Failure> {
        let now = now_ms();
        // The first round after a start looks back one second: a schedule that fired while the
        // server was down is not replayed.
        let previous = self.last_round.replace(now);
        let result = async {
            self.keep_requests().await?;
            follow_schedules(&self.ctx, previous.unwrap_or(now - 1000), now).await?;
            reconcile(&self.ctx).await
        }
        .await;
        // Containers recreated outside a deployment (liveness, the reconciler) may have new
        // addresses.
        self.ctx.refresh_routes().await;
        result.map_err(|e| failure::Failure::Reason(format!("{e:#}")))
    }
}

/// A request's time is taken a moment before the router stores it: readings overlap by this
/// much so that none falls between two.
const RECORDING_SLACK_MS: i64 = 1000;

impl Reconciler {
    /// Keeps what the router saw (`env show` and idle sleep read it, a restart does not lose
    /// it): the environments that got a request since the last reading that was stored, one
    /// write each, not one per environment ever routed.
    async fn keep_requests(&mut self) -> Result<()> {
        let read_at = now_ms();
        let since = self.requests_read;
        // Routed requests and load-balancer connections, the later of the two per environment.
        let mut latest: HashMap<String, i64> = HashMap::new();
        for (env, at) in self.ctx.router.last_requests().into_iter().chain(self.ctx.tcp.last_connections()) {
            let e = latest.entry(env).or_insert(at);
            *e = (*e).max(at);
        }
        let seen: Vec<(String, i64)> = latest.into_iter().filter(|(_, at)| since.is_none_or(|s| *at >= s - RECORDING_SLACK_MS)).collect();
        self.ctx.store.record_requests(&seen).await?;
        self.requests_read = Some(read_at);
        Ok(())
    }
}

/// Puts to sleep and wakes the environments whose application's schedules fired in
/// `(since, now]`; a request still wakes a scheduled sleeper.
async fn follow_schedules(ctx: &Shared, since: i64, now: i64) -> Result<()> {
    let actor = || offshoot_control::Actor::system("schedule");
    let (sleep, wake) = plane::control(ctx, actor()).scheduled(since, now).await?;
    for env in sleep {
        tracing::info!(env = %env.id, "its application's sleep schedule fired");
        if let Err(e) = waking::sleep(ctx, actor(), &env.id).await {
            tracing::warn!(env = %env.id, error = %e, "cannot put an environment to sleep on schedule");
        }
    }
    for env in wake {
        tracing::info!(env = %env.id, "its application's wake schedule fired");
        let (ctx, id) = (ctx.clone(), env.id.to_string());
        ctx.background.clone().spawn("wake on schedule", async move {
            if let Err(e) = waking::wake(&ctx, actor(), &id).await {
                tracing::warn!(env = %id, error = %e, "cannot wake an environment on schedule");
            }
        });
    }
    Ok(())
}

/// Compares the database with the labelled containers: removes orphans (containers of
/// environments that do not exist or were deleted), recreates missing services of ready
/// environments, and tears down expired environments.
async fn reconcile(ctx: &Shared) -> Result<()> {
    let observed: Vec<_> = ctx.rt.list(None).await?.into_iter().filter(|o| o.instance == ctx.instance).collect();
    let mut seen = std::collections::BTreeSet::new();
    for o in &observed {
        if !seen.insert(o.env_id.clone()) {
            continue;
        }
        let env = ctx.store.env(&o.env_id).await?;
        if env.as_ref().is_none_or(|e| e.status == EnvStatus::Deleted) {
            tracing::info!(env = %o.env_id, "removing orphaned containers");
            ctx.rt.teardown(&o.env_id).await?;
        }
    }
    // Mounted files of environments that are gone (a teardown interrupted before it removed
    // them).
    for id in repo_mounts::on_disk(ctx) {
        if ctx.store.env(&id).await.is_ok_and(|e| e.is_none_or(|e| e.status == EnvStatus::Deleted)) {
            tracing::info!(env = %id, "removing the mounted files of a deleted environment");
            repo_mounts::remove(ctx, &id).await?;
        }
    }
    let expiry = plane::control(ctx, offshoot_control::Actor::system("expiry"));
    let expired = expiry.expire(now_ms()).await?;
    // A day before: the pull request's comment says so, once.
    for env in expiry.expiry_warnings(now_ms()).await? {
        feedback::notify(ctx, &env);
    }
    for env in plane::control(ctx, offshoot_control::Actor::system("idle")).idle_envs(now_ms()).await? {
        if ctx.is_busy(&env.id) {
            continue;
        }
        tracing::info!(env = %env.id, "no request for its idle time; putting it to sleep");
        if let Err(e) = waking::sleep(ctx, offshoot_control::Actor::system("idle"), &env.id).await {
            tracing::warn!(env = %env.id, error = %e, "cannot put an idle environment to sleep");
        }
    }
    for env in ctx.store.envs(None, false).await? {
        if expired.contains(&env.id) {
            continue;
        }
        if matches!(env.status, EnvStatus::Sleeping | EnvStatus::Waking) {
            // On the Docker engine, the round's one listing says whether a sleeping environment
            // has a container running; only then, or when a service is still recorded ready,
            // is there a sleep to finish.
            let running = || {
                observed.iter().any(|o| o.env_id == env.id.as_str() && o.role == "service" && o.state == offshoot_runtime::State::Running)
            };
            // A service still recorded ready was stopped by a sleep cut short: converge
            // records it.
            if env.status == EnvStatus::Sleeping && ctx.kube.is_none() && !running() {
                let reconciler = plane::control(ctx, offshoot_control::Actor::system("reconciler"));
                if reconciler.unrecorded_sleep(&env).await?.is_empty() {
                    continue;
                }
            }
            if let Err(e) = waking::converge(ctx, &env).await {
                tracing::warn!(env = %env.id, error = %e, "cannot finish a sleep or a wake; retrying next round");
            }
            continue;
        }
        if env.status != EnvStatus::Ready || ctx.is_busy(&env.id) {
            continue;
        }
        // A ready environment whose service stopped or vanished from its engine is redeployed
        // (idempotent: running, unchanged services are left alone). Kubernetes restarts pods on
        // its own: there only a workload that is gone counts.
        let states = offshoot_control::Backend::observe(&backends::EnvBackend::at_rest(ctx, &env)).await?;
        let running = |name: &str| states.iter().any(|s| s.service == name && s.running);
        // A static site has no container (the router serves it).
        let missing = ctx
            .store
            .services(&env.id)
            .await?
            .into_iter()
            .any(|s| s.status == ServiceStatus::Ready && !s.detail.is_site() && !running(&s.name));
        if missing {
            tracing::info!(env = %env.id, "a service container is missing or stopped; redeploying");
            ctx.store.set_env_status(&env.id, EnvStatus::Deploying, Some("recreating missing services")).await?;
            let dep = offshoot_control::environments::new_deployment(&env.id, Workflow::Setup, env.commit_sha.clone());
            ctx.store.create_deployment(&dep).await?;
            controller::spawn(ctx, dep.id);
        }
    }
    Ok(())
}
