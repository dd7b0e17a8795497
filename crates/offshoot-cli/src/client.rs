//! The HTTP client of the control plane's API.

use crate::Hint;
use anyhow::{Context as _, Result, anyhow};
use offshoot_api_types::ErrorBody;
use reqwest::blocking::{Client, RequestBuilder, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::PathBuf;
use std::time::Duration;

/// The data directory the server uses by default (and where the admin token is).
pub fn default_data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("OFFSHOOT_DATA_DIR") {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".local/share/offshoot")
}

pub(crate) struct Api {
    base: String,
    token: String,
    http: Client,
}

impl Api {
    /// From `OFFSHOOT_URL` (default `http://127.0.0.1:7878`) and `OFFSHOOT_TOKEN` (default: the
    /// default data directory's `admin-token`).
    pub(crate) fn from_env() -> Result<Api> {
        let base = std::env::var("OFFSHOOT_URL").unwrap_or_else(|_| "http://127.0.0.1:7878".into()).trim_end_matches('/').to_owned();
        let token = match std::env::var("OFFSHOOT_TOKEN") {
            Ok(t) => t,
            Err(_) => {
                let path = default_data_dir().join("admin-token");
                std::fs::read_to_string(&path)
                    .with_context(|| format!("read the admin token `{}`", path.display()))
                    .context(Hint("set OFFSHOOT_TOKEN, or start the server with `offshoot server` (it writes the token there)".into()))?
                    .trim()
                    .to_owned()
            }
        };
        let http = Client::builder().timeout(Duration::from_secs(300)).build().context("create the HTTP client")?;
        Ok(Api { base, token, http })
    }

    fn send(&self, rb: RequestBuilder) -> Result<Response> {
        let resp = rb.bearer_auth(&self.token).send().map_err(|e| {
            if e.is_connect() {
                anyhow!("cannot reach the Offshoot server at {}", self.base)
                    .context(Hint("start it with `offshoot server`, or set OFFSHOOT_URL".into()))
            } else {
                anyhow!(e).context(format!("talk to {}", self.base))
            }
        })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let body: Option<ErrorBody> = resp.json().ok();
        Err(match body {
            Some(b) => {
                let mut msg = b.message;
                for d in &b.diagnostics {
                    msg.push_str(&format!(
                        "\n  {}:{}:{}: {}: {}",
                        d["file"].as_str().unwrap_or(""),
                        d["line"],
                        d["column"],
                        d["severity"].as_str().unwrap_or(""),
                        d["message"].as_str().unwrap_or("")
                    ));
                }
                match b.hint {
                    Some(h) => anyhow!(msg).context(Hint(h)),
                    None => anyhow!(msg),
                }
            }
            None => anyhow!("the server answered {status}"),
        })
    }

    pub(crate) fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.send(self.http.get(format!("{}/api/v1{path}", self.base)))?.json().context("read the server's answer")
    }

    pub(crate) fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        self.send(self.http.post(format!("{}/api/v1{path}", self.base)).json(body))?.json().context("read the server's answer")
    }

    pub(crate) fn post_empty<B: Serialize>(&self, path: &str, body: &B) -> Result<()> {
        self.send(self.http.post(format!("{}/api/v1{path}", self.base)).json(body)).map(|_| ())
    }

    pub(crate) fn put<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        self.send(self.http.put(format!("{}/api/v1{path}", self.base)).json(body))?.json().context("read the server's answer")
    }

    pub(crate) fn delete_json<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.send(self.http.delete(format!("{}/api/v1{path}", self.base)))?.json().context("read the server's answer")
    }

    pub(crate) fn delete(&self, path: &str) -> Result<()> {
        self.send(self.http.delete(format!("{}/api/v1{path}", self.base))).map(|_| ())
    }
}

/// Percent-encodes a path segment or query value.
pub(crate) fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-._~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}
