//! The compatibility ledger: for every key of an Application Template (each field of each
//! type of the model, as its JSON Schema names them: `Service.registry`) and for the features
//! that are values (`Volume.type=s3`), whether Offshoot applies it, ignores it (and why) or
//! refuses it (and why), on each runtime. It is data, in this one place; a test walks the
//! model's schema so that a key cannot be added without its entry.
//!
//! [`scan`] reads a template as written (its YAML, so each finding has its line) and lists what
//! the runtime ignores or refuses; `offshoot validate` reports them, the control plane refuses
//! an environment whose template has a refused key, and an environment's view lists what it
//! ignores (`compat`).

use crate::diag::{Diagnostic, Diagnostics};
use crate::span::Span;
use crate::yaml::Node;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::LazyLock;

/// Where environments run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    Docker,
    Kubernetes,
}

impl Runtime {
    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Docker => "Docker",
            Runtime::Kubernetes => "Kubernetes",
        }
    }
}

/// What a runtime does with a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Support {
    Applied,
    /// Read and not acted on, and why (with what to do instead).
    Ignored(&'static str),
    /// An environment is not made with it, and why (with the alternative).
    Refused(&'static str),
}

/// One key (`Type.field`) or feature (`Type.field=value`).
#[derive(Clone, Copy, Debug)]
pub struct Entry {
    pub key: &'static str,
    pub docker: Support,
    pub kubernetes: Support,
}

impl Entry {
    pub fn on(&self, runtime: Runtime) -> Support {
        match runtime {
            Runtime::Docker => self.docker,
            Runtime::Kubernetes => self.kubernetes,
        }
    }
}

use Support::{Applied as A, Ignored, Refused};

const fn both(key: &'static str) -> Entry {
    Entry { key, docker: A, kubernetes: A }
}

const fn ignored(key: &'static str, why: &'static str) -> Entry {
    Entry { key, docker: Ignored(why), kubernetes: Ignored(why) }
}

const fn refused(key: &'static str, why: &'static str) -> Entry {
    Entry { key, docker: Refused(why), kubernetes: Refused(why) }
}

/// Applied on Kubernetes, ignored on Docker (one machine, one engine).
const fn kube_only(key: &'static str, why: &'static str) -> Entry {
    Entry { key, docker: Ignored(why), kubernetes: A }
}

/// Applied on Docker, ignored on Kubernetes.
const fn docker_only(key: &'static str, why: &'static str) -> Entry {
    Entry { key, docker: A, kubernetes: Ignored(why) }
}

const NO_NODES: &str = "one machine runs the environment: there are no nodes to select (applied on Kubernetes)";
const NO_IDENTITY: &str = "the Docker engine has no service accounts or cloud roles (applied on Kubernetes)";
const STORAGE: &str = "Offshoot sizes a volume by its own `size`; `storage` is Release's volume class and size for its cluster";
const DEV: &str = "Offshoot has no file sync or port forwarding; `offshoot env exec` and the router's hostnames reach the services";
const LINKS: &str = "custom links are not shown yet; the environment's URLs are in `offshoot env show` and the dashboard";
const SCAN: &str = "Offshoot does not scan images";
const CHARTS: &str =
    "Helm `charts` cannot run here: Offshoot has no Helm runner; run the chart's images as `services` (with `jobs` for its hooks)";
const SECRETS_FROM: &str =
    "`secrets_from` names an external secrets provider, and Offshoot has none yet; set the values with `offshoot app secret set APP KEY`";
const S3: &str =
    "`s3` volumes need an object-storage provider, and Offshoot has none yet; use a `persistent` volume or a `claim` of `shared_volumes`";
const PLAIN_PORTS: &str = "load-balancer ports pass TCP through as it is; TLS is the service's own";

/// Why a variable's value that refers to a secrets provider (`$secrets.rsm.NAME`,
/// `$secrets.ssm./path`, `$secrets.aws./path`) is refused: in an Environment Variables file or a
/// service's `envs`.
pub const SECRET_REFERENCES: &str = "a reference to a secrets provider (Release's `$secrets.*`), and Offshoot has none yet; set the value with `printf %s VALUE | offshoot app secret set APP KEY` and remove the reference";

/// Whether a variable's value is a reference to a secrets provider.
pub fn is_secret_reference(value: &str) -> bool {
    let v = value.trim();
    v.starts_with("$secrets.") || v.starts_with("${secrets.")
}

/// The ledger. Keys are `Type.field` as the model's JSON Schema names them; `Template` is the
/// root. A value feature is `Type.field=value`.
pub static LEDGER: &[Entry] = &[
    // The template's root.
    both("Template.app"),
    both("Template.app_imports"),
    both("Template.auto_deploy"),
    both("Template.builds"),
    refused("Template.charts", CHARTS),
    ignored("Template.context", "`context` names one of Release's clusters; Offshoot runs environments on its own engine"),
    both("Template.cron_jobs"),
    ignored("Template.custom_links", LINKS),
    ignored("Template.development_environment", DEV),
    both("Template.domain"),
    both("Template.environment_templates"),
    ignored("Template.execution_type", "every application runs as a server; its workflows run as for any other"),
    ignored("Template.git_fetch_depth", "Offshoot keeps a full mirror of the repository and builds from it"),
    both("Template.hostnames"),
    both("Template.infrastructure"),
    both("Template.ingress"),
    both("Template.jobs"),
    ignored("Template.mode", "`mode` is deprecated and not exported to containers; set a variable in `envs`"),
    kube_only("Template.node_selector", NO_NODES),
    both("Template.parallelize_app_imports"),
    both("Template.parameters"),
    // The repository's name: the application's repository is the one it was made from.
    both("Template.repo_name"),
    both("Template.resources"),
    both("Template.rules"),
    kube_only("Template.service_accounts", NO_IDENTITY),
    both("Template.services"),
    both("Template.shared_volumes"),
    both("Template.tracking_branch"),
    both("Template.tracking_tag"),
    both("Template.workflows"),
    // App imports.
    both("AppImport.branch"),
    both("AppImport.exclude_services"),
    both("AppImport.name"),
    both("AppImport.pull_request_labels"),
    both("NameRef.name"),
    // Builds.
    both("Build.args"),
    both("Build.context"),
    both("Build.dockerfile"),
    both("Build.target"),
    both("BuildDef.args"),
    both("BuildDef.context"),
    both("BuildDef.dockerfile"),
    ignored("BuildDef.image_scan", SCAN),
    both("BuildDef.name"),
    both("BuildDef.repo_branch"),
    both("BuildDef.repo_url"),
    both("BuildDef.target"),
    ignored("ImageScan.severity", SCAN),
    ignored("ImageScan.whitelist", SCAN),
    ignored("ScanException.name", SCAN),
    ignored("ScanException.reason", SCAN),
    // Helm charts, Terraform.
    refused("Chart.add", CHARTS),
    refused("Chart.directory", CHARTS),
    refused("Chart.env_file", CHARTS),
    refused("Chart.include_crds", CHARTS),
    refused("Chart.install", CHARTS),
    refused("Chart.name", CHARTS),
    refused("Chart.name_template", CHARTS),
    refused("Chart.repo_url", CHARTS),
    refused("Chart.timeout", CHARTS),
    refused("Chart.values", CHARTS),
    refused("Chart.version", CHARTS),
    refused("Chart.wait", CHARTS),
    both("Infrastructure.directory"),
    both("Infrastructure.name"),
    both("Infrastructure.type"),
    both("Infrastructure.values"),
    // Links and remote development.
    ignored("CustomLink.name", LINKS),
    ignored("CustomLink.url", LINKS),
    ignored("DevelopmentEnvironment.services", DEV),
    ignored("DevService.command", DEV),
    ignored("DevService.image", DEV),
    ignored("DevService.name", DEV),
    ignored("DevService.port_forwards", DEV),
    ignored("DevService.sync", DEV),
    ignored("PortForward.local_port", DEV),
    ignored("PortForward.remote_port", DEV),
    ignored("SyncPath.local_path", DEV),
    ignored("SyncPath.remote_path", DEV),
    // Environment templates.
    both("EnvironmentTemplate.auto_deploy"),
    both("EnvironmentTemplate.datasets"),
    both("EnvironmentTemplate.domain"),
    both("EnvironmentTemplate.hostnames"),
    both("EnvironmentTemplate.ingress"),
    both("EnvironmentTemplate.name"),
    kube_only("EnvironmentTemplate.node_selector", NO_NODES),
    both("EnvironmentTemplate.resources"),
    both("EnvironmentTemplate.rules"),
    both("EnvironmentTemplate.services"),
    both("EnvironmentTemplate.tracking_branch"),
    both("EnvironmentTemplate.tracking_tag"),
    // Routing.
    both("Ingress.proxy_body_size"),
    both("Ingress.proxy_buffer_size"),
    both("Ingress.proxy_buffering"),
    both("Ingress.proxy_buffers_number"),
    both("Ingress.proxy_connect_timeout"),
    both("Ingress.proxy_max_temp_file_size"),
    both("Ingress.proxy_read_timeout"),
    both("Ingress.proxy_send_timeout"),
    both("Rule.hostnames"),
    both("Rule.path"),
    both("Rule.service"),
    both("Rule.visibility"),
    // Services.
    both("Service.add"),
    both("Service.args"),
    both("Service.build"),
    both("Service.build_base"),
    both("Service.build_command"),
    both("Service.build_output_directory"),
    both("Service.build_package_install_command"),
    both("Service.command"),
    both("Service.configmap"),
    both("Service.cpu"),
    both("Service.depends_on"),
    both("Service.envs"),
    both("Service.has_repo"),
    both("Service.image"),
    both("Service.init"),
    both("Service.liveness_probe"),
    both("Service.memory"),
    both("Service.name"),
    kube_only("Service.node_selector", NO_NODES),
    both("Service.ports"),
    both("Service.readiness_probe"),
    ignored(
        "Service.registry",
        "Offshoot keeps built images on the engine (Docker) or pushes them to the server's `--registry` (Kubernetes)",
    ),
    both("Service.remove"),
    both("Service.replicas"),
    both("Service.secret_files"),
    refused("Service.secrets_from", SECRETS_FROM),
    kube_only("Service.service_account_name", NO_IDENTITY),
    kube_only("Service.stateful", "a container keeps its volumes either way on Docker (a StatefulSet on Kubernetes)"),
    both("Service.static"),
    both("Service.static_fallback"),
    ignored("Service.storage", STORAGE),
    both("Service.volumes"),
    both("ConfigMapFile.mount_path"),
    both("ConfigMapFile.name"),
    both("ConfigMapFile.repo_path"),
    both("SecretFile.name"),
    both("SecretFile.mount_path"),
    both("SecretFile.mode"),
    docker_only("SecretFile.uid", "a Secret's files belong to the pod's user on Kubernetes"),
    docker_only("SecretFile.gid", "a Secret's files belong to the pod's group on Kubernetes"),
    both("EnvEntry.key"),
    both("EnvEntry.value"),
    both("InitContainer.args"),
    both("InitContainer.command"),
    both("InitContainer.envs"),
    both("InitContainer.image"),
    both("InitContainer.name"),
    both("Port.port"),
    both("Port.target_port"),
    both("Port.type"),
    both("Port.loadbalancer"),
    ignored("Port.backend_protocol", PLAIN_PORTS),
    ignored("Port.tls_enabled", PLAIN_PORTS),
    both("Probe.exec"),
    both("Probe.failure_threshold"),
    both("Probe.http_get"),
    both("Probe.initial_delay_seconds"),
    both("Probe.period_seconds"),
    kube_only("Probe.success_threshold", "on Docker a service is ready at its probe's first success (applied on Kubernetes)"),
    both("Probe.tcp_socket"),
    both("Probe.timeout_seconds"),
    both("ExecAction.command"),
    both("HttpGet.path"),
    both("HttpGet.port"),
    kube_only("HttpGet.scheme", "Offshoot's probes on Docker speak plain HTTP (applied on Kubernetes)"),
    both("TcpSocket.port"),
    // Resources and volumes.
    both("Quantities.limits"),
    both("Quantities.requests"),
    both("Resources.cpu"),
    both("Resources.memory"),
    both("Resources.replicas"),
    ignored("Resources.storage", STORAGE),
    ignored("Storage.size", STORAGE),
    ignored("Storage.type", STORAGE),
    refused("Volume.bucket", S3),
    both("Volume.claim"),
    both("Volume.mount_path"),
    both("Volume.name"),
    both("Volume.size"),
    ignored("Volume.storage", STORAGE),
    both("Volume.type"),
    refused("Volume.type=s3", S3),
    both("SharedVolume.name"),
    both("SharedVolume.size"),
    both("SharedVolume.type"),
    // Jobs and cron jobs.
    both("Job.args"),
    both("Job.build"),
    both("Job.command"),
    both("Job.completed_timeout"),
    both("Job.cpu"),
    both("Job.envs"),
    both("Job.from_services"),
    both("Job.halt_on_error"),
    both("Job.has_repo"),
    both("Job.image"),
    both("Job.memory"),
    both("Job.name"),
    kube_only("Job.node_selector", NO_NODES),
    both("Job.schedule"),
    refused("Job.secrets_from", SECRETS_FROM),
    kube_only("Job.service_account_name", NO_IDENTITY),
    both("Job.volumes"),
    kube_only("NodeSelector.key", NO_NODES),
    kube_only("NodeSelector.value", NO_NODES),
    kube_only("ServiceAccount.cloud_role", NO_IDENTITY),
    kube_only("ServiceAccount.name", NO_IDENTITY),
    // Parameters and workflows.
    both("Parameter.default"),
    both("Parameter.description"),
    both("Parameter.name"),
    both("Parameter.options"),
    both("Parameter.type"),
    both("Workflow.name"),
    both("Workflow.order_from"),
    both("Workflow.parallelize"),
    both("Step.halt_on_error"),
    both("Step.step"),
    both("Step.tasks"),
    both("Step.wait_for_finish"),
];

/// The entry of a key or feature.
pub fn entry(key: &str) -> Option<&'static Entry> {
    LEDGER.iter().find(|e| e.key == key)
}

