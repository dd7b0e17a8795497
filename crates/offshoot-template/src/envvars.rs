//! The Environment Variables file (`defaults`, `services`, `mapping`, `envs`) and
//! `.release.yaml`.

use crate::decode::{Fields, boolean, list, text, text_or_empty};
use crate::diag::Diagnostics;
use crate::model::Template;
use crate::secret::SecretString;
use crate::span::{Sp, Text};
use crate::yaml::{Node, Value};
use schemars::JsonSchema;
use serde::{Serialize, Serializer};

/// A variable's value: plain, or secret (encrypted at rest, never printed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum VarValue {
    Plain(String),
    Secret(SecretString),
}

impl VarValue {
    pub fn expose(&self) -> &str {
        match self {
            VarValue::Plain(s) => s,
            VarValue::Secret(s) => s.expose(),
        }
    }
    pub fn is_secret(&self) -> bool {
        matches!(self, VarValue::Secret(_))
    }
}

/// `{key, value, secret}`. Unquoted booleans and numbers are the strings they spell.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct Var {
    pub key: Text,
    /// Absent for a secret whose value is kept outside the file.
    pub value: Option<Sp<VarValue>>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub secret: bool,
}

/// The Environment Variables file.
#[derive(Clone, Debug, Default, Serialize, JsonSchema)]
#[schemars(title = "Release Environment Variables")]
pub struct EnvVarsFile {
    /// Injected into every service and job (not into image builds).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub defaults: Vec<Var>,
    /// Per service; overrides same-key defaults.
    #[serde(skip_serializing_if = "Vec::is_empty", serialize_with = "ser_pairs")]
    #[schemars(with = "std::collections::BTreeMap<String, Vec<Var>>")]
    pub services: Vec<(Text, Vec<Var>)>,
    /// Environment-specific file's equivalent of `defaults`, applied after it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub envs: Vec<Var>,
    /// `NEW_NAME: source`: a variable name, `$NAME`, or a string with `${NAME}` expressions.
    #[serde(skip_serializing_if = "Vec::is_empty", serialize_with = "ser_pairs")]
    #[schemars(with = "std::collections::BTreeMap<String, String>")]
    pub mapping: Vec<(Text, Text)>,
}

fn ser_pairs<K: Serialize, V: Serialize, S: Serializer>(pairs: &[(K, V)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(pairs.iter().map(|(k, v)| (k, v)))
}

fn var(d: &mut Diagnostics, n: &Node) -> Option<Var> {
    let mut f = Fields::open(d, n, "variable")?;
    let key = f.req(d, "key", text);
    let secret = f.opt(d, "secret", boolean).is_some_and(|b| b.value);
    let value = f.opt(d, "value", text_or_empty).or_else(|| {
        // `value:` with nothing after it is an empty value, not a missing one.
        f.key_span("value").map(|s| Sp::new(String::new(), s))
    });
    if value.is_none()
        && !secret
        && let Some(k) = &key
    {
        d.error(k.span, "missing-field", format!("variable `{}` has no `value`", k.value));
        d.hint("write `value: \"\"` for an empty value, or mark it `secret: true` and set it with `offshoot app secret set`");
    }
    if let Some(k) = &key
        && !is_env_name(&k.value)
    {
        d.warn(
            k.span,
            "invalid-name",
            format!("`{}` is not a portable variable name (letters, digits and `_`, not starting with a digit)", k.value),
        );
    }
    f.finish(d);
    let value =
        value.map(|v| Sp::new(if secret { VarValue::Secret(SecretString::new(v.value)) } else { VarValue::Plain(v.value) }, v.span));
    Some(Var { key: key?, value, secret })
}

/// A portable variable name: letters, digits and `_`, not starting with a digit.
pub fn is_env_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty() && !b[0].is_ascii_digit() && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

fn vars(d: &mut Diagnostics, n: &Node) -> Vec<Var> {
    list(d, n, var)
}

impl EnvVarsFile {
    pub fn read(d: &mut Diagnostics, n: &Node) -> Option<EnvVarsFile> {
        if let Value::Seq(_) = n.value {
            // An early form: a bare list of variables.
            d.warn(n.span, "bare-list", "a bare list of variables is read as `defaults`");
            d.hint("put the list under `defaults:`");
            return Some(EnvVarsFile { defaults: vars(d, n), ..EnvVarsFile::default() });
        }
        let mut f = Fields::open(d, n, "environment variables file")?;
        let defaults = f.get("defaults").map(|n| vars(d, n)).unwrap_or_default();
        let services = match f.get("services") {
            None => Vec::new(),
            Some(s) => match s.as_map() {
                Some(m) => m.iter().filter_map(|(k, v)| Some((text(d, k)?, vars(d, v)))).collect(),
                None => {
                    d.error(
                        s.span,
                        "type",
                        format!("expected `services` to map service names to lists of variables, found {}", s.kind_name()),
                    );
                    Vec::new()
                }
            },
        };
        let envs = f.get("envs").map(|n| vars(d, n)).unwrap_or_default();
        let mapping = f.get("mapping").map(|n| mapping(d, n)).unwrap_or_default();
        // Written by Release's GitOps for keys it must not overwrite; no effect here.
        f.accept(&["gitops"]);
        f.finish(d);
        Some(EnvVarsFile { defaults, services, envs, mapping })
    }

    pub fn service_vars(&self, service: &str) -> &[Var] {
        self.services.iter().find(|(k, _)| k.as_str() == service).map_or(&[], |(_, v)| v)
    }
}

fn mapping(d: &mut Diagnostics, n: &Node) -> Vec<(Text, Text)> {
    let pair = |d: &mut Diagnostics, k: &Node, v: &Node| Some((text(d, k)?, text_or_empty(d, v)?));
    match &n.value {
        Value::Map(m) => m.iter().filter_map(|(k, v)| pair(d, k, v)).collect(),
        Value::Seq(items) => {
            d.warn(n.span, "mapping-list", "`mapping` should be a mapping; a list of single-key maps is read as one");
            items.iter().filter_map(|i| i.as_map()).flatten().filter_map(|(k, v)| pair(d, k, v)).collect()
        }
        _ => {
            d.error(n.span, "type", format!("expected `mapping` to be a mapping, found {}", n.kind_name()));
            Vec::new()
        }
    }
}

/// Where `.release.yaml` says the template is.
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum TemplateRef {
    Path(Text),
    /// An early form with the template written inline.
    Inline(Box<Template>),
}

/// `.release.yaml` at a repository's root.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ReleaseYaml {
    pub application_template: Option<TemplateRef>,
    pub environment_variables: Option<Text>,
    /// The docker-compose file to generate the template from.
    pub compose: Option<Text>,
    /// Kubernetes manifests as the app definition.
    pub manifests: Vec<Text>,
}

