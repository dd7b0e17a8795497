//! Our docker-compose generator against the templates Release generated for the same
//! repositories. Each snapshot lists, per service, the fields that differ; `COMPARISON.md`
//! beside this file explains every remaining difference.

use crate::corpus_dir;
use offshoot_template::compose::{self, Options};
use offshoot_template::document;
use offshoot_template::model::{Service, Template};
use std::collections::BTreeSet;

/// (snapshot name, compose file, Release's template), all in the corpus.
const PAIRS: &[(&str, &str, &str)] = &[
    (
        "releasehub-com_example-voting-app",
        "releasehub-com__example-voting-app__docker-compose.yml",
        "releasehub-com__example-voting-app__.release__application_template.yaml",
    ),
    (
        "dockersamples_example-voting-app",
        "dockersamples__example-voting-app__docker-compose.yml",
        "dockersamples__example-voting-app__.release__application_template.yaml",
    ),
    (
        "awesome-release_example-voting-app-1",
        "awesome-release__example-voting-app-1__docker-compose.yml",
        "awesome-release__example-voting-app-1__.release__application_template.yaml",
    ),
    (
        "awesome-release_genai-stack",
        "awesome-release__genai-stack__docker-compose.yml",
        "awesome-release__genai-stack__.release__application_template.yaml",
    ),
    (
        "awesome-release_nginx-golang",
        "awesome-release__nginx-golang__docker-compose.yml",
        "awesome-release__nginx-golang__.release__application_template.yaml",
    ),
    (
        "awesome-release_opentelemetry-demo",
        "awesome-release__opentelemetry-demo__docker-compose.yml",
        "awesome-release__opentelemetry-demo__.release__application_template.yaml",
    ),
    (
        "awesome-release_release-terraform-flask-redis",
        "awesome-release__release-terraform-flask-redis__compose.yaml",
        "awesome-release__release-terraform-flask-redis__.release__application_template.yaml",
    ),
    (
        "dustyspace_laravel-example",
        "dustyspace__laravel-example__docker-compose.yml",
        "dustyspace__laravel-example__.release__application_template.yaml",
    ),
    (
        "dustyspace_spring-postgres",
        "dustyspace__spring-postgres__docker-compose.yaml",
        "dustyspace__spring-postgres__.release__application_template.yaml",
    ),
    (
        "elanderholm_sidekiq_rails_postgres_redis",
        "elanderholm__sidekiq_rails_postgres_redis__docker-compose.yml",
        "elanderholm__sidekiq_rails_postgres_redis__.release__application_template.yaml",
    ),
    ("jstotz_apache-php", "jstotz__apache-php__docker-compose.yaml", "jstotz__apache-php__.release__application_template.yaml"),
    (
        "releasehub-com_click-mania-test",
        "releasehub-com__click-mania-test__docker-compose.yml",
        "releasehub-com__click-mania-test__.release__application_template.yaml",
    ),
    (
        "mssql-stored-procedures",
        "releasehub-samples__mssql-stored-procedures-automated-testing-with-releasehub__docker-compose.yml",
        "releasehub-samples__mssql-stored-procedures-automated-testing-with-releasehub__.release__application_template.yaml",
    ),
    (
        "ritza-releasehub-free_rainbow-test",
        "ritza-releasehub-free__rainbow-test__docker-compose.yml",
        "ritza-releasehub-free__rainbow-test__.release__application_template.yaml",
    ),
    ("zacharyelston_zr1_vapp", "zacharyelston__zr1__vapp__docker-compose.yml", "zacharyelston__zr1__.release__application_template.yaml"),
];

fn ports(s: &Service) -> String {
    let mut p: Vec<String> = s
        .ports
        .iter()
        .flatten()
        .map(|p| {
            let kind = p.kind.as_ref().map_or("?", |k| k.value.as_str());
            let port = p.port.as_ref().map_or("?", |x| x.as_str());
            match &p.target_port {
                Some(t) => format!("{kind} {port}->{t}"),
                None => format!("{kind} {port}"),
            }
        })
        .collect();
    p.sort();
    p.join(", ")
}

