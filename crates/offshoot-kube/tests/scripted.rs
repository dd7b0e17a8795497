//! Apply, prune, rollout, jobs and namespace deletion against a scripted API server (kube's
//! client over tower-test's mock service): every request the client makes is recorded, and the
//! script answers as a cluster would, including its failures.

use http::{Method, Request, Response};
use kube::client::Body;
use offshoot_kube::{FIELD_MANAGER, Kube, KubeError};
use offshoot_manifests::{Manifest, Options, render};
use offshoot_template::document::{self, Kind};
use offshoot_template::resolve;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Log = Arc<Mutex<Vec<String>>>;

/// A client whose API server is `script`: (method, path and query, body) → (status, JSON).
fn fake(mut script: impl FnMut(&Method, &str, &Value) -> (u16, Value) + Send + 'static) -> (Kube, Log) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let log: Log = Arc::default();
    let seen = log.clone();
    tokio::spawn(async move {
        let mut handle = std::pin::pin!(handle);
        while let Some((req, send)) = handle.next_request().await {
            let (parts, body) = req.into_parts();
            let bytes = body.collect_bytes().await.unwrap_or_default();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let path = parts.uri.to_string();
            seen.lock().expect("log").push(format!("{} {path}", parts.method));
            let (status, answer) = script(&parts.method, &path, &body);
            if let (Some(text), true) = (answer.as_str(), path.contains("/log?") && status < 400) {
                send.send_response(Response::builder().status(status).body(Body::from(text.as_bytes().to_vec())).expect("response"));
                continue;
            }
            let answer = if status >= 400 {
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": answer.as_str().unwrap_or("error"), "reason": "NotFound", "code": status})
            } else {
                answer
            };
            let resp = Response::builder().status(status).body(Body::from(serde_json::to_vec(&answer).expect("json"))).expect("response");
            send.send_response(resp);
        }
    });
    let client = kube::Client::new(service, "default");
    (Kube::from_client(client, Duration::from_millis(5)), log)
}

fn shop() -> Vec<Manifest> {
    let dir = std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()))
        .join("../../examples/shop/.release");
    let t = std::fs::read_to_string(dir.join("application_template.yaml")).expect("template");
    let v = std::fs::read_to_string(dir.join("environment_variables.yaml")).expect("vars");
    let doc = document::check("t", &t, Some(Kind::Template));
    let vars = document::check("v", &v, Some(Kind::EnvVars)).env_vars;
    let opts = resolve::Options { branch: "main".into(), env_id: "abc1234".into(), domain: "example.com".into(), ..Default::default() };
    let r = resolve::resolve("t", &doc.root.expect("root"), vars.as_ref(), &opts).expect("resolves");
    render(&r, &Options::new("offshoot-abc1234", "i1")).manifests
}

#[tokio::test]
async fn apply_is_server_side_with_one_field_manager() {
    let (kube, log) = fake(|m, _, body| {
        assert_eq!(m, Method::PATCH);
        (200, body.clone())
    });
    let manifests = shop();
    kube.apply(&manifests).await.expect("apply");
    kube.apply(&manifests).await.expect("apply again: the same requests, nothing else");
    let log = log.lock().expect("log").clone();
    assert_eq!(log.len(), manifests.len() * 2);
    assert_eq!(log[0], format!("PATCH /api/v1/namespaces/offshoot-abc1234?&force=true&fieldManager={FIELD_MANAGER}"));
    assert!(
        log.contains(&format!("PATCH /apis/apps/v1/namespaces/offshoot-abc1234/deployments/api?&force=true&fieldManager={FIELD_MANAGER}")),
        "{log:?}"
    );
    assert!(log.iter().any(|l| l.starts_with("PATCH /apis/networking.k8s.io/v1/namespaces/offshoot-abc1234/ingresses/")), "{log:?}");
    assert!(log.iter().any(|l| l.starts_with("PATCH /apis/batch/v1/namespaces/offshoot-abc1234/jobs/job-migrate")), "{log:?}");
    assert_eq!(log[..manifests.len()], log[manifests.len()..], "idempotent");
}

fn list(items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": items})
}

fn named(api_version: &str, kind: &str, name: &str) -> Value {
    json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": name, "namespace": "ns"}})
}

