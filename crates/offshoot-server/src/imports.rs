//! App imports (`app_imports`): which apps an environment brings along, on which branch, and
//! the checks that run before anything starts (unknown apps, cycles, colliding service names).

use crate::error::ApiError;
use crate::state::Shared;
use axum::http::StatusCode;
use offshoot_store::{App, AppVersion};
use offshoot_template::document::{self, Kind};
use offshoot_template::model::Template;
use std::collections::BTreeMap;

/// What an imported app's environment records about its import.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct ImportInfo {
    /// Why this branch: `explicit branch`, `same-name branch`, `fell back to <branch>`.
    #[serde(default)]
    pub(crate) reason: String,
    /// Services of the imported app left out (`exclude_services`).
    #[serde(default)]
    pub(crate) exclude: Vec<String>,
    /// On the importing environment: what the user should know (imports are not recursive).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) warnings: Vec<String>,
}

impl ImportInfo {
    /// What an environment records (empty when it records nothing).
    pub(crate) fn of(env: &offshoot_store::Environment) -> Self {
        env.import_info.as_deref().and_then(|i| serde_json::from_str(i).ok()).unwrap_or_default()
    }
}

/// One import, checked and with its branch chosen.
pub(crate) struct Planned {
    pub(crate) app: App,
    pub(crate) version: AppVersion,
    pub(crate) branch: String,
    pub(crate) info: ImportInfo,
    pub(crate) environment_template: Option<String>,
}

fn refuse(message: String) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-import", message)
}

fn services_of(t: &Template) -> Vec<String> {
    t.services.iter().map(|s| s.name.value.clone()).collect()
}

/// Whether an import with these `pull_request_labels` is brought along for a pull request with
/// `labels` (`None`: not a pull request's environment, which brings every import).
pub(crate) fn wanted(pull_request_labels: &[String], labels: Option<&[String]>) -> bool {
    match labels {
        Some(l) if !pull_request_labels.is_empty() => pull_request_labels.iter().any(|p| l.contains(p)),
        _ => true,
    }
}

