//! Team-only previews on this server: the router's [`Gatekeeper`]. Bypass tokens are held in
//! memory (opened from the store at each routing-table rebuild); the preview cookie and the
//! dashboard's sign-in ticket are `<expiry>.<HMAC of host and expiry>` under the server's key,
//! so the router checks them without the store.

use crate::crypto::SecretKey;
use offshoot_router::Gatekeeper;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// How long a preview cookie proves access.
const COOKIE_SECS: i64 = 12 * 3600;
/// How long a sign-in ticket may take to come back.
const TICKET_SECS: i64 = 60;

pub(crate) struct PreviewGate {
    key: Arc<SecretKey>,
    /// Application → its bypass token.
    tokens: RwLock<HashMap<String, String>>,
    /// The dashboard's address (`http://host:port`).
    dashboard: String,
}

/// A value escaped for a query string (every character but letters and digits).
pub(crate) fn escape(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn now_secs() -> i64 {
    offshoot_store::now_ms() / 1000
}

impl PreviewGate {
    pub(crate) fn new(key: Arc<SecretKey>, dashboard: &str) -> Self {
        PreviewGate { key, tokens: RwLock::default(), dashboard: dashboard.trim_end_matches('/').to_owned() }
    }

    pub(crate) fn set_tokens(&self, tokens: HashMap<String, String>) {
        *self.tokens.write().unwrap_or_else(std::sync::PoisonError::into_inner) = tokens;
    }

    fn signed(&self, purpose: &str, host: &str, expires: i64) -> String {
        format!("{expires}.{}", self.key.fingerprint(format!("{purpose}|{host}|{expires}").as_bytes()))
    }

    fn valid(&self, purpose: &str, host: &str, value: &str) -> bool {
        use subtle::ConstantTimeEq as _;
        let Some((exp, _)) = value.split_once('.') else { return false };
        let Ok(expires) = exp.parse::<i64>() else { return false };
        expires > now_secs() && bool::from(self.signed(purpose, host, expires).as_bytes().ct_eq(value.as_bytes()))
    }

    /// A ticket the dashboard gives a signed-in browser for `host`.
    pub(crate) fn ticket(&self, host: &str) -> String {
        self.signed("ticket", host, now_secs() + TICKET_SECS)
    }
}

impl Gatekeeper for PreviewGate {
    fn bypass(&self, app: &str, token: &str) -> bool {
        use subtle::ConstantTimeEq as _;
        let tokens = self.tokens.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        tokens.get(app).is_some_and(|t| !token.is_empty() && bool::from(t.as_bytes().ct_eq(token.as_bytes())))
    }

    fn cookie_for(&self, host: &str) -> String {
        self.signed("preview", host, now_secs() + COOKIE_SECS)
    }

    fn cookie_ok(&self, host: &str, value: &str) -> bool {
        self.valid("preview", host, value)
    }

    fn ticket_ok(&self, host: &str, ticket: &str) -> bool {
        self.valid("ticket", host, ticket)
    }

    fn sign_in_url(&self, host: &str, uri: &str) -> String {
        format!("{}/ui/preview?host={}&next={}", self.dashboard, escape(host), escape(uri))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_and_tickets_are_bound_to_their_host_and_purpose() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = Arc::new(SecretKey::load_or_create(&dir.path().join("k")).expect("key"));
        let g = PreviewGate::new(key, "http://127.0.0.1:1/");
        let c = g.cookie_for("web-a.localhost");
        assert!(g.cookie_ok("web-a.localhost", &c));
        assert!(!g.cookie_ok("web-b.localhost", &c), "another host");
        assert!(!g.ticket_ok("web-a.localhost", &c), "a cookie is no ticket");
        assert!(g.ticket_ok("web-a.localhost", &g.ticket("web-a.localhost")));
        let stale = g.signed("preview", "web-a.localhost", now_secs() - 1);
        assert!(!g.cookie_ok("web-a.localhost", &stale), "expired");
        assert!(!g.cookie_ok("web-a.localhost", "garbage"));
        g.set_tokens(HashMap::from([("shop".to_owned(), "osb_x".to_owned())]));
        assert!(g.bypass("shop", "osb_x") && !g.bypass("shop", "osb_y") && !g.bypass("other", "osb_x"));
        assert_eq!(g.sign_in_url("web-a.localhost", "/a?b=1"), "http://127.0.0.1:1/ui/preview?host=web%2Da%2Elocalhost&next=%2Fa%3Fb%3D1");
    }
}
