//! Hermetic scenarios of app imports: applications in a temporary SQLite store, repositories as
//! a map of branches.

use offshoot_control::imports::{ImportError, ImportInfo, ImportPlan, RepoError, Repos, Request, plan};
use offshoot_store::{App, Store};
use offshoot_template::document::{self, Kind};
use offshoot_template::model::Template;
use std::collections::BTreeMap;

/// Repository → its branches; a repository named `broken` cannot be fetched.
#[derive(Default)]
struct Branches(BTreeMap<String, Vec<String>>);

impl Repos for Branches {
    async fn has_branch(&self, repo: &str, branch: &str) -> Result<bool, RepoError> {
        if repo == "broken" {
            return Err(RepoError("connection refused".into()));
        }
        Ok(self.0.get(repo).is_some_and(|b| b.iter().any(|x| x == branch)))
    }
}

struct World {
    store: Store,
    repos: Branches,
    _dir: tempfile::TempDir,
}

impl World {
    async fn new() -> World {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = Store::open(&format!("sqlite://{}", dir.path().join("offshoot.db").display())).await.expect("store");
        World { store, repos: Branches::default(), _dir: dir }
    }

    /// An application `name` whose repository has `branches` (the first is its default).
    async fn app(&mut self, name: &str, template: &str, branches: &[&str]) {
        let app = App { name: name.into(), repo: format!("repo-{name}"), default_branch: branches[0].into(), created_at: 0 };
        self.store.create_app(&app, template, "").await.expect("create the app");
        self.repos.0.insert(app.repo, branches.iter().map(|b| (*b).to_owned()).collect());
    }

    async fn plan(&self, template: &str, branch: &str, labels: Option<&[String]>) -> Result<ImportPlan, ImportError> {
        self.plan_for(template, branch, None, labels).await
    }

    async fn plan_for(
        &self,
        template: &str,
        branch: &str,
        env_template: Option<&str>,
        labels: Option<&[String]>,
    ) -> Result<ImportPlan, ImportError> {
        let t = template_of(template);
        plan(
            &self.store,
            &self.repos,
            Request {
                importer: "front",
                template: &t,
                branch,
                environment_template: env_template,
                labels,
                runtime: offshoot_template::ledger::Runtime::Docker,
            },
        )
        .await
    }
}

fn template_of(yaml: &str) -> Template {
    let doc = document::check("application_template.yaml", yaml, Some(Kind::Template));
    assert!(!doc.has_errors(), "{:?}", doc.diagnostics);
    doc.template.expect("template")
}

fn svc(name: &str) -> String {
    format!("- name: {name}\n  image: busybox:stable\n")
}

fn app_with(name: &str, services: &[&str], extra: &str) -> String {
    format!("app: {name}\n{extra}services:\n{}", services.iter().map(|s| svc(s)).collect::<String>())
}

fn front(imports: &str) -> String {
    format!("app: front\napp_imports:\n{imports}services:\n{}", svc("web"))
}

fn branches(p: &ImportPlan) -> Vec<(String, String, String)> {
    p.imports.iter().map(|i| (i.app.name.to_string(), i.branch.clone(), i.info.reason.clone())).collect()
}

fn refused(r: Result<ImportPlan, ImportError>) -> ImportError {
    match r {
        Ok(p) => panic!("the imports were accepted: {:?}", branches(&p)),
        Err(e) => e,
    }
}

#[tokio::test]
async fn imports_come_in_order_each_on_the_branch_of_the_same_name_when_it_exists() {
    let mut w = World::new().await;
    w.app("api", &app_with("api", &["api"], ""), &["main", "feature/x"]).await;
    w.app("admin", &app_with("admin", &["admin"], ""), &["main"]).await;
    let p = w.plan(&front("- name: api\n- name: admin\n"), "feature/x", None).await.expect("plans");
    assert_eq!(
        branches(&p),
        vec![("api".into(), "feature/x".into(), "same-name branch".into()), ("admin".into(), "main".into(), "fell back to main".into())]
    );
    assert!(p.warnings.is_empty());
}

#[tokio::test]
async fn an_import_falls_back_to_its_tracking_branch_before_its_default_branch() {
    let mut w = World::new().await;
    w.app("api", &app_with("api", &["api"], "tracking_branch: develop\n"), &["main", "develop"]).await;
    let p = w.plan(&front("- name: api\n"), "feature/x", None).await.expect("plans");
    assert_eq!(branches(&p), vec![("api".into(), "develop".into(), "fell back to its tracking branch develop".into())]);
}

