//! `offshoot dataset ...`: Instant Datasets.

use crate::client::{Api, enc};
use crate::{Output, err, out};
use anyhow::Result;
use offshoot_api_types as api;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(clap::Subcommand)]
pub(crate) enum Command {
    /// Snapshot a database and keep a pool of clones of it ready for environments (templates
    /// list it under an environment template's `datasets`).
    Create {
        name: String,
        /// The database to snapshot: postgres://USER:PASS@HOST:PORT/DB or mysql://... (MariaDB).
        /// Better given in OFFSHOOT_DATASET_SOURCE than on the command line.
        #[arg(long, env = "OFFSHOOT_DATASET_SOURCE", hide_env_values = true)]
        source: String,
        /// The server that holds the snapshot and the clones, as a login that may create
        /// databases and roles (default: the source's server and login).
        #[arg(long, env = "OFFSHOOT_DATASET_TARGET", hide_env_values = true)]
        target: Option<String>,
        /// Clones kept ready.
        #[arg(long, default_value_t = 2)]
        pool_size: u32,
        /// Take a new snapshot on this five-field cron schedule (UTC), e.g. "0 3 * * *".
        #[arg(long)]
        refresh: Option<String>,
        /// Report clones attached longer than this (e.g. 72h).
        #[arg(long)]
        ttl: Option<String>,
        /// Return at once instead of waiting for the first snapshot.
        #[arg(long)]
        no_wait: bool,
    },
    /// List datasets.
    List,
    /// Show a dataset: its snapshot, pool and leases.
    Show { name: String },
    /// Take a new snapshot now; unattached clones are replaced, attached ones are left alone.
    Refresh {
        name: String,
        #[arg(long)]
        wait: bool,
    },
    /// Delete a dataset, its snapshot and its pool.
    Delete {
        name: String,
        /// Also drop the clones environments hold.
        #[arg(long)]
        force: bool,
    },
}

fn bytes(n: i64) -> String {
    let n = n as f64;
    match n {
        _ if n >= 1e9 => format!("{:.1} GB", n / 1e9),
        _ if n >= 1e6 => format!("{:.1} MB", n / 1e6),
        _ if n >= 1e3 => format!("{:.1} kB", n / 1e3),
        _ => format!("{n} B"),
    }
}

/// `5m ago` / `in 3h` for a time in milliseconds since the epoch.
pub(crate) fn relative(ms: i64) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    let secs = (now - ms) / 1000;
    let span = |s: i64| match s {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    };
    if secs >= 0 { format!("{} ago", span(secs)) } else { format!("in {}", span(-secs)) }
}

fn print_dataset(d: &api::DatasetInfo) -> String {
    let p = &d.pool;
    let mut s = format!(
        "{}  {}  {}{}  pool: {} ready, {} leased, {} filling (size {})\n",
        d.name,
        d.engine,
        d.state,
        if d.refreshing { " (refreshing)" } else { "" },
        p.ready,
        p.leased,
        p.filling,
        d.pool_size
    );
    s.push_str(&format!("  source: {}\n  target: {}\n", d.source, d.target));
    if let Some(f) = d.fill_ms {
        s.push_str(&format!("  a clone takes {:.1} s to make\n", f as f64 / 1000.0));
    }
    if let Some(sn) = &d.snapshot {
        s.push_str(&format!("  snapshot: generation {}, {}, taken {}\n", sn.generation, bytes(sn.bytes), relative(sn.taken_at)));
    }
    if let Some(r) = &d.refresh {
        let next = d.next_refresh.map_or_else(String::new, |n| format!(", next {}", relative(n)));
        s.push_str(&format!("  refresh: {r}{next}\n"));
    }
    if let Some(t) = d.ttl_seconds {
        s.push_str(&format!("  ttl: {}h\n", t as f64 / 3600.0));
    }
    for l in &d.leases {
        let mut flags = Vec::new();
        if l.expired {
            flags.push("past its TTL");
        }
        if l.stale {
            flags.push("from an older snapshot");
        }
        let flags = if flags.is_empty() { String::new() } else { format!("  ({})", flags.join(", ")) };
        s.push_str(&format!("  leased to {}: {} since {}{flags}\n", l.env_id, l.database, relative(l.leased_at)));
    }
    if let Some(e) = &d.error {
        s.push_str(&format!("  error: {e}\n"));
    }
    s
}

fn show(d: &api::DatasetInfo, output: Output) {
    crate::emit(d, output, print_dataset);
}

/// Waits until the dataset has a snapshot of a generation after `after` (or failed).
fn wait_snapshot(api: &Api, name: &str, after: i64, output: Output) -> Result<api::DatasetInfo> {
    let bar = crate::spinner(output);
    let start = Instant::now();
    loop {
        let d: api::DatasetInfo = api.get(&format!("/datasets/{}", enc(name)))?;
        bar.set_message(format!("{} taking a snapshot {:.0}s", d.name, start.elapsed().as_secs_f64()));
        let generation = d.snapshot.as_ref().map_or(0, |s| s.generation);
        if generation > after || d.state == "failed" || (!d.refreshing && d.error.is_some() && d.state != "snapshotting") {
            bar.finish_and_clear();
            return Ok(d);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Shows the dataset; exit code 1 when no snapshot newer than generation `after` was taken.
fn finish(d: api::DatasetInfo, after: i64, output: Output) -> Result<ExitCode> {
    show(&d, output);
    if d.snapshot.as_ref().is_none_or(|s| s.generation <= after) {
        err(&format!("error: dataset {}: {}\n", d.name, d.error.as_deref().unwrap_or("the snapshot failed")));
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn run(cmd: Command, output: Output) -> Result<ExitCode> {
    let api = Api::from_env()?;
    match cmd {
        Command::Create { name, source, target, pool_size, refresh, ttl, no_wait } => {
            let body = api::CreateDataset { name: name.clone(), source, target, pool_size: Some(pool_size), refresh, ttl };
            let d: api::DatasetInfo = api.post("/datasets", &body)?;
            if no_wait {
                show(&d, output);
                return Ok(ExitCode::SUCCESS);
            }
            return finish(wait_snapshot(&api, &name, 0, output)?, 0, output);
        }
        Command::List => {
            let all: Vec<api::DatasetInfo> = api.get("/datasets")?;
            match output {
                Output::Json => out(&format!("{}\n", serde_json::to_string_pretty(&all).unwrap_or_default())),
                Output::Human if all.is_empty() => {
                    out("no datasets; create one with `offshoot dataset create NAME --source postgres://...`\n")
                }
                Output::Human => all.iter().for_each(|d| out(&print_dataset(d))),
            }
        }
        Command::Show { name } => show(&api.get(&format!("/datasets/{}", enc(&name)))?, output),
        Command::Refresh { name, wait } => {
            let d: api::DatasetInfo = api.post(&format!("/datasets/{}/refresh", enc(&name)), &serde_json::json!({}))?;
            if wait {
                let before = d.snapshot.as_ref().map_or(0, |s| s.generation);
                return finish(wait_snapshot(&api, &name, before, output)?, before, output);
            }
            show(&d, output);
        }
        Command::Delete { name, force } => {
            let q = if force { "?force=true" } else { "" };
            let d: api::DatasetInfo = api.delete_json(&format!("/datasets/{}{q}", enc(&name)))?;
            match output {
                Output::Json => show(&d, output),
                Output::Human => out(&format!("deleting dataset {}\n", d.name)),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
