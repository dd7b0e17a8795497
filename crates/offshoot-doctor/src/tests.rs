//! The verdicts, from what probes could have seen. The probes themselves are tested against a
//! real engine, real sockets and a real PostgreSQL in `crates/offshoot/tests/doctor.rs`.

use super::*;

fn info(api: &str) -> EngineInfo {
    EngineInfo { version: "20.10.24".into(), api_version: api.into(), negotiated_api_version: api.into(), root_dir: None }
}

#[test]
fn the_engine_needs_api_1_41() {
    assert_eq!(parse_api("1.41"), Some((1, 41)));
    assert_eq!(parse_api("1.9"), Some((1, 9)));
    assert_eq!(parse_api("x"), None);
    assert!(engine_check(&Ok(info("1.41")), "unix:///var/run/docker.sock").ok);
    assert!(engine_check(&Ok(info("1.50")), "unix:///var/run/docker.sock").ok);
    let old = engine_check(&Ok(info("1.40")), "unix:///var/run/docker.sock");
    assert!(!old.ok);
    assert!(old.fix.as_deref().is_some_and(|f| f.contains("20.10")), "{old:?}");
    let absent =
        engine_check(&Err(EngineError { message: "Socket not found".into(), socket_missing: true }), "unix:///nonexistent/docker.sock");
    assert!(!absent.ok);
    assert!(absent.detail.contains("unix:///nonexistent/docker.sock"), "{absent:?}");
    let fix = absent.fix.unwrap_or_default();
    assert!(fix.contains("apt-get install docker.io") && fix.contains("unset DOCKER_HOST"), "{fix}");
    let denied =
        engine_check(&Err(EngineError { message: "Permission denied (os error 13)".into(), socket_missing: false }), DEFAULT_DOCKER_HOST);
    assert!(denied.fix.as_deref().is_some_and(|f| f.contains("docker` group")), "{denied:?}");
}

#[test]
fn missing_images_say_how_to_get_them() {
    let seen = vec![("busybox:stable".to_owned(), Ok(false)), ("node:22".to_owned(), Ok(false)), ("alpine:3".to_owned(), Ok(true))];
    let c = images_check(Some(&seen));
    assert!(!c.ok);
    assert_eq!(c.detail, "not in the engine: busybox:stable, node:22");
    let fix = c.fix.unwrap_or_default();
    assert!(fix.contains("scripts/engine") && fix.contains("docker pull node:22"), "{fix}");
    assert!(!fix.contains("alpine"), "{fix}");
    let c = images_check(Some(&[("busybox:stable".to_owned(), Ok(true))]));
    assert!(c.ok && c.fix.is_none(), "{c:?}");
    let c = images_check(None);
    assert!(!c.ok && c.detail.contains("no engine"), "{c:?}");
}

#[test]
fn a_port_taken_by_offshoot_is_advice_by_another_program_a_failure() {
    let addr: SocketAddr = "127.0.0.1:7878".parse().expect("address");
    assert!(port_check("api-port", addr, "--listen", &PortSeen::Free).ok);
    let ours = port_check("api-port", addr, "--listen", &PortSeen::Taken { offshoot: true });
    assert!(ours.ok && ours.fix.is_some(), "{ours:?}");
    let theirs = port_check("api-port", addr, "--listen", &PortSeen::Taken { offshoot: false });
    assert!(!theirs.ok);
    assert!(theirs.fix.as_deref().is_some_and(|f| f.contains("ss -ltnp 'sport = :7878'") && f.contains("--listen")), "{theirs:?}");
    assert!(!port_check("router-port", addr, "--router-listen", &PortSeen::Denied).ok);
    assert!(!port_check("router-port", addr, "--router-listen", &PortSeen::NotLocal).ok);
}

