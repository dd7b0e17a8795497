//! Environments on the Docker engine: the `Backend` the executor drives for a deployment. A
//! service is one container per replica on the environment's network (init containers first,
//! retried with back-off), ready when its readiness probe answers at the container's own
//! address; a job is a container run to completion; a static site is served by the router.

use crate::failure::Failure;
use crate::resolving::{exposed, routing_for};
use crate::sites::tail;
use crate::state::{Ctx, Shared, set_service};
use offshoot_api_types::ServiceStatus;
use offshoot_control::{Backend, BackendError, ExecOutput, ServiceState};
use offshoot_runtime::{ContainerSpec, Mount, MountSource, Namespace, Role, Runtime, State};
use offshoot_store::ServiceDetail;
use offshoot_template::model::{Probe, VolumeType};
use offshoot_template::resolve::{Resolved, ResolvedService};
use offshoot_template::span::Sp;
use offshoot_template::validate::parse_quantity;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Attempts of a failing init container before the service fails.
const INIT_ATTEMPTS: u32 = 4;

/// What one deployment of an environment runs: its resolved configuration, the images built for
/// it, and where.
#[derive(Clone)]
pub(crate) struct Rollout {
    pub(crate) resolved: Resolved,
    pub(crate) volatile: std::collections::BTreeSet<String>,
    pub(crate) images: HashMap<String, String>,
    /// Static sites: service → the key of its build.
    pub(crate) sites: HashMap<String, String>,
    pub(crate) ns: Namespace,
    pub(crate) env_id: String,
    /// Repository files mounted into services (`configmap`): service → mounts.
    pub(crate) files: HashMap<String, Vec<Mount>>,
}

/// The Docker engine as the executor's backend, for one deployment.
pub(crate) struct DockerBackend {
    pub(crate) ctx: Shared,
    pub(crate) rollout: Arc<Rollout>,
}

impl Backend for DockerBackend {
    async fn prepare(&self) -> Result<(), BackendError> {
        // Only now, with every image at hand: a failed build leaves nothing behind.
        self.ctx.rt.ensure_namespace(&self.rollout.ns).await.map_err(BackendError::new)
    }

    async fn start_service(&self, name: &str) -> Result<(), BackendError> {
        let s = self.rollout.resolved.services.iter().find(|s| s.name == name);
        let s = s.ok_or_else(|| BackendError::new(format!("service `{name}` is not defined")))?;
        start_service(&self.ctx, &self.rollout, s).await.map_err(BackendError::new)
    }

    async fn run_job(&self, name: &str) -> Result<String, BackendError> {
        run_job(&self.ctx, &self.rollout, name).await.map_err(BackendError::new)
    }

    async fn remove_environment(&self) -> Result<(), BackendError> {
        self.ctx.rt.teardown(&self.rollout.env_id).await.map_err(BackendError::new)?;
        crate::repo_mounts::remove(&self.ctx, &self.rollout.env_id)
            .await
            .map_err(|e| BackendError::new(format!("cannot remove the mounted files: {e}")))
    }

    async fn observe(&self) -> Result<Vec<ServiceState>, BackendError> {
        let list = self.containers(None).await?;
        Ok(list.into_iter().map(|c| ServiceState { running: c.state == offshoot_runtime::State::Running, service: c.service }).collect())
    }

    async fn logs(&self, service: Option<&str>, tail: usize) -> Result<Vec<(String, String)>, BackendError> {
        let mut out = Vec::new();
        for c in self.containers(service).await? {
            out.push((c.service, self.ctx.rt.logs(&c.name, tail).await.map_err(BackendError::new)?));
        }
        Ok(out)
    }

    async fn exec(&self, service: &str, command: &[String]) -> Result<ExecOutput, BackendError> {
        let running = self.containers(Some(service)).await?;
        let c = running.iter().find(|c| c.state == offshoot_runtime::State::Running);
        let c = c.ok_or_else(|| BackendError::not_found(format!("running service `{service}` does not exist")))?;
        let done = self.ctx.rt.exec(&c.name, command).await.map_err(BackendError::new)?;
        Ok(ExecOutput { exit_code: done.exit_code, output: done.logs })
    }

    async fn stop_service(&self, service: &str) -> Result<(), BackendError> {
        for c in self.containers_of(service).await? {
            self.ctx.rt.stop(&c.name).await.map_err(BackendError::new)?;
        }
        Ok(())
    }

