//! Automatic HTTPS: the certificate keeper. With a DNS provider it keeps one wildcard
//! certificate for `*.DOMAIN` and `DOMAIN` (DNS-01), so no environment ever waits for one;
//! without, one certificate per routed host (HTTP-01, answered by the router), asked for as
//! soon as the host is routed. Certificates live in the store (keys sealed), so every server of
//! one store serves the same; each round hands the router what the store holds, renews what
//! passed two thirds of its life, and waits out failures with a growing back-off.

use crate::crypto::SecretKey;
use crate::failure::Failure;
use crate::state::Shared;
use offshoot_acme::{Acme, Http01, Rfc2136, Solver};
use offshoot_router::{CertBook, Served};
use offshoot_store::{CertRow, IssuedCert, now_ms};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How often the keeper looks; a change of the routing table wakes it at once, so a new host's
/// order starts when its first route appears, while its environment deploys.
pub(crate) const ROUND: Duration = Duration::from_secs(5);

/// `offshoot server --acme*`.
#[derive(Clone, Debug)]
pub struct AcmeConfig {
    /// The ACME directory URL.
    pub directory: String,
    pub email: Option<String>,
    /// Roots to trust for the ACME server's own HTTPS (a test CA).
    pub ca_bundle: Option<PathBuf>,
    /// DNS-01 through this zone's primary server: the wildcard certificate.
    pub dns: Option<Rfc2136>,
}

/// The router answers HTTP-01 tokens from its book.
struct RouterAnswers(Arc<CertBook>);

impl Http01 for RouterAnswers {
    fn publish(&self, token: &str, key_authorization: &str) {
        self.0.publish(token, key_authorization);
    }
    fn withdraw(&self, token: &str) {
        self.0.withdraw(token);
    }
}

pub(crate) struct CertKeeper {
    pub(crate) ctx: Shared,
    pub(crate) config: AcmeConfig,
    acme: Option<Acme>,
    /// The serials the router serves now, to hand it a new set only when something changed.
    served: Vec<String>,
}

impl CertKeeper {
    pub(crate) fn new(ctx: Shared, config: AcmeConfig) -> Self {
        CertKeeper { ctx, config, acme: None, served: Vec::new() }
    }

    /// What should have a certificate: the wildcard and the domain, or each routed host.
    fn wanted(&self) -> Vec<Vec<String>> {
        let domain = self.ctx.domain.trim_end_matches('.').to_ascii_lowercase();
        if self.config.dns.is_some() {
            return vec![vec![format!("*.{domain}"), domain]];
        }
        // Names a public CA can vouch for: not a wildcard route, not `*.localhost`, not an address.
        let public =
            |h: &String| !h.starts_with("*.") && h.contains('.') && !h.ends_with(".localhost") && h.parse::<std::net::IpAddr>().is_err();
        let mut hosts: Vec<String> = self.ctx.router.hosts().into_iter().filter(public).collect();
        hosts.sort();
        hosts.dedup();
        hosts.into_iter().map(|h| vec![h]).collect()
    }

    /// The account, made (and kept in the store) on first use.
    async fn account(&mut self) -> Result<Acme, String> {
        if let Some(a) = &self.acme {
            return Ok(a.clone());
        }
        let dir = &self.config.directory;
        let stored = match self.ctx.store.acme_account(dir).await.map_err(|e| e.to_string())? {
            Some(sealed) => Some(self.ctx.key.decrypt(&sealed, &format!("acme-account/{dir}")).map_err(|e| e.to_string())?),
            None => None,
        };
        let (acme, new) = Acme::account(dir, self.config.email.as_deref(), self.config.ca_bundle.as_deref(), stored.as_deref())
            .await
            .map_err(|e| e.to_string())?;
        if let Some(json) = new {
            let sealed = self.ctx.key.encrypt(&json, &format!("acme-account/{dir}")).map_err(|e| e.to_string())?;
            self.ctx.store.save_acme_account(dir, &sealed).await.map_err(|e| e.to_string())?;
            tracing::info!(directory = %dir, "acme: account made");
        }
        self.acme = Some(acme.clone());
        Ok(acme)
    }

    /// Orders a certificate for `names` and keeps it.
    async fn issue(&mut self, names: &[String]) -> Result<(), String> {
        let acme = self.account().await?;
        let answers = RouterAnswers(self.ctx.router.certs().clone());
        let solver = match &self.config.dns {
            Some(dns) => Solver::Dns(dns),
            None => Solver::Http(&answers),
        };
        let started = std::time::Instant::now();
        let issued = acme.issue(names, &solver).await.map_err(|e| e.to_string())?;
        let key_sealed = self.ctx.key.encrypt(&issued.key_pem, &key_context(&names[0])).map_err(|e| e.to_string())?;
        self.ctx
            .store
            .save_certificate(&IssuedCert {
                names,
                chain_pem: &issued.chain_pem,
                key_sealed: &key_sealed,
                issuer: &issued.leaf.issuer,
                serial: &issued.leaf.serial,
                not_before: issued.leaf.not_before,
                not_after: issued.leaf.not_after,
            })
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(names = %names.join(", "), ms = started.elapsed().as_millis() as u64, not_after = issued.leaf.not_after, "acme: certificate issued");
        Ok(())
    }

    /// Hands the router (and, on Kubernetes, the environments' Ingresses) the store's
    /// certificates, when they changed.
    async fn serve(&mut self, rows: &[CertRow]) {
        let mut serials: Vec<String> = rows.iter().filter_map(|r| r.serial.clone()).collect();
        serials.sort();
        if serials == self.served {
            return;
        }
        let served: Vec<Served> = rows.iter().filter_map(|r| served(&self.ctx.key, r)).collect();
        for e in self.ctx.router.certs().set(&served) {
            tracing::error!(error = %e, "acme: a stored certificate cannot be served");
        }
        self.served = serials;
        self.to_cluster(&served).await;
    }

