//! The router end to end: a real server, real containers, real HTTP and TCP through it.

mod support;

use std::io::{Read as _, Write as _};
use std::time::{Duration, Instant};
use support::*;

/// The shop with path rules on one host (one of them private), `ingress` limits, two API
/// replicas that say who they are, a slow endpoint, and the store's port as a load balancer.
fn routed_shop() -> tempfile::TempDir {
    let repo = shop_repo(|t| {
        t.replace(
            "- api: api-${env_id}.${domain}\n",
            "- api: api-${env_id}.${domain}\nrules:\n- service: api\n  hostnames:\n  - shop-${env_id}.${domain}\n  path: /cgi-bin\n- service: api\n  hostnames:\n  - shop-${env_id}.${domain}\n  path: /admin\n  visibility: private\n- service: web\n  hostnames:\n  - shop-${env_id}.${domain}\n  path: /\n- service: web\n  hostnames:\n  - fixed.${domain}\n  path: /\ningress:\n  proxy_body_size: 1k\n  proxy_read_timeout: '1'\n",
        )
        .replace("- name: api\n  image: offshoot/shop/api", "- name: api\n  replicas: 2\n  image: offshoot/shop/api")
        .replace("    port: '6379'\n  volumes:", "    port: '6379'\n    loadbalancer: true\n  volumes:")
        .replace("      path: /health\n      port: '8080'\n    period_seconds: 1\n    failure_threshold: 30", "      path: /health\n      port: '8080'\n    period_seconds: 1\n    failure_threshold: 4")
    });
    let cgi = repo.path().join("api");
    std::fs::write(cgi.join("whoami.sh"), "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n%s\\n' \"$(hostname)\"\n")
        .expect("write");
    std::fs::write(cgi.join("slow.sh"), "#!/bin/sh\nsleep 4\nprintf 'Content-Type: text/plain\\r\\n\\r\\nslow\\n'\n").expect("write");
    let dockerfile = std::fs::read_to_string(cgi.join("Dockerfile")).expect("Dockerfile");
    let dockerfile = dockerfile.replace(
        "RUN chmod 755 /www/cgi-bin/orders",
        "COPY whoami.sh /www/cgi-bin/whoami\nCOPY slow.sh /www/cgi-bin/slow\nRUN mkdir -p /www/admin && echo admin > /www/admin/index.html && chmod 755 /www/cgi-bin/*",
    );
    std::fs::write(cgi.join("Dockerfile"), dockerfile).expect("write");
    git(repo.path(), &["add", "-A"]);
    git(repo.path(), &["commit", "-qm", "routing"]);
    repo
}

/// The container hostname (12 hex digits) in a `whoami` answer's body.
fn hostname_in(resp: &str) -> String {
    let body = resp.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    body.lines().map(str::trim).find(|l| l.len() == 12 && l.bytes().all(|b| b.is_ascii_hexdigit())).unwrap_or("").to_owned()
}

fn status(resp: &str) -> &str {
    resp.split_whitespace().nth(1).unwrap_or("")
}

