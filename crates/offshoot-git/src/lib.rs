//! Repositories, read through gix: a bare mirror per application in the data directory,
//! fetched on demand; branches resolved to commits; files and build contexts read from a
//! commit's tree (never from a working copy). Blocking: call it from `spawn_blocking`.
//! Local paths are fetched through `git upload-pack`, so `git` must be installed.

pub mod hooks;
pub mod source;

use offshoot_template::envvars::normalize_repo_path;
use offshoot_template::repo::RepoFiles;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

/// Largest configuration file read from a repository.
pub const MAX_FILE_BYTES: u64 = 2 * 1024 * 1024;
/// Largest build context exported from a repository.
pub const MAX_CONTEXT_BYTES: u64 = 1024 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GitError {
    #[error("cannot fetch `{source_url}`: {message}")]
    Fetch { source_url: String, message: String },
    #[error("cannot read repository `{}`: {message}", path.display())]
    Open { path: PathBuf, message: String },
    #[error("`{name}` is not a commit of this repository")]
    UnknownCommit { name: String },
    #[error("`{path}` at {commit}: {message}")]
    Read { commit: String, path: String, message: String },
    #[error("`{path}` at {commit} is larger than {limit} bytes")]
    TooLarge { commit: String, path: String, limit: u64 },
    #[error("`{path}` is not a path inside the repository: {message}")]
    BadPath { path: String, message: String },
}

pub type Result<T> = std::result::Result<T, GitError>;

/// A bare mirror of a repository.
#[derive(Clone, Debug)]
pub struct Mirror {
    path: PathBuf,
    source: String,
}

fn open_err(path: &Path, e: impl std::fmt::Display) -> GitError {
    GitError::Open { path: path.to_owned(), message: e.to_string() }
}

