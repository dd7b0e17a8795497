//! The environment controller: runs a deployment (fetch → resolve → build → workflow steps)
//! or a teardown, recording every step so that a restarted server resumes where it stopped.
//! One operation per environment at a time (a lock per environment id).

use crate::backends::EnvBackend;
use crate::crypto::SecretKey;
use offshoot_api_types::status;
use offshoot_control::{ExecError, StoreLog, Workflow, execute};
use offshoot_docker::DockerRuntime;
use offshoot_git::Mirror;
use offshoot_runtime::{BuildRequest, Namespace, Runtime};
use offshoot_store::{Deployment, Environment, Routing, ServiceDetail, ServiceRow, Step, Store};
use offshoot_template::document::{self, Kind};
use offshoot_template::envvars::{EnvVarsFile, Var, VarValue};
use offshoot_template::resolve::{self, Resolved, ResolvedService};
use offshoot_template::secret::SecretString;
use offshoot_template::span::Sp;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::task::AbortOnDropHandle;

pub(crate) struct Ctx {
    pub(crate) store: Store,
    pub(crate) rt: DockerRuntime,
    pub(crate) data_dir: PathBuf,
    pub(crate) domain: String,
    pub(crate) router_port: u16,
    pub(crate) key: SecretKey,
    /// This server's id: the label on everything it creates.
    pub(crate) instance: String,
    pub(crate) router: Arc<offshoot_router::Router>,
    pub(crate) tcp: offshoot_router::tcp::TcpProxies,
    /// The TLS listener's port, when there is one (URLs then use `https`).
    pub(crate) tls_port: Option<u16>,
    /// Where webhooks reach this server (`http://host:port`).
    pub(crate) public_url: String,
    /// The git hosts pull-request feedback goes to.
    pub(crate) forges: crate::feedback::Forges,
    /// Client for the git hosts' APIs.
    pub(crate) http: reqwest::Client,
    /// The Instant Datasets' pool keeper.
    pub(crate) pools: crate::datasets::Pools,
    /// How long an environment waits for a clone when a pool is empty.
    pub(crate) dataset_wait: Duration,
    /// Environments run on Kubernetes rather than on the engine (which still builds images).
    pub(crate) kube: Option<crate::kube_rt::KubeRuntime>,
    /// Static sites: their storage and the sites being served.
    pub(crate) sites: Option<crate::sites::Sites>,
    /// Containers failing their readiness probe: out of the router's pool.
    unready: Mutex<HashSet<String>>,
    /// Containers the engine reported dead, stopped or paused since they last started.
    dead: Mutex<HashSet<String>>,
    /// One routing-table rebuild at a time: a rebuild that read older state never swaps in after
    /// one that read newer state.
    /// Holds the ticket up to which requests were covered by the last rebuild (one that began
    /// after a request was made serves it: a burst of requests costs one or two rebuilds).
    refreshing: tokio::sync::Mutex<u64>,
    refresh_tickets: std::sync::atomic::AtomicU64,
    /// Routes the router could not take, by (environment, service).
    route_conflicts: Mutex<BTreeMap<(String, String), Vec<crate::routes::RouteConflict>>>,
    /// The open load-balancer ports.
    load_balancers: Mutex<BTreeMap<offshoot_router::tcp::TcpKey, std::net::SocketAddr>>,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
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
        (public_url, forges): (String, crate::feedback::Forges),
    ) -> Self {
        // The load-balancer ports of the last run, to open the same ones again.
        let load_balancers = std::fs::read_to_string(data_dir.join(LB_FILE))
            .ok()
            .and_then(|t| serde_json::from_str::<Vec<(offshoot_router::tcp::TcpKey, std::net::SocketAddr)>>(&t).ok())
            .unwrap_or_default()
            .into_iter()
            .collect();
        Ctx {
            store,
            rt,
            data_dir,
            domain,
            router_port,
            key,
            instance,
            router,
            tcp: offshoot_router::tcp::TcpProxies::default(),
            tls_port,
            public_url,
            forges,
            http: reqwest::Client::new(),
            pools: crate::datasets::Pools::default(),
            dataset_wait: Duration::from_secs(300),
            kube: None,
            sites: None,
            unready: Mutex::new(HashSet::new()),
            dead: Mutex::new(HashSet::new()),
            load_balancers: Mutex::new(load_balancers),
            route_conflicts: Mutex::new(BTreeMap::new()),
            refreshing: tokio::sync::Mutex::new(0),
            refresh_tickets: std::sync::atomic::AtomicU64::new(0),
            locks: Mutex::new(HashMap::new()),
            background: crate::background::Background::default(),
            liveness: Mutex::new(HashMap::new()),
        }
    }

    /// Whether an operation on the environment is under way (the reconciler leaves it alone).
    pub(crate) fn is_busy(&self, env_id: &str) -> bool {
        self.lock_for(env_id).try_lock().is_err()
    }

    /// Whether any environment's operation is under way.
    pub(crate) fn any_busy(&self) -> bool {
        let locks = self.locks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        locks.values().any(|l| l.try_lock().is_err())
    }

    /// The lock of one environment's operations (or of another named sequence of work).
    pub(crate) fn lock_for(&self, env_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        locks.entry(env_id.to_owned()).or_default().clone()
    }

    /// Mirrors are kept per repository (several apps may share one).
    pub(crate) fn mirror_path(&self, repo: &str) -> PathBuf {
        let digest = crate::crypto::hex(&Sha256::digest(repo.as_bytes())[..10]);
        self.data_dir.join("repos").join(format!("{digest}.git"))
    }

    /// Fetches a repository into its mirror.
    pub(crate) async fn sync_mirror(&self, repo: &str) -> Result<Mirror, String> {
        let (repo, dest) = (repo.to_owned(), self.mirror_path(repo));
        tokio::task::spawn_blocking(move || Mirror::sync(&repo, &dest)).await.map_err(|e| e.to_string())?.map_err(|e| e.to_string())
    }

    /// The mirror of a repository holding `commit`: fetched only when it does not hold it yet (a
    /// commit never changes, so a webhook's fetch serves the deployment it starts).
    pub(crate) async fn mirror_with(&self, repo: &str, commit: &str) -> Result<Mirror, String> {
        let (dest, c) = (self.mirror_path(repo), commit.to_owned());
        let held = tokio::task::spawn_blocking(move || Mirror::open(&dest).ok().filter(|m| m.has_commit(&c).unwrap_or(false)))
            .await
            .map_err(|e| e.to_string())?;
        match held {
            Some(m) => Ok(m),
            None => self.sync_mirror(repo).await,
        }
    }

    /// Rebuilds the routing table from the store and the running containers.
    pub(crate) async fn refresh_routes(&self) {
        use std::sync::atomic::Ordering;
        let ticket = self.refresh_tickets.fetch_add(1, Ordering::SeqCst) + 1;
        let mut covered = self.refreshing.lock().await;
        if *covered >= ticket {
            return;
        }
        // Every request made until now is served by this rebuild, which reads state from now.
        *covered = self.refresh_tickets.load(Ordering::SeqCst);
        if let Err(e) = crate::routes::refresh(self).await {
            tracing::error!(error = format!("{e:#}"), "cannot rebuild the routing table");
        }
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

    pub(crate) fn set_route_conflicts(&self, c: BTreeMap<(String, String), Vec<crate::routes::RouteConflict>>) {
        *self.route_conflicts.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = c;
    }

    /// Why some of a service's routes are not served (another environment has them).
    pub(crate) fn route_conflicts(&self, env_id: &str, service: &str) -> Vec<crate::routes::RouteConflict> {
        let c = self.route_conflicts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        c.get(&(env_id.to_owned(), service.to_owned())).cloned().unwrap_or_default()
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

/// A new deployment record, running from now.
pub(crate) fn new_deployment(env_id: &str, workflow: &str, commit: Option<String>) -> Deployment {
    Deployment {
        id: format!("d{}", crate::crypto::hex(&crate::crypto::random_bytes::<8>())),
        env_id: env_id.to_owned(),
        workflow: workflow.to_owned(),
        commit_sha: commit,
        status: "running".into(),
        error: None,
        phases: "{}".into(),
        created_at: offshoot_store::now_ms(),
        finished_at: None,
    }
}

/// Starts running a deployment in the background.
pub(crate) fn spawn(ctx: &Shared, deployment_id: String) {
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
    if dep.status != "running" {
        return Ok(());
    }
    let Some(env) = ctx.store.env(&dep.env_id).await? else { return Ok(()) };
    tracing::info!(env = %env.id, workflow = %dep.workflow, deployment = %dep.id, "running");
    let result = match dep.workflow.as_str() {
        "teardown" => teardown(ctx, &dep, &env).await,
        _ => deploy(ctx, &dep, &env).await,
    };
    match result {
        Ok(()) => {
            ctx.store.finish_deployment(&dep.id, "succeeded", None).await?;
            let next = if dep.workflow == "teardown" { status::DELETED } else { status::READY };
            ctx.store.set_env_status(&env.id, next, None).await?;
            tracing::info!(env = %env.id, workflow = %dep.workflow, "done");
        }
        Err(reason) => {
            ctx.store.finish_deployment(&dep.id, "failed", Some(&reason)).await?;
            ctx.store.set_env_status(&env.id, status::FAILED, Some(&reason)).await?;
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

/// The environment's forked configuration with the app's secrets, resolved. An importing
/// environment sees its imports' ingress variables; an imported one leaves out its excluded
/// services.
pub(crate) async fn resolve_env(ctx: &Ctx, env: &Environment, commit: Option<&str>) -> Result<Resolved, String> {
    // An importer: its imports' ingress variables, and which services they bring.
    let mut imported = BTreeMap::new();
    let mut imported_services: Vec<String> = Vec::new();
    if env.parent_id.is_none() {
        for child in ctx.store.child_envs(&env.id).await.map_err(|e| e.to_string())? {
            let r = Box::pin(resolve_env(ctx, &child, None)).await.map_err(|e| format!("import `{}`: {e}", child.app))?;
            for s in &r.services {
                for (k, v) in &s.env {
                    if (k.ends_with("_INGRESS_URL") || k.ends_with("_INGRESS_HOST")) && !imported.contains_key(k) {
                        imported.insert(k.clone(), v.expose().to_owned());
                    }
                }
            }
            imported_services.extend(r.services.into_iter().map(|s| s.name));
        }
    }
    let mut r = resolve_own(ctx, env, commit, imported).await?;
    // The importer's tasks for imported services run with the imports.
    drop_service_tasks(&mut r, &imported_services);
    if let Some(parent_id) = &env.parent_id {
        let info = crate::imports::ImportInfo::of(env);
        r.services.retain(|s| !info.exclude.contains(&s.name));
        drop_service_tasks(&mut r, &info.exclude);
        // The importer's routes to this import's services are served by this environment.
        if let Some(parent) = ctx.store.env(parent_id).await.map_err(|e| e.to_string())?
            && let Ok(pr) = Box::pin(resolve_own(ctx, &parent, None, BTreeMap::new())).await
        {
            let mine: HashSet<&str> = r.services.iter().map(|s| s.name.as_str()).collect();
            let theirs: Vec<_> = pr.routes.iter().filter(|rt| mine.contains(rt.service.as_str())).cloned().collect();
            r.routes.extend(theirs);
        }
    }
    Ok(r)
}

/// Removes the workflow tasks that start the named services.
fn drop_service_tasks(r: &mut Resolved, services: &[String]) {
    if services.is_empty() {
        return;
    }
    let gone: Vec<String> = services.iter().map(|s| format!("services.{s}")).collect();
    for steps in r.workflows.values_mut() {
        for step in steps.iter_mut() {
            step.tasks.retain(|t| !gone.contains(t));
        }
    }
}

async fn resolve_own(ctx: &Ctx, env: &Environment, commit: Option<&str>, imported: BTreeMap<String, String>) -> Result<Resolved, String> {
    let tdoc = document::check("application_template.yaml", &env.template, Some(Kind::Template));
    let root = tdoc.root.ok_or_else(|| "the environment's template does not parse".to_owned())?;
    let vdoc = document::check("environment_variables.yaml", &env.env_vars, Some(Kind::EnvVars));
    let mut vars = vdoc.env_vars.unwrap_or_default();
    add_secrets(ctx, &env.app, &mut vars).await?;
    let attached = crate::datasets::variables(ctx, &env.id)
        .await?
        .into_iter()
        .map(|(k, v, secret)| (k, if secret { VarValue::Secret(SecretString::new(v)) } else { VarValue::Plain(v) }))
        .collect();
    let opts = resolve::Options {
        environment_template: env.environment_template.clone(),
        branch: env.branch.clone(),
        env_id: env.id.clone(),
        commit: commit.map(str::to_owned).or_else(|| env.commit_sha.clone()),
        app: Some(env.app.clone()),
        domain: ctx.domain.clone(),
        force_domain: true,
        ingress_port: Some(ctx.tls_port.unwrap_or(ctx.router_port)),
        ingress_tls: ctx.tls_port.is_some(),
        parameters: BTreeMap::new(),
        imported,
        attached,
    };
    resolve::resolve("application_template.yaml", &root, Some(&vars), &opts).map_err(|diags| {
        diags.iter().filter(|d| d.is_error()).map(|d| format!("{}:{}: {}", d.line, d.column, d.message)).collect::<Vec<_>>().join("; ")
    })
}

async fn add_secrets(ctx: &Ctx, app: &str, vars: &mut EnvVarsFile) -> Result<(), String> {
    for s in ctx.store.secrets(app).await.map_err(|e| e.to_string())? {
        let value =
            ctx.key.decrypt(&s.ciphertext, &format!("{app}/{}/{}", s.service, s.key)).map_err(|e| format!("secret `{}`: {e}", s.key))?;
        let var =
            Var { key: Sp::synthetic(s.key.clone()), value: Some(Sp::synthetic(VarValue::Secret(SecretString::new(value)))), secret: true };
        if s.service.is_empty() {
            vars.defaults.retain(|v| v.key.value != s.key);
            vars.defaults.push(var);
        } else {
            match vars.services.iter_mut().find(|(name, _)| name.value == s.service) {
                Some((_, list)) => {
                    list.retain(|v| v.key.value != s.key);
                    list.push(var);
                }
                None => vars.services.push((Sp::synthetic(s.service.clone()), vec![var])),
            }
        }
    }
    Ok(())
}

pub(crate) fn exposed(env: &BTreeMap<String, VarValue>) -> BTreeMap<String, String> {
    env.iter().map(|(k, v)| (k.clone(), v.expose().to_owned())).collect()
}

/// Tag of a built image: a hash of everything that goes into it.
fn content_tag(app: &str, service: &str, tree: &str, s: &ResolvedService) -> String {
    let b = s.build.as_ref();
    let mut h = Sha256::new();
    h.update(tree.as_bytes());
    if let Some(b) = b {
        h.update(b.dockerfile.as_deref().unwrap_or("Dockerfile").as_bytes());
        h.update(b.target.as_deref().unwrap_or("").as_bytes());
        for (k, v) in &b.args {
            h.update(format!("\0{k}={}", v.expose()).as_bytes());
        }
    }
    let digest = crate::crypto::hex(&h.finalize()[..8]);
    format!("offshoot/{app}/{service}:{digest}")
}

/// Records something whose failure to record must not stop the work it describes (a build
/// log, a last error): a failed write is logged, never dropped silently.
pub(crate) fn logged<T>(what: &'static str, r: Result<T, offshoot_store::StoreError>) {
    if let Err(e) = r {
        tracing::error!(error = %e, what, "cannot record");
    }
}

pub(crate) async fn set_service(ctx: &Ctx, env_id: &str, name: &str, st: &str, reason: Option<&str>, detail: ServiceDetail) {
    let row = ServiceRow { env_id: env_id.into(), name: name.into(), status: st.into(), reason: reason.map(str::to_owned), detail };
    if let Err(e) = ctx.store.set_service(&row).await {
        tracing::error!(error = %e, "cannot record a service");
    }
}

async fn deploy(ctx: &Shared, dep: &Deployment, env: &Environment) -> Result<(), String> {
    let mut phases: BTreeMap<String, u64> = BTreeMap::new();
    let store_err = |e: offshoot_store::StoreError| e.to_string();
    if env.status != status::CREATING {
        ctx.store.set_env_status(&env.id, status::DEPLOYING, None).await.map_err(store_err)?;
    }
    let app = ctx.store.app(&env.app).await.map_err(store_err)?.ok_or("the application was deleted")?;

    // Imports first, in order, then this environment; under `parallelize_app_imports` the
    // imports and this environment are all set up at once (their variables are known from their
    // records), and this one is ready when they all are.
    let mut imports = None;
    if dep.workflow == "setup" {
        if parallel_imports(env) {
            let (ctx2, dep2, env2) = (ctx.clone(), dep.clone(), env.clone());
            imports = Some(AbortOnDropHandle::new(tokio::spawn(async move { deploy_imports(&ctx2, &dep2, &env2).await })));
        } else {
            deploy_imports(ctx, dep, env).await?;
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
            let ok = tokio::task::spawn_blocking(move || m.has_commit(&c2)).await.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
            if !ok {
                return Err(format!("commit `{c}` is not in the repository"));
            }
            c.clone()
        }
        None => {
            let (m, b) = (mirror.clone(), env.branch.clone());
            tokio::task::spawn_blocking(move || m.resolve(&b))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("branch `{}` does not exist in the repository", env.branch))?
        }
    };
    ctx.store.set_env_commit(&env.id, &commit).await.map_err(store_err)?;
    ctx.store.set_deployment_commit(&dep.id, &commit).await.map_err(store_err)?;
    phases.insert("fetch".into(), ms(t));

    // Instant Datasets: a clone of each listed dataset is checked out before anything resolves
    // (its variables are built-ins, which `mapping` may use).
    let t = Instant::now();
    let tdoc = document::check("application_template.yaml", &env.template, Some(Kind::Template));
    let wanted = tdoc.template.map(|t| t.datasets_of(env.environment_template.as_deref())).unwrap_or_default();
    crate::datasets::attach(ctx, env, &wanted).await?;
    phases.insert("datasets".into(), ms(t));
    // An attach from a full pool takes well under a millisecond: microseconds too.
    phases.insert("datasets_us".into(), t.elapsed().as_micros() as u64);

    // Resolve.
    let resolved = resolve_env(ctx, env, Some(&commit)).await?;
    let workflow: Workflow = dep.workflow.parse().map_err(|e: offshoot_control::PlanError| e.to_string())?;
    let plan = offshoot_control::plan(&resolved, workflow).map_err(|e| e.to_string())?;

    // Build (content-addressed: an unchanged context is never rebuilt) and pull.
    let t = Instant::now();
    let mut images: HashMap<String, String> = HashMap::new();
    // Static sites: service → the key of its build. Only those this workflow starts are built.
    let mut sites: HashMap<String, String> = HashMap::new();
    let started: HashSet<String> = plan.steps.iter().flat_map(|s| s.tasks()).map(|t| t.key()).collect();
    for s in &resolved.services {
        let image = match &s.build {
            Some(b) => {
                // The build's repository: this app's, or another one (`builds[].repo_url`).
                let (mirror, commit) = match &b.repo {
                    None => (mirror.clone(), commit.clone()),
                    Some(url) => {
                        let m = ctx.sync_mirror(url).await.map_err(|e| format!("service `{}`: fetch `{url}`: {e}", s.name))?;
                        let (m2, wanted) = (m.clone(), b.repo_branch.clone());
                        let c = tokio::task::spawn_blocking(move || {
                            let branch = match wanted {
                                Some(b) => b,
                                None => m2.default_branch().map_err(|e| e.to_string())?.ok_or("it has no default branch")?,
                            };
                            m2.resolve(&branch).map_err(|e| e.to_string())?.ok_or_else(|| format!("branch `{branch}` does not exist"))
                        })
                        .await
                        .map_err(|e| e.to_string())?
                        .map_err(|e| format!("service `{}`: `{url}`: {e}", s.name))?;
                        (m, c)
                    }
                };
                let (m, c, dir) = (mirror.clone(), commit.clone(), b.context.clone());
                let tree = tokio::task::spawn_blocking(move || m.tree_id(&c, &dir))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| format!("service `{}`: build context `{}` does not exist at {}", s.name, b.context, short(&commit)))?;
                let tag = content_tag(&app.name, &s.name, &tree, s);
                if !ctx.rt.image_exists(&tag).await.map_err(|e| e.to_string())? {
                    set_service(ctx, &env.id, &s.name, "building", None, ServiceDetail::new()).await;
                    let (m, c, dir) = (mirror.clone(), commit.clone(), b.context.clone());
                    let context = tokio::task::spawn_blocking(move || m.archive(&c, &dir))
                        .await
                        .map_err(|e| e.to_string())?
                        .map_err(|e| e.to_string())?;
                    let req = BuildRequest {
                        tag: tag.clone(),
                        context,
                        dockerfile: b.dockerfile.clone().unwrap_or_else(|| "Dockerfile".into()),
                        args: exposed(&b.args),
                        target: b.target.clone(),
                        labels: BTreeMap::from([("offshoot.managed".into(), "true".into()), ("offshoot.app".into(), app.name.clone())]),
                    };
                    let log = Mutex::new(String::new());
                    let result = ctx
                        .rt
                        .build(req, &|line| log.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push_str(&format!("{line}\n")))
                        .await;
                    let log = log.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
                    logged("a build log", ctx.store.set_build_log(&dep.id, &s.name, &log).await);
                    if let Err(e) = result {
                        let tail = match &e {
                            offshoot_runtime::RuntimeError::BuildFailed { log_tail, .. } => format!("\n{log_tail}"),
                            _ => String::new(),
                        };
                        set_service(ctx, &env.id, &s.name, status::FAILED, Some(&e.to_string()), ServiceDetail::new()).await;
                        return Err(format!("service `{}`: {e}{tail}", s.name));
                    }
                }
                tag
            }
            None if s.static_site.is_some() => {
                if !started.contains(&format!("services.{}", s.name)) {
                    continue;
                }
                let routing = routing_for(&resolved, s);
                let at = crate::sites::At { deployment: &dep.id, app: &app.name, env_id: &env.id, mirror: &mirror, commit: &commit };
                let key = crate::sites::build(ctx, &at, s, &routing).await.map_err(|e| format!("service `{}`: {e}", s.name))?;
                sites.insert(s.name.clone(), key);
                continue;
            }
            None => {
                let image = s.image.clone().ok_or_else(|| format!("service `{}` has no image", s.name))?;
                if let Err(e) = ctx.rt.ensure_image(&image).await {
                    set_service(ctx, &env.id, &s.name, status::FAILED, Some(&e.to_string()), ServiceDetail::new()).await;
                    return Err(format!("service `{}`: {e}", s.name));
                }
                image
            }
        };
        images.insert(s.name.clone(), image);
    }
    phases.insert("build".into(), ms(t));
    let log = StoreLog::new(ctx.store.clone(), dep.id.clone());
    let backend = EnvBackend::for_deployment(ctx, env, resolved, (images, sites), (&mirror, &commit), &mut phases).await?;
    record_phases(ctx, &dep.id, &phases).await?;
    let t = Instant::now();
    let result = execute(&plan, &Arc::new(backend), &log).await;
    phases.insert("start".into(), ms(t));
    // A halted workflow ends now; otherwise the imports set up beside it are waited for.
    if let Err(e @ ExecError::Halted { .. }) = &result {
        return Err(e.to_string());
    }
    if let Some(imports) = imports {
        imports.await.map_err(|e| format!("imports: {e}"))??;
    }
    // Wall time from the request to a ready environment.
    phases.insert("ready".into(), u64::try_from(offshoot_store::now_ms() - dep.created_at).unwrap_or(0));
    record_phases(ctx, &dep.id, &phases).await?;
    result.map(|_| ()).map_err(|e| e.to_string())
}

/// Records a deployment's phase timings.
async fn record_phases(ctx: &Ctx, deployment: &str, phases: &BTreeMap<String, u64>) -> Result<(), String> {
    let text = serde_json::to_string(phases).map_err(|e| format!("phase timings: {e}"))?;
    ctx.store.set_phases(deployment, &text).await.map_err(|e| format!("{e:#}"))
}

/// Index of the imports step in a deployment's step log (before the workflow's own steps).
const IMPORTS_STEP: i64 = -1;

/// Sets up the environments of the imported apps; a resumed deployment skips this when it was
/// done, and waits for an import's deployment that is still running rather than starting another.
async fn deploy_imports(ctx: &Shared, dep: &Deployment, env: &Environment) -> Result<(), String> {
    let store_err = |e: offshoot_store::StoreError| e.to_string();
    let children = ctx.store.child_envs(&env.id).await.map_err(store_err)?;
    if children.is_empty() {
        return Ok(());
    }
    if ctx.store.steps(&dep.id).await.map_err(store_err)?.iter().any(|s| s.idx == IMPORTS_STEP && s.status == "done") {
        return Ok(());
    }
    let record = |status: &str, output: String| Step {
        deployment: dep.id.clone(),
        idx: IMPORTS_STEP,
        name: "imports".into(),
        status: status.into(),
        output,
    };
    ctx.store.set_step(&record("running", String::new())).await.map_err(store_err)?;
    // The shared network exists before any import joins it.
    let ns = Namespace::new(&env.id, &env.app, &ctx.instance);
    ctx.rt.ensure_namespace(&ns).await.map_err(|e| e.to_string())?;
    let parallel = parallel_imports(env);
    let results: Vec<Result<String, String>> = if parallel {
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
        ctx.store.set_step(&record("failed", e.clone())).await.map_err(store_err)?;
        return Err(e);
    }
    ctx.store.set_step(&record("done", done.join("; "))).await.map_err(store_err)?;
    Ok(())
}

/// `parallelize_app_imports: true` in the environment's template.
fn parallel_imports(env: &Environment) -> bool {
    document::check("application_template.yaml", &env.template, Some(Kind::Template))
        .template
        .and_then(|t| t.parallelize_app_imports.map(|p| p.value))
        .unwrap_or(false)
}

/// Sets up one imported app's environment and waits for it.
async fn deploy_import(ctx: &Shared, child: &Environment) -> Result<String, String> {
    let store_err = |e: offshoot_store::StoreError| e.to_string();
    let running = ctx.store.deployments(&child.id).await.map_err(store_err)?.into_iter().rfind(|d| d.status == "running");
    match running {
        // Interrupted by a restart: `recover` resumes it; wait for it.
        Some(d) => loop {
            match ctx.store.deployment(&d.id).await.map_err(store_err)? {
                Some(now) if now.status == "running" => tokio::time::sleep(Duration::from_millis(200)).await,
                _ => break,
            }
        },
        None => {
            let d = new_deployment(&child.id, "setup", None);
            ctx.store.create_deployment(&d).await.map_err(store_err)?;
            run_boxed(ctx, &d.id).await.map_err(|e| e.to_string())?;
        }
    }
    let now = ctx.store.env(&child.id).await.map_err(store_err)?.ok_or("an imported environment disappeared")?;
    if now.status == status::READY {
        Ok(format!("{} ({}) ready", child.app, child.id))
    } else {
        Err(format!("import `{}` ({}): {}", child.app, child.id, now.reason.unwrap_or(now.status)))
    }
}

fn short(c: &str) -> &str {
    c.get(..7).unwrap_or(c)
}

/// The volatile variables, and every `mapping` entry derived from one.
pub(crate) fn volatile_keys(env_vars: &str) -> std::collections::BTreeSet<String> {
    let mut out: std::collections::BTreeSet<String> = VOLATILE.iter().map(|v| (*v).to_owned()).collect();
    let vars = document::check("environment_variables.yaml", env_vars, Some(Kind::EnvVars)).env_vars.unwrap_or_default();
    for (k, v) in &vars.mapping {
        let names: Vec<String> = if offshoot_template::envvars::is_env_name(v) {
            vec![v.value.clone()]
        } else {
            offshoot_template::interp::parse(v, offshoot_template::interp::Bare::Expand)
                .map(|p| offshoot_template::interp::names(&p).into_iter().map(str::to_owned).collect())
                .unwrap_or_default()
        };
        if names.iter().any(|n| out.contains(n)) {
            out.insert(k.value.clone());
        }
    }
    out
}

/// The deployed commit changes with every push; alone, it does not restart a service whose
/// image and configuration are unchanged (that service keeps the commit it was deployed at), nor
/// makes a static site stale.
pub(crate) const VOLATILE: &[&str] = &["RELEASE_COMMIT_SHA", "RELEASE_COMMIT_SHORT"];

/// What the router needs to know about a service.
pub(crate) fn routing_for(resolved: &Resolved, s: &ResolvedService) -> Routing {
    let node_port = s.ports.iter().find(|p| p.kind == offshoot_template::model::PortType::NodePort && !p.loadbalancer);
    Routing {
        routes: resolved
            .routes
            .iter()
            .filter(|r| r.service == s.name)
            .map(|r| (r.host.clone(), r.path.clone(), r.visibility.clone()))
            .collect(),
        port: node_port.or_else(|| s.ports.iter().find(|p| !p.loadbalancer)).map(|p| p.target_port),
        lb_ports: s.ports.iter().filter(|p| p.loadbalancer).map(|p| p.target_port).collect(),
        ingress: resolved.ingress.as_ref().map(crate::routes::ingress_record),
    }
}

async fn teardown(ctx: &Shared, dep: &Deployment, env: &Environment) -> Result<(), String> {
    ctx.store.set_env_status(&env.id, status::TEARING_DOWN, None).await.map_err(|e| e.to_string())?;
    // The imported apps' environments go first (their containers sit on this one's network).
    for child in ctx.store.child_envs(&env.id).await.map_err(|e| e.to_string())? {
        if child.status == status::DELETED {
            continue;
        }
        ctx.store.set_env_status(&child.id, status::TEARING_DOWN, None).await.map_err(|e| e.to_string())?;
        let d = new_deployment(&child.id, "teardown", None);
        ctx.store.create_deployment(&d).await.map_err(|e| e.to_string())?;
        run_boxed(ctx, &d.id).await.map_err(|e| e.to_string())?;
    }
    // The teardown workflow runs first (its jobs may need the environment); the removal itself
    // always happens, even when the workflow failed or the configuration no longer resolves.
    if let Err(e) = teardown_workflow(ctx, dep, env).await {
        tracing::warn!(env = %env.id, error = %e, "the teardown workflow failed; removing the environment anyway");
    }
    crate::backends::remove(ctx, env).await?;
    // The containers are gone: their databases go back.
    crate::datasets::detach_all(ctx, &env.id).await;
    for s in ctx.store.services(&env.id).await.map_err(|e| e.to_string())? {
        set_service(ctx, &env.id, &s.name, status::DELETED, None, ServiceDetail::new()).await;
    }
    Ok(())
}

/// Runs the environment's teardown workflow on its engine (jobs with the images its services
/// last ran), recorded in the deployment's step log like any other.
async fn teardown_workflow(ctx: &Shared, dep: &Deployment, env: &Environment) -> Result<(), String> {
    let resolved = resolve_env(ctx, env, None).await?;
    let plan = offshoot_control::plan(&resolved, Workflow::Teardown).map_err(|e| e.to_string())?;
    let mut images = HashMap::new();
    for s in ctx.store.services(&env.id).await.map_err(|e| e.to_string())? {
        if let Some(i) = s.detail.image {
            images.insert(s.name, i);
        }
    }
    let log = StoreLog::new(ctx.store.clone(), dep.id.clone());
    let backend = EnvBackend::for_teardown(ctx, env, resolved, images);
    let result = execute(&plan, &Arc::new(backend), &log).await;
    result.map(|_| ()).map_err(|e| e.to_string())
}