#[tokio::test]
async fn prune_deletes_what_the_template_no_longer_has() {
    let (kube, log) = fake(|m, path, _| match (m.as_str(), path) {
        ("GET", p) if p.starts_with("/apis/apps/v1/namespaces/offshoot-abc1234/deployments?") => {
            assert!(p.contains("labelSelector=offshoot.env%3Dabc1234"), "{p}");
            (200, list(vec![named("apps/v1", "Deployment", "web"), named("apps/v1", "Deployment", "old-worker")]))
        }
        ("GET", p) if p.starts_with("/api/v1/namespaces/offshoot-abc1234/services?") => {
            (200, list(vec![named("v1", "Service", "web"), named("v1", "Service", "old-worker")]))
        }
        ("GET", _) => (200, list(vec![])),
        ("DELETE", _) => (200, json!({"apiVersion": "v1", "kind": "Status", "status": "Success", "metadata": {}})),
        other => panic!("unexpected {other:?}"),
    });
    let removed = kube.prune("offshoot-abc1234", "abc1234", &shop()).await.expect("prune");
    assert_eq!(removed, vec!["Deployment/old-worker".to_owned(), "Service/old-worker".to_owned()]);
    let deletes: Vec<String> = log.lock().expect("log").iter().filter(|l| l.starts_with("DELETE")).cloned().collect();
    assert_eq!(deletes.len(), 2, "{deletes:?}");
    assert!(deletes[0].starts_with("DELETE /apis/apps/v1/namespaces/offshoot-abc1234/deployments/old-worker"));
}

fn deployment(name: &str, ready: i32) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "ns", "generation": 2},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"a": "b"}}, "template": {"spec": {"containers": [{"name": "c"}]}}},
        "status": {"observedGeneration": 2, "readyReplicas": ready, "updatedReplicas": ready, "unavailableReplicas": 2 - ready}
    })
}

