//! Kubernetes manifests for one environment, from its resolved configuration: pure, typed
//! (k8s-openapi), no I/O. One namespace per environment (an importer's imports share it); a
//! Deployment per service (a StatefulSet when `stateful`), a Service for its ports (a
//! LoadBalancer for `loadbalancer: true`), an Ingress per host and visibility with the
//! ingress-nginx annotations of the template's `ingress` block, a Job per job, ConfigMaps for
//! `configmap` mounts, a Secret per service for its secret variables (referenced, never inlined),
//! PersistentVolumeClaims, ServiceAccounts, HTTPS on the Ingresses (a certificate Offshoot keeps,
//! as a Secret, or cert-manager's annotation), and a NetworkPolicy that lets only the namespace's own
//! pods and the ingress controller reach its pods.

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, StatefulSet, StatefulSetSpec};
use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, Job, JobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource, ExecAction, HTTPGetAction,
    KeyToPath, Namespace, PersistentVolumeClaim, PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource, PodSpec, PodTemplateSpec,
    Probe as KProbe, ResourceRequirements, Secret, SecretKeySelector, SecretVolumeSource, Service, ServiceAccount, ServicePort,
    ServiceSpec, TCPSocketAction, Volume as KVolume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort, EndpointSlice};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule, IngressServiceBackend, IngressSpec, IngressTLS,
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicySpec, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use offshoot_template::envvars::VarValue;
use offshoot_template::model::{PortType, Probe, VolumeType};
use offshoot_template::resolve::{Resolved, ResolvedService};
use std::collections::BTreeMap;

/// The Kubernetes version whose schemas the manifests follow.
pub const KUBERNETES_VERSION: &str = "1.37";

pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const LABEL_ENV: &str = "offshoot.env";
pub const LABEL_APP: &str = "offshoot.app";
pub const LABEL_SERVICE: &str = "offshoot.service";
pub const LABEL_INSTANCE: &str = "offshoot.instance";

/// Where and how an environment is rendered.
#[derive(Clone, Debug)]
pub struct Options {
    /// The environment's namespace (its importer's, for an imported app).
    pub namespace: String,
    /// The owning server's instance id.
    pub instance: String,
    /// Ingress class of public and public-direct routes.
    pub ingress_class: String,
    /// Ingress class of `private` routes (an internal ingress controller).
    pub private_ingress_class: String,
    /// The namespace of the ingress controller, allowed through the NetworkPolicy.
    pub ingress_namespace: String,
    /// The image of each built service (a registry reference, by digest once pushed); a
    /// service absent here uses its template `image`.
    pub images: BTreeMap<String, String>,
    /// The content of repository files mounted with `configmap` (by repository path).
    pub files: BTreeMap<String, String>,
    /// Put secret values in the Secret objects (to apply them); otherwise they are masked, so
    /// that printed manifests never hold a secret.
    pub reveal_secrets: bool,
    /// The Offshoot router as the cluster reaches it: static sites are served there (from the
    /// site storage), behind a Service without pods whose EndpointSlice names it.
    pub static_upstream: Option<std::net::SocketAddr>,
    /// Registry credentials (host → user, password): a `kubernetes.io/dockerconfigjson` Secret
    /// of the application that every pod names in `imagePullSecrets` (masked unless
    /// `reveal_secrets`).
    pub registry_auths: BTreeMap<String, (String, offshoot_template::secret::SecretString)>,
    /// How the Ingresses are served over HTTPS.
    pub tls: IngressTls,
}

/// How an environment's Ingresses are served over HTTPS.
#[derive(Clone, Debug, Default)]
pub enum IngressTls {
    /// Plain HTTP.
    #[default]
    None,
    /// A certificate Offshoot keeps (the ACME wildcard): a `kubernetes.io/tls` Secret of the
    /// environment (masked unless `reveal_secrets`), named by every Ingress whose host it covers.
    Certificate(Certificate),
    /// cert-manager issues each Ingress's certificate from this ClusterIssuer.
    CertManager(String),
}

/// A certificate and its key (PEM), and the names it covers.
#[derive(Clone, Debug)]
pub struct Certificate {
    pub names: Vec<String>,
    pub chain_pem: String,
    pub key_pem: offshoot_template::secret::SecretString,
}

impl IngressTls {
    /// Whether an Ingress for `host` is served over HTTPS.
    pub fn serves(&self, host: &str) -> bool {
        match self {
            IngressTls::None => false,
            IngressTls::Certificate(c) => offshoot_template::ingress::any_covers(&c.names, host),
            IngressTls::CertManager(_) => true,
        }
    }

    /// Where the cluster's ingress serves HTTPS (443), and for which hosts.
    pub fn https(&self) -> Option<offshoot_template::resolve::IngressHttps> {
        let names = match self {
            IngressTls::None => return None,
            IngressTls::Certificate(c) => Some(c.names.clone()),
            IngressTls::CertManager(_) => None,
        };
        Some(offshoot_template::resolve::IngressHttps { port: 443, names })
    }
}

/// The name of an environment's certificate Secret (`IngressTls::Certificate`).
pub fn tls_secret_name(env_id: &str) -> String {
    format!("tls-{}", dns_label(env_id))
}

