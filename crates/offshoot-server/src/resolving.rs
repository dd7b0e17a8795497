//! An environment's configuration resolved for a deployment: its forked template and variables,
//! the application's secrets, its attached datasets' variables and, for an importer, its imports'
//! ingress variables; and what a deployment derives from the result (the variables a push alone
//! changes, what the router needs to know about a service).

use crate::failure::Failure;
use crate::state::Ctx;
use offshoot_store::{Environment, IngressRecord, Routing};
use offshoot_template::document::{self, Kind};
use offshoot_template::envvars::{EnvVarsFile, Var, VarValue};
use offshoot_template::model::Ingress;
use offshoot_template::resolve::{self, Resolved, ResolvedService};
use offshoot_template::secret::SecretString;
use offshoot_template::span::Sp;
use std::collections::{BTreeMap, HashSet};

/// An environment's forked template and variables, parsed: once per deployment, whatever reads
/// them (its datasets, its imports' setting, the resolution).
pub(crate) struct Fork {
    root: offshoot_template::yaml::Node,
    template: offshoot_template::model::Template,
    vars: EnvVarsFile,
}

impl Fork {
    pub(crate) fn parse(env: &Environment) -> Result<Fork, Failure> {
        let tdoc = document::check("application_template.yaml", &env.template, Some(Kind::Template));
        let (Some(root), Some(template)) = (tdoc.root, tdoc.template) else {
            return Err("the environment's template does not parse".into());
        };
        let vars = document::check("environment_variables.yaml", &env.env_vars, Some(Kind::EnvVars)).env_vars.unwrap_or_default();
        Ok(Fork { root, template, vars })
    }

    /// The Instant Datasets its environment template lists.
    pub(crate) fn datasets(&self, env: &Environment) -> Vec<String> {
        self.template.datasets_of(env.environment_template.as_deref())
    }

    /// The template, parsed.
    /// The names of its `infrastructure` entries, in template order.
    pub(crate) fn infrastructure_names(&self) -> Vec<String> {
        self.template.infrastructure.iter().map(|i| i.name.value.clone()).collect()
    }

    pub(crate) fn template(&self) -> &offshoot_template::model::Template {
        &self.template
    }

    /// The template as written.
    pub(crate) fn root(&self) -> &offshoot_template::yaml::Node {
        &self.root
    }

    /// `parallelize_app_imports: true`.
    pub(crate) fn parallel_imports(&self) -> bool {
        self.template.parallelize_app_imports.as_ref().is_some_and(|p| p.value)
    }
}

/// The environment's forked configuration with the app's secrets, resolved. An importing
/// environment sees its imports' ingress variables; an imported one leaves out its excluded
/// services.
pub(crate) async fn resolve_env(ctx: &Ctx, env: &Environment, commit: Option<&str>) -> Result<Resolved, Failure> {
    resolve_fork(ctx, env, &Fork::parse(env)?, commit).await
}

/// [`resolve_env`] of a configuration already parsed.
pub(crate) async fn resolve_fork(ctx: &Ctx, env: &Environment, fork: &Fork, commit: Option<&str>) -> Result<Resolved, Failure> {
    // An importer: its imports' ingress variables, and which services they bring.
    let mut imported = BTreeMap::new();
    let mut imported_services: Vec<String> = Vec::new();
    if env.parent_id.is_none() {
        for child in ctx.store.child_envs(&env.id).await? {
            let r = Box::pin(resolve_env(ctx, &child, None)).await.map_err(|e| format!("import `{}`: {e}", child.app))?;
            for s in &r.services {
                for (k, v) in &s.env {
                    if (k.ends_with("_INGRESS_URL") || k.ends_with("_INGRESS_HOST")) && !imported.contains_key(k) {
                        imported.insert(k.clone(), v.expose().to_owned());
                    }
                }
            }
            imported_services.extend(r.services.into_iter().map(|s| s.name));
        }
    }
    let mut r = resolve_own(ctx, env, fork, commit, imported).await?;
    // The importer's tasks for imported services run with the imports.
    drop_service_tasks(&mut r, &imported_services);
    if let Some(parent_id) = &env.parent_id {
        let info = offshoot_control::imports::ImportInfo::of(env);
        r.services.retain(|s| !info.exclude.contains(&s.name));
        drop_service_tasks(&mut r, &info.exclude);
        // The importer's routes to this import's services are served by this environment.
        if let Some(parent) = ctx.store.env(parent_id).await?
            && let Ok(parent_fork) = Fork::parse(&parent)
            && let Ok(pr) = Box::pin(resolve_own(ctx, &parent, &parent_fork, None, BTreeMap::new())).await
        {
            let mine: HashSet<&str> = r.services.iter().map(|s| s.name.as_str()).collect();
            let theirs: Vec<_> = pr.routes.iter().filter(|rt| mine.contains(rt.service.as_str())).cloned().collect();
            r.routes.extend(theirs);
        }
    }
    Ok(r)
}