    /// Starts the service's containers again and waits until each is ready as a deployment
    /// would: its readiness probe passing, or running without one.
    async fn resume_service(&self, service: &str) -> Result<(), BackendError> {
        let containers = self.containers_of(service).await?;
        for c in &containers {
            self.ctx.rt.start(&c.name).await.map_err(BackendError::new)?;
        }
        let probe = self.rollout.resolved.services.iter().find(|s| s.name == service).and_then(|s| s.readiness_probe.as_ref());
        let waits = containers.iter().map(|c| async {
            let ip = self.ctx.rt.address(&self.rollout.ns, &c.name).await.map_err(BackendError::new)?;
            wait_ready(&self.ctx, &self.rollout.env_id, &c.name, probe, ip).await.map_err(BackendError::from)?;
            self.ctx.set_ready(&c.name, true);
            Ok::<(), BackendError>(())
        });
        futures_util::future::try_join_all(waits).await?;
        Ok(())
    }
}

impl DockerBackend {
    /// The environment's service containers made by this server (of one service, or all).
    async fn containers(&self, service: Option<&str>) -> Result<Vec<offshoot_runtime::Observed>, BackendError> {
        let all = self.ctx.rt.list(Some(&self.rollout.env_id)).await.map_err(BackendError::new)?;
        Ok(all
            .into_iter()
            .filter(|c| c.role == "service" && c.instance == self.ctx.instance && service.is_none_or(|s| s == c.service))
            .collect())
    }

    /// A service's containers; not found when it has none.
    async fn containers_of(&self, service: &str) -> Result<Vec<offshoot_runtime::Observed>, BackendError> {
        let found = self.containers(Some(service)).await?;
        if found.is_empty() {
            return Err(BackendError::not_found(format!("service `{service}` has no container")));
        }
        Ok(found)
    }
}

fn mounts(s: &ResolvedService) -> Vec<Mount> {
    volume_mounts(&s.volumes, &s.name)
}

/// The mounts of `volumes`, of service or job `owner`.
fn volume_mounts(volumes: &[offshoot_template::model::Volume], owner: &str) -> Vec<Mount> {
    volumes
        .iter()
        .filter_map(|v| {
            let target = v.mount_path.as_ref()?.value.clone();
            let source = match (&v.kind, &v.claim) {
                (_, Some(c)) => MountSource::Volume(format!("shared-{}", c.value)),
                (Some(k), None) if k.value == VolumeType::Shmem => MountSource::Tmpfs {
                    name: v.name.as_ref().map_or_else(|| format!("shm-{owner}"), |n| n.value.clone()),
                    size: v.size.as_ref().and_then(|s| parse_quantity(s)).map(|b| b as u64),
                },
                (Some(k), None) if k.value == VolumeType::Persistent => MountSource::Volume(v.name.as_ref()?.value.clone()),
                _ => return None,
            };
            Some(Mount { source, target })
        })
        .collect()
}

fn probe_port(p: &Probe) -> Option<u16> {
    p.http_get
        .as_ref()
        .and_then(|h| h.port.as_ref())
        .or(p.tcp_socket.as_ref().and_then(|t| t.port.as_ref()))
        .and_then(|p| p.trim().parse().ok())
}

pub(crate) fn service_spec(plan: &Rollout, s: &ResolvedService) -> ContainerSpec {
    // Node ports are published on 127.0.0.1 for the router; the rest stay inside.
    let mut ports: Vec<u16> =
        s.ports.iter().filter(|p| p.kind == offshoot_template::model::PortType::NodePort).map(|p| p.target_port).collect();
    ports.sort_unstable();
    ports.dedup();
    ContainerSpec {
        name: format!("offshoot-{}-{}", plan.env_id, s.name),
        service: s.name.clone(),
        role: Role::Service,
        image: plan.images.get(&s.name).cloned().unwrap_or_default(),
        entrypoint: s.command.clone(),
        cmd: s.args.clone(),
        env: exposed(&s.env),
        ports,
        mounts: mounts(s).into_iter().chain(plan.files.get(&s.name).into_iter().flatten().cloned()).collect(),
        cpu_millis: s.cpu.limits.as_deref().and_then(parse_quantity).map(|cores| (cores * 1000.0).round() as u64),
        memory_bytes: s.memory.limits.as_deref().and_then(parse_quantity).map(|bytes| bytes as u64),
        cpu_request_millis: s.cpu.requests.as_deref().and_then(parse_quantity).map(|cores| (cores * 1000.0).round() as u64),
        memory_request_bytes: s.memory.requests.as_deref().and_then(parse_quantity).map(|bytes| bytes as u64),
        volatile_env: plan.volatile.clone(),
    }
}

