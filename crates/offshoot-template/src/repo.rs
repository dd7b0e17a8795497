//! Finding an application's configuration in a repository: `.release.yaml`, the `.release/`
//! directory, or a docker-compose file. File access is a trait so the same logic reads a
//! working directory (CLI) or a commit's tree (server).

use crate::diag::{Diagnostic, Diagnostics};
use crate::document::{self, Document, Kind};
use crate::envvars::{TemplateRef, normalize_repo_path};
use crate::span::Span;

/// Read access to a repository's files by `/`-separated relative path.
pub trait RepoFiles {
    /// The file's text, or `None` if there is no such file.
    fn read(&self, path: &str) -> Option<String>;
}

pub const COMPOSE_NAMES: &[&str] = &["compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml"];
const TEMPLATE_NAMES: &[&str] = &[
    ".release/application_template.yaml",
    ".release/application_template.yml",
    ".release/application-template.yaml",
    ".release/application-template.yml",
];
const ENV_NAMES: &[&str] = &[
    ".release/environment_variables.yaml",
    ".release/environment_variables.yml",
    ".release/environment-variables.yaml",
    ".release/environment-variables.yml",
];

/// How the configuration was found.
#[derive(Debug)]
pub enum Source {
    /// Release files (GitOps): the template and, if any, the variables file.
    Release { template: Option<Box<(String, Document)>>, env_vars: Option<Box<(String, Document)>> },
    /// A docker-compose file to generate the template from.
    Compose { path: String },
}

#[derive(Debug)]
pub struct Discovered {
    /// `.release.yaml` itself, when present.
    pub release_yaml: Option<(String, Document)>,
    pub source: Option<Source>,
    /// Problems that belong to no single file, or to cross-file references.
    pub diagnostics: Vec<Diagnostic>,
}

fn first_existing(files: &dyn RepoFiles, names: &[&str]) -> Option<(String, String)> {
    names.iter().find_map(|n| files.read(n).map(|c| ((*n).to_owned(), c)))
}

/// Finds and checks an application's configuration files.
pub fn discover(files: &dyn RepoFiles, compose_override: Option<&str>) -> Discovered {
    let mut d = Diagnostics::new(".release.yaml");
    let mut out = Discovered { release_yaml: None, source: None, diagnostics: Vec::new() };
    let mut template_path = None;
    let mut env_path = None;
    let mut compose_path = compose_override.map(str::to_owned);
    let mut inline = None;
    if let Some(src) = files.read(".release.yaml") {
        let doc = document::check(".release.yaml", &src, Some(Kind::ReleaseYaml));
        if let Some(r) = &doc.release_yaml {
            match &r.application_template {
                Some(TemplateRef::Path(p)) => template_path = Some(p.clone()),
                Some(TemplateRef::Inline(t)) => inline = Some((**t).clone()),
                None => {}
            }
            env_path = r.environment_variables.clone();
            if compose_path.is_none() {
                compose_path = r.compose.as_ref().map(|c| c.value.clone());
            }
        }
        out.release_yaml = Some((".release.yaml".to_owned(), doc));
    }
    let load = |path: Option<crate::span::Text>, defaults: &[&str], kind: Kind, d: &mut Diagnostics| -> Option<(String, Document)> {
        let (path, src) = match path {
            Some(p) => match files.read(&p.value) {
                Some(src) => (p.value.clone(), src),
                None => {
                    d.error(p.span, "missing-file", format!("`{}` does not exist in the repository", p.value));
                    return None;
                }
            },
            None => first_existing(files, defaults)?,
        };
        let doc = document::check(&path, &src, Some(kind));
        Some((path, doc))
    };
    let template = load(template_path, TEMPLATE_NAMES, Kind::Template, &mut d).or_else(|| {
        // The early inline form: the template lives in `.release.yaml` itself (already checked).
        inline.map(|t| {
            let doc = Document {
                kind: Kind::Template,
                root: None,
                template: Some(t),
                env_vars: None,
                release_yaml: None,
                diagnostics: Vec::new(),
            };
            (".release.yaml".to_owned(), doc)
        })
    });
    let env_vars = load(env_path, ENV_NAMES, Kind::EnvVars, &mut d);
    if template.is_some() {
        if let (Some((_, t)), Some((p, e))) = (&template, &env_vars) {
            // Cross-file checks are reported against the variables file.
            let mut cross = Diagnostics::new(p);
            if let (Some(tm), Some(ev)) = (&t.template, &e.env_vars) {
                crate::validate::check_env_vars(ev, Some(tm), &mut cross);
            }
            let known: Vec<_> = e.diagnostics.clone();
            out.diagnostics.extend(cross.into_sorted().into_iter().filter(|c| !known.contains(c)));
        }
        out.source = Some(Source::Release { template: template.map(Box::new), env_vars: env_vars.map(Box::new) });
    } else if let Some(p) = compose_path {
        match normalize_repo_path(&p) {
            Ok(p) if files.read(&p).is_some() => out.source = Some(Source::Compose { path: p }),
            Ok(p) => d.error(
                Span { line: 1, column: 1, ..Span::default() },
                "missing-file",
                format!("compose file `{p}` does not exist in the repository"),
            ),
            Err(msg) => d.error(Span { line: 1, column: 1, ..Span::default() }, "invalid-path", msg),
        }
    } else if let Some((p, _)) = first_existing(files, COMPOSE_NAMES) {
        out.source = Some(Source::Compose { path: p });
    }
    out.diagnostics.extend(d.into_sorted());
    out
}
