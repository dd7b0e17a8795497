//! Bodies of the HTTP API (`/api/v1`), shared by the server and the CLI. No I/O.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct AppCreate {
    /// A local path or a git URL.
    pub repo: String,
    pub name: Option<String>,
    /// The branch whose configuration seeds version 1 (default: the repository's default).
    pub branch: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct App {
    pub name: String,
    pub repo: String,
    pub default_branch: String,
    pub version: i64,
    /// `release` (GitOps files) or `compose` (generated).
    #[serde(default)]
    pub source: String,
    pub created_at: i64,
    /// Whether pull requests get environments.
    #[serde(default)]
    pub pull_requests: bool,
    /// Only pull requests with this label get one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_request_label: Option<String>,
    /// Why the last pushed configuration was refused (GitOps), with its diagnostics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gitops_error: Option<String>,
    /// Why the last fetch of the repository failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetch_error: Option<String>,
    /// Its environments sleep after this long without a request (absent: never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_sleep_seconds: Option<i64>,
    /// The lifetime its new environments get (absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<i64>,
    /// The lifetime its new pull-request environments get (absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_request_ttl_seconds: Option<i64>,
    /// When its environments go to sleep (five cron fields, the server's time zone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sleep_schedule: Option<String>,
    /// When its sleeping environments wake.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wake_schedule: Option<String>,
    /// The image this application's static builds run in (absent: the server's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub static_builder: Option<String>,
    /// The image its Terraform `infrastructure` runs in (absent: the server's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terraform_image: Option<String>,
    /// `public` or `team`.
    #[serde(default = "public")]
    pub access: String,
    /// Whether the environments of forks' pull requests get its secrets and dataset clones, its
    /// environments imported into them too (else they run without).
    #[serde(default)]
    pub fork_secrets: bool,
}

fn public() -> String {
    "public".into()
}

/// An application's previews' bypass token.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct BypassToken {
    pub token: String,
}

/// Changes to an application's settings; absent fields are kept.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct AppUpdate {
    pub pull_requests: Option<bool>,
    /// An empty string removes the label requirement.
    pub pull_request_label: Option<String>,
    /// The image static builds run in; an empty string restores the server's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub static_builder: Option<String>,
    /// The image Terraform runs in; an empty string restores the server's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terraform_image: Option<String>,
    /// Who its environments' URLs answer: `public` (anyone) or `team` (signed-in users, or a
    /// request with the bypass token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<String>,
    /// Its environments sleep after this long without a request (`30m`, `2h`), or `off`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_sleep: Option<String>,
    /// The lifetime its new environments get (`7d`), or `off`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    /// The lifetime its new pull-request environments get (`3d`), or `off`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_request_ttl: Option<String>,
    /// When its environments go to sleep: five cron fields in the server's time zone
    /// (`0 20 * * 1-5`), or `off`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sleep_schedule: Option<String>,
    /// When its sleeping environments wake (`0 7 * * 1-5`), or `off`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wake_schedule: Option<String>,
    /// Whether the environments of forks' pull requests (once approved) get its secrets and
    /// dataset clones, its environments imported into them too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fork_secrets: Option<bool>,
}

/// A pull request from a fork, as held for approval.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct ForkPull {
    pub number: u64,
    /// `github` or `gitlab`.
    pub provider: String,
    /// The fork it comes from (`owner/name`).
    pub fork: String,
    /// Its head commit, as last seen.
    pub head_commit: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// `waiting` (its head is not approved), `approved`, or `closed`.
    pub status: String,
    /// The commit approved, by whom, when (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_commit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_at: Option<i64>,
    /// Its environment, once there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_id: Option<String>,
}

/// What an approval did.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct Approval {
    pub result: String,
}

/// `GET /status`: environments running and sleeping, against the server's limits.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct Status {
    /// Environments whose services run or are being started (imports' included).
    pub running: usize,
    pub sleeping: usize,
    /// `--max-environments` (absent: no limit).
    #[serde(default)]
    pub max_environments: Option<usize>,
    /// The memory limits of the running environments' services, in bytes.
    pub memory_used: u64,
    /// `--memory-budget` in bytes (absent: no limit).
    #[serde(default)]
    pub memory_budget: Option<u64>,
}