/// An environment's certificate Secret, when its Ingresses use a certificate Offshoot keeps.
pub fn tls_secret(o: &Options, env_id: &str, app: &str) -> Option<Manifest> {
    let IngressTls::Certificate(cert) = &o.tls else { return None };
    let key = if o.reveal_secrets { cert.key_pem.expose() } else { MASKED };
    Some(Manifest::Secret(Secret {
        metadata: ObjectMeta {
            name: Some(tls_secret_name(env_id)),
            namespace: Some(o.namespace.clone()),
            labels: Some(labels(env_id, app, &o.instance, None)),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        string_data: Some(BTreeMap::from([("tls.crt".to_owned(), cert.chain_pem.clone()), ("tls.key".to_owned(), key.to_owned())])),
        ..Default::default()
    }))
}

impl Options {
    pub fn new(namespace: impl Into<String>, instance: impl Into<String>) -> Self {
        Options {
            namespace: namespace.into(),
            instance: instance.into(),
            ingress_class: "nginx".into(),
            private_ingress_class: "nginx-internal".into(),
            ingress_namespace: "ingress-nginx".into(),
            images: BTreeMap::new(),
            files: BTreeMap::new(),
            reveal_secrets: false,
            static_upstream: None,
            registry_auths: BTreeMap::new(),
            tls: IngressTls::None,
        }
    }
}

/// The name of an application's registry-credentials Secret.
pub fn pull_secret_name(app: &str) -> String {
    format!("registry-{}", dns_label(app))
}

/// The pods' `imagePullSecrets`: the application's registry Secret, when it has credentials.
fn pull_secrets(o: &Options, r: &Resolved) -> Option<Vec<k8s_openapi::api::core::v1::LocalObjectReference>> {
    (!o.registry_auths.is_empty()).then(|| vec![k8s_openapi::api::core::v1::LocalObjectReference { name: pull_secret_name(&r.app) }])
}

/// The application's registry credentials as a `kubernetes.io/dockerconfigjson` Secret.
fn pull_secret(c: &Ctx<'_>) -> Option<Secret> {
    if c.o.registry_auths.is_empty() {
        return None;
    }
    let auths: serde_json::Map<String, serde_json::Value> =
        c.o.registry_auths
            .iter()
            .map(|(host, (user, password))| {
                let password = if c.o.reveal_secrets { password.expose() } else { MASKED };
                (host.clone(), serde_json::json!({ "username": user, "password": password }))
            })
            .collect();
    let config = serde_json::json!({ "auths": auths }).to_string();
    Some(Secret {
        metadata: c.meta(&pull_secret_name(&c.r.app), None),
        type_: Some("kubernetes.io/dockerconfigjson".into()),
        string_data: Some(BTreeMap::from([(".dockerconfigjson".to_owned(), config)])),
        ..Default::default()
    })
}

/// What a masked secret value reads.
pub const MASKED: &str = "[redacted]";

/// One Kubernetes object.
#[expect(clippy::large_enum_variant, reason = "an environment has a few dozen; metadata alone is most of each")]
#[derive(Clone, Debug, serde::Serialize)]
#[serde(untagged)]
pub enum Manifest {
    Namespace(Namespace),
    NetworkPolicy(NetworkPolicy),
    ServiceAccount(ServiceAccount),
    ConfigMap(ConfigMap),
    Secret(Secret),
    PersistentVolumeClaim(PersistentVolumeClaim),
    Deployment(Box<Deployment>),
    StatefulSet(Box<StatefulSet>),
    Service(Service),
    Ingress(Ingress),
    EndpointSlice(EndpointSlice),
    Job(Box<Job>),
    CronJob(Box<CronJob>),
}

impl Manifest {
    pub fn kind(&self) -> &'static str {
        match self {
            Manifest::Namespace(_) => "Namespace",
            Manifest::NetworkPolicy(_) => "NetworkPolicy",
            Manifest::ServiceAccount(_) => "ServiceAccount",
            Manifest::ConfigMap(_) => "ConfigMap",
            Manifest::Secret(_) => "Secret",
            Manifest::PersistentVolumeClaim(_) => "PersistentVolumeClaim",
            Manifest::Deployment(_) => "Deployment",
            Manifest::StatefulSet(_) => "StatefulSet",
            Manifest::Service(_) => "Service",
            Manifest::Ingress(_) => "Ingress",
            Manifest::EndpointSlice(_) => "EndpointSlice",
            Manifest::Job(_) => "Job",
            Manifest::CronJob(_) => "CronJob",
        }
    }

    pub fn meta(&self) -> &ObjectMeta {
        match self {
            Manifest::Namespace(o) => &o.metadata,
            Manifest::NetworkPolicy(o) => &o.metadata,
            Manifest::ServiceAccount(o) => &o.metadata,
            Manifest::ConfigMap(o) => &o.metadata,
            Manifest::Secret(o) => &o.metadata,
            Manifest::PersistentVolumeClaim(o) => &o.metadata,
            Manifest::Deployment(o) => &o.metadata,
            Manifest::StatefulSet(o) => &o.metadata,
            Manifest::Service(o) => &o.metadata,
            Manifest::Ingress(o) => &o.metadata,
            Manifest::EndpointSlice(o) => &o.metadata,
            Manifest::Job(o) => &o.metadata,
            Manifest::CronJob(o) => &o.metadata,
        }
    }

    pub fn name(&self) -> &str {
        self.meta().name.as_deref().unwrap_or("")
    }

    /// The service or job the object belongs to (its `offshoot.service` label), if any.
    fn owner(&self) -> Option<&str> {
        self.meta().labels.as_ref()?.get(LABEL_SERVICE).map(String::as_str)
    }

    /// Whether the object belongs to that service or job.
    pub fn belongs_to(&self, name: &str) -> bool {
        self.owner() == Some(label_value(name).as_str())
    }

    /// Whether the object belongs to no service or job (the namespace's own objects).
    pub fn is_shared(&self) -> bool {
        self.owner().is_none()
    }
}

