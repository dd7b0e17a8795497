//! App imports (`app_imports`): which applications an environment brings along, on which
//! branch, and the checks made before anything starts (unknown applications, cycles, colliding
//! service names, names that point nowhere). Reads applications from the store and asks
//! [`Repos`] which branches exist; decides nothing else.

use offshoot_store::{App, AppVersion, Environment, Store, StoreError};
use offshoot_template::diag::Diagnostic;
use offshoot_template::document::{self, Kind};
use offshoot_template::ledger::Runtime;
use offshoot_template::model::{OrderItem, Task, Template};
use std::collections::BTreeMap;
use std::future::Future;

/// What an imported application's environment records about its import (JSON in the store).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImportInfo {
    /// Why this branch: `explicit branch`, `same-name branch`, `fell back to <branch>`.
    #[serde(default)]
    pub reason: String,
    /// Services of the imported application left out (`exclude_services`).
    #[serde(default)]
    pub exclude: Vec<String>,
    /// On the importing environment: what the user should know (imports are not recursive).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl ImportInfo {
    /// What an environment records (empty when it records nothing or what it holds is not a
    /// record of this shape).
    pub fn of(env: &Environment) -> Self {
        env.import_info.as_deref().and_then(|i| serde_json::from_str(i).ok()).unwrap_or_default()
    }
}

/// One import, checked, with its branch chosen.
#[derive(Clone, Debug)]
pub struct Planned {
    pub app: App,
    pub version: AppVersion,
    pub branch: String,
    pub info: ImportInfo,
    pub environment_template: Option<String>,
}

/// The imports of an environment, in order, and what the user should know about them.
#[derive(Clone, Debug)]
pub struct ImportPlan {
    pub imports: Vec<Planned>,
    pub warnings: Vec<String>,
}

/// Why a repository could not say which branches it has.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct RepoError(pub String);

/// The repositories of applications, as far as imports need them.
pub trait Repos: Send + Sync {
    /// Whether `branch` exists in `repo` (fetched as needed).
    fn has_branch(&self, repo: &str, branch: &str) -> impl Future<Output = Result<bool, RepoError>> + Send;
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("application `{0}` imports itself")]
    SelfImport(String),
    #[error("import `{name}`: there is no application `{name}`")]
    UnknownApp { name: String, known: Vec<String> },
    #[error("import `{0}`: the application has no template")]
    NoTemplate(String),
    #[error("the template of imported application `{name}` is invalid")]
    InvalidTemplate { name: String, diagnostics: Vec<Diagnostic> },
    #[error("import `{name}`: {why}")]
    Unsupported { name: String, why: String },
    #[error("import cycle: `{importer}` imports `{name}`, which imports `{importer}`")]
    Cycle { importer: String, name: String },
    #[error("import `{name}`: `exclude_services` names `{service}`, which is not a service of `{name}`")]
    UnknownExclude { name: String, service: String },
    #[error(
        "service `{service}` is defined by both `{first}` and `{second}`; the services of an application and its imports share one namespace, so their names must be unique"
    )]
    Collision { service: String, first: String, second: String },
    #[error("import `{name}`: cannot fetch `{repo}`: {source}")]
    Fetch {
        name: String,
        repo: String,
        #[source]
        source: RepoError,
    },
    #[error("import `{name}`: branch `{branch}` does not exist in `{repo}`")]
    NoBranch { name: String, branch: String, repo: String },
    #[error("the {what} names no service of `{importer}` or of its imports")]
    Unnamed { what: String, importer: String },
    #[error("cannot read the applications")]
    Store(#[from] StoreError),
}

impl ImportError {
    /// What the user can do about it, when there is something to say.
    pub fn hint(&self) -> Option<String> {
        match self {
            ImportError::UnknownApp { known, .. } => {
                Some(format!("create it first (`offshoot app create --repo ...`); applications: {}", known.join(", ")))
            }
            ImportError::Collision { second, .. } => {
                Some(format!("leave one out with `exclude_services` on the import of `{second}`, or rename it"))
            }
            _ => None,
        }
    }
}

