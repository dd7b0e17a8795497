//! Applications: created from a repository (its Release files, else its compose file), their
//! template versions, secrets and git settings, deleted when no environment is left.

use crate::Control;
use crate::config::{check_files, read_config};
use crate::error::ControlError;
use crate::gate::{Noted, Operation, gate};
use crate::ports::Ports;
use offshoot_api_types::AppUpdate;
use offshoot_store::{App, AppGit, Secret, now_ms};
use offshoot_template::document::{self, Kind};

/// A new application.
#[derive(Clone, Debug, Default)]
pub struct NewApp {
    /// A local directory or a git URL.
    pub repo: String,
    /// Default: the template's `app`, else the repository's name.
    pub name: Option<String>,
    /// The branch its first template is read from (default: the repository's default branch).
    pub branch: Option<String>,
}

/// The latest template version of an application.
#[derive(Clone, Debug)]
pub struct TemplateVersion {
    pub app: String,
    pub version: i64,
    pub template: String,
    pub env_vars: String,
}

/// Whether `name` may name an application (it appears in hostnames and namespaces).
pub fn valid_name(name: &str) -> bool {
    (1..=40).contains(&name.len())
        && name.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && !name.starts_with('-')
}

/// A name from a repository path or URL: its last component, lower case.
pub fn name_from_repo(repo: &str) -> String {
    let last = repo.trim_end_matches('/').rsplit(['/', ':']).next().unwrap_or("app").trim_end_matches(".git");
    let n: String = last.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
    n.trim_matches('-').chars().take(40).collect()
}

/// What the webhook secret's encryption is bound to.
pub fn webhook_secret_context(app: &str) -> String {
    format!("webhook/{app}")
}

pub(crate) const MAX_SECRET: usize = 64 * 1024;

