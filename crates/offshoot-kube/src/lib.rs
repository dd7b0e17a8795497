//! Kubernetes, for one environment at a time: apply its manifests (server-side apply, one field
//! manager, idempotent), prune what a new template no longer has, wait for the rollout with the
//! reason of any failure taken from pods (ImagePullBackOff, CrashLoopBackOff, unschedulable),
//! run a job to completion within its timeout, and delete the namespace and wait until it is gone.
//! Everything goes through kube's `Client`, so tests script the API server (tower-test).

mod scale;

pub use scale::{ANNOTATION_REPLICAS, Workload};

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, PersistentVolumeClaim, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, Resource};
use offshoot_manifests::{LABEL_ENV, LABEL_SERVICE, Manifest};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::time::Duration;

/// The field manager of every apply.
pub const FIELD_MANAGER: &str = "offshoot";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KubeError {
    #[error("cannot reach the Kubernetes API: {0}")]
    Config(String),
    #[error("{operation} {kind} `{name}`: {source}")]
    Api {
        operation: &'static str,
        kind: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("service `{service}`: {reason}")]
    Rollout { service: String, reason: String },
    #[error("job `{job}` failed: {reason}")]
    JobFailed { job: String, reason: String },
    #[error("`{what}` did not finish within {timeout:?}")]
    Timeout { what: String, timeout: Duration },
}

pub type Result<T> = std::result::Result<T, KubeError>;

/// Waiting reasons of a container that will not fix themselves.
const STUCK: &[&str] =
    &["ImagePullBackOff", "ErrImagePull", "InvalidImageName", "CrashLoopBackOff", "CreateContainerConfigError", "CreateContainerError"];

/// How often rollouts, jobs and deletions are polled.
const POLL: Duration = Duration::from_millis(500);

#[derive(Clone)]
pub struct Kube {
    client: Client,
    poll: Duration,
}

impl Kube {
    /// From a kubeconfig (default: `KUBECONFIG`, `~/.kube/config`, or the in-cluster account)
    /// and an optional context.
    pub async fn connect(kubeconfig: Option<&std::path::Path>, context: Option<&str>) -> Result<Kube> {
        let opts = kube::config::KubeConfigOptions { context: context.map(str::to_owned), ..Default::default() };
        let config = match kubeconfig {
            Some(path) => {
                let kc = kube::config::Kubeconfig::read_from(path).map_err(|e| KubeError::Config(format!("{}: {e}", path.display())))?;
                kube::Config::from_custom_kubeconfig(kc, &opts).await.map_err(|e| KubeError::Config(e.to_string()))?
            }
            None if context.is_some() => kube::Config::from_kubeconfig(&opts).await.map_err(|e| KubeError::Config(e.to_string()))?,
            None => kube::Config::infer().await.map_err(|e| KubeError::Config(e.to_string()))?,
        };
        let client = Client::try_from(config).map_err(|e| KubeError::Config(e.to_string()))?;
        Ok(Kube { client, poll: POLL })
    }

    /// The API server's version (`v1.37.0`): a cheap check that the cluster answers.
    pub async fn version(&self) -> Result<String> {
        let info = self.client.apiserver_version().await.map_err(api_err("read", "version", ""))?;
        Ok(info.git_version)
    }

    /// Over a given client (tests give one whose API server is scripted).
    pub fn from_client(client: Client, poll: Duration) -> Kube {
        Kube { client, poll }
    }

