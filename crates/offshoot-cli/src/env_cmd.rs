//! `offshoot env ...`

use crate::client::{Api, enc};
use crate::{Output, err, out};
use anyhow::{Result, bail};
use offshoot_api_types as api;
use offshoot_api_types::EnvStatus;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(clap::Subcommand)]
pub(crate) enum Command {
    /// Create an environment for a branch; returns its id at once unless --wait.
    Create {
        app: String,
        #[arg(long)]
        branch: String,
        #[arg(long)]
        environment_template: Option<String>,
        /// Lifetime, e.g. `72h`, `30m`, `2d`; the environment is torn down when it expires.
        #[arg(long, value_parser = parse_duration)]
        ttl: Option<u64>,
        /// A value of the template's `parameters`, `NAME=VALUE` (repeatable; the defaults apply
        /// to the rest).
        #[arg(long = "param", value_name = "NAME=VALUE", value_parser = offshoot_template::params::parse_assignment)]
        params: Vec<(String, String)>,
        /// Wait until it is ready (exit 1 if it fails).
        #[arg(long)]
        wait: bool,
    },
    /// List environments.
    List {
        #[arg(long)]
        app: Option<String>,
    },
    /// Show an environment: status, services, URLs, deployments.
    Show { id: String },
    /// Print the logs of the environment's services.
    Logs {
        id: String,
        service: Option<String>,
        #[arg(long, default_value_t = 200)]
        tail: usize,
        /// Keep printing new output.
        #[arg(long)]
        follow: bool,
        /// The image build logs of the latest deployment instead.
        #[arg(long, conflicts_with = "follow")]
        build: bool,
        /// The log of a cron job's latest run instead.
        #[arg(long, value_name = "NAME", conflicts_with_all = ["follow", "build", "service"])]
        job: Option<String>,
        /// Terraform's output of an `infrastructure` entry's latest run instead.
        #[arg(long, value_name = "NAME", conflicts_with_all = ["follow", "build", "service", "job"])]
        infrastructure: Option<String>,
    },
    /// List the environment's cron jobs: schedule, next run, latest runs.
    Jobs { id: String },
    /// Run a command in a service's container: `offshoot env exec ID SERVICE -- CMD...`.
    Exec {
        id: String,
        service: String,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Deploy the branch's newest commit (or --commit SHA): runs `patch`.
    Deploy {
        id: String,
        #[arg(long)]
        commit: Option<String>,
        #[arg(long)]
        wait: bool,
    },
    /// Put an environment (and its imports' environments) to sleep: its containers stop and
    /// free their memory; volumes, dataset clones, static sites and records are kept. A request
    /// to any of its hostnames wakes it.
    Sleep {
        id: String,
        /// Wait until every container has stopped.
        #[arg(long)]
        wait: bool,
    },
    /// Give an environment more time: it expires `--ttl` from now.
    Extend {
        id: String,
        #[arg(long, value_parser = parse_duration)]
        ttl: u64,
    },
    /// Change an environment's settings.
    Set {
        id: String,
        /// It sleeps after this long without a request (`30m`), never (`off`), or as its
        /// application says (`default`).
        #[arg(long, value_name = "DURATION")]
        idle_sleep: Option<String>,
    },
    /// Wake a sleeping environment: its services start again in dependency order.
    Wake {
        id: String,
        /// Wait until every service is ready again (exit 1 if one fails).
        #[arg(long)]
        wait: bool,
    },
    /// Print the environment as Kubernetes manifests (multi-document YAML, secret values masked).
    Render {
        id: String,
        #[arg(long, value_enum, default_value = "kubernetes")]
        runtime: crate::template_cmd::RuntimeKind,
    },
    /// Approve a pull request from a fork: its head commit gets an environment (or its
    /// environment moves to it), without the application's secrets unless the application
    /// allows them. New commits wait for another approval.
    Approve {
        app: String,
        /// The pull request's number.
        number: u64,
    },
    /// List the pull requests from forks: waiting for approval, or approved.
    Pending { app: String },
    /// Tear an environment down (runs `teardown`).
    Delete {
        id: String,
        #[arg(long)]
        wait: bool,
    },
}

/// `72h`, `30m`, `45s`, `2d`, or plain seconds.
fn parse_duration(s: &str) -> Result<u64, String> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n.parse().map_err(|_| format!("`{s}` is not a duration like 72h"))?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(format!("`{s}`: unknown unit `{unit}` (use s, m, h or d)")),
    };
    n.checked_mul(mult).filter(|v| *v > 0).ok_or_else(|| format!("`{s}` is out of range"))
}

