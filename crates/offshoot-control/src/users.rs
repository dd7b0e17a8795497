//! Users and their API tokens: made, listed, given a role, disabled; a role raised for one
//! application (`app grant`). Tokens are random, shown once, stored as SHA-256 hashes, expire,
//! and go with their user. Everything here is an admin's, but a user's own tokens.

use crate::gate::{Noted, Operation, Role, gate};
use crate::{Control, ControlError, Ports};
use offshoot_store::{ADMIN_USER, TokenRow, User, now_ms};
use sha2::Digest as _;

/// A new API token's text (shown once).
pub fn new_token() -> String {
    format!("osh_{}", crate::ids::random_hex::<32>())
}

/// What the store keeps of a token.
pub fn hash_token(token: &str) -> String {
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

/// Whether `email` can name a user: an e-mail address (or the built-in `admin`).
pub fn valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else { return false };
    email.len() <= 254
        && !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && email.chars().all(|c| c.is_ascii_graphic() && c != ',' && c != ';' && c != '<' && c != '>')
}

fn role(text: &str) -> Result<Role, ControlError> {
    Role::parse(text).ok_or_else(|| ControlError::bad_input(format!("`{text}` is not a role")).with_hint("admin, developer or viewer"))
}

/// A token just made: its text, shown once.
#[derive(Clone, Debug)]
pub struct NewToken {
    pub token: String,
    pub row: TokenRow,
}

