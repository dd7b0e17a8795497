//! [`Runtime`] over the Docker Engine API (bollard), negotiating the API version so that it
//! works with Docker 20.10 (API 1.41) and newer. One bridge network per environment, every
//! service reachable by its name (a network alias), every container, network and volume
//! labelled `offshoot.managed`, `offshoot.env`, `offshoot.app`.

use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, Ipam, IpamConfig, NetworkCreateRequest, NetworkingConfig, RestartPolicy,
    RestartPolicyNameEnum, VolumeCreateRequest,
};
use bollard::query_parameters::{
    BuildImageOptions, CreateContainerOptions, CreateImageOptions, ListContainersOptions, ListVolumesOptions, LogsOptions,
    RemoveContainerOptions, RemoveVolumeOptions, StopContainerOptions, WaitContainerOptions,
};
use futures_util::StreamExt as _;
use offshoot_runtime::{
    Applied, BuildRequest, Completed, ContainerSpec, LABEL_APP, LABEL_CONFIG_HASH, LABEL_ENV, LABEL_INSTANCE, LABEL_MANAGED, LABEL_ROLE,
    LABEL_SERVICE, MountSource, Namespace, Observed, Outcome, RegistryAuths, Result, Role, Runtime, RuntimeError, State,
};
use std::collections::{HashMap, VecDeque};
use std::time::Duration;
pub use subnets::NetworkPool;

pub mod subnets;

/// The host name every container has for the machine it runs on (the Docker bridge's gateway).
pub const HOST_GATEWAY_ALIAS: &str = "host.docker.internal";

/// Lines of build output kept for the error of a failed build.
const LOG_TAIL_LINES: usize = 30;

/// The engine's own account of itself.
#[derive(Clone, Debug)]
pub struct EngineInfo {
    /// The engine's release, e.g. `20.10.24+dfsg1`.
    pub version: String,
    /// The newest API version the engine speaks, e.g. `1.41`.
    pub api_version: String,
    /// The API version this client and the engine agreed on.
    pub negotiated_api_version: String,
    /// Where the engine keeps images, containers and volumes (`/var/lib/docker`).
    pub root_dir: Option<String>,
}

#[derive(Clone)]
pub struct DockerRuntime {
    docker: Docker,
    /// Network creation one at a time: the engine (API 1.41 without `CheckDuplicate`) would
    /// make two networks of one name for two concurrent creators (imports set up in parallel).
    networks: std::sync::Arc<tokio::sync::Mutex<()>>,
    /// Where environment networks take their subnets from.
    pool: NetworkPool,
    limits: Limits,
}

/// What every container Offshoot runs is held to, so that one environment cannot starve the
/// machine or gain privileges: a memory limit unless its spec gives one, a process limit, no
/// new privileges (setuid binaries gain nothing) and, of the engine's default capabilities, none
/// of those only attacks need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub memory_bytes: u64,
    pub pids: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { memory_bytes: 2 << 30, pids: 4096 }
    }
}

/// Dropped from the engine's default capabilities: raw sockets (ARP and DNS spoofing on the
/// network), device nodes, the audit log and file capabilities.
pub const DROPPED_CAPABILITIES: [&str; 4] = ["NET_RAW", "MKNOD", "AUDIT_WRITE", "SETFCAP"];

/// The security options of every container.
fn hardened(mut h: HostConfig, limits: Limits) -> HostConfig {
    h.security_opt = Some(vec!["no-new-privileges:true".to_owned()]);
    h.cap_drop = Some(DROPPED_CAPABILITIES.map(str::to_owned).to_vec());
    h.pids_limit = Some(limits.pids);
    h.privileged = Some(false);
    h
}

fn engine(operation: &'static str, object: &str, e: DockerError) -> RuntimeError {
    match e {
        DockerError::IOError { .. } | DockerError::HyperResponseError { .. } | DockerError::SocketNotFoundError(_) => {
            RuntimeError::Unavailable { message: e.to_string() }
        }
        other => RuntimeError::Engine { operation, object: object.to_owned(), message: server_message(&other) },
    }
}