fn print_env(e: &api::Env) -> String {
    let mut s = format!("{}  {}  {}@{}  {}", e.id, e.app, e.branch, e.commit.as_deref().map_or("-", |c| c.get(..7).unwrap_or(c)), e.status);
    if let Some(r) = &e.reason {
        s.push_str(&format!("  ({r})"));
    }
    s.push('\n');
    for svc in &e.services {
        let mut targets = svc.urls.clone();
        targets.extend(svc.load_balancers.iter().map(|lb| format!("tcp {}={}", lb.port, lb.address)));
        s.push_str(&format!("  {:<16} {:<12} {}", svc.name, svc.status, targets.join(" ")));
        if let Some(r) = &svc.reason {
            s.push_str(&format!("  {r}"));
        }
        s.push('\n');
    }
    // The latest deployment's steps, as far as they ran.
    if let Some(d) = e.deployments.last().filter(|d| !d.steps.is_empty()) {
        let steps: Vec<String> = d.steps.iter().map(|st| format!("{} {}", st.name, st.status)).collect();
        s.push_str(&format!("  {} {}: {}\n", d.workflow, d.status, steps.join(", ")));
    }
    for i in &e.imports {
        let commit = i.commit.as_deref().map_or("-", |c| c.get(..7).unwrap_or(c));
        s.push_str(&format!("  import {:<9} {}@{}  env {}  {}  ({})\n", i.app, i.branch, commit, i.env_id, i.status, i.reason));
    }
    if let Some(p) = &e.parent {
        s.push_str(&format!("  imported by environment {p}\n"));
    }
    if let Some(since) = e.sleeping_since {
        s.push_str(&format!(
            "  asleep: went to sleep {}; a request to any of its hostnames wakes it\n",
            crate::dataset_cmd::relative(since)
        ));
    }
    if let Some(at) = e.last_request_at {
        s.push_str(&format!("  last request {}\n", crate::dataset_cmd::relative(at)));
    }
    if let Some(t) = e.expires_at {
        s.push_str(&format!("  expires {}; `offshoot env extend {} --ttl 48h` gives it more\n", crate::dataset_cmd::relative(t), e.id));
    }
    if let Some(idle) = e.idle_sleep_seconds {
        s.push_str(&format!("  sleeps after {} without a request\n", span(idle)));
    }
    if let Some(pr) = &e.pull_request {
        let labels = if pr.labels.is_empty() { String::new() } else { format!("  labels: {}", pr.labels.join(", ")) };
        s.push_str(&format!("  pull request {} #{} ({}){labels}\n", pr.repo, pr.number, pr.provider));
    }
    for p in &e.parameters {
        s.push_str(&format!("  parameter {} = {}{}\n", p.name, p.value, if p.default { "  (default)" } else { "" }));
    }
    for d in &e.datasets {
        let expiry = d.expires_at.map_or_else(String::new, |t| format!(", TTL ends {}", crate::dataset_cmd::relative(t)));
        s.push_str(&format!("  dataset {}: database {} on {}:{} as {}{expiry}\n", d.dataset, d.database, d.host, d.port, d.user));
    }
    for w in &e.warnings {
        s.push_str(&format!("  warning: {w}\n"));
    }
    for c in &e.compat {
        s.push_str(&format!("  {} here: `{}` (line {}): {}\n", c.support, c.path, c.line, c.why));
    }
    for i in &e.infrastructure {
        let mut outputs = i.outputs.clone();
        outputs.extend(i.sensitive_outputs.iter().map(|o| format!("{o} (sensitive)")));
        let outputs = if outputs.is_empty() { String::new() } else { format!("; outputs {}", outputs.join(", ")) };
        let lock = i.locked_by.as_ref().map(|d| format!("; running in {d}")).unwrap_or_default();
        s.push_str(&format!("  infrastructure {} {} (state: {}){outputs}{lock}\n", i.name, i.status, i.state));
        if let Some(r) = &i.reason {
            r.lines().take(6).for_each(|l| s.push_str(&format!("    {l}\n")));
        }
    }
    s
}