    /// On Kubernetes (without cert-manager), the wildcard goes to the Ingresses: new
    /// deployments name it, and every environment's Secret gets the new one (the ingress
    /// controller picks it up; a connection open keeps its own).
    async fn to_cluster(&self, served: &[Served]) {
        let Some(k) = self.ctx.kube.as_ref().filter(|k| k.cert_manager_issuer.is_none()) else { return };
        if self.config.dns.is_none() {
            return;
        }
        let wildcard = self.wanted().into_iter().next().and_then(|names| served.iter().find(|s| s.names.first() == names.first()));
        let Some(s) = wildcard else { return };
        let cert = offshoot_manifests::Certificate {
            names: s.names.clone(),
            chain_pem: s.chain_pem.clone(),
            key_pem: offshoot_template::secret::SecretString::new(s.key_pem.clone()),
        };
        let first = k.certificate.lock().unwrap_or_else(std::sync::PoisonError::into_inner).replace(cert).is_none();
        if first {
            // This server's deployments name it from now on; earlier ones at their next. The
            // Secrets are written anyway: another server may have renewed it while this one
            // was down.
            tracing::info!(names = %s.names.join(", "), "acme: the Ingresses are served with the wildcard");
        }
        let envs = match self.ctx.store.envs(None, false).await {
            Ok(envs) => envs,
            Err(e) => {
                tracing::warn!(error = %e, "acme: the environments' certificate Secrets are not renewed this round");
                return;
            }
        };
        let mut renewed = 0;
        for env in envs {
            let mut o = crate::kube_rt::options(&self.ctx, &env);
            o.reveal_secrets = true;
            let Some(secret) = offshoot_manifests::tls_secret(&o, &env.id, &env.app) else { continue };
            match k.kube.apply(&[secret]).await {
                Ok(()) => renewed += 1,
                // An environment not yet deployed has no namespace: it gets the new one.
                Err(e) => tracing::debug!(env = %env.id, error = %e, "acme: no certificate Secret renewed"),
            }
        }
        tracing::info!(environments = renewed, "acme: the renewed wildcard is in the environments' Secrets");
    }
}

fn key_context(name: &str) -> String {
    format!("certificate/{name}")
}

/// A stored certificate as the router serves it (its key opened).
fn served(key: &SecretKey, r: &CertRow) -> Option<Served> {
    let (chain, sealed) = (r.chain_pem.clone()?, r.key_sealed.as_ref()?);
    match key.decrypt(sealed, &key_context(&r.name)) {
        Ok(key_pem) => Some(Served { names: r.name_list(), chain_pem: chain, key_pem }),
        Err(e) => {
            tracing::error!(error = %e, name = %r.name, "acme: a certificate's key cannot be opened");
            None
        }
    }
}

/// Whether `row` (if any) needs an order now.
fn due(row: Option<&CertRow>, now: i64) -> bool {
    let Some(r) = row else { return true };
    if r.next_attempt > now {
        return false;
    }
    match (r.not_before, r.not_after, &r.chain_pem) {
        (Some(nb), Some(na), Some(_)) => now >= offshoot_acme::renew_at(nb, na),
        _ => true,
    }
}

impl crate::background::Periodic for CertKeeper {
    const NAME: &'static str = "certificates";

    async fn round(&mut self) -> Result<(), Failure> {
        let rows = self.ctx.store.certificates().await?;
        self.serve(&rows).await;
        let now = now_ms();
        let wanted = self.wanted();
        let mut changed = false;
        // A host no longer routed keeps its certificate until it expires (it may come back);
        // then, or if it never got one, it is forgotten.
        for r in &rows {
            let gone = r.not_after.is_none_or(|na| na < now);
            if gone && !wanted.iter().any(|w| w[0] == r.name) {
                self.ctx.store.delete_certificate(&r.name).await?;
                changed = true;
            }
        }
        for names in wanted {
            let row = rows.iter().find(|r| r.name == names[0]);
            if !due(row, now) {
                continue;
            }
            match self.issue(&names).await {
                Ok(()) => changed = true,
                Err(e) => {
                    let failures = row.map_or(0, |r| r.failures) + 1;
                    let wait = offshoot_acme::backoff(u32::try_from(failures).unwrap_or(u32::MAX));
                    tracing::warn!(names = %names.join(", "), error = %e, retry_in_s = wait.as_secs(), "acme: no certificate");
                    let next = now + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX / 2);
                    self.ctx.store.certificate_failed(&names, &e, next).await?;
                }
            }
        }
        if changed {
            let rows = self.ctx.store.certificates().await?;
            self.serve(&rows).await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(nb: Option<i64>, na: Option<i64>, next: i64) -> CertRow {
        CertRow {
            name: "a.test".into(),
            names: "a.test".into(),
            chain_pem: nb.map(|_| "pem".into()),
            key_sealed: None,
            issuer: None,
            serial: None,
            not_before: nb,
            not_after: na,
            orders: 1,
            failures: 0,
            last_error: None,
            next_attempt: next,
            updated_at: 0,
        }
    }

    #[test]
    fn a_certificate_is_due_when_missing_past_two_thirds_and_never_during_its_back_off() {
        assert!(due(None, 0));
        assert!(!due(Some(&row(Some(0), Some(90), 0)), 59));
        assert!(due(Some(&row(Some(0), Some(90), 0)), 60));
        assert!(due(Some(&row(None, None, 0)), 10), "failed before its first");
        assert!(!due(Some(&row(None, None, 100)), 10), "waiting out a failure");
        assert!(!due(Some(&row(Some(0), Some(90), 100)), 95), "a renewal that failed waits too");
    }
}
