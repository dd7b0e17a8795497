//! Static sites (`static: true`): the build (the install and build commands in a builder
//! container, on the commit's tree at `build_base`, with the environment's variables), its
//! output stored content-addressed (`offshoot-sites`), and the sites the router serves.
//!
//! A build's key hashes everything that goes into it: the tree at `build_base`, the builder
//! image, the commands, the output directory and the variables' values (but the deployed
//! commit's, which change with every push). A site stored under that key is never built again.

use crate::failure::Failure;
use crate::state::Sites;
use crate::state::{Ctx, Shared, set_service};
use offshoot_api_types::ServiceStatus;
use offshoot_git::Mirror;
use offshoot_runtime::{ContainerSpec, Namespace, Role, Runtime as _};
use offshoot_sites::{Bucket, Fallback, Limits, Site};
use offshoot_store::{Routing, ServiceDetail};
use offshoot_template::envvars::VarValue;
use offshoot_template::resolve::{ResolvedService, StaticSite};
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Longest a static build may run.
const BUILD_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Sites no environment serves are kept this long (a branch built again soon reuses its site).
const KEEP_UNUSED: Duration = Duration::from_secs(24 * 3600);

impl Sites {
    pub(crate) fn new(bucket: Bucket, default_builder: String) -> Self {
        Sites { bucket: Arc::new(bucket), default_builder, live: Mutex::new(HashMap::new()) }
    }

    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Arc<Site>>> {
        self.live.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The key of a build.
fn site_key(tree: &str, builder: &str, st: &StaticSite, env: &BTreeMap<String, VarValue>) -> String {
    let mut h = Sha256::new();
    for part in [
        "offshoot-site-1",
        tree,
        builder,
        st.build_base.as_str(),
        st.install_command.as_deref().unwrap_or(""),
        st.build_command.as_deref().unwrap_or(""),
        st.output_directory.as_str(),
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    for (k, v) in env.iter().filter(|(k, _)| !crate::resolving::VOLATILE.contains(&k.as_str())) {
        h.update(k.as_bytes());
        h.update([b'=']);
        h.update(v.expose().as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..16])
}

/// The environment's volume for package managers' caches.
const CACHE_VOLUME: &str = "static-build-cache";

/// The build's variables: the environment's, and package managers' caches in `/cache` unless
/// the environment sets them.
fn build_env(env: &BTreeMap<String, VarValue>) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = env.iter().map(|(k, v)| (k.clone(), v.expose().to_owned())).collect();
    for (k, v) in [
        ("npm_config_cache", "/cache/npm"),
        ("YARN_CACHE_FOLDER", "/cache/yarn"),
        ("npm_config_store_dir", "/cache/pnpm"),
        ("XDG_CACHE_HOME", "/cache/xdg"),
    ] {
        out.entry(k.to_owned()).or_insert_with(|| v.to_owned());
    }
    out
}

/// A directory of the repository as written in the template: `''`, `.`, `./front-end/`, ...
fn clean_dir(d: &str) -> String {
    let d = d.trim().trim_start_matches("./").trim_matches('/');
    if d == "." { String::new() } else { d.to_owned() }
}

/// The script the builder runs: each command echoed, then run; the first failure stops it.
fn script(st: &StaticSite) -> String {
    let mut s = String::from("set -e\ncd /workspace\n");
    for cmd in [&st.install_command, &st.build_command].into_iter().flatten() {
        let shown = cmd.replace('\'', "'\\''");
        s.push_str(&format!("echo '$ {shown}'\n{cmd}\n"));
    }
    s
}

/// Secret values replaced by `****` in a build log.
fn masked(log: &str, env: &BTreeMap<String, VarValue>) -> String {
    let mut out = log.to_owned();
    for v in env.values().filter(|v| v.is_secret()) {
        let s = v.expose();
        if s.len() >= 4 {
            out = out.replace(s, "****");
        }
    }
    out
}

/// Where a build happens: the deployment, application, environment and commit.
pub(crate) struct At<'a> {
    pub(crate) deployment: &'a str,
    pub(crate) app: &'a str,
    pub(crate) env_id: &'a str,
    pub(crate) mirror: &'a Mirror,
    pub(crate) commit: &'a str,
    /// The application's registry credentials, for the images the builds pull.
    pub(crate) auths: &'a offshoot_runtime::RegistryAuths,
}

/// Builds (unless stored already) the static site of `s` at a commit; its key. While it
/// builds, and when the build fails, the service's record keeps its routes and the site it
/// served: the router goes on serving that site (a first build that fails answers 503).
pub(crate) async fn build(ctx: &Shared, at: &At<'_>, s: &ResolvedService, routing: &Routing) -> Result<String, Failure> {
    let before = ctx.store.services(at.env_id).await?.into_iter().find(|r| r.name == s.name);
    let before = before.map(|r| r.detail).unwrap_or_default();
    let detail = ServiceDetail {
        hostnames: s.hostnames.clone(),
        routing: Some(routing.clone()),
        site: before.site,
        fallback: before.fallback,
        ..ServiceDetail::new()
    };
    let r = build_site(ctx, at, s, &detail).await;
    if let Err(e) = &r {
        set_service(ctx, at.env_id, &s.name, ServiceStatus::Failed, Some(&e.to_string()), detail).await;
    }
    r
}

async fn build_site(ctx: &Shared, at: &At<'_>, s: &ResolvedService, detail: &ServiceDetail) -> Result<String, Failure> {
    let At { deployment, app, env_id, mirror, commit, auths } = *at;
    let st = s.static_site.as_ref().ok_or("not a static site")?;
    let sites = ctx.sites.as_ref().ok_or("static sites are not configured on this server")?;
    let base = clean_dir(&st.build_base);
    let (m, c, b) = (mirror.clone(), commit.to_owned(), base.clone());
    let tree = tokio::task::spawn_blocking(move || m.tree_id(&c, &b))
        .await??
        .ok_or_else(|| format!("`build_base` `{}` does not exist at {}", st.build_base, &commit[..commit.len().min(12)]))?;
    let builder = match ctx.store.app_git(app).await?.and_then(|g| g.static_builder) {
        Some(b) => b,
        None => sites.default_builder.clone(),
    };
    let key = site_key(&tree, &builder, st, &s.env);
    if sites.bucket.has_site(&key).await? {
        tracing::info!(env = %env_id, service = %s.name, site = %key, "static site unchanged; not rebuilt");
        return Ok(key);
    }
    set_service(ctx, env_id, &s.name, ServiceStatus::Building, Some(&format!("static build in `{builder}`")), detail.clone()).await;
    if let Err(e) = ctx.rt.ensure_image(&builder, auths).await {
        return Err(format!("{e} (the static builder; choose another with `offshoot app set {app} --static-builder IMAGE`)").into());
    }
    let (m, c, b) = (mirror.clone(), commit.to_owned(), base.clone());
    let files = tokio::task::spawn_blocking(move || m.archive_under(&c, &b, "workspace/")).await??;
    let ns = Namespace::new(env_id, app, &ctx.instance);
    let spec = ContainerSpec {
        // `.` cannot be in a service's name: this never names another container.
        name: format!("offshoot-{env_id}-{}.build", s.name),
        service: s.name.clone(),
        role: Role::Build,
        image: builder.clone(),
        entrypoint: Some(vec!["/bin/sh".into(), "-c".into()]),
        cmd: Some(vec![script(st)]),
        env: build_env(&s.env),
        ports: vec![],
        // Package managers' caches outlive a build: the next build of this environment
        // downloads only what changed. The volume goes with the environment.
        mounts: vec![offshoot_runtime::Mount {
            source: offshoot_runtime::MountSource::Volume(CACHE_VOLUME.into()),
            target: "/cache".into(),
        }],
        cpu_millis: None,
        memory_bytes: None,
        cpu_request_millis: None,
        memory_request_bytes: None,
        volatile_env: Default::default(),
    };
    let out_dir = clean_dir(&st.output_directory);
    let collect = if out_dir.is_empty() { "/workspace".to_owned() } else { format!("/workspace/{out_dir}") };
    let tmp = ctx.data_dir.join("tmp");
    tokio::fs::create_dir_all(&tmp).await.map_err(|e| format!("create {}: {e}", tmp.display()))?;
    let archive = tmp.join(format!("site-{env_id}-{}-{key}.tar", s.name));
    let ran = ctx.rt.run_collect(&ns, &spec, files, &collect, &archive, BUILD_TIMEOUT).await;
    let result = async {
        let (done, found) = ran?;
        let log = masked(&done.logs, &s.env);
        crate::state::logged("a build log", ctx.store.set_build_log(deployment, &s.name, &log).await);
        if done.exit_code != 0 {
            return Err(Failure::Reason(format!("the static build exited with code {}:\n{}", done.exit_code, last_lines(&log, 15).join("\n"))));
        }
        if !found {
            return Err(Failure::Reason(format!(
                "the static build left no `{}` (build_output_directory) in `{}`",
                st.output_directory,
                if base.is_empty() { "the repository's root" } else { &base }
            )));
        }
        let file = std::fs::File::open(&archive).map_err(|e| Failure::Reason(format!("open {}: {e}", archive.display())))?;
        let (manifest, report) = offshoot_sites::ingest_tar(&sites.bucket, &key, std::io::BufReader::new(file), Limits::default())
            .await?;
        let mut summary = format!(
            "\nstored {} files ({} bytes): {} new blobs, {} already stored, {} served compressed",
            report.files, report.bytes, report.stored, report.reused, report.compressed
        );
        if !report.skipped.is_empty() {
            summary.push_str(&format!("; left out (not regular files): {}", report.skipped.join(", ")));
        }
        crate::state::logged("a build log", ctx.store.set_build_log(deployment, &s.name, &format!("{log}{summary}\n")).await);
        tracing::info!(env = %env_id, service = %s.name, site = %manifest.key, files = report.files, new = report.stored, "static site built");
        Ok(key.clone())
    }
    .await;
    if let Err(e) = tokio::fs::remove_file(&archive).await
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(file = %archive.display(), error = %e, "cannot remove a static build's archive; the next start removes it");
    }
    result
}