fn print_jobs(jobs: &[api::CronJob]) -> String {
    if jobs.is_empty() {
        return "no cron jobs\n".into();
    }
    let mut s = String::new();
    for j in jobs {
        let next = j.next_at.map_or_else(|| "-".to_owned(), crate::dataset_cmd::relative);
        s.push_str(&format!("{}  schedule `{}` (UTC)  next {next}\n", j.name, j.schedule));
        if let Some(n) = &j.note {
            s.push_str(&format!("  {n}\n"));
        }
        if j.runs.is_empty() && j.note.is_none() {
            s.push_str("  no run yet\n");
        }
        for r in j.runs.iter().take(10) {
            let took = match (r.started_at, r.finished_at) {
                (Some(a), Some(b)) => format!(" in {:.1}s", (b - a) as f64 / 1000.0),
                _ => String::new(),
            };
            s.push_str(&format!(
                "  {:<12} {}{took}{}\n",
                r.status,
                crate::dataset_cmd::relative(r.scheduled_at),
                r.reason.as_ref().map(|x| format!("  ({x})")).unwrap_or_default()
            ));
        }
    }
    s
}

/// A number of seconds as `30m`, `2h`, `1h30m`, `45s`.
pub(crate) fn span(secs: i64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60, secs % 60);
    let parts: Vec<String> =
        [(d, "d"), (h, "h"), (m, "m"), (s, "s")].iter().filter(|(n, _)| *n > 0).map(|(n, u)| format!("{n}{u}")).collect();
    if parts.is_empty() { "0s".to_owned() } else { parts.concat() }
}

fn show(e: &api::Env, output: Output) {
    crate::emit(e, output, print_env);
}

