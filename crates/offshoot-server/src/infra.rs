//! Terraform `infrastructure` on this server. Each run is one container of the runner image (the
//! application's, else `--terraform-image`) on the environment's network, given the repository
//! at the deployed commit, the variables its module declares and the state this server keeps;
//! it leaves its status, its state and its outputs, which are collected before it is removed.
//!
//! The state is kept per environment and entry, encrypted, and locked while a run holds it (a
//! module with its own backend keeps its own). A destroy that succeeded forgets it; one that
//! failed keeps it. A run a stopped server left behind is waited for and its state salvaged
//! before the entry runs again.

use crate::failure::Failure;
use crate::state::Shared;
use offshoot_git::Mirror;
use offshoot_runtime::{ContainerSpec, Namespace, RegistryAuths, Role, Runtime};
use offshoot_store::{Environment, InfraRun, InfraState, InfraUpdate};
use offshoot_template::envvars::VarValue;
use offshoot_template::resolve::ResolvedInfrastructure;
use offshoot_template::secret::SecretString;
use offshoot_terraform::{Action, Module, OUT_DIR, Outcome};
use std::collections::BTreeMap;
use std::time::Duration;

/// How long one run may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(3600);
/// How much of a module's folder Offshoot reads to learn its variables.
const MODULE_READ_LIMIT: u64 = 4 << 20;

/// Outputs by entry, as variables.
pub(crate) type EntryOutputs = BTreeMap<String, BTreeMap<String, VarValue>>;

/// The container an entry of an environment runs in (`.` is in no entry's name of a service).
fn container(env_id: &str, name: &str) -> String {
    format!("offshoot-{env_id}-{name}.terraform")
}

fn state_context(env_id: &str, name: &str) -> String {
    format!("infra-state:{env_id}:{name}")
}

fn outputs_context(env_id: &str, name: &str) -> String {
    format!("infra-outputs:{env_id}:{name}")
}

/// An entry's non-sensitive outputs as its last apply recorded them: `{VARIABLE: value}`.
pub(crate) fn plain_outputs(s: &InfraState) -> BTreeMap<String, String> {
    serde_json::from_str(&s.outputs).unwrap_or_default()
}

/// An entry's sensitive outputs, opened: `{VARIABLE: value}` (none when it has none).
pub(crate) fn sensitive_outputs(ctx: &Shared, s: &InfraState) -> Result<BTreeMap<String, String>, Failure> {
    let Some(sealed) = &s.sensitive else { return Ok(BTreeMap::new()) };
    let opened = ctx.key.decrypt(sealed, &outputs_context(&s.env_id, &s.name))?;
    Ok(serde_json::from_str(&opened).unwrap_or_default())
}

/// The outputs an environment's entries last gave, as variables (sensitive ones as secrets).
pub(crate) async fn stored_outputs(ctx: &Shared, env_id: &str) -> Result<EntryOutputs, Failure> {
    let mut out = EntryOutputs::new();
    for s in ctx.store.infra_states(env_id).await? {
        let mut vars: BTreeMap<String, VarValue> = plain_outputs(&s).into_iter().map(|(k, v)| (k, VarValue::Plain(v))).collect();
        vars.extend(sensitive_outputs(ctx, &s)?.into_iter().map(|(k, v)| (k, VarValue::Secret(SecretString::new(v)))));
        out.insert(s.name, vars);
    }
    Ok(out)
}

/// Every entry's outputs in one map.
pub(crate) fn flatten(outputs: &EntryOutputs) -> BTreeMap<String, VarValue> {
    outputs.values().flat_map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone()))).collect()
}

/// Runs the entries of one deployment (or teardown) of an environment.
#[derive(Clone)]
pub(crate) struct Runner {
    ctx: Shared,
    env: Environment,
    /// The deployment: it holds the entries' locks.
    owner: String,
    /// The repository at the deployed commit.
    source: Option<(Mirror, String)>,
    entries: Vec<ResolvedInfrastructure>,
    auths: RegistryAuths,
}

