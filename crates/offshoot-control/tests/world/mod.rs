//! The world the use-case scenarios run in: a temporary SQLite store, real git repositories in
//! temporary directories (made with the `git` command, fetched into mirrors as the server does),
//! ports that record what the use cases start instead of running it, and a fake engine per
//! environment.

#![allow(dead_code, unreachable_pub, unused_imports)]

use offshoot_api_types::{DeploymentStatus, EnvStatus, ServiceStatus};
use offshoot_control::apps::NewApp;
use offshoot_control::environments::NewEnv;
use offshoot_control::fake::FakeBackend;
use offshoot_control::git_events::record_delivery;
use offshoot_control::imports::RepoError;
use offshoot_control::{Actor, Control, ControlError, ErrorKind, Ports, Role};
use offshoot_git::Mirror;
use offshoot_git::hooks::{GitEvent, PrAction, Provider, PullRequest};
use offshoot_store::{DeploymentId, EnvId};
use offshoot_store::{Environment, Store};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

pub const TEMPLATE: &str = "app: shop\nservices:\n- name: web\n  image: busybox\n  ports:\n  - type: container_port\n    target_port: '80'\n    port: '80'\nenvironment_templates:\n- name: ephemeral\n- name: permanent\n";

/// What the use cases asked of the server.
#[derive(Default)]
pub struct Recorded {
    pub started: Vec<DeploymentId>,
    pub ran: Vec<DeploymentId>,
    pub notified: Vec<EnvId>,
    /// Clones dropped on their database server.
    pub dropped: Vec<String>,
    /// How often the pool keepers were woken.
    pub wakes: usize,
    /// The database server cannot be reached.
    pub unreachable: bool,
    /// Environments the router was told about.
    pub changed: Vec<EnvId>,
}

pub struct FakePorts {
    pub mirrors: PathBuf,
    pub seen: Mutex<Recorded>,
    /// Each environment's engine.
    pub engines: Mutex<std::collections::BTreeMap<EnvId, FakeBackend>>,
    /// The server's limits.
    pub capacity: Mutex<offshoot_control::capacity::Capacity>,
}

impl FakePorts {
    pub fn engine_of(&self, id: &str) -> FakeBackend {
        self.engines.lock().expect("lock").entry(id.into()).or_default().clone()
    }
}

impl Ports for FakePorts {
    type Engine = FakeBackend;

    async fn engine(&self, env: &Environment) -> Result<FakeBackend, ControlError> {
        Ok(self.engine_of(&env.id))
    }

    async fn changed(&self, env: &Environment) {
        self.seen.lock().expect("lock").changed.push(env.id.clone());
    }

    fn capacity(&self) -> offshoot_control::capacity::Capacity {
        *self.capacity.lock().expect("lock")
    }

    async fn fetch(&self, repo: &str) -> Result<Mirror, RepoError> {
        let dest = self.mirrors.join(repo.replace(['/', ':'], "_"));
        let repo = repo.to_owned();
        tokio::task::spawn_blocking(move || Mirror::sync(&repo, &dest))
            .await
            .map_err(|e| RepoError(e.to_string()))?
            .map_err(|e| RepoError(e.to_string()))
    }

    fn start(&self, deployment: DeploymentId) {
        self.seen.lock().expect("lock").started.push(deployment);
    }

    async fn run(&self, deployment: DeploymentId) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.seen.lock().expect("lock").ran.push(deployment);
        Ok(())
    }

    fn notify(&self, env: &Environment) {
        self.seen.lock().expect("lock").notified.push(env.id.clone());
    }

    fn wake_pools(&self) {
        self.seen.lock().expect("lock").wakes += 1;
    }

    async fn drop_clone(&self, clone: &offshoot_store::DatasetClone) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let mut seen = self.seen.lock().expect("lock");
        if seen.unreachable {
            return Err("connection refused".into());
        }
        seen.dropped.push(clone.db_name.clone());
        Ok(())
    }

    fn seal(&self, plaintext: &str, context: &str) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
        // Not encryption; only never the plaintext.
        let reversed: Vec<u8> = plaintext.bytes().rev().collect();
        Ok(format!("sealed:{context}:{}", hex::encode(reversed)))
    }
}

pub struct World {
    pub store: Store,
    pub ports: FakePorts,
    pub repo: PathBuf,
    pub _dir: tempfile::TempDir,
}

