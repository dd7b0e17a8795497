//! Ingest and serving against real storage: the local filesystem here, and an S3-compatible
//! server (moto's server mode) when `OFFSHOOT_MOTO` or /opt/offshoot-moto has it.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use http_body_util::BodyExt as _;
use offshoot_sites::{Bucket, Fallback, Limits, Site, ingest_tar};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// A tar archive as the container engine hands out a directory: entries under `dist/`.
fn archive(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o755);
    h.set_size(0);
    h.set_cksum();
    b.append_data(&mut h, "dist/", std::io::empty()).expect("dir");
    for (path, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, format!("dist/{path}"), *data).expect("file");
    }
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_mode(0o777);
    b.append_link(&mut h, "dist/link", "/etc/passwd").expect("link");
    b.into_inner().expect("tar")
}

fn big_js() -> Vec<u8> {
    (0..4000).map(|i| format!("console.log('line {i} of a rather repetitive bundle');\n")).collect::<String>().into_bytes()
}

fn site_files(version: &str) -> Vec<(String, Vec<u8>)> {
    let js = big_js();
    vec![
        (
            "index.html".into(),
            format!("<!doctype html><title>v{version}</title><script src=\"/assets/app.{version}a1b2c3d4.js\"></script>").into_bytes(),
        ),
        (format!("assets/app.{version}a1b2c3d4.js"), js),
        ("logo.png".into(), vec![0x89, b'P', b'N', b'G', 1, 2, 3, 4]),
        ("about/index.html".into(), b"<p>about</p>".to_vec()),
        ("data.json".into(), br#"{"a":1}"#.to_vec()),
        ("big.bin".into(), (0..9_000_000u32).map(|i| (i % 251) as u8).collect()),
    ]
}

async fn ingest(bucket: &Bucket, key: &str, files: &[(String, Vec<u8>)]) -> (offshoot_sites::Manifest, offshoot_sites::IngestReport) {
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(p, d)| (p.as_str(), d.as_slice())).collect();
    let tar = archive(&refs);
    ingest_tar(bucket, key, std::io::Cursor::new(tar), Limits::default()).await.expect("ingest")
}

async fn get(site: &Site, path: &str, headers: &[(header::HeaderName, &str)]) -> (StatusCode, HeaderMap, Bytes) {
    let mut h = HeaderMap::new();
    for (k, v) in headers {
        h.insert(k.clone(), HeaderValue::from_str(v).expect("header"));
    }
    let r = site.serve(&Method::GET, path, &h).await;
    let (parts, body) = r.into_parts();
    let bytes = body.collect().await.expect("body").to_bytes();
    (parts.status, parts.headers, bytes)
}

fn hv(h: &HeaderMap, k: header::HeaderName) -> &str {
    h.get(k).and_then(|v| v.to_str().ok()).unwrap_or("")
}

