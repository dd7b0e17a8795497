//! The Instant Datasets' pool keeper, a loop of the server: on its first round it removes what a
//! crash left on the database servers, then on every round (every few seconds, or when a clone is
//! taken or returned, or a dataset created, refreshed or deleted) it brings each dataset's pool to
//! what it should be: snapshots taken when due, clones made up to the pool's size, checked-in and
//! deleted ones dropped. One keeper works on a dataset at a time; datasets are kept concurrently.
//!
//! Every clone and snapshot is recorded before it is made and dropped before its record goes,
//! so that after any crash each object on a server either has a record or is an orphan with this
//! server's prefix, which the first round drops.

use crate::background::{Background, Periodic};
use crate::clones::{clone_ctx, decrypt_dsn, source_ctx, target};
use crate::crypto::SecretKey;
use crate::failure::Failure;
use offshoot_datasets::{CloneSpec, DatabaseServer, Dsn, Names, Schedule, Server};
use offshoot_store::{Dataset, DatasetClone, Store, now_ms};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often every pool is looked at without being asked.
pub(crate) const ROUND: Duration = Duration::from_secs(5);

/// The keeper: what it works with and what it remembers between rounds.
pub(crate) struct Keeper {
    inner: Arc<Inner>,
    /// Whether the first round's recovery ran.
    recovered: bool,
}

struct Inner {
    store: Store,
    key: Arc<SecretKey>,
    /// This server's id: the prefix of every object it makes on a database server.
    instance: String,
    /// Where each dataset's keeper runs.
    background: Background,
    /// When each dataset's last snapshot attempt started (a failed scheduled one is not retried
    /// before its next time).
    attempted: Mutex<HashMap<String, i64>>,
    /// Leases already reported past their TTL.
    reported: Mutex<HashSet<String>>,
    /// The datasets a keeper is working on now.
    busy: Mutex<HashSet<String>>,
}

/// A dataset being kept; dropping it lets the next round keep it again.
struct Busy<'a>(&'a Inner, String);

impl<'a> Busy<'a> {
    fn take(k: &'a Inner, name: &str) -> Option<Self> {
        let mut busy = k.busy.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        busy.insert(name.to_owned()).then(|| Busy(k, name.to_owned()))
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.busy.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&self.1);
    }
}

impl Keeper {
    pub(crate) fn new(store: Store, key: Arc<SecretKey>, instance: String, background: Background) -> Self {
        let inner =
            Inner { store, key, instance, background, attempted: Mutex::default(), reported: Mutex::default(), busy: Mutex::default() };
        Keeper { inner: Arc::new(inner), recovered: false }
    }
}

impl Periodic for Keeper {
    const NAME: &'static str = "pool keeper";

    async fn round(&mut self) -> Result<(), Failure> {
        if !self.recovered {
            // Once, before any clone is made: a failure leaves the orphans to the next start.
            self.recovered = true;
            if let Err(e) = recover(&self.inner).await {
                tracing::error!(error = %e, "datasets: start-up recovery failed");
            }
        }
        for d in self.inner.store.datasets().await? {
            let k = self.inner.clone();
            self.inner.background.spawn("dataset keeper", async move { keep(&k, &d.name).await });
        }
        Ok(())
    }
}