/// A key of a template that its runtime ignores or refuses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The ledger's key (`Service.registry`).
    pub key: String,
    /// Where in the template (`services[1].registry`).
    pub path: String,
    pub line: u32,
    pub column: u32,
    /// `ignored` or `refused`.
    pub support: &'static str,
    pub why: &'static str,
    #[serde(skip)]
    pub span: Span,
}

/// For each type of the model, the type of each field that has one (`Service.readiness_probe`
/// → `Probe`), read from the model's JSON Schema: how [`scan`] knows where it is.
static FIELD_TYPES: LazyLock<BTreeMap<(String, String), Option<String>>> = LazyLock::new(|| {
    let schema: serde_json::Value = serde_json::from_str(&crate::schema::template_schema()).unwrap_or_default();
    field_types(&schema)
});

/// `(type, field)` → the field's type (`None` for a scalar or a list of scalars), for every
/// type of a JSON Schema (the root is `Template`).
pub fn field_types(schema: &serde_json::Value) -> BTreeMap<(String, String), Option<String>> {
    let mut out = BTreeMap::new();
    let mut add = |ty: &str, node: &serde_json::Value| {
        for (field, prop) in node.get("properties").and_then(|p| p.as_object()).into_iter().flatten() {
            out.insert((ty.to_owned(), field.clone()), type_of(prop));
        }
    };
    add("Template", schema);
    for (name, def) in schema.get("$defs").and_then(|d| d.as_object()).into_iter().flatten() {
        add(name, def);
    }
    out
}

