//! A deployment's images and static sites: built from the repository at the deployed commit
//! (or another repository's branch, for `builds` with `repo_url`), content-addressed so that an
//! unchanged context is never built again, and pulled for the rest. A build that fails fails the
//! service with the tail of its log; nothing runs until every image is at hand.

use crate::failure::Failure;
use crate::resolving::{exposed, routing_for};
use crate::sites::At;
use crate::state::{Shared, logged, set_service};
use offshoot_api_types::ServiceStatus;
use offshoot_control::Plan;
use offshoot_runtime::{BuildRequest, Runtime};
use offshoot_store::ServiceDetail;
use offshoot_template::resolve::{Resolved, ResolvedBuild};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

/// Builds and pulls what `plan` needs: service → image, and static site → build key (only the
/// sites this workflow starts are built).
pub(crate) async fn build_all(
    ctx: &Shared,
    source: &At<'_>,
    resolved: &Resolved,
    plan: &Plan,
) -> Result<(HashMap<String, String>, HashMap<String, String>), Failure> {
    let mut images: HashMap<String, String> = HashMap::new();
    // Static sites: service → the key of its build. Only those this workflow starts are built.
    let mut sites: HashMap<String, String> = HashMap::new();
    let started: HashSet<String> = plan.steps.iter().flat_map(|s| s.tasks()).map(|t| t.key()).collect();
    for s in &resolved.services {
        let image = match &s.build {
            Some(build) => build_image(ctx, source, Owner::Service(&s.name), build).await?,
            None if s.static_site.is_some() => {
                if !started.contains(&format!("services.{}", s.name)) {
                    continue;
                }
                let routing = routing_for(resolved, s);
                let key = crate::sites::build(ctx, source, s, &routing).await.map_err(|e| format!("service `{}`: {e}", s.name))?;
                sites.insert(s.name.clone(), key);
                continue;
            }
            None => {
                let image = s.image.clone().ok_or_else(|| format!("service `{}` has no image", s.name))?;
                if let Err(e) = ctx.rt.ensure_image(&image, source.auths).await {
                    set_service(ctx, source.env_id, &s.name, ServiceStatus::Failed, Some(&e.to_string()), ServiceDetail::new()).await;
                    return Err(format!("service `{}`: {e}", s.name).into());
                }
                image
            }
        };
        images.insert(s.name.clone(), image);
    }
    // Jobs with a build of their own: the cron jobs (they run between deployments) and the jobs
    // this workflow runs. Recorded, for a cron job's runs until the next deployment.
    for j in resolved.jobs.iter().filter(|j| started.contains(&format!("jobs.{}", j.name))).chain(&resolved.cron_jobs) {
        let Some(build) = &j.build else { continue };
        let image = build_image(ctx, source, Owner::Job(&j.name), build).await?;
        ctx.store.set_job_image(source.env_id, &j.name, &image).await?;
        images.insert(offshoot_manifests::job_image_key(&j.name), image);
    }
    Ok((images, sites))
}

/// What an image is built for: a service (whose record follows the build) or a job.
#[derive(Clone, Copy)]
enum Owner<'a> {
    Service(&'a str),
    Job(&'a str),
}

impl Owner<'_> {
    /// As messages name it.
    fn label(&self) -> String {
        match self {
            Owner::Service(n) => format!("service `{n}`"),
            Owner::Job(n) => format!("job `{n}`"),
        }
    }

    /// As its image's tag and build log name it.
    fn tag_name(&self) -> String {
        match self {
            Owner::Service(n) => (*n).to_owned(),
            Owner::Job(n) => format!("job-{n}"),
        }
    }

    /// Records a service's state (a job has no record).
    async fn set(&self, ctx: &Shared, env_id: &str, st: ServiceStatus, reason: Option<&str>) {
        if let Owner::Service(n) = self {
            set_service(ctx, env_id, n, st, reason, ServiceDetail::new()).await;
        }
    }
}

