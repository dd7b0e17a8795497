//! Stage two: the Application Template as a typed model.
//!
//! Field names are Release's keys; doc comments are the reference (they become the JSON
//! Schema's descriptions). Every decoder records diagnostics and carries on.

use crate::decode::{Fields, boolean, count, list, text, text_or_empty};
use crate::diag::{Diagnostics, did_you_mean};
use crate::span::{Sp, Text};
use crate::yaml::{Node, Value};
use schemars::JsonSchema;
use serde::{Serialize, Serializer};
use std::fmt;

fn skip<T>(v: &[T]) -> bool {
    v.is_empty()
}

/// Reads a value that must be one of a fixed set of words, suggesting the closest on a typo.
fn choice<E: Copy>(d: &mut Diagnostics, n: &Node, field: &str, options: &[(&'static str, E)]) -> Option<Sp<E>> {
    let t = text(d, n)?;
    if let Some((_, e)) = options.iter().find(|(s, _)| *s == t.as_str()) {
        return Some(Sp::new(*e, t.span));
    }
    let names: Vec<&str> = options.iter().map(|(s, _)| *s).collect();
    d.error(t.span, "invalid-value", format!("`{}` is not a valid {field}; expected one of: {}", t.value, names.join(", ")));
    if let Some(s) = did_you_mean(&t.value, names.iter().copied()) {
        d.hint(format!("did you mean `{s}`?"));
    }
    None
}

/// Command words: a list, or a string split as a shell would.
fn words(d: &mut Diagnostics, n: &Node) -> Option<Vec<Text>> {
    match &n.value {
        Value::Scalar(s) => match shell_words::split(&s.text) {
            Ok(w) => Some(w.into_iter().map(|w| Sp::new(w, n.span)).collect()),
            Err(e) => {
                d.error(n.span, "invalid-value", format!("cannot split command `{}` into words: {e}", s.text));
                None
            }
        },
        _ => Some(list(d, n, text_or_empty)),
    }
}

macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $var:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
        pub enum $name { $($(#[$vm])* #[serde(rename = $s)] $var),+ }
        impl $name {
            pub const ALL: &'static [(&'static str, $name)] = &[$(($s, $name::$var)),+];
            pub fn as_str(self) -> &'static str { match self { $($name::$var => $s),+ } }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }
    };
}

string_enum!(
    /// How a port is exposed.
    PortType {
        /// Reachable only inside the environment's namespace.
        ContainerPort = "container_port",
        /// Exposed through the router with a hostname.
        NodePort = "node_port",
    }
);

string_enum!(
    /// The kind of a service volume.
    VolumeType {
        /// A named volume that outlives restarts of the service.
        Persistent = "persistent",
        /// Memory-backed, shared with the service's init containers.
        Shmem = "shmem",
        /// An S3 bucket mounted as a directory.
        S3 = "s3",
        /// Docker-compose bind mounts are dropped, but hand-written files may say so.
        Empty = "empty_dir",
    }
);

string_enum!(
    /// Who can reach a routing rule.
    Visibility {
        Public = "public",
        PublicDirect = "public-direct",
        Private = "private",
    }
);

/// The Application Template: how to deploy the services of one repository.
#[derive(Clone, Debug, Default, Serialize, JsonSchema)]
#[schemars(title = "Release Application Template")]
pub struct Template {
    /// Application name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app: Option<Text>,
    /// Deploy automatically (run `patch`) on a push to the tracked branch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_deploy: Option<Sp<bool>>,
    /// Cluster context the app deploys to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<Text>,
    /// Base domain of hostnames (`${domain}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<Text>,
    /// `owner/repo` of the source repository.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repo_name: Option<Text>,
    /// Branch environments track; defaults to the repository's default branch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracking_branch: Option<Text>,
    /// Git tag to track instead of a branch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracking_tag: Option<Text>,
    /// `server` (long-running) or `runnable` (runs to completion).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_type: Option<Text>,
    /// Depth of git fetches for builds; absent means full history.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub git_fetch_depth: Option<Sp<u64>>,
    /// Deprecated; exported to containers as an environment variable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<Text>,
    /// Deploy imported apps at the same time instead of in order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parallelize_app_imports: Option<Sp<bool>>,
    /// Public hostnames: a list of single-key maps, `- service: hostname template`.
    #[serde(skip_serializing_if = "skip")]
    pub hostnames: Vec<Hostname>,
    /// Path-based routing rules (an alternative to `hostnames`).
    #[serde(skip_serializing_if = "skip")]
    pub rules: Vec<Rule>,
    /// Ingress (reverse proxy) tuning.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ingress: Option<Ingress>,
    /// Per-environment-type overrides (`ephemeral`, `permanent`).
    #[serde(skip_serializing_if = "skip")]
    pub environment_templates: Vec<EnvironmentTemplate>,
    /// Default CPU, memory and replicas of every service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// Other applications deployed alongside this one, in one namespace.
    #[serde(skip_serializing_if = "skip")]
    pub app_imports: Vec<AppImport>,
    /// Image builds that services reference by image name.
    #[serde(skip_serializing_if = "skip")]
    pub builds: Vec<BuildDef>,
    /// Long-running containers and static sites.
    #[serde(skip_serializing_if = "skip")]
    pub services: Vec<Service>,
    /// Run-to-completion containers invoked from workflows.
    #[serde(skip_serializing_if = "skip")]
    pub jobs: Vec<Job>,
    /// Scheduled jobs.
    #[serde(skip_serializing_if = "skip")]
    pub cron_jobs: Vec<Job>,
    /// Volumes shared between services and jobs (`claim:`).
    #[serde(skip_serializing_if = "skip")]
    pub shared_volumes: Vec<SharedVolume>,
    /// User inputs, referenced as `${parameters.<name>}`.
    #[serde(skip_serializing_if = "skip")]
    pub parameters: Vec<Parameter>,
    /// App-wide node labels.
    #[serde(skip_serializing_if = "skip")]
    pub node_selector: Vec<NodeSelector>,
    /// Kubernetes service accounts bound to a cloud role.
    #[serde(skip_serializing_if = "skip")]
    pub service_accounts: Vec<ServiceAccount>,
    /// Helm charts (run by `charts.<name>` tasks; Kubernetes runtime only).
    #[serde(skip_serializing_if = "skip")]
    pub charts: Vec<Chart>,
    /// Infrastructure-as-code runners such as Terraform.
    #[serde(skip_serializing_if = "skip")]
    pub infrastructure: Vec<Infrastructure>,
    /// Remote development: file sync and port forwards.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub development_environment: Option<DevelopmentEnvironment>,
    /// Extra links shown with each environment.
    #[serde(skip_serializing_if = "skip")]
    pub custom_links: Vec<CustomLink>,
    /// `setup`, `patch` and `teardown`.
    #[serde(skip_serializing_if = "skip")]
    pub workflows: Vec<Workflow>,
}

/// `- <service>: <hostname template>`; placeholders `${env_id}` and `${domain}`.
#[derive(Clone, Debug)]
pub struct Hostname {
    pub service: Text,
    pub template: Text,
}

impl Serialize for Hostname {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry(&self.service.value, &self.template.value)?;
        m.end()
    }
}

impl JsonSchema for Hostname {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Hostname".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A single-key map from a service name to its hostname template.",
            "type": "object",
            "minProperties": 1,
            "maxProperties": 1,
            "additionalProperties": { "type": "string" }
        })
    }
}