/// A site as the router's content.
#[derive(Debug)]
pub(crate) struct Served(pub(crate) Arc<Site>);

impl offshoot_router::Content for Served {
    fn serve<'a>(
        &'a self,
        method: &'a hyper::Method,
        path: &'a str,
        headers: &'a hyper::HeaderMap,
    ) -> std::pin::Pin<Box<dyn Future<Output = hyper::Response<offshoot_router::ProxyBody>> + Send + 'a>> {
        Box::pin(self.0.serve(method, path, headers))
    }
}

/// The site a service serves, for the router: the one made before when the key is the same,
/// else a new one that keeps the previous build's fingerprinted assets reachable.
pub(crate) async fn site(ctx: &Ctx, env_id: &str, service: &str, key: &str, fallback: Option<&str>) -> Result<Arc<Site>, Failure> {
    let sites = ctx.sites.as_ref().ok_or("static sites are not configured on this server")?;
    let id = (env_id.to_owned(), service.to_owned());
    let previous = sites.live().get(&id).cloned();
    if let Some(p) = &previous
        && p.key() == key
    {
        return Ok(p.clone());
    }
    if !offshoot_sites::valid_key(key) {
        return Err(format!("`{key}` is not a site").into());
    }
    let manifest = sites
        .bucket
        .manifest(key)
        .await?
        .ok_or_else(|| format!("site `{key}` is missing from the static site storage; deploy again to rebuild it"))?;
    let fallback = Fallback::parse(fallback)?;
    let site = Arc::new(Site::new(sites.bucket.clone(), &manifest, previous.as_deref(), &fallback));
    sites.live().insert(id, site.clone());
    Ok(site)
}

