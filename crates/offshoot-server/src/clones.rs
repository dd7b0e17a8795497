//! The clones of Instant Datasets as the rest of the server reads them: where an environment's
//! containers reach the clones it holds and with which variables, what `env show` lists, and how
//! a clone is dropped on its server. The stored URLs and passwords are decrypted here only.
//! (Checkout and check-in are the use case's: `offshoot_control::datasets`.)

use crate::crypto::SecretKey;
use crate::failure::Failure;
use crate::state::Ctx;
use offshoot_api_types as api;
use offshoot_datasets::{DatabaseServer, Dsn, Kind, Server};
use offshoot_store::{Dataset, DatasetClone};

/// The name containers use for the machine they run on (a database on its loopback).
pub(crate) const HOST_ALIAS: &str = offshoot_docker::HOST_GATEWAY_ALIAS;

pub(crate) use offshoot_control::dataset_admin::{source_context as source_ctx, target_context as target_ctx};
pub(crate) fn clone_ctx(name: &str, db: &str) -> String {
    format!("dataset/{name}/clone/{db}")
}

pub(crate) fn decrypt_dsn(key: &SecretKey, stored: &str, context: &str) -> Result<Dsn, Failure> {
    let url = key.decrypt(stored, context).map_err(|e| format!("cannot decrypt `{context}`: {e}"))?;
    Dsn::parse(&url).map_err(Failure::from)
}

pub(crate) fn target(key: &SecretKey, d: &Dataset) -> Result<Dsn, Failure> {
    decrypt_dsn(key, &d.target, &target_ctx(&d.name))
}

/// When a leased clone passes its dataset's TTL (milliseconds since the epoch).
pub(crate) fn lease_expiry(d: &Dataset, c: &DatasetClone) -> Option<i64> {
    d.ttl_seconds.zip(c.leased_at).map(|(ttl, at)| at + ttl * 1000)
}

/// Drops a clone's database and login on its dataset's server; nothing to drop when the dataset
/// is gone.
pub(crate) async fn drop_clone_objects(ctx: &Ctx, c: &DatasetClone) -> Result<(), Failure> {
    let Some(d) = ctx.store.dataset(&c.dataset).await? else { return Ok(()) };
    let dsn = target(&ctx.key, &d)?;
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
        let dsn = target(&ctx.key, &dataset)?;
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