fn pod(waiting: Option<(&str, &str)>, unschedulable: bool) -> Value {
    let mut status = json!({"phase": "Pending"});
    if let Some((reason, message)) = waiting {
        status["containerStatuses"] = json!([{"name": "web", "image": "x", "imageID": "", "ready": false, "restartCount": 3,
            "state": {"waiting": {"reason": reason, "message": message}}}]);
    }
    if unschedulable {
        status["conditions"] = json!([{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/3 nodes are available: 3 Insufficient memory."}]);
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-1", "namespace": "ns"}, "status": status})
}

#[tokio::test]
async fn a_rollout_becomes_ready() {
    let mut polls = 0;
    let (kube, _) = fake(move |_, path, _| {
        if path.starts_with("/api/v1/namespaces/ns/pods") {
            return (200, list(vec![pod(None, false)]));
        }
        polls += 1;
        (200, deployment("web", if polls < 3 { 1 } else { 2 }))
    });
    kube.wait_rollout("ns", &[("web".into(), false)], Duration::from_secs(5)).await.expect("ready on the third look");
}

#[tokio::test]
async fn a_stuck_rollout_says_why() {
    for (p, want) in [
        (
            pod(Some(("ImagePullBackOff", "Back-off pulling image \"shop/api:x\"")), false),
            "container `web`: ImagePullBackOff: Back-off pulling image",
        ),
        (pod(Some(("CrashLoopBackOff", "back-off 40s restarting failed container")), false), "CrashLoopBackOff"),
        (
            {
                let mut p = pod(Some(("CrashLoopBackOff", "back-off 40s restarting failed container")), false);
                p["status"]["containerStatuses"][0]["lastState"] = json!({"terminated": {"exitCode": 3}});
                p
            },
            "container `web`: CrashLoopBackOff: back-off 40s restarting failed container (the container exited with code 3)",
        ),
        (pod(None, true), "unschedulable: 0/3 nodes are available: 3 Insufficient memory."),
    ] {
        let (kube, _) = fake(move |_, path, _| {
            if path.starts_with("/api/v1/namespaces/ns/pods") {
                assert!(path.contains("labelSelector=offshoot.service%3Dweb"), "{path}");
                return (200, list(vec![p.clone()]));
            }
            (200, deployment("web", 0))
        });
        match kube.wait_rollout("ns", &[("web".into(), false)], Duration::from_secs(5)).await {
            Err(KubeError::Rollout { service, reason }) => {
                assert_eq!(service, "web");
                assert!(reason.contains(want), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }
    // Not ready in time, with the cluster's newest warning about it.
    let (kube, _) = fake(|_, path, _| {
        if path.contains("/pods") {
            (200, list(vec![pod(None, false)]))
        } else if path.contains("/events") {
            assert!(path.contains("fieldSelector=type%3DWarning"), "{path}");
            let ev = |name: &str, reason: &str, at: &str| {
                json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": format!("{name}.1"), "namespace": "ns"},
                    "involvedObject": {"kind": "Pod", "name": name}, "reason": reason, "message": format!("{reason} happened"),
                    "type": "Warning", "lastTimestamp": at})
            };
            let events = vec![
                ev("web-7d9-abc", "FailedMount", "2026-01-01T00:00:02Z"),
                ev("web-7d9-abc", "BackOff", "2026-01-01T00:00:01Z"),
                ev("other-1", "Evicted", "2026-01-01T00:00:09Z"),
            ];
            (200, list(events))
        } else {
            (200, deployment("web", 1))
        }
    });
    let e = kube.wait_rollout("ns", &[("web".into(), false)], Duration::from_millis(50)).await.expect_err("times out");
    assert!(
        e.to_string().contains("service `web`: not ready within") && e.to_string().contains("FailedMount: FailedMount happened"),
        "{e}"
    );
    // Merely slow, and nothing to say why: the deadline, naming what was not ready.
    let (kube, _) = fake(|_, path, _| {
        if path.contains("/pods") {
            (200, list(vec![pod(None, false)]))
        } else if path.contains("/events") {
            (200, list(vec![]))
        } else {
            (200, deployment("web", 1))
        }
    });
    let e = kube.wait_rollout("ns", &[("web".into(), false)], Duration::from_millis(50)).await.expect_err("times out");
    assert!(e.to_string().contains("rollout of web"), "{e}");
}

fn job(conditions: Value) -> Value {
    json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "job-migrate", "namespace": "offshoot-abc1234"},
        "spec": {"template": {"spec": {"containers": [{"name": "c"}]}}}, "status": {"conditions": conditions}})
}

fn the_job() -> k8s_openapi::api::batch::v1::Job {
    shop()
        .into_iter()
        .find_map(|m| match m {
            Manifest::Job(j) => Some(*j),
            _ => None,
        })
        .expect("the shop has a job")
}

#[tokio::test]
async fn jobs_run_to_completion_or_say_why_they_failed() {
    let mut looks = 0;
    let (kube, log) = fake(move |m, _, body| match m.as_str() {
        "DELETE" => (404, json!("not found")),
        "PATCH" => (200, body.clone()),
        "GET" => {
            looks += 1;
            match looks {
                1 => (404, json!("not found")),
                2 => (200, job(json!([]))),
                _ => (200, job(json!([{"type": "Complete", "status": "True"}]))),
            }
        }
        other => panic!("unexpected {other}"),
    });
    kube.run_job(&the_job(), Duration::from_secs(5)).await.expect("completes");
    assert!(log.lock().expect("log").iter().any(|l| l.starts_with("PATCH /apis/batch/v1/namespaces/offshoot-abc1234/jobs/job-migrate")));

    let mut looks = 0;
    let (kube, _) = fake(move |m, path, body| match m.as_str() {
        "DELETE" => (404, json!("not found")),
        "PATCH" => (200, body.clone()),
        "GET" if path.starts_with("/api/v1/namespaces/offshoot-abc1234/pods?") => {
            assert!(path.contains("labelSelector=job-name%3Djob-migrate"), "{path}");
            let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "job-migrate-x"}, "status": {"containerStatuses": [
                {"name": "migrate", "image": "i", "imageID": "", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 4}}}
            ]}});
            (200, list(vec![pod]))
        }
        _ => {
            looks += 1;
            if looks == 1 {
                (404, json!("not found"))
            } else {
                (
                    200,
                    job(
                        json!([{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]),
                    ),
                )
            }
        }
    });
    match kube.run_job(&the_job(), Duration::from_secs(5)).await {
        Err(KubeError::JobFailed { job, reason }) => {
            assert_eq!(job, "job-migrate");
            assert_eq!(reason, "BackoffLimitExceeded: Job has reached the specified backoff limit (the container exited with code 4)");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn teardown_deletes_the_namespace_and_waits_for_it_to_go() {
    let mut looks = 0;
    let (kube, log) = fake(move |m, path, _| match m.as_str() {
        "DELETE" => {
            assert!(path.starts_with("/api/v1/namespaces/offshoot-abc1234"), "{path}");
            (
                200,
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "offshoot-abc1234"}, "status": {"phase": "Terminating"}}),
            )
        }
        _ => {
            looks += 1;
            if looks < 3 {
                (
                    200,
                    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "offshoot-abc1234"}, "status": {"phase": "Terminating"}}),
                )
            } else {
                (404, json!("not found"))
            }
        }
    });
    kube.delete_namespace("offshoot-abc1234", Duration::from_secs(5)).await.expect("gone");
    assert_eq!(log.lock().expect("log").len(), 4, "one delete, three looks");
    // Already gone: nothing to wait for.
    let (kube, _) = fake(|_, _, _| (404, json!("not found")));
    kube.delete_namespace("offshoot-abc1234", Duration::from_secs(1)).await.expect("nothing to do");
    // Stuck terminating: the deadline says so.
    let (kube, _) = fake(|_, _, _| (200, json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "offshoot-abc1234"}})));
    let e = kube.delete_namespace("offshoot-abc1234", Duration::from_millis(30)).await.expect_err("times out");
    assert!(e.to_string().contains("deletion of Namespace offshoot-abc1234"), "{e}");
}