/// The repository files the environment's `configmap` mounts need (`Options::files`).
pub fn configmap_files(r: &Resolved) -> std::collections::BTreeSet<String> {
    r.services.iter().flat_map(|s| &s.configmap).map(|f| f.source().value.clone()).collect()
}

/// The name of a job's Job object.
pub fn job_name(job: &str) -> String {
    format!("job-{}", dns_label(job))
}

/// Where a job's own image (built from its `build`) is among the images (`Options::images`),
/// beside the services'.
pub fn job_image_key(job: &str) -> String {
    format!("jobs.{job}")
}

/// The name of a cron job's CronJob.
pub fn cron_job_name(job: &str) -> String {
    format!("cron-{}", dns_label(job))
}

/// The name of the Secret holding a job's secret variables.
pub fn job_secret_name(job: &str) -> String {
    format!("{}-secrets", job_name(job))
}

/// Manifests and what could not be rendered (e.g. static sites, S3 volumes).
#[derive(Clone, Debug, Default)]
pub struct Rendered {
    pub manifests: Vec<Manifest>,
    pub warnings: Vec<String>,
}

/// A DNS-1123 label from any name: lower case, `[a-z0-9-]`, at most 63 characters, starting
/// and ending with an alphanumeric character.
pub fn dns_label(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
        .collect::<String>()
        .trim_matches('-')
        .to_owned();
    s.truncate(63);
    let s = s.trim_end_matches('-').to_owned();
    if s.is_empty() { "x".to_owned() } else { s }
}

/// A label value: at most 63 of `[A-Za-z0-9._-]`, alphanumeric at both ends.
fn label_value(v: &str) -> String {
    let mut s: String = v.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '-' }).collect();
    s.truncate(63);
    s.trim_matches(|c: char| !c.is_ascii_alphanumeric()).to_owned()
}

struct Ctx<'a> {
    r: &'a Resolved,
    o: &'a Options,
}

/// The labels of an environment's object (of one service or job, or the namespace's own).
fn labels(env_id: &str, app: &str, instance: &str, service: Option<&str>) -> BTreeMap<String, String> {
    let mut l = BTreeMap::from([
        (LABEL_MANAGED_BY.to_owned(), "offshoot".to_owned()),
        (LABEL_ENV.to_owned(), label_value(env_id)),
        (LABEL_APP.to_owned(), label_value(app)),
        (LABEL_INSTANCE.to_owned(), label_value(instance)),
    ]);
    if let Some(s) = service {
        l.insert(LABEL_SERVICE.to_owned(), label_value(s));
    }
    l
}

impl Ctx<'_> {
    fn labels(&self, service: Option<&str>) -> BTreeMap<String, String> {
        labels(&self.r.env_id, &self.r.app, &self.o.instance, service)
    }

    fn meta(&self, name: &str, service: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(self.o.namespace.clone()),
            labels: Some(self.labels(service)),
            ..Default::default()
        }
    }

    /// Selects a service's pods (env and service: stable across template edits).
    fn selector(&self, service: &str) -> BTreeMap<String, String> {
        BTreeMap::from([(LABEL_ENV.to_owned(), label_value(&self.r.env_id)), (LABEL_SERVICE.to_owned(), label_value(service))])
    }
}

