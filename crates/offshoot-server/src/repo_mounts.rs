//! Repository files mounted into services (`configmap`) on the Docker engine, beside the file
//! secrets ([`crate::secret_files`]). Each entry's file
//! or folder, read from the deployed commit's tree (bounded, confined to the repository), is
//! written under `DATA_DIR/mounts/<env>/<digest of its content>/` and mounted read-only. The
//! path names the content: a commit that changes the files changes the container's
//! configuration, and the service is replaced; one that does not leaves it alone. The folder of
//! an environment goes with its teardown.

use crate::failure::Failure;
use crate::state::Ctx;
use offshoot_git::{ItemKind, Mirror, TreeItem};
use offshoot_runtime::{Mount, MountSource};
use offshoot_template::model::ConfigMapFile;
use offshoot_template::resolve::Resolved;
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Most content one `configmap` entry mounts: configuration, not data.
pub(crate) const MAX_MOUNT_BYTES: u64 = 16 << 20;

/// Where an environment's mounted files are kept.
pub(crate) fn env_dir(ctx: &Ctx, env_id: &str) -> PathBuf {
    ctx.data_dir.join("mounts").join(env_id)
}

/// One `configmap` entry of a service, read from the deployed commit.
pub(crate) struct Entry<'r> {
    pub(crate) service: &'r str,
    pub(crate) file: &'r ConfigMapFile,
    pub(crate) item: TreeItem,
}

/// Every `configmap` entry of `resolved`'s services (static sites aside), read from `commit` of
/// `mirror`: within the repository, without `..`, at most [`MAX_MOUNT_BYTES`], present at the
/// commit, and not itself a symbolic link (an engine would follow it on this machine; links
/// inside a folder are resolved in the container). Errors name the service, the entry and the
/// commit.
pub(crate) async fn read<'r>(mirror: &Mirror, commit: &str, resolved: &'r Resolved) -> Result<Vec<Entry<'r>>, Failure> {
    let mut out = Vec::new();
    for s in resolved.services.iter().filter(|s| s.static_site.is_none()) {
        for f in &s.configmap {
            let what = || format!("service `{}`: configmap `{}`", s.name, f.name.value);
            let path = f.source().value.clone();
            if path.split('/').any(|p| p == "..") {
                return Err(format!("{}: `{path}` must not contain `..`", what()).into());
            }
            let (m, c, p) = (mirror.clone(), commit.to_owned(), path.clone());
            let item = tokio::task::spawn_blocking(move || m.read_item(&c, &p, MAX_MOUNT_BYTES))
                .await?
                .map_err(|e| format!("{}: {e}", what()))?
                .ok_or_else(|| format!("{}: `{path}` is not in the repository at commit {}", what(), short(commit)))?;
            if matches!(&item, TreeItem::File(f) if f.kind == ItemKind::Symlink) {
                return Err(format!("{}: `{path}` is a symbolic link; name the file or folder it points to", what()).into());
            }
            out.push(Entry { service: &s.name, file: f, item });
        }
    }
    Ok(out)
}

/// The `configmap` mounts of every service of `resolved` on the Docker engine, their files
/// written for `env_id` from `commit` of `mirror`: service → mounts.
pub(crate) async fn materialize(
    ctx: &Ctx,
    env_id: &str,
    mirror: &Mirror,
    commit: &str,
    resolved: &Resolved,
) -> Result<HashMap<String, Vec<Mount>>, Failure> {
    let mut out: HashMap<String, Vec<Mount>> = HashMap::new();
    let root = std::path::absolute(env_dir(ctx, env_id)).map_err(|e| format!("the data directory: {e}"))?;
    for e in read(mirror, commit, resolved).await? {
        let what = format!("service `{}`: configmap `{}`", e.service, e.file.name.value);
        let (r, item) = (root.clone(), e.item);
        let source =
            tokio::task::spawn_blocking(move || write(&r, &item)).await?.map_err(|err| format!("{what}: cannot write its files: {err}"))?;
        out.entry(e.service.to_owned()).or_default().push(Mount { source: MountSource::HostFile(source), target: e.file.target() });
    }
    // And the application's file secrets, written to memory.
    for (service, mounts) in crate::secret_files::materialize(ctx, env_id, resolved).await? {
        out.entry(service).or_default().extend(mounts);
    }
    Ok(out)
}

fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

/// The digest of an item's content: its files' paths, kinds and bytes.
fn digest(item: &TreeItem) -> String {
    let mut h = Sha256::new();
    let files = match item {
        TreeItem::File(f) => std::slice::from_ref(f),
        TreeItem::Dir(files) => {
            h.update(b"dir\0");
            files.as_slice()
        }
    };
    for f in files {
        let kind: &[u8] = match f.kind {
            ItemKind::File { executable: false } => b"f",
            ItemKind::File { executable: true } => b"x",
            ItemKind::Symlink => b"l",
        };
        h.update(kind);
        h.update((f.path.len() as u64).to_le_bytes());
        h.update(f.path.as_bytes());
        h.update((f.data.len() as u64).to_le_bytes());
        h.update(&f.data);
    }
    crate::crypto::hex(&h.finalize()[..12])
}

