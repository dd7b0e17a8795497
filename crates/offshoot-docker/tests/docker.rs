//! Against the real Docker engine (started by `.ci/run`), with the local `busybox:stable` image.

use offshoot_docker::{DockerRuntime, managed_objects};
use offshoot_runtime::{BuildRequest, ContainerSpec, Mount, MountSource, Namespace, Outcome, Role, Runtime, RuntimeError, State};
use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

fn unique_env() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("t{:x}{}", (t ^ std::process::id()) & 0xfffff, N.fetch_add(1, Ordering::Relaxed))
}

async fn runtime() -> DockerRuntime {
    let rt = DockerRuntime::connect().await.expect("the Docker engine must be running (see .ci/run)");
    assert!(rt.image_exists("busybox:stable").await.expect("inspect"), "the local busybox:stable image is missing (see scripts/services)");
    rt
}

fn tar_of(files: &[(&str, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, body) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o755);
        h.set_cksum();
        b.append_data(&mut h, name, body.as_bytes()).expect("tar");
    }
    b.into_inner().expect("tar")
}

fn spec(env: &str, service: &str, image: &str, cmd: &[&str]) -> ContainerSpec {
    ContainerSpec {
        name: format!("offshoot-{env}-{service}"),
        service: service.into(),
        role: Role::Service,
        image: image.into(),
        entrypoint: None,
        cmd: Some(cmd.iter().map(|s| (*s).to_owned()).collect()),
        env: BTreeMap::new(),
        ports: vec![],
        mounts: vec![],
        cpu_millis: Some(500),
        memory_bytes: Some(64 * 1024 * 1024),
        cpu_request_millis: Some(100),
        memory_request_bytes: Some(128 * 1024 * 1024),
        volatile_env: Default::default(),
    }
}

