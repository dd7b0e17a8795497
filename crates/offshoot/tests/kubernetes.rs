//! `offshoot server --runtime kubernetes` end to end, without a cluster: the real server process,
//! real git, real image builds pushed to the real registry on 127.0.0.1:5000 (`scripts/services`),
//! and a stand-in Kubernetes API server on loopback that stores what is applied and reports
//! deployments ready and jobs complete, as a healthy cluster would. What a real cluster does with
//! the objects is the live test's part (`crates/offshoot-kube/tests/live.rs`).

mod support;

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use support::*;

#[derive(Clone, Default)]
struct FakeKube {
    objects: Arc<Mutex<BTreeMap<String, Value>>>,
    log: Arc<Mutex<Vec<String>>>,
    /// Deployments whose rollout does not finish (a cluster short of capacity), by name.
    held: Arc<Mutex<Vec<String>>>,
}

impl FakeKube {
    /// Starts serving on loopback; returns its port.
    fn start(&self) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let me = self.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let me = me.clone();
                std::thread::spawn(move || me.serve(conn));
            }
        });
        port
    }

    fn serve(&self, conn: std::net::TcpStream) {
        let mut reader = BufReader::new(conn.try_clone().expect("clone"));
        let mut out = conn;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let mut parts = line.split_whitespace();
            let (method, target) = (parts.next().unwrap_or("").to_owned(), parts.next().unwrap_or("").to_owned());
            let mut length = 0usize;
            let mut merge = false;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 {
                    return;
                }
                let h = h.trim_end();
                if h.is_empty() {
                    break;
                }
                if let Some((k, v)) = h.split_once(':') {
                    if k.eq_ignore_ascii_case("content-length") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    // A merge patch changes the stored object; an apply patch is the whole of it.
                    if k.eq_ignore_ascii_case("content-type") && v.contains("merge-patch") {
                        merge = true;
                    }
                }
            }
            let mut body = vec![0u8; length];
            if reader.read_exact(&mut body).is_err() {
                return;
            }
            let (status, answer) = self.handle(&method, &target, &body, merge);
            let bytes = serde_json::to_vec(&answer).expect("json");
            let head = format!("HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n", bytes.len());
            if out.write_all(head.as_bytes()).and_then(|_| out.write_all(&bytes)).is_err() {
                return;
            }
        }
    }

    fn handle(&self, method: &str, target: &str, body: &[u8], merge: bool) -> (u16, Value) {
        let path = target.split('?').next().unwrap_or("").to_owned();
        self.log.lock().expect("log").push(format!("{method} {path}"));
        let mut objects = self.objects.lock().expect("objects");
        let not_found = || {
            (
                404,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"}),
            )
        };
        match method {
            "GET" if path == "/version" => (
                200,
                json!({"major": "1", "minor": "37", "gitVersion": "v1.37.0-fake", "gitCommit": "0", "gitTreeState": "clean",
                    "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go", "compiler": "gc", "platform": "linux/amd64"}),
            ),
            "PATCH" => {
                // As a cluster: nothing goes into a namespace that does not exist.
                if let Some(rest) = path.split("/namespaces/").nth(1)
                    && let Some((ns, _)) = rest.split_once('/')
                    && !objects.contains_key(&format!("/api/v1/namespaces/{ns}"))
                {
                    return (
                        404,
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": format!("namespaces \"{ns}\" not found")}),
                    );
                }
                let patch: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
                let mut obj = match objects.get(&path) {
                    Some(old) if merge => merge_patch(old.clone(), patch),
                    None if merge => return not_found(),
                    _ => patch,
                };
                obj["metadata"]["generation"] = json!(1);
                let kind = obj["kind"].as_str().unwrap_or("").to_owned();
                if kind == "Deployment" || kind == "StatefulSet" {
                    let n = obj["spec"]["replicas"].as_i64().unwrap_or(1);
                    obj["status"] =
                        json!({"observedGeneration": 1, "replicas": n, "readyReplicas": n, "updatedReplicas": n, "availableReplicas": n});
                }
                if kind == "Job" {
                    obj["status"] = json!({"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]});
                }
                // A container whose command is `exit N` fails as on a cluster: a service's pod
                // crash-loops, a job fails, each with the container's exit code.
                if let Some(code) = exit_code(&obj)
                    && let Some(ns) = obj["metadata"]["namespace"].as_str().map(str::to_owned)
                {
                    let name = obj["metadata"]["name"].as_str().unwrap_or("").to_owned();
                    let container = obj["spec"]["template"]["spec"]["containers"][0]["name"].clone();
                    let (labels, status) = if kind == "Job" {
                        obj["status"] = json!({"failed": 1, "conditions": [{"type": "Failed", "status": "True",
                            "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]});
                        (
                            json!({"job-name": name}),
                            json!({"name": container, "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                            "state": {"terminated": {"exitCode": code}}}),
                        )
                    } else {
                        obj["status"]["readyReplicas"] = json!(0);
                        obj["status"]["availableReplicas"] = json!(0);
                        obj["status"]["unavailableReplicas"] = obj["spec"]["replicas"].clone();
                        (
                            obj["spec"]["template"]["metadata"]["labels"].clone(),
                            json!({"name": container, "image": "i", "imageID": "",
                            "ready": false, "restartCount": 3,
                            "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s restarting failed container"}},
                            "lastState": {"terminated": {"exitCode": code}}}),
                        )
                    };
                    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": format!("{name}-0"), "namespace": ns, "labels": labels},
                        "status": {"phase": "Running", "containerStatuses": [status]}});
                    objects.insert(format!("/api/v1/namespaces/{ns}/pods/{name}-0"), pod);
                }
                objects.insert(path, obj.clone());
                (200, obj)
            }
            "GET" => match objects.get(&path) {
                Some(o) if o["kind"] == "Deployment" || o["kind"] == "StatefulSet" => {
                    // Ready unless held: a held rollout has none of its replicas ready.
                    let mut o = o.clone();
                    let held = self.held.lock().expect("held").iter().any(|h| o["metadata"]["name"] == h.as_str());
                    if held {
                        o["status"]["readyReplicas"] = json!(0);
                        o["status"]["availableReplicas"] = json!(0);
                    }
                    (200, o)
                }
                Some(o) => (200, o.clone()),
                None => {
                    // A collection: its direct children.
                    let prefix = format!("{path}/");
                    // `labelSelector=key=value`, as prune sends it.
                    let selector: Option<(String, String)> = target
                        .split_once('?')
                        .and_then(|(_, q)| q.split('&').find_map(|kv| kv.strip_prefix("labelSelector=")))
                        .map(|v| v.replace("%3D", "=").replace("%2F", "/"))
                        .and_then(|v| v.split_once('=').map(|(a, b)| (a.to_owned(), b.to_owned())));
                    let items: Vec<Value> = objects
                        .iter()
                        .filter(|(k, _)| k.starts_with(&prefix) && !k[prefix.len()..].contains('/'))
                        .filter(|(_, v)| selector.as_ref().is_none_or(|(key, want)| v["metadata"]["labels"][key.as_str()] == want.as_str()))
                        .map(|(_, v)| v.clone())
                        .collect();
                    let segments: Vec<&str> = path.split('/').collect();
                    let collection = segments.len() >= 3 && segments[segments.len() - 3] == "namespaces";
                    if collection {
                        (200, json!({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": items}))
                    } else {
                        not_found()
                    }
                }
            },
            "DELETE" => match objects.remove(&path) {
                Some(o) => {
                    if o["kind"] == "Namespace" {
                        let name = o["metadata"]["name"].as_str().unwrap_or("").to_owned();
                        objects.retain(|k, _| !k.contains(&format!("/namespaces/{name}/")));
                    }
                    (200, o)
                }
                None => not_found(),
            },
            _ => not_found(),
        }
    }

    fn object(&self, path: &str) -> Option<Value> {
        self.objects.lock().expect("objects").get(path).cloned()
    }
}

/// `patch` merged into `target` as a JSON merge patch (RFC 7386): `null` removes a key.
fn merge_patch(mut target: Value, patch: Value) -> Value {
    match patch {
        Value::Object(fields) => {
            if !target.is_object() {
                target = json!({});
            }
            for (k, v) in fields {
                let map = target.as_object_mut().expect("an object");
                if v.is_null() {
                    map.remove(&k);
                } else {
                    let old = map.remove(&k).unwrap_or(Value::Null);
                    map.insert(k, merge_patch(old, v));
                }
            }
            target
        }
        other => other,
    }
}

/// `N` when a workload's or job's first container runs `exit N` (N not 0).
fn exit_code(obj: &Value) -> Option<i64> {
    let c = &obj["spec"]["template"]["spec"]["containers"][0];
    let words: Vec<&str> =
        ["command", "args"].iter().flat_map(|k| c[*k].as_array().into_iter().flatten()).filter_map(Value::as_str).collect();
    let text = words.join(" ");
    let code: i64 = text.split("exit ").nth(1)?.split(|ch: char| !ch.is_ascii_digit()).next()?.parse().ok()?;
    (code != 0).then_some(code)
}

/// A server on Kubernetes (the stand-in's), pushing to the local registry.
fn kube_server(fake: &FakeKube, dir: &tempfile::TempDir) -> Server {
    kube_server_with(fake, dir, &[])
}

fn kube_server_with(fake: &FakeKube, dir: &tempfile::TempDir, extra: &[&str]) -> Server {
    let args = kube_args(fake.start(), dir);
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    args.extend_from_slice(extra);
    Server::new_with(None, &args)
}

/// The server arguments for the stand-in on `port` (its kubeconfig written in `dir`).
fn kube_args(port: u16, dir: &tempfile::TempDir) -> Vec<String> {
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://127.0.0.1:{port}\nusers:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: u\ncurrent-context: fake\n"
        ),
    )
    .expect("kubeconfig");
    ["--runtime", "kubernetes", "--kubeconfig", kubeconfig.to_str().expect("utf-8"), "--registry", "127.0.0.1:5000"]
        .map(str::to_owned)
        .to_vec()
}

#[test]
fn an_environment_on_kubernetes_is_applied_step_by_step_and_its_namespace_deleted() {
    let fake = FakeKube::default();
    let dir = tempfile::tempdir().expect("tempdir");
    let s = kube_server(&fake, &dir);
    let repo = shop_repo(|t| t);
    s.json(&["app", "create", "--repo", repo.path().to_str().expect("utf-8")]);
    let e = s.json(&["env", "create", "shop", "--branch", "main", "--wait"]);
    assert_eq!(e["status"], "ready", "{e}");
    let id = e["id"].as_str().expect("id").to_owned();
    let ns = format!("offshoot-{id}");
    for svc in e["services"].as_array().expect("services") {
        assert_eq!(svc["status"], "ready", "{e}");
    }
    let web = e["services"].as_array().expect("services").iter().find(|s| s["name"] == "web").expect("web");
    assert_eq!(web["urls"][0].as_str(), Some(format!("http://web-{}.localhost/", e["id"].as_str().unwrap_or("")).as_str()), "{e}");

    // Built images were pushed to the registry and are run by digest.
    let api = fake.object(&format!("/apis/apps/v1/namespaces/{ns}/deployments/api")).expect("the api's Deployment");
    let image = api["spec"]["template"]["spec"]["containers"][0]["image"].as_str().expect("image").to_owned();
    assert!(image.starts_with("127.0.0.1:5000/offshoot/shop/api@sha256:"), "{image}");
    let catalog = http_raw(5000, "GET /v2/_catalog HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", b"").unwrap_or_default();
    assert!(catalog.contains("offshoot/shop/api"), "{catalog}");
    // The store (a public image) keeps its name; its volume is a claim.
    let store = fake.object(&format!("/apis/apps/v1/namespaces/{ns}/deployments/store")).expect("store");
    assert_eq!(store["spec"]["template"]["spec"]["containers"][0]["image"], "busybox:stable");
    assert!(fake.object(&format!("/api/v1/namespaces/{ns}/persistentvolumeclaims/store-store-data")).is_some());

    // Applied in the workflow's order (the store before the api that depends on it), the
    // migration job run, the ingresses last, all with server-side apply.
    let log = fake.log.lock().expect("log").clone();
    let at = |needle: &str| log.iter().position(|l| l == needle).unwrap_or_else(|| panic!("no `{needle}` in {log:#?}"));
    let ns_patch = at(&format!("PATCH /api/v1/namespaces/{ns}"));
    let store_patch = at(&format!("PATCH /apis/apps/v1/namespaces/{ns}/deployments/store"));
    let api_patch = at(&format!("PATCH /apis/apps/v1/namespaces/{ns}/deployments/api"));
    let job_patch = at(&format!("PATCH /apis/batch/v1/namespaces/{ns}/jobs/job-migrate"));
    let ingress =
        log.iter().position(|l| l.starts_with(&format!("PATCH /apis/networking.k8s.io/v1/namespaces/{ns}/ingresses/"))).expect("ingress");
    assert!(ns_patch < store_patch && store_patch < api_patch && api_patch < ingress && job_patch < ingress, "{log:#?}");
    // Secrets reach the cluster as Secret objects with their values; printed manifests mask them.
    let secret = fake.object(&format!("/api/v1/namespaces/{ns}/secrets/api-secrets")).expect("the api's Secret");
    let values: Vec<String> =
        secret["stringData"].as_object().expect("data").values().map(|v| v.as_str().unwrap_or("").to_owned()).collect();
    assert!(!values.is_empty() && values.iter().all(|v| !v.is_empty() && v != "[redacted]"), "{secret}");
    assert!(api.to_string().contains("secretKeyRef"), "the pod references the Secret: {api}");
    let rendered = String::from_utf8_lossy(&s.cli(&["env", "render", &id]).stdout).into_owned();
    assert!(rendered.contains("kind: Deployment") && values.iter().all(|v| !rendered.contains(v.as_str())), "{rendered}");

    // Teardown deletes the namespace and waits until it is gone.
    let d = s.json(&["env", "delete", &id, "--wait"]);
    assert_eq!(d["status"], "deleted", "{d}");
    assert!(fake.log.lock().expect("log").iter().any(|l| l == &format!("DELETE /api/v1/namespaces/{ns}")));
    assert!(fake.objects.lock().expect("objects").keys().all(|k| !k.contains(&ns)), "objects left in the namespace");
}

#[test]
fn imports_share_their_importers_namespace_on_kubernetes() {
    let fake = FakeKube::default();
    let dir = tempfile::tempdir().expect("tempdir");
    let s = kube_server(&fake, &dir);
    let backend = app_repo("backend", "api", "", None, true);
    let frontend = app_repo("frontend", "web", "app_imports:\n- name: backend\n", None, true);
    for r in [&backend, &frontend] {
        s.json(&["app", "create", "--repo", r.path().to_str().expect("utf-8")]);
    }
    let e = s.json(&["env", "create", "frontend", "--branch", "feature/new", "--wait"]);
    assert_eq!(e["status"], "ready", "{e}");
    let id = e["id"].as_str().expect("id").to_owned();
    let bid = e["imports"][0]["env_id"].as_str().expect("import").to_owned();
    let ns = format!("offshoot-{id}");
    // The import (deployed first) made the namespace; both apps' services live in it.
    let keys: Vec<String> = fake.objects.lock().expect("objects").keys().cloned().collect();
    let api = fake
        .object(&format!("/apis/apps/v1/namespaces/{ns}/deployments/api"))
        .unwrap_or_else(|| panic!("the import's Deployment: {keys:#?}"));
    assert_eq!(api["metadata"]["labels"]["offshoot.env"], bid.as_str());
    assert!(fake.object(&format!("/apis/apps/v1/namespaces/{ns}/deployments/web")).is_some());
    assert!(fake.object(&format!("/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies/offshoot-isolation")).is_some());
    assert!(
        fake.objects.lock().expect("objects").keys().all(|k| !k.contains(&format!("offshoot-{bid}"))),
        "the import has no namespace of its own"
    );
    let d = s.json(&["env", "delete", &id, "--wait"]);
    assert_eq!(d["status"], "deleted", "{d}");
    assert!(fake.objects.lock().expect("objects").keys().all(|k| !k.contains(&ns)), "objects left");
}

/// A static site on Kubernetes: built by the engine, stored, served by the server's router;
/// the cluster gets a Service without pods whose EndpointSlice names the router, and an Ingress
/// to that Service.
#[test]
fn static_sites_on_kubernetes_are_served_by_the_router_behind_the_ingress() {
    let fake = FakeKube::default();
    let dir = tempfile::tempdir().expect("tempdir");
    let s = kube_server_with(&fake, &dir, &["--static-upstream", "10.0.0.5:8080"]);
    let template = "app: site\nhostnames:\n- web: web-${env_id}.${domain}\nservices:\n- name: web\n  static: true\n  build_command: mkdir -p out && echo \"<h1>on k8s</h1>\" > out/index.html\n  build_output_directory: out\n";
    let repo = repo(template, None, &[("README", "site\n")], &[]);
    s.json(&["app", "create", "--repo", repo.path().to_str().expect("utf-8")]);
    s.json(&["app", "set", "site", "--static-builder", "busybox:stable"]);
    let e = s.json(&["env", "create", "site", "--branch", "main", "--wait"]);
    assert_eq!(e["status"], "ready", "{e}");
    let id = e["id"].as_str().expect("id").to_owned();
    let ns = format!("offshoot-{id}");
    let svc = fake.object(&format!("/api/v1/namespaces/{ns}/services/web")).expect("the site's Service");
    assert!(svc["spec"]["selector"].is_null(), "no pods: {svc}");
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 8080, "{svc}");
    let slice = fake.object(&format!("/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices/web-router")).expect("the EndpointSlice");
    assert_eq!(slice["endpoints"][0]["addresses"][0], "10.0.0.5", "{slice}");
    assert_eq!(slice["metadata"]["labels"]["kubernetes.io/service-name"], "web", "{slice}");
    let host = format!("web-{id}.localhost");
    let ingress =
        fake.object(&format!("/apis/networking.k8s.io/v1/namespaces/{ns}/ingresses/{}", host.replace('.', "-"))).expect("ingress");
    assert_eq!(ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["port"]["number"], 80, "{ingress}");
    assert!(fake.object(&format!("/apis/apps/v1/namespaces/{ns}/deployments/web")).is_none(), "no Deployment for a static site");
    // What the ingress forwards (the host kept), the router answers from the site storage.
    let page = http(s.router, &host, "/").expect("answer");
    assert!(page.contains("<h1>on k8s</h1>"), "{page}");
    let d = s.json(&["env", "delete", &id, "--wait"]);
    assert_eq!(d["status"], "deleted", "{d}");
}