/// More lifetime for an environment, from now.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct EnvExtend {
    pub ttl_seconds: u64,
}

/// Changes to an environment's settings; absent fields are kept.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct EnvUpdate {
    /// It sleeps after this long without a request (`30m`), never (`off`), or as its
    /// application says (`default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_sleep: Option<String>,
}

/// Where to point a repository's webhook, and its secret.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Webhook {
    /// GitHub: content type `application/json`, the secret below.
    pub url: String,
    pub secret: String,
    /// GitLab: the secret below as the secret token.
    pub gitlab_url: String,
}

/// A webhook delivery or a polled change, and what it did.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Delivery {
    pub id: String,
    /// The normalized event.
    pub event: serde_json::Value,
    /// `pending`, `done`, `failed` or `ignored`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    pub received_at: i64,
    pub finished_at: Option<i64>,
}

/// The answer to a webhook.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct HookAnswer {
    /// `accepted`, `duplicate` or `ignored`.
    pub status: String,
    pub delivery: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The pull request an environment was made for.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct PullRequestRef {
    /// `github` or `gitlab`.
    pub provider: String,
    pub repo: String,
    pub number: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default)]
    pub labels: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Template {
    pub app: String,
    pub version: i64,
    pub template: String,
    pub env_vars: String,
}

/// A new version: either file may be left out to keep the current one.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct TemplateUpdate {
    pub template: Option<String>,
    pub env_vars: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct SecretSet {
    pub key: String,
    /// Absent: the secret applies to every service.
    pub service: Option<String>,
    pub value: String,
    /// A file secret (mounted where a service's `secret_files` names it), not a variable.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub file: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct EnvCreate {
    pub app: String,
    pub branch: String,
    pub environment_template: Option<String>,
    /// Lifetime in seconds; the environment is torn down when it expires.
    pub ttl_seconds: Option<u64>,
    /// Values of the template's `parameters` (the defaults apply to the rest).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub parameters: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct EnvDeploy {
    pub commit: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Service {
    pub name: String,
    pub status: ServiceStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Bare host names.
    pub hostnames: Vec<String>,
    /// With scheme, router port and path.
    pub urls: Vec<String>,
    /// Load-balancer ports: the service's port and where it is reachable.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub load_balancers: Vec<LoadBalancer>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct LoadBalancer {
    pub port: u16,
    /// `127.0.0.1:N`.
    pub address: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Deployment {
    pub id: String,
    pub workflow: String,
    pub commit: Option<String>,
    pub status: DeploymentStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Phase → milliseconds (fetch, build, start, ready).
    pub phases: BTreeMap<String, u64>,
    pub created_at: i64,
    pub finished_at: Option<i64>,
    /// The workflow's steps as far as they ran.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<DeploymentStep>,
}

/// One step of a deployment's workflow, from its step log.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct DeploymentStep {
    pub name: String,
    /// `running`, `done` or `failed`.
    pub status: String,
    /// What its tasks said, or why they failed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub output: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Env {
    pub id: String,
    pub app: String,
    pub branch: String,
    pub commit: Option<String>,
    pub status: EnvStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub environment_template: Option<String>,
    pub services: Vec<Service>,
    #[serde(default)]
    pub deployments: Vec<Deployment>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    /// Since when it sleeps (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sleeping_since: Option<i64>,
    /// When the router last passed it a request (ms since the epoch); probes and Offshoot's own
    /// checks do not count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_request_at: Option<i64>,
    /// It sleeps after this long without a request: its own setting, else its application's
    /// (absent: never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_sleep_seconds: Option<i64>,
    /// The environments of the imported apps (`app_imports`), in import order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub imports: Vec<Import>,
    /// For an imported app's environment: the importing environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Things to know that did not stop the environment (e.g. imports of imports not followed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The pull request this environment was made for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_request: Option<PullRequestRef>,
    /// The Instant Datasets' clones this environment holds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub datasets: Vec<AttachedDataset>,
    /// Its template's `parameters`: every one with its value when shown alone, only those given
    /// a value in a list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<ParameterValue>,
    /// What its runtime ignores (or refuses) of its template, by the compatibility ledger
    /// (shown alone only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub compat: Vec<CompatItem>,
    /// Its Terraform `infrastructure`: each entry's status and outputs' names (shown alone only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub infrastructure: Vec<Infrastructure>,
}

/// An `infrastructure` entry of an environment.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct Infrastructure {
    pub name: String,
    /// `new` (never applied), `applied`, `failed`, or `destroyed` (after its environment's
    /// teardown began).
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The variables its outputs became (`INFRA_BUCKET_URL`); a sensitive one's value is a
    /// secret, never shown.
    #[serde(default)]
    pub outputs: Vec<String>,
    #[serde(default)]
    pub sensitive_outputs: Vec<String>,
    /// Where its state is: `offshoot` (kept encrypted by this server), the module's own
    /// backend's type, or `none` before the first apply.
    pub state: String,
    pub updated_at: i64,
    /// Held by a deployment running it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locked_by: Option<String>,
    /// Its runs, newest first (the last 20); their logs only when asked for one entry.
    #[serde(default)]
    pub runs: Vec<InfrastructureRun>,
}

