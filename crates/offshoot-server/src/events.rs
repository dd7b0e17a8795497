//! A repository's events on this server: deliveries (from webhooks and the poller) handled in
//! the background, one at a time per application, and again after a restart; the poller.
//! What an event does is the use case's (`offshoot_control::git_events`).

use crate::plane::control;
use crate::state::Shared;
use offshoot_control::Actor;
use offshoot_control::git_events::record_delivery;
use offshoot_git::hooks::GitEvent;
use std::time::Duration;

/// Handled deliveries are kept this long (a repeated id within it is ignored).
const KEEP_DELIVERIES: Duration = Duration::from_secs(7 * 24 * 3600);

/// Records a new event; `false` when a delivery of that id was recorded before.
pub(crate) async fn record(ctx: &Shared, id: &str, app: &str, event: &GitEvent) -> Result<bool, offshoot_store::StoreError> {
    record_delivery(&ctx.store, id, app, event).await
}

/// Handles a recorded delivery in the background.
pub(crate) fn spawn(ctx: &Shared, id: String) {
    let shared = ctx.clone();
    ctx.background.spawn("delivery", async move { handle(&shared, &id).await });
}

/// After a restart: handles what was received but not handled.
pub(crate) async fn recover(ctx: &Shared) {
    match ctx.store.pending_deliveries().await {
        Ok(list) => {
            for d in list {
                tracing::info!(delivery = %d.id, app = %d.app, "handling a delivery received before the restart");
                handle(ctx, &d.id).await;
            }
        }
        Err(e) => tracing::error!(error = %e, "cannot list pending deliveries"),
    }
    let before = offshoot_store::now_ms() - KEEP_DELIVERIES.as_millis() as i64;
    if let Err(e) = ctx.store.prune_deliveries(before).await {
        tracing::warn!(error = %e, "cannot prune old deliveries");
    }
}

/// Handles one delivery, once: deliveries of one application are handled one at a time.
pub(crate) async fn handle(ctx: &Shared, id: &str) {
    let Ok(Some(d)) = ctx.store.delivery(id).await else { return };
    let lock = ctx.lock_for(&format!("events/{}", d.app));
    let _guard = lock.lock().await;
    let actor = Actor::git(if id.starts_with("poll:") { "poller" } else { "webhook" });
    if let Err(e) = control(ctx, actor).handle_delivery(id).await {
        tracing::error!(delivery = %id, error = %e, "cannot handle a delivery; it stays pending until the next start");
    }
}

/// Polls every application's repository for pushes, as webhooks would report them. A fetch
/// error is recorded on the application and retried at the next round; a ref that disappeared
/// is not an event.
/// The poller, a loop of the server for repositories without webhooks: every round fetches each
/// application's repository and handles the refs that moved as deliveries. What it has seen is
/// kept in the store (`git_heads`), so a restart misses nothing.
pub(crate) struct Poller(pub(crate) Shared);

impl crate::background::Periodic for Poller {
    const NAME: &'static str = "poller";

    async fn round(&mut self) -> Result<(), crate::failure::Failure> {
        Ok(poll(&self.0).await?)
    }
}

async fn poll(ctx: &Shared) -> Result<(), offshoot_store::StoreError> {
    for app in ctx.store.apps().await? {
        // One attempt: the next round is the retry.
        let mirror = match control(ctx, Actor::git("poller")).fetch_app(&app, 1).await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(app = %app.name, error = %e, "poll: fetch failed; environments left as they are");
                continue;
            }
        };
        let heads = match tokio::task::spawn_blocking(move || mirror.heads()).await {
            Ok(Ok(h)) => h,
            Ok(Err(e)) => {
                tracing::warn!(app = %app.name, error = %e, "poll: cannot list refs");
                continue;
            }
            Err(_) => continue,
        };
        let seen: std::collections::BTreeMap<String, String> = ctx.store.git_heads(&app.name).await?.into_iter().collect();
        let first = seen.is_empty();
        for (ref_name, commit) in heads {
            if seen.get(&ref_name) == Some(&commit) {
                continue;
            }
            if first {
                // The first look at an application created before polling existed only learns
                // where things are (applications record their refs when they are created).
                ctx.store.set_git_head(&app.name, &ref_name, &commit).await?;
                continue;
            }
            let id = format!("poll:{}:{ref_name}:{commit}", app.name);
            let event = GitEvent::Push { ref_name: ref_name.clone(), commit: Some(commit.clone()) };
            if record(ctx, &id, &app.name, &event).await? {
                handle(ctx, &id).await;
            }
        }
    }
    Ok(())
}