#[test]
fn a_deployment_on_kubernetes_resumes_after_a_crash_without_running_a_finished_job_again() {
    let fake = FakeKube::default();
    let dir = tempfile::tempdir().expect("tempdir");
    let args = kube_args(fake.start(), &dir);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let data = dir.path().join("data");
    // The api's rollout does not finish: the server is killed while it waits.
    fake.held.lock().expect("held").push("api".into());
    let mut s = Server::start_with(&data, None, &args);
    let repo = shop_repo(|t| t);
    s.json(&["app", "create", "--repo", repo.path().to_str().expect("utf-8")]);
    let id = s.json(&["env", "create", "shop", "--branch", "main"])["id"].as_str().expect("id").to_owned();
    let ns = format!("offshoot-{id}");
    let count = |needle: &str| fake.log.lock().expect("log").iter().filter(|l| *l == needle).count();
    let api = format!("PATCH /apis/apps/v1/namespaces/{ns}/deployments/api");
    let job = format!("PATCH /apis/batch/v1/namespaces/{ns}/jobs/job-migrate");
    eventually(120, "the api's rollout to be waited for", || (count(&api) == 1).then_some(()));
    assert_eq!(count(&job), 1, "the migration ran before the api's step");
    let shown = s.json(&["env", "show", &id]);
    assert_eq!(shown["status"], "creating", "{shown}");
    s.kill();

    // A new server on the same data directory finishes the deployment from its step log.
    fake.held.lock().expect("held").clear();
    let s = Server::start_with(&data, None, &args);
    let e = eventually(120, "the resumed deployment to end", || {
        let e = s.json(&["env", "show", &id]);
        matches!(e["status"].as_str(), Some("ready" | "failed")).then_some(e)
    });
    assert_eq!(e["status"], "ready", "{e}");
    assert_eq!(count(&job), 1, "the finished migration did not run again");
    assert_eq!(count(&api), 2, "the interrupted rollout was applied again");
    let steps: Vec<&str> = e["deployments"][0]["steps"].as_array().expect("steps").iter().filter_map(|st| st["status"].as_str()).collect();
    assert!(steps.iter().all(|st| *st == "done"), "{e}");
}