/// Removes the workflow tasks that start the named services.
fn drop_service_tasks(r: &mut Resolved, services: &[String]) {
    if services.is_empty() {
        return;
    }
    let gone: Vec<String> = services.iter().map(|s| format!("services.{s}")).collect();
    for steps in r.workflows.values_mut() {
        for step in steps.iter_mut() {
            step.tasks.retain(|t| !gone.contains(t));
        }
    }
}

async fn resolve_own(
    ctx: &Ctx,
    env: &Environment,
    fork: &Fork,
    commit: Option<&str>,
    imported: BTreeMap<String, String>,
) -> Result<Resolved, Failure> {
    let mut vars = fork.vars.clone();
    // A fork's environment gets none of an application's secrets unless that application
    // allows it: its own, and those of the applications it imports (their code is trusted,
    // but it answers the fork's on the same network).
    let withheld = offshoot_control::forks::secrets_withheld(&ctx.store, env).await?;
    let secret_files = if withheld {
        withhold_secrets(&mut vars);
        BTreeMap::new()
    } else {
        add_secrets(ctx, &env.app, &mut vars).await?
    };
    let attached = crate::clones::variables(ctx, &env.id)
        .await?
        .into_iter()
        .map(|(k, v, secret)| (k, if secret { VarValue::Secret(SecretString::new(v)) } else { VarValue::Plain(v) }))
        .collect();
    let opts = resolve::Options {
        environment_template: env.environment_template.clone(),
        branch: env.branch.clone(),
        env_id: env.id.to_string(),
        commit: commit.map(str::to_owned).or_else(|| env.commit_sha.clone()),
        app: Some(env.app.to_string()),
        domain: ctx.domain.clone(),
        force_domain: true,
        // On Kubernetes, the cluster's ingress on the usual ports; else the router.
        ingress_port: Some(if ctx.kube.is_some() { 80 } else { ctx.router_port }),
        ingress_https: match &ctx.kube {
            Some(k) => k.https(),
            None => ctx.https(),
        },
        parameters: env.given_parameters(),
        secret_files,
        imported,
        attached,
    };
    let r = resolve::resolve("application_template.yaml", &fork.root, Some(&vars), &opts).map_err(|diags| {
        Failure::Reason(
            diags.iter().filter(|d| d.is_error()).map(|d| format!("{}:{}: {}", d.line, d.column, d.message)).collect::<Vec<_>>().join("; "),
        )
    })?;
    // A file secret the application does not have is refused, not mounted empty.
    for s in &r.services {
        if let Some(f) = s.secret_files.iter().find(|f| f.value.is_none()) {
            if withheld {
                return Err(Failure::Reason(format!(
                    "service `{}` mounts the file secret `{}`, which the environment of a fork's pull request does not get; `offshoot app set {} --fork-secrets on` gives forks the application's secrets",
                    s.name, f.name, env.app
                )));
            }
            return Err(Failure::Reason(format!(
                "service `{}`: application `{}` has no file secret `{}`; set it: `offshoot app secret set {} {} --file < FILE`",
                s.name, env.app, f.name, env.app, f.name
            )));
        }
    }
    Ok(r)
}

/// Empties every secret value of an Environment Variables file (the keys stay, so the template
/// still resolves).
fn withhold_secrets(vars: &mut EnvVarsFile) {
    let all = vars.defaults.iter_mut().chain(vars.envs.iter_mut()).chain(vars.services.iter_mut().flat_map(|(_, list)| list.iter_mut()));
    for v in all.filter(|v| v.secret) {
        v.value = Some(Sp::synthetic(VarValue::Secret(SecretString::new(String::new()))));
    }
}