/// Checks the imports of `importer` (its template `t`) for an environment of `branch`, and
/// chooses each imported app's branch: its explicit `branch`, else a branch of the same name,
/// else the app's `tracking_branch`, else its default branch. For a pull request's environment
/// (`labels`), an import with `pull_request_labels` comes only when the pull request carries one
/// of them. Returns the imports in order and the warnings.
pub(crate) async fn plan(
    ctx: &Shared,
    importer: &str,
    t: &Template,
    branch: &str,
    environment_template: Option<&str>,
    labels: Option<&[String]>,
) -> Result<(Vec<Planned>, Vec<String>), ApiError> {
    let mut out = Vec::new();
    let mut warnings = Vec::new();
    // Service name → the app that defines it (one namespace: names must be unique).
    let mut owners: BTreeMap<String, String> = services_of(t).into_iter().map(|s| (s, importer.to_owned())).collect();
    for import in &t.app_imports {
        let name = import.name.value.as_str();
        let pr_labels: Vec<String> = import.pull_request_labels.iter().map(|l| l.value.clone()).collect();
        if !wanted(&pr_labels, labels) {
            warnings.push(format!(
                "`{name}` is not imported: the pull request carries none of its `pull_request_labels` ({})",
                pr_labels.join(", ")
            ));
            continue;
        }
        if name == importer {
            return Err(refuse(format!("application `{importer}` imports itself")));
        }
        let Some(app) = ctx.store.app(name).await? else {
            let known: Vec<String> = ctx.store.apps().await?.into_iter().map(|a| a.name).collect();
            return Err(refuse(format!("import `{name}`: there is no application `{name}`"))
                .hint(format!("create it first (`offshoot app create --repo ...`); applications: {}", known.join(", "))));
        };
        let version =
            ctx.store.latest_version(name).await?.ok_or_else(|| refuse(format!("import `{name}`: the application has no template")))?;
        let doc = document::check("application_template.yaml", &version.template, Some(Kind::Template));
        let errors: Vec<_> = doc.diagnostics.iter().filter(|d| d.is_error()).cloned().collect();
        if !errors.is_empty() {
            return Err(ApiError::invalid(format!("the template of imported application `{name}` is invalid"), &errors));
        }
        let Some(it) = doc.template else { return Err(refuse(format!("import `{name}`: the template does not parse"))) };
        if let Some(why) = unsupported(&it) {
            return Err(refuse(format!("import `{name}`: {why}")));
        }
        // Imports are not recursive (Release's rule); an import back to the importer is a cycle.
        let nested: Vec<&str> = it.app_imports.iter().map(|a| a.name.as_str()).collect();
        if nested.contains(&importer) {
            return Err(refuse(format!("import cycle: `{importer}` imports `{name}`, which imports `{importer}`")));
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
            return Err(refuse(format!("import `{name}`: `exclude_services` names `{unknown}`, which is not a service of `{name}`")));
        }
        for s in all.into_iter().filter(|s| !exclude.contains(s)) {
            if let Some(other) = owners.get(&s) {
                return Err(refuse(format!(
                    "service `{s}` is defined by both `{other}` and `{name}`; the services of an application and its imports share one namespace, so their names must be unique"
                ))
                .hint(format!("leave one out with `exclude_services` on the import of `{name}`, or rename it")));
            }
            owners.insert(s, name.to_owned());
        }
        // The branch.
        let mirror = ctx.sync_mirror(&app.repo).await.map_err(|e| refuse(format!("import `{name}`: cannot fetch `{}`: {e}", app.repo)))?;
        let has = |b: String| {
            let m = mirror.clone();
            async move { tokio::task::spawn_blocking(move || m.resolve(&b).ok().flatten().is_some()).await.unwrap_or(false) }
        };
        let (chosen, reason) = match &import.branch {
            Some(b) => {
                if !has(b.value.clone()).await {
                    return Err(refuse(format!("import `{name}`: branch `{}` does not exist in `{}`", b.value, app.repo)));
                }
                (b.value.clone(), "explicit branch".to_owned())
            }
            None if has(branch.to_owned()).await => (branch.to_owned(), "same-name branch".to_owned()),
            None => match it.tracking_branch.as_ref().map(|b| b.value.clone()) {
                Some(b) if has(b.clone()).await => (b.clone(), format!("fell back to its tracking branch {b}")),
                _ => (app.default_branch.clone(), format!("fell back to {}", app.default_branch)),
            },
        };
        // The importer's environment template when the import defines one of that name, else
        // its `ephemeral` one.
        let env_template = environment_template
            .filter(|n| it.environment_templates.iter().any(|e| e.name.as_str() == *n))
            .or_else(|| it.environment_templates.iter().any(|e| e.name.as_str() == "ephemeral").then_some("ephemeral"))
            .map(str::to_owned);
        out.push(Planned {
            app,
            version,
            branch: chosen,
            info: ImportInfo { reason, exclude, warnings: vec![] },
            environment_template: env_template,
        });
    }
    // What the importer names must exist in it or in an import (after `exclude_services`).
    let mut named: Vec<(String, &str)> = Vec::new();
    for h in &t.hostnames {
        named.push((format!("hostnames entry for `{}`", h.service.value), h.service.as_str()));
    }
    for r in &t.rules {
        named.push((format!("rule for `{}`", r.service.value), r.service.as_str()));
    }
    for w in &t.workflows {
        let tasks = w.parallelize.iter().flat_map(|s| s.tasks.iter()).chain(w.order_from.iter().filter_map(|o| match o {
            offshoot_template::model::OrderItem::Task(t) => Some(t),
            _ => None,
        }));
        for task in tasks {
            if let offshoot_template::model::Task::Service(svc) = &task.value {
                named.push((format!("task `services.{svc}` of workflow `{}`", w.name.value), svc.as_str()));
            }
        }
    }
    for (what, svc) in named {
        if !owners.contains_key(svc) {
            return Err(refuse(format!("the {what} names no service of `{importer}` or of its imports")));
        }
    }
    Ok((out, warnings))
}

/// Features this runtime cannot run are refused at creation, before anything starts.
pub(crate) fn unsupported(t: &offshoot_template::model::Template) -> Option<String> {
    if !t.charts.is_empty() {
        return Some("this template uses Helm `charts`, which the Docker runtime cannot run".into());
    }
    if !t.infrastructure.is_empty() {
        return Some("this template uses Terraform `infrastructure`, which the Docker runtime cannot run".into());
    }
    None
}