#[test]
fn on_kubernetes_sleep_scales_workloads_to_zero_and_wake_restores_their_replicas() {
    let fake = FakeKube::default();
    let dir = tempfile::tempdir().expect("tempdir");
    let s = kube_server(&fake, &dir);
    // The api runs two replicas, and a cron job from it.
    let repo = shop_repo(|t| {
        format!(
            "{}cron_jobs:\n- name: nightly\n  from_services: api\n  schedule: '0 3 * * *'\n  command: [sh, -c, 'echo report']\n",
            t.replacen("- name: api\n", "- name: api\n  replicas: 2\n", 1)
        )
    });
    s.json(&["app", "create", "--repo", repo.path().to_str().expect("utf-8")]);
    let e = s.json(&["env", "create", "shop", "--branch", "main", "--wait"]);
    assert_eq!(e["status"], "ready", "{e}");
    let id = e["id"].as_str().expect("id").to_owned();
    let ns = format!("offshoot-{id}");
    let deployment = |name: &str| fake.object(&format!("/apis/apps/v1/namespaces/{ns}/deployments/{name}")).expect("deployment");
    let replicas = |name: &str| deployment(name)["spec"]["replicas"].as_i64();
    assert_eq!((replicas("api"), replicas("store")), (Some(2), Some(1)));
    // The cluster keeps the cron job's schedule; Offshoot says where its runs are.
    let cron = || fake.object(&format!("/apis/batch/v1/namespaces/{ns}/cronjobs/cron-nightly")).expect("a CronJob");
    assert_eq!(cron()["spec"]["schedule"], "0 3 * * *");
    assert_eq!(cron()["spec"]["concurrencyPolicy"], "Forbid");
    let jobs = s.json(&["env", "jobs", &id]);
    assert!(jobs[0]["note"].as_str().is_some_and(|n| n.contains(&format!("kubectl get jobs -n {ns}"))), "{jobs}");

    // Asleep: every workload at zero, what it ran kept in an annotation, the cron job suspended.
    let slept = s.json(&["env", "sleep", &id, "--wait"]);
    assert_eq!(slept["status"], "sleeping", "{slept}");
    assert_eq!(cron()["spec"]["suspend"], true);
    assert_eq!((replicas("api"), replicas("store")), (Some(0), Some(0)));
    assert_eq!(deployment("api")["metadata"]["annotations"]["offshoot.dev/replicas"], "2");
    assert_eq!(deployment("store")["metadata"]["annotations"]["offshoot.dev/replicas"], "1");
    // The rest of the object is the same one: a scale is a merge, not a new object.
    assert!(deployment("api")["spec"]["template"]["spec"]["containers"][0]["image"].as_str().is_some_and(|i| i.contains("@sha256:")));
    assert!(fake.object(&format!("/api/v1/namespaces/{ns}/persistentvolumeclaims/store-store-data")).is_some(), "volumes kept");

    // Awake: the replicas back, the annotation gone, ready once the rollout is.
    let woke = s.json(&["env", "wake", &id, "--wait"]);
    assert_eq!(woke["status"], "ready", "{woke}");
    assert_eq!((replicas("api"), replicas("store")), (Some(2), Some(1)));
    assert!(deployment("api")["metadata"]["annotations"].get("offshoot.dev/replicas").is_none(), "{}", deployment("api"));
    assert_eq!(cron()["spec"]["suspend"], false);
    // A sleep asked twice keeps the first count; a wake of an awake environment changes nothing.
    s.json(&["env", "sleep", &id, "--wait"]);
    s.json(&["env", "sleep", &id, "--wait"]);
    assert_eq!(deployment("api")["metadata"]["annotations"]["offshoot.dev/replicas"], "2");
    s.json(&["env", "wake", &id, "--wait"]);
    assert_eq!(s.json(&["env", "wake", &id, "--wait"])["status"], "ready");
    assert_eq!(replicas("api"), Some(2));
    assert_eq!(s.json(&["env", "delete", &id, "--wait"])["status"], "deleted");
}