async fn exercise(bucket: Arc<Bucket>) {
    let files = site_files("1");
    let (m, report) = ingest(&bucket, "00000000000000000000000000000001", &files).await;
    assert_eq!(report.files, files.len());
    assert_eq!(report.skipped, vec!["link".to_owned()]);
    assert_eq!(report.compressed, 1, "only the bundle is worth it: {report:?}");
    let site = Site::new(bucket.clone(), &m, None, &Fallback::Page("index.html".into()));

    // Types, cache policy, ETag and 304.
    let (st, h, body) = get(&site, "/", &[]).await;
    assert_eq!(st, StatusCode::OK);
    assert!(String::from_utf8_lossy(&body).contains("<title>v1</title>"));
    assert_eq!(hv(&h, header::CONTENT_TYPE), "text/html; charset=utf-8");
    assert_eq!(hv(&h, header::CACHE_CONTROL), "no-cache");
    let etag = hv(&h, header::ETAG).to_owned();
    let (st, h304, body) = get(&site, "/", &[(header::IF_NONE_MATCH, &etag)]).await;
    assert_eq!((st, body.len(), hv(&h304, header::ETAG)), (StatusCode::NOT_MODIFIED, 0, etag.as_str()));
    let lm = hv(&h, header::LAST_MODIFIED).to_owned();
    assert_eq!(get(&site, "/", &[(header::IF_MODIFIED_SINCE, &lm)]).await.0, StatusCode::NOT_MODIFIED);
    assert_eq!(get(&site, "/", &[(header::IF_NONE_MATCH, "\"other\"")]).await.0, StatusCode::OK);

    let (st, h, body) = get(&site, "/assets/app.1a1b2c3d4.js", &[]).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(body.len(), big_js().len());
    assert_eq!(hv(&h, header::CONTENT_TYPE), "text/javascript; charset=utf-8");
    assert_eq!(hv(&h, header::CACHE_CONTROL), "public, max-age=31536000, immutable");
    assert_eq!(hv(&h, header::VARY), "Accept-Encoding");
    assert_eq!(hv(&get(&site, "/logo.png", &[]).await.1, header::CACHE_CONTROL), "public, max-age=0, must-revalidate");

    // Compression: brotli first, gzip when that is all the client takes; both decode to the file.
    let (_, h, br) = get(&site, "/assets/app.1a1b2c3d4.js", &[(header::ACCEPT_ENCODING, "gzip, deflate, br")]).await;
    assert_eq!(hv(&h, header::CONTENT_ENCODING), "br");
    assert!(br.len() * 5 < big_js().len());
    let mut plain = Vec::new();
    brotli::BrotliDecompress(&mut std::io::Cursor::new(&br), &mut plain).expect("brotli");
    assert_eq!(plain, big_js());
    assert_ne!(hv(&h, header::ETAG), etag);
    let (_, h, gz) = get(&site, "/assets/app.1a1b2c3d4.js", &[(header::ACCEPT_ENCODING, "gzip")]).await;
    assert_eq!(hv(&h, header::CONTENT_ENCODING), "gzip");
    let mut plain = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut plain).expect("gzip");
    assert_eq!(plain, big_js());
    // A PNG is not compressed.
    assert_eq!(hv(&get(&site, "/logo.png", &[(header::ACCEPT_ENCODING, "br")]).await.1, header::CONTENT_ENCODING), "");

    // Ranges, small (from memory) and large (streamed from storage). The large file is over the
    // memory cache's per-file limit (8 MiB).
    let (st, h, body) = get(&site, "/data.json", &[(header::RANGE, "bytes=1-3")]).await;
    assert_eq!((st, &body[..], hv(&h, header::CONTENT_RANGE)), (StatusCode::PARTIAL_CONTENT, &b"\"a\""[..], "bytes 1-3/7"));
    let (st, h, body) = get(&site, "/big.bin", &[(header::RANGE, "bytes=-5")]).await;
    let expect: Vec<u8> = (8_999_995..9_000_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!((st, body.to_vec(), hv(&h, header::CONTENT_RANGE)), (StatusCode::PARTIAL_CONTENT, expect, "bytes 8999995-8999999/9000000"));
    let (st, _, body) = get(&site, "/big.bin", &[]).await;
    assert_eq!((st, body.len()), (StatusCode::OK, 9_000_000));
    assert!(body.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8), "the streamed file is intact");
    let (st, h, _) = get(&site, "/data.json", &[(header::RANGE, "bytes=50-")]).await;
    assert_eq!((st, hv(&h, header::CONTENT_RANGE)), (StatusCode::RANGE_NOT_SATISFIABLE, "bytes */7"));
    // If-Range with another version's tag: the whole file.
    assert_eq!(get(&site, "/data.json", &[(header::RANGE, "bytes=1-3"), (header::IF_RANGE, "\"old\"")]).await.0, StatusCode::OK);

    // Directories, the SPA fallback for navigations only, 405.
    assert_eq!(&get(&site, "/about", &[]).await.2[..], b"<p>about</p>");
    let (st, _, body) = get(&site, "/users/42", &[]).await;
    assert_eq!(st, StatusCode::OK);
    assert!(String::from_utf8_lossy(&body).contains("v1"));
    assert_eq!(get(&site, "/assets/missing.js", &[]).await.0, StatusCode::NOT_FOUND);
    assert_eq!(get(&site, "/users/j.doe", &[(header::ACCEPT, "text/html")]).await.0, StatusCode::OK);
    assert_eq!(get(&site, "/link", &[]).await.0, StatusCode::OK, "a symbolic link is not served: the fallback answers");
    let no_spa = Site::new(bucket.clone(), &m, None, &Fallback::None);
    assert_eq!(get(&no_spa, "/users/42", &[]).await.0, StatusCode::NOT_FOUND);
    let r = site.serve(&Method::POST, "/", &HeaderMap::new()).await;
    assert_eq!((r.status(), hv(r.headers(), header::ALLOW)), (StatusCode::METHOD_NOT_ALLOWED, "GET, HEAD"));
    let r = site.serve(&Method::HEAD, "/data.json", &HeaderMap::new()).await;
    assert_eq!(hv(r.headers(), header::CONTENT_LENGTH), "7");

    // A second build: unchanged files are not stored again; the old build's fingerprinted
    // assets stay reachable, its other files do not.
    let mut files2 = site_files("2");
    files2.retain(|(p, _)| p != "data.json");
    let (m2, report2) = ingest(&bucket, "00000000000000000000000000000002", &files2).await;
    // The bundle has the same bytes under a new name; the PNG, about page and big file too.
    assert!(report2.reused >= 4, "{report2:?}");
    let site2 = Site::new(bucket.clone(), &m2, Some(&site), &Fallback::Page("index.html".into()));
    assert!(String::from_utf8_lossy(&get(&site2, "/", &[]).await.2).contains("v2"));
    assert_eq!(get(&site2, "/assets/app.1a1b2c3d4.js", &[]).await.0, StatusCode::OK);
    assert_eq!(get(&site2, "/data.json", &[]).await.0, StatusCode::NOT_FOUND);
    assert_eq!(bucket.manifest(&m2.key).await.expect("read"), Some(m2.clone()));

    // Garbage: with site 2 kept, site 1 and the blobs only it named go.
    let keep: HashSet<String> = [m2.key.clone()].into();
    let gc = bucket.collect_garbage(&keep, Duration::ZERO).await.expect("gc");
    assert_eq!((gc.sites_kept, gc.sites_deleted), (1, 1), "{gc:?}");
    assert!(gc.blobs_deleted >= 2, "{gc:?}");
    assert_eq!(bucket.manifest(&m.key).await.expect("read"), None);
    // A site still held in memory whose file was collected answers 404 for it, not an error.
    let mut fresh_headers = HeaderMap::new();
    fresh_headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("identity"));
    assert_eq!(site.serve(&Method::GET, "/data.json", &fresh_headers).await.status(), StatusCode::NOT_FOUND);
    let fresh = Site::new(bucket.clone(), &m2, None, &Fallback::None);
    for path in ["/", "/big.bin", "/about/", "/logo.png"] {
        assert_eq!(get(&fresh, path, &[]).await.0, StatusCode::OK, "{path} survives");
    }
}

