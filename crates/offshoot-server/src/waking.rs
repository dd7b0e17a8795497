//! Sleeping environments on this server: the router's [`Waker`] (a request for a sleeping
//! environment wakes it once, however many arrive meanwhile), and the use cases of sleep and
//! wake run under the environment's lock, so that a deployment, the reconciler and a wake never
//! work on one environment at once.

use crate::plane::control;
use crate::state::{Ctx, Shared};
use offshoot_control::{Actor, ControlError};
use offshoot_router::Waker;
use offshoot_store::Environment;
use std::collections::HashSet;
use std::sync::{Arc, Mutex, Weak};

/// Wakes environments for the router.
pub(crate) struct RouterWaker {
    /// The server (weak: the server holds the router, which holds this).
    ctx: Weak<Ctx>,
    /// Environments a wake was asked for and has not ended.
    waking: Arc<Mutex<HashSet<String>>>,
}

impl RouterWaker {
    pub(crate) fn new(ctx: &Shared) -> Self {
        RouterWaker { ctx: Arc::downgrade(ctx), waking: Arc::default() }
    }
}

impl Waker for RouterWaker {
    fn wake(&self, env_id: &str) {
        let Some(ctx) = self.ctx.upgrade() else { return };
        if !self.waking.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(env_id.to_owned()) {
            return;
        }
        let id = env_id.to_owned();
        let (me, waking) = (self.ctx.clone(), self.waking.clone());
        ctx.background.spawn("wake on request", async move {
            let Some(ctx) = me.upgrade() else { return };
            // An import's environment wakes with its importer: the importer's lock is the one.
            let root = match ctx.store.env(&id).await {
                Ok(Some(e)) => e.parent_id.map_or_else(|| id.clone(), offshoot_store::EnvId::into_string),
                _ => id.clone(),
            };
            let lock = ctx.lock_for(&root);
            let guard = lock.lock().await;
            if let Err(e) = control(&ctx, Actor::system("router")).wake_on_request(&id).await {
                tracing::warn!(env = %id, error = %e, "a request could not wake its environment");
                // Its held requests and connections are answered now, with the reason.
                ctx.router.wake_failed(&id, &e.to_string());
                ctx.tcp.wake_failed(&id);
            }
            drop(guard);
            // Woken or not, the router's table is current: the held requests are answered.
            ctx.refresh_routes().await;
            waking.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&id);
        });
    }
}

/// Sleeps an environment, under its lock.
pub(crate) async fn sleep(ctx: &Shared, actor: Actor, id: &str) -> Result<Environment, ControlError> {
    let lock = ctx.lock_for(id);
    let _guard = lock.lock().await;
    control(ctx, actor).sleep_env(id).await
}

/// Wakes an environment, under its lock.
pub(crate) async fn wake(ctx: &Shared, actor: Actor, id: &str) -> Result<Environment, ControlError> {
    let lock = ctx.lock_for(id);
    let _guard = lock.lock().await;
    control(ctx, actor).wake_env(id).await
}

/// Finishes a sleep or a wake an interruption left (after a restart), unless an operation
/// holds the environment.
pub(crate) async fn converge(ctx: &Shared, env: &Environment) -> Result<(), ControlError> {
    let lock = ctx.lock_for(&env.id);
    let Ok(_guard) = lock.try_lock() else { return Ok(()) };
    control(ctx, Actor::system("reconciler")).converge(env).await
}
