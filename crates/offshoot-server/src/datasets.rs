//! Instant Datasets in the control plane: the API, the pool keeper (snapshots, refills, scheduled
//! refreshes, the drops of checked-in clones), an environment's checkout and check-in, and the
//! start-up reconciler that removes what a crash left on the database servers.
//!
//! Every clone and snapshot is recorded before it is made and dropped before its record goes,
//! so that after any crash each object on a server either has a record or is an orphan with this
//! server's prefix, which `recover` drops.

use crate::error::ApiError;
use crate::failure::Failure;
use crate::state::Pools;
use crate::state::{Ctx, Shared};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use offshoot_api_types as api;
use offshoot_datasets::{CloneSpec, DatabaseServer, Dsn, Kind, Names, Schedule, Server};
use offshoot_store::{Dataset, DatasetClone, EnvId, now_ms};
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

/// Largest pool.
const MAX_POOL: u32 = 50;
/// How often every pool is looked at without being asked.
const ROUND: Duration = Duration::from_secs(5);
/// The name containers use for the machine they run on (a database on its loopback).
pub(crate) const HOST_ALIAS: &str = offshoot_docker::HOST_GATEWAY_ALIAS;

impl Pools {
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }
}

pub(crate) fn api(router: Router<Shared>) -> Router<Shared> {
    router
        .route("/datasets", post(create).get(list))
        .route("/datasets/{name}", get(show).delete(delete))
        .route("/datasets/{name}/refresh", post(refresh))
}

fn source_ctx(name: &str) -> String {
    format!("dataset/{name}/source")
}
fn target_ctx(name: &str) -> String {
    format!("dataset/{name}/target")
}
fn clone_ctx(name: &str, db: &str) -> String {
    format!("dataset/{name}/clone/{db}")
}

fn decrypt_dsn(ctx: &Ctx, stored: &str, context: &str) -> Result<Dsn, Failure> {
    let url = ctx.key.decrypt(stored, context).map_err(|e| format!("cannot decrypt `{context}`: {e}"))?;
    Dsn::parse(&url).map_err(Failure::from)
}

fn target(ctx: &Ctx, d: &Dataset) -> Result<Dsn, Failure> {
    decrypt_dsn(ctx, &d.target, &target_ctx(&d.name))
}

async fn create(State(ctx): State<Shared>, Json(req): Json<api::CreateDataset>) -> Result<(StatusCode, Json<api::DatasetInfo>), ApiError> {
    offshoot_datasets::check_name(&req.name).map_err(|e| ApiError::bad_request(format!("name: {e}")))?;
    let source = Dsn::parse(&req.source).map_err(|e| ApiError::bad_request(format!("source: {e}")))?;
    if source.database.is_none() {
        return Err(ApiError::bad_request("source: the URL names no database")
            .hint("end it with the database's name: postgres://USER:PASS@HOST/DB"));
    }
    let target = match &req.target {
        Some(t) => Dsn::parse(t).map_err(|e| ApiError::bad_request(format!("target: {e}")))?,
        None => source.with_database(None),
    };
    if target.kind != source.kind {
        return Err(ApiError::bad_request(format!(
            "target: a {} dataset needs a {} server, not {}",
            source.kind.as_str(),
            source.kind.as_str(),
            target.kind.as_str()
        )));
    }
    let pool_size = req.pool_size.unwrap_or(2);
    if !(1..=MAX_POOL).contains(&pool_size) {
        return Err(ApiError::bad_request(format!("pool_size: {pool_size} is not between 1 and {MAX_POOL}")));
    }
    if let Some(r) = &req.refresh {
        if r.len() > 200 {
            return Err(ApiError::bad_request("refresh: longer than 200 characters"));
        }
        Schedule::parse(r).map_err(|e| ApiError::bad_request(format!("refresh: {e}")))?;
    }
    let ttl = match &req.ttl {
        Some(t) => Some(offshoot_datasets::parse_duration(t).map_err(|e| ApiError::bad_request(format!("ttl: {e}")))? as i64),
        None => None,
    };
    let urls =
        (ctx.key.encrypt(&source.expose_url(), &source_ctx(&req.name))?, ctx.key.encrypt(&target.expose_url(), &target_ctx(&req.name))?);
    let d = Dataset::new(&req.name, source.kind.as_str(), urls, i64::from(pool_size), req.refresh.clone(), ttl);
    ctx.store.create_dataset(&d).await?;
    tracing::info!(dataset = %d.name, source = %source.redacted(), target = %target.redacted(), pool_size, "dataset created");
    ctx.pools.wake();
    Ok((StatusCode::CREATED, Json(info(&ctx, d).await?)))
}

