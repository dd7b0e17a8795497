//! Every Application Template of the conformance corpus (`../shared/corpus/release`, history
//! included) and the example app, rendered for Kubernetes and checked by `kubernetes-validate
//! --strict` against the Kubernetes 1.37 schemas (offline; `scripts/services` installs it); and
//! snapshots of the manifests of representative templates.

use offshoot_manifests::{Certificate, IngressTls, Options, render, to_yaml};
use offshoot_template::document::{self, Kind};
use offshoot_template::resolve;
use offshoot_template::secret::SecretString;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into())).join("../..")
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).expect("read dir").filter_map(|e| e.ok()).map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(p);
        }
    }
}

/// The manifests of a template file (with the environment variables file beside it, if any),
/// or `None` when the file is not a valid Application Template (the corpus keeps invalid files:
/// Release accepted some that Offshoot reports, with their line).
fn render_file(path: &Path, env_vars: Option<&Path>) -> Option<(String, Vec<String>)> {
    let src = std::fs::read_to_string(path).expect("read");
    let name = path.display().to_string();
    let doc = document::check(&name, &src, None);
    if doc.kind != Kind::Template || doc.has_errors() {
        return None;
    }
    let root = doc.root.unwrap_or_else(|| panic!("{name} does not parse"));
    let vars = env_vars.and_then(|p| document::check("vars", &std::fs::read_to_string(p).ok()?, Some(Kind::EnvVars)).env_vars);
    let opts = resolve::Options { branch: "main".into(), env_id: "corpus1".into(), domain: "example.com".into(), ..Default::default() };
    let r = resolve::resolve(&name, &root, vars.as_ref(), &opts).unwrap_or_else(|d| panic!("{name} does not resolve: {d:?}"));
    let mut o = Options::new("offshoot-corpus1", "test");
    // Static sites then render too (a Service without pods, an EndpointSlice to the router).
    o.static_upstream = Some(std::net::SocketAddr::from(([10, 0, 0, 5], 8080)));
    let rendered = render(&r, &o);
    assert!(!rendered.manifests.is_empty());
    Some((to_yaml(&rendered.manifests).unwrap_or_else(|e| panic!("{name}: {e}")), rendered.warnings))
}

fn kubernetes_validate() -> PathBuf {
    let candidates = [std::env::var("KUBERNETES_VALIDATE").unwrap_or_default(), "/opt/offshoot-kv/bin/kubernetes-validate".into()];
    candidates
        .iter()
        .filter(|c| !c.is_empty())
        .map(PathBuf::from)
        .find(|p| p.exists())
        .or_else(|| Command::new("kubernetes-validate").arg("--version").output().ok().map(|_| PathBuf::from("kubernetes-validate")))
        .expect("kubernetes-validate is installed: run `bash scripts/services`")
}

/// A template (checked valid) resolved with `opts`.
fn resolved(template: &str, opts: &resolve::Options) -> resolve::Resolved {
    let doc = document::check("t.yaml", template, Some(Kind::Template));
    assert!(!doc.has_errors(), "{:?}", doc.diagnostics);
    resolve::resolve("t.yaml", &doc.root.expect("root"), None, opts).expect("resolves")
}

/// `kubernetes-validate --strict` accepts these manifests.
fn assert_valid(yaml: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("manifests.yaml");
    std::fs::write(&file, yaml).expect("write");
    let v = Command::new(kubernetes_validate())
        .args(["--strict", "--kubernetes-version", "1.37.0", "--quiet"])
        .arg(&file)
        .output()
        .expect("run kubernetes-validate");
    assert!(v.status.success(), "{}{}", String::from_utf8_lossy(&v.stdout), String::from_utf8_lossy(&v.stderr));
}

