//! Single sign-on: who an identity provider vouched for becomes a user. The protocol (OpenID
//! Connect) is the server's; here is the policy: a new user only from an allowed e-mail domain,
//! with the role its groups map to (or the default), an existing user's role following its
//! groups at each sign-in, a disabled user or an unverified address refused. Users made or
//! changed here are recorded like an admin's, by the actor [`Actor::sso`].

use crate::gate::{Noted, Operation, Role, gate};
use crate::{Actor, Control, ControlError, Ports};
use offshoot_store::{ADMIN_USER, User};

/// How sign-ins become users (the server's `--oidc-*` settings).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SsoPolicy {
    /// E-mail domains whose users are made at their first sign-in (lower case). Empty: only
    /// users an admin made may sign in.
    pub allowed_domains: Vec<String>,
    /// The role of a user made at sign-in whose groups map to none.
    pub default_role: Role,
    /// Members of this group are admins.
    pub admin_group: Option<String>,
    /// Members of this group are developers (unless admins).
    pub developer_group: Option<String>,
}

/// What the identity provider says of the person signing in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SsoIdentity {
    pub email: String,
    /// `email_verified`, when the provider says.
    pub email_verified: Option<bool>,
    /// The groups claim, when the provider sent it.
    pub groups: Option<Vec<String>>,
}

impl SsoPolicy {
    /// Whether groups decide roles at all.
    pub fn maps_groups(&self) -> bool {
        self.admin_group.is_some() || self.developer_group.is_some()
    }

    /// The role `groups` map to: admin, developer, or the default role when in neither group.
    /// `None` when groups do not decide (no group configured, or no groups claim sent).
    pub fn role_of_groups(&self, groups: Option<&[String]>) -> Option<Role> {
        let groups = groups.filter(|_| self.maps_groups())?;
        let member = |g: &Option<String>| g.as_ref().is_some_and(|g| groups.iter().any(|x| x == g));
        Some(if member(&self.admin_group) {
            Role::Admin
        } else if member(&self.developer_group) {
            Role::Developer
        } else {
            self.default_role
        })
    }

    /// Whether a first sign-in from `email` may make a user.
    pub fn allows(&self, email: &str) -> bool {
        let domain = email.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase()).unwrap_or_default();
        self.allowed_domains.contains(&domain)
    }
}

impl Actor {
    /// Single sign-on making and updating users as the provider vouches.
    pub fn sso() -> Self {
        Actor::user("single-sign-on", Role::Admin)
    }
}

fn refused(message: String, hint: &str) -> ControlError {
    ControlError::Unprocessable { code: "sign_in_refused", message, hint: Some(hint.into()) }
}

impl<P: Ports> Control<'_, P> {
    /// The user `who` signs in as: found, made (allowed domain), its role brought in line with
    /// its groups, or refused with why. Call as [`Actor::sso`] (with the browser's address).
    pub async fn sso_sign_in(&self, who: &SsoIdentity, policy: &SsoPolicy) -> Result<User, ControlError> {
        let email = who.email.trim().to_ascii_lowercase();
        if !crate::users::valid_email(&email) {
            return Err(refused(
                format!("the identity provider sent no usable e-mail address (`{}`)", who.email),
                "the provider must release the `email` claim (scope `email`)",
            ));
        }
        let unverified = || {
            refused(
                format!("the identity provider has not verified `{email}`"),
                "verify the address with the identity provider, then sign in again",
            )
        };
        let role = policy.role_of_groups(who.groups.as_deref());
        let Some(user) = self.store.user(&email).await? else {
            // A user that would be made: a refusal is recorded as the creation's.
            let work = async {
                if who.email_verified == Some(false) {
                    return Err(unverified());
                }
                if !policy.allows(&email) {
                    return Err(refused(
                        format!("`{email}` may not sign in here: its domain is not one single sign-on makes users for"),
                        "ask an admin to make your user (`offshoot user create EMAIL`), or to allow your domain (`--oidc-allowed-domains`)",
                    ));
                }
                let r = role.unwrap_or(policy.default_role);
                self.store.add_user(&email, r.as_str()).await?;
                self.store.user(&email).await?.ok_or_else(|| ControlError::not_found("user", &email, "it was just made"))
            };
            return gate(self.store, &self.actor, Operation::CreateUser, &email, work, |u| {
                Noted::detail(format!("as {}, at its first single sign-on", u.role))
            })
            .await;
        };
        if who.email_verified == Some(false) {
            return Err(unverified());
        }
        if user.disabled != 0 {
            return Err(refused(format!("user `{email}` is disabled"), "ask an admin to enable it"));
        }
        match role {
            Some(r) if r.as_str() != user.role && email != ADMIN_USER => {
                let work = async {
                    self.store.set_user_role(&email, r.as_str()).await?;
                    self.store.user(&email).await?.ok_or_else(|| ControlError::not_found("user", &email, "it was just changed"))
                };
                gate(self.store, &self.actor, Operation::UpdateUser, &email, work, |u| {
                    Noted::detail(format!("to {}, as its groups at single sign-on", u.role))
                })
                .await
            }
            _ => Ok(user),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> SsoPolicy {
        SsoPolicy {
            allowed_domains: vec!["example.com".into()],
            default_role: Role::Viewer,
            admin_group: Some("ops".into()),
            developer_group: Some("eng".into()),
        }
    }

    #[test]
    fn groups_map_to_roles_and_domains_are_matched_whole() {
        let p = policy();
        let g = |v: &[&str]| Some(v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>());
        assert_eq!(p.role_of_groups(g(&["eng", "ops"]).as_deref()), Some(Role::Admin));
        assert_eq!(p.role_of_groups(g(&["eng"]).as_deref()), Some(Role::Developer));
        assert_eq!(p.role_of_groups(g(&["sales"]).as_deref()), Some(Role::Viewer));
        assert_eq!(p.role_of_groups(None), None, "no claim: groups do not decide");
        let none = SsoPolicy { admin_group: None, developer_group: None, ..p.clone() };
        assert_eq!(none.role_of_groups(g(&["ops"]).as_deref()), None, "no mapping: groups do not decide");
        assert!(p.allows("a@example.com") && p.allows("a@EXAMPLE.com"));
        assert!(!p.allows("a@notexample.com") && !p.allows("a@example.com.evil.io") && !p.allows("a@sub.example.com"));
    }
}
