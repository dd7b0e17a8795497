//! Capacity: how many environments run and how much memory their services may take, against
//! the server's limits (`--max-environments`, `--memory-budget`). A creation or a wake that would
//! pass a limit is admitted only after the least recently used idle environment is put to
//! sleep (as the `capacity` actor); when none can be, it is refused with the figures.

use crate::Control;
use crate::error::ControlError;
use crate::gate::{Noted, Operation, gate};
use crate::ports::Ports;
use offshoot_api_types::EnvStatus;
use offshoot_store::Environment;
use offshoot_template::document::{self, Kind};
use offshoot_template::validate::parse_quantity;

/// The server's limits; `None` is no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capacity {
    pub max_environments: Option<usize>,
    /// Bytes.
    pub memory_budget: Option<u64>,
}

/// What runs now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Environments whose services run or are being started (imports' included).
    pub running: usize,
    pub sleeping: usize,
    /// The memory limits of the running environments' services, in bytes.
    pub memory: u64,
}

/// The memory an environment's services may take: each service's memory limit, else the
/// template's default (`resources`), times its replicas. A service without either counts 0.
pub fn memory_of(template: &str) -> u64 {
    let doc = document::check("application_template.yaml", template, Some(Kind::Template));
    let Some(t) = doc.template else { return 0 };
    let default_limit = t.resources.as_ref().and_then(|r| r.memory.as_ref()).and_then(|m| m.limits.as_ref()).map(|l| l.value.clone());
    let default_replicas = t.resources.as_ref().and_then(|r| r.replicas.as_ref()).map_or(1, |r| r.value);
    t.services
        .iter()
        .map(|s| {
            let limit = s.memory.as_ref().and_then(|m| m.limits.as_ref()).map(|l| l.value.clone()).or_else(|| default_limit.clone());
            let bytes = limit.as_deref().and_then(parse_quantity).unwrap_or(0.0).max(0.0) as u64;
            bytes.saturating_mul(s.replicas.as_ref().map_or(default_replicas, |r| r.value).max(1))
        })
        .sum()
}

/// Whether an environment in `status` has services running or being started.
fn runs(status: EnvStatus) -> bool {
    matches!(status, EnvStatus::Creating | EnvStatus::Deploying | EnvStatus::Ready | EnvStatus::Waking)
}

/// When an environment was last used: its last request, or its last change of state.
fn last_used(e: &Environment) -> i64 {
    e.last_request_at.unwrap_or(0).max(e.updated_at)
}

/// `n` bytes for people (`1.5 GiB`, `256 MiB`).
pub fn bytes(n: u64) -> String {
    const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
    let f = n as f64;
    if f >= GIB { format!("{:.1} GiB", f / GIB) } else { format!("{:.0} MiB", f / 1024.0 / 1024.0) }
}

impl<P: Ports> Control<'_, P> {
    /// What runs now.
    pub async fn usage(&self) -> Result<Usage, ControlError> {
        let mut u = Usage::default();
        for e in self.store.envs(None, false).await? {
            if runs(e.status) {
                u.running += 1;
                u.memory = u.memory.saturating_add(memory_of(&e.template));
            } else if e.status == EnvStatus::Sleeping {
                u.sleeping += 1;
            }
        }
        Ok(u)
    }

    /// Makes room for one more running environment that may take `memory` bytes (not counting
    /// `coming`, already counted when it is the one being woken): puts the least recently used
    /// idle environments to sleep until both limits hold, or refuses with the figures.
    pub(crate) async fn admit(&self, memory: u64, coming: Option<&str>) -> Result<(), ControlError> {
        let cap = self.ports.capacity();
        if cap == Capacity::default() {
            return Ok(());
        }
        loop {
            let u = self.usage().await?;
            let over_count = cap.max_environments.is_some_and(|m| u.running + 1 > m);
            let over_memory = cap.memory_budget.is_some_and(|b| u.memory.saturating_add(memory) > b);
            if !over_count && !over_memory {
                return Ok(());
            }
            let victim = self
                .store
                .envs(None, false)
                .await?
                .into_iter()
                .filter(|e| e.status == EnvStatus::Ready && e.parent_id.is_none() && Some(e.id.as_str()) != coming)
                .min_by_key(last_used);
            let Some(victim) = victim else {
                let mut why = Vec::new();
                if let Some(m) = cap.max_environments {
                    why.push(format!("{} of {m} environments run", u.running));
                }
                if let Some(b) = cap.memory_budget {
                    why.push(format!("{} of the {} memory budget in use, {} more asked", bytes(u.memory), bytes(b), bytes(memory)));
                }
                return Err(ControlError::Conflict {
                    code: "capacity",
                    message: format!("the server is at capacity ({}) and no idle environment can be put to sleep", why.join("; ")),
                    hint: Some("delete or sleep an environment, or raise the server's --max-environments or --memory-budget".into()),
                });
            };
            tracing::info!(env = %victim.id, "at capacity: putting the least recently used environment to sleep");
            let actor = crate::Actor::system("capacity");
            let id = victim.id.clone();
            // One that stopped being ready meanwhile is left alone: the next round looks again.
            let work = async { self.fall_asleep(&victim, Some("put to sleep to make room")).await.map(|_| ()) };
            gate(self.store, &actor, Operation::SleepEnv, &id, work, |_| Noted::detail("to make room".into())).await?;
        }
    }
}