#[test]
fn every_corpus_template_renders_valid_manifests() {
    let corpus = root().join("../shared/corpus/release");
    let mut files = Vec::new();
    yaml_files(&corpus, &mut files);
    let out = tempfile::tempdir().expect("tempdir");
    let mut rendered = Vec::new();
    for f in &files {
        if let Some((yaml, _)) = render_file(f, None) {
            let target = out.path().join(format!("{}.yaml", rendered.len()));
            std::fs::write(&target, yaml).expect("write");
            rendered.push((f.clone(), target));
        }
    }
    let example = root().join("examples/shop/.release");
    let (yaml, warnings) =
        render_file(&example.join("application_template.yaml"), Some(&example.join("environment_variables.yaml"))).expect("the example");
    assert!(warnings.is_empty(), "{warnings:?}");
    let target = out.path().join("example.yaml");
    std::fs::write(&target, yaml).expect("write");
    rendered.push((example, target));
    // The corpus has dozens of valid templates (and the history of several).
    assert!(rendered.len() > 40, "only {} of {} files rendered", rendered.len(), files.len());

    // The validator does reject what is wrong (an unknown field, under --strict).
    let bad = out.path().join("bad.yaml");
    std::fs::write(&bad, "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: x\n  nmespace: y\n").expect("write");
    let o = Command::new(kubernetes_validate())
        .args(["--strict", "--kubernetes-version", "1.37.0", "--quiet"])
        .arg(&bad)
        .output()
        .expect("run");
    assert!(!o.status.success(), "kubernetes-validate accepted an unknown field");

    let o = Command::new(kubernetes_validate())
        .args(["--strict", "--kubernetes-version", "1.37.0", "--quiet"])
        .args(rendered.iter().map(|(_, t)| t))
        .output()
        .expect("run kubernetes-validate");
    let report = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    if !o.status.success() {
        // Name the templates whose manifests failed.
        let failing: Vec<String> = rendered
            .iter()
            .filter(|(_, t)| report.contains(&t.display().to_string()))
            .map(|(src, t)| format!("{} ({})", src.display(), t.display()))
            .collect();
        panic!("kubernetes-validate --strict failed for:\n{}\n{report}", failing.join("\n"));
    }
}

fn snapshot_of(rel: &str) -> String {
    let path = root().join(rel);
    render_file(&path, None).expect("a template").0
}

#[test]
fn snapshots_of_representative_templates() {
    let example = root().join("examples/shop/.release");
    let (shop, _) =
        render_file(&example.join("application_template.yaml"), Some(&example.join("environment_variables.yaml"))).expect("the example");
    insta::assert_snapshot!("shop", shop);
    // Rules, ingress settings, stateful services and shared memory.
    insta::assert_snapshot!(
        "genai_stack",
        snapshot_of("../shared/corpus/release/awesome-release__genai-stack__.release__application_template.yaml")
    );
    // Many services, configmap mounts.
    insta::assert_snapshot!(
        "opentelemetry_demo",
        snapshot_of("../shared/corpus/release/awesome-release__opentelemetry-demo__.release__application_template.yaml")
    );
    // A stateful service: a StatefulSet with a claim template.
    insta::assert_snapshot!(
        "apache_php_plus",
        snapshot_of("../shared/corpus/release/watsonjon__apache-php-plus__.release__application-template.yaml")
    );
    // Service accounts with a cloud role.
    insta::assert_snapshot!(
        "cloudformation_dynamodb",
        snapshot_of("../shared/corpus/release/awesome-release__cloudformation_dynamodb__.release__application_template.yaml")
    );
}