impl Runner {
    pub(crate) fn new(
        ctx: &Shared,
        env: &Environment,
        owner: &str,
        source: Option<(Mirror, String)>,
        entries: Vec<ResolvedInfrastructure>,
        auths: RegistryAuths,
    ) -> Self {
        Runner { ctx: ctx.clone(), env: env.clone(), owner: owner.to_owned(), source, entries, auths }
    }

    /// Applies or destroys an entry under its lock: what it did (for the step log) and, after an
    /// apply, its outputs as variables.
    pub(crate) async fn run(&self, name: &str, action: Action) -> Result<(String, BTreeMap<String, VarValue>), Failure> {
        let entry = self.entries.iter().find(|e| e.name == name);
        let entry = entry.ok_or_else(|| format!("infrastructure entry `{name}` is not defined"))?;
        let env_id = self.env.id.as_str();
        if action == Action::Destroy {
            match self.ctx.store.infra_state(env_id, name).await? {
                None => return Ok(("nothing to destroy".into(), BTreeMap::new())),
                // No state kept and no backend of its own: no run ever recorded anything (a
                // first apply that failed before Terraform wrote state, say).
                Some(s) if s.state.is_none() && s.backend.is_none() => {
                    self.ctx.store.forget_infra(env_id, name).await?;
                    return Ok(("nothing to destroy".into(), BTreeMap::new()));
                }
                Some(_) => {}
            }
        }
        if let Some(holder) = self.ctx.store.lock_infra(env_id, name, &self.owner, offshoot_store::now_ms()).await? {
            return Err(format!(
                "the state of infrastructure `{name}` is locked by deployment `{holder}`; wait for it to end (`offshoot env show {env_id}`)"
            )
            .into());
        }
        let result = self.run_locked(entry, action).await;
        if let Err(e) = &result {
            self.ctx.store.fail_infra(env_id, name, &e.to_string(), offshoot_store::now_ms()).await?;
        }
        self.ctx.store.unlock_infra(env_id, name, &self.owner).await?;
        result
    }

