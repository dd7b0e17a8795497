//! One ACME account (`instant-acme`) and its orders: a certificate for some names, each name
//! proved by HTTP-01 (a token the router answers) or DNS-01 (a TXT record written by RFC 2136).

use crate::dns::{DnsError, Rfc2136};
use crate::names::{BadChain, Leaf, leaf};
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use std::path::Path;
use std::time::Duration;

/// Let's Encrypt's production directory.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    #[error("the ACME server at {directory} cannot be used: {why}")]
    Account { directory: String, why: String },
    #[error("the order for {names} failed: {why}")]
    Order { names: String, why: String },
    #[error("{name} was not proved: {why}")]
    Challenge { name: String, why: String },
    #[error(transparent)]
    Dns(#[from] DnsError),
    #[error(transparent)]
    Chain(#[from] BadChain),
}

/// Answers HTTP-01 challenges: `GET /.well-known/acme-challenge/TOKEN` gets the key authorization.
pub trait Http01: Send + Sync {
    fn publish(&self, token: &str, key_authorization: &str);
    fn withdraw(&self, token: &str);
}

/// How an order's names are proved.
pub enum Solver<'a> {
    Http(&'a dyn Http01),
    Dns(&'a Rfc2136),
}

/// A certificate just issued.
#[derive(Clone, Debug)]
pub struct Issued {
    pub chain_pem: String,
    pub key_pem: String,
    pub leaf: Leaf,
}

/// An account on one ACME server.
#[derive(Clone)]
pub struct Acme {
    account: Account,
    directory: String,
}

fn builder(ca_bundle: Option<&Path>) -> Result<instant_acme::AccountBuilder, instant_acme::Error> {
    match ca_bundle {
        Some(p) => Account::builder_with_root(p),
        None => Account::builder(),
    }
}

impl Acme {
    /// The account of `stored` credentials (JSON), or a new one (whose credentials are returned
    /// to be stored), on `directory`, trusting `ca_bundle` for the ACME server's own HTTPS.
    pub async fn account(
        directory: &str,
        email: Option<&str>,
        ca_bundle: Option<&Path>,
        stored: Option<&str>,
    ) -> Result<(Acme, Option<String>), AcmeError> {
        let bad = |why: String| AcmeError::Account { directory: directory.to_owned(), why };
        if let Some(json) = stored {
            let creds: AccountCredentials = serde_json::from_str(json).map_err(|e| bad(format!("the stored account: {e}")))?;
            let account =
                builder(ca_bundle).map_err(|e| bad(e.to_string()))?.from_credentials(creds).await.map_err(|e| bad(e.to_string()))?;
            return Ok((Acme { account, directory: directory.to_owned() }, None));
        }
        let contact = email.map(|e| format!("mailto:{e}"));
        let contact: Vec<&str> = contact.iter().map(String::as_str).collect();
        let new = NewAccount { contact: &contact, terms_of_service_agreed: true, only_return_existing: false };
        let (account, creds) = builder(ca_bundle)
            .map_err(|e| bad(e.to_string()))?
            .create(&new, directory.to_owned(), None)
            .await
            .map_err(|e| bad(e.to_string()))?;
        let json = serde_json::to_string(&creds).map_err(|e| bad(e.to_string()))?;
        Ok((Acme { account, directory: directory.to_owned() }, Some(json)))
    }

    /// The directory this account is on.
    pub fn directory(&self) -> &str {
        &self.directory
    }

    /// Orders a certificate for `names` and proves each with `solver`. Records and tokens
    /// published for it are withdrawn however it ends.
    pub async fn issue(&self, names: &[String], solver: &Solver<'_>) -> Result<Issued, AcmeError> {
        let all = names.join(", ");
        let order_err = |why: String| AcmeError::Order { names: all.clone(), why };
        let ids: Vec<Identifier> = names.iter().map(|n| Identifier::Dns(n.clone())).collect();
        let mut order = self.account.new_order(&NewOrder::new(&ids)).await.map_err(|e| order_err(e.to_string()))?;
        let mut published: Vec<(String, String)> = Vec::new();
        let proved = self.prove(&mut order, solver, &mut published).await;
        let result = match proved {
            Ok(()) => self.finish(&mut order).await.map_err(order_err),
            Err(e) => Err(e),
        };
        for (name, value) in published {
            match solver {
                Solver::Http(h) => h.withdraw(&name),
                Solver::Dns(d) => {
                    if let Err(e) = d.remove_txt(&name, &value).await {
                        tracing::warn!(error = %e, "acme: a DNS-01 record stays behind");
                    }
                }
            }
        }
        result
    }

    async fn prove(
        &self,
        order: &mut instant_acme::Order,
        solver: &Solver<'_>,
        published: &mut Vec<(String, String)>,
    ) -> Result<(), AcmeError> {
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz.map_err(|e| AcmeError::Challenge { name: "?".into(), why: e.to_string() })?;
            match authz.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                other => {
                    return Err(AcmeError::Challenge { name: authz.identifier().to_string(), why: format!("authorization is {other:?}") });
                }
            }
            let kind = match solver {
                Solver::Http(_) => ChallengeType::Http01,
                Solver::Dns(_) => ChallengeType::Dns01,
            };
            let name = authz.identifier().to_string();
            let base = match authz.identifier().identifier {
                Identifier::Dns(d) => d.clone(),
                other => return Err(AcmeError::Challenge { name, why: format!("not a DNS name: {other:?}") }),
            };
            let mut challenge = authz
                .challenge(kind.clone())
                .ok_or_else(|| AcmeError::Challenge { name: name.clone(), why: format!("the server offers no {kind:?} challenge") })?;
            let key_auth = challenge.key_authorization();
            match solver {
                Solver::Http(h) => {
                    h.publish(&challenge.token, key_auth.as_str());
                    published.push((challenge.token.clone(), String::new()));
                }
                Solver::Dns(d) => {
                    let record = format!("_acme-challenge.{base}");
                    let value = key_auth.dns_value();
                    d.add_txt(&record, &value).await?;
                    published.push((record.clone(), value.clone()));
                    // The primary server answers it before the CA is asked to look.
                    let mut seen = false;
                    for _ in 0..30 {
                        if d.has_txt(&record, &value).await.unwrap_or(false) {
                            seen = true;
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    if !seen {
                        return Err(AcmeError::Challenge { name, why: format!("{record} does not answer the new TXT record") });
                    }
                }
            }
            challenge.set_ready().await.map_err(|e| AcmeError::Challenge { name: name.clone(), why: e.to_string() })?;
        }
        Ok(())
    }

    async fn finish(&self, order: &mut instant_acme::Order) -> Result<Issued, String> {
        let retry = RetryPolicy::new().timeout(Duration::from_secs(90));
        let status = order.poll_ready(&retry).await.map_err(|e| e.to_string())?;
        if status != OrderStatus::Ready {
            let why = order
                .authorizations()
                .next()
                .await
                .and_then(Result::ok)
                .and_then(|a| a.challenges.iter().find_map(|c| c.error.as_ref().map(|e| e.to_string())))
                .unwrap_or_else(|| format!("the order is {status:?}"));
            return Err(why);
        }
        let key_pem = order.finalize().await.map_err(|e| e.to_string())?;
        let chain_pem = order.poll_certificate(&retry).await.map_err(|e| e.to_string())?;
        let leaf = leaf(&chain_pem).map_err(|e| e.to_string())?;
        Ok(Issued { chain_pem, key_pem, leaf })
    }
}
