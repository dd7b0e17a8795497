//! `offshoot doctor`: checks that this machine can run `offshoot server` with a given
//! configuration, and for each problem says what to do. Every check runs, whatever the others
//! found, so one run lists every problem. The checks' verdicts are pure functions of what the
//! probes saw (tested without the probes); the probes are the engine's API, sockets, the
//! resolver, the file system and the database.

use offshoot_api_types::{DoctorCheck, DoctorReport};
use offshoot_docker::subnets::PoolUse;
use offshoot_docker::{DockerRuntime, EngineInfo, NetworkPool};
use offshoot_runtime::Runtime as _;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The oldest Docker Engine API Offshoot works with (Docker 20.10).
pub const MIN_API: (u32, u32) = (1, 41);
/// Free space under which the disk check fails.
pub const DISK_FAIL_BYTES: u64 = 2 << 30;
/// Free space under which the disk check warns.
pub const DISK_WARN_BYTES: u64 = 10 << 30;
/// How long any one probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the doctor checks: the configuration `offshoot server` would run with.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub router_listen: SocketAddr,
    pub data_dir: PathBuf,
    /// `postgres://...` or `sqlite://...`; `None`: SQLite in the data directory.
    pub database_url: Option<String>,
    pub domain: String,
    /// Images that must be in the engine.
    pub images: Vec<String>,
    /// Where environment networks take their subnets from (`--network-pool`).
    pub network_pool: NetworkPool,
}

/// Runs every check, in a fixed order: `engine`, `images`, `network-pool`, `api-port`,
/// `router-port`, `domain`, `data-dir`, `disk`, `database`.
pub async fn run(config: &Config) -> DoctorReport {
    let host = docker_host();
    let engine_and_images = async {
        match probe_engine(&host).await {
            Ok((rt, info)) => {
                let pool = bounded(rt.pool_use(config.network_pool)).await;
                (Ok(info), Some((probe_images(&rt, &config.images).await, pool)))
            }
            Err(e) => (Err(e), None),
        }
    };
    let ((engine, images), api, router, domain, database) = tokio::join!(
        engine_and_images,
        probe_port(config.listen, Fingerprint::Api),
        probe_port(config.router_listen, Fingerprint::Router),
        probe_domain(&config.domain),
        probe_database(config.database_url.as_deref(), &config.data_dir),
    );
    let (database, failing) = database;
    let engine_root = engine.as_ref().ok().and_then(|info| info.root_dir.as_deref()).map(Path::new);
    DoctorReport {
        checks: vec![
            engine_check(&engine, &host),
            images_check(images.as_ref().map(|(i, _)| i.as_slice())),
            pool_check(images.as_ref().map(|(_, p)| p), config.network_pool),
            port_check("api-port", config.listen, "--listen", &api),
            port_check("router-port", config.router_listen, "--router-listen", &router),
            domain_check(&config.domain, config.router_listen, &domain),
            data_dir_check(&config.data_dir, &inspect_data_dir(&config.data_dir)),
            disk_check(&disk_space(&config.data_dir, engine_root)),
            database_check(&database),
            certificates_check(&failing),
        ],
    }
}

/// `work`, given at most [`PROBE_TIMEOUT`]; its error, or the timeout, as text.
async fn bounded<T, E: std::fmt::Display>(work: impl std::future::Future<Output = Result<T, E>>) -> Result<T, String> {
    match tokio::time::timeout(PROBE_TIMEOUT, work).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer within {} s", PROBE_TIMEOUT.as_secs())),
    }
}

fn check(name: &str, ok: bool, detail: impl Into<String>, fix: Option<String>) -> DoctorCheck {
    DoctorCheck { name: name.to_owned(), ok, detail: detail.into(), fix }
}

// ---------------------------------------------------------------------------------------------
// The environments' network pool.

