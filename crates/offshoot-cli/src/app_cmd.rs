//! `offshoot app ...`

use crate::client::{Api, enc};
use crate::{Output, out};
use anyhow::{Context as _, Result, bail};
use offshoot_api_types as api;
use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub(crate) enum Command {
    /// Create an application from a repository: its `.release.yaml` files, else a template
    /// generated from its docker-compose file, become version 1.
    Create {
        /// A local path or a git URL.
        #[arg(long)]
        repo: String,
        #[arg(long)]
        name: Option<String>,
        /// Branch whose configuration is read (default: the repository's default branch).
        #[arg(long)]
        branch: Option<String>,
    },
    /// List applications.
    List,
    /// Show an application.
    Show { name: String },
    /// Delete an application (it must have no environments).
    Delete { name: String },
    /// Print the Application Template, or save a new version from a file.
    Template {
        name: String,
        #[arg(long)]
        set_file: Option<PathBuf>,
    },
    /// Print the Environment Variables file, or save a new version from a file.
    EnvVars {
        name: String,
        #[arg(long)]
        set_file: Option<PathBuf>,
    },
    /// Secrets, encrypted at rest and never shown.
    #[command(subcommand)]
    Secret(SecretCommand),
    /// Print the webhook URLs and secret to configure in GitHub (content type JSON, events
    /// "Pushes" and "Pull requests") or GitLab (push and merge request events).
    Webhook {
        name: String,
        /// Make a new secret; webhooks signed with the old one are refused from now on.
        #[arg(long)]
        rotate: bool,
    },
    /// The bypass token of the application's team-only previews (made on first ask): send it in
    /// the `x-offshoot-bypass` header, or once as `?offshoot_bypass=`.
    BypassToken {
        name: String,
        /// Make a new one; the old one stops working.
        #[arg(long)]
        rotate: bool,
    },
    /// Raise a user's role for this application (`--role none` removes the grant).
    Grant {
        name: String,
        email: String,
        #[arg(long, value_parser = ["admin", "developer", "viewer", "none"])]
        role: String,
    },
    /// Change an application's settings.
    Set(Box<SetArgs>),
    /// The latest webhook deliveries and polled changes, and what each did.
    Deliveries {
        name: String,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
}

#[derive(clap::Subcommand)]
pub(crate) enum SecretCommand {
    /// Set a secret; the value is read from standard input.
    Set {
        name: String,
        key: String,
        /// Only for this service (default: every service).
        #[arg(long, conflicts_with = "file")]
        service: Option<String>,
        /// A file secret, mounted where a service's `secret_files` names it (compose's
        /// `secrets`); standard input is kept byte for byte.
        #[arg(long)]
        file: bool,
    },
}

/// `offshoot app set`'s settings.
#[derive(clap::Args)]
pub(crate) struct SetArgs {
    name: String,
    /// Create an environment for each pull request (torn down when it closes).
    #[arg(long, value_parser = ["on", "off"])]
    pull_requests: Option<String>,
    /// Only for pull requests carrying this label (`""` for every pull request).
    #[arg(long)]
    pull_request_label: Option<String>,
    /// Whether the environments of forks' pull requests (once approved) get the
    /// application's secrets and dataset clones, its environments imported into them too; off
    /// by default: they run without them.
    #[arg(long, value_parser = ["on", "off"])]
    fork_secrets: Option<String>,
    /// The image static sites are built in (`""` for the server's default).
    #[arg(long, value_name = "IMAGE")]
    static_builder: Option<String>,
    /// The image its Terraform `infrastructure` runs in (`""` for the server's default).
    #[arg(long, value_name = "IMAGE")]
    terraform_image: Option<String>,
    /// Who its environments' URLs answer: anyone, or only the team (signed in to the
    /// dashboard, or with the bypass token).
    #[arg(long, value_parser = ["public", "team"])]
    access: Option<String>,
    /// Its environments sleep after this long without a request (`30m`, `2h`), or `off`.
    #[arg(long, value_name = "DURATION")]
    idle_sleep: Option<String>,
    /// The lifetime its new environments get (`7d`), or `off`; `env create --ttl` overrides.
    #[arg(long, value_name = "DURATION")]
    ttl: Option<String>,
    /// The lifetime its new pull-request environments get (`3d`), or `off`.
    #[arg(long, value_name = "DURATION")]
    pull_request_ttl: Option<String>,
    /// When its environments go to sleep: five cron fields in the server's time zone
    /// (`"0 20 * * 1-5"`), or `off`. A request still wakes one.
    #[arg(long, value_name = "CRON")]
    sleep_schedule: Option<String>,
    /// When its sleeping environments wake (`"0 7 * * 1-5"`), or `off`.
    #[arg(long, value_name = "CRON")]
    wake_schedule: Option<String>,
}

fn print_app(a: &api::App, output: Output) {
    match output {
        Output::Json => out(&format!("{}\n", serde_json::to_string_pretty(a).unwrap_or_default())),
        Output::Human => {
            out(&format!("{}  version {}  {}  default branch {}  ({})\n", a.name, a.version, a.repo, a.default_branch, a.source));
            if a.pull_requests {
                match &a.pull_request_label {
                    Some(l) => out(&format!("  pull requests: on, with label `{l}`\n")),
                    None => out("  pull requests: on\n"),
                }
                if a.fork_secrets {
                    out("  forks' pull requests get the secrets\n");
                }
            }
            if let Some(b) = &a.static_builder {
                out(&format!("  static builds run in: {b}\n"));
            }
            if a.access == "team" {
                out("  previews: team only (signed-in users, or the bypass token)\n");
            }
            if let Some(t) = &a.terraform_image {
                out(&format!("  Terraform runs in: {t}\n"));
            }
            if let Some(s) = a.idle_sleep_seconds {
                out(&format!("  environments sleep after {} without a request\n", crate::env_cmd::span(s)));
            }
            if let Some(s) = a.ttl_seconds {
                out(&format!("  new environments live {}\n", crate::env_cmd::span(s)));
            }
            if let Some(s) = a.pull_request_ttl_seconds {
                out(&format!("  new pull-request environments live {}\n", crate::env_cmd::span(s)));
            }
            if let Some(s) = &a.sleep_schedule {
                out(&format!("  environments sleep at `{s}` (server time)\n"));
            }
            if let Some(s) = &a.wake_schedule {
                out(&format!("  sleeping environments wake at `{s}` (server time)\n"));
            }
            if let Some(e) = &a.gitops_error {
                out(&format!("  gitops: {}\n", e.replace('\n', "\n    ")));
            }
            if let Some(e) = &a.fetch_error {
                out(&format!("  fetch: {e}\n"));
            }
        }
    }
}

pub(crate) fn run(cmd: Command, output: Output) -> Result<ExitCode> {
    let api = Api::from_env()?;
    match cmd {
        Command::Create { repo, name, branch } => {
            let repo = match std::path::Path::new(&repo).canonicalize() {
                Ok(p) => p.display().to_string(),
                Err(_) => repo,
            };
            let a: api::App = api.post("/apps", &api::AppCreate { repo, name, branch })?;
            print_app(&a, output);
        }
        Command::List => {
            let apps: Vec<api::App> = api.get("/apps")?;
            match output {
                Output::Json => out(&format!("{}\n", serde_json::to_string_pretty(&apps).unwrap_or_default())),
                Output::Human if apps.is_empty() => out("no applications; create one with `offshoot app create --repo PATH`\n"),
                Output::Human => apps.iter().for_each(|a| print_app(a, output)),
            }
        }
        Command::Show { name } => print_app(&api.get(&format!("/apps/{}", enc(&name)))?, output),
        Command::Delete { name } => {
            api.delete(&format!("/apps/{}", enc(&name)))?;
            if output == Output::Human {
                out(&format!("deleted application {name}\n"));
            }
        }
        Command::Template { name, set_file } => file_cmd(&api, &name, set_file, output, true)?,
        Command::EnvVars { name, set_file } => file_cmd(&api, &name, set_file, output, false)?,
        Command::Secret(SecretCommand::Set { name, key, service, file }) => {
            let mut value = String::new();
            std::io::stdin().read_to_string(&mut value).context("read the secret from standard input")?;
            let value = if file { value } else { value.strip_suffix('\n').unwrap_or(&value).to_owned() };
            if value.is_empty() {
                bail!("no value on standard input (pipe it in: `printf %s VALUE | offshoot app secret set ...`)");
            }
            api.post_empty(&format!("/apps/{}/secrets", enc(&name)), &api::SecretSet { key: key.clone(), service, value, file })?;
            if output == Output::Human {
                out(&format!("secret {key} set for {name}\n"));
            }
        }
        Command::Webhook { name, rotate } => {
            let path = format!("/apps/{}/webhook", enc(&name));
            let w: api::Webhook = if rotate { api.post(&path, &serde_json::json!({}))? } else { api.get(&path)? };
            match output {
                Output::Json => out(&format!("{}\n", serde_json::to_string_pretty(&w).unwrap_or_default())),
                Output::Human => out(&format!(
                    "GitHub:  payload URL {}\n         content type application/json, secret {}\n         events: Pushes, Pull requests\nGitLab:  URL {}\n         secret token {}\n         events: Push events, Tag push events, Merge request events\n",
                    w.url, w.secret, w.gitlab_url, w.secret
                )),
            }
        }
        Command::BypassToken { name, rotate } => {
            let q = if rotate { "?rotate=true" } else { "" };
            let t: api::BypassToken = api.post(&format!("/apps/{}/bypass-token{q}", enc(&name)), &serde_json::json!({}))?;
            crate::emit(&t, output, |t| format!("{}\n", t.token));
        }
        Command::Grant { name, email, role } => {
            api.post_empty(&format!("/apps/{}/grants", enc(&name)), &api::GrantSet { email: email.clone(), role: role.clone() })?;
            if output == Output::Human {
                out(&format!("{email}: {role} on {name}\n"));
            }
        }
        Command::Set(set) => {
            let SetArgs {
                name,
                pull_requests,
                pull_request_label,
                fork_secrets,
                static_builder,
                terraform_image,
                access,
                idle_sleep,
                ttl,
                pull_request_ttl,
                sleep_schedule,
                wake_schedule,
            } = *set;
            let body = api::AppUpdate {
                pull_requests: pull_requests.map(|p| p == "on"),
                pull_request_label,
                static_builder,
                terraform_image,
                access,
                idle_sleep,
                ttl,
                pull_request_ttl,
                sleep_schedule,
                wake_schedule,
                fork_secrets: fork_secrets.map(|f| f == "on"),
            };
            // Nothing given: every field of the body absent.
            let given = serde_json::to_value(&body).ok().and_then(|v| v.as_object().map(|o| o.values().any(|x| !x.is_null())));
            if given != Some(true) {
                return Err(crate::UsageError(
                    "nothing to change: give --pull-requests on|off, --pull-request-label, --fork-secrets on|off, --static-builder, --terraform-image, --access, --idle-sleep, --ttl, --pull-request-ttl, --sleep-schedule and/or --wake-schedule".into(),
                )
                .into());
            }
            let a: api::App = api.post(&format!("/apps/{}/settings", enc(&name)), &body)?;
            print_app(&a, output);
        }
        Command::Deliveries { name, limit } => {
            let list: Vec<api::Delivery> = api.get(&format!("/apps/{}/deliveries?limit={limit}", enc(&name)))?;
            match output {
                Output::Json => out(&format!("{}\n", serde_json::to_string_pretty(&list).unwrap_or_default())),
                Output::Human if list.is_empty() => out("no deliveries yet; see `offshoot app webhook NAME`\n"),
                Output::Human => {
                    for d in list {
                        let took = d.finished_at.map(|f| format!(" in {} ms", f - d.received_at)).unwrap_or_default();
                        out(&format!("{}  {}{took}  {}\n", d.id, d.status, d.result.unwrap_or_default()));
                    }
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn file_cmd(api: &Api, name: &str, set_file: Option<PathBuf>, output: Output, template: bool) -> Result<()> {
    let path = format!("/apps/{}/template", enc(name));
    let t: api::Template = match set_file {
        Some(f) => {
            let text = crate::files::read_text(&f)?;
            let body = if template {
                api::TemplateUpdate { template: Some(text), env_vars: None }
            } else {
                api::TemplateUpdate { template: None, env_vars: Some(text) }
            };
            let saved: api::Template = api.put(&path, &body)?;
            if output == Output::Human {
                crate::err(&format!("saved as version {}\n", saved.version));
                return Ok(());
            }
            saved
        }
        None => api.get(&path)?,
    };
    match output {
        Output::Json => out(&format!("{}\n", serde_json::to_string_pretty(&t).unwrap_or_default())),
        Output::Human => out(if template { &t.template } else { &t.env_vars }),
    }
    Ok(())
}
