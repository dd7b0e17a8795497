//! One file in, one typed document and all its diagnostics out.

use crate::diag::{Diagnostic, Diagnostics};
use crate::envvars::{EnvVarsFile, ReleaseYaml};
use crate::model::Template;
use crate::validate;
use crate::yaml::{self, Node, Value};
use serde::Serialize;

/// What a file is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Template,
    EnvVars,
    ReleaseYaml,
    Compose,
    /// Not a Release file (a Kubernetes or kind manifest kept beside them).
    Foreign,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Template => "template",
            Kind::EnvVars => "env-vars",
            Kind::ReleaseYaml => "release-yaml",
            Kind::Compose => "compose",
            Kind::Foreign => "foreign",
        }
    }
}

const RELEASE_YAML_KEYS: &[&str] =
    &["application_template", "environment_variables", "compose", "manifests", "default_app_template", "default_env_variables"];

/// Tells the kind of a file from its shape.
pub fn detect_kind(root: &Node) -> Kind {
    let Some(map) = root.as_map() else {
        return if root.as_seq().is_some() { Kind::EnvVars } else { Kind::Template };
    };
    let has = |k: &str| root.get(k).is_some();
    if has("apiVersion") && has("kind") {
        return Kind::Foreign;
    }
    if map.iter().all(|(k, _)| k.as_text().is_some_and(|k| RELEASE_YAML_KEYS.contains(&k))) && !map.is_empty() {
        return Kind::ReleaseYaml;
    }
    if has("defaults") || has("mapping") || has("envs") {
        return Kind::EnvVars;
    }
    if let Some(services) = root.get("services")
        && let Some(entries) = services.as_map()
    {
        // A mapping of services: lists of variables, or compose service definitions.
        let compose = entries.iter().any(|(_, v)| v.as_map().is_some());
        return if compose || has("version") || has("volumes") || has("networks") { Kind::Compose } else { Kind::EnvVars };
    }
    Kind::Template
}

/// A checked file: its kind, its model if it could be read, and every diagnostic.
#[derive(Debug)]
pub struct Document {
    pub kind: Kind,
    pub root: Option<Node>,
    pub template: Option<Template>,
    pub env_vars: Option<EnvVarsFile>,
    pub release_yaml: Option<ReleaseYaml>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Document {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Parses and checks one file. `kind` forces the kind; otherwise it is detected.
pub fn check(file: &str, src: &str, kind: Option<Kind>) -> Document {
    let mut d = Diagnostics::new(file);
    let root = yaml::parse(src, &mut d);
    let kind = kind.unwrap_or_else(|| root.as_ref().map_or(Kind::Template, detect_kind));
    let mut doc = Document { kind, root: None, template: None, env_vars: None, release_yaml: None, diagnostics: Vec::new() };
    if let Some(root) = &root {
        match kind {
            Kind::Template => {
                if matches!(root.value, Value::Null) {
                    d.warn(root.span, "empty-file", "the template is empty");
                }
                doc.template = Template::read(&mut d, root);
                if let Some(t) = &doc.template {
                    validate::check_template(t, &mut d);
                }
            }
            Kind::EnvVars => {
                doc.env_vars = EnvVarsFile::read(&mut d, root);
                if let Some(v) = &doc.env_vars {
                    validate::check_env_vars(v, None, &mut d);
                }
            }
            Kind::ReleaseYaml => {
                doc.release_yaml = ReleaseYaml::read(&mut d, root);
                if let Some(crate::envvars::TemplateRef::Inline(t)) =
                    doc.release_yaml.as_ref().and_then(|r| r.application_template.as_ref())
                {
                    validate::check_template(t, &mut d);
                }
            }
            Kind::Compose => {
                // Checking a compose file is generating from it; the result is not needed here.
                crate::compose::generate_from_node(root, &crate::compose::Options::default(), &mut d);
            }
            Kind::Foreign => {
                d.warn(
                    root.span,
                    "not-release",
                    "this is a Kubernetes-style manifest, not a Release configuration file; it is not checked",
                );
            }
        }
    }
    doc.root = root;
    doc.diagnostics = d.into_sorted();
    doc
}
