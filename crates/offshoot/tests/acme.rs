//! Automatic HTTPS end to end against a real ACME server: Pebble (Debian's `pebble`), with
//! pebble-challtestsrv as the DNS the CA resolves hosts with for HTTP-01, and BIND (Debian's
//! `bind9`) as the zone's primary server taking RFC 2136 updates signed with TSIG for DNS-01.
//! `curl`, trusting only Pebble's root, checks what the router serves.

mod support;

use std::process::Command;
use std::time::Instant;
use support::acme::*;
use support::*;

fn certs(s: &Server) -> Vec<serde_json::Value> {
    s.json(&["cert", "list"]).as_array().cloned().unwrap_or_default()
}

/// The first URL `env show` gives for the environment's `web`.
fn web_url(s: &Server, id: &str) -> String {
    let e = s.json(&["env", "show", id]);
    let web = e["services"].as_array().and_then(|s| s.iter().find(|s| s["name"] == "web")).cloned().unwrap_or_default();
    web["urls"][0].as_str().unwrap_or_else(|| panic!("no URL: {e}")).to_owned()
}

fn web_env(s: &Server) -> String {
    let env = s.json(&["env", "create", "shop", "--branch", "main", "--wait"]);
    assert_eq!(env["status"], "ready", "{env}");
    env["id"].as_str().expect("id").to_owned()
}

/// HTTP-01: a new environment's host gets its own certificate while it deploys, and is served
/// over verified TLS 1.3 as soon as it has one; plain HTTP to it is sent to HTTPS.
#[test]
fn a_new_hosts_certificate_is_issued_by_http_01_and_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_chall, dns) = challtestsrv(dir.path());
    let pebble_port = free_port();
    let s = server(dir.path(), pebble_port, None);
    let tls = s.tls.expect("a TLS port");
    let pebble = pebble(dir.path(), pebble_port, s.router, dns, 3600);
    let root = pebble.root(dir.path());
    let repo = shop_repo(|t| t);
    s.json(&["app", "create", "--repo", repo.path().to_str().expect("utf-8")]);
    let id = web_env(&s);
    let ready = Instant::now();
    let host = format!("web-{id}.{DOMAIN}");
    let served = eventually(60, "the host is served over HTTPS", || {
        let (ok, body, trace) = curl(&host, tls, &root);
        ok.then_some((body, trace))
    });
    assert!(ready.elapsed().as_secs() < 60);
    assert!(served.1.contains("TLSv1.3") && served.1.contains("SSL certificate verify ok"), "{}", served.1);
    assert_eq!(web_url(&s, &id), format!("https://{host}:{tls}/"), "a certificate covers it now");
    let list = certs(&s);
    let mine = list.iter().find(|c| c["name"] == host.as_str()).unwrap_or_else(|| panic!("no certificate for {host}: {list:#?}"));
    assert_eq!(mine["orders"], 1, "{mine}");
    assert!(mine["issuer"].as_str().is_some_and(|i| i.starts_with("Pebble Intermediate CA")), "{mine}");
    // Plain HTTP to a host with a certificate goes to HTTPS.
    let plain = http(s.router, &host, "/shop?x=1").expect("answer");
    assert!(plain.starts_with("HTTP/1.1 308"), "{plain}");
    assert!(plain.contains(&format!("location: https://{host}:{tls}/shop?x=1")), "{plain}");
    let o = s.cli(&["cert", "list"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains(&host) && text.contains("Pebble Intermediate CA"), "{text}");
    s.json(&["env", "delete", &id, "--wait"]);
}