/// The type a property holds: its `$ref`, through arrays and `anyOf` (optional values).
fn type_of(prop: &serde_json::Value) -> Option<String> {
    if let Some(r) = prop.get("$ref").and_then(|r| r.as_str()) {
        return r.rsplit('/').next().map(str::to_owned);
    }
    if let Some(items) = prop.get("items") {
        return type_of(items);
    }
    prop.get("anyOf").and_then(|a| a.as_array()).into_iter().flatten().find_map(type_of)
}

/// What `runtime` ignores or refuses of the template whose YAML is `root`, in the order
/// written. Below a key that is ignored or refused nothing more is reported.
pub fn scan(root: &Node, runtime: Runtime) -> Vec<Finding> {
    let mut out = Vec::new();
    walk(root, "Template", "", runtime, &mut out);
    out
}

fn walk(node: &Node, ty: &str, path: &str, runtime: Runtime, out: &mut Vec<Finding>) {
    for (k, v) in node.as_map().unwrap_or_default() {
        let Some(field) = k.as_text() else { continue };
        let here = if path.is_empty() { field.to_owned() } else { format!("{path}.{field}") };
        // Unknown keys are validation's to report.
        let Some(child) = FIELD_TYPES.get(&(ty.to_owned(), field.to_owned())) else { continue };
        let key = format!("{ty}.{field}");
        let feature = v.as_text().map(|value| format!("{key}={value}"));
        let found = feature.as_deref().and_then(entry).or_else(|| entry(&key));
        let support = found.map_or(Support::Applied, |e| e.on(runtime));
        let (support_name, why) = match support {
            Support::Applied => {
                if let Some(child) = child {
                    match v.as_seq() {
                        Some(items) => {
                            for (i, item) in items.iter().enumerate() {
                                walk(item, child, &format!("{here}[{i}]"), runtime, out);
                            }
                        }
                        None => walk(v, child, &here, runtime, out),
                    }
                }
                continue;
            }
            Support::Ignored(why) => ("ignored", why),
            Support::Refused(why) => ("refused", why),
        };
        let reported = found.map_or(key, |e| e.key.to_owned());
        let span = if reported.contains('=') { v.span } else { k.span };
        out.push(Finding { key: reported, path: here, line: span.line, column: span.column, support: support_name, why, span });
    }
}

