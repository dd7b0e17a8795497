//! Every Release file of the corpus loads with no error, except those that are not valid YAML
//! (which fail at the right line) and a few old revisions with mistakes their authors later
//! fixed (which must still be caught).

use crate::corpus_dir;
use offshoot_template::document::{self, Kind};
use std::collections::BTreeMap;

/// Files that are not valid YAML, and the line of the error (see SOURCES.md).
const INVALID_YAML: &[(&str, u32)] = &[
    // `context: *company-data-covered*-...`: a redaction that YAML reads as an alias.
    ("Rukio__nx-repo__.release__application_template.yaml", 4),
    ("Rukio__nx-repo__infra__releasehub__audit__application_template.yaml", 6),
    ("Rukio__nx-repo__infra__releasehub__services__application_template.yaml", 6),
    // The `services:` line is missing, so the list at line 17 has no key.
    ("history/4734b7d9f33e/nielthiart__release-configmap-test__.release__application_template.yaml", 17),
];

/// Old revisions with real mistakes, fixed in later revisions; we must report them.
const GENUINE_MISTAKES: &[(&str, &str)] = &[
    // References to Release's secrets providers (`$secrets.rsm.X`, `$secrets.aws./path`), which
    // Offshoot refuses until it has a provider (the compatibility ledger).
    ("Draiken__tonic_helm_charts__.release__environment_variables.yaml", "unsupported"),
    ("Rukio__nx-repo__.release__environment_variables.yaml", "unsupported"),
    ("awesome-release__genai-stack__.release__environment_variables.yaml", "unsupported"),
    ("history/1061b0c7980b/awesome-release__genai-stack__.release__environment_variables.yaml", "unsupported"),
    ("history/3f82f1600bc7/Draiken__tonic_helm_charts__.release__environment_variables.yaml", "unsupported"),
    ("history/590e4b799c19/Draiken__tonic_helm_charts__.release__environment_variables.yaml", "unsupported"),
    ("history/71255609b207/Draiken__tonic_helm_charts__.release__environment_variables.yaml", "unsupported"),
    ("history/9c7d9bcca83f/Draiken__tonic_helm_charts__.release__environment_variables.yaml", "unsupported"),
    ("history/df2e77533967/Draiken__tonic_helm_charts__.release__environment_variables.yaml", "unsupported"),
    ("history/f3baef12f241/Draiken__tonic_helm_charts__.release__environment_variables.yaml", "unsupported"),
    // Hostnames and jobs naming services that this revision does not define yet.
    ("history/677721151012/awesome-release__AI-Examples__.release__fine_tune_application_template.yaml", "unknown-service"),
    ("history/7bf775ec41fc/awesome-release__AI-Examples__.release__fine_tune_application_template.yaml", "unknown-service"),
    ("history/c2eb1eea45b3/awesome-release__AI-Examples__.release__fine_tune_application_template.yaml", "unknown-service"),
    ("history/c9d5803ec67b/awesome-release__AI-Examples__.release__fine_tune_application_template.yaml", "unknown-service"),
    ("history/e7c84ae54ddc/awesome-release__AI-Examples__.release__fine_tune_application_template.yaml", "unknown-service"),
    // A command written as a list nested in a list.
    ("history/6b87345e4c11/awesome-release__AI-Examples__.release__fine_tune_application_template.yaml", "type"),
    ("history/95b7607ef501/awesome-release__AI-Examples__.release__fine_tune_application_template.yaml", "type"),
    // Workflow tasks naming jobs that do not exist (`jobs.peft-training` for `peft-tuning`).
    ("history/80ba85510320/awesome-release__AI-Examples__.release__fine_tune_application_template.yaml", "unknown-task"),
    ("history/ffc88d6ff513/awesome-release__AI-Examples__.release__fine_tune_application_template.yaml", "unknown-task"),
    (
        "history/db451f7eee8c/releasehub-samples__bring-your-own-terraform-example__examples__aws-s3-backend__.release__application_template.yaml",
        "unknown-task",
    ),
];

