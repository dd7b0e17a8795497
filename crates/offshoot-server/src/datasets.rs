//! Instant Datasets in the server: the API (a thin translation to the use cases of
//! `offshoot_control::dataset_admin`), and what an environment's deployment reads of the clones it
//! holds. The pools are kept by [`crate::keeper`]; what environments read of their clones is in
//! [`crate::clones`].

use crate::clones::{decrypt_dsn, lease_expiry, source_ctx, target_ctx};
use crate::error::{ApiError, Body, Params};
use crate::plane;
use crate::state::Shared;
use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use offshoot_api_types as api;
use offshoot_control::Actor;
use offshoot_datasets::Schedule;
use offshoot_store::{Dataset, EnvId, now_ms};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(crate) fn api(router: OpenApiRouter<Shared>) -> OpenApiRouter<Shared> {
    router.routes(routes!(create, list)).routes(routes!(show, delete)).routes(routes!(refresh))
}

#[utoipa::path(post, operation_id = "create_dataset", path = "/datasets", tag = "datasets", request_body = api::CreateDataset, responses((status = 201, description = "Created; its snapshot is taken", body = api::DatasetInfo)))]
async fn create(
    State(ctx): State<Shared>,
    Extension(actor): Extension<Actor>,
    Body(req): Body<api::CreateDataset>,
) -> Result<(StatusCode, Json<api::DatasetInfo>), ApiError> {
    let d = plane::control(&ctx, actor).create_dataset(&req).await?;
    // Its environments reach its server.
    if let Some(fw) = ctx.firewall.clone() {
        let given = match crate::clones::target(&ctx.key, &d) {
            // `iptables` runs as a process: not on the request's thread.
            Ok(dsn) => tokio::task::spawn_blocking(move || fw.give(dsn.port).map_err(|e| e.to_string()))
                .await
                .unwrap_or_else(|e| Err(e.to_string())),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = given {
            tracing::warn!(dataset = %d.name, error = %e, "host firewall: the dataset's server is not given to containers");
        }
    }
    Ok((StatusCode::CREATED, Json(info(&ctx, d).await?)))
}

#[utoipa::path(get, operation_id = "list_datasets", path = "/datasets", tag = "datasets", responses((status = 200, description = "The datasets", body = Vec<api::DatasetInfo>)))]
pub(crate) async fn list(State(ctx): State<Shared>) -> Result<Json<Vec<api::DatasetInfo>>, ApiError> {
    let mut out = Vec::new();
    for d in ctx.store.datasets().await? {
        out.push(info(&ctx, d).await?);
    }
    Ok(Json(out))
}

#[utoipa::path(get, operation_id = "show_dataset", path = "/datasets/{name}", tag = "datasets", params(("name" = String, Path, min_length = 1, description = "The dataset's name")), responses((status = 200, description = "The dataset", body = api::DatasetInfo)))]
async fn show(
    State(ctx): State<Shared>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
) -> Result<Json<api::DatasetInfo>, ApiError> {
    let d = plane::control(&ctx, actor).find_dataset(&name).await?;
    Ok(Json(info(&ctx, d).await?))
}

#[utoipa::path(post, operation_id = "refresh_dataset", path = "/datasets/{name}/refresh", tag = "datasets", params(("name" = String, Path, min_length = 1, description = "The dataset's name")), responses((status = 202, description = "A new snapshot is taken", body = api::DatasetInfo)))]
async fn refresh(
    State(ctx): State<Shared>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<api::DatasetInfo>), ApiError> {
    let d = plane::control(&ctx, actor).refresh_dataset(&name).await?;
    Ok((StatusCode::ACCEPTED, Json(info(&ctx, d).await?)))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct DeleteQuery {
    #[serde(default)]
    force: bool,
}

#[utoipa::path(delete, operation_id = "delete_dataset", path = "/datasets/{name}", tag = "datasets", params(("name" = String, Path, min_length = 1, description = "The dataset's name"), DeleteQuery), responses((status = 202, description = "Being deleted", body = api::DatasetInfo)))]
async fn delete(
    State(ctx): State<Shared>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
    Params(q): Params<DeleteQuery>,
) -> Result<(StatusCode, Json<api::DatasetInfo>), ApiError> {
    let d = plane::control(&ctx, actor).delete_dataset(&name, q.force).await?;
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
    let redact = |stored: &str, context: &str| decrypt_dsn(&ctx.key, stored, context).map_or_else(|e| e.to_string(), |d| d.redacted());
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
