//! `offshoot template generate|resolve`

use crate::files::{DirFiles, read_text};
use crate::validate_cmd::Report;
use crate::{Hint, Output, UsageError, err, out};
use anyhow::{Context as _, Result, bail};
use offshoot_template::compose::{self, Generated};
use offshoot_template::diag::Diagnostics;
use offshoot_template::document::{self, Kind};
use offshoot_template::envvars::{EnvVarsFile, VarValue};
use offshoot_template::repo::{self, COMPOSE_NAMES, RepoFiles as _, Source};
use offshoot_template::resolve;
use offshoot_template::secret::SecretString;
use offshoot_template::yaml::{self, Node};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub(crate) enum Command {
    /// Generate an Application Template and Environment Variables from a docker-compose file,
    /// as Release does. Prints the template; the report of what was dropped goes to stderr.
    Generate(GenerateArgs),
    /// Print the effective configuration of one environment as JSON (secrets redacted).
    Resolve(ResolveArgs),
    /// Print the manifests one environment would be deployed as, multi-document YAML (for
    /// review, for GitOps tools such as Argo CD; secret values masked).
    Render(RenderArgs),
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub(crate) enum RuntimeKind {
    Kubernetes,
}

#[derive(clap::Args)]
pub(crate) struct RenderArgs {
    #[command(flatten)]
    resolve: ResolveArgs,
    #[arg(long, value_enum)]
    runtime: RuntimeKind,
    /// The namespace (default: `offshoot-<env-id>`).
    #[arg(long)]
    namespace: Option<String>,
    /// Ingress class of public routes.
    #[arg(long, default_value = "nginx")]
    ingress_class: String,
    /// Ingress class of `visibility: private` routes.
    #[arg(long, default_value = "nginx-internal")]
    private_ingress_class: String,
}

#[derive(clap::Args)]
pub(crate) struct GenerateArgs {
    /// The repository directory.
    repo_dir: PathBuf,
    /// Compose file, relative to the repository (default: `.release.yaml`'s `compose`, else
    /// compose.yaml / docker-compose.yml).
    #[arg(long)]
    compose: Option<String>,
    /// Application name (default: the directory's name).
    #[arg(long)]
    app: Option<String>,
    /// `owner/repo` used in built images' names (default: the application name).
    #[arg(long)]
    repo_name: Option<String>,
    /// Base domain of hostnames (default: the server's).
    #[arg(long)]
    domain: Option<String>,
    /// Write `application_template.yaml` and `environment_variables.yaml` here.
    #[arg(long)]
    out_dir: Option<PathBuf>,
}

#[derive(clap::Args)]
pub(crate) struct ResolveArgs {
    /// An Application Template file, or a repository directory.
    path: PathBuf,
    /// Environment Variables file (default: the repository's).
    #[arg(long)]
    env_vars: Option<PathBuf>,
    /// Environment template to apply (default: `ephemeral` when defined).
    #[arg(long)]
    environment_template: Option<String>,
    #[arg(long, default_value = "main")]
    branch: String,
    #[arg(long, default_value = "local00")]
    env_id: String,
    #[arg(long)]
    commit: Option<String>,
    /// Domain for `${domain}` when the template has none.
    #[arg(long, default_value = "localhost")]
    domain: String,
    /// A parameter value, `NAME=VALUE` (repeatable).
    #[arg(long = "param", value_parser = parse_kv)]
    params: Vec<(String, String)>,
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())).ok_or_else(|| format!("`{s}` is not NAME=VALUE"))
}

pub(crate) fn run(cmd: Command, output: Output) -> Result<ExitCode> {
    match cmd {
        Command::Generate(a) => generate(a, output),
        Command::Resolve(a) => match resolve_path(&a, output)? {
            Ok((r, _)) => {
                out(&format!("{}\n", serde_json::to_string_pretty(&r).unwrap_or_default()));
                Ok(ExitCode::SUCCESS)
            }
            Err(code) => Ok(code),
        },
        Command::Render(a) => render_cmd(a, output),
    }
}

fn dir_name(dir: &Path) -> String {
    dir.canonicalize().ok().and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned())).unwrap_or_else(|| "app".into())
}