/// Adds the application's secrets to its variables; returns its file secrets (`--file`), which
/// are mounted as files, not variables.
async fn add_secrets(ctx: &Ctx, app: &str, vars: &mut EnvVarsFile) -> Result<BTreeMap<String, SecretString>, Failure> {
    let mut files = BTreeMap::new();
    for s in ctx.store.secrets(app).await? {
        let value =
            ctx.key.decrypt(&s.ciphertext, &format!("{app}/{}/{}", s.service, s.key)).map_err(|e| format!("secret `{}`: {e}", s.key))?;
        if let Some(name) = s.key.strip_prefix(offshoot_control::apps::FILE_SECRET_PREFIX) {
            files.insert(name.to_owned(), SecretString::new(value));
            continue;
        }
        let var =
            Var { key: Sp::synthetic(s.key.clone()), value: Some(Sp::synthetic(VarValue::Secret(SecretString::new(value)))), secret: true };
        if s.service.is_empty() {
            vars.defaults.retain(|v| v.key.value != s.key);
            vars.defaults.push(var);
        } else {
            match vars.services.iter_mut().find(|(name, _)| name.value == s.service) {
                Some((_, list)) => {
                    list.retain(|v| v.key.value != s.key);
                    list.push(var);
                }
                None => vars.services.push((Sp::synthetic(s.service.clone()), vec![var])),
            }
        }
    }
    Ok(files)
}

pub(crate) fn exposed(env: &BTreeMap<String, VarValue>) -> BTreeMap<String, String> {
    env.iter().map(|(k, v)| (k.clone(), v.expose().to_owned())).collect()
}

/// The volatile variables, and every `mapping` entry derived from one.
pub(crate) fn volatile_keys(env_vars: &str) -> std::collections::BTreeSet<String> {
    let mut out: std::collections::BTreeSet<String> = VOLATILE.iter().map(|v| (*v).to_owned()).collect();
    let vars = document::check("environment_variables.yaml", env_vars, Some(Kind::EnvVars)).env_vars.unwrap_or_default();
    for (k, v) in &vars.mapping {
        let names: Vec<String> = if offshoot_template::envvars::is_env_name(v) {
            vec![v.value.clone()]
        } else {
            offshoot_template::interp::parse(v, offshoot_template::interp::Bare::Expand)
                .map(|p| offshoot_template::interp::names(&p).into_iter().map(str::to_owned).collect())
                .unwrap_or_default()
        };
        if names.iter().any(|n| out.contains(n)) {
            out.insert(k.value.clone());
        }
    }
    out
}

/// The deployed commit changes with every push; alone, it does not restart a service whose
/// image and configuration are unchanged (that service keeps the commit it was deployed at), nor
/// makes a static site stale.
pub(crate) const VOLATILE: &[&str] = &["RELEASE_COMMIT_SHA", "RELEASE_COMMIT_SHORT"];

/// What the router needs to know about a service.
pub(crate) fn routing_for(resolved: &Resolved, s: &ResolvedService) -> Routing {
    let node_port = s.ports.iter().find(|p| p.kind == offshoot_template::model::PortType::NodePort && !p.loadbalancer);
    Routing {
        routes: resolved
            .routes
            .iter()
            .filter(|r| r.service == s.name)
            .map(|r| (r.host.clone(), r.path.clone(), r.visibility.clone()))
            .collect(),
        port: node_port.or_else(|| s.ports.iter().find(|p| !p.loadbalancer)).map(|p| p.target_port),
        lb_ports: s.ports.iter().filter(|p| p.loadbalancer).map(|p| p.target_port).collect(),
        ingress: resolved.ingress.as_ref().map(ingress_record),
    }
}

/// A service's record of the `ingress` block it was deployed with.
fn ingress_record(i: &Ingress) -> IngressRecord {
    let text = |t: &Option<offshoot_template::span::Text>| t.as_ref().map(|v| v.value.clone());
    IngressRecord {
        proxy_body_size: text(&i.proxy_body_size),
        proxy_buffer_size: text(&i.proxy_buffer_size),
        proxy_buffering: text(&i.proxy_buffering),
        proxy_buffers_number: text(&i.proxy_buffers_number),
        proxy_max_temp_file_size: text(&i.proxy_max_temp_file_size),
        proxy_read_timeout: text(&i.proxy_read_timeout),
        proxy_send_timeout: text(&i.proxy_send_timeout),
        proxy_connect_timeout: text(&i.proxy_connect_timeout),
    }
}