async fn start_service(ctx: &Shared, plan: &Rollout, s: &ResolvedService) -> Result<(), Failure> {
    let env_id = &plan.env_id;
    let routing = routing_for(&plan.resolved, s);
    let detail = || ServiceDetail {
        hostnames: s.hostnames.clone(),
        image: plan.images.get(&s.name).cloned(),
        routing: Some(routing.clone()),
        ..ServiceDetail::new()
    };
    if let Some(st) = &s.static_site {
        // Served by the router from the site storage: ready once the build's site loads.
        let Some(key) = plan.sites.get(&s.name) else {
            let reason = "the static site was not built";
            set_service(ctx, env_id, &s.name, ServiceStatus::Failed, Some(reason), detail()).await;
            return Err(reason.into());
        };
        let detail = ServiceDetail {
            hostnames: s.hostnames.clone(),
            site: Some(key.clone()),
            fallback: st.fallback.clone(),
            routing: Some(routing.clone()),
            ..ServiceDetail::new()
        };
        if let Err(e) = crate::sites::site(ctx, env_id, &s.name, key, st.fallback.as_deref()).await {
            set_service(ctx, env_id, &s.name, ServiceStatus::Failed, Some(&e.to_string()), detail).await;
            return Err(e);
        }
        set_service(ctx, env_id, &s.name, ServiceStatus::Ready, None, detail).await;
        ctx.refresh_routes().await;
        return Ok(());
    }
    let spec = service_spec(plan, s);
    // Init containers run in order to completion, with the service's image, variables and
    // volumes unless they name their own image; a failing one is retried with back-off.
    for init in &s.init {
        set_service(ctx, env_id, &s.name, ServiceStatus::Initializing, Some(&format!("init container `{}`", init.name)), detail()).await;
        let ispec = ContainerSpec {
            name: format!("offshoot-{env_id}-{}-init-{}", s.name, init.name),
            role: Role::Init,
            image: init.image.clone().filter(|i| Some(i) != s.image.as_ref()).unwrap_or_else(|| spec.image.clone()),
            entrypoint: init.command.clone(),
            cmd: init.args.clone(),
            env: exposed(&init.env),
            ports: vec![],
            ..spec.clone()
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let r = ctx.rt.run_to_completion(&plan.ns, &ispec, Duration::from_secs(300)).await;
            let failure = match r {
                Ok(c) if c.exit_code == 0 => break,
                Ok(c) => format!("init container `{}` exited with code {}: {}", init.name, c.exit_code, tail(&c.logs, 5)),
                Err(e) => format!("init container `{}`: {e}", init.name),
            };
            if attempt >= INIT_ATTEMPTS {
                set_service(ctx, env_id, &s.name, ServiceStatus::Failed, Some(&failure), detail()).await;
                return Err(failure.into());
            }
            set_service(ctx, env_id, &s.name, ServiceStatus::Initializing, Some(&format!("{failure} (retry {attempt})")), detail()).await;
            tokio::time::sleep(Duration::from_millis(500 * 2u64.pow(attempt - 1))).await;
        }
    }
    set_service(ctx, env_id, &s.name, ServiceStatus::Starting, None, detail()).await;
    // One container per replica, all answering to the service's name on the network.
    let replicas: Vec<ContainerSpec> = (0..s.replicas.max(1))
        .map(|i| if i == 0 { spec.clone() } else { ContainerSpec { name: format!("{}-{i}", spec.name), ..spec.clone() } })
        .collect();
    let mut applied = Vec::new();
    for r in &replicas {
        match ctx.rt.apply(&plan.ns, r).await {
            Ok(a) => applied.push(a),
            Err(e) => {
                set_service(ctx, env_id, &s.name, ServiceStatus::Failed, Some(&e.to_string()), detail()).await;
                return Err(e.into());
            }
        }
    }
    // Replicas beyond the wanted number (a template that scaled down) are removed.
    let wanted: HashSet<&str> = replicas.iter().map(|r| r.name.as_str()).collect();
    for o in ctx.rt.list(Some(env_id)).await? {
        if o.service == s.name && o.role == "service" && o.instance == ctx.instance && !wanted.contains(o.name.as_str()) {
            ctx.rt.remove(&o.name).await?;
        }
    }
    let probes = replicas.iter().zip(&applied).map(|(r, a)| wait_ready(ctx, env_id, &r.name, s.readiness_probe.as_ref(), a.ip));
    let results = futures_util::future::join_all(probes).await;
    match results.into_iter().collect::<Result<Vec<()>, Failure>>() {
        Ok(_) => {
            set_service(ctx, env_id, &s.name, ServiceStatus::Ready, None, detail()).await;
            for r in &replicas {
                ctx.set_ready(&r.name, true);
            }
            ctx.refresh_routes().await;
            for (r, a) in replicas.iter().zip(&applied) {
                if let Some(p) = &s.liveness_probe {
                    crate::monitors::watch_liveness(ctx, plan.ns.clone(), r.clone(), p.clone(), a.ip);
                }
                if let Some(p) = &s.readiness_probe {
                    crate::monitors::watch_readiness(ctx, plan.ns.clone(), r.name.clone(), p.clone());
                }
            }
            Ok(())
        }
        Err(e) => {
            set_service(ctx, env_id, &s.name, ServiceStatus::Failed, Some(&e.to_string()), detail()).await;
            Err(e)
        }
    }
}