/// Forgets the sites of environments that are gone.
pub(crate) fn retain(ctx: &Ctx, serving: &HashSet<(String, String)>) {
    if let Some(sites) = &ctx.sites {
        sites.live().retain(|k, _| serving.contains(k));
    }
}

/// The static sites' garbage collector, a loop of the server: on its first round it removes the
/// output archives of builds a crash interrupted; every round (hourly) it deletes the sites no
/// environment serves (after a day) and the files only they held.
pub(crate) struct SiteGc {
    pub(crate) store: offshoot_store::Store,
    pub(crate) bucket: Arc<Bucket>,
    /// The environments' operations: a build under way may count on a stored file that no kept
    /// site names yet.
    pub(crate) locks: crate::state::Locks,
    /// Where static builds leave their output archives.
    pub(crate) tmp: std::path::PathBuf,
    pub(crate) swept: bool,
}

/// How often the static sites' garbage is collected.
pub(crate) const GC_EVERY: Duration = Duration::from_secs(3600);

impl crate::background::Periodic for SiteGc {
    const NAME: &'static str = "static site gc";

    async fn round(&mut self) -> Result<(), Failure> {
        if !self.swept {
            self.swept = true;
            sweep_archives(&self.tmp).await;
        }
        if self.locks.any_busy() {
            tracing::debug!("static sites: a deployment is running; garbage collection waits for the next round");
            return Ok(());
        }
        let mut keep = HashSet::new();
        // Deleted environments keep their rows, not their sites.
        for env in self.store.envs(None, false).await? {
            keep.extend(self.store.services(&env.id).await?.into_iter().filter_map(|s| s.detail.site));
        }
        let gc = self.bucket.collect_garbage(&keep, KEEP_UNUSED).await.map_err(|e| format!("static sites: garbage collection: {e}"))?;
        if gc.sites_deleted + gc.blobs_deleted > 0 {
            tracing::info!(?gc, "static sites: garbage collected");
        }
        Ok(())
    }
}