#[tokio::test]
async fn an_explicit_branch_wins_and_must_exist() {
    let mut w = World::new().await;
    w.app("api", &app_with("api", &["api"], ""), &["main", "stable", "feature/x"]).await;
    let p = w.plan(&front("- name: api\n  branch: stable\n"), "feature/x", None).await.expect("plans");
    assert_eq!(branches(&p), vec![("api".into(), "stable".into(), "explicit branch".into())]);
    let e = refused(w.plan(&front("- name: api\n  branch: gone\n"), "main", None).await);
    assert_eq!(e.to_string(), "import `api`: branch `gone` does not exist in `repo-api`");
}

#[tokio::test]
async fn an_application_that_imports_itself_is_refused() {
    let w = World::new().await;
    let e = refused(w.plan(&front("- name: front\n"), "main", None).await);
    assert!(matches!(e, ImportError::SelfImport(ref a) if a == "front"), "{e}");
}

#[tokio::test]
async fn an_unknown_application_is_refused_with_the_ones_that_exist() {
    let mut w = World::new().await;
    w.app("api", &app_with("api", &["api"], ""), &["main"]).await;
    let e = refused(w.plan(&front("- name: billing\n"), "main", None).await);
    assert_eq!(e.to_string(), "import `billing`: there is no application `billing`");
    assert!(e.hint().is_some_and(|h| h.contains("applications: api")), "{:?}", e.hint());
}

#[tokio::test]
async fn an_import_back_to_the_importer_is_a_cycle() {
    let mut w = World::new().await;
    w.app("api", &format!("app: api\napp_imports:\n- name: front\nservices:\n{}", svc("api")), &["main"]).await;
    let e = refused(w.plan(&front("- name: api\n"), "main", None).await);
    assert_eq!(e.to_string(), "import cycle: `front` imports `api`, which imports `front`");
}

#[tokio::test]
async fn imports_of_an_import_are_not_brought_along_and_the_user_is_told() {
    let mut w = World::new().await;
    w.app("api", &format!("app: api\napp_imports:\n- name: db\nservices:\n{}", svc("api")), &["main"]).await;
    w.app("db", &app_with("db", &["db"], ""), &["main"]).await;
    let p = w.plan(&front("- name: api\n"), "main", None).await.expect("plans");
    assert_eq!(p.imports.len(), 1);
    assert_eq!(p.warnings, vec!["`api` imports `db`: imports are not recursive, so those are not brought along"]);
}

#[tokio::test]
async fn two_applications_defining_one_service_name_are_refused_with_a_way_out() {
    let mut w = World::new().await;
    w.app("api", &app_with("api", &["api", "web"], ""), &["main"]).await;
    let e = refused(w.plan(&front("- name: api\n"), "main", None).await);
    assert!(e.to_string().starts_with("service `web` is defined by both `front` and `api`"), "{e}");
    assert!(e.hint().is_some_and(|h| h.contains("exclude_services")), "{:?}", e.hint());
}

#[tokio::test]
async fn exclude_services_leaves_a_service_out_and_is_recorded() {
    let mut w = World::new().await;
    w.app("api", &app_with("api", &["api", "web"], ""), &["main"]).await;
    let p = w.plan(&front("- name: api\n  exclude_services:\n  - name: web\n"), "main", None).await.expect("plans");
    assert_eq!(p.imports[0].info.exclude, vec!["web"]);
}

#[tokio::test]
async fn excluding_a_service_the_import_does_not_have_is_refused() {
    let mut w = World::new().await;
    w.app("api", &app_with("api", &["api"], ""), &["main"]).await;
    let e = refused(w.plan(&front("- name: api\n  exclude_services:\n  - name: cache\n"), "main", None).await);
    assert_eq!(e.to_string(), "import `api`: `exclude_services` names `cache`, which is not a service of `api`");
}

#[tokio::test]
async fn pull_request_labels_decide_whether_an_import_comes_for_a_pull_request() {
    let mut w = World::new().await;
    w.app("api", &app_with("api", &["api"], ""), &["main"]).await;
    let yaml = front("- name: api\n  pull_request_labels: [full-stack]\n");
    let without = w.plan(&yaml, "main", Some(&["docs".to_owned()])).await.expect("plans");
    assert!(without.imports.is_empty());
    assert_eq!(without.warnings, vec!["`api` is not imported: the pull request carries none of its `pull_request_labels` (full-stack)"]);
    let with = w.plan(&yaml, "main", Some(&["full-stack".to_owned()])).await.expect("plans");
    assert_eq!(with.imports.len(), 1);
    // Not a pull request's environment: every import comes.
    assert_eq!(w.plan(&yaml, "main", None).await.expect("plans").imports.len(), 1);
}