pub(crate) async fn list(State(ctx): State<Shared>) -> Result<Json<Vec<api::DatasetInfo>>, ApiError> {
    let mut out = Vec::new();
    for d in ctx.store.datasets().await? {
        out.push(info(&ctx, d).await?);
    }
    Ok(Json(out))
}

async fn find(ctx: &Shared, name: &str) -> Result<Dataset, ApiError> {
    ctx.store.dataset(name).await?.ok_or_else(|| ApiError::not_found("dataset", name).hint("`offshoot dataset list` shows them"))
}

async fn show(State(ctx): State<Shared>, Path(name): Path<String>) -> Result<Json<api::DatasetInfo>, ApiError> {
    let d = find(&ctx, &name).await?;
    Ok(Json(info(&ctx, d).await?))
}

async fn refresh(State(ctx): State<Shared>, Path(name): Path<String>) -> Result<(StatusCode, Json<api::DatasetInfo>), ApiError> {
    let d = find(&ctx, &name).await?;
    if d.state == "deleting" {
        return Err(ApiError::new(StatusCode::CONFLICT, "deleting", format!("dataset `{name}` is being deleted")));
    }
    ctx.store.request_refresh(&name).await?;
    ctx.pools.wake();
    let d = find(&ctx, &name).await?;
    Ok((StatusCode::ACCEPTED, Json(info(&ctx, d).await?)))
}

#[derive(Deserialize)]
struct DeleteQuery {
    #[serde(default)]
    force: bool,
}

async fn delete(
    State(ctx): State<Shared>,
    Path(name): Path<String>,
    Query(q): Query<DeleteQuery>,
) -> Result<(StatusCode, Json<api::DatasetInfo>), ApiError> {
    let d = find(&ctx, &name).await?;
    let holders: Vec<String> = ctx
        .store
        .clones(&name)
        .await?
        .into_iter()
        .filter(|c| c.state == "leased")
        .filter_map(|c| c.env_id.map(EnvId::into_string))
        .collect();
    if !holders.is_empty() && !q.force {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "in-use",
            format!("dataset `{name}` is attached to environment(s) {}", holders.join(", ")),
        )
        .hint("delete those environments first, or pass --force to drop their databases too"));
    }
    ctx.store.set_dataset_state(&name, "deleting", None).await?;
    ctx.pools.wake();
    let d = Dataset { state: "deleting".into(), ..d };
    Ok((StatusCode::ACCEPTED, Json(info(&ctx, d).await?)))
}

/// A dataset as the API shows it (passwords masked).
async fn info(ctx: &Shared, d: Dataset) -> Result<api::DatasetInfo, ApiError> {
    let clones = ctx.store.clones(&d.name).await?;
    let count = |s: &str| clones.iter().filter(|c| c.state == s).count() as u32;
    let now = now_ms();
    let leases = clones
        .iter()
        .filter(|c| c.state == "leased")
        .map(|c| {
            let expires_at = lease_expiry(&d, c);
            api::Lease {
                env_id: c.env_id.clone().map(EnvId::into_string).unwrap_or_default(),
                database: c.db_name.clone(),
                leased_at: c.leased_at.unwrap_or(0),
                expires_at,
                expired: expires_at.is_some_and(|e| e <= now),
                stale: c.generation < d.generation,
            }
        })
        .collect();
    let mut fills: Vec<i64> =
        clones.iter().filter(|c| c.generation == d.generation).filter_map(|c| c.ready_at.map(|r| r - c.created_at)).collect();
    fills.sort_unstable();
    let fill_ms = fills.get(fills.len() / 2).copied();
    let redact = |stored: &str, context: &str| decrypt_dsn(ctx, stored, context).map_or_else(|e| e.to_string(), |d| d.redacted());
    Ok(api::DatasetInfo {
        source: redact(&d.source, &source_ctx(&d.name)),
        target: redact(&d.target, &target_ctx(&d.name)),
        pool_size: u32::try_from(d.pool_size).unwrap_or(0),
        next_refresh: d.refresh.as_deref().and_then(|r| Schedule::parse(r).ok()).and_then(|s| s.next_after(d.snapshot_at.unwrap_or(now))),
        ttl_seconds: d.ttl_seconds,
        refreshing: d.pending_snapshot.is_some() || d.refresh_requested != 0,
        snapshot: d.snapshot.as_ref().map(|_| api::Snapshot {
            generation: d.generation,
            bytes: d.snapshot_bytes.unwrap_or(0),
            taken_at: d.snapshot_at.unwrap_or(0),
        }),
        pool: api::PoolState { ready: count("ready"), leased: count("leased"), filling: count("filling") },
        fill_ms,
        leases,
        name: d.name,
        engine: d.engine,
        refresh: d.refresh,
        state: d.state,
        error: d.error,
        created_at: d.created_at,
    })
}