/// Waits for readiness: the probe succeeding (or, without a probe, the container running).
/// Fails with the probe's last error after `initial_delay + period × failure_threshold`. The
/// first probes come quickly (25 ms, growing by half up to 250 ms): a service that is up at once
/// is ready at once, not a period later.
async fn wait_ready(ctx: &Ctx, env_id: &str, container: &str, probe: Option<&Probe>, ip: Option<std::net::IpAddr>) -> Result<(), Failure> {
    let (period, threshold, initial) = match probe {
        Some(p) => probe_timing(p),
        None => (1, 5, 0),
    };
    let deadline = Instant::now() + Duration::from_secs(initial + period * threshold);
    tokio::time::sleep(Duration::from_secs(initial)).await;
    // Probes are cheap (one request to the container's own address): often at first, then less.
    // The engine is asked about the container at most every ENGINE_CHECK while a probe fails,
    // since a listing competes with the containers being started.
    const ENGINE_CHECK: Duration = Duration::from_millis(250);
    let mut pause = Duration::from_millis(25);
    let mut checked: Option<Instant> = None;
    loop {
        // With a probe, its success is readiness; without one, running is.
        let result = match probe {
            Some(p) => probe_once(ctx, container, p, ip).await,
            None => Err(Failure::Reason(String::new())),
        };
        if result.is_ok() {
            return Ok(());
        }
        let past_deadline = Instant::now() >= deadline;
        if probe.is_none() || past_deadline || checked.is_none_or(|c| c.elapsed() >= ENGINE_CHECK) {
            checked = Some(Instant::now());
            // A container that stopped will not become ready.
            let observed = ctx.rt.list(Some(env_id)).await?;
            match observed.iter().find(|o| o.name == container).map(|o| o.state.clone()) {
                Some(State::Exited { code }) => {
                    let logs = ctx.rt.logs(container, 5).await.unwrap_or_default();
                    return Err(format!("the container exited with code {code}: {}", tail(&logs, 5)).into());
                }
                Some(State::Restarting) => {
                    let logs = ctx.rt.logs(container, 5).await.unwrap_or_default();
                    return Err(format!("the container keeps exiting: {}", tail(&logs, 5)).into());
                }
                None => return Err("the container disappeared".into()),
                // Running now, but maybe between two restarts of a container that exits at once.
                Some(State::Running) if probe.is_none() => {
                    let restarts = ctx.rt.restarts(container).await?;
                    if restarts == 0 {
                        return Ok(());
                    }
                    let logs = ctx.rt.logs(container, 5).await.unwrap_or_default();
                    return Err(format!("the container keeps exiting ({restarts} restarts): {}", tail(&logs, 5)).into());
                }
                _ => {}
            }
        }
        let last = result.err().map(|e| e.to_string()).filter(|e| !e.is_empty()).unwrap_or_else(|| "the container is not running".into());
        if past_deadline {
            return Err(format!("never became ready: {last}").into());
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 3 / 2).min(ENGINE_CHECK);
    }
}