/// `.env` of the repository, for `${VAR}` in compose files.
fn dotenv(files: &DirFiles) -> BTreeMap<String, String> {
    files
        .read(".env")
        .map(|c| {
            compose::parse_env_file(&c, Default::default())
                .into_iter()
                .filter_map(|v| Some((v.key.value, v.value?.value.expose().to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// Generates the template of a compose repository; diagnostics are returned as a report.
fn generate_in(
    dir: &Path,
    compose_path: Option<&str>,
    app: Option<String>,
    repo_name: Option<String>,
    domain: Option<String>,
) -> Result<(Option<Generated>, Report)> {
    let files = DirFiles::new(dir)?;
    let path = match compose_path {
        Some(p) => p.to_owned(),
        None => match repo::discover(&files, None).source {
            Some(Source::Compose { path }) => path,
            _ => COMPOSE_NAMES
                .iter()
                .find(|n| files.read(n).is_some())
                .map(|s| (*s).to_owned())
                .ok_or_else(|| UsageError(format!("no compose file in `{}`", dir.display())))
                .context(Hint("name one with `--compose FILE`".into()))?,
        },
    };
    let src = files.read(&path).ok_or_else(|| UsageError(format!("`{path}` does not exist in `{}`", dir.display())))?;
    let read = |p: &str| files.read(p);
    let app = app.unwrap_or_else(|| dir_name(dir));
    let kind = |p: &str| files.kind(p);
    let opts = compose::Options { app: Some(app), repo_name, domain, vars: dotenv(&files), read_file: Some(&read), path_kind: Some(&kind) };
    let (g, diags) = compose::generate(&path, &src, &opts);
    let mut report = Report::default();
    report.add(&dir.join(&path).display().to_string(), src, diags);
    Ok((g, report))
}

fn generate(a: GenerateArgs, output: Output) -> Result<ExitCode> {
    let (g, report) = generate_in(&a.repo_dir, a.compose.as_deref(), a.app, a.repo_name, a.domain)?;
    let Some(g) = g.filter(|_| report.errors() == 0) else {
        report.print(output);
        return Ok(ExitCode::from(1));
    };
    let (template, env_vars) = (g.template_yaml(), g.env_vars_yaml());
    if let Some(dir) = &a.out_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("create `{}`", dir.display()))?;
        for (name, body) in [("application_template.yaml", &template), ("environment_variables.yaml", &env_vars)] {
            let p = dir.join(name);
            std::fs::write(&p, body).with_context(|| format!("write `{}`", p.display()))?;
        }
    }
    match output {
        Output::Json => {
            let v = serde_json::json!({
                "application_template": template,
                "environment_variables": env_vars,
                "dropped": g.dropped,
                "secret_files": g.secret_files,
                "diagnostics": report.diagnostics,
            });
            out(&format!("{}\n", serde_json::to_string_pretty(&v).unwrap_or_default()));
        }
        Output::Human => {
            if a.out_dir.is_none() {
                out(&template);
            }
            if !report.diagnostics.is_empty() {
                report.print(Output::Human);
            }
            let mut s = String::new();
            if g.dropped.is_empty() {
                s.push_str("nothing was dropped\n");
            } else {
                s.push_str(&format!("dropped {} item{}:\n", g.dropped.len(), if g.dropped.len() == 1 { "" } else { "s" }));
                for d in &g.dropped {
                    let svc = d.service.as_ref().map_or_else(String::new, |s| format!("{s}: "));
                    s.push_str(&format!("  line {}: {svc}{} — {}\n", d.line, d.item, d.reason));
                }
            }
            for f in &g.secret_files {
                s.push_str(&format!(
                    "secret `{}` is mounted from `{}`: its value is stored encrypted when the server makes the application from this compose file (never in the template); with these files instead: `offshoot app secret set APP {} --file < {}`\n",
                    f.name, f.path, f.name, f.path
                ));
            }
            if let Some(dir) = &a.out_dir {
                s.push_str(&format!("wrote application_template.yaml and environment_variables.yaml to {}\n", dir.display()));
            }
            err(&s);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn load_env_vars(path: &Path, report: &mut Report) -> Result<Option<EnvVarsFile>> {
    let src = read_text(path)?;
    let shown = path.display().to_string();
    let doc = document::check(&shown, &src, Some(Kind::EnvVars));
    report.add(&shown, src, doc.diagnostics);
    Ok(doc.env_vars)
}

fn render_cmd(a: RenderArgs, output: Output) -> Result<ExitCode> {
    let RuntimeKind::Kubernetes = a.runtime;
    let (r, dir) = match resolve_path(&a.resolve, output)? {
        Ok(x) => x,
        Err(code) => return Ok(code),
    };
    let mut opts = offshoot_manifests::Options::new(a.namespace.unwrap_or_else(|| format!("offshoot-{}", r.env_id)), "local");
    opts.ingress_class = a.ingress_class;
    opts.private_ingress_class = a.private_ingress_class;
    // Files mounted with `configmap`, read from the repository (bounded, confined to it).
    if let Some(dir) = dir {
        let files = DirFiles::new(&dir)?;
        for path in offshoot_manifests::configmap_files(&r) {
            if let Some(text) = files.read(&path) {
                opts.files.insert(path, text);
            }
        }
    }
    let rendered = offshoot_manifests::render(&r, &opts);
    for w in &rendered.warnings {
        err(&format!("warning: {w}\n"));
    }
    let yaml = offshoot_manifests::to_yaml(&rendered.manifests).map_err(anyhow::Error::msg).context("write the manifests as YAML")?;
    out(&yaml);
    Ok(ExitCode::SUCCESS)
}

/// Resolves the template at a path (a file or a repository) for one environment; `Err` is the
/// exit code after the diagnostics were printed. With a repository, its directory comes too.
fn resolve_path(a: &ResolveArgs, output: Output) -> Result<Result<(resolve::Resolved, Option<PathBuf>), ExitCode>> {
    let mut report = Report::default();
    let (file, root, mut env_vars): (String, Option<Node>, Option<EnvVarsFile>) = if a.path.is_dir() {
        let files = DirFiles::new(&a.path)?;
        match repo::discover(&files, None).source {
            Some(Source::Release { template, env_vars }) => {
                let (tp, tdoc) = *template.context("the repository has no Application Template")?;
                let shown = a.path.join(&tp).display().to_string();
                report.add(&shown, files.read(&tp).unwrap_or_default(), tdoc.diagnostics);
                let root = match tdoc.root {
                    Some(r) => Some(r),
                    // The inline form: re-read the template from `.release.yaml`.
                    None => tdoc.template.as_ref().map(|t| reparse(&offshoot_template::compose::template_to_yaml(t))),
                };
                let ev = env_vars.and_then(|b| {
                    let (p, d) = *b;
                    report.add(&a.path.join(&p).display().to_string(), files.read(&p).unwrap_or_default(), d.diagnostics);
                    d.env_vars
                });
                (shown, root, ev)
            }
            Some(Source::Compose { path }) => {
                let (g, r) = generate_in(&a.path, Some(&path), None, None, None)?;
                report = r;
                match g {
                    Some(g) => ("generated template".into(), Some(reparse(&g.template_yaml())), Some(g.env_vars)),
                    None => (path, None, None),
                }
            }
            None => bail!(UsageError(format!("no Release configuration or compose file in `{}`", a.path.display()))),
        }
    } else {
        let src = read_text(&a.path)?;
        let shown = a.path.display().to_string();
        let doc = document::check(&shown, &src, Some(Kind::Template));
        report.add(&shown, src, doc.diagnostics);
        (shown, doc.root, None)
    };
    if let Some(p) = &a.env_vars {
        env_vars = load_env_vars(p, &mut report)?;
    }
    let Some(root) = root.filter(|_| report.errors() == 0) else {
        report.print(output);
        return Ok(Err(ExitCode::from(1)));
    };
    let opts = resolve::Options {
        environment_template: a.environment_template.clone(),
        branch: a.branch.clone(),
        env_id: a.env_id.clone(),
        commit: a.commit.clone(),
        app: None,
        domain: a.domain.clone(),
        force_domain: false,
        ingress_port: None,
        ingress_https: None,
        parameters: a.params.iter().cloned().collect(),
        secret_files: Default::default(),
        imported: Default::default(),
        attached: Default::default(),
    };
    // Attached datasets' variables are known only at creation: placeholders stand for them.
    let mut result = resolve::resolve(&file, &root, env_vars.as_ref(), &opts);
    if let Ok(r) = &result
        && !r.datasets.is_empty()
    {
        let mut opts = opts.clone();
        for d in &r.datasets {
            for (name, field) in resolve::dataset_variables(d) {
                let placeholder = format!("<{name}: set when the environment checks out a clone of `{d}`>");
                let v = if field.is_secret() { VarValue::Secret(SecretString::new(placeholder)) } else { VarValue::Plain(placeholder) };
                opts.attached.insert(name, v);
            }
        }
        result = resolve::resolve(&file, &root, env_vars.as_ref(), &opts);
    }
    match result {
        Ok(r) => Ok(Ok((r, a.path.is_dir().then(|| a.path.clone())))),
        Err(diags) => {
            let mut r = Report::default();
            r.add(&file, report.sources.get(&file).cloned().unwrap_or_default(), diags);
            r.print(output);
            Ok(Err(ExitCode::from(1)))
        }
    }
}

fn reparse(src: &str) -> Node {
    let mut d = Diagnostics::new("generated");
    yaml::parse(src, &mut d).unwrap_or(Node { value: yaml::Value::Null, span: Default::default() })
}