/// After a crash: a clone being made and a snapshot being taken are forgotten (the snapshot is
/// taken again), then every database and role with this server's prefix that no record owns is
/// dropped.
async fn recover(k: &Inner) -> Result<(), Failure> {
    for c in k.store.clones_in_state("filling").await? {
        tracing::warn!(dataset = %c.dataset, clone = %c.db_name, "datasets: a clone was being made when the server stopped; dropping it");
        k.store.delete_clone(&c.db_name).await?;
    }
    let datasets = k.store.datasets().await?;
    let mut servers: BTreeMap<String, (Dsn, HashSet<String>)> = BTreeMap::new();
    for d in &datasets {
        if d.pending_snapshot.is_some() {
            tracing::warn!(dataset = %d.name, "datasets: a snapshot was being taken when the server stopped; taking it again");
            k.store.clear_pending_snapshot(&d.name).await?;
        }
        let t = target(&k.key, d)?;
        let entry = servers.entry(format!("{}|{}", t.kind.as_str(), t.server())).or_insert_with(|| (t, HashSet::new()));
        entry.1.extend(d.snapshot.iter().cloned());
        entry.1.extend(d.snapshot_owner.iter().cloned());
        for c in k.store.clones(&d.name).await? {
            entry.1.insert(c.db_name);
            entry.1.insert(c.role);
        }
    }
    let names = Names::new(&k.instance);
    for (dsn, owned) in servers.values() {
        let server = Server::new(dsn);
        // A database server still starting (or busy) gets a few chances.
        let mut listed = server.objects(names.prefix()).await;
        for _ in 0..4 {
            if listed.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            listed = server.objects(names.prefix()).await;
        }
        let objects = match listed {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(server = %dsn.server(), error = %e, "datasets: cannot list a server's objects; orphans stay until the next start");
                continue;
            }
        };
        for db in objects.databases.iter().filter(|d| !owned.contains(*d)) {
            tracing::warn!(server = %dsn.server(), database = %db, "datasets: dropping an orphan database");
            let dropped = if db.starts_with(&format!("{}s", names.prefix())) {
                server.drop_snapshot(db, "").await
            } else {
                server.drop_clone(db, db).await
            };
            if let Err(e) = dropped {
                tracing::error!(database = %db, error = %e, "datasets: cannot drop an orphan");
            }
        }
        for role in objects.roles.iter().filter(|r| !owned.contains(*r)) {
            tracing::warn!(server = %dsn.server(), role = %role, "datasets: dropping an orphan role");
            if let Err(e) = server.drop_role(role).await {
                tracing::error!(role = %role, error = %e, "datasets: cannot drop an orphan role");
            }
        }
    }
    Ok(())
}

/// Brings one dataset's pool to what it should be; one keeper per dataset at a time.
async fn keep(k: &Inner, name: &str) {
    let Some(_busy) = Busy::take(k, name) else { return };
    if let Err(e) = keep_locked(k, name).await {
        tracing::warn!(dataset = %name, error = %e, "datasets: the pool keeper stopped; it retries");
        crate::state::logged("a dataset error", k.store.set_dataset_error(name, Some(&e.to_string())).await);
    }
}

async fn keep_locked(k: &Inner, name: &str) -> Result<(), Failure> {
    loop {
        let Some(d) = k.store.dataset(name).await? else { return Ok(()) };
        let dsn = target(&k.key, &d)?;
        let server = Server::new(&dsn);
        let clones = k.store.clones(name).await?;
        // Checked-in clones (and, on delete, every clone) go first.
        for c in clones.iter().filter(|c| c.state == "dropping") {
            drop_clone(k, &server, c).await?;
        }
        if d.state == "deleting" {
            for c in &clones {
                if c.state == "ready" || c.state == "leased" {
                    // Whether it moved or another task moved it first, it is on its way out.
                    k.store.move_clone(&c.db_name, &c.state, "dropping").await?;
                    drop_clone(k, &server, c).await?;
                }
            }
            if let Some(s) = &d.snapshot {
                server.drop_snapshot(s, d.snapshot_owner.as_deref().unwrap_or("")).await?;
            }
            k.store.delete_dataset(name).await?;
            tracing::info!(dataset = %name, "dataset deleted");
            return Ok(());
        }
        if snapshot_due(k, &d) {
            take_snapshot(k, &server, &d).await?;
            continue;
        }
        let (Some(snapshot), Some(owner)) = (&d.snapshot, &d.snapshot_owner) else { return Ok(()) };
        // A refresh replaces the unattached clones of older snapshots; attached ones stay.
        let mut changed = false;
        for c in clones.iter().filter(|c| c.state == "ready" && c.generation < d.generation) {
            if k.store.move_clone(&c.db_name, "ready", "dropping").await? {
                drop_clone(k, &server, c).await?;
                changed = true;
            }
        }
        if changed {
            continue;
        }
        report_expired(k, &d, &clones);
        let available = clones.iter().filter(|c| (c.state == "ready" || c.state == "filling") && c.generation == d.generation).count();
        if available as i64 >= d.pool_size {
            if d.error.is_some() {
                k.store.set_dataset_error(name, None).await?;
            }
            return Ok(());
        }
        fill_one(k, &server, &d, snapshot, owner).await?;
    }
}

fn snapshot_due(k: &Inner, d: &Dataset) -> bool {
    // A refresh also retries a dataset whose first snapshot failed.
    if d.refresh_requested != 0 {
        return true;
    }
    if d.snapshot.is_none() {
        return d.state == "snapshotting";
    }
    let Some(schedule) = d.refresh.as_deref().and_then(|r| Schedule::parse(r).ok()) else { return false };
    let attempted = k.attempted.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&d.name).copied().unwrap_or(0);
    let since = d.snapshot_at.unwrap_or(d.created_at).max(attempted);
    schedule.next_after(since).is_some_and(|next| next <= now_ms())
}

