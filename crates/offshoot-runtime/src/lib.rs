//! What an environment needs from the machinery that runs it, and nothing more: a namespace per
//! environment, image builds, long-running containers applied idempotently, run-to-completion
//! jobs, exec, observation by label, and teardown. The Docker engine implements it
//! (`offshoot-docker`); Kubernetes will later.

use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

/// Every object Offshoot creates carries these labels.
pub const LABEL_MANAGED: &str = "offshoot.managed";
pub const LABEL_ENV: &str = "offshoot.env";
pub const LABEL_APP: &str = "offshoot.app";
pub const LABEL_SERVICE: &str = "offshoot.service";
pub const LABEL_ROLE: &str = "offshoot.role";
/// Which Offshoot server owns an object: several may share one engine, and each reconciles
/// only its own.
pub const LABEL_INSTANCE: &str = "offshoot.instance";
/// Hash of a container's whole specification: equal hash, nothing to do.
pub const LABEL_CONFIG_HASH: &str = "offshoot.config-hash";

/// One environment's isolated space: a network on Docker, a namespace on Kubernetes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Namespace {
    pub env_id: String,
    pub app: String,
    /// The owning server's instance id.
    pub instance: String,
    /// The environment whose network this one's containers join (an imported app's environment
    /// joins its importer's); `None`: its own.
    pub shared_with: Option<String>,
}

impl Namespace {
    pub fn new(env_id: impl Into<String>, app: impl Into<String>, instance: impl Into<String>) -> Self {
        Namespace { env_id: env_id.into(), app: app.into(), instance: instance.into(), shared_with: None }
    }

    /// The same, on the network of environment `owner`.
    pub fn on_network_of(mut self, owner: Option<&str>) -> Self {
        self.shared_with = owner.map(str::to_owned);
        self
    }

    /// The environment that owns the network.
    pub fn network_owner(&self) -> &str {
        self.shared_with.as_deref().unwrap_or(&self.env_id)
    }

    /// Name of the environment's network (Docker) or namespace (Kubernetes).
    pub fn name(&self) -> String {
        format!("offshoot-{}", self.network_owner())
    }

