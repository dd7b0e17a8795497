//! Team-only previews: a backend marked with its application answers only a request that
//! proves it may, as the [`Gatekeeper`] (the server) judges: a bypass token in the
//! `x-offshoot-bypass` header, or once in the `offshoot_bypass` query parameter (answered with a
//! cookie and a redirect to the same URL without it), or the preview cookie a signed-in
//! dashboard user got through `/__offshoot/auth`. A browser without any is sent to sign in;
//! another client gets 401. What proved access is taken off the request before it goes on.

use crate::ProxyBody;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Response, StatusCode};

/// The header a bypass token comes in.
pub const BYPASS_HEADER: &str = "x-offshoot-bypass";
/// The query parameter a bypass token comes in once.
pub const BYPASS_PARAM: &str = "offshoot_bypass";
/// The cookie that proves access to one host.
pub const COOKIE: &str = "offshoot_preview";
/// The path a signed-in browser comes back to with a ticket.
pub const AUTH_PATH: &str = "/__offshoot/auth";

/// Judges access to team-only previews (the server, which knows the tokens and its key).
pub trait Gatekeeper: Send + Sync {
    /// Whether `token` is `app`'s bypass token.
    fn bypass(&self, app: &str, token: &str) -> bool;
    /// A cookie value that proves access to `host` for a while.
    fn cookie_for(&self, host: &str) -> String;
    /// Whether a cookie value proves access to `host` now.
    fn cookie_ok(&self, host: &str, value: &str) -> bool;
    /// Whether a ticket from the dashboard lets a browser in to `host` now.
    fn ticket_ok(&self, host: &str, ticket: &str) -> bool;
    /// Where a browser signs in for `host` and comes back to `uri` (an absolute URL).
    fn sign_in_url(&self, host: &str, uri: &str) -> String;
}

/// What the gate decided.
pub(crate) enum Decision {
    /// Go on, with the request's proof taken off.
    Pass,
    Answer(Response<ProxyBody>),
}

/// One query parameter's value, and the query without it.
fn take_param(query: &str, name: &str) -> (Option<String>, String) {
    let mut found = None;
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some((k, v)) if k == name => found = Some(percent_decode(v)),
            _ if pair == name => found = Some(String::new()),
            _ => rest.push(pair),
        }
    }
    (found, rest.join("&"))
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

fn cookie_value(headers: &HeaderMap) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|c| {
        let (k, v) = c.trim().split_once('=')?;
        (k == COOKIE).then(|| v.to_owned())
    })
}

/// Takes the preview cookie out of the `Cookie` headers (the service never sees it).
fn strip_cookie(headers: &mut HeaderMap) {
    let kept: Vec<String> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|c| !c.is_empty() && c.split_once('=').is_none_or(|(k, _)| k != COOKIE))
        .map(str::to_owned)
        .collect();
    headers.remove(header::COOKIE);
    if !kept.is_empty()
        && let Ok(v) = HeaderValue::from_str(&kept.join("; "))
    {
        headers.insert(header::COOKIE, v);
    }
}

