//! Reading user files and repository directories, bounded and confined.

use anyhow::{Context as _, Result, bail};
use offshoot_template::envvars::normalize_repo_path;
use offshoot_template::repo::RepoFiles;
use offshoot_template::yaml::MAX_SOURCE_BYTES;
use std::io::Read as _;
use std::path::{Path, PathBuf};

/// Reads a text file of at most [`MAX_SOURCE_BYTES`].
pub(crate) fn read_text(path: &Path) -> Result<String> {
    let f = std::fs::File::open(path).with_context(|| format!("open `{}`", path.display()))?;
    let mut buf = Vec::new();
    f.take(MAX_SOURCE_BYTES as u64 + 1).read_to_end(&mut buf).with_context(|| format!("read `{}`", path.display()))?;
    if buf.len() > MAX_SOURCE_BYTES {
        bail!("`{}` is larger than {MAX_SOURCE_BYTES} bytes", path.display());
    }
    String::from_utf8(buf).with_context(|| format!("`{}` is not UTF-8 text", path.display()))
}

/// A repository working directory. Paths are confined to it: no absolute paths, no `..`
/// leaving it, no symbolic links pointing out of it.
pub(crate) struct DirFiles {
    root: PathBuf,
}

impl DirFiles {
    pub(crate) fn new(root: &Path) -> Result<Self> {
        let root = root.canonicalize().with_context(|| format!("open repository `{}`", root.display()))?;
        Ok(DirFiles { root })
    }
}

impl DirFiles {
    /// What is at a path of the directory (`.`: the directory itself), confined to it.
    pub(crate) fn kind(&self, path: &str) -> Option<offshoot_template::compose::PathKind> {
        use offshoot_template::compose::PathKind;
        let full = if path.split('/').all(|p| p.is_empty() || p == ".") {
            self.root.clone()
        } else {
            self.root.join(normalize_repo_path(path).ok()?).canonicalize().ok()?
        };
        if !full.starts_with(&self.root) {
            return None;
        }
        if full.is_dir() { Some(PathKind::Folder) } else { full.is_file().then_some(PathKind::File) }
    }
}

impl RepoFiles for DirFiles {
    fn read(&self, path: &str) -> Option<String> {
        let rel = normalize_repo_path(path).ok()?;
        let full = self.root.join(rel).canonicalize().ok()?;
        if !full.starts_with(&self.root) || !full.is_file() {
            return None;
        }
        read_text(&full).ok()
    }
}
