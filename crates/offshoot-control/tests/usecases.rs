//! Hermetic scenarios of the use cases: a temporary SQLite store, real git repositories in
//! temporary directories (made with the `git` command, fetched into mirrors as the server does),
//! and ports that record what the use cases start instead of running it.

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

const TEMPLATE: &str = "app: shop\nservices:\n- name: web\n  image: busybox\n  ports:\n  - type: container_port\n    target_port: '80'\n    port: '80'\nenvironment_templates:\n- name: ephemeral\n- name: permanent\n";

/// What the use cases asked of the server.
#[derive(Default)]
struct Recorded {
    started: Vec<DeploymentId>,
    ran: Vec<DeploymentId>,
    notified: Vec<EnvId>,
    /// Clones dropped on their database server.
    dropped: Vec<String>,
    /// How often the pool keepers were woken.
    wakes: usize,
    /// The database server cannot be reached.
    unreachable: bool,
    /// Environments the router was told about.
    changed: Vec<EnvId>,
}

struct FakePorts {
    mirrors: PathBuf,
    seen: Mutex<Recorded>,
    /// Each environment's engine.
    engines: Mutex<std::collections::BTreeMap<EnvId, FakeBackend>>,
}

impl FakePorts {
    fn engine_of(&self, id: &str) -> FakeBackend {
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

struct World {
    store: Store,
    ports: FakePorts,
    repo: PathBuf,
    _dir: tempfile::TempDir,
}

fn git(dir: &Path, args: &[&str]) -> String {
    let o = Command::new("git").current_dir(dir).args(args).output().expect("git runs");
    assert!(o.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

/// Writes `files` and commits them on the current branch; the new commit.
fn commit(dir: &Path, files: &[(&str, &str)], message: &str) -> String {
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
    async fn new() -> World {
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
        let ports = FakePorts { mirrors: dir.path().join("mirrors"), seen: Mutex::new(Recorded::default()), engines: Mutex::default() };
        World { store, ports, repo, _dir: dir }
    }

    fn as_(&self, actor: Actor) -> Control<'_, &FakePorts> {
        Control::new(&self.store, &self.ports, actor)
    }

    fn admin(&self) -> Control<'_, &FakePorts> {
        self.as_(Actor::token())
    }

    async fn app(&self) {
        let req = NewApp { repo: self.repo.display().to_string(), ..Default::default() };
        let app = self.admin().create_app(req).await.expect("create the app");
        assert_eq!(app.name, "shop");
    }

    async fn env(&self, branch: &str) -> Environment {
        self.admin().create_env(NewEnv { app: "shop".into(), branch: branch.into(), ..Default::default() }).await.expect("create")
    }

    fn started(&self) -> Vec<DeploymentId> {
        self.ports.seen.lock().expect("lock").started.clone()
    }

    /// The activity log, oldest first, as `actor operation target outcome`.
    async fn activity(&self) -> Vec<String> {
        let mut all = self.store.activity(100).await.expect("activity");
        all.reverse();
        all.into_iter().map(|a| format!("{} {} {} {}", a.actor, a.operation, a.target, a.outcome)).collect()
    }

    async fn succeed(&self, deployment: &str) {
        self.store.finish_deployment(deployment, DeploymentStatus::Succeeded, None).await.expect("finish");
    }

    async fn deliver(&self, id: &str, event: GitEvent, source: &str) -> (String, String) {
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

#[tokio::test]
async fn an_application_is_created_from_its_repository_with_its_refs_and_a_webhook_secret() {
    let w = World::new().await;
    w.app().await;
    let v = w.admin().template("shop").await.expect("template");
    assert_eq!((v.version, v.template.as_str()), (1, TEMPLATE));
    let heads = w.store.git_heads("shop").await.expect("heads");
    assert!(heads.iter().any(|(r, _)| r == "refs/heads/feature/x"), "{heads:?}");
    let git = w.store.app_git("shop").await.expect("read").expect("git settings");
    assert!(git.webhook_secret.starts_with("sealed:webhook/shop:"), "sealed with its context");
    assert_eq!(w.activity().await, ["token app.create shop ok"]);
}

#[tokio::test]
async fn a_taken_name_a_bad_name_and_a_missing_repository_are_refused_and_recorded() {
    let w = World::new().await;
    w.app().await;
    let again = w.admin().create_app(NewApp { repo: w.repo.display().to_string(), ..Default::default() }).await;
    let e = again.expect_err("the name is taken");
    assert_eq!(e.kind(), ErrorKind::Conflict);
    assert_eq!(e.hint().as_deref(), Some("choose another with `--name`"));
    let bad = NewApp { repo: w.repo.display().to_string(), name: Some("Shop_1".into()), ..Default::default() };
    let e = w.admin().create_app(bad).await.expect_err("upper case");
    assert_eq!(e.kind(), ErrorKind::BadInput);
    assert!(e.to_string().contains("`Shop_1` is not a valid application name"), "{e}");
    let e = w.admin().create_app(NewApp { repo: "/nowhere/at/all".into(), ..Default::default() }).await.expect_err("no repo");
    assert!(e.to_string().contains("neither a directory nor a git URL"), "{e}");
    assert_eq!(
        w.activity().await,
        ["token app.create shop ok", "token app.create shop refused", "token app.create Shop_1 refused", "token app.create all refused"]
    );
}

#[tokio::test]
async fn each_role_may_do_what_its_operations_need_and_a_refusal_changes_nothing() {
    let w = World::new().await;
    let viewer = Actor { name: "ann".into(), role: Role::Viewer };
    let e = w.as_(Actor::git("webhook")).create_app(NewApp { repo: w.repo.display().to_string(), ..Default::default() }).await;
    let e = e.expect_err("git events do not make applications");
    assert_eq!(e.kind(), ErrorKind::Forbidden);
    assert_eq!(e.to_string(), "`app.create` needs the admin role; webhook has the developer role");
    assert!(w.store.app("shop").await.expect("read").is_none(), "nothing was created");
    w.app().await;
    let e = w.as_(viewer.clone()).create_env(NewEnv { app: "shop".into(), branch: "main".into(), ..Default::default() }).await;
    assert_eq!(e.expect_err("viewers only read").kind(), ErrorKind::Forbidden);
    assert!(w.store.envs(None, false).await.expect("envs").is_empty());
    assert!(w.started().is_empty());
    let env = w.as_(Actor::git("webhook")).create_env(NewEnv { app: "shop".into(), branch: "main".into(), ..Default::default() }).await;
    assert!(env.is_ok(), "developers create environments: {env:?}");
    let log = w.activity().await;
    assert_eq!(log[..3], ["webhook app.create shop refused", "token app.create shop ok", "ann env.create shop refused"]);
    assert_eq!(log[3], "webhook env.create shop ok");
}

#[tokio::test]
async fn an_environment_forks_the_template_records_its_setup_and_starts_it() {
    let w = World::new().await;
    w.app().await;
    let env = w.env("feature/x").await;
    assert_eq!((env.status, env.branch.as_str(), env.template.as_str()), (EnvStatus::Creating, "feature/x", TEMPLATE));
    let deps = w.store.deployments(&env.id).await.expect("deployments");
    assert_eq!(deps.len(), 1);
    assert_eq!((deps[0].workflow.as_str(), deps[0].status), ("setup", DeploymentStatus::Running));
    assert_eq!(w.started(), [deps[0].id.clone()], "handed to the controller once");
    // Later template versions do not touch it.
    w.admin().update_template("shop", Some(TEMPLATE.replace("busybox", "nginx")), None).await.expect("v2");
    assert_eq!(w.store.env(&env.id).await.expect("read").expect("env").template, TEMPLATE);
    let activity = w.store.activity(1).await.expect("activity");
    assert_eq!(activity[0].detail.as_deref(), Some("version 2"));
}

#[tokio::test]
async fn what_an_environment_needs_is_checked_before_anything_is_recorded() {
    let w = World::new().await;
    w.app().await;
    let new = |branch: &str, et: Option<&str>| NewEnv {
        app: "shop".into(),
        branch: branch.into(),
        environment_template: et.map(str::to_owned),
        ..Default::default()
    };
    let e = w.admin().create_env(new("nope", None)).await.expect_err("no such branch");
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert_eq!(e.to_string(), "branch `nope` does not exist");
    assert_eq!(e.hint().as_deref(), Some("branches of `shop`: feature/x, main"));
    let e = w.admin().create_env(new("main", Some("staging"))).await.expect_err("no such environment template");
    assert_eq!(e.hint().as_deref(), Some("defined: ephemeral, permanent"));
    let e = w.admin().create_env(NewEnv { ttl_seconds: Some(0), ..new("main", None) }).await.expect_err("a zero lifetime");
    assert_eq!(e.kind(), ErrorKind::BadInput);
    let e = w.admin().create_env(new("main", None).clone()).await.map(|_| ());
    assert!(e.is_ok());
    let e = w.admin().create_env(NewEnv { app: "shops".into(), ..new("main", None) }).await.expect_err("no such app");
    assert_eq!(e.hint().as_deref(), Some("`offshoot app list` shows the applications"));
    assert_eq!(w.store.envs(None, false).await.expect("envs").len(), 1, "only the valid request made an environment");
    // An invalid template never becomes a version.
    let e = w.admin().update_template("shop", Some("services:\n- name: web\n  image: [\n".into()), None).await.expect_err("invalid");
    assert_eq!(e.kind(), ErrorKind::Invalid);
    assert!(!e.diagnostics().is_empty());
    assert!(e.diagnostics().iter().all(|d| &*d.file == "application_template.yaml"), "{:?}", e.diagnostics());
    assert_eq!(w.admin().template("shop").await.expect("template").version, 1);
}

#[tokio::test]
async fn deploy_runs_setup_until_one_succeeded_and_patch_after() {
    let w = World::new().await;
    w.app().await;
    let env = w.env("main").await;
    let first = w.started()[0].clone();
    w.admin().deploy_env(&env.id, None).await.expect("deploy");
    let deps = w.store.deployments(&env.id).await.expect("deployments");
    assert_eq!(deps.last().expect("one").workflow, "setup", "setup never succeeded: setup again");
    w.succeed(&first).await;
    let sha = git(&w.repo, &["rev-parse", "HEAD"]);
    let e = w.admin().deploy_env(&env.id, Some(sha.clone())).await.expect("deploy");
    assert_eq!(e.status, EnvStatus::Deploying);
    let last = w.store.deployments(&env.id).await.expect("deployments").pop().expect("one");
    assert_eq!((last.workflow.as_str(), last.commit_sha.as_deref()), ("patch", Some(sha.as_str())));
    let e = w.admin().deploy_env(&env.id, Some("abc".into())).await.expect_err("a short SHA");
    assert_eq!(e.to_string(), "`abc` is not a full commit SHA");
}

#[tokio::test]
async fn delete_tears_down_once_and_an_import_goes_only_with_its_importer() {
    let w = World::new().await;
    w.app().await;
    let env = w.env("main").await;
    let e = w.admin().delete_env(&env.id, None).await.expect("delete");
    assert_eq!(e.status, EnvStatus::TearingDown);
    w.admin().delete_env(&env.id, None).await.expect("again");
    let teardowns = w.store.deployments(&env.id).await.expect("deps").into_iter().filter(|d| d.workflow == "teardown").count();
    assert_eq!(teardowns, 1, "a second delete starts nothing");
    // An imported environment of a live importer.
    let parent = w.env("main").await;
    let child =
        Environment { id: "child01".into(), parent_id: Some(parent.id.clone()), ..w.store.env(&parent.id).await.expect("r").expect("e") };
    w.store.create_env(&child).await.expect("create the child");
    let e = w.admin().delete_env("child01", None).await.expect_err("imported");
    assert_eq!(e.code(), "imported");
    assert_eq!(e.hint(), Some(format!("delete `{}`: its imports go with it", parent.id)));
}

#[tokio::test]
async fn a_secret_is_sealed_with_its_context_and_its_value_is_never_recorded() {
    let w = World::new().await;
    w.app().await;
    w.admin().set_secret("shop", "web", "API_KEY", "hunter2").await.expect("set");
    let secrets = w.store.secrets("shop").await.expect("secrets");
    assert_eq!(secrets.len(), 1);
    assert!(secrets[0].ciphertext.starts_with("sealed:shop/web/API_KEY:"), "{}", secrets[0].ciphertext);
    assert!(!secrets[0].ciphertext.contains("hunter2"));
    let e = w.admin().set_secret("shop", "", "API-KEY", "x").await.expect_err("a bad name");
    assert_eq!(e.to_string(), "`API-KEY` is not a valid variable name");
    let e = w.admin().set_secret("shop", "", "BIG", &"x".repeat(64 * 1024 + 1)).await.expect_err("too large");
    assert_eq!(e.to_string(), "a secret may be at most 64 KiB");
    for a in w.store.activity(100).await.expect("activity") {
        assert!(!format!("{a:?}").contains("hunter2"), "{a:?}");
    }
}

#[tokio::test]
async fn an_application_with_environments_cannot_be_deleted() {
    let w = World::new().await;
    w.app().await;
    let env = w.env("main").await;
    let e = w.admin().delete_app("shop").await.expect_err("live environments");
    assert_eq!(e.to_string(), "application `shop` still has 1 environment(s)");
    w.store.set_env_status(&env.id, EnvStatus::Deleted, None).await.expect("deleted");
    w.admin().delete_app("shop").await.expect("delete");
    assert!(w.store.app("shop").await.expect("read").is_none());
}

#[tokio::test]
async fn expiry_tears_down_what_ended_and_nothing_else() {
    let w = World::new().await;
    w.app().await;
    let admin = w.admin();
    let short = admin.create_env(NewEnv { app: "shop".into(), branch: "main".into(), ttl_seconds: Some(60), ..Default::default() });
    let short = short.await.expect("create");
    let long = admin.create_env(NewEnv { app: "shop".into(), branch: "main".into(), ttl_seconds: Some(3600), ..Default::default() });
    let long = long.await.expect("create");
    let forever = w.env("main").await;
    let now = offshoot_store::now_ms();
    let system = w.as_(Actor::system("expiry"));
    assert!(system.expire(now).await.expect("expire").is_empty(), "nothing ended yet");
    assert_eq!(system.expire(now + 61_000).await.expect("expire"), std::slice::from_ref(&short.id));
    assert!(system.expire(now + 62_000).await.expect("expire").is_empty(), "a tearing-down environment is not expired twice");
    let store = &w.store;
    let st = |id: EnvId| async move { store.env(&id).await.expect("read").expect("env") };
    let s = st(short.id).await;
    assert_eq!((s.status, s.reason.as_deref()), (EnvStatus::TearingDown, Some("expired")));
    assert_eq!(st(long.id).await.status, EnvStatus::Creating);
    assert_eq!(st(forever.id).await.status, EnvStatus::Creating);
    assert!(w.activity().await.iter().any(|a| a.starts_with("expiry env.delete")));
}

fn pr(action: PrAction, head: &str, commit: &str) -> PullRequest {
    PullRequest {
        provider: Provider::Github,
        action,
        number: 7,
        head_branch: head.into(),
        head_commit: commit.into(),
        labels: Vec::new(),
        repo: "acme/shop".into(),
        url: None,
    }
}

#[tokio::test]
async fn a_push_patches_the_environments_of_its_branch_once() {
    let w = World::new().await;
    w.app().await;
    let env = w.env("main").await;
    let other = w.env("feature/x").await;
    w.succeed(&w.started()[0]).await;
    let sha = commit(&w.repo, &[("README", "one line\n")], "a change");
    let push = || GitEvent::Push { ref_name: "refs/heads/main".into(), commit: Some(sha.clone()) };
    let (status, result) = w.deliver("d1", push(), "webhook").await;
    assert_eq!(status, "done", "{result}");
    assert_eq!(result, format!("{}: patch to {}", env.id, &sha[..7]));
    // The same push seen again (the poller after the webhook) deploys nothing.
    let (_, result) = w.deliver("poll:shop:refs/heads/main", push(), "poller").await;
    assert_eq!(result, format!("{}: already at {}", env.id, &sha[..7]));
    assert_eq!(w.store.deployments(&other.id).await.expect("deps").len(), 1, "the other branch's environment is left alone");
    // A deleted branch tears nothing down.
    let gone = GitEvent::Push { ref_name: "refs/heads/main".into(), commit: None };
    let (_, result) = w.deliver("d2", gone, "webhook").await;
    assert!(result.contains("its environments are kept"), "{result}");
    assert_eq!(w.store.env(&env.id).await.expect("read").expect("env").status, EnvStatus::Deploying);
    let log = w.activity().await;
    assert!(log.contains(&format!("webhook env.deploy {} ok", env.id)), "{log:?}");
}

#[tokio::test]
async fn a_pull_request_gets_an_environment_that_closes_with_it() {
    let w = World::new().await;
    w.app().await;
    let head = git(&w.repo, &["rev-parse", "feature/x"]);
    let (_, result) = w.deliver("p1", GitEvent::PullRequest(pr(PrAction::Opened, "feature/x", &head)), "webhook").await;
    assert!(result.contains("pull-request environments are off"), "{result}");
    w.store.set_pull_requests("shop", true, None).await.expect("on");
    let (status, result) = w.deliver("p2", GitEvent::PullRequest(pr(PrAction::Opened, "feature/x", &head)), "webhook").await;
    assert_eq!(status, "done", "{result}");
    let envs = w.store.envs(Some("shop"), false).await.expect("envs");
    assert_eq!(envs.len(), 1);
    assert!(result.starts_with(&format!("{}: created for pull request #7", envs[0].id)), "{result}");
    assert_eq!(w.ports.seen.lock().expect("lock").notified, [envs[0].id.clone()], "the pull request hears of it");
    let (_, result) = w.deliver("p3", GitEvent::PullRequest(pr(PrAction::Closed, "feature/x", &head)), "webhook").await;
    assert_eq!(result, format!("{}: teardown (pull request #7 closed)", envs[0].id));
    let e = w.store.env(&envs[0].id).await.expect("read").expect("env");
    assert_eq!((e.status, e.reason.as_deref()), (EnvStatus::TearingDown, Some("the pull request was closed")));
}

#[tokio::test]
async fn a_push_of_an_invalid_configuration_is_refused_with_its_diagnostics_and_changes_nothing() {
    let w = World::new().await;
    w.app().await;
    let env = w.env("main").await;
    let sha = commit(&w.repo, &[(".release/application_template.yaml", "services:\n- name: web\n  image: [\n")], "broken");
    let (status, result) = w.deliver("d1", GitEvent::Push { ref_name: "refs/heads/main".into(), commit: Some(sha) }, "webhook").await;
    assert_eq!(status, "failed");
    assert!(result.contains("environments left as they are"), "{result}");
    assert!(result.contains(".release/application_template.yaml:"), "names the file and line: {result}");
    assert_eq!(w.store.deployments(&env.id).await.expect("deps").len(), 1);
    assert_eq!(w.admin().template("shop").await.expect("template").version, 1);
}

#[tokio::test]
async fn an_error_kind_maps_every_variant() {
    let e = ControlError::not_found("environment", "x", "h");
    assert_eq!((e.kind(), e.code(), e.hint().as_deref()), (ErrorKind::NotFound, "not_found", Some("h")));
    let e = ControlError::bad_input("no");
    assert_eq!((e.kind(), e.code()), (ErrorKind::BadInput, "bad_request"));
}

/// A dataset in state `state` with `ready` clones in its pool.
async fn dataset(w: &World, name: &str, state: &str, ready: usize) {
    let mut d = offshoot_store::Dataset::new(name, "postgres", ("src".into(), "dst".into()), 2, None, None);
    d.state = state.into();
    if state == "ready" {
        d.snapshot = Some(format!("snap_{name}"));
    }
    w.store.create_dataset(&d).await.expect("dataset");
    for i in 0..ready {
        add_clone(w, name, &format!("ods_{name}_{i}")).await;
    }
}

async fn add_clone(w: &World, dataset: &str, db_name: &str) {
    let c = offshoot_store::DatasetClone {
        db_name: db_name.into(),
        dataset: dataset.into(),
        generation: 0,
        role: format!("{db_name}_login"),
        password: "sealed".into(),
        state: "ready".into(),
        env_id: None,
        leased_at: None,
        created_at: 0,
        ready_at: Some(1),
    };
    w.store.add_clone(&c).await.expect("clone");
}

fn seen(w: &World) -> std::sync::MutexGuard<'_, Recorded> {
    w.ports.seen.lock().expect("lock")
}

#[tokio::test]
async fn an_environment_checks_out_one_clone_per_dataset_and_two_never_share_one() {
    let w = World::new().await;
    w.app().await;
    dataset(&w, "artists", "ready", 2).await;
    dataset(&w, "songs", "ready", 1).await;
    let (a, b) = (w.env("main").await, w.env("main").await);
    let system = w.as_(Actor::system("controller"));
    let wanted = ["artists".to_owned(), "songs".to_owned()];
    system.attach_datasets(&a, &wanted, std::time::Duration::from_secs(1)).await.expect("attach");
    system.attach_datasets(&a, &wanted, std::time::Duration::from_secs(1)).await.expect("again: nothing more");
    let held: Vec<String> = w.store.leases(&a.id).await.expect("leases").into_iter().map(|c| c.dataset).collect();
    assert_eq!(held, ["artists", "songs"]);
    // The second environment gets the other artists clone; songs has none left.
    let e = system.attach_datasets(&b, &wanted, std::time::Duration::from_millis(300)).await.expect_err("songs' pool is empty");
    assert!(e.to_string().starts_with("no clone of dataset `songs` became ready within 300ms (pool size 2)"), "{e}");
    assert_eq!(e.hint().as_deref(), Some("`offshoot dataset show songs` shows its pool"));
    let mine: Vec<String> = w.store.leases(&a.id).await.expect("a").into_iter().map(|c| c.db_name).collect();
    let theirs: Vec<String> = w.store.leases(&b.id).await.expect("b").into_iter().map(|c| c.db_name).collect();
    assert_eq!(theirs.len(), 1);
    assert!(!mine.contains(&theirs[0]), "{mine:?} {theirs:?}");
    assert!(seen(&w).wakes >= 3, "the keepers are woken to take and to refill");
}

#[tokio::test]
async fn a_waiting_environment_says_why_and_gets_the_clone_the_keeper_makes() {
    let w = World::new().await;
    w.app().await;
    dataset(&w, "artists", "ready", 0).await;
    let env = w.env("main").await;
    let system = w.as_(Actor::system("controller"));
    let wanted = ["artists".to_owned()];
    let attach = system.attach_datasets(&env, &wanted, std::time::Duration::from_secs(10));
    let keeper = async {
        // The keeper fills the pool a moment later.
        for _ in 0..100 {
            let e = w.store.env(&env.id).await.expect("read").expect("env");
            if e.reason.is_some() {
                assert_eq!(e.reason.as_deref(), Some("waiting for a clone of dataset `artists`: the pool is empty; a clone is being made"));
                add_clone(&w, "artists", "ods_late").await;
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("the environment never said it waits");
    };
    let (r, ()) = tokio::join!(attach, keeper);
    r.expect("attached once the clone was made");
    let e = w.store.env(&env.id).await.expect("read").expect("env");
    assert_eq!(e.reason, None, "the reason is cleared");
    assert_eq!(w.store.leases(&env.id).await.expect("leases")[0].db_name, "ods_late");
}

#[tokio::test]
async fn datasets_that_cannot_serve_are_refused_with_why() {
    let w = World::new().await;
    w.app().await;
    dataset(&w, "broken", "failed", 0).await;
    dataset(&w, "going", "deleting", 1).await;
    let env = w.env("main").await;
    let system = w.as_(Actor::system("controller"));
    let wait = std::time::Duration::from_secs(5);
    let e = system.attach_datasets(&env, &["missing".into()], wait).await.expect_err("no such dataset");
    assert_eq!(e.to_string(), "dataset `missing` does not exist");
    assert_eq!(e.hint().as_deref(), Some("`offshoot dataset create missing --source ...` makes it"));
    let e = system.attach_datasets(&env, &["broken".into()], wait).await.expect_err("no snapshot");
    assert_eq!(e.to_string(), "dataset `broken` has no snapshot: it failed");
    let e = system.attach_datasets(&env, &["going".into()], wait).await.expect_err("deleting");
    assert_eq!(e.to_string(), "dataset `going` is being deleted");
    assert!(w.store.leases(&env.id).await.expect("leases").is_empty());
}

#[tokio::test]
async fn check_in_drops_a_clone_once_and_leaves_an_unreachable_one_to_the_keeper() {
    let w = World::new().await;
    w.app().await;
    dataset(&w, "artists", "ready", 2).await;
    dataset(&w, "songs", "ready", 1).await;
    let env = w.env("main").await;
    let system = w.as_(Actor::system("controller"));
    let wait = std::time::Duration::from_secs(1);
    system.attach_datasets(&env, &["artists".into(), "songs".into()], wait).await.expect("attach");
    // The template no longer lists songs: its clone goes back.
    system.attach_datasets(&env, &["artists".into()], wait).await.expect("re-attach");
    assert_eq!(seen(&w).dropped, ["ods_songs_0"]);
    assert!(w.store.clones("songs").await.expect("clones").is_empty(), "its record goes once dropped");
    // Teardown with the server unreachable: marked for the keeper, not dropped, not leased.
    seen(&w).unreachable = true;
    system.detach_datasets(&env.id).await.expect("detach");
    let artists = w.store.clones("artists").await.expect("clones");
    let returned: Vec<&str> = artists.iter().filter(|c| c.state == "dropping").map(|c| c.db_name.as_str()).collect();
    assert_eq!(returned.len(), 1, "{artists:?}");
    assert!(w.store.leases(&env.id).await.expect("leases").is_empty());
    // Checked in twice: nothing more happens.
    seen(&w).unreachable = false;
    system.detach_datasets(&env.id).await.expect("again");
    assert_eq!(seen(&w).dropped, ["ods_songs_0"]);
}

#[tokio::test]
async fn what_an_adapter_does_itself_passes_the_same_gate() {
    let w = World::new().await;
    let viewer = Actor { name: "ann".into(), role: Role::Viewer };
    let ran = std::sync::atomic::AtomicBool::new(false);
    let work = async {
        ran.store(true, std::sync::atomic::Ordering::SeqCst);
        Ok::<_, ControlError>(())
    };
    let e = w.as_(viewer).perform(offshoot_control::Operation::ExecInEnv, "e1/web", work).await.expect_err("viewers only read");
    assert_eq!(e.kind(), ErrorKind::Forbidden);
    assert!(!ran.load(std::sync::atomic::Ordering::SeqCst), "refused before it ran");
    let missing =
        async { Err::<(), _>(ControlError::from(offshoot_control::BackendError::not_found("running service `web` does not exist"))) };
    let e = w.as_(Actor::token()).perform(offshoot_control::Operation::ExecInEnv, "e1/web", missing).await.expect_err("no container");
    assert_eq!((e.kind(), e.code()), (ErrorKind::NotFound, "not_found"));
    assert_eq!(w.activity().await, ["ann env.exec e1/web refused", "token env.exec e1/web refused"]);
}

fn new_dataset(name: &str, source: &str) -> offshoot_api_types::CreateDataset {
    offshoot_api_types::CreateDataset { name: name.into(), source: source.into(), target: None, pool_size: None, refresh: None, ttl: None }
}

#[tokio::test]
async fn an_admin_creates_a_dataset_with_its_urls_sealed_and_bad_fields_named() {
    let w = World::new().await;
    let d = w.admin().create_dataset(&new_dataset("artists", "postgres://u:hunter2@db:5432/music")).await.expect("create");
    assert_eq!((d.engine.as_str(), d.pool_size, d.state.as_str()), ("postgres", 2, "snapshotting"));
    let stored = w.store.dataset("artists").await.expect("read").expect("stored");
    assert!(stored.source.starts_with("sealed:dataset/artists/source:"), "{}", stored.source);
    assert!(!stored.source.contains("hunter2") && !stored.target.contains("hunter2"), "never the plaintext");
    assert!(stored.target.starts_with("sealed:dataset/artists/target:"), "the source's server holds the pool");
    assert_eq!(seen(&w).wakes, 1, "the keeper takes the first snapshot");

    let refused = [
        (new_dataset("Bad Name", "postgres://u@db/x"), "name: "),
        (new_dataset("nodb", "postgres://u@db"), "source: the URL names no database"),
        (
            offshoot_api_types::CreateDataset { pool_size: Some(51), ..new_dataset("big", "postgres://u@db/x") },
            "pool_size: 51 is not between 1 and 50",
        ),
        (
            offshoot_api_types::CreateDataset { target: Some("mysql://root@db2".into()), ..new_dataset("mixed", "postgres://u@db/x") },
            "target: a postgres dataset needs a postgres server, not mariadb",
        ),
        (offshoot_api_types::CreateDataset { refresh: Some("every day".into()), ..new_dataset("sched", "postgres://u@db/x") }, "refresh: "),
        (offshoot_api_types::CreateDataset { ttl: Some("soon".into()), ..new_dataset("ttl", "postgres://u@db/x") }, "ttl: "),
    ];
    for (req, starts) in refused {
        let e = w.admin().create_dataset(&req).await.expect_err(starts);
        assert_eq!(e.kind(), ErrorKind::BadInput, "{e}");
        assert!(e.to_string().starts_with(starts), "{e} should start with {starts}");
        assert!(w.store.dataset(&req.name).await.expect("read").is_none(), "nothing stored for {}", req.name);
    }
    let e = w.admin().create_dataset(&new_dataset("artists", "postgres://u@db/x")).await.expect_err("taken");
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    let e = w.as_(Actor::git("webhook")).create_dataset(&new_dataset("other", "postgres://u@db/x")).await.expect_err("a developer");
    assert_eq!(e.kind(), ErrorKind::Forbidden);
    let log = w.store.activity(50).await.expect("activity");
    let ops: Vec<(&str, &str)> =
        log.iter().filter(|a| a.operation == "dataset.create").map(|a| (a.target.as_str(), a.outcome.as_str())).collect();
    assert_eq!(ops.iter().filter(|(_, o)| *o == "ok").count(), 1, "{ops:?}");
    assert_eq!(ops.iter().filter(|(_, o)| *o == "refused").count(), 8, "every refusal recorded: {ops:?}");
}

#[tokio::test]
async fn a_dataset_in_use_is_deleted_only_when_forced_and_a_deleting_one_is_not_refreshed() {
    let w = World::new().await;
    w.app().await;
    dataset(&w, "artists", "ready", 1).await;
    let env = w.env("main").await;
    w.as_(Actor::system("controller")).attach_datasets(&env, &["artists".into()], std::time::Duration::from_secs(1)).await.expect("attach");

    let before = w.store.dataset("artists").await.expect("read").expect("d");
    let d = w.admin().refresh_dataset("artists").await.expect("refresh");
    assert_ne!(d.refresh_requested, before.refresh_requested, "a refresh is asked of the keeper");
    let e = w.admin().delete_dataset("artists", false).await.expect_err("in use");
    assert_eq!((e.kind(), e.code()), (ErrorKind::Conflict, "in-use"));
    assert_eq!(e.to_string(), format!("dataset `artists` is attached to environment(s) {}", env.id));
    assert_eq!(w.store.dataset("artists").await.expect("read").expect("d").state, "ready", "nothing changed");
    let d = w.admin().delete_dataset("artists", true).await.expect("forced");
    assert_eq!(d.state, "deleting");
    let e = w.admin().refresh_dataset("artists").await.expect_err("deleting");
    assert_eq!((e.kind(), e.code()), (ErrorKind::Conflict, "deleting"));
    let e = w.admin().delete_dataset("nope", false).await.expect_err("missing");
    assert_eq!((e.kind(), e.hint().as_deref()), (ErrorKind::NotFound, Some("`offshoot dataset list` shows them")));
    let forced = w.store.activity(50).await.expect("activity").into_iter().find(|a| a.operation == "dataset.delete" && a.outcome == "ok");
    assert_eq!(forced.and_then(|a| a.detail).as_deref(), Some("forced"));
}

#[tokio::test]
async fn settings_and_the_webhook_secret_change_only_through_the_gate() {
    let w = World::new().await;
    w.app().await;
    let update = offshoot_api_types::AppUpdate {
        pull_requests: Some(true),
        pull_request_label: Some("preview".into()),
        static_builder: Some("node:22".into()),
        idle_sleep: None,
    };
    let git = w.admin().update_settings("shop", &update).await.expect("update");
    assert_eq!(
        (git.pull_requests, git.pull_request_label.as_deref(), git.static_builder.as_deref()),
        (1, Some("preview"), Some("node:22"))
    );
    // What a request leaves out stays; an empty string clears.
    let clear = offshoot_api_types::AppUpdate { pull_request_label: Some(String::new()), ..Default::default() };
    let git = w.admin().update_settings("shop", &clear).await.expect("clear the label");
    assert_eq!((git.pull_requests, git.pull_request_label, git.static_builder.as_deref()), (1, None, Some("node:22")));
    for (bad, starts) in [
        (offshoot_api_types::AppUpdate { static_builder: Some("-rm".into()), ..clear.clone() }, "static_builder: "),
        (offshoot_api_types::AppUpdate { static_builder: Some("a b".into()), ..clear.clone() }, "static_builder: "),
        (offshoot_api_types::AppUpdate { pull_request_label: Some("x".repeat(101)), ..clear.clone() }, "pull_request_label: "),
    ] {
        let e = w.admin().update_settings("shop", &bad).await.expect_err(starts);
        assert!(e.kind() == ErrorKind::BadInput && e.to_string().starts_with(starts), "{e}");
    }
    assert_eq!(w.store.app_git("shop").await.expect("read").expect("git").static_builder.as_deref(), Some("node:22"), "nothing changed");
    assert!(offshoot_control::apps::valid_image("127.0.0.1:5000/team/builder@sha256:abc"));

    let before = w.store.app_git("shop").await.expect("read").expect("git").webhook_secret;
    let secret = w.admin().rotate_webhook("shop").await.expect("rotate");
    assert_eq!(secret.len(), 64);
    let after = w.store.app_git("shop").await.expect("read").expect("git").webhook_secret;
    assert_ne!(before, after);
    assert!(!after.contains(&secret), "stored sealed");
    let e = w.as_(Actor::git("webhook")).rotate_webhook("shop").await.expect_err("a developer");
    assert_eq!(e.kind(), ErrorKind::Forbidden);
    let e = w.admin().update_settings("nope", &clear).await.expect_err("no such app");
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let log = w.store.activity(50).await.expect("activity");
    let settings: Vec<(&str, Option<&str>)> =
        log.iter().filter(|a| a.operation == "app.settings").map(|a| (a.outcome.as_str(), a.detail.as_deref())).collect();
    assert!(settings.contains(&("ok", Some("pull_requests, pull_request_label, static_builder"))), "{settings:?}");
    assert_eq!(settings.iter().filter(|(o, _)| *o == "refused").count(), 4, "{settings:?}");
    let webhook: Vec<&str> = log.iter().filter(|a| a.operation == "app.webhook").map(|a| a.outcome.as_str()).collect();
    assert_eq!(webhook, ["refused", "ok"]);
    assert!(log.iter().all(|a| a.detail.as_deref().is_none_or(|d| !d.contains(&secret))), "never the secret");
}

// Sleep and wake ------------------------------------------------------------------------------

const LAYERED: &str = "app: shop\nservices:\n- name: db\n  image: postgres\n- name: api\n  image: busybox\n  depends_on:\n  - db\n- name: web\n  image: busybox\n  depends_on:\n  - api\n- name: docs\n  image: busybox\n";

/// A ready environment running db ← api ← web on its fake engine, and a static site `docs`.
async fn layered(w: &World, parent: Option<&Environment>) -> Environment {
    let created = w.env("main").await;
    let id: EnvId = match parent {
        Some(p) => format!("{}i", &p.id[..p.id.len() - 1]).into(),
        None => created.id.clone(),
    };
    let env = Environment {
        id: id.clone(),
        template: LAYERED.into(),
        status: EnvStatus::Ready,
        parent_id: parent.map(|p| p.id.clone()),
        ..created
    };
    if parent.is_some() {
        w.store.create_env(&env).await.expect("child");
    } else {
        w.store.set_env_status(&env.id, EnvStatus::Ready, None).await.expect("ready");
        w.store.set_env_config(&env.id, LAYERED, &env.env_vars).await.expect("template");
    }
    let engine = w.ports.engine_of(&id);
    for name in ["db", "api", "web", "docs"] {
        let mut detail = offshoot_store::ServiceDetail::new();
        if name == "docs" {
            detail.site = Some("site-key".into());
        } else {
            offshoot_control::Backend::start_service(&engine, name).await.expect("start");
        }
        let row = offshoot_store::ServiceRow { env_id: id.clone(), name: name.into(), status: ServiceStatus::Ready, reason: None, detail };
        w.store.set_service(&row).await.expect("service");
    }
    w.store.env(&id).await.expect("read").expect("env")
}

fn engine_calls(w: &World, id: &str, prefix: &str) -> Vec<String> {
    w.ports.engine_of(id).state().calls.into_iter().filter(|c| c.starts_with(prefix)).collect()
}

async fn statuses(w: &World, id: &str) -> Vec<(String, ServiceStatus)> {
    w.store.services(id).await.expect("services").into_iter().map(|s| (s.name, s.status)).collect()
}

#[tokio::test]
async fn sleep_stops_services_last_first_and_wake_starts_them_in_dependency_order() {
    let w = World::new().await;
    w.app().await;
    let env = layered(&w, None).await;
    let dev = w.as_(Actor::git("webhook"));
    let slept = dev.sleep_env(&env.id).await.expect("sleep");
    assert_eq!(slept.status, EnvStatus::Sleeping);
    assert!(slept.sleeping_since.is_some());
    assert_eq!(engine_calls(&w, &env.id, "stop."), ["stop.web", "stop.api", "stop.db"]);
    let engine = w.ports.engine_of(&env.id);
    assert_eq!(engine.state().stopped.len(), 3, "every container stopped, none removed");
    assert_eq!(engine.state().running.len(), 3);
    let asleep = statuses(&w, &env.id).await;
    assert!(asleep.contains(&("docs".into(), ServiceStatus::Ready)), "a static site stays served: {asleep:?}");
    assert_eq!(asleep.iter().filter(|(_, s)| *s == ServiceStatus::Sleeping).count(), 3, "{asleep:?}");
    // Asleep already: nothing more is stopped.
    dev.sleep_env(&env.id).await.expect("again");
    assert_eq!(engine_calls(&w, &env.id, "stop.").len(), 3);

    let woken = dev.wake_env(&env.id).await.expect("wake");
    assert_eq!((woken.status, woken.sleeping_since), (EnvStatus::Ready, None));
    assert_eq!(engine_calls(&w, &env.id, "resume."), ["resume.db", "resume.api", "resume.web"]);
    assert!(engine.state().stopped.is_empty());
    assert!(statuses(&w, &env.id).await.iter().all(|(_, s)| *s == ServiceStatus::Ready));
    // Awake already: nothing more is started.
    dev.wake_env(&env.id).await.expect("again");
    assert_eq!(engine_calls(&w, &env.id, "resume.").len(), 3);
    assert!(seen(&w).changed.iter().filter(|c| **c == env.id).count() >= 2, "the router follows both");
    let log: Vec<String> = w.activity().await.into_iter().filter(|a| a.contains("env.sleep") || a.contains("env.wake")).collect();
    let id = &env.id;
    assert_eq!(
        log,
        [
            format!("webhook env.sleep {id} ok"),
            format!("webhook env.sleep {id} ok"),
            format!("webhook env.wake {id} ok"),
            format!("webhook env.wake {id} ok")
        ]
    );
}

#[tokio::test]
async fn a_wake_that_fails_fails_the_environment_with_the_service_and_why() {
    let w = World::new().await;
    w.app().await;
    let env = layered(&w, None).await;
    let dev = w.as_(Actor::git("webhook"));
    dev.sleep_env(&env.id).await.expect("sleep");
    w.ports.engine_of(&env.id).fail("resume.api", "never became ready: GET /health answered 500");
    let e = dev.wake_env(&env.id).await.expect_err("api fails");
    assert_eq!(e.to_string(), "service `api`: never became ready: GET /health answered 500");
    let failed = w.store.env(&env.id).await.expect("read").expect("env");
    assert_eq!(failed.status, EnvStatus::Failed);
    assert_eq!(failed.reason.as_deref(), Some("waking: service `api`: never became ready: GET /health answered 500"));
    assert_eq!(engine_calls(&w, &env.id, "resume."), ["resume.db", "resume.api"], "web is not started after api failed");
    // A failed environment is neither slept nor woken; a deploy is the way back.
    let e = dev.wake_env(&env.id).await.expect_err("failed");
    assert_eq!((e.kind(), e.hint().as_deref()), (ErrorKind::Conflict, Some("deploy it again first: `offshoot env deploy ID`")));
}

#[tokio::test]
async fn only_a_ready_environment_sleeps_and_a_viewer_cannot_sleep_one() {
    let w = World::new().await;
    w.app().await;
    let env = w.env("main").await;
    let e = w.admin().sleep_env(&env.id).await.expect_err("still creating");
    assert_eq!(e.kind(), ErrorKind::Conflict);
    assert_eq!(e.to_string(), format!("environment `{}` is creating; it cannot sleep now", env.id));
    let viewer = w.as_(Actor { name: "someone".into(), role: Role::Viewer });
    assert_eq!(viewer.sleep_env(&env.id).await.expect_err("viewer").kind(), ErrorKind::Forbidden);
    assert_eq!(w.admin().wake_env("nope").await.expect_err("unknown").kind(), ErrorKind::NotFound);
    assert_eq!(w.store.env(&env.id).await.expect("read").expect("env").status, EnvStatus::Creating, "nothing changed");
}

#[tokio::test]
async fn a_request_wakes_a_sleeper_once_and_an_awake_environment_is_left_alone_unrecorded() {
    let w = World::new().await;
    w.app().await;
    let env = layered(&w, None).await;
    let router = w.as_(Actor::system("router"));
    router.wake_on_request(&env.id).await.expect("awake: nothing to do");
    assert!(!w.activity().await.iter().any(|a| a.contains("env.wake")), "nothing recorded");
    w.admin().sleep_env(&env.id).await.expect("sleep");
    let (a, b) = tokio::join!(router.wake_on_request(&env.id), router.wake_on_request(&env.id));
    a.expect("first");
    b.expect("second");
    assert_eq!(engine_calls(&w, &env.id, "resume.db").len(), 1, "woken once");
    assert_eq!(w.store.env(&env.id).await.expect("read").expect("env").status, EnvStatus::Ready);
}

#[tokio::test]
async fn an_interrupted_sleep_or_wake_is_finished_by_converge() {
    let w = World::new().await;
    w.app().await;
    let env = layered(&w, None).await;
    let system = w.as_(Actor::system("reconciler"));
    // Killed after the intent was written, before anything stopped.
    assert!(w.store.transition_env(&env.id, &[EnvStatus::Ready], EnvStatus::Sleeping, None).await.expect("intent"));
    let sleeping = w.store.env(&env.id).await.expect("read").expect("env");
    system.converge(&sleeping).await.expect("converge");
    assert_eq!(w.ports.engine_of(&env.id).state().stopped.len(), 3);
    system.converge(&sleeping).await.expect("again: every service is stopped");
    assert_eq!(engine_calls(&w, &env.id, "stop.").len(), 3, "nothing stopped twice");
    // Killed mid-wake: db started, the status still says waking.
    assert!(w.store.transition_env(&env.id, &[EnvStatus::Sleeping], EnvStatus::Waking, None).await.expect("intent"));
    offshoot_control::Backend::resume_service(&w.ports.engine_of(&env.id), "db").await.expect("db");
    let waking = w.store.env(&env.id).await.expect("read").expect("env");
    system.converge(&waking).await.expect("converge");
    let after = w.store.env(&env.id).await.expect("read").expect("env");
    assert_eq!(after.status, EnvStatus::Ready);
    assert!(w.ports.engine_of(&env.id).state().stopped.is_empty());
    // A ready environment: converge leaves it alone.
    system.converge(&after).await.expect("ready");
    assert_eq!(engine_calls(&w, &env.id, "stop.").len(), 3);
}

#[tokio::test]
async fn the_environments_of_imports_sleep_and_wake_with_their_importer_first_on_wake() {
    let w = World::new().await;
    w.app().await;
    let parent = layered(&w, None).await;
    let child = layered(&w, Some(&parent)).await;
    w.admin().sleep_env(&parent.id).await.expect("sleep");
    assert_eq!(w.store.env(&child.id).await.expect("read").expect("child").status, EnvStatus::Sleeping);
    assert_eq!(w.ports.engine_of(&child.id).state().stopped.len(), 3);
    let order_before = seen(&w).changed.len();
    w.admin().wake_env(&parent.id).await.expect("wake");
    let woken: Vec<EnvId> = seen(&w).changed[order_before..].to_vec();
    assert_eq!(woken, [child.id.clone(), parent.id.clone()], "the import's environment is awake first");
    assert_eq!(w.store.env(&child.id).await.expect("read").expect("child").status, EnvStatus::Ready);
}

#[tokio::test]
async fn idle_sleep_is_set_per_application_and_environment_and_picks_the_idle_ones() {
    use offshoot_control::sleep::{idle_limit, is_idle, parse_idle};
    assert_eq!(parse_idle("30m", false).expect("30m"), Some(1800));
    assert_eq!(parse_idle("off", false).expect("off"), None);
    assert_eq!(parse_idle("off", true).expect("off"), Some(0));
    assert_eq!(parse_idle("default", true).expect("default"), None);
    assert!(parse_idle("default", false).is_err(), "an application has no default above it");
    let e = parse_idle("5s", false).expect_err("too short");
    assert_eq!(e.to_string(), "idle_sleep: `5s` is not between 10 seconds and 30 days");
    let e = parse_idle("soon", true).expect_err("not a duration");
    assert_eq!(e.hint().as_deref(), Some("write it like `30m`, `2h`, `off` or `default`"));

    let w = World::new().await;
    w.app().await;
    let env = layered(&w, None).await;
    let update = |idle: &str| offshoot_api_types::AppUpdate { idle_sleep: Some(idle.into()), ..Default::default() };
    w.admin().update_settings("shop", &update("30m")).await.expect("app default");
    let dev = w.as_(Actor::git("webhook"));
    let now = env.updated_at;
    let idler = w.as_(Actor::system("idle"));
    let idle = |minutes: i64| {
        let idler = &idler;
        async move { idler.idle_envs(now + minutes * 60_000).await.expect("idle") }
    };
    assert!(idle(29).await.is_empty(), "not idle yet");
    let picked: Vec<EnvId> = idle(31).await.into_iter().map(|e| e.id).collect();
    assert_eq!(picked, std::slice::from_ref(&env.id));
    // A request resets the clock.
    w.store.record_requests(&[(env.id.to_string(), now + 20 * 60_000)]).await.expect("request");
    assert!(idle(31).await.is_empty(), "a request 11 minutes ago");
    assert_eq!(idle(51).await.len(), 1);
    // The environment's own setting wins: off, then shorter; `default` goes back to the app's.
    let env_update = |idle: &str| offshoot_api_types::EnvUpdate { idle_sleep: Some(idle.into()) };
    let e = dev.update_env_settings(&env.id, &env_update("off")).await.expect("off");
    assert_eq!((e.idle_sleep_seconds, idle_limit(&e, Some(1800))), (Some(0), None));
    assert!(idle(600).await.is_empty(), "never");
    let e = dev.update_env_settings(&env.id, &env_update("default")).await.expect("default");
    assert_eq!(idle_limit(&e, Some(1800)), Some(1800));
    // A sleeping environment, or an import's, is not picked.
    assert!(!is_idle(&Environment { status: EnvStatus::Sleeping, ..e.clone() }, Some(1800), now + 86_400_000));
    assert!(!is_idle(&Environment { parent_id: Some("parent1".into()), ..e.clone() }, Some(1800), now + 86_400_000));
    let bad = dev.update_env_settings(&env.id, &env_update("1s")).await.expect_err("too short");
    assert_eq!(bad.kind(), ErrorKind::BadInput);
    let viewer = w.as_(Actor { name: "v".into(), role: Role::Viewer });
    assert_eq!(viewer.update_env_settings(&env.id, &env_update("off")).await.expect_err("viewer").kind(), ErrorKind::Forbidden);
    let log: Vec<String> = w.activity().await.into_iter().filter(|a| a.contains("settings")).collect();
    let id = &env.id;
    assert_eq!(
        log,
        [
            "token app.settings shop ok".to_owned(),
            format!("webhook env.settings {id} ok"),
            format!("webhook env.settings {id} ok"),
            format!("webhook env.settings {id} refused"),
            format!("v env.settings {id} refused"),
        ]
    );
}