#[derive(Clone, Debug, Default, Serialize, JsonSchema)]
pub struct Rule {
    /// Target service.
    pub service: Text,
    /// Hostname templates this rule answers for.
    #[serde(skip_serializing_if = "skip")]
    pub hostnames: Vec<Text>,
    /// URL path prefix, e.g. `/api`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub visibility: Option<Sp<Visibility>>,
}

/// NGINX-style proxy settings. Values are kept as written (`30m`, `'180'`).
#[derive(Clone, Debug, Default, Serialize, JsonSchema)]
pub struct Ingress {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_body_size: Option<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_buffer_size: Option<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_buffering: Option<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_buffers_number: Option<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_max_temp_file_size: Option<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_read_timeout: Option<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_send_timeout: Option<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_connect_timeout: Option<Text>,
}

/// Overrides for one kind of environment. Services are merged by name.
#[derive(Clone, Debug, Default, Serialize, JsonSchema)]
pub struct EnvironmentTemplate {
    pub name: Text,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_deploy: Option<Sp<bool>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracking_branch: Option<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracking_tag: Option<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<Text>,
    #[serde(skip_serializing_if = "skip")]
    pub hostnames: Vec<Hostname>,
    #[serde(skip_serializing_if = "skip")]
    pub rules: Vec<Rule>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ingress: Option<Ingress>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    #[serde(skip_serializing_if = "skip")]
    pub node_selector: Vec<NodeSelector>,
    /// Partial services merged by name; `add: true` introduces one, `remove: true` drops one.
    #[serde(skip_serializing_if = "skip")]
    pub services: Vec<Service>,
    /// Instant Datasets (or handle pools) checked out at creation.
    #[serde(skip_serializing_if = "skip")]
    pub datasets: Vec<NameRef>,
}

#[derive(Clone, Debug, Default, Serialize, JsonSchema)]
pub struct Resources {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Quantities>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<Quantities>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<Sp<u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage: Option<Storage>,
}

/// Kubernetes quantities: `1000m`, `0.5`, `1Gi`, `100Mi`.
#[derive(Clone, Debug, Default, Serialize, JsonSchema)]
pub struct Quantities {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limits: Option<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests: Option<Text>,
}

#[derive(Clone, Debug, Default, Serialize, JsonSchema)]
pub struct Storage {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<Text>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<Text>,
}

#[derive(Clone, Debug, Default, Serialize, JsonSchema)]
pub struct AppImport {
    /// Name of the imported application.
    pub name: Text,
    /// Force the imported app's branch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branch: Option<Text>,
    /// Services of the imported app to skip (older name: `service_excludes`).
    #[serde(skip_serializing_if = "skip")]
    pub exclude_services: Vec<NameRef>,
    /// Only import when the pull request carries one of these labels.
    #[serde(skip_serializing_if = "skip")]
    pub pull_request_labels: Vec<Text>,
}

/// `{name: ...}`
#[derive(Clone, Debug, Default, Serialize, JsonSchema)]
pub struct NameRef {
    pub name: Text,
}

#[derive(Clone, Debug, Default, Serialize, JsonSchema)]
pub struct BuildDef {
    pub name: Text,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dockerfile: Option<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<Text>,
    /// `KEY=VALUE` build arguments; `${envs.X}` is replaced by variable X.
    #[serde(skip_serializing_if = "skip")]
    pub args: Vec<Text>,
    /// Build from another repository.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repo_url: Option<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repo_branch: Option<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_scan: Option<ImageScan>,
}

#[derive(Clone, Debug, Default, Serialize, JsonSchema)]
pub struct ImageScan {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub severity: Option<Text>,
    #[serde(skip_serializing_if = "skip")]
    pub whitelist: Vec<ScanException>,
}

#[derive(Clone, Debug, Default, Serialize, JsonSchema)]
pub struct ScanException {
    pub name: Text,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Text>,
}

/// How a service's image is built from the repository.
#[derive(Clone, Debug, Default, Serialize, JsonSchema)]
pub struct Build {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dockerfile: Option<Text>,
    /// `KEY=VALUE` build arguments; `${envs.X}` is replaced by variable X.
    #[serde(skip_serializing_if = "skip")]
    pub args: Vec<Text>,
    /// Multi-stage build target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<Text>,
}