pub(crate) async fn probe_once(ctx: &Ctx, container: &str, p: &Probe, ip: Option<std::net::IpAddr>) -> Result<(), Failure> {
    let timeout = Duration::from_secs(p.timeout_seconds.as_ref().map_or(1, |t| t.value.max(1)));
    if let Some(e) = &p.exec {
        let cmd: Vec<String> = e.command.iter().map(|c| c.value.clone()).collect();
        let r = tokio::time::timeout(timeout, ctx.rt.exec(container, &cmd))
            .await
            .map_err(|_| format!("exec probe timed out after {timeout:?}"))?;
        let c = r?;
        return if c.exit_code == 0 {
            Ok(())
        } else {
            Err(format!("exec probe exited with code {}: {}", c.exit_code, tail(&c.logs, 2)).into())
        };
    }
    let port = probe_port(p).ok_or("the probe has no port")?;
    let addr = std::net::SocketAddr::new(ip.ok_or("the container has no address")?, port);
    let connect = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| format!("connecting to port {port} timed out"))?;
    let mut stream = connect.map_err(|e| format!("port {port}: {e}"))?;
    let Some(h) = &p.http_get else { return Ok(()) };
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let path = h.path.as_ref().map_or("/", |p| p.value.as_str());
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: offshoot-probe\r\nConnection: close\r\n\r\n");
    let exchange = async {
        stream.write_all(req.as_bytes()).await?;
        let mut buf = vec![0u8; 64];
        let n = stream.read(&mut buf).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&buf[..n]).into_owned())
    };
    let head = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("GET {path} timed out"))?
        .map_err(|e| format!("GET {path}: {e}"))?;
    let code: u16 = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or_else(|| format!("GET {path}: not an HTTP answer"))?;
    if (200..400).contains(&code) { Ok(()) } else { Err(format!("GET {path} answered {code}").into()) }
}

/// The container a job (or a cron job) of an environment runs in, one run at a time.
pub(crate) fn job_container(env_id: &str, job: &str) -> String {
    format!("offshoot-{env_id}-job-{job}")
}

async fn run_job(ctx: &Shared, plan: &Rollout, name: &str) -> Result<String, Failure> {
    let job = plan.resolved.jobs.iter().chain(&plan.resolved.cron_jobs).find(|j| j.name == name);
    let job = job.ok_or_else(|| format!("job `{name}` is not defined"))?;
    let base = job.from_service.as_ref().and_then(|f| plan.resolved.services.iter().find(|s| &s.name == f));
    // Its own build's image, else its service's, else the image it names (pulled if missing).
    let built =
        plan.images.get(&offshoot_manifests::job_image_key(name)).or_else(|| job.from_service.as_ref().and_then(|f| plan.images.get(f)));
    let image = match (built, &job.build) {
        (Some(image), _) => image.clone(),
        (None, Some(_)) => return Err(format!("job `{name}`: its image was not built; deploy the environment again").into()),
        (None, None) => {
            let image = job.image.clone().ok_or_else(|| format!("job `{name}` has no image"))?;
            ctx.rt.ensure_image(&image, &ctx.registry_auths(&plan.ns.app).await?).await?;
            image
        }
    };
    let spec = ContainerSpec {
        name: job_container(&plan.env_id, name),
        service: name.to_owned(),
        role: Role::Job,
        image,
        entrypoint: job.command.clone(),
        cmd: job.args.clone(),
        env: exposed(&job.env),
        ports: vec![],
        // Its volumes (its own, else its service's), and a job made from a service has the
        // service's repository files.
        mounts: volume_mounts(&job.volumes, name)
            .into_iter()
            .chain(base.and_then(|b| plan.files.get(&b.name)).into_iter().flatten().cloned())
            .collect(),
        cpu_millis: job.cpu.limits.as_deref().and_then(parse_quantity).map(|cores| (cores * 1000.0).round() as u64),
        memory_bytes: job.memory.limits.as_deref().and_then(parse_quantity).map(|bytes| bytes as u64),
        cpu_request_millis: job.cpu.requests.as_deref().and_then(parse_quantity).map(|cores| (cores * 1000.0).round() as u64),
        memory_request_bytes: job.memory.requests.as_deref().and_then(parse_quantity).map(|bytes| bytes as u64),
        volatile_env: Default::default(),
    };
    let done = ctx.rt.run_to_completion(&plan.ns, &spec, Duration::from_secs(job.completed_timeout_seconds)).await?;
    if done.exit_code == 0 {
        // The last lines as they were printed (a cron run's history shows them).
        Ok(crate::sites::last_lines(&done.logs, 200).join("\n"))
    } else {
        Err(format!("job `{name}` exited with code {}: {}", done.exit_code, tail(&done.logs, 10)).into())
    }
}

/// A probe's `(period, failure_threshold, initial_delay)` in seconds, with Kubernetes' defaults.
pub(crate) fn probe_timing(p: &Probe) -> (u64, u64, u64) {
    let secs = |v: &Option<Sp<u64>>, d: u64| v.as_ref().map_or(d, |x| x.value);
    (secs(&p.period_seconds, 10).max(1), secs(&p.failure_threshold, 3).max(1), secs(&p.initial_delay_seconds, 0))
}
