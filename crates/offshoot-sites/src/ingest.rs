//! A build's output (a tar archive of its output directory) into blobs and a manifest.

use crate::{Bucket, FileEntry, Manifest, Result, SiteError, Variant, sha256_hex};
use bytes::Bytes;
use futures_util::{StreamExt as _, TryStreamExt as _};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Read;

/// Bounds on what one build may store.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_files: usize,
    pub max_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_files: 100_000, max_bytes: 2 << 30 }
    }
}

/// What an ingest did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct IngestReport {
    pub files: usize,
    pub bytes: u64,
    /// Blobs written now (new content).
    pub stored: usize,
    /// Blobs that were stored already (by this site or another).
    pub reused: usize,
    /// Files served compressed (`br` and/or `gzip`).
    pub compressed: usize,
    /// Entries that are not regular files (symbolic links, devices), left out.
    pub skipped: Vec<String>,
}

/// Files worth compressing: text and a few binary formats that shrink.
fn compressible(content_type: &str) -> bool {
    let t = content_type.split(';').next().unwrap_or("").trim();
    t.starts_with("text/")
        || t.ends_with("+json")
        || t.ends_with("+xml")
        || matches!(
            t,
            "application/javascript"
                | "application/json"
                | "application/xml"
                | "application/wasm"
                | "image/svg+xml"
                | "image/x-icon"
                | "image/vnd.microsoft.icon"
                | "font/ttf"
                | "font/otf"
                | "application/vnd.ms-fontobject"
        )
}

/// The content type served for a path.
pub(crate) fn content_type(path: &str) -> String {
    let mime = mime_guess::from_path(path).first_raw().unwrap_or("application/octet-stream");
    let mime = match mime {
        // mime_guess's older spelling.
        "application/x-javascript" | "text/javascript" => "text/javascript",
        m => m,
    };
    if mime.starts_with("text/") || mime == "application/json" || mime == "image/svg+xml" || mime == "application/manifest+json" {
        format!("{mime}; charset=utf-8")
    } else {
        mime.to_owned()
    }
}

/// Reads a tar archive of an output directory: the regular files under its first path
/// component (the directory itself), with their paths relative to it.
fn read_tar(reader: impl Read, limits: Limits, report: &mut IngestReport) -> Result<BTreeMap<String, Bytes>> {
    let mut archive = tar::Archive::new(reader);
    let mut files = BTreeMap::new();
    let mut total = 0u64;
    let bad = |e: std::io::Error| SiteError::Output(format!("reading the archive: {e}"));
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let raw = entry.path().map_err(bad)?.to_string_lossy().into_owned();
        // `dist/assets/app.js` → `assets/app.js`; the directory's own entry is skipped.
        let rel = match raw.trim_start_matches("./").split_once('/') {
            Some((_, rest)) => rest.trim_matches('/').to_owned(),
            None => String::new(),
        };
        let kind = entry.header().entry_type();
        if kind.is_dir() || rel.is_empty() {
            continue;
        }
        if !kind.is_file() {
            report.skipped.push(rel);
            continue;
        }
        if rel.len() > 1024 || rel.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
            return Err(SiteError::Output(format!("`{rel}` is not a usable file name")));
        }
        if files.len() >= limits.max_files {
            return Err(SiteError::Output(format!("more than {} files", limits.max_files)));
        }
        let size = entry.header().size().map_err(bad)?;
        total += size;
        if total > limits.max_bytes {
            return Err(SiteError::Output(format!("more than {} bytes", limits.max_bytes)));
        }
        let mut buf = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        entry.read_to_end(&mut buf).map_err(bad)?;
        files.insert(rel, Bytes::from(buf));
    }
    Ok(files)
}

fn brotli(data: &[u8]) -> Vec<u8> {
    let quality = if data.len() <= 256 * 1024 { 11 } else { 7 };
    let mut out = Vec::new();
    let params = brotli::enc::BrotliEncoderParams { quality, lgwin: 22, ..Default::default() };
    // Writing into a Vec cannot fail.
    let _ = brotli::BrotliCompress(&mut std::io::Cursor::new(data), &mut out, &params);
    out
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let _ = enc.write_all(data);
    enc.finish().unwrap_or_default()
}

/// How one file is stored.
struct Plan {
    path: String,
    data: Bytes,
    sha: String,
    content_type: String,
    /// Pre-compressed siblings from the build (`app.js.br`, `app.js.gz`).
    given_br: Option<Bytes>,
    given_gz: Option<Bytes>,
}