/// The conformance scenarios of `offshoot_control::conformance` on Kubernetes: the same steps,
/// the same statuses, the same words in the reasons as on the fake engine and on Docker
/// (`tests/conformance.rs`), through the real server, the executor and `KubeBackend`, on the
/// stand-in (which fails a container that runs `exit N` as a cluster would).
#[test]
fn every_conformance_scenario_plays_the_same_on_kubernetes() {
    let fake = FakeKube::default();
    let dir = tempfile::tempdir().expect("tempdir");
    let s = kube_server(&fake, &dir);
    let envs = play_conformance(&s, "kconf");
    for id in &envs {
        assert_eq!(s.json(&["env", "delete", id, "--wait"])["status"], "deleted");
        assert!(fake.object(&format!("/api/v1/namespaces/offshoot-{id}")).is_none(), "the namespace of {id} is gone");
    }
}

#[test]
fn registry_credentials_reach_the_cluster_as_the_pods_pull_secret() {
    use std::io::Write as _;
    let fake = FakeKube::default();
    let dir = tempfile::tempdir().expect("tempdir");
    let s = kube_server(&fake, &dir);
    let mut login = std::process::Command::new(bin())
        .args(["registry", "login", "registry.example.com", "--username", "ci", "--password-stdin"])
        .env("OFFSHOOT_URL", format!("http://127.0.0.1:{}", s.api))
        .env("OFFSHOOT_TOKEN", s.token())
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("the CLI");
    login.stdin.take().expect("stdin").write_all(b"s3cret-token\n").expect("write");
    assert!(login.wait().expect("wait").success());
    let repo = shop_repo(|t| t);
    s.json(&["app", "create", "--repo", repo.path().to_str().expect("utf-8")]);
    let e = s.json(&["env", "create", "shop", "--branch", "main", "--wait"]);
    assert_eq!(e["status"], "ready", "{e}");
    let ns = format!("offshoot-{}", e["id"].as_str().expect("id"));
    let secret = fake.object(&format!("/api/v1/namespaces/{ns}/secrets/registry-shop")).expect("the pull secret");
    assert_eq!(secret["type"], "kubernetes.io/dockerconfigjson");
    let config = secret["stringData"][".dockerconfigjson"].as_str().unwrap_or_default();
    assert!(config.contains("registry.example.com") && config.contains("s3cret-token"), "the cluster gets the password: {config}");
    let api = fake.object(&format!("/apis/apps/v1/namespaces/{ns}/deployments/api")).expect("deployment");
    assert_eq!(api["spec"]["template"]["spec"]["imagePullSecrets"][0]["name"], "registry-shop", "{api}");
    // The rendered manifests name it, without the password.
    let r = s.json(&["env", "render", e["id"].as_str().expect("id")]);
    let yaml = r["yaml"].as_str().unwrap_or_default();
    assert!(yaml.contains("registry-shop") && !yaml.contains("s3cret-token"), "{yaml}");
}

