//! Stage three: a template, its variables and one environment's facts become the effective
//! spec: environment-template overrides applied, hostnames expanded, variables layered
//! (defaults → service → template `envs` → environment-specific → built-ins → mapping),
//! workflows normalized into steps.

use crate::diag::{Diagnostic, Diagnostics};
use crate::envvars::{EnvVarsFile, Var, VarValue};
use crate::interp::{self, Bare};
use crate::model::{EnvEntry, Ingress, OrderItem, Port, PortType, Probe, Service, Task, Template, Volume};
use crate::secret::SecretString;
use crate::yaml::{Node, Value};
use serde::Serialize;
use std::collections::BTreeMap;

/// A part of an attached Instant Dataset's connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DatasetField {
    Host,
    Port,
    Name,
    User,
    Pass,
    Url,
}

impl DatasetField {
    /// Whether a variable of this field is secret.
    pub fn is_secret(self) -> bool {
        matches!(self, DatasetField::Pass | DatasetField::Url)
    }
}

/// The variables an attached Instant Dataset gives an environment: `<DATASET>_DB_HOST`, `_PORT`,
/// `_NAME`, `_USER`, `_PASS`, `_URL` and Release's `<DATASET>_RDS_DB_POOL_HOST`, `_USER`, `_PASS`
/// (the dataset's name upper-cased, `-` → `_`).
pub fn dataset_variables(dataset: &str) -> Vec<(String, DatasetField)> {
    let p = dataset.to_ascii_uppercase().replace('-', "_");
    use DatasetField::*;
    [("DB_HOST", Host), ("DB_PORT", Port), ("DB_NAME", Name), ("DB_USER", User), ("DB_PASS", Pass), ("DB_URL", Url)]
        .into_iter()
        .chain([("RDS_DB_POOL_HOST", Host), ("RDS_DB_POOL_USER", User), ("RDS_DB_POOL_PASS", Pass)])
        .map(|(suffix, f)| (format!("{p}_{suffix}"), f))
        .collect()
}

/// Where an environment's hosts are served over HTTPS.
#[derive(Clone, Debug)]
pub struct IngressHttps {
    pub port: u16,
    /// The names of the certificates served there (`*.` wildcards included): a host is given
    /// as `https` only when one covers it. `None`: every host (an operator's own certificate).
    pub names: Option<Vec<String>>,
}

impl IngressHttps {
    /// Whether `host` is served over HTTPS.
    pub fn serves(&self, host: &str) -> bool {
        self.names.as_ref().is_none_or(|names| crate::ingress::any_covers(names, host))
    }
}

/// A host's URL: `https://HOST` as Release writes it without a port; else over HTTPS when
/// `https` serves the host, HTTP on `http_port` otherwise (the default ports left out).
pub fn host_url(host: &str, http_port: Option<u16>, https: Option<&IngressHttps>) -> String {
    match (http_port, https.filter(|h| h.serves(host))) {
        (None, _) => format!("https://{host}"),
        (Some(_), Some(h)) if h.port == 443 => format!("https://{host}"),
        (Some(_), Some(h)) => format!("https://{host}:{}", h.port),
        (Some(80), None) => format!("http://{host}"),
        (Some(port), None) => format!("http://{host}:{port}"),
    }
}

/// Facts about the environment being resolved.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Which `environment_templates` entry applies (`ephemeral` if absent and defined).
    pub environment_template: Option<String>,
    pub branch: String,
    pub env_id: String,
    pub commit: Option<String>,
    /// Used when the template has no `app`.
    pub app: Option<String>,
    /// Used when the template has no `domain`.
    pub domain: String,
    /// Use `domain` even when the template names one (a server answering for its own domain).
    pub force_domain: bool,
    /// How `<SERVICE>_INGRESS_URL` is written: `https://HOST` as Release does when `None`, or
    /// `http://HOST:PORT` for a router on that port.
    pub ingress_port: Option<u16>,
    /// With `ingress_port`: where HTTPS is served, and for which hosts (`https://HOST:PORT`).
    pub ingress_https: Option<IngressHttps>,
    /// Values of `parameters` (defaults apply to the rest).
    pub parameters: BTreeMap<String, String>,
    /// The application's file secrets, by name (what `secret_files` mount).
    pub secret_files: BTreeMap<String, SecretString>,
    /// Built-in variables from imported apps (`<SERVICE>_INGRESS_URL` / `_HOST` of their services).
    pub imported: BTreeMap<String, String>,
    /// Built-in variables of the environment's attached Instant Datasets (`<DATASET>_DB_*`),
    /// some secret; `mapping` sees them.
    pub attached: BTreeMap<String, VarValue>,
}

