//! When a certificate renews, how long a failed attempt waits, and what a PEM
//! chain says of itself. Pure.

use std::time::Duration;

/// When a certificate valid from `not_before` to `not_after` (ms) is renewed: at two thirds of
/// its lifetime.
pub fn renew_at(not_before: i64, not_after: i64) -> i64 {
    not_before + (not_after - not_before).max(0) / 3 * 2
}

/// How long to wait after `failures` attempts in a row failed: 30 s, doubling, at most 6 h.
pub fn backoff(failures: u32) -> Duration {
    let secs = 30u64.saturating_mul(1u64 << failures.saturating_sub(1).min(20));
    Duration::from_secs(secs.min(6 * 3600))
}

/// What a certificate chain (PEM, leaf first) says of its leaf.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leaf {
    /// The DNS names it is for.
    pub names: Vec<String>,
    /// Validity, in ms since the epoch.
    pub not_before: i64,
    pub not_after: i64,
    /// The issuer's common name (or its whole name).
    pub issuer: String,
    /// Its serial number, in hex.
    pub serial: String,
}

/// A chain that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("the certificate cannot be read: {0}")]
pub struct BadChain(String);

/// Reads the leaf of a PEM chain.
pub fn leaf(chain_pem: &str) -> Result<Leaf, BadChain> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(chain_pem.as_bytes()).map_err(|e| BadChain(e.to_string()))?;
    let cert = pem.parse_x509().map_err(|e| BadChain(e.to_string()))?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                names.push((*d).to_owned());
            }
        }
    }
    let issuer =
        cert.issuer().iter_common_name().next().and_then(|cn| cn.as_str().ok()).map_or_else(|| cert.issuer().to_string(), str::to_owned);
    Ok(Leaf {
        names,
        not_before: cert.validity().not_before.timestamp() * 1000,
        not_after: cert.validity().not_after.timestamp() * 1000,
        issuer,
        serial: cert.raw_serial_as_string().replace(':', ""),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_at_two_thirds_and_backoff_doubles_to_six_hours() {
        assert_eq!(renew_at(0, 90), 60);
        assert_eq!(renew_at(1_000, 31_000), 21_000);
        assert_eq!(renew_at(10, 5), 10, "a certificate that ends before it starts renews at once");
        assert_eq!(backoff(1), Duration::from_secs(30));
        assert_eq!(backoff(2), Duration::from_secs(60));
        assert_eq!(backoff(5), Duration::from_secs(480));
        assert_eq!(backoff(40), Duration::from_secs(6 * 3600));
        assert_eq!(backoff(0), Duration::from_secs(30));
    }

    #[test]
    fn a_chain_that_is_not_pem_is_refused() {
        assert!(leaf("not a certificate").is_err());
    }
}
