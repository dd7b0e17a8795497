//! Environments that sleep, wake, go idle and expire, over the hermetic world.

mod world;

use offshoot_api_types::{EnvStatus, ServiceStatus};
use offshoot_control::environments::NewEnv;
use offshoot_control::fake::Crash;
use offshoot_control::{Actor, ErrorKind, Role};
use offshoot_git::hooks::PrAction;
use offshoot_store::{EnvId, Environment};
use world::*;

// Sleep and wake ------------------------------------------------------------------------------

const LAYERED: &str = "app: shop\nservices:\n- name: db\n  image: postgres\n- name: api\n  image: busybox\n  depends_on:\n  - db\n- name: web\n  image: busybox\n  depends_on:\n  - api\n- name: docs\n  image: busybox\n";

/// A ready environment running db ← api ← web on its fake engine, and a static site `docs`.
async fn layered(w: &World, parent: Option<&Environment>) -> Environment {
    let created = w.env("main").await;
    let id: EnvId = match parent {
        // The parent's id with another last letter.
        Some(p) => format!("{}{}", &p.id[..p.id.len() - 1], if p.id.ends_with('i') { 'j' } else { 'i' }).into(),
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
    let viewer = w.as_(Actor::user("someone", Role::Viewer));
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

/// What a family of environments is: each one's status, its services' records, and the
/// services its engine has running and stopped.
type FamilyState = Vec<(EnvStatus, Vec<(String, ServiceStatus)>, Vec<String>, Vec<String>)>;

async fn family_state(w: &World, ids: &[EnvId]) -> FamilyState {
    let mut out = Vec::new();
    for id in ids {
        let env = w.store.env(id).await.expect("read").expect("env");
        let engine = w.ports.engine_of(id).state();
        let running = engine.running.keys().filter(|s| !engine.stopped.contains(*s)).cloned().collect();
        out.push((env.status, statuses(w, id).await, running, engine.stopped.into_iter().collect()));
    }
    out
}

/// An importer and its import's environment, both ready (db ← api ← web each).
async fn family() -> (World, Vec<EnvId>) {
    let w = World::new().await;
    w.app().await;
    let parent = layered(&w, None).await;
    let child = layered(&w, Some(&parent)).await;
    (w, vec![parent.id, child.id])
}

/// Kills the server (drops the operation where it stands) at every point of a sleep, or of a
/// wake, of an importer and its import; then does what a restarted server does (the reconciler
/// converges each environment whose status says a sleep or a wake is under way) and checks the
/// family ends exactly as after an uninterrupted run, and that no service whose stop (or start)
/// was recorded before the kill was stopped (or started) again. The number of points.
async fn killed_at_every_point(wake: bool) -> usize {
    async fn op(w: &World, id: EnvId, wake: bool) -> Result<Environment, offshoot_control::ControlError> {
        let admin = w.admin();
        if wake { admin.wake_env(&id).await } else { admin.sleep_env(&id).await }
    }
    let prepared = || async {
        let (w, ids) = family().await;
        if wake {
            w.admin().sleep_env(&ids[0]).await.expect("asleep first");
        }
        (w, ids)
    };
    let (reference, points) = {
        let (w, ids) = prepared().await;
        let crash = Crash::never();
        for id in &ids {
            w.ports.engine_of(id).crash(&crash);
        }
        op(&w, ids[0].clone(), wake).await.expect("the uninterrupted run");
        (family_state(&w, &ids).await, crash.passed())
    };
    let (done, call) = if wake { (ServiceStatus::Ready, "resume.") } else { (ServiceStatus::Sleeping, "stop.") };
    for n in 0..points {
        let (w, ids) = prepared().await;
        let crash = Crash::at(n);
        for id in &ids {
            w.ports.engine_of(id).crash(&crash);
        }
        let killed = tokio::select! {
            r = op(&w, ids[0].clone(), wake) => Some(r.map(|_| ())),
            () = crash.fired() => None,
        };
        assert!(killed.is_none(), "not killed at point {n} of {points}: {killed:?}");
        crash.disarm();
        let mut recorded_done = Vec::new();
        let mut marks = Vec::new();
        for id in &ids {
            for (service, status) in statuses(&w, id).await {
                if status == done {
                    recorded_done.push(format!("{id}/{call}{service}"));
                }
            }
            marks.push(w.ports.engine_of(id).state().calls.len());
        }
        // The restarted server: its reconciler, over every environment, importer first.
        let system = w.as_(Actor::system("reconciler"));
        for id in &ids {
            let env = w.store.env(id).await.expect("read").expect("env");
            if matches!(env.status, EnvStatus::Sleeping | EnvStatus::Waking) {
                system.converge(&env).await.unwrap_or_else(|e| panic!("converge after point {n}: {e}"));
            }
        }
        assert_eq!(family_state(&w, &ids).await, reference, "after a kill at point {n} of {points}");
        for (id, mark) in ids.iter().zip(marks) {
            for again in &w.ports.engine_of(id).state().calls[mark..] {
                let key = format!("{id}/{again}");
                assert!(!recorded_done.contains(&key), "killed at point {n}: `{key}` was recorded done and ran again");
            }
        }
    }
    points
}

#[tokio::test]
async fn a_sleep_killed_at_every_point_is_finished_by_the_restarted_server_without_stopping_twice() {
    assert_eq!(killed_at_every_point(false).await, 12);
}

#[tokio::test]
async fn a_wake_killed_at_every_point_is_finished_by_the_restarted_server_without_starting_twice() {
    assert_eq!(killed_at_every_point(true).await, 12);
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
    // A request for the import's hostname wakes the whole: its importer, and so the import.
    w.admin().sleep_env(&parent.id).await.expect("sleep again");
    w.as_(Actor::system("router")).wake_on_request(&child.id).await.expect("a request for the import");
    assert_eq!(w.store.env(&parent.id).await.expect("read").expect("parent").status, EnvStatus::Ready);
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
    let viewer = w.as_(Actor::user("v", Role::Viewer));
    assert_eq!(viewer.update_env_settings(&env.id, &env_update("off")).await.expect_err("viewer").kind(), ErrorKind::Forbidden);
    let log: Vec<String> = w.activity().await.into_iter().filter(|a| a.contains("settings")).collect();
    let id = &env.id;
    assert_eq!(
        log,
        [
            "admin app.settings shop ok".to_owned(),
            format!("webhook env.settings {id} ok"),
            format!("webhook env.settings {id} ok"),
            format!("webhook env.settings {id} refused"),
            format!("v env.settings {id} refused"),
        ]
    );
}

#[tokio::test]
async fn applications_give_new_environments_a_lifetime_pull_requests_theirs_and_extend_moves_it() {
    let w = World::new().await;
    w.app().await;
    let set = offshoot_api_types::AppUpdate { ttl: Some("7d".into()), pull_request_ttl: Some("3d".into()), ..Default::default() };
    let git = w.admin().update_settings("shop", &set).await.expect("lifetimes");
    assert_eq!((git.ttl_seconds, git.pull_request_ttl_seconds), (Some(7 * 86_400), Some(3 * 86_400)));
    let before = offshoot_store::now_ms();
    let plain = w.env("main").await;
    let lifetime = |e: &Environment| e.expires_at.map(|t| (t - e.created_at) / 1000);
    assert_eq!(lifetime(&plain), Some(7 * 86_400));
    let admin = w.admin();
    let own = admin.create_env(NewEnv { app: "shop".into(), branch: "main".into(), ttl_seconds: Some(3600), ..Default::default() });
    assert_eq!(lifetime(&own.await.expect("create")), Some(3600), "its own wins");
    let pull = NewEnv {
        app: "shop".into(),
        branch: "feature/x".into(),
        pull_request: Some(pr(PrAction::Opened, "feature/x", "x")),
        ..Default::default()
    };
    let pull = w.admin().create_env(pull).await.expect("pull request");
    assert_eq!(lifetime(&pull), Some(3 * 86_400));
    for (field, bad) in [("ttl", "30s"), ("ttl", "400d"), ("pull_request_ttl", "soon")] {
        let req = if field == "ttl" {
            offshoot_api_types::AppUpdate { ttl: Some(bad.into()), ..Default::default() }
        } else {
            offshoot_api_types::AppUpdate { pull_request_ttl: Some(bad.into()), ..Default::default() }
        };
        let e = w.admin().update_settings("shop", &req).await.expect_err(bad);
        assert!(e.kind() == ErrorKind::BadInput && e.to_string().starts_with(&format!("{field}: ")), "{e}");
    }
    let off = offshoot_api_types::AppUpdate { ttl: Some("off".into()), ..Default::default() };
    assert_eq!(w.admin().update_settings("shop", &off).await.expect("off").ttl_seconds, None);
    assert_eq!(w.env("main").await.expires_at, None);

    // A day before it expires, its pull request is warned, once; extending moves the time and
    // warns again later.
    let system = w.as_(Actor::system("expiry"));
    let expires = pull.expires_at.expect("expires");
    assert!(system.expiry_warnings(expires - 25 * 3600 * 1000).await.expect("warnings").is_empty(), "not yet");
    let warned = system.expiry_warnings(expires - 23 * 3600 * 1000).await.expect("warnings");
    assert_eq!(warned.iter().map(|e| e.id.clone()).collect::<Vec<_>>(), std::slice::from_ref(&pull.id));
    assert!(system.expiry_warnings(expires - 22 * 3600 * 1000).await.expect("again").is_empty(), "once");
    let plain_end = plain.expires_at.expect("the plain one expires too");
    assert!(system.expiry_warnings(plain_end - 3600 * 1000).await.expect("plain").is_empty(), "only pull requests are warned");
    let dev = w.as_(Actor::git("webhook"));
    let extended = dev.extend_env(&pull.id, 48 * 3600).await.expect("extend");
    let at = extended.expires_at.expect("expires");
    assert!(at >= before + 48 * 3600 * 1000 && at <= offshoot_store::now_ms() + 48 * 3600 * 1000, "48 h from now");
    assert_eq!(system.expiry_warnings(at - 3600 * 1000).await.expect("new time").len(), 1, "the new time is warned about");
    assert_eq!(dev.extend_env(&pull.id, 0).await.expect_err("zero").kind(), ErrorKind::BadInput);
    let viewer = w.as_(Actor::user("v", Role::Viewer));
    assert_eq!(viewer.extend_env(&pull.id, 60).await.expect_err("viewer").kind(), ErrorKind::Forbidden);
    assert!(w.activity().await.contains(&format!("webhook env.extend {} ok", pull.id)));
}

#[tokio::test]
async fn schedules_put_environments_to_sleep_and_wake_them_once_each_when_they_fire() {
    use offshoot_control::apps::parse_schedule;
    assert_eq!(parse_schedule("sleep_schedule", " 0 20 * * 1-5 ").expect("valid").as_deref(), Some("0 20 * * 1-5"));
    assert_eq!(parse_schedule("sleep_schedule", "off").expect("off"), None);
    let e = parse_schedule("wake_schedule", "0 7 * *").expect_err("four fields");
    assert!(e.to_string().starts_with("wake_schedule: `0 7 * *` has 4 fields"), "{e}");
    assert!(e.hint().is_some_and(|h| h.contains("0 20 * * 1-5")));

    let w = World::new().await;
    w.app().await;
    let env = layered(&w, None).await;
    let set = offshoot_api_types::AppUpdate {
        sleep_schedule: Some("0 20 * * *".into()),
        wake_schedule: Some("0 7 * * *".into()),
        ..Default::default()
    };
    let git = w.admin().update_settings("shop", &set).await.expect("schedules");
    assert_eq!((git.sleep_schedule.as_deref(), git.wake_schedule.as_deref()), (Some("0 20 * * *"), Some("0 7 * * *")));
    let bad = offshoot_api_types::AppUpdate { sleep_schedule: Some("at eight".into()), ..Default::default() };
    assert_eq!(w.admin().update_settings("shop", &bad).await.expect_err("invalid").kind(), ErrorKind::BadInput);

    let at = |cron: &str, after: i64| {
        offshoot_datasets::Schedule::parse(cron).expect("cron").next_after_in(after, &chrono::Local).expect("fires")
    };
    let now = offshoot_store::now_ms();
    let evening = at("0 20 * * *", now);
    let system = w.as_(Actor::system("schedule"));
    let ids = |v: Vec<Environment>| v.into_iter().map(|e| e.id).collect::<Vec<EnvId>>();
    let (sleep, wake) = system.scheduled(evening - 5000, evening - 1).await.expect("before");
    assert!(sleep.is_empty() && wake.is_empty(), "not yet");
    let (sleep, wake) = system.scheduled(evening - 5000, evening + 5000).await.expect("at eight");
    assert_eq!((ids(sleep), wake.len()), (vec![env.id.clone()], 0));
    let (sleep, _) = system.scheduled(evening + 5000, evening + 10_000).await.expect("after");
    assert!(sleep.is_empty(), "once");
    system.sleep_env(&env.id).await.expect("sleep");
    let morning = at("0 7 * * *", evening);
    let (sleep, wake) = system.scheduled(morning - 5000, morning + 5000).await.expect("at seven");
    assert_eq!((sleep.len(), ids(wake)), (0, vec![env.id.clone()]));
    // Both in one window: the later wins (the wake, here).
    let (sleep, wake) = system.scheduled(evening - 1000, morning + 1000).await.expect("a long window");
    assert_eq!((sleep.len(), ids(wake)), (0, vec![env.id.clone()]));
}

#[tokio::test]
async fn at_capacity_the_least_recently_used_idle_environment_sleeps_to_make_room_or_the_request_is_refused() {
    use offshoot_control::capacity::{Capacity, memory_of};
    let t = "app: a\nresources:\n  memory:\n    limits: 256Mi\n  replicas: 1\nservices:\n- name: web\n  image: busybox\n- name: db\n  image: postgres\n  memory:\n    limits: 1Gi\n  replicas: 2\n";
    assert_eq!(memory_of(t), (256 << 20) + 2 * (1 << 30));
    assert_eq!(memory_of("not: [valid"), 0);

    let w = World::new().await;
    w.app().await;
    let old = layered(&w, None).await;
    let recent = layered(&w, None).await;
    w.store.record_requests(&[(recent.id.to_string(), offshoot_store::now_ms() + 1000)]).await.expect("a request");
    *w.ports.capacity.lock().expect("lock") = Capacity { max_environments: Some(2), memory_budget: None };
    let usage = w.admin().usage().await.expect("usage");
    assert_eq!((usage.running, usage.sleeping), (2, 0));
    // A third: the least recently used is put to sleep first.
    let third = w.env("main").await;
    assert_eq!(w.store.env(&old.id).await.expect("read").expect("old").status, EnvStatus::Sleeping);
    assert_eq!(w.store.env(&recent.id).await.expect("read").expect("recent").status, EnvStatus::Ready);
    assert!(w.activity().await.contains(&format!("capacity env.sleep {} ok", old.id)));
    // Waking the old one puts the other ready one to sleep (the third is still being created).
    w.admin().wake_env(&old.id).await.expect("wake");
    assert_eq!(w.store.env(&recent.id).await.expect("read").expect("recent").status, EnvStatus::Sleeping);
    assert_eq!(w.store.env(&old.id).await.expect("read").expect("old").status, EnvStatus::Ready);
    // With room for one only, and nothing idle to put to sleep: refused, with the figures.
    *w.ports.capacity.lock().expect("lock") = Capacity { max_environments: Some(1), memory_budget: None };
    w.store.set_env_status(&old.id, EnvStatus::Deploying, None).await.expect("busy");
    let admin = w.admin();
    let e = admin.create_env(NewEnv { app: "shop".into(), branch: "main".into(), ..Default::default() }).await.expect_err("full");
    assert_eq!((e.kind(), e.code()), (ErrorKind::Conflict, "capacity"));
    assert!(e.to_string().contains("2 of 1 environments run"), "{e}");
    let e = admin.wake_env(&recent.id).await.expect_err("no room to wake");
    assert_eq!(e.code(), "capacity");
    let still = w.store.env(&recent.id).await.expect("read").expect("recent");
    assert_eq!(still.status, EnvStatus::Sleeping);
    assert!(still.reason.as_deref().is_some_and(|r| r.starts_with("cannot wake: the server is at capacity")), "{still:?}");
    assert_eq!(w.store.envs(None, false).await.expect("envs").len(), 3, "nothing created");
    let _ = third;
    // A memory budget counts each service's limit: 2.25 GiB asked, 2.25 GiB running, 3 GiB
    // allowed: the running one sleeps first.
    let heavy = t.replace("app: a", "app: shop");
    admin.update_template("shop", Some(heavy.clone()), None).await.expect("a heavier template");
    w.store.set_env_config(&old.id, &heavy, "defaults: []\n").await.expect("old is heavy too");
    w.store.set_env_status(&old.id, EnvStatus::Ready, None).await.expect("ready");
    *w.ports.capacity.lock().expect("lock") = Capacity { max_environments: None, memory_budget: Some(3 << 30) };
    assert_eq!(admin.usage().await.expect("usage").memory, memory_of(&heavy));
    admin.create_env(NewEnv { app: "shop".into(), branch: "main".into(), ..Default::default() }).await.expect("room made");
    assert_eq!(w.store.env(&old.id).await.expect("read").expect("old").status, EnvStatus::Sleeping);
    *w.ports.capacity.lock().expect("lock") = Capacity { max_environments: None, memory_budget: Some(1 << 30) };
    let e = admin.create_env(NewEnv { app: "shop".into(), branch: "main".into(), ..Default::default() }).await.expect_err("too big");
    assert!(e.to_string().contains("memory budget in use, 2.2 GiB more asked"), "{e}");
}