/// Stores the files of `archive` (a tar of the output directory, as the container engine
/// hands it out) and the manifest of site `key`. Blobs already stored are not written again;
/// compressed variants are made once per content.
pub async fn ingest_tar(
    bucket: &Bucket,
    key: &str,
    archive: impl Read + Send + 'static,
    limits: Limits,
) -> Result<(Manifest, IngestReport)> {
    let (files, mut report) = tokio::task::spawn_blocking(move || {
        let mut report = IngestReport::default();
        read_tar(archive, limits, &mut report).map(|f| (f, report))
    })
    .await
    .map_err(|e| SiteError::Output(e.to_string()))??;
    if files.is_empty() {
        return Err(SiteError::Output("the output directory is empty".into()));
    }
    report.files = files.len();
    report.bytes = files.values().map(|b| b.len() as u64).sum();
    let plans: Vec<Plan> = files
        .iter()
        .map(|(path, data)| Plan {
            path: path.clone(),
            data: data.clone(),
            sha: sha256_hex(data),
            content_type: content_type(path),
            given_br: files.get(&format!("{path}.br")).cloned(),
            given_gz: files.get(&format!("{path}.gz")).cloned(),
        })
        .collect();
    // Files in parallel: object stores answer each request slowly but many at once.
    let results: Vec<(String, FileEntry, usize, usize, bool)> =
        futures_util::stream::iter(plans).map(|p| store_file(bucket, p)).buffer_unordered(8).try_collect().await?;
    let mut manifest = Manifest {
        key: key.to_owned(),
        built_at: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        files: BTreeMap::new(),
    };
    for (path, entry, stored, reused, compressed) in results {
        report.stored += stored;
        report.reused += reused;
        report.compressed += usize::from(compressed);
        manifest.files.insert(path, entry);
    }
    bucket.put_manifest(&manifest).await?;
    Ok((manifest, report))
}

async fn store_file(bucket: &Bucket, p: Plan) -> Result<(String, FileEntry, usize, usize, bool)> {
    let (mut stored, mut reused) = (0, 0);
    let mut count = |written: bool| if written { stored += 1 } else { reused += 1 };
    count(bucket.put_blob(&p.sha, p.data.clone()).await?);
    let size = p.data.len() as u64;
    let worth = |v: &[u8]| (v.len() as u64) * 10 < size * 9;
    let variant = |given: Option<Bytes>, own_suffix: &'static str| {
        let sha = p.sha.clone();
        let data = p.data.clone();
        let squeeze = compressible(&p.content_type) && size >= 256;
        async move {
            if let Some(g) = given.filter(|g| worth(g)) {
                let blob = sha256_hex(&g);
                let len = g.len() as u64;
                let written = bucket.put_blob(&blob, g).await?;
                return Ok::<_, SiteError>(Some((Variant { blob, size: len }, written)));
            }
            if !squeeze {
                return Ok(None);
            }
            let blob = format!("{sha}.{own_suffix}");
            if let Some(len) = bucket.blob_size(&blob).await? {
                return Ok(Some((Variant { blob, size: len }, false)));
            }
            let out = tokio::task::spawn_blocking(move || if own_suffix == "br" { brotli(&data) } else { gzip(&data) })
                .await
                .map_err(|e| SiteError::Output(e.to_string()))?;
            if !worth(&out) {
                return Ok(None);
            }
            let len = out.len() as u64;
            let written = bucket.put_blob(&blob, Bytes::from(out)).await?;
            Ok(Some((Variant { blob, size: len }, written)))
        }
    };
    let br = variant(p.given_br.clone(), "br").await?;
    let gz = variant(p.given_gz.clone(), "gz").await?;
    let compressed = br.is_some() || gz.is_some();
    for (_, written) in br.iter().chain(gz.iter()) {
        count(*written);
    }
    let entry = FileEntry { sha256: p.sha, size, content_type: p.content_type, br: br.map(|(v, _)| v), gzip: gz.map(|(v, _)| v) };
    Ok((p.path, entry, stored, reused, compressed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("assets/app.3f2a9c1b.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("logo.svg"), "image/svg+xml; charset=utf-8");
        assert_eq!(content_type("a.wasm"), "application/wasm");
        assert_eq!(content_type("photo.JPG"), "image/jpeg");
        assert_eq!(content_type("LICENSE"), "application/octet-stream");
        assert!(compressible(&content_type("x.css")));
        assert!(!compressible(&content_type("x.png")));
    }
}
