//! Stores written by earlier schemas open with everything they hold. `fixtures/v0` was written by
//! a real `offshoot server` of schema v0 (migrations 0001-0006; see `fixtures/v0/make`), once
//! with SQLite and once with PostgreSQL: applications and versions, secrets, git settings,
//! environments (one ready, one deleted) with deployments, steps, services and build logs, a
//! webhook delivery, a dataset with a leased clone, a static site, tokens. Every later schema
//! must open them through its migrations and lose none of it.

use offshoot_store::Store;
use offshoot_store::{DeploymentStatus, EnvStatus, ServiceStatus};
use std::path::{Path, PathBuf};

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()))
        .join("tests/fixtures/v0")
        .join(rel)
}

/// What the fixture's server was given and did, read back through the store.
async fn holds_everything_v0_held(store: &Store) {
    assert!(store.token_count().await.expect("tokens") >= 1);

    let apps = store.apps().await.expect("apps");
    assert_eq!(apps.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(), ["shop"]);
    let mut versions = store.versions("shop").await.expect("versions");
    versions.sort_by_key(|v| v.version);
    // 1: created from the repository; 2: variables edited; 3: GitOps, from the pushed commit.
    assert_eq!(versions.iter().map(|v| v.version).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(versions[0].template.contains("name: site") && versions[0].env_vars.contains("value: info"), "{:?}", versions[0]);
    assert!(versions[1].env_vars.contains("value: debug"), "{:?}", versions[1]);
    assert!(versions[2].env_vars.contains("value: info"), "{:?}", versions[2]);

    let secrets = store.secrets("shop").await.expect("secrets");
    let mut keys: Vec<(&str, &str)> = secrets.iter().map(|s| (s.key.as_str(), s.service.as_str())).collect();
    keys.sort_unstable();
    assert_eq!(keys, [("API_KEY", ""), ("API_ONLY", "api")]);
    for s in &secrets {
        assert!(!s.ciphertext.is_empty() && !s.ciphertext.contains("s3cret-value") && !s.ciphertext.contains("for-api-only"), "{s:?}");
    }
    let git = store.app_git("shop").await.expect("app_git").expect("git settings");
    assert_eq!((git.pull_requests, git.pull_request_label.as_deref()), (1, Some("preview")));
    assert!(!git.webhook_secret.is_empty());
    assert_eq!(git.static_builder, None);

    let envs = store.envs(Some("shop"), true).await.expect("envs");
    assert_eq!(envs.len(), 2, "{envs:?}");
    let ready = envs.iter().find(|e| e.status == EnvStatus::Ready).expect("a ready environment");
    let deleted = envs.iter().find(|e| e.status == EnvStatus::Deleted).expect("a deleted environment");
    assert_eq!(ready.environment_template.as_deref(), Some("ephemeral"));
    assert_eq!(deleted.environment_template.as_deref(), Some("permanent"));
    assert!(ready.commit_sha.as_ref().is_some_and(|c| c.len() == 40), "{ready:?}");
    assert!(ready.template.contains("name: site"), "the forked template is kept");

    let deployments = store.deployments(&ready.id).await.expect("deployments");
    let mut workflows: Vec<&str> = deployments.iter().map(|d| d.workflow.as_str()).collect();
    workflows.sort_unstable();
    // setup, patch of a new commit, then setup again for the configuration that push carried.
    assert_eq!(workflows, ["patch", "setup", "setup"], "{deployments:?}");
    let commits: std::collections::BTreeSet<_> = deployments.iter().map(|d| d.commit_sha.clone()).collect();
    assert_eq!(commits.len(), 2, "two commits deployed: {deployments:?}");
    for d in &deployments {
        assert_eq!(d.status, DeploymentStatus::Succeeded, "{d:?}");
        assert!(d.phases.contains("ready"), "{d:?}");
        let steps = store.steps(&d.id).await.expect("steps");
        assert!(!steps.is_empty() && steps.iter().all(|s| s.status == "done"), "{steps:?}");
    }
    let mut site_logs = 0;
    for d in &deployments {
        site_logs +=
            store.build_logs(&d.id).await.expect("build logs").iter().filter(|(service, log)| service == "site" && !log.is_empty()).count();
    }
    assert!(site_logs >= 1, "the static build's log is kept");

    let services = store.services(&ready.id).await.expect("services");
    let mut names: Vec<&str> = services.iter().map(|s| s.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["api", "site", "store", "web"]);
    assert!(services.iter().all(|s| s.status == ServiceStatus::Ready), "{services:?}");
    let site = services.iter().find(|s| s.name == "site").expect("site");
    assert!(site.detail.site.as_ref().is_some_and(|k| k.len() == 32), "the static site's key is kept: {site:?}");
    let web = services.iter().find(|s| s.name == "web").expect("web");
    assert!(web.detail.image.as_ref().is_some_and(|i| i.starts_with("offshoot/shop/web:")), "the image is kept: {web:?}");
    let routing = web.detail.routing.as_ref().expect("the routing is kept");
    assert_eq!((routing.port, routing.routes.len()), (Some(8080), 1), "{web:?}");

    let teardown = store.deployments(&deleted.id).await.expect("deployments");
    assert!(teardown.iter().any(|d| d.workflow == "teardown" && d.status == DeploymentStatus::Succeeded), "{teardown:?}");

    let deliveries = store.deliveries("shop", 10).await.expect("deliveries");
    let d = deliveries.iter().find(|d| d.id.contains("fixture-delivery-1")).unwrap_or_else(|| panic!("no delivery: {deliveries:?}"));
    assert_eq!(d.status, "done", "{d:?}");
    assert!(d.finished_at.is_some() && d.result.as_deref().is_some_and(|r| r.contains("version 3")), "{d:?}");

    let datasets = store.datasets().await.expect("datasets");
    assert_eq!(datasets.len(), 1, "{datasets:?}");
    assert_eq!(datasets[0].name, "artists");
    let leases = store.leases(&ready.id).await.expect("leases");
    assert_eq!(leases.len(), 1, "{leases:?}");
    assert_eq!((leases[0].dataset.as_str(), leases[0].state.as_str()), ("artists", "leased"));
    assert!(store.leases(&deleted.id).await.expect("leases").is_empty());
}

#[tokio::test]
async fn a_v0_sqlite_store_opens_with_everything() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let db = tmp.path().join("offshoot.db");
    std::fs::copy(fixture("sqlite/offshoot.db"), &db).expect("copy the fixture");
    let store = Store::open(&format!("sqlite://{}", db.display())).await.expect("open the v0 store");
    holds_everything_v0_held(&store).await;
    store.close().await;
}