/// The pool's verdict: room left, and the machine's own networks inside it.
pub fn pool_check(seen: Option<&Result<PoolUse, String>>, pool: NetworkPool) -> DoctorCheck {
    let widen = "delete environments, or give the server a wider or another private `--network-pool`".to_owned();
    match seen {
        None => check("network-pool", false, "not checked: no engine answers", Some("fix the `engine` check first".to_owned())),
        Some(Err(e)) => check("network-pool", false, format!("cannot list the engine's networks: {e}"), None),
        Some(Ok(u)) if u.free == 0 => check(
            "network-pool",
            false,
            format!("{pool}: none of its {} /24 networks is free, so no environment can be created", u.capacity),
            Some(widen),
        ),
        Some(Ok(u)) => {
            let detail = format!("{pool}: {} of {} /24 networks free (one per environment)", u.free, u.capacity);
            if u.host_overlaps.is_empty() {
                check("network-pool", true, detail, None)
            } else {
                let routes = u.host_overlaps.join(", ");
                check(
                    "network-pool",
                    true,
                    format!("{detail}; this machine routes {routes} inside it, which environments skip"),
                    Some("choose a `--network-pool` that nothing on this machine's networks uses (a VPN, another bridge)".to_owned()),
                )
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The engine and its images.

/// The engine's socket when `DOCKER_HOST` is not set.
pub const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";

/// Where the engine is reached: `DOCKER_HOST`, else the default socket.
fn docker_host() -> String {
    std::env::var("DOCKER_HOST").unwrap_or_else(|_| DEFAULT_DOCKER_HOST.to_owned())
}

/// Why the engine did not answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineError {
    pub message: String,
    /// The engine's Unix socket does not exist: nothing is installed or started.
    pub socket_missing: bool,
}

async fn probe_engine(host: &str) -> Result<(DockerRuntime, EngineInfo), EngineError> {
    let work = async {
        let rt = DockerRuntime::connect().await?;
        let info = rt.engine_info().await?;
        Ok::<_, offshoot_runtime::RuntimeError>((rt, info))
    };
    bounded(work)
        .await
        .map_err(|message| EngineError { message, socket_missing: host.strip_prefix("unix://").is_some_and(|s| !Path::new(s).exists()) })
}

/// `1.41` → (1, 41).
fn parse_api(v: &str) -> Option<(u32, u32)> {
    let (major, minor) = v.trim().split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// The engine's verdict from what the probe saw.
pub fn engine_check(seen: &Result<EngineInfo, EngineError>, host: &str) -> DoctorCheck {
    match seen {
        Err(EngineError { message: e, socket_missing }) => {
            let fix = if *socket_missing {
                format!(
                    "install and start the Docker engine: `apt-get install docker.io`, then `systemctl start docker` (or `dockerd &` without systemd); `bash scripts/engine` does both{}",
                    if host == DEFAULT_DOCKER_HOST { "" } else { "; or unset DOCKER_HOST to use the default socket" }
                )
            } else if e.contains("ermission denied") {
                "run as root, or add your user to the `docker` group (`usermod -aG docker $USER`, then log in again)".to_owned()
            } else {
                "start the engine (`systemctl start docker`, or `dockerd &`), and read its log if it does not answer".to_owned()
            };
            check("engine", false, format!("no Docker engine answers at {host}: {e}"), Some(fix))
        }
        Ok(info) => {
            let detail = format!(
                "Docker {} at {host}, API {} (agreed: {}; Offshoot needs {}.{} or later)",
                info.version, info.api_version, info.negotiated_api_version, MIN_API.0, MIN_API.1
            );
            match parse_api(&info.api_version) {
                Some(v) if v >= MIN_API => check("engine", true, detail, None),
                _ => check(
                    "engine",
                    false,
                    detail,
                    Some("upgrade the engine to Docker 20.10 or later (`apt-get install docker.io`)".to_owned()),
                ),
            }
        }
    }
}

async fn probe_images(rt: &DockerRuntime, images: &[String]) -> Vec<(String, Result<bool, String>)> {
    let mut out = Vec::new();
    for image in images {
        out.push((image.clone(), bounded(rt.image_exists(image)).await));
    }
    out
}

/// The images' verdict; `None`: the engine could not be asked.
pub fn images_check(seen: Option<&[(String, Result<bool, String>)]>) -> DoctorCheck {
    let Some(seen) = seen else {
        return check("images", false, "not checked: no engine answers", Some("fix the `engine` check first".to_owned()));
    };
    let present: Vec<&str> = seen.iter().filter(|(_, r)| matches!(r, Ok(true))).map(|(i, _)| i.as_str()).collect();
    let missing: Vec<&str> = seen.iter().filter(|(_, r)| matches!(r, Ok(false))).map(|(i, _)| i.as_str()).collect();
    let failed: Vec<String> = seen.iter().filter_map(|(i, r)| r.as_ref().err().map(|e| format!("{i}: {e}"))).collect();
    if missing.is_empty() && failed.is_empty() {
        return check(
            "images",
            true,
            format!("present in the engine: {}", if present.is_empty() { "none asked for".to_owned() } else { present.join(", ") }),
            None,
        );
    }
    let mut detail = Vec::new();
    if !missing.is_empty() {
        detail.push(format!("not in the engine: {}", missing.join(", ")));
    }
    if !failed.is_empty() {
        detail.push(format!("could not be inspected: {}", failed.join("; ")));
    }
    let mut fixes = Vec::new();
    if missing.contains(&"busybox:stable") {
        fixes.push("`bash scripts/engine` builds busybox:stable from Debian's busybox-static".to_owned());
    }
    let others: Vec<&str> = missing.iter().copied().filter(|i| *i != "busybox:stable").collect();
    if !others.is_empty() {
        fixes.push(format!("`docker pull {}` (or `docker load -i FILE` on a machine without a registry)", others.join(" ")));
    }
    if !failed.is_empty() {
        fixes.push("read the engine's log".to_owned());
    }
    check("images", false, detail.join("; "), Some(fixes.join("; ")))
}

// ---------------------------------------------------------------------------------------------
// Ports.

/// What answers on a taken port, if it is Offshoot's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fingerprint {
    Api,
    Router,
}

/// What binding a port showed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortSeen {
    Free,
    /// Taken; `true` when an Offshoot server (API or router, as asked) answers there.
    Taken {
        offshoot: bool,
    },
    /// Not an address of this machine.
    NotLocal,
    /// Needs privileges this user lacks.
    Denied,
    Other(String),
}

async fn probe_port(addr: SocketAddr, kind: Fingerprint) -> PortSeen {
    match std::net::TcpListener::bind(addr) {
        Ok(_) => PortSeen::Free,
        Err(e) => match e.kind() {
            std::io::ErrorKind::AddrInUse => PortSeen::Taken { offshoot: is_offshoot(addr, kind).await },
            std::io::ErrorKind::AddrNotAvailable => PortSeen::NotLocal,
            std::io::ErrorKind::PermissionDenied => PortSeen::Denied,
            _ => PortSeen::Other(e.to_string()),
        },
    }
}

/// Whether an Offshoot server answers on `addr`: the API's `/healthz` says `ok`, the router
/// signs its own 404 for a host it does not know.
async fn is_offshoot(addr: SocketAddr, kind: Fingerprint) -> bool {
    let ip = match addr.ip() {
        IpAddr::V4(v) if v.is_unspecified() => IpAddr::from([127, 0, 0, 1]),
        IpAddr::V6(v) if v.is_unspecified() => IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let target = SocketAddr::new(ip, addr.port());
    let Ok(http) = reqwest::Client::builder().timeout(Duration::from_secs(3)).no_proxy().build() else {
        return false;
    };
    let request = match kind {
        Fingerprint::Api => http.get(format!("http://{target}/healthz")),
        Fingerprint::Router => http.get(format!("http://{target}/")).header(reqwest::header::HOST, "offshoot-doctor.invalid"),
    };
    let Ok(response) = request.send().await else {
        return false;
    };
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    match kind {
        Fingerprint::Api => status.is_success() && body.trim() == "ok",
        Fingerprint::Router => status == reqwest::StatusCode::NOT_FOUND && body.contains(offshoot_router::SIGNATURE),
    }
}

/// A port's verdict. `flag` is the server's option that sets it.
pub fn port_check(name: &str, addr: SocketAddr, flag: &str, seen: &PortSeen) -> DoctorCheck {
    let port = addr.port();
    match seen {
        PortSeen::Free => check(name, true, format!("{addr} is free"), None),
        PortSeen::Taken { offshoot: true } => check(
            name,
            true,
            format!("{addr} is taken by a running Offshoot server"),
            Some(format!(
                "that server is the one to use; to start another, stop it or give the new one another address ({flag}, and the same to `offshoot doctor`)"
            )),
        ),
        PortSeen::Taken { offshoot: false } => check(
            name,
            false,
            format!("{addr} is taken by another program"),
            Some(format!(
                "find it with `ss -ltnp 'sport = :{port}'` and stop it, or give the server another address ({flag}, and the same to `offshoot doctor`)"
            )),
        ),
        PortSeen::NotLocal => check(
            name,
            false,
            format!("{} is not an address of this machine", addr.ip()),
            Some(format!("use 127.0.0.1, 0.0.0.0 or one of the addresses `ip addr` lists ({flag})")),
        ),
        PortSeen::Denied => check(
            name,
            false,
            format!("binding {addr} is not permitted to this user"),
            Some(format!(
                "ports below 1024 need root or the capability: `setcap cap_net_bind_service=+ep $(command -v offshoot)`; or use a port above 1024 ({flag})"
            )),
        ),
        PortSeen::Other(e) => {
            check(name, false, format!("cannot bind {addr}: {e}"), Some(format!("give the server another address ({flag})")))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The domain.

/// What the resolver said of `offshoot-doctor.<domain>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DomainSeen {
    /// `*.localhost`: whether this machine's resolver (nsswitch) answers for it; it is not
    /// asked, so no query leaves the machine for a name that must never leave it.
    Localhost {
        system_resolves: bool,
    },
    /// The addresses the name resolved to, each with whether it is this machine's.
    Resolved(Vec<(IpAddr, bool)>),
    Unresolved(String),
}

fn is_localhost(domain: &str) -> bool {
    let d = domain.trim_end_matches('.').to_ascii_lowercase();
    d == "localhost" || d.ends_with(".localhost")
}

async fn probe_domain(domain: &str) -> DomainSeen {
    if is_localhost(domain) {
        let nsswitch = std::fs::read_to_string("/etc/nsswitch.conf").unwrap_or_default();
        return DomainSeen::Localhost { system_resolves: nss_resolves_localhost(&nsswitch) };
    }
    let name = format!("offshoot-doctor.{}", domain.trim_end_matches('.'));
    match bounded(tokio::net::lookup_host((name.as_str(), 80))).await {
        Err(e) => DomainSeen::Unresolved(e),
        Ok(addrs) => {
            let mut seen: Vec<(IpAddr, bool)> = Vec::new();
            for a in addrs {
                let ip = a.ip();
                if !seen.iter().any(|(s, _)| *s == ip) {
                    // An address is this machine's when a socket can be bound to it.
                    let local = ip.is_loopback() || std::net::UdpSocket::bind((ip, 0)).is_ok();
                    seen.push((ip, local));
                }
            }
            DomainSeen::Resolved(seen)
        }
    }
}

/// Whether the `hosts:` line of nsswitch.conf names a module that answers for `*.localhost`
/// (nss-myhostname, or systemd-resolved).
pub fn nss_resolves_localhost(nsswitch: &str) -> bool {
    nsswitch
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .find_map(|l| l.trim().strip_prefix("hosts:"))
        .is_some_and(|mods| mods.split_whitespace().any(|m| m == "myhostname" || m == "resolve"))
}

/// The domain's verdict. `router` is where the router will listen.
pub fn domain_check(domain: &str, router: SocketAddr, seen: &DomainSeen) -> DoctorCheck {
    let wildcard = format!("*.{}", domain.trim_end_matches('.'));
    match seen {
        DomainSeen::Localhost { system_resolves: true } => {
            check("domain", true, format!("{wildcard} resolves to this machine (loopback), through nsswitch"), None)
        }
        DomainSeen::Localhost { system_resolves: false } => check(
            "domain",
            true,
            format!("{wildcard} is loopback by definition (RFC 6761): browsers and curl resolve it themselves, but this machine's resolver does not (/etc/nsswitch.conf)"),
            Some("for other programs (wget, scripts), `apt-get install libnss-myhostname` and add `myhostname` to the `hosts:` line of /etc/nsswitch.conf; or send the `Host:` header to 127.0.0.1".to_owned()),
        ),
        DomainSeen::Unresolved(e) => check(
            "domain",
            false,
            format!("offshoot-doctor.{} does not resolve: {e}", domain.trim_end_matches('.')),
            Some(format!("add a wildcard DNS record `{wildcard}` (A or AAAA) naming this machine; or try Offshoot with `--domain localhost`, which needs no DNS")),
        ),
        DomainSeen::Resolved(addrs) => {
            let list = addrs.iter().map(|(ip, _)| ip.to_string()).collect::<Vec<_>>().join(", ");
            let foreign: Vec<String> = addrs.iter().filter(|(_, local)| !local).map(|(ip, _)| ip.to_string()).collect();
            if !foreign.is_empty() {
                return check(
                    "domain",
                    true,
                    format!("{wildcard} resolves to {list}; {} not an address of this machine", foreign.join(", ")),
                    Some(format!("that is right behind a load balancer or NAT that forwards to this machine's router; otherwise point `{wildcard}` at this machine")),
                );
            }
            let router_ip = router.ip();
            let reachable = router_ip.is_unspecified() || addrs.iter().any(|(ip, _)| *ip == router_ip);
            if !reachable {
                return check(
                    "domain",
                    true,
                    format!("{wildcard} resolves to {list}, this machine, but the router listens on {router_ip} only"),
                    Some(format!("listen where the name points: `--router-listen 0.0.0.0:{}` (or one of {list})", router.port())),
                );
            }
            check("domain", true, format!("{wildcard} resolves to {list}, this machine"), None)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The data directory.

/// What the file system showed of the data directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataDirSeen {
    /// Absent; `parent` is the nearest directory that exists, `writable` whether a directory
    /// can be made there.
    Absent {
        parent: PathBuf,
        writable: bool,
    },
    NotADirectory,
    Present {
        mode: u32,
        owner: u32,
        me: u32,
        /// Creating and removing a file worked, or the error.
        write: Result<(), String>,
        /// Private files (`secret.key`, `admin-token`) and their modes.
        private_files: Vec<(String, u32)>,
        /// Whether a server's state is there already.
        has_state: bool,
    },
    Unreadable(String),
}

fn inspect_data_dir(dir: &Path) -> DataDirSeen {
    let meta = match std::fs::metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let parent = dir.ancestors().skip(1).find(|p| p.is_dir()).map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
            let writable = rustix::fs::access(&parent, rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK).is_ok();
            return DataDirSeen::Absent { parent, writable };
        }
        Err(e) => return DataDirSeen::Unreadable(e.to_string()),
    };
    if !meta.is_dir() {
        return DataDirSeen::NotADirectory;
    }
    let probe = dir.join(format!(".offshoot-doctor-{}", std::process::id()));
    let write = std::fs::write(&probe, b"probe").and_then(|()| std::fs::remove_file(&probe)).map_err(|e| e.to_string());
    let private_files = ["secret.key", "admin-token"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join(f)).ok().map(|m| ((*f).to_owned(), m.permissions().mode() & 0o7777)))
        .collect();
    DataDirSeen::Present {
        mode: meta.permissions().mode() & 0o7777,
        owner: meta.uid(),
        me: rustix::process::geteuid().as_raw(),
        write,
        private_files,
        has_state: dir.join("offshoot.db").exists() || dir.join("secret.key").exists(),
    }
}

/// The data directory's verdict.
pub fn data_dir_check(dir: &Path, seen: &DataDirSeen) -> DoctorCheck {
    let d = dir.display();
    let other = "or give the server another directory (--data-dir, or OFFSHOOT_DATA_DIR)";
    match seen {
        DataDirSeen::Absent { parent, writable: true } => {
            check("data-dir", true, format!("{d} does not exist yet; the server will create it (in {}, writable)", parent.display()), None)
        }
        DataDirSeen::Absent { parent, writable: false } => check(
            "data-dir",
            false,
            format!("{d} does not exist and cannot be created: {} is not writable by this user", parent.display()),
            Some(format!("create it and give it to this user (`mkdir -p {d} && chown $(id -u) {d} && chmod 700 {d}`), {other}")),
        ),
        DataDirSeen::NotADirectory => check("data-dir", false, format!("{d} is not a directory"), Some(format!("move it away, {other}"))),
        DataDirSeen::Unreadable(e) => {
            check("data-dir", false, format!("{d} cannot be read: {e}"), Some(format!("give this user access to it, {other}")))
        }
        DataDirSeen::Present { mode, owner, me, write, private_files, has_state } => {
            if let Err(e) = write {
                return check(
                    "data-dir",
                    false,
                    format!("{d} is not writable: {e}"),
                    Some(format!("`chown -R $(id -u) {d}` (it is owned by uid {owner}), or mount it read-write, {other}")),
                );
            }
            if mode & 0o022 != 0 {
                return check(
                    "data-dir",
                    false,
                    format!(
                        "{d} is writable by {} (mode {mode:04o}): they could replace the server's secret key or database",
                        who(*mode, 0o020, 0o002)
                    ),
                    Some(format!("`chmod go-w {d}`")),
                );
            }
            let exposed: Vec<String> =
                private_files.iter().filter(|(_, m)| m & 0o077 != 0).map(|(f, m)| format!("{f} (mode {m:04o})")).collect();
            if !exposed.is_empty() {
                let paths: Vec<String> =
                    private_files.iter().filter(|(_, m)| m & 0o077 != 0).map(|(f, _)| dir.join(f).display().to_string()).collect();
                return check(
                    "data-dir",
                    false,
                    format!(
                        "in {d}, {} can be read by other users: the secret key decrypts every stored secret, the token is the admin's",
                        exposed.join(", ")
                    ),
                    Some(format!("`chmod 600 {}`", paths.join(" "))),
                );
            }
            let state = if *has_state { "holds a server's state" } else { "empty of state" };
            if owner != me {
                return check(
                    "data-dir",
                    true,
                    format!("{d}: writable, mode {mode:04o}, {state}, but owned by uid {owner}, not by this user (uid {me})"),
                    Some(format!("run the server as uid {owner}, or `chown -R $(id -u) {d}`")),
                );
            }
            check("data-dir", true, format!("{d}: writable, mode {mode:04o}, owned by this user, {state}"), None)
        }
    }
}

fn who(mode: u32, group_bit: u32, other_bit: u32) -> &'static str {
    match (mode & group_bit != 0, mode & other_bit != 0) {
        (true, true) => "its group and every user",
        (true, false) => "its group",
        _ => "every user",
    }
}

// ---------------------------------------------------------------------------------------------
// Disk.

/// Free space of the file systems the server fills: the data directory's (database, static
/// sites, proxy buffers) and the engine's (images, containers, volumes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskSeen {
    /// (what, path measured, free bytes or the error).
    pub places: Vec<(String, PathBuf, Result<u64, String>)>,
}

fn disk_space(data_dir: &Path, engine_root: Option<&Path>) -> DiskSeen {
    let existing = |p: &Path| p.ancestors().find(|a| a.exists()).map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
    let free = |p: &Path| rustix::fs::statvfs(p).map(|s| s.f_bavail.saturating_mul(s.f_frsize)).map_err(|e| e.to_string());
    let mut places = Vec::new();
    let d = existing(data_dir);
    places.push(("data directory".to_owned(), d.clone(), free(&d)));
    // The engine's root is only measurable when the engine runs on this machine.
    if let Some(root) = engine_root.filter(|r| r.exists()) {
        places.push(("Docker's storage".to_owned(), root.to_path_buf(), free(root)));
    }
    DiskSeen { places }
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / f64::from(1u32 << 30))
}

/// The disk's verdict.
pub fn disk_check(seen: &DiskSeen) -> DoctorCheck {
    let detail = seen
        .places
        .iter()
        .map(|(what, p, r)| match r {
            Ok(b) => format!("{what} {}: {} free", p.display(), gib(*b)),
            Err(e) => format!("{what} {}: cannot measure ({e})", p.display()),
        })
        .collect::<Vec<_>>()
        .join("; ");
    let least = seen.places.iter().filter_map(|(_, _, r)| r.as_ref().ok().copied()).min();
    let errors = seen.places.iter().any(|(_, _, r)| r.is_err());
    let fix = "free space: `docker system prune` removes stopped containers, unused images and the build cache; `offshoot env list` shows environments you may delete".to_owned();
    match least {
        Some(b) if b < DISK_FAIL_BYTES => check("disk", false, format!("{detail} (needs at least {})", gib(DISK_FAIL_BYTES)), Some(fix)),
        Some(b) if b < DISK_WARN_BYTES => {
            check("disk", true, format!("{detail} (builds fill it quickly under {})", gib(DISK_WARN_BYTES)), Some(fix))
        }
        _ if errors => check("disk", false, detail, Some("check that the paths exist and can be read".to_owned())),
        _ => check("disk", true, detail, None),
    }
}

// ---------------------------------------------------------------------------------------------
// The database.

/// What connecting to the database showed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatabaseSeen {
    /// SQLite in a file that does not exist yet.
    SqliteNew(PathBuf),
    /// SQLite in a data directory that is not a directory.
    SqliteNoDirectory(PathBuf),
    /// SQLite opened; the number of tables.
    Sqlite {
        path: PathBuf,
        tables: i64,
    },
    Postgres {
        server: String,
        version: String,
    },
    Failed {
        target: String,
        error: String,
        postgres: bool,
    },
    Unsupported(String),
}