#[tokio::test]
async fn local_filesystem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bucket = Arc::new(Bucket::open(&dir.path().join("static").display().to_string(), 64 << 20).expect("open"));
    exercise(bucket).await;
    // The blobs are files named by their hash.
    let blobs = std::fs::read_dir(dir.path().join("static/blobs")).expect("blobs").count();
    assert!(blobs > 0);
}

#[tokio::test]
async fn bad_locations_are_refused() {
    let e = Bucket::open("ftp://host/x", 1 << 20).expect_err("ftp");
    assert!(e.to_string().contains("`ftp://host/x`"), "{e}");
    let e = Bucket::open("s3:///prefix", 1 << 20).expect_err("no bucket");
    assert!(e.to_string().contains("names no bucket"), "{e}");
}

#[tokio::test]
async fn empty_output_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bucket = Bucket::open(&dir.path().display().to_string(), 1 << 20).expect("open");
    let e = ingest_tar(&bucket, "00000000000000000000000000000003", std::io::Cursor::new(archive(&[])), Limits::default())
        .await
        .expect_err("empty");
    assert!(e.to_string().contains("empty"), "{e}");
    let e = ingest_tar(
        &bucket,
        "00000000000000000000000000000004",
        std::io::Cursor::new(archive(&[("a", b"1"), ("b", b"2")])),
        Limits { max_files: 1, max_bytes: 1 << 20 },
    )
    .await
    .expect_err("too many");
    assert!(e.to_string().contains("more than 1 files"), "{e}");
}

/// A moto server on a free port, stopped when dropped.
struct Moto(std::process::Child, u16);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn moto_binary() -> std::path::PathBuf {
    std::env::var_os("OFFSHOOT_MOTO").map_or_else(|| "/opt/offshoot-moto/bin/moto_server".into(), Into::into)
}

fn start_moto() -> Moto {
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
    let bin = moto_binary();
    let child = std::process::Command::new(&bin)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{} cannot start ({e}); run scripts/services", bin.display()));
    let moto = Moto(child, port);
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return moto;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("moto did not start");
}

#[tokio::test]
async fn s3_compatible_server() {
    let moto = start_moto();
    let endpoint = format!("http://127.0.0.1:{}", moto.1);
    // The bucket is made with a plain S3 call (moto takes any credentials).
    let client = reqwest::Client::new();
    let r = client.put(format!("{endpoint}/offshoot-sites")).send().await.expect("create bucket");
    assert!(r.status().is_success(), "{}", r.status());
    let settings = [
        ("aws_endpoint", endpoint.as_str()),
        ("aws_access_key_id", "testing"),
        ("aws_secret_access_key", "testing"),
        ("aws_region", "us-east-1"),
        ("aws_allow_http", "true"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()));
    let bucket = Arc::new(Bucket::open_with("s3://offshoot-sites/team-a", settings, 64 << 20).expect("open"));
    exercise(bucket).await;
    // The objects are in the bucket, under the prefix.
    let list = client
        .get(format!("{endpoint}/offshoot-sites?list-type=2&prefix=team-a/sites/"))
        .send()
        .await
        .expect("list")
        .text()
        .await
        .expect("text");
    assert!(list.contains("team-a/sites/00000000000000000000000000000002.json"), "{list}");
    assert!(!list.contains("00000000000000000000000000000001.json"), "collected: {list}");
}