fn server_message(e: &DockerError) -> String {
    match e {
        DockerError::DockerResponseServerError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

fn status(e: &DockerError) -> Option<u16> {
    match e {
        DockerError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

fn push_tail(tail: &mut VecDeque<String>, line: &str) {
    if tail.len() == LOG_TAIL_LINES {
        tail.pop_front();
    }
    tail.push_back(line.to_owned());
}

impl DockerRuntime {
    /// `(action, container name)` each time one of Offshoot's containers starts, stops, dies,
    /// is paused or is removed (the stream ends when the engine connection does).
    pub fn container_events(&self) -> impl futures_util::Stream<Item = Result<(String, String)>> + Send + 'static {
        let filters = HashMap::from([
            ("type".to_owned(), vec!["container".to_owned()]),
            ("label".to_owned(), vec![format!("{LABEL_MANAGED}=true")]),
            ("event".to_owned(), ["start", "die", "stop", "destroy", "pause", "unpause"].map(str::to_owned).to_vec()),
        ]);
        let opts = bollard::query_parameters::EventsOptions { filters: Some(filters), ..Default::default() };
        self.docker.events(Some(opts)).map(|e| {
            e.map(|m| {
                let name = m.actor.and_then(|a| a.attributes).and_then(|mut a| a.remove("name")).unwrap_or_default();
                (m.action.unwrap_or_default(), name)
            })
            .map_err(|e| engine("watch events of", "containers", e))
        })
    }

    /// Connects to the local engine (`DOCKER_HOST` or the default socket) and negotiates the
    /// API version.
    pub async fn connect() -> Result<Self> {
        let docker = Docker::connect_with_local_defaults().map_err(|e| RuntimeError::Unavailable { message: e.to_string() })?;
        let docker = docker.negotiate_version().await.map_err(|e| RuntimeError::Unavailable { message: e.to_string() })?;
        Ok(DockerRuntime { docker, networks: std::sync::Arc::default(), pool: NetworkPool::default(), limits: Limits::default() })
    }

    /// Every container's default memory limit and process limit (see [`Limits`]).
    #[must_use]
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Environment networks take their /24 subnets from `pool` (default [`subnets::DEFAULT_POOL`]).
    #[must_use]
    pub fn with_network_pool(mut self, pool: NetworkPool) -> Self {
        self.pool = pool;
        self
    }

    /// The subnets of the engine's networks (ours and others').
    async fn engine_subnets(&self) -> Result<Vec<ipnet::Ipv4Net>> {
        let nets = self
            .docker
            .list_networks(None::<bollard::query_parameters::ListNetworksOptions>)
            .await
            .map_err(|e| engine("list networks", "", e))?;
        let configs = nets.into_iter().flat_map(|n| n.ipam.and_then(|i| i.config).unwrap_or_default());
        Ok(configs.filter_map(|c| c.subnet).filter_map(|s| s.parse::<ipnet::Ipv4Net>().ok()).collect())
    }

    /// The subnets in use: every network of the engine's and every route of the host's.
    async fn used_subnets(&self) -> Result<Vec<ipnet::Ipv4Net>> {
        let mut used = self.engine_subnets().await?;
        used.extend(subnets::host_routes());
        Ok(used)
    }

    /// How much of `pool` is left for environment networks (`offshoot doctor`).
    pub async fn pool_use(&self, pool: NetworkPool) -> Result<subnets::PoolUse> {
        Ok(pool.usage(&self.engine_subnets().await?, &subnets::host_routes()))
    }

    /// Pushes a local image to `registry` (`host:port`, or `host:port/prefix`) and returns the
    /// reference by digest (`registry/repo@sha256:...`), which never changes under a pod.
    pub async fn push(&self, local: &str, registry: &str, auths: &RegistryAuths) -> Result<String> {
        let (repo, tag) = local.rsplit_once(':').filter(|(_, t)| !t.contains('/')).unwrap_or((local, "latest"));
        let remote_repo = format!("{}/{repo}", registry.trim_end_matches('/'));
        let opts = bollard::query_parameters::TagImageOptions { repo: Some(remote_repo.clone()), tag: Some(tag.to_owned()) };
        self.docker.tag_image(local, Some(opts)).await.map_err(|e| engine("tag image", local, e))?;
        let opts = bollard::query_parameters::PushImageOptions { tag: Some(tag.to_owned()), ..Default::default() };
        let creds = docker_credentials(auths, &remote_repo);
        let mut stream = std::pin::pin!(self.docker.push_image(&remote_repo, Some(opts), creds));
        while let Some(item) = stream.next().await {
            let message = match item {
                Ok(info) => info.error_detail.and_then(|d| d.message),
                Err(e) => Some(server_message(&e)),
            };
            if let Some(message) = message {
                let object = format!("{remote_repo}:{tag}");
                return Err(if is_auth_refusal(&message) {
                    RuntimeError::RegistryAuth { registry: offshoot_runtime::registry_of(&remote_repo).to_owned(), image: object, message }
                } else {
                    RuntimeError::Engine { operation: "push image", object, message }
                });
            }
        }
        let inspected =
            self.docker.inspect_image(&format!("{remote_repo}:{tag}")).await.map_err(|e| engine("inspect image", &remote_repo, e))?;
        inspected.repo_digests.unwrap_or_default().into_iter().find(|d| d.starts_with(&format!("{remote_repo}@"))).ok_or_else(|| {
            RuntimeError::Engine { operation: "push image", object: remote_repo, message: "the registry reported no digest".into() }
        })
    }

    /// The API version agreed with the engine.
    pub fn api_version(&self) -> String {
        self.docker.client_version().to_string()
    }

    /// What the engine says of itself (`offshoot doctor` reports it).
    pub async fn engine_info(&self) -> Result<EngineInfo> {
        let version = self.docker.version().await.map_err(|e| engine("read the version of", "the engine", e))?;
        let info = self.docker.info().await.map_err(|e| engine("read the information of", "the engine", e))?;
        Ok(EngineInfo {
            version: version.version.unwrap_or_default(),
            api_version: version.api_version.unwrap_or_default(),
            negotiated_api_version: self.api_version(),
            root_dir: info.docker_root_dir,
        })
    }

    fn labels(ns: &Namespace, spec: &ContainerSpec) -> HashMap<String, String> {
        let mut labels: HashMap<String, String> = ns.labels().into_iter().collect();
        labels.insert(LABEL_SERVICE.to_owned(), spec.service.clone());
        labels.insert(LABEL_ROLE.to_owned(), spec.role.as_str().to_owned());
        labels.insert(LABEL_CONFIG_HASH.to_owned(), spec.config_hash());
        labels
    }

    /// Creates a named volume unless it exists; `tmpfs` makes it memory-backed.
    async fn ensure_volume(&self, ns: &Namespace, name: &str, tmpfs: Option<Option<u64>>) -> Result<()> {
        let driver_opts = tmpfs.map(|size| {
            let mut o = HashMap::from([("type".to_owned(), "tmpfs".to_owned()), ("device".to_owned(), "tmpfs".to_owned())]);
            if let Some(size) = size {
                o.insert("o".to_owned(), format!("size={size}"));
            }
            o
        });
        let req = VolumeCreateRequest {
            name: Some(name.to_owned()),
            labels: Some(ns.labels().into_iter().collect()),
            driver: Some("local".to_owned()),
            driver_opts,
            ..Default::default()
        };
        self.docker.create_volume(req).await.map_err(|e| engine("create volume", name, e))?;
        Ok(())
    }

    /// Keeps a memory-backed volume mounted for the environment's lifetime, as a pod keeps its
    /// memory `emptyDir`: Docker mounts a tmpfs volume afresh for each container otherwise, and
    /// what an init container wrote would be gone when the service starts. The holder runs the
    /// service's own image (`sleep`), labelled like everything else, so teardown removes it.
    async fn hold_tmpfs(&self, ns: &Namespace, volume: &str, image: &str) -> Result<()> {
        let name = format!("{volume}-holder");
        if let Ok(info) = self.docker.inspect_container(&name, None).await {
            if info.state.and_then(|s| s.running).unwrap_or(false) {
                return Ok(());
            }
            self.remove_force(&name).await?;
        }
        let mut labels: HashMap<String, String> = ns.labels().into_iter().collect();
        labels.insert(LABEL_ROLE.to_owned(), "holder".to_owned());
        let body = ContainerCreateBody {
            image: Some(image.to_owned()),
            entrypoint: Some(vec!["sleep".to_owned()]),
            cmd: Some(vec!["2147483647".to_owned()]),
            labels: Some(labels),
            host_config: Some(hardened(
                HostConfig {
                    binds: Some(vec![format!("{volume}:/held")]),
                    network_mode: Some("none".to_owned()),
                    restart_policy: Some(RestartPolicy { name: Some(RestartPolicyNameEnum::UNLESS_STOPPED), maximum_retry_count: None }),
                    memory: Some(64 << 20),
                    ..Default::default()
                },
                self.limits,
            )),
            ..Default::default()
        };
        let opts = CreateContainerOptions { name: Some(name.clone()), ..Default::default() };
        match self.docker.create_container(Some(opts), body).await {
            Ok(c) => self.docker.start_container(&c.id, None).await.map_err(|e| engine("start container", &name, e)),
            Err(e) if status(&e) == Some(409) => Ok(()),
            Err(e) => Err(engine("create container", &name, e)),
        }
    }

    /// Creates and starts a container; returns its id.
    async fn create_stopped(&self, ns: &Namespace, spec: &ContainerSpec) -> Result<String> {
        let mut binds = Vec::new();
        for m in &spec.mounts {
            let (v, tmpfs) = match &m.source {
                MountSource::Volume(v) => (v, None),
                MountSource::Tmpfs { name, size } => (name, Some(*size)),
                MountSource::HostFile(path) => {
                    binds.push(format!("{path}:{}:ro", m.target));
                    continue;
                }
            };
            let name = ns.volume_name(v);
            self.ensure_volume(ns, &name, tmpfs).await?;
            if tmpfs.is_some() {
                self.hold_tmpfs(ns, &name, &spec.image).await?;
            }
            binds.push(format!("{name}:{}", m.target));
        }
        let exposed: Vec<String> = spec.ports.iter().map(|p| format!("{p}/tcp")).collect();
        // A build reaches the internet (package registries) through the default bridge, and
        // nothing of the environment.
        let network = if spec.role == Role::Build { "bridge".to_owned() } else { ns.name() };
        // Its own limit, else the default (raised to its request: the engine refuses a
        // reservation above the limit).
        let memory = spec.memory_bytes.unwrap_or_else(|| self.limits.memory_bytes.max(spec.memory_request_bytes.unwrap_or(0)));
        let host_config = HostConfig {
            binds: (!binds.is_empty()).then_some(binds),
            network_mode: Some(network.clone()),
            nano_cpus: spec.cpu_millis.map(|m| (m as i64) * 1_000_000),
            memory: Some(memory as i64),
            // Requests: a CPU share (1024 a core, at least 2) and a memory reservation, at most
            // the limit.
            cpu_shares: spec.cpu_request_millis.map(|m| ((m * 1024 / 1000) as i64).max(2)),
            memory_reservation: spec.memory_request_bytes.map(|b| b.min(memory) as i64),
            // The machine itself, as Docker Desktop names it (a database on its loopback, say).
            extra_hosts: Some(vec![format!("{HOST_GATEWAY_ALIAS}:host-gateway")]),
            restart_policy: (spec.role == Role::Service)
                .then_some(RestartPolicy { name: Some(RestartPolicyNameEnum::UNLESS_STOPPED), maximum_retry_count: None }),
            ..Default::default()
        };
        let host_config = hardened(host_config, self.limits);
        let aliases = if spec.role == Role::Service { Some(vec![spec.service.clone()]) } else { None };
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            entrypoint: spec.entrypoint.clone(),
            cmd: spec.cmd.clone(),
            env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            labels: Some(Self::labels(ns, spec)),
            exposed_ports: (!exposed.is_empty()).then_some(exposed),
            host_config: Some(host_config),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(network, EndpointSettings { aliases, ..Default::default() })])),
            }),
            ..Default::default()
        };
        let opts = CreateContainerOptions { name: Some(spec.name.clone()), ..Default::default() };
        let created = self.docker.create_container(Some(opts), body).await.map_err(|e| match status(&e) {
            Some(404) => RuntimeError::ImageUnavailable { image: spec.image.clone(), message: server_message(&e) },
            _ => engine("create container", &spec.name, e),
        })?;
        Ok(created.id)
    }

    async fn create(&self, ns: &Namespace, spec: &ContainerSpec) -> Result<String> {
        let id = self.create_stopped(ns, spec).await?;
        self.docker.start_container(&id, None).await.map_err(|e| engine("start container", &spec.name, e))?;
        Ok(id)
    }

    /// Writes the tar archive of `path` in a container to the file `into`; `false` when the
    /// path does not exist.
    async fn download(&self, id: &str, name: &str, path: &str, into: &std::path::Path) -> Result<bool> {
        use tokio::io::AsyncWriteExt as _;
        let opts = bollard::query_parameters::DownloadFromContainerOptions { path: path.to_owned() };
        let mut stream = self.docker.download_from_container(id, Some(opts));
        let io =
            |e: std::io::Error| RuntimeError::Engine { operation: "save the output of", object: name.to_owned(), message: e.to_string() };
        let mut file = tokio::fs::File::create(into).await.map_err(io)?;
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(bytes) => file.write_all(&bytes).await.map_err(io)?,
                Err(e) if status(&e) == Some(404) => return Ok(false),
                Err(e) => return Err(engine("copy the output out of", name, e)),
            }
        }
        file.flush().await.map_err(io)?;
        Ok(true)
    }

    /// Waits for a container to exit: its status code.
    async fn wait_exit(&self, id: &str, name: &str) -> Result<i64> {
        let mut stream = self.docker.wait_container(id, None::<WaitContainerOptions>);
        match stream.next().await {
            Some(Ok(r)) => Ok(r.status_code),
            Some(Err(DockerError::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(e)) => Err(engine("wait for container", name, e)),
            None => Err(RuntimeError::Engine { operation: "wait for container", object: name.to_owned(), message: "no status".into() }),
        }
    }

    /// Published ports and the address on the environment's network.
    async fn address_on(&self, container: &str, network: &str) -> Result<Option<std::net::IpAddr>> {
        let info = self.docker.inspect_container(container, None).await.map_err(|e| engine("inspect container", container, e))?;
        let settings = info.network_settings.unwrap_or_default();
        Ok(settings.networks.as_ref().and_then(|n| n.get(network)).and_then(|n| n.ip_address.as_deref()).and_then(|ip| ip.parse().ok()))
    }

    /// Removes a container (by name or id) and waits until it is gone, so that its name can be
    /// reused at once (a removal already in progress answers 409 while the name is still taken).
    async fn remove_force(&self, container: &str) -> Result<()> {
        let opts = RemoveContainerOptions { force: true, v: false, ..Default::default() };
        match self.docker.remove_container(container, Some(opts)).await {
            Ok(()) => return Ok(()),
            Err(e) if status(&e) == Some(404) => return Ok(()),
            Err(e) if status(&e) == Some(409) => {}
            Err(e) => return Err(engine("remove container", container, e)),
        }
        for _ in 0..100 {
            match self.docker.inspect_container(container, None).await {
                Err(e) if status(&e) == Some(404) => return Ok(()),
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        Err(RuntimeError::Engine {
            operation: "remove container",
            object: container.to_owned(),
            message: "still present after 5 seconds".into(),
        })
    }

    async fn collect_logs(&self, container: &str, tail: Option<usize>) -> Result<String> {
        let opts = LogsOptions {
            stdout: true,
            stderr: true,
            tail: tail.map_or_else(|| "all".to_owned(), |t| t.to_string()),
            ..Default::default()
        };
        let mut stream = self.docker.logs(container, Some(opts));
        let mut out = String::new();
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(c) => out.push_str(&String::from_utf8_lossy(&c.into_bytes())),
                Err(e) => return Err(engine("read logs of", container, e)),
            }
        }
        Ok(out)
    }
}