fn psql(url: &str, args: &[&str]) {
    let o = std::process::Command::new("psql")
        .args(["-q", "-v", "ON_ERROR_STOP=1", url])
        .args(args)
        .output()
        .expect("psql: run `bash scripts/services`");
    assert!(o.status.success(), "psql {args:?}: {}", String::from_utf8_lossy(&o.stderr));
}

/// A new PostgreSQL database loaded with the v0 dump: (admin URL, its URL, its name).
fn v0_postgres(prefix: &str) -> (String, String, String) {
    let admin = std::env::var("OFFSHOOT_TEST_POSTGRES").unwrap_or_else(|_| "postgres://offshoot:offshoot@127.0.0.1:5432/postgres".into());
    let (base, _) = admin.rsplit_once('/').expect("a database URL");
    let name = format!("offshoot_{prefix}_{}_{}", std::process::id(), offshoot_store::now_ms() % 1_000_000);
    psql(&admin, &["-c", &format!("CREATE DATABASE {name}")]);
    let url = format!("{base}/{name}");
    psql(&url, &["-f", fixture("postgres/offshoot.sql").to_str().expect("utf-8")]);
    (admin, url, name)
}

#[tokio::test]
async fn a_v0_postgres_store_opens_with_everything() {
    let (admin, url, name) = v0_postgres("upgrade");
    let store = Store::open(&url).await.expect("open the v0 store");
    holds_everything_v0_held(&store).await;
    store.close().await;
    psql(&admin, &["-c", &format!("DROP DATABASE {name} WITH (FORCE)")]);
}