#[test]
fn private_routes_load_balancers_and_secrets() {
    let template = "app: t\nrules:\n- service: admin\n  hostnames:\n  - admin-${env_id}.example.com\n  path: /\n  visibility: private\n- service: web\n  hostnames:\n  - web-${env_id}.example.com\n  path: /\nservices:\n- name: web\n  image: busybox:stable\n  ports:\n  - type: node_port\n    port: '8080'\n- name: admin\n  image: busybox:stable\n  ports:\n  - type: node_port\n    port: '9090'\n- name: db\n  image: postgres:16\n  ports:\n  - type: container_port\n    port: '5432'\n    loadbalancer: true\n";
    let vars = "defaults:\n- key: TOKEN\n  value: s3cr3t-value\n  secret: true\n- key: MODE\n  value: demo\n";
    let doc = document::check("t.yaml", template, Some(Kind::Template));
    assert!(!doc.has_errors(), "{:?}", doc.diagnostics);
    let v = document::check("v.yaml", vars, Some(Kind::EnvVars)).env_vars;
    let opts = resolve::Options { branch: "main".into(), env_id: "abc1234".into(), domain: "example.com".into(), ..Default::default() };
    let r = resolve::resolve("t.yaml", &doc.root.expect("root"), v.as_ref(), &opts).expect("resolves");
    let printed = to_yaml(&render(&r, &Options::new("ns1", "i")).manifests).expect("yaml");
    assert!(!printed.contains("s3cr3t-value"), "a secret is printed");
    assert!(printed.contains("secretKeyRef:") && printed.contains("name: web-secrets"), "{printed}");
    let docs: Vec<&str> = printed.split("---\n").collect();
    let find = |kind: &str, name: &str| {
        docs.iter()
            .find(|d| d.contains(&format!("kind: {kind}\n")) && d.contains(&format!("  name: {name}\n")))
            .copied()
            .unwrap_or_else(|| panic!("no {kind} {name}"))
    };
    assert!(find("Ingress", "admin-abc1234-example-com-private").contains("ingressClassName: nginx-internal"));
    assert!(find("Ingress", "web-abc1234-example-com").contains("ingressClassName: nginx\n"));
    assert!(find("Service", "db").contains("type: LoadBalancer"));
    assert!(find("Service", "web").contains("type: ClusterIP"));
    // With reveal_secrets (to apply), the Secret holds the value.
    let mut o = Options::new("ns1", "i");
    o.reveal_secrets = true;
    assert!(to_yaml(&render(&r, &o).manifests).expect("yaml").contains("s3cr3t-value"));
}

/// HTTPS on the Ingresses: a certificate Offshoot keeps goes in the environment's own
/// `kubernetes.io/tls` Secret (its key masked in print), named by the Ingresses whose hosts it
/// covers and by no other; with cert-manager, every Ingress carries the issuer's annotation and a
/// Secret name of its own. Both are valid for Kubernetes.
#[test]
fn ingresses_are_served_over_https_with_the_kept_certificate_or_cert_manager() {
    let template = "app: t\nrules:\n- service: web\n  hostnames:\n  - web-${env_id}.example.com\n  - web.elsewhere.io\n  path: /\nservices:\n- name: web\n  image: busybox:stable\n  ports:\n  - type: node_port\n    port: '8080'\n";
    let opts = resolve::Options { branch: "main".into(), env_id: "abc1234".into(), domain: "example.com".into(), ..Default::default() };
    let r = resolved(template, &opts);
    let mut o = Options::new("ns1", "i");
    o.tls = IngressTls::Certificate(Certificate {
        names: vec!["*.example.com".into(), "example.com".into()],
        chain_pem: "-----BEGIN CERTIFICATE-----\nchain\n-----END CERTIFICATE-----\n".into(),
        key_pem: SecretString::new("-----BEGIN PRIVATE KEY-----\nk3y-value\n-----END PRIVATE KEY-----\n"),
    });
    let printed = to_yaml(&render(&r, &o).manifests).expect("yaml");
    assert!(!printed.contains("k3y-value"), "a key is printed:\n{printed}");
    let docs: Vec<&str> = printed.split("\n---\n").collect();
    let find = |kind: &str, name: &str| {
        docs.iter()
            .find(|d| d.contains(&format!("kind: {kind}\n")) && d.contains(&format!("  name: {name}\n")))
            .copied()
            .unwrap_or_else(|| panic!("no {kind} {name} in\n{printed}"))
    };
    let secret = find("Secret", "tls-abc1234");
    assert!(secret.contains("type: kubernetes.io/tls") && secret.contains("tls.crt:") && secret.contains("tls.key:"), "{secret}");
    let covered = find("Ingress", "web-abc1234-example-com");
    assert!(covered.contains("secretName: tls-abc1234") && covered.contains("- web-abc1234.example.com"), "{covered}");
    let other = find("Ingress", "web-elsewhere-io");
    assert!(!other.contains("tls:"), "a host the certificate does not cover names it: {other}");
    assert_valid(&printed);
    o.reveal_secrets = true;
    assert!(to_yaml(&render(&r, &o).manifests).expect("yaml").contains("k3y-value"));

    let mut o = Options::new("ns1", "i");
    o.tls = IngressTls::CertManager("letsencrypt-prod".into());
    let printed = to_yaml(&render(&r, &o).manifests).expect("yaml");
    assert!(!printed.contains("kubernetes.io/tls"), "cert-manager makes the Secrets: {printed}");
    for (name, host) in [("web-abc1234-example-com", "web-abc1234.example.com"), ("web-elsewhere-io", "web.elsewhere.io")] {
        let ingress =
            printed.split("\n---\n").find(|d| d.contains("kind: Ingress") && d.contains(&format!("  name: {name}\n"))).expect("ingress");
        assert!(ingress.contains("cert-manager.io/cluster-issuer: letsencrypt-prod"), "{ingress}");
        assert!(ingress.contains(&format!("secretName: {name}-tls")) && ingress.contains(&format!("- {host}")), "{ingress}");
    }
    assert_valid(&printed);
}