#[tokio::test]
async fn logs_of_a_services_pods() {
    let (kube, log) = fake(|_, path, _| {
        if path.contains("/log?") {
            assert!(path.contains("tailLines=50"), "{path}");
            return (200, json!("line one\nline two\n"));
        }
        assert!(path.contains("labelSelector=offshoot.env%3Dabc1234%2Coffshoot.service%3Dweb"), "{path}");
        (200, list(vec![pod(None, false)]))
    });
    let logs = kube.logs("ns", "abc1234", "web", 50).await.expect("logs");
    assert_eq!(logs, vec![("web-1".to_owned(), "line one\nline two\n".to_owned())]);
    assert_eq!(log.lock().expect("log").len(), 2);
}

/// A JSON merge patch (RFC 7386) applied to `target`.
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

#[tokio::test]
async fn a_service_scales_to_zero_and_back_to_the_replicas_it_had() {
    let mut web = deployment("web", 2);
    web["metadata"]["labels"] = json!({"offshoot.env": "abc1234", "offshoot.service": "web"});
    web["spec"]["replicas"] = json!(3);
    let mut other = deployment("api", 2);
    other["metadata"]["labels"] = json!({"offshoot.env": "abc1234", "offshoot.service": "api"});
    let cluster = Arc::new(Mutex::new(vec![web, other]));
    let state = cluster.clone();
    let (kube, log) = fake(move |m, path, body| {
        let mut all = state.lock().expect("cluster");
        match (m.as_str(), path) {
            ("GET", p) if p.starts_with("/apis/apps/v1/namespaces/offshoot-abc1234/deployments?") => {
                assert!(p.contains("labelSelector=offshoot.env%3Dabc1234"), "{p}");
                (200, list(all.clone()))
            }
            ("GET", p) if p.contains("/statefulsets?") => (200, list(vec![])),
            ("PATCH", p) if p.starts_with("/apis/apps/v1/namespaces/offshoot-abc1234/deployments/web?") => {
                merge(&mut all[0], body);
                (200, all[0].clone())
            }
            other => panic!("unexpected {other:?}"),
        }
    });
    let replicas = |c: &Arc<Mutex<Vec<Value>>>| c.lock().expect("cluster")[0]["spec"]["replicas"].clone();
    assert_eq!(kube.scale_down("offshoot-abc1234", "abc1234", "web").await.expect("down"), 1);
    assert_eq!(replicas(&cluster), json!(0));
    assert_eq!(cluster.lock().expect("cluster")[0]["metadata"]["annotations"]["offshoot.dev/replicas"], json!("3"));
    // Asleep twice keeps the replicas it had, not zero.
    kube.scale_down("offshoot-abc1234", "abc1234", "web").await.expect("down again");
    let w = kube.workloads("offshoot-abc1234", "abc1234").await.expect("workloads");
    let web = w.iter().find(|w| w.service == "web").expect("web");
    assert_eq!((web.replicas, web.asleep), (0, Some(3)));
    assert_eq!(kube.scale_up("offshoot-abc1234", "abc1234", "web").await.expect("up"), 1);
    assert_eq!(replicas(&cluster), json!(3));
    assert!(cluster.lock().expect("cluster")[0]["metadata"].get("annotations").is_none_or(|a| a.get("offshoot.dev/replicas").is_none()));
    assert_eq!(cluster.lock().expect("cluster")[1]["spec"]["replicas"], json!(2), "the other service is left alone");
    let patches = log.lock().expect("log").iter().filter(|l| l.starts_with("PATCH")).count();
    assert_eq!(patches, 3);
}
