//! Answers HTTP requests for one built site.

use crate::{Bucket, CACHED_BLOB_MAX, FileEntry, Manifest};
use bytes::Bytes;
use futures_util::StreamExt as _;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};
use http_body_util::{BodyExt as _, Empty, Full, StreamBody};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A response body: whole (small files, from memory) or streamed from the bucket.
pub type SiteBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// What a path that names no file serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fallback {
    /// 404 (the site's `404.html` when it has one).
    None,
    /// This file of the site, with status 200, for navigations (a single-page application
    /// routes in the browser).
    Page(String),
}

impl Fallback {
    /// Reads `static_fallback`: a path in the site, or `false`/`none`/empty for none; absent is
    /// `index.html`.
    pub fn parse(value: Option<&str>) -> Result<Self, String> {
        match value.map(str::trim) {
            None => Ok(Fallback::Page("index.html".into())),
            Some("" | "false" | "none" | "off") => Ok(Fallback::None),
            Some(p) => {
                let p = p.trim_start_matches('/');
                if p.is_empty() || p.len() > 1024 || p.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
                    return Err(format!("`{p}` is not a file path inside the site"));
                }
                Ok(Fallback::Page(p.to_owned()))
            }
        }
    }
}

/// A file as served: its headers made once.
#[derive(Debug)]
struct Served {
    entry: FileEntry,
    etag: HeaderValue,
    etag_br: Option<HeaderValue>,
    etag_gz: Option<HeaderValue>,
    tag: String,
    content_type: HeaderValue,
    cache_control: HeaderValue,
}

const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const REVALIDATE: &str = "public, max-age=0, must-revalidate";
const NO_CACHE: &str = "no-cache";

impl Served {
    fn new(path: &str, entry: &FileEntry) -> Self {
        let tag: String = entry.sha256.chars().take(32).collect();
        let etag = |suffix: &str| HeaderValue::from_str(&format!("\"{tag}{suffix}\"")).unwrap_or_else(|_| HeaderValue::from_static("\"\""));
        let html = entry.content_type.starts_with("text/html");
        let cache = if html {
            NO_CACHE
        } else if fingerprinted(path) {
            IMMUTABLE
        } else {
            REVALIDATE
        };
        Served {
            etag: etag(""),
            etag_br: entry.br.as_ref().map(|_| etag("-br")),
            etag_gz: entry.gzip.as_ref().map(|_| etag("-gz")),
            tag,
            content_type: HeaderValue::from_str(&entry.content_type)
                .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream")),
            cache_control: HeaderValue::from_static(cache),
            entry: entry.clone(),
        }
    }
}

/// Whether a file's name carries a hash of its content (`app.3f2a9c1b.js`, `index-BhT3c9xZ.js`,
/// Next.js's `_next/static/`): such a file never changes under its name, so it may be cached
/// for good.
pub fn fingerprinted(path: &str) -> bool {
    if path.starts_with("_next/static/") {
        return true;
    }
    let name = path.rsplit('/').next().unwrap_or(path);
    let stem = match name.rsplit_once('.') {
        Some((stem, _ext)) => stem,
        None => return false,
    };
    stem.split(['.', '-', '_', '~']).any(|part| {
        (8..=64).contains(&part.len())
            && part.bytes().all(|b| b.is_ascii_alphanumeric())
            && part.bytes().any(|b| b.is_ascii_digit())
            && part.bytes().any(|b| b.is_ascii_alphabetic())
    })
}

/// One built site, ready to serve. Made from its manifest; the files of the build it replaces
/// that carry a content hash in their name stay reachable, so a page of the old build that is
/// still loading its scripts gets them.
pub struct Site {
    key: String,
    files: HashMap<String, Arc<Served>>,
    older: HashMap<String, Arc<Served>>,
    fallback: Option<Arc<Served>>,
    not_found: Option<Arc<Served>>,
    last_modified: HeaderValue,
    built_at: SystemTime,
    bucket: Arc<Bucket>,
}