/// The URL without its password, for messages.
pub fn mask_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("****"));
            }
            u.to_string()
        }
        Err(_) => "(an unparsable URL)".to_owned(),
    }
}

/// A certificate from ACME whose last attempt failed: its names, the error, failures in a row.
pub type FailingCert = (String, String, i64);

const FAILING_CERTS: &str = "SELECT names, last_error, failures FROM certificates WHERE last_error IS NOT NULL ORDER BY name";

/// Whether certificates from ACME fail to be issued or renewed (as the server recorded).
pub fn certificates_check(failing: &[FailingCert]) -> DoctorCheck {
    if failing.is_empty() {
        return check("certificates", true, "no certificate from ACME is failing", None);
    }
    let each: Vec<String> =
        failing.iter().map(|(names, error, n)| format!("{} ({n} time(s)): {error}", names.replace(',', ", "))).collect();
    check(
        "certificates",
        false,
        format!("{} certificate(s) failing to be issued or renewed: {}", failing.len(), each.join("; ")),
        Some("`offshoot cert list` says when each is tried again; see docs/routing.md, Automatic HTTPS".to_owned()),
    )
}

async fn probe_database(url: Option<&str>, data_dir: &Path) -> (DatabaseSeen, Vec<FailingCert>) {
    use sqlx::Connection as _;
    let sqlite_path = match url {
        None => data_dir.join("offshoot.db"),
        Some(u) if u.starts_with("sqlite:") => {
            PathBuf::from(u.trim_start_matches("sqlite://").trim_start_matches("sqlite:").split('?').next().unwrap_or(""))
        }
        Some(u) if u.starts_with("postgres://") || u.starts_with("postgresql://") => {
            let target = mask_url(u);
            let work = async {
                let mut conn = sqlx::PgConnection::connect(u).await?;
                let version: String = sqlx::query_scalar("SHOW server_version").fetch_one(&mut conn).await?;
                // Before the first start (or before ACME was added) there is no such table.
                let failing: Vec<FailingCert> = sqlx::query_as(FAILING_CERTS).fetch_all(&mut conn).await.unwrap_or_default();
                let _ = conn.close().await;
                Ok::<_, sqlx::Error>((version, failing))
            };
            return match bounded(work).await {
                Ok((version, failing)) => (DatabaseSeen::Postgres { server: target, version }, failing),
                Err(error) => (DatabaseSeen::Failed { target, error, postgres: true }, Vec::new()),
            };
        }
        Some(u) => return (DatabaseSeen::Unsupported(mask_url(u)), Vec::new()),
    };
    if !sqlite_path.exists() {
        let seen = match sqlite_path.parent() {
            Some(dir) if dir.exists() && !dir.is_dir() => DatabaseSeen::SqliteNoDirectory(sqlite_path),
            _ => DatabaseSeen::SqliteNew(sqlite_path),
        };
        return (seen, Vec::new());
    }
    let opts = sqlx::sqlite::SqliteConnectOptions::new().filename(&sqlite_path).read_only(true);
    let work = async {
        let mut conn = sqlx::SqliteConnection::connect_with(&opts).await?;
        let tables: i64 = sqlx::query_scalar("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetch_one(&mut conn).await?;
        let failing: Vec<FailingCert> = sqlx::query_as(FAILING_CERTS).fetch_all(&mut conn).await.unwrap_or_default();
        let _ = conn.close().await;
        Ok::<_, sqlx::Error>((tables, failing))
    };
    let target = format!("SQLite {}", sqlite_path.display());
    match bounded(work).await {
        Ok((tables, failing)) => (DatabaseSeen::Sqlite { path: sqlite_path, tables }, failing),
        Err(error) => (DatabaseSeen::Failed { target, error, postgres: false }, Vec::new()),
    }
}

/// The database's verdict.
pub fn database_check(seen: &DatabaseSeen) -> DoctorCheck {
    match seen {
        DatabaseSeen::SqliteNew(p) => check("database", true, format!("SQLite {}, created at the server's first start", p.display()), None),
        DatabaseSeen::SqliteNoDirectory(p) => check(
            "database",
            false,
            format!("SQLite {} cannot be created: its directory is not a directory", p.display()),
            Some("fix the `data-dir` check first".to_owned()),
        ),
        DatabaseSeen::Sqlite { path, tables } => check("database", true, format!("SQLite {} opens ({tables} tables)", path.display()), None),
        DatabaseSeen::Postgres { server, version } => check("database", true, format!("PostgreSQL {version} at {server}"), None),
        DatabaseSeen::Unsupported(u) => check(
            "database",
            false,
            format!("{u} is not a database Offshoot keeps its state in"),
            Some("use `postgres://USER:PASSWORD@HOST:PORT/DB`, or leave --database-url out for SQLite in the data directory".to_owned()),
        ),
        DatabaseSeen::Failed { target, error, postgres: true } => {
            let fix = if error.contains("password authentication failed") {
                "check the user and password in --database-url (OFFSHOOT_DATABASE_URL)".to_owned()
            } else if error.contains("does not exist") {
                "create the database and its owner (`createdb -O USER DB` as the postgres user)".to_owned()
            } else {
                "start PostgreSQL (`pg_ctlcluster VERSION main start`) and check the host and port in --database-url; `pg_isready -h HOST -p PORT` tells whether it answers".to_owned()
            };
            check("database", false, format!("cannot use {target}: {error}"), Some(fix))
        }
        DatabaseSeen::Failed { target, error, postgres: false } => check(
            "database",
            false,
            format!("cannot open {target}: {error}"),
            Some("check its permissions; if another program holds it locked, stop it; a damaged file can be moved away (the server starts a new one, losing its state)".to_owned()),
        ),
    }
}

#[cfg(test)]
mod tests;