#[test]
fn localhost_resolution_is_read_from_nsswitch() {
    assert!(nss_resolves_localhost("passwd: files\nhosts:          files myhostname dns\n"));
    assert!(nss_resolves_localhost("hosts: files resolve [!UNAVAIL=return] dns"));
    assert!(!nss_resolves_localhost("hosts:          files dns\n"));
    assert!(!nss_resolves_localhost("# hosts: myhostname\nhosts: files dns"));
    assert!(!nss_resolves_localhost(""));
    let router: SocketAddr = "127.0.0.1:8080".parse().expect("address");
    let c = domain_check("localhost", router, &DomainSeen::Localhost { system_resolves: false });
    assert!(c.ok && c.fix.as_deref().is_some_and(|f| f.contains("libnss-myhostname")), "{c:?}");
    let c = domain_check("localhost", router, &DomainSeen::Localhost { system_resolves: true });
    assert!(c.ok && c.fix.is_none(), "{c:?}");
}

#[test]
fn a_custom_domain_must_resolve_to_where_the_router_listens() {
    let lo: SocketAddr = "127.0.0.1:8080".parse().expect("address");
    let any: SocketAddr = "0.0.0.0:80".parse().expect("address");
    let ten: IpAddr = [10, 1, 2, 3].into();
    let c = domain_check("preview.example.com", lo, &DomainSeen::Unresolved("failed to lookup".into()));
    assert!(!c.ok && c.fix.as_deref().is_some_and(|f| f.contains("*.preview.example.com")), "{c:?}");
    let c = domain_check("preview.example.com", any, &DomainSeen::Resolved(vec![(ten, true)]));
    assert!(c.ok && c.fix.is_none(), "{c:?}");
    let c = domain_check("preview.example.com", lo, &DomainSeen::Resolved(vec![(ten, true)]));
    assert!(c.ok && c.fix.as_deref().is_some_and(|f| f.contains("--router-listen 0.0.0.0:8080")), "{c:?}");
    let c = domain_check("preview.example.com", any, &DomainSeen::Resolved(vec![(ten, false)]));
    assert!(c.ok && c.detail.contains("not an address of this machine"), "{c:?}");
}

fn present(mode: u32, files: &[(&str, u32)]) -> DataDirSeen {
    DataDirSeen::Present {
        mode,
        owner: 0,
        me: 0,
        write: Ok(()),
        private_files: files.iter().map(|(f, m)| ((*f).to_owned(), *m)).collect(),
        has_state: !files.is_empty(),
    }
}

#[test]
fn the_data_dir_must_be_writable_and_private() {
    let d = Path::new("/srv/offshoot");
    assert!(data_dir_check(d, &present(0o755, &[("secret.key", 0o600), ("admin-token", 0o600)])).ok);
    let c = data_dir_check(d, &present(0o777, &[]));
    assert!(!c.ok && c.fix.as_deref() == Some("`chmod go-w /srv/offshoot`"), "{c:?}");
    assert!(c.detail.contains("its group and every user"), "{c:?}");
    let c = data_dir_check(d, &present(0o700, &[("secret.key", 0o644), ("admin-token", 0o600)]));
    assert!(!c.ok && c.fix.as_deref() == Some("`chmod 600 /srv/offshoot/secret.key`"), "{c:?}");
    let c = data_dir_check(d, &DataDirSeen::NotADirectory);
    assert!(!c.ok && c.fix.as_deref().is_some_and(|f| f.contains("--data-dir")), "{c:?}");
    let c = data_dir_check(d, &DataDirSeen::Absent { parent: "/srv".into(), writable: false });
    assert!(!c.ok && c.fix.as_deref().is_some_and(|f| f.contains("mkdir -p /srv/offshoot")), "{c:?}");
    assert!(data_dir_check(d, &DataDirSeen::Absent { parent: "/srv".into(), writable: true }).ok);
    let c = data_dir_check(
        d,
        &DataDirSeen::Present {
            mode: 0o755,
            owner: 0,
            me: 0,
            write: Err("Read-only file system".into()),
            private_files: vec![],
            has_state: false,
        },
    );
    assert!(!c.ok && c.detail.contains("Read-only"), "{c:?}");
    let c =
        data_dir_check(d, &DataDirSeen::Present { mode: 0o755, owner: 1000, me: 0, write: Ok(()), private_files: vec![], has_state: true });
    assert!(c.ok && c.fix.is_some(), "{c:?}");
}