fn state_of(s: Option<&str>, exit: Option<i64>) -> State {
    match s.unwrap_or("") {
        "created" => State::Created,
        "running" => State::Running,
        "restarting" => State::Restarting,
        "exited" | "dead" => State::Exited { code: exit.unwrap_or(-1) },
        other => State::Other(other.to_owned()),
    }
}

impl Runtime for DockerRuntime {
    async fn ensure_namespace(&self, ns: &Namespace) -> Result<()> {
        let name = ns.name();
        let _one_at_a_time = self.networks.lock().await;
        match self.docker.inspect_network(&name, None).await {
            Ok(_) => return Ok(()),
            Err(e) if status(&e) == Some(404) => {}
            Err(e) => return Err(engine("inspect network", &name, e)),
        }
        // A shared network belongs to its owner: it goes with the owner's teardown.
        let mut labels = ns.labels();
        labels.insert(LABEL_ENV.to_owned(), ns.network_owner().to_owned());
        // A /24 of Offshoot's pool, not one of the engine's few default ones. Another server
        // on this engine may take the one picked first: then the next.
        let mut used = self.used_subnets().await?;
        for _ in 0..8 {
            let Some(subnet) = self.pool.pick(&used) else {
                let message = format!(
                    "no free /{} is left in the network pool {} ({} networks); delete environments, or give the server a wider `--network-pool`",
                    subnets::NETWORK_PREFIX,
                    self.pool,
                    self.pool.capacity()
                );
                return Err(RuntimeError::Engine { operation: "create network", object: name, message });
            };
            let req = NetworkCreateRequest {
                name: name.clone(),
                driver: Some("bridge".into()),
                labels: Some(labels.clone().into_iter().collect()),
                ipam: Some(Ipam {
                    config: Some(vec![IpamConfig { subnet: Some(subnet.to_string()), ..Default::default() }]),
                    ..Default::default()
                }),
                ..Default::default()
            };
            match self.docker.create_network(req).await {
                Ok(_) => return Ok(()),
                Err(e) if status(&e) == Some(409) => return Ok(()),
                Err(e) if status(&e) == Some(403) && server_message(&e).contains("overlaps") => used.push(subnet),
                Err(e) => return Err(engine("create network", &name, e)),
            }
        }
        Err(RuntimeError::Engine {
            operation: "create network",
            object: name,
            message: "every subnet tried was taken meanwhile by another creator on this engine".into(),
        })
    }