    pub fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (LABEL_MANAGED.to_owned(), "true".to_owned()),
            (LABEL_ENV.to_owned(), self.env_id.clone()),
            (LABEL_APP.to_owned(), self.app.clone()),
            (LABEL_INSTANCE.to_owned(), self.instance.clone()),
        ])
    }

    /// The name of a named volume of this environment.
    pub fn volume_name(&self, volume: &str) -> String {
        format!("offshoot-{}-{volume}", self.env_id)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Service,
    Init,
    Job,
    /// A static site's build: on the engine's default network, not the environment's.
    Build,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Service => "service",
            Role::Init => "init",
            Role::Job => "job",
            Role::Build => "build",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum MountSource {
    /// A named volume of the environment (persistent, or shared through `claim`).
    Volume(String),
    /// A memory-backed named volume of the environment (`shmem`), `size` in bytes: every
    /// container that mounts it (a service and its init containers) sees the same files.
    Tmpfs { name: String, size: Option<u64> },
    /// A file or folder of the machine the engine runs on, mounted read-only (repository files
    /// of `configmap`, written by the server under its data directory). Its path names its
    /// content, so a change of content is a change of the container's configuration.
    HostFile(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Mount {
    pub source: MountSource,
    pub target: String,
}

/// A container to run in a namespace. Kubernetes semantics: `entrypoint` replaces the image's
/// entrypoint (`command`), `cmd` its arguments (`args`); `None` keeps the image's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ContainerSpec {
    /// Unique name of the container.
    pub name: String,
    /// The service it belongs to; also its name on the network.
    pub service: String,
    pub role: Role,
    pub image: String,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub env: BTreeMap<String, String>,
    /// The ports the container listens on, exposed on its network (the router reaches each
    /// replica at its own address; nothing is published on the host). Hashed under the name it
    /// had when these were published, so that an upgrade replaces no container.
    #[serde(rename = "published_ports")]
    pub ports: Vec<u16>,
    pub mounts: Vec<Mount>,
    pub cpu_millis: Option<u64>,
    pub memory_bytes: Option<u64>,
    /// What it asks for besides its limits (`requests`): a share of the CPU under contention
    /// and a memory reservation. Hashed only when set, so that an upgrade replaces no
    /// container that has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_request_millis: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_request_bytes: Option<u64>,
    /// Variables whose change alone does not require a restart (the deployed commit, say): a
    /// running container keeps the values it was started with.
    #[serde(skip)]
    pub volatile_env: std::collections::BTreeSet<String>,
}

impl ContainerSpec {
    /// A stable hash of everything in the specification but `volatile_env` (and the image's
    /// id, which the caller puts in `image` as a content tag or digest).
    pub fn config_hash(&self) -> String {
        let mut stable = self.clone();
        stable.env.retain(|k, _| !self.volatile_env.contains(k));
        let json = serde_json::to_vec(&stable).unwrap_or_default();
        let digest = Sha256::digest(&json);
        hex::encode(&digest[..12])
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Created,
    /// Same image and configuration: the running container was left alone.
    Unchanged,
    /// The configuration changed: the old container was replaced.
    Replaced,
}

#[derive(Clone, Debug)]
pub struct Applied {
    pub outcome: Outcome,
    /// The container's address in its namespace, reachable from this machine (probes go here,
    /// not through published ports, which a proxy may answer for a dead service).
    pub ip: Option<std::net::IpAddr>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Created,
    Running,
    Restarting,
    Exited { code: i64 },
    Other(String),
}

/// A container as the runtime sees it.
#[derive(Clone, Debug)]
pub struct Observed {
    pub name: String,
    pub env_id: String,
    pub app: String,
    pub instance: String,
    pub service: String,
    pub role: String,
    pub config_hash: String,
    pub state: State,
    /// The container's address on its environment's network, when it has one.
    pub ip: Option<std::net::IpAddr>,
}

/// Build an image from a tar of its context.
#[derive(Clone, Debug)]
pub struct BuildRequest {
    pub tag: String,
    /// A tar archive of the build context.
    pub context: Vec<u8>,
    /// Path of the Dockerfile inside the context.
    pub dockerfile: String,
    pub args: BTreeMap<String, String>,
    pub target: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// Credentials for the registries its base images come from.
    pub auths: RegistryAuths,
}

/// A registry's user and password. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials {{ username: {:?}, password: [redacted] }}", self.username)
    }
}

/// Credentials by registry host (`registry.example.com`, `127.0.0.1:5001`, `docker.io`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegistryAuths(pub BTreeMap<String, Credentials>);

impl RegistryAuths {
    /// The credentials for the registry `image` comes from, if any.
    pub fn for_image(&self, image: &str) -> Option<(&str, &Credentials)> {
        let host = registry_of(image);
        self.0.get_key_value(host).map(|(h, c)| (h.as_str(), c))
    }
}

/// The registry an image reference names: its first part when that is a host (it has a `.` or
/// a `:`, or is `localhost`), else Docker Hub (`docker.io`).
pub fn registry_of(image: &str) -> &str {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => first,
        _ => "docker.io",
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Completed {
    pub exit_code: i64,
    pub logs: String,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    #[error("cannot reach the container engine: {message}")]
    Unavailable { message: String },
    #[error("building image `{tag}` failed: {message}")]
    BuildFailed {
        tag: String,
        message: String,
        /// The last lines of the build log.
        log_tail: String,
    },
    #[error("image `{image}` is not available: {message}")]
    ImageUnavailable { image: String, message: String },
    #[error(
        "registry `{registry}` refused `{image}` without valid credentials ({message}); log in: `offshoot registry login {registry} --username USER --password-stdin`"
    )]
    RegistryAuth { registry: String, image: String, message: String },
    #[error("{operation} `{object}` failed: {message}")]
    Engine { operation: &'static str, object: String, message: String },
    #[error("`{object}` did not finish within {timeout:?}")]
    Timeout { object: String, timeout: Duration },
}

pub type Result<T> = std::result::Result<T, RuntimeError>;

/// The runtime interface. Every operation is idempotent: applying a spec twice, removing
/// what is gone, or tearing down an empty namespace succeeds.
pub trait Runtime: Send + Sync {
    /// Creates the namespace if missing.
    fn ensure_namespace(&self, ns: &Namespace) -> impl Future<Output = Result<()>> + Send;
    fn image_exists(&self, image: &str) -> impl Future<Output = Result<bool>> + Send;
    /// Pulls an image unless it is present, with the credentials of its registry if `auths`
    /// has them.
    fn ensure_image(&self, image: &str, auths: &RegistryAuths) -> impl Future<Output = Result<()>> + Send;
    /// Builds an image; `log` receives the build output line by line.
    fn build(&self, req: BuildRequest, log: &(dyn Fn(&str) + Send + Sync)) -> impl Future<Output = Result<()>> + Send;
    /// Makes a long-running container match `spec`: create it, leave it alone if its hash is
    /// unchanged and it runs, or replace it.
    fn apply(&self, ns: &Namespace, spec: &ContainerSpec) -> impl Future<Output = Result<Applied>> + Send;
    /// Runs a container to completion (init containers, jobs) and removes it.
    fn run_to_completion(&self, ns: &Namespace, spec: &ContainerSpec, timeout: Duration) -> impl Future<Output = Result<Completed>> + Send;
    /// Runs a container to completion (a static site's build) with `files`, a tar archive,
    /// unpacked at the root of its filesystem before it starts; then, if it succeeded, writes
    /// the tar archive of `collect` (a path in the container) to `into`. Returns the outcome
    /// and whether `collect` existed. The container is removed.
    fn run_collect(
        &self,
        ns: &Namespace,
        spec: &ContainerSpec,
        files: Vec<u8>,
        collect: &str,
        into: &std::path::Path,
        timeout: Duration,
    ) -> impl Future<Output = Result<(Completed, bool)>> + Send;
    /// What a container [`Runtime::run_collect`] started and a stopped server left behind: if
    /// `container` exists, waits (up to `timeout`, then stops it) for it to end, writes the tar
    /// archive of `collect` to `into` and removes it. `None` when there was no such container;
    /// else its outcome and whether `collect` existed.
    fn salvage(
        &self,
        container: &str,
        collect: &str,
        into: &std::path::Path,
        timeout: Duration,
    ) -> impl Future<Output = Result<Option<(Completed, bool)>>> + Send;
    /// Runs a command in a running container: its exit code and combined output.
    fn exec(&self, container: &str, cmd: &[String]) -> impl Future<Output = Result<Completed>> + Send;
    /// Containers managed by Offshoot, of one environment or of all.
    fn list(&self, env_id: Option<&str>) -> impl Future<Output = Result<Vec<Observed>>> + Send;
    fn logs(&self, container: &str, tail: usize) -> impl Future<Output = Result<String>> + Send;
    /// A container's address in its namespace.
    fn address(&self, ns: &Namespace, container: &str) -> impl Future<Output = Result<Option<std::net::IpAddr>>> + Send;
    /// How many times the engine restarted a container since it was created (a service that
    /// exits at once may be caught running between two restarts).
    fn restarts(&self, container: &str) -> impl Future<Output = Result<u64>> + Send;
    fn remove(&self, container: &str) -> impl Future<Output = Result<()>> + Send;
    /// Stops a container and keeps it (with its volumes) to start again; stopped already is done.
    fn stop(&self, container: &str) -> impl Future<Output = Result<()>> + Send;
    /// Starts a stopped container as it was; running already is done.
    fn start(&self, container: &str) -> impl Future<Output = Result<()>> + Send;
    /// Removes every container, volume and the network of an environment.
    fn teardown(&self, env_id: &str) -> impl Future<Output = Result<()>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_images_registry_and_its_credentials() {
        assert_eq!(registry_of("busybox:stable"), "docker.io");
        assert_eq!(registry_of("library/busybox"), "docker.io");
        assert_eq!(registry_of("ghcr.io/acme/api:1"), "ghcr.io");
        assert_eq!(registry_of("127.0.0.1:5001/acme/api"), "127.0.0.1:5001");
        assert_eq!(registry_of("localhost/api"), "localhost");
        let c = Credentials { username: "u".into(), password: "hunter2".into() };
        assert!(!format!("{c:?}").contains("hunter2"));
        let auths = RegistryAuths([("ghcr.io".to_owned(), c)].into_iter().collect());
        assert_eq!(auths.for_image("ghcr.io/acme/api:1").map(|(h, _)| h), Some("ghcr.io"));
        assert!(auths.for_image("busybox").is_none());
    }

    #[test]
    fn config_hash_changes_with_any_field() {
        let spec = ContainerSpec {
            name: "c".into(),
            service: "web".into(),
            role: Role::Service,
            image: "busybox:stable".into(),
            entrypoint: None,
            cmd: None,
            env: BTreeMap::new(),
            ports: vec![],
            mounts: vec![],
            cpu_millis: None,
            memory_bytes: None,
            cpu_request_millis: None,
            memory_request_bytes: None,
            volatile_env: Default::default(),
        };
        let mut other = spec.clone();
        assert_eq!(spec.config_hash(), other.config_hash());
        other.env.insert("A".into(), "1".into());
        assert_ne!(spec.config_hash(), other.config_hash());
        let mut volatile = other.clone();
        volatile.volatile_env.insert("SHA".into());
        volatile.env.insert("SHA".into(), "abc".into());
        let mut later = volatile.clone();
        later.env.insert("SHA".into(), "def".into());
        assert_eq!(volatile.config_hash(), later.config_hash(), "volatile variables do not count");
    }
}