/// DNS-01: one wildcard certificate for the domain, obtained once through BIND, serves every
/// environment from the moment it is ready; a short-lived one is renewed and swapped in.
#[test]
fn one_wildcard_by_dns_01_serves_every_environment_and_is_renewed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_named, dns) = bind(dir.path());
    let key = dir.path().join("tsig.key");
    std::fs::write(&key, format!("key \"offshoot\" {{\n  algorithm hmac-sha256;\n  secret \"{TSIG_SECRET}\";\n}};\n")).expect("key");
    let pebble_port = free_port();
    let pebble = pebble(dir.path(), pebble_port, free_port(), dns, 30);
    let root = pebble.root(dir.path());
    let s = server(dir.path(), pebble_port, Some((dns, &key)));
    let tls = s.tls.expect("a TLS port");
    let first = eventually(60, "the wildcard is issued", || {
        certs(&s).into_iter().find(|c| c["name"] == format!("*.{DOMAIN}") && c["serial"].is_string())
    });
    assert_eq!(first["names"], serde_json::json!([format!("*.{DOMAIN}"), DOMAIN]), "{first}");
    let repo = shop_repo(|t| t);
    s.json(&["app", "create", "--repo", repo.path().to_str().expect("utf-8")]);
    for _ in 0..2 {
        let id = web_env(&s);
        // Served over HTTPS the moment it is ready: nothing to issue.
        let (ok, _, trace) = curl(&format!("web-{id}.{DOMAIN}"), tls, &root);
        assert!(ok && trace.contains("TLSv1.3") && trace.contains("SSL certificate verify ok"), "{trace}\n{}", s.log());
        // Its URLs, and what its containers are told, are `https`.
        let https = format!("https://web-{id}.{DOMAIN}:{tls}");
        assert_eq!(web_url(&s, &id), format!("{https}/"));
        let o = s.cli(&["env", "exec", &id, "web", "--", "sh", "-c", "echo $WEB_INGRESS_URL"]);
        assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), https, "{}", String::from_utf8_lossy(&o.stderr));
    }
    let list = certs(&s);
    assert_eq!(list.len(), 1, "one certificate for every environment: {list:#?}");
    assert_eq!(list[0]["orders"], 1, "{list:#?}");
    // A connection open across the swap keeps working.
    let id = web_env(&s);
    let mut held = Held::open(&format!("web-{id}.{DOMAIN}"), tls, &root);
    assert_eq!(held.get().as_deref(), Some("HTTP/1.1 200 OK"));
    // Pebble's certificates live 30 s here: the renewal comes at two thirds, and is served.
    let renewed =
        eventually(60, "the wildcard is renewed", || certs(&s).into_iter().find(|c| c["orders"] == 2 && c["serial"] != first["serial"]));
    let serial = renewed["serial"].as_str().expect("serial").to_ascii_uppercase();
    eventually(20, "the renewed certificate is served", || {
        let o = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "echo | openssl s_client -connect 127.0.0.1:{tls} -servername x.{DOMAIN} 2>/dev/null | openssl x509 -noout -serial"
            ))
            .output()
            .ok()?;
        assert_eq!(held.get().as_deref(), Some("HTTP/1.1 200 OK"), "the held connection was dropped");
        String::from_utf8_lossy(&o.stdout).to_ascii_uppercase().contains(&serial).then_some(())
    });
    assert_eq!(held.get().as_deref(), Some("HTTP/1.1 200 OK"), "the held connection was dropped by the swap");
}

/// A DNS update the server refuses (a wrong TSIG secret): the certificate's last error says so,
/// with the server's answer, and the next attempt waits.
#[test]
fn a_refused_dns_update_is_reported_with_the_servers_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_named, dns) = bind(dir.path());
    let key = dir.path().join("wrong.key");
    std::fs::write(&key, "d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldC13cm9uZyE=\n").expect("key");
    let pebble_port = free_port();
    let _pebble = pebble(dir.path(), pebble_port, free_port(), dns, 3600);
    let s = server(dir.path(), pebble_port, Some((dns, &key)));
    let failed = eventually(60, "the failure is recorded", || certs(&s).into_iter().find(|c| c["last_error"].is_string()));
    // No certificate covers an environment's host: its URL stays plain HTTP.
    let repo = shop_repo(|t| t);
    s.json(&["app", "create", "--repo", repo.path().to_str().expect("utf-8")]);
    let id = web_env(&s);
    assert_eq!(web_url(&s, &id), format!("http://web-{id}.{DOMAIN}:{}/", s.router));
    let error = failed["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&format!(
            "the DNS server 127.0.0.1:{dns} refused the update of `_acme-challenge.{DOMAIN}`: Not authorized (TSIG error BADSIG"
        )),
        "{error}"
    );
    assert!(failed["serial"].is_null() && failed["next_attempt"].is_i64(), "{failed}");
    let o = s.cli(&["cert", "list"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("failing  1 time(s)"), "{text}");
    // The dashboard's Environments page shows it first.
    let cookie = dashboard_login(&s, &s.token());
    let page = http_raw(s.api, &format!("GET /ui/envs HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}"), b"").expect("page");
    assert!(page.contains("HTTPS: the certificate for <code>*.offshoot.test, offshoot.test</code> failed 1 time(s)"), "{page}");
    assert!(page.contains("TSIG error BADSIG"), "{page}");
    // `offshoot doctor` on the server's data directory says so too.
    let o = Command::new(support::bin())
        .args([
            "--output",
            "json",
            "doctor",
            "--data-dir",
            s.data.to_str().expect("utf-8"),
            "--listen",
            "127.0.0.1:1",
            "--router-listen",
            "127.0.0.1:1",
        ])
        .env_remove("OFFSHOOT_DATABASE_URL")
        .output()
        .expect("doctor");
    let report: serde_json::Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stdout)));
    let check = report["checks"].as_array().and_then(|c| c.iter().find(|c| c["name"] == "certificates")).cloned().unwrap_or_default();
    assert_eq!(check["ok"], false, "{check}");
    assert!(check["detail"].as_str().is_some_and(|d| d.contains("TSIG error BADSIG")), "{check}");
}
