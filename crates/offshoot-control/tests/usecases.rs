//! Hermetic scenarios of the use cases: a temporary SQLite store, real git repositories in
//! temporary directories (made with the `git` command, fetched into mirrors as the server does),
//! and ports that record what the use cases start instead of running it.

mod world;

use offshoot_api_types::{DeploymentStatus, EnvStatus};
use offshoot_control::apps::NewApp;
use offshoot_control::environments::NewEnv;
use offshoot_control::{Actor, ControlError, ErrorKind, Role};
use offshoot_git::hooks::{GitEvent, PrAction};
use offshoot_store::{EnvId, Environment};
use world::*;

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
    assert_eq!(w.activity().await, ["admin app.create shop ok"]);
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
        ["admin app.create shop ok", "admin app.create shop refused", "admin app.create Shop_1 refused", "admin app.create all refused"]
    );
}

#[tokio::test]
async fn each_role_may_do_what_its_operations_need_and_a_refusal_changes_nothing() {
    let w = World::new().await;
    let viewer = Actor::user("ann", Role::Viewer);
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
    assert_eq!(log[..3], ["webhook app.create shop refused", "admin app.create shop ok", "ann env.create shop refused"]);
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
async fn a_fork_s_pull_request_waits_for_an_approval_of_its_head_commit() {
    let w = World::new().await;
    w.app().await;
    let head = git(&w.repo, &["rev-parse", "feature/x"]);
    git(&w.repo, &["update-ref", "refs/pull/7/head", &head]);
    let fork =
        |action, commit: &str| offshoot_git::hooks::PullRequest { fork: Some("mallory/shop".into()), ..pr(action, "patch-1", commit) };
    // With pull-request environments off there is nothing to approve: said as for any.
    let (_, result) = w.deliver("f1", GitEvent::PullRequest(fork(PrAction::Opened, &head)), "webhook").await;
    assert!(result.contains("pull-request environments are off"), "{result}");
    w.store.set_pull_requests("shop", true, None).await.expect("on");
    let (status, result) = w.deliver("f2", GitEvent::PullRequest(fork(PrAction::Opened, &head)), "webhook").await;
    assert_eq!(status, "done");
    assert!(
        result.contains("from the fork `mallory/shop` waits for approval") && result.contains("offshoot env approve shop 7"),
        "{result}"
    );
    assert!(w.store.envs(Some("shop"), false).await.expect("envs").is_empty());
    // A viewer may not approve; a developer does, and the head gets an environment.
    let refused = w.as_(Actor::user("ann", Role::Viewer)).approve_pull_request("shop", 7).await.expect_err("a viewer");
    assert_eq!(refused.kind(), ErrorKind::Forbidden);
    let done = w.as_(Actor::user("dev", Role::Developer)).approve_pull_request("shop", 7).await.expect("approved");
    assert!(done.starts_with(&format!("{} of pull request #7 approved by dev", &head[..7])), "{done}");
    let envs = w.store.envs(Some("shop"), false).await.expect("envs");
    assert_eq!((envs.len(), envs[0].branch.as_str()), (1, "refs/pull/7/head"));
    let setup = w.store.deployments(&envs[0].id).await.expect("deployments");
    assert_eq!(setup[0].commit_sha.as_deref(), Some(head.as_str()), "its setup deploys the approved commit");
    assert!(offshoot_control::forks::secrets_withheld(&w.store, &envs[0]).await.expect("read"));
    // Nor does it get a clone of a dataset, unless the application allows forks its secrets.
    let system = w.as_(Actor::system("controller"));
    let wait = std::time::Duration::from_millis(100);
    let e = system.attach_datasets(&envs[0], &["artists".into()], wait).await.expect_err("a fork's");
    assert!(e.to_string().contains("a fork's pull request gets no clone of a dataset (artists)"), "{e}");
    assert!(e.hint().is_some_and(|h| h.contains("offshoot app set shop --fork-secrets on")), "{e:?}");
    system.attach_datasets(&envs[0], &[], wait).await.expect("none wanted: nothing to refuse");
    w.store.set_fork_secrets("shop", true).await.expect("allowed");
    assert!(!offshoot_control::forks::secrets_withheld(&w.store, &envs[0]).await.expect("read"));
    let e = system.attach_datasets(&envs[0], &["artists".into()], wait).await.expect_err("no such dataset here");
    assert!(e.to_string().contains("dataset `artists` does not exist"), "allowed, it goes on to check out: {e}");
    w.store.set_fork_secrets("shop", false).await.expect("withheld again");
    // A new commit waits; the label approves it.
    let next = commit(&w.repo, &[("README", "from the fork\n")], "fork");
    git(&w.repo, &["update-ref", "refs/pull/7/head", &next]);
    let (_, result) = w.deliver("f3", GitEvent::PullRequest(fork(PrAction::Synchronize, &next)), "webhook").await;
    assert!(result.contains(&format!("{} stays as it is", envs[0].id)), "{result}");
    // Meanwhile it deploys only the commit approved, whatever its ref's head.
    let dev = w.as_(Actor::user("dev", Role::Developer));
    let e = dev.deploy_env(&envs[0].id, Some(next.clone())).await.expect_err("not approved");
    assert!(e.to_string().contains("is not the one approved"), "{e}");
    dev.deploy_env(&envs[0].id, None).await.expect("redeployed");
    let last = w.store.deployments(&envs[0].id).await.expect("deployments");
    assert_eq!(last.last().and_then(|d| d.commit_sha.as_deref()), Some(head.as_str()), "the approved commit, not the ref's head");
    let labelled = offshoot_git::hooks::PullRequest { labels: vec!["offshoot-approved".into()], ..fork(PrAction::Labeled, &next) };
    let (_, result) = w.deliver("f4", GitEvent::PullRequest(labelled), "webhook").await;
    let held = w.store.fork_pull("shop", "github:acme/shop#7").await.expect("read").expect("held");
    assert_eq!(
        (held.approved_commit.as_deref(), held.approved_by.as_deref()),
        (Some(next.as_str()), Some("the label `offshoot-approved`")),
        "{result}"
    );
    // A comment approving a pull request that is no fork's: nothing held.
    let (status, result) = w.deliver("f5", GitEvent::Approve { number: 8, by: "maintainer".into() }, "webhook").await;
    assert_eq!(status, "failed");
    assert!(result.contains("pull request from a fork `shop #8` does not exist"), "{result}");
    assert!(result.contains("\nhint: `offshoot env pending shop` lists those waiting"), "the result says what to do: {result}");
    // Nobody deploys the pull request's ref as a branch.
    let own = NewEnv { app: "shop".into(), branch: "refs/pull/7/head".into(), ..NewEnv::default() };
    let e = w.admin().create_env(own).await.expect_err("refused");
    assert_eq!(e.kind(), ErrorKind::BadInput);
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

#[tokio::test]
async fn what_an_adapter_does_itself_passes_the_same_gate() {
    let w = World::new().await;
    let viewer = Actor::user("ann", Role::Viewer);
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
    assert_eq!(w.activity().await, ["ann env.exec e1/web refused", "admin env.exec e1/web refused"]);
}

#[tokio::test]
async fn settings_and_the_webhook_secret_change_only_through_the_gate() {
    let w = World::new().await;
    w.app().await;
    let update = offshoot_api_types::AppUpdate {
        pull_requests: Some(true),
        pull_request_label: Some("preview".into()),
        static_builder: Some("node:22".into()),
        ..Default::default()
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