/// Renders an environment's manifests.
pub fn render(r: &Resolved, o: &Options) -> Rendered {
    let c = Ctx { r, o };
    let mut out = Rendered::default();
    out.manifests.push(Manifest::Namespace(Namespace {
        metadata: ObjectMeta { name: Some(o.namespace.clone()), labels: Some(c.labels(None)), ..Default::default() },
        ..Default::default()
    }));
    out.manifests.push(Manifest::NetworkPolicy(network_policy(&c)));
    if let Some(secret) = pull_secret(&c) {
        out.manifests.push(Manifest::Secret(secret));
    }
    out.manifests.extend(tls_secret(o, &r.env_id, &r.app));
    for sa in &r.service_accounts {
        let mut meta = c.meta(&dns_label(&sa.name), None);
        if let Some(role) = &sa.cloud_role {
            meta.annotations = Some(BTreeMap::from([("eks.amazonaws.com/role-arn".to_owned(), role.value.clone())]));
        }
        out.manifests.push(Manifest::ServiceAccount(ServiceAccount { metadata: meta, ..Default::default() }));
    }
    for v in &r.shared_volumes {
        out.manifests.push(Manifest::PersistentVolumeClaim(pvc(
            &c,
            &format!("shared-{}", dns_label(&v.name)),
            None,
            v.size.as_ref().map(|s| s.value.as_str()),
            "ReadWriteMany",
        )));
    }
    for s in &r.services {
        if s.static_site.is_some() {
            match o.static_upstream {
                Some(upstream) => static_site(&c, s, upstream, &mut out),
                None => out.warnings.push(format!(
                    "service `{}` is a static site, served by the Offshoot router: give the server `--static-upstream IP:PORT` (the router as the cluster reaches it) to route to it",
                    s.name
                )),
            }
            continue;
        }
        service_manifests(&c, s, &mut out);
    }
    // Jobs run from workflows; cron jobs on their schedule, by the cluster, one run at a time.
    for j in r.jobs.iter().chain(&r.cron_jobs) {
        let base = j.from_service.as_deref().and_then(|f| r.services.iter().find(|s| s.name == f));
        // Its own build's image, else its service's, else the image it names.
        let image = o
            .images
            .get(&job_image_key(&j.name))
            .or_else(|| base.and_then(|b| o.images.get(&b.name)))
            .cloned()
            .or_else(|| j.image.clone().filter(|_| j.build.is_none()));
        let Some(image) = image else {
            out.warnings.push(format!("job `{}` has no image", j.name));
            continue;
        };
        let secret_name = job_secret_name(&j.name);
        let (env, secret) = env_vars(&j.env, &secret_name, o.reveal_secrets);
        if let Some(data) = secret {
            out.manifests.push(Manifest::Secret(secret_object(&c, &secret_name, Some(&j.name), data)));
        }
        let (volumes, mounts) = job_volumes(&c, j, base, &mut out);
        let container = Container {
            name: dns_label(&j.name),
            image: Some(image),
            command: j.command.clone(),
            args: j.args.clone(),
            env: (!env.is_empty()).then_some(env),
            resources: limits_of(&j.cpu, &j.memory),
            volume_mounts: (!mounts.is_empty()).then_some(mounts),
            ..Default::default()
        };
        let labels = c.labels(Some(&j.name));
        let spec = JobSpec {
            backoff_limit: Some(0),
            active_deadline_seconds: Some(i64::try_from(j.completed_timeout_seconds).unwrap_or(i64::MAX).max(1)),
            ttl_seconds_after_finished: j.schedule.is_none().then_some(3600),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(labels.clone()), ..Default::default() }),
                spec: Some(PodSpec {
                    image_pull_secrets: pull_secrets(o, r),
                    restart_policy: Some("Never".into()),
                    containers: vec![container],
                    node_selector: (!j.node_selector.is_empty()).then(|| j.node_selector.clone()),
                    service_account_name: j.service_account_name.as_deref().map(dns_label),
                    volumes: (!volumes.is_empty()).then_some(volumes),
                    ..Default::default()
                }),
            },
            ..Default::default()
        };
        out.manifests.push(match &j.schedule {
            None => {
                Manifest::Job(Box::new(Job { metadata: c.meta(&job_name(&j.name), Some(&j.name)), spec: Some(spec), ..Default::default() }))
            }
            Some(schedule) => Manifest::CronJob(Box::new(CronJob {
                metadata: c.meta(&cron_job_name(&j.name), Some(&j.name)),
                spec: CronJobSpec {
                    schedule: schedule.clone(),
                    time_zone: Some("Etc/UTC".into()),
                    concurrency_policy: Some("Forbid".into()),
                    successful_jobs_history_limit: Some(3),
                    failed_jobs_history_limit: Some(3),
                    job_template: JobTemplateSpec {
                        metadata: Some(ObjectMeta { labels: Some(labels), ..Default::default() }),
                        spec: Some(spec),
                    },
                    ..Default::default()
                },
                ..Default::default()
            })),
        });
    }
    ingresses(&c, &mut out);
    out
}

