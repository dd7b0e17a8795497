//! Credentials for container registries, server-wide or per application.

use crate::{Result, Store, db};
use sqlx::FromRow;

#[derive(Clone, Debug, PartialEq, Eq, FromRow)]
pub struct RegistryCredential {
    /// `registry.example.com`, `127.0.0.1:5001`, `docker.io`.
    pub host: String,
    /// Empty for the whole server.
    pub app: String,
    pub username: String,
    /// The password, encrypted.
    pub secret: String,
    pub created_at: i64,
}

impl Store {
    /// Records (or replaces) the credentials for `host` (of `app`, or the server's).
    pub async fn set_registry_credential(&self, c: &RegistryCredential) -> Result<()> {
        sqlx::query(
            "INSERT INTO registry_credentials (host, app, username, secret, created_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (host, app) DO UPDATE SET username = excluded.username, secret = excluded.secret, created_at = excluded.created_at",
        )
        .bind(&c.host)
        .bind(&c.app)
        .bind(&c.username)
        .bind(&c.secret)
        .bind(c.created_at)
        .execute(&self.pool)
        .await
        .map_err(db("record a registry's credentials"))?;
        Ok(())
    }

    /// Every credential, by host then application.
    pub async fn registry_credentials(&self) -> Result<Vec<RegistryCredential>> {
        sqlx::query_as("SELECT host, app, username, secret, created_at FROM registry_credentials ORDER BY host, app")
            .fetch_all(&self.pool)
            .await
            .map_err(db("list registry credentials"))
    }

    /// Forgets the credentials for `host` (of `app`, or the server's); whether there were any.
    pub async fn delete_registry_credential(&self, host: &str, app: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM registry_credentials WHERE host = $1 AND app = $2")
            .bind(host)
            .bind(app)
            .execute(&self.pool)
            .await
            .map_err(db("forget a registry's credentials"))?;
        Ok(done.rows_affected() > 0)
    }
}