/// The serial of a PEM certificate (upper-case hex), as `openssl x509` reads it.
fn serial_of(pem: &str, dir: &std::path::Path) -> String {
    let file = dir.join("serial-of.pem");
    std::fs::write(&file, pem).expect("pem");
    let o = std::process::Command::new("openssl").args(["x509", "-noout", "-serial", "-in"]).arg(&file).output().expect("openssl");
    String::from_utf8_lossy(&o.stdout).trim().trim_start_matches("serial=").to_ascii_uppercase()
}

/// HTTPS on Kubernetes with the ACME wildcard (DNS-01 through BIND, from Pebble): each
/// environment's Ingress names its own `kubernetes.io/tls` Secret holding the wildcard, its URLs
/// are `https`, and a renewal reaches the Secret of the environment already running.
#[test]
fn on_kubernetes_the_acme_wildcard_is_each_environments_tls_secret_and_is_renewed_in_place() {
    use support::acme::*;
    let fake = FakeKube::default();
    let dir = tempfile::tempdir().expect("tempdir");
    let (_named, dns) = bind(dir.path());
    let key = dir.path().join("tsig.key");
    std::fs::write(&key, TSIG_SECRET).expect("key");
    let pebble_port = free_port();
    let _pebble = pebble(dir.path(), pebble_port, free_port(), dns, 30);
    let acme = acme_args(dir.path(), pebble_port, Some((dns, &key)));
    let s = kube_server_with(&fake, &dir, &acme.iter().map(String::as_str).collect::<Vec<_>>());
    let certs = || s.json(&["cert", "list"]).as_array().cloned().unwrap_or_default();
    eventually(60, "the wildcard is issued", || certs().into_iter().find(|c| c["serial"].is_string()));
    let repo = shop_repo(|t| t);
    s.json(&["app", "create", "--repo", repo.path().to_str().expect("utf-8")]);
    let e = s.json(&["env", "create", "shop", "--branch", "main", "--wait"]);
    assert_eq!(e["status"], "ready", "{e}");
    let id = e["id"].as_str().expect("id").to_owned();
    let (ns, host) = (format!("offshoot-{id}"), format!("web-{id}.{DOMAIN}"));
    let web = e["services"].as_array().expect("services").iter().find(|s| s["name"] == "web").expect("web");
    assert_eq!(web["urls"][0].as_str(), Some(format!("https://{host}/").as_str()), "{e}");

    let ingress = fake.object(&format!("/apis/networking.k8s.io/v1/namespaces/{ns}/ingresses/web-{id}-offshoot-test")).expect("ingress");
    assert_eq!(ingress["spec"]["tls"], json!([{ "hosts": [host], "secretName": format!("tls-{id}") }]), "{ingress}");
    let secret_path = format!("/api/v1/namespaces/{ns}/secrets/tls-{id}");
    let secret = fake.object(&secret_path).expect("the certificate's Secret");
    assert_eq!(secret["type"], "kubernetes.io/tls", "{secret}");
    assert!(secret["stringData"]["tls.key"].as_str().is_some_and(|k| k.contains("PRIVATE KEY")), "the key itself, not masked");
    let served = serial_of(secret["stringData"]["tls.crt"].as_str().expect("tls.crt"), dir.path());
    assert!(
        certs().iter().any(|c| c["serial"].as_str().is_some_and(|x| x.eq_ignore_ascii_case(&served))),
        "the Secret holds the store's certificate ({served})"
    );
    // Printed manifests mask the key.
    let rendered = String::from_utf8_lossy(&s.cli(&["env", "render", &id]).stdout).into_owned();
    assert!(rendered.contains("kubernetes.io/tls") && !rendered.contains("PRIVATE KEY"), "{rendered}");

    // Pebble's certificates live 30 s: the renewal reaches the running environment's Secret.
    let renewed = eventually(60, "the wildcard is renewed", || {
        certs().into_iter().find_map(|c| c["serial"].as_str().map(str::to_ascii_uppercase).filter(|x| *x != served))
    });
    eventually(20, "the Secret holds the renewed certificate", || {
        let secret = fake.object(&secret_path)?;
        (serial_of(secret["stringData"]["tls.crt"].as_str()?, dir.path()) == renewed).then_some(())
    });
    s.json(&["env", "delete", &id, "--wait"]);
}