/// Features the engines cannot run, refused at creation before anything starts.
pub fn unsupported(root: &offshoot_template::yaml::Node, runtime: Runtime) -> Option<String> {
    let refused: Vec<String> = offshoot_template::ledger::scan(root, runtime)
        .into_iter()
        .filter(|f| f.support == "refused")
        .map(|f| format!("`{}` (line {}): {}", f.path, f.line, f.why))
        .collect();
    (!refused.is_empty()).then(|| format!("the template uses what {} refuses: {}", runtime.as_str(), refused.join("; ")))
}
/// Whether an import with these `pull_request_labels` is brought along for a pull request with
/// `labels` (`None`: not a pull request's environment, which brings every import).
pub fn wanted(pull_request_labels: &[String], labels: Option<&[String]>) -> bool {
    match labels {
        Some(l) if !pull_request_labels.is_empty() => pull_request_labels.iter().any(|p| l.contains(p)),
        _ => true,
    }
}

fn services_of(t: &Template) -> Vec<String> {
    t.services.iter().map(|s| s.name.value.clone()).collect()
}

/// What an environment is asked for.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// The importing application and its template.
    pub importer: &'a str,
    pub template: &'a Template,
    pub branch: &'a str,
    pub environment_template: Option<&'a str>,
    /// A pull request's labels, for a pull request's environment.
    pub labels: Option<&'a [String]>,
    /// Where the environments run (what it refuses, an import may not use).
    pub runtime: Runtime,
}

/// Checks the imports of `req.importer` for an environment of `req.branch` and chooses each
/// imported application's branch: its explicit `branch`, else a branch of the same name, else
/// the application's `tracking_branch`, else its default branch. For a pull request's
/// environment, an import with `pull_request_labels` comes only when the pull request carries
/// one of them.
pub async fn plan(store: &Store, repos: &impl Repos, req: Request<'_>) -> Result<ImportPlan, ImportError> {
    let importer = req.importer;
    let mut imports = Vec::new();
    let mut warnings = Vec::new();
    // Service name → the application that defines it (one namespace: names must be unique).
    let mut owners: BTreeMap<String, String> = services_of(req.template).into_iter().map(|s| (s, importer.to_owned())).collect();
    for import in &req.template.app_imports {
        let name = import.name.value.as_str();
        let pr_labels: Vec<String> = import.pull_request_labels.iter().map(|l| l.value.clone()).collect();
        if !wanted(&pr_labels, req.labels) {
            warnings.push(format!(
                "`{name}` is not imported: the pull request carries none of its `pull_request_labels` ({})",
                pr_labels.join(", ")
            ));
            continue;
        }
        if name == importer {
            return Err(ImportError::SelfImport(importer.to_owned()));
        }
        let Some(app) = store.app(name).await? else {
            let known = store.apps().await?.into_iter().map(|a| a.name.into_string()).collect();
            return Err(ImportError::UnknownApp { name: name.to_owned(), known });
        };
        let version = store.latest_version(name).await?.ok_or_else(|| ImportError::NoTemplate(name.to_owned()))?;
        let it = imported_template(name, &version, req.runtime)?;
        // Imports are not recursive (Release's rule); an import back to the importer is a cycle.
        let nested: Vec<&str> = it.app_imports.iter().map(|a| a.name.as_str()).collect();
        if nested.contains(&importer) {
            return Err(ImportError::Cycle { importer: importer.to_owned(), name: name.to_owned() });
        }
        if !nested.is_empty() {
            warnings.push(format!(
                "`{name}` imports {}: imports are not recursive, so those are not brought along",
                nested.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
            ));
        }
        let all = services_of(&it);
        let exclude: Vec<String> = import.exclude_services.iter().map(|e| e.name.value.clone()).collect();
        if let Some(unknown) = exclude.iter().find(|e| !all.contains(e)) {
            return Err(ImportError::UnknownExclude { name: name.to_owned(), service: unknown.clone() });
        }
        for s in all.into_iter().filter(|s| !exclude.contains(s)) {
            if let Some(other) = owners.get(&s) {
                return Err(ImportError::Collision { service: s, first: other.clone(), second: name.to_owned() });
            }
            owners.insert(s, name.to_owned());
        }
        let (branch, reason) = choose_branch(repos, &app, &it, import.branch.as_ref().map(|b| b.value.as_str()), req.branch).await?;
        // The importer's environment template when the import defines one of that name, else
        // its `ephemeral` one.
        let environment_template = req
            .environment_template
            .filter(|n| it.environment_templates.iter().any(|e| e.name.as_str() == *n))
            .or_else(|| it.environment_templates.iter().any(|e| e.name.as_str() == "ephemeral").then_some("ephemeral"))
            .map(str::to_owned);
        imports.push(Planned { app, version, branch, info: ImportInfo { reason, exclude, warnings: vec![] }, environment_template });
    }
    check_names(req.template, importer, &owners)?;
    Ok(ImportPlan { imports, warnings })
}