/// Polls until the environment settles; shows progress on a terminal.
fn wait(api: &Api, id: &str, until_deleted: bool, output: Output) -> Result<api::Env> {
    let bar = crate::spinner(output);
    let start = Instant::now();
    loop {
        let e: api::Env = api.get(&format!("/envs/{}", enc(id)))?;
        let services: Vec<String> = e.services.iter().map(|s| format!("{} {}", s.name, s.status)).collect();
        bar.set_message(format!("{} {} [{}] {:.0}s", e.id, e.status, services.join(", "), start.elapsed().as_secs_f64()));
        let settled = if until_deleted { e.status == EnvStatus::Deleted || e.status == EnvStatus::Failed } else { e.status.is_settled() };
        if settled {
            bar.finish_and_clear();
            return Ok(e);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn finish(e: api::Env, output: Output) -> Result<ExitCode> {
    show(&e, output);
    if e.status == EnvStatus::Failed {
        err(&format!("error: environment {} failed: {}\n", e.id, e.reason.as_deref().unwrap_or("see `offshoot env show`")));
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn run(cmd: Command, output: Output) -> Result<ExitCode> {
    let api = Api::from_env()?;
    match cmd {
        Command::Create { app, branch, environment_template, ttl, params, wait: w } => {
            let mut parameters = std::collections::BTreeMap::new();
            for (name, value) in params {
                if parameters.insert(name.clone(), value).is_some() {
                    anyhow::bail!("parameter `{name}` is given twice");
                }
            }
            let body = api::EnvCreate { app, branch, environment_template, ttl_seconds: ttl, parameters };
            let e: api::Env = api.post("/envs", &body)?;
            if w {
                return finish(wait(&api, &e.id, false, output)?, output);
            }
            show(&e, output);
        }
        Command::List { app } => {
            let q = app.map_or_else(String::new, |a| format!("?app={}", enc(&a)));
            let envs: Vec<api::Env> = api.get(&format!("/envs{q}"))?;
            match output {
                Output::Json => out(&format!("{}\n", serde_json::to_string_pretty(&envs).unwrap_or_default())),
                Output::Human if envs.is_empty() => out("no environments\n"),
                Output::Human => envs.iter().for_each(|e| out(&print_env(e))),
            }
        }
        Command::Show { id } => show(&api.get(&format!("/envs/{}", enc(&id)))?, output),
        Command::Render { id, runtime: crate::template_cmd::RuntimeKind::Kubernetes } => {
            let r: api::RenderedManifests = api.get(&format!("/envs/{}/manifests", enc(&id)))?;
            for w in &r.warnings {
                err(&format!("warning: {w}\n"));
            }
            match output {
                Output::Json => crate::emit(&r, output, |_| String::new()),
                Output::Human => out(&r.yaml),
            }
        }
        Command::Logs { id, infrastructure: Some(name), .. } => {
            let list: Vec<api::Infrastructure> = api.get(&format!("/envs/{}/infrastructure?name={}", enc(&id), enc(&name)))?;
            let run = list.into_iter().next().and_then(|i| i.runs.into_iter().next());
            match (output, run) {
                (Output::Json, run) => crate::emit(&run, output, |_| String::new()),
                (Output::Human, None) => out(&format!("infrastructure `{name}` has not run yet\n")),
                (Output::Human, Some(r)) => {
                    err(&format!(
                        "{name}: {} {} {}{}\n",
                        r.action,
                        r.status,
                        crate::dataset_cmd::relative(r.started_at),
                        r.reason.as_deref().and_then(|x| x.lines().next()).map(|x| format!(" ({x})")).unwrap_or_default()
                    ));
                    r.log.lines().for_each(|line| out(&format!("{name}| {line}\n")));
                }
            }
        }
        Command::Logs { id, job: Some(job), .. } => {
            let jobs: Vec<api::CronJob> = api.get(&format!("/envs/{}/jobs?job={}", enc(&id), enc(&job)))?;
            let run = jobs.into_iter().next().and_then(|j| j.runs.into_iter().find(|r| r.status != "skipped"));
            match (output, run) {
                (Output::Json, run) => crate::emit(&run, output, |_| String::new()),
                (Output::Human, None) => out(&format!("cron job `{job}` has not run yet\n")),
                (Output::Human, Some(r)) => {
                    err(&format!(
                        "{job}: {} run of {}{}\n",
                        r.status,
                        crate::dataset_cmd::relative(r.scheduled_at),
                        r.reason.map(|x| format!(" ({x})")).unwrap_or_default()
                    ));
                    r.output.lines().for_each(|line| out(&format!("{job}| {line}\n")));
                }
            }
        }
        Command::Jobs { id } => {
            let jobs: Vec<api::CronJob> = api.get(&format!("/envs/{}/jobs", enc(&id)))?;
            crate::emit(&jobs, output, |j| print_jobs(j));
        }
        Command::Logs { id, service, build: true, .. } => {
            let logs: Vec<api::Logs> = api.get(&format!("/envs/{}/build-logs", enc(&id)))?;
            let logs: Vec<api::Logs> = logs.into_iter().filter(|l| service.as_ref().is_none_or(|s| s == &l.service)).collect();
            match output {
                Output::Json => out(&format!("{}\n", serde_json::to_string_pretty(&logs).unwrap_or_default())),
                Output::Human if logs.is_empty() => {
                    out("no build logs: nothing was built (images are reused when their content is unchanged)\n")
                }
                Output::Human => logs.iter().for_each(|l| l.logs.lines().for_each(|line| out(&format!("{}| {line}\n", l.service)))),
            }
        }
        Command::Logs { id, service, tail, follow, .. } => {
            let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
            loop {
                let q = format!("?tail={tail}{}", service.as_ref().map_or_else(String::new, |s| format!("&service={}", enc(s))));
                let logs: Vec<api::Logs> = api.get(&format!("/envs/{}/logs{q}", enc(&id)))?;
                if output == Output::Json && !follow {
                    out(&format!("{}\n", serde_json::to_string_pretty(&logs).unwrap_or_default()));
                    break;
                }
                for l in &logs {
                    let lines: Vec<&str> = l.logs.lines().collect();
                    let from = seen.get(&l.service).copied().unwrap_or(0).min(lines.len());
                    for line in &lines[from..] {
                        out(&format!("{}| {line}\n", l.service));
                    }
                    seen.insert(l.service.clone(), lines.len());
                }
                if !follow {
                    break;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        Command::Exec { id, service, command } => {
            let r: api::ExecResult = api.post(&format!("/envs/{}/exec", enc(&id)), &api::ExecRequest { service, command })?;
            match output {
                Output::Json => out(&format!("{}\n", serde_json::to_string_pretty(&r).unwrap_or_default())),
                Output::Human => out(&r.output),
            }
            return Ok(ExitCode::from(u8::try_from(r.exit_code).unwrap_or(1)));
        }
        Command::Deploy { id, commit, wait: w } => {
            let e: api::Env = api.post(&format!("/envs/{}/deploy", enc(&id)), &api::EnvDeploy { commit })?;
            if w {
                std::thread::sleep(Duration::from_millis(200));
                return finish(wait(&api, &e.id, false, output)?, output);
            }
            show(&e, output);
        }
        Command::Sleep { id, wait: w } => {
            let e: api::Env = api.post(&format!("/envs/{}/sleep?wait={w}", enc(&id)), &serde_json::json!({}))?;
            if !w && output == Output::Human {
                out(&format!("environment {} is going to sleep; `offshoot env show {}` follows it\n", e.id, e.id));
                return Ok(ExitCode::SUCCESS);
            }
            return finish(e, output);
        }
        Command::Extend { id, ttl } => {
            let e: api::Env = api.post(&format!("/envs/{}/extend", enc(&id)), &api::EnvExtend { ttl_seconds: ttl })?;
            show(&e, output);
        }
        Command::Set { id, idle_sleep } => {
            if idle_sleep.is_none() {
                return Err(crate::UsageError("nothing to change: give --idle-sleep DURATION|off|default".into()).into());
            }
            let e: api::Env = api.post(&format!("/envs/{}/settings", enc(&id)), &api::EnvUpdate { idle_sleep })?;
            show(&e, output);
        }
        Command::Wake { id, wait: w } => {
            let e: api::Env = api.post(&format!("/envs/{}/wake?wait={w}", enc(&id)), &serde_json::json!({}))?;
            if !w && output == Output::Human {
                out(&format!("environment {} is waking up; `offshoot env show {}` follows it\n", e.id, e.id));
                return Ok(ExitCode::SUCCESS);
            }
            return finish(e, output);
        }
        Command::Approve { app, number } => {
            let a: api::Approval = api.post(&format!("/apps/{}/pulls/{number}/approve", enc(&app)), &serde_json::json!({}))?;
            match output {
                Output::Json => out(&format!("{}\n", serde_json::to_string_pretty(&a).unwrap_or_default())),
                Output::Human => out(&format!("{}\n", a.result)),
            }
        }
        Command::Pending { app } => {
            let list: Vec<api::ForkPull> = api.get(&format!("/apps/{}/pulls", enc(&app)))?;
            match output {
                Output::Json => out(&format!("{}\n", serde_json::to_string_pretty(&list).unwrap_or_default())),
                Output::Human if list.is_empty() => out(&format!("no pull request from a fork for `{app}`\n")),
                Output::Human => {
                    let mut text = String::new();
                    for p in &list {
                        let head = p.head_commit.get(..7).unwrap_or(&p.head_commit);
                        let env = p.env_id.as_deref().map(|e| format!("  environment {e}")).unwrap_or_default();
                        text.push_str(&format!("#{}  {}  from {}  head {head}{env}\n", p.number, p.status, p.fork));
                    }
                    if list.iter().any(|p| p.status == "waiting") {
                        text.push_str(&format!("approve one: offshoot env approve {app} NUMBER\n"));
                    }
                    out(&text);
                }
            }
        }
        Command::Delete { id, wait: w } => {
            let e: api::Env = api.delete_json(&format!("/envs/{}", enc(&id)))?;
            if w {
                let e = wait(&api, &e.id, true, output)?;
                if e.status != EnvStatus::Deleted {
                    bail!("environment {} did not tear down: {}", e.id, e.reason.unwrap_or_default());
                }
                return finish(e, output);
            }
            show(&e, output);
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #[test]
    fn spans() {
        assert_eq!(super::span(1800), "30m");
        assert_eq!(super::span(5400), "1h30m");
        assert_eq!(super::span(45), "45s");
        assert_eq!(super::span(90_000), "1d1h");
    }

    #[test]
    fn durations() {
        assert_eq!(super::parse_duration("72h"), Ok(259_200));
        assert_eq!(super::parse_duration("90"), Ok(90));
        assert!(super::parse_duration("3w").is_err());
        assert!(super::parse_duration("0s").is_err());
    }
}

#[cfg(test)]
mod print_tests {
    use super::*;

    #[test]
    fn an_environment_shows_its_latest_deployments_steps() {
        let e: api::Env = serde_json::from_value(serde_json::json!({
            "id": "abc1234", "app": "shop", "branch": "main", "commit": "0123456789", "status": "failed",
            "reason": "step `migrate`: jobs.migrate: exited with code 4", "environment_template": null,
            "services": [], "created_at": 0, "expires_at": null,
            "deployments": [
                {"id": "d1", "workflow": "setup", "commit": null, "status": "succeeded", "phases": {}, "created_at": 0, "finished_at": 1,
                 "steps": [{"name": "services-0", "status": "done"}]},
                {"id": "d2", "workflow": "patch", "commit": null, "status": "failed", "phases": {}, "created_at": 2, "finished_at": 3,
                 "steps": [{"name": "migrate", "status": "failed", "output": "exited with code 4"}, {"name": "serve", "status": "done"}]}
            ]
        }))
        .expect("an environment");
        let text = print_env(&e);
        assert!(text.contains("  patch failed: migrate failed, serve done\n"), "{text}");
        assert!(!text.contains("services-0"), "only the latest deployment: {text}");
    }
}