// The pool keeper ---------------------------------------------------------------------------------

/// Removes what a crash left, then keeps the pools until the server stops.
pub(crate) async fn run(ctx: Shared) {
    if let Err(e) = recover(&ctx).await {
        tracing::error!(error = %e, "datasets: start-up recovery failed");
    }
    loop {
        match ctx.store.datasets().await {
            Ok(all) => {
                for d in all {
                    let shared = ctx.clone();
                    ctx.background.spawn("pool keeper", async move { keep(&shared, &d.name).await });
                }
            }
            Err(e) => tracing::error!(error = %e, "datasets: cannot list"),
        }
        tokio::select! {
            _ = ctx.pools.wake.notified() => {}
            _ = tokio::time::sleep(ROUND) => {}
        }
    }
}

/// After a crash: a clone being made and a snapshot being taken are forgotten (the snapshot is
/// taken again), then every database and role with this server's prefix that no record owns is
/// dropped.
pub(crate) async fn recover(ctx: &Shared) -> Result<(), Failure> {
    for c in ctx.store.clones_in_state("filling").await? {
        tracing::warn!(dataset = %c.dataset, clone = %c.db_name, "datasets: a clone was being made when the server stopped; dropping it");
        ctx.store.delete_clone(&c.db_name).await?;
    }
    let datasets = ctx.store.datasets().await?;
    let mut servers: BTreeMap<String, (Dsn, HashSet<String>)> = BTreeMap::new();
    for d in &datasets {
        if d.pending_snapshot.is_some() {
            tracing::warn!(dataset = %d.name, "datasets: a snapshot was being taken when the server stopped; taking it again");
            ctx.store.clear_pending_snapshot(&d.name).await?;
        }
        let t = target(ctx, d)?;
        let entry = servers.entry(format!("{}|{}", t.kind.as_str(), t.server())).or_insert_with(|| (t, HashSet::new()));
        entry.1.extend(d.snapshot.iter().cloned());
        entry.1.extend(d.snapshot_owner.iter().cloned());
        for c in ctx.store.clones(&d.name).await? {
            entry.1.insert(c.db_name);
            entry.1.insert(c.role);
        }
    }
    let names = Names::new(&ctx.instance);
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
async fn keep(ctx: &Shared, name: &str) {
    let lock = ctx.lock_for(&format!("dataset/{name}"));
    let Ok(_guard) = lock.try_lock() else { return };
    if let Err(e) = keep_locked(ctx, name).await {
        tracing::warn!(dataset = %name, error = %e, "datasets: the pool keeper stopped; it retries");
        crate::state::logged("a dataset error", ctx.store.set_dataset_error(name, Some(&e.to_string())).await);
    }
}

async fn keep_locked(ctx: &Shared, name: &str) -> Result<(), Failure> {
    loop {
        let Some(d) = ctx.store.dataset(name).await? else { return Ok(()) };
        let dsn = target(ctx, &d)?;
        let server = Server::new(&dsn);
        let clones = ctx.store.clones(name).await?;
        // Checked-in clones (and, on delete, every clone) go first.
        for c in clones.iter().filter(|c| c.state == "dropping") {
            drop_clone(ctx, &server, c).await?;
        }
        if d.state == "deleting" {
            for c in &clones {
                if c.state == "ready" || c.state == "leased" {
                    // Whether it moved or another task moved it first, it is on its way out.
                    ctx.store.move_clone(&c.db_name, &c.state, "dropping").await?;
                    drop_clone(ctx, &server, c).await?;
                }
            }
            if let Some(s) = &d.snapshot {
                server.drop_snapshot(s, d.snapshot_owner.as_deref().unwrap_or("")).await?;
            }
            ctx.store.delete_dataset(name).await?;
            tracing::info!(dataset = %name, "dataset deleted");
            return Ok(());
        }
        if snapshot_due(ctx, &d) {
            take_snapshot(ctx, &server, &d).await?;
            continue;
        }
        let (Some(snapshot), Some(owner)) = (&d.snapshot, &d.snapshot_owner) else { return Ok(()) };
        // A refresh replaces the unattached clones of older snapshots; attached ones stay.
        let mut changed = false;
        for c in clones.iter().filter(|c| c.state == "ready" && c.generation < d.generation) {
            if ctx.store.move_clone(&c.db_name, "ready", "dropping").await? {
                drop_clone(ctx, &server, c).await?;
                changed = true;
            }
        }
        if changed {
            continue;
        }
        report_expired(ctx, &d, &clones);
        let available = clones.iter().filter(|c| (c.state == "ready" || c.state == "filling") && c.generation == d.generation).count();
        if available as i64 >= d.pool_size {
            if d.error.is_some() {
                ctx.store.set_dataset_error(name, None).await?;
            }
            return Ok(());
        }
        fill_one(ctx, &server, &d, snapshot, owner).await?;
    }
}

fn snapshot_due(ctx: &Shared, d: &Dataset) -> bool {
    // A refresh also retries a dataset whose first snapshot failed.
    if d.refresh_requested != 0 {
        return true;
    }
    if d.snapshot.is_none() {
        return d.state == "snapshotting";
    }
    let Some(schedule) = d.refresh.as_deref().and_then(|r| Schedule::parse(r).ok()) else { return false };
    let attempted = ctx.pools.attempted.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&d.name).copied().unwrap_or(0);
    let since = d.snapshot_at.unwrap_or(d.created_at).max(attempted);
    schedule.next_after(since).is_some_and(|next| next <= now_ms())
}