/// With `--cert-manager-issuer`, every Ingress asks cert-manager for its certificate (the
/// ClusterIssuer's annotation, a Secret name of its own) and the URLs are `https`.
#[test]
fn on_kubernetes_cert_manager_issues_each_ingresses_certificate() {
    let fake = FakeKube::default();
    let dir = tempfile::tempdir().expect("tempdir");
    let s = kube_server_with(&fake, &dir, &["--cert-manager-issuer", "letsencrypt-prod"]);
    let repo = shop_repo(|t| t);
    s.json(&["app", "create", "--repo", repo.path().to_str().expect("utf-8")]);
    let e = s.json(&["env", "create", "shop", "--branch", "main", "--wait"]);
    assert_eq!(e["status"], "ready", "{e}");
    let id = e["id"].as_str().expect("id").to_owned();
    let (ns, host) = (format!("offshoot-{id}"), format!("web-{id}.localhost"));
    let web = e["services"].as_array().expect("services").iter().find(|s| s["name"] == "web").expect("web");
    assert_eq!(web["urls"][0].as_str(), Some(format!("https://{host}/").as_str()), "{e}");
    let name = format!("web-{id}-localhost");
    let ingress = fake.object(&format!("/apis/networking.k8s.io/v1/namespaces/{ns}/ingresses/{name}")).expect("ingress");
    assert_eq!(ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"], "letsencrypt-prod", "{ingress}");
    assert_eq!(ingress["spec"]["tls"], json!([{ "hosts": [host], "secretName": format!("{name}-tls") }]), "{ingress}");
    assert!(fake.object(&format!("/api/v1/namespaces/{ns}/secrets/tls-{id}")).is_none(), "cert-manager makes the Secret");
    s.json(&["env", "delete", &id, "--wait"]);
}
