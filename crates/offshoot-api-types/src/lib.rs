//! Bodies of the HTTP API (`/api/v1`), shared by the server and the CLI. No I/O.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AppCreate {
    /// A local path or a git URL.
    pub repo: String,
    pub name: Option<String>,
    /// The branch whose configuration seeds version 1 (default: the repository's default).
    pub branch: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct App {
    pub name: String,
    pub repo: String,
    pub default_branch: String,
    pub version: i64,
    /// `release` (GitOps files) or `compose` (generated).
    #[serde(default)]
    pub source: String,
    pub created_at: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Template {
    pub app: String,
    pub version: i64,
    pub template: String,
    pub env_vars: String,
}

/// A new version: either file may be left out to keep the current one.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TemplateUpdate {
    pub template: Option<String>,
    pub env_vars: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SecretSet {
    pub key: String,
    /// Absent: the secret applies to every service.
    pub service: Option<String>,
    pub value: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EnvCreate {
    pub app: String,
    pub branch: String,
    pub environment_template: Option<String>,
    /// Lifetime in seconds; the environment is torn down when it expires.
    pub ttl_seconds: Option<u64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct EnvDeploy {
    pub commit: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Service {
    pub name: String,
    pub status: String,
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

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LoadBalancer {
    pub port: u16,
    /// `127.0.0.1:N`.
    pub address: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Deployment {
    pub id: String,
    pub workflow: String,
    pub commit: Option<String>,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Phase → milliseconds (fetch, build, start, ready).
    pub phases: BTreeMap<String, u64>,
    pub created_at: i64,
    pub finished_at: Option<i64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Env {
    pub id: String,
    pub app: String,
    pub branch: String,
    pub commit: Option<String>,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub environment_template: Option<String>,
    pub services: Vec<Service>,
    #[serde(default)]
    pub deployments: Vec<Deployment>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    /// The environments of the imported apps (`app_imports`), in import order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub imports: Vec<Import>,
    /// For an imported app's environment: the importing environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Things to know that did not stop the environment (e.g. imports of imports not followed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// One imported app's environment, and why its branch was chosen.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Import {
    pub app: String,
    pub branch: String,
    pub commit: Option<String>,
    pub env_id: String,
    pub status: String,
    /// `explicit branch`, `same-name branch`, or `fell back to <branch>`.
    pub reason: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Logs {
    pub service: String,
    pub logs: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExecRequest {
    pub service: String,
    pub command: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExecResult {
    pub exit_code: i64,
    pub output: String,
}

/// Every error body: a stable code, a message for people, and diagnostics for invalid files.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diagnostics: Vec<serde_json::Value>,
}

/// Environment states.
pub mod status {
    pub const CREATING: &str = "creating";
    pub const DEPLOYING: &str = "deploying";
    pub const READY: &str = "ready";
    pub const FAILED: &str = "failed";
    pub const TEARING_DOWN: &str = "tearing_down";
    pub const DELETED: &str = "deleted";

    /// Whether nothing more will happen to an environment in this state on its own.
    pub fn is_settled(s: &str) -> bool {
        matches!(s, READY | FAILED | DELETED)
    }
}