#[test]
fn jobs_have_their_own_resources_and_volumes_else_their_services() {
    let template = "app: t\nservices:\n- name: api\n  image: busybox:stable\n  memory:\n    limits: 256Mi\n  volumes:\n  - type: persistent\n    name: data\n    mount_path: /data\njobs:\n- name: migrate\n  from_services: api\n  command: [sh, -c, 'true']\n- name: seed\n  image: busybox:stable\n  memory:\n    limits: 64Mi\n  volumes:\n  - type: persistent\n    name: scratch\n    mount_path: /scratch\n  - type: shmem\n    name: fast\n    mount_path: /fast\n";
    let opts = resolve::Options { branch: "main".into(), env_id: "abc1234".into(), domain: "example.com".into(), ..Default::default() };
    let r = resolved(template, &opts);
    let printed = to_yaml(&render(&r, &Options::new("ns1", "i")).manifests).expect("yaml");
    let docs: Vec<&str> = printed.split("---\n").collect();
    let find = |kind: &str, name: &str| {
        docs.iter()
            .find(|d| d.contains(&format!("kind: {kind}\n")) && d.contains(&format!("  name: {name}\n")))
            .copied()
            .unwrap_or_else(|| panic!("no {kind} {name} in {printed}"))
    };
    // From its service: the service's limit and the service's claim.
    let migrate = find("Job", "job-migrate");
    assert!(
        migrate.contains("memory: 256Mi") && migrate.contains("claimName: api-data") && migrate.contains("mountPath: /data"),
        "{migrate}"
    );
    // Its own: its limit, a claim of its own, a memory directory.
    let seed = find("Job", "job-seed");
    assert!(seed.contains("memory: 64Mi") && seed.contains("claimName: seed-scratch") && seed.contains("medium: Memory"), "{seed}");
    find("PersistentVolumeClaim", "seed-scratch");
}

#[test]
fn cron_jobs_are_cron_jobs_that_run_one_at_a_time_in_utc() {
    let template = "app: t\nservices:\n- name: api\n  image: busybox:stable\n  memory:\n    limits: 256Mi\ncron_jobs:\n- name: nightly_report\n  from_services: api\n  schedule: '0 3 * * *'\n  command: [sh, -c, 'echo report']\n  envs:\n  - key: MODE\n    value: nightly\n";
    let opts = resolve::Options { branch: "main".into(), env_id: "abc1234".into(), domain: "example.com".into(), ..Default::default() };
    let r = resolved(template, &opts);
    let mut o = Options::new("ns1", "i");
    o.images.insert("api".into(), "registry.local/t/api:abc".into());
    let printed = to_yaml(&render(&r, &o).manifests).expect("yaml");
    let cron = printed.split("---\n").find(|d| d.contains("kind: CronJob\n")).unwrap_or_else(|| panic!("no CronJob in {printed}"));
    for want in [
        "name: cron-nightly-report",
        "schedule: 0 3 * * *",
        "timeZone: Etc/UTC",
        "concurrencyPolicy: Forbid",
        "image: registry.local/t/api:abc",
        "memory: 256Mi",
        "value: nightly",
    ] {
        assert!(cron.contains(want), "`{want}` missing from:\n{cron}");
    }
    assert!(!printed.contains("kind: Job\n"), "a cron job is no workflow job");
    // And the cluster's schema accepts it.
    assert_valid(&printed);
}

