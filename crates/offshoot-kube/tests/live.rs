//! Against a live cluster, when `KUBECONFIG` names one that answers (kind, k3d or a cloud
//! cluster; see the README): the example app's manifests applied in a namespace of their own,
//! applied again (idempotent), pruned after a service is dropped, and the namespace deleted.
//! Skipped, saying why, when no cluster is reachable (this machine has none).

#![expect(clippy::print_stderr, reason = "a skipped test says why")]

use offshoot_kube::Kube;
use offshoot_manifests::{Manifest, Options, render};
use offshoot_template::document::{self, Kind};
use offshoot_template::resolve;
use std::time::Duration;

async fn cluster() -> Option<Kube> {
    let Some(path) = std::env::var_os("KUBECONFIG") else {
        eprintln!("skipped: KUBECONFIG is not set, so there is no cluster to test against");
        return None;
    };
    match tokio::time::timeout(Duration::from_secs(10), Kube::connect(Some(std::path::Path::new(&path)), None)).await {
        Ok(Ok(k)) => match tokio::time::timeout(Duration::from_secs(10), k.version()).await {
            Ok(Ok(v)) => {
                eprintln!("testing against Kubernetes {v}");
                Some(k)
            }
            other => {
                eprintln!("skipped: the cluster of {} does not answer: {other:?}", path.to_string_lossy());
                None
            }
        },
        other => {
            eprintln!("skipped: cannot use {}: {:?}", path.to_string_lossy(), other.map(|r| r.err()));
            None
        }
    }
}

/// A small app of public images: a web server with a readiness probe, and a worker.
fn manifests(env: &str, with_worker: bool) -> Vec<Manifest> {
    let worker = if with_worker { "- name: worker\n  image: busybox:stable\n  command: [sh, -c, 'exec sleep 3600']\n" } else { "" };
    let template = format!(
        "app: live\nhostnames:\n- web: web-${{env_id}}.example.com\nservices:\n- name: web\n  image: nginx:stable\n  ports:\n  - type: node_port\n    port: '80'\n  readiness_probe:\n    http_get:\n      path: /\n      port: '80'\n{worker}"
    );
    let doc = document::check("t", &template, Some(Kind::Template));
    let opts = resolve::Options { branch: "main".into(), env_id: env.into(), domain: "example.com".into(), ..Default::default() };
    let r = resolve::resolve("t", &doc.root.expect("root"), None, &opts).expect("resolves");
    render(&r, &Options::new(format!("offshoot-{env}"), "live-test")).manifests
}

#[tokio::test]
async fn an_environment_on_a_live_cluster() {
    let Some(kube) = cluster().await else { return };
    let env = format!("lt{}", std::process::id() % 100_000);
    let ns = format!("offshoot-{env}");
    let all = manifests(&env, true);
    kube.apply(&all).await.expect("apply");
    kube.apply(&all).await.expect("apply again");
    kube.wait_rollout(&ns, &[("web".into(), false), ("worker".into(), false)], Duration::from_secs(300)).await.expect("rollout");
    let fewer = manifests(&env, false);
    kube.apply(&fewer).await.expect("apply without the worker");
    let removed = kube.prune(&ns, &env, &fewer).await.expect("prune");
    assert_eq!(removed, vec!["Deployment/worker".to_owned()]);
    kube.delete_namespace(&ns, Duration::from_secs(300)).await.expect("teardown");
}