    async fn image_exists(&self, image: &str) -> Result<bool> {
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(e) if status(&e) == Some(404) => Ok(false),
            Err(e) => Err(engine("inspect image", image, e)),
        }
    }

    async fn ensure_image(&self, image: &str, auths: &RegistryAuths) -> Result<()> {
        if self.image_exists(image).await? {
            return Ok(());
        }
        let opts = CreateImageOptions { from_image: Some(image.to_owned()), ..Default::default() };
        let mut stream = self.docker.create_image(Some(opts), None, docker_credentials(auths, image));
        while let Some(item) = stream.next().await {
            let message = match item {
                Ok(info) => info.error_detail.and_then(|d| d.message),
                Err(e) => Some(server_message(&e)),
            };
            if let Some(message) = message {
                return Err(if is_auth_refusal(&message) {
                    RuntimeError::RegistryAuth {
                        registry: offshoot_runtime::registry_of(image).to_owned(),
                        image: image.to_owned(),
                        message,
                    }
                } else {
                    RuntimeError::ImageUnavailable { image: image.to_owned(), message }
                });
            }
        }
        Ok(())
    }

    async fn build(&self, req: BuildRequest, log: &(dyn Fn(&str) + Send + Sync)) -> Result<()> {
        let opts = BuildImageOptions {
            dockerfile: req.dockerfile.clone(),
            t: Some(req.tag.clone()),
            rm: true,
            forcerm: true,
            buildargs: Some(req.args.clone().into_iter().collect()),
            labels: Some(req.labels.clone().into_iter().collect()),
            target: req.target.clone().unwrap_or_default(),
            ..Default::default()
        };
        // Every registry's credentials: the engine picks those of each base image's registry.
        let creds: HashMap<String, bollard::auth::DockerCredentials> =
            req.auths.0.iter().map(|(host, c)| (host.clone(), credentials_of(host, c))).collect();
        let creds = (!creds.is_empty()).then_some(creds);
        let mut stream = self.docker.build_image(opts, creds, Some(bollard::body_full(bytes::Bytes::from(req.context))));
        let mut tail = VecDeque::new();
        while let Some(item) = stream.next().await {
            let info = match item {
                Ok(info) => info,
                Err(e) => {
                    let message = server_message(&e);
                    push_tail(&mut tail, &message);
                    return Err(RuntimeError::BuildFailed { tag: req.tag, message, log_tail: Vec::from(tail).join("\n") });
                }
            };
            if let Some(text) = info.stream.as_deref() {
                for line in text.lines().filter(|l| !l.trim().is_empty()) {
                    log(line);
                    push_tail(&mut tail, line);
                }
            }
            if let Some(error) = info.error_detail.and_then(|d| d.message) {
                log(&error);
                push_tail(&mut tail, &error);
                return Err(RuntimeError::BuildFailed { tag: req.tag, message: error, log_tail: Vec::from(tail).join("\n") });
            }
        }
        if !self.image_exists(&req.tag).await? {
            return Err(RuntimeError::BuildFailed {
                tag: req.tag,
                message: "the engine reported no image".into(),
                log_tail: Vec::from(tail).join("\n"),
            });
        }
        Ok(())
    }

    async fn apply(&self, ns: &Namespace, spec: &ContainerSpec) -> Result<Applied> {
        let hash = spec.config_hash();
        let outcome = match self.docker.inspect_container(&spec.name, None).await {
            Ok(info) => {
                let same = info.config.as_ref().and_then(|c| c.labels.as_ref()).and_then(|l| l.get(LABEL_CONFIG_HASH)) == Some(&hash);
                let running = info.state.as_ref().and_then(|s| s.running).unwrap_or(false);
                if same && running {
                    Outcome::Unchanged
                } else {
                    self.remove_force(&spec.name).await?;
                    self.create(ns, spec).await?;
                    Outcome::Replaced
                }
            }
            Err(e) if status(&e) == Some(404) => {
                self.create(ns, spec).await?;
                Outcome::Created
            }
            Err(e) => return Err(engine("inspect container", &spec.name, e)),
        };
        let ip = self.address_on(&spec.name, &ns.name()).await?;
        Ok(Applied { outcome, ip })
    }

    async fn run_to_completion(&self, ns: &Namespace, spec: &ContainerSpec, timeout: Duration) -> Result<Completed> {
        // A leftover from an interrupted run is replaced, not reused.
        self.remove_force(&spec.name).await?;
        // From here on the container is addressed by id: its name may still resolve to a
        // predecessor being removed.
        let id = self.create(ns, spec).await?;
        let result = tokio::time::timeout(timeout, self.wait_exit(&id, &spec.name)).await;
        let logs = self.collect_logs(&id, None).await.unwrap_or_default();
        self.remove_force(&id).await?;
        match result {
            Ok(code) => Ok(Completed { exit_code: code?, logs }),
            Err(_) => Err(RuntimeError::Timeout { object: spec.name.clone(), timeout }),
        }
    }

    async fn run_collect(
        &self,
        ns: &Namespace,
        spec: &ContainerSpec,
        files: Vec<u8>,
        collect: &str,
        into: &std::path::Path,
        timeout: Duration,
    ) -> Result<(Completed, bool)> {
        self.remove_force(&spec.name).await?;
        let id = self.create_stopped(ns, spec).await?;
        let result = async {
            let opts = bollard::query_parameters::UploadToContainerOptions { path: "/".into(), ..Default::default() };
            self.docker
                .upload_to_container(&id, Some(opts), bollard::body_full(bytes::Bytes::from(files)))
                .await
                .map_err(|e| engine("copy the sources into", &spec.name, e))?;
            self.docker.start_container(&id, None).await.map_err(|e| engine("start container", &spec.name, e))?;
            let code = match tokio::time::timeout(timeout, self.wait_exit(&id, &spec.name)).await {
                Ok(code) => code?,
                Err(_) => return Err(RuntimeError::Timeout { object: spec.name.clone(), timeout }),
            };
            let logs = self.collect_logs(&id, None).await.unwrap_or_default();
            if code != 0 {
                return Ok((Completed { exit_code: code, logs }, false));
            }
            let found = self.download(&id, &spec.name, collect, into).await?;
            Ok((Completed { exit_code: code, logs }, found))
        }
        .await;
        self.remove_force(&id).await?;
        result
    }

    async fn salvage(
        &self,
        container: &str,
        collect: &str,
        into: &std::path::Path,
        timeout: Duration,
    ) -> Result<Option<(Completed, bool)>> {
        let id = match self.docker.inspect_container(container, None).await {
            Ok(info) => info.id.unwrap_or_else(|| container.to_owned()),
            Err(e) if status(&e) == Some(404) => return Ok(None),
            Err(e) => return Err(engine("inspect container", container, e)),
        };
        let result = async {
            let code = match tokio::time::timeout(timeout, self.wait_exit(&id, container)).await {
                Ok(code) => code?,
                Err(_) => {
                    let opts = bollard::query_parameters::StopContainerOptions { t: Some(30), ..Default::default() };
                    self.docker.stop_container(&id, Some(opts)).await.map_err(|e| engine("stop container", container, e))?;
                    self.wait_exit(&id, container).await?
                }
            };
            let logs = self.collect_logs(&id, None).await.unwrap_or_default();
            let found = self.download(&id, container, collect, into).await?;
            Ok(Some((Completed { exit_code: code, logs }, found)))
        }
        .await;
        self.remove_force(&id).await?;
        result
    }

    async fn exec(&self, container: &str, cmd: &[String]) -> Result<Completed> {
        let opts = CreateExecOptions::<String> {
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            cmd: Some(cmd.to_vec()),
            ..Default::default()
        };
        let created = self.docker.create_exec(container, opts).await.map_err(|e| engine("exec in", container, e))?;
        let mut logs = String::new();
        if let StartExecResults::Attached { mut output, .. } =
            self.docker.start_exec(&created.id, None).await.map_err(|e| engine("exec in", container, e))?
        {
            while let Some(chunk) = output.next().await {
                match chunk {
                    Ok(c) => logs.push_str(&String::from_utf8_lossy(&c.into_bytes())),
                    Err(e) => return Err(engine("read exec output of", container, e)),
                }
            }
        }
        let info = self.docker.inspect_exec(&created.id).await.map_err(|e| engine("inspect exec in", container, e))?;
        Ok(Completed { exit_code: info.exit_code.unwrap_or(-1), logs })
    }

    async fn list(&self, env_id: Option<&str>) -> Result<Vec<Observed>> {
        let mut labels = vec![format!("{LABEL_MANAGED}=true")];
        if let Some(env) = env_id {
            labels.push(format!("{LABEL_ENV}={env}"));
        }
        let opts = ListContainersOptions { all: true, filters: Some(HashMap::from([("label".to_owned(), labels)])), ..Default::default() };
        let list = self.docker.list_containers(Some(opts)).await.map_err(|e| engine("list containers", "offshoot", e))?;
        let mut out = Vec::new();
        for c in list {
            let labels = c.labels.unwrap_or_default();
            let label = |k: &str| labels.get(k).cloned().unwrap_or_default();
            let name = c.names.unwrap_or_default().first().map(|n| n.trim_start_matches('/').to_owned()).unwrap_or_default();
            let state_str = c.state.map(|s| s.to_string());
            let exit =
                c.status.as_deref().and_then(|s| s.strip_prefix("Exited (")).and_then(|s| s.split(')').next()).and_then(|s| s.parse().ok());
            // Its address on its Offshoot network (its own environment's, or the importer's).
            let ip = c
                .network_settings
                .as_ref()
                .and_then(|n| n.networks.as_ref())
                .and_then(|n| n.iter().find(|(name, _)| name.starts_with("offshoot-")).map(|(_, n)| n))
                .and_then(|n| n.ip_address.as_deref())
                .and_then(|ip| ip.parse().ok());
            out.push(Observed {
                name,
                env_id: label(LABEL_ENV),
                app: label(LABEL_APP),
                instance: label(LABEL_INSTANCE),
                service: label(LABEL_SERVICE),
                role: label(LABEL_ROLE),
                config_hash: label(LABEL_CONFIG_HASH),
                state: state_of(state_str.as_deref(), exit),
                ip,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn logs(&self, container: &str, tail: usize) -> Result<String> {
        self.collect_logs(container, Some(tail)).await
    }

    async fn address(&self, ns: &Namespace, container: &str) -> Result<Option<std::net::IpAddr>> {
        self.address_on(container, &ns.name()).await
    }

    async fn restarts(&self, container: &str) -> Result<u64> {
        let info = self.docker.inspect_container(container, None).await.map_err(|e| engine("inspect container", container, e))?;
        Ok(info.restart_count.and_then(|n| u64::try_from(n).ok()).unwrap_or(0))
    }

    async fn remove(&self, container: &str) -> Result<()> {
        self.remove_force(container).await
    }

    async fn stop(&self, container: &str) -> Result<()> {
        // Ten seconds to stop on SIGTERM, as `docker stop`.
        let opts = StopContainerOptions { t: Some(10), signal: None };
        match self.docker.stop_container(container, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(e) if status(&e) == Some(304) => Ok(()),
            Err(e) => Err(engine("stop container", container, e)),
        }
    }

    async fn start(&self, container: &str) -> Result<()> {
        match self.docker.start_container(container, None).await {
            Ok(()) => Ok(()),
            Err(e) if status(&e) == Some(304) => Ok(()),
            Err(e) => Err(engine("start container", container, e)),
        }
    }

    async fn teardown(&self, env_id: &str) -> Result<()> {
        for c in self.list(Some(env_id)).await? {
            self.remove_force(&c.name).await?;
        }
        let network = Namespace::new(env_id, "", "").name();
        match self.docker.remove_network(&network).await {
            Ok(()) => {}
            Err(e) if status(&e) == Some(404) => {}
            Err(e) => return Err(engine("remove network", &network, e)),
        }
        let filters = HashMap::from([("label".to_owned(), vec![format!("{LABEL_MANAGED}=true"), format!("{LABEL_ENV}={env_id}")])]);
        let volumes = self
            .docker
            .list_volumes(Some(ListVolumesOptions { filters: Some(filters) }))
            .await
            .map_err(|e| engine("list volumes", env_id, e))?;
        for v in volumes.volumes.unwrap_or_default() {
            match self.docker.remove_volume(&v.name, Some(RemoveVolumeOptions { force: true })).await {
                Ok(()) => {}
                Err(e) if status(&e) == Some(404) => {}
                Err(e) => return Err(engine("remove volume", &v.name, e)),
            }
        }
        Ok(())
    }
}

/// Networks and volumes managed by Offshoot, for orphan checks: (kind, name, env id).
pub async fn managed_objects(rt: &DockerRuntime, env_id: &str) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    let labels = vec![format!("{LABEL_MANAGED}=true"), format!("{LABEL_ENV}={env_id}")];
    for c in rt.list(Some(env_id)).await? {
        out.push(("container".to_owned(), c.name));
    }
    let nets = rt
        .docker
        .list_networks(Some(bollard::query_parameters::ListNetworksOptions {
            filters: Some(HashMap::from([("label".to_owned(), labels.clone())])),
        }))
        .await
        .map_err(|e| engine("list networks", env_id, e))?;
    out.extend(nets.into_iter().filter_map(|n| n.name).map(|n| ("network".to_owned(), n)));
    let vols = rt
        .docker
        .list_volumes(Some(ListVolumesOptions { filters: Some(HashMap::from([("label".to_owned(), labels)])) }))
        .await
        .map_err(|e| engine("list volumes", env_id, e))?;
    out.extend(vols.volumes.unwrap_or_default().into_iter().map(|v| ("volume".to_owned(), v.name)));
    Ok(out)
}

/// The engine's form of a registry's credentials.
fn credentials_of(host: &str, c: &offshoot_runtime::Credentials) -> bollard::auth::DockerCredentials {
    bollard::auth::DockerCredentials {
        username: Some(c.username.clone()),
        password: Some(c.password.clone()),
        serveraddress: Some(host.to_owned()),
        ..Default::default()
    }
}

/// The credentials for `image`'s registry, in the engine's form.
fn docker_credentials(auths: &RegistryAuths, image: &str) -> Option<bollard::auth::DockerCredentials> {
    auths.for_image(image).map(|(host, c)| credentials_of(host, c))
}

/// Whether a registry's answer is a refusal for want of (valid) credentials.
fn is_auth_refusal(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    ["unauthorized", "authentication required", "no basic auth credentials", "denied: requested access", "incorrect username or password"]
        .iter()
        .any(|p| m.contains(p))
}
