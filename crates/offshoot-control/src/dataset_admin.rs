//! Instant Datasets as an admin manages them: create one from a database (its URLs sealed with
//! the server's key before they are stored), ask for a fresh snapshot, delete one. The keepers
//! in the server do the work on the database servers; these use cases record what is wanted,
//! through the gate, and wake them.

use crate::Control;
use crate::error::ControlError;
use crate::gate::{Noted, Operation, gate};
use crate::ports::Ports;
use offshoot_api_types::CreateDataset;
use offshoot_datasets::{Dsn, Schedule};
use offshoot_store::{Dataset, EnvId};

/// Largest pool.
pub const MAX_POOL: u32 = 50;
/// Longest refresh schedule.
const MAX_SCHEDULE: usize = 200;

/// What a dataset's stored URL is sealed to: the source's.
pub fn source_context(name: &str) -> String {
    format!("dataset/{name}/source")
}

/// What a dataset's stored URL is sealed to: the server clones are made on.
pub fn target_context(name: &str) -> String {
    format!("dataset/{name}/target")
}

fn field(name: &str, why: impl std::fmt::Display) -> ControlError {
    ControlError::bad_input(format!("{name}: {why}"))
}

/// A request checked: the source and target servers parsed, the numbers in range.
fn check(req: &CreateDataset) -> Result<(Dsn, Dsn, u32, Option<i64>), ControlError> {
    offshoot_datasets::check_name(&req.name).map_err(|e| field("name", e))?;
    let source = Dsn::parse(&req.source).map_err(|e| field("source", e))?;
    if source.database.is_none() {
        return Err(ControlError::BadInput {
            message: "source: the URL names no database".into(),
            hint: Some("end it with the database's name: postgres://USER:PASS@HOST/DB".into()),
        });
    }
    let target = match &req.target {
        Some(t) => Dsn::parse(t).map_err(|e| field("target", e))?,
        None => source.with_database(None),
    };
    if target.kind != source.kind {
        let kind = source.kind.as_str();
        return Err(field("target", format!("a {kind} dataset needs a {kind} server, not {}", target.kind.as_str())));
    }
    let pool_size = req.pool_size.unwrap_or(2);
    if !(1..=MAX_POOL).contains(&pool_size) {
        return Err(field("pool_size", format!("{pool_size} is not between 1 and {MAX_POOL}")));
    }
    if let Some(r) = &req.refresh {
        if r.len() > MAX_SCHEDULE {
            return Err(field("refresh", format!("longer than {MAX_SCHEDULE} characters")));
        }
        Schedule::parse(r).map_err(|e| field("refresh", e))?;
    }
    let ttl = match &req.ttl {
        Some(t) => {
            let secs = offshoot_datasets::parse_duration(t).map_err(|e| field("ttl", e))?;
            Some(i64::try_from(secs).map_err(|_| field("ttl", "too long"))?)
        }
        None => None,
    };
    Ok((source, target, pool_size, ttl))
}

impl<P: Ports> Control<'_, P> {
    /// A new dataset; its keeper takes the first snapshot and fills the pool.
    pub async fn create_dataset(&self, req: &CreateDataset) -> Result<Dataset, ControlError> {
        let work = async {
            let (source, target, pool_size, ttl) = check(req)?;
            let seal = |dsn: &Dsn, context: String| self.ports.seal(&dsn.expose_url(), &context).map_err(ControlError::Seal);
            let urls = (seal(&source, source_context(&req.name))?, seal(&target, target_context(&req.name))?);
            let d = Dataset::new(&req.name, source.kind.as_str(), urls, i64::from(pool_size), req.refresh.clone(), ttl);
            self.store.create_dataset(&d).await?;
            tracing::info!(dataset = %d.name, source = %source.redacted(), target = %target.redacted(), pool_size, "dataset created");
            self.ports.wake_pools();
            Ok(d)
        };
        gate(self.store, &self.actor, Operation::CreateDataset, &req.name, work, |d| Noted::detail(format!("pool of {}", d.pool_size)))
            .await
    }

    /// Asks the keeper for a new snapshot (the pool is refilled from it; leases are kept).
    pub async fn refresh_dataset(&self, name: &str) -> Result<Dataset, ControlError> {
        let work = async {
            let d = self.find_dataset(name).await?;
            if d.state == "deleting" {
                return Err(ControlError::Conflict { code: "deleting", message: format!("dataset `{name}` is being deleted"), hint: None });
            }
            self.store.request_refresh(name).await?;
            self.ports.wake_pools();
            self.find_dataset(name).await
        };
        self.perform(Operation::RefreshDataset, name, work).await
    }

    /// Marks a dataset for deletion (its keeper drops its clones and snapshot, then the record).
    /// Refused while environments hold clones of it, unless `force` drops theirs too.
    pub async fn delete_dataset(&self, name: &str, force: bool) -> Result<Dataset, ControlError> {
        let work = async {
            let d = self.find_dataset(name).await?;
            let holders: Vec<String> = self
                .store
                .clones(name)
                .await?
                .into_iter()
                .filter(|c| c.state == "leased")
                .filter_map(|c| c.env_id.map(EnvId::into_string))
                .collect();
            if !holders.is_empty() && !force {
                return Err(ControlError::Conflict {
                    code: "in-use",
                    message: format!("dataset `{name}` is attached to environment(s) {}", holders.join(", ")),
                    hint: Some("delete those environments first, or pass --force to drop their databases too".into()),
                });
            }
            self.store.set_dataset_state(name, "deleting", None).await?;
            self.ports.wake_pools();
            Ok(Dataset { state: "deleting".into(), ..d })
        };
        let noted = |_: &Dataset| if force { Noted::detail("forced".into()) } else { Noted::default() };
        gate(self.store, &self.actor, Operation::DeleteDataset, name, work, noted).await
    }

    /// The dataset `name`, or an error that says how to list them.
    pub async fn find_dataset(&self, name: &str) -> Result<Dataset, ControlError> {
        self.store.dataset(name).await?.ok_or_else(|| ControlError::not_found("dataset", name, "`offshoot dataset list` shows them"))
    }
}