/// The image of a service or job built from a repository: its content tag, built unless the
/// engine has it.
async fn build_image(ctx: &Shared, source: &At<'_>, owner: Owner<'_>, b: &ResolvedBuild) -> Result<String, Failure> {
    let who = owner.label();
    // The build's repository: this app's, or another one (`builds[].repo_url`).
    let (mirror, commit) = match &b.repo {
        None => (source.mirror.clone(), source.commit.to_owned()),
        Some(url) => {
            // A path on the server only for an application an administrator made from one: a
            // template (from any branch) may not read the server's files.
            let local_app = matches!(offshoot_git::source::check(source.mirror.source(), true), Ok(offshoot_git::source::Source::Local(_)));
            offshoot_git::source::check(url, local_app).map_err(|e| format!("{who}: `repo_url`: {e}"))?;
            let m = ctx.sync_mirror(url).await.map_err(|e| format!("{who}: fetch `{url}`: {e}"))?;
            let (m2, wanted) = (m.clone(), b.repo_branch.clone());
            let c = tokio::task::spawn_blocking(move || {
                let branch = match wanted {
                    Some(b) => b,
                    None => m2.default_branch()?.ok_or_else(|| Failure::from("it has no default branch"))?,
                };
                m2.resolve(&branch)?.ok_or_else(|| Failure::from(format!("branch `{branch}` does not exist")))
            })
            .await?
            .map_err(|e| format!("{who}: `{url}`: {e}"))?;
            (m, c)
        }
    };
    let (m, c, dir) = (mirror.clone(), commit.clone(), b.context.clone());
    let tree = tokio::task::spawn_blocking(move || m.tree_id(&c, &dir))
        .await??
        .ok_or_else(|| format!("{who}: build context `{}` does not exist at {}", b.context, short(&commit)))?;
    let tag = content_tag(source.app, &owner.tag_name(), &tree, b);
    if !ctx.rt.image_exists(&tag).await? {
        owner.set(ctx, source.env_id, ServiceStatus::Building, None).await;
        let (m, c, dir) = (mirror.clone(), commit.clone(), b.context.clone());
        let context = tokio::task::spawn_blocking(move || m.archive(&c, &dir)).await??;
        let req = BuildRequest {
            tag: tag.clone(),
            context,
            dockerfile: b.dockerfile.clone().unwrap_or_else(|| "Dockerfile".into()),
            args: exposed(&b.args),
            target: b.target.clone(),
            // No labels: the engine's classic builder commits a layer for them (about 0.2 s of
            // every build), and the tag (`offshoot/<app>/<service>:<content>`) names the image.
            labels: BTreeMap::new(),
            auths: source.auths.clone(),
        };
        let log = Mutex::new(String::new());
        let result =
            ctx.rt.build(req, &|line| log.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push_str(&format!("{line}\n"))).await;
        let log = log.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
        logged("a build log", ctx.store.set_build_log(source.deployment, &owner.tag_name(), &log).await);
        if let Err(e) = result {
            let tail = match &e {
                offshoot_runtime::RuntimeError::BuildFailed { log_tail, .. } => format!("\n{log_tail}"),
                _ => String::new(),
            };
            owner.set(ctx, source.env_id, ServiceStatus::Failed, Some(&e.to_string())).await;
            return Err(format!("{who}: {e}{tail}").into());
        }
    }
    Ok(tag)
}

/// Tag of a built image: a hash of everything that goes into it.
fn content_tag(app: &str, service: &str, tree: &str, b: &ResolvedBuild) -> String {
    let mut h = Sha256::new();
    h.update(tree.as_bytes());
    h.update(b.dockerfile.as_deref().unwrap_or("Dockerfile").as_bytes());
    h.update(b.target.as_deref().unwrap_or("").as_bytes());
    for (k, v) in &b.args {
        h.update(format!("\0{k}={}", v.expose()).as_bytes());
    }
    let digest = crate::crypto::hex(&h.finalize()[..8]);
    format!("offshoot/{app}/{service}:{digest}")
}

fn short(c: &str) -> &str {
    c.get(..7).unwrap_or(c)
}