    async fn run_locked(&self, entry: &ResolvedInfrastructure, action: Action) -> Result<(String, BTreeMap<String, VarValue>), Failure> {
        let (ctx, env_id, name) = (&self.ctx, self.env.id.as_str(), entry.name.as_str());
        let (mirror, commit) = self.source.as_ref().ok_or("the environment has no deployed commit to run Terraform from")?;
        let tmp = ctx.data_dir.join("tmp");
        tokio::fs::create_dir_all(&tmp).await?;
        let collected = tmp.join(format!("infra-{env_id}-{name}.tar"));
        // A run a stopped server left: its state is the newest there is.
        if let Some((done, true)) = ctx.rt.salvage(&container(env_id, name), OUT_DIR, &collected, RUN_TIMEOUT).await? {
            let left = read_collected(&collected).await?;
            tracing::info!(env = %env_id, entry = %name, exit = done.exit_code, "salvaged the state of an interrupted Terraform run");
            if let Some(state) = &left.state {
                self.keep_state(name, state, None).await?;
            }
        }
        let module = self.module(mirror, commit, &entry.directory).await?;
        let stored = ctx.store.infra_state(env_id, name).await?.ok_or("the entry's record disappeared")?;
        let state = match (&stored.state, &module.backend) {
            (Some(sealed), None) => Some(ctx.key.decrypt(sealed, &state_context(env_id, name))?),
            _ => None,
        };
        let values = self.values(mirror, commit, entry).await?;
        let mut extra = Vec::new();
        if let Some(s) = &state {
            extra.push((format!("{}/in.tfstate", OUT_DIR.trim_start_matches('/')), s.clone().into_bytes(), 0o600));
        }
        if let Some((_, Some(json))) = &values {
            let dir = if entry.directory == "." { String::new() } else { format!("{}/", entry.directory) };
            let path = format!("{}/{dir}{}", offshoot_terraform::REPO_DIR.trim_start_matches('/'), offshoot_terraform::YAML_VALUES_FILE);
            extra.push((path, json.clone().into_bytes(), 0o644));
        }
        let run = offshoot_terraform::Run {
            action,
            directory: &entry.directory,
            values: values.as_ref().map(|(path, json)| (path.as_str(), json.is_some())),
            with_state: state.is_some(),
        };
        let (m, c) = (mirror.clone(), commit.clone());
        let prefix = format!("{}/", offshoot_terraform::REPO_DIR.trim_start_matches('/'));
        let files = tokio::task::spawn_blocking(move || m.archive_with(&c, ".", &prefix, &extra)).await??;
        let image = match ctx.store.app_git(&self.env.app).await?.and_then(|g| g.terraform_image) {
            Some(image) => image,
            None => ctx.terraform_image.clone(),
        };
        if let Err(e) = ctx.rt.ensure_image(&image, &self.auths).await {
            return Err(format!(
                "{e} (the Terraform runner; choose another with `offshoot app set {} --terraform-image IMAGE`)",
                self.env.app
            )
            .into());
        }
        let mut env: BTreeMap<String, String> = offshoot_terraform::tf_vars(&module, &entry.env);
        env.insert("TF_IN_AUTOMATION".into(), "1".into());
        env.insert("TF_INPUT".into(), "0".into());
        env.insert("CHECKPOINT_DISABLE".into(), "1".into());
        let spec = ContainerSpec {
            name: container(env_id, name),
            service: name.to_owned(),
            role: Role::Job,
            image,
            entrypoint: Some(vec!["/bin/sh".into(), "-c".into()]),
            cmd: Some(vec![offshoot_terraform::script(&run)]),
            env,
            ports: vec![],
            mounts: vec![],
            cpu_millis: None,
            memory_bytes: None,
            cpu_request_millis: None,
            memory_request_bytes: None,
            volatile_env: Default::default(),
        };
        // On the environment's network: a module may reach its services by name.
        let ns = Namespace::new(env_id, self.env.app.as_str(), &ctx.instance).on_network_of(self.env.parent_id.as_deref());
        ctx.rt.ensure_namespace(&ns).await?;
        let record = InfraRun {
            id: format!("i{}", crate::crypto::hex(&crate::crypto::random_bytes::<8>())),
            env_id: env_id.to_owned(),
            name: name.to_owned(),
            action: action.as_str().to_owned(),
            deployment_id: Some(self.owner.clone()),
            started_at: offshoot_store::now_ms(),
            finished_at: None,
            status: "running".into(),
            reason: None,
            log: String::new(),
        };
        ctx.store.add_infra_run(&record).await?;
        let ran = ctx.rt.run_collect(&ns, &spec, files, OUT_DIR, &collected, RUN_TIMEOUT).await;
        let (done, found) = match ran {
            Ok(r) => r,
            Err(e) => {
                ctx.store.finish_infra_run(&record.id, "failed", Some(&e.to_string()), "", offshoot_store::now_ms()).await?;
                return Err(e.into());
            }
        };
        let mut log = done.logs.clone();
        for line in &module.unreadable {
            log.push_str(&format!("\noffshoot: could not read the variables of {line}"));
        }
        // Read and removed; a run that left nothing may still have left an empty file.
        let left = if found {
            read_collected(&collected).await?
        } else {
            let _ = tokio::fs::remove_file(&collected).await;
            Collected::default()
        };
        let outcome = left.status.as_deref().and_then(Outcome::parse);
        let failure = match &outcome {
            Some(o) if o.succeeded() => None,
            Some(o) => Some(format!(
                "terraform {} failed (exit code {}):\n{}",
                o.phase,
                o.exit_code,
                offshoot_terraform::error_message(&done.logs, 20)
            )),
            None => Some(format!(
                "the Terraform runner `{}` ended (exit code {}) without saying how Terraform did; it needs `/bin/sh` and `terraform`:\n{}",
                spec.image,
                done.exit_code,
                offshoot_terraform::error_message(&done.logs, 10)
            )),
        };
        // What was made is in the state, whether the run succeeded or not.
        let backend = module.backend.clone();
        if let Some(state) = &left.state {
            self.keep_state(name, state, backend.as_deref()).await?;
        }
        let now = offshoot_store::now_ms();
        if let Some(reason) = failure {
            ctx.store.finish_infra_run(&record.id, "failed", Some(&reason), &log, now).await?;
            return Err(reason.into());
        }
        ctx.store.finish_infra_run(&record.id, "succeeded", None, &log, now).await?;
        match action {
            Action::Destroy => {
                ctx.store.forget_infra(env_id, name).await?;
                Ok(("destroyed".into(), BTreeMap::new()))
            }
            Action::Apply => {
                let outputs = offshoot_terraform::outputs(name, left.outputs.as_deref().unwrap_or("{}")).map_err(|e| e.to_string())?;
                let now_state = ctx.store.infra_state(env_id, name).await?.ok_or("the entry's record disappeared")?;
                let sensitive = if outputs.sensitive.is_empty() {
                    None
                } else {
                    let json = serde_json::to_string(&outputs.sensitive).map_err(|e| e.to_string())?;
                    Some(ctx.key.encrypt(&json, &outputs_context(env_id, name))?)
                };
                let update = InfraUpdate {
                    state: now_state.state,
                    serial: now_state.serial,
                    backend,
                    outputs: serde_json::to_string(&outputs.plain).map_err(|e| e.to_string())?,
                    sensitive,
                    status: "applied".into(),
                    reason: None,
                };
                ctx.store.save_infra(env_id, name, &update, now).await?;
                let names: Vec<&str> = outputs.plain.keys().chain(outputs.sensitive.keys()).map(String::as_str).collect();
                let said = if names.is_empty() { "applied".to_owned() } else { format!("applied; outputs {}", names.join(", ")) };
                let mut vars: BTreeMap<String, VarValue> = outputs.plain.into_iter().map(|(k, v)| (k, VarValue::Plain(v))).collect();
                vars.extend(outputs.sensitive.into_iter().map(|(k, v)| (k, VarValue::Secret(SecretString::new(v)))));
                Ok((said, vars))
            }
        }
    }