fn words(w: &Option<Vec<offshoot_template::span::Text>>) -> String {
    w.as_ref().map_or_else(|| "-".to_owned(), |w| w.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(" "))
}

fn volumes(s: &Service) -> String {
    let v: Vec<String> = s
        .volumes
        .iter()
        .flatten()
        .map(|v| format!("{}:{}", v.name.as_ref().map_or("?", |n| n.as_str()), v.mount_path.as_ref().map_or("?", |m| m.as_str())))
        .collect();
    v.join(", ")
}

fn has_hostname(t: &Template, s: &str) -> bool {
    t.hostnames.iter().any(|h| h.service.as_str() == s)
}

fn compare(ours: &Template, release: &Template) -> (String, usize, usize) {
    let names: BTreeSet<&str> = ours.services.iter().chain(&release.services).map(|s| s.name.as_str()).collect();
    let mut out = String::new();
    let (mut same, mut total) = (0, 0);
    for n in names {
        match (ours.service(n), release.service(n)) {
            (Some(o), Some(r)) => {
                let fields = [
                    (
                        "image",
                        o.image.as_ref().map_or("-", |i| i.as_str()).to_owned(),
                        r.image.as_ref().map_or("-", |i| i.as_str()).to_owned(),
                    ),
                    (
                        "has_repo",
                        o.has_repo.as_ref().is_some_and(|b| b.value).to_string(),
                        r.has_repo.as_ref().is_some_and(|b| b.value).to_string(),
                    ),
                    ("ports", ports(o), ports(r)),
                    ("args", words(&o.args), words(&r.args)),
                    ("command", words(&o.command), words(&r.command)),
                    ("hostname", has_hostname(ours, n).to_string(), has_hostname(release, n).to_string()),
                    ("volumes", volumes(o), volumes(r)),
                ];
                let diffs: Vec<String> =
                    fields.iter().filter(|(_, a, b)| a != b).map(|(f, a, b)| format!("    {f}: ours `{a}` / release `{b}`\n")).collect();
                total += fields.len();
                same += fields.len() - diffs.len();
                if diffs.is_empty() {
                    out.push_str(&format!("service {n}: same\n"));
                } else {
                    out.push_str(&format!("service {n}:\n{}", diffs.concat()));
                }
            }
            (Some(_), None) => out.push_str(&format!("service {n}: only ours\n")),
            (None, Some(_)) => out.push_str(&format!("service {n}: only release\n")),
            (None, None) => {}
        }
    }
    (out, same, total)
}

#[test]
fn generated_templates_match_release() {
    let mut same_all = 0;
    let mut total_all = 0;
    for (name, compose_file, template_file) in PAIRS {
        let read = |f: &str| std::fs::read_to_string(corpus_dir().join(f)).unwrap_or_else(|e| panic!("read {f}: {e}"));
        let release_doc = document::check(template_file, &read(template_file), None);
        let release = release_doc.template.unwrap_or_else(|| panic!("{template_file} does not load"));
        let opts = Options {
            repo_name: release.repo_name.as_ref().map(|r| r.value.clone()),
            app: release.app.as_ref().map(|a| a.value.clone()),
            ..Options::default()
        };
        let (generated, diags) = compose::generate(compose_file, &read(compose_file), &opts);
        let generated = generated.unwrap_or_else(|| panic!("{compose_file}: {diags:?}"));
        // What we generate must itself be a valid template.
        let yaml = generated.template_yaml();
        let reread = document::check("generated", &yaml, Some(document::Kind::Template));
        assert!(!reread.has_errors(), "{name}: generated template is invalid: {:?}\n{yaml}", reread.diagnostics);
        let (text, same, total) = compare(&generated.template, &release);
        same_all += same;
        total_all += total;
        insta::assert_snapshot!(*name, format!("{same} of {total} compared fields agree\n{text}"));
    }
    // The generator must agree with Release on the clear majority of fields.
    assert!(same_all * 100 >= total_all * 75, "only {same_all} of {total_all} fields agree");
}
