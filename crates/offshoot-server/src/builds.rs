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
use offshoot_template::resolve::{Resolved, ResolvedBuild, ResolvedService};
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
            Some(build) => build_image(ctx, source, s, build).await?,
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
                if let Err(e) = ctx.rt.ensure_image(&image).await {
                    set_service(ctx, source.env_id, &s.name, ServiceStatus::Failed, Some(&e.to_string()), ServiceDetail::new()).await;
                    return Err(format!("service `{}`: {e}", s.name).into());
                }
                image
            }
        };
        images.insert(s.name.clone(), image);
    }
    Ok((images, sites))
}

/// The image of a service built from a repository: its content tag, built unless the engine has
/// it.
async fn build_image(ctx: &Shared, source: &At<'_>, s: &ResolvedService, b: &ResolvedBuild) -> Result<String, Failure> {
    // The build's repository: this app's, or another one (`builds[].repo_url`).
    let (mirror, commit) = match &b.repo {
        None => (source.mirror.clone(), source.commit.to_owned()),
        Some(url) => {
            let m = ctx.sync_mirror(url).await.map_err(|e| format!("service `{}`: fetch `{url}`: {e}", s.name))?;
            let (m2, wanted) = (m.clone(), b.repo_branch.clone());
            let c = tokio::task::spawn_blocking(move || {
                let branch = match wanted {
                    Some(b) => b,
                    None => m2.default_branch()?.ok_or_else(|| Failure::from("it has no default branch"))?,
                };
                m2.resolve(&branch)?.ok_or_else(|| Failure::from(format!("branch `{branch}` does not exist")))
            })
            .await?
            .map_err(|e| format!("service `{}`: `{url}`: {e}", s.name))?;
            (m, c)
        }
    };
    let (m, c, dir) = (mirror.clone(), commit.clone(), b.context.clone());
    let tree = tokio::task::spawn_blocking(move || m.tree_id(&c, &dir))
        .await??
        .ok_or_else(|| format!("service `{}`: build context `{}` does not exist at {}", s.name, b.context, short(&commit)))?;
    let tag = content_tag(source.app, &s.name, &tree, s);
    if !ctx.rt.image_exists(&tag).await? {
        set_service(ctx, source.env_id, &s.name, ServiceStatus::Building, None, ServiceDetail::new()).await;
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
        };
        let log = Mutex::new(String::new());
        let result =
            ctx.rt.build(req, &|line| log.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push_str(&format!("{line}\n"))).await;
        let log = log.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
        logged("a build log", ctx.store.set_build_log(source.deployment, &s.name, &log).await);
        if let Err(e) = result {
            let tail = match &e {
                offshoot_runtime::RuntimeError::BuildFailed { log_tail, .. } => format!("\n{log_tail}"),
                _ => String::new(),
            };
            set_service(ctx, source.env_id, &s.name, ServiceStatus::Failed, Some(&e.to_string()), ServiceDetail::new()).await;
            return Err(format!("service `{}`: {e}{tail}", s.name).into());
        }
    }
    Ok(tag)
}

/// Tag of a built image: a hash of everything that goes into it.
fn content_tag(app: &str, service: &str, tree: &str, s: &ResolvedService) -> String {
    let b = s.build.as_ref();
    let mut h = Sha256::new();
    h.update(tree.as_bytes());
    if let Some(b) = b {
        h.update(b.dockerfile.as_deref().unwrap_or("Dockerfile").as_bytes());
        h.update(b.target.as_deref().unwrap_or("").as_bytes());
        for (k, v) in &b.args {
            h.update(format!("\0{k}={}", v.expose()).as_bytes());
        }
    }
    let digest = crate::crypto::hex(&h.finalize()[..8]);
    format!("offshoot/{app}/{service}:{digest}")
}

fn short(c: &str) -> &str {
    c.get(..7).unwrap_or(c)
}