#[tokio::test]
async fn an_import_runs_the_importers_environment_template_when_it_has_one_else_ephemeral() {
    let mut w = World::new().await;
    w.app("api", &app_with("api", &["api"], "environment_templates:\n- name: ephemeral\n- name: permanent\n"), &["main"]).await;
    w.app("admin", &app_with("admin", &["admin"], ""), &["main"]).await;
    let p = w.plan_for(&front("- name: api\n- name: admin\n"), "main", Some("permanent"), None).await.expect("plans");
    assert_eq!(p.imports[0].environment_template.as_deref(), Some("permanent"));
    assert_eq!(p.imports[1].environment_template, None);
    let p = w.plan_for(&front("- name: api\n"), "main", Some("staging"), None).await.expect("plans");
    assert_eq!(p.imports[0].environment_template.as_deref(), Some("ephemeral"));
}

#[tokio::test]
async fn what_the_importer_names_must_exist_in_it_or_an_import() {
    let mut w = World::new().await;
    w.app("api", &app_with("api", &["api", "docs"], ""), &["main"]).await;
    let yaml = format!(
        "app: front\napp_imports:\n- name: api\n  exclude_services:\n  - name: docs\nhostnames:\n- docs: docs-${{env_id}}.${{domain}}\nservices:\n{}",
        svc("web")
    );
    let doc = document::check("application_template.yaml", &yaml, Some(Kind::Template));
    let t = doc.template.expect("template");
    let e = refused(
        plan(
            &w.store,
            &w.repos,
            Request {
                importer: "front",
                template: &t,
                branch: "main",
                environment_template: None,
                labels: None,
                runtime: offshoot_template::ledger::Runtime::Docker,
            },
        )
        .await,
    );
    assert_eq!(e.to_string(), "the hostnames entry for `docs` names no service of `front` or of its imports");
    // A workflow task naming an imported service is fine.
    let ok = w
        .plan(&format!("{}workflows:\n- name: setup\n  order_from: [services.api, services.web]\n", front("- name: api\n")), "main", None)
        .await;
    assert!(ok.is_ok(), "{:?}", ok.err());
}

#[tokio::test]
async fn an_imported_application_with_an_invalid_template_is_refused_with_its_diagnostics() {
    let mut w = World::new().await;
    w.app("api", "app: api\nservices:\n- name: api\n  replicas: many\n", &["main"]).await;
    let e = refused(w.plan(&front("- name: api\n"), "main", None).await);
    match e {
        ImportError::InvalidTemplate { name, diagnostics } => {
            assert_eq!(name, "api");
            assert!(diagnostics.iter().any(|d| d.line == 4), "{diagnostics:?}");
        }
        other => panic!("{other}"),
    }
}

#[tokio::test]
async fn an_imported_application_the_engines_cannot_run_is_refused() {
    let mut w = World::new().await;
    w.app("api", &format!("{}charts:\n- name: redis\n  directory: charts/redis\n", app_with("api", &["api"], "")), &["main"]).await;
    let e = refused(w.plan(&front("- name: api\n"), "main", None).await);
    assert_eq!(
        e.to_string(),
        "import `api`: the template uses what Docker refuses: `charts` (line 5): Helm `charts` cannot run here: Offshoot has no Helm runner; run the chart's images as `services` (with `jobs` for its hooks)"
    );
}

#[tokio::test]
async fn a_repository_that_cannot_be_fetched_is_named() {
    let mut w = World::new().await;
    w.app("api", &app_with("api", &["api"], ""), &["main"]).await;
    w.store.delete_app("api").await.expect("delete");
    let app = App { name: "api".into(), repo: "broken".into(), default_branch: "main".into(), created_at: 0 };
    w.store.create_app(&app, &app_with("api", &["api"], ""), "").await.expect("create");
    let e = refused(w.plan(&front("- name: api\n"), "main", None).await);
    assert_eq!(e.to_string(), "import `api`: cannot fetch `broken`: connection refused");
}

#[test]
fn an_import_record_that_cannot_be_read_is_an_empty_one() {
    let mut env = offshoot_store::Environment {
        id: "e1".into(),
        app: "api".into(),
        branch: "main".into(),
        commit_sha: None,
        environment_template: None,
        status: offshoot_store::EnvStatus::Ready,
        reason: None,
        template: String::new(),
        env_vars: String::new(),
        expires_at: None,
        created_at: 0,
        updated_at: 0,
        parent_id: Some("e0".into()),
        import_info: Some("not json".into()),
        pull_request: None,
        sleeping_since: None,
        last_request_at: None,
        idle_sleep_seconds: None,
        parameters: None,
    };
    assert_eq!(ImportInfo::of(&env), ImportInfo::default());
    let info = ImportInfo { reason: "explicit branch".into(), exclude: vec!["docs".into()], warnings: vec![] };
    env.import_info = Some(serde_json::to_string(&info).expect("json"));
    assert_eq!(ImportInfo::of(&env), info);
}
