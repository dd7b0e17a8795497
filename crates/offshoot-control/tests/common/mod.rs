//! The hermetic test context: a temporary SQLite store, a resolved template and the fake engine.

#![allow(dead_code, unreachable_pub)]

use offshoot_control::fake::FakeBackend;
use offshoot_control::{ExecError, Plan, Progress, Report, StepLog, StepStatus, StoreLog, Workflow, execute, plan};
use offshoot_store::{App, Deployment, Environment, Store, StoreError};
use offshoot_template::document::{self, Kind};
use offshoot_template::resolve::{self, Resolved};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Resolves a template as the server does for environment `e1` of app `shop`.
pub fn resolved(yaml: &str) -> Resolved {
    let doc = document::check("application_template.yaml", yaml, Some(Kind::Template));
    let errors: Vec<String> = doc.diagnostics.iter().filter(|d| d.is_error()).map(|d| d.message.clone()).collect();
    assert!(errors.is_empty(), "the test template is invalid: {errors:?}");
    let root = doc.root.expect("the template parses");
    let opts = resolve::Options {
        branch: "main".into(),
        env_id: "e1".into(),
        app: Some("shop".into()),
        domain: "offshoot.localhost".into(),
        ..Default::default()
    };
    match resolve::resolve("application_template.yaml", &root, None, &opts) {
        Ok(r) => r,
        Err(d) => panic!("the test template does not resolve: {:?}", d.iter().map(|x| &x.message).collect::<Vec<_>>()),
    }
}

pub fn steps(yaml: &str, workflow: Workflow) -> Plan {
    plan(&resolved(yaml), workflow).expect("plans")
}

/// A store in a temporary directory with one application and one environment.
pub struct Ctx {
    pub store: Store,
    _dir: tempfile::TempDir,
}

impl Ctx {
    pub async fn new() -> Ctx {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!("sqlite://{}", dir.path().join("offshoot.db").display());
        let store = Store::open(&url).await.expect("open the store");
        let app = App { name: "shop".into(), repo: "/dev/null".into(), default_branch: "main".into(), created_at: 0 };
        store.create_app(&app, "app: shop", "").await.expect("create the app");
        let env = Environment {
            id: "e1".into(),
            app: "shop".into(),
            branch: "main".into(),
            commit_sha: None,
            environment_template: None,
            status: offshoot_store::EnvStatus::Creating,
            reason: None,
            template: String::new(),
            env_vars: String::new(),
            expires_at: None,
            created_at: 0,
            updated_at: 0,
            parent_id: None,
            import_info: None,
            pull_request: None,
            sleeping_since: None,
            last_request_at: None,
            idle_sleep_seconds: None,
            parameters: None,
        };
        store.create_env(&env).await.expect("create the environment");
        Ctx { store, _dir: dir }
    }

    /// A new deployment record and its log.
    pub async fn deployment(&self, id: &str, workflow: Workflow) -> StoreLog {
        let d = Deployment {
            id: id.into(),
            env_id: "e1".into(),
            workflow: workflow.as_str().into(),
            commit_sha: None,
            status: offshoot_store::DeploymentStatus::Running,
            error: None,
            phases: "{}".into(),
            created_at: 0,
            finished_at: None,
        };
        self.store.create_deployment(&d).await.expect("create the deployment");
        StoreLog::new(self.store.clone(), id)
    }
}

pub async fn run(steps: &Plan, fake: &FakeBackend, log: &StoreLog) -> Result<Report, ExecError> {
    execute(steps, &Arc::new(fake.clone()), log).await
}

/// A step log that lets `left` records through, then hangs on the next one: the executor is
/// killed right after the `left`-th record reached the store.
pub struct KillingLog {
    pub inner: StoreLog,
    left: AtomicUsize,
    pub killed: tokio::sync::Notify,
}

impl KillingLog {
    pub fn new(inner: StoreLog, left: usize) -> Self {
        KillingLog { inner, left: AtomicUsize::new(left), killed: tokio::sync::Notify::new() }
    }

    async fn gate(&self) {
        let went = self.left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if went.is_err() {
            self.killed.notify_one();
            std::future::pending::<()>().await;
        }
    }
}

impl StepLog for KillingLog {
    async fn load(&self) -> Result<Progress, StoreError> {
        self.inner.load().await
    }

    async fn record_step(&self, idx: usize, name: &str, status: StepStatus, output: &str) -> Result<(), StoreError> {
        self.gate().await;
        self.inner.record_step(idx, name, status, output).await
    }

    async fn record_task(&self, idx: usize, key: &str, status: StepStatus, output: &str) -> Result<(), StoreError> {
        self.gate().await;
        self.inner.record_task(idx, key, status, output).await
    }
}

/// Runs until the log kills the executor; `Some` when the workflow ended first.
pub async fn run_until_killed(steps: &Plan, fake: &FakeBackend, log: &KillingLog) -> Option<Result<Report, ExecError>> {
    let backend = Arc::new(fake.clone());
    tokio::select! {
        r = execute(steps, &backend, log) => Some(r),
        () = log.killed.notified() => None,
    }
}
