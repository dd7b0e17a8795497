//! `offshoot validate`

use crate::files::{DirFiles, read_text};
use crate::{Hint, Output, out};
use anyhow::{Context as _, Result};
use clap::ValueEnum;
use offshoot_template::compose;
use offshoot_template::diag::{Diagnostic, Severity};
use offshoot_template::document::{self, Kind};
use offshoot_template::ledger::{self, Runtime};
use offshoot_template::repo::{self, RepoFiles as _, Source};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// A configuration file, or a repository directory (found through `.release.yaml`,
    /// `.release/`, or its compose file).
    path: PathBuf,
    /// What the file is; detected from its shape when not given.
    #[arg(long, value_enum)]
    kind: Option<KindArg>,
    /// Treat warnings (unknown keys, duplicate keys, keys the runtime ignores, ...) as errors.
    #[arg(long)]
    strict: bool,
    /// The runtime whose support of each key is checked: what it ignores is a warning, what it
    /// refuses an error.
    #[arg(long, value_enum, default_value = "docker")]
    runtime: RuntimeArg,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum RuntimeArg {
    Docker,
    Kubernetes,
}

impl From<RuntimeArg> for Runtime {
    fn from(r: RuntimeArg) -> Runtime {
        match r {
            RuntimeArg::Docker => Runtime::Docker,
            RuntimeArg::Kubernetes => Runtime::Kubernetes,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum KindArg {
    Template,
    EnvVars,
    ReleaseYaml,
    Compose,
}

impl From<KindArg> for Kind {
    fn from(k: KindArg) -> Kind {
        match k {
            KindArg::Template => Kind::Template,
            KindArg::EnvVars => Kind::EnvVars,
            KindArg::ReleaseYaml => Kind::ReleaseYaml,
            KindArg::Compose => Kind::Compose,
        }
    }
}

/// Diagnostics of several files, with each file's text for snippets.
#[derive(Default)]
pub(crate) struct Report {
    pub(crate) sources: BTreeMap<String, String>,
    pub(crate) diagnostics: Vec<Diagnostic>,
    pub(crate) files: usize,
}

impl Report {
    /// Adds a file's diagnostics, renaming the file to how the user should see it.
    pub(crate) fn add(&mut self, shown: &str, source: String, diags: Vec<Diagnostic>) {
        let name: Arc<str> = Arc::from(shown);
        self.files += 1;
        self.diagnostics.extend(diags.into_iter().map(|mut d| {
            d.file = name.clone();
            d
        }));
        self.sources.insert(shown.to_owned(), source);
    }

    pub(crate) fn errors(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
    }

    pub(crate) fn print(&self, output: Output) {
        match output {
            Output::Json => {
                let v = serde_json::json!({ "diagnostics": self.diagnostics });
                out(&format!("{}\n", serde_json::to_string_pretty(&v).unwrap_or_default()));
            }
            Output::Human => {
                let mut s = String::new();
                for d in &self.diagnostics {
                    s.push_str(&d.render(self.sources.get(&*d.file).map_or("", String::as_str)));
                    s.push('\n');
                }
                let (e, w) = (self.errors(), self.diagnostics.len() - self.errors());
                let files = if self.files == 1 { "1 file".to_owned() } else { format!("{} files", self.files) };
                s.push_str(&match (e, w) {
                    (0, 0) => format!("ok: {files} checked, no problems\n"),
                    (0, w) => format!("ok: {files} checked, {w} warning{}\n", plural(w)),
                    (e, w) => format!("failed: {files} checked, {e} error{}, {w} warning{}\n", plural(e), plural(w)),
                });
                out(&s);
            }
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

pub(crate) fn run(args: Args, output: Output) -> Result<ExitCode> {
    let runtime = Runtime::from(args.runtime);
    let mut report = if args.path.is_dir() {
        check_repo_on(&args.path, None, Some(runtime))?
    } else {
        let src = read_text(&args.path)?;
        let shown = args.path.display().to_string();
        let kind = args.kind.map(Kind::from);
        let doc = document::check(&shown, &src, kind);
        let mut diags = doc.diagnostics;
        diags.extend(ledger_diagnostics(&shown, &doc.root, doc.kind, runtime));
        let mut r = Report::default();
        r.add(&shown, src, diags);
        r
    };
    if args.strict {
        for d in &mut report.diagnostics {
            d.severity = Severity::Error;
        }
    }
    report.print(output);
    Ok(if report.errors() > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// What `runtime` ignores or refuses of a template, as diagnostics.
fn ledger_diagnostics(file: &str, root: &Option<offshoot_template::yaml::Node>, kind: Kind, runtime: Runtime) -> Vec<Diagnostic> {
    match (kind, root) {
        (Kind::Template, Some(root)) => ledger::diagnostics(file, &ledger::scan(root, runtime), runtime),
        _ => Vec::new(),
    }
}

/// Checks every configuration file of a repository directory, and what `runtime` ignores or
/// refuses of its template.
fn check_repo_on(dir: &Path, compose_override: Option<&str>, runtime: Option<Runtime>) -> Result<Report> {
    let files = DirFiles::new(dir)?;
    let found = repo::discover(&files, compose_override);
    let shown = |rel: &str| dir.join(rel).display().to_string();
    let mut report = Report::default();
    let add_doc = |report: &mut Report, rel: &str, diags: Vec<Diagnostic>| {
        let src = files.read(rel).unwrap_or_default();
        report.add(&shown(rel), src, diags);
    };
    if let Some((p, d)) = &found.release_yaml {
        add_doc(&mut report, p, d.diagnostics.clone());
    }
    match &found.source {
        Some(Source::Release { template, env_vars }) => {
            for (p, d) in template.iter().chain(env_vars.iter()).map(|b| &**b) {
                if p != ".release.yaml" {
                    let mut diags = d.diagnostics.clone();
                    if let Some(rt) = runtime {
                        diags.extend(ledger_diagnostics(p, &d.root, d.kind, rt));
                    }
                    add_doc(&mut report, p, diags);
                }
            }
        }
        Some(Source::Compose { path }) => {
            let src = files.read(path).unwrap_or_default();
            let read = |p: &str| files.read(p);
            let kind = |p: &str| files.kind(p);
            let opts = compose::Options { read_file: Some(&read), path_kind: Some(&kind), ..compose::Options::default() };
            let (_, diags) = compose::generate(path, &src, &opts);
            add_doc(&mut report, path, diags);
        }
        None if found.diagnostics.is_empty() => {
            return Err(anyhow::anyhow!("no Release configuration or compose file in `{}`", dir.display()))
                .context(Hint("expected `.release.yaml`, `.release/application_template.yaml`, or `docker-compose.yml`".into()));
        }
        None => {}
    }
    // Cross-file findings name their own file (relative to the repository).
    for d in found.diagnostics {
        let rel = d.file.to_string();
        let src = files.read(&rel).unwrap_or_default();
        let name = shown(&rel);
        report.sources.entry(name.clone()).or_insert(src);
        report.diagnostics.push(Diagnostic { file: Arc::from(name), ..d });
    }
    Ok(report)
}
