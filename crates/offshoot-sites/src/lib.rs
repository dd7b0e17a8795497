//! Static sites. A build's output directory becomes a *manifest* (path → content hash, type,
//! pre-compressed variants) and *blobs* named by their SHA-256, in a bucket behind
//! `object_store` (the local filesystem, or S3 and its look-alikes). Identical files are stored
//! once, whichever site or build they come from; a manifest is written only after every blob it
//! names, so a manifest that exists is a complete site. [`Site`] answers HTTP requests for one
//! manifest: content types, ETags and conditional requests, cache policy, `br`/`gzip`, ranges,
//! and a fallback page for single-page applications.
//!
//! Layout in the bucket: `blobs/<sha256>` (and `blobs/<sha256>.br`, `.gz`, compressed here),
//! `sites/<key>.json`.

mod ingest;
mod serve;

pub use ingest::{IngestReport, Limits, ingest_tar};
pub use serve::{Fallback, Site, SiteBody, fingerprinted};

use bytes::Bytes;
use futures_util::StreamExt as _;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt as _, PutPayload};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SiteError {
    #[error("static site storage `{url}` is not usable: {message}")]
    Config { url: String, message: String },
    #[error("{operation} `{object}` in {bucket}: {source}")]
    Store {
        operation: &'static str,
        object: String,
        bucket: String,
        #[source]
        source: Box<object_store::Error>,
    },
    #[error("site `{key}` in {bucket} is damaged: {message}")]
    BadManifest { key: String, bucket: String, message: String },
    #[error("the build output is not usable: {0}")]
    Output(String),
}

pub type Result<T> = std::result::Result<T, SiteError>;

/// One file of a site.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// SHA-256 of the content, hex: the blob's name and the ETag's base.
    pub sha256: String,
    pub size: u64,
    pub content_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub br: Option<Variant>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gzip: Option<Variant>,
}

/// A compressed representation of a file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Variant {
    /// The blob's name under `blobs/`.
    pub blob: String,
    pub size: u64,
}

/// A built site: what each path serves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub key: String,
    /// When the build finished, seconds since the epoch (`Last-Modified`).
    pub built_at: u64,
    /// Relative paths (`assets/app.js`), `/`-separated.
    pub files: BTreeMap<String, FileEntry>,
}

impl Manifest {
    pub fn bytes(&self) -> u64 {
        self.files.values().map(|f| f.size).sum()
    }

    /// Every blob the manifest names.
    pub fn blobs(&self) -> impl Iterator<Item = &str> {
        self.files.values().flat_map(|f| {
            std::iter::once(f.sha256.as_str()).chain(f.br.iter().map(|v| v.blob.as_str())).chain(f.gzip.iter().map(|v| v.blob.as_str()))
        })
    }
}

/// Whether a site key is well formed (it names an object): 16 to 64 lowercase hex digits.
pub fn valid_key(key: &str) -> bool {
    (16..=64).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Blobs up to this size are kept in memory once read (bounded by the cache's budget); larger
/// ones are streamed from storage.
pub(crate) const CACHED_BLOB_MAX: u64 = 8 << 20;

#[derive(Clone)]
struct ByteWeighter;

impl quick_cache::Weighter<String, Bytes> for ByteWeighter {
    fn weight(&self, _key: &String, val: &Bytes) -> u64 {
        val.len() as u64 + 64
    }
}

/// Where sites are stored, with an in-memory cache of small blobs (they never change: their
/// name is their content).
pub struct Bucket {
    store: Arc<dyn ObjectStore>,
    describe: String,
    cache: quick_cache::sync::Cache<String, Bytes, ByteWeighter>,
}

impl std::fmt::Debug for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe)
    }
}