async fn take_snapshot(ctx: &Shared, server: &Server, d: &Dataset) -> Result<(), Failure> {
    let names = Names::new(&ctx.instance);
    let (snap, owner) = (names.snapshot_name(), names.owner_name());
    ctx.pools.attempted.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(d.name.clone(), now_ms());
    ctx.store.begin_snapshot(&d.name, &snap, &owner).await?;
    let source = decrypt_dsn(ctx, &d.source, &source_ctx(&d.name))?;
    tracing::info!(dataset = %d.name, source = %source.redacted(), snapshot = %snap, "datasets: taking a snapshot");
    let started = std::time::Instant::now();
    match server.snapshot(&source, &snap, &owner).await {
        Ok(bytes) => {
            let previous = ctx.store.finish_snapshot(&d.name, i64::try_from(bytes).unwrap_or(i64::MAX)).await?;
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
            ctx.store.fail_snapshot(&d.name, &message).await?;
            Ok(())
        }
    }
}

async fn fill_one(ctx: &Shared, server: &Server, d: &Dataset, snapshot: &str, owner: &str) -> Result<(), Failure> {
    let db_name = Names::new(&ctx.instance).clone_name();
    let password = offshoot_datasets::new_password();
    let c = DatasetClone {
        db_name: db_name.clone(),
        dataset: d.name.clone(),
        generation: d.generation,
        role: db_name.clone(),
        password: ctx.key.encrypt(&password, &clone_ctx(&d.name, &db_name))?,
        state: "filling".into(),
        env_id: None,
        leased_at: None,
        created_at: now_ms(),
        ready_at: None,
    };
    ctx.store.add_clone(&c).await?;
    let spec = CloneSpec { database: db_name.clone(), role: db_name.clone(), password };
    let started = std::time::Instant::now();
    match server.make_clone(snapshot, owner, &spec).await {
        Ok(()) => {
            ctx.store.move_clone(&db_name, "filling", "ready").await?;
            tracing::debug!(dataset = %d.name, clone = %db_name, ms = started.elapsed().as_millis() as u64, "datasets: clone ready");
            Ok(())
        }
        Err(e) => {
            // A half-made clone; the record goes either way, so a leftover is named in the log.
            if let Err(drop) = server.drop_clone(&db_name, &db_name).await {
                tracing::warn!(dataset = %d.name, clone = %db_name, error = %drop, "datasets: cannot drop a half-made clone");
            }
            ctx.store.delete_clone(&db_name).await?;
            Err(format!("making a clone: {e}").into())
        }
    }
}