/// Removes the output archives of builds a crash interrupted.
async fn sweep_archives(tmp: &std::path::Path) {
    let Ok(mut dir) = tokio::fs::read_dir(tmp).await else { return };
    while let Ok(Some(e)) = dir.next_entry().await {
        if e.file_name().to_string_lossy().starts_with("site-")
            && let Err(err) = tokio::fs::remove_file(e.path()).await
        {
            tracing::warn!(file = %e.path().display(), error = %err, "cannot remove a static build's leftover archive");
        }
    }
}

pub(crate) fn tail(s: &str, lines: usize) -> String {
    last_lines(s, lines).join(" | ")
}

/// The last `n` lines of a log.
pub(crate) fn last_lines(s: &str, n: usize) -> Vec<&str> {
    let all: Vec<&str> = s.lines().collect();
    all[all.len().saturating_sub(n)..].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st() -> StaticSite {
        StaticSite {
            build_base: "front-end".into(),
            install_command: Some("npm install".into()),
            build_command: Some("npm run build".into()),
            output_directory: "dist/".into(),
            fallback: None,
        }
    }

    #[test]
    fn keys_change_with_inputs_but_not_the_commit() {
        let env = |url: &str, sha: &str| {
            BTreeMap::from([
                ("API_URL".to_owned(), VarValue::Plain(url.into())),
                ("RELEASE_COMMIT_SHA".to_owned(), VarValue::Plain(sha.into())),
            ])
        };
        let k = site_key("t1", "node:22", &st(), &env("http://a", "c1"));
        assert_eq!(k, site_key("t1", "node:22", &st(), &env("http://a", "c2")));
        assert_ne!(k, site_key("t2", "node:22", &st(), &env("http://a", "c1")));
        assert_ne!(k, site_key("t1", "node:20", &st(), &env("http://a", "c1")));
        assert_ne!(k, site_key("t1", "node:22", &st(), &env("http://b", "c1")));
        assert_ne!(
            k,
            site_key("t1", "node:22", &StaticSite { build_command: Some("npm run build:prod".into()), ..st() }, &env("http://a", "c1"))
        );
        assert!(offshoot_sites::valid_key(&k));
    }

    #[test]
    fn scripts_and_masks() {
        let s = script(&st());
        assert_eq!(s, "set -e\ncd /workspace\necho '$ npm install'\nnpm install\necho '$ npm run build'\nnpm run build\n");
        let quoted = script(&StaticSite { install_command: None, build_command: Some("echo 'hi'".into()), ..st() });
        assert!(quoted.contains("echo '$ echo '\\''hi'\\'''\necho 'hi'\n"), "{quoted}");
        let env = BTreeMap::from([("TOKEN".to_owned(), VarValue::Secret(offshoot_template::secret::SecretString::new("s3cr3t-value")))]);
        assert_eq!(masked("token is s3cr3t-value.", &env), "token is ****.");
        assert_eq!(clean_dir("./front-end/"), "front-end");
        assert_eq!(clean_dir(""), "");
        assert_eq!(clean_dir("."), "");
        let vars = build_env(&BTreeMap::from([("XDG_CACHE_HOME".to_owned(), VarValue::Plain("/mine".into()))]));
        assert_eq!((vars["XDG_CACHE_HOME"].as_str(), vars["npm_config_cache"].as_str()), ("/mine", "/cache/npm"));
    }
}
