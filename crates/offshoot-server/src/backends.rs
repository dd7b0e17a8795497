//! The one place that chooses an environment's engine: Docker by default, Kubernetes with
//! `--runtime kubernetes`. Everything else drives an [`EnvBackend`] through the executor.

use crate::docker_backend::{DockerBackend, Rollout};
use crate::failure::Failure;
use crate::kube_rt::KubeBackend;
use crate::resolving::volatile_keys;
use crate::state::Shared;
use offshoot_control::{Backend, BackendError, ExecOutput, ServiceState};
use offshoot_git::Mirror;
use offshoot_runtime::{Mount, Namespace, Runtime};
use offshoot_store::Environment;
use offshoot_template::resolve::Resolved;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

pub(crate) enum Engine {
    Docker(DockerBackend),
    Kube(Box<KubeBackend>),
}

/// An environment's engine for the executor, and for a deployment or a teardown its Terraform
/// runner. An apply's outputs become variables of the services started after it: the engine is
/// rebuilt with them (the configuration as resolved, plus every entry's outputs).
pub(crate) struct EnvBackend {
    engine: std::sync::RwLock<Arc<Engine>>,
    infra: Option<Infra>,
}

struct Infra {
    runner: crate::infra::Runner,
    /// The configuration as resolved, without outputs.
    base: Resolved,
    outputs: std::sync::Mutex<crate::infra::EntryOutputs>,
}

/// What a deployment built for its engine: service → image, and static site → build key.
pub(crate) type Built = (HashMap<String, String>, HashMap<String, String>);

impl EnvBackend {
    fn of(engine: Engine) -> EnvBackend {
        EnvBackend { engine: std::sync::RwLock::new(Arc::new(engine)), infra: None }
    }

    fn engine(&self) -> Arc<Engine> {
        self.engine.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// The engine of a deployment at `commit` of `mirror`. On Kubernetes the built images are
    /// pushed first with the application's registry `auths` (timed as the `push` phase) and
    /// the files `configmap` mounts are read. Its services get the outputs the environment's
    /// infrastructure last gave; its Terraform runs as `deployment`.
    pub(crate) async fn for_deployment(
        ctx: &Shared,
        (env, deployment): (&Environment, &str),
        resolved: Resolved,
        (images, sites): Built,
        (mirror, commit): (&Mirror, &str),
        auths: &offshoot_runtime::RegistryAuths,
        phases: &mut BTreeMap<String, u64>,
    ) -> Result<EnvBackend, Failure> {
        let outputs = crate::infra::stored_outputs(ctx, &env.id).await?;
        let base = resolved.clone();
        let mut resolved = resolved;
        resolved.add_outputs(&crate::infra::flatten(&outputs));
        let engine = match &ctx.kube {
            Some(k) => {
                let t = Instant::now();
                let images = crate::kube_rt::publish(ctx, k, images, auths).await?;
                phases.insert("push".into(), u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX));
                let files = configmap_files(mirror, commit, &resolved).await?;
                Engine::Kube(Box::new(KubeBackend::new(ctx, k, env, resolved, (images, sites), files, auths)))
            }
            None => {
                let files = crate::repo_mounts::materialize(ctx, &env.id, mirror, commit, &resolved).await?;
                Engine::docker(ctx, env, resolved, (images, sites), files)
            }
        };
        let runner = crate::infra::Runner::new(
            ctx,
            env,
            deployment,
            Some((mirror.clone(), commit.to_owned())),
            base.infrastructure.clone(),
            auths.clone(),
        );
        Ok(EnvBackend { infra: Some(Infra { runner, base, outputs: std::sync::Mutex::new(outputs) }), ..Self::of(engine) })
    }

    /// The engine of a teardown, with the images the services last ran.
    pub(crate) fn for_teardown(ctx: &Shared, env: &Environment, resolved: Resolved, images: HashMap<String, String>) -> EnvBackend {
        Self::at_rest_with(ctx, env, resolved, images, HashMap::new())
    }

    /// With the Terraform runner of a teardown (it destroys).
    pub(crate) fn with_runner(self, runner: crate::infra::Runner, base: Resolved) -> EnvBackend {
        EnvBackend { infra: Some(Infra { runner, base, outputs: std::sync::Mutex::default() }), ..self }
    }

    /// The engine of an environment between deployments with its configuration, images and
    /// mounted files: what a cron job's run needs.
    pub(crate) fn at_rest_with(
        ctx: &Shared,
        env: &Environment,
        resolved: Resolved,
        images: HashMap<String, String>,
        files: HashMap<String, Vec<Mount>>,
    ) -> EnvBackend {
        let engine = match &ctx.kube {
            Some(k) => Engine::Kube(Box::new(KubeBackend::new(
                ctx,
                k,
                env,
                resolved,
                (images, HashMap::new()),
                BTreeMap::new(),
                &Default::default(),
            ))),
            None => Engine::docker(ctx, env, resolved, (images, HashMap::new()), files),
        };
        Self::of(engine)
    }

    /// The engine of an environment as it runs, for what needs no configuration: observing,
    /// logs, exec, stopping and starting services.
    pub(crate) fn at_rest(ctx: &Shared, env: &Environment) -> EnvBackend {
        Self::for_teardown(ctx, env, Resolved::default(), HashMap::new())
    }
}

impl Engine {
    fn docker(ctx: &Shared, env: &Environment, resolved: Resolved, (images, sites): Built, files: HashMap<String, Vec<Mount>>) -> Engine {
        let rollout = Rollout {
            resolved,
            volatile: volatile_keys(&env.env_vars),
            images,
            sites,
            ns: Namespace::new(env.id.as_str(), env.app.as_str(), &ctx.instance).on_network_of(env.parent_id.as_deref()),
            env_id: env.id.to_string(),
            files,
        };
        Engine::Docker(DockerBackend { ctx: ctx.clone(), rollout: Arc::new(rollout) })
    }