impl<P: Ports> Control<'_, P> {
    fn must_be_admin(&self, what: &'static str) -> Result<(), ControlError> {
        if self.actor.role >= Role::Admin {
            Ok(())
        } else {
            Err(ControlError::Forbidden { actor: self.actor.name.clone(), operation: what, needs: Role::Admin, has: self.actor.role })
        }
    }

    async fn find_user(&self, email: &str) -> Result<User, ControlError> {
        self.store.user(email).await?.ok_or_else(|| ControlError::not_found("user", email, "`offshoot user list` shows the users"))
    }

    /// Adds a user with a role.
    pub async fn create_user(&self, email: &str, role_name: &str) -> Result<User, ControlError> {
        let work = async {
            if !valid_email(email) {
                return Err(ControlError::bad_input(format!("`{email}` is not an e-mail address")));
            }
            let r = role(role_name)?;
            if !self.store.add_user(email, r.as_str()).await? {
                return Err(ControlError::Conflict {
                    code: "exists",
                    message: format!("user `{email}` exists"),
                    hint: Some("`offshoot user set EMAIL --role R` changes its role".into()),
                });
            }
            self.find_user(email).await
        };
        gate(self.store, &self.actor, Operation::CreateUser, email, work, |u| Noted::detail(format!("as {}", u.role))).await
    }

    /// Every user (an admin's to see).
    pub async fn users(&self) -> Result<Vec<User>, ControlError> {
        self.must_be_admin("user.list")?;
        Ok(self.store.users().await?)
    }

    /// Gives a user another role (the built-in admin stays an admin).
    pub async fn set_user_role(&self, email: &str, role_name: &str) -> Result<User, ControlError> {
        let work = async {
            let r = role(role_name)?;
            self.find_user(email).await?;
            if email == ADMIN_USER && r != Role::Admin {
                return Err(ControlError::bad_input("the built-in `admin` stays an admin"));
            }
            self.store.set_user_role(email, r.as_str()).await?;
            self.find_user(email).await
        };
        gate(self.store, &self.actor, Operation::UpdateUser, email, work, |u| Noted::detail(format!("to {}", u.role))).await
    }

    /// Disables a user: its tokens are revoked and its sessions end.
    pub async fn disable_user(&self, email: &str) -> Result<(), ControlError> {
        let work = async {
            self.find_user(email).await?;
            if email == ADMIN_USER {
                return Err(ControlError::bad_input("the built-in `admin` cannot be disabled").with_hint("revoke its tokens instead"));
            }
            self.store.disable_user(email).await?;
            Ok(())
        };
        gate(self.store, &self.actor, Operation::DisableUser, email, work, |_| Noted::default()).await
    }

    /// Makes a token for `user` (oneself by default; an admin's for anyone else), expiring after
    /// `expires` (`30d`) if given.
    pub async fn create_token(&self, user: Option<&str>, name: Option<&str>, expires: Option<&str>) -> Result<NewToken, ControlError> {
        let owner = user.unwrap_or(&self.actor.name).to_owned();
        let work = async {
            if owner != self.actor.name {
                self.must_be_admin("token.create")?;
            }
            let u = self.find_user(&owner).await?;
            if u.disabled != 0 {
                return Err(ControlError::bad_input(format!("user `{owner}` is disabled")));
            }
            let name = name.unwrap_or("token");
            if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
                return Err(ControlError::bad_input("a token's name has 1 to 100 characters, without control characters"));
            }
            let expires_at = match expires {
                None => None,
                Some(text) => crate::apps::parse_ttl("expires", text)?.map(|secs| now_ms() + secs * 1000),
            };
            let token = new_token();
            let row = TokenRow {
                id: format!("t{}", crate::ids::random_hex::<8>()),
                name: name.to_owned(),
                user_email: owner.clone(),
                created_at: now_ms(),
                expires_at,
            };
            self.store.add_user_token(&hash_token(&token), &row).await?;
            Ok(NewToken { token, row })
        };
        gate(self.store, &self.actor, Operation::CreateToken, &owner, work, |t| Noted::detail(format!("token {}", t.row.id))).await
    }

    /// One's own tokens; an admin's: everyone's, or one user's.
    pub async fn tokens(&self, user: Option<&str>) -> Result<Vec<TokenRow>, ControlError> {
        match user {
            Some(u) if u == self.actor.name => Ok(self.store.tokens(Some(u)).await?),
            None if self.actor.role < Role::Admin => Ok(self.store.tokens(Some(&self.actor.name)).await?),
            other => {
                self.must_be_admin("token.list")?;
                Ok(self.store.tokens(other).await?)
            }
        }
    }

    /// Revokes a token: one's own, or (an admin) anyone's.
    pub async fn revoke_token(&self, id: &str) -> Result<(), ControlError> {
        let work = async {
            let t = self.store.token(id).await?;
            let t = t.ok_or_else(|| ControlError::not_found("token", id, "`offshoot token list` shows the tokens"))?;
            if t.user_email != self.actor.name {
                self.must_be_admin("token.revoke")?;
            }
            self.store.revoke_token(id).await?;
            Ok(())
        };
        gate(self.store, &self.actor, Operation::RevokeToken, id, work, |_| Noted::default()).await
    }

    /// Raises (or with `none` removes) a user's role for one application.
    pub async fn grant(&self, app: &str, email: &str, role_name: &str) -> Result<(), ControlError> {
        let target = format!("{app}/{email}");
        let work = async {
            self.find_app(app).await?;
            self.find_user(email).await?;
            let r = if role_name == "none" { None } else { Some(role(role_name)?) };
            self.store.set_grant(app, email, r.map(Role::as_str)).await?;
            Ok(())
        };
        gate(self.store, &self.actor, Operation::GrantApp, &target, work, |_| Noted::detail(format!("role {role_name}"))).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_and_tokens() {
        for ok in ["a@b.co", "first.last+tag@example.com"] {
            assert!(valid_email(ok), "{ok}");
        }
        for bad in ["", "admin", "a@b", "@b.co", "a@.co", "a b@c.co", "a@b.co.", "<a@b.co>"] {
            assert!(!valid_email(bad), "{bad}");
        }
        let t = new_token();
        assert!(t.starts_with("osh_") && t.len() == 68);
        assert_eq!(hash_token(&t).len(), 64);
        assert_ne!(new_token(), t);
    }
}