impl Bucket {
    /// Opens `location`: a local directory (created if missing), `file:///dir`, or
    /// `s3://bucket[/prefix]` configured from the standard `AWS_*` variables (`AWS_ENDPOINT_URL`,
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ALLOW_HTTP`).
    /// `cache_bytes` bounds the memory cache of small blobs.
    pub fn open(location: &str, cache_bytes: u64) -> Result<Self> {
        Self::open_with(location, std::iter::empty(), cache_bytes)
    }

    /// Like [`Bucket::open`], with S3 settings given as `(name, value)` pairs (`aws_endpoint`,
    /// `aws_access_key_id`, ...) that take precedence over the environment's.
    pub fn open_with(location: &str, s3: impl IntoIterator<Item = (String, String)>, cache_bytes: u64) -> Result<Self> {
        let config = |message: String| SiteError::Config { url: location.to_owned(), message };
        let (store, describe): (Arc<dyn ObjectStore>, String) = if let Some(rest) = location.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(config("the URL names no bucket".into()));
            }
            let mut builder = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
            for (k, v) in s3 {
                let key: object_store::aws::AmazonS3ConfigKey =
                    k.to_ascii_lowercase().parse().map_err(|_| config(format!("`{k}` is not an S3 setting")))?;
                builder = builder.with_config(key, v);
            }
            let s3 = builder.build().map_err(|e| config(e.to_string()))?;
            let prefix = prefix.trim_matches('/');
            let store: Arc<dyn ObjectStore> =
                if prefix.is_empty() { Arc::new(s3) } else { Arc::new(object_store::prefix::PrefixStore::new(s3, prefix)) };
            (store, format!("s3://{bucket}/{prefix}"))
        } else {
            let dir = match location.strip_prefix("file://") {
                Some(p) => std::path::PathBuf::from(p),
                None if location.contains("://") => return Err(config("use a directory, `file:///dir` or `s3://bucket/prefix`".into())),
                None => std::path::PathBuf::from(location),
            };
            std::fs::create_dir_all(&dir).map_err(|e| config(format!("cannot create {}: {e}", dir.display())))?;
            let fs = object_store::local::LocalFileSystem::new_with_prefix(&dir).map_err(|e| config(e.to_string()))?;
            (Arc::new(fs), dir.display().to_string())
        };
        Ok(Bucket { store, describe, cache: quick_cache::sync::Cache::with_weighter(4096, cache_bytes, ByteWeighter) })
    }

    fn err(&self, operation: &'static str, object: &ObjPath, source: object_store::Error) -> SiteError {
        SiteError::Store { operation, object: object.to_string(), bucket: self.describe.clone(), source: Box::new(source) }
    }

    fn blob_path(name: &str) -> ObjPath {
        ObjPath::from(format!("blobs/{name}"))
    }

    fn site_path(key: &str) -> ObjPath {
        ObjPath::from(format!("sites/{key}.json"))
    }

    /// The size of a blob, `None` when it is missing.
    pub(crate) async fn blob_size(&self, name: &str) -> Result<Option<u64>> {
        self.size_of(&Self::blob_path(name)).await
    }

    /// The size of an object, `None` when it is missing.
    async fn size_of(&self, path: &ObjPath) -> Result<Option<u64>> {
        match self.store.head(path).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err("look up", path, e)),
        }
    }

    /// Stores a blob unless it is there; whether it was written.
    pub(crate) async fn put_blob(&self, name: &str, bytes: Bytes) -> Result<bool> {
        if self.blob_size(name).await?.is_some() {
            return Ok(false);
        }
        let path = Self::blob_path(name);
        self.store.put(&path, PutPayload::from_bytes(bytes)).await.map_err(|e| self.err("store", &path, e))?;
        Ok(true)
    }

    /// A whole blob (cached when small).
    pub async fn blob(&self, name: &str, size: u64) -> Result<Bytes> {
        if let Some(b) = self.cache.get(name) {
            return Ok(b);
        }
        let path = Self::blob_path(name);
        let bytes =
            self.store.get(&path).await.map_err(|e| self.err("read", &path, e))?.bytes().await.map_err(|e| self.err("read", &path, e))?;
        if size <= CACHED_BLOB_MAX {
            self.cache.insert(name.to_owned(), bytes.clone());
        }
        Ok(bytes)
    }

    /// A blob from the cache, without waiting.
    pub(crate) fn cached(&self, name: &str) -> Option<Bytes> {
        self.cache.get(name)
    }

    /// Part of a blob, or all of it, as a stream (large files are not read into memory).
    pub(crate) async fn blob_stream(
        &self,
        name: &str,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<futures_util::stream::BoxStream<'static, object_store::Result<Bytes>>> {
        let path = Self::blob_path(name);
        let opts = object_store::GetOptions { range: range.map(object_store::GetRange::Bounded), ..Default::default() };
        let r = self.store.get_opts(&path, opts).await.map_err(|e| self.err("read", &path, e))?;
        let range = r.range.clone();
        match r.payload {
            // A local file: read in large chunks (object_store's own stream reads 8 KiB at a time).
            object_store::GetResultPayload::File(file, _) => Ok(file_stream(file, range)),
            object_store::GetResultPayload::Stream(s) => Ok(s),
        }
    }

    pub async fn has_site(&self, key: &str) -> Result<bool> {
        Ok(self.size_of(&Self::site_path(key)).await?.is_some())
    }

    /// A site's manifest, `None` when no such site was stored.
    pub async fn manifest(&self, key: &str) -> Result<Option<Manifest>> {
        let path = Self::site_path(key);
        let bytes = match self.store.get(&path).await {
            Ok(r) => r.bytes().await.map_err(|e| self.err("read", &path, e))?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.err("read", &path, e)),
        };
        let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| SiteError::BadManifest {
            key: key.to_owned(),
            bucket: self.describe.clone(),
            message: e.to_string(),
        })?;
        if m.key != key {
            return Err(SiteError::BadManifest {
                key: key.to_owned(),
                bucket: self.describe.clone(),
                message: format!("it names site `{}`", m.key),
            });
        }
        Ok(Some(m))
    }

    /// Records a site; its blobs must all be stored already.
    pub async fn put_manifest(&self, m: &Manifest) -> Result<()> {
        let path = Self::site_path(&m.key);
        let json = serde_json::to_vec(m).map_err(|e| SiteError::Output(e.to_string()))?;
        self.store.put(&path, PutPayload::from(json)).await.map_err(|e| self.err("store", &path, e))?;
        Ok(())
    }

    /// Deletes the sites not in `keep` that are older than `min_age`, then every blob no
    /// remaining site names that is older than `min_age` (younger ones may belong to a build
    /// still storing its files).
    pub async fn collect_garbage(&self, keep: &HashSet<String>, min_age: Duration) -> Result<Gc> {
        let now = SystemTime::now();
        let old = |t: SystemTime| now.duration_since(t).is_ok_and(|age| age >= min_age);
        let mut gc = Gc::default();
        let mut live: HashSet<String> = HashSet::new();
        let sites = ObjPath::from("sites");
        let mut list = self.store.list(Some(&sites));
        while let Some(meta) = list.next().await {
            let meta = meta.map_err(|e| self.err("list", &sites, e))?;
            let Some(key) = meta.location.filename().and_then(|f| f.strip_suffix(".json")).map(str::to_owned) else { continue };
            let modified: SystemTime = meta.last_modified.into();
            if keep.contains(&key) || !old(modified) {
                match self.manifest(&key).await {
                    Ok(Some(m)) => live.extend(m.blobs().map(str::to_owned)),
                    Ok(None) => {}
                    // A damaged site of ours is kept, with its blobs unknown: keep every blob.
                    Err(e) => {
                        tracing::warn!(error = %e, "a site cannot be read; no blob is collected this round");
                        return Ok(gc);
                    }
                }
                gc.sites_kept += 1;
            } else {
                self.store.delete(&meta.location).await.map_err(|e| self.err("delete", &meta.location, e))?;
                gc.sites_deleted += 1;
            }
        }
        let blobs = ObjPath::from("blobs");
        let mut list = self.store.list(Some(&blobs));
        while let Some(meta) = list.next().await {
            let meta = meta.map_err(|e| self.err("list", &blobs, e))?;
            let Some(name) = meta.location.filename() else { continue };
            let modified: SystemTime = meta.last_modified.into();
            if live.contains(name) || !old(modified) {
                continue;
            }
            self.store.delete(&meta.location).await.map_err(|e| self.err("delete", &meta.location, e))?;
            self.cache.remove(name);
            gc.blobs_deleted += 1;
            gc.bytes_freed += meta.size;
        }
        Ok(gc)
    }
}