/// An environment resolved: every value its services, jobs, routes and workflows need. The
/// default is an environment with nothing in it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Resolved {
    pub app: String,
    pub env_id: String,
    pub branch: String,
    pub commit: Option<String>,
    pub environment_template: Option<String>,
    pub domain: String,
    pub services: Vec<ResolvedService>,
    pub jobs: Vec<ResolvedJob>,
    /// The `cron_jobs`: jobs with a `schedule`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cron_jobs: Vec<ResolvedJob>,
    pub rules: Vec<ResolvedRule>,
    /// Everything the router serves for this environment, rules first (in order), then the
    /// `hostnames` entries (path `/`, public).
    pub routes: Vec<ResolvedRoute>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ingress: Option<Ingress>,
    pub workflows: BTreeMap<String, Vec<ResolvedStep>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub datasets: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub app_imports: Vec<String>,
    /// Volumes services share through `claim`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shared_volumes: Vec<crate::model::SharedVolume>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub service_accounts: Vec<crate::model::ServiceAccount>,
    /// Terraform modules run by `infrastructure.<name>` tasks.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub infrastructure: Vec<ResolvedInfrastructure>,
    /// Warnings found while resolving (undefined variables and the like).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<Diagnostic>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ResolvedService {
    pub name: String,
    pub image: Option<String>,
    pub has_repo: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build: Option<ResolvedBuild>,
    /// Entrypoint override; `None` keeps the image's.
    pub command: Option<Vec<String>>,
    /// Arguments override; `None` keeps the image's.
    pub args: Option<Vec<String>>,
    pub depends_on: Vec<String>,
    pub ports: Vec<ResolvedPort>,
    /// Bare host names.
    pub hostnames: Vec<String>,
    pub volumes: Vec<Volume>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readiness_probe: Option<Probe>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub liveness_probe: Option<Probe>,
    pub replicas: u64,
    pub cpu: Limits,
    pub memory: Limits,
    /// Variables injected at run time; secrets are redacted when printed.
    pub env: BTreeMap<String, VarValue>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub init: Vec<ResolvedInit>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub static_site: Option<StaticSite>,
    pub stateful: bool,
    /// Node labels its pods must run on (the service's, else the template's).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Repository files mounted into the container.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub configmap: Vec<crate::model::ConfigMapFile>,
    /// The application's file secrets mounted into the container.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub secret_files: Vec<ResolvedSecretFile>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Limits {
    pub limits: Option<String>,
    pub requests: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ResolvedBuild {
    pub context: String,
    pub dockerfile: Option<String>,
    pub target: Option<String>,
    pub args: BTreeMap<String, VarValue>,
    /// Build from another repository (a top-level `builds` entry with `repo_url`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    /// Its branch; the repository's default branch when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repo_branch: Option<String>,
}