    /// The same engine with another configuration.
    fn with(&self, resolved: Resolved) -> Engine {
        match self {
            Engine::Docker(b) => {
                Engine::Docker(DockerBackend { ctx: b.ctx.clone(), rollout: Arc::new(Rollout { resolved, ..b.rollout.as_ref().clone() }) })
            }
            Engine::Kube(b) => Engine::Kube(Box::new(b.with(resolved))),
        }
    }
}

/// Removes everything of an environment from its engine, whatever its configuration says (the
/// engine that builds images is always cleaned too). Idempotent.
pub(crate) async fn remove(ctx: &Shared, env: &Environment) -> Result<(), Failure> {
    if let Some(k) = &ctx.kube {
        crate::kube_rt::teardown(&k.kube, env).await?;
    }
    ctx.rt.teardown(&env.id).await.map_err(Failure::from)?;
    crate::repo_mounts::remove(ctx, &env.id)
        .await
        .map_err(|e| Failure::from(format!("cannot remove the mounted files of `{}`: {e}", env.id)))
}

/// The repository files mounted with `configmap`, at the deployed commit, for Kubernetes: a file
/// per ConfigMap, so a folder is refused there.
async fn configmap_files(mirror: &Mirror, commit: &str, resolved: &Resolved) -> Result<BTreeMap<String, String>, Failure> {
    let mut files = BTreeMap::new();
    for e in crate::repo_mounts::read(mirror, commit, resolved).await? {
        let path = e.file.source().value.clone();
        match e.item {
            offshoot_git::TreeItem::File(file) => {
                files.insert(path, String::from_utf8_lossy(&file.data).into_owned());
            }
            offshoot_git::TreeItem::Dir(_) => {
                let what = format!("service `{}`: configmap `{}`", e.service, e.file.name.value);
                return Err(format!("{what}: `{path}` is a folder; on Kubernetes a configmap entry mounts one file").into());
            }
        }
    }
    Ok(files)
}

impl Backend for EnvBackend {
    async fn infrastructure(&self, name: &str, destroy: bool) -> Result<String, BackendError> {
        let Some(infra) = &self.infra else {
            return Err(BackendError::new(format!("`infrastructure.{name}` runs only in a deployment or a teardown")));
        };
        let action = if destroy { offshoot_terraform::Action::Destroy } else { offshoot_terraform::Action::Apply };
        let (said, vars) = infra.runner.run(name, action).await.map_err(BackendError::from)?;
        if !destroy {
            // The services started from now on get the new outputs (and lose those it no
            // longer gives).
            let all = {
                let mut outputs = infra.outputs.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                outputs.insert(name.to_owned(), vars);
                crate::infra::flatten(&outputs)
            };
            let mut resolved = infra.base.clone();
            resolved.add_outputs(&all);
            let mut engine = self.engine.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            *engine = Arc::new(engine.with(resolved));
        }
        Ok(said)
    }

    async fn prepare(&self) -> Result<(), BackendError> {
        match &*self.engine() {
            Engine::Docker(b) => b.prepare().await,
            Engine::Kube(b) => b.prepare().await,
        }
    }

    async fn start_service(&self, service: &str) -> Result<(), BackendError> {
        match &*self.engine() {
            Engine::Docker(b) => b.start_service(service).await,
            Engine::Kube(b) => b.start_service(service).await,
        }
    }

    async fn run_job(&self, job: &str) -> Result<String, BackendError> {
        match &*self.engine() {
            Engine::Docker(b) => b.run_job(job).await,
            Engine::Kube(b) => b.run_job(job).await,
        }
    }

    async fn remove_environment(&self) -> Result<(), BackendError> {
        match &*self.engine() {
            Engine::Docker(b) => b.remove_environment().await,
            Engine::Kube(b) => b.remove_environment().await,
        }
    }

    async fn finish(&self) -> Result<(), BackendError> {
        match &*self.engine() {
            Engine::Docker(b) => b.finish().await,
            Engine::Kube(b) => b.finish().await,
        }
    }

    async fn observe(&self) -> Result<Vec<ServiceState>, BackendError> {
        match &*self.engine() {
            Engine::Docker(b) => b.observe().await,
            Engine::Kube(b) => b.observe().await,
        }
    }

    async fn logs(&self, service: Option<&str>, tail: usize) -> Result<Vec<(String, String)>, BackendError> {
        match &*self.engine() {
            Engine::Docker(b) => b.logs(service, tail).await,
            Engine::Kube(b) => b.logs(service, tail).await,
        }
    }

    async fn exec(&self, service: &str, command: &[String]) -> Result<ExecOutput, BackendError> {
        match &*self.engine() {
            Engine::Docker(b) => b.exec(service, command).await,
            Engine::Kube(b) => b.exec(service, command).await,
        }
    }

    async fn stop_service(&self, service: &str) -> Result<(), BackendError> {
        match &*self.engine() {
            Engine::Docker(b) => b.stop_service(service).await,
            Engine::Kube(b) => b.stop_service(service).await,
        }
    }

    async fn resume_service(&self, service: &str) -> Result<(), BackendError> {
        match &*self.engine() {
            Engine::Docker(b) => b.resume_service(service).await,
            Engine::Kube(b) => b.resume_service(service).await,
        }
    }

    async fn pause_schedules(&self, paused: bool) -> Result<(), BackendError> {
        match &*self.engine() {
            Engine::Docker(b) => b.pause_schedules(paused).await,
            Engine::Kube(b) => b.pause_schedules(paused).await,
        }
    }
}