/// One `apply` or `destroy` of an entry.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct InfrastructureRun {
    pub id: String,
    pub action: String,
    /// `running`, `succeeded`, `failed` or `interrupted`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<String>,
    pub started_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Terraform's output (its end).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub log: String,
}

/// A key of an environment's template that its runtime does not apply.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct CompatItem {
    /// The ledger's key (`Service.registry`).
    pub key: String,
    /// Where in the template (`services[1].registry`).
    pub path: String,
    pub line: u32,
    /// `ignored` or `refused`.
    pub support: String,
    pub why: String,
}

/// A cron job of an environment with its latest runs.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct CronJob {
    pub name: String,
    /// Five cron fields, UTC.
    pub schedule: String,
    /// When it runs next (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_at: Option<i64>,
    /// Newest first (the last 50 occurrences).
    #[serde(default)]
    pub runs: Vec<CronRun>,
    /// Where its runs are when Offshoot does not keep them (the cluster's `CronJob`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One occurrence of a cron job's schedule: run, or skipped and why.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct CronRun {
    pub id: String,
    pub scheduled_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<i64>,
    /// `running`, `succeeded`, `failed`, `skipped` or `interrupted`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The tail of its log.
    #[serde(default)]
    pub output: String,
}

/// A parameter's value in an environment.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct ParameterValue {
    pub name: String,
    pub value: String,
    /// The template's default (not given when the environment was created).
    #[serde(default)]
    pub default: bool,
}

/// A clone checked out to an environment (its password is in the environment's variables only).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct AttachedDataset {
    pub dataset: String,
    pub database: String,
    pub user: String,
    pub host: String,
    pub port: u16,
    pub leased_at: i64,
    /// When the lease passes the dataset's TTL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

