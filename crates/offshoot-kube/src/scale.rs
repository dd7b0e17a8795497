//! An environment's workloads as the cluster has them, and scaling a service to zero and back
//! (its replicas kept in an annotation meanwhile, so waking restores what the template asked).

use crate::{Kube, Result, api_err, kind_of};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::CronJob;
use kube::api::{ListParams, Patch, PatchParams};
use offshoot_manifests::{LABEL_ENV, LABEL_SERVICE};
use serde_json::json;

/// Where a workload scaled to zero keeps its replicas.
pub const ANNOTATION_REPLICAS: &str = "offshoot.dev/replicas";

/// A Deployment or StatefulSet of an environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workload {
    /// The service it runs (its label).
    pub service: String,
    pub name: String,
    pub stateful: bool,
    /// Replicas asked for, and ready.
    pub replicas: i32,
    pub ready: i32,
    /// Scaled to zero by Offshoot: the replicas to restore.
    pub asleep: Option<i32>,
}

/// One workload's fields, whatever its kind.
fn workload(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    stateful: bool,
    replicas: Option<i32>,
    ready: Option<i32>,
) -> Workload {
    let labels = meta.labels.clone().unwrap_or_default();
    let asleep = meta.annotations.as_ref().and_then(|a| a.get(ANNOTATION_REPLICAS)).and_then(|v| v.parse().ok());
    Workload {
        service: labels.get(LABEL_SERVICE).cloned().unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
        stateful,
        replicas: replicas.unwrap_or(1),
        ready: ready.unwrap_or(0),
        asleep,
    }
}

impl Kube {
    /// The environment's Deployments and StatefulSets.
    pub async fn workloads(&self, namespace: &str, env_id: &str) -> Result<Vec<Workload>> {
        let params = ListParams::default().labels(&format!("{LABEL_ENV}={env_id}"));
        let mut out = Vec::new();
        let deployments = self.api::<Deployment>(Some(namespace)).list(&params).await.map_err(api_err("list", "Deployment", env_id))?;
        for d in deployments.items {
            let ready = d.status.as_ref().and_then(|s| s.ready_replicas);
            out.push(workload(&d.metadata, false, d.spec.replicas, ready));
        }
        let sets = self.api::<StatefulSet>(Some(namespace)).list(&params).await.map_err(api_err("list", "StatefulSet", env_id))?;
        for s in sets.items {
            let ready = s.status.as_ref().and_then(|x| x.ready_replicas);
            out.push(workload(&s.metadata, true, s.spec.replicas, ready));
        }
        Ok(out)
    }

    /// Suspends (or resumes) the environment's CronJobs: a sleeping environment runs none. The
    /// number it found.
    pub async fn suspend_cron_jobs(&self, namespace: &str, env_id: &str, suspend: bool) -> Result<usize> {
        let api = self.api::<CronJob>(Some(namespace));
        let list =
            api.list(&ListParams::default().labels(&format!("{LABEL_ENV}={env_id}"))).await.map_err(api_err("list", "CronJob", env_id))?;
        let patch = json!({"spec": {"suspend": suspend}});
        for c in &list.items {
            let name = c.metadata.name.clone().unwrap_or_default();
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await.map_err(api_err(
                "suspend",
                kind_of::<CronJob>(),
                name.clone(),
            ))?;
        }
        Ok(list.items.len())
    }

    /// Scales a service's workloads to zero, keeping their replicas in an annotation (a workload
    /// already at zero keeps what it kept). The number of workloads it found.
    pub async fn scale_down(&self, namespace: &str, env_id: &str, service: &str) -> Result<usize> {
        let found = self.of_service(namespace, env_id, service).await?;
        for w in &found {
            let keep = w.asleep.unwrap_or(w.replicas).to_string();
            let patch = json!({"metadata": {"annotations": {ANNOTATION_REPLICAS: keep}}, "spec": {"replicas": 0}});
            self.patch_workload(namespace, w, &patch).await?;
        }
        Ok(found.len())
    }

    /// Scales a service's workloads back to the replicas they kept (a workload not scaled down
    /// by Offshoot is left as it is). The number of workloads it found.
    pub async fn scale_up(&self, namespace: &str, env_id: &str, service: &str) -> Result<usize> {
        let found = self.of_service(namespace, env_id, service).await?;
        for w in &found {
            if let Some(n) = w.asleep {
                let patch = json!({"metadata": {"annotations": {ANNOTATION_REPLICAS: null}}, "spec": {"replicas": n}});
                self.patch_workload(namespace, w, &patch).await?;
            }
        }
        Ok(found.len())
    }

    async fn of_service(&self, namespace: &str, env_id: &str, service: &str) -> Result<Vec<Workload>> {
        let label = offshoot_manifests::dns_label(service);
        Ok(self.workloads(namespace, env_id).await?.into_iter().filter(|w| w.service == label || w.service == service).collect())
    }

    async fn patch_workload(&self, namespace: &str, w: &Workload, patch: &serde_json::Value) -> Result<()> {
        let params = PatchParams::default();
        if w.stateful {
            let api = self.api::<StatefulSet>(Some(namespace));
            api.patch(&w.name, &params, &Patch::Merge(patch)).await.map_err(api_err("scale", kind_of::<StatefulSet>(), w.name.clone()))?;
        } else {
            let api = self.api::<Deployment>(Some(namespace));
            api.patch(&w.name, &params, &Patch::Merge(patch)).await.map_err(api_err("scale", kind_of::<Deployment>(), w.name.clone()))?;
        }
        Ok(())
    }
}
