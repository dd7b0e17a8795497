//! Instant Datasets in the use cases: an environment's checkout and check-in, and an admin's
//! dataset operations, over the hermetic world.

mod world;

use offshoot_control::{Actor, ErrorKind};
use world::*;

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