#[test]
fn disk_thresholds() {
    let seen = |free: u64| DiskSeen {
        places: vec![("data directory".into(), "/".into(), Ok(free)), ("Docker's storage".into(), "/var/lib/docker".into(), Ok(100 << 30))],
    };
    assert!(disk_check(&seen(50 << 30)).ok);
    assert!(disk_check(&seen(50 << 30)).fix.is_none());
    let warn = disk_check(&seen(5 << 30));
    assert!(warn.ok && warn.fix.is_some(), "{warn:?}");
    let fail = disk_check(&seen(1 << 30));
    assert!(!fail.ok && fail.detail.contains("1.0 GiB free"), "{fail:?}");
    let err = disk_check(&DiskSeen { places: vec![("data directory".into(), "/x".into(), Err("denied".into()))] });
    assert!(!err.ok, "{err:?}");
}

#[test]
fn database_failures_are_told_apart_and_passwords_never_shown() {
    assert_eq!(mask_url("postgres://offshoot:s3cret@db:5432/offshoot"), "postgres://offshoot:****@db:5432/offshoot");
    assert_eq!(mask_url("postgres://db/offshoot"), "postgres://db/offshoot");
    let failed = |error: &str| DatabaseSeen::Failed { target: "postgres://u:****@h/d".into(), error: error.into(), postgres: true };
    let c = database_check(&failed("password authentication failed for user \"u\""));
    assert!(!c.ok && c.fix.as_deref().is_some_and(|f| f.contains("user and password")), "{c:?}");
    let c = database_check(&failed("database \"d\" does not exist"));
    assert!(c.fix.as_deref().is_some_and(|f| f.contains("createdb")), "{c:?}");
    let c = database_check(&failed("Connection refused (os error 111)"));
    assert!(c.fix.as_deref().is_some_and(|f| f.contains("pg_isready")), "{c:?}");
    assert!(!database_check(&DatabaseSeen::Unsupported("mysql://h/d".into())).ok);
    assert!(database_check(&DatabaseSeen::SqliteNew("/d/offshoot.db".into())).ok);
    let c = database_check(&DatabaseSeen::SqliteNoDirectory("/d/offshoot.db".into()));
    assert!(!c.ok && c.fix.as_deref().is_some_and(|f| f.contains("data-dir")), "{c:?}");
}

#[test]
fn the_network_pool_says_what_is_left_and_what_else_uses_it() {
    let pool: NetworkPool = "10.213.0.0/16".parse().expect("pool");
    let seen = |free, overlaps: &[&str]| {
        Ok(PoolUse { pool, capacity: 256, free, host_overlaps: overlaps.iter().map(|s| (*s).to_owned()).collect() })
    };
    let c = pool_check(Some(&seen(250, &[])), pool);
    assert!(c.ok && c.fix.is_none(), "{c:?}");
    assert_eq!(c.detail, "10.213.0.0/16: 250 of 256 /24 networks free (one per environment)");
    let c = pool_check(Some(&seen(0, &[])), pool);
    assert!(!c.ok && c.fix.as_deref().is_some_and(|f| f.contains("--network-pool")), "{c:?}");
    let c = pool_check(Some(&seen(252, &["10.213.8.0/22"])), pool);
    assert!(c.ok && c.detail.contains("routes 10.213.8.0/22 inside it") && c.fix.is_some(), "{c:?}");
    assert!(!pool_check(None, pool).ok);
}

#[test]
fn failing_certificates_are_named_with_their_error() {
    assert!(certificates_check(&[]).ok);
    let c = certificates_check(&[("*.x.test,x.test".into(), "the DNS server refused".into(), 3)]);
    assert!(!c.ok);
    assert!(c.detail.contains("*.x.test, x.test (3 time(s)): the DNS server refused"), "{}", c.detail);
    assert!(c.fix.as_deref().is_some_and(|f| f.contains("offshoot cert list")));
}