#[test]
fn rules_ingress_limits_visibility_replicas_and_load_balancers() {
    let repo = routed_shop();
    // Loopback is not trusted here, so the private rule must refuse the test's requests.
    let s = Server::new_with(None, &["--trusted-network", "10.99.0.0/16"]);
    s.json(&["app", "create", "--repo", repo.path().to_str().expect("utf-8")]);
    let env = s.json(&["env", "create", "shop", "--branch", "main", "--wait"]);
    assert_eq!(env["status"], "ready", "{env}");
    let id = env["id"].as_str().expect("id").to_owned();
    let shop = format!("shop-{id}.localhost");
    let svc = |name: &str| env["services"].as_array().and_then(|v| v.iter().find(|s| s["name"] == name)).cloned().expect("service");
    let urls = svc("api")["urls"].to_string();
    assert!(urls.contains(&format!("http://{shop}:{}/cgi-bin", s.router)), "{urls}");

    // Longest prefix: /cgi-bin to the API, everything else to the web front end.
    let page = http(s.router, &shop, "/").expect("answer");
    assert!(page.contains("<h1>Shop</h1>"), "{page}");
    let orders = http(s.router, &shop, "/cgi-bin/orders").expect("answer");
    assert!(orders.contains(&format!("\"env\":\"{id}\"")), "{orders}");
    let page = http(s.router, &shop, "/cgi-binx").expect("answer");
    assert_eq!(status(&page), "404", "the web front end has no /cgi-binx: {page}");
    // Private, and the client is not in a trusted network.
    let admin = http(s.router, &shop, "/admin/").expect("answer");
    assert_eq!(status(&admin), "403", "{admin}");

    // Both replicas answer, in turn.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..6 {
        let who = http(s.router, &shop, "/cgi-bin/whoami").expect("answer");
        assert_eq!(status(&who), "200", "{who}");
        seen.insert(hostname_in(&who));
    }
    assert_eq!(seen.len(), 2, "{seen:?}");

    // ingress: 413 over 1k, 504 past a 1 s read timeout.
    let big = http_raw(s.router, &format!("POST /cgi-bin/orders HTTP/1.1\r\nHost: {shop}\r\nContent-Length: 4096"), &[b'x'; 4096])
        .expect("answer");
    assert_eq!(status(&big), "413", "{big}");
    let t = Instant::now();
    let slow = http(s.router, &shop, "/cgi-bin/slow").expect("answer");
    assert_eq!(status(&slow), "504", "{slow}");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());

    // The store's port as a load balancer: a TCP echo through 127.0.0.1.
    let shown = s.json(&["env", "show", &id]);
    let store = shown["services"].as_array().and_then(|v| v.iter().find(|s| s["name"] == "store")).expect("store");
    let lb = store["load_balancers"][0].clone();
    assert_eq!(lb["port"], 6379, "{shown}");
    let addr: std::net::SocketAddr = lb["address"].as_str().expect("address").parse().expect("addr");
    let human = String::from_utf8_lossy(&s.cli(&["env", "show", &id]).stdout).into_owned();
    assert!(human.contains(&format!("tcp 6379={addr}")), "{human}");
    assert!(addr.ip().is_loopback());
    let mut c = std::net::TcpStream::connect(addr).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    c.write_all(b"ping\n").expect("write");
    let mut back = [0u8; 5];
    c.read_exact(&mut back).expect("echo");
    assert_eq!(&back, b"ping\n");
    drop(c);

    // Metrics, per environment, behind the token.
    let metrics =
        http_raw(s.api, &format!("GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}", s.token()), b"").expect("metrics");
    assert!(metrics.contains(&format!("offshoot_router_requests_total{{env=\"{id}\",service=\"api\",code=\"2xx\"}}")), "{metrics}");
    assert!(metrics.contains("kind=\"read_timeout\"") && metrics.contains(&id));
    // The background loops' rounds, before the one `# EOF`.
    assert!(metrics.contains("offshoot_loop_rounds_total{loop=\"reconciler\"}"), "{metrics}");
    assert!(metrics.contains("offshoot_loop_failures_total{loop=\"pool keeper\"} 0"), "{metrics}");
    assert_eq!(metrics.matches("# EOF").count(), 1, "{metrics}");
    assert!(metrics.trim_end().ends_with("# EOF"), "{metrics}");
    let loops =
        http_raw(s.api, &format!("GET /api/v1/loops HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}", s.token()), b"").expect("loops");
    let body: serde_json::Value = serde_json::from_str(loops.split("\r\n\r\n").nth(1).unwrap_or("")).expect("JSON");
    for name in ["reconciler", "pool keeper", "static site gc"] {
        assert!(body[name]["rounds"].as_u64().is_some_and(|n| n >= 1), "{name}: {body}");
        assert!(body[name]["last_error"].is_null(), "{name}: {body}");
    }
    let anonymous = http(s.api, "x", "/metrics").expect("answer");
    assert_eq!(status(&anonymous), "401");

    // A replica failing readiness leaves the pool; the other serves alone.
    let replica = format!("offshoot-{id}-api-1");
    let replica_host = docker(&["inspect", "--format", "{{.Config.Hostname}}", &replica]).trim().to_owned();
    docker(&["exec", &replica, "rm", "/www/health"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answers: Vec<String> =
            (0..6).map(|_| http(s.router, &shop, "/cgi-bin/whoami").map(|r| hostname_in(&r)).unwrap_or_default()).collect();
        if answers.iter().all(|a| !a.is_empty() && a != &replica_host) {
            break;
        }
        assert!(Instant::now() < deadline, "the unready replica still gets traffic: {answers:?}");
        std::thread::sleep(Duration::from_millis(500));
    }

    // A second environment of the app cannot take the fixed hostname the first one serves:
    // its `env show` says so, and the first keeps it.
    let second = s.json(&["env", "create", "shop", "--branch", "main", "--wait"]);
    let id2 = second["id"].as_str().expect("id").to_owned();
    let shown = s.json(&["env", "show", &id2]);
    let web2 = shown["services"].as_array().and_then(|v| v.iter().find(|s| s["name"] == "web")).expect("web");
    let reason = web2["reason"].as_str().unwrap_or("");
    assert!(reason.contains("fixed.localhost") && reason.contains(&id), "{shown}");
    assert!(!web2["urls"].to_string().contains("fixed.localhost"), "{shown}");
    assert!(http(s.router, "fixed.localhost", "/").expect("answer").contains("<h1>Shop</h1>"));
    assert_eq!(s.json(&["env", "delete", &id2, "--wait"])["status"], "deleted");

    assert_eq!(s.json(&["env", "delete", &id, "--wait"])["status"], "deleted");
    // Its load-balancer port is closed with it.
    std::thread::sleep(Duration::from_millis(6000));
    assert!(std::net::TcpStream::connect(addr).is_err(), "the load-balancer port outlived the environment");
    assert_eq!(leftovers(&id), "");
}

