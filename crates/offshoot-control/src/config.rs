//! An application's configuration as a repository holds it: Release's files (`.release.yaml`,
//! `.release/`) when present, else a template generated from its docker-compose file; checked,
//! every diagnostic kept. Blocking (reads the mirror); call it off the async threads.

use crate::error::ControlError;
use offshoot_git::{CommitFiles, Mirror};
use offshoot_template::document::{self, Kind};
use offshoot_template::repo::{self, RepoFiles as _, Source};

/// A template and its Environment Variables file, as text.
pub type Config = (String, String);

/// Release's configuration files at a commit, checked; `None` when the repository has no
/// `.release.yaml` or `.release/` files (GitOps does not apply to it).
pub fn release_config(mirror: &Mirror, commit: &str) -> Result<Option<Config>, ControlError> {
    let files = CommitFiles { mirror, commit: commit.to_owned() };
    let found = repo::discover(&files, None);
    let errors: Vec<_> = found.diagnostics.iter().filter(|d| d.is_error()).cloned().collect();
    if !errors.is_empty() {
        return Err(ControlError::Invalid { message: "the repository's .release.yaml is invalid".into(), diagnostics: errors });
    }
    match found.source {
        Some(Source::Release { template: Some(t), env_vars }) => {
            let template = files.read(&t.0).unwrap_or_default();
            let vname = env_vars.as_ref().map_or_else(|| "environment_variables.yaml".to_owned(), |e| e.0.clone());
            let env_vars = env_vars.and_then(|e| files.read(&e.0)).unwrap_or_else(|| "defaults: []\n".to_owned());
            check_named((&t.0, &template), (&vname, &env_vars))?;
            Ok(Some((template, env_vars)))
        }
        Some(Source::Release { template: None, .. }) => {
            let manifests =
                found.release_yaml.as_ref().is_some_and(|(_, d)| d.release_yaml.as_ref().is_some_and(|r| !r.manifests.is_empty()));
            Err(ControlError::bad_input(if manifests {
                "the repository's .release.yaml describes the application with raw Kubernetes `manifests`, which Offshoot does not deploy; write `.release/application_template.yaml`"
            } else {
                "the repository's .release.yaml names no application template"
            }))
        }
        _ => Ok(None),
    }
}

/// The file secrets a generated template's services mount, with their values read from the
/// repository: `(name, value)`.
pub type SecretValues = Vec<(String, String)>;

/// The configuration of a commit, checked: Release's files, or a template generated from compose
/// for application `app` (with the values of the file secrets its services mount).
pub fn read_config(mirror: &Mirror, commit: &str, app: &str) -> Result<(Config, SecretValues), ControlError> {
    if let Some(config) = release_config(mirror, commit)? {
        return Ok((config, Vec::new()));
    }
    let files = CommitFiles { mirror, commit: commit.to_owned() };
    match repo::discover(&files, None).source {
        Some(Source::Compose { path }) => {
            let src = files.read(&path).unwrap_or_default();
            let read = |p: &str| files.read(p);
            let kind = |p: &str| {
                use offshoot_template::compose::PathKind;
                if mirror.tree_id(commit, p).ok().flatten().is_some() {
                    Some(PathKind::Folder)
                } else {
                    match mirror.read_file(commit, p) {
                        // Too large is there: the deployment says so with the limit.
                        Ok(Some(_)) | Err(offshoot_git::GitError::TooLarge { .. }) => Some(PathKind::File),
                        _ => None,
                    }
                }
            };
            let opts = offshoot_template::compose::Options {
                app: Some(app.to_owned()),
                read_file: Some(&read),
                path_kind: Some(&kind),
                ..Default::default()
            };
            let (generated, diags) = offshoot_template::compose::generate(&path, &src, &opts);
            match generated.filter(|_| !diags.iter().any(|d| d.is_error())) {
                Some(g) => {
                    let (template, env_vars) = (format!("# generated from {path}\n{}", g.template_yaml()), g.env_vars_yaml());
                    check_files(&template, &env_vars)?;
                    let mut secrets = Vec::new();
                    for s in &g.secret_files {
                        let value = match mirror.read_file(commit, &s.path) {
                            Ok(Some(bytes)) if bytes.len() <= crate::apps::MAX_SECRET => String::from_utf8(bytes).ok(),
                            Ok(Some(_)) => {
                                return Err(ControlError::bad_input(format!(
                                    "secret `{}`: `{}` is larger than a secret may be (64 KiB)",
                                    s.name, s.path
                                )));
                            }
                            _ => None,
                        };
                        let value = value.ok_or_else(|| {
                            ControlError::bad_input(format!("secret `{}`: `{}` cannot be read as text from the repository", s.name, s.path))
                        })?;
                        secrets.push((s.name.clone(), value));
                    }
                    Ok(((template, env_vars), secrets))
                }
                None => Err(ControlError::Invalid { message: format!("cannot generate a template from `{path}`"), diagnostics: diags }),
            }
        }
        _ => Err(ControlError::bad_input("the repository has no .release.yaml, .release/ files or docker-compose file")),
    }
}

/// Checks a template and variables file under their usual names.
pub fn check_files(template: &str, env_vars: &str) -> Result<(), ControlError> {
    check_named(("application_template.yaml", template), ("environment_variables.yaml", env_vars))
}

/// Checks a template and variables file, naming them as given in diagnostics.
pub fn check_named((tname, template): (&str, &str), (vname, env_vars): (&str, &str)) -> Result<(), ControlError> {
    let t = document::check(tname, template, Some(Kind::Template));
    let v = document::check(vname, env_vars, Some(Kind::EnvVars));
    let errors: Vec<_> = t.diagnostics.iter().chain(&v.diagnostics).filter(|d| d.is_error()).cloned().collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ControlError::Invalid { message: "the configuration is invalid".into(), diagnostics: errors })
    }
}
