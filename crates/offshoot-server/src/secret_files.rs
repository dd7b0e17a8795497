//! File secrets (a service's `secret_files`, compose's `secrets`) on the Docker engine. Each
//! value is written to memory, never to disk: under `/dev/shm/offshoot-<instance>/<env>/`,
//! in a folder named by a keyed fingerprint of the value and how it is mounted (so a changed
//! value changes the container's configuration and replaces the service, and the name says
//! nothing of the value), with its mode and owner, and mounted read-only. They go with the
//! environment's teardown; after a reboot the deployment or the reconciler writes them again.

use crate::failure::Failure;
use crate::state::Ctx;
use offshoot_runtime::{Mount, MountSource};
use offshoot_template::resolve::{Resolved, ResolvedSecretFile};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Where this server keeps file secrets: memory (`/dev/shm`), or its data directory on a
/// machine without one (said once at start).
pub(crate) fn root(ctx: &Ctx) -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() { shm.join(format!("offshoot-{}", ctx.instance)) } else { ctx.data_dir.join("secret-files") }
}

/// The file secrets of every service of `resolved`, written for `env_id`: service → mounts.
pub(crate) async fn materialize(ctx: &Ctx, env_id: &str, resolved: &Resolved) -> Result<HashMap<String, Vec<Mount>>, Failure> {
    let mut out: HashMap<String, Vec<Mount>> = HashMap::new();
    let dir = root(ctx).join(env_id);
    for s in resolved.services.iter().filter(|s| s.static_site.is_none()) {
        for f in &s.secret_files {
            let what = format!("service `{}`: secret file `{}`", s.name, f.name);
            let value = f.value.as_ref().ok_or_else(|| format!("{what}: the application has no file secret `{}`", f.name))?;
            let print = ctx.key.fingerprint(&fingerprinted(f, value.expose()));
            let (d, f2, v) = (dir.clone(), f.clone(), value.expose().to_owned());
            let path = tokio::task::spawn_blocking(move || write(&d.join(print), &f2, &v))
                .await?
                .map_err(|e| format!("{what}: cannot write it: {e}"))?;
            out.entry(s.name.clone()).or_default().push(Mount { source: MountSource::HostFile(path), target: f.target.clone() });
        }
    }
    Ok(out)
}

/// What a secret file's folder is named after: its value and how it is mounted.
fn fingerprinted(f: &ResolvedSecretFile, value: &str) -> Vec<u8> {
    format!("{}\0{}\0{:o}\0{:?}\0{:?}\0{value}", f.name, f.target, f.mode, f.uid, f.gid).into_bytes()
}

/// Writes the file into `dir` unless it is there (whole, then renamed into place); the path
/// to mount.
fn write(dir: &Path, f: &ResolvedSecretFile, value: &str) -> std::io::Result<String> {
    use std::os::unix::fs::PermissionsExt as _;
    let file = dir.join("secret");
    if !dir.exists() {
        let parent = dir.parent().unwrap_or(dir);
        std::fs::create_dir_all(parent)?;
        std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o700))?;
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = parent.join(format!(".partial-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir(&tmp)?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o700))?;
        crate::crypto::write_private(&tmp.join("secret"), value.as_bytes()).map_err(std::io::Error::other)?;
        std::fs::set_permissions(tmp.join("secret"), std::fs::Permissions::from_mode(f.mode))?;
        if f.uid.is_some() || f.gid.is_some() {
            std::os::unix::fs::chown(tmp.join("secret"), f.uid, f.gid)?;
        }
        if let Err(e) = std::fs::rename(&tmp, dir) {
            let _ = std::fs::remove_dir_all(&tmp);
            if !dir.exists() {
                return Err(e);
            }
        }
    }
    Ok(file.to_string_lossy().into_owned())
}

/// Removes an environment's secret files (its teardown).
pub(crate) async fn remove(ctx: &Ctx, env_id: &str) -> std::io::Result<()> {
    match tokio::fs::remove_dir_all(root(ctx).join(env_id)).await {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The environments that have secret files written (for the reconciler's orphan sweep).
pub(crate) fn on_disk(ctx: &Ctx) -> Vec<String> {
    std::fs::read_dir(root(ctx)).map(|rd| rd.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use offshoot_template::secret::SecretString;

    fn secret(mode: u32) -> ResolvedSecretFile {
        ResolvedSecretFile {
            name: "db_pass".into(),
            target: "/run/secrets/db_pass".into(),
            mode,
            uid: None,
            gid: None,
            value: Some(SecretString::new("s3cret")),
        }
    }

    #[test]
    fn written_once_with_its_mode_and_nothing_half_written() {
        use std::os::unix::fs::PermissionsExt as _;
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("env1").join("abc");
        let path = write(&dir, &secret(0o400), "s3cret").expect("write");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "s3cret");
        assert_eq!(std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777, 0o400);
        assert_eq!(std::fs::metadata(tmp.path().join("env1")).expect("stat").permissions().mode() & 0o777, 0o700);
        assert_eq!(write(&dir, &secret(0o400), "s3cret").expect("again"), path);
        let names: Vec<String> =
            std::fs::read_dir(tmp.path().join("env1")).expect("list").filter_map(|e| e.ok()?.file_name().into_string().ok()).collect();
        assert_eq!(names, ["abc"]);
    }

    #[test]
    fn the_fingerprinted_bytes_change_with_the_value_and_the_mode() {
        let a = fingerprinted(&secret(0o400), "one");
        assert_ne!(a, fingerprinted(&secret(0o400), "two"));
        assert_ne!(a, fingerprinted(&secret(0o440), "one"));
    }
}
