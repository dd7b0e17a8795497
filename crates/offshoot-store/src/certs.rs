//! Certificates from ACME and the ACME account: what the router serves by name, and what the
//! renewal loop reads to know what is due.

use crate::{Result, Store, db, now_ms};
use sqlx::FromRow;

/// One certificate (or a name still waiting for its first).
#[derive(Clone, Debug, PartialEq, Eq, FromRow)]
pub struct CertRow {
    /// Its first name: `*.example.com`, or one host.
    pub name: String,
    /// Every name, comma-separated.
    pub names: String,
    pub chain_pem: Option<String>,
    /// The private key, sealed by the server.
    pub key_sealed: Option<String>,
    pub issuer: Option<String>,
    pub serial: Option<String>,
    /// Validity in ms since the epoch.
    pub not_before: Option<i64>,
    pub not_after: Option<i64>,
    /// ACME orders that issued it (a renewal is one more).
    pub orders: i64,
    /// Attempts that failed in a row since the last success.
    pub failures: i64,
    pub last_error: Option<String>,
    /// No attempt before this (ms), after a failure.
    pub next_attempt: i64,
    pub updated_at: i64,
}

impl CertRow {
    /// Every name it is for.
    pub fn name_list(&self) -> Vec<String> {
        self.names.split(',').filter(|n| !n.is_empty()).map(str::to_owned).collect()
    }
}

const CERT_COLUMNS: &str =
    "name, names, chain_pem, key_sealed, issuer, serial, not_before, not_after, orders, failures, last_error, next_attempt, updated_at";

/// A certificate just issued.
pub struct IssuedCert<'a> {
    pub names: &'a [String],
    pub chain_pem: &'a str,
    pub key_sealed: &'a str,
    pub issuer: &'a str,
    pub serial: &'a str,
    pub not_before: i64,
    pub not_after: i64,
}

impl Store {
    /// Every certificate, by name.
    pub async fn certificates(&self) -> Result<Vec<CertRow>> {
        sqlx::query_as(&format!("SELECT {CERT_COLUMNS} FROM certificates ORDER BY name"))
            .fetch_all(&self.pool)
            .await
            .map_err(db("list certificates"))
    }

    /// Keeps a newly issued certificate for its names: the failures are forgotten and the
    /// orders counted.
    pub async fn save_certificate(&self, c: &IssuedCert<'_>) -> Result<()> {
        let name = c.names.first().map(String::as_str).unwrap_or_default();
        sqlx::query(
            "INSERT INTO certificates (name, names, chain_pem, key_sealed, issuer, serial, not_before, not_after, orders, failures, last_error, next_attempt, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, 0, NULL, 0, $9) \
             ON CONFLICT (name) DO UPDATE SET names = $2, chain_pem = $3, key_sealed = $4, issuer = $5, serial = $6, not_before = $7, \
             not_after = $8, orders = certificates.orders + 1, failures = 0, last_error = NULL, next_attempt = 0, updated_at = $9",
        )
        .bind(name)
        .bind(c.names.join(","))
        .bind(c.chain_pem)
        .bind(c.key_sealed)
        .bind(c.issuer)
        .bind(c.serial)
        .bind(c.not_before)
        .bind(c.not_after)
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .map_err(db("save a certificate"))?;
        Ok(())
    }

    /// Records a failed attempt for `names`: why, and not before `next_attempt` (ms). A
    /// certificate already issued stays served.
    pub async fn certificate_failed(&self, names: &[String], error: &str, next_attempt: i64) -> Result<()> {
        let name = names.first().map(String::as_str).unwrap_or_default();
        sqlx::query(
            "INSERT INTO certificates (name, names, failures, last_error, next_attempt, updated_at) VALUES ($1, $2, 1, $3, $4, $5) \
             ON CONFLICT (name) DO UPDATE SET failures = certificates.failures + 1, last_error = $3, next_attempt = $4, updated_at = $5",
        )
        .bind(name)
        .bind(names.join(","))
        .bind(error)
        .bind(next_attempt)
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .map_err(db("record a certificate's failure"))?;
        Ok(())
    }

    /// Forgets a certificate (a host no longer routed).
    pub async fn delete_certificate(&self, name: &str) -> Result<()> {
        sqlx::query("DELETE FROM certificates WHERE name = $1").bind(name).execute(&self.pool).await.map_err(db("delete a certificate"))?;
        Ok(())
    }

    /// The sealed credentials of the ACME account on `directory`.
    pub async fn acme_account(&self, directory: &str) -> Result<Option<String>> {
        let row: Option<(String,)> = sqlx::query_as("SELECT credentials FROM acme_accounts WHERE directory = $1")
            .bind(directory)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("read the ACME account"))?;
        Ok(row.map(|r| r.0))
    }

    /// Keeps the ACME account made on `directory` (the first one kept wins).
    pub async fn save_acme_account(&self, directory: &str, sealed: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO acme_accounts (directory, credentials, created_at) VALUES ($1, $2, $3) ON CONFLICT (directory) DO NOTHING",
        )
        .bind(directory)
        .bind(sealed)
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .map_err(db("save the ACME account"))?;
        Ok(())
    }
}