/// A real HTTP/1.1 GET, retried while the server starts.
fn http_get_addr(addr: std::net::SocketAddr, path: &str) -> String {
    for _ in 0..50 {
        if let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = write!(s, "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
            let mut out = String::new();
            if s.read_to_string(&mut out).is_ok() && out.starts_with("HTTP/") {
                return out;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("no HTTP answer on {addr}");
}

#[tokio::test]
async fn environment_lifecycle_on_docker() {
    let rt = runtime().await;
    let env = unique_env();
    let ns = Namespace::new(&env, "shop", "docker-tests");
    rt.ensure_namespace(&ns).await.expect("namespace");
    rt.ensure_namespace(&ns).await.expect("namespace again");

    // Build from an in-memory context, with a build argument.
    let tag = format!("offshoot-test/{env}:web");
    let context = tar_of(&[(
        "Dockerfile",
        "FROM busybox:stable\nARG GREETING\nRUN mkdir -p /www && echo \"$GREETING\" > /www/index.html\nCMD [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n",
    )]);
    let lines = std::sync::Mutex::new(Vec::<String>::new());
    let req = BuildRequest {
        tag: tag.clone(),
        context,
        dockerfile: "Dockerfile".into(),
        args: BTreeMap::from([("GREETING".into(), "hello from the build".into())]),
        target: None,
        labels: BTreeMap::from([("offshoot.managed".into(), "true".into())]),
        auths: Default::default(),
    };
    rt.build(req, &|l| lines.lock().expect("lock").push(l.to_owned())).await.expect("build");
    assert!(!lines.lock().expect("lock").is_empty(), "build output is streamed");

    // A service answers real HTTP at its own address on its network; nothing is published on
    // the host.
    let mut web = spec(&env, "web", &tag, &["httpd", "-f", "-p", "8080", "-h", "/www"]);
    web.cmd = None; // the image's CMD
    web.ports = vec![8080];
    web.mounts = vec![Mount { source: MountSource::Volume("data".into()), target: "/data".into() }];
    let applied = rt.apply(&ns, &web).await.expect("apply web");
    assert_eq!(applied.outcome, Outcome::Created);
    let ip = applied.ip.expect("an address on the environment's network");
    assert!(http_get_addr(std::net::SocketAddr::new(ip, 8080), "/").contains("hello from the build"), "reachable at its own address");
    let published = std::process::Command::new("docker").args(["port", &web.name]).output().expect("docker port");
    assert_eq!(String::from_utf8_lossy(&published.stdout).trim(), "", "no port on the host");
    // Limits and requests: half a core, 64 MiB; a tenth of a core's share, a reservation of
    // at most the limit.
    let host = std::process::Command::new("docker")
        .args([
            "inspect",
            "--format",
            "{{.HostConfig.NanoCpus}} {{.HostConfig.Memory}} {{.HostConfig.CpuShares}} {{.HostConfig.MemoryReservation}}",
            &web.name,
        ])
        .output()
        .expect("docker inspect");
    assert_eq!(String::from_utf8_lossy(&host.stdout).trim(), "500000000 67108864 102 67108864");

    // Unchanged configuration: the container is left alone.
    let again = rt.apply(&ns, &web).await.expect("apply again");
    assert_eq!(again.outcome, Outcome::Unchanged);
    assert_eq!(again.ip, Some(ip), "the same container, the same address");

    // A file on the persistent volume survives a replacement.
    let put = rt.exec(&web.name, &["sh".into(), "-c".into(), "echo kept > /data/file".into()]).await.expect("exec");
    assert_eq!(put.exit_code, 0);
    web.env.insert("LEVEL".into(), "debug".into());
    let replaced = rt.apply(&ns, &web).await.expect("apply changed");
    assert_eq!(replaced.outcome, Outcome::Replaced);
    let got = rt.exec(&web.name, &["sh".into(), "-c".into(), "cat /data/file; echo $LEVEL".into()]).await.expect("exec");
    assert_eq!(got.logs.split_whitespace().collect::<Vec<_>>(), ["kept", "debug"]);

    // Services reach each other by name.
    let client = spec(&env, "client", "busybox:stable", &["sleep", "300"]);
    rt.apply(&ns, &client).await.expect("apply client");
    let fetched = rt
        .exec(
            &client.name,
            &["sh".into(), "-c".into(), "for i in 1 2 3 4 5; do wget -qO- http://web:8080/ && exit 0; sleep 0.5; done; exit 1".into()],
        )
        .await
        .expect("exec");
    assert_eq!(fetched.exit_code, 0, "{}", fetched.logs);
    assert!(fetched.logs.contains("hello from the build"));

    // A shmem volume is memory-backed and shared: what an init container writes, the service
    // reads.
    let shm = vec![Mount { source: MountSource::Tmpfs { name: "cache".into(), size: Some(8 << 20) }, target: "/cache".into() }];
    let mut init = spec(&env, "cached", "busybox:stable", &["sh", "-c", "echo warmed > /cache/state"]);
    init.role = Role::Init;
    init.name = format!("offshoot-{env}-cached-init");
    init.mounts = shm.clone();
    assert_eq!(rt.run_to_completion(&ns, &init, Duration::from_secs(30)).await.expect("init").exit_code, 0);
    let mut cached = spec(&env, "cached", "busybox:stable", &["sleep", "300"]);
    cached.mounts = shm;
    rt.apply(&ns, &cached).await.expect("apply cached");
    let seen =
        rt.exec(&cached.name, &["sh".into(), "-c".into(), "cat /cache/state; grep ' /cache ' /proc/mounts".into()]).await.expect("exec");
    assert!(seen.logs.contains("warmed") && seen.logs.contains("tmpfs"), "{}", seen.logs);
    rt.remove(&cached.name).await.expect("remove cached");

    // Jobs run to completion with their exit code and output, and are removed.
    let mut job = spec(&env, "migrate", "busybox:stable", &["sh", "-c", "echo migrating $RELEASE_ENV_ID; exit 3"]);
    job.role = Role::Job;
    job.name = format!("offshoot-{env}-job-migrate");
    job.env.insert("RELEASE_ENV_ID".into(), env.clone());
    let done = rt.run_to_completion(&ns, &job, Duration::from_secs(60)).await.expect("job");
    assert_eq!(done.exit_code, 3);
    assert!(done.logs.contains(&format!("migrating {env}")), "{}", done.logs);
    // A job that takes a while is waited for, not timed out early.
    let mut two = job.clone();
    two.cmd = Some(vec!["sh".into(), "-c".into(), "sleep 2; echo slept".into()]);
    let started = std::time::Instant::now();
    let done = rt.run_to_completion(&ns, &two, Duration::from_secs(300)).await.expect("two-second job");
    assert_eq!(done.exit_code, 0);
    assert!(started.elapsed() >= Duration::from_secs(2), "returned after {:?}", started.elapsed());
    let mut slow = job.clone();
    slow.cmd = Some(vec!["sleep".into(), "60".into()]);
    let timed_out = rt.run_to_completion(&ns, &slow, Duration::from_secs(1)).await;
    assert!(matches!(timed_out, Err(RuntimeError::Timeout { .. })), "{timed_out:?}");

    let listed = rt.list(Some(&env)).await.expect("list");
    let names: Vec<(&str, &str)> = listed.iter().map(|o| (o.service.as_str(), o.role.as_str())).collect();
    assert_eq!(names, [("", "holder"), ("client", "service"), ("web", "service")], "jobs are gone, services labelled");
    assert!(listed.iter().all(|o| o.state == State::Running && o.app == "shop" && o.instance == "docker-tests"));
    assert!(rt.logs(&web.name, 10).await.is_ok());

    // Teardown leaves no container, network or volume with the environment's label.
    rt.teardown(&env).await.expect("teardown");
    rt.teardown(&env).await.expect("teardown is idempotent");
    assert_eq!(managed_objects(&rt, &env).await.expect("objects"), Vec::<(String, String)>::new());
}

#[tokio::test]
async fn a_failing_build_reports_its_log_tail() {
    let rt = runtime().await;
    let env = unique_env();
    let req = BuildRequest {
        tag: format!("offshoot-test/{env}:broken"),
        context: tar_of(&[("Dockerfile", "FROM busybox:stable\nRUN echo about to fail && exit 7\n")]),
        dockerfile: "Dockerfile".into(),
        args: BTreeMap::new(),
        target: None,
        labels: BTreeMap::new(),
        auths: Default::default(),
    };
    match rt.build(req, &|_| {}).await {
        Err(RuntimeError::BuildFailed { message, log_tail, .. }) => {
            assert!(message.contains("non-zero code: 7") || message.contains("returned a non-zero code"), "{message}");
            assert!(log_tail.contains("about to fail"), "{log_tail}");
        }
        other => panic!("expected a failed build, got {other:?}"),
    }
}

#[tokio::test]
async fn an_unavailable_image_is_reported_with_the_registrys_message() {
    let rt = runtime().await;
    // A registry on a closed loopback port: the pull fails without leaving the machine.
    match rt.ensure_image("localhost:1/offshoot/missing:1", &Default::default()).await {
        Err(RuntimeError::ImageUnavailable { image, message }) => {
            assert_eq!(image, "localhost:1/offshoot/missing:1");
            assert!(message.contains("localhost:1"), "{message}");
        }
        other => panic!("expected ImageUnavailable, got {other:?}"),
    }
}

/// A static build's container: sources copied in before it starts, its output copied out after,
/// and removed in every case.
#[tokio::test]
async fn run_collect_copies_files_in_and_an_output_out() {
    let rt = runtime().await;
    let env = unique_env();
    let ns = Namespace::new(&env, "app", "test-instance");
    let dir = tempfile::tempdir().expect("tempdir");
    let files = tar_of(&[
        ("workspace/src/page.txt", "hello"),
        ("workspace/build.sh", "mkdir -p out/sub && cp src/page.txt out/sub/page.txt && echo \"built with $GREETING\""),
    ]);
    let mut s = spec(&env, "web", "busybox:stable", &["cd /workspace && sh build.sh"]);
    s.role = Role::Build;
    s.entrypoint = Some(vec!["/bin/sh".into(), "-c".into()]);
    s.env = BTreeMap::from([("GREETING".to_owned(), "hi".to_owned())]);
    let into = dir.path().join("out.tar");
    let (done, found) = rt.run_collect(&ns, &s, files.clone(), "/workspace/out", &into, Duration::from_secs(60)).await.expect("run");
    assert_eq!((done.exit_code, found), (0, true), "{}", done.logs);
    assert!(done.logs.contains("built with hi"), "{}", done.logs);
    let mut names: Vec<(String, String)> = tar::Archive::new(std::fs::File::open(&into).expect("archive"))
        .entries()
        .expect("entries")
        .filter_map(|e| {
            let mut e = e.expect("entry");
            let name = e.path().expect("path").display().to_string();
            let mut body = String::new();
            e.read_to_string(&mut body).ok()?;
            Some((name, body))
        })
        .filter(|(n, _)| n.ends_with(".txt"))
        .collect();
    names.sort();
    assert_eq!(names, [("out/sub/page.txt".to_owned(), "hello".to_owned())]);
    // A missing output, and a failing command: no archive, the exit code and the log.
    let (done, found) = rt.run_collect(&ns, &s, files.clone(), "/workspace/nowhere", &into, Duration::from_secs(60)).await.expect("run");
    assert_eq!((done.exit_code, found), (0, false));
    let failing = ContainerSpec { cmd: Some(vec!["echo about to fail; exit 3".into()]), ..s.clone() };
    let (done, found) = rt.run_collect(&ns, &failing, files, "/workspace/out", &into, Duration::from_secs(60)).await.expect("run");
    assert_eq!((done.exit_code, found), (3, false));
    assert!(done.logs.contains("about to fail"), "{}", done.logs);
    assert!(rt.list(Some(&env)).await.expect("list").is_empty(), "the build containers are removed");
    rt.teardown(&env).await.expect("teardown");
}

#[tokio::test]
async fn a_stopped_container_is_kept_and_starts_again_as_it_was() {
    let rt = runtime().await;
    let env = unique_env();
    let ns = Namespace::new(&env, "shop", "docker-tests");
    rt.ensure_namespace(&ns).await.expect("namespace");
    let mut web = spec(&env, "web", "busybox:stable", &["sh", "-c", "echo started >> /data/log; exec sleep 3600"]);
    web.mounts = vec![Mount { source: MountSource::Volume("data".into()), target: "/data".into() }];
    let applied = rt.apply(&ns, &web).await.expect("apply");
    let state = |list: Vec<offshoot_runtime::Observed>| list.into_iter().find(|o| o.service == "web").map(|o| o.state);
    assert_eq!(state(rt.list(Some(&env)).await.expect("list")), Some(State::Running));

    rt.stop(&web.name).await.expect("stop");
    rt.stop(&web.name).await.expect("stopping a stopped container is done");
    let listed = rt.list(Some(&env)).await.expect("list");
    assert!(matches!(state(listed), Some(s) if s != State::Running), "stopped, and still there");

    rt.start(&web.name).await.expect("start");
    rt.start(&web.name).await.expect("starting a running container is done");
    assert_eq!(state(rt.list(Some(&env)).await.expect("list")), Some(State::Running));
    let again = rt.apply(&ns, &web).await.expect("apply again");
    assert_eq!(again.outcome, Outcome::Unchanged, "the same container, not a new one");
    assert_eq!(again.ip.is_some(), applied.ip.is_some());
    // Its volume survived: the command ran twice into the same file.
    let done = rt.exec(&web.name, &["cat".into(), "/data/log".into()]).await.expect("exec");
    assert_eq!(done.logs.matches("started").count(), 2, "{}", done.logs);
    rt.teardown(&env).await.expect("teardown");
    assert!(rt.list(Some(&env)).await.expect("list").is_empty());
}

/// The subnet of a network, as the engine reports it.
async fn subnet_of(network: &str) -> String {
    let docker = bollard::Docker::connect_with_local_defaults().expect("docker").negotiate_version().await.expect("version");
    let n = docker.inspect_network(network, None).await.expect("inspect network");
    n.ipam.and_then(|i| i.config).unwrap_or_default().into_iter().find_map(|c| c.subnet).expect("subnet")
}

#[tokio::test]
async fn environment_networks_take_24s_of_their_own_pool_past_the_engines_few_default_ones() {
    // A pool of its own (10.214.0.0/18: 64 networks), apart from the servers' other tests.
    let rt = runtime().await.with_network_pool("10.214.0.0/18".parse().expect("pool"));
    let envs: Vec<String> = (0..40).map(|_| unique_env()).collect();
    let mut subnets = std::collections::BTreeSet::new();
    for env in &envs {
        rt.ensure_namespace(&Namespace::new(env, "many", "docker-tests"))
            .await
            .expect("40 networks, more than the engine's default pools hold");
        let s = subnet_of(&format!("offshoot-{env}")).await;
        assert!(s.starts_with("10.214.") && s.ends_with(".0/24"), "{s}");
        assert!(subnets.insert(s.clone()), "{s} given twice");
    }
    // A container gets an address of its network's subnet.
    let (env, ns) = (&envs[39], Namespace::new(&envs[39], "many", "docker-tests"));
    let applied = rt.apply(&ns, &spec(env, "web", "busybox:stable", &["sleep", "3600"])).await.expect("apply");
    let ip = applied.ip.expect("an address").to_string();
    let subnet = subnet_of(&format!("offshoot-{env}")).await;
    assert!(ip.starts_with(subnet.trim_end_matches("0/24")), "{ip} in {subnet}");
    for env in &envs {
        rt.teardown(env).await.expect("teardown");
    }

    // A pool with room for two: the third network is refused and says what to do.
    let small = runtime().await.with_network_pool("10.214.64.0/23".parse().expect("pool"));
    let three: Vec<String> = (0..3).map(|_| unique_env()).collect();
    small.ensure_namespace(&Namespace::new(&three[0], "many", "docker-tests")).await.expect("first");
    small.ensure_namespace(&Namespace::new(&three[1], "many", "docker-tests")).await.expect("second");
    let err = small.ensure_namespace(&Namespace::new(&three[2], "many", "docker-tests")).await.expect_err("no room");
    let text = err.to_string();
    assert!(
        text.contains("no free /24 is left in the network pool 10.214.64.0/23 (2 networks)") && text.contains("--network-pool"),
        "{text}"
    );
    for env in &three {
        small.teardown(env).await.expect("teardown");
        assert!(managed_objects(&small, env).await.expect("list").is_empty());
    }
}