/// A redirect, setting the preview cookie (`Secure` over TLS) when given.
fn redirect(to: &str, cookie: Option<(String, bool)>) -> Response<ProxyBody> {
    let mut r = crate::proxy::page(StatusCode::FOUND, "Found", "Redirecting.");
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    if let Some((c, secure)) = cookie
        && let Ok(v) = HeaderValue::from_str(&format!(
            "{COOKIE}={c}; Path=/; HttpOnly; SameSite=Lax; Max-Age=43200{}",
            if secure { "; Secure" } else { "" }
        ))
    {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// Decides a request for a team-only backend of `app` at `host`; on a pass, its proof is taken
/// off `parts` (the bypass header and the preview cookie).
pub(crate) fn decide(
    gk: Option<&dyn Gatekeeper>,
    (app, host): (&str, &str),
    parts: &mut hyper::http::request::Parts,
    html: bool,
    tls: bool,
) -> Decision {
    let Some(gk) = gk else {
        return Decision::Answer(crate::proxy::page(StatusCode::FORBIDDEN, "Forbidden", "This preview is for the team only."));
    };
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().unwrap_or("").to_owned();
    // Back from the dashboard with a ticket: the cookie, and on to where it was going.
    if path == AUTH_PATH {
        let (ticket, _) = take_param(&query, "ticket");
        let (next, _) = take_param(&query, "next");
        let next = next.filter(|n| n.starts_with('/') && !n.starts_with("//")).unwrap_or_else(|| "/".into());
        return match ticket {
            Some(t) if gk.ticket_ok(host, &t) => Decision::Answer(redirect(&next, Some((gk.cookie_for(host), tls)))),
            _ => {
                Decision::Answer(crate::proxy::page(StatusCode::FORBIDDEN, "Forbidden", "The sign-in ticket is not valid or has expired."))
            }
        };
    }
    // A bypass token once in the query: a cookie, and the same URL without it.
    let (param, rest) = take_param(&query, BYPASS_PARAM);
    if let Some(token) = param {
        if !gk.bypass(app, &token) {
            return Decision::Answer(crate::proxy::page(StatusCode::FORBIDDEN, "Forbidden", "The bypass token is not valid."));
        }
        let to = if rest.is_empty() { path } else { format!("{path}?{rest}") };
        return Decision::Answer(redirect(&to, Some((gk.cookie_for(host), tls))));
    }
    if let Some(token) = parts.headers.get(BYPASS_HEADER).map(|v| v.to_str().unwrap_or("").to_owned()) {
        if !gk.bypass(app, &token) {
            return Decision::Answer(crate::proxy::page(StatusCode::FORBIDDEN, "Forbidden", "The bypass token is not valid."));
        }
        parts.headers.remove(BYPASS_HEADER);
        strip_cookie(&mut parts.headers);
        return Decision::Pass;
    }
    if cookie_value(&parts.headers).is_some_and(|c| gk.cookie_ok(host, &c)) {
        strip_cookie(&mut parts.headers);
        return Decision::Pass;
    }
    if html {
        let uri = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        return Decision::Answer(redirect(&gk.sign_in_url(host, &uri), None));
    }
    let mut r = crate::proxy::page(
        StatusCode::UNAUTHORIZED,
        "Unauthorized",
        "This preview is for the team only: sign in to the dashboard, or send a bypass token in the x-offshoot-bypass header.",
    );
    r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"offshoot preview\""));
    Decision::Answer(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parameter_is_taken_out_of_the_query() {
        assert_eq!(take_param("a=1&offshoot_bypass=x%2By&b=2", BYPASS_PARAM), (Some("x+y".into()), "a=1&b=2".into()));
        assert_eq!(take_param("offshoot_bypass", BYPASS_PARAM), (Some(String::new()), String::new()));
        assert_eq!(take_param("offshoot_bypass=t", BYPASS_PARAM), (Some("t".into()), String::new()));
        assert_eq!(take_param("a=1", BYPASS_PARAM), (None, "a=1".into()));
    }

    #[test]
    fn the_preview_cookie_is_secure_over_tls() {
        let set =
            |tls| redirect("/", Some(("v".into(), tls))).headers().get(header::SET_COOKIE).and_then(|v| v.to_str().ok()).map(str::to_owned);
        assert_eq!(set(true).as_deref(), Some("offshoot_preview=v; Path=/; HttpOnly; SameSite=Lax; Max-Age=43200; Secure"));
        assert_eq!(set(false).as_deref(), Some("offshoot_preview=v; Path=/; HttpOnly; SameSite=Lax; Max-Age=43200"));
    }

    #[test]
    fn the_preview_cookie_is_taken_off() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("a=1; offshoot_preview=secret; b=2"));
        assert_eq!(cookie_value(&h).as_deref(), Some("secret"));
        strip_cookie(&mut h);
        assert_eq!(h.get(header::COOKIE).and_then(|v| v.to_str().ok()), Some("a=1; b=2"));
        let mut only = HeaderMap::new();
        only.insert(header::COOKIE, HeaderValue::from_static("offshoot_preview=secret"));
        strip_cookie(&mut only);
        assert!(only.get(header::COOKIE).is_none());
    }
}