#[test]
fn each_fixture_keeps_the_key_its_secrets_were_encrypted_with() {
    for kind in ["sqlite", "postgres"] {
        let key = std::fs::read_to_string(fixture(&format!("{kind}/secret.key"))).expect("secret.key");
        assert!(!key.trim().is_empty());
        assert!(Path::new(&fixture(&format!("{kind}/instance-id"))).exists());
    }
}

/// Every table's rows, for comparing a store before and after.
async fn dump(url: &str, tables: &[&str]) -> Vec<String> {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url).await.expect("connect");
    let mut out = Vec::new();
    for t in tables {
        let n: (i64,) = sqlx::query_as(&format!("SELECT COUNT(*) FROM {t}")).fetch_one(&pool).await.expect("count");
        out.push(format!("{t}: {}", n.0));
    }
    let versions: Vec<(i64,)> =
        sqlx::query_as("SELECT version FROM _sqlx_migrations ORDER BY version").fetch_all(&pool).await.expect("versions");
    out.push(format!("migrations: {:?}", versions.iter().map(|v| v.0).collect::<Vec<_>>()));
    // A table of a pending migration exists only if that migration was applied.
    let step_tasks = sqlx::query("SELECT COUNT(*) FROM step_tasks").fetch_all(&pool).await.is_ok();
    out.push(format!("step_tasks exists: {step_tasks}"));
    pool.close().await;
    out
}

const TABLES: &[&str] = &["apps", "app_versions", "environments", "deployments", "secrets", "datasets", "deliveries", "activity"];

/// A store whose migration fails half-way (here: a table of that name made by hand, as an
/// operator might) is left exactly as it was, and the error says what was pending.
async fn a_failed_migration_changes_nothing(url: &str) {
    let before = dump(url, TABLES).await;
    let err = Store::open(url).await.map(|_| ()).expect_err("the migration fails");
    let text = format!("{err}");
    assert!(text.contains("cannot migrate the database from schema 6"), "{text}");
    assert!(text.contains("0007 step tasks") && text.contains("0008 activity"), "{text}");
    assert!(text.contains("nothing was changed"), "{text}");
    let cause = std::error::Error::source(&err).map(ToString::to_string).unwrap_or_default();
    assert!(cause.contains("activity"), "the cause names the table: {cause}");
    assert_eq!(dump(url, TABLES).await, before, "the store is as it was");
}

#[tokio::test]
async fn a_failed_sqlite_migration_leaves_the_store_as_it_was() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let db = tmp.path().join("offshoot.db");
    std::fs::copy(fixture("sqlite/offshoot.db"), &db).expect("copy the fixture");
    let url = format!("sqlite://{}", db.display());
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&url).await.expect("connect");
    sqlx::query("CREATE TABLE activity (note TEXT)").execute(&pool).await.expect("the operator's table");
    sqlx::query("INSERT INTO activity (note) VALUES ('mine')").execute(&pool).await.expect("a row");
    pool.close().await;
    a_failed_migration_changes_nothing(&url).await;
    // Once the conflict is gone, it migrates.
    let pool = sqlx::AnyPool::connect(&url).await.expect("connect");
    sqlx::query("DROP TABLE activity").execute(&pool).await.expect("drop");
    pool.close().await;
    let store = Store::open(&url).await.expect("migrates now");
    holds_everything_v0_held(&store).await;
}

#[tokio::test]
async fn a_failed_postgres_migration_leaves_the_store_as_it_was() {
    let (admin, url, name) = v0_postgres("failed");
    psql(&url, &["-c", "CREATE TABLE activity (note TEXT); INSERT INTO activity (note) VALUES ('mine')"]);
    a_failed_migration_changes_nothing(&url).await;
    psql(&admin, &["-c", &format!("DROP DATABASE {name} WITH (FORCE)")]);
}