pub fn git(dir: &Path, args: &[&str]) -> String {
    let o = Command::new("git").current_dir(dir).args(args).output().expect("git runs");
    assert!(o.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

/// Writes `files` and commits them on the current branch; the new commit.
pub fn commit(dir: &Path, files: &[(&str, &str)], message: &str) -> String {
    for (path, text) in files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().expect("a parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    }
    git(dir, &["add", "-A"]);
    git(dir, &["-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", message]);
    git(dir, &["rev-parse", "HEAD"])
}

impl World {
    /// A repository with Release's files on `main` and a branch `feature/x`.
    pub async fn new() -> World {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = Store::open(&format!("sqlite://{}", dir.path().join("offshoot.db").display())).await.expect("store");
        let repo = dir.path().join("shop");
        std::fs::create_dir_all(&repo).expect("mkdir");
        git(&repo, &["init", "-q", "-b", "main"]);
        commit(
            &repo,
            &[(".release/application_template.yaml", TEMPLATE), (".release/environment_variables.yaml", "defaults: []\n")],
            "first",
        );
        git(&repo, &["branch", "feature/x"]);
        let ports = FakePorts {
            mirrors: dir.path().join("mirrors"),
            seen: Mutex::new(Recorded::default()),
            engines: Mutex::default(),
            capacity: Mutex::default(),
        };
        World { store, ports, repo, _dir: dir }
    }

    pub fn as_(&self, actor: Actor) -> Control<'_, &FakePorts> {
        Control::new(&self.store, &self.ports, actor)
    }

    pub fn admin(&self) -> Control<'_, &FakePorts> {
        self.as_(Actor::token())
    }

    pub async fn app(&self) {
        let req = NewApp { repo: self.repo.display().to_string(), ..Default::default() };
        let app = self.admin().create_app(req).await.expect("create the app");
        assert_eq!(app.name, "shop");
    }

    pub async fn env(&self, branch: &str) -> Environment {
        self.admin().create_env(NewEnv { app: "shop".into(), branch: branch.into(), ..Default::default() }).await.expect("create")
    }

    pub fn started(&self) -> Vec<DeploymentId> {
        self.ports.seen.lock().expect("lock").started.clone()
    }

    /// The activity log, oldest first, as `actor operation target outcome`.
    pub async fn activity(&self) -> Vec<String> {
        let mut all = self.store.activity(100).await.expect("activity");
        all.reverse();
        all.into_iter().map(|a| format!("{} {} {} {}", a.actor, a.operation, a.target, a.outcome)).collect()
    }

    pub async fn succeed(&self, deployment: &str) {
        self.store.finish_deployment(deployment, DeploymentStatus::Succeeded, None).await.expect("finish");
    }

    pub async fn deliver(&self, id: &str, event: GitEvent, source: &str) -> (String, String) {
        assert!(record_delivery(&self.store, id, "shop", &event).await.expect("record"));
        self.as_(Actor::git(source)).handle_delivery(id).await.expect("handled");
        let d = self.store.delivery(id).await.expect("read").expect("recorded");
        (d.status, d.result.unwrap_or_default())
    }
}

// The ports are borrowed: the server's are a borrowed context too.
impl Ports for &FakePorts {
    type Engine = FakeBackend;
    async fn engine(&self, env: &Environment) -> Result<FakeBackend, ControlError> {
        (*self).engine(env).await
    }
    async fn changed(&self, env: &Environment) {
        (*self).changed(env).await;
    }
    fn capacity(&self) -> offshoot_control::capacity::Capacity {
        (*self).capacity()
    }
    async fn fetch(&self, repo: &str) -> Result<Mirror, RepoError> {
        (*self).fetch(repo).await
    }
    fn start(&self, deployment: DeploymentId) {
        (*self).start(deployment);
    }
    async fn run(&self, deployment: DeploymentId) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        (*self).run(deployment).await
    }
    fn notify(&self, env: &Environment) {
        (*self).notify(env);
    }
    fn wake_pools(&self) {
        (*self).wake_pools();
    }
    async fn drop_clone(&self, clone: &offshoot_store::DatasetClone) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        (*self).drop_clone(clone).await
    }
    fn seal(&self, plaintext: &str, context: &str) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
        (*self).seal(plaintext, context)
    }
}

pub fn pr(action: PrAction, head: &str, commit: &str) -> PullRequest {
    PullRequest {
        provider: Provider::Github,
        action,
        number: 7,
        head_branch: head.into(),
        head_commit: commit.into(),
        labels: Vec::new(),
        repo: "acme/shop".into(),
        url: None,
        fork: None,
    }
}

pub fn seen(w: &World) -> std::sync::MutexGuard<'_, Recorded> {
    w.ports.seen.lock().expect("lock")
}