fn network_policy(c: &Ctx<'_>) -> NetworkPolicy {
    NetworkPolicy {
        metadata: c.meta("offshoot-isolation", None),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector::default()),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![
                    // The namespace's own pods.
                    NetworkPolicyPeer { pod_selector: Some(LabelSelector::default()), ..Default::default() },
                    // The ingress controller.
                    NetworkPolicyPeer {
                        namespace_selector: Some(LabelSelector {
                            match_labels: Some(BTreeMap::from([("kubernetes.io/metadata.name".to_owned(), c.o.ingress_namespace.clone())])),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                ]),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

fn pvc(c: &Ctx<'_>, name: &str, service: Option<&str>, size: Option<&str>, mode: &str) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: c.meta(name, service),
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec![mode.to_owned()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".to_owned(), Quantity(size.unwrap_or("1Gi").to_owned()))])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn secret_object(c: &Ctx<'_>, name: &str, service: Option<&str>, data: BTreeMap<String, String>) -> Secret {
    Secret { metadata: c.meta(name, service), type_: Some("Opaque".into()), string_data: Some(data), ..Default::default() }
}

/// Plain variables inline; secret ones by reference to `secret_name`, whose data is returned.
fn env_vars(env: &BTreeMap<String, VarValue>, secret_name: &str, reveal: bool) -> (Vec<EnvVar>, Option<BTreeMap<String, String>>) {
    let mut vars = Vec::new();
    let mut secret = BTreeMap::new();
    for (k, v) in env {
        match v {
            VarValue::Plain(p) => vars.push(EnvVar { name: k.clone(), value: Some(p.clone()), ..Default::default() }),
            VarValue::Secret(s) => {
                secret.insert(k.clone(), if reveal { s.expose().to_owned() } else { MASKED.to_owned() });
                vars.push(EnvVar {
                    name: k.clone(),
                    value_from: Some(EnvVarSource {
                        secret_key_ref: Some(SecretKeySelector { name: secret_name.to_owned(), key: k.clone(), optional: None }),
                        ..Default::default()
                    }),
                    ..Default::default()
                });
            }
        }
    }
    (vars, (!secret.is_empty()).then_some(secret))
}

fn port_of(text: Option<&offshoot_template::span::Text>) -> IntOrString {
    match text.map(|t| t.value.trim()) {
        Some(t) => t.parse::<i32>().map_or_else(|_| IntOrString::String(t.to_owned()), IntOrString::Int),
        None => IntOrString::Int(80),
    }
}

fn probe(p: &Probe) -> KProbe {
    let secs = |v: &Option<offshoot_template::span::Sp<u64>>| v.as_ref().map(|x| i32::try_from(x.value).unwrap_or(i32::MAX));
    KProbe {
        exec: p.exec.as_ref().map(|e| ExecAction { command: Some(e.command.iter().map(|c| c.value.clone()).collect()) }),
        http_get: p.http_get.as_ref().map(|h| HTTPGetAction {
            path: Some(h.path.as_ref().map_or_else(|| "/".to_owned(), |p| p.value.clone())),
            port: port_of(h.port.as_ref()),
            scheme: h.scheme.as_ref().map(|s| s.value.to_ascii_uppercase()),
            ..Default::default()
        }),
        tcp_socket: p.tcp_socket.as_ref().map(|t| TCPSocketAction { port: port_of(t.port.as_ref()), ..Default::default() }),
        initial_delay_seconds: secs(&p.initial_delay_seconds),
        period_seconds: secs(&p.period_seconds),
        timeout_seconds: secs(&p.timeout_seconds),
        failure_threshold: secs(&p.failure_threshold),
        success_threshold: secs(&p.success_threshold),
        ..Default::default()
    }
}

fn resources(s: &ResolvedService) -> Option<ResourceRequirements> {
    limits_of(&s.cpu, &s.memory)
}

/// A job's volumes: a claim shared through `claim`, its service's claim for a persistent volume
/// (a job of its own gets a claim of its own), memory and scratch directories.
fn job_volumes(
    c: &Ctx<'_>,
    j: &offshoot_template::resolve::ResolvedJob,
    base: Option<&ResolvedService>,
    out: &mut Rendered,
) -> (Vec<KVolume>, Vec<VolumeMount>) {
    let (mut volumes, mut mounts) = (Vec::new(), Vec::new());
    for (i, v) in j.volumes.iter().enumerate() {
        let Some(path) = v.mount_path.as_ref().map(|p| p.value.clone()) else { continue };
        let vname = v.name.as_ref().map_or_else(|| format!("vol-{i}"), |n| dns_label(&n.value));
        let kind = v.kind.as_ref().map(|k| k.value);
        let claim = |claim_name: String| KVolume {
            name: vname.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource { claim_name, read_only: None }),
            ..Default::default()
        };
        let source = match (kind, &v.claim) {
            (_, Some(shared)) => claim(format!("shared-{}", dns_label(&shared.value))),
            (Some(VolumeType::Persistent), None) => match base {
                Some(b) if b.stateful => {
                    out.warnings.push(format!(
                        "job `{}`: volume `{vname}` belongs to stateful service `{}`, whose pod holds it: not rendered",
                        j.name, b.name
                    ));
                    continue;
                }
                Some(b) => claim(format!("{}-{vname}", dns_label(&b.name))),
                None => {
                    let name = format!("{}-{vname}", dns_label(&j.name));
                    let size = v.size.as_ref().map(|s| s.value.as_str());
                    out.manifests.push(Manifest::PersistentVolumeClaim(pvc(c, &name, Some(&j.name), size, "ReadWriteOnce")));
                    claim(name)
                }
            },
            (Some(k @ (VolumeType::Shmem | VolumeType::Empty)), None) => directory(&vname, k, v),
            (Some(VolumeType::S3), None) | (None, None) => {
                out.warnings.push(format!(
                    "job `{}`: volume `{vname}` ({}) is not rendered",
                    j.name,
                    kind.map_or("untyped", |k| k.as_str())
                ));
                continue;
            }
        };
        volumes.push(source);
        mounts.push(VolumeMount { name: vname, mount_path: path, ..Default::default() });
    }
    (volumes, mounts)
}

/// A pod's directory volume: in memory (`shmem`, bounded by its `size`) or scratch (`empty`).
fn directory(name: &str, kind: VolumeType, v: &offshoot_template::model::Volume) -> KVolume {
    let empty_dir = if kind == VolumeType::Shmem {
        EmptyDirVolumeSource {
            medium: Some("Memory".into()),
            size_limit: v.size.as_ref().map(|s| Quantity(s.value.clone())),
            ..Default::default()
        }
    } else {
        EmptyDirVolumeSource::default()
    };
    KVolume { name: name.to_owned(), empty_dir: Some(empty_dir), ..Default::default() }
}

/// Resource limits and requests of a container.
fn limits_of(cpu: &offshoot_template::resolve::Limits, memory: &offshoot_template::resolve::Limits) -> Option<ResourceRequirements> {
    let mut limits = BTreeMap::new();
    let mut requests = BTreeMap::new();
    for (name, l) in [("cpu", cpu), ("memory", memory)] {
        if let Some(v) = &l.limits {
            limits.insert(name.to_owned(), Quantity(v.clone()));
        }
        if let Some(v) = &l.requests {
            requests.insert(name.to_owned(), Quantity(v.clone()));
        }
    }
    (!limits.is_empty() || !requests.is_empty()).then(|| ResourceRequirements {
        limits: (!limits.is_empty()).then_some(limits),
        requests: (!requests.is_empty()).then_some(requests),
        ..Default::default()
    })
}

fn service_manifests(c: &Ctx<'_>, s: &ResolvedService, out: &mut Rendered) {
    let name = dns_label(&s.name);
    let Some(image) = c.o.images.get(&s.name).cloned().or_else(|| s.image.clone()) else {
        out.warnings.push(format!("service `{}` has no image", s.name));
        return;
    };
    let secret_name = format!("{name}-secrets");
    let (env, secret) = env_vars(&s.env, &secret_name, c.o.reveal_secrets);
    if let Some(data) = secret {
        out.manifests.push(Manifest::Secret(secret_object(c, &secret_name, Some(&s.name), data)));
    }
    // Volumes: claims (per service, or shared), memory and scratch directories, repository files.
    let mut volumes: Vec<KVolume> = Vec::new();
    let mut mounts: Vec<VolumeMount> = Vec::new();
    let mut claim_templates: Vec<PersistentVolumeClaim> = Vec::new();
    for (i, v) in s.volumes.iter().enumerate() {
        let Some(path) = v.mount_path.as_ref().map(|p| p.value.clone()) else { continue };
        let vname = v.name.as_ref().map_or_else(|| format!("vol-{i}"), |n| dns_label(&n.value));
        let kind = v.kind.as_ref().map(|k| k.value);
        let source = match (kind, &v.claim) {
            (_, Some(claim)) => Some(KVolume {
                name: vname.clone(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: format!("shared-{}", dns_label(&claim.value)),
                    read_only: None,
                }),
                ..Default::default()
            }),
            (Some(VolumeType::Persistent), None) => {
                let size = v.size.as_ref().map(|s| s.value.as_str());
                if s.stateful {
                    let mut t = pvc(c, &vname, Some(&s.name), size, "ReadWriteOnce");
                    t.metadata.namespace = None;
                    claim_templates.push(t);
                    None
                } else {
                    let claim = format!("{name}-{vname}");
                    out.manifests.push(Manifest::PersistentVolumeClaim(pvc(c, &claim, Some(&s.name), size, "ReadWriteOnce")));
                    Some(KVolume {
                        name: vname.clone(),
                        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource { claim_name: claim, read_only: None }),
                        ..Default::default()
                    })
                }
            }
            (Some(k @ (VolumeType::Shmem | VolumeType::Empty)), None) => Some(directory(&vname, k, v)),
            (Some(VolumeType::S3), None) | (None, None) => {
                out.warnings.push(format!(
                    "service `{}`: volume `{vname}` ({}) is not rendered",
                    s.name,
                    kind.map_or("untyped", |k| k.as_str())
                ));
                continue;
            }
        };
        if let Some(src) = source {
            volumes.push(src);
        }
        mounts.push(VolumeMount { name: vname, mount_path: path, ..Default::default() });
    }
    for (i, f) in s.configmap.iter().enumerate() {
        let cm = format!("{name}-cm-{}", dns_label(&f.name.value));
        let file = f.source().as_str();
        let key = std::path::Path::new(file).file_name().and_then(|n| n.to_str()).unwrap_or("file").to_owned();
        let content = c.o.files.get(file).cloned().unwrap_or_else(|| {
            out.warnings.push(format!("service `{}`: configmap file `{file}` was not provided", s.name));
            String::new()
        });
        out.manifests.push(Manifest::ConfigMap(ConfigMap {
            metadata: c.meta(&cm, Some(&s.name)),
            data: Some(BTreeMap::from([(key.clone(), content)])),
            ..Default::default()
        }));
        let vname = format!("cm-{i}");
        volumes.push(KVolume {
            name: vname.clone(),
            config_map: Some(ConfigMapVolumeSource {
                name: cm,
                items: Some(vec![KeyToPath { key: key.clone(), path: key.clone(), ..Default::default() }]),
                ..Default::default()
            }),
            ..Default::default()
        });
        mounts.push(VolumeMount { name: vname, mount_path: f.target(), sub_path: Some(key), read_only: Some(true), ..Default::default() });
    }
    // File secrets: one Secret of the service's, each file mounted alone with its mode.
    if !s.secret_files.is_empty() {
        let files = format!("{name}-files");
        let data = s
            .secret_files
            .iter()
            .map(|f| {
                let value = f.value.as_ref().map_or("", |v| v.expose());
                (f.name.clone(), if c.o.reveal_secrets { value.to_owned() } else { MASKED.to_owned() })
            })
            .collect();
        out.manifests.push(Manifest::Secret(secret_object(c, &files, Some(&s.name), data)));
        for (i, f) in s.secret_files.iter().enumerate() {
            if f.uid.is_some() || f.gid.is_some() {
                out.warnings.push(format!("service `{}`: secret file `{}`: `uid` and `gid` are not set on Kubernetes", s.name, f.name));
            }
            let vname = format!("sf-{i}");
            volumes.push(KVolume {
                name: vname.clone(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(files.clone()),
                    items: Some(vec![KeyToPath {
                        key: f.name.clone(),
                        path: f.name.clone(),
                        mode: i32::try_from(f.mode).ok(),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
                ..Default::default()
            });
            mounts.push(VolumeMount {
                name: vname,
                mount_path: f.target.clone(),
                sub_path: Some(f.name.clone()),
                read_only: Some(true),
                ..Default::default()
            });
        }
    }
    let mut ports: Vec<ContainerPort> = Vec::new();
    for p in &s.ports {
        if !ports.iter().any(|x| x.container_port == i32::from(p.target_port)) {
            ports.push(ContainerPort { container_port: i32::from(p.target_port), protocol: Some("TCP".into()), ..Default::default() });
        }
    }
    let inits: Vec<Container> = s
        .init
        .iter()
        .map(|i| {
            let (env, _) = env_vars(&i.env, &secret_name, c.o.reveal_secrets);
            Container {
                name: format!("init-{}", dns_label(&i.name)),
                image: Some(
                    i.image.as_ref().map_or_else(|| image.clone(), |im| c.o.images.get(&s.name).cloned().unwrap_or_else(|| im.clone())),
                ),
                command: i.command.clone(),
                args: i.args.clone(),
                env: (!env.is_empty()).then_some(env),
                volume_mounts: (!mounts.is_empty()).then(|| mounts.clone()),
                ..Default::default()
            }
        })
        .collect();
    let container = Container {
        name: name.clone(),
        image: Some(image),
        command: s.command.clone(),
        args: s.args.clone(),
        env: (!env.is_empty()).then_some(env),
        ports: (!ports.is_empty()).then_some(ports),
        readiness_probe: s.readiness_probe.as_ref().map(probe),
        liveness_probe: s.liveness_probe.as_ref().map(probe),
        resources: resources(s),
        volume_mounts: (!mounts.is_empty()).then_some(mounts),
        ..Default::default()
    };
    let pod = PodTemplateSpec {
        metadata: Some(ObjectMeta { labels: Some(c.labels(Some(&s.name))), ..Default::default() }),
        spec: Some(PodSpec {
            image_pull_secrets: pull_secrets(c.o, c.r),
            containers: vec![container],
            init_containers: (!inits.is_empty()).then_some(inits),
            volumes: (!volumes.is_empty()).then_some(volumes),
            node_selector: (!s.node_selector.is_empty()).then(|| s.node_selector.clone()),
            service_account_name: s.service_account_name.as_deref().map(dns_label),
            ..Default::default()
        }),
    };
    let replicas = Some(i32::try_from(s.replicas).unwrap_or(i32::MAX));
    let selector = LabelSelector { match_labels: Some(c.selector(&s.name)), ..Default::default() };
    if s.stateful {
        out.manifests.push(Manifest::StatefulSet(Box::new(StatefulSet {
            metadata: c.meta(&name, Some(&s.name)),
            spec: StatefulSetSpec {
                replicas,
                selector,
                service_name: Some(name.clone()),
                template: pod,
                volume_claim_templates: (!claim_templates.is_empty()).then_some(claim_templates),
                ..Default::default()
            },
            ..Default::default()
        })));
    } else {
        out.manifests.push(Manifest::Deployment(Box::new(Deployment {
            metadata: c.meta(&name, Some(&s.name)),
            spec: DeploymentSpec { replicas, selector, template: pod, ..Default::default() },
            ..Default::default()
        })));
    }
    if !s.ports.is_empty() {
        let mut ports: Vec<ServicePort> = Vec::new();
        for p in &s.ports {
            if ports.iter().any(|x| x.port == i32::from(p.port)) {
                continue;
            }
            ports.push(ServicePort {
                name: Some(format!("p{}", p.port)),
                port: i32::from(p.port),
                target_port: Some(IntOrString::Int(i32::from(p.target_port))),
                protocol: Some("TCP".into()),
                ..Default::default()
            });
        }
        let lb = s.ports.iter().any(|p| p.loadbalancer);
        out.manifests.push(Manifest::Service(Service {
            metadata: c.meta(&name, Some(&s.name)),
            spec: Some(ServiceSpec {
                type_: Some(if lb { "LoadBalancer" } else { "ClusterIP" }.into()),
                selector: Some(c.selector(&s.name)),
                ports: Some(ports),
                ..Default::default()
            }),
            ..Default::default()
        }));
    }
}

/// The ingress-nginx annotations of the template's `ingress` block.
fn annotations(r: &Resolved) -> BTreeMap<String, String> {
    let mut a = BTreeMap::new();
    let Some(i) = &r.ingress else { return a };
    let mut put = |key: &str, v: &Option<offshoot_template::span::Text>| {
        if let Some(v) = v {
            a.insert(format!("nginx.ingress.kubernetes.io/{key}"), v.value.clone());
        }
    };
    put("proxy-body-size", &i.proxy_body_size);
    put("proxy-buffer-size", &i.proxy_buffer_size);
    put("proxy-buffers-number", &i.proxy_buffers_number);
    put("proxy-max-temp-file-size", &i.proxy_max_temp_file_size);
    put("proxy-read-timeout", &i.proxy_read_timeout);
    put("proxy-send-timeout", &i.proxy_send_timeout);
    if let Some(b) = &i.proxy_buffering {
        let on = matches!(b.value.trim(), "true" | "on" | "yes" | "1");
        a.insert("nginx.ingress.kubernetes.io/proxy-buffering".into(), if on { "on" } else { "off" }.into());
    }
    a
}

/// The port of a static site's Service.
const STATIC_PORT: u16 = 80;

/// A static site: a Service without pods, and an EndpointSlice that sends its traffic to the
/// Offshoot router, which serves the site from storage by the request's host (the ingress
/// controller keeps it).
fn static_site(c: &Ctx<'_>, s: &ResolvedService, upstream: std::net::SocketAddr, out: &mut Rendered) {
    let name = dns_label(&s.name);
    out.manifests.push(Manifest::Service(Service {
        metadata: c.meta(&name, Some(&s.name)),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: i32::from(STATIC_PORT),
                target_port: Some(IntOrString::Int(i32::from(upstream.port()))),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }));
    let mut meta = c.meta(&format!("{name}-router"), Some(&s.name));
    if let Some(l) = meta.labels.as_mut() {
        l.insert("kubernetes.io/service-name".into(), name.clone());
        l.insert("endpointslice.kubernetes.io/managed-by".into(), "offshoot".into());
    }
    out.manifests.push(Manifest::EndpointSlice(EndpointSlice {
        metadata: meta,
        address_type: if upstream.is_ipv4() { "IPv4" } else { "IPv6" }.into(),
        endpoints: Some(vec![Endpoint { addresses: vec![upstream.ip().to_string()], ..Default::default() }]),
        ports: Some(vec![EndpointPort {
            name: Some("http".into()),
            port: Some(i32::from(upstream.port())),
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
    }));
}

/// One Ingress per host and visibility; each route to the service's HTTP port (its first
/// `node_port`, else its first port).
fn ingresses(c: &Ctx<'_>, out: &mut Rendered) {
    let mut by_host: BTreeMap<(String, bool), Vec<HTTPIngressPath>> = BTreeMap::new();
    for route in &c.r.routes {
        let Some(svc) = c.r.services.iter().find(|s| s.name == route.service) else { continue };
        let port = if svc.static_site.is_some() {
            if c.o.static_upstream.is_none() {
                continue;
            }
            STATIC_PORT
        } else {
            let http = svc.ports.iter().find(|p| p.kind == PortType::NodePort).or_else(|| svc.ports.first());
            let Some(port) = http else {
                out.warnings.push(format!("route {}{} → `{}`: the service has no port", route.host, route.path, route.service));
                continue;
            };
            port.port
        };
        let private = route.visibility == "private";
        let path = if route.path.starts_with('/') { route.path.clone() } else { format!("/{}", route.path) };
        by_host.entry((route.host.clone(), private)).or_default().push(HTTPIngressPath {
            path: Some(path),
            path_type: "Prefix".into(),
            backend: IngressBackend {
                service: Some(IngressServiceBackend {
                    name: dns_label(&svc.name),
                    port: Some(ServiceBackendPort { number: Some(i32::from(port)), name: None }),
                }),
                ..Default::default()
            },
        });
    }
    let mut notes = annotations(c.r);
    if let IngressTls::CertManager(issuer) = &c.o.tls {
        notes.insert("cert-manager.io/cluster-issuer".into(), issuer.clone());
    }
    for ((host, private), paths) in by_host {
        let name = dns_label(&format!("{}{}", host, if private { "-private" } else { "" }));
        let mut meta = c.meta(&name, None);
        if !notes.is_empty() {
            meta.annotations = Some(notes.clone());
        }
        let secret = match &c.o.tls {
            IngressTls::Certificate(_) if c.o.tls.serves(&host) => Some(tls_secret_name(&c.r.env_id)),
            IngressTls::CertManager(_) => Some(format!("{name}-tls")),
            _ => None,
        };
        let tls = secret.map(|secret_name| vec![IngressTLS { hosts: Some(vec![host.clone()]), secret_name: Some(secret_name) }]);
        out.manifests.push(Manifest::Ingress(Ingress {
            metadata: meta,
            spec: Some(IngressSpec {
                ingress_class_name: Some(if private { c.o.private_ingress_class.clone() } else { c.o.ingress_class.clone() }),
                rules: Some(vec![IngressRule { host: Some(host), http: Some(HTTPIngressRuleValue { paths }) }]),
                tls,
                ..Default::default()
            }),
            ..Default::default()
        }));
    }
}

/// Multi-document YAML, one object per document, in apply order.
pub fn to_yaml(manifests: &[Manifest]) -> Result<String, String> {
    let mut out = String::new();
    for m in manifests {
        let doc = serde_saphyr::to_string(m).map_err(|e| format!("{} `{}`: {e}", m.kind(), m.name()))?;
        out.push_str("---\n");
        out.push_str(&doc);
        if !doc.ends_with('\n') {
            out.push('\n');
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_dns_labels() {
        assert_eq!(dns_label("Sql_Runner"), "sql-runner");
        assert_eq!(dns_label("--x--"), "x");
        assert_eq!(dns_label(&"a".repeat(80)).len(), 63);
        assert_eq!(dns_label("_"), "x");
        assert_eq!(label_value("feature/x"), "feature-x");
    }
}