fn repo_path(d: &mut Diagnostics, n: &Node) -> Option<Text> {
    let t = text(d, n)?;
    match normalize_repo_path(&t.value) {
        Ok(p) => Some(Sp::new(p, t.span)),
        Err(msg) => {
            d.error(t.span, "invalid-path", msg);
            None
        }
    }
}

/// A path inside a repository: relative, `/`-separated, not leaving the repository.
pub fn normalize_repo_path(p: &str) -> Result<String, String> {
    if p.starts_with('/') || p.contains('\\') || p.contains('\0') {
        return Err(format!("`{p}` must be a relative path inside the repository"));
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(format!("`{p}` leaves the repository"));
                }
            }
            s => parts.push(s),
        }
    }
    if parts.is_empty() {
        return Err(format!("`{p}` does not name a file"));
    }
    Ok(parts.join("/"))
}

impl ReleaseYaml {
    pub fn read(d: &mut Diagnostics, n: &Node) -> Option<ReleaseYaml> {
        let mut f = Fields::open(d, n, ".release.yaml")?;
        let application_template = f.get("application_template").and_then(|n| {
            if n.as_map().is_some() {
                d.warn(n.span, "inline-template", "an inline template under `application_template` is an early, undocumented form");
                d.hint("move the template to `.release/application_template.yaml` and put that path here");
                Template::read(d, n).map(|t| TemplateRef::Inline(Box::new(t)))
            } else {
                repo_path(d, n).map(TemplateRef::Path)
            }
        });
        let mut r = ReleaseYaml {
            application_template,
            environment_variables: f.opt(d, "environment_variables", repo_path),
            compose: f.opt(d, "compose", repo_path),
            manifests: f.list(d, "manifests", repo_path),
        };
        for (old, new) in [("default_app_template", "application_template"), ("default_env_variables", "environment_variables")] {
            if let Some(n) = f.get(old) {
                d.warn(n.span, "renamed-key", format!("`{old}` was renamed `{new}`; read as `{new}`"));
                d.hint(format!("rename the key to `{new}`"));
                let p = repo_path(d, n);
                if new == "application_template" && r.application_template.is_none() {
                    r.application_template = p.map(TemplateRef::Path);
                } else if r.environment_variables.is_none() {
                    r.environment_variables = p;
                }
            }
        }
        // Raw Kubernetes manifests are not deployed: said where they are listed, not silently.
        if let Some(first) = r.manifests.first() {
            d.warn(
                first.span,
                "ignored-key",
                "`manifests` are ignored: Offshoot deploys Application Templates, not raw Kubernetes manifests",
            );
            d.hint("describe the services in `.release/application_template.yaml` (`offshoot template generate` starts one from a compose file)");
        }
        f.finish(d);
        Some(r)
    }
}