impl Mirror {
    /// Mirrors `source` (a path or URL) into `dest`, cloning on first use and fetching after.
    /// The clone goes to a temporary directory renamed into place, so an interrupted clone
    /// leaves nothing half-made behind.
    pub fn sync(source: &str, dest: &Path) -> Result<Mirror> {
        let mirror = Mirror { path: dest.to_owned(), source: source.to_owned() };
        if dest.join("HEAD").exists() {
            mirror.fetch()?;
            return Ok(mirror);
        }
        mirror.may_connect()?;
        let fetch_err = |e: &dyn std::fmt::Display| GitError::Fetch { source_url: source.to_owned(), message: e.to_string() };
        let tmp = dest.with_extension("partial");
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(|e| open_err(&tmp, e))?;
        }
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|e| open_err(parent, e))?;
        }
        let mut prep = gix::prepare_clone_bare(source, &tmp).map_err(|e| fetch_err(&e))?;
        prep.fetch_only(gix::progress::Discard, &AtomicBool::new(false)).map_err(|e| fetch_err(&e))?;
        drop(prep);
        std::fs::rename(&tmp, dest).map_err(|e| open_err(dest, e))?;
        Ok(mirror)
    }

    /// Opens an existing mirror without fetching.
    pub fn open(dest: &Path) -> Result<Mirror> {
        let repo = gix::open(dest).map_err(|e| open_err(dest, e))?;
        let source = repo
            .find_remote("origin")
            .ok()
            .and_then(|r| r.url(gix::remote::Direction::Fetch).map(|u| u.to_bstring().to_string()))
            .unwrap_or_default();
        Ok(Mirror { path: dest.to_owned(), source })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn repo(&self) -> Result<gix::Repository> {
        gix::open(&self.path).map_err(|e| open_err(&self.path, e))
    }

    /// Checks the source before any connection: its form (`source::check`), and for a URL what
    /// its host resolves to now.
    fn may_connect(&self) -> Result<()> {
        let refused = |e: source::SourceError| GitError::Fetch { source_url: self.source.clone(), message: e.to_string() };
        match source::check(&self.source, true).map_err(refused)? {
            source::Source::Local(_) => Ok(()),
            source::Source::Remote { url, host } => source::check_resolved(&url, &host).map_err(refused),
        }
    }

    /// The location it is fetched from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Fetches every branch and tag from the source.
    pub fn fetch(&self) -> Result<()> {
        // A bare mirror keeps the source's branches as its own.
        self.fetch_refs(&["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"]).map(|_| ())
    }

    /// Fetches `refspecs` from the source; how many refs they matched.
    fn fetch_refs(&self, refspecs: &[&str]) -> Result<usize> {
        self.may_connect()?;
        let fetch_err = |e: &dyn std::fmt::Display| GitError::Fetch { source_url: self.source.clone(), message: e.to_string() };
        let repo = self.repo()?;
        let remote = repo
            .find_remote("origin")
            .map_err(|e| fetch_err(&e))?
            .with_refspecs(refspecs.iter().copied(), gix::remote::Direction::Fetch)
            .map_err(|e| fetch_err(&e))?;
        let conn = remote.connect(gix::remote::Direction::Fetch).map_err(|e| fetch_err(&e))?;
        let prepared = conn.prepare_fetch(gix::progress::Discard, Default::default()).map_err(|e| fetch_err(&e))?;
        let outcome = prepared.receive(gix::progress::Discard, &AtomicBool::new(false)).map_err(|e| fetch_err(&e))?;
        Ok(outcome.ref_map.mappings.len())
    }

    /// Fetches one pull request's head (`refs/pull/N/head`, `refs/merge-requests/N/head`: a
    /// fork's commits, which the base repository keeps there) into the same ref of the mirror.
    pub fn fetch_pull(&self, reference: &str) -> Result<()> {
        let refused = |message: String| GitError::Fetch { source_url: self.source.clone(), message };
        if !hooks::is_pull_ref(reference) {
            return Err(refused(format!("`{reference}` is not a pull request's head")));
        }
        if self.fetch_refs(&[format!("+{reference}:{reference}").as_str()])? == 0 {
            return Err(refused(format!("the repository has no `{reference}`")));
        }
        Ok(())
    }

    /// Branch names (without `refs/heads/`), sorted.
    pub fn branches(&self) -> Result<Vec<String>> {
        let repo = self.repo()?;
        let refs = repo.references().map_err(|e| open_err(&self.path, e))?;
        let mut out = Vec::new();
        for r in refs.all().map_err(|e| open_err(&self.path, e))?.flatten() {
            let name = r.name().as_bstr().to_string();
            let short = name.strip_prefix("refs/remotes/origin/").or_else(|| name.strip_prefix("refs/heads/"));
            if let Some(b) = short.filter(|b| *b != "HEAD")
                && !out.iter().any(|o| o == b)
            {
                out.push(b.to_owned());
            }
        }
        out.sort();
        Ok(out)
    }

    /// Every branch and tag with the commit it points to: (`refs/heads/...` or `refs/tags/...`,
    /// commit), sorted.
    pub fn heads(&self) -> Result<Vec<(String, String)>> {
        let repo = self.repo()?;
        let refs = repo.references().map_err(|e| open_err(&self.path, e))?;
        let mut out = Vec::new();
        for mut r in refs.all().map_err(|e| open_err(&self.path, e))?.flatten() {
            let name = r.name().as_bstr().to_string();
            if !(name.starts_with("refs/heads/") || name.starts_with("refs/tags/")) {
                continue;
            }
            if let Ok(id) = r.peel_to_commit() {
                out.push((name, id.id.to_string()));
            }
        }
        out.sort();
        Ok(out)
    }

    /// The commit a tag points to, or `None` if there is no such tag.
    pub fn resolve_tag(&self, tag: &str) -> Result<Option<String>> {
        let repo = self.repo()?;
        match repo.find_reference(format!("refs/tags/{tag}").as_str()) {
            Ok(mut r) => Ok(Some(r.peel_to_commit().map_err(|e| open_err(&self.path, e))?.id.to_string())),
            Err(_) => Ok(None),
        }
    }

    /// The source's default branch (what its HEAD points to).
    pub fn default_branch(&self) -> Result<Option<String>> {
        let repo = self.repo()?;
        for name in ["refs/remotes/origin/HEAD", "HEAD"] {
            if let Ok(r) = repo.find_reference(name)
                && let Some(target) = r.target().try_name()
            {
                let t = target.as_bstr().to_string();
                let b = t.strip_prefix("refs/remotes/origin/").or_else(|| t.strip_prefix("refs/heads/")).unwrap_or(&t).to_owned();
                if self.resolve(&b)?.is_some() {
                    return Ok(Some(b));
                }
            }
        }
        Ok(None)
    }

    /// The commit a branch points to, or `None` if there is no such branch.
    pub fn resolve(&self, branch: &str) -> Result<Option<String>> {
        let repo = self.repo()?;
        // A pull request from a fork is followed at the ref its head was fetched to.
        let names = if hooks::is_pull_ref(branch) {
            vec![branch.to_owned()]
        } else {
            vec![format!("refs/remotes/origin/{branch}"), format!("refs/heads/{branch}")]
        };
        for name in names {
            if let Ok(mut r) = repo.find_reference(name.as_str()) {
                let id = r.peel_to_id().map_err(|e| open_err(&self.path, e))?;
                return Ok(Some(id.to_string()));
            }
        }
        Ok(None)
    }

    fn tree_at<'r>(&self, repo: &'r gix::Repository, commit: &str) -> Result<gix::Tree<'r>> {
        let unknown = || GitError::UnknownCommit { name: commit.to_owned() };
        let id = gix::ObjectId::from_hex(commit.as_bytes()).map_err(|_| unknown())?;
        let commit_obj = repo.find_commit(id).map_err(|_| unknown())?;
        commit_obj.tree().map_err(|_| unknown())
    }

    /// Whether a commit exists in the mirror.
    pub fn has_commit(&self, commit: &str) -> Result<bool> {
        let repo = self.repo()?;
        Ok(self.tree_at(&repo, commit).is_ok())
    }

    /// A file's content at a commit, or `None` if there is no such file.
    pub fn read_file(&self, commit: &str, path: &str) -> Result<Option<Vec<u8>>> {
        let rel = normalize_repo_path(path).map_err(|message| GitError::BadPath { path: path.to_owned(), message })?;
        let repo = self.repo()?;
        let tree = self.tree_at(&repo, commit)?;
        let read_err = |e: &dyn std::fmt::Display| GitError::Read { commit: commit.to_owned(), path: rel.clone(), message: e.to_string() };
        let Some(entry) = tree.lookup_entry_by_path(&rel).map_err(|e| read_err(&e))? else { return Ok(None) };
        if !entry.mode().is_blob() {
            return Ok(None);
        }
        let header = repo.find_header(entry.object_id()).map_err(|e| read_err(&e))?;
        if header.size() > MAX_FILE_BYTES {
            return Err(GitError::TooLarge { commit: commit.to_owned(), path: rel, limit: MAX_FILE_BYTES });
        }
        let obj = entry.object().map_err(|e| read_err(&e))?;
        Ok(Some(obj.data.clone()))
    }

    /// The file or folder at `path` of a commit, whole, at most `limit` bytes of content in
    /// all (`None` when there is nothing at `path`): what a `configmap` entry mounts. Symbolic
    /// links are kept as links; submodules are left out.
    pub fn read_item(&self, commit: &str, path: &str, limit: u64) -> Result<Option<TreeItem>> {
        // `.` (or `./`) is the whole repository.
        let whole = path.split('/').all(|p| p.is_empty() || p == ".");
        let rel = if whole {
            ".".to_owned()
        } else {
            normalize_repo_path(path).map_err(|message| GitError::BadPath { path: path.to_owned(), message })?
        };
        let repo = self.repo()?;
        let root = self.tree_at(&repo, commit)?;
        let read_err =
            |p: &str, e: &dyn std::fmt::Display| GitError::Read { commit: commit.to_owned(), path: p.to_owned(), message: e.to_string() };
        let too_large = || GitError::TooLarge { commit: commit.to_owned(), path: rel.clone(), limit };
        let top = if whole {
            None
        } else {
            match root.lookup_entry_by_path(&rel).map_err(|e| read_err(&rel, &e))? {
                Some(e) => Some(e),
                None => return Ok(None),
            }
        };
        let tree_id = match &top {
            None => root.id,
            Some(e) if e.mode().is_tree() => e.object_id(),
            Some(e) if e.mode().is_blob() || e.mode().is_link() => {
                let header = repo.find_header(e.object_id()).map_err(|err| read_err(&rel, &err))?;
                if header.size() > limit {
                    return Err(too_large());
                }
                let data = e.object().map_err(|err| read_err(&rel, &err))?.data.clone();
                let kind = if e.mode().is_link() { ItemKind::Symlink } else { ItemKind::File { executable: e.mode().is_executable() } };
                return Ok(Some(TreeItem::File(ItemFile { path: String::new(), kind, data })));
            }
            Some(_) => return Ok(None),
        };
        let mut files = Vec::new();
        let mut total = 0u64;
        let mut stack: Vec<(String, gix::ObjectId)> = vec![(String::new(), tree_id)];
        while let Some((prefix, id)) = stack.pop() {
            let t = repo.find_tree(id).map_err(|e| read_err(&prefix, &e))?;
            let decoded = t.decode().map_err(|e| read_err(&prefix, &e))?;
            for entry in &decoded.entries {
                let name = entry.filename.to_string();
                // Names a tree may hold but a file system must not be given.
                if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
                    return Err(read_err(&format!("{prefix}{name}"), &"a name that is not a file name"));
                }
                let path = format!("{prefix}{name}");
                let (oid, mode) = (entry.oid.to_owned(), entry.mode);
                if mode.is_tree() {
                    stack.push((format!("{path}/"), oid));
                } else if !mode.is_commit() {
                    let blob = repo.find_object(oid).map_err(|e| read_err(&path, &e))?;
                    total += blob.data.len() as u64;
                    if total > limit {
                        return Err(too_large());
                    }
                    let kind = if mode.is_link() { ItemKind::Symlink } else { ItemKind::File { executable: mode.is_executable() } };
                    files.push(ItemFile { path, kind, data: blob.data.clone() });
                }
            }
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(Some(TreeItem::Dir(files)))
    }

    /// The id of the tree at `dir` (`.` for the root): it changes exactly when anything under
    /// `dir` changes, so it keys content-addressed image tags.
    pub fn tree_id(&self, commit: &str, dir: &str) -> Result<Option<String>> {
        let repo = self.repo()?;
        let tree = self.tree_at(&repo, commit)?;
        if dir == "." || dir.is_empty() {
            return Ok(Some(tree.id.to_string()));
        }
        let rel = normalize_repo_path(dir).map_err(|message| GitError::BadPath { path: dir.to_owned(), message })?;
        let entry = tree.lookup_entry_by_path(&rel).map_err(|e| GitError::Read {
            commit: commit.to_owned(),
            path: rel.clone(),
            message: e.to_string(),
        })?;
        Ok(entry.filter(|e| e.mode().is_tree()).map(|e| e.object_id().to_string()))
    }

    /// A tar archive of the tree at `dir` of a commit: the build context.
    pub fn archive(&self, commit: &str, dir: &str) -> Result<Vec<u8>> {
        self.archive_under(commit, dir, "")
    }

    /// Like [`Mirror::archive`], with every path under `prefix` (`workspace/`).
    pub fn archive_under(&self, commit: &str, dir: &str, prefix: &str) -> Result<Vec<u8>> {
        self.archive_with(commit, dir, prefix, &[])
    }

    /// Like [`Mirror::archive_under`], with `extra` files appended: `(path, content, mode)`
    /// (a Terraform state put beside the module, say).
    pub fn archive_with(&self, commit: &str, dir: &str, prefix: &str, extra: &[(String, Vec<u8>, u32)]) -> Result<Vec<u8>> {
        let repo = self.repo()?;
        let root = self.tree_at(&repo, commit)?;
        let read_err =
            |p: &str, e: &dyn std::fmt::Display| GitError::Read { commit: commit.to_owned(), path: p.to_owned(), message: e.to_string() };
        let tree = if dir == "." || dir.is_empty() {
            root
        } else {
            let rel = normalize_repo_path(dir).map_err(|message| GitError::BadPath { path: dir.to_owned(), message })?;
            let entry = root.lookup_entry_by_path(&rel).map_err(|e| read_err(&rel, &e))?;
            match entry {
                Some(e) if e.mode().is_tree() => e.object().map_err(|e| read_err(&rel, &e))?.into_tree(),
                _ => return Err(GitError::Read { commit: commit.to_owned(), path: rel, message: "no such directory".into() }),
            }
        };
        let mut builder = tar::Builder::new(Vec::new());
        let mut total = 0u64;
        let mut stack: Vec<(String, gix::ObjectId)> = vec![(prefix.to_owned(), tree.id)];
        while let Some((prefix, id)) = stack.pop() {
            let t = repo.find_tree(id).map_err(|e| read_err(&prefix, &e))?;
            let decoded = t.decode().map_err(|e| read_err(&prefix, &e))?;
            for entry in &decoded.entries {
                let name = format!("{prefix}{}", entry.filename);
                let oid = entry.oid.to_owned();
                let mode = entry.mode;
                if mode.is_tree() {
                    stack.push((format!("{name}/"), oid));
                } else if mode.is_commit() {
                    // A submodule: not part of this repository's content.
                } else {
                    let blob = repo.find_object(oid).map_err(|e| read_err(&name, &e))?;
                    total += blob.data.len() as u64;
                    if total > MAX_CONTEXT_BYTES {
                        return Err(GitError::TooLarge { commit: commit.to_owned(), path: dir.to_owned(), limit: MAX_CONTEXT_BYTES });
                    }
                    let mut h = tar::Header::new_gnu();
                    h.set_mtime(0);
                    if mode.is_link() {
                        h.set_entry_type(tar::EntryType::Symlink);
                        h.set_size(0);
                        h.set_mode(0o777);
                        let target = String::from_utf8_lossy(&blob.data).into_owned();
                        builder.append_link(&mut h, &name, &target).map_err(|e| read_err(&name, &e))?;
                    } else {
                        h.set_size(blob.data.len() as u64);
                        h.set_mode(if mode.is_executable() { 0o755 } else { 0o644 });
                        h.set_cksum();
                        builder.append_data(&mut h, &name, blob.data.as_slice()).map_err(|e| read_err(&name, &e))?;
                    }
                }
            }
        }
        for (path, data, mode) in extra {
            let mut h = tar::Header::new_gnu();
            h.set_mtime(0);
            h.set_size(data.len() as u64);
            h.set_mode(*mode);
            h.set_cksum();
            builder.append_data(&mut h, path, data.as_slice()).map_err(|e| read_err(path, &e))?;
        }
        builder.into_inner().map_err(|e| read_err(dir, &e))
    }
}

/// A file or a folder of a commit's tree ([`Mirror::read_item`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TreeItem {
    /// The file itself (its `path` empty).
    File(ItemFile),
    /// Every file under the folder, by path relative to it, sorted.
    Dir(Vec<ItemFile>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemFile {
    pub path: String,
    pub kind: ItemKind,
    /// The content; a link's target.
    pub data: Vec<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ItemKind {
    File { executable: bool },
    Symlink,
}

/// The files of one commit, for finding an application's configuration.
pub struct CommitFiles<'m> {
    pub mirror: &'m Mirror,
    pub commit: String,
}

impl RepoFiles for CommitFiles<'_> {
    fn read(&self, path: &str) -> Option<String> {
        self.mirror.read_file(&self.commit, path).ok().flatten().and_then(|b| String::from_utf8(b).ok())
    }
}