/// An imported application's template, checked.
fn imported_template(name: &str, version: &AppVersion, runtime: Runtime) -> Result<Template, ImportError> {
    let doc = document::check("application_template.yaml", &version.template, Some(Kind::Template));
    let diagnostics: Vec<Diagnostic> = doc.diagnostics.iter().filter(|d| d.is_error()).cloned().collect();
    let template = doc.template.filter(|_| diagnostics.is_empty());
    let it = template.ok_or_else(|| ImportError::InvalidTemplate { name: name.to_owned(), diagnostics })?;
    if let Some(why) = doc.root.as_ref().and_then(|root| unsupported(root, runtime)) {
        return Err(ImportError::Unsupported { name: name.to_owned(), why });
    }
    Ok(it)
}

/// The imported application's branch and why it was chosen.
async fn choose_branch(
    repos: &impl Repos,
    app: &App,
    it: &Template,
    explicit: Option<&str>,
    wanted: &str,
) -> Result<(String, String), ImportError> {
    let has = |b: &str| {
        let b = b.to_owned();
        async move {
            repos.has_branch(&app.repo, &b).await.map_err(|source| ImportError::Fetch {
                name: app.name.to_string(),
                repo: app.repo.clone(),
                source,
            })
        }
    };
    if let Some(b) = explicit {
        if !has(b).await? {
            return Err(ImportError::NoBranch { name: app.name.to_string(), branch: b.to_owned(), repo: app.repo.clone() });
        }
        return Ok((b.to_owned(), "explicit branch".to_owned()));
    }
    if has(wanted).await? {
        return Ok((wanted.to_owned(), "same-name branch".to_owned()));
    }
    if let Some(b) = it.tracking_branch.as_ref().map(|b| b.value.clone())
        && has(&b).await?
    {
        return Ok((b.clone(), format!("fell back to its tracking branch {b}")));
    }
    Ok((app.default_branch.clone(), format!("fell back to {}", app.default_branch)))
}

/// What the importer names (hostnames, rules, workflow tasks) must exist in it or in an import
/// (after `exclude_services`).
fn check_names(t: &Template, importer: &str, owners: &BTreeMap<String, String>) -> Result<(), ImportError> {
    let mut named: Vec<(String, &str)> = Vec::new();
    for h in &t.hostnames {
        named.push((format!("hostnames entry for `{}`", h.service.value), h.service.as_str()));
    }
    for r in &t.rules {
        named.push((format!("rule for `{}`", r.service.value), r.service.as_str()));
    }
    for w in &t.workflows {
        let tasks = w.parallelize.iter().flat_map(|s| s.tasks.iter()).chain(w.order_from.iter().filter_map(|o| match o {
            OrderItem::Task(t) => Some(t),
            _ => None,
        }));
        for task in tasks {
            if let Task::Service(svc) = &task.value {
                named.push((format!("task `services.{svc}` of workflow `{}`", w.name.value), svc.as_str()));
            }
        }
    }
    match named.into_iter().find(|(_, svc)| !owners.contains_key(*svc)) {
        Some((what, _)) => Err(ImportError::Unnamed { what, importer: importer.to_owned() }),
        None => Ok(()),
    }
}