/// A long-running container or a static site.
#[derive(Clone, Debug, Default, Serialize, JsonSchema)]
pub struct Service {
    /// Unique within the environment's namespace, imports included.
    pub name: Text,
    /// Registry image, or `<org>/<repo>/<name>` for images built from the repository.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build: Option<Build>,
    /// The image is built from this repository.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub has_repo: Option<Sp<bool>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registry: Option<Text>,
    /// Replaces the image's entrypoint (Kubernetes `command`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<Text>>,
    /// Replaces the image's arguments (Kubernetes `args`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<Text>>,
    /// Services started before this one within a workflow step.
    #[serde(skip_serializing_if = "skip")]
    pub depends_on: Vec<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<Port>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volumes: Option<Vec<Volume>>,
    /// Size and class of persistent volumes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage: Option<Storage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Quantities>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<Quantities>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<Sp<u64>>,
    #[serde(skip_serializing_if = "skip")]
    pub node_selector: Vec<NodeSelector>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readiness_probe: Option<Probe>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub liveness_probe: Option<Probe>,
    /// Repository files mounted into the container.
    #[serde(skip_serializing_if = "skip")]
    pub configmap: Vec<ConfigMapFile>,
    /// Offshoot's addition: the application's file secrets mounted as files (compose's
    /// `secrets`), their values stored encrypted, never in the template.
    #[serde(skip_serializing_if = "skip")]
    pub secret_files: Vec<SecretFile>,
    /// Variables set in the template itself; `${parameters.x}` is replaced.
    #[serde(skip_serializing_if = "skip")]
    pub envs: Vec<EnvEntry>,
    /// Containers run to completion, in order, before the service starts. They use the
    /// service's image, variables and volumes unless they name their own image.
    #[serde(skip_serializing_if = "skip")]
    pub init: Vec<InitContainer>,
    /// A static site: built by a command and served from its output directory.
    #[serde(rename = "static", skip_serializing_if = "Option::is_none")]
    pub is_static: Option<Sp<bool>>,
    /// Directory the static build runs in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build_base: Option<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build_package_install_command: Option<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build_command: Option<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build_output_directory: Option<Text>,
    /// Offshoot: the page a static site serves for a navigation to a path it has no file for
    /// (a single-page application's routes): a file of the site (default `index.html`), or
    /// `false` for a 404 (the site's `404.html` when it has one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub static_fallback: Option<Text>,
    /// Runs with stable identity and storage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stateful: Option<Sp<bool>>,
    #[serde(skip_serializing_if = "skip")]
    pub secrets_from: Vec<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<Text>,
    /// Environment templates only: introduce a service the defaults do not have.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub add: Option<Sp<bool>>,
    /// Environment templates only: drop this service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remove: Option<Sp<bool>>,
}

#[derive(Clone, Debug, Default, Serialize, JsonSchema)]
pub struct Port {
    #[serde(rename = "type")]
    pub kind: Option<Sp<PortType>>,
    /// Listening port (for `node_port`, the external one). Quoted or bare.
    pub port: Option<Text>,
    /// Container port traffic is sent to; defaults to `port`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_port: Option<Text>,
    /// A dedicated layer-4 load balancer instead of the HTTP router.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loadbalancer: Option<Sp<bool>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_enabled: Option<Sp<bool>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend_protocol: Option<Text>,
}

#[derive(Clone, Debug, Default, Serialize, JsonSchema)]
pub struct Volume {
    /// Absent for `claim:` volumes.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<Sp<VolumeType>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<Text>,
    pub mount_path: Option<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<Text>,
    /// Name of a `shared_volumes` entry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claim: Option<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket: Option<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage: Option<Storage>,
}

/// Kubernetes probe semantics with snake_case keys; exactly one of `exec`, `http_get`,
/// `tcp_socket`.
#[derive(Clone, Debug, Default, Serialize, JsonSchema)]
pub struct Probe {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecAction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_get: Option<HttpGet>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_socket: Option<TcpSocket>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial_delay_seconds: Option<Sp<u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period_seconds: Option<Sp<u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<Sp<u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_threshold: Option<Sp<u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub success_threshold: Option<Sp<u64>>,
}

#[derive(Clone, Debug, Default, Serialize, JsonSchema)]
pub struct ExecAction {
    pub command: Vec<Text>,
}

#[derive(Clone, Debug, Default, Serialize, JsonSchema)]
pub struct HttpGet {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<Text>,
    pub port: Option<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheme: Option<Text>,
}

#[derive(Clone, Debug, Default, Serialize, JsonSchema)]
pub struct TcpSocket {
    pub port: Option<Text>,
}

#[derive(Clone, Debug, Default, Serialize, JsonSchema)]
pub struct ConfigMapFile {
    pub name: Text,
    pub mount_path: Option<Text>,
    /// Path of the file inside the repository.
    pub repo_path: Option<Text>,
}

impl ConfigMapFile {
    /// The repository path it mounts: its `repo_path`, else its name.
    pub fn source(&self) -> &Text {
        self.repo_path.as_ref().unwrap_or(&self.name)
    }

    /// Where it is mounted: its `mount_path`, else `/etc/<the source's file name>` (its name
    /// for the whole repository).
    pub fn target(&self) -> String {
        if let Some(m) = &self.mount_path {
            return m.value.clone();
        }
        let base = self.source().trim_end_matches('/').rsplit('/').next().unwrap_or("");
        format!("/etc/{}", if base.is_empty() || base == "." { self.name.as_str() } else { base })
    }
}

/// A file secret of the application mounted into a service (Offshoot's addition, made from
/// compose's `secrets`). Its value is the application's file secret `name`
/// (`offshoot app secret set APP NAME --file`).
#[derive(Clone, Debug, Default, Serialize, JsonSchema)]
pub struct SecretFile {
    pub name: Text,
    /// Default `/run/secrets/<name>`; a relative path is under `/run/secrets/`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mount_path: Option<Text>,
    /// Octal, default `0400`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<Text>,
    /// Owner of the file in the container (default root).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gid: Option<Text>,
}

impl SecretFile {
    /// Where it is mounted.
    pub fn target(&self) -> String {
        match &self.mount_path {
            Some(m) if m.starts_with('/') => m.value.clone(),
            Some(m) => format!("/run/secrets/{}", m.value),
            None => format!("/run/secrets/{}", self.name.value),
        }
    }

    /// Its mode (checked by validation; `0400` when absent or not octal).
    pub fn mode_bits(&self) -> u32 {
        self.mode.as_ref().and_then(|m| u32::from_str_radix(m.trim_start_matches("0o"), 8).ok()).filter(|m| *m <= 0o777).unwrap_or(0o400)
    }
}

/// Whether `name` can name a file secret: letters, digits, `.`, `_`, `-`, at most 100.
pub fn valid_secret_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// `{key, value}` set in the template.
#[derive(Clone, Debug, Default, Serialize, JsonSchema)]
pub struct EnvEntry {
    pub key: Text,
    pub value: Text,
}