/// Bytes `range` of a file, in chunks of up to 256 KiB.
fn file_stream(file: std::fs::File, range: std::ops::Range<u64>) -> futures_util::stream::BoxStream<'static, object_store::Result<Bytes>> {
    use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
    const CHUNK: u64 = 256 * 1024;
    let state = (tokio::fs::File::from_std(file), range.start, range.end, false);
    let io = |e: std::io::Error| object_store::Error::Generic { store: "LocalFileSystem", source: Box::new(e) };
    futures_util::stream::unfold(state, move |(mut f, at, end, positioned)| async move {
        if at >= end {
            return None;
        }
        if !positioned && let Err(e) = f.seek(std::io::SeekFrom::Start(at)).await {
            return Some((Err(io(e)), (f, end, end, true)));
        }
        let want = usize::try_from((end - at).min(CHUNK)).unwrap_or(CHUNK as usize);
        let mut buf = vec![0u8; want];
        match f.read_exact(&mut buf).await {
            Ok(_) => Some((Ok(Bytes::from(buf)), (f, at + want as u64, end, true))),
            Err(e) => Some((Err(io(e)), (f, end, end, true))),
        }
    })
    .boxed()
}

/// What a garbage collection did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Gc {
    pub sites_kept: u64,
    pub sites_deleted: u64,
    pub blobs_deleted: u64,
    pub bytes_freed: u64,
}

/// SHA-256, hex.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}