/// The Release files of the corpus by SOURCES.md: kind `release-config` in the main table,
/// and every file of `history/` (older revisions of Release files).
fn release_files() -> Vec<String> {
    let sources = std::fs::read_to_string(corpus_dir().join("SOURCES.md")).expect("SOURCES.md");
    let mut files = Vec::new();
    let mut section = "";
    for line in sources.lines() {
        if let Some(h) = line.strip_prefix("## ") {
            section = if h.starts_with("Main") {
                "main"
            } else if h.starts_with("history") {
                "history"
            } else {
                ""
            };
            continue;
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 6 || !cells[1].starts_with('`') {
            continue;
        }
        let file = cells[1].trim_matches('`').to_owned();
        match section {
            "main" if cells[5] == "release-config" => files.push(file),
            "history" => files.push(file),
            _ => {}
        }
    }
    files
}

#[test]
fn every_release_file_loads() {
    let files = release_files();
    assert!(files.len() > 250, "expected the whole corpus, found {} files", files.len());
    let mut by_kind: BTreeMap<&str, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    for f in &files {
        let src = std::fs::read_to_string(corpus_dir().join(f)).unwrap_or_else(|e| panic!("read {f}: {e}"));
        let doc = document::check(f, &src, None);
        *by_kind.entry(doc.kind.as_str()).or_default() += 1;
        let errors: Vec<_> = doc.diagnostics.iter().filter(|d| d.is_error()).collect();
        if let Some((_, line)) = INVALID_YAML.iter().find(|(n, _)| n == f) {
            let ok = errors.len() == 1 && errors[0].code == "yaml-syntax" && errors[0].line == *line;
            if !ok {
                failures.push(format!("{f}: expected one yaml-syntax error at line {line}, got {errors:?}"));
            }
        } else if let Some((_, code)) = GENUINE_MISTAKES.iter().find(|(n, _)| n == f) {
            if !errors.iter().any(|e| e.code == *code) {
                failures.push(format!("{f}: expected a `{code}` error, got {errors:?}"));
            }
        } else if !errors.is_empty() {
            failures.push(format!(
                "{f}: {}",
                errors.iter().map(|e| format!("{}:{} {}", e.line, e.column, e.message)).collect::<Vec<_>>().join("; ")
            ));
        }
        if doc.kind == Kind::Template && !doc.has_errors() {
            assert!(doc.template.is_some(), "{f}: no model");
        }
    }
    assert!(failures.is_empty(), "{} corpus files misbehave:\n{}", failures.len(), failures.join("\n"));
    // Every kind of Release file is represented.
    for kind in ["template", "env-vars", "release-yaml"] {
        assert!(by_kind.get(kind).copied().unwrap_or(0) > 10, "too few {kind} files: {by_kind:?}");
    }
}

#[test]
fn known_irregularities_are_warnings() {
    let check = |f: &str| {
        let src = std::fs::read_to_string(corpus_dir().join(f)).expect("read");
        document::check(f, &src, None)
    };
    // Duplicate top-level `hostnames`: the last one wins, with a warning.
    let d = check("releasehub-samples__telepresence-quickstart__example-app__app-template.yaml");
    assert!(d.diagnostics.iter().any(|x| x.code == "duplicate-key" && !x.is_error()), "{:?}", d.diagnostics);
    // Typos Release accepted: `dokcerfile`, `namme`.
    let d = check("dustyspace__amundsen__.release__application_template.yaml");
    let typo = d.diagnostics.iter().find(|x| x.code == "unknown-key" && x.message.contains("namme")).expect("namme reported");
    assert_eq!(typo.hint.as_deref(), Some("did you mean `name`?"));
    // Two workflows named `setup`.
    let d = check("releasehub-samples__terraform-runner-example__release-config-examples__example-application-template.yaml");
    assert!(d.diagnostics.iter().any(|x| x.code == "duplicate-workflow"), "{:?}", d.diagnostics);
    // A kind cluster config kept in `.release/`.
    let d = check("radiantlogic-devops__helm__.release__kind.yaml");
    assert_eq!(d.kind, Kind::Foreign);
    // Raw Kubernetes `manifests` in `.release.yaml`: said to be ignored, at their line.
    let d = check("agentreno__distributed-tracing__.release.yaml");
    assert!(d.diagnostics.iter().any(|x| x.code == "ignored-key" && x.message.contains("`manifests` are ignored")), "{:?}", d.diagnostics);
    // Unquoted booleans and numbers in variable values are the strings they spell.
    let d = check("Rukio__nx-repo__.release__environment_variables.yaml");
    let errors: Vec<_> = d.diagnostics.iter().filter(|x| x.is_error()).collect();
    assert!(errors.iter().all(|x| x.code == "unsupported"), "only its `$secrets.*` references are refused: {errors:?}");
}