/// `GET /envs/{id}/manifests`: what the environment is as Kubernetes manifests.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct RenderedManifests {
    pub runtime: String,
    /// Multi-document YAML; secret values masked.
    pub yaml: String,
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// `POST /datasets`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct CreateDataset {
    pub name: String,
    /// The database to snapshot: `postgres://user:pass@host:port/db` or `mysql://...`.
    pub source: String,
    /// The server that holds the snapshot and the pool (a login that may create databases and
    /// roles); the source's server when absent.
    #[serde(default)]
    pub target: Option<String>,
    #[serde(default)]
    pub pool_size: Option<u32>,
    /// Five-field cron schedule of refreshes (UTC).
    #[serde(default)]
    pub refresh: Option<String>,
    /// How long a clone may stay attached before it is reported (`72h`).
    #[serde(default)]
    pub ttl: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct PoolState {
    pub ready: u32,
    pub leased: u32,
    pub filling: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct Snapshot {
    pub generation: i64,
    pub bytes: i64,
    pub taken_at: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct Lease {
    pub env_id: String,
    pub database: String,
    pub leased_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    /// Attached longer than the dataset's TTL.
    pub expired: bool,
    /// Made from an older snapshot than the current one.
    pub stale: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct DatasetInfo {
    pub name: String,
    /// `postgres` or `mariadb`.
    pub engine: String,
    /// URLs with their passwords masked.
    pub source: String,
    pub target: String,
    pub pool_size: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_refresh: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<i64>,
    /// `snapshotting`, `ready`, `failed`, `deleting`.
    pub state: String,
    /// A new snapshot is being taken.
    pub refreshing: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<Snapshot>,
    pub pool: PoolState,
    /// Median time to make one clone of the current snapshot (the pool's refill speed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fill_ms: Option<i64>,
    #[serde(default)]
    pub leases: Vec<Lease>,
    pub created_at: i64,
}

/// One imported app's environment, and why its branch was chosen.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct Import {
    pub app: String,
    pub branch: String,
    pub commit: Option<String>,
    pub env_id: String,
    pub status: EnvStatus,
    /// `explicit branch`, `same-name branch`, or `fell back to <branch>`.
    pub reason: String,
}

/// One operation that changed something (or was refused), as the activity log keeps it.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Activity {
    /// Milliseconds since the epoch.
    pub at: i64,
    pub actor: String,
    /// `env.create`, `app.delete`, ...
    pub operation: String,
    pub target: String,
    /// `ok`, `refused` or `failed`.
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The API token used (its id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
    /// Where the request came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

/// A user of this server.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct User {
    pub email: String,
    /// `viewer`, `developer` or `admin`.
    pub role: String,
    pub disabled: bool,
    pub created_at: i64,
    /// Roles raised for single applications.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grants: Vec<Grant>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct Grant {
    pub app: String,
    pub role: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct UserCreate {
    pub email: String,
    pub role: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct UserUpdate {
    pub role: String,
}

/// A token as listed: never its value.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct Token {
    pub id: String,
    pub name: String,
    pub user: String,
    pub created_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct TokenCreate {
    /// Whose (default: the caller's own; another user's is an admin's to make).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `30d`, `12h`; absent: it does not expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
}

/// A token just made: shown once.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenCreated {
    pub token: String,
    pub id: String,
    pub expires_at: Option<i64>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct GrantSet {
    pub email: String,
    /// `viewer`, `developer`, `admin`, or `none` to remove the grant.
    pub role: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Logs {
    pub service: String,
    pub logs: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ExecRequest {
    pub service: String,
    pub command: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ExecResult {
    pub exit_code: i64,
    pub output: String,
}

/// Every error body: a stable code, a message for people, and diagnostics for invalid files.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diagnostics: Vec<serde_json::Value>,
}

/// Environment states.
/// A status that is not one of its kind's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownStatus {
    pub kind: &'static str,
    pub value: String,
}

impl std::fmt::Display for UnknownStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}` is not {} status", self.value, self.kind)
    }
}

impl std::error::Error for UnknownStatus {}

/// A span of milliseconds for people: `3d`, `5h`, `12m`, `40s` (the largest unit, rounded down).
pub fn span_ms(ms: i64) -> String {
    let s = ms / 1000;
    match s {
        s if s >= 86_400 => format!("{}d", s / 86_400),
        s if s >= 3600 => format!("{}h", s / 3600),
        s if s >= 60 => format!("{}m", s / 60),
        s => format!("{}s", s.max(0)),
    }
}

/// A status enum with one string form (`snake_case`), in the store, the API and the CLI.
macro_rules! statuses {
    ($(#[$doc:meta])* $name:ident, $kind:literal { $($(#[$vdoc:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
        // Each variant's text is its name in snake case; said at the enum too, where the OpenAPI
        // description reads it (a variant's `rename` from a macro fragment is not seen there).
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every status of this kind.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The one string form.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl TryFrom<String> for $name {
            type Error = UnknownStatus;

            fn try_from(s: String) -> Result<Self, UnknownStatus> {
                s.parse()
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownStatus;

            fn from_str(s: &str) -> Result<Self, UnknownStatus> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(UnknownStatus { kind: $kind, value: other.to_owned() }),
                }
            }
        }
    };
}

statuses! {
    /// Where an environment stands.
    EnvStatus, "an environment" {
        Creating = "creating",
        Deploying = "deploying",
        Ready = "ready",
        /// Its containers are stopped (kept, with their volumes); a request wakes it.
        Sleeping = "sleeping",
        /// Its containers are starting again after a sleep.
        Waking = "waking",
        Failed = "failed",
        TearingDown = "tearing_down",
        Deleted = "deleted",
    }
}

impl EnvStatus {
    /// Whether nothing more will happen to an environment in this state on its own.
    pub fn is_settled(self) -> bool {
        matches!(self, EnvStatus::Ready | EnvStatus::Sleeping | EnvStatus::Failed | EnvStatus::Deleted)
    }
}

statuses! {
    /// Where a deployment (a run of a workflow) stands.
    DeploymentStatus, "a deployment" {
        Running = "running",
        Succeeded = "succeeded",
        Failed = "failed",
    }
}

statuses! {
    /// Where a service stands.
    ServiceStatus, "a service" {
        /// Its image or static site is being built.
        Building = "building",
        /// Its init containers run.
        Initializing = "initializing",
        /// Its containers are starting and probed.
        Starting = "starting",
        /// On Kubernetes: applied, its rollout awaited.
        Deploying = "deploying",
        Ready = "ready",
        /// Stopped while its environment sleeps.
        Sleeping = "sleeping",
        Failed = "failed",
        Deleted = "deleted",
    }
}

/// What `offshoot doctor` found (`--output json`): one entry per check, in a fixed order.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct DoctorReport {
    pub checks: Vec<DoctorCheck>,
}

impl DoctorReport {
    /// Whether every check passed (warnings included: a warning is a passed check with advice).
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }
}

/// One check of `offshoot doctor`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct DoctorCheck {
    /// A stable name: `engine`, `images`, `api-port`, `router-port`, `domain`, `data-dir`,
    /// `disk`, `database`.
    pub name: String,
    /// False fails the doctor (exit 1).
    pub ok: bool,
    /// What was found.
    pub detail: String,
    /// What to do: always present on a failed check; on a passed one, advice (a warning).
    pub fix: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_has_one_string_form_in_text_and_json() {
        for s in EnvStatus::ALL {
            assert_eq!(s.as_str().parse::<EnvStatus>(), Ok(*s));
            assert_eq!(serde_json::to_value(s).expect("json"), serde_json::Value::String(s.as_str().to_owned()));
        }
        for s in DeploymentStatus::ALL {
            assert_eq!(s.as_str().parse::<DeploymentStatus>(), Ok(*s));
        }
        for s in ServiceStatus::ALL {
            assert_eq!(serde_json::from_value::<ServiceStatus>(serde_json::json!(s.as_str())).expect("json"), *s);
        }
        // The OpenAPI description lists the same forms.
        fn described<T: utoipa::PartialSchema>() -> Vec<String> {
            let schema = serde_json::to_value(T::schema()).expect("json");
            serde_json::from_value(schema["enum"].clone()).expect("an enum")
        }
        assert_eq!(described::<EnvStatus>(), EnvStatus::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>());
        assert_eq!(described::<DeploymentStatus>(), DeploymentStatus::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>());
        assert_eq!(described::<ServiceStatus>(), ServiceStatus::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>());
        let e = "napping".parse::<EnvStatus>().expect_err("unknown");
        assert_eq!(e.to_string(), "`napping` is not an environment status");
    }
}

/// Credentials for a container registry (the password is write-only).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct RegistryLogin {
    pub host: String,
    /// Absent: the whole server's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    pub username: String,
    pub password: String,
}

/// A certificate from ACME (or a name still waiting for its first), as listed: never its key.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct Certificate {
    /// Its first name: `*.example.com`, or one host.
    pub name: String,
    pub names: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// Validity (ms since the epoch), once issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<i64>,
    /// When it is renewed (two thirds of its life).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_at: Option<i64>,
    /// ACME orders that issued it.
    pub orders: i64,
    /// Attempts that failed in a row, the last one's error, and when the next is.
    pub failures: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt: Option<i64>,
}

/// A registry login, as listed: never its password.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct RegistryInfo {
    pub host: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    pub username: String,
    pub created_at: i64,
}