#[test]
fn the_server_serves_https_with_http2_and_picks_up_a_new_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let write_cert = |cn: &str| {
        let mut params = rcgen::CertificateParams::new(vec!["*.localhost".to_owned()]).expect("params");
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        let k = rcgen::KeyPair::generate().expect("key");
        let c = params.self_signed(&k).expect("certificate");
        std::fs::write(&cert, c.pem()).expect("write");
        std::fs::write(&key, k.serialize_pem()).expect("write");
    };
    write_cert("first");
    let tls_port = free_port();
    let tls_listen = format!("127.0.0.1:{tls_port}");
    let s = Server::new_with(
        None,
        &["--tls-listen", &tls_listen, "--tls-cert", cert.to_str().expect("utf-8"), "--tls-key", key.to_str().expect("utf-8")],
    );
    let repo = shop_repo(|t| t);
    s.json(&["app", "create", "--repo", repo.path().to_str().expect("utf-8")]);
    let env = s.json(&["env", "create", "shop", "--branch", "main", "--wait"]);
    let id = env["id"].as_str().expect("id").to_owned();
    let web = env["services"].as_array().and_then(|v| v.iter().find(|s| s["name"] == "web")).expect("web");
    let url = format!("https://web-{id}.localhost:{tls_port}/");
    assert_eq!(web["urls"][0], url.as_str(), "{env}");
    let curl = |url: &str| {
        let o = std::process::Command::new("curl")
            .args(["-sk", "--http2", "-v", "--resolve", &format!("web-{id}.localhost:{tls_port}:127.0.0.1"), url])
            .output()
            .expect("curl");
        (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
    };
    let (body, trace) = curl(&url);
    // The front end was built with the API's URL as the router serves it: https, TLS port.
    assert!(body.contains(&format!("https://api-{id}.localhost:{tls_port}")), "{body}{trace}");
    assert!(trace.contains("HTTP/2 200") && trace.contains("CN=first"), "{trace}");
    // A new certificate on disk is served without a restart.
    std::thread::sleep(Duration::from_millis(1100));
    write_cert("second");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !curl(&url).1.contains("CN=second") {
        assert!(Instant::now() < deadline, "the new certificate was not picked up");
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(s.json(&["env", "delete", &id, "--wait"])["status"], "deleted");
}