/// Writes `item` under `root/<digest>/` unless it is there already (written whole into a
/// temporary folder, then renamed); returns the path to mount: the file, or the folder.
fn write(root: &Path, item: &TreeItem) -> std::io::Result<String> {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = root.join(digest(item));
    let mounted = |d: &Path| match item {
        TreeItem::File(_) => d.join("file"),
        TreeItem::Dir(_) => d.join("tree"),
    };
    if !dir.exists() {
        std::fs::create_dir_all(root)?;
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = root.join(format!(".partial-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir(&tmp)?;
        let put = |path: &Path, f: &offshoot_git::ItemFile| -> std::io::Result<()> {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
                std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755))?;
            }
            match f.kind {
                ItemKind::Symlink => std::os::unix::fs::symlink(String::from_utf8_lossy(&f.data).as_ref(), path),
                ItemKind::File { executable } => {
                    std::fs::write(path, &f.data)?;
                    std::fs::set_permissions(path, std::fs::Permissions::from_mode(if executable { 0o755 } else { 0o644 }))
                }
            }
        };
        match item {
            TreeItem::File(f) => put(&tmp.join("file"), f)?,
            TreeItem::Dir(files) => {
                std::fs::create_dir_all(tmp.join("tree"))?;
                for f in files {
                    put(&tmp.join("tree").join(&f.path), f)?;
                }
            }
        }
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
        if let Err(e) = std::fs::rename(&tmp, &dir) {
            // Another deployment wrote the same content meanwhile: theirs is as good.
            let _ = std::fs::remove_dir_all(&tmp);
            if !dir.exists() {
                return Err(e);
            }
        }
    }
    Ok(mounted(&dir).to_string_lossy().into_owned())
}

/// Removes an environment's mounted files and secret files (its teardown).
pub(crate) async fn remove(ctx: &Ctx, env_id: &str) -> std::io::Result<()> {
    crate::secret_files::remove(ctx, env_id).await?;
    let dir = env_dir(ctx, env_id);
    match tokio::fs::remove_dir_all(&dir).await {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The environments that have mounted files or secret files written (for the reconciler's
/// orphan sweep).
pub(crate) fn on_disk(ctx: &Ctx) -> Vec<String> {
    let mut envs: Vec<String> = std::fs::read_dir(ctx.data_dir.join("mounts"))
        .map(|rd| rd.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect())
        .unwrap_or_default();
    envs.extend(crate::secret_files::on_disk(ctx).into_iter().filter(|e| !e.starts_with('.')));
    envs.sort();
    envs.dedup();
    envs
}

#[cfg(test)]
mod tests {
    use super::*;
    use offshoot_git::ItemFile;

    fn file(path: &str, data: &str) -> ItemFile {
        ItemFile { path: path.into(), kind: ItemKind::File { executable: false }, data: data.as_bytes().to_vec() }
    }

    #[test]
    fn content_names_the_folder_and_is_written_once() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let one = TreeItem::File(file("", "listen 80;\n"));
        let a = write(tmp.path(), &one).expect("write");
        assert!(a.ends_with("/file"), "{a}");
        assert_eq!(std::fs::read_to_string(&a).expect("read"), "listen 80;\n");
        assert_eq!(write(tmp.path(), &one).expect("again"), a, "the same content, the same path");
        let other = write(tmp.path(), &TreeItem::File(file("", "listen 81;\n"))).expect("write");
        assert_ne!(other, a);
        let tree = TreeItem::Dir(vec![file("a.conf", "a"), file("sub/b.conf", "b")]);
        let d = write(tmp.path(), &tree).expect("write");
        assert!(d.ends_with("/tree"), "{d}");
        assert_eq!(std::fs::read_to_string(Path::new(&d).join("sub/b.conf")).expect("read"), "b");
        // A folder of one file is not that file.
        assert_ne!(digest(&TreeItem::Dir(vec![file("", "a")])), digest(&TreeItem::File(file("", "a"))));
        // Nothing half-written is left.
        let names: Vec<String> =
            std::fs::read_dir(tmp.path()).expect("list").filter_map(|e| e.ok()?.file_name().into_string().ok()).collect();
        assert!(names.iter().all(|n| !n.starts_with(".partial")), "{names:?}");
    }

    #[test]
    fn an_entry_mounts_at_its_path_or_under_etc() {
        use offshoot_template::span::Sp;
        let text = |s: &str| Sp::synthetic(s.to_owned());
        let mut f = ConfigMapFile { name: text("grafana-ini"), mount_path: None, repo_path: Some(text("././src/grafana/grafana.ini")) };
        assert_eq!(f.target(), "/etc/grafana.ini");
        f.mount_path = Some(text("/etc/grafana/grafana.ini"));
        assert_eq!(f.target(), "/etc/grafana/grafana.ini");
        let g = ConfigMapFile { name: text("site"), mount_path: None, repo_path: None };
        assert_eq!((g.source().as_str(), g.target().as_str()), ("site", "/etc/site"));
        let all = ConfigMapFile { name: text("repository"), mount_path: None, repo_path: Some(text(".")) };
        assert_eq!(all.target(), "/etc/repository");
    }
}