#[derive(Clone, Debug, Default, Serialize, JsonSchema)]
pub struct InitContainer {
    pub name: Text,
    /// Defaults to the service's image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<Text>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<Text>>,
    /// Added to (and overriding) the service's variables.
    #[serde(skip_serializing_if = "skip")]
    pub envs: Vec<EnvEntry>,
}

#[derive(Clone, Debug, Default, Serialize, JsonSchema)]
pub struct NodeSelector {
    pub key: Text,
    pub value: Text,
}

/// A run-to-completion container (also the shape of `cron_jobs` entries).
#[derive(Clone, Debug, Default, Serialize, JsonSchema)]
pub struct Job {
    pub name: Text,
    /// Reuse the image, configuration and variables of this service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_services: Option<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub has_repo: Option<Sp<bool>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build: Option<Build>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<Text>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<Text>>,
    /// Seconds to wait for completion.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_timeout: Option<Sp<u64>>,
    /// Fail the workflow when the job fails.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub halt_on_error: Option<Sp<bool>>,
    #[serde(skip_serializing_if = "skip")]
    pub envs: Vec<EnvEntry>,
    #[serde(skip_serializing_if = "skip")]
    pub node_selector: Vec<NodeSelector>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volumes: Option<Vec<Volume>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Quantities>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<Quantities>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<Text>,
    #[serde(skip_serializing_if = "skip")]
    pub secrets_from: Vec<Text>,
    /// `cron_jobs` only: a cron schedule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Text>,
}

#[derive(Clone, Debug, Default, Serialize, JsonSchema)]
pub struct SharedVolume {
    pub name: Text,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<Text>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<Text>,
}

#[derive(Clone, Debug, Default, Serialize, JsonSchema)]
pub struct Parameter {
    pub name: Text,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<Text>,
    /// The values it allows (Offshoot's addition; any value when empty).
    #[serde(skip_serializing_if = "skip")]
    pub options: Vec<Text>,
}

#[derive(Clone, Debug, Default, Serialize, JsonSchema)]
pub struct ServiceAccount {
    pub name: Text,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cloud_role: Option<Text>,
}

#[derive(Clone, Debug, Default, Serialize, JsonSchema)]
pub struct Chart {
    pub name: Text,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub directory: Option<Text>,
    /// Values file(s).
    #[serde(skip_serializing_if = "skip")]
    pub values: Vec<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repo_url: Option<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub add: Option<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub install: Option<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub include_crds: Option<Sp<bool>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name_template: Option<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait: Option<Sp<bool>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env_file: Option<Text>,
}

#[derive(Clone, Debug, Default, Serialize, JsonSchema)]
pub struct Infrastructure {
    pub name: Text,
    /// e.g. `terraform`.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub directory: Option<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub values: Option<Text>,
}

#[derive(Clone, Debug, Default, Serialize, JsonSchema)]
pub struct DevelopmentEnvironment {
    #[serde(skip_serializing_if = "skip")]
    pub services: Vec<DevService>,
}

#[derive(Clone, Debug, Default, Serialize, JsonSchema)]
pub struct DevService {
    pub name: Text,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<Text>>,
    #[serde(skip_serializing_if = "skip")]
    pub sync: Vec<SyncPath>,
    #[serde(skip_serializing_if = "skip")]
    pub port_forwards: Vec<PortForward>,
}

#[derive(Clone, Debug, Default, Serialize, JsonSchema)]
pub struct SyncPath {
    pub local_path: Option<Text>,
    pub remote_path: Option<Text>,
}

#[derive(Clone, Debug, Default, Serialize, JsonSchema)]
pub struct PortForward {
    pub remote_port: Option<Text>,
    pub local_port: Option<Text>,
}

#[derive(Clone, Debug, Default, Serialize, JsonSchema)]
pub struct CustomLink {
    pub name: Text,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<Text>,
}

#[derive(Clone, Debug, Default, Serialize, JsonSchema)]
pub struct Workflow {
    /// `setup`, `patch` or `teardown`.
    pub name: Text,
    /// Steps run in order; the tasks of a step run concurrently.
    #[serde(skip_serializing_if = "skip")]
    pub parallelize: Vec<Step>,
    /// Tasks run strictly one after another.
    #[serde(skip_serializing_if = "skip")]
    pub order_from: Vec<OrderItem>,
}

#[derive(Clone, Debug, Default, Serialize, JsonSchema)]
pub struct Step {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<Text>,
    pub tasks: Vec<Sp<Task>>,
    /// `false`: start the tasks and move on without waiting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait_for_finish: Option<Sp<bool>>,
    /// Abort the workflow if a task of this step fails.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub halt_on_error: Option<Sp<bool>>,
}

/// An `order_from` entry: a task, or (older form) a step.
#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum OrderItem {
    Task(Sp<Task>),
    Step(Step),
}

/// A workflow task reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Task {
    /// `services.<name>`
    Service(String),
    /// `services.all`
    AllServices,
    /// `jobs.<name>`
    Job(String),
    /// `charts.<name>`
    Chart(String),
    /// `infrastructure.<name>`
    Infrastructure(String),
    /// `release.remove_environment`
    RemoveEnvironment,
}

impl Task {
    pub fn parse(s: &str) -> Result<Task, String> {
        let (kind, name) = s.split_once('.').ok_or_else(|| {
            format!("task `{s}` must be `services.<name>`, `jobs.<name>`, `charts.<name>`, `infrastructure.<name>` or `release.remove_environment`")
        })?;
        if name.is_empty() {
            return Err(format!("task `{s}` names nothing after `{kind}.`"));
        }
        Ok(match kind {
            "services" if name == "all" => Task::AllServices,
            "services" => Task::Service(name.to_owned()),
            "jobs" => Task::Job(name.to_owned()),
            "charts" => Task::Chart(name.to_owned()),
            "infrastructure" => Task::Infrastructure(name.to_owned()),
            "release" if name == "remove_environment" => Task::RemoveEnvironment,
            "release" => return Err(format!("unknown built-in task `{s}`; the only one is `release.remove_environment`")),
            _ => return Err(format!("unknown task kind `{kind}` in `{s}`; expected services, jobs, charts, infrastructure or release")),
        })
    }
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Task::Service(n) => write!(f, "services.{n}"),
            Task::AllServices => f.write_str("services.all"),
            Task::Job(n) => write!(f, "jobs.{n}"),
            Task::Chart(n) => write!(f, "charts.{n}"),
            Task::Infrastructure(n) => write!(f, "infrastructure.{n}"),
            Task::RemoveEnvironment => f.write_str("release.remove_environment"),
        }
    }
}

