//! Certificates the router serves by name, swapped whole (a new one takes the next handshake;
//! connections already open keep theirs), the HTTP-01 answers an ACME order is waiting on, and
//! which hosts plain HTTP sends on to HTTPS.

use crate::server::TlsError;
use arc_swap::ArcSwap;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

/// Where HTTP-01 answers are asked for.
pub const CHALLENGE_PATH: &str = "/.well-known/acme-challenge/";

/// One certificate: the names it is for, and its chain and key.
#[derive(Debug)]
struct Entry {
    names: Vec<String>,
    key: Arc<CertifiedKey>,
}

/// The router's certificates by name, and the ACME answers it gives.
#[derive(Debug, Default)]
pub struct CertBook {
    entries: ArcSwap<Vec<Entry>>,
    challenges: RwLock<HashMap<String, String>>,
    /// The TLS listener's port, once there is one: plain HTTP to a covered host goes there.
    https_port: OnceLock<u16>,
}

/// A certificate to serve: its names, chain and key (PEM).
#[derive(Clone, Debug)]
pub struct Served {
    pub names: Vec<String>,
    pub chain_pem: String,
    pub key_pem: String,
}

fn certified(s: &Served) -> Result<CertifiedKey, TlsError> {
    let name = s.names.first().cloned().unwrap_or_default();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(s.chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|source| TlsError::Cert { path: name.clone().into(), source })?;
    if certs.is_empty() {
        return Err(TlsError::NoCert(name.into()));
    }
    let key = PrivateKeyDer::from_pem_slice(s.key_pem.as_bytes()).map_err(|source| TlsError::Key { path: name.clone().into(), source })?;
    CertifiedKey::from_der(certs, key, &crate::server::provider()).map_err(|source| TlsError::BadKey { path: name.into(), source })
}

impl CertBook {
    /// Serves exactly these certificates from the next handshake on. A certificate that cannot
    /// be used is left out and named in the errors; the others are served.
    pub fn set(&self, served: &[Served]) -> Vec<TlsError> {
        let mut errors = Vec::new();
        let mut entries = Vec::new();
        for s in served {
            match certified(s) {
                Ok(key) => entries.push(Entry { names: s.names.clone(), key: Arc::new(key) }),
                Err(e) => errors.push(e),
            }
        }
        self.entries.store(Arc::new(entries));
        errors
    }

    /// The certificate for `host`: one naming it exactly first, else a wildcard covering it.
    pub fn resolve(&self, host: &str) -> Option<Arc<CertifiedKey>> {
        let entries = self.entries.load();
        let exact = entries.iter().find(|e| e.names.iter().any(|n| !n.starts_with("*.") && n.eq_ignore_ascii_case(host)));
        exact.or_else(|| entries.iter().find(|e| e.names.iter().any(|n| wildcard_covers(n, host)))).map(|e| e.key.clone())
    }

    /// The names of every certificate here (`*.` wildcards included).
    pub fn names(&self) -> Vec<String> {
        self.entries.load().iter().flat_map(|e| e.names.iter().cloned()).collect()
    }

    /// Whether a certificate here covers `host`.
    pub fn covers(&self, host: &str) -> bool {
        self.resolve(host).is_some()
    }

    /// The TLS listener's port (set once).
    pub fn set_https_port(&self, port: u16) {
        let _ = self.https_port.set(port);
    }

    pub(crate) fn https_port(&self) -> Option<u16> {
        self.https_port.get().copied()
    }

    /// Answers `token` with `key_authorization` until withdrawn.
    pub fn publish(&self, token: &str, key_authorization: &str) {
        self.challenges.write().unwrap_or_else(std::sync::PoisonError::into_inner).insert(token.to_owned(), key_authorization.to_owned());
    }

    pub fn withdraw(&self, token: &str) {
        self.challenges.write().unwrap_or_else(std::sync::PoisonError::into_inner).remove(token);
    }

    /// The answer to an HTTP-01 request for `path`, if one is published.
    pub(crate) fn answer(&self, path: &str) -> Option<String> {
        let token = path.strip_prefix(CHALLENGE_PATH)?;
        self.challenges.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(token).cloned()
    }
}

fn wildcard_covers(name: &str, host: &str) -> bool {
    name.strip_prefix("*.")
        .is_some_and(|domain| host.split_once('.').is_some_and(|(label, rest)| !label.is_empty() && rest.eq_ignore_ascii_case(domain)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_are_answered_until_withdrawn_and_bad_certificates_named() {
        let book = CertBook::default();
        assert_eq!(book.answer("/.well-known/acme-challenge/abc"), None);
        book.publish("abc", "abc.thumb");
        assert_eq!(book.answer("/.well-known/acme-challenge/abc").as_deref(), Some("abc.thumb"));
        assert_eq!(book.answer("/other/abc"), None);
        book.withdraw("abc");
        assert_eq!(book.answer("/.well-known/acme-challenge/abc"), None);
        let errors = book.set(&[Served { names: vec!["x.test".into()], chain_pem: "junk".into(), key_pem: "junk".into() }]);
        assert_eq!(errors.len(), 1);
        assert!(errors[0].to_string().contains("x.test"), "{}", errors[0]);
        assert!(!book.covers("x.test"));
        assert!(
            wildcard_covers("*.a.test", "b.a.test") && !wildcard_covers("*.a.test", "c.b.a.test") && !wildcard_covers("a.test", "a.test")
        );
    }
}