impl std::fmt::Debug for Site {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Site").field("key", &self.key).field("files", &self.files.len()).finish()
    }
}

impl Site {
    pub fn new(bucket: Arc<Bucket>, manifest: &Manifest, previous: Option<&Site>, fallback: &Fallback) -> Self {
        let files: HashMap<String, Arc<Served>> = manifest.files.iter().map(|(p, e)| (p.clone(), Arc::new(Served::new(p, e)))).collect();
        let older = previous
            .map(|prev| {
                prev.files
                    .iter()
                    .filter(|(p, s)| s.cache_control == IMMUTABLE && !files.contains_key(*p))
                    .map(|(p, s)| (p.clone(), s.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let fallback = match fallback {
            Fallback::Page(p) => files.get(p).cloned(),
            Fallback::None => None,
        };
        let built_at = UNIX_EPOCH + Duration::from_secs(manifest.built_at);
        Site {
            key: manifest.key.clone(),
            not_found: files.get("404.html").cloned(),
            fallback,
            older,
            last_modified: HeaderValue::from_str(&httpdate::fmt_http_date(built_at)).unwrap_or_else(|_| HeaderValue::from_static("")),
            built_at,
            files,
            bucket,
        }
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    fn find(&self, rel: &str) -> Option<&Arc<Served>> {
        if rel.is_empty() || rel.ends_with('/') {
            return self.files.get(&format!("{rel}index.html"));
        }
        self.files
            .get(rel)
            .or_else(|| self.files.get(&format!("{rel}/index.html")))
            .or_else(|| self.files.get(&format!("{rel}.html")))
            .or_else(|| self.older.get(rel))
    }

    /// Answers a request for `path` (the request's path, percent-encoded).
    pub async fn serve(&self, method: &Method, path: &str, headers: &HeaderMap) -> Response<SiteBody> {
        if method != Method::GET && method != Method::HEAD {
            let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "This address serves a static site: only GET and HEAD.\n");
            r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return r;
        }
        let head = method == Method::HEAD;
        let Ok(decoded) = percent_encoding::percent_decode_str(path).decode_utf8() else {
            return text(StatusCode::NOT_FOUND, "Not found.\n");
        };
        let rel = decoded.trim_start_matches('/');
        if rel.split('/').any(|s| s == "..") {
            return text(StatusCode::NOT_FOUND, "Not found.\n");
        }
        if let Some(s) = self.find(rel) {
            return self.file(s, StatusCode::OK, headers, head).await;
        }
        if let Some(page) = &self.fallback
            && navigation(headers, rel)
        {
            return self.file(page, StatusCode::OK, headers, head).await;
        }
        match &self.not_found {
            Some(page) => self.file(page, StatusCode::NOT_FOUND, headers, head).await,
            None => text(StatusCode::NOT_FOUND, "Not found.\n"),
        }
    }

    async fn file(&self, s: &Served, status: StatusCode, req: &HeaderMap, head: bool) -> Response<SiteBody> {
        let e = &s.entry;
        let encoding = if req.contains_key(header::RANGE) && status == StatusCode::OK {
            // Ranges are of the file's own bytes.
            None
        } else {
            accepted(req, e.br.is_some(), e.gzip.is_some())
        };
        let (blob, size, etag, coding) = match encoding {
            Some(Coding::Br) => {
                (e.br.as_ref().map_or(&e.sha256, |v| &v.blob), e.br.as_ref().map_or(e.size, |v| v.size), s.etag_br.as_ref(), Some("br"))
            }
            Some(Coding::Gzip) => (
                e.gzip.as_ref().map_or(&e.sha256, |v| &v.blob),
                e.gzip.as_ref().map_or(e.size, |v| v.size),
                s.etag_gz.as_ref(),
                Some("gzip"),
            ),
            None => (&e.sha256, e.size, None, None),
        };
        let etag = etag.unwrap_or(&s.etag);
        let mut b = Response::builder()
            .header(header::ETAG, etag)
            .header(header::LAST_MODIFIED, &self.last_modified)
            .header(header::CACHE_CONTROL, &s.cache_control);
        if e.br.is_some() || e.gzip.is_some() {
            b = b.header(header::VARY, "Accept-Encoding");
        }
        if status == StatusCode::OK && self.not_modified(req, &s.tag) {
            return b.status(StatusCode::NOT_MODIFIED).body(empty()).unwrap_or_else(|_| internal());
        }
        b = b
            .header(header::CONTENT_TYPE, &s.content_type)
            .header(header::ACCEPT_RANGES, "bytes")
            .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
        if let Some(c) = coding {
            b = b.header(header::CONTENT_ENCODING, c);
        }
        let mut range = None;
        if status == StatusCode::OK
            && coding.is_none()
            && let Some(r) = req.get(header::RANGE).and_then(|v| v.to_str().ok())
            && if_range_holds(req, &s.etag, self.built_at)
        {
            match parse_range(r, size) {
                RangeSpec::Whole => {}
                RangeSpec::Unsatisfiable => {
                    return b
                        .status(StatusCode::RANGE_NOT_SATISFIABLE)
                        .header(header::CONTENT_RANGE, format!("bytes */{size}"))
                        .header(header::CONTENT_LENGTH, 0)
                        .body(empty())
                        .unwrap_or_else(|_| internal());
                }
                RangeSpec::Part(a, z) => range = Some(a..z + 1),
            }
        }
        let (status, length) = match &range {
            Some(r) => {
                b = b.header(header::CONTENT_RANGE, format!("bytes {}-{}/{size}", r.start, r.end - 1));
                (StatusCode::PARTIAL_CONTENT, r.end - r.start)
            }
            None => (status, size),
        };
        b = b.status(status).header(header::CONTENT_LENGTH, length);
        if head {
            return b.body(empty()).unwrap_or_else(|_| internal());
        }
        let body = match self.body(blob, size, range).await {
            Ok(body) => body,
            // A file of a build long replaced, collected since.
            Err(crate::SiteError::Store { source, .. }) if matches!(*source, object_store::Error::NotFound { .. }) => {
                return text(StatusCode::NOT_FOUND, "Not found.\n");
            }
            Err(e) => {
                tracing::error!(site = %self.key, blob = %blob, error = %e, "a static file cannot be read");
                return text(StatusCode::BAD_GATEWAY, "The site's storage did not answer.\n");
            }
        };
        b.body(body).unwrap_or_else(|_| internal())
    }

    async fn body(&self, blob: &str, size: u64, range: Option<std::ops::Range<u64>>) -> crate::Result<SiteBody> {
        if let Some(bytes) = self.bucket.cached(blob) {
            return Ok(full(slice(bytes, range)));
        }
        if size <= CACHED_BLOB_MAX {
            let bytes = self.bucket.blob(blob, size).await?;
            return Ok(full(slice(bytes, range)));
        }
        let stream = self.bucket.blob_stream(blob, range).await?;
        let frames = stream.map(|r| r.map(hyper_frame).map_err(|e| Box::new(e) as BoxError));
        Ok(StreamBody::new(frames).boxed_unsync())
    }

    /// `If-None-Match` (any representation of this content), else `If-Modified-Since`.
    fn not_modified(&self, req: &HeaderMap, tag: &str) -> bool {
        if let Some(inm) = req.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) {
            return inm.split(',').map(str::trim).any(|t| {
                t == "*" || {
                    let t = t.trim_start_matches("W/").trim_matches('"');
                    t.split('-').next() == Some(tag)
                }
            });
        }
        req.get(header::IF_MODIFIED_SINCE).is_some_and(|v| unchanged_since(v, self.built_at))
    }
}

fn hyper_frame(b: Bytes) -> http_body::Frame<Bytes> {
    http_body::Frame::data(b)
}

fn slice(bytes: Bytes, range: Option<std::ops::Range<u64>>) -> Bytes {
    match range {
        Some(r) => {
            let (a, z) = (usize::try_from(r.start).unwrap_or(usize::MAX), usize::try_from(r.end).unwrap_or(usize::MAX));
            if a <= z && z <= bytes.len() { bytes.slice(a..z) } else { bytes }
        }
        None => bytes,
    }
}

fn full(b: Bytes) -> SiteBody {
    Full::new(b).map_err(|never| match never {}).boxed_unsync()
}

fn empty() -> SiteBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

fn text(status: StatusCode, body: &'static str) -> Response<SiteBody> {
    let mut r = Response::new(full(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static(NO_CACHE));
    r
}

fn internal() -> Response<SiteBody> {
    text(StatusCode::INTERNAL_SERVER_ERROR, "Internal error.\n")
}

/// A browser navigation (it asks for HTML) or a path without a file extension: what a
/// single-page application's router handles. A missing `app.js` stays a 404.
fn navigation(req: &HeaderMap, rel: &str) -> bool {
    let html = req.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/html"));
    let last = rel.rsplit('/').next().unwrap_or(rel);
    html || !last.contains('.')
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Coding {
    Br,
    Gzip,
}

/// The best encoding the client accepts among those the file has: `br`, then `gzip`.
fn accepted(req: &HeaderMap, br: bool, gzip: bool) -> Option<Coding> {
    if !br && !gzip {
        return None;
    }
    let mut ok_br = false;
    let mut ok_gz = false;
    let mut star = None;
    for value in req.get_all(header::ACCEPT_ENCODING) {
        let Ok(v) = value.to_str() else { continue };
        for item in v.split(',') {
            let mut parts = item.split(';');
            let name = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = parts.filter_map(|p| p.trim().strip_prefix("q=").and_then(|q| q.trim().parse::<f32>().ok())).next().unwrap_or(1.0);
            match name.as_str() {
                "br" => ok_br = q > 0.0,
                "gzip" | "x-gzip" => ok_gz = q > 0.0,
                "*" => star = Some(q > 0.0),
                _ => {}
            }
        }
    }
    if let Some(s) = star {
        ok_br |= s;
        ok_gz |= s;
    }
    if br && ok_br {
        Some(Coding::Br)
    } else if gzip && ok_gz {
        Some(Coding::Gzip)
    } else {
        None
    }
}

#[derive(Debug, PartialEq, Eq)]
enum RangeSpec {
    Whole,
    Unsatisfiable,
    /// First and last byte, inclusive.
    Part(u64, u64),
}

/// One `bytes=` range; several ranges (or a malformed header) are answered with the whole file,
/// as RFC 9110 allows.
fn parse_range(v: &str, size: u64) -> RangeSpec {
    let Some(spec) = v.trim().strip_prefix("bytes=") else { return RangeSpec::Whole };
    if spec.contains(',') {
        return RangeSpec::Whole;
    }
    let Some((a, z)) = spec.trim().split_once('-') else { return RangeSpec::Whole };
    let (a, z) = (a.trim(), z.trim());
    let num = |s: &str| if s.bytes().all(|b| b.is_ascii_digit()) { s.parse::<u64>().ok() } else { None };
    match (a.is_empty(), z.is_empty()) {
        (true, true) => RangeSpec::Whole,
        // The last `z` bytes.
        (true, false) => match num(z) {
            None => RangeSpec::Whole,
            Some(0) => RangeSpec::Unsatisfiable,
            Some(_) if size == 0 => RangeSpec::Unsatisfiable,
            Some(n) => RangeSpec::Part(size.saturating_sub(n), size - 1),
        },
        (false, _) => {
            let Some(first) = num(a) else { return RangeSpec::Whole };
            let last = if z.is_empty() { Some(u64::MAX) } else { num(z) };
            match last {
                None => RangeSpec::Whole,
                Some(last) if last < first => RangeSpec::Whole,
                Some(_) if first >= size => RangeSpec::Unsatisfiable,
                Some(last) => RangeSpec::Part(first, last.min(size - 1)),
            }
        }
    }
}

/// `If-Range`: the range applies only if the file is the one the client has.
fn if_range_holds(req: &HeaderMap, etag: &HeaderValue, built_at: SystemTime) -> bool {
    let Some(v) = req.get(header::IF_RANGE) else { return true };
    if v == etag {
        return true;
    }
    unchanged_since(v, built_at)
}

/// Whether an HTTP date is no earlier than the build (dates have whole seconds).
fn unchanged_since(v: &HeaderValue, built_at: SystemTime) -> bool {
    let Some(date) = v.to_str().ok().and_then(|s| httpdate::parse_http_date(s).ok()) else { return false };
    built_at.duration_since(date).map_or(true, |d| d < Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints() {
        for p in [
            "assets/app.3f2a9c1b.js",
            "assets/index-BhT3c9xZ.js",
            "app-7d5a1b8e1c2f3a4b5c6d.js",
            "_next/static/chunks/main.js",
            "static/js/787.1b2c3d4e.chunk.js",
        ] {
            assert!(fingerprinted(p), "{p}");
        }
        for p in ["index.html", "favicon.ico", "app.js", "logo-20240101.png", "component---src-pages-index-js.js", "README"] {
            assert!(!fingerprinted(p), "{p}");
        }
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), RangeSpec::Part(0, 9));
        assert_eq!(parse_range("bytes=90-", 100), RangeSpec::Part(90, 99));
        assert_eq!(parse_range("bytes=-10", 100), RangeSpec::Part(90, 99));
        assert_eq!(parse_range("bytes=-200", 100), RangeSpec::Part(0, 99));
        assert_eq!(parse_range("bytes=50-500", 100), RangeSpec::Part(50, 99));
        assert_eq!(parse_range("bytes=100-", 100), RangeSpec::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), RangeSpec::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), RangeSpec::Whole);
        assert_eq!(parse_range("bytes=9-1", 100), RangeSpec::Whole);
        assert_eq!(parse_range("items=0-1", 100), RangeSpec::Whole);
        assert_eq!(parse_range("bytes=x-1", 100), RangeSpec::Whole);
    }

    #[test]
    fn encodings() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap_or_else(|_| HeaderValue::from_static("")));
            m
        };
        assert_eq!(accepted(&h("gzip, deflate, br"), true, true), Some(Coding::Br));
        assert_eq!(accepted(&h("gzip, br;q=0"), true, true), Some(Coding::Gzip));
        assert_eq!(accepted(&h("br"), false, true), None);
        assert_eq!(accepted(&h("*"), true, true), Some(Coding::Br));
        assert_eq!(accepted(&h("identity"), true, true), None);
        assert_eq!(accepted(&HeaderMap::new(), true, true), None);
    }

    #[test]
    fn fallbacks() {
        assert_eq!(Fallback::parse(None), Ok(Fallback::Page("index.html".into())));
        assert_eq!(Fallback::parse(Some("false")), Ok(Fallback::None));
        assert_eq!(Fallback::parse(Some("/200.html")), Ok(Fallback::Page("200.html".into())));
        assert!(Fallback::parse(Some("../x")).is_err());
        let mut nav = HeaderMap::new();
        nav.insert(header::ACCEPT, HeaderValue::from_static("text/html,application/xhtml+xml"));
        assert!(navigation(&nav, "users/1.5"));
        assert!(navigation(&HeaderMap::new(), "users/42"));
        assert!(!navigation(&HeaderMap::new(), "assets/app.js"));
    }
}