async fn drop_clone(ctx: &Shared, server: &Server, c: &DatasetClone) -> Result<(), Failure> {
    server.drop_clone(&c.db_name, &c.role).await.map_err(|e| format!("dropping clone `{}`: {e}", c.db_name))?;
    ctx.store.delete_clone(&c.db_name).await?;
    tracing::debug!(dataset = %c.dataset, clone = %c.db_name, "datasets: clone dropped");
    Ok(())
}

/// When a leased clone passes its dataset's TTL (milliseconds since the epoch).
fn lease_expiry(d: &Dataset, c: &DatasetClone) -> Option<i64> {
    d.ttl_seconds.zip(c.leased_at).map(|(ttl, at)| at + ttl * 1000)
}

fn report_expired(ctx: &Shared, d: &Dataset, clones: &[DatasetClone]) {
    if d.ttl_seconds.is_none() {
        return;
    }
    let now = now_ms();
    let mut reported = ctx.pools.reported.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    for c in clones.iter().filter(|c| c.state == "leased") {
        if lease_expiry(d, c).is_some_and(|e| e <= now) && reported.insert(c.db_name.clone()) {
            tracing::warn!(
                dataset = %d.name,
                env = c.env_id.as_deref().unwrap_or(""),
                clone = %c.db_name,
                "datasets: a clone has been attached longer than the dataset's TTL"
            );
        }
    }
}

// Environments ------------------------------------------------------------------------------------
// (Checkout and check-in are the use case's: `offshoot_control::datasets`.)

/// Drops a clone's database and login on its dataset's server; nothing to drop when the dataset
/// is gone.
pub(crate) async fn drop_clone_objects(ctx: &Ctx, c: &DatasetClone) -> Result<(), Failure> {
    let Some(d) = ctx.store.dataset(&c.dataset).await? else { return Ok(()) };
    let dsn = target(ctx, &d)?;
    Server::new(&dsn).drop_clone(&c.db_name, &c.role).await.map_err(|e| format!("dropping clone `{}`: {e}", c.db_name))?;
    Ok(())
}

/// A clone an environment holds, with its dataset and where containers reach its server.
struct Held {
    clone: DatasetClone,
    dataset: Dataset,
    kind: Kind,
    host: String,
    port: u16,
}

async fn held(ctx: &Ctx, env_id: &str) -> Result<Vec<Held>, Failure> {
    let mut out = Vec::new();
    for clone in ctx.store.leases(env_id).await? {
        let Some(dataset) = ctx.store.dataset(&clone.dataset).await? else { continue };
        let dsn = target(ctx, &dataset)?;
        let host = if dsn.is_loopback() && ctx.engine_reaches_host_loopback() { HOST_ALIAS.to_owned() } else { dsn.host.clone() };
        let kind = Kind::parse(&dataset.engine).unwrap_or(dsn.kind);
        out.push(Held { clone, dataset, kind, host, port: dsn.port });
    }
    Ok(out)
}

/// What `env show` lists of the clones an environment holds (no password).
pub(crate) async fn attached(ctx: &Ctx, env_id: &str) -> Result<Vec<api::AttachedDataset>, Failure> {
    Ok(held(ctx, env_id)
        .await?
        .into_iter()
        .map(|h| api::AttachedDataset {
            expires_at: lease_expiry(&h.dataset, &h.clone),
            dataset: h.dataset.name,
            database: h.clone.db_name,
            user: h.clone.role,
            host: h.host,
            port: h.port,
            leased_at: h.clone.leased_at.unwrap_or(0),
        })
        .collect())
}

/// The variables of the clones an environment holds: `(name, value, secret)`.
pub(crate) async fn variables(ctx: &Ctx, env_id: &str) -> Result<Vec<(String, String, bool)>, Failure> {
    let mut out = Vec::new();
    for h in held(ctx, env_id).await? {
        let password = ctx
            .key
            .decrypt(&h.clone.password, &clone_ctx(&h.dataset.name, &h.clone.db_name))
            .map_err(|e| format!("clone `{}`: {e}", h.clone.db_name))?;
        out.extend(offshoot_datasets::variables(&offshoot_datasets::Attached {
            dataset: &h.dataset.name,
            kind: h.kind,
            host: &h.host,
            port: h.port,
            database: &h.clone.db_name,
            user: &h.clone.role,
            password: &password,
        }));
    }
    Ok(out)
}