impl<P: Ports> Control<'_, P> {
    /// Creates an application from a repository: fetched, its configuration read and checked
    /// at the branch's head, its refs recorded (polling reports what moves from there).
    pub async fn create_app(&self, req: NewApp) -> Result<App, ControlError> {
        let target = req.name.clone().unwrap_or_else(|| name_from_repo(&req.repo));
        let noted = |a: &App| Noted { target: Some(a.name.to_string()), detail: None };
        gate(self.store, &self.actor, Operation::CreateApp, &target, self.create_app_checked(req), noted).await
    }

    async fn create_app_checked(&self, req: NewApp) -> Result<App, ControlError> {
        // Checked before any connection: a path on the server only for an administrator; no
        // link-local or cloud metadata host.
        let admin = self.actor.role == crate::gate::Role::Admin;
        let repo = match offshoot_git::source::check(&req.repo, admin).map_err(|e| ControlError::bad_input(e.to_string()))? {
            offshoot_git::source::Source::Local(path) => match std::path::Path::new(&path).canonicalize() {
                Ok(p) if p.is_dir() => p.display().to_string(),
                _ => return Err(ControlError::bad_input(format!("`{}` is neither a directory nor a git URL", req.repo))),
            },
            offshoot_git::source::Source::Remote { url, .. } => url,
        };
        let mirror = self.ports.fetch(&repo).await.map_err(|e| ControlError::Fetch { repo: repo.clone(), why: e.0 })?;
        let fallback = req.name.clone().unwrap_or_else(|| name_from_repo(&repo));
        let branch = req.branch.clone();
        let (default_branch, (template, env_vars), secret_files, heads) =
            tokio::task::spawn_blocking(move || -> Result<_, ControlError> {
                let default = mirror.default_branch()?.unwrap_or_else(|| "main".into());
                let branch = branch.unwrap_or_else(|| default.clone());
                let commit = mirror
                    .resolve(&branch)?
                    .ok_or_else(|| ControlError::not_found("branch", &branch, "`git branch -a` in the repository lists them"))?;
                let (config, secrets) = read_config(&mirror, &commit, &fallback)?;
                Ok((default, config, secrets, mirror.heads()?))
            })
            .await??;
        // The name: as given, else the template's `app` (as Release does), else the repository's.
        let from_template = document::check("t", &template, Some(Kind::Template)).template.and_then(|t| t.app).map(|a| a.value);
        let name = req.name.or(from_template).unwrap_or_else(|| name_from_repo(&repo));
        if !valid_name(&name) {
            return Err(ControlError::bad_input(format!("`{name}` is not a valid application name"))
                .with_hint("use 1 to 40 lower-case letters, digits and `-`; choose one with `--name`"));
        }
        if self.store.app(&name).await?.is_some() {
            return Err(ControlError::Conflict {
                code: "conflict",
                message: format!("application `{name}` already exists"),
                hint: Some("choose another with `--name`".into()),
            });
        }
        let app = App { name: name.clone().into(), repo, default_branch, created_at: now_ms() };
        self.store.create_app(&app, &template, &env_vars).await?;
        // Compose's file secrets: their values, from the repository, encrypted; never in the
        // template.
        for (secret, value) in &secret_files {
            self.store_secret(&name, "", &format!("{FILE_SECRET_PREFIX}{secret}"), value).await?;
        }
        self.app_git(&name).await?;
        for (r, c) in heads {
            self.store.set_git_head(&name, &r, &c).await?;
        }
        tracing::info!(app = %name, "application created");
        Ok(app)
    }

    /// An application's git settings, created with a new webhook secret the first time.
    pub async fn app_git(&self, app: &str) -> Result<AppGit, ControlError> {
        if let Some(g) = self.store.app_git(app).await? {
            return Ok(g);
        }
        // Made for an application that exists (a name from a request may not).
        self.find_app(app).await?;
        let secret = crate::ids::random_hex::<32>();
        let g = AppGit {
            app: app.to_owned(),
            webhook_secret: self.ports.seal(&secret, &webhook_secret_context(app)).map_err(ControlError::Seal)?,
            pull_requests: 0,
            pull_request_label: None,
            gitops_error: None,
            fetch_error: None,
            static_builder: None,
            terraform_image: None,
            access: None,
            bypass_token: None,
            idle_sleep_seconds: None,
            ttl_seconds: None,
            pull_request_ttl_seconds: None,
            sleep_schedule: None,
            wake_schedule: None,
            fork_secrets: 0,
        };
        Ok(self.store.ensure_app_git(&g).await?)
    }

    /// Deletes an application that has no live environment.
    pub async fn delete_app(&self, name: &str) -> Result<(), ControlError> {
        let work = async {
            self.find_app(name).await?;
            let live = self.store.envs(Some(name), false).await?;
            if !live.is_empty() {
                return Err(ControlError::Conflict {
                    code: "conflict",
                    message: format!("application `{name}` still has {} environment(s)", live.len()),
                    hint: Some("delete them first with `offshoot env delete ID`".into()),
                });
            }
            self.store.delete_app(name).await?;
            Ok(())
        };
        gate(self.store, &self.actor, Operation::DeleteApp, name, work, |_| Noted::default()).await
    }

    /// The application's latest template and variables.
    pub async fn template(&self, name: &str) -> Result<TemplateVersion, ControlError> {
        self.find_app(name).await?;
        let v = self.store.latest_version(name).await?.ok_or_else(|| ControlError::NotFound {
            what: "template of",
            name: name.to_owned(),
            hint: None,
        })?;
        Ok(TemplateVersion { app: name.to_owned(), version: v.version, template: v.template, env_vars: v.env_vars })
    }

    /// A new version of the template and variables (either left as it is when `None`), checked
    /// first. Existing environments keep the version they forked.
    pub async fn update_template(
        &self,
        name: &str,
        template: Option<String>,
        env_vars: Option<String>,
    ) -> Result<TemplateVersion, ControlError> {
        let work = async {
            let cur = self.template(name).await?;
            let template = template.unwrap_or(cur.template);
            // A file edited from a masked one (as shown) keeps the stored secret values.
            let env_vars = match env_vars {
                Some(edited) => offshoot_template::masking::unmasked(&edited, &cur.env_vars)
                    .map_err(|e| ControlError::bad_input(format!("environment_variables.yaml: {e}")))?,
                None => cur.env_vars,
            };
            check_files(&template, &env_vars)?;
            let version = self.store.add_version(name, &template, &env_vars).await?;
            Ok(TemplateVersion { app: name.to_owned(), version, template, env_vars })
        };
        gate(self.store, &self.actor, Operation::UpdateTemplate, name, work, |v| Noted::detail(format!("version {}", v.version))).await
    }

    /// Sets a secret of the application (of one service when `service` is not empty), sealed
    /// before it is stored.
    pub async fn set_secret(&self, app: &str, service: &str, key: &str, value: &str) -> Result<(), ControlError> {
        let work = async {
            self.find_app(app).await?;
            if key.is_empty() || key.len() > 200 || !key.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_') {
                return Err(ControlError::bad_input(format!("`{key}` is not a valid variable name"))
                    .with_hint("use letters, digits and `_`, at most 200"));
            }
            self.store_secret(app, service, key, value).await
        };
        // The record names the key, never the value.
        gate(self.store, &self.actor, Operation::SetSecret, &format!("{app}/{key}"), work, |_| Noted::default()).await
    }

    /// Sets a file secret of an application: mounted as a file where a service's
    /// `secret_files` names it (compose's `secrets`), never a variable.
    pub async fn set_file_secret(&self, app: &str, name: &str, value: &str) -> Result<(), ControlError> {
        let work = async {
            self.find_app(app).await?;
            if !offshoot_template::model::valid_secret_file_name(name) {
                return Err(ControlError::bad_input(format!("`{name}` is not a valid file secret name"))
                    .with_hint("use letters, digits, `.`, `_` and `-`, at most 100, not starting with `.`"));
            }
            self.store_secret(app, "", &format!("{FILE_SECRET_PREFIX}{name}"), value).await
        };
        gate(self.store, &self.actor, Operation::SetSecret, &format!("{app}/{name}"), work, |_| Noted::default()).await
    }

    /// Seals and stores a secret (at most 64 KiB).
    async fn store_secret(&self, app: &str, service: &str, key: &str, value: &str) -> Result<(), ControlError> {
        if value.len() > MAX_SECRET {
            return Err(ControlError::bad_input("a secret may be at most 64 KiB"));
        }
        let ciphertext = self.ports.seal(value, &format!("{app}/{service}/{key}")).map_err(ControlError::Seal)?;
        let s = Secret { app: app.to_owned(), service: service.to_owned(), key: key.to_owned(), ciphertext };
        Ok(self.store.set_secret(&s).await?)
    }

    /// Changes an application's settings; what `req` leaves out stays as it is.
    pub async fn update_settings(&self, name: &str, req: &AppUpdate) -> Result<AppGit, ControlError> {
        let work = async {
            self.find_app(name).await?;
            let git = self.app_git(name).await?;
            let on = req.pull_requests.unwrap_or(git.pull_requests != 0);
            let label = match req.pull_request_label.as_deref() {
                None => git.pull_request_label.clone(),
                Some("") => None,
                Some(l) if l.len() > 100 || l.chars().any(char::is_control) => {
                    return Err(ControlError::bad_input("pull_request_label: at most 100 characters, without control characters"));
                }
                Some(l) => Some(l.to_owned()),
            };
            let builder = match req.static_builder.as_deref() {
                None => git.static_builder.clone(),
                Some("") => None,
                Some(image) if valid_image(image) => Some(image.to_owned()),
                Some(_) => {
                    return Err(ControlError::bad_input(
                        "static_builder: not an image reference (`node:22`, `registry.example.com/team/builder@sha256:...`), at most 255 characters",
                    ));
                }
            };
            let terraform = match req.terraform_image.as_deref() {
                None => git.terraform_image.clone(),
                Some("") => None,
                Some(image) if valid_image(image) => Some(image.to_owned()),
                Some(_) => {
                    return Err(ControlError::bad_input(
                        "terraform_image: not an image reference (`hashicorp/terraform:1.11`, `registry.example.com/team/terraform@sha256:...`), at most 255 characters",
                    ));
                }
            };
            let access = match req.access.as_deref() {
                None => git.access.clone(),
                Some("public") => None,
                Some("team") => Some("team".to_owned()),
                Some(other) => return Err(ControlError::bad_input(format!("access: `{other}` is neither `public` nor `team`"))),
            };
            let idle = match req.idle_sleep.as_deref() {
                None => git.idle_sleep_seconds,
                Some(text) => crate::sleep::parse_idle(text, false)?,
            };
            let ttl = match req.ttl.as_deref() {
                None => git.ttl_seconds,
                Some(text) => parse_ttl("ttl", text)?,
            };
            let pr_ttl = match req.pull_request_ttl.as_deref() {
                None => git.pull_request_ttl_seconds,
                Some(text) => parse_ttl("pull_request_ttl", text)?,
            };
            self.store.set_pull_requests(name, on, label.as_deref()).await?;
            self.store.set_static_builder(name, builder.as_deref()).await?;
            self.store.set_terraform_image(name, terraform.as_deref()).await?;
            self.store.set_access(name, access.as_deref()).await?;
            self.store.set_app_idle_sleep(name, idle).await?;
            self.store.set_app_ttls(name, ttl, pr_ttl).await?;
            let sleep_at = match req.sleep_schedule.as_deref() {
                None => git.sleep_schedule.clone(),
                Some(text) => parse_schedule("sleep_schedule", text)?,
            };
            let wake_at = match req.wake_schedule.as_deref() {
                None => git.wake_schedule.clone(),
                Some(text) => parse_schedule("wake_schedule", text)?,
            };
            self.store.set_app_schedules(name, sleep_at.as_deref(), wake_at.as_deref()).await?;
            if let Some(on) = req.fork_secrets {
                self.store.set_fork_secrets(name, on).await?;
            }
            self.app_git(name).await
        };
        let noted = |_: &AppGit| Noted::detail(settings_changed(req));
        gate(self.store, &self.actor, Operation::UpdateApp, name, work, noted).await
    }

    /// A new webhook secret (returned once): deliveries signed with the old one are refused from
    /// now on.
    pub async fn rotate_webhook(&self, name: &str) -> Result<String, ControlError> {
        let work = async {
            self.find_app(name).await?;
            self.app_git(name).await?;
            let secret = crate::ids::random_hex::<32>();
            let sealed = self.ports.seal(&secret, &webhook_secret_context(name)).map_err(ControlError::Seal)?;
            self.store.set_webhook_secret(name, &sealed).await?;
            tracing::info!(app = %name, "webhook secret rotated");
            Ok(secret)
        };
        // The record says it happened, never the secret.
        gate(self.store, &self.actor, Operation::RotateWebhook, name, work, |_| Noted::default()).await
    }
}