async fn take_snapshot(k: &Inner, server: &Server, d: &Dataset) -> Result<(), Failure> {
    let names = Names::new(&k.instance);
    let (snap, owner) = (names.snapshot_name(), names.owner_name());
    k.attempted.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(d.name.clone(), now_ms());
    k.store.begin_snapshot(&d.name, &snap, &owner).await?;
    let source = decrypt_dsn(&k.key, &d.source, &source_ctx(&d.name))?;
    tracing::info!(dataset = %d.name, source = %source.redacted(), snapshot = %snap, "datasets: taking a snapshot");
    let started = std::time::Instant::now();
    match server.snapshot(&source, &snap, &owner).await {
        Ok(bytes) => {
            let previous = k.store.finish_snapshot(&d.name, i64::try_from(bytes).unwrap_or(i64::MAX)).await?;
            tracing::info!(dataset = %d.name, bytes, ms = started.elapsed().as_millis() as u64, "datasets: snapshot taken");
            if let Some((old, old_owner)) = previous
                && let Err(e) = server.drop_snapshot(&old, &old_owner).await
            {
                // Recorded nowhere now: the start-up reconciler drops it.
                tracing::warn!(dataset = %d.name, snapshot = %old, error = %e, "datasets: cannot drop the previous snapshot");
            }
            Ok(())
        }
        Err(e) => {
            let message = format!("snapshot of {}: {e}", source.redacted());
            tracing::warn!(dataset = %d.name, error = %message, "datasets: snapshot failed");
            if let Err(e2) = server.drop_snapshot(&snap, &owner).await {
                tracing::warn!(snapshot = %snap, error = %e2, "datasets: cannot drop a failed snapshot");
            }
            k.store.fail_snapshot(&d.name, &message).await?;
            Ok(())
        }
    }
}

async fn fill_one(k: &Inner, server: &Server, d: &Dataset, snapshot: &str, owner: &str) -> Result<(), Failure> {
    let db_name = Names::new(&k.instance).clone_name();
    let password = offshoot_datasets::new_password();
    let c = DatasetClone {
        db_name: db_name.clone(),
        dataset: d.name.clone(),
        generation: d.generation,
        role: db_name.clone(),
        password: k.key.encrypt(&password, &clone_ctx(&d.name, &db_name))?,
        state: "filling".into(),
        env_id: None,
        leased_at: None,
        created_at: now_ms(),
        ready_at: None,
    };
    k.store.add_clone(&c).await?;
    let spec = CloneSpec { database: db_name.clone(), role: db_name.clone(), password };
    let started = std::time::Instant::now();
    match server.make_clone(snapshot, owner, &spec).await {
        Ok(()) => {
            k.store.move_clone(&db_name, "filling", "ready").await?;
            tracing::debug!(dataset = %d.name, clone = %db_name, ms = started.elapsed().as_millis() as u64, "datasets: clone ready");
            Ok(())
        }
        Err(e) => {
            // A half-made clone; the record goes either way, so a leftover is named in the log.
            if let Err(drop) = server.drop_clone(&db_name, &db_name).await {
                tracing::warn!(dataset = %d.name, clone = %db_name, error = %drop, "datasets: cannot drop a half-made clone");
            }
            k.store.delete_clone(&db_name).await?;
            Err(format!("making a clone: {e}").into())
        }
    }
}

async fn drop_clone(k: &Inner, server: &Server, c: &DatasetClone) -> Result<(), Failure> {
    server.drop_clone(&c.db_name, &c.role).await.map_err(|e| format!("dropping clone `{}`: {e}", c.db_name))?;
    k.store.delete_clone(&c.db_name).await?;
    tracing::debug!(dataset = %c.dataset, clone = %c.db_name, "datasets: clone dropped");
    Ok(())
}

fn report_expired(k: &Inner, d: &Dataset, clones: &[DatasetClone]) {
    if d.ttl_seconds.is_none() {
        return;
    }
    let now = now_ms();
    let mut reported = k.reported.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    for c in clones.iter().filter(|c| c.state == "leased") {
        if crate::clones::lease_expiry(d, c).is_some_and(|e| e <= now) && reported.insert(c.db_name.clone()) {
            tracing::warn!(
                dataset = %d.name,
                env = c.env_id.as_deref().unwrap_or(""),
                clone = %c.db_name,
                "datasets: a clone has been attached longer than the dataset's TTL"
            );
        }
    }
}