    /// Keeps a state the runner left, sealed, unless the one kept is newer.
    async fn keep_state(&self, name: &str, state: &str, backend: Option<&str>) -> Result<(), Failure> {
        let env_id = self.env.id.as_str();
        let Some(serial) = offshoot_terraform::serial(state) else {
            tracing::warn!(env = %env_id, entry = %name, "the runner left a state that is not one; it is not kept");
            return Ok(());
        };
        let Some(stored) = self.ctx.store.infra_state(env_id, name).await? else { return Ok(()) };
        if stored.state.is_some() && stored.serial > serial {
            return Ok(());
        }
        let update = InfraUpdate {
            state: Some(self.ctx.key.encrypt(state, &state_context(env_id, name))?),
            serial,
            backend: backend.map(str::to_owned).or(stored.backend),
            outputs: stored.outputs,
            sensitive: stored.sensitive,
            status: stored.status,
            reason: stored.reason,
        };
        self.ctx.store.save_infra(env_id, name, &update, offshoot_store::now_ms()).await?;
        Ok(())
    }

    /// What the module's root folder declares.
    async fn module(&self, mirror: &Mirror, commit: &str, directory: &str) -> Result<Module, Failure> {
        let (m, c, d) = (mirror.clone(), commit.to_owned(), directory.to_owned());
        let item = tokio::task::spawn_blocking(move || m.read_item(&c, if d == "." { "" } else { &d }, MODULE_READ_LIMIT)).await??;
        let files = match item {
            Some(offshoot_git::TreeItem::Dir(files)) => files,
            _ => return Err(format!("the Terraform module `{directory}` is not a folder of the repository at {}", short(commit)).into()),
        };
        let texts: Vec<(String, String)> = files
            .into_iter()
            .filter(|f| !f.path.contains('/') && (f.path.ends_with(".tf") || f.path.ends_with(".tf.json")))
            .map(|f| (f.path, String::from_utf8_lossy(&f.data).into_owned()))
            .collect();
        if texts.is_empty() {
            return Err(format!("the Terraform module `{directory}` has no `.tf` file at {}", short(commit)).into());
        }
        Ok(offshoot_terraform::scan(texts.iter().map(|(p, t)| (p.as_str(), t.as_str()))))
    }

