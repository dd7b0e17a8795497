//! Users (with a role, or disabled), their API tokens (stored as hashes, with an expiry), and
//! per-application grants that raise a user's role for one application.

use crate::{Result, Store, db, now_ms};
use sqlx::FromRow;

/// The built-in administrator: it owns the token made at the first start.
pub const ADMIN_USER: &str = "admin";

#[derive(Clone, Debug, PartialEq, Eq, FromRow)]
pub struct User {
    pub email: String,
    /// `viewer`, `developer` or `admin`.
    pub role: String,
    /// `1` when disabled: its tokens and sessions no longer work.
    pub disabled: i64,
    pub created_at: i64,
}

/// A token as listed (never its value, which is not kept).
#[derive(Clone, Debug, PartialEq, Eq, FromRow)]
pub struct TokenRow {
    pub id: String,
    pub name: String,
    pub user_email: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
}

const TOKEN_COLUMNS: &str = "id, name, user_email, created_at, expires_at";

impl Store {
    /// Adds a user; false if one has that e-mail already.
    pub async fn add_user(&self, email: &str, role: &str) -> Result<bool> {
        let done =
            sqlx::query("INSERT INTO users (email, role, disabled, created_at) VALUES ($1, $2, 0, $3) ON CONFLICT (email) DO NOTHING")
                .bind(email)
                .bind(role)
                .bind(now_ms())
                .execute(&self.pool)
                .await
                .map_err(db("add a user"))?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn user(&self, email: &str) -> Result<Option<User>> {
        sqlx::query_as("SELECT email, role, disabled, created_at FROM users WHERE email = $1")
            .bind(email)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("read a user"))
    }

    pub async fn users(&self) -> Result<Vec<User>> {
        sqlx::query_as("SELECT email, role, disabled, created_at FROM users ORDER BY email")
            .fetch_all(&self.pool)
            .await
            .map_err(db("list users"))
    }

    pub async fn set_user_role(&self, email: &str, role: &str) -> Result<bool> {
        let done = sqlx::query("UPDATE users SET role = $1 WHERE email = $2")
            .bind(role)
            .bind(email)
            .execute(&self.pool)
            .await
            .map_err(db("set a user's role"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Disables a user: its tokens and sessions go.
    pub async fn disable_user(&self, email: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await.map_err(db("begin"))?;
        let done = sqlx::query("UPDATE users SET disabled = 1 WHERE email = $1")
            .bind(email)
            .execute(&mut *tx)
            .await
            .map_err(db("disable a user"))?;
        sqlx::query("DELETE FROM tokens WHERE user_email = $1")
            .bind(email)
            .execute(&mut *tx)
            .await
            .map_err(db("revoke a user's tokens"))?;
        sqlx::query("DELETE FROM ui_sessions WHERE user_email = $1")
            .bind(email)
            .execute(&mut *tx)
            .await
            .map_err(db("end a user's sessions"))?;
        tx.commit().await.map_err(db("commit"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Records a token (by its hash) of a user.
    pub async fn add_user_token(&self, hash: &str, t: &TokenRow) -> Result<()> {
        sqlx::query(&format!("INSERT INTO tokens (hash, {TOKEN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"))
            .bind(hash)
            .bind(&t.id)
            .bind(&t.name)
            .bind(&t.user_email)
            .bind(t.created_at)
            .bind(t.expires_at)
            .execute(&self.pool)
            .await
            .map_err(db("add a token"))?;
        Ok(())
    }

    /// The token with this hash and its user, if it has not expired and its user is enabled.
    pub async fn token_user(&self, hash: &str) -> Result<Option<(TokenRow, User)>> {
        let row: Option<TokenRow> =
            sqlx::query_as(&format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = $1 AND (expires_at IS NULL OR expires_at > $2)"))
                .bind(hash)
                .bind(now_ms())
                .fetch_optional(&self.pool)
                .await
                .map_err(db("check a token"))?;
        let Some(t) = row else { return Ok(None) };
        Ok(self.user(&t.user_email).await?.filter(|u| u.disabled == 0).map(|u| (t, u)))
    }

    /// The tokens of one user, or of all; newest first.
    pub async fn tokens(&self, email: Option<&str>) -> Result<Vec<TokenRow>> {
        sqlx::query_as(&format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE ($1 = '' OR user_email = $1) ORDER BY created_at DESC, id"))
            .bind(email.unwrap_or(""))
            .fetch_all(&self.pool)
            .await
            .map_err(db("list tokens"))
    }

    pub async fn token(&self, id: &str) -> Result<Option<TokenRow>> {
        sqlx::query_as(&format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("read a token"))
    }

    pub async fn revoke_token(&self, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM tokens WHERE id = $1").bind(id).execute(&self.pool).await.map_err(db("revoke a token"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Sets (or with `None` removes) a user's role for one application.
    pub async fn set_grant(&self, app: &str, email: &str, role: Option<&str>) -> Result<()> {
        match role {
            Some(r) => sqlx::query(
                "INSERT INTO app_grants (app, email, role) VALUES ($1, $2, $3) ON CONFLICT (app, email) DO UPDATE SET role = excluded.role",
            )
            .bind(app)
            .bind(email)
            .bind(r)
            .execute(&self.pool)
            .await
            .map_err(db("grant a role"))?,
            None => sqlx::query("DELETE FROM app_grants WHERE app = $1 AND email = $2")
                .bind(app)
                .bind(email)
                .execute(&self.pool)
                .await
                .map_err(db("remove a grant"))?,
        };
        Ok(())
    }

    /// A user's grants: `(app, role)`.
    pub async fn grants(&self, email: &str) -> Result<Vec<(String, String)>> {
        sqlx::query_as("SELECT app, role FROM app_grants WHERE email = $1 ORDER BY app")
            .bind(email)
            .fetch_all(&self.pool)
            .await
            .map_err(db("list grants"))
    }

    /// The user a dashboard session (by its hash) is for, if it has not expired.
    pub async fn session_user(&self, hash: &str) -> Result<Option<String>> {
        let row: Option<(String,)> = sqlx::query_as("SELECT user_email FROM ui_sessions WHERE hash = $1 AND expires_at > $2")
            .bind(hash)
            .bind(now_ms())
            .fetch_optional(&self.pool)
            .await
            .map_err(db("check a session"))?;
        Ok(row.map(|r| r.0))
    }
}