/// A lifetime as written (`7d`, `48h`), or `off` for none; between a minute and 366 days.
pub fn parse_ttl(field: &str, text: &str) -> Result<Option<i64>, ControlError> {
    let t = text.trim();
    if t == "off" {
        return Ok(None);
    }
    let secs = offshoot_datasets::parse_duration(t).map_err(|e| ControlError::BadInput {
        message: format!("{field}: {e}"),
        hint: Some("write it like `7d`, `48h` or `off`".into()),
    })?;
    if !(60..=crate::environments::MAX_TTL_SECONDS).contains(&secs) {
        return Err(ControlError::bad_input(format!("{field}: `{t}` is not between a minute and 366 days")));
    }
    Ok(Some(i64::try_from(secs).unwrap_or(i64::MAX)))
}

/// A schedule as written: five cron fields (minute hour day-of-month month day-of-week, the
/// server's time zone), or `off` (or empty) for none.
pub fn parse_schedule(field: &str, text: &str) -> Result<Option<String>, ControlError> {
    let t = text.trim();
    if t.is_empty() || t == "off" {
        return Ok(None);
    }
    if t.len() > 200 {
        return Err(ControlError::bad_input(format!("{field}: longer than 200 characters")));
    }
    offshoot_datasets::Schedule::parse(t).map_err(|e| ControlError::BadInput {
        message: format!("{field}: {e}"),
        hint: Some("write it like `0 20 * * 1-5` (at 20:00, Monday to Friday), or `off`".into()),
    })?;
    Ok(Some(t.to_owned()))
}

/// How a file secret's key begins in the store (a variable's name cannot have `:`).
pub const FILE_SECRET_PREFIX: &str = "file:";

/// Whether `s` can name an image: a reference of the usual characters, bounded.
pub fn valid_image(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && !s.starts_with(['-', '.', '/', ':'])
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-/:@".contains(&b))
}

/// Which settings a request changes, as recorded (`pull_requests, static_builder`).
fn settings_changed(req: &AppUpdate) -> String {
    let named = [
        ("pull_requests", req.pull_requests.is_some()),
        ("pull_request_label", req.pull_request_label.is_some()),
        ("static_builder", req.static_builder.is_some()),
        ("terraform_image", req.terraform_image.is_some()),
        ("access", req.access.is_some()),
        ("idle_sleep", req.idle_sleep.is_some()),
        ("ttl", req.ttl.is_some()),
        ("pull_request_ttl", req.pull_request_ttl.is_some()),
        ("sleep_schedule", req.sleep_schedule.is_some()),
        ("wake_schedule", req.wake_schedule.is_some()),
        ("fork_secrets", req.fork_secrets.is_some()),
    ];
    named.iter().filter(|(_, set)| *set).map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
}