impl Serialize for Task {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl JsonSchema for Task {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Task".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "`services.<name>`, `services.all`, `jobs.<name>`, `charts.<name>`, `infrastructure.<name>` or `release.remove_environment`.",
            "type": "string",
            "pattern": "^(services|jobs|charts|infrastructure)\\.[^.]+$|^release\\.remove_environment$"
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Decoders

fn name_ref(d: &mut Diagnostics, n: &Node) -> Option<NameRef> {
    // `- name: x` or just `- x`.
    if n.as_text().is_some() {
        return text(d, n).map(|name| NameRef { name });
    }
    let mut f = Fields::open(d, n, "entry")?;
    let name = f.req(d, "name", text);
    f.finish(d);
    Some(NameRef { name: name? })
}

fn task(d: &mut Diagnostics, n: &Node) -> Option<Sp<Task>> {
    let t = text(d, n)?;
    match Task::parse(&t.value) {
        Ok(task) => Some(Sp::new(task, t.span)),
        Err(msg) => {
            d.error(t.span, "invalid-task", msg);
            None
        }
    }
}

fn step(d: &mut Diagnostics, n: &Node) -> Option<Step> {
    let mut f = Fields::open(d, n, "workflow step")?;
    let s = Step {
        step: f.opt(d, "step", text),
        tasks: f.list(d, "tasks", task),
        wait_for_finish: f.opt(d, "wait_for_finish", boolean),
        halt_on_error: f.opt(d, "halt_on_error", boolean),
    };
    f.finish(d);
    Some(s)
}

fn order_item(d: &mut Diagnostics, n: &Node) -> Option<OrderItem> {
    if n.as_map().is_some() { step(d, n).map(OrderItem::Step) } else { task(d, n).map(OrderItem::Task) }
}

fn workflow(d: &mut Diagnostics, n: &Node) -> Option<Workflow> {
    let mut f = Fields::open(d, n, "workflow")?;
    let w = Workflow {
        name: f.req(d, "name", text).unwrap_or_default(),
        parallelize: f.list(d, "parallelize", step),
        order_from: f.list(d, "order_from", order_item),
    };
    f.finish(d);
    Some(w)
}

fn hostname(d: &mut Diagnostics, n: &Node) -> Option<Hostname> {
    let Some(m) = n.as_map() else {
        d.error(n.span, "type", format!("expected `- <service>: <hostname>`, found {}", n.kind_name()));
        return None;
    };
    if m.len() != 1 {
        d.error(n.span, "invalid-hostname", format!("a hostnames entry maps one service to one hostname; this one has {} keys", m.len()));
        d.hint("write each service as its own list item: `- web: web-${env_id}.${domain}`");
    }
    let (k, v) = m.first()?;
    Some(Hostname { service: text(d, k)?, template: text(d, v)? })
}

fn quantities(d: &mut Diagnostics, n: &Node) -> Option<Quantities> {
    // A bare quantity (`cpu: 500m`) is taken as both the request and the limit.
    if n.as_text().is_some() {
        let q = text(d, n);
        return Some(Quantities { limits: q.clone(), requests: q });
    }
    let mut f = Fields::open(d, n, "resource quantities")?;
    let q = Quantities { limits: f.opt(d, "limits", text), requests: f.opt(d, "requests", text) };
    f.finish(d);
    Some(q)
}

fn storage(d: &mut Diagnostics, n: &Node) -> Option<Storage> {
    let mut f = Fields::open(d, n, "storage")?;
    let s = Storage { size: f.opt(d, "size", text), kind: f.opt(d, "type", text) };
    f.finish(d);
    Some(s)
}

fn resources(d: &mut Diagnostics, n: &Node) -> Option<Resources> {
    let mut f = Fields::open(d, n, "resources")?;
    let r = Resources {
        cpu: f.opt(d, "cpu", quantities),
        memory: f.opt(d, "memory", quantities),
        replicas: f.opt(d, "replicas", count),
        storage: f.opt(d, "storage", storage),
    };
    f.finish(d);
    Some(r)
}

fn ingress(d: &mut Diagnostics, n: &Node) -> Option<Ingress> {
    let mut f = Fields::open(d, n, "ingress")?;
    let i = Ingress {
        proxy_body_size: f.opt(d, "proxy_body_size", text),
        proxy_buffer_size: f.opt(d, "proxy_buffer_size", text),
        proxy_buffering: f.opt(d, "proxy_buffering", text),
        proxy_buffers_number: f.opt(d, "proxy_buffers_number", text),
        proxy_max_temp_file_size: f.opt(d, "proxy_max_temp_file_size", text),
        proxy_read_timeout: f.opt(d, "proxy_read_timeout", text),
        proxy_send_timeout: f.opt(d, "proxy_send_timeout", text),
        proxy_connect_timeout: f.opt(d, "proxy_connect_timeout", text),
    };
    f.finish(d);
    Some(i)
}

fn rule(d: &mut Diagnostics, n: &Node) -> Option<Rule> {
    let mut f = Fields::open(d, n, "rule")?;
    let r = Rule {
        service: f.req(d, "service", text).unwrap_or_default(),
        hostnames: f.strings(d, "hostnames"),
        path: f.opt(d, "path", text),
        visibility: f.get("visibility").and_then(|v| choice(d, v, "visibility", Visibility::ALL)),
    };
    f.finish(d);
    Some(r)
}

fn node_selector(d: &mut Diagnostics, n: &Node) -> Option<NodeSelector> {
    let mut f = Fields::open(d, n, "node selector")?;
    let s = NodeSelector { key: f.req(d, "key", text)?, value: f.opt(d, "value", text_or_empty).unwrap_or_default() };
    f.finish(d);
    Some(s)
}

pub(crate) fn env_entry(d: &mut Diagnostics, n: &Node) -> Option<EnvEntry> {
    let mut f = Fields::open(d, n, "variable")?;
    let key = f.req(d, "key", text);
    let value = f.opt(d, "value", text_or_empty).unwrap_or_else(|| Sp::new(String::new(), f.span()));
    f.finish(d);
    Some(EnvEntry { key: key?, value })
}

fn build(d: &mut Diagnostics, n: &Node) -> Option<Build> {
    // `build: ./dir` is a context.
    if n.as_text().is_some() {
        return Some(Build { context: text(d, n), ..Build::default() });
    }
    let mut f = Fields::open(d, n, "build")?;
    let b = Build {
        context: f.opt(d, "context", text),
        dockerfile: f.opt(d, "dockerfile", text),
        args: f.get("args").map(|a| build_args(d, a)).unwrap_or_default(),
        target: f.opt(d, "target", text),
    };
    f.finish(d);
    Some(b)
}

/// Build args: a list of `KEY=VALUE`, or a mapping (compose style) turned into that list.
fn build_args(d: &mut Diagnostics, n: &Node) -> Vec<Text> {
    match n.as_map() {
        Some(m) => m
            .iter()
            .filter_map(|(k, v)| {
                let k = text(d, k)?;
                let v = text_or_empty(d, v)?;
                Some(Sp::new(format!("{}={}", k.value, v.value), k.span))
            })
            .collect(),
        None => list(d, n, text),
    }
}

fn port(d: &mut Diagnostics, n: &Node) -> Option<Port> {
    let mut f = Fields::open(d, n, "port")?;
    let p = Port {
        kind: f.get("type").and_then(|v| choice(d, v, "port type", PortType::ALL)),
        port: f.opt(d, "port", text),
        target_port: f.opt(d, "target_port", text),
        loadbalancer: f.opt(d, "loadbalancer", boolean),
        tls_enabled: f.opt(d, "tls_enabled", boolean),
        backend_protocol: f.opt(d, "backend_protocol", text),
    };
    if p.kind.is_none() && f.key_span("type").is_none() {
        d.error(f.span(), "missing-field", "port is missing `type` (`container_port` or `node_port`)");
    }
    if p.port.is_none() {
        d.error(f.key_span("port").unwrap_or(f.span()), "missing-field", "port is missing `port`");
    }
    f.finish(d);
    Some(p)
}

fn volume(d: &mut Diagnostics, n: &Node) -> Option<Volume> {
    let mut f = Fields::open(d, n, "volume")?;
    let v = Volume {
        kind: f.get("type").and_then(|v| choice(d, v, "volume type", VolumeType::ALL)),
        name: f.opt(d, "name", text),
        mount_path: f.opt(d, "mount_path", text),
        size: f.opt(d, "size", text),
        claim: f.opt(d, "claim", text),
        bucket: f.opt(d, "bucket", text),
        storage: f.opt(d, "storage", storage),
    };
    if v.mount_path.is_none() {
        d.error(f.key_span("mount_path").unwrap_or(f.span()), "missing-field", "volume is missing `mount_path`");
    }
    f.finish(d);
    Some(v)
}

fn probe(d: &mut Diagnostics, n: &Node) -> Option<Probe> {
    let mut f = Fields::open(d, n, "probe")?;
    let p = Probe {
        exec: f.get("exec").and_then(|n| {
            let mut e = Fields::open(d, n, "exec")?;
            let command = e.get("command").and_then(|c| words(d, c)).unwrap_or_default();
            e.finish(d);
            Some(ExecAction { command })
        }),
        http_get: f.get("http_get").and_then(|n| {
            let mut h = Fields::open(d, n, "http_get")?;
            let g = HttpGet { path: h.opt(d, "path", text), port: h.req(d, "port", text), scheme: h.opt(d, "scheme", text) };
            h.finish(d);
            Some(g)
        }),
        tcp_socket: f.get("tcp_socket").and_then(|n| {
            let mut t = Fields::open(d, n, "tcp_socket")?;
            let s = TcpSocket { port: t.req(d, "port", text) };
            t.finish(d);
            Some(s)
        }),
        initial_delay_seconds: f.opt(d, "initial_delay_seconds", count),
        period_seconds: f.opt(d, "period_seconds", count),
        timeout_seconds: f.opt(d, "timeout_seconds", count),
        failure_threshold: f.opt(d, "failure_threshold", count),
        success_threshold: f.opt(d, "success_threshold", count),
    };
    let actions = [p.exec.is_some(), p.http_get.is_some(), p.tcp_socket.is_some()].iter().filter(|b| **b).count();
    if actions != 1 {
        d.error(
            f.span(),
            "invalid-probe",
            format!("a probe needs exactly one of `exec`, `http_get`, `tcp_socket`; this one has {actions}"),
        );
    }
    f.finish(d);
    Some(p)
}

fn configmap(d: &mut Diagnostics, n: &Node) -> Option<ConfigMapFile> {
    let mut f = Fields::open(d, n, "configmap entry")?;
    let c =
        ConfigMapFile { name: f.req(d, "name", text)?, mount_path: f.req(d, "mount_path", text), repo_path: f.req(d, "repo_path", text) };
    f.finish(d);
    Some(c)
}

fn secret_file(d: &mut Diagnostics, n: &Node) -> Option<SecretFile> {
    let mut f = Fields::open(d, n, "secret file")?;
    let s = SecretFile {
        name: f.req(d, "name", text)?,
        mount_path: f.opt(d, "mount_path", text),
        mode: f.opt(d, "mode", text),
        uid: f.opt(d, "uid", text),
        gid: f.opt(d, "gid", text),
    };
    f.finish(d);
    Some(s)
}

fn init_container(d: &mut Diagnostics, n: &Node) -> Option<InitContainer> {
    let mut f = Fields::open(d, n, "init container")?;
    let c = InitContainer {
        name: f.req(d, "name", text)?,
        image: f.opt(d, "image", text),
        command: f.opt(d, "command", words),
        args: f.opt(d, "args", words),
        envs: f.list(d, "envs", env_entry),
    };
    f.finish(d);
    Some(c)
}

impl Service {
    pub(crate) fn read(d: &mut Diagnostics, n: &Node) -> Option<Service> {
        let mut f = Fields::open(d, n, "service")?;
        let s = Service {
            name: f.req(d, "name", text)?,
            image: f.opt(d, "image", text),
            build: f.opt(d, "build", build),
            has_repo: f.opt(d, "has_repo", boolean),
            registry: f.opt(d, "registry", text),
            command: f.opt(d, "command", words),
            args: f.opt(d, "args", words),
            depends_on: depends_on(d, &mut f),
            ports: f.get("ports").map(|p| list(d, p, port)).or_else(|| f.key_span("ports").map(|_| Vec::new())),
            volumes: f.get("volumes").map(|v| list(d, v, volume)).or_else(|| f.key_span("volumes").map(|_| Vec::new())),
            storage: f.opt(d, "storage", storage),
            cpu: f.opt(d, "cpu", quantities),
            memory: f.opt(d, "memory", quantities),
            replicas: f.opt(d, "replicas", count),
            node_selector: f.list(d, "node_selector", node_selector),
            readiness_probe: f.opt(d, "readiness_probe", probe),
            liveness_probe: f.opt(d, "liveness_probe", probe),
            configmap: f.list(d, "configmap", configmap),
            secret_files: f.list(d, "secret_files", secret_file),
            envs: f.list(d, "envs", env_entry),
            init: f.list(d, "init", init_container),
            is_static: f.opt(d, "static", boolean),
            build_base: f.opt(d, "build_base", text_or_empty),
            build_package_install_command: f.opt(d, "build_package_install_command", text),
            build_command: f.opt(d, "build_command", text),
            build_output_directory: f.opt(d, "build_output_directory", text),
            static_fallback: f.opt(d, "static_fallback", text_or_empty),
            stateful: f.opt(d, "stateful", boolean),
            secrets_from: f.strings(d, "secrets_from"),
            service_account_name: f.opt(d, "service_account_name", text),
            add: f.opt(d, "add", boolean),
            remove: f.opt(d, "remove", boolean),
        };
        f.finish(d);
        Some(s)
    }
}

/// `depends_on`: a list of names, or compose's long form (a mapping of names).
fn depends_on(d: &mut Diagnostics, f: &mut Fields<'_>) -> Vec<Text> {
    match f.get("depends_on") {
        None => Vec::new(),
        Some(n) => match n.as_map() {
            Some(m) => m.iter().filter_map(|(k, _)| text(d, k)).collect(),
            None => crate::decode::strings(d, n),
        },
    }
}

fn job(d: &mut Diagnostics, n: &Node) -> Option<Job> {
    let mut f = Fields::open(d, n, "job")?;
    let j = Job {
        name: f.req(d, "name", text)?,
        from_services: f.opt(d, "from_services", text),
        image: f.opt(d, "image", text),
        has_repo: f.opt(d, "has_repo", boolean),
        build: f.opt(d, "build", build),
        command: f.opt(d, "command", words),
        args: f.opt(d, "args", words),
        completed_timeout: f.opt(d, "completed_timeout", count),
        halt_on_error: f.opt(d, "halt_on_error", boolean),
        envs: f.list(d, "envs", env_entry),
        node_selector: f.list(d, "node_selector", node_selector),
        volumes: f.get("volumes").map(|v| list(d, v, volume)),
        cpu: f.opt(d, "cpu", quantities),
        memory: f.opt(d, "memory", quantities),
        service_account_name: f.opt(d, "service_account_name", text),
        secrets_from: f.strings(d, "secrets_from"),
        schedule: f.opt(d, "schedule", text),
    };
    f.finish(d);
    Some(j)
}

fn environment_template(d: &mut Diagnostics, n: &Node) -> Option<EnvironmentTemplate> {
    let mut f = Fields::open(d, n, "environment template")?;
    let e = EnvironmentTemplate {
        name: f.req(d, "name", text)?,
        auto_deploy: f.opt(d, "auto_deploy", boolean),
        tracking_branch: f.opt(d, "tracking_branch", text),
        tracking_tag: f.opt(d, "tracking_tag", text),
        domain: f.opt(d, "domain", text),
        hostnames: f.list(d, "hostnames", hostname),
        rules: f.list(d, "rules", rule),
        ingress: f.opt(d, "ingress", ingress),
        resources: f.opt(d, "resources", resources),
        node_selector: f.list(d, "node_selector", node_selector),
        services: f.list(d, "services", Service::read),
        datasets: f.list(d, "datasets", name_ref),
    };
    f.finish(d);
    Some(e)
}

fn app_import(d: &mut Diagnostics, n: &Node) -> Option<AppImport> {
    let mut f = Fields::open(d, n, "app import")?;
    let mut a = AppImport {
        name: f.req(d, "name", text)?,
        branch: f.opt(d, "branch", text),
        exclude_services: f.list(d, "exclude_services", name_ref),
        pull_request_labels: f.strings(d, "pull_request_labels"),
    };
    a.exclude_services.extend(f.list(d, "service_excludes", name_ref));
    f.finish(d);
    Some(a)
}

fn build_def(d: &mut Diagnostics, n: &Node) -> Option<BuildDef> {
    let mut f = Fields::open(d, n, "build")?;
    let name = f.opt(d, "name", text).unwrap_or_else(|| {
        d.warn(f.span(), "missing-field", "build has no `name`; no service can refer to it");
        Sp::new(String::new(), f.span())
    });
    let b = BuildDef {
        name,
        context: f.opt(d, "context", text),
        dockerfile: f.opt(d, "dockerfile", text),
        target: f.opt(d, "target", text),
        args: f.get("args").map(|a| build_args(d, a)).unwrap_or_default(),
        repo_url: f.opt(d, "repo_url", text),
        repo_branch: f.opt(d, "repo_branch", text),
        image_scan: f.get("image_scan").and_then(|n| {
            let mut s = Fields::open(d, n, "image_scan")?;
            let scan = ImageScan {
                severity: s.opt(d, "severity", text),
                whitelist: s.list(d, "whitelist", |d, n| {
                    let mut w = Fields::open(d, n, "image_scan exception")?;
                    let e = ScanException { name: w.req(d, "name", text)?, reason: w.opt(d, "reason", text) };
                    w.finish(d);
                    Some(e)
                }),
            };
            s.finish(d);
            Some(scan)
        }),
    };
    f.finish(d);
    Some(b)
}

fn named_with<T>(
    d: &mut Diagnostics,
    n: &Node,
    what: &'static str,
    read: impl FnOnce(&mut Diagnostics, &mut Fields<'_>, Text) -> T,
) -> Option<T> {
    let mut f = Fields::open(d, n, what)?;
    let name = f.req(d, "name", text)?;
    let t = read(d, &mut f, name);
    f.finish(d);
    Some(t)
}

fn shared_volume(d: &mut Diagnostics, n: &Node) -> Option<SharedVolume> {
    named_with(d, n, "shared volume", |d, f, name| SharedVolume { name, size: f.opt(d, "size", text), kind: f.opt(d, "type", text) })
}

fn parameter(d: &mut Diagnostics, n: &Node) -> Option<Parameter> {
    named_with(d, n, "parameter", |d, f, name| Parameter {
        name,
        kind: f.opt(d, "type", text),
        description: f.opt(d, "description", text),
        default: f.opt(d, "default", text_or_empty),
        options: f.strings(d, "options"),
    })
}

fn service_account(d: &mut Diagnostics, n: &Node) -> Option<ServiceAccount> {
    named_with(d, n, "service account", |d, f, name| ServiceAccount { name, cloud_role: f.opt(d, "cloud_role", text) })
}

fn chart(d: &mut Diagnostics, n: &Node) -> Option<Chart> {
    named_with(d, n, "chart", |d, f, name| Chart {
        name,
        directory: f.opt(d, "directory", text),
        values: f.strings(d, "values"),
        repo_url: f.opt(d, "repo_url", text),
        add: f.opt(d, "add", text),
        install: f.opt(d, "install", text),
        version: f.opt(d, "version", text),
        include_crds: f.opt(d, "include_crds", boolean),
        name_template: f.opt(d, "name_template", text),
        timeout: f.opt(d, "timeout", text),
        wait: f.opt(d, "wait", boolean),
        env_file: f.opt(d, "env_file", text),
    })
}

fn infrastructure(d: &mut Diagnostics, n: &Node) -> Option<Infrastructure> {
    named_with(d, n, "infrastructure entry", |d, f, name| Infrastructure {
        name,
        kind: f.opt(d, "type", text),
        directory: f.opt(d, "directory", text),
        values: f.opt(d, "values", text),
    })
}

fn custom_link(d: &mut Diagnostics, n: &Node) -> Option<CustomLink> {
    named_with(d, n, "custom link", |d, f, name| CustomLink { name, url: f.opt(d, "url", text) })
}

fn development_environment(d: &mut Diagnostics, n: &Node) -> Option<DevelopmentEnvironment> {
    let mut f = Fields::open(d, n, "development_environment")?;
    let services = f.list(d, "services", |d, n| {
        named_with(d, n, "development service", |d, f, name| DevService {
            name,
            image: f.opt(d, "image", text),
            command: f.opt(d, "command", words),
            sync: f.list(d, "sync", |d, n| {
                let mut s = Fields::open(d, n, "sync entry")?;
                let p = SyncPath { local_path: s.req(d, "local_path", text), remote_path: s.req(d, "remote_path", text) };
                s.finish(d);
                Some(p)
            }),
            port_forwards: f.list(d, "port_forwards", |d, n| {
                let mut s = Fields::open(d, n, "port forward")?;
                let p = PortForward { remote_port: s.req(d, "remote_port", text), local_port: s.req(d, "local_port", text) };
                s.finish(d);
                Some(p)
            }),
        })
    });
    f.finish(d);
    Some(DevelopmentEnvironment { services })
}

impl Template {
    /// The name of the environment template an environment uses: the one asked for, else
    /// `ephemeral` when the template defines it.
    pub fn environment_template_name(&self, requested: Option<&str>) -> Option<String> {
        requested
            .map(str::to_owned)
            .or_else(|| self.environment_templates.iter().any(|e| e.name.as_str() == "ephemeral").then(|| "ephemeral".to_owned()))
    }

    /// The Instant Datasets that environment template lists (checked out at creation).
    pub fn datasets_of(&self, environment_template: Option<&str>) -> Vec<String> {
        let Some(name) = self.environment_template_name(environment_template) else { return Vec::new() };
        self.environment_templates
            .iter()
            .filter(|e| e.name.as_str() == name)
            .flat_map(|e| &e.datasets)
            .map(|d| d.name.value.clone())
            .collect()
    }

    /// Decodes a template from its root node.
    pub fn read(d: &mut Diagnostics, n: &Node) -> Option<Template> {
        let mut f = Fields::open(d, n, "application template")?;
        let t = Template {
            app: f.opt(d, "app", text),
            auto_deploy: f.opt(d, "auto_deploy", boolean),
            context: f.opt(d, "context", text),
            domain: f.opt(d, "domain", text),
            repo_name: f.opt(d, "repo_name", text),
            tracking_branch: f.opt(d, "tracking_branch", text),
            tracking_tag: f.opt(d, "tracking_tag", text),
            execution_type: f.opt(d, "execution_type", text),
            git_fetch_depth: f.opt(d, "git_fetch_depth", count),
            mode: f.opt(d, "mode", text),
            parallelize_app_imports: f.opt(d, "parallelize_app_imports", boolean),
            hostnames: f.list(d, "hostnames", hostname),
            rules: f.list(d, "rules", rule),
            ingress: f.opt(d, "ingress", ingress),
            environment_templates: f.list(d, "environment_templates", environment_template),
            resources: f.opt(d, "resources", resources),
            app_imports: f.list(d, "app_imports", app_import),
            builds: f.list(d, "builds", build_def),
            services: f.list(d, "services", Service::read),
            jobs: f.list(d, "jobs", job),
            cron_jobs: f.list(d, "cron_jobs", job),
            shared_volumes: f.list(d, "shared_volumes", shared_volume),
            parameters: f.list(d, "parameters", parameter),
            node_selector: f.list(d, "node_selector", node_selector),
            service_accounts: f.list(d, "service_accounts", service_account),
            charts: f.list(d, "charts", chart),
            infrastructure: f.list(d, "infrastructure", infrastructure),
            development_environment: f.opt(d, "development_environment", development_environment),
            custom_links: f.list(d, "custom_links", custom_link),
            workflows: f.list(d, "workflows", workflow),
        };
        // Cluster-level files (`.release/clusters/*.yaml`) carry a namespace; accepted, unused.
        f.accept(&["namespace"]);
        f.finish(d);
        Some(t)
    }

    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name.as_str() == name)
    }
}
