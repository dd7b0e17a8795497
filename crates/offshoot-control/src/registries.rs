//! Credentials for container registries: set (`registry login`), listed without their
//! passwords, forgotten (`registry logout`); server-wide, or one application's, which win for
//! their host. The password is sealed through `Ports` and never shown.

use crate::gate::{Noted, Operation, gate};
use crate::{Control, ControlError, Ports};
use offshoot_store::{RegistryCredential, now_ms};

/// The longest password (or token) a registry login takes.
pub const MAX_PASSWORD: usize = 4096;

/// A login: the registry's host, whose credentials they are, and them.
#[derive(Clone)]
pub struct Login {
    pub host: String,
    /// `None`: the whole server's.
    pub app: Option<String>,
    pub username: String,
    pub password: String,
}

/// Whether `host` can name a registry: a host name or address, with a port or not.
pub fn valid_host(host: &str) -> bool {
    let (name, port) = host.rsplit_once(':').unwrap_or((host, ""));
    !name.is_empty()
        && host.len() <= 255
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        && !name.starts_with(['-', '.'])
        && (port.is_empty() && !host.ends_with(':') || port.parse::<u16>().is_ok_and(|p| p > 0))
}

/// The context a registry's password is sealed with.
pub fn seal_context(host: &str, app: &str) -> String {
    format!("registry/{app}/{host}")
}

impl<P: Ports> Control<'_, P> {
    /// Stores the credentials for a registry (replacing those it had).
    pub async fn registry_login(&self, req: Login) -> Result<(), ControlError> {
        let target = req.app.as_ref().map_or_else(|| req.host.clone(), |a| format!("{a}/{}", req.host));
        let work = async {
            if !valid_host(&req.host) {
                return Err(ControlError::bad_input(format!("`{}` is not a registry host", req.host))
                    .with_hint("give the host as images name it: `registry.example.com`, `127.0.0.1:5001`, `docker.io`"));
            }
            if req.username.is_empty() || req.username.len() > 255 || req.username.chars().any(char::is_control) {
                return Err(ControlError::bad_input("the user name must have 1 to 255 characters, without control characters"));
            }
            if req.password.is_empty() || req.password.len() > MAX_PASSWORD {
                return Err(ControlError::bad_input(format!("the password must have 1 to {MAX_PASSWORD} bytes")));
            }
            if let Some(app) = &req.app {
                self.find_app(app).await?;
            }
            let app = req.app.clone().unwrap_or_default();
            let secret = self.ports.seal(&req.password, &seal_context(&req.host, &app)).map_err(ControlError::Seal)?;
            let c = RegistryCredential { host: req.host.clone(), app, username: req.username.clone(), secret, created_at: now_ms() };
            Ok(self.store.set_registry_credential(&c).await?)
        };
        // The record names the registry and the user, never the password.
        gate(self.store, &self.actor, Operation::RegistryLogin, &target, work, |_| Noted::detail(format!("as {}", req.username))).await
    }

    /// Forgets the credentials for a registry (of an application, or the server's).
    pub async fn registry_logout(&self, host: &str, app: Option<&str>) -> Result<(), ControlError> {
        let target = app.map_or_else(|| host.to_owned(), |a| format!("{a}/{host}"));
        let work = async {
            if self.store.delete_registry_credential(host, app.unwrap_or_default()).await? {
                Ok(())
            } else {
                Err(ControlError::not_found("registry login", &target, "`offshoot registry list` shows them"))
            }
        };
        gate(self.store, &self.actor, Operation::RegistryLogout, &target, work, |_| Noted::default()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_hosts() {
        for ok in ["docker.io", "registry.example.com", "127.0.0.1:5001", "localhost:5000", "ghcr.io"] {
            assert!(valid_host(ok), "{ok}");
        }
        for bad in ["", "https://ghcr.io", "ghcr.io/acme", "host:", "host:0", "host:99999", "-x", "a b"] {
            assert!(!valid_host(bad), "{bad}");
        }
    }
}