/// The findings as diagnostics of `file`: an ignored key is a warning (`ignored-key`, an error
/// under `--strict`), a refused one an error (`unsupported`).
pub fn diagnostics(file: &str, findings: &[Finding], runtime: Runtime) -> Vec<Diagnostic> {
    let mut d = Diagnostics::new(file);
    for f in findings {
        let what = if f.key.contains('=') {
            format!("`{}`", f.key.rsplit_once('.').map_or(f.key.as_str(), |x| x.1))
        } else {
            format!("`{}`", f.path)
        };
        match f.support {
            "refused" => d.error(f.span, "unsupported", format!("{what} is refused on {}: {}", runtime.as_str(), f.why)),
            _ => d.warn(f.span, "ignored-key", format!("{what} is ignored on {}: {}", runtime.as_str(), f.why)),
        }
    }
    d.into_sorted()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn findings(src: &str, runtime: Runtime) -> Vec<(String, String, u32, &'static str)> {
        let mut d = Diagnostics::new("t.yaml");
        let root = crate::yaml::parse(src, &mut d).expect("yaml");
        scan(&root, runtime).into_iter().map(|f| (f.key, f.path, f.line, f.support)).collect()
    }

    #[test]
    fn what_a_runtime_ignores_or_refuses_is_found_at_its_line() {
        let src = "app: t\nnode_selector:\n- key: disk\n  value: ssd\nservices:\n- name: api\n  image: busybox\n  registry: public\n  readiness_probe:\n    success_threshold: 2\n    http_get:\n      scheme: HTTPS\n  volumes:\n  - type: s3\n    name: b\n    mount_path: /b\ncharts:\n- name: x\n";
        let docker = findings(src, Runtime::Docker);
        let want = [
            ("Template.node_selector", "node_selector", 2, "ignored"),
            ("Service.registry", "services[0].registry", 8, "ignored"),
            ("Probe.success_threshold", "services[0].readiness_probe.success_threshold", 10, "ignored"),
            ("HttpGet.scheme", "services[0].readiness_probe.http_get.scheme", 12, "ignored"),
            ("Volume.type=s3", "services[0].volumes[0].type", 14, "refused"),
            ("Template.charts", "charts", 17, "refused"),
        ];
        let want: Vec<(String, String, u32, &str)> = want.iter().map(|(a, b, c, d)| ((*a).into(), (*b).into(), *c, *d)).collect();
        assert_eq!(docker, want);
        let kube: Vec<String> = findings(src, Runtime::Kubernetes).into_iter().map(|f| f.0).collect();
        assert_eq!(kube, ["Service.registry", "Volume.type=s3", "Template.charts"]);
    }

    #[test]
    fn diagnostics_name_the_key_the_runtime_and_why() {
        let src =
            "app: t\nservices:\n- name: api\n  image: busybox\n  secrets_from: [vault]\ncustom_links:\n- name: Grafana\n  url: https://g\n";
        let mut d = Diagnostics::new("t.yaml");
        let root = crate::yaml::parse(src, &mut d).expect("yaml");
        let diags = diagnostics("t.yaml", &scan(&root, Runtime::Docker), Runtime::Docker);
        let shown: Vec<(u32, bool, &str)> = diags.iter().map(|d| (d.line, d.is_error(), d.message.as_str())).collect();
        assert_eq!(shown[0].0, 5);
        assert!(
            shown[0].1
                && shown[0]
                    .2
                    .starts_with("`services[0].secrets_from` is refused on Docker: `secrets_from` names an external secrets provider")
        );
        assert_eq!(shown[1].0, 6);
        assert!(!shown[1].1 && shown[1].2.starts_with("`custom_links` is ignored on Docker: custom links are not shown yet"));
    }
}