    fn api<K>(&self, namespace: Option<&str>) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope> + Clone + DeserializeOwned + Debug,
        K::DynamicType: Default,
    {
        match namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::default_namespaced(self.client.clone()),
        }
    }

    async fn apply_one<K>(&self, api: Api<K>, obj: &K) -> Result<()>
    where
        K: Resource + k8s_openapi::Resource + Clone + DeserializeOwned + Serialize + Debug,
        K::DynamicType: Default,
    {
        let name = obj.meta().name.clone().unwrap_or_default();
        let params = PatchParams::apply(FIELD_MANAGER).force();
        api.patch(&name, &params, &Patch::Apply(obj)).await.map_err(api_err("apply", kind_of::<K>(), name))?;
        Ok(())
    }

    /// Applies the manifests in order (server-side apply, forced: Offshoot owns these fields).
    pub async fn apply(&self, manifests: &[Manifest]) -> Result<()> {
        for m in manifests {
            let ns = m.meta().namespace.as_deref();
            match m {
                Manifest::Namespace(o) => self.apply_one(Api::<Namespace>::all(self.client.clone()), o).await?,
                Manifest::NetworkPolicy(o) => self.apply_one(self.api::<NetworkPolicy>(ns), o).await?,
                Manifest::ServiceAccount(o) => self.apply_one(self.api::<ServiceAccount>(ns), o).await?,
                Manifest::ConfigMap(o) => self.apply_one(self.api::<ConfigMap>(ns), o).await?,
                Manifest::Secret(o) => self.apply_one(self.api::<Secret>(ns), o).await?,
                Manifest::PersistentVolumeClaim(o) => self.apply_one(self.api::<PersistentVolumeClaim>(ns), o).await?,
                Manifest::Deployment(o) => self.apply_one(self.api::<Deployment>(ns), o.as_ref()).await?,
                Manifest::StatefulSet(o) => self.apply_one(self.api::<StatefulSet>(ns), o.as_ref()).await?,
                Manifest::Service(o) => self.apply_one(self.api::<Service>(ns), o).await?,
                Manifest::Ingress(o) => self.apply_one(self.api::<Ingress>(ns), o).await?,
                Manifest::EndpointSlice(o) => self.apply_one(self.api::<EndpointSlice>(ns), o).await?,
                Manifest::Job(o) => self.apply_one(self.api::<Job>(ns), o.as_ref()).await?,
                Manifest::CronJob(o) => self.apply_one(self.api::<CronJob>(ns), o.as_ref()).await?,
            }
        }
        Ok(())
    }

    async fn prune_kind<K>(&self, namespace: &str, env_id: &str, keep: &[Manifest]) -> Result<Vec<String>>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope> + k8s_openapi::Resource + Clone + DeserializeOwned + Debug,
        K::DynamicType: Default,
    {
        let api = self.api::<K>(Some(namespace));
        let kind = kind_of::<K>();
        let list =
            api.list(&ListParams::default().labels(&format!("{LABEL_ENV}={env_id}"))).await.map_err(api_err("list", kind, namespace))?;
        let mut removed = Vec::new();
        for o in list.items {
            let name = o.meta().name.clone().unwrap_or_default();
            if keep.iter().any(|m| m.kind() == kind && m.name() == name) {
                continue;
            }
            api.delete(&name, &DeleteParams::background()).await.map_err(api_err("delete", kind, name.clone()))?;
            removed.push(format!("{kind}/{name}"));
        }
        Ok(removed)
    }

    /// Deletes the environment's objects (by its label) that `keep` no longer has: what a new
    /// template dropped. Jobs are left to their TTL.
    pub async fn prune(&self, namespace: &str, env_id: &str, keep: &[Manifest]) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        removed.extend(self.prune_kind::<Deployment>(namespace, env_id, keep).await?);
        removed.extend(self.prune_kind::<StatefulSet>(namespace, env_id, keep).await?);
        removed.extend(self.prune_kind::<Service>(namespace, env_id, keep).await?);
        removed.extend(self.prune_kind::<Ingress>(namespace, env_id, keep).await?);
        removed.extend(self.prune_kind::<EndpointSlice>(namespace, env_id, keep).await?);
        removed.extend(self.prune_kind::<ConfigMap>(namespace, env_id, keep).await?);
        removed.extend(self.prune_kind::<Secret>(namespace, env_id, keep).await?);
        removed.extend(self.prune_kind::<PersistentVolumeClaim>(namespace, env_id, keep).await?);
        removed.extend(self.prune_kind::<ServiceAccount>(namespace, env_id, keep).await?);
        removed.extend(self.prune_kind::<NetworkPolicy>(namespace, env_id, keep).await?);
        removed.extend(self.prune_kind::<CronJob>(namespace, env_id, keep).await?);
        Ok(removed)
    }

    /// Why a service's pods are not ready, when it is a reason that will not pass by waiting.
    async fn stuck(&self, namespace: &str, service: &str) -> Result<Option<String>> {
        let pods: Api<Pod> = self.api(Some(namespace));
        let list = pods.list(&ListParams::default().labels(&format!("{LABEL_SERVICE}={service}"))).await.map_err(api_err(
            "list",
            "Pod",
            service.to_owned(),
        ))?;
        for p in list.items {
            let Some(status) = p.status else { continue };
            for c in status.init_container_statuses.iter().flatten().chain(status.container_statuses.iter().flatten()) {
                if let Some(w) = c.state.as_ref().and_then(|s| s.waiting.as_ref())
                    && let Some(reason) = w.reason.as_deref().filter(|r| STUCK.contains(r))
                {
                    let message = w.message.as_deref().map_or_else(String::new, |m| format!(": {m}"));
                    // A container that keeps exiting: how it last ended, as the Docker engine says it.
                    let exited = c
                        .last_state
                        .as_ref()
                        .and_then(|s| s.terminated.as_ref())
                        .filter(|t| t.exit_code != 0)
                        .map_or_else(String::new, |t| format!(" (the container exited with code {})", t.exit_code));
                    return Ok(Some(format!("container `{}`: {reason}{message}{exited}", c.name)));
                }
            }
            for cond in status.conditions.iter().flatten() {
                if cond.type_ == "PodScheduled" && cond.status == "False" && cond.reason.as_deref() == Some("Unschedulable") {
                    return Ok(Some(format!("unschedulable: {}", cond.message.as_deref().unwrap_or("no node fits"))));
                }
            }
        }
        Ok(None)
    }

    /// How a failed job's container last ended: the first non-zero exit code among its pods.
    async fn exit_code(&self, namespace: &str, job: &str) -> Result<Option<i32>> {
        let pods: Api<Pod> = self.api(Some(namespace));
        let list =
            pods.list(&ListParams::default().labels(&format!("job-name={job}"))).await.map_err(api_err("list", "Pod", job.to_owned()))?;
        Ok(list
            .items
            .iter()
            .filter_map(|p| p.status.as_ref())
            .flat_map(|st| st.container_statuses.iter().flatten())
            .filter_map(|c| {
                c.state.as_ref().and_then(|s| s.terminated.as_ref()).or(c.last_state.as_ref().and_then(|s| s.terminated.as_ref()))
            })
            .map(|t| t.exit_code)
            .find(|code| *code != 0))
    }

    /// The newest Warning event about a service's objects (its pods are named after it).
    async fn last_warning(&self, namespace: &str, service: &str) -> Result<Option<String>> {
        let events: Api<k8s_openapi::api::core::v1::Event> = self.api(Some(namespace));
        let list =
            events.list(&ListParams::default().fields("type=Warning")).await.map_err(api_err("list", "Event", service.to_owned()))?;
        let newest = list
            .items
            .into_iter()
            .filter(|e| e.involved_object.name.as_deref().is_some_and(|n| n == service || n.starts_with(&format!("{service}-"))))
            .max_by_key(|e| e.last_timestamp.as_ref().map(|t| t.0).or(e.event_time.as_ref().map(|t| t.0)));
        Ok(newest.map(|e| format!("{}: {}", e.reason.unwrap_or_default(), e.message.unwrap_or_default())))
    }

    async fn read<K>(&self, namespace: &str, name: &str) -> Result<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope> + k8s_openapi::Resource + Clone + DeserializeOwned + Debug,
        K::DynamicType: Default,
    {
        self.api::<K>(Some(namespace)).get(name).await.map_err(api_err("read", kind_of::<K>(), name.to_owned()))
    }

    /// Waits until every listed service (Deployment or StatefulSet of that name) has all its
    /// replicas updated and ready; fails at once with the reason when a pod is stuck.
    pub async fn wait_rollout(&self, namespace: &str, services: &[(String, bool)], timeout: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut pending: Vec<(String, bool)> = services.to_vec();
        loop {
            let mut still = Vec::new();
            for (name, stateful) in pending {
                let ready = if stateful {
                    let s: StatefulSet = self.read(namespace, &name).await?;
                    let want = s.spec.replicas.unwrap_or(1);
                    let st = s.status.unwrap_or_default();
                    st.observed_generation >= s.metadata.generation
                        && st.ready_replicas.unwrap_or(0) >= want
                        && st.updated_replicas.unwrap_or(0) >= want
                } else {
                    let d: Deployment = self.read(namespace, &name).await?;
                    let want = d.spec.replicas.unwrap_or(1);
                    let st = d.status.unwrap_or_default();
                    st.observed_generation >= d.metadata.generation
                        && st.ready_replicas.unwrap_or(0) >= want
                        && st.updated_replicas.unwrap_or(0) >= want
                        && st.unavailable_replicas.unwrap_or(0) == 0
                };
                if !ready {
                    if let Some(reason) = self.stuck(namespace, &name).await? {
                        return Err(KubeError::Rollout { service: name, reason });
                    }
                    still.push((name, stateful));
                }
            }
            if still.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                // Not stuck, merely not ready: the cluster's last warning about it says why.
                let (name, _) = &still[0];
                if let Some(warning) = self.last_warning(namespace, name).await? {
                    return Err(KubeError::Rollout { service: name.clone(), reason: format!("not ready within {timeout:?}: {warning}") });
                }
                let names: Vec<&str> = still.iter().map(|(n, _)| n.as_str()).collect();
                return Err(KubeError::Timeout { what: format!("rollout of {}", names.join(", ")), timeout });
            }
            pending = still;
            tokio::time::sleep(self.poll).await;
        }
    }

    /// Runs a job (applies it) and waits for it to succeed, at most `timeout`.
    pub async fn run_job(&self, job: &Job, timeout: Duration) -> Result<()> {
        let namespace = job.metadata.namespace.clone().unwrap_or_default();
        let name = job.metadata.name.clone().unwrap_or_default();
        let api: Api<Job> = self.api(Some(&namespace));
        // A finished job of the same name is replaced (jobs are immutable).
        match api.delete(&name, &DeleteParams::foreground()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(api_err("delete", "Job", name.clone())(e)),
        }
        self.wait_gone(&api, &name, timeout).await?;
        self.apply_one(api.clone(), job).await?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let j = api.get(&name).await.map_err(api_err("read", "Job", name.clone()))?;
            let st = j.status.unwrap_or_default();
            for c in st.conditions.iter().flatten() {
                if c.status == "True" && (c.type_ == "Complete" || c.type_ == "SuccessCriteriaMet") {
                    return Ok(());
                }
                if c.status == "True" && (c.type_ == "Failed" || c.type_ == "FailureTarget") {
                    let mut reason = [c.reason.as_deref(), c.message.as_deref()].into_iter().flatten().collect::<Vec<_>>().join(": ");
                    if let Some(code) = self.exit_code(&namespace, &name).await? {
                        reason.push_str(&format!(" (the container exited with code {code})"));
                    }
                    return Err(KubeError::JobFailed { job: name, reason });
                }
            }
            if st.succeeded.unwrap_or(0) > 0 {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(KubeError::Timeout { what: format!("job {name}"), timeout });
            }
            tokio::time::sleep(self.poll).await;
        }
    }

    async fn wait_gone<K>(&self, api: &Api<K>, name: &str, timeout: Duration) -> Result<()>
    where
        K: Resource + k8s_openapi::Resource + Clone + DeserializeOwned + Debug,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let found = api.get_opt(name).await.map_err(api_err("read", kind_of::<K>(), name.to_owned()))?;
            if found.is_none() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(KubeError::Timeout { what: format!("deletion of {} {name}", kind_of::<K>()), timeout });
            }
            tokio::time::sleep(self.poll).await;
        }
    }

    /// The last `tail` lines of each of a service's pods: `(pod, text)`.
    pub async fn logs(&self, namespace: &str, env_id: &str, service: &str, tail: usize) -> Result<Vec<(String, String)>> {
        let pods: Api<Pod> = self.api(Some(namespace));
        let list = pods
            .list(&ListParams::default().labels(&format!("{LABEL_ENV}={env_id},{LABEL_SERVICE}={service}")))
            .await
            .map_err(api_err("list", "Pod", service.to_owned()))?;
        let mut out = Vec::new();
        for p in list.items {
            let name = p.metadata.name.unwrap_or_default();
            let params = kube::api::LogParams { tail_lines: Some(i64::try_from(tail).unwrap_or(i64::MAX)), ..Default::default() };
            let text = pods.logs(&name, &params).await.map_err(api_err("read logs of", "Pod", name.clone()))?;
            out.push((name, text));
        }
        Ok(out)
    }

    /// Deletes the environment's namespace (and so everything in it) and waits until it is gone.
    pub async fn delete_namespace(&self, namespace: &str, timeout: Duration) -> Result<()> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        match api.delete(namespace, &DeleteParams::foreground()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
            Err(e) => return Err(api_err("delete", "Namespace", namespace)(e)),
        }
        self.wait_gone(&api, namespace, timeout).await
    }
}

/// Maps a kube error to one naming the operation and the object.
fn api_err(operation: &'static str, kind: &'static str, name: impl Into<String>) -> impl FnOnce(kube::Error) -> KubeError {
    let name = name.into();
    move |source| KubeError::Api { operation, kind, name, source }
}

fn kind_of<K: k8s_openapi::Resource>() -> &'static str {
    K::KIND
}