/// A file secret as a service mounts it.
#[derive(Clone, Debug, Serialize)]
pub struct ResolvedSecretFile {
    pub name: String,
    pub target: String,
    pub mode: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    /// `None` when the application has no file secret of that name (a deployment refuses it).
    pub value: Option<SecretString>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ResolvedPort {
    #[serde(rename = "type")]
    pub kind: PortType,
    pub port: u16,
    pub target_port: u16,
    /// A dedicated TCP port rather than the HTTP router.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub loadbalancer: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct ResolvedInit {
    pub name: String,
    pub image: Option<String>,
    pub command: Option<Vec<String>>,
    pub args: Option<Vec<String>>,
    pub env: BTreeMap<String, VarValue>,
}

#[derive(Clone, Debug, Serialize)]
pub struct StaticSite {
    pub build_base: String,
    pub install_command: Option<String>,
    pub build_command: Option<String>,
    pub output_directory: String,
    /// `static_fallback` as written (`None`: the default, `index.html`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
}

/// An `infrastructure` entry: a Terraform module of the repository, with the variables Terraform
/// receives as `TF_VAR_<NAME>` (Release's, the application's `defaults`, the environment's and
/// `mapping`; secrets included, redacted when printed).
#[derive(Clone, Debug, Serialize)]
pub struct ResolvedInfrastructure {
    pub name: String,
    /// The module's folder in the repository, normalised (`.` for its root).
    pub directory: String,
    /// A values file (`.tfvars`, `.tfvars.json`, or YAML): a path in the repository, or in
    /// `directory`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub values: Option<String>,
    pub env: BTreeMap<String, VarValue>,
}

impl Resolved {
    /// Adds `vars` (infrastructure outputs) to every service's, job's and cron job's variables,
    /// except where one already has a variable of that name: what the configuration sets wins.
    pub fn add_outputs(&mut self, vars: &BTreeMap<String, VarValue>) {
        let envs = self
            .services
            .iter_mut()
            .map(|s| &mut s.env)
            .chain(self.jobs.iter_mut().map(|j| &mut j.env))
            .chain(self.cron_jobs.iter_mut().map(|j| &mut j.env));
        for env in envs {
            for (k, v) in vars {
                env.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct ResolvedJob {
    pub name: String,
    pub from_service: Option<String>,
    pub image: Option<String>,
    pub command: Option<Vec<String>>,
    pub args: Option<Vec<String>>,
    pub completed_timeout_seconds: u64,
    pub halt_on_error: bool,
    pub env: BTreeMap<String, VarValue>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// Its own `cpu` and `memory`, else its service's, else the template's `resources`.
    pub cpu: Limits,
    pub memory: Limits,
    /// Its own `volumes`, else its service's.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    /// A cron job's schedule (five fields, UTC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// Its own build (or the top-level `builds` entry its image names): it runs what that builds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build: Option<ResolvedBuild>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ResolvedRule {
    pub service: String,
    pub hostnames: Vec<String>,
    pub path: String,
    pub visibility: String,
}

/// One host and path prefix routed to a service.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ResolvedRoute {
    pub service: String,
    pub host: String,
    pub path: String,
    pub visibility: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct ResolvedStep {
    pub name: String,
    pub tasks: Vec<String>,
    pub wait_for_finish: bool,
    pub halt_on_error: bool,
}

/// Default `completed_timeout` of jobs, in seconds.
pub const DEFAULT_JOB_TIMEOUT: u64 = 600;

fn deep_merge(base: &mut Node, over: &Node) {
    match (&mut base.value, &over.value) {
        (Value::Map(b), Value::Map(o)) => {
            for (k, v) in o {
                match b.iter_mut().find(|(bk, _)| bk.as_text().is_some() && bk.as_text() == k.as_text()) {
                    Some((_, bv)) => deep_merge(bv, v),
                    None => b.push((k.clone(), v.clone())),
                }
            }
        }
        _ => *base = over.clone(),
    }
}

fn is_true(n: &Node, key: &str) -> bool {
    n.get(key).and_then(Node::as_text).is_some_and(|t| t.eq_ignore_ascii_case("true"))
}

fn without(n: &Node, keys: &[&str]) -> Node {
    let mut n = n.clone();
    if let Value::Map(m) = &mut n.value {
        m.retain(|(k, _)| !k.as_text().is_some_and(|k| keys.contains(&k)));
    }
    n
}

/// Applies an `environment_templates` entry to the template's tree. Top-level keys replace
/// the template's (`resources` is merged); services merge by name, with `add` and `remove`.
pub fn apply_environment_template(root: &Node, name: &str, d: &mut Diagnostics) -> Node {
    let mut out = root.clone();
    let Some(entry) = root
        .get("environment_templates")
        .and_then(Node::as_seq)
        .and_then(|s| s.iter().find(|e| e.get("name").and_then(Node::as_text) == Some(name)))
    else {
        return out;
    };
    let Value::Map(top) = &mut out.value else { return out };
    for (k, v) in entry.as_map().unwrap_or_default() {
        let key = k.as_text().unwrap_or_default();
        if matches!(key, "name" | "services" | "datasets") || v.is_null() {
            continue;
        }
        match top.iter_mut().find(|(tk, _)| tk.as_text() == Some(key)) {
            Some((_, tv)) if key == "resources" => deep_merge(tv, v),
            Some((_, tv)) => *tv = v.clone(),
            None => top.push((k.clone(), v.clone())),
        }
    }
    let overrides = entry.get("services").and_then(Node::as_seq).unwrap_or_default();
    if overrides.is_empty() {
        return out;
    }
    let services = match top.iter_mut().find(|(k, _)| k.as_text() == Some("services")) {
        Some((_, s)) => s,
        None => {
            top.push((
                Node {
                    value: Value::Scalar(crate::yaml::Scalar { text: "services".into(), kind: crate::yaml::ScalarKind::Str }),
                    span: root.span,
                },
                Node { value: Value::Seq(Vec::new()), span: root.span },
            ));
            &mut top.last_mut().expect("just pushed").1
        }
    };
    if services.is_null() {
        services.value = Value::Seq(Vec::new());
    }
    let Value::Seq(list) = &mut services.value else { return out };
    for o in overrides {
        let Some(oname) = o.get("name").and_then(Node::as_text) else { continue };
        let pos = list.iter().position(|s| s.get("name").and_then(Node::as_text) == Some(oname));
        match (pos, is_true(o, "remove"), is_true(o, "add")) {
            (Some(i), true, _) => {
                list.remove(i);
            }
            (None, true, _) => {}
            (Some(i), false, _) => deep_merge(&mut list[i], &without(o, &["add", "remove"])),
            (None, false, true) => list.push(without(o, &["add", "remove"])),
            (None, false, false) => {
                d.error(
                    o.span,
                    "unknown-service",
                    format!("environment template `{name}` overrides service `{oname}`, which is not defined"),
                );
                d.hint("add `add: true` to introduce a new service in this environment template");
            }
        }
    }
    out
}

/// `<SERVICE>` in `<SERVICE>_INGRESS_URL`: upper case, `-` as `_`.
pub fn service_var_prefix(service: &str) -> String {
    service.chars().map(|c| if c == '-' || c == '.' { '_' } else { c.to_ascii_uppercase() }).collect()
}

fn texts(v: &Option<Vec<crate::span::Text>>) -> Option<Vec<String>> {
    v.as_ref().map(|v| v.iter().map(|t| t.value.clone()).collect())
}

fn limits(q: Option<&crate::model::Quantities>, default: Option<&crate::model::Quantities>) -> Limits {
    let pick = |f: fn(&crate::model::Quantities) -> &Option<crate::span::Text>| {
        q.and_then(|q| f(q).clone()).or_else(|| default.and_then(|q| f(q).clone())).map(|t| t.value)
    };
    Limits { limits: pick(|q| &q.limits), requests: pick(|q| &q.requests) }
}

/// A layered variable set; later layers win.
#[derive(Clone, Default)]
struct Env(BTreeMap<String, VarValue>);

impl Env {
    fn vars(&mut self, vars: &[Var]) {
        for v in vars {
            if let Some(val) = &v.value {
                self.0.insert(v.key.value.clone(), val.value.clone());
            }
        }
    }
    fn set(&mut self, k: impl Into<String>, v: impl Into<String>) {
        self.0.insert(k.into(), VarValue::Plain(v.into()));
    }
    /// Interpolates `s` against this set; the result is secret if any secret went into it.
    fn render(
        &self,
        s: &str,
        bare: Bare,
        extra: &BTreeMap<String, String>,
        what: &str,
        d: &mut Diagnostics,
        span: crate::span::Span,
    ) -> VarValue {
        let pieces = match interp::parse(s, bare) {
            Ok(p) => p,
            Err(e) => {
                d.error(span, "invalid-expression", format!("{what}: {}", e.message));
                return VarValue::Plain(s.to_owned());
            }
        };
        let mut secret = false;
        let (out, missing) = interp::render(&pieces, &mut |n| {
            extra.get(n).cloned().or_else(|| {
                self.0.get(n).map(|v| {
                    secret |= v.is_secret();
                    v.expose().to_owned()
                })
            })
        });
        for m in missing {
            d.warn(span, "undefined-variable", format!("{what}: `{m}` is not defined; it is replaced by an empty string"));
            d.hint(format!("define `{m}` in the Environment Variables file, or give a fallback: `${{{m}:-value}}`"));
        }
        if secret { VarValue::Secret(SecretString::new(out)) } else { VarValue::Plain(out) }
    }
}

/// Resolves a template tree (already checked) for one environment.
pub fn resolve(file: &str, root: &Node, env_vars: Option<&EnvVarsFile>, opts: &Options) -> Result<Resolved, Vec<Diagnostic>> {
    let mut d = Diagnostics::new(file);
    let env_template = opts.environment_template.clone().or_else(|| {
        root.get("environment_templates")
            .and_then(Node::as_seq)
            .and_then(|s| s.iter().find(|e| e.get("name").and_then(Node::as_text) == Some("ephemeral")))
            .map(|_| "ephemeral".to_owned())
    });
    let mut datasets = Vec::new();
    let merged = match &env_template {
        Some(name) => {
            let entry = root
                .get("environment_templates")
                .and_then(Node::as_seq)
                .and_then(|s| s.iter().find(|e| e.get("name").and_then(Node::as_text) == Some(name.as_str())));
            let Some(entry) = entry else {
                let names: Vec<&str> = root
                    .get("environment_templates")
                    .and_then(Node::as_seq)
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|e| e.get("name").and_then(Node::as_text))
                    .collect();
                d.error(root.span, "unknown-environment-template", format!("environment template `{name}` is not defined"));
                d.hint(if names.is_empty() {
                    "the template defines no environment_templates".to_owned()
                } else {
                    format!("defined: {}", names.join(", "))
                });
                return Err(d.into_sorted());
            };
            datasets = entry
                .get("datasets")
                .and_then(Node::as_seq)
                .unwrap_or_default()
                .iter()
                .filter_map(|n| n.get("name").or(Some(n)).and_then(Node::as_text).map(str::to_owned))
                .collect();
            // Applied: the merged tree no longer carries environment templates.
            without(&apply_environment_template(root, name, &mut d), &["environment_templates"])
        }
        None => root.clone(),
    };
    let Some(t) = Template::read(&mut d, &merged) else { return Err(d.into_sorted()) };
    crate::validate::check_template(&t, &mut d);
    if d.has_errors() {
        let errors = d.into_sorted().into_iter().filter(Diagnostic::is_error).collect();
        return Err(errors);
    }
    d.items.clear();
    let resolved = build(&t, env_vars, opts, env_template, datasets, &mut d);
    if d.has_errors() {
        return Err(d.into_sorted());
    }
    Ok(Resolved { warnings: d.into_sorted(), ..resolved })
}

fn build(
    t: &Template,
    env_vars: Option<&EnvVarsFile>,
    opts: &Options,
    env_template: Option<String>,
    datasets: Vec<String>,
    d: &mut Diagnostics,
) -> Resolved {
    let app = t.app.as_ref().map(|a| a.value.clone()).or_else(|| opts.app.clone()).unwrap_or_else(|| "app".into());
    let domain = match &t.domain {
        Some(d) if !opts.force_domain => d.value.clone(),
        _ => opts.domain.clone(),
    };
    let placeholders: BTreeMap<String, String> = [("env_id".to_owned(), opts.env_id.clone()), ("domain".to_owned(), domain.clone())].into();
    let expand_host = |h: &str| {
        let pieces = interp::parse(h, Bare::Literal).unwrap_or_default();
        interp::render(&pieces, &mut |n| placeholders.get(n).cloned()).0.to_ascii_lowercase()
    };
    let mut hostnames: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut plain_routes = Vec::new();
    for h in &t.hostnames {
        let host = expand_host(&h.template);
        plain_routes.push(ResolvedRoute {
            service: h.service.value.clone(),
            host: host.clone(),
            path: "/".into(),
            visibility: "public".into(),
        });
        hostnames.entry(h.service.as_str()).or_default().push(host);
    }
    let rules: Vec<ResolvedRule> = t
        .rules
        .iter()
        .map(|r| ResolvedRule {
            service: r.service.value.clone(),
            hostnames: r.hostnames.iter().map(|h| expand_host(h)).collect(),
            path: r.path.as_ref().map_or_else(|| "/".to_owned(), |p| p.value.clone()),
            visibility: r.visibility.as_ref().map_or("public", |v| v.value.as_str()).to_owned(),
        })
        .collect();
    for r in &rules {
        let list = hostnames.entry(t.services.iter().find(|s| s.name.value == r.service).map_or("", |s| s.name.as_str())).or_default();
        for h in &r.hostnames {
            if !list.contains(h) {
                list.push(h.clone());
            }
        }
    }
    hostnames.remove("");
    let routes: Vec<ResolvedRoute> = rules
        .iter()
        .flat_map(|r| {
            r.hostnames.iter().map(|h| ResolvedRoute {
                service: r.service.clone(),
                host: h.clone(),
                path: r.path.clone(),
                visibility: r.visibility.clone(),
            })
        })
        .chain(plain_routes)
        .collect();

    // Built-in variables, the same for every service.
    let mut builtins = Env::default();
    let commit = opts.commit.clone().unwrap_or_default();
    builtins.set("RELEASE_ENV", "true");
    builtins.set("RELEASE_ENV_ID", &opts.env_id);
    builtins.set("RELEASE_BRANCH_NAME", &opts.branch);
    builtins.set("RELEASE_COMMIT_SHA", &commit);
    builtins.set("RELEASE_COMMIT_SHORT", commit.get(..7).unwrap_or(&commit));
    builtins.set("RELEASE_APP_NAME", &app);
    builtins.set("RELEASE_DOMAIN", &domain);
    builtins.set("RELEASE_RANDOMNESS", &opts.env_id);
    if let Some(et) = &env_template {
        builtins.set("RELEASE_ENVIRONMENT_TEMPLATE", et);
    }
    for (svc, hosts) in &hostnames {
        if let Some(h) = hosts.first() {
            let p = service_var_prefix(svc);
            builtins.set(format!("{p}_INGRESS_HOST"), h);
            builtins.set(format!("{p}_INGRESS_URL"), host_url(h, opts.ingress_port, opts.ingress_https.as_ref()));
        }
    }
    for (k, v) in &opts.attached {
        builtins.0.insert(k.clone(), v.clone());
    }
    // The imported apps' ingress variables, unless the app defines the same service itself.
    for (k, v) in &opts.imported {
        if !builtins.0.contains_key(k) {
            builtins.set(k.clone(), v.clone());
        }
    }
    let params: BTreeMap<String, String> = t
        .parameters
        .iter()
        .map(|p| {
            let v =
                opts.parameters.get(p.name.as_str()).cloned().or_else(|| p.default.as_ref().map(|d| d.value.clone())).unwrap_or_default();
            (format!("parameters.{}", p.name.value), v)
        })
        .collect();
    let empty = EnvVarsFile::default();
    let vars = env_vars.unwrap_or(&empty);

    let env_for = |name: &str, envs: &[EnvEntry], d: &mut Diagnostics| -> Env {
        let mut env = Env::default();
        env.vars(&vars.defaults);
        env.vars(vars.service_vars(name));
        for e in envs {
            let v = env.render(&e.value, Bare::Literal, &params, &format!("`{}` of `{name}`", e.key), d, e.value.span);
            env.0.insert(e.key.value.clone(), v);
        }
        env.vars(&vars.envs);
        env.0.extend(builtins.0.clone());
        let snapshot = env.clone();
        for (k, v) in &vars.mapping {
            // A bare variable name is a reference; anything else is interpolated.
            let value = if crate::envvars::is_env_name(v) {
                snapshot.0.get(v.as_str()).cloned().unwrap_or_else(|| {
                    d.warn(
                        v.span,
                        "undefined-variable",
                        format!("mapping `{k}`: `{v}` is not a defined variable; it is used as literal text"),
                    );
                    VarValue::Plain(v.value.clone())
                })
            } else {
                snapshot.render(v, Bare::Expand, &BTreeMap::new(), &format!("mapping `{k}`"), d, v.span)
            };
            env.0.insert(k.value.clone(), value);
        }
        env
    };

    let default_res = t.resources.as_ref();
    let mut services: Vec<ResolvedService> =
        t.services.iter().map(|s| resolve_service(s, &t.builds, &hostnames, &env_for, (default_res, &t.node_selector), d)).collect();
    for f in services.iter_mut().flat_map(|s| s.secret_files.iter_mut()) {
        f.value = opts.secret_files.get(&f.name).cloned();
    }
    let resolve_job = |j: &crate::model::Job, d: &mut Diagnostics| {
        let base = j.from_services.as_ref().and_then(|f| t.service(f));
        let env = env_for(
            base.map_or(j.name.as_str(), |b| b.name.as_str()),
            &[base.map(|b| b.envs.clone()).unwrap_or_default(), j.envs.clone()].concat(),
            d,
        );
        let build = resolve_build(j.build.as_ref(), j.image.as_ref(), &t.builds, &env, &j.name, d);
        ResolvedJob {
            name: j.name.value.clone(),
            from_service: j.from_services.as_ref().map(|f| f.value.clone()),
            image: j.image.as_ref().or(base.and_then(|b| b.image.as_ref())).map(|i| i.value.clone()),
            command: texts(&j.command).or_else(|| base.and_then(|b| texts(&b.command))),
            args: texts(&j.args).or_else(|| if j.command.is_some() { None } else { base.and_then(|b| texts(&b.args)) }),
            completed_timeout_seconds: j.completed_timeout.as_ref().map_or(DEFAULT_JOB_TIMEOUT, |c| c.value),
            halt_on_error: j.halt_on_error.as_ref().is_some_and(|h| h.value),
            env: env.0,
            node_selector: selector(if j.node_selector.is_empty() {
                base.map_or(&t.node_selector, |b| if b.node_selector.is_empty() { &t.node_selector } else { &b.node_selector })
            } else {
                &j.node_selector
            }),
            service_account_name: j
                .service_account_name
                .as_ref()
                .or(base.and_then(|b| b.service_account_name.as_ref()))
                .map(|x| x.value.clone()),
            cpu: limits(j.cpu.as_ref().or(base.and_then(|b| b.cpu.as_ref())), default_res.and_then(|r| r.cpu.as_ref())),
            memory: limits(j.memory.as_ref().or(base.and_then(|b| b.memory.as_ref())), default_res.and_then(|r| r.memory.as_ref())),
            volumes: j.volumes.clone().or_else(|| base.and_then(|b| b.volumes.clone())).unwrap_or_default(),
            schedule: j.schedule.as_ref().map(|s| s.value.clone()),
            build,
        }
    };
    let jobs = t.jobs.iter().map(|j| resolve_job(j, d)).collect();
    let cron_jobs = t.cron_jobs.iter().map(|j| resolve_job(j, d)).collect();
    let infrastructure = t
        .infrastructure
        .iter()
        .map(|i| ResolvedInfrastructure {
            name: i.name.value.clone(),
            directory: i.directory.as_ref().map_or_else(|| ".".to_owned(), |d| crate::validate::module_dir(&d.value)),
            values: i.values.as_ref().map(|v| v.value.trim_start_matches("./").to_owned()),
            env: env_for(&i.name.value, &[], d).0,
        })
        .collect();
    let mut workflows: BTreeMap<String, Vec<ResolvedStep>> = BTreeMap::new();
    for w in &t.workflows {
        let mut steps = Vec::new();
        for (i, s) in w.parallelize.iter().enumerate() {
            steps.push(ResolvedStep {
                name: s.step.as_ref().map_or_else(|| format!("step-{i}"), |n| n.value.clone()),
                tasks: s.tasks.iter().map(|t| t.value.to_string()).collect(),
                wait_for_finish: s.wait_for_finish.as_ref().is_none_or(|b| b.value),
                halt_on_error: s.halt_on_error.as_ref().is_some_and(|b| b.value),
            });
        }
        for (i, o) in w.order_from.iter().enumerate() {
            steps.push(match o {
                OrderItem::Task(task) => ResolvedStep {
                    name: task.value.to_string(),
                    tasks: vec![task.value.to_string()],
                    wait_for_finish: true,
                    halt_on_error: false,
                },
                OrderItem::Step(s) => ResolvedStep {
                    name: s.step.as_ref().map_or_else(|| format!("step-{i}"), |n| n.value.clone()),
                    tasks: s.tasks.iter().map(|t| t.value.to_string()).collect(),
                    wait_for_finish: s.wait_for_finish.as_ref().is_none_or(|b| b.value),
                    halt_on_error: s.halt_on_error.as_ref().is_some_and(|b| b.value),
                },
            });
        }
        // `services.all` stands for every service, in template order.
        for step in &mut steps {
            if step.tasks.iter().any(|t| t == "services.all") {
                step.tasks = step
                    .tasks
                    .iter()
                    .flat_map(|task| {
                        if task == "services.all" {
                            t.services.iter().map(|s| Task::Service(s.name.value.clone()).to_string()).collect()
                        } else {
                            vec![task.clone()]
                        }
                    })
                    .collect();
            }
        }
        // The last definition of a workflow wins, as with duplicate keys.
        workflows.insert(w.name.value.clone(), steps);
    }
    Resolved {
        app,
        env_id: opts.env_id.clone(),
        branch: opts.branch.clone(),
        commit: opts.commit.clone(),
        environment_template: env_template,
        domain,
        services,
        jobs,
        cron_jobs,
        rules,
        routes,
        ingress: t.ingress.clone(),
        workflows,
        datasets,
        app_imports: t.app_imports.iter().map(|a| a.name.value.clone()).collect(),
        shared_volumes: t.shared_volumes.clone(),
        service_accounts: t.service_accounts.clone(),
        infrastructure,
        warnings: Vec::new(),
    }
}

fn selector(list: &[crate::model::NodeSelector]) -> BTreeMap<String, String> {
    list.iter().map(|n| (n.key.value.clone(), n.value.value.clone())).collect()
}

/// The build of a service or job: its own `build`, or the top-level `builds` entry its image
/// names (`<org>/<repo>/<build>`); its args rendered with `${envs.X}` of its variables.
fn resolve_build(
    build: Option<&crate::model::Build>,
    image: Option<&crate::span::Text>,
    builds: &[crate::model::BuildDef],
    env: &Env,
    owner: &str,
    d: &mut Diagnostics,
) -> Option<ResolvedBuild> {
    let render_args = |args: &[crate::span::Text], d: &mut Diagnostics| -> BTreeMap<String, VarValue> {
        args.iter()
            .map(|a| {
                let (k, v) = a.value.split_once('=').unwrap_or((&a.value, ""));
                // `${envs.X}` is variable X of this service.
                let envs: BTreeMap<String, String> = env.0.iter().map(|(k, v)| (format!("envs.{k}"), v.expose().to_owned())).collect();
                let secret_used = interp::parse(v, Bare::Literal)
                    .map(|p| {
                        interp::names(&p)
                            .iter()
                            .any(|n| n.strip_prefix("envs.").and_then(|k| env.0.get(k)).is_some_and(VarValue::is_secret))
                    })
                    .unwrap_or(false);
                let rendered = Env::default().render(v, Bare::Literal, &envs, &format!("build arg `{k}` of `{}`", owner), d, a.span);
                let value = if secret_used { VarValue::Secret(SecretString::new(rendered.expose())) } else { rendered };
                (k.to_owned(), value)
            })
            .collect()
    };
    let text = |t: &Option<crate::span::Text>| t.as_ref().map(|x| x.value.clone());
    match build {
        Some(b) => Some(ResolvedBuild {
            context: text(&b.context).unwrap_or_else(|| ".".to_owned()),
            dockerfile: text(&b.dockerfile),
            target: text(&b.target),
            args: render_args(&b.args, d),
            repo: None,
            repo_branch: None,
        }),
        // An image named `<org>/<repo>/<build>` refers to a top-level `builds` entry.
        None => image
            .filter(|i| i.value.matches('/').count() >= 2)
            .and_then(|i| i.value.rsplit('/').next())
            .and_then(|name| builds.iter().find(|b| b.name.value == name))
            .map(|b| ResolvedBuild {
                context: text(&b.context).unwrap_or_else(|| ".".to_owned()),
                dockerfile: text(&b.dockerfile),
                target: text(&b.target),
                args: render_args(&b.args, d),
                repo: text(&b.repo_url),
                repo_branch: text(&b.repo_branch),
            }),
    }
}

fn resolve_service(
    s: &Service,
    builds: &[crate::model::BuildDef],
    hostnames: &BTreeMap<&str, Vec<String>>,
    env_for: &dyn Fn(&str, &[EnvEntry], &mut Diagnostics) -> Env,
    (default_res, default_node_selector): (Option<&crate::model::Resources>, &[crate::model::NodeSelector]),
    d: &mut Diagnostics,
) -> ResolvedService {
    let env = env_for(&s.name, &s.envs, d);
    let build = resolve_build(s.build.as_ref(), s.image.as_ref(), builds, &env, &s.name, d);
    let ports = s
        .ports
        .iter()
        .flatten()
        .filter_map(|p: &Port| {
            let port: u16 = p.port.as_ref()?.trim().parse().ok()?;
            let target = p.target_port.as_ref().and_then(|t| t.trim().parse().ok()).unwrap_or(port);
            Some(ResolvedPort {
                kind: p.kind.as_ref().map_or(PortType::ContainerPort, |k| k.value),
                port,
                target_port: target,
                loadbalancer: p.loadbalancer.as_ref().is_some_and(|b| b.value),
            })
        })
        .collect();
    let is_static = s.is_static.as_ref().is_some_and(|b| b.value);
    ResolvedService {
        name: s.name.value.clone(),
        image: s.image.as_ref().map(|i| i.value.clone()),
        has_repo: s.has_repo.as_ref().is_some_and(|b| b.value) || build.is_some(),
        build,
        command: texts(&s.command),
        args: texts(&s.args),
        depends_on: s.depends_on.iter().map(|x| x.value.clone()).collect(),
        ports,
        hostnames: hostnames.get(s.name.as_str()).cloned().unwrap_or_default(),
        volumes: s.volumes.clone().unwrap_or_default(),
        readiness_probe: s.readiness_probe.clone(),
        liveness_probe: s.liveness_probe.clone(),
        replicas: s.replicas.as_ref().map(|r| r.value).or(default_res.and_then(|r| r.replicas.as_ref()).map(|r| r.value)).unwrap_or(1),
        cpu: limits(s.cpu.as_ref(), default_res.and_then(|r| r.cpu.as_ref())),
        memory: limits(s.memory.as_ref(), default_res.and_then(|r| r.memory.as_ref())),
        init: s
            .init
            .iter()
            .map(|i| {
                let mut env = env.clone();
                env.0.extend(env_for(&s.name, &i.envs, d).0);
                ResolvedInit {
                    name: i.name.value.clone(),
                    image: i.image.as_ref().or(s.image.as_ref()).map(|x| x.value.clone()),
                    command: texts(&i.command),
                    args: texts(&i.args),
                    env: env.0,
                }
            })
            .collect(),
        env: env.0,
        static_site: is_static.then(|| StaticSite {
            build_base: s.build_base.as_ref().map_or_else(String::new, |b| b.value.clone()),
            install_command: s.build_package_install_command.as_ref().map(|b| b.value.clone()),
            build_command: s.build_command.as_ref().map(|b| b.value.clone()),
            output_directory: s.build_output_directory.as_ref().map_or_else(|| "build".to_owned(), |b| b.value.clone()),
            fallback: s.static_fallback.as_ref().map(|b| b.value.clone()),
        }),
        stateful: s.stateful.as_ref().is_some_and(|b| b.value),
        node_selector: selector(if s.node_selector.is_empty() { default_node_selector } else { &s.node_selector }),
        configmap: s.configmap.clone(),
        secret_files: s
            .secret_files
            .iter()
            .map(|f| ResolvedSecretFile {
                name: f.name.value.clone(),
                target: f.target(),
                mode: f.mode_bits(),
                uid: f.uid.as_ref().and_then(|u| u.parse().ok()),
                gid: f.gid.as_ref().and_then(|g| g.parse().ok()),
                value: None,
            })
            .collect(),
        service_account_name: s.service_account_name.as_ref().map(|x| x.value.clone()),
    }
}
