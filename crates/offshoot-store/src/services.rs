//! A service's record: its status and what it answers for, as its last deployment left it. The
//! record is typed and versioned; the store keeps it as JSON in the `detail` column, so a record
//! written by an older version (no `v`, the same fields) reads as version 1.

use serde::{Deserialize, Deserializer, Serialize};

/// The version of [`ServiceDetail`] this build writes.
pub const SERVICE_DETAIL_VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceRow {
    pub env_id: crate::EnvId,
    pub name: String,
    pub status: offshoot_api_types::ServiceStatus,
    pub reason: Option<String>,
    pub detail: ServiceDetail,
}

/// What a service answers for and what it runs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceDetail {
    /// The record's version; records without one were written before versions (version 1).
    #[serde(default = "first_version")]
    pub v: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hostnames: Vec<String>,
    /// The image its containers run (a content tag for built services).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// A static site: the key of the build it serves, and its fallback page as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    /// On Kubernetes: where the cluster's ingress serves it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    /// What the router sends to it (absent while it builds for the first time, on Kubernetes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing: Option<Routing>,
}

fn first_version() -> u32 {
    1
}

impl ServiceDetail {
    /// An empty record of the current version.
    pub fn new() -> Self {
        ServiceDetail { v: SERVICE_DETAIL_VERSION, ..Default::default() }
    }

    /// Whether the service is served by the router from the site storage (no container).
    pub fn is_site(&self) -> bool {
        self.site.is_some()
    }
}

/// What the router needs to know about a service.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Routing {
    /// `(host, path, visibility)`, rules first.
    #[serde(default)]
    pub routes: Vec<(String, String, String)>,
    /// The container port HTTP goes to.
    #[serde(default)]
    pub port: Option<u16>,
    /// Container ports with `loadbalancer: true`.
    #[serde(default)]
    pub lb_ports: Vec<u16>,
    /// The environment's `ingress` settings as written (validated with the template).
    #[serde(default)]
    pub ingress: Option<IngressRecord>,
}

/// An `ingress` block's settings, each as written (`"10m"`, `"60s"`, `"on"`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngressRecord {
    #[serde(default, deserialize_with = "text", skip_serializing_if = "Option::is_none")]
    pub proxy_body_size: Option<String>,
    #[serde(default, deserialize_with = "text", skip_serializing_if = "Option::is_none")]
    pub proxy_buffer_size: Option<String>,
    #[serde(default, deserialize_with = "text", skip_serializing_if = "Option::is_none")]
    pub proxy_buffering: Option<String>,
    #[serde(default, deserialize_with = "text", skip_serializing_if = "Option::is_none")]
    pub proxy_buffers_number: Option<String>,
    #[serde(default, deserialize_with = "text", skip_serializing_if = "Option::is_none")]
    pub proxy_max_temp_file_size: Option<String>,
    #[serde(default, deserialize_with = "text", skip_serializing_if = "Option::is_none")]
    pub proxy_read_timeout: Option<String>,
    #[serde(default, deserialize_with = "text", skip_serializing_if = "Option::is_none")]
    pub proxy_send_timeout: Option<String>,
    #[serde(default, deserialize_with = "text", skip_serializing_if = "Option::is_none")]
    pub proxy_connect_timeout: Option<String>,
}

/// A setting written as text, a number or a switch (older records kept YAML's scalar).
fn text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<serde_json::Value>::deserialize(d)? {
        Some(serde_json::Value::String(s)) => Some(s),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        Some(serde_json::Value::Bool(b)) => Some(b.to_string()),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_of_the_version_before_reads_as_version_1() {
        let old = r#"{"hostnames":["web-5z3fwcy.localhost"],"image":"offshoot/shop/web:9c2e8070f891a9aa","routing":{"ingress":null,"lb_ports":[],"port":8080,"routes":[["web-5z3fwcy.localhost","/","public"]]}}"#;
        let d: ServiceDetail = serde_json::from_str(old).expect("reads");
        assert_eq!(d.v, 1);
        assert_eq!(d.image.as_deref(), Some("offshoot/shop/web:9c2e8070f891a9aa"));
        let r = d.routing.expect("routing");
        assert_eq!((r.port, r.routes[0].0.as_str()), (Some(8080), "web-5z3fwcy.localhost"));
        let empty: ServiceDetail = serde_json::from_str("{}").expect("reads");
        assert_eq!(empty, ServiceDetail { v: 1, ..Default::default() });
    }

    #[test]
    fn ingress_settings_written_as_numbers_or_switches_read_as_text() {
        let r: IngressRecord =
            serde_json::from_str(r#"{"proxy_buffers_number":8,"proxy_buffering":true,"proxy_body_size":"10m"}"#).expect("reads");
        assert_eq!(r.proxy_buffers_number.as_deref(), Some("8"));
        assert_eq!(r.proxy_buffering.as_deref(), Some("true"));
        assert_eq!(r.proxy_body_size.as_deref(), Some("10m"));
    }

    #[test]
    fn a_record_round_trips() {
        let d = ServiceDetail { site: Some("k".into()), fallback: Some("404.html".into()), ..ServiceDetail::new() };
        let back: ServiceDetail = serde_json::from_str(&serde_json::to_string(&d).expect("writes")).expect("reads");
        assert_eq!(back, d);
    }
}