#[test]
fn a_job_of_its_own_build_runs_the_image_it_built() {
    let template =
        "app: t\nservices:\n- name: api\n  image: busybox:stable\njobs:\n- name: seed\n  image: acme/t/seed\n  build:\n    context: seed\n";
    let r = resolved(template, &resolve::Options::default());
    let mut o = Options::new("ns1", "i");
    let unbuilt = render(&r, &o);
    assert!(
        unbuilt.warnings.contains(&"job `seed` has no image".to_owned()),
        "not the name of an image never built: {:?}",
        unbuilt.warnings
    );
    o.images.insert(offshoot_manifests::job_image_key("seed"), "registry.local/t/job-seed:abc".into());
    let printed = to_yaml(&render(&r, &o).manifests).expect("yaml");
    assert!(printed.contains("image: registry.local/t/job-seed:abc"), "{printed}");
}

#[test]
fn file_secrets_are_a_secret_of_the_service_mounted_file_by_file_with_their_modes() {
    let template = "app: t\nservices:\n- name: db\n  image: busybox:stable\n  secret_files:\n  - name: db_pass\n  - name: tls.key\n    mount_path: /etc/tls/key.pem\n    mode: '0440'\n";
    let mut opts = resolve::Options::default();
    opts.secret_files.insert("db_pass".into(), offshoot_template::secret::SecretString::new("hunter2"));
    opts.secret_files.insert("tls.key".into(), offshoot_template::secret::SecretString::new("KEY"));
    let r = resolved(template, &opts);
    let printed = to_yaml(&render(&r, &Options::new("ns1", "i")).manifests).expect("yaml");
    assert!(!printed.contains("hunter2"), "masked unless revealed: {printed}");
    for want in
        ["name: db-files", "mountPath: /run/secrets/db_pass", "subPath: db_pass", "mountPath: /etc/tls/key.pem", "mode: 288", "mode: 256"]
    {
        assert!(printed.contains(want), "`{want}` missing from:\n{printed}");
    }
    let mut revealed = Options::new("ns1", "i");
    revealed.reveal_secrets = true;
    assert!(to_yaml(&render(&r, &revealed).manifests).expect("yaml").contains("db_pass: hunter2"));
}

#[test]
fn registry_credentials_are_a_pull_secret_every_pod_names() {
    let template = "app: shop\nservices:\n- name: api\n  image: 127.0.0.1:5001/acme/api:1\njobs:\n- name: migrate\n  from_services: api\ncron_jobs:\n- name: nightly\n  from_services: api\n  schedule: '@daily'\n";
    let r = resolved(template, &resolve::Options { app: Some("shop".into()), ..Default::default() });
    let mut o = Options::new("ns1", "i");
    o.registry_auths.insert("127.0.0.1:5001".into(), ("ci".into(), offshoot_template::secret::SecretString::new("hunter2")));
    assert!(!format!("{o:?}").contains("hunter2"), "options never print a password");
    let printed = to_yaml(&render(&r, &o).manifests).expect("yaml");
    assert!(!printed.contains("hunter2"), "masked unless revealed: {printed}");
    let secret = printed.split("---\n").find(|d| d.contains("type: kubernetes.io/dockerconfigjson")).unwrap_or_else(|| panic!("{printed}"));
    assert!(secret.contains("name: registry-shop") && secret.contains("127.0.0.1:5001"), "{secret}");
    assert_eq!(printed.matches("imagePullSecrets:\n").count(), 3, "the deployment, the job and the cron job: {printed}");
    let mut revealed = o.clone();
    revealed.reveal_secrets = true;
    assert!(to_yaml(&render(&r, &revealed).manifests).expect("yaml").contains("hunter2"));
    // The cluster's schema accepts them.
    assert_valid(&printed);
}