    /// The values file: its path in the repository (in the module's folder, else from the
    /// root) and, for YAML, the JSON it becomes.
    async fn values(
        &self,
        mirror: &Mirror,
        commit: &str,
        entry: &ResolvedInfrastructure,
    ) -> Result<Option<(String, Option<String>)>, Failure> {
        let Some(values) = &entry.values else { return Ok(None) };
        let in_dir = if entry.directory == "." { values.clone() } else { format!("{}/{values}", entry.directory) };
        for path in [in_dir.clone(), values.clone()] {
            let (m, c, p) = (mirror.clone(), commit.to_owned(), path.clone());
            let Some(data) = tokio::task::spawn_blocking(move || m.read_file(&c, &p)).await?? else { continue };
            if path.ends_with(".yaml") || path.ends_with(".yml") {
                let json = offshoot_terraform::yaml_values(&path, &String::from_utf8_lossy(&data))?;
                return Ok(Some((path, Some(json))));
            }
            return Ok(Some((path, None)));
        }
        Err(format!(
            "infrastructure `{}`: its values file `{values}` is neither `{in_dir}` nor `{values}` in the repository at {}",
            entry.name,
            short(commit)
        )
        .into())
    }
}

fn short(commit: &str) -> &str {
    commit.get(..7).unwrap_or(commit)
}

/// What a run left in [`OUT_DIR`].
#[derive(Default)]
struct Collected {
    status: Option<String>,
    state: Option<String>,
    outputs: Option<String>,
}

async fn read_collected(path: &std::path::Path) -> Result<Collected, Failure> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let file = std::fs::File::open(&path)?;
        let mut archive = tar::Archive::new(file);
        let mut out = Collected::default();
        for entry in archive.entries()? {
            let mut entry = entry?;
            let name = entry.path()?.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let slot = match name.as_str() {
                "status" => &mut out.status,
                "terraform.tfstate" => &mut out.state,
                "outputs.json" => &mut out.outputs,
                _ => continue,
            };
            let mut text = String::new();
            std::io::Read::read_to_string(&mut entry, &mut text)?;
            *slot = Some(text);
        }
        let _ = std::fs::remove_file(&path);
        Ok::<_, std::io::Error>(out)
    })
    .await?
    .map_err(Failure::from)
}

/// Destroys what an environment's entries still hold before it is removed (a teardown whose
/// workflow has no `infrastructure.<name>` task, or one that failed and is tried again). An
/// entry whose destroy failed in this teardown already is not run twice: its failure stands.
pub(crate) async fn destroy_remaining(ctx: &Shared, runner: &Runner, deployment: &str) -> Result<(), Failure> {
    let mut failures = Vec::new();
    for s in ctx.store.infra_states(&runner.env.id).await? {
        let runs = ctx.store.infra_runs(&runner.env.id, Some(&s.name)).await?;
        let failed_here =
            runs.first().is_some_and(|r| r.deployment_id.as_deref() == Some(deployment) && r.action == "destroy" && r.status == "failed");
        let result = if failed_here {
            Err(Failure::from(runs[0].reason.clone().unwrap_or_else(|| "the destroy failed".into())))
        } else {
            runner.run(&s.name, Action::Destroy).await.map(|_| ())
        };
        if let Err(e) = result {
            failures.push(format!("infrastructure `{}`: {e}", s.name));
        }
    }
    if failures.is_empty() {
        return Ok(());
    }
    Err(format!(
        "{}\nThe environment is kept with its Terraform state; fix the cause and delete it again (`offshoot env delete {}`)",
        failures.join("\n"),
        runner.env.id
    )
    .into())
}
