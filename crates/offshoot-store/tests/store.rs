//! One suite, run on SQLite and on PostgreSQL (started by `scripts/services`).

use offshoot_store::{
    App, AppGit, Backend, CRON_HISTORY, CronRun, Dataset, DatasetClone, Delivery, Deployment, Environment, INFRA_HISTORY, InfraRun,
    InfraUpdate, Secret, ServiceRow, Step, Store, StoreError, now_ms,
};

fn env(id: &str, app: &str) -> Environment {
    Environment {
        id: id.into(),
        app: app.into(),
        branch: "feature/x".into(),
        commit_sha: None,
        environment_template: Some("ephemeral".into()),
        status: offshoot_store::EnvStatus::Creating,
        reason: None,
        template: "app: shop\n".into(),
        env_vars: "defaults: []\n".into(),
        expires_at: Some(now_ms() + 3_600_000),
        created_at: now_ms(),
        updated_at: now_ms(),
        parent_id: None,
        import_info: None,
        pull_request: None,
        sleeping_since: None,
        last_request_at: None,
        idle_sleep_seconds: None,
        parameters: None,
    }
}

async fn suite(store: Store) {
    // Tokens are stored by hash.
    assert_eq!(store.token_count().await.expect("count"), 0);
    store.add_token("hash-1", "admin").await.expect("token");
    // The built-in admin's, with an id; an unknown hash is no one's.
    let (t, u) = store.token_user("hash-1").await.expect("read").expect("the token");
    assert_eq!((t.id.as_str(), u.email.as_str(), u.role.as_str()), ("thash-1", "admin", "admin"));
    assert!(store.token_user("hash-2").await.expect("read").is_none());

    // Applications and versions.
    let app = App { name: "shop".into(), repo: "/srv/shop".into(), default_branch: "main".into(), created_at: now_ms() };
    store.create_app(&app, "app: shop\n", "defaults: []\n").await.expect("create");
    assert!(matches!(store.create_app(&app, "", "").await, Err(StoreError::Conflict { .. })));
    assert_eq!(store.apps().await.expect("apps"), vec![app.clone()]);
    assert_eq!(store.latest_version("shop").await.expect("v").map(|v| v.version), Some(1));
    assert_eq!(store.add_version("shop", "app: shop # v2\n", "defaults: []\n").await.expect("v2"), 2);
    let latest = store.latest_version("shop").await.expect("v").expect("some");
    assert_eq!((latest.version, latest.template.as_str()), (2, "app: shop # v2\n"));

    // Secrets are upserted.
    let mut s = Secret { app: "shop".into(), service: "api".into(), key: "TOKEN".into(), ciphertext: "c1".into() };
    store.set_secret(&s).await.expect("secret");
    s.ciphertext = "c2".into();
    store.set_secret(&s).await.expect("secret again");
    assert_eq!(store.secrets("shop").await.expect("secrets"), vec![s]);

    // Environments.
    store.create_env(&env("abc1234", "shop")).await.expect("env");
    store.create_env(&env("def5678", "shop")).await.expect("env");
    store.set_env_commit("abc1234", "0123456789").await.expect("commit");
    store.set_env_status("abc1234", offshoot_store::EnvStatus::Ready, None).await.expect("status");
    store.set_env_status("def5678", offshoot_store::EnvStatus::Deleted, Some("deleted by user")).await.expect("status");
    let e = store.env("abc1234").await.expect("env").expect("some");
    assert_eq!((e.status.as_str(), e.commit_sha.as_deref()), ("ready", Some("0123456789")));
    assert_eq!(store.envs(Some("shop"), false).await.expect("envs").len(), 1);
    assert_eq!(store.envs(None, true).await.expect("envs").len(), 2);
    assert!(store.envs(Some("other"), true).await.expect("envs").is_empty());
    // An imported app's environment points at its importer.
    let child = Environment {
        parent_id: Some("abc1234".into()),
        import_info: Some(r#"{"reason":"same-name branch"}"#.into()),
        ..env("ghi9012", "backend")
    };
    store.create_env(&child).await.expect("child");
    assert_eq!(store.child_envs("abc1234").await.expect("children"), vec![child.clone()]);
    assert!(store.child_envs("def5678").await.expect("children").is_empty());

    // Deployments, steps (the resume log), services, build logs.
    let d = Deployment {
        id: "dep-1".into(),
        env_id: "abc1234".into(),
        workflow: "setup".into(),
        commit_sha: Some("0123456789".into()),
        status: offshoot_store::DeploymentStatus::Running,
        error: None,
        phases: "{}".into(),
        created_at: now_ms(),
        finished_at: None,
    };
    store.create_deployment(&d).await.expect("deployment");
    assert_eq!(store.unfinished_deployments().await.expect("unfinished"), vec![d.clone()]);
    let step = Step { deployment: "dep-1".into(), idx: 0, name: "data".into(), status: "running".into(), output: String::new() };
    store.set_step(&step).await.expect("step");
    store.set_step(&Step { status: "done".into(), output: "ok".into(), ..step }).await.expect("step done");
    let steps = store.steps("dep-1").await.expect("steps");
    assert_eq!((steps.len(), steps[0].status.as_str(), steps[0].output.as_str()), (1, "done", "ok"));
    // The steps of one environment's deployments, or of every live environment's.
    assert_eq!(store.deployment_steps(Some("abc1234")).await.expect("steps"), steps);
    assert_eq!(store.deployment_steps(None).await.expect("steps"), steps);
    assert!(store.deployment_steps(Some("def5678")).await.expect("steps").is_empty());
    store.set_phases("dep-1", r#"{"build":12}"#).await.expect("phases");
    store.finish_deployment("dep-1", offshoot_store::DeploymentStatus::Succeeded, None).await.expect("finish");
    assert!(store.unfinished_deployments().await.expect("unfinished").is_empty());
    let done = store.deployment("dep-1").await.expect("d").expect("some");
    assert_eq!((done.status.as_str(), done.phases.as_str()), ("succeeded", r#"{"build":12}"#));
    assert!(done.finished_at.is_some());
    store
        .set_service(&ServiceRow {
            env_id: "abc1234".into(),
            name: "web".into(),
            status: offshoot_store::ServiceStatus::Ready,
            reason: None,
            detail: offshoot_store::ServiceDetail { image: Some("busybox:stable".into()), ..offshoot_store::ServiceDetail::new() },
        })
        .await
        .expect("svc");
    store
        .set_service(&ServiceRow {
            env_id: "abc1234".into(),
            name: "web".into(),
            status: offshoot_store::ServiceStatus::Failed,
            reason: Some("probe".into()),
            detail: offshoot_store::ServiceDetail::new(),
        })
        .await
        .expect("svc");
    let services = store.services("abc1234").await.expect("services");
    assert_eq!((services.len(), services[0].status.as_str()), (1, "failed"));
    assert_eq!(services[0].detail, offshoot_store::ServiceDetail::new(), "the record was replaced whole");
    store.set_build_log("dep-1", "web", "Step 1/2").await.expect("log");
    assert_eq!(store.build_logs("dep-1").await.expect("logs"), vec![("web".to_owned(), "Step 1/2".to_owned())]);
    assert_eq!(store.deployments("abc1234").await.expect("deployments").len(), 1);

    // Git: settings created once, deliveries recorded once, heads remembered.
    let git = AppGit {
        app: "shop".into(),
        webhook_secret: "enc".into(),
        pull_requests: 0,
        pull_request_label: None,
        gitops_error: None,
        fetch_error: None,
        static_builder: None,
        terraform_image: None,
        access: None,
        bypass_token: None,
        idle_sleep_seconds: None,
        ttl_seconds: None,
        pull_request_ttl_seconds: None,
        sleep_schedule: None,
        wake_schedule: None,
        fork_secrets: 0,
    };
    assert_eq!(store.ensure_app_git(&git).await.expect("git"), git);
    // Forks' pull requests: an event recorded, then approved; a newer event keeps the approval.
    store.set_fork_pull("shop", "github:o/r#7", 7, "{\"v\":1}").await.expect("fork pull");
    store.approve_fork_pull("shop", "github:o/r#7", "abc", "alice").await.expect("approve");
    store.set_fork_pull("shop", "github:o/r#7", 7, "{\"v\":2}").await.expect("fork pull");
    let held = store.fork_pull("shop", "github:o/r#7").await.expect("read").expect("held");
    assert_eq!(
        (held.event.as_str(), held.approved_commit.as_deref(), held.approved_by.as_deref()),
        ("{\"v\":2}", Some("abc"), Some("alice"))
    );
    assert_eq!(store.fork_pulls("shop").await.expect("list").len(), 1);
    store.set_fork_secrets("shop", true).await.expect("fork secrets");
    assert_eq!(store.app_git("shop").await.expect("git").expect("some").fork_secrets, 1);
    store.set_fork_secrets("shop", false).await.expect("fork secrets");
    store.delete_fork_pull("shop", "github:o/r#7").await.expect("forget");
    assert!(store.fork_pull("shop", "github:o/r#7").await.expect("read").is_none());
    let other = AppGit { webhook_secret: "other".into(), ..git.clone() };
    assert_eq!(store.ensure_app_git(&other).await.expect("git").webhook_secret, "enc");
    store.set_pull_requests("shop", true, Some("preview")).await.expect("prs");
    store.set_gitops_error("shop", Some("bad template")).await.expect("gitops");
    let g = store.app_git("shop").await.expect("git").expect("some");
    assert_eq!((g.pull_requests, g.pull_request_label.as_deref(), g.gitops_error.as_deref()), (1, Some("preview"), Some("bad template")));
    store.set_static_builder("shop", Some("node:22")).await.expect("builder");
    assert_eq!(store.app_git("shop").await.expect("git").expect("some").static_builder.as_deref(), Some("node:22"));
    let d = Delivery {
        id: "github:1".into(),
        app: "shop".into(),
        event: "{}".into(),
        status: "pending".into(),
        result: None,
        received_at: now_ms() - 10_000,
        finished_at: None,
    };
    assert!(store.add_delivery(&d).await.expect("delivery"));
    assert!(!store.add_delivery(&d).await.expect("again"), "a repeated delivery id is refused");
    assert_eq!(store.pending_deliveries().await.expect("pending").len(), 1);
    assert_eq!(store.prune_deliveries(now_ms()).await.expect("prune"), 0, "pending deliveries are kept");
    store.finish_delivery("github:1", "done", "patched").await.expect("finish");
    assert!(store.pending_deliveries().await.expect("pending").is_empty());
    assert_eq!(store.deliveries("shop", 10).await.expect("list")[0].result.as_deref(), Some("patched"));
    assert_eq!(store.prune_deliveries(now_ms()).await.expect("prune"), 1);
    assert_eq!(store.set_git_head("shop", "refs/heads/main", "a1").await.expect("head"), None);
    assert_eq!(store.set_git_head("shop", "refs/heads/main", "b2").await.expect("head"), Some("a1".into()));
    assert_eq!(store.git_heads("shop").await.expect("heads"), vec![("refs/heads/main".to_owned(), "b2".to_owned())]);
    store.set_pr_comment("shop", "github:o/r#1", "77").await.expect("comment");
    assert_eq!(store.pr_comment("shop", "github:o/r#1").await.expect("comment").as_deref(), Some("77"));

    datasets(&store).await;

    assert!(store.delete_app("shop").await.expect("delete"));
    assert!(store.app_git("shop").await.expect("git").is_none());
    assert!(store.app("shop").await.expect("app").is_none());
    assert!(store.secrets("shop").await.expect("secrets").is_empty());
    store.close().await;
}

async fn datasets(store: &Store) {
    let d = Dataset::new("artists", "postgres", ("enc-src".into(), "enc-tgt".into()), 2, Some("0 3 * * *".into()), Some(3600));
    store.create_dataset(&d).await.expect("create");
    assert!(matches!(store.create_dataset(&d).await, Err(StoreError::Conflict { .. })));
    store.begin_snapshot("artists", "s1", "o1").await.expect("begin");
    assert_eq!(store.finish_snapshot("artists", 100).await.expect("finish"), None);
    let now = store.dataset("artists").await.expect("read").expect("exists");
    assert_eq!((now.generation, now.snapshot.as_deref(), now.state.as_str(), now.pending_snapshot), (1, Some("s1"), "ready", None));
    store.begin_snapshot("artists", "s2", "o2").await.expect("begin");
    assert_eq!(store.finish_snapshot("artists", 100).await.expect("finish"), Some(("s1".into(), "o1".into())), "the old one to drop");
    store.fail_snapshot("artists", "boom").await.expect("fail");
    assert_eq!(store.dataset("artists").await.expect("read").expect("exists").state, "ready", "an older snapshot still serves");

    // Twenty concurrent checkouts of eight ready clones: eight distinct winners, no clone twice.
    for i in 0..8 {
        let c = DatasetClone {
            db_name: format!("c{i}"),
            dataset: "artists".into(),
            generation: 2,
            role: format!("c{i}"),
            password: "enc".into(),
            state: "filling".into(),
            env_id: None,
            leased_at: None,
            created_at: now_ms(),
            ready_at: None,
        };
        store.add_clone(&c).await.expect("add");
        assert!(store.move_clone(&c.db_name, "filling", "ready").await.expect("ready"));
    }
    assert!(!store.move_clone("c0", "filling", "ready").await.expect("not filling any more"));
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let s = store.clone();
            tokio::spawn(async move { s.checkout("artists", &format!("env{i}")).await.expect("checkout") })
        })
        .collect();
    let mut got = Vec::new();
    for t in tasks {
        if let Some(c) = t.await.expect("join") {
            got.push(c.db_name);
        }
    }
    got.sort();
    assert_eq!(got, (0..8).map(|i| format!("c{i}")).collect::<Vec<_>>());
    let leased = store.leases("env3").await.expect("leases");
    assert!(leased.len() <= 1);
    assert_eq!(store.clones_in_state("leased").await.expect("leased").len(), 8);
    assert!(store.checkout("artists", "env99").await.expect("checkout").is_none(), "the pool is empty");
    store.delete_dataset("artists").await.expect("delete");
    assert!(store.clones("artists").await.expect("clones").is_empty());
    assert!(store.dataset("artists").await.expect("read").is_none());

    cron_runs(store).await;
    infrastructure(store).await;
    audit(store).await;

    // Registry credentials: replaced by host and application, forgotten once.
    let cred = |app: &str, user: &str| offshoot_store::RegistryCredential {
        host: "127.0.0.1:5001".into(),
        app: app.into(),
        username: user.into(),
        secret: "sealed".into(),
        created_at: 1,
    };
    store.set_registry_credential(&cred("", "ci")).await.expect("set");
    store.set_registry_credential(&cred("", "ops")).await.expect("replace");
    store.set_registry_credential(&cred("shop", "shop-bot")).await.expect("per app");
    let all = store.registry_credentials().await.expect("list");
    assert_eq!(all.iter().map(|c| (c.app.as_str(), c.username.as_str())).collect::<Vec<_>>(), [("", "ops"), ("shop", "shop-bot")]);
    assert!(store.delete_registry_credential("127.0.0.1:5001", "").await.expect("delete"));
    assert!(!store.delete_registry_credential("127.0.0.1:5001", "").await.expect("again"));
}

/// One run per occurrence; the latest occurrence per job; history bounded; finishing only a
/// running run.
async fn cron_runs(store: &Store) {
    let run = |id: &str, job: &str, at: i64, status: &str| CronRun {
        id: id.into(),
        env_id: "envc".into(),
        job: job.into(),
        scheduled_at: at,
        started_at: Some(at),
        finished_at: None,
        status: status.into(),
        reason: None,
        output: String::new(),
    };
    assert!(store.add_cron_run(&run("r1", "nightly", 1000, "running")).await.expect("add"));
    assert!(!store.add_cron_run(&run("r1b", "nightly", 1000, "running")).await.expect("add"), "the occurrence has its run");
    assert!(store.add_cron_run(&run("r2", "report", 500, "skipped")).await.expect("add"));
    let mut latest = store.cron_latest("envc").await.expect("latest");
    latest.sort();
    assert_eq!(latest, vec![("nightly".to_owned(), 1000, true), ("report".to_owned(), 500, false)]);
    assert_eq!(store.running_cron_runs().await.expect("running").len(), 1);
    store.finish_cron_run("r1", "succeeded", None, "done\n", 1500).await.expect("finish");
    store.finish_cron_run("r1", "failed", Some("late"), "", 1600).await.expect("a finished run stays as it is");
    let runs = store.cron_runs("envc", Some("nightly")).await.expect("runs");
    assert_eq!((runs[0].status.as_str(), runs[0].output.as_str(), runs[0].finished_at), ("succeeded", "done\n", Some(1500)));
    for i in 0..(CRON_HISTORY + 5) {
        store.add_cron_run(&run(&format!("h{i}"), "nightly", 2000 + i, "skipped")).await.expect("add");
    }
    let runs = store.cron_runs("envc", Some("nightly")).await.expect("runs");
    assert_eq!(runs.len() as i64, CRON_HISTORY, "the oldest are forgotten");
    assert_eq!(runs[0].scheduled_at, 2000 + CRON_HISTORY + 4, "newest first");
    assert_eq!(store.cron_runs("envc", None).await.expect("all").len() as i64, CRON_HISTORY + 1);

    // A job's built image: the latest one.
    store.set_job_image("envc", "seed", "offshoot/shop/jobs.seed:1").await.expect("image");
    store.set_job_image("envc", "seed", "offshoot/shop/jobs.seed:2").await.expect("image");
    assert_eq!(store.job_images("envc").await.expect("images"), vec![("seed".to_owned(), "offshoot/shop/jobs.seed:2".to_owned())]);
}

async fn audit(store: &Store) {
    use offshoot_store::{Activity, ActivityFilter};
    let record = |id: &str, at: i64, actor: &str, target: &str| Activity {
        id: id.into(),
        at,
        actor: actor.into(),
        operation: "env.create".into(),
        target: target.into(),
        outcome: "ok".into(),
        detail: None,
        token_id: Some("t1".into()),
        address: Some("127.0.0.1".into()),
    };
    store.add_activity(&record("a1", 1_000, "ann@example.com", "shop")).await.expect("add");
    store.add_activity(&record("a2", 2_000, "bob@example.com", "shop/registry.example.com")).await.expect("add");
    store.add_activity(&record("a3", 3_000, "ann@example.com", "other")).await.expect("add");
    let ids = |list: Vec<Activity>| list.into_iter().map(|a| a.id).collect::<Vec<_>>();
    let find = |app: Option<&str>, actor: Option<&str>, since: Option<i64>| ActivityFilter {
        app: app.map(str::to_owned),
        actor: actor.map(str::to_owned),
        since,
        limit: 100,
    };
    assert_eq!(ids(store.activity_where(&find(Some("shop"), None, None)).await.expect("list")), ["a2", "a1"]);
    assert_eq!(ids(store.activity_where(&find(None, Some("ann@example.com"), Some(2_000))).await.expect("list")), ["a3"]);
    let a = &store.activity_where(&find(None, None, Some(3_000))).await.expect("list")[0];
    assert_eq!((a.token_id.as_deref(), a.address.as_deref()), (Some("t1"), Some("127.0.0.1")));
    assert_eq!(store.prune_activity(2_500).await.expect("prune"), 2, "past the retention");
    assert_eq!(ids(store.activity_where(&find(None, None, None)).await.expect("list")), ["a3"]);
}

async fn infrastructure(store: &Store) {
    // The lock: taken by one deployment (again after a restart), refused to another.
    assert_eq!(store.lock_infra("envi", "bucket", "d1", 10).await.expect("lock"), None);
    assert_eq!(store.lock_infra("envi", "bucket", "d1", 11).await.expect("lock"), None, "its holder takes it again");
    assert_eq!(store.lock_infra("envi", "bucket", "d2", 12).await.expect("lock"), Some("d1".into()));
    let s = store.infra_state("envi", "bucket").await.expect("read").expect("a record");
    assert_eq!((s.status.as_str(), s.state, s.locked_by.as_deref()), ("new", None, Some("d1")));
    let update = InfraUpdate {
        state: Some("sealed".into()),
        serial: 3,
        backend: None,
        outputs: r#"{"BUCKET_URL":"s3://b"}"#.into(),
        sensitive: Some("sealed outputs".into()),
        status: "applied".into(),
        reason: None,
    };
    store.save_infra("envi", "bucket", &update, 20).await.expect("save");
    store.fail_infra("envi", "bucket", "Error: boom", 21).await.expect("fail");
    let s = store.infra_state("envi", "bucket").await.expect("read").expect("a record");
    assert_eq!((s.state.as_deref(), s.serial, s.status.as_str(), s.reason.as_deref()), (Some("sealed"), 3, "failed", Some("Error: boom")));
    // A lock whose deployment is not running goes at a restart; the other's is kept.
    assert_eq!(store.release_stale_infra_locks().await.expect("release"), 1);
    assert_eq!(store.lock_infra("envi", "bucket", "d2", 30).await.expect("lock"), None);
    store.unlock_infra("envi", "bucket", "d1").await.expect("not the holder: nothing");
    assert_eq!(store.infra_state("envi", "bucket").await.expect("read").expect("record").locked_by.as_deref(), Some("d2"));
    store.unlock_infra("envi", "bucket", "d2").await.expect("unlock");
    assert_eq!(store.infra_states("envi").await.expect("list").len(), 1);
    store.forget_infra("envi", "bucket").await.expect("forget");
    assert!(store.infra_states("envi").await.expect("list").is_empty());

    // Runs: the last INFRA_HISTORY kept, newest first; a stopped server's run interrupted.
    let run = |id: String, at: i64| InfraRun {
        id,
        env_id: "envi".into(),
        name: "bucket".into(),
        action: "apply".into(),
        deployment_id: Some("d1".into()),
        started_at: at,
        finished_at: None,
        status: "running".into(),
        reason: None,
        log: String::new(),
    };
    for i in 0..(INFRA_HISTORY + 3) {
        store.add_infra_run(&run(format!("i{i}"), 100 + i)).await.expect("add");
        if i < INFRA_HISTORY + 2 {
            store.finish_infra_run(&format!("i{i}"), "succeeded", None, "Apply complete!", 200 + i).await.expect("finish");
        }
    }
    let runs = store.infra_runs("envi", Some("bucket")).await.expect("runs");
    assert_eq!(runs.len() as i64, INFRA_HISTORY, "the oldest are forgotten");
    assert_eq!((runs[0].status.as_str(), runs[1].log.as_str()), ("running", "Apply complete!"));
    assert_eq!(store.interrupt_infra_runs(500).await.expect("interrupt"), 1);
    assert_eq!(store.infra_runs("envi", None).await.expect("runs")[0].status, "interrupted");
    store.forget_infra_runs("envi").await.expect("forget");
    assert!(store.infra_runs("envi", None).await.expect("runs").is_empty());
}

#[tokio::test]
async fn sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("offshoot.db").display());
    let store = Store::open(&url).await.expect("open");
    assert_eq!(store.backend(), Backend::Sqlite);
    suite(store).await;
    // Reopening runs no migration twice.
    Store::open(&url).await.expect("reopen").close().await;
}

#[tokio::test]
async fn postgres() {
    let admin = std::env::var("OFFSHOOT_TEST_POSTGRES").unwrap_or_else(|_| "postgres://offshoot:offshoot@127.0.0.1:5432/postgres".into());
    let name = format!("offshoot_test_{}_{}", std::process::id(), now_ms() % 1_000_000);
    let (base, _) = admin.rsplit_once('/').expect("a database URL");
    {
        use sqlx::Connection as _;
        let mut conn = sqlx::PgConnection::connect(&admin).await.expect("PostgreSQL must be running: run `bash scripts/services`");
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.expect("create database");
    }
    let store = Store::open(&format!("{base}/{name}")).await.expect("open");
    assert_eq!(store.backend(), Backend::Postgres);
    suite(store).await;
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(&admin).await.expect("connect");
    sqlx::query(&format!("DROP DATABASE {name}")).execute(&mut conn).await.expect("drop database");
}
